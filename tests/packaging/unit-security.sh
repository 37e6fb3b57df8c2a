#!/usr/bin/env bash
# Sandboxing of the gateway's units (issue 12), checked offline in seconds, for both
# variants: Docker (images/rootfs) and containerd (images/rootfs with the units of
# images/rootfs-containerd over it, issue 13):
#   - `systemd-analyze security --offline=yes` rates each hardened unit at or below its
#     threshold (THRESHOLDS below, each with what the unit keeps and why);
#   - `systemd-analyze verify` of those units passes with no output at all (warnings count).
# Both run in a scratch root per variant holding this machine's systemd units, the units
# under test with their drop-in folders, and stand-ins for every executable the units name (the real
# ones, /opt/cni/bin/smarter-cni and friends, are not on a CI machine; verify refuses a unit
# whose ExecStart= is missing). That the hardened units still start and answer is proven
# in the booted image (tests/images/guest/usr/lib/smarter-cni/boot-test).
#
# Usage: tests/packaging/unit-security.sh   (Debian 12: systemd 252; installs systemd with
# apt if systemd-analyze is missing). Prints "unit-security: N passed, M failed".
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
UNITS=$REPO/images/rootfs/usr/lib/systemd/system
UNITS_CONTAINERD=$REPO/images/rootfs-containerd/usr/lib/systemd/system
export PATH=$PATH:/usr/sbin:/sbin
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Exposure thresholds, in systemd-analyze's own unit for --threshold: tenths (25 = 2.5).
# Docker variant (images/rootfs):
# shellcheck disable=SC2034 # read through a nameref in check_variant
declare -A THRESHOLDS=(
  # Node DNS faces every pod. Issue 12's target is 2.5; it reaches 1.5. It keeps what
  # serving DNS on the pod bridge needs: the host's network (no PrivateNetwork=, no
  # IPAddressDeny=: upstream servers are whatever /etc/resolv.conf names), AF_INET/AF_INET6,
  # AF_NETLINK (bind-dynamic), AF_UNIX (syslog), CAP_NET_BIND_SERVICE (port 53) as its only
  # capability, held as an ambient one by a transient non-root user, and the host's user
  # namespace (a capability in a private one would not count for port 53).
  [smarter-cni-dns.service]=25
  # Reaches 0.6. Root by uid only (it writes root's files: /etc/cni/net.d, the loopback
  # link in /opt/cni/bin, /run/smarter-cni), with no capability at all, in a private user
  # namespace, without network but unix sockets (Docker's socket, which is root-equivalent
  # anyway), umask 0022 (the records folders must be readable by node DNS's user).
  [smarter-cni-setup.service]=8
  # Reaches 1.2. Root with CAP_SYS_ADMIN as its only capability, for sethostname(2): so
  # also the host's UTS and user namespaces and sethostname in the syscall filter; all of
  # /etc writable (/etc/hostname and /etc/hosts are replaced through a temporary file
  # beside them); no network.
  [smarter-gateway-provision.service]=15
)
# containerd variant: the units of images/rootfs-containerd; the others are the same files
# as in the Docker variant and checked above.
# shellcheck disable=SC2034 # read through a nameref in check_variant
declare -A THRESHOLDS_CONTAINERD=(
  # Bridge-mode setup reaches 1.4 (systemd 252). It keeps CAP_NET_ADMIN as its only
  # capability (bridge, addresses, nftables base ruleset through netlink and `nft -f -`),
  # hence the host's user and network namespaces (no PrivateUsers=, no PrivateNetwork=);
  # AF_NETLINK besides AF_UNIX, no IP traffic (IPAddressDeny=any); writable: the CNI
  # folders, /run/smarter-cni, its state directory /var/lib/smarter-cni and, inside the
  # otherwise read-only /proc/sys, only /proc/sys/net/ipv4/ip_forward.
  [smarter-cni-setup.service]=15
  # Reaches 0.5: root by uid only (containerd's state under
  # /var/lib/rancher/k3s/agent is root's, mode 0700), no capability at all, private user
  # and network namespaces, unix sockets only, writes only /run/smarter-cni.
  [smarter-cni-hostnames.service]=8
)

passed=0
failed=0
pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf 'FAIL %s\n' "$1"; shift; [ $# -eq 0 ] || printf '%s\n' "$@" | sed 's/^/     /'; failed=$((failed + 1)); }

if ! command -v systemd-analyze >/dev/null; then
  echo "unit-security: apt-get install systemd"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null; }; } ||
    { fail "tools: systemd-analyze (apt-get install systemd failed)"; echo "unit-security: $passed passed, $failed failed"; exit 1; }
fi
version=$(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')

# ---------------------------------------------------------------- one variant
# check_variant <label> <threshold array name> <unit folder>...: the folders' units (later
# folders replace same-named files of earlier ones) in a scratch root, then exposure and
# verify of the units the array names.
check_variant() {
  local label=$1 unit limit shown out rc score exe
  local -n limits=$2
  shift 2
  local root=$WORK/root-$label
  mkdir -p "$root/usr/lib/systemd" "$root/etc"
  cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/"
  local d
  for d in "$@"; do cp -R "$d/." "$root/usr/lib/systemd/system/"; done
  # Stand-ins for every executable: absolute Exec*= paths as they are, bare names (PATH
  # lookups, e.g. dnsmasq) in /usr/bin. Prefixes such as '+' and '-' are not part of the path.
  while read -r exe; do
    [ -e "$root$exe" ] && continue
    mkdir -p "$root$(dirname "$exe")"
    printf '#!/bin/sh\nexit 0\n' >"$root$exe"
    chmod 0755 "$root$exe"
  done < <(find "$@" -type f -exec sed -n \
    -e 's/^Exec[A-Za-z]*=[-@:+!|]*\(\/[^ ]*\).*/\1/p' \
    -e 's/^Exec[A-Za-z]*=[-@:+!|]*\([^/ ][^ ]*\).*/\/usr\/bin\/\1/p' {} + | sort -u)
  [ -e "$root/usr/lib/systemd/system/docker.service" ] ||
    printf '[Unit]\nDescription=stand-in\n[Service]\nExecStart=/bin/sh\n' >"$root/usr/lib/systemd/system/docker.service"

  # exposure
  local units=()
  for unit in $(printf '%s\n' "${!limits[@]}" | sort); do
    limit=${limits[$unit]}
    shown="$((limit / 10)).$((limit % 10))"
    if [ ! -f "$root/usr/lib/systemd/system/$unit" ]; then
      fail "$label: security: $unit: no such unit"
      continue
    fi
    units+=("usr/lib/systemd/system/$unit")
    out=$(cd "$root" && systemd-analyze security --offline=yes --root="$root" --threshold="$limit" \
      --no-pager "$unit" 2>&1)
    rc=$?
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out" | tail -n1)
    if [ -z "$score" ]; then
      fail "$label: security: $unit: no score (systemd-analyze exit $rc)" "$out"
    elif [ "$rc" -ne 0 ]; then
      fail "$label: security: $unit exposure $score > $shown (systemd $version)" "$(grep '✗' <<<"$out")"
    else
      pass "$label: security: $unit exposure $score <= $shown (systemd $version)"
    fi
  done

  # verify
  out=$(cd "$root" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no --root="$root" "${units[@]}" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
    pass "$label: verify: ${#units[@]} units, no warnings (systemd $version)"
  else
    fail "$label: verify (exit $rc)" "${out//$root/}"
  fi
}

check_variant docker THRESHOLDS "$UNITS"
check_variant containerd THRESHOLDS_CONTAINERD "$UNITS" "$UNITS_CONTAINERD"

echo "unit-security: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
