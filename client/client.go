// Package client is the Go client of nanoseg's HTTP API (docs/api.md),
// shared by the CLI (cmd/nanoseg) and the end-to-end tests. It speaks to a
// unix socket path or an http(s):// URL, sends the bearer token when one
// is set, and turns error answers into errors carrying the API's message.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
)

// APIError is the body of every error answer of the API.
type APIError struct {
	Error string `json:"error"`
}

// HeaderWarning, on an answer, says the answer may be incomplete and
// why: a read-only route answers from what is stored when the pending
// observations could not be committed.
const HeaderWarning = "X-Nanoseg-Warning"

// Headers of the evidence export answer (POST /v1/evidence/export).
const (
	HeaderManifestSHA256 = "X-Nanoseg-Manifest-Sha256"
	HeaderSequence       = "X-Nanoseg-Evidence-Sequence"
	HeaderBundleName     = "X-Nanoseg-Evidence-Name"
)

// Client talks to the agent's API.
type Client struct {
	http  *http.Client
	base  string
	token string
	warn  func(string)
}

// OnWarning returns a copy of c that calls f with the HeaderWarning of
// every answer that carries one (an answer from what is stored when the
// agent could not commit its latest observations).
func (c *Client) OnWarning(f func(msg string)) *Client {
	out := *c
	out.warn = f
	return &out
}

// New returns a client for server: a unix socket path or an http(s)://
// URL. token, when not empty, is sent as a bearer token.
func New(server, token string) *Client {
	c := &Client{http: &http.Client{Timeout: 60 * time.Second}, token: token}
	if strings.HasPrefix(server, "http://") || strings.HasPrefix(server, "https://") {
		c.base = strings.TrimSuffix(server, "/")
		return c
	}
	c.base = "http://nanoseg-agent"
	c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", server)
		if err != nil {
			return nil, fmt.Errorf("reach the agent at %s (is `nanoseg agent` running?): %w", server, err)
		}
		return conn, nil
	}}
	return c
}

// NewHTTP returns a client that sends its requests to base (an
// http(s):// URL) through hc: an in-process transport, say, that serves
// them with the API's handler (cluster mode of the CLI, client/kube).
func NewHTTP(base string, hc *http.Client) *Client {
	return &Client{http: hc, base: strings.TrimSuffix(base, "/")}
}

// WithTimeout returns a copy of c whose requests time out after d (0: no
// timeout beyond the request's context). The default is 60 seconds.
func (c *Client) WithTimeout(d time.Duration) *Client {
	hc := *c.http
	hc.Timeout = d
	out := *c
	out.http = &hc
	return &out
}

// Do sends method path with body (JSON-encoded unless it is []byte) and
// decodes the answer into out (nil: discard). An error answer is a
// *StatusError; any other error means no complete answer arrived.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body any, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	if msg := resp.Header.Get(HeaderWarning); msg != "" && c.warn != nil {
		c.warn(msg)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return answerError(resp, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode agent answer: %w", err)
	}
	return nil
}

// StatusError is an error answer of the API: the agent received the
// request and refused or failed it. Any other error of Do means the answer
// did not arrive (the request may or may not have taken effect).
type StatusError struct {
	Code    int    // HTTP status code
	Message string // the API's message, or the status line
}

func (e *StatusError) Error() string { return e.Message }

func answerError(resp *http.Response, raw []byte) error {
	var e APIError
	if json.Unmarshal(raw, &e) == nil && e.Error != "" {
		return &StatusError{Code: resp.StatusCode, Message: e.Error}
	}
	return &StatusError{Code: resp.StatusCode, Message: "agent answered " + resp.Status}
}

// PostRaw posts body as JSON to path and returns the raw answer and its
// headers, without the client's overall timeout (ctx bounds it: an export
// runs probes and a PDF renderer); an error answer is decoded as the API's
// error.
func (c *Client) PostRaw(ctx context.Context, path string, body any) ([]byte, http.Header, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, nil, fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+path, bytes.NewReader(raw))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, nil, fmt.Errorf("read agent answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, nil, answerError(resp, data)
	}
	return data, resp.Header, nil
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) ([]controller.WorkloadStatus, error) {
	var st []controller.WorkloadStatus
	err := c.Do(ctx, "GET", "/v1/status", nil, nil, &st)
	return st, err
}

// Containers returns GET /v1/containers: the agent's container runtimes
// and the containers it does not enforce. A *StatusError with Code 404
// means the server has no such route (a cluster's session, an older
// agent).
func (c *Client) Containers(ctx context.Context) (controller.ContainerStatus, error) {
	var st controller.ContainerStatus
	err := c.Do(ctx, "GET", "/v1/containers", nil, nil, &st)
	return st, err
}

// Verdicts returns GET /v1/verdicts for window ("" all, else a duration
// such as "10m").
func (c *Client) Verdicts(ctx context.Context, window string) ([]model.VerdictEvent, error) {
	q := url.Values{}
	if window != "" {
		q.Set("window", window)
	}
	var evs []model.VerdictEvent
	err := c.Do(ctx, "GET", "/v1/verdicts", q, nil, &evs)
	return evs, err
}

// History returns GET /v1/history for workload ("" all).
func (c *Client) History(ctx context.Context, workload string) ([]model.Promotion, error) {
	q := url.Values{}
	if workload != "" {
		q.Set("workload", workload)
	}
	var h []model.Promotion
	err := c.Do(ctx, "GET", "/v1/history", q, nil, &h)
	return h, err
}

// Coverage returns GET /v1/coverage: every workload's coverage within
// window (everything for 0).
func (c *Client) Coverage(ctx context.Context, window time.Duration) ([]model.Coverage, error) {
	q := url.Values{}
	if window > 0 {
		q.Set("window", window.String())
	}
	var cov []model.Coverage
	err := c.Do(ctx, "GET", "/v1/coverage", q, nil, &cov)
	return cov, err
}

// Promote posts a promotion and returns the recorded event and whether the
// dataplane converged.
func (c *Client) Promote(ctx context.Context, req controller.PromoteRequest) (controller.PromoteResult, error) {
	var res controller.PromoteResult
	err := c.Do(ctx, "POST", "/v1/promote", nil, req, &res)
	return res, err
}

// Rollback posts a rollback, answered like Promote.
func (c *Client) Rollback(ctx context.Context, req controller.RollbackRequest) (controller.PromoteResult, error) {
	var res controller.PromoteResult
	err := c.Do(ctx, "POST", "/v1/rollback", nil, req, &res)
	return res, err
}
