//go:build linux

// Lab network plumbing.
//
// Design: the lab switch is a Linux bridge "br0" inside a namespace of its
// own (Plan.Switch), so the host's root namespace gets no new links. Each
// endpoint namespace gets a veth pair whose "eth0" end sits in the endpoint
// and whose other end (Endpoint.SwitchPort) is enslaved to br0. Every
// endpoint holds one IPv4 address with prefix length 15 and one IPv6
// address with prefix length 32, so the whole lab range is on-link and the
// kernel's connected routes are the only routes needed. IPv6 addresses skip
// duplicate address detection (IFA_F_NODAD): the plan guarantees
// uniqueness, and tests need the address at once. Sources: ip-link(8)
// (veth, bridge), ip-address(8) (nodad), network_namespaces(7).
package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nsenter"
)

// BridgeName is the lab switch's bridge inside Plan.Switch.
const BridgeName = "br0"

// EndpointLink is the name of an endpoint's interface.
const EndpointLink = "eth0"

// etcNetns is where iproute2 looks for per-namespace /etc files: `ip netns
// exec NAME` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
const etcNetns = "/etc/netns"

// RequireRoot returns an error that says plainly why the lab needs root.
func RequireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root: it creates network namespaces, veth links and bridges (CAP_SYS_ADMIN, CAP_NET_ADMIN); run it as root")
	}
	return nil
}

// Create builds the lab's namespaces and links for p and records p in the
// lab's state directory first, so that Down finds everything even if Create
// stops half-way. On error, everything Create made is removed again.
func Create(ctx context.Context, c Config, p *Plan, log *slog.Logger) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := RequireRoot(); err != nil {
		return err
	}
	dir := c.Dir(p.Lab)
	if err := os.MkdirAll(filepath.Join(dir, "stats"), 0o755); err != nil {
		return fmt.Errorf("create lab state: %w", err)
	}
	if err := writeJSON(filepath.Join(dir, planFile), p); err != nil {
		return fmt.Errorf("write lab plan: %w", err)
	}
	defer func() {
		if err != nil {
			if derr := Down(context.WithoutCancel(ctx), c, p.Lab, log); derr != nil {
				err = errors.Join(err, fmt.Errorf("clean up after failed create: %w", derr))
			}
		}
	}()
	sw, swnl, err := newNamespace(p.Switch)
	if err != nil {
		return err
	}
	defer sw.Close()
	defer swnl.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: BridgeName}}
	if err := swnl.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge in %s: %w", p.Switch, err)
	}
	if err := linkUp(swnl, BridgeName); err != nil {
		return err
	}
	for i, e := range p.Endpoints {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := createEndpoint(swnl, br, p, e); err != nil {
			return fmt.Errorf("endpoint %s: %w", e.ID(), err)
		}
		log.Debug("lab endpoint created", "endpoint", e.ID(), "netns", e.Netns, "ipv4", e.IPv4, "ipv6", e.IPv6)
		testPause(i + 1)
	}
	return nil
}

func createEndpoint(swnl *netlink.Handle, br *netlink.Bridge, p *Plan, e Endpoint) error {
	h, nl, err := newNamespace(e.Netns)
	if err != nil {
		return err
	}
	defer h.Close()
	defer nl.Close()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: e.SwitchPort, MasterIndex: br.Index},
		PeerName:      EndpointLink,
		PeerNamespace: netlink.NsFd(h),
	}
	if err := swnl.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s: %w", e.SwitchPort, err)
	}
	if err := linkUp(swnl, e.SwitchPort); err != nil {
		return err
	}
	l, err := nl.LinkByName(EndpointLink)
	if err != nil {
		return fmt.Errorf("find %s: %w", EndpointLink, err)
	}
	for _, a := range []*netlink.Addr{
		{IPNet: &net.IPNet{IP: e.IPv4.AsSlice(), Mask: net.CIDRMask(AllowedV4.Bits(), 32)}},
		{IPNet: &net.IPNet{IP: e.IPv6.AsSlice(), Mask: net.CIDRMask(AllowedV6.Bits(), 128)}, Flags: unix.IFA_F_NODAD},
	} {
		if err := nl.AddrAdd(l, a); err != nil {
			return fmt.Errorf("add address %s: %w", a.IPNet, err)
		}
	}
	if err := nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", EndpointLink, err)
	}
	// resolv.conf for `ip netns exec`, the way a container gets its resolver.
	rdir := filepath.Join(etcNetns, e.Netns)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", rdir, err)
	}
	conf := fmt.Sprintf("# written by nanoseg lab %s\nsearch %s.%s %s\nnameserver %s\nnameserver %s\n",
		p.Lab, e.Namespace, ClusterZone, ClusterZone, p.DNSv4, p.DNSv6)
	if err := os.WriteFile(filepath.Join(rdir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	return nil
}

// newNamespace creates the named namespace name with lo up and returns it
// with a netlink handle in it; the caller closes both.
func newNamespace(name string) (netns.NsHandle, *netlink.Handle, error) {
	h, err := nsenter.NewNamed(name)
	if err != nil {
		return h, nil, err
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return h, nil, fmt.Errorf("netlink in %s: %w", name, err)
	}
	if err := linkUp(nl, "lo"); err != nil {
		nl.Close()
		h.Close()
		return h, nil, err
	}
	return h, nl, nil
}

func linkUp(nl *netlink.Handle, name string) error {
	l, err := nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// Down removes everything lab name made: its processes (found by their
// command line, whether or not a pid file survived), its network
// namespaces (found by name prefix, whether or not the plan survived),
// their /etc/netns directories and the lab's state directory. Removing a lab
// that does not exist is not an error.
func Down(ctx context.Context, c Config, name string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := RequireRoot(); err != nil {
		return err
	}
	var errs []error
	if err := killProcesses(ctx, name, log); err != nil {
		errs = append(errs, err)
	}
	names, err := nsenter.ListNamed(labPrefix(name))
	if err != nil {
		errs = append(errs, err)
	}
	for _, n := range names {
		// Deleting the switch namespace takes the veth ends with it; the
		// endpoint namespaces go when their last holder is gone.
		if err := nsenter.DeleteNamed(n); err != nil {
			errs = append(errs, err)
		}
		log.Debug("lab netns removed", "netns", n)
	}
	ents, _ := os.ReadDir(etcNetns)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), labPrefix(name)) {
			if err := os.RemoveAll(filepath.Join(etcNetns, e.Name())); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", e.Name(), err))
			}
		}
	}
	if err := os.RemoveAll(c.Dir(name)); err != nil {
		errs = append(errs, fmt.Errorf("remove lab state: %w", err))
	}
	return errors.Join(errs...)
}

// openNetns opens the named namespace of the lab.
func openNetns(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(nsenter.Path(name))
	if err != nil {
		return netns.None(), fmt.Errorf("open netns %s: %w", name, err)
	}
	return h, nil
}
