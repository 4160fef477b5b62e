package transport

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NodeAgentUser is the user name of the node agents' ServiceAccount as
// manifests/node-agent deploys it; the receiver's default Allowed.
const NodeAgentUser = "system:serviceaccount:nanoseg-system:nanoseg-node"

// ReceiverConfig bounds and configures a Receiver; zero fields take the
// defaults given.
type ReceiverConfig struct {
	// Allowed are the user names accepted (default NodeAgentUser); any
	// other authenticated user gets 403.
	Allowed []string
	// MaxBodyBytes bounds a request body as sent (default 16 MiB), and
	// MaxDecodedBytes after gzip (default 64 MiB); beyond, 413.
	MaxBodyBytes    int64
	MaxDecodedBytes int64
	// MaxItems bounds each list of a batch (default 20000); beyond, 400.
	MaxItems int
	// MaxInFlight is how many batches are read, decoded and applied at
	// once (default 4): each holds its body in memory. A request that
	// finds none free within QueueWait (default 200 ms) gets 429 with
	// Retry-After.
	MaxInFlight int
	QueueWait   time.Duration
	// RetryAfter is what 429 and 503 answers ask the sender to wait
	// (default 1 s).
	RetryAfter time.Duration
	// MaxNodes bounds the nodes the receiver keeps sequence numbers for
	// (default 10000); a new node beyond gets 429.
	MaxNodes int
}

// Defaults fills the zero fields.
func (c *ReceiverConfig) Defaults() {
	if len(c.Allowed) == 0 {
		c.Allowed = []string{NodeAgentUser}
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 16 << 20
	}
	if c.MaxDecodedBytes == 0 {
		c.MaxDecodedBytes = 64 << 20
	}
	if c.MaxItems == 0 {
		c.MaxItems = 20_000
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 4
	}
	if c.QueueWait == 0 {
		c.QueueWait = 200 * time.Millisecond
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.MaxNodes == 0 {
		c.MaxNodes = 10_000
	}
}

// Receiver is the controller's side: an http.Handler for POST Path (see
// the package doc and docs/api.md for the answers). Safe for concurrent
// use.
type Receiver struct {
	cfg      ReceiverConfig
	auth     Authenticator
	consumer Consumer
	ready    func() bool
	log      *slog.Logger
	slots    chan struct{}

	mu       sync.Mutex
	sessions map[string]*session

	mBatches   *prometheus.CounterVec
	mItems     *prometheus.CounterVec
	mRejected  *prometheus.CounterVec
	mThrottled prometheus.Counter
	mBytes     prometheus.Counter
	mInFlight  prometheus.Gauge
	mNodes     prometheus.Gauge
}

// session is what the receiver knows of one node's stream.
type session struct {
	mu    sync.Mutex // one batch of a node at a time
	epoch string
	seq   uint64
}

// NewReceiver returns a receiver that authenticates with auth, hands
// accepted batches to consumer, and answers 503 while ready (the
// controller's leadership; nil: always ready) reports false. Its metrics
// (nanoseg_ingest_*) go to reg (nil: none); log nil discards.
func NewReceiver(cfg ReceiverConfig, auth Authenticator, consumer Consumer, ready func() bool, reg prometheus.Registerer, log *slog.Logger) (*Receiver, error) {
	cfg.Defaults()
	if auth == nil || consumer == nil {
		return nil, errors.New("transport: a receiver needs an authenticator and a consumer")
	}
	if ready == nil {
		ready = func() bool { return true }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{cfg: cfg, auth: auth, consumer: consumer, ready: ready, log: log.With("component", "ingest"),
		slots: make(chan struct{}, cfg.MaxInFlight), sessions: map[string]*session{}}
	const ns, sub = "nanoseg", "ingest"
	r.mBatches = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "batches_total",
		Help: "Observation batches from node agents, by result: accepted, duplicate (a retry of one already applied), resync (409), rejected (4xx other than 409), throttled (429), unavailable (503)."}, []string{"result"})
	r.mItems = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "items_total",
		Help: "Items of accepted batches, by kind: edges, spans, verdicts, endpoints."}, []string{"kind"})
	r.mRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rejections_total",
		Help: "Batches not accepted, by reason."}, []string{"reason"})
	r.mThrottled = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "throttled_total",
		Help: "Batches answered 429 (back-pressure): the receiver was busy; the sender keeps the batch and retries."})
	r.mBytes = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_total",
		Help: "Bytes of request bodies read, as sent (gzip-compressed when the sender compressed)."})
	r.mInFlight = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "in_flight",
		Help: "Batches being read, decoded or applied."})
	r.mNodes = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "nodes",
		Help: "Nodes whose batch sequence the receiver follows."})
	if reg != nil {
		for _, c := range []prometheus.Collector{r.mBatches, r.mItems, r.mRejected, r.mThrottled, r.mBytes, r.mInFlight, r.mNodes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register ingest metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Reset forgets every node's epoch and sequence: each node's next batch
// gets 409 and the node sends its whole state. Call it when the consumer
// lost what it held (a new leader that did not keep the graph).
func (r *Receiver) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = map[string]*session{}
	r.mNodes.Set(0)
}

// Forget forgets node's epoch and sequence (a node that left).
func (r *Receiver) Forget(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sessions, node)
	r.mNodes.Set(float64(len(r.sessions)))
}

// Answer is the JSON body of every answer.
//
//	200: {"seq":42}  (with "duplicate":true for a retry already applied)
//	409: {"error":"…","reason":"unknown_epoch","resync":true}
//	4xx, 5xx: {"error":"…","reason":"…"}
type Answer struct {
	Seq       uint64 `json:"seq,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Resync    bool   `json:"resync,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Reasons of refusals (the reason label of nanoseg_ingest_rejections_total
// and Answer.Reason).
const (
	ReasonNotReady      = "not_ready"      // 503: not the leader
	ReasonNoToken       = "no_token"       // 401
	ReasonBadToken      = "bad_token"      // 401
	ReasonAuthFailed    = "auth_failed"    // 503: the token could not be checked
	ReasonForbidden     = "forbidden"      // 403: not an allowed user
	ReasonNodeMismatch  = "node_mismatch"  // 403: the batch names another node than the token
	ReasonBusy          = "busy"           // 429
	ReasonTooManyNodes  = "too_many_nodes" // 429
	ReasonTooLarge      = "too_large"      // 413
	ReasonBadBatch      = "bad_batch"      // 400
	ReasonUnknownEpoch  = "unknown_epoch"  // 409
	ReasonGap           = "gap"            // 409
	ReasonConsumer      = "consumer"       // 503: the consumer failed
	ReasonMethod        = "method"         // 405
	ReasonUnsupportedCE = "encoding"       // 415
)

func (r *Receiver) answer(w http.ResponseWriter, code int, a Answer) {
	w.Header().Set("Content-Type", "application/json")
	if code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(r.cfg.RetryAfter.Round(time.Second)/time.Second))))
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(a)
}

func (r *Receiver) refuse(w http.ResponseWriter, code int, reason string, err error) {
	result := "rejected"
	switch code {
	case http.StatusTooManyRequests:
		result = "throttled"
		r.mThrottled.Inc()
	case http.StatusServiceUnavailable:
		result = "unavailable"
	case http.StatusConflict:
		result = "resync"
	}
	r.mBatches.WithLabelValues(result).Inc()
	r.mRejected.WithLabelValues(reason).Inc()
	r.answer(w, code, Answer{Error: err.Error(), Reason: reason, Resync: code == http.StatusConflict})
}

// ServeHTTP implements http.Handler.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.refuse(w, http.StatusMethodNotAllowed, ReasonMethod, fmt.Errorf("%s %s: only POST", req.Method, req.URL.Path))
		return
	}
	if !r.ready() {
		r.refuse(w, http.StatusServiceUnavailable, ReasonNotReady, errors.New("not ready: this controller is not the leader"))
		return
	}
	token, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		r.refuse(w, http.StatusUnauthorized, ReasonNoToken, errors.New("no bearer token (Authorization: Bearer <projected ServiceAccount token>)"))
		return
	}
	id, err := r.auth.Authenticate(req.Context(), token)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		r.refuse(w, http.StatusUnauthorized, ReasonBadToken, err)
		return
	case err != nil:
		r.log.Warn("cannot check a node agent's token", "err", err)
		r.refuse(w, http.StatusServiceUnavailable, ReasonAuthFailed, err)
		return
	}
	if !slices.Contains(r.cfg.Allowed, id.User) {
		r.refuse(w, http.StatusForbidden, ReasonForbidden, fmt.Errorf("user %q may not send observations (allowed: %s)", id.User, strings.Join(r.cfg.Allowed, ", ")))
		return
	}
	// Back-pressure: a bounded number of batches in memory at once.
	select {
	case r.slots <- struct{}{}:
	default:
		t := time.NewTimer(r.cfg.QueueWait)
		select {
		case r.slots <- struct{}{}:
			t.Stop()
		case <-t.C:
			r.refuse(w, http.StatusTooManyRequests, ReasonBusy, errors.New("busy: too many batches in flight; retry after the delay given"))
			return
		case <-req.Context().Done():
			t.Stop()
			return
		}
	}
	r.mInFlight.Inc()
	defer func() { <-r.slots; r.mInFlight.Dec() }()

	data, code, err := r.readBody(w, req)
	if err != nil {
		reason := ReasonTooLarge
		switch code {
		case http.StatusBadRequest:
			reason = ReasonBadBatch
		case http.StatusUnsupportedMediaType:
			reason = ReasonUnsupportedCE
		}
		r.refuse(w, code, reason, err)
		return
	}
	b, err := DecodeBatch(data)
	if err == nil {
		err = b.Validate(r.cfg.MaxItems)
	}
	if err != nil {
		r.refuse(w, http.StatusBadRequest, ReasonBadBatch, err)
		return
	}
	if id.Node != "" && b.Node != id.Node {
		r.refuse(w, http.StatusForbidden, ReasonNodeMismatch, fmt.Errorf("node: %q, but the token was issued to a pod of node %q", b.Node, id.Node))
		return
	}
	r.apply(w, b)
}

// readBody reads the request body within the bounds, gunzipping it when
// it says so.
func (r *Receiver) readBody(w http.ResponseWriter, req *http.Request) ([]byte, int, error) {
	if req.ContentLength > r.cfg.MaxBodyBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body: %d bytes, at most %d", req.ContentLength, r.cfg.MaxBodyBytes)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.cfg.MaxBodyBytes))
	r.mBytes.Add(float64(len(raw)))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body: more than %d bytes", r.cfg.MaxBodyBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	switch ce := req.Header.Get("Content-Encoding"); ce {
	case "", "identity":
		if int64(len(raw)) > r.cfg.MaxDecodedBytes {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body: %d bytes, at most %d", len(raw), r.cfg.MaxDecodedBytes)
		}
		return raw, 0, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("body: bad gzip: %w", err)
		}
		data, err := io.ReadAll(io.LimitReader(zr, r.cfg.MaxDecodedBytes+1))
		if err != nil {
			return nil, http.StatusBadRequest, fmt.Errorf("body: bad gzip: %w", err)
		}
		if int64(len(data)) > r.cfg.MaxDecodedBytes {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body: more than %d bytes once decompressed", r.cfg.MaxDecodedBytes)
		}
		return data, 0, nil
	default:
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q: only gzip or none", ce)
	}
}

// apply checks b's place in its node's sequence and hands it to the
// consumer.
func (r *Receiver) apply(w http.ResponseWriter, b Batch) {
	r.mu.Lock()
	s := r.sessions[b.Node]
	if s == nil {
		if len(r.sessions) >= r.cfg.MaxNodes {
			r.mu.Unlock()
			r.refuse(w, http.StatusTooManyRequests, ReasonTooManyNodes, fmt.Errorf("node %s: already following %d nodes", b.Node, r.cfg.MaxNodes))
			return
		}
		s = &session{}
		r.sessions[b.Node] = s
		r.mNodes.Set(float64(len(r.sessions)))
	}
	r.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.epoch == b.Epoch && b.Seq <= s.seq:
		r.mBatches.WithLabelValues("duplicate").Inc()
		r.answer(w, http.StatusOK, Answer{Seq: b.Seq, Duplicate: true})
		return
	case b.Full:
	case s.epoch != b.Epoch:
		r.refuse(w, http.StatusConflict, ReasonUnknownEpoch, fmt.Errorf("node %s: epoch %s unknown here (the controller restarted or took over): send the whole state", b.Node, b.Epoch))
		return
	case b.Seq != s.seq+1:
		r.refuse(w, http.StatusConflict, ReasonGap, fmt.Errorf("node %s: seq %d after %d: batches missing here: send the whole state", b.Node, b.Seq, s.seq))
		return
	}
	if err := r.consumer.Apply(b.Node, b); err != nil {
		r.log.Error("apply a node's observations", "node", b.Node, "seq", b.Seq, "err", err)
		r.refuse(w, http.StatusServiceUnavailable, ReasonConsumer, fmt.Errorf("apply: %w", err))
		return
	}
	s.epoch, s.seq = b.Epoch, b.Seq
	r.mBatches.WithLabelValues("accepted").Inc()
	r.mItems.WithLabelValues("edges").Add(float64(len(b.Edges)))
	r.mItems.WithLabelValues("spans").Add(float64(len(b.Spans)))
	r.mItems.WithLabelValues("verdicts").Add(float64(len(b.Verdicts)))
	r.mItems.WithLabelValues("endpoints").Add(float64(len(b.Endpoints)))
	r.answer(w, http.StatusOK, Answer{Seq: b.Seq})
}
