// Package transport carries a node agent's observations to the cluster
// controller (docs/architecture.md "Observations in a cluster", docs/api.md
// "Observation transport").
//
// A node agent (Sender) sends Batches over HTTPS to POST /v1/observations
// on the controller (Receiver). A Batch names its node, the agent
// process's Epoch (a random id) and a Seq that grows by one per batch of
// the epoch. Edges and observation spans travel as the agent's cumulative
// values (what its bounded sink holds), so a batch applied twice changes
// nothing; verdict events are new ones only. A Full batch starts the
// node's state over: the controller drops what it held for the node and
// takes the batch (and the batches that follow) instead.
//
// The receiver authenticates each request by its bearer token (a
// projected ServiceAccount token of audience "nanoseg-controller",
// checked with a TokenReview and cached briefly), accepts only the
// configured ServiceAccounts, and, for pod-bound tokens, only the node
// the token names. It bounds what it holds (body size, batches in
// flight, edges per node) and answers 429 with Retry-After instead of
// dropping when it is busy; the sender keeps the unacknowledged batch and
// retries. A node whose epoch the receiver does not know (a restarted or
// newly elected controller) or whose Seq skips one gets 409 with
// {"resync": true}, and the sender sends its whole state again.
//
// This is one of the packages allowed to import client-go: for
// TokenReview, and for the controller's serving certificate (Secret
// nanoseg-controller-tls) and its CA (ConfigMap nanoseg-controller-ca),
// which EnsureServingCert creates.
package transport
