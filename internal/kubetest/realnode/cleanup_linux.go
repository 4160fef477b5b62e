//go:build linux

package realnode

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// kubeChains are the chains kubelet makes in the host's iptables (and
// kube-proxy's canary), removed with the node.
var kubeChains = []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT", "KUBE-PROXY-CANARY",
	"KUBE-FORWARD", "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
	"KUBE-PROXY-FIREWALL", "KUBE-MARK-DROP"}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// runInput runs a command with stdin.
func runInput(stdin string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// netnsNames returns the names under /run/netns that containerd's CRI
// gives pod namespaces (cni-<uuid>).
func netnsNames() map[string]bool {
	ents, _ := os.ReadDir(netnsDir)
	names := map[string]bool{}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "cni-") {
			names[e.Name()] = true
		}
	}
	return names
}

// ownerPIDs returns the pids named by the directories and bridges that
// nodes made (live or not).
func ownerPIDs() []int {
	var pids []int
	add := func(s string) {
		if pid, err := strconv.Atoi(s); err == nil && pid > 0 && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	for _, root := range []string{runRoot, varRoot} {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			add(e.Name())
		}
	}
	if out, err := output("ip", "-o", "link", "show", "type", "bridge"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 1 {
				if name := strings.TrimSuffix(f[1], ":"); strings.HasPrefix(name, bridgeName) {
					add(strings.TrimPrefix(name, bridgeName))
				}
			}
		}
	}
	return pids
}

// Sweep removes what nodes of dead processes left: their daemons and
// containers, mounts, pod netns, bridges and tables, directories, and,
// when no node of a live process remains, the host chains, kube-proxy
// tables and kubepods cgroups. Start calls it; so may a script after a
// crash.
func Sweep() error {
	var errs []error
	live := false
	for _, pid := range ownerPIDs() {
		if alive(pid) {
			live = true
			continue
		}
		errs = append(errs, cleanup(pid, nil, false))
	}
	if !live {
		errs = append(errs, cleanupGlobal(nil), removeNewEmptyTables(nil))
	}
	return errors.Join(errs...)
}

// cleanup removes what the node of pid made. keep names pod netns that
// existed before the node started (never touched); global also removes the
// host-wide leftovers (the node was the only one).
func cleanup(pid int, keep map[string]bool, global bool) error {
	var errs []error
	runDir, varDir := filepath.Join(runRoot, strconv.Itoa(pid)), filepath.Join(varRoot, strconv.Itoa(pid))
	// Daemons and shims of a dead owner: their command lines name its dirs.
	for _, p := range pidsWhere(func(cmd string) bool {
		return strings.Contains(cmd, runDir+"/") || strings.Contains(cmd, varDir+"/")
	}) {
		_ = syscallKill(p)
	}
	if global {
		errs = append(errs, cleanupGlobal(keep))
	}
	errs = append(errs, unmountUnder(runDir, varDir))
	bridge := bridgeName + strconv.Itoa(pid)
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		errs = append(errs, run("ip", "link", "del", bridge))
	}
	if run("nft", "list", "table", "inet", nftTable+strconv.Itoa(pid)) == nil {
		errs = append(errs, run("nft", "delete", "table", "inet", nftTable+strconv.Itoa(pid)))
	}
	for _, d := range []string{runDir, varDir} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// cleanupGlobal removes the host-wide things a node makes: processes
// left in the kubepods cgroups and the cgroups, pod netns (cni-*, except
// those in keep and those a process still uses), the KUBE-* chains of
// the host's iptables, and kube-proxy's nftables tables.
func cleanupGlobal(keep map[string]bool) error {
	var errs []error
	killCgroups()
	errs = append(errs, removeCgroups())
	inUse := netnsInUse()
	for name := range netnsNames() {
		if keep[name] {
			continue
		}
		p := filepath.Join(netnsDir, name)
		if ino, err := inode(p); err == nil && inUse[ino] {
			continue
		}
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
		}
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		errs = append(errs, removeChains(ipt))
	}
	for _, fam := range []string{"ip", "ip6"} {
		if run("nft", "list", "table", fam, "kube-proxy") == nil {
			errs = append(errs, run("nft", "delete", "table", fam, "kube-proxy"))
		}
	}
	return errors.Join(errs...)
}

// removeChains deletes the rules that jump to kubeChains and the chains,
// in the filter, nat and mangle tables of ipt (iptables or ip6tables).
func removeChains(ipt string) error {
	var errs []error
	for _, table := range []string{"filter", "nat", "mangle"} {
		out, err := output(ipt, "-w", "-t", table, "-S")
		if err != nil {
			continue // table absent or tool missing: nothing of ours
		}
		var chains []string
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			if f[0] == "-N" && slices.Contains(kubeChains, f[1]) {
				chains = append(chains, f[1])
			}
			if f[0] == "-A" && !slices.Contains(kubeChains, f[1]) {
				for i := 2; i+1 < len(f); i++ {
					if (f[i] == "-j" || f[i] == "-g") && slices.Contains(kubeChains, f[i+1]) {
						args := append([]string{"-w", "-t", table, "-D"}, unquote(f[1:])...)
						errs = append(errs, run(ipt, args...))
						break
					}
				}
			}
		}
		for _, c := range chains {
			errs = append(errs, run(ipt, "-w", "-t", table, "-F", c))
		}
		for _, c := range chains {
			errs = append(errs, run(ipt, "-w", "-t", table, "-X", c))
		}
	}
	return errors.Join(errs...)
}

// unquote undoes iptables -S quoting of comments ("a b" spread over
// fields).
func unquote(f []string) []string {
	var out []string
	for i := 0; i < len(f); i++ {
		if strings.HasPrefix(f[i], `"`) {
			s := f[i]
			for !strings.HasSuffix(s, `"`) || len(s) == 1 {
				if i+1 >= len(f) {
					break
				}
				i++
				s += " " + f[i]
			}
			out = append(out, strings.Trim(s, `"`))
			continue
		}
		out = append(out, f[i])
	}
	return out
}

func inode(p string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// netnsInUse returns the inodes of the network namespaces of running
// processes.
func netnsInUse() map[uint64]bool {
	ents, _ := os.ReadDir("/proc")
	in := map[uint64]bool{}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		if ino, err := inode("/proc/" + e.Name() + "/ns/net"); err == nil {
			in[ino] = true
		}
	}
	return in
}

// unmountUnder detaches every mount at or below the given directories,
// deepest first.
func unmountUnder(dirs ...string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				points = append(points, mp)
				break
			}
		}
	}
	f.Close()
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount decodes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupRoots returns the kubepods cgroup of every mounted v1 hierarchy
// (and the v2 one, if kubelet used it).
func cgroupRoots() []string {
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	var roots []string
	for _, e := range ents {
		p := filepath.Join("/sys/fs/cgroup", e.Name(), "kubepods")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			roots = append(roots, p)
		}
	}
	if st, err := os.Stat("/sys/fs/cgroup/kubepods"); err == nil && st.IsDir() {
		roots = append(roots, "/sys/fs/cgroup/kubepods")
	}
	return roots
}

// killCgroups SIGKILLs every process in the kubepods cgroups (pods'
// containers left by a dead kubelet), for up to 5 s until none is left.
func killCgroups() {
	deadline := time.Now().Add(5 * time.Second)
	for {
		found := false
		for _, root := range cgroupRoots() {
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				raw, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				for _, s := range strings.Fields(string(raw)) {
					if pid, err := strconv.Atoi(s); err == nil {
						found = true
						_ = syscallKill(pid)
					}
				}
				return nil
			})
		}
		if !found || time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCgroups removes the kubepods cgroups, deepest first (a cgroup
// goes once its processes have exited: retried for up to 5 s).
func removeCgroups() error {
	var errs []error
	for _, root := range cgroupRoots() {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
		for _, d := range dirs {
			var err error
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) || time.Now().After(deadline) {
					break
				}
			}
			if err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}

// nftTables returns the host's nftables tables as "family name".
func nftTables() map[string]bool {
	out, err := output("nft", "list", "tables")
	tables := map[string]bool{}
	if err != nil {
		return tables
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			tables[f[1]+" "+f[2]] = true
		}
	}
	return tables
}

// removeNewEmptyTables deletes the iptables-nft tables (filter, nat,
// mangle of ip and ip6) that appeared since before (kubelet's iptables
// calls create them; nil: whenever they appeared) and hold no rule and
// no chain whose policy is not accept: deleting them changes nothing.
func removeNewEmptyTables(before map[string]bool) error {
	var errs []error
	for t := range nftTables() {
		f := strings.Fields(t)
		if before[t] || (f[0] != "ip" && f[0] != "ip6") || !slices.Contains([]string{"filter", "nat", "mangle"}, f[1]) {
			continue
		}
		out, err := output("nft", "-a", "list", "table", f[0], f[1])
		if err != nil || hasRule(out) {
			continue
		}
		errs = append(errs, run("nft", "delete", "table", f[0], f[1]))
	}
	return errors.Join(errs...)
}

// hasRule reports whether an `nft -a list table` output has a rule (a
// line with a handle other than a table or chain header) or a chain
// policy other than accept.
func hasRule(listing string) bool {
	for _, line := range strings.Split(listing, "\n") {
		l := strings.TrimSpace(line)
		if strings.Contains(l, "# handle") && !strings.HasPrefix(l, "chain ") && !strings.HasPrefix(l, "table ") {
			return true
		}
		if strings.Contains(l, "policy ") && !strings.Contains(l, "policy accept;") {
			return true
		}
	}
	return false
}
