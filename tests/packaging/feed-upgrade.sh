#!/usr/bin/env bash
# The Yocto recipe's package (issue 8): the upgrade procedure of its pkg_postinst and
# pkg_prerm, as OE-Core writes them into rpm and ipk feed packages, on this machine's
# real filesystem, under load, against the private Docker 26.1 test engine.
#
# No bitbake build here (hours for a Rust toolchain): the scriptlets are rendered from
# the recipe (tests/packaging/render-yocto-scriptlets.py, as package_rpm/package_ipk do)
# and put with the recipe's ${PN} files that matter here (the staged binary,
# /usr/lib/smarter-cni/activate, the tmpfiles.d entry, the runtime directory) into a real rpm package that Debian's rpm 4.18 installs:
#
#  - "previous release": the binary of the newest earlier commit with packaging/deb
#    (as deb-upgrade.sh), packaged with this recipe's scriptlets (the feed layout is new);
#  - install; 3 pods attached by it the way cri-dockerd does;
#  - upgrade under load (`rpm -U` under strace): zero failed CNI calls, the runtime binary
#    replaced by rename only, old pods resolve each other, the new version CHECKs and DELs
#    a pod the old one added; then the same for a downgrade (`rpm -U --oldpackage`);
#  - a failed health check: rpm only warns (it does not fail on %post), so the test checks
#    what a fleet tool checks: the previous binary is back and works,
#    /var/lib/smarter-cni/failed/version names the rejected one; the printed retry command
#    lands it once the cause is fixed;
#  - opkg's way of calling the scripts: postinst "configure", the old package's prerm
#    "upgrade <version>" (must leave the runtime binary) and "remove";
#  - image build ($D set): only the binary and the loopback link land in the image root;
#  - `rpm -e`: runtime binary and link gone, pods untouched; the machine as before.
#
# The runtime directory is ${libexecdir}/cni (the recipe's CNI_BINDIR); the package's
# /opt/cni/bin link to it is left out (on this machine /opt/cni/bin may be a directory).
# Subnet 172.34.0.0/16, network smarter-feed-test, containers labelled
# smarter-cni-test-feed=1; removed at the start and the end of every run.
# Usage: tests/packaging/feed-upgrade.sh   (root, Debian 12; after scripts/engines.sh start)
# shellcheck disable=SC2317 # the trap calls cleanup
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
CACHE=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}
TARGET_DIR=${SMARTER_CNI_TARGET_DIR:-$CACHE/target}
PREV_DIR=$CACHE/deb-prev
RECIPE=$REPO/yocto/meta-smarter-cni/recipes-containers/smarter-cni/smarter-cni_0.1.0.bb
NET=smarter-feed-test
SUBNET=172.34.0.0/16
GATEWAY=172.34.0.1
LABEL=smarter-cni-test-feed=1
STATE=/var/lib/smarter-cni
ACTIVATE=/usr/lib/smarter-cni/activate
TMPFILES=/usr/lib/tmpfiles.d/smarter-cni.conf
# shellcheck source=tests/packaging/lib/upgrade-under-load.sh
. "$REPO/tests/packaging/lib/upgrade-under-load.sh"

begin_test feed-test
RPMDB=$WORK/rpmdb
rpm_() { rpm --dbpath "$RPMDB" --force-debian "$@"; }

cleanup() {
  stop_dns
  stop_load
  if [ -d "$RPMDB" ] && rpm_ -q smarter-cni >/dev/null 2>&1; then
    SMARTER_CNI_HEALTH_CHECK=no rpm_ -e --nodeps smarter-cni >/dev/null 2>&1 || true
  fi
  remove_test_pods
  [ -z "${STATE_EXISTED:-}" ] || [ "$STATE_EXISTED" = yes ] || rm -rf "$STATE"
  rm -rf "$WORK"
}
trap cleanup EXIT

install_tools rpm:rpm rpmbuild:rpm cpio:cpio strace:strace jq:jq dnsmasq:dnsmasq-base dig:bind9-dnsutils

# ------------------------------------------------------------------ scriptlets
log "scriptlets rendered from $(basename "$RECIPE")"
if vars=$("$REPO/tests/packaging/render-yocto-scriptlets.py" "$RECIPE" "$WORK/scripts" 2>&1); then
  pass "rendered pkg_postinst and pkg_prerm for rpm and ipk"
else
  fail "render the recipe's scriptlets" "$vars"
  finish
fi
eval "$vars" # CNI_BINDIR, SMARTER_CNI_STAGED
CNI_DIR=$CNI_BINDIR
BIN=$CNI_DIR/smarter-cni
check "shellcheck: the rendered scriptlets and packaging/activate" \
  shellcheck -s sh "$WORK"/scripts/* "$REPO/packaging/activate"
check "pkg_postinst never exits 0 (systemd.bbclass appends its part after it)" \
  bash -c "! grep -qE '\bexit 0\b' '$WORK/scripts/ipk-postinst'"

# ------------------------------------------------------------------ builds
log "static binaries (scripts/build-dist.sh, incremental in $TARGET_DIR)"
if ! SMARTER_CNI_TARGETS=x86_64-unknown-linux-musl SMARTER_CNI_TARGET_DIR=$TARGET_DIR \
  SMARTER_CNI_DIST=$WORK/dist "$REPO/scripts/build-dist.sh" >"$WORK/build.log" 2>&1; then
  tail -n 30 "$WORK/build.log"
  fail "static binary built"
  finish
fi
NEW_VERSION=$(sed -n '/^\[package\]/,/^\[/{s/^version *= *"\([^"]*\)".*/\1/p}' "$REPO/Cargo.toml" | head -n1)
NEW_BIN=$TARGET_DIR/x86_64-unknown-linux-musl/release/smarter-cni
if build_previous_release >"$WORK/prev.log" 2>&1; then
  pass "previous release $PREV_VERSION built from $(git -C "$REPO" rev-parse --short "$PREV_COMMIT")"
else
  tail -n 30 "$WORK/prev.log"
  fail "previous release built"
  finish
fi

# An rpm of the recipe's ${PN} files with its scriptlets, as package_rpm.bbclass makes it.
# Each release carries its own activate (the previous one's from its source tree: older
# releases have the procedure in the script, newer ones in the binary).
build_rpm() { # version binary activate
  local top=$WORK/rpmbuild-$1
  mkdir -p "$top/root"
  install -D -m 0755 "$2" "$top/root$SMARTER_CNI_STAGED"
  install -D -m 0755 "$3" "$top/root$ACTIVATE"
  install -D -m 0644 "$REPO/images/rootfs/usr/lib/tmpfiles.d/smarter-cni.conf" "$top/root$TMPFILES"
  install -d "$top/root$CNI_BINDIR"
  {
    printf 'Name: smarter-cni\nVersion: %s\nRelease: r0\nSummary: smarter-cni (feed test)\n' "${1//-/\~}"
    printf 'License: Apache-2.0\nAutoReqProv: no\n%%description\nsmarter-cni feed test package\n'
    printf '%%install\ncp -a %s/. %%{buildroot}/\n' "$top/root"
    printf '%%files\n%s\n%s\n%s\n' "$SMARTER_CNI_STAGED" "$ACTIVATE" "$TMPFILES"
    printf '%%dir %s\n' "$CNI_BINDIR" "$(dirname "$SMARTER_CNI_STAGED")" "$(dirname "$ACTIVATE")"
    printf '%%post\n%s\n%%preun\n%s\n' "$(cat "$WORK/scripts/rpm-post")" "$(cat "$WORK/scripts/rpm-preun")"
  } >"$top/smarter-cni.spec"
  rpmbuild -bb --define "_topdir $top" --define '__os_install_post %{nil}' \
    --define 'debug_package %{nil}' "$top/smarter-cni.spec" >"$top/build.log" 2>&1 &&
    cp "$top"/RPMS/*/smarter-cni-*.rpm "$WORK/"
}
NEW_RPM_VERSION=${NEW_VERSION//-/\~}-r0
PREV_RPM_VERSION=${PREV_VERSION//-/\~}-r0
PREV_ACTIVATE=$PREV_DIR/src/packaging/activate
[ -f "$PREV_ACTIVATE" ] || PREV_ACTIVATE=$REPO/packaging/activate
if build_rpm "$PREV_VERSION" "$PREV_BIN" "$PREV_ACTIVATE" && build_rpm "$NEW_VERSION" "$NEW_BIN" "$REPO/packaging/activate"; then
  pass "rpm packages $PREV_RPM_VERSION and $NEW_RPM_VERSION built"
else
  cat "$WORK"/rpmbuild-*/build.log
  fail "rpm packages built"
  finish
fi
PREV_RPM=$(echo "$WORK"/smarter-cni-"$PREV_RPM_VERSION".*.rpm)
NEW_RPM=$(echo "$WORK"/smarter-cni-"$NEW_RPM_VERSION".*.rpm)
check "rpm orders $PREV_RPM_VERSION before $NEW_RPM_VERSION" \
  bash -c "[ \"\$(rpm --eval '%{lua: print(rpm.vercmp(\"$PREV_RPM_VERSION\", \"$NEW_RPM_VERSION\"))}')\" = -1 ]"

# ------------------------------------------------------------------ the node
snapshot() {
  find "$CNI_BINDIR" "$(dirname "$SMARTER_CNI_STAGED")" "$(dirname "$ACTIVATE")" "$STATE" "$TMPFILES" \
    /opt/cni 2>/dev/null | LC_ALL=C sort
}
for path in "$BIN" "$SMARTER_CNI_STAGED" "$ACTIVATE" "$TMPFILES"; do
  if [ -e "$path" ]; then
    fail "$path exists and this test would replace it; remove it first (a package of smarter-cni installed?)"
    finish
  fi
done
if [ -e "$STATE" ]; then STATE_EXISTED=yes; else STATE_EXISTED=no; fi
snapshot >"$WORK/before.txt"
remove_test_pods
node_setup
mkdir -p "$RPMDB"

log "install $PREV_RPM_VERSION (previous release)"
if logged install-prev rpm_ -i --nodeps "$PREV_RPM" && ! grep -q 'scriptlet failed' "$WORK/install-prev.log"; then
  pass "rpm -i $PREV_RPM_VERSION"
else
  fail "rpm -i $PREV_RPM_VERSION" "$(cat "$WORK/install-prev.log")"
  finish
fi
check "%post landed the runtime binary ($PREV_VERSION) and the loopback link; no package owns them" bash -c \
  "[ \"\$('$BIN' --version)\" = 'smarter-cni $PREV_VERSION' ] && [ \"\$(readlink '$CNI_DIR/loopback')\" = smarter-cni ] &&
   ! rpm --dbpath '$RPMDB' -qf '$BIN' >/dev/null 2>&1"
check "%post ran setup: network $NET $SUBNET exists" \
  bash -c "[ \"\$('$DOCKER' -H '$D26_HOST' network inspect -f '{{(index .IPAM.Config 0).Subnet}}' $NET)\" = $SUBNET ]"
check "node DNS (dnsmasq) answers on $GATEWAY" start_dns

attach_old_pods

# ------------------------------------------------------------------ upgrade under load
log "upgrade to $NEW_RPM_VERSION under load (rpm -U under strace)"
package_run_under_load up "$NEW_VERSION" "rpm -U $NEW_RPM_VERSION" \
  strace -f -qq -o "$WORK/strace.up" -e trace=open,openat,rename,renameat,renameat2 \
  rpm --dbpath "$RPMDB" --force-debian -U --nodeps "$NEW_RPM"
check "the runtime binary was replaced by rename (.smarter-cni.new -> smarter-cni), never opened for writing" \
  landed_by_rename "$CNI_DIR/.smarter-cni.new" "$WORK/strace.up"
check "the previous binary is kept in $STATE/previous" bash -c \
  "[ \"\$('$STATE/previous/smarter-cni' --version)\" = 'smarter-cni $PREV_VERSION' ] && [ ! -e '$CNI_DIR/.smarter-cni.previous' ]"
after_upgrade

# ------------------------------------------------------------------ downgrade under load
log "downgrade to $PREV_RPM_VERSION under load (rpm -U --oldpackage)"
package_run_under_load down "$PREV_VERSION" "rpm -U --oldpackage $PREV_RPM_VERSION" \
  rpm --dbpath "$RPMDB" --force-debian -U --oldpackage --nodeps "$PREV_RPM"
after_downgrade

# ------------------------------------------------------------------ failed health check
log "a failed health check rolls back"
# The operator requires node DNS (/etc/default/smarter-cni or the environment), and
# node DNS is down: the check of the new version fails.
stop_dns
SMARTER_CNI_HEALTH_REQUIRE="config loopback network dns" logged failed \
  rpm_ -U --nodeps "$NEW_RPM"
check "rpm warns that %post failed" grep -q 'scriptlet failed, exit status 1' "$WORK/failed.log"
check "it says so: FAILED, the failing part, ROLLED BACK" bash -c \
  "grep -q 'FAILED its health check' '$WORK/failed.log' && grep -q '  - dns: ' '$WORK/failed.log' && grep -q 'ROLLED BACK' '$WORK/failed.log'"
check "$BIN is the previous binary ($PREV_VERSION)" version_is "$PREV_VERSION"
check "$STATE/failed/version names the rejected version" grep -qx "smarter-cni $NEW_VERSION" "$STATE/failed/version"
echo "     what the operator sees (rpm -U output):"
sed -n '/^smarter-cni:/,$p' "$WORK/failed.log" | sed 's/^/     | /'
previous_binary_works
retry=$(sed -n 's/^.*(rpm feeds): //p' "$WORK/failed.log" | head -n1)
check "the printed retry command lands $NEW_VERSION once the cause is fixed" bash -c \
  "[ -n '$retry' ] && $retry >'$WORK/retry.log' 2>&1 && [ \"\$('$BIN' --version)\" = 'smarter-cni $NEW_VERSION' ] && [ ! -e '$STATE/failed' ]"

# ------------------------------------------------------------------ opkg's calls
log "opkg's calls of the same scripts (postinst configure; prerm upgrade)"
check "ipk prerm 'upgrade $NEW_VERSION' (the old package's, during an opkg upgrade) leaves the runtime binary" \
  bash -c "sh '$WORK/scripts/ipk-prerm' upgrade '$NEW_VERSION' && [ \"\$('$BIN' --version)\" = 'smarter-cni $NEW_VERSION' ] && [ -L '$CNI_DIR/loopback' ]"
check "ipk postinst 'configure' with the binary in place: nothing to land, health check passes" \
  bash -c "sh '$WORK/scripts/ipk-postinst' configure >'$WORK/ipk-configure.log' 2>&1 &&
    grep -q 'is already smarter-cni $NEW_VERSION' '$WORK/ipk-configure.log' && grep -q 'health check passed' '$WORK/ipk-configure.log'"
IMG=$WORK/image-root
mkdir -p "$IMG"
check "image build (\$D set): the ipk postinst lands the binary and the link in the image root, nothing else" \
  bash -c "cd '$IMG' && rpm2cpio '$NEW_RPM' | cpio -idm --quiet &&
    D='$IMG' sh '$WORK/scripts/ipk-postinst' configure &&
    cmp -s '$IMG$BIN' '$NEW_BIN' && [ \"\$(readlink '$IMG$CNI_DIR/loopback')\" = smarter-cni ] &&
    [ -z \"\$(find '$IMG' -newer '$IMG$BIN' ! -type d ! -path '$IMG$CNI_DIR/loopback')\" ]"
check "image build: a second run changes nothing" bash -c \
  "before=\$(stat -c %i '$IMG$BIN') && D='$IMG' sh '$WORK/scripts/ipk-postinst' configure && [ \"\$(stat -c %i '$IMG$BIN')\" = \"\$before\" ]"

# ------------------------------------------------------------------ remove
log "remove"
logged remove rpm_ -e smarter-cni
check "rpm -e: runtime binary, loopback link, staged copy, runtime directory gone" bash -c \
  "[ ! -e '$BIN' ] && [ ! -L '$CNI_DIR/loopback' ] && [ ! -e '$SMARTER_CNI_STAGED' ] && [ ! -e '$CNI_DIR' ] && ! rpm --dbpath '$RPMDB' -q smarter-cni >/dev/null 2>&1"
check "removing the package left the pods attached" resolves_all pb pc
for p in pb pc; do docker rm -f "$(cat "$WORK/$p.id")" >/dev/null; done
[ "$STATE_EXISTED" = yes ] || rm -rf "$STATE"
snapshot >"$WORK/after.txt"
check "the machine is as before (runtime directory, staged copy, state, /opt/cni)" diff "$WORK/before.txt" "$WORK/after.txt"

finish
