package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/store"
)

// defaultDeny selects every pod of shop (podSelector: {}) and allows web
// to reach db on 5432: a NetworkPolicy of several workloads.
const defaultDeny = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-to-db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{protocol: TCP, port: 5432}]
`

func (f fixture) explain(t *testing.T, from, to, port string) policies.Evaluation {
	t.Helper()
	v, err := f.svc.Explain(from, to, port)
	if err != nil {
		t.Fatalf("explain %s -> %s %s: %v", from, to, port, err)
	}
	return v
}

// TestApplyNetworkPolicyOfSeveralWorkloads: a NetworkPolicy selecting
// several workloads is stored as a NetworkPolicy (not refused, not turned
// into nanosegments) and enforced as soon as it is applied, with its own
// semantics; explain and status name it; applying it again stores nothing.
func TestApplyNetworkPolicyOfSeveralWorkloads(t *testing.T) {
	f := newFixture(t)
	res, err := f.svc.Apply(context.Background(), "deny.yaml", []byte(defaultDeny), "alice")
	if err != nil {
		t.Fatalf("apply a default deny: %v", err)
	}
	if len(res.Revisions) != 0 || len(res.NetworkPolicies) != 2 || !res.Converged {
		t.Fatalf("apply result = %+v, want 2 NetworkPolicies, no nanosegment revision, converged", res)
	}
	dd := res.NetworkPolicies[0]
	if dd.Record.Key() != "shop/default-deny" || dd.Record.Revision != 1 || dd.Record.By != "alice" || dd.Record.Action != store.ActionApply || dd.Unchanged {
		t.Errorf("default-deny record = %+v", dd)
	}
	if want := []string{"shop/db", "shop/intruder", "shop/web"}; strings.Join(dd.Selects, ",") != strings.Join(want, ",") {
		t.Errorf("default-deny selects %v, want %v", dd.Selects, want)
	}
	if ws, _ := f.mem.Workloads(); len(ws) != 0 {
		t.Errorf("applying NetworkPolicies stored nanosegment revisions for %v", ws)
	}
	enf := f.node.Enforced()
	if len(enf) != 1 || len(enf[0].NetworkPolicies) != 2 || len(enf[0].NanoSegments) != 0 {
		t.Fatalf("the node was asked to enforce %+v, want the 2 NetworkPolicies at once", enf)
	}
	if v := f.explain(t, "shop/web", "shop/db", "5432/TCP"); v.Action != model.VerdictAllow {
		t.Errorf("web -> db 5432 = %s (%s), want allow", v.Action, v.Reason())
	}
	v := f.explain(t, "shop/intruder", "shop/web", "80/TCP")
	if v.Action != model.VerdictDeny || !strings.Contains(v.Reason(), "NetworkPolicy shop/default-deny") {
		t.Errorf("intruder -> web 80 = %s (%s), want deny naming NetworkPolicy shop/default-deny", v.Action, v.Reason())
	}
	sts, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		want := "NetworkPolicy shop/default-deny"
		if st.Workload == "shop/db" {
			want = "NetworkPolicy shop/default-deny,NetworkPolicy shop/web-to-db"
		}
		if got := strings.Join(st.NetworkPolicies, ","); got != want {
			t.Errorf("status of %s names %q, want %q", st.Workload, got, want)
		}
	}
	again, err := f.svc.Apply(context.Background(), "deny.yaml", []byte(defaultDeny), "bob")
	if err != nil || !again.NetworkPolicies[0].Unchanged || again.NetworkPolicies[0].Record.Revision != 1 {
		t.Errorf("the same NetworkPolicy again = %+v, %v; want unchanged revision 1", again, err)
	}
	if recs, _ := f.mem.NetworkPolicyRecords("shop", "default-deny"); len(recs) != 1 {
		t.Errorf("the same NetworkPolicy again stored %d records, want 1", len(recs))
	}
	nps, err := f.svc.NetworkPolicies()
	if err != nil || len(nps) != 2 {
		t.Errorf("NetworkPolicies in force = %+v, %v", nps, err)
	}
}

// TestApplyNetworkPolicyValidationNamesTheField: an invalid
// NetworkPolicy is refused with the field named, and nothing of the
// document is stored.
func TestApplyNetworkPolicyValidationNamesTheField(t *testing.T) {
	f := newFixture(t)
	bad := strings.Replace(defaultDeny, "port: 5432", "port: 70000", 1) + "---\n" + dbPolicy
	_, err := f.svc.Apply(context.Background(), "bad.yaml", []byte(bad), "alice")
	if !errors.Is(err, controller.ErrInvalid) || !strings.Contains(err.Error(), "spec.ingress[0].ports[0].port") || !strings.Contains(err.Error(), "NetworkPolicy shop/web-to-db") {
		t.Fatalf("apply of a NetworkPolicy with port 70000: %v, want ErrInvalid naming NetworkPolicy shop/web-to-db and spec.ingress[0].ports[0].port", err)
	}
	if recs, _ := f.mem.NetworkPolicyRecords("", ""); len(recs) != 0 {
		t.Errorf("a refused document stored %d NetworkPolicy records", len(recs))
	}
	if ws, _ := f.mem.Workloads(); len(ws) != 0 {
		t.Errorf("a refused document stored revisions for %v", ws)
	}
}

// TestDeleteNetworkPolicy: deleting a NetworkPolicy is recorded (who,
// when) and ends its enforcement; deleting one not in force is refused.
func TestDeleteNetworkPolicy(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.Apply(context.Background(), "deny.yaml", []byte(defaultDeny), "alice"); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.DeleteNetworkPolicy(context.Background(), "shop", "default-deny", "ops")
	if err != nil {
		t.Fatal(err)
	}
	if res.Record.Action != store.ActionDelete || res.Record.Revision != 2 || res.Record.By != "ops" || res.Record.At.IsZero() || !res.Converged {
		t.Errorf("delete = %+v", res)
	}
	enf := f.node.Enforced()
	if last := enf[len(enf)-1]; len(last.NetworkPolicies) != 1 || last.NetworkPolicies[0].Name != "web-to-db" {
		t.Errorf("after delete the node enforces %+v, want web-to-db only", last.NetworkPolicies)
	}
	if v := f.explain(t, "shop/intruder", "shop/web", "80/TCP"); v.Action != model.VerdictAllow {
		t.Errorf("intruder -> web after the default deny was deleted = %s (%s), want allow", v.Action, v.Reason())
	}
	if _, err := f.svc.DeleteNetworkPolicy(context.Background(), "shop", "default-deny", "ops"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	recs, _ := f.svc.NetworkPolicyRecords("shop", "default-deny")
	if len(recs) != 2 || recs[1].Action != store.ActionDelete {
		t.Errorf("records = %+v, want apply then delete", recs)
	}
}

// TestStatusNamesTheIsolatingPolicies: verdict records carry the id of
// the default that decided; status expands it, with the node's table, to
// the policies that isolated the endpoint.
func TestStatusNamesTheIsolatingPolicies(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.Apply(context.Background(), "deny.yaml", []byte(defaultDeny), "alice"); err != nil {
		t.Fatal(err)
	}
	multi := "default/shop/ingress.0a1b2c3d"
	f.node.DefaultIDs = map[string][]policies.PolicyRef{
		multi:                                  {{Kind: "NetworkPolicy", Namespace: "shop", Name: "default-deny"}, {Kind: "NetworkPolicy", Namespace: "shop", Name: "web-to-db"}},
		"np/shop/default-deny/default.ingress": {{Kind: "NetworkPolicy", Namespace: "shop", Name: "default-deny"}},
	}
	now := time.Now()
	if err := f.mem.AddVerdicts([]model.VerdictEvent{
		{At: now, Endpoint: "db-0", Verdict: "deny", RuleID: multi, Source: "shop/intruder", SrcPort: 40000, Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432},
		{At: now, Endpoint: "web-0", Verdict: "deny", RuleID: "np/shop/default-deny/default.ingress", Source: "shop/intruder", SrcPort: 40001, Destination: "shop/web", Protocol: model.ProtocolTCP, Port: 80},
	}); err != nil {
		t.Fatal(err)
	}
	sts, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, st := range sts {
		for _, b := range st.Breaks {
			got[st.Workload+" "+b.Destination] = b.RuleID + " = " + strings.Join(b.DecidedBy, ", ")
		}
	}
	want := map[string]string{
		"shop/db shop/db":        multi + " = NetworkPolicy shop/default-deny, NetworkPolicy shop/web-to-db",
		"shop/intruder shop/db":  multi + " = NetworkPolicy shop/default-deny, NetworkPolicy shop/web-to-db",
		"shop/web shop/web":      "np/shop/default-deny/default.ingress = NetworkPolicy shop/default-deny",
		"shop/intruder shop/web": "np/shop/default-deny/default.ingress = NetworkPolicy shop/default-deny",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("status of %s: %q, want %q", k, got[k], w)
		}
	}
	ids, err := f.svc.RuleIDs()
	if err != nil || strings.Join(ids[multi], ", ") != "NetworkPolicy shop/default-deny, NetworkPolicy shop/web-to-db" {
		t.Errorf("RuleIDs()[%s] = %v, %v", multi, ids[multi], err)
	}
}

// TestEvidenceNamesNetworkPoliciesAndDeciders: the evidence bundle lists
// the NetworkPolicies in force and their records, and each denied flow
// names the policies its rule id stands for.
func TestEvidenceNamesNetworkPoliciesAndDeciders(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.Apply(context.Background(), "deny.yaml", []byte(defaultDeny), "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.DeleteNetworkPolicy(context.Background(), "shop", "web-to-db", "ops"); err != nil {
		t.Fatal(err)
	}
	id := "np/shop/default-deny/default.ingress"
	f.node.DefaultIDs = map[string][]policies.PolicyRef{id: {{Kind: "NetworkPolicy", Namespace: "shop", Name: "default-deny"}}}
	if err := f.mem.AddVerdicts([]model.VerdictEvent{{At: time.Now(), Endpoint: "web-0", Verdict: "deny", RuleID: id,
		Source: "shop/intruder", SrcPort: 40000, Destination: "shop/web", Protocol: model.ProtocolTCP, Port: 80}}); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Export(context.Background(), controller.ExportRequest{NoProbes: true, NoPDF: true}, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(res.Files["bundle.json"], &b); err != nil {
		t.Fatal(err)
	}
	if n := b.Policies.NetworkPolicies; len(n) != 1 || n[0].Name != "default-deny" || n[0].By != "alice" || len(n[0].Policy) == 0 {
		t.Errorf("NetworkPolicies in force in the bundle = %+v", n)
	}
	if r := b.Policies.NetworkPolicyRecords; len(r) != 3 || r[2].Action != "delete" || r[2].By != "ops" {
		t.Errorf("NetworkPolicy records in the bundle = %+v, want default-deny applied, web-to-db applied and deleted", r)
	}
	if fl := b.Denied.Flows; len(fl) != 1 || strings.Join(fl[0].DecidedBy, ",") != "NetworkPolicy shop/default-deny" {
		t.Errorf("denied flows = %+v, want decided by NetworkPolicy shop/default-deny", fl)
	}
	if !strings.Contains(string(res.Files["report.html"]), "NetworkPolicy shop/default-deny") {
		t.Errorf("the HTML report does not name the NetworkPolicy")
	}
}

// TestApplyStoresClusterNetworkPolicy: a ClusterNetworkPolicy is stored
// beside the NetworkPolicy of its document and is in force at once (the
// node receives it with the other policies); an invalid one stores
// nothing.
func TestApplyStoresClusterNetworkPolicy(t *testing.T) {
	f := newFixture(t)
	guard := `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}
`
	bad := strings.Replace(guard, "action: Deny", "action: Allow", 1)
	if _, err := f.svc.Apply(context.Background(), "cnp.yaml", []byte(defaultDeny+"---\n"+bad), "alice"); !errors.Is(err, controller.ErrInvalid) || !strings.Contains(err.Error(), "spec.ingress[0].action") {
		t.Fatalf("apply of an invalid ClusterNetworkPolicy: %v", err)
	}
	if nps, err := f.svc.NetworkPolicies(); err != nil || len(nps) != 0 {
		t.Fatalf("NetworkPolicies after a refused apply: %v, %v", nps, err)
	}
	res, err := f.svc.Apply(context.Background(), "cnp.yaml", []byte(defaultDeny+"---\n"+guard), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ClusterNetworkPolicies) != 1 || res.ClusterNetworkPolicies[0] != (controller.ClusterNetworkPolicyResult{Name: "guard", Tier: "Admin", Priority: 1, Revision: 1}) {
		t.Errorf("result: %+v", res.ClusterNetworkPolicies)
	}
	in, err := f.svc.InForce()
	if err != nil || len(in.ClusterNetworkPolicies) != 1 || in.ClusterNetworkPolicies[0].Name != "guard" {
		t.Fatalf("in force: %+v, %v", in.ClusterNetworkPolicies, err)
	}
	set, err := in.Set()
	if err != nil || len(set.ClusterPolicies()) != 1 {
		t.Fatalf("set: %v", err)
	}
	// The world `policy explain` and `matrix` read from the agent (or,
	// in a cluster, from the CLI's in-process service) carries it too.
	if w, err := f.svc.World(); err != nil || len(w.ClusterNetworkPolicies) != 1 || w.ClusterNetworkPolicies[0].Name != "guard" {
		t.Fatalf("world: %+v, %v", w.ClusterNetworkPolicies, err)
	}
	res, err = f.svc.Apply(context.Background(), "cnp.yaml", []byte(guard), "alice")
	if err != nil || len(res.ClusterNetworkPolicies) != 1 || !res.ClusterNetworkPolicies[0].Unchanged {
		t.Fatalf("second apply: %+v, %v", res, err)
	}
}
