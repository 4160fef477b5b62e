//go:build linux

package realnode_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/kubetest/realnode"
)

// TestMain starts the package's API server, with nanoseg's CRDs (the node
// agent watches NanoSegments).
func TestMain(m *testing.M) {
	kubetest.Main(m, kubetest.Options{CRDDirs: []string{"../../../manifests/crds"}})
}

// startNode starts a real node for the test's cluster and stops it at
// cleanup. It skips when not root, and when a program is missing unless
// NANOSEG_KUBE_REQUIRED=1.
func startNode(t *testing.T, c *kubetest.Cluster, opts realnode.Options) *realnode.Node {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("real node: needs root (containerd, kubelet, a bridge); run as root under the kernel lock")
	}
	start := time.Now()
	n, err := realnode.Start(context.Background(), c, opts)
	if errors.Is(err, kubetest.ErrUnavailable) && os.Getenv(kubetest.EnvRequired) != "1" {
		t.Skipf("real node unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s Ready in %s", n.Name, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		start := time.Now()
		if err := n.Stop(); err != nil {
			t.Errorf("stop node: %v", err)
		}
		t.Logf("node %s stopped in %s", n.Name, time.Since(start).Round(time.Millisecond))
	})
	return n
}

// runPods runs echo pods on n and returns them with their netns paths.
func runPods(t *testing.T, n *realnode.Node, ns string, port int, pods ...*corev1.Pod) (map[string]*corev1.Pod, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	running := map[string]*corev1.Pod{}
	paths := map[string]string{}
	for _, p := range pods {
		p.Namespace = ns
		if err := n.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		got, err := n.WaitRunning(ctx, ns, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		running[p.Name] = got
		path, err := n.Netns(netip.MustParseAddr(got.Status.PodIP))
		if err != nil {
			t.Fatal(err)
		}
		paths[p.Name] = path
	}
	t.Logf("%d pods Running in %s", len(pods), time.Since(start).Round(time.Millisecond))
	return running, paths
}

// TestPodsTalkOnRealNode runs two echo pods on a real node and connects
// from one pod's CNI netns to the other over the bridge; then a rule set
// programmed by hand in the server's netns (what a NetworkPolicy
// admitting only the first client means) lets that client in and drops a
// second one.
func TestPodsTalkOnRealNode(t *testing.T) {
	c := kubetest.Shared(t)
	n := startNode(t, c, realnode.Options{})
	ns := c.Namespace(t, nil)
	const port = 8080
	pods, paths := runPods(t, n, ns, port,
		realnode.EchoPod("", "server", map[string]string{"app": "server"}, port),
		realnode.EchoPod("", "allowed", map[string]string{"app": "allowed"}, port),
		realnode.EchoPod("", "denied", map[string]string{"app": "denied"}, port))
	server := netip.AddrPortFrom(netip.MustParseAddr(pods["server"].Status.PodIP), port)
	for _, client := range []string{"allowed", "denied"} {
		if err := realnode.Echo(paths[client], server, 3*time.Second); err != nil {
			t.Fatalf("%s -> server %s before any policy: %v", client, server, err)
		}
	}
	if paths["allowed"] == paths["server"] {
		t.Fatalf("two pods share netns %s", paths["server"])
	}
	programByHand(t, paths["server"], netip.MustParseAddr(pods["allowed"].Status.PodIP), port)
	if err := realnode.Echo(paths["allowed"], server, 3*time.Second); err != nil {
		t.Errorf("allowed -> server after the rule set: %v", err)
	}
	if err := realnode.Echo(paths["denied"], server, time.Second); err == nil {
		t.Errorf("denied -> server passed after the rule set")
	}
}

// TestSweep removes what nodes of dead processes left (run it after a
// test binary was killed in the middle of a node's life): afterwards no
// directory, bridge or daemon of a dead owner remains.
func TestSweep(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("real node: needs root")
	}
	if err := realnode.Sweep(); err != nil {
		t.Fatal(err)
	}
	for _, root := range []string{"/run/nanoseg-realnode", "/var/lib/nanoseg-realnode"} {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if pid, err := strconv.Atoi(e.Name()); err == nil && syscall.Kill(pid, 0) != nil {
				t.Errorf("%s/%s of dead pid %d left after Sweep", root, e.Name(), pid)
			}
		}
	}
	links, _ := filepath.Glob("/sys/class/net/nsrn*")
	for _, l := range links {
		if pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(l), "nsrn")); err == nil && syscall.Kill(pid, 0) != nil {
			t.Errorf("bridge %s of dead pid %d left after Sweep", filepath.Base(l), pid)
		}
	}
}
