package manifests

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// FS holds the manifests: kustomization.yaml at its root and every file it
// names, directly or through the kustomizations of its directories.
//
//go:embed kustomization.yaml namespace.yaml crds node-agent controller admission rbac
var FS embed.FS

// Namespace is the namespace of nanoseg's components.
const Namespace = "nanoseg-system"

// Image is the container image the manifests run; hack/image.sh builds it
// under this name as a docker-archive tarball (out/images/nanoseg.tar).
const Image = "nanoseg.io/nanoseg:dev"

// Names of the objects that tools and tests refer to.
const (
	NodeAgent            = "nanoseg-node"                // DaemonSet, ServiceAccount, ClusterRole and ClusterRoleBinding of the node agent
	Controller           = "nanoseg-controller"          // Deployment, ServiceAccount, Role and RoleBinding of the cluster controller
	ControllerLease      = "nanoseg-controller"          // the controller's leader election Lease, in Namespace
	HealthPort           = 9990                          // /healthz, /readyz and /metrics of both components
	ViewRole             = "nanoseg-view"                // ClusterRole: read what nanoseg holds and enforces (rbac/users.yaml)
	OperateRole          = "nanoseg-operate"             // ClusterRole: nanoseg-view and create NanoSegmentPromotions
	RequesterPolicy      = "nanoseg-promotion-requester" // admission policies stamping and checking spec.requestedBy (admission/promotions.yaml)
	HistoryPolicy        = "nanoseg-promotion-history"   // admission policy refusing DELETE of a Succeeded promotion
	kustomizationFile    = "kustomization.yaml"
	kustomizationVersion = "kustomize.config.k8s.io/v1beta1"
)

// kustomization is the part of a kustomization.yaml that Objects
// understands: a list of resources (files or directories with their own
// kustomization.yaml). Any other field is an error, so a transformer added
// to a kustomization cannot be silently ignored here.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// Objects returns the objects of the kustomization at the root of FS, in
// the order of its resources (files' documents in file order, directories
// recursively). It is kustomize restricted to `resources`; kubectl apply
// -k gives the same objects.
func Objects() ([]*unstructured.Unstructured, error) {
	return Render(FS, ".")
}

// Render returns the objects of the kustomization in directory dir of fsys
// (see Objects). Errors name the file and, for a bad document, its index
// (from 0). Two objects with one group, kind, namespace and name are an
// error, as in kustomize.
func Render(fsys fs.FS, dir string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	if err := render(fsys, dir, &objs, map[string]bool{}); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var errs []error
	for _, o := range objs {
		id := Ref(o)
		if seen[id] {
			errs = append(errs, fmt.Errorf("%s appears twice", id))
		}
		seen[id] = true
	}
	return objs, errors.Join(errs...)
}

// Files returns every file the kustomization in directory dir of fsys
// names, directly or through its directories, kustomization files
// included, as slash-separated paths relative to fsys.
func Files(fsys fs.FS, dir string) ([]string, error) {
	var files []string
	err := walk(fsys, dir, map[string]bool{}, func(file string, isKustomization bool) error {
		files = append(files, file)
		return nil
	})
	return files, err
}

// Ref names an object for messages: group/kind namespace/name ("core" for
// the core group, no namespace for cluster-scoped objects).
func Ref(o *unstructured.Unstructured) string {
	gvk := o.GroupVersionKind()
	g := gvk.Group
	if g == "" {
		g = "core"
	}
	name := o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		name = ns + "/" + name
	}
	return g + "/" + gvk.Kind + " " + name
}

func render(fsys fs.FS, dir string, objs *[]*unstructured.Unstructured, visiting map[string]bool) error {
	return walk(fsys, dir, visiting, func(file string, isKustomization bool) error {
		if isKustomization {
			return nil
		}
		raw, err := fs.ReadFile(fsys, file)
		if err != nil {
			return err
		}
		docs, err := Decode(raw)
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		*objs = append(*objs, docs...)
		return nil
	})
}

// walk calls fn for the kustomization file of dir and then for each
// resource in order, descending into directories.
func walk(fsys fs.FS, dir string, visiting map[string]bool, fn func(file string, isKustomization bool) error) error {
	if visiting[dir] {
		return fmt.Errorf("%s: kustomization includes itself", dir)
	}
	visiting[dir] = true
	defer delete(visiting, dir)
	kfile := path.Join(dir, kustomizationFile)
	raw, err := fs.ReadFile(fsys, kfile)
	if err != nil {
		return err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		return fmt.Errorf("%s: only apiVersion, kind and resources are understood: %w", kfile, err)
	}
	if k.APIVersion != kustomizationVersion || k.Kind != "Kustomization" {
		return fmt.Errorf("%s: apiVersion %q kind %q, want %s Kustomization", kfile, k.APIVersion, k.Kind, kustomizationVersion)
	}
	if err := fn(kfile, true); err != nil {
		return err
	}
	for i, r := range k.Resources {
		if r == "" || path.IsAbs(r) || strings.Contains(r, "://") {
			return fmt.Errorf("%s: resources[%d] %q: want a relative path", kfile, i, r)
		}
		p := path.Join(dir, r)
		if p == ".." || strings.HasPrefix(p, "../") {
			return fmt.Errorf("%s: resources[%d] %q: outside the manifests", kfile, i, r)
		}
		fi, err := fs.Stat(fsys, p)
		if err != nil {
			return fmt.Errorf("%s: resources[%d]: %w", kfile, i, err)
		}
		if fi.IsDir() {
			err = walk(fsys, p, visiting, fn)
		} else {
			err = fn(p, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Decode returns the objects of a YAML stream of documents separated by
// "---" lines; empty documents (only comments) are skipped. Each object
// must have apiVersion, kind and metadata.name.
func Decode(raw []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	var objs []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if s := bytes.TrimSpace(js); len(s) == 0 || string(s) == "null" {
			continue
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if o.GetName() == "" {
			return nil, fmt.Errorf("document %d (%s): metadata.name is empty", i, o.GetKind())
		}
		objs = append(objs, o)
	}
}
