#!/usr/bin/env bash
# Build static musl release binaries of smarter-cni for Raspberry Pi gateways
# (aarch64, armv7 hard-float) and x86_64, and package them into dist/.
#
# Offline route (no cross-rs, no rustup targets): Debian bookworm-security's
# rustc-web toolchain + its rust-src, -Zbuild-std, and zig as C toolchain/linker
# through cargo-zigbuild (both from PyPI, pinned, in a venv outside the repo).
#
# Usage (root, Debian 12):  scripts/build-dist.sh
# Environment:
#   SMARTER_CNI_CACHE       cache dir for the venv (default /var/cache/smarter-cni-build)
#   SMARTER_CNI_TARGET_DIR  cargo target dir (default <repo>/target; keep it for incremental builds)
#   SMARTER_CNI_DIST        output dir (default <repo>/dist)
#   SMARTER_CNI_TARGETS     space-separated targets (default: the three below)
#   SMARTER_CNI_VERIFY=1    also rebuild into a fresh target dir and compare sha256 (reproducibility)
#   SMARTER_CNI_NO_INSTALL=1  do not apt-get/pip install anything (fail if missing)
#   SMARTER_CNI_LOCKED=0    build without --locked (default: Cargo.lock must be up to date)
#   SMARTER_CNI_BUILD_STD_FEATURES  std features for -Zbuild-std (default optimize_for_size,
#                           about 14% smaller; set it empty to build std without them)
#   SOURCE_DATE_EPOCH       overrides the timestamp (default: committer time of HEAD)
set -euo pipefail

readonly ZIGLANG_VERSION=0.17.1
readonly CARGO_ZIGBUILD_VERSION=0.24.1
# The size budget: 1.5 MB for the Raspberry Pi targets (arm), 2 MB for x86_64 (a denser
# instruction set for size-optimised code; x86 gateways have the memory).
readonly MAX_BINARY_BYTES=1500000
readonly MAX_BINARY_BYTES_X86_64=2000000
readonly APT_PACKAGES=(rustc-web cargo-web rust-web-src libstd-rust-web-dev)
readonly APT_TOOLS=(python3 python3-venv git file binutils tar gzip ca-certificates)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}
TARGET_DIR=${SMARTER_CNI_TARGET_DIR:-$REPO/target}
DIST=${SMARTER_CNI_DIST:-$REPO/dist}
read -r -a TARGETS <<<"${SMARTER_CNI_TARGETS:-aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl}"
VENV=$CACHE/venv
BIN_NAME=smarter-cni
# Where the binary sits inside the tarball (a rootfs overlay: `tar -xzf ... -C /`).
BIN_DIR_IN_TAR=opt/cni/bin

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-dist: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- toolchain
missing_debs() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || printf '%s\n' "$p"
    done
}

install_debs() {
    local -a missing
    mapfile -t missing < <(missing_debs "${APT_TOOLS[@]}" "${APT_PACKAGES[@]}")
    ((${#missing[@]} == 0)) && { log "Debian packages present"; return; }
    [[ ${SMARTER_CNI_NO_INSTALL:-0} == 1 ]] && die "missing Debian packages: ${missing[*]}"
    ((EUID == 0)) || die "missing Debian packages (${missing[*]}); run as root or install them"
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # The rust-web packages come from bookworm-security; install them together, unpinned,
    # so that their exact-version dependencies resolve to one consistent set.
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

setup_venv() {
    local want="ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
    if [[ -f $VENV/.pinned ]] && [[ $(<"$VENV/.pinned") == "$want" ]] \
        && [[ -x $VENV/bin/cargo-zigbuild ]]; then
        log "venv present: $VENV ($want)"
        return
    fi
    [[ ${SMARTER_CNI_NO_INSTALL:-0} == 1 ]] && die "venv $VENV missing or not at $want"
    log "creating venv $VENV with $want"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
        "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
    printf '%s' "$want" >"$VENV/.pinned"
}

# ---------------------------------------------------------------- build
target_env_name() { # aarch64-unknown-linux-musl -> AARCH64_UNKNOWN_LINUX_MUSL
    local t=${1^^}
    printf '%s' "${t//-/_}"
}

build_env() {
    # Debian's cargo/rustc first; the venv provides cargo-zigbuild and python-zig.
    export PATH="/usr/bin:$VENV/bin:$PATH"
    export CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
    export RUSTC_BOOTSTRAP=1 # -Zbuild-std is unstable; Debian's compiler is stable
    # Anything here would override the per-target flags or make output differ.
    unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS CARGO_BUILD_RUSTFLAGS RUSTC_WRAPPER \
        RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC_WRAPPER RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET
    export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
    export CARGO_INCREMENTAL=0 CARGO_TERM_COLOR=never
    # zig keeps a cache of compiled libc objects: keep it with ours, not in ~/.cache.
    export ZIG_GLOBAL_CACHE_DIR=$CACHE/zig-cache ZIG_LOCAL_CACHE_DIR=$CACHE/zig-cache
    # cargo-zigbuild runs `python3 -m ziglang`: point it at the venv's python, since
    # /usr/bin comes first in PATH. Its linker wrapper scripts go to our cache too.
    export CARGO_ZIGBUILD_PYTHON_PATH=$VENV/bin/python3
    export CARGO_ZIGBUILD_CACHE_DIR=$CACHE/cargo-zigbuild
    SYSROOT=$(/usr/bin/rustc --print sysroot)
    RUST_SRC=$SYSROOT/lib/rustlib/src/rust
    [[ -f $RUST_SRC/library/Cargo.lock ]] || die "rust-src not found at $RUST_SRC (rust-web-src)"
    RUSTC_RELEASE=$(/usr/bin/rustc -vV | sed -n 's/^release: //p')
}

# rustflags for one target; $1 = target, $2 = target dir (remapped so it never leaks)
target_rustflags() {
    local tdir=$2
    printf '%s' "-C link-self-contained=no -C strip=symbols -C debuginfo=0" \
        " -C link-arg=-Wl,--build-id=none" \
        " --remap-path-prefix=$tdir=/target" \
        " --remap-path-prefix=$REPO=/smarter-cni" \
        " --remap-path-prefix=$CARGO_HOME=/cargo" \
        " --remap-path-prefix=$RUST_SRC=/rustc/$RUSTC_RELEASE"
}

build_target() { # $1 target, $2 target dir
    local t=$1 tdir=$2 var
    local -a extra=()
    [[ ${SMARTER_CNI_LOCKED:-1} == 1 ]] && extra+=(--locked)
    local std_features=${SMARTER_CNI_BUILD_STD_FEATURES-optimize_for_size}
    [[ -n $std_features ]] && extra+=("-Zbuild-std-features=$std_features")
    var=CARGO_TARGET_$(target_env_name "$t")_RUSTFLAGS
    local start=$SECONDS
    log "building $t (target dir $tdir)"
    env "$var=$(target_rustflags "$t" "$tdir")" CARGO_TARGET_DIR="$tdir" \
        cargo zigbuild "${extra[@]}" --release -Zbuild-std=std,panic_abort \
        --manifest-path "$REPO/Cargo.toml" --bin "$BIN_NAME" --target "$t"
    log "built $t in $((SECONDS - start)) s"
}

# ---------------------------------------------------------------- package
# shellcheck source=lib/source-date-epoch.sh
source "$REPO/scripts/lib/source-date-epoch.sh"

make_tarball() { # $1 target, $2 binary, $3 output file
    local t=$1 bin=$2 out=$3 stage
    stage=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: stage is local
    trap "rm -rf '$stage'" RETURN
    if [[ -d $REPO/images/rootfs ]]; then
        cp -a "$REPO/images/rootfs/." "$stage/"
    fi
    mkdir -p "$stage/$BIN_DIR_IN_TAR"
    [[ -e $stage/$BIN_DIR_IN_TAR/$BIN_NAME || -e $stage/$BIN_DIR_IN_TAR/loopback ]] &&
        die "images/rootfs already has $BIN_DIR_IN_TAR/$BIN_NAME or loopback"
    install -m 0755 "$bin" "$stage/$BIN_DIR_IN_TAR/$BIN_NAME"
    ln -s "$BIN_NAME" "$stage/$BIN_DIR_IN_TAR/loopback"
    # Normalise permissions (umask/checkout independent); git only knows 644/755.
    chmod -R u+rwX,go+rX,go-w "$stage"
    local -a top
    mapfile -t top < <(cd "$stage" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort)
    (cd "$stage" && LC_ALL=C tar --format=gnu --sort=name --mtime="@$SDE" \
        --owner=0 --group=0 --numeric-owner --no-acls --no-xattrs --no-selinux \
        -cf - -- "${top[@]}") | gzip -9 -n >"$out"
}

# ---------------------------------------------------------------- main
main() {
    install_debs
    setup_venv
    build_env
    SDE=$(source_date_epoch "$REPO")
    export SOURCE_DATE_EPOCH=$SDE
    cd "$REPO"
    local version
    version=$(cargo pkgid --manifest-path "$REPO/Cargo.toml" | sed 's/.*[#@]//')
    [[ $version =~ ^[0-9] ]] || die "cannot read package version (got '$version')"
    log "smarter-cni $version, SOURCE_DATE_EPOCH=$SDE, rustc $RUSTC_RELEASE," \
        "zig $ZIGLANG_VERSION, cargo-zigbuild $CARGO_ZIGBUILD_VERSION"
    [[ -d $REPO/images/rootfs ]] || log "note: $REPO/images/rootfs absent; tarballs carry only the binary"

    local t
    for t in "${TARGETS[@]}"; do build_target "$t" "$TARGET_DIR"; done

    rm -rf "$DIST"
    mkdir -p "$DIST"
    local fail=0 bin size arch
    for t in "${TARGETS[@]}"; do
        bin=$TARGET_DIR/$t/release/$BIN_NAME
        [[ -f $bin ]] || die "no binary at $bin"
        size=$(stat -c %s "$bin")
        printf '%-34s %9d bytes\n' "$t" "$size"
        local limit=$MAX_BINARY_BYTES
        [[ $t != x86_64-* ]] || limit=$MAX_BINARY_BYTES_X86_64
        if ((size > limit)); then
            printf 'build-dist: error: %s is %d bytes, over the %d byte limit\n' \
                "$t" "$size" "$limit" >&2
            fail=1
        fi
        arch=${t%%-*}
        "$REPO/scripts/check-static.sh" "$bin" "$arch"
        make_tarball "$t" "$bin" "$DIST/$BIN_NAME-$version-$t.tar.gz"
    done
    (cd "$DIST" && LC_ALL=C sha256sum -- *.tar.gz >SHA256SUMS)
    cat "$DIST/SHA256SUMS"
    ((fail == 0)) || die "binary size limit exceeded"

    if [[ ${SMARTER_CNI_VERIFY:-0} == 1 ]]; then
        verify_reproducible
    fi
}

verify_reproducible() {
    local fresh t a b bad=0
    fresh=$(mktemp -d "$CACHE/verify-target.XXXXXX")
    for t in "${TARGETS[@]}"; do
        build_target "$t" "$fresh"
        a=$(sha256sum <"$TARGET_DIR/$t/release/$BIN_NAME" | cut -d' ' -f1)
        b=$(sha256sum <"$fresh/$t/release/$BIN_NAME" | cut -d' ' -f1)
        if [[ $a == "$b" ]]; then
            log "reproducible: $t $a"
        else
            log "NOT reproducible: $t $a != $b"
            bad=1
        fi
    done
    rm -rf "$fresh"
    ((bad == 0)) || die "reproducibility check failed"
}

main "$@"
