#!/usr/bin/env bash
# The static musl release builds (scripts/build-dist.sh), checked as ELF files, then the
# integration suites run with each of them: aarch64 and armv7 under qemu-user, x86_64
# natively, against the real Docker 26.1 engine (and the cnitool suite).
# Builds are incremental in ${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}/target.
set -euo pipefail
cd "$(dirname "$0")/.."

export SMARTER_CNI_TARGET_DIR=${SMARTER_CNI_TARGET_DIR:-${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}/target}
scripts/build-dist.sh

set -a
eval "$(scripts/engines.sh env)"
set +a
: "${SMARTER_CNI_TEST_CNITOOL:=$(scripts/cnitool.sh)}"
export SMARTER_CNI_TEST_CNITOOL

declare -A wrapper=([aarch64-unknown-linux-musl]=/usr/bin/qemu-aarch64-static
  [armv7-unknown-linux-musleabihf]=/usr/bin/qemu-arm-static [x86_64-unknown-linux-musl]="")
declare -A arch=([aarch64-unknown-linux-musl]=aarch64 [armv7-unknown-linux-musleabihf]=armv7
  [x86_64-unknown-linux-musl]=x86_64)
base=40
for target in aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf x86_64-unknown-linux-musl; do
  binary=$SMARTER_CNI_TARGET_DIR/$target/release/smarter-cni
  scripts/check-static.sh "$binary" "${arch[$target]}"
  run=${wrapper[$target]:+${wrapper[$target]} }$binary
  printf '%s: %s -> %s\n' "$target" "$run --version" "$($run --version)"
  base=$((base + 1))
  echo "== integration tests with the $target build${wrapper[$target]:+ under ${wrapper[$target]##*/}}"
  scripts/test-cleanup.sh
  SMARTER_CNI_PLUGIN=$binary SMARTER_CNI_PLUGIN_WRAPPER=${wrapper[$target]} \
    SMARTER_CNI_TEST_DOCKER_HOST=$D26_HOST SMARTER_CNI_TEST_SUBNET_BASE=172.$base \
    cargo test --locked --test plugin --test cnitool --test node --test hostport -- --test-threads=4
  # Bridge mode with the same build: its rtnetlink messages (links, veths, addresses, routes)
  # on each architecture's struct layout. qemu-user translates NETLINK_ROUTE but refuses
  # NETLINK_NETFILTER sockets (EPROTONOSUPPORT), so STATUS, which asks nf_tables for the NAT
  # rules, cannot run emulated; the x86_64 build runs it like the other tests.
  skip=()
  [[ -z "${wrapper[$target]}" ]] || skip=(--skip status_is_ready_after_setup_and_code_50_when_something_is_in_the_way)
  SMARTER_CNI_PLUGIN=$binary SMARTER_CNI_PLUGIN_WRAPPER=${wrapper[$target]} \
    SMARTER_CNI_TEST_BRIDGE_BASE=172.$((base + 4)) \
    cargo test --locked --test bridge -- --test-threads=4 "${skip[@]}"
done
