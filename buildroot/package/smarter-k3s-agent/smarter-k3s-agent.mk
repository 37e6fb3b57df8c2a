################################################################################
#
# smarter-k3s-agent
#
################################################################################

# Unit and k3s configuration come from the repository this external tree
# lives in (images/rootfs), like those of the smarter-cni package.
SMARTER_K3S_AGENT_VERSION = 0.1.0
SMARTER_K3S_AGENT_SITE = $(BR2_EXTERNAL_SMARTER_CNI_PATH)/..
SMARTER_K3S_AGENT_SITE_METHOD = local
SMARTER_K3S_AGENT_LICENSE = Apache-2.0
SMARTER_K3S_AGENT_LICENSE_FILES = LICENSE
SMARTER_K3S_AGENT_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--include=/LICENSE \
	--include=/images/ --include=/images/rootfs/*** \
	--include=/images/rootfs-containerd/*** \
	--include=/images/rootfs-airgap/*** \
	--exclude=*

SMARTER_K3S_AGENT_ROOTFS = $(@D)/images/rootfs

# The k3s configuration of the runtime: "docker: true", or k3s's containerd.
ifeq ($(BR2_PACKAGE_SMARTER_CNI_RUNTIME_CONTAINERD),y)
SMARTER_K3S_AGENT_RUNTIME_ROOTFS = $(@D)/images/rootfs-containerd

# What k3s and its containerd need of the kernel, which Docker Engine's package
# enables in the Docker variant (after its contrib/check-config.sh).
define SMARTER_K3S_AGENT_LINUX_CONFIG_FIXUPS
	$(call KCONFIG_ENABLE_OPT,CONFIG_POSIX_MQUEUE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUPS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_MEMCG)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_SCHED)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_FREEZER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CPUSETS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_DEVICE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_CPUACCT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NAMESPACES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_UTS_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IPC_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_PID_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NET_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XTABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_ADDRTYPE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_CONNTRACK)
	$(call KCONFIG_ENABLE_OPT,CONFIG_BRIDGE_NETFILTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_IPTABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_FILTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_NAT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_TARGET_MASQUERADE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_OVERLAY_FS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_KEYS)
endef
else
SMARTER_K3S_AGENT_RUNTIME_ROOTFS = $(SMARTER_K3S_AGENT_ROOTFS)
endif

SMARTER_K3S_AGENT_BINARY = $(call qstrip,$(BR2_PACKAGE_SMARTER_K3S_AGENT_BINARY))
SMARTER_K3S_AGENT_BINARY_SHA256 = \
	$(call qstrip,$(BR2_PACKAGE_SMARTER_K3S_AGENT_BINARY_SHA256))

ifneq ($(SMARTER_K3S_AGENT_BINARY),)
ifeq ($(BR_BUILDING),y)
ifeq ($(SMARTER_K3S_AGENT_BINARY_SHA256),)
$(error BR2_PACKAGE_SMARTER_K3S_AGENT_BINARY_SHA256 is empty: set it from the sha256sum file of the k3s release)
endif
endif

# Check the binary against the hash given in the configuration, then work
# on the checked copy only.
define SMARTER_K3S_AGENT_BUILD_CMDS
	cp $(SMARTER_K3S_AGENT_BINARY) $(@D)/k3s
	echo "$(SMARTER_K3S_AGENT_BINARY_SHA256)  $(@D)/k3s" | sha256sum -c -
endef

define SMARTER_K3S_AGENT_INSTALL_BINARY
	$(INSTALL) -D -m 0755 $(@D)/k3s $(TARGET_DIR)/usr/local/bin/k3s
endef
endif

# Air gap: the installer image archive in k3s's images folder (k3s makes its agent
# folder 0700: keys live there); with Docker, the unit that loads it into Docker.
SMARTER_K3S_AGENT_PRELOAD_INSTALLER = \
	$(call qstrip,$(BR2_PACKAGE_SMARTER_K3S_AGENT_PRELOAD_INSTALLER))
SMARTER_K3S_AGENT_AIRGAP_ROOTFS = $(@D)/images/rootfs-airgap

ifneq ($(SMARTER_K3S_AGENT_PRELOAD_INSTALLER),)
define SMARTER_K3S_AGENT_INSTALL_PRELOAD
	$(INSTALL) -d -m 0700 $(TARGET_DIR)/var/lib/rancher/k3s/agent
	$(INSTALL) -D -m 0644 $(SMARTER_K3S_AGENT_PRELOAD_INSTALLER) \
		$(TARGET_DIR)/var/lib/rancher/k3s/agent/images/$(notdir $(SMARTER_K3S_AGENT_PRELOAD_INSTALLER))
endef
ifneq ($(BR2_PACKAGE_SMARTER_CNI_RUNTIME_CONTAINERD),y)
define SMARTER_K3S_AGENT_INSTALL_PRELOAD_UNIT
	$(INSTALL) -D -m 0644 \
		$(SMARTER_K3S_AGENT_AIRGAP_ROOTFS)/usr/lib/systemd/system/smarter-cni-preload-images.service \
		$(TARGET_DIR)/usr/lib/systemd/system/smarter-cni-preload-images.service
endef
endif
endif

define SMARTER_K3S_AGENT_INSTALL_TARGET_CMDS
	$(SMARTER_K3S_AGENT_INSTALL_BINARY)
	$(SMARTER_K3S_AGENT_INSTALL_PRELOAD)
	$(INSTALL) -D -m 0644 \
		$(SMARTER_K3S_AGENT_RUNTIME_ROOTFS)/etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml \
		$(TARGET_DIR)/etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml
endef

define SMARTER_K3S_AGENT_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 \
		$(SMARTER_K3S_AGENT_ROOTFS)/usr/lib/systemd/system/smarter-k3s-agent.service \
		$(TARGET_DIR)/usr/lib/systemd/system/smarter-k3s-agent.service
	$(SMARTER_K3S_AGENT_INSTALL_PRELOAD_UNIT)
endef

$(eval $(generic-package))
