#!/usr/bin/env bash
# Tests of images/flash/smarter-flash without hardware: a small partitioned image (FAT + ext4)
# with its .bmap, written to loop devices and files. Loop devices are not removable, so both
# the refusal and the --force path are tested; so are a mounted target, a partition, the
# root disk (refused even with --force; bmaptool is replaced by a stub there, so a broken
# check could never write to it), bad provisioning values (nothing written), no --yes.
# Usage: tests/images/flash-test.sh   (root; needs bmap-tools mtools dosfstools e2fsprogs fdisk)
# shellcheck disable=SC2015 # pass() always succeeds
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
FLASH=$REPO/images/flash/smarter-flash
WORK=$(mktemp -d)
export PATH=$PATH:/usr/sbin:/sbin MTOOLS_SKIP_CHECK=1
loops=()
cleanup() {
  umount "$WORK/mnt" 2>/dev/null || true
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf 'FAIL %s\n' "$1"; shift; [ $# -eq 0 ] || printf '     %s\n' "$@"; failed=$((failed + 1)); }

if shellcheck "$FLASH" >"$WORK/sc" 2>&1; then pass "shellcheck smarter-flash"; else fail "shellcheck smarter-flash" "$(cat "$WORK/sc")"; fi

# ---------------------------------------------------------------- a small image
img=$WORK/test.img
truncate -s 48M "$img"
printf 'label: dos\nstart=2048, size=16M, type=c, bootable\ntype=83\n' | sfdisk -q "$img"
truncate -s 16M "$WORK/boot.fat"
mkfs.vfat -n SMARTERBOOT "$WORK/boot.fat" >/dev/null
echo "config.txt of the test image" >"$WORK/config.txt"
mcopy -i "$WORK/boot.fat" "$WORK/config.txt" ::config.txt
mkdir -p "$WORK/rootdir/etc" && echo test-root >"$WORK/rootdir/etc/hostname"
truncate -s 31M "$WORK/root.ext4"
mkfs.ext4 -q -L smarter-root -d "$WORK/rootdir" "$WORK/root.ext4"
dd if="$WORK/boot.fat" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$WORK/root.ext4" of="$img" bs=1M seek=17 conv=notrunc,sparse status=none
bmaptool create -o "$WORK/test.bmap" "$img" 2>/dev/null
TOKEN=abcdef.0123456789abcdef
printf 'K3S_URL=https://k3s.example.net:6443\nK3S_TOKEN=%s\nNODE_NAME=gw-flash\n' "$TOKEN" >"$WORK/good.conf"
printf 'K3S_URL=http://k3s.example.net\nK3S_TOKEN=%s\nNODE_NAME=gw-flash\n' "$TOKEN" >"$WORK/bad.conf"

newloop() { # a zeroed 48 MiB backing file on a loop device, in $LOOP (recorded for cleanup)
  local f=$WORK/disk$RANDOM.raw
  truncate -s 48M "$f"
  LOOP=$(losetup -f --show "$f") || return 1
  loops+=("$LOOP")
}
boot_conf() { mtype -i "$1@@1048576" ::smarter-gateway.conf 2>/dev/null; }
mtype() { command mtype "$@" 2>/dev/null; }
flash() { "$FLASH" "$@" >"$WORK/out" 2>&1 </dev/null; }

# ---------------------------------------------------------------- refusals
newloop && loop=$LOOP || { fail "losetup"; echo "flash-test: $passed passed, $failed failed"; exit 1; }
flash --yes --config "$WORK/good.conf" "$img" "$loop"; rc=$?
if [ $rc = 3 ] && grep -q 'not removable' "$WORK/out" && [ -z "$(boot_conf "$loop")" ] && cmp -s -n 1M "$loop" /dev/zero; then
  pass "loop device (not removable) refused without --force, nothing written"
else
  fail "loop device without --force: rc=$rc" "$(cat "$WORK/out")"
fi

flash --force --config "$WORK/good.conf" "$img" "$loop"; rc=$?
if [ $rc != 0 ] && grep -q 'add --yes' "$WORK/out" && cmp -s -n 1M "$loop" /dev/zero; then
  pass "no terminal and no --yes: refused, nothing written"
else
  fail "no --yes: rc=$rc" "$(cat "$WORK/out")"
fi

flash --force --yes --config "$WORK/bad.conf" "$img" "$loop"; rc=$?
if [ $rc != 0 ] && grep -q 'invalid: nothing written' "$WORK/out" && grep -q 'is not https' "$WORK/out" && cmp -s -n 1M "$loop" /dev/zero; then
  pass "bad provisioning values: refused before writing"
else
  fail "bad provisioning values: rc=$rc" "$(cat "$WORK/out")"
fi

flash --force --yes "$img" "$loop"; rc=$?
[ $rc != 0 ] && grep -q 'give --config FILE' "$WORK/out" && pass "no provisioning values and no --no-config: refused" ||
  fail "no values: rc=$rc" "$(cat "$WORK/out")"

# root disk: refused even with --force; a stub stands in for bmaptool in case the check fails
rootsrc=$(findmnt -n -o SOURCE --target / | head -n1)
if [[ $rootsrc == /dev/* ]]; then
  rootdisk=/dev/$(lsblk -n -s -r -o NAME,TYPE "$rootsrc" | awk '$2 == "disk" { print $1 }' | tail -n1)
  [[ $rootdisk == /dev/ ]] && rootdisk=$rootsrc
  printf '#!/bin/sh\ntouch %s/stub-called\nexit 1\n' "$WORK" >"$WORK/bmaptool-stub"
  chmod +x "$WORK/bmaptool-stub"
  for t in $(printf '%s\n' "$rootdisk" "$rootsrc" | sort -u); do
    SMARTER_FLASH_BMAPTOOL=$WORK/bmaptool-stub "$FLASH" --force --yes --config "$WORK/good.conf" "$img" "$t" >"$WORK/out" 2>&1 </dev/null
    rc=$?
    if [ $rc = 3 ] && grep -q 'running system' "$WORK/out" && [ ! -e "$WORK/stub-called" ]; then
      pass "root disk $t refused even with --force"
    else
      fail "root disk $t: rc=$rc" "$(cat "$WORK/out")"
    fi
  done
else
  pass "root disk check skipped: / is on $rootsrc, not a block device"
fi

# mounted: a loop device holding a mounted file system, refused even with --force
newloop && mloop=$LOOP
mkfs.ext4 -q "$mloop" && mkdir -p "$WORK/mnt" && mount "$mloop" "$WORK/mnt"
flash --force --yes --config "$WORK/good.conf" "$img" "$mloop"; rc=$?
[ $rc = 3 ] && grep -q 'is mounted' "$WORK/out" && pass "mounted target refused even with --force" ||
  fail "mounted target: rc=$rc" "$(cat "$WORK/out")"
umount "$WORK/mnt"

# a partition (loop with partition scan): not a whole disk
ploop=$(losetup -f --show -P "$(cp "$img" "$WORK/parts.raw" && echo "$WORK/parts.raw")")
loops+=("$ploop")
sleep 1
if [ -b "${ploop}p1" ]; then
  flash --yes --config "$WORK/good.conf" "$img" "${ploop}p1"; rc=$?
  [ $rc = 3 ] && grep -q 'partition, not a whole disk' "$WORK/out" && pass "partition refused" ||
    fail "partition: rc=$rc" "$(cat "$WORK/out")"
else
  echo "skip partition refusal: ${ploop}p1 did not appear (no loop partition scan on this kernel)"
fi

# a regular file: refused without --force
flash --yes --config "$WORK/good.conf" "$img" "$WORK/out.raw"; rc=$?
[ $rc = 3 ] && [ ! -e "$WORK/out.raw" ] && pass "regular file target refused without --force" || fail "file target: rc=$rc" "$(cat "$WORK/out")"

# ---------------------------------------------------------------- writes
start=$SECONDS
if flash --force --yes --config "$WORK/good.conf" "$img" "$loop"; then
  got=$(boot_conf "$loop")
  if [ "$got" = "$(cat "$WORK/good.conf")" ]; then pass "--force on a loop device: provisioning file on the boot partition"; else fail "loop: provisioning file" "$got"; fi
  # the rest of the image is intact: the root partition and config.txt
  cmp -s <(dd if="$loop" bs=1M skip=17 count=31 status=none) "$WORK/root.ext4" && pass "loop: root partition identical to the image's" || fail "loop: root partition differs"
  [ "$(mtype -i "$loop@@1048576" ::config.txt)" = "config.txt of the test image" ] && pass "loop: boot partition files kept" || fail "loop: config.txt"
  dd if="$loop" of="$WORK/boot-check.fat" bs=1M skip=1 count=16 status=none
  fsck.vfat -n "$WORK/boot-check.fat" >"$WORK/fsck" 2>&1 && pass "loop: boot FAT file system clean (fsck.vfat -n)" || fail "loop: fsck.vfat" "$(cat "$WORK/fsck")"
  echo "     (wrote in $((SECONDS - start)) s)"
else
  fail "--force on a loop device" "$(cat "$WORK/out")"
fi

if flash --force --yes --k3s-url https://10.0.0.1:6443 --token "$TOKEN" --node-name gw-file --node-labels site=lab "$img" "$WORK/file.raw" &&
  boot_conf "$WORK/file.raw" | grep -qx 'NODE_NAME=gw-file' && boot_conf "$WORK/file.raw" | grep -qx 'NODE_LABELS=site=lab'; then
  pass "--force on a file, values from options"
else
  fail "file target with options" "$(cat "$WORK/out")"
fi

echo "flash-test: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
