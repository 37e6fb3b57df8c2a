#!/usr/bin/env bash
# Installs the Debian packages the test infrastructure needs (engines, cnitool
# build, test image contents, linters). Idempotent: when every package is
# already installed it only runs one dpkg-query and exits.
set -euo pipefail

PACKAGES=(
  docker.io        # dockerd/docker/runc 20.10 (bookworm); its runc also serves the 26.1 engine
  dnsmasq-base     # DNS server for DNS tests, also copied into the test image
  busybox-static   # the test image's userland
  bind9-dnsutils   # dig/nslookup on the host
  golang-go        # builds cnitool (Go 1.19)
  curl             # engines.sh pings the daemons over their sockets
  runc             # bookworm's runc 1.1.5: the runtime of containerd.sh's daemons too
  containernetworking-plugins # reference bridge/host-local/loopback (containerd tests, benchmarks)
  iproute2 iptables jq file shellcheck qemu-user-static procps util-linux kmod
  nftables         # nft: bridge mode `setup` loads its NAT table; tests inspect it
  iputils-ping     # ping between bridge-mode test pods (netns)
  strace binutils  # tests/activate: kills the install procedure at each step, reads its sync order
)

missing=()
for p in "${PACKAGES[@]}"; do
  # "install ok installed" is the only state in which the files are really there.
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$st" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "deps.sh: installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive

# Keep maintainer scripts from starting services (the docker.io postinst would
# try to start the system dockerd; our engines are private). Only add the
# policy file if none exists, and remove only what we added.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  added_policy=1
fi
cleanup() { if ((added_policy)); then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
