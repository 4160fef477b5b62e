package v1alpha1

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/model"
)

// A record written into a promotion's status and read back (through JSON,
// as the API server stores it) still verifies: the hash chain survives
// the API's time format.
func TestRecordRoundTripVerifies(t *testing.T) {
	at := RecordTime(time.Date(2026, 12, 2, 8, 30, 1, 987654321, time.FixedZone("x", 3600)))
	var chain []model.Promotion
	prev := ""
	for i, to := range []model.Mode{model.ModeAudit, model.ModeEnforce} {
		p := model.Promotion{Seq: uint64(i + 1), At: at, Who: "alice", Workload: "shop/web", Action: model.ActionPromote,
			FromMode: model.ModeObserve, ToMode: to, ToRevision: 1, Reason: "r", Forced: []string{"silent"}, PrevHash: prev}
		p.Hash = p.ChainHash()
		prev = p.Hash
		raw, err := json.Marshal(RecordFrom(p))
		if err != nil {
			t.Fatal(err)
		}
		var back PromotionRecord
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		chain = append(chain, back.Model())
	}
	if err := model.VerifyPromotions(chain); err != nil {
		t.Fatalf("round-tripped chain does not verify: %v", err)
	}
	chain[1].Reason = "edited"
	if err := model.VerifyPromotions(chain); err == nil {
		t.Fatal("an edited record verified")
	}
}

func TestEdgeRoundTrip(t *testing.T) {
	e := model.Edge{
		Source:      model.Peer{Namespace: "shop", Workload: "web"},
		Destination: model.Peer{External: true, Name: "api.example", Addr: netip.MustParseAddr("198.18.0.9")},
		Protocol:    model.ProtocolTCP, Port: 443,
		Traffic: model.Traffic{FirstSeen: time.Unix(100, 0), LastSeen: time.Unix(200, 0), Flows: 7, Failed: 1, BytesOut: 10, BytesIn: 20,
			Verdicts: model.VerdictCounts{Allowed: 6, Denied: 1}},
	}
	got, err := EdgeFrom(e, "").Model()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Source, e.Source) || !reflect.DeepEqual(got.Destination, e.Destination) || got.Port != 443 || got.Flows != 7 || got.Verdicts != e.Verdicts || !got.LastSeen.Equal(e.LastSeen) {
		t.Fatalf("round trip changed the edge:\n got %+v\nwant %+v", got, e)
	}
	bad := EdgeFrom(e, "")
	bad.Destination.Address = "nope"
	if _, err := bad.Model(); err == nil || err.Error() != `destination.address: "nope" is no IP address` {
		t.Fatalf("bad address: %v", err)
	}
}
