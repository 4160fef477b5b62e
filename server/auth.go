package server

// Authentication, sessions, roles and cross-site request protection of the
// TCP listener (docs/api.md, "Transport and authentication").
//
// Design: a request on TCP is authenticated by, in this order, a bearer
// token (the operator token or the viewer token, compared in constant
// time), a TLS client certificate the configured CA signed (operator), or
// the session cookie a browser got from POST /v1/session after presenting
// one of those once. Sessions live in memory only (a restart logs every
// browser out), expire SessionTTL after they were made, and are bounded in
// number: the one closest to expiry goes when a new one would exceed the
// bound. The cookie holds 32 random bytes; the server keeps only their
// SHA-256, so the session table holds no credential.
//
// A cookie is an ambient credential: the browser sends it with requests
// other sites make it send. So a state-changing request (any method but
// GET, HEAD and OPTIONS) authenticated by the cookie must also carry the
// session's CSRF token in X-CSRF-Token (a value another site cannot read:
// the synchronizer token pattern), and every state-changing request,
// however authenticated, must not come from another origin as the browser
// tells it (Sec-Fetch-Site, or Origin against Host: net/http's
// CrossOriginProtection): a client certificate installed in a browser is
// as ambient as a cookie. Non-browser clients (the CLI) send neither
// header and are not affected. Sources: RFC 6265 (cookies, HttpOnly,
// Secure), RFC 6265bis (SameSite), OWASP CSRF Prevention Cheat Sheet
// (synchronizer token, Origin verification), W3C Fetch Metadata.
//
// Roles: the operator token, client certificates and sessions made with
// them may do everything; the viewer token and its sessions may read
// (every GET) and manage their own session, and are refused 403 on every
// other route, naming the right they lack (Route.Right).

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
)

// Role is what an authenticated caller may do.
type Role string

// Roles.
const (
	// RoleOperator may call every route: the operator token, TLS client
	// certificates, the unix socket, and sessions made with them.
	RoleOperator Role = "operator"
	// RoleViewer may call every GET route and manage its own session:
	// the viewer token (agent.readTokenFile) and its sessions.
	RoleViewer Role = "viewer"
)

// SessionCookie is the name of the session cookie a browser gets from
// POST /v1/session.
const SessionCookie = "nanoseg_session"

// HintCookie is the name of the cookie "nanoseg_ui=1" that POST
// /v1/session sets beside the session cookie (same expiry, SameSite=Strict,
// but readable by the page's script: not HttpOnly) and DELETE /v1/session
// clears. It is no credential (the server never reads it): it only tells
// the page that a session may exist, so that a first visit shows the login
// form without a GET /v1/session that would answer 401 (which browsers log
// as a console error).
const HintCookie = "nanoseg_ui"

// HeaderCSRF is the header that carries a session's CSRF token on
// state-changing requests authenticated by the session cookie.
const HeaderCSRF = "X-CSRF-Token"

// Defaults of Config's session and event-stream bounds. The bounds hold
// for each role apart (RoleOperator, RoleViewer), so that the holder of
// the viewer token can neither log the operator out by logging in many
// times nor starve the operator's page of event streams.
const (
	DefaultSessionTTL      = 12 * time.Hour
	DefaultMaxSessions     = 128 // per role
	DefaultMaxEventStreams = 32  // per role
)

// identity is who made a request and what they may do.
type identity struct {
	// who is recorded in promotions and revisions ("token from
	// 127.0.0.1:4242").
	who  string
	role Role
	// sess is the session the request came with (nil: a bearer token, a
	// certificate, the unix socket).
	sess *session
	// cred is the credential Config.Authenticate answered for the caller
	// ("" for the configured tokens, certificates, the unix socket).
	cred string
}

// Credential returns the credential that Config.Authenticate answered
// for r's caller (from the bearer token, or kept in the browser's
// session), or "" when r came otherwise. Config.API acts with it.
func Credential(r *http.Request) string {
	if id := requestIdentity(r); id != nil {
		return id.cred
	}
	return ""
}

// Caller returns who made r as the server records it ("web UI session
// of alice from 127.0.0.1:4242"), for a Config.API that records changes.
func Caller(r *http.Request) string { return caller(r) }

// RoleOf returns r's role (operator for the unix socket and for a
// handler served without authentication).
func RoleOf(r *http.Request) Role { return roleOf(r) }

const identityKey ctxKey = 1

// requestIdentity returns the request's identity, or nil when it came
// through Handler without authentication (the unix socket, tests).
func requestIdentity(r *http.Request) *identity {
	id, _ := r.Context().Value(identityKey).(*identity)
	return id
}

// roleOf is the request's role: the unix socket and Handler without
// authentication are operators.
func roleOf(r *http.Request) Role {
	if id := requestIdentity(r); id != nil {
		return id.role
	}
	return RoleOperator
}

// session is one browser's login.
type session struct {
	key     [32]byte // SHA-256 of the cookie value
	role    Role
	basis   string // the credential it was made with: "operator token", "viewer token", "cert:CN", a reviewed user's name
	cred    string // Principal.Credential of a reviewed token (memory only)
	csrf    string
	expires time.Time
}

// sessionInfo is the answer of POST and GET /v1/session.
type sessionInfo struct {
	// Role is operator or viewer.
	Role Role `json:"role"`
	// CSRF is the token state-changing requests send in X-CSRF-Token.
	CSRF string `json:"csrf"`
	// Expires is when the session ends (RFC 3339).
	Expires time.Time `json:"expires"`
}

// sessions is the in-memory session table.
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]*session
	ttl time.Duration
	max int // per role
}

func randomToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random session token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// create makes a session for role and basis at now; it returns the cookie
// value. Expired sessions go first; beyond max sessions of role, the one
// of the same role closest to expiry (the oldest) goes: a login never ends
// a session of the other role.
func (t *sessions) create(role Role, basis, cred string, now time.Time) (string, *session, error) {
	cookie, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	csrf, err := randomToken()
	if err != nil {
		return "", nil, err
	}
	s := &session{key: sha256.Sum256([]byte(cookie)), role: role, basis: basis, cred: cred, csrf: csrf, expires: now.Add(t.ttl)}
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, o := range t.m {
		if !now.Before(o.expires) {
			delete(t.m, k)
		}
	}
	for {
		n := 0
		var oldest *session
		for _, o := range t.m {
			if o.role != role {
				continue
			}
			n++
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		if n < t.max {
			break
		}
		delete(t.m, oldest.key)
	}
	t.m[s.key] = s
	return cookie, s, nil
}

// lookup returns the live session of cookie value v, or nil.
func (t *sessions) lookup(v string, now time.Time) *session {
	k := sha256.Sum256([]byte(v))
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.m[k]
	if s == nil {
		return nil
	}
	if !now.Before(s.expires) {
		delete(t.m, k)
		return nil
	}
	return s
}

func (t *sessions) remove(s *session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, s.key)
}

// credential checks the request's bearer token (Authorization header) or
// TLS client certificate; it returns the caller (Role "" when neither is
// presented or valid) and, for a token refused by Config.Authenticate,
// why.
func (a *Server) credential(r *http.Request) (Principal, string) {
	// The scheme is case-insensitive (RFC 7235, section 2.1).
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		p, why := a.token(r.Context(), strings.TrimSpace(tok))
		if p.Role != "" {
			return p, ""
		}
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			return Principal{}, why
		}
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return Principal{Role: RoleOperator, Name: "cert:" + r.TLS.PeerCertificates[0].Subject.CommonName}, ""
	}
	return Principal{}, ""
}

// token returns the caller of bearer token tok: the configured operator
// or viewer token, else what Config.Authenticate says; Role "" and why
// when neither knows it.
func (a *Server) token(ctx context.Context, tok string) (Principal, string) {
	// Both compared, whichever matches, so the time says nothing of which.
	op := a.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.cfg.Token)) == 1
	view := a.cfg.ReadToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.cfg.ReadToken)) == 1
	switch {
	case op:
		return Principal{Role: RoleOperator, Name: "token"}, ""
	case view:
		return Principal{Role: RoleViewer, Name: "viewer token"}, ""
	case tok == "" || a.cfg.Authenticate == nil:
		return Principal{}, ""
	}
	p, err := a.cfg.Authenticate(ctx, tok)
	if err != nil {
		return Principal{}, err.Error()
	}
	if p.Role != RoleOperator && p.Role != RoleViewer {
		return Principal{}, fmt.Sprintf("the authenticator answered role %q", p.Role)
	}
	return p, ""
}

// writeError answers code with the API's error body.
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(client.APIError{Error: msg})
}

// safeMethod reports whether m changes nothing (RFC 9110, section 9.2.1).
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// authenticate wraps h (the API and the page) for the TCP listener: the
// page's static files are served to anyone (they hold no data), every
// /v1 route only to an authenticated caller (401 otherwise), with the
// cross-origin and CSRF checks for state-changing requests; it sets the
// security headers on every answer.
func (a *Server) authenticate(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "forbidden: cross-origin request refused (Origin or Sec-Fetch-Site names another site)")
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header(), r)
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			// The page: static files, no data, no state to change.
			if !safeMethod(r.Method) {
				writeError(w, http.StatusMethodNotAllowed, "method not allowed: the page is read-only")
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		if !safeMethod(r.Method) {
			if err := cop.Check(r); err != nil {
				writeError(w, http.StatusForbidden, "forbidden: cross-origin request refused (Origin or Sec-Fetch-Site names another site)")
				return
			}
		}
		if r.Method == http.MethodPost && r.URL.Path == "/v1/session" {
			// A login: its token (body, header) or certificate is checked
			// by the handler; a cookie it carries only names the session
			// the new one replaces.
			id := &identity{}
			if c, err := r.Cookie(SessionCookie); err == nil {
				id.sess = a.sessions.lookup(c.Value, a.now())
			}
			h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey, id)))
			return
		}
		id, msg := a.identify(r)
		if id == nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="nanoseg"`)
			writeError(w, http.StatusUnauthorized, msg)
			return
		}
		if id.sess != nil && !safeMethod(r.Method) {
			if got := r.Header.Get(HeaderCSRF); got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(id.sess.csrf)) != 1 {
				writeError(w, http.StatusForbidden, "forbidden: a request with the session cookie that changes state needs the session's CSRF token in "+HeaderCSRF)
				return
			}
		}
		ctx := context.WithValue(r.Context(), identityKey, id)
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// identify authenticates r: a bearer token or client certificate first,
// then the session cookie. nil and why when nothing valid came.
func (a *Server) identify(r *http.Request) (*identity, string) {
	p, why := a.credential(r)
	if p.Role != "" {
		return &identity{who: p.Name + " from " + r.RemoteAddr, role: p.Role, cred: p.Credential}, ""
	}
	if why != "" {
		return nil, "unauthenticated: " + why
	}
	if c, err := r.Cookie(SessionCookie); err == nil {
		if s := a.sessions.lookup(c.Value, a.now()); s != nil {
			return &identity{who: "web UI session of " + sessionOwner(s) + " from " + r.RemoteAddr, role: s.role, sess: s, cred: s.cred}, ""
		}
		return nil, "unauthenticated: the session expired or is unknown: log in again (POST /v1/session)"
	}
	return nil, "unauthenticated: send Authorization: Bearer <token>, a client certificate, or the session cookie of POST /v1/session"
}

// securityHeaders sets the headers of every TCP answer: a strict
// Content-Security-Policy (the page loads nothing but its own files, runs
// no inline script and cannot be framed), no MIME sniffing, no referrer;
// API answers are never cached.
func securityHeaders(h http.Header, r *http.Request) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		h.Set("Cache-Control", "no-store")
	}
}

// ContentSecurityPolicy is the Content-Security-Policy of every answer on
// the TCP listener (W3C Content Security Policy Level 3).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"

// sessionRequest is the body of POST /v1/session.
type sessionRequest struct {
	Token string `json:"token"`
}

// sessionRoutes registers POST, GET and DELETE /v1/session on mux. They
// answer only on the TCP listener: the unix socket has no browser.
func (a *Server) sessionRoutes(rs *routes) {
	rs.handle("POST /v1/session", rightAnyone, func(w http.ResponseWriter, r *http.Request) {
		id := requestIdentity(r)
		if id == nil {
			writeError(w, http.StatusNotFound, "not found: sessions are for browsers on the TCP listener")
			return
		}
		p, why := a.credential(r)
		var req sessionRequest
		if err := decodeOptional(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), controller.ErrInvalid.Error()+": "))
			return
		}
		if req.Token != "" {
			if p, why = a.token(r.Context(), req.Token); p.Role == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="nanoseg"`)
				if why == "" {
					why = "not the operator or the viewer token"
				}
				writeError(w, http.StatusUnauthorized, "unauthenticated: token: "+why)
				return
			}
		}
		role, basis := p.Role, p.Name
		if role == "" && why != "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="nanoseg"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated: "+why)
			return
		}
		if role == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="nanoseg"`)
			writeError(w, http.StatusUnauthorized, `unauthenticated: send {"token": "..."}, Authorization: Bearer <token> or a client certificate`)
			return
		}
		if basis == "token" {
			basis = "operator token"
		}
		if id.sess != nil {
			a.sessions.remove(id.sess) // a new login replaces the old session
		}
		value, s, err := a.sessions.create(role, basis, p.Credential, a.now())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: value, Path: "/", Expires: s.expires, MaxAge: int(a.sessions.ttl / time.Second),
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		http.SetCookie(w, &http.Cookie{Name: HintCookie, Value: "1", Path: "/", Expires: s.expires, MaxAge: int(a.sessions.ttl / time.Second),
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		a.log.Info("web UI session started", "role", role, "basis", basis, "remote", r.RemoteAddr)
		writeJSON(w, sessionInfo{Role: s.role, CSRF: s.csrf, Expires: s.expires.UTC()})
	})
	rs.handle("GET /v1/session", "", func(w http.ResponseWriter, r *http.Request) {
		id := requestIdentity(r)
		if id == nil || id.sess == nil {
			writeError(w, http.StatusUnauthorized, "unauthenticated: no session: log in with POST /v1/session")
			return
		}
		writeJSON(w, sessionInfo{Role: id.sess.role, CSRF: id.sess.csrf, Expires: id.sess.expires.UTC()})
	})
	rs.handle("DELETE /v1/session", rightAnyone, func(w http.ResponseWriter, r *http.Request) {
		id := requestIdentity(r)
		if id == nil || id.sess == nil {
			writeError(w, http.StatusUnauthorized, "unauthenticated: no session to end")
			return
		}
		a.sessions.remove(id.sess)
		http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		http.SetCookie(w, &http.Cookie{Name: HintCookie, Value: "", Path: "/", MaxAge: -1,
			Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
	})
}

// writeJSON answers v as indented JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// sessionOwner names whose session s is in what is recorded: "the
// operator token", "the cert:CN", or the name of a reviewed user.
func sessionOwner(s *session) string {
	if s.cred != "" {
		return s.basis
	}
	return "the " + s.basis
}
