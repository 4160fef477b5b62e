//go:build linux

package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
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
	if _, err := readToken(nil, "127.0.0.1:9620", "agent.readTokenFile", short); err == nil || !strings.Contains(err.Error(), "agent.readTokenFile: "+short+": the token must have at least 16 characters") {
		t.Errorf("short token: %v", err)
	}
	if _, err := readToken(nil, "127.0.0.1:9620", "agent.readTokenFile", dir+"/missing"); err == nil || !strings.HasPrefix(err.Error(), "agent.readTokenFile: ") {
		t.Errorf("missing token file: %v", err)
	}
	if tok, err := readToken(nil, "", "agent.readTokenFile", dir+"/missing"); tok != "" || err != nil {
		t.Errorf("no listener: %q %v, want nothing read", tok, err)
	}

}

// TestReadTokenWarnsOfOpenModes: a token file others may read is used,
// with a warning naming the key, the file and its mode; a 0600 one
// without.
func TestReadTokenWarnsOfOpenModes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode os.FileMode
		warn bool
	}{{0o644, true}, {0o640, true}, {0o600, false}, {0o400, false}} {
		f := filepath.Join(dir, fmt.Sprintf("token-%o", tc.mode))
		if err := os.WriteFile(f, []byte("0123456789abcdefghij\n"), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, tc.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		var buf bytes.Buffer
		tok, err := readToken(slog.New(slog.NewTextHandler(&buf, nil)), "127.0.0.1:9620", "agent.tokenFile", f)
		if err != nil || tok != "0123456789abcdefghij" {
			t.Fatalf("mode %o: %q %v", tc.mode, tok, err)
		}
		out := buf.String()
		if got := strings.Contains(out, "level=WARN"); got != tc.warn {
			t.Errorf("mode %o: warned %v, want %v: %s", tc.mode, got, tc.warn, out)
		}
		if tc.warn && (!strings.Contains(out, "key=agent.tokenFile") || !strings.Contains(out, f) || !strings.Contains(out, fmt.Sprintf("mode=%#o", tc.mode))) {
			t.Errorf("mode %o: the warning does not name key, file and mode: %s", tc.mode, out)
		}
	}
}
