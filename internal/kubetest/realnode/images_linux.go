//go:build linux

package realnode

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Image references the node serves without a registry. The pause and
// agnhost names are those kubelet, containerd and the upstream e2e suite
// ask for (k8s.io/kubernetes test/utils/image/manifest.go at v1.37.2);
// pods use imagePullPolicy IfNotPresent (or Never) so nothing is pulled.
const (
	// PauseImage is the sandbox image containerd's config names.
	PauseImage = "registry.k8s.io/pause:3.10"
	// PauseImageE2E is the pause image the e2e framework asks for.
	PauseImageE2E = "registry.k8s.io/pause:3.10.2"
	// BusyboxImage is Debian's busybox-static with its applets in /bin.
	BusyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	// AgnhostImage is agnhost (built by hack/kube-bins.sh) at /agnhost,
	// plus busybox.
	AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
)

// recipeVersion changes when the image recipes below change, so archives
// cached by an older recipe are not reused.
const recipeVersion = "1"

// busyboxPath is Debian busybox-static's binary.
const busyboxPath = "/bin/busybox"

//go:embed testdata/pause/main.go
var pauseSource []byte

// CacheDir is where built images and the pause binary are kept, by
// content: $NANOSEG_REALNODE_CACHE, else <user cache dir>/nanoseg/realnode.
func CacheDir() string {
	if d := os.Getenv("NANOSEG_REALNODE_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "nanoseg", "realnode")
}

// goTool returns the go command that builds the pause program.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "/usr/local/go/bin/go"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// pauseBinary builds the pause program (a static binary) once per source
// and Go version and returns its path.
func pauseBinary() (string, error) {
	sum := sha256.Sum256(append(append([]byte{}, pauseSource...), runtime.Version()...))
	out := filepath.Join(CacheDir(), "bin", "pause-"+hex.EncodeToString(sum[:6]))
	if fileExists(out) {
		return out, nil
	}
	src, err := os.MkdirTemp("", "nanoseg-pause-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	if err := os.WriteFile(filepath.Join(src, "main.go"), pauseSource, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module pause\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", out+".tmp", ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build pause: %w: %s", err, b)
	}
	return out, os.Rename(out+".tmp", out)
}

// busyboxFiles is busybox-static at bin/busybox with a symlink per applet
// in bin/.
func busyboxFiles() ([]File, error) {
	list, err := output(busyboxPath, "--list")
	if err != nil {
		return nil, fmt.Errorf("list busybox applets (Debian package busybox-static): %w", err)
	}
	files := []File{{Path: "bin/busybox", Source: busyboxPath, Mode: 0o755},
		{Path: "tmp", Dir: true, Mode: 0o1777}, {Path: "etc", Dir: true}, {Path: "root", Dir: true},
		{Path: "usr/bin", Link: "../bin"},
		{Path: "etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")},
		{Path: "etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n")}}
	for _, a := range strings.Fields(list) {
		if a != "busybox" && !strings.Contains(a, "/") {
			files = append(files, File{Path: "bin/" + a, Link: "busybox"})
		}
	}
	return files, nil
}

// recipes returns the images the node imports: pause and busybox always,
// agnhost when agnhost is a path.
func recipes(agnhost string) ([]Image, error) {
	pause, err := pauseBinary()
	if err != nil {
		return nil, err
	}
	bb, err := busyboxFiles()
	if err != nil {
		return nil, err
	}
	imgs := []Image{
		{Tags: []string{PauseImage, PauseImageE2E}, Files: []File{{Path: "pause", Source: pause, Mode: 0o755}}, Entrypoint: []string{"/pause"}},
		{Tags: []string{BusyboxImage}, Files: bb, Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}},
	}
	if agnhost != "" {
		files := append([]File{{Path: "agnhost", Source: agnhost, Mode: 0o755}}, bb...)
		imgs = append(imgs, Image{Tags: []string{AgnhostImage}, Files: files,
			Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, Env: []string{"PATH=/bin"}})
	}
	return imgs, nil
}

// cacheKey is a digest of everything an image's archive is made of: the
// recipe version, tags, command, and each file's path, kind and contents.
func (img Image) cacheKey() (string, error) {
	h := sha256.New()
	meta, _ := json.Marshal([]any{recipeVersion, img.Tags, img.Entrypoint, img.Cmd, img.Env})
	h.Write(meta)
	for _, f := range img.Files {
		fmt.Fprintf(h, "\x00%s\x00%s\x00%t\x00%o\x00", f.Path, f.Link, f.Dir, f.Mode)
		h.Write(f.Data)
		if f.Source != "" {
			src, err := os.Open(f.Source)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, src)
			src.Close()
			if err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// Archive returns the path of img's docker-archive tar in the cache,
// writing it first if no archive of the same content is there.
func (img Image) Archive() (string, error) {
	key, err := img.cacheKey()
	if err != nil {
		return "", fmt.Errorf("image %v: %w", img.Tags, err)
	}
	name := img.Tags[0]
	name = name[strings.LastIndex(name, "/")+1:]
	name = strings.ReplaceAll(name, ":", "-")
	out := filepath.Join(CacheDir(), "images", name+"-"+key+".tar")
	if fileExists(out) {
		return out, nil
	}
	var buf bytes.Buffer
	if err := img.WriteArchive(&buf); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(out+".tmp", buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return out, os.Rename(out+".tmp", out)
}
