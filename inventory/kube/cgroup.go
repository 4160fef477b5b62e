package kube

// Which pod a process belongs to, from its cgroup: kubelet puts every
// container of a pod, its sandbox (pause) included, under the pod's own
// cgroup, named after the pod's UID, below the kubepods cgroup it owns.
// The container runtime creates the sandbox's network namespace, and its
// first process is that sandbox, so the processes of a pod's network
// namespace name the pod by its UID long before kubelet posts the pod's
// addresses (status.podIPs).
//
// The two cgroup drivers write the pod cgroup differently
// (kubelet's pkg/kubelet/cm/cgroup_manager_linux.go, documented at
// https://kubernetes.io/docs/setup/production-environment/container-runtimes/#cgroup-drivers):
//
//	cgroupfs: /kubepods/<qos>/pod<uid>/<container>   (<qos> absent for Guaranteed)
//	systemd:  /kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid with _ for ->.slice/cri-containerd-<id>.scope
//
// Each line of /proc/PID/cgroup (cgroups(7)) is "id:controllers:path"; on
// cgroup v1 one line per hierarchy, on v2 one line "0::path". A reader in
// another cgroup namespace (a container with a private cgroupns) sees the
// path relative to its own root ("/../../kubepods/…"), which still names
// the pod. A process counts as a pod's only when a line's path has a
// kubepods segment followed by the pod segment, and every such line names
// the same UID: anything else is no identity (never guessed).

import (
	"strings"
)

// CgroupPod is what a process's /proc/PID/cgroup says about the pod it
// belongs to.
type CgroupPod struct {
	// UID is the pod's UID (the Pod's metadata.uid, or a static pod's
	// config hash, which its mirror pod carries in the
	// kubernetes.io/config.mirror annotation); "" when none or when lines
	// disagree.
	UID string
	// Kubepods says a line's path lies below a kubepods cgroup: the
	// process is kubelet's (a pod's), even if UID is "".
	Kubepods bool
}

// PodOfCgroup parses the content of a /proc/PID/cgroup file.
func PodOfCgroup(content string) CgroupPod {
	var out CgroupPod
	conflict := false
	for line := range strings.SplitSeq(content, "\n") {
		// id:controllers:path; the path may itself contain colons.
		_, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		_, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		kube, uid := podOfPath(path)
		if !kube {
			continue
		}
		out.Kubepods = true
		switch {
		case uid == "":
		case out.UID == "":
			out.UID = uid
		case out.UID != uid:
			conflict = true
		}
	}
	if conflict {
		out.UID = ""
	}
	return out
}

// podOfPath returns whether a cgroup path lies below a kubepods cgroup,
// and the pod UID its pod segment names ("" when it has none).
func podOfPath(path string) (kubepods bool, uid string) {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s == "kubepods" || s == "kubepods.slice" {
			kubepods = true
			for _, t := range segs[i+1:] {
				if u := podSegment(t); u != "" {
					return true, u
				}
			}
			return true, ""
		}
	}
	return false, ""
}

// podSegment returns the UID a pod cgroup segment names: "pod<uid>"
// (cgroupfs) or "kubepods[-<qos>]-pod<uid, _ for ->.slice" (systemd); ""
// for any other segment.
func podSegment(s string) string {
	if u, ok := strings.CutPrefix(s, "pod"); ok && isUID(u) {
		return u
	}
	if !strings.HasPrefix(s, "kubepods-") || !strings.HasSuffix(s, ".slice") {
		return ""
	}
	i := strings.LastIndex(s, "-pod")
	if i < 0 {
		return ""
	}
	u := strings.ReplaceAll(strings.TrimSuffix(s[i+len("-pod"):], ".slice"), "_", "-")
	if !isUID(u) {
		return ""
	}
	return u
}

// isUID reports whether s looks like a pod UID: a UUID in its textual
// form (8-4-4-4-12 hexadecimal digits), or a static pod's config hash (32
// hexadecimal digits, kubelet's pkg/kubelet/config hashing).
func isUID(s string) bool {
	switch len(s) {
	case 36:
		for i, c := range s {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				if c != '-' {
					return false
				}
			} else if !isHex(c) {
				return false
			}
		}
		return true
	case 32:
		for _, c := range s {
			if !isHex(c) {
				return false
			}
		}
		return true
	}
	return false
}

func isHex(c rune) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// IsCRINetnsName reports whether name is the name containerd's CRI plugin
// gives the pod network namespaces it bind mounts under /var/run/netns:
// "cni-" and a random UUID (containerd's pkg/netns). Such a namespace is a
// pod sandbox's before any process runs in it.
func IsCRINetnsName(name string) bool {
	u, ok := strings.CutPrefix(name, "cni-")
	return ok && len(u) == 36 && isUID(u)
}
