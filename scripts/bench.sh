#!/usr/bin/env bash
# Benchmark on one engine (default Docker 26.1): prints ADD/DEL against the warm-process
# floor, VERSION latency and peak RSS, node DNS record latency, and binary sizes; then
# bridge mode: ADD/DEL through cnitool against Debian's reference bridge + host-local, and
# how late the hostnames service puts a hostname into its record.
# Usage: scripts/bench.sh [d20|d26]
set -euo pipefail
cd "$(dirname "$0")/.."
engine=${1:-d26}
scripts/deps.sh
# GNU time measures the peak RSS of VERSION.
[[ -x /usr/bin/time ]] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time
scripts/engines.sh start
set -a
eval "$(scripts/engines.sh env)"
set +a
scripts/test-cleanup.sh
host_var=${engine^^}_HOST
# Measure what gateways run: the static musl build (scripts/build-dist.sh), when there is one.
musl=${SMARTER_CNI_TARGET_DIR:-${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}/target}/x86_64-unknown-linux-musl/release/smarter-cni
if [[ -z "${SMARTER_CNI_PLUGIN:-}" && -x "$musl" ]]; then
  export SMARTER_CNI_PLUGIN=$musl
fi
SMARTER_CNI_TEST_DOCKER_HOST=${!host_var} SMARTER_CNI_TEST_SUBNET_BASE=172.32 \
  cargo bench --locked --bench plugin
scripts/containerd.sh start >/dev/null
(
  set -a
  eval "$(scripts/containerd.sh env 2.1)"
  set +a
  SMARTER_CNI_TEST_CNITOOL=$(scripts/cnitool.sh) cargo bench --locked --bench bridge
)
pkill -f -- '--conf-file=/run/smarter-cni-test/cri-' || true
for binary in target/release/smarter-cni "${musl%/x86_64-unknown-linux-musl/*}"/*-linux-musl*/release/smarter-cni; do
  if [[ -f "$binary" ]]; then printf '%-34s %s bytes\n' "size $binary" "$(stat -c %s "$binary")"; fi
done
