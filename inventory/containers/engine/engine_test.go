package engine

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/inventory/containers"
)

// The podman:// and docker:// URIs open this package's runtime; a
// parameter or a relative socket is refused with the URI named.
func TestOpenURIs(t *testing.T) {
	for uri, want := range map[string]string{
		"podman:///run/podman/podman.sock": "podman unix:///run/podman/podman.sock",
		"docker:///var/run/docker.sock":    "docker unix:///var/run/docker.sock",
	} {
		rt, err := containers.Open(uri)
		if err != nil {
			t.Fatalf("Open(%q): %v", uri, err)
		}
		if rt.Name() != want {
			t.Errorf("Open(%q).Name() = %q, want %q", uri, rt.Name(), want)
		}
	}
	for uri, want := range map[string]string{
		"podman:///p.sock?namespace=x": "takes no parameters",
		"docker://host/p.sock":         "absolute path",
		"containerd:///c.sock":         `no container runtime "containerd" in this build (known: docker, podman)`,
		"/run/podman/podman.sock":      "has no scheme",
	} {
		if _, err := containers.Open(uri); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want an error with %q", uri, err, want)
		}
	}
}

// A runtime whose socket is missing says which runtime (the client's own
// words say "the docker API" whatever the URI), the socket, a hint for
// that runtime and the dial error.
func TestUnreachableNamesRuntime(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "missing.sock")
	for kind, hint := range map[string]string{"podman": "podman system service", "docker": "dockerd"} {
		r, err := New(kind, sock)
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Containers(t.Context())
		if err == nil {
			t.Fatalf("%s: Containers on a missing socket succeeded", kind)
		}
		msg := err.Error()
		if !strings.Contains(msg, "cannot reach "+kind+" at unix://"+sock) || !strings.Contains(msg, hint) || !strings.Contains(msg, "no such file") {
			t.Errorf("%s: %q, want the runtime, socket, hint %q and the dial error", kind, msg, hint)
		}
		if kind == "podman" && strings.Contains(strings.ToLower(msg), "docker") {
			t.Errorf("podman: %q names docker", msg)
		}
		_ = r.Close()
	}
}
