// Package bolt is the standalone agent's store: one bbolt file that
// implements store.Store (file format: the buckets below, JSON values).
//
// Why bbolt: it is a pure-Go, single-file, copy-on-write B+tree with ACID
// transactions (etcd's storage engine, maintained by the etcd project). A
// committed transaction is fsynced before Update returns, and a crash at any
// moment leaves the file at the last committed transaction, never half-written,
// because pages are never overwritten in place and the meta page flips
// last. A promotion is one transaction that changes the workload's state and
// appends the history event together, so `kill -9` leaves the old or the new
// revision, never a mix. SQLite through a pure-Go driver would also do, but
// costs a transpiled C runtime in the binary and in build time, and nanoseg
// needs keyed buckets, not SQL. Sources: go.etcd.io/bbolt README ("Caveats
// & Limitations", "Transactions"), bbolt's DB.Update documentation.
//
// Buckets:
//
//	edges       edge key → model.Edge (JSON), counters merged on flush
//	revisions   workload → (revision number, 8 bytes BE → Revision JSON)
//	state       workload → WorkloadState JSON
//	promotions  sequence (8 bytes BE) → Promotion JSON, hash-chained
//	verdicts    time (8 bytes BE ns) + sequence → VerdictEvent JSON
//	networkpolicies  "namespace/name" → (revision, 8 bytes BE → NetworkPolicyRecord JSON)
//	observed    "endpoint|start (RFC 3339 ns)" → model.ObservedSpan JSON, End moved forward on every commit
//	clusternetworkpolicyrecords  name → (revision, 8 bytes BE → ClusterNetworkPolicyRecord JSON)
//	clusternetworkpolicies  name → ClusterNetworkPolicy JSON (the one in force: written with each record)
//
// A file written before networkpolicies or observed existed gets the
// bucket when it is next opened for writing; readers treat a missing
// bucket as empty (a file without spans has observed nothing yet).
//
// A file written before ClusterNetworkPolicy records held only
// clusternetworkpolicies. Open upgrades it in its first transaction:
// each ClusterNetworkPolicy in force there becomes a revision-1 apply
// record with By store.ByUnknown and a zero At (unknown: the file never
// held who or when). The in-force bucket stays and is kept up to date, so
// an older agent opened on the file later still enforces the same
// policies; what it changes there is recorded the same way (By
// store.ByUnknown) the next time this version opens the file.
package bolt

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nanoseg/nanoseg/model"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

var (
	bucketEdges      = []byte("edges")
	bucketRevisions  = []byte("revisions")
	bucketState      = []byte("state")
	bucketPromotions = []byte("promotions")
	bucketVerdicts   = []byte("verdicts")
	bucketNetpols    = []byte("networkpolicies")
	bucketObserved   = []byte("observed")
)

// Store is the agent's state in one file. Safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens or creates the store file at path (mode 0600). It fails
// after one second if another process holds the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: another process (another agent?) holds it: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEdges, bucketRevisions, bucketState, bucketPromotions, bucketVerdicts, bucketNetpols, bucketObserved} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return upgradeCNPs(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

var _ store.Store = (*Store)(nil)

// Close closes the store file.
func (s *Store) Close() error { return s.db.Close() }

// MergeEdges adds edges to the stored ones in one transaction: counters are
// summed, FirstSeen keeps the earliest and LastSeen the latest time.
func (s *Store) MergeEdges(edges []model.Edge) error {
	if len(edges) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEdges)
		for _, e := range edges {
			k := store.EdgeKey(e)
			if raw := b.Get(k); raw != nil {
				var old model.Edge
				if err := json.Unmarshal(raw, &old); err != nil {
					return fmt.Errorf("decode edge %s: %w", k, err)
				}
				e = store.MergeEdge(old, e)
			}
			raw, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode edge: %w", err)
			}
			if err := b.Put(k, raw); err != nil {
				return fmt.Errorf("store edge: %w", err)
			}
		}
		return nil
	})
}

// RecordObserved stores observation spans in one transaction; a span
// already stored (same endpoint and start) keeps the later End.
func (s *Store) RecordObserved(spans []model.ObservedSpan) error {
	if len(spans) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketObserved)
		if err != nil {
			return err
		}
		for _, sp := range spans {
			k := []byte(sp.SpanKey())
			if raw := b.Get(k); raw != nil {
				var old model.ObservedSpan
				if err := json.Unmarshal(raw, &old); err != nil {
					return fmt.Errorf("decode span %s: %w", k, err)
				}
				sp = store.MergeSpan(old, sp)
			}
			raw, err := json.Marshal(sp)
			if err != nil {
				return fmt.Errorf("encode span: %w", err)
			}
			if err := b.Put(k, raw); err != nil {
				return fmt.Errorf("store span: %w", err)
			}
		}
		return nil
	})
}

// Observed returns the stored observation spans that end at or after
// since (all for the zero time), sorted by workload, endpoint and start.
func (s *Store) Observed(since time.Time) ([]model.ObservedSpan, error) {
	out := []model.ObservedSpan{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketObserved)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var sp model.ObservedSpan
			if err := json.Unmarshal(v, &sp); err != nil {
				return fmt.Errorf("decode span %s: %w", k, err)
			}
			if since.IsZero() || !sp.End.Before(since) {
				out = append(out, sp)
			}
			return nil
		})
	})
	store.SortSpans(out)
	return out, err
}

// Edges returns the stored edges last seen at or after since (all edges for
// the zero time), sorted by key.
func (s *Store) Edges(since time.Time) ([]model.Edge, error) {
	var out []model.Edge
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEdges).ForEach(func(k, v []byte) error {
			var e model.Edge
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode edge %s: %w", k, err)
			}
			if since.IsZero() || !e.LastSeen.Before(since) {
				out = append(out, e)
			}
			return nil
		})
	})
	return out, err
}

// appendNumbered appends v to bucket b under the bucket's next sequence
// number, which it first writes to *num (so the stored JSON carries it);
// what names v in an encoding error.
func appendNumbered(b *bolt.Bucket, what string, num *int, v any) error {
	n, err := b.NextSequence()
	if err != nil {
		return err
	}
	*num = int(n)
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", what, err)
	}
	return b.Put(u64(n), raw)
}

func u64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// AddRevision stores r as the workload's next revision and returns it with
// its number set.
func (s *Store) AddRevision(r store.Revision) (store.Revision, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketRevisions).CreateBucketIfNotExists([]byte(r.Workload))
		if err != nil {
			return err
		}
		return appendNumbered(b, "revision", &r.Number, &r)
	})
	if err != nil {
		return store.Revision{}, fmt.Errorf("add revision of %s: %w", r.Workload, err)
	}
	return r, nil
}

// Revision returns revision n of workload, or ErrNotFound.
func (s *Store) Revision(workload string, n int) (store.Revision, error) {
	var r store.Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevisions).Bucket([]byte(workload))
		if b == nil || n < 1 {
			return store.ErrNotFound
		}
		raw := b.Get(u64(uint64(n)))
		if raw == nil {
			return store.ErrNotFound
		}
		return json.Unmarshal(raw, &r)
	})
	if err != nil {
		return store.Revision{}, fmt.Errorf("revision %d of %s: %w", n, workload, err)
	}
	return r, nil
}

// Revisions returns every revision of workload, oldest first.
func (s *Store) Revisions(workload string) ([]store.Revision, error) {
	var out []store.Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevisions).Bucket([]byte(workload))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var r store.Revision
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// LatestRevision returns the highest-numbered revision of workload, or
// ErrNotFound.
func (s *Store) LatestRevision(workload string) (store.Revision, error) {
	rs, err := s.Revisions(workload)
	if err != nil {
		return store.Revision{}, err
	}
	if len(rs) == 0 {
		return store.Revision{}, fmt.Errorf("revisions of %s: %w", workload, store.ErrNotFound)
	}
	return rs[len(rs)-1], nil
}

// State returns the state of workload; a workload never promoted is in
// observe mode with revision 0.
func (s *Store) State(workload string) (store.WorkloadState, error) {
	var st store.WorkloadState
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		st, err = stateIn(tx, workload)
		return err
	})
	return st, err
}

func stateIn(tx *bolt.Tx, workload string) (store.WorkloadState, error) {
	raw := tx.Bucket(bucketState).Get([]byte(workload))
	if raw == nil {
		return store.WorkloadState{Workload: workload, Mode: model.ModeObserve}, nil
	}
	var st store.WorkloadState
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("decode state of %s: %w", workload, err)
	}
	return st, nil
}

// States returns the state of every workload that was ever promoted,
// sorted by workload.
func (s *Store) States() ([]store.WorkloadState, error) {
	var out []store.WorkloadState
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).ForEach(func(_, v []byte) error {
			var st store.WorkloadState
			if err := json.Unmarshal(v, &st); err != nil {
				return err
			}
			out = append(out, st)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out, err
}

// Record appends promotion event p and sets the workload's state to
// (p.ToMode, p.ToRevision) in one transaction, filling Seq, From*, PrevHash
// and Hash. If expect is not nil and the workload's current state differs
// from it, nothing changes and an error wrapping store.ErrConflict is returned. The revision must
// exist (or be 0).
func (s *Store) Record(p model.Promotion, expect *store.WorkloadState) (model.Promotion, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		cur, err := stateIn(tx, p.Workload)
		if err != nil {
			return err
		}
		if expect != nil && (cur.Mode != expect.Mode || cur.Revision != expect.Revision) {
			return fmt.Errorf("%w: %s is %s at revision %d now", store.ErrConflict, p.Workload, cur.Mode, cur.Revision)
		}
		if p.ToRevision != 0 {
			rb := tx.Bucket(bucketRevisions).Bucket([]byte(p.Workload))
			if rb == nil || rb.Get(u64(uint64(p.ToRevision))) == nil {
				return fmt.Errorf("revision %d of %s: %w", p.ToRevision, p.Workload, store.ErrNotFound)
			}
		}
		pb := tx.Bucket(bucketPromotions)
		prev := ""
		if k, v := pb.Cursor().Last(); k != nil {
			var last model.Promotion
			if err := json.Unmarshal(v, &last); err != nil {
				return fmt.Errorf("decode last promotion: %w", err)
			}
			prev = last.Hash
		}
		seq, err := pb.NextSequence()
		if err != nil {
			return err
		}
		p.Seq, p.FromMode, p.FromRevision, p.PrevHash = seq, cur.Mode, cur.Revision, prev
		p.Hash = p.ChainHash()
		raw, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if err := pb.Put(u64(seq), raw); err != nil {
			return err
		}
		st := store.WorkloadState{Workload: p.Workload, Mode: p.ToMode, Revision: p.ToRevision, Since: p.At, Seq: seq}
		raw, err = json.Marshal(st)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketState).Put([]byte(p.Workload), raw)
	})
	if err != nil {
		return model.Promotion{}, fmt.Errorf("record %s of %s: %w", p.Action, p.Workload, err)
	}
	return p, nil
}

// History returns the promotion events of workload (all workloads for ""),
// oldest first.
func (s *Store) History(workload string) ([]model.Promotion, error) {
	var out []model.Promotion
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPromotions).ForEach(func(_, v []byte) error {
			var p model.Promotion
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			if workload == "" || p.Workload == workload {
				out = append(out, p)
			}
			return nil
		})
	})
	return out, err
}

// AddVerdicts appends verdict events in one transaction.
func (s *Store) AddVerdicts(evs []model.VerdictEvent) error {
	if len(evs) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVerdicts)
		for _, e := range evs {
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			raw, err := json.Marshal(e)
			if err != nil {
				return err
			}
			k := append(u64(uint64(e.At.UnixNano())), u64(seq)...)
			if err := b.Put(k, raw); err != nil {
				return err
			}
		}
		return nil
	})
}

// Verdicts returns the verdict events at or after since, oldest first.
func (s *Store) Verdicts(since time.Time) ([]model.VerdictEvent, error) {
	var out []model.VerdictEvent
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketVerdicts).Cursor()
		start := u64(uint64(max(since.UnixNano(), 0)))
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			var e model.VerdictEvent
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// Workloads returns every workload that has revisions or state, sorted.
func (s *Store) Workloads() ([]string, error) {
	seen := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketRevisions).ForEach(func(k, _ []byte) error { seen[string(k)] = true; return nil }); err != nil {
			return err
		}
		return tx.Bucket(bucketState).ForEach(func(k, _ []byte) error { seen[string(k)] = true; return nil })
	})
	out := make([]string, 0, len(seen))
	for w := range seen {
		out = append(out, w)
	}
	sort.Strings(out)
	return out, err
}

// AddNetworkPolicyRecord appends rec to the records of its NetworkPolicy in
// one transaction (see store.PolicyStore).
func (s *Store) AddNetworkPolicyRecord(rec store.NetworkPolicyRecord) (store.NetworkPolicyRecord, error) {
	rec, err := store.PrepareNetworkPolicyRecord(rec)
	if err != nil {
		return store.NetworkPolicyRecord{}, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketNetpols)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(rec.Key()))
		if err != nil {
			return err
		}
		if rec.Action == store.ActionDelete {
			last, ok, err := lastNetpol(b)
			if err != nil {
				return err
			}
			if !ok || last.Action != store.ActionApply {
				return store.ErrNotFound
			}
		}
		return appendNumbered(b, "record", &rec.Revision, &rec)
	})
	if err != nil {
		return store.NetworkPolicyRecord{}, fmt.Errorf("%s NetworkPolicy %s: %w", rec.Action, rec.Key(), err)
	}
	return rec, nil
}

// lastRecord decodes the highest-numbered record of bucket b (false when
// b is nil or empty); kind names the policy kind in a decoding error.
func lastRecord[R any](b *bolt.Bucket, kind string) (R, bool, error) {
	var r R
	if b == nil {
		return r, false, nil
	}
	k, v := b.Cursor().Last()
	if k == nil {
		return r, false, nil
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return r, false, fmt.Errorf("decode %s record: %w", kind, err)
	}
	return r, true, nil
}

func lastNetpol(b *bolt.Bucket) (store.NetworkPolicyRecord, bool, error) {
	return lastRecord[store.NetworkPolicyRecord](b, "NetworkPolicy")
}

// netpolKeys returns the "namespace/name" keys of root sorted by
// namespace, then name.
func netpolKeys(root *bolt.Bucket) []string {
	var keys []string
	_ = root.ForEach(func(k, _ []byte) error { keys = append(keys, string(k)); return nil })
	sort.Slice(keys, func(i, j int) bool {
		an, aname, _ := strings.Cut(keys[i], "/")
		bn, bname, _ := strings.Cut(keys[j], "/")
		if an != bn {
			return an < bn
		}
		return aname < bname
	})
	return keys
}

// NetworkPolicies returns the NetworkPolicies in force, sorted by
// namespace and name.
func (s *Store) NetworkPolicies() ([]store.NetworkPolicyRecord, error) {
	var out []store.NetworkPolicyRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketNetpols)
		if root == nil {
			return nil
		}
		for _, k := range netpolKeys(root) {
			last, ok, err := lastNetpol(root.Bucket([]byte(k)))
			if err != nil {
				return fmt.Errorf("NetworkPolicy %s: %w", k, err)
			}
			if ok && last.Action == store.ActionApply {
				out = append(out, last)
			}
		}
		return nil
	})
	return out, err
}

// NetworkPolicyRecords returns every record of namespace/name (all for
// "", ""), sorted by namespace, name and revision.
func (s *Store) NetworkPolicyRecords(namespace, name string) ([]store.NetworkPolicyRecord, error) {
	var out []store.NetworkPolicyRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketNetpols)
		if root == nil {
			return nil
		}
		for _, k := range netpolKeys(root) {
			if (namespace != "" || name != "") && k != namespace+"/"+name {
				continue
			}
			err := root.Bucket([]byte(k)).ForEach(func(_, v []byte) error {
				var r store.NetworkPolicyRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("decode NetworkPolicy record of %s: %w", k, err)
				}
				out = append(out, r)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// bucketCNPs holds the ClusterNetworkPolicies in force: name → JSON, the
// file format before records (and still written, see
// AddClusterNetworkPolicyRecord); bucketCNPRecords their records: name →
// (revision, 8 bytes BE → ClusterNetworkPolicyRecord JSON).
var (
	bucketCNPs       = []byte("clusternetworkpolicies")
	bucketCNPRecords = []byte("clusternetworkpolicyrecords")
)

var _ store.ClusterPolicyStore = (*Store)(nil)

// upgradeCNPs makes the records agree with the ClusterNetworkPolicies in
// force that bucketCNPs holds, in the opening transaction: a file written
// before records (only bucketCNPs), or changed by such an agent since,
// gets for each name whose latest record does not say what bucketCNPs
// holds an apply record of that policy, and for each name whose latest
// record is an apply missing from bucketCNPs a delete record; both with
// By store.ByUnknown and a zero At (who and when were not stored). A file
// that agrees gets nothing.
func upgradeCNPs(tx *bolt.Tx) error {
	old := tx.Bucket(bucketCNPs)
	recs := tx.Bucket(bucketCNPRecords)
	if old == nil && recs == nil {
		return nil
	}
	if recs == nil {
		var err error
		if recs, err = tx.CreateBucket(bucketCNPRecords); err != nil {
			return err
		}
	}
	inOld := map[string]bool{}
	if old != nil {
		err := old.ForEach(func(k, v []byte) error {
			if v == nil {
				return nil // a nested bucket: never written there
			}
			name := string(k)
			inOld[name] = true
			b, err := recs.CreateBucketIfNotExists(k)
			if err != nil {
				return err
			}
			last, ok, err := lastCNP(b)
			if err != nil {
				return fmt.Errorf("ClusterNetworkPolicy %s: %w", name, err)
			}
			var p cnpv1alpha2.ClusterNetworkPolicy
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode ClusterNetworkPolicy %s: %w", name, err)
			}
			// Both decoded from JSON: equal when the bucket holds what
			// the latest record says.
			if ok && last.Action == store.ActionApply && last.Policy != nil && reflect.DeepEqual(*last.Policy, p) {
				return nil
			}
			rec := store.ClusterNetworkPolicyRecord{Name: name, Action: store.ActionApply, By: store.ByUnknown, Policy: &p}
			return appendNumbered(b, "ClusterNetworkPolicy record", &rec.Revision, &rec)
		})
		if err != nil {
			return err
		}
	}
	var gone []string
	err := recs.ForEach(func(k, _ []byte) error {
		if inOld[string(k)] {
			return nil
		}
		last, ok, err := lastCNP(recs.Bucket(k))
		if err != nil {
			return fmt.Errorf("ClusterNetworkPolicy %s: %w", k, err)
		}
		if ok && last.Action == store.ActionApply {
			gone = append(gone, string(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range gone {
		rec := store.ClusterNetworkPolicyRecord{Name: name, Action: store.ActionDelete, By: store.ByUnknown}
		if err := appendNumbered(recs.Bucket([]byte(name)), "ClusterNetworkPolicy record", &rec.Revision, &rec); err != nil {
			return err
		}
	}
	return nil
}

func lastCNP(b *bolt.Bucket) (store.ClusterNetworkPolicyRecord, bool, error) {
	return lastRecord[store.ClusterNetworkPolicyRecord](b, "ClusterNetworkPolicy")
}

// AddClusterNetworkPolicyRecord implements store.ClusterPolicyStore: the
// record and the in-force object in bucketCNPs (put for an apply, removed
// for a delete) change in one transaction, so a file opened by an agent
// from before records still enforces what is in force.
func (s *Store) AddClusterNetworkPolicyRecord(rec store.ClusterNetworkPolicyRecord) (store.ClusterNetworkPolicyRecord, error) {
	rec, err := store.PrepareClusterNetworkPolicyRecord(rec)
	if err != nil {
		return store.ClusterNetworkPolicyRecord{}, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		root, err := tx.CreateBucketIfNotExists(bucketCNPRecords)
		if err != nil {
			return err
		}
		old, err := tx.CreateBucketIfNotExists(bucketCNPs)
		if err != nil {
			return err
		}
		b, err := root.CreateBucketIfNotExists([]byte(rec.Name))
		if err != nil {
			return err
		}
		if rec.Action == store.ActionDelete {
			last, ok, err := lastCNP(b)
			if err != nil {
				return err
			}
			if !ok || last.Action != store.ActionApply {
				return store.ErrNotFound
			}
			if err := old.Delete([]byte(rec.Name)); err != nil {
				return err
			}
		} else {
			raw, err := json.Marshal(rec.Policy)
			if err != nil {
				return fmt.Errorf("encode ClusterNetworkPolicy: %w", err)
			}
			if err := old.Put([]byte(rec.Name), raw); err != nil {
				return err
			}
		}
		return appendNumbered(b, "ClusterNetworkPolicy record", &rec.Revision, &rec)
	})
	if err != nil {
		return store.ClusterNetworkPolicyRecord{}, fmt.Errorf("%s ClusterNetworkPolicy %s: %w", rec.Action, rec.Name, err)
	}
	return rec, nil
}

// ClusterNetworkPolicies implements store.ClusterPolicyStore: the policies
// of the latest records that are applies, sorted by name.
func (s *Store) ClusterNetworkPolicies() ([]cnpv1alpha2.ClusterNetworkPolicy, error) {
	recs, err := s.ClusterNetworkPolicyRecords("")
	return store.InForceClusterNetworkPolicies(recs), err
}

// ClusterNetworkPolicyRecords implements store.ClusterPolicyStore (sorted
// by name: bbolt keeps keys in byte order; by revision: big-endian keys).
func (s *Store) ClusterNetworkPolicyRecords(name string) ([]store.ClusterNetworkPolicyRecord, error) {
	var out []store.ClusterNetworkPolicyRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketCNPRecords)
		if root == nil {
			return nil
		}
		return root.ForEach(func(k, _ []byte) error {
			if name != "" && string(k) != name {
				return nil
			}
			return root.Bucket(k).ForEach(func(_, v []byte) error {
				var r store.ClusterNetworkPolicyRecord
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("decode ClusterNetworkPolicy record of %s: %w", k, err)
				}
				out = append(out, r)
				return nil
			})
		})
	})
	return out, err
}
