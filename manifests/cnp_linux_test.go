//go:build linux

package manifests_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/manifests"
	"github.com/nanoseg/nanoseg/policies"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
)

var clusterNetworkPolicies = cnpv1alpha2.SchemeGroupVersion.WithResource("clusternetworkpolicies")

// cnp returns a ClusterNetworkPolicy named name with spec, YAML written by
// a test.
func cnp(name, spec string) *unstructured.Unstructured {
	var s map[string]any
	if err := yaml.Unmarshal([]byte(spec), &s); err != nil {
		panic(fmt.Sprintf("spec of %s: %v", name, err))
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cnpv1alpha2.APIVersion, "kind": cnpv1alpha2.Kind,
		"metadata": map[string]any{"name": name}, "spec": s,
	}}
}

// TestClusterNetworkPolicyCRDOnAPIServer installs nanoseg's own
// ClusterNetworkPolicy CRD (manifests/crds/cnp) and checks its schema
// against policies.ValidateClusterNetworkPolicy: every ClusterNetworkPolicy
// of the verdict cases is accepted by both; each bad one is refused by the
// API server with its field path, and by the Go side at or below it; a
// policy whose only fault is a label selector's syntax (which the schema
// does not check) passes the API server and is refused by the Go side,
// as the node agent does.
func TestClusterNetworkPolicyCRDOnAPIServer(t *testing.T) {
	c := kubetest.Shared(t)
	ctx := ctxFor(t, 2*time.Minute)
	a := newApplier(t, c.Config)
	raw, err := fs.ReadFile(manifests.FS, manifests.ClusterNetworkPolicyCRD)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := manifests.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.apply(ctx, crds[0], false); err != nil {
		t.Fatal(err)
	}
	if err := waitEstablished(ctx, a, crds); err != nil {
		t.Fatal(err)
	}
	api := a.dyn.Resource(clusterNetworkPolicies)
	t.Cleanup(func() {
		_ = api.DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
	})

	t.Run("cases accepted", func(t *testing.T) {
		files, err := filepath.Glob("../policies/testdata/cases/cnp/*.yaml")
		if err != nil || len(files) == 0 {
			t.Fatalf("no case files: %v", err)
		}
		n := 0
		for _, f := range files {
			cs, err := policies.LoadCase(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range cs.Policies {
				p := o.ClusterNetworkPolicy
				if p == nil {
					continue
				}
				m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
				if err != nil {
					t.Fatal(err)
				}
				u := &unstructured.Unstructured{Object: m}
				u.SetName(fmt.Sprintf("case-%d", n))
				n++
				if _, err := api.Create(ctx, u, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}); err != nil {
					t.Errorf("%s: %s refused: %v", filepath.Base(f), p.Name, err)
				}
			}
		}
		if n < 8 {
			t.Errorf("only %d ClusterNetworkPolicies in the cases", n)
		}
	})

	const subject = `subject: {namespaces: {}}`
	for _, tc := range []struct {
		name, spec string
		typ        metav1.CauseType
		field      string
	}{
		{"tier", `{tier: Developer, priority: 1, ` + subject + `}`, metav1.CauseTypeFieldValueNotSupported, "spec.tier"},
		{"priority", `{tier: Admin, priority: 1001, ` + subject + `}`, metav1.CauseTypeFieldValueInvalid, "spec.priority"},
		{"no subject", `{tier: Admin, priority: 1}`, metav1.CauseTypeFieldValueRequired, "spec.subject"},
		{"two subjects", `{tier: Admin, priority: 1, subject: {namespaces: {}, pods: {podSelector: {}}}}`, metav1.CauseTypeTooMany, "spec.subject"},
		{"action", `{tier: Admin, priority: 1, ` + subject + `, ingress: [{action: Allow, from: [{namespaces: {}}]}]}`, metav1.CauseTypeFieldValueNotSupported, "spec.ingress[0].action"},
		{"no peers", `{tier: Admin, priority: 1, ` + subject + `, ingress: [{action: Deny, from: []}]}`, metav1.CauseTypeFieldValueInvalid, "spec.ingress[0].from"},
		{"rule name", `{tier: Admin, priority: 1, ` + subject + `, egress: [{name: "` + strings.Repeat("a", 101) + `", action: Deny, to: [{namespaces: {}}]}]}`, metav1.CauseTypeTooLong, "spec.egress[0].name"},
		{"port 65536", `{tier: Admin, priority: 1, ` + subject + `, egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 65536}}}]}]}`,
			metav1.CauseTypeFieldValueInvalid, "spec.egress[0].protocols[0].tcp.destinationPort.number"},
		{"range", `{tier: Admin, priority: 1, ` + subject + `, egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{udp: {destinationPort: {range: {start: 90, end: 80}}}}]}]}`,
			metav1.CauseTypeFieldValueInvalid, "spec.egress[0].protocols[0].udp.destinationPort.range"},
		{"no destinationPort", `{tier: Admin, priority: 1, ` + subject + `, egress: [{action: Deny, to: [{namespaces: {}}], protocols: [{tcp: {}}]}]}`,
			metav1.CauseTypeFieldValueRequired, "spec.egress[0].protocols[0].tcp.destinationPort"},
		{"cidr", `{tier: Admin, priority: 1, ` + subject + `, egress: [{action: Deny, to: [{networks: [198.18.0.0/33]}]}]}`,
			metav1.CauseTypeFieldValueInvalid, "spec.egress[0].to[0].networks[0]"},
		{"duplicate cidr", `{tier: Admin, priority: 1, ` + subject + `, egress: [{action: Deny, to: [{networks: [198.18.0.0/15, 198.18.0.0/15]}]}]}`,
			metav1.CauseTypeFieldValueDuplicate, "spec.egress[0].to[0].networks[1]"},
		{"named port to a network", `{tier: Admin, priority: 1, ` + subject + `, egress: [{action: Deny, to: [{networks: [198.18.0.0/15]}], protocols: [{destinationNamedPort: web}]}]}`,
			metav1.CauseTypeFieldValueInvalid, "spec.egress[0]"},
		{"domainNames in a Deny", `{tier: Admin, priority: 1, ` + subject + `, egress: [{action: Deny, to: [{domainNames: [example.com]}]}]}`,
			metav1.CauseTypeFieldValueInvalid, "spec.egress[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := cnp("bad", tc.spec)
			_, err := api.Create(ctx, o, metav1.CreateOptions{})
			want := string(tc.typ) + " " + tc.field
			if !apierrors.IsInvalid(err) || !slices.Contains(causes(err), want) {
				t.Fatalf("got %v (causes %q), want Invalid with %q", err, causes(err), want)
			}
			var p cnpv1alpha2.ClusterNetworkPolicy
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
				t.Fatal(err)
			}
			errs := policies.ValidateClusterNetworkPolicy(&p)
			if !slices.ContainsFunc(errs, func(e *field.Error) bool { return under(e.Field, tc.field) }) {
				t.Errorf("policies.ValidateClusterNetworkPolicy does not refuse %s: %v", tc.field, errs.ToAggregate())
			}
		})
	}

	// number 0: both refuse it at number (not at destinationPort, as a
	// zero read as absent would), in the same words.
	t.Run("port 0", func(t *testing.T) {
		const path = "spec.ingress[0].protocols[0].tcp.destinationPort.number"
		o := cnp("port-zero", `{tier: Admin, priority: 1, `+subject+`, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 0}}}]}]}`)
		_, err := api.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		var st apierrors.APIStatus
		if !apierrors.IsInvalid(err) || !errors.As(err, &st) || st.Status().Details == nil {
			t.Fatalf("got %v, want Invalid", err)
		}
		var apiMsg string
		for _, c := range st.Status().Details.Causes {
			if c.Type == metav1.CauseTypeFieldValueInvalid && c.Field == path {
				apiMsg = c.Message
			}
		}
		if apiMsg == "" {
			t.Fatalf("API server causes %q lack Invalid %s", causes(err), path)
		}
		var p cnpv1alpha2.ClusterNetworkPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
			t.Fatal(err)
		}
		errs := policies.ValidateClusterNetworkPolicy(&p)
		if len(errs) != 1 || errs[0].Field != path || errs[0].Type != field.ErrorTypeInvalid || !strings.HasSuffix(apiMsg, errs[0].Detail) {
			t.Errorf("ValidateClusterNetworkPolicy: %v; the API server: %s: %s", errs.ToAggregate(), path, apiMsg)
		}
	})

	// Values of the wrong type: the API server names every one at once,
	// and so does policies.ParseObjects.
	t.Run("wrong types: all named by both", func(t *testing.T) {
		const spec = `{tier: 7, priority: "x", ` + subject + `, ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: "80"}}}]}]}`
		_, err := api.Create(ctx, cnp("wrong-types", spec), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		doc := "apiVersion: " + cnpv1alpha2.APIVersion + "\nkind: " + cnpv1alpha2.Kind + "\nmetadata: {name: wrong-types}\nspec: " + spec + "\n"
		_, perr := policies.ParseObjects("wrong-types.yaml", []byte(doc))
		for _, path := range []string{"spec.tier", "spec.priority", "spec.ingress[0].protocols[0].tcp.destinationPort.number"} {
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), path+": Invalid value") {
				t.Errorf("the API server does not name %s: %v", path, err)
			}
			if perr == nil || !strings.Contains(perr.Error(), path+": Invalid value") {
				t.Errorf("ParseObjects does not name %s: %v", path, perr)
			}
		}
	})

	// What the upstream CRD allows (its rules are atomic lists, its
	// destinationNamedPort a bare string, empty too) both accept.
	t.Run("duplicate rule names and any named port: both accept", func(t *testing.T) {
		o := cnp("dup-names", `{tier: Admin, priority: 1, `+subject+`, ingress: [{name: same, action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: THIS_IS_BAD_}, {destinationNamedPort: ""}]}, {name: same, action: Accept, from: [{namespaces: {}}]}]}`)
		if _, err := api.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: metav1.FieldValidationStrict}); err != nil {
			t.Fatalf("the API server refuses it: %v", err)
		}
		var p cnpv1alpha2.ClusterNetworkPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
			t.Fatal(err)
		}
		if errs := policies.ValidateClusterNetworkPolicy(&p); len(errs) > 0 {
			t.Errorf("ValidateClusterNetworkPolicy: %v", errs.ToAggregate())
		}
	})

	// metadata.namespace: the API server clears it without a word; a
	// policy document with one is refused (policies.Object.Validate).
	t.Run("namespace: the API server clears it, a document is refused", func(t *testing.T) {
		o := cnp("with-namespace", `{tier: Admin, priority: 1, `+subject+`, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`)
		o.SetNamespace("shop")
		got, err := api.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("the API server refuses it: %v", err)
		}
		if ns := got.GetNamespace(); ns != "" {
			t.Errorf("the API server kept namespace %q", ns)
		}
		var p cnpv1alpha2.ClusterNetworkPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
			t.Fatal(err)
		}
		if errs := (policies.Object{ClusterNetworkPolicy: &p}).Validate(); !slices.ContainsFunc(errs, func(e *field.Error) bool {
			return e.Field == "metadata.namespace" && e.Type == field.ErrorTypeForbidden
		}) {
			t.Errorf("Object.Validate: %v", errs.ToAggregate())
		}
	})

	t.Run("selector syntax: only the Go side refuses", func(t *testing.T) {
		o := cnp("bad-selector", `{tier: Admin, priority: 1, subject: {namespaces: {matchExpressions: [{key: team, operator: In}]}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}`)
		if _, err := api.Create(ctx, o, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatalf("the API server refuses it (the schema changed? then pick another fault for the node agent's tests): %v", err)
		}
		var p cnpv1alpha2.ClusterNetworkPolicy
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
			t.Fatal(err)
		}
		if errs := policies.ValidateClusterNetworkPolicy(&p); !slices.ContainsFunc(errs, func(e *field.Error) bool {
			return e.Field == "spec.subject.namespaces.matchExpressions[0].values"
		}) {
			t.Errorf("ValidateClusterNetworkPolicy: %v", errs.ToAggregate())
		}
	})
}
