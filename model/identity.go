package model

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// NoiseLabels are pod labels that differ between replicas or revisions of
// one workload and so never identify it: they are dropped from identities.
var NoiseLabels = []string{
	"pod-template-hash",
	"controller-revision-hash",
	"pod-template-generation",
	"statefulset.kubernetes.io/pod-name",
	"apps.kubernetes.io/pod-index",
	"controller-uid",
	"batch.kubernetes.io/controller-uid",
	"batch.kubernetes.io/job-completion-index",
}

// IdentityLabels returns a copy of labels without NoiseLabels (nil for nil).
func IdentityLabels(labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	for _, k := range NoiseLabels {
		delete(out, k)
	}
	return out
}

// Identity is a workload identity (docs/architecture.md "Words"): a namespace, the
// workload's name, and its identity labels. Replicas of one workload share
// one Identity. Policies select identities by Namespace and Labels; the
// Workload name is for people and keys of the graph.
//
// JSON: {"namespace":"shop","workload":"api","labels":{"app":"api"}}.
type Identity struct {
	Namespace string            `json:"namespace,omitempty"`
	Workload  string            `json:"workload,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Normalize returns the identity with noise labels dropped (a copy).
func (i Identity) Normalize() Identity {
	return Identity{Namespace: i.Namespace, Workload: i.Workload, Labels: IdentityLabels(i.Labels)}
}

// Key returns "namespace{k=v,...}" with sorted labels: what a selector
// sees of the identity (the workload name is not part of it). Normalized
// identities with equal keys are selected by the same policies.
func (i Identity) Key() string { return i.key(false) }

// NormalKey returns i.Normalize().Key() without copying the labels.
func (i Identity) NormalKey() string { return i.key(true) }

func (i Identity) key(skipNoise bool) string {
	keys := make([]string, 0, len(i.Labels))
	n := len(i.Namespace) + 2
	for k, v := range i.Labels {
		if skipNoise && slices.Contains(NoiseLabels, k) {
			continue
		}
		keys = append(keys, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	var b strings.Builder
	b.Grow(n)
	b.WriteString(i.Namespace)
	b.WriteByte('{')
	for j, k := range keys {
		if j > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(i.Labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// String returns "namespace/workload".
func (i Identity) String() string { return i.Namespace + "/" + i.Workload }

// Peer is the other side of a flow or one end of an edge: a workload
// identity, or an external peer named by the DNS name a workload asked for
// (Name) or, where no answer was seen, by its address (Addr). An external
// peer may carry both.
//
// JSON: {"namespace":"shop","workload":"api","labels":{...}} for a
// workload; {"external":true,"name":"payments.example"} or
// {"external":true,"addr":"198.19.0.10"} for an external peer.
type Peer struct {
	Namespace string            `json:"namespace,omitempty"`
	Workload  string            `json:"workload,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	External  bool              `json:"external,omitempty"`
	Name      string            `json:"name,omitempty"`
	Addr      netip.Addr        `json:"addr,omitzero"`
}

// Identity returns the workload identity of a workload peer (zero for an
// external peer).
func (p Peer) Identity() Identity {
	if p.External {
		return Identity{}
	}
	return Identity{Namespace: p.Namespace, Workload: p.Workload, Labels: p.Labels}
}

// String is "namespace/workload", the DNS name, or the address.
func (p Peer) String() string {
	switch {
	case !p.External:
		return p.Namespace + "/" + p.Workload
	case p.Name != "":
		return p.Name
	}
	return p.Addr.String()
}

// ExternalKey returns an external peer's key: its DNS name (lower case,
// without the trailing dot) when known, else its address.
func (p Peer) ExternalKey() string {
	if p.Name != "" {
		return strings.ToLower(strings.TrimSuffix(p.Name, "."))
	}
	return p.Addr.String()
}
