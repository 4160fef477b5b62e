//go:build linux

// Package nsenter runs code inside a network namespace without moving the
// rest of the process there.
//
// Design: a Linux network namespace is a property of an OS thread, and a
// socket belongs for its whole life to the namespace of the thread that
// created it. Do therefore runs fn on a fresh goroutine locked to its OS
// thread, switches that thread with setns(2), and switches it back before
// unlocking. If the thread cannot be switched back it is never unlocked, so
// the Go runtime terminates it with its goroutine instead of reusing a thread
// that sits in the wrong namespace. Sources: setns(2), network_namespaces(7),
// runtime.LockOSThread.
package nsenter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir is where named network namespaces are bind-mounted, the same
// directory iproute2's `ip netns` uses, so `ip netns exec NAME` works on them.
const RunDir = "/run/netns"

// Path returns the bind-mount path of the named network namespace name.
func Path(name string) string { return filepath.Join(RunDir, name) }

// Do runs fn with the calling OS thread inside the network namespace h.
// Sockets that fn opens stay in h after Do returns. It returns fn's error, or
// an error wrapping the setns failure if the thread could not enter h.
func Do(h netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: the runtime discards it when this
			// goroutine exits.
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ensureRunDir makes RunDir a shared mount point of its own, as iproute2's
// `ip netns add` does. Without it, the first `ip netns add` on the machine
// bind-mounts RunDir over itself and hides every namespace mounted before,
// which then can no longer be unmounted by path (the remove fails with
// EBUSY). Source: iproute2 ip/ipnetns.c (netns_add), mount(2) MS_SHARED.
func ensureRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", RunDir, err)
	}
	if isMountPoint(RunDir) {
		return nil
	}
	if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s: %w", RunDir, err)
	}
	if err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", RunDir, err)
	}
	return nil
}

// isMountPoint reports whether dir is the mount point of a mount in this
// process's mount namespace (/proc/self/mountinfo, field 5).
func isMountPoint(dir string) bool {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// NewNamed creates a network namespace bind-mounted at Path(name) and
// returns an open handle to it; the caller closes the handle. The calling
// thread's namespace is unchanged. It fails if the name exists already.
func NewNamed(name string) (netns.NsHandle, error) {
	if _, err := os.Stat(Path(name)); err == nil {
		return netns.None(), fmt.Errorf("create netns %s: %w", name, os.ErrExist)
	}
	if err := ensureRunDir(); err != nil {
		return netns.None(), err
	}
	type result struct {
		h   netns.NsHandle
		err error
	}
	rc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			rc <- result{netns.None(), fmt.Errorf("get current netns: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name) // unshares: this thread is now in h
		if err != nil {
			if serr := netns.Set(orig); serr != nil {
				rc <- result{netns.None(), fmt.Errorf("create netns %s: %w", name, err)}
				return
			}
			runtime.UnlockOSThread()
			rc <- result{netns.None(), fmt.Errorf("create netns %s: %w", name, err)}
			return
		}
		if err := netns.Set(orig); err != nil {
			rc <- result{h, fmt.Errorf("restore netns after creating %s: %w", name, err)}
			return
		}
		runtime.UnlockOSThread()
		rc <- result{h, nil}
	}()
	r := <-rc
	return r.h, r.err
}

// DeleteNamed unmounts and removes the named network namespace. The
// namespace itself lives on while a process or socket still holds it.
// A name that does not exist is not an error.
func DeleteNamed(name string) error {
	if _, err := os.Stat(Path(name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	// Unmount until nothing is mounted there: when /run/netns is a shared
	// mount (iproute2 makes it one), a namespace can be mounted on the file
	// more than once. EINVAL ends the loop: the file is no mount point (also
	// after a crash between creating the file and bind-mounting it).
	for i := 0; i < 8; i++ {
		err := unix.Unmount(Path(name), unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("unmount netns %s: %w", name, err)
		}
	}
	if err := os.Remove(Path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// ListNamed returns the names of the named network namespaces whose name
// starts with prefix, in directory order.
func ListNamed(prefix string) ([]string, error) {
	ents, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", RunDir, err)
	}
	var out []string
	for _, e := range ents {
		if len(e.Name()) >= len(prefix) && e.Name()[:len(prefix)] == prefix {
			out = append(out, e.Name())
		}
	}
	return out, nil
}
