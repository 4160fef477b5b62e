package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// historyV0 is a promotion history recorded by the store before the one
// vocabulary (controller.Store at commit 79b15a9): its hashes must still
// verify.
const historyV0 = `[{"seq":1,"at":"2026-11-30T06:00:00Z","who":"uid:0","workload":"shop/db","action":"promote","fromMode":"observe","toMode":"audit","fromRevision":0,"toRevision":1,"reason":"first","prevHash":"","hash":"85f0181d10c051b85f15b05460625697ee686f2dfa437965415c2f6cf40e60ee"},{"seq":2,"at":"2026-11-30T07:00:00Z","who":"alice","workload":"shop/db","action":"rollback","fromMode":"audit","toMode":"observe","fromRevision":1,"toRevision":0,"reason":"oops","undoes":1,"prevHash":"85f0181d10c051b85f15b05460625697ee686f2dfa437965415c2f6cf40e60ee","hash":"7f49b511b9916bf209c17ed4605742f546307e2daca6bd73a5a3d72c942f9c80"}]`

func TestVerifyPromotionsRecordedHistory(t *testing.T) {
	var ps []Promotion
	if err := json.Unmarshal([]byte(historyV0), &ps); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPromotions(ps); err != nil {
		t.Fatalf("recorded history: %v", err)
	}
	raw, err := json.Marshal(ps)
	if err != nil || string(raw) != historyV0 {
		t.Errorf("history does not encode back byte for byte:\n%s\n%s", raw, historyV0)
	}
	ps[1].Reason = "edited"
	if err := VerifyPromotions(ps); !errors.Is(err, ErrChainBroken) {
		t.Errorf("edited history: %v, want ErrChainBroken", err)
	}
	if err := VerifyPromotions(ps[1:]); !errors.Is(err, ErrChainBroken) {
		t.Errorf("history with a gap: %v, want ErrChainBroken", err)
	}
}

// TestLegacyDecode reads an edge, a flow and a verdict event as earlier
// versions wrote them (lower-case protocol and direction, past-tense
// verdicts) and checks they decode to the one spelling.
func TestLegacyDecode(t *testing.T) {
	var e Edge
	if err := json.Unmarshal([]byte(`{"source":{"namespace":"shop","workload":"api"},"destination":{"external":true,"name":"x.example"},"protocol":"tcp","port":443,"flows":1,"verdicts":{"auditDenied":2}}`), &e); err != nil {
		t.Fatal(err)
	}
	if e.Protocol != ProtocolTCP || e.Verdicts.AuditDenied != 2 || e.Source.String() != "shop/api" || e.Destination.String() != "x.example" {
		t.Errorf("edge %+v", e)
	}
	var f Flow
	if err := json.Unmarshal([]byte(`{"phase":"complete","source":"verdict-log","direction":"ingress","protocol":"ipv6-icmp","verdict":"audit-denied"}`), &f); err != nil {
		t.Fatal(err)
	}
	if f.Direction != Ingress || f.Protocol != ProtocolICMPv6 || f.Verdict != VerdictAuditDeny {
		t.Errorf("flow %+v", f)
	}
	var v VerdictEvent
	if err := json.Unmarshal([]byte(`{"verdict":"deny","protocol":"udp","port":53}`), &v); err != nil {
		t.Fatal(err)
	}
	if v.Verdict != VerdictDeny || v.Protocol != ProtocolUDP {
		t.Errorf("verdict event %+v", v)
	}
	raw, _ := json.Marshal(e)
	var again Edge
	if err := json.Unmarshal(raw, &again); err != nil || again.Protocol != ProtocolTCP {
		t.Errorf("round trip: %s -> %+v, %v", raw, again, err)
	}
}

func TestParseWords(t *testing.T) {
	for in, want := range map[string]Protocol{"TCP": ProtocolTCP, "tcp": ProtocolTCP, "Udp": ProtocolUDP, "sctp": ProtocolSCTP,
		"ICMP": ProtocolICMP, "icmpv6": ProtocolICMPv6, "ICMPv6": ProtocolICMPv6, "ipv6-icmp": ProtocolICMPv6, "47": "47", "6": ProtocolTCP} {
		if got, err := ParseProtocol(in); err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "gre", "256", "-1"} {
		if _, err := ParseProtocol(bad); !errors.Is(err, ErrUnknownWord) {
			t.Errorf("ParseProtocol(%q) = %v, want ErrUnknownWord", bad, err)
		}
	}
	for _, p := range Protocols {
		n, ok := p.Number()
		if !ok || ProtocolFromNumber(n) != p {
			t.Errorf("%s: number %d %v does not map back", p, n, ok)
		}
	}
	var p Protocol
	if err := p.UnmarshalText([]byte("gre")); err != nil || p != "gre" {
		t.Errorf("UnmarshalText(gre) = %q, %v; want it kept for validation", p, err)
	}
	for in, want := range map[string]Direction{"Ingress": Ingress, "ingress": Ingress, "EGRESS": Egress} {
		if got, err := ParseDirection(in); err != nil || got != want {
			t.Errorf("ParseDirection(%q) = %q, %v", in, got, err)
		}
	}
	if Ingress.Index() != 0 || Egress.Index() != 1 || Directions[Egress.Index()] != Egress {
		t.Error("direction index")
	}
	for in, want := range map[string]Verdict{"observed": VerdictObserved, "observe": VerdictObserved, "allow": VerdictAllow,
		"allowed": VerdictAllow, "audit-deny": VerdictAuditDeny, "audit-denied": VerdictAuditDeny, "deny": VerdictDeny, "denied": VerdictDeny} {
		if got, err := ParseVerdict(in); err != nil || got != want {
			t.Errorf("ParseVerdict(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseMode("enforced"); !errors.Is(err, ErrUnknownWord) {
		t.Errorf("ParseMode(enforced) = %v", err)
	}
}

func TestIdentity(t *testing.T) {
	id := Identity{Namespace: "shop", Workload: "api", Labels: map[string]string{"app": "api", "pod-template-hash": "x", "tier": "b"}}
	n := id.Normalize()
	if n.Key() != "shop{app=api,tier=b}" || n.String() != "shop/api" || id.Labels["pod-template-hash"] != "x" {
		t.Errorf("normalize: %s %s %v", n.Key(), n, id.Labels)
	}
	ep := Endpoint{Namespace: "shop", Workload: "api", Labels: id.Labels}
	if ep.Identity().Key() != n.Key() || ep.Key() != "shop/api" {
		t.Errorf("endpoint identity %v", ep.Identity())
	}
	if (Peer{External: true, Name: "X.Example."}).ExternalKey() != "x.example" {
		t.Error("external key")
	}
}

func TestTrafficAdd(t *testing.T) {
	e := Edge{Traffic: Traffic{Flows: 1, Verdicts: VerdictCounts{Observed: 1}}}
	e.Add(Traffic{Flows: 2, BytesIn: 5, Verdicts: VerdictCounts{Denied: 2}})
	if e.Flows != 3 || e.Bytes() != 5 || e.Verdicts.Of(VerdictDeny) != 2 || e.Verdicts.Of(VerdictObserved) != 1 {
		t.Errorf("add: %+v", e)
	}
	e.Verdicts.Inc(VerdictAllow)
	if e.Verdicts.Allowed != 1 {
		t.Errorf("inc: %+v", e.Verdicts)
	}
}

func TestNormalKeyIsKeyOfNormalize(t *testing.T) {
	id := Identity{Namespace: "shop", Workload: "api", Labels: map[string]string{"app": "api", "pod-template-hash": "abc", "tier": "b"}}
	if got, want := id.NormalKey(), id.Normalize().Key(); got != want || want != "shop{app=api,tier=b}" {
		t.Errorf("NormalKey %q, Normalize().Key() %q, want shop{app=api,tier=b}", got, want)
	}
	if id.Key() != "shop{app=api,pod-template-hash=abc,tier=b}" {
		t.Errorf("Key %q keeps every label", id.Key())
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		35 * time.Second: "35s", 4*time.Minute + 10*time.Second: "4m10s", 4 * time.Minute: "4m",
		2*time.Hour + 5*time.Minute: "2h5m", 2 * time.Hour: "2h", 75 * time.Hour: "3d3h", 59*time.Minute + 59*time.Second + 600*time.Millisecond: "1h", 72 * time.Hour: "3d", -time.Second: "0s",
	} {
		if got := ShortDuration(d); got != want {
			t.Errorf("ShortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// A promotion event recorded before Forced existed hashes as it did.
func TestPromotionHashWithoutForced(t *testing.T) {
	p := Promotion{Seq: 1, At: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Who: "a", Workload: "shop/db", Action: ActionPromote,
		FromMode: ModeObserve, ToMode: ModeAudit, ToRevision: 1, Reason: "r"}
	old := `{"seq":1,"at":"2026-12-01T00:00:00Z","who":"a","workload":"shop/db","action":"promote","fromMode":"observe","toMode":"audit","fromRevision":0,"toRevision":1,"reason":"r","prevHash":"","hash":""}`
	sum := sha256.Sum256([]byte(old))
	if got := p.ChainHash(); got != hex.EncodeToString(sum[:]) {
		t.Errorf("hash of an event without Forced changed")
	}
	p.Forced = []string{"observed 35s"}
	if p.ChainHash() == hex.EncodeToString(sum[:]) {
		t.Errorf("Forced is not covered by the hash")
	}
}
