package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// The resources the controller reads and writes.
var (
	NanoSegmentResource = v1alpha1.SchemeGroupVersion.WithResource("nanosegments")
	ProposalResource    = v1alpha1.SchemeGroupVersion.WithResource("nanosegmentproposals")
	PromotionResource   = v1alpha1.SchemeGroupVersion.WithResource("nanosegmentpromotions")
)

// toTyped converts an unstructured object into out.
func toTyped(u *unstructured.Unstructured, out any) error {
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		return fmt.Errorf("decode %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// toUnstructured converts a typed object, setting its apiVersion and kind.
func toUnstructured(obj any, kind string) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", kind, err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(v1alpha1.APIVersion)
	u.SetKind(kind)
	return u, nil
}

// sameJSON reports whether a and b are equal as the API server keeps
// them: compared through their JSON (times at whole seconds, empty
// fields left out), so what a round trip cannot change is never a
// difference that causes a write.
func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var va, vb any
	if json.Unmarshal(ja, &va) != nil || json.Unmarshal(jb, &vb) != nil {
		return false
	}
	na, _ := json.Marshal(va)
	nb, _ := json.Marshal(vb)
	return bytes.Equal(na, nb)
}

// roundTrip returns v as it comes back from the API server's JSON.
func roundTrip[T any](v T) T {
	var out T
	raw, err := json.Marshal(v)
	if err != nil {
		return v
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return v
	}
	return out
}

// objectRef names an object Events are about.
type objectRef struct {
	gvk       schema.GroupVersionKind
	namespace string
	name      string
	uid       string
}

// event records a core/v1 Event on ref (RBAC: create events in its
// namespace); a failure is logged, never returned: Events are a courtesy.
func (c *Controller) event(ctx context.Context, ref objectRef, typ, reason, msg string) {
	now := metav1.NewTime(time.Now())
	if len(msg) > 1024 {
		msg = msg[:1021] + "..."
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: ref.name + ".", Namespace: ref.namespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: ref.gvk.GroupVersion().String(), Kind: ref.gvk.Kind,
			Namespace: ref.namespace, Name: ref.name, UID: typesUID(ref.uid)},
		Reason: reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: "nanoseg-controller"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "nanoseg.io/controller", ReportingInstance: c.cfg.ID,
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.client.CoreV1().Events(ref.namespace).Create(cctx, ev, metav1.CreateOptions{}); err != nil && ctx.Err() == nil {
		c.log.Warn("record event", "object", ref.namespace+"/"+ref.name, "reason", reason, "err", err)
	}
}

func typesUID(s string) types.UID { return types.UID(s) }

func ptrUID(u types.UID) *types.UID { return &u }
