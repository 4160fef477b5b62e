//go:build linux

package nodeagent

import (
	"context"
	"strings"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"

	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// TestProbesOnAPIServer: NanoSegmentProbes created through the API server
// are run by the agent of their node, from inside the source pod's real
// netns, with real packets: a connection that gets through, one that the
// destination node's enforced NetworkPolicy drops, and refusals (a pod of
// another node, an address outside the cluster) answered without a
// packet; the agent of the other node ignores them, and a probe with an
// outcome is never run again.
func TestProbesOnAPIServer(t *testing.T) {
	k := newKCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	k.agent(t, "node-a", dir)
	k.agent(t, "node-b", dir)
	// Both families up (IPv6 addresses leave duplicate address
	// detection within a second or two) before anything is probed.
	k.expect(t, "no policy", map[uint16]bool{8080: true, 9090: true})
	dyn := dynamic.NewForConfigOrDie(k.c.Config)
	probes := dyn.Resource(ProbeResource).Namespace(k.ns)
	// The API server is shared and has no namespace controller: leave no
	// probe for the next test's agents.
	t.Cleanup(func() {
		_ = probes.DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
	})

	probe := func(name, node, pod, addr string, port int32) v1alpha1.NanoSegmentProbeStatus {
		t.Helper()
		p := &v1alpha1.NanoSegmentProbe{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindProbe},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.NanoSegmentProbeSpec{Node: node, Pod: pod, Address: addr, Port: port, Protocol: model.ProtocolTCP,
				TimeoutMilliseconds: 300}}
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(p)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := probes.Create(ctx, &unstructured.Unstructured{Object: raw}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		for time.Since(start) < 10*time.Second {
			u, err := probes.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got v1alpha1.NanoSegmentProbe
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Outcome != "" {
				t.Logf("probe %s: %s %q after %s (agent %s, attempt %d µs)", name, got.Status.Outcome, got.Status.Detail,
					time.Since(start).Round(time.Millisecond), got.Status.Agent, got.Status.DurationMicroseconds)
				return got.Status
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("probe %s: no outcome after 10s", name)
		return v1alpha1.NanoSegmentProbeStatus{}
	}

	if st := probe("open-v4", "node-a", "client-0", kServerV4.String(), 8080); st.Outcome != v1alpha1.ProbeConnected || !st.Reached ||
		st.Agent != "nanoseg node node-a" || st.Started == nil {
		t.Errorf("open path: %+v", st)
	}
	if st := probe("open-v6", "node-a", "client-0", kServerV6.String(), 9090); st.Outcome != v1alpha1.ProbeConnected {
		t.Errorf("open path over IPv6: %+v", st)
	}
	if st := probe("closed-port", "node-a", "client-0", kServerV4.String(), 7070); st.Outcome != v1alpha1.ProbeRefused || !st.Reached {
		t.Errorf("no server on the port: %+v", st)
	}
	// node-b enforces a policy that admits 9090 only: 8080 is dropped.
	byPod := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}
	if _, err := k.cs.NetworkingV1().NetworkPolicies(k.ns).Create(ctx, serverPolicy(k.ns, 9090, byPod), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k.expect(t, "policy enforced", map[uint16]bool{8080: false, 9090: true})
	if st := probe("dropped", "node-a", "client-0", kServerV4.String(), 8080); st.Outcome != v1alpha1.ProbeTimeout || st.Reached {
		t.Errorf("dropped path: %+v", st)
	}
	// Refusals name the field and send nothing.
	if st := probe("not-my-pod", "node-a", "server-0", kClientV4.String(), 8080); st.Outcome != v1alpha1.ProbeError ||
		!strings.Contains(st.Detail, "spec.pod: "+k.ns+"/server-0 is not a pod of node node-a") {
		t.Errorf("a pod of another node: %+v", st)
	}
	if st := probe("outside", "node-a", "client-0", "198.18.99.99", 8080); st.Outcome != v1alpha1.ProbeError ||
		!strings.Contains(st.Detail, "spec.address: 198.18.99.99 is neither a pod's nor a Service's address") {
		t.Errorf("an address outside the cluster: %+v", st)
	}
	// Bad specs never reach an agent: the API server refuses them.
	for _, tc := range []struct {
		spec v1alpha1.NanoSegmentProbeSpec
		want string
	}{
		{v1alpha1.NanoSegmentProbeSpec{Node: "node-a", Pod: "client-0", Address: "not-an-ip", Port: 80, Protocol: model.ProtocolTCP}, "spec.address: Invalid value"},
		{v1alpha1.NanoSegmentProbeSpec{Node: "node-a", Pod: "client-0", Address: "198.18.77.2", Port: 0, Protocol: model.ProtocolTCP}, "spec.port: Invalid value"},
		{v1alpha1.NanoSegmentProbeSpec{Node: "node-a", Pod: "client-0", Address: "198.18.77.2", Port: 80, Protocol: "SCTP"}, `spec.protocol: Unsupported value: "SCTP"`},
	} {
		bad := &v1alpha1.NanoSegmentProbe{TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindProbe},
			ObjectMeta: metav1.ObjectMeta{GenerateName: "bad-"}, Spec: tc.spec}
		raw, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(bad)
		if _, err := probes.Create(ctx, &unstructured.Unstructured{Object: raw}, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("bad probe: want %q in %v", tc.want, err)
		}
	}
	// Immutable spec.
	u, err := probes.Get(ctx, "open-v4", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedField(u.Object, int64(9090), "spec", "port")
	if _, err := probes.Update(ctx, u, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "spec is immutable") {
		t.Errorf("changed spec: %v", err)
	}
	// Run once: an outcome cleared by hand is not run again (the agent
	// remembers the probe until it is deleted).
	u, err = probes.Get(ctx, "open-v4", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.RemoveNestedField(u.Object, "status")
	if _, err := probes.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if u, err = probes.Get(ctx, "open-v4", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if o, _, _ := unstructured.NestedString(u.Object, "status", "outcome"); o != "" {
		t.Errorf("a probe ran twice: outcome %q", o)
	}
}
