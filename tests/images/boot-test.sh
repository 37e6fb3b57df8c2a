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
# Then a power cut (about 45 s more): a writable copy of the image boots until root is
# read-write, qemu is killed (SIGKILL: no unmount, the ext4 journal still marked for
# recovery), and the next boot must replay the journal in the initramfs's fsck.
#
# Usage: tests/images/boot-test.sh [IMAGE]   (default images/out/smarter-gateway-trixie-arm64-test.img)
# Environment: BOOT_TEST_TIMEOUT (seconds, default 1500); BOOT_TEST_POWER_CUT=0 leaves the
# power cut out (said so on the output; it counts neither as passed nor as failed)
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
QPID=
trap 'if [[ -n $QPID ]]; then kill -KILL "$QPID" 2>/dev/null; fi; rm -rf "$k"' EXIT
start=$(sfdisk -J "$IMG" | python3 -c 'import json,sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])') ||
  die "cannot read the partition table of $IMG"
off=$((start * 512))
{ mcopy -i "$IMG@@$off" ::vmlinuz "$k/vmlinuz" && mcopy -i "$IMG@@$off" ::initrd.img "$k/initrd.img" &&
  mcopy -i "$IMG@@$off" ::cmdline.txt "$k/cmdline.txt"; } ||
  die "no vmlinuz/initrd.img/cmdline.txt on the boot partition of $IMG"
# The image's own kernel command line (root by label, read-only until fsck has run,
# fsck.repair=yes), with qemu's serial console in place of the Pi's consoles.
cmdline="$(tr -s ' \n' '  ' <"$k/cmdline.txt" | sed -E 's/(^| )console=[^ ]*//g; s/^ +| +$//g') console=ttyAMA0 panic=-1 systemd.show_status=1"
# Debian's arm64 vmlinuz is a gzip'd Image: qemu's -kernel takes the raw Image.
if gzip -t "$k/vmlinuz" 2>/dev/null; then gzip -dc "$k/vmlinuz" >"$k/Image"; else cp "$k/vmlinuz" "$k/Image"; fi

echo "boot-test: booting $(basename "$IMG") (timeout ${TIMEOUT}s, console log $LOG)"
echo "boot-test: kernel command line: $cmdline"
t0=$SECONDS
timeout --foreground -k 10 "$TIMEOUT" qemu-system-aarch64 \
  -M virt -cpu cortex-a72 -m 2048 -smp 2 -accel tcg,thread=multi \
  -nographic -no-reboot -nic none -snapshot \
  -kernel "$k/Image" -initrd "$k/initrd.img" \
  -append "$cmdline" \
  -drive "file=$IMG,format=raw,if=virtio" \
  -serial "file:$LOG" -monitor none </dev/null >"$OUT/boot-test-qemu.log" 2>&1
rc=$?
dur=$((SECONDS - t0))
echo "boot-test: qemu exited with $rc after ${dur}s"
((rc == 124)) && echo "boot-test: TIMEOUT after ${TIMEOUT}s"

grep -a 'BOOT-TEST:' "$LOG" | tr -d '\r' | sed 's/^.*BOOT-TEST: /  /'
passed=$(grep -ac 'BOOT-TEST: ok ' "$LOG")
failed=$(grep -ac 'BOOT-TEST: FAIL ' "$LOG")

# File system checks at boot, from the console (before the in-image test can see anything):
# the initramfs checks root before mounting it (its fsck line and e2fsck's verdict), and
# systemd-fsck checks the boot partition (fstab pass 2).
console_has() { # <name> <extended regexp> [log]
  local line
  # (no grep -m1: under pipefail the writers' SIGPIPE would fail the pipeline)
  if line=$(tr -d '\r' <"${3:-$LOG}" | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | grep -aE "$2"); then
    line=${line%%$'\n'*}
    echo "  ok   $1: ${line:0:160}"; passed=$((passed + 1))
  else
    echo "  FAIL $1 (no line matching: $2)"; failed=$((failed + 1))
  fi
}
console_lacks() { # <name> <extended regexp>
  local line
  if line=$(tr -d '\r' <"$LOG" | grep -aE "$2"); then
    line=${line%%$'\n'*}
    echo "  FAIL $1: ${line:0:160}"; failed=$((failed + 1))
  else
    echo "  ok   $1"; passed=$((passed + 1))
  fi
}
console_lacks "initramfs has fsck (no 'fsck not present')" 'fsck not present'
console_has "initramfs checks the root file system" '(Will now check|Checking) root file system'
# e2fsck names the file system by its label: "clean, ..." or, after a repair or a journal
# replay, "N/M files (x% non-contiguous)".
console_has "e2fsck verdict on root (smarter-root)" '(smarter-root|/dev/vda2): (clean, [0-9]+/[0-9]+ files|recovering journal|[0-9]+/[0-9]+ files \()'
console_has "root mounted read-only by the initramfs" 'EXT4-fs \([a-z0-9]+\): mounted filesystem .* ro with'
console_has "systemd-fsck checked the boot partition" 'Finished .*systemd-fsck@dev-disk-by.*SMARTERBOOT'
console_has "root remounted read-write after the check" 'EXT4-fs \([a-z0-9]+\): re-mounted [0-9a-f-]+ r/w'

# ---------------------------------------------------------------- power cut
# boot_until <image> <console log> <extended regexp> <timeout s> <seconds after the match>:
# boots a writable image, kills qemu (SIGKILL, a power cut) that long after the regexp
# shows on the console, or at the timeout. Returns 0 when the regexp showed.
boot_until() {
  local img=$1 log=$2 re=$3 t=$4 after=$5 q i rc=1
  : >"$log"
  qemu-system-aarch64 -M virt -cpu cortex-a72 -m 2048 -smp 2 -accel tcg,thread=multi \
    -nographic -no-reboot -nic none -kernel "$k/Image" -initrd "$k/initrd.img" -append "$cmdline" \
    -drive "file=$img,format=raw,if=virtio" -serial "file:$log" -monitor none </dev/null >/dev/null 2>&1 &
  q=$!
  QPID=$q
  for ((i = 0; i < t * 2; i++)); do
    if grep -aqE "$re" "$log"; then sleep "$after"; rc=0; break; fi
    kill -0 "$q" 2>/dev/null || break
    sleep 0.5
  done
  kill -KILL "$q" 2>/dev/null
  wait "$q" 2>/dev/null
  QPID=
  return $rc
}
power_cut() {
t1=$SECONDS
cut_img=$k/power-cut.img
cp --sparse=always "$IMG" "$cut_img"
CUT1=$OUT/boot-test-power-cut-1-console.log CUT2=$OUT/boot-test-power-cut-2-console.log
# Cut 2 s after root went read-write (the journal is marked for recovery from then on).
if boot_until "$cut_img" "$CUT1" 'EXT4-fs \([a-z0-9]+\): re-mounted [0-9a-f-]+ r/w' 150 2; then
  echo "  ok   power cut: qemu killed 2 s after root went read-write"; passed=$((passed + 1))
  boot_until "$cut_img" "$CUT2" 'smarter-root: .*(clean|files)|/dev/vda2: .*(clean|files)' 120 0
  console_has "after the power cut: the initramfs's e2fsck replays the journal" 'smarter-root: recovering journal' "$CUT2"
  console_has "after the power cut: e2fsck's verdict, then boot goes on" 'smarter-root: (clean, [0-9]+/[0-9]+ files|[0-9]+/[0-9]+ files \()' "$CUT2"
else
  echo "  FAIL power cut: root never went read-write within 150 s (console: $CUT1)"; failed=$((failed + 1))
fi
rm -f "$cut_img"
echo "boot-test: power cut and second boot in $((SECONDS - t1)) s"
}
if [[ ${BOOT_TEST_POWER_CUT:-1} == 0 ]]; then
  echo "boot-test: power cut NOT RUN (BOOT_TEST_POWER_CUT=0)"
else
  power_cut
fi

if grep -aq 'BOOT-TEST: PASS' "$LOG" && ((failed == 0 && passed > 0)); then
  echo "boot-test: PASS in ${dur}s (console log: $LOG)"
else
  echo "boot-test: no PASS verdict; last console lines:"
  tail -n 40 "$LOG" | tr -d '\r'
  ((failed == 0)) && failed=1
fi
echo "boot-test: $passed passed, $failed failed"
((failed == 0))
