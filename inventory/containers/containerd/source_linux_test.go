//go:build linux

package containerd_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/inventory/containers"
	"github.com/nanoseg/nanoseg/model"
)

// TestSourceOverContainerd runs containers in a containerd of the test's
// own and lists them through containers.Source, the agent's inventory,
// with the runtime opened from its URI as the agent's --containers flag
// gives it: the compose service's two containers sharing a netns the test
// addressed are one endpoint with that address, namespace and workload
// from the compose labels and the published ports; a container with a
// netns of its own is another; a host-network container is a note, not
// an endpoint.
func TestSourceOverContainerd(t *testing.T) {
	d := startContainerd(t)
	netns := nettest.New(t)
	nl := netns.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	v6 := netip.MustParsePrefix("2001:db8:66::2/64")
	for _, p := range []netip.Prefix{webAddr, v6} {
		if err := nl.AddrAdd(lo, nettest.Addr(p)); err != nil {
			t.Fatal(err)
		}
	}
	d.importImage(t)
	rt, err := containers.Open("containerd://" + d.Sock + "?namespace=" + testNS)
	if err != nil {
		t.Fatalf("containers.Open: %v", err)
	}
	const ports = `[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":"0.0.0.0"}]`
	d.run(t, "web", []string{"--with-ns", "network:" + netns.Path(), "--label", "nerdctl/name=shop-web-1", "--label", "nerdctl/ports=" + ports,
		"--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=web"}, "sleep", "600")
	d.run(t, "side", []string{"--with-ns", "network:" + netns.Path(), "--label", "nerdctl/name=shop-web-side",
		"--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=side"}, "sleep", "600")
	d.run(t, "own", []string{"--label", "nerdctl/name=lonely"}, "sleep", "600")
	d.run(t, "host", []string{"--net-host", "--label", "nerdctl/name=hostnet"}, "sleep", "600")

	src := containers.NewSource(nil, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	snap, err := src.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var web, own *model.Endpoint
	for i, e := range snap.Endpoints {
		switch {
		case e.Path == netns.Path():
			web = &snap.Endpoints[i]
		case strings.HasPrefix(e.Path, "/proc/"):
			own = &snap.Endpoints[i]
		}
	}
	if len(snap.Endpoints) != 2 || web == nil || own == nil {
		t.Fatalf("endpoints = %+v; want two: the shared netns %s and own's", snap.Endpoints, netns.Path())
	}
	wantAddrs := []netip.Addr{webAddr.Addr(), v6.Addr()}
	if !sameAddrs(web.Addrs, wantAddrs) || web.Namespace != "shop" || web.Workload != "web" ||
		!slices.Equal(web.Ports, []model.ContainerPort{{Port: 80, Protocol: model.ProtocolTCP}}) {
		t.Errorf("web's endpoint = %+v; want addresses %v, shop/web, port 80/TCP", *web, wantAddrs)
	}
	if len(own.Addrs) != 0 || !strings.Contains(fmt.Sprint(own.Labels, own.Workload), "lonely") {
		t.Errorf("own's endpoint = %+v; want no addresses (only lo, down) and its name", *own)
	}
	notes := src.Notes()
	if !slices.ContainsFunc(notes, func(n containers.Note) bool {
		return n.Container == "hostnet" && strings.Contains(n.Reason, "host's network")
	}) {
		t.Errorf("notes = %+v; want one saying hostnet is on the host's network", notes)
	}
	t.Logf("endpoints: %+v\nnotes: %+v", snap.Endpoints, notes)
}

func sameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}
