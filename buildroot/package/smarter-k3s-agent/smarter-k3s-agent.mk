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
	--exclude=*

SMARTER_K3S_AGENT_ROOTFS = $(@D)/images/rootfs

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

define SMARTER_K3S_AGENT_INSTALL_TARGET_CMDS
	$(SMARTER_K3S_AGENT_INSTALL_BINARY)
	$(INSTALL) -D -m 0644 \
		$(SMARTER_K3S_AGENT_ROOTFS)/etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml \
		$(TARGET_DIR)/etc/rancher/k3s/config.yaml.d/10-smarter-cni.yaml
endef

define SMARTER_K3S_AGENT_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 \
		$(SMARTER_K3S_AGENT_ROOTFS)/usr/lib/systemd/system/smarter-k3s-agent.service \
		$(TARGET_DIR)/usr/lib/systemd/system/smarter-k3s-agent.service
endef

$(eval $(generic-package))
