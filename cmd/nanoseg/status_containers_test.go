package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
)

// TestPrintContainers: `nanoseg status` names an unreachable runtime with
// since when and why, and every container not enforced; nothing when all
// runtimes answer and every container is enforced.
func TestPrintContainers(t *testing.T) {
	var b bytes.Buffer
	printContainers(&b, controller.ContainerStatus{Runtimes: []controller.RuntimeStatus{{Name: "podman unix:///run/podman/podman.sock", Reachable: true, Endpoints: 3}}})
	if b.Len() != 0 {
		t.Errorf("all well, printed %q", b.String())
	}
	printContainers(&b, controller.ContainerStatus{
		Runtimes: []controller.RuntimeStatus{
			{Name: "podman unix:///run/podman/podman.sock", Reachable: true},
			{Name: "docker unix:///var/run/docker.sock", Since: time.Now().Add(-90 * time.Second), Error: "connect: connection refused", Endpoints: 2},
		},
		NotEnforced: []controller.NotEnforced{{Runtime: "podman unix:///run/podman/podman.sock", Container: "node-exporter", Reason: "uses the host's network"}},
	})
	want := "\ncontainer runtime docker unix:///var/run/docker.sock: unreachable for 1m30s: connect: connection refused; its 2 last known endpoints keep their rules as they are\n" +
		"\ncontainers not enforced:\n  node-exporter (podman unix:///run/podman/podman.sock): uses the host's network\n"
	if b.String() != want {
		t.Errorf("printed:\n%q\nwant\n%q", b.String(), want)
	}
}
