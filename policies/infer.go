package policies

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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

// AnnotationSelectorAmbiguous is set on a proposed NanoSegment whose
// identity's labels are exactly another identity's of its namespace, so no
// label selector selects it alone.
const AnnotationSelectorAmbiguous = "nanoseg.io/selector-ambiguous"

// AnnotationReview is set on a proposed NanoSegment with widened rules
// (v1alpha1.Widened): the rule ids and kinds, "from-any-namespace-dns:
// dns; to-api: port-range", for a person to accept or narrow.
const AnnotationReview = "nanoseg.io/review"

// KnownWorkload is what inference knows of one workload beyond its edges:
// its identity (namespace, workload name, labels) and the ports it
// declares (the container ports of any of its endpoints).
type KnownWorkload struct {
	Identity model.Identity
	Ports    []model.ContainerPort
}

// Known is the inventory as inference sees it: every known workload,
// observed or not, and the namespaces with their labels.
type Known struct {
	Workloads  []KnownWorkload
	Namespaces []Namespace
	// Failed are edges whose every connection failed (refused or never
	// answered: a scan looks the same). They are never learned, and no
	// port range spans a port of theirs.
	Failed []model.Edge
}

// ProposeOptions are the thresholds of inference. The zero value of a
// field means its default (DefaultProposeOptions).
type ProposeOptions struct {
	// SharedMinClients is the fewest distinct client identities a server
	// port needs to count as shared (default 3).
	SharedMinClients int
	// SharedMinNamespaces: a server port with SharedMinClients clients
	// from at least this many namespaces is shared (default 2).
	SharedMinNamespaces int
	// SharedMinShare: a server port with SharedMinClients clients that are
	// at least this share (0-1] of the other known workloads is shared,
	// whatever their namespaces (default 0.5).
	SharedMinShare float64
	// RangeMinPorts is the fewest distinct ports of one protocol from one
	// peer to one server that become a range (default 3).
	RangeMinPorts int
	// RangeMaxGap bounds the ports a range may add between two seen ports
	// of a server that declares no ports of the protocol (default 4). A
	// server that declares ports gets ranges only over declared ports.
	RangeMaxGap int
	// DNSLabels select the cluster's DNS servers (any one matching
	// suffices; default: k8s-app=kube-dns, k8s-app=coredns,
	// app.kubernetes.io/name=coredns). A workload that declares UDP port
	// 53, or was seen answering on it, is a DNS server too.
	DNSLabels []map[string]string
	// NoWidening proposes exactly the observed edges: no shared-server,
	// DNS or port-range widening.
	NoWidening bool
}

// DefaultProposeOptions returns the default thresholds.
func DefaultProposeOptions() ProposeOptions {
	return ProposeOptions{
		SharedMinClients: 3, SharedMinNamespaces: 2, SharedMinShare: 0.5,
		RangeMinPorts: 3, RangeMaxGap: 4,
		DNSLabels: []map[string]string{{"k8s-app": "kube-dns"}, {"k8s-app": "coredns"}, {"app.kubernetes.io/name": "coredns"}},
	}
}

// withDefaults fills zero fields from DefaultProposeOptions.
func (o ProposeOptions) withDefaults() ProposeOptions {
	d := DefaultProposeOptions()
	if o.SharedMinClients == 0 {
		o.SharedMinClients = d.SharedMinClients
	}
	if o.SharedMinNamespaces == 0 {
		o.SharedMinNamespaces = d.SharedMinNamespaces
	}
	if o.SharedMinShare == 0 {
		o.SharedMinShare = d.SharedMinShare
	}
	if o.RangeMinPorts == 0 {
		o.RangeMinPorts = d.RangeMinPorts
	}
	if o.RangeMaxGap == 0 {
		o.RangeMaxGap = d.RangeMaxGap
	}
	if o.DNSLabels == nil {
		o.DNSLabels = d.DNSLabels
	}
	return o
}

// Validate reports every out-of-range option at once, naming the field.
func (o ProposeOptions) Validate() error {
	var errs []error
	if o.SharedMinClients < 0 {
		errs = append(errs, fmt.Errorf("sharedMinClients: %d must not be negative", o.SharedMinClients))
	}
	if o.SharedMinNamespaces < 0 {
		errs = append(errs, fmt.Errorf("sharedMinNamespaces: %d must not be negative", o.SharedMinNamespaces))
	}
	if !(o.SharedMinShare >= 0 && o.SharedMinShare <= 1) { // also NaN
		errs = append(errs, fmt.Errorf("sharedMinShare: %g must be within 0-1", o.SharedMinShare))
	}
	if o.RangeMinPorts < 0 || o.RangeMinPorts == 1 {
		errs = append(errs, fmt.Errorf("rangeMinPorts: %d must be 0 (default) or at least 2", o.RangeMinPorts))
	}
	if o.RangeMaxGap < 0 {
		errs = append(errs, fmt.Errorf("rangeMaxGap: %d must not be negative", o.RangeMaxGap))
	}
	for i, l := range o.DNSLabels {
		if len(l) == 0 {
			errs = append(errs, fmt.Errorf("dnsLabels[%d]: empty: it would make every workload a DNS server", i))
		}
	}
	return errors.Join(errs...)
}

// seenPort is a destination port as edges name it.
type seenPort struct {
	proto model.Protocol
	port  int32
}

func (p seenPort) String() string { return fmt.Sprintf("%s/%d", p.proto, p.port) }

func (p seenPort) less(q seenPort) int {
	return cmp.Or(strings.Compare(string(p.proto), string(q.proto)), cmp.Compare(p.port, q.port))
}

type ruleAcc struct {
	peer    v1alpha1.Peer
	peerID  string
	ports   map[seenPort]bool
	edges   map[string]bool
	first   time.Time
	last    time.Time
	flows   int64
	server  string // key of the server side: its declared and refused ports bound ranges
	widened map[v1alpha1.Widening]bool
	clients map[string]bool // shared-server and dns rules: the clients seen
	fixed   []seenPort      // ports the rule allows whatever was seen (dns)
	note    string
}

type segAcc struct {
	id    model.Identity
	rules [2]map[string]*ruleAcc
}

// Propose is ProposeWith with only identities known (no declared ports,
// namespaces labelled only by name) and the default options.
func Propose(observed []model.Edge, identities []model.Identity) []v1alpha1.NanoSegment {
	k := Known{}
	for _, i := range identities {
		k.Workloads = append(k.Workloads, KnownWorkload{Identity: i})
	}
	return ProposeWith(observed, k, ProposeOptions{})
}

// ProposeWith infers one NanoSegment per workload identity from the edges
// of a window. known lists every known workload (observed or not) with its
// declared ports, and the namespaces with their labels; opts are the
// thresholds (zero fields: defaults; see ProposeOptions).
//
// Selectors keep each workload's naming labels and add what tells it from
// its siblings (identityIndex.selector); each segment is named after its
// workload. Replicas collapse onto their identity (NoiseLabels dropped).
// Each segment has one ingress rule per client and one egress rule per
// destination, with the observed destination ports; external peers are
// named by DNS name when the observer saw one, else by address (/32 or
// /128). Unless opts.NoWidening, three things go beyond the edges, each
// marked in the rule's provenance (v1alpha1.Widened) and listed in the
// segment's AnnotationReview:
//   - a shared server port (at least SharedMinClients distinct clients,
//     from SharedMinNamespaces namespaces or SharedMinShare of the other
//     workloads) gets one rule for any pod of the namespaces the clients'
//     namespaces share a label with, else of the whole cluster, listing
//     the clients seen;
//   - a DNS server (DNSLabels, or UDP 53 declared or answered) is
//     reachable on UDP and TCP 53 from any pod, and every segment may
//     reach it, whether or not it resolved while observed;
//   - RangeMinPorts or more ports of one protocol from one peer become
//     ranges (endPort): over ports the server declares when it declares
//     ports of that protocol, else with at most RangeMaxGap unseen ports
//     between two seen ones; never beyond the lowest and highest seen, and
//     never over a port of known.Failed or of an observed edge whose
//     connections only failed.
//
// Edges whose every connection failed (model.Traffic.OnlyFailed) are
// never learned; handed in observed they still stop ranges, as
// known.Failed does.
//
// Every rule's provenance lists its edges, first and last seen and flow
// count. Segments are in mode observe, isolate both directions, and are
// sorted by namespace and name: the same input always gives the same
// output.
func ProposeWith(observed []model.Edge, known Known, opts ProposeOptions) []v1alpha1.NanoSegment {
	opts = opts.withDefaults()
	edges := make([]inferEdge, 0, len(observed))
	var failed []model.Edge
	for _, e := range observed {
		if e.OnlyFailed() {
			failed = append(failed, e) // never learned; no range spans it either
			continue
		}
		if ie, ok := inferable(e); ok {
			edges = append(edges, ie)
		}
	}
	refused := map[string]map[seenPort]bool{} // server key -> ports only ever failed
	for _, e := range append(failed, known.Failed...) {
		if ie, ok := inferable(e); ok {
			if refused[ie.dstK] == nil {
				refused[ie.dstK] = map[seenPort]bool{}
			}
			refused[ie.dstK][seenPort{ie.proto, ie.port}] = true
		}
	}
	idx := newIdentityIndex()
	declared := map[string][]model.ContainerPort{} // identity key -> declared ports
	for _, w := range known.Workloads {
		idx.add(w.Identity)
		k := w.Identity.NormalKey()
		declared[k] = append(declared[k], w.Ports...)
	}
	nsLabels := map[string]map[string]string{}
	for _, n := range known.Namespaces {
		nsLabels[n.Name] = n.Labels
	}
	for _, e := range edges {
		if !e.Source.External {
			idx.add(e.Source.Identity())
		}
		if !e.Destination.External {
			idx.add(e.Destination.Identity())
		}
	}
	var dns *dnsServers
	var shared map[string]map[seenPort]bool
	var sharedNS map[string][]string
	if !opts.NoWidening {
		dns = findDNS(idx, declared, edges, opts)
		shared = sharedPorts(idx, edges, opts)
		sharedNS = sharedClientNamespaces(edges, shared)
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
	add := func(s *segAcc, dir model.Direction, peerKey string, peer func() (v1alpha1.Peer, string), e inferEdge, server string) *ruleAcc {
		r := s.rules[dir.Index()][peerKey]
		if r == nil {
			p, id := peer()
			r = &ruleAcc{peer: p, peerID: id, ports: map[seenPort]bool{}, edges: map[string]bool{}, server: server,
				widened: map[v1alpha1.Widening]bool{}, clients: map[string]bool{}}
			s.rules[dir.Index()][peerKey] = r
		}
		r.ports[seenPort{e.proto, e.port}] = true
		r.edges[e.key()] = true
		if r.first.IsZero() || (!e.FirstSeen.IsZero() && e.FirstSeen.Before(r.first)) {
			r.first = e.FirstSeen
		}
		if e.LastSeen.After(r.last) {
			r.last = e.LastSeen
		}
		r.flows += int64(e.Flows)
		return r
	}
	for _, e := range edges {
		src, dst := e.Source.Identity().Normalize(), e.Destination.Identity().Normalize()
		srcK, dstK := e.srcK, e.dstK
		sp := seenPort{e.proto, e.port}
		// Egress of the source.
		if !e.Source.External {
			if !e.Destination.External {
				add(seg(src), model.Egress, dstK, func() (v1alpha1.Peer, string) { return idx.identityPeer(dst, src.Namespace) }, e, dstK)
			} else {
				ext := e.Destination
				add(seg(src), model.Egress, dstK, func() (v1alpha1.Peer, string) { return externalPeer(ext) }, e, dstK)
			}
		}
		// Ingress of the destination.
		if e.Destination.External {
			continue
		}
		switch {
		case e.Source.External:
			ext := e.Source
			ext.Name = "" // ingress peers are matched by address
			add(seg(dst), model.Ingress, ext.ExternalKey(), func() (v1alpha1.Peer, string) { return externalPeer(ext) }, e, dstK)
		case dns.serves(dstK, sp):
			r := add(seg(dst), model.Ingress, "\x00dns", func() (v1alpha1.Peer, string) {
				return v1alpha1.Peer{NamespaceSelector: &metav1.LabelSelector{}}, "any-namespace-dns"
			}, e, dstK)
			r.widened[v1alpha1.WideningDNS] = true
			r.fixed = dnsPorts
			r.clients[idx.workloadNames(src)[0]] = true
			r.note = "DNS: any pod of the cluster may resolve here, not only the clients seen"
		case shared[dstK][sp] && srcK != dstK:
			peer, id, scope := sharedPeer(sharedNS[dstK], dst.Namespace, nsLabels)
			r := add(seg(dst), model.Ingress, "\x00shared/"+id, func() (v1alpha1.Peer, string) { return peer, id }, e, dstK)
			r.widened[v1alpha1.WideningSharedServer] = true
			r.clients[idx.workloadNames(src)[0]] = true
			r.note = "shared server: " + scope + ", not only the clients seen"
		default:
			add(seg(dst), model.Ingress, srcK, func() (v1alpha1.Peer, string) { return idx.identityPeer(src, dst.Namespace) }, e, dstK)
		}
	}
	// DNS stays reachable from every proposed workload, resolved or not.
	if dns != nil {
		for _, s := range segs {
			for _, dk := range dns.keys() {
				if dk == s.id.Key() {
					continue
				}
				d := dns.ids[dk]
				r := s.rules[model.Egress.Index()][dk]
				if r == nil {
					p, id := idx.identityPeer(d, s.id.Namespace)
					r = &ruleAcc{peer: p, peerID: id, ports: map[seenPort]bool{}, edges: map[string]bool{}, server: dk,
						widened: map[v1alpha1.Widening]bool{}, clients: map[string]bool{}}
					s.rules[model.Egress.Index()][dk] = r
				}
				r.widened[v1alpha1.WideningDNS] = true
				r.fixed = dnsPorts
				r.note = "DNS: the cluster's resolver, reachable on UDP and TCP 53 whether or not the workload resolved while observed"
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
			ns.Annotations = map[string]string{AnnotationSelectorAmbiguous: "another identity of the namespace carries exactly the labels of " + s.id.Key()}
		}
		ns.Name = uniqueName(names, s.id.Namespace, idx.segmentName(s.id, sel), s.id.Key())
		ns.Spec.Selector = sel
		ns.Spec.Mode = model.ModeObserve
		ns.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		ns.Spec.Ingress = buildRules(s.rules[model.Ingress.Index()], "from", declared, refused, opts)
		ns.Spec.Egress = buildRules(s.rules[model.Egress.Index()], "to", declared, refused, opts)
		var review []string
		for _, r := range append(slices.Clone(ns.Spec.Ingress), ns.Spec.Egress...) {
			if w := r.Provenance.Widened; w != nil {
				var kinds []string
				for _, k := range w.Kinds {
					kinds = append(kinds, string(k))
				}
				review = append(review, r.ID+": "+strings.Join(kinds, ","))
			}
		}
		if len(review) > 0 {
			if ns.Annotations == nil {
				ns.Annotations = map[string]string{}
			}
			ns.Annotations[AnnotationReview] = strings.Join(review, "; ")
		}
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b v1alpha1.NanoSegment) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

// dnsPorts are the ports of a DNS server: UDP, and TCP, which resolvers
// fall back to for answers that do not fit a datagram (RFC 7766).
var dnsPorts = []seenPort{{model.ProtocolTCP, 53}, {model.ProtocolUDP, 53}}

// dnsServers are the identities inference treats as the cluster's DNS.
type dnsServers struct {
	ids map[string]model.Identity // key -> normalized identity
}

func (d *dnsServers) serves(key string, p seenPort) bool {
	if d == nil {
		return false
	}
	_, ok := d.ids[key]
	return ok && p.port == 53 && (p.proto == model.ProtocolUDP || p.proto == model.ProtocolTCP)
}

func (d *dnsServers) keys() []string {
	if d == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(d.ids))
}

// findDNS returns the DNS servers among the known identities: those that
// opts.DNSLabels select, declare UDP 53, or were seen answering on UDP 53.
func findDNS(idx *identityIndex, declared map[string][]model.ContainerPort, edges []inferEdge, opts ProposeOptions) *dnsServers {
	d := &dnsServers{ids: map[string]model.Identity{}}
	for _, m := range idx.byNS {
		for k, i := range m {
			for _, l := range opts.DNSLabels {
				if labelsMatch(i.Labels, l) {
					d.ids[k] = i
				}
			}
			for _, p := range declared[k] {
				if p.Port == 53 && p.Protocol == model.ProtocolUDP {
					d.ids[k] = i
				}
			}
		}
	}
	for _, e := range edges {
		if !e.Destination.External && !e.Source.External && e.proto == model.ProtocolUDP && e.port == 53 {
			i := e.Destination.Identity().Normalize()
			d.ids[i.Key()] = model.Identity{Namespace: i.Namespace, Labels: i.Labels}
		}
	}
	return d
}

func labelsMatch(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// sharedPorts returns, per server identity key, its shared ports: those
// with at least opts.SharedMinClients distinct client identities, from
// opts.SharedMinNamespaces namespaces or at least opts.SharedMinShare of
// the other known identities.
func sharedPorts(idx *identityIndex, edges []inferEdge, opts ProposeOptions) map[string]map[seenPort]bool {
	type sp struct {
		server string
		port   seenPort
	}
	clients := map[sp]map[string]string{} // -> client key -> namespace
	for _, e := range edges {
		if e.Source.External || e.Destination.External || e.srcK == e.dstK {
			continue
		}
		k := sp{e.dstK, seenPort{e.proto, e.port}}
		if clients[k] == nil {
			clients[k] = map[string]string{}
		}
		clients[k][e.srcK] = e.Source.Namespace
	}
	others := idx.count() - 1
	out := map[string]map[seenPort]bool{}
	for k, cs := range clients {
		if len(cs) < opts.SharedMinClients {
			continue
		}
		nss := map[string]bool{}
		for _, ns := range cs {
			nss[ns] = true
		}
		if len(nss) >= opts.SharedMinNamespaces || (others > 0 && float64(len(cs)) >= opts.SharedMinShare*float64(others)) {
			if out[k.server] == nil {
				out[k.server] = map[seenPort]bool{}
			}
			out[k.server][k.port] = true
		}
	}
	return out
}

// sharedClientNamespaces returns, per server with shared ports, the
// namespaces of the clients of those ports, sorted.
func sharedClientNamespaces(edges []inferEdge, shared map[string]map[seenPort]bool) map[string][]string {
	nss := map[string]map[string]bool{}
	for _, e := range edges {
		if !e.Source.External && e.srcK != e.dstK && shared[e.dstK][seenPort{e.proto, e.port}] {
			if nss[e.dstK] == nil {
				nss[e.dstK] = map[string]bool{}
			}
			nss[e.dstK][e.Source.Namespace] = true
		}
	}
	out := map[string][]string{}
	for k, m := range nss {
		out[k] = slices.Sorted(maps.Keys(m))
	}
	return out
}

// sharedPeer returns the peer of a shared server's rule for clients in
// namespaces clientNS: the server's own namespace when every client is
// there, the one namespace of every client, the namespaces carrying every
// label (but the name) their namespaces share, else every namespace; with
// a rule id part and a description of the scope.
func sharedPeer(clientNS []string, serverNS string, nsLabels map[string]map[string]string) (v1alpha1.Peer, string, string) {
	all := &metav1.LabelSelector{}
	if len(clientNS) == 1 {
		if clientNS[0] == serverNS {
			return v1alpha1.Peer{PodSelector: all}, "namespace", "any pod of namespace " + serverNS
		}
		return v1alpha1.Peer{PodSelector: all, NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelNamespaceName: clientNS[0]}}},
			"namespace-" + clientNS[0], "any pod of namespace " + clientNS[0]
	}
	var common map[string]string
	for i, ns := range clientNS {
		l := nsLabels[ns]
		if i == 0 {
			common = maps.Clone(l)
			delete(common, LabelNamespaceName)
			continue
		}
		for k, v := range common {
			if l[k] != v {
				delete(common, k)
			}
		}
	}
	if len(common) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(common)) {
			parts = append(parts, k+"="+common[k])
		}
		return v1alpha1.Peer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: common}}, "namespaces-" + strings.Join(parts, "-"),
			"any pod of the namespaces labelled " + strings.Join(parts, ",")
	}
	return v1alpha1.Peer{NamespaceSelector: all}, "any-namespace", "any pod of any namespace"
}

func buildRules(acc map[string]*ruleAcc, prefix string, declared map[string][]model.ContainerPort, refused map[string]map[seenPort]bool, opts ProposeOptions) []v1alpha1.Rule {
	var rules []v1alpha1.Rule
	ids := map[string]bool{}
	for _, pk := range slices.Sorted(maps.Keys(acc)) {
		r := acc[pk]
		rule := v1alpha1.Rule{Peers: []v1alpha1.Peer{r.peer}}
		seen := slices.SortedFunc(maps.Keys(r.ports), seenPort.less)
		allow := maps.Clone(r.ports)
		for _, p := range r.fixed {
			allow[p] = true
		}
		var ranged bool
		if opts.NoWidening {
			rule.Ports = singlePorts(slices.SortedFunc(maps.Keys(allow), seenPort.less))
		} else {
			rule.Ports, ranged = portRanges(slices.SortedFunc(maps.Keys(allow), seenPort.less), declared[r.server], refused[r.server], opts)
		}
		id := sanitizeID(prefix + "-" + r.peerID)
		if ids[id] {
			id = sanitizeID(id[:min(len(id), 54)] + "-" + shortHash(pk))
		}
		ids[id] = true
		rule.ID = id
		if len(r.edges) > 0 {
			rule.Provenance.Observed = &v1alpha1.Observed{
				Edges:     slices.Sorted(maps.Keys(r.edges)),
				FirstSeen: metav1.NewTime(r.first.UTC()),
				LastSeen:  metav1.NewTime(r.last.UTC()),
				Flows:     r.flows,
			}
		}
		if ranged {
			r.widened[v1alpha1.WideningPortRange] = true
			bound := "the server declares no ports of the protocol: at most " + strconv.Itoa(opts.RangeMaxGap) + " unseen ports between two seen ones"
			if len(declared[r.server]) > 0 {
				bound = "only ports the server declares"
			}
			r.note = strings.TrimPrefix(r.note+"; ", "; ") + "port ranges over the ports seen (" + bound + ")"
		}
		if len(r.widened) > 0 {
			w := &v1alpha1.Widened{Kinds: slices.Sorted(maps.Keys(r.widened)), Clients: slices.Sorted(maps.Keys(r.clients)), Note: r.note}
			if len(allow) != len(r.ports) || ranged {
				for _, p := range seen {
					w.SeenPorts = append(w.SeenPorts, p.String())
				}
				if w.SeenPorts == nil {
					w.SeenPorts = []string{}
				}
			}
			rule.Provenance.Widened = w
		}
		rules = append(rules, rule)
	}
	sort.SliceStable(rules, func(i, j int) bool { return rules[i].ID < rules[j].ID })
	return rules
}

// singlePorts returns one policy port per seen port.
func singlePorts(ps []seenPort) []v1alpha1.Port {
	var out []v1alpha1.Port
	for _, p := range ps {
		port := v1alpha1.Port{Protocol: p.proto}
		if p.proto != model.ProtocolICMP || p.port != 0 {
			port.Port = intOrStringPtr(intstr.FromInt32(p.port))
		}
		out = append(out, port)
	}
	return out
}

// portRanges returns the policy ports of seen (sorted), with ranges where
// a protocol has at least opts.RangeMinPorts seen ports: consecutive seen
// ports join one range when every port between them is declared by the
// server (when declared lists ports of that protocol), or when at most
// opts.RangeMaxGap ports lie between them (when it lists none); a run
// that joins fewer than opts.RangeMinPorts seen ports stays single ports.
// A range never spans a port in refused (connections to it only ever
// failed). ICMP is never ranged. ranged reports whether any range was made.
func portRanges(seen []seenPort, declared []model.ContainerPort, refused map[seenPort]bool, opts ProposeOptions) (out []v1alpha1.Port, ranged bool) {
	byProto := map[model.Protocol][]int32{}
	for _, p := range seen {
		byProto[p.proto] = append(byProto[p.proto], p.port)
	}
	for _, proto := range slices.Sorted(maps.Keys(byProto)) {
		ports := byProto[proto]
		if proto == model.ProtocolICMP || len(ports) < opts.RangeMinPorts {
			for _, n := range ports {
				out = append(out, singlePorts([]seenPort{{proto, n}})...)
			}
			continue
		}
		decl := map[int32]bool{}
		for _, d := range declared {
			if cmp.Or(d.Protocol, model.ProtocolTCP) == proto {
				decl[d.Port] = true
			}
		}
		joins := func(a, b int32) bool {
			if len(decl) == 0 && b-a-1 > int32(opts.RangeMaxGap) {
				return false
			}
			for n := a + 1; n < b; n++ {
				if (len(decl) > 0 && !decl[n]) || refused[seenPort{proto, n}] {
					return false
				}
			}
			return true
		}
		flush := func(run []int32) {
			if len(run) >= opts.RangeMinPorts {
				end := run[len(run)-1]
				out = append(out, v1alpha1.Port{Protocol: proto, Port: intOrStringPtr(intstr.FromInt32(run[0])), EndPort: &end})
				ranged = true
				return
			}
			for _, n := range run {
				out = append(out, singlePorts([]seenPort{{proto, n}})...)
			}
		}
		run := []int32{ports[0]}
		for _, n := range ports[1:] {
			if joins(run[len(run)-1], n) {
				run = append(run, n)
				continue
			}
			flush(run)
			run = []int32{n}
		}
		flush(run)
	}
	return out, ranged
}

// identityPeer returns the peer selecting identity i from a policy in
// namespace policyNS, and a readable id part: the workload's name.
func (x *identityIndex) identityPeer(i model.Identity, policyNS string) (v1alpha1.Peer, string) {
	sel, _ := x.selector(i)
	p := v1alpha1.Peer{PodSelector: &sel}
	id := x.segmentName(i, sel)
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

// segmentName names the policy of identity i after its workload; without
// a known workload name, after its first naming label's value; else the
// values of sel joined by "-" in key order, or a hash of the identity when
// sel has no labels.
func (x *identityIndex) segmentName(i model.Identity, sel metav1.LabelSelector) string {
	if w := x.workloadName(i); w != "" {
		return sanitizeID(w)
	}
	for _, k := range NamingLabels {
		if v, ok := i.Labels[k]; ok {
			return sanitizeID(v)
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		parts = append(parts, sel.MatchLabels[k])
	}
	if len(parts) == 0 {
		return "all-" + shortHash(i.NormalKey())
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
