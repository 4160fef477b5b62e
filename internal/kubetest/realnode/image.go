package realnode

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Image is a container image made without a registry: one layer holding
// Files, a config naming the Entrypoint, and the Tags containerd lists it
// under. WriteArchive writes it in the docker-archive format
// (`docker save`; the layout `ctr image import` reads: manifest.json, the
// config JSON and the layer tar), which needs only tar and SHA-256.
type Image struct {
	// Tags are full image references, "registry.k8s.io/pause:3.10".
	Tags []string
	// Files is the root filesystem, by path inside the image ("bin/sh",
	// no leading slash). Parent directories are added as needed.
	Files []File
	// Entrypoint and Cmd are the image's default command.
	Entrypoint, Cmd []string
	// Env is the default environment, "KEY=value".
	Env []string
}

// File is one entry of an Image's root filesystem: a regular file copied
// from Source (or holding Data when Source is empty), a symlink to Link,
// or a directory (Dir).
type File struct {
	Path   string
	Source string // host file to copy
	Data   []byte // contents when Source is ""
	Link   string // symlink target
	Dir    bool
	Mode   os.FileMode // permission bits; 0755 for executables and dirs, 0644 otherwise when 0
}

// epoch is every entry's mtime: the archive of one recipe is the same
// bytes every time, so its digest is its cache key.
var epoch = time.Unix(0, 0).UTC()

// validate reports every malformed field of img at once.
func (img Image) validate() error {
	var errs []error
	if len(img.Tags) == 0 {
		errs = append(errs, errors.New("tags: empty"))
	}
	for i, t := range img.Tags {
		if !strings.Contains(t, ":") || strings.ContainsAny(t, " \t\n") {
			errs = append(errs, fmt.Errorf("tags[%d]: %q is not name:tag", i, t))
		}
	}
	seen := map[string]bool{}
	for i, f := range img.Files {
		p := path.Clean(f.Path)
		switch {
		case f.Path == "" || strings.HasPrefix(f.Path, "/") || p != f.Path || strings.HasPrefix(p, ".."):
			errs = append(errs, fmt.Errorf("files[%d].path: %q must be clean and relative", i, f.Path))
		case seen[p]:
			errs = append(errs, fmt.Errorf("files[%d].path: %q given twice", i, f.Path))
		}
		seen[p] = true
		kinds := 0
		for _, set := range []bool{f.Source != "" || f.Data != nil, f.Link != "", f.Dir} {
			if set {
				kinds++
			}
		}
		if kinds > 1 {
			errs = append(errs, fmt.Errorf("files[%d]: %q is more than one of file, link and dir", i, f.Path))
		}
	}
	return errors.Join(errs...)
}

// layer writes img's root filesystem as an uncompressed tar, in path
// order, parents first.
func (img Image) layer(w io.Writer) error {
	files := slices.Clone(img.Files)
	have := map[string]bool{}
	for _, f := range files {
		have[f.Path] = true
	}
	for _, f := range img.Files {
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			if !have[d] {
				have[d] = true
				files = append(files, File{Path: d, Dir: true})
			}
		}
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	tw := tar.NewWriter(w)
	for _, f := range files {
		h := &tar.Header{Name: f.Path, ModTime: epoch, Format: tar.FormatPAX, Mode: int64(f.Mode.Perm())}
		var data []byte
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, f.Path+"/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			data = f.Data
			if f.Source != "" {
				b, err := os.ReadFile(f.Source)
				if err != nil {
					return fmt.Errorf("read %s for %s: %w", f.Source, f.Path, err)
				}
				data = b
				if h.Mode == 0 {
					if st, err := os.Stat(f.Source); err == nil {
						h.Mode = int64(st.Mode().Perm())
					}
				}
			}
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write header %s: %w", f.Path, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	return tw.Close()
}

// dockerConfig is the part of the image config (OCI image spec
// "config", docker's v1 image JSON) that ctr import and the CRI read.
type dockerConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Created      string `json:"created"`
	Config       struct {
		Env        []string `json:"Env,omitempty"`
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		WorkingDir string   `json:"WorkingDir"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// manifestEntry is one element of a docker archive's manifest.json.
type manifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// WriteArchive writes img as a docker-archive tar to w. The same image
// gives the same bytes (fixed times, sorted entries). Errors name the
// field or file at fault.
func (img Image) WriteArchive(w io.Writer) error {
	if err := img.validate(); err != nil {
		return fmt.Errorf("image %v: %w", img.Tags, err)
	}
	var layer bytes.Buffer
	if err := img.layer(&layer); err != nil {
		return fmt.Errorf("image %v: %w", img.Tags, err)
	}
	sum := sha256.Sum256(layer.Bytes())
	layerID := hex.EncodeToString(sum[:])
	var cfg dockerConfig
	cfg.Architecture, cfg.OS, cfg.Created = runtime.GOARCH, "linux", epoch.Format(time.RFC3339)
	cfg.Config.Env, cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.Config.WorkingDir = img.Env, img.Entrypoint, img.Cmd, "/"
	cfg.RootFS.Type, cfg.RootFS.DiffIDs = "layers", []string{"sha256:" + layerID}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	cs := sha256.Sum256(cfgJSON)
	cfgName := hex.EncodeToString(cs[:]) + ".json"
	man, err := json.Marshal([]manifestEntry{{Config: cfgName, RepoTags: img.Tags, Layers: []string{layerID + "/layer.tar"}}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range []struct {
		name string
		data []byte
	}{{layerID + "/layer.tar", layer.Bytes()}, {cfgName, cfgJSON}, {"manifest.json", man}} {
		if strings.Contains(e.name, "/") {
			if err := tw.WriteHeader(&tar.Header{Name: path.Dir(e.name) + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("write %s: %w", e.name, err)
		}
	}
	return tw.Close()
}
