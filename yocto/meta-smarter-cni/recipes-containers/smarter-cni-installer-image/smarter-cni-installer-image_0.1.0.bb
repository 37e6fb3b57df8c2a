SUMMARY = "smarter-cni installer image, preloaded for k3s (air gap)"
DESCRIPTION = "The smarter-cni installer image archive of packaging/oci/build-image.sh \
               for the machine, in k3s's air-gap images folder, so the installer \
               DaemonSet's pod starts without pulling its image; with the Docker \
               runtime also the unit that loads that folder into Docker. Installed \
               by packagegroup-smarter-gateway when SMARTER_CNI_PRELOAD_INSTALLER = \"1\"."
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# From the checkout that holds this layer (SMARTER_CNI_SRCDIR, conf/layer.conf), like the
# smarter-cni recipe: the archive is a build output there (dist/, after
# scripts/build-dist.sh and packaging/oci/build-image.sh); do_fetch fails, naming the
# folders it searched, when it has not been built.
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${SMARTER_CNI_SRCDIR}:"
SRC_URI = "file://LICENSE;subdir=${BP} \
           file://dist/smarter-cni-installer-${PV}-${SMARTER_CNI_OCI_PLATFORM}.tar;subdir=${BP} \
           file://images/rootfs-airgap/usr/lib/systemd/system/smarter-cni-preload-images.service;subdir=${BP} \
"

# The installer image's platform names (its archives' names) for TARGET_ARCH.
SMARTER_CNI_OCI_PLATFORM = "${@{'aarch64': 'arm64', 'arm': 'armv7', 'x86_64': 'amd64'}.get(d.getVar('TARGET_ARCH'), 'unsupported-' + d.getVar('TARGET_ARCH'))}"
SMARTER_CNI_INSTALLER_ARCHIVE = "smarter-cni-installer-${PV}-${SMARTER_CNI_OCI_PLATFORM}.tar"
# k3s imports every archive here at start (into its containerd); k3s makes its agent
# folder 0700 (its keys live there).
SMARTER_CNI_K3S_AGENT_DIR = "${localstatedir}/lib/rancher/k3s/agent"
SMARTER_CNI_AIRGAP_DIR = "${SMARTER_CNI_K3S_AGENT_DIR}/images"
# Docker runtime: cri-dockerd imports nothing, this unit `docker load`s the folder.
SMARTER_CNI_PRELOAD_UNIT = "${@bb.utils.contains('SMARTER_CNI_RUNTIME', 'containerd', '', 'smarter-cni-preload-images.service', d)}"

inherit systemd

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d -m 0700 ${D}${SMARTER_CNI_K3S_AGENT_DIR}
    install -D -m 0644 ${S}/dist/${SMARTER_CNI_INSTALLER_ARCHIVE} \
        ${D}${SMARTER_CNI_AIRGAP_DIR}/${SMARTER_CNI_INSTALLER_ARCHIVE}
    for unit in ${SMARTER_CNI_PRELOAD_UNIT}; do
        install -D -m 0644 ${S}/images/rootfs-airgap/usr/lib/systemd/system/$unit \
            ${D}${systemd_system_unitdir}/$unit
    done
}

# The archive is for this machine's architecture only.
PACKAGE_ARCH = "${MACHINE_ARCH}"

FILES:${PN} += "${SMARTER_CNI_K3S_AGENT_DIR} \
                ${systemd_system_unitdir}/smarter-cni-preload-images.service \
"

SYSTEMD_SERVICE:${PN} = "${SMARTER_CNI_PRELOAD_UNIT}"
SYSTEMD_AUTO_ENABLE = "enable"

RDEPENDS:${PN} = "k3s ${@bb.utils.contains('SMARTER_CNI_RUNTIME', 'containerd', '', 'docker', d)}"
