package containerd

import nscontainers "github.com/nanoseg/nanoseg/inventory/containers"

// init registers the "containerd" scheme of runtime URIs
// (containerd:///run/containerd/containerd.sock?namespace=NS) with
// package containers: Open.
func init() { nscontainers.Register("containerd", Open) }
