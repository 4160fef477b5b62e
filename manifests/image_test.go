package manifests_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/nanoseg/nanoseg/manifests"
)

// buildImage runs hack/image.sh into a fresh directory and returns the
// archive's path.
func buildImage(t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("../hack/image.sh")
	cmd.Env = append(os.Environ(), "OUT="+out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/image.sh: %v\n%s", err, b)
	}
	p := filepath.Join(out, "nanoseg.tar")
	if got := strings.TrimSpace(string(b)); !strings.HasSuffix(got, p) {
		t.Errorf("hack/image.sh printed %q, want the archive's path %s", got, p)
	}
	return p
}

// readTar returns the regular files of a tar stream by name, in order, and
// fails t on any other entry type.
func readTar(t *testing.T, r io.Reader) (names []string, files map[string][]byte, headers map[string]*tar.Header) {
	t.Helper()
	files, headers = map[string][]byte{}, map[string]*tar.Header{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, files, headers
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		if h.Typeflag != tar.TypeReg {
			t.Fatalf("tar entry %s: type %c, want regular files only", h.Name, h.Typeflag)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("read tar entry %s: %v", h.Name, err)
		}
		names, files[h.Name], headers[h.Name] = append(names, h.Name), b, h
	}
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestImage builds the image with hack/image.sh and checks the docker
// archive the way an importer reads it (the `docker save` layout that
// containerd's `ctr image import` accepts): manifest.json names the tag the
// manifests run and files whose names are their sha256; the config's
// diff_ids are the layer's digests and its entrypoint /nanoseg; the one
// layer holds /nanoseg only, a static executable for GOARCH owned by root.
// A second build gives the same bytes. Where containerd can run (root,
// containerd, ctr and runc installed) it also imports the archive into a
// private containerd and runs `/nanoseg version` in a container of it.
func TestImage(t *testing.T) {
	archive := buildImage(t)
	raw, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("archive", func(t *testing.T) {
		names, files, _ := readTar(t, bytes.NewReader(raw))
		var m []struct {
			Config   string
			RepoTags []string
			Layers   []string
		}
		if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
			t.Fatalf("manifest.json: %v", err)
		}
		if len(m) != 1 {
			t.Fatalf("manifest.json has %d images, want 1", len(m))
		}
		if d := cmp.Diff([]string{manifests.Image}, m[0].RepoTags); d != "" {
			t.Errorf("RepoTags (-want +got):\n%s", d)
		}
		if len(m[0].Layers) != 1 {
			t.Fatalf("%d layers, want 1", len(m[0].Layers))
		}
		wantNames := []string{"manifest.json", m[0].Config, m[0].Layers[0]}
		if d := cmp.Diff(wantNames, names); d != "" {
			t.Errorf("archive entries (-want +got):\n%s", d)
		}
		for _, f := range wantNames[1:] {
			if b, ok := files[f]; !ok || strings.TrimSuffix(strings.TrimSuffix(f, ".json"), ".tar") != sha(b) {
				t.Errorf("%s: present %v, want a file named by its sha256", f, ok)
			}
		}

		var config struct {
			Architecture string
			OS           string
			Config       struct{ Entrypoint, Cmd []string }
			RootFS       struct {
				Type    string
				DiffIDs []string `json:"diff_ids"`
			}
		}
		if err := json.Unmarshal(files[m[0].Config], &config); err != nil {
			t.Fatalf("config %s: %v", m[0].Config, err)
		}
		layer := files[m[0].Layers[0]]
		if config.Architecture != runtime.GOARCH || config.OS != "linux" {
			t.Errorf("config platform %s/%s, want linux/%s", config.OS, config.Architecture, runtime.GOARCH)
		}
		if d := cmp.Diff([]string{"/nanoseg"}, config.Config.Entrypoint); d != "" {
			t.Errorf("entrypoint (-want +got):\n%s", d)
		}
		if config.RootFS.Type != "layers" || !slices.Equal(config.RootFS.DiffIDs, []string{"sha256:" + sha(layer)}) {
			t.Errorf("rootfs %+v, want type layers and the layer's digest sha256:%s", config.RootFS, sha(layer))
		}

		lnames, lfiles, lheaders := readTar(t, bytes.NewReader(layer))
		if d := cmp.Diff([]string{"nanoseg"}, lnames); d != "" {
			t.Fatalf("layer entries (-want +got):\n%s", d)
		}
		h := lheaders["nanoseg"]
		if h.Mode&0o7777 != 0o755 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("/nanoseg: mode %o uid %d gid %d, want 755 root root", h.Mode, h.Uid, h.Gid)
		}
		bin, err := elf.NewFile(bytes.NewReader(lfiles["nanoseg"]))
		if err != nil {
			t.Fatalf("/nanoseg is not an ELF file: %v", err)
		}
		if bin.Type != elf.ET_EXEC {
			t.Errorf("/nanoseg: ELF type %v, want a static executable (ET_EXEC)", bin.Type)
		}
		for _, p := range bin.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("/nanoseg has a %v program header: not statically linked (CGO_ENABLED=0)", p.Type)
			}
		}
		if want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]; want != 0 && bin.Machine != want {
			t.Errorf("/nanoseg: machine %v, want %v", bin.Machine, want)
		}
	})

	t.Run("node-flags", func(t *testing.T) { checkNodeFlags(t, raw) })

	t.Run("reproducible", func(t *testing.T) {
		again, err := os.ReadFile(buildImage(t))
		if err != nil {
			t.Fatal(err)
		}
		if sha(again) != sha(raw) {
			t.Errorf("two builds of one tree differ: sha256 %s and %s", sha(raw), sha(again))
		}
	})

	t.Run("containerd", func(t *testing.T) { runInContainerd(t, archive) })
}

// checkNodeFlags runs the image's /nanoseg (from the archive) as `nanoseg
// node --help` and checks that every flag the DaemonSet passes exists. It
// skips while the binary has no node command.
func checkNodeFlags(t *testing.T, archive []byte) {
	_, files, _ := readTar(t, bytes.NewReader(archive))
	var m []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 || len(m[0].Layers) != 1 {
		t.Fatalf("manifest.json: %v", err)
	}
	_, layer, _ := readTar(t, bytes.NewReader(files[m[0].Layers[0]]))
	bin := filepath.Join(t.TempDir(), "nanoseg")
	if err := os.WriteFile(bin, layer["nanoseg"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "node", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--node-name") {
		t.Skipf("this nanoseg has no node command yet (issue 12): %v\n%s", err, out)
	}
	var ds appsv1.DaemonSet
	find(t, "DaemonSet", manifests.NodeAgent, &ds)
	for _, a := range ds.Spec.Template.Spec.Containers[0].Args {
		flag, _, _ := strings.Cut(a, "=")
		if !strings.Contains(string(out), flag+" ") {
			t.Errorf("the DaemonSet passes %s, which nanoseg node --help does not list:\n%s", flag, out)
		}
	}
}
