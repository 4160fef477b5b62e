//go:build linux

package dataplane

import (
	"os"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// TestConntrackCount: the per-netns entry count that lets CutConnections
// skip the (host-wide) conntrack dump is 0 in a fresh netns and counts a
// connection. It returns at all (the kernel's reply has no NLMSG_DONE); how
// fast is not a test's business.
func TestConntrackCount(t *testing.T) {
	p := newPair(t)
	serve(t, p.server, 80)
	mustApply(t, New(nil), p.server, serverRuleSet(families[0], model.ModeEnforce))
	f, err := os.Open(p.server.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := conntrackCount(int(f.Fd()))
	if err != nil || n != 0 {
		t.Fatalf("count in a netns without connections = %d, %v; want 0", n, err)
	}
	c, err := dialTCP(p.client, client4[0], ap(server4, 80), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := conntrackCount(int(f.Fd())); err != nil || n == 0 {
		t.Errorf("count with one connection = %d, %v; want > 0", n, err)
	}
}
