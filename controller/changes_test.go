package controller_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// TestChangesCoalesce: any number of changes before a subscriber takes
// them are one wake-up and one merged set of topics; an unsubscribed
// reader gets nothing; the sink publishes non-empty edge and verdict
// commits only.
func TestChangesCoalesce(t *testing.T) {
	c := controller.NewChanges()
	sub := c.Subscribe()
	for range 3 {
		c.Publish(controller.TopicEdges)
	}
	c.Publish(controller.TopicHistory, controller.TopicStatus)
	if len(sub.C) != 1 {
		t.Errorf("%d wake-ups buffered, want 1", len(sub.C))
	}
	<-sub.C
	seq, topics := sub.Take()
	if seq != 4 || !slices.Equal(topics, []string{"edges", "history", "status"}) {
		t.Errorf("Take = %d %v, want 4 [edges history status]", seq, topics)
	}
	if _, topics := sub.Take(); len(topics) != 0 {
		t.Errorf("second Take = %v, want nothing", topics)
	}
	c.Unsubscribe(sub)
	c.Publish(controller.TopicEdges)
	if len(sub.C) != 0 || c.Seq() != 5 {
		t.Errorf("after Unsubscribe: %d wake-ups, seq %d", len(sub.C), c.Seq())
	}

	sub = c.Subscribe()
	mem := store.NewMem()
	sink := c.Sink(mem)
	if err := sink.MergeEdges(nil); err != nil {
		t.Fatal(err)
	}
	if err := sink.AddVerdicts(nil); err != nil {
		t.Fatal(err)
	}
	if err := sink.RecordObserved([]model.ObservedSpan{{Workload: "shop/db", Endpoint: "db-0", Start: time.Now(), End: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if _, topics := sub.Take(); len(topics) != 0 || c.Seq() != 5 {
		t.Errorf("empty commits and spans published %v (seq %d)", topics, c.Seq())
	}
	now := time.Now()
	if err := sink.AddVerdicts([]model.VerdictEvent{{At: now, Verdict: model.VerdictDeny, Source: "shop/web", Destination: "shop/db", Protocol: model.ProtocolTCP, Port: 5432}}); err != nil {
		t.Fatal(err)
	}
	if _, topics := sub.Take(); !slices.Equal(topics, []string{"status", "verdicts"}) {
		t.Errorf("a verdict commit published %v", topics)
	}
	if evs, _ := mem.Verdicts(time.Time{}); len(evs) != 1 {
		t.Errorf("the sink did not pass the verdict on: %v", evs)
	}
}
