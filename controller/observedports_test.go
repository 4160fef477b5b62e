package controller_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
)

const intruderPolicy = `apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: intruder, namespace: shop}
spec:
  selector: {matchLabels: {app: intruder}}
  ingress:
    - id: from-db
      peers: [{podSelector: {matchLabels: {app: db}}}]
      ports: [{protocol: TCP, port: 8080}]
`

// TestChangeUsesObservedPortsOfUndeclaredWorkload: intruder declares no
// port (a container run without --expose or -p); the paths enforcing its
// policy closes are those to the port it was observed serving (8080),
// not none; a port only ever refused (9999) is no path.
func TestChangeUsesObservedPortsOfUndeclaredWorkload(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.ApplyPolicies("intruder.yaml", []byte(intruderPolicy), "alice"); err != nil {
		t.Fatal(err)
	}
	refused := recent("web", "intruder", 9999, model.VerdictCounts{Observed: 1})
	refused.Failed, refused.Reset = 1, 1
	if err := f.mem.MergeEdges([]model.Edge{recent("web", "intruder", 8080, model.VerdictCounts{Observed: 2}), refused}); err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.Change(controller.ChangeTarget{Workload: "shop/intruder", Mode: model.ModeEnforce})
	if err != nil {
		t.Fatal(err)
	}
	want := controller.Change{Opened: []string{}, Closed: []string{"shop/web -> shop/intruder TCP/8080"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("enforce intruder: change (-want +got):\n%s", d)
	}
}
