#!/usr/bin/env bash
# Checks of the Yocto layer yocto/meta-smarter-cni that need no layer checkouts and no
# network but PyPI (and Debian's packages if systemd-analyze is missing):
#   - oelint-adv (pinned, in a venv) on every .bb/.bbappend/.inc of the layer;
#   - the recipe follows the code: PV == Cargo.toml version, LICENSE == Cargo.toml
#     license, crates list == Cargo.lock (regenerated and diffed), LIC_FILES_CHKSUM md5 ==
#     the file, every file:// in SRC_URI exists, every file of images/rootfs and
#     images/rootfs-containerd is in SRC_URI;
#   - the units of both variants (images/rootfs; images/rootfs-containerd over it) pass
#     `systemd-analyze verify`, any warning is a failure;
#   - the kas files match kas's schema and pin every layer to a branch and a commit.
# Prints "yocto-check: N passed, M failed" and exits non-zero on any failure.
set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAYER="$ROOT/yocto/meta-smarter-cni"
RECIPE_DIR="$LAYER/recipes-containers/smarter-cni"
CACHE="${SMARTER_CNI_CACHE:-/var/cache/smarter-cni-test}"
VENV="$CACHE/venv-yocto"
# Pinned: a new oelint-adv release brings new rules; bump on purpose, never implicitly.
PY_REQS="oelint-adv==9.11.2 oelint-parser==8.13.2 oelint-data==1.5.26 kas==5.5"
# Rules suppressed everywhere (see yocto/meta-smarter-cni/README.md, "Lint"):
OELINT_SUPPRESS=(
    oelint.var.mandatoryvar.HOMEPAGE   # the project has no public home page yet
    oelint.var.suggestedvar.BUGTRACKER # ... nor a public bug tracker
    oelint.var.suggestedvar.CVE_PRODUCT # not an NVD product; images have none
    oelint.var.suggestedvar.SECTION    # images and packagegroups have none in OE-Core
    oelint.var.bbclassextend           # target-only plugin: no native/nativesdk use
)
# Findings accepted in the generated crates list only: its layout is oe-core's
# `bitbake -c update_crates` output, kept byte for byte so the diff check means something.
OELINT_GENERATED_OK='smarter-cni-crates\.inc:[0-9]+:(info|warning|error):(oelint\.vars\.inconspaces|oelint\.vars\.notneededspace|oelint\.vars\.srcurifile):'

PASSED=0
FAILED=0
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

pass() { PASSED=$((PASSED + 1)); echo "ok   - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL - $1"; [ -s "$TMP/out" ] && sed 's/^/       /' "$TMP/out"; }
# check NAME CMD...: runs CMD, its output in $TMP/out; passes on exit status 0.
check() {
    local name="$1"; shift
    if "$@" >"$TMP/out" 2>&1; then pass "$name"; else fail "$name"; fi
}

# --- tools -------------------------------------------------------------------
setup_venv() {
    if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.reqs" 2>/dev/null)" = "$PY_REQS" ]; then
        return 0
    fi
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV" || return 1
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install --quiet --disable-pip-version-check $PY_REQS || return 1
    echo "$PY_REQS" >"$VENV/.reqs"
}
setup_systemd_analyze() {
    command -v systemd-analyze >/dev/null && return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq systemd >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq systemd >/dev/null; }
    command -v systemd-analyze >/dev/null
}
check "tools: oelint-adv and kas pinned in $VENV ($PY_REQS)" setup_venv
check "tools: systemd-analyze" setup_systemd_analyze
PY="$VENV/bin/python"
[ -x "$PY" ] || PY=python3

# --- oelint-adv --------------------------------------------------------------
run_oelint() {
    local files suppress=() rule
    mapfile -t files < <(find "$LAYER" \( -name '*.bb' -o -name '*.bbappend' -o -name '*.inc' \) | sort)
    [ "${#files[@]}" -gt 0 ] || { echo "no recipes found in $LAYER"; return 1; }
    for rule in "${OELINT_SUPPRESS[@]}"; do suppress+=(--suppress "$rule"); done
    "$VENV/bin/oelint-adv" --quiet --release wrynose --jobs 2 "${suppress[@]}" \
        "${files[@]}" >"$TMP/oelint" 2>&1
    # Exit status is non-zero on findings; judge by the findings that remain.
    if grep -vE "$OELINT_GENERATED_OK" "$TMP/oelint" | grep -q .; then
        grep -vE "$OELINT_GENERATED_OK" "$TMP/oelint"
        return 1
    fi
    # It must have run: a broken install prints a traceback, which the grep above
    # already reports; an empty run over N files is what success looks like.
    echo "${#files[@]} files clean"
}
check "oelint-adv: every .bb/.bbappend/.inc of the layer is clean" run_oelint

# --- the recipe follows the code ----------------------------------------------
# One Python helper, one sub-command per check; it parses only what it needs.
cat >"$TMP/recipe.py" <<'PYEOF'
import glob, hashlib, os, re, sys, tomllib

root, layer, recipe_dir, what = sys.argv[1:5]

def recipe():
    bbs = glob.glob(os.path.join(recipe_dir, "smarter-cni_*.bb"))
    if len(bbs) != 1:
        sys.exit(f"expected one smarter-cni_*.bb in {recipe_dir}, found {bbs}")
    return bbs[0]

def text(path):
    with open(path) as f:
        # join bitbake line continuations
        return f.read().replace("\\\n", " ")

def cargo():
    with open(os.path.join(root, "Cargo.toml"), "rb") as f:
        return tomllib.load(f)["package"]

def pv_of(bb):
    m = re.search(r"^PV\s*[:?]?=\s*\"([^\"]*)\"", text(bb), re.M)
    return m.group(1) if m else os.path.basename(bb)[:-3].split("_", 1)[1]

def uris(path):
    """file:// entries of SRC_URI / SRC_URI += in one file, without parameters."""
    out = []
    for m in re.finditer(r"^SRC_URI(?::\S+)?\s*(?:\+=|=|\?=|:=|\.=|=\.)\s*\"([^\"]*)\"", text(path), re.M):
        for tok in m.group(1).split():
            if tok.startswith("file://"):
                out.append(tok[len("file://"):].split(";")[0])
    return out

def search_dirs(path):
    """FILESPATH-like folders where bitbake looks for a file:// of this file's recipe."""
    d = os.path.dirname(path)
    name = os.path.basename(path)
    bpn = re.split(r"[_.]", name)[0]
    bp = name.rsplit(".", 1)[0].replace("_", "-")
    dirs = [os.path.join(d, x) for x in (bp, bpn, "files")]
    if "${SMARTER_CNI_SRCDIR}" in text(path):
        dirs.insert(0, root)
    return dirs

if what == "pv":
    bb, ver = recipe(), cargo()["version"]
    pv = pv_of(bb)
    print(f"recipe PV {pv}, Cargo.toml version {ver}")
    sys.exit(pv != ver)

if what == "license":
    m = re.search(r"^LICENSE\s*=\s*\"([^\"]*)\"", text(recipe()), re.M)
    lic, cl = (m.group(1) if m else None), cargo().get("license")
    print(f"recipe LICENSE {lic}, Cargo.toml license {cl}")
    sys.exit(lic != cl)

if what == "lic-chksum":
    bb = recipe()
    m = re.search(r"^LIC_FILES_CHKSUM\s*=\s*\"([^\"]*)\"", text(bb), re.M)
    if not m:
        sys.exit("no LIC_FILES_CHKSUM")
    bad = 0
    for tok in m.group(1).split():
        parts = tok[len("file://"):].split(";")
        params = dict(p.split("=", 1) for p in parts[1:])
        # ${S} is the repository's top: SRC_URI unpacks repo paths under ${S} as they are.
        path = os.path.join(root, parts[0])
        if not os.path.isfile(path):
            print(f"{parts[0]}: no such file"); bad = 1; continue
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        b, e = int(params.get("beginline", 1)), params.get("endline")
        data = b"".join(lines[b - 1:int(e) if e else None])
        md5 = hashlib.md5(data).hexdigest()
        ok = md5 == params.get("md5")
        print(f"{parts[0]}: recipe md5 {params.get('md5')}, file md5 {md5}")
        bad |= not ok
        if parts[0] not in uris(bb):
            print(f"{parts[0]}: not in SRC_URI, so not in ${{S}}"); bad = 1
    sys.exit(bad)

BUILD_OUTPUT = "dist/smarter-cni-installer-${PV}-${SMARTER_CNI_OCI_PLATFORM}.tar"

if what == "src-uri":
    bad, n = 0, 0
    for path in sorted(glob.glob(os.path.join(layer, "**", "*.bb*"), recursive=True)
                       + glob.glob(os.path.join(layer, "**", "*.inc"), recursive=True)):
        for u in uris(path):
            n += 1
            if u == BUILD_OUTPUT:
                # the installer image archive: built into dist/ (packaging/oci/build-image.sh),
                # never committed; do_fetch names it when it is missing.
                continue
            if "${" in u:
                print(f"{os.path.relpath(path, layer)}: file://{u}: unexpanded variable"); bad = 1
            elif not any(os.path.exists(os.path.join(d, u)) for d in search_dirs(path)):
                print(f"{os.path.relpath(path, layer)}: file://{u}: not found"); bad = 1
    print(f"{n} file:// entries checked")
    sys.exit(bad)

if what == "rootfs":
    listed = set(uris(recipe()))
    missing = []
    for d, _, files in [w for top in ("rootfs", "rootfs-containerd")
                        for w in os.walk(os.path.join(root, "images", top))]:
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if rel not in listed:
                missing.append(rel)
    for rel in sorted(missing):
        print(f"{rel}: not in the smarter-cni recipe's SRC_URI (install and package it)")
    sys.exit(bool(missing))

if what == "airgap-src":
    bb = os.path.join(layer, "recipes-containers", "smarter-cni-installer-image",
                      "smarter-cni-installer-image_" + cargo()["version"] + ".bb")
    if not os.path.isfile(bb):
        sys.exit(f"{os.path.relpath(bb, root)}: missing (PV must be Cargo.toml's version)")
    listed = set(uris(bb))
    missing = []
    for d, _, files in os.walk(os.path.join(root, "images", "rootfs-airgap")):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), root)
            if rel not in listed:
                missing.append(rel)
    for rel in sorted(missing):
        print(f"{rel}: not in the smarter-cni-installer-image recipe's SRC_URI")
    if BUILD_OUTPUT not in listed:
        print(f"file://{BUILD_OUTPUT} not in its SRC_URI"); missing.append(BUILD_OUTPUT)
    sys.exit(bool(missing))

sys.exit(f"unknown check {what}")
PYEOF
recipe_py() { "$PY" "$TMP/recipe.py" "$ROOT" "$LAYER" "$RECIPE_DIR" "$@"; }
check "recipe: PV equals Cargo.toml's version" recipe_py pv
check "recipe: LICENSE equals Cargo.toml's license" recipe_py license
check "recipe: LIC_FILES_CHKSUM md5 matches the file" recipe_py lic-chksum
check "recipe: every file:// in SRC_URI exists" recipe_py src-uri
check "recipe: every file of images/rootfs and images/rootfs-containerd is in SRC_URI" recipe_py rootfs
check "recipe: smarter-cni-installer-image's SRC_URI has the archive and every file of images/rootfs-airgap" recipe_py airgap-src

crates_match() {
    "$PY" "$ROOT/yocto/scripts/gen-crates-inc.py" --lock "$ROOT/Cargo.lock" --output "$TMP/crates.inc" &&
        diff -u "$RECIPE_DIR/smarter-cni-crates.inc" "$TMP/crates.inc" &&
        echo "$(grep -c 'crate://' "$TMP/crates.inc") crates"
}
check "recipe: smarter-cni-crates.inc matches Cargo.lock (yocto/scripts/gen-crates-inc.py)" crates_match

# --- units -------------------------------------------------------------------
# systemd-analyze verify without systemd as PID 1: a temporary root holding the host's
# systemd units (sysinit.target ...), the units under test, and stub executables for
# their absolute Exec* paths (the real ones are not on this machine). Any output at all,
# warnings included, fails the check.
# verify_units <rootfs folder>...: the folders' units, later ones replacing same-named
# files of earlier ones (the containerd variant: images/rootfs-containerd over images/rootfs).
verify_units() {
    local vroot="$TMP/units-root-$#" units=() u exe top dirs=()
    mkdir -p "$vroot/usr/lib/systemd/system" "$vroot/etc"
    cp -a /usr/lib/systemd/system/. "$vroot/usr/lib/systemd/system/" 2>/dev/null
    for top in "$@"; do
        dirs+=("$ROOT/images/$top/usr/lib/systemd/system")
        # Units and their drop-in folders (NAME.service.d/*.conf, loaded with the unit).
        cp -R "$ROOT/images/$top/usr/lib/systemd/system/." "$vroot/usr/lib/systemd/system/"
    done
    for top in "${dirs[@]}"; do
        for u in "$top"/*; do
            [ -f "$u" ] && units+=("$vroot/usr/lib/systemd/system/$(basename "$u")")
        done
    done
    mapfile -t units < <(printf '%s\n' "${units[@]}" | sort -u)
    [ "${#units[@]}" -gt 0 ] || { echo "no units in $*"; return 1; }
    while read -r exe; do
        [ -e "$vroot$exe" ] && continue
        mkdir -p "$vroot$(dirname "$exe")"
        printf '#!/bin/sh\nexit 0\n' >"$vroot$exe"
        chmod 0755 "$vroot$exe"
    done < <(find "${dirs[@]}" -type f -exec \
                 sed -n -e 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' \
                     -e 's/^Exec[A-Za-z]*=[-@:+!]*\([^/ ][^ ]*\).*/\/usr\/bin\/\1/p' {} + | sort -u)
    systemd-analyze verify --man=no --root="$vroot" "${units[@]}" >"$TMP/verify" 2>&1
    local rc=$?
    sed "s|$vroot||g" "$TMP/verify"
    [ "$rc" -eq 0 ] && [ ! -s "$TMP/verify" ] && echo "${#units[@]} units verified"
}
check "units: systemd-analyze verify of images/rootfs units, warnings are errors" verify_units rootfs
check "units: systemd-analyze verify of the containerd variant's units, warnings are errors" \
    verify_units rootfs rootfs-containerd
check "units: systemd-analyze verify of the air-gap Docker loader with the Docker units, warnings are errors" \
    verify_units rootfs rootfs-airgap

# --- fsck at boot and the air gap: what the recipes say, evaluated -----------------
# A small evaluator of the layer's plain assignments (NAME = / ?= / ??= "..."), ${VAR} and
# ${@python} (d.getVar, bb.utils.contains, oe.utils.conditional), enough for the variables
# below; a variable it does not know is an error, never an empty string.
cat >"$TMP/bbeval.py" <<'PYEOF'
import os, re, subprocess, sys, types

def assignments(path, values):
    text = open(path).read().replace("\\\n", " ")
    for m in re.finditer(r'^([A-Za-z0-9_]+(?::[A-Za-z0-9_${}-]+)*)\s*(\?\?=|\?=|=|:=)\s*"(.*)"\s*$', text, re.M):
        name, op, value = m.groups()
        if op in ("?=", "??=") and name in values:
            continue
        values[name] = value
    return text

class D:
    def __init__(self, values): self.values = values
    def getVar(self, name): return expand(self.values, "${%s}" % name)

def expand(values, text):
    out, i = "", 0
    while True:
        j = text.find("${", i)
        if j < 0:
            return out + text[i:]
        out += text[i:j]
        depth, k = 0, j + 1
        while True:  # the matching brace: ${@...} holds braces of its own
            c = text[k]
            depth += c == "{"
            depth -= c == "}"
            if depth == 0:
                break
            k += 1
        inner = text[j + 2:k]
        if inner.startswith("@"):
            d = D(values)
            bbmod = types.SimpleNamespace(utils=types.SimpleNamespace(
                contains=lambda var, item, t, f, d: t if item in (d.getVar(var) or "").split() else f))
            oemod = types.SimpleNamespace(utils=types.SimpleNamespace(
                conditional=lambda var, val, t, f, d: t if d.getVar(var) == val else f))
            out += str(eval(inner[1:], {"d": d, "bb": bbmod, "oe": oemod}))
        else:
            if inner not in values:
                sys.exit(f"${{{inner}}}: not known to this evaluator (set it in the test)")
            out += expand(values, values[inner])
        i = k + 1

root, layer, what = sys.argv[1:4]
base = {"localstatedir": "/var", "systemd_system_unitdir": "/usr/lib/systemd/system",
        "PN": "pkg", "BP": "bp", "SMARTER_CNI_SRCDIR": root}
assignments(os.path.join(layer, "conf", "layer.conf"), base)

if what == "packagegroup":  # <SMARTER_CNI_PRELOAD_INSTALLER> <SMARTER_CNI_RUNTIME>
    v = dict(base, SMARTER_CNI_PRELOAD_INSTALLER=sys.argv[4], SMARTER_CNI_RUNTIME=sys.argv[5])
    assignments(os.path.join(layer, "recipes-core", "packagegroups", "packagegroup-smarter-gateway.bb"), v)
    print(" ".join(expand(v, v["RDEPENDS:${PN}"]).split()))

if what == "install":  # <TARGET_ARCH> <SMARTER_CNI_RUNTIME> <S> <D>: runs do_install
    bb = [os.path.join(dp, f) for dp, _, fs in os.walk(layer) for f in fs
          if f.startswith("smarter-cni-installer-image_") and f.endswith(".bb")][0]
    v = dict(base, TARGET_ARCH=sys.argv[4], SMARTER_CNI_RUNTIME=sys.argv[5], S=sys.argv[6], D=sys.argv[7],
             PV=os.path.basename(bb)[:-3].split("_", 1)[1])
    text = assignments(bb, v)
    body = re.search(r"^do_install\(\) \{\n(.*?)^\}$", text, re.M | re.S).group(1)
    script = expand(v, body)
    print("archive:", expand(v, "${SMARTER_CNI_INSTALLER_ARCHIVE}"))
    print("systemd:", expand(v, v["SYSTEMD_SERVICE:${PN}"]) or "-")
    sys.exit(subprocess.run(["sh", "-e", "-c", script]).returncode)
PYEOF
bbeval() { "$PY" "$TMP/bbeval.py" "$ROOT" "$LAYER" "$@"; }

fsck_config() {
    local rdeps cmd
    for runtime in docker containerd; do
        rdeps=" $(bbeval packagegroup 0 "$runtime") " || return 1
        for p in util-linux-fsck e2fsprogs-e2fsck; do
            [[ $rdeps == *" $p "* ]] || { echo "packagegroup ($runtime): $p not in RDEPENDS:$rdeps"; return 1; }
        done
    done
    # the kernel command line appends of the kas configuration (rpi-cmdline's CMDLINE)
    cmd=" $(sed -n 's/^ *CMDLINE:append:pn-rpi-cmdline = "\(.*\)"$/\1/p' "$ROOT/yocto/kas/common.yml" | tr '\n' ' ') "
    [[ $cmd == *" ro "* ]] || { echo "kas common.yml: no 'ro' in CMDLINE:append:pn-rpi-cmdline:$cmd"; return 1; }
    [[ $cmd == *" rw "* ]] && { echo "kas common.yml: 'rw' in the kernel command line: systemd-fsck-root skips a writable root"; return 1; }
    [[ $cmd == *" fsck.repair=yes "* ]] || { echo "kas common.yml: no fsck.repair=yes"; return 1; }
    # OE-Core's base-files fstab has "/dev/root / auto defaults 1 1"; the layer keeps it.
    ! find "$LAYER" -name 'base-files*.bbappend' | grep -q . || { echo "a base-files bbappend: check its fstab's root pass"; return 1; }
    echo "packagegroup RDEPENDS util-linux-fsck e2fsprogs-e2fsck; kernel command line:$cmd"
}
check "fsck at boot: e2fsck and fsck in the packagegroup, root mounted ro (kas CMDLINE), fsck.repair=yes" fsck_config

airgap_preload() {
    local out
    for runtime in docker containerd; do
        out=" $(bbeval packagegroup 1 "$runtime") " || return 1
        [[ $out == *" smarter-cni-installer-image "* ]] || { echo "PRELOAD=1 ($runtime): not in RDEPENDS:$out"; return 1; }
        out=" $(bbeval packagegroup 0 "$runtime") " || return 1
        [[ $out == *" smarter-cni-installer-image "* ]] && { echo "PRELOAD=0 ($runtime): in RDEPENDS:$out"; return 1; }
    done
    echo "SMARTER_CNI_PRELOAD_INSTALLER=1 adds smarter-cni-installer-image, 0 does not"
}
check "air gap: SMARTER_CNI_PRELOAD_INSTALLER = \"1\" puts smarter-cni-installer-image in the packagegroup" airgap_preload

# The recipe's do_install, run for each machine architecture and runtime on a source tree
# holding a PLACEHOLDER archive under the contract's name (tests/images/placeholder-image.py).
airgap_install() { # <TARGET_ARCH> <platform> <runtime>
    local s="$TMP/airgap-$1-$3/src" d="$TMP/airgap-$1-$3/image" ver name unit=usr/lib/systemd/system/smarter-cni-preload-images.service
    ver=$(sed -n '/^\[package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
    name=smarter-cni-installer-$ver-$2.tar
    mkdir -p "$s/dist" "$s/images"
    cp -a "$ROOT/images/rootfs-airgap" "$s/images/"
    python3 "$ROOT/tests/images/placeholder-image.py" "$s/dist/$name" "${2%v7}" "smarter-cni/installer:$ver-placeholder" >/dev/null
    bbeval install "$1" "$3" "$s" "$d" || return 1
    cmp "$s/dist/$name" "$d/var/lib/rancher/k3s/agent/images/$name" || return 1
    [ "$(stat -c %a "$d/var/lib/rancher/k3s/agent")" = 700 ] || { echo "agent folder not 0700"; return 1; }
    if [ "$3" = docker ]; then cmp "$ROOT/images/rootfs-airgap/$unit" "$d/$unit" || return 1
    else [ ! -e "$d/$unit" ] || { echo "Docker loader installed with containerd"; return 1; }; fi
    (cd "$d" && find . -type f | sort)
}
for arch in aarch64:arm64 arm:armv7; do
    for runtime in docker containerd; do
        check "air gap: smarter-cni-installer-image do_install (TARGET_ARCH ${arch%%:*}, $runtime) installs -${arch#*:}.tar in /var/lib/rancher/k3s/agent/images$([ "$runtime" = docker ] && echo ' and the Docker loader')" \
            airgap_install "${arch%%:*}" "${arch#*:}" "$runtime"
    done
done

# --- kas -----------------------------------------------------------------------
check_kas() {
    "$VENV/bin/python" - "$ROOT/yocto/kas" <<'PYEOF'
import glob, os, re, sys
import jsonschema, yaml
from kas.configschema import CONFIGSCHEMA
bad = 0
files = sorted(glob.glob(os.path.join(sys.argv[1], "*.yml")))
for path in files:
    name = os.path.basename(path)
    with open(path) as f:
        conf = yaml.safe_load(f)
    try:
        jsonschema.validate(conf, CONFIGSCHEMA)
    except jsonschema.ValidationError as e:
        print(f"{name}: {e.message}"); bad = 1
    for inc in conf.get("header", {}).get("includes", []):
        if isinstance(inc, str) and not os.path.exists(os.path.join(sys.argv[1], "..", "..", inc)):
            print(f"{name}: include {inc} not found"); bad = 1
    for rname, repo in (conf.get("repos") or {}).items():
        if not repo or "url" not in repo:
            continue  # this repository
        if not repo.get("branch") or not re.fullmatch(r"[0-9a-f]{40}", str(repo.get("commit", ""))):
            print(f"{name}: repo {rname} must pin a branch and a 40-hex commit"); bad = 1
print(f"{len(files)} kas files checked")
sys.exit(bad)
PYEOF
}
check "kas: files match kas's schema; every layer pinned to branch and commit" check_kas

echo "yocto-check: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
