package controller

// Evidence: the signed evidence bundle (see package evidence for its
// contents and integrity), served by POST /v1/evidence/export and
// GET /v1/evidence/key (server/).
//
// Design: the bundle is assembled and signed here, next to the agent's
// state, so the signing key never leaves the host; the client receives the
// signed files and writes them where it likes. State kept for evidence, in
// Config.EvidenceDir (<state dir>/evidence/ for the agent):
// signing.key (0600) and signing.key.pub, chain-head.json (the last export's
// manifest hash and sequence: the next export links to it), and
// counter-snapshots.json (the per-rule kernel counters at each export, so a
// later export can report hits over its window). One mutex serialises
// exports, so the chain has no fork.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// ExportRequest asks for an evidence bundle. Zero fields take defaults.
type ExportRequest struct {
	// Window is the reporting window as a Go duration ("1h", default 1h).
	Window string `json:"window,omitempty"`
	// Scope: "" (everything), a namespace ("shop") or a workload ("shop/api").
	Scope string `json:"scope,omitempty"`
	// NoProbes skips the live probe run.
	NoProbes bool `json:"noProbes,omitempty"`
	// Probe bounds the probe run (its Scope is the export's).
	Probe VerifyRequest `json:"probe,omitzero"`
	// KeyFile, when set, must name the agent's configured signing key
	// (agent.evidenceKeyFile, default <state dir>/evidence/signing.key,
	// created on first use); requests cannot choose another path.
	KeyFile string `json:"keyFile,omitempty"`
	// NoPDF skips the PDF rendering of the report.
	NoPDF bool `json:"noPDF,omitempty"`
}

// EvidenceKey describes the agent's evidence signing key.
type EvidenceKey struct {
	PublicKey string `json:"publicKey"` // base64 ed25519
	KeyID     string `json:"keyID"`
	Path      string `json:"path"` // of the private key, on the agent's host
}

// EvidenceKey returns the signing key's public half, creating the key on
// first use. keyFile, when set, must name the configured key file
// (ErrInvalid otherwise).
func (s *Service) EvidenceKey(keyFile string) (EvidenceKey, error) {
	path, err := s.evidenceKeyFile(keyFile)
	if err != nil {
		return EvidenceKey{}, err
	}
	s.evidenceMu.Lock()
	defer s.evidenceMu.Unlock()
	if _, err := evidence.LoadOrCreateKey(path); err != nil {
		return EvidenceKey{}, err
	}
	pk, err := evidence.ReadPublicKey(path + ".pub")
	if err != nil {
		return EvidenceKey{}, err
	}
	return EvidenceKey{PublicKey: base64.StdEncoding.EncodeToString(pk), KeyID: evidence.KeyID(pk), Path: path}, nil
}

// evidenceKeyFile returns the configured signing key path; override, from a
// request, is accepted only when it names that same file.
func (s *Service) evidenceKeyFile(override string) (string, error) {
	path := s.cfg.EvidenceKeyFile
	if path == "" {
		path = filepath.Join(s.cfg.EvidenceDir, "signing.key")
	}
	// The key's place is the agent's configuration, never a request's:
	// an API client must not make the agent create keys elsewhere.
	if override != "" && filepath.Clean(override) != path {
		return "", fmt.Errorf("%w: keyFile: %q is not the agent's signing key (set agent.evidenceKeyFile in the agent's configuration)", ErrInvalid, Clip(override))
	}
	return path, nil
}

// ExportResult is a signed bundle.
type ExportResult struct {
	Name           string // directory name inside the archive
	Files          map[string][]byte
	Archive        []byte // gzip tar of Files under Name/
	ManifestSHA256 string
	Sequence       uint64
}

// Export assembles, signs and archives an evidence bundle (see package
// evidence), links it to the previous export and records it as the new
// chain head. who is recorded as the requester. Errors: ErrInvalid for a
// bad window, scope or key path; store, kernel read, signing or key errors.
// Kernel read failures of single endpoints are reported in the bundle, not
// as errors.
func (s *Service) Export(ctx context.Context, req ExportRequest, who string) (*ExportResult, error) {
	window := time.Hour
	if req.Window != "" {
		d, err := time.ParseDuration(req.Window)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%w: window: %q is not a positive duration such as 1h", ErrInvalid, Clip(req.Window))
		}
		window = d
	}
	keyFile, err := s.evidenceKeyFile(req.KeyFile)
	if err != nil {
		return nil, err
	}
	allEps := s.inv.Endpoints()
	if req.Scope != "" && !scopeKnown(allEps, req.Scope) {
		return nil, fmt.Errorf("%w: scope %q is neither a namespace nor a workload of the inventory", ErrInvalid, Clip(req.Scope))
	}
	s.evidenceMu.Lock()
	defer s.evidenceMu.Unlock()
	key, err := evidence.LoadOrCreateKey(keyFile)
	if err != nil {
		return nil, err
	}
	if err := s.node.Flush(); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	b := &evidence.Bundle{Meta: evidence.Meta{GeneratedAt: now, Agent: agentVersion(), Lab: s.cfg.Lab, Scope: req.Scope,
		Window: evidence.Duration(window), WindowStart: now.Add(-window), RequestedBy: who,
		Frameworks: []string{"PCI DSS 4.0 requirement 11.4.5 (segmentation controls tested)", "NIST SP 800-53 SC-7 (boundary protection)"}}}
	b.Meta.Host, _ = os.Hostname()

	var eps []model.Endpoint
	scoped := map[string]bool{}
	for _, e := range allEps {
		if inScope(req.Scope, e.Key()) {
			eps = append(eps, e)
			scoped[e.Key()] = true
		}
	}
	b.Inventory = inventorySection(eps)
	var inScopeWorkloads []string
	for _, w := range s.inv.Workloads() {
		if scoped[w] {
			inScopeWorkloads = append(inScopeWorkloads, w)
		}
	}
	if b.Coverage, err = s.coverageAt(inScopeWorkloads, window, now); err != nil {
		return nil, err
	}
	if b.Policies, err = s.policiesSection(scoped); err != nil {
		return nil, err
	}

	// Rules and counters: read every endpoint (counters of all are kept
	// for later windows), report those in scope.
	counts := map[string]map[string]evidence.Count{}
	workloadOf := map[string]string{}
	for _, e := range allEps {
		workloadOf[e.Netns] = e.Key()
		sync := s.node.Read(e.Netns, scoped[e.Key()])
		if sync.ReadErr == nil {
			counts[e.Netns] = sync.Counters
		}
		if scoped[e.Key()] && sync.Rules != nil {
			b.Rules = append(b.Rules, *sync.Rules)
		}
	}
	snapPath := filepath.Join(s.cfg.EvidenceDir, "counter-snapshots.json")
	snaps, err := readSnapshots(snapPath)
	if err != nil {
		s.log.Warn("read counter snapshots; counting since rules were programmed", "err", err)
	}
	scopedCounts := map[string]map[string]evidence.Count{}
	for n, m := range counts {
		if scoped[workloadOf[n]] {
			scopedCounts[n] = m
		}
	}
	b.Counters.Rules, b.Counters.Unused = evidence.WindowCounters(scopedCounts, snaps, b.Meta.WindowStart, func(n string) string { return workloadOf[n] })
	if b.Policies.ClusterNetworkPolicies, b.Policies.ClusterNetworkPolicyRecords, err = s.clusterPoliciesSection(b.Counters.Rules); err != nil {
		return nil, err
	}
	snaps = evidence.PruneSnapshots(append(snaps, evidence.Snapshot{At: now, Counters: counts}), now, 31*24*time.Hour, 2000)
	if err := writeSnapshots(snapPath, snaps); err != nil {
		s.log.Warn("write counter snapshots", "err", err)
	}

	evs, err := s.obs.Verdicts(b.Meta.WindowStart)
	if err != nil {
		return nil, err
	}
	for _, e := range evs {
		if req.Scope != "" && !inScope(req.Scope, e.Source) && !inScope(req.Scope, e.Destination) {
			continue
		}
		if len(b.Denied.Events) >= evidence.MaxEvents {
			b.Denied.Truncated = true
			continue
		}
		e.At = e.At.UTC()
		b.Denied.Events = append(b.Denied.Events, e)
	}
	b.Denied.Flows = evidence.GroupDenied(b.Denied.Events)
	ids, err := s.RuleIDs()
	if err != nil {
		return nil, err
	}
	for i := range b.Denied.Flows {
		b.Denied.Flows[i].DecidedBy = decidedBy(ids, strings.Split(b.Denied.Flows[i].RuleID, ","))
	}
	b.Policies.DefaultIDs = ids

	world, set, err := s.policyWorld()
	if err != nil {
		return nil, err
	}
	reachEps, err := s.withObservedPorts(allEps)
	if err != nil {
		return nil, err
	}
	b.Reachability = evidence.Reach(world, set, reachTargets(reachEps), func(s, d string) bool { return scoped[s] || scoped[d] })

	if !req.NoProbes {
		pr := req.Probe
		pr.Scope = req.Scope
		if b.Probes, err = s.Verify(ctx, pr); err != nil {
			return nil, err
		}
	}

	files, err := evidence.Files(b)
	if err != nil {
		return nil, err
	}
	var notes []string
	if req.NoPDF {
		notes = append(notes, "report.pdf not produced: PDF rendering was not requested")
	} else if pdf, note := renderPDF(ctx, files["report.html"]); pdf != nil {
		files["report.pdf"] = pdf
	} else {
		notes = append(notes, note)
	}
	if b.Probes == nil {
		notes = append(notes, "probes.json and probes.csv absent: the export was made without live probes")
	}
	if s.cfg.EvidenceFiles != nil {
		more, moreNotes, err := s.cfg.EvidenceFiles(ctx, req.Scope)
		if err != nil {
			return nil, err
		}
		for name, raw := range more {
			if _, taken := files[name]; taken {
				return nil, fmt.Errorf("evidence file %s: the bundle has one already", name)
			}
			files[name] = raw
		}
		notes = append(notes, moreNotes...)
	}
	headPath := filepath.Join(filepath.Dir(keyFile), "chain-head.json")
	head, err := evidence.ReadChainHead(headPath)
	if err != nil {
		return nil, err
	}
	m := evidence.Manifest{CreatedAt: now, Sequence: 1, Notes: notes}
	if head != nil {
		m.Sequence, m.Previous = head.Sequence+1, head
	}
	sum, err := evidence.Sign(files, m, key)
	if err != nil {
		return nil, err
	}
	name := "nanoseg-evidence-" + now.Format("20060102T150405Z")
	archive, err := evidence.TarGz(files, name, now)
	if err != nil {
		return nil, err
	}
	if err := evidence.WriteChainHead(headPath, evidence.ChainHead{Sequence: m.Sequence, ManifestSHA256: sum, CreatedAt: now}); err != nil {
		return nil, err
	}
	s.log.Info("evidence exported", "sequence", m.Sequence, "manifest", sum, "files", len(files), "by", who)
	res := &ExportResult{Name: name, Files: files, Archive: archive, ManifestSHA256: sum, Sequence: m.Sequence}
	s.saveLastExport(filepath.Dir(headPath), summarize(b, res, notes))
	return res, nil
}

func inventorySection(eps []model.Endpoint) []evidence.Workload {
	byW := map[string]*evidence.Workload{}
	var keys []string
	for _, e := range eps {
		w := byW[e.Key()]
		if w == nil {
			w = &evidence.Workload{Key: e.Key(), Namespace: e.Namespace, Name: e.Workload, Identity: model.IdentityLabels(e.Labels)}
			byW[e.Key()] = w
			keys = append(keys, e.Key())
		}
		ep := evidence.Endpoint{Netns: e.Netns}
		for _, ad := range e.Addrs {
			ep.Addrs = append(ep.Addrs, ad.String())
		}
		for _, p := range e.Ports {
			if p.Protocol == "" {
				p.Protocol = model.ProtocolTCP
			}
			ep.Ports = append(ep.Ports, p)
		}
		w.Endpoints = append(w.Endpoints, ep)
	}
	sort.Strings(keys)
	out := make([]evidence.Workload, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byW[k])
	}
	return out
}

func (s *Service) policiesSection(scoped map[string]bool) (evidence.Policies, error) {
	var p evidence.Policies
	hist, err := s.store.History("")
	if err != nil {
		return p, err
	}
	bySeq := map[uint64]model.Promotion{}
	for _, h := range hist {
		bySeq[h.Seq] = h
		h.At = h.At.UTC()
		p.History = append(p.History, h)
	}
	p.Chain = evidence.ChainCheck{Events: len(hist), Verified: true}
	if err := model.VerifyPromotions(hist); err != nil {
		p.Chain.Verified, p.Chain.Error = false, err.Error()
	}
	if len(hist) > 0 {
		p.Chain.Head = hist[len(hist)-1].Hash
	}
	recs, err := s.store.NetworkPolicyRecords("", "")
	if err != nil {
		return p, err
	}
	p.NetworkPolicies, p.NetworkPolicyRecords = []evidence.NetworkPolicyRecord{}, []evidence.NetworkPolicyRecord{}
	for i, r := range recs {
		if !scopedNamespace(scoped, r.Namespace) {
			continue
		}
		er := evidence.NetworkPolicyRecord{Namespace: r.Namespace, Name: r.Name, Revision: r.Revision, Action: string(r.Action), At: r.At.UTC(), By: r.By}
		if r.Policy != nil {
			if raw, err := json.Marshal(r.Policy); err == nil {
				er.Policy = raw
			}
		}
		p.NetworkPolicyRecords = append(p.NetworkPolicyRecords, er)
		last := i == len(recs)-1 || recs[i+1].Key() != r.Key()
		if last && r.Action == store.ActionApply {
			p.NetworkPolicies = append(p.NetworkPolicies, er)
		}
	}
	active, err := s.Active()
	if err != nil {
		return p, err
	}
	for _, ap := range active {
		if !scoped[ap.State.Workload] {
			continue
		}
		ar := evidence.ActiveRevision{Workload: ap.State.Workload, Mode: string(ap.State.Mode), Revision: ap.State.Revision,
			Since: ap.State.Since.UTC(), PromotionSeq: ap.State.Seq}
		if rev, err := s.store.Revision(ap.State.Workload, ap.State.Revision); err == nil {
			ar.Origin, ar.CreatedAt, ar.CreatedBy = string(rev.Origin), rev.CreatedAt.UTC(), rev.CreatedBy
		}
		if raw, err := json.Marshal(ap.Policy); err == nil {
			ar.Policy = raw
		}
		if ev, ok := bySeq[ap.State.Seq]; ok {
			ar.PromotedBy, ar.Reason = ev.Who, ev.Reason
		}
		p.Active = append(p.Active, ar)
	}
	return p, nil
}

// scopedNamespace reports whether namespace holds a workload of scoped.
func scopedNamespace(scoped map[string]bool, namespace string) bool {
	for w := range scoped {
		if strings.HasPrefix(w, namespace+"/") {
			return true
		}
	}
	return false
}

// reachTargets groups eps by workload, pods named as in the agent's world.
func reachTargets(eps []model.Endpoint) []evidence.ReachTarget {
	byW := map[string][]model.Endpoint{}
	for _, e := range eps {
		byW[e.Key()] = append(byW[e.Key()], e)
	}
	keys := make([]string, 0, len(byW))
	for k := range byW {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]evidence.ReachTarget, 0, len(keys))
	for _, k := range keys {
		t := evidence.ReachTarget{Workload: k, Ports: declaredPorts(byW[k])}
		for _, e := range byW[k] {
			t.Pods = append(t.Pods, e.Namespace+"/"+e.Netns)
		}
		sort.Strings(t.Pods)
		out = append(out, t)
	}
	return out
}

func readSnapshots(path string) ([]evidence.Snapshot, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read counter snapshots: %w", err)
	}
	var s []evidence.Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("decode counter snapshots %s: %w", path, err)
	}
	return s, nil
}

func writeSnapshots(path string, s []evidence.Snapshot) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode counter snapshots: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create evidence directory: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return fmt.Errorf("write counter snapshots: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write counter snapshots: %w", err)
	}
	return nil
}

// pdfConverters are the HTML-to-PDF converters tried, in order.
var pdfConverters = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// renderPDF prints html to PDF with a headless Chromium when one is
// installed, within 60 seconds. It returns the PDF, or nil and a note
// saying why there is none.
func renderPDF(ctx context.Context, html []byte) ([]byte, string) {
	bin := ""
	for _, c := range pdfConverters {
		if p, err := exec.LookPath(c); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		return nil, "report.pdf not produced: no HTML-to-PDF converter installed (looked for " + strings.Join(pdfConverters, ", ") + ")"
	}
	dir, err := os.MkdirTemp("", "nanoseg-pdf-")
	if err != nil {
		return nil, "report.pdf not produced: " + err.Error()
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "report.html"), filepath.Join(dir, "report.pdf")
	if err := os.WriteFile(in, html, 0o600); err != nil {
		return nil, "report.pdf not produced: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--print-to-pdf="+out, "file://"+in)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("report.pdf not produced: %s failed: %v: %s", filepath.Base(bin), err, firstLine(msg))
	}
	pdf, err := os.ReadFile(out)
	if err != nil || len(pdf) == 0 {
		return nil, fmt.Sprintf("report.pdf not produced: %s wrote no PDF", filepath.Base(bin))
	}
	return pdf, ""
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// agentVersion returns the main module's version and VCS revision.
func agentVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			v += " (" + s.Value + ")"
		}
	}
	return v
}
