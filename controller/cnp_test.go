package controller_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

// guardDB is a ClusterNetworkPolicy of tier TIER whose ingress rule
// "no-intruder" (ACTION) covers shop/intruder reaching shop/db on 5432.
const guardDB = `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard-db}
spec:
  tier: TIER
  priority: 7
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
    - name: no-intruder
      action: ACTION
      from: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: intruder}}}}]
      protocols: [{tcp: {destinationPort: {number: 5432}}}]
`

func guard(tier, action string) string {
	return strings.NewReplacer("TIER", tier, "ACTION", action).Replace(guardDB)
}

// applyCNP applies doc and fails the test on error.
func (f fixture) applyCNP(t *testing.T, doc string) {
	t.Helper()
	if _, err := f.svc.Apply(context.Background(), "cnp.yaml", []byte(doc), "alice"); err != nil {
		t.Fatalf("apply ClusterNetworkPolicy: %v", err)
	}
}

// ingressPeers returns the app labels of the peers of w's proposed
// ingress rules.
func ingressPeers(rep controller.ProposeReport, w string) []string {
	var out []string
	for _, p := range rep.Proposals {
		if p.Workload != w {
			continue
		}
		for _, r := range p.Revision.Policy.Spec.Ingress {
			for _, peer := range r.Peers {
				if peer.PodSelector != nil {
					out = append(out, peer.PodSelector.MatchLabels["app"])
				}
			}
		}
	}
	return out
}

// TestProposeLeavesOutWhatAnAdminDenyForbids: an observed edge that an
// Admin Deny forbids is not proposed, with or without --include-denied,
// and the report names the tier, policy, priority and rule; an Admin
// Accept or Pass, or a Baseline Deny (the nanosegment's tier decides
// before Baseline), leaves nothing out.
func TestProposeLeavesOutWhatAnAdminDenyForbids(t *testing.T) {
	for _, tc := range []struct {
		tier, action string
		forbidden    bool
	}{
		{"Admin", "Deny", true},
		{"Admin", "Accept", false},
		{"Admin", "Pass", false},
		{"Baseline", "Deny", false},
	} {
		t.Run(tc.tier+tc.action, func(t *testing.T) {
			f := newFixture(t)
			f.applyCNP(t, guard(tc.tier, tc.action))
			if err := f.mem.MergeEdges([]model.Edge{
				recent("web", "db", 5432, model.VerdictCounts{Observed: 3}),
				recent("intruder", "db", 5432, model.VerdictCounts{Observed: 2}),
			}); err != nil {
				t.Fatal(err)
			}
			for _, includeDenied := range []bool{false, true} {
				rep, err := f.svc.Propose(0, includeDenied, "alice")
				if err != nil {
					t.Fatal(err)
				}
				peers := ingressPeers(rep, "shop/db")
				if !tc.forbidden {
					if len(rep.Forbidden) != 0 || !strings.Contains(strings.Join(peers, ","), "intruder") {
						t.Fatalf("includeDenied=%v: forbidden %v, db ingress peers %v: want intruder proposed, nothing forbidden", includeDenied, rep.Forbidden, peers)
					}
					continue
				}
				if strings.Contains(strings.Join(peers, ","), "intruder") || !strings.Contains(strings.Join(peers, ","), "web") {
					t.Errorf("includeDenied=%v: db ingress peers %v: want web only", includeDenied, peers)
				}
				want := policies.ForbiddenEdge{Edge: "shop/intruder -> shop/db TCP/5432", Direction: model.Ingress, Flows: 1,
					Rule: policies.ClusterRuleRef{Policy: policies.PolicyRef{Kind: "ClusterNetworkPolicy", Name: "guard-db"}, Tier: cnpv1alpha2.TierAdmin,
						Priority: 7, Rule: "ingress-0", Name: "no-intruder", Action: cnpv1alpha2.ActionDeny}}
				if len(rep.Forbidden) != 1 || rep.Forbidden[0] != want {
					t.Fatalf("includeDenied=%v: forbidden = %+v, want [%+v]", includeDenied, rep.Forbidden, want)
				}
				s := rep.Forbidden[0].String()
				for _, part := range []string{"guard-db", "Admin", "priority 7", "ingress-0", "no-intruder"} {
					if !strings.Contains(s, part) {
						t.Errorf("%q does not name %s", s, part)
					}
				}
			}
			inf, err := f.svc.Infer(0, false)
			if err != nil {
				t.Fatal(err)
			}
			for k, why := range inf.LeftOut {
				if tc.forbidden != strings.HasPrefix(why, controller.LeftOutForbidden) {
					t.Errorf("left out %s: %q", k, why)
				}
			}
			if tc.forbidden && len(inf.LeftOut) != 1 {
				t.Errorf("left out: %v, want the intruder edge", inf.LeftOut)
			}
		})
	}
}

// TestEvidenceListsClusterNetworkPoliciesAndProbesAdminDenies: the
// evidence bundle lists the ClusterNetworkPolicies in force in evaluation
// order with each rule's kernel hits (summed over the endpoints holding
// its counter), and the probe run has one check per Admin Deny rule: a
// probe of a path the rule decides (intruder -> db 5432, probed even with
// a budget of one probe, which goes to another path), held when it was
// blocked; a Deny rule deciding no path of the inventory is listed with
// a note. The report shows both.
func TestEvidenceListsClusterNetworkPoliciesAndProbesAdminDenies(t *testing.T) {
	f := newFixture(t)
	f.applyCNP(t, guard("Admin", "Deny"))
	f.applyCNP(t, `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: baseline-web}
spec:
  tier: Baseline
  priority: 1
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}
  ingress:
    - {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 80}}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: unused-guard}
spec:
  tier: Admin
  priority: 9
  subject: {namespaces: {}}
  egress:
    - {action: Deny, to: [{networks: [198.19.0.0/16]}]}
`)
	id := "cnp/admin/guard-db/ingress-0"
	f.node.Counters = map[string]map[string]evidence.Count{"db-0": {id: {Packets: 7, Bytes: 420}}}
	f.node.Reach = func(src model.Endpoint, proto string, addr netip.AddrPort) bool { return src.Workload != "intruder" }
	res, err := f.svc.Export(context.Background(), controller.ExportRequest{NoPDF: true, Probe: controller.VerifyRequest{MaxProbes: 1}}, "auditor")
	if err != nil {
		t.Fatal(err)
	}
	var b evidence.Bundle
	if err := json.Unmarshal(res.Files["bundle.json"], &b); err != nil {
		t.Fatal(err)
	}
	cnps := b.Policies.ClusterNetworkPolicies
	var order []string
	for _, c := range cnps {
		order = append(order, c.Name)
	}
	if strings.Join(order, ",") != "guard-db,unused-guard,baseline-web" {
		t.Fatalf("ClusterNetworkPolicies in the bundle: %v, want Admin by priority, then Baseline", order)
	}
	r := cnps[0].Rules
	if len(r) != 1 || r[0].RuleID != id || r[0].Name != "no-intruder" || r[0].Action != "Deny" || r[0].Endpoints != 1 ||
		r[0].TotalPackets != 7 || r[0].WindowPackets != 7 || len(cnps[0].Policy) == 0 {
		t.Errorf("guard-db rules in the bundle: %+v", r)
	}
	if b.Probes == nil || len(b.Probes.AdminDenies) != 2 {
		t.Fatalf("admin deny checks: %+v", b.Probes)
	}
	held, none := b.Probes.AdminDenies[0], b.Probes.AdminDenies[1]
	if held.Policy != "guard-db" || held.Rule != "ingress-0" || held.Priority != 7 || held.Probe == nil || !held.Held ||
		held.Probe.Source != "shop/intruder" || held.Probe.Destination != "shop/db" || held.Probe.Port != 5432 || !strings.Contains(held.Probe.DecidedBy, "guard-db") {
		t.Errorf("guard-db check: %+v (probe %+v)", held, held.Probe)
	}
	if none.Policy != "unused-guard" || none.Probe != nil || none.Note == "" {
		t.Errorf("unused-guard check: %+v", none)
	}
	if b.Probes.Probed != 2 {
		t.Errorf("probed %d paths with a budget of 1, want 2 (the sample and the Admin Deny's path)", b.Probes.Probed)
	}
	html := string(res.Files["report.html"])
	for _, want := range []string{"ClusterNetworkPolicies in force", "Admin Deny rules, checked live", "1 of 1 Admin Deny rule", "no-intruder"} {
		if !strings.Contains(html, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if !strings.Contains(string(res.Files["cluster-network-policy-rules.csv"]), "guard-db,Admin,7,ingress-0,no-intruder,Ingress,Deny,"+id+",1,7,420,7,420") {
		t.Errorf("cluster-network-policy-rules.csv:\n%s", res.Files["cluster-network-policy-rules.csv"])
	}
}

// TestDeleteClusterNetworkPolicy: deleting one ends it at once (the node
// is handed the policies without it), tells the change feed, and answers
// the policy as it was; one not in force is ErrNotFound, no name
// ErrInvalid.
func TestDeleteClusterNetworkPolicy(t *testing.T) {
	f := newFixture(t)
	f.applyCNP(t, guard("Admin", "Deny"))
	// verdicts' DECIDED BY reads RuleIDs: an Admin Deny's rule id names
	// the policy, tier, priority and rule while it is in force.
	id := "cnp/admin/guard-db/ingress-0"
	ids, err := f.svc.RuleIDs()
	if want := `ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0 "no-intruder"`; err != nil || !slices.Equal(ids[id], []string{want}) {
		t.Errorf("RuleIDs()[%s] = %q, %v; want %q", id, ids[id], err, want)
	}
	sub := f.svc.Changes().Subscribe()
	defer f.svc.Changes().Unsubscribe(sub)
	res, err := f.svc.DeleteClusterNetworkPolicy(context.Background(), "guard-db", "ops")
	if err != nil || !res.Converged || res.By != "ops" || res.Policy == nil || res.Policy.Spec.Priority != 7 || res.Tier != "Admin" {
		t.Fatalf("delete: %+v, %v", res, err)
	}
	enf := f.node.Enforced()
	if len(enf) == 0 || len(enf[len(enf)-1].ClusterNetworkPolicies) != 0 {
		t.Errorf("the node was not handed the policies without guard-db")
	}
	if ids, err := f.svc.RuleIDs(); err != nil || ids[id] != nil {
		t.Errorf("RuleIDs()[%s] after the delete = %q, %v; want none", id, ids[id], err)
	}
	if _, topics := sub.Take(); !slices.Contains(topics, controller.TopicPolicies) {
		t.Errorf("change feed topics after the delete: %v, want %s", topics, controller.TopicPolicies)
	}
	if _, err := f.svc.DeleteClusterNetworkPolicy(context.Background(), "guard-db", "ops"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := f.svc.DeleteClusterNetworkPolicy(context.Background(), "", "ops"); !errors.Is(err, controller.ErrInvalid) {
		t.Errorf("delete without a name: %v, want ErrInvalid", err)
	}
}

// TestEvidenceAdminDenyOnAuditWorkload (issue 15): with shop/db in audit
// mode, the Admin Deny guarding it is logged as audit-deny, not dropped:
// the bundle's check probes intruder -> db 5432 (expected to connect),
// never calls the rule held, names shop/db as the workload in audit mode,
// and the report says the rule is not enforced there. Once shop/db is
// promoted to enforce the same probe is expected blocked and the rule
// held.
func TestEvidenceAdminDenyOnAuditWorkload(t *testing.T) {
	f := newFixture(t)
	f.apply(t, "5432")
	f.promote(t, model.ModeAudit, 1)
	f.applyCNP(t, guard("Admin", "Deny"))
	mode := model.ModeAudit
	// The fake node acts as the kernel: intruder reaches db while db is
	// in audit mode, and not once it enforces.
	f.node.Reach = func(src model.Endpoint, proto string, addr netip.AddrPort) bool {
		return src.Workload != "intruder" || mode == model.ModeAudit
	}
	export := func() (evidence.Bundle, string) {
		t.Helper()
		res, err := f.svc.Export(context.Background(), controller.ExportRequest{NoPDF: true, Probe: controller.VerifyRequest{MaxProbes: 1}}, "auditor")
		if err != nil {
			t.Fatal(err)
		}
		var b evidence.Bundle
		if err := json.Unmarshal(res.Files["bundle.json"], &b); err != nil {
			t.Fatal(err)
		}
		if b.Probes == nil || len(b.Probes.AdminDenies) != 1 {
			t.Fatalf("admin deny checks: %+v", b.Probes)
		}
		return b, string(res.Files["report.html"])
	}
	b, html := export()
	c := b.Probes.AdminDenies[0]
	if c.Held || c.Probe == nil || c.Probe.Source != "shop/intruder" || c.Probe.Destination != "shop/db" || c.Probe.Port != 5432 ||
		c.Probe.Expected != model.VerdictAuditDeny || !c.Probe.ExpectReach || !c.Probe.Reached || !c.Probe.Match {
		t.Errorf("audit: check %+v, probe %+v; want an unheld, matching audit-deny probe of intruder -> db 5432", c, c.Probe)
	}
	if !slices.Equal(c.Audited, []string{"shop/db"}) || !strings.Contains(c.Note, "logged as audit-deny, not dropped: the workload shop/db is in audit mode") {
		t.Errorf("audit: audited %v, note %q", c.Audited, c.Note)
	}
	if !strings.Contains(c.Probe.Reason, "shop/db-0 is in audit mode: logged as audit-deny, not dropped") {
		t.Errorf("audit: probe reason %q does not say the workload is in audit mode", c.Probe.Reason)
	}
	if b.Probes.Mismatches != 0 {
		t.Errorf("audit: %d mismatches", b.Probes.Mismatches)
	}
	for _, want := range []string{"0 of 1 Admin Deny rule", "not enforced on workloads in audit mode", "the workload shop/db is in audit mode"} {
		if !strings.Contains(html, want) {
			t.Errorf("audit: report.html lacks %q", want)
		}
	}
	want := `ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0 "no-intruder"`
	if st := workloadStatus(t, f, "shop/db"); !slices.Equal(st.AuditedDenies, []string{want}) {
		t.Errorf("audit: status of shop/db: audited denies %q, want %q", st.AuditedDenies, want)
	}
	if st := workloadStatus(t, f, "shop/intruder"); len(st.AuditedDenies) != 0 {
		t.Errorf("audit: status of shop/intruder: audited denies %q", st.AuditedDenies)
	}
	f.promote(t, model.ModeEnforce, 1)
	mode = model.ModeEnforce
	if st := workloadStatus(t, f, "shop/db"); len(st.AuditedDenies) != 0 {
		t.Errorf("enforce: status of shop/db: audited denies %q", st.AuditedDenies)
	}
	b, html = export()
	c = b.Probes.AdminDenies[0]
	if !c.Held || c.Probe == nil || c.Probe.Expected != model.VerdictDeny || c.Probe.Reached || len(c.Audited) != 0 || c.Note != "" {
		t.Errorf("enforce: check %+v, probe %+v; want held, no audit note", c, c.Probe)
	}
	if !strings.Contains(html, "1 of 1 Admin Deny rule") || strings.Contains(html, "not enforced on workloads in audit mode") {
		t.Errorf("enforce: report.html does not show the rule held")
	}
}

// workloadStatus returns the status of workload w.
func workloadStatus(t *testing.T, f fixture, w string) controller.WorkloadStatus {
	t.Helper()
	st, err := f.svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.Workload == w {
			return s
		}
	}
	t.Fatalf("no status of %s", w)
	return controller.WorkloadStatus{}
}

// TestEdgeDecisions: the page's marks. Without a ClusterNetworkPolicy no
// edge is decided by one; under an Admin Deny of intruder -> db 5432 that
// edge (and no other) is listed with the rule, denied while db has no
// policy, audit-denied and marked audited once db is in audit mode; a
// Baseline Deny decides it too (nothing isolates db), and an Admin Pass
// decides nothing.
func TestEdgeDecisions(t *testing.T) {
	f := newFixture(t)
	if err := f.mem.MergeEdges([]model.Edge{
		recent("web", "db", 5432, model.VerdictCounts{Observed: 3}),
		recent("intruder", "db", 5432, model.VerdictCounts{Observed: 2}),
	}); err != nil {
		t.Fatal(err)
	}
	decided := func() []controller.EdgeDecision {
		t.Helper()
		ds, err := f.svc.EdgeDecisions(0)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	if ds := decided(); len(ds) != 0 {
		t.Fatalf("no ClusterNetworkPolicy: decisions %+v, want none", ds)
	}
	check := func(what string, action model.Verdict, audited bool, tier cnpv1alpha2.Tier) {
		t.Helper()
		ds := decided()
		if len(ds) != 1 {
			t.Fatalf("%s: decisions %+v, want the intruder edge only", what, ds)
		}
		d := ds[0]
		if d.Source.String() != "shop/intruder" || d.Destination.String() != "shop/db" || d.Protocol != model.ProtocolTCP || d.Port != 5432 ||
			d.Action != action || d.Audited != audited || d.Rule.Tier != tier || d.Rule.Policy.Name != "guard-db" ||
			d.Rule.Rule != "ingress-0" || d.Rule.Name != "no-intruder" || d.Rule.Action != cnpv1alpha2.ActionDeny {
			t.Errorf("%s: decision %+v, want intruder -> db TCP/5432 %s (audited %v) by %s guard-db ingress-0", what, d, action, audited, tier)
		}
	}
	f.applyCNP(t, guard("Admin", "Deny"))
	check("Admin Deny, db without policy", model.VerdictDeny, false, cnpv1alpha2.TierAdmin)
	f.apply(t, "5432")
	f.promote(t, model.ModeAudit, 1)
	check("Admin Deny, db in audit", model.VerdictAuditDeny, true, cnpv1alpha2.TierAdmin)
	f.applyCNP(t, guard("Baseline", "Deny"))
	if ds := decided(); len(ds) != 0 {
		t.Errorf("Baseline Deny while db's nanosegment isolates it: decisions %+v, want none (the nanosegment decides)", ds)
	}
	f.applyCNP(t, guard("Admin", "Pass"))
	if ds := decided(); len(ds) != 0 {
		t.Errorf("Admin Pass: decisions %+v, want none", ds)
	}
}
