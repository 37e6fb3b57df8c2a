#!/usr/bin/env bash
# Check that a binary is a fully static ELF executable for the given architecture.
# Usage: scripts/check-static.sh <binary> <arch>
#   arch: aarch64|arm64, armv7|armhf|arm, x86_64|amd64 (a target triple works too)
# Needs `file` and `readelf` (binutils). Exits 0 when all checks pass.
set -euo pipefail

die() { printf 'check-static: FAIL: %s\n' "$*" >&2; exit 1; }

(($# == 2)) || { printf 'usage: %s <binary> <arch>\n' "${0##*/}" >&2; exit 2; }
bin=$1 arch=${2%%-*}
[[ -f $bin ]] || die "$bin: no such file"
command -v file >/dev/null || die "'file' not installed (apt-get install file)"
command -v readelf >/dev/null || die "'readelf' not installed (apt-get install binutils)"

desc=$(file -b -L -- "$bin")
header=$(LC_ALL=C readelf -h -W -- "$bin" 2>&1) || die "$bin: not an ELF file: $desc"
machine=$(sed -n 's/^ *Machine: *//p' <<<"$header")
class=$(sed -n 's/^ *Class: *//p' <<<"$header")
flags=$(sed -n 's/^ *Flags: *//p' <<<"$header")

case $arch in
aarch64 | arm64)
    [[ $class == ELF64 && $machine == AArch64 ]] ||
        die "$bin: expected ELF64 AArch64, got $class $machine"
    ;;
armv7 | armv7l | armhf | arm)
    [[ $class == ELF32 && $machine == ARM ]] ||
        die "$bin: expected ELF32 ARM, got $class $machine"
    [[ $flags == *"Version5 EABI"* ]] || die "$bin: expected ARM EABI5, flags: $flags"
    [[ $flags == *hard-float* ]] || die "$bin: expected hard-float ABI, flags: $flags"
    ;;
x86_64 | amd64 | x86-64)
    [[ $class == ELF64 && $machine == "Advanced Micro Devices X86-64" ]] ||
        die "$bin: expected ELF64 x86-64, got $class $machine"
    ;;
*) die "unknown arch '$2' (use aarch64, armv7 or x86_64)" ;;
esac

type=$(sed -n 's/^ *Type: *//p' <<<"$header")
[[ $type == EXEC* || $type == DYN* ]] || die "$bin: not an executable (Type: $type)"

# `file` says "statically linked" or, for static PIE, "static-pie linked".
[[ $desc == *"statically linked"* || $desc == *"static-pie linked"* ]] ||
    die "$bin: not statically linked: $desc"
LC_ALL=C readelf -l -W -- "$bin" | grep -q '^ *INTERP ' &&
    die "$bin: has a PT_INTERP program header (needs a dynamic loader)"
needed=$(LC_ALL=C readelf -d -W -- "$bin" 2>/dev/null | grep '(NEEDED)' || true)
[[ -z $needed ]] || die "$bin: has DT_NEEDED entries: $needed"

printf 'check-static: OK: %s: %s\n' "$bin" "$desc"
