# shellcheck shell=bash
# Sourced by deploy/generate.sh and tests/packaging/deploy-validate.sh: the Python venv with
# the chart's tools (deploy/tools/requirements.txt), created once in the build cache.
#   DEPLOY_VENV   set to the venv's folder after deploy_venv
#   SMARTER_CNI_CACHE        cache folder (default /var/cache/smarter-cni-build)
#   SMARTER_CNI_NO_INSTALL=1 fail instead of installing

deploy_venv() { # $1: the repository
  local req=$1/deploy/tools/requirements.txt want
  DEPLOY_VENV=${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-build}/deploy-venv
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ -f $DEPLOY_VENV/.requirements && $(<"$DEPLOY_VENV/.requirements") == "$want" ]] &&
    "$DEPLOY_VENV/bin/python" -c 'import helm_python, kubernetes_validate' 2>/dev/null; then
    return 0
  fi
  if [[ ${SMARTER_CNI_NO_INSTALL:-0} == 1 ]]; then
    echo "deploy: the venv $DEPLOY_VENV is missing or not at $req (SMARTER_CNI_NO_INSTALL=1)" >&2
    return 1
  fi
  if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "deploy: apt-get install python3-venv" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; } ||
      { echo "deploy: apt-get install python3-venv failed" >&2; return 1; }
  fi
  echo "deploy: creating $DEPLOY_VENV from $req (once; about 80 MB of wheels)" >&2
  rm -rf "$DEPLOY_VENV"
  mkdir -p "$(dirname "$DEPLOY_VENV")"
  if ! /usr/bin/python3 -m venv "$DEPLOY_VENV" ||
    ! "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check --no-deps --only-binary=:all: -r "$req"; then
    echo "deploy: creating the venv or pip install -r $req failed (is PyPI reachable?)" >&2
    rm -rf "$DEPLOY_VENV"
    return 1
  fi
  printf '%s' "$want" >"$DEPLOY_VENV/.requirements"
}
