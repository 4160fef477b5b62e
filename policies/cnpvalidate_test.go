package policies

import (
	"strings"
	"testing"
)

// TestValidateClusterNetworkPolicy checks that each problem is reported with
// the field path the API server gives, all at once, and that valid
// policies (the shapes of the reference's examples) pass.
func TestValidateClusterNetworkPolicy(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error; none: valid
		not  []string // substrings the error must not have
	}{
		{"valid admin and baseline with every peer and port kind", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: guard}
spec:
  tier: Admin
  priority: 0
  subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: db}}}}
  ingress:
  - {name: from-ns, action: Accept, from: [{namespaces: {matchLabels: {team: a}}}], protocols: [{tcp: {destinationPort: {number: 5432}}}]}
  - {action: Pass, from: [{pods: {namespaceSelector: {}, podSelector: {}}}], protocols: [{destinationNamedPort: web}, {sctp: {destinationPort: {range: {start: 100, end: 200}}}}]}
  egress:
  - {action: Deny, to: [{networks: [198.19.0.0/16, "2001:db8::/32"]}, {nodes: {}}]}
  - {action: Accept, to: [{domainNames: ["*.example.com", example.org]}], protocols: [{udp: {destinationPort: {number: 53}}}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: floor}
spec: {tier: Baseline, priority: 1000, subject: {namespaces: {}}, egress: [{action: Pass, to: [{namespaces: {}}]}]}
`, nil, nil},
		{"spec values", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: Bad_Name}
spec:
  tier: Developer
  priority: 1001
  subject: {namespaces: {}, pods: {podSelector: {}}}
  ingress:
  - {action: Allow, from: []}
  - {name: ` + strings.Repeat("x", 101) + `, action: Deny, from: [{}], protocols: []}
  egress:
  - action: Deny
    to: [{networks: [198.19.0.0/33]}, {namespaces: {}, nodes: {}}]
    protocols: [{tcp: {}}, {udp: {destinationPort: {number: 0}}}, {sctp: {destinationPort: {range: {start: 90, end: 80}}}}, {tcp: {destinationPort: {number: 1}}, udp: {destinationPort: {number: 2}}}, {destinationNamedPort: http}]
  - {action: Pass, to: [{domainNames: [example.com]}]}
`, []string{
			"metadata.name: Invalid value",
			`spec.tier: Unsupported value: "Developer"`,
			"spec.priority: Invalid value: 1001: should be less than or equal to 1000",
			"spec.subject: Invalid value",
			`spec.ingress[0].action: Unsupported value: "Allow"`,
			"spec.ingress[0].from: Required value",
			"spec.ingress[1].name: Invalid value",
			"spec.ingress[1].from[0]: Required value",
			"spec.ingress[1].protocols: Required value",
			"spec.egress[0].to[0].networks[0]: Invalid value",
			"spec.egress[0].to[1]: Invalid value",
			"spec.egress[0].protocols[0].tcp.destinationPort: Required value",
			"spec.egress[0].protocols[1].udp.destinationPort.number: Invalid value: 0: should be greater than or equal to 1", // as the API server says it
			"spec.egress[0].protocols[2].sctp.destinationPort.range: Invalid value",
			"spec.egress[0].protocols[3]: Invalid value",
			"spec.egress[0]: Invalid value", // named port with a networks peer
			"spec.egress[1].to[0].domainNames: Forbidden",
		}, []string{"spec.egress[0].protocols[1].udp.destinationPort: Required value"}},
		{"port bounds in the API server's words", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
    protocols: [{tcp: {destinationPort: {number: 65536}}}, {udp: {destinationPort: {range: {start: 0, end: 70000}}}}, {tcp: {destinationPort: {number: 0, range: {start: 1, end: 2}}}}]
`, []string{
			"spec.ingress[0].protocols[0].tcp.destinationPort.number: Invalid value: 65536: should be less than or equal to 65535",
			"spec.ingress[0].protocols[1].udp.destinationPort.range.start: Invalid value: 0: should be greater than or equal to 1",
			"spec.ingress[0].protocols[1].udp.destinationPort.range.end: Invalid value: 70000: should be less than or equal to 65535",
			"spec.ingress[0].protocols[2].tcp.destinationPort: Invalid value: 2", // number 0 is set: two properties
		}, nil},
		// The API server clears a cluster-scoped object's namespace without
		// a word; a document with one is refused, naming the field.
		{"a namespace on a cluster-scoped policy", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x, namespace: shop}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}
`, []string{`metadata.namespace: Forbidden: ClusterNetworkPolicy is cluster-scoped: remove namespace "shop"`}, nil},
		// As the upstream CRD: an empty destinationNamedPort is accepted
		// (no minLength; it matches nothing), an empty entry is not.
		{"empty named port accepted, empty entry refused", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  ingress:
  - {action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: ""}, {}]}
`, []string{"spec.ingress[0].protocols[1]: Required value: must set exactly one of"}, []string{"protocols[0]"}},
		// As the upstream CRD: rules are an atomic list (no map keyed by
		// name), and destinationNamedPort has no pattern.
		{"duplicate rule names and any named port, as upstream", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  ingress:
  - {name: same, action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: THIS_IS_BAD_}]}
  - {name: same, action: Accept, from: [{namespaces: {}}]}
`, nil, nil},
		{"missing tier and subject, too many rules", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec:
  priority: -1
  subject: {}
  ingress: [` + strings.Repeat("{action: Deny, from: [{namespaces: {}}]},", 26) + `]
`, []string{"spec.tier: Required value", "spec.priority: Invalid value: -1: should be greater than or equal to 0", "spec.subject: Required value", "spec.ingress: Too many: 26"}, nil},
		{"list limits", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec:
  tier: Baseline
  priority: 1
  subject: {namespaces: {}}
  egress:
  - action: Deny
    to: [` + strings.Repeat("{namespaces: {}},", 26) + `{networks: [` + strings.Repeat("198.19.0.0/16,", 25) + `198.18.0.0/16]}]
    protocols: [` + strings.Repeat("{tcp: {destinationPort: {number: 1}}},", 26) + `]
`, []string{"spec.egress[0].to: Too many: 27", "spec.egress[0].to[26].networks: Too many: 26", "spec.egress[0].to[26].networks[1]: Duplicate value",
			"spec.egress[0].protocols: Too many: 26"}, nil},
		{"unknown fields are named", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec:
  tier: Admin
  priority: 1
  subject: {namespaces: {}}
  ingress: [{action: Deny, from: [{networks: [198.19.0.0/16]}]}]
  egres: []
`, []string{"spec.egres: Forbidden: unknown field", "spec.ingress[0].from[0].networks: Forbidden: unknown field"}, nil},
		// A value of the wrong JSON type is named by its path, list
		// indices included, as the API server's schema check does.
		{"a quoted number", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec: {tier: Admin, priority: "7", subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}
`, []string{`spec.priority: Invalid value: "7": must be of type integer`}, nil},
		{"a port of the wrong type in the second rule", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x}
spec:
  tier: Admin
  priority: 7
  subject: {namespaces: {}}
  ingress:
  - {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 1}}}]}
  - {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 1}}}, {tcp: {destinationPort: {number: [2]}}}]}
`, []string{`spec.ingress[1].protocols[1].tcp.destinationPort.number: Invalid value: [2]: must be of type integer`}, nil},
		// Every value of the wrong type at once, as the API server's
		// schema check reports them (encoding/json stops at the first).
		{"three values of the wrong type", `
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: x, labels: {a: 1}}
spec:
  tier: 7
  priority: "x"
  subject: {namespaces: {}}
  ingress:
  - {action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: "80"}}}]}
`, []string{`spec.tier: Invalid value: 7: must be of type string`, `spec.priority: Invalid value: "x": must be of type integer`,
			`spec.ingress[0].protocols[0].tcp.destinationPort.number: Invalid value: "80": must be of type integer`,
			`metadata.labels[a]: Invalid value: 1: must be of type string`}, nil},
		{"NanoSegment peers as a map", `
apiVersion: nanoseg.io/v1alpha1
kind: NanoSegment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  ingress:
  - id: a
  - id: b
    peers: {podSelector: {matchLabels: {app: web}}}
`, []string{`spec.ingress[1].peers: Invalid value: {"podSelector":{"matchLabels":{"app":"web"}}}: must be of type array`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := ParseObjects("cnp.yaml", []byte(tt.doc))
			if tt.want == nil && tt.not == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(objs) == 0 || objs[0].ClusterNetworkPolicy == nil {
					t.Fatalf("decoded %+v", objs)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error has %q:\n%v", w, err)
				}
			}
		})
	}
}
