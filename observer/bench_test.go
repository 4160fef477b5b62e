package observer

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"

	"github.com/nanoseg/nanoseg/model"
)

// ctEventMessage builds a conntrack NEW (or DESTROY) event message as the
// kernel sends it: original and reply tuples, status, id, and counters.
func ctEventMessage(tb testing.TB, destroy bool, id uint32, src, dst netip.Addr, sport, dport uint16) netlink.Message {
	tb.Helper()
	tuple := func(typ uint16, s, d netip.Addr, sp, dp uint16) netfilter.Attribute {
		ipSrc, ipDst := uint16(1), uint16(2)
		if s.Is6() {
			ipSrc, ipDst = 3, 4
		}
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Nested: true, Children: []netfilter.Attribute{{Type: ipSrc, Data: s.AsSlice()}, {Type: ipDst, Data: d.AsSlice()}}},
			{Type: 2, Nested: true, Children: []netfilter.Attribute{
				{Type: 1, Data: []byte{6}},
				{Type: 2, Data: netfilter.Uint16Bytes(sp)},
				{Type: 3, Data: netfilter.Uint16Bytes(dp)},
			}},
		}}
	}
	counters := func(typ uint16, p, b uint64) netfilter.Attribute {
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Data: netfilter.Uint64Bytes(p)}, {Type: 2, Data: netfilter.Uint64Bytes(b)}}}
	}
	attrs := []netfilter.Attribute{
		tuple(1, src, dst, sport, dport),
		tuple(2, dst, src, dport, sport),
		{Type: 3, Data: netfilter.Uint32Bytes(0x18e)},
		{Type: 12, Data: netfilter.Uint32Bytes(id)},
	}
	h := netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: 0, Family: netfilter.ProtoIPv4,
		Flags: netlink.Create | netlink.Excl}
	if destroy {
		attrs = append(attrs, counters(9, 6, 400), counters(10, 4, 1200))
		h.MessageType, h.Flags = 2, 0
	}
	m, err := netfilter.MarshalNetlink(h, attrs)
	if err != nil {
		tb.Fatal(err)
	}
	// Round-trip through the wire form, as a socket delivers it.
	m.Header.Length = uint32(16 + len(m.Data))
	raw, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	var out netlink.Message
	if err := out.UnmarshalBinary(raw); err != nil {
		tb.Fatal(err)
	}
	return out
}

// ctEventFromFlow copies an entry decoded by ti-mo/conntrack into a
// ctEvent: the reference decodeCTEvent is checked against.
func ctEventFromFlow(ct *conntrack.Flow) ctEvent {
	o := ct.TupleOrig
	ev := ctEvent{Type: ctNew, ID: ct.ID, Proto: o.Proto.Protocol,
		Src: o.IP.SourceAddress.Unmap(), Dst: o.IP.DestinationAddress.Unmap(),
		SrcPort: o.Proto.SourcePort, DstPort: o.Proto.DestinationPort,
		ICMP:     o.Proto.ICMPv4 || o.Proto.ICMPv6 || o.Proto.Protocol == 1 || o.Proto.Protocol == 58,
		ICMPType: o.Proto.ICMPType, ICMPCode: o.Proto.ICMPCode,
		PacketsOrig: ct.CountersOrig.Packets, BytesOrig: ct.CountersOrig.Bytes,
		PacketsReply: ct.CountersReply.Packets, BytesReply: ct.CountersReply.Bytes,
		Start: ct.Timestamp.Start, Stop: ct.Timestamp.Stop, Status: uint32(ct.Status)}
	if tcp := ct.ProtoInfo.TCP; tcp != nil {
		ev.TCPState = tcp.State
		if tcp.OriginalFlags != 0 || tcp.ReplyFlags != 0 {
			ev.HasTCPFlags, ev.TCPFlagsOrig, ev.TCPFlagsReply = true, uint8(tcp.OriginalFlags>>8), uint8(tcp.ReplyFlags>>8)
		}
	}
	return ev
}

func TestConntrackEventDecode(t *testing.T) {
	for _, destroy := range []bool{false, true} {
		m := ctEventMessage(t, destroy, 77, a4, b4, 40000, 8080)
		var ev conntrack.Event
		if err := ev.Unmarshal(m); err != nil {
			t.Fatal(err)
		}
		var mine ctEvent
		if err := decodeCTEvent(m, &mine); err != nil {
			t.Fatal(err)
		}
		if ref := ctEventFromFlow(ev.Flow); mine.ID != ref.ID || mine.Src != ref.Src || mine.Dst != ref.Dst ||
			mine.SrcPort != ref.SrcPort || mine.DstPort != ref.DstPort || mine.Proto != ref.Proto ||
			mine.PacketsOrig != ref.PacketsOrig || mine.BytesReply != ref.BytesReply {
			t.Errorf("decodeCTEvent %+v, ti-mo/conntrack %+v", mine, ref)
		}
		phase := model.PhaseStart
		if destroy {
			phase = model.PhaseEnd
			if mine.Type != ctDestroy {
				t.Errorf("type %v", mine.Type)
			}
		} else if mine.Type != ctNew {
			t.Errorf("type %v", mine.Type)
		}
		f := mine.flowRecord(phase, "ep", func(a netip.Addr) bool { return a == a4 }, time.Now())
		if f.Src != a4 || f.Dst != b4 || f.SrcPort != 40000 || f.DstPort != 8080 || f.Direction != model.Egress || f.ConntrackID != 77 || f.Protocol != model.ProtocolTCP {
			t.Errorf("flow %+v", f)
		}
		if destroy && (f.PacketsOut != 6 || f.BytesIn != 1200) {
			t.Errorf("counters %+v", f)
		}
	}
}

// BenchmarkPipeline measures flow events handled per second on one core:
// decode (conntrack netlink message → Event), attribute (two inventory
// lookups, DNS table) and aggregate, for NEW and DESTROY events spread over
// a number of workload pairs. Run with -cpu 1; the target is 200k events/s.
func BenchmarkPipeline(b *testing.B) {
	for _, workloads := range []int{10, 1000} {
		b.Run(fmt.Sprintf("workloads=%d", workloads), func(b *testing.B) {
			inv, addrs := benchInventory(workloads)
			msgs := make([]netlink.Message, 4096)
			for i := range msgs {
				src, dst := addrs[i%len(addrs)], addrs[(i*7+1)%len(addrs)]
				msgs[i] = ctEventMessage(b, i%2 == 1, uint32(i), src, dst, uint16(30000+i), uint16(8000+i%16))
			}
			agg := NewAggregator(inv, NewNames(0), func(netip.Addr) bool { return true })
			local := func(a netip.Addr) bool { return true }
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			var ev ctEvent
			for i := 0; i < b.N; i++ {
				if err := decodeCTEvent(msgs[i%len(msgs)], &ev); err != nil {
					b.Fatal(err)
				}
				phase := model.PhaseStart
				if ev.Type == ctDestroy {
					phase = model.PhaseEnd
				}
				agg.Add(ev.flowRecord(phase, "ep", local, now))
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEdgeMemory reports the heap held by an aggregator of 100k edges.
func BenchmarkEdgeMemory(b *testing.B) {
	const edges = 100_000
	inv, addrs := benchInventory(1000)
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		agg := NewAggregator(inv, nil, nil)
		for j := 0; j < edges; j++ {
			// 1000 workloads × 100 ports = 100k distinct edges.
			f := model.Flow{Phase: model.PhaseStart, Source: model.SourceConntrack, Direction: model.Egress, Protocol: model.ProtocolTCP,
				Src: addrs[j%1000], SrcPort: 40000, Dst: addrs[(j+1)%1000], DstPort: uint16(1000 + j/1000), Start: time.Unix(int64(j), 0)}
			agg.Add(f)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if agg.Len() != edges {
			b.Fatalf("%d edges", agg.Len())
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB/100k-edges")
		runtime.KeepAlive(agg)
	}
}

func benchInventory(n int) (Inventory, []netip.Addr) {
	m := make(map[netip.Addr]model.Identity, n)
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], 198<<24|18<<16|uint32(i+1))
		addrs[i] = netip.AddrFrom4(b)
		m[addrs[i]] = model.Identity{Namespace: "ns", Workload: fmt.Sprintf("w%d", i), Labels: map[string]string{"app": fmt.Sprintf("w%d", i)}}
	}
	return InventoryFunc(func(a netip.Addr) (model.Identity, bool) { id, ok := m[a]; return id, ok }), addrs
}

// BenchmarkDecodeBaseline is the baseline of BenchmarkPipeline's decode
// step: ti-mo/conntrack's Event.Unmarshal (allocating) against the
// observer's decodeCTEvent, on the same NEW and DESTROY messages.
func BenchmarkDecodeBaseline(b *testing.B) {
	msgs := []netlink.Message{ctEventMessage(b, false, 1, a4, b4, 40000, 8080), ctEventMessage(b, true, 1, a4, b4, 40000, 8080)}
	b.Run("ti-mo", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var ev conntrack.Event
			if err := ev.Unmarshal(msgs[i&1]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("observer", func(b *testing.B) {
		b.ReportAllocs()
		var ev ctEvent
		for i := 0; i < b.N; i++ {
			if err := decodeCTEvent(msgs[i&1], &ev); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
