#!/usr/bin/env bash
# Load each defconfig of this external tree into a Buildroot checkout and
# check that every symbol it sets survives into the resulting .config:
# Kconfig silently drops symbols that are unknown or whose dependencies are
# not met.
#
# Usage: check-defconfig.sh <buildroot-dir> [<name>_defconfig ...]
#        (default: every defconfig in configs/)
set -euo pipefail

die() { printf 'check-defconfig: %s\n' "$*" >&2; exit 2; }

[ $# -ge 1 ] || die "usage: $0 <buildroot-dir> [<name>_defconfig ...]"
BR_DIR=$(cd "$1" && pwd)
shift
EXT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -f "${BR_DIR}/Makefile" ] || [ ! -d "${BR_DIR}/package" ]; then
	die "${BR_DIR} is not a Buildroot tree"
fi

if [ $# -eq 0 ]; then
	for f in "${EXT_DIR}"/configs/*_defconfig; do
		set -- "$@" "$(basename "${f}")"
	done
fi

WORK=$(mktemp -d)
trap 'rm -rf "${WORK}"' EXIT

# "BR2_FOO=value" and "# BR2_FOO is not set" lines as "BR2_FOO=value" and
# "BR2_FOO=n", sorted.
settings() {
	sed -n -e 's/^\(BR2_[A-Za-z0-9_]*=.*\)$/\1/p' \
		-e 's/^# \(BR2_[A-Za-z0-9_]*\) is not set$/\1=n/p' "$1" | sort
}

failed=0
for name in "$@"; do
	defconfig="${EXT_DIR}/configs/${name}"
	[ -f "${defconfig}" ] || die "no ${defconfig}"
	out="${WORK}/${name}"
	if ! make -s -C "${BR_DIR}" O="${out}" BR2_EXTERNAL="${EXT_DIR}" \
		"${name}" >"${out}.log" 2>&1; then
		cat "${out}.log" >&2
		echo "FAIL ${name}: make ${name} failed"
		failed=$((failed + 1))
		continue
	fi
	settings "${defconfig}" >"${out}.want"
	settings "${out}/.config" >"${out}.have"
	lost=$(comm -23 "${out}.want" "${out}.have")
	if [ -n "${lost}" ]; then
		echo "FAIL ${name}: set in the defconfig, not in .config:"
		while IFS= read -r line; do
			sym=${line%%=*}
			now=$(grep -E "^(${sym}=|# ${sym} is not set)" "${out}/.config" ||
				echo "(absent)")
			printf '  %s   -> %s\n' "${line}" "${now}"
		done <<<"${lost}"
		failed=$((failed + 1))
	else
		echo "ok   ${name}: $(wc -l <"${out}.want") symbols, all in .config"
	fi
done

[ "${failed}" -eq 0 ]
