//go:build linux

package realnode_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/kubetest/realnode"
)

// loggingServer returns a busybox pod that accepts TCP connections on
// port and appends one line per accepted connection to dir/<name>.log
// on the host (a hostPath volume): what the peer saw, read by the test.
func loggingServer(name string, port int, dir string) *corev1.Pod {
	p := realnode.EchoPod("", name, map[string]string{"app": name}, port)
	p.Spec.Containers[0].Command = []string{"nc", "-ll", "-p", fmt.Sprint(port), "-e", "/log/" + name + ".sh"}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "log", MountPath: "/log"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "log", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}}}
	return p
}

// writeAcceptScript writes the program loggingServer's nc runs on each
// connection.
func writeAcceptScript(t *testing.T, dir, name string) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\necho accepted >> /log/%s.log\n", name)
	if err := os.WriteFile(filepath.Join(dir, name+".sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// accepted counts the connections server name logged.
func accepted(dir, name string) int {
	b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
	return strings.Count(string(b), "accepted")
}

// clientPod returns a busybox pod whose container, from its first
// instruction, connects to denied in a tight loop (no pause: any window
// is used) and to allowed every 50 ms; it first touches dir/<name>.start
// on the host, whose mtime says when the container started.
func clientPod(name string, labels map[string]string, denied, allowed string, port int, dir string) *corev1.Pod {
	p := realnode.EchoPod("", name, labels, port)
	p.Spec.Containers[0].Ports = nil
	p.Spec.Containers[0].Command = []string{"sh", "-c", fmt.Sprintf(
		"touch /log/%[4]s.start; while :; do nc -w 1 %[1]s %[3]d </dev/null; done & while :; do nc -w 1 %[2]s %[3]d </dev/null; usleep 50000; done",
		denied, allowed, port, name)}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "log", MountPath: "/log"}}
	p.Spec.Volumes = []corev1.Volume{{Name: "log", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}}}}
	return p
}

// netnsWatch records, for each pod network namespace containerd mounts
// under /run/netns while it runs, when it was mounted, when a nanoseg
// table first appeared in it, and when that table first held rules other
// than the agent's placeholder (realnode's view, independent of the
// agent's own metrics). Polled every millisecond.
type netnsWatch struct {
	mu  sync.Mutex
	got map[string]*nsTimes // by netns name
}

type nsTimes struct {
	mounted, table, rules time.Time
	started               time.Time // the client container's first instruction
}

func watchNetns(t *testing.T) *netnsWatch {
	t.Helper()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add("/run/netns"); err != nil {
		w.Close()
		t.Fatal(err)
	}
	nw := &netnsWatch{got: map[string]*nsTimes{}}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); w.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Op&fsnotify.Create != 0 && strings.HasPrefix(filepath.Base(ev.Name), "cni-") {
					wg.Go(func() { nw.follow(ctx, ev.Name) })
				}
			case <-w.Errors:
			}
		}
	})
	return nw
}

// follow polls one new netns file: mounted (nsfs), then a nanoseg table,
// then the table without the placeholder's deny id; for at most 30 s.
func (nw *netnsWatch) follow(ctx context.Context, path string) {
	ts := &nsTimes{}
	nw.mu.Lock()
	nw.got[filepath.Base(path)] = ts
	nw.mu.Unlock()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if f == nil {
			var sfs unix.Statfs_t
			if unix.Statfs(path, &sfs) != nil || sfs.Type != unix.NSFS_MAGIC {
				continue
			}
			var err error
			if f, err = os.Open(path); err != nil {
				return
			}
			nw.set(func() { ts.mounted = now })
		}
		present, placeholder := nanosegTable(int(f.Fd()))
		if present && ts.table.IsZero() {
			nw.set(func() { ts.table = now })
		}
		if present && !placeholder {
			nw.set(func() { ts.rules = now })
			return
		}
	}
}

func (nw *netnsWatch) set(f func()) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	f()
}

// times returns what was recorded for each netns, by name.
func (nw *netnsWatch) times() map[string]nsTimes {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	out := map[string]nsTimes{}
	for k, v := range nw.got {
		out[k] = *v
	}
	return out
}

// nanosegTable reports whether the netns of fd holds table inet nanoseg,
// and whether it is the agent's placeholder (a log prefix with its deny
// id, nodeagent.PlaceholderName).
func nanosegTable(fd int) (present, placeholder bool) {
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		return false, false
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, false
	}
	for _, tb := range tables {
		if tb.Name != "nanoseg" {
			continue
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
		if err != nil {
			return true, true // unreadable for now: not known to be the real rules
		}
		for _, ch := range chains {
			if ch.Table.Name != tb.Name {
				continue
			}
			rules, err := c.GetRules(tb, ch)
			if err != nil {
				return true, true
			}
			for _, r := range rules {
				for _, e := range r.Exprs {
					if l, ok := e.(*expr.Log); ok && strings.HasSuffix(string(l.Data), ":pending-pod") {
						return true, true
					}
				}
			}
		}
		return true, false
	}
	return false, false
}

// netnsOf returns the name of the recorded netns that now holds addr.
func netnsOf(n *realnode.Node, ip string) string {
	p, err := n.Netns(netip.MustParseAddr(ip))
	if err != nil {
		return ""
	}
	return filepath.Base(p)
}

// TestNewPodFirstConnection: a pod selected by an isolating
// NetworkPolicy connects, as the very first thing its container does, to
// a peer the policy does not allow and to one it allows. With the node
// agent running, the denied peer never sees a connection and the allowed
// one eventually does: the pod's netns held a table (the fail-closed
// placeholder, then its own rules) before its container ran. The same
// with the agent in --late-find mode (pods found by their posted
// addresses only, as before) measures the window that closes.
func TestNewPodFirstConnection(t *testing.T) {
	c := kubetest.Shared(t)
	bin := nanoseg(t)
	if !hasNodeCommand(bin) {
		t.Skip("nanoseg has no `node` command")
	}
	n := startNode(t, c, realnode.Options{})
	ns := c.Namespace(t, nil)
	const port = 8080
	dir := t.TempDir()
	for _, name := range []string{"allowed", "denied"} {
		writeAcceptScript(t, dir, name)
	}
	servers, _ := runPods(t, n, ns, port, loggingServer("allowed", port, dir), loggingServer("denied", port, dir))
	allowedIP, deniedIP := servers["allowed"].Status.PodIP, servers["denied"].Status.PodIP

	ctx := context.Background()
	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "client-to-allowed"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "allowed"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: port}}},
			}},
		},
	}
	if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	watch := watchNetns(t)

	// run starts the agent with args, then the client pod, and waits for
	// the allowed server to log the client's connections; it returns the
	// connections the denied server logged meanwhile and the client's
	// netns times.
	run := func(client string, args ...string) (int, nsTimes) {
		t.Helper()
		stop := startAgentArgs(t, c, n, bin, args...)
		defer stop()
		// The agent has the policy in its cache within tens of
		// milliseconds of its first sync; give it ample time.
		time.Sleep(time.Second)
		deniedBefore, allowedBefore := accepted(dir, "denied"), accepted(dir, "allowed")
		pod := clientPod(client, map[string]string{"role": "client"}, deniedIP, allowedIP, port, dir)
		pod.Namespace = ns
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		if err := n.CreatePod(cctx, pod); err != nil {
			t.Fatal(err)
		}
		got, err := n.WaitRunning(cctx, ns, client)
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, client+" -> allowed logged by the allowed server", func() bool {
			return accepted(dir, "allowed") > allowedBefore
		})
		// The denied loop retries every second once dropped: give it a few.
		time.Sleep(2 * time.Second)
		times := watch.times()[netnsOf(n, got.Status.PodIP)]
		if st, err := os.Stat(filepath.Join(dir, client+".start")); err == nil {
			times.started = st.ModTime()
		}
		if err := c.Client.CoreV1().Pods(ns).Delete(ctx, client, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete %s: %v", client, err)
		}
		for _, l := range strings.Split(stop(), "\n") {
			if strings.Contains(l, "new pod") || strings.Contains(l, "identified") || strings.Contains(l, "mounted") || strings.Contains(l, "placeholder") || strings.Contains(l, "inventory changed") {
				t.Log(l)
			}
		}
		return accepted(dir, "denied") - deniedBefore, times
	}
	window := func(ts nsTimes) string {
		if ts.mounted.IsZero() {
			return "netns not seen"
		}
		d := func(x time.Time) string {
			if x.IsZero() {
				return "never"
			}
			return x.Sub(ts.mounted).Round(100 * time.Microsecond).String()
		}
		return fmt.Sprintf("netns mounted → container started %s, → first table %s, → the pod's own rules %s", d(ts.started), d(ts.table), d(ts.rules))
	}

	leaked, ts := run("client", "--log-level=debug")
	t.Logf("with early finding: %s; denied server saw %d connections", window(ts), leaked)
	if leaked != 0 {
		t.Errorf("the denied server saw %d connections of the isolated client: its first connections passed unjudged", leaked)
	}
	if ts.table.IsZero() {
		t.Errorf("no nanoseg table seen in the client's netns")
	} else if !ts.started.IsZero() && ts.table.After(ts.started) {
		t.Errorf("the client's container started %s before the first table in its netns", ts.table.Sub(ts.started))
	}

	leaked, ts = run("client-late", "--late-find", "--log-level=debug")
	t.Logf("with --late-find (by posted addresses only, as before): %s; denied server saw %d connections", window(ts), leaked)
}
