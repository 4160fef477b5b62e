// Package kube is the CLI's cluster mode: the operator's verbs of
// cmd/nanoseg (status, history, policy show|diff|propose|explain|matrix,
// graph, promote, rollback, verify, evidence export) against a Kubernetes API server, with the
// user's own credentials from a kubeconfig, and with the same outputs as
// against the standalone agent.
//
// Design: Open reads what the API server holds, once, with the user's
// credentials (so RBAC decides what they may read), and builds
// controller.Service in the CLI's process over seams that answer from that
// snapshot; the server package's handler serves it in-process and
// Session.Client hands the CLI a client.Client whose transport calls that
// handler directly (no socket, no port). Every verb therefore runs the
// same code and prints the same thing as against an agent. The seams:
//
//   - PolicyStore (store.go): read-only. Revisions are the ControllerRevisions
//     "<workload>-r<N>" labelled nanoseg.io/workload (data: the
//     store.Revision JSON); the history is the records in the
//     NanoSegmentPromotions' status (sorted by seq, exactly as stored, so
//     an edited record fails the chain check), plus the record of the
//     history head ConfigMap (store/kube) when it is not in its promotion
//     yet; a workload's state is its latest record; NetworkPolicies are those in the cluster. Writes fail
//     with ErrReadOnly: the cluster controller is the only writer.
//     LatestRevision is the exception that makes `policy diff` review
//     what the controller proposes: a workload whose NanoSegmentProposal
//     differs from its latest revision answers with the proposal as the
//     revision a promotion would make (number latest+1).
//   - ObservationReader (observations.go): the edges of the
//     NanoSegmentProposals (spec.edges; an edge in two proposals counts
//     once, the copy last seen wins), of every namespace also with -n
//     (when the user may list them there), so that peers in other
//     namespaces show what was observed of them. Coverage is synthesised: one span
//     per observed endpoint of status.coverage, ending at the time of the
//     read and as long as status.coverage.observed. Its limits: the
//     controller's figure for the proposal's window, as of its last
//     refresh, with the gaps inside it lost, and edges beyond the 1000 a
//     proposal keeps are not seen. Verdicts are the NanoSegments'
//     aggregated status.verdicts, as events with Count and FirstAt
//     (status takes its DENIED and WOULD-DENY counts from the
//     NanoSegments' status).
//   - Inventory: inventory/kube's Source with no node name (every pod a
//     peer), listed once. It needs list on pods, namespaces, services and
//     endpointslices in every namespace, and says which one is refused;
//     the Nodes (for ClusterNetworkPolicy `nodes` peers) when the user may
//     list them (NodesRole), else a warning that those peers are left
//     out (nodes.go).
//   - Node (node.go): what the NanoSegments' status reports (endpoints in
//     sync; the kernel counters per node, on the workload's first
//     endpoint; the default rule ids its verdicts name; the endpoints of a workload without a NanoSegment are
//     unreported, shown as unknown, not out of sync); it programs nothing.
//     Its probes are NanoSegmentProbe objects
//     the node agent of the source pod's node runs (probes.go): verify and
//     evidence export work as against an agent, for a user who may create
//     probes (nanoseg-operate); evidence.go adds cluster.json to the
//     bundle and signs it with the exporting machine's key.
//
// Promote and rollback write nothing themselves (promote.go): the handler
// answers them by creating a NanoSegmentPromotion with the user's
// credentials (RBAC and admission apply; admission stamps
// spec.requestedBy), waiting for the controller to set status.phase, and
// answering what the agent answers: the record and warnings for Succeeded,
// the controller's message as a refusal for Failed, and "forbidden: user
// X cannot create nanosegmentpromotions in namespace Y" when RBAC says no.
//
// Only kube-named packages import client-go (deps_test.go).
package kube
