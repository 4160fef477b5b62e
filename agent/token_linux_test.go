//go:build linux

package agent

import (
	"os"
	"strings"
	"testing"
)

// TestReadToken: a short or missing token file is an error naming its
// key; without a TCP listener nothing is read.
func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	short := dir + "/short"
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readToken("127.0.0.1:9620", "agent.readTokenFile", short); err == nil || !strings.Contains(err.Error(), "agent.readTokenFile: "+short+": the token must have at least 16 characters") {
		t.Errorf("short token: %v", err)
	}
	if _, err := readToken("127.0.0.1:9620", "agent.readTokenFile", dir+"/missing"); err == nil || !strings.HasPrefix(err.Error(), "agent.readTokenFile: ") {
		t.Errorf("missing token file: %v", err)
	}
	if tok, err := readToken("", "agent.readTokenFile", dir+"/missing"); tok != "" || err != nil {
		t.Errorf("no listener: %q %v, want nothing read", tok, err)
	}

}
