#!/usr/bin/env bash
# Regenerates the checked-in deployment files from the Helm chart deploy/helm/smarter-cni:
#   deploy/kubernetes/smarter-cni-docker.yaml   the chart rendered with mode=docker
#   deploy/kubernetes/smarter-cni-bridge.yaml   the chart rendered with mode=bridge
#   deploy/k3s/smarter-cni-helmchart.yaml       a k3s HelmChart carrying the chart archive
# Rendering uses Helm's own template engine (Helm v4's Go packages through helm-python-sdk,
# deploy/tools/requirements.txt) in a venv under /var/cache/smarter-cni-build, offline once
# the venv exists. The output depends on the chart's files only (no timestamps).
#
# Usage: deploy/generate.sh           rewrite the three files
#        deploy/generate.sh --check   exit 1 and show the difference if any file is stale
#        deploy/generate.sh --out DIR write them under DIR/{kubernetes,k3s}/ instead
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# shellcheck source=tools/venv.sh
source "$REPO/deploy/tools/venv.sh"

mode=write out=$REPO/deploy
case ${1:-} in
  "") ;;
  --check) mode=check ;;
  --out) out=${2:?"--out needs a folder"} ;;
  *) echo "usage: $0 [--check | --out DIR]" >&2; exit 2 ;;
esac

deploy_venv "$REPO"
if [[ $mode == check ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$DEPLOY_VENV/bin/python" "$REPO/deploy/tools/render.py" generate "$tmp"
  stale=0
  for f in kubernetes/smarter-cni-docker.yaml kubernetes/smarter-cni-bridge.yaml k3s/smarter-cni-helmchart.yaml; do
    if ! cmp -s "$REPO/deploy/$f" "$tmp/$f"; then
      diff -u "$REPO/deploy/$f" "$tmp/$f" | cut -c1-160 | head -n 60 >&2 || true
      echo "stale: deploy/$f differs from a new render of the chart (run deploy/generate.sh)" >&2
      stale=1
    fi
  done
  exit "$stale"
fi
"$DEPLOY_VENV/bin/python" "$REPO/deploy/tools/render.py" generate "$out"
echo "generated: $out/kubernetes/smarter-cni-{docker,bridge}.yaml $out/k3s/smarter-cni-helmchart.yaml"
