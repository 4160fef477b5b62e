// Package engine is a containers.Runtime over the Docker Engine API, as
// Docker serves it and as Podman serves it (`podman system service`, or
// the systemd socket /run/podman/podman.sock).
//
// Client: github.com/moby/moby/client, the Engine API's own Go client
// split out of the Docker repository (the former github.com/docker/docker
// client, which pulls in the whole daemon module). It negotiates the API
// version with a ping: Podman 4.3's compat API answers 1.41, within the
// client's 1.40 minimum (docs/architecture.md "Containers on one host").
//
// List: one /containers/json (all) and one /containers/{id}/json per
// running container (sandbox key, pid, network mode, labels, exposed
// ports). Podman's compat API does not say which pod a container is in:
// against Podman the runtime also reads /libpod/containers/json for pod
// names (best effort: without it, pods are grouped by their netns all the
// same, only not named by the pod). Watch: /events filtered to container
// events.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/nanoseg/nanoseg/inventory/containers"
	"github.com/nanoseg/nanoseg/model"
)

// Runtime is one Docker Engine API endpoint (Docker or Podman) on a local
// unix socket.
type Runtime struct {
	kind   string // "docker" or "podman"
	socket string // the socket's path
	cli    *client.Client
	libpod *http.Client // Podman's own API on the same socket
}

// New returns a Runtime for the engine of kind ("docker" or "podman")
// listening on the unix socket at path. It does not connect: a runtime
// that is not up yet is an error of Containers, not of New. Errors: an
// unknown kind or a relative path.
func New(kind, path string) (*Runtime, error) {
	if kind != "docker" && kind != "podman" {
		return nil, fmt.Errorf("engine runtime: kind %q is not docker or podman", kind)
	}
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("engine runtime: socket %q must be an absolute path", path)
	}
	cli, err := client.New(client.WithHost("unix://"+path), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("engine runtime %s: %w", path, err)
	}
	r := &Runtime{kind: kind, socket: path, cli: cli}
	if kind == "podman" {
		r.libpod = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", path)
			}}}
	}
	return r, nil
}

// Name implements containers.Runtime: "podman unix:///run/podman/podman.sock".
func (r *Runtime) Name() string { return r.kind + " unix://" + r.socket }

// Close releases the client's idle connections.
func (r *Runtime) Close() error { return r.cli.Close() }

// Containers implements containers.Runtime. A container removed between
// the list and its inspection is left out.
func (r *Runtime) Containers(ctx context.Context) ([]containers.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	list, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", r.Name(), r.connErr(err))
	}
	pods := r.podNames(ctx)
	var out []containers.Container
	for _, s := range list.Items {
		c := containers.Container{Runtime: r.kind, ID: s.ID, Image: s.Image, Labels: s.Labels, Pod: pods[s.ID]}
		if len(s.Names) > 0 {
			c.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		// A paused container keeps its netns and its processes: it stays
		// an endpoint (its inspection says Running, as Docker does).
		if s.State != container.StateRunning && s.State != container.StatePaused {
			out = append(out, c)
			continue
		}
		in, err := r.cli.ContainerInspect(ctx, s.ID, client.ContainerInspectOptions{})
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("inspect container %s of %s: %w", c.Name, r.Name(), r.connErr(err))
		}
		fromInspect(&c, in.Container)
		out = append(out, c)
	}
	return out, nil
}

// connErr rewords an error of the Engine API client that could not reach
// the socket: the client's own words say "the docker API" or "the Docker
// daemon" whatever the URI, which misleads for podman://. It returns an
// error naming the runtime, the socket, a hint for that runtime and the
// dial error underneath (wrapped); any other error unchanged.
func (r *Runtime) connErr(err error) error {
	if !client.IsErrConnectionFailed(err) {
		return err
	}
	hint := "is dockerd running?"
	if r.kind == "podman" {
		hint = "is the Podman API service running? `podman system service --time=0` or `systemctl enable --now podman.socket`"
	}
	if errors.Is(err, fs.ErrPermission) || strings.Contains(err.Error(), "permission denied") {
		hint = "permission denied: the agent runs as root or a user allowed on the socket"
	}
	var cause error = errors.New("connection failed")
	var op *net.OpError
	if errors.As(err, &op) {
		cause = op
	}
	return fmt.Errorf("cannot reach %s at unix://%s (%s): %w", r.kind, r.socket, hint, cause)
}

// fromInspect fills c from the container's inspection.
func fromInspect(c *containers.Container, in container.InspectResponse) {
	if in.State != nil {
		c.Running = in.State.Running || in.State.Paused
		c.Pid = in.State.Pid
	}
	if in.NetworkSettings != nil {
		c.NetnsPath = in.NetworkSettings.SandboxKey
	}
	if in.HostConfig != nil {
		mode := in.HostConfig.NetworkMode
		c.HostNetwork = mode.IsHost()
		if mode.IsContainer() {
			c.NetnsOf = mode.ConnectedContainer()
		}
	}
	if in.Config != nil {
		if in.Config.Labels != nil {
			c.Labels = in.Config.Labels
		}
		for p := range in.Config.ExposedPorts {
			proto := model.Protocol(strings.ToUpper(string(p.Proto())))
			c.Ports = append(c.Ports, model.ContainerPort{Port: int32(p.Num()), Protocol: proto})
		}
	}
	// A container joining another by name (`--network container:NAME`)
	// names it as given; the Source matches IDs. Docker and Podman both
	// answer with the ID; a name is left as is (the Source then treats
	// the container as holding its own netns, from its sandbox key).
}

// podNames maps container IDs to their Podman pod's name, from Podman's
// own API (/libpod/containers/json); empty against Docker or on any
// failure (pods are then grouped by netns without their name).
func (r *Runtime) podNames(ctx context.Context) map[string]string {
	if r.libpod == nil {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d/v4.0.0/libpod/containers/json?all=true", nil)
	if err != nil {
		return nil
	}
	resp, err := r.libpod.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	var list []struct {
		ID      string `json:"Id"`
		PodName string `json:"PodName"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&list); err != nil {
		return nil
	}
	out := map[string]string{}
	for _, c := range list {
		if c.PodName != "" {
			out[c.ID] = c.PodName
		}
	}
	return out
}

// ignoredActions are container events that never change what Containers
// answers.
var ignoredActions = []string{"exec_", "attach", "detach", "resize", "top", "health_status", "export", "copy", "archive-path", "commit"}

// Watch implements containers.Runtime over /events (type container). It
// returns nil when ctx ends, or the error that ended the stream.
func (r *Runtime) Watch(ctx context.Context, notify func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := r.cli.Events(ctx, client.EventsListOptions{Filters: make(client.Filters).Add("type", string(events.ContainerEventType))})
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-res.Err:
			if ctx.Err() != nil {
				return nil
			}
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("events of %s: %w", r.Name(), r.connErr(err))
		case m := <-res.Messages:
			a := string(m.Action)
			ignored := false
			for _, p := range ignoredActions {
				if strings.HasPrefix(a, p) {
					ignored = true
					break
				}
			}
			if !ignored {
				notify()
			}
		}
	}
}

func isNotFound(err error) bool {
	return cerrdefs.IsNotFound(err) || strings.Contains(strings.ToLower(err.Error()), "no such container")
}

// init registers the "podman" and "docker" runtime URIs
// (containers.Open): podman:///run/podman/podman.sock,
// docker:///var/run/docker.sock. They take no query parameters.
func init() {
	for _, kind := range []string{"podman", "docker"} {
		containers.Register(kind, func(socket string, q url.Values) (containers.Runtime, error) {
			if len(q) > 0 {
				return nil, fmt.Errorf("%s:// takes no parameters (got %s)", kind, q.Encode())
			}
			return New(kind, socket)
		})
	}
}
