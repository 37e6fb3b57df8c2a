#!/usr/bin/env bash
# The Debian package and its upgrade procedure (issue 8), on this machine's real
# filesystem (/opt/cni/bin, /etc, /var/lib/dpkg: CI machines are disposable), against the
# private Docker 26.1 test engine:
#
#  - builds the static binaries (scripts/build-dist.sh, incremental) and the .debs for
#    arm64, armhf, amd64; they are reproducible and lintian-clean (overrides justified);
#  - "previous release": the newest earlier commit that has packaging/deb, else HEAD
#    rebuilt with the version <version>-prev (said in the output);
#  - install of the previous release; 3 pods attached with it the way cri-dockerd does;
#  - upgrade under load: ADD/CHECK/DEL/VERSION calls to /opt/cni/bin (plugin and
#    loopback) run in a loop while `dpkg -i` runs (under strace: the binary is replaced
#    by rename, never written in place); zero failed calls; the old pods resolve each
#    other by name; the new version CHECKs and DELs a pod the old one added;
#  - the same for a downgrade;
#  - a failed health check (SMARTER_CNI_HEALTH_REQUIRE in /etc/default/smarter-cni asks
#    for node DNS, which this test does not run) fails dpkg, leaves the previous binary
#    working, keeps the operator's conffile edit; `dpkg --configure` retries;
#  - remove keeps conffiles and pods, purge removes everything: the machine is as before.
#
# The maintainer scripts are pointed at the test engine through their environment hook
# (SMARTER_CNI_CONFIG, SMARTER_CNI_DNSMASQ_CONFIG; see packaging/deb/default).
# Subnet 172.33.0.0/16 only; containers labelled smarter-cni-test-deb=1, network
# smarter-deb-test (not the sct-* names and smarter-cni-test=1 label that
# scripts/test-cleanup.sh removes: a concurrent run of the suites must not take away this
# test's pods); both removed at the start and the end of every run.
# Usage: tests/packaging/deb-upgrade.sh   (root, Debian 12; after scripts/engines.sh start)
# shellcheck disable=SC2317 # check() and the traps call functions indirectly
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}
TARGET_DIR=${SMARTER_CNI_TARGET_DIR:-$CACHE/target}
PREV_DIR=$CACHE/deb-prev
NET=smarter-deb-test
SUBNET=172.33.0.0/16
GATEWAY=172.33.0.1
BIN=/opt/cni/bin/smarter-cni
LABEL=smarter-cni-test-deb=1
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
  echo "deb-upgrade: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

[ "$(id -u)" = 0 ] || { echo "deb-upgrade: run as root" >&2; exit 1; }
set -a
# shellcheck disable=SC1090 # the engines' addresses
eval "$("$REPO/scripts/engines.sh" env)"
set +a
docker() { "$DOCKER" -H "$D26_HOST" "$@"; }
# Not under /run/smarter-cni-test: scripts/test-cleanup.sh stops every dnsmasq whose
# configuration lives there.
WORK=$(mktemp -d /run/smarter-cni-deb-test.XXXXXX)
DNS_PID=

# ------------------------------------------------------------------ cleanup
LOAD_PIDS=()
stop_load() {
  touch "$WORK/stop"
  [ ${#LOAD_PIDS[@]} -eq 0 ] || wait "${LOAD_PIDS[@]}" 2>/dev/null
  LOAD_PIDS=()
  rm -f "$WORK/stop"
}
stop_dns() { [ -z "$DNS_PID" ] || { kill "$DNS_PID" 2>/dev/null; wait "$DNS_PID" 2>/dev/null; DNS_PID=; }; }
cleanup() {
  stop_dns
  stop_load
  if dpkg-query -W -f='${db:Status-Abbrev}' smarter-cni 2>/dev/null | grep -q '^[a-z][^n]'; then
    SMARTER_CNI_HEALTH_CHECK=no dpkg --purge smarter-cni >/dev/null 2>&1 || true
  fi
  local ids
  ids=$(docker ps -aq --filter "label=$LABEL")
  # shellcheck disable=SC2086 # one id per word
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "/run/smarter-cni/$NET" "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ tools
need=()
for pair in lintian:lintian strace:strace jq:jq shellcheck:shellcheck dpkg-deb:dpkg \
  dnsmasq:dnsmasq-base dig:bind9-dnsutils; do
  PATH=$PATH:/usr/sbin command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
# dnsmasq-base satisfies the package's Depends (dpkg -i checks it).
dpkg-query -W -f='${db:Status-Abbrev}' dnsmasq-base 2>/dev/null | grep -q '^ii' ||
  dpkg-query -W -f='${db:Status-Abbrev}' dnsmasq 2>/dev/null | grep -q '^ii' || need+=(dnsmasq-base)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends "${need[@]}"; } >"$WORK/apt.log" 2>&1 ||
    { cat "$WORK/apt.log"; fail "tools installed (${need[*]})"; finish; }
fi

# ------------------------------------------------------------------ builds
log "static binaries (scripts/build-dist.sh, incremental in $TARGET_DIR)"
if ! SMARTER_CNI_TARGET_DIR=$TARGET_DIR SMARTER_CNI_DIST=$WORK/dist \
  "$REPO/scripts/build-dist.sh" >"$WORK/build.log" 2>&1; then
  tail -n 30 "$WORK/build.log"
  fail "static binaries built"
  finish
fi
NEW_VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' "$REPO/Cargo.toml" | head -n1)
NEW_DEB_VERSION=${NEW_VERSION/-/\~}-1

log ".debs of $NEW_DEB_VERSION"
build_debs() { # out-dir
  SMARTER_CNI_TARGET_DIR=$TARGET_DIR SMARTER_CNI_DEB_OUT=$1 "$REPO/packaging/deb/build-deb.sh"
}
if build_debs "$WORK/deb" 2>"$WORK/build-deb.log"; then
  pass "build-deb.sh: $(cd "$WORK/deb" && echo *.deb)"
else
  cat "$WORK/build-deb.log"
  fail "build-deb.sh"
  finish
fi
NEW_DEB=$WORK/deb/smarter-cni_${NEW_DEB_VERSION}_amd64.deb
build_debs "$WORK/deb2" 2>/dev/null
check "the .debs are reproducible (a second build is byte-identical)" \
  diff <(cd "$WORK/deb" && sha256sum -- *.deb) <(cd "$WORK/deb2" && sha256sum -- *.deb)

contents_ok() {
  local deb=$1 c
  c=$(dpkg-deb -c "$deb") || return 1
  grep -q ' root/root .* \./opt/cni/bin/smarter-cni$' <<<"$c" &&
    grep -q '\./opt/cni/bin/loopback -> smarter-cni$' <<<"$c" &&
    [ "$(dpkg-deb -f "$deb" Depends)" = "dnsmasq-base | dnsmasq" ] &&
    [ "$(dpkg-deb -f "$deb" Recommends)" = "docker.io" ] &&
    dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/cni/net.d/10-smarter-cni.conflist &&
    ! grep -v ' root/root ' <<<"$c" | grep -q .
}
for deb in "$WORK"/deb/*.deb; do
  check "$(basename "$deb"): layout, owners, Depends/Recommends, conffiles" contents_ok "$deb"
done
check "the amd64 package holds the x86_64 build (ELF x86-64, static)" \
  bash -c "dpkg-deb --fsys-tarfile '$NEW_DEB' | tar -xOf - ./opt/cni/bin/smarter-cni >'$WORK/bin.amd64' &&
    cmp -s '$WORK/bin.amd64' '$TARGET_DIR/x86_64-unknown-linux-musl/release/smarter-cni'"

log "lintian"
if lintian --tag-display-limit 0 -I --pedantic --fail-on error,warning,info,pedantic \
  "$WORK"/deb/*.deb >"$WORK/lintian.log" 2>&1; then
  pass "lintian clean (remaining tags overridden in packaging/deb/lintian-overrides)"
else
  fail "lintian" "$(grep -v '^running with root' "$WORK/lintian.log")"
fi
check "shellcheck: packaging/deb scripts and this test" bash -c \
  "shellcheck -s sh '$REPO'/packaging/deb/{preinst,postinst,prerm,postrm} &&
   shellcheck -x -P SCRIPTDIR '$REPO/packaging/deb/build-deb.sh' '$REPO/tests/packaging/deb-upgrade.sh'"

# The previous release: the newest earlier commit with packaging/deb, built with its own
# scripts; without one, HEAD's sources with the version <version>-prev.
log "previous release"
prev_ref=${SMARTER_CNI_DEB_PREV_REF:-$(git -C "$REPO" rev-list -1 HEAD~1 -- packaging/deb/build-deb.sh 2>/dev/null)}
if [ -z "$prev_ref" ]; then
  prev_ref=HEAD
  echo "deb-upgrade: no earlier commit has packaging/deb: the previous release is HEAD rebuilt as $NEW_VERSION-prev"
fi
prev_commit=$(git -C "$REPO" rev-parse "$prev_ref^{commit}")
PREV_VERSION=${NEW_VERSION%%-*}-prev
PREV_DEB_VERSION=${PREV_VERSION/-/\~}-1
build_prev() {
  if [ "$(cat "$PREV_DIR/src.commit" 2>/dev/null)" != "$prev_commit" ]; then
    rm -rf "$PREV_DIR/src" && mkdir -p "$PREV_DIR/src" &&
      git -C "$REPO" archive "$prev_commit" | tar -x -C "$PREV_DIR/src" &&
      sed -i "/^\[package\]/,/^\[/s/^version = \".*\"/version = \"$PREV_VERSION\"/" "$PREV_DIR/src/Cargo.toml" &&
      awk -v v="$PREV_VERSION" 'p && /^version = / { $0 = "version = \"" v "\""; p = 0 }
        /^name = "smarter-cni"$/ { p = 1 } { print }' "$PREV_DIR/src/Cargo.lock" >"$PREV_DIR/Cargo.lock" &&
      mv "$PREV_DIR/Cargo.lock" "$PREV_DIR/src/Cargo.lock" &&
      echo "$prev_commit" >"$PREV_DIR/src.commit" || return 1
  fi
  SMARTER_CNI_TARGETS=x86_64-unknown-linux-musl SMARTER_CNI_TARGET_DIR=$PREV_DIR/target \
    SMARTER_CNI_DIST=$WORK/prev-dist "$PREV_DIR/src/scripts/build-dist.sh" || return 1
  local builder=$PREV_DIR/src/packaging/deb/build-deb.sh
  [ -x "$builder" ] || builder=$REPO/packaging/deb/build-deb.sh
  SMARTER_CNI_TARGET_DIR=$PREV_DIR/target SMARTER_CNI_DEB_OUT=$WORK/prev-deb \
    SMARTER_CNI_DEB_ARCHES=amd64 SMARTER_CNI_DEB_VERSION=$PREV_DEB_VERSION "$builder"
}
if build_prev >"$WORK/prev.log" 2>&1; then
  pass "previous release $PREV_DEB_VERSION built from $(git -C "$REPO" rev-parse --short "$prev_commit")"
else
  tail -n 30 "$WORK/prev.log"
  fail "previous release built"
  finish
fi
PREV_DEB=$WORK/prev-deb/smarter-cni_${PREV_DEB_VERSION}_amd64.deb
check "dpkg orders $PREV_DEB_VERSION before $NEW_DEB_VERSION" dpkg --compare-versions "$PREV_DEB_VERSION" lt "$NEW_DEB_VERSION"

# ------------------------------------------------------------------ the node
# What the machine looked like before: the test must leave it so.
snapshot() {
  find /opt/cni /etc/cni /etc/smarter-cni /etc/rancher /etc/default/smarter-cni /var/lib/smarter-cni \
    /usr/lib/systemd/system /etc/systemd/system /usr/lib/tmpfiles.d -name '*smarter*' 2>/dev/null | LC_ALL=C sort
  find /opt/cni /etc/cni /var/lib/systemd/deb-systemd-helper-enabled /var/lib/systemd/deb-systemd-helper-masked \
    2>/dev/null | LC_ALL=C sort
}
if dpkg-query -W -f='${db:Status-Abbrev}' smarter-cni 2>/dev/null | grep -q '^[a-z][^n]'; then
  echo "deb-upgrade: smarter-cni is installed (left by an interrupted run?): purging it first"
  SMARTER_CNI_HEALTH_CHECK=no dpkg --purge smarter-cni >/dev/null
fi
if [ -e "$BIN" ]; then
  fail "$BIN exists and no package owns it: this test would replace it; remove it first"
  finish
fi
snapshot >"$WORK/before.txt"
ids=$(docker ps -aq --filter "label=$LABEL")
# shellcheck disable=SC2086 # one id per word
[ -z "$ids" ] || docker rm -f $ids >/dev/null
docker network rm "$NET" >/dev/null 2>&1 || true

# The test's CNI configuration and node DNS configuration, handed to the maintainer
# scripts through their environment hook.
T=$WORK/node
mkdir -p "$T/net.d"
jq --arg host "$D26_HOST" --arg net "$NET" --arg subnet "$SUBNET" --arg gw "$GATEWAY" \
  '.name = $net | .plugins[0] += {network: $net, subnet: $subnet, gateway: $gw, dockerHost: $host}' \
  "$REPO/images/rootfs/etc/cni/net.d/10-smarter-cni.conflist" >"$T/net.d/10-smarter-cni.conflist"
sed -e "s|^listen-address=.*|listen-address=$GATEWAY|" -e "s|^hostsdir=.*|hostsdir=/run/smarter-cni/$NET/hosts|" \
  "$REPO/images/rootfs/etc/smarter-cni/dnsmasq.conf" >"$T/dnsmasq.conf"
export SMARTER_CNI_CONFIG=$T/net.d/10-smarter-cni.conflist SMARTER_CNI_DNSMASQ_CONFIG=$T/dnsmasq.conf
CONF=$(jq -c '.plugins[0] + {cniVersion, name}' "$SMARTER_CNI_CONFIG")
LO_CONF='{"cniVersion":"1.0.0","name":"cni-loopback","type":"loopback"}'

logged() { # log-name command...  (no terminal: a conffile prompt would fail dpkg)
  local name=$1
  shift
  "$@" </dev/null >"$WORK/$name.log" 2>&1
}
dpkg_i() { # log-name dpkg-arguments...
  local name=$1
  shift
  logged "$name" dpkg "$@"
}
version_is() { [ "$("$BIN" --version 2>&1)" = "smarter-cni $1" ]; }
status_is() { [ "$(dpkg-query -W -f='${Status}' smarter-cni 2>/dev/null)" = "$1" ]; }

# One CNI call the way cri-dockerd makes it: env + config on stdin; the result on
# stdout, the plugin's log line (stderr: no syslog here) to $WORK/plugin.log.
cni() { # command plugin id netns pod config
  local ifname=eth0
  [ "$2" = loopback ] && ifname=lo
  CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=$4 CNI_IFNAME=$ifname CNI_PATH=/opt/cni/bin \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$5;K8S_POD_INFRA_CONTAINER_ID=$3" \
    "/opt/cni/bin/$2" <<<"$6" 2>>"$WORK/plugin.log"
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
record_of() { grep -l "container=$(cat "$WORK/$1.id")" "/run/smarter-cni/$NET/hosts/"* 2>/dev/null; }
resolves_all() { # pod hostname...: each name resolves inside the pod to its pod's address
  local from=$1 name got
  shift
  for name in "$@"; do
    got=$(docker exec "${NET}_POD_$from" getent hosts "$name" | awk '{print $1}')
    if [ -z "$got" ] || [ "$got" != "$(jq -r '.ips[0].address | sub("/.*"; "")' "$WORK/$name.json")" ]; then
      echo "     $from cannot resolve $name (got '$got')"
      return 1
    fi
  done
}
detached() { # pod: no endpoint on the network, no record
  [ -z "$(docker inspect -f "{{with index .NetworkSettings.Networks \"$NET\"}}x{{end}}" "$(cat "$WORK/$1.id")")" ] &&
    [ -z "$(record_of "$1")" ]
}

# ------------------------------------------------------------------ load
# Workers that call the installed plugin the way the runtime does while dpkg runs:
# pod lifecycles (ADD loopback, ADD, CHECK, VERSION, DEL) and a tight VERSION loop (the
# plugin and the loopback link). Every failed call is written to $WORK/<tag>.fail.
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
    out=$(CNI_COMMAND=VERSION /opt/cni/bin/loopback </dev/null 2>&1) || echo "VERSION loopback: $out" >>"$WORK/$tag.fail"
    calls=$((calls + 2))
  done
  echo "$calls" >"$WORK/$tag.version-calls"
}
cycles() { if [ -f "$WORK/$1.cycles" ]; then wc -l <"$WORK/$1.cycles"; else echo 0; fi; }
wait_cycles() { # tag count: until the workers completed that many lifecycles (60 s at most)
  local end=$((SECONDS + 60))
  while [ "$(cycles "$1")" -lt "$2" ] && [ $SECONDS -lt $end ]; do sleep 0.2; done
}
# Runs a command (dpkg) while the workers call the plugin; sets LOAD_RC, LOAD_SUMMARY.
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
  LOAD_SUMMARY="$after pod lifecycles ($((after - before)) during/after dpkg), $(cat "$WORK/$tag.version-calls" 2>/dev/null) VERSION calls"
}
no_failed_calls() { # tag
  if [ -s "$WORK/$1.fail" ] || [ "$(cycles "$1")" -lt 6 ]; then
    head -n 20 "$WORK/$1.fail" 2>/dev/null | sed 's/^/     /'
    return 1
  fi
}

# ------------------------------------------------------------------ install the previous release
log "install $PREV_DEB_VERSION (previous release)"
if dpkg_i install-prev -i "$PREV_DEB"; then pass "dpkg -i $PREV_DEB_VERSION"; else
  fail "dpkg -i $PREV_DEB_VERSION" "$(cat "$WORK/install-prev.log")"
  finish
fi
check "installed: $BIN is $PREV_VERSION, package state installed" \
  bash -c "[ \"\$('$BIN' --version)\" = 'smarter-cni $PREV_VERSION' ] && [ \"\$(dpkg-query -W -f='\${Status}' smarter-cni)\" = 'install ok installed' ]"
check "postinst ran setup: network $NET $SUBNET exists" \
  bash -c "[ \"\$('$DOCKER' -H '$D26_HOST' network inspect -f '{{(index .IPAM.Config 0).Subnet}}' $NET)\" = $SUBNET ]"
check "conffiles in place; units enabled; tmpfiles created /run/smarter-cni" bash -c \
  "[ -f /etc/cni/net.d/10-smarter-cni.conflist ] && [ -f /etc/smarter-cni/dnsmasq.conf ] &&
   [ -f /etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml ] && [ -f /etc/default/smarter-cni ] &&
   [ -L /etc/systemd/system/multi-user.target.wants/smarter-cni-setup.service ] &&
   [ -L /etc/systemd/system/multi-user.target.wants/smarter-cni-dns.service ] && [ -d /run/smarter-cni/mynet/hosts ]"
check "the loopback link is the plugin" bash -c "[ \"\$(readlink /opt/cni/bin/loopback)\" = smarter-cni ]"

# Node DNS as smarter-cni-dns.service runs it, with the test's copy of dnsmasq.conf.
start_dns() {
  dnsmasq --keep-in-foreground --log-facility="$WORK/dnsmasq.log" --conf-file="$T/dnsmasq.conf" &
  DNS_PID=$!
  local end=$((SECONDS + 10))
  until dig +short +time=1 +tries=1 "@$GATEWAY" nothing.cluster.local >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}
check "node DNS (dnsmasq) answers on $GATEWAY" start_dns
node_dns_resolves() { # pod...: node DNS answers each pod name with its address
  local p got
  for p in "$@"; do
    got=$(dig +short +time=1 +tries=2 "@$GATEWAY" "$p")
    [ "$got" = "$(jq -r '.ips[0].address | sub("/.*"; "")' "$WORK/$p.json")" ] ||
      { echo "     node DNS: $p -> '$got'"; return 1; }
  done
}
healthy() { "$BIN" status --config "$SMARTER_CNI_CONFIG" --dnsmasq-config "$SMARTER_CNI_DNSMASQ_CONFIG" >"$WORK/status.txt" 2>&1 || { sed 's/^/     /' "$WORK/status.txt"; false; }; }

log "3 pods attached by $PREV_VERSION"
ok=1
for p in pa pb pc; do start_pod "$p" "host-$p" || ok=0; done
check "pods pa, pb, pc attached (ADD loopback + smarter-cni)" [ $ok = 1 ]
if resolves_all pa pb pc && resolves_all pb pa pc && resolves_all pc pa pb; then
  pass "they resolve each other by name"
else fail "pods resolve each other before the upgrade"; fi

# ------------------------------------------------------------------ upgrade under load
log "upgrade to $NEW_DEB_VERSION under load (dpkg -i under strace)"
under_load up strace -f -qq -o "$WORK/strace.up" -e trace=open,openat,rename,renameat,renameat2 \
  dpkg -i "$NEW_DEB"
if [ "$LOAD_RC" = 0 ]; then pass "dpkg -i $NEW_DEB_VERSION under load ($LOAD_SUMMARY)"; else
  fail "dpkg -i $NEW_DEB_VERSION under load" "$(cat "$WORK/up.log")"
fi
check "zero failed CNI calls during the upgrade" no_failed_calls up
check "$BIN is $NEW_VERSION" version_is "$NEW_VERSION"
check "dpkg put the binary in place by rename(smarter-cni.dpkg-new -> smarter-cni)" \
  grep -qE 'rename(at2?)?\(.*"/opt/cni/bin/smarter-cni\.dpkg-new", .*"/opt/cni/bin/smarter-cni"' "$WORK/strace.up"
check "nothing opened /opt/cni/bin/smarter-cni for writing" bash -c \
  "! grep -E 'open(at)?\(.*\"/opt/cni/bin/smarter-cni\", [^)]*O_(WRONLY|RDWR|TRUNC)' '$WORK/strace.up'"
check "preinst kept the previous binary in /var/lib/smarter-cni/previous" bash -c \
  "[ \"\$(/var/lib/smarter-cni/previous/smarter-cni --version)\" = 'smarter-cni $PREV_VERSION' ] && [ ! -e /opt/cni/bin/.smarter-cni.previous ]"
if resolves_all pa pb pc && resolves_all pb pa pc && resolves_all pc pa pb; then
  pass "pods attached by $PREV_VERSION still resolve each other by name"
else fail "old pods resolve each other after the upgrade"; fi
check "node DNS answers the records $PREV_VERSION wrote" node_dns_resolves pa pb pc
check "smarter-cni status of $NEW_VERSION: healthy, every pod resolves" healthy
check "$NEW_VERSION CHECKs a pod that $PREV_VERSION added" pod_call CHECK pa
check "$NEW_VERSION DELs a pod that $PREV_VERSION added" pod_call DEL pa
check "pa detached: no endpoint, no record" detached pa
docker rm -f "$(cat "$WORK/pa.id")" >/dev/null
check "$NEW_VERSION attaches a new pod pd" start_pod pd host-pd

# ------------------------------------------------------------------ downgrade under load
log "downgrade to $PREV_DEB_VERSION under load"
under_load down dpkg -i "$PREV_DEB"
if [ "$LOAD_RC" = 0 ]; then pass "dpkg -i $PREV_DEB_VERSION (downgrade) under load ($LOAD_SUMMARY)"; else
  fail "dpkg -i $PREV_DEB_VERSION (downgrade) under load" "$(cat "$WORK/down.log")"
fi
check "zero failed CNI calls during the downgrade" no_failed_calls down
check "$BIN is $PREV_VERSION again" version_is "$PREV_VERSION"
if resolves_all pb pc pd && resolves_all pc pb pd && resolves_all pd pb pc; then
  pass "pods attached by both versions resolve each other by name"
else fail "pods resolve each other after the downgrade"; fi
check "node DNS answers the records of both versions" node_dns_resolves pb pc pd
check "smarter-cni status of $PREV_VERSION: healthy, every pod resolves" healthy
check "$PREV_VERSION CHECKs the pod that $NEW_VERSION added" pod_call CHECK pd
check "$PREV_VERSION DELs the pod that $NEW_VERSION added" pod_call DEL pd
check "pd detached: no endpoint, no record" detached pd
docker rm -f "$(cat "$WORK/pd.id")" >/dev/null

# ------------------------------------------------------------------ failed health check
log "a failed health check rolls back"
# The operator requires node DNS in /etc/default/smarter-cni (a conffile), and node DNS
# is down: the check of the new version fails.
stop_dns
cp /etc/default/smarter-cni "$WORK/default.orig"
echo 'SMARTER_CNI_HEALTH_REQUIRE="config loopback network dns"' >>/etc/default/smarter-cni
dpkg_i failed -i "$NEW_DEB"
rc=$?
check "dpkg -i $NEW_DEB_VERSION fails (exit $rc)" [ "$rc" != 0 ]
check "it says so: FAILED, the failing part, ROLLED BACK" bash -c \
  "grep -q 'FAILED its health check' '$WORK/failed.log' && grep -q '  - dns: ' '$WORK/failed.log' && grep -q 'ROLLED BACK' '$WORK/failed.log'"
check "$BIN is the previous binary ($PREV_VERSION)" version_is "$PREV_VERSION"
check "the package is left half-configured" status_is "install ok half-configured"
check "the operator's edit of /etc/default/smarter-cni is kept" grep -q '^SMARTER_CNI_HEALTH_REQUIRE=' /etc/default/smarter-cni
echo "     what the operator sees (dpkg -i output):"
sed -n '/^smarter-cni:/,$p' "$WORK/failed.log" | sed 's/^/     | /'
check "node DNS back" start_dns
ok=0
if start_pod pe host-pe && pod_call CHECK pe && resolves_all pe pb pc && pod_call DEL pe && detached pe; then ok=1; fi
check "the previous binary works: ADD, CHECK, resolve, DEL of a new pod" [ $ok = 1 ]
cp "$WORK/default.orig" /etc/default/smarter-cni
if dpkg_i retry --configure smarter-cni; then pass "dpkg --configure retries $NEW_DEB_VERSION once the cause is fixed"; else
  fail "dpkg --configure smarter-cni" "$(cat "$WORK/retry.log")"
fi
check "$BIN is $NEW_VERSION, package installed" bash -c \
  "[ \"\$('$BIN' --version)\" = 'smarter-cni $NEW_VERSION' ] && [ \"\$(dpkg-query -W -f='\${Status}' smarter-cni)\" = 'install ok installed' ] && [ ! -e /var/lib/smarter-cni/failed ]"

# ------------------------------------------------------------------ remove, purge
log "remove and purge"
dpkg_i remove --remove smarter-cni
check "dpkg --remove: binary and loopback gone, conffiles and /var/lib/smarter-cni kept" bash -c \
  "[ ! -e '$BIN' ] && [ ! -L /opt/cni/bin/loopback ] && [ -f /etc/cni/net.d/10-smarter-cni.conflist ] &&
   [ -f /etc/default/smarter-cni ] && [ -d /var/lib/smarter-cni ] && [ \"\$(dpkg-query -W -f='\${Status}' smarter-cni)\" = 'deinstall ok config-files' ]"
check "removing the package left the pods attached" resolves_all pb pc
dpkg_i purge --purge smarter-cni
check "dpkg --purge: not known to dpkg any more" bash -c "! dpkg-query -W smarter-cni >/dev/null 2>&1"
snapshot >"$WORK/after.txt"
check "purge left the machine as before (no file of the package, unit link or state)" \
  diff "$WORK/before.txt" "$WORK/after.txt"
for p in pb pc; do docker rm -f "$(cat "$WORK/$p.id")" >/dev/null; done

finish
