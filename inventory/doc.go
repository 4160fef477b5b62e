// Package inventory is the endpoint source seam and what is built on it.
//
//   - Source (source.go): list and watch the endpoints of a node with their
//     identities, addresses and named ports, the namespaces with their
//     labels, and known external names. Implementations: LabSource
//     (lab.go, a running lab), LabelsFileSource (labels.go, named network
//     namespaces described by a YAML file), NetnsSource (netns_linux.go,
//     keeps the namespaces that exist and watches /run/netns), and
//     the Kubernetes source of package inventory/kube (informers on Pods,
//     Namespaces, Services and EndpointSlices, and the netns finder).
//   - Index (inventory.go): the endpoints of the last snapshot indexed by
//     address, the address → identity lookup of the observer, and the
//     World of policy evaluation (policies.MemWorld).
package inventory
