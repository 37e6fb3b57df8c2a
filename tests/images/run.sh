#!/usr/bin/env bash
# The gateway-image tier (issue 7), one entry point for CI: installs its tools with apt,
# runs the provisioning unit tests and the flash-helper tests, builds the test variant of
# the Debian arm64 image (cached base in /var/cache/smarter-cni-image) and boots it under
# qemu-system-aarch64. Idempotent. Prints `images: N passed, M failed` at the end.
#
# Usage: tests/images/run.sh [--no-boot | --tools-only]   (root, Debian 12)
#   --no-boot     provisioning + flash tests and the image build only
#   --tools-only  install the tier's tools and stop (CI, before the background base build)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
export PATH=$PATH:/usr/sbin:/sbin
boot=1 tools_only=0
[[ ${1:-} == --no-boot ]] && boot=0
[[ ${1:-} == --tools-only ]] && tools_only=1
OUT=$REPO/images/out
mkdir -p "$OUT"

passed=0 failed=0
step() { # <name> <command...>: runs, records its closing "N passed, M failed" line
  local name=$1 t0=$SECONDS rc line p f; shift
  echo "=== images: $name"
  "$@" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  line=$(grep -aE '[0-9]+ passed, [0-9]+ failed' "$OUT/$name.log" | tail -n1)
  p=$(sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\1/p' <<<"$line")
  f=$(sed -nE 's/.* ([0-9]+) passed, ([0-9]+) failed.*/\2/p' <<<"$line")
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  ((rc != 0 && ${f:-0} == 0)) && failed=$((failed + 1))
  echo "=== images: $name: exit $rc in $((SECONDS - t0)) s"
}

# Tools: Debian packages only.
need=()
for pair in mmdebstrap:mmdebstrap qemu-system-aarch64:qemu-system-arm qemu-aarch64-static:qemu-user-static \
  update-binfmts:binfmt-support arch-test:arch-test bmaptool:bmap-tools mkfs.vfat:dosfstools mcopy:mtools \
  mkfs.ext4:e2fsprogs sfdisk:fdisk shellcheck:shellcheck systemd-analyze:systemd losetup:mount file:file; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  echo "images: apt-get install ${need[*]}"
  { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}"; } \
    >"$OUT/apt.log" 2>&1 || { cat "$OUT/apt.log"; echo "images: 0 passed, 1 failed"; exit 1; }
fi

((tools_only)) && exit 0

step provision-test "$REPO/tests/images/provision-test.sh"
step flash-test "$REPO/tests/images/flash-test.sh"
t0=$SECONDS
echo "=== images: build-image (test variant)"
# Air gap: the test variant is built with a PLACEHOLDER installer archive (a real arm64
# docker-save archive of one file, tests/images/placeholder-image.py), which the boot test
# finds in /var/lib/rancher/k3s/agent/images and loaded into Docker.
PLACEHOLDER=$OUT/smarter-cni-installer-0.0.0-placeholder-arm64.tar
python3 "$REPO/tests/images/placeholder-image.py" "$PLACEHOLDER" arm64 smarter-cni/installer:0.0.0-placeholder >/dev/null
if "$REPO/images/debian/build-image.sh" --variant test --preload-installer "$PLACEHOLDER"; then
  passed=$((passed + 1)); echo "ok   build-image --variant test ($((SECONDS - t0)) s)"
  if ((boot)); then step boot-test "$REPO/tests/images/boot-test.sh"; fi
else
  failed=$((failed + 1)); echo "FAIL build-image --variant test ($((SECONDS - t0)) s)"
fi
echo "images: $passed passed, $failed failed"
((failed == 0))
