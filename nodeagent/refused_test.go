package nodeagent

import (
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestEventsRefused: only an RBAC refusal stops the Events; an Event in a
// terminating namespace (Forbidden too, with its cause) or any other
// failure loses only that Event.
func TestEventsRefused(t *testing.T) {
	events := schema.GroupResource{Resource: "events"}
	terminating := apierrors.NewForbidden(events, "", errors.New("unable to create new content in namespace shop because it is being terminated"))
	terminating.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Field: "shop"}}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"rbac", fmt.Errorf("create event on pod shop/a: %w", apierrors.NewForbidden(events, "", errors.New("cannot create"))), true},
		{"namespace terminating", fmt.Errorf("create event on pod shop/a: %w", terminating), false},
		{"unreachable", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), false},
		{"server error", apierrors.NewInternalError(errors.New("etcd")), false},
	} {
		if got := EventsRefused(c.err); got != c.want {
			t.Errorf("%s: EventsRefused = %v, want %v", c.name, got, c.want)
		}
	}
}
