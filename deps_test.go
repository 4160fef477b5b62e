package nanoseg_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const mod = "github.com/nanoseg/nanoseg/"

// fenceRow is one package's place in the layout.
type fenceRow struct {
	pkg       string     // package path below the module ("" is the module root)
	allowed   []string   // module packages it may import directly (anything: all)
	forbidden [][]string // imports it must never reach, directly or not
	why       string
}

// Groups of imports the fence names more than once.
var (
	// kernel is every library that programs or reads the kernel's
	// networking (nftables, netlink, netns, conntrack, packet capture) or
	// watches files with inotify, and nanoseg's own netns helpers.
	kernel = []string{"github.com/google/nftables", "github.com/vishvananda/netlink", "github.com/vishvananda/netns",
		"github.com/mdlayher/netlink", "github.com/ti-mo/", "github.com/gopacket/", "github.com/fsnotify/",
		mod + "internal/nsenter"}
	// cluster is the Kubernetes client side.
	cluster = []string{"k8s.io/client-go", "sigs.k8s.io/controller-runtime"}
	// storage is the embedded database of the standalone store.
	storage = []string{"go.etcd.io/bbolt"}
	// config is where configuration and signals come from: the commands
	// (cmd/, internal/cmd/) only
	// (checked against direct imports).
	config = []string{"github.com/spf13/viper", "github.com/spf13/cobra", "os/signal"}
	// thirdParty is every import outside the standard library and the module.
	thirdParty = []string{thirdPartyMark}
)

// thirdPartyMark matches any import path outside the standard library and
// this module.
const thirdPartyMark = "<third party>"

// anything in allowed lets a package import every module package.
const anything = "*"

// fence gives every package of the module the module packages it may
// import directly (allowed) and what it must never reach (forbidden), with
// the reason. docs/architecture.md ("Where new parts go", "Why this
// layout") gives the layout and names the files. A package missing from the table fails the test, and so does a
// row whose package no longer exists: the table is the map of the code.
var fence = []fenceRow{
	{"model", nil, [][]string{thirdParty},
		"the vocabulary is a leaf: every package may import it, and it imports only the standard library"},
	{"internal/verdictlog", []string{"model"}, [][]string{thirdParty},
		"the verdict-log grammar is shared by its writer (dataplane) and its reader (observer) and depends on neither"},
	{"internal/loop", nil, [][]string{thirdParty},
		"the periodic-loop helper is a leaf"},
	{"internal/nsenter", nil, [][]string{cluster, storage},
		"netns helpers are a leaf"},
	{"internal/nettest", []string{"internal/nsenter"}, [][]string{cluster, storage},
		"test-only netns helpers"},
	{"internal/kubetest", nil, [][]string{kernel, storage, {"sigs.k8s.io/controller-runtime"}},
		"test-only: a real etcd and kube-apiserver for tests; a kube-named package, so it may import client-go (and nothing of the module)"},
	{"internal/kubetest/realnode", []string{"internal/kubetest", "internal/nettest", "internal/nsenter"}, [][]string{storage, {mod + "node", mod + "agent", mod + "dataplane", mod + "controller"}},
		"test-only: a real node (containerd, kubelet, bridge CNI) beside kubetest's API server; it runs what is tested and imports none of it"},
	{"policies/v1alpha1", []string{"model"}, [][]string{kernel, cluster, storage},
		"API types: apimachinery and the vocabulary only"},
	{"policies/cnp/v1alpha2", nil, [][]string{kernel, cluster, storage},
		"ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) API types: apimachinery only"},
	{"policies", []string{"model", "internal/verdictlog", "policies/v1alpha1", "policies/cnp/v1alpha2"}, [][]string{kernel, cluster, storage},
		"policies is pure: API types, validation, evaluation and inference are tested without root or a cluster"},
	{"observer", []string{"model", "internal/verdictlog", "internal/nsenter"}, [][]string{cluster, storage, {mod + "dataplane", mod + "policies"}},
		"the observer reads the verdict log through its grammar, never the dataplane's code"},
	{"dataplane", []string{"model", "internal/verdictlog", "internal/nsenter"}, [][]string{cluster, storage, {mod + "policies", mod + "observer"}},
		"the dataplane understands rule sets only; what policies mean is decided above it"},
	{"compile", []string{"model", "internal/verdictlog", "policies", "policies/v1alpha1", "policies/cnp/v1alpha2", "dataplane"}, [][]string{cluster, storage, {mod + "observer", mod + "store", mod + "lab"}},
		"compile turns policies and endpoints into rule sets (the dataplane's type); it never programs them"},
	{"inventory", []string{"model", "policies"}, [][]string{kernel, cluster, storage, {mod + "lab"}},
		"the inventory seam and the address index are pure; sources live in subpackages"},
	{"inventory/host", []string{"model", "inventory", "lab", "internal/nsenter"}, [][]string{cluster, storage, {mod + "dataplane", mod + "observer"}},
		"the standalone sources of one host; the only production importer of lab"},
	{"inventory/containers", []string{"model", "inventory", "inventory/host"}, [][]string{cluster, storage, {mod + "dataplane", mod + "observer", mod + "node"}},
		"the container-runtime source of the standalone agent: the runtime seam and the mapping of containers to endpoints (addresses read in their netns through inventory/host); it lists endpoints, it never programs or observes them"},
	{"inventory/containers/engine", []string{"model", "inventory/containers"}, [][]string{cluster, storage, {mod + "dataplane", mod + "observer", mod + "node"}},
		"a runtime client over the Docker Engine API (Docker, Podman): it talks to a socket (the netns helpers it reaches are the seam package's, for the mapping)"},
	{"internal/ctrtest/echo", nil, [][]string{thirdParty},
		"the container tests' server binary, imported as a one-file image: the standard library only, so it builds static"},
	{"internal/ctrtest/containerd", nil, [][]string{thirdParty},
		"test-only: a private containerd for a test (started under a temp dir, removed at cleanup and after a killed run); the standard library only, it drives containerd with Debian's ctr"},
	{"inventory/kube", []string{"model", "inventory"}, [][]string{storage, {mod + "lab", mod + "dataplane", mod + "observer", mod + "node", mod + "compile"}},
		"the Kubernetes inventory source of a node agent: informers (client-go) and the netns finder (netlink, inotify); it lists endpoints, it never programs or observes them"},
	{"inventory/containers/containerd", []string{"model", "inventory/containers"}, [][]string{cluster, storage, {mod + "dataplane", mod + "observer", mod + "node"}},
		"the containerd runtime of the container inventory: containerd's gRPC API (its api module, not its full client) over the local socket; it lists and watches containers, it never programs or observes them (the netns helpers it reaches are the seam package's, for the mapping)"},
	{"store", []string{"model", "policies/v1alpha1", "policies/cnp/v1alpha2"}, [][]string{kernel, cluster, storage},
		"the store seams and the in-memory store are pure"},
	{"store/bolt", []string{"model", "store", "policies/cnp/v1alpha2"}, [][]string{kernel, cluster},
		"the bbolt store is the standalone implementation of the store seams"},
	{"store/kube", []string{"model", "policies", "policies/v1alpha1", "policies/cnp/v1alpha2", "store"}, [][]string{kernel, storage, {mod + "node", mod + "dataplane", mod + "observer", mod + "lab", mod + "controller"}},
		"the Kubernetes side of the store seams: the node agent's policy watcher (informers on NetworkPolicies, NanoSegments and ClusterNetworkPolicies) and the cluster's store.PolicyStore over the API server; it judges policies but never runs the controller or the node"},
	{"store/storetest", []string{"model", "policies/v1alpha1", "policies/cnp/v1alpha2", "store"}, [][]string{kernel, cluster, storage},
		"the store contract tests run against every implementation (ClusterNetworkPolicy records included)"},
	{"graph", []string{"model", "web"}, [][]string{kernel, cluster, storage, {mod + "dataplane", mod + "store", mod + "observer"}},
		"graph exports are pure: no kernel and no store code (the HTML export inlines the web page's bundle)"},
	{"internal/browsertest", nil, [][]string{kernel, cluster, storage},
		"the browser harness of the tests and uishots (chromedp driving headless Chromium) knows nothing of nanoseg"},
	{"internal/cmd/uishots", []string{"internal/browsertest"}, [][]string{kernel, cluster, storage},
		"the demo's screenshots of the live page: a browser and an HTTP client of the agent's listener, nothing of nanoseg's internals"},
	{"web", nil, [][]string{thirdParty},
		"the web page is embedded files and their handler: a leaf of the standard library"},
	{"evidence", []string{"model", "policies"}, [][]string{kernel, cluster, storage, {mod + "dataplane", mod + "store", mod + "observer"}},
		"evidence bundles are pure: no kernel and no store code"},
	{"controller", []string{"model", "policies", "policies/v1alpha1", "policies/cnp/v1alpha2", "store", "evidence"}, [][]string{kernel, cluster, storage, {mod + "dataplane", mod + "observer", mod + "lab", mod + "node", mod + "inventory/host", mod + "store/bolt"}},
		"the controller service runs anywhere (standalone, or as a cluster Deployment) over the seams, and is unit-tested without root"},
	{"controller/kube", []string{"model", "controller", "evidence", "inventory", "policies", "policies/v1alpha1", "store", "store/kube"}, [][]string{kernel, storage, {mod + "dataplane", mod + "observer", mod + "lab", mod + "node", mod + "nodeagent", mod + "agent", mod + "inventory/host", mod + "store/bolt"}},
		"the cluster controller composes the controller service over the API server (client-go: leader election, proposals, promotions, status); the graph and the store come in through interfaces, and it never reaches kernel code, bbolt or the lab"},
	{"controller/controllertest", []string{"model", "policies", "controller", "evidence", "inventory"}, [][]string{kernel, cluster, storage},
		"fakes of the controller's seams for tests without root"},
	{"node", []string{"model", "internal/loop", "internal/nsenter", "policies", "policies/v1alpha1", "observer", "dataplane", "compile", "inventory", "controller", "evidence", "store"}, [][]string{cluster, storage, {mod + "lab", mod + "server", mod + "agent"}},
		"the node side programs and observes endpoints; it never stores or serves"},
	{"server", []string{"model", "controller", "client", "store", "evidence", "graph", "policies"}, [][]string{kernel, cluster, storage},
		"the HTTP API serves the controller service; it knows no kernel and no store implementation (the wire words live in client)"},
	{"client", []string{"model", "controller", "evidence", "policies", "policies/v1alpha1"}, [][]string{kernel, cluster, storage},
		"the Go client speaks the API; the CLI and the e2e tests share it"},
	{"client/kube", []string{"model", "controller", "client", "server", "store", "store/kube", "inventory", "inventory/kube", "policies", "policies/v1alpha1", "policies/cnp/v1alpha2", "evidence"}, [][]string{storage, {"github.com/google/nftables", "github.com/ti-mo/", "github.com/gopacket/", mod + "node", mod + "dataplane", mod + "observer", mod + "lab", mod + "agent", mod + "store/bolt"}},
		"the CLI's cluster mode: the controller service in the CLI's process over read-only seams on the API server (the user's credentials, client-go), served by the API's handler in-process; promotions are objects the controller carries out and probes objects the node agents run, so it programs, observes and stores nothing (inventory/kube's netns finder links netlink and inotify in; the CLI gives it no finder); evidence bundles are assembled and signed in the CLI's process"},
	{"agent", []string{"model", "internal/loop", "store", "store/bolt", "inventory", "inventory/host", "inventory/containers", "inventory/containers/engine", "inventory/containers/containerd", "dataplane", "controller", "node", "server", "policies"}, [][]string{cluster},
		"the standalone agent composes the parts in one process"},
	{"transport", []string{"model", "store"}, [][]string{kernel, storage, {"sigs.k8s.io/controller-runtime", mod + "node", mod + "dataplane", mod + "observer", mod + "controller", mod + "lab"}},
		"the observation transport between node agents and the controller: HTTP, TokenReview and the TLS bootstrap Secret/ConfigMap are its only client-go uses; it moves observations and knows no kernel, controller or store implementation"},
	{"nodeagent", []string{"model", "internal/loop", "inventory", "inventory/kube", "store", "store/kube", "policies", "policies/v1alpha1", "node", "dataplane", "transport"}, [][]string{storage, {mod + "lab", mod + "agent", mod + "server"}},
		"the Kubernetes node agent composes the kube inventory source, the kube policy watcher and the node (and programs the fail-closed placeholder of a new pod netns with the dataplane, and runs the NanoSegmentProbes of its node); the API server is its store, so it never reaches bbolt, the lab or the standalone agent"},
	{"lab", []string{"internal/nsenter"}, [][]string{cluster, storage, {mod + "controller", mod + "dataplane", mod + "observer", mod + "policies", mod + "node", mod + "agent", mod + "inventory"}},
		"the lab is the world under test; it must not depend on what it tests"},
	{"manifests", nil, [][]string{kernel, cluster, storage},
		"the Kubernetes manifests (embedded YAML) and their renderer: apimachinery only; whoever applies them brings the client (its tests use internal/kubetest)"},
	{"lab/kubelab", []string{"lab"}, [][]string{storage, {"sigs.k8s.io/controller-runtime", mod + "controller", mod + "dataplane", mod + "observer", mod + "policies", mod + "node", mod + "agent", mod + "inventory"}},
		"registers a lab in an API server (a kube-named package: it may import client-go); like the lab, it must not depend on what it tests"},
	{"cmd/nanoseg", []string{anything}, nil, "the binary wires everything, the Kubernetes clients (lab registration, the node agent) included"},
	{"e2e", []string{anything}, [][]string{cluster}, "end-to-end tests use exported APIs and the built binary"},
	{"", nil, nil, "the module root holds only this fence"},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// matches reports whether import path dep is bad or below it; a bad
// ending in "/" matches every path with that prefix.
func matches(dep, bad string) bool {
	if bad == thirdPartyMark {
		return strings.Contains(strings.Split(dep, "/")[0], ".") && !strings.HasPrefix(dep, mod)
	}
	if strings.HasSuffix(bad, "/") {
		return strings.HasPrefix(dep, bad)
	}
	return dep == bad || strings.HasPrefix(dep, bad+"/")
}

// TestImportFences fails when a package imports a module package its row
// does not allow, reaches (directly or not) an import its row forbids, is
// missing from the table, or when a row names a package that no longer
// exists.
func TestImportFences(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found %d packages; the fence would check nothing", len(pkgs))
	}
	found := map[string]bool{}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, strings.TrimSuffix(mod, "/")), "/")
		found[rel] = true
		i := slices.IndexFunc(fence, func(f fenceRow) bool { return f.pkg == rel })
		if i < 0 {
			t.Errorf("%s is not in the fence table of deps_test.go: add a row saying what it may import and why", p.ImportPath)
			continue
		}
		f := fence[i]
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) || slices.Contains(f.allowed, anything) {
				continue
			}
			if !slices.Contains(f.allowed, strings.TrimPrefix(imp, mod)) {
				t.Errorf("%s imports %s, which its row does not allow: %s", p.ImportPath, imp, f.why)
			}
		}
		if rel != "cmd/nanoseg" && !strings.HasPrefix(rel, "internal/cmd/") {
			for _, imp := range p.Imports {
				for _, bad := range config {
					if matches(imp, bad) {
						t.Errorf("%s imports %s: only the commands (cmd/, internal/cmd/) read configuration sources and handle signals", p.ImportPath, imp)
					}
				}
			}
		}
		for _, d := range append(slices.Clone(p.Imports), p.Deps...) {
			for _, group := range f.forbidden {
				for _, bad := range group {
					if matches(d, bad) {
						t.Errorf("%s reaches %s: %s", p.ImportPath, d, f.why)
					}
				}
			}
		}
	}
	for _, f := range fence {
		if !found[f.pkg] {
			t.Errorf("the fence names %q, which no longer exists: remove or rename its row", f.pkg)
		}
	}
}
