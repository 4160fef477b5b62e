package model

import "net/netip"

// ContainerPort is a port a pod's container (an endpoint) declares; named
// ports of policies resolve against it at the destination, as NetworkPolicy
// does.
type ContainerPort struct {
	Name     string   `json:"name,omitempty"`
	Port     int32    `json:"port"`
	Protocol Protocol `json:"protocol"`
}

// Endpoint is one network namespace of a container or pod with its
// addresses and the workload it belongs to (docs/architecture.md "Words"): what the
// inventory lists, the observer watches and the dataplane programs.
//
// JSON: {"netns":"nanoseg-lab-shop-api-0","path":"/run/netns/…",
// "netnsInode":4026532512,"namespace":"shop","workload":"api",
// "labels":{"app":"api"},"addrs":["198.18.0.2"],"ports":[…]}.
type Endpoint struct {
	// Netns is the name under /run/netns; Path its bind mount.
	Netns string `json:"netns"`
	Path  string `json:"path"`
	// NetnsInode identifies the namespace behind Path (its nsfs inode): a
	// namespace deleted and created again under the same name is a new
	// endpoint. 0 when unknown.
	NetnsInode uint64 `json:"netnsInode,omitempty"`
	// Namespace and Workload name the workload; Labels are the endpoint's
	// own (pod) labels, noise included (Identity drops the noise).
	Namespace string            `json:"namespace"`
	Workload  string            `json:"workload"`
	Labels    map[string]string `json:"labels,omitempty"`
	// Addrs are the endpoint's own addresses; the observer reads them from
	// the netns when nil.
	Addrs []netip.Addr `json:"addrs"`
	// Ports are the endpoint's declared container ports.
	Ports []ContainerPort `json:"ports,omitempty"`
}

// Key returns "namespace/workload".
func (e Endpoint) Key() string { return e.Namespace + "/" + e.Workload }

// Identity returns the endpoint's workload identity, noise labels removed.
func (e Endpoint) Identity() Identity {
	return Identity{Namespace: e.Namespace, Workload: e.Workload, Labels: IdentityLabels(e.Labels)}
}
