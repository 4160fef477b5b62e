//go:build linux

package nodeagent

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/policies"
)

// fakeInventory is an Inventory whose snapshot and sync the test sets.
type fakeInventory struct {
	synced atomic.Bool
	mu     sync.Mutex
	snap   inventory.Snapshot
	lists  int
	subs   []func()
}

func (f *fakeInventory) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f *fakeInventory) HasSynced() bool               { return f.synced.Load() }
func (f *fakeInventory) List(context.Context) (inventory.Snapshot, error) {
	if !f.synced.Load() {
		return inventory.Snapshot{}, errors.New("not synced")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	return f.snap, nil
}
func (f *fakeInventory) Watch(ctx context.Context, notify func()) error {
	f.mu.Lock()
	f.subs = append(f.subs, notify)
	f.mu.Unlock()
	<-ctx.Done()
	return nil
}

// set replaces the snapshot and notifies.
func (f *fakeInventory) set(s inventory.Snapshot) {
	f.mu.Lock()
	f.snap = s
	subs := append([]func(){}, f.subs...)
	f.mu.Unlock()
	for _, n := range subs {
		n()
	}
}

// fakePolicies is a Policies whose policies in force and sync the test sets.
type fakePolicies struct {
	synced atomic.Bool
	mu     sync.Mutex
	in     policies.InForce
	reads  int
	subs   []func()
}

func (f *fakePolicies) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f *fakePolicies) Synced() bool                  { return f.synced.Load() }
func (f *fakePolicies) InForce() policies.InForce {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.in
}
func (f *fakePolicies) Watch(ctx context.Context, notify func()) {
	f.mu.Lock()
	f.subs = append(f.subs, notify)
	f.mu.Unlock()
	<-ctx.Done()
}

func (f *fakePolicies) set(in policies.InForce) {
	f.mu.Lock()
	f.in = in
	subs := append([]func(){}, f.subs...)
	f.mu.Unlock()
	for _, n := range subs {
		n()
	}
}
