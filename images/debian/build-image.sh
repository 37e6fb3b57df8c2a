#!/usr/bin/env bash
# Build a Debian trixie arm64 gateway image for Raspberry Pi 4/5 from Debian packages only:
# a partitioned .img (FAT boot partition + ext4 root) and its .bmap, in one command.
#
#   images/debian/build-image.sh [--variant gateway|test] [--runtime docker|containerd] [--out DIR]
#                                [--base-only] [--preload-installer FILE]
#
# --base-only: only step 2, the cached base root filesystem (CI makes it in the background
# while the test suites run; a build that needs it meanwhile waits for it).
# --runtime (or SMARTER_RUNTIME): what runs the pods. docker (default): Docker Engine, k3s
# with `docker: true`, smarter-cni in Docker mode. containerd: no Docker in the image; k3s's
# embedded containerd, smarter-cni in bridge mode (nftables for its NAT rules), the
# containerd variant's files of images/rootfs-containerd over images/rootfs, and
# smarter-cni-hostnames.service. The image's name ends in -containerd.
# --preload-installer FILE (or SMARTER_PRELOAD_INSTALLER): air gap. Bakes the installer
# image archive FILE (dist/smarter-cni-installer-<version>-arm64.tar of
# packaging/oci/build-image.sh; an arm64 docker-save archive) into
# /var/lib/rancher/k3s/agent/images/, so the installer DaemonSet's pod never pulls. The
# containerd runtime: k3s imports that folder into its containerd at start. Docker: k3s
# leaves it alone (cri-dockerd has no import), so the option also installs and enables
# smarter-cni-preload-images.service (images/rootfs-airgap), which `docker load`s every
# *.tar there before the k3s agent starts, at every boot.
#
# Environment:
#   SMARTER_RUNTIME=docker|containerd   as --runtime (the option wins)
#   SMARTER_PRELOAD_INSTALLER=FILE      as --preload-installer (the option wins)
#   K3S_BINARY=/path/to/k3s-arm64   installed as /usr/local/bin/k3s (else the agent unit stays
#                                   installed but inactive: ConditionPathExists is not met)
#   SMARTER_IMAGE_CACHE             cache (default /var/cache/smarter-cni-image): .debs and the
#                                   base root filesystem, keyed on suite + package list
#                                   + the files it needs before its packages (BASE_FILES)
#   SMARTER_IMAGE_MIRROR            Debian mirror (default: the one this machine's apt uses)
#   SMARTER_IMAGE_NO_INSTALL=1      do not apt-get install the build tools
#   SMARTER_CNI_TARGET_DIR          passed to scripts/build-dist.sh (cargo target dir)
#
# Steps: (1) the static arm64 smarter-cni build (scripts/build-dist.sh, as a rootfs-overlay
# tarball that carries images/rootfs too); (2) the base root filesystem with mmdebstrap
# (foreign arch through qemu-user-static + binfmt_misc), cached; (3) the overlay, the
# gateway's own settings, enabled units; (4) boot partition + root partition + .bmap.
# The test variant (--variant test) adds tests/images/guest: a unit that runs the in-image
# boot test, the arm64 test container image (busybox + getent) and a provisioning file; it
# exists for the Docker runtime only (the boot test drives Docker).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
CACHE=${SMARTER_IMAGE_CACHE:-/var/cache/smarter-cni-image}
VARIANT=gateway
RUNTIME=${SMARTER_RUNTIME:-docker}
OUT=$REPO/images/out
BASE_ONLY=0
PRELOAD=${SMARTER_PRELOAD_INSTALLER:-}
PRELOAD_UNITS=()
AIRGAP_DIR=/var/lib/rancher/k3s/agent/images
SUITE=trixie
ARCH=arm64
BOOT_MB=256
BOOT_LABEL=SMARTERBOOT
ROOT_LABEL=smarter-root

# The gateway's packages (mmdebstrap installs no Recommends: docker-cli is one of docker.io's).
# busybox-static: a rescue shell, and the test variant's
# container image is made of it (so every variant has the same base).
PACKAGES=(raspi-firmware linux-image-arm64 systemd systemd-sysv systemd-resolved udev
  docker.io docker-cli dnsmasq-base openssh-server iproute2 ca-certificates
  initramfs-tools busybox-static dosfstools e2fsprogs kmod iptables)
# The containerd runtime: the same without Docker Engine, plus nftables, whose `nft` loads
# bridge mode's NAT base ruleset (k3s brings its own containerd and runc). The list's order
# is the base cache's key: the Docker list stays as it was.
DOCKER_PACKAGES=(docker.io docker-cli)
CONTAINERD_PACKAGES=(nftables)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

while (($#)); do
  case $1 in
    --variant) VARIANT=${2:?}; shift 2 ;;
    --runtime) RUNTIME=${2:?}; shift 2 ;;
    --out) OUT=${2:?}; shift 2 ;;
    --base-only) BASE_ONLY=1; shift ;;
    --preload-installer) PRELOAD=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,42p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case $VARIANT in gateway | test) ;; *) die "--variant must be gateway or test" ;; esac
case $RUNTIME in
  docker) ;;
  containerd)
    mapfile -t PACKAGES < <(printf '%s\n' "${PACKAGES[@]}" | grep -vxF -f <(printf '%s\n' "${DOCKER_PACKAGES[@]}"))
    PACKAGES+=("${CONTAINERD_PACKAGES[@]}")
    ;;
  *) die "--runtime (SMARTER_RUNTIME) must be docker or containerd, not '$RUNTIME'" ;;
esac
[[ $VARIANT == test && $RUNTIME != docker ]] &&
  die "--variant test exists for the Docker runtime only (the boot test drives Docker); build --variant gateway --runtime $RUNTIME"
# Names of everything this build writes: the test variant and the containerd runtime apart.
FLAVOUR=$VARIANT
[[ $RUNTIME == docker ]] || FLAVOUR+=-$RUNTIME
((EUID == 0)) || die "run as root (mmdebstrap root mode, loop-free image assembly needs root-owned files)"
export PATH=$PATH:/usr/sbin:/sbin

# ------------------------------------------------------------------ air gap
# The archive to preload: a single-platform docker-save archive (manifest.json naming its
# config and tags) for this image's architecture, which both loaders take (k3s's
# containerd import, `docker load`). Prints its tags.
check_preload() {
  [[ -f $PRELOAD ]] || die "--preload-installer $PRELOAD: no such file (build it: packaging/oci/build-image.sh, after scripts/build-dist.sh)"
  [[ $PRELOAD == *.tar ]] || die "--preload-installer $PRELOAD: not a .tar (use dist/smarter-cni-installer-<version>-$ARCH.tar)"
  python3 - "$PRELOAD" "$ARCH" <<'PY' || die "--preload-installer $PRELOAD: not a docker-save archive of one linux/$ARCH image (what Docker and k3s load); use dist/smarter-cni-installer-<version>-$ARCH.tar, not the multi-arch .oci.tar"
import json, sys, tarfile
path, arch = sys.argv[1:3]
with tarfile.open(path) as t:
    try:
        manifest = json.load(t.extractfile("manifest.json"))
    except KeyError:
        sys.exit(f"{path}: no manifest.json (docker load needs one)")
    if len(manifest) != 1 or not manifest[0].get("RepoTags"):
        sys.exit(f"{path}: manifest.json must name one image with its tags")
    config = json.load(t.extractfile(manifest[0]["Config"]))
    if config.get("architecture") != arch or config.get("os") != "linux":
        sys.exit(f"{path}: image is {config.get('os')}/{config.get('architecture')}, this image needs linux/{arch}")
    print(" ".join(manifest[0]["RepoTags"]))
PY
}

# ------------------------------------------------------------------ tools
ensure_tools() {
  local -A deb_of=([mmdebstrap]=mmdebstrap [qemu-aarch64-static]=qemu-user-static
    [update-binfmts]=binfmt-support [arch-test]=arch-test [bmaptool]=bmap-tools
    [mkfs.vfat]=dosfstools [mcopy]=mtools [mkfs.ext4]=e2fsprogs [sfdisk]=fdisk)
  local missing=() t
  for t in "${!deb_of[@]}"; do command -v "$t" >/dev/null || missing+=("${deb_of[$t]}"); done
  ((${#missing[@]} == 0)) && return 0
  [[ ${SMARTER_IMAGE_NO_INSTALL:-0} == 1 ]] && die "missing tools: ${missing[*]}"
  log "apt-get install ${missing[*]}"
  { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends "${missing[@]}"; } >/dev/null
}

# arm64 maintainer scripts run through qemu-user-static: binfmt_misc must be mounted and
# the qemu-aarch64 handler enabled (a container or fresh CI machine may have neither).
ensure_binfmt() {
  mountpoint -q /proc/sys/fs/binfmt_misc ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
  [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64 >/dev/null ||
    die "cannot register qemu-aarch64 with binfmt_misc"
  arch-test "$ARCH" >/dev/null || die "arch-test $ARCH: this machine cannot run $ARCH binaries"
}

debian_mirror() {
  [[ -n ${SMARTER_IMAGE_MIRROR:-} ]] && { echo "$SMARTER_IMAGE_MIRROR"; return; }
  local uri
  uri=$(grep -rhoE '(URIs:[[:space:]]*|^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)https?://[^[:space:]]+/debian/?' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -v security | head -n1 |
    grep -oE 'https?://[^[:space:]]+' || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# ------------------------------------------------------------------ 1: smarter-cni
build_overlay() {
  local dist=$OUT/dist
  log "smarter-cni: static arm64 build (scripts/build-dist.sh)"
  SMARTER_CNI_TARGETS=aarch64-unknown-linux-musl SMARTER_CNI_DIST=$dist \
    "$REPO/scripts/build-dist.sh" >"$OUT/build-dist.log" 2>&1 ||
    { tail -n 30 "$OUT/build-dist.log" >&2; die "scripts/build-dist.sh failed (log: $OUT/build-dist.log)"; }
  OVERLAY_TAR=$(find "$dist" -maxdepth 1 -name 'smarter-cni-*-aarch64-unknown-linux-musl.tar.gz' | sort -V | tail -n1)
  [[ -s $OVERLAY_TAR ]] || die "no arm64 tarball in $dist"
}

# ------------------------------------------------------------------ 2: base rootfs
# Files the base needs BEFORE its packages are installed (the kernel package's postinst
# makes the initramfs from them): copied in by a setup hook; their content is part of the
# cache key. The overlay (step 3) installs the same files in the image again.
BASE_FILES=(etc/initramfs-tools/conf.d/smarter-root-fsck)

build_base() {
  local key mirror f hooks=()
  mirror=$(debian_mirror)
  for f in "${BASE_FILES[@]}"; do
    [[ -f $REPO/images/debian/overlay/$f ]] || die "images/debian/overlay/$f missing"
    hooks+=(--setup-hook="mkdir -p \"\$1/$(dirname "$f")\""
      --setup-hook="copy-in $REPO/images/debian/overlay/$f /$(dirname "$f")/")
  done
  key=$({ printf '%s\n' "$SUITE" "$ARCH" "$mirror" "${PACKAGES[@]}"
    for f in "${BASE_FILES[@]}"; do echo "$f"; cat "$REPO/images/debian/overlay/$f"; done; } |
    sha256sum | cut -c1-16)
  BASE_TAR=$CACHE/base-$SUITE-$ARCH-$key.tar
  # One builder at a time (a background --base-only run, CI's image tier): the second waits.
  exec {base_lock}>"$CACHE/base-$key.lock"
  flock "$base_lock"
  [[ -s $BASE_TAR ]] && { log "base root filesystem: cached ($BASE_TAR)"; exec {base_lock}>&-; return; }
  ensure_binfmt
  mkdir -p "$CACHE/debs"
  log "base root filesystem: mmdebstrap $SUITE $ARCH from $mirror (once; cached)"
  local start=$SECONDS incl
  incl=$(IFS=,; echo "${PACKAGES[*]}")
  # .debs are kept in $CACHE/debs between runs (sync-in before, sync-out after).
  # shellcheck disable=SC2016 # "$1" is expanded by mmdebstrap's hook shell
  mmdebstrap --mode=root --variant=important --architectures="$ARCH" \
    --components=main,non-free-firmware --include="$incl" \
    --aptopt='Acquire::Languages "none"' \
    --skip=download/empty --skip=essential/unlink \
    --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
    --setup-hook="sync-in $CACHE/debs /var/cache/apt/archives/" \
    "${hooks[@]}" \
    --customize-hook="sync-out /var/cache/apt/archives $CACHE/debs" \
    --customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
    --format=tar "$SUITE" "$BASE_TAR.tmp" "$mirror" >"$CACHE/mmdebstrap.log" 2>&1 ||
    { tail -n 40 "$CACHE/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $CACHE/mmdebstrap.log)"; }
  mv "$BASE_TAR.tmp" "$BASE_TAR"
  exec {base_lock}>&-
  log "base root filesystem built in $((SECONDS - start)) s"
}

# ------------------------------------------------------------------ 3: the gateway's root
# Files of the root file system, staged in a folder (root-owned), then turned into
# partitions with mkfs.ext4 -d and mtools: no loop device and no mount needed.
stage_rootfs() {
  STAGE=$CACHE/stage-$FLAVOUR
  rm -rf "$STAGE"
  mkdir -p "$STAGE"
  log "staging the root file system ($VARIANT, $RUNTIME)"
  tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$BASE_TAR" -C "$STAGE"
  # smarter-cni + images/rootfs (the overlay tarball of scripts/build-dist.sh)
  tar --numeric-owner -xzf "$OVERLAY_TAR" -C "$STAGE" --no-overwrite-dir
  # containerd: bridge mode's conflist, setup unit and hostnames unit, k3s without Docker.
  if [[ $RUNTIME == containerd ]]; then
    cp -a --no-preserve=ownership "$REPO/images/rootfs-containerd/." "$STAGE/"
  fi
  # this image's own settings (network, fstab, ssh host keys at first boot...)
  cp -a --no-preserve=ownership "$REPO/images/debian/overlay/." "$STAGE/"
  chown -R 0:0 "$STAGE/etc/systemd/system" "$STAGE/etc/fstab" "$STAGE/etc/hostname"

  if [[ -n $PRELOAD ]]; then
    # k3s makes its agent folder 0700 (keys live there); the images folder inside is public.
    install -d -m 0700 "$STAGE/var/lib/rancher/k3s/agent"
    install -D -m 0644 "$PRELOAD" "$STAGE$AIRGAP_DIR/$(basename "$PRELOAD")"
    # k3s's containerd imports the folder itself; for Docker, its loader (images/rootfs-airgap).
    if [[ $RUNTIME == docker ]]; then
      install -D -m 0644 "$REPO/images/rootfs-airgap/usr/lib/systemd/system/smarter-cni-preload-images.service" \
        "$STAGE/usr/lib/systemd/system/smarter-cni-preload-images.service"
      PRELOAD_UNITS=(smarter-cni-preload-images.service)
    fi
    log "air gap: $(basename "$PRELOAD") ($PRELOAD_TAGS) in $AIRGAP_DIR"
  fi

  if [[ -n ${K3S_BINARY:-} ]]; then
    [[ -f $K3S_BINARY ]] || die "K3S_BINARY=$K3S_BINARY: no such file"
    file -b "$K3S_BINARY" 2>/dev/null | grep -q 'ARM aarch64' || log "warning: $K3S_BINARY does not look like an arm64 binary"
    install -D -m 0755 "$K3S_BINARY" "$STAGE/usr/local/bin/k3s"
    log "k3s: $K3S_BINARY installed as /usr/local/bin/k3s"
  else
    rm -f "$STAGE/usr/local/bin/k3s"
    log "k3s: no K3S_BINARY given; smarter-k3s-agent.service is installed but stays inactive (ConditionPathExists=/usr/local/bin/k3s)"
  fi

  # First boot makes the machine id and the ssh host keys: never shared between gateways.
  : >"$STAGE/etc/machine-id"
  rm -f "$STAGE"/etc/ssh/ssh_host_*_key "$STAGE"/etc/ssh/ssh_host_*_key.pub "$STAGE/var/lib/dbus/machine-id"
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$STAGE/etc/resolv.conf"

  local units=(smarter-cni-setup.service smarter-cni-dns.service
    smarter-k3s-agent.service smarter-gateway-provision.service systemd-networkd.service
    systemd-resolved.service ssh.service systemd-timesyncd.service)
  case $RUNTIME in
    docker) units+=(docker.service "${PRELOAD_UNITS[@]}") ;;
    containerd) units+=(smarter-cni-hostnames.service) ;;
  esac
  if [[ $VARIANT == test ]]; then
    stage_test
    units+=(smarter-boot-test.service)
  fi
  local u
  for u in "${units[@]}"; do
    [[ -e $STAGE/usr/lib/systemd/system/$u || -e $STAGE/etc/systemd/system/$u ]] || { [[ $u == systemd-timesyncd.service ]] && continue; die "unit $u missing in the image"; }
    systemctl --root="$STAGE" enable "$u" >/dev/null 2>&1 || die "systemctl enable $u failed"
  done
  [[ $VARIANT == test ]] && systemctl --root="$STAGE" mask systemd-networkd-wait-online.service >/dev/null 2>&1
  # The boot partition's content, as the raspi-firmware package's hooks left it.
  boot_files
}

# Kernel, initrd, device trees, firmware, config.txt and cmdline.txt in /boot/firmware.
boot_files() {
  local fw=$STAGE/boot/firmware kver
  kver=$(find "$STAGE/usr/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
  [[ -f $STAGE/boot/vmlinuz-$kver && -f $STAGE/boot/initrd.img-$kver ]] || die "no kernel/initrd for $kver in /boot"
  mkdir -p "$fw"
  # raspi-firmware's kernel hook skips its copy in a chroot when /boot/firmware is not a
  # mount point; do what it does (firmware blobs, dtbs, kernel, initrd) when it did not.
  if [[ ! -f $fw/start4.elf ]]; then cp -a "$STAGE"/usr/lib/raspi-firmware/. "$fw/"; fi
  cp "$STAGE/boot/vmlinuz-$kver" "$fw/vmlinuz"
  cp "$STAGE/boot/initrd.img-$kver" "$fw/initrd.img"
  local d
  for d in "$STAGE"/usr/lib/linux-image-"$kver"/broadcom/bcm27*-rpi-*.dtb; do cp "$d" "$fw/"; done
  if [[ -d $STAGE/usr/lib/linux-image-$kver/overlays ]]; then cp -a "$STAGE/usr/lib/linux-image-$kver/overlays" "$fw/"; fi
  cat >"$fw/config.txt" <<CFG
# Raspberry Pi 4/5 (arm64), Debian's linux-image-arm64 (written by images/debian/build-image.sh)
arm_64bit=1
kernel=vmlinuz
initramfs initrd.img followkernel
enable_uart=1
upstream_kernel=1
disable_overscan=1
CFG
  echo "console=serial0,115200 console=tty1 root=LABEL=$ROOT_LABEL rootfstype=ext4 rootwait fsck.repair=yes" >"$fw/cmdline.txt"
  KVER=$kver
}

# The test variant (tests/images/guest): boot-test unit and script, a provisioning file on
# the boot partition, and the arm64 test container image (busybox-static + getent + glibc,
# all from this root, made into a `docker import` tarball as scripts/engines.sh does).
stage_test() {
  cp -a --no-preserve=ownership "$REPO/tests/images/guest/." "$STAGE/"
  local t=$CACHE/tools-root a
  rm -rf "$t"
  mkdir -p "$t"/{bin,etc,tmp,proc,sys,dev,run,root,usr/bin,lib/aarch64-linux-gnu}
  chmod 1777 "$t/tmp"
  install -m 0755 "$STAGE/usr/bin/busybox" "$t/bin/busybox"
  for a in sh ls cat sleep nslookup ip ping hostname echo grep; do ln -s busybox "$t/bin/$a"; done
  install -m 0755 "$STAGE/usr/bin/getent" "$t/usr/bin/getent"
  local libdir=$STAGE/usr/lib/aarch64-linux-gnu
  for a in libc.so.6 ld-linux-aarch64.so.1 libnss_dns.so.2 libnss_files.so.2 libresolv.so.2; do
    [[ -e $libdir/$a ]] && cp -L "$libdir/$a" "$t/lib/aarch64-linux-gnu/"
  done
  ln -s lib "$t/lib64" 2>/dev/null || true
  mkdir -p "$t/lib" && ln -sf aarch64-linux-gnu/ld-linux-aarch64.so.1 "$t/lib/ld-linux-aarch64.so.1"
  printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$t/etc/nsswitch.conf"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$t/etc/passwd"
  printf 'root:x:0:\n' >"$t/etc/group"
  : >"$t/etc/hosts"; : >"$t/etc/resolv.conf"; : >"$t/etc/hostname"
  printf '#!/bin/sh\ntrap "exit 0" TERM INT\nwhile :; do sleep 3600 & wait $!; done\n' >"$t/pause"
  chmod 0755 "$t/pause"
  mkdir -p "$STAGE/usr/share/smarter-cni-test"
  tar -C "$t" --numeric-owner --owner=0 --group=0 -cf "$STAGE/usr/share/smarter-cni-test/tools.tar" .
  rm -rf "$t"
  chown -R 0:0 "$STAGE/usr/lib/smarter-cni" "$STAGE/etc/systemd/system"
  mv "$STAGE/boot/firmware/smarter-gateway.conf" "$CACHE/test-provision.conf"
}

# ------------------------------------------------------------------ 4: the image
make_image() {
  local name=smarter-gateway-$SUITE-$ARCH img fat root_mb used_kb boot=$STAGE/boot/firmware
  [[ $VARIANT == test ]] && name+=-test
  [[ $RUNTIME == docker ]] || name+=-$RUNTIME
  img=$OUT/$name.img
  fat=$CACHE/boot-$FLAVOUR.fat
  rm -f "$fat" "$img" "$OUT/$name.bmap"
  log "boot partition: FAT32 ${BOOT_MB} MiB ($BOOT_LABEL)"
  truncate -s "${BOOT_MB}M" "$fat"
  mkfs.vfat -F 32 -n "$BOOT_LABEL" "$fat" >/dev/null
  MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$fat" "$boot"/* ::
  if [[ $VARIANT == test ]]; then MTOOLS_SKIP_CHECK=1 mcopy -i "$fat" "$CACHE/test-provision.conf" ::smarter-gateway.conf; fi
  # The mount point stays, empty, in the root file system.
  find "$boot" -mindepth 1 -delete
  used_kb=$(du -s -k --apparent-size "$STAGE" | cut -f1)
  root_mb=$(((used_kb * 13 / 10) / 1024 + 384))
  log "root partition: ext4 $root_mb MiB ($ROOT_LABEL, $((used_kb / 1024)) MiB used)"
  truncate -s "${root_mb}M" "$CACHE/root-$FLAVOUR.ext4"
  rm -f "$CACHE/root-$FLAVOUR.ext4"
  truncate -s "${root_mb}M" "$CACHE/root-$FLAVOUR.ext4"
  mkfs.ext4 -q -L "$ROOT_LABEL" -E root_owner=0:0 -d "$STAGE" "$CACHE/root-$FLAVOUR.ext4"
  truncate -s $((1 + BOOT_MB + root_mb))M "$img"
  printf 'label: dos\nstart=2048, size=%dMiB, type=c, bootable\nstart=%d, type=83\n' \
    "$BOOT_MB" $(((1 + BOOT_MB) * 2048)) | sfdisk -q "$img"
  dd if="$fat" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$CACHE/root-$FLAVOUR.ext4" of="$img" bs=1M seek=$((1 + BOOT_MB)) conv=notrunc,sparse status=none
  rm -f "$fat" "$CACHE/root-$FLAVOUR.ext4"
  bmaptool create -o "$OUT/$name.bmap" "$img" 2>/dev/null
  echo "$KVER" >"$OUT/$name.kernel-version"
  rm -rf "$STAGE"
  log "image: $img ($(du -h --apparent-size "$img" | cut -f1), $(du -h "$img" | cut -f1) allocated) + $OUT/$name.bmap"
}

main() {
  local start=$SECONDS
  mkdir -p "$OUT" "$CACHE"
  ensure_tools
  if ((BASE_ONLY)); then
    build_base
    log "done in $((SECONDS - start)) s (base only)"
    return
  fi
  if [[ -n $PRELOAD ]]; then PRELOAD_TAGS=$(check_preload); fi
  build_overlay
  build_base
  stage_rootfs
  make_image
  log "done in $((SECONDS - start)) s"
}
main
