#!/bin/bash
# Builds a small qcow2 image whose root and /home are btrfs subvolumes
# (`@` and `@home`), as Ubuntu's installer lays them out, with
# just enough of a Debian 12 tree for libguestfs inspection.
#
# Usage: make-btrfs-subvolumes.sh OUT.qcow2
#
# Needs root and libguestfs (guestfish).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT.qcow2" >&2
    exit 2
fi
out=$1
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

readonly FS_UUID=5d0c9a7e-2b1f-4c3a-8e6d-9f0a1b2c3d4e

work=$(mktemp -d "${TMPDIR:-/tmp}/make-btrfs-subvolumes.XXXXXX")
tmp_out=""
cleanup() {
    rm -rf --one-file-system "$work"
    if [[ -n $tmp_out ]]; then
        rm -f "$tmp_out"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

root=$work/root
home=$work/home
mkdir -p "$root"/{etc,usr/bin,home,root} "$home/alice"
ln -s usr/bin "$root/bin"
cp /bin/true "$root/usr/bin/ls"
cp /bin/true "$root/usr/bin/bash"
cat >"$root/etc/os-release" <<'OS'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
ID=debian
OS
echo 12.5 >"$root/etc/debian_version"
cat >"$root/etc/fstab" <<FSTAB
UUID=$FS_UUID / btrfs subvol=@,defaults 0 0
UUID=$FS_UUID /home btrfs subvol=@home,defaults 0 0
FSTAB
echo "kept on the @home subvolume" >"$home/alice/note"
tar -C "$root" --numeric-owner -cf "$work/root.tar" .
tar -C "$home" --numeric-owner -cf "$work/home.tar" .

tmp_out=$(mktemp "$out.tmp.XXXXXX")
qemu-img create -q -f qcow2 "$tmp_out" 1G
guestfish --rw -a "$tmp_out" -- \
    run : \
    part-disk /dev/sda gpt : \
    mkfs btrfs /dev/sda1 : \
    set-uuid /dev/sda1 "$FS_UUID" : \
    mount /dev/sda1 / : \
    btrfs-subvolume-create /@ : \
    btrfs-subvolume-create /@home : \
    umount / : \
    mount-options subvol=@ /dev/sda1 / : \
    tar-in "$work/root.tar" / : \
    mount-options subvol=@home /dev/sda1 /home : \
    tar-in "$work/home.tar" /home : \
    umount-all
mv "$tmp_out" "$out"
tmp_out=""
