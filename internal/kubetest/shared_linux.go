//go:build linux

package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// shared is the test package's cluster: started by the first Shared,
// stopped by Main after the tests.
var shared struct {
	mu      sync.Mutex
	main    bool // Main was called
	opts    Options
	started bool
	c       *Cluster
	err     error
	took    time.Duration
}

// Main runs the package's tests with one shared cluster: the first test
// that calls Shared starts it (a run that selects no cluster test starts
// none), and Main stops it and removes its files after the last test,
// before exiting with the tests' status. Call it from TestMain:
//
//	func TestMain(m *testing.M) { kubetest.Main(m, kubetest.Options{...}) }
func Main(m *testing.M, opts Options) {
	shared.mu.Lock()
	shared.main, shared.opts = true, opts
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	c := shared.c
	shared.mu.Unlock()
	if c != nil {
		start := time.Now()
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "kubetest: stop the shared cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		} else if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "kubetest: shared cluster stopped in %s\n", time.Since(start).Round(time.Millisecond))
		}
	}
	os.Exit(code)
}

// Shared returns the test package's cluster, starting it on first use. It
// skips t, naming what to install, when the machine lacks the binaries
// (hack/kube-bins.sh, the etcd-server package), unless NANOSEG_KUBE_REQUIRED=1,
// which makes that a failure; any other start failure fails t with the
// logs' tails. The package's TestMain must call Main.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		t.Fatal("kubetest.Shared: the package's TestMain must call kubetest.Main(m, opts)")
	}
	if !shared.started {
		shared.started = true
		start := time.Now()
		shared.c, shared.err = Start(context.Background(), shared.opts)
		shared.took = time.Since(start)
		if shared.err == nil {
			t.Logf("kubetest: cluster %s up in %s (%s; dir %s)", shared.c.Server, shared.took.Round(time.Millisecond), shared.c.took, shared.c.Dir)
		}
	}
	if err := shared.err; err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv(EnvRequired) != "1" {
			t.Skipf("kubetest: no test cluster on this machine (set %s=1 to make this a failure): %v", EnvRequired, err)
		}
		t.Fatalf("kubetest: %v", err)
	}
	return shared.c
}

// New starts a cluster of t's own, stopped at t's cleanup, for tests that
// cannot share the package's (or packages without Main). It skips or fails
// like Shared.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	start := time.Now()
	c, err := Start(context.Background(), opts)
	if err != nil {
		if errors.Is(err, ErrUnavailable) && os.Getenv(EnvRequired) != "1" {
			t.Skipf("kubetest: no test cluster on this machine (set %s=1 to make this a failure): %v", EnvRequired, err)
		}
		t.Fatalf("kubetest: %v", err)
	}
	t.Logf("kubetest: cluster %s up in %s (%s; dir %s)", c.Server, time.Since(start).Round(time.Millisecond), c.took, c.Dir)
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("kubetest: %v", err)
		}
	})
	return c
}

// Namespace creates a namespace with a generated name ("kubetest-xxxxx")
// and labels, and deletes it at t's cleanup. No namespace controller runs,
// so a deleted namespace stays Terminating, with its objects, until the
// cluster stops: tests never reuse a name. With ServiceAccountAdmission on,
// it also creates the namespace's `default` ServiceAccount.
func (c *Cluster) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubetest-", Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create namespace: %v", err)
	}
	name := ns.Name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("kubetest: delete namespace %s: %v", name, err)
		}
	})
	if c.opts.ServiceAccountAdmission {
		if err := c.ensureServiceAccount(ctx, name, "default"); err != nil {
			t.Fatalf("kubetest: %v", err)
		}
	}
	return name
}

// UserConfig returns a client configuration that authenticates as user
// with groups, by a client certificate the cluster's CA signs (Kubernetes
// reads CN as the user and O as the groups). It holds no other rights than
// RBAC (or the Node authorizer, for system:node:NAME in system:nodes)
// grants that identity. It panics only if signing fails, which needs a
// broken random source.
func (c *Cluster) UserConfig(user string, groups ...string) *rest.Config {
	cert, key, err := c.ca.issue(CertRequest{CommonName: user, Organizations: groups, Client: true})
	if err != nil {
		panic(fmt.Sprintf("kubetest: issue client certificate for %s: %v", user, err))
	}
	return &rest.Config{
		Host:            c.Server,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.certPEM, CertData: cert, KeyData: key},
		QPS:             c.Config.QPS,
		Burst:           c.Config.Burst,
	}
}

// ServiceAccountConfig returns a client configuration that authenticates
// as ServiceAccount ns/name by a token from the TokenRequest API (valid
// one hour, audience the API server's), creating the ServiceAccount when
// it does not exist.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, ns, name string) (*rest.Config, error) {
	if err := c.ensureServiceAccount(ctx, ns, name); err != nil {
		return nil, err
	}
	expiry := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("request token for service account %s/%s: %w", ns, name, err)
	}
	return &rest.Config{
		Host:            c.Server,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.certPEM},
		BearerToken:     tr.Status.Token,
		QPS:             c.Config.QPS,
		Burst:           c.Config.Burst,
	}, nil
}

func (c *Cluster) ensureServiceAccount(ctx context.Context, ns, name string) error {
	_, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: name},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", ns, name, err)
	}
	return nil
}

// IssueCert signs a certificate for r with the cluster's CA (CAFile), for
// components a test runs beside the API server: a kubelet's client
// (CN system:node:NAME, O system:nodes) and serving certificates, say.
// It returns the certificate and its fresh P-256 key, PEM-encoded.
func (c *Cluster) IssueCert(r CertRequest) (certPEM, keyPEM []byte, err error) {
	return c.ca.issue(r)
}
