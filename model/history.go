package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// VerdictEvent is one logged audit-denied or denied connection attempt, as
// the observation sink keeps it and evidence bundles list it.
//
// JSON: {"at":"…","endpoint":"nanoseg-lab-shop-db-0","verdict":"deny",
// "ruleID":"shop.db","source":"shop/web","srcPort":41234,
// "destination":"shop/db","protocol":"TCP","port":5432}.
type VerdictEvent struct {
	At          time.Time `json:"at"`
	Endpoint    string    `json:"endpoint"` // netns name where it was logged
	Verdict     Verdict   `json:"verdict"`  // audit-deny or deny
	RuleID      string    `json:"ruleID"`
	Source      string    `json:"source"` // workload or address
	SrcPort     uint16    `json:"srcPort,omitempty"`
	Destination string    `json:"destination"` // workload, DNS name or address
	Protocol    Protocol  `json:"protocol"`
	Port        uint16    `json:"port"`
	// Count, when more than 1, makes the event an aggregate of Count
	// attempts alike but for their source port, logged from FirstAt to
	// At (a cluster's NanoSegment status keeps them so; an agent's
	// events are single, with Count 0).
	Count   int       `json:"count,omitempty"`
	FirstAt time.Time `json:"firstAt,omitzero"`
}

// Attempts is how many connection attempts e stands for: Count, at
// least 1.
func (e VerdictEvent) Attempts() int { return max(e.Count, 1) }

// Action is what a promotion event did.
type Action string

// Actions of promotion events.
const (
	ActionPromote  Action = "promote"
	ActionRollback Action = "rollback"
)

// ErrChainBroken: a promotion history does not verify.
var ErrChainBroken = errors.New("promotion history hash chain broken")

// Promotion is one recorded change of a workload's mode or revision
// (docs/architecture.md "Words"): who, when, which revision, why. The history is
// append-only and hash-chained: Hash is the SHA-256 (hex) of the event's
// JSON form with Hash empty (so PrevHash included), so an edit or a gap
// anywhere breaks every later hash. The JSON form is therefore frozen:
// fields, their order and their tags must not change, or histories
// recorded earlier stop verifying; a new field is only ever added with
// omitempty (Forced), so the events recorded without it hash as before.
type Promotion struct {
	Seq          uint64    `json:"seq"`
	At           time.Time `json:"at"`
	Who          string    `json:"who"`
	Workload     string    `json:"workload"`
	Action       Action    `json:"action"`
	FromMode     Mode      `json:"fromMode"`
	ToMode       Mode      `json:"toMode"`
	FromRevision int       `json:"fromRevision"`
	ToRevision   int       `json:"toRevision"`
	Reason       string    `json:"reason"`
	// Undoes is the Seq of the promotion a rollback reverted.
	Undoes uint64 `json:"undoes,omitempty"`
	// Forced lists the reasons a promotion to enforce was refused for
	// (coverage below the threshold, a window longer than what was
	// observed, a silent workload) when the operator forced it anyway.
	// Absent (omitempty) otherwise, so events recorded before it existed
	// hash as they did.
	Forced   []string `json:"forced,omitempty"`
	PrevHash string   `json:"prevHash"`
	Hash     string   `json:"hash"`
}

// ChainHash computes p's Hash from its other fields.
func (p Promotion) ChainHash() string {
	p.Hash = ""
	raw, _ := json.Marshal(p) // a struct of plain fields: cannot fail
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// VerifyPromotions checks a whole promotion history, oldest first, read
// from anywhere (a store, an evidence bundle): sequence numbers 1, 2, …
// without gaps, each PrevHash equal to the previous Hash (the first one
// empty), each Hash recomputed. It returns an error wrapping ErrChainBroken
// naming the first event that does not verify.
func VerifyPromotions(all []Promotion) error {
	prev := ""
	for i, p := range all {
		switch {
		case p.Seq != uint64(i+1):
			return fmt.Errorf("%w: event %d has sequence %d (gap or reorder)", ErrChainBroken, i+1, p.Seq)
		case p.PrevHash != prev:
			return fmt.Errorf("%w: event %d does not link to event %d", ErrChainBroken, p.Seq, p.Seq-1)
		case p.ChainHash() != p.Hash:
			return fmt.Errorf("%w: event %d was altered", ErrChainBroken, p.Seq)
		}
		prev = p.Hash
	}
	return nil
}
