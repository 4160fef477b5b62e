//go:build linux

package dataplane

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// interruptReplace commits step 1 of an update to rs that replaces a map
// (stage: the stand-ins made, nothing looks them up) and, with switched,
// step 2 (queueDelta's switch: the rules look up the stand-ins, the maps
// of their own name are gone), and stops there, as an agent killed
// between Apply's transactions does.
func interruptReplace(t *testing.T, ns *nettest.Netns, rs RuleSet, switched bool) {
	t.Helper()
	o, err := Render(rs)
	if err != nil {
		t.Fatal(err)
	}
	f, err := openNetns(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := dial(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	cur, kt, err := read(c)
	if err != nil {
		t.Fatal(err)
	}
	p := planDelta(o, cur, kt, Elements(rs))
	if len(p.replaced) == 0 {
		t.Fatal("the update replaces no map; the test does not exercise an interrupted replacement")
	}
	if err := stage(c, o, cur, p); err != nil {
		t.Fatal(err)
	}
	if !switched {
		return
	}
	if _, err := queueDelta(c, o, cur, kt, p); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestInterruptedReplaceRecovers: an agent killed between the
// transactions of an update that replaces a map leaves a stand-in
// `<map>.next`, looked up by the rules (after the switch) or not (after
// stage). The next Apply of the same rule set must repair the table in
// place (a rebuild makes maps in the transaction that looks them up, and
// lookups miss them for a moment), leave it equal to a fresh one with no
// stand-in, and neither let a denied connection through nor fail an
// accepted one while it does. Without in-place recovery, connections
// reach the default verdict (observe mode: accepted) during the rebuild.
func TestInterruptedReplaceRecovers(t *testing.T) {
	nettest.RequireRoot(t)
	for _, switched := range []bool{true, false} {
		t.Run(map[bool]string{true: "switched", false: "staged"}[switched], func(t *testing.T) {
			testInterruptedReplace(t, switched)
		})
	}
}

func testInterruptedReplace(t *testing.T, switched bool) {
	f := families[0]
	p := newPair(t)
	serve(t, p.server, 80)
	logs := listenNFLOG(t, p.server)
	dp := New(nil)
	c := f.clients
	accept := Entry{Peer: host(c[0]), Protocol: model.ProtocolTCP, Port: 80, RuleID: "cnp/admin/open/ingress-0", Action: ActionAccept}
	deny := Entry{Peer: f.lan, Protocol: model.ProtocolTCP, Port: 80, RuleID: "cnp/admin/close/ingress-0", Action: ActionDeny}
	// Observe mode: a lookup that misses the Admin maps reaches the
	// default verdict, which accepts, so a missed Deny lets c1 through.
	small := RuleSet{Name: "ep-interrupted", Mode: model.ModeObserve, Admin: Tiers{Ingress: []Entry{accept, deny}}}
	big := small
	big.Admin = Tiers{Ingress: append([]Entry{accept, deny}, bigTierEntries("big", model.Ingress, 3000)...)}
	for i := 2; i < len(big.Admin.Ingress); i++ {
		big.Admin.Ingress[i].Protocol, big.Admin.Ingress[i].Port = model.ProtocolTCP, 80
	}
	var opened, failed, leaked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(src netip.Addr, ok, bad *atomic.Int64, timeout time.Duration) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := probeTCP(p.client, src, ap(f.server, 80), timeout); err == nil {
				ok.Add(1)
			} else if bad != nil {
				bad.Add(1)
			}
		}
	}
	missed := verdictlog.Format(model.VerdictObserved, "ep-interrupted")
	for i := range 5 {
		mustApply(t, dp, p.server, big)
		interruptReplace(t, p.server, small, switched)
		if !strings.Contains(listTable(t, p.server), stagedSuffix) {
			t.Fatalf("round %d: no stand-in map after the interrupted update", i)
		}
		stop = make(chan struct{})
		wg.Add(2)
		go loop(c[0], &opened, &failed, time.Second)
		go loop(c[1], &leaked, nil, 100*time.Millisecond)
		time.Sleep(100 * time.Millisecond)
		if logs.wait(missed, 50*time.Millisecond) {
			t.Fatalf("round %d: a connection missed the Admin tier in the interrupted state", i)
		}
		if res := mustApply(t, dp, p.server, small); res.Rebuilt {
			t.Errorf("round %d: the table was rebuilt, not repaired in place", i)
		}
		time.Sleep(100 * time.Millisecond)
		close(stop)
		wg.Wait()
		if logs.wait(missed, 50*time.Millisecond) {
			t.Errorf("round %d: a connection missed the Admin tier during recovery (%q)", i, missed)
			break
		}
		if tbl := listTable(t, p.server); strings.Contains(tbl, stagedSuffix) {
			t.Errorf("round %d: a stand-in map is left after recovery:\n%s", i, tbl)
		}
		st, err := dp.Read(p.server.Path())
		if err != nil {
			t.Fatal(err)
		}
		if !st.Equal(small) {
			t.Errorf("round %d: the recovered table is not what Apply(small) programs", i)
		}
	}
	if leaked.Load() != 0 {
		t.Errorf("c1, denied by the Admin tier, got through %d times during recovery", leaked.Load())
	}
	if opened.Load() == 0 || failed.Load() != 0 {
		t.Errorf("c0: %d opened, %d failed; want every connection accepted", opened.Load(), failed.Load())
	}
	t.Logf("c0: %d opened, c1: %d leaked", opened.Load(), leaked.Load())
}
