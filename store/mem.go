package store

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// Mem is a Store in memory, with the semantics of the bbolt store
// (store/bolt): for unit tests and fakes. Records are copied in and out
// (policies are deep-copied), so callers cannot change what it holds. Safe
// for concurrent use. The zero value is ready.
type Mem struct {
	mu        sync.Mutex
	edges     map[string]model.Edge
	revisions map[string][]Revision
	states    map[string]WorkloadState
	history   []model.Promotion
	verdicts  []model.VerdictEvent
	netpols   map[string][]NetworkPolicyRecord        // namespace/name -> records, oldest first
	spans     map[string]model.ObservedSpan           // SpanKey -> span
	cnps      map[string][]ClusterNetworkPolicyRecord // name -> records, oldest first
}

var _ Store = (*Mem)(nil)

// NewMem returns an empty in-memory store.
func NewMem() *Mem { return &Mem{} }

func copyRevision(r Revision) Revision {
	r.Policy = r.Policy.DeepCopy()
	return r
}

// MergeEdges implements ObservationSink.
func (m *Mem) MergeEdges(edges []model.Edge) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.edges == nil {
		m.edges = map[string]model.Edge{}
	}
	for _, e := range edges {
		k := string(EdgeKey(e))
		if old, ok := m.edges[k]; ok {
			e = MergeEdge(old, e)
		}
		m.edges[k] = e
	}
	return nil
}

// Edges implements ObservationReader.
func (m *Mem) Edges(since time.Time) ([]model.Edge, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []model.Edge
	for _, e := range m.edges {
		if since.IsZero() || !e.LastSeen.Before(since) {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(EdgeKey(out[i]), EdgeKey(out[j])) < 0 })
	return out, nil
}

// AddVerdicts implements ObservationSink.
func (m *Mem) AddVerdicts(evs []model.VerdictEvent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.verdicts = append(m.verdicts, evs...)
	// Ordered by time, then arrival, as the bbolt keys are.
	sort.SliceStable(m.verdicts, func(i, j int) bool { return m.verdicts[i].At.Before(m.verdicts[j].At) })
	return nil
}

// RecordObserved implements ObservationSink.
func (m *Mem) RecordObserved(spans []model.ObservedSpan) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.spans == nil {
		m.spans = map[string]model.ObservedSpan{}
	}
	for _, sp := range spans {
		k := sp.SpanKey()
		if old, ok := m.spans[k]; ok {
			sp = MergeSpan(old, sp)
		}
		m.spans[k] = sp
	}
	return nil
}

// Observed implements ObservationReader.
func (m *Mem) Observed(since time.Time) ([]model.ObservedSpan, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []model.ObservedSpan{}
	for _, sp := range m.spans {
		if since.IsZero() || !sp.End.Before(since) {
			out = append(out, sp)
		}
	}
	SortSpans(out)
	return out, nil
}

// Verdicts implements ObservationReader.
func (m *Mem) Verdicts(since time.Time) ([]model.VerdictEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []model.VerdictEvent
	for _, e := range m.verdicts {
		if !e.At.Before(since) {
			out = append(out, e)
		}
	}
	return out, nil
}

// AddRevision implements PolicyStore.
func (m *Mem) AddRevision(r Revision) (Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revisions == nil {
		m.revisions = map[string][]Revision{}
	}
	r = copyRevision(r)
	r.Number = len(m.revisions[r.Workload]) + 1
	m.revisions[r.Workload] = append(m.revisions[r.Workload], r)
	return copyRevision(r), nil
}

// Revision implements PolicyStore.
func (m *Mem) Revision(workload string, n int) (Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.revisions[workload]
	if n < 1 || n > len(rs) {
		return Revision{}, fmt.Errorf("revision %d of %s: %w", n, workload, ErrNotFound)
	}
	return copyRevision(rs[n-1]), nil
}

// Revisions implements PolicyStore.
func (m *Mem) Revisions(workload string) ([]Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Revision
	for _, r := range m.revisions[workload] {
		out = append(out, copyRevision(r))
	}
	return out, nil
}

// LatestRevision implements PolicyStore.
func (m *Mem) LatestRevision(workload string) (Revision, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rs := m.revisions[workload]
	if len(rs) == 0 {
		return Revision{}, fmt.Errorf("revisions of %s: %w", workload, ErrNotFound)
	}
	return copyRevision(rs[len(rs)-1]), nil
}

func (m *Mem) state(workload string) WorkloadState {
	if st, ok := m.states[workload]; ok {
		return st
	}
	return WorkloadState{Workload: workload, Mode: model.ModeObserve}
}

// State implements PolicyStore.
func (m *Mem) State(workload string) (WorkloadState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state(workload), nil
}

// States implements PolicyStore.
func (m *Mem) States() ([]WorkloadState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []WorkloadState
	for _, st := range m.states {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out, nil
}

// Record implements PolicyStore: the state change and the history append
// happen under one lock, all or nothing.
func (m *Mem) Record(p model.Promotion, expect *WorkloadState) (model.Promotion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.state(p.Workload)
	if expect != nil && (cur.Mode != expect.Mode || cur.Revision != expect.Revision) {
		return model.Promotion{}, fmt.Errorf("record %s of %s: %w: %s is %s at revision %d now", p.Action, p.Workload, ErrConflict, p.Workload, cur.Mode, cur.Revision)
	}
	if p.ToRevision != 0 && (p.ToRevision < 0 || p.ToRevision > len(m.revisions[p.Workload])) {
		return model.Promotion{}, fmt.Errorf("record %s of %s: revision %d of %s: %w", p.Action, p.Workload, p.ToRevision, p.Workload, ErrNotFound)
	}
	prev := ""
	if n := len(m.history); n > 0 {
		prev = m.history[n-1].Hash
	}
	p.Seq, p.FromMode, p.FromRevision, p.PrevHash = uint64(len(m.history)+1), cur.Mode, cur.Revision, prev
	p.Hash = p.ChainHash()
	m.history = append(m.history, p)
	if m.states == nil {
		m.states = map[string]WorkloadState{}
	}
	m.states[p.Workload] = WorkloadState{Workload: p.Workload, Mode: p.ToMode, Revision: p.ToRevision, Since: p.At, Seq: p.Seq}
	return p, nil
}

// History implements PolicyStore.
func (m *Mem) History(workload string) ([]model.Promotion, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []model.Promotion
	for _, p := range m.history {
		if workload == "" || p.Workload == workload {
			out = append(out, p)
		}
	}
	return out, nil
}

// Workloads implements PolicyStore.
func (m *Mem) Workloads() ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	for w := range m.revisions {
		seen[w] = true
	}
	for w := range m.states {
		seen[w] = true
	}
	out := make([]string, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	slices.Sort(out)
	return out, nil
}

func copyNetworkPolicyRecord(r NetworkPolicyRecord) NetworkPolicyRecord {
	r.Policy = r.Policy.DeepCopy()
	return r
}

// AddNetworkPolicyRecord implements PolicyStore.
func (m *Mem) AddNetworkPolicyRecord(rec NetworkPolicyRecord) (NetworkPolicyRecord, error) {
	rec, err := PrepareNetworkPolicyRecord(rec)
	if err != nil {
		return NetworkPolicyRecord{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := rec.Key()
	rs := m.netpols[k]
	if rec.Action == ActionDelete && (len(rs) == 0 || rs[len(rs)-1].Action != ActionApply) {
		return NetworkPolicyRecord{}, fmt.Errorf("delete NetworkPolicy %s: %w", k, ErrNotFound)
	}
	if m.netpols == nil {
		m.netpols = map[string][]NetworkPolicyRecord{}
	}
	rec.Revision = len(rs) + 1
	m.netpols[k] = append(rs, rec)
	return copyNetworkPolicyRecord(rec), nil
}

// NetworkPolicies implements PolicyStore.
func (m *Mem) NetworkPolicies() ([]NetworkPolicyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []NetworkPolicyRecord
	for _, k := range sortedPolicyKeys(m.netpols) {
		rs := m.netpols[k]
		if last := rs[len(rs)-1]; last.Action == ActionApply {
			out = append(out, copyNetworkPolicyRecord(last))
		}
	}
	return out, nil
}

// NetworkPolicyRecords implements PolicyStore.
func (m *Mem) NetworkPolicyRecords(namespace, name string) ([]NetworkPolicyRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []NetworkPolicyRecord
	for _, k := range sortedPolicyKeys(m.netpols) {
		if (namespace != "" || name != "") && k != namespace+"/"+name {
			continue
		}
		for _, r := range m.netpols[k] {
			out = append(out, copyNetworkPolicyRecord(r))
		}
	}
	return out, nil
}

// sortedPolicyKeys returns the "namespace/name" keys of m sorted by
// namespace, then name.
func sortedPolicyKeys(m map[string][]NetworkPolicyRecord) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		an, aname, _ := strings.Cut(a, "/")
		bn, bname, _ := strings.Cut(b, "/")
		return cmp.Or(cmp.Compare(an, bn), cmp.Compare(aname, bname))
	})
	return keys
}

// TamperHistory replaces history event seq (1-based) with edit's result,
// without fixing the hash chain: for tests that check the chain breaks.
func (m *Mem) TamperHistory(seq uint64, edit func(*model.Promotion)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if seq >= 1 && seq <= uint64(len(m.history)) {
		edit(&m.history[seq-1])
	}
}
