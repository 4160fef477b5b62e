//go:build linux

package kube

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/model"
)

// startRecordingWatcher runs a watcher on the package's cluster whose
// rejections go to record, until t ends, and waits for it to sync.
func startRecordingWatcher(t *testing.T, e *clusterEnv, record func(context.Context, Rejection) error) *PolicyWatcher {
	t.Helper()
	w := NewPolicyWatcher(e.c.Client, e.dyn, nil)
	w.RecordRejections(record)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := w.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func rejectionEvents(t *testing.T, cs kubernetes.Interface, ns string) []corev1.Event {
	t.Helper()
	l, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(l.Items, func(e corev1.Event) bool { return e.Reason != ReasonPolicyRejected })
}

// TestClusterRejectionEvent: a NanoSegment update that nanoseg's
// validation refuses gets one Warning Event PolicyRejected on the object
// (its uid and the rejected resourceVersion, the fields at fault, what
// stays in force), from each reporter once: a second watcher of the same
// reporter (an agent restarted) and a relist add none. A new bad version
// gets its own Event.
func TestClusterRejectionEvent(t *testing.T) {
	ctx := context.Background()
	e := startCluster(t)
	ns := e.c.Namespace(t, nil)
	rep := Reporter{Component: "nanoseg-node", Host: "node-a", Controller: "nanoseg.io/node", Instance: "nanoseg-node-node-a"}
	startRecordingWatcher(t, e, RejectionEvent(e.c.Client, rep))

	u, err := e.segments(ns).Create(ctx, toUnstructured(t, segment(ns, "db", model.ModeEnforce, 5432)), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The schema lets this label value through; the deeper validation
	// refuses it.
	bad := segment(ns, "db", model.ModeObserve, 5432)
	bad.Spec.Selector.MatchLabels = map[string]string{"app": "not a label value!"}
	bu := toUnstructured(t, bad)
	bu.SetResourceVersion(u.GetResourceVersion())
	updated, err := e.segments(ns).Update(ctx, bu, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a PolicyRejected event", func() bool { return len(rejectionEvents(t, e.c.Client, ns)) > 0 })
	ev := rejectionEvents(t, e.c.Client, ns)[0]
	io := ev.InvolvedObject
	if ev.Type != corev1.EventTypeWarning || io.Kind != KindNanoSegment || io.APIVersion != "nanoseg.io/v1alpha1" || io.Name != "db" ||
		io.UID != updated.GetUID() || io.ResourceVersion != updated.GetResourceVersion() {
		t.Errorf("event %s on %+v; want a Warning on NanoSegment db uid %s resourceVersion %s", ev.Type, io, updated.GetUID(), updated.GetResourceVersion())
	}
	for _, want := range []string{"spec.selector.matchLabels", "previous version (resourceVersion " + u.GetResourceVersion() + ") stays in force", "nanoseg-node-node-a"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("event message %q lacks %q", ev.Message, want)
		}
	}
	if ev.Source.Host != "node-a" || ev.ReportingController != "nanoseg.io/node" {
		t.Errorf("event source %+v, reporting controller %q", ev.Source, ev.ReportingController)
	}
	t.Logf("event: %s", ev.Message)

	// The same reporter again (an agent restarted: it judges the object
	// anew), and a relist: still one Event.
	again := make(chan Rejection, 1)
	startRecordingWatcher(t, e, func(ctx context.Context, r Rejection) error {
		err := RejectionEvent(e.c.Client, rep)(ctx, r)
		if r.Namespace == ns {
			select {
			case again <- r:
			default:
			}
		}
		return err
	})
	select {
	case <-again:
	case <-time.After(10 * time.Second):
		t.Fatal("the second watcher did not record the rejection")
	}
	if n := len(rejectionEvents(t, e.c.Client, ns)); n != 1 {
		t.Errorf("%d PolicyRejected events after a second watcher of the same reporter, want 1", n)
	}

	// A status write (the controller's Accepted condition) makes a new
	// resourceVersion of the same spec: no second Event.
	cur, err := e.segments(ns).Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := unstructured.SetNestedSlice(cur.Object, []any{map[string]any{"type": "Accepted", "status": "False", "reason": "Invalid",
		"message": "x", "lastTransitionTime": "2026-01-01T00:00:00Z"}}, "status", "conditions"); err != nil {
		t.Fatal(err)
	}
	statusWritten, err := e.segments(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if statusWritten.GetResourceVersion() == updated.GetResourceVersion() {
		t.Fatal("the status write kept the resourceVersion")
	}
	time.Sleep(2 * time.Second)
	if n := len(rejectionEvents(t, e.c.Client, ns)); n != 1 {
		t.Errorf("%d PolicyRejected events after a status write, want 1", n)
	}
	updated = statusWritten

	// A new bad version: a second Event.
	bad.Spec.Selector.MatchLabels = map[string]string{"app": "another bad value!"}
	bu = toUnstructured(t, bad)
	bu.SetResourceVersion(updated.GetResourceVersion())
	if _, err := e.segments(ns).Update(ctx, bu, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second PolicyRejected event", func() bool { return len(rejectionEvents(t, e.c.Client, ns)) == 2 })
}

// TestClusterRejectionEventForbidden: a reporter that may not create
// Events (RBAC) is told once and asked no more.
func TestClusterRejectionEventForbidden(t *testing.T) {
	ctx := context.Background()
	e := startCluster(t)
	ns := e.c.Namespace(t, nil)
	nobody, err := kubernetes.NewForConfig(e.c.UserConfig("nanoseg-test-nobody"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var errs []error
	startRecordingWatcher(t, e, func(ctx context.Context, r Rejection) error {
		if r.Namespace != ns {
			return nil
		}
		err := RejectionEvent(nobody, Reporter{Instance: "nanoseg-node-x"})(ctx, r)
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		return err
	})
	for _, name := range []string{"a", "b"} {
		bad := toUnstructured(t, segment(ns, name, model.ModeEnforce, 80))
		_ = unstructured.SetNestedStringMap(bad.Object, map[string]string{"app": "not a label value!"}, "spec", "selector", "matchLabels")
		if _, err := e.segments(ns).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a refused Event", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) > 0 })
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !apierrors.IsForbidden(errs[0]) {
		t.Errorf("record calls: %v; want one, Forbidden", errs)
	}
}
