package graph

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"strings"
	"testing"
)

// TestMarkDecisions: edges a ClusterNetworkPolicy rule decides carry the
// tier, policy, priority, rule and action in JSON, DOT (the matrix's mark
// in the label, and attributes) and GraphML (edge data); other edges carry
// none. The decider sees the edge's nodes.
func TestMarkDecisions(t *testing.T) {
	g := Build(shopEdges(), Filter{})
	deny := &Decision{Tier: "Admin", Policy: "guard-db", Priority: 7, Rule: "ingress-0", Name: "no-intruder", Action: "Deny"}
	base := &Decision{Tier: "Baseline", Policy: `web"default`, Priority: 1, Rule: "egress-0", Action: "Accept"}
	g.MarkDecisions(func(src, dst Node, e Link) *Decision {
		switch {
		case src.Workload == "intruder" && dst.ID == "shop/db":
			return deny
		case src.Workload == "frontend" && dst.Workload == "api":
			return base
		}
		return nil
	})
	marked := 0
	for _, e := range g.Edges {
		if e.DecidedBy != nil {
			marked++
		}
	}
	if marked < 2 {
		t.Fatalf("%d edges marked, want the intruder -> db and frontend -> api edges", marked)
	}
	var back Graph
	if err := json.Unmarshal(render(t, FormatJSON, g), &back); err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range back.Edges {
		switch {
		case e.Source == "shop/intruder" && e.Destination == "shop/db":
			if e.DecidedBy == nil || *e.DecidedBy != *deny {
				t.Errorf("json: intruder -> db decided by %+v, want %+v", e.DecidedBy, deny)
			}
			got++
		case e.DecidedBy != nil && *e.DecidedBy != *base:
			t.Errorf("json: %s -> %s decided by %+v", e.Source, e.Destination, e.DecidedBy)
		}
	}
	if got == 0 {
		t.Fatal("json: no intruder -> db edge")
	}
	dot := string(render(t, FormatDOT, g))
	for _, want := range []string{`* Admin guard-db (priority 7) ingress-0 \"no-intruder\": Deny", tier="Admin", policy="guard-db", rule="ingress-0", action="Deny"`,
		`+ Baseline web\"default (priority 1) egress-0: Accept", tier="Baseline", policy="web\"default"`} {
		if !strings.Contains(dot, want) {
			t.Errorf("dot lacks %s:\n%s", want, dot)
		}
	}
	if n := strings.Count(dot, `, tier="`); n != marked {
		t.Errorf("dot: %d edges with a tier, want %d", n, marked)
	}
	gml := render(t, FormatGraphML, g)
	dec := xml.NewDecoder(bytes.NewReader(gml))
	var doc gmlDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	tiers := 0
	for _, e := range doc.Graph.Edges {
		d := map[string]string{}
		for _, x := range e.Data {
			d[x.Key] = x.Value
		}
		if d["tier"] == "" {
			continue
		}
		tiers++
		if e.Source == "shop/intruder" && (d["tier"] != "Admin" || d["policy"] != "guard-db" || d["priority"] != "7" || d["rule"] != "ingress-0 no-intruder" || d["action"] != "Deny") {
			t.Errorf("graphml intruder -> db data: %v", d)
		}
	}
	if tiers != marked {
		t.Errorf("graphml: %d edges with a tier, want %d", tiers, marked)
	}
}
