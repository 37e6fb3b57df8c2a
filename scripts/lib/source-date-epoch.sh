# shellcheck shell=bash
# Sourced by the build scripts: one timestamp for reproducible artefacts.

# SOURCE_DATE_EPOCH if set, else the committer time of the checkout's HEAD, else 0.
source_date_epoch() { # $1: the repository
  if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
    printf '%s' "$SOURCE_DATE_EPOCH"
  elif git -C "$1" rev-parse -q --verify HEAD >/dev/null 2>&1; then
    git -C "$1" log -1 --format=%ct HEAD
  else
    echo "warning: no git commit and no SOURCE_DATE_EPOCH; using 0" >&2
    printf '0'
  fi
}
