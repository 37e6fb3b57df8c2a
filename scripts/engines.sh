#!/usr/bin/env bash
# Two private Docker engines side by side, independent of any system docker:
#   d20 = Debian bookworm's dockerd 20.10.24 (as on Debian 12 / RPi OS bookworm)
#   d26 = Debian trixie's dockerd 26.1.x     (as on Debian 13 / RPi OS trixie)
# Usage: scripts/engines.sh start|stop|status|env
#   start   idempotent; waits for /_ping; makes sure the test image exists
#   stop    SIGTERM, wait, then clean up (data roots and images are kept)
#   status  version/API of each engine
#   env     shell lines: D20_HOST=unix:///... D26_HOST=... DOCKER=... TEST_IMAGE=...
#           (use: set -a; eval "$(scripts/engines.sh env)"; set +a)
#
# The docker CLI used everywhere is Debian's /usr/bin/docker (20.10.24, API
# 1.41): the 26.1 engine still serves API 1.41 (its minimum is 1.24), so this
# one client talks to both engines, and it is the one deps.sh installs. A
# /usr/local/bin/docker 28 that some machine images carry also negotiated down
# to 1.41 against d20 here, but it is not installed by our scripts, and a
# client at the oldest API keeps tests from relying on what 20.10 lacks.
#
# Caveat: both engines share the host's iptables. A dockerd that starts
# flushes and re-creates the DOCKER / DOCKER-ISOLATION chains, so restarting
# one engine drops the other's port-publishing/isolation rules for networks
# it already has (embedded DNS is unaffected: its DNAT is inside containers).
set -euo pipefail

CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-test}
RUN_DIR=/run/smarter-cni-test
LIB_DIR=/var/lib/smarter-cni-test
DOCKER=/usr/bin/docker
IMAGE=smarter-cni-test/tools:1
ENGINES=(d20 d26)
D26_ROOT=$CACHE/d26/root        # dpkg -x of trixie's docker.io + containerd
START_TIMEOUT=${SMARTER_CNI_ENGINE_TIMEOUT:-60}

die() { echo "engines.sh: $*" >&2; exit 1; }
log() { echo "engines.sh: $*" >&2; }

sock() { echo "$RUN_DIR/$1/docker.sock"; }
host() { echo "unix://$(sock "$1")"; }

# /_ping answers "OK" once the API is up.
ping_ok() {
  [[ -S "$(sock "$1")" ]] || return 1
  [[ "$(curl -fsS --max-time 2 --unix-socket "$(sock "$1")" http://localhost/_ping 2>/dev/null)" == OK ]]
}

pid_alive() {
  local f=$1 pid
  [[ -s "$f" ]] || return 1
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# --- d26 binaries -----------------------------------------------------------

# shellcheck source=lib/debian-mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-mirror.sh"

ensure_d26_root() {
  [[ -x "$D26_ROOT/usr/sbin/dockerd" && -f "$CACHE/d26/complete" ]] && return 0
  log "fetching Docker 26 from Debian trixie (once; cached in $CACHE/d26)"
  local apt=$CACHE/d26/apt mirror
  mirror=$(debian_mirror)
  # Private apt: own sources, state, cache and (empty) dpkg status, so the
  # system's apt lists/state are never touched.
  rm -rf "$apt"
  private_apt_config "$apt" "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main"
  mkdir -p "$apt/debs"
  APT_CONFIG=$apt/apt.conf apt-get update -qq
  # docker.io = dockerd + docker-proxy (+ docker-init link); containerd =
  # containerd + shims. runc and tini come from bookworm (see below).
  (cd "$apt/debs" && APT_CONFIG=$apt/apt.conf apt-get download -qq docker.io containerd)
  local tmp=$CACHE/d26/root.tmp deb
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for deb in "$apt"/debs/*.deb; do dpkg -x "$deb" "$tmp"; done
  # trixie's runc needs glibc 2.38; bookworm's /usr/sbin/runc is found later in PATH.
  find "$tmp" -name runc -delete
  # docker-init -> tini-static (relative); point it at bookworm's tini-static.
  if [[ -L "$tmp/usr/bin/docker-init" ]]; then ln -sfn /usr/bin/tini-static "$tmp/usr/bin/docker-init"; fi
  "$tmp/usr/sbin/dockerd" --version >/dev/null || die "extracted trixie dockerd does not run"
  rm -rf "$D26_ROOT"
  mv "$tmp" "$D26_ROOT"
  rm -rf "$apt/debs" "$apt/cache"
  touch "$CACHE/d26/complete"
}

# PATH for an engine's processes (dockerd, containerd, shims, runc, iptables).
engine_path() {
  local sys=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  case $1 in
    d20) echo "$sys" ;;
    d26) echo "$D26_ROOT/usr/bin:$D26_ROOT/usr/sbin:$sys" ;;
  esac
}

# --- start/stop -----------------------------------------------------------

wait_ping() {
  local n=$1 pidf=$2 i
  for ((i = 0; i < START_TIMEOUT * 5; i++)); do
    ping_ok "$n" && return 0
    if ! pid_alive "$pidf"; then
      # dockerd writes its pidfile only after a while; give it a moment.
      ((i > 25)) && break
    fi
    sleep 0.2
  done
  echo "engines.sh: $n did not answer /_ping on $(sock "$n") within ${START_TIMEOUT}s; last log lines:" >&2
  tail -n 30 "$RUN_DIR/$n/dockerd.log" >&2 || true
  tail -n 10 "$RUN_DIR/$n/containerd.log" >&2 || true
  exit 1
}

# Each engine gets its own containerd (own socket/root/state). Left to itself,
# dockerd would attach to a system containerd at /run/containerd if one ran,
# and both engines would then share it.
start_containerd() {
  local n=$1 d=$RUN_DIR/$1 i
  local csock=$d/containerd/containerd.sock
  if pid_alive "$d/containerd.pid" && [[ -S "$csock" ]]; then return 0; fi
  mkdir -p "$d/containerd" "$LIB_DIR/$n/containerd"
  cat >"$d/containerd.toml" <<EOF
version = 2
root = "$LIB_DIR/$n/containerd"
state = "$d/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$csock"
[debug]
  address = "$d/containerd/debug.sock"
EOF
  PATH=$(engine_path "$n") setsid containerd --config "$d/containerd.toml" \
    >>"$d/containerd.log" 2>&1 </dev/null 9>&- &
  echo $! >"$d/containerd.pid"
  for ((i = 0; i < 100; i++)); do
    [[ -S "$csock" ]] && return 0
    pid_alive "$d/containerd.pid" || break
    sleep 0.1
  done
  tail -n 20 "$d/containerd.log" >&2 || true
  die "$n: containerd did not come up"
}

start_engine() {
  local n=$1 d=$RUN_DIR/$1
  if ping_ok "$n"; then return 0; fi
  if pid_alive "$d/dockerd.pid"; then
    log "$n: dockerd running but not answering yet; waiting"
    wait_ping "$n" "$d/dockerd.pid"
    return 0
  fi
  mkdir -p "$d/exec" "$LIB_DIR/$n"
  rm -f "$d/dockerd.pid" "$(sock "$n")"
  # Own config file: a system /etc/docker/daemon.json must not change these
  # engines. "dns": the embedded resolver (127.0.0.11) forwards names it does
  # not know to the host's /etc/resolv.conf nameservers by default, which are
  # off this machine; 127.0.0.1 keeps every container DNS query local (no
  # server there: unknown names fail at once). Override with
  # SMARTER_CNI_ENGINE_DNS; SMARTER_CNI_ENGINE_DEBUG=1 logs each forwarded query.
  local debug=false
  [[ "${SMARTER_CNI_ENGINE_DEBUG:-0}" == 1 ]] && debug=true
  printf '{\n  "dns": ["%s"],\n  "debug": %s\n}\n' "${SMARTER_CNI_ENGINE_DNS:-127.0.0.1}" "$debug" >"$d/daemon.json"
  start_containerd "$n"
  log "$n: starting dockerd (log: $d/dockerd.log)"
  # --bridge=none: no docker0 (both engines would want it; we never use it).
  # iptables stays on: user networks need it, and so does the embedded DNS
  # (127.0.0.11 DNAT inside containers).
  # Own address pool per engine: no overlap when both have networks, and an
  # address tells which engine it came from.
  # SMARTER_CNI_DOCKERD_ARGS: extra dockerd flags (word-split).
  # setsid: the daemon must outlive this script and the caller's process group.
  local pool=172.20.0.0/16
  [[ "$n" == d26 ]] && pool=172.26.0.0/16
  # shellcheck disable=SC2086
  PATH=$(engine_path "$n") setsid dockerd \
    --config-file "$d/daemon.json" \
    --host "$(host "$n")" \
    --containerd "$d/containerd/containerd.sock" \
    --data-root "$LIB_DIR/$n" \
    --exec-root "$d/exec" \
    --pidfile "$d/dockerd.pid" \
    --bridge=none \
    --default-address-pool "base=$pool,size=24" \
    ${SMARTER_CNI_DOCKERD_ARGS:-} \
    >>"$d/dockerd.log" 2>&1 </dev/null 9>&- &
  wait_ping "$n" "$d/dockerd.pid"
}

# Stop one pid from a pidfile: SIGTERM, wait up to $2 s, then SIGKILL.
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

stop_engine() {
  local n=$1 d=$RUN_DIR/$1 pid
  # dockerd stops its containers on SIGTERM (default shutdown timeout 15 s).
  stop_pidfile "$d/dockerd.pid" 40
  stop_pidfile "$d/containerd.pid" 15
  # Shims outlive containerd by design; end only the ones of this engine's
  # containerd (their command line names its private socket).
  for pid in $(pgrep -f -- "-address $d/containerd/containerd.sock" || true); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Leftover mounts (netns bind mounts, overlay rootfs, shm) below our dirs.
  local m
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v a="$d/" -v b="$LIB_DIR/$n/" 'index($2, a) == 1 || index($2, b) == 1 { print $2 }' /proc/self/mounts | sort -r)
  rm -f "$(sock "$n")"
}

# --- test image -------------------------------------------------------------

# Copy a host binary plus exactly the shared objects ldd reports (and the
# loader) into the rootfs at the same paths.
copy_with_libs() {
  local root=$1 bin=$2 lib
  install -D -m 0755 "$bin" "$root$bin"
  for lib in $(ldd "$bin" | awk '/=>/ { print $3 } /^[[:space:]]*\// { print $1 }'); do
    [[ -e "$root$lib" ]] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

build_image_tar() {
  local tar=$CACHE/image/tools-1.tar
  [[ -s "$tar" ]] && { echo "$tar"; return 0; }
  local root=$CACHE/image/rootfs a
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,run,var/run,root}
  chmod 1777 "$root/tmp"
  install -m 0755 /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list); do
    [[ "$a" == busybox ]] || ln -s busybox "$root/bin/$a"
  done
  # glibc's getent: the real libc resolver (search, ndots), as in pods.
  copy_with_libs "$root" /usr/bin/getent
  copy_with_libs "$root" /usr/sbin/dnsmasq
  printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$root/etc/nsswitch.conf"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  : >"$root/etc/hosts"; : >"$root/etc/resolv.conf"; : >"$root/etc/hostname"
  # sleep as PID 1 ignores SIGTERM (no handler, PID 1 gets no default
  # action): /pause exits on TERM/INT so docker stop is immediate.
  printf '#!/bin/sh\ntrap '"'"'exit 0'"'"' TERM INT\nwhile :; do sleep 3600 & wait $!; done\n' >"$root/pause"
  chmod 0755 "$root/pause"
  tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$root"
  echo "$tar"
}

ensure_image() {
  local n=$1 tar
  if "$DOCKER" -H "$(host "$n")" image inspect "$IMAGE" >/dev/null 2>&1; then return 0; fi
  mkdir -p "$CACHE/image"
  tar=$(build_image_tar)
  log "$n: importing $IMAGE"
  "$DOCKER" -H "$(host "$n")" import \
    --change 'CMD ["/pause"]' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tar" "$IMAGE" >/dev/null
}

# --- commands -----------------------------------------------------------------

cmd_start() {
  local n
  for n in "${ENGINES[@]}"; do
    [[ "$n" == d26 ]] && ensure_d26_root
    # One at a time: both daemons rewrite the shared iptables DOCKER chains
    # when they start.
    start_engine "$n"
  done
  for n in "${ENGINES[@]}"; do ensure_image "$n"; done
}

cmd_stop() {
  local n
  for n in "${ENGINES[@]}"; do stop_engine "$n"; done
}

cmd_status() {
  local n rc=0 v
  for n in "${ENGINES[@]}"; do
    if ping_ok "$n" && v=$("$DOCKER" -H "$(host "$n")" version --format '{{.Server.Version}} API {{.Server.APIVersion}} (min {{.Server.MinAPIVersion}})' 2>/dev/null); then
      echo "$n: running, dockerd $v, $(host "$n")"
    else
      echo "$n: not running"
      rc=3
    fi
  done
  return "$rc"
}

cmd_env() {
  echo "D20_HOST=$(host d20)"
  echo "D26_HOST=$(host d26)"
  echo "DOCKER=$DOCKER"
  echo "TEST_IMAGE=$IMAGE"
}

[[ $EUID -eq 0 ]] || [[ "${1:-}" == env ]] || die "must run as root"

case "${1:-}" in
  start | stop)
    mkdir -p "$RUN_DIR"
    # Serialise concurrent start/stop calls (parallel test jobs). The daemons
    # must not inherit fd 9 (9>&- above), or they would hold the lock forever.
    exec 9>"$RUN_DIR/engines.start-stop.lock"
    flock -w 300 9 || die "timed out waiting for $RUN_DIR/engines.start-stop.lock"
    "cmd_$1"
    ;;
  status | env) "cmd_$1" ;;
  *) die "usage: $0 start|stop|status|env" ;;
esac
