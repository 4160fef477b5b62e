package kube

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// withUID sets the object's uid, as the API server would.
func withUID(u *unstructured.Unstructured, uid string) *unstructured.Unstructured {
	u.SetUID(types.UID(uid))
	return u
}

// TestKeepLastValidAcrossRestart: a watcher that keeps the last valid
// versions in a file writes the Admin Deny in force there; a watcher
// started later over the same file, when the API server now holds an
// invalid edit of that policy (made while no watcher ran), keeps the
// file's version in force and says so, where a watcher without the file
// enforces nothing of it. A policy recreated under its name (a new uid)
// gets nothing from the file, nor does one deleted meanwhile; a
// malformed file is reported and not used.
func TestKeepLastValidAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies-node-a.json")
	keep := func(w *PolicyWatcher) {
		if err := w.KeepLastValid(path); err != nil {
			t.Errorf("KeepLastValid: %v", err)
		}
	}
	first := startFakeWith(t, keep, withUID(cnpObject(t, "guard", denyShop), "uid-guard"))
	waitFor(t, "guard in force", func() bool { return len(first.w.InForce().ClusterNetworkPolicies) == 1 })
	waitFor(t, "the keep file", func() bool {
		raw, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(raw), `"uid":"uid-guard"`)
	})
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("keep file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}

	// While no watcher ran, guard was edited into a version that fails
	// (a selector operator without values).
	badGuard := strings.Replace(denyShop, "{matchLabels: {team: shop}}", "{matchExpressions: [{key: team, operator: In}]}", 1)
	restarted := startFakeWith(t, keep, withUID(cnpObject(t, "guard", badGuard), "uid-guard"))
	in := restarted.w.InForce()
	if len(in.ClusterNetworkPolicies) != 1 || in.ClusterNetworkPolicies[0].Spec.Subject.Namespaces == nil ||
		in.ClusterNetworkPolicies[0].Spec.Subject.Namespaces.MatchLabels["team"] != "shop" || in.ClusterNetworkPolicies[0].Spec.Ingress[0].Action != "Deny" {
		t.Fatalf("after the restart: in force %+v, want guard's last valid version (the Admin Deny of team=shop)", in.ClusterNetworkPolicies)
	}
	rs := restarted.w.Rejected()
	if len(rs) != 1 || !rs[0].KeptPrevious || rs[0].Key() != "ClusterNetworkPolicy guard" {
		t.Errorf("rejections after the restart: %v, want guard with its previous version kept", rs)
	}
	if log := restarted.log.String(); !strings.Contains(log, "kept from before this agent started") || !strings.Contains(log, path) {
		t.Errorf("log does not say the kept version came from %s:\n%s", path, log)
	}
	// The same restart without the file: nothing of guard is in force
	// (what the file is for).
	plain := startFake(t, withUID(cnpObject(t, "guard", badGuard), "uid-guard"))
	if n := len(plain.w.InForce().ClusterNetworkPolicies); n != 0 {
		t.Errorf("without the keep file, %d ClusterNetworkPolicies in force, want 0", n)
	}

	// Recreated under the same name (a new uid): the file's version is
	// not its own.
	recreated := startFakeWith(t, keep, withUID(cnpObject(t, "guard", badGuard), "uid-other"))
	if n := len(recreated.w.InForce().ClusterNetworkPolicies); n != 0 {
		t.Errorf("a recreated guard (new uid) got %d versions from the file, want none", n)
	}
	// Deleted while no watcher ran: nothing to apply it to.
	gone := startFakeWith(t, keep)
	if n := len(gone.w.InForce().ClusterNetworkPolicies); n != 0 {
		t.Errorf("guard deleted meanwhile: %d in force, want 0", n)
	}

	// A malformed file is reported and not used; the watcher works.
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version": 1, "policies": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	var kerr error
	broken := startFakeWith(t, func(w *PolicyWatcher) { kerr = w.KeepLastValid(bad) }, withUID(cnpObject(t, "guard", denyShop), "uid-guard"))
	if kerr == nil || !strings.Contains(kerr.Error(), bad) {
		t.Errorf("KeepLastValid of a malformed file: %v, want an error naming it", kerr)
	}
	waitFor(t, "guard in force over a malformed file", func() bool { return len(broken.w.InForce().ClusterNetworkPolicies) == 1 })
	waitFor(t, "the malformed file replaced", func() bool {
		raw, err := os.ReadFile(bad)
		var f keepFileJSON
		return err == nil && json.Unmarshal(raw, &f) == nil && len(f.Policies) == 1
	})
}

// TestKeptVersionsAreValidatedAgain: a keep file whose version of a
// policy fails this build's checks (written by a build that checked less,
// or edited by hand) does not put it in force when the API server's
// version is refused too, and an entry whose kind does not match the
// object it holds is not used; the versions a watcher writes itself (a
// NetworkPolicy, a NanoSegment, a ClusterNetworkPolicy) pass the check.
func TestKeptVersionsAreValidatedAgain(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "policies-node-a.json")
	np := netpol("shop", "db", 5432)
	np.UID = "uid-np"
	seg := toUnstructured(t, segment("shop", "api", "enforce", 8080))
	seg.SetUID("uid-seg")
	first := startFakeWith(t, func(w *PolicyWatcher) { _ = w.KeepLastValid(good) },
		np, seg, withUID(cnpObject(t, "guard", denyShop), "uid-guard"))
	waitFor(t, "three in force", func() bool {
		in := first.w.InForce()
		return len(in.NetworkPolicies)+len(in.NanoSegments)+len(in.ClusterNetworkPolicies) == 3
	})
	var f keepFileJSON
	waitFor(t, "three kept", func() bool {
		raw, err := os.ReadFile(good)
		return err == nil && json.Unmarshal(raw, &f) == nil && len(f.Policies) == 3
	})
	for _, k := range f.Policies {
		if err := checkKept(k); err != nil {
			t.Errorf("a version the watcher kept itself fails the check: %s %s: %v", k.Kind, k.Name, err)
		}
	}

	// guard's kept version is invalid (a selector operator without
	// values), as is the API server's.
	badGuard := strings.Replace(denyShop, "{matchLabels: {team: shop}}", "{matchExpressions: [{key: team, operator: In}]}", 1)
	bad, err := ClusterNetworkPolicyFromUnstructured(withUID(cnpObject(t, "guard", badGuard), "uid-guard"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := keepFileJSON{Version: keepFileVersion, Policies: []keptVersion{
		{Kind: KindClusterNetworkPolicy, Name: "guard", UID: "uid-guard", ResourceVersion: "7", Cluster: bad},
		// A NetworkPolicy under a ClusterNetworkPolicy's name and kind.
		{Kind: KindClusterNetworkPolicy, Name: "other", UID: "uid-other", ResourceVersion: "8", NetworkPolicy: np},
	}}
	path := filepath.Join(dir, "tampered.json")
	raw, _ := json.Marshal(tampered)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	otherBad := strings.Replace(denyShop, "priority: 10", "priority: -1", 1)
	restarted := startFakeWith(t, func(w *PolicyWatcher) { _ = w.KeepLastValid(path) },
		withUID(cnpObject(t, "guard", badGuard), "uid-guard"), withUID(cnpObject(t, "other", otherBad), "uid-other"))
	if in := restarted.w.InForce(); len(in.ClusterNetworkPolicies) != 0 || len(in.NetworkPolicies) != 0 {
		t.Errorf("in force from a keep file of invalid versions: %+v %+v, want nothing", in.ClusterNetworkPolicies, in.NetworkPolicies)
	}
	if log := restarted.log.String(); !strings.Contains(log, "fails validation") {
		t.Errorf("log does not say a kept version fails validation:\n%s", log)
	}
}

// TestKeepFileFollowsTheSync: a policy deleted while no watcher ran, the
// only one, leaves the keep file at the restart: the file says what is in
// force once the watcher has synced (nothing), not the withdrawn policy
// until the next change; a malformed file is replaced at the sync too.
func TestKeepFileFollowsTheSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policies-node-a.json")
	keep := func(w *PolicyWatcher) { _ = w.KeepLastValid(path) }
	startFakeWith(t, keep, withUID(cnpObject(t, "guard", denyShop), "uid-guard"))
	waitFor(t, "guard kept", func() bool {
		raw, err := os.ReadFile(path)
		return err == nil && strings.Contains(string(raw), `"uid":"uid-guard"`)
	})
	kept := func() (keepFileJSON, error) {
		var f keepFileJSON
		raw, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(raw, &f)
		}
		return f, err
	}
	startFakeWith(t, keep) // guard deleted meanwhile
	waitFor(t, "the keep file without guard", func() bool { f, err := kept(); return err == nil && len(f.Policies) == 0 })

	if err := os.WriteFile(path, []byte(`{"version": 1, "policies": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	startFakeWith(t, keep)
	waitFor(t, "the malformed keep file replaced", func() bool { f, err := kept(); return err == nil && f.Version == keepFileVersion })
}
