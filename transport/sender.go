package transport

import (
	"bytes"
	"compress/gzip"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nanoseg/nanoseg/model"
)

// Pending is what a Source holds that the receiver has not acknowledged,
// taken for one batch.
type Pending struct {
	Edges    []model.Edge
	Spans    []model.ObservedSpan
	Verdicts []model.VerdictEvent
	// Mark and VerdictsUpTo are the source's own bookkeeping, handed back
	// to Ack.
	Mark         uint64
	VerdictsUpTo uint64
	// More: the source holds more than this batch carries.
	More bool
}

// Source is the node agent's bounded observation buffer
// (nodeagent.MemSink) as the sender reads it.
type Source interface {
	// Take returns what changed since the last acknowledged batch: the
	// current value of at most maxItems changed edges and spans, and at
	// most maxItems verdict events logged since; it changes nothing.
	Take(maxItems int) Pending
	// Ack records that the receiver accepted the batch made of p: what p
	// carried is no longer pending, unless it changed after Take.
	Ack(p Pending)
	// Resync makes everything the source holds pending again (the
	// receiver lost it).
	Resync()
}

// SenderConfig configures a Sender; zero fields take the defaults given.
type SenderConfig struct {
	// URL is the controller's base URL, such as
	// https://nanoseg-controller.nanoseg-system.svc:9443; batches go to
	// URL + Path.
	URL string
	// Node is this node's name (Batch.Node).
	Node string
	// TokenFile holds the bearer token (a projected ServiceAccount token
	// of audience Audience; default /var/run/secrets/nanoseg/token),
	// read again whenever it changes and after a 401.
	TokenFile string
	// CA returns the PEM certificates that sign the controller's serving
	// certificate (CAFile, CAConfigMap; nil: the system's roots). It is
	// asked again after a certificate error, at most every 10 s.
	CA func(ctx context.Context) ([]byte, error)
	// Interval is how often pending observations are sent (default 5 s);
	// a batch that could not carry everything is followed at once.
	Interval time.Duration
	// Heartbeat is the longest time without a batch (default 15 s): an
	// empty one is sent then, so that the controller knows the node is
	// alive and a restarted or new controller asks an idle node for its
	// state (409) within Heartbeat.
	Heartbeat time.Duration
	// MaxItems bounds each list of a batch (default 5000).
	MaxItems int
	// Timeout bounds one request (default 30 s).
	Timeout time.Duration
	// MaxBackoff caps the wait between retries (default 30 s); the wait
	// starts at 1 s (or the answer's Retry-After) and doubles.
	MaxBackoff time.Duration
	// NoGzip sends bodies uncompressed.
	NoGzip bool
}

// DefaultTokenFile is where the node agent's DaemonSet mounts its
// projected token.
const DefaultTokenFile = "/var/run/secrets/nanoseg/token"

// Defaults fills the zero fields.
func (c *SenderConfig) Defaults() {
	if c.TokenFile == "" {
		c.TokenFile = DefaultTokenFile
	}
	if c.Interval == 0 {
		c.Interval = 5 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.MaxItems == 0 {
		c.MaxItems = 5000
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
}

// Validate reports every bad field at once.
func (c SenderConfig) Validate() error {
	var errs []error
	if !strings.HasPrefix(c.URL, "https://") {
		errs = append(errs, fmt.Errorf("controller: %q: want an https:// URL", c.URL))
	}
	if c.Node == "" {
		errs = append(errs, errors.New("node: empty"))
	}
	if c.Interval < 0 || c.Heartbeat < 0 || c.Timeout < 0 || c.MaxBackoff < 0 || c.MaxItems < 0 {
		errs = append(errs, errors.New("interval, heartbeat, timeout, maxBackoff, maxItems: must not be negative"))
	}
	return errors.Join(errs...)
}

// Sender is the node agent's side: it sends what its Source holds to the
// receiver in batches, every Interval and at once while a batch is full,
// keeps the batch until the receiver acknowledges it (retrying with
// backoff on errors and 429; on a standby's 503 after its Retry-After,
// on a new connection, standbyRetries times before backing off), and
// sends its whole state when the
// receiver asks (409). It logs once when sending starts failing and once
// when it works again, never per retry.
type Sender struct {
	cfg       SenderConfig
	src       Source
	endpoints func() []EndpointState
	names     func() map[netip.Addr]string
	ruleIDs   func() map[string][]string
	log       *slog.Logger
	epoch     string
	kick      chan struct{}

	mu        sync.Mutex
	client    *http.Client
	caLoaded  time.Time
	token     string
	tokenMod  time.Time
	tokenSize int64
	stats     SenderStats

	mBatches   *prometheus.CounterVec
	mConnected prometheus.Gauge
	mLastOK    prometheus.Gauge
}

// SenderStats counts what a sender did.
type SenderStats struct {
	Sent      uint64 // requests made
	Accepted  uint64 // batches acknowledged
	Resyncs   uint64 // whole-state resends the receiver asked for
	Failures  uint64 // requests that failed (network, 429, 5xx, 4xx)
	Throttled uint64 // 429 answers
	Rejected  uint64 // batches the receiver refused as bad (400, 413): their verdict events are lost
	Failing   bool   // the last request failed
}

// NewSender returns a sender of src's observations; endpoints (nil:
// none) gives the node's endpoint states, sent when they change. Its
// metrics (nanoseg_node_transport_*) go to reg (nil: none); log nil
// discards.
func NewSender(cfg SenderConfig, src Source, endpoints func() []EndpointState, reg prometheus.Registerer, log *slog.Logger) (*Sender, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("transport: a sender needs a source")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var raw [16]byte
	_, _ = crand.Read(raw[:])
	s := &Sender{cfg: cfg, src: src, endpoints: endpoints, log: log.With("component", "transport", "controller", cfg.URL),
		epoch: hex.EncodeToString(raw[:]), kick: make(chan struct{}, 1)}
	s.mBatches = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nanoseg", Subsystem: "node_transport", Name: "batches_total",
		Help: "Observation batches sent to the controller, by result: accepted, resync (409: the whole state follows), throttled (429), unavailable (503), rejected (other 4xx), error (network, TLS, other 5xx), abandoned (in flight when the agent stopped; the final flush sends it again)."}, []string{"result"})
	s.mConnected = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node_transport", Name: "connected",
		Help: "1 when the last batch reached the controller and was accepted."})
	s.mLastOK = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nanoseg", Subsystem: "node_transport", Name: "last_accepted_timestamp_seconds",
		Help: "When the controller last accepted a batch (Unix time)."})
	if reg != nil {
		for _, c := range []prometheus.Collector{s.mBatches, s.mConnected, s.mLastOK} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("register transport metrics: %w", err)
			}
		}
	}
	return s, nil
}

// ReportNames makes the sender carry the DNS names names returns (the
// node's observers' table: address → name) to the controller, with the
// first batch of an epoch and whenever they changed. Call it before Run.
func (s *Sender) ReportNames(names func() map[netip.Addr]string) { s.names = names }

// ReportRuleIDs makes the sender carry the node's default rule id table
// (ids returns it: id → the policies it stands for) with the first batch
// of an epoch and whenever it changed. Call it before Run.
func (s *Sender) ReportRuleIDs(ids func() map[string][]string) { s.ruleIDs = ids }

// dnsNames returns m as a batch lists it, sorted by address.
func dnsNames(m map[netip.Addr]string) []DNSName {
	out := make([]DNSName, 0, len(m))
	for a, n := range m {
		out = append(out, DNSName{Addr: a, Name: n})
	}
	slices.SortFunc(out, func(x, y DNSName) int { return x.Addr.Compare(y.Addr) })
	return out
}

// Epoch returns the sender's epoch (Batch.Epoch).
func (s *Sender) Epoch() string { return s.epoch }

// Stats returns what the sender did so far.
func (s *Sender) Stats() SenderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Kick asks for a batch now instead of at the next Interval.
func (s *Sender) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// outcome is what one request came to.
type outcome int

const (
	outAccepted outcome = iota
	outResync
	outRetry    // keep the batch, wait, send it again
	outRejected // the batch is bad: drop it, resync
	outStandby  // a standby replica answered (503): keep the batch, try again soon
)

// standbyRetries is how many standby answers in a row are retried after
// the answer's Retry-After without growing the backoff. Behind the
// Service each new connection reaches either replica, so with two
// replicas eight misses in a row happen once in 256; after them the
// sender backs off as for any failure (no replica leads: an election).
const standbyRetries = 8

// Run sends until ctx ends; then it tries once more, for up to 2 s, to
// deliver what is pending. It returns nil.
func (s *Sender) Run(ctx context.Context) error {
	timer := time.NewTimer(0) // the first batch (the whole state) at once
	defer timer.Stop()
	var (
		cur      *Batch
		curP     Pending
		seq      uint64
		full     = true // a new epoch starts with the whole state
		backoff  time.Duration
		standby  int // standby answers in a row
		prevEnds []EndpointState
		sentEnds []EndpointState
		prevNms  []DNSName
		sentNms  []DNSName
		prevIDs  map[string][]string
		sentIDs  map[string][]string
		lastOK   = time.Now()
	)
	for {
		select {
		case <-ctx.Done():
			s.finalFlush(cur, curP, seq, full)
			return nil
		case <-timer.C:
		case <-s.kick:
		}
		if cur == nil {
			curP = s.src.Take(s.cfg.MaxItems)
			var ends []EndpointState
			if s.endpoints != nil {
				if e := s.endpoints(); full || !reflect.DeepEqual(e, prevEnds) {
					ends = e
					if ends == nil {
						ends = []EndpointState{}
					}
				}
			}
			var nms []DNSName
			if s.names != nil {
				if n := dnsNames(s.names()); full || !reflect.DeepEqual(n, prevNms) {
					nms = n
				}
			}
			var ids map[string][]string
			if s.ruleIDs != nil {
				if m := s.ruleIDs(); full || !reflect.DeepEqual(m, prevIDs) {
					ids = m
					if ids == nil {
						ids = map[string][]string{}
					}
				}
			}
			if !full && ends == nil && nms == nil && ids == nil && len(curP.Edges)+len(curP.Spans)+len(curP.Verdicts) == 0 && time.Since(lastOK) < s.cfg.Heartbeat {
				resetTimer(timer, s.cfg.Interval)
				continue
			}
			seq++
			cur = &Batch{Node: s.cfg.Node, Epoch: s.epoch, Seq: seq, Full: full,
				Edges: curP.Edges, Spans: curP.Spans, Verdicts: curP.Verdicts, Endpoints: ends, Names: nms, RuleIDs: ids}
			sentEnds, sentNms, sentIDs = ends, nms, ids
		}
		out, wait := s.send(ctx, cur)
		next := s.cfg.Interval
		if out != outStandby {
			standby = 0
		}
		switch out {
		case outAccepted:
			lastOK = time.Now()
			s.src.Ack(curP)
			if cur.Endpoints != nil {
				prevEnds = sentEnds
			}
			if cur.Names != nil {
				prevNms = sentNms
			}
			if cur.RuleIDs != nil {
				prevIDs = sentIDs
			}
			full, backoff, cur = false, 0, nil
			if curP.More {
				next = 0
			}
		case outResync:
			s.src.Resync()
			full, backoff, cur, prevEnds = true, 0, nil, nil
			next = 0
		case outRejected:
			s.src.Resync()
			full, cur, prevEnds = true, nil, nil
			fallthrough
		case outStandby:
			if standby++; standby <= standbyRetries {
				next = max(wait, jitter(time.Second))
				break
			}
			fallthrough
		case outRetry:
			if ctx.Err() != nil {
				continue
			}
			backoff = min(max(time.Second, 2*backoff), s.cfg.MaxBackoff)
			next = max(wait, jitter(backoff))
		}
		resetTimer(timer, next)
	}
}

// finalFlush tries, for up to 2 s, to deliver the batch in flight and
// what is pending at a stop.
func (s *Sender) finalFlush(cur *Batch, curP Pending, seq uint64, full bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for range 3 {
		if cur != nil && len(cur.Edges)+len(cur.Spans)+len(cur.Verdicts) == 0 {
			cur = nil // only endpoint states or a heartbeat: the next agent reports them
		}
		if cur == nil {
			curP = s.src.Take(s.cfg.MaxItems)
			if len(curP.Edges)+len(curP.Spans)+len(curP.Verdicts) == 0 {
				return
			}
			seq++
			cur = &Batch{Node: s.cfg.Node, Epoch: s.epoch, Seq: seq, Full: full, Edges: curP.Edges, Spans: curP.Spans, Verdicts: curP.Verdicts}
		}
		if out, _ := s.send(ctx, cur); out != outAccepted {
			return
		}
		s.src.Ack(curP)
		// Take again even when that batch held everything it took: it may
		// have been in flight since before the latest merges.
		cur, full = nil, false
	}
}

func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}

// jitter returns d ± 20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// send makes one request with b and says what came of it, and how long
// the answer asked to wait (Retry-After).
func (s *Sender) send(ctx context.Context, b *Batch) (outcome, time.Duration) {
	body, err := s.encode(b)
	if err != nil {
		s.fail("encode", err, 0)
		return outRejected, 0
	}
	client, err := s.httpClient(ctx, false)
	if err != nil {
		s.fail("error", err, 0)
		return outRetry, 0
	}
	token, err := s.readToken(false)
	if err != nil {
		s.fail("error", err, 0)
		return outRetry, 0
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, strings.TrimSuffix(s.cfg.URL, "/")+Path, bytes.NewReader(body))
	if err != nil {
		s.fail("error", err, 0)
		return outRejected, 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	if !s.cfg.NoGzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	s.mu.Lock()
	s.stats.Sent++
	s.mu.Unlock()
	resp, err := client.Do(req)
	if err != nil && ctx.Err() != nil {
		// The sender is stopping (a clean stop of the agent): the batch
		// stays pending, and the final flush sends it with a fresh
		// context; no failure, nothing to warn of.
		client.CloseIdleConnections()
		s.mBatches.WithLabelValues("abandoned").Inc()
		s.log.Debug("batch in flight abandoned: the sender is stopping", "seq", b.Seq)
		return outRetry, 0
	}
	if err != nil {
		var uerr x509.UnknownAuthorityError
		var verr *tls.CertificateVerificationError
		if errors.As(err, &uerr) || errors.As(err, &verr) {
			_, _ = s.httpClient(ctx, true) // the CA may have changed
		}
		client.CloseIdleConnections()
		s.fail("error", err, 0)
		return outRetry, 0
	}
	var a Answer
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&a)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close() // back to the idle pool, so CloseIdleConnections reaches it
	wait := retryAfter(resp.Header.Get("Retry-After"))
	msg := fmt.Errorf("%s: %s", resp.Status, a.Error)
	switch {
	case resp.StatusCode == http.StatusOK:
		s.ok()
		return outAccepted, 0
	case resp.StatusCode == http.StatusConflict:
		s.mu.Lock()
		s.stats.Resyncs++
		s.mu.Unlock()
		s.mBatches.WithLabelValues("resync").Inc()
		s.log.Info("the controller asks for this node's whole state; sending it", "reason", a.Reason, "detail", a.Error)
		return outResync, 0
	case resp.StatusCode == http.StatusTooManyRequests:
		s.mu.Lock()
		s.stats.Throttled++
		s.mu.Unlock()
		s.fail("throttled", msg, resp.StatusCode)
		return outRetry, wait
	case resp.StatusCode == http.StatusServiceUnavailable:
		// Behind a Service, the standby replica answers 503: the next
		// attempt opens a new connection, which may reach the leader.
		client.CloseIdleConnections()
		s.fail("unavailable", msg, resp.StatusCode)
		return outStandby, wait
	case resp.StatusCode == http.StatusUnauthorized:
		_, _ = s.readToken(true)
		s.fail("rejected", msg, resp.StatusCode)
		return outRetry, wait
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusRequestEntityTooLarge:
		s.mu.Lock()
		s.stats.Rejected++
		s.mu.Unlock()
		s.fail("rejected", msg, resp.StatusCode)
		return outRejected, 0
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		s.fail("rejected", msg, resp.StatusCode)
		return outRetry, wait
	default:
		s.fail("error", msg, resp.StatusCode)
		return outRetry, wait
	}
}

// ok records an accepted batch and logs the end of an outage.
func (s *Sender) ok() {
	s.mBatches.WithLabelValues("accepted").Inc()
	s.mConnected.Set(1)
	s.mLastOK.SetToCurrentTime()
	s.mu.Lock()
	was, failures := s.stats.Failing, s.stats.Failures
	s.stats.Accepted++
	s.stats.Failing = false
	s.mu.Unlock()
	if was {
		s.log.Info("observations reach the controller again", "failedRequests", failures)
	}
}

// fail records a failed request; the first of an outage is logged.
func (s *Sender) fail(result string, err error, status int) {
	s.mBatches.WithLabelValues(result).Inc()
	s.mConnected.Set(0)
	s.mu.Lock()
	was := s.stats.Failing
	s.stats.Failing = true
	s.stats.Failures++
	s.mu.Unlock()
	if result == "rejected" && status != http.StatusUnauthorized && status != http.StatusForbidden {
		s.log.Error("the controller refused a batch; sending the whole state again", "status", status, "err", err)
		return
	}
	if !was {
		s.log.Warn("cannot send observations to the controller; keeping them (bounded) and retrying with backoff", "err", err)
	}
}

func retryAfter(h string) time.Duration {
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return min(time.Duration(n)*time.Second, 5*time.Minute)
	}
	return 0
}

func (s *Sender) encode(b *Batch) ([]byte, error) {
	var buf bytes.Buffer
	if s.cfg.NoGzip {
		err := json.NewEncoder(&buf).Encode(b)
		return buf.Bytes(), err
	}
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err := json.NewEncoder(zw).Encode(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readToken returns the token, read again when the file changed (or
// force).
func (s *Sender) readToken(force bool) (string, error) {
	fi, err := os.Stat(s.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !force && s.token != "" && fi.ModTime().Equal(s.tokenMod) && fi.Size() == s.tokenSize {
		return s.token, nil
	}
	raw, err := os.ReadFile(s.cfg.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(raw))
	if t == "" {
		return "", fmt.Errorf("token file %s: empty", s.cfg.TokenFile)
	}
	s.token, s.tokenMod, s.tokenSize = t, fi.ModTime(), fi.Size()
	return t, nil
}

// httpClient returns the client, built with the CA's certificates on
// first use and again when reload is asked (at most every 10 s).
func (s *Sender) httpClient(ctx context.Context, reload bool) (*http.Client, error) {
	s.mu.Lock()
	c, loaded := s.client, s.caLoaded
	s.mu.Unlock()
	if c != nil && (!reload || time.Since(loaded) < 10*time.Second) {
		return c, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.cfg.CA != nil {
		pem, err := s.cfg.CA(ctx)
		if err != nil {
			return nil, fmt.Errorf("controller CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("controller CA: no PEM certificate")
		}
		tc.RootCAs = pool
	}
	tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true, MaxIdleConns: 2, IdleConnTimeout: 90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: s.cfg.Timeout}
	c = &http.Client{Transport: tr, Timeout: s.cfg.Timeout}
	s.mu.Lock()
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	s.client, s.caLoaded = c, time.Now()
	s.mu.Unlock()
	return c, nil
}
