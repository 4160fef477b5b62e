//go:build linux

package realnode_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/kubetest/realnode"
)

// Environment of TestConformance (hack/conformance.sh sets them).
const (
	// envConformance, set to 1, runs TestConformance (15–25 min).
	envConformance = "NANOSEG_CONFORMANCE"
	// envOut is where the e2e log, the JUnit report and summary.txt go;
	// default <repo>/out/conformance.
	envOut = "NANOSEG_CONFORMANCE_OUT"
	// envImage is nanoseg's image as a docker archive (hack/image.sh);
	// when unset the test builds one: cmd/nanoseg, static, at /nanoseg.
	envImage = "NANOSEG_IMAGE_TAR"
	// envFocus overrides the ginkgo focus (default "Netpol").
	envFocus = "NANOSEG_CONFORMANCE_FOCUS"
)

// nanosegImage is the tag manifests/node-agent's DaemonSet runs.
const nanosegImage = "nanoseg.io/nanoseg:dev"

// TestConformance runs the upstream NetworkPolicy e2e suite (the Netpol
// specs of e2e.test built from k8s.io/kubernetes at the cluster's version,
// the [Feature:SCTPConnectivity] ones skipped: they send SCTP, and this
// host's kernel has no SCTP) against
// nanoseg deployed from manifests/ as a DaemonSet on a real node, with
// kube-controller-manager, kube-scheduler and kube-proxy (nftables mode)
// beside the API server. It writes the e2e log, the JUnit report and a
// summary (score, failing specs) to envOut, and fails when any spec fails.
// Only with NANOSEG_CONFORMANCE=1 (make conformance), as root.
func TestConformance(t *testing.T) {
	if os.Getenv(envConformance) != "1" {
		t.Skipf("upstream NetworkPolicy e2e suite: 15–25 min; run make conformance (%s=1)", envConformance)
	}
	if os.Geteuid() != 0 {
		t.Fatal("conformance: needs root (a real node)")
	}
	repo := repoRoot(t)
	out := os.Getenv(envOut)
	if out == "" {
		out = filepath.Join(repo, "out", "conformance")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := kubetest.Bin()
	for _, b := range []string{"e2e.test", "kubectl", "kube-proxy", "agnhost"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("missing %s: run hack/kube-bins.sh kube-proxy kube-scheduler kube-controller-manager agnhost e2e.test kubectl", filepath.Join(bin, b))
		}
	}
	ctx := context.Background()
	start := time.Now()
	c, err := kubetest.Start(ctx, kubetest.Options{
		CRDDirs:                 []string{filepath.Join(repo, "manifests", "crds")},
		ServiceAccountAdmission: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	cp, err := realnode.StartControlPlane(ctx, c, bin, filepath.Join(out, "logs"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	image := os.Getenv(envImage)
	if image == "" {
		image = buildImage(t, repo)
	}
	n, err := realnode.Start(ctx, c, realnode.Options{
		Name: "nanoseg-conformance", Bin: bin, Agnhost: true, KubeProxy: true,
		ServiceCIDRs: kubetest.DefaultServiceCIDRs, Archives: []string{image},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The node's logs go with its directory: keep them.
		for _, l := range []string{"kubelet.log", "containerd.log", "kube-proxy.log"} {
			_ = exec.Command("cp", filepath.Join(n.Dir, l), filepath.Join(out, "logs", l)).Run()
		}
		if err := n.Stop(); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	t.Logf("cluster, control plane and node up in %s", time.Since(start).Round(time.Millisecond))

	// The agent keeps the last valid policies in the host's
	// /run/nanoseg/owners (hostPath run-nanoseg, --owner-dir of the
	// DaemonSet; nodeagent.LastValidFile): what it writes there goes with it.
	const keptGlob = "/run/nanoseg/owners/policies-*.json"
	kept, _ := filepath.Glob(keptGlob)
	agent := deployAgent(t, c, n, repo, out, bin)
	t.Cleanup(func() {
		undeployAgent(t, c, filepath.Join(out, "logs"))
		now, _ := filepath.Glob(keptGlob)
		for _, f := range now {
			if !slices.Contains(kept, f) {
				_ = os.Remove(f)
			}
		}
	})

	focus := os.Getenv(envFocus)
	if focus == "" {
		focus = "Netpol"
	}
	logPath := filepath.Join(out, "e2e.log")
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	e2e := exec.Command(filepath.Join(bin, "e2e.test"),
		"--kubeconfig="+c.Kubeconfig,
		"--provider=skeleton",
		"--num-nodes=1",
		"--report-dir="+out,
		"--disable-log-dump",
		"--ginkgo.focus="+focus,
		// Only the SCTP connectivity specs: the two specs whose policies
		// name SCTP but whose traffic is TCP are NetworkPolicy semantics
		// and count.
		"--ginkgo.skip=Feature:SCTPConnectivity",
		"--ginkgo.timeout=2h",
		"--ginkgo.no-color",
		"--ginkgo.v",
	)
	e2e.Stdout, e2e.Stderr = lf, lf
	e2e.Dir = out
	t.Logf("e2e.test --ginkgo.focus=%s: log in %s", focus, logPath)
	e2eStart := time.Now()
	runErr := e2e.Run()
	lf.Close()
	took := time.Since(e2eStart).Round(time.Second)
	summary := summarize(t, logPath)
	summary = fmt.Sprintf("nanoseg node agent: %s\ne2e.test took %s (%v)\n%s", agent, took, runErr, summary)
	if err := os.WriteFile(filepath.Join(out, "summary.txt"), []byte(summary), 0o644); err != nil {
		t.Error(err)
	}
	t.Log("\n" + summary)
	if runErr != nil {
		t.Errorf("e2e.test: %v (summary in %s)", runErr, filepath.Join(out, "summary.txt"))
	}
}

// repoRoot is the module root (this package sits three levels down).
func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", "..", ".."))
}

// buildImage builds nanoseg's image (a static cmd/nanoseg at /nanoseg)
// as a docker archive, for runs without hack/image.sh's.
func buildImage(t *testing.T, repo string) string {
	t.Helper()
	binPath := filepath.Join(t.TempDir(), "nanoseg")
	cmd := exec.Command("go", "build", "-trimpath", "-o", binPath, "./cmd/nanoseg")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nanoseg: %v\n%s", err, b)
	}
	img := realnode.Image{Tags: []string{nanosegImage}, Entrypoint: []string{"/nanoseg"},
		Files: []realnode.File{{Path: "nanoseg", Source: binPath, Mode: 0o755}}}
	p, err := img.Archive()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// deployAgent applies manifests/ (the namespace and the node agent) with
// one change: the agent reaches the API server at 127.0.0.1 (its
// hostNetwork pod sees the host's loopback; the test API server has no
// `kubernetes` Service endpoint, since it binds 127.0.0.1 only). It waits
// up to 2 minutes for the DaemonSet's pod to be ready and returns what
// happened, for the summary.
func deployAgent(t *testing.T, c *kubetest.Cluster, n *realnode.Node, repo, out, bin string) string {
	t.Helper()
	agentDir := filepath.Join(repo, "manifests", "node-agent")
	if _, err := os.Stat(filepath.Join(agentDir, "kustomization.yaml")); err != nil {
		t.Logf("no %s: running without the node agent", agentDir)
		return "not deployed (no manifests/node-agent)"
	}
	overlay := filepath.Join(repo, "out", "conformance-overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(overlay, agentDir)
	if err != nil {
		t.Fatal(err)
	}
	port := c.Server[strings.LastIndex(c.Server, ":")+1:]
	kust := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: DaemonSet
      metadata:
        name: nanoseg-node
        namespace: nanoseg-system
      spec:
        template:
          spec:
            containers:
              - name: node
                env:
                  - {name: KUBERNETES_SERVICE_HOST, value: "127.0.0.1"}
                  - {name: KUBERNETES_SERVICE_PORT, value: %q}
`, rel, port)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kust), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, c, bin, "apply", "-f", filepath.Join(repo, "manifests", "namespace.yaml"))
	kubectl(t, c, bin, "apply", "-k", overlay)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		ds, err := c.Client.AppsV1().DaemonSets("nanoseg-system").Get(ctx, "nanoseg-node", metav1.GetOptions{})
		if err == nil && dsReady(ds) {
			return "deployed, DaemonSet ready"
		}
		select {
		case <-ctx.Done():
			pods, _ := c.Client.CoreV1().Pods("nanoseg-system").List(context.Background(), metav1.ListOptions{})
			state := ""
			if pods != nil {
				for _, p := range pods.Items {
					state += fmt.Sprintf(" %s: %s", p.Name, p.Status.Phase)
					for _, cs := range p.Status.ContainerStatuses {
						if cs.State.Waiting != nil {
							state += " " + cs.State.Waiting.Reason
						}
						if cs.LastTerminationState.Terminated != nil {
							state += fmt.Sprintf(" (last exit %d: %s)", cs.LastTerminationState.Terminated.ExitCode, cs.LastTerminationState.Terminated.Message)
						}
					}
				}
			}
			t.Logf("node agent not ready after 2 min:%s", state)
			return "deployed, NOT ready after 2 min:" + state
		case <-time.After(time.Second):
		}
	}
}

func dsReady(ds *appsv1.DaemonSet) bool {
	return ds.Status.DesiredNumberScheduled > 0 && ds.Status.NumberReady == ds.Status.DesiredNumberScheduled
}

// undeployAgent saves the agent pods' logs in logDir, deletes the
// DaemonSet first (its pods would come back while the node deletes its
// pods) and waits for its pods to go.
func undeployAgent(t *testing.T, c *kubetest.Cluster, logDir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if pods, err := c.Client.CoreV1().Pods("nanoseg-system").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			raw, err := c.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
			if err != nil {
				raw = []byte(err.Error())
			}
			_ = os.WriteFile(filepath.Join(logDir, p.Name+".log"), raw, 0o644)
		}
	}
	_ = c.Client.AppsV1().DaemonSets("nanoseg-system").Delete(ctx, "nanoseg-node", metav1.DeleteOptions{})
	for ctx.Err() == nil {
		pods, err := c.Client.CoreV1().Pods("nanoseg-system").List(ctx, metav1.ListOptions{})
		if err == nil && len(pods.Items) == 0 {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func kubectl(t *testing.T, c *kubetest.Cluster, bin string, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// ranLine is ginkgo's result line: "Ran 45 of 7000 Specs in 900.1 seconds".
var ranLine = regexp.MustCompile(`^Ran \d+ of \d+ Specs`)

// summarize returns ginkgo's result lines and the failing specs from the
// e2e log: the "Ran …", "FAIL!/SUCCESS! … Passed | … Failed" lines and
// each "[FAIL]" line of the closing summary.
func summarize(t *testing.T, logPath string) string {
	f, err := os.Open(logPath)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines, fails []string
	inSummary := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), " ")
		tl := strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(tl, "Summarizing "):
			inSummary = true
			lines = append(lines, tl)
		case inSummary && strings.HasPrefix(tl, "[FAIL]"):
			fails = append(fails, tl)
		case ranLine.MatchString(tl), strings.HasPrefix(tl, "FAIL!"), strings.HasPrefix(tl, "SUCCESS!"):
			lines = append(lines, tl)
		}
	}
	return strings.Join(append(lines, fails...), "\n") + "\n"
}
