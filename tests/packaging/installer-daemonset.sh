#!/usr/bin/env bash
# The installer image (issue 14) run as the DaemonSet runs it, on Docker 20.10 and 26.1,
# each engine a node of its own:
#
#   docker run -d --network host --user 0:0 --cap-drop ALL --security-opt no-new-privileges
#     --read-only -v <node>/opt/cni/bin:/opt/cni/bin ... -v <engine socket>:/var/run/docker.sock
#
# (hostNetwork, runAsUser 0, capabilities drop ALL, allowPrivilegeEscalation false,
# readOnlyRootFilesystem, the hostPath volumes at the same paths inside), the image loaded
# with `docker load` from the archive packaging/oci/build-image.sh makes, the readiness
# probe as the kubelet runs it (`docker exec <c> /smarter-cni status --require
# config,loopback,network,activation`). The node's host paths are per-test folders under $WORK, never
# the machine's own /opt/cni/bin or /etc/cni/net.d. Pods are started as cri-dockerd starts
# them (tests/packaging/lib/upgrade-under-load.sh), calling the installed binary on the host
# with a host-side copy of the installed conflist whose engine socket and records paths
# point at the same folders; node DNS is dnsmasq with the installed dnsmasq.conf (same
# rewrite).
#
#  - fresh install into empty folders: binary, loopback link, conflist, dnsmasq.conf; setup
#    made the network; the container stays running and the probe passes (not before the
#    activation record says active); pods resolve each other;
#  - an operator-edited conflist and dnsmasq.conf: a later install keeps them byte for byte
#    and says so; SIGTERM (docker stop) ends the container at once with exit 0;
#  - upgrade under load from the previous release baked into the node (as a gateway image
#    bakes it, with its setup at boot): the workers of the package tests run while the new
#    installer starts; zero failed CNI calls; inotify on the plugin folder: the binary is
#    replaced by a rename onto its name, nothing writes into it; the file the runtime had is
#    unchanged (a host-side hard link keeps it); the previous binary kept; the activation
#    record says active + new version;
#  - downgrade under load with the previous release's installer image, the same way;
#  - a failing health check (SMARTER_CNI_HEALTH_REQUIRE asks for node DNS, which is down):
#    exit 1, not ready, the log says what failed and how to retry, the previous binary back
#    and serving a new pod; a restart does not land the failed release again.
#
# "Previous release": no release with an installer image exists yet (earlier commits of
# this branch had installer bugs no release will ship), so it is HEAD rebuilt as
# <version>-prev, built in /var/cache/smarter-cni-build/oci-prev (x86_64, incremental).
# Once a release ships the installer, set SMARTER_CNI_OCI_PREV_REF's default to its tag.
# The payload's network (mynet, 172.38.0.0/16) is made by the installer itself, so the
# two nodes run one after the other; a leftover of it with no containers is removed first.
# Containers are labelled smarter-cni-test-ds=1 and removed, with the images this test
# loaded and the folders, at the end.
# Usage: tests/packaging/installer-daemonset.sh   (root, Debian 12; after scripts/engines.sh start)
# shellcheck disable=SC2317 # check() and the trap call functions indirectly
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}
TARGET_DIR=${SMARTER_CNI_TARGET_DIR:-$CACHE/target}
PREV_DIR=$CACHE/oci-prev
PREV_REF=${SMARTER_CNI_OCI_PREV_REF:-HEAD}
LABEL=smarter-cni-test-ds=1
# shellcheck source=tests/packaging/lib/upgrade-under-load.sh
. "$REPO/tests/packaging/lib/upgrade-under-load.sh"
# shellcheck source=tests/packaging/lib/installer-node.sh
. "$REPO/tests/packaging/lib/installer-node.sh"

begin_test ds-test
chmod 0755 "$WORK"
ENGINES=("20.10:$D20_HOST" "26.1:$D26_HOST")
LOADED=() # engine-host image: what this test loaded (removed at the end)

# ------------------------------------------------------------------ cleanup
cleanup() {
  watch_bin_dir_stop
  stop_dns
  stop_load
  local e entry
  for e in "${ENGINES[@]}"; do
    ENGINE_HOST=${e#*:}
    docker ps -aq --filter "label=$LABEL" | xargs -r "$DOCKER" -H "$ENGINE_HOST" rm -f >/dev/null 2>&1
    [ -z "${NET:-}" ] || docker network rm "$NET" >/dev/null 2>&1
  done
  for entry in "${LOADED[@]}"; do "$DOCKER" -H "${entry% *}" rmi "${entry#* }" >/dev/null 2>&1; done
  rm -rf "$WORK"
}
trap cleanup EXIT

install_tools inotifywait:inotify-tools jq:jq dnsmasq:dnsmasq-base dig:bind9-dnsutils

# ------------------------------------------------------------------ builds
build_release
NEW_TARBALL=$WORK/dist/smarter-cni-$NEW_VERSION-x86_64-unknown-linux-musl.tar.gz

# The amd64 archive of an installer image for the release in a dist folder, by the
# builder of the given source tree (the previous release's own, when it has one).
installer_archive() { # source-tree dist version out-dir [platforms]
  SMARTER_CNI_DIST=$2 SMARTER_CNI_OCI_OUT=$4 SMARTER_CNI_OCI_PLATFORMS=${5:-} "$1/packaging/oci/build-image.sh" &&
    [ -f "$4/smarter-cni-installer-$3-amd64.tar" ]
}
log "installer image of $NEW_VERSION (packaging/oci/build-image.sh)"
if installer_archive "$REPO" "$WORK/dist" "$NEW_VERSION" "$WORK/oci" >"$WORK/oci.log" 2>&1; then
  pass "installer archives built: $(cd "$WORK/oci" && echo smarter-cni-installer-*)"
else
  tail -n 30 "$WORK/oci.log"
  fail "installer image built"
  finish
fi
NEW_ARCHIVE=$WORK/oci/smarter-cni-installer-$NEW_VERSION-amd64.tar
NEW_IMAGE=smarter-cni/installer:$NEW_VERSION

log "previous release"
build_prev() {
  PREV_BUILDER=packaging/oci/build-image.sh build_previous_release || return 1
  # Its own builder; one that cannot build the amd64 image alone: this tree's, in its tree.
  local src=$PREV_DIR/src
  installer_archive "$src" "$WORK/prev-dist" "$PREV_VERSION" "$WORK/prev-oci" amd64 && return 0
  echo "the previous release's packaging/oci/build-image.sh failed (above): this tree's builds its image"
  rm -rf "$src/packaging/oci" && cp -r "$REPO/packaging/oci" "$src/packaging/oci" &&
    installer_archive "$src" "$WORK/prev-dist" "$PREV_VERSION" "$WORK/prev-oci" amd64
}
if build_prev >"$WORK/prev.log" 2>&1; then
  pass "previous release $PREV_VERSION built from $(git -C "$REPO" rev-parse --short "$PREV_COMMIT")"
  grep -E "^no earlier commit|^the previous release's" "$WORK/prev.log" | sed 's/^/     /'
else
  tail -n 30 "$WORK/prev.log"
  fail "previous release built"
  finish
fi
PREV_TARBALL=$WORK/prev-dist/smarter-cni-$PREV_VERSION-x86_64-unknown-linux-musl.tar.gz
PREV_ARCHIVE=$WORK/prev-oci/smarter-cni-installer-$PREV_VERSION-amd64.tar
PREV_IMAGE=smarter-cni/installer:$PREV_VERSION

# The release files an installer must land (the dist tarball = what the image carries).
mkdir -p "$WORK/new-root" "$WORK/prev-root"
if ! tar -xzf "$NEW_TARBALL" -C "$WORK/new-root" || ! tar -xzf "$PREV_TARBALL" -C "$WORK/prev-root"; then
  fail "release tarballs unpacked"
  finish
fi
PAYLOAD_NET=$(jq -r '.plugins[0].network' "$WORK/new-root/etc/cni/net.d/10-smarter-cni.conflist")
PAYLOAD_SUBNET=$(jq -r '.plugins[0].subnet' "$WORK/new-root/etc/cni/net.d/10-smarter-cni.conflist")

# ------------------------------------------------------------------ per engine
load_images() {
  local image archive
  for archive in "$NEW_ARCHIVE" "$PREV_ARCHIVE"; do
    image=$NEW_IMAGE
    [ "$archive" = "$PREV_ARCHIVE" ] && image=$PREV_IMAGE
    docker image inspect "$image" >/dev/null 2>&1 || LOADED+=("$ENGINE_HOST $image")
    docker load -i "$archive" >"$WORK/load.log" 2>&1 || { sed 's/^/     /' "$WORK/load.log"; return 1; }
    [ "$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "$image")" = linux/amd64 ] ||
      { echo "     $image is not linux/amd64"; return 1; }
  done
}

# The installer makes the payload's network itself: no other network may hold its subnet
# on this machine (both engines share the host's routes). A leftover with no containers
# (a package test's) is removed.
payload_network_free() {
  local e h
  for e in "${ENGINES[@]}"; do
    h=${e#*:}
    "$DOCKER" -H "$h" network inspect "$PAYLOAD_NET" >/dev/null 2>&1 || continue
    if [ "$("$DOCKER" -H "$h" network inspect -f '{{len .Containers}}' "$PAYLOAD_NET")" = 0 ]; then
      echo "     removing the leftover network $PAYLOAD_NET (no containers) on $h"
      "$DOCKER" -H "$h" network rm "$PAYLOAD_NET" >/dev/null || return 1
    else
      echo "     $h has a network $PAYLOAD_NET with containers: stop what uses it first"
      return 1
    fi
  done
  [ -z "$(ip -4 route show "$PAYLOAD_SUBNET")" ] ||
    { echo "     the host already routes $PAYLOAD_SUBNET: $(ip -4 route show "$PAYLOAD_SUBNET")"; false; }
}
end_node() {
  stop_dns
  remove_test_pods
  rm -rf "$NODE" "$NODE.host"
}
network_made() { [ "$(docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$NET" 2>/dev/null)" = "$SUBNET" ]; }
installed_release() { # root of a release tree: the node's binary, link and files are it
  cmp -s "$BIN" "$1/opt/cni/bin/smarter-cni" && [ "$(readlink "$CNI_DIR/loopback")" = smarter-cni ] &&
    cmp -s "$NODE/etc/cni/net.d/10-smarter-cni.conflist" "$1/etc/cni/net.d/10-smarter-cni.conflist" &&
    cmp -s "$NODE/etc/smarter-cni/dnsmasq.conf" "$1/etc/smarter-cni/dnsmasq.conf"
}
ready_result() { # container description
  case $1 in
    0) pass "$2: ready (probe passes) after $READY_MS ms" ;;
    1) fail "$2: the container exited ($(exit_code "$3")) before it was ready" "$(installer_log "$3")" ;;
    3) fail "$2: inotifywait could not watch the plugin folder" "$(cat "$WORK/inotify.up.err")" ;;
    *) fail "$2: not ready within ${READY_TIMEOUT:-120} s" "$(installer_log "$3")" ;;
  esac
}
# A hard link on the host to the binary in place: the file the runtime had stays readable,
# so the test sees whether anything wrote into it.
hold_binary() { rm -f "$WORK/held"; ln "$BIN" "$WORK/held"; }
replaced_not_written() { # release root of the binary held
  [ "$(stat -c %i "$BIN")" != "$(stat -c %i "$WORK/held")" ] && cmp -s "$WORK/held" "$1/opt/cni/bin/smarter-cni"
}
same_file_back() { [ "$(stat -c %i "$BIN")" = "$(stat -c %i "$WORK/held")" ] && version_is "$PREV_VERSION"; }
still_ready() { running "$1" && probe "$1"; }
not_ready() { ! running "$1" && ! probe "$1"; }
# The upgrade's runner: inotify on the node's plugin folder while the installer runs.
traced_install() { # installer_until_ready's arguments
  local rc
  watch_bin_dir_start "$WORK/inotify.up" || return 3
  installer_until_ready "$@"
  rc=$?
  watch_bin_dir_stop
  return "$rc"
}

fresh_node() {
  log "Docker $ENGINE: fresh install (empty host folders)"
  node_folders "$WORK/d$ENGINE-fresh"
  local c=smarter-ds-fresh-$$ c2=smarter-ds-again-$$ sums
  installer_until_ready "$c" "$NEW_IMAGE" >/dev/null
  ready_result $? "installer $NEW_VERSION" "$c"
  [ -n "$READY_MS" ] && TIMES+=("Docker $ENGINE fresh install: $READY_MS ms")
  check "the probe passed only once the activation record said active $NEW_VERSION" ready_only_when_active "$NEW_VERSION"
  check "binary, loopback link, conflist and dnsmasq.conf are the release's" installed_release "$WORK/new-root"
  host_view || { fail "the installed conflist is readable"; return 1; }
  check "setup made the network $NET $SUBNET" network_made
  check "activation record: state=active version=$NEW_VERSION" record_says state=active "version=$NEW_VERSION"
  sleep 1
  check "the container keeps running, the probe keeps passing" still_ready "$c"
  check "node DNS (dnsmasq with the installed dnsmasq.conf) answers on $GATEWAY" start_dns
  local ok=1 p
  for p in pa pb pc; do start_pod "$p" "host-$p" || ok=0; done
  check "pods pa, pb, pc attached by the installed binary" [ $ok = 1 ]
  check "they resolve each other by name" resolve_each_other pa pb pc
  check "node DNS answers their records" node_dns_resolves pa pb pc
  check "smarter-cni status on the host: healthy" healthy

  log "Docker $ENGINE: operator-edited conflist and dnsmasq.conf, a later install, SIGTERM"
  check "docker stop: the installer exits 0 at once (SIGTERM)" stops_promptly "$c"
  [ -n "${STOP_MS:-}" ] && echo "     stopped in $STOP_MS ms"
  jq '.plugins[0].timeoutSeconds = 20' "$NODE/etc/cni/net.d/10-smarter-cni.conflist" >"$WORK/edited" &&
    cat "$WORK/edited" >"$NODE/etc/cni/net.d/10-smarter-cni.conflist"
  printf '\n# changed on this node\nlog-queries\n' >>"$NODE/etc/smarter-cni/dnsmasq.conf"
  sums=$(sha256sum "$NODE/etc/cni/net.d/10-smarter-cni.conflist" "$NODE/etc/smarter-cni/dnsmasq.conf")
  installer_until_ready "$c2" "$NEW_IMAGE" >/dev/null
  ready_result $? "a later install (restart) with the edits" "$c2"
  installer_log "$c2" >/dev/null
  check "conflist and dnsmasq.conf left byte for byte" diff <(echo "$sums") \
    <(sha256sum "$NODE/etc/cni/net.d/10-smarter-cni.conflist" "$NODE/etc/smarter-cni/dnsmasq.conf")
  check "the log says it kept both (and where this release's versions are)" bash -c \
    "grep -q 'kept /etc/cni/net.d/10-smarter-cni.conflist' '$WORK/$c2.out' && grep -q 'kept /etc/smarter-cni/dnsmasq.conf' '$WORK/$c2.out' &&
     cmp -s '$STATE_DIR/dist/10-smarter-cni.conflist' '$WORK/new-root/etc/cni/net.d/10-smarter-cni.conflist'"
  grep 'kept ' "$WORK/$c2.out" | sed 's/^/     | /'
  check "docker stop: exit 0 at once" stops_promptly "$c2"
  for p in pa pb pc; do pod_call DEL "$p" && docker rm -f "$(cat "$WORK/$p.id")" >/dev/null; done
  end_node
}

# Runs an installer (through the runner: installer_until_ready or traced_install) under
# the workers' load; the result lines of a landing.
land_under_load() { # tag runner container image version-before version-after root-after root-before [docker-run options...]
  local tag=$1 runner=$2 c=$3 image=$4 before=$5 after=$6 root=$7 old_root=$8
  shift 8
  hold_binary
  under_load "$tag" "$runner" "$c" "$image" "$@"
  ready_result "$LOAD_RC" "installer $after under load ($LOAD_SUMMARY)" "$c"
  check "zero failed CNI calls while the installer ran" no_failed_calls "$tag"
  check "$BIN is $after" version_is "$after"
  check "the binary in place before was replaced, never written into (its file is unchanged)" replaced_not_written "$old_root"
  check "the previous binary ($before) is kept in var/lib/smarter-cni/previous" bash -c \
    "[ \"\$('$STATE_DIR/previous/smarter-cni' --version)\" = 'smarter-cni $before' ]"
  check "activation record: state=active version=$after" record_says state=active "version=$after"
  check "the probe passed only once the activation record said active $after" ready_only_when_active "$after"
  check "binary, loopback link, conflist and dnsmasq.conf are $after's" installed_release "$root"
}

upgrade_node() {
  log "Docker $ENGINE: a node baked with $PREV_VERSION (binary, link, files; setup at boot)"
  node_folders "$WORK/d$ENGINE-up"
  if ! bake_release "$PREV_TARBALL" || ! host_view; then
    fail "node baked with $PREV_VERSION"
    return 1
  fi
  check "$PREV_VERSION's setup on the host" host_setup "$BIN"
  check "it made the network $NET $SUBNET" network_made
  check "node DNS answers on $GATEWAY" start_dns
  attach_old_pods

  log "Docker $ENGINE: upgrade to $NEW_VERSION under load (inotify on the plugin folder)"
  local c=smarter-ds-up-$$
  land_under_load up traced_install "$c" "$NEW_IMAGE" "$PREV_VERSION" "$NEW_VERSION" "$WORK/new-root" "$WORK/prev-root"
  [ -n "$READY_MS" ] && TIMES+=("Docker $ENGINE upgrade under load: $READY_MS ms")
  check "inotify: smarter-cni landed by a rename onto its name, nothing wrote into it" \
    landed_by_rename_in_folder "$WORK/inotify.up"
  after_upgrade
  check "docker stop: exit 0 at once" stops_promptly "$c"

  log "Docker $ENGINE: downgrade to $PREV_VERSION under load (the previous release's image)"
  c=smarter-ds-down-$$
  land_under_load down installer_until_ready "$c" "$PREV_IMAGE" "$NEW_VERSION" "$PREV_VERSION" "$WORK/prev-root" "$WORK/new-root"
  [ -n "$READY_MS" ] && TIMES+=("Docker $ENGINE downgrade under load: $READY_MS ms")
  after_downgrade
  check "docker stop: exit 0 at once" stops_promptly "$c"

  log "Docker $ENGINE: a failing health check (SMARTER_CNI_HEALTH_REQUIRE asks for node DNS, which is down)"
  stop_dns
  c=smarter-ds-fail-$$
  hold_binary
  installer_run "$c" "$NEW_IMAGE" -e 'SMARTER_CNI_HEALTH_REQUIRE=config loopback network dns'
  local rc
  rc=$(timeout 120 "$DOCKER" -H "$ENGINE_HOST" wait "$c")
  installer_log "$c" >/dev/null
  check "the installer exited 1 (got ${rc:-none})" [ "${rc:-}" = 1 ]
  check "not ready: the container is not running, the probe fails" not_ready "$c"
  check "its log says: FAILED its health check, the failing part (dns), ROLLED BACK, how to retry" bash -c \
    "grep -q 'FAILED its health check' '$WORK/$c.out' && grep -q '  - dns: ' '$WORK/$c.out' &&
     grep -q 'ROLLED BACK' '$WORK/$c.out' && grep -q 'retry-failed' '$WORK/$c.out'"
  echo "     what the operator sees (kubectl logs):"
  sed 's/^/     | /' "$WORK/$c.out"
  check "$BIN is the previous binary ($PREV_VERSION) again: the very file that was in place" same_file_back
  check "activation record: state=rolled-back" record_says state=rolled-back
  previous_binary_works
  "$DOCKER" -H "$ENGINE_HOST" start "$c" >/dev/null
  rc=$(timeout 60 "$DOCKER" -H "$ENGINE_HOST" wait "$c")
  installer_log "$c" >/dev/null
  check "restarted (as the kubelet does): exits 1 again without landing the failed release" bash -c \
    "[ '${rc:-}' = 1 ] && grep -q 'failed its health check on this node before' '$WORK/$c.out' &&
     [ \"\$('$BIN' --version)\" = 'smarter-cni $PREV_VERSION' ]"
  for p in pb pc; do docker rm -f "$(cat "$WORK/$p.id")" >/dev/null 2>&1; done
  end_node
}

TIMES=()
for e in "${ENGINES[@]}"; do
  ENGINE=${e%%:*} ENGINE_HOST=${e#*:}
  log "node on Docker $ENGINE ($ENGINE_HOST)"
  if load_images; then pass "installer archives load (docker load), linux/amd64: $NEW_IMAGE, $PREV_IMAGE"; else
    fail "installer archives load on Docker $ENGINE"
    continue
  fi
  if payload_network_free; then pass "the payload's network $PAYLOAD_NET ($PAYLOAD_SUBNET) is free"; else
    fail "the payload's network $PAYLOAD_NET ($PAYLOAD_SUBNET) is free"
    continue
  fi
  fresh_node
  upgrade_node
done

echo
echo "container start -> ready (readiness probe passes):"
printf '  %s\n' "${TIMES[@]}"
echo "$(basename "$0" .sh): took $((SECONDS - started)) s"
finish
