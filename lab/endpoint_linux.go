//go:build linux

// The lab's workloads: real servers and real clients in each endpoint.
//
// Design: one process per endpoint (`nanoseg lab endpoint`, started by Up),
// or one goroutine per endpoint in tests, runs RunEndpoint. Every socket is
// created on a thread inside the endpoint's namespace (nsenter.Do) and so
// belongs to it for its whole life; accept, read and write then run on any
// thread. Servers answer each TCP connection with one line and each UDP
// datagram with one datagram. Clients resolve their peer's name through the
// lab's DNS server over the wire, the way a container's resolver does, pick
// a replica round-robin, alternate IPv4 and IPv6, and count every attempt.
// The DNS workload answers A and AAAA for the plan's names and refuses
// everything else: it never forwards a query out of the lab.
package lab

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/nanoseg/nanoseg/internal/nsenter"
)

// DNSTTL is the TTL, in seconds, of the lab DNS server's answers.
const DNSTTL = 30

// Stats are one endpoint's live traffic counters, as written to
// <state>/<lab>/stats/<netns>.json about once a second.
type Stats struct {
	Endpoint  string        `json:"endpoint"`
	Ready     bool          `json:"ready"` // every listener is open
	UpdatedAt time.Time     `json:"updatedAt"`
	Servers   []ServerStats `json:"servers"`
	Talks     []TalkStats   `json:"talks"`
}

// ServerStats counts what one listening port received.
type ServerStats struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	// Served counts TCP connections answered or UDP datagrams answered (or
	// DNS queries, on the DNS workload).
	Served uint64 `json:"served"`
}

// TalkStats counts one client behaviour's connections.
type TalkStats struct {
	To        string    `json:"to"`
	Port      int       `json:"port"`
	Protocol  string    `json:"protocol"`
	Attempts  uint64    `json:"attempts"`
	OK        uint64    `json:"ok"`
	Failed    uint64    `json:"failed"`
	LastError string    `json:"lastError,omitempty"`
	LastOK    time.Time `json:"lastOK,omitzero"`
}

type counters struct {
	mu      sync.Mutex
	stats   Stats
	served  []atomic.Uint64
	tries   []atomic.Uint64
	oks     []atomic.Uint64
	ready   atomic.Bool
	lastErr []atomic.Value
	lastOK  []atomic.Int64
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Ready = c.ready.Load()
	s.UpdatedAt = time.Now().UTC()
	s.Servers = append([]ServerStats(nil), s.Servers...)
	for i := range s.Servers {
		s.Servers[i].Served = c.served[i].Load()
	}
	s.Talks = append([]TalkStats(nil), s.Talks...)
	for i := range s.Talks {
		s.Talks[i].Attempts = c.tries[i].Load()
		s.Talks[i].OK = c.oks[i].Load()
		s.Talks[i].Failed = s.Talks[i].Attempts - s.Talks[i].OK
		if v, ok := c.lastErr[i].Load().(string); ok {
			s.Talks[i].LastError = v
		}
		if t := c.lastOK[i].Load(); t != 0 {
			s.Talks[i].LastOK = time.Unix(0, t).UTC()
		}
	}
	return s
}

// talkTarget is a Talk resolved against the plan.
type talkTarget struct {
	name     string // FQDN to resolve
	port     int
	protocol string // TCP or UDP
	every    time.Duration
}

// resolveTalk turns tk of a workload in namespace ns into a target.
func (p *Plan) resolveTalk(ns string, tk Talk) (talkTarget, error) {
	var ports []Port
	name := ""
	for _, x := range p.Topology.Externals {
		if x.DNS == tk.To {
			ports, name = x.Ports, x.DNS
		}
	}
	if name == "" {
		key := tk.To
		if !strings.Contains(key, "/") {
			key = ns + "/" + key
		}
		eps := p.Find(key)
		if len(eps) == 0 {
			return talkTarget{}, fmt.Errorf("peer %q does not exist", tk.To)
		}
		ports, name = eps[0].Ports, eps[0].FQDN()
	}
	port, err := p.Topology.resolveTalkPort(tk, ports)
	if err != nil {
		return talkTarget{}, err
	}
	every, err := time.ParseDuration(tk.Every)
	if err != nil {
		return talkTarget{}, fmt.Errorf("every: %w", err)
	}
	return talkTarget{name: name, port: port.Port, protocol: port.Protocol, every: every}, nil
}

// RunEndpoint runs the servers and scheduled clients of endpoint e of plan
// p inside e's namespace until ctx is done, writing Stats to statsPath
// (skipped if empty) about once a second. It returns nil on a clean stop and
// an error if a listener cannot be opened.
func RunEndpoint(ctx context.Context, p *Plan, e Endpoint, statsPath string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "lab-endpoint", "endpoint", e.ID())
	h, err := openNetns(e.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &counters{stats: Stats{Endpoint: e.ID()}}
	for _, pt := range e.Ports {
		c.stats.Servers = append(c.stats.Servers, ServerStats{Port: pt.Port, Protocol: pt.Protocol})
	}
	var targets []talkTarget
	if !e.External {
		for _, w := range p.Topology.Workloads {
			if w.Namespace != e.Namespace || w.Name != e.Workload {
				continue
			}
			for _, tk := range w.Talks {
				tt, err := p.resolveTalk(w.Namespace, tk)
				if err != nil {
					return fmt.Errorf("talk to %s: %w", tk.To, err)
				}
				targets = append(targets, tt)
				c.stats.Talks = append(c.stats.Talks, TalkStats{To: tk.To, Port: tt.port, Protocol: tt.protocol})
			}
		}
	}
	c.served = make([]atomic.Uint64, len(c.stats.Servers))
	c.tries = make([]atomic.Uint64, len(targets))
	c.oks = make([]atomic.Uint64, len(targets))
	c.lastErr = make([]atomic.Value, len(targets))
	c.lastOK = make([]atomic.Int64, len(targets))

	var wg sync.WaitGroup
	var closers []func()
	defer func() {
		for _, f := range closers {
			f()
		}
		wg.Wait()
	}()
	isDNS := !e.External && e.Key() == p.Topology.DNS
	for i, pt := range e.Ports {
		if isDNS && pt.Port == 53 {
			stop, err := serveDNS(h, p, pt.Protocol, &c.served[i], log)
			if err != nil {
				return err
			}
			closers = append(closers, stop)
			continue
		}
		stop, err := serveEcho(h, e, pt, &c.served[i], &wg, log)
		if err != nil {
			return err
		}
		closers = append(closers, stop)
	}
	c.ready.Store(true)
	cl := &Client{Plan: p, From: e, ns: h}
	for i, tt := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runTalk(ctx, cl, tt, c, i, log)
		}()
	}
	if statsPath != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				if err := writeJSON(statsPath, c.snapshot()); err != nil {
					log.Warn("write lab stats", "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	<-ctx.Done()
	return nil
}

func runTalk(ctx context.Context, cl *Client, tt talkTarget, c *counters, i int, log *slog.Logger) {
	// Spread the first connections over one interval so that replicas and
	// workloads do not fire in lockstep.
	timer := time.NewTimer(time.Duration(rand.Int64N(int64(tt.every))))
	defer timer.Stop()
	n := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		family := 4
		if n%2 == 1 {
			family = 6
		}
		c.tries[i].Add(1)
		res, err := cl.Talk(ctx, tt.name, tt.port, tt.protocol, family, n, 2*time.Second)
		if err != nil {
			c.lastErr[i].Store(err.Error())
			log.Debug("lab talk failed", "to", tt.name, "port", tt.port, "err", err)
		} else {
			c.oks[i].Add(1)
			c.lastOK[i].Store(time.Now().UnixNano())
			log.Debug("lab talk", "to", res.Addr, "reply", res.Reply)
		}
		n++
		timer.Reset(tt.every)
	}
}

// serveEcho opens pt in namespace h (dual-stack) and answers every TCP
// connection with "ok <endpoint>\n" and every UDP datagram with one reply.
func serveEcho(h netns.NsHandle, e Endpoint, pt Port, served *atomic.Uint64, wg *sync.WaitGroup, log *slog.Logger) (func(), error) {
	addr := ":" + strconv.Itoa(pt.Port)
	reply := []byte("ok " + e.ID() + "\n")
	if pt.Protocol == "UDP" {
		var pc net.PacketConn
		if err := nsenter.Do(h, func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
			return nil, fmt.Errorf("listen %d/UDP: %w", pt.Port, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				_, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				if _, err := pc.WriteTo(reply, from); err == nil {
					served.Add(1)
				}
			}
		}()
		return func() { pc.Close() }, nil
	}
	var ln net.Listener
	if err := nsenter.Do(h, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		return nil, fmt.Errorf("listen %d/TCP: %w", pt.Port, err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
				if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
					log.Debug("lab server read", "port", pt.Port, "err", err)
					return
				}
				if _, err := conn.Write(reply); err == nil {
					served.Add(1)
				}
			}()
		}
	}()
	return func() { ln.Close() }, nil
}

// serveDNS answers the plan's names on port 53 over proto in namespace h.
func serveDNS(h netns.NsHandle, p *Plan, proto string, served *atomic.Uint64, log *slog.Logger) (func(), error) {
	names := p.Names()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		served.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if len(q.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			_ = w.WriteMsg(m)
			return
		}
		qn := strings.ToLower(strings.TrimSuffix(q.Question[0].Name, "."))
		addrs, ok := names[qn]
		if !ok {
			// Not a lab name: refuse rather than forward anything out of the lab.
			m.Rcode = dns.RcodeNameError
			_ = w.WriteMsg(m)
			return
		}
		for _, a := range addrs {
			hdr := dns.RR_Header{Name: q.Question[0].Name, Class: dns.ClassINET, Ttl: DNSTTL}
			switch {
			case a.Is4() && q.Question[0].Qtype == dns.TypeA:
				hdr.Rrtype = dns.TypeA
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
			case a.Is6() && q.Question[0].Qtype == dns.TypeAAAA:
				hdr.Rrtype = dns.TypeAAAA
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
			}
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{Handler: handler}
	var err error
	if proto == "UDP" {
		err = nsenter.Do(h, func() (err error) { srv.PacketConn, err = net.ListenPacket("udp", ":53"); return err })
	} else {
		err = nsenter.Do(h, func() (err error) { srv.Listener, err = net.Listen("tcp", ":53"); return err })
	}
	if err != nil {
		return nil, fmt.Errorf("listen 53/%s: %w", proto, err)
	}
	go func() {
		if err := srv.ActivateAndServe(); err != nil {
			log.Debug("lab dns server stopped", "err", err)
		}
	}()
	return func() { _ = srv.Shutdown() }, nil
}

// Client makes connections from inside one lab endpoint, as its workload
// would: names are resolved through the lab's DNS server.
type Client struct {
	Plan *Plan
	From Endpoint
	ns   netns.NsHandle
}

// NewClient returns a client for endpoint from; Close releases it.
func NewClient(p *Plan, from Endpoint) (*Client, error) {
	h, err := openNetns(from.Netns)
	if err != nil {
		return nil, err
	}
	return &Client{Plan: p, From: from, ns: h}, nil
}

// Close releases the client's namespace handle.
func (c *Client) Close() error { return c.ns.Close() }

// TalkResult is what one successful connection saw.
type TalkResult struct {
	Addr  netip.AddrPort // the address connected to
	Reply string         // the server's reply, trimmed
}

// Dial opens a connection ("tcp" or "udp") from the client's namespace.
func (c *Client) Dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := nsenter.Do(c.ns, func() (err error) {
		conn, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return conn, err
}

// Resolve asks the lab DNS server (over IPv4 for family 4, IPv6 for 6; over
// network "udp" or "tcp") for name's A (family 4) or AAAA (family 6) records.
func (c *Client) Resolve(name, network string, family int, timeout time.Duration) ([]netip.Addr, error) {
	server, qtype := c.Plan.DNSv4, dns.TypeA
	if family == 6 {
		server, qtype = c.Plan.DNSv6, dns.TypeAAAA
	}
	conn, err := c.Dial(network, netip.AddrPortFrom(server, 53).String(), timeout)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	co := &dns.Conn{Conn: conn}
	if err := co.WriteMsg(q); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	r, err := co.ReadMsg()
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("resolve %s: %s", name, dns.RcodeToString[r.Rcode])
	}
	var out []netip.Addr
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
				out = append(out, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(v.AAAA); ok {
				out = append(out, a)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolve %s: no IPv%d address", name, family)
	}
	return out, nil
}

// Talk connects once to target on port over protocol (TCP or UDP): target
// is a DNS name (resolved through the lab DNS server, replica pick-th
// round-robin, over TCP every fourth pick) or an IP address. It sends one line, waits for the server's
// reply, and returns it; any failure is an error.
func (c *Client) Talk(ctx context.Context, target string, port int, protocol string, family, pick int, timeout time.Duration) (TalkResult, error) {
	var addr netip.Addr
	if a, err := netip.ParseAddr(target); err == nil {
		addr = a
	} else {
		// Like a real resolver, mostly UDP, sometimes TCP.
		network := "udp"
		if pick%4 == 3 {
			network = "tcp"
		}
		addrs, err := c.Resolve(target, network, family, timeout)
		if err != nil {
			return TalkResult{}, err
		}
		addr = addrs[pick%len(addrs)]
	}
	if err := ctx.Err(); err != nil {
		return TalkResult{}, err
	}
	ap := netip.AddrPortFrom(addr, uint16(port))
	network := strings.ToLower(protocol)
	if network != "tcp" && network != "udp" {
		return TalkResult{}, fmt.Errorf("talk to %s: protocol %q is not TCP or UDP", ap, protocol)
	}
	conn, err := c.Dial(network, ap.String(), timeout)
	if err != nil {
		return TalkResult{}, fmt.Errorf("talk to %s/%s: %w", ap, protocol, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(conn, "hello from %s\n", c.From.ID()); err != nil {
		return TalkResult{}, fmt.Errorf("talk to %s/%s: %w", ap, protocol, err)
	}
	buf := make([]byte, 512)
	n, err := conn.Read(buf)
	if err != nil {
		return TalkResult{}, fmt.Errorf("talk to %s/%s: %w", ap, protocol, err)
	}
	return TalkResult{Addr: ap, Reply: strings.TrimSpace(string(buf[:n]))}, nil
}

// StatsPath returns where endpoint e's stats live.
func (c Config) StatsPath(lab string, e Endpoint) string {
	return filepath.Join(c.Dir(lab), "stats", e.Netns+".json")
}
