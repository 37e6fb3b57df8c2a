#!/usr/bin/env bash
# Builds libcni's cnitool (a real CNI client, libcni 1.1.2 as in Debian 12)
# from Debian's source package golang-github-appc-cni and prints its path.
# Debian's binary packages drop cnitool/, but the source package has it.
# Skips everything when ${SMARTER_CNI_CACHE}/bin/cnitool already exists.
set -euo pipefail

CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-test}
OUT=$CACHE/bin/cnitool

if [[ -x "$OUT" ]]; then
  echo "$OUT"
  exit 0
fi

command -v go >/dev/null || { echo "cnitool.sh: go missing; run scripts/deps.sh" >&2; exit 1; }

# shellcheck source=lib/debian-mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Private apt configuration with a deb-src entry: own sources, lists, cache
# and an empty dpkg status, so the system's apt state stays as it was.
apt=$work/apt
mkdir -p "$work/src"
private_apt_config "$apt" "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) bookworm main"
APT_CONFIG=$apt/apt.conf apt-get update -qq
(cd "$work/src" && APT_CONFIG=$apt/apt.conf apt-get source --download-only -qq golang-github-appc-cni)

# The upstream tarball is the whole containernetworking/cni tree; cnitool
# needs only libcni and pkg/ from it (no third-party imports), so a GOPATH
# with that tree at its import path is enough.
orig=$(find "$work/src" -maxdepth 1 -name 'golang-github-appc-cni_*.orig.tar.*' | head -n1)
[[ -n "$orig" ]] || { echo "cnitool.sh: no orig tarball downloaded" >&2; exit 1; }
gopath=$work/gopath
mkdir -p "$gopath/src/github.com/containernetworking/cni"
tar -xf "$orig" -C "$gopath/src/github.com/containernetworking/cni" --strip-components=1

mkdir -p "$CACHE/bin"
# GO111MODULE=off: GOPATH build with Debian's Go 1.19 and no module downloads.
(cd "$gopath/src/github.com/containernetworking/cni/cnitool" &&
  GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="$work/gocache" GOFLAGS='' \
    go build -o "$OUT.tmp" .)
mv "$OUT.tmp" "$OUT"
echo "$OUT"
