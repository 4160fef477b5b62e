package policies

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

func loadEdges(t testing.TB, file string) []model.Edge {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var edges []model.Edge
	if err := json.Unmarshal(data, &edges); err != nil {
		t.Fatal(err)
	}
	return edges
}

func marshalSegments(t testing.TB, segs []v1alpha1.NanoSegment) []byte {
	t.Helper()
	var b strings.Builder
	for i, s := range segs {
		if i > 0 {
			b.WriteString("---\n")
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
	}
	return []byte(b.String())
}

// TestPropose checks the proposal of a three-tier shop against a golden
// file, that shuffled edges give the same bytes, that the proposal is valid,
// and that, enforced, it allows every observed edge and denies unobserved ones.
func TestPropose(t *testing.T) {
	edges := loadEdges(t, "testdata/edges/shop.json")
	known := []model.Identity{{Namespace: "shop", Labels: map[string]string{"app": "api", "tier": "canary"}}}
	segs := Propose(edges, known)
	out := marshalSegments(t, segs)
	golden(t, "shop.proposal.yaml", out)
	for i := 0; i < 5; i++ {
		sh := append([]model.Edge(nil), edges...)
		rand.Shuffle(len(sh), func(a, b int) { sh[a], sh[b] = sh[b], sh[a] })
		if again := marshalSegments(t, Propose(sh, known)); string(again) != string(out) {
			t.Fatal("shuffled edges give different output")
		}
	}
	if _, err := ParseObjects("proposal", out); err != nil {
		t.Fatalf("proposal does not parse back: %v", err)
	}
	// The api identity must need two labels (a canary api exists), the
	// others one.
	for _, s := range segs {
		want := 1
		if s.Name == "api" {
			want = 2
		}
		if got := len(s.Spec.Selector.MatchLabels); got != want {
			t.Errorf("%s/%s selector %v: want %d labels", s.Namespace, s.Name, s.Spec.Selector.MatchLabels, want)
		}
	}
	for i := range segs {
		segs[i].Spec.Mode = model.ModeEnforce
	}
	set, err := NewPolicySet(nil, segs)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Diff(nil, set, edges)
	if err != nil {
		t.Fatal(err)
	}
	// Only widened rules (DNS for workloads that never resolved) may go
	// unused.
	if len(rep.Denied) != 0 || len(rep.Unused) != 1 || rep.Unused[0].Rule != "to-kube-system-kube-dns" {
		t.Errorf("enforced proposal: denied %v, unused %v", rep.Denied, rep.Unused)
	}
	var all []inferEdge
	for _, e := range edges {
		ie, _ := inferable(e)
		all = append(all, ie)
	}
	w := newEdgeWorld(all)
	bad := edges[2] // api -> db 5432: try db -> api and api -> db 5433
	for _, e := range []model.Edge{{Source: bad.Destination, Destination: bad.Source, Protocol: model.ProtocolTCP, Port: 8080}, {Source: bad.Source, Destination: bad.Destination, Protocol: model.ProtocolTCP, Port: 5433}} {
		ie, _ := inferable(e)
		if v := Evaluate(w, set, w.connection(ie)); v.Action != model.VerdictDeny {
			t.Errorf("unobserved %s: got %s", ie.key(), v.Action)
		}
	}
}

func TestDiff(t *testing.T) {
	edges := loadEdges(t, "testdata/edges/shop.json")
	active := mustObjects(t, `
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
    - from: [{podSelector: {matchLabels: {app: api}}}]
      ports: [{port: 5433}]
    - from: [{podSelector: {matchLabels: {app: admin}}}]
`)
	rep, err := Diff(Propose(edges, nil), active, edges)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	golden(t, "shop.diff.json", append(out, '\n'))
	if len(rep.Denied) != 1 || !strings.Contains(rep.Denied[0].Edge, "5432") {
		t.Errorf("denied = %v", rep.Denied)
	}
	if len(rep.Unused) != 2 {
		t.Errorf("unused = %v", rep.Unused)
	}
}
