package kube

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/nanoseg/nanoseg/inventory"
)

// fakePodFinder is a fakeFinder whose namespaces also carry the pod UID
// their processes name.
type fakePodFinder struct {
	fakeFinder
	uids map[uint64]string // inode → pod UID
	cri  map[uint64]bool
}

func (f *fakePodFinder) FindUIDs(pods map[string][]string) map[string]PodNetns {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]PodNetns{}
	for key, uids := range pods {
		var hits []nsInfo
		for _, ns := range f.nss {
			if slices.Contains(uids, f.uids[ns.inode]) {
				hits = append(hits, ns)
			}
		}
		switch len(hits) {
		case 0:
			out[key] = PodNetns{Found: Found{Code: ReasonNotFound, Reason: "no process"}}
		case 1:
			out[key] = PodNetns{Found: Found{Path: hits[0].path, Inode: hits[0].inode}, Addrs: hits[0].addrs}
		default:
			out[key] = PodNetns{Found: Found{Code: ReasonAmbiguous, Reason: "several"}}
		}
	}
	return out
}

func (f *fakePodFinder) NetnsPod(inode uint64) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uids[inode]
}

func (f *fakePodFinder) Candidates() []Candidate {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Candidate
	for _, ns := range f.nss {
		if f.cri[ns.inode] || f.uids[ns.inode] != "" {
			out = append(out, Candidate{Path: ns.path, Inode: ns.inode, CRI: f.cri[ns.inode], UID: f.uids[ns.inode]})
		}
	}
	return out
}

func (f *fakePodFinder) setUIDs(uids map[uint64]string, nss ...nsInfo) {
	f.mu.Lock()
	f.uids = uids
	f.mu.Unlock()
	f.set(nss...)
}

// TestEarlyFind: a pod of this node without posted addresses is pending;
// once its namespace's processes name it, it is listed with the
// namespace's addresses and path; its posted addresses later keep it
// there. A pod whose posted address lies in a namespace of another pod's
// processes is not matched to it.
func TestEarlyFind(t *testing.T) {
	fin := &fakePodFinder{cri: map[uint64]bool{31: true}}
	fin.nss = []nsInfo{{inode: 31, path: "/run/netns/cni-new"}}
	s, client := start(t, fin, nil, namespace("shop", nil), pod("shop", "web", node, nil, labels("tier", "front")))
	eventually(t, s, "web pending", func(inventory.Snapshot) bool {
		p := s.Pending()
		return len(p) == 1 && p[0].Name == "web" && slices.Contains(p[0].UIDs, "shop-web") && p[0].Labels["tier"] == "front"
	})
	if c := s.Candidates(); len(c) != 1 || c[0].Inode != 31 || !c[0].CRI {
		t.Errorf("candidates = %+v, want the CRI namespace", c)
	}
	// The sandbox runs: its cgroup names the pod; the namespace has its
	// address.
	fin.setUIDs(map[uint64]string{31: "shop-web"}, nsInfo{inode: 31, path: "/run/netns/cni-new", addrs: addrs("198.18.0.9")})
	snap := eventually(t, s, "web found by its processes", func(snap inventory.Snapshot) bool {
		e, ok := endpoint(snap, "shop_web")
		return ok && e.NetnsInode == 31
	})
	e, _ := endpoint(snap, "shop_web")
	if e.Path != "/run/netns/cni-new" || !slices.Equal(e.Addrs, addrs("198.18.0.9")) || e.Labels["tier"] != "front" {
		t.Errorf("web = %+v", e)
	}
	if p := s.Pending(); len(p) != 0 {
		t.Errorf("pending = %+v, want none", p)
	}
	// kubelet posts the address: same endpoint.
	ctx := context.Background()
	p := pod("shop", "web", node, []string{"198.18.0.9"}, labels("tier", "front"))
	if _, err := client.CoreV1().Pods("shop").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, "web found by its posted address", func(snap inventory.Snapshot) bool {
		e, ok := endpoint(snap, "shop_web")
		return ok && e.NetnsInode == 31 && len(s.Pending()) == 0
	})

	// A pod whose posted address is in a namespace of another pod's
	// processes (the address reused; its own namespace gone) is not
	// matched to it.
	if _, err := client.CoreV1().Pods("shop").Create(ctx, pod("shop", "old", node, []string{"198.18.0.7"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fin.setUIDs(map[uint64]string{31: "shop-web", 32: "shop-other"},
		nsInfo{inode: 31, path: "/run/netns/cni-new", addrs: addrs("198.18.0.9")},
		nsInfo{inode: 32, path: "/run/netns/cni-other", addrs: addrs("198.18.0.7")})
	snap = eventually(t, s, "old listed, unfound", func(snap inventory.Snapshot) bool {
		_, ok := endpoint(snap, "shop_old")
		return ok && len(s.Unfound()) == 1
	})
	if e, _ := endpoint(snap, "shop_old"); e.Path != "" {
		t.Errorf("old matched to %s, whose processes are another pod's", e.Path)
	}
	if u := s.Unfound(); u[0].Code != ReasonAmbiguous {
		t.Errorf("unfound = %+v, want ambiguous", u)
	}
}

// TestEarlyFindByAddressOnly: with ByAddressOnly a pod is found by its
// posted addresses only, as before.
func TestEarlyFindByAddressOnly(t *testing.T) {
	fin := &fakePodFinder{uids: map[uint64]string{31: "shop-web"}}
	fin.nss = []nsInfo{{inode: 31, path: "/run/netns/cni-new", addrs: addrs("198.18.0.9")}}
	s, err := New(fake.NewClientset(namespace("shop", nil), pod("shop", "web", node, nil)), Config{NodeName: node, Finder: fin, ByAddressOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := s.WaitForSync(wctx); err != nil {
		t.Fatal(err)
	}
	snap, err := s.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := endpoint(snap, "shop_web"); ok {
		t.Errorf("web listed before its addresses were posted")
	}
	if c := s.Candidates(); c != nil {
		t.Errorf("candidates = %+v, want none", c)
	}
	if p := s.Pending(); len(p) != 1 {
		t.Errorf("pending = %+v, want web", p)
	}
}
