package containers

import (
	"regexp"
	"strings"
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

// identity returns the namespace, workload and labels of an endpoint
// whose netns holds containers with the merged labels, the Podman pod
// name pod ("" when none) and the name of the container that owns the
// netns (name; "" for runtimes without names, then id). Rules, first
// match wins:
//
//	namespace: nanoseg.io/namespace, com.docker.compose.project, "default"
//	workload:  nanoseg.io/workload, com.docker.compose.service, the pod
//	           name, the container name without a replica suffix (-N, _N),
//	           the first 12 characters of its ID
//
// Labels are the merged labels without noise (IsNoiseLabel), with app set
// to the workload when no container has an app label.
func identity(labels map[string]string, pod, name, id string) (namespace, workload string, out map[string]string) {
	out = map[string]string{}
	for k, v := range labels {
		if !IsNoiseLabel(k, v) {
			out[k] = v
		}
	}
	namespace = firstNonEmpty(labels[LabelNamespace], labels[LabelComposeProject], DefaultNamespace)
	base := strings.TrimPrefix(name, "/")
	if m := replicaSfx.FindStringSubmatch(base); m != nil {
		base = m[1]
	}
	if base == "" && id != "" {
		base = id[:min(12, len(id))]
	}
	workload = firstNonEmpty(labels[LabelWorkload], labels[LabelComposeService], pod, base)
	if _, ok := out[LabelApp]; !ok {
		out[LabelApp] = workload
	}
	return namespace, workload, out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
