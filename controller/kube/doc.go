// Package kube is the cluster controller (`nanoseg controller`, a
// Deployment of two replicas): leader election with a coordination.k8s.io
// Lease, and, on the leader only, the loops that write to the API server:
//
//   - proposals: every ProposeInterval, controller.Service.Proposals over
//     the merged observation graph becomes one NanoSegmentProposal per
//     workload (spec: segment, window, observed edges; status: coverage
//     and the Settled condition), written only when it changed;
//   - promotions: every NanoSegmentPromotion without a phase, oldest
//     first, is carried out with controller.Service.Promote or Rollback
//     over the cluster policy store's view of that request
//     (store/kube.Store.ForRequest), which records the hash-chained
//     record in its status and writes the NanoSegment; a refusal sets
//     phase Failed and changes nothing else;
//   - status: every StatusInterval, each NanoSegment's status (endpoints,
//     in sync per node, denied counts, Accepted, Programmed and Degraded)
//     from what the node agents report.
//
// The observation graph lives in the leader's memory (transport.Graph):
// after a failover the new leader asks every node agent for its whole
// state. docs/architecture.md ("The cluster controller") says what
// survives what.
package kube
