#!/bin/bash
# Builds a qcow2 disk image shaped like an AlmaLinux 9.4 cloud image that
# was booted and configured by hand. No RHEL-family package can be
# fetched here, so the tree is made from files: release files, a real
# rpm database, boot files as RHEL 9 leaves them (BLS entries, grubenv,
# grub.cfg) and static network settings. Binaries are copies of the
# host's /bin/true, enough for libguestfs to read the architecture.
#
# Usage: make-rhel-shaped.sh OUT.qcow2
#
# Needs root, libguestfs (guestfish) with XFS support (the Debian package
# libguestfs-xfs), qemu-img, openssl, attr, dosfstools and mtools.
#
# Disk layout (2 GiB, GPT, 512-byte sectors):
#   1  BIOS boot (EF02)   sectors 2048..4095, no file system
#   2  EFI system (EF00)  200 MiB FAT, mounted at /boot/efi
#   3  Linux root (8300)  the rest, XFS, with /boot on it
# No boot loader is installed, so the disk does not boot.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT.qcow2" >&2
    exit 2
fi
out=$1

# libguestfs cannot use KVM on this kind of machine.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly RPMDB=$script_dir/../data/rpmdb/rhel9.sqlite

readonly KVER=5.14.0-427.13.1.el9_4.x86_64
readonly MACHINE_ID=3f8a2c1e9b7d4e6fa0c5d2b8e1f4a7c9
readonly RELEASE="AlmaLinux release 9.4 (Seafoam Ocelot)"
readonly RESUME_UUID=11111111-2222-3333-4444-555555555555
readonly CRASHKERNEL=1G-4G:192M,4G-64G:256M,64G-:512M
# The password whose SHA-512 crypt hash goes into root's /etc/shadow entry.
readonly ROOT_PASSWORD=forge-test
readonly ESP_START=4096
readonly ROOT_START=413696
readonly ESP_SECTORS=$((ROOT_START - ESP_START))

if [[ ! -f $RPMDB ]]; then
    echo "make-rhel-shaped: rpm database $RPMDB not found" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/make-rhel-shaped.XXXXXX")
tmp_out=""
cleanup() {
    rm -rf --one-file-system "$work"
    if [[ -n $tmp_out ]]; then
        rm -f "$tmp_out"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tree=$work/root
root_uuid=$(cat /proc/sys/kernel/random/uuid)
esp_serial=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ' | tr a-f A-F)
esp_uuid=${esp_serial:0:4}-${esp_serial:4:4}
root_hash=$(openssl passwd -6 -salt forgetest "$ROOT_PASSWORD")
cmdline="root=UUID=$root_uuid ro crashkernel=$CRASHKERNEL resume=UUID=$RESUME_UUID rhgb quiet"

# Writes standard input to the tree path $1 with mode $2 (default 0644).
put() {
    local path=$tree$1
    mkdir -p "$(dirname "$path")"
    cat >"$path"
    chmod "${2:-0644}" "$path"
}

# Lays out the merged-/usr file system hierarchy of RHEL 9 with the
# release files, accounts and host-copied binaries.
make_base() {
    mkdir -p "$tree"/{boot/efi,dev,etc,home,media,mnt,opt,proc,run,srv,sys}
    mkdir -p "$tree"/usr/{bin,sbin,lib,lib64,libexec,share} "$tree"/var/{lib,log,cache}
    mkdir -p "$tree/usr/lib/modules/$KVER"
    install -d -m 0550 "$tree/root"
    install -d -m 1777 "$tree/tmp" "$tree/var/tmp"
    ln -s usr/bin "$tree/bin"
    ln -s usr/sbin "$tree/sbin"
    ln -s usr/lib "$tree/lib"
    ln -s usr/lib64 "$tree/lib64"
    local binary
    for binary in bash ls cat sh; do
        cp /bin/true "$tree/usr/bin/$binary"
    done
    cp /bin/true "$tree/usr/sbin/sshd"

    put /etc/os-release <<'EOF'
NAME="AlmaLinux"
VERSION="9.4 (Seafoam Ocelot)"
ID="almalinux"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
PLATFORM_ID="platform:el9"
PRETTY_NAME="AlmaLinux 9.4 (Seafoam Ocelot)"
ANSI_COLOR="0;34"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:almalinux:almalinux:9::baseos"
HOME_URL="https://almalinux.org/"
DOCUMENTATION_URL="https://wiki.almalinux.org/"
BUG_REPORT_URL="https://bugs.almalinux.org/"
ALMALINUX_MANTISBT_PROJECT="AlmaLinux-9"
ALMALINUX_MANTISBT_PROJECT_VERSION="9.4"
REDHAT_SUPPORT_PRODUCT="AlmaLinux"
REDHAT_SUPPORT_PRODUCT_VERSION="9.4"
EOF
    echo "$RELEASE" | put /etc/almalinux-release
    echo "$RELEASE" | put /etc/redhat-release
    echo "$RELEASE" | put /etc/system-release
    echo "cpe:/o:almalinux:almalinux:9::baseos" | put /etc/system-release-cpe
    echo "$MACHINE_ID" | put /etc/machine-id 0444
    echo "dirty-host.example" | put /etc/hostname

    put /etc/fstab <<EOF
UUID=$root_uuid / xfs defaults 0 0
UUID=$esp_uuid /boot/efi vfat umask=0077,shortname=winnt 0 2
EOF

    put /etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/bash
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
adm:x:3:4:adm:/var/adm:/sbin/nologin
nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin
sshd:x:74:74:Privilege-separated SSH:/usr/share/empty.sshd:/sbin/nologin
EOF
    put /etc/group <<'EOF'
root:x:0:
bin:x:1:
daemon:x:2:
adm:x:4:
wheel:x:10:
nobody:x:65534:
sshd:x:74:
EOF
    put /etc/shadow 0000 <<EOF
root:$root_hash:19800:0:99999:7:::
bin:*:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
adm:*:19800:0:99999:7:::
nobody:*:19800:0:99999:7:::
sshd:!!:19800::::::
EOF
    put /etc/gshadow 0000 <<'EOF'
root:::
bin:::
daemon:::
adm:::
wheel:::
nobody:::
sshd:!::
EOF

    mkdir -p "$tree/var/lib/rpm"
    cp "$RPMDB" "$tree/var/lib/rpm/rpmdb.sqlite"
}

# Writes the boot files as RHEL 9 leaves them with /boot on the root file
# system: kernel and rescue images, BLS entries, grubenv, grub.cfg,
# /etc/default/grub and /etc/kernel/cmdline.
make_boot() {
    echo "placeholder kernel $KVER" | put "/boot/vmlinuz-$KVER" 0755
    echo "placeholder initramfs $KVER" | put "/boot/initramfs-$KVER.img" 0600
    echo "placeholder kernel $KVER" | put "/usr/lib/modules/$KVER/vmlinuz" 0755
    echo "placeholder rescue kernel" | put "/boot/vmlinuz-0-rescue-$MACHINE_ID" 0755
    echo "placeholder rescue initramfs" | put "/boot/initramfs-0-rescue-$MACHINE_ID.img" 0600

    put "/boot/loader/entries/$MACHINE_ID-$KVER.conf" <<EOF
title AlmaLinux ($KVER) 9.4 (Seafoam Ocelot)
version $KVER
linux /boot/vmlinuz-$KVER
initrd /boot/initramfs-$KVER.img \$tuned_initrd
options $cmdline
grub_users \$grub_users
grub_arg --unrestricted
grub_class almalinux
EOF
    put "/boot/loader/entries/$MACHINE_ID-0-rescue.conf" <<EOF
title AlmaLinux (0-rescue-$MACHINE_ID) 9.4 (Seafoam Ocelot)
version 0-rescue-$MACHINE_ID
linux /boot/vmlinuz-0-rescue-$MACHINE_ID
initrd /boot/initramfs-0-rescue-$MACHINE_ID.img
options \$kernelopts
grub_users \$grub_users
grub_arg --unrestricted
grub_class kernel
EOF

    # grub2-editenv keeps the environment block at exactly 1024 bytes,
    # padded with '#'.
    local grubenv=$tree/boot/grub2/grubenv size
    mkdir -p "$tree/boot/grub2"
    printf '%s\n' '# GRUB Environment Block' "saved_entry=$MACHINE_ID-$KVER" \
        "kernelopts=$cmdline" 'boot_success=0' >"$grubenv"
    size=$(stat -c %s "$grubenv")
    head -c $((1024 - size)) /dev/zero | tr '\0' '#' >>"$grubenv"
    chmod 0600 "$grubenv"

    put /boot/grub2/grub.cfg 0600 <<EOF
#
# DO NOT EDIT THIS FILE
#
# It is automatically generated by grub2-mkconfig using templates
# from /etc/grub.d and settings from /etc/default/grub
#

### BEGIN /etc/grub.d/00_header ###
set pager=1

if [ -f \${config_directory}/grubenv ]; then
  load_env -f \${config_directory}/grubenv
elif [ -s \$prefix/grubenv ]; then
  load_env
fi
if [ "\${next_entry}" ] ; then
   set default="\${next_entry}"
   set next_entry=
   save_env next_entry
   set boot_once=true
else
   set default="\${saved_entry}"
fi

if [ x"\${feature_menuentry_id}" = xy ]; then
  menuentry_id_option="--id"
else
  menuentry_id_option=""
fi

export menuentry_id_option

function savedefault {
  if [ -z "\${boot_once}" ]; then
    saved_entry="\${chosen}"
    save_env saved_entry
  fi
}

terminal_output console
if [ x\$feature_timeout_style = xy ] ; then
  set timeout_style=menu
  set timeout=5
else
  set timeout=5
fi
### END /etc/grub.d/00_header ###

### BEGIN /etc/grub.d/00_tuned ###
set tuned_params=""
set tuned_initrd=""
### END /etc/grub.d/00_tuned ###

### BEGIN /etc/grub.d/10_linux ###
insmod part_gpt
insmod xfs
set root='hd0,gpt3'
if [ x\$feature_platform_search_hint = xy ]; then
  search --no-floppy --fs-uuid --set=root --hint='hd0,gpt3'  $root_uuid
else
  search --no-floppy --fs-uuid --set=root $root_uuid
fi
if [ -z "\${kernelopts}" ]; then
  set kernelopts="$cmdline "
fi

insmod blscfg
blscfg
### END /etc/grub.d/10_linux ###

### BEGIN /etc/grub.d/30_uefi-firmware ###
if [ "\$grub_platform" = "efi" ]; then
	menuentry 'UEFI Firmware Settings' \$menuentry_id_option 'uefi-firmware' {
		fwsetup
	}
fi
### END /etc/grub.d/30_uefi-firmware ###

### BEGIN /etc/grub.d/41_custom ###
if [ -f  \${config_directory}/custom.cfg ]; then
  source \${config_directory}/custom.cfg
elif [ -z "\${config_directory}" -a -f  \$prefix/custom.cfg ]; then
  source \$prefix/custom.cfg
fi
### END /etc/grub.d/41_custom ###
EOF
    ln -s ../boot/grub2/grub.cfg "$tree/etc/grub2.cfg"
    ln -s ../boot/grub2/grub.cfg "$tree/etc/grub2-efi.cfg"

    put /etc/default/grub <<EOF
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="\$(sed 's, release .*\$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="crashkernel=$CRASHKERNEL resume=UUID=$RESUME_UUID rhgb quiet"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
EOF
    echo "$cmdline" | put /etc/kernel/cmdline
}

# Leaves the network settings, SSH and agent configuration, SELinux
# settings and history that a hand-configured VM carries.
make_dirty_state() {
    local scripts=/etc/sysconfig/network-scripts
    put "$scripts/ifcfg-eth0" <<'EOF'
DEVICE=eth0
TYPE=Ethernet
BOOTPROTO=none
ONBOOT=yes
IPADDR=192.0.2.20
PREFIX=24
GATEWAY=192.0.2.1
DNS1=192.0.2.53
HWADDR=52:54:00:ab:cd:ef
EOF
    put "$scripts/ifcfg-ens3" <<'EOF'
DEVICE=ens3
TYPE=Ethernet
BOOTPROTO=dhcp
ONBOOT=yes
HWADDR=52:54:00:ab:cd:ef
EOF
    put /etc/NetworkManager/system-connections/ens3.nmconnection 0600 <<'EOF'
[connection]
id=ens3
uuid=6c1f2d7e-3a4b-4c5d-8e9f-0a1b2c3d4e5f
type=ethernet
interface-name=ens3

[ethernet]
mac-address=52:54:00:AB:CD:EF

[ipv4]
address1=192.0.2.21/24,192.0.2.1
dns=192.0.2.53;
method=manual

[ipv6]
addr-gen-mode=eui64
method=auto
EOF
    put /etc/sysconfig/network <<'EOF'
# Created by anaconda
NETWORKING=yes
HOSTNAME=dirty-host.example
EOF
    put /etc/resolv.conf <<'EOF'
# Generated by NetworkManager
nameserver 192.0.2.53
EOF

    put /etc/ssh/sshd_config 0600 <<'EOF'
Include /etc/ssh/sshd_config.d/*.conf

#Port 22
#ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_rsa_key
HostKey /etc/ssh/ssh_host_ecdsa_key
HostKey /etc/ssh/ssh_host_ed25519_key
#PermitRootLogin prohibit-password
AuthorizedKeysFile	.ssh/authorized_keys
#PasswordAuthentication yes
Subsystem	sftp	/usr/libexec/openssh/sftp-server
EOF
    put /etc/ssh/sshd_config.d/50-redhat.conf 0600 <<'EOF'
# The system-wide crypto policy sets ciphers, MACs and key exchange.
Include /etc/crypto-policies/back-ends/opensshserver.config

SyslogFacility AUTHPRIV
ChallengeResponseAuthentication no
GSSAPIAuthentication yes
GSSAPICleanupCredentials no
UsePAM yes
X11Forwarding yes
PrintMotd no
EOF
    # Made-up host key files. The private key body is not a valid key, and
    # the public key's 32 key bytes spell an ASCII label.
    put /etc/ssh/ssh_host_ed25519_key 0600 <<'EOF'
-----BEGIN OPENSSH PRIVATE KEY-----
Zm9yZ2UtdGVzdCBob3N0IGtleSwgbm90IGEgcmVhbCBwcml2YXRlIGtleQ==
-----END OPENSSH PRIVATE KEY-----
EOF
    echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZvcmdlLXRlc3QtaG9zdC1rZXktZm9yLXJoZWwtOSEh root@dirty-host.example" |
        put /etc/ssh/ssh_host_ed25519_key.pub

    put /etc/selinux/config <<'EOF'
# This file controls the state of SELinux on the system.
SELINUX=enforcing
SELINUXTYPE=targeted
EOF

    put /etc/waagent.conf <<'EOF'
# Microsoft Azure Linux Agent configuration
Provisioning.Agent=auto
Provisioning.DeleteRootPassword=y
Provisioning.RegenerateSshHostKeyPair=y
Provisioning.SshHostKeyPairType=auto
Provisioning.MonitorHostName=y
ResourceDisk.Format=y
ResourceDisk.Filesystem=ext4
ResourceDisk.MountPoint=/mnt/resource
ResourceDisk.EnableSwap=n
Logs.Verbose=n
OS.EnableFIPS=n
OS.OpensslPath=None
AutoUpdate.Enabled=y
EOF

    printf '%s\n' 'dnf -y update' 'nmcli connection show' \
        'vi /etc/sysconfig/network-scripts/ifcfg-eth0' 'reboot' |
        put /root/.bash_history 0600

    # SELinux labels as restorecon sets them on RHEL 9.
    setfattr -n security.selinux -v system_u:object_r:etc_t:s0 "$tree/etc/os-release"
    setfattr -n security.selinux -v system_u:object_r:admin_home_t:s0 "$tree/root"
}

# Builds the EFI system partition as a file, because guestfish cannot set
# the volume ID of a FAT file system and fstab names it. It carries the
# stub grub.cfg that hands over to /boot/grub2/grub.cfg, as on RHEL 9.
make_esp() {
    local esp=$work/esp.img
    mkfs.fat -C -i "$esp_serial" "$esp" $((ESP_SECTORS / 2)) >/dev/null
    mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/almalinux
    cat >"$work/grub.cfg" <<EOF
search --no-floppy --fs-uuid --set=dev $root_uuid
set prefix=(\$dev)/boot/grub2
export \$prefix
configfile \$prefix/grub.cfg
EOF
    echo "placeholder, not a real loader" >"$work/placeholder.efi"
    mcopy -i "$esp" "$work/grub.cfg" ::/EFI/almalinux/grub.cfg
    mcopy -i "$esp" "$work/placeholder.efi" ::/EFI/almalinux/shimx64.efi
    mcopy -i "$esp" "$work/placeholder.efi" ::/EFI/almalinux/grubx64.efi
    mcopy -i "$esp" "$work/placeholder.efi" ::/EFI/BOOT/BOOTX64.EFI
    mcopy -i "$esp" "$work/placeholder.efi" ::/EFI/BOOT/fbx64.efi
}

make_base
make_boot
make_dirty_state
make_esp

tmp_out=$(mktemp "$out.tmp.XXXXXX")
qemu-img create -q -f qcow2 "$tmp_out" 2G
# The commands are arguments, not a script file, because guestfish -f
# reads its script from standard input, which carries the tar stream.
tar -C "$tree" --create --file=- --xattrs --xattrs-include='*' --acls \
    --selinux --numeric-owner . |
    guestfish -- \
        add "$tmp_out" format:qcow2 : \
        add "$work/esp.img" format:raw readonly:true : \
        run : \
        part-init /dev/sda gpt : \
        part-add /dev/sda p 2048 4095 : \
        part-add /dev/sda p $ESP_START $((ROOT_START - 1)) : \
        part-add /dev/sda p $ROOT_START -34 : \
        part-set-gpt-type /dev/sda 1 21686148-6449-6E6F-744E-656564454649 : \
        part-set-gpt-type /dev/sda 2 C12A7328-F81F-11D2-BA4B-00A0C93EC93B : \
        part-set-gpt-type /dev/sda 3 0FC63DAF-8483-4772-8E79-3D47C7D8C5B1 : \
        part-set-name /dev/sda 2 "EFI System Partition" : \
        copy-device-to-device /dev/sdb /dev/sda2 sparse:true : \
        mkfs xfs /dev/sda3 : \
        set-uuid /dev/sda3 "$root_uuid" : \
        mount /dev/sda3 / : \
        tar-in - / xattrs:true selinux:true acls:true : \
        umount-all

# Reads the image back in a new appliance, read-only, with inspection.
root_dev=/dev/sda3
cat >"$work/verify.guestfish" <<EOF
echo @type
inspect-get-type $root_dev
echo @distro
inspect-get-distro $root_dev
echo @version
inspect-get-major-version $root_dev
inspect-get-minor-version $root_dev
echo @product
inspect-get-product-name $root_dev
echo @arch
inspect-get-arch $root_dev
echo @package-format
inspect-get-package-format $root_dev
echo @mountpoints
inspect-get-mountpoints $root_dev
echo @root-type
vfs-type /dev/sda3
echo @root-uuid
vfs-uuid /dev/sda3
echo @esp-type
vfs-type /dev/sda2
echo @esp-uuid
vfs-uuid /dev/sda2
echo @esp-stub
is-file /boot/efi/EFI/almalinux/grub.cfg
echo @grubenv-size
filesize /boot/grub2/grubenv
echo @grubenv
head-n 4 /boot/grub2/grubenv
echo @entries
ls /boot/loader/entries
echo @rpmdb
is-file /var/lib/rpm/rpmdb.sqlite
echo @nmconnection
lstatns /etc/NetworkManager/system-connections/ens3.nmconnection
echo @label-os-release
lgetxattr /etc/os-release security.selinux
echo
echo @label-root
lgetxattr /root security.selinux
echo
echo @end
EOF
guestfish --ro --format=qcow2 -a "$tmp_out" -i -f "$work/verify.guestfish" >"$work/verify.out"

# Prints the lines of section NAME of the verification output.
section() {
    awk -v name="@$1" '/^@/ { on = ($0 == name); next } on' "$work/verify.out"
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
has_text() { section "$1" | grep -qF -- "$2"; }
equal() { [[ $1 == "$2" ]]; }

distro=$(section distro)
version=$(section version | paste -sd .)
echo "make-rhel-shaped: verifying $out"
check "inspection finds Linux" equal "$(section type)" linux
# NOTE: libguestfs 1.48 (Debian 12) has no AlmaLinux entry for the
# os-release ID, and /etc/redhat-release matches none of its patterns, so
# it reports "redhat-based". Later libguestfs versions may report "almalinux".
check "distribution is almalinux, rhel or redhat-based ($distro)" \
    test "$distro" = almalinux -o "$distro" = rhel -o "$distro" = redhat-based
check "product name is AlmaLinux 9.4" has_text product "AlmaLinux"
check "version is 9.4 ($version)" equal "$version" 9.4
check "architecture is x86_64" equal "$(section arch)" x86_64
check "package format is rpm" equal "$(section package-format)" rpm
check "mount point / is /dev/sda3" has_line mountpoints "/: /dev/sda3"
check "mount point /boot/efi is /dev/sda2" has_line mountpoints "/boot/efi: /dev/sda2"
check "root is XFS with the UUID in fstab" \
    equal "$(section root-type)/$(section root-uuid)" "xfs/$root_uuid"
check "ESP is FAT with the UUID in fstab" \
    equal "$(section esp-type)/$(section esp-uuid)" "vfat/$esp_uuid"
check "ESP is mounted with its grub.cfg" equal "$(section esp-stub)" true
check "grubenv is 1024 bytes" equal "$(section grubenv-size)" 1024
check "grubenv has kernelopts" has_line grubenv "kernelopts=$cmdline"
check "two BLS entries" \
    equal "$(section entries | paste -sd ' ')" \
    "$MACHINE_ID-0-rescue.conf $MACHINE_ID-$KVER.conf"
check "rpm database present" equal "$(section rpmdb)" true
check "nmconnection has mode 0600" \
    has_line nmconnection "st_mode: $((0100600))"
check "os-release is labeled etc_t" \
    has_text label-os-release "system_u:object_r:etc_t:s0"
check "/root is labeled admin_home_t" \
    has_text label-root "system_u:object_r:admin_home_t:s0"

if ((failures > 0)); then
    echo "make-rhel-shaped: $failures checks failed. The guestfish output:" >&2
    cat "$work/verify.out" >&2
    exit 1
fi

# mktemp made the file with mode 0600.
chmod 0644 "$tmp_out"
mv "$tmp_out" "$out"
tmp_out=""
echo "make-rhel-shaped: wrote $out ($(du -h "$out" | cut -f1) on disk)"
