package main

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
)

// client talks to the agent's API.
type client struct {
	http  *http.Client
	base  string
	token string
}

// newClient returns a client for the configured server: a unix socket path
// or an http(s):// URL.
func newClient(a *app) *client {
	server := a.cfg.Server
	if server == "" {
		server = a.cfg.Agent.Socket
	}
	c := &client{http: &http.Client{Timeout: 60 * time.Second}, token: a.cfg.Token}
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

// do sends method path with body (JSON-encoded unless it is []byte) and
// decodes the answer into out (nil: discard).
func (c *client) do(ctx context.Context, method, path string, q url.Values, body any, out any) error {
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
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e controller.APIError
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("agent answered %s", resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode agent answer: %w", err)
	}
	return nil
}
