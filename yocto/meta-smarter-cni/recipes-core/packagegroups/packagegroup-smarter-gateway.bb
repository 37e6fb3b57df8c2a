SUMMARY = "smarter-cni gateway: Docker, k3s agent, smarter-cni and its node DNS"
DESCRIPTION = "Everything a Raspberry Pi IoT gateway needs to join a k3s \
               cluster as an agent that runs its pods on Docker with smarter-cni \
               networking."

inherit packagegroup

RDEPENDS:${PN} = "docker \
                  k3s \
                  smarter-cni \
                  smarter-cni-dns \
                  smarter-cni-k3s-agent \
"

# Docker needs bridge and veth; k3s needs br_netfilter and the xt_* matches for
# kube-proxy rules. Built-in on some kernels, modules on others.
RRECOMMENDS:${PN} = "kernel-module-bridge \
                     kernel-module-br-netfilter \
                     kernel-module-veth \
                     kernel-module-overlay \
                     kernel-module-xt-addrtype \
                     kernel-module-xt-conntrack \
                     kernel-module-xt-masquerade \
"
