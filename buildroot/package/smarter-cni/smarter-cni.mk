################################################################################
#
# smarter-cni
#
################################################################################

# The source is the repository this external tree lives in: Cargo.toml at its
# root, the gateway's system files under images/rootfs (and, for the containerd
# runtime, images/rootfs-containerd). Only those are synced.
SMARTER_CNI_VERSION = 0.1.0
SMARTER_CNI_SITE = $(BR2_EXTERNAL_SMARTER_CNI_PATH)/..
SMARTER_CNI_SITE_METHOD = local
SMARTER_CNI_LICENSE = Apache-2.0
SMARTER_CNI_LICENSE_FILES = LICENSE
SMARTER_CNI_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--include=/Cargo.toml --include=/Cargo.lock --include=/LICENSE \
	--include=/src/*** --include=/images/ --include=/images/rootfs/*** \
	--include=/images/rootfs-containerd/*** \
	--exclude=*

SMARTER_CNI_ROOTFS = $(@D)/images/rootfs

# The runtime's own files: the conflist and the setup unit of Docker mode, or
# those of bridge mode (containerd) and its hostnames unit.
ifeq ($(BR2_PACKAGE_SMARTER_CNI_RUNTIME_CONTAINERD),y)
SMARTER_CNI_CONTAINERD_ROOTFS = $(@D)/images/rootfs-containerd
SMARTER_CNI_RUNTIME_ROOTFS = $(SMARTER_CNI_CONTAINERD_ROOTFS)
SMARTER_CNI_DEPENDENCIES += nftables

define SMARTER_CNI_INSTALL_HOSTNAMES_UNIT
	$(INSTALL) -D -m 0644 \
		$(SMARTER_CNI_CONTAINERD_ROOTFS)/usr/lib/systemd/system/smarter-cni-hostnames.service \
		$(TARGET_DIR)/usr/lib/systemd/system/smarter-cni-hostnames.service
endef

# Bridge mode: the bridge, veth pairs and the nftables NAT rules (masquerade,
# hostPort DNAT). Docker Engine's package enables the rest in the Docker variant.
define SMARTER_CNI_LINUX_CONFIG_FIXUPS
	$(call KCONFIG_ENABLE_OPT,CONFIG_BRIDGE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_VETH)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_ADVANCED)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_CONNTRACK)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_NAT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_TABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_TABLES_INET)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_TABLES_IPV4)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NFT_CT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NFT_NAT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NFT_MASQ)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NFT_FIB_IPV4)
endef
else
SMARTER_CNI_RUNTIME_ROOTFS = $(SMARTER_CNI_ROOTFS)
endif

# A local source is never downloaded, so the cargo download post-process
# does not vendor it: vendor the crates pinned by Cargo.lock here, with the
# same command and cargo home. cargo checks every crate against the
# checksum recorded in Cargo.lock.
define SMARTER_CNI_VENDOR_CRATES
	mkdir -p $(@D)/.cargo $(BR_CARGO_HOME)
	cd $(@D) && $(HOST_MAKE_ENV) $(PKG_COMMON_CARGO_ENV) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor --locked VENDOR > $(@D)/.cargo/config.toml
endef
SMARTER_CNI_PRE_CONFIGURE_HOOKS += SMARTER_CNI_VENDOR_CRATES

SMARTER_CNI_BIN = \
	$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/smarter-cni

# CNI plugins live in /opt/cni/bin, not /usr/bin: install the binary
# cargo built rather than running "cargo install".
define SMARTER_CNI_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(SMARTER_CNI_BIN) \
		$(TARGET_DIR)/opt/cni/bin/smarter-cni
	ln -sf smarter-cni $(TARGET_DIR)/opt/cni/bin/loopback
	$(INSTALL) -D -m 0644 \
		$(SMARTER_CNI_RUNTIME_ROOTFS)/etc/cni/net.d/10-smarter-cni.conflist \
		$(TARGET_DIR)/etc/cni/net.d/10-smarter-cni.conflist
	$(INSTALL) -D -m 0644 \
		$(SMARTER_CNI_ROOTFS)/etc/smarter-cni/dnsmasq.conf \
		$(TARGET_DIR)/etc/smarter-cni/dnsmasq.conf
endef

define SMARTER_CNI_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 \
		$(SMARTER_CNI_RUNTIME_ROOTFS)/usr/lib/systemd/system/smarter-cni-setup.service \
		$(TARGET_DIR)/usr/lib/systemd/system/smarter-cni-setup.service
	$(SMARTER_CNI_INSTALL_HOSTNAMES_UNIT)
	$(INSTALL) -D -m 0644 \
		$(SMARTER_CNI_ROOTFS)/usr/lib/systemd/system/smarter-cni-dns.service \
		$(TARGET_DIR)/usr/lib/systemd/system/smarter-cni-dns.service
	$(INSTALL) -D -m 0644 \
		$(SMARTER_CNI_ROOTFS)/usr/lib/tmpfiles.d/smarter-cni.conf \
		$(TARGET_DIR)/usr/lib/tmpfiles.d/smarter-cni.conf
endef

$(eval $(cargo-package))
