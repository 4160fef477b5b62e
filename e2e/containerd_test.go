//go:build linux

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	ctrdtest "github.com/nanoseg/nanoseg/internal/ctrtest/containerd"
	"github.com/nanoseg/nanoseg/internal/kubetest/realnode"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// The containerd story's network: 198.18.219.0/24 (no other test uses
// it), one bridge in a hub netns of the test's own.
const (
	ctrdNS    = "nanoseg-e2e"           // containerd namespace
	ctrdImage = "nanoseg.test/echo:1"   // the echo server, one static file
	ctrdPfx   = "nanoseg-e2e-ctrdtest-" // the test containerd's directory prefix
	ctrdWeb   = "198.18.219.10"
	ctrdAPI   = "198.18.219.11"
	ctrdIntr  = "198.18.219.13"
	ctrdMask  = 24
	ctrdPort  = "9090"                 // api's port
	ctrdEvery = "300ms"                // web's pause between connections
	ctrdWhy   = "containerd e2e story" // promotion reason
	ctrdHubBr = "br0"                  // the hub's bridge
	ctrdHubIf = "eth0"                 // each container's interface
	ctrdBuild = "../internal/ctrtest/echo"
)

// bridgeTo puts n on hub's bridge br with a veth pair (eth0 in n, name in
// hub) and gives n's side addr.
func bridgeTo(t *testing.T, hub *nettest.Netns, br netlink.Link, n *nettest.Netns, name string, addr netip.Prefix) {
	t.Helper()
	hh, nh := hub.Netlink(t), n.Netlink(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index},
		PeerName: ctrdHubIf, PeerNamespace: netlink.NsFd(n.Handle)}
	if err := hh.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s: %v", name, err)
	}
	hl, err := hh.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	nl, err := nh.LinkByName(ctrdHubIf)
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.AddrAdd(nl, nettest.Addr(addr)); err != nil {
		t.Fatal(err)
	}
	if err := nh.LinkSetUp(nl); err != nil {
		t.Fatal(err)
	}
	if lo, err := nh.LinkByName("lo"); err == nil {
		_ = nh.LinkSetUp(lo)
	}
}

// TestContainerdStory is the agent's story on real containerd containers
// (issue 16): a containerd of the test's own runs web, api and intruder
// (the project's echo server, compose labels naming namespace shop and
// the service), each in a netns the test made on one bridge; the agent,
// on `--containers containerd://SOCK?namespace=NS` only, finds them,
// observes web → api, proposes; api promoted to enforce, web still
// reaches api and the intruder, which nothing allowed, is dropped (real
// TCP connections from inside the containers' netns). Then every
// container is removed and the cleanup checks that no container, task,
// netns, nftables table, containerd process or directory is left.
func TestContainerdStory(t *testing.T) {
	requireRoot(t)
	// Registered first, so it runs last: what the test leaves is nothing.
	var d *ctrdtest.Daemon
	var paths []string
	t.Cleanup(func() {
		for _, p := range paths {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("netns left: %s", p)
			}
		}
		if d == nil {
			return
		}
		if _, err := os.Stat(d.Dir); err == nil {
			t.Errorf("containerd directory left: %s", d.Dir)
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), d.Dir) {
				t.Errorf("process left naming %s: %s", d.Dir, strings.ReplaceAll(string(b), "\x00", " "))
			}
		}
		if hasTable("/proc/self/ns/net") {
			t.Errorf("the host's netns holds nanoseg's table")
		}
	})
	d = ctrdtest.Start(t, ctrdtest.Config{Prefix: ctrdPfx, Namespace: ctrdNS,
		DisabledPlugins: []string{"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
			"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"}})

	// The image: the echo server, static, alone in its root filesystem.
	dir := t.TempDir()
	echo := filepath.Join(dir, "echo")
	build := exec.Command("go", "build", "-o", echo, ctrdBuild)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build echo: %v\n%s", err, out)
	}
	img := realnode.Image{Tags: []string{ctrdImage}, Entrypoint: []string{"/echo"},
		Files: []realnode.File{{Path: "echo", Source: echo, Mode: 0o755}}}
	archive, err := img.Archive()
	if err != nil {
		t.Fatal(err)
	}
	d.Ctr(t, "image", "import", archive)

	// The network: a hub netns with a bridge, one netns per container.
	hub := nettest.New(t)
	hh := hub.Netlink(t)
	if err := hh.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: ctrdHubBr}}); err != nil {
		t.Fatal(err)
	}
	br, err := hh.LinkByName(ctrdHubBr)
	if err != nil {
		t.Fatal(err)
	}
	if err := hh.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	nsOf := map[string]string{}
	for _, c := range []struct{ name, ip string }{{"web", ctrdWeb}, {"api", ctrdAPI}, {"intruder", ctrdIntr}} {
		n := nettest.New(t)
		bridgeTo(t, hub, br, n, "v-"+c.name, netip.PrefixFrom(netip.MustParseAddr(c.ip), ctrdMask))
		nsOf[c.name] = n.Path()
		paths = append(paths, n.Path())
	}
	paths = append(paths, hub.Path())

	// The containers, compose-labelled: project shop, service NAME.
	run := func(name string, args ...string) {
		t.Helper()
		id := "shop-" + name + "-1"
		d.IDs = append(d.IDs, id)
		a := []string{"run", "-d", "--null-io", "--cgroup", d.Cgroup(id), "--runc-root", d.RuncRoot(),
			"--with-ns", "network:" + nsOf[name], "--label", "nerdctl/name=" + id,
			"--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=" + name,
			ctrdImage, id, "/echo", "-name", name}
		d.Ctr(t, append(a, args...)...)
	}
	run("api", "-listen", ctrdPort)
	run("web", "-listen", "8080", "-connect", ctrdAPI+":"+ctrdPort, "-every", ctrdEvery)
	run("intruder")

	ag := &agentEnv{t: t, dir: t.TempDir(), labState: t.TempDir()}
	ag.sock = filepath.Join(ag.dir, "agent.sock")
	if ag.logf, err = os.Create(filepath.Join(ag.dir, "agent.log")); err != nil {
		t.Fatal(err)
	}
	ag.extra = []string{"--containers", "containerd://" + d.Sock + "?namespace=" + ctrdNS}
	t.Cleanup(func() {
		ag.stopAgent(syscall.SIGKILL)
		sweepOwners(t, ag.sock)
		if t.Failed() {
			raw, _ := os.ReadFile(ag.logf.Name())
			t.Logf("agent log:\n%s", raw)
		}
	})
	ag.startContainerAgent()

	// The agent finds the three, each in the netns the test made.
	waitFor(t, 20*time.Second, func() error {
		st := ag.status()
		for _, n := range []string{"web", "api", "intruder"} {
			eps := st["shop/"+n].Endpoints
			if len(eps) != 1 || eps[0].Netns != filepath.Base(nsOf[n]) {
				return fmt.Errorf("shop/%s: endpoints %+v, want one in %s", n, eps, nsOf[n])
			}
		}
		return nil
	})
	// Observe web -> api (web connects on its own), then propose.
	waitFor(t, 30*time.Second, func() error {
		out, err := ag.run("policy", "propose")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		rules := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 5 && strings.HasPrefix(f[0], "shop/") {
				rules[f[0]] = f[3] + "/" + f[4]
			}
		}
		if rules["shop/api"] == "" || strings.HasPrefix(rules["shop/api"], "0/") || rules["shop/web"] == "" || strings.HasSuffix(rules["shop/web"], "/0") {
			return fmt.Errorf("proposal lacks web -> api (ingress/egress rules %v):\n%s", rules, out)
		}
		return nil
	})
	ag.mustRun("promote", "shop/api", "--to", "enforce", "--force", "--reason", ctrdWhy)
	if st := ag.status()["shop/api"]; st.Mode != model.ModeEnforce {
		t.Fatalf("shop/api: mode %s, want enforce", st.Mode)
	}
	waitFor(t, 10*time.Second, func() error {
		if !hasTable(nsOf["api"]) {
			return fmt.Errorf("api's netns %s holds no nanoseg table", nsOf["api"])
		}
		return nil
	})
	if err := dialFrom(nsOf["web"], ctrdAPI+":"+ctrdPort, 2*time.Second); err != nil {
		t.Errorf("web -> api under enforce: %v", err)
	}
	if err := dialFrom(nsOf["intruder"], ctrdAPI+":"+ctrdPort, time.Second); err == nil {
		t.Errorf("intruder reached api under enforce")
	}
	// The intruder's network works: web, still observed, answers it.
	if err := dialFrom(nsOf["intruder"], ctrdWeb+":8080", 2*time.Second); err != nil {
		t.Errorf("intruder -> web (observed): %v", err)
	}
	waitFor(t, 10*time.Second, func() error {
		_, err := ag.run("verdicts", "--verdict", "deny", "--from", "shop/intruder", "--to", "shop/api", "--expect")
		return err
	})

	// Remove everything: the containers (tasks first), then the agent
	// drops their endpoints; the cleanups remove the rest and check.
	for _, n := range []string{"web", "api", "intruder"} {
		id := "shop-" + n + "-1"
		d.Ctr(t, "task", "kill", "-s", "SIGKILL", id)
	}
	for _, n := range []string{"web", "api", "intruder"} {
		id := "shop-" + n + "-1"
		waitFor(t, 10*time.Second, func() error {
			out, err := d.TryCtr("task", "delete", id)
			if err != nil && !strings.Contains(out, "not found") {
				return fmt.Errorf("ctr task delete %s: %v: %s", id, err, out)
			}
			return nil
		})
		d.Ctr(t, "container", "delete", id)
	}
	if out := strings.TrimSpace(d.Ctr(t, "task", "ls", "-q")); out != "" {
		t.Errorf("tasks left: %s", out)
	}
	if out := strings.TrimSpace(d.Ctr(t, "container", "ls", "-q")); out != "" {
		t.Errorf("containers left: %s", out)
	}
	waitFor(t, 20*time.Second, func() error {
		st := ag.status()
		for _, n := range []string{"web", "api", "intruder"} {
			if eps := st["shop/"+n].Endpoints; len(eps) != 0 {
				return fmt.Errorf("shop/%s still has endpoints %+v", n, eps)
			}
		}
		return nil
	})
}
