#!/bin/sh
# Post-build script of the smarter-cni gateway images.
# Buildroot runs it with the target directory as $1.
set -eu

TARGET_DIR=$1
BOARD_DIR=$(dirname "$0")
# The external tree is buildroot/ of the smarter-cni repository.
REPO_DIR=$(cd "${BOARD_DIR}/../../../.." && pwd)
ROOTFS_SRC="${REPO_DIR}/images/rootfs"

# HDMI console next to the serial one.
mkdir -p "${TARGET_DIR}/etc/systemd/system/getty.target.wants"
ln -sf /usr/lib/systemd/system/getty@.service \
	"${TARGET_DIR}/etc/systemd/system/getty.target.wants/getty@tty1.service"

# Hook for first-boot provisioning: install what provisioning.files lists.
grep -v -e '^#' -e '^[[:space:]]*$' "${BOARD_DIR}/provisioning.files" |
while read -r mode path; do
	install -D -m "${mode}" "${ROOTFS_SRC}/${path}" "${TARGET_DIR}/${path}"
done

# The wiring the units rely on; bridge mode (the containerd runtime) also loads
# its NAT rules with nft and learns hostnames with its own unit.
wiring="opt/cni/bin/smarter-cni opt/cni/bin/loopback
	etc/cni/net.d/10-smarter-cni.conflist etc/smarter-cni/dnsmasq.conf
	usr/sbin/dnsmasq"
if grep -q '"mode": *"bridge"' "${TARGET_DIR}/etc/cni/net.d/10-smarter-cni.conflist" 2>/dev/null; then
	wiring="${wiring} usr/sbin/nft usr/lib/systemd/system/smarter-cni-hostnames.service"
fi
for f in ${wiring}; do
	if [ ! -e "${TARGET_DIR}/${f}" ]; then
		echo "post-build: missing /${f} in the target" >&2
		exit 1
	fi
done
