package controller_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/controller"
	"github.com/nanoseg/nanoseg/controller/controllertest"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
	"github.com/nanoseg/nanoseg/store"
)

// TestProposeRefusesUnsplittableWorkload: an endpoint whose namespace
// holds a '/' (a source that let a hostile label through) makes its
// "namespace/workload" key unsplittable; Propose answers an error naming
// it instead of panicking for every workload of the agent.
func TestProposeRefusesUnsplittableWorkload(t *testing.T) {
	eps := []model.Endpoint{
		{Netns: "evil-0", Path: "/run/netns/evil-0", Namespace: "<b>x</b>", Workload: "web", Labels: map[string]string{"app": "web"},
			Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.201")}},
		{Netns: "ok-0", Path: "/run/netns/ok-0", Namespace: "shop", Workload: "db", Labels: map[string]string{"app": "db"},
			Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.202")}},
	}
	inv := inventory.NewIndex(eps, map[string]map[string]string{"shop": {}, "<b>x</b>": {}}, nil)
	mem := store.NewMem()
	svc := controller.New(controller.Config{EvidenceDir: t.TempDir(), ConvergeTimeout: time.Second}, mem, mem, inv, &controllertest.Node{}, nil)
	_, err := svc.Propose(0, false, "alice")
	if err == nil || !strings.Contains(err.Error(), `"<b>x</b>/web"`) {
		t.Errorf("Propose = %v, want an error naming workload <b>x</b>/web", err)
	}
}
