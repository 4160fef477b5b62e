package kube

// Verify and evidence export against a cluster. The bundle is assembled
// by controller.Service.Export in the CLI's process over the snapshot
// (policies in force, the hash-chained history as the promotions hold
// it, the NanoSegments' in-sync state) with live probes run by the node
// agents (probes.go), and signed with the key of the machine that
// exports (Config.EvidenceDir): the CLI holds no cluster secret, and an
// auditor pins that key with `evidence verify --public-key`. To what the
// standalone bundle holds it adds cluster.json: the API objects in force
// as the API server gave them to the exporter.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/server"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/nanoseg/nanoseg/controller"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// ClusterFile is the bundle file with the cluster's API objects.
const ClusterFile = "cluster.json"

// ClusterObjects is cluster.json: what the API server held, in the
// export's scope, when the CLI read it.
type ClusterObjects struct {
	// ReadAt is when the CLI read the objects.
	ReadAt time.Time `json:"readAt"`
	// NanoSegments are the NanoSegments with their status: per node, the
	// endpoints selected and in sync, the node's last error; the denied
	// and audit-denied counts; the conditions.
	NanoSegments []v1alpha1.NanoSegment `json:"nanoSegments"`
	// Nodes is the in-sync state per node and NanoSegment, from the
	// NanoSegments' status.nodes.
	Nodes []NodeState `json:"nodes"`
	// Promotions are the NanoSegmentPromotions with their records (the
	// history's hash chain, also in history.json) and requesters.
	Promotions []v1alpha1.NanoSegmentPromotion `json:"promotions"`
	// NetworkPolicies are the NetworkPolicies in force.
	NetworkPolicies []networkingv1.NetworkPolicy `json:"networkPolicies"`
	// ClusterNetworkPolicies are the ClusterNetworkPolicies in force
	// (policy.networking.k8s.io/v1alpha2, cluster-scoped: every one,
	// whatever the scope, since each may apply to it), sorted by name;
	// empty when the cluster does not serve the kind.
	ClusterNetworkPolicies []cnpv1alpha2.ClusterNetworkPolicy `json:"clusterNetworkPolicies"`
	// ClusterNetworkPoliciesUnread, when set, says why the exporter could
	// not read them (the list above is then empty, not "none").
	ClusterNetworkPoliciesUnread string `json:"clusterNetworkPoliciesUnread,omitempty"`
}

// NodeState is one NanoSegment's state on one node.
type NodeState struct {
	Node        string `json:"node"`
	NanoSegment string `json:"nanoSegment"` // namespace/name
	Mode        string `json:"mode"`
	Generation  int64  `json:"generation"`
	// ObservedGeneration is the generation the status describes.
	ObservedGeneration int64  `json:"observedGeneration"`
	Endpoints          int32  `json:"endpoints"`
	InSync             int32  `json:"inSync"`
	Error              string `json:"error,omitempty"`
	// RuleHits and DefaultHits are the node's kernel counters of the
	// NanoSegment's endpoints (status.nodes[].ruleHits, defaultHits), as
	// its node agent last reported them.
	RuleHits    []v1alpha1.RuleHits    `json:"ruleHits,omitempty"`
	DefaultHits []v1alpha1.DefaultHits `json:"defaultHits,omitempty"`
}

// scoped reports whether namespace ns and workload w ("" for a
// namespace-wide object) are in scope ("" everything, a namespace, or
// namespace/workload).
func scoped(scope, ns, w string) bool {
	if scope == "" || scope == ns {
		return true
	}
	sns, sw, ok := strings.Cut(scope, "/")
	return ok && sns == ns && (w == "" || w == sw)
}

// evidenceFiles is controller.Config.EvidenceFiles: cluster.json and the
// notes that say what a cluster bundle holds.
func (s *Session) evidenceFiles(_ context.Context, scope string) (map[string][]byte, []string, error) {
	co := ClusterObjects{ReadAt: s.snap.at.UTC(), NanoSegments: []v1alpha1.NanoSegment{}, Nodes: []NodeState{},
		Promotions: []v1alpha1.NanoSegmentPromotion{}, NetworkPolicies: []networkingv1.NetworkPolicy{},
		ClusterNetworkPolicies: append([]cnpv1alpha2.ClusterNetworkPolicy{}, s.snap.cnps...)}
	if s.snap.cnpErr != nil {
		co.ClusterNetworkPoliciesUnread = s.snap.cnpErr.Error()
	}
	keys := make([]string, 0, len(s.snap.segments))
	for k := range s.snap.segments {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		seg := s.snap.segments[k]
		ns, w, _ := strings.Cut(k, "/")
		if !scoped(scope, ns, w) {
			continue
		}
		seg.ManagedFields = nil
		co.NanoSegments = append(co.NanoSegments, seg)
		mode := string(seg.Spec.Mode)
		if mode == "" {
			mode = "observe"
		}
		for _, n := range seg.Status.Nodes {
			co.Nodes = append(co.Nodes, NodeState{Node: n.Node, NanoSegment: seg.Namespace + "/" + seg.Name, Mode: mode, Generation: seg.Generation,
				ObservedGeneration: seg.Status.ObservedGeneration, Endpoints: n.Endpoints, InSync: n.InSync, Error: n.Error,
				RuleHits: n.RuleHits, DefaultHits: n.DefaultHits})
		}
	}
	sort.Slice(co.Nodes, func(i, j int) bool {
		if co.Nodes[i].Node != co.Nodes[j].Node {
			return co.Nodes[i].Node < co.Nodes[j].Node
		}
		return co.Nodes[i].NanoSegment < co.Nodes[j].NanoSegment
	})
	for _, p := range s.snap.promotions {
		if scoped(scope, p.Namespace, p.Spec.Workload) {
			p.ManagedFields = nil
			co.Promotions = append(co.Promotions, p)
		}
	}
	sort.Slice(co.Promotions, func(i, j int) bool {
		a, b := co.Promotions[i], co.Promotions[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	for _, np := range s.snap.netpols {
		if scoped(scope, np.Namespace, "") {
			np.ManagedFields = nil
			co.NetworkPolicies = append(co.NetworkPolicies, np)
		}
	}
	raw, err := json.MarshalIndent(co, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", ClusterFile, err)
	}
	notes := []string{
		fmt.Sprintf("exported from a Kubernetes cluster by the CLI at %s: %s holds the API objects in force as the API server gave them to the exporter (NanoSegments with their status, in-sync state per node, NanoSegmentPromotions with their records, NetworkPolicies, ClusterNetworkPolicies)",
			co.ReadAt.Format(time.RFC3339), ClusterFile),
		"rules.json: per endpoint, the in-sync state the NanoSegments' status reports; the programmed entries stay on the node agents, so rules.json lists no entries",
		"counters: the per-node, per-rule kernel counters are in " + ClusterFile + " (nodes[].ruleHits, defaultHits, as the node agents last reported them, at most --counters-interval old); counters.json sums them per workload (each workload's on its first endpoint); workloads without a NanoSegment have none",
		"denied flows: the NanoSegments' status in " + ClusterFile + " counts denied and audit-denied connections and keeps the latest kinds of attempt aggregated (status.verdicts: count, first and last seen); the single events stay on the node agents",
	}
	return map[string][]byte{ClusterFile: append(raw, '\n')}, notes, nil
}

// verify answers POST /v1/verify with api (the server's handler: the
// service's Verify, whose probes go to the node agents) once the user
// may create probes.
func (s *Session) verify(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, err := s.mayProbe(r.Context(), "verify"); err != nil {
			answer(func(*http.Request) (any, int, error) { return nil, code, err })(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// export answers POST /v1/evidence/export as the agent does (a gzip tar
// and the bundle's headers), recording the user the API server
// authenticated as the requester.
func (s *Session) export(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, err error) {
		answer(func(*http.Request) (any, int, error) { return nil, code, err })(w, r)
	}
	if s.evidenceErr != nil {
		fail(http.StatusInternalServerError, s.evidenceErr)
		return
	}
	var req controller.ExportRequest
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			fail(http.StatusBadRequest, fmt.Errorf("request body: %v", err))
			return
		}
	}
	if !req.NoProbes {
		if code, err := s.mayProbe(r.Context(), "evidence export (without --no-probes)"); err != nil {
			fail(code, err)
			return
		}
	}
	res, err := s.svc.Export(r.Context(), req, s.whoAmI(r.Context(), errors.New("")))
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, controller.ErrInvalid) {
			code = http.StatusBadRequest
		}
		fail(code, err)
		return
	}
	server.WriteBundle(w, res)
}
