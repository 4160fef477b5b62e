package transport

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ErrUnauthenticated: the token is missing, malformed, expired, revoked,
// or of another audience (HTTP 401).
var ErrUnauthenticated = errors.New("unauthenticated")

// NodeNameExtra is the user extra in which the API server puts the node
// of a pod-bound ServiceAccount token (the pod's spec.nodeName).
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// Identity is whom a token belongs to.
type Identity struct {
	// User is the authenticated user name, for a ServiceAccount
	// "system:serviceaccount:<namespace>:<name>".
	User string
	// Node is the node of the pod a pod-bound token was issued for, ""
	// for other tokens.
	Node string
}

// Authenticator checks a bearer token.
type Authenticator interface {
	// Authenticate returns whom token belongs to, an error wrapping
	// ErrUnauthenticated when it is not valid, or another error when it
	// could not be checked (the API server unreachable: HTTP 503).
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// TokenReviewer is the Authenticator of the controller: a TokenReview
// (authentication.k8s.io/v1) with the audience it was given, answers
// cached by the token's SHA-256 for TTL (valid tokens) or NegativeTTL
// (refused ones), at most MaxCached of them. RBAC: create tokenreviews.
type TokenReviewer struct {
	Audience    string
	TTL         time.Duration
	NegativeTTL time.Duration
	MaxCached   int

	client kubernetes.Interface
	now    func() time.Time
	mu     sync.Mutex
	cache  map[[32]byte]cachedReview
}

type cachedReview struct {
	id      Identity
	err     error
	expires time.Time
}

// NewTokenReviewer returns a TokenReviewer over client for audience
// (Audience when ""), caching answers 2 min (refusals 2 s), at most 4096.
// Two minutes is the kube-apiserver's own cache of webhook token reviews
// (--authentication-token-webhook-cache-ttl); with 10 s, 100 node agents
// sending every 5 s caused 10 TokenReviews a second, most of the
// controller's API requests at rest (docs/benchmarks.md, "Cluster
// scale"). A revoked token (its pod deleted) is refused once its answer
// expires.
func NewTokenReviewer(client kubernetes.Interface, audience string) *TokenReviewer {
	if audience == "" {
		audience = Audience
	}
	return &TokenReviewer{Audience: audience, TTL: 2 * time.Minute, NegativeTTL: 2 * time.Second, MaxCached: 4096,
		client: client, now: time.Now, cache: map[[32]byte]cachedReview{}}
}

// Authenticate implements Authenticator.
func (r *TokenReviewer) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	now := r.now()
	r.mu.Lock()
	c, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.id, c.err
	}
	tr, err := r.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{r.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("token review: %w", err)
	}
	var id Identity
	ttl := r.TTL
	switch st := tr.Status; {
	case !st.Authenticated:
		err = fmt.Errorf("%w: %s", ErrUnauthenticated, cmpOr(st.Error, "token refused"))
		ttl = r.NegativeTTL
	case !slices.Contains(st.Audiences, r.Audience):
		err = fmt.Errorf("%w: token audiences %v lack %q", ErrUnauthenticated, st.Audiences, r.Audience)
		ttl = r.NegativeTTL
	default:
		id.User = st.User.Username
		if nodes := st.User.Extra[NodeNameExtra]; len(nodes) == 1 {
			id.Node = nodes[0]
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= r.MaxCached {
		for k, c := range r.cache {
			if !now.Before(c.expires) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < r.MaxCached {
				break
			}
			delete(r.cache, k)
		}
	}
	if r.MaxCached > 0 {
		r.cache[key] = cachedReview{id: id, err: err, expires: now.Add(ttl)}
	}
	return id, err
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
