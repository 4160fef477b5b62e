package controller

// The agent's store: one bbolt file.
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

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

var (
	bucketEdges      = []byte("edges")
	bucketRevisions  = []byte("revisions")
	bucketState      = []byte("state")
	bucketPromotions = []byte("promotions")
	bucketVerdicts   = []byte("verdicts")
)

// Errors callers check with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: the workload changed since the caller read it.
	ErrConflict = errors.New("conflict")
	// ErrChainBroken: the promotion history does not verify.
	//
	// Deprecated: temporary alias for the issue-10 merge; use
	// model.ErrChainBroken.
	ErrChainBroken = model.ErrChainBroken
)

// Store is the agent's state in one file. Safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// OpenStore opens or creates the store file at path (mode 0600). It fails
// after one second if another process holds the file.
func OpenStore(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: another process (another agent?) holds it: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEdges, bucketRevisions, bucketState, bucketPromotions, bucketVerdicts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the store file.
func (s *Store) Close() error { return s.db.Close() }

// edgeKey identifies an edge: source, destination, protocol, port. The
// protocol keeps the spelling store files had before the one vocabulary
// (lower case, "ipv6-icmp"), so that edges merge into the records of
// existing files instead of beside them.
func edgeKey(e model.Edge) []byte {
	proto := strings.ToLower(string(e.Protocol))
	if e.Protocol == model.ProtocolICMPv6 {
		proto = "ipv6-icmp"
	}
	return []byte(fmt.Sprintf("%s|%s|%s|%d", e.Source.String(), e.Destination.String(), proto, e.Port))
}

// MergeEdges adds edges to the stored ones in one transaction: counters are
// summed, FirstSeen keeps the earliest and LastSeen the latest time.
func (s *Store) MergeEdges(edges []model.Edge) error {
	if len(edges) == 0 {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEdges)
		for _, e := range edges {
			k := edgeKey(e)
			if raw := b.Get(k); raw != nil {
				var old model.Edge
				if err := json.Unmarshal(raw, &old); err != nil {
					return fmt.Errorf("decode edge %s: %w", k, err)
				}
				e = mergeEdge(old, e)
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

func mergeEdge(a, b model.Edge) model.Edge {
	out := a
	out.Add(b)
	if out.Destination.Name == "" && b.Destination.Name != "" {
		out.Destination.Name = b.Destination.Name
	}
	return out
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

// Origin says where a policy revision came from.
type Origin string

// Origins of revisions.
const (
	OriginProposed Origin = "proposed" // inferred from observed edges
	OriginDeclared Origin = "declared" // applied from YAML by a person
)

// Revision is one stored version of a workload's nanosegment. Numbers start
// at 1 per workload and only grow.
type Revision struct {
	Workload  string                `json:"workload"` // "namespace/workload"
	Number    int                   `json:"number"`
	Origin    Origin                `json:"origin"`
	CreatedAt time.Time             `json:"createdAt"`
	CreatedBy string                `json:"createdBy"`
	Policy    *v1alpha1.NanoSegment `json:"policy"`
}

func u64(n uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return b[:]
}

// AddRevision stores r as the workload's next revision and returns it with
// its number set.
func (s *Store) AddRevision(r Revision) (Revision, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketRevisions).CreateBucketIfNotExists([]byte(r.Workload))
		if err != nil {
			return err
		}
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		r.Number = int(n)
		raw, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode revision: %w", err)
		}
		return b.Put(u64(n), raw)
	})
	if err != nil {
		return Revision{}, fmt.Errorf("add revision of %s: %w", r.Workload, err)
	}
	return r, nil
}

// Revision returns revision n of workload, or ErrNotFound.
func (s *Store) Revision(workload string, n int) (Revision, error) {
	var r Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevisions).Bucket([]byte(workload))
		if b == nil || n < 1 {
			return ErrNotFound
		}
		raw := b.Get(u64(uint64(n)))
		if raw == nil {
			return ErrNotFound
		}
		return json.Unmarshal(raw, &r)
	})
	if err != nil {
		return Revision{}, fmt.Errorf("revision %d of %s: %w", n, workload, err)
	}
	return r, nil
}

// Revisions returns every revision of workload, oldest first.
func (s *Store) Revisions(workload string) ([]Revision, error) {
	var out []Revision
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRevisions).Bucket([]byte(workload))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var r Revision
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
func (s *Store) LatestRevision(workload string) (Revision, error) {
	rs, err := s.Revisions(workload)
	if err != nil {
		return Revision{}, err
	}
	if len(rs) == 0 {
		return Revision{}, fmt.Errorf("revisions of %s: %w", workload, ErrNotFound)
	}
	return rs[len(rs)-1], nil
}

// WorkloadState is what is active for a workload: a mode and a revision
// (0: no policy yet, so nothing is filtered).
type WorkloadState struct {
	Workload string     `json:"workload"`
	Mode     model.Mode `json:"mode"`
	Revision int        `json:"revision"`
	Since    time.Time  `json:"since"`
	// Seq is the promotion event that set this state (0: never promoted).
	Seq uint64 `json:"seq"`
}

// Action is what a promotion event did.
//
// Deprecated: temporary alias for the issue-10 merge; use model.Action.
type Action = model.Action

// Actions of promotion events.
//
// Deprecated: temporary aliases for the issue-10 merge; use model's.
const (
	ActionPromote  = model.ActionPromote
	ActionRollback = model.ActionRollback
)

// Promotion is one recorded change of a workload's mode or revision,
// hash-chained (see model.Promotion).
//
// Deprecated: temporary alias for the issue-10 merge; use model.Promotion.
type Promotion = model.Promotion

// State returns the state of workload; a workload never promoted is in
// observe mode with revision 0.
func (s *Store) State(workload string) (WorkloadState, error) {
	var st WorkloadState
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		st, err = stateIn(tx, workload)
		return err
	})
	return st, err
}

func stateIn(tx *bolt.Tx, workload string) (WorkloadState, error) {
	raw := tx.Bucket(bucketState).Get([]byte(workload))
	if raw == nil {
		return WorkloadState{Workload: workload, Mode: model.ModeObserve}, nil
	}
	var st WorkloadState
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("decode state of %s: %w", workload, err)
	}
	return st, nil
}

// States returns the state of every workload that was ever promoted,
// sorted by workload.
func (s *Store) States() ([]WorkloadState, error) {
	var out []WorkloadState
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).ForEach(func(_, v []byte) error {
			var st WorkloadState
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
// from it, nothing changes and ErrConflict is returned. The revision must
// exist (or be 0).
func (s *Store) Record(p Promotion, expect *WorkloadState) (Promotion, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		cur, err := stateIn(tx, p.Workload)
		if err != nil {
			return err
		}
		if expect != nil && (cur.Mode != expect.Mode || cur.Revision != expect.Revision) {
			return fmt.Errorf("%w: %s is %s at revision %d now", ErrConflict, p.Workload, cur.Mode, cur.Revision)
		}
		if p.ToRevision != 0 {
			rb := tx.Bucket(bucketRevisions).Bucket([]byte(p.Workload))
			if rb == nil || rb.Get(u64(uint64(p.ToRevision))) == nil {
				return fmt.Errorf("revision %d of %s: %w", p.ToRevision, p.Workload, ErrNotFound)
			}
		}
		pb := tx.Bucket(bucketPromotions)
		prev := ""
		if k, v := pb.Cursor().Last(); k != nil {
			var last Promotion
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
		st := WorkloadState{Workload: p.Workload, Mode: p.ToMode, Revision: p.ToRevision, Since: p.At, Seq: seq}
		raw, err = json.Marshal(st)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketState).Put([]byte(p.Workload), raw)
	})
	if err != nil {
		return Promotion{}, fmt.Errorf("record %s of %s: %w", p.Action, p.Workload, err)
	}
	return p, nil
}

// History returns the promotion events of workload (all workloads for ""),
// oldest first.
func (s *Store) History(workload string) ([]Promotion, error) {
	var out []Promotion
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPromotions).ForEach(func(_, v []byte) error {
			var p Promotion
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

// VerifyChain checks the whole promotion history: sequence numbers without
// gaps, each PrevHash equal to the previous Hash, each Hash recomputed. It
// returns ErrChainBroken naming the first event that does not verify.
func (s *Store) VerifyChain() error {
	all, err := s.History("")
	if err != nil {
		return err
	}
	return VerifyPromotions(all)
}

// VerifyPromotions checks a promotion history read from anywhere (the
// store, an evidence bundle) as VerifyChain does.
//
// Deprecated: temporary alias for the issue-10 merge; use
// model.VerifyPromotions.
func VerifyPromotions(all []Promotion) error { return model.VerifyPromotions(all) }

// VerdictEvent is one audit-denied or denied connection attempt.
//
// Deprecated: temporary alias for the issue-10 merge; use model.VerdictEvent.
type VerdictEvent = model.VerdictEvent

// AddVerdicts appends verdict events in one transaction.
func (s *Store) AddVerdicts(evs []VerdictEvent) error {
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
func (s *Store) Verdicts(since time.Time) ([]VerdictEvent, error) {
	var out []VerdictEvent
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketVerdicts).Cursor()
		start := u64(uint64(max(since.UnixNano(), 0)))
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			var e VerdictEvent
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
