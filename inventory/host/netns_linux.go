//go:build linux

package host

// Named network namespaces: which endpoints exist (their bind mount under
// /run/netns), which addresses they hold, and an inotify watch on
// /run/netns so that a new endpoint is picked up within milliseconds.
// Sources: ip-netns(8) (the /run/netns convention), inotify(7).

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/inventory"
	"github.com/nanoseg/nanoseg/model"
)

// NetnsSource wraps a source whose endpoints are named network namespaces:
// List keeps the endpoints whose netns exists, with the inode of the
// namespace mounted at their path (a namespace deleted and created again
// under one name is a new endpoint), and Watch also notifies as soon as a
// namespace appears or disappears under /run/netns (inotify, coalesced over
// 50 ms).
type NetnsSource struct {
	inventory.Source
}

// List implements inventory.Source.
func (s NetnsSource) List(ctx context.Context) (inventory.Snapshot, error) {
	snap, err := s.Source.List(ctx)
	if err != nil {
		return snap, err
	}
	snap.Endpoints = presentEndpoints(snap.Endpoints)
	return snap, nil
}

// Watch implements inventory.Source. Failing to watch /run/netns is an error; the
// wrapped source's own watch keeps running until ctx ends.
func (s NetnsSource) Watch(ctx context.Context, notify func()) error {
	inner := make(chan error, 1)
	go func() { inner <- s.Source.Watch(ctx, notify) }()
	err := watchNetns(ctx, notify)
	if err != nil {
		return err
	}
	return <-inner
}

func watchNetns(ctx context.Context, notify func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch network namespaces: %w", err)
	}
	defer w.Close()
	if err := w.Add(nsenter.RunDir); err != nil {
		return fmt.Errorf("watch network namespaces in %s: %w", nsenter.RunDir, err)
	}
	var pending <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op&(fsnotify.Create|fsnotify.Remove) != 0 && pending == nil {
				pending = time.After(50 * time.Millisecond)
			}
		case _, ok := <-w.Errors:
			if !ok {
				return nil
			}
		case <-pending:
			pending = nil
			notify()
		}
	}
}

// NetnsAddrs reads the global unicast addresses of the netns at path.
func NetnsAddrs(path string) ([]netip.Addr, error) {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", path, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer nl.Close()
	addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses in %s: %w", path, err)
	}
	var out []netip.Addr
	for _, ad := range addrs {
		if a, ok := netip.AddrFromSlice(ad.IP); ok && a.Unmap().IsGlobalUnicast() {
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}

// presentEndpoints keeps the endpoints whose netns exists, with the inode
// of the namespace mounted at their path.
func presentEndpoints(eps []model.Endpoint) []model.Endpoint {
	var out []model.Endpoint
	for _, e := range eps {
		var st unix.Stat_t
		if err := unix.Stat(e.Path, &st); err == nil {
			e.NetnsInode = st.Ino
			out = append(out, e)
		}
	}
	return out
}
