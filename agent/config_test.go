package agent

import (
	"strings"
	"testing"
)

// TestProposeConfig: the defaults are policies' defaults and valid; bad
// thresholds are refused with their key under propose.
func TestProposeConfig(t *testing.T) {
	d := Defaults()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if o := d.Propose.Options(); o.SharedMinClients != 3 || o.RangeMinPorts != 3 || o.NoWidening {
		t.Errorf("default propose options %+v", o)
	}
	d.Propose.SharedMinShare = 1.5
	d.Propose.RangeMinPorts = 1
	err := d.Validate()
	for _, key := range []string{"propose.sharedMinShare", "propose.rangeMinPorts"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate: %v; want %s named", err, key)
		}
	}
	// A written 0 would silently become the proposer's default (for
	// rangeMaxGap a wider range than asked): refused, naming the key.
	d = Defaults()
	d.Propose.RangeMaxGap, d.Propose.SharedMinShare = 0, 0
	err = d.Validate()
	for _, key := range []string{"propose.rangeMaxGap: 0 is not a threshold here: the proposer would read it as its default, 4", "propose.sharedMinShare: 0"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate with zeros: %v; want %q", err, key)
		}
	}
}

// TestListenTokens: a TCP listener with only a viewer token is
// authenticated and valid; none at all, or the viewer's file being the
// operator's, is refused naming the key.
func TestListenTokens(t *testing.T) {
	d := Defaults()
	d.Listen = "127.0.0.1:9620"
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "listen: a TCP listener needs tokenFile, readTokenFile or tlsClientCA") {
		t.Errorf("listen without a credential: %v", err)
	}
	d.ReadTokenFile = "/etc/nanoseg/viewer.token"
	if err := d.Validate(); err != nil {
		t.Errorf("listen with a viewer token only: %v", err)
	}
	d.TokenFile = d.ReadTokenFile
	if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "readTokenFile:") {
		t.Errorf("one file for both tokens: %v", err)
	}
}
