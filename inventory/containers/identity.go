package containers

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels that name a container's identity, in the order the mapping
// reads them (docs/architecture.md "Containers on one host").
const (
	// LabelNamespace names the endpoint's namespace outright.
	LabelNamespace = "nanoseg.io/namespace"
	// LabelWorkload names the endpoint's workload outright.
	LabelWorkload = "nanoseg.io/workload"
	// LabelComposeProject is set by Docker Compose and podman-compose on
	// every container of a project: the namespace when LabelNamespace is
	// absent.
	LabelComposeProject = "com.docker.compose.project"
	// LabelComposeService is set by Compose on every container of a
	// service: the workload when LabelWorkload is absent.
	LabelComposeService = "com.docker.compose.service"
	// LabelApp is the label policies select workloads by; the mapping
	// sets it to the workload when the container has none.
	LabelApp = "app"
	// DefaultNamespace is the namespace of a container no label places.
	DefaultNamespace = "default"
)

// noisePrefixes are label key prefixes that never identify a workload:
// image metadata (which Docker and Podman merge into the container's
// labels), runtime bookkeeping and Compose's per-container and
// per-revision labels.
// nerdctl/ holds nerdctl's bookkeeping (name, ports as JSON, networks, state dir, log URI): the containerd runtime reads name and ports from it, and none of it is identity.
var noisePrefixes = []string{
	"org.opencontainers.", "org.label-schema.", "io.podman.", "io.buildah.", "io.containerd.",
	"com.redhat.", "nerdctl/", "io.k8s.", "io.openshift.", "com.docker.desktop.",
	"com.docker.compose.", // except project and service (composeKept)
}

// composeKept are the Compose labels that stay: they name the identity.
var composeKept = map[string]bool{LabelComposeProject: true, LabelComposeService: true}

// noiseKeys are image metadata keys common in base images (Red Hat's,
// label-schema's unprefixed forms) and runtime bookkeeping.
var noiseKeys = map[string]bool{
	"maintainer": true, "description": true, "summary": true, "vendor": true, "version": true,
	"release": true, "build-date": true, "vcs-ref": true, "vcs-type": true, "vcs-url": true,
	"architecture": true, "url": true, "name": true, "distribution-scope": true, "license": true,
	"authoritative-source-url": true, "PODMAN_SYSTEMD_UNIT": true,
}

var (
	digestValue = regexp.MustCompile(`^(sha256|sha512):[0-9a-f]{32,}$`)
	idValue     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	replicaSfx  = regexp.MustCompile(`^(.+?)[-_][0-9]+$`)
)

// IsNoiseLabel reports whether a container label (key and value) never
// identifies a workload and is dropped from endpoints: keys under
// noisePrefixes (Compose's project and service excepted), image metadata
// keys, and values that are image digests or 64-hex container IDs.
func IsNoiseLabel(key, value string) bool {
	if noiseKeys[key] || digestValue.MatchString(value) || idValue.MatchString(value) {
		return true
	}
	if composeKept[key] {
		return false
	}
	for _, p := range noisePrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// MaxWorkloadLen is the longest workload name a label or container name
// may give, in bytes: a DNS-1123 label's length, so that the rule ids
// built from namespace and workload stay within the verdict log's limit.
const MaxWorkloadLen = 63

// ValidNamespace returns why s cannot be an endpoint's namespace (nil when
// it can): it must be a DNS-1123 label, as Kubernetes namespaces are
// (k8s.io/apimachinery validation.IsDNS1123Label: lowercase alphanumerics
// and '-', at most 63 bytes, alphanumeric at both ends).
func ValidNamespace(s string) error {
	if msgs := validation.IsDNS1123Label(s); len(msgs) > 0 {
		return fmt.Errorf("%q is not a DNS-1123 label: %s", clip(s), strings.Join(msgs, "; "))
	}
	return nil
}

// ValidWorkload returns why s cannot be an endpoint's workload (nil when
// it can): a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.',
// alphanumeric at both ends, as Kubernetes object names) of at most
// MaxWorkloadLen bytes.
func ValidWorkload(s string) error {
	if msgs := validation.IsDNS1123Subdomain(s); len(msgs) > 0 {
		return fmt.Errorf("%q is not a DNS-1123 subdomain: %s", clip(s), strings.Join(msgs, "; "))
	}
	if len(s) > MaxWorkloadLen {
		return fmt.Errorf("%q is %d bytes, more than %d", clip(s), len(s), MaxWorkloadLen)
	}
	return nil
}

// clip shortens s for a message (a label may be 20,000 characters).
func clip(s string) string {
	if len(s) > 70 {
		return s[:64] + "..."
	}
	return s
}

// identity returns the namespace, workload and labels of an endpoint
// whose netns holds containers with the merged labels, the Podman pod
// name pod ("" when none) and the name of the container that owns the
// netns (name; "" for runtimes without names, then id). Rules, first
// valid match wins:
//
//	namespace: nanoseg.io/namespace, com.docker.compose.project, "default"
//	workload:  nanoseg.io/workload, com.docker.compose.service, the pod
//	           name, the container name without a replica suffix (-N, _N),
//	           the first 12 characters of its ID
//
// A namespace must pass ValidNamespace and a workload ValidWorkload; a
// value that does not is skipped (the next rule applies) and reported in
// rejected, one sentence each naming the label or name.
//
// Labels are the merged labels without noise (IsNoiseLabel) and without
// those whose key is not a Kubernetes qualified name or whose value is not
// a valid Kubernetes label value (policies select on them; each dropped
// one is reported in rejected), with app set to the workload when no
// container has an app label.
func identity(labels map[string]string, pod, name, id string) (namespace, workload string, out map[string]string, rejected []string) {
	out = map[string]string{}
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		if IsNoiseLabel(k, v) {
			continue
		}
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			rejected = append(rejected, fmt.Sprintf("label key %q dropped: not a Kubernetes label key (%s)", clip(k), strings.Join(msgs, "; ")))
			continue
		}
		if msgs := validation.IsValidLabelValue(v); len(msgs) > 0 {
			rejected = append(rejected, fmt.Sprintf("label %s=%q dropped: not a Kubernetes label value (%s)", k, clip(v), strings.Join(msgs, "; ")))
			continue
		}
		out[k] = v
	}
	type cand struct{ from, v string }
	pick := func(what string, valid func(string) error, cs ...cand) string {
		for _, c := range cs {
			if c.v == "" {
				continue
			}
			if err := valid(c.v); err != nil {
				rejected = append(rejected, fmt.Sprintf("%s from %s not used: %v", what, c.from, err))
				continue
			}
			return c.v
		}
		return ""
	}
	namespace = pick("namespace", ValidNamespace,
		cand{"label " + LabelNamespace, labels[LabelNamespace]},
		cand{"label " + LabelComposeProject, labels[LabelComposeProject]},
		cand{"the default", DefaultNamespace})
	base := strings.TrimPrefix(name, "/")
	if m := replicaSfx.FindStringSubmatch(base); m != nil {
		base = m[1]
	}
	short := id[:min(12, len(id))]
	workload = pick("workload", ValidWorkload,
		cand{"label " + LabelWorkload, labels[LabelWorkload]},
		cand{"label " + LabelComposeService, labels[LabelComposeService]},
		cand{"the pod name", pod},
		cand{"the container name", base},
		cand{"the container ID", strings.ToLower(short)})
	if workload == "" {
		// No ID either (a runtime answered without one): a fixed name
		// keeps the endpoint managed rather than unnamed.
		workload = "container"
	}
	if _, ok := out[LabelApp]; !ok {
		out[LabelApp] = workload
	}
	return namespace, workload, out, rejected
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
