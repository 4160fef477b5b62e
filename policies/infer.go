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

// selectorKeyPriority orders label keys when choosing the smallest selector:
// well-known naming keys first, then the rest by name.
var selectorKeyPriority = []string{"app.kubernetes.io/name", "app", "k8s-app", "name", "app.kubernetes.io/component", "component", "tier", "role", "app.kubernetes.io/instance", "release", "version"}

// LabelNamespaceName is the label the API server puts on every namespace.
const LabelNamespaceName = "kubernetes.io/metadata.name"

// inferEdge is a model.Edge as inference reads it: protocol and port as a
// policy can name them (ICMPv6 is ICMP, whose "port" is 0), and the keys of
// both ends.
type inferEdge struct {
	model.Edge
	proto      model.Protocol
	port       int32
	srcK, dstK string
}

// peerKey returns the inference key of a peer: the normalized identity's
// Key for a workload, the DNS name or address for an external peer.
func peerKey(p model.Peer) string {
	if p.External {
		return p.ExternalKey()
	}
	return p.Identity().NormalKey()
}

// inferable returns e as inference reads it, and false for edges a policy
// cannot name (a protocol other than TCP, UDP, SCTP, ICMP, ICMPv6, or an end
// that is neither a workload nor a named or addressed external peer).
func inferable(e model.Edge) (inferEdge, bool) {
	ie := inferEdge{Edge: e, proto: e.Protocol, port: int32(e.Port)}
	switch e.Protocol {
	case model.ProtocolTCP, model.ProtocolUDP, model.ProtocolSCTP:
	case "":
		ie.proto = model.ProtocolTCP
	case model.ProtocolICMP, model.ProtocolICMPv6:
		ie.proto, ie.port = model.ProtocolICMP, 0
	default:
		return ie, false
	}
	for _, p := range []model.Peer{e.Source, e.Destination} {
		if p.External && p.Name == "" && !p.Addr.IsValid() {
			return ie, false
		}
	}
	ie.srcK, ie.dstK = peerKey(e.Source), peerKey(e.Destination)
	return ie, true
}

// key returns "<source> -> <destination> <PROTO>/<port>".
func (e inferEdge) key() string {
	return fmt.Sprintf("%s -> %s %s/%d", e.srcK, e.dstK, e.proto, e.port)
}

// identityIndex knows every identity by namespace and finds the smallest
// selector for each.
type identityIndex struct {
	byNS map[string]map[string]model.Identity
	sel  map[string]selResult
}

type selResult struct {
	labels map[string]string
	ok     bool
}

func newIdentityIndex() *identityIndex {
	return &identityIndex{byNS: map[string]map[string]model.Identity{}, sel: map[string]selResult{}}
}

func (x *identityIndex) add(i model.Identity) {
	i = i.Normalize()
	m := x.byNS[i.Namespace]
	if m == nil {
		m = map[string]model.Identity{}
		x.byNS[i.Namespace] = m
	}
	m[i.Key()] = i
}

// selector returns the smallest set of i's labels that no other known
// identity of its namespace carries entirely, trying keys in
// selectorKeyPriority order; ok is false when none exists (another identity's
// labels include all of i's), and all labels are returned.
func (x *identityIndex) selector(i model.Identity) (map[string]string, bool) {
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
	var others []model.Identity
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
	id    model.Identity
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
func Propose(observed []model.Edge, identities []model.Identity) []v1alpha1.NanoSegment {
	edges := make([]inferEdge, 0, len(observed))
	for _, e := range observed {
		if ie, ok := inferable(e); ok {
			edges = append(edges, ie)
		}
	}
	idx := newIdentityIndex()
	for _, i := range identities {
		idx.add(i)
	}
	segs := map[string]*segAcc{}
	seg := func(i model.Identity) *segAcc { // i is normalized
		k := i.Key()
		s := segs[k]
		if s == nil {
			s = &segAcc{id: i, rules: [2]map[string]*ruleAcc{{}, {}}}
			segs[k] = s
		}
		return s
	}
	for _, e := range edges {
		if !e.Source.External {
			idx.add(e.Source.Identity())
		}
		if !e.Destination.External {
			idx.add(e.Destination.Identity())
		}
	}
	add := func(s *segAcc, dir model.Direction, peerKey string, peer func() (v1alpha1.Peer, string), e inferEdge, edgeKey string) {
		r := s.rules[dir.Index()][peerKey]
		if r == nil {
			p, id := peer()
			r = &ruleAcc{peer: p, peerID: id, ports: map[string]v1alpha1.Port{}, edges: map[string]bool{}}
			s.rules[dir.Index()][peerKey] = r
		}
		proto := e.proto
		pk := string(proto) + "/" + fmt.Sprintf("%05d", e.port)
		if _, ok := r.ports[pk]; !ok {
			port := v1alpha1.Port{Protocol: proto}
			if proto != model.ProtocolICMP || e.port != 0 {
				port.Port = intOrStringPtr(intstr.FromInt32(e.port))
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
		r.flows += int64(e.Flows)
	}
	for _, e := range edges {
		src, dst := e.Source.Identity().Normalize(), e.Destination.Identity().Normalize()
		srcK, dstK := e.srcK, e.dstK
		edgeKey := e.key()
		// Egress of the source.
		if !e.Source.External {
			if !e.Destination.External {
				add(seg(src), model.Egress, dstK, func() (v1alpha1.Peer, string) { return idx.identityPeer(dst, src.Namespace) }, e, edgeKey)
			} else {
				ext := e.Destination
				add(seg(src), model.Egress, dstK, func() (v1alpha1.Peer, string) { return externalPeer(ext) }, e, edgeKey)
			}
		}
		// Ingress of the destination.
		if !e.Destination.External {
			if e.Source.External {
				ext := e.Source
				ext.Name = "" // ingress peers are matched by address
				add(seg(dst), model.Ingress, ext.ExternalKey(), func() (v1alpha1.Peer, string) { return externalPeer(ext) }, e, edgeKey)
			} else {
				add(seg(dst), model.Ingress, srcK, func() (v1alpha1.Peer, string) { return idx.identityPeer(src, dst.Namespace) }, e, edgeKey)
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
		ns.Spec.Ingress = buildRules(s.rules[model.Ingress.Index()], "from")
		ns.Spec.Egress = buildRules(s.rules[model.Egress.Index()], "to")
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
func (x *identityIndex) identityPeer(i model.Identity, policyNS string) (v1alpha1.Peer, string) {
	sel, _ := x.selector(i)
	p := v1alpha1.Peer{PodSelector: &metav1.LabelSelector{MatchLabels: sel}}
	id := segmentName(sel, i.Key())
	if i.Namespace != policyNS {
		p.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{LabelNamespaceName: i.Namespace}}
		id = i.Namespace + "-" + id
	}
	return p, id
}

// externalPeer returns the policy peer of external peer e: its DNS name
// when known, else its address as a /32 or /128.
func externalPeer(e model.Peer) (v1alpha1.Peer, string) {
	if e.Name != "" {
		return v1alpha1.Peer{DNSName: normalizeDNS(e.Name)}, normalizeDNS(e.Name)
	}
	return v1alpha1.Peer{IPBlock: &v1alpha1.IPBlock{CIDR: netip.PrefixFrom(e.Addr, e.Addr.BitLen()).String()}}, e.Addr.String()
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
