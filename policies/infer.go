package policies

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
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

// selectorKeyPriority orders label keys when choosing the smallest selector:
// well-known naming keys first, then the rest by name.
var selectorKeyPriority = []string{"app.kubernetes.io/name", "app", "k8s-app", "name", "app.kubernetes.io/component", "component", "tier", "role", "app.kubernetes.io/instance", "release", "version"}

// LabelNamespaceName is the label the API server puts on every namespace.
const LabelNamespaceName = "kubernetes.io/metadata.name"

// Identity is a workload identity: a namespace and identity labels.
type Identity struct {
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// IdentityLabels returns labels without NoiseLabels.
func IdentityLabels(labels map[string]string) map[string]string {
	out := maps.Clone(labels)
	for _, k := range NoiseLabels {
		delete(out, k)
	}
	return out
}

// Normalize returns the identity with noise labels dropped.
func (i Identity) Normalize() Identity {
	return Identity{Namespace: i.Namespace, Labels: IdentityLabels(i.Labels)}
}

// Key returns "namespace{k=v,...}" with sorted labels; equal identities have
// equal keys.
func (i Identity) Key() string {
	keys := slices.Sorted(maps.Keys(i.Labels))
	parts := make([]string, len(keys))
	for j, k := range keys {
		parts[j] = k + "=" + i.Labels[k]
	}
	return i.Namespace + "{" + strings.Join(parts, ",") + "}"
}

// External is a peer outside the workloads: a DNS name the observer saw the
// address resolved from, and/or the address.
type External struct {
	DNSName string     `json:"dnsName,omitempty"`
	Address netip.Addr `json:"address,omitzero"`
}

// Key returns the DNS name when known, else the address.
func (e External) Key() string {
	if e.DNSName != "" {
		return normalizeDNS(e.DNSName)
	}
	return e.Address.String()
}

// Edge is flows aggregated by source, destination, protocol and destination
// port over a window. Exactly one of Destination and External is set;
// SourceExternal replaces Source for connections from outside.
type Edge struct {
	Source         Identity       `json:"source"`
	SourceExternal *External      `json:"sourceExternal,omitempty"`
	Destination    *Identity      `json:"destination,omitempty"`
	External       *External      `json:"external,omitempty"`
	Protocol       model.Protocol `json:"protocol"`
	Port           int32          `json:"port"`
	FirstSeen      time.Time      `json:"firstSeen"`
	LastSeen       time.Time      `json:"lastSeen"`
	Flows          int64          `json:"flows"`
	Bytes          int64          `json:"bytes"`
}

func (e Edge) srcKey() string {
	if e.SourceExternal != nil {
		return e.SourceExternal.Key()
	}
	return e.Source.Normalize().Key()
}

func (e Edge) dstKey() string {
	if e.Destination != nil {
		return e.Destination.Normalize().Key()
	}
	if e.External != nil {
		return e.External.Key()
	}
	return "?"
}

// Key returns "<source> -> <destination> <PROTO>/<port>".
func (e Edge) Key() string {
	return fmt.Sprintf("%s -> %s %s/%d", e.srcKey(), e.dstKey(), e.protocol(), e.Port)
}

func (e Edge) protocol() model.Protocol {
	if e.Protocol == "" {
		return model.ProtocolTCP
	}
	return e.Protocol
}

// identityIndex knows every identity by namespace and finds the smallest
// selector for each.
type identityIndex struct {
	byNS map[string]map[string]Identity
	sel  map[string]selResult
}

type selResult struct {
	labels map[string]string
	ok     bool
}

func newIdentityIndex() *identityIndex {
	return &identityIndex{byNS: map[string]map[string]Identity{}, sel: map[string]selResult{}}
}

func (x *identityIndex) add(i Identity) {
	i = i.Normalize()
	m := x.byNS[i.Namespace]
	if m == nil {
		m = map[string]Identity{}
		x.byNS[i.Namespace] = m
	}
	m[i.Key()] = i
}

// selector returns the smallest set of i's labels that no other known
// identity of its namespace carries entirely, trying keys in
// selectorKeyPriority order; ok is false when none exists (another identity's
// labels include all of i's), and all labels are returned.
func (x *identityIndex) selector(i Identity) (map[string]string, bool) {
	i = i.Normalize()
	key := i.Key()
	if r, ok := x.sel[key]; ok {
		return r.labels, r.ok
	}
	keys := slices.SortedFunc(maps.Keys(i.Labels), func(a, b string) int {
		pa, pb := slices.Index(selectorKeyPriority, a), slices.Index(selectorKeyPriority, b)
		if pa < 0 {
			pa = len(selectorKeyPriority)
		}
		if pb < 0 {
			pb = len(selectorKeyPriority)
		}
		return cmp.Or(cmp.Compare(pa, pb), strings.Compare(a, b))
	})
	var others []Identity
	for k, o := range x.byNS[i.Namespace] {
		if k != key {
			others = append(others, o)
		}
	}
	exclusive := func(sub []string) bool {
		for _, o := range others {
			all := true
			for _, k := range sub {
				if v, ok := o.Labels[k]; !ok || v != i.Labels[k] {
					all = false
					break
				}
			}
			if all {
				return false
			}
		}
		return true
	}
	var found []string
	if len(others) == 0 {
		if len(keys) > 0 {
			found = keys[:1]
		}
	} else {
		maxSize := min(len(keys), 4)
		for size := 1; size <= maxSize && found == nil; size++ {
			combinations(len(keys), size, func(idx []int) bool {
				sub := make([]string, size)
				for j, n := range idx {
					sub[j] = keys[n]
				}
				if exclusive(sub) {
					found = sub
					return false
				}
				return true
			})
		}
	}
	ok := found != nil || (len(others) == 0)
	if found == nil {
		found = keys
		ok = ok && exclusive(keys)
	}
	s := map[string]string{}
	for _, k := range found {
		s[k] = i.Labels[k]
	}
	x.sel[key] = selResult{s, ok}
	return s, ok
}

// combinations calls f with each size-k subset of [0, n) in lexicographic
// order until f returns false.
func combinations(n, k int, f func([]int) bool) {
	idx := make([]int, k)
	for i := range idx {
		idx[i] = i
	}
	for {
		if !f(idx) {
			return
		}
		i := k - 1
		for i >= 0 && idx[i] == n-k+i {
			i--
		}
		if i < 0 {
			return
		}
		idx[i]++
		for j := i + 1; j < k; j++ {
			idx[j] = idx[j-1] + 1
		}
	}
}

// AnnotationSelectorAmbiguous is set on a proposed NanoSegment whose
// identity's labels are all carried by another identity of its namespace,
// so no label selector selects it alone.
const AnnotationSelectorAmbiguous = "nanoseg.io/selector-ambiguous"

type ruleAcc struct {
	peer   v1alpha1.Peer
	peerID string
	ports  map[string]v1alpha1.Port
	edges  map[string]bool
	first  time.Time
	last   time.Time
	flows  int64
}

type segAcc struct {
	id    Identity
	rules [2]map[string]*ruleAcc
}

// Propose infers one NanoSegment per workload identity from the edges of a
// window. identities lists every known identity (observed or not), so each
// selector is the smallest label set that selects exactly its identity among
// them. Replicas collapse onto their identity (NoiseLabels dropped). Each
// segment has one ingress rule per source and one egress rule per
// destination, with exactly the observed destination ports (the resolver the
// workload used appears as its own egress rule on port 53); external peers
// are named by DNS name when the observer saw one, else by address (/32 or
// /128). Every rule's provenance lists its edges, first and last seen and
// flow count. Segments are in mode observe, isolate both directions, and are
// sorted by namespace and name: the same edges always give the same output.
func Propose(edges []Edge, identities []Identity) []v1alpha1.NanoSegment {
	idx := newIdentityIndex()
	for _, i := range identities {
		idx.add(i)
	}
	segs := map[string]*segAcc{}
	seg := func(i Identity) *segAcc { // i is normalized
		k := i.Key()
		s := segs[k]
		if s == nil {
			s = &segAcc{id: i, rules: [2]map[string]*ruleAcc{{}, {}}}
			segs[k] = s
		}
		return s
	}
	for _, e := range edges {
		if e.SourceExternal == nil {
			idx.add(e.Source)
		}
		if e.Destination != nil {
			idx.add(*e.Destination)
		}
	}
	add := func(s *segAcc, dir Direction, peerKey string, peer func() (v1alpha1.Peer, string), e Edge, edgeKey string) {
		r := s.rules[dir][peerKey]
		if r == nil {
			p, id := peer()
			r = &ruleAcc{peer: p, peerID: id, ports: map[string]v1alpha1.Port{}, edges: map[string]bool{}}
			s.rules[dir][peerKey] = r
		}
		proto := e.protocol()
		pk := string(proto) + "/" + fmt.Sprintf("%05d", e.Port)
		if _, ok := r.ports[pk]; !ok {
			port := v1alpha1.Port{Protocol: proto}
			if proto != model.ProtocolICMP || e.Port != 0 {
				port.Port = intOrStringPtr(intstr.FromInt32(e.Port))
			}
			r.ports[pk] = port
		}
		r.edges[edgeKey] = true
		if r.first.IsZero() || (!e.FirstSeen.IsZero() && e.FirstSeen.Before(r.first)) {
			r.first = e.FirstSeen
		}
		if e.LastSeen.After(r.last) {
			r.last = e.LastSeen
		}
		r.flows += e.Flows
	}
	for _, e := range edges {
		if e.Destination == nil && e.External == nil {
			continue
		}
		var src, dst Identity
		var srcK, dstK string
		if e.SourceExternal == nil {
			src = e.Source.Normalize()
			srcK = src.Key()
		} else {
			srcK = e.SourceExternal.Key()
		}
		if e.Destination != nil {
			dst = e.Destination.Normalize()
			dstK = dst.Key()
		} else {
			dstK = e.External.Key()
		}
		edgeKey := fmt.Sprintf("%s -> %s %s/%d", srcK, dstK, e.protocol(), e.Port)
		// Egress of the source.
		if e.SourceExternal == nil {
			if e.Destination != nil {
				add(seg(src), Egress, dstK, func() (v1alpha1.Peer, string) { return idx.identityPeer(dst, src.Namespace) }, e, edgeKey)
			} else {
				ext := *e.External
				add(seg(src), Egress, dstK, func() (v1alpha1.Peer, string) { return externalPeer(ext) }, e, edgeKey)
			}
		}
		// Ingress of the destination.
		if e.Destination != nil {
			if e.SourceExternal != nil {
				ext := *e.SourceExternal
				ext.DNSName = "" // ingress peers are matched by address
				add(seg(dst), Ingress, ext.Key(), func() (v1alpha1.Peer, string) { return externalPeer(ext) }, e, edgeKey)
			} else {
				add(seg(dst), Ingress, srcK, func() (v1alpha1.Peer, string) { return idx.identityPeer(src, dst.Namespace) }, e, edgeKey)
			}
		}
	}
	var out []v1alpha1.NanoSegment
	names := map[string]map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(segs)) {
		s := segs[k]
		sel, ok := idx.selector(s.id)
		ns := v1alpha1.NanoSegment{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.Kind},
			ObjectMeta: metav1.ObjectMeta{Namespace: s.id.Namespace},
		}
		if !ok {
			ns.Annotations = map[string]string{AnnotationSelectorAmbiguous: "another identity of the namespace carries all of " + s.id.Key()}
		}
		ns.Name = uniqueName(names, s.id.Namespace, segmentName(sel, s.id.Key()), s.id.Key())
		ns.Spec.Selector = metav1.LabelSelector{MatchLabels: sel}
		ns.Spec.Mode = model.ModeObserve
		ns.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		ns.Spec.Ingress = buildRules(s.rules[Ingress], "from")
		ns.Spec.Egress = buildRules(s.rules[Egress], "to")
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b v1alpha1.NanoSegment) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

func buildRules(acc map[string]*ruleAcc, prefix string) []v1alpha1.Rule {
	var rules []v1alpha1.Rule
	ids := map[string]bool{}
	for _, pk := range slices.Sorted(maps.Keys(acc)) {
		r := acc[pk]
		rule := v1alpha1.Rule{Peers: []v1alpha1.Peer{r.peer}}
		for _, k := range slices.Sorted(maps.Keys(r.ports)) {
			rule.Ports = append(rule.Ports, r.ports[k])
		}
		id := sanitizeID(prefix + "-" + r.peerID)
		if ids[id] {
			id = sanitizeID(id[:min(len(id), 54)] + "-" + shortHash(pk))
		}
		ids[id] = true
		rule.ID = id
		rule.Provenance.Observed = &v1alpha1.Observed{
			Edges:     slices.Sorted(maps.Keys(r.edges)),
			FirstSeen: metav1.NewTime(r.first.UTC()),
			LastSeen:  metav1.NewTime(r.last.UTC()),
			Flows:     r.flows,
		}
		rules = append(rules, rule)
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].ID < rules[j].ID })
	return rules
}

// identityPeer returns the peer selecting identity i from a policy in
// namespace policyNS, and a readable id part.
func (x *identityIndex) identityPeer(i Identity, policyNS string) (v1alpha1.Peer, string) {
	sel, _ := x.selector(i)
	p := v1alpha1.Peer{PodSelector: &metav1.LabelSelector{MatchLabels: sel}}
	id := segmentName(sel, i.Key())
	if i.Namespace != policyNS {
		p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{LabelNamespaceName: i.Namespace}}
		id = i.Namespace + "-" + id
	}
	return p, id
}

func externalPeer(e External) (v1alpha1.Peer, string) {
	if e.DNSName != "" {
		return v1alpha1.Peer{DNSName: normalizeDNS(e.DNSName)}, normalizeDNS(e.DNSName)
	}
	return v1alpha1.Peer{IPBlock: &v1alpha1.IPBlock{CIDR: netip.PrefixFrom(e.Address, e.Address.BitLen()).String()}}, e.Address.String()
}

var nonID = regexp.MustCompile(`[^a-z0-9]+`)

func sanitizeID(s string) string {
	s = strings.Trim(nonID.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 63 {
		s = strings.Trim(s[:54], "-") + "-" + shortHash(s)
	}
	if s == "" {
		s = "x"
	}
	return s
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// segmentName is the values of sel joined by "-" in key order, or a hash of
// the identity when sel is empty.
func segmentName(sel map[string]string, idKey string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		parts = append(parts, sel[k])
	}
	if len(parts) == 0 {
		return "all-" + shortHash(idKey)
	}
	return sanitizeID(strings.Join(parts, "-"))
}

func uniqueName(names map[string]map[string]bool, ns, name, idKey string) string {
	if names[ns] == nil {
		names[ns] = map[string]bool{}
	}
	if names[ns][name] {
		name = sanitizeID(name[:min(len(name), 50)] + "-" + shortHash(idKey))
	}
	for n := 2; names[ns][name]; n++ {
		name = sanitizeID(name + "-" + strconv.Itoa(n))
	}
	names[ns][name] = true
	return name
}
