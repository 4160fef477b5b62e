//go:build linux

package kube

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	runtime2 "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// requestCounter counts the HTTP requests of the clients built on a
// rest.Config it wraps, by kind: "watch" (a GET with watch=true, a
// long-running stream), "list" (a GET of a collection), "get", and the
// other verbs by method.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
	paths  map[string]int
}

func newRequestCounter() *requestCounter {
	return &requestCounter{counts: map[string]int{}, paths: map[string]int{}}
}

// wrap returns a copy of cfg whose requests rc counts.
func (rc *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			rc.count(r)
			return rt.RoundTrip(r)
		})
	}
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (rc *requestCounter) count(r *http.Request) {
	kind := strings.ToLower(r.Method)
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodGet && (q.Get("watch") == "true" || q.Get("watch") == "1"):
		kind = "watch"
	case r.Method == http.MethodGet && isCollection(r.URL.Path):
		kind = "list"
	}
	rc.mu.Lock()
	rc.counts[kind]++
	rc.paths[kind+" "+r.URL.Path]++
	rc.mu.Unlock()
}

// isCollection reports whether an API path names a collection
// (/api/v1/pods, /apis/g/v/namespaces/ns/res) rather than one object.
func isCollection(path string) bool {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return false
	}
	if len(rest) >= 2 && rest[0] == "namespaces" {
		rest = rest[2:]
	}
	return len(rest) == 1
}

func (rc *requestCounter) snapshot() map[string]int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string]int{}
	for k, v := range rc.counts {
		out[k] = v
	}
	return out
}

func (rc *requestCounter) pathList() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []string
	for k, v := range rc.paths {
		out = append(out, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(out)
	return out
}

// startBenchWatcher runs a watcher on cfg until b ends and waits for it
// to sync.
func startBenchWatcher(b *testing.B, cfg *rest.Config) *PolicyWatcher {
	b.Helper()
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	w := NewPolicyWatcher(client, dyn, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	if err := w.WaitForSync(ctx); err != nil {
		b.Fatal(err)
	}
	return w
}

// createPolicies creates n NetworkPolicies in ns, 16 at a time.
func createPolicies(b *testing.B, client kubernetes.Interface, ns, prefix string, n int) {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range work {
				if _, err := client.NetworkingV1().NetworkPolicies(ns).Create(context.Background(),
					netpol(ns, fmt.Sprintf("%s-%d", prefix, i), int32(1000+i%60000)), metav1.CreateOptions{}); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

// BenchmarkNetworkPolicyToInForce measures the time from a NetworkPolicy
// created through a real API server (the Create call made) to the
// watcher's InForce holding it, seen from a Watch callback that calls
// InForce as a node agent does. The baseline, measured on the same
// creates, is a bare client-go informer's add handler: the least any
// informer-based agent can take. Sub-benchmarks with 0 and 1000 other
// NetworkPolicies in force (InForce copies them all on every call).
func BenchmarkNetworkPolicyToInForce(b *testing.B) {
	c := kubetest.Shared(b)
	for _, existing := range []int{0, 1000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			ns := c.Namespace(b, nil)
			createPolicies(b, c.Client, ns, "existing", existing)

			// Baseline: a bare informer on NetworkPolicies.
			bare := map[string]chan time.Time{}
			var bareMu sync.Mutex
			arrival := func(name string) chan time.Time {
				bareMu.Lock()
				defer bareMu.Unlock()
				ch, ok := bare[name]
				if !ok {
					ch = make(chan time.Time, 1)
					bare[name] = ch
				}
				return ch
			}
			f := informers.NewSharedInformerFactory(c.Client, 0)
			inf := f.Networking().V1().NetworkPolicies().Informer()
			if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
				np := obj.(*networkingv1.NetworkPolicy)
				if np.Namespace == ns && strings.HasPrefix(np.Name, "new-") {
					arrival(np.Name) <- time.Now()
				}
			}}); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			f.Start(ctx.Done())
			defer func() { cancel(); f.Shutdown() }() // Shutdown waits for the informers, which stop on cancel
			cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)

			w := startBenchWatcher(b, c.Config)
			seen := map[string]chan time.Time{}
			var seenMu sync.Mutex
			want := func(name string) chan time.Time {
				seenMu.Lock()
				defer seenMu.Unlock()
				ch, ok := seen[name]
				if !ok {
					ch = make(chan time.Time, 1)
					seen[name] = ch
				}
				return ch
			}
			var pendingMu sync.Mutex
			var pending string
			w.Watch(ctx, func() {
				pendingMu.Lock()
				name := pending
				pendingMu.Unlock()
				if name == "" {
					return
				}
				if slices.ContainsFunc(w.InForce().NetworkPolicies, func(np networkingv1.NetworkPolicy) bool {
					return np.Namespace == ns && np.Name == name
				}) {
					select {
					case want(name) <- time.Now():
					default:
					}
				}
			})

			var ours, base []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				name := fmt.Sprintf("new-%d", i)
				pendingMu.Lock()
				pending = name
				pendingMu.Unlock()
				start := time.Now()
				if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(context.Background(), netpol(ns, name, 80), metav1.CreateOptions{}); err != nil {
					b.Fatal(err)
				}
				select {
				case t := <-want(name):
					ours = append(ours, t.Sub(start))
				case <-time.After(30 * time.Second):
					b.Fatalf("%s never in force", name)
				}
				select {
				case t := <-arrival(name):
					base = append(base, t.Sub(start))
				case <-time.After(30 * time.Second):
					b.Fatalf("%s never reached the bare informer", name)
				}
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
			b.ReportMetric(ms(percentile(ours, 0.5)), "p50-ms")
			b.ReportMetric(ms(percentile(ours, 0.99)), "p99-ms")
			b.ReportMetric(ms(percentile(base, 0.5)), "bare-informer-p50-ms")
			b.ReportMetric(ms(percentile(base, 0.99)), "bare-informer-p99-ms")
			b.ReportMetric(float64(percentile(ours, 0.5))/float64(percentile(base, 0.5)), "p50/bare")
		})
	}
}

// BenchmarkWatcherAPIRequests counts the watcher's requests to the API
// server: at start (until synced), and per NetworkPolicy created while it
// runs (b.N creates through another client). Long-running watches are
// counted when they open; client-go reopens each one every 5-10 minutes
// (the server's watch timeout), which a run this short does not show.
func BenchmarkWatcherAPIRequests(b *testing.B) {
	c := kubetest.Shared(b)
	ns := c.Namespace(b, nil)
	createPolicies(b, c.Client, ns, "existing", 100)
	rc := newRequestCounter()
	w := startBenchWatcher(b, rc.wrap(c.Config))
	atSync := rc.snapshot()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("new-%d", i)
		if _, err := c.Client.NetworkingV1().NetworkPolicies(ns).Create(context.Background(), netpol(ns, name, 80), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitForB(b, func() bool {
			return slices.ContainsFunc(w.InForce().NetworkPolicies, func(np networkingv1.NetworkPolicy) bool { return np.Name == name && np.Namespace == ns })
		})
	}
	b.StopTimer()
	after := rc.snapshot()
	total := 0
	for k, v := range atSync {
		total += v
		b.ReportMetric(float64(v), "start-"+k)
	}
	b.ReportMetric(float64(total), "start-requests")
	more := 0
	for k, v := range after {
		more += v - atSync[k]
	}
	b.ReportMetric(float64(more)/float64(b.N), "requests/change")
	b.Logf("requests: %v", rc.pathList())
}

func waitForB(b *testing.B, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// heapAfterGC returns the live heap in bytes after two collections.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkWatcherMemory measures the live heap a synced watcher adds with
// 500 NetworkPolicies and 500 NanoSegments in the cluster (created through
// the real API server, so the objects carry what the server adds). The
// baseline, in the same run, is bare client-go informers (typed for
// NetworkPolicies, dynamic for NanoSegments) holding the same objects.
func BenchmarkWatcherMemory(b *testing.B) {
	c := kubetest.Shared(b)
	ns := c.Namespace(b, nil)
	createPolicies(b, c.Client, ns, "mem", 500)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 500 {
		u := toUnstructuredB(b, segment(ns, fmt.Sprintf("mem-%d", i), "enforce", int32(1000+i)))
		if _, err := dyn.Resource(NanoSegmentResource).Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	var ours, bare float64
	for b.Loop() {
		h0 := heapAfterGC()
		ctx, cancel := context.WithCancel(context.Background())
		f := informers.NewSharedInformerFactory(c.Client, 0)
		npInf := f.Networking().V1().NetworkPolicies().Informer()
		df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
		segInf := df.ForResource(NanoSegmentResource).Informer()
		f.Start(ctx.Done())
		df.Start(ctx.Done())
		cache.WaitForCacheSync(ctx.Done(), npInf.HasSynced, segInf.HasSynced)
		bare = float64(heapAfterGC() - h0)
		runtime.KeepAlive(npInf)
		runtime.KeepAlive(segInf)
		cancel()
		f.Shutdown()
		df.Shutdown()

		h1 := heapAfterGC()
		w := NewPolicyWatcher(c.Client, dyn, nil)
		wctx, wcancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		if err := w.WaitForSync(wctx); err != nil {
			b.Fatal(err)
		}
		if n := w.InForce(); len(n.NetworkPolicies) < 500 || len(n.NanoSegments) < 500 {
			b.Fatalf("in force: %d NetworkPolicies, %d NanoSegments", len(n.NetworkPolicies), len(n.NanoSegments))
		}
		ours = float64(heapAfterGC() - h1)
		runtime.KeepAlive(w)
		wcancel()
		<-done
	}
	b.ReportMetric(ours/(1<<20), "watcher-MiB")
	b.ReportMetric(bare/(1<<20), "bare-informers-MiB")
	b.ReportMetric(ours/bare, "watcher/bare")
}

func toUnstructuredB(b *testing.B, s *v1alpha1.NanoSegment) *unstructured.Unstructured {
	m, err := runtime2.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		b.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}
