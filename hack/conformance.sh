#!/usr/bin/env bash
# make conformance: the upstream Kubernetes NetworkPolicy e2e suite (the
# Netpol specs of e2e.test; [Feature:SCTPConnectivity] skipped: no SCTP in
# this kernel) against nanoseg deployed from
# manifests/ as a DaemonSet on a real node (internal/kubetest/realnode:
# containerd, kubelet, bridge CNI) with kube-controller-manager,
# kube-scheduler and kube-proxy beside kubetest's API server. Root only;
# 15–25 min once the binaries are built (hack/kube-bins.sh, ~30 min the
# first time). Results: out/conformance/{summary.txt,e2e.log,junit*.xml,logs/};
# docs/conformance.md records the last score.
#
# Environment: NANOSEG_CONFORMANCE_FOCUS (ginkgo focus, default Netpol),
# NANOSEG_CONFORMANCE_OUT (default out/conformance), NANOSEG_IMAGE_TAR
# (nanoseg's image; default: hack/image.sh's, or one the test builds).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
if [ "$(id -u)" != 0 ]; then echo "make conformance: needs root (containerd, kubelet, a bridge)" >&2; exit 1; fi
bin=$(hack/kube-bins.sh kube-apiserver kubelet kubectl kube-proxy kube-scheduler kube-controller-manager agnhost e2e.test | tail -n1)
export NANOSEG_KUBE_BIN=$bin
if [ -z "${NANOSEG_IMAGE_TAR:-}" ] && [ -x hack/image.sh ]; then
  NANOSEG_IMAGE_TAR=$(realpath "$(hack/image.sh | tail -n1)")
  export NANOSEG_IMAGE_TAR
fi
export NANOSEG_CONFORMANCE=1 NANOSEG_KUBE_REQUIRED=1
export NANOSEG_CONFORMANCE_OUT=${NANOSEG_CONFORMANCE_OUT:-$PWD/out/conformance}
rm -rf "$NANOSEG_CONFORMANCE_OUT"
# The real node uses the host's addresses, cgroups and chains: one at a
# time, under the lock every kernel test takes.
exec flock /tmp/nanoseg-kernel.lock go test -count=1 -timeout 100m -run '^TestConformance$' -v ./internal/kubetest/realnode
