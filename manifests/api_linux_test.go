//go:build linux

package manifests_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/manifests"
	"github.com/nanoseg/nanoseg/policies"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

var (
	proposals  = schema.GroupVersionResource{Group: "nanoseg.io", Version: "v1alpha1", Resource: "nanosegmentproposals"}
	promotions = schema.GroupVersionResource{Group: "nanoseg.io", Version: "v1alpha1", Resource: "nanosegmentpromotions"}
)

// controllerUser is the controller's ServiceAccount as the API server
// names it in request.userInfo.
var controllerUser = "system:serviceaccount:" + manifests.Namespace + ":" + manifests.Controller

// applyManifests applies every object of the manifests (the Namespace and
// CRDs first, as kubectl orders them) and waits until the CRDs are
// Established and the admission policies take effect.
func applyManifests(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	ctx := ctxFor(t, 2*time.Minute)
	a := newApplier(t, c.Config)
	objs := objects(t)
	slices.SortStableFunc(objs, func(x, y *unstructured.Unstructured) int {
		first := func(o *unstructured.Unstructured) int {
			if o.GetKind() == "Namespace" || o.GetKind() == "CustomResourceDefinition" {
				return 0
			}
			return 1
		}
		return first(x) - first(y)
	})
	for i, o := range objs {
		if i > 0 && objs[i-1].GetKind() == "CustomResourceDefinition" && o.GetKind() != "CustomResourceDefinition" {
			if err := waitEstablished(ctx, a, objs[:i]); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := a.apply(ctx, o, false); err != nil {
			t.Fatal(err)
		}
	}
	waitAdmission(t, c)
}

// waitAdmission waits until the API server enforces the admission
// policies (it loads them asynchronously): a dry-run promotion created by
// the admin with someone else's name comes back with the admin's.
func waitAdmission(t *testing.T, c *kubetest.Cluster) {
	t.Helper()
	ns := c.Namespace(t, nil)
	dyn := dynFor(t, c.Config)
	var last error
	err := poll(ctxFor(t, time.Minute), func(ctx context.Context) (bool, error) {
		// Errors are retried: the CRD may be Established before its
		// resource is served, and the validating policy may refuse
		// before the mutating one stamps.
		got, err := dyn.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "audit", "bob"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if last = err; err != nil {
			return false, nil
		}
		user, _, _ := unstructured.NestedString(got.Object, "spec", "requestedBy", "username")
		return user == "admin", nil
	})
	if err != nil {
		t.Fatalf("the mutating admission policy never took effect: %v (last error: %v)", err, last)
	}
}

// poll calls cond every 100 ms until it returns true, an error, or ctx
// ends.
func poll(ctx context.Context, cond func(context.Context) (bool, error)) error {
	for {
		ok, err := cond(ctx)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func dynFor(t *testing.T, cfg *rest.Config) dynamic.Interface {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// object returns the nanoseg.io/v1alpha1 object of kind kind named name
// with spec, YAML written by a test (it panics when that is not YAML).
func object(kind, name, spec string) *unstructured.Unstructured {
	var s map[string]any
	if err := yaml.Unmarshal([]byte(spec), &s); err != nil {
		panic(fmt.Sprintf("spec of %s %s: %v", kind, name, err))
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.APIVersion, "kind": kind,
		"metadata": map[string]any{"name": name},
		"spec":     s,
	}}
}

func promotion(workload, mode, by string) *unstructured.Unstructured {
	o := object(v1alpha1.KindPromotion, "", fmt.Sprintf(`{workload: %s, mode: %s, reason: "reviewed the proposal", requestedBy: {username: %s, uid: "1234", groups: [forged]}}`, workload, mode, by))
	o.SetGenerateName(workload + "-")
	return o
}

// resourceOf returns the resource of kind.
func resourceOf(kind string) schema.GroupVersionResource {
	switch kind {
	case v1alpha1.Kind:
		return nanosegments
	case v1alpha1.KindProposal:
		return proposals
	case v1alpha1.KindPromotion:
		return promotions
	}
	panic("no resource for " + kind)
}

// causes returns the field causes of an Invalid error, "Type field".
func causes(err error) []string {
	var st apierrors.APIStatus
	if !errors.As(err, &st) || st.Status().Details == nil {
		return nil
	}
	var out []string
	for _, c := range st.Status().Details.Causes {
		out = append(out, string(c.Type)+" "+c.Field)
	}
	return out
}

// A good NanoSegment uses every kind of peer and port.
const goodSegment = `
selector: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In, values: [front]}, {key: canary, operator: DoesNotExist}]}
mode: enforce
policyTypes: [Ingress, Egress]
ingress:
  - id: from-api
    peers:
      - podSelector: {matchLabels: {app: api}}
      - namespaceSelector: {matchLabels: {team: a}}
        podSelector: {}
    ports: [{port: 8080}, {protocol: TCP, port: 9000, endPort: 9100}, {protocol: UDP, port: dns-udp}]
  - id: from-net
    peers: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.1.0/24, 198.19.2.128/25]}}, {ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}}]
  - id: ping
    ports: [{protocol: ICMP, port: 8}, {protocol: ICMP}, {protocol: SCTP}]
egress:
  - id: api-example
    peers: [{dnsName: api.example.com}, {dnsName: "*.Example.org."}]
    ports: [{port: 443}]
  - id: node
    peers: [{host: true}]
    provenance: {declared: {by: alice}}
`

// badCase is an object the API server refuses with a cause of type typ at
// field; goToo says policies.ValidateNanoSegment refuses it at the same
// path (or below it) too.
type badCase struct {
	name, kind, spec string
	typ              metav1.CauseType
	field            string
	goToo            bool
}

var badCases = []badCase{
	// Ports, as NetworkPolicyPort.
	{"endPort below port", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{port: 80, endPort: 70}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].ports[0].endPort", true},
	{"endPort with a named port", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{port: http, endPort: 90}]}]}`, metav1.CauseTypeForbidden, "spec.ingress[0].ports[0].endPort", true},
	{"endPort without port", v1alpha1.Kind, `{selector: {}, egress: [{id: a, ports: [{endPort: 90}]}]}`, metav1.CauseTypeFieldValueRequired, "spec.egress[0].ports[0].port", true},
	{"endPort above 65535", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{port: 80, endPort: 70000}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].ports[0].endPort", true},
	{"port 0", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{port: 0}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].ports[0].port", true},
	{"port above 65535", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{protocol: UDP, port: 65536}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].ports[0].port", true},
	{"port name too long", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{port: a-very-long-name}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].ports[0].port", true},
	{"ICMP type above 255", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{protocol: ICMP, port: 300}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].ports[0].port", true},
	{"ICMP named type", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{protocol: ICMP, port: echo}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].ports[0].port", true},
	{"ICMP endPort", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{protocol: ICMP, port: 3, endPort: 4}]}]}`, metav1.CauseTypeForbidden, "spec.ingress[0].ports[0].endPort", true},
	{"unknown protocol", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [{protocol: GRE}]}]}`, metav1.CauseTypeFieldValueNotSupported, "spec.ingress[0].ports[0].protocol", true},
	{"too many ports", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, ports: [` + strings.Repeat("{port: 80},", 129) + `]}]}`, metav1.CauseTypeTooMany, "spec.ingress[0].ports", false},

	// ipBlock, as a new NetworkPolicy's (strict CIDRs).
	{"cidr not a CIDR", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: 198.19.0.0}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.cidr", true},
	{"cidr with host bits", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: 198.19.0.1/16}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.cidr", true},
	{"cidr IPv4-mapped", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: "::ffff:198.19.0.0/112"}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.cidr", true},
	{"except outside cidr", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.18.0.0/24]}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.except", true},
	{"except equal to cidr", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.0.0/16]}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.except", true},
	{"except of the other family", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: "2001:db8::/32", except: [198.19.0.0/24]}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.except", true},
	{"except not a CIDR", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.1.0/24, nope]}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.except[1]", true},
	{"except with host bits", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{ipBlock: {cidr: 198.19.0.0/16, except: [198.19.1.1/24]}}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].peers[0].ipBlock.except[0]", true},

	// Peers: exactly one kind each.
	{"empty peer", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{}]}]}`, metav1.CauseTypeFieldValueRequired, "spec.ingress[0].peers[0]", true},
	{"host false alone", v1alpha1.Kind, `{selector: {}, egress: [{id: a, peers: [{podSelector: {}}, {host: false}]}]}`, metav1.CauseTypeFieldValueRequired, "spec.egress[0].peers[1]", true},
	{"selector and ipBlock", v1alpha1.Kind, `{selector: {}, ingress: [{id: a, peers: [{podSelector: {}, ipBlock: {cidr: 198.19.0.0/16}}]}]}`, metav1.CauseTypeForbidden, "spec.ingress[0].peers[0]", true},
	{"dnsName and host", v1alpha1.Kind, `{selector: {}, egress: [{id: a, peers: [{dnsName: a.example.com, host: true}]}]}`, metav1.CauseTypeForbidden, "spec.egress[0].peers[0]", true},
	{"dnsName inner wildcard", v1alpha1.Kind, `{selector: {}, egress: [{id: a, peers: [{dnsName: "a.*.example.com"}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.egress[0].peers[0].dnsName", true},
	{"dnsName with a space", v1alpha1.Kind, `{selector: {}, egress: [{id: a, peers: [{dnsName: "a b.example.com"}]}]}`, metav1.CauseTypeFieldValueInvalid, "spec.egress[0].peers[0].dnsName", true},

	// Rule ids.
	{"rule without id", v1alpha1.Kind, `{selector: {}, ingress: [{ports: [{port: 80}]}]}`, metav1.CauseTypeFieldValueRequired, "spec.ingress[0].id", true},
	{"rule id with capitals", v1alpha1.Kind, `{selector: {}, ingress: [{id: From_API}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].id", true},
	{"rule id twice in ingress", v1alpha1.Kind, `{selector: {}, ingress: [{id: a}, {id: b}, {id: a}]}`, metav1.CauseTypeFieldValueDuplicate, "spec.ingress[2]", true},
	{"rule id in both directions", v1alpha1.Kind, `{selector: {}, ingress: [{id: a}], egress: [{id: b}, {id: a}]}`, metav1.CauseTypeFieldValueDuplicate, "spec.egress", true},

	// Selector, mode, policy types.
	{"no selector", v1alpha1.Kind, `{mode: audit}`, metav1.CauseTypeFieldValueRequired, "spec.selector", false},
	{"selector operator", v1alpha1.Kind, `{selector: {matchExpressions: [{key: app, operator: Equals, values: [web]}]}}`, metav1.CauseTypeFieldValueInvalid, "spec.selector.matchExpressions", true},
	{"selector In without values", v1alpha1.Kind, `{selector: {matchExpressions: [{key: app, operator: In}]}}`, metav1.CauseTypeFieldValueInvalid, "spec.selector.matchExpressions", true},
	{"selector Exists with values", v1alpha1.Kind, `{selector: {matchExpressions: [{key: app, operator: Exists, values: [web]}]}}`, metav1.CauseTypeFieldValueInvalid, "spec.selector.matchExpressions", true},
	{"mode", v1alpha1.Kind, `{selector: {}, mode: block}`, metav1.CauseTypeFieldValueNotSupported, "spec.mode", true},
	{"policy type", v1alpha1.Kind, `{selector: {}, policyTypes: [Inbound]}`, metav1.CauseTypeFieldValueNotSupported, "spec.policyTypes[0]", true},

	// Proposals: their segment is a NanoSegmentSpec, checked alike.
	{"proposal workload name", v1alpha1.KindProposal, `{workload: Web_1, segment: {selector: {}}}`, metav1.CauseTypeFieldValueInvalid, "spec.workload", false},
	{"proposal workload too long", v1alpha1.KindProposal, `{workload: ` + strings.Repeat("w", 64) + `, segment: {selector: {}}}`, metav1.CauseTypeTooLong, "spec.workload", false},
	{"proposal without segment", v1alpha1.KindProposal, `{workload: web}`, metav1.CauseTypeFieldValueRequired, "spec.segment", false},
	{"proposal segment port", v1alpha1.KindProposal, `{workload: web, segment: {selector: {}, ingress: [{id: a, ports: [{port: 80, endPort: 79}]}]}}`, metav1.CauseTypeFieldValueInvalid, "spec.segment.ingress[0].ports[0].endPort", false},
	{"proposal edge protocol", v1alpha1.KindProposal, `{workload: web, segment: {selector: {}}, edges: [{source: {workload: a}, destination: {workload: b}, protocol: GRE, firstSeen: "2026-12-02T08:00:00Z", lastSeen: "2026-12-02T08:00:00Z", flows: 1}]}`, metav1.CauseTypeFieldValueNotSupported, "spec.edges[0].protocol", false},
	{"proposal edge port", v1alpha1.KindProposal, `{workload: web, segment: {selector: {}}, edges: [{source: {workload: a}, destination: {workload: b}, protocol: TCP, port: 70000, firstSeen: "2026-12-02T08:00:00Z", lastSeen: "2026-12-02T08:00:00Z", flows: 1}]}`, metav1.CauseTypeFieldValueInvalid, "spec.edges[0].port", false},

	// Promotions.
	{"promotion without mode", v1alpha1.KindPromotion, `{workload: web, reason: why}`, metav1.CauseTypeFieldValueRequired, "spec.mode", false},
	{"promotion mode", v1alpha1.KindPromotion, `{workload: web, mode: block, reason: why}`, metav1.CauseTypeFieldValueNotSupported, "spec.mode", false},
	{"rollback with mode", v1alpha1.KindPromotion, `{workload: web, rollback: true, mode: enforce, reason: why}`, metav1.CauseTypeForbidden, "spec.mode", false},
	{"rollback with force", v1alpha1.KindPromotion, `{workload: web, rollback: true, force: true, reason: why}`, metav1.CauseTypeForbidden, "spec.force", false},
	{"promotion without reason", v1alpha1.KindPromotion, `{workload: web, mode: audit}`, metav1.CauseTypeFieldValueRequired, "spec.reason", false},
	{"promotion blank reason", v1alpha1.KindPromotion, `{workload: web, mode: audit, reason: "   "}`, metav1.CauseTypeFieldValueInvalid, "spec.reason", false},
	{"promotion workload name", v1alpha1.KindPromotion, `{workload: "web/api", mode: audit, reason: why}`, metav1.CauseTypeFieldValueInvalid, "spec.workload", false},
	{"promotion negative revision", v1alpha1.KindPromotion, `{workload: web, mode: audit, revision: -1, reason: why}`, metav1.CauseTypeFieldValueInvalid, "spec.revision", false},
}

// TestAPI applies the manifests to a real API server and checks what it
// makes of nanoseg's kinds: bad objects refused with their field paths
// (and refused by policies.ValidateNanoSegment too), good ones accepted,
// promotions stamped with their creator, the user roles, the history kept,
// the printer columns.
func TestAPI(t *testing.T) {
	c := kubetest.Shared(t)
	applyManifests(t, c)
	t.Run("refused", func(t *testing.T) { testRefused(t, c) })
	t.Run("accepted", func(t *testing.T) { testAccepted(t, c) })
	t.Run("spec-immutable", func(t *testing.T) { testImmutable(t, c) })
	t.Run("requested-by", func(t *testing.T) { testRequestedBy(t, c) })
	t.Run("user-roles", func(t *testing.T) { testUserRoles(t, c) })
	t.Run("controller-promotes", func(t *testing.T) { testControllerPromotes(t, c) })
	t.Run("history-kept", func(t *testing.T) { testHistoryKept(t, c) })
	t.Run("printer-columns", func(t *testing.T) { testPrinterColumns(t, c) })
	t.Run("probe-status", func(t *testing.T) { testProbeStatus(t, c) })
	// Last: it removes and restores the mutating policy's binding.
	t.Run("requested-by-without-mutation", func(t *testing.T) { testRequestedByWithoutMutation(t, c) })
}

func testRefused(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	dyn := dynFor(t, c.Config)
	for _, tc := range badCases {
		t.Run(tc.name, func(t *testing.T) {
			o := object(tc.kind, "bad", tc.spec)
			_, err := dyn.Resource(resourceOf(tc.kind)).Namespace(ns).Create(ctxFor(t, 30*time.Second), o, metav1.CreateOptions{})
			want := string(tc.typ) + " " + tc.field
			if !apierrors.IsInvalid(err) || !slices.Contains(causes(err), want) {
				t.Fatalf("got %v (causes %q), want Invalid with %q", err, causes(err), want)
			}
			if !tc.goToo {
				return
			}
			var seg v1alpha1.NanoSegment
			o.SetNamespace(ns)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &seg); err != nil {
				t.Fatal(err)
			}
			errs := policies.ValidateNanoSegment(&seg)
			if !slices.ContainsFunc(errs, func(e *field.Error) bool { return under(e.Field, tc.field) }) {
				t.Errorf("policies.ValidateNanoSegment does not refuse %s: %v", tc.field, errs.ToAggregate())
			}
		})
	}
}

// under reports whether field path p is path or below it.
func under(p, path string) bool {
	return p == path || strings.HasPrefix(p, path+".") || strings.HasPrefix(p, path+"[")
}

func testAccepted(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	dyn := dynFor(t, c.Config)
	ctx := ctxFor(t, time.Minute)
	good := []*unstructured.Unstructured{
		object(v1alpha1.Kind, "web", goodSegment),
		object(v1alpha1.Kind, "empty", `{selector: {}}`),
		object(v1alpha1.KindProposal, "web", `
workload: web
window: 1h
segment:`+indent(goodSegment, "  ")+`
edges:
  - {source: {namespace: a, workload: api}, destination: {namespace: a, workload: web}, protocol: TCP, port: 8080, firstSeen: "2026-12-02T08:00:00Z", lastSeen: "2026-12-02T08:10:00Z", flows: 12, verdicts: {observed: 12}}
  - {source: {namespace: a, workload: web}, destination: {external: true, name: api.example.com, address: 198.19.0.1}, protocol: ICMPv6, firstSeen: "2026-12-02T08:00:00Z", lastSeen: "2026-12-02T08:10:00Z", flows: 1, failed: 1, leftOut: every connection failed}
edgesOmitted: 3
`),
		object(v1alpha1.KindPromotion, "web-1", `{workload: web, mode: enforce, revision: 2, force: true, reason: "reviewed; the batch job runs monthly"}`),
		object(v1alpha1.KindPromotion, "web-2", `{workload: web, rollback: true, reason: "the batch job broke"}`),
		object(v1alpha1.KindPromotion, "web-3", `{workload: web.v2, rollback: true, revision: 1, reason: back}`),
	}
	for _, o := range good {
		if _, err := dyn.Resource(resourceOf(o.GetKind())).Namespace(ns).Create(ctx, o, metav1.CreateOptions{FieldValidation: metav1.FieldValidationStrict}); err != nil {
			t.Errorf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if o.GetKind() == v1alpha1.Kind {
			var seg v1alpha1.NanoSegment
			o.SetNamespace(ns)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &seg); err != nil {
				t.Fatal(err)
			}
			if errs := policies.ValidateNanoSegment(&seg); len(errs) > 0 {
				t.Errorf("policies.ValidateNanoSegment refuses %s: %v", o.GetName(), errs.ToAggregate())
			}
		}
	}
}

// indent puts prefix before every line of s.
func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n")
}

// testImmutable: not even the admin changes a promotion's spec; its
// metadata and status stay writable.
func testImmutable(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	dyn := dynFor(t, c.Config)
	ctx := ctxFor(t, time.Minute)
	p, err := dyn.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "audit", "admin"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, patch := range []string{`{"spec":{"mode":"enforce"}}`, `{"spec":{"requestedBy":{"username":"bob"}}}`, `{"spec":{"reason":"changed my mind"}}`} {
		_, err = dyn.Resource(promotions).Namespace(ns).Patch(ctx, p.GetName(), types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if !apierrors.IsInvalid(err) || !slices.Contains(causes(err), "FieldValueInvalid spec") || !strings.Contains(err.Error(), "immutable") {
			t.Errorf("patch %s: got %v, want Invalid: spec is immutable", patch, err)
		}
	}
	if _, err := dyn.Resource(promotions).Namespace(ns).Patch(ctx, p.GetName(), types.MergePatchType, []byte(`{"metadata":{"labels":{"seen":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("label a promotion: %v", err)
	}
	if _, err := dyn.Resource(promotions).Namespace(ns).Patch(ctx, p.GetName(), types.MergePatchType, []byte(`{"status":{"phase":"Failed","message":"no such workload"}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Errorf("write a promotion's status: %v", err)
	}
}

// bind binds ClusterRole role to subject in namespace ns.
func bind(t *testing.T, c *kubetest.Cluster, ns, role string, subject rbacv1.Subject) {
	t.Helper()
	_, err := c.Client.RbacV1().RoleBindings(ns).Create(ctxFor(t, 30*time.Second), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{GenerateName: role + "-"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{subject},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func user(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

// requestedBy returns the stored spec.requestedBy of o.
func requestedBy(t *testing.T, o *unstructured.Unstructured) v1alpha1.RequestUser {
	t.Helper()
	m, _, _ := unstructured.NestedMap(o.Object, "spec", "requestedBy")
	var u v1alpha1.RequestUser
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &u); err != nil {
		t.Fatal(err)
	}
	return u
}

// testRequestedBy: alice, an operator, creates a promotion that says bob
// asked for it; the API server stores alice, as it authenticated her.
func testRequestedBy(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	bind(t, c, ns, manifests.OperateRole, user("alice"))
	alice := dynFor(t, c.UserConfig("alice", "team-a"))
	got, err := alice.Resource(promotions).Namespace(ns).Create(ctxFor(t, 30*time.Second), promotion("web", "enforce", "bob"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := v1alpha1.RequestUser{Username: "alice", Groups: []string{"team-a", "system:authenticated"}}
	if d := cmp.Diff(want, requestedBy(t, got)); d != "" {
		t.Errorf("requestedBy (-want +got):\n%s", d)
	}
}

// testUserRoles acts as a viewer (carol) and an operator (alice): the
// viewer reads and is refused a promotion; the operator creates one and is
// refused everything else that changes nanoseg's objects; neither reads
// Secrets or other ConfigMaps. What the API server grants them is exactly
// their ClusterRole.
func testUserRoles(t *testing.T, c *kubetest.Cluster) {
	ns := fixtures(t, c)
	ctx := ctxFor(t, time.Minute)
	admin := dynFor(t, c.Config)
	if _, err := admin.Resource(proposals).Namespace(ns).Create(ctx, object(v1alpha1.KindProposal, "web", `{workload: web, segment: {selector: {}}}`), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	existing, err := admin.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "audit", "admin"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "nanoseg-history-head"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bind(t, c, ns, manifests.ViewRole, user("carol"))
	bind(t, c, ns, manifests.OperateRole, user("alice"))

	type who struct {
		name string
		cs   kubernetes.Interface
		dyn  dynamic.Interface
	}
	var people []who
	for _, name := range []string{"carol", "alice"} {
		cfg := c.UserConfig(name)
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		people = append(people, who{name, cs, dynFor(t, cfg)})
	}
	carol, alice := people[0], people[1]
	lw := metav1.ListOptions{}
	for _, p := range people {
		expectAllowed(t, []check{
			{p.name + " lists nanosegments", func(ctx context.Context) error {
				_, err := p.dyn.Resource(nanosegments).Namespace(ns).List(ctx, lw)
				return err
			}},
			{p.name + " watches proposals", func(ctx context.Context) error {
				return watchOnce(p.dyn.Resource(proposals).Namespace(ns).Watch(ctx, watchFrom0))
			}},
			{p.name + " gets a promotion", func(ctx context.Context) error {
				_, err := p.dyn.Resource(promotions).Namespace(ns).Get(ctx, existing.GetName(), metav1.GetOptions{})
				return err
			}},
			{p.name + " lists networkpolicies", func(ctx context.Context) error {
				_, err := p.cs.NetworkingV1().NetworkPolicies(ns).List(ctx, lw)
				return err
			}},
			{p.name + " lists revisions", func(ctx context.Context) error {
				_, err := p.cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelWorkload})
				return err
			}},
			{p.name + " gets the history head", func(ctx context.Context) error {
				_, err := p.cs.CoreV1().ConfigMaps(ns).Get(ctx, "nanoseg-history-head", metav1.GetOptions{})
				return err
			}},
		})
		expectForbidden(t, []check{
			{p.name + " gets a secret", func(ctx context.Context) error {
				_, err := p.cs.CoreV1().Secrets(ns).Get(ctx, "key", metav1.GetOptions{})
				return err
			}},
			{p.name + " gets another configmap", func(ctx context.Context) error {
				_, err := p.cs.CoreV1().ConfigMaps(ns).Get(ctx, "conf", metav1.GetOptions{})
				return err
			}},
			{p.name + " patches a promotion's spec", func(ctx context.Context) error {
				_, err := p.dyn.Resource(promotions).Namespace(ns).Patch(ctx, existing.GetName(), types.MergePatchType, []byte(`{"spec":{"mode":"enforce"}}`), metav1.PatchOptions{})
				return err
			}},
			{p.name + " updates a promotion", func(ctx context.Context) error {
				_, err := p.dyn.Resource(promotions).Namespace(ns).Update(ctx, existing, metav1.UpdateOptions{})
				return err
			}},
			{p.name + " patches a promotion's status", func(ctx context.Context) error {
				_, err := p.dyn.Resource(promotions).Namespace(ns).Patch(ctx, existing.GetName(), types.MergePatchType, []byte(`{"status":{"phase":"Succeeded"}}`), metav1.PatchOptions{}, "status")
				return err
			}},
			{p.name + " deletes a promotion", func(ctx context.Context) error {
				return p.dyn.Resource(promotions).Namespace(ns).Delete(ctx, existing.GetName(), metav1.DeleteOptions{})
			}},
			{p.name + " creates a nanosegment", func(ctx context.Context) error {
				_, err := p.dyn.Resource(nanosegments).Namespace(ns).Create(ctx, nanosegment("api"), metav1.CreateOptions{})
				return err
			}},
			{p.name + " patches a nanosegment", func(ctx context.Context) error {
				_, err := p.dyn.Resource(nanosegments).Namespace(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"mode":"enforce"}}`), metav1.PatchOptions{})
				return err
			}},
			{p.name + " patches a nanosegment's status", func(ctx context.Context) error {
				_, err := p.dyn.Resource(nanosegments).Namespace(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"status":{"inSync":1}}`), metav1.PatchOptions{}, "status")
				return err
			}},
			{p.name + " creates a proposal", func(ctx context.Context) error {
				_, err := p.dyn.Resource(proposals).Namespace(ns).Create(ctx, object(v1alpha1.KindProposal, "api", `{workload: api, segment: {selector: {}}}`), metav1.CreateOptions{})
				return err
			}},
			{p.name + " patches a proposal's status", func(ctx context.Context) error {
				_, err := p.dyn.Resource(proposals).Namespace(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"status":{"edges":1}}`), metav1.PatchOptions{}, "status")
				return err
			}},
			{p.name + " deletes a networkpolicy", func(ctx context.Context) error {
				return p.cs.NetworkingV1().NetworkPolicies(ns).Delete(ctx, "deny-all", metav1.DeleteOptions{})
			}},
		})
	}
	expectForbidden(t, []check{{"carol creates a promotion", func(ctx context.Context) error {
		_, err := carol.dyn.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "enforce", "carol"), metav1.CreateOptions{})
		return err
	}}})
	expectAllowed(t, []check{{"alice creates a promotion", func(ctx context.Context) error {
		_, err := alice.dyn.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "enforce", "alice"), metav1.CreateOptions{})
		return err
	}}})
	// Probes send traffic: the operator creates and deletes them, the
	// viewer reads them only; neither writes their status (the agents do).
	probe := func(name string) *unstructured.Unstructured {
		return object(v1alpha1.KindProbe, name, "{node: node-a, pod: web, address: 198.18.0.9, port: 80, protocol: TCP}")
	}
	expectForbidden(t, []check{{"carol creates a probe", func(ctx context.Context) error {
		_, err := carol.dyn.Resource(probes).Namespace(ns).Create(ctx, probe("by-carol"), metav1.CreateOptions{})
		return err
	}}})
	expectAllowed(t, []check{
		{"alice creates a probe", func(ctx context.Context) error {
			_, err := alice.dyn.Resource(probes).Namespace(ns).Create(ctx, probe("by-alice"), metav1.CreateOptions{})
			return err
		}},
		{"carol lists probes", func(ctx context.Context) error {
			_, err := carol.dyn.Resource(probes).Namespace(ns).List(ctx, lw)
			return err
		}},
	})
	for _, p := range people {
		expectForbidden(t, []check{{p.name + " patches a probe's status", func(ctx context.Context) error {
			_, err := p.dyn.Resource(probes).Namespace(ns).Patch(ctx, "by-alice", types.MergePatchType, []byte(`{"status":{"outcome":"connected"}}`), metav1.PatchOptions{}, "status")
			return err
		}}})
	}
	expectForbidden(t, []check{{"carol deletes a probe", func(ctx context.Context) error {
		return carol.dyn.Resource(probes).Namespace(ns).Delete(ctx, "by-alice", metav1.DeleteOptions{})
	}}})
	expectAllowed(t, []check{{"alice deletes a probe", func(ctx context.Context) error {
		return alice.dyn.Resource(probes).Namespace(ns).Delete(ctx, "by-alice", metav1.DeleteOptions{})
	}}})
	if d := cmp.Diff(viewRules, grantedRules(t, c, carol.cs, ns)); d != "" {
		t.Errorf("carol's rights in %s (-%s +granted):\n%s", ns, manifests.ViewRole, d)
	}
	if d := cmp.Diff(operateRules(), grantedRules(t, c, alice.cs, ns)); d != "" {
		t.Errorf("alice's rights in %s (-%s +granted):\n%s", ns, manifests.OperateRole, d)
	}
	if got := grantedRules(t, c, alice.cs, manifests.Namespace); len(got) != 0 {
		t.Errorf("alice's rights in %s, where she has no binding: %v", manifests.Namespace, got)
	}
}

// controllerTestRole is what the controller needs on promotions in a
// namespace (its real rules are in controller/rbac.yaml): the test binds
// it to the controller's ServiceAccount in its own namespace only.
func controllerTestRole(t *testing.T, c *kubetest.Cluster, ns string) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	_, err := c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "controller-promotions"},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"nanoseg.io"}, Resources: []string{"nanosegmentpromotions"}, Verbs: []string{"get", "create", "delete"}},
			{APIGroups: []string{"nanoseg.io"}, Resources: []string{"nanosegmentpromotions/status"}, Verbs: []string{"update", "patch"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "controller-promotions"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "controller-promotions"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: manifests.Controller, Namespace: manifests.Namespace}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// testControllerPromotes: the controller creates a promotion itself (a
// record it writes without a request) and the API server stamps its own
// ServiceAccount, uid included.
func testControllerPromotes(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	controllerTestRole(t, c, ns)
	ctx := ctxFor(t, time.Minute)
	_, dyn := clientsFor(t, c, manifests.Controller)
	got, err := dyn.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "observe", "alice"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sa, err := c.Client.CoreV1().ServiceAccounts(manifests.Namespace).Get(ctx, manifests.Controller, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	by := requestedBy(t, got)
	if by.Username != controllerUser || by.UID != string(sa.UID) || !slices.Contains(by.Groups, "system:serviceaccounts:"+manifests.Namespace) {
		t.Errorf("requestedBy %+v, want %s (uid %s) in group system:serviceaccounts:%s", by, controllerUser, sa.UID, manifests.Namespace)
	}
}

// succeeded creates a promotion as the admin and marks it Succeeded with a
// record, as the controller does.
func succeeded(t *testing.T, dyn dynamic.Interface, ns string) string {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	p, err := dyn.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "audit", "admin"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]any{"status": map[string]any{"phase": "Succeeded", "record": map[string]any{
		"seq": 7, "at": "2026-12-02T09:00:00Z", "who": "admin", "workload": "web", "action": "promote",
		"fromMode": "observe", "toMode": "audit", "fromRevision": 1, "toRevision": 1, "reason": "reviewed the proposal",
		"prevHash": "sha256:0", "hash": "sha256:1",
	}}}
	body, _ := json.Marshal(status)
	if _, err := dyn.Resource(promotions).Namespace(ns).Patch(ctx, p.GetName(), types.MergePatchType, body, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	return p.GetName()
}

// testHistoryKept: a Succeeded promotion holds a record; not even the
// admin deletes it, the controller may; a Pending one goes.
func testHistoryKept(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	controllerTestRole(t, c, ns)
	admin := dynFor(t, c.Config)
	_, ctrl := clientsFor(t, c, manifests.Controller)
	recorded := succeeded(t, admin, ns)
	ctx := ctxFor(t, time.Minute)
	err := admin.Resource(promotions).Namespace(ns).Delete(ctx, recorded, metav1.DeleteOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "hash-chained history (seq 7)") {
		t.Errorf("the admin deletes a Succeeded promotion: got %v, want Forbidden by %s", err, manifests.HistoryPolicy)
	}
	pending, err := admin.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "enforce", "admin"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Resource(promotions).Namespace(ns).Delete(ctx, pending.GetName(), metav1.DeleteOptions{}); err != nil {
		t.Errorf("the admin deletes a Pending promotion: %v", err)
	}
	if err := ctrl.Resource(promotions).Namespace(ns).Delete(ctx, recorded, metav1.DeleteOptions{}); err != nil {
		t.Errorf("the controller deletes a Succeeded promotion: %v", err)
	}
	// A namespace being deleted loses its promotions with it (else its
	// deletion would never finish). No namespace controller runs here:
	// delete the namespace, then its promotion, as that controller would.
	again := succeeded(t, admin, ns)
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.Resource(promotions).Namespace(ns).Delete(ctx, again, metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete a Succeeded promotion of a namespace being deleted: %v", err)
	}
}

// testPrinterColumns reads the API's Table output, what kubectl get
// prints.
func testPrinterColumns(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	ctx := ctxFor(t, time.Minute)
	dyn := dynFor(t, c.Config)
	if _, err := dyn.Resource(nanosegments).Namespace(ns).Create(ctx, nanosegment("web"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The status as the controller writes it (its Go type): nothing
	// denied shows as 0 in DENIED, not blank.
	st, err := json.Marshal(map[string]any{"status": v1alpha1.NanoSegmentStatus{Revision: 3, Endpoints: 4, InSync: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(nanosegments).Namespace(ns).Patch(ctx, "web", types.MergePatchType, st, metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(proposals).Namespace(ns).Create(ctx, object(v1alpha1.KindProposal, "web", `{workload: web, segment: {selector: {}}}`), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "audit", "x"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		res   schema.GroupVersionResource
		cols  []string
		cells []any // of the first row, Age left out
	}{
		{nanosegments, []string{"Name", "Mode", "Revision", "Endpoints", "In-Sync", "Denied", "Age"}, []any{"web", "observe", float64(3), float64(4), float64(3), float64(0)}},
		{proposals, []string{"Name", "Workload", "Settled", "Reason", "Observed", "Edges", "Age"}, nil},
		{promotions, []string{"Name", "Workload", "Action", "Mode", "Revision", "Phase", "By", "Seq", "Age"}, nil},
	} {
		raw, err := c.Client.Discovery().RESTClient().Get().
			AbsPath("/apis", tc.res.Group, tc.res.Version, "namespaces", ns, tc.res.Resource).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").DoRaw(ctx)
		if err != nil {
			t.Fatalf("%s as a table: %v", tc.res.Resource, err)
		}
		var table metav1.Table
		if err := json.Unmarshal(raw, &table); err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, col := range table.ColumnDefinitions {
			cols = append(cols, col.Name)
		}
		if d := cmp.Diff(tc.cols, cols); d != "" {
			t.Errorf("%s columns (-want +got):\n%s", tc.res.Resource, d)
		}
		if len(table.Rows) != 1 {
			t.Fatalf("%s: %d rows, want 1", tc.res.Resource, len(table.Rows))
		}
		if tc.cells != nil {
			if d := cmp.Diff(tc.cells, table.Rows[0].Cells[:len(tc.cells)]); d != "" {
				t.Errorf("%s cells (-want +got):\n%s", tc.res.Resource, d)
			}
		}
	}
	// What an operator sees.
	out, err := exec.CommandContext(ctx, kubectlPath(t), "--kubeconfig", c.Kubeconfig, "-n", ns, "get", "nseg").Output()
	if err != nil {
		t.Fatalf("kubectl get nseg: %v %s", err, stderrOf(err))
	}
	header, row, _ := strings.Cut(string(out), "\n")
	if got := strings.Fields(header); !slices.Equal(got, []string{"NAME", "MODE", "REVISION", "ENDPOINTS", "IN-SYNC", "DENIED", "AGE"}) {
		t.Errorf("kubectl get nseg header %q", header)
	}
	if got := strings.Fields(row); len(got) != 7 || !slices.Equal(got[:6], []string{"web", "observe", "3", "4", "3", "0"}) {
		t.Errorf("kubectl get nseg row %q", row)
	}
}

// testRequestedByWithoutMutation removes the mutating policy's binding
// (and restores it): the validating policy alone then refuses a promotion
// whose requestedBy is not its creator, and lets in one that tells the
// truth.
func testRequestedByWithoutMutation(t *testing.T, c *kubetest.Cluster) {
	ns := c.Namespace(t, nil)
	bind(t, c, ns, manifests.OperateRole, user("alice"))
	ctx := ctxFor(t, 2*time.Minute)
	bindings := c.Client.AdmissionregistrationV1().MutatingAdmissionPolicyBindings()
	b, err := bindings.Get(ctx, manifests.RequesterPolicy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bindings.Delete(ctx, manifests.RequesterPolicy, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.ResourceVersion, b.UID = "", ""
		if _, err := bindings.Create(context.Background(), b, metav1.CreateOptions{}); err != nil {
			t.Errorf("restore %s: %v", manifests.RequesterPolicy, err)
			return
		}
		waitAdmission(t, c)
	})
	alice := dynFor(t, c.UserConfig("alice", "team-a"))
	err = poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := alice.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "enforce", "bob"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("a forged requestedBy still passes without the mutating policy: %v", err)
	}
	_, err = alice.Resource(promotions).Namespace(ns).Create(ctx, promotion("web", "enforce", "bob"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "spec.requestedBy: must be the user creating the promotion (alice)") {
		t.Errorf("a forged requestedBy: got %v, want Forbidden by %s", err, manifests.RequesterPolicy)
	}
	truth := object(v1alpha1.KindPromotion, "", `{workload: web, mode: enforce, reason: why, requestedBy: {username: alice, groups: [team-a, system:authenticated]}}`)
	truth.SetGenerateName("web-")
	got, err := alice.Resource(promotions).Namespace(ns).Create(ctx, truth, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a true requestedBy: %v", err)
	}
	if by := requestedBy(t, got); by.Username != "alice" {
		t.Errorf("requestedBy %+v", by)
	}
}
