//go:build linux

package kubelab_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nanoseg/nanoseg/internal/kubetest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/lab"
	"github.com/nanoseg/nanoseg/lab/kubelab"
)

// TestRegisterRunningLab (root): the plan of a lab whose namespaces exist
// registers pods whose podIPs are the addresses really configured in each
// replica's network namespace.
func TestRegisterRunningLab(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("kernel test: needs root to create the lab's network namespaces")
	}
	c := kubetest.Shared(t)
	ctx := ctxFor(t)
	var b [3]byte
	_, _ = rand.Read(b[:])
	name := "kl" + hex.EncodeToString(b[:])
	raw := []byte(strings.NewReplacer("name: mv\n", "name: "+name+"\n", "mv-", name+"-").Replace(twoNodes))
	p := plan(t, raw)
	cfg := lab.Config{StateDir: t.TempDir()}
	if err := lab.Create(ctx, cfg, p, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Down(context.Background(), cfg, name, nil) })
	running, err := lab.LoadPlan(cfg, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubelab.Register(ctx, c.Client, running); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kubelab.Unregister(context.Background(), c.Client, name) })
	for _, e := range running.Endpoints {
		pod, err := c.Client.CoreV1().Pods(e.Namespace).Get(ctx, kubelab.PodName(e), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod of %s: %v", e.ID(), err)
		}
		have := netnsAddrs(t, e.Netns)
		if len(pod.Status.PodIPs) != 2 {
			t.Errorf("%s podIPs %v, want IPv4 and IPv6", pod.Name, pod.Status.PodIPs)
		}
		for _, ip := range pod.Status.PodIPs {
			if !slices.Contains(have, netip.MustParseAddr(ip.IP)) {
				t.Errorf("%s has podIP %s, which its netns %s lacks (it has %v)", pod.Name, ip.IP, e.Netns, have)
			}
		}
	}
}

// netnsAddrs returns the global addresses configured in the named netns.
func netnsAddrs(t *testing.T, name string) []netip.Addr {
	t.Helper()
	h, err := netns.GetFromPath(nsenter.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap().IsGlobalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out
}
