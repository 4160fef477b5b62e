//go:build linux

package transport_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/nodeagent"
	"github.com/nanoseg/nanoseg/transport"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// token requests a token of ServiceAccount ns/sa for audiences, bound to
// pod when given.
func token(t *testing.T, c *kubetest.Cluster, ns, sa string, audiences []string, pod *corev1.Pod) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	_, _ = c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
	exp := int64(3600)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// podOn creates a Node and a pod of ServiceAccount sa on it.
func podOn(t *testing.T, c *kubetest.Cluster, ns, sa, node string) *corev1.Pod {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{}) })
	p, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "agent-" + node},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa, Containers: []corev1.Container{{Name: "node", Image: "nanoseg.io/nanoseg:dev"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTokenReview authenticates against a real API server: the node
// agents' ServiceAccount with a token of audience nanoseg-controller is
// accepted; no token or a bad one, or a token for the API server's
// audience, get 401; another ServiceAccount 403; a pod-bound token may
// only send for its pod's node (403 otherwise).
func TestTokenReview(t *testing.T) {
	c := kubetest.Shared(t)
	ns := c.Namespace(t, nil)
	agent := "system:serviceaccount:" + ns + ":nanoseg-node"
	r := newRig(t, transport.NewTokenReviewer(c.Client, ""), transport.ReceiverConfig{Allowed: []string{agent}}, nil)
	aud := []string{transport.Audience}
	good := token(t, c, ns, "nanoseg-node", aud, nil)
	pod := podOn(t, c, ns, "nanoseg-node", "node-x-"+ns)
	bound := token(t, c, ns, "nanoseg-node", aud, pod)
	batch := func(node, epoch string) []byte {
		return batchJSON(t, transport.Batch{Node: node, Epoch: epoch, Seq: 1, Full: true, Edges: []model.Edge{edge("a", 1, 1)}})
	}
	cases := []struct {
		name, token string
		body        []byte
		code        int
		reason      string
	}{
		{"node agent", good, batch("node-a", "e1"), 200, ""},
		{"no token", "", batch("node-a", "e2"), 401, transport.ReasonNoToken},
		{"garbage", "not-a-token", batch("node-a", "e3"), 401, transport.ReasonBadToken},
		{"the API server's audience", token(t, c, ns, "nanoseg-node", nil, nil), batch("node-a", "e4"), 401, transport.ReasonBadToken},
		{"another ServiceAccount", token(t, c, ns, "someone", aud, nil), batch("node-a", "e5"), 403, transport.ReasonForbidden},
		{"pod-bound, its node", bound, batch(pod.Spec.NodeName, "e6"), 200, ""},
		{"pod-bound, another node", bound, batch("node-y", "e7"), 403, transport.ReasonNodeMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, a := post(t, r, tc.token, tc.body, nil)
			if code != tc.code || a.Reason != tc.reason {
				t.Errorf("%d %+v, want %d %q", code, a, tc.code, tc.reason)
			}
		})
	}
	// The pod's deletion revokes its bound token (once the cached answer
	// expires: no caching here).
	rev := transport.NewTokenReviewer(c.Client, "")
	rev.TTL = 0
	if id, err := rev.Authenticate(ctxFor(t, 10*time.Second), bound); err != nil || id.Node != pod.Spec.NodeName || id.User != agent {
		t.Fatalf("bound token: %+v %v", id, err)
	}
	if err := c.Client.CoreV1().Pods(ns).Delete(ctxFor(t, 10*time.Second), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the deleted pod's token refused", func() bool {
		_, err := rev.Authenticate(context.Background(), bound)
		return err != nil && strings.Contains(err.Error(), "unauthenticated")
	})
}

// TestEnsureServingCert: the Secret and the ConfigMap are made once (two
// replicas racing end with one CA), a name asked for later gets a new
// serving certificate from the same CA, and a sender that reads the CA
// from the ConfigMap reaches the receiver (Receiver.Serve) over HTTPS on
// 127.0.0.1.
func TestEnsureServingCert(t *testing.T) {
	c := kubetest.Shared(t)
	ns := c.Namespace(t, nil)
	ctx := ctxFor(t, time.Minute)
	var wg sync.WaitGroup
	got := make([]*transport.Serving, 2)
	errs := make([]error, 2)
	for i := range got {
		wg.Go(func() { got[i], errs[i] = transport.EnsureServingCert(ctx, c.Client, ns, transport.CertOptions{}) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got[0].CAPEM) != string(got[1].CAPEM) {
		t.Fatal("two racing replicas made two CAs")
	}
	leaf, _ := x509.ParseCertificate(got[0].Certificate.Certificate[0])
	if !strings.Contains(strings.Join(leaf.DNSNames, ","), "nanoseg-controller."+ns+".svc") {
		t.Errorf("DNS names %v", leaf.DNSNames)
	}
	s, err := transport.EnsureServingCert(ctx, c.Client, ns, transport.CertOptions{IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	if err != nil {
		t.Fatal(err)
	}
	if string(s.CAPEM) != string(got[0].CAPEM) {
		t.Error("a new name changed the CA")
	}
	caFrom := transport.CAConfigMap(c.Client, ns, transport.CAConfigMapName)
	pemData, err := caFrom(ctx)
	if err != nil || string(pemData) != string(s.CAPEM) {
		t.Fatalf("ConfigMap CA: %v (same as the Secret's: %v)", err, string(pemData) == string(s.CAPEM))
	}

	// A sender trusting the ConfigMap's CA reaches a receiver serving the
	// certificate.
	g := transport.NewGraph(1000, 1000)
	recv, err := transport.NewReceiver(transport.ReceiverConfig{}, fakeAuth{"tok": agentID}, g, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- recv.Serve(srvCtx, ln, s.TLSConfig()) }()
	defer func() {
		stopSrv()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	srvURL := "https://" + ln.Addr().String()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := nodeagent.NewMemSink(100, 100)
	_ = sink.MergeEdges([]model.Edge{edge("a", 1, 1)})
	snd, err := transport.NewSender(transport.SenderConfig{URL: srvURL, Node: "node-a", TokenFile: tokFile, CA: caFrom, Interval: 50 * time.Millisecond}, sink, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = snd.Run(sctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 10*time.Second, "delivery over TLS", func() bool { return sameEdges(g, sink) == "" })

	// And a client that does not trust it is refused at the handshake.
	_, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}).Post(srvURL+transport.Path, "application/json", nil)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted client: %v, want a certificate error", err)
	}
}
