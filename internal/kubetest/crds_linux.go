//go:build linux

package kubetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// readCRDs returns the CustomResourceDefinitions of the *.yaml, *.yml and
// *.json files of dirs, in file order; any other kind is an error naming
// the file.
func readCRDs(dirs []string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("read CRD dir: %w", err)
		}
		var files []string
		for _, e := range ents {
			switch filepath.Ext(e.Name()) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() {
					files = append(files, filepath.Join(dir, e.Name()))
				}
			}
		}
		sort.Strings(files)
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read CRD file: %w", err)
			}
			dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
			for i := 0; ; i++ {
				var obj map[string]any
				if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return nil, fmt.Errorf("%s: document %d: %w", f, i, err)
				}
				if len(obj) == 0 {
					continue // an empty document between separators
				}
				u := &unstructured.Unstructured{Object: obj}
				if u.GetKind() != "CustomResourceDefinition" || !strings.HasPrefix(u.GetAPIVersion(), "apiextensions.k8s.io/") {
					return nil, fmt.Errorf("%s: document %d: kind %s %s is not a CustomResourceDefinition", f, i, u.GetAPIVersion(), u.GetKind())
				}
				out = append(out, u)
			}
		}
	}
	return out, nil
}

// ApplyCRDs creates (or updates) the CRDs of the YAML files in dirs (as
// Options.CRDDirs does at the start) and returns once every one is
// Established, or with the first error: for a test that installs a kind
// after its components started.
func (c *Cluster) ApplyCRDs(ctx context.Context, dirs ...string) error { return c.applyCRDs(ctx, dirs) }

// applyCRDs creates (or updates) the CRDs of dirs and waits until every
// one is Established.
func (c *Cluster) applyCRDs(ctx context.Context, dirs []string) error {
	crds, err := readCRDs(dirs)
	if err != nil || len(crds) == 0 {
		return err
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	api := dyn.Resource(crdResource)
	for _, crd := range crds {
		_, err := api.Create(ctx, crd, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var cur *unstructured.Unstructured
			if cur, err = api.Get(ctx, crd.GetName(), metav1.GetOptions{}); err == nil {
				crd.SetResourceVersion(cur.GetResourceVersion())
				_, err = api.Update(ctx, crd, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("apply CRD %s: %w", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, api, crd.GetName()); err != nil {
			return err
		}
	}
	return nil
}

// waitEstablished polls the CRD until its Established condition is True.
func waitEstablished(ctx context.Context, api dynamic.NamespaceableResourceInterface, name string) error {
	for {
		cur, err := api.Get(ctx, name, metav1.GetOptions{})
		if err == nil && established(cur) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for CRD %s to be Established: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func established(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
