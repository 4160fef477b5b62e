package kube

import (
	"strings"
	"testing"
)

// TestConfigValidatePorts: a listen or ingest address whose port is a
// number out of range is refused before anything starts, naming the key.
func TestConfigValidatePorts(t *testing.T) {
	for _, tc := range []struct {
		ingest, listen string
		want           string
	}{
		{ingest: ":99999", want: `controller.ingest: ":99999": port 99999 is not from 0 to 65535`},
		{listen: "127.0.0.1:70000", want: `controller.listen: "127.0.0.1:70000": port 70000 is not from 0 to 65535`},
		{listen: "nope", want: "controller.listen: \"nope\": address nope: missing port in address"},
		{ingest: ":9443", listen: "127.0.0.1:0"},
	} {
		c := Config{ID: "a", Ingest: tc.ingest, Listen: tc.listen}
		c.Defaults()
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ingest %q listen %q: %v", tc.ingest, tc.listen, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ingest %q listen %q: %v, want %q", tc.ingest, tc.listen, err, tc.want)
		}
	}
}
