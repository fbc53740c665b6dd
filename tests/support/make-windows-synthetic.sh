#!/bin/bash
# Builds a fixed VHD shaped like the OS disk of an Azure Windows Server
# 2022 Datacenter image that was generalized with sysprep, by default
# with the dirty state a vendor's VM leaves. No Windows image can be
# fetched here, so everything in it is made up: the disk layout, NTFS
# volumes and registry hive files are in their real formats, but it
# contains no Windows binary and no Microsoft content. The Windows
# volume's files come from make-windows-tree.sh, which describes them.
#
# Usage: make-windows-synthetic.sh [--clean] OUT.vhd
#
# --clean leaves the dirty state out (see make-windows-tree.sh).
#
# Needs libguestfs (guestfish) with NTFS support (the Debian package
# ntfs-3g on the host, which the appliance copies), the hivex tools
# hivexregedit and hivexget (libhivex-bin, libwin-hivex-perl), qemu-img,
# python3 and tar. It uses no loop device or device-mapper.
#
# Disk layout (32 GiB virtual, MBR, 512-byte sectors, disk signature
# 0x4A7D1C93), written as a fixed VHD (sparse on the host):
#   1  NTFS (0x07), active  sectors 2048..1026047 (500 MiB), label
#      "System Reserved", with a placeholder bootmgr and Boot folder
#   2  NTFS (0x07)          sectors 1026048..end, label "Windows", the
#      C: drive in MountedDevices of the SYSTEM hive
# The disk does not boot.
#
# What libguestfs 1.48 inspection needs to report this disk as Windows
# (type, distro, product name, version 10.0, x86_64), found by removing
# each part from a built image:
#   - Windows/System32/cmd.exe next to System32/config: without cmd.exe
#     inspect-os finds no operating system. The architecture comes from
#     cmd.exe's PE header (ntoskrnl.exe is not read).
#   - SOFTWARE: Microsoft\Windows NT\CurrentVersion with ProductName and
#     the DWORDs CurrentMajorVersionNumber (10) and CurrentMinorVersionNumber
#     (0). Without them the version is parsed from CurrentVersion, which
#     Windows 10 and later leave at "6.3", so inspection reports 6.3.
#   - SYSTEM: it must exist, or inspection keeps none of the registry
#     results (version 0.0, hostname unknown). Inspection reads the drive
#     mappings from MountedDevices and the hostname from
#     ControlSet001\Services\Tcpip\Parameters\Hostname (ControlSet001
#     by Select\Current). These keys were not removed one at a time.
#
# NOTE: qemu-img and libguestfs probe a fixed VHD as raw, because its only
# VHD header is the footer at the end, so pass the format vpc explicitly.
set -euo pipefail

tree_args=()
if [[ ${1:-} == --clean ]]; then
    tree_args=(--clean)
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: $0 [--clean] OUT.vhd" >&2
    exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)

# libguestfs cannot use KVM on this kind of machine.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

readonly DISK_BYTES=$((32 * 1024 * 1024 * 1024))
readonly SYSRES_START=2048
readonly WIN_START=1026048
# The MBR disk signature, at byte 440 of the disk, as a hex number.
readonly DISK_SIGNATURE=4A7D1C93
# These match make-windows-tree.sh.
readonly HOSTNAME=WIN-4G7Q2K1M9TB
readonly AGENT_VERSION=2.7.41491.1102
readonly PRODUCT="Windows Server 2022 Datacenter"

for tool in guestfish qemu-img hivexregedit hivexget python3 tar; do
    if ! command -v "$tool" >/dev/null; then
        echo "make-windows-synthetic: $tool not found" >&2
        exit 1
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/make-windows-synthetic.XXXXXX")
tmp_out=""
cleanup() {
    rm -rf --one-file-system "$work"
    if [[ -n $tmp_out ]]; then
        rm -f "$tmp_out"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tree=$work/windows
sysres=$work/sysres
raw=$work/disk.raw

# Prints number $2 as $1 bytes, little-endian, in .reg hex (4a,7d,...).
le_bytes() {
    local hex i bytes=()
    hex=$(printf "%0$(($1 * 2))x" "$2")
    for ((i = ${#hex} - 2; i >= 0; i -= 2)); do
        bytes+=("${hex:i:2}")
    done
    (IFS=,; echo "${bytes[*]}")
}

make_sysres_tree() {
    mkdir -p "$sysres/Boot"
    # Not a boot manager: a text placeholder where bootmgr would be.
    echo "placeholder for bootmgr, made by make-windows-synthetic.sh" \
        >"$sysres/bootmgr"
}

bash "$here/make-windows-tree.sh" "${tree_args[@]}" "$tree"
make_sysres_tree

tar -C "$tree" --create --file="$work/windows.tar" --numeric-owner .
tar -C "$sysres" --create --file="$work/sysres.tar" --numeric-owner .
truncate -s "$DISK_BYTES" "$raw"
guestfish -- \
    add "$raw" format:raw : \
    run : \
    part-init /dev/sda mbr : \
    part-add /dev/sda p $SYSRES_START $((WIN_START - 1)) : \
    part-add /dev/sda p $WIN_START -1 : \
    part-set-mbr-id /dev/sda 1 0x07 : \
    part-set-mbr-id /dev/sda 2 0x07 : \
    part-set-bootable /dev/sda 1 true : \
    mkfs ntfs /dev/sda1 "label:System Reserved" : \
    mkfs ntfs /dev/sda2 label:Windows : \
    mount /dev/sda1 / : \
    tar-in "$work/sysres.tar" / : \
    umount / : \
    mount /dev/sda2 / : \
    tar-in "$work/windows.tar" / : \
    umount-all

# The MBR disk signature, little-endian at byte 440.
signature=$(le_bytes 4 "0x$DISK_SIGNATURE")
printf '%b' "\\x${signature//,/\\x}" |
    dd of="$raw" bs=1 seek=440 conv=notrunc status=none

tmp_out=$(mktemp "$out.tmp.XXXXXX")
qemu-img convert -q -f raw -O vpc -o subformat=fixed,force_size=on \
    "$raw" "$tmp_out"
rm -f "$raw"

# Reads the image back in a new appliance, read-only, with inspection.
mkdir -p "$work/check"
cat >"$work/verify.guestfish" <<EOF
run
echo @roots
inspect-os
echo @type
inspect-get-type /dev/sda2
echo @distro
inspect-get-distro /dev/sda2
echo @product
inspect-get-product-name /dev/sda2
echo @variant
inspect-get-product-variant /dev/sda2
echo @version
inspect-get-major-version /dev/sda2
inspect-get-minor-version /dev/sda2
echo @arch
inspect-get-arch /dev/sda2
echo @hostname
inspect-get-hostname /dev/sda2
echo @systemroot
inspect-get-windows-systemroot /dev/sda2
echo @drives
inspect-get-drive-mappings /dev/sda2
echo @partitions
part-list /dev/sda
echo @mbr-ids
part-get-mbr-id /dev/sda 1
part-get-mbr-id /dev/sda 2
echo @bootable
part-get-bootable /dev/sda 1
echo @labels
vfs-label /dev/sda1
vfs-label /dev/sda2
echo @types
vfs-type /dev/sda1
vfs-type /dev/sda2
echo @disk-size
blockdev-getsize64 /dev/sda
mount-ro /dev/sda2 /
echo @agent
is-file /WindowsAzure/GuestAgent_$AGENT_VERSION/WaAppAgent.exe
echo @pe
file /Windows/System32/ntoskrnl.exe
download /Windows/System32/config/SOFTWARE $work/check/SOFTWARE
download /Windows/System32/config/SYSTEM $work/check/SYSTEM
download /Windows/System32/config/SAM $work/check/SAM
echo @end
EOF
guestfish --ro --format=vpc -a "$tmp_out" -f "$work/verify.guestfish" \
    >"$work/verify.out"

# Prints the lines of section NAME of the verification output.
section() {
    awk -v name="@$1" '/^@/ { on = ($0 == name); next } on' "$work/verify.out"
}
# Prints value $3 of key $2 in the read-back hive $1.
hive_value() { hivexget "$work/check/$1" "$2" "$3"; }

# Prints the ACB flags (offset 0x38 of the F value) of SAM user key $1
# as four hex digits.
acb_flags() {
    hivexget "$work/check/SAM" "$users\\$1" F |
        od -An -tx1 -j $((0x38)) -N2 | awk '{ print $2 $1 }'
}

failures=0
check() {
    local what=$1
    shift
    if "$@"; then
        printf '  ok    %s\n' "$what"
    else
        printf '  FAIL  %s\n' "$what"
        failures=$((failures + 1))
    fi
}
has_line() { section "$1" | grep -qxF -- "$2"; }
equal() { [[ $1 == "$2" ]]; }

cv='\Microsoft\Windows NT\CurrentVersion'
cs='\ControlSet001'
users='\SAM\Domains\Account\Users'
version=$(section version | paste -sd .)
echo "make-windows-synthetic: verifying $out"
check "inspection finds one root, /dev/sda2" equal "$(section roots)" /dev/sda2
check "type is windows" equal "$(section type)" windows
check "distro is windows" equal "$(section distro)" windows
check "product name is $PRODUCT" equal "$(section product)" "$PRODUCT"
check "product variant is Server" equal "$(section variant)" Server
check "version is 10.0 ($version)" equal "$version" 10.0
check "architecture is x86_64" equal "$(section arch)" x86_64
check "hostname is $HOSTNAME" equal "$(section hostname)" "$HOSTNAME"
check "system root is /Windows" equal "$(section systemroot)" /Windows
check "drive C: is /dev/sda2" has_line drives "C: /dev/sda2"
check "partition 1 starts at 1 MiB, 500 MiB long" \
    has_line partitions "  part_size: $((500 * 1024 * 1024))"
check "partitions are NTFS (0x07)" \
    equal "$(section mbr-ids | paste -sd ' ')" "0x7 0x7"
check "partition 1 is active" equal "$(section bootable)" true
check "labels are System Reserved and Windows" \
    equal "$(section labels | paste -sd /)" "System Reserved/Windows"
check "file systems are NTFS" \
    equal "$(section types | paste -sd ' ')" "ntfs ntfs"
check "MBR disk signature is 0x$DISK_SIGNATURE" \
    equal "$(od -An -tx4 -j 440 -N 4 "$tmp_out" | tr -d ' ')" \
    "${DISK_SIGNATURE,,}"
check "virtual size is 32 GiB" equal "$(section disk-size)" "$DISK_BYTES"
check "ntoskrnl.exe is PE32+ x86-64" \
    has_line pe "PE32+ executable (native) x86-64, for MS Windows"
check "guest agent folder exists" equal "$(section agent)" true
check "SOFTWARE CurrentBuild is 20348" \
    equal "$(hive_value SOFTWARE "$cv" CurrentBuild)" 20348
check "SOFTWARE UBR is 2607" equal "$(hive_value SOFTWARE "$cv" UBR)" 2607
check "SOFTWARE EditionID is ServerDatacenter" \
    equal "$(hive_value SOFTWARE "$cv" EditionID)" ServerDatacenter
check "SOFTWARE AUOptions is 4" \
    equal "$(hive_value SOFTWARE \
        '\Policies\Microsoft\Windows\WindowsUpdate\AU' AUOptions)" 4
check "SYSTEM PROCESSOR_ARCHITECTURE is AMD64" \
    equal "$(hive_value SYSTEM \
        "$cs\\Control\\Session Manager\\Environment" PROCESSOR_ARCHITECTURE)" AMD64
check "SYSTEM fDenyTSConnections is 0" \
    equal "$(hive_value SYSTEM "$cs\\Control\\Terminal Server" \
        fDenyTSConnections)" 0
check "SYSTEM WindowsAzureGuestAgent starts automatically" \
    equal "$(hive_value SYSTEM "$cs\\Services\\WindowsAzureGuestAgent" Start)" 2
check "SYSTEM GeneralizationState is 7" \
    equal "$(hive_value SYSTEM '\Setup\Status\SysprepStatus' \
        GeneralizationState)" 7
check "SAM Administrator has the default value of type 0x1f4" \
    equal "$(hivexregedit --export "$work/check/SAM" "$users\\Names\\Administrator" |
        grep '^@=')" '@=hex(1f4):'
check "SAM Administrator is disabled (ACB flags 0x0211)" \
    equal "$(acb_flags 000001F4)" 0211
if [[ ${#tree_args[@]} -gt 0 ]]; then
    check "SAM Guest is disabled (ACB flags 0x0215)" \
        equal "$(acb_flags 000001F5)" 0215
else
    check "SAM Guest is enabled (ACB flags 0x0214)" \
        equal "$(acb_flags 000001F5)" 0214
fi

if ((failures > 0)); then
    echo "make-windows-synthetic: $failures checks failed. The guestfish output:" >&2
    cat "$work/verify.out" >&2
    exit 1
fi

# mktemp made the file with mode 0600.
chmod 0644 "$tmp_out"
mv "$tmp_out" "$out"
tmp_out=""
echo "make-windows-synthetic: wrote $out ($(du -h "$out" | cut -f1) on disk)"
