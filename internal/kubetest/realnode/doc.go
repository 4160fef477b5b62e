// Package realnode runs a real Kubernetes node beside a test API server
// (package kubetest): containerd 1.6 with its CRI plugin, runc, the bridge
// CNI plugin and kubelet, all started by the test process as root, with
// images built locally and imported without a registry. Pods scheduled to
// it (spec.nodeName, or by a kube-scheduler) really run: their network
// namespaces are containerd's bind mounts /run/netns/cni-<uuid>, their
// addresses come from the bridge, and traffic between them crosses real
// veth links, which is what nanoseg's node agent finds and programs.
//
//	n, err := realnode.Start(ctx, cluster, realnode.Options{})
//	defer n.Stop()
//
// What a node is made of, and why (the facts measured on these machines
// are in the session notes' K8S.md, "A real node"):
//
//   - The bridge nsrn<pid> carries the node address (NodePrefix, the
//     kubelet's node IP, where the API server reaches it for logs and
//     exec) and the pods' gateway (PodPrefix); pods get host-local
//     addresses from PodPrefix. The pod subnet is not among the IPAM
//     routes: pod-to-pod traffic stays on the bridge. Forwarding is enabled
//     on this bridge only (never the global ip_forward) behind a table
//     inet nsrn<pid> that drops whatever would be routed between the
//     bridge and another interface; with kube-proxy (Options.KubeProxy) it
//     carries pod-to-Service traffic, which the host translates.
//   - containerd gets a config, root, state, sockets and CNI conf dir of
//     its own. This host lacks CAP_SYS_RESOURCE in its bounding set, so
//     the CRI plugin restricts oom_score_adj (restrict_oom_score_adj),
//     else runc fails every sandbox; cgroups are v1 and there is no
//     systemd, so runc and kubelet use cgroupfs and kubelet runs with
//     failCgroupV1: false.
//   - Images: the pause image is a tiny static Go program
//     (testdata/pause, built on first use), busybox is Debian's
//     busybox-static, and agnhost is the binary hack/kube-bins.sh builds
//     plus busybox, each written as a
//     docker-archive tar (Image.WriteArchive) kept in CacheDir by content
//     and imported with `ctr -n k8s.io images import`. Their names are
//     the upstream ones (PauseImage, AgnhostImage…) so that kubelet and the
//     upstream e2e suite find them; nothing is ever pulled.
//   - kubelet authenticates as system:node:<name> with a certificate of
//     the cluster's CA (Cluster.IssueCert) and serves the API server on the
//     node address with a serving certificate of the same CA.
//
// Teardown (Stop) goes in the only order that leaves nothing: pods deleted
// through the API while kubelet runs (CNI DEL frees links and addresses),
// then kube-proxy, kubelet, leftover containers and shims, containerd;
// then the mounts, pod netns, bridge and table, the KUBE-* chains kubelet
// makes in the host's iptables, kube-proxy's tables, the kubepods
// cgroups and the directories. A test process that dies first leaves
// dirs and a bridge named after its pid: the next Start (or Sweep)
// removes them.
//
// Test-only, root-only, one node per process and per host at a time (run
// it under the kernel lock): the node's addresses, the kubepods cgroups
// and the host chains are the host's.
package realnode
