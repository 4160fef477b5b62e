package engine

import (
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
