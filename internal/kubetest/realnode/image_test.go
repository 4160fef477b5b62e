package realnode

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// TestWriteArchive checks the docker-archive layout ctr import reads: a
// manifest naming the config and the layer, the config's diff id being
// the layer's digest, and the same bytes for the same image.
func TestWriteArchive(t *testing.T) {
	img := Image{Tags: []string{"example.test/x:1"}, Entrypoint: []string{"/bin/x"},
		Files: []File{{Path: "bin/x", Data: []byte("#!/bin/sh\n"), Mode: 0o755}, {Path: "bin/y", Link: "x"}}}
	var a, b bytes.Buffer
	if err := img.WriteArchive(&a); err != nil {
		t.Fatal(err)
	}
	if err := img.WriteArchive(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two archives of one image differ")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&a)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
	var man []manifestEntry
	if err := json.Unmarshal(files["manifest.json"], &man); err != nil || len(man) != 1 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}
	var cfg dockerConfig
	if err := json.Unmarshal(files[man[0].Config], &cfg); err != nil {
		t.Fatalf("config %s: %v", man[0].Config, err)
	}
	layerID := strings.TrimSuffix(man[0].Layers[0], "/layer.tar")
	if cfg.RootFS.DiffIDs[0] != "sha256:"+layerID || man[0].RepoTags[0] != "example.test/x:1" {
		t.Errorf("config %+v, manifest %+v", cfg, man[0])
	}
	var names []string
	lr := tar.NewReader(bytes.NewReader(files[man[0].Layers[0]]))
	for {
		h, err := lr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if got := strings.Join(names, " "); got != "bin/ bin/x bin/y" {
		t.Errorf("layer entries %q, want parents first, sorted", got)
	}
}

// TestImageValidate reports every bad field at once.
func TestImageValidate(t *testing.T) {
	err := Image{Tags: []string{"notag"}, Files: []File{{Path: "/abs"}, {Path: "a", Dir: true, Link: "b"}}}.validate()
	for _, want := range []string{"tags[0]", "files[0].path", "files[1]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
