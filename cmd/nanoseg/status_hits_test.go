package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/evidence"
)

// webFromFrontDoc is shop/web's NanoSegment with one ingress rule,
// from-front (port 80 from anywhere).
const webFromFrontDoc = `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  ingress:
    - id: from-front
      peers: [{namespaceSelector: {}}]
      ports: [{protocol: TCP, port: 80}]
`

// TestStatusRuleHitsSincePromotion: right after a promotion the kernel's
// counters are those of the rule set it installed, so `status` says
// "0 since promotion" for a promoted workload whose rules counted nothing
// yet, with a note naming it and where earlier traffic is; a workload
// with hits shows the number, one never promoted a plain 0.
func TestStatusRuleHitsSincePromotion(t *testing.T) {
	node := &controllertest.Node{Counters: map[string]map[string]evidence.Count{
		"web-0": {"from-front": {Packets: 5, Bytes: 300}}, "web-1": {"from-front": {Packets: 2, Bytes: 120}}}}
	_, svc, ts := testAgent(t, node)
	for _, doc := range []string{segDoc("db"), webFromFrontDoc} {
		if _, err := svc.ApplyPolicies("p.yaml", []byte(doc), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range []string{"shop/db", "shop/web"} {
		if out, err := runAgainst(t, ts.URL, "promote", w, "--to", "audit", "--reason", "learn"); err != nil {
			t.Fatalf("promote %s: %v\n%s", w, err, out)
		}
	}
	out, err := runAgainst(t, ts.URL, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{`(?m)^shop/db +audit +1 +1 +1/1 +0 since promotion +0 `, `(?m)^shop/web +audit +1 +2 +2/2 +7 +0 `, `(?m)^shop/intruder +observe +0 +1 +\S+ +0 +0 `} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status lacks a line matching %s:\n%s", re, out)
		}
	}
	if want := "\nRULE HITS 0 since promotion (shop/db): the kernel counts the rules of the rule set a promotion installs from 0; " +
		"traffic before it is in the observed edges (nanoseg graph), not in these counters\n"; !strings.Contains(out, want) {
		t.Errorf("status lacks the note %q:\n%s", want, out)
	}
}
