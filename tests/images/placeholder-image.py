#!/usr/bin/env python3
"""Write a PLACEHOLDER for the installer image archive, for the image tiers' tests only.

    tests/images/placeholder-image.py OUT.tar ARCH TAG

A real single-platform docker-save archive (manifest.json, config, one layer) that both
`docker load` and k3s's air-gap import take, of the given architecture and tag, holding one
file, /PLACEHOLDER, that says what it is. It stands in for
dist/smarter-cni-installer-<version>-<platform>.tar (packaging/oci/build-image.sh) where a
test proves only that an image build bakes the archive in and the gateway loads it. It is
not the installer: nothing in it runs. Reproducible (fixed mtimes, owner 0:0).
"""
import hashlib
import io
import json
import sys
import tarfile

out, arch, tag = sys.argv[1:4]
MTIME = 0


def add(t, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    t.addfile(info, io.BytesIO(data))


layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
    add(t, "PLACEHOLDER", f"placeholder for the smarter-cni installer image ({tag}, {arch}): "
        "tests only, not the installer\n".encode())
layer = layer.getvalue()
layer_id = hashlib.sha256(layer).hexdigest()
config = json.dumps({
    "architecture": arch, "os": "linux", "created": "1970-01-01T00:00:00Z",
    "config": {"Cmd": ["/PLACEHOLDER"], "Labels": {"org.opencontainers.image.title": "placeholder"}},
    "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
}, sort_keys=True, separators=(",", ":")).encode()
config_id = hashlib.sha256(config).hexdigest()
manifest = json.dumps([{
    "Config": f"blobs/sha256/{config_id}", "RepoTags": [tag],
    "Layers": [f"blobs/sha256/{layer_id}"],
}], separators=(",", ":")).encode()
with tarfile.open(out, mode="w", format=tarfile.PAX_FORMAT) as t:
    add(t, f"blobs/sha256/{config_id}", config)
    add(t, f"blobs/sha256/{layer_id}", layer)
    add(t, "manifest.json", manifest)
print(out)
