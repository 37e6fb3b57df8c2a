#!/usr/bin/env bash
# The installer image archives of packaging/oci/build-image.sh (issue 14), against the real
# loaders: the private Docker 20.10 and 26.1 engines (scripts/engines.sh), the private
# containerd 1.7 and 2.1 daemons (scripts/containerd.sh) and qemu-user:
#
#  - the static binaries (scripts/build-dist.sh, incremental) become the image archives; a
#    second build is byte-identical; a missing dist tarball, or one whose binary is not a
#    static build for its platform, is refused with what to do;
#  - each archive holds what the OCI image-spec says: every blob named by its sha256, the
#    layer's diff_id in the config, exactly the contract's files, owner 0:0, SOURCE_DATE_EPOCH;
#  - each single-platform archive loads with `docker load` into both engines: the image ID is
#    the archive's config, inspect shows Os/Architecture/Variant, Entrypoint, Cmd, User;
#    `docker export` of a container holds exactly the contract's files (no /bin/sh); the amd64
#    container runs (`--entrypoint /smarter-cni ... --version`), and so do the arm64 and armv7
#    ones (`docker run --platform`) through binfmt_misc's qemu entries (registered with
#    update-binfmts when missing, as the image tier does for arm64; left registered);
#  - the multi-arch .oci.tar is refused by `docker load` (both engines read only docker-save's
#    manifest.json, see build-image.sh) and imports into both containerd daemons with
#    `ctr -n k8s.io images import --all-platforms`: one image, three platforms, every blob in
#    the content store; the amd64 and the multi-arch archives import as k3s's air-gap folder
#    does (client.Import with all platforms, no unpack: `ctr import --local --all-platforms
#    --no-unpack`); each import runs under containerd (`ctr run ... /smarter-cni --version`);
#  - the binary of each platform, taken from the multi-arch index (index -> manifest ->
#    layer), is a static build for that machine and runs: x86_64 natively, arm64 and armv7
#    under qemu-aarch64-static / qemu-arm-static (`--version`, and `install --help` once the
#    binary has the install subcommand, `--help` until then).
# Images it loads are removed afterwards (a tag that pointed elsewhere before is put back);
# containers are named sct-oci-<pid>-*. Prints the archive sizes and the tier's duration.
# Usage: tests/packaging/installer-image.sh   (root, Debian 12; after scripts/engines.sh start)
# Environment: SMARTER_CNI_DIST=<dir> uses the dist tarballs there instead of building them.
# shellcheck disable=SC2317 # the traps call functions indirectly
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}
TARGET_DIR=${SMARTER_CNI_TARGET_DIR:-$CACHE/target}
NAME=smarter-cni/installer
TAG_PREFIX=sct-oci-$$
# What `docker export` adds to any container's filesystem (not the image's).
DOCKER_OWN='^(\.dockerenv|dev/.*|etc/|etc/(hostname|hosts|mtab|resolv\.conf)|proc/|sys/)$'
# shellcheck source=tests/packaging/lib/upgrade-under-load.sh
. "$REPO/tests/packaging/lib/upgrade-under-load.sh"

begin_test oci-test

# ------------------------------------------------------------------ cleanup
# Per engine host: the image ID the tag had before this test ("" when none).
declare -A PREV_ID=()
LOADED=() # "host id" of every image this test loaded
dk() { "$DOCKER" -H "$@"; } # host args...
ctr_() { # version args...
  local v=$1
  shift
  "/var/cache/smarter-cni-test/containerd/$v/root/usr/bin/ctr" --address "/run/smarter-cni-test/containerd-$v/containerd.sock" -n k8s.io "$@"
}
# The image's name, and the references by config digest (the image ID) that containerd's
# CRI plugin adds to the images of the k8s.io namespace.
ctr_images_rm() { # version
  local refs=("docker.io/$NAME:$VERSION") c
  for c in "$WORK"/a/*.config; do [ -e "$c" ] && refs+=("sha256:$(cat "$c")"); done
  ctr_ "$1" images rm "${refs[@]}" >/dev/null 2>&1
}
cleanup() {
  local host c entry id v
  for host in "$D20_HOST" "$D26_HOST"; do
    for c in $(dk "$host" ps -aq --filter "name=^$TAG_PREFIX-" 2>/dev/null); do dk "$host" rm -f "$c" >/dev/null 2>&1; done
  done
  for entry in "${LOADED[@]}"; do
    read -r host id <<<"$entry"
    [ "$id" = "${PREV_ID[$host]:-}" ] && continue # it was there before: leave it
    dk "$host" rmi "$id" >/dev/null 2>&1
  done
  for host in "${!PREV_ID[@]}"; do
    [ -n "${PREV_ID[$host]}" ] && dk "$host" tag "${PREV_ID[$host]}" "$NAME:$VERSION" 2>/dev/null
  done
  for v in 1.7 2.1; do
    ctr_ "$v" tasks kill -s KILL "$TAG_PREFIX-$v" >/dev/null 2>&1
    ctr_ "$v" containers rm "$TAG_PREFIX-$v" >/dev/null 2>&1
    ctr_images_rm "$v"
  done
  rm -rf "$WORK"
}
VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' "$REPO/Cargo.toml" | head -n1)
trap cleanup EXIT

# ------------------------------------------------------------------ tools
install_tools python3:python3 jq:jq file:file readelf:binutils shellcheck:shellcheck \
  qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support
"$REPO/scripts/containerd.sh" start >"$WORK/containerd.log" 2>&1 ||
  { cat "$WORK/containerd.log"; fail "containerd 1.7 and 2.1 started (scripts/containerd.sh start)"; finish; }

check "shellcheck: packaging/oci/build-image.sh and this test" bash -c \
  "cd '$REPO' && shellcheck -x -P SCRIPTDIR packaging/oci/build-image.sh tests/packaging/installer-image.sh"

# ------------------------------------------------------------------ build
if [ -n "${SMARTER_CNI_DIST:-}" ]; then
  DIST=$SMARTER_CNI_DIST
  log "dist tarballs from SMARTER_CNI_DIST=$DIST (not rebuilt)"
else
  DIST=$WORK/dist
  log "static binaries (scripts/build-dist.sh, incremental in $TARGET_DIR)"
  if ! SMARTER_CNI_TARGET_DIR=$TARGET_DIR SMARTER_CNI_DIST=$DIST "$REPO/scripts/build-dist.sh" >"$WORK/build-dist.log" 2>&1; then
    tail -n 30 "$WORK/build-dist.log"
    fail "static binaries built"
    finish
  fi
fi

log "image archives (packaging/oci/build-image.sh), twice"
build_image() { # out-dir
  mkdir -p "$1" && SMARTER_CNI_DIST=$DIST SMARTER_CNI_OCI_OUT=$1 "$REPO/packaging/oci/build-image.sh" >"$1.log" 2>&1
}
build_start=$SECONDS
if ! build_image "$WORK/a"; then
  cat "$WORK/a.log"
  fail "build-image.sh"
  finish
fi
pass "build-image.sh ($((SECONDS - build_start)) s)"
sed -n '/^platform/,/^all/p' "$WORK/a.log"
A=$WORK/a/smarter-cni-installer-$VERSION
ARCHIVES=("$A.oci.tar" "$A-amd64.tar" "$A-arm64.tar" "$A-armv7.tar")
for p in amd64 arm64 armv7; do # the image IDs, for the cleanup
  tar -xOf "$A-$p.tar" manifest.json | jq -r '.[0].Config | sub("blobs/sha256/"; "")' >"$WORK/a/$p.config"
done
identical() {
  local f
  build_image "$WORK/b" || { cat "$WORK/b.log"; return 1; }
  for f in "${ARCHIVES[@]}"; do cmp "$f" "$WORK/b/${f##*/}" || return 1; done
}
check "the archives are reproducible (a second build is byte-identical)" identical

# Refusals: a missing tarball; an arm64 tarball that holds the x86_64 binary.
refused() { # message-pattern dist-dir
  if SMARTER_CNI_DIST=$2 SMARTER_CNI_OCI_OUT=$WORK/refused "$REPO/packaging/oci/build-image.sh" >"$WORK/refused.log" 2>&1 ||
    ! grep -q -- "$1" "$WORK/refused.log" || [ -e "$WORK/refused/smarter-cni-installer-$VERSION.oci.tar" ]; then
    sed 's/^/     /' "$WORK/refused.log"
    return 1
  fi
}
mkdir -p "$WORK/no-dist" "$WORK/bad-dist/x"
check "a missing dist tarball is refused: 'run scripts/build-dist.sh'" refused "missing: run scripts/build-dist.sh" "$WORK/no-dist"
wrong_arch() {
  cp "$DIST"/smarter-cni-"$VERSION"-*.tar.gz "$WORK/bad-dist/" &&
    tar -xzf "$DIST/smarter-cni-$VERSION-aarch64-unknown-linux-musl.tar.gz" -C "$WORK/bad-dist/x" &&
    tar -xzf "$DIST/smarter-cni-$VERSION-x86_64-unknown-linux-musl.tar.gz" -C "$WORK/bad-dist/x" opt/cni/bin/smarter-cni &&
    tar -czf "$WORK/bad-dist/smarter-cni-$VERSION-aarch64-unknown-linux-musl.tar.gz" -C "$WORK/bad-dist/x" etc opt usr &&
    refused "not a static aarch64-unknown-linux-musl executable" "$WORK/bad-dist"
}
check "a dist tarball whose binary is for another machine is refused" wrong_arch

# ------------------------------------------------------------------ structure (OCI image-spec)
SDE=$(. "$REPO/scripts/lib/source-date-epoch.sh" && source_date_epoch "$REPO")
EXPECTED_FILES=$(printf '%s\n' smarter-cni \
  usr/share/smarter-cni/{docker,bridge}/etc/cni/net.d/10-smarter-cni.conflist \
  usr/share/smarter-cni/{docker,bridge}/etc/smarter-cni/dnsmasq.conf | LC_ALL=C sort)
blob() { tar -xOf "$1" "blobs/sha256/${2#sha256:}"; } # archive digest
# Unpacks an archive to $WORK/x/<name>; every blob's name is its sha256.
unpack() { # archive
  local d=$WORK/x/${1##*/} f
  rm -rf "$d" && mkdir -p "$d" && tar -xf "$1" -C "$d" || return 1
  for f in "$d"/blobs/sha256/*; do
    [ "$(sha256sum <"$f" | cut -d' ' -f1)" = "${f##*/}" ] || { echo "     ${f##*/}: content does not match its name" >&2; return 1; }
  done
  echo "$d"
}
# One platform's image in an unpacked layout: manifest digest -> config and layer checks.
image_ok() { # layout-dir manifest-digest arch variant
  local d=$1 m c l cfg listing
  m=$d/blobs/sha256/${2#sha256:}
  [ "$(jq -r .mediaType "$m")" = application/vnd.oci.image.manifest.v1+json ] || { echo "     manifest mediaType"; return 1; }
  c=$d/blobs/sha256/$(jq -r '.config.digest | sub("sha256:"; "")' "$m")
  l=$d/blobs/sha256/$(jq -r '.layers[0].digest | sub("sha256:"; "")' "$m")
  if [ "$(jq '.layers | length' "$m")" != 1 ] || [ "$(stat -c %s "$l")" != "$(jq .layers[0].size "$m")" ] ||
    [ "$(stat -c %s "$c")" != "$(jq .config.size "$m")" ]; then
    echo "     sizes/layers of the manifest"
    return 1
  fi
  [ "sha256:$(gzip -dc "$l" | sha256sum | cut -d' ' -f1)" = "$(jq -r '.rootfs.diff_ids[0]' "$c")" ] ||
    { echo "     diff_id is not the uncompressed layer's sha256"; return 1; }
  cfg=$(jq -c --arg v "$VERSION" '[.os, .architecture, (.variant // ""), .config.Entrypoint, .config.Cmd, .config.User,
    .config.Env, (.config.Labels | keys), .config.Labels["org.opencontainers.image.version"] == $v]' "$c")
  [ "$cfg" = "[\"linux\",\"$3\",\"$4\",[\"/smarter-cni\",\"install\"],[\"--mode\",\"docker\"],\"0:0\",[\"PATH=/\"],[\"org.opencontainers.image.created\",\"org.opencontainers.image.revision\",\"org.opencontainers.image.source\",\"org.opencontainers.image.title\",\"org.opencontainers.image.version\"],true]" ] ||
    { echo "     config: $cfg"; return 1; }
  # Files: exactly the contract's, each with its parent folders; 0:0; mtime SOURCE_DATE_EPOCH.
  listing=$(gzip -dc "$l" | tar -tv --numeric-owner --full-time)
  [ "$(gzip -dc "$l" | tar -t | grep -v '/$' | LC_ALL=C sort)" = "$EXPECTED_FILES" ] || { echo "     layer files: $(gzip -dc "$l" | tar -t | tr '\n' ' ')"; return 1; }
  ! grep -qv ' 0/0 ' <<<"$listing" || { echo "     an entry not owned by 0/0"; return 1; }
  [ "$(gzip -dc "$l" | tar -t --utc --full-time -v | awk '{print $4 " " $5}' | sort -u)" = "$(date -u -d "@$SDE" '+%F %T')" ] ||
    { echo "     mtimes are not SOURCE_DATE_EPOCH ($SDE)"; return 1; }
  grep -q '^-rwxr-xr-x .* smarter-cni$' <<<"$listing" || { echo "     /smarter-cni is not 0755"; return 1; }
}
declare -A ARCH=([amd64]=amd64 [arm64]=arm64 [armv7]=arm) VARIANT=([amd64]="" [arm64]="" [armv7]=v7)
declare -A OCI_PLATFORM=([amd64]=linux/amd64 [arm64]=linux/arm64 [armv7]=linux/arm/v7)
declare -A TRIPLE=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl [armv7]=armv7-unknown-linux-musleabihf)
single_ok() { # platform
  local f=$A-$1.tar d m
  [ "$(tar -tf "$f" | LC_ALL=C sort | sed 's|^blobs/sha256/[0-9a-f]\{64\}$|blob|' | tr '\n' ' ')" = \
    "blobs/ blobs/sha256/ blob blob blob index.json manifest.json oci-layout " ] || { echo "     entries: $(tar -tf "$f" | tr '\n' ' ')"; return 1; }
  d=$(unpack "$f") || return 1
  [ "$(jq -c . "$d/oci-layout")" = '{"imageLayoutVersion":"1.0.0"}' ] || return 1
  m=$(jq -r --arg ref "docker.io/$NAME:$VERSION" '.manifests | select(length == 1) | .[0]
    | select(.annotations["io.containerd.image.name"] == $ref and .annotations["org.opencontainers.image.ref.name"] == $ref)
    | .digest' "$d/index.json")
  [ -n "$m" ] || { echo "     index.json: $(cat "$d/index.json")"; return 1; }
  # docker-save's manifest.json names the same config and layer as the OCI manifest.
  [ "$(jq -c '.[0] | [.Config, .Layers, .RepoTags]' "$d/manifest.json")" = \
    "$(jq -c --arg t "$NAME:$VERSION" '["blobs/sha256/" + (.config.digest | sub("sha256:"; "")),
      [.layers[].digest | "blobs/sha256/" + sub("sha256:"; "")], [$t]]' "$d/blobs/sha256/${m#sha256:}")" ] ||
    { echo "     manifest.json: $(cat "$d/manifest.json")"; return 1; }
  image_ok "$d" "$m" "${ARCH[$1]}" "${VARIANT[$1]}"
}
for p in amd64 arm64 armv7; do
  check "$p archive: OCI layout + docker-save manifest.json, config, one layer with exactly the contract's files" single_ok "$p"
done
multi_ok() {
  local d idx p m
  d=$(unpack "$A.oci.tar") || return 1
  [ ! -e "$d/manifest.json" ] || return 1
  idx=$(jq -r --arg ref "docker.io/$NAME:$VERSION" '.manifests | select(length == 1) | .[0]
    | select(.mediaType == "application/vnd.oci.image.index.v1+json" and .annotations["io.containerd.image.name"] == $ref)
    | .digest' "$d/index.json")
  [ -n "$idx" ] || { echo "     index.json: $(cat "$d/index.json")"; return 1; }
  [ "$(jq -c '[.manifests[].platform | [.os, .architecture, .variant // ""] | join("/")]' "$d/blobs/sha256/${idx#sha256:}")" = \
    '["linux/amd64/","linux/arm64/","linux/arm/v7"]' ] || { echo "     platforms of the index"; return 1; }
  for p in amd64 arm64 armv7; do
    m=$(jq -r --arg a "${ARCH[$p]}" '.manifests[] | select(.platform.architecture == $a) | .digest' "$d/blobs/sha256/${idx#sha256:}")
    image_ok "$d" "$m" "${ARCH[$p]}" "${VARIANT[$p]}" || return 1
    # The same image as the single-platform archive's.
    cmp -s "$d/blobs/sha256/${m#sha256:}" "$WORK/x/${A##*/}-$p.tar/blobs/sha256/${m#sha256:}" ||
      { echo "     $p: not the manifest of the $p archive"; return 1; }
    # Its binary, for the qemu checks below.
    blob "$A.oci.tar" "$(jq -r '.layers[0].digest' "$d/blobs/sha256/${m#sha256:}")" | gzip -dc |
      tar -xO smarter-cni >"$WORK/bin-$p" && chmod 0755 "$WORK/bin-$p" || return 1
  done
}
check "multi-arch .oci.tar: index.json -> one image index of linux/amd64, linux/arm64, linux/arm/v7 (the same images)" multi_ok

# ------------------------------------------------------------------ Docker 20.10 and 26.1
# binfmt_misc entry for a container of another machine (F: the interpreter is opened by the
# kernel at registration, so it works inside a container's filesystem).
binfmt() { # qemu-name
  local e=/proc/sys/fs/binfmt_misc/$1
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null
  if [ ! -e "$e" ]; then
    update-binfmts --enable "$1" >/dev/null 2>&1 && echo "     (registered $1 with binfmt_misc: update-binfmts --enable $1)"
  fi
  grep -qx enabled "$e" 2>/dev/null && grep -q '^flags: .*F' "$e"
}
declare -A QEMU=([arm64]=qemu-aarch64 [armv7]=qemu-arm)
docker_platform() { # engine-label host platform
  local host=$2 p=$3 f=$A-$3.tar id want got c files
  want=sha256:$(sha256sum <"$WORK/x/${f##*/}/blobs/sha256/$(jq -r '.[0].Config | sub("blobs/sha256/"; "")' "$WORK/x/${f##*/}/manifest.json")" | cut -d' ' -f1)
  if ! dk "$host" load -i "$f" >"$WORK/load.log" 2>&1 || ! grep -qx "Loaded image: $NAME:$VERSION" "$WORK/load.log" ||
    ! id=$(dk "$host" image inspect -f '{{.Id}}' "$NAME:$VERSION"); then
    fail "$1: docker load $p" "$(cat "$WORK/load.log")"
    return
  fi
  LOADED+=("$host $id")
  check "$1: docker load $p archive: image $NAME:$VERSION is the archive's config ($want)" [ "$id" = "$want" ]
  got=$(dk "$host" image inspect -f '{{.Os}}/{{.Architecture}}/{{.Variant}} {{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.User}}' "$id")
  check "$1: $p inspect: $got" [ "$got" = "linux/${ARCH[$p]}/${VARIANT[$p]} [\"/smarter-cni\",\"install\"] [\"--mode\",\"docker\"] 0:0" ]
  c=$(dk "$host" create --name "$TAG_PREFIX-$p" "$id" 2>/dev/null) &&
    files=$(dk "$host" export "$c" | tar -t | grep -Ev "$DOCKER_OWN" | grep -v '/$' | LC_ALL=C sort)
  check "$1: $p container's filesystem (docker export) is exactly the contract's files, no /bin/sh" [ "$files" = "$EXPECTED_FILES" ]
  dk "$host" rm -f "$TAG_PREFIX-$p" >/dev/null 2>&1
  if [ "$p" = amd64 ]; then
    got=$(dk "$host" run --rm --name "$TAG_PREFIX-run" --entrypoint /smarter-cni "$id" --version 2>&1)
    check "$1: amd64 container runs: --entrypoint /smarter-cni ... --version: $got" [ "$got" = "smarter-cni $VERSION" ]
  elif binfmt "${QEMU[$p]}"; then
    got=$(dk "$host" run --rm --name "$TAG_PREFIX-run" --platform "${OCI_PLATFORM[$p]}" --entrypoint /smarter-cni "$NAME:$VERSION" --version 2>&1)
    check "$1: $p container runs (--platform ${OCI_PLATFORM[$p]}, binfmt_misc ${QEMU[$p]}): $got" [ "$got" = "smarter-cni $VERSION" ]
  else
    echo "not run (not counted): $1: $p container: binfmt_misc has no usable ${QEMU[$p]} entry (update-binfmts --enable ${QEMU[$p]})"
  fi
  # The next platform's load takes the tag; this image goes now.
  [ "$id" = "${PREV_ID[$host]}" ] || dk "$host" rmi "$id" >/dev/null 2>&1
}
for engine in "Docker 20.10:$D20_HOST" "Docker 26.1:$D26_HOST"; do
  label=${engine%%:*} host=${engine#*:}
  log "$label: docker load"
  PREV_ID[$host]=$(dk "$host" image inspect -f '{{.Id}}' "$NAME:$VERSION" 2>/dev/null)
  for p in amd64 arm64 armv7; do docker_platform "$label" "$host" "$p"; done
  # Documented in build-image.sh: Docker's loader needs docker-save's manifest.json.
  if dk "$host" load -i "$A.oci.tar" >"$WORK/load.log" 2>&1; then
    fail "$label: docker load refuses the multi-arch .oci.tar (no manifest.json): it loaded it" "$(cat "$WORK/load.log")"
  else
    pass "$label: docker load refuses the multi-arch .oci.tar (no manifest.json; load a single-platform archive)"
  fi
done

# ------------------------------------------------------------------ containerd 1.7 and 2.1
ctr_run_version() { # version
  ctr_ "$1" run --rm "docker.io/$NAME:$VERSION" "$TAG_PREFIX-$1" /smarter-cni --version 2>&1
}
for v in 1.7 2.1; do
  log "containerd $v: ctr -n k8s.io images import"
  if ctr_ "$v" images import --all-platforms "$A.oci.tar" >"$WORK/import.log" 2>&1; then
    pass "containerd $v: ctr images import --all-platforms of the multi-arch .oci.tar"
    got=$(ctr_ "$v" images ls | awk -v n="docker.io/$NAME:$VERSION" '$1 == n { print $(NF-1) }')
    check "containerd $v: images ls: docker.io/$NAME:$VERSION for $got" [ "$got" = linux/amd64,linux/arm/v7,linux/arm64 ]
    all_blobs() {
      local have b
      have=$(ctr_ "$v" content ls -q)
      for b in "$WORK/x/${A##*/}.oci.tar"/blobs/sha256/*; do grep -qx "sha256:${b##*/}" <<<"$have" || { echo "     missing ${b##*/}"; return 1; }; done
    }
    check "containerd $v: every blob of the three platforms is in the content store" all_blobs
    got=$(ctr_run_version "$v")
    check "containerd $v: ctr run of the multi-arch image (amd64): --version: $got" [ "$got" = "smarter-cni $VERSION" ]
  else
    fail "containerd $v: ctr images import --all-platforms of the multi-arch .oci.tar" "$(cat "$WORK/import.log")"
  fi
  ctr_images_rm "$v"
  # k3s's air-gap folder: client.Import(WithAllPlatforms(true), WithSkipMissing()), no unpack;
  # `ctr import --local` is the same client.Import (without WithSkipMissing, which only
  # matters for an archive that lacks blobs). Both kinds of archive.
  for kind in "amd64:$A-amd64.tar:application/vnd.oci.image.manifest.v1+json linux/amd64" \
    "multi-arch:$A.oci.tar:application/vnd.oci.image.index.v1+json linux/amd64,linux/arm/v7,linux/arm64"; do
    IFS=: read -r what file want <<<"$kind"
    if ctr_ "$v" images import --local --all-platforms --no-unpack "$file" >"$WORK/import.log" 2>&1; then
      got=$(ctr_ "$v" images ls | awk -v n="docker.io/$NAME:$VERSION" '$1 == n { print $2 " " $(NF-1) }')
      check "containerd $v: the $what archive imports as k3s's air-gap folder does: $got" [ "$got" = "$want" ]
      got=$(ctr_run_version "$v")
      check "containerd $v: ctr run of that import (unpacked on demand): --version: $got" [ "$got" = "smarter-cni $VERSION" ]
    else
      fail "containerd $v: ctr images import --local --all-platforms --no-unpack of the $what archive" "$(cat "$WORK/import.log")"
    fi
    ctr_images_rm "$v"
  done
done

# ------------------------------------------------------------------ the binaries under qemu-user
log "the image's binaries, natively and under qemu-user"
declare -A RUNNER=([amd64]="" [arm64]=/usr/bin/qemu-aarch64-static [armv7]=/usr/bin/qemu-arm-static)
runs() { # platform
  local b=$WORK/bin-$1 r=${RUNNER[$1]} out help
  "$REPO/scripts/check-static.sh" "$b" "${TRIPLE[$1]}" >/dev/null || return 1
  out=$($r "$b" --version 2>&1)
  [ "$out" = "smarter-cni $VERSION" ] || { echo "     --version: $out"; return 1; }
  help=$($r "$b" --help 2>&1) || { echo "     --help failed: $help"; return 1; }
  if grep -q 'smarter-cni install' <<<"$help"; then
    $r "$b" install --help >"$WORK/help.log" 2>&1 || { sed 's/^/     /' "$WORK/help.log"; return 1; }
    echo "     install --help: ok"
  else
    echo "     --help: ok (this build has no install subcommand yet)"
  fi
}
for p in amd64 arm64 armv7; do
  check "$p binary from the multi-arch index: static ${TRIPLE[$p]}, runs${RUNNER[$p]:+ under ${RUNNER[$p]##*/}}" runs "$p"
done

echo
echo "archive sizes (bytes): $(for f in "${ARCHIVES[@]}"; do printf '%s=%s ' "${f##*/}" "$(stat -c %s "$f")"; done)"
echo "installer-image: duration $((SECONDS - started)) s"
finish
