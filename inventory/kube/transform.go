package kube

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The informers keep in their caches only what a snapshot reads: 10,000
// pods of a cluster cost their identity, labels, controller owner,
// addresses and declared ports, not their managedFields, annotations,
// volumes, images and conditions. Each function builds a new object from
// the fields it keeps; applied to its own output it returns an equal
// object (client-go requires transforms to be idempotent).

// transform trims the objects of the source's informers (a
// cache.TransformFunc); other objects pass unchanged.
func transform(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return trimPod(o), nil
	case *corev1.Namespace:
		return &corev1.Namespace{ObjectMeta: trimMeta(o.ObjectMeta)}, nil
	case *corev1.Service:
		return trimService(o), nil
	case *discoveryv1.EndpointSlice:
		return trimSlice(o), nil
	case *corev1.Node:
		return trimNode(o), nil
	}
	return obj, nil
}

// trimMeta keeps identity, labels, resource version and timestamps.
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion,
		Labels: m.Labels, CreationTimestamp: m.CreationTimestamp, DeletionTimestamp: m.DeletionTimestamp,
	}
}

// trimPod keeps the controller owner, node, host network flag, the
// declared ports (declaredPorts, kept as one container's), phase and
// addresses, and a mirror pod's MirrorAnnotation (its static pod's UID).
func trimPod(p *corev1.Pod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: trimMeta(p.ObjectMeta)}
	if h, ok := p.Annotations[MirrorAnnotation]; ok {
		out.Annotations = map[string]string{MirrorAnnotation: h}
	}
	if c := metav1.GetControllerOfNoCopy(p); c != nil {
		out.OwnerReferences = []metav1.OwnerReference{{APIVersion: c.APIVersion, Kind: c.Kind, Name: c.Name, UID: c.UID, Controller: c.Controller}}
	}
	out.Spec.NodeName = p.Spec.NodeName
	out.Spec.HostNetwork = p.Spec.HostNetwork
	var ports []corev1.ContainerPort
	for _, p := range declaredPorts(p) {
		ports = append(ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
	}
	if len(ports) > 0 {
		out.Spec.Containers = []corev1.Container{{Ports: ports}}
	}
	out.Status.Phase = p.Status.Phase
	out.Status.PodIP = p.Status.PodIP
	if len(p.Status.PodIPs) > 0 {
		out.Status.PodIPs = make([]corev1.PodIP, len(p.Status.PodIPs))
		for i, ip := range p.Status.PodIPs {
			out.Status.PodIPs[i] = corev1.PodIP{IP: ip.IP}
		}
	}
	return out
}

// trimService keeps type, ClusterIPs and ports.
func trimService(s *corev1.Service) *corev1.Service {
	out := &corev1.Service{ObjectMeta: trimMeta(s.ObjectMeta)}
	out.ObjectMeta.Labels = nil
	out.Spec.Type = s.Spec.Type
	out.Spec.ClusterIP = s.Spec.ClusterIP
	out.Spec.ClusterIPs = s.Spec.ClusterIPs
	if len(s.Spec.Ports) > 0 {
		out.Spec.Ports = make([]corev1.ServicePort, len(s.Spec.Ports))
		for i, p := range s.Spec.Ports {
			out.Spec.Ports[i] = corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port}
		}
	}
	return out
}

// trimSlice keeps the service-name label, address type, ports and each
// endpoint's addresses and ready condition.
func trimSlice(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
	out := &discoveryv1.EndpointSlice{ObjectMeta: trimMeta(s.ObjectMeta), AddressType: s.AddressType, Ports: s.Ports}
	if svc, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		out.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
	} else {
		out.Labels = nil
	}
	if len(s.Endpoints) > 0 {
		out.Endpoints = make([]discoveryv1.Endpoint, len(s.Endpoints))
		for i, e := range s.Endpoints {
			out.Endpoints[i] = discoveryv1.Endpoint{Addresses: e.Addresses, Conditions: discoveryv1.EndpointConditions{Ready: e.Conditions.Ready}}
		}
	}
	return out
}

// trimNode keeps identity, labels and the InternalIP and ExternalIP
// addresses: what a ClusterNetworkPolicy nodes peer selects and matches,
// not the images, conditions and capacity.
func trimNode(n *corev1.Node) *corev1.Node {
	out := &corev1.Node{ObjectMeta: trimMeta(n.ObjectMeta)}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out.Status.Addresses = append(out.Status.Addresses, corev1.NodeAddress{Type: a.Type, Address: a.Address})
		}
	}
	return out
}
