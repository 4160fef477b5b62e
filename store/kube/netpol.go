package kube

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/store"
)

// Annotations the cluster store puts on the NetworkPolicies it applies.
const (
	// AnnotationRecordRevision is the record number of the applied
	// version (1, 2, … over the object's life).
	AnnotationRecordRevision = "nanoseg.io/record-revision"
	// AnnotationAppliedBy and AnnotationAppliedAt are the record's By
	// and At (RFC 3339, nanoseconds).
	AnnotationAppliedBy = "nanoseg.io/applied-by"
	AnnotationAppliedAt = "nanoseg.io/applied-at"
)

// AddNetworkPolicyRecord implements store.PolicyStore over the
// NetworkPolicy API itself: an apply creates or updates the
// networking.k8s.io/v1 object (its labels, annotations and spec become
// the record's policy's, plus the annotations above), a delete deletes it
// (store.ErrNotFound when it does not exist).
//
// Deviation from the append-only records of the standalone store: the API
// keeps only the current version, so NetworkPolicyRecords returns one
// record per NetworkPolicy in force and no deletions, and the record
// number restarts at 1 when a deleted NetworkPolicy is applied again.
// Revisions otherwise grow by one per apply (AnnotationRecordRevision; a
// NetworkPolicy written by someone else counts its metadata.generation).
// The audit trail of NetworkPolicy changes in a cluster is the API
// server's audit log.
func (s *Store) AddNetworkPolicyRecord(rec store.NetworkPolicyRecord) (store.NetworkPolicyRecord, error) {
	rec, err := store.PrepareNetworkPolicyRecord(rec)
	if err != nil {
		return store.NetworkPolicyRecord{}, err
	}
	ctx, cancel := s.ctx()
	defer cancel()
	nps := s.client.NetworkingV1().NetworkPolicies(rec.Namespace)
	for attempt := 1; ; attempt++ {
		have, err := nps.Get(ctx, rec.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if rec.Action == store.ActionDelete {
				return store.NetworkPolicyRecord{}, fmt.Errorf("delete NetworkPolicy %s: %w", rec.Key(), store.ErrNotFound)
			}
			rec.Revision = 1
			np := stamped(rec, nil)
			_, err = nps.Create(ctx, np, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) && attempt < 10 {
				continue
			}
		case err != nil:
			return store.NetworkPolicyRecord{}, fmt.Errorf("get NetworkPolicy %s: %w", rec.Key(), err)
		case rec.Action == store.ActionDelete:
			rec.Revision = recordRevision(have) + 1
			uid, rv := have.UID, have.ResourceVersion
			err = nps.Delete(ctx, rec.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
			if apierrors.IsNotFound(err) {
				return store.NetworkPolicyRecord{}, fmt.Errorf("delete NetworkPolicy %s: %w", rec.Key(), store.ErrNotFound)
			}
		default:
			rec.Revision = recordRevision(have) + 1
			_, err = nps.Update(ctx, stamped(rec, have), metav1.UpdateOptions{})
		}
		if apierrors.IsConflict(err) && attempt < 10 {
			continue
		}
		if err != nil {
			return store.NetworkPolicyRecord{}, fmt.Errorf("%s NetworkPolicy %s: %w", rec.Action, rec.Key(), err)
		}
		return rec, nil
	}
}

// stamped returns rec's policy as the object to write: over have (the
// object in the API, nil to create), with the record's annotations.
func stamped(rec store.NetworkPolicyRecord, have *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: rec.Namespace, Name: rec.Name}}
	if have != nil {
		np.ObjectMeta = *have.ObjectMeta.DeepCopy()
	}
	np.Labels = rec.Policy.Labels
	np.Annotations = map[string]string{}
	for k, v := range rec.Policy.Annotations {
		np.Annotations[k] = v
	}
	np.Annotations[AnnotationRecordRevision] = strconv.Itoa(rec.Revision)
	np.Annotations[AnnotationAppliedBy] = rec.By
	np.Annotations[AnnotationAppliedAt] = rec.At.UTC().Format(time.RFC3339Nano)
	np.Spec = *rec.Policy.Spec.DeepCopy()
	return np
}

// recordRevision is the record number of np's current version.
func recordRevision(np *networkingv1.NetworkPolicy) int {
	if n, err := strconv.Atoi(np.Annotations[AnnotationRecordRevision]); err == nil && n > 0 {
		return n
	}
	return int(np.Generation)
}

// recordOf returns np as the record of its current version.
func recordOf(np *networkingv1.NetworkPolicy) store.NetworkPolicyRecord {
	np = np.DeepCopy()
	np.ManagedFields = nil
	at, err := time.Parse(time.RFC3339Nano, np.Annotations[AnnotationAppliedAt])
	if err != nil {
		at = np.CreationTimestamp.UTC()
	}
	return store.NetworkPolicyRecord{
		Namespace: np.Namespace, Name: np.Name, Revision: recordRevision(np), Action: store.ActionApply,
		At: at, By: np.Annotations[AnnotationAppliedBy], Policy: np,
	}
}

// NetworkPolicies implements store.PolicyStore: every NetworkPolicy the
// API server holds, whoever applied it.
func (s *Store) NetworkPolicies() ([]store.NetworkPolicyRecord, error) {
	ctx, cancel := s.ctx()
	defer cancel()
	list, err := s.client.NetworkingV1().NetworkPolicies("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list NetworkPolicies: %w", err)
	}
	out := make([]store.NetworkPolicyRecord, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, recordOf(&list.Items[i]))
	}
	slices.SortFunc(out, func(a, b store.NetworkPolicyRecord) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out, nil
}

// NetworkPolicyRecords implements store.PolicyStore with the deviation
// AddNetworkPolicyRecord describes: the record of the current version of
// namespace/name (none when it does not exist), or of every NetworkPolicy
// for "", "".
func (s *Store) NetworkPolicyRecords(namespace, name string) ([]store.NetworkPolicyRecord, error) {
	if namespace == "" && name == "" {
		return s.NetworkPolicies()
	}
	ctx, cancel := s.ctx()
	defer cancel()
	np, err := s.client.NetworkingV1().NetworkPolicies(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get NetworkPolicy %s/%s: %w", namespace, name, err)
	}
	return []store.NetworkPolicyRecord{recordOf(np)}, nil
}
