package kube

// The cluster controller's page (`nanoseg controller --ui-listen`): Live
// is server.Config.API, .Authenticate and .Changes for a server that
// answers every request over the API server with the caller's own
// Kubernetes credential. Design:
//
//   - Login: the caller presents a Kubernetes bearer token (its own, or
//     `kubectl create token SA`). Authenticate asks the API server, with
//     that token, who it is (SelfSubjectReview) and what it may do
//     (SelfSubjectAccessReview): a token the API server refuses is
//     refused (401); a caller that may not list NanoSegments in every
//     namespace is refused with what to bind (nanoseg-view); a caller who
//     may create NanoSegmentPromotions in every namespace, or in one of
//     the namespaces that hold a NanoSegment, is an operator, every other
//     a viewer. The controller needs no right for this: every
//     authenticated user may review itself (system:basic-user).
//   - Requests: ServeHTTP answers each one with the Handler of a Session
//     (session.go) opened with the caller's token: clients of the
//     controller's API server address and CA (rest.AnonymousClientConfig)
//     with the caller's bearer token and nothing of the controller's
//     credentials. RBAC therefore decides what the caller reads, and a
//     promotion from the page is a NanoSegmentPromotion the caller
//     created: admission stamps spec.requestedBy with the caller, as
//     from `kubectl nanoseg promote`.
//   - Cache: one Session per credential (keyed by its SHA-256), at most
//     LiveConfig.MaxSessions (the least recently used goes), reopened
//     at a request when the cluster changed since it was read, at most
//     every LiveConfig.MinAge (the request waits for the rest of it):
//     no answer is older than a change the change feed saw before the
//     request, and none older than LiveConfig.MaxAge (1 min) in any
//     case; answers of Authenticate are kept LiveConfig.AuthTTL
//     (refusals RefusalTTL), at most 4 × MaxSessions of them.
//   - Changes: Run watches, with the controller's own credentials and
//     metadata only, NanoSegments, proposals, promotions, NetworkPolicies,
//     ClusterNetworkPolicies (when the API server serves them) and pods;
//     each change moves the cache's generation and is published on
//     Changes with the topics of the routes whose answers it changes.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/server"
)

// LiveConfig configures a Live backend.
type LiveConfig struct {
	// MaxSessions bounds the callers' Sessions kept (default 16); beyond
	// it the least recently used is dropped (and opened again at its
	// caller's next request).
	MaxSessions int
	// MinAge is the least time between two reads of the cluster for one
	// caller (default 2 s): a Session is opened again at a request after
	// a change in the cluster; a request that comes sooner waits.
	MinAge time.Duration
	// MaxAge is the longest a caller's Session answers without being
	// read again (default 1 min), changes or not: a token revoked, or a
	// right taken away, without any change the feed sees applies
	// within it.
	MaxAge time.Duration
	// AuthTTL is how long a token's review (who, which role) is kept
	// (default 30 s; a refusal RefusalTTL, a failure not at all). A role taken away by RBAC
	// applies within it to the page's buttons; the API server applies
	// it at once to every request.
	AuthTTL time.Duration
	// Wait bounds how long a promotion or rollback from the page waits
	// for the controller (Config.Wait; default DefaultWait).
	Wait time.Duration
	// QPS and Burst throttle each caller's API client (default 50, 100:
	// opening a Session lists every kind the page shows).
	QPS   float32
	Burst int
	// KindPoll is how often the change feed asks the API server whether
	// it serves ClusterNetworkPolicies, while it does not (default 30 s):
	// a CRD installed after the start is watched from then on.
	KindPoll time.Duration
}

func (c *LiveConfig) defaults() {
	if c.KindPoll <= 0 {
		c.KindPoll = 30 * time.Second
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 16
	}
	if c.MinAge <= 0 {
		c.MinAge = 2 * time.Second
	}
	if c.MaxAge <= 0 {
		c.MaxAge = time.Minute
	}
	if c.AuthTTL <= 0 {
		c.AuthTTL = 30 * time.Second
	}
	if c.Wait <= 0 {
		c.Wait = DefaultWait
	}
	if c.QPS <= 0 {
		c.QPS, c.Burst = 50, 100
	}
}

// Live answers the page's API over the API server with each caller's
// credential (see the design above). It is safe for concurrent use.
type Live struct {
	cfg     LiveConfig
	base    *rest.Config // the API server's address and CA, no credentials
	own     *rest.Config // the controller's own, for the change feed
	log     *slog.Logger
	changes *controller.Changes
	gen     atomic.Uint64 // moved by every change in the cluster
	open    func(ctx context.Context, token string) (*Session, error)

	mu       sync.Mutex
	sessions map[[32]byte]*liveSession
	reviews  map[[32]byte]review
	segNS    func() []string // namespaces holding a NanoSegment (Run's lister)
}

type liveSession struct {
	mu    sync.Mutex // held while the Session is opened
	s     *Session
	gen   uint64
	built time.Time
	used  time.Time
}

type review struct {
	p       server.Principal
	err     error // a refusal, kept RefusalTTL
	expires time.Time
}

// RefusalTTL is how long Live keeps the API server's refusal of a token
// (unknown, or not allowed to read): a page retrying with it does not
// make a review each time.
const RefusalTTL = 2 * time.Second

// NewLive returns a Live backend for the API server of rc (the
// controller's client configuration: its address and CA serve the
// callers, its credentials only the change feed). log nil discards.
func NewLive(rc *rest.Config, cfg LiveConfig, log *slog.Logger) *Live {
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	base := rest.AnonymousClientConfig(rc)
	base.QPS, base.Burst, base.UserAgent = cfg.QPS, cfg.Burst, "nanoseg-controller-ui"
	l := &Live{cfg: cfg, base: base, own: rest.CopyConfig(rc), log: log.With("component", "ui"), changes: controller.NewChanges(),
		sessions: map[[32]byte]*liveSession{}, reviews: map[[32]byte]review{}, segNS: func() []string { return nil }}
	l.open = l.openSession
	return l
}

// Changes is the feed of GET /v1/events (server.Config.Changes).
func (l *Live) Changes() *controller.Changes { return l.changes }

// userConfig is the client configuration of the caller with token.
func (l *Live) userConfig(token string) *rest.Config {
	c := rest.CopyConfig(l.base)
	c.BearerToken = token
	return c
}

// Authenticate is server.Config.Authenticate: it returns the caller of
// token as the API server knows it (Name: the username, Credential: the
// token) with its role, or why the token is refused.
func (l *Live) Authenticate(ctx context.Context, token string) (server.Principal, error) {
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	l.mu.Lock()
	rv, ok := l.reviews[key]
	l.mu.Unlock()
	if ok && now.Before(rv.expires) {
		return rv.p, rv.err
	}
	p, err := l.review(ctx, token)
	ttl := l.cfg.AuthTTL
	switch {
	case errors.Is(err, errRefused):
		ttl = RefusalTTL
	case err != nil:
		return server.Principal{}, err // the API server failed: not kept
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, r := range l.reviews {
		if !now.Before(r.expires) {
			delete(l.reviews, k)
		}
	}
	if len(l.reviews) < 4*l.cfg.MaxSessions {
		l.reviews[key] = review{p: p, err: err, expires: now.Add(ttl)}
	}
	return p, err
}

// errRefused marks the API server's refusal of a token.
var errRefused = errors.New("refused")

// refusal is an error saying msg that is errRefused.
type refusal struct{ msg string }

func (r refusal) Error() string        { return r.msg }
func (r refusal) Is(target error) bool { return target == errRefused }

// review asks the API server, with token, who it is and what it may do.
func (l *Live) review(ctx context.Context, token string) (server.Principal, error) {
	kc, err := kubernetes.NewForConfig(l.userConfig(token))
	if err != nil {
		return server.Principal{}, err
	}
	who, err := kc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	switch {
	case apierrors.IsUnauthorized(err):
		return server.Principal{}, refusal{"the Kubernetes API server does not accept this token (expired, revoked or not a token of this cluster)"}
	case err != nil:
		return server.Principal{}, fmt.Errorf("ask the Kubernetes API server who this token is: %w", err)
	}
	name := who.Status.UserInfo.Username
	may := func(verb, resource, ns string) (bool, error) {
		r, err := kc.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: NanoSegments.Group, Resource: resource, Namespace: ns},
		}}, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("ask the Kubernetes API server what %s may do: %w", name, err)
		}
		return r.Status.Allowed, nil
	}
	read, err := may("list", NanoSegments.Resource, "")
	if err != nil {
		return server.Principal{}, err
	}
	if !read {
		return server.Principal{}, refusal{fmt.Sprintf("user %s may not list nanosegments in every namespace: the page shows the whole cluster; bind the ClusterRole nanoseg-view (or nanoseg-operate) with a ClusterRoleBinding", name)}
	}
	p := server.Principal{Role: server.RoleViewer, Name: name, Credential: token}
	l.mu.Lock()
	segNS := l.segNS
	l.mu.Unlock()
	nss := append([]string{""}, segNS()...)
	for i, ns := range nss {
		if i > 50 {
			break // a bound: a caller with rights in none of many namespaces logs in as a viewer
		}
		ok, err := may("create", Promotions.Resource, ns)
		if err != nil {
			return server.Principal{}, err
		}
		if ok {
			p.Role = server.RoleOperator
			break
		}
	}
	return p, nil
}

// openSession reads the cluster with token's credentials.
func (l *Live) openSession(ctx context.Context, token string) (*Session, error) {
	rc := l.userConfig(token)
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return OpenClients(ctx, Config{Wait: l.cfg.Wait}, kc, dyn, "default", l.log)
}

// session returns the Session of the caller with token, opening it
// when it has none, or again when the cluster changed since it was read
// (waiting until MinAge passed since the last read).
func (l *Live) session(ctx context.Context, token string) (*Session, error) {
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	l.mu.Lock()
	e := l.sessions[key]
	if e == nil {
		e = &liveSession{}
		l.sessions[key] = e
		for len(l.sessions) > l.cfg.MaxSessions {
			var oldest [32]byte
			var at time.Time
			for k, o := range l.sessions {
				if k != key && (at.IsZero() || o.used.Before(at)) {
					oldest, at = k, o.used
				}
			}
			delete(l.sessions, oldest)
		}
	}
	e.used = now
	l.mu.Unlock()

	// The generation when the request came: a Session read since then
	// (by a request of the same caller that came first) answers it.
	gen := l.gen.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.s != nil && e.gen >= gen && time.Since(e.built) < l.cfg.MaxAge {
		return e.s, nil
	}
	if e.s != nil {
		// Changed since it was read: read again, but not sooner than
		// MinAge after the last read (the request waits for it), so
		// that a busy cluster costs each caller one read per MinAge
		// and no answer is older than the change that came before it.
		if wait := time.Until(e.built.Add(l.cfg.MinAge)); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			case <-time.After(wait):
			}
		}
		gen = l.gen.Load()
	}
	start := time.Now()
	s, err := l.open(ctx, token)
	if err != nil {
		return nil, err
	}
	e.s, e.gen, e.built = s, gen, time.Now()
	l.log.Debug("read the cluster for a caller", "took", time.Since(start).Round(time.Millisecond), "generation", gen)
	return s, nil
}

// errEvidence is the answer of the evidence routes on the cluster page.
var errEvidence = errors.New("evidence export is not served by the cluster controller's page: a bundle is signed with the exporter's own key, and the controller's pods keep none; run `kubectl nanoseg evidence export` (or `nanoseg evidence export --kubeconfig`) on your machine")

// ServeHTTP is server.Config.API: it answers r with the Handler of the
// caller's Session (server.Credential), or with an API error: 401 without
// a credential or when the API server no longer accepts it, the API
// server's refusal (403) or failure (502) when the cluster could not be
// read. The evidence routes answer errEvidence (501; GET
// /v1/evidence/last?optional=1 {"exported": false}).
func (l *Live) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, err error) {
		answer(func(*http.Request) (any, int, error) { return nil, code, err })(w, r)
	}
	switch r.URL.Path {
	case "/v1/evidence/last":
		if r.URL.Query().Get("optional") != "" {
			// As an agent before its first export (docs/api.md): the
			// page says none was exported here.
			answer(func(*http.Request) (any, int, error) { return map[string]any{"exported": false}, 0, nil })(w, r)
			return
		}
		fail(http.StatusNotImplemented, errEvidence)
		return
	case "/v1/evidence/export", "/v1/evidence/key":
		fail(http.StatusNotImplemented, errEvidence)
		return
	}
	cred := server.Credential(r)
	if cred == "" {
		fail(http.StatusUnauthorized, errors.New("no Kubernetes credential: log in with a bearer token the API server accepts"))
		return
	}
	s, err := l.session(r.Context(), cred)
	switch {
	case apierrors.IsUnauthorized(err):
		// Expired or revoked since the login: forget it, and 401 makes
		// the page ask for a token again.
		key := sha256.Sum256([]byte(cred))
		l.mu.Lock()
		delete(l.reviews, key)
		delete(l.sessions, key)
		l.mu.Unlock()
		fail(http.StatusUnauthorized, errors.New("the Kubernetes API server no longer accepts your token (expired or revoked): log in again with a new one"))
		return
	case apierrors.IsForbidden(err):
		fail(http.StatusForbidden, fmt.Errorf("the Kubernetes API server refused to show you the cluster: %w", err))
		return
	case err != nil:
		fail(http.StatusBadGateway, fmt.Errorf("read the cluster: %w", err))
		return
	}
	s.Handler().ServeHTTP(w, r)
}

// watched is one kind the change feed watches and the topics its changes
// publish.
type watched struct {
	gvr    schema.GroupVersionResource
	topics []string
}

// feedKinds are the kinds the page shows; ClusterNetworkPolicies are
// added when the API server serves them.
var feedKinds = []watched{
	{NanoSegments, []string{controller.TopicStatus, controller.TopicVerdicts, controller.TopicPolicies}},
	{Proposals, []string{controller.TopicEdges, controller.TopicRevisions, controller.TopicStatus}},
	{Promotions, []string{controller.TopicHistory, controller.TopicStatus, controller.TopicRevisions}},
	{schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}, []string{controller.TopicPolicies, controller.TopicStatus}},
	{schema.GroupVersionResource{Version: "v1", Resource: "pods"}, []string{controller.TopicInventory, controller.TopicStatus}},
}

// Run feeds Changes until ctx is done: metadata informers, with the
// controller's credentials (watch on each kind of feedKinds), publish
// every change after their first list. It returns once they synced (or
// ctx ended, then with its error); the informers stop with ctx.
func (l *Live) Run(ctx context.Context) error {
	md, err := metadata.NewForConfig(l.own)
	if err != nil {
		return err
	}
	kinds := append([]watched(nil), feedKinds...)
	kc, err := kubernetes.NewForConfig(l.own)
	if err != nil {
		return err
	}
	cnp := watched{ClusterNetworkPolicies, []string{controller.TopicPolicies, controller.TopicStatus}}
	served := l.serves(kc, cnp.gvr)
	if served {
		kinds = append(kinds, cnp)
	}
	f := metadatainformer.NewSharedInformerFactory(md, 0)
	for _, k := range kinds {
		if err := l.feed(f, k); err != nil {
			return err
		}
	}
	segs := f.ForResource(NanoSegments).Lister()
	l.mu.Lock()
	l.segNS = func() []string {
		objs, err := segs.List(labels.Everything())
		if err != nil {
			return nil
		}
		seen := map[string]bool{}
		var out []string
		for _, o := range objs {
			if m, err := meta.Accessor(o); err == nil && !seen[m.GetNamespace()] {
				seen[m.GetNamespace()] = true
				out = append(out, m.GetNamespace())
			}
		}
		return out
	}
	l.mu.Unlock()
	f.Start(ctx.Done())
	for gvr, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("the page's change feed: watch %s: %w", gvr.Resource, context.Cause(ctx))
		}
	}
	l.log.Info("the page's change feed follows the cluster", "kinds", len(kinds))
	if !served {
		go l.watchLate(ctx, kc, md, cnp)
	}
	return nil
}

// feed adds to f the informer of kind k, which publishes k's topics at
// every change after its first list.
func (l *Live) feed(f metadatainformer.SharedInformerFactory, k watched) error {
	publish := func() {
		l.gen.Add(1)
		l.changes.Publish(k.topics...)
	}
	_, err := f.ForResource(k.gvr).Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(_ any, initial bool) {
			if !initial {
				publish()
			}
		},
		UpdateFunc: func(_, _ any) { publish() },
		DeleteFunc: func(any) { publish() },
	})
	return err
}

// serves reports whether the API server serves the resource gvr (its
// discovery lists it); an error answers false.
func (l *Live) serves(kc kubernetes.Interface, gvr schema.GroupVersionResource) bool {
	rl, err := kc.Discovery().ServerResourcesForGroupVersion(gvr.GroupVersion().String())
	if err != nil {
		return false
	}
	return slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == gvr.Resource })
}

// watchLate asks every KindPoll whether the API server serves k (a CRD
// installed after Run started) and, once it does, publishes k's topics
// (the objects it serves are news to the page) and watches it as Run
// watches the others, until ctx is done.
func (l *Live) watchLate(ctx context.Context, kc kubernetes.Interface, md metadata.Interface, k watched) {
	t := time.NewTicker(l.cfg.KindPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !l.serves(kc, k.gvr) {
			continue
		}
		f := metadatainformer.NewSharedInformerFactory(md, 0)
		if err := l.feed(f, k); err != nil {
			l.log.Warn("the page's change feed cannot watch a kind served now", "resource", k.gvr.Resource, "err", err)
			return
		}
		f.Start(ctx.Done())
		f.WaitForCacheSync(ctx.Done())
		l.gen.Add(1)
		l.changes.Publish(k.topics...)
		l.log.Info("the page's change feed follows a kind served now", "resource", k.gvr.Resource)
		return
	}
}
