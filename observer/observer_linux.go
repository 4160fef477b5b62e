//go:build linux

// Design: the observer attaches to each endpoint network namespace by file
// descriptor and opens three sockets there:
//
//   - a NETLINK_NETFILTER socket joined to the conntrack NEW and DESTROY
//     multicast groups (ti-mo/netfilter, netlink.Config.NetNS), decoded with
//     ti-mo/conntrack. Conntrack accounting and timestamps are switched on in
//     the netns first (net.netfilter.nf_conntrack_acct and
//     nf_conntrack_timestamp are per-netns sysctls, written through /proc/sys
//     from a thread inside the netns), so DESTROY carries packets, bytes,
//     start and stop. On ENOBUFS the socket lost events: the observer counts
//     it, logs it, dumps the conntrack table and reconciles it with the
//     connections it knows are open, so nothing that is still tracked is
//     missed.
//   - a NETLINK_NETFILTER socket bound to the dataplane's NFLOG group
//     (nfnetlink_log config messages; instances are per netns), whose
//     packets carry the verdict prefix and the packet.
//   - two AF_PACKET SOCK_DGRAM sockets (IPv4, IPv6) with a classic BPF filter that keeps
//     UDP and TCP packets from port 53, opened on a thread inside the netns
//     (internal/nsenter), for the DNS answers the endpoint receives.
//
// Each socket is read by one goroutine; closing the socket from a goroutine
// that watches the context stops it. Sources: conntrack(8),
// nf_conntrack-sysctl (Documentation/networking/nf_conntrack-sysctl.rst),
// include/uapi/linux/netfilter/nfnetlink_log.h, packet(7), netlink(7).

package observer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

// Config tunes the observer. The zero value means the defaults.
type Config struct {
	// NFLOGGroup is the verdict-log group (0: verdictlog.Group).
	NFLOGGroup uint16 `json:"nflogGroup" yaml:"nflogGroup"`
	// ConntrackReadBuffer is the receive buffer of each conntrack event
	// socket in bytes (0: 4 MiB; set with SO_RCVBUFFORCE, so root may
	// exceed net.core.rmem_max).
	ConntrackReadBuffer int `json:"conntrackReadBuffer" yaml:"conntrackReadBuffer"`
	// CounterInterval is how often the packet and byte counters of live
	// connections are read (one conntrack dump per endpoint) and reported
	// in update records, so that an edge's counters lag by at most about
	// this much (0: 2s; negative: never, counters then come only with the
	// end of each connection). See counters.go for the cost.
	CounterInterval time.Duration `json:"counterInterval" yaml:"counterInterval"`
	// DisableVerdictLog and DisableDNS switch those sources off (the
	// conntrack source is always on).
	DisableVerdictLog bool `json:"disableVerdictLog" yaml:"disableVerdictLog"`
	DisableDNS        bool `json:"disableDNS" yaml:"disableDNS"`
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{NFLOGGroup: verdictlog.Group, ConntrackReadBuffer: 4 << 20, CounterInterval: 2 * time.Second}
}

// Validate reports configuration errors.
func (c Config) Validate() error {
	var errs []error
	if c.ConntrackReadBuffer < 0 {
		errs = append(errs, fmt.Errorf("conntrackReadBuffer %d: must be >= 0", c.ConntrackReadBuffer))
	}
	return errors.Join(errs...)
}

// Observer watches endpoint namespaces and hands every flow record to a
// handler.
type Observer struct {
	cfg     Config
	eps     []model.Endpoint
	handle  func(model.Flow)
	names   *Names
	metrics *Metrics
	log     *slog.Logger
	ready   chan struct{}
	ran     atomic.Bool

	mu       sync.RWMutex
	attached []*endpointState
	local    map[netip.Addr]bool // union of the attached endpoints' addresses

	// beforeReceive, when set (tests), runs before each conntrack event
	// receive: a test holds it to make the socket overflow.
	beforeReceive func()
}

// New returns an observer of endpoints. handle receives every flow record,
// from several goroutines at once, and must not block for long (a slow
// handler makes the conntrack socket overflow; that is counted and
// resynced). names learns DNS answers (nil: a private table, see Names);
// metrics may be nil; logger nil discards. The caller scopes logger with
// its own "component" (agent, node, observe); the observer adds only
// "part"="observer" and, per endpoint, "netns", so no key repeats.
func New(cfg Config, endpoints []model.Endpoint, handle func(model.Flow), names *Names, metrics *Metrics, logger *slog.Logger) (*Observer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("validate observer config: %w", err)
	}
	d := Defaults()
	if cfg.NFLOGGroup == 0 {
		cfg.NFLOGGroup = d.NFLOGGroup
	}
	if cfg.ConntrackReadBuffer == 0 {
		cfg.ConntrackReadBuffer = d.ConntrackReadBuffer
	}
	if cfg.CounterInterval == 0 {
		cfg.CounterInterval = d.CounterInterval
	}
	if handle == nil {
		handle = func(model.Flow) {}
	}
	if names == nil {
		names = NewNames(0)
	}
	if metrics == nil {
		metrics, _ = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Observer{cfg: cfg, eps: endpoints, handle: handle, names: names, metrics: metrics,
		log: logger.With("part", "observer"), ready: make(chan struct{})}, nil
}

// Names returns the observer's DNS name table.
func (o *Observer) Names() *Names { return o.names }

// Observed reports whether addr belongs to an endpoint this observer is
// attached to: the `observed` argument of NewAggregator, so that a
// connection between two observed endpoints is counted once.
func (o *Observer) Observed(addr netip.Addr) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.local[addr.Unmap()] && !addr.IsLoopback()
}

// rebuildLocal recomputes the union of the attached endpoints' addresses.
func (o *Observer) rebuildLocal() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.local = map[netip.Addr]bool{}
	for _, s := range o.attached {
		s.addr.RLock()
		for a := range s.addr.set {
			o.local[a] = true
		}
		s.addr.RUnlock()
	}
}

// Ready is closed once every socket of every endpoint is open: traffic
// after that is observed. It stays open if Run fails to attach.
func (o *Observer) Ready() <-chan struct{} { return o.ready }

// closeNS closes the netns handles of the attached endpoints; Run calls it
// after every reader has stopped.
func (o *Observer) closeNS() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ep := range o.attached {
		ep.closeNS()
	}
}

// Run opens the sockets of every endpoint and reads them until ctx ends.
// It returns nil on a clean stop, or the first error opening an endpoint or
// reading a socket (after closing everything). An Observer runs once.
func (o *Observer) Run(ctx context.Context) error {
	if o.ran.Swap(true) {
		return errors.New("run observer: already ran")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			_ = c.Close()
		}
	}()
	fail := func(err error) { cancel(err) }
	for i := range o.eps {
		ep, err := o.attach(&o.eps[i])
		if err != nil {
			cancel(nil)
			for _, c := range closers {
				_ = c.Close()
			}
			closers = nil
			wg.Wait()
			o.closeNS()
			return fmt.Errorf("observe %s: %w", o.eps[i].Netns, err)
		}
		closers = append(closers, ep)
		o.mu.Lock()
		o.attached = append(o.attached, ep)
		o.mu.Unlock()
		o.rebuildLocal()
		ep.start(ctx, &wg, fail)
	}
	close(o.ready)
	<-ctx.Done()
	for _, c := range closers {
		_ = c.Close()
	}
	closers = nil
	wg.Wait()
	o.closeNS()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// endpointState is one attached endpoint: its sockets and state.
type endpointState struct {
	o      *Observer
	ep     *model.Endpoint
	ns     netns.NsHandle
	log    *slog.Logger
	ct     *netlink.Conn
	nfl    *netlink.Conn
	pkt    []*os.File    // DNS capture: IPv4, IPv6
	diag   *netlink.Conn // sock_diag, for the conntrack reader
	get    *netlink.Conn // conntrack requests of the counter reader
	getBuf []byte        // its receive buffer
	cls    classifier
	conns  *connTable
	addr   struct {
		sync.RWMutex
		set     map[netip.Addr]bool
		fixed   bool
		refresh time.Time
	}
	closeOnce sync.Once
}

func (o *Observer) attach(ep *model.Endpoint) (_ *endpointState, err error) {
	s := &endpointState{o: o, ep: ep, log: o.log.With("netns", ep.Netns), conns: newConnTable()}
	s.ns, err = netns.GetFromPath(ep.Path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ep.Path, err)
	}
	defer func() {
		if err != nil {
			_ = s.Close()
			s.closeNS() // nothing reads it yet
		}
	}()
	if err := EnableAccounting(s.ns); err != nil {
		return nil, err
	}
	s.addr.set = map[netip.Addr]bool{}
	if ep.Addrs != nil {
		s.addr.fixed = true
		for _, a := range ep.Addrs {
			s.addr.set[a.Unmap()] = true
		}
	} else if err := s.refreshAddrs(); err != nil {
		return nil, err
	}
	s.cls = classifier{isLocal: s.isLocal, eph: readPortRange(s.ns), sockets: s.sockets,
		onError: func(err error) { s.log.Debug("look up sockets", "err", err) }}
	cfg := &netlink.Config{NetNS: int(s.ns)}
	if s.ct, err = netlink.Dial(unix.NETLINK_NETFILTER, cfg); err != nil {
		return nil, fmt.Errorf("dial conntrack events: %w", err)
	}
	if err := setReadBufferForce(s.ct, o.cfg.ConntrackReadBuffer); err != nil {
		return nil, err
	}
	for _, g := range []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTDestroy} {
		if err := s.ct.JoinGroup(uint32(g)); err != nil {
			return nil, fmt.Errorf("join conntrack group %d: %w", g, err)
		}
	}
	if s.diag, err = netlink.Dial(unix.NETLINK_SOCK_DIAG, cfg); err != nil {
		return nil, fmt.Errorf("dial sock_diag: %w", err)
	}
	if o.cfg.CounterInterval > 0 {
		if s.get, err = netlink.Dial(unix.NETLINK_NETFILTER, cfg); err != nil {
			return nil, fmt.Errorf("dial conntrack: %w", err)
		}
		if err := setReadBufferForce(s.get, getReadBuffer); err != nil {
			return nil, err
		}
		s.getBuf = make([]byte, 1<<16)
	}
	if !o.cfg.DisableVerdictLog {
		if s.nfl, err = bindNFLOG(cfg, o.cfg.NFLOGGroup); err != nil {
			return nil, err
		}
	}
	if !o.cfg.DisableDNS {
		for _, et := range []uint16{unix.ETH_P_IP, unix.ETH_P_IPV6} {
			f, err := openDNSCapture(s.ns, et)
			if err != nil {
				return nil, err
			}
			s.pkt = append(s.pkt, f)
		}
	}
	s.log.Debug("attached", "addrs", len(s.addr.set))
	return s, nil
}

// Close closes every socket of s; blocked reads return.
func (s *endpointState) Close() error {
	s.closeOnce.Do(func() {
		if s.ct != nil {
			_ = s.ct.Close()
		}
		if s.nfl != nil {
			_ = s.nfl.Close()
		}
		for _, f := range s.pkt {
			_ = f.Close()
		}
		if s.diag != nil {
			_ = s.diag.Close()
		}
		if s.get != nil {
			_ = s.get.Close()
		}
	})
	return nil
}

// closeNS closes the endpoint's netns handle. Run calls it once every
// goroutine reading the endpoint has returned (they use the handle, as a
// conntrack dump does), never from Close.
func (s *endpointState) closeNS() {
	if s.ns.IsOpen() {
		_ = s.ns.Close()
	}
}

func (s *endpointState) start(ctx context.Context, wg *sync.WaitGroup, fail func(error)) {
	run := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("observe %s: %s: %w", s.ep.Netns, name, err))
			}
		}()
	}
	run("conntrack", s.readConntrack)
	if s.o.cfg.CounterInterval > 0 {
		run("conntrack counters", s.readCounters)
	}
	if s.nfl != nil {
		run("verdict log", s.readVerdictLog)
	}
	for _, f := range s.pkt {
		run("dns", func(ctx context.Context) error { return s.readDNS(ctx, f) })
	}
}

// isLocal reports whether a is one of the endpoint's addresses.
func (s *endpointState) isLocal(a netip.Addr) bool {
	s.addr.RLock()
	defer s.addr.RUnlock()
	return s.addr.set[a]
}

// refreshAddrs reads the endpoint's addresses from its netns.
func (s *endpointState) refreshAddrs() error {
	var addrs []net.Addr
	err := nsenter.Do(s.ns, func() error {
		var err error
		addrs, err = net.InterfaceAddrs()
		return err
	})
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
	set := map[netip.Addr]bool{}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			set[p.Addr().Unmap()] = true
		}
	}
	s.addr.Lock()
	s.addr.set, s.addr.refresh = set, time.Now()
	s.addr.Unlock()
	if s.o != nil {
		s.o.rebuildLocal()
	}
	return nil
}

// maybeRefreshAddrs re-reads the addresses, at most once a second, when a
// connection matches none of them (an address added after attach).
func (s *endpointState) maybeRefreshAddrs(src, dst netip.Addr) {
	s.addr.RLock()
	known := s.addr.fixed || s.addr.set[src] || s.addr.set[dst] || time.Since(s.addr.refresh) < time.Second
	s.addr.RUnlock()
	if !known {
		if err := s.refreshAddrs(); err != nil {
			s.log.Warn("refresh addresses", "err", err)
		}
	}
}

func (s *endpointState) emit(f model.Flow) {
	s.o.metrics.flows(f.Source).Inc()
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("flow", "flow", &f)
	}
	s.o.handle(f)
}

func (s *endpointState) readConntrack(ctx context.Context) error {
	// Entries that existed before the observer: read from a dump with
	// their original tuple. Events since the groups were joined wait in
	// the socket; a NEW of an entry the dump already gave is skipped.
	if err := s.dumpTable(false); err != nil {
		s.log.Warn("read conntrack entries at attach", "err", err)
	}
	var ev ctEvent
	for {
		if s.o.beforeReceive != nil {
			s.o.beforeReceive()
		}
		msgs, err := s.ct.Receive()
		if err != nil {
			if ctx.Err() != nil || isClosed(err) {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				s.o.metrics.EventsLost.WithLabelValues("conntrack").Inc()
				s.log.Warn("conntrack event socket overflowed (ENOBUFS); resyncing from a conntrack dump")
				if err := s.dumpTable(true); err != nil {
					s.log.Error("resync conntrack", "err", err)
				}
				continue
			}
			return fmt.Errorf("receive conntrack event: %w", err)
		}
		now := time.Now()
		for _, m := range msgs {
			if err := decodeCTEvent(m, &ev); err != nil {
				s.o.metrics.DecodeErrors.WithLabelValues("conntrack").Inc()
				s.log.Debug("skip conntrack event", "err", err)
				continue
			}
			switch ev.Type {
			case ctNew:
				if s.conns.known(ev.ID) {
					continue // already known from a dump
				}
				s.maybeRefreshAddrs(ev.Src, ev.Dst)
				oc := &openConn{key: ev.tuple(), origin: s.classify(&ev, model.SourceConntrack)}
				f := s.record(&ev, model.PhaseStart, oc.origin, now)
				f.RemoteName, _ = s.o.names.Lookup(f.Remote(), now)
				oc.name = f.RemoteName
				s.conns.add(ev.ID, oc)
				s.emit(f)
			case ctDestroy:
				phase := model.PhaseEnd
				oc, inOpen := s.conns.remove(ev.ID)
				if oc == nil {
					phase = model.PhaseComplete // its NEW was lost
					oc = &openConn{origin: s.classify(&ev, model.SourceConntrack)}
				}
				f := ev.flowRecord(phase, s.ep.Netns, s.isLocal, now)
				ev.counters().minus(oc.sent).set(&f) // what update records have not reported
				if oc.origin == originOpener {
					f.Failed = ev.failure() // a turned-around record's "reply" is its opener
				}
				orient(&f, oc.origin, s.isLocal)
				f.RemoteName = oc.name
				if f.RemoteName == "" && !inOpen {
					f.RemoteName, _ = s.o.names.Lookup(f.Remote(), now)
				}
				s.emit(f)
			}
		}
	}
}

// classify establishes how ev's original tuple relates to the
// connection's opener (origin.go) and counts, under src, the records it
// turns around or cannot place. Called once per conntrack connection and
// once per logged packet.
func (s *endpointState) classify(ev *ctEvent, src model.FlowSource) origin {
	o := s.cls.origin(ev)
	switch o {
	case originReply:
		s.o.metrics.DirectionCorrected.WithLabelValues(string(model.ProtocolFromNumber(ev.Proto)), string(src)).Inc()
	case originUnknown:
		s.o.metrics.DirectionUnknown.WithLabelValues(string(model.ProtocolFromNumber(ev.Proto)), string(src)).Inc()
	}
	if o != originOpener && s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("conntrack entry began in mid-flight", "origin", o, "proto", ev.Proto,
			"src", netip.AddrPortFrom(ev.Src, ev.SrcPort), "dst", netip.AddrPortFrom(ev.Dst, ev.DstPort))
	}
	return o
}

// record is ev's flow record, oriented by o.
func (s *endpointState) record(ev *ctEvent, phase model.Phase, o origin, now time.Time) model.Flow {
	f := ev.flowRecord(phase, s.ep.Netns, s.isLocal, now)
	orient(&f, o, s.isLocal)
	return f
}

// dumpConntrack dumps the conntrack table of ns (both families) and calls
// fn with each entry, decoded into one reused ctEvent. It returns the
// number of entries that did not decode.
func dumpConntrack(ns netns.NsHandle, fn func(*ctEvent)) (bad int, err error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(ns)})
	if err != nil {
		return 0, fmt.Errorf("dial conntrack: %w", err)
	}
	defer c.Close()
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysCTNetlink<<8 | ipctnlMsgCtGet), Flags: netlink.Request | netlink.Dump},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, 0}, // nfgenmsg: all families, version 0
	}
	if _, err := c.Send(req); err != nil {
		return 0, fmt.Errorf("dump conntrack: %w", err)
	}
	var ev ctEvent
	for m, err := range c.ReceiveIter() {
		if err != nil {
			return bad, fmt.Errorf("dump conntrack: %w", err)
		}
		if err := decodeCTEvent(m, &ev); err != nil || ev.Type == ctOther {
			bad++
			continue
		}
		fn(&ev)
	}
	return bad, nil
}

// dumpTable reads the conntrack table of the netns: entries the observer
// did not know become start records (classified like a NEW; with the
// dump's counters and marked Resynced when resync is set). After an
// overflow (resync), known entries missing from the table are pruned:
// their DESTROY, if it still comes, is an end record.
func (s *endpointState) dumpTable(resync bool) error {
	if resync {
		s.o.metrics.Resyncs.Inc()
	}
	now := time.Now()
	var seen map[uint32]bool
	if resync {
		seen = map[uint32]bool{}
	}
	tracked, added, corrected, unknown := 0, 0, 0, 0
	bad, err := dumpConntrack(s.ns, func(ev *ctEvent) {
		tracked++
		if seen != nil {
			seen[ev.ID] = true
		}
		if s.conns.known(ev.ID) {
			return
		}
		s.maybeRefreshAddrs(ev.Src, ev.Dst)
		oc := &openConn{key: ev.tuple(), origin: s.classify(ev, model.SourceConntrack)}
		switch oc.origin {
		case originReply:
			corrected++
		case originUnknown:
			unknown++
		}
		f := ev.flowRecord(model.PhaseStart, s.ep.Netns, s.isLocal, now)
		if resync {
			ev.counters().set(&f) // the totals at the dump, for reading; update records report them
			f.Resynced = true
		}
		orient(&f, oc.origin, s.isLocal)
		f.RemoteName, _ = s.o.names.Lookup(f.Remote(), now)
		oc.name = f.RemoteName
		s.conns.add(ev.ID, oc)
		added++
		s.emit(f)
	})
	if bad > 0 {
		s.o.metrics.DecodeErrors.WithLabelValues("conntrack").Add(float64(bad))
	}
	if err != nil {
		return err
	}
	if !resync {
		level := slog.LevelDebug
		if corrected+unknown > 0 {
			level = slog.LevelInfo // connections picked up in mid-flight
		}
		s.log.Log(context.Background(), level, "conntrack entries at attach", "tracked", tracked, "corrected", corrected, "unknown", unknown)
		return nil
	}
	ended := s.conns.prune(seen)
	s.log.Info("conntrack resync", "tracked", tracked, "recovered", added, "ended", ended)
	return nil
}

// counterReads lets the counter reads of all endpoints of the process
// take turns: at most one runs at a time.
var counterReads = make(chan struct{}, 1)

// readCounters reads the counters of the endpoint's live connections
// every Config.CounterInterval (at least 20 times the last read's
// duration) and reports their growth in update records (counters.go).
func (s *endpointState) readCounters(ctx context.Context) error {
	interval := s.o.cfg.CounterInterval
	t := time.NewTimer(interval)
	defer t.Stop()
	var live []liveConn
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if live = s.conns.liveConns(live[:0]); len(live) == 0 {
			t.Reset(interval)
			continue
		}
		select {
		case counterReads <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		began := time.Now()
		err := s.updateCounters(live)
		took := time.Since(began)
		<-counterReads
		if err != nil {
			if ctx.Err() != nil || isClosed(err) {
				return nil
			}
			s.log.Warn("read conntrack counters", "err", err)
		}
		t.Reset(max(interval, 20*took))
	}
}

// getBatch is how many IPCTNL_MSG_CT_GET requests go in one datagram.
// The kernel answers each in a buffer of its own (NLMSG_DEFAULT_SIZE, a
// page, whatever the entry's size), so the answers to a batch take about
// getBatch pages of the socket's receive buffer (getReadBuffer).
const (
	getBatch      = 64
	getReadBuffer = 2 << 20
)

// recvDatagram reads one datagram from c into buf, waiting (up to c's read
// deadline) for one to come. The answers to IPCTNL_MSG_CT_GET are read
// this way, not with netlink.Conn.Receive: the kernel marks them
// NLM_F_MULTI (ctnetlink_fill_info() does for every unicast answer) but
// sends no NLMSG_DONE after a single entry, and Receive would wait for one.
func recvDatagram(c *netlink.Conn, buf []byte) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN && rerr != unix.EWOULDBLOCK
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// updateCounters asks the kernel for the entries of live, a batch at a
// time, and emits an update record for every one whose counters grew.
func (s *endpointState) updateCounters(live []liveConn) error {
	now := time.Now()
	var ev ctEvent
	msgs := make([]netlink.Message, 0, getBatch)
	var buf []byte
	for len(live) > 0 {
		batch := live[:min(getBatch, len(live))]
		live = live[len(batch):]
		msgs, buf = msgs[:0], buf[:0]
		for _, lc := range batch {
			at := len(buf)
			buf = appendGetRequest(buf, lc.key)
			msgs = append(msgs, netlink.Message{
				Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysCTNetlink<<8 | ipctnlMsgCtGet), Flags: netlink.Request},
				Data:   buf[at:len(buf):len(buf)],
			})
		}
		if _, err := s.get.SendMessages(msgs); err != nil {
			return fmt.Errorf("get conntrack entries: %w", err)
		}
		if err := s.get.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			return fmt.Errorf("get conntrack entries: %w", err)
		}
		// One answer per request: the entry, or an error (ENOENT: it
		// has just left the table; its DESTROY carries the rest).
		for answered := 0; answered < len(batch); {
			n, err := recvDatagram(s.get, s.getBuf)
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, os.ErrDeadlineExceeded) {
				// Answers lost (or late: a late one is still read, by its
				// id, with a later batch). These connections' counters
				// are read at the next interval.
				s.log.Debug("get conntrack entries", "answered", answered, "of", len(batch), "err", err)
				break
			}
			if err != nil {
				return fmt.Errorf("get conntrack entries: %w", err)
			}
			for b := s.getBuf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
				l := int(binary.NativeEndian.Uint32(b))
				if l < unix.NLMSG_HDRLEN || l > len(b) {
					break
				}
				m := netlink.Message{Header: netlink.Header{Length: uint32(l), Type: netlink.HeaderType(binary.NativeEndian.Uint16(b[4:])),
					Flags: netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:]))}, Data: b[unix.NLMSG_HDRLEN:l]}
				b = b[min(len(b), (l+3)&^3):]
				answered++
				if m.Header.Type == netlink.Error {
					if len(m.Data) >= 4 {
						if errno := unix.Errno(-int32(binary.NativeEndian.Uint32(m.Data))); errno != unix.ENOENT && errno != 0 {
							s.log.Debug("get conntrack entry", "err", errno)
						}
					}
					continue
				}
				if err := decodeCTEvent(m, &ev); err != nil || ev.Type == ctOther {
					s.o.metrics.DecodeErrors.WithLabelValues("conntrack").Inc()
					continue
				}
				d, o, name, ok := s.conns.grew(&ev)
				if !ok {
					continue
				}
				f := ev.flowRecord(model.PhaseUpdate, s.ep.Netns, s.isLocal, now)
				d.set(&f)
				orient(&f, o, s.isLocal)
				f.RemoteName = name
				s.emit(f)
			}
		}
	}
	return nil
}

func (s *endpointState) readVerdictLog(ctx context.Context) error {
	dec := newVerdictDecoder()
	type key struct {
		src, dst netip.AddrPort
		proto    model.Protocol
		verdict  model.Verdict
		rule     string
	}
	recent := map[key]time.Time{}
	const repeatWindow = 2 * time.Minute // TCP SYN retransmissions back off up to ~2 minutes
	for {
		msgs, err := s.nfl.Receive()
		if err != nil {
			if ctx.Err() != nil || isClosed(err) {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				s.o.metrics.EventsLost.WithLabelValues("verdict-log").Inc()
				s.log.Warn("verdict log socket overflowed (ENOBUFS); some verdict records are lost")
				continue
			}
			return fmt.Errorf("receive verdict log: %w", err)
		}
		now := time.Now()
		for _, m := range msgs {
			f, ok := s.verdictRecord(dec, m)
			if !ok {
				continue
			}
			k := key{netip.AddrPortFrom(f.Src, f.SrcPort), netip.AddrPortFrom(f.Dst, f.DstPort), f.Protocol, f.Verdict, f.RuleID}
			if f.ICMPType == nil { // each ICMP echo is its own attempt
				if t, ok := recent[k]; ok && now.Sub(t) < repeatWindow {
					continue
				}
				if len(recent) > 1<<16 {
					for k2, t := range recent {
						if now.Sub(t) >= repeatWindow {
							delete(recent, k2)
						}
					}
				}
				if len(recent) <= 1<<16 {
					recent[k] = now
				}
			}
			if f.Start.IsZero() {
				f.Start = now
			}
			f.RemoteName, _ = s.o.names.Lookup(f.Remote(), now)
			s.emit(f)
		}
	}
}

// verdictRecord decodes one message of the verdict-log socket. Messages
// without a logged packet and packets logged by someone else's rule are
// skipped; only a packet message that cannot be decoded counts in
// nanoseg_observer_decode_errors_total{decoder="verdict-log"}. The record
// runs from the connection's opener as origin.go establishes it for a
// conntrack entry the packet would open: a packet shaped like a reply (a
// fixed source port to an ephemeral one, a TCP packet other than a SYN) is
// turned around when the endpoint's sockets tell, else marked
// DirectionUnknown (and kept out of edges).
func (s *endpointState) verdictRecord(dec *verdictDecoder, m netlink.Message) (model.Flow, bool) {
	f, err := dec.decode(m, s.ep.Netns, s.isLocal)
	switch {
	case err == nil:
		// A packet is logged because its conntrack entry is new, which a
		// reply is when the kernel did not track its request (tracking
		// began in between, or the entry was gone): the same rule as for
		// conntrack records says who opened the connection (origin.go).
		ev := packetEvent(&dec.last)
		orient(&f, s.classify(&ev, model.SourceVerdictLog), s.isLocal)
		return f, true
	case errors.Is(err, errNotPacket), errors.Is(err, verdictlog.ErrNotNanoseg):
		return model.Flow{}, false
	}
	s.o.metrics.DecodeErrors.WithLabelValues("verdict-log").Inc()
	s.log.Debug("skip verdict log message", "err", err)
	return model.Flow{}, false
}

func (s *endpointState) readDNS(ctx context.Context, pkt *os.File) error {
	dec := newDNSDecoder()
	buf := make([]byte, 1<<16)
	for {
		n, err := pkt.Read(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return nil
			}
			if errors.Is(err, unix.ENOBUFS) {
				s.o.metrics.EventsLost.WithLabelValues("dns").Inc()
				continue
			}
			return fmt.Errorf("read DNS capture: %w", err)
		}
		answers, err := dec.decode(buf[:n])
		if err != nil {
			s.o.metrics.DecodeErrors.WithLabelValues("dns").Inc()
			s.log.Debug("skip DNS packet", "err", err)
			continue
		}
		now := time.Now()
		for _, a := range answers {
			s.o.names.Put(a, now)
			s.o.metrics.DNSAnswers.Inc()
			s.log.Debug("dns answer", "name", a.Name, "addr", a.Addr, "ttl", a.TTL)
		}
	}
}

func isClosed(err error) bool {
	if errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) || errors.Is(err, unix.EBADF) {
		return true
	}
	var op *netlink.OpError
	return errors.As(err, &op) && op.Err != nil && op.Err.Error() == "use of closed file"
}
