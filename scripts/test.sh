#!/usr/bin/env bash
# Runs every test tier, as root on Debian 12:
#   1. unit tests (seconds, no engine);
#   2. Docker mode's integration suites against real Docker 20.10 and 26.1 engines, real
#      dnsmasq, real network namespaces and libcni's cnitool; bridge mode's on the real
#      kernel (bridge, veths, nftables), through cnitool and under real containerd 1.7 and 2.1;
#   3. packaging checks (Yocto, Buildroot, .deb upgrade under load), the static cross builds
#      run under qemu, and the gateway image (provisioning, flashing, build, QEMU boot).
# Installs what it needs on first use (scripts/deps.sh, engines.sh, cnitool.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $(id -u) == 0 ]] || { echo "test.sh: run as root (engines, namespaces, dnsmasq on port 53)" >&2; exit 1; }

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "dependencies"
scripts/deps.sh
scripts/engines.sh start
set -a
eval "$(scripts/engines.sh env)"
set +a
SMARTER_CNI_TEST_CNITOOL=$(scripts/cnitool.sh)
export SMARTER_CNI_TEST_CNITOOL
# Leftovers of an interrupted run would hold subnets and names the suites need.
scripts/test-cleanup.sh

# The gateway image's base root filesystem (arm64 Debian by mmdebstrap; about 20 min with a
# cold cache, cached after) needs nothing the suites build: make it in the background while
# they run. The image tier's build waits for it (a lock in the image cache) and, should the
# background run fail, builds it itself and shows why.
step "gateway image base, in the background (log: images/out/base-prebuild.log)"
tests/images/run.sh --tools-only
mkdir -p images/out
setsid images/debian/build-image.sh --variant test --base-only >images/out/base-prebuild.log 2>&1 &
base_pid=$!
trap 'kill -- -"$base_pid" 2>/dev/null || true' EXIT

step "unit tests"
cargo test --locked --lib --bins

step "shellcheck"
shellcheck -x -P SCRIPTDIR scripts/*.sh scripts/lib/*.sh .ci/run images/flash/smarter-flash \
  images/debian/build-image.sh images/rootfs/usr/lib/smarter-cni/provision \
  tests/images/*.sh tests/packaging/*.sh packaging/deb/build-deb.sh deploy/generate.sh deploy/tools/*.sh \
  packaging/oci/build-image.sh
echo "shellcheck: clean"

# Docker mode: the suites for the two engines use different subnets, so leftovers of one
# never collide with the other.
DOCKER_SUITES=(--test plugin --test node --test cnitool --test hostport)
run_suites() {
  local engine=$1 host=$2 base=$3
  step "Docker mode on $engine ($host)"
  SMARTER_CNI_TEST_DOCKER_HOST=$host SMARTER_CNI_TEST_SUBNET_BASE=$base \
    cargo test --locked "${DOCKER_SUITES[@]}" -- --test-threads=4
}
run_suites "Docker 20.10" "$D20_HOST" 172.30
run_suites "Docker 26.1" "$D26_HOST" 172.31

# The install procedure of the packages and the installer pod, killed at each step.
step "activation: rollback, installer, power cuts (killed at every rename/link/fsync, sync order by strace)"
cargo test --locked --test activate

# Bridge mode needs no engine: real netns, bridge, veths, nftables, cnitool.
step "bridge mode: kernel, address store, NAT, the verbs and cnitool"
SMARTER_CNI_TEST_BRIDGE_BASE=172.33 cargo test --locked --test bridge --test bridge_link --test bridge_nat -- --test-threads=4

# Bridge mode under real containerd daemons (Debian trixie's 1.7 and sid's 2.1), driven
# through their CRI sockets as the kubelet drives them.
scripts/containerd.sh start
for version in 1.7 2.1; do
  step "bridge mode on containerd $version (CRI)"
  (
    set -a
    eval "$(scripts/containerd.sh env "$version")"
    set +a
    cargo test --locked --test containerd -- --test-threads=4
  )
done
# Node DNS of those suites (dnsmasq outlives its test binary: it changes credentials).
pkill -f -- '--conf-file=/run/smarter-cni-test/cri-' || true

for extra in tests/packaging/*.sh; do
  [[ -e "$extra" ]] || continue
  step "packaging: $extra"
  bash "$extra"
done

step "static cross builds under qemu"
scripts/test-cross.sh

# Provisioning and flash-helper tests, then the Debian arm64 gateway image built from
# Debian's packages and booted under qemu-system-aarch64 (about 20 min on a cold cache,
# 5 min warm; the console log is kept in images/out/).
step "gateway image: provisioning, flashing, build and boot"
wait "$base_pid" || echo "(the background base build failed, see images/out/base-prebuild.log; the image build retries it)"
tests/images/run.sh
step "all tests passed"
