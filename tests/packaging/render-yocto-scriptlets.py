#!/usr/bin/env python3
"""Render the package scriptlets of the Yocto smarter-cni recipe the way OE-Core writes
them into feed packages, for tests/packaging/feed-upgrade.sh.

The pkg_<script>:${PN}() bodies are taken from the recipe and ${VAR} references expanded
with the recipe's own assignments and the wrynose defaults of bitbake.conf for the
directory variables it uses. Output files in OUTDIR:
  rpm-post, rpm-preun   as package_rpm.bbclass puts them in the spec (%post; %preun
                        wrapped in `if [ "$1" = "0" ]`, its wrap_uninstall)
  ipk-postinst, ipk-prerm   as package_ipk.bbclass writes them into CONTROL/
An unknown variable, or a script the test does not know, is an error: the test must
follow the recipe, never an old copy of it.

Usage: render-yocto-scriptlets.py RECIPE OUTDIR
"""
import os
import re
import sys

# bitbake.conf (wrynose) values of the variables the scriptlets may use.
DEFAULTS = {
    "PN": "smarter-cni",
    "prefix": "/usr",
    "exec_prefix": "/usr",
    "libexecdir": "/usr/libexec",
    "nonarch_libdir": "/usr/lib",
    "sysconfdir": "/etc",
    "localstatedir": "/var",
    "systemd_system_unitdir": "/usr/lib/systemd/system",
}
KNOWN_SCRIPTS = {"postinst", "prerm"}


def expand(text, values, where):
    def one(match):
        name = match.group(1)
        if name not in values:
            sys.exit(f"{where}: ${{{name}}} is not known to this renderer; add its value")
        return expand(values[name], values, where)

    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", one, text)


def main():
    recipe, outdir = sys.argv[1], sys.argv[2]
    text = open(recipe, encoding="utf-8").read()
    values = dict(DEFAULTS)
    for name, value in re.findall(r'^([A-Z_]+) = "([^"]*)"$', text, re.M):
        values[name] = value

    scripts = {}
    for match in re.finditer(r"^pkg_(\w+):\$\{PN\}\(\) \{\n(.*?)^\}$", text, re.M | re.S):
        name, body = match.group(1), match.group(2)
        if name not in KNOWN_SCRIPTS:
            sys.exit(f"{recipe}: pkg_{name}:${{PN}} is new: teach this renderer and the test about it")
        scripts[name] = expand(body, values, f"{recipe}: pkg_{name}")
    missing = KNOWN_SCRIPTS - scripts.keys()
    if missing:
        sys.exit(f"{recipe}: no pkg_{', pkg_'.join(sorted(missing))}:${{PN}}")

    os.makedirs(outdir, exist_ok=True)
    # package_ipk.bbclass writes the variable as is (opkg runs it through /bin/sh);
    # package_rpm.bbclass puts it in the spec. systemd.bbclass appends its part to
    # postinst (enable, daemon-reload): left out here, it is not about the binary.
    outputs = {
        "ipk-postinst": scripts["postinst"],
        "ipk-prerm": scripts["prerm"],
        "rpm-post": scripts["postinst"],
        "rpm-preun": 'if [ "$1" = "0" ] ; then\n' + scripts["prerm"] + "\nfi\n",
    }
    for name, content in outputs.items():
        path = os.path.join(outdir, name)
        with open(path, "w", encoding="utf-8") as out:
            out.write(content)
        os.chmod(path, 0o755)
    for name in ("CNI_BINDIR", "SMARTER_CNI_STAGED"):
        print(f"{name}={expand(values[name], values, recipe)}")


if __name__ == "__main__":
    main()
