package policies

import (
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/model"
)

// TestExportClusterNetworkPolicyGolden: the web nanosegment exported as
// Baseline ClusterNetworkPolicies and as a CiliumClusterwideNetworkPolicy,
// against golden files, every loss reported by field; the exported
// ClusterNetworkPolicies are valid.
func TestExportClusterNetworkPolicyGolden(t *testing.T) {
	s := loadSegment(t, "testdata/segments/web.yaml")
	cnps, probs := ExportClusterNetworkPolicy(s)
	var out []byte
	for i, c := range cnps {
		if _, err := CompileClusterNetworkPolicy(c); err != nil {
			t.Errorf("exported %s is invalid: %v", c.Name, err)
		}
		raw, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, raw...)
	}
	golden(t, "web.clusternetworkpolicy.yaml", append(out, []byte(problemsComment(probs))...))
	for _, w := range []string{"spec: exported to the Baseline tier", "spec.mode", "spec.egress[1].peers[1].dnsName", "spec.egress[2].peers[0].ipBlock.except",
		"spec.egress[3].ports[0]", "spec.policyTypes"} {
		if !strings.Contains(problemsComment(probs), w) {
			t.Errorf("problems lack %q:\n%s", w, problemsComment(probs))
		}
	}
	ccnp, probs := ExportCiliumClusterwide(s)
	raw, err := yaml.Marshal(ccnp)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "web.ciliumclusterwide.yaml", append(raw, []byte(problemsComment(probs))...))
}

// TestClusterNetworkPolicyExportKeepsVerdicts: every NetworkPolicy of
// every case, imported and exported as Baseline ClusterNetworkPolicies,
// gives the verdict of the original for every connection whose source is
// a pod (the one reported loss: ingress isolation cannot name sources
// outside the cluster), except a pod to itself (not subject to
// ClusterNetworkPolicy, reported too), in every step whose export
// reports no other loss.
func TestClusterNetworkPolicyExportKeepsVerdicts(t *testing.T) {
	files, _ := filepath.Glob("testdata/cases/*.yaml")
	compared, skipped := 0, 0
	for _, f := range files {
		c, err := LoadCase(f)
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.NewCaseState()
		if err != nil {
			t.Fatal(err)
		}
		ports := map[int32]bool{53: true, 80: true}
		for _, cc := range c.Connections {
			ports[cc.Port] = true
		}
		for _, s := range c.Steps {
			for _, cc := range s.Connections {
				ports[cc.Port] = true
			}
		}
	steps:
		for step := -1; step < len(c.Steps); step++ {
			if step >= 0 {
				if err := st.Apply(c.Steps[step]); err != nil {
					t.Fatal(err)
				}
			}
			var orig []Object
			var cps []*ClusterPolicy
			for _, o := range st.Policies {
				if o.NetworkPolicy == nil {
					continue
				}
				orig = append(orig, o)
				s, err := ImportNetworkPolicy(o.NetworkPolicy)
				if err != nil {
					t.Fatal(err)
				}
				s.Spec.Mode = model.ModeEnforce
				out, probs := ExportClusterNetworkPolicy(s)
				for _, p := range probs {
					if p.Field != "spec" && p.Field != "spec.policyTypes" {
						skipped++
						continue steps
					}
				}
				for _, cnp := range out {
					cp, err := CompileClusterNetworkPolicy(cnp)
					if err != nil {
						t.Fatalf("%s: exported %s is invalid: %v", f, cnp.Name, err)
					}
					cps = append(cps, cp)
				}
			}
			want, err := NewObjectSet(orig)
			if err != nil {
				t.Fatal(err)
			}
			got := (PolicySet{}).WithClusterPolicies(cps)
			var pods []string
			for _, p := range st.World.Pods() {
				pods = append(pods, p.Key())
			}
			for _, from := range pods {
				for _, to := range append(pods, "198.19.0.10", "198.18.2.7") {
					if from == to {
						continue
					}
					for port := range ports {
						for _, proto := range []model.Protocol{"TCP", "UDP", "SCTP"} {
							cn := conn(from, to, proto, port)
							w, g := Evaluate(st.World, want, cn), Evaluate(st.World, got, cn)
							if w.Action != g.Action {
								t.Errorf("%s step %d: %s: exported %s (%s), original %s (%s)", f, step, cn, g.Action, g.Reason(), w.Action, w.Reason())
							}
							compared++
						}
					}
				}
			}
		}
	}
	if compared == 0 {
		t.Fatal("compared nothing")
	}
	t.Logf("%d connections compared, %d steps skipped for a reported loss", compared, skipped)
}
