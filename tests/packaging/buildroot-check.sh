#!/usr/bin/env bash
# CI checks of the Buildroot external tree (buildroot/) against the code it
# packages. No Buildroot checkout needed (see buildroot/README.md for the
# checks that need one).
#
#  - package versions == Cargo.toml version; .hash entries match the files;
#  - every file the packages, defconfigs, board scripts and provisioning hook
#    reference exists, and every file of images/rootfs and of
#    images/rootfs-containerd is installed by one of them (a new unit or config
#    must be wired into the image);
#  - each *_containerd_defconfig is its Docker defconfig without Docker Engine,
#    with the containerd runtime;
#  - the units of both runtimes pass `systemd-analyze verify` with warnings as
#    errors;
#  - shellcheck on every shell script of the tree;
#  - each board's genimage.cfg builds an sdcard.img from placeholder inputs
#    with Debian's genimage;
#  - post-build.sh runs against a placeholder target directory.
#
# Usage: tests/packaging/buildroot-check.sh   (root: installs missing tools with apt)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
EXT="${REPO}/buildroot"
ROOTFS="${REPO}/images/rootfs"
ROOTFS_CONTAINERD="${REPO}/images/rootfs-containerd"
ROOTFS_AIRGAP="${REPO}/images/rootfs-airgap"
WORK=$(mktemp -d)
trap 'rm -rf "${WORK}"' EXIT

passed=0
failed=0
pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf 'FAIL %s\n' "$1"; shift; [ $# -eq 0 ] || printf '     %s\n' "$@"; failed=$((failed + 1)); }

# ------------------------------------------------------------------ tools
need_tools() {
	local -A deb_of=([shellcheck]=shellcheck [genimage]=genimage [mcopy]=mtools
		[mkfs.vfat]=dosfstools [mkfs.ext4]=e2fsprogs [systemd-analyze]=systemd
		[sfdisk]=fdisk)
	local missing=() tool
	for tool in "${!deb_of[@]}"; do
		command -v "${tool}" >/dev/null 2>&1 || PATH="${PATH}:/usr/sbin:/sbin" command -v "${tool}" >/dev/null 2>&1 ||
			missing+=("${deb_of[${tool}]}")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	printf 'buildroot-check: installing %s\n' "${missing[*]}" >&2
	{ apt-get -o DPkg::Lock::Timeout=300 update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
			install -y -qq --no-install-recommends "${missing[@]}"; } >"${WORK}/apt.log" 2>&1 ||
		{ cat "${WORK}/apt.log" >&2; return 1; }
}
export PATH="${PATH}:/usr/sbin:/sbin"
if ! need_tools; then
	fail "tools installed with apt"
	echo "buildroot-check: ${passed} passed, ${failed} failed"
	exit 1
fi

mk_var() { # <file.mk> <VARIABLE>: its value (single-line assignments)
	sed -n "s/^$2 = //p" "$1"
}

# ------------------------------------------------------------------ versions
cargo_version=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "${REPO}/Cargo.toml")
for mk in "${EXT}"/package/*/*.mk; do
	pkg=$(basename "${mk}" .mk)
	var=$(echo "${pkg}" | tr 'a-z-' 'A-Z_')_VERSION
	v=$(mk_var "${mk}" "${var}")
	if [ -n "${cargo_version}" ] && [ "${v}" = "${cargo_version}" ]; then
		pass "version: ${pkg} ${v} == Cargo.toml"
	else
		fail "version: ${pkg} '${v}' != Cargo.toml '${cargo_version}'"
	fi
done

# ------------------------------------------------------------------ hashes
for h in "${EXT}"/package/*/*.hash; do
	bad=()
	while read -r algo sum file; do
		case "${algo}" in sha256) ;; ''|\#*) continue ;; *) bad+=("unexpected ${algo}"); continue ;; esac
		case "${file}" in *-cargo[0-9].tar.gz|*.tar.*) continue ;; esac # downloads: not in the repo
		have=$(sha256sum "${REPO}/${file}" 2>/dev/null | cut -d' ' -f1)
		[ "${have}" = "${sum}" ] || bad+=("${file}: ${sum} in .hash, ${have:-missing} in the repo")
	done <"${h}"
	if [ ${#bad[@]} -eq 0 ]; then pass "hash: ${h#"${EXT}"/}"; else fail "hash: ${h#"${EXT}"/}" "${bad[@]}"; fi
done

# ------------------------------------------------------------------ referenced files
# Files installed by the packages and by the provisioning hook of post-build.sh:
#   $(<PKG>_ROOTFS)/path             images/rootfs, both runtimes;
#   $(<PKG>_RUNTIME_ROOTFS)/path     the runtime's own: images/rootfs (Docker) or
#                                    images/rootfs-containerd, so present in both;
#   $(<PKG>_CONTAINERD_ROOTFS)/path  images/rootfs-containerd, containerd only;
#   $(<PKG>_AIRGAP_ROOTFS)/path      images/rootfs-airgap, with a preloaded image archive.
claimed="${WORK}/claimed"              # images/rootfs files
claimed_containerd="${WORK}/claimed-c" # images/rootfs-containerd files
claimed_airgap="${WORK}/claimed-a"     # images/rootfs-airgap files
: >"${claimed}"
: >"${claimed_containerd}"
: >"${claimed_airgap}"
mk_paths() { # <file.mk> <kind: "" | RUNTIME | CONTAINERD | AIRGAP>: the paths after $(<PKG>_<kind>_ROOTFS)/
	# shellcheck disable=SC2016 # make variables, not shell ones
	grep -o '\$([A-Z0-9_]*_ROOTFS)/[^ \\]*' "$1" | case "$2" in
	'') grep -v -e '_RUNTIME_ROOTFS)' -e '_CONTAINERD_ROOTFS)' -e '_AIRGAP_ROOTFS)' ;;
	*) grep -e "_$2_ROOTFS)" ;;
	esac | sed 's|^[^/]*/||'
}
for mk in "${EXT}"/package/*/*.mk; do
	mk_paths "${mk}" "" >>"${claimed}"
	mk_paths "${mk}" RUNTIME | tee -a "${claimed_containerd}" >>"${claimed}"
	mk_paths "${mk}" CONTAINERD >>"${claimed_containerd}"
	mk_paths "${mk}" AIRGAP >>"${claimed_airgap}"
done
grep -v -e '^#' -e '^[[:space:]]*$' "${EXT}/board/smarter/common/provisioning.files" |
	awk '{print $2}' >>"${claimed}"
missing=()
while read -r p; do [ -f "${ROOTFS}/${p}" ] || missing+=("images/rootfs/${p}"); done <"${claimed}"
while read -r p; do
	[ -f "${ROOTFS_CONTAINERD}/${p}" ] || missing+=("images/rootfs-containerd/${p}")
done <"${claimed_containerd}"
while read -r p; do [ -f "${ROOTFS_AIRGAP}/${p}" ] || missing+=("images/rootfs-airgap/${p}"); done <"${claimed_airgap}"
# Other repository files: license files, the synced Cargo files.
for mk in "${EXT}"/package/*/*.mk; do
	for p in $(mk_var "${mk}" "$(basename "${mk}" .mk | tr 'a-z-' 'A-Z_')_LICENSE_FILES"); do
		[ -f "${REPO}/${p}" ] || missing+=("${p} (${mk##*/})")
	done
	while read -r p; do
		[ -e "${REPO}/${p}" ] || missing+=("${p} (rsync filter of ${mk##*/})")
	done < <(grep -o -- '--include=/[^ \\]*' "${mk}" | sed 's|^--include=/||; s|/\*\*\*$||; s|/$||' | sort -u)
done
# External tree files named in Config.in, defconfigs and the config files.
# shellcheck disable=SC2016 # Kconfig and make variables, not shell ones
while read -r p; do
	[ -e "${EXT}/${p}" ] || missing+=("buildroot/${p}")
done < <(grep -ho '\(\$BR2_EXTERNAL_SMARTER_CNI_PATH\|\$(BR2_EXTERNAL_SMARTER_CNI_PATH)\)/[^" ]*' \
	"${EXT}"/Config.in "${EXT}"/configs/*_defconfig | sed 's/^[^/]*\///' | sort -u)
for d in "${EXT}"/board/smarter/*/genimage.cfg; do
	[ -x "$(dirname "${d}")/../common/post-image.sh" ] || missing+=("post-image.sh for ${d#"${EXT}"/}")
done
if [ ${#missing[@]} -eq 0 ]; then
	pass "referenced files exist ($(sort -u "${claimed}" | wc -l) from images/rootfs, $(sort -u "${claimed_containerd}" | wc -l) from images/rootfs-containerd)"
else
	fail "referenced files exist" "${missing[@]}"
fi

unclaimed=()
while read -r f; do
	grep -qxF "${f}" "${claimed}" || unclaimed+=("images/rootfs/${f}")
done < <(cd "${ROOTFS}" && find . -type f | sed 's|^\./||' | sort)
if [ ${#unclaimed[@]} -eq 0 ]; then
	pass "every images/rootfs file is installed by a package or provisioning.files"
else
	fail "images/rootfs files the Buildroot tree does not install (add them to a package .mk or board/smarter/common/provisioning.files)" "${unclaimed[@]}"
fi
unclaimed=()
while read -r f; do
	grep -qxF "${f}" "${claimed_containerd}" || unclaimed+=("images/rootfs-containerd/${f}")
done < <(cd "${ROOTFS_CONTAINERD}" && find . -type f | sed 's|^\./||' | sort)
if [ ${#unclaimed[@]} -eq 0 ]; then
	pass "every images/rootfs-containerd file is installed by a package (containerd runtime)"
else
	fail "images/rootfs-containerd files the Buildroot tree does not install (install them from \$(<PKG>_RUNTIME_ROOTFS) or \$(<PKG>_CONTAINERD_ROOTFS) in a package .mk)" "${unclaimed[@]}"
fi

unclaimed=()
while read -r f; do
	grep -qxF "${f}" "${claimed_airgap}" || unclaimed+=("images/rootfs-airgap/${f}")
done < <(cd "${ROOTFS_AIRGAP}" && find . -type f | sed 's|^\./||' | sort)
if [ ${#unclaimed[@]} -eq 0 ]; then
	pass "every images/rootfs-airgap file is installed by a package (air gap)"
else
	fail "images/rootfs-airgap files the Buildroot tree does not install (install them from \$(<PKG>_AIRGAP_ROOTFS) in a package .mk)" "${unclaimed[@]}"
fi

# ------------------------------------------------------------------ fsck at boot
# The root file system is checked at every boot (after a power cut above all): the kernel
# mounts it read-only (`ro`, and never `rw`, on the command line), systemd-fsck-root checks
# it (Buildroot's systemd fstab: "/dev/root / auto rw 0 1", pass 1, as long as the root is
# remounted rw) with e2fsck (systemd brings only util-linux's fsck wrapper: e2fsprogs is
# the board's to select), then systemd-remount-fs makes it writable.
for c in "${EXT}"/configs/*_defconfig; do
	bad=()
	for want in BR2_INIT_SYSTEMD=y BR2_PACKAGE_E2FSPROGS=y BR2_TARGET_ROOTFS_EXT2_4=y; do
		grep -qxF "${want}" "${c}" || bad+=("${want} missing")
	done
	grep -qxF '# BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW is not set' "${c}" &&
		bad+=("BR2_TARGET_GENERIC_REMOUNT_ROOTFS_RW off: fstab root pass would be for a read-only root")
	# shellcheck disable=SC2016 # make variable, not a shell one
	cmdfile=$(sed -n 's/^BR2_PACKAGE_RPI_FIRMWARE_CMDLINE_FILE="\(.*\)"$/\1/p' "${c}" |
		sed 's|^$(BR2_EXTERNAL_SMARTER_CNI_PATH)|'"${EXT}"'|')
	if [ ! -f "${cmdfile}" ]; then
		bad+=("no cmdline file (BR2_PACKAGE_RPI_FIRMWARE_CMDLINE_FILE)")
	else
		cmd=" $(tr '\n' ' ' <"${cmdfile}") "
		[[ ${cmd} == *" ro "* ]] || bad+=("${cmdfile#"${EXT}"/}: no 'ro' (root must be mounted read-only for fsck)")
		[[ ${cmd} == *" rw "* ]] && bad+=("${cmdfile#"${EXT}"/}: 'rw' (systemd-fsck-root skips a writable root)")
		[[ ${cmd} == *" fsck.repair=yes "* ]] || bad+=("${cmdfile#"${EXT}"/}: no fsck.repair=yes (a gateway has nobody to answer fsck)")
	fi
	if [ ${#bad[@]} -eq 0 ]; then
		pass "fsck at boot: ${c##*/} (e2fsprogs, systemd, ext4 root mounted ro, fsck.repair=yes)"
	else
		fail "fsck at boot: ${c##*/}" "${bad[@]}"
	fi
done

# ------------------------------------------------------------------ air gap
# The smarter-k3s-agent package's own install commands, run by GNU make with the few
# Buildroot helpers they use ($(INSTALL), qstrip, the package infrastructure as no-ops)
# into a scratch target, for both runtimes, with and without a preloaded archive (a
# placeholder archive: only the files' places are checked here).
agent_install() { # <target dir> <runtime docker|containerd> <archive or "">
	# (printf: a recipe line must start with a tab, which <<- would strip)
	# shellcheck disable=SC2016 # make syntax, not shell
	printf '%b\n' 'define generic-package' 'endef' 'qstrip = $(strip $(subst ",,$(1)))' \
		'KCONFIG_ENABLE_OPT =' 'INSTALL = install' 'include $(PKG_MK)' '$(SRC)/.br-install:' \
		'\t$(SMARTER_K3S_AGENT_INSTALL_TARGET_CMDS)' '\t$(SMARTER_K3S_AGENT_INSTALL_INIT_SYSTEMD)' >"${WORK}/agent.mk"
	local containerd=
	[ "$2" = containerd ] && containerd=y
	make -s -f "${WORK}/agent.mk" PKG_MK="${EXT}/package/smarter-k3s-agent/smarter-k3s-agent.mk" \
		SRC="${REPO}" TARGET_DIR="$1" BR2_PACKAGE_SMARTER_CNI_RUNTIME_CONTAINERD="${containerd}" \
		BR2_PACKAGE_SMARTER_K3S_AGENT_PRELOAD_INSTALLER="\"$3\"" "${REPO}/.br-install"
}
placeholder="${WORK}/smarter-cni-installer-0.0.0-placeholder-arm64.tar"
python3 "${REPO}/tests/images/placeholder-image.py" "${placeholder}" arm64 smarter-cni/installer:0.0.0-placeholder >/dev/null
airgap=var/lib/rancher/k3s/agent/images/${placeholder##*/}
preload_unit=usr/lib/systemd/system/smarter-cni-preload-images.service
for runtime in docker containerd; do
	t="${WORK}/agent-${runtime}"
	if out=$(agent_install "${t}" "${runtime}" "${placeholder}" 2>&1) &&
		cmp -s "${placeholder}" "${t}/${airgap}" &&
		[ "$(stat -c %a "${t}/var/lib/rancher/k3s/agent")" = 700 ] &&
		[ -f "${t}/usr/lib/systemd/system/smarter-k3s-agent.service" ] &&
		if [ "${runtime}" = docker ]; then cmp -s "${ROOTFS_AIRGAP}/${preload_unit}" "${t}/${preload_unit}"; else [ ! -e "${t}/${preload_unit}" ]; fi; then
		pass "air gap (${runtime}): PRELOAD_INSTALLER installs the archive in /${airgap%/*}/$([ "${runtime}" = docker ] && echo ' and the Docker loader unit')"
	else
		fail "air gap (${runtime}): PRELOAD_INSTALLER installs the archive" "${out}" "$(cd "${t}" 2>/dev/null && find . | sort)"
	fi
	t="${WORK}/agent-${runtime}-none"
	if out=$(agent_install "${t}" "${runtime}" "" 2>&1) && [ ! -e "${t}/var/lib/rancher" ] && [ ! -e "${t}/${preload_unit}" ] &&
		[ -f "${t}/usr/lib/systemd/system/smarter-k3s-agent.service" ]; then
		pass "air gap (${runtime}): empty PRELOAD_INSTALLER installs no archive and no loader"
	else
		fail "air gap (${runtime}): empty PRELOAD_INSTALLER installs no archive and no loader" "${out}" "$(cd "${t}" 2>/dev/null && find . | sort)"
	fi
done

# ------------------------------------------------------------------ defconfigs
# The containerd variant of a board is its Docker defconfig without Docker
# Engine (and its CLI), with the containerd runtime chosen: nothing else drifts.
for c in "${EXT}"/configs/*_containerd_defconfig; do
	d="${c%_containerd_defconfig}_defconfig"
	want=$(grep -v -e '^BR2_PACKAGE_DOCKER_ENGINE=y$' -e '^BR2_PACKAGE_DOCKER_CLI=y$' "${d}" 2>/dev/null;
		echo BR2_PACKAGE_SMARTER_CNI_RUNTIME_CONTAINERD=y)
	if [ ! -f "${d}" ]; then
		fail "defconfig: ${c##*/} has no Docker twin ${d##*/}"
	elif out=$(diff <(sort <<<"${want}") <(sort "${c}")); then
		pass "defconfig: ${c##*/} == ${d##*/} without Docker Engine, containerd runtime"
	else
		fail "defconfig: ${c##*/} drifted from ${d##*/} (< expected, > found)" "${out}"
	fi
done

# ------------------------------------------------------------------ units
verify_units() { # <unit>...: systemd-analyze verify in a scratch root, warnings are errors
	local root out
	root=$(mktemp -d "${WORK}/unitroot.XXXX")
	mkdir -p "${root}/usr/lib/systemd"
	cp -a /usr/lib/systemd/system "${root}/usr/lib/systemd/"
	# Stand-ins for what the image provides: executables (also every absolute Exec*= path
	# of the units, e.g. node DNS's /bin/sh helper) and docker.service.
	local b
	for b in opt/cni/bin/smarter-cni usr/sbin/dnsmasq usr/local/bin/k3s usr/lib/smarter-cni/provision \
		$(sed -n 's/^Exec[A-Za-z]*=[-@:+!|]*\/\([^ ]*\).*/\1/p' "$@" | sort -u); do
		[ -e "${root}/${b}" ] && continue
		mkdir -p "${root}/$(dirname "${b}")"
		printf '#!/bin/sh\n' >"${root}/${b}"
		chmod 0755 "${root}/${b}"
	done
	[ -e "${root}/usr/lib/systemd/system/docker.service" ] ||
		printf '[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/sbin/dnsmasq\n' \
			>"${root}/usr/lib/systemd/system/docker.service"
	cp "$@" "${root}/usr/lib/systemd/system/"
	out=$(cd "${root}" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="${root}" \
		"${@/#*\//usr/lib/systemd/system/}" 2>&1)
	local rc=$?
	[ ${rc} -eq 0 ] && [ -z "${out}" ] && return 0
	printf '%s\n' "${out}"
	return 1
}
units=()
while read -r u; do
	[ -n "${u}" ] && units+=("${ROOTFS}/${u}")
done < <(grep '\.service$\|\.timer$\|\.socket$\|\.path$' "${claimed}" | sort -u)
if [ ${#units[@]} -eq 0 ]; then
	fail "systemd-analyze verify: no units found"
elif out=$(verify_units "${units[@]}"); then
	pass "systemd-analyze verify: ${#units[@]} units, no warnings"
else
	fail "systemd-analyze verify" "${out}"
fi
# containerd runtime: its own units in place of the same-named ones.
units_c=()
for u in "${units[@]}"; do
	grep -qxF "${u#"${ROOTFS}"/}" "${claimed_containerd}" || units_c+=("${u}")
done
while read -r u; do
	[ -n "${u}" ] && units_c+=("${ROOTFS_CONTAINERD}/${u}")
done < <(grep '\.service$\|\.timer$\|\.socket$\|\.path$' "${claimed_containerd}" | sort -u)
if out=$(verify_units "${units_c[@]}"); then
	pass "systemd-analyze verify (containerd runtime): ${#units_c[@]} units, no warnings"
else
	fail "systemd-analyze verify (containerd runtime)" "${out}"
fi
# Docker runtime with a preloaded archive: its loader unit with the others.
units_a=("${units[@]}")
while read -r u; do
	[ -n "${u}" ] && units_a+=("${ROOTFS_AIRGAP}/${u}")
done < <(grep '\.service$' "${claimed_airgap}" | sort -u)
if [ ${#units_a[@]} -gt ${#units[@]} ] && out=$(verify_units "${units_a[@]}"); then
	pass "systemd-analyze verify (air gap, Docker): ${#units_a[@]} units, no warnings"
else
	fail "systemd-analyze verify (air gap, Docker)" "${out:-no images/rootfs-airgap unit installed}"
fi

# ------------------------------------------------------------------ shellcheck
scripts=("${BASH_SOURCE[0]}")
while read -r f; do
	head -n1 "${f}" | grep -q '^#!.*\(sh\|bash\)' && scripts+=("${f}")
done < <(find "${EXT}" -type f | sort)
if out=$(shellcheck "${scripts[@]}" 2>&1); then
	pass "shellcheck: ${#scripts[@]} scripts"
else
	fail "shellcheck" "${out}"
fi
for f in "${scripts[@]:1}"; do
	[ -x "${f}" ] || fail "executable bit: ${f#"${REPO}"/}"
done

# ------------------------------------------------------------------ genimage
for cfg in "${EXT}"/board/smarter/*/genimage.cfg; do
	board=$(basename "$(dirname "${cfg}")")
	d="${WORK}/genimage-${board}"
	mkdir -p "${d}/input" "${d}/out"
	# Placeholders for every boot file the config names; "overlays" is a folder.
	sed -n 's/^[[:space:]]*"\([^"]*\)",\{0,1\}$/\1/p' "${cfg}" | while read -r f; do
		mkdir -p "${d}/input/$(dirname "${f}")"
		case "${f}" in
		*/overlays) mkdir -p "${d}/input/${f}" && echo placeholder >"${d}/input/${f}/README" ;;
		*) echo "placeholder ${f}" >"${d}/input/${f}" ;;
		esac
	done
	mkfs.ext4 -q -L rootfs -d "${d}/input" "${d}/input/rootfs.ext4" 8M >/dev/null 2>&1
	mkdir -p "${d}/root"
	if out=$(genimage --rootpath "${d}/root" --tmppath "${d}/tmp" --inputpath "${d}/input" \
		--outputpath "${d}/out" --config "${cfg}" 2>&1) &&
		parts=$(sfdisk -d "${d}/out/sdcard.img" 2>&1) &&
		[ "$(grep -c '^[^ ]*sdcard.img[0-9] :' <<<"${parts}")" -eq 2 ] &&
		grep -q 'type=c, bootable' <<<"${parts}" &&
		# The firmware reads config.txt and overlays/ at the root of the FAT.
		MTOOLS_SKIP_CHECK=1 mdir -i "${d}/out/boot.vfat" ::config.txt >/dev/null 2>&1 &&
		MTOOLS_SKIP_CHECK=1 mdir -i "${d}/out/boot.vfat" ::overlays/README >/dev/null 2>&1; then
		pass "genimage: ${board} sdcard.img (boot FAT + rootfs)"
	else
		fail "genimage: ${board}" "${out}" "${parts:-}"
	fi
done

# ------------------------------------------------------------------ post-build
t="${WORK}/target"
mkdir -p "${t}/opt/cni/bin" "${t}/etc/cni/net.d" "${t}/etc/smarter-cni" "${t}/usr/sbin"
touch "${t}/opt/cni/bin/smarter-cni" "${t}/etc/cni/net.d/10-smarter-cni.conflist" \
	"${t}/etc/smarter-cni/dnsmasq.conf" "${t}/usr/sbin/dnsmasq"
ln -s smarter-cni "${t}/opt/cni/bin/loopback"
if out=$("${EXT}/board/smarter/common/post-build.sh" "${t}" "${EXT}/board/smarter/rpi4_64" 2>&1) &&
	[ -L "${t}/etc/systemd/system/getty.target.wants/getty@tty1.service" ]; then
	pass "post-build.sh on a placeholder target"
else
	fail "post-build.sh on a placeholder target" "${out}"
fi
rm -f "${t}/opt/cni/bin/loopback"
if "${EXT}/board/smarter/common/post-build.sh" "${t}" >/dev/null 2>&1; then
	fail "post-build.sh rejects a target without /opt/cni/bin/loopback"
else
	pass "post-build.sh rejects a target without /opt/cni/bin/loopback"
fi
# Bridge mode (containerd runtime) also needs nft and the hostnames unit.
ln -s smarter-cni "${t}/opt/cni/bin/loopback"
cp "${ROOTFS_CONTAINERD}/etc/cni/net.d/10-smarter-cni.conflist" "${t}/etc/cni/net.d/"
if "${EXT}/board/smarter/common/post-build.sh" "${t}" >/dev/null 2>&1; then
	fail "post-build.sh rejects a bridge-mode target without nft"
else
	pass "post-build.sh rejects a bridge-mode target without nft"
fi
mkdir -p "${t}/usr/lib/systemd/system"
touch "${t}/usr/sbin/nft" "${t}/usr/lib/systemd/system/smarter-cni-hostnames.service"
if out=$("${EXT}/board/smarter/common/post-build.sh" "${t}" 2>&1); then
	pass "post-build.sh on a bridge-mode placeholder target"
else
	fail "post-build.sh on a bridge-mode placeholder target" "${out}"
fi

echo "buildroot-check: ${passed} passed, ${failed} failed"
[ "${failed}" -eq 0 ]
