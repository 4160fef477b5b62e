//go:build linux

package kube

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nettest"
)

// fakeProc is a proc tree the finder reads instead of /proc: per pid a
// ns/net link naming a namespace inode, and a cgroup file.
type fakeProc string

func (p fakeProc) add(t *testing.T, pid string, inode uint64, cgroup string) {
	t.Helper()
	dir := filepath.Join(string(p), pid)
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fmt.Sprintf("net:[%d]", inode), filepath.Join(dir, "ns", "net")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFinderIdentifiesNewPod: a namespace containerd would mount
// (cni-<uuid> in a watched directory) is a candidate within milliseconds
// of its mount, before any process; a transient process outside kubepods
// does not rule it out; once its sandbox runs in the pod's cgroup the pod
// is found by UID, with the namespace's addresses, and the namespace
// names the pod.
func TestFinderIdentifiesNewPod(t *testing.T) {
	nettest.RequireRoot(t)
	const uid = "8d1bb4a4-5c8e-4a39-9d4f-3b1f4f0b2f6e"
	dir, proc := t.TempDir(), fakeProc(t.TempDir())
	proc.add(t, "self", inodeOf(t, "/proc/self/ns/net"), "0::/\n")
	f, err := NewNetnsFinder(FinderConfig{Dirs: []string{dir}, Proc: string(proc), Rescan: time.Hour, MinInterval: 10 * time.Millisecond, HuntInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, func() {}) }()
	t.Cleanup(func() { cancel(); <-done })
	for !f.HasSynced() {
		time.Sleep(5 * time.Millisecond)
	}

	ns := namedNetns(t)
	v4, _ := testAddrs(t)
	p := filepath.Join(dir, "cni-"+uid[:8]+"-aaaa-4bbb-8ccc-"+"dddddddddddd")
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
	if err := unix.Mount(ns.Path(), p, "none", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	mounted := time.Now()
	ino := inodeOf(t, p)
	candidate := func() (Candidate, bool) {
		i := slices.IndexFunc(f.Candidates(), func(c Candidate) bool { return c.Inode == ino })
		if i < 0 {
			return Candidate{}, false
		}
		return f.Candidates()[i], true
	}
	for {
		if c, ok := candidate(); ok {
			if !c.CRI || c.UID != "" || c.Path != p {
				t.Errorf("candidate = %+v", c)
			}
			t.Logf("candidate %s after its mount", time.Since(mounted))
			break
		}
		if time.Since(mounted) > 40*time.Millisecond {
			t.Fatalf("the mounted namespace is no candidate after %s", time.Since(mounted))
		}
		time.Sleep(time.Millisecond)
	}
	addAddrs(t, ns.Handle, v4)

	// The CNI plugin enters it (outside kubepods): still a candidate.
	proc.add(t, "100", ino, "12:pids:/system.slice/containerd.service\n")
	time.Sleep(50 * time.Millisecond)
	if c, ok := candidate(); !ok || c.UID != "" {
		t.Errorf("after a process outside kubepods: candidate %+v, %v; want still one, without a pod", c, ok)
	}
	// The sandbox starts in the pod's cgroup.
	proc.add(t, "101", ino, "12:pids:/kubepods/besteffort/pod"+uid+"/abc\n")
	deadline := time.Now().Add(2 * time.Second)
	var got PodNetns
	for {
		got = f.FindUIDs(map[string][]string{"shop_web": {uid}})["shop_web"]
		if got.Reason == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not found by UID: %+v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got.Path != p || got.Inode != ino || !slices.Equal(got.Addrs, []netip.Addr{v4}) {
		t.Errorf("found %+v, want %s (%d) with %s", got, p, ino, v4)
	}
	if u := f.NetnsPod(ino); u != uid {
		t.Errorf("NetnsPod = %q, want %s", u, uid)
	}
	if c, ok := candidate(); !ok || c.UID != uid {
		t.Errorf("candidate %+v, %v; want one naming the pod", c, ok)
	}
	if o := f.FindUIDs(map[string][]string{"shop_other": {"0123456789abcdef0123456789abcdef"}})["shop_other"]; o.Code != ReasonNotFound {
		t.Errorf("another pod: %+v, want not found", o)
	}
}

// BenchmarkHunt measures one hunt tick (a walk of the real /proc reading
// each process's netns link, and the cgroup of the processes of the one
// hunted namespace, which has no process) against one scan without named
// namespaces of its own in the same run: the hunt runs every
// HuntInterval while a new namespace waits for its sandbox.
func BenchmarkHunt(b *testing.B) {
	nettest.RequireRoot(b)
	f, err := NewNetnsFinder(FinderConfig{})
	if err != nil {
		b.Fatal(err)
	}
	ns := namedNetns(b)
	b.Run("scan", func(b *testing.B) {
		for range b.N {
			f.scan(false)
		}
	})
	b.Run("hunt", func(b *testing.B) {
		ino := inodeOf(b, ns.Path())
		for range b.N {
			f.hunting[ino] = time.Now().Add(time.Hour)
			f.hunt()
		}
	})
}
