// Package containerd is the containerd runtime of the container inventory
// (package inventory/containers): a containers.Runtime over one containerd
// namespace, reached over containerd's local API socket. It reports the
// containers that plain containerd runs (`ctr run`, nerdctl, `nerdctl
// compose`, or any program on containerd's Go client); the mapping to
// endpoints is package containers' job.
//
// # Why containerd's API module, not its full client
//
// containerd's gRPC API is versioned apart from the daemon and stays on
// 1.x so that old daemons and new clients talk (containerd RELEASES.md,
// "API stability"): the v1 containers, tasks, events and version services
// this package calls are the same in Debian's containerd 1.6.20 (API 1.6),
// 1.7 and 2.x. The package uses the generated clients of that API module
// (github.com/containerd/containerd/api v1.12.0, the version containerd
// v2.4.2 itself builds on) with gRPC directly, not the full Go client
// (github.com/containerd/containerd/v2/client v2.4.2), which talks to 1.6
// as well but is made for managing containers: importing it linked 228
// more packages into the agent (OpenTelemetry, compression, platform
// matching, image and snapshot code, go.sum +61 lines, five other modules
// upgraded), and a program of it alone was 8 MB larger than one of the API
// module (24.6 MB against 16.5 MB). The API module adds 89 packages, most
// of them gRPC, and what this package does beyond it is small: dial the
// unix socket, send the namespace as the "containerd-namespace" gRPC
// header (containerd pkg/namespaces), decode the OCI spec (runtime-spec's
// Go types) and read an event stream. The tests drive containerd with
// Debian's ctr, the tool a person uses with plain containerd.
//
// # What is read from where
//
//   - The container list: the containers service's List, in the namespace.
//     ID, Image and Labels as stored; Name is nerdctl's "nerdctl/name"
//     label (containerd itself names containers by ID only; the mapping
//     falls back to the ID); Ports come from nerdctl's "nerdctl/ports"
//     label (JSON list of go-cni PortMappings: the container ports it
//     publishes, one per port and protocol; ports an image only EXPOSEs
//     are in the image's config, which is not read). Compose labels
//     (com.docker.compose.project, .service) are kept for the mapping.
//   - Running and Pid: the tasks service's List. A task that is created
//     (its process exists, waiting to be started: with nerdctl its netns
//     is already configured by the CNI), running, pausing or paused
//     counts as running; a stopped task or none does not.
//   - The network namespace: the container's OCI runtime spec
//     (linux.namespaces). An entry of type network with a path (`ctr run
//     --with-ns network:/run/netns/x`, CRI sandboxes) gives NetnsPath that path; a path of the form
//     /proc/<pid>/ns/net (nerdctl --network container:x, CRI containers
//     joining their sandbox) dies with that process, so a running
//     container is given its own /proc/<pid>/ns/net instead; so is a
//     running container whose bind mount was deleted (`ip netns del`: the
//     netns lives on in its process). An entry
//     without a path (a netns of its own) gives /proc/<pid>/ns/net while
//     the task runs, "" otherwise. No network entry at all is the host's
//     network: HostNetwork.
//   - NetnsOf: containers whose netns paths are one namespace (the same
//     device and inode; by name when the path cannot be read) are one
//     group; its owner is the container whose spec made the netns, else
//     the first running one, else the first, in creation order (then ID),
//     and every other member's NetnsOf is the owner's ID.
//   - Watch: the events service's Subscribe, filtered to the namespace and
//     the topics /tasks/create, /tasks/start, /tasks/exit, /tasks/delete,
//     /containers/create, /containers/update and /containers/delete.
//     Events that arrive while the callback runs are coalesced into one
//     more call. The stream breaks when containerd stops or restarts;
//     Watch then returns the error and the caller lists periodically.
//
// # Limits
//
//   - Rootless containerd (containerd run by a user through RootlessKit,
//     its socket under $XDG_RUNTIME_DIR, its netns in a user namespace) is
//     not supported: the agent runs as root, on the host's namespaces.
//   - New does not connect (as the other runtimes of package containers):
//     a containerd that is not up yet, has stopped, or whose socket this
//     process may not open makes Containers, Watch and Version fail with
//     errors wrapping ErrUnreachable that name the socket, until it
//     answers again.
//   - The namespace must be a valid containerd identifier (ErrBadNamespace);
//     one that does not exist yet lists no containers until containerd
//     makes it.
//   - Containers made by the CRI plugin (namespace k8s.io; labels
//     io.kubernetes.pod.name, io.kubernetes.pod.namespace,
//     io.cri-containerd.kind sandbox or container) are listed like any
//     other, but they belong to the Kubernetes mode (package
//     inventory/kube), which knows their pods: point the standalone agent
//     at the namespace of the containers it is to protect ("default" for
//     ctr and nerdctl).
//   - One namespace per Runtime: a host with containers in several
//     namespaces gets one Runtime for each.
package containerd
