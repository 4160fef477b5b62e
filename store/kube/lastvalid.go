package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	cnpv1alpha2 "github.com/nanoseg/nanoseg/policies/cnp/v1alpha2"
	"github.com/nanoseg/nanoseg/policies/v1alpha1"
)

// keptVersion is one object's last valid version as the keep file holds
// it: the object's identity (kind, namespace, name, uid) and the version
// (resourceVersion, and exactly one of the three objects).
type keptVersion struct {
	Kind            string                            `json:"kind"`
	Namespace       string                            `json:"namespace,omitempty"`
	Name            string                            `json:"name"`
	UID             types.UID                         `json:"uid"`
	ResourceVersion string                            `json:"resourceVersion"`
	NetworkPolicy   *networkingv1.NetworkPolicy       `json:"networkPolicy,omitempty"`
	NanoSegment     *v1alpha1.NanoSegment             `json:"nanoSegment,omitempty"`
	Cluster         *cnpv1alpha2.ClusterNetworkPolicy `json:"clusterNetworkPolicy,omitempty"`
}

// keepFile is the version of the keep file's format.
const keepFileVersion = 1

type keepFileJSON struct {
	Version  int           `json:"version"`
	Policies []keptVersion `json:"policies"`
}

// keeper writes the last valid versions to a file and read them back at
// the start: see PolicyWatcher.KeepLastValid.
type keeper struct {
	path string
	mu   sync.Mutex // serialises writes
	done uint64     // the newest snapshot written
}

// KeepLastValid makes the watcher keep the last valid version of every
// policy in force in the file at path (JSON, mode 0600, replaced
// atomically once the watcher has synced and after every change of what
// is in force), and start from
// the versions the file holds: when the first version of an object the
// watcher sees is refused (an invalid edit made while no watcher ran, or
// while this one restarted), the version the file holds for that object,
// the same uid, stays in force, as it would have without the restart.
// An object deleted or recreated (a new uid) in the meantime gets nothing
// from the file: deleting is how an operator withdraws a policy.
// Each kept version is validated again as a version from the API
// server is (a file of a build that checked less, or edited): one that
// fails, or whose kind is not the object's, is logged and not used.
//
// The node agent keeps the file in its owner directory (/run/nanoseg, a
// tmpfs of the host): it lives as long as the kernel's tables it speaks
// for, until the host restarts. Call before Run. A missing file is a
// first start; an unreadable or malformed one is logged and not used
// (the error is returned too, for the caller to report, but the watcher
// works on). Writes that fail are logged; the watcher keeps going.
func (w *PolicyWatcher) KeepLastValid(path string) error {
	w.keep = &keeper{path: path}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err == nil {
		var f keepFileJSON
		if err = json.Unmarshal(raw, &f); err == nil && f.Version != keepFileVersion {
			err = fmt.Errorf("version %d, this build reads %d", f.Version, keepFileVersion)
		}
		if err == nil {
			w.mu.Lock()
			skipped := 0
			for _, k := range f.Policies {
				a := applied{rv: k.ResourceVersion, uid: k.UID, np: k.NetworkPolicy, seg: k.NanoSegment, cnp: k.Cluster}
				if n := btoi(a.np != nil) + btoi(a.seg != nil) + btoi(a.cnp != nil); n != 1 || k.UID == "" {
					skipped++
					continue
				}
				if err := checkKept(k); err != nil {
					// A file written by a build that checked less, or
					// edited by hand: a version that fails this build's
					// checks is never put in force, as from the API.
					w.log.Error("a kept policy version fails validation; not used", "file", path, "kind", k.Kind,
						"namespace", k.Namespace, "name", k.Name, "resourceVersion", k.ResourceVersion, "error", err)
					skipped++
					continue
				}
				w.seed[objRef{k.Kind, k.Namespace, k.Name}] = a
			}
			n := len(w.seed)
			w.mu.Unlock()
			w.log.Info("last valid policy versions read", "file", path, "policies", n, "skipped", skipped)
			return nil
		}
	}
	err = fmt.Errorf("last valid policy versions %s: %w", path, err)
	w.log.Error("not using the kept last valid policy versions", "error", err)
	return err
}

// checkKept validates a kept version as the watcher validates one from
// the API server, and that it is of the kind the entry names.
func checkKept(k keptVersion) error {
	switch {
	case k.Kind == KindNetworkPolicy && k.NetworkPolicy != nil:
		return checkNetworkPolicy(k.NetworkPolicy)
	case k.Kind == KindNanoSegment && k.NanoSegment != nil:
		return checkNanoSegment(k.NanoSegment)
	case k.Kind == KindClusterNetworkPolicy && k.Cluster != nil:
		return CheckClusterNetworkPolicy(k.Cluster)
	}
	return fmt.Errorf("kind %q does not match the object kept", k.Kind)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// saveLocked snapshots what is in force for the keep file and returns a
// function that writes it (called without w.mu); nil without a keep
// file, and before the watcher has synced: the initial list would write
// the file once per object, each time with a partial set, and Run writes
// it whole once synced. w.mu is held.
func (w *PolicyWatcher) saveLocked() func() {
	if w.keep == nil || !w.keepSynced {
		return nil
	}
	w.keepSeq++
	seq := w.keepSeq
	f := keepFileJSON{Version: keepFileVersion, Policies: make([]keptVersion, 0, len(w.inForce))}
	for r, a := range w.inForce {
		f.Policies = append(f.Policies, keptVersion{Kind: r.kind, Namespace: r.namespace, Name: r.name, UID: a.uid,
			ResourceVersion: a.rv, NetworkPolicy: a.np, NanoSegment: a.seg, Cluster: a.cnp})
	}
	k := w.keep
	return func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		if seq <= k.done {
			return // a newer snapshot is written already
		}
		if err := writeAtomic(k.path, f); err != nil {
			w.log.Error("could not keep the last valid policy versions; a restart of this agent would not know them", "file", k.path, "error", err)
			return
		}
		k.done = seq
	}
}

// writeAtomic writes v as JSON to path through a temporary file in the
// same directory, renamed over path.
func writeAtomic(path string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
