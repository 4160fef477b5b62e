// Package server is nanoseg's HTTP API over controller.Service: HTTP+JSON
// over a unix socket, and over TCP only with a bearer token, TLS client
// certificates or a browser session, plus the web UI's page on TCP and the
// Prometheus metrics endpoint. docs/api.md lists the routes.
//
// Design: the unix socket is created mode 0660 in a directory only root can
// write, and the caller's identity is its peer credentials (SO_PEERCRED), so
// every recorded promotion names the local user who asked. On TCP every
// /v1 request must carry `Authorization: Bearer <token>` (the operator's or
// the viewer's, compared in constant time), come over TLS with a client
// certificate the configured CA signed, or carry the session cookie a
// browser got by presenting one of those once (auth.go: sessions, CSRF,
// roles, security headers); anything else is answered 401 before any
// handler runs. Change notices stream on GET /v1/events (events.go).
// Sources: unix(7) (SO_PEERCRED), RFC 6750 (bearer tokens), crypto/tls.
package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/store"
)

type ctxKey int

const callerKey ctxKey = 0

// caller returns who made the request, for recorded events.
func caller(r *http.Request) string {
	if id := requestIdentity(r); id != nil && id.who != "" {
		return id.who
	}
	if s, ok := r.Context().Value(callerKey).(string); ok && s != "" {
		return s
	}
	return "unknown"
}

// Config configures a Server.
type Config struct {
	// Socket is the unix socket of the local API (mode 0660).
	Socket string
	// Listen is a TCP address for the API ("" = off); every request on it
	// must authenticate (Token or TLS client certificates).
	Listen string
	// Token is the operator's bearer token on TCP ("" = none): it may do
	// everything.
	Token string
	// ReadToken is the viewer's bearer token on TCP ("" = none): it may
	// read (every GET route) and nothing else.
	ReadToken string
	// UI is the web page, served on the TCP listener only, at / and under
	// /ui/ (the prefix stripped), to anyone: it holds no data (nil: no
	// page). Every /v1 route still needs authentication.
	UI http.Handler
	// SessionTTL is how long a browser session lasts from its login
	// (default DefaultSessionTTL); MaxSessions bounds the sessions kept of
	// each role (default DefaultMaxSessions per role; beyond it a login
	// ends the oldest session of its own role, never one of the other).
	SessionTTL  time.Duration
	MaxSessions int
	// MaxEventStreams bounds the open GET /v1/events streams of each role
	// (default DefaultMaxEventStreams per role); beyond it the route
	// answers 503 to that role.
	MaxEventStreams int
	// EventInterval is the least time between two change events of one
	// stream (default DefaultEventInterval).
	EventInterval time.Duration
	// TLSCert and TLSKey serve TCP over TLS; TLSClientCA, when set, makes
	// the server accept client certificates signed by it.
	TLSCert, TLSKey, TLSClientCA string
	// MetricsAddr serves Prometheus metrics on /metrics ("" = off).
	MetricsAddr string
	// Metrics gathers the metrics served (nil: none registered).
	Metrics prometheus.Gatherer

	// Authenticate, when set, is asked about a bearer token (header, or
	// the body of POST /v1/session) that is neither Token nor ReadToken:
	// the cluster controller has the API server review it. It answers
	// the caller's Principal, or an error (the request is refused with
	// 401 and the error's text).
	Authenticate func(ctx context.Context, token string) (Principal, error)
	// API, when set, answers every route of the table (Routes) but the
	// session's and GET /v1/events, in place of the service's handlers:
	// the cluster controller answers each request over the API server
	// with the caller's credential (Credential). The server still
	// authenticates, checks each route's right, keeps the sessions and
	// streams events; a path outside the table is 404.
	API http.Handler
	// Changes is the feed GET /v1/events follows when the server has no
	// service (nil: the service's, controller.Service.Changes).
	Changes *controller.Changes
}

// Principal is a caller that Config.Authenticate recognised.
type Principal struct {
	// Role is what the caller may do here (operator or viewer).
	Role Role
	// Name is recorded with what the caller changes ("alice",
	// "system:serviceaccount:ns:name").
	Name string
	// Credential is what the API handler acts with on the caller's
	// behalf (the reviewed token itself). A browser session keeps it in
	// memory for the session's life, never on disk and never in a cookie.
	Credential string
}

// Server serves the API of one controller.Service.
type Server struct {
	svc *controller.Service
	cfg Config
	log *slog.Logger

	sessions *sessions
	now      func() time.Time
	events   *eventStreams

	// Bound by Listen (and the unix socket by Serve), served by Serve.
	handler          http.Handler // the API's routes, built once by Listen
	servers          []*http.Server
	listeners        []net.Listener
	bound, unixBound bool
	tcpListener      net.Listener
}

// New returns a server for svc. log nil discards.
func New(svc *controller.Service, cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.EventInterval <= 0 {
		cfg.EventInterval = DefaultEventInterval
	}
	if cfg.MaxEventStreams <= 0 {
		cfg.MaxEventStreams = DefaultMaxEventStreams
	}
	return &Server{svc: svc, cfg: cfg, log: log.With("component", "server"), now: time.Now,
		sessions: &sessions{m: map[[32]byte]*session{}, ttl: cfg.SessionTTL, max: cfg.MaxSessions},
		events:   newEventStreams(cfg.MaxEventStreams)}
}

// SetUI sets the web page the TCP listener serves (Config.UI); call it
// before Listen or Serve.
func (a *Server) SetUI(h http.Handler) { a.cfg.UI = h }

// Route is one route of the API.
type Route struct {
	// Method and Path as registered ("POST", "/v1/promote").
	Method, Path string
	// Right is what the route does that a viewer may not ("promote"); ""
	// for a route every authenticated caller may call (every GET, and
	// the session's own routes).
	Right string
}

// rightAnyone marks a state-changing route every authenticated caller,
// viewers too, may call (their own session).
const rightAnyone = "-"

// rightDefault is the right of a state-changing route registered
// without one: viewers are refused it.
const rightDefault = "change the agent's state"

// routes collects the routes registered on a mux.
type routes struct {
	mux  *http.ServeMux
	list []Route
	// forward, when set, answers every route registered (Config.API).
	forward http.Handler
}

// handle registers h for pattern ("POST /v1/promote"); a route that is
// not GET needs right, which only operators have (a route registered
// with "" gets rightDefault: viewers are refused what no one thought of).
func (rs *routes) handle(pattern, right string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	if right == "" && !safeMethod(method) {
		right = rightDefault
	}
	rt := Route{Method: method, Path: path, Right: right}
	if right == rightAnyone {
		rt.Right = ""
	}
	rs.list = append(rs.list, rt)
	if rt.Right == "" {
		rs.mux.HandleFunc(pattern, rs.target(h))
		return
	}
	target := rs.target(h)
	rs.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if role := roleOf(r); role != RoleOperator {
			writeError(w, http.StatusForbidden, fmt.Sprintf("forbidden: %s %s needs the right to %s, which only the operator has; this caller is a %s",
				method, path, right, role))
			return
		}
		target(w, r)
	})
}

// target is h, or the forwarding handler when the routes' answers come
// from Config.API.
func (rs *routes) target(h http.HandlerFunc) http.HandlerFunc {
	if rs.forward == nil {
		return h
	}
	return rs.forward.ServeHTTP
}

// Routes returns every route of the API with the right it needs
// (docs/api.md).
func (a *Server) Routes() []Route {
	return a.register(http.NewServeMux())
}

// Handler returns the API's HTTP handler (without authentication).
func (a *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	a.register(mux)
	return mux
}

// Rights of the routes viewers may not call.
const (
	rightApply     = "apply policies"
	rightDelete    = "delete NetworkPolicies"
	rightDeleteCNP = "delete ClusterNetworkPolicies"
	rightPropose   = "propose policies"
	rightPromote   = "promote"
	rightRollback  = "roll back"
	rightVerify    = "verify (run probes)"
	rightExport    = "export evidence"
)

// register registers the API's routes on mux and returns them.
func (a *Server) register(mux *http.ServeMux) []Route {
	rs := &routes{mux: mux, forward: a.cfg.API}
	rs.handle("GET /v1/status", "", a.read(func(r *http.Request) (any, error) { return a.svc.Status() }))
	rs.handle("GET /v1/containers", "", api(func(r *http.Request) (any, error) { return a.svc.Containers(), nil }))
	rs.handle("GET /v1/inventory", "", api(func(r *http.Request) (any, error) { return a.svc.Endpoints(), nil }))
	rs.handle("GET /v1/edges", "", a.read(func(r *http.Request) (any, error) {
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		return a.svc.Edges(w)
	}))
	rs.handle("GET /v1/revisions", "", api(func(r *http.Request) (any, error) {
		w := r.URL.Query().Get("workload")
		if n := r.URL.Query().Get("revision"); n != "" {
			num, err := strconv.Atoi(n)
			if err != nil {
				return nil, fmt.Errorf("%w: revision: %q is not a number", controller.ErrInvalid, controller.Clip(n))
			}
			return a.svc.Revision(w, num)
		}
		return a.svc.Revisions(w)
	}))
	rs.handle("POST /v1/policies", rightApply, api(func(r *http.Request) (any, error) {
		raw, err := readBody(r, maxPolicyBody)
		if err != nil {
			return nil, err
		}
		file := r.URL.Query().Get("file")
		if file == "" {
			file = "request"
		}
		if v := r.URL.Query().Get("dryRun"); v != "" {
			check, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%w: dryRun: %q is not true or false", controller.ErrInvalid, controller.Clip(v))
			}
			if check {
				if err := a.svc.CheckApply(file, raw); err != nil {
					return nil, err
				}
				return controller.ApplyResult{Revisions: []store.Revision{}, NetworkPolicies: []controller.NetworkPolicyResult{}, Converged: true}, nil
			}
		}
		return a.svc.Apply(r.Context(), file, raw, caller(r))
	}))
	rs.handle("GET /v1/networkpolicies", "", api(func(r *http.Request) (any, error) {
		q := r.URL.Query()
		if all, err := wantRecords(q); err != nil || all {
			if err != nil {
				return nil, err
			}
			return a.svc.NetworkPolicyRecords(q.Get("namespace"), q.Get("name"))
		}
		return a.svc.NetworkPolicies()
	}))
	rs.handle("DELETE /v1/networkpolicies", rightDelete, api(func(r *http.Request) (any, error) {
		q := r.URL.Query()
		return a.svc.DeleteNetworkPolicy(r.Context(), q.Get("namespace"), q.Get("name"), caller(r))
	}))
	rs.handle("GET /v1/clusternetworkpolicies", "", api(func(r *http.Request) (any, error) {
		q := r.URL.Query()
		if all, err := wantRecords(q); err != nil || all {
			if err != nil {
				return nil, err
			}
			return a.svc.ClusterNetworkPolicyRecords(q.Get("name"))
		}
		return a.svc.ClusterNetworkPolicies()
	}))
	rs.handle("DELETE /v1/clusternetworkpolicies", rightDeleteCNP, api(func(r *http.Request) (any, error) {
		return a.svc.DeleteClusterNetworkPolicy(r.Context(), r.URL.Query().Get("name"), caller(r))
	}))
	rs.handle("GET /v1/ruleids", "", api(func(r *http.Request) (any, error) { return a.svc.RuleIDs() }))
	rs.handle("GET /v1/captures", "", api(func(r *http.Request) (any, error) { return a.svc.Captures() }))
	rs.handle("POST /v1/propose", rightPropose, api(func(r *http.Request) (any, error) {
		if err := noBody(r, "window and includeDenied are query parameters: /v1/propose?window=10m&includeDenied=true"); err != nil {
			return nil, err
		}
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		include := false
		if v := r.URL.Query().Get("includeDenied"); v != "" {
			if include, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("%w: includeDenied: %q is not true or false", controller.ErrInvalid, controller.Clip(v))
			}
		}
		return a.svc.Propose(w, include, caller(r))
	}))
	rs.handle("GET /v1/diff", "", a.read(func(r *http.Request) (any, error) {
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		return a.svc.Diff(r.URL.Query().Get("workload"), w)
	}))
	rs.handle("GET /v1/coverage", "", a.read(func(r *http.Request) (any, error) {
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		return a.svc.Coverage(w)
	}))
	rs.handle("POST /v1/promote", rightPromote, api(func(r *http.Request) (any, error) {
		var req controller.PromoteRequest
		if err := decodeJSON(r, &req); err != nil {
			return nil, err
		}
		return a.svc.Promote(r.Context(), req, caller(r))
	}))
	rs.handle("POST /v1/rollback", rightRollback, api(func(r *http.Request) (any, error) {
		var req controller.RollbackRequest
		if err := decodeJSON(r, &req); err != nil {
			return nil, err
		}
		return a.svc.Rollback(r.Context(), req, caller(r))
	}))
	rs.handle("GET /v1/history", "", api(func(r *http.Request) (any, error) {
		return a.svc.History(r.URL.Query().Get("workload"))
	}))
	rs.handle("GET /v1/verdicts", "", a.read(func(r *http.Request) (any, error) {
		w, err := window(r)
		if err != nil {
			return nil, err
		}
		return a.svc.Verdicts(w)
	}))
	rs.handle("GET /v1/explain", "", api(func(r *http.Request) (any, error) {
		q := r.URL.Query()
		return a.svc.Explain(q.Get("from"), q.Get("to"), q.Get("port"))
	}))
	rs.handle("GET /v1/world", "", api(func(r *http.Request) (any, error) { return a.svc.World() }))
	a.evidenceRoutes(rs)
	a.detailRoutes(rs)
	// The session's routes and the event stream are the server's own.
	rs.forward = nil
	a.sessionRoutes(rs)
	rs.handle("GET /v1/events", "", a.serveEvents)
	list := rs.list
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) { notARoute(w, r, list) })
	return rs.list
}

// notARoute answers a /v1 request no route takes, with the API's error
// body: 405 with Allow when the path is a route's under other methods,
// else 404 (ServeMux's own answers are plain text).
func notARoute(w http.ResponseWriter, r *http.Request, list []Route) {
	var allow []string
	for _, rt := range list {
		if rt.Path == r.URL.Path && !slices.Contains(allow, rt.Method) {
			allow = append(allow, rt.Method)
			if rt.Method == http.MethodGet {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("not found: %s is not a route of the API (docs/api.md lists them)", controller.Clip(r.URL.Path)))
		return
	}
	slices.Sort(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method not allowed: %s %s; this route takes %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}

// read answers f like api, for a route that reads observations: it first
// commits the node's pending observations; when that fails (a full disk),
// it answers from what is stored anyway, says so in the
// client.HeaderWarning header and logs it. A read never fails because the
// store cannot be written.
func (a *Server) read(f func(*http.Request) (any, error)) http.HandlerFunc {
	h := api(f)
	return func(w http.ResponseWriter, r *http.Request) {
		if err := a.svc.CommitObservations(); err != nil {
			a.log.Warn("answering from what is stored", "path", r.URL.Path, "err", err)
			msg := strings.Join(strings.Fields(err.Error()+": answered from what is stored, without the latest observations"), " ")
			w.Header().Set(client.HeaderWarning, msg)
		}
		h(w, r)
	}
}

func window(r *http.Request) (time.Duration, error) {
	s := r.URL.Query().Get("window")
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: window: %q is not a duration such as 5m", controller.ErrInvalid, controller.Clip(s))
	}
	return d, nil
}

func decodeJSON(r *http.Request, v any) error {
	raw, err := readBody(r, maxJSONBody)
	if err != nil {
		return err
	}
	return decodeStrict(raw, v)
}

// The largest request bodies the routes read, in bytes: policies (YAML or
// JSON, POST /v1/policies) and the JSON bodies of the other routes.
const (
	maxPolicyBody = 8 << 20
	maxJSONBody   = 1 << 20
)

// readBody reads r's body, at most limit bytes. A longer body is refused
// whole (controller.ErrInvalid, 400, naming the limit in MiB) rather than
// cut at the limit: a YAML stream cut between two documents still parses,
// and its tail would be dropped without a word.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%w: request body: %v", controller.ErrInvalid, err)
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("%w: request body: larger than %d MiB, the limit of %s %s: nothing done", controller.ErrInvalid, limit>>20, r.Method, r.URL.Path)
	}
	return raw, nil
}

// decodeStrict decodes one JSON value from raw into v: unknown fields and
// anything but white space after the value are refused
// (controller.ErrInvalid).
func decodeStrict(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", controller.ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: request body: data after the JSON object", controller.ErrInvalid)
	}
	return nil
}

// noBody refuses a request that carries a body (anything but white
// space) on a route that takes its parameters from the query only, so
// that a body is not silently ignored; hint says where the parameters go.
// The error wraps controller.ErrInvalid (400).
func noBody(r *http.Request, hint string) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
	if err != nil {
		return fmt.Errorf("%w: request body: %v", controller.ErrInvalid, err)
	}
	if len(bytes.TrimSpace(b)) > 0 {
		return fmt.Errorf("%w: request body: this route takes no body (%s)", controller.ErrInvalid, hint)
	}
	return nil
}

// api answers f's value as JSON, or its error with the status its kind
// calls for (400 invalid, 404 not found, 409 conflict or a promotion the
// coverage gate refused, 500 otherwise).
func api(f func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, controller.ErrInvalid):
				code = http.StatusBadRequest
			case errors.Is(err, store.ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, store.ErrConflict), errors.Is(err, controller.ErrCoverage):
				code = http.StatusConflict
			}
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(client.APIError{Error: strings.TrimPrefix(err.Error(), controller.ErrInvalid.Error()+": ")})
			return
		}
		// A list with nothing in it is [], never null.
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.IsNil() {
			v = []struct{}{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
}

// TCPHandler returns what the TCP listener serves: the API under /v1/
// and the page (Config.UI) at / and under /ui/, with authentication,
// sessions, roles, the CSRF and cross-origin checks and the security
// headers (auth.go).
func (a *Server) TCPHandler() http.Handler { return a.tcpHandler(a.Handler()) }

// TCPAddr returns the address the TCP listener is bound to (after
// Listen; "" when none): with Config.Listen "127.0.0.1:0", the port the
// kernel chose.
func (a *Server) TCPAddr() string {
	if a.tcpListener == nil {
		return ""
	}
	return a.tcpListener.Addr().String()
}

func (a *Server) tcpHandler(api http.Handler) http.Handler {
	ui := a.cfg.UI
	if ui == nil {
		ui = http.NotFoundHandler()
	}
	stripped := http.StripPrefix("/ui", ui)
	return a.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/"):
			api.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/ui/"):
			stripped.ServeHTTP(w, r)
		default:
			ui.ServeHTTP(w, r)
		}
	}))
}

// Listen binds the TCP listeners that can clash with another process (the
// API's TCP address if configured, and the metrics address), so that an
// address in use is refused before the caller touches anything: the agent
// calls it before it programs endpoints. The unix socket is bound by Serve,
// once the caller is ready to answer (its appearance means the agent is
// ready). Serve calls Listen when the caller has not. On error nothing stays
// bound.
func (a *Server) Listen() error {
	if a.bound {
		return nil
	}
	a.handler = a.Handler()
	h := a.handler
	var servers []*http.Server
	var listeners []net.Listener
	var tcp net.Listener
	if a.cfg.Listen != "" {
		tl, srv, err := a.tcpServer(h)
		if err != nil {
			return err
		}
		servers, listeners = append(servers, srv), append(listeners, tl)
		tcp = tl
	}
	if a.cfg.MetricsAddr != "" {
		ml, err := net.Listen("tcp", a.cfg.MetricsAddr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen for metrics on %s: %w", a.cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Metrics, promhttp.HandlerOpts{}))
		servers = append(servers, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, ml)
	}
	a.servers, a.listeners, a.bound, a.tcpListener = servers, listeners, true, tcp
	return nil
}

// listenUnix binds the API's unix socket (mode 0660) and adds it to what
// Serve serves.
func (a *Server) listenUnix() error {
	if err := os.MkdirAll(filepath.Dir(a.cfg.Socket), 0o755); err != nil {
		return fmt.Errorf("create socket directory: %w", err)
	}
	_ = os.Remove(a.cfg.Socket)
	ul, err := net.Listen("unix", a.cfg.Socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Socket, err)
	}
	if err := os.Chmod(a.cfg.Socket, 0o660); err != nil {
		ul.Close()
		return fmt.Errorf("chmod %s: %w", a.cfg.Socket, err)
	}
	a.servers = append([]*http.Server{{
		Handler:           a.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, callerKey, unixCaller(c))
		},
	}}, a.servers...)
	a.listeners = append([]net.Listener{ul}, a.listeners...)
	a.unixBound = true
	return nil
}

// Close closes what Listen bound and removes the socket; Serve does it
// itself when it stops, so Close is for a caller that bound and then did
// not serve. Calling it again does nothing.
func (a *Server) Close() {
	for _, l := range a.listeners {
		_ = l.Close()
	}
	if a.unixBound {
		_ = os.Remove(a.cfg.Socket)
	}
	a.servers, a.listeners, a.bound, a.unixBound, a.tcpListener = nil, nil, false, false, nil
}

// Serve runs the API on the unix socket, on TCP if configured, and the
// metrics endpoint (binding them first unless Listen did), until ctx is
// done; it returns nil then, or the error that stopped a listener.
func (a *Server) Serve(ctx context.Context) error {
	if err := a.Listen(); err != nil {
		return err
	}
	if err := a.listenUnix(); err != nil {
		a.Close()
		return err
	}
	servers, listeners := a.servers, a.listeners
	var err error
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(listeners[i]) }()
	}
	a.log.Info("api listening", "socket", a.cfg.Socket, "tcp", a.cfg.Listen, "metrics", a.cfg.MetricsAddr)
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	a.events.close() // event streams end: Shutdown waits for no idle stream
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	_ = os.Remove(a.cfg.Socket)
	a.unixBound = false // removed: Close must not remove a later agent's socket
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// warnPlaintext logs a warning when the TCP listener at addr serves plain
// HTTP (tls false) on an address that is not loopback (0.0.0.0, [::], a
// host's address): bearer tokens and session cookies then cross the
// network in the clear.
func warnPlaintext(log *slog.Logger, addr net.Addr, tls bool) {
	ta, ok := addr.(*net.TCPAddr)
	if tls || !ok || ta.IP.IsLoopback() {
		return
	}
	log.Warn("the API and web page listen on a non-loopback address over plain HTTP: bearer tokens and session cookies cross the network in the clear; configure TLS (agent.tlsCert, agent.tlsKey) or listen on 127.0.0.1",
		"listen", addr.String())
}

func (a *Server) tcpServer(h http.Handler) (net.Listener, *http.Server, error) {
	l, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", a.cfg.Listen, err)
	}
	srv := &http.Server{Handler: a.tcpHandler(h), ReadHeaderTimeout: 10 * time.Second}
	warnPlaintext(a.log, l.Addr(), a.cfg.TLSCert != "")
	if a.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.cfg.TLSCert, a.cfg.TLSKey)
		if err != nil {
			l.Close()
			return nil, nil, fmt.Errorf("load TLS certificate: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if a.cfg.TLSClientCA != "" {
			pem, err := os.ReadFile(a.cfg.TLSClientCA)
			if err != nil {
				l.Close()
				return nil, nil, fmt.Errorf("read client CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				l.Close()
				return nil, nil, fmt.Errorf("client CA %s: no PEM certificate", a.cfg.TLSClientCA)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
		l = tls.NewListener(l, tc)
	}
	return l, srv, nil
}

// wantRecords reads the records query parameter of the policy routes:
// false when absent, ErrInvalid when not a boolean.
func wantRecords(q url.Values) (bool, error) {
	v := q.Get("records")
	if v == "" {
		return false, nil
	}
	all, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: records: %q is not true or false", controller.ErrInvalid, controller.Clip(v))
	}
	return all, nil
}
