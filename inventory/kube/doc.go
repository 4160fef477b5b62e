// Package kube is the Kubernetes inventory source of a node agent: the
// cluster's Pods, Namespaces, Services and EndpointSlices from client-go
// shared informers, turned into an inventory.Snapshot, and the network
// namespaces of the node's own pods found among the node's namespaces.
//
//   - Source (source.go): informers on Pods (all namespaces, so peers on
//     other nodes resolve), Namespaces, Services and EndpointSlices
//     (discovery.k8s.io/v1); List builds the snapshot, Watch notifies on
//     every event that may change it. Objects are trimmed on the way into
//     the informer caches (transform.go) to what the snapshot needs.
//   - Pods as endpoints (pods.go): which pods count, the workload of a pod
//     (its controller owner), the addresses two pods claim.
//   - Services (services.go): each Service's ClusterIPs and, per port, the
//     ready backends its EndpointSlices list.
//   - Finder (finder.go, finder_linux.go): the network namespace of each
//     pod of this node, matched by the pod's addresses among the bind
//     mounts under /run/netns and /var/run/netns and the namespaces of
//     running processes (/proc/PID/ns/net), with no CNI hook. A pod whose
//     namespace is not found, or not found unambiguously, is reported
//     (Source.Unfound, a gauge) and stays a peer; it is never guessed.
//   - A new pod before its addresses are posted (early.go, cgroup.go,
//     finder_pods_linux.go): the finder sees a new namespace within
//     milliseconds of its mount, reads its first process's cgroup, which
//     names the pod by UID (kubelet's kubepods cgroups), and List lists a
//     waiting pod of this node with its namespace's addresses; Pending and
//     Candidates tell the node agent which pods wait and which namespaces
//     may be theirs (its fail-closed placeholder).
//
// What the finder needs in a DaemonSet pod: the host's PID namespace
// (hostPID, so /proc lists the pods' processes and /proc/1 is the host's
// init), the host's /run/netns and /var/run/netns mounted at the same
// paths with mountPropagation HostToContainer (bind mounts made after the
// agent started must show up), CAP_SYS_ADMIN (netlink handles inside a
// namespace use setns(2)) and CAP_SYS_PTRACE (reading other processes'
// /proc/PID/ns/net links); /proc/PID/cgroup is world-readable. The RBAC it needs: get, list and watch on
// pods, namespaces, services and discovery.k8s.io endpointslices.
//
// Only kube-named packages import client-go (deps_test.go).
package kube
