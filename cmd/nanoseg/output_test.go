package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUnknownOutputRefused: every command with --output refuses a format
// it does not write, naming the ones it does, before it reads a file or
// asks the agent (none runs here: the socket does not exist).
func TestUnknownOutputRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("agent: {socket: "+filepath.Join(dir, "none.sock")+"}\nlab: {stateDir: "+dir+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status"}, {"history"}, {"verdicts"}, {"policy", "show"}, {"lab", "status"}, {"verify"}, {"policy", "diff"},
		{"policy", "explain", "--from", "a/b", "--to", "c/d", "--port", "1/TCP"},
	} {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(append([]string{"--config", cfg}, args...), "-o", "xml"))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), `--output: "xml" is not`) {
			t.Errorf("%v -o xml: %v, want a refusal of the format\n%s", args, err, out.String())
		}
	}
}
