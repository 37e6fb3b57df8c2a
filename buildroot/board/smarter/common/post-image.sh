#!/bin/sh
# Post-image script of the smarter-cni gateway images: sdcard.img from
# the board's genimage.cfg (boot.vfat + rootfs.ext4).
# Buildroot runs it with the images directory as $1 and the board
# directory (BR2_ROOTFS_POST_SCRIPT_ARGS) as $2.
set -eu

BINARIES_DIR=$1
BOARD_DIR=$2
GENIMAGE_TMP="${BUILD_DIR:?}/genimage.tmp"

ROOTPATH_TMP=$(mktemp -d)
trap 'rm -rf "${ROOTPATH_TMP}"' EXIT
rm -rf "${GENIMAGE_TMP}"

# Empty root path: the rootfs image is already built.
genimage \
	--rootpath "${ROOTPATH_TMP}" \
	--tmppath "${GENIMAGE_TMP}" \
	--inputpath "${BINARIES_DIR}" \
	--outputpath "${BINARIES_DIR}" \
	--config "${BOARD_DIR}/genimage.cfg"
