package main

import (
	"net"
	"testing"
)

// TestIngestCertOptions: an --ingest bound to one IP puts that IP in the
// serving certificate (agents outside a cluster dial it); a wildcard or
// a bare port adds nothing.
func TestIngestCertOptions(t *testing.T) {
	for _, tc := range []struct {
		ingest string
		want   string
	}{
		{"127.0.0.1:9443", "127.0.0.1"},
		{"[::1]:9443", "::1"},
		{":9443", ""},
		{"0.0.0.0:9443", ""},
		{"[::]:9443", ""},
		{"localhost:9443", ""},
		{"9443", ""},
	} {
		got := ingestCertOptions(tc.ingest).IPs
		switch {
		case tc.want == "" && len(got) != 0:
			t.Errorf("%q: IPs %v, want none", tc.ingest, got)
		case tc.want != "" && (len(got) != 1 || !got[0].Equal(net.ParseIP(tc.want))):
			t.Errorf("%q: IPs %v, want [%s]", tc.ingest, got, tc.want)
		}
	}
}
