//go:build linux

package kube

// BenchmarkClusterScale: the cluster controller at the scale of issue 13
// (10,000 pods in 500 workloads on 100 nodes, 100k edges) against a real
// kube-apiserver (internal/kubetest), with 100 simulated node agents that
// have no dataplane: each is the node agent's real observation path
// without the kernel (nodeagent.MemSink → transport.Sender over HTTPS with
// a pod-bound ServiceAccount token) and reports its pods' endpoints in
// sync in the mode of the NanoSegment that selects them. The controller
// is composed as `nanoseg controller` composes it (cmd/nanoseg/controller.go
// and controller_ingest.go): the cluster-wide inventory, the cluster
// store, the transport's Receiver (TokenReview) feeding its Graph, leader
// election, the promotion executor and the status writer.
//
// The default scale is a tenth of that (1,000 pods, 50 workloads, 10
// nodes, 10k edges); NANOSEG_BENCH_SCALE=full runs the scale (the
// registration of 10,000 pods alone takes a minute or more on 2 cores).
// NANOSEG_BENCH_REST sets the at-rest window (default 30s),
// NANOSEG_BENCH_PROMOTE_LIMIT how long promote-all may take before it
// stops and reports what was carried out (default 30m). Results and how
// to read them: docs/benchmarks.md, "Cluster scale".
//
// Every API request of the controller's clients is counted by a
// RoundTripper wrapped around its rest.Config (the API server's own
// apiserver_request_total cannot tell nanoseg's requests from the
// benchmark's).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/nodeagent"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
	storekube "github.com/nanoseg/nanoseg/store/kube"
	"github.com/nanoseg/nanoseg/transport"
)

// benchScale is the size of the simulated cluster.
type benchScale struct {
	name                                      string
	namespaces, workloads, pods, nodes, edges int
	rest                                      time.Duration
}

func scaleFromEnv(b *testing.B) benchScale {
	s := benchScale{name: "small", namespaces: 5, workloads: 50, pods: 1000, nodes: 10, edges: 10_000, rest: 30 * time.Second}
	switch v := os.Getenv("NANOSEG_BENCH_SCALE"); v {
	case "", "small":
	case "full":
		s = benchScale{name: "full", namespaces: 20, workloads: 500, pods: 10_000, nodes: 100, edges: 100_000, rest: 30 * time.Second}
	default:
		b.Fatalf("NANOSEG_BENCH_SCALE=%q: want small or full", v)
	}
	if v := os.Getenv("NANOSEG_BENCH_REST"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("NANOSEG_BENCH_REST=%q: want a positive duration", v)
		}
		s.rest = d
	}
	return s
}

// Ingest bounds as `nanoseg controller` sets them
// (cmd/nanoseg/controller_ingest.go).
const (
	benchIngestMaxEdges    = 50_000
	benchIngestMaxVerdicts = 10_000
)

// The production interval of the proposal refresher (Config.Defaults):
// the benchmark runs the refresher's rounds itself on this schedule (the
// replica's own loop is parked) so that its timed rounds are not raced.
const benchProposeInterval = 30 * time.Second

// apiCounter counts the requests of one client configuration, by verb
// and resource, and the bytes of their answers.
type apiCounter struct {
	mu    sync.Mutex
	byKey map[string]int
	wait  map[string]time.Duration // until the answer's headers
	total atomic.Int64
	bytes atomic.Int64
}

func newAPICounter() *apiCounter {
	return &apiCounter{byKey: map[string]int{}, wait: map[string]time.Duration{}}
}

type countingRT struct {
	c  *apiCounter
	rt http.RoundTripper
}

func (t countingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	key := requestKey(req)
	t.c.total.Add(1)
	start := time.Now()
	resp, err := t.rt.RoundTrip(req)
	t.c.mu.Lock()
	t.c.byKey[key]++
	if !strings.HasPrefix(key, "WATCH") {
		t.c.wait[key] += time.Since(start)
	}
	t.c.mu.Unlock()
	if resp != nil && resp.Body != nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &t.c.bytes}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// requestKey names a request "VERB resource[/subresource]", with LIST and
// WATCH for collection reads.
func requestKey(req *http.Request) string {
	segs := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		segs = segs[3:]
	}
	if len(segs) >= 2 && segs[0] == "namespaces" && len(segs) > 2 {
		segs = segs[2:]
	}
	res, named := "?", false
	if len(segs) > 0 {
		res = segs[0]
		named = len(segs) > 1
		if len(segs) > 2 {
			res += "/" + segs[2]
		}
	}
	verb := req.Method
	switch {
	case req.Method == http.MethodGet && req.URL.Query().Get("watch") == "true":
		verb = "WATCH"
	case req.Method == http.MethodGet && !named:
		verb = "LIST"
	}
	return verb + " " + res
}

type apiSnapshot struct {
	at    time.Time
	total int64
	bytes int64
	byKey map[string]int
	wait  map[string]time.Duration
}

func (c *apiCounter) snapshot() apiSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.byKey))
	for k, v := range c.byKey {
		m[k] = v
	}
	wt := make(map[string]time.Duration, len(c.wait))
	for k, v := range c.wait {
		wt[k] = v
	}
	return apiSnapshot{at: time.Now(), total: c.total.Load(), bytes: c.bytes.Load(), byKey: m, wait: wt}
}

// since describes the requests between s and now: rate, bytes and the
// busiest keys.
func (c *apiCounter) since(s apiSnapshot) (n int64, rps, bytesPerSec float64, top string) {
	now := c.snapshot()
	d := now.at.Sub(s.at).Seconds()
	n = now.total - s.total
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range now.byKey {
		if dv := v - s.byKey[k]; dv > 0 {
			kvs = append(kvs, kv{k, dv})
		}
	}
	sort.Slice(kvs, func(i, j int) bool { return kvs[i].v > kvs[j].v || kvs[i].v == kvs[j].v && kvs[i].k < kvs[j].k })
	var sb strings.Builder
	for _, e := range kvs {
		fmt.Fprintf(&sb, "%s=%d", e.k, e.v)
		if wt := now.wait[e.k] - s.wait[e.k]; wt > 0 {
			fmt.Fprintf(&sb, "(%s)", (wt / time.Duration(e.v)).Round(100*time.Microsecond))
		}
		sb.WriteString(" ")
	}
	return n, float64(n) / d, float64(now.bytes-s.bytes) / d, strings.TrimSpace(sb.String())
}

// benchPod is one simulated pod.
type benchPod struct {
	ns, name string
	workload int // index into world.workloads
	node     int
	ip       string
}

func (p benchPod) key() string { return p.ns + "_" + p.name }

type benchWorkload struct{ ns, name string }

func (w benchWorkload) key() string { return w.ns + "/" + w.name }

// simAgent is a node agent without a dataplane: the real sink and
// sender, and the endpoint states it reports.
type simAgent struct {
	node   string
	sink   *nodeagent.MemSink
	sender *transport.Sender
	spans  []model.ObservedSpan

	mu  sync.Mutex
	eps map[string]transport.EndpointState
}

func (a *simAgent) endpoints() []transport.EndpointState {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]transport.EndpointState, 0, len(a.eps))
	for _, e := range a.eps {
		out = append(out, e)
	}
	slices.SortFunc(out, func(x, y transport.EndpointState) int { return strings.Compare(x.Key, y.Key) })
	return out
}

// extendSpans records every endpoint observed until now, as a node
// agent's flush does.
func (a *simAgent) extendSpans(now time.Time) {
	for i := range a.spans {
		a.spans[i].End = now
	}
	_ = a.sink.RecordObserved(a.spans)
}

// world is the simulated cluster, built once per benchmark run.
type world struct {
	sc        benchScale
	c         *kubetest.Cluster
	admin     kubernetes.Interface
	adminDyn  dynamic.Interface
	ctrlNS    string
	nss       []string
	workloads []benchWorkload
	pods      []benchPod
	podsOf    [][]int // pod indexes by workload
	nodes     []string
	edges     [][]model.Edge // by node
	setup     time.Duration

	agents []*simAgent
	tokens []string // pod-bound tokens by node

	counter *apiCounter
	ctrl    *Controller
	graph   *transport.Graph
	resync  func()
	reg     *prometheus.Registry
	ingest  string // https://127.0.0.1:port
	caPEM   []byte
	stop    context.CancelFunc
	done    chan struct{}

	heap struct{ start, agents, controller, ingested uint64 }
}

// progress says what the benchmark is doing, as it does it, under -v
// (b.Logf prints only once a sub-benchmark ends).
func progress(format string, args ...any) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "%s scale: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// parallel runs fn(i) for i in [0, n) on workers goroutines and returns
// the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// buildWorld registers the nodes, namespaces and pods (Running, with
// their addresses, as a kubelet would post them) and the node agents'
// pods and tokens, and generates the edges each agent reports.
func buildWorld(b *testing.B, sc benchScale) *world {
	c := kubetest.Shared(b)
	w := &world{sc: sc, c: c}
	// The benchmark's own client is not throttled (setup only; not counted).
	rc := rest.CopyConfig(c.Config)
	rc.QPS, rc.Burst = 5000, 10000
	var err error
	if w.admin, err = kubernetes.NewForConfig(rc); err != nil {
		b.Fatal(err)
	}
	if w.adminDyn, err = dynamic.NewForConfig(rc); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	w.ctrlNS = c.Namespace(b, nil)
	run := strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	for i := range sc.namespaces {
		w.nss = append(w.nss, fmt.Sprintf("scale-%s-%02d", run, i))
	}
	for i := range sc.nodes {
		w.nodes = append(w.nodes, fmt.Sprintf("scale-%s-node-%03d", run, i))
	}
	for i := range sc.workloads {
		w.workloads = append(w.workloads, benchWorkload{ns: w.nss[i%sc.namespaces], name: fmt.Sprintf("w%03d", i)})
	}
	perWorkload := sc.pods / sc.workloads
	w.podsOf = make([][]int, sc.workloads)
	for wi := range w.workloads {
		for r := range perWorkload {
			p := len(w.pods)
			// Replicas spread over the nodes; each node holds pods/nodes pods.
			w.pods = append(w.pods, benchPod{ns: w.workloads[wi].ns, name: fmt.Sprintf("%s-%d", w.workloads[wi].name, r), workload: wi,
				node: p % sc.nodes, ip: fmt.Sprintf("198.18.%d.%d", p/250, p%250+1)})
			w.podsOf[wi] = append(w.podsOf[wi], p)
		}
	}
	if err := parallel(len(w.nss), 8, func(i int) error {
		_, err := w.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.nss[i],
			Labels: map[string]string{"kubernetes.io/metadata.name": w.nss[i]}}}, metav1.CreateOptions{})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	if err := parallel(len(w.nodes), 16, func(i int) error {
		_, err := w.admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: w.nodes[i],
			Labels: map[string]string{corev1.LabelHostname: w.nodes[i], corev1.LabelOSStable: "linux"}}}, metav1.CreateOptions{})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		for _, n := range w.nodes {
			_ = w.admin.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{})
		}
		for _, ns := range w.nss {
			_ = w.admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	now := metav1.NewTime(time.Now())
	if err := parallel(len(w.pods), 32, func(i int) error {
		p := w.pods[i]
		wl := w.workloads[p.workload]
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.ns,
				Labels: map[string]string{"app": wl.name, "tier": fmt.Sprintf("t%d", p.workload%4), "pod-template-hash": "bench"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: wl.name + "-bench",
					UID: "00000000-0000-0000-0000-00000000beef", Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{NodeName: w.nodes[p.node], Containers: []corev1.Container{{Name: "app", Image: "nanoseg.io/bench:none",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		}
		if _, err := w.admin.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create pod %s/%s: %w", p.ns, p.name, err)
		}
		st := map[string]any{"status": map[string]any{
			"phase": corev1.PodRunning, "podIP": p.ip, "podIPs": []map[string]string{{"ip": p.ip}}, "startTime": now,
			"conditions": []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
		}}
		raw, _ := json.Marshal(st)
		if _, err := w.admin.CoreV1().Pods(p.ns).Patch(ctx, p.name, types.MergePatchType, raw, metav1.PatchOptions{}, "status"); err != nil {
			return fmt.Errorf("write status of pod %s/%s: %w", p.ns, p.name, err)
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	// The node agents: a DaemonSet's pods (host network: they are the
	// node, not endpoints) of ServiceAccount nanoseg-node, each with a
	// token bound to its pod, as the DaemonSet's projected volume gives.
	if _, err := w.admin.CoreV1().ServiceAccounts(w.ctrlNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "nanoseg-node"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	w.tokens = make([]string, len(w.nodes))
	if err := parallel(len(w.nodes), 16, func(i int) error {
		pod, err := w.admin.CoreV1().Pods(w.ctrlNS).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "nanoseg-node-" + strconv.Itoa(i), Namespace: w.ctrlNS, Labels: map[string]string{"app": "nanoseg-node"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "nanoseg-node",
					UID: "00000000-0000-0000-0000-0000000000d5", Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{NodeName: w.nodes[i], HostNetwork: true, ServiceAccountName: "nanoseg-node",
				Containers: []corev1.Container{{Name: "node", Image: "nanoseg.io/nanoseg:dev"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		exp := int64(3600)
		tr, err := w.admin.CoreV1().ServiceAccounts(w.ctrlNS).CreateToken(ctx, "nanoseg-node", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{transport.Audience}, ExpirationSeconds: &exp,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}}}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		w.tokens[i] = tr.Status.Token
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	w.setup = time.Since(start)

	// Edges: workload s talks to edges/workloads destinations
	// (destination workload, port), each distinct edge reported by the
	// node of one of s's pods (its egress side).
	perSource := sc.edges / sc.workloads
	w.edges = make([][]model.Edge, len(w.nodes))
	t0 := time.Now()
	peer := func(wi int) model.Peer {
		wl := w.workloads[wi]
		return model.Peer{Namespace: wl.ns, Workload: wl.name, Labels: map[string]string{"app": wl.name, "tier": fmt.Sprintf("t%d", wi%4)}}
	}
	for s := range w.workloads {
		for k := range perSource {
			d := (s + 1 + k%(sc.workloads-1)) % sc.workloads
			port := 8000 + k/(sc.workloads-1)
			flows := uint64(k%7 + 1)
			e := model.Edge{Source: peer(s), Destination: peer(d), Protocol: model.ProtocolTCP, Port: uint16(port),
				Traffic: model.Traffic{FirstSeen: t0.Add(-2 * time.Hour), LastSeen: t0.Add(-time.Minute), Flows: flows,
					BytesOut: 1000 * flows, BytesIn: 5000 * flows, Verdicts: model.VerdictCounts{Observed: flows}}}
			n := w.pods[w.podsOf[s][k%len(w.podsOf[s])]].node
			w.edges[n] = append(w.edges[n], e)
		}
	}
	return w
}

// makeAgents fills each agent's sink with its edges and its pods' spans
// (observed for two hours until now) and endpoint states.
func (w *world) makeAgents(b *testing.B) {
	now := time.Now()
	w.agents = make([]*simAgent, len(w.nodes))
	for i, n := range w.nodes {
		a := &simAgent{node: n, sink: nodeagent.NewMemSink(50_000, 10_000), eps: map[string]transport.EndpointState{}}
		w.agents[i] = a
		if err := a.sink.MergeEdges(w.edges[i]); err != nil {
			b.Fatal(err)
		}
	}
	for _, p := range w.pods {
		a := w.agents[p.node]
		wl := w.workloads[p.workload].key()
		a.spans = append(a.spans, model.ObservedSpan{Endpoint: p.key(), Workload: wl, Start: now.Add(-2 * time.Hour), End: now})
		a.eps[p.key()] = transport.EndpointState{Key: p.key(), Workload: wl, Mode: model.ModeObserve, InSync: true}
	}
	for _, a := range w.agents {
		_ = a.sink.RecordObserved(a.spans)
	}
}

// graphOfBench adapts the transport's Graph to the controller's, as
// cmd/nanoseg/controller_ingest.go's graphOf does.
type graphOfBench struct{ *transport.Graph }

func (g graphOfBench) Reports() []NodeReport {
	var out []NodeReport
	for _, ne := range g.Endpoints() {
		nr := NodeReport{Node: ne.Node, Updated: ne.Updated}
		for _, e := range ne.Endpoints {
			nr.Endpoints = append(nr.Endpoints, EndpointReport{Key: e.Key, Workload: e.Workload, Mode: e.Mode, Revision: e.Revision,
				InSync: e.InSync, Error: e.Error})
		}
		out = append(out, nr)
	}
	return out
}

// startController composes and runs the controller replica as
// `nanoseg controller` does, with every request of its clients counted,
// and waits until it leads and its loops run.
func (w *world) startController(b *testing.B) {
	w.counter = newAPICounter()
	rc := rest.CopyConfig(w.c.Config)
	rc.UserAgent = "nanoseg-controller/bench"
	rc.QPS, rc.Burst = ClientQPS, ClientBurst
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingRT{c: w.counter, rt: rt} })
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	w.reg = prometheus.NewRegistry()
	inv, err := invkube.New(client, invkube.Config{Registerer: w.reg})
	if err != nil {
		b.Fatal(err)
	}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	st, err := storekube.NewStore(client, dyn, storekube.StoreConfig{Namespace: w.ctrlNS, Metadata: md})
	if err != nil {
		b.Fatal(err)
	}
	w.graph = transport.NewGraph(benchIngestMaxEdges, benchIngestMaxVerdicts)
	if err := w.graph.Register(w.reg); err != nil {
		b.Fatal(err)
	}
	var c *Controller
	leading := func() bool { return c != nil && c.Leading() }
	recv, err := transport.NewReceiver(transport.ReceiverConfig{Allowed: []string{"system:serviceaccount:" + w.ctrlNS + ":nanoseg-node"}},
		transport.NewTokenReviewer(client, ""), w.graph, leading, w.reg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	w.ingest = "https://" + ln.Addr().String()
	served := make(chan []byte, 1)
	serve := func(ctx context.Context) error {
		cert, err := transport.EnsureServingCert(ctx, client, w.ctrlNS, transport.CertOptions{IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		if err != nil {
			return err
		}
		select {
		case served <- cert.CAPEM:
		default:
		}
		return recv.Serve(ctx, ln, cert.TLSConfig())
	}
	w.resync = func() {
		for _, ne := range w.graph.Endpoints() {
			w.graph.Forget(ne.Node)
		}
		recv.Reset()
	}
	cfg := Config{Namespace: w.ctrlNS, ID: "bench-leader", Listen: "127.0.0.1:0", Ingest: "127.0.0.1:0", ProposeInterval: time.Hour}
	c, err = New(cfg, client, dyn, Parts{Store: StoreOf(st), Graph: graphOfBench{w.graph}, Inventory: inv, Resync: w.resync, Ingest: serve}, w.reg, nil)
	if err != nil {
		b.Fatal(err)
	}
	w.ctrl = c
	ctx, cancel := context.WithCancel(context.Background())
	w.stop, w.done = cancel, make(chan struct{})
	go func() { defer close(w.done); _ = c.Run(ctx) }()
	b.Cleanup(w.stopController)
	select {
	case w.caPEM = <-served:
	case <-time.After(2 * time.Minute):
		b.Fatal("ingest not serving within 2 min")
	}
	waitUntil(b, 5*time.Minute, "the controller leads, its inventory synced and its first (empty) proposal round done", func() bool {
		return c.running.Load() && w.counter.snapshot().byKey["LIST nanosegmentproposals"] > 0
	})
	time.Sleep(500 * time.Millisecond)
}

func (w *world) stopController() {
	if w.stop == nil {
		return
	}
	w.stop()
	<-w.done
	w.stop = nil
}

func waitUntil(b *testing.B, d time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %s waiting until %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startAgents starts every agent's sender and its span refresher (every
// 5 s, as a node agent's flush), until ctx ends.
func (w *world) startAgents(b *testing.B, ctx context.Context) {
	dir := b.TempDir()
	ca := func(context.Context) ([]byte, error) { return w.caPEM, nil }
	var wg sync.WaitGroup
	for i, a := range w.agents {
		tf := filepath.Join(dir, "token-"+strconv.Itoa(i))
		if err := os.WriteFile(tf, []byte(w.tokens[i]), 0o600); err != nil {
			b.Fatal(err)
		}
		s, err := transport.NewSender(transport.SenderConfig{URL: w.ingest, Node: a.node, TokenFile: tf, CA: ca}, a.sink, a.endpoints, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		a.sender = s
		wg.Add(2)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
		go func() {
			defer wg.Done()
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-t.C:
					a.extendSpans(now)
				}
			}
		}()
	}
	b.Cleanup(wg.Wait)
}

// graphEdges is how many edges the controller's graph holds.
func (w *world) graphEdges() int {
	mfs, _ := w.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "nanoseg_ingest_graph_edges" {
			return int(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return 0
}

func (w *world) metric(name string, labels map[string]string) float64 {
	mfs, _ := w.reg.Gather()
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// followSegments plays the agents' policy watchers: when a NanoSegment
// appears or changes, the agents of its workload's pods report them in
// sync in its mode (no dataplane: programming takes no time) and send at
// once.
func (w *world) followSegments(b *testing.B, ctx context.Context) {
	f := dynamicinformer.NewDynamicSharedInformerFactory(w.adminDyn, 0)
	inf := f.ForResource(NanoSegmentResource).Informer()
	byKey := map[string]int{}
	for i, wl := range w.workloads {
		byKey[wl.key()] = i
	}
	apply := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return
		}
		wi, ok := byKey[u.GetNamespace()+"/"+u.GetName()]
		if !ok {
			return
		}
		mode, _, _ := unstructured.NestedString(u.Object, "spec", "mode")
		if mode == "" {
			mode = string(model.ModeObserve)
		}
		rev, _ := strconv.Atoi(u.GetLabels()[v1alpha1.LabelRevision])
		kick := map[*simAgent]bool{}
		for _, p := range w.podsOf[wi] {
			a := w.agents[w.pods[p].node]
			a.mu.Lock()
			e := a.eps[w.pods[p].key()]
			e.Mode, e.Revision, e.InSync = model.Mode(mode), rev, true
			a.eps[e.Key] = e
			a.mu.Unlock()
			kick[a] = true
		}
		for a := range kick {
			a.sender.Kick()
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: apply, UpdateFunc: func(_, n any) { apply(n) }}); err != nil {
		b.Fatal(err)
	}
	f.Start(ctx.Done())
	b.Cleanup(f.Shutdown)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		b.Fatal("NanoSegment informer did not sync")
	}
}

// bareWrites is the baseline of the API writes: objects created with a
// client throttled as the controller's, each a ConfigMap holding the
// given JSON; it returns how long the creates took, and deletes them.
func (w *world) bareWrites(b *testing.B, docs [][]byte) time.Duration {
	rc := rest.CopyConfig(w.c.Config)
	rc.QPS, rc.Burst = ClientQPS, ClientBurst
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	ns := w.c.Namespace(b, nil)
	ctx := context.Background()
	start := time.Now()
	for i, d := range docs {
		if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bare-%d", i)},
			Data: map[string]string{"object.json": string(d)}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	_ = w.admin.CoreV1().ConfigMaps(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	return took
}

// bareCRWrites is the baseline of the API server's own cost of the
// custom resources: copies of objs (spec, labels) created one after the
// other in a namespace of their own with a client throttled as the
// controller's; it returns how long the creates took, and deletes them.
func (w *world) bareCRWrites(b *testing.B, res schema.GroupVersionResource, objs []unstructured.Unstructured) time.Duration {
	rc := rest.CopyConfig(w.c.Config)
	rc.QPS, rc.Burst = ClientQPS, ClientBurst
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	ns := w.c.Namespace(b, nil)
	ctx := context.Background()
	var copies []*unstructured.Unstructured
	for i := range objs {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": objs[i].GetAPIVersion(), "kind": objs[i].GetKind(), "spec": objs[i].Object["spec"]}}
		u.SetName(objs[i].GetName())
		u.SetLabels(objs[i].GetLabels())
		copies = append(copies, u)
	}
	start := time.Now()
	for _, u := range copies {
		if _, err := dyn.Resource(res).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	took := time.Since(start)
	_ = w.adminDyn.Resource(res).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	return took
}

// proposalDocs returns the proposals as the API server holds them (JSON).
func (w *world) proposalDocs(b *testing.B) [][]byte {
	list, err := w.adminDyn.Resource(ProposalResource).Namespace("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var out [][]byte
	for i := range list.Items {
		raw, err := json.Marshal(list.Items[i].Object)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, raw)
	}
	return out
}

func (w *world) deleteProposals(b *testing.B) {
	ctx := context.Background()
	for _, ns := range w.nss {
		if err := w.adminDyn.Resource(ProposalResource).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	waitUntil(b, time.Minute, "every proposal deleted", func() bool {
		l, err := w.adminDyn.Resource(ProposalResource).Namespace("").List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil && len(l.Items) == 0
	})
}

func BenchmarkClusterScale(b *testing.B) {
	sc := scaleFromEnv(b)
	b.Logf("scale %s: %d pods in %d workloads (%d namespaces) on %d nodes, %d edges", sc.name, sc.pods, sc.workloads, sc.namespaces, sc.nodes, sc.edges)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The world is built once, here (its cleanups belong to this
	// benchmark, not to a sub-benchmark); the sub-benchmarks measure it.
	progress("registering the cluster")
	w := buildWorld(b, sc)
	progress("registered in %s", w.setup.Round(time.Millisecond))
	b.Logf("registered %d pods, %d nodes, %d namespaces in %s (%.0f pods/s, two requests each)", sc.pods, sc.nodes, sc.namespaces,
		w.setup.Round(time.Millisecond), float64(sc.pods)/w.setup.Seconds())
	w.heap.start = heapInUse()
	w.makeAgents(b)
	w.heap.agents = heapInUse()
	progress("starting the controller")
	w.startController(b)
	w.heap.controller = heapInUse()
	progress("controller leading; starting the agents")
	start := time.Now()
	w.startAgents(b, ctx)
	waitUntil(b, 10*time.Minute, "every edge in the controller's graph", func() bool { return w.graphEdges() >= sc.edges })
	first := time.Since(start)
	progress("first ingest: %s", first.Round(time.Millisecond))
	b.Logf("first ingest (every agent starting at once): %s, %.0f edges/s", first.Round(time.Millisecond), float64(sc.edges)/first.Seconds())
	w.followSegments(b, ctx)
	w.heap.ingested = heapInUse()

	b.Run("ingest", func(b *testing.B) {
		// Baseline: decoding and validating the same batches alone.
		var bodies [][]byte
		for i, a := range w.agents {
			raw, err := json.Marshal(transport.Batch{Node: a.node, Epoch: "bench", Seq: 1, Full: true, Edges: w.edges[i], Spans: a.spans, Endpoints: a.endpoints()})
			if err != nil {
				b.Fatal(err)
			}
			bodies = append(bodies, raw)
		}
		start := time.Now()
		for _, raw := range bodies {
			bt, err := transport.DecodeBatch(raw)
			if err == nil {
				err = bt.Validate(20_000)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		decode := time.Since(start)
		var took time.Duration
		throttled0 := w.metric("nanoseg_ingest_throttled_total", nil)
		for i := range b.N {
			start := time.Now()
			// A new leader's resync, every node asked for its whole state
			// at once: each sends its next batch now (its spans extended),
			// gets 409 and sends everything.
			w.resync()
			now := time.Now()
			for _, a := range w.agents {
				a.extendSpans(now)
				a.sender.Kick()
			}
			waitUntil(b, 10*time.Minute, "every edge in the controller's graph", func() bool { return w.graphEdges() >= sc.edges })
			took += time.Since(start)
			progress("resync %d: %s", i, time.Since(start).Round(time.Millisecond))
		}
		edgesPerSec := float64(sc.edges*b.N) / took.Seconds()
		decodePerSec := float64(sc.edges) / decode.Seconds()
		b.ReportMetric(edgesPerSec, "edges/s")
		b.ReportMetric(float64(sc.edges)/first.Seconds(), "first-edges/s")
		b.ReportMetric(decodePerSec, "decode-edges/s")
		b.ReportMetric(decodePerSec/edgesPerSec, "x-decode")
		b.ReportMetric((w.metric("nanoseg_ingest_throttled_total", nil)-throttled0)/float64(b.N), "429/resync")
	})

	b.Run("memory", func(b *testing.B) {
		// Baseline: the same edges in store.Mem, decoded from their JSON
		// as the receiver decodes them (each edge with maps of its own).
		var raws [][]byte
		for _, es := range w.edges {
			raw, err := json.Marshal(es)
			if err != nil {
				b.Fatal(err)
			}
			raws = append(raws, raw)
		}
		h0 := heapInUse()
		mem := store.NewMem()
		for _, raw := range raws {
			var es []model.Edge
			if err := json.Unmarshal(raw, &es); err != nil {
				b.Fatal(err)
			}
			if err := mem.MergeEdges(es); err != nil {
				b.Fatal(err)
			}
		}
		hMem := heapInUse() - h0
		runtime.KeepAlive(mem)
		for range b.N {
			// Nothing to repeat: the heap was measured at each stage.
		}
		mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
		ctrl := w.heap.ingested - w.heap.agents
		graph := w.heap.ingested - w.heap.controller
		b.ReportMetric(mib(ctrl), "MiB-controller")
		b.ReportMetric(mib(w.heap.controller-w.heap.agents), "MiB-before-ingest")
		b.ReportMetric(float64(graph)/float64(sc.edges), "B/edge")
		b.ReportMetric(float64(hMem)/float64(sc.edges), "B/edge-store.Mem")
		b.ReportMetric(float64(graph)/float64(hMem), "x-store.Mem")
		b.ReportMetric(mib(w.heap.agents-w.heap.start), "MiB-all-agents")
		b.ReportMetric(0, "ns/op")
	})

	b.Run("propose", func(b *testing.B) {
		var took, again, infer time.Duration
		var reqs, againReqs int64
		var bytesRead float64
		for range b.N {
			b.StopTimer()
			w.deleteProposals(b)
			b.StartTimer()
			s := w.counter.snapshot()
			start := time.Now()
			if err := w.ctrl.refreshProposals(ctx); err != nil {
				b.Fatal(err)
			}
			took += time.Since(start)
			n, _, bps, top := w.counter.since(s)
			reqs += n
			bytesRead += bps * time.Since(start).Seconds()
			progress("propose all: %s, %d requests", time.Since(start).Round(time.Millisecond), n)
			b.Logf("propose all: %s, %d requests: %s", time.Since(start).Round(time.Millisecond), n, top)
			b.StopTimer()
			// The next round: nothing new but the agents' spans (extended
			// every 5 s, as live agents do).
			s = w.counter.snapshot()
			start = time.Now()
			if err := w.ctrl.refreshProposals(ctx); err != nil {
				b.Fatal(err)
			}
			again += time.Since(start)
			n, _, _, top = w.counter.since(s)
			againReqs += n
			b.Logf("next round: %s, %d requests: %s", time.Since(start).Round(time.Millisecond), n, top)
			start = time.Now()
			if _, err := w.ctrl.service(w.ctrl.parts.Store).Infer(w.ctrl.cfg.Window, false); err != nil {
				b.Fatal(err)
			}
			infer += time.Since(start)
			b.StartTimer()
		}
		b.StopTimer()
		docs := w.proposalDocs(b)
		if len(docs) != sc.workloads {
			b.Fatalf("%d proposals, want %d", len(docs), sc.workloads)
		}
		size := 0
		for _, d := range docs {
			size += len(d)
		}
		bare := w.bareWrites(b, docs)
		list, err := w.adminDyn.Resource(ProposalResource).Namespace("").List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		bareCR := w.bareCRWrites(b, ProposalResource, list.Items)
		per := took / time.Duration(b.N)
		b.ReportMetric(bareCR.Seconds(), "s/bare-cr-creates")
		b.ReportMetric(float64(per)/float64(bareCR), "x-bare-cr-creates")
		b.ReportMetric(per.Seconds(), "s/propose-all")
		b.ReportMetric((again / time.Duration(b.N)).Seconds(), "s/next-round")
		b.ReportMetric(float64(againReqs)/float64(b.N), "requests/next-round")
		b.ReportMetric((infer / time.Duration(b.N)).Seconds(), "s/infer")
		b.ReportMetric(bare.Seconds(), "s/bare-writes")
		b.ReportMetric(float64(per)/float64(bare), "x-bare-writes")
		b.ReportMetric(float64(reqs)/float64(b.N), "requests/op")
		b.ReportMetric(float64(size)/float64(len(docs))/1024, "KiB/proposal")
		b.ReportMetric(bytesRead/float64(b.N)/(1<<20), "MiB-read/op")
	})

	b.Run("rest", func(b *testing.B) {
		w.rest(b, ctx, "")
	})

	b.Run("promote-all", func(b *testing.B) {
		docs := w.proposalDocs(b)
		if len(docs) == 0 {
			b.Skip("needs the propose sub-benchmark")
		}
		limit := 30 * time.Minute
		if v := os.Getenv("NANOSEG_BENCH_PROMOTE_LIMIT"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				b.Fatalf("NANOSEG_BENCH_PROMOTE_LIMIT=%q: want a positive duration", v)
			}
			limit = d
		}
		var took time.Duration
		var reqs int64
		var rps, bps float64
		promoted := 0
		modes := []model.Mode{model.ModeAudit, model.ModeObserve}
		for i := range b.N {
			mode := modes[i%2]
			prefix := fmt.Sprintf("all-%d-", i)
			watch := w.watchPromotions(b, ctx, prefix)
			s := w.counter.snapshot()
			start := time.Now()
			if err := parallel(len(w.workloads), 16, func(j int) error {
				wl := w.workloads[j]
				p := &v1alpha1.NanoSegmentPromotion{ObjectMeta: metav1.ObjectMeta{Name: prefix + wl.name, Namespace: wl.ns},
					Spec: v1alpha1.NanoSegmentPromotionSpec{Workload: wl.name, Mode: mode, Reason: "benchmark: promote everything",
						RequestedBy: &v1alpha1.RequestUser{Username: "bench-operator"}}}
				u, err := toUnstructured(p, v1alpha1.KindPromotion)
				if err != nil {
					return err
				}
				_, err = w.adminDyn.Resource(PromotionResource).Namespace(wl.ns).Create(ctx, u, metav1.CreateOptions{})
				return err
			}); err != nil {
				b.Fatal(err)
			}
			var failed []string
			complete := true
			select {
			case failed = <-watch.done:
			case <-time.After(limit):
				// Stop here: what was carried out gives the rate; the
				// pending rest is deleted so that it loads nothing after.
				complete = false
				for _, ns := range w.nss {
					list, err := w.adminDyn.Resource(PromotionResource).Namespace(ns).List(ctx, metav1.ListOptions{})
					if err != nil {
						b.Fatal(err)
					}
					for _, u := range list.Items {
						if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase == "" && strings.HasPrefix(u.GetName(), prefix) {
							_ = w.adminDyn.Resource(PromotionResource).Namespace(ns).Delete(ctx, u.GetName(), metav1.DeleteOptions{})
						}
					}
				}
			}
			d := time.Since(start)
			k := watch.count()
			took += d
			promoted += k
			n, r, bs, top := w.counter.since(s)
			reqs += n
			rps += r
			bps += bs
			progress("promote all: %d of %d in %s, %d requests", k, len(w.workloads), d.Round(time.Millisecond), n)
			b.Logf("promote all to %s: %d of %d carried out in %s (complete: %v), %d requests (%.1f/s, %.0f KiB/s read): %s", mode, k, len(w.workloads),
				d.Round(time.Millisecond), complete, n, r, bs/1024, top)
			if len(failed) > 0 {
				b.Fatalf("%d promotions failed, the first: %s", len(failed), failed[0])
			}
		}
		b.StopTimer()
		var segs [][]byte
		list, err := w.adminDyn.Resource(NanoSegmentResource).Namespace("").List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for i := range list.Items {
			raw, _ := json.Marshal(list.Items[i].Object)
			segs = append(segs, raw)
		}
		bare := w.bareWrites(b, segs)
		bareCR := w.bareCRWrites(b, NanoSegmentResource, list.Items)
		perPromotion := took / time.Duration(max(promoted, 1))
		perCR := bareCR / time.Duration(max(len(list.Items), 1))
		b.ReportMetric(float64(promoted)/float64(b.N), "promoted/op")
		b.ReportMetric(perPromotion.Seconds(), "s/promotion")
		b.ReportMetric(float64(promoted)/took.Seconds(), "promotions/s")
		b.ReportMetric(rps/float64(b.N), "api-req/s")
		b.ReportMetric(bps/float64(b.N)/1024, "api-KiB/s-read")
		b.ReportMetric(float64(reqs)/float64(max(promoted, 1)), "requests/promotion")
		b.ReportMetric(perCR.Seconds(), "s/bare-cr-create")
		b.ReportMetric(float64(perPromotion)/float64(perCR), "x-bare-cr-create")
		b.ReportMetric(float64(perPromotion)/float64(bare/time.Duration(max(len(segs), 1))), "x-bare-configmap-create")
	})

	b.Run("rest-promoted", func(b *testing.B) {
		w.rest(b, ctx, "promoted")
	})
}

// rest counts the controller's requests over the at-rest window: the
// leader renewing its Lease, its informers, the status writer every 5 s,
// TokenReviews of the agents' batches (spans extended every 5 s), and a
// proposal round every 30 s (run here on the production schedule).
func (w *world) rest(b *testing.B, ctx context.Context, what string) {
	var rps, bps float64
	for range b.N {
		s := w.counter.snapshot()
		end := time.Now().Add(w.sc.rest)
		for {
			if err := w.ctrl.refreshProposals(ctx); err != nil {
				b.Fatal(err)
			}
			next := time.Now().Add(benchProposeInterval)
			if !next.Before(end) {
				time.Sleep(time.Until(end))
				break
			}
			time.Sleep(time.Until(next))
		}
		n, r, bs, top := w.counter.since(s)
		rps += r
		bps += bs
		progress("at rest %s: %d requests", what, n)
		b.Logf("at rest %s over %s: %d requests (%.2f/s, %.0f KiB/s read): %s", what, w.sc.rest, n, r, bs/1024, top)
	}
	b.ReportMetric(rps/float64(b.N), "api-req/s")
	b.ReportMetric(bps/float64(b.N)/1024, "api-KiB/s-read")
	b.ReportMetric(0, "ns/op")
}

// watchPromotions watches the promotions named with prefix: done
// receives, once every workload's has a final phase, the messages of
// those that failed; count says how many have one so far.
type promotionWatch struct {
	done  <-chan []string
	count func() int
}

func (w *world) watchPromotions(b *testing.B, ctx context.Context, prefix string) promotionWatch {
	f := dynamicinformer.NewDynamicSharedInformerFactory(w.adminDyn, 0)
	inf := f.ForResource(PromotionResource).Informer()
	out := make(chan []string, 1)
	ictx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	final := map[string]string{}
	check := func(obj any) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok || !strings.HasPrefix(u.GetName(), prefix) {
			return
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		if phase != string(v1alpha1.PromotionSucceeded) && phase != string(v1alpha1.PromotionFailed) {
			return
		}
		if cond, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions"); len(cond) == 0 {
			return // recorded; the status is completed next
		}
		msg, _, _ := unstructured.NestedString(u.Object, "status", "message")
		mu.Lock()
		defer mu.Unlock()
		if _, seen := final[u.GetName()]; seen {
			return
		}
		if phase == string(v1alpha1.PromotionFailed) {
			final[u.GetName()] = u.GetNamespace() + "/" + u.GetName() + ": " + msg
		} else {
			final[u.GetName()] = ""
		}
		if len(final) == len(w.workloads) {
			var failed []string
			for _, m := range final {
				if m != "" {
					failed = append(failed, m)
				}
			}
			out <- failed
			cancel()
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: check, UpdateFunc: func(_, n any) { check(n) }}); err != nil {
		b.Fatal(err)
	}
	f.Start(ictx.Done())
	if !cache.WaitForCacheSync(ictx.Done(), inf.HasSynced) {
		b.Fatal("promotion informer did not sync")
	}
	b.Cleanup(func() { cancel(); f.Shutdown() })
	return promotionWatch{done: out, count: func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(final)
	}}
}
