package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// MaxFileSize bounds one file read from a bundle archive (bytes).
const MaxFileSize = 256 << 20

// WriteDir writes files (slash-separated relative path → content) into dir,
// creating it (0755) if needed; files get mode 0644. It refuses a dir that
// already holds a manifest, so a bundle is never silently mixed with
// another. Errors: unsafe names, an existing bundle, write failures.
func WriteDir(dir string, files map[string][]byte) error {
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err == nil {
		return fmt.Errorf("write bundle: %s already holds a bundle; choose an empty directory", dir)
	}
	for _, name := range sortedNames(files) {
		if err := checkPath(name); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return fmt.Errorf("write bundle: %w", err)
		}
	}
	return nil
}

func sortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// TarGz returns files as a gzip-compressed tar archive whose entries sit
// under the directory top (e.g. "evidence-20260101T000000Z"), sorted by
// name, with modification time mtime, so the same files give the same
// archive.
func TarGz(files map[string][]byte, top string, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range sortedNames(files) {
		if err := checkPath(name); err != nil {
			return nil, fmt.Errorf("archive bundle: %w", err)
		}
		h := &tar.Header{Name: top + "/" + name, Mode: 0o644, Size: int64(len(files[name])), ModTime: mtime.UTC(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("archive bundle: %w", err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			return nil, fmt.Errorf("archive bundle: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("archive bundle: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("archive bundle: %w", err)
	}
	return buf.Bytes(), nil
}

// UntarGz reads an archive made by TarGz (or any gzip tar of regular files
// under one top directory) and returns its files without the top
// directory. Errors: not gzip/tar, links or devices, unsafe names, files
// over MaxFileSize, more than one top directory.
func UntarGz(r io.Reader) (map[string][]byte, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("read bundle archive: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	files := map[string][]byte{}
	top := ""
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read bundle archive: %w", err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("read bundle archive: %s is not a regular file", h.Name)
		}
		t, rest, ok := strings.Cut(strings.TrimPrefix(h.Name, "./"), "/")
		if !ok {
			return nil, fmt.Errorf("read bundle archive: %s is not under a top directory", h.Name)
		}
		if top == "" {
			top = t
		} else if t != top {
			return nil, fmt.Errorf("read bundle archive: two top directories %q and %q", top, t)
		}
		if err := checkPath(rest); err != nil {
			return nil, fmt.Errorf("read bundle archive: %w", err)
		}
		if h.Size > MaxFileSize {
			return nil, fmt.Errorf("read bundle archive: %s is larger than %d bytes", h.Name, MaxFileSize)
		}
		data, err := io.ReadAll(io.LimitReader(tr, MaxFileSize+1))
		if err != nil {
			return nil, fmt.Errorf("read bundle archive: %w", err)
		}
		files[rest] = data
	}
	return files, nil
}
