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

# A private apt configuration in $1 (own sources, lists, cache and an empty dpkg status)
# with the one sources line $2, so the system's apt state is never touched. Use it with
# APT_CONFIG=$1/apt.conf.
private_apt_config() {
  local apt=$1 sources_line=$2
  mkdir -p "$apt"/{state/lists/partial,cache/archives/partial,sources.list.d,preferences.d}
  : >"$apt/state/status"
  echo "$sources_line" >"$apt/sources.list"
  cat >"$apt/apt.conf" <<EOF
Dir::State "$apt/state";
Dir::State::status "$apt/state/status";
Dir::Cache "$apt/cache";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.list.d";
Dir::Etc::Preferences "$apt/preferences";
Dir::Etc::PreferencesParts "$apt/preferences.d";
Acquire::Languages "none";
APT::Sandbox::User "root";
EOF
}
