package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/store"
)

// guardDBDoc is an Admin ClusterNetworkPolicy: rule "no-intruder" denies
// shop/intruder reaching shop/db on 5432.
const guardDBDoc = `apiVersion: policy.networking.k8s.io/v1alpha2
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
`

// dbAllowsBoth is a nanosegment of shop/db allowing web and intruder.
const dbAllowsBoth = `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  ingress:
    - id: from-web
      peers: [{podSelector: {matchLabels: {app: web}}}]
      ports: [{protocol: TCP, port: 5432}]
    - id: from-intruder
      peers: [{podSelector: {matchLabels: {app: intruder}}}]
      ports: [{protocol: TCP, port: 5432}]
`

// TestClusterNetworkPolicyCommands: with an Admin Deny in force, `policy
// propose` leaves the forbidden edge out and names the rule; `policy
// diff` lists it and the nanosegment rule it shadows; `policy show
// clusternetworkpolicy` prints it as applied, `policy export --to
// clusternetworkpolicy` writes that back byte for byte, and applying it
// again changes nothing; `policy delete clusternetworkpolicy` ends it: the
// node receives the policies without it, and a second delete fails.
func TestClusterNetworkPolicyCommands(t *testing.T) {
	node := &controllertest.Node{}
	mem, _, ts := testAgent(t, node)
	dir := t.TempDir()
	write := func(name, doc string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := runAgainst(t, ts.URL, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	if out := run("policy", "show", "clusternetworkpolicy"); out != "no ClusterNetworkPolicy in force\n" {
		t.Errorf("policy show clusternetworkpolicy with none in force: %q", out)
	}
	if out := run("policy", "apply", "--help"); !strings.Contains(out, "-f, --file stringArray") {
		t.Errorf("policy apply --help names the --file value oddly:\n%s", out)
	}
	run("policy", "apply", "-f", write("guard.yaml", guardDBDoc))
	t0 := time.Now().Add(-10 * time.Second)
	peer := func(w string) model.Peer {
		return model.Peer{Namespace: "shop", Workload: w, Labels: map[string]string{"app": w}}
	}
	if err := mem.MergeEdges([]model.Edge{
		{Source: peer("web"), Destination: peer("db"), Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0, Flows: 3}},
		{Source: peer("intruder"), Destination: peer("db"), Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{FirstSeen: t0, LastSeen: t0, Flows: 2}},
	}); err != nil {
		t.Fatal(err)
	}
	out := run("policy", "propose")
	want := `shop/intruder -> shop/db TCP/5432: forbidden by ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0 "no-intruder" (on ingress)`
	if !strings.Contains(out, "left out, because an Admin ClusterNetworkPolicy rule denies them") || !strings.Contains(out, want) {
		t.Errorf("policy propose does not name the forbidding rule:\n%s", out)
	}
	run("policy", "apply", "-f", write("db.yaml", dbAllowsBoth))
	out = run("policy", "diff")
	for _, w := range []string{"observed flows an Admin ClusterNetworkPolicy rule denies (never proposed): 1",
		"rules shadowed by an Admin ClusterNetworkPolicy rule (decided before them): 1",
		`NanoSegment shop/db rule from-intruder can never allow shop{app=intruder} -> shop{app=db} TCP/5432: shadowed by ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0 "no-intruder"`} {
		if !strings.Contains(out, w) {
			t.Errorf("policy diff lacks %q:\n%s", w, out)
		}
	}
	if out = run("policy", "show"); !strings.Contains(out, "CLUSTERNETWORKPOLICY") || !strings.Contains(out, "guard-db") || !strings.Contains(out, "Admin") {
		t.Errorf("policy show does not list the ClusterNetworkPolicy:\n%s", out)
	}
	shown := run("policy", "show", "clusternetworkpolicy", "guard-db")
	// Its record as a comment, then exactly as applied: the fields of
	// guardDBDoc, no "status: {}".
	header, shown, ok := strings.Cut(shown, "# in force since ")
	if !ok || !regexp.MustCompile(`^# ClusterNetworkPolicy guard-db record 1: apply by \S+ at \d{4}-\d\d-\d\dT\S+Z\n$`).MatchString(header) {
		t.Fatalf("policy show clusternetworkpolicy guard-db: records header %q", header)
	}
	_, shown, _ = strings.Cut(shown, "\n")
	wantShown := `apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: guard-db
spec:
  ingress:
  - action: Deny
    from:
    - pods:
        namespaceSelector: {}
        podSelector:
          matchLabels:
            app: intruder
    name: no-intruder
    protocols:
    - tcp:
        destinationPort:
          number: 5432
  priority: 7
  subject:
    pods:
      namespaceSelector: {}
      podSelector:
        matchLabels:
          app: db
  tier: Admin
`
	if shown != wantShown {
		t.Fatalf("policy show clusternetworkpolicy:\n%s\nwant\n%s", shown, wantShown)
	}
	exported, err := runAgainst(t, ts.URL, "policy", "export", "--to", "clusternetworkpolicy", write("shown.yaml", shown))
	if err != nil || exported != shown {
		t.Fatalf("export --to clusternetworkpolicy of what show printed: %v\n%s\nwant\n%s", err, exported, shown)
	}
	if out = run("policy", "apply", "-f", write("exported.yaml", exported)); !strings.Contains(out, "ClusterNetworkPolicy guard-db (Admin, priority 7): unchanged, revision 1, enforced") {
		t.Errorf("applying what show printed and export wrote changed it:\n%s", out)
	}
	// The graph marks the edge the Admin Deny decides, and only it.
	out = run("graph", "-o", "json")
	if !strings.Contains(out, `"decidedBy": {`) || !strings.Contains(out, `"policy": "guard-db"`) || strings.Count(out, `"decidedBy"`) != 1 {
		t.Errorf("graph -o json does not mark the intruder -> db edge alone:\n%s", out)
	}
	if out = run("graph", "-o", "dot"); !strings.Contains(out, `* Admin guard-db (priority 7) ingress-0 \"no-intruder\": Deny", tier="Admin"`) {
		t.Errorf("graph -o dot does not mark the edge:\n%s", out)
	}
	// In audit mode the Deny only logs: the graph says so (JSON, dot, and
	// so the static HTML export, which reads the JSON).
	run("promote", "shop/db", "--to", "audit", "--reason", "try")
	if out = run("graph", "-o", "json"); !strings.Contains(out, `"audited": true`) || strings.Count(out, `"decidedBy"`) != 1 {
		t.Errorf("graph -o json does not mark the Admin Deny audited for db in audit mode:\n%s", out)
	}
	if out = run("graph", "-o", "dot"); !strings.Contains(out, `* Admin guard-db (priority 7) ingress-0 \"no-intruder\": Deny (audit mode: logged, not dropped)", tier="Admin"`) {
		t.Errorf("graph -o dot does not say the Deny is audited:\n%s", out)
	}
	if out = run("graph", "-o", "graphml"); !strings.Contains(out, `<data key="audited">true</data>`) {
		t.Errorf("graph -o graphml does not say the Deny is audited:\n%s", out)
	}
	run("promote", "shop/db", "--to", "enforce", "--reason", "back")
	if out = run("graph", "-o", "json"); strings.Contains(out, `"audited"`) {
		t.Errorf("graph -o json marks the Deny audited once db enforces:\n%s", out)
	}
	before := len(node.Enforced())
	out = run("policy", "delete", "clusternetworkpolicy", "guard-db")
	if !strings.Contains(out, "ClusterNetworkPolicy guard-db (Admin, priority 7) deleted (record 2, by ") || !strings.Contains(out, "name: no-intruder") {
		t.Errorf("policy delete clusternetworkpolicy:\n%s", out)
	}
	enf := node.Enforced()
	if len(enf) <= before || len(enf[len(enf)-1].ClusterNetworkPolicies) != 0 {
		t.Errorf("the node was not handed the policies without guard-db (%d enforces before, %d after)", before, len(enf))
	}
	if cnps, _ := mem.ClusterNetworkPolicies(); len(cnps) != 0 {
		t.Errorf("still stored after delete: %+v", cnps)
	}
	if out, err := runAgainst(t, ts.URL, "policy", "delete", "cnp", "guard-db"); err == nil || !strings.Contains(err.Error(), "not found: none of that name is in force") {
		t.Errorf("deleting it again: %v\n%s", err, out)
	}
	// Deleted: show prints both records and that it is not in force.
	out = run("policy", "show", "cnp", "guard-db")
	if !regexp.MustCompile(`(?m)^# ClusterNetworkPolicy guard-db record 1: apply by \S+ at \S+Z\n# ClusterNetworkPolicy guard-db record 2: delete by \S+ at \S+Z\n# not in force \(deleted\)\n\z`).MatchString(out) {
		t.Errorf("policy show cnp guard-db after the delete:\n%s", out)
	}
	if out, err := runAgainst(t, ts.URL, "policy", "show", "cnp", "never"); err == nil || !strings.Contains(err.Error(), "ClusterNetworkPolicy never was never applied") {
		t.Errorf("show of one never applied: %v\n%s", err, out)
	}
	if out = run("policy", "propose"); strings.Contains(out, "forbidden by") {
		t.Errorf("after the delete, propose still leaves the edge out:\n%s", out)
	}
}

// TestOfflineProposeLeavesOutForbidden: `policy propose --edges FILE
// --policies cnp.yaml` leaves out the edges an Admin Deny of the files
// forbids and lists them with the rule.
func TestOfflineProposeLeavesOutForbidden(t *testing.T) {
	dir := t.TempDir()
	peer := func(w string) model.Peer {
		return model.Peer{Namespace: "shop", Workload: w, Labels: map[string]string{"app": w}}
	}
	raw, err := json.Marshal([]model.Edge{
		{Source: peer("web"), Destination: peer("db"), Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{Flows: 3}},
		{Source: peer("intruder"), Destination: peer("db"), Protocol: model.ProtocolTCP, Port: 5432, Traffic: model.Traffic{Flows: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	edges, cnp := filepath.Join(dir, "edges.json"), filepath.Join(dir, "guard.yaml")
	if err := os.WriteFile(edges, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cnp, []byte(guardDBDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runPolicy(t, "propose", "--edges", edges)
	if err != nil || !strings.Contains(out, "app: intruder") {
		t.Fatalf("propose without policies: %v\n%s", err, out)
	}
	out, err = runPolicy(t, "propose", "--edges", edges, "--policies", cnp)
	want := `left out: shop{app=intruder} -> shop{app=db} TCP/5432: forbidden by ClusterNetworkPolicy guard-db (Admin, priority 7) rule ingress-0 "no-intruder" (on ingress)`
	if err != nil || !strings.Contains(out, want) || strings.Contains(out, "app: intruder") || !strings.Contains(out, "app: web") {
		t.Errorf("propose --policies:\n%v\n%s", err, out)
	}
}

// TestShowUpgradedClusterNetworkPolicy: a record from a store upgraded
// from before records (by store.ByUnknown, zero time) says so.
func TestShowUpgradedClusterNetworkPolicy(t *testing.T) {
	mem, _, ts := testAgent(t, &controllertest.Node{})
	objs, err := policies.ParseObjects("guard.yaml", []byte(guardDBDoc))
	if err != nil {
		t.Fatal(err)
	}
	cnps := policies.ClusterNetworkPolicies(objs)
	if _, err := mem.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, By: store.ByUnknown, Policy: &cnps[0]}); err != nil {
		t.Fatal(err)
	}
	out, err := runAgainst(t, ts.URL, "policy", "show", "clusternetworkpolicy", "guard-db")
	want := "# ClusterNetworkPolicy guard-db record 1: apply by (unknown: in force before records were kept) at an unknown time\n# in force since an unknown time\napiVersion: policy.networking.k8s.io/v1alpha2\n"
	if err != nil || !strings.HasPrefix(out, want) {
		t.Errorf("policy show of an upgraded record: %v\n%s\nwant it to start with\n%s", err, out, want)
	}
}
