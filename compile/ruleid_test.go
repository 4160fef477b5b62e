package compile

import (
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
)

// TestRuleIDsRoundTripVerdictLog checks every shape of rule id the compiler
// emits (RuleID over both policy kinds, the shortest and longest
// namespaces, policy names and rule ids the API admits, and NetworkPolicy's
// generated rule ids) and the rule-set names of endpoints: each obeys the
// verdict-log alphabet and comes back from Parse(Format(verdict, id))
// unchanged, for every verdict, within the kernel's 127 prefix bytes.
func TestRuleIDsRoundTripVerdictLog(t *testing.T) {
	label63 := "a" + strings.Repeat("-z9", 20) + "b"           // DNS-1123 label, 62 bytes
	subdomain := strings.Repeat(label63+".", 3) + label63[:61] // DNS-1123 subdomain, 253 bytes
	namespaces := []string{"a", "shop", "kube-system", label63}
	names := []string{"a", "db", "allow-dns.v1", label63, subdomain}
	rules := []string{"x", "ingress-0", "egress-12", "from-shop-api", "to-payments-example-com", label63}
	var ids []string
	for _, kind := range []string{"NanoSegment", "NetworkPolicy"} {
		for _, ns := range namespaces {
			for _, name := range names {
				for _, rule := range rules {
					ids = append(ids, RuleID(policies.PolicyRef{Kind: kind, Namespace: ns, Name: name}, rule))
				}
			}
		}
	}
	// Rule-set names: "namespace/netns" (rulesets.go) and pod keys.
	ids = append(ids, "shop/nanoseg-lab-shop-shop-api-0", label63+"/"+label63[:36])
	for _, id := range ids {
		if err := verdictlog.ValidID(id); err != nil {
			t.Errorf("compiler id %q: %v", id, err)
			continue
		}
		for _, v := range model.Verdicts {
			p := verdictlog.Format(v, id)
			if len(p) > 127 {
				t.Errorf("prefix of %q is %d bytes", id, len(p))
			}
			gv, gid, err := verdictlog.Parse(p + "\x00")
			if err != nil || gv != v || gid != id {
				t.Errorf("Parse(Format(%s, %q)) = %q, %q, %v", v, id, gv, gid, err)
			}
		}
	}
}
