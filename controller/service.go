package controller

// The service: every operation of nanoseg over its seams. It holds no
// state of its own beyond configuration: policies, promotions and
// observations are in the store, endpoints in the inventory, rule sets and
// kernel state on the node. It has no build tags and makes no kernel call,
// so it runs wherever the seams do (standalone agent, Kubernetes
// controller) and is unit-tested with fakes.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
	"github.com/nanoseg/nanoseg/store"
)

// ErrInvalid marks a request the service refuses because of its content.
var ErrInvalid = errors.New("invalid request")

// Inventory is the service's view of the endpoints: *inventory.Index
// implements it.
type Inventory interface {
	// Endpoints returns every endpoint, sorted by netns name.
	Endpoints() []model.Endpoint
	// Workload returns the endpoints of workload key "namespace/workload".
	Workload(key string) []model.Endpoint
	// Workloads returns the workload keys, sorted.
	Workloads() []string
	// Externals returns external addresses with their DNS names.
	Externals() map[netip.Addr]string
	// World returns the inventory as a policy world (pods named by netns)
	// with the DNS names in names attached for DNS peers.
	World(names map[netip.Addr][]string) (*policies.MemWorld, error)
}

// Node is the node side as the service sees it: it programs the rule sets
// compiled from the policies in force, reports its endpoints' dataplane
// state, hands over pending observations and probes from inside
// endpoints. node.Node implements it on Linux; tests use fakes.
type Node interface {
	// Enforce makes the node hold the rule sets compiled from the
	// policies in force (the NetworkPolicies, and the nanosegments each
	// with its promoted mode) and returns when every endpoint whose rule
	// set changed has been applied, or with ctx's error when ctx ends
	// first. An endpoint that fails to apply is not an error here:
	// Applied reports it. decided lists the workloads
	// ("namespace/workload") the store holds a recorded decision for
	// (ever promoted or rolled back), whatever their mode now: a table
	// the node finds in audit or enforce in an endpoint of no such
	// workload, and that no policy in force selects, is kept as found
	// (adopted) rather than weakened, until the workload is decided.
	Enforce(ctx context.Context, in policies.InForce, decided []string) error
	// Defaults returns the table of the default ids in the node's rule
	// sets (compile.DefaultID: the id a verdict record carries for a
	// connection no rule allowed) with the policies each stands for.
	Defaults() map[string][]policies.PolicyRef
	// Applied returns what the node knows of endpoint netns without
	// reading the kernel: whether it applied a rule set, and the error of
	// the last apply or drift comparison.
	Applied(netns string) EndpointSync
	// Read reads endpoint netns's table back from the kernel: in sync,
	// per-rule counters and, when rules is true, desired and programmed
	// rules for evidence.
	Read(netns string, rules bool) EndpointSync
	// Flush commits the observations pending on the node (edges, verdict
	// events) to the observation sink.
	Flush() error
	// Names returns the DNS names the node saw in answers (address →
	// name).
	Names() map[netip.Addr]string
	// Probe makes one connection attempt from inside endpoint src to addr
	// over proto (TCP or UDP) within timeout, kept out of the observed
	// graph, and reports its outcome.
	Probe(ctx context.Context, src model.Endpoint, proto string, addr netip.AddrPort, timeout time.Duration) ProbeOutcome
}

// EndpointSync is a node's view of one endpoint's dataplane.
type EndpointSync struct {
	// Known: the node has applied a rule set to the endpoint.
	Known bool
	// Err is the error of the last apply or drift comparison, or why the
	// node does not manage the endpoint.
	Err error
	// Adopted is the mode (audit or enforce) of a table the node found in
	// the endpoint and keeps as it found it because no policy in force
	// selects the endpoint (its store does not know it): "" when the
	// endpoint holds what the policies in force make.
	Adopted string
	// Unreported says the node has nothing to say about the endpoint:
	// the cluster CLI reads in-sync state from the NanoSegments' status,
	// and a workload without a NanoSegment (observe, never promoted) has
	// none, though the node agents program its pods with the observe
	// rule set. Known and InSync then mean nothing; Status shows it.
	Unreported bool
	// The fields below are filled by Node.Read only.
	ReadErr  error                     // reading the table back failed
	InSync   bool                      // the kernel holds the desired rule set
	Counters map[string]evidence.Count // per rule id
	// DefaultHits are the counters of the table's default verdict, by
	// direction (model.Ingress, model.Egress): packets no entry allowed.
	DefaultHits map[model.Direction]evidence.Count
	Rules       *evidence.EndpointRules // desired and programmed rules (Read with rules)
}

// ProbeOutcome is the result of one probe: Outcome is connected, refused,
// reply, timeout, dropped at source or error; Reached whether the network
// let it through; Detail the error text for errors.
type ProbeOutcome struct {
	Outcome string
	Reached bool
	Detail  string
	// Duration is how long the attempt took where it ran, when the node
	// ran it elsewhere (a cluster's node agent, asked through the API
	// server); 0: Verify times the call to Probe.
	Duration time.Duration
}

// Config configures a Service.
type Config struct {
	// EvidenceDir keeps the evidence state: the default signing key,
	// chain-head.json and counter-snapshots.json.
	EvidenceDir string
	// EvidenceKeyFile is the ed25519 key that signs evidence bundles
	// ("" = EvidenceDir/signing.key).
	EvidenceKeyFile string
	// Lab is the lab the inventory comes from, recorded in evidence ("").
	Lab string
	// ConvergeTimeout bounds how long a promotion or rollback waits for
	// the dataplane (default DefaultConvergeTimeout).
	ConvergeTimeout time.Duration
	// MinObserved is how long a workload must have been observed in its
	// proposal's window before a promotion to enforce goes ahead without
	// force (Promote); 0: DefaultMinObserved, negative: no minimum.
	MinObserved time.Duration
	// Propose are the thresholds of inference (shared servers, DNS, port
	// ranges); zero fields take policies.DefaultProposeOptions.
	Propose policies.ProposeOptions
	// EvidenceFiles, when set, adds files to every evidence bundle (signed
	// with the others) and notes to its manifest: the cluster mode's API
	// objects in force (client/kube). scope is the export's scope. An
	// error fails the export.
	EvidenceFiles func(ctx context.Context, scope string) (files map[string][]byte, notes []string, err error)
	// Changes is the feed the service publishes its commits to (nil: a
	// feed of its own); the agent shares it with the observation sink
	// (Changes.Sink).
	Changes *Changes
	// Containers, when set, reports the agent's container runtimes and
	// the containers it does not enforce (Service.Containers, GET
	// /v1/containers); nil: none.
	Containers func() ContainerStatus
}

// DefaultConvergeTimeout bounds how long a promotion or rollback waits for
// the dataplane to converge before it answers.
const DefaultConvergeTimeout = 15 * time.Second

// Service is nanoseg's operations over a policy store, an observation
// reader, an inventory and a node. Safe for concurrent use.
type Service struct {
	cfg   Config
	log   *slog.Logger
	store store.PolicyStore
	obs   store.ObservationReader
	inv   Inventory
	node  Node

	changes *Changes

	enforceMu  sync.Mutex // one Enforce at a time, with the policies read under it
	evidenceMu sync.Mutex // serialises exports: chain head and counter snapshots

	capMu    sync.Mutex      // guards captured
	captured map[string]bool // captures logged by WarnCaptures
}

// New returns a service over the seams. log nil discards.
func New(cfg Config, ps store.PolicyStore, obs store.ObservationReader, inv Inventory, node Node, log *slog.Logger) *Service {
	if cfg.ConvergeTimeout == 0 {
		cfg.ConvergeTimeout = DefaultConvergeTimeout
	}
	if cfg.MinObserved == 0 {
		cfg.MinObserved = DefaultMinObserved
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Changes == nil {
		cfg.Changes = NewChanges()
	}
	return &Service{cfg: cfg, log: log.With("component", "controller"), store: ps, obs: obs, inv: inv, node: node, changes: cfg.Changes}
}

// ActivePolicy is a workload's policy as it is in force: the revision's
// nanosegment with the workload's promoted mode.
type ActivePolicy struct {
	State  store.WorkloadState
	Policy *v1alpha1.NanoSegment
}

// Active returns the active policy of every workload with a revision.
func (s *Service) Active() ([]ActivePolicy, error) {
	states, err := s.store.States()
	if err != nil {
		return nil, err
	}
	var out []ActivePolicy
	for _, st := range states {
		if st.Revision == 0 {
			continue
		}
		r, err := s.store.Revision(st.Workload, st.Revision)
		if err != nil {
			return nil, err
		}
		p := r.Policy.DeepCopy()
		p.Spec.Mode = st.Mode
		out = append(out, ActivePolicy{State: st, Policy: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].State.Workload < out[j].State.Workload })
	return out, nil
}

// activeSegments returns the nanosegments of active, with their promoted modes.
func activeSegments(active []ActivePolicy) []v1alpha1.NanoSegment {
	segs := make([]v1alpha1.NanoSegment, 0, len(active))
	for _, ap := range active {
		segs = append(segs, *ap.Policy)
	}
	return segs
}

// InForce returns every policy in force: the stored NetworkPolicies, the
// active nanosegments with their promoted modes, and the stored
// ClusterNetworkPolicies (when the store holds them: ClusterPolicyStore).
func (s *Service) InForce() (policies.InForce, error) {
	var in policies.InForce
	active, err := s.Active()
	if err != nil {
		return in, err
	}
	in.NanoSegments = activeSegments(active)
	recs, err := s.store.NetworkPolicies()
	if err != nil {
		return in, err
	}
	for _, r := range recs {
		in.NetworkPolicies = append(in.NetworkPolicies, *r.Policy)
	}
	if cs, ok := s.store.(store.ClusterPolicyStore); ok {
		if in.ClusterNetworkPolicies, err = cs.ClusterNetworkPolicies(); err != nil {
			return in, err
		}
	}
	return in, nil
}

// Enforce hands the policies in force, and the workloads the store has
// decided about, to the node and waits as Node.Enforce does. The agent
// calls it at start; promotions, rollbacks and NetworkPolicy changes call
// it after recording.
func (s *Service) Enforce(ctx context.Context) error {
	s.enforceMu.Lock()
	defer s.enforceMu.Unlock()
	in, err := s.InForce()
	if err != nil {
		return err
	}
	states, err := s.store.States()
	if err != nil {
		return err
	}
	var decided []string
	for _, st := range states {
		if st.Seq > 0 {
			decided = append(decided, st.Workload)
		}
	}
	err = s.node.Enforce(ctx, in, decided)
	s.changes.Publish(TopicStatus) // endpoints' sync state, even when it failed
	s.WarnCaptures()
	return err
}

// knownNames returns every DNS name known for an address: inventory
// externals and names the node saw in DNS answers.
func (s *Service) knownNames() map[netip.Addr][]string {
	out := map[netip.Addr][]string{}
	for addr, n := range s.inv.Externals() {
		out[addr] = append(out[addr], n)
	}
	for addr, n := range s.node.Names() {
		out[addr] = append(out[addr], n)
	}
	return out
}

// policyWorld returns the policy world and the policies in force as a
// policy set, as the node's compiler sees them.
func (s *Service) policyWorld() (*policies.MemWorld, policies.PolicySet, error) {
	world, err := s.inv.World(s.knownNames())
	if err != nil {
		return nil, policies.PolicySet{}, err
	}
	set, err := s.inForceSet()
	if err != nil {
		return nil, policies.PolicySet{}, err
	}
	return world, set, nil
}

// inForceSet compiles the policies in force into the policy set that
// evaluation and diff use.
func (s *Service) inForceSet() (policies.PolicySet, error) {
	in, err := s.InForce()
	if err != nil {
		return policies.PolicySet{}, err
	}
	return in.Set()
}

// Endpoints returns the inventory's endpoints, sorted by netns.
func (s *Service) Endpoints() []model.Endpoint { return s.inv.Endpoints() }

// CommitObservations commits the observations pending on the node (edges
// and verdict events of the last flush interval) to the store. The reads
// (Status, Edges, Verdicts, Diff) never write: they answer from what is
// stored, so a store that cannot be written (a full disk) never fails
// them. Call this first for an answer that includes the latest
// observations; when it fails, the answer lacks them and the caller says
// so (the API sets client.HeaderWarning).
func (s *Service) CommitObservations() error {
	if err := s.node.Flush(); err != nil {
		return fmt.Errorf("commit pending observations: %w", err)
	}
	return nil
}

// Edges returns the stored edges last seen within window (all for 0).
func (s *Service) Edges(window time.Duration) ([]model.Edge, error) {
	return s.obs.Edges(windowStart(window))
}

// Verdicts returns the stored verdict events of window (all for 0),
// oldest first.
func (s *Service) Verdicts(window time.Duration) ([]model.VerdictEvent, error) {
	return s.obs.Verdicts(windowStart(window))
}

// Revision returns revision n of workload (ErrNotFound if none, ErrInvalid
// for n < 1: revisions are numbered from 1).
func (s *Service) Revision(workload string, n int) (store.Revision, error) {
	if n < 0 {
		return store.Revision{}, fmt.Errorf("%w: revision: %d is negative (revisions are 1, 2, ...)", ErrInvalid, n)
	}
	if n == 0 {
		return store.Revision{}, fmt.Errorf("%w: revision: 0 is not a revision (revisions are 1, 2, ...)", ErrInvalid)
	}
	return s.store.Revision(workload, n)
}

// Revisions returns every revision of workload, or of every workload for
// "", oldest first per workload.
func (s *Service) Revisions(workload string) ([]store.Revision, error) {
	ws := []string{workload}
	if workload == "" {
		var err error
		if ws, err = s.store.Workloads(); err != nil {
			return nil, err
		}
	}
	out := []store.Revision{}
	for _, w := range ws {
		rs, err := s.store.Revisions(w)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// History returns the promotion events of workload (all for ""), oldest
// first; never nil.
func (s *Service) History(workload string) ([]model.Promotion, error) {
	h, err := s.store.History(workload)
	if h == nil {
		h = []model.Promotion{}
	}
	return h, err
}

// windowStart returns now minus w, or the zero time (everything) for w <= 0.
func windowStart(w time.Duration) time.Time {
	if w <= 0 {
		return time.Time{}
	}
	return time.Now().Add(-w)
}
