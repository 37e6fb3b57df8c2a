#!/usr/bin/env python3
"""Writes src/dns/public_tlds.txt: the top-level domains of the public DNS root (the ICANN
section of the Public Suffix List, IDN TLDs in their xn-- form), one per line.

Node DNS never claims a namespace with one of these names as the pods' own (README "Node
DNS"). Source: Debian's `publicsuffix` package (apt-get install publicsuffix), so the list
is reproducible from a package version. Usage: scripts/gen-public-tlds.py [PSL-FILE]
"""
import subprocess
import sys
from pathlib import Path

psl = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/publicsuffix/public_suffix_list.dat")
out = Path(__file__).resolve().parent.parent / "src/dns/public_tlds.txt"
tlds = set()
in_icann = False
for line in psl.read_text(encoding="utf-8").splitlines():
    line = line.strip()
    if "===BEGIN ICANN DOMAINS===" in line:
        in_icann = True
    elif "===END ICANN DOMAINS===" in line:
        in_icann = False
    elif in_icann and line and not line.startswith("//"):
        rule = line.lstrip("!*.").split(".")[-1]
        tlds.add(rule.encode("idna").decode("ascii").lower())
try:
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "publicsuffix"], capture_output=True, text=True).stdout
except OSError:
    version = ""
header = f"# public top-level domains: ICANN section of {psl.name} (Debian publicsuffix {version or 'unknown'})\n"
out.write_text(header + "".join(f"{t}\n" for t in sorted(tlds)), encoding="ascii")
print(f"{out}: {len(tlds)} TLDs from {psl}")
