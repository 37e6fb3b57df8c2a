# shellcheck shell=bash
# Sourced by scripts that fetch from Debian with a private apt configuration.

# URI of the Debian mirror this machine uses for bookworm (deb822 or one-line).
debian_mirror() {
  local uri="" f
  shopt -s nullglob
  for f in /etc/apt/sources.list.d/*.sources; do
    uri=$(awk '
      /^[[:space:]]*$/ { if (suite_ok && uris != "") { print uris; exit } ; uris=""; suite_ok=0; next }
      tolower($1) == "uris:"   { uris=$2 }
      tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite_ok=1 }
      END { if (suite_ok && uris != "") print uris }' "$f" | head -n1)
    [[ -n "$uri" ]] && break
  done
  if [[ -z "$uri" ]]; then
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [[ -r "$f" ]] || continue
      uri=$(awk '$1 == "deb" { sub(/\[[^]]*\][[:space:]]*/, ""); if ($3 == "bookworm") { print $2; exit } }' "$f")
      [[ -n "$uri" ]] && break
    done
  fi
  shopt -u nullglob
  echo "${uri:-http://deb.debian.org/debian}"
}
