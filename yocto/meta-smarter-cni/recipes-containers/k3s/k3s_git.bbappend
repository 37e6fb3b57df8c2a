# With the "smarter-cni" DISTRO_FEATURE the pods' network is smarter-cni (see
# smarter-cni's ${PN}-k3s-agent package): k3s then must not pull in its flannel CNI
# configuration (k3s-cni) and, through it, the 45 MB cni plugin set, which would
# also clash with smarter-cni's /opt/cni/bin and loopback plugin. Without the
# feature this append changes nothing.
# Gated by the DISTRO_FEATURE above, so the layer leaves k3s alone unless asked.
# nooelint: oelint.vars.noncoreoverride
RDEPENDS:${PN}:remove = "${@bb.utils.filter('DISTRO_FEATURES', 'smarter-cni', d) and d.expand('${PN}-cni')}"
