package server_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/client"
	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/server"
	"github.com/nanoseg/nanoseg/store"
)

// detailFixture is the shop with observed edges (web -> db 5432, 614
// allowed and 2 denied; web -> api.example.com 443; intruder -> db
// audit-denied), db's proposal promoted to audit, and a viewer session
// to read with.
type detailFixture struct {
	t    *testing.T
	ts   *httptest.Server
	node *controllertest.Node
	mem  *store.Mem
	b    *browser
	op   []string // the operator's Authorization header
}

func newDetailFixture(t *testing.T) *detailFixture {
	mem := store.NewMem()
	node := &controllertest.Node{}
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second, MinObserved: -1}, mem, mem, controllertest.Shop(), node, nil)
	srv := server.New(svc, server.Config{Token: opToken, ReadToken: viewToken}, nil)
	ts := httptest.NewServer(srv.TCPHandler())
	t.Cleanup(ts.Close)
	f := &detailFixture{t: t, ts: ts, node: node, mem: mem, b: newBrowser(t, ts), op: []string{"Authorization", "Bearer " + opToken}}
	now := time.Now()
	ext := model.Peer{External: true, Name: "api.example.com", Addr: netip.MustParseAddr("198.19.0.7")}
	edges := []model.Edge{
		{Source: wl("web"), Destination: wl("db"), Protocol: model.ProtocolTCP, Port: 5432,
			Traffic: model.Traffic{FirstSeen: now.Add(-time.Hour), LastSeen: now, Flows: 616, BytesOut: 4096, BytesIn: 8192,
				Verdicts: model.VerdictCounts{Observed: 616, Allowed: 614, Denied: 2}}},
		{Source: wl("web"), Destination: ext, Protocol: model.ProtocolTCP, Port: 443,
			Traffic: model.Traffic{FirstSeen: now.Add(-time.Hour), LastSeen: now, Flows: 3, Verdicts: model.VerdictCounts{Observed: 3}}},
	}
	if err := mem.MergeEdges(edges); err != nil {
		t.Fatal(err)
	}
	f.must("POST", "/v1/propose", "")
	f.must("POST", "/v1/promote", `{"workload":"shop/db","to":"audit","reason":"review"}`)
	if err := mem.AddVerdicts([]model.VerdictEvent{{At: time.Now(), Verdict: model.VerdictAuditDeny, Source: "shop/intruder", SrcPort: 40000,
		Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432}}); err != nil {
		t.Fatal(err)
	}
	f.b.login(viewToken)
	return f
}

func wl(name string) model.Peer {
	return model.Peer{Namespace: "shop", Workload: name, Labels: map[string]string{"app": name}}
}

// must calls path as the operator and fails unless it answers 200.
func (f *detailFixture) must(method, path, body string) string {
	f.t.Helper()
	code, out, _ := f.b.do(method, path, body, f.op...)
	if code != http.StatusOK {
		f.t.Fatalf("%s %s: %d %s", method, path, code, out)
	}
	return out
}

// get reads path with the viewer session into v and returns the status.
func (f *detailFixture) get(path string, v any) int {
	f.t.Helper()
	code, body, _ := f.b.do("GET", path, "")
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			f.t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	} else if v != nil {
		var e client.APIError
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
			f.t.Errorf("GET %s: %d without a JSON error: %s", path, code, body)
		}
	}
	return code
}

// TestEdgeDetail: an edge's traffic and verdict split, the explain answer
// of the policies in force, and the rule that allows it with the
// revision it came from and the observed edges that produced it.
func TestEdgeDetail(t *testing.T) {
	f := newDetailFixture(t)
	var d controller.EdgeDetail
	if code := f.get("/v1/edges/detail?from=shop/web&to=shop/db&port=TCP/5432", &d); code != 200 {
		t.Fatal(code)
	}
	if !d.Observed || d.Flows != 616 || d.Verdicts.Allowed != 614 || d.Verdicts.Denied != 2 || d.BytesIn != 8192 || d.FirstSeen.IsZero() {
		t.Errorf("traffic: %+v", d)
	}
	if d.Key != "shop/web -> shop/db TCP/5432" || d.ProvenanceKey != webDB.Key || d.Explain == nil || d.Explain.Action != model.VerdictAllow {
		t.Fatalf("key %q explain %+v (%s)", d.Key, d.Explain, d.ExplainError)
	}
	// The same answer as GET /v1/explain.
	var ex json.RawMessage
	f.get("/v1/explain?from=shop/web&to=shop/db&port=5432/TCP", &ex)
	mine, _ := json.Marshal(d.Explain)
	var a, b any
	_ = json.Unmarshal(ex, &a)
	_ = json.Unmarshal(mine, &b)
	if ja, jb := mustJSON(a), mustJSON(b); ja != jb {
		t.Errorf("explain differs from GET /v1/explain:\n%s\n%s", ja, jb)
	}
	if len(d.Rules) != 1 {
		t.Fatalf("rules %+v, want db's ingress rule", d.Rules)
	}
	r := d.Rules[0]
	if r.Direction != model.Ingress || r.Workload != "shop/db" || r.Mode != model.ModeAudit || r.Revision == nil || r.Revision.Number != 1 ||
		r.Revision.Origin != store.OriginProposed || !slices.Contains(r.Edges, webDB) || r.Provenance == nil || r.Provenance.Observed == nil {
		t.Errorf("rule origin %+v", r)
	}
	// An external peer by its DNS name: explained at its address.
	if code := f.get("/v1/edges/detail?from=shop/web&to=api.example.com&port=443/TCP", &d); code != 200 || !d.Observed || d.Flows != 3 || d.Explain == nil {
		t.Errorf("external edge: %d %+v", code, d)
	}
	if len(d.Denying) != 0 {
		t.Errorf("an allowed edge has denying policies: %+v", d.Denying)
	}
	// A denied connection: no allowing rule; the isolating policy and its
	// revision say why.
	d = controller.EdgeDetail{}
	if code := f.get("/v1/edges/detail?from=shop/intruder&to=shop/db&port=5432/TCP", &d); code != 200 || d.Observed || d.Explain == nil ||
		d.Explain.Action != model.VerdictAuditDeny || len(d.Rules) != 0 || len(d.Explain.Ingress.Isolating) != 1 {
		t.Errorf("audit-denied edge: %+v", d)
	}
	if len(d.Denying) != 1 || d.Denying[0].Direction != model.Ingress || d.Denying[0].Workload != "shop/db" || d.Denying[0].Mode != model.ModeAudit ||
		d.Denying[0].Revision == nil || d.Denying[0].Revision.Number != 1 || d.Denying[0].Rule.Rule != "" {
		t.Errorf("denying: %+v, want db's nanosegment at revision 1 in audit", d.Denying)
	}
	for _, bad := range []string{"from=shop/web&to=shop/db&port=tcp", "from=shop/web&port=5432/TCP", "from=shop/web&to=shop/db&port=5432/GRE"} {
		if code := f.get("/v1/edges/detail?"+bad, &d); code != http.StatusBadRequest {
			t.Errorf("GET /v1/edges/detail?%s: %d, want 400", bad, code)
		}
	}
}

// webDB is the observed edge web -> db 5432 as a rule's provenance names it.
var webDB = controller.EdgeRef{Key: "shop{app=web} -> shop{app=db} TCP/5432", Source: "shop/web", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestWorkloadDetail: mode, revision, endpoints, each rule with its
// kernel counters and source edges, rules without hits, what enforcing
// would break, the history, and a newer proposal as a diff against the
// revision in force.
func TestWorkloadDetail(t *testing.T) {
	f := newDetailFixture(t)
	var d controller.WorkloadDetail
	if code := f.get("/v1/workloads/detail?workload=shop/db", &d); code != 200 {
		t.Fatal(code)
	}
	if d.Status.Mode != model.ModeAudit || d.Status.Revision != 1 || len(d.Status.Endpoints) != 1 || d.Revision == nil || d.Revision.Number != 1 {
		t.Errorf("status %+v revision %+v", d.Status, d.Revision)
	}
	if len(d.Rules) != 1 || d.Rules[0].Direction != model.Ingress || d.Rules[0].Hit || !slices.Equal(d.Unhit, []string{d.Rules[0].ID}) ||
		!slices.Contains(d.Rules[0].Edges, webDB) {
		t.Fatalf("rules %+v unhit %v", d.Rules, d.Unhit)
	}
	if len(d.WouldBreak) != 1 || d.WouldBreak[0].Source != "shop/intruder" || d.WouldBreak[0].Verdict != model.VerdictAuditDeny {
		t.Errorf("would break %+v, want the intruder's audit-denied attempt", d.WouldBreak)
	}
	if len(d.History) != 1 || d.History[0].ToMode != model.ModeAudit || d.Proposed != nil {
		t.Errorf("history %+v proposed %+v", d.History, d.Proposed)
	}
	// The kernel counts the rule: it is hit.
	f.node.Counters = map[string]map[string]evidence.Count{"db-0": {d.Rules[0].CounterID: {Packets: 7, Bytes: 420}}}
	f.get("/v1/workloads/detail?workload=shop/db", &d)
	if !d.Rules[0].Hit || d.Rules[0].Packets != 7 || d.Rules[0].Bytes != 420 || len(d.Unhit) != 0 {
		t.Errorf("after 7 hits: rules %+v unhit %v", d.Rules, d.Unhit)
	}
	// A new edge, a new proposal: revision 2 against 1.
	now := time.Now()
	if err := f.mem.MergeEdges([]model.Edge{{Source: wl("web"), Destination: wl("db"), Protocol: model.ProtocolTCP, Port: 6432,
		Traffic: model.Traffic{FirstSeen: now, LastSeen: now, Flows: 1, Verdicts: model.VerdictCounts{Observed: 1}}}}); err != nil {
		t.Fatal(err)
	}
	f.must("POST", "/v1/propose", "")
	f.get("/v1/workloads/detail?workload=shop/db", &d)
	if p := d.Proposed; p == nil || p.Revision.Number != 2 || p.Active != 1 || len(p.Rules) == 0 || p.Report.Added == nil {
		t.Fatalf("proposed %+v", d.Proposed)
	}
	if code := f.get("/v1/workloads/detail?workload=shop/nope", &d); code != http.StatusBadRequest {
		t.Errorf("unknown workload: %d, want 400", code)
	}
}

// TestMatrix: the truth table of a namespace, each cell with its
// explanation; ports default to the declared and observed ones.
func TestMatrix(t *testing.T) {
	f := newDetailFixture(t)
	var m controller.Matrix
	if code := f.get("/v1/matrix?namespace=shop", &m); code != 200 {
		t.Fatal(code)
	}
	if !slices.Equal(m.Workloads, []string{"shop/db", "shop/intruder", "shop/web"}) || !slices.Equal(m.Ports, []string{"80/TCP", "5432/TCP"}) ||
		len(m.Cells) != 2*9 {
		t.Fatalf("matrix workloads %v ports %v cells %d", m.Workloads, m.Ports, len(m.Cells))
	}
	cell := func(from, to, port string) controller.MatrixCell {
		for _, c := range m.Cells {
			if c.From == from && c.To == to && strings.HasPrefix(port, strings.Split(port, "/")[0]) && c.Port == mustPort(port) {
				return c
			}
		}
		t.Fatalf("no cell %s -> %s %s", from, to, port)
		return controller.MatrixCell{}
	}
	if c := cell("shop/web", "shop/db", "5432/TCP"); c.Action != model.VerdictAllow || c.Explain.Action != model.VerdictAllow || c.Reason == "" {
		t.Errorf("web -> db 5432: %+v", c)
	}
	if c := cell("shop/intruder", "shop/db", "5432/TCP"); c.Action != model.VerdictAuditDeny || len(c.Explain.Ingress.Isolating) != 1 {
		t.Errorf("intruder -> db 5432: %+v", c)
	}
	if code := f.get("/v1/matrix?workloads=shop/web,shop/db&ports=5432/TCP", &m); code != 200 || len(m.Cells) != 4 || m.Workloads[0] != "shop/db" {
		t.Errorf("two workloads, one port: %d %+v", code, m)
	}
	for _, bad := range []string{"workloads=shop/nope", "namespace=nope", "ports=x/TCP"} {
		if code := f.get("/v1/matrix?"+bad, &m); code != http.StatusBadRequest {
			t.Errorf("GET /v1/matrix?%s: %d, want 400", bad, code)
		}
	}
}

func mustPort(s string) int32 {
	_, n, _ := controller.ParsePort("port", s)
	return int32(n)
}

// TestEvidenceLast: 404 before any export; after one, its summary with
// the manifest hash the export answered in its header.
func TestEvidenceLast(t *testing.T) {
	f := newDetailFixture(t)
	var sum controller.ExportSummary
	if code := f.get("/v1/evidence/last", &sum); code != http.StatusNotFound {
		t.Fatalf("before any export: %d, want 404", code)
	}
	// The page's form: 200 {"exported": false} instead of the 404, so
	// that the browser logs no failed request; a bad flag names the field.
	var none map[string]any
	if code := f.get("/v1/evidence/last?optional=1", &none); code != 200 || len(none) != 1 || none["exported"] != false {
		t.Fatalf("optional before any export: %d %v, want 200 {exported: false}", code, none)
	}
	if code, body, _ := f.b.do("GET", "/v1/evidence/last?optional=maybe", ""); code != http.StatusBadRequest || !strings.Contains(body, "optional") {
		t.Fatalf("optional=maybe: %d %s, want 400 naming optional", code, body)
	}
	code, _, resp := f.b.do("POST", "/v1/evidence/export", `{"noProbes":true,"noPDF":true}`, f.op...)
	if code != 200 {
		t.Fatalf("export: %d", code)
	}
	if code := f.get("/v1/evidence/last", &sum); code != 200 {
		t.Fatal(code)
	}
	if sum.Sequence != 1 || sum.ManifestSHA256 != resp.Header.Get(client.HeaderManifestSHA256) || !strings.HasPrefix(sum.RequestedBy, "token from") ||
		sum.Workloads != 3 || sum.Endpoints != 4 || sum.DeniedEvents != 1 || sum.Probes != nil || sum.Files == 0 || sum.Window != "1h0m0s" {
		t.Errorf("summary %+v", sum)
	}
	var opt controller.ExportSummary
	if code := f.get("/v1/evidence/last?optional=1", &opt); code != 200 || opt.ManifestSHA256 != sum.ManifestSHA256 || opt.Sequence != 1 {
		t.Errorf("optional after an export: %d %+v, want the summary", code, opt)
	}
}

// TestChangePreview: before a promotion to enforce, the paths it would
// close (the intruder's audit-denied one among them, the allowed one
// not); a rollback of the first promotion would remove the policy; a
// viewer may ask (it changes nothing) and nothing is recorded.
func TestChangePreview(t *testing.T) {
	f := newDetailFixture(t)
	var p server.ChangePreview
	if code := f.get("/v1/change?workload=shop/db&to=enforce", &p); code != 200 {
		t.Fatal(code)
	}
	if p.Workload != "shop/db" || p.Mode != model.ModeEnforce || len(p.Opened) != 0 ||
		!slices.Contains(p.Closed, "shop/intruder -> shop/db TCP/5432") || slices.Contains(p.Closed, "shop/web -> shop/db TCP/5432") {
		t.Errorf("audit -> enforce: %+v", p)
	}
	p = server.ChangePreview{}
	if code := f.get("/v1/change?workload=shop/db&action=rollback", &p); code != 200 || !p.NoPolicy || p.Mode != "" {
		t.Errorf("rollback preview: %d %+v, want the policy removed", code, p)
	}
	for _, bad := range []string{"workload=shop/db&to=loud", "workload=shop/nope&to=audit", "workload=shop/db&to=audit&revision=x", "workload=shop/db&action=undo"} {
		if code := f.get("/v1/change?"+bad, &p); code != http.StatusBadRequest {
			t.Errorf("GET /v1/change?%s: %d, want 400", bad, code)
		}
	}
	if h, _ := f.mem.History(""); len(h) != 1 {
		t.Errorf("previews recorded: history has %d events, want 1", len(h))
	}
}

// TestEdgeDecisions: GET /v1/edges/decisions lists nothing without a
// ClusterNetworkPolicy; under an Admin Deny of intruder -> db 5432 it
// lists that observed edge for a viewer, audit-denied and audited (db is
// in audit mode), with the rule; a bad window is a 400 naming it.
func TestEdgeDecisions(t *testing.T) {
	f := newDetailFixture(t)
	if err := f.mem.MergeEdges([]model.Edge{{Source: wl("intruder"), Destination: wl("db"), Protocol: model.ProtocolTCP, Port: 5432,
		Traffic: model.Traffic{FirstSeen: time.Now(), LastSeen: time.Now(), Flows: 1, Verdicts: model.VerdictCounts{Observed: 1}}}}); err != nil {
		t.Fatal(err)
	}
	var ds []controller.EdgeDecision
	if code := f.get("/v1/edges/decisions", &ds); code != 200 || ds == nil || len(ds) != 0 {
		t.Fatalf("no ClusterNetworkPolicy: %d %+v, want 200 and an empty list", code, ds)
	}
	f.must("POST", "/v1/policies?file=guard.yaml", `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard-db}
spec:
  tier: Admin
  priority: 7
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
    - name: no-intruder
      action: Deny
      from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: intruder}}}}]
      protocols: [{tcp: {destinationPort: {number: 5432}}}]
`)
	if code := f.get("/v1/edges/decisions?window=1h", &ds); code != 200 || len(ds) != 1 {
		t.Fatalf("Admin Deny: %d %+v, want the intruder edge", code, ds)
	}
	d := ds[0]
	if d.Source.String() != "shop/intruder" || d.Destination.String() != "shop/db" || d.Port != 5432 || d.Action != model.VerdictAuditDeny || !d.Audited ||
		d.Rule.Policy.Name != "guard-db" || d.Rule.Tier != "Admin" || d.Rule.Priority != 7 || d.Rule.Name != "no-intruder" {
		t.Errorf("decision %+v: want intruder -> db 5432 audit-denied (audited) by Admin guard-db priority 7 no-intruder", d)
	}
	var e any
	if code := f.get("/v1/edges/decisions?window=soon", &e); code != http.StatusBadRequest {
		t.Errorf("window=soon: %d, want 400", code)
	}
}
