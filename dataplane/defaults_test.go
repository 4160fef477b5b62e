package dataplane

import (
	"testing"

	"github.com/google/nftables/expr"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// TestDefaultVerdictLogsTheDefaultID: in audit and enforce mode each policy
// chain's default verdict logs its direction's default id (the policies
// that isolated the endpoint), not the rule set's name; an empty default
// id falls back to the name; observe mode logs the name.
func TestDefaultVerdictLogsTheDefaultID(t *testing.T) {
	prefixes := func(rs RuleSet) map[string][]string {
		t.Helper()
		o, err := Render(rs)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, r := range o.Rules {
			for _, e := range r.Exprs {
				if l, ok := e.(*expr.Log); ok {
					out[r.Chain.Name] = append(out[r.Chain.Name], string(l.Data))
				}
			}
		}
		return out
	}
	rs := RuleSet{Name: "shop/web-0", Mode: model.ModeEnforce, IngressDefault: "np/shop/default-deny/default.ingress"}
	got := prefixes(rs)
	if want := verdictlog.Format(model.VerdictDeny, "np/shop/default-deny/default.ingress"); len(got[ChainIngress]) != 1 || got[ChainIngress][0] != want {
		t.Errorf("ingress default logs %v, want %q", got[ChainIngress], want)
	}
	if want := verdictlog.Format(model.VerdictDeny, "shop/web-0"); len(got[ChainEgress]) != 1 || got[ChainEgress][0] != want {
		t.Errorf("egress default (no default id) logs %v, want %q", got[ChainEgress], want)
	}
	rs.Mode, rs.EgressDefault = model.ModeAudit, "default/shop/egress.0a1b2c3d"
	if got := prefixes(rs)[ChainEgress]; len(got) != 1 || got[0] != verdictlog.Format(model.VerdictAuditDeny, "default/shop/egress.0a1b2c3d") {
		t.Errorf("audit egress default logs %v", got)
	}
	rs.Mode = model.ModeObserve
	if got := prefixes(rs)[ChainIngress]; len(got) != 1 || got[0] != verdictlog.Format(model.VerdictObserved, "shop/web-0") {
		t.Errorf("observe logs %v, want the rule set name", got)
	}
	if err := (RuleSet{Name: "x", Mode: model.ModeEnforce, IngressDefault: "bad:id"}).Validate(); err == nil {
		t.Errorf("a default id outside the alphabet validates")
	}
	if (RuleSet{Name: "x", Mode: model.ModeEnforce}).Equal(RuleSet{Name: "x", Mode: model.ModeEnforce, EgressDefault: "y"}) {
		t.Errorf("rule sets with different default ids are equal")
	}
}
