# shellcheck shell=bash disable=SC2034,SC2153,SC2317 # variables for, functions called by the sourcing test
# The node of installer-daemonset.sh: a gateway's host folders as per-test folders
# (never the machine's own /opt/cni/bin or /etc/cni/net.d), the installer container run over
# them exactly as the DaemonSet's pod spec runs it, its readiness probe, and the host's view
# of what it installed (for pods started the way cri-dockerd starts them, with
# upgrade-under-load.sh).
#
# The sourcing test sets WORK, LABEL, ENGINE_HOST (unix:// address of the engine) and
# sources upgrade-under-load.sh first.

# The DaemonSet's hostPath volumes: the host path is the path in the container.
NODE_PATHS=(/opt/cni/bin /etc/cni/net.d /etc/smarter-cni /var/lib/smarter-cni /run/smarter-cni)
PROBE=(/smarter-cni status --require config,loopback,network,activation,release) # the readiness probe (exec)

# A node: empty folders under $1 for the host paths. Sets NODE and the variables of
# upgrade-under-load.sh that point at it (CNI_DIR, BIN, STATE_ROOT, STATE_DIR).
node_folders() { # dir
  local p
  NODE=$1
  rm -rf "$NODE"
  for p in "${NODE_PATHS[@]}"; do mkdir -p "$NODE$p"; done
  chmod -R 0755 "$NODE" # dnsmasq (user dnsmasq) reads the records folder
  CNI_DIR=$NODE/opt/cni/bin BIN=$NODE/opt/cni/bin/smarter-cni
  STATE_ROOT=$NODE/run/smarter-cni STATE_DIR=$NODE/var/lib/smarter-cni
}

# A node as a gateway image bakes it: the binary, its loopback link and configuration files
# from a release tarball (scripts/build-dist.sh's layout), then `setup` as
# smarter-cni-setup.service runs it at boot.
bake_release() { # dist-tarball
  tar -xzf "$1" -C "$NODE" opt/cni/bin etc/cni/net.d etc/smarter-cni
}

# The host's view of the node's installed conflist and dnsmasq.conf: the same files with
# the engine's socket and the records, domains and pid paths under $NODE (in the container
# they are the hostPath mounts at the paths the files name). Sets NET, SUBNET, GATEWAY, T,
# CONF, LO_CONF and SMARTER_CNI_CONFIG / SMARTER_CNI_DNSMASQ_CONFIG for healthy().
host_view() {
  local plugin
  T=$NODE.host
  mkdir -p "$T/net.d"
  plugin=$(jq -c '.plugins[0]' "$NODE/etc/cni/net.d/10-smarter-cni.conflist") || return 1
  NET=$(jq -r '.network' <<<"$plugin")
  SUBNET=$(jq -r '.subnet' <<<"$plugin")
  GATEWAY=$(jq -r '.gateway' <<<"$plugin")
  jq --arg host "$ENGINE_HOST" --arg state "$STATE_ROOT/$NET" \
    '.plugins[0] += {dockerHost: $host, dns: ((.plugins[0].dns // {}) +
      {recordsDir: "\($state)/hosts", domainsFile: "\($state)/domains", pidFile: "\($state)/dnsmasq.pid"})}' \
    "$NODE/etc/cni/net.d/10-smarter-cni.conflist" >"$T/net.d/10-smarter-cni.conflist" || return 1
  sed "s|/run/smarter-cni/|$STATE_ROOT/|g" "$NODE/etc/smarter-cni/dnsmasq.conf" >"$T/dnsmasq.conf"
  export SMARTER_CNI_CONFIG=$T/net.d/10-smarter-cni.conflist SMARTER_CNI_DNSMASQ_CONFIG=$T/dnsmasq.conf
  CONF=$(jq -c '.plugins[0] + {cniVersion, name}' "$SMARTER_CNI_CONFIG")
  LO_CONF='{"cniVersion":"0.2.0","name":"cni-loopback","type":"loopback"}' # cri-dockerd's built-in list
}
host_setup() { # binary: `setup` on the host's view (smarter-cni-setup.service at boot)
  "$1" setup --config "$SMARTER_CNI_CONFIG" --dnsmasq-config "$SMARTER_CNI_DNSMASQ_CONFIG" \
    --bin-dir "$CNI_DIR" >"$WORK/host-setup.log" 2>&1 || { sed 's/^/     /' "$WORK/host-setup.log"; false; }
}

# ------------------------------------------------------------------ the installer container
# The pod spec as `docker run`: hostNetwork, runAsUser 0, capabilities drop ALL,
# allowPrivilegeEscalation false, readOnlyRootFilesystem, the hostPath volumes and, for
# Docker mode, the engine's socket. Extra docker options (-e ...) go before the image.
installer_run() { # name image [docker-run options...]
  local name=$1 image=$2 p mounts=()
  shift 2
  for p in "${NODE_PATHS[@]}"; do mounts+=(-v "$NODE$p:$p"); done
  mounts+=(-v "${ENGINE_HOST#unix://}:/var/run/docker.sock")
  docker run -d --name "$name" --label "$LABEL" --network host --user 0:0 --cap-drop ALL \
    --security-opt no-new-privileges --read-only "${mounts[@]}" "$@" "$image" >/dev/null
}
probe() { docker exec "$1" "${PROBE[@]}" >"$WORK/probe.out" 2>&1; }
running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
exit_code() { docker inspect -f '{{.State.ExitCode}}' "$1" 2>/dev/null; }
record() { cat "$STATE_DIR/activation" 2>/dev/null; }
record_says() { # key=value...: the activation record has each line
  local kv
  for kv in "$@"; do
    grep -qxF "$kv" "$STATE_DIR/activation" 2>/dev/null || { echo "     activation record lacks $kv:"; record | sed 's/^/     | /'; return 1; }
  done
}

# Starts the installer and probes it the way the kubelet would if it probed without pause:
# READY_MS = container start -> first successful probe; READY_RECORD = the activation
# record read right after that probe (the probe must not pass before the activation is
# done). Returns 1 when the container exited first (EXITED=1), 2 on timeout.
installer_until_ready() { # name image [docker-run options...]
  local name=$1 t0 end
  READY_MS= READY_RECORD= EXITED=0
  t0=$(date +%s%N)
  installer_run "$@" || return 2
  end=$((SECONDS + ${READY_TIMEOUT:-120}))
  while [ $SECONDS -lt $end ]; do
    if probe "$name"; then
      READY_RECORD=$(record)
      READY_MS=$((($(date +%s%N) - t0) / 1000000))
      echo "ready after $READY_MS ms"
      return 0
    fi
    running "$name" || { EXITED=1; return 1; }
    sleep 0.1
  done
  return 2
}
# The installer's log (stdout + stderr) to $WORK/<name>.out.
installer_log() {
  docker logs "$1" >"$WORK/$1.out" 2>&1
  if [ -s "$WORK/$1.out" ]; then cat "$WORK/$1.out"; else echo "(the installer printed nothing)"; fi
}
ready_only_when_active() { # version
  [ -n "$READY_MS" ] || { echo "     (never ready)"; return 1; }
  grep -qx 'state=active' <<<"$READY_RECORD" && grep -qx "version=$1" <<<"$READY_RECORD" ||
    { echo "     at the first successful probe the activation record said:"; sed 's/^/     | /' <<<"$READY_RECORD"; false; }
}
# docker stop (SIGTERM, then SIGKILL after 10 s): exit 0 within 2 s. Sets STOP_MS.
stops_promptly() { # container
  local t0
  t0=$(date +%s%N)
  docker stop -t 10 "$1" >/dev/null || return 1
  STOP_MS=$((($(date +%s%N) - t0) / 1000000))
  [ "$(exit_code "$1")" = 0 ] && [ "$STOP_MS" -lt 2000 ] ||
    { echo "     exit code $(exit_code "$1") after $STOP_MS ms"; false; }
}

# ------------------------------------------------------------------ what happens in the plugin folder
# inotify on the node's plugin folder while the installer runs: how the binary changed.
# (strace -f on the engine's containerd showed the container's syscalls too, but left a
# shim of the load workers' pods in tracing stop now and then: a hung test.)
WATCH_PID=
watch_bin_dir_start() { # log
  WATCH_LOG=$1
  inotifywait -m -e modify,close_write,moved_to,create,delete --format '%e %f' "$CNI_DIR" >"$WATCH_LOG" 2>"$WATCH_LOG.err" &
  WATCH_PID=$!
  local end=$((SECONDS + 10))
  until grep -q 'Watches established' "$WATCH_LOG.err" 2>/dev/null; do
    [ $SECONDS -lt $end ] && kill -0 "$WATCH_PID" 2>/dev/null || { cat "$WATCH_LOG.err"; return 1; }
    sleep 0.1
  done
}
watch_bin_dir_stop() {
  [ -z "$WATCH_PID" ] || { kill "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null; WATCH_PID=; }
}
# The binary landed by a rename onto its name (MOVED_TO), and nothing wrote into that name.
landed_by_rename_in_folder() { # inotify-log
  grep -qx 'MOVED_TO smarter-cni' "$1" && ! grep -qE '^(MODIFY|CLOSE_WRITE[^ ]*|CREATE) smarter-cni$' "$1" ||
    { sed 's/^/     | /' "$1"; false; }
}
