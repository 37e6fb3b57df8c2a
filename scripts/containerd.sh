#!/usr/bin/env bash
# Two private containerd daemons with their CRI plugin, for the bridge-mode tests:
#   1.7 = Debian trixie's containerd 1.7.x (config version 2)
#   2.1 = Debian sid's containerd 2.1.x    (config version 3)
# Both run on bookworm with bookworm's /usr/sbin/runc (see FIELD-NOTES, "Real containerd here").
# Usage: scripts/containerd.sh fetch|start|stop|clean|status|env [1.7|2.1]
#   fetch   download and unpack both .debs (once; cached in $CACHE/containerd) and build the
#           busybox OCI image tar (offline, from Debian's busybox-static)
#   start   fetch, then start both daemons (idempotent; a daemon whose config changed, e.g.
#           other CNI dirs, is restarted) and import the test image into each
#   stop    SIGTERM, wait, end their shims, unmount what they left below their own dirs
#   clean   stop, then remove the daemons' state and what test pods left on the host
#           (after an interrupted run; `start` again afterwards)
#   status  version of each daemon
#   env     shell lines: SMARTER_CNI_TEST_CONTAINERD17=<socket>, ..._CONF_DIR, ..._BIN_DIR,
#           ..._CRI_ROOT (and the same for 21), SMARTER_CNI_TEST_CONTAINERD_IMAGE;
#           `env 1.7` prints the one daemon's values under the names tests/containerd.rs reads
#           (SMARTER_CNI_TEST_CONTAINERD=<socket>, SMARTER_CNI_TEST_CONTAINERD_CONF_DIR, ...)
#           (use: set -a; eval "$(scripts/containerd.sh env 2.1)"; set +a)
#
# CNI dirs per daemon come from SMARTER_CNI_TEST_CONTAINERD17_CONF_DIR / _BIN_DIR (and 21);
# defaults: $RUN_DIR/containerd-<ver>/net.d and .../bin (both created empty: the test suite
# writes the conflist and the plugins). SMARTER_CNI_TEST_CONTAINERD_DEBUG=1: debug log level.
set -euo pipefail

CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-test}/containerd
RUN_DIR=/run/smarter-cni-test
LIB_DIR=/var/lib/smarter-cni-test
VERSIONS=(1.7 2.1)
RUNC=/usr/sbin/runc
IMAGE=docker.io/smarter-cni-test/busybox:1
START_TIMEOUT=${SMARTER_CNI_CONTAINERD_TIMEOUT:-60}

die() { echo "containerd.sh: $*" >&2; exit 1; }
log() { echo "containerd.sh: $*" >&2; }

# shellcheck source=lib/debian-mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"

suite() { case $1 in 1.7) echo trixie ;; 2.1) echo sid ;; esac; }
tag() { echo "${1/./}"; } # 1.7 -> 17
dir() { echo "$RUN_DIR/containerd-$1"; }
sock() { echo "$(dir "$1")/containerd.sock"; }
root_fs() { echo "$CACHE/$1/root"; }
bin() { echo "$(root_fs "$1")/usr/bin/$2"; }
conf_dir() { local v; v="SMARTER_CNI_TEST_CONTAINERD$(tag "$1")_CONF_DIR"; echo "${!v:-$(dir "$1")/net.d}"; }
bin_dir() { local v; v="SMARTER_CNI_TEST_CONTAINERD$(tag "$1")_BIN_DIR"; echo "${!v:-$(dir "$1")/bin}"; }
data_root() { echo "$LIB_DIR/containerd-$1"; }
# Where the CRI plugin keeps sandboxes/<id>/hostname (what `smarter-cni hostnames` watches).
cri_root() { echo "$(data_root "$1")/io.containerd.grpc.v1.cri"; }

pid_alive() {
  local f=$1 pid
  [[ -s "$f" ]] || return 1
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

ctr_() { local v=$1; shift; "$(bin "$v" ctr)" --address "$(sock "$v")" "$@"; }

# --- fetch ------------------------------------------------------------------

# Download (once) the suite's containerd .deb into $CACHE/debs and unpack it. The .deb is
# kept, so a lost unpacked tree is rebuilt without the network.
ensure_root() {
  local v=$1 s r
  s=$(suite "$v")
  r=$(root_fs "$v")
  [[ -x "$r/usr/bin/containerd" && -f "$CACHE/$v/complete" ]] && return 0
  mkdir -p "$CACHE/debs"
  local deb
  deb=$(find "$CACHE/debs" -maxdepth 1 -name "containerd_${v}.*.deb" | sort -V | tail -n1)
  if [[ -z "$deb" ]]; then
    log "fetching containerd $v from Debian $s (once; cached in $CACHE)"
    local apt=$CACHE/apt-$s mirror
    mirror=$(debian_mirror)
    rm -rf "$apt"
    private_apt_config "$apt" "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main"
    mkdir -p "$apt/debs"
    APT_CONFIG=$apt/apt.conf apt-get update -qq || die "apt-get update for $s failed (mirror $mirror)"
    (cd "$apt/debs" && APT_CONFIG=$apt/apt.conf apt-get download -qq containerd) ||
      die "apt-get download containerd from $s failed"
    deb=$(find "$apt/debs" -maxdepth 1 -name 'containerd_*.deb' | head -n1)
    [[ -n "$deb" ]] || die "no containerd .deb downloaded from $s"
    # The epoch-free upstream version, e.g. 1.7.24~ds1-6+b3 -> 1.7.24.
    local ver
    ver=$(dpkg-deb -f "$deb" Version)
    [[ "$ver" == "$v".* ]] || die "Debian $s now has containerd $ver, not $v.x: update VERSIONS/suite() in $0"
    mv "$deb" "$CACHE/debs/containerd_${ver%%[~+-]*}.deb"
    deb=$CACHE/debs/containerd_${ver%%[~+-]*}.deb
    rm -rf "$apt"
  fi
  local tmp=$r.tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  dpkg -x "$deb" "$tmp"
  # Debian's containerd brings no runc; bookworm's /usr/sbin/runc is named in the config.
  "$tmp/usr/bin/containerd" --version >/dev/null || die "extracted containerd $v does not run here"
  rm -rf "$r"
  mv "$tmp" "$r"
  touch "$CACHE/$v/complete"
}

# The test image as an OCI image layout tar: one uncompressed layer with Debian's static
# busybox and a /pause that never exits (exits on TERM/INT). It serves as the sandbox image
# and the test containers' image. Built offline, once.
build_image_tar() {
  local tar=$CACHE/image/busybox-1.oci.tar
  [[ -s "$tar" ]] && { echo "$tar"; return 0; }
  /bin/busybox --list >/dev/null 2>&1 || die "/bin/busybox missing: run scripts/deps.sh (busybox-static)"
  local work=$CACHE/image/work a
  rm -rf "$work"
  mkdir -p "$work/rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,run,var/run,root} "$work/oci/blobs/sha256"
  local root=$work/rootfs
  chmod 1777 "$root/tmp"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list); do
    [[ "$a" == busybox ]] || ln -s busybox "$root/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  : >"$root/etc/hosts"; : >"$root/etc/resolv.conf"; : >"$root/etc/hostname"
  # As PID 1, a process without a handler ignores SIGTERM: trap it so stop is immediate.
  printf '#!/bin/sh\ntrap '"'"'exit 0'"'"' TERM INT\nwhile :; do sleep 3600 & wait $!; done\n' >"$root/pause"
  chmod 0755 "$root/pause"
  local layer=$work/layer.tar
  tar -C "$root" --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf "$layer" .
  local layer_sha layer_size cfg cfg_sha man man_sha arch
  layer_sha=$(sha256sum "$layer" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$layer")
  mv "$layer" "$work/oci/blobs/sha256/$layer_sha"
  arch=$(dpkg --print-architecture)
  cfg=$work/config.json
  printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$arch" "$layer_sha" >"$cfg"
  cfg_sha=$(sha256sum "$cfg" | cut -d' ' -f1)
  man=$work/manifest.json
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
    "$cfg_sha" "$(stat -c %s "$cfg")" "$layer_sha" "$layer_size" >"$man"
  man_sha=$(sha256sum "$man" | cut -d' ' -f1)
  mv "$cfg" "$work/oci/blobs/sha256/$cfg_sha"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$man_sha" "$(stat -c %s "$man")" "$IMAGE" "${IMAGE##*:}" >"$work/oci/index.json"
  mv "$man" "$work/oci/blobs/sha256/$man_sha"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
  tar -C "$work/oci" --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$work"
  echo "$tar"
}

cmd_fetch() {
  local v
  mkdir -p "$CACHE/image"
  for v in "${VERSIONS[@]}"; do mkdir -p "$CACHE/$v"; ensure_root "$v"; done
  build_image_tar >/dev/null
}

# --- config -------------------------------------------------------------------

# Config for one daemon. Everything it would put in a shared place is moved below its own
# dirs: root, state, sockets, /opt/containerd, netns mounts (netns_mounts_under_state_dir).
# restrict_oom_score_adj: this machine lacks CAP_SYS_RESOURCE, and runc fails on the
# sandboxes' -998 without it. max_conf_num 1: one pod network, as k3s's.
write_config() {
  local v=$1 d f
  d=$(dir "$v")
  f=$d/config.toml.new
  local level=info
  [[ "${SMARTER_CNI_TEST_CONTAINERD_DEBUG:-0}" == 1 ]] && level=debug
  case $v in
    1.7) cat >"$f" <<EOF
version = 2
root = "$(data_root "$v")"
state = "$d/state"
[grpc]
  address = "$(sock "$v")"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
  level = "$level"
[plugins."io.containerd.internal.v1.opt"]
  path = "$(data_root "$v")/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$IMAGE"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$(bin_dir "$v")"
    conf_dir = "$(conf_dir "$v")"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$RUNC"
EOF
    ;;
    2.1) cat >"$f" <<EOF
version = 3
root = "$(data_root "$v")"
state = "$d/state"
# NRI would open /var/run/nri/nri.sock, shared with any other containerd.
disabled_plugins = ["io.containerd.nri.v1.nri"]
[grpc]
  address = "$(sock "$v")"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = "$d/debug.sock"
  level = "$level"
[plugins.'io.containerd.internal.v1.opt']
  path = '$(data_root "$v")/opt'
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '$IMAGE'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$(bin_dir "$v")']
    conf_dir = '$(conf_dir "$v")'
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$RUNC'
EOF
    ;;
  esac
  echo "$f"
}

# --- start/stop -----------------------------------------------------------------

# Up when the socket answers `ctr version` (server part included).
answers() { [[ -S "$(sock "$1")" ]] && timeout 5 "$(bin "$1" ctr)" --address "$(sock "$1")" version >/dev/null 2>&1; }

start_daemon() {
  local v=$1 d new i
  d=$(dir "$v")
  mkdir -p "$d/state" "$(data_root "$v")" "$(conf_dir "$v")" "$(bin_dir "$v")"
  new=$(write_config "$v")
  if pid_alive "$d/containerd.pid"; then
    if cmp -s "$new" "$d/config.toml" && answers "$v"; then rm -f "$new"; return 0; fi
    log "$v: config changed or daemon not answering; restarting"
    stop_daemon "$v"
  fi
  mv "$new" "$d/config.toml"
  rm -f "$(sock "$v")"
  log "$v: starting containerd (log: $d/containerd.log)"
  # PATH: the extracted shims first (containerd starts containerd-shim-runc-v2 by name).
  # setsid: the daemon outlives this script; 9>&-: it must not hold the start/stop lock.
  PATH="$(root_fs "$v")/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    setsid "$(bin "$v" containerd)" --config "$d/config.toml" \
    >>"$d/containerd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$d/containerd.pid"
  for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    answers "$v" && return 0
    pid_alive "$d/containerd.pid" || break
    sleep 0.1
  done
  tail -n 30 "$d/containerd.log" >&2 || true
  die "$v: containerd did not answer on $(sock "$v") (log: $d/containerd.log)"
}

ensure_image() {
  local v=$1 tar
  if ctr_ "$v" -n k8s.io images ls -q 2>/dev/null | grep -xF "$IMAGE" >/dev/null; then return 0; fi
  tar=$(build_image_tar)
  log "$v: importing $IMAGE"
  ctr_ "$v" -n k8s.io images import "$tar" >/dev/null || die "$v: ctr images import $tar failed"
  ctr_ "$v" -n k8s.io images ls -q | grep -xF "$IMAGE" >/dev/null || die "$v: $IMAGE not listed after import"
}

stop_pidfile() {
  local f=$1 t=$2 pid i
  pid_alive "$f" || { rm -f "$f"; return 0; }
  pid=$(<"$f")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < t * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$f"; return 0; }
    sleep 0.1
  done
  log "pid $pid ($f) ignored SIGTERM for ${t}s; killing"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

stop_daemon() {
  local v=$1 d pid m s
  d=$(dir "$v")
  stop_pidfile "$d/containerd.pid" 20
  # Shims outlive containerd by design; end only this daemon's (their command line names
  # its socket), and remove the sockets they listened on (/run/containerd/s/<hash>).
  for pid in $(pgrep -f -- "-address $(sock "$v")" || true); do
    for s in $(ss -xlpn 2>/dev/null | awk -v p="pid=$pid," 'index($0, p) { for (i = 1; i <= NF; i++) if (index($i, "/run/containerd/s/") == 1) print $i }'); do
      rm -f "$s"
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # runc's leftovers (the shims are gone, so nobody else will kill these).
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v a="$d/" -v b="$(data_root "$v")/" 'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -f "$(sock "$v")"
}

cmd_start() {
  local v
  cmd_fetch
  for v in "${VERSIONS[@]}"; do start_daemon "$v"; done
  for v in "${VERSIONS[@]}"; do ensure_image "$v"; done
}

cmd_stop() {
  local v
  for v in "${VERSIONS[@]}"; do stop_daemon "$v"; done
}

# After an interrupted test run: stop, then drop all daemon state (sandboxes, netns,
# snapshots; `start` re-imports the image in a second) and what the test pods' network left
# on the host: their processes, libcni's cache entries, pod cgroups, test bridges.
cmd_clean() {
  local v d c
  cmd_stop
  # Containers outlive their killed shims; the pod cgroups name them all.
  local roots=() pids i
  for c in /sys/fs/cgroup/pids/smarter-cni-test /sys/fs/cgroup/smarter-cni-test; do [[ -d "$c" ]] && roots+=("$c"); done
  for ((i = 0; i < 50 && ${#roots[@]} > 0; i++)); do
    pids=$(find "${roots[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
    [[ -z "$pids" ]] && break
    # shellcheck disable=SC2086 # one pid per word
    kill -KILL $pids 2>/dev/null || true
    sleep 0.1
  done
  for v in "${VERSIONS[@]}"; do
    rm -rf "$(data_root "$v")" "$(dir "$v")/state" "$RUN_DIR/cri-$(tag "$v")"
  done
  # libcni's cache entries of our pods (any network, e.g. cni-loopback): by their netns path.
  if [[ -d /var/lib/cni/results ]]; then
    for v in "${VERSIONS[@]}"; do
      grep -lF "\"netns\":\"$(dir "$v")/" /var/lib/cni/results/* 2>/dev/null | xargs -r rm -f || true
    done
  fi
  # Pod cgroups (tests use /smarter-cni-test/cri-<tag>/pod<uid>), deepest first.
  for c in /sys/fs/cgroup/*/smarter-cni-test /sys/fs/cgroup/smarter-cni-test; do
    [[ -d "$c" ]] || continue
    find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  for d in $(ip -o link show type bridge 2>/dev/null | awk -F': ' '$2 ~ /^sct-cri/ { print $2 }'); do
    ip link del "$d" 2>/dev/null || true
  done
}

cmd_status() {
  local v rc=0 out
  for v in "${VERSIONS[@]}"; do
    if answers "$v" && out=$(ctr_ "$v" version 2>/dev/null | awk '/^Server:/ { s = 1 } s && /Version:/ { print $2; exit }'); then
      echo "$v: running, containerd $out, $(sock "$v"), conf $(conf_dir "$v"), bin $(bin_dir "$v")"
    else
      echo "$v: not running"
      rc=3
    fi
  done
  return "$rc"
}

cmd_env() {
  local v t
  if [[ -n "${1:-}" ]]; then
    v=$1
    [[ " ${VERSIONS[*]} " == *" $v "* ]] || die "unknown version '$v' (one of: ${VERSIONS[*]})"
    echo "SMARTER_CNI_TEST_CONTAINERD=$(sock "$v")"
    echo "SMARTER_CNI_TEST_CONTAINERD_CONF_DIR=$(conf_dir "$v")"
    echo "SMARTER_CNI_TEST_CONTAINERD_BIN_DIR=$(bin_dir "$v")"
    echo "SMARTER_CNI_TEST_CONTAINERD_CRI_ROOT=$(cri_root "$v")"
    echo "SMARTER_CNI_TEST_CONTAINERD_IMAGE=$IMAGE"
    return 0
  fi
  for v in "${VERSIONS[@]}"; do
    t=$(tag "$v")
    echo "SMARTER_CNI_TEST_CONTAINERD$t=$(sock "$v")"
    echo "SMARTER_CNI_TEST_CONTAINERD${t}_CONF_DIR=$(conf_dir "$v")"
    echo "SMARTER_CNI_TEST_CONTAINERD${t}_BIN_DIR=$(bin_dir "$v")"
    echo "SMARTER_CNI_TEST_CONTAINERD${t}_CRI_ROOT=$(cri_root "$v")"
  done
  echo "SMARTER_CNI_TEST_CONTAINERD_IMAGE=$IMAGE"
}

[[ $EUID -eq 0 ]] || [[ "${1:-}" == env ]] || die "must run as root"
[[ -x "$RUNC" || "${1:-}" != start ]] || die "$RUNC missing: run scripts/deps.sh (runc)"

case "${1:-}" in
  fetch | start | stop | clean)
    mkdir -p "$RUN_DIR" "$CACHE"
    # Serialise concurrent calls (parallel test jobs); the daemons close fd 9 (9>&- above).
    exec 9>"$RUN_DIR/containerd.lock"
    flock -w 300 9 || die "timed out waiting for $RUN_DIR/containerd.lock"
    "cmd_$1"
    ;;
  status) cmd_status ;;
  env) cmd_env "${2:-}" ;;
  *) die "usage: $0 fetch|start|stop|clean|status|env [1.7|2.1]" ;;
esac
