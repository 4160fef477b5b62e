package host

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
)

// LabelsFileSource is the inventory of named network namespaces described
// by a labels file (see LabelsFile). Endpoints without addresses in the
// file get the addresses found in their netns (Linux).
type LabelsFileSource struct {
	Path string
}

// List implements inventory.Source: it re-reads the file each time.
func (s LabelsFileSource) List(context.Context) (inventory.Snapshot, error) {
	eps, nss, err := ReadLabelsFile(s.Path)
	if err != nil {
		return inventory.Snapshot{}, err
	}
	for i := range eps {
		if len(eps[i].Addrs) == 0 {
			eps[i].Addrs, _ = NetnsAddrs(eps[i].Path)
		}
	}
	return inventory.Snapshot{Endpoints: eps, Namespaces: nss}, nil
}

// Watch implements inventory.Source: the file is re-read on each List (the caller's
// periodic refresh); new namespaces are seen by the netns watch
// (NetnsSource). It waits for ctx and returns nil.
func (LabelsFileSource) Watch(ctx context.Context, _ func()) error {
	<-ctx.Done()
	return nil
}

// LabelsFile is the YAML file that describes named network namespaces not
// made by a lab: which workload each one is, with labels and ports.
//
//	namespaces: [{name: shop, labels: {team: shop}}]
//	endpoints:
//	  - netns: web-1                 # name under /run/netns
//	    namespace: shop
//	    workload: web
//	    labels: {app: web}
//	    addrs: [198.18.1.5]          # optional; read from the netns if absent
//	    ports: [{name: http, port: 8080, protocol: TCP}]
type LabelsFile struct {
	Namespaces []struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"namespaces"`
	Endpoints []struct {
		Netns     string            `yaml:"netns"`
		Namespace string            `yaml:"namespace"`
		Workload  string            `yaml:"workload"`
		Labels    map[string]string `yaml:"labels"`
		Addrs     []string          `yaml:"addrs"`
		Ports     []struct {
			Name     string `yaml:"name"`
			Port     int32  `yaml:"port"`
			Protocol string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"endpoints"`
}

// ReadLabelsFile parses a LabelsFile at path, refusing unknown fields, and
// returns its endpoints (addresses from the file; fill the rest with
// addresses read from the netns) and namespaces. Errors name the file and
// the field.
func ReadLabelsFile(path string) ([]model.Endpoint, map[string]map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read labels file: %w", err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	var f LabelsFile
	if err := dec.Decode(&f); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	nss := map[string]map[string]string{}
	for _, n := range f.Namespaces {
		nss[n.Name] = inventory.WithNamespaceName(n.Name, n.Labels)
	}
	var eps []model.Endpoint
	seen := map[string]bool{}
	for i, e := range f.Endpoints {
		p := fmt.Sprintf("%s: endpoints[%d]", path, i)
		if e.Netns == "" || strings.Contains(e.Netns, "/") {
			errs = append(errs, fmt.Errorf("%s.netns: %q must be a name under /run/netns", p, e.Netns))
		}
		if seen[e.Netns] {
			errs = append(errs, fmt.Errorf("%s.netns: duplicate %q", p, e.Netns))
		}
		seen[e.Netns] = true
		if e.Namespace == "" || e.Workload == "" {
			errs = append(errs, fmt.Errorf("%s: namespace and workload are required", p))
		}
		if _, ok := nss[e.Namespace]; !ok && e.Namespace != "" {
			nss[e.Namespace] = inventory.WithNamespaceName(e.Namespace, nil)
		}
		ep := model.Endpoint{Netns: e.Netns, Path: "/run/netns/" + e.Netns, Namespace: e.Namespace, Workload: e.Workload, Labels: e.Labels}
		for j, a := range e.Addrs {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.addrs[%d]: %q is not an IP address", p, j, a))
				continue
			}
			ep.Addrs = append(ep.Addrs, addr)
		}
		for j, pt := range e.Ports {
			proto := strings.ToUpper(pt.Protocol)
			if proto == "" {
				proto = "TCP"
			}
			if pt.Port < 1 || pt.Port > 65535 {
				errs = append(errs, fmt.Errorf("%s.ports[%d].port: %d is out of range 1-65535", p, j, pt.Port))
			}
			ep.Ports = append(ep.Ports, model.ContainerPort{Name: pt.Name, Port: pt.Port, Protocol: model.Protocol(proto)})
		}
		eps = append(eps, ep)
	}
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return eps, nss, nil
}
