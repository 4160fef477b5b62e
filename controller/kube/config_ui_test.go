package kube

import (
	"strings"
	"testing"
)

// TestConfigValidateUI: the page's address and TLS settings are refused
// before anything starts, each naming its key; without TLS only a
// loopback address is taken, unless uiPlaintext says otherwise.
func TestConfigValidateUI(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want string
	}{
		{c: Config{UIListen: "127.0.0.1:8080"}},
		{c: Config{UIListen: "[::1]:8080"}},
		{c: Config{UIListen: "localhost:8080"}},
		{c: Config{UIListen: ":8443", UITLSCert: "c.pem", UITLSKey: "k.pem"}},
		{c: Config{UIListen: "0.0.0.0:8080", UIPlaintext: true}},
		{c: Config{UIListen: ":8080"}, want: `controller.uiListen: ":8080" is not a loopback address and the page has no TLS`},
		{c: Config{UIListen: "198.18.0.1:8080"}, want: `controller.uiListen: "198.18.0.1:8080" is not a loopback address`},
		{c: Config{UIListen: "127.0.0.1"}, want: `controller.uiListen: "127.0.0.1": address 127.0.0.1: missing port in address`},
		{c: Config{UIListen: "127.0.0.1:99999"}, want: `controller.uiListen: "127.0.0.1:99999": port "99999" is not a number from 0 to 65535`},
		{c: Config{UIListen: ":8443", UITLSCert: "c.pem"}, want: `controller.uiTLSCert: "c.pem" and controller.uiTLSKey: "": give both or neither`},
		{c: Config{UITLSCert: "c.pem", UITLSKey: "k.pem"}, want: `controller.uiListen: empty, but the page's other settings`},
	} {
		tc.c.ID = "a"
		tc.c.Defaults()
		err := tc.c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.c, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("uiListen %q: %v, want %q", tc.c.UIListen, err, tc.want)
		}
	}
}
