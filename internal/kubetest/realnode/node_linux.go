//go:build linux

package realnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/nanoseg/nanoseg/internal/kubetest"
)

// The node's addresses: the bridge carries the node address (the
// kubelet's node IP, in NodePrefix) and the pods' gateway (in PodPrefix);
// pods get addresses from PodPrefix. Both lie in the test range
// 198.18.0.0/15, away from kubetest's Service range and the lab's
// allocations (which start at the bottom of 198.19.0.0/16).
var (
	NodePrefix = netip.MustParsePrefix("198.19.200.1/24")
	PodPrefix  = netip.MustParsePrefix("198.19.201.1/24")
)

// Directories and names, each followed by the pid of the process that
// owns the node, so that a sweep finds what a dead test process left.
const (
	runRoot    = "/run/nanoseg-realnode"     // sockets, containerd state, CNI config
	varRoot    = "/var/lib/nanoseg-realnode" // containerd root, kubelet root, logs
	bridgeName = "nsrn"                      // + pid: the pod bridge
	nftTable   = "nsrn"                      // + pid: table inet guarding the bridge
	cniBin     = "/usr/lib/cni"              // Debian containernetworking-plugins
	netnsDir   = "/run/netns"                // where containerd's CRI bind-mounts pod netns
)

// Options shape a node. The zero value is a node named after the test
// process with pause and busybox images.
type Options struct {
	// Name is the Node's name; default "realnode-<pid>".
	Name string
	// Bin is the directory of kubelet (and kube-proxy, agnhost);
	// default kubetest.Bin().
	Bin string
	// Agnhost imports the upstream e2e image built from Bin/agnhost.
	Agnhost bool
	// Images are more images to import.
	Images []Image
	// Archives are docker-archive tars to import as they are (the nanoseg
	// image hack/image.sh builds, say).
	Archives []string
	// ServiceCIDRs, when set, routes pods' traffic to these ranges (the
	// cluster's Services) through the node, where kube-proxy translates
	// it; comma-separated, IPv4 ranges only are routed.
	ServiceCIDRs string
	// KubeProxy runs kube-proxy (Bin/kube-proxy) in nftables mode on the
	// node, with the admin kubeconfig; it needs ServiceCIDRs.
	KubeProxy bool
	// StartTimeout bounds Start; default 2 minutes.
	StartTimeout time.Duration
}

// Client returns the admin client the node uses.
func (n *Node) Client() kubernetes.Interface { return n.client }

// Node is a running node: containerd with the CRI plugin, runc, the
// bridge CNI plugin on a bridge of its own, and kubelet registered with
// the cluster's API server as Name.
type Node struct {
	Name string
	// IP is the node address (on the bridge), the kubelet's node IP.
	IP netip.Addr
	// Bridge is the pod bridge's name.
	Bridge string
	// Dir holds the kubelet root, containerd root and the logs
	// (containerd.log, kubelet.log, kube-proxy.log); RunDir the sockets,
	// containerd state and CNI config.
	Dir, RunDir string
	// ContainerdSocket is containerd's gRPC socket (for ctr --address).
	ContainerdSocket string
	// Kubeconfig is the node's own kubeconfig (user system:node:Name).
	Kubeconfig string

	cluster    *kubetest.Cluster
	client     kubernetes.Interface
	pid        int
	netnsAtUp  map[string]bool
	tablesAtUp map[string]bool
	mu         sync.Mutex
	containerd *kubetest.Process
	kubelet    *kubetest.Process
	kubeProxy  *kubetest.Process
	stopped    bool
}

var (
	oneNode sync.Mutex
	running *Node
)

// Start brings a node up and returns once the Node is Ready in the API
// server (3–6 s with cached images). It needs root, containerd, runc, ctr,
// the CNI plugins in /usr/lib/cni, busybox-static, nft, ip and iptables.
// One node per process (its names carry the pid); run it under the kernel
// lock, since the node's addresses and the host chains kubelet makes are
// the host's. Before anything it removes what nodes of dead processes
// left (Sweep). On failure it removes what it made and returns an error
// with the tail of the failing daemon's log.
func Start(ctx context.Context, c *kubetest.Cluster, opts Options) (*Node, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("realnode: needs root (containerd, kubelet, bridge)")
	}
	oneNode.Lock()
	defer oneNode.Unlock()
	if running != nil {
		return nil, fmt.Errorf("realnode: node %s already runs in this process", running.Name)
	}
	if err := Sweep(); err != nil {
		return nil, fmt.Errorf("realnode: sweep leftovers: %w", err)
	}
	pid := os.Getpid()
	if opts.Name == "" {
		opts.Name = "realnode-" + strconv.Itoa(pid)
	}
	if opts.Bin == "" {
		opts.Bin = kubetest.Bin()
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	if err := checkTools(opts); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	n := &Node{
		Name: opts.Name, IP: NodePrefix.Addr(), Bridge: bridgeName + strconv.Itoa(pid),
		Dir: filepath.Join(varRoot, strconv.Itoa(pid)), RunDir: filepath.Join(runRoot, strconv.Itoa(pid)),
		cluster: c, client: c.Client, pid: pid, netnsAtUp: netnsNames(), tablesAtUp: nftTables(),
	}
	n.ContainerdSocket = filepath.Join(n.RunDir, "containerd.sock")
	if err := n.start(ctx, opts); err != nil {
		err = fmt.Errorf("realnode: start %s: %w", n.Name, err)
		if serr := n.stop(); serr != nil {
			err = errors.Join(err, serr)
		}
		return nil, err
	}
	running = n
	return n, nil
}

// checkTools reports every missing program at once, with its Debian
// package.
func checkTools(opts Options) error {
	need := map[string]string{
		"/usr/bin/containerd": "containerd", "/usr/bin/ctr": "containerd",
		"/usr/bin/containerd-shim-runc-v2": "containerd", "/usr/sbin/runc": "runc",
		cniBin + "/bridge": "containernetworking-plugins", cniBin + "/host-local": "containernetworking-plugins",
		cniBin + "/loopback": "containernetworking-plugins", busyboxPath: "busybox-static",
		"/usr/sbin/nft": "nftables", "/usr/sbin/iptables": "iptables", "/usr/sbin/ip": "iproute2",
		filepath.Join(opts.Bin, "kubelet"): "hack/kube-bins.sh kubelet",
	}
	if opts.Agnhost {
		need[filepath.Join(opts.Bin, "agnhost")] = "hack/kube-bins.sh agnhost"
	}
	if opts.KubeProxy {
		need[filepath.Join(opts.Bin, "kube-proxy")] = "hack/kube-bins.sh kube-proxy"
	}
	var errs []error
	for p, from := range need {
		if !fileExists(p) {
			errs = append(errs, fmt.Errorf("missing %s (from %s)", p, from))
		}
	}
	if opts.KubeProxy && opts.ServiceCIDRs == "" {
		errs = append(errs, errors.New("options: KubeProxy needs ServiceCIDRs"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("realnode: %w: %w", kubetest.ErrUnavailable, errors.Join(errs...))
	}
	return nil
}

func (n *Node) path(name string) string    { return filepath.Join(n.Dir, name) }
func (n *Node) runPath(name string) string { return filepath.Join(n.RunDir, name) }

func (n *Node) start(ctx context.Context, opts Options) error {
	for _, d := range []string{n.Dir, n.RunDir, n.path("kubelet"), n.path("pod-logs"), n.runPath("cni")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := sharedNetnsDir(); err != nil {
		return err
	}
	if err := n.writeCerts(); err != nil {
		return err
	}
	if err := n.upBridge(); err != nil {
		return err
	}
	if err := n.writeCNI(opts.ServiceCIDRs); err != nil {
		return err
	}
	imgs, err := recipes(map[bool]string{true: filepath.Join(opts.Bin, "agnhost")}[opts.Agnhost])
	if err != nil {
		return err
	}
	imgs = append(imgs, opts.Images...)
	archives := make([]string, len(imgs))
	for i, img := range imgs {
		if archives[i], err = img.Archive(); err != nil {
			return err
		}
	}
	archives = append(archives, opts.Archives...)
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	for _, a := range archives {
		if err := run("ctr", "--address", n.ContainerdSocket, "-n", "k8s.io", "images", "import", a); err != nil {
			return fmt.Errorf("import image: %w", err)
		}
	}
	if err := n.startKubelet(ctx, opts.Bin); err != nil {
		return err
	}
	if opts.KubeProxy {
		if err := n.startKubeProxy(ctx, opts.Bin, opts.ServiceCIDRs); err != nil {
			return err
		}
	}
	return nil
}

// writeCerts issues the kubelet's client certificate (the Node
// authorizer's identity, CN system:node:NAME in group system:nodes) and
// its serving certificate (for the node address), and writes the node's
// kubeconfig.
func (n *Node) writeCerts() error {
	client, clientKey, err := n.cluster.IssueCert(kubetest.CertRequest{
		CommonName: "system:node:" + n.Name, Organizations: []string{"system:nodes"}, Client: true})
	if err != nil {
		return fmt.Errorf("issue kubelet client certificate: %w", err)
	}
	serving, servingKey, err := n.cluster.IssueCert(kubetest.CertRequest{
		CommonName: n.Name, Server: true, IPs: []net.IP{net.IP(n.IP.AsSlice())}, DNSNames: []string{n.Name}})
	if err != nil {
		return fmt.Errorf("issue kubelet serving certificate: %w", err)
	}
	for name, data := range map[string][]byte{"kubelet-client.crt": client, "kubelet-client.key": clientKey,
		"kubelet.crt": serving, "kubelet.key": servingKey} {
		if err := os.WriteFile(n.path(name), data, 0o600); err != nil {
			return err
		}
	}
	n.Kubeconfig = n.path("kubeconfig")
	cfg := &rest.Config{Host: n.cluster.Server, TLSClientConfig: rest.TLSClientConfig{
		CAFile: n.cluster.CAFile, CertFile: n.path("kubelet-client.crt"), KeyFile: n.path("kubelet-client.key")}}
	return kubetest.WriteKubeconfig(n.Kubeconfig, cfg, n.Name)
}

// upBridge creates the pod bridge with the node address and the pods'
// gateway, and lets the host route for the bridge alone: forwarding on
// for this bridge (the global ip_forward stays as it is) and a table
// that drops whatever would be forwarded between the bridge and any
// other interface.
func (n *Node) upBridge() error {
	steps := [][]string{
		{"ip", "link", "add", n.Bridge, "type", "bridge"},
		{"ip", "addr", "add", NodePrefix.String(), "dev", n.Bridge},
		{"ip", "addr", "add", PodPrefix.String(), "dev", n.Bridge},
		{"ip", "link", "set", n.Bridge, "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+n.Bridge+"/forwarding", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable forwarding on %s: %w", n.Bridge, err)
	}
	// nft: forward only bridge-to-bridge; nothing routed out of or into
	// the pod network by another interface.
	rules := fmt.Sprintf(`table inet %[1]s {
	chain forward {
		type filter hook forward priority -10; policy accept;
		iifname %[2]q oifname != %[2]q drop
		oifname %[2]q iifname != %[2]q drop
	}
}
`, n.nftTable(), n.Bridge)
	if err := runInput(rules, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("add forward guard: %w", err)
	}
	return nil
}

func (n *Node) nftTable() string { return nftTable + strconv.Itoa(n.pid) }

// writeCNI writes the bridge plugin's network: host-local addresses from
// PodPrefix, no IP masquerade, the bridge is not the pods' gateway (it
// already has its addresses), and no route for the pod subnet itself
// (pod-to-pod stays on the bridge).
func (n *Node) writeCNI(serviceCIDRs string) error {
	routes := []string{fmt.Sprintf(`{"dst": %q}`, NodePrefix.Masked().String())}
	for _, r := range strings.Split(serviceCIDRs, ",") {
		if p, err := netip.ParsePrefix(strings.TrimSpace(r)); err == nil && p.Addr().Is4() {
			routes = append(routes, fmt.Sprintf(`{"dst": %q}`, p.Masked().String()))
		} else if r != "" && err != nil {
			return fmt.Errorf("options: ServiceCIDRs: %q: %w", r, err)
		}
	}
	pods := PodPrefix.Masked()
	start, end := pods.Addr().Next().Next().Next(), lastAddr(pods).Prev()
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "nanoseg-realnode",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q, "rangeStart": %q, "rangeEnd": %q, "gateway": %q}]],
      "routes": [%s]
    }
  }]
}
`, n.Bridge, n.runPath("cni/ipam"), pods.String(), start, end, PodPrefix.Addr(), strings.Join(routes, ", "))
	if err := os.MkdirAll(n.runPath("cni/net.d"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(n.runPath("cni/net.d/10-nanoseg-realnode.conflist"), []byte(conf), 0o644)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// startContainerd writes containerd's config (1.6, config version 2: its
// own root, state and sockets; CRI with overlayfs, runc without systemd
// cgroups, restrict_oom_score_adj because this host's bounding set lacks
// CAP_SYS_RESOURCE, CNI from /usr/lib/cni and our conf dir) and waits for
// its socket.
func (n *Node) startContainerd(ctx context.Context) error {
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[8]q
    conf_dir = %[9]q
    max_conf_num = 1
`, n.path("containerd"), n.runPath("state"), n.ContainerdSocket, n.runPath("containerd-ttrpc.sock"),
		n.path("opt"), PauseImage, n.runPath("runc"), cniBin, n.runPath("cni/net.d"))
	if err := os.WriteFile(n.runPath("containerd.toml"), []byte(conf), 0o644); err != nil {
		return err
	}
	p, err := kubetest.StartProcess("containerd", "/usr/bin/containerd", []string{"--config", n.runPath("containerd.toml")},
		[]string{"PATH=/usr/bin:/usr/sbin:/bin:/sbin"}, n.path("containerd.log"))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.containerd = p
	n.mu.Unlock()
	return waitReady(ctx, p, func() bool {
		return run("ctr", "--address", n.ContainerdSocket, "version") == nil
	})
}

// waitReady polls ready every 100 ms until it holds, p exits, or ctx ends.
func waitReady(ctx context.Context, p *kubetest.Process, ready func() bool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if done, err := p.Exited(); done {
			return p.Failed(fmt.Errorf("exited before ready: %v", err))
		}
		if ready() {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.Failed(fmt.Errorf("not ready: %w", ctx.Err()))
		case <-t.C:
		}
	}
}

// startKubelet writes the kubelet's configuration and starts it, then
// waits for the Node to be Ready. Cgroup v1 and cgroupfs (this host has
// no systemd); the API server reaches it on the node address with a
// client certificate of the cluster's CA (any such certificate is allowed
// everything: the port is reachable from this host only).
func (n *Node) startKubelet(ctx context.Context, bin string) error {
	port, err := freePort(n.IP.String())
	if err != nil {
		return err
	}
	healthz, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.path("resolv.conf"), []byte("# no resolver: pods of the test node never query the host's\nnameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[1]s
address: %[2]s
port: %[3]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[4]d
tlsCertFile: %[5]s
tlsPrivateKeyFile: %[6]s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %[7]s
authorization:
  mode: AlwaysAllow
registerNode: true
resolvConf: %[8]s
podLogsDir: %[9]s
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
shutdownGracePeriod: 0s
`, n.ContainerdSocket, n.IP, port, healthz, n.path("kubelet.crt"), n.path("kubelet.key"), n.cluster.CAFile,
		n.path("resolv.conf"), n.path("pod-logs"))
	if err := os.WriteFile(n.path("kubelet.yaml"), []byte(conf), 0o644); err != nil {
		return err
	}
	args := []string{
		"--config=" + n.path("kubelet.yaml"),
		"--kubeconfig=" + n.Kubeconfig,
		"--root-dir=" + n.path("kubelet"),
		"--cert-dir=" + n.path("kubelet-pki"),
		"--node-ip=" + n.IP.String(),
		"--hostname-override=" + n.Name,
		"--v=1",
	}
	p, err := kubetest.StartProcess("kubelet", filepath.Join(bin, "kubelet"), args, []string{"PATH=/usr/bin:/usr/sbin:/bin:/sbin"}, n.path("kubelet.log"))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.kubelet = p
	n.mu.Unlock()
	return waitReady(ctx, p, func() bool {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		node, err := n.client.CoreV1().Nodes().Get(rctx, n.Name, metav1.GetOptions{})
		return err == nil && nodeReady(node)
	})
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startKubeProxy runs kube-proxy in nftables mode for the node: it leaves
// the host's conntrack sysctls alone (--conntrack-*=0) and serves
// NodePorts on the node address only.
func (n *Node) startKubeProxy(ctx context.Context, bin, serviceCIDRs string) error {
	metrics, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	healthz, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	args := []string{
		"--kubeconfig=" + n.cluster.Kubeconfig,
		"--proxy-mode=nftables",
		"--hostname-override=" + n.Name,
		"--cluster-cidr=" + PodPrefix.Masked().String(),
		"--nodeport-addresses=" + n.IP.String() + "/32",
		"--conntrack-max-per-core=0", "--conntrack-min=0",
		"--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(metrics),
		"--healthz-bind-address=127.0.0.1:" + strconv.Itoa(healthz),
		"--v=1",
	}
	p, err := kubetest.StartProcess("kube-proxy", filepath.Join(bin, "kube-proxy"), args, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, n.path("kube-proxy.log"))
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.kubeProxy = p
	n.mu.Unlock()
	_ = serviceCIDRs
	return waitReady(ctx, p, func() bool { return run("nft", "list", "table", "ip", "kube-proxy") == nil })
}

// Stop deletes the node's pods while kubelet still runs (so CNI DEL frees
// their links and addresses), stops kube-proxy, kubelet and containerd,
// and removes everything the node made: containers left over, pod netns,
// mounts, the bridge and its table, the host chains kubelet and
// kube-proxy made, the kubepods cgroups, the Node object and the
// directories. It runs every step even when one fails and returns their
// errors joined. Calling it again does nothing.
func (n *Node) Stop() error {
	oneNode.Lock()
	defer oneNode.Unlock()
	if running == n {
		running = nil
	}
	return n.stop()
}

func (n *Node) stop() error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	n.mu.Unlock()
	var errs []error
	if n.kubelet != nil {
		if done, _ := n.kubelet.Exited(); !done {
			errs = append(errs, n.deletePods())
		}
	}
	errs = append(errs, n.kubeProxy.Stop(10*time.Second), n.kubelet.Stop(15*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := n.client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil && n.kubelet != nil && !isNotFound(err) {
		errs = append(errs, fmt.Errorf("delete node %s: %w", n.Name, err))
	}
	cancel()
	killCgroups()
	for _, pid := range pidsWhere(func(cmd string) bool { return strings.Contains(cmd, n.ContainerdSocket) }) {
		_ = syscallKill(pid)
	}
	errs = append(errs, n.containerd.Stop(10*time.Second))
	errs = append(errs, cleanup(n.pid, n.netnsAtUp, true))
	errs = append(errs, removeNewEmptyTables(n.tablesAtUp))
	return errors.Join(errs...)
}

// deletePods deletes every pod bound to the node and waits (up to 45 s)
// until kubelet has torn them down and confirmed.
func (n *Node) deletePods() error {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	sel := fields.OneTermEqualSelector("spec.nodeName", n.Name).String()
	grace := int64(1)
	for {
		pods, err := n.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return fmt.Errorf("list pods of %s: %w", n.Name, err)
		}
		if len(pods.Items) == 0 {
			return nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				_ = n.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &grace})
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pods of %s still there after 45 s (%d left)", n.Name, len(pods.Items))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sharedNetnsDir makes /run/netns a shared mount point of its own, as
// iproute2 does (ip/ipnetns.c), if it is not a mount point yet: pod
// namespaces containerd mounts there then reach containers that mount
// the directory with HostToContainer propagation (nanoseg's DaemonSet),
// and can be unmounted by path.
func sharedNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == netnsDir {
			return nil
		}
	}
	if err := syscall.Mount(netnsDir, netnsDir, "none", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s: %w", netnsDir, err)
	}
	if err := syscall.Mount("", netnsDir, "none", syscall.MS_SHARED|syscall.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", netnsDir, err)
	}
	return nil
}
