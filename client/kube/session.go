package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/inventory"
	invkube "github.com/nanoseg/nanoseg/inventory/kube"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/server"
)

// Session is one CLI run against a cluster: what the API server held when
// Open read it, the controller service over it, and the API's handler.
type Session struct {
	cfg   Config
	log   *slog.Logger
	kc    kubernetes.Interface
	dyn   dynamic.Interface
	defNS string // namespace of bare workload names

	snap    *snapshot
	store   *policyStore
	svc     *controller.Service
	handler http.Handler

	// evidenceErr says why evidence export cannot keep its state (no
	// config directory); nil when it can.
	evidenceErr error
	// nodesErr is the API server's Forbidden when the user may not list
	// Nodes: the inventory has none (nodes.go).
	nodesErr error
}

// Open resolves cfg's kubeconfig and reads the cluster (see the package
// doc). log nil discards.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Session, error) {
	rc, defNS, err := cfg.REST()
	if err != nil {
		return nil, err
	}
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return OpenClients(ctx, cfg, kc, dyn, defNS, log)
}

// OpenClients is Open with the clients given: defNS is the namespace of
// bare workload names.
func OpenClients(ctx context.Context, cfg Config, kc kubernetes.Interface, dyn dynamic.Interface, defNS string, log *slog.Logger) (*Session, error) {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Namespace != "" {
		defNS = cfg.Namespace
	}
	s := &Session{cfg: cfg, log: log, kc: kc, dyn: dyn, defNS: defNS}
	snap, err := readSnapshot(ctx, kc, dyn, cfg.Namespace)
	if err != nil {
		return nil, err
	}
	inv, err := s.inventory(ctx)
	if err != nil {
		return nil, err
	}
	obs, err := newObservations(snap)
	if err != nil {
		return nil, err
	}
	obs.labelPeers(inv.Endpoints())
	eps := map[string][]model.Endpoint{}
	for _, e := range inv.Endpoints() {
		eps[e.Key()] = append(eps[e.Key()], e)
	}
	s.snap, s.store = snap, newPolicyStore(snap)
	if snap.cnpErr != nil {
		log.Warn("ClusterNetworkPolicies not readable with these credentials: policy explain, matrix and proposals leave the Admin and Baseline tiers out (nanoseg-view bound cluster-wide grants them)", "err", snap.cnpErr)
	}
	for _, why := range snap.cnpSkipped {
		log.Warn("invalid ClusterNetworkPolicy left out: the node agents do not apply it (they keep an earlier valid version, if any)", "policy", why)
	}
	warnNodes(log, s.nodesErr, snap.cnps)
	// Without a config directory, every verb but evidence export works.
	evDir, evErr := cfg.evidenceDir()
	s.evidenceErr = evErr
	s.svc = controller.New(controller.Config{EvidenceDir: evDir, EvidenceFiles: s.evidenceFiles}, s.store, obs, inv,
		newClusterNode(snap, eps, newProber(kc, dyn)), log)
	s.handler = s.routes(server.New(s.svc, server.Config{}, log).Handler())
	return s, nil
}

// inventory lists the cluster's pods, namespaces, services and endpoint
// slices once (inventory/kube without a node: every pod a peer), and the
// Nodes when the user may list them (else s.nodesErr). It first
// asks for one of each, so that a user who may not list them gets the API
// server's answer instead of an informer retrying until the timeout.
func (s *Session) inventory(ctx context.Context) (*inventory.Index, error) {
	one := metav1.ListOptions{Limit: 1}
	for _, l := range []struct {
		what string
		list func() error
	}{
		{"pods", func() error { _, err := s.kc.CoreV1().Pods("").List(ctx, one); return err }},
		{"namespaces", func() error { _, err := s.kc.CoreV1().Namespaces().List(ctx, one); return err }},
		{"services", func() error { _, err := s.kc.CoreV1().Services("").List(ctx, one); return err }},
		{"endpointslices", func() error { _, err := s.kc.DiscoveryV1().EndpointSlices("").List(ctx, one); return err }},
	} {
		if err := l.list(); err != nil {
			return nil, fmt.Errorf("list %s (the inventory needs those of every namespace): %w", l.what, err)
		}
	}
	if s.nodesErr = canListNodes(ctx, s.kc); s.nodesErr != nil && !apierrors.IsForbidden(s.nodesErr) {
		return nil, s.nodesErr
	}
	src, err := invkube.New(s.kc, invkube.Config{Logger: s.log, Nodes: s.nodesErr == nil})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.InventoryTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := src.WaitForSync(ctx); err != nil {
		return nil, fmt.Errorf("list the cluster's pods, namespaces, services and endpointslices: %w", err)
	}
	snap, err := src.List(ctx)
	if err != nil {
		return nil, err
	}
	idx := inventory.NewIndex(snap.Endpoints, snap.Namespaces, snap.Externals)
	idx.SetServices(snap.Services)
	idx.SetNodes(snap.Nodes)
	return idx, nil
}

// Proposed returns the workloads ("namespace/workload") that have a
// NanoSegmentProposal, sorted: against a cluster a promotion of revision
// 0 promotes the current proposal, so `promote --all` includes them.
func (s *Session) Proposed() []string {
	out := make([]string, 0, len(s.snap.proposals))
	for _, pr := range s.snap.proposals {
		out = append(out, key(pr.Namespace, pr.Spec.Workload))
	}
	sort.Strings(out)
	return out
}

// Service returns the controller service over the snapshot.
func (s *Session) Service() *controller.Service { return s.svc }

// Handler returns the API handler the CLI's client talks to.
func (s *Session) Handler() http.Handler { return s.handler }

// Client returns an API client whose requests the session's handler
// answers in-process.
func (s *Session) Client() *client.Client {
	return client.NewHTTP("http://nanoseg-cluster", &http.Client{Transport: inProcess{s.handler}, Timeout: s.cfg.Wait + 30*time.Second})
}

// inProcess is an http.RoundTripper that serves every request with h in
// the calling goroutine.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if r.Body == nil {
		r.Body = http.NoBody
	}
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	t.h.ServeHTTP(rec, r)
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", rec.code, http.StatusText(rec.code)), StatusCode: rec.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(&rec.body), ContentLength: int64(rec.body.Len()), Request: req,
	}, nil
}

// recorder is the http.ResponseWriter of inProcess.
type recorder struct {
	header  http.Header
	code    int
	written bool
	body    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.written {
		r.code, r.written = code, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}

// routes answers, over api (the server's handler), what differs against
// a cluster: status (denied counts from the NanoSegments, the namespace
// of -n), propose (the controller's proposals), promote and rollback
// (NanoSegmentPromotions), verify and evidence export (probes through the
// node agents, checked for the right first; the export as the user the
// API server knows), and the writes it cannot do.
func (s *Session) routes(api http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", s.qualify(api))
	mux.HandleFunc("GET /v1/status", answer(func(r *http.Request) (any, int, error) { return s.status() }))
	mux.HandleFunc("POST /v1/propose", answer(func(r *http.Request) (any, int, error) { return s.propose(r) }))
	mux.HandleFunc("POST /v1/promote", answer(func(r *http.Request) (any, int, error) {
		var req controller.PromoteRequest
		if err := decode(r, &req); err != nil {
			return nil, http.StatusBadRequest, err
		}
		return s.promote(r.Context(), req)
	}))
	mux.HandleFunc("POST /v1/rollback", answer(func(r *http.Request) (any, int, error) {
		var req controller.RollbackRequest
		if err := decode(r, &req); err != nil {
			return nil, http.StatusBadRequest, err
		}
		return s.rollback(r.Context(), req)
	}))
	refuse := func(code int, err error) http.HandlerFunc {
		return answer(func(*http.Request) (any, int, error) { return nil, code, err })
	}
	mux.Handle("POST /v1/verify", s.verify(api))
	mux.HandleFunc("POST /v1/evidence/export", s.export)
	mux.HandleFunc("POST /v1/policies", refuse(http.StatusBadRequest, fmt.Errorf("%w; apply NanoSegments and NetworkPolicies with kubectl apply", ErrReadOnly)))
	mux.HandleFunc("DELETE /v1/networkpolicies", refuse(http.StatusBadRequest, fmt.Errorf("%w; delete NetworkPolicies with kubectl delete", ErrReadOnly)))
	mux.HandleFunc("DELETE /v1/clusternetworkpolicies", refuse(http.StatusBadRequest, fmt.Errorf("%w; delete ClusterNetworkPolicies with kubectl delete", ErrReadOnly)))
	return mux
}

// qualify makes a bare workload name in a request's "workload" query
// parameter NAMESPACE/WORKLOAD in the session's namespace (-n, else the
// context's), as kubectl names objects.
func (s *Session) qualify(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if wl := q.Get("workload"); wl != "" && !strings.Contains(wl, "/") {
			r = r.Clone(r.Context())
			q.Set("workload", s.defNS+"/"+wl)
			r.URL.RawQuery = q.Encode()
		}
		h.ServeHTTP(w, r)
	})
}

// answer writes f's value as the API does (indented JSON, [] for an empty
// list) or its error as client.APIError with f's status code.
func answer(f func(*http.Request) (any, int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, code, err := f(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			if code == 0 {
				code = http.StatusInternalServerError
			}
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(client.APIError{Error: strings.TrimPrefix(err.Error(), controller.ErrInvalid.Error()+": ")})
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
}

// decode decodes r's JSON body, at most 1 MiB, into v: a longer body is
// refused naming the limit (not cut at it), and so are unknown fields and
// anything after the JSON object, as the agent's routes refuse them.
func decode(r *http.Request, v any) error {
	const limit = 1 << 20
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return fmt.Errorf("request body: %v", err)
	}
	if len(raw) > limit {
		return fmt.Errorf("request body: larger than 1 MiB, the limit of %s %s: nothing done", r.Method, r.URL.Path)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("request body: data after the JSON object")
	}
	return nil
}

// status is the service's status with, per workload that has a
// NanoSegment, the denied and would-deny counts its status reports (the
// verdict events they come from stay on the nodes), limited to the
// namespace of -n.
func (s *Session) status() (any, int, error) {
	st, err := s.svc.Status()
	if err != nil {
		return nil, 0, err
	}
	out := []controller.WorkloadStatus{}
	for _, ws := range st {
		if s.cfg.Namespace != "" && !strings.HasPrefix(ws.Workload, s.cfg.Namespace+"/") {
			continue
		}
		if seg, ok := s.snap.segments[ws.Workload]; ok {
			ws.WouldDeny, ws.Denied = int(seg.Status.AuditDenied), int(seg.Status.Denied)
		}
		out = append(out, ws)
	}
	// A NanoSegment that selects no pod has no workload in the
	// inventory: a row without endpoints, so that status says so rather
	// than leave it out.
	listed := map[string]bool{}
	for _, ws := range out {
		listed[ws.Workload] = true
	}
	for _, w := range slices.Sorted(maps.Keys(s.snap.segments)) {
		if listed[w] || (s.cfg.Namespace != "" && !strings.HasPrefix(w, s.cfg.Namespace+"/")) {
			continue
		}
		seg := s.snap.segments[w]
		mode := seg.Spec.Mode
		if mode == "" {
			mode = model.ModeObserve
		}
		out = append(out, controller.WorkloadStatus{Workload: w, Mode: mode, EffectiveMode: mode, Revision: int(seg.Status.Revision),
			Endpoints: []controller.EndpointState{}, WouldDeny: int(seg.Status.AuditDenied), Denied: int(seg.Status.Denied)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Workload < out[j].Workload })
	return out, 0, nil
}

// propose answers with the controller's proposals: per proposal the
// revision a promotion would make of it (new) or the latest revision it
// equals, the edges it left out and why, and the coverage. Against a
// cluster the controller proposes, with its own window.
func (s *Session) propose(r *http.Request) (any, int, error) {
	q := r.URL.Query()
	if w := q.Get("window"); w != "" {
		return nil, http.StatusBadRequest, fmt.Errorf("window: against a cluster the controller proposes with its own window (spec.window of each NanoSegmentProposal); propose without --window")
	}
	if q.Get("includeDenied") != "" {
		return nil, http.StatusBadRequest, fmt.Errorf("includeDenied: against a cluster the controller decides what its proposals leave out")
	}
	if b, err := io.ReadAll(io.LimitReader(r.Body, 1<<10)); err != nil || len(bytes.TrimSpace(b)) > 0 {
		return nil, http.StatusBadRequest, fmt.Errorf("request body: this route takes no body (its parameters are query parameters)")
	}
	rep := controller.ProposeReport{Proposals: []controller.ProposeResult{}, Excluded: []string{}, Skipped: []string{}, Failed: []string{}, Silent: []string{},
		Forbidden: []policies.ForbiddenEdge{}}
	prs := append(s.snap.proposals[:0:0], s.snap.proposals...)
	sort.Slice(prs, func(i, j int) bool {
		return key(prs[i].Namespace, prs[i].Spec.Workload) < key(prs[j].Namespace, prs[j].Spec.Workload)
	})
	for _, pr := range prs {
		w := key(pr.Namespace, pr.Spec.Workload)
		rev, err := s.store.LatestRevision(w)
		if err != nil {
			continue
		}
		_, isNew := s.store.pending[w]
		rep.Proposals = append(rep.Proposals, controller.ProposeResult{Workload: w, Revision: rev, New: isNew})
		for _, oe := range pr.Spec.Edges {
			if oe.LeftOut == "" {
				continue
			}
			e, err := oe.Model()
			if err != nil {
				continue
			}
			line := fmt.Sprintf("%s -> %s %s/%d: %s", e.Source, e.Destination, e.Protocol, e.Port, oe.LeftOut)
			switch {
			case oe.LeftOut == controller.LeftOutFailed:
				rep.Failed = append(rep.Failed, line)
			case strings.HasPrefix(oe.LeftOut, controller.LeftOutForbidden):
				if f, ok := s.forbidden(e); ok {
					rep.Forbidden = append(rep.Forbidden, f)
				} else {
					rep.Excluded = append(rep.Excluded, line)
				}
			default:
				rep.Excluded = append(rep.Excluded, line)
			}
		}
	}
	covs, err := s.svc.Coverage(0)
	if err != nil {
		return nil, 0, err
	}
	rep.Coverage = covs
	for _, c := range covs {
		if c.Silent {
			rep.Silent = append(rep.Silent, c.Workload+": "+c.Summary())
		}
	}
	return rep, 0, nil
}

// forbidden returns the Admin Deny that forbids edge e as the cluster's
// policies decide it now (the rule the controller named when it left
// the edge out of its proposal); false when they no longer forbid it or
// a peer is not a workload.
func (s *Session) forbidden(e model.Edge) (policies.ForbiddenEdge, bool) {
	if e.Source.External || e.Destination.External {
		return policies.ForbiddenEdge{}, false
	}
	v, err := s.svc.Explain(e.Source.String(), e.Destination.String(), fmt.Sprintf("%d/%s", e.Port, e.Protocol))
	if err != nil {
		return policies.ForbiddenEdge{}, false
	}
	r, dir := v.AdminDeny()
	if r == nil {
		return policies.ForbiddenEdge{}, false
	}
	return policies.ForbiddenEdge{Edge: fmt.Sprintf("%s -> %s %s/%d", e.Source, e.Destination, e.Protocol, e.Port), Direction: dir, Rule: *r, Flows: int64(e.Flows)}, true
}

// splitWorkload returns the namespace and name of a workload given as
// "namespace/workload", or bare in the session's namespace.
func (s *Session) splitWorkload(w string) (string, string, error) {
	ns, name, ok := strings.Cut(w, "/")
	if !ok {
		ns, name = s.defNS, w
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("workload: %q is not NAMESPACE/WORKLOAD or WORKLOAD (with -n)", w)
	}
	return ns, name, nil
}
