#!/usr/bin/env bash
# shellcheck disable=SC2015 # pass() always succeeds: "A && pass || fail" is safe here
# Unit tests of the first-boot provisioning script (images/rootfs/usr/lib/smarter-cni/provision),
# run on the host in temporary roots (SMARTER_PROVISION_ROOT): bad inputs, good inputs,
# re-provisioning, nothing half-written. Also: shellcheck, systemd-analyze verify of the unit.
# Usage: tests/images/provision-test.sh
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
PROV=$REPO/images/rootfs/usr/lib/smarter-cni/provision
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export PATH=$PATH:/usr/sbin:/sbin

passed=0
failed=0
pass() { printf 'ok   %s\n' "$1"; passed=$((passed + 1)); }
fail() { printf 'FAIL %s\n' "$1"; shift; [ $# -eq 0 ] || printf '     %s\n' "$@"; failed=$((failed + 1)); }

TOKEN=K10$(printf 'a%.0s' {1..64})::server:0123456789abcdef0123456789abcdef
GOOD="K3S_URL=https://k3s.example.net:6443
K3S_TOKEN=$TOKEN
NODE_NAME=gw-0042
NODE_LABELS=site=berlin,example.com/tier=edge"

n=0
newroot() { # a fresh temporary root with a pre-existing /etc/hosts
  n=$((n + 1))
  R=$WORK/root$n
  mkdir -p "$R/boot/firmware" "$R/etc"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\tlocalhost-old\n' >"$R/etc/hosts"
  F=$R/boot/firmware/smarter-gateway.conf
}
run() { SMARTER_PROVISION_ROOT=$R "$PROV" >"$WORK/out" 2>&1; }
conf() { echo "$R/etc/rancher/k3s/config.yaml.d/50-provisioned.yaml"; }
nothing_written() { # no config, no state, no hostname, hosts untouched, no temp files
  [ ! -e "$R/etc/rancher" ] && [ ! -e "$R/var/lib/smarter-gateway" ] && [ ! -e "$R/etc/hostname" ] &&
    grep -q localhost-old "$R/etc/hosts" && [ -z "$(find "$R" -name '.*.??????' -print -quit)" ]
}

# ---------------------------------------------------------------- static checks
if shellcheck "$PROV" >"$WORK/sc" 2>&1; then pass "shellcheck provision"; else fail "shellcheck provision" "$(cat "$WORK/sc")"; fi
if command -v systemd-analyze >/dev/null; then
  # In a scratch root holding the system's units, the provisioning unit, its agent drop-in,
  # the agent unit and stand-ins for the executables (warnings count as errors).
  ur=$WORK/unitroot
  mkdir -p "$ur/usr/lib/systemd" "$ur/usr/lib/smarter-cni" "$ur/opt/cni/bin" "$ur/usr/local/bin" "$ur/usr/sbin"
  cp -a /usr/lib/systemd/system "$ur/usr/lib/systemd/"
  cp -a "$REPO/images/rootfs/usr/lib/systemd/system/." "$ur/usr/lib/systemd/system/"
  install -m 0755 "$PROV" "$ur/usr/lib/smarter-cni/provision"
  for b in opt/cni/bin/smarter-cni usr/local/bin/k3s usr/sbin/dnsmasq; do printf '#!/bin/sh\n' >"$ur/$b"; chmod 0755 "$ur/$b"; done
  [ -e "$ur/usr/lib/systemd/system/docker.service" ] ||
    printf '[Unit]\nDescription=stand-in\n[Service]\nExecStart=/usr/sbin/dnsmasq\n' >"$ur/usr/lib/systemd/system/docker.service"
  out=$(cd "$ur" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --root="$ur" \
    usr/lib/systemd/system/smarter-gateway-provision.service usr/lib/systemd/system/smarter-k3s-agent.service 2>&1)
  rc=$?
  if [ $rc -eq 0 ] && [ -z "$out" ]; then
    pass "systemd-analyze verify smarter-gateway-provision.service (+ agent with its drop-in)"
  else
    fail "systemd-analyze verify smarter-gateway-provision.service" "$out"
  fi
fi

# ---------------------------------------------------------------- bad inputs
bad() { # <name> <file content> <expected message part>
  newroot
  printf '%s\n' "$2" >"$F"
  if run; then fail "bad: $1: exit 0" "$(cat "$WORK/out")"; return; fi
  if ! grep -q -- "$3" "$WORK/out"; then fail "bad: $1: message lacks '$3'" "$(cat "$WORK/out")"; return; fi
  if ! grep -q 'agent is NOT started' "$WORK/out"; then fail "bad: $1: no 'agent is NOT started'" "$(cat "$WORK/out")"; return; fi
  if grep -q "${TOKEN#K10}" "$WORK/out"; then fail "bad: $1: token printed" "$(cat "$WORK/out")"; return; fi
  if ! nothing_written; then fail "bad: $1: something was written" "$(find "$R" -type f)"; return; fi
  pass "bad: $1 -> $(grep ERROR "$WORK/out" | head -n1 | cut -c1-110)"
}
newroot
if run; then fail "missing file: exit 0"; elif grep -q 'not provisioned' "$WORK/out" && nothing_written; then
  pass "missing file: not provisioned, nothing written"; else fail "missing file" "$(cat "$WORK/out")"; fi

bad "empty file" "" "K3S_URL is missing"
bad "http url" "${GOOD/https:/http:}" "is not https://host"
bad "url with path" "${GOOD/6443/6443\/v1}" "is not https://host"
bad "url with userinfo" "${GOOD/https:\/\//https://u:p@}" "is not https://host"
bad "url port 0" "${GOOD/6443/0}" "is not https://host"
bad "url port 70000" "${GOOD/6443/70000}" "is not https://host"
bad "url bad host" "${GOOD/k3s.example.net/k3s_x..net}" "is not https://host"
bad "url shell chars" "${GOOD/k3s.example.net/\$(reboot)}" "is not https://host"
bad "no token" "$(grep -v TOKEN <<<"$GOOD")" "K3S_TOKEN (or K3S_TOKEN_FILE) is missing"
bad "token and token file" "$GOOD
K3S_TOKEN_FILE=tok" "not both"
bad "short token" "${GOOD/$TOKEN/abc}" "does not look like a k3s token"
bad "K10 token bad hash" "${GOOD/$TOKEN/K10abc::server:secret}" "does not look like a k3s token"
bad "token with quote" "${GOOD/$TOKEN/0123456789abcdef\"x}" "does not look like a k3s token"
bad "token with space" "${GOOD/$TOKEN/0123456789abcdef x}" "does not look like a k3s token"
bad "token file missing" "$(grep -v TOKEN <<<"$GOOD")
K3S_TOKEN_FILE=k3s-token" "no such readable file"
bad "no node name" "$(grep -v NODE_NAME <<<"$GOOD")" "NODE_NAME is missing"
bad "node name upper case" "${GOOD/gw-0042/GW-0042}" "is not a DNS label"
bad "node name dot" "${GOOD/gw-0042/gw.0042}" "is not a DNS label"
bad "node name leading dash" "${GOOD/gw-0042/-gw}" "is not a DNS label"
bad "node name 64 chars" "${GOOD/gw-0042/$(printf 'a%.0s' {1..64})}" "is not a DNS label"
bad "bad label" "${GOOD/tier=edge/tier=-edge}" "is not a Kubernetes label"
bad "label no value sep" "${GOOD/tier=edge/tier}" "is not a Kubernetes label"
bad "unknown key" "$GOOD
K3S_SERVER=x" "unknown key 'K3S_SERVER'"
bad "duplicate key" "$GOOD
NODE_NAME=gw-2" "NODE_NAME given twice"
bad "not key=value" "$GOOD
garbage" "not KEY=VALUE"
bad "yaml injection in labels" "${GOOD/tier=edge/tier=edge\"\\n  x: y}" "is not a Kubernetes label"

# ---------------------------------------------------------------- good input
newroot
printf '%s\n' "$GOOD" >"$F"
if run; then
  c=$(conf)
  exp="server: \"https://k3s.example.net:6443\"
token: \"$TOKEN\"
node-name: \"gw-0042\"
node-label:
  - \"site=berlin\"
  - \"example.com/tier=edge\""
  got=$(grep -v '^#' "$c")
  [ "$got" = "$exp" ] && pass "good: config content" || fail "good: config content" "$got"
  [ "$(stat -c %a "$c")" = 600 ] && pass "good: config mode 0600" || fail "good: config mode $(stat -c %a "$c")"
  [ "$(cat "$R/etc/hostname")" = gw-0042 ] && pass "good: /etc/hostname" || fail "good: /etc/hostname"
  grep -q $'^127.0.1.1\tgw-0042$' "$R/etc/hosts" && ! grep -q localhost-old "$R/etc/hosts" &&
    grep -q $'^127.0.0.1\tlocalhost$' "$R/etc/hosts" && pass "good: /etc/hosts" || fail "good: /etc/hosts" "$(cat "$R/etc/hosts")"
  [ -s "$R/var/lib/smarter-gateway/provisioned.sha256" ] && pass "good: hash recorded" || fail "good: hash recorded"
  grep -q 'k3s is not installed' "$WORK/out" || pass "good: test root leaves the running system alone"
  [ -z "$(find "$R" -name '.*.??????' -print -quit)" ] && pass "good: no temporary files left" || fail "good: temp files"
  # again: nothing changes
  before=$(stat -c %Y.%i "$c")
  sleep 1
  run && grep -q 'nothing changed' "$WORK/out" && [ "$(stat -c %Y.%i "$c")" = "$before" ] &&
    pass "same file again: nothing changed" || fail "same file again" "$(cat "$WORK/out")"
  # the file deleted after provisioning: still provisioned
  mv "$F" "$F.keep"
  run && grep -q 'provisioned earlier' "$WORK/out" && pass "file removed later: stays provisioned" ||
    fail "file removed later" "$(cat "$WORK/out")"
  mv "$F.keep" "$F"
  # re-provision with a new file
  printf 'K3S_URL=https://10.1.2.3\nK3S_TOKEN_FILE=k3s-token\nNODE_NAME=gw-0043\n' >"$F"
  printf 'abcdef.0123456789abcdef\r\n' >"$R/boot/firmware/k3s-token"
  if run && grep -q 'provisioned from' "$WORK/out"; then
    got=$(grep -v '^#' "$c")
    exp='server: "https://10.1.2.3"
token: "abcdef.0123456789abcdef"
node-name: "gw-0043"'
    [ "$got" = "$exp" ] && [ "$(cat "$R/etc/hostname")" = gw-0043 ] && [ "$(grep -c '^127.0.1.1' "$R/etc/hosts")" = 1 ] &&
      pass "re-provision: new file applied (token file, no labels)" || fail "re-provision content" "$got" "$(cat "$R/etc/hosts")"
  else
    fail "re-provision" "$(cat "$WORK/out")"
  fi
  # a new token in the same token file re-provisions too
  printf 'zyxwvu.0123456789abcdef\n' >"$R/boot/firmware/k3s-token"
  run && grep -q 'token: "zyxwvu.0123456789abcdef"' "$c" && pass "re-provision: new token in the token file" ||
    fail "re-provision: token file change" "$(cat "$WORK/out")"
  # a bad new file on a provisioned gateway: old config kept intact, exit 1
  cp "$c" "$WORK/c.before"
  printf 'K3S_URL=https://10.1.2.3\nNODE_NAME=Bad_Name\nK3S_TOKEN=abcdef.0123456789abcdef\n' >"$F"
  if ! run && cmp -s "$c" "$WORK/c.before" && [ "$(cat "$R/etc/hostname")" = gw-0043 ]; then
    pass "bad re-provision: refused, previous config untouched"
  else
    fail "bad re-provision" "$(cat "$WORK/out")"
  fi
else
  fail "good: exit status" "$(cat "$WORK/out")"
fi

# quotes, CRLF, BOM, comments, blanks, IPv6, uppercase host
newroot
printf '\xEF\xBB\xBF# gateway 7\r\n\r\n  K3S_URL = "https://[fd00::1]:6443/"\r\nK3S_TOKEN='"'"'abcdef.0123456789abcdef'"'"'\r\nNODE_NAME=gw-7\r\n' >"$F"
if run && grep -q '^server: "https://\[fd00::1\]:6443"$' "$(conf)" && grep -q '^node-name: "gw-7"$' "$(conf)"; then
  pass "good: CRLF, BOM, quotes, comments, IPv6 URL"
else
  fail "good: CRLF, BOM, quotes, comments, IPv6 URL" "$(cat "$WORK/out")"
fi

# --check: validation only, token not shown
newroot
printf '%s\n' "$GOOD" >"$F"
if "$PROV" --check "$F" >"$WORK/out" 2>&1 && grep -q 'token: (valid, not shown)' "$WORK/out" && ! grep -q "${TOKEN#K10}" "$WORK/out" && nothing_written; then
  pass "--check: valid file, token not shown, nothing written"
else
  fail "--check" "$(cat "$WORK/out")"
fi
printf 'K3S_URL=http://x\n' >"$F"
if ! "$PROV" --check "$F" >/dev/null 2>&1; then pass "--check: bad file -> exit 1"; else fail "--check: bad file accepted"; fi

echo "provision-test: ${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
