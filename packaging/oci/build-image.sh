#!/usr/bin/env bash
# Builds the smarter-cni installer image, offline and reproducibly, from the static
# release tarballs of scripts/build-dist.sh:
#
#   dist/smarter-cni-installer-<version>.oci.tar
#       one OCI image layout (oci-layout, index.json, blobs/) whose index.json names one
#       multi-arch image index: linux/amd64, linux/arm64, linux/arm/v7. For containerd
#       (`ctr -n k8s.io images import --all-platforms`, k3s's air-gap images folder) and for
#       pushing to a registry (skopeo copy --all oci-archive:..., regctl image import).
#   dist/smarter-cni-installer-<version>-<platform>.tar   (platform: amd64, arm64, armv7)
#       one platform: the same OCI layout plus docker-save's manifest.json (Config,
#       RepoTags, Layers), so that Docker's own loader takes it too.
#
# Which loader reads what (checked against the real tools by tests/packaging/installer-image.sh;
# containerd: core/images/archive/importer.go, client/import.go; k3s: pkg/agent/containerd):
#   - Docker 20.10 `docker load` reads only manifest.json (no OCI loader): the single-platform
#     archives. The multi-arch .oci.tar has no manifest.json and is refused.
#   - Docker 26.1 `docker load` with its classic image store (the default, Debian's): the
#     same loader, the same rule. (With the containerd image store it reads index.json.)
#   - containerd 1.7 / 2.1 `ctr images import` reads index.json when oci-layout is there
#     (else manifest.json) and names images by the io.containerd.image.name annotation: both
#     kinds of archive. Without --all-platforms it keeps only the host's platform.
#   - k3s's air-gap folder (/var/lib/rancher/k3s/agent/images/*.tar, also .tar.gz/.tar.zst):
#     containerd's client.Import with WithAllPlatforms(true) and WithSkipMissing(), no
#     unpack, in the k8s.io namespace (pkg/agent/containerd/containerd.go, preloadFile):
#     both kinds; `ctr -n k8s.io images import --local --all-platforms` does the same import.
#
# Image: smarter-cni/installer:<version> (docker.io/smarter-cni/installer), one gzip layer
# with only /smarter-cni (the static binary) and the config files it installs under
# /usr/share/smarter-cni/{docker,bridge}/ — no shell, no distribution. Entrypoint
# ["/smarter-cni", "install"], Cmd ["--mode", "docker"], User 0:0, Env PATH=/.
#
# Reproducible: entries sorted, owner 0:0, mtimes SOURCE_DATE_EPOCH, gzip -9 without
# name or time (the layer is gzip-compressed: 1.4 MB binaries become about 0.75 MB, which
# matters to a gateway pulling over a slow uplink), JSON with sorted keys and no spaces.
# Two builds of the same dist/ and commit give byte-identical archives.
#
# Usage: packaging/oci/build-image.sh          (after scripts/build-dist.sh)
# Environment:
#   SMARTER_CNI_DIST        folder holding the dist tarballs (default <repo>/dist)
#   SMARTER_CNI_OCI_OUT     output folder (default: the same as SMARTER_CNI_DIST)
#   SMARTER_CNI_SOURCE_URL  the org.opencontainers.image.source label
#   SOURCE_DATE_EPOCH       timestamp of every file, of `created` (default: HEAD's commit time)
# Needs python3, tar, gzip, file, readelf (binutils).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
DIST=${SMARTER_CNI_DIST:-$REPO/dist}
OUT=${SMARTER_CNI_OCI_OUT:-$DIST}
SOURCE_URL=${SMARTER_CNI_SOURCE_URL:-https://github.com/smarter-project/smarter-cni}
IMAGE=smarter-cni/installer
# platform (file names) -> Rust target triple of the dist tarball
declare -A TRIPLE=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl
  [armv7]=armv7-unknown-linux-musleabihf)
PLATFORMS=(amd64 arm64 armv7)

die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-image: %s\n' "$*" >&2; }

# shellcheck source=../../scripts/lib/source-date-epoch.sh
source "$REPO/scripts/lib/source-date-epoch.sh"

# Debian's python3 when there is one (as build-dist.sh): the layer's gzip bytes are zlib's.
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=python3
for tool in "$PYTHON" tar gzip file readelf; do
  command -v "$tool" >/dev/null || die "'$tool' not found (apt-get install python3 tar gzip file binutils)"
done

version=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' "$REPO/Cargo.toml" | head -n1)
[[ $version =~ ^[0-9] ]] || die "cannot read the package version from $REPO/Cargo.toml (got '$version')"
SDE=$(source_date_epoch "$REPO")
[[ $SDE =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds (got '$SDE')"
revision=$(git -C "$REPO" rev-parse -q --verify HEAD 2>/dev/null || echo unknown)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# Unpack each dist tarball and check its binary: static, for the platform's machine.
inputs=()
for p in "${PLATFORMS[@]}"; do
  t=${TRIPLE[$p]}
  tarball=$DIST/smarter-cni-$version-$t.tar.gz
  [[ -f $tarball ]] ||
    die "$tarball is missing: run scripts/build-dist.sh (it writes the three tarballs into $DIST)"
  mkdir -p "$stage/$p"
  tar -xzf "$tarball" -C "$stage/$p" opt/cni/bin/smarter-cni etc/cni/net.d/10-smarter-cni.conflist \
    etc/smarter-cni/dnsmasq.conf ||
    die "$tarball lacks opt/cni/bin/smarter-cni or its configuration files: rebuild it with scripts/build-dist.sh"
  "$REPO/scripts/check-static.sh" "$stage/$p/opt/cni/bin/smarter-cni" "$t" >/dev/null ||
    die "$tarball: its binary is not a static $t executable (see above): rebuild with scripts/build-dist.sh"
  inputs+=(--input "$p=$stage/$p")
done

mkdir -p "$OUT"
log "smarter-cni $version ($revision), SOURCE_DATE_EPOCH=$SDE: image $IMAGE:$version into $OUT"
"$PYTHON" "$HERE/oci_archive.py" --version "$version" --revision "$revision" --source "$SOURCE_URL" \
  --epoch "$SDE" --reference "docker.io/$IMAGE:$version" --docker-tag "$IMAGE:$version" \
  --bridge-conflist "$REPO/images/rootfs-containerd/etc/cni/net.d/10-smarter-cni.conflist" \
  --bridge-dnsmasq "$REPO/images/rootfs/etc/smarter-cni/dnsmasq.conf" \
  "${inputs[@]}" --out "$OUT" >"$stage/summary"

# Sizes: the binary, the compressed layer, each archive (the layer is the bulk of it).
archives=("smarter-cni-installer-$version.oci.tar")
printf '%-8s %10s %10s  %s\n' platform binary layer archive
while read -r p bin layer _; do
  archives+=("smarter-cni-installer-$version-$p.tar")
  printf '%-8s %10s %10s  %s (%s bytes)\n' "$p" "${bin#binary=}" "${layer#layer=}" \
    "${archives[-1]}" "$(stat -c %s "$OUT/${archives[-1]}")"
done <"$stage/summary"
printf '%-8s %10s %10s  %s (%s bytes)\n' all - - "${archives[0]}" "$(stat -c %s "$OUT/${archives[0]}")"
(cd "$OUT" && sha256sum -- "${archives[@]}")
