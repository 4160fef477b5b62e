//go:build linux

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOwnersOnePerNamespace checks the owner files without root or
// namespaces: any file stands in for a netns, since only its device and
// inode identify it. A second name for the same file (a hard link, as
// /proc/PID/ns/net is a second name for /run/netns/NAME) is the same
// namespace.
func TestOwnersOnePerNamespace(t *testing.T) {
	dir := t.TempDir()
	owners := filepath.Join(dir, "owners")
	ns := filepath.Join(dir, "ns-a")
	if err := os.WriteFile(ns, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	alias := filepath.Join(dir, "ns-a-by-another-name")
	if err := os.Link(ns, alias); err != nil {
		t.Fatal(err)
	}
	first := newOwners(owners, "socket /run/a.sock, state file /var/lib/a.db")
	second := newOwners(owners, "socket /run/b.sock, state file /var/lib/b.db")
	if err := first.claim("lab-db", ns); err != nil {
		t.Fatal(err)
	}
	if err := first.claim("lab-db", ns); err != nil {
		t.Fatalf("claiming a held endpoint again: %v", err)
	}
	err := second.claim("labels-db", alias)
	var oe *OwnedError
	if !errors.As(err, &oe) || !errors.Is(err, ErrOwned) {
		t.Fatalf("second claim of the same namespace under another name: %v, want an *OwnedError", err)
	}
	for _, want := range []string{"netns labels-db", fmt.Sprintf("pid %d", os.Getpid()), "socket /run/a.sock, state file /var/lib/a.db", "as " + ns} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if oe.Owner.PID != os.Getpid() || oe.Owner.Since.IsZero() {
		t.Errorf("owner read back: %+v", oe.Owner)
	}
	if second.owns("labels-db") {
		t.Errorf("refused endpoint counted as owned")
	}

	// Another namespace is not affected.
	other := filepath.Join(dir, "ns-b")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := second.claim("labels-web", other); err != nil {
		t.Fatalf("claim of another namespace: %v", err)
	}

	// A release removes the owner file; then the other may claim it.
	first.release("lab-db")
	if err := second.claim("labels-db", alias); err != nil {
		t.Fatalf("claim after the owner let go: %v", err)
	}
	if err := first.claim("lab-db", ns); !errors.Is(err, ErrOwned) {
		t.Fatalf("first claim back while the second holds it: %v", err)
	}

	// An owner that dies (kill -9: the lock goes with its open file, the
	// file stays) blocks nobody.
	f := second.held["labels-db"]
	delete(second.held, "labels-db")
	f.Close()
	if entries, _ := os.ReadDir(owners); len(entries) != 2 {
		t.Fatalf("owner files after a simulated kill: %d, want 2 (stale one kept)", len(entries))
	}
	if err := first.claim("lab-db", ns); err != nil {
		t.Fatalf("claim over a dead owner's file: %v", err)
	}
	first.releaseAll()
	second.releaseAll()
	if entries, _ := os.ReadDir(owners); len(entries) != 0 {
		t.Errorf("owner files left after releaseAll: %d", len(entries))
	}
}

// TestOwnersMissingNamespace: a path that names nothing cannot be claimed,
// and the error is not a refusal by an owner.
func TestOwnersMissingNamespace(t *testing.T) {
	o := newOwners(t.TempDir(), "")
	err := o.claim("gone", filepath.Join(t.TempDir(), "nothing"))
	if err == nil || errors.Is(err, ErrOwned) {
		t.Fatalf("claim of a missing netns: %v", err)
	}
}

// TestOwnersSweepRemovesOnlyUnheldFiles: the files of owners that died
// without releasing (kill -9) are removed; a held claim's file stays, and
// the namespace can be claimed again afterwards.
func TestOwnersSweepRemovesOnlyUnheldFiles(t *testing.T) {
	dir := t.TempDir()
	owners := filepath.Join(dir, "owners")
	nsA, nsB := filepath.Join(dir, "ns-a"), filepath.Join(dir, "ns-b")
	for _, p := range []string{nsA, nsB} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	alive := newOwners(owners, "alive")
	if err := alive.claim("a", nsA); err != nil {
		t.Fatal(err)
	}
	dead := newOwners(owners, "dead")
	if err := dead.claim("b", nsB); err != nil {
		t.Fatal(err)
	}
	deadFile := dead.held["b"].Name()
	dead.held["b"].Close() // the process died: the kernel drops its lock, the file stays
	delete(dead.held, "b")
	if n := newOwners(owners, "sweeper").sweep(); n != 1 {
		t.Errorf("sweep removed %d files, want 1 (the dead owner's)", n)
	}
	if _, err := os.Stat(deadFile); !os.IsNotExist(err) {
		t.Errorf("the dead owner's file %s is still there: %v", deadFile, err)
	}
	if _, err := os.Stat(alive.held["a"].Name()); err != nil {
		t.Errorf("the live owner's file was removed: %v", err)
	}
	if err := newOwners(owners, "next").claim("a", nsA); !errors.Is(err, ErrOwned) {
		t.Errorf("claim of a held namespace after a sweep: %v, want ErrOwned", err)
	}
	if err := newOwners(owners, "next").claim("b", nsB); err != nil {
		t.Errorf("claim of the swept namespace: %v", err)
	}
}
