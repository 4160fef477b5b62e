//go:build linux

package observer

import (
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// testEndpoint is an endpointState without sockets, for the message
// handlers.
func testEndpoint(t testing.TB) *endpointState {
	t.Helper()
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := New(Config{}, nil, nil, nil, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &endpointState{o: o, ep: &model.Endpoint{Netns: "ep"}, log: o.log}
	s.addr.set = map[netip.Addr]bool{b4: true}
	s.addr.fixed = true
	return s
}

// TestVerdictLogCountsOnlyDecodeErrors: the messages nfnetlink_log sends
// besides packets (the NLMSG_DONE that closes a batch, acknowledgements,
// config replies) are skipped without counting; a malformed packet message
// counts as a decode error.
func TestVerdictLogCountsOnlyDecodeErrors(t *testing.T) {
	s := testEndpoint(t)
	dec := newVerdictDecoder()
	errs := func() float64 { return counterValue(s.o.metrics.DecodeErrors.WithLabelValues("verdict-log")) }
	nfgen := []byte{0, 0, 0, 0}
	config, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysULOG, MessageType: nfulnlMsgConfig, ResourceID: verdictlog.Group}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]netlink.Message{
		"done":          {Header: netlink.Header{Type: netlink.Done}, Data: nfgen},
		"done, no data": {Header: netlink.Header{Type: netlink.Done}},
		"noop":          {Header: netlink.Header{Type: netlink.Noop}},
		"ack":           {Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)},
		"config":        config,
		"other subsys":  {Header: netlink.Header{Type: netlink.HeaderType(1 << 8)}, Data: nfgen},
	} {
		if _, ok := s.verdictRecord(dec, m); ok {
			t.Errorf("%s: gave a record", name)
		}
		if got := errs(); got != 0 {
			t.Fatalf("%s counted as a decode error (%v)", name, got)
		}
	}
	syn := tcpPacket(t, netip.AddrPortFrom(a4, 40000), netip.AddrPortFrom(b4, 8080), true, nil)
	if f, ok := s.verdictRecord(dec, nflogMessage(t, "nanoseg:deny:r", hookLocalIn, syn)); !ok || f.RuleID != "r" {
		t.Errorf("good packet: %+v %v", f, ok)
	}
	if _, ok := s.verdictRecord(dec, nflogMessage(t, "someone-else", hookLocalIn, syn)); ok || errs() != 0 {
		t.Errorf("foreign prefix: record %v, decode errors %v", ok, errs())
	}
	for i, bad := range []netlink.Message{
		nflogMessage(t, "nanoseg:deny:r", hookLocalIn, []byte{0x45, 0, 0}),
		nflogMessage(t, "nanoseg:deny:r", hookLocalIn, nil),
		{Header: netlink.Header{Type: netlink.HeaderType(4<<8 | nfulnlMsgPacket)}, Data: []byte{2, 0}},
	} {
		if _, ok := s.verdictRecord(dec, bad); ok {
			t.Errorf("malformed %d gave a record", i)
		}
		if got := errs(); got != float64(i+1) {
			t.Errorf("after malformed packet %d: decode errors %v, want %d", i, got, i+1)
		}
	}
}
