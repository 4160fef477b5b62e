//go:build linux

package kube

// Kernel tests of the netns finder: real namespaces (named ones from
// internal/nettest, unnamed ones held by a process), real addresses in
// 198.18.0.0/15 and 2001:db8::/32 picked at random so leftovers of other
// tests cannot match. Run as root under the kernel lock:
// flock /tmp/nanoseg-kernel.lock go test ./inventory/kube/

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/inventory"
)

// testAddrs returns a random IPv4 /32 in 198.18.0.0/15 and IPv6 /128 in
// 2001:db8::/32.
func testAddrs(t testing.TB) (v4, v6 netip.Addr) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	v4 = netip.AddrFrom4([4]byte{198, 18 + b[0]&1, b[1], b[2]%250 + 2})
	v6 = netip.MustParseAddr(fmt.Sprintf("2001:db8:%x:%x::%x", b[3], b[4], uint16(b[5])+1))
	return v4, v6
}

// addAddrs puts addrs on the loopback link of the namespace h (no dummy
// module needed) and brings it up.
func addAddrs(t testing.TB, h netns.NsHandle, addrs ...netip.Addr) {
	t.Helper()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	l, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if err := nl.AddrAdd(l, nettest.Addr(netip.PrefixFrom(a, a.BitLen()))); err != nil {
			t.Fatalf("add %s: %v", a, err)
		}
	}
	if err := nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// namedNetns is a fresh named namespace holding addrs.
func namedNetns(t testing.TB, addrs ...netip.Addr) *nettest.Netns {
	t.Helper()
	n := nettest.New(t)
	addAddrs(t, n.Handle, addrs...)
	return n
}

// holder is a process (sleep) in a network namespace of its own, or in
// the namespace of another holder; killed at cleanup.
type holder struct {
	cmd   *exec.Cmd
	path  string // /proc/PID/ns/net
	inode uint64
}

func (h *holder) kill() {
	if h.cmd.ProcessState == nil {
		_ = h.cmd.Process.Kill()
		_ = h.cmd.Wait()
	}
}

// newHolder starts a process in a new unnamed network namespace (join nil)
// or in join's namespace.
func newHolder(t testing.TB, join *holder) *holder {
	t.Helper()
	nettest.RequireRoot(t)
	cmd := exec.Command("sleep", "600")
	var err error
	if join == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
	} else {
		h, herr := netns.GetFromPath(join.path)
		if herr != nil {
			t.Fatal(herr)
		}
		defer h.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		// A child forked from a thread inside the namespace starts in it.
		err = nsenter.Do(h, cmd.Start)
	}
	if err != nil {
		t.Fatalf("start namespace holder: %v", err)
	}
	hd := &holder{cmd: cmd, path: fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid)}
	t.Cleanup(hd.kill)
	hd.inode = procInode(hd.path)
	if hd.inode == 0 {
		t.Fatalf("no namespace at %s", hd.path)
	}
	return hd
}

// bindMount mounts the namespace at src on a new file /run/netns/NAME
// (as a CNI runtime does) and returns its path; removed at cleanup, or
// by nettest's sweep if this process dies first.
func bindMount(t testing.TB, src string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := fmt.Sprintf("%smnt%x", nettest.Prefix, b)
	owner := filepath.Join(nettest.OwnerDir, name)
	_ = os.MkdirAll(nettest.OwnerDir, 0o755)
	_ = os.WriteFile(owner, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	t.Cleanup(func() { _ = nsenter.DeleteNamed(name); _ = os.Remove(owner) })
	p := nsenter.Path(name)
	if err := os.MkdirAll(nsenter.RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, p, "none", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mount %s on %s: %v", src, p, err)
	}
	return p
}

func inodeOf(t testing.TB, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// runFinder starts a finder on the host's directories and /proc and
// returns it with a counter of its change notifications.
func runFinder(t testing.TB) (*NetnsFinder, *atomic.Int32) {
	t.Helper()
	f, err := NewNetnsFinder(FinderConfig{Rescan: time.Hour, MinInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var changes atomic.Int32
	go func() { done <- f.Run(ctx, func() { changes.Add(1) }) }()
	t.Cleanup(func() { cancel(); <-done })
	for !f.HasSynced() {
		time.Sleep(5 * time.Millisecond)
	}
	return f, &changes
}

// findEventually calls Find (after Refresh when refresh is set) until
// check accepts the answer for key, or fails after 5s.
func findEventually(t *testing.T, f *NetnsFinder, pods map[string][]netip.Addr, key string, refresh bool, check func(Found) bool) Found {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if refresh {
			f.Refresh()
		}
		got := f.Find(pods)[key]
		if check(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: last answer %+v", key, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFinderFindsNamespaces: a named namespace (dual-stack), a namespace
// only a process holds, a namespace bind-mounted by a "runtime" after its
// addresses were set, two namespaces with one address (ambiguous), and an
// address nowhere, all in one Find.
func TestFinderFindsNamespaces(t *testing.T) {
	nettest.RequireRoot(t)
	a4, a6 := testAddrs(t)
	named := namedNetns(t, a4, a6)
	p4, _ := testAddrs(t)
	proc := newHolder(t, nil)
	ph, err := netns.GetFromPath(proc.path)
	if err != nil {
		t.Fatal(err)
	}
	addAddrs(t, ph, p4)
	ph.Close()
	d4, _ := testAddrs(t)
	namedNetns(t, d4)
	namedNetns(t, d4)
	x4, _ := testAddrs(t)

	f, changes := runFinder(t)
	pods := map[string][]netip.Addr{"shop_named": {a4, a6}, "shop_proc": {p4}, "shop_twice": {d4}, "shop_nowhere": {x4}}
	got := f.Find(pods)
	if g := got["shop_named"]; g.Reason != "" || g.Path != named.Path() || g.Inode != inodeOf(t, named.Path()) {
		t.Errorf("named namespace: %+v, want %s", g, named.Path())
	}
	if g := got["shop_proc"]; g.Reason != "" || g.Path != proc.path || g.Inode != proc.inode {
		t.Errorf("process-only namespace: %+v, want %s (inode %d)", g, proc.path, proc.inode)
	}
	if g := got["shop_twice"]; g.Code != ReasonAmbiguous {
		t.Errorf("address in two namespaces: %+v, want ambiguous", g)
	}
	if g := got["shop_nowhere"]; g.Code != ReasonNotFound {
		t.Errorf("address nowhere: %+v, want not found", g)
	}

	// A runtime's namespace: made by a process, addressed, then
	// bind-mounted; the process exits. Found through inotify alone (no
	// Refresh), by its bind mount.
	m4, m6 := testAddrs(t)
	rt := newHolder(t, nil)
	rh, err := netns.GetFromPath(rt.path)
	if err != nil {
		t.Fatal(err)
	}
	addAddrs(t, rh, m4, m6)
	rh.Close()
	before := changes.Load()
	mnt := bindMount(t, rt.path)
	rt.kill()
	pods["shop_mounted"] = []netip.Addr{m6, m4}
	g := findEventually(t, f, pods, "shop_mounted", false, func(g Found) bool { return g.Reason == "" })
	if g.Path != mnt || g.Inode != rt.inode {
		t.Errorf("bind-mounted namespace: %+v, want %s (inode %d)", g, mnt, rt.inode)
	}
	if changes.Load() == before {
		t.Error("a new bind mount changed nothing the finder reported")
	}
}

// TestFinderProcessExit: a namespace two processes hold is found by one
// /proc path; when that process exits, Find moves to the other's path
// (same inode); when both are gone the pod is not found.
func TestFinderProcessExit(t *testing.T) {
	nettest.RequireRoot(t)
	v4, v6 := testAddrs(t)
	first := newHolder(t, nil)
	h, err := netns.GetFromPath(first.path)
	if err != nil {
		t.Fatal(err)
	}
	addAddrs(t, h, v4, v6)
	h.Close()
	second := newHolder(t, first)
	if second.inode != first.inode {
		t.Fatalf("second holder in namespace %d, want %d", second.inode, first.inode)
	}
	f, _ := runFinder(t)
	pods := map[string][]netip.Addr{"shop_p": {v4, v6}}
	g := f.Find(pods)["shop_p"]
	if g.Reason != "" || g.Inode != first.inode {
		t.Fatalf("found %+v, want inode %d", g, first.inode)
	}
	byPath := map[string]*holder{first.path: first, second.path: second}
	used, other := byPath[g.Path], first
	if used == first {
		other = second
	}
	if used == nil {
		t.Fatalf("path %s is neither holder's", g.Path)
	}
	used.kill()
	g = f.Find(pods)["shop_p"]
	if g.Reason != "" || g.Path != other.path || g.Inode != first.inode {
		t.Errorf("after %s exited: %+v, want %s, same inode", used.path, g, other.path)
	}
	other.kill()
	findEventually(t, f, pods, "shop_p", true, func(g Found) bool { return g.Code == ReasonNotFound })
}

// TestFinderIPReuse: a pod's address moves to a new pod in a new
// namespace while the old namespace still holds it: the new pod is
// ambiguous, never matched to the old namespace; once the old namespace is
// gone the new pod gets the new namespace (new inode), and the old
// namespace's cached addresses play no part.
func TestFinderIPReuse(t *testing.T) {
	nettest.RequireRoot(t)
	v4, _ := testAddrs(t)
	old := namedNetns(t, v4)
	f, _ := runFinder(t)
	g := f.Find(map[string][]netip.Addr{"shop_old": {v4}})["shop_old"]
	if g.Reason != "" || g.Path != old.Path() {
		t.Fatalf("old pod: %+v", g)
	}
	oldInode := g.Inode
	fresh := namedNetns(t, v4)
	pods := map[string][]netip.Addr{"shop_new": {v4}} // the old pod is gone from the API
	findEventually(t, f, pods, "shop_new", true, func(g Found) bool { return g.Code == ReasonAmbiguous })
	if err := nsenter.DeleteNamed(old.Name); err != nil {
		t.Fatal(err)
	}
	g = findEventually(t, f, pods, "shop_new", false, func(g Found) bool { return g.Reason == "" })
	if g.Path != fresh.Path() || g.Inode == oldInode || g.Inode != inodeOf(t, fresh.Path()) {
		t.Errorf("new pod: %+v, want %s with a new inode (old %d)", g, fresh.Path(), oldInode)
	}
}

// TestFinderAddressesAddedLater: a namespace that appears without
// addresses (the CNI plugin adds them after the runtime made it) is found
// once the pod's event asks for a rescan.
func TestFinderAddressesAddedLater(t *testing.T) {
	nettest.RequireRoot(t)
	n := nettest.New(t)
	f, _ := runFinder(t)
	v4, v6 := testAddrs(t)
	pods := map[string][]netip.Addr{"shop_late": {v4, v6}}
	if g := f.Find(pods)["shop_late"]; g.Code != ReasonNotFound {
		t.Fatalf("before addresses: %+v", g)
	}
	addAddrs(t, n.Handle, v4)
	findEventually(t, f, pods, "shop_late", true, func(g Found) bool { return g.Code == ReasonPartial })
	addAddrs(t, n.Handle, v6)
	findEventually(t, f, pods, "shop_late", true, func(g Found) bool { return g.Reason == "" && g.Path == n.Path() })
}

// BenchmarkScan measures one full scan (listing the netns directories and
// /proc, reading every namespace's addresses) with N named namespaces.
func BenchmarkScan(b *testing.B) {
	nettest.RequireRoot(b)
	for _, n := range []int{10, 100} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range n {
				v4, v6 := testAddrs(b)
				namedNetns(b, v4, v6)
			}
			f, err := NewNetnsFinder(FinderConfig{})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				f.scan(true)
			}
			b.StopTimer()
			f.mu.Lock()
			found := len(f.entries)
			f.mu.Unlock()
			if found < n {
				b.Fatalf("scan found %d namespaces, want at least %d", found, n)
			}
			b.ReportMetric(float64(found), "netns")
		})
	}
}

// TestSourceWithNetnsFinder: the source with the real finder over real
// namespaces. A pod of this node is found in its namespace; its address
// reused by a new pod in a new namespace: while both namespaces hold it
// the new pod is unfound (ambiguous) and a peer, and once the old
// namespace is gone the new pod is a new endpoint (new key, new inode)
// carrying nothing of the old one.
func TestSourceWithNetnsFinder(t *testing.T) {
	nettest.RequireRoot(t)
	v4, v6 := testAddrs(t)
	old := namedNetns(t, v4, v6)
	f, err := NewNetnsFinder(FinderConfig{Rescan: time.Hour, MinInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s, client := start(t, f, nil, namespace("shop", nil),
		pod("shop", "api-0", node, []string{v4.String(), v6.String()}, labels("role", "old")))
	snap, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e, _ := endpoint(snap, "shop_api-0")
	if e.Path != old.Path() || e.NetnsInode != inodeOf(t, old.Path()) {
		t.Fatalf("old pod: %+v, want %s", e, old.Path())
	}
	oldInode := e.NetnsInode

	ctx := context.Background()
	if err := client.CoreV1().Pods("shop").Delete(ctx, "api-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	fresh := namedNetns(t, v4, v6)
	if _, err := client.CoreV1().Pods("shop").Create(ctx, pod("shop", "api-1", node, []string{v4.String(), v6.String()}, labels("role", "new")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, "new pod ambiguous", func(snap inventory.Snapshot) bool {
		e, ok := endpoint(snap, "shop_api-1")
		u := s.Unfound()
		return ok && e.Path == "" && len(u) == 1 && u[0].Code == ReasonAmbiguous
	})
	if err := nsenter.DeleteNamed(old.Name); err != nil {
		t.Fatal(err)
	}
	snap = eventually(t, s, "new pod found", func(snap inventory.Snapshot) bool {
		e, ok := endpoint(snap, "shop_api-1")
		return ok && e.Path != ""
	})
	e, _ = endpoint(snap, "shop_api-1")
	if e.Path != fresh.Path() || e.NetnsInode == oldInode || e.Labels["role"] != "new" {
		t.Errorf("new pod: %+v, want %s with a new inode (old %d) and its own labels", e, fresh.Path(), oldInode)
	}
	if _, ok := endpoint(snap, "shop_api-0"); ok || len(s.Unfound()) != 0 {
		t.Errorf("old pod still listed or pods unfound: %+v, %+v", snap.Endpoints, s.Unfound())
	}
}

func TestFinderConfigValidate(t *testing.T) {
	err := FinderConfig{Dirs: []string{"run/netns"}, Rescan: -1, MinInterval: -1}.Validate()
	for _, field := range []string{"dirs[0]", "rescan", "minInterval"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("Validate = %v, want %s named", err, field)
		}
	}
	if _, err := NewNetnsFinder(FinderConfig{Rescan: -1}); err == nil {
		t.Error("NewNetnsFinder accepted a negative rescan")
	}
}
