package host

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/model"
)

// LabSource is the inventory of a running lab (see package lab), read from
// the lab's plan: every workload replica is an endpoint; externals are not
// endpoints (nanoseg does not manage them) but their addresses are known
// by DNS name. This file is the only one outside cmd/ and e2e/ that
// imports package lab.
type LabSource struct {
	Config lab.Config
	Name   string // the lab's name
}

// List implements inventory.Source.
func (s LabSource) List(context.Context) (inventory.Snapshot, error) {
	eps, nss, ext, err := labInventory(s.Config, s.Name)
	if err != nil {
		return inventory.Snapshot{}, fmt.Errorf("read lab inventory: %w", err)
	}
	return inventory.Snapshot{Endpoints: eps, Namespaces: nss, Externals: ext}, nil
}

// Watch implements inventory.Source: a lab's plan changes only through `nanoseg lab`
// and the network namespaces it creates are seen by the netns watch
// (NetnsSource), so it waits for ctx and returns nil.
func (LabSource) Watch(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}

// Dir returns the lab's state directory, which exists while the lab is up.
func (s LabSource) Dir() string { return s.Config.Dir(s.Name) }

// LockPath is where an agent managing the lab keeps its lock: beside the
// lab's state directory, not in it, because `lab down` removes the
// directory and the lock must outlive a lab re-created under a running
// agent.
func (s LabSource) LockPath() string {
	return filepath.Join(s.Config.StateDir, "."+s.Name+".agent.lock")
}

// labInventory reads the plan of the running lab name.
func labInventory(c lab.Config, name string) ([]model.Endpoint, map[string]map[string]string, map[netip.Addr]string, error) {
	p, err := lab.LoadPlan(c, name)
	if err != nil {
		return nil, nil, nil, err
	}
	nss := map[string]map[string]string{}
	for _, n := range p.Topology.Namespaces {
		nss[n.Name] = inventory.WithNamespaceName(n.Name, n.Labels)
	}
	ext := map[netip.Addr]string{}
	var eps []model.Endpoint
	for _, e := range p.Endpoints {
		if e.External {
			ext[e.IPv4], ext[e.IPv6] = e.DNSName, e.DNSName
			continue
		}
		ep := model.Endpoint{Netns: e.Netns, Path: "/run/netns/" + e.Netns, Namespace: e.Namespace, Workload: e.Workload,
			Labels: e.Labels, Addrs: []netip.Addr{e.IPv4, e.IPv6}}
		for _, pt := range e.Ports {
			ep.Ports = append(ep.Ports, model.ContainerPort{Name: pt.Name, Port: int32(pt.Port), Protocol: model.Protocol(pt.Protocol)})
		}
		eps = append(eps, ep)
	}
	return eps, nss, ext, nil
}
