package containerd

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	nscontainers "github.com/nanoseg/nanoseg/inventory/containers"
	"github.com/nanoseg/nanoseg/model"
)

const (
	// DefaultSocket is containerd's default API socket (rootful).
	DefaultSocket = "/run/containerd/containerd.sock"
	// DefaultNamespace is the containerd namespace of `ctr` and nerdctl
	// when none is given.
	DefaultNamespace = "default"
)

// Labels nerdctl sets on the containers it creates (nerdctl
// pkg/labels/labels.go).
const (
	// LabelName is the container's name (`nerdctl run --name`); it becomes
	// Container.Name.
	LabelName = "nerdctl/name"
	// LabelPorts is the container's published ports: JSON, a list of
	// go-cni PortMappings ({"HostPort":8080,"ContainerPort":80,
	// "Protocol":"tcp","HostIP":"0.0.0.0"}); they become Container.Ports.
	LabelPorts = "nerdctl/ports"
)

// callTimeout bounds each list call to the daemon.
const callTimeout = 15 * time.Second

// maxMsgSize is the largest answer accepted, containerd's own client's
// default (16 MiB): a List of many containers with their specs is large.
const maxMsgSize = 16 << 20

// namespaceHeader is the gRPC metadata key that carries the containerd
// namespace of a call (containerd pkg/namespaces/grpc.go).
const namespaceHeader = "containerd-namespace"

// eventTopics are the events after which Containers may answer
// differently: a task created (its netns exists and, with nerdctl, is
// configured: the CNI runs in runc's createRuntime hook), started, exited
// or deleted; a container created, updated (labels) or deleted.
var eventTopics = []string{"/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete",
	"/containers/create", "/containers/update", "/containers/delete"}

// identifierRE is containerd's rule for namespaces (and other
// identifiers): runs of letters and digits joined by one of "._-"
// (containerd pkg/identifiers/validate.go), at most 76 characters.
var identifierRE = regexp.MustCompile(`^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`)

// runtime is a containers.Runtime over one containerd namespace.
type runtime struct {
	conn       *grpc.ClientConn
	containers containersapi.ContainersClient
	tasks      tasksapi.TasksClient
	events     eventsapi.EventsClient
	socket     string
	namespace  string
}

// New returns the Runtime of the containerd API at socket (a path, or
// "unix://<path>"; "" is DefaultSocket) for the containers of namespace
// ("" is DefaultNamespace). It does not connect: a containerd that is not
// up (yet), or whose socket this process may not open (rootless
// containerd is not supported), is an error of Containers and Watch
// wrapping ErrUnreachable, not of New, as for the other runtimes of
// package containers. A namespace that does not exist yet is no error
// either: containerd makes namespaces on first use, and Containers lists
// none until then.
//
// Errors: ErrBadNamespace when namespace is not a valid containerd
// identifier (runs of letters and digits joined by one of "._-", at most
// 76 characters); a socket that is not an absolute path.
//
// The returned Runtime also implements io.Closer, which closes the
// connection.
func New(socket, namespace string) (nscontainers.Runtime, error) {
	if namespace == "" {
		namespace = DefaultNamespace
	}
	if len(namespace) > 76 || !identifierRE.MatchString(namespace) {
		return nil, fmt.Errorf("containerd namespace %q: %w: want runs of letters and digits joined by one of \"._-\", at most 76 characters", namespace, ErrBadNamespace)
	}
	path := strings.TrimPrefix(socket, "unix://")
	if path == "" {
		path = DefaultSocket
	}
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("containerd socket %q: want an absolute path or unix://<path>", socket)
	}
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize)))
	if err != nil {
		return nil, fmt.Errorf("containerd socket %s: %w", path, err)
	}
	return &runtime{conn: conn, containers: containersapi.NewContainersClient(conn),
		tasks: tasksapi.NewTasksClient(conn), events: eventsapi.NewEventsClient(conn),
		socket: path, namespace: namespace}, nil
}

// Open is New for a runtime URI's parts, as package containers' Opener
// takes them (containerd:///run/containerd/containerd.sock?namespace=NS):
// the socket path and the query, whose only key is namespace. Errors:
// New's, and a query key other than namespace or given twice.
func Open(socket string, query url.Values) (nscontainers.Runtime, error) {
	for k, v := range query {
		if k != "namespace" {
			return nil, fmt.Errorf("containerd runtime %s: query parameter %q: the only one is namespace", socket, k)
		}
		if len(v) > 1 {
			return nil, fmt.Errorf("containerd runtime %s: query parameter namespace given %d times", socket, len(v))
		}
	}
	return New(socket, query.Get("namespace"))
}

// Version asks containerd for its version ("1.6.20~ds1"); an error wraps
// ErrUnreachable when containerd does not answer.
func (r *runtime) Version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	v, err := versionapi.NewVersionClient(r.conn).Version(ctx, &emptypb.Empty{})
	if err != nil {
		return "", r.fail("ask the version", err)
	}
	return v.GetVersion(), nil
}

// fail wraps err of a call for what, naming the runtime; an unavailable
// daemon (no socket, nobody listening, no permission, connection lost)
// wraps ErrUnreachable too.
func (r *runtime) fail(what string, err error) error {
	if status.Code(err) == codes.Unavailable {
		return fmt.Errorf("%s of %s: %w: %v", what, r.Name(), ErrUnreachable, err)
	}
	return fmt.Errorf("%s of %s: %w", what, r.Name(), err)
}

// Name is "containerd unix://<socket> namespace <ns>".
func (r *runtime) Name() string {
	return "containerd unix://" + r.socket + " namespace " + r.namespace
}

// Close closes the connection to containerd.
func (r *runtime) Close() error { return r.conn.Close() }

// nsContext is ctx with the runtime's namespace for containerd.
func (r *runtime) nsContext(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, namespaceHeader, r.namespace)
}

// Containers lists the namespace's containers with their tasks: two calls
// (the containers service's List and the tasks service's List), then each
// container's OCI spec is read for its network namespace. Containers are
// ordered by creation time, then ID.
func (r *runtime) Containers(ctx context.Context) ([]nscontainers.Container, error) {
	ctx, cancel := context.WithTimeout(r.nsContext(ctx), callTimeout)
	defer cancel()
	cresp, err := r.containers.List(ctx, &containersapi.ListContainersRequest{})
	if err != nil {
		return nil, r.fail("list containers", err)
	}
	tresp, err := r.tasks.List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, r.fail("list tasks", err)
	}
	procs := make(map[string]*task.Process, len(tresp.GetTasks()))
	for _, p := range tresp.GetTasks() {
		id := p.GetContainerID()
		if id == "" {
			id = p.GetID()
		}
		procs[id] = p
	}
	list := cresp.GetContainers()
	slices.SortFunc(list, func(a, b *containersapi.Container) int {
		return cmp.Or(a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()), strings.Compare(a.GetID(), b.GetID()))
	})
	out := make([]nscontainers.Container, 0, len(list))
	joins := make([]netnsEntry, 0, len(list))
	for _, c := range list {
		ct, e := r.container(c, procs[c.GetID()])
		out = append(out, ct)
		joins = append(joins, e)
	}
	for i, owner := range netnsOwners(joins) {
		if owner >= 0 && owner != i {
			out[i].NetnsOf = out[owner].ID
		}
	}
	return out, nil
}

// netnsEntry is what netnsOwners needs of one container.
type netnsEntry struct {
	path    string // effective netns path; "" for none or unknown
	creates bool   // its spec makes a new netns (no path given)
	running bool
}

// container maps one containerd container and its task (nil when it has
// none) to a Container, and says how it stands to its netns.
func (r *runtime) container(c *containersapi.Container, p *task.Process) (nscontainers.Container, netnsEntry) {
	labels := c.GetLabels()
	ct := nscontainers.Container{
		Runtime: "containerd/" + r.namespace,
		ID:      c.GetID(),
		Name:    labels[LabelName],
		Image:   c.GetImage(),
		Labels:  labels,
		Ports:   portsLabel(labels[LabelPorts]),
	}
	if p != nil {
		switch p.GetStatus() {
		case task.Status_CREATED, task.Status_RUNNING, task.Status_PAUSED, task.Status_PAUSING:
			ct.Running, ct.Pid = true, int(p.GetPid())
		}
	}
	var e netnsEntry
	e.running = ct.Running
	ns, known := specNetns(c.Spec.GetValue())
	switch {
	case known && ns == nil:
		ct.HostNetwork = true
	case known && ns.Path != "" && !(ct.Running && ct.Pid > 0 && (procNetns(ns.Path) || gone(ns.Path))):
		ct.NetnsPath = ns.Path
	case ct.Running && ct.Pid > 0:
		// A netns of its own, one joined through another process's /proc
		// path (which dies with that process), one whose bind mount was
		// removed while the container runs (`ip netns del`: the netns
		// lives on in the process), or a spec we could not read: the
		// task's own.
		ct.NetnsPath = "/proc/" + strconv.Itoa(ct.Pid) + "/ns/net"
		e.creates = known && ns.Path == ""
	}
	e.path = ct.NetnsPath
	return ct, e
}

// gone reports whether nothing is at path.
func gone(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

// procNetns reports whether path is a process's netns link,
// /proc/<pid>/ns/net.
func procNetns(path string) bool {
	rest, ok := strings.CutPrefix(filepath.Clean(path), "/proc/")
	if !ok {
		return false
	}
	pid, tail, _ := strings.Cut(rest, "/")
	_, err := strconv.Atoi(pid)
	return err == nil && tail == "ns/net"
}

// specNetns decodes an OCI runtime spec (JSON) and returns its network
// namespace entry: nil with known true when the spec has none (the host's
// network); known false when the spec cannot be read.
func specNetns(raw []byte) (ns *specs.LinuxNamespace, known bool) {
	var s specs.Spec
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return nil, false
	}
	if s.Linux == nil {
		return nil, true
	}
	for i := range s.Linux.Namespaces {
		if s.Linux.Namespaces[i].Type == specs.NetworkNamespace {
			return &s.Linux.Namespaces[i], true
		}
	}
	return nil, true
}

// netnsOwners returns, for each entry, the index of the entry whose netns
// it is (itself when it owns it, -1 when it has no netns path). Entries
// name the same netns when their paths are the same file (same device and
// inode, so /run/netns/x and /proc/<pid>/ns/net of a task in it match) or,
// when a path cannot be read, the same cleaned path. The owner is the
// entry whose spec made the netns, else the first running one, else the
// first; entries are in creation order, so "first" is the oldest.
func netnsOwners(es []netnsEntry) []int {
	owners := make([]int, len(es))
	groups := map[string][]int{}
	var keys []string
	for i, e := range es {
		owners[i] = -1
		if e.path == "" {
			continue
		}
		k := "path:" + filepath.Clean(e.path)
		if id, ok := fileID(e.path); ok {
			k = id
		}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range keys {
		g := groups[k]
		owner := g[0]
		rank := func(i int) int {
			switch {
			case es[i].creates && es[i].running:
				return 0
			case es[i].running:
				return 1
			}
			return 2
		}
		for _, i := range g[1:] {
			if rank(i) < rank(owner) {
				owner = i
			}
		}
		for _, i := range g {
			owners[i] = owner
		}
	}
	return owners
}

// portMapping is one element of nerdctl's ports label (go-cni's
// PortMapping).
type portMapping struct {
	HostPort      int32
	ContainerPort int32
	Protocol      string
	HostIP        string
}

// portsLabel decodes nerdctl's ports label into the container ports it
// publishes, one per container port and protocol, sorted. A label that is
// not such JSON gives none (the label is nerdctl's, not the user's input).
func portsLabel(v string) []model.ContainerPort {
	if v == "" {
		return nil
	}
	var pms []portMapping
	if err := json.Unmarshal([]byte(v), &pms); err != nil {
		return nil
	}
	var out []model.ContainerPort
	for _, pm := range pms {
		proto := model.ProtocolTCP
		if pm.Protocol != "" {
			p, err := model.ParseProtocol(pm.Protocol)
			if err != nil {
				continue
			}
			proto = p
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			continue
		}
		cp := model.ContainerPort{Port: pm.ContainerPort, Protocol: proto}
		if !slices.Contains(out, cp) {
			out = append(out, cp)
		}
	}
	slices.SortFunc(out, func(a, b model.ContainerPort) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), strings.Compare(string(a.Protocol), string(b.Protocol)))
	})
	return out
}

// Watch subscribes to containerd's events of the namespace on the topics
// after which Containers may answer differently (/tasks/create, /tasks/start,
// /tasks/exit, /tasks/delete, /containers/create, /containers/update,
// /containers/delete) and calls notify after them: events that arrive
// while notify runs are coalesced into one more call. It calls notify once
// as soon as the subscription is sent, so a list taken just before Watch
// catches up.
// It returns nil when ctx ends, or the error that broke the event stream
// (containerd stopped or restarted).
func (r *runtime) Watch(ctx context.Context, notify func()) error {
	sub, cancel := context.WithCancel(r.nsContext(ctx))
	defer cancel()
	filters := make([]string, len(eventTopics))
	for i, t := range eventTopics {
		filters[i] = fmt.Sprintf("namespace==%s,topic==%q", r.namespace, t)
	}
	stream, err := r.events.Subscribe(sub, &eventsapi.SubscribeRequest{Filters: filters})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return r.fail("subscribe to events", err)
	}
	evs, errs := make(chan struct{}, 1), make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				errs <- err
				return
			}
			select { // coalesce: one pending wake-up at most
			case evs <- struct{}{}:
			default:
			}
		}
	}()
	notify()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("containerd closed the event stream")
			}
			return r.fail("watch events", err)
		case <-evs:
			notify()
		}
	}
}
