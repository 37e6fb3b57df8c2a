include $(sort $(wildcard $(BR2_EXTERNAL_SMARTER_CNI_PATH)/package/*/*.mk))
