#!/bin/bash
# Builds a fixed VHD shaped like the OS disk of an Azure Windows Server
# 2022 Datacenter image that was generalized with sysprep and left with
# some dirty state. No Windows image can be fetched here, so everything
# in it is made up: the disk layout, NTFS volumes and registry hive files
# are in their real formats, but it contains no Windows binary and no
# Microsoft content. The .exe files are minimal PE32+ x86-64 headers with
# no code, the registry hives are written from scratch (an empty hive by
# this script, values by hivexregedit) and contain only the values below.
#
# Usage: make-windows-synthetic.sh OUT.vhd
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
# The Windows volume contains:
#   Windows/System32/config/{SOFTWARE,SYSTEM,SAM}  registry hives
#   Windows/System32/{cmd.exe,ntoskrnl.exe}         PE32+ x86-64 headers
#   Windows/System32/drivers/etc/hosts              with an extra entry
#   Windows/Panther/unattend.xml                    leftover, with a password
#   Windows/Logs/CBS/CBS.log                        leftover log
#   WindowsAzure/GuestAgent_2.7.41491.1102/         guest agent placeholder
#   Program Files/, Program Files (x86)/, ProgramData/, Users/Default/,
#   Users/Public/
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

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT.vhd" >&2
    exit 2
fi
out=$1

# libguestfs cannot use KVM on this kind of machine.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

readonly DISK_BYTES=$((32 * 1024 * 1024 * 1024))
readonly SYSRES_START=2048
readonly WIN_START=1026048
# The MBR disk signature, at byte 440 of the disk, as a hex number.
readonly DISK_SIGNATURE=4A7D1C93
readonly HOSTNAME=WIN-4G7Q2K1M9TB
readonly AGENT_VERSION=2.7.41491.1102
readonly PRODUCT="Windows Server 2022 Datacenter"
# The password in the leftover answer file.
readonly UNATTEND_PASSWORD=Forge-Test-Pa55!

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

# Helpers in Python: an empty hive file, a PE32+ header, a SAM F value,
# and .reg files with the parent keys that hivexregedit needs.
cat >"$work/helper.py" <<'PYTHON'
import struct
import sys

# A fixed time for every timestamp: 2024-01-17 21:20:00 UTC.
FILETIME = 133500000000000000


def empty_hive(path, name):
    """Writes a hive with a root key and nothing else, laid out as
    Windows and hivex do: a 4 KiB "regf" base block, then one 4 KiB
    "hbin" bin holding the root "nk" cell, one "sk" security cell and
    a free cell for the rest."""
    base = bytearray(4096)
    # signature, sequence numbers, timestamp, version 1.5, type 0
    # (primary), format 1 (direct memory load), root cell offset (from
    # the first bin), size of the bins, clustering factor.
    struct.pack_into('<4sIIQIIIIIII', base, 0, b'regf', 1, 1, FILETIME,
                     1, 5, 0, 1, 0x20, 0x1000, 1)
    file_name = name.encode('utf-16-le')[:64]
    base[0x30:0x30 + len(file_name)] = file_name
    checksum = 0
    for offset in range(0, 0x1fc, 4):
        checksum ^= struct.unpack_from('<I', base, offset)[0]
    struct.pack_into('<I', base, 0x1fc, checksum)

    hbin = bytearray(4096)
    struct.pack_into('<4sIIQQI', hbin, 0, b'hbin', 0, 0x1000, 0, FILETIME, 0)
    nk_offset, nk_size = 0x20, 0x58
    sk_offset, sk_size = nk_offset + nk_size, 0x30
    root = b'ROOT'
    none = 0xffffffff
    # Cell size (negative: in use), "nk", flags (hive entry, no delete,
    # ASCII name), timestamp, access bits, parent, subkey counts, subkey
    # lists, value count, value list, security cell, class name, five
    # size hints and work field, name length and class length.
    struct.pack_into('<i2sHQIIIIIIIIIIIIIIIHH', hbin, nk_offset, -nk_size,
                     b'nk', 0x2c, FILETIME, 0, 0, 0, 0, none, none, 0, none,
                     sk_offset, none, 0, 0, 0, 0, 0, len(root), 0)
    name_at = nk_offset + 4 + 0x4c
    hbin[name_at:name_at + len(root)] = root
    # A self-relative security descriptor with no owner, group or ACLs.
    # hivex copies the root's security cell to each key it adds.
    descriptor = struct.pack('<BBHIIII', 1, 0, 0x8000, 0, 0, 0, 0)
    struct.pack_into('<i2sHIIII', hbin, sk_offset, -sk_size, b'sk', 0,
                     sk_offset, sk_offset, 1, len(descriptor))
    hbin[sk_offset + 0x18:sk_offset + 0x18 + len(descriptor)] = descriptor
    free_offset = sk_offset + sk_size
    struct.pack_into('<i', hbin, free_offset, 0x1000 - free_offset)
    with open(path, 'wb') as f:
        f.write(bytes(base + hbin))


def pe(path, subsystem):
    """Writes a 512-byte PE32+ image header for x86-64 with no sections:
    enough for file(1) and PE header checks, nothing to run."""
    image = bytearray(512)
    struct.pack_into('<2s', image, 0, b'MZ')
    struct.pack_into('<I', image, 0x3c, 0x40)
    # "PE\0\0", then the COFF header: machine AMD64, no sections,
    # timestamp, no symbols, optional header size, executable and
    # large-address-aware.
    struct.pack_into('<4sHHIIIHH', image, 0x40, b'PE\0\0', 0x8664, 0,
                     0x65a84580, 0, 0, 0xf0, 0x22)
    optional = 0x58
    # The optional header: magic PE32+, linker 14.0, no code or data,
    # entry point and base of code 0x1000, image base and alignments.
    # Then OS, image and subsystem versions 10.0, image and header
    # sizes, checksum 0, subsystem and DLL characteristics (dynamic
    # base, NX, terminal server aware). Last come stack and heap sizes,
    # loader flags and 16 data directories, all 0.
    struct.pack_into('<HBBIIIIIQIIHHHHHHIIIIHHQQQQII', image, optional,
                     0x20b, 14, 0, 0, 0, 0, 0x1000, 0x1000,
                     0x140000000, 0x1000, 0x200, 10, 0, 10, 0, 10, 0, 0,
                     0x1000, 0x200, 0, subsystem, 0x8160,
                     0x100000, 0x1000, 0x100000, 0x1000, 0, 16)
    with open(path, 'wb') as f:
        f.write(bytes(image))


def sam_f(rid, acb):
    """Prints the 80-byte F value of a SAM user key as .reg hex. The
    layout: 0x00 revision (2), 0x08 last logon, 0x18 password last set,
    0x20 account expires, 0x28 last failed logon (FILETIMEs, 0 = never;
    0x7fffffffffffffff = never expires), 0x30 RID (u32), 0x38 ACB flags
    (u16: 0x0001 account disabled, 0x0004 password not required, 0x0010
    normal account, 0x0200 password does not expire), 0x3a country
    code, 0x3c code page, 0x3e failed logon count, 0x40 logon count."""
    value = bytearray(0x50)
    struct.pack_into('<H', value, 0, 2)
    struct.pack_into('<Q', value, 0x20, 0x7fffffffffffffff)
    struct.pack_into('<I', value, 0x30, rid)
    struct.pack_into('<H', value, 0x38, acb)
    print('hex:' + ','.join('%02x' % b for b in value))


def with_parents(depth):
    """Copies a .reg file from standard input to standard output and
    puts before each key the parent keys not yet named: hivexregedit
    --merge creates a key only under one that exists. The first DEPTH
    parts of each path are the --prefix, which is the hive's root."""
    seen = set()
    for line in sys.stdin:
        text = line.rstrip('\r\n')
        if text.startswith('[') and text.endswith(']'):
            parts = text[1:-1].split('\\')
            for end in range(depth + 1, len(parts)):
                parent = '\\'.join(parts[:end])
                if parent not in seen:
                    seen.add(parent)
                    sys.stdout.write('[%s]\n\n' % parent)
            seen.add('\\'.join(parts))
        sys.stdout.write(text + '\n')


command = sys.argv[1]
if command == 'hive':
    empty_hive(sys.argv[2], sys.argv[3])
elif command == 'pe':
    pe(sys.argv[2], int(sys.argv[3]))
elif command == 'sam-f':
    sam_f(int(sys.argv[2], 0), int(sys.argv[3], 0))
elif command == 'with-parents':
    with_parents(int(sys.argv[2]))
else:
    sys.exit('helper.py: unknown command ' + command)
PYTHON

helper() { python3 "$work/helper.py" "$@"; }

# Prints number $2 as $1 bytes, little-endian, in .reg hex (4a,7d,...).
le_bytes() {
    local hex i bytes=()
    hex=$(printf "%0$(($1 * 2))x" "$2")
    for ((i = ${#hex} - 2; i >= 0; i -= 2)); do
        bytes+=("${hex:i:2}")
    done
    (IFS=,; echo "${bytes[*]}")
}

# Writes standard input to the Windows volume's path $1 with CRLF line
# ends, as Windows text files have.
put() {
    local path=$tree/$1
    mkdir -p "$(dirname "$path")"
    sed 's/$/\r/' >"$path"
}

# Makes hive $1 (SOFTWARE, SYSTEM or SAM) from the .reg text on standard
# input, under HKEY_LOCAL_MACHINE\$1, into the config folder.
make_hive() {
    local name=$1 hive=$tree/Windows/System32/config/$1
    helper hive "$hive" "$name"
    helper with-parents 2 >"$work/$name.reg"
    hivexregedit --merge --prefix "HKEY_LOCAL_MACHINE\\$name" \
        "$hive" "$work/$name.reg"
}

# NOTE: the Microsoft\GuestAgent key is a made-up marker of the Azure
# guest agent. The keys a real agent writes were not checked.
make_software_hive() {
    make_hive SOFTWARE <<EOF
Windows Registry Editor Version 5.00

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]
"ProductName"="$PRODUCT"
"EditionID"="ServerDatacenter"
"InstallationType"="Server"
"CurrentVersion"="6.3"
"CurrentMajorVersionNumber"=dword:0000000a
"CurrentMinorVersionNumber"=dword:00000000
"CurrentBuild"="20348"
"CurrentBuildNumber"="20348"
"UBR"=dword:00000a2f
"DisplayVersion"="21H2"
"ReleaseId"="2009"
"CurrentType"="Multiprocessor Free"
"SystemRoot"="C:\\\\Windows"
"PathName"="C:\\\\Windows"
"RegisteredOwner"="Windows User"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion]
"ProgramFilesDir"="C:\\\\Program Files"
"ProgramFilesDir (x86)"="C:\\\\Program Files (x86)"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System]
"EnableLUA"=dword:00000001
"ConsentPromptBehaviorAdmin"=dword:00000005

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{5D1F3F4B-2C8E-4E7A-9B61-7A0F3C2D9E18}]
"DisplayName"="Windows Azure VM Agent - $AGENT_VERSION"
"DisplayVersion"="$AGENT_VERSION"
"Publisher"="Microsoft Corporation"
"InstallLocation"="C:\\\\WindowsAzure\\\\GuestAgent_$AGENT_VERSION"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\GuestAgent]
"GuestAgentVersion"="$AGENT_VERSION"
"InstallPath"="C:\\\\WindowsAzure\\\\GuestAgent_$AGENT_VERSION"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU]
"NoAutoUpdate"=dword:00000000
"AUOptions"=dword:00000004
EOF
}

make_system_hive() {
    # \DosDevices\C: of an MBR disk: the disk signature (little-endian)
    # and the partition's start in bytes (8 bytes, little-endian).
    local c_drive
    c_drive=$(le_bytes 4 "0x$DISK_SIGNATURE"),$(le_bytes 8 $((WIN_START * 512)))
    make_hive SYSTEM <<EOF
Windows Registry Editor Version 5.00

[HKEY_LOCAL_MACHINE\\SYSTEM\\Select]
"Current"=dword:00000001
"Default"=dword:00000001
"Failed"=dword:00000000
"LastKnownGood"=dword:00000001

[HKEY_LOCAL_MACHINE\\SYSTEM\\MountedDevices]
"\\\\DosDevices\\\\C:"=hex:$c_drive

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\ComputerName\\ComputerName]
"ComputerName"="$HOSTNAME"

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Session Manager\\Environment]
"PROCESSOR_ARCHITECTURE"="AMD64"
"OS"="Windows_NT"

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Terminal Server]
"fDenyTSConnections"=dword:00000000

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Control\\Terminal Server\\WinStations\\RDP-Tcp]
"PortNumber"=dword:00000d3d

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\Tcpip\\Parameters]
"Hostname"="$HOSTNAME"
"NV Hostname"="$HOSTNAME"

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\RdAgent]
"DisplayName"="RdAgent"
"ObjectName"="LocalSystem"
"Start"=dword:00000002
"Type"=dword:00000010

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\WindowsAzureGuestAgent]
"DisplayName"="Windows Azure Guest Agent"
"ObjectName"="LocalSystem"
"Start"=dword:00000002
"Type"=dword:00000010

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\MpsSvc]
"DisplayName"="Windows Defender Firewall"
"Start"=dword:00000002
"Type"=dword:00000020

[HKEY_LOCAL_MACHINE\\SYSTEM\\Setup]
"SystemSetupInProgress"=dword:00000000
"OOBEInProgress"=dword:00000000
"SetupType"=dword:00000000

[HKEY_LOCAL_MACHINE\\SYSTEM\\Setup\\Status\\SysprepStatus]
"GeneralizationState"=dword:00000007
"CleanupState"=dword:00000002
EOF
}

# The SAM hive with the two built-in accounts, both disabled. Each user
# has a key under Users named by its RID (0x1f4 Administrator, 0x1f5
# Guest) with the binary F value (see sam_f in helper.py: ACB flags at
# offset 0x38, 0x0001 = disabled), and a key under Users\Names whose
# default value is empty and has the RID as its type. The V value (user
# name, hashes) is left out.
make_sam_hive() {
    local admin_f guest_f
    # Disabled, normal account, password does not expire.
    admin_f=$(helper sam-f 0x1f4 0x0211)
    # Disabled, password not required, normal, password does not expire.
    guest_f=$(helper sam-f 0x1f5 0x0215)
    make_hive SAM <<EOF
Windows Registry Editor Version 5.00

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\000001F4]
"F"=$admin_f

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\000001F5]
"F"=$guest_f

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\Names\\Administrator]
@=hex(1f4):

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\Names\\Guest]
@=hex(1f5):
EOF
}

make_windows_tree() {
    mkdir -p "$tree"/Windows/System32/{config,drivers/etc} \
        "$tree"/{"Program Files","Program Files (x86)",ProgramData} \
        "$tree"/Users/{Default,Public}
    helper pe "$tree/Windows/System32/cmd.exe" 3
    helper pe "$tree/Windows/System32/ntoskrnl.exe" 1
    local agent=$tree/WindowsAzure/GuestAgent_$AGENT_VERSION
    mkdir -p "$agent"
    helper pe "$agent/WaAppAgent.exe" 3

    make_software_hive
    make_system_hive
    make_sam_hive

    # Dirty state that a hardening step should remove or reset.
    put Windows/System32/drivers/etc/hosts <<'EOF'
# Copyright (c) 1993-2009 Microsoft Corp.
#
# This is a sample HOSTS file used by Microsoft TCP/IP for Windows.
#
# localhost name resolution is handled within DNS itself.
#	127.0.0.1       localhost
#	::1             localhost
10.20.30.40	build-cache.internal.example
EOF
    put Windows/Panther/unattend.xml <<EOF
<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
      <UserAccounts>
        <AdministratorPassword>
          <Value>$UNATTEND_PASSWORD</Value>
          <PlainText>true</PlainText>
        </AdministratorPassword>
        <LocalAccounts>
          <LocalAccount wcm:action="add">
            <Password>
              <Value>$UNATTEND_PASSWORD</Value>
              <PlainText>true</PlainText>
            </Password>
            <Name>azureuser</Name>
            <Group>Administrators</Group>
          </LocalAccount>
        </LocalAccounts>
      </UserAccounts>
    </component>
  </settings>
</unattend>
EOF
    put Windows/Logs/CBS/CBS.log <<'EOF'
2024-01-17 21:12:04, Info                  CBS    Starting TrustedInstaller initialization.
2024-01-17 21:12:05, Info                  CBS    Session: 31084753_1204 initialized by client WindowsUpdateAgent.
2024-01-17 21:19:58, Info                  CBS    Ending TrustedInstaller finalization.
EOF
    put WindowsAzure/Logs/WaAppAgent.log <<EOF
[00000004] 01/17/2024 21:15:31.42 [INFO]  WindowsAzureGuestAgent starting. Version $AGENT_VERSION
EOF
}

make_sysres_tree() {
    mkdir -p "$sysres/Boot"
    # Not a boot manager: a text placeholder where bootmgr would be.
    echo "placeholder for bootmgr, made by make-windows-synthetic.sh" \
        >"$sysres/bootmgr"
}

make_windows_tree
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
echo @unattend
is-file /Windows/Panther/unattend.xml
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
check "unattend.xml is left over" equal "$(section unattend)" true
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
check "SAM Guest is disabled (ACB flags 0x0215)" \
    equal "$(acb_flags 000001F5)" 0215

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
