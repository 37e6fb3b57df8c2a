#!/usr/bin/env bash
# Removes what an interrupted test run may have left on the test engines: containers the
# harness labelled, networks it named sct-*, and its folders under /run; the test containerds'
# pods and state (scripts/containerd.sh clean: start them again afterwards). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
set -a
eval "$(scripts/engines.sh env)"
set +a
for host in "$D20_HOST" "$D26_HOST"; do
  # The suites' containers, and the installer test's (installer pods and its node's pods).
  for label in smarter-cni-test=1 smarter-cni-test-ds=1; do
    ids=$("$DOCKER" -H "$host" ps -aq --filter "label=$label")
    if [[ -n "$ids" ]]; then
      # shellcheck disable=SC2086 # one ID per word
      "$DOCKER" -H "$host" rm -f $ids >/dev/null
    fi
  done
  # The installer test's node network (the payload's mynet), once nothing is attached.
  # shellcheck disable=SC2016 # a Go template
  if [[ "$("$DOCKER" -H "$host" network inspect -f '{{len .Containers}}' mynet 2>/dev/null)" == 0 ]]; then
    "$DOCKER" -H "$host" network rm mynet >/dev/null
  fi
  for net in $("$DOCKER" -H "$host" network ls --format '{{.Name}}' | grep '^sct-' || true); do
    # shellcheck disable=SC2016 # a Go template, not a shell expansion
    for c in $("$DOCKER" -H "$host" network inspect -f '{{range $id, $_ := .Containers}}{{$id}} {{end}}' "$net"); do
      "$DOCKER" -H "$host" rm -f "$c" >/dev/null 2>&1 || true
    done
    "$DOCKER" -H "$host" network rm "$net" >/dev/null
  done
done
pkill -f -- '--conf-file=/run/smarter-cni-test/' 2>/dev/null || true
pkill -f -- 'smarter-cni hostnames --config /run/smarter-cni-test/' 2>/dev/null || true
for ns in $(ip netns list | awk '/^(sct-|scb-|bnat-|scbench-)/ {print $1}'); do ip netns del "$ns"; done
# Bridge mode's leftovers: test bridges and outside hosts' veths, their NAT tables, and the
# iptables FORWARD accepts setup adds on a Docker host.
for link in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(scb[0-9]+x[0-9]+|sct-cri[0-9]+|sclan[0-9]+|scinet[0-9]+|scbench[0-9])$' || true); do
  ip link del "$link" 2>/dev/null || true
done
for table in $(nft list tables 2>/dev/null | awk '$2 == "ip" && $3 ~ /^smarter-cni-(scb-|sct-|bench-)/ {print $3}'); do
  nft delete table ip "$table"
done
while read -r rule; do
  # shellcheck disable=SC2086 # the rule's words
  iptables -w ${rule/-A/-D} 2>/dev/null || true
done < <(iptables -w -S FORWARD 2>/dev/null | grep -E '^-A FORWARD -[io] (scb[0-9]+x[0-9]+|sct-cri[0-9]+|scbench[0-9]) -j ACCEPT$' || true)
rm -rf /run/smarter-cni-test/records /run/smarter-cni-test/node-* /run/smarter-cni-test/cnitool-* \
  /run/smarter-cni-test/bin-* /run/smarter-cni-test/stopped-* /run/smarter-cni-test/hung-* \
  /run/smarter-cni-test/bridge /run/smarter-cni-test/cri-plugins-* /run/smarter-cni-bench
scripts/containerd.sh clean
