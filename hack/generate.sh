#!/usr/bin/env bash
# Regenerates the deep-copy functions of policies/v1alpha1 and
# policies/cnp/v1alpha2, and the CRD YAML in manifests/crds/ with
# controller-gen. Run through `make generate`; `make verify` fails
# when the committed files differ from what this produces.
#
# controller-gen is pinned by the `tool` directive in go.mod (its version is
# sigs.k8s.io/controller-tools in go.mod's require block; change it with
# `go get -tool sigs.k8s.io/controller-tools/cmd/controller-gen@vX.Y.Z`), so
# this runs offline once `go mod download` has filled the module cache.
set -euo pipefail
cd "$(dirname "$0")/.."
gen() { go tool controller-gen "$@"; }
gen object:headerFile=hack/boilerplate.go.txt paths=./policies/v1alpha1/...
gen crd:crdVersions=v1 paths=./policies/v1alpha1/... output:crd:artifacts:config=manifests/crds
# ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2): deep-copy, and a
# CRD of our own in manifests/crds/cnp/, outside the kustomization: install it
# only on a cluster that has no upstream CRD for the kind (docs/architecture.md).
gen object:headerFile=hack/boilerplate.go.txt paths=./policies/cnp/v1alpha2/...
gen crd:crdVersions=v1 paths=./policies/cnp/v1alpha2/... output:crd:artifacts:config=manifests/crds/cnp
