// Package nodeagent is the node agent of a Kubernetes cluster (`nanoseg
// node`, a DaemonSet): the Kubernetes inventory source (inventory/kube:
// pods, namespaces, Services, EndpointSlices and the netns finder for one
// node) and the policy watcher (store/kube: NetworkPolicies and
// NanoSegments) feed a node.Node that programs one table per pod netns of
// its node. The API server is the whole truth: once both caches synced
// every workload is decided, and nothing is enforced before.
// Observations stay in a bounded in-memory sink (MemSink) until part 2
// carries them to the controller.
package nodeagent
