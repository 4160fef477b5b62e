package kubelab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/nanoseg/nanoseg/lab"
)

// Annotation marks every object Register created with the lab's name.
const Annotation = "nanoseg.io/lab"

// HashLabel is the pod label that, with the owner ReplicaSet's name
// "<workload>-<hash>", tells readers the pod's workload (as a Deployment's
// ReplicaSet does).
const HashLabel = "pod-template-hash"

// DefaultHash is the pod-template-hash of a workload that declares none.
const DefaultHash = "lab"

// OwnerUID is the UID of every lab pod's owner reference: any fixed UUID
// (the ReplicaSet does not exist).
const OwnerUID = types.UID("6e616e6f-7365-6700-6c61-620000000001")

// Image is the container image lab pods name. No kubelet pulls it.
const Image = "nanoseg.io/lab-endpoint:none"

// PodName returns the name of the Pod of endpoint e: "<workload>-<replica>".
func PodName(e lab.Endpoint) string { return e.Workload + "-" + strconv.Itoa(e.Replica) }

// Register writes the lab of plan p into the API server behind client
// (see the package doc) and returns once every pod's status is written.
// Errors name the object; independent failures are joined.
func Register(ctx context.Context, client kubernetes.Interface, p *lab.Plan) error {
	if p == nil || p.Lab == "" {
		return errors.New("register lab: no plan")
	}
	for _, ns := range p.Topology.Namespaces {
		if err := ensureNamespace(ctx, client, p.Lab, ns); err != nil {
			return err
		}
	}
	for _, n := range p.Nodes() {
		if err := ensureNode(ctx, client, p.Lab, n); err != nil {
			return err
		}
	}
	want := map[string]bool{} // namespace/name of the plan's pods
	var replicas []lab.Endpoint
	for _, e := range p.Endpoints {
		if !e.External {
			want[e.Namespace+"/"+PodName(e)] = true
			replicas = append(replicas, e)
		}
	}
	if err := forEach(replicas, func(e lab.Endpoint) error { return ensurePod(ctx, client, p, e) }); err != nil {
		return err
	}
	var errs []error
	// What an earlier run registered and the plan no longer has.
	pods, err := labPods(ctx, client, p.Lab)
	if err != nil {
		return err
	}
	for _, pod := range pods {
		if !want[pod.Namespace+"/"+pod.Name] {
			errs = append(errs, deletePod(ctx, client, pod.Namespace, pod.Name))
		}
	}
	nodes, err := labNodes(ctx, client, p.Lab)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if !slices.Contains(p.Nodes(), n) {
			errs = append(errs, deleteNode(ctx, client, n))
		}
	}
	return errors.Join(errs...)
}

// Unregister deletes what Register wrote for lab name: its pods (at once,
// grace period 0: no kubelet confirms a deletion), its nodes and the
// namespaces it created. A namespace deletion completes once a namespace
// controller empties it; without one (an API server alone) it stays
// Terminating.
func Unregister(ctx context.Context, client kubernetes.Interface, name string) error {
	var errs []error
	pods, err := labPods(ctx, client, name)
	if err != nil {
		return err
	}
	errs = append(errs, forEach(pods, func(pod corev1.Pod) error { return deletePod(ctx, client, pod.Namespace, pod.Name) }))
	nodes, err := labNodes(ctx, client, name)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		errs = append(errs, deleteNode(ctx, client, n))
	}
	nss, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("unregister lab %s: list namespaces: %w", name, err)
	}
	for _, ns := range nss.Items {
		if ns.Annotations[Annotation] == name && ns.DeletionTimestamp == nil {
			err := client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// workers bounds the pods written at once: each takes two or three
// requests, and the client's rate limiter bounds the rest.
const workers = 16

// forEach calls fn for every item on up to workers goroutines and joins
// the errors.
func forEach[T any](items []T, fn func(T) error) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan T)
	for range min(workers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				if err := fn(it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// ensureNamespace creates ns with the lab's labels and annotation, or
// merges the labels into an existing one.
func ensureNamespace(ctx context.Context, client kubernetes.Interface, labName string, ns lab.Namespace) error {
	api := client.CoreV1().Namespaces()
	cur, err := api.Get(ctx, ns.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = api.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns.Name, Labels: ns.Labels, Annotations: map[string]string{Annotation: labName},
		}}, metav1.CreateOptions{})
		if err == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("register namespace %s: %w", ns.Name, err)
	}
	if cur.DeletionTimestamp != nil {
		return fmt.Errorf("register namespace %s: it is being deleted (Terminating); wait until it is gone", ns.Name)
	}
	if len(ns.Labels) == 0 || hasAll(cur.Labels, ns.Labels) {
		return nil
	}
	if err := mergePatch(func(raw []byte) error {
		_, err := api.Patch(ctx, ns.Name, types.MergePatchType, raw, metav1.PatchOptions{})
		return err
	}, map[string]any{"metadata": map[string]any{"labels": ns.Labels}}); err != nil {
		return fmt.Errorf("label namespace %s: %w", ns.Name, err)
	}
	return nil
}

func hasAll(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// mergePatch marshals patch and hands it to apply.
func mergePatch(apply func([]byte) error, patch any) error {
	raw, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	return apply(raw)
}

// ensureNode creates node name (annotated with the lab) and marks it
// Ready; a node of that name that is not the lab's is an error.
func ensureNode(ctx context.Context, client kubernetes.Interface, labName, name string) error {
	api := client.CoreV1().Nodes()
	cur, err := api.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cur, err = api.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{corev1.LabelHostname: name, corev1.LabelOSStable: "linux"},
			Annotations: map[string]string{Annotation: labName},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", name, err)
	}
	if owner := cur.Annotations[Annotation]; owner != labName {
		return fmt.Errorf("register node %s: a node of that name exists and is not lab %s's (%s=%q)", name, labName, Annotation, owner)
	}
	if nodeReady(cur) {
		return nil
	}
	now := metav1.NewTime(time.Now())
	status := map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "LabNode",
		Message: "simulated by nanoseg lab " + labName, LastHeartbeatTime: now, LastTransitionTime: now,
	}}}}
	if err := mergePatch(func(raw []byte) error {
		_, err := api.PatchStatus(ctx, name, raw)
		return err
	}, status); err != nil {
		return fmt.Errorf("mark node %s Ready: %w", name, err)
	}
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// hashOf returns the pod-template-hash of e's pods.
func hashOf(e lab.Endpoint) string {
	if h := e.Labels[HashLabel]; h != "" {
		return h
	}
	return DefaultHash
}

// desiredPod returns the Pod of workload replica e.
func desiredPod(p *lab.Plan, e lab.Endpoint) *corev1.Pod {
	labels := maps.Clone(e.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	hash := hashOf(e)
	labels[HashLabel] = hash
	var ports []corev1.ContainerPort
	for _, pt := range e.Ports {
		ports = append(ports, corev1.ContainerPort{Name: pt.Name, ContainerPort: int32(pt.Port), Protocol: corev1.Protocol(pt.Protocol)})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: PodName(e), Namespace: e.Namespace, Labels: labels,
			Annotations: map[string]string{Annotation: p.Lab},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: e.Workload + "-" + hash, UID: OwnerUID,
				Controller: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			NodeName:   e.NodeName(p.Lab),
			Containers: []corev1.Container{{Name: e.Workload, Image: Image, Ports: ports, ImagePullPolicy: corev1.PullNever}},
			// Lab endpoints tolerate anything: no scheduler or taint
			// manager decides where they run.
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		},
	}
}

// ensurePod creates or updates the pod of e and writes its status.
func ensurePod(ctx context.Context, client kubernetes.Interface, p *lab.Plan, e lab.Endpoint) error {
	api := client.CoreV1().Pods(e.Namespace)
	want := desiredPod(p, e)
	id := e.Namespace + "/" + want.Name
	cur, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur, err = api.Create(ctx, want, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("register pod %s: %w", id, err)
		}
	case err != nil:
		return fmt.Errorf("register pod %s: %w", id, err)
	case cur.Annotations[Annotation] != p.Lab:
		return fmt.Errorf("register pod %s: a pod of that name exists and is not lab %s's (%s=%q)", id, p.Lab, Annotation, cur.Annotations[Annotation])
	case cur.Spec.NodeName != want.Spec.NodeName || !samePorts(cur, want):
		// Node and ports are immutable: replace the pod.
		if err := deletePod(ctx, client, e.Namespace, want.Name); err != nil {
			return err
		}
		if cur, err = api.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("register pod %s: %w", id, err)
		}
	case !maps.Equal(cur.Labels, want.Labels) || !ownedAsWanted(cur, want):
		patch := map[string]any{"metadata": map[string]any{"labels": labelPatch(cur.Labels, want.Labels), "ownerReferences": want.OwnerReferences}}
		if err := mergePatch(func(raw []byte) error {
			cur, err = api.Patch(ctx, want.Name, types.MergePatchType, raw, metav1.PatchOptions{})
			return err
		}, patch); err != nil {
			return fmt.Errorf("relabel pod %s: %w", id, err)
		}
	}
	if err := mergePatch(func(raw []byte) error {
		_, err := api.Patch(ctx, want.Name, types.MergePatchType, raw, metav1.PatchOptions{}, "status")
		return err
	}, map[string]any{"status": podStatus(cur, e)}); err != nil {
		return fmt.Errorf("write status of pod %s: %w", id, err)
	}
	return nil
}

// labelPatch is the merge patch that turns labels have into want (null
// deletes a key).
func labelPatch(have, want map[string]string) map[string]any {
	out := map[string]any{}
	for k := range have {
		if _, ok := want[k]; !ok {
			out[k] = nil
		}
	}
	for k, v := range want {
		out[k] = v
	}
	return out
}

func samePorts(a, b *corev1.Pod) bool {
	if len(a.Spec.Containers) != 1 || len(b.Spec.Containers) != 1 {
		return false
	}
	return slices.EqualFunc(a.Spec.Containers[0].Ports, b.Spec.Containers[0].Ports, func(x, y corev1.ContainerPort) bool {
		return x.Name == y.Name && x.ContainerPort == y.ContainerPort && x.Protocol == y.Protocol
	})
}

func ownedAsWanted(cur, want *corev1.Pod) bool {
	return slices.EqualFunc(cur.OwnerReferences, want.OwnerReferences, func(x, y metav1.OwnerReference) bool {
		return x.APIVersion == y.APIVersion && x.Kind == y.Kind && x.Name == y.Name && x.UID == y.UID
	})
}

// podStatus returns the status a kubelet would write for a running, ready
// replica e (its start time kept across runs).
func podStatus(cur *corev1.Pod, e lab.Endpoint) map[string]any {
	var ips []map[string]string
	for _, a := range []string{addr(e.IPv4.IsValid(), e.IPv4.String()), addr(e.IPv6.IsValid(), e.IPv6.String())} {
		if a != "" {
			ips = append(ips, map[string]string{"ip": a})
		}
	}
	start := metav1.NewTime(time.Now())
	if cur.Status.StartTime != nil {
		start = *cur.Status.StartTime
	}
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		for _, c := range cur.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return c
			}
		}
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: start}
	}
	st := map[string]any{
		"phase":     corev1.PodRunning,
		"startTime": start,
		"conditions": []corev1.PodCondition{
			cond(corev1.PodScheduled), cond(corev1.PodInitialized), cond(corev1.ContainersReady), cond(corev1.PodReady),
		},
		"containerStatuses": []corev1.ContainerStatus{{
			Name: e.Workload, Image: Image, ImageID: Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		}},
		"podIPs": ips,
	}
	if len(ips) > 0 {
		st["podIP"] = ips[0]["ip"]
	}
	return st
}

func addr(ok bool, s string) string {
	if ok {
		return s
	}
	return ""
}

// labPods returns the pods of lab name, in every namespace.
func labPods(ctx context.Context, client kubernetes.Interface, name string) ([]corev1.Pod, error) {
	l, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list pods of lab %s: %w", name, err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.Annotations[Annotation] == name {
			out = append(out, p)
		}
	}
	return out, nil
}

// labNodes returns the names of the nodes of lab name.
func labNodes(ctx context.Context, client kubernetes.Interface, name string) ([]string, error) {
	l, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes of lab %s: %w", name, err)
	}
	var out []string
	for _, n := range l.Items {
		if n.Annotations[Annotation] == name {
			out = append(out, n.Name)
		}
	}
	return out, nil
}

// deletePod deletes a pod at once (grace period 0: no kubelet would
// confirm a graceful deletion).
func deletePod(ctx context.Context, client kubernetes.Interface, ns, name string) error {
	err := client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s/%s: %w", ns, name, err)
	}
	return nil
}

func deleteNode(ctx context.Context, client kubernetes.Interface, name string) error {
	err := client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", name, err)
	}
	return nil
}
