package manifests_test

import (
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nanoseg/nanoseg/manifests"
	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// objects renders the embedded kustomization or fails t.
func objects(t testing.TB) []*unstructured.Unstructured {
	t.Helper()
	objs, err := manifests.Objects()
	if err != nil {
		t.Fatalf("render manifests: %v", err)
	}
	return objs
}

// find returns the object of kind and name, decoded strictly into out (an
// unknown or misspelt field fails t).
func find(t testing.TB, kind, name string, out any) {
	t.Helper()
	for _, o := range objects(t) {
		if o.GetKind() == kind && o.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true); err != nil {
				t.Fatalf("decode %s: %v", manifests.Ref(o), err)
			}
			return
		}
	}
	t.Fatalf("no %s %s in the manifests", kind, name)
}

// TestKustomizationNamesEveryManifest fails when a YAML file under
// manifests/ (lab topologies aside) is not reachable from
// kustomization.yaml, for instance a CRD that `make generate` added, or
// when the embedded copy differs from the files on disk.
func TestKustomizationNamesEveryManifest(t *testing.T) {
	disk := os.DirFS(".")
	named, err := manifests.Files(disk, ".")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	err = fs.WalkDir(disk, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// crds/cnp holds the ClusterNetworkPolicy CRD, installed by hand
		// (TestClusterNetworkPolicyCRD).
		if d.IsDir() && (p == "lab" || p == "testdata" || p == "crds/cnp") {
			return fs.SkipDir
		}
		if ext := path.Ext(p); !d.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") && !slices.Contains(named, p) {
			missing = append(missing, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("not named by kustomization.yaml (directly or through a directory's kustomization.yaml): %v", missing)
	}
	for _, f := range named {
		onDisk, err := fs.ReadFile(disk, f)
		if err != nil {
			t.Fatal(err)
		}
		embedded, err := fs.ReadFile(manifests.FS, f)
		if err != nil {
			t.Errorf("%s is not embedded: add it to the go:embed line of manifests.go", f)
			continue
		}
		if string(onDisk) != string(embedded) {
			t.Errorf("%s: embedded copy differs from the file", f)
		}
	}
}

// TestObjects checks what every object shares: namespaced objects live in
// nanoseg-system, only the expected kinds are cluster-scoped, and every
// container runs the image hack/image.sh builds, without pulling it.
func TestObjects(t *testing.T) {
	clusterScoped := []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
		"MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
	var refs []string
	for _, o := range objects(t) {
		refs = append(refs, manifests.Ref(o))
		if slices.Contains(clusterScoped, o.GetKind()) {
			if o.GetNamespace() != "" {
				t.Errorf("%s: a cluster-scoped kind with a namespace", manifests.Ref(o))
			}
		} else if o.GetNamespace() != manifests.Namespace {
			t.Errorf("%s: namespace %q, want %q", manifests.Ref(o), o.GetNamespace(), manifests.Namespace)
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			c := c.(map[string]any)
			if c["image"] != manifests.Image || c["imagePullPolicy"] != "IfNotPresent" {
				t.Errorf("%s container %v: image %v pull %v, want %s IfNotPresent", manifests.Ref(o), c["name"], c["image"], c["imagePullPolicy"], manifests.Image)
			}
		}
	}
	want := []string{
		"core/Namespace nanoseg-system",
		"apiextensions.k8s.io/CustomResourceDefinition nanosegmentprobes.nanoseg.io",
		"apiextensions.k8s.io/CustomResourceDefinition nanosegmentpromotions.nanoseg.io",
		"apiextensions.k8s.io/CustomResourceDefinition nanosegmentproposals.nanoseg.io",
		"apiextensions.k8s.io/CustomResourceDefinition nanosegments.nanoseg.io",
		"core/ServiceAccount nanoseg-system/nanoseg-node",
		"rbac.authorization.k8s.io/ClusterRole nanoseg-node",
		"rbac.authorization.k8s.io/ClusterRoleBinding nanoseg-node",
		"rbac.authorization.k8s.io/Role nanoseg-system/nanoseg-node",
		"rbac.authorization.k8s.io/RoleBinding nanoseg-system/nanoseg-node",
		"apps/DaemonSet nanoseg-system/nanoseg-node",
		"core/ServiceAccount nanoseg-system/nanoseg-controller",
		"rbac.authorization.k8s.io/ClusterRole nanoseg-controller",
		"rbac.authorization.k8s.io/ClusterRoleBinding nanoseg-controller",
		"rbac.authorization.k8s.io/Role nanoseg-system/nanoseg-controller",
		"rbac.authorization.k8s.io/RoleBinding nanoseg-system/nanoseg-controller",
		"rbac.authorization.k8s.io/ClusterRole nanoseg-controller-tokenreview",
		"rbac.authorization.k8s.io/ClusterRoleBinding nanoseg-controller-tokenreview",
		"rbac.authorization.k8s.io/Role nanoseg-system/nanoseg-controller-transport",
		"rbac.authorization.k8s.io/RoleBinding nanoseg-system/nanoseg-controller-transport",
		"apps/Deployment nanoseg-system/nanoseg-controller",
		"core/Service nanoseg-system/nanoseg-controller",
		"admissionregistration.k8s.io/MutatingAdmissionPolicy nanoseg-promotion-requester",
		"admissionregistration.k8s.io/MutatingAdmissionPolicyBinding nanoseg-promotion-requester",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicy nanoseg-promotion-requester",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding nanoseg-promotion-requester",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicy nanoseg-promotion-history",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding nanoseg-promotion-history",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicy nanoseg-probe-status",
		"admissionregistration.k8s.io/ValidatingAdmissionPolicyBinding nanoseg-probe-status",
		"rbac.authorization.k8s.io/ClusterRole nanoseg-view",
		"rbac.authorization.k8s.io/ClusterRole nanoseg-operate",
		"rbac.authorization.k8s.io/ClusterRole nanoseg-view-nodes",
	}
	if d := cmp.Diff(want, refs); d != "" {
		t.Errorf("objects (-want +got):\n%s", d)
	}
}

// TestNodeAgentDaemonSet pins what the node agent's pod needs and must
// not have: host network and pids, exactly four capabilities, the netns
// and owner host paths and no others, every taint tolerated, probes.
func TestNodeAgentDaemonSet(t *testing.T) {
	var ds appsv1.DaemonSet
	find(t, "DaemonSet", manifests.NodeAgent, &ds)
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != manifests.NodeAgent {
		t.Errorf("serviceAccountName %q", pod.ServiceAccountName)
	}
	if !pod.HostNetwork || !pod.HostPID {
		t.Errorf("hostNetwork %v hostPID %v: the agent needs both (it reads /proc/PID/ns/net of pods' processes)", pod.HostNetwork, pod.HostPID)
	}
	if pod.HostIPC {
		t.Error("hostIPC: not needed")
	}
	if d := cmp.Diff([]corev1.Toleration{{Operator: corev1.TolerationOpExists}}, pod.Tolerations); d != "" {
		t.Errorf("tolerations: want one that tolerates every taint (-want +got):\n%s", d)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("%d containers, %d init containers: want one container", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	if d := cmp.Diff([]string{"/nanoseg", "node"}, c.Command); d != "" {
		t.Errorf("command (-want +got):\n%s", d)
	}
	for _, a := range []string{"--node-name=$(NODE_NAME)", "--listen=:9990", "--owner-dir=/run/nanoseg/owners"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	wantEnv := []corev1.EnvVar{{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}
	if d := cmp.Diff(wantEnv, c.Env); d != "" {
		t.Errorf("env (-want +got):\n%s", d)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext.capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: the agent needs four capabilities, not all of them")
	}
	if d := cmp.Diff([]corev1.Capability{"ALL"}, sc.Capabilities.Drop); d != "" {
		t.Errorf("capabilities.drop (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]corev1.Capability{"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE"}, sc.Capabilities.Add); d != "" {
		t.Errorf("capabilities.add (-want +got):\n%s", d)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem: want true")
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.IntValue() != manifests.HealthPort {
			t.Errorf("%s probe: want GET %s on port %d, got %+v", p.name, p.path, manifests.HealthPort, p.probe)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}

	// Host paths: these and no others, each mounted where the agent looks.
	hostPaths := map[string]string{} // volume name -> host path
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	got := map[string]string{} // host path -> mount path, propagation, ro
	for _, m := range c.VolumeMounts {
		hp, ok := hostPaths[m.Name]
		if !ok {
			continue
		}
		prop := corev1.MountPropagationNone
		if m.MountPropagation != nil {
			prop = *m.MountPropagation
		}
		got[hp] = strings.Join([]string{m.MountPath, string(prop), map[bool]string{true: "ro", false: "rw"}[m.ReadOnly]}, " ")
	}
	want := map[string]string{
		// Not /var/run/netns: containerd refuses it where /var/run is a
		// symlink to /run (daemonset.yaml).
		"/run/netns":   "/run/netns HostToContainer ro",
		"/run/nanoseg": "/run/nanoseg None rw",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("host paths: host path -> mount path, propagation, read-only (-want +got):\n%s", d)
	}
	if len(hostPaths) != len(want) {
		t.Errorf("host path volumes %v: want only %v", hostPaths, want)
	}
}

// TestNodeAgentRole pins the node agent's ClusterRole: reads of what it
// enforces and Events, nothing else (the cluster test checks what the API
// server grants).
func TestNodeAgentRole(t *testing.T) {
	var role rbacv1.ClusterRole
	find(t, "ClusterRole", manifests.NodeAgent, &role)
	if d := cmp.Diff(nodeAgentRules, expand(role.Rules)); d != "" {
		t.Errorf("rules (-want +got):\n%s", d)
	}
	var b rbacv1.ClusterRoleBinding
	find(t, "ClusterRoleBinding", manifests.NodeAgent, &b)
	wantSubjects := []rbacv1.Subject{{Kind: "ServiceAccount", Name: manifests.NodeAgent, Namespace: manifests.Namespace}}
	if d := cmp.Diff(wantSubjects, b.Subjects); d != "" || b.RoleRef.Name != manifests.NodeAgent || b.RoleRef.Kind != "ClusterRole" {
		t.Errorf("binding: roleRef %+v, subjects (-want +got):\n%s", b.RoleRef, d)
	}
}

// TestNodeAgentControllerToken pins how the node agent reaches the
// controller: the Service's URL, the CA from its ConfigMap, and a
// projected token of audience nanoseg-controller (bound to the pod,
// rotated by the kubelet) mounted read-only where --token-file says; its
// Role in nanoseg-system gets that one ConfigMap and nothing else.
func TestNodeAgentControllerToken(t *testing.T) {
	var ds appsv1.DaemonSet
	find(t, "DaemonSet", manifests.NodeAgent, &ds)
	c := ds.Spec.Template.Spec.Containers[0]
	for _, a := range []string{"--controller=https://nanoseg-controller.nanoseg-system.svc:9443", "--controller-ca=configmap", "--token-file=/var/run/secrets/nanoseg/token"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	var vol *corev1.Volume
	for i, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "controller-token" {
			vol = &ds.Spec.Template.Spec.Volumes[i]
		}
	}
	if vol == nil || vol.Projected == nil || len(vol.Projected.Sources) != 1 || vol.Projected.Sources[0].ServiceAccountToken == nil {
		t.Fatalf("no projected ServiceAccount token volume controller-token: %+v", vol)
	}
	if tok := vol.Projected.Sources[0].ServiceAccountToken; tok.Audience != "nanoseg-controller" || tok.Path != "token" ||
		tok.ExpirationSeconds == nil || *tok.ExpirationSeconds > 3600 {
		t.Errorf("token %+v: want audience nanoseg-controller, path token, at most an hour", tok)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || (m.Name == "controller-token" && m.MountPath == "/var/run/secrets/nanoseg" && m.ReadOnly)
	}
	if !mounted {
		t.Error("controller-token is not mounted read-only at /var/run/secrets/nanoseg")
	}
	var role rbacv1.Role
	find(t, "Role", manifests.NodeAgent, &role)
	if d := cmp.Diff(nodeAgentNamespaceRules, expand(role.Rules)); d != "" || role.Namespace != manifests.Namespace {
		t.Errorf("Role %s/%s (-want +got):\n%s", role.Namespace, role.Name, d)
	}
	var svc corev1.Service
	find(t, "Service", manifests.Controller, &svc)
	if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[0].Port != 9443 || svc.Spec.Ports[0].Name != "ingest" ||
		svc.Spec.Ports[1].Port != 8080 || svc.Spec.Ports[1].Name != "ui" || svc.Spec.Ports[1].TargetPort.String() != "ui" {
		t.Errorf("Service ports %+v: want ingest 9443 and ui 8080 (to the container's port ui)", svc.Spec.Ports)
	}
}

// TestControllerDeployment pins the cluster controller: two replicas, its
// own ServiceAccount, no capability, not root, its real flags and ports;
// its Role (its Lease and the history head) and ClusterRole (the rules
// rbac.yaml gives with their reasons).
func TestControllerDeployment(t *testing.T) {
	var d appsv1.Deployment
	find(t, "Deployment", manifests.Controller, &d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != manifests.Controller || pod.HostNetwork || pod.HostPID || len(pod.Volumes) != 0 {
		t.Errorf("pod: serviceAccountName %q hostNetwork %v hostPID %v volumes %v", pod.ServiceAccountName, pod.HostNetwork, pod.HostPID, pod.Volumes)
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod securityContext: want runAsNonRoot")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) != 0 || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s: want every capability dropped and no privilege escalation, got %+v", c.Name, sc)
		}
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	for _, arg := range []string{"--listen=:9990", "--ingest=:9443", "--lease-duration=15s", "--ui-listen=127.0.0.1:8080"} {
		if !slices.Contains(ctr.Args, arg) {
			t.Errorf("args %v lack %s", ctr.Args, arg)
		}
	}
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["metrics"] != 9990 || ports["ingest"] != 9443 || ports["ui"] != 8080 {
		t.Errorf("ports %v, want metrics 9990, ingest 9443 and ui 8080", ports)
	}
	if ctr.LivenessProbe == nil || ctr.LivenessProbe.HTTPGet == nil || ctr.LivenessProbe.HTTPGet.Path != "/healthz" ||
		ctr.ReadinessProbe == nil || ctr.ReadinessProbe.HTTPGet == nil || ctr.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Error("probes: want liveness /healthz and readiness /readyz")
	}
	var role rbacv1.Role
	find(t, "Role", manifests.Controller, &role)
	if d := cmp.Diff(controllerRules, expand(role.Rules)); d != "" {
		t.Errorf("Role rules (-want +got):\n%s", d)
	}
	var cr rbacv1.ClusterRole
	find(t, "ClusterRole", manifests.Controller, &cr)
	if d := cmp.Diff(controllerClusterRoleRules, expand(cr.Rules)); d != "" {
		t.Errorf("ClusterRole rules (-want +got):\n%s", d)
	}
	var tr rbacv1.Role
	find(t, "Role", "nanoseg-controller-transport", &tr)
	if d := cmp.Diff(controllerTransportRules, expand(tr.Rules)); d != "" {
		t.Errorf("transport rules (-want +got):\n%s", d)
	}
	var review rbacv1.ClusterRole
	find(t, "ClusterRole", "nanoseg-controller-tokenreview", &review)
	if d := cmp.Diff(controllerClusterRules, expand(review.Rules)); d != "" {
		t.Errorf("cluster rules (-want +got):\n%s", d)
	}
}

// TestUserRoles pins the ClusterRoles for people: nanoseg-view reads and
// is aggregated into the built-in view role; nanoseg-operate adds create
// on promotions and nothing else, and is aggregated nowhere (the cluster
// test checks what the API server grants).
func TestUserRoles(t *testing.T) {
	var view, operate rbacv1.ClusterRole
	find(t, "ClusterRole", manifests.ViewRole, &view)
	find(t, "ClusterRole", manifests.OperateRole, &operate)
	if d := cmp.Diff(viewRules, expand(view.Rules)); d != "" {
		t.Errorf("%s rules (-want +got):\n%s", manifests.ViewRole, d)
	}
	if d := cmp.Diff(operateRules(), expand(operate.Rules)); d != "" {
		t.Errorf("%s rules (-want +got):\n%s", manifests.OperateRole, d)
	}
	if view.Labels["rbac.authorization.k8s.io/aggregate-to-view"] != "true" {
		t.Errorf("%s labels %v: want aggregate-to-view", manifests.ViewRole, view.Labels)
	}
	for k := range operate.Labels {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
			t.Errorf("%s is aggregated (%s): promoting must be granted on purpose", manifests.OperateRole, k)
		}
	}
	// Nodes are cluster-scoped infrastructure: a role of their own,
	// bound on purpose, never aggregated into view.
	var nodes rbacv1.ClusterRole
	find(t, "ClusterRole", manifests.ViewNodesRole, &nodes)
	if d := cmp.Diff([]string{"core/nodes list", "core/nodes watch"}, expand(nodes.Rules)); d != "" {
		t.Errorf("%s rules (-want +got):\n%s", manifests.ViewNodesRole, d)
	}
	for k := range nodes.Labels {
		if strings.HasPrefix(k, "rbac.authorization.k8s.io/aggregate-to-") {
			t.Errorf("%s is aggregated (%s): Nodes must be granted on purpose", manifests.ViewNodesRole, k)
		}
	}
	if view.AggregationRule != nil || operate.AggregationRule != nil || nodes.AggregationRule != nil {
		t.Error("an aggregationRule: its rules would be empty without kube-controller-manager")
	}
}

// viewRules are nanoseg-view's rights, expanded.
var viewRules = []string{
	"apps/controllerrevisions get", "apps/controllerrevisions list", "apps/controllerrevisions watch",
	"core/configmaps get nanoseg-history-head",
	"core/events get", "core/events list", "core/events watch",
	"core/namespaces get", "core/namespaces list", "core/namespaces watch",
	"core/pods get", "core/pods list", "core/pods watch",
	"core/services get", "core/services list", "core/services watch",
	"discovery.k8s.io/endpointslices get", "discovery.k8s.io/endpointslices list", "discovery.k8s.io/endpointslices watch",
	"nanoseg.io/nanosegmentprobes get", "nanoseg.io/nanosegmentprobes list", "nanoseg.io/nanosegmentprobes watch",
	"nanoseg.io/nanosegmentpromotions get", "nanoseg.io/nanosegmentpromotions list", "nanoseg.io/nanosegmentpromotions watch",
	"nanoseg.io/nanosegmentproposals get", "nanoseg.io/nanosegmentproposals list", "nanoseg.io/nanosegmentproposals watch",
	"nanoseg.io/nanosegments get", "nanoseg.io/nanosegments list", "nanoseg.io/nanosegments watch",
	"networking.k8s.io/networkpolicies get", "networking.k8s.io/networkpolicies list", "networking.k8s.io/networkpolicies watch",
	"policy.networking.k8s.io/clusternetworkpolicies get", "policy.networking.k8s.io/clusternetworkpolicies list", "policy.networking.k8s.io/clusternetworkpolicies watch",
}

// operateRules are nanoseg-operate's rights, expanded: the view rights
// and creating promotions.
func operateRules() []string {
	r := append(slices.Clone(viewRules), "nanoseg.io/nanosegmentpromotions create", "nanoseg.io/nanosegmentprobes create", "nanoseg.io/nanosegmentprobes delete")
	slices.Sort(r)
	return r
}

// TestCRDLimits checks that the generated CRDs' maxItems are the limits
// v1alpha1 exports to the Go side.
func TestCRDLimits(t *testing.T) {
	crd := func(name string) map[string]any {
		for _, o := range objects(t) {
			if o.GetKind() == "CustomResourceDefinition" && o.GetName() == name {
				versions, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
				schema, _, _ := unstructured.NestedMap(versions[0].(map[string]any), "schema", "openAPIV3Schema")
				return schema
			}
		}
		t.Fatalf("no CRD %s", name)
		return nil
	}
	maxItems := func(schema map[string]any, path ...string) int64 {
		var fields []string
		for _, p := range path {
			if p == "[]" {
				fields = append(fields, "items")
			} else {
				fields = append(fields, "properties", p)
			}
		}
		n, ok, _ := unstructured.NestedInt64(schema, append(fields, "maxItems")...)
		if !ok {
			t.Errorf("no maxItems at %v", path)
		}
		return n
	}
	seg, prop := crd("nanosegments.nanoseg.io"), crd("nanosegmentproposals.nanoseg.io")
	for _, tc := range []struct {
		schema map[string]any
		path   []string
		want   int64
	}{
		{seg, []string{"spec", "ingress"}, v1alpha1.MaxRules},
		{seg, []string{"spec", "egress"}, v1alpha1.MaxRules},
		{seg, []string{"spec", "ingress", "[]", "peers"}, v1alpha1.MaxPeers},
		{seg, []string{"spec", "egress", "[]", "ports"}, v1alpha1.MaxPorts},
		{seg, []string{"spec", "ingress", "[]", "peers", "[]", "ipBlock", "except"}, v1alpha1.MaxExcept},
		{prop, []string{"spec", "segment", "egress", "[]", "peers"}, v1alpha1.MaxPeers},
		{prop, []string{"spec", "edges"}, v1alpha1.MaxEdges},
	} {
		if got := maxItems(tc.schema, tc.path...); got != tc.want {
			t.Errorf("%v: maxItems %d, v1alpha1 says %d", tc.path, got, tc.want)
		}
	}
}

// nodeAgentRules are the node agent's rights, expanded (see expand).
var nodeAgentRules = []string{
	"core/events create",
	"core/namespaces get", "core/namespaces list", "core/namespaces watch",
	"core/nodes list", "core/nodes watch",
	"core/pods get", "core/pods list", "core/pods watch",
	"core/services get", "core/services list", "core/services watch",
	"discovery.k8s.io/endpointslices get", "discovery.k8s.io/endpointslices list", "discovery.k8s.io/endpointslices watch",
	"nanoseg.io/nanosegmentprobes get", "nanoseg.io/nanosegmentprobes list", "nanoseg.io/nanosegmentprobes watch",
	"nanoseg.io/nanosegmentprobes/status patch", "nanoseg.io/nanosegmentprobes/status update",
	"nanoseg.io/nanosegments get", "nanoseg.io/nanosegments list", "nanoseg.io/nanosegments watch",
	"networking.k8s.io/networkpolicies get", "networking.k8s.io/networkpolicies list", "networking.k8s.io/networkpolicies watch",
	"policy.networking.k8s.io/clusternetworkpolicies list", "policy.networking.k8s.io/clusternetworkpolicies watch",
}

// nodeAgentNamespaceRules are the node agent's rights in nanoseg-system
// only: the controller's CA.
var nodeAgentNamespaceRules = []string{"core/configmaps get nanoseg-controller-ca"}

// controllerTransportRules are the controller's rights in its namespace
// for the observation transport (rbac-transport.yaml), expanded.
var controllerTransportRules = []string{
	"core/configmaps create", "core/configmaps get nanoseg-controller-ca", "core/configmaps update nanoseg-controller-ca",
	"core/secrets create", "core/secrets get nanoseg-controller-tls", "core/secrets update nanoseg-controller-tls",
}

// controllerClusterRules are the controller's cluster-wide rights.
var controllerClusterRules = []string{"authentication.k8s.io/tokenreviews create"}

// controllerRules are the controller's rights in its own namespace
// only (its Role nanoseg-controller), expanded.
var controllerRules = []string{
	"coordination.k8s.io/leases create",
	"coordination.k8s.io/leases get nanoseg-controller",
	"coordination.k8s.io/leases update nanoseg-controller",
	"core/configmaps create",
	"core/configmaps get nanoseg-history-head",
	"core/configmaps update nanoseg-history-head",
}

// controllerClusterRoleRules are the controller's rights in every
// namespace (its ClusterRole nanoseg-controller), expanded.
var controllerClusterRoleRules = []string{
	"apps/controllerrevisions create", "apps/controllerrevisions get", "apps/controllerrevisions list",
	"core/events create",
	"core/namespaces get", "core/namespaces list", "core/namespaces watch",
	"core/nodes list", "core/nodes watch",
	"core/pods get", "core/pods list", "core/pods watch",
	"core/services get", "core/services list", "core/services watch",
	"discovery.k8s.io/endpointslices get", "discovery.k8s.io/endpointslices list", "discovery.k8s.io/endpointslices watch",
	"nanoseg.io/nanosegmentpromotions create", "nanoseg.io/nanosegmentpromotions get", "nanoseg.io/nanosegmentpromotions list", "nanoseg.io/nanosegmentpromotions watch",
	"nanoseg.io/nanosegmentpromotions/status update",
	"nanoseg.io/nanosegmentproposals create", "nanoseg.io/nanosegmentproposals delete", "nanoseg.io/nanosegmentproposals get",
	"nanoseg.io/nanosegmentproposals list", "nanoseg.io/nanosegmentproposals update", "nanoseg.io/nanosegmentproposals watch",
	"nanoseg.io/nanosegmentproposals/status update",
	"nanoseg.io/nanosegments create", "nanoseg.io/nanosegments get", "nanoseg.io/nanosegments list", "nanoseg.io/nanosegments update", "nanoseg.io/nanosegments watch",
	"nanoseg.io/nanosegments/status update",
	"networking.k8s.io/networkpolicies get", "networking.k8s.io/networkpolicies list", "networking.k8s.io/networkpolicies watch",
	"policy.networking.k8s.io/clusternetworkpolicies list", "policy.networking.k8s.io/clusternetworkpolicies watch",
}

// expand spells each (group, resource, verb, resource name) a rule grants
// as "group/resource verb [name]" ("core" for the core group), sorted and
// without duplicates.
func expand(rules []rbacv1.PolicyRule) []string {
	var out []string
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			if g == "" {
				g = "core"
			}
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					for _, n := range names {
						out = append(out, strings.TrimSpace(g+"/"+res+" "+v+" "+n))
					}
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestClusterNetworkPolicyCRD checks nanoseg's CRD for ClusterNetworkPolicies:
// embedded as on disk, outside the kustomization (it must not replace an
// upstream CRD), one cluster-scoped CRD serving the resource the node
// agent watches, with the limits the Go side validates.
func TestClusterNetworkPolicyCRD(t *testing.T) {
	disk, err := os.ReadFile(manifests.ClusterNetworkPolicyCRD)
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := fs.ReadFile(manifests.FS, manifests.ClusterNetworkPolicyCRD)
	if err != nil || string(embedded) != string(disk) {
		t.Fatalf("embedded copy: %v (differs: %v)", err, string(embedded) != string(disk))
	}
	named, err := manifests.Files(manifests.FS, ".")
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(named, manifests.ClusterNetworkPolicyCRD) {
		t.Errorf("%s is in the kustomization: kubectl apply -k would replace an upstream CRD", manifests.ClusterNetworkPolicyCRD)
	}
	objs, err := manifests.Decode(disk)
	if err != nil || len(objs) != 1 {
		t.Fatalf("decode: %v (%d objects)", err, len(objs))
	}
	var crd struct {
		Spec struct {
			Group string `json:"group"`
			Scope string `json:"scope"`
			Names struct {
				Plural string `json:"plural"`
				Kind   string `json:"kind"`
			} `json:"names"`
			Versions []struct {
				Name   string `json:"name"`
				Served bool   `json:"served"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, &crd); err != nil {
		t.Fatal(err)
	}
	s := crd.Spec
	if objs[0].GetName() != "clusternetworkpolicies.policy.networking.k8s.io" || s.Group != cnpv1alpha2.GroupName || s.Scope != "Cluster" ||
		s.Names.Plural != "clusternetworkpolicies" || s.Names.Kind != cnpv1alpha2.Kind || len(s.Versions) != 1 ||
		s.Versions[0].Name != cnpv1alpha2.SchemeGroupVersion.Version || !s.Versions[0].Served {
		t.Fatalf("CRD %s: group %s scope %s names %+v, %d versions", objs[0].GetName(), s.Group, s.Scope, s.Names, len(s.Versions))
	}
	schema := s.Versions[0].Schema.OpenAPIV3Schema
	for _, tc := range []struct {
		path []string
		key  string
		want int64
	}{
		{[]string{"spec", "priority"}, "maximum", cnpv1alpha2.MaxPriority},
		{[]string{"spec", "ingress"}, "maxItems", cnpv1alpha2.MaxRules},
		{[]string{"spec", "egress"}, "maxItems", cnpv1alpha2.MaxRules},
		{[]string{"spec", "ingress", "[]", "from"}, "maxItems", cnpv1alpha2.MaxPeers},
		{[]string{"spec", "egress", "[]", "protocols"}, "maxItems", cnpv1alpha2.MaxProtocols},
		{[]string{"spec", "egress", "[]", "to", "[]", "networks"}, "maxItems", cnpv1alpha2.MaxNetworks},
		{[]string{"spec", "egress", "[]", "to", "[]", "domainNames"}, "maxItems", cnpv1alpha2.MaxDomainNames},
		{[]string{"spec", "egress", "[]", "name"}, "maxLength", cnpv1alpha2.MaxRuleName},
		{[]string{"spec", "egress", "[]", "to", "[]", "networks", "[]"}, "maxLength", cnpv1alpha2.MaxCIDR},
	} {
		var fields []string
		for _, p := range tc.path {
			if p == "[]" {
				fields = append(fields, "items")
			} else {
				fields = append(fields, "properties", p)
			}
		}
		got, ok, _ := unstructured.NestedFieldNoCopy(schema, append(fields, tc.key)...)
		if n, isNum := got.(int64); !ok || !isNum || n != tc.want {
			t.Errorf("%v %s = %v, the Go side says %d", tc.path, tc.key, got, tc.want)
		}
	}
}
