//go:build linux

package dataplane

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/model"
)

// maxCNPEntries is the number of CIDRs of the maximum-size
// ClusterNetworkPolicy of the fresh-user review (its "max" policy, 15,625
// networks, in force on the lab's 8 endpoints).
const maxCNPEntries = 15625

// bigTierEntries returns n Admin Denies in direction dir of distinct /30
// networks from 198.18.16.0 on (at most 15,625 of them, up to 198.19.4.255:
// clear of the test pair's 198.18.0.0/24 and of the other tests' 198.19
// addresses) under 100 rule ids of policy name: the shape of the
// maximum-size ClusterNetworkPolicy.
func bigTierEntries(name string, dir model.Direction, n int) []Entry {
	es := make([]Entry, 0, n)
	for i := range n {
		a := uint32(198)<<24 | uint32(18)<<16 | uint32(16)<<8 + uint32(i)<<2
		es = append(es, Entry{
			Peer:   netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), 30),
			RuleID: fmt.Sprintf("cnp/admin/%s/%s-%d", name, strings.ToLower(string(dir)), i%100), Action: ActionDeny,
		})
	}
	return es
}

// keepTier is a small Admin policy that stays when the large one goes, so
// the tier's maps stay too (the incremental path, not a rebuild).
func keepTier() []Entry {
	return []Entry{
		{Peer: netip.MustParsePrefix("198.19.255.0/24"), Protocol: model.ProtocolTCP, Port: 22, RuleID: "cnp/admin/keep/egress-0", Action: ActionDeny},
		{Peer: netip.MustParsePrefix("198.19.254.1/32"), RuleID: "cnp/admin/keep/egress-1", Action: ActionAccept},
	}
}

func bigTierRuleSets(i int) (small, big RuleSet) {
	small = smallRuleSet(i)
	small.Admin = Tiers{Egress: keepTier()}
	big = small
	big.Admin = Tiers{Egress: append(keepTier(), bigTierEntries("max", model.Egress, maxCNPEntries)...)}
	return small, big
}

// BenchmarkBigTier: 8 endpoints (the lab's) hold a rule set with a small
// Admin policy; "apply" adds a maximum-size ClusterNetworkPolicy (15,625
// CIDRs) to all of them, "delete" takes it away again, timed in the same
// iteration (applyWorkers workers). "delete/apply" is the ratio to
// watch: a delete should cost no more than an apply (6.8 before maps were
// replaced whole, 0.4-0.5 after; docs/benchmarks.md).
func BenchmarkBigTier(b *testing.B) {
	nettest.RequireRoot(b)
	const n = 8
	nss := make([]*nettest.Netns, n)
	for i := range nss {
		nss[i] = nettest.New(b)
	}
	dp := New(nil)
	small := func(i int) RuleSet { s, _ := bigTierRuleSets(i); return s }
	big := func(i int) RuleSet { _, bg := bigTierRuleSets(i); return bg }
	applyAll(b, dp, nss, small)
	var tApply, tDel time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		applyAll(b, dp, nss, big)
		t1 := time.Now()
		applyAll(b, dp, nss, small)
		t2 := time.Now()
		tApply += t1.Sub(t0)
		tDel += t2.Sub(t1)
	}
	b.ReportMetric(float64(tApply.Milliseconds())/float64(b.N), "apply-ms")
	b.ReportMetric(float64(tDel.Milliseconds())/float64(b.N), "delete-ms")
	b.ReportMetric(tDel.Seconds()/tApply.Seconds(), "delete/apply")
}
