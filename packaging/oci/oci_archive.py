#!/usr/bin/env python3
"""Writes the installer image archives of smarter-cni (called by build-image.sh).

Python 3 standard library only. Input: one folder per platform holding what the dist
tarball unpacks to (opt/cni/bin/smarter-cni, etc/cni/net.d/10-smarter-cni.conflist,
etc/smarter-cni/dnsmasq.conf), already checked by build-image.sh, plus the bridge-mode
files from the repository. Output, atomically (temp file + rename):

  smarter-cni-installer-<version>-<platform>.tar   one platform: OCI image layout
      (oci-layout, index.json, blobs/sha256/) plus docker-save's manifest.json
  smarter-cni-installer-<version>.oci.tar          OCI image layout whose index.json
      names one multi-arch image index (linux/amd64, linux/arm64, linux/arm/v7)

Deterministic: every tar entry is sorted by name, owned 0:0 with no user/group names,
mode 0755 (folders, the binary) or 0644, mtime SOURCE_DATE_EPOCH; USTAR headers; the
layer is gzip -9 with header mtime 0, no file name (zlib's output: the same zlib gives the
same bytes); JSON is compact with sorted keys. Two runs on the same input give the same bytes.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import time

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# platform name in file names -> OCI platform (the order of the multi-arch index)
PLATFORMS = {
    "amd64": {"architecture": "amd64", "os": "linux"},
    "arm64": {"architecture": "arm64", "os": "linux"},
    "armv7": {"architecture": "arm", "os": "linux", "variant": "v7"},
}

# The image's filesystem (contract: one layer, nothing else, no shell).
# image path -> (source: "bin" | "conflist" | "dnsmasq" | "bridge-conflist" | "bridge-dnsmasq", mode)
FILES = {
    "smarter-cni": ("bin", 0o755),
    "usr/share/smarter-cni/docker/etc/cni/net.d/10-smarter-cni.conflist": ("conflist", 0o644),
    "usr/share/smarter-cni/docker/etc/smarter-cni/dnsmasq.conf": ("dnsmasq", 0o644),
    "usr/share/smarter-cni/bridge/etc/cni/net.d/10-smarter-cni.conflist": ("bridge-conflist", 0o644),
    "usr/share/smarter-cni/bridge/etc/smarter-cni/dnsmasq.conf": ("bridge-dnsmasq", 0o644),
}
# Where each source sits in an unpacked dist tarball.
DIST_PATHS = {
    "bin": "opt/cni/bin/smarter-cni",
    "conflist": "etc/cni/net.d/10-smarter-cni.conflist",
    "dnsmasq": "etc/smarter-cni/dnsmasq.conf",
}


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def descriptor(media_type, data, **extra):
    d = {"mediaType": media_type, "digest": "sha256:" + sha256(data), "size": len(data)}
    d.update(extra)
    return d


class DeterministicTar:
    """An in-memory tar whose bytes depend only on the entries given (sorted on close)."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}  # name -> (data or None for a folder, mode)

    def add_file(self, name, data, mode=0o644):
        self._parents(name)
        self.entries[name] = (data, mode)

    def _parents(self, name):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.entries.setdefault("/".join(parts[:i]) + "/", (None, 0o755))

    def bytes(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(self.entries):
                data, mode = self.entries[name]
                info = tarfile.TarInfo(name.rstrip("/"))
                info.mode = mode
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mtime = self.mtime
                if data is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    # filename="" and mtime=0: no name, no time in the header; compresslevel as gzip -9.
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def read(path):
    with open(path, "rb") as f:
        return f.read()


class Image:
    """One platform's layer, config and manifest (the blobs and their descriptors)."""

    def __init__(self, platform, sources, args):
        self.platform = platform
        layer = DeterministicTar(args.epoch)
        for path, (source, mode) in FILES.items():
            layer.add_file(path, sources[source], mode)
        layer_tar = layer.bytes()
        self.layer = gzip_bytes(layer_tar)
        self.binary_size = len(sources["bin"])
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(args.epoch))
        config = dict(PLATFORMS[platform])
        config.update({
            "created": created,
            "config": {
                "Entrypoint": ["/smarter-cni", "install"],
                "Cmd": ["--mode", "docker"],
                "User": "0:0",
                "Env": ["PATH=/"],
                "Labels": {
                    "org.opencontainers.image.title": "smarter-cni installer",
                    "org.opencontainers.image.version": args.version,
                    "org.opencontainers.image.revision": args.revision,
                    "org.opencontainers.image.source": args.source,
                    "org.opencontainers.image.created": created,
                },
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(layer_tar)]},
            "history": [{"created": created,
                         "created_by": "packaging/oci/build-image.sh (smarter-cni %s)" % args.version}],
        })
        self.config = canonical_json(config)
        self.manifest = canonical_json({
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": descriptor(MT_CONFIG, self.config),
            "layers": [descriptor(MT_LAYER_GZIP, self.layer)],
        })

    def blobs(self):
        return [self.layer, self.config, self.manifest]

    def manifest_descriptor(self, **extra):
        return descriptor(MT_MANIFEST, self.manifest, platform=PLATFORMS[self.platform], **extra)


def name_annotations(args):
    # io.containerd.image.name: the name containerd (ctr import, k3s's air-gap folder, the
    # CRI) gives the image; it must be the normalised one the kubelet asks for.
    # org.opencontainers.image.ref.name: the OCI layout's reference (skopeo/regctl
    # oci-archive:FILE:REF). containerd prefers the first when both are there.
    return {"io.containerd.image.name": args.reference,
            "org.opencontainers.image.ref.name": args.reference}


def layout(blobs, index, mtime, docker_manifest=None):
    tar = DeterministicTar(mtime)
    tar.add_file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    tar.add_file("index.json", canonical_json(index))
    for blob in blobs:
        tar.add_file("blobs/sha256/" + sha256(blob), blob)
    if docker_manifest is not None:
        tar.add_file("manifest.json", canonical_json(docker_manifest))
    return tar.bytes()


def single_platform(image, args):
    index = {"schemaVersion": 2, "mediaType": MT_INDEX,
             "manifests": [image.manifest_descriptor(annotations=name_annotations(args))]}
    # docker-save's manifest.json: what Docker's own loader reads (20.10 only reads this;
    # 26.1 with its classic image store too). Paths into the same blobs.
    docker_manifest = [{
        "Config": "blobs/sha256/" + sha256(image.config),
        "RepoTags": [args.docker_tag],
        "Layers": ["blobs/sha256/" + sha256(image.layer)],
    }]
    return layout(image.blobs(), index, args.epoch, docker_manifest)


def multi_platform(images, args):
    image_index = canonical_json({
        "schemaVersion": 2, "mediaType": MT_INDEX,
        "manifests": [img.manifest_descriptor() for img in images],
    })
    # index.json names the one multi-arch index (not the three manifests: one name for
    # three manifests would make containerd create one image per manifest, same name).
    index = {"schemaVersion": 2, "mediaType": MT_INDEX,
             "manifests": [descriptor(MT_INDEX, image_index, annotations=name_annotations(args))]}
    blobs = [b for img in images for b in img.blobs()] + [image_index]
    return layout(blobs, index, args.epoch)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--version", required=True)
    p.add_argument("--revision", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--epoch", required=True, type=int, help="SOURCE_DATE_EPOCH")
    p.add_argument("--reference", required=True, help="e.g. docker.io/smarter-cni/installer:0.1.0")
    p.add_argument("--docker-tag", required=True, help="e.g. smarter-cni/installer:0.1.0")
    p.add_argument("--bridge-conflist", required=True)
    p.add_argument("--bridge-dnsmasq", required=True)
    p.add_argument("--input", action="append", required=True, metavar="PLATFORM=DIR",
                   help="an unpacked dist tarball; PLATFORM: " + ", ".join(PLATFORMS))
    p.add_argument("--out", required=True)
    args = p.parse_args()

    inputs = dict(i.split("=", 1) for i in args.input)
    unknown = set(inputs) - set(PLATFORMS)
    if unknown:
        sys.exit("oci_archive: unknown platform(s) %s (use %s)" % (", ".join(sorted(unknown)), ", ".join(PLATFORMS)))
    bridge = {"bridge-conflist": read(args.bridge_conflist), "bridge-dnsmasq": read(args.bridge_dnsmasq)}

    images = []
    for platform in PLATFORMS:  # fixed order: amd64, arm64, armv7
        if platform not in inputs:
            continue
        sources = {k: read(os.path.join(inputs[platform], v)) for k, v in DIST_PATHS.items()}
        sources.update(bridge)
        images.append(Image(platform, sources, args))

    prefix = os.path.join(args.out, "smarter-cni-installer-" + args.version)
    for image in images:
        write_atomic("%s-%s.tar" % (prefix, image.platform), single_platform(image, args))
    if len(images) == len(PLATFORMS):
        write_atomic(prefix + ".oci.tar", multi_platform(images, args))
    for image in images:
        print("%s binary=%d layer=%d config=sha256:%s manifest=sha256:%s" % (
            image.platform, image.binary_size, len(image.layer), sha256(image.config), sha256(image.manifest)))


if __name__ == "__main__":
    main()
