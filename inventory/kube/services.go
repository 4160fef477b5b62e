package kube

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/nanoseg/nanoseg/model"
)

// serviceIndex is the EndpointSlice informer's index by owning Service
// ("namespace/name", from the kubernetes.io/service-name label).
const serviceIndex = "service"

// sliceService indexes an EndpointSlice by its Service.
func sliceService(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

// serviceModel returns Service svc with its ClusterIPs and, per port, the
// ready backends that slices (the Service's EndpointSlices) give it, and
// whether svc is one: a headless Service (clusterIP None) and an
// ExternalName Service have no virtual address and are none.
//
// Semantics (Kubernetes API reference, EndpointSlice v1): a slice's port
// serves the Service port of the same name (both empty for the single
// unnamed port) and protocol; its number is the targetPort resolved on
// the endpoints; an endpoint whose conditions.ready is nil counts as
// ready, false (not ready, or terminating) does not. FQDN slices are
// skipped. Backends are deduplicated and sorted.
func serviceModel(svc *corev1.Service, epSlices []*discoveryv1.EndpointSlice) (model.Service, bool) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return model.Service{}, false
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	var addrs []netip.Addr
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			addrs = append(addrs, a.Unmap())
		}
	}
	if len(addrs) == 0 {
		return model.Service{}, false
	}
	out := model.Service{Namespace: svc.Namespace, Name: svc.Name, Addrs: addrs}
	for _, sp := range svc.Spec.Ports {
		if sp.Port < 1 || sp.Port > 65535 {
			continue
		}
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		mp, err := model.ParseProtocol(string(proto))
		if err != nil {
			mp = model.Protocol(proto)
		}
		port := model.ServicePort{Name: sp.Name, Protocol: mp, Port: uint16(sp.Port)}
		for _, sl := range epSlices {
			if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
				continue
			}
			target, ok := slicePort(sl, sp.Name, proto)
			if !ok {
				continue
			}
			for _, ep := range sl.Endpoints {
				if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
					continue
				}
				for _, s := range ep.Addresses {
					if a, err := netip.ParseAddr(s); err == nil {
						port.Backends = append(port.Backends, model.ServiceBackend{Addr: a.Unmap(), Port: target})
					}
				}
			}
		}
		slices.SortFunc(port.Backends, func(a, b model.ServiceBackend) int {
			if c := a.Addr.Compare(b.Addr); c != 0 {
				return c
			}
			return int(a.Port) - int(b.Port)
		})
		port.Backends = slices.Compact(port.Backends)
		out.Ports = append(out.Ports, port)
	}
	return out, true
}

// slicePort returns the port number slice sl gives the Service port
// named name with protocol proto.
func slicePort(sl *discoveryv1.EndpointSlice, name string, proto corev1.Protocol) (uint16, bool) {
	for _, p := range sl.Ports {
		pn := ""
		if p.Name != nil {
			pn = *p.Name
		}
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pn != name || !strings.EqualFold(string(pp), string(proto)) || p.Port == nil || *p.Port < 1 || *p.Port > 65535 {
			continue
		}
		return uint16(*p.Port), true
	}
	return 0, false
}
