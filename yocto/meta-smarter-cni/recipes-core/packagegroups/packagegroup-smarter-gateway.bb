SUMMARY = "smarter-cni gateway: k3s agent, smarter-cni and its node DNS, Docker or not"
DESCRIPTION = "Everything a Raspberry Pi IoT gateway needs to join a k3s \
               cluster as an agent that runs its pods on Docker or on k3s's \
               containerd (SMARTER_CNI_RUNTIME) with smarter-cni networking."

inherit packagegroup

# Docker Engine in the Docker variant only; the containerd variant's nftables comes with
# smarter-cni.
SMARTER_GATEWAY_ENGINE = "${@bb.utils.contains('SMARTER_CNI_RUNTIME', 'containerd', '', 'docker', d)}"
# Air gap (SMARTER_CNI_PRELOAD_INSTALLER = "1", conf/layer.conf): the installer image in
# k3s's images folder.
SMARTER_GATEWAY_PRELOAD = "${@oe.utils.conditional('SMARTER_CNI_PRELOAD_INSTALLER', '1', 'smarter-cni-installer-image', '', d)}"
# The root file system is checked at every boot (systemd-fsck-root, fstab pass 1, the root
# mounted read-only first): util-linux's fsck and e2fsck, not left to systemd's
# recommendations, which an image can drop.
RDEPENDS:${PN} = "${SMARTER_GATEWAY_ENGINE} \
                  ${SMARTER_GATEWAY_PRELOAD} \
                  e2fsprogs-e2fsck \
                  k3s \
                  smarter-cni \
                  smarter-cni-dns \
                  smarter-cni-k3s-agent \
                  util-linux-fsck \
"

# Docker and bridge mode need bridge and veth; k3s needs br_netfilter and the xt_* matches
# for kube-proxy rules; bridge mode's NAT needs nf_tables' nat and masquerade. Built-in on
# some kernels, modules on others.
RRECOMMENDS:${PN} = "kernel-module-bridge \
                     kernel-module-br-netfilter \
                     kernel-module-veth \
                     kernel-module-overlay \
                     kernel-module-xt-addrtype \
                     kernel-module-xt-conntrack \
                     kernel-module-xt-masquerade \
                     ${SMARTER_GATEWAY_NFT_MODULES} \
"
SMARTER_GATEWAY_NFT_MODULES = "${@bb.utils.contains('SMARTER_CNI_RUNTIME', 'containerd', 'kernel-module-nf-tables kernel-module-nft-nat kernel-module-nft-masq kernel-module-nft-ct', '', d)}"
