package kube

import (
	"context"
	"fmt"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

// NodesRole is the ClusterRole that lets a user's `kubectl nanoseg` list
// the cluster's Nodes (manifests/rbac/users.yaml): bound cluster-wide next
// to nanoseg-view, explain, matrix and proposals match the `nodes` peers
// of ClusterNetworkPolicies as the node agents do.
const NodesRole = "nanoseg-view-nodes"

// canListNodes asks the API server for one Node: nil when the user may
// list them, the API server's Forbidden when not (the inventory then goes
// on without nodes, and a `nodes` peer matches nothing), any other error
// as it is.
func canListNodes(ctx context.Context, kc kubernetes.Interface) error {
	_, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil && !apierrors.IsForbidden(err) {
		return fmt.Errorf("list nodes: %w", err)
	}
	return err
}

// nodesPeers returns the names of the ClusterNetworkPolicies that have a
// rule with a `nodes` peer, in order.
func nodesPeers(cnps []cnpv1alpha2.ClusterNetworkPolicy) []string {
	var out []string
	for _, p := range cnps {
		found := false
		for _, r := range p.Spec.Egress {
			for _, peer := range r.To {
				found = found || peer.Nodes != nil
			}
		}
		if found {
			out = append(out, p.Name)
		}
	}
	return out
}

// warnNodes warns, when the user may not list Nodes (nodesErr) and a
// ClusterNetworkPolicy in force has a `nodes` peer, that explain, matrix
// and proposals leave those peers out: they match no address here while
// the node agents enforce them.
func warnNodes(log *slog.Logger, nodesErr error, cnps []cnpv1alpha2.ClusterNetworkPolicy) {
	if nodesErr == nil {
		return
	}
	if names := nodesPeers(cnps); len(names) > 0 {
		log.Warn("Nodes not readable with these credentials: policy explain, matrix and proposals leave the nodes peers of these ClusterNetworkPolicies out (they match no address here, while the node agents enforce them); bind the ClusterRole "+NodesRole+" cluster-wide",
			"policies", names, "err", nodesErr)
	}
}
