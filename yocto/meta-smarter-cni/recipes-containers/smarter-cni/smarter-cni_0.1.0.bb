SUMMARY = "CNI plugin for IoT gateways: k3s pods on Docker or containerd, with DNS names"
DESCRIPTION = "smarter-cni attaches the pods of a k3s agent to a Docker user network \
               (Docker mode) or to a bridge of its own (bridge mode, for k3s's \
               containerd) and gives each pod a DNS name. The same binary, \
               called as 'loopback', is the CNI loopback plugin, so no CNI plugin set \
               is needed. 'smarter-cni setup' prepares the node (pod network, node \
               DNS, CNI configuration)."
SECTION = "net"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# Built from the smarter-cni checkout that holds this layer (see SMARTER_CNI_SRCDIR
# in conf/layer.conf): the crate, and the gateway's system files from images/rootfs,
# the one copy shared with the Debian and Buildroot images. Every file is listed so
# that bitbake tracks its checksum and rebuilds when it changes.
# The one copy of the sources is the repository, not a files/ folder of the layer.
# nooelint: oelint.vars.fileextrapaths,oelint.vars.outofcontext
FILESEXTRAPATHS:prepend := "${SMARTER_CNI_SRCDIR}:"
SRC_URI = "file://Cargo.toml;subdir=${BP} \
           file://Cargo.lock;subdir=${BP} \
           file://LICENSE;subdir=${BP} \
           file://src;subdir=${BP} \
           file://packaging/activate;subdir=${BP} \
           file://images/rootfs/etc/cni/net.d/10-smarter-cni.conflist;subdir=${BP} \
           file://images/rootfs/etc/smarter-cni/dnsmasq.conf;subdir=${BP} \
           file://images/rootfs/etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml;subdir=${BP} \
           file://images/rootfs/usr/lib/systemd/system/smarter-cni-setup.service;subdir=${BP} \
           file://images/rootfs/usr/lib/systemd/system/smarter-cni-dns.service;subdir=${BP} \
           file://images/rootfs/usr/lib/systemd/system/smarter-k3s-agent.service;subdir=${BP} \
           file://images/rootfs/usr/lib/tmpfiles.d/smarter-cni.conf;subdir=${BP} \
           file://images/rootfs/usr/lib/smarter-cni/provision;subdir=${BP} \
           file://images/rootfs/usr/lib/systemd/system/smarter-gateway-provision.service;subdir=${BP} \
           file://images/rootfs/usr/lib/systemd/system/smarter-k3s-agent.service.d/10-provision.conf;subdir=${BP} \
           file://images/rootfs-containerd/etc/cni/net.d/10-smarter-cni.conflist;subdir=${BP} \
           file://images/rootfs-containerd/etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml;subdir=${BP} \
           file://images/rootfs-containerd/usr/lib/systemd/system/smarter-cni-setup.service;subdir=${BP} \
           file://images/rootfs-containerd/usr/lib/systemd/system/smarter-cni-hostnames.service;subdir=${BP} \
"
# A file added to images/rootfs or images/rootfs-containerd must be listed above, installed
# and packaged below: tests/packaging/yocto-check.sh fails until every file of both is in
# SRC_URI.

# Crates from Cargo.lock; regenerate with yocto/scripts/gen-crates-inc.py (the same
# output as `bitbake -c update_crates smarter-cni`).
require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd

# Cargo.toml strips the release binary; leave that to bitbake so that -dbg works
# and the already-stripped QA check passes.
export CARGO_PROFILE_RELEASE_STRIP = "false"

# meta-virtualization's convention: the plugins live in ${libexecdir}/cni and
# /opt/cni/bin (where cri-dockerd looks) links to that directory.
CNI_BINDIR = "${libexecdir}/cni"
# The package's copy of the binary. The runtime executes ${CNI_BINDIR}/smarter-cni, which
# no package owns: pkg_postinst copies the new binary there and renames it in, because
# opkg unlinks a packaged file and writes the new one in place, which a pod start at that
# moment would execute half-written or not find at all.
SMARTER_CNI_STAGED = "${libexecdir}/smarter-cni/smarter-cni"
ROOTFS_SRC = "${S}/images/rootfs"

# SMARTER_CNI_RUNTIME (conf/layer.conf): "docker", or "containerd" for the files of
# images/rootfs-containerd (bridge-mode conflist and setup unit, k3s without Docker) and
# smarter-cni-hostnames.service.
RUNTIME_SRC = "${@bb.utils.contains('SMARTER_CNI_RUNTIME', 'containerd', '${S}/images/rootfs-containerd', '${ROOTFS_SRC}', d)}"
SMARTER_CNI_HOSTNAMES_UNIT = "${@bb.utils.contains('SMARTER_CNI_RUNTIME', 'containerd', 'smarter-cni-hostnames.service', '', d)}"

# Anything else would silently build the Docker variant.
do_install[prefuncs] += "smarter_cni_check_runtime"
smarter_cni_check_runtime[doc] = "Fails the build unless SMARTER_CNI_RUNTIME is docker or containerd"
python smarter_cni_check_runtime() {
    runtime = d.getVar('SMARTER_CNI_RUNTIME')
    if runtime not in ('docker', 'containerd'):
        bb.fatal('SMARTER_CNI_RUNTIME must be "docker" or "containerd", not "%s" (set it in local.conf)' % runtime)
}

do_install() {
    install -D -m 0755 ${B}/target/${CARGO_TARGET_SUBDIR}/smarter-cni ${D}${SMARTER_CNI_STAGED}
    install -D -m 0755 ${S}/packaging/activate ${D}${nonarch_libdir}/smarter-cni/activate
    install -d ${D}${CNI_BINDIR}
    install -d ${D}/opt/cni
    ln -s ${CNI_BINDIR} ${D}/opt/cni/bin

    install -D -m 0644 ${RUNTIME_SRC}/etc/cni/net.d/10-smarter-cni.conflist \
        ${D}${sysconfdir}/cni/net.d/10-smarter-cni.conflist
    install -D -m 0644 ${ROOTFS_SRC}/usr/lib/tmpfiles.d/smarter-cni.conf \
        ${D}${nonarch_libdir}/tmpfiles.d/smarter-cni.conf
    install -D -m 0644 ${ROOTFS_SRC}/etc/smarter-cni/dnsmasq.conf \
        ${D}${sysconfdir}/smarter-cni/dnsmasq.conf
    install -D -m 0644 ${RUNTIME_SRC}/etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml \
        ${D}${sysconfdir}/rancher/k3s/config.yaml.d/10-smarter-cni.yaml

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${RUNTIME_SRC}/usr/lib/systemd/system/smarter-cni-setup.service \
        ${D}${systemd_system_unitdir}/smarter-cni-setup.service
    for unit in smarter-cni-dns.service smarter-k3s-agent.service smarter-gateway-provision.service; do
        install -m 0644 ${ROOTFS_SRC}/usr/lib/systemd/system/$unit ${D}${systemd_system_unitdir}/$unit
    done
    for unit in ${SMARTER_CNI_HOSTNAMES_UNIT}; do
        install -m 0644 ${RUNTIME_SRC}/usr/lib/systemd/system/$unit ${D}${systemd_system_unitdir}/$unit
    done

    # First-boot provisioning: the boot partition's smarter-gateway.conf becomes the k3s
    # agent's server URL, token and node name; the drop-in makes the agent wait for it.
    install -D -m 0755 ${ROOTFS_SRC}/usr/lib/smarter-cni/provision \
        ${D}${nonarch_libdir}/smarter-cni/provision
    install -D -m 0644 ${ROOTFS_SRC}/usr/lib/systemd/system/smarter-k3s-agent.service.d/10-provision.conf \
        ${D}${systemd_system_unitdir}/smarter-k3s-agent.service.d/10-provision.conf
}

PACKAGES =+ "${PN}-dns ${PN}-k3s-agent"

FILES:${PN} += "${CNI_BINDIR} \
                ${SMARTER_CNI_STAGED} \
                ${nonarch_libdir}/smarter-cni/activate \
                /opt/cni/bin \
                ${sysconfdir}/cni/net.d/10-smarter-cni.conflist \
                ${nonarch_libdir}/tmpfiles.d/smarter-cni.conf \
"
FILES:${PN}-dns += "${sysconfdir}/smarter-cni/dnsmasq.conf"
FILES:${PN}-k3s-agent += "${sysconfdir}/rancher/k3s/config.yaml.d/10-smarter-cni.yaml \
                          ${nonarch_libdir}/smarter-cni/provision \
                          ${systemd_system_unitdir}/smarter-k3s-agent.service.d \
"

# Files operators edit: keep their version on upgrade.
CONFFILES:${PN} = "${sysconfdir}/cni/net.d/10-smarter-cni.conflist"
CONFFILES:${PN}-dns = "${sysconfdir}/smarter-cni/dnsmasq.conf"
CONFFILES:${PN}-k3s-agent = "${sysconfdir}/rancher/k3s/config.yaml.d/10-smarter-cni.yaml"

SYSTEMD_PACKAGES = "${PN} ${PN}-dns ${PN}-k3s-agent"
SYSTEMD_SERVICE:${PN} = "smarter-cni-setup.service ${SMARTER_CNI_HOSTNAMES_UNIT}"
SYSTEMD_SERVICE:${PN}-dns = "smarter-cni-dns.service"
# Enabled at boot; the agent starts only once provisioning has written the server URL
# and token (ConditionPathExists in the unit, Requires= in its drop-in).
SYSTEMD_SERVICE:${PN}-k3s-agent = "smarter-gateway-provision.service smarter-k3s-agent.service"
SYSTEMD_AUTO_ENABLE = "enable"

# Docker mode needs the engine; bridge mode `nft` (meta-networking's nftables) for its NAT
# base ruleset.
SMARTER_CNI_RUNTIME_RDEPENDS = "${@bb.utils.contains('SMARTER_CNI_RUNTIME', 'containerd', 'nftables', 'docker', d)}"
RDEPENDS:${PN} = "${SMARTER_CNI_RUNTIME_RDEPENDS}"
RDEPENDS:${PN}-dns = "${PN} dnsmasq"
RDEPENDS:${PN}-k3s-agent = "${PN} ${PN}-dns ${SMARTER_CNI_RUNTIME_RDEPENDS} k3s"

# Both ship /opt/cni/bin and a loopback plugin; smarter-cni replaces the 45 MB set.
RCONFLICTS:${PN} = "cni"

# The upgrade procedure of every smarter-cni package (packaging/activate, shared with the
# .deb): keep the running binary, land the new one by rename, `smarter-cni setup`, health
# check, previous binary back on failure. At image build ($D set) only the binary and the
# loopback link are put in place; smarter-cni-setup.service prepares the node at boot.
# No `exit 0` on success: the systemd class appends its own part to this script.
pkg_postinst:${PN}() {
    if [ -n "$D" ]; then
        "$D${nonarch_libdir}/smarter-cni/activate" --root "$D" --bin "${CNI_BINDIR}/smarter-cni" \
            --staged "${SMARTER_CNI_STAGED}" || exit 1
    else
        "${nonarch_libdir}/smarter-cni/activate" --bin "${CNI_BINDIR}/smarter-cni" \
            --staged "${SMARTER_CNI_STAGED}" \
            --retry "opkg configure ${PN} (ipk feeds), or this command (rpm feeds): ${nonarch_libdir}/smarter-cni/activate --bin ${CNI_BINDIR}/smarter-cni --staged ${SMARTER_CNI_STAGED}" || exit 1
    fi
}

# Removal only (rpm runs this with "0"; opkg with "remove", and with "upgrade <version>"
# during an upgrade, which must leave the runtime binary alone). Before the package's
# files go, so that its now empty ${CNI_BINDIR} goes with them. Pods, the Docker network
# and /var/lib/smarter-cni (the previous binary) stay.
pkg_prerm:${PN}() {
    case "$1" in
    remove | 0)
        rm -f "$D${CNI_BINDIR}/smarter-cni" "$D${CNI_BINDIR}/loopback" \
            "$D${CNI_BINDIR}/.smarter-cni.previous" "$D${CNI_BINDIR}/.smarter-cni.previous.tmp" \
            "$D${CNI_BINDIR}/.smarter-cni.new" "$D${CNI_BINDIR}/.loopback.new"
        ;;
    esac
}
