#!/bin/bash
# Writes the files of a made-up Windows Server 2022 Datacenter volume
# (the C: drive of an Azure image generalized with sysprep) into a
# folder: registry hives in their real format, holding the values that
# forge's Windows rules read, and a few files. Nothing in it comes from
# Windows: the .exe files are minimal PE32+ x86-64 headers with no code,
# and the hives are written from scratch (an empty hive by this script,
# values by hivexregedit).
#
# Usage: make-windows-tree.sh [--clean] DIR
#
# By default the volume has the dirty state a vendor's VM leaves and a
# build must remove or reset; with --clean every Windows rule of
# `forge check` passes on it (given a ClamAV database and a recipe that
# pins build 20348.2607 or older). make-windows-synthetic.sh puts the
# folder on an NTFS disk; forge's rule tests read it as it is.
#
# Needs python3 and hivexregedit (libwin-hivex-perl).
#
# The volume contains:
#   Windows/System32/config/{SOFTWARE,SYSTEM,SAM}  registry hives
#   Windows/System32/{cmd.exe,ntoskrnl.exe}         PE32+ x86-64 headers
#   Windows/System32/drivers/etc/hosts              comments only
#   Windows/System32/Tasks/Microsoft/Windows/Defrag/ScheduledDefrag
#                                                   task running as SYSTEM
#   Windows/Setup/State/State.ini                   sealed to OOBE
#   WindowsAzure/GuestAgent_2.7.41491.1102/         guest agent placeholder
#   Program Files/, Program Files (x86)/, ProgramData/, Users/Default/,
#   Users/Public/, empty Windows/Logs/ and Windows/Temp/
# The dirty state (left out with --clean):
#   an extra hosts entry; Windows/Panther/unattend.xml with passwords;
#   Windows/Panther/setupact.log, Windows/Logs/CBS/CBS.log and
#   WindowsAzure/Logs/WaAppAgent.log; Users/Public/Documents/signing.pfx;
#   a certificate in the machine's personal store; NoAutoUpdate as a
#   string; auto-logon as Administrator with a stored password; the Guest
#   account enabled with a blank password; an active inbound WinRM
#   firewall rule.
set -euo pipefail

clean=false
if [[ ${1:-} == --clean ]]; then
    clean=true
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: $0 [--clean] DIR" >&2
    exit 2
fi
tree=$1

readonly HOSTNAME=WIN-4G7Q2K1M9TB
readonly AGENT_VERSION=2.7.41491.1102
readonly PRODUCT="Windows Server 2022 Datacenter"
# The partition that holds this volume, in 512-byte sectors, and the
# disk's MBR signature, for MountedDevices in the SYSTEM hive.
readonly WIN_START=1026048
readonly DISK_SIGNATURE=4A7D1C93
# The password in the leftover answer file and auto-logon setting.
readonly LEFTOVER_PASSWORD=Forge-Test-Pa55!

for tool in hivexregedit python3; do
    if ! command -v "$tool" >/dev/null; then
        echo "make-windows-tree: $tool not found" >&2
        exit 1
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/make-windows-tree.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
trap 'exit 130' INT TERM

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


def sam_v(name, hash_length):
    """Prints the V value of a SAM user key as .reg hex: a table of 17
    entries (offset from 0xcc, length, unknown) followed by the data.
    Only the user name (entry 1) and the NT hash (entry 14, at 0xa8) are
    filled. HASH_LENGTH 0x38 is the AES form of a set password, 0x18
    that form with no password; the hash bytes are made up."""
    table = bytearray(0xcc)
    data = bytearray()
    user = name.encode('utf-16-le')
    struct.pack_into('<III', table, 1 * 12, len(data), len(user), 0)
    data += user + bytes(-len(user) % 4)
    digest = bytearray(hash_length)
    if hash_length >= 0x18:
        # PEK id, revision 2 (AES), offset of the encrypted data.
        struct.pack_into('<HHI', digest, 0, 0, 2, 0x10)
        for i in range(8, hash_length):
            digest[i] = (i * 37 + len(name)) & 0xff
    struct.pack_into('<III', table, 14 * 12, len(data), hash_length, 0)
    data += digest
    print('hex:' + ','.join('%02x' % b for b in table + data))


def task(path, user_id):
    """Writes a scheduled task file as Windows does: UTF-16LE with a
    byte order mark, running as USER_ID."""
    xml = ('<?xml version="1.0" encoding="UTF-16"?>\r\n'
           '<Task version="1.6" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">\r\n'
           '  <Principals>\r\n'
           '    <Principal id="Author">\r\n'
           '      <UserId>%s</UserId>\r\n'
           '      <RunLevel>HighestAvailable</RunLevel>\r\n'
           '    </Principal>\r\n'
           '  </Principals>\r\n'
           '  <Actions Context="Author">\r\n'
           '    <Exec><Command>%%windir%%\\system32\\defrag.exe</Command></Exec>\r\n'
           '  </Actions>\r\n'
           '</Task>\r\n') % user_id
    with open(path, 'wb') as f:
        f.write(b'\xff\xfe' + xml.encode('utf-16-le'))


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
elif command == 'sam-v':
    sam_v(sys.argv[2], int(sys.argv[3], 0))
elif command == 'task':
    task(sys.argv[2], sys.argv[3])
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

# Writes standard input to the volume's path $1 with CRLF line ends, as
# Windows text files have.
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

# Prints .reg text only when the volume is dirty.
dirty() {
    if ! $clean; then
        cat
    else
        cat >/dev/null
    fi
}

# NOTE: the Microsoft\GuestAgent key is a made-up marker of the Azure
# guest agent. The keys a real agent writes were not checked.
make_software_hive() {
    local no_auto_update='dword:00000000'
    if ! $clean; then
        # Windows ignores a policy value that is not a DWORD.
        no_auto_update='"0"'
    fi
    {
        cat <<EOF
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

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon]
"AutoAdminLogon"="0"
"Shell"="explorer.exe"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion]
"ProgramFilesDir"="C:\\\\Program Files"
"ProgramFilesDir (x86)"="C:\\\\Program Files (x86)"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System]
"EnableLUA"=dword:00000001
"ConsentPromptBehaviorAdmin"=dword:00000005

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\Packages\\Package_for_RollupFix~31bf3856ad364e35~amd64~~20348.2582.1.9]
"CurrentState"=dword:00000070

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\Packages\\Package_for_RollupFix~31bf3856ad364e35~amd64~~20348.2607.1.10]
"CurrentState"=dword:00000070

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Setup\\State]
"ImageState"="IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\{5D1F3F4B-2C8E-4E7A-9B61-7A0F3C2D9E18}]
"DisplayName"="Windows Azure VM Agent - $AGENT_VERSION"
"DisplayVersion"="$AGENT_VERSION"
"Publisher"="Microsoft Corporation"
"InstallLocation"="C:\\\\WindowsAzure\\\\GuestAgent_$AGENT_VERSION"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\GuestAgent]
"GuestAgentVersion"="$AGENT_VERSION"
"InstallPath"="C:\\\\WindowsAzure\\\\GuestAgent_$AGENT_VERSION"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\ServerManager\\ServicingStorage\\ServerComponentCache\\FileAndStorage-Services]
"InstallState"=dword:00000001

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\ServerManager\\ServicingStorage\\ServerComponentCache\\Storage-Services]
"InstallState"=dword:00000001

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\ServerManager\\ServicingStorage\\ServerComponentCache\\PowerShellRoot]
"InstallState"=dword:00000001

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\ServerManager\\ServicingStorage\\ServerComponentCache\\FS-SMB1]
"InstallState"=dword:00000000

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\ServerManager\\ServicingStorage\\ServerComponentCache\\Web-Server]
"InstallState"=dword:00000000

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\SystemCertificates\\MY\\Certificates]

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate\\AU]
"NoAutoUpdate"=$no_auto_update
"AUOptions"=dword:00000004

EOF
        dirty <<EOF
[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon]
"AutoAdminLogon"="1"
"DefaultUserName"="Administrator"
"DefaultPassword"="$LEFTOVER_PASSWORD"

[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\SystemCertificates\\MY\\Certificates\\3F2A9C1D7E5B4A6C8D0E1F2A3B4C5D6E7F809A1B]
"Blob"=hex:20,00,00,00,01,00,00,00,00,00,00,00

EOF
    } | make_hive SOFTWARE
}

make_system_hive() {
    # \DosDevices\C: of an MBR disk: the disk signature (little-endian)
    # and the partition's start in bytes (8 bytes, little-endian).
    local c_drive rules
    c_drive=$(le_bytes 4 "0x$DISK_SIGNATURE"),$(le_bytes 8 $((WIN_START * 512)))
    rules='HKEY_LOCAL_MACHINE\SYSTEM\ControlSet001\Services\SharedAccess\Parameters\FirewallPolicy'
    {
        cat <<EOF
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
"ObjectName"="NT Authority\\\\LocalService"
"Start"=dword:00000002
"Type"=dword:00000020

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\TermService]
"DisplayName"="Remote Desktop Services"
"ObjectName"="NT Authority\\\\NetworkService"
"Start"=dword:00000003
"Type"=dword:00000020

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\wuauserv]
"DisplayName"="Windows Update"
"ObjectName"="LocalSystem"
"Start"=dword:00000003
"Type"=dword:00000020

[HKEY_LOCAL_MACHINE\\SYSTEM\\ControlSet001\\Services\\LanmanServer]
"DisplayName"="Server"
"ObjectName"="LocalSystem"
"Start"=dword:00000002
"Type"=dword:00000020

[$rules\\StandardProfile]
"EnableFirewall"=dword:00000001

[$rules\\FirewallRules]
"RemoteDesktop-UserMode-In-TCP"="v2.31|Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=3389|Svc=termservice|Name=@FirewallAPI.dll,-28775|EmbedCtxt=@FirewallAPI.dll,-28752|"
"FPS-SMB-In-TCP"="v2.31|Action=Allow|Active=FALSE|Dir=In|Protocol=6|LPort=445|App=System|Name=@FirewallAPI.dll,-28502|EmbedCtxt=@FirewallAPI.dll,-28502|"
"CoreNet-DHCP-Out"="v2.31|Action=Allow|Active=TRUE|Dir=Out|Protocol=17|LPort=68|RPort=67|Name=@FirewallAPI.dll,-25302|EmbedCtxt=@FirewallAPI.dll,-25000|"

[HKEY_LOCAL_MACHINE\\SYSTEM\\Setup]
"SystemSetupInProgress"=dword:00000000
"OOBEInProgress"=dword:00000000
"SetupType"=dword:00000000

[HKEY_LOCAL_MACHINE\\SYSTEM\\Setup\\Status\\SysprepStatus]
"GeneralizationState"=dword:00000007
"CleanupState"=dword:00000002

EOF
        dirty <<EOF
[$rules\\FirewallRules]
"WINRM-HTTP-In-TCP"="v2.31|Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=5985|Name=@FirewallAPI.dll,-35001|EmbedCtxt=@FirewallAPI.dll,-30267|"

EOF
    } | make_hive SYSTEM
}

# The SAM hive with the two built-in accounts. Each user has a key under
# Users named by its RID (0x1f4 Administrator, 0x1f5 Guest) with the
# binary F value (see sam_f in the helper: ACB flags at offset 0x38,
# 0x0001 = disabled) and V value (sam_v: the name and NT hash), and a key
# under Users\Names whose default value is empty and has the RID as its
# type.
make_sam_hive() {
    local admin_f guest_f admin_v guest_v
    # Disabled, normal account, password does not expire.
    admin_f=$(helper sam-f 0x1f4 0x0211)
    # Disabled, password not required, normal, password does not expire.
    guest_f=$(helper sam-f 0x1f5 0x0215)
    if ! $clean; then
        # Enabled.
        guest_f=$(helper sam-f 0x1f5 0x0214)
    fi
    admin_v=$(helper sam-v Administrator 0x38)
    guest_v=$(helper sam-v Guest 0x18)
    make_hive SAM <<EOF
Windows Registry Editor Version 5.00

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\000001F4]
"F"=$admin_f
"V"=$admin_v

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\000001F5]
"F"=$guest_f
"V"=$guest_v

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\Names\\Administrator]
@=hex(1f4):

[HKEY_LOCAL_MACHINE\\SAM\\SAM\\Domains\\Account\\Users\\Names\\Guest]
@=hex(1f5):
EOF
}

mkdir -p "$tree"/Windows/System32/{config,drivers/etc} \
    "$tree"/Windows/{Logs,Temp,Panther} \
    "$tree"/{"Program Files","Program Files (x86)",ProgramData} \
    "$tree"/Users/{Default,Public}
helper pe "$tree/Windows/System32/cmd.exe" 3
helper pe "$tree/Windows/System32/ntoskrnl.exe" 1
agent=$tree/WindowsAzure/GuestAgent_$AGENT_VERSION
mkdir -p "$agent"
helper pe "$agent/WaAppAgent.exe" 3
tasks=$tree/Windows/System32/Tasks/Microsoft/Windows/Defrag
mkdir -p "$tasks"
helper task "$tasks/ScheduledDefrag" S-1-5-18

make_software_hive
make_system_hive
make_sam_hive

put Windows/Setup/State/State.ini <<'EOF'
[State]
ImageState=IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE
EOF
{
    cat <<'EOF'
# Copyright (c) 1993-2009 Microsoft Corp.
#
# This is a sample HOSTS file used by Microsoft TCP/IP for Windows.
#
# localhost name resolution is handled within DNS itself.
#	127.0.0.1       localhost
#	::1             localhost
EOF
    dirty <<'EOF'
10.20.30.40	build-cache.internal.example
EOF
} | put Windows/System32/drivers/etc/hosts

if $clean; then
    exit 0
fi
put Windows/Panther/unattend.xml <<EOF
<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
      <UserAccounts>
        <AdministratorPassword>
          <Value>$LEFTOVER_PASSWORD</Value>
          <PlainText>true</PlainText>
        </AdministratorPassword>
        <LocalAccounts>
          <LocalAccount wcm:action="add">
            <Password>
              <Value>$LEFTOVER_PASSWORD</Value>
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
put Windows/Panther/setupact.log <<'EOF'
2024-01-17 21:05:11, Info                  [0x0f0080] SYSPRP ActionPlatform::LaunchModule: Executing method 'Sysprep_Clean_Validate_Opk'
EOF
put Windows/Logs/CBS/CBS.log <<'EOF'
2024-01-17 21:12:04, Info                  CBS    Starting TrustedInstaller initialization.
2024-01-17 21:12:05, Info                  CBS    Session: 31084753_1204 initialized by client WindowsUpdateAgent.
2024-01-17 21:19:58, Info                  CBS    Ending TrustedInstaller finalization.
EOF
put WindowsAzure/Logs/WaAppAgent.log <<EOF
[00000004] 01/17/2024 21:15:31.42 [INFO]  WindowsAzureGuestAgent starting. Version $AGENT_VERSION
EOF
# Not a real PKCS #12 file: made-up bytes with a .pfx name.
mkdir -p "$tree/Users/Public/Documents"
printf '0\x82\x01\x00made-up signing key' >"$tree/Users/Public/Documents/signing.pfx"
