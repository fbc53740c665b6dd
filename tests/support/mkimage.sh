#!/bin/bash
# Builds a small GPT disk image for the libguestfs tests, without loop
# devices: sgdisk writes the table into a plain file, and mkfs.ext4 and
# mkfs.fat format the partitions in place at their byte offsets.
#
# Usage: mkimage.sh OUTPUT
#
# MKIMAGE_EXTRA_FILES=N adds N small files under /usr/share/bulk, ten to a
# directory, to time walks over a tree of realistic size.
#
# Layout (512-byte sectors):
#   1  BIOS boot (EF02)   sectors 2048..4095, no file system
#   2  EFI system (EF00)  sectors 4096..208895 (100 MiB), FAT32
#   3  Linux root (8300)  sector 208896 to the end, ext4 from a small tree
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTPUT" >&2
    exit 2
fi
out=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

readonly ESP_START=4096
readonly ROOT_START=208896
readonly ROOT_UUID=0b6cbb1a-4b1f-4c1e-9d55-6a7e1c2f3a40
readonly ESP_VOLID=1234ABCD

rm -f "$out"
truncate -s 1G "$out"
sgdisk --clear \
    --new=1:2048:4095 --typecode=1:EF02 --change-name=1:bios \
    --new=2:${ESP_START}:$((ROOT_START - 1)) --typecode=2:EF00 --change-name=2:esp \
    --new=3:${ROOT_START}:0 --typecode=3:8300 --change-name=3:root \
    "$out" >/dev/null

# The root partition ends where sgdisk put it: read its last sector back.
root_end=$(sgdisk --info=3 "$out" | awk '/^Last sector:/ {print $3}')
root_kib=$(((root_end - ROOT_START + 1) / 2))
esp_kib=$(((ROOT_START - ESP_START) / 2))

# The root tree: enough of a Debian 12 system for libguestfs inspection,
# which wants /etc/os-release, /etc/fstab and a binary to read the
# architecture from.
tree=$work/root
mkdir -p "$tree"/{etc,usr/bin,boot/efi,var/log,root,home/alice}
ln -s usr/bin "$tree/bin"
cp /bin/true "$tree/usr/bin/ls"
cat >"$tree/etc/os-release" <<'OS'
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
OS
echo 12.5 >"$tree/etc/debian_version"
cat >"$tree/etc/passwd" <<'PW'
root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice:/home/alice:/bin/bash
PW
cat >"$tree/etc/shadow" <<'SH'
root:*:19700:0:99999:7:::
alice:!:19700:0:99999:7:::
SH
cat >"$tree/etc/fstab" <<FS
UUID=$ROOT_UUID / ext4 errors=remount-ro 0 1
UUID=${ESP_VOLID:0:4}-${ESP_VOLID:4:4} /boot/efi vfat umask=0077 0 1
FS
chmod 0640 "$tree/etc/shadow"
chown 0:42 "$tree/etc/shadow"
chown -R 1000:1000 "$tree/home/alice"
ln -s /usr/share/zoneinfo/Etc/UTC "$tree/etc/localtime"
# A GRUB configuration for the boot harness to edit; no boot loader is
# installed, so the disk does not boot.
mkdir -p "$tree/boot/grub"
cat >"$tree/boot/grub/grub.cfg" <<'GRUB'
menuentry 'Debian GNU/Linux' {
	linux /boot/vmlinuz root=UUID=0b6cbb1a-4b1f-4c1e-9d55-6a7e1c2f3a40 ro console=ttyS0 earlyprintk=ttyS0 rootdelay=300
}
GRUB
: >"$tree/var/log/empty.log"
# A file larger than one libguestfs protocol message (4 MiB), so that
# reads in chunks are exercised: 5 MiB of a repeating byte pattern.
head -c $((5 * 1024 * 1024)) /dev/zero | tr '\0' 'x' >"$tree/root/big.bin"

extra=${MKIMAGE_EXTRA_FILES:-0}
if ((extra > 0)); then
    dirs=()
    for ((d = 0; d < (extra + 9) / 10; d++)); do
        dirs+=("$tree/usr/share/bulk/$((d / 100))/$d")
    done
    mkdir -p "${dirs[@]}"
    for ((i = 0; i < extra; i++)); do
        echo "$i" >"$tree/usr/share/bulk/$((i / 1000))/$((i / 10))/f$i"
    done
fi

mkfs.ext4 -q -F -U "$ROOT_UUID" -L root -E offset=$((ROOT_START * 512)) \
    -d "$tree" "$out" "${root_kib}k"

# mkfs.fat warns that the file is larger than the file system; it is
# meant to be, so that warning alone is filtered out.
mkfs.fat -F 32 -s 1 -n ESP -i "$ESP_VOLID" --offset=$ESP_START "$out" "$esp_kib" \
    2> >(grep -v "block count mismatch" >&2) >/dev/null
mmd -i "$out@@$((ESP_START * 512))" ::/EFI ::/EFI/BOOT
echo "not a real loader" >"$work/BOOTX64.EFI"
mcopy -i "$out@@$((ESP_START * 512))" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
