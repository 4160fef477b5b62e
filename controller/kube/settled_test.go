package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// TestSettledAgreesWithTheGate: a proposal shown Settled=True is promoted
// to enforce without force, and one the gate refuses is Settled=False
// with the gate's reasons, for the controller's window and minimum
// observation as configured (the defaults: a 24h window, 1h minimum; and
// a window as short as the minimum), with the workload observed for 2h
// and a sibling silent or not.
func TestSettledAgreesWithTheGate(t *testing.T) {
	for _, tc := range []struct {
		name            string
		window, minObs  time.Duration
		observed        time.Duration
		intruderTalks   bool
		settled         bool
		wantInCondition string
	}{
		{"2h of a 24h window", 24 * time.Hour, time.Hour, 2 * time.Hour, true, false, "asked for a 24h window (--window) but it was observed for only 2h of it"},
		{"2h of a 1h window, a silent sibling", time.Hour, time.Hour, 2 * time.Hour, false, false, "shop/intruder, in its namespace, had no observed traffic"},
		{"2h of a 1h window", time.Hour, time.Hour, 2 * time.Hour, true, true, "passes the coverage gate"},
		{"30m of a 1h window", time.Hour, time.Hour, 30 * time.Minute, true, false, "less than the 1h required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := store.NewMem()
			now := time.Now().UTC()
			var spans []model.ObservedSpan
			for _, ep := range []struct{ ep, w string }{{"web-0", "shop/web"}, {"db-0", "shop/db"}, {"intruder-0", "shop/intruder"}} {
				spans = append(spans, model.ObservedSpan{Endpoint: ep.ep, Workload: ep.w, Start: now.Add(-tc.observed), End: now})
			}
			if err := mem.RecordObserved(spans); err != nil {
				t.Fatal(err)
			}
			edges := []model.Edge{shopEdge("web", "db", 5432, now.Add(-tc.observed/2))}
			if tc.intruderTalks {
				edges = append(edges, shopEdge("intruder", "web", 80, now.Add(-tc.observed/2)))
			}
			if err := mem.MergeEdges(edges); err != nil {
				t.Fatal(err)
			}
			c := &Controller{cfg: Config{Window: tc.window, MinObserved: tc.minObs, ProposeInterval: 30 * time.Second}}
			svc := controller.New(controller.Config{MinObserved: tc.minObs, ConvergeTimeout: time.Second}, mem, mem, controllertest.Shop(), &controllertest.Node{}, nil)
			inf, err := svc.Infer(tc.window, false)
			if err != nil {
				t.Fatal(err)
			}
			var db *proposal
			for _, p := range byWorkload(inf) {
				if p.workload == "shop/db" {
					db = &p
				}
			}
			if db == nil {
				t.Fatalf("no proposal for shop/db: %+v", inf.Report)
			}
			cond := c.settled("shop/db", inf.Report.Coverage, now)
			if (cond.Status == metav1.ConditionTrue) != tc.settled || !strings.Contains(cond.Message, tc.wantInCondition) {
				t.Errorf("Settled %s (%s): %s; want settled %v, a message with %q", cond.Status, cond.Reason, cond.Message, tc.settled, tc.wantInCondition)
			}
			// The promotion of that proposal, as the controller carries
			// it out (revision 0: the proposal becomes a revision).
			rev, _, err := svc.AdoptProposal("shop/db", db.policy, tc.window, time.Now(), "ops")
			if err != nil {
				t.Fatal(err)
			}
			_, err = svc.Promote(context.Background(), controller.PromoteRequest{Workload: "shop/db", To: model.ModeEnforce, Revision: rev.Number, Reason: "settled?"}, "ops")
			if refused := errors.Is(err, controller.ErrCoverage); refused == (cond.Status == metav1.ConditionTrue) || (err != nil && !refused) {
				t.Errorf("Settled %s, but promote to enforce without force: %v", cond.Status, err)
			}
		})
	}
}

// shopEdge is one successful connection from src to dst:port in the
// controllertest shop, first seen at, last a minute ago.
func shopEdge(src, dst string, port uint16, at time.Time) model.Edge {
	return model.Edge{Source: model.Peer{Namespace: "shop", Workload: src, Labels: map[string]string{"app": src}},
		Destination: model.Peer{Namespace: "shop", Workload: dst, Labels: map[string]string{"app": dst}},
		Protocol:    model.ProtocolTCP, Port: port,
		Traffic: model.Traffic{FirstSeen: at, LastSeen: time.Now().Add(-time.Minute), Flows: 1, Verdicts: model.VerdictCounts{Observed: 1}}}
}
