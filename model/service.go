package model

import "net/netip"

// Service is a virtual address in front of endpoints: a Kubernetes Service
// with its ClusterIPs and, per port, the backends its EndpointSlices list.
// A client's packet to a Service address leaves the client's network
// namespace before kube-proxy translates it, so the client's egress rules
// judge it by the backends behind it (compile package).
//
// JSON: {"namespace":"shop","name":"api","addrs":["198.18.128.10"],
// "ports":[{"name":"http","protocol":"TCP","port":80,
// "backends":[{"addr":"198.18.0.2","port":8080}]}]}.
type Service struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Addrs are the Service's ClusterIPs (one per IP family); a headless
	// Service has none and needs no translation.
	Addrs []netip.Addr  `json:"addrs"`
	Ports []ServicePort `json:"ports,omitempty"`
}

// Key returns "namespace/name".
func (s Service) Key() string { return s.Namespace + "/" + s.Name }

// ServicePort is one port of a Service: what clients connect to
// (Protocol, Port) and the ready backends it translates to.
type ServicePort struct {
	Name     string           `json:"name,omitempty"`
	Protocol Protocol         `json:"protocol"`
	Port     uint16           `json:"port"`
	Backends []ServiceBackend `json:"backends,omitempty"`
}

// ServiceBackend is one backend of a Service port: a pod address and the
// port number the Service's targetPort resolved to on that pod (as the
// EndpointSlice lists it).
type ServiceBackend struct {
	Addr netip.Addr `json:"addr"`
	Port uint16     `json:"port"`
}
