//go:build linux

package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Version is the Kubernetes version the harness runs; hack/kube-bins.sh
// builds it.
const Version = "v1.37.2"

// Environment variables the harness reads.
const (
	// EnvBin names the directory of the Kubernetes binaries.
	EnvBin = "NANOSEG_KUBE_BIN"
	// EnvRequired, set to 1, makes Shared fail instead of skip when the
	// cluster cannot start for lack of binaries (make test sets it).
	EnvRequired = "NANOSEG_KUBE_REQUIRED"
)

// Default Service ranges: inside the test ranges 198.18.0.0/15 and
// 2001:db8::/32, and away from the lab's allocations, which start at the
// bottom of 198.18.0.0/16, 198.19.0.0/16, 2001:db8:18::/48 and
// 2001:db8:19::/48.
const DefaultServiceCIDRs = "198.19.240.0/20,2001:db8:f::/112"

// advertiseAddress is what the API server would write as the `kubernetes`
// Service's endpoint; --endpoint-reconciler-type=none never writes it, and
// nothing binds it. A loopback address is refused by kube-apiserver, and
// leaving the flag out makes it depend on the host's default route.
const advertiseAddress = "198.18.255.254"

// Options shape a cluster. The zero value is a working cluster without
// CRDs.
type Options struct {
	// CRDDirs are directories whose *.yaml, *.yml and *.json files hold
	// CustomResourceDefinitions (several per file allowed); Start creates
	// them and waits until each is Established.
	CRDDirs []string
	// ServiceCIDRs is --service-cluster-ip-range; default DefaultServiceCIDRs.
	ServiceCIDRs string
	// ServiceAccountAdmission keeps the ServiceAccount admission plugin on.
	// It is off by default: without a controller-manager no namespace gets
	// its `default` ServiceAccount, and the plugin refuses every Pod in a
	// namespace without one (tests create namespaces by many means: the
	// lab registration, manifests, Namespace). Without the plugin, Pods get
	// no token volume, which nothing here needs since no kubelet runs.
	// Turn it on in a cluster that runs a controller-manager and kubelets.
	ServiceAccountAdmission bool
	// APIServerArgs are appended to the kube-apiserver command line
	// (a later flag wins).
	APIServerArgs []string
	// StartTimeout bounds Start (etcd, API server, CRDs); default 90s.
	StartTimeout time.Duration
}

// ErrUnavailable wraps the errors of a machine that lacks the binaries:
// Shared skips on it (unless NANOSEG_KUBE_REQUIRED=1).
var ErrUnavailable = errors.New("kubernetes test binaries unavailable")

// Bin returns the directory of the Kubernetes binaries: $NANOSEG_KUBE_BIN,
// else <user cache dir>/nanoseg/kube/<Version> (~/.cache/... unless
// XDG_CACHE_HOME is set), where hack/kube-bins.sh writes them.
func Bin() string {
	if d := os.Getenv(EnvBin); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = filepath.Join(os.TempDir(), "nanoseg-cache")
	}
	return filepath.Join(cache, "nanoseg", "kube", Version)
}

// binaries returns the paths of kube-apiserver and etcd, or an error
// wrapping ErrUnavailable that says how to get what is missing.
func binaries() (apiserver, etcd string, err error) {
	var errs []error
	apiserver = filepath.Join(Bin(), "kube-apiserver")
	if fi, serr := os.Stat(apiserver); serr != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		errs = append(errs, fmt.Errorf("no kube-apiserver in %s (%s or the default cache): run hack/kube-bins.sh (or make kube-bins) to build it (~15 min once per version)", Bin(), EnvBin))
	}
	etcd, lerr := exec.LookPath("etcd")
	if lerr != nil {
		if _, serr := os.Stat("/usr/bin/etcd"); serr == nil {
			etcd = "/usr/bin/etcd"
		} else {
			errs = append(errs, errors.New("no etcd in PATH: apt-get install etcd-server"))
		}
	}
	if len(errs) > 0 {
		return "", "", fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
	}
	return apiserver, etcd, nil
}

// Cluster is a running etcd and kube-apiserver. Its methods may be called
// from several goroutines.
type Cluster struct {
	// Dir is the cluster's temp dir: certificates, keys, kubeconfig,
	// etcd.log and kube-apiserver.log. Stop removes it.
	Dir string
	// Kubeconfig is the path of the admin kubeconfig (user admin, group
	// system:masters).
	Kubeconfig string
	// Config is the admin's client configuration.
	Config *rest.Config
	// Client is a clientset for Config.
	Client kubernetes.Interface
	// Server is the API server's URL, https://127.0.0.1:PORT.
	Server string
	// CAFile is the path of the CA certificate (PEM) that signs the
	// serving and client certificates; IssueCert signs with it too.
	CAFile string
	// EtcdURL is etcd's client URL, http://127.0.0.1:PORT.
	EtcdURL string

	opts      Options
	ca        *authority
	dataDir   string // etcd data, under /dev/shm
	apiBin    string
	apiArgs   []string
	apiLog    string
	mu        sync.Mutex
	etcd, api *Process
	stopped   bool
	took      timings
}

// timings are how long each step of Start took, for the logs.
type timings struct{ certs, etcd, apiserver, crds time.Duration }

func (t timings) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("certificates %s, etcd %s, kube-apiserver %s, CRDs %s", r(t.certs), r(t.etcd), r(t.apiserver), r(t.crds))
}

// Start starts etcd and kube-apiserver and returns once /readyz says ok
// and the CRDs of opts.CRDDirs are Established. On any failure it stops
// what it started, removes its directories and returns an error that
// carries the tails of the logs. A missing binary is an error wrapping
// ErrUnavailable. The first Start of a process removes what clusters of
// dead test processes left (see the package doc).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	apiBin, etcdBin, err := binaries()
	if err != nil {
		return nil, err
	}
	if opts.ServiceCIDRs == "" {
		opts.ServiceCIDRs = DefaultServiceCIDRs
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	shm := shmDir()
	sweep(shm)

	dir, err := os.MkdirTemp("", dataPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("make cluster dir: %w", err)
	}
	c := &Cluster{Dir: dir, opts: opts, apiBin: apiBin}
	ok := false
	defer func() {
		if !ok {
			_ = c.Stop()
		}
	}()
	if c.dataDir, err = newDataDir(shm, dir); err != nil {
		return nil, err
	}
	step := time.Now()
	lap := func(d *time.Duration) { now := time.Now(); *d = now.Sub(step); step = now }
	if err := c.writeCerts(opts); err != nil {
		return nil, err
	}
	lap(&c.took.certs)
	// A port picked free may be taken before the child binds it: retry a
	// few times with fresh ports when a bind fails.
	for attempt := 1; ; attempt++ {
		err = c.startEtcd(ctx, etcdBin)
		if err == nil || attempt == 3 || !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	lap(&c.took.etcd)
	for attempt := 1; ; attempt++ {
		err = c.startAPIServer(ctx, true)
		if err == nil || attempt == 3 || !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	lap(&c.took.apiserver)
	if err := c.applyCRDs(ctx, opts.CRDDirs); err != nil {
		return nil, err
	}
	lap(&c.took.crds)
	ok = true
	return c, nil
}

var errPortTaken = errors.New("port taken")

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) path(name string) string { return filepath.Join(c.Dir, name) }

// writeCerts makes the CA, the serving certificate, the admin's and the
// kubelet client's certificates and the ServiceAccount key pair in Dir.
func (c *Cluster) writeCerts(opts Options) error {
	ca, err := newAuthority()
	if err != nil {
		return err
	}
	c.ca = ca
	// The first address of each Service range is the `kubernetes`
	// Service's ClusterIP: pods reach the API server by it.
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	for _, cidr := range strings.Split(opts.ServiceCIDRs, ",") {
		_, n, err := net.ParseCIDR(strings.TrimSpace(cidr))
		if err != nil {
			return fmt.Errorf("ServiceCIDRs: %q: %w", cidr, err)
		}
		first := append(net.IP(nil), n.IP...)
		first[len(first)-1]++
		ips = append(ips, first)
	}
	serving, servingKey, err := ca.issue(CertRequest{CommonName: "kube-apiserver", Server: true, IPs: ips,
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}})
	if err != nil {
		return err
	}
	admin, adminKey, err := ca.issue(CertRequest{CommonName: "admin", Organizations: []string{"system:masters"}, Client: true})
	if err != nil {
		return err
	}
	kubeletClient, kubeletClientKey, err := ca.issue(CertRequest{CommonName: "kube-apiserver-kubelet-client", Organizations: []string{"system:masters"}, Client: true})
	if err != nil {
		return err
	}
	saKey, saPub, err := newServiceAccountKey()
	if err != nil {
		return err
	}
	c.CAFile = c.path("ca.crt")
	for name, data := range map[string][]byte{
		"ca.crt": ca.certPEM, "ca.key": ca.keyPEM,
		"apiserver.crt": serving, "apiserver.key": servingKey,
		"admin.crt": admin, "admin.key": adminKey,
		"kubelet-client.crt": kubeletClient, "kubelet-client.key": kubeletClientKey,
		"sa.key": saKey, "sa.pub": saPub,
	} {
		if err := os.WriteFile(c.path(name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// startEtcd starts etcd on two fresh ports and waits for its /health.
func (c *Cluster) startEtcd(ctx context.Context, bin string) error {
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	c.EtcdURL = fmt.Sprintf("http://127.0.0.1:%d", clientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	data := filepath.Join(c.dataDir, "etcd")
	_ = os.RemoveAll(data) // a retry starts afresh
	args := []string{
		"--name=kubetest",
		"--data-dir=" + data,
		"--listen-client-urls=" + c.EtcdURL,
		"--advertise-client-urls=" + c.EtcdURL,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=kubetest=" + peer,
		"--initial-cluster-state=new",
		"--logger=zap",
		"--log-outputs=stderr",
	}
	logPath := c.path("etcd.log")
	p, err := StartProcess("etcd", bin, args, nil, logPath)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.etcd = p
	c.mu.Unlock()
	hc := &http.Client{Timeout: time.Second}
	err = waitFor(ctx, p, func() bool {
		resp, err := hc.Get(c.EtcdURL + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		_ = p.Stop(5 * time.Second)
		return startError("etcd", err, logPath)
	}
	return nil
}

// startError wraps err with the log's tail, and with errPortTaken when the
// log says a bind failed.
func startError(name string, err error, logPath string) error {
	t := Tail(logPath, 40)
	if strings.Contains(t, "address already in use") {
		err = fmt.Errorf("%w (%w)", err, errPortTaken)
	}
	return fmt.Errorf("start %s: %w\n--- last lines of %s ---\n%s", name, err, logPath, t)
}

// waitFor polls ready every 100ms until it is true, p exits, or ctx ends.
func waitFor(ctx context.Context, p *Process, ready func() bool) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if ready() {
			return nil
		}
		if done, err := p.Exited(); done {
			return fmt.Errorf("exited before it was ready: %v", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// startAPIServer starts kube-apiserver and waits for /readyz. first picks
// the port and writes the kubeconfig; a restart (StartAPIServer) reuses
// both.
func (c *Cluster) startAPIServer(ctx context.Context, first bool) error {
	if first {
		port, err := freePort()
		if err != nil {
			return err
		}
		c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
		c.apiArgs = []string{
			"--etcd-servers=" + c.EtcdURL,
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port),
			"--advertise-address=" + advertiseAddress,
			"--endpoint-reconciler-type=none",
			"--tls-cert-file=" + c.path("apiserver.crt"),
			"--tls-private-key-file=" + c.path("apiserver.key"),
			"--client-ca-file=" + c.path("ca.crt"),
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + c.path("sa.pub"),
			"--service-account-signing-key-file=" + c.path("sa.key"),
			"--service-cluster-ip-range=" + c.opts.ServiceCIDRs,
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			"--kubelet-client-certificate=" + c.path("kubelet-client.crt"),
			"--kubelet-client-key=" + c.path("kubelet-client.key"),
			"--kubelet-certificate-authority=" + c.path("ca.crt"),
			"--kubelet-preferred-address-types=InternalIP",
			"--cert-dir=" + c.path("apiserver-certs"),
			"--profiling=false",
			"--v=1",
		}
		if !c.opts.ServiceAccountAdmission {
			c.apiArgs = append(c.apiArgs, "--disable-admission-plugins=ServiceAccount")
		}
		c.apiArgs = append(c.apiArgs, c.opts.APIServerArgs...)
		if err := c.writeKubeconfig(); err != nil {
			return err
		}
		c.apiLog = c.path("kube-apiserver.log")
	}
	p, err := StartProcess("kube-apiserver", c.apiBin, c.apiArgs, nil, c.apiLog)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.api = p
	c.mu.Unlock()
	rc := c.Client.Discovery().RESTClient()
	err = waitFor(ctx, p, func() bool {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		body, err := rc.Get().AbsPath("/readyz").DoRaw(rctx)
		return err == nil && string(body) == "ok"
	})
	if err != nil {
		_ = p.Stop(10 * time.Second)
		return startError("kube-apiserver", err, c.apiLog)
	}
	return nil
}

// writeKubeconfig writes the admin kubeconfig and builds Config and
// Client from it.
func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = c.path("kubeconfig")
	cfg := &rest.Config{
		Host: c.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.ca.certPEM,
			CertFile: c.path("admin.crt"),
			KeyFile:  c.path("admin.key"),
		},
		QPS:   200,
		Burst: 400,
	}
	if err := WriteKubeconfig(c.Kubeconfig, cfg, "admin"); err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	c.Config, c.Client = cfg, cs
	return nil
}

// WriteKubeconfig writes a kubeconfig file for cfg (server, CA, and a
// client certificate or bearer token, inline or by file) with one context
// named name. The file is written 0600.
func WriteKubeconfig(path string, cfg *rest.Config, name string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// StopAPIServer stops kube-apiserver (SIGTERM, up to 30 s) and leaves etcd
// running, for tests of clients that lose the API server. StartAPIServer
// brings it back on the same port with the same certificates and data.
// On the package's shared cluster, call it only from a test that does not
// run in parallel with others (or take a cluster of its own with New).
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	p := c.api
	c.api = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(30 * time.Second)
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same port, and waits for /readyz. The port is the old one: should
// another process have taken it meanwhile, the start fails.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	running, stopped := c.api != nil, c.stopped
	c.mu.Unlock()
	switch {
	case stopped:
		return errors.New("start kube-apiserver: cluster stopped")
	case running:
		return errors.New("start kube-apiserver: already running")
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	return c.startAPIServer(ctx, false)
}

// Stop stops kube-apiserver, then etcd (SIGTERM each, SIGKILL after a
// grace period), and removes the etcd data dir and Dir. It is safe to
// call more than once.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	api, etcd := c.api, c.etcd
	c.api, c.etcd, c.stopped = nil, nil, true
	c.mu.Unlock()
	var errs []error
	if api != nil {
		errs = append(errs, api.Stop(30*time.Second))
	}
	if etcd != nil {
		errs = append(errs, etcd.Stop(10*time.Second))
	}
	if c.dataDir != "" {
		errs = append(errs, os.RemoveAll(c.dataDir))
	}
	errs = append(errs, os.RemoveAll(c.Dir))
	return errors.Join(errs...)
}
