#!/bin/sh
# Installs the Debian 12 packages that forge and its test suite need.
# Run as root. Safe to run again: apt skips what is already installed.
set -eu

export DEBIAN_FRONTEND=noninteractive

# A failing third-party source must not stop the set-up, so the update's
# exit status is ignored and the install below reports what is missing.
apt-get update -q || echo "install-deps: apt-get update reported errors; continuing" >&2

# python3-jsonschema validates the SBOM against the SPDX 2.3 schema in the
# tests. apt-utils indexes a recipe's folder of packages (apt-ftparchive);
# libguestfs-xfs lets libguestfs read XFS, the RHEL family's root.
# libcap2-bin (setcap) and openssl (password hashes) build the test
# images of tests/support/make-*.sh, which also use attr and acl (both
# dependencies of libguestfs0). ntfs-3g lets libguestfs read and write
# NTFS; libhivex-bin and libwin-hivex-perl (hivexget, hivexregedit) make
# the registry hives of the Windows test images.
packages="
  mmdebstrap
  gdisk
  dosfstools
  mtools
  e2fsprogs
  grub-pc-bin
  grub-efi-amd64-bin
  qemu-system-x86
  ovmf
  libguestfs0
  libguestfs-dev
  libguestfs-tools
  linux-image-amd64
  clamav
  pkg-config
  python3-jsonschema
  apt-utils
  libguestfs-xfs
  libcap2-bin
  openssl
  ntfs-3g
  libhivex-bin
  libwin-hivex-perl
"

# libguestfs depends on the qemu-utils of Debian 12. A machine that carries
# a newer qemu-utils (from backports or Debian 13) must go back to the
# Debian 12 one, or apt cannot satisfy libguestfs.
downgrade=""
installed=$(dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null || true)
if [ -n "$installed" ] && echo "$installed" | grep -q 'bpo\|deb13'; then
  downgrade="qemu-utils/bookworm"
fi

# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends --allow-downgrades $downgrade $packages
