#!/usr/bin/env bash
# A local demo node: Docker 26.1 (the engine where the 2019 design's DNS breaks), the
# shipped conflist and node DNS config, and two pods started the way k3s's cri-dockerd
# starts them. Shows the pods resolving each other by name, and node DNS answering.
# `bridge` shows bridge mode instead: a real containerd 2.1, no Docker in the pod path, two
# pods started through the CRI as the kubelet starts them (examples/containerd-demo.rs).
# Usage: scripts/demo.sh [d20|d26|bridge] [--keep]     (as root, on Debian 12)
set -euo pipefail
cd "$(dirname "$0")/.."

engine=d26
keep=0
for arg in "$@"; do
  case $arg in
    d20 | d26 | bridge) engine=$arg ;;
    --keep) keep=1 ;;
    *) echo "usage: $0 [d20|d26|bridge] [--keep]" >&2; exit 2 ;;
  esac
done
[[ $(id -u) == 0 ]] || { echo "demo.sh: run as root" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [[ $engine == bridge ]]; then
  ((keep == 0)) || echo "demo.sh: --keep applies to the Docker demo only; the bridge demo removes its pods" >&2
  say "Preparing: packages, a private containerd 2.1, the release build"
  scripts/deps.sh
  scripts/containerd.sh start >/dev/null
  cargo build --release --locked --quiet
  set -a
  eval "$(scripts/containerd.sh env 2.1)"
  set +a
  SMARTER_CNI_PLUGIN=$PWD/target/release/smarter-cni exec cargo run --release --locked --quiet --example containerd-demo
fi

say "Preparing: packages, a private Docker engine ($engine), the release build"
scripts/deps.sh
scripts/engines.sh start >/dev/null
set -a
eval "$(scripts/engines.sh env)"
set +a
host_var=${engine^^}_HOST
export DOCKER_HOST=${!host_var}
cargo build --release --locked --quiet
"$DOCKER" version --format 'Docker engine {{.Server.Version}} (API {{.Server.APIVersion}})'

# The node's files, laid out as on a gateway but under /run/smarter-cni-demo.
node=/run/smarter-cni-demo
rm -rf "$node"
mkdir -p "$node/net.d" "$node/bin"
install -m 0755 target/release/smarter-cni "$node/bin/smarter-cni"
jq --arg host "$DOCKER_HOST" '.plugins[0].dockerHost = $host' \
  images/rootfs/etc/cni/net.d/10-smarter-cni.conflist >"$node/net.d/10-smarter-cni.conflist"
paths=(--config "$node/net.d/10-smarter-cni.conflist" --bin-dir "$node/bin"
  --dnsmasq-config images/rootfs/etc/smarter-cni/dnsmasq.conf)

say "smarter-cni setup (what smarter-cni-setup.service runs at boot)"
"$node/bin/smarter-cni" setup "${paths[@]}"

say "Node DNS: dnsmasq with the shipped configuration (smarter-cni-dns.service)"
pkill -f -- "--conf-file=$PWD/images/rootfs/etc/smarter-cni/dnsmasq.conf" 2>/dev/null || true
dnsmasq --keep-in-foreground --log-facility="$node/dnsmasq.log" \
  --conf-file="$PWD/images/rootfs/etc/smarter-cni/dnsmasq.conf" &
dns_pid=$!
echo "dnsmasq pid $dns_pid listening on 172.38.0.1:53"

# cri-dockerd's CNI calls (network/cni/cni.go): loopback with its built-in 0.2.0 list,
# then the pod network, both with the pod's CNI_IFNAME and CNI_ARGS; DEL in the same order.
LOOPBACK_CONF='{"cniVersion":"0.2.0","name":"cni-loopback","type":"loopback"}'
cni() { # <command> <plugin> <container id> <netns> <pod>
  local conf=$LOOPBACK_CONF
  [[ $2 == loopback ]] || conf=$(jq -c '.plugins[0] + {cniVersion, name}' "$node/net.d/10-smarter-cni.conflist")
  CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=$4 CNI_IFNAME=eth0 CNI_PATH=$node/bin \
    CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$5;K8S_POD_INFRA_CONTAINER_ID=$3" \
    "$node/bin/$2" <<<"$conf"
}

# The sandbox sequence of cri-dockerd (core/sandbox_run.go): pause container with the
# pod's hostname and no network, started, resolv.conf overwritten with the kubelet's DNS
# settings, then CNI ADD for loopback and for the pod network.
start_pod() {
  local pod=$1 hostname=$2 id netns resolv
  id=$("$DOCKER" run -d --name "demo_POD_$pod" --hostname "$hostname" --network none \
    --label io.kubernetes.docker.type=podsandbox --label io.kubernetes.pod.name="$pod" \
    --label io.kubernetes.pod.namespace=default "$TEST_IMAGE")
  netns=/proc/$("$DOCKER" inspect -f '{{.State.Pid}}' "$id")/ns/net
  resolv=$("$DOCKER" inspect -f '{{.ResolvConfPath}}' "$id")
  printf 'nameserver 172.38.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n' >"$resolv"
  for plugin in loopback smarter-cni; do
    cni ADD "$plugin" "$id" "$netns" "$pod" >"$node/$pod.$plugin.json"
  done
  printf '%-12s hostname %-8s IP %s\n' "$pod" "$hostname" \
    "$(jq -r '.ips[0].address' "$node/$pod.smarter-cni.json")"
}

stop_pod() {
  local pod=$1 id netns
  id=$("$DOCKER" inspect -f '{{.Id}}' "demo_POD_$pod" 2>/dev/null) || return 0
  netns=/proc/$("$DOCKER" inspect -f '{{.State.Pid}}' "$id")/ns/net
  cni DEL loopback "$id" "$netns" "$pod"
  cni DEL smarter-cni "$id" "$netns" "$pod"
  "$DOCKER" rm -f "$id" >/dev/null
}

cleanup() {
  if ((keep)); then
    echo "(--keep: pods, network and dnsmasq left running)"
    return
  fi
  stop_pod alpha-5d8f9 || true
  stop_pod beta-7c4b2 || true
  kill "$dns_pid" 2>/dev/null || true
}
trap cleanup EXIT
"$DOCKER" rm -f demo_POD_alpha-5d8f9 demo_POD_beta-7c4b2 >/dev/null 2>&1 || true

say "Two pods, started the way cri-dockerd starts them"
"$node/bin/smarter-cni" --version
start_pod alpha-5d8f9 alpha
start_pod beta-7c4b2 beta

say "Inside pod alpha: resolv.conf after ADD"
"$DOCKER" exec demo_POD_alpha-5d8f9 cat /etc/resolv.conf

say "Pods resolve each other by hostname, pod name and pod.namespace"
for pair in "alpha-5d8f9 beta" "alpha-5d8f9 beta-7c4b2" "alpha-5d8f9 beta-7c4b2.default" \
  "beta-7c4b2 alpha" "beta-7c4b2 alpha-5d8f9"; do
  read -r from name <<<"$pair"
  printf '%-12s getent hosts %-20s -> %s\n' "$from" "$name" \
    "$("$DOCKER" exec "demo_POD_$from" getent hosts "$name" || echo FAILED)"
done

say "Host processes and host-networked pods ask node DNS (dig @172.38.0.1)"
for name in alpha beta-7c4b2 beta-7c4b2.default; do
  printf 'dig +short @172.38.0.1 %-20s -> %s\n' "$name" "$(dig +short +time=1 @172.38.0.1 "$name")"
done
say "...and node DNS answers the pods' names itself, never upstream (README: Node DNS)"
dns_status() { dig +time=1 +tries=1 @172.38.0.1 "$@" | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
printf '%-44s -> %s (no IPv6 address, answered here)\n' "dig @172.38.0.1 AAAA beta-7c4b2.default" "$(dns_status AAAA beta-7c4b2.default)"
printf '%-44s -> %s (no such pod in namespace default)\n' "dig @172.38.0.1 nosuch.default" "$(dns_status nosuch.default)"
printf 'names node DNS keeps on the node: %s\n' "$(grep -o '/[^/]*/' /run/smarter-cni/mynet/domains | tr -d / | tr '\n' ' ')"

say "smarter-cni status"
"$node/bin/smarter-cni" status "${paths[@]}" || true
