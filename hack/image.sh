#!/usr/bin/env bash
# Builds nanoseg's container image without a registry or an image builder:
# a static nanoseg binary (CGO_ENABLED=0) as /nanoseg, alone in one layer,
# written as a docker-archive tarball (the `docker save` layout) that
# `ctr -n k8s.io image import` and `podman load` accept:
#
#   manifest.json        [{"Config": "<config sha256>.json",
#                          "RepoTags": ["nanoseg.io/nanoseg:dev"],
#                          "Layers": ["<layer sha256>.tar"]}]
#   <config sha256>.json the image config: entrypoint /nanoseg, the layer's
#                        diff_id (sha256 of the uncompressed layer tar)
#   <layer sha256>.tar   the root filesystem: /nanoseg (root:root, 0755)
#
# Every file name is the sha256 of its content, as in docker save. The tar
# files are reproducible (sorted, numeric root owner, mtimes of the last
# commit), so one commit gives one image digest. Needs go, GNU tar and
# sha256sum.
#
# Usage: hack/image.sh  (make image); writes out/images/nanoseg.tar and prints
# its path. Environment: OUT (directory, default out/images), IMAGE (tag,
# default nanoseg.io/nanoseg:dev), GOARCH (default: go env GOARCH).
# Load it on a node:  ctr -n k8s.io image import out/images/nanoseg.tar
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-out/images}
image=${IMAGE:-nanoseg.io/nanoseg:dev}
arch=${GOARCH:-$(go env GOARCH)}
case "$image" in
  */*:*) ;;
  *) echo "hack/image.sh: IMAGE=$image: want a name with a domain and a tag, like nanoseg.io/nanoseg:dev" >&2; exit 2 ;;
esac
version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# Reproducible timestamps: the last commit's time (SOURCE_DATE_EPOCH wins).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/rootfs" "$work/archive" "$out"

CGO_ENABLED=0 GOOS=linux GOARCH="$arch" go build -trimpath \
  -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
  -o "$work/rootfs/nanoseg" ./cmd/nanoseg
chmod 0755 "$work/rootfs/nanoseg"

# tar with everything that varies between builds pinned.
rtar() {
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
    --format=ustar "$@"
}
rtar -C "$work/rootfs" -cf "$work/layer.tar" nanoseg
layer=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
mv "$work/layer.tar" "$work/archive/$layer.tar"

# The image config (OCI image spec, "config" section of the docker format).
printf '%s' "{\"architecture\":\"$arch\",\"os\":\"linux\",\"created\":\"$created\",\
\"config\":{\"Entrypoint\":[\"/nanoseg\"],\"Env\":[\"PATH=/\"],\
\"Labels\":{\"org.opencontainers.image.title\":\"nanoseg\",\"org.opencontainers.image.version\":\"$version\",\"org.opencontainers.image.revision\":\"$commit\"}},\
\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$layer\"]},\
\"history\":[{\"created\":\"$created\",\"created_by\":\"hack/image.sh\"}]}" >"$work/config.json"
config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
mv "$work/config.json" "$work/archive/$config.json"

printf '%s' "[{\"Config\":\"$config.json\",\"RepoTags\":[\"$image\"],\"Layers\":[\"$layer.tar\"]}]" >"$work/archive/manifest.json"

rtar -C "$work/archive" -cf "$work/nanoseg.tar" manifest.json "$config.json" "$layer.tar"
mv "$work/nanoseg.tar" "$out/nanoseg.tar"
echo "$out/nanoseg.tar"
