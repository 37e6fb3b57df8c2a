#!/usr/bin/env bash
# Boot the TEST VARIANT of the Debian gateway image under qemu-system-aarch64 and read the
# in-image test's verdict from the serial console (tests/images/guest/usr/lib/smarter-cni/boot-test).
#
# Machine: -M virt -cpu cortex-a72 -m 2048 -smp 2, TCG (software emulation), no network
# device (nothing leaves the VM), the image as a virtio disk (-snapshot: the .img is not
# changed). The kernel and initrd are the image's own, read from its boot partition: Debian's
# generic linux-image-arm64, which boots on virt. (The Raspberry Pi firmware path -
# start4.elf, config.txt, device trees - cannot be emulated here; on a Pi the same kernel
# and initrd are started by the firmware.)
#
# Usage: tests/images/boot-test.sh [IMAGE]   (default images/out/smarter-gateway-trixie-arm64-test.img)
# Environment: BOOT_TEST_TIMEOUT (seconds, default 1500)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
OUT=$REPO/images/out
IMG=${1:-$OUT/smarter-gateway-trixie-arm64-test.img}
TIMEOUT=${BOOT_TEST_TIMEOUT:-1500}
LOG=$OUT/boot-test-console.log
export PATH=$PATH:/usr/sbin:/sbin MTOOLS_SKIP_CHECK=1

die() { echo "boot-test: $*" >&2; echo "boot-test: 0 passed, 1 failed"; exit 1; }
[[ -f $IMG ]] || die "no image $IMG (build it: images/debian/build-image.sh --variant test)"
command -v qemu-system-aarch64 >/dev/null || die "qemu-system-aarch64 missing (apt-get install qemu-system-arm)"

# The image's own kernel and initrd, from its FAT boot partition (partition 1).
k=$(mktemp -d)
trap 'rm -rf "$k"' EXIT
start=$(sfdisk -J "$IMG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])') ||
  die "cannot read the partition table of $IMG"
off=$((start * 512))
{ mcopy -i "$IMG@@$off" ::vmlinuz "$k/vmlinuz" && mcopy -i "$IMG@@$off" ::initrd.img "$k/initrd.img"; } ||
  die "no vmlinuz/initrd.img on the boot partition of $IMG"
# Debian's arm64 vmlinuz is a gzip'd Image: qemu's -kernel takes the raw Image.
if gzip -t "$k/vmlinuz" 2>/dev/null; then gzip -dc "$k/vmlinuz" >"$k/Image"; else cp "$k/vmlinuz" "$k/Image"; fi

echo "boot-test: booting $(basename "$IMG") (timeout ${TIMEOUT}s, console log $LOG)"
t0=$SECONDS
timeout --foreground -k 10 "$TIMEOUT" qemu-system-aarch64 \
  -M virt -cpu cortex-a72 -m 2048 -smp 2 -accel tcg,thread=multi \
  -nographic -no-reboot -nic none -snapshot \
  -kernel "$k/Image" -initrd "$k/initrd.img" \
  -append "root=LABEL=smarter-root rootfstype=ext4 rw console=ttyAMA0 panic=-1 systemd.show_status=1" \
  -drive "file=$IMG,format=raw,if=virtio" \
  -serial "file:$LOG" -monitor none </dev/null >"$OUT/boot-test-qemu.log" 2>&1
rc=$?
dur=$((SECONDS - t0))
echo "boot-test: qemu exited with $rc after ${dur}s"
((rc == 124)) && echo "boot-test: TIMEOUT after ${TIMEOUT}s"

grep -a 'BOOT-TEST:' "$LOG" | tr -d '\r' | sed 's/^.*BOOT-TEST: /  /'
passed=$(grep -ac 'BOOT-TEST: ok ' "$LOG")
failed=$(grep -ac 'BOOT-TEST: FAIL ' "$LOG")
if grep -aq 'BOOT-TEST: PASS' "$LOG" && ((failed == 0 && passed > 0)); then
  echo "boot-test: PASS in ${dur}s (console log: $LOG)"
else
  echo "boot-test: no PASS verdict; last console lines:"
  tail -n 40 "$LOG" | tr -d '\r'
  ((failed == 0)) && failed=1
fi
echo "boot-test: $passed passed, $failed failed"
((failed == 0))
