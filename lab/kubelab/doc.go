// Package kubelab registers a lab in a Kubernetes API server: it plays the
// kubelet's part for the lab's endpoints, so that a node agent that reads
// the API server sees the lab as a cluster. It is a test harness, not
// something a node agent relies on.
//
// What Register writes, for a lab plan:
//   - each of the lab's Namespaces, with the lab's labels (a namespace that
//     already exists and that no lab created, kube-system say, only gets
//     the labels, and Unregister leaves it);
//   - a Node per simulated node (the workloads' `node`, default the lab's
//     name), with a Ready condition;
//   - each workload replica as Pod "<workload>-<i>" in its namespace, on
//     its node (spec.nodeName), with the workload's labels plus
//     pod-template-hash (the workload's own, else "lab"), a controller
//     ownerReference to ReplicaSet "<workload>-<hash>", one container with
//     the workload's declared ports, and a status as a kubelet would write
//     it: phase Running, conditions Ready and ContainersReady True, podIP
//     and podIPs (IPv4 then IPv6, those the replica has).
//
// Externals are outside the cluster and are not registered. Every object
// Register creates carries the annotation nanoseg.io/lab=<lab>: Unregister
// finds what to delete by it, and Register refuses to take over an object
// of the same name that lacks it. Labels are left alone so that pods carry
// exactly the lab's labels. Register is idempotent: run again it updates
// labels and status, recreates a pod whose node or ports changed, and
// deletes the lab's pods and nodes that the plan no longer has.
//
// The ownerReference names a ReplicaSet that does not exist (the agreed
// fixed UID, OwnerUID): in a cluster with a kube-controller-manager, its
// garbage collector deletes such pods. Register labs in clusters without
// one (internal/kubetest); a real node's pods come from a real kubelet.
//
// Pod status fields: https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#PodStatus.
package kubelab
