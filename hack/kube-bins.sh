#!/usr/bin/env bash
# Builds the Kubernetes binaries nanoseg's tests run (kube-apiserver, kubelet,
# kubectl, and on request the rest of a node and the e2e suite) from the
# k8s.io/kubernetes Go module, once per version, into
#   $NANOSEG_KUBE_CACHE/<version>/   (default ~/.cache/nanoseg/kube)
# and prints that directory. A binary whose --version already matches is not
# rebuilt (1–2 s). No registry, no prebuilt download: only the Go module proxy.
#
# usage: hack/kube-bins.sh [binary...]
#   default binaries: kube-apiserver kubelet kubectl
#   others: kube-proxy kube-scheduler kube-controller-manager e2e.test agnhost
#
# Why a throwaway module: `go install k8s.io/kubernetes/cmd/...@v` is refused
# (the module has replace directives) and its staging replace targets are not
# in the module zip, so we replace each staging module with its published tag
# (see ../shared/K8S.md, "Building the Kubernetes binaries from the module").
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=local GOFLAGS=-mod=mod
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
staging=v0.${KUBE_VERSION#v1.}
cache=${NANOSEG_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nanoseg/kube}
out=$cache/$KUBE_VERSION
bins=("$@")
[ ${#bins[@]} -gt 0 ] || bins=(kube-apiserver kubelet kubectl)

declare -A pkg=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kubelet]=k8s.io/kubernetes/cmd/kubelet
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [kube-proxy]=k8s.io/kubernetes/cmd/kube-proxy
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [agnhost]=k8s.io/kubernetes/test/images/agnhost
  [e2e.test]=k8s.io/kubernetes/test/e2e
)

current() { # binary: is it built at this version?
  local b=$1 f=$out/$1 v
  [ -x "$f" ] || return 1
  # The output is captured, not piped into grep -q: under pipefail, grep
  # quitting at the first match made kubectl (two lines) die of SIGPIPE,
  # and kubectl was rebuilt on every run.
  case $b in
    e2e.test|agnhost) [ -f "$f.version" ] && [ "$(cat "$f.version")" = "$KUBE_VERSION" ] ;;
    kubectl) v=$("$f" version --client 2>/dev/null) && [[ $v == *"$KUBE_VERSION"* ]] ;;
    *) v=$("$f" --version 2>/dev/null) && [[ $v == *"$KUBE_VERSION"* ]] ;;
  esac
}

todo=()
for b in "${bins[@]}"; do
  [ -n "${pkg[$b]:-}" ] || { echo "kube-bins: unknown binary $b (known: ${!pkg[*]})" >&2; exit 2; }
  current "$b" || todo+=("$b")
done
if [ ${#todo[@]} -eq 0 ]; then echo "$out"; exit 0; fi

mkdir -p "$out"
work=$cache/.module-$KUBE_VERSION
mkdir -p "$work"
cd "$work"
if [ ! -f go.sum ] || [ ! -f .tidy-done ]; then
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
  { echo "module nanoseg.local/kubebins"; echo; echo "go 1.26.0"; echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  { echo "package kubebins"; echo
    for p in "${pkg[@]}"; do echo "import _ \"$p\""; done
  } > imports.go
  # e2e and agnhost import test-only packages under main; tidy resolves all.
  go mod tidy >&2
  touch .tidy-done
fi
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
for b in "${todo[@]}"; do
  echo "kube-bins: building $b $KUBE_VERSION (first time: minutes)" >&2
  start=$(date +%s)
  if [ "$b" = e2e.test ]; then
    CGO_ENABLED=0 go test -c -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "${pkg[$b]}"
  else
    CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$b.tmp" "${pkg[$b]}"
  fi
  mv "$out/$b.tmp" "$out/$b"
  echo "$KUBE_VERSION" > "$out/$b.version"
  echo "kube-bins: $b built in $(( $(date +%s) - start )) s" >&2
done
echo "$out"
