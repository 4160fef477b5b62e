package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ReasonPolicyRejected is the reason of the Event recorded on a rejected
// NetworkPolicy, NanoSegment or ClusterNetworkPolicy (RejectionEvent).
const ReasonPolicyRejected = "PolicyRejected"

// maxEventMessage bounds an Event's message (the events.k8s.io API's
// limit for a note, 1 KiB); a longer error is cut.
const maxEventMessage = 1024

// Reporter names who records an Event: Component and Host go to the
// Event's source, Controller and Instance to reportingController and
// reportingInstance (core/v1 Event).
type Reporter struct {
	Component  string // e.g. "nanoseg-node"
	Host       string // the node's name
	Controller string // e.g. "nanoseg.io/node"
	Instance   string // e.g. "nanoseg-node-<node>"
}

// RejectionEvent returns a recorder for PolicyWatcher.RecordRejections: it
// creates one Warning Event with reason PolicyRejected on the rejected
// object (core/v1 Events in its namespace, or in namespace "default" for a
// cluster-scoped ClusterNetworkPolicy, as kubectl does for the Events of
// Nodes; RBAC: create events), saying
// which resourceVersion was rejected, what stays in force and the
// validation error with every field at fault. The Event's name is derived
// from the object, its kind and resourceVersion and rep.Instance, so one
// reporter records one Event per rejected version, also across restarts:
// a second Create of the same name is refused by the API server
// (AlreadyExists), which counts as recorded.
func RejectionEvent(client kubernetes.Interface, rep Reporter) func(ctx context.Context, r Rejection) error {
	return func(ctx context.Context, r Rejection) error {
		apiVersion := networkingv1.SchemeGroupVersion.String()
		switch r.Kind {
		case KindNanoSegment:
			apiVersion = nanoSegmentKind.GroupVersion().String()
		case KindClusterNetworkPolicy:
			apiVersion = clusterNetworkPolicyKind.GroupVersion().String()
		}
		evNS := r.Namespace
		if evNS == "" {
			evNS = metav1.NamespaceDefault
		}
		kept := "no version of it is in force"
		if r.KeptPrevious {
			kept = "its previous version (resourceVersion " + r.KeptResourceVersion + ") stays in force"
		}
		msg := fmt.Sprintf("%s: %s resourceVersion %s is not applied, %s: %v", rep.Instance, r.Key(), r.ResourceVersion, kept, r.Err)
		if len(msg) > maxEventMessage {
			msg = msg[:maxEventMessage-3] + "..."
		}
		sum := sha256.Sum256([]byte(r.Kind + "\x00" + r.Namespace + "\x00" + r.Name + "\x00" + r.ResourceVersion + "\x00" + rep.Instance))
		name := r.Name
		if len(name) > 200 {
			name = name[:200]
		}
		since := metav1.NewTime(r.Since)
		if r.Since.IsZero() {
			since = metav1.NewTime(time.Now())
		}
		ev := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name + "." + hex.EncodeToString(sum[:8]), Namespace: evNS},
			InvolvedObject: corev1.ObjectReference{APIVersion: apiVersion, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				UID: r.UID, ResourceVersion: r.ResourceVersion},
			Reason:              ReasonPolicyRejected,
			Message:             msg,
			Type:                corev1.EventTypeWarning,
			Source:              corev1.EventSource{Component: rep.Component, Host: rep.Host},
			FirstTimestamp:      since,
			LastTimestamp:       since,
			Count:               1,
			ReportingController: rep.Controller,
			ReportingInstance:   rep.Instance,
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := client.CoreV1().Events(evNS).Create(cctx, ev, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create event on %s: %w", r.Key(), err)
		}
		return nil
	}
}
