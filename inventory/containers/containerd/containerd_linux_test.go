//go:build linux

package containerd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	ctrdtest "github.com/nanoseg/nanoseg/internal/ctrtest/containerd"
	"github.com/nanoseg/nanoseg/internal/kubetest/realnode"
	"github.com/nanoseg/nanoseg/internal/nettest"
	"github.com/nanoseg/nanoseg/internal/nsenter"
	"github.com/nanoseg/nanoseg/inventory/containers"
	"github.com/nanoseg/nanoseg/inventory/containers/containerd"
	"github.com/nanoseg/nanoseg/model"
)

// The test's containerd (internal/ctrtest/containerd): its directory
// under os.TempDir() is named <dirPrefix><test pid>-<random>; the
// containers' cgroups are <that directory's name>-<container id>.
const (
	dirPrefix = "nanoseg-ctrdtest-"
	// testNS is the containerd namespace the containers are made in.
	testNS = "nanoseg-test"
	// image is the test image: Debian's busybox-static.
	image = "nanoseg.test/busybox:1"
)

// webAddr is the address of the shared netns ("web" and "side"): a /24 no
// other test uses.
var webAddr = netip.MustParsePrefix("198.18.66.2/24")

// daemon is the test's containerd with this test's container helpers.
type daemon struct{ *ctrdtest.Daemon }

// startContainerd starts the test's containerd (ctrdtest.Start, with the
// aufs, btrfs, zfs and devmapper snapshotters off as well) in testNS. It
// skips unless root with containerd, ctr, runc, the runc v2 shim and
// busybox-static installed.
func startContainerd(t *testing.T) daemon {
	t.Helper()
	nettest.RequireRoot(t)
	if _, err := exec.LookPath("/bin/busybox"); err != nil {
		t.Skipf("no /bin/busybox installed (Debian: busybox-static): %v", err)
	}
	return daemon{ctrdtest.Start(t, ctrdtest.Config{Prefix: dirPrefix, Namespace: testNS,
		DisabledPlugins: []string{"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
			"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"}})}
}

// run starts container id of the test image detached, with extra ctr run
// flags, running cmd.
func (d daemon) run(t *testing.T, id string, flags []string, cmd ...string) {
	t.Helper()
	d.IDs = append(d.IDs, id)
	args := append([]string{"run", "-d", "--cgroup", d.Cgroup(id), "--runc-root", d.RuncRoot()}, flags...)
	d.Ctr(t, append(append(args, image, id), cmd...)...)
}

// kill kills container id's task (SIGKILL).
func (d daemon) kill(t *testing.T, id string) {
	t.Helper()
	d.Ctr(t, "task", "kill", "-s", "SIGKILL", id)
}

// deleteContainer deletes container id with its (stopped) task.
func (d daemon) deleteContainer(t *testing.T, id string) {
	t.Helper()
	if out, err := d.TryCtr("task", "delete", "-f", id); err != nil && !strings.Contains(out, "not found") {
		t.Fatalf("ctr task delete %s: %v\n%s", id, err, out)
	}
	d.Ctr(t, "container", "delete", id)
}

// importImage writes the test image (busybox-static with sh and sleep)
// as a docker archive and imports it with `ctr image import`, as a person
// without a registry would.
func (d daemon) importImage(t *testing.T) {
	t.Helper()
	img := realnode.Image{Tags: []string{image}, Env: []string{"PATH=/bin"}, Cmd: []string{"sh"},
		Files: []realnode.File{{Path: "bin/busybox", Source: "/bin/busybox", Mode: 0o755},
			{Path: "bin/sh", Link: "busybox"}, {Path: "bin/sleep", Link: "busybox"}}}
	archive, err := img.Archive()
	if err != nil {
		t.Fatal(err)
	}
	d.Ctr(t, "image", "import", archive)
}

// watcher runs rt.Watch in the background and counts its notifications.
type watcher struct {
	notified chan struct{} // one pending wake-up
	done     chan error    // Watch's result
}

func watch(t *testing.T, ctx context.Context, rt containers.Runtime) *watcher {
	w := &watcher{notified: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		w.done <- rt.Watch(ctx, func() {
			select {
			case w.notified <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-w.notified: // Watch notifies once when subscribed
	case err := <-w.done:
		t.Fatalf("Watch returned at once: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not notify at its start within 10s")
	}
	return w
}

// drain forgets notifications of earlier changes.
func (w *watcher) drain() {
	select {
	case <-w.notified:
	default:
	}
}

// await waits for notifications until, listed after one, the containers
// satisfy ok (so what is asserted is that Watch fired on the change, not
// that polling saw it); it fails the test after 20 s.
func (w *watcher) await(t *testing.T, rt containers.Runtime, what string, ok func(map[string]containers.Container) bool) map[string]containers.Container {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case <-w.notified:
		case err := <-w.done:
			t.Fatalf("%s: Watch returned: %v", what, err)
		case <-timeout:
			t.Fatalf("%s: no notification after which Containers showed it within 20s", what)
		}
		byID := list(t, rt)
		if ok(byID) {
			return byID
		}
	}
}

// list returns rt's containers by ID.
func list(t *testing.T, rt containers.Runtime) map[string]containers.Container {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := rt.Containers(ctx)
	if err != nil {
		t.Fatalf("Containers: %v", err)
	}
	byID := map[string]containers.Container{}
	for _, c := range cs {
		byID[c.ID] = c
	}
	return byID
}

func running(ids ...string) func(map[string]containers.Container) bool {
	return func(cs map[string]containers.Container) bool {
		for _, id := range ids {
			if !cs[id].Running || cs[id].Pid == 0 {
				return false
			}
		}
		return true
	}
}

// TestContainersOfARealContainerd runs containers with Debian's ctr in a
// containerd of the test's own and checks what the runtime reports and
// when Watch fires:
//   - web runs in a netns the test made (198.18.66.2 on its lo),
//     side joins the same netns by its path, own has a netns of its own,
//     joiner joins own's by /proc/<pid>/ns/net, host runs on the host's
//     network, idle is a container without a task;
//   - Containers gives each its Running, Pid, NetnsPath, Name (nerdctl's
//     name label), labels, image and ports (nerdctl's ports label),
//     HostNetwork for host, and NetnsOf for the joiners (web for side,
//     own for joiner);
//   - a container whose netns bind mount is deleted while it runs is
//     reported in its process's netns; a paused container stays running; a restarted one (task deleted,
//     started again) is running with a new pid in the same netns;
//   - Watch fires on start, on kill (task exit) and on delete (task, then
//     container), and a deleted container is gone; it returns an error
//     wrapping ErrUnreachable when containerd stops, and so does
//     Containers.
func TestContainersOfARealContainerd(t *testing.T) {
	d := startContainerd(t)
	netns := nettest.New(t)
	nl := netns.Netlink(t)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.AddrAdd(lo, nettest.Addr(webAddr)); err != nil {
		t.Fatal(err)
	}
	d.importImage(t)

	rtI, err := containerd.New("unix://"+d.Sock, testNS)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rt := rtI
	t.Cleanup(func() { _ = rtI.(io.Closer).Close() })
	if want := "containerd unix://" + d.Sock + " namespace " + testNS; rt.Name() != want {
		t.Errorf("Name() = %q, want %q", rt.Name(), want)
	}
	version, err := rt.(interface {
		Version(context.Context) (string, error)
	}).Version(context.Background())
	if want := d.Ctr(t, "version"); err != nil || version == "" || !strings.Contains(want, "Version:  "+version+"\n") {
		t.Errorf("Version() = %q, %v; want the server's of `ctr version`:\n%s", version, err, want)
	}
	if cs := list(t, rt); len(cs) != 0 {
		t.Fatalf("Containers of a fresh namespace = %v, want none", cs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := watch(t, ctx, rt)

	const ports = `[{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":"0.0.0.0"},` +
		`{"HostPort":8080,"ContainerPort":80,"Protocol":"tcp","HostIP":"::"},{"HostPort":5353,"ContainerPort":53,"Protocol":"udp","HostIP":"0.0.0.0"}]`
	w.drain()
	d.run(t, "web", []string{"--with-ns", "network:" + netns.Path(),
		"--label", "nerdctl/name=shop-web-1", "--label", "nerdctl/ports=" + ports,
		"--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=web"}, "sleep", "600")
	w.await(t, rt, "web started", running("web"))

	d.run(t, "side", []string{"--with-ns", "network:" + netns.Path(), "--label", "nerdctl/name=shop-side-1"}, "sleep", "600")
	d.run(t, "own", nil, "sleep", "600")
	d.run(t, "host", []string{"--net-host"}, "sleep", "600")
	d.Ctr(t, "container", "create", image, "idle", "sleep", "600")
	d.IDs = append(d.IDs, "idle")
	cs := w.await(t, rt, "side, own, host started", running("web", "side", "own", "host"))
	ownPid := cs["own"].Pid
	d.run(t, "joiner", []string{"--with-ns", fmt.Sprintf("network:/proc/%d/ns/net", ownPid)}, "sleep", "600")
	cs = w.await(t, rt, "joiner started", running("joiner"))

	if len(cs) != 6 {
		t.Errorf("Containers lists %d containers, want 6 (web, side, own, joiner, host, idle): %v", len(cs), cs)
	}
	for id, c := range cs {
		if c.Runtime != "containerd/"+testNS || c.Image != image {
			t.Errorf("%s: Runtime %q, Image %q; want containerd/%s, %s", id, c.Runtime, c.Image, testNS, image)
		}
		if c.Running {
			if task := taskPid(t, d, id); c.Pid != task {
				t.Errorf("%s: Pid %d, ctr task ls says %d", id, c.Pid, task)
			}
		}
	}
	web, side, own, joiner, host, idle := cs["web"], cs["side"], cs["own"], cs["joiner"], cs["host"], cs["idle"]
	wantPorts := []model.ContainerPort{{Port: 53, Protocol: model.ProtocolUDP}, {Port: 80, Protocol: model.ProtocolTCP}}
	if web.Name != "shop-web-1" || web.NetnsPath != netns.Path() || web.HostNetwork || web.NetnsOf != "" ||
		web.Labels["com.docker.compose.project"] != "shop" || web.Labels["com.docker.compose.service"] != "web" ||
		!slices.Equal(web.Ports, wantPorts) {
		t.Errorf("web = %+v; want name shop-web-1, netns %s of its own, the compose labels, ports %v", web, netns.Path(), wantPorts)
	}
	if side.Name != "shop-side-1" || side.NetnsPath != netns.Path() || side.NetnsOf != "web" || side.Ports != nil {
		t.Errorf("side = %+v; want name shop-side-1, netns %s of web, no ports", side, netns.Path())
	}
	if want := fmt.Sprintf("/proc/%d/ns/net", own.Pid); own.Name != "" || own.NetnsPath != want || own.NetnsOf != "" || own.HostNetwork {
		t.Errorf("own = %+v; want no name, netns %s of its own", own, want)
	}
	if joiner.NetnsOf != "own" || joiner.NetnsPath != fmt.Sprintf("/proc/%d/ns/net", joiner.Pid) || inode(t, joiner.NetnsPath) != inode(t, own.NetnsPath) {
		t.Errorf("joiner = %+v; want the netns of own (%s) by its own /proc path", joiner, own.NetnsPath)
	}
	if !host.HostNetwork || host.NetnsPath != "" || host.NetnsOf != "" {
		t.Errorf("host = %+v; want HostNetwork, no netns path", host)
	}
	if idle.Running || idle.Pid != 0 || idle.NetnsPath != "" || idle.HostNetwork {
		t.Errorf("idle = %+v; want not running, no pid, no netns path", idle)
	}
	// The netns the runtime names is the container's: web's process is in
	// the test's netns, own's in a netns that is not the host's.
	for _, c := range []containers.Container{web, side} {
		if a, b := inode(t, c.NetnsPath), inode(t, fmt.Sprintf("/proc/%d/ns/net", c.Pid)); a != b {
			t.Errorf("%s: NetnsPath %s is netns %d, its process is in %d", c.ID, c.NetnsPath, a, b)
		}
	}
	if inode(t, own.NetnsPath) == inode(t, "/proc/self/ns/net") {
		t.Errorf("own: NetnsPath %s is the host's netns", own.NetnsPath)
	}

	// A container whose netns bind mount is removed while it runs (`ip
	// netns del`) is still in that netns: the runtime names its process's.
	gone := nettest.New(t)
	d.run(t, "orphan", []string{"--with-ns", "network:" + gone.Path()}, "sleep", "600")
	cs = w.await(t, rt, "orphan started", running("orphan"))
	if c := cs["orphan"]; c.NetnsPath != gone.Path() {
		t.Errorf("orphan = %+v; want netns %s", c, gone.Path())
	}
	if err := nsenter.DeleteNamed(gone.Name); err != nil {
		t.Fatal(err)
	}
	if c := list(t, rt)["orphan"]; c.NetnsPath != fmt.Sprintf("/proc/%d/ns/net", c.Pid) || inode(t, c.NetnsPath) != netnsInode(t, gone) {
		t.Errorf("orphan after its netns was deleted = %+v; want its process's netns, the one deleted", c)
	}

	// A paused container still holds its netns: it stays running. A
	// restarted one (its task deleted and started again) comes back with
	// a new process in the same netns.
	d.Ctr(t, "task", "pause", "web")
	if c := list(t, rt)["web"]; !c.Running || c.Pid != web.Pid {
		t.Errorf("paused web = %+v; want running, pid %d", c, web.Pid)
	}
	d.Ctr(t, "task", "resume", "web")
	w.drain()
	d.kill(t, "web")
	w.await(t, rt, "web killed", func(cs map[string]containers.Container) bool { return !cs["web"].Running })
	d.Ctr(t, "task", "delete", "web")
	w.drain()
	d.Ctr(t, "task", "start", "-d", "--null-io", "web")
	cs = w.await(t, rt, "web restarted", running("web"))
	if c := cs["web"]; c.Pid == web.Pid || c.NetnsPath != netns.Path() || cs["side"].NetnsOf != "web" {
		t.Errorf("restarted web = %+v (side's NetnsOf %q); want a new pid (not %d), netns %s, side still in it", c, cs["side"].NetnsOf, web.Pid, netns.Path())
	}

	w.drain()
	d.kill(t, "own")
	w.await(t, rt, "own killed", func(cs map[string]containers.Container) bool {
		return !cs["own"].Running && cs["own"].Pid == 0 && cs["own"].NetnsPath == ""
	})
	w.drain()
	d.Ctr(t, "task", "delete", "own")
	w.await(t, rt, "own's task deleted", func(cs map[string]containers.Container) bool { return !cs["own"].Running })
	w.drain()
	d.Ctr(t, "container", "delete", "own")
	w.await(t, rt, "own deleted", func(cs map[string]containers.Container) bool {
		_, ok := cs["own"]
		return !ok
	})
	w.drain()
	for _, id := range []string{"web", "side", "joiner", "host", "orphan"} {
		d.kill(t, id)
	}
	w.await(t, rt, "all killed", func(cs map[string]containers.Container) bool {
		return !slices.ContainsFunc([]string{"web", "side", "joiner", "host", "orphan"}, func(id string) bool { return cs[id].Running })
	})
	for _, id := range []string{"web", "side", "joiner", "host", "idle", "orphan"} {
		d.deleteContainer(t, id)
	}
	w.await(t, rt, "all deleted", func(cs map[string]containers.Container) bool { return len(cs) == 0 })

	d.Stop()
	select {
	case err := <-w.done:
		if !errors.Is(err, containerd.ErrUnreachable) {
			t.Errorf("Watch returned %v when containerd stopped, want the stream's error wrapping ErrUnreachable", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("Watch did not return within 15s of containerd stopping")
	}
	if _, err := rt.Containers(context.Background()); !errors.Is(err, containerd.ErrUnreachable) {
		t.Errorf("Containers after containerd stopped: %v, want an error wrapping ErrUnreachable", err)
	}
}

// taskPid is container id's task pid as `ctr task ls` prints it.
func taskPid(t *testing.T, d daemon, id string) int {
	t.Helper()
	for _, line := range strings.Split(d.Ctr(t, "task", "ls"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

// netnsInode is the inode of n's network namespace, from its open handle.
func netnsInode(t *testing.T, n *nettest.Netns) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(n.Handle), &st); err != nil {
		t.Fatalf("stat netns %s: %v", n.Name, err)
	}
	return st.Ino
}

// inode is the inode of the file at path.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}
