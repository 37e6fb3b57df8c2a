SUMMARY = "Raspberry Pi IoT gateway: k3s agent with smarter-cni networking"
DESCRIPTION = "A systemd image with the k3s agent, Docker or not (SMARTER_CNI_RUNTIME), smarter-cni and its \
               node DNS (dnsmasq), and an SSH server. The k3s agent starts once \
               the gateway is provisioned with the server URL and token."
LICENSE = "MIT"

inherit core-image features_check

# docker-moby and k3s need seccomp (and docker ipv6); the units need systemd;
# smarter-cni makes k3s leave out its flannel CNI (see k3s_git.bbappend).
REQUIRED_DISTRO_FEATURES = "systemd seccomp ipv6 smarter-cni"

IMAGE_FEATURES += "ssh-server-openssh"

IMAGE_INSTALL = "packagegroup-core-boot \
                 packagegroup-smarter-gateway \
                 ${CORE_IMAGE_EXTRA_INSTALL} \
"

# Room for container images and k3s state in /var/lib.
IMAGE_ROOTFS_EXTRA_SPACE ?= "1048576"

# dnsmasq's own dnsmasq.service (all interfaces, /etc/dnsmasq.conf) would compete
# with smarter-cni-dns.service for port 53: keep only the node DNS.
ROOTFS_POSTPROCESS_COMMAND += "smarter_gateway_disable_stock_dnsmasq"
do_rootfs[depends] += "systemd-systemctl-native:do_populate_sysroot"
smarter_gateway_disable_stock_dnsmasq[doc] = "Disables dnsmasq.service: smarter-cni-dns.service is the node DNS"
smarter_gateway_disable_stock_dnsmasq() {
    systemctl --root=${IMAGE_ROOTFS} disable dnsmasq.service
}
