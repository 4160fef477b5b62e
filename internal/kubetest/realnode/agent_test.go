//go:build linux

package realnode_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/kubetest/realnode"
)

// nanoseg builds cmd/nanoseg (plain go build, as the e2e package does)
// into the test's temp dir and returns its path.
func nanoseg(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nanoseg")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/nanoseg")
	cmd.Dir = repoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nanoseg: %v\n%s", err, b)
	}
	return bin
}

// startAgent runs `nanoseg node` for n with the admin kubeconfig and
// waits for /readyz (informers synced, first rule sets applied); it stops
// it (SIGTERM) at cleanup. Its output goes to the test log on failure.
func startAgent(t *testing.T, c *kubetest.Cluster, n *realnode.Node, bin string) {
	t.Helper()
	startAgentArgs(t, c, n, bin)
}

// startAgentArgs is startAgent with more arguments for `nanoseg node`; it
// returns a function that stops the agent before cleanup (and returns its
// log), which cleanup then does not repeat.
func startAgentArgs(t *testing.T, c *kubetest.Cluster, n *realnode.Node, bin string, args ...string) (stop func() string) {
	t.Helper()
	port := freeLocalPort(t)
	owners := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "nanoseg-node.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"node", "--kubeconfig=" + c.Kubeconfig, "--node-name=" + n.Name,
		"--listen=127.0.0.1:" + strconv.Itoa(port), "--owner-dir=" + owners}, args...)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	stop = func() string {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-done
				t.Errorf("nanoseg node: still running 15 s after SIGTERM, killed")
			}
			lf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("--- nanoseg node log (%s) ---\n%s", strings.Join(args, " "), b)
			}
		})
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	t.Cleanup(func() { stop() })
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case err := <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("nanoseg node exited before ready: %v\n%s", err, b)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("nanoseg node not ready after 30 s\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("nanoseg node ready in %s", time.Since(start).Round(time.Millisecond))
	return stop
}

func freeLocalPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hasNodeCommand reports whether the binary has the `node` command.
func hasNodeCommand(bin string) bool {
	out, err := exec.Command(bin, "node", "--help").CombinedOutput()
	return err == nil && strings.Contains(string(out), "node-name")
}

// TestNodeAgentOnRealPods runs `nanoseg node` beside a real kubelet: it
// finds the pods in their CNI network namespaces, and a NetworkPolicy
// created through the API server admits one client pod to the server pod
// and drops the other, with real connections; deleting the policy opens
// the server again.
func TestNodeAgentOnRealPods(t *testing.T) {
	c := kubetest.Shared(t)
	bin := nanoseg(t)
	if !hasNodeCommand(bin) {
		t.Skip("nanoseg has no `node` command yet (nodeagent): TestPodsTalkOnRealNode covers the node with a rule set programmed by hand")
	}
	n := startNode(t, c, realnode.Options{})
	ns := c.Namespace(t, map[string]string{"team": "shop"})
	const port = 8080
	pods, paths := runPods(t, n, ns, port,
		realnode.EchoPod("", "server", map[string]string{"app": "server"}, port),
		realnode.EchoPod("", "allowed", map[string]string{"app": "allowed"}, port),
		realnode.EchoPod("", "denied", map[string]string{"app": "denied"}, port))
	startAgent(t, c, n, bin)
	server := netip.AddrPortFrom(netip.MustParseAddr(pods["server"].Status.PodIP), port)
	for _, client := range []string{"allowed", "denied"} {
		if err := realnode.Echo(paths[client], server, 3*time.Second); err != nil {
			t.Fatalf("%s -> server before any policy (Kubernetes' default: allowed): %v", client, err)
		}
	}

	ctx := context.Background()
	tcp := corev1.ProtocolTCP
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "server-from-allowed"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "allowed"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &intstr.IntOrString{IntVal: port}}},
			}},
		},
	}
	created := time.Now()
	if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Enforced once the denied client's connection fails; the allowed one
	// must pass all along.
	eventually(t, 10*time.Second, "denied -> server dropped after the policy", func() bool {
		return realnode.Echo(paths["denied"], server, 300*time.Millisecond) != nil
	})
	t.Logf("policy enforced %s after create (upper bound, polled)", time.Since(created).Round(time.Millisecond))
	if err := realnode.Echo(paths["allowed"], server, 3*time.Second); err != nil {
		t.Errorf("allowed -> server under the policy: %v", err)
	}
	// The client pods are selected by no policy: their egress stays open.
	if err := realnode.Echo(paths["denied"], netip.AddrPortFrom(netip.MustParseAddr(pods["allowed"].Status.PodIP), port), 3*time.Second); err != nil {
		t.Errorf("denied -> allowed (no policy selects allowed): %v", err)
	}

	if err := c.Client.NetworkingV1().NetworkPolicies(ns).Delete(ctx, np.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "denied -> server open again after the policy's deletion", func() bool {
		return realnode.Echo(paths["denied"], server, time.Second) == nil
	})
}

// eventually polls cond every 100 ms until it holds or within passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
	}
}
