//go:build linux

package node

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/evidence"
	"github.com/nanoseg/nanoseg/model"
)

// dbAuditSegment is shop/db's nanosegment: ingress from app=client on
// 9090 only, so 5432 is left to the Admin tier.
const dbAuditSegment = `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  ingress:
    - id: metrics
      peers: [{podSelector: {matchLabels: {app: client}}}]
      ports: [{protocol: TCP, port: 9090}]
`

// TestAdminDenyAuditModeThroughNode (issue 15): the controller service
// over a real node, shop/db in audit mode under the Admin Deny of
// client -> db 5432. The kernel lets the connection through (audit-deny);
// the evidence bundle's live probe of the rule reaches db and the check
// is not held, naming shop/db as in audit mode; status lists the rule.
// Promoted to enforce, 5432 is dropped and the rule held.
func TestAdminDenyAuditModeThroughNode(t *testing.T) {
	tp, svc := nodeWithClient(t)
	ctx := context.Background()
	if _, err := svc.ApplyPolicies("db.yaml", []byte(dbAuditSegment), "alice"); err != nil {
		t.Fatal(err)
	}
	promote := func(to model.Mode) {
		t.Helper()
		res, err := svc.Promote(ctx, controller.PromoteRequest{Workload: "shop/db", To: to, Revision: 1, Reason: "test", Force: true, MinObserved: -1}, "ops")
		if err != nil || !res.Converged {
			t.Fatalf("promote shop/db to %s: %+v, %v", to, res, err)
		}
	}
	promote(model.ModeAudit)
	if res, err := svc.Apply(ctx, "guard.yaml", []byte(guardNetworkCNP), "alice"); err != nil || !res.Converged {
		t.Fatalf("apply: %+v, %v", res, err)
	}
	if !tp.open(5432) || !tp.open(9090) {
		t.Fatalf("audit mode under the Admin Deny: 5432 open %v, 9090 open %v; want both open", tp.open(5432), tp.open(9090))
	}
	check := func(mode model.Mode) evidence.AdminDenyCheck {
		t.Helper()
		exp, err := svc.Export(ctx, controller.ExportRequest{NoPDF: true, Probe: controller.VerifyRequest{TimeoutMS: 300, Parallel: 2}}, "auditor")
		if err != nil {
			t.Fatal(err)
		}
		var b evidence.Bundle
		if err := json.Unmarshal(exp.Files["bundle.json"], &b); err != nil {
			t.Fatal(err)
		}
		if b.Probes == nil || len(b.Probes.AdminDenies) != 1 {
			t.Fatalf("%s: probes: %+v", mode, b.Probes)
		}
		if b.Probes.Mismatches != 0 {
			t.Errorf("%s: %d mismatches: %+v", mode, b.Probes.Mismatches, b.Probes.Results)
		}
		c := b.Probes.AdminDenies[0]
		if c.Probe == nil || c.Probe.Port != 5432 || c.Probe.SourceNetns != tp.client.Name {
			t.Fatalf("%s: Admin Deny check %+v (probe %+v), want a probe client -> db 5432", mode, c, c.Probe)
		}
		return c
	}
	c := check(model.ModeAudit)
	if c.Held || !c.Probe.Reached || c.Probe.Expected != model.VerdictAuditDeny || !slices.Equal(c.Audited, []string{"shop/db"}) ||
		!strings.Contains(c.Note, "logged as audit-deny, not dropped") {
		t.Errorf("audit: check %+v (probe %+v), want not held, reached, shop/db audited", c, c.Probe)
	}
	sts, err := svc.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sts {
		if s.Workload == "shop/db" && (len(s.AuditedDenies) != 1 || !strings.Contains(s.AuditedDenies[0], "guard-net")) {
			t.Errorf("audit: status of shop/db lists audited denies %q, want guard-net's rule", s.AuditedDenies)
		}
	}
	promote(model.ModeEnforce)
	if tp.open(5432) || !tp.open(9090) {
		t.Errorf("enforce under the Admin Deny: 5432 open %v (want false), 9090 open %v (want true)", tp.open(5432), tp.open(9090))
	}
	if c := check(model.ModeEnforce); !c.Held || c.Probe.Reached || len(c.Audited) != 0 {
		t.Errorf("enforce: check %+v (probe %+v), want held", c, c.Probe)
	}
}
