package dataplane

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"

	"github.com/nanoseg/nanoseg/internal/verdictlog"
	"github.com/nanoseg/nanoseg/model"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

var pfx = netip.MustParsePrefix

// goldenRuleSets are rendered into testdata/<name>.golden.
var goldenRuleSets = map[string]RuleSet{
	"observe": {Name: "shop/web", Mode: model.ModeObserve,
		Ingress: []Entry{
			{Peer: pfx("198.18.0.10/32"), Protocol: model.ProtocolTCP, Port: 80, RuleID: "allow-http"},
			{Peer: pfx("2001:db8::/64"), Protocol: model.ProtocolTCP, Port: 443, RuleID: "allow-https"},
		},
		Egress: []Entry{{Peer: pfx("198.18.1.0/24"), Protocol: model.ProtocolUDP, Port: 53, RuleID: "dns"}},
	},
	"audit-log-allowed": {Name: "shop/db", Mode: model.ModeAudit, LogAllowed: true,
		Ingress: []Entry{
			{Peer: pfx("198.18.0.0/16"), Protocol: model.ProtocolTCP, Port: 5432, EndPort: 5440, RuleID: "pg"},
			{Peer: pfx("198.18.2.2/32"), Protocol: model.ProtocolICMP, RuleID: "ping"},
			{Peer: pfx("2001:db8:1::/48"), Protocol: model.ProtocolICMPv6, RuleID: "ping6"},
		},
	},
	"enforce-overlap-sctp": {Name: "telco/amf", Mode: model.ModeEnforce,
		Ingress: []Entry{
			{Peer: pfx("198.18.0.5/32"), Protocol: model.ProtocolTCP, Port: 80, RuleID: "narrow"},
			{Peer: pfx("198.18.0.0/24"), Protocol: model.ProtocolTCP, Port: 1, EndPort: 1024, RuleID: "wide"},
			{Peer: pfx("198.18.0.0/24"), Protocol: model.ProtocolSCTP, Port: 38412, RuleID: "ngap"},
			{Peer: pfx("198.18.3.0/24"), RuleID: "any-proto"},
			{Peer: pfx("198.18.3.7/32"), Protocol: model.ProtocolUDP, Port: 9, RuleID: "shadowed-by-any"},
			{Peer: pfx("2001:db8::1/128"), Protocol: model.ProtocolSCTP, Port: 36412, EndPort: 36422, RuleID: "s1ap"},
		},
		Egress: []Entry{{Peer: pfx("0.0.0.0/0"), Protocol: model.ProtocolTCP, Port: 443, RuleID: "web-out"}},
	},
}

// dump renders o as stable text: objects in creation order, expressions
// with their Go field values.
func dump(o *Objects) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s family %d\n", o.Table.Name, o.Table.Family)
	for _, c := range o.Chains {
		fmt.Fprintf(&b, "chain %s %s\n", c.Name, chainHeaderText(c))
	}
	for _, c := range o.Counters {
		fmt.Fprintf(&b, "counter %s type %d\n", c.Name, c.Type)
	}
	for _, s := range o.Sets {
		fmt.Fprintf(&b, "map %s id %d key %q (%d bytes) data %s interval=%t concat=%t\n",
			s.Name, s.ID, s.KeyType.Name, s.KeyType.Bytes, s.DataType.Name, s.Interval, s.Concatenation)
		for _, e := range o.Elements[s.Name] {
			fmt.Fprintf(&b, "  element key %x end %x verdict %d %s\n", e.Key, e.KeyEnd, e.VerdictData.Kind, e.VerdictData.Chain)
		}
	}
	for _, r := range o.Rules {
		fmt.Fprintf(&b, "rule %s: %s\n", r.Chain.Name, ruleComment(r))
		for _, e := range r.Exprs {
			fmt.Fprintf(&b, "  %T %+v\n", e, reflect.ValueOf(e).Elem().Interface())
		}
	}
	return b.String()
}

func chainHeaderText(c *nftables.Chain) string {
	if c.Hooknum == nil {
		return "(regular)"
	}
	return fmt.Sprintf("type %s hook %d priority %d policy %d", c.Type, *c.Hooknum, *c.Priority, *c.Policy)
}

func TestRenderGolden(t *testing.T) {
	for name, rs := range goldenRuleSets {
		t.Run(name, func(t *testing.T) {
			o, err := Render(rs)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := dump(o)
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("Render(%s) differs from %s (-want +got):\n%s", name, path, d)
			}
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	for name, rs := range goldenRuleSets {
		a, _ := Render(rs)
		b, _ := Render(rs)
		if d := cmp.Diff(dump(a), dump(b)); d != "" {
			t.Errorf("%s: two renders differ:\n%s", name, d)
		}
	}
}

func TestValidateReportsEveryBadEntry(t *testing.T) {
	rs := RuleSet{Name: "bad name!", Mode: "lockdown",
		Ingress: []Entry{
			{Peer: pfx("198.18.0.1/32"), Protocol: model.ProtocolTCP, Port: 80, RuleID: "ok"},
			{Peer: pfx("198.18.0.1/32"), Protocol: model.ProtocolTCP, Port: 70000, RuleID: "port-high"},
			{Peer: pfx("198.18.0.1/32"), Protocol: model.ProtocolTCP, Port: -1, RuleID: "port-negative"},
			{Peer: pfx("198.18.0.1/32"), Protocol: model.ProtocolUDP, Port: 90, EndPort: 80, RuleID: "end-before-start"},
			{Peer: pfx("198.18.0.1/32"), Protocol: model.ProtocolUDP, EndPort: 80, RuleID: "end-without-port"},
			{Peer: netip.Prefix{}, Protocol: model.ProtocolTCP, Port: 1, RuleID: "no-prefix"},
			{Peer: pfx("198.18.0.1/32"), Protocol: model.ProtocolICMP, Port: 8, RuleID: "icmp-port"},
			{Peer: pfx("198.18.0.1/32"), Protocol: ProtocolAny, Port: 8, RuleID: "any-port"},
			{Peer: pfx("2001:db8::1/128"), Protocol: model.ProtocolICMP, RuleID: "icmp-v6-peer"},
			{Peer: pfx("198.18.0.1/32"), Protocol: model.ProtocolICMPv6, RuleID: "icmpv6-v4-peer"},
			{Peer: pfx("198.18.0.1/32"), Protocol: "gre", RuleID: "unknown-proto"},
			{Peer: pfx("::ffff:198.18.0.1/128"), RuleID: "mapped"},
		},
		Egress: []Entry{
			{Peer: pfx("198.18.0.1/32"), RuleID: "has:colon"},
			{Peer: pfx("198.18.0.1/32"), RuleID: strings.Repeat("x", verdictlog.MaxIDLen+1)},
			{Peer: pfx("198.18.0.1/32"), RuleID: ""},
		},
	}
	err := rs.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Validate = %v, want ErrInvalid", err)
	}
	msg := err.Error()
	for _, want := range []string{`mode "lockdown"`, "name: id", "Ingress[1]", "port 70000", "Ingress[2]", "Ingress[3]", "end port 80 before port 90",
		"Ingress[4]", "end port 80 without a port", "Ingress[5]", "invalid peer prefix", "Ingress[6]", "port on protocol ICMP",
		"Ingress[7]", "port on protocol any", "Ingress[8]", "ICMP with an IPv6 peer", "Ingress[9]", "ICMPv6 with an IPv4 peer",
		"Ingress[10]", `unknown protocol "gre"`, "Ingress[11]", "IPv4-mapped", "Egress[0]", `character ':'`, "Egress[1]", "more than 100", "Egress[2]", "empty id"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "Ingress[0]") {
		t.Errorf("error names the valid entry ingress[0]:\n%s", msg)
	}
	if _, err := Render(rs); !errors.Is(err, ErrInvalid) {
		t.Errorf("Render of invalid rule set = %v, want ErrInvalid", err)
	}
}

func TestElementsDisjointFirstWins(t *testing.T) {
	rs := goldenRuleSets["enforce-overlap-sctp"]
	els := Elements(rs)
	// Every element is one prefix; no two elements of one map overlap.
	for i, a := range els {
		for _, b := range els[i+1:] {
			if a.setName() == b.setName() && a.Protocol == b.Protocol && a.Peer.Overlaps(b.Peer) &&
				a.PortFrom <= b.PortTo && b.PortFrom <= a.PortTo {
				t.Errorf("elements overlap: %+v and %+v", a, b)
			}
		}
	}
	// Each probe is attributed as RuleSet.Allows says (first entry wins).
	for _, p := range []struct {
		addr  string
		proto uint8
		port  uint16
		want  string
	}{
		{"198.18.0.5", 6, 80, "narrow"}, {"198.18.0.5", 6, 81, "wide"}, {"198.18.0.4", 6, 80, "wide"},
		{"198.18.0.5", 6, 1025, ""}, {"198.18.0.255", 6, 1024, "wide"}, {"198.18.1.0", 6, 80, ""},
		{"198.18.3.7", 17, 9, "any-proto"}, {"198.18.3.255", 47, 0, "any-proto"}, {"198.18.0.9", 132, 38412, "ngap"},
		{"2001:db8::1", 132, 36422, "s1ap"}, {"2001:db8::1", 132, 36423, ""},
	} {
		id, _ := rs.Allows(model.Ingress, netip.MustParseAddr(p.addr), p.proto, p.port)
		if id != p.want {
			t.Errorf("Allows(%s %d %d) = %q, want %q", p.addr, p.proto, p.port, id, p.want)
		}
		got := ""
		a := netip.MustParseAddr(p.addr)
	kinds:
		for _, k := range []mapKind{kindAny, kindExact, kindRange} {
			for _, e := range els {
				if e.Dir != model.Ingress || e.kind() != k || !e.Peer.Contains(a) {
					continue
				}
				n, _ := e.Protocol.Number()
				if e.Protocol == ProtocolAny || n == p.proto && p.port >= e.PortFrom && p.port <= e.PortTo {
					got = e.RuleID
					break kinds
				}
			}
		}
		if got != p.want {
			t.Errorf("elements give %s %d %d to %q, want %q", p.addr, p.proto, p.port, got, p.want)
		}
	}
}

func TestRangePrefixes(t *testing.T) {
	got := rangePrefixes(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.6"))
	want := []netip.Prefix{pfx("198.18.0.1/32"), pfx("198.18.0.2/31"), pfx("198.18.0.4/31"), pfx("198.18.0.6/32")}
	if d := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
		t.Errorf("rangePrefixes (-want +got):\n%s", d)
	}
	all := rangePrefixes(netip.MustParseAddr("::"), netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
	if len(all) != 1 || all[0] != pfx("::/0") {
		t.Errorf("full IPv6 range = %v", all)
	}
}
