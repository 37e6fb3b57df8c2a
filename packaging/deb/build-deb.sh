#!/usr/bin/env bash
# Builds smarter-cni_<version>_<arch>.deb for Debian / Raspberry Pi OS gateways from the
# static musl binaries of scripts/build-dist.sh, with dpkg-deb (no debhelper).
#
# Usage: packaging/deb/build-deb.sh            (after scripts/build-dist.sh)
# Environment:
#   SMARTER_CNI_TARGET_DIR    cargo target dir holding <triple>/release/smarter-cni
#                             (default <repo>/target; the same variable as build-dist.sh)
#   SMARTER_CNI_DEB_ARCHES    Debian architectures (default "arm64 armhf amd64")
#   SMARTER_CNI_DEB_VERSION   full Debian version (default: Cargo.toml's version, a semver
#                             pre-release "-rc.1" written "~rc.1", plus the revision "-1")
#   SMARTER_CNI_DEB_OUT       output folder (default <repo>/dist/deb)
#   SMARTER_CNI_DEB_MAINTAINER  "Name <address>" (default: the project's)
#   SOURCE_DATE_EPOCH         timestamp of every file and of the changelog
#                             (default: committer time of HEAD)
# Reproducible: fixed owners (root:root), normalised modes, every mtime = SOURCE_DATE_EPOCH,
# entries sorted by dpkg-deb, xz without timestamps. Two runs give identical files.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
ROOTFS=$REPO/images/rootfs
ROOTFS_CONTAINERD=$REPO/images/rootfs-containerd
TARGET_DIR=${SMARTER_CNI_TARGET_DIR:-$REPO/target}
OUT=${SMARTER_CNI_DEB_OUT:-$REPO/dist/deb}
read -r -a ARCHES <<<"${SMARTER_CNI_DEB_ARCHES:-arm64 armhf amd64}"
MAINTAINER=${SMARTER_CNI_DEB_MAINTAINER:-smarter-cni developers <dev@smarter-cni.invalid>}
PKG=smarter-cni

# Files operators edit: dpkg keeps their copy on upgrade and asks (or obeys
# --force-conf*) only when both they and the package changed it. Every file the
# package puts under /etc is a conffile; these must be among them.
REQUIRED_CONFFILES=(
  /etc/cni/net.d/10-smarter-cni.conflist
  /etc/smarter-cni/dnsmasq.conf
  /etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml
  /etc/default/smarter-cni
)

die() { printf 'build-deb: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'build-deb: %s\n' "$*" >&2; }

triple_of() {
  case $1 in
    arm64) echo aarch64-unknown-linux-musl ;;
    armhf) echo armv7-unknown-linux-musleabihf ;;
    amd64) echo x86_64-unknown-linux-musl ;;
    *) die "unknown architecture $1 (arm64, armhf, amd64)" ;;
  esac
}

cargo_version() {
  sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' "$REPO/Cargo.toml" | head -n1
}

# shellcheck source=../../scripts/lib/source-date-epoch.sh
source "$REPO/scripts/lib/source-date-epoch.sh"

# The package's changelog, written for this build (the repository's history is the
# real one; this records what was packaged and when).
changelog() { # $1 version
  local upstream=${1%-*}
  cat <<EOF
$PKG ($1) stable; urgency=medium

  * Package of smarter-cni $upstream: static musl build of the plugin, the
    node's system files (images/rootfs) and the upgrade procedure of
    issue 8 (kept previous binary, health check, automatic restore).

 -- $MAINTAINER  $(LC_ALL=C date -u -R -d "@$SDE")
EOF
}

control() { # $1 arch, $2 version, $3 installed-size (KiB)
  cat <<EOF
Package: $PKG
Version: $2
Architecture: $1
Maintainer: $MAINTAINER
Installed-Size: $3
Depends: dnsmasq-base | dnsmasq
Recommends: docker.io
Suggests: nftables
Section: net
Priority: optional
Description: CNI plugin for IoT gateways running a k3s agent
 smarter-cni attaches the pods of a k3s agent running on Docker (cri-dockerd)
 to a Docker user-defined bridge network, or those of k3s's containerd to a
 bridge of its own (bridge mode), and gives every pod DNS names there
 (hostname, pod name, pod.namespace), so pods on one gateway find each other
 by name. Host-networked pods and native processes ask node DNS (dnsmasq on
 the network's gateway), which answers the same names. The same binary,
 called as "loopback", is the CNI loopback plugin.
 .
 The package installs the plugin in /opt/cni/bin, the CNI configuration, the
 node DNS configuration, the k3s agent drop-in and the systemd units, set
 up for Docker; the containerd variant's own files are in
 /usr/share/smarter-cni/containerd. An upgrade keeps the previous binary and
 restores it when the post-install health check (smarter-cni status) fails.
EOF
}

build_one() { # $1 arch, $2 version
  local arch=$1 version=$2 triple bin stage f size
  triple=$(triple_of "$arch")
  bin=$TARGET_DIR/$triple/release/smarter-cni
  [[ -f $bin ]] || die "no binary for $arch at $bin: run SMARTER_CNI_TARGET_DIR=$TARGET_DIR scripts/build-dist.sh"
  stage=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: stage is local
  trap "rm -rf '$stage'" RETURN

  # The node's system files, unchanged, then the plugin and its loopback link.
  cp -a "$ROOTFS/." "$stage/"
  # One package for both runtimes: Docker mode is what it installs (existing gateways
  # stay as they are on upgrade). The containerd variant's own files (conflist, k3s
  # configuration, bridge-mode setup unit) come in /usr/share/smarter-cni/containerd for
  # the operator to switch to (README); its hostnames unit is installed, not enabled.
  local f
  install -d "$stage/usr/share/$PKG/containerd"
  while read -r f; do
    case $f in
      */smarter-cni-hostnames.service) install -m 0644 "$ROOTFS_CONTAINERD/$f" "$stage/$f" ;;
      *) install -m 0644 "$ROOTFS_CONTAINERD/$f" "$stage/usr/share/$PKG/containerd/" ;;
    esac
  done < <(cd "$ROOTFS_CONTAINERD" && find . -type f -printf '%P\n' | LC_ALL=C sort)
  install -D -m 0755 "$bin" "$stage/opt/cni/bin/smarter-cni"
  ln -s smarter-cni "$stage/opt/cni/bin/loopback"
  install -D -m 0755 "$REPO/packaging/activate" "$stage/usr/lib/smarter-cni/activate"
  install -D -m 0644 "$HERE/default" "$stage/etc/default/smarter-cni"
  install -d "$stage/usr/share/doc/$PKG" "$stage/usr/share/lintian/overrides"
  sed "s/@YEAR@/$(date -u -d "@$SDE" +%Y)/" "$HERE/copyright" >"$stage/usr/share/doc/$PKG/copyright"
  changelog "$version" | gzip -9n >"$stage/usr/share/doc/$PKG/changelog.Debian.gz"
  install -m 0644 "$HERE/lintian-overrides" "$stage/usr/share/lintian/overrides/$PKG"
  local -a conffiles
  mapfile -t conffiles < <(cd "$stage" && find etc -type f -printf '/%p\n' | LC_ALL=C sort)
  for f in "${REQUIRED_CONFFILES[@]}"; do [[ -f $stage$f ]] || die "conffile $f missing from the package"; done

  # Control area.
  install -d -m 0755 "$stage/DEBIAN"
  for f in preinst postinst prerm postrm; do install -m 0755 "$HERE/$f" "$stage/DEBIAN/$f"; done
  printf '%s\n' "${conffiles[@]}" >"$stage/DEBIAN/conffiles"
  # md5sums of every regular file but the conffiles (dpkg tracks those itself).
  (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
    grep -vxF -f <(printf '%s\n' "${conffiles[@]#/}") | xargs -r -d '\n' md5sum) >"$stage/DEBIAN/md5sums"
  size=$(du -s --apparent-size -k --exclude=DEBIAN "$stage" | cut -f1)
  control "$arch" "$version" "$size" >"$stage/DEBIAN/control"

  # Normalise: modes independent of umask and checkout, one timestamp everywhere.
  chmod -R u+rwX,go+rX,go-w "$stage"
  chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"
  find "$stage" -exec touch -h -d "@$SDE" {} +

  local out=$OUT/${PKG}_${version}_${arch}.deb
  SOURCE_DATE_EPOCH=$SDE dpkg-deb --root-owner-group -Zxz -z9 --build "$stage" "$out" >/dev/null
  log "built $out ($(stat -c %s "$out") bytes)"
}

main() {
  command -v dpkg-deb >/dev/null || die "dpkg-deb not found"
  local upstream version arch
  upstream=$(cargo_version)
  [[ $upstream =~ ^[0-9] ]] || die "cannot read the version from $REPO/Cargo.toml (got '$upstream')"
  # semver pre-release (1.2.0-rc.1) sorts before the release: Debian spells that "~".
  version=${SMARTER_CNI_DEB_VERSION:-${upstream/-/\~}-1}
  [[ $version =~ ^[0-9][A-Za-z0-9.+~]*-[A-Za-z0-9.+~]+$ ]] || die "invalid Debian version '$version'"
  SDE=$(source_date_epoch "$REPO")
  mkdir -p "$OUT"
  for arch in "${ARCHES[@]}"; do build_one "$arch" "$version"; done
}

main "$@"
