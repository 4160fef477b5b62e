package kube

// Live probes through the node agents: each probe of a verify run (or of
// an evidence export) is a NanoSegmentProbe object in the source pod's
// namespace, created with the user's credentials for the source pod's node;
// that node's agent runs it from inside the pod's netns and writes the
// outcome into its status (nodeagent/probes.go). The session watches the
// object until it has an outcome, then deletes it. Verify runs
// VerifyRequest.Parallel probes at once (default 8), so as many objects
// exist at a time. Every probe carries the label nanoseg.io/probe-run
// with the run's id; the first probe of a run in a namespace deletes the
// probes there older than ProbeTTL (left by a killed run), and an agent
// refuses a probe older than nodeagent.ProbeMaxAge instead of running it.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// Probes is the NanoSegmentProbe resource.
var Probes = v1alpha1.SchemeGroupVersion.WithResource("nanosegmentprobes")

// ProbeTTL is the age beyond which a run deletes probes it finds in a
// namespace it probes from: what a killed run left behind.
const ProbeTTL = 10 * time.Minute

// ProbeGrace is how long, beyond a probe's own timeout, the session waits
// for a node agent to pick it up and answer.
const ProbeGrace = 15 * time.Second

// prober creates the session's probes and waits for their outcomes.
type prober struct {
	kc    kubernetes.Interface
	dyn   dynamic.Interface
	run   string // this session's run id (label nanoseg.io/probe-run)
	grace time.Duration

	mu    sync.Mutex
	nodes map[string]string // "namespace/pod" → node
	swept map[string]bool   // namespaces swept of old probes
	// silent are the nodes whose agent answered no probe of this run in
	// time: later probes from their pods fail at once instead of each
	// waiting for the timeout (a node without a running agent).
	silent map[string]error
}

func newProber(kc kubernetes.Interface, dyn dynamic.Interface) *prober {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &prober{kc: kc, dyn: dyn, run: hex.EncodeToString(b[:]), grace: ProbeGrace, nodes: map[string]string{}, swept: map[string]bool{},
		silent: map[string]error{}}
}

// probe asks the node agent of src's node for one attempt (see the file
// comment). Failures to ask are an "error" outcome naming what failed.
func (p *prober) probe(ctx context.Context, src model.Endpoint, proto string, addr netip.AddrPort, timeout time.Duration) controller.ProbeOutcome {
	fail := func(format string, args ...any) controller.ProbeOutcome {
		return controller.ProbeOutcome{Outcome: v1alpha1.ProbeError, Detail: fmt.Sprintf(format, args...)}
	}
	ns := src.Namespace
	pod, ok := strings.CutPrefix(src.Netns, ns+"_")
	if !ok || pod == "" {
		return fail("endpoint %s is not a pod of namespace %s", src.Netns, ns)
	}
	node, err := p.nodeOf(ctx, ns, pod)
	if err != nil {
		return fail("%v", err)
	}
	p.mu.Lock()
	silent := p.silent[node]
	p.mu.Unlock()
	if silent != nil {
		return fail("not asked: %v", silent)
	}
	p.sweep(ctx, ns)
	obj := &v1alpha1.NanoSegmentProbe{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindProbe},
		ObjectMeta: metav1.ObjectMeta{GenerateName: probeName(pod), Labels: map[string]string{v1alpha1.LabelProbeRun: p.run}},
		Spec: v1alpha1.NanoSegmentProbeSpec{Node: node, Pod: pod, Address: addr.Addr().Unmap().String(), Port: int32(addr.Port()),
			Protocol: model.Protocol(proto), TimeoutMilliseconds: int32(timeout / time.Millisecond)},
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fail("encode probe: %v", err)
	}
	res := p.dyn.Resource(Probes).Namespace(ns)
	created, err := res.Create(ctx, &unstructured.Unstructured{Object: raw}, metav1.CreateOptions{})
	if err != nil {
		return fail("create nanosegmentprobe in %s: %v", ns, err)
	}
	name := created.GetName()
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = res.Delete(dctx, name, metav1.DeleteOptions{})
	}()
	st, err := p.await(ctx, ns, created, timeout+p.grace)
	if errors.Is(err, errNoAnswer) {
		p.mu.Lock()
		p.silent[node] = err
		p.mu.Unlock()
	}
	if err != nil {
		return fail("nanosegmentprobe %s/%s: %v", ns, name, err)
	}
	return controller.ProbeOutcome{Outcome: st.Outcome, Reached: st.Reached, Detail: st.Detail,
		Duration: time.Duration(st.DurationMicroseconds) * time.Microsecond}
}

// await watches probe u until its status has an outcome, or limit.
func (p *prober) await(ctx context.Context, ns string, u *unstructured.Unstructured, limit time.Duration) (v1alpha1.NanoSegmentProbeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res := p.dyn.Resource(Probes).Namespace(ns)
	rv := u.GetResourceVersion()
	for {
		w, err := res.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + u.GetName(), ResourceVersion: rv})
		if err != nil {
			if ctx.Err() != nil {
				return v1alpha1.NanoSegmentProbeStatus{}, noAnswer(u, limit)
			}
			return v1alpha1.NanoSegmentProbeStatus{}, fmt.Errorf("watch: %w", err)
		}
		st, done, err := p.read(ctx, w, &rv)
		w.Stop()
		if done || err != nil {
			return st, err
		}
		if ctx.Err() != nil {
			return st, noAnswer(u, limit)
		}
	}
}

// read takes events from w until the probe has an outcome (done), the
// watch ends (not done: watch again from *rv) or ctx ends.
func (p *prober) read(ctx context.Context, w watch.Interface, rv *string) (v1alpha1.NanoSegmentProbeStatus, bool, error) {
	for {
		select {
		case <-ctx.Done():
			return v1alpha1.NanoSegmentProbeStatus{}, false, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return v1alpha1.NanoSegmentProbeStatus{}, false, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return v1alpha1.NanoSegmentProbeStatus{}, true, errors.New("deleted before a node agent answered")
			case watch.Error:
				return v1alpha1.NanoSegmentProbeStatus{}, true, apierrors.FromObject(ev.Object)
			case watch.Added, watch.Modified:
				u, ok := ev.Object.(*unstructured.Unstructured)
				if !ok {
					continue
				}
				*rv = u.GetResourceVersion()
				var got v1alpha1.NanoSegmentProbe
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got); err != nil {
					return v1alpha1.NanoSegmentProbeStatus{}, true, err
				}
				if got.Status.Outcome != "" {
					return got.Status, true, nil
				}
			}
		}
	}
}

// errNoAnswer: no node agent answered a probe in time.
var errNoAnswer = errors.New("no node agent answered")

func noAnswer(u *unstructured.Unstructured, limit time.Duration) error {
	node, _, _ := unstructured.NestedString(u.Object, "spec", "node")
	return fmt.Errorf("%w within %s: is nanoseg node running on node %s, with the rights of manifests/node-agent (watch nanosegmentprobes, update their status)?", errNoAnswer, limit, node)
}

// nodeOf returns the node pod ns/name runs on (cached for the session).
func (p *prober) nodeOf(ctx context.Context, ns, name string) (string, error) {
	k := ns + "/" + name
	p.mu.Lock()
	n, ok := p.nodes[k]
	p.mu.Unlock()
	if ok {
		return n, nil
	}
	pod, err := p.kc.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("read pod %s: %w", k, err)
	}
	if pod.Spec.NodeName == "" {
		return "", fmt.Errorf("pod %s is not scheduled to a node", k)
	}
	p.mu.Lock()
	p.nodes[k] = pod.Spec.NodeName
	p.mu.Unlock()
	return pod.Spec.NodeName, nil
}

// sweep deletes, once per namespace and run, the probes of ns older than
// ProbeTTL: left by a run that was killed before it deleted them.
func (p *prober) sweep(ctx context.Context, ns string) {
	p.mu.Lock()
	done := p.swept[ns]
	p.swept[ns] = true
	p.mu.Unlock()
	if done {
		return
	}
	res := p.dyn.Resource(Probes).Namespace(ns)
	l, err := res.List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelProbeRun})
	if err != nil {
		return
	}
	for _, u := range l.Items {
		if time.Since(u.GetCreationTimestamp().Time) > ProbeTTL {
			_ = res.Delete(ctx, u.GetName(), metav1.DeleteOptions{})
		}
	}
}

// probeName is the generateName of a probe from pod: the pod's name, cut
// so that the generated name stays valid.
func probeName(pod string) string {
	if len(pod) > 200 {
		pod = pod[:200]
	}
	return pod + "-probe-"
}

// mayProbe checks, before a run, that the user may create probes in every
// namespace a probe may start from (the namespaces of the inventory's
// pods): a user with nanoseg-view only is refused at once, with a clear
// message, instead of each probe failing. It answers 403 with the first
// namespace refused.
func (s *Session) mayProbe(ctx context.Context, what string) (int, error) {
	allowed := func(ns string) (bool, error) {
		r, err := s.kc.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: "create", Group: v1alpha1.GroupName, Resource: "nanosegmentprobes"}}}, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("ask the API server whether you may create nanosegmentprobes: %w", err)
		}
		return r.Status.Allowed, nil
	}
	if ok, err := allowed(""); err != nil || ok {
		return 0, err
	}
	seen := map[string]bool{}
	for _, e := range s.svc.Endpoints() {
		if seen[e.Namespace] {
			continue
		}
		seen[e.Namespace] = true
		ok, err := allowed(e.Namespace)
		if err != nil {
			return 0, err
		}
		if !ok {
			return http.StatusForbidden, fmt.Errorf("forbidden: user %s cannot create nanosegmentprobes in namespace %s: %s sends live probes from inside pods, which needs the nanoseg-operate role (nanoseg-view only reads)",
				s.whoAmI(ctx, errors.New("")), e.Namespace, what)
		}
	}
	return 0, nil
}
