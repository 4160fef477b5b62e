//go:build linux

package node

// One owner per network namespace on a host, whatever inventory source
// named it (a lab, a labels file, a named netns, a /proc/PID/ns/net path).
//
// Design: before a node observes or programs an endpoint it takes an
// exclusive flock(2) on an owner file named after the identity of the
// namespace (the device and inode of the nsfs file its path opens), in a
// directory every agent of the host shares (DefaultOwnerDir). The file
// holds who the owner is (pid, a description, the path it used, since
// when), so a refused node names it. The kernel drops the lock when the
// owner exits, also on kill -9, so a stale file never blocks anyone; the
// owner removes the file while still holding the lock when it lets the
// endpoint go, and a node that locked a file checks that the path still
// names that file (else an owner removed it meanwhile and it retries), so
// two nodes can never both hold a lock on what the path names.
//
// Why not a mark inside the table (a comment or the table's userdata
// naming the owner): it outlives its owner (a kill -9 leaves it, and a
// liveness check by pid is wrong across pid reuse and pid namespaces), a
// namespace without a table yet has no mark, and checking and writing it
// are two steps another agent can interleave. nftables' own table
// ownership (NFT_TABLE_F_OWNER) removes the table when the owning socket
// closes, a window without enforcement on every restart.
//
// Sources: flock(2) (locks belong to the open file description and go with
// the process), namespaces(7) (the device and inode number identify a
// namespace), ip-netns(8).

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultOwnerDir holds the owner files of every endpoint netns managed on
// the host. It must be the same for every agent of the host (a tmpfs:
// namespaces do not outlive a boot either).
const DefaultOwnerDir = "/run/nanoseg/owners"

// ErrOwned is wrapped by the error of a netns another owner manages.
var ErrOwned = errors.New("managed by another nanoseg agent")

// OwnedError says who owns a netns a node was refused.
type OwnedError struct {
	Netns string // the refused endpoint's netns name
	Owner Owner  // the owner, as its owner file says
}

func (e *OwnedError) Error() string {
	o := e.Owner
	if o.PID == 0 {
		return fmt.Sprintf("netns %s: %v (owner not recorded yet)", e.Netns, ErrOwned)
	}
	s := fmt.Sprintf("netns %s: %v: pid %d", e.Netns, ErrOwned, o.PID)
	if o.Who != "" {
		s += ", " + o.Who
	}
	if o.Netns != "" {
		s += ", as " + o.Netns
	}
	if !o.Since.IsZero() {
		s += ", since " + o.Since.Format(time.RFC3339)
	}
	return s + "; stop one of the two agents or remove the endpoint from one inventory"
}

func (e *OwnedError) Unwrap() error { return ErrOwned }

// Owner is the content of an owner file.
type Owner struct {
	PID   int       `json:"pid"`
	Who   string    `json:"who,omitempty"`   // e.g. "socket /run/nanoseg/agent.sock, state file /var/lib/nanoseg/state.db"
	Netns string    `json:"netns,omitempty"` // the path the owner opens the namespace by
	Since time.Time `json:"since"`
}

// owners holds one node's claims. Not safe for concurrent use; the node
// serialises calls.
type owners struct {
	dir  string
	who  string
	held map[string]*os.File // by netns name
}

func newOwners(dir, who string) *owners {
	return &owners{dir: dir, who: who, held: map[string]*os.File{}}
}

// file returns the owner file of the namespace at nsPath.
func (o *owners) file(nsPath string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(nsPath, &st); err != nil {
		return "", fmt.Errorf("stat netns %s: %w", nsPath, err)
	}
	return filepath.Join(o.dir, fmt.Sprintf("netns-%d-%d.owner", st.Dev, st.Ino)), nil
}

// claim makes this node the owner of endpoint name (netns at nsPath), or
// returns an *OwnedError naming the owner, or another error when the
// owner file cannot be used. Claiming a held endpoint again is a no-op.
func (o *owners) claim(name, nsPath string) error {
	if _, ok := o.held[name]; ok {
		return nil
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("claim netns %s: %w", name, err)
	}
	path, err := o.file(nsPath)
	if err != nil {
		return fmt.Errorf("claim netns %s: %w", name, err)
	}
	for range 5 {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return fmt.Errorf("claim netns %s: %w", name, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				oe := &OwnedError{Netns: name}
				if raw, err := os.ReadFile(path); err == nil {
					_ = json.Unmarshal(raw, &oe.Owner)
				}
				return oe
			}
			return fmt.Errorf("claim netns %s: lock %s: %w", name, path, err)
		}
		// The previous owner may have removed the file between our open
		// and our lock: then the lock is on a file nobody else will see.
		var fst, pst unix.Stat_t
		if unix.Fstat(int(f.Fd()), &fst) != nil || unix.Stat(path, &pst) != nil || fst.Ino != pst.Ino || fst.Dev != pst.Dev {
			f.Close()
			continue
		}
		raw, _ := json.Marshal(Owner{PID: os.Getpid(), Who: o.who, Netns: nsPath, Since: time.Now().UTC().Truncate(time.Second)})
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt(append(raw, '\n'), 0)
		}
		if err != nil {
			_ = os.Remove(path)
			f.Close()
			return fmt.Errorf("claim netns %s: write %s: %w", name, path, err)
		}
		o.held[name] = f
		return nil
	}
	return fmt.Errorf("claim netns %s: owner file %s keeps being replaced", name, path)
}

// sweep removes the owner files nobody holds: those of agents that died
// without releasing (kill -9) and of namespaces gone since. A file is
// removed only while this node holds its lock, and claim re-checks the
// path after locking, so a claim racing the sweep retries on a new file.
// It returns how many files it removed.
func (o *owners) sweep() int {
	ents, err := os.ReadDir(o.dir)
	if err != nil {
		return 0
	}
	held := map[string]bool{}
	for _, f := range o.held {
		held[f.Name()] = true
	}
	removed := 0
	for _, e := range ents {
		path := filepath.Join(o.dir, e.Name())
		if !strings.HasSuffix(e.Name(), ".owner") || held[path] {
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			var fst, pst unix.Stat_t
			if unix.Fstat(int(f.Fd()), &fst) == nil && unix.Stat(path, &pst) == nil && fst.Ino == pst.Ino && fst.Dev == pst.Dev {
				if os.Remove(path) == nil {
					removed++
				}
			}
		}
		f.Close()
	}
	return removed
}

// owns reports whether this node holds endpoint name.
func (o *owners) owns(name string) bool {
	_, ok := o.held[name]
	return ok
}

// release lets endpoint name go: the owner file is removed while the lock
// is still held, then closed.
func (o *owners) release(name string) {
	f, ok := o.held[name]
	if !ok {
		return
	}
	delete(o.held, name)
	_ = os.Remove(f.Name())
	f.Close()
}

// releaseAll lets every endpoint go.
func (o *owners) releaseAll() {
	for name := range o.held {
		o.release(name)
	}
}
