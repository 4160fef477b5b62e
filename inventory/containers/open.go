package containers

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Opener makes the Runtime of a runtime URI (see Open) from the socket's
// absolute path and the URI's query parameters.
type Opener func(socket string, query url.Values) (Runtime, error)

var (
	openersMu sync.Mutex
	openers   = map[string]Opener{}
)

// Register makes Open answer URIs of scheme with open. The runtime
// packages register themselves from an init function: package engine
// registers "podman" and "docker"; package containerd registers
// "containerd" (as containerd.New(socket, query.Get("namespace"))). A
// second registration of a scheme replaces the first.
func Register(scheme string, open Opener) {
	openersMu.Lock()
	defer openersMu.Unlock()
	openers[scheme] = open
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	openersMu.Lock()
	defer openersMu.Unlock()
	var out []string
	for s := range openers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// ParseURI splits a runtime URI into its scheme, socket path and query:
// `podman:///run/podman/podman.sock`,
// `docker:///var/run/docker.sock`,
// `containerd:///run/containerd/containerd.sock?namespace=default`.
// The socket is an absolute path (no host part). Errors say what is
// wrong with the URI.
func ParseURI(uri string) (scheme, socket string, query url.Values, err error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", "", nil, fmt.Errorf("%q is not a URI: %w", uri, err)
	}
	if u.Scheme == "" {
		return "", "", nil, fmt.Errorf("%q has no scheme: write podman:///path/to/podman.sock, docker:///path or containerd:///path?namespace=NS", uri)
	}
	if u.Host != "" || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "", "", nil, fmt.Errorf("%q: the socket must be an absolute path after %s:// (three slashes: %s:///run/...)", uri, u.Scheme, u.Scheme)
	}
	return u.Scheme, u.Path, u.Query(), nil
}

// Open returns the Runtime of a runtime URI (ParseURI) through the Opener
// registered for its scheme. It does not connect. Errors: a malformed
// URI, or a scheme no package registered (naming those that are).
func Open(uri string) (Runtime, error) {
	scheme, socket, q, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	openersMu.Lock()
	open := openers[scheme]
	openersMu.Unlock()
	if open == nil {
		return nil, fmt.Errorf("%q: no container runtime %q in this build (known: %s)", uri, scheme, strings.Join(Schemes(), ", "))
	}
	return open(socket, q)
}
