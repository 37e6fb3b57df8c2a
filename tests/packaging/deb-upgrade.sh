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
CNI_DIR=/opt/cni/bin
BIN=$CNI_DIR/smarter-cni
LABEL=smarter-cni-test-deb=1
# shellcheck source=tests/packaging/lib/upgrade-under-load.sh
. "$REPO/tests/packaging/lib/upgrade-under-load.sh"

begin_test deb-test

# ------------------------------------------------------------------ cleanup
cleanup() {
  stop_dns
  stop_load
  if dpkg-query -W -f='${db:Status-Abbrev}' smarter-cni 2>/dev/null | grep -q '^[a-z][^n]'; then
    SMARTER_CNI_HEALTH_CHECK=no dpkg --purge smarter-cni >/dev/null 2>&1 || true
  fi
  remove_test_pods
  rm -rf "$WORK"
}
trap cleanup EXIT

# ------------------------------------------------------------------ tools
# dnsmasq-base satisfies the package's Depends (dpkg -i checks it).
extra=()
dpkg-query -W -f='${db:Status-Abbrev}' dnsmasq-base 2>/dev/null | grep -q '^ii' ||
  dpkg-query -W -f='${db:Status-Abbrev}' dnsmasq 2>/dev/null | grep -q '^ii' || extra=(dnsmasq-base)
install_tools lintian:lintian strace:strace jq:jq shellcheck:shellcheck dpkg-deb:dpkg \
  dnsmasq:dnsmasq-base dig:bind9-dnsutils -- "${extra[@]}"

# ------------------------------------------------------------------ builds
build_release
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
    grep -q '^-rwxr-xr-x root/root .* \./usr/lib/smarter-cni/activate$' <<<"$c" &&
    [ "$(dpkg-deb -f "$deb" Depends)" = "dnsmasq-base | dnsmasq" ] &&
    [ "$(dpkg-deb -f "$deb" Recommends)" = "docker.io" ] &&
    dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qx /etc/cni/net.d/10-smarter-cni.conflist &&
    ! grep -v ' root/root ' <<<"$c" | grep -q . &&
    containerd_tree_ok "$c"
}
# The containerd variant's files of images/rootfs-containerd in /usr/share/smarter-cni/
# containerd (not conffiles), but its hostnames unit, installed in /usr/lib/systemd/system.
containerd_tree_ok() {
  local c=$1 f want
  while read -r f; do
    case $f in
      */smarter-cni-hostnames.service) want=./$f ;;
      *) want=./usr/share/smarter-cni/containerd/${f##*/} ;;
    esac
    grep -qF " $want" <<<"$c" || { echo "missing ${want#.}"; return 1; }
  done < <(cd "$REPO/images/rootfs-containerd" && find . -type f -printf '%P\n')
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
  "shellcheck -s sh '$REPO'/packaging/deb/{preinst,postinst,prerm,postrm} '$REPO/packaging/activate' &&
   shellcheck -x -P SCRIPTDIR '$REPO/packaging/deb/build-deb.sh' '$REPO/tests/packaging/deb-upgrade.sh'"

# The previous release: the newest earlier commit with packaging/deb, built with its own
# scripts; without one, HEAD's sources with the version <version>-prev.
log "previous release"
PREV_DEB_VERSION=${NEW_VERSION%%-*}~prev-1
build_prev() {
  build_previous_release || return 1
  local builder=$PREV_DIR/src/packaging/deb/build-deb.sh
  [ -x "$builder" ] || builder=$REPO/packaging/deb/build-deb.sh
  SMARTER_CNI_TARGET_DIR=$PREV_DIR/target SMARTER_CNI_DEB_OUT=$WORK/prev-deb \
    SMARTER_CNI_DEB_ARCHES=amd64 SMARTER_CNI_DEB_VERSION=$PREV_DEB_VERSION "$builder"
}
if build_prev >"$WORK/prev.log" 2>&1; then
  pass "previous release $PREV_DEB_VERSION built from $(git -C "$REPO" rev-parse --short "$PREV_COMMIT")"
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
remove_test_pods
node_setup

dpkg_i() { # log-name dpkg-arguments...
  local name=$1
  shift
  logged "$name" dpkg "$@"
}
status_is() { [ "$(dpkg-query -W -f='${Status}' smarter-cni 2>/dev/null)" = "$1" ]; }

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

check "node DNS (dnsmasq) answers on $GATEWAY" start_dns

attach_old_pods

# ------------------------------------------------------------------ upgrade under load
log "upgrade to $NEW_DEB_VERSION under load (dpkg -i under strace)"
package_run_under_load up "$NEW_VERSION" "dpkg -i $NEW_DEB_VERSION" \
  strace -f -qq -o "$WORK/strace.up" -e trace=open,openat,rename,renameat,renameat2 dpkg -i "$NEW_DEB"
check "dpkg replaced the binary by rename (smarter-cni.dpkg-new -> smarter-cni), nothing opened it for writing" \
  landed_by_rename "$BIN.dpkg-new" "$WORK/strace.up"
check "the previous binary is kept in /var/lib/smarter-cni/previous" bash -c \
  "[ \"\$(/var/lib/smarter-cni/previous/smarter-cni --version)\" = 'smarter-cni $PREV_VERSION' ] && [ ! -e /opt/cni/bin/.smarter-cni.previous ]"
after_upgrade

# ------------------------------------------------------------------ downgrade under load
log "downgrade to $PREV_DEB_VERSION under load"
package_run_under_load down "$PREV_VERSION" "dpkg -i $PREV_DEB_VERSION (downgrade)" dpkg -i "$PREV_DEB"
after_downgrade

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
previous_binary_works
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
