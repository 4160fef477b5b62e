//go:build linux

// Package nettest gives kernel tests network namespaces of their own.
//
// Every namespace it creates is named "nanoseg-test-<random>" and is removed
// in t.Cleanup, also when the test fails; links created inside it go with it.
// A test process killed before its cleanup leaves an owner file naming its
// pid (OwnerDir), and the next test process removes what it left.
// Tests that need the kernel call RequireRoot first, so that `go test ./...`
// passes, with a message, as a non-root user. Test-only: production code never
// imports this package.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Prefix starts the name of every namespace this package creates.
const Prefix = "nanoseg-test-"

// RequireRoot skips t unless the process runs as root, saying why.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root to create network namespaces, nftables tables and veth links; run `sudo make test`")
	}
}

// Netns is one network namespace created for a test.
type Netns struct {
	Name   string         // name under /run/netns
	Handle netns.NsHandle // open handle, closed at cleanup
}

// Path returns the bind-mount path of n, usable with nftables.WithNetNSFd
// after opening, or with `ip netns exec`.
func (n *Netns) Path() string { return nsenter.Path(n.Name) }

// OwnerDir holds one file per namespace this package created, named after
// the namespace and holding the creating process's pid: a test binary
// killed before its cleanup (a timeout, kill -9) leaves namespaces that
// the next test process removes, since their pid is gone.
const OwnerDir = "/run/nanoseg/nettest"

var sweepOnce sync.Once

// sweep removes the namespaces (and owner files) of test processes that
// are no longer running.
func sweep() {
	ents, err := os.ReadDir(OwnerDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		raw, err := os.ReadFile(filepath.Join(OwnerDir, e.Name()))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) == nil || !strings.HasPrefix(e.Name(), Prefix) {
			continue // alive (or not ours)
		}
		_ = nsenter.DeleteNamed(e.Name())
		_ = os.Remove(filepath.Join(OwnerDir, e.Name()))
	}
}

// New creates a fresh network namespace with lo up and registers its
// removal with t.Cleanup. It fails the test on error. The first call of a
// process removes the namespaces that killed test processes left behind.
func New(t testing.TB) *Netns {
	t.Helper()
	RequireRoot(t)
	sweepOnce.Do(sweep)
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := Prefix + hex.EncodeToString(b[:])
	owner := filepath.Join(OwnerDir, name)
	if err := os.MkdirAll(OwnerDir, 0o755); err == nil {
		_ = os.WriteFile(owner, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	}
	h, err := nsenter.NewNamed(name)
	if err != nil {
		_ = nsenter.DeleteNamed(name)
		_ = os.Remove(owner)
		t.Fatalf("nettest: %v", err)
	}
	n := &Netns{Name: name, Handle: h}
	t.Cleanup(func() {
		h.Close()
		if err := nsenter.DeleteNamed(name); err != nil {
			t.Errorf("nettest: %v", err)
		}
		_ = os.Remove(owner)
	})
	nl := n.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("nettest: set lo up in %s: %v", name, err)
	}
	return n
}

// Netlink returns a netlink handle bound to n, closed at cleanup.
func (n *Netns) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		t.Fatalf("nettest: netlink handle in %s: %v", n.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs fn inside n (see nsenter.Do) and fails the test if fn or the
// namespace switch fails.
func (n *Netns) Do(t testing.TB, fn func() error) {
	t.Helper()
	if err := nsenter.Do(n.Handle, fn); err != nil {
		t.Fatalf("nettest: in %s: %v", n.Name, err)
	}
}

// Connect joins a and b with a veth pair named "eth0" on both sides, brings
// both up, and adds addrsA to a's side and addrsB to b's side (IPv6 addresses
// without duplicate address detection, so they are usable at once). Use only
// addresses from 198.18.0.0/15 and 2001:db8::/32.
func Connect(t testing.TB, a, b *Netns, addrsA, addrsB []netip.Prefix) {
	t.Helper()
	na, nb := a.Netlink(t), b.Netlink(t)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "eth0"},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(b.Handle),
	}
	if err := na.LinkAdd(veth); err != nil {
		t.Fatalf("nettest: add veth %s<->%s: %v", a.Name, b.Name, err)
	}
	setup := func(h *netlink.Handle, ns string, addrs []netip.Prefix) {
		l, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatalf("nettest: eth0 in %s: %v", ns, err)
		}
		for _, p := range addrs {
			if err := h.AddrAdd(l, Addr(p)); err != nil {
				t.Fatalf("nettest: add %s in %s: %v", p, ns, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatalf("nettest: eth0 up in %s: %v", ns, err)
		}
	}
	setup(na, a.Name, addrsA)
	setup(nb, b.Name, addrsB)
}

// Addr turns p into a netlink address; IPv6 addresses get IFA_F_NODAD so
// they are usable without waiting for duplicate address detection.
func Addr(p netip.Prefix) *netlink.Addr {
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		panic(fmt.Sprintf("nettest: bad prefix %s: %v", p, err)) // test input, not user input
	}
	if p.Addr().Is6() {
		a.Flags |= 0x02 // IFA_F_NODAD
	}
	return a
}
