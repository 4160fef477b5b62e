//go:build linux

package nodeagent

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// runProbe runs one probe asked through the API server with the
// standalone agent's probe code (node.Node.Probe: a connection from inside
// the source pod's netns, from a probe source port kept out of the
// observed graph). What a probe may do: start in a pod of this node whose
// netns the agent found, and go to an address of a pod or a Service of the
// cluster (the agent's inventory); anything else is refused with an error
// naming the field, and nothing is sent.
func (a *Agent) runProbe(ctx context.Context, req ProbeRequest) v1alpha1.NanoSegmentProbeStatus {
	st := v1alpha1.NanoSegmentProbeStatus{Outcome: v1alpha1.ProbeError, Agent: "nanoseg node " + a.cfg.NodeName}
	fail := func(format string, args ...any) v1alpha1.NanoSegmentProbeStatus {
		st.Detail = fmt.Sprintf(format, args...)
		if len(st.Detail) > 1024 {
			st.Detail = st.Detail[:1024]
		}
		return st
	}
	if age := time.Since(req.Created); !req.Created.IsZero() && age > ProbeMaxAge {
		return fail("not run: created %s ago, more than %s (its requester has given up)", age.Round(time.Second), ProbeMaxAge)
	}
	if !a.Ready() {
		return fail("not run: node agent of %s has not synced its caches yet", a.cfg.NodeName)
	}
	src, ok := a.inv.Endpoint(invkube.NetnsKey(req.Namespace, req.Spec.Pod))
	if !ok || src.Path == "" {
		return fail("spec.pod: %s/%s is not a pod of node %s whose network namespace the agent found", req.Namespace, req.Spec.Pod, a.cfg.NodeName)
	}
	addr, err := netip.ParseAddr(req.Spec.Address)
	if err != nil {
		return fail("spec.address: %q: %v", req.Spec.Address, err)
	}
	addr = addr.Unmap()
	if !a.clusterAddress(addr) {
		return fail("spec.address: %s is neither a pod's nor a Service's address in the cluster: probes reach only those", addr)
	}
	proto := string(req.Spec.Protocol)
	if proto != "TCP" && proto != "UDP" {
		return fail("spec.protocol: %q is not TCP or UDP", proto)
	}
	if req.Spec.Port < 1 || req.Spec.Port > 65535 {
		return fail("spec.port: %d is not between 1 and 65535", req.Spec.Port)
	}
	ms := req.Spec.TimeoutMilliseconds
	if ms == 0 {
		ms = v1alpha1.ProbeDefaultTimeout
	}
	if ms < v1alpha1.ProbeMinTimeoutMS || ms > v1alpha1.ProbeMaxTimeoutMS {
		return fail("spec.timeoutMilliseconds: %d is not between %d and %d", ms, v1alpha1.ProbeMinTimeoutMS, v1alpha1.ProbeMaxTimeoutMS)
	}
	start := time.Now()
	o := a.node.Probe(ctx, src, proto, netip.AddrPortFrom(addr, uint16(req.Spec.Port)), time.Duration(ms)*time.Millisecond)
	st.DurationMicroseconds = time.Since(start).Microseconds()
	at := metav1.NewMicroTime(start)
	st.Started = &at
	st.Outcome, st.Reached, st.Detail = o.Outcome, o.Reached, o.Detail
	if len(st.Detail) > 1024 {
		st.Detail = st.Detail[:1024]
	}
	return st
}

// clusterAddress reports whether addr is a pod's or a Service's address
// in the agent's inventory.
func (a *Agent) clusterAddress(addr netip.Addr) bool {
	if _, ok := a.inv.Lookup(addr); ok {
		return true
	}
	for _, s := range a.inv.Services() {
		for _, sa := range s.Addrs {
			if sa.Unmap() == addr {
				return true
			}
		}
	}
	return false
}
