#!/usr/bin/env bash
# Regenerates the deep-copy functions of policies/v1alpha1 and the CRD YAML in
# manifests/crds/ with controller-gen. Run through `make generate`; `make
# verify` fails when the committed files differ from what this produces.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTROLLER_GEN_VERSION="${CONTROLLER_GEN_VERSION:-v0.23.0}"
gen() { go run "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_GEN_VERSION}" "$@"; }
gen object:headerFile=hack/boilerplate.go.txt paths=./policies/v1alpha1/...
gen crd:crdVersions=v1 paths=./policies/v1alpha1/... output:crd:artifacts:config=manifests/crds
