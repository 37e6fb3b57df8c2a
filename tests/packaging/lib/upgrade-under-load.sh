# shellcheck shell=bash disable=SC2034,SC2153,SC2317 # variables for, functions called by the sourcing test
# Shared by the package upgrade tests (deb-upgrade.sh, feed-upgrade.sh): results, the
# test node (a Docker network on the private 26.1 engine, node DNS), pods started the way
# cri-dockerd starts them, and load workers that call the installed plugin while a
# package manager replaces it.
#
# The sourcing test sets, before calling node_setup:
#   WORK (scratch dir), NET, SUBNET, GATEWAY, LABEL (docker label of its containers),
#   CNI_DIR (where the runtime finds smarter-cni and loopback), BIN=$CNI_DIR/smarter-cni
# and optionally ENGINE_HOST (default the 26.1 engine), STATE_ROOT (the folder of the
# network's DNS records, default /run/smarter-cni), STATE_DIR (status --state-dir).

started=$SECONDS
passed=0
failed=0
pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() {
  printf 'FAIL %s\n' "$1"
  shift
  [ $# -eq 0 ] || printf '     %s\n' "$@"
  failed=$((failed + 1))
}
check() { # description, command...
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
log() { printf '\n== %s (%ss)\n' "$*" "$((SECONDS - started))"; }
finish() {
  echo "$(basename "$0" .sh): $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

docker() { "$DOCKER" -H "${ENGINE_HOST:-$D26_HOST}" "$@"; }
logged() { # log-name command...  (no terminal: a conffile prompt would fail dpkg)
  local name=$1
  shift
  "$@" </dev/null >"$WORK/$name.log" 2>&1
}
version_is() { [ "$("$BIN" --version 2>&1)" = "smarter-cni $1" ]; }

# The static binaries of this tree (scripts/build-dist.sh, incremental in $TARGET_DIR) into
# $WORK/dist; sets NEW_VERSION (Cargo.toml's). Ends the test when the build fails.
build_release() {
  log "static binaries (scripts/build-dist.sh, incremental in $TARGET_DIR)"
  if ! SMARTER_CNI_TARGET_DIR=$TARGET_DIR SMARTER_CNI_DIST=$WORK/dist \
    "$REPO/scripts/build-dist.sh" >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log"
    fail "static binaries built"
    finish
  fi
  NEW_VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' "$REPO/Cargo.toml" | head -n1)
}

# The newest earlier commit that has the route's builder (PREV_BUILDER, default
# packaging/deb's; PREV_REF, or SMARTER_CNI_DEB_PREV_REF for the .deb, overrides), else
# HEAD, built as <version>-prev (x86_64 musl) in $PREV_DIR. Sets PREV_VERSION, PREV_COMMIT,
# PREV_BIN.
build_previous_release() {
  local builder=${PREV_BUILDER:-packaging/deb/build-deb.sh} prev_ref=${PREV_REF:-}
  [ -n "$prev_ref" ] || [ -n "${PREV_BUILDER:-}" ] || prev_ref=${SMARTER_CNI_DEB_PREV_REF:-}
  [ -n "$prev_ref" ] || prev_ref=$(git -C "$REPO" rev-list -1 HEAD~1 -- "$builder" 2>/dev/null)
  if [ -z "$prev_ref" ]; then
    prev_ref=HEAD
    echo "no earlier commit has $builder: the previous release is HEAD rebuilt as $NEW_VERSION-prev"
  fi
  PREV_COMMIT=$(git -C "$REPO" rev-parse "$prev_ref^{commit}")
  PREV_VERSION=${NEW_VERSION%%-*}-prev
  PREV_BIN=$PREV_DIR/target/x86_64-unknown-linux-musl/release/smarter-cni
  if [ "$(cat "$PREV_DIR/src.commit" 2>/dev/null)" != "$PREV_COMMIT" ]; then
    rm -rf "$PREV_DIR/src" && mkdir -p "$PREV_DIR/src" &&
      git -C "$REPO" archive "$PREV_COMMIT" | tar -x -C "$PREV_DIR/src" &&
      sed -i "/^\[package\]/,/^\[/s/^version = \".*\"/version = \"$PREV_VERSION\"/" "$PREV_DIR/src/Cargo.toml" &&
      awk -v v="$PREV_VERSION" 'p && /^version = / { $0 = "version = \"" v "\""; p = 0 }
        /^name = "smarter-cni"$/ { p = 1 } { print }' "$PREV_DIR/src/Cargo.lock" >"$PREV_DIR/Cargo.lock" &&
      mv "$PREV_DIR/Cargo.lock" "$PREV_DIR/src/Cargo.lock" &&
      echo "$PREV_COMMIT" >"$PREV_DIR/src.commit" || return 1
  fi
  SMARTER_CNI_TARGETS=x86_64-unknown-linux-musl SMARTER_CNI_TARGET_DIR=$PREV_DIR/target \
    SMARTER_CNI_DIST=$WORK/prev-dist "$PREV_DIR/src/scripts/build-dist.sh"
}

# ------------------------------------------------------------------ the test node
# The test's CNI and node DNS configuration (in $T), handed to the package scripts
# through their environment hook; the conflist as CONF, the loopback config as LO_CONF.
node_setup() {
  T=$WORK/node
  mkdir -p "$T/net.d"
  jq --arg host "$D26_HOST" --arg net "$NET" --arg subnet "$SUBNET" --arg gw "$GATEWAY" \
    '.name = $net | .plugins[0] += {network: $net, subnet: $subnet, gateway: $gw, dockerHost: $host}' \
    "$REPO/images/rootfs/etc/cni/net.d/10-smarter-cni.conflist" >"$T/net.d/10-smarter-cni.conflist"
  sed -e "s|^listen-address=.*|listen-address=$GATEWAY|" -e "s|/run/smarter-cni/mynet/|/run/smarter-cni/$NET/|" \
    "$REPO/images/rootfs/etc/smarter-cni/dnsmasq.conf" >"$T/dnsmasq.conf"
  export SMARTER_CNI_CONFIG=$T/net.d/10-smarter-cni.conflist SMARTER_CNI_DNSMASQ_CONFIG=$T/dnsmasq.conf
  CONF=$(jq -c '.plugins[0] + {cniVersion, name}' "$SMARTER_CNI_CONFIG")
  LO_CONF='{"cniVersion":"0.2.0","name":"cni-loopback","type":"loopback"}' # cri-dockerd's built-in list
}
remove_test_pods() {
  local ids
  ids=$(docker ps -aq --filter "label=$LABEL")
  # shellcheck disable=SC2086 # one id per word
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "${STATE_ROOT:-/run/smarter-cni}/$NET"
}

# Node DNS as smarter-cni-dns.service runs it, with the test's copy of dnsmasq.conf.
DNS_PID=
start_dns() {
  dnsmasq --keep-in-foreground --log-facility="$WORK/dnsmasq.log" --conf-file="$T/dnsmasq.conf" &
  DNS_PID=$!
  local end=$((SECONDS + 10))
  until dig +short +time=1 +tries=1 "@$GATEWAY" nothing.cluster.local >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}
stop_dns() { [ -z "$DNS_PID" ] || { kill "$DNS_PID" 2>/dev/null; wait "$DNS_PID" 2>/dev/null; DNS_PID=; }; }
node_dns_resolves() { # pod...: node DNS answers each pod name with its address
  local p got
  for p in "$@"; do
    got=$(dig +short +time=1 +tries=2 "@$GATEWAY" "$p")
    [ "$got" = "$(jq -r '.ips[0].address | sub("/.*"; "")' "$WORK/$p.json")" ] ||
      { echo "     node DNS: $p -> '$got'"; return 1; }
  done
}
healthy() {
  "$BIN" status --config "$SMARTER_CNI_CONFIG" --dnsmasq-config "$SMARTER_CNI_DNSMASQ_CONFIG" --bin-dir "$CNI_DIR" \
    ${STATE_DIR:+--state-dir "$STATE_DIR"} >"$WORK/status.txt" 2>&1 || { sed 's/^/     /' "$WORK/status.txt"; false; }
}

# ------------------------------------------------------------------ pods
# One CNI call the way cri-dockerd makes it: env + config on stdin; the result on
# stdout, the plugin's log line (stderr: no syslog here) to $WORK/plugin.log.
cni() { # command plugin id netns pod config (cri-dockerd passes eth0 to loopback too)
  CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=$4 CNI_IFNAME=eth0 CNI_PATH=$CNI_DIR \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$5;K8S_POD_INFRA_CONTAINER_ID=$3" \
    "$CNI_DIR/$2" <<<"$6" 2>>"$WORK/plugin.log"
}
# The sandbox sequence of cri-dockerd: pause container without network, hostname,
# resolv.conf from the kubelet, then ADD loopback and ADD smarter-cni.
# Sets SANDBOX_ID/SANDBOX_NETNS; the ADD result goes to $WORK/<pod>.json.
sandbox() { # pod hostname
  SANDBOX_ID=$(docker run -d --name "${NET}_POD_$1" --hostname "$2" --network none \
    --label "$LABEL" --label io.kubernetes.docker.type=podsandbox \
    --label io.kubernetes.pod.name="$1" --label io.kubernetes.pod.namespace=default "$TEST_IMAGE") || return 1
  SANDBOX_NETNS=/proc/$(docker inspect -f '{{.State.Pid}}' "$SANDBOX_ID")/ns/net
  printf 'nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' \
    "$GATEWAY" >"$(docker inspect -f '{{.ResolvConfPath}}' "$SANDBOX_ID")"
}
start_pod() { # pod hostname
  sandbox "$1" "$2" &&
    cni ADD loopback "$SANDBOX_ID" "$SANDBOX_NETNS" "$1" "$LO_CONF" >/dev/null &&
    cni ADD smarter-cni "$SANDBOX_ID" "$SANDBOX_NETNS" "$1" "$CONF" >"$WORK/$1.json" &&
    echo "$SANDBOX_ID" >"$WORK/$1.id" && echo "$SANDBOX_NETNS" >"$WORK/$1.netns"
}
pod_call() { # command pod  (CHECK gets the ADD result as prevResult)
  local conf=$CONF
  [ "$1" = CHECK ] && conf=$(jq -c --slurpfile r "$WORK/$2.json" '. + {prevResult: $r[0]}' <<<"$CONF")
  cni "$1" smarter-cni "$(cat "$WORK/$2.id")" "$(cat "$WORK/$2.netns")" "$2" "$conf" >/dev/null
}
record_of() { grep -l "container=$(cat "$WORK/$1.id")" "${STATE_ROOT:-/run/smarter-cni}/$NET/hosts/"* 2>/dev/null; }
resolves_all() { # pod hostname...: each name resolves inside the pod to its pod's address
  local from=$1 name got
  shift
  for name in "$@"; do
    # The absolute name: the search list's expansions (ndots:5) go upstream, which the test
    # engines' 127.0.0.1 never answers from Docker 20.10's sandbox namespace (30 s each).
    got=$(docker exec "${NET}_POD_$from" getent hosts "$name." | awk '{print $1}')
    if [ -z "$got" ] || [ "$got" != "$(jq -r '.ips[0].address | sub("/.*"; "")' "$WORK/$name.json")" ]; then
      echo "     $from cannot resolve $name (got '$got')"
      return 1
    fi
  done
}
resolve_each_other() { # pod...: every pod resolves every other by name
  local p others q
  for p in "$@"; do
    others=()
    for q in "$@"; do [ "$q" = "$p" ] || others+=("$q"); done
    resolves_all "$p" "${others[@]}" || return 1
  done
}
detached() { # pod: no endpoint on the network, no record
  [ -z "$(docker inspect -f "{{with index .NetworkSettings.Networks \"$NET\"}}x{{end}}" "$(cat "$WORK/$1.id")")" ] &&
    [ -z "$(record_of "$1")" ]
}
# A pod the current binary did not add: CHECK, DEL, detached, container removed.
check_del_by_current() { # pod who-added
  local v
  v=$("$BIN" --version 2>&1)
  check "$v CHECKs a pod that $2 added" pod_call CHECK "$1"
  check "$v DELs a pod that $2 added" pod_call DEL "$1"
  check "$1 detached: no endpoint, no record" detached "$1"
  docker rm -f "$(cat "$WORK/$1.id")" >/dev/null
}

# ------------------------------------------------------------------ load
# Workers that call the installed plugin the way the runtime does while the package
# manager runs: pod lifecycles (ADD loopback, ADD, CHECK, VERSION, DEL) and a tight
# VERSION loop (the plugin and the loopback link). Every failed call is written to
# $WORK/<tag>.fail.
LOAD_PIDS=()
lifecycle_worker() { # tag n
  local tag=$1 n=$2 i=0 pod id netns out add conf
  while [ ! -e "$WORK/stop" ]; do
    i=$((i + 1))
    pod=load-$n-$i
    if ! sandbox "$pod" "load$n"; then echo "docker run failed" >>"$WORK/$tag.docker"; continue; fi
    id=$SANDBOX_ID netns=$SANDBOX_NETNS
    out=$(cni ADD loopback "$id" "$netns" "$pod" "$LO_CONF") || echo "ADD loopback $pod: $out" >>"$WORK/$tag.fail"
    if add=$(cni ADD smarter-cni "$id" "$netns" "$pod" "$CONF"); then
      conf=$(jq -c --argjson r "$add" '. + {prevResult: $r}' <<<"$CONF")
      out=$(cni CHECK smarter-cni "$id" "$netns" "$pod" "$conf") || echo "CHECK $pod: $out" >>"$WORK/$tag.fail"
    else
      echo "ADD $pod: $add" >>"$WORK/$tag.fail"
    fi
    out=$(cni VERSION smarter-cni "$id" "$netns" "$pod" "$CONF") || echo "VERSION: $out" >>"$WORK/$tag.fail"
    out=$(cni DEL smarter-cni "$id" "$netns" "$pod" "$CONF") || echo "DEL $pod: $out" >>"$WORK/$tag.fail"
    out=$(cni DEL loopback "$id" "$netns" "$pod" "$LO_CONF") || echo "DEL loopback $pod: $out" >>"$WORK/$tag.fail"
    docker rm -f "$id" >/dev/null 2>&1
    echo "$pod" >>"$WORK/$tag.cycles"
  done
}
version_worker() { # tag
  local tag=$1 out calls=0
  while [ ! -e "$WORK/stop" ]; do
    out=$(CNI_COMMAND=VERSION "$BIN" </dev/null 2>&1) || echo "VERSION: $out" >>"$WORK/$tag.fail"
    out=$(CNI_COMMAND=VERSION "$CNI_DIR/loopback" </dev/null 2>&1) || echo "VERSION loopback: $out" >>"$WORK/$tag.fail"
    calls=$((calls + 2))
  done
  echo "$calls" >"$WORK/$tag.version-calls"
}
stop_load() {
  touch "$WORK/stop"
  [ ${#LOAD_PIDS[@]} -eq 0 ] || wait "${LOAD_PIDS[@]}" 2>/dev/null
  LOAD_PIDS=()
  rm -f "$WORK/stop"
}
cycles() { if [ -f "$WORK/$1.cycles" ]; then wc -l <"$WORK/$1.cycles"; else echo 0; fi; }
wait_cycles() { # tag count: until the workers completed that many lifecycles (60 s at most)
  local end=$((SECONDS + 60))
  while [ "$(cycles "$1")" -lt "$2" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
}
# Runs a command (the package manager) while the workers call the plugin; sets LOAD_RC,
# LOAD_SUMMARY.
under_load() { # tag command...
  local tag=$1 before after
  shift
  rm -f "$WORK/stop"
  lifecycle_worker "$tag" 1 &
  LOAD_PIDS+=($!)
  lifecycle_worker "$tag" 2 &
  LOAD_PIDS+=($!)
  version_worker "$tag" &
  LOAD_PIDS+=($!)
  wait_cycles "$tag" 2
  before=$(cycles "$tag")
  logged "$tag" "$@"
  LOAD_RC=$?
  # The workers go on until each had a full lifecycle with the new binary.
  wait_cycles "$tag" $((before + 4))
  after=$(cycles "$tag")
  stop_load
  LOAD_SUMMARY="$after pod lifecycles ($((after - before)) during/after the package manager), $(cat "$WORK/$tag.version-calls" 2>/dev/null) VERSION calls"
}
no_failed_calls() { # tag
  if [ -s "$WORK/$1.fail" ] || [ "$(cycles "$1")" -lt 6 ]; then
    head -n 20 "$WORK/$1.fail" 2>/dev/null | sed 's/^/     /'
    return 1
  fi
}
# The binary was replaced by rename of $1 and never opened for writing ($2: strace log).
landed_by_rename() { # temp-name strace-log
  grep -qE "rename(at2?)?\(.*\"$1\", .*\"$BIN\"" "$2" &&
    ! grep -E "open(at)?\(.*\"$BIN\", [^)]*O_(WRONLY|RDWR|TRUNC)" "$2"
}

# ------------------------------------------------------------------ the scenario
# Pods of the previous release: pa, pb, pc attached and resolving each other.
attach_old_pods() {
  log "3 pods attached by $PREV_VERSION"
  local ok=1 p
  for p in pa pb pc; do start_pod "$p" "host-$p" || ok=0; done
  check "pods pa, pb, pc attached (ADD loopback + smarter-cni)" [ $ok = 1 ]
  check "they resolve each other by name" resolve_each_other pa pb pc
}
# A package manager run under load that must succeed (rpm only warns when a package
# script fails: its warning counts as a failure here), with zero failed CNI calls.
package_run_under_load() { # tag version-after description command...
  local tag=$1 version=$2 what=$3
  shift 3
  under_load "$tag" "$@"
  if [ "$LOAD_RC" = 0 ] && ! grep -q 'scriptlet failed' "$WORK/$tag.log"; then
    pass "$what under load ($LOAD_SUMMARY)"
  else
    fail "$what under load" "$(cat "$WORK/$tag.log")"
  fi
  check "zero failed CNI calls during $what" no_failed_calls "$tag"
  check "$BIN is $version" version_is "$version"
}
# After the upgrade: the old pods on the new version; a new pod pd.
after_upgrade() {
  check "pods attached by $PREV_VERSION still resolve each other by name" resolve_each_other pa pb pc
  check "node DNS answers the records $PREV_VERSION wrote" node_dns_resolves pa pb pc
  check "smarter-cni status of $NEW_VERSION: healthy, every pod resolves" healthy
  check_del_by_current pa "$PREV_VERSION"
  check "$NEW_VERSION attaches a new pod pd" start_pod pd host-pd
}
# After the downgrade: pods of both versions on the previous one.
after_downgrade() {
  check "pods attached by both versions resolve each other by name" resolve_each_other pb pc pd
  check "node DNS answers the records of both versions" node_dns_resolves pb pc pd
  check "smarter-cni status of $PREV_VERSION: healthy, every pod resolves" healthy
  check_del_by_current pd "$NEW_VERSION"
}
# After a rollback: node DNS back, and the previous binary serves a whole new pod.
previous_binary_works() {
  check "node DNS back" start_dns
  local ok=0
  if start_pod pe host-pe && pod_call CHECK pe && resolves_all pe pb pc && pod_call DEL pe && detached pe; then ok=1; fi
  check "the previous binary works: ADD, CHECK, resolve, DEL of a new pod" [ $ok = 1 ]
}

# Root; the engines' addresses; $WORK, not under /run/smarter-cni-test (the
# suites' cleanup stops every dnsmasq whose configuration lives there).
begin_test() { # work-name
  [ "$(id -u)" = 0 ] || { echo "$(basename "$0" .sh): run as root" >&2; exit 1; }
  set -a
  # shellcheck disable=SC1090 # the engines' addresses
  eval "$("$REPO/scripts/engines.sh" env)"
  set +a
  WORK=$(mktemp -d "/run/smarter-cni-$1.XXXXXX")
}

# Installs the Debian packages of the tools missing from the list (command:package ...),
# plus the packages given after --.
install_tools() {
  local need=() pair
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    PATH=$PATH:/usr/sbin command -v "${1%%:*}" >/dev/null || need+=("${1#*:}")
    shift
  done
  [ $# -eq 0 ] || { shift; need+=("$@"); }
  [ ${#need[@]} -gt 0 ] || return 0
  log "installing ${need[*]}"
  { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends "${need[@]}"; } >"$WORK/apt.log" 2>&1 ||
    { cat "$WORK/apt.log"; fail "tools installed (${need[*]})"; finish; }
}
