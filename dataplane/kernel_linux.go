//go:build linux

package dataplane

// Apply and read-back: one endpoint's table, through one netlink socket
// opened in the endpoint's netns by file descriptor (nftables.WithNetNSFd);
// the process thread never changes namespace.
//
// Apply reads the table back first and sends the difference in a single
// batch, committed by one Flush (one nfnetlink transaction: the kernel holds
// the old table or the new one, never a mix):
//   - no table: create everything;
//   - a table whose base chains, policy chains or maps differ from what
//     Render makes (altered behind our back), other than by a tier's maps
//     appearing or going or by a stand-in left by an interrupted update
//     (see stage): delete and re-create it in the same batch (the
//     kernel may miss lookups in the new maps for a moment: see stage);
//   - otherwise (adoption, updates, a tier appearing or going): add and
//     delete map elements in place, add or delete the chains and counters
//     of rule ids that appear or go, and rewrite the policy and rule
//     chains only when the mode, name or LogAllowed changed or a map they
//     look up comes or goes. Base chains are never rebuilt. A new map is
//     filled and committed in a transaction of its own before the one
//     that looks it up (a tier's maps appearing; a map losing many
//     elements, replaced whole through a stand-in: see stage), so the
//     update takes two or four transactions, each leaving verdicts old or
//     new.
//
// google/nftables v0.3.0 puts all elements of one SetAddElements call into
// one netlink attribute, whose length is a uint16, and sends the whole batch
// in one sendmsg. Apply therefore splits elements into messages of at most
// elemsPerMessage elements (all in the same batch, so still one transaction;
// the library splits them itself only from google/nftables PR #303 on) and
// raises the socket's send buffer (SO_SNDBUFFORCE) to fit the batch, since
// netlink refuses a message larger than the send buffer (EMSGSIZE).
//
// Sources: nft(8); netlink(7); google/nftables conn.go and set.go (v0.3.0);
// google/nftables issues #303 (element batches) and #350 (buffer sizes);
// Linux net/netlink/af_netlink.c (netlink_sendmsg size check).

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// elemsPerMessage bounds the elements of one NEWSETELEM/DELSETELEM message
// so that its element list stays below 64 KiB: an element of the largest
// kind (IPv6 key and key end, goto with a 105-byte chain name) encodes to
// less than 250 bytes.
const elemsPerMessage = 200

// Dataplane programs and reads back endpoint tables. It holds no state
// between calls: the kernel is the state. Safe for concurrent use on
// different endpoints; calls on one endpoint must not overlap (Reconciler
// serialises them).
type Dataplane struct {
	log *slog.Logger
}

// New returns a Dataplane logging to log (nil: discard).
func New(log *slog.Logger) *Dataplane {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dataplane{log: log.With("component", "dataplane")}
}

// Counter is what the kernel counted for one rule id: packets and bytes of
// connection-opening packets its entries let through (see render.go).
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// State is what the kernel holds for one endpoint, in rule set terms.
type State struct {
	// Present reports whether the table exists.
	Present bool
	// RuleSet is the rule set the table implements: mode and default ids
	// from the default verdicts' log prefixes (the name only in observe
	// mode, where it is the prefix's id; in audit and enforce the table does
	// not hold the name, which is then empty), LogAllowed from the rule
	// chains, and one
	// entry per map element (entries that overlapped were cut into
	// disjoint pieces by Elements, so compare with Elements, or use Equal).
	// Tier entries are in lookup order: per direction, the protocol maps'
	// elements, then the any-protocol maps'; so State.Equal(RuleSet) holds
	// and Apply(RuleSet) programs the table as found (adoption).
	RuleSet RuleSet
	// Counters maps each rule id to its counter.
	Counters map[string]Counter
	// Defaults maps each direction to the counter of its default verdict:
	// the packets no entry allowed (dropped in enforce mode, let through
	// and logged in audit mode, unmatched in observe mode), counted by the
	// kernel since the table was created, whether or not anyone read the
	// verdict log. Absent for a table made before these counters existed.
	Defaults map[model.Direction]Counter
	// Elements are the decoded map elements, sorted as Elements sorts.
	Elements []Element

	layout layout
}

// Equal reports whether the kernel holds exactly what Apply(desired) would
// program: the same chains with the same rules (compared by their comment,
// the rule's nft form), the same maps and counters, and the same elements.
// An invalid desired rule set is never equal.
func (s *State) Equal(desired RuleSet) bool {
	if !s.Present {
		return false
	}
	o, err := Render(desired)
	if err != nil {
		return false
	}
	return s.layout.equal(layoutOf(o)) && slices.Equal(s.Elements, Elements(desired))
}

// protocolFirst orders read-back tier entries as the kernel looks them up:
// the protocol maps' entries before the any-protocol maps' (stable, so each
// group keeps the element order). A tier's entries are in precedence order
// and Elements cuts a protocol entry by every earlier any-protocol entry;
// the elements read back are already cut, so in this order Elements of the
// read-back rule set gives back exactly the elements read and the
// read-back rule set decides every packet as the kernel does. In element
// order an any-protocol element could come before a protocol element it
// overlaps (a port Deny before an any-protocol Deny of the same peer) and
// cut it away.
func protocolFirst(es []Entry) {
	slices.SortStableFunc(es, func(a, b Entry) int {
		return cmp.Compare(boolInt(a.proto() == ProtocolAny), boolInt(b.proto() == ProtocolAny))
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// layout is the comparable shape of a table, without elements: chain name →
// rule comments (base chains get a first pseudo-comment with hook and
// policy), map names with key type, counter names.
type layout struct {
	chains   map[string][]string
	sets     []string
	counters []string
}

func (l layout) equal(m layout) bool {
	if len(l.chains) != len(m.chains) {
		return false
	}
	for k, v := range l.chains {
		w, ok := m.chains[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return slices.Equal(l.sets, m.sets) && slices.Equal(l.counters, m.counters)
}

// tierMapsDiffer reports whether l and m have the same base chains and
// policy chains, and maps that differ only in whole ClusterNetworkPolicy
// tier maps present in one and absent in the other (a tier appears or
// goes), which Apply updates in place (see stage) rather than rebuilding.
func (l layout) tierMapsDiffer(m layout) bool {
	for _, c := range []string{ChainInput, ChainOutput} {
		if !slices.Equal(l.chains[c], m.chains[c]) {
			return false
		}
	}
	for _, c := range []string{ChainIngress, ChainEgress} {
		if _, ok := l.chains[c]; !ok {
			return false
		}
	}
	count := map[string]int{}
	for _, h := range l.sets {
		count[h]++
	}
	for _, h := range m.sets {
		count[h]--
	}
	// A stand-in left by an update interrupted between stage's
	// transactions (in l, the kernel's table), and its map gone, are
	// repaired in place too: the stand-in is deleted after the rules
	// that look it up are rewritten (queueDelta).
	standIn := map[string]bool{}
	for h, n := range count {
		name, _, _ := strings.Cut(h, " ")
		if base, ok := strings.CutSuffix(name, stagedSuffix); ok && n == 1 &&
			slices.ContainsFunc(mapDefs, func(d mapDef) bool { return d.name == base }) {
			standIn[base] = true
			count[h] = 0
		}
	}
	side := map[string]int{} // map name → which side has it
	for h, n := range count {
		if n == 0 {
			continue
		}
		name, _, _ := strings.Cut(h, " ")
		if n == -1 && standIn[name] {
			continue
		}
		i := slices.IndexFunc(mapDefs, func(d mapDef) bool { return d.name == name })
		if i < 0 || mapDefs[i].tier == "" || side[name] != 0 || (n != 1 && n != -1) {
			return false
		}
		side[name] = n
	}
	return true
}

// skeletonEqual compares what updates never touch: base chains, policy
// chains' existence and the maps.
func (l layout) skeletonEqual(m layout) bool {
	for _, c := range []string{ChainInput, ChainOutput} {
		if !slices.Equal(l.chains[c], m.chains[c]) {
			return false
		}
	}
	for _, c := range []string{ChainIngress, ChainEgress} {
		if _, ok := l.chains[c]; !ok {
			return false
		}
	}
	return slices.Equal(l.sets, m.sets)
}

func chainHeader(c *nftables.Chain) string {
	if c.Hooknum == nil {
		return ""
	}
	var prio int32
	if c.Priority != nil {
		prio = int32(*c.Priority)
	}
	pol := "accept"
	if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
		pol = "drop"
	}
	return fmt.Sprintf("type %s hook %d priority %d policy %s", c.Type, *c.Hooknum, prio, pol)
}

func setHeader(s *nftables.Set) string {
	// google/nftables v0.3.0 does not decode a concatenated key type when
	// reading sets back; the key layout is checked per element instead
	// (decodeElement), and a table with undecodable elements is rebuilt.
	return fmt.Sprintf("%s map=%t interval=%t concat=%t", s.Name, s.IsMap, s.Interval, s.Concatenation)
}

// layoutOf returns the layout of rendered objects.
func layoutOf(o *Objects) layout {
	l := layout{chains: map[string][]string{}}
	for _, c := range o.Chains {
		l.chains[c.Name] = nil
		if h := chainHeader(c); h != "" {
			l.chains[c.Name] = []string{h}
		}
	}
	for _, r := range o.Rules {
		l.chains[r.Chain.Name] = append(l.chains[r.Chain.Name], ruleComment(r))
	}
	for _, s := range o.Sets {
		l.sets = append(l.sets, setHeader(s))
	}
	for _, c := range o.Counters {
		l.counters = append(l.counters, c.Name)
	}
	slices.Sort(l.sets)
	slices.Sort(l.counters)
	return l
}

// dial opens a lasting nftables connection in the netns of nsFd, with
// buffers large enough for big batches.
func dial(nsFd int) (*nftables.Conn, error) {
	bufs := func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("raw netlink socket: %w", err)
		}
		var serr error
		cerr := rc.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, 64 << 20}, {unix.SO_RCVBUFFORCE, 16 << 20}} {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], o[1]); err != nil {
					serr = errors.Join(serr, fmt.Errorf("setsockopt %d: %w", o[0], err))
				}
			}
		})
		return errors.Join(cerr, serr)
	}
	c, err := nftables.New(nftables.WithNetNSFd(nsFd), nftables.AsLasting(), nftables.WithSockOptions(bufs))
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink socket: %w", err)
	}
	return c, nil
}

// openNetns opens the netns bind-mounted or linked at nsPath (for example
// /run/netns/NAME or /proc/PID/ns/net).
func openNetns(nsPath string) (*os.File, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns: %w", err)
	}
	return f, nil
}

// Read returns what the kernel holds in the netns at nsPath.
func (d *Dataplane) Read(nsPath string) (*State, error) {
	f, err := openNetns(nsPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", nsPath, err)
	}
	defer f.Close()
	c, err := dial(int(f.Fd()))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", nsPath, err)
	}
	defer c.CloseLasting()
	s, _, err := read(c)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", nsPath, err)
	}
	return s, nil
}

// kernelTable is what read keeps for computing a delta.
type kernelTable struct {
	chains map[string]*nftables.Chain
	sets   map[string]*nftables.Set
	// standIn are the chains with a rule that looks up a stand-in map
	// (stagedSuffix): an update interrupted between stage's
	// transactions. Their rule comments do not show it (withLookups
	// keeps the comment of the rule it copies).
	standIn map[string]bool
}

// read dumps the table, retrying a bounded number of times when a dump is
// interrupted by a concurrent change (EINTR from nfnetlink).
func read(c *nftables.Conn) (*State, *kernelTable, error) {
	var err error
	for range 3 {
		var s *State
		var kt *kernelTable
		s, kt, err = readOnce(c)
		if err == nil {
			return s, kt, nil
		}
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EBUSY) {
			break
		}
	}
	return nil, nil, err
}

func readOnce(c *nftables.Conn) (*State, *kernelTable, error) {
	s := &State{Counters: map[string]Counter{}, Defaults: map[model.Direction]Counter{}, layout: layout{chains: map[string][]string{}}}
	kt := &kernelTable{chains: map[string]*nftables.Chain{}, sets: map[string]*nftables.Set{}, standIn: map[string]bool{}}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nil, fmt.Errorf("list tables: %w", err)
	}
	var t *nftables.Table
	for _, x := range tables {
		if x.Name == TableName {
			t = x
		}
	}
	if t == nil {
		return s, kt, nil
	}
	s.Present = true
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		kt.chains[ch.Name] = ch
		s.layout.chains[ch.Name] = nil
		if h := chainHeader(ch); h != "" {
			s.layout.chains[ch.Name] = []string{h}
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, nil, fmt.Errorf("list rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			s.layout.chains[ch.Name] = append(s.layout.chains[ch.Name], ruleComment(r))
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Lookup); ok && strings.HasSuffix(l.SetName, stagedSuffix) {
					kt.standIn[ch.Name] = true
				}
				l, ok := e.(*expr.Log)
				if !ok {
					continue
				}
				verdict, id, err := verdictlog.Parse(string(l.Data))
				if err != nil {
					continue
				}
				// The name is in the table only in observe mode; in
				// audit and enforce each policy chain's default verdict
				// carries that direction's default id.
				// With an Admin tier the default verdicts are in the
				// -np chains.
				in := ch.Name == ChainIngress || ch.Name == ChainIngressNP
				out := ch.Name == ChainEgress || ch.Name == ChainEgressNP
				switch {
				case in && verdict == model.VerdictObserved:
					s.RuleSet.Mode, s.RuleSet.Name = model.ModeObserve, id
				case in && verdict == model.VerdictAuditDeny:
					s.RuleSet.Mode, s.RuleSet.IngressDefault = model.ModeAudit, id
				case in && verdict == model.VerdictDeny:
					s.RuleSet.Mode, s.RuleSet.IngressDefault = model.ModeEnforce, id
				case out && (verdict == model.VerdictAuditDeny || verdict == model.VerdictDeny):
					s.RuleSet.EgressDefault = id
				case strings.HasPrefix(ch.Name, RuleChainPrefix) && verdict == model.VerdictAllow:
					s.RuleSet.LogAllowed = true
				}
			}
		}
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, nil, fmt.Errorf("list sets: %w", err)
	}
	have := map[string]bool{}
	for _, set := range sets {
		have[set.Name] = true
	}
	for _, set := range sets {
		kt.sets[set.Name] = set
		s.layout.sets = append(s.layout.sets, setHeader(set))
		name := set.Name
		if base, ok := strings.CutSuffix(name, stagedSuffix); ok && !have[base] {
			// An update stopped between replacing a map and taking its
			// own name back (stage): the stand-in is what the kernel
			// looks up, so its elements are the map's. The layout
			// still differs (its name), so the next Apply rebuilds.
			name = base
		}
		def := slices.IndexFunc(mapDefs, func(d mapDef) bool { return d.name == name })
		if def < 0 {
			continue
		}
		elems, err := c.GetSetElements(set)
		if err != nil {
			return nil, nil, fmt.Errorf("list elements of %s: %w", set.Name, err)
		}
		for _, el := range elems {
			e, err := decodeElement(el, mapDefs[def])
			if err != nil {
				// Not ours: the table was altered; Apply rebuilds it.
				s.layout.sets = append(s.layout.sets, fmt.Sprintf("%s: undecodable element: %v", set.Name, err))
				continue
			}
			s.Elements = append(s.Elements, e)
		}
	}
	slices.Sort(s.layout.sets)
	slices.SortFunc(s.Elements, compareElements)
	for _, e := range s.Elements {
		en := e.Entry()
		var ts *Tiers
		switch e.Tier {
		case TierAdmin:
			ts = &s.RuleSet.Admin
		case TierBaseline:
			ts = &s.RuleSet.Baseline
		}
		if ts != nil {
			// The action is in the rule's chain: its last rule.
			en.Action = chainAction(s.layout.chains[RuleChain(e.RuleID)], e.Tier)
		}
		switch {
		case ts != nil && e.Dir == model.Ingress:
			ts.Ingress = append(ts.Ingress, en)
		case ts != nil:
			ts.Egress = append(ts.Egress, en)
		case e.Dir == model.Ingress:
			s.RuleSet.Ingress = append(s.RuleSet.Ingress, en)
		default:
			s.RuleSet.Egress = append(s.RuleSet.Egress, en)
		}
	}
	for _, ts := range []*Tiers{&s.RuleSet.Admin, &s.RuleSet.Baseline} {
		protocolFirst(ts.Ingress)
		protocolFirst(ts.Egress)
	}
	objs, err := c.GetNamedObjects(t)
	if err != nil {
		return nil, nil, fmt.Errorf("list objects: %w", err)
	}
	for _, o := range objs {
		n, ok := o.(*nftables.NamedObj)
		if !ok || n.Type != nftables.ObjTypeCounter {
			continue
		}
		s.layout.counters = append(s.layout.counters, n.Name)
		ctr, ok := n.Obj.(*expr.Counter)
		if !ok {
			continue
		}
		if name, ok := strings.CutPrefix(n.Name, DefaultCounterPrefix); ok {
			if dir, err := model.ParseDirection(name); err == nil {
				s.Defaults[dir] = Counter{Packets: ctr.Packets, Bytes: ctr.Bytes}
			}
			continue
		}
		if id, ok := strings.CutPrefix(n.Name, RuleChainPrefix); ok {
			s.Counters[id] = Counter{Packets: ctr.Packets, Bytes: ctr.Bytes}
		}
	}
	slices.Sort(s.layout.counters)
	return s, kt, nil
}

// chainAction returns the action of a tier rule chain from its rules'
// comments (tierChainRules): drop or an audit-deny log is deny, a goto is
// an Admin pass, anything else accept.
func chainAction(comments []string, t Tier) Action {
	if len(comments) == 0 {
		return ""
	}
	switch last := comments[len(comments)-1]; {
	case last == "drop", strings.HasPrefix(last, `log prefix "`+verdictlog.Format(model.VerdictAuditDeny, "")):
		return ActionDeny
	case strings.HasPrefix(last, "goto ") && t == TierAdmin:
		return ActionPass
	}
	return ActionAccept
}

// decodeElement turns a map element read from the kernel into an Element.
func decodeElement(el nftables.SetElement, d mapDef) (Element, error) {
	v6, anyp := d.v6, d.kind == kindAny
	if d.kind == kindExact {
		el.KeyEnd = el.Key
	}
	alen := 4
	if v6 {
		alen = 16
	}
	want := alen + 4
	if !anyp {
		want += 4
	}
	if len(el.Key) != want || len(el.KeyEnd) != want {
		return Element{}, fmt.Errorf("key of %d/%d bytes, want %d", len(el.Key), len(el.KeyEnd), want)
	}
	lo, _ := netip.AddrFromSlice(el.Key[:alen])
	hi, _ := netip.AddrFromSlice(el.KeyEnd[:alen])
	pfx := rangePrefixes(lo, hi)
	if len(pfx) != 1 {
		return Element{}, fmt.Errorf("address range %s-%s is not one prefix", lo, hi)
	}
	e := Element{Tier: d.tier, Dir: d.dir, Peer: pfx[0], Protocol: ProtocolAny, PortFrom: 0, PortTo: 65535}
	if !anyp {
		e.Protocol = protocolOf(el.Key[alen])
		if e.Protocol == "" || el.KeyEnd[alen] != el.Key[alen] {
			return Element{}, fmt.Errorf("protocol %d-%d not one known protocol", el.Key[alen], el.KeyEnd[alen])
		}
		e.PortFrom = binary.BigEndian.Uint16(el.Key[alen+4:])
		e.PortTo = binary.BigEndian.Uint16(el.KeyEnd[alen+4:])
	} else if el.Key[alen] != 0 || el.KeyEnd[alen] != 255 {
		return Element{}, fmt.Errorf("protocol range %d-%d, want 0-255", el.Key[alen], el.KeyEnd[alen])
	}
	chain, err := verdictChain(el)
	if err != nil {
		return Element{}, err
	}
	e.RuleID, _ = strings.CutPrefix(chain, RuleChainPrefix)
	return e, nil
}

// verdictChain returns the chain of a goto/jump map element.
func verdictChain(el nftables.SetElement) (string, error) {
	if el.VerdictData != nil {
		return el.VerdictData.Chain, nil
	}
	ad, err := netlink.NewAttributeDecoder(el.Val)
	if err != nil {
		return "", fmt.Errorf("decode verdict: %w", err)
	}
	var chain string
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			chain = strings.TrimRight(string(ad.Bytes()), "\x00")
		}
	}
	if err := ad.Err(); err != nil {
		return "", fmt.Errorf("decode verdict: %w", err)
	}
	if chain == "" {
		return "", errors.New("element without goto chain")
	}
	return chain, nil
}

// ErrCutConnections is wrapped by Apply's error when the new rule set was
// committed but cutting the connections it disallows failed: the kernel
// holds the new rule set; some disallowed connections may live on.
var ErrCutConnections = errors.New("cut disallowed connections")

// ApplyResult says what one Apply did.
type ApplyResult struct {
	Created   bool // the table did not exist
	Rebuilt   bool // the table was altered and was replaced in the same transaction
	Rewritten bool // policy and rule chains were rewritten (mode, name or LogAllowed changed)
	Added     int  // map elements added
	Deleted   int  // map elements deleted
	Replaced  int  // maps replaced whole because most of their elements went (replaceMap, stage)
	Cut       int  // conntrack entries deleted because the new rule set disallows them
	Unchanged bool // the kernel already held the rule set; nothing was sent
}

// Apply programs rs into the netns at nsPath in one transaction, or in two
// or four when it makes maps, each leaving the old verdicts or the new
// ones (see the file comment and stage), and, when rs enforces and is tighter than what the kernel
// held, deletes the conntrack entries of established connections rs does not
// allow (CutConnections). An invalid rs returns an error wrapping ErrInvalid
// and leaves the kernel untouched; a failed transaction leaves the previous
// table in place (after a staging transaction, with unused maps or chains
// that the next Apply removes, in place: a stand-in left, looked up or
// not, is deleted after the rules are rewritten to look up the map of
// its own name, made first if it is gone).
func (d *Dataplane) Apply(nsPath string, rs RuleSet) (ApplyResult, error) {
	var res ApplyResult
	o, err := Render(rs)
	if err != nil {
		return res, fmt.Errorf("apply %s: %w", nsPath, err)
	}
	f, err := openNetns(nsPath)
	if err != nil {
		return res, fmt.Errorf("apply %s: %w", nsPath, err)
	}
	defer f.Close()
	c, err := dial(int(f.Fd()))
	if err != nil {
		return res, fmt.Errorf("apply %s: %w", nsPath, err)
	}
	defer c.CloseLasting()
	cur, kt, err := read(c)
	if err != nil {
		return res, fmt.Errorf("apply %s: %w", nsPath, err)
	}
	want := layoutOf(o)
	desired := Elements(rs)
	tighter := false
	var p plan
	switch {
	case cur.layout.equal(want) && slices.Equal(cur.Elements, desired):
		res.Unchanged = true
		return res, nil
	case !cur.Present:
		res.Created = true
		err = create(c, o)
		res.Added = len(desired)
	case !cur.layout.skeletonEqual(want) && !cur.layout.tierMapsDiffer(want):
		res.Rebuilt = true
		c.DelTable(o.Table)
		err = create(c, o)
		res.Added, res.Deleted = len(desired), len(cur.Elements)
		tighter = true
	default:
		tighter = cur.RuleSet.Mode != model.ModeEnforce
		p = planDelta(o, cur, kt, desired)
		if p.staging() {
			if err := stage(c, o, cur, p); err != nil {
				return ApplyResult{}, fmt.Errorf("apply %s: %w", nsPath, err)
			}
		}
		res, err = queueDelta(c, o, cur, kt, p)
		// A rewritten rule chain may deny what it accepted (a tier
		// rule's action).
		tighter = tighter || res.Deleted > 0 || res.Rewritten
	}
	if err != nil {
		return ApplyResult{}, fmt.Errorf("apply %s: %w", nsPath, err)
	}
	if err := c.Flush(); err != nil {
		return ApplyResult{}, fmt.Errorf("apply %s: commit transaction: %w", nsPath, err)
	}
	if len(p.replaced) > 0 {
		if testHookBeforeRestore != nil {
			if err := testHookBeforeRestore(); err != nil {
				return ApplyResult{}, fmt.Errorf("apply %s: %w", nsPath, err)
			}
		}
		if err := restore(c, o, p); err != nil {
			return ApplyResult{}, fmt.Errorf("apply %s: %w", nsPath, err)
		}
	}
	d.log.Debug("applied", "netns", nsPath, "ruleset", rs, "created", res.Created, "rebuilt", res.Rebuilt,
		"added", res.Added, "deleted", res.Deleted)
	// A new table is a tightening too: the netns filtered nothing before.
	if rs.denies() && (tighter || res.Created) {
		n, err := CutConnections(int(f.Fd()), rs)
		res.Cut = n
		if err != nil {
			return res, fmt.Errorf("apply %s: %w: %w", nsPath, ErrCutConnections, err)
		}
		if n > 0 {
			d.log.Info("cut connections the new rule set disallows", "netns", nsPath, "count", n)
		}
	}
	return res, nil
}

// create queues the whole table o.
func create(c *nftables.Conn, o *Objects) error {
	c.AddTable(o.Table)
	for _, ch := range o.Chains {
		c.AddChain(ch)
	}
	for _, ctr := range o.Counters {
		c.AddObj(ctr)
	}
	for _, s := range o.Sets {
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("add map %s: %w", s.Name, err)
		}
		if err := addElements(c, s, o.Elements[s.Name]); err != nil {
			return err
		}
	}
	for _, r := range o.Rules {
		c.AddRule(r)
	}
	return nil
}

func addElements(c *nftables.Conn, s *nftables.Set, els []nftables.SetElement) error {
	for chunk := range slices.Chunk(els, elemsPerMessage) {
		if err := c.SetAddElements(s, chunk); err != nil {
			return fmt.Errorf("add elements to %s: %w", s.Name, err)
		}
	}
	return nil
}

func delElements(c *nftables.Conn, s *nftables.Set, els []nftables.SetElement) error {
	for chunk := range slices.Chunk(els, elemsPerMessage) {
		if err := c.SetDeleteElements(s, chunk); err != nil {
			return fmt.Errorf("delete elements from %s: %w", s.Name, err)
		}
	}
	return nil
}

// replaceMinDeleted and replaceMap decide when an update replaces a map
// whole instead of deleting its elements one by one. The kernel removes a
// deleted element from a concatenated interval map (pipapo) at commit
// time, each removal costing time that grows with the map, so deleting
// most of a large map costs about the square of its size:
// BenchmarkBigTier measured taking a 15,625-element Admin policy out of
// 8 endpoints at 12.8 s against 1.9 s for adding it (a flush of the map
// instead: 11.2 s, a flush deletes element by element too). Destroying a
// map frees it in one pass. A map is replaced when at least
// replaceMinDeleted of its elements go and they are at least a quarter of
// the ones it holds; smaller deletions keep the element-wise path.
const replaceMinDeleted = 256

// replaceMap reports whether a map holding have elements, of which del go,
// is replaced whole (see replaceMinDeleted).
func replaceMap(del, have int) bool {
	return del >= replaceMinDeleted && 4*del >= have
}

// testHookBeforeRestore, when set (by tests only), runs between step 2
// and step 3 of replacing maps (see stage); an error stops Apply there,
// as a crash would.
var testHookBeforeRestore func() error

// stagedSuffix names the stand-in of a map being replaced, and
// stagedIDOffset keeps its set id apart from the rendered maps' ids.
const (
	stagedSuffix   = ".next"
	stagedIDOffset = 1000
)

// plan is the element delta from the kernel's table to the desired one.
type plan struct {
	del, add map[string][]nftables.SetElement // per map name
	deleted  int
	added    int
	// replaced are the maps replaced whole (replaceMap); rewire the chains
	// whose rules look one of them up.
	replaced map[string]bool
	rewire   map[string]bool
	// fresh are the maps o has and the kernel does not (a tier appears),
	// gone the kernel's maps o does not have (a tier goes).
	fresh map[string]bool
	gone  []*nftables.Set
}

// staging reports whether the update needs stage first.
func (p plan) staging() bool { return len(p.replaced) > 0 || len(p.fresh) > 0 }

// planDelta merges the kernel's elements with the desired ones.
func planDelta(o *Objects, cur *State, kt *kernelTable, desired []Element) plan {
	p := plan{del: map[string][]nftables.SetElement{}, add: map[string][]nftables.SetElement{},
		replaced: map[string]bool{}, rewire: map[string]bool{}, fresh: map[string]bool{}}
	rendered := map[string]bool{}
	for _, s := range o.Sets {
		rendered[s.Name] = true
		if kt.sets[s.Name] == nil {
			p.fresh[s.Name] = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(kt.sets)) {
		if !rendered[name] {
			p.gone = append(p.gone, kt.sets[name])
		}
	}
	have := map[string]int{} // elements per map in the kernel
	i, j := 0, 0
	for i < len(cur.Elements) || j < len(desired) {
		var k int
		switch {
		case i == len(cur.Elements):
			k = 1
		case j == len(desired):
			k = -1
		default:
			k = compareElements(cur.Elements[i], desired[j])
		}
		switch {
		case k == 0:
			have[cur.Elements[i].setName()]++
			i++
			j++
		case k < 0:
			e := cur.Elements[i]
			have[e.setName()]++
			p.del[e.setName()] = append(p.del[e.setName()], encodeElement(e))
			p.deleted++
			i++
		default:
			e := desired[j]
			p.add[e.setName()] = append(p.add[e.setName()], encodeElement(e))
			p.added++
			j++
		}
	}
	for name, d := range p.del {
		if rendered[name] && replaceMap(len(d), have[name]) && kt.sets[name+stagedSuffix] == nil {
			p.replaced[name] = true
		}
	}
	for _, r := range o.Rules {
		for _, e := range r.Exprs {
			if l, ok := e.(*expr.Lookup); ok && p.replaced[l.SetName] {
				p.rewire[r.Chain.Name] = true
			}
		}
	}
	return p
}

// staged returns the stand-in of the rendered map s.
func staged(s *nftables.Set) *nftables.Set {
	t := *s
	t.Name, t.ID = s.Name+stagedSuffix, s.ID+stagedIDOffset
	return &t
}

// withLookups returns r looking up the maps to[name] instead of name.
func withLookups(r *nftables.Rule, to map[string]*nftables.Set) *nftables.Rule {
	n := *r
	n.Exprs = slices.Clone(r.Exprs)
	for i, e := range n.Exprs {
		if l, ok := e.(*expr.Lookup); ok {
			if t, ok := to[l.SetName]; ok {
				lc := *l
				lc.SetName, lc.SetID = t.Name, t.ID
				n.Exprs[i] = &lc
			}
		}
	}
	return &n
}

// stage runs step 1 of an update that makes maps: a tier's maps when the
// tier appears (p.fresh, two transactions: steps 1 and 2) or maps
// replaced whole (p.replaced, four), each transaction atomic and leaving
// verdicts old or new:
//
//  1. stage: the new counters and rule chains, each fresh map with its
//     elements, and a stand-in of each replaced map (name + stagedSuffix)
//     holding its new elements; nothing looks them up yet;
//  2. switch (queued by queueDelta, committed by Apply with the rest of
//     the update): rules look the fresh maps up, the rules that looked a
//     replaced map up now look up its stand-in, and the old map is
//     destroyed (so are the maps of a tier that goes);
//  3. refill: each map again under its own name, with the same elements;
//  4. switch back: the rules look the maps up by their own names again
//     and the stand-ins are destroyed.
//
// A map made in the same transaction as the rule that looks it up is not
// used for lookups from the moment the rule is: TestReplaceMapAtomic saw
// connections miss such a map (and reach the default verdict) on Linux
// 6.18 (we believe because nft_set_pipapo swaps its new lookup data in
// after the transaction's generation, and so its rules, went live; the
// whole-table rebuild above has the same window, see REPORT). So a map is always filled and committed
// before a rule looks it up. stage runs step 1, Apply step 2, restore 3
// and 4. A failure between them (an agent killed) leaves stand-ins, maybe
// looked up, maybe with their maps gone; the next Apply repairs that in
// place (tierMapsDiffer, kernelTable.standIn): a gone map is fresh, made
// and committed by stage; the chains looking up a stand-in are rewritten
// and the stand-ins deleted in the switch; no map with a stand-in is
// replaced again (TestInterruptedReplaceRecovers). A rebuild instead
// would make every map in the transaction that looks it up.
func stage(c *nftables.Conn, o *Objects, cur *State, p plan) error {
	haveCounter := map[string]bool{}
	for _, n := range cur.layout.counters {
		haveCounter[n] = true
	}
	for _, ctr := range o.Counters {
		if !haveCounter[ctr.Name] {
			c.AddObj(ctr)
		}
	}
	// The new chains first, empty: the fresh maps' elements go to them.
	// Their rules last: they may look the fresh maps up or go to one
	// another (a Pass goes to the NetworkPolicy tier's chain).
	fresh := map[string]bool{}
	for _, ch := range o.Chains {
		if _, ok := cur.layout.chains[ch.Name]; ok || ch.Hooknum != nil {
			continue
		}
		c.AddChain(ch)
		fresh[ch.Name] = true
	}
	for _, s := range o.Sets {
		if p.fresh[s.Name] {
			if err := c.AddSet(s, nil); err != nil {
				return fmt.Errorf("add map %s: %w", s.Name, err)
			}
			if err := addElements(c, s, o.Elements[s.Name]); err != nil {
				return err
			}
			continue
		}
		if !p.replaced[s.Name] {
			continue
		}
		t := staged(s)
		if err := c.AddSet(t, nil); err != nil {
			return fmt.Errorf("add map %s: %w", t.Name, err)
		}
		if err := addElements(c, t, o.Elements[s.Name]); err != nil {
			return err
		}
	}
	for _, r := range o.Rules {
		if fresh[r.Chain.Name] {
			c.AddRule(r)
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("stage maps: %w", err)
	}
	return nil
}

// restore runs steps 3 and 4 of replacing maps whole (see stage).
func restore(c *nftables.Conn, o *Objects, p plan) error {
	for _, s := range o.Sets {
		if !p.replaced[s.Name] {
			continue
		}
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("add map %s: %w", s.Name, err)
		}
		if err := addElements(c, s, o.Elements[s.Name]); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("refill replaced maps: %w", err)
	}
	for _, ch := range o.Chains {
		if !p.rewire[ch.Name] {
			continue
		}
		c.FlushChain(ch)
		for _, r := range o.Rules {
			if r.Chain.Name == ch.Name {
				c.AddRule(r)
			}
		}
	}
	for _, s := range o.Sets {
		if p.replaced[s.Name] {
			c.DelSet(staged(s))
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("switch back to replaced maps: %w", err)
	}
	return nil
}

// queueDelta queues the delta p from the intact table cur to o: elements
// added and deleted in place; with maps replaced whole (after stage), the
// rules that look them up switched to their stand-ins and the old maps
// destroyed, the new counters and chains being there already.
func queueDelta(c *nftables.Conn, o *Objects, cur *State, kt *kernelTable, p plan) (ApplyResult, error) {
	var res ApplyResult
	res.Added, res.Deleted, res.Replaced = p.added, p.deleted, len(p.replaced)
	staging := p.staging()
	want := layoutOf(o)
	rulesOf := map[string][]*nftables.Rule{}
	for _, r := range o.Rules {
		rulesOf[r.Chain.Name] = append(rulesOf[r.Chain.Name], r)
	}
	haveCounter := map[string]bool{}
	for _, n := range cur.layout.counters {
		haveCounter[n] = true
	}
	stand := map[string]*nftables.Set{}
	for _, s := range o.Sets {
		if p.replaced[s.Name] {
			stand[s.Name] = staged(s)
		}
	}
	// New counters and rule chains (made by stage when staging), rule
	// chains whose rules differ, chains that look a replaced map up.
	for _, ctr := range o.Counters {
		if !haveCounter[ctr.Name] && !staging {
			c.AddObj(ctr)
		}
	}
	for _, ch := range o.Chains {
		rules, ok := cur.layout.chains[ch.Name]
		switch {
		case p.rewire[ch.Name]:
			c.FlushChain(ch)
			if !slices.Equal(rules, want.chains[ch.Name]) {
				res.Rewritten = true
			}
			for _, r := range rulesOf[ch.Name] {
				c.AddRule(withLookups(r, stand))
			}
			continue
		case ok && kt.standIn[ch.Name]:
			// Left looking up a stand-in by an interrupted update: its
			// own rules again (the stand-in goes below, with p.gone).
			c.FlushChain(ch)
			res.Rewritten = true
		case ch.Hooknum != nil:
			continue
		case !ok && staging:
			continue
		case !ok:
			c.AddChain(ch)
		case slices.Equal(rules, want.chains[ch.Name]):
			continue
		default:
			c.FlushChain(ch)
			res.Rewritten = true
		}
		for _, r := range rulesOf[ch.Name] {
			c.AddRule(r)
		}
	}
	for _, s := range o.Sets {
		ks := kt.sets[s.Name]
		if p.fresh[s.Name] {
			continue // filled by stage
		}
		if p.replaced[s.Name] {
			continue // destroyed below
		}
		if err := delElements(c, ks, p.del[s.Name]); err != nil {
			return res, err
		}
		if err := addElements(c, ks, p.add[s.Name]); err != nil {
			return res, err
		}
	}
	// Rule chains no longer used (and foreign chains), maps replaced or of
	// a tier that went, in the order the kernel accepts within one
	// transaction (it refuses to delete what is still referenced when the
	// message is processed): the chains emptied first, which drops their
	// lookups of the maps and their gotos to one another (a tier's chain
	// that goes may look up a map that goes: the Baseline tier's lookups
	// are in the NetworkPolicy tier's chain, which goes with the Admin
	// tier; an Admin Pass goes to that chain); then the maps, whose
	// elements go to rule chains; then the chains.
	var gone []string
	for name := range cur.layout.chains {
		if _, ok := want.chains[name]; !ok {
			gone = append(gone, name)
		}
	}
	slices.Sort(gone)
	for _, name := range gone {
		c.FlushChain(kt.chains[name])
	}
	for _, s := range o.Sets {
		if p.replaced[s.Name] {
			c.DelSet(kt.sets[s.Name])
		}
	}
	for _, s := range p.gone {
		c.DelSet(s)
	}
	for _, name := range gone {
		c.DelChain(kt.chains[name])
	}
	wantCounter := map[string]bool{}
	for _, ctr := range o.Counters {
		wantCounter[ctr.Name] = true
	}
	for _, n := range cur.layout.counters {
		if !wantCounter[n] {
			c.DeleteObject(&nftables.NamedObj{Table: o.Table, Name: n, Type: nftables.ObjTypeCounter})
		}
	}
	return res, nil
}
