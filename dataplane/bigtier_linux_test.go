//go:build linux

package dataplane

import (
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// listTable returns `nft list table inet nanoseg` in ns, the kernel's own
// text of the whole table (chains, rules, maps with their elements,
// counters) without handles, with its top-level blocks sorted: nft lists
// objects in the order they were made, which says nothing of what the
// table does (a replaced map comes last).
func listTable(t testing.TB, ns *nettest.Netns) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "nft", "list", "table", "inet", TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table in %s: %v: %s", ns.Name, err, out)
	}
	// The table's closing brace would end whichever block is listed last.
	body := strings.TrimSuffix(strings.TrimSpace(string(out)), "}")
	blocks := strings.Split(strings.TrimSpace(body), "\n\n")
	slices.Sort(blocks)
	return strings.Join(blocks, "\n\n")
}

// TestDeleteTierEqualsFresh: taking a ClusterNetworkPolicy out of a table
// (the rule set without its entries applied over the one with them)
// leaves the table a fresh apply of the remaining rule set makes, as the
// kernel lists it, whether its maps are replaced whole (a large policy)
// or lose elements one by one (a small one); ApplyResult.Replaced says
// which path ran.
func TestDeleteTierEqualsFresh(t *testing.T) {
	nettest.RequireRoot(t)
	dp := New(nil)
	for _, tc := range []struct {
		name     string
		n        int
		replaced bool
		tierGoes bool // the remaining rule set has no Baseline tier
	}{
		{"large", 3000, true, false},
		{"small", 100, false, false},
		{"large-and-a-tier", 3000, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rest := tierEqualRuleSet()
			big := rest
			if tc.tierGoes {
				rest.Baseline = Tiers{}
			}
			big.Admin = Tiers{
				Ingress: append(bigTierEntries("big", model.Ingress, tc.n), rest.Admin.Ingress...),
				Egress:  append(bigTierEntries("big", model.Egress, tc.n), rest.Admin.Egress...),
			}
			updated, fresh := nettest.New(t), nettest.New(t)
			mustApply(t, dp, updated, big)
			res := mustApply(t, dp, updated, rest)
			if got := res.Replaced > 0; got != tc.replaced {
				t.Errorf("Apply without %d entries a direction: Replaced = %d, want replaced %t", tc.n, res.Replaced, tc.replaced)
			}
			if res.Deleted < 2*tc.n || res.Rebuilt {
				t.Errorf("Deleted = %d, Rebuilt = %t; want at least %d deleted in place", res.Deleted, res.Rebuilt, 2*tc.n)
			}
			mustApply(t, dp, fresh, rest)
			if a, b := listTable(t, updated), listTable(t, fresh); a != b {
				t.Errorf("table after the delete differs from a fresh apply:\n--- after delete\n%s\n--- fresh\n%s", a, b)
			}
			if st := mustRead(t, dp, updated); !st.Equal(rest) {
				t.Errorf("State.Equal(remaining rule set) = false after the delete")
			}
			if res := mustApply(t, dp, updated, rest); !res.Unchanged {
				t.Errorf("applying the remaining rule set again: %+v, want Unchanged", res)
			}
		})
	}
}

// TestReplaceMapAtomic: an Admin Accept of c0 and a Deny of the LAN on
// TCP 80 stay in force while 3,000 other Admin entries of the same map
// come and go (the going replaces the map whole, through its stand-in:
// stage). A connect loop from c0 (accepted by both rule sets) and from c1
// (denied by both) runs meanwhile: c1 never gets through, c0 never fails,
// and no connection reaches the default verdict, which a moment without
// the map or its lookup would show (replacing the map in one transaction
// let one through in one of two runs on Linux 6.18).
func TestReplaceMapAtomic(t *testing.T) {
	nettest.RequireRoot(t)
	l := newAtomicLab(t)
	small := RuleSet{Name: "ep-replace", Mode: model.ModeEnforce, IngressDefault: "default-reached", Admin: Tiers{Ingress: []Entry{l.accept, l.deny}}}
	big := small
	big.Admin = Tiers{Ingress: append([]Entry{l.accept, l.deny}, bigTierEntries("big", model.Ingress, 3000)...)}
	// The big entries are /30s on every protocol; make them TCP 80 too, so
	// they share the map of the two entries that decide.
	for i := 2; i < len(big.Admin.Ingress); i++ {
		big.Admin.Ingress[i].Protocol, big.Admin.Ingress[i].Port = model.ProtocolTCP, 80
	}
	mustApply(t, l.dp, l.p.server, small)
	replaced := 0
	n := l.flip(t, 10, big, small, time.Second, func(_ int, res ApplyResult) { replaced += res.Replaced })
	if replaced == 0 {
		t.Errorf("no update replaced a map; the test did not exercise replaceMap")
	}
	if n.leaked != 0 {
		t.Errorf("c1 got through %d times during the updates", n.leaked)
	}
	if w, ok := l.reachedDefault(); ok {
		t.Errorf("a connection reached the default verdict (%q) during the updates", w)
	}
	if n.opened == 0 || n.failed != 0 {
		t.Errorf("c0: %d opened, %d failed; want every connection accepted", n.opened, n.failed)
	}
	t.Logf("c0: %d opened during 10 updates, %d maps replaced", n.opened, replaced)
}

// TestTierAppearsAtomic: a Baseline tier (its maps, a rule chain) appears
// and goes ten times while a connect loop runs from c0, which an Admin
// Accept lets through throughout. The tier's maps are filled and
// committed before the rules that look them up (stage), in place, not by
// rebuilding the table; no connection fails or reaches the default
// verdict. (Rebuilding the table in one transaction, as Apply did before,
// let one through to the default verdict in each of two runs of this loop
// on Linux 6.18.)
func TestTierAppearsAtomic(t *testing.T) {
	nettest.RequireRoot(t)
	l := newAtomicLab(t)
	without := RuleSet{Name: "ep-tier-appears", Mode: model.ModeEnforce, IngressDefault: "default-reached", Admin: Tiers{Ingress: []Entry{l.accept, l.deny}}}
	with := without
	with.Baseline = Tiers{Egress: []Entry{{Peer: netip.MustParsePrefix("198.19.250.0/24"), RuleID: "cnp/baseline/x/egress-0", Action: ActionDeny}}}
	mustApply(t, l.dp, l.p.server, without)
	n := l.flip(t, 20, with, without, time.Second, func(i int, res ApplyResult) {
		if res.Rebuilt {
			t.Errorf("update %d rebuilt the table", i)
		}
	})
	if st := mustRead(t, l.dp, l.p.server); !st.Equal(without) {
		t.Errorf("table after the updates is not the last rule set")
	}
	if w, ok := l.reachedDefault(); ok {
		t.Errorf("a connection reached the default verdict (%q) during the updates", w)
	}
	if n.leaked != 0 {
		t.Errorf("c1 got through %d times during the updates", n.leaked)
	}
	if n.opened == 0 || n.failed != 0 {
		t.Errorf("c0: %d opened, %d failed; want every connection accepted", n.opened, n.failed)
	}
	t.Logf("c0: %d opened during 20 updates", n.opened)
}

// TestTiersComeAndGoEqualsFresh: every change between a rule set without
// ClusterNetworkPolicy tiers, with the Admin tier only, the Baseline tier
// only and both (each direction, both families, an Admin Pass among the
// rules), in enforce and in observe mode, is applied in place (not
// rebuilt) and leaves the table a fresh apply of the new rule set makes.
// The Admin tier's going takes the NetworkPolicy tier's chain with it,
// which holds the Baseline tier's lookups and is where an Admin Pass
// goes: deleted in the wrong order within the transaction, the kernel
// refuses it (EBUSY), which the node agent met when the
// ClusterNetworkPolicy CRD went.
func TestTiersComeAndGoEqualsFresh(t *testing.T) {
	nettest.RequireRoot(t)
	dp := New(nil)
	for _, mode := range []model.Mode{model.ModeEnforce, model.ModeObserve} {
		t.Run(string(mode), func(t *testing.T) {
			all := tierEqualRuleSet()
			all.Mode = mode
			states := map[string]RuleSet{}
			for _, name := range []string{"none", "admin", "baseline", "both"} {
				rs := all
				if name == "none" || name == "baseline" {
					rs.Admin = Tiers{}
				}
				if name == "none" || name == "admin" {
					rs.Baseline = Tiers{}
				}
				states[name] = rs
			}
			fresh := map[string]string{}
			for name, rs := range states {
				ns := nettest.New(t)
				mustApply(t, dp, ns, rs)
				fresh[name] = listTable(t, ns)
			}
			updated := nettest.New(t)
			for _, from := range []string{"none", "admin", "baseline", "both"} {
				for _, to := range []string{"none", "admin", "baseline", "both"} {
					if from == to {
						continue
					}
					mustApply(t, dp, updated, states[from])
					res, err := dp.Apply(updated.Path(), states[to])
					if err != nil {
						t.Errorf("%s → %s: %v", from, to, err)
						continue
					}
					if res.Rebuilt || res.Created {
						t.Errorf("%s → %s: %+v, want an update in place", from, to, res)
					}
					if got := listTable(t, updated); got != fresh[to] {
						t.Errorf("%s → %s: the table differs from a fresh apply:\n--- updated\n%s\n--- fresh\n%s", from, to, got, fresh[to])
					}
				}
			}
		})
	}
}

// TestReplaceStoppedHalfway: an update stopped after a map was replaced by
// its stand-in and before the map took its own name back (a crash between
// the transactions of stage) leaves a table that enforces the new rule
// set: Read says so (the stand-in's elements are the map's; the layout is
// not Render's, so State.Equal is false and drift repair applies), and the
// next Apply of the same rule set repairs it in place into the table a
// fresh apply makes.
func TestReplaceStoppedHalfway(t *testing.T) {
	nettest.RequireRoot(t)
	dp := New(nil)
	rest := tierEqualRuleSet()
	big := rest
	big.Admin = Tiers{
		Ingress: append(bigTierEntries("big", model.Ingress, 3000), rest.Admin.Ingress...),
		Egress:  append(bigTierEntries("big", model.Egress, 3000), rest.Admin.Egress...),
	}
	updated, fresh := nettest.New(t), nettest.New(t)
	mustApply(t, dp, updated, big)
	stop := errors.New("stopped before restore")
	testHookBeforeRestore = func() error { return stop }
	_, err := dp.Apply(updated.Path(), rest)
	testHookBeforeRestore = nil
	if !errors.Is(err, stop) {
		t.Fatalf("Apply with the hook: %v, want it stopped before restore", err)
	}
	if !strings.Contains(listTable(t, updated), stagedSuffix+" {") {
		t.Fatalf("no stand-in map in the table after the stop:\n%s", listTable(t, updated))
	}
	st := mustRead(t, dp, updated)
	if !slices.Equal(st.Elements, Elements(rest)) {
		t.Errorf("Read after the stop: %d elements, want the new rule set's %d (the stand-in's elements are what the kernel enforces)", len(st.Elements), len(Elements(rest)))
	}
	if st.Equal(rest) {
		t.Errorf("Read after the stop: State.Equal = true; want false (a table with a stand-in is not the one Render makes, so drift repair applies)")
	}
	res := mustApply(t, dp, updated, rest)
	if res.Rebuilt || res.Created {
		t.Errorf("Apply after the stop: %+v, want it repaired in place (a rebuild misses lookups for a moment)", res)
	}
	mustApply(t, dp, fresh, rest)
	if a, b := listTable(t, updated), listTable(t, fresh); a != b {
		t.Errorf("table after the repair differs from a fresh apply:\n--- repaired\n%s\n--- fresh\n%s", a, b)
	}
}
