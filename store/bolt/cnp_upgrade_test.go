package bolt

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/store"
)

func upgradeCNP(name string, priority int32) *cnpv1alpha2.ClusterNetworkPolicy {
	p := &cnpv1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: cnpv1alpha2.Spec{
		Tier: cnpv1alpha2.TierAdmin, Priority: priority, Subject: cnpv1alpha2.Subject{Namespaces: &metav1.LabelSelector{}},
		Ingress: []cnpv1alpha2.IngressRule{{Name: "deny-all", Action: cnpv1alpha2.ActionDeny, From: []cnpv1alpha2.IngressPeer{{Namespaces: &metav1.LabelSelector{}}}}},
	}}
	p.APIVersion, p.Kind = cnpv1alpha2.APIVersion, cnpv1alpha2.Kind
	return p
}

// writeOldCNPs writes cnps into the file at path as an agent from before
// ClusterNetworkPolicy records did (PutClusterNetworkPolicy: name → JSON
// in clusternetworkpolicies) and deletes the names in gone from there.
func writeOldCNPs(t *testing.T, path string, gone []string, cnps ...*cnpv1alpha2.ClusterNetworkPolicy) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists([]byte("clusternetworkpolicies"))
		if err != nil {
			return err
		}
		for _, p := range cnps {
			raw, err := json.Marshal(p)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(p.Name), raw); err != nil {
				return err
			}
		}
		for _, name := range gone {
			if err := b.Delete([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenUpgradesOldClusterNetworkPolicies opens a file with only the
// old bucket (the ClusterNetworkPolicies in force, no records): each
// becomes a revision-1 apply by store.ByUnknown at an unknown (zero)
// time, the policies in force are unchanged, a second open adds nothing,
// records go on from there, and what an old agent changes in the file
// later is recorded at the next open.
func TestOpenUpgradesOldClusterNetworkPolicies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	writeOldCNPs(t, path, nil, upgradeCNP("guard-db", 5), upgradeCNP("baseline", 900))

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.ClusterNetworkPolicyRecords("")
	if err != nil || len(recs) != 2 {
		t.Fatalf("records after the upgrade = %+v, %v; want 2", recs, err)
	}
	for i, name := range []string{"baseline", "guard-db"} {
		r := recs[i]
		if r.Name != name || r.Revision != 1 || r.Action != store.ActionApply || r.By != store.ByUnknown || !r.At.IsZero() || r.Policy == nil || r.Policy.Name != name {
			t.Errorf("record %d = %+v, want %s revision 1 apply by %q at the zero time", i, r, name, store.ByUnknown)
		}
	}
	in, _ := s.ClusterNetworkPolicies()
	if len(in) != 2 || in[1].Spec.Priority != 5 || in[0].Spec.Ingress[0].Action != cnpv1alpha2.ActionDeny {
		t.Errorf("in force after the upgrade = %+v", in)
	}
	at := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	if _, err := s.AddClusterNetworkPolicyRecord(store.ClusterNetworkPolicyRecord{Action: store.ActionApply, At: at, By: "sec", Policy: upgradeCNP("guard-db", 6)}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopened: nothing more is recorded.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	recs, _ = s.ClusterNetworkPolicyRecords("guard-db")
	if len(recs) != 2 || recs[1].Revision != 2 || recs[1].By != "sec" || recs[1].Policy.Spec.Priority != 6 {
		t.Errorf("guard-db after reopening = %+v, want the upgrade record and sec's", recs)
	}
	s.Close()

	// An old agent on the same file changes baseline and deletes
	// guard-db (the in-force bucket is all it knows): the next open
	// records both, by store.ByUnknown.
	writeOldCNPs(t, path, []string{"guard-db"}, upgradeCNP("baseline", 901))
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, _ = s.ClusterNetworkPolicyRecords("")
	if len(recs) != 5 {
		t.Fatalf("records after the old agent = %+v, want 5", recs)
	}
	if r := recs[1]; r.Name != "baseline" || r.Revision != 2 || r.Action != store.ActionApply || r.By != store.ByUnknown || r.Policy.Spec.Priority != 901 {
		t.Errorf("baseline's second record = %+v, want the old agent's change by %q", r, store.ByUnknown)
	}
	if r := recs[4]; r.Name != "guard-db" || r.Revision != 3 || r.Action != store.ActionDelete || r.By != store.ByUnknown {
		t.Errorf("guard-db's third record = %+v, want the old agent's delete by %q", r, store.ByUnknown)
	}
	if in, _ := s.ClusterNetworkPolicies(); len(in) != 1 || in[0].Name != "baseline" || in[0].Spec.Priority != 901 {
		t.Errorf("in force = %+v, want baseline at 901 only", in)
	}
}

// TestOldBucketFollowsRecords: every record also keeps the in-force
// bucket of the old format, so an agent from before records, opened on
// the file, enforces the same ClusterNetworkPolicies.
func TestOldBucketFollowsRecords(t *testing.T) {
	s, path := openTestStore(t)
	at := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	for _, rec := range []store.ClusterNetworkPolicyRecord{
		{Action: store.ActionApply, At: at, By: "ops", Policy: upgradeCNP("guard-db", 5)},
		{Action: store.ActionApply, At: at, By: "ops", Policy: upgradeCNP("baseline", 900)},
		{Action: store.ActionDelete, At: at, By: "ops", Name: "baseline"},
	} {
		if _, err := s.AddClusterNetworkPolicyRecord(rec); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var names []string
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("clusternetworkpolicies")).ForEach(func(k, v []byte) error {
			var p cnpv1alpha2.ClusterNetworkPolicy
			if err := json.Unmarshal(v, &p); err != nil || p.Spec.Priority != 5 {
				t.Errorf("old bucket %s = %s, %v", k, v, err)
			}
			names = append(names, string(k))
			return nil
		})
	})
	if len(names) != 1 || names[0] != "guard-db" {
		t.Errorf("old bucket holds %v, want guard-db only", names)
	}
}
