package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command tree with args and returns stdout and the error.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestConfigPrecedence checks the documented order: defaults < config file
// < NANOSEG_* environment < flags.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(file, []byte("log:\n  level: warn\n  format: json\nlab:\n  stateDir: /tmp/from-file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "config", "show", "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"level: warn", "format: json", "stateDir: /tmp/from-file", "# config file: " + file} {
		if !strings.Contains(out, want) {
			t.Errorf("file only: output lacks %q:\n%s", want, out)
		}
	}
	t.Setenv("NANOSEG_LOG_LEVEL", "error")
	t.Setenv("NANOSEG_LAB_STATEDIR", "/tmp/from-env")
	out, err = runCLI(t, "config", "show", "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"level: error", "format: json", "stateDir: /tmp/from-env"} {
		if !strings.Contains(out, want) {
			t.Errorf("env over file: output lacks %q:\n%s", want, out)
		}
	}
	out, err = runCLI(t, "config", "show", "--config", file, "--log-level", "debug")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "level: debug") {
		t.Errorf("flag over env: output lacks level: debug:\n%s", out)
	}
}

func TestConfigRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct{ yaml, want string }{
		"unknown key": {"log:\n  colour: red\n", "colour"},
		"bad level":   {"log:\n  level: loud\n", `log.level: "loud" is not one of`},
		"relative":    {"lab:\n  stateDir: run/lab\n", "lab.stateDir"},
		"not yaml":    {"log: [\n", "config file"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(c.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := runCLI(t, "config", "show", "--config", file)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
	if _, err := runCLI(t, "config", "show", "--log-format", "xml"); err == nil || !strings.Contains(err.Error(), "log.format") {
		t.Errorf("bad flag value: got %v", err)
	}
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "nanoseg ") || !strings.Contains(out, "commit") {
		t.Fatalf("version: %q, %v", out, err)
	}
}

func TestConfigRefusesUnknownEnvironment(t *testing.T) {
	t.Setenv("NANOSEG_AGENT_FLUSHINTERVALL", "5s")
	_, err := runCLI(t, "config", "show")
	if err == nil || !strings.Contains(err.Error(), "NANOSEG_AGENT_FLUSHINTERVALL: no such setting") {
		t.Fatalf("misspelt variable: got %v", err)
	}
}

// The agent's container runtimes: a list in the config file, refused with
// its index when a URI is malformed; the repeatable flag overrides the file.
func TestConfigContainers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte("agent:\n  containers:\n    - podman:///run/podman/podman.sock\n    - docker:///var/run/docker.sock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "config", "show", "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "- podman:///run/podman/podman.sock\n") || !strings.Contains(out, "- docker:///var/run/docker.sock\n") {
		t.Errorf("config show lacks the two runtimes:\n%s", out)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("agent:\n  containers: [podman:///ok.sock, podman://host/x.sock]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "config", "show", "--config", bad); err == nil || !strings.Contains(err.Error(), "agent.containers[1]") {
		t.Errorf("malformed URI: got %v, want an error naming agent.containers[1]", err)
	}
}

// TestConfigEmptyContainers: `--containers ""` is refused naming
// agent.containers[i] (viper would read it as no runtime at all, and the
// agent would start without the runtime the user meant).
func TestConfigEmptyContainers(t *testing.T) {
	dir := t.TempDir()
	_, err := runCLI(t, "agent", "--containers", "podman:///run/podman/podman.sock", "--containers", "", "--socket", filepath.Join(dir, "a.sock"),
		"--state-file", filepath.Join(dir, "state.db"), "--metrics-addr", "")
	if err == nil || !strings.Contains(err.Error(), "agent.containers[1]") || !strings.Contains(err.Error(), "empty") {
		t.Errorf(`--containers "": got %v, want an error naming agent.containers[1] empty`, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
		t.Error("the agent opened its state file before refusing its flags")
	}
}

// TestConfigEmptyContainersAlone: a lone `--containers ""` too (pflag's
// String form of it is "[]", no item).
func TestConfigEmptyContainersAlone(t *testing.T) {
	dir := t.TempDir()
	_, err := runCLI(t, "agent", "--containers", "", "--socket", filepath.Join(dir, "a.sock"), "--state-file", filepath.Join(dir, "state.db"), "--metrics-addr", "")
	if err == nil || !strings.Contains(err.Error(), "agent.containers[0]") {
		t.Errorf(`--containers "": got %v, want an error naming agent.containers[0]`, err)
	}
}
