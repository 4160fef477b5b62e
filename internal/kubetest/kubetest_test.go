//go:build linux

package kubetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) {
	Main(m, Options{CRDDirs: []string{"../../manifests/crds"}})
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestClusterServesPodsWithStatus: the API server answers as admin through
// the kubeconfig it wrote, reports the version built, takes a Pod in a
// namespace without a ServiceAccount (no admission plugin refuses it) and
// its status through the status subresource, as a kubelet would write it.
func TestClusterServesPodsWithStatus(t *testing.T) {
	c := Shared(t)
	ctx := ctxFor(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != Version {
		t.Errorf("server version %s, want %s", v.GitVersion, Version)
	}
	ns := c.Namespace(t, map[string]string{"team": "a"})
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{
			Name: "web", Image: "nanoseg.io/none:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	patch := `{"status":{"phase":"Running","podIP":"198.18.0.10","podIPs":[{"ip":"198.18.0.10"},{"ip":"2001:db8:18::a"}]}}`
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatalf("patch pod status: %v", err)
	}
	got, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != corev1.PodRunning || len(got.Status.PodIPs) != 2 {
		t.Errorf("pod status %+v, want Running with two podIPs", got.Status)
	}
	svc, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the kubernetes Service: %v", err)
	}
	if svc.Spec.ClusterIP != "198.19.240.1" {
		t.Errorf("kubernetes Service ClusterIP %s, want the first address of %s", svc.Spec.ClusterIP, DefaultServiceCIDRs)
	}
}

// TestRBACRefusesUserWithoutBindings: a user the CA vouches for but RBAC
// grants nothing is refused, and allowed once a RoleBinding grants its
// group read access to pods in one namespace (and still refused elsewhere
// and for anything else).
func TestRBACRefusesUserWithoutBindings(t *testing.T) {
	c := Shared(t)
	ctx := ctxFor(t)
	ns, other := c.Namespace(t, nil), c.Namespace(t, nil)
	alice := kubernetes.NewForConfigOrDie(c.UserConfig("alice", "testers"))
	_, err := alice.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods as alice without bindings: %v, want Forbidden", err)
	}
	// A Role of its own: the aggregated ClusterRoles (view, edit) get their
	// rules from kube-controller-manager, which does not run here.
	_, err = c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "testers-read-pods"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "testers"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer reads bindings from an informer: allow it a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = alice.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("list pods as alice with a pod-reader binding for her group: %v", err)
	}
	if _, err := alice.CoreV1().Pods(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list pods as alice in a namespace without a binding: %v, want Forbidden", err)
	}
	if _, err := alice.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create a configmap as alice, who may only read pods: %v, want Forbidden", err)
	}
}

// TestServiceAccountTokenWorks: a TokenRequest token authenticates as the
// ServiceAccount (the API server's own review says who it is), and RBAC
// applies to it like to anyone.
func TestServiceAccountTokenWorks(t *testing.T) {
	c := Shared(t)
	ctx := ctxFor(t)
	ns := c.Namespace(t, nil)
	cfg, err := c.ServiceAccountConfig(ctx, ns, "robot")
	if err != nil {
		t.Fatal(err)
	}
	robot := kubernetes.NewForConfigOrDie(cfg)
	r, err := robot.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review with the token: %v", err)
	}
	if want := "system:serviceaccount:" + ns + ":robot"; r.Status.UserInfo.Username != want {
		t.Errorf("token authenticates as %q, want %q", r.Status.UserInfo.Username, want)
	}
	if _, err := robot.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as an unbound service account: %v, want Forbidden", err)
	}
}

// TestCRDEstablished: the NanoSegment CRD from manifests/crds is served:
// a NanoSegment can be listed and created.
func TestCRDEstablished(t *testing.T) {
	c := Shared(t)
	ctx := ctxFor(t)
	ns := c.Namespace(t, nil)
	dyn := dynamic.NewForConfigOrDie(c.Config)
	gvr := schema.GroupVersionResource{Group: "nanoseg.io", Version: "v1alpha1", Resource: "nanosegments"}
	if _, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list nanosegments: %v", err)
	}
	crd, err := dyn.Resource(crdResource).Get(ctx, "nanosegments.nanoseg.io", metav1.GetOptions{})
	if err != nil || !established(crd) {
		t.Fatalf("CRD nanosegments.nanoseg.io not Established: %v", err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "nanoseg.io/v1alpha1", "kind": "NanoSegment",
		"metadata": map[string]any{"name": "web"},
		"spec":     map[string]any{"mode": "observe", "selector": map[string]any{"matchLabels": map[string]any{"app": "web"}}},
	}}
	if _, err := dyn.Resource(gvr).Namespace(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create a NanoSegment: %v", err)
	}
}

// TestAPIServerRestartKeepsData: StopAPIServer makes requests fail,
// StartAPIServer brings the server back on the same address with the
// objects written before.
func TestAPIServerRestartKeepsData(t *testing.T) {
	c := Shared(t)
	ctx := ctxFor(t)
	ns := c.Namespace(t, nil)
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Data: map[string]string{"k": "v"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := c.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Since(start)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := c.Client.CoreV1().ConfigMaps(ns).Get(short, "kept", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatal("the API server answered after StopAPIServer")
	}
	start = time.Now()
	if err := c.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped in %s, started again in %s", stopped.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, "kept", metav1.GetOptions{})
	if err != nil || cm.Data["k"] != "v" {
		t.Fatalf("configmap after restart: %v, %v", cm, err)
	}
}

// TestStopLeavesNothing: a cluster of its own, stopped, leaves no process
// and neither of its directories.
func TestStopLeavesNothing(t *testing.T) {
	if _, _, err := binaries(); err != nil {
		Shared(t) // skips or fails as the package's cluster would
	}
	ctx := ctxFor(t)
	start := time.Now()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := time.Since(start)
	pids := []int{c.etcd.cmd.Process.Pid, c.api.cmd.Process.Pid}
	dirs := []string{c.Dir, c.dataDir}
	start = time.Now()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster up in %s, stopped in %s", up.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("process %d still there after Stop", pid)
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there after Stop: %v", d, err)
		}
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestStartFailureShowsLogs: an API server that cannot start makes Start
// fail with the tail of its log, and leaves no directory behind.
func TestStartFailureShowsLogs(t *testing.T) {
	if _, _, err := binaries(); err != nil {
		Shared(t)
	}
	before, _ := filepath.Glob(filepath.Join(shmDir(), dataPrefix+strconv.Itoa(os.Getpid())+"-*"))
	_, err := Start(ctxFor(t), Options{APIServerArgs: []string{"--no-such-flag=1"}})
	if err == nil {
		t.Fatal("Start with a flag kube-apiserver does not know succeeded")
	}
	for _, want := range []string{"start kube-apiserver: exited before it was ready", "last lines of", "unknown flag: --no-such-flag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	after, _ := filepath.Glob(filepath.Join(shmDir(), dataPrefix+strconv.Itoa(os.Getpid())+"-*"))
	if len(after) != len(before) {
		t.Errorf("data dirs of this process: %v before, %v after a failed Start", before, after)
	}
}

// childEnv makes the test binary a victim for TestKilledTestLeavesNothing.
const childEnv = "NANOSEG_KUBETEST_CHILD"

// victim is what the killed child reports: its cluster's processes and
// directories.
type victim struct {
	Pids []int    `json:"pids"`
	Dirs []string `json:"dirs"`
}

// TestKilledTestLeavesNothing: a test process killed with SIGKILL while
// its cluster runs takes etcd and kube-apiserver with it (PDEATHSIG), and
// the next sweep removes its directories.
func TestKilledTestLeavesNothing(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		c, err := Start(context.Background(), Options{})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		out, _ := json.Marshal(victim{Pids: []int{c.etcd.cmd.Process.Pid, c.api.cmd.Process.Pid}, Dirs: []string{c.Dir, c.dataDir}})
		fmt.Println("victim:", string(out))
		time.Sleep(time.Hour)
	}
	if _, _, err := binaries(); err != nil {
		Shared(t)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledTestLeavesNothing$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var v victim
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "victim: "); ok {
			if err := json.Unmarshal([]byte(s), &v); err != nil {
				t.Fatal(err)
			}
			break
		}
		if strings.HasPrefix(line, "error:") {
			t.Fatalf("child: %s", line)
		}
	}
	if len(v.Pids) == 0 {
		t.Fatal("the child reported no cluster")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range v.Pids {
		for !gone(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !gone(pid) {
			t.Errorf("process %d of the killed test still runs", pid)
		}
	}
	for _, d := range v.Dirs {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("the killed test's dir %s is already gone (%v): nothing to sweep", d, err)
		}
	}
	removed := sweep(shmDir())
	for _, d := range v.Dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still there after sweep: %v", d, err)
		}
	}
	t.Logf("sweep removed %v", removed)
}

// TestSweepSparesLiveOwners: directories whose owner runs stay; those of a
// finished process go with any process that names them.
func TestSweepSparesLiveOwners(t *testing.T) {
	shm := t.TempDir()
	tmp := t.TempDir()
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	deadTemp := filepath.Join(tmp, dataPrefix+"dead")
	if err := os.Mkdir(deadTemp, 0o700); err != nil {
		t.Fatal(err)
	}
	deadData := filepath.Join(shm, dataPrefix+strconv.Itoa(done.Process.Pid)+"-x")
	if err := os.Mkdir(deadData, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deadData, ownerFile), owner{pid: done.Process.Pid, dirs: []string{deadData, deadTemp}}.encode(), 0o600); err != nil {
		t.Fatal(err)
	}
	follower := filepath.Join(deadData, "log")
	if err := os.WriteFile(follower, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	survivor := exec.Command("tail", "-f", follower) // a leftover that names the dir
	if err := survivor.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- survivor.Wait() }()
	t.Cleanup(func() { _ = survivor.Process.Kill() })
	live, err := newDataDir(shm, filepath.Join(tmp, dataPrefix+"live"))
	if err != nil {
		t.Fatal(err)
	}
	removed := sweep(shm)
	for _, d := range []string{deadData, deadTemp} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s of a dead owner still there: %v (removed %v)", d, err, removed)
		}
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("sweep removed a live owner's dir: %v", err)
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Error("a process naming a dead owner's dir survived the sweep")
	}
}
