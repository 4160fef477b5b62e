// Package containers makes the containers of a host's own runtimes
// (Podman and Docker through the Docker Engine API, containerd through its
// own API) endpoints of the standalone agent: an inventory.Source built
// from one or more Runtimes.
//
// This file is the seam between the runtime clients and the mapping to
// endpoints: a Runtime lists Containers in a runtime-neutral shape and says
// when the list may have changed; the Source (in this package) turns them
// into model.Endpoints (netns, addresses, identity from labels, ports).
package containers

import (
	"context"

	"github.com/nanoseg/nanoseg/model"
)

// Container is one container as its runtime reports it, before nanoseg
// maps it to an endpoint.
type Container struct {
	// Runtime names the runtime that reported it: "docker", "podman" or
	// "containerd" (with the containerd namespace, "containerd/<ns>").
	Runtime string
	// ID is the runtime's container ID; Name its name ("" when the
	// runtime has none, as containerd).
	ID, Name string
	// Image is the image reference the container runs.
	Image string
	// Labels are the container's labels as the runtime stores them, noise
	// included (the mapping drops it).
	Labels map[string]string
	// Running is true while the container's task or process runs; the
	// mapping lists only running containers.
	Running bool
	// Pid is the container's main process ID on the host (0 when not
	// running).
	Pid int
	// NetnsPath is the path of its network namespace: the runtime's
	// sandbox key (/run/netns/netns-<uuid> for Podman, /var/run/docker/
	// netns/<id> for Docker) or /proc/<pid>/ns/net; "" when unknown.
	NetnsPath string
	// HostNetwork is true for a container on the host's network (no netns
	// of its own): reported, never enforced.
	HostNetwork bool
	// NetnsOf is the ID of the container whose netns this one joins
	// (Podman pods' infra container, compose `network_mode: service:x`,
	// `--network container:x`); "" when it has its own.
	NetnsOf string
	// Ports are the ports the container declares (exposed or published),
	// by container port.
	Ports []model.ContainerPort
	// Pod is the name of the Podman pod the container belongs to, "" when
	// none (or when the runtime does not say). Added by the Podman/Docker
	// runtime; the mapping takes it as the workload of the pod's netns
	// when no label names one.
	Pod string
}

// Runtime is one container runtime on this host, reached over its local
// socket.
type Runtime interface {
	// Name says which runtime and socket, for logs and errors
	// ("podman unix:///run/podman/podman.sock").
	Name() string
	// Containers lists the runtime's containers now, running or not. An
	// error means the runtime could not be reached or answered wrongly.
	Containers(ctx context.Context) ([]Container, error)
	// Watch calls notify whenever Containers may answer differently
	// (start, stop, die, destroy, rename, network connect; calls may be
	// coalesced or spurious), until ctx ends; it returns nil then, or the
	// error that stopped its event stream (callers then list
	// periodically).
	Watch(ctx context.Context, notify func()) error
}
