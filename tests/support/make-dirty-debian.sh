#!/bin/bash
# Builds a "dirty" Debian 12 cloud image in qcow2 format, as a vendor might
# hand one over. The root is a real Debian tree from mmdebstrap on LVM. It
# keeps shell history, SSH host keys, authorized keys, passwords, static
# network settings and a persistent MAC binding. It also carries fixture
# files whose owner, mode, extended attributes, ACLs, hard links, holes
# and file capabilities forge must keep.
#
# Usage: make-dirty-debian.sh OUT.qcow2
#
# Needs root, mmdebstrap, libguestfs (guestfish), qemu-img, openssl, attr,
# acl and libcap2-bin, and network access to the Debian mirrors that the
# host's apt sources name. FORGE_DEBS_CACHE, when set, names a folder kept
# between runs as a cache of the downloaded .deb files.
#
# Disk layout (4 GiB, GPT, 512-byte sectors):
#   1  BIOS boot (EF02)  sectors 2048..4095, no file system
#   2  /boot             512 MiB ext4
#   3  swap              256 MiB
#   4  LVM PV            the rest: VG vg0 with LV root (ext4, /) and
#                        LV var (ext4, /var)
# No boot loader is installed, so the disk does not boot.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT.qcow2" >&2
    exit 2
fi
out=$1

# libguestfs cannot use KVM on this kind of machine.
export LIBGUESTFS_BACKEND_SETTINGS=${LIBGUESTFS_BACKEND_SETTINGS:-force_tcg}

readonly SUITE=bookworm
readonly PACKAGES=systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,grub-pc-bin,grub-efi-amd64-bin,grub2-common,e2fsprogs,lvm2,openssh-server,cloud-init,cloud-guest-utils,python3,ifupdown,isc-dhcp-client,iproute2,netbase,sudo,ca-certificates
# The passwords whose SHA-512 crypt hashes go into /etc/shadow.
readonly ROOT_PASSWORD=forge-test
readonly ALICE_PASSWORD=alice-test
# A fixed machine ID, as an image that was booted once carries.
readonly MACHINE_ID=5f0d3c6a9b8e4f21a7c4d2e9b1f3a6c8
# Made-up ed25519 public keys: each blob is a valid key encoding whose
# 32 key bytes spell an ASCII label.
readonly ROOT_AUTHORIZED_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZvcmdlLXRlc3Qta2V5LWZvci1yb290LWFjY291bnQh vendor@build-host"
readonly ALICE_AUTHORIZED_KEY="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZvcmdlLXRlc3Qta2V5LWZvci1hbGljZS1hY2NvdW50 alice@laptop"

work=$(mktemp -d "${TMPDIR:-/tmp}/make-dirty-debian.XXXXXX")
tmp_out=""
cleanup() {
    # --one-file-system keeps rm out of anything still mounted in the tree
    # if mmdebstrap failed before it unmounted /proc, /sys or /dev.
    rm -rf --one-file-system "$work"
    if [[ -n $tmp_out ]]; then
        rm -f "$tmp_out"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Prints the Debian apt sources for SUITE, SUITE-updates and
# SUITE-security that the host's apt is configured with, one
# sources.list line each. Falls back to deb.debian.org when the host has
# none for SUITE (for example on a host that is not Debian 12).
host_mirrors() {
    local uri release found=0
    # shellcheck disable=SC2016 # apt, not the shell, expands the $(...) fields.
    while read -r uri release; do
        case $release in
            "$SUITE" | "$SUITE-updates" | "$SUITE-security")
                echo "deb $uri $release main"
                found=1
                ;;
        esac
    done < <(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' \
        'Identifier: Packages' 2>/dev/null | sort -u)
    if ((found == 0)); then
        echo "make-dirty-debian: no $SUITE mirror found in the host's apt sources, so deb.debian.org is used" >&2
        echo "deb http://deb.debian.org/debian $SUITE main"
        echo "deb http://deb.debian.org/debian $SUITE-updates main"
        echo "deb http://deb.debian.org/debian-security $SUITE-security main"
    fi
}

tree=$work/root
boot_uuid=$(cat /proc/sys/kernel/random/uuid)
swap_uuid=$(cat /proc/sys/kernel/random/uuid)
root_uuid=$(cat /proc/sys/kernel/random/uuid)
var_uuid=$(cat /proc/sys/kernel/random/uuid)
root_hash=$(openssl passwd -6 -salt forgetest "$ROOT_PASSWORD")
alice_hash=$(openssl passwd -6 -salt forgealice "$ALICE_PASSWORD")

# Installs the Debian packages into $tree with mmdebstrap.
install_packages() {
    local mirrors=() line cache
    while IFS= read -r line; do
        mirrors+=("$line")
    done < <(host_mirrors)

    local cache_opts=()
    if [[ -n ${FORGE_DEBS_CACHE:-} ]]; then
        mkdir -p "$FORGE_DEBS_CACHE"
        cache=$(realpath "$FORGE_DEBS_CACHE")
        # essential/unlink is skipped so that the packages of the essential
        # set stay in /var/cache/apt/archives until sync-out copies them.
        # shellcheck disable=SC2016 # mmdebstrap passes the chroot as $1.
        cache_opts=(
            --skip=essential/unlink
            --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
            --setup-hook="sync-in '$cache' /var/cache/apt/archives/"
            --customize-hook="sync-out /var/cache/apt/archives '$cache'"
        )
    fi

    # The package lists stay in the image, as a vendor's image keeps them.
    if ! mmdebstrap --mode=root --variant=apt --format=directory \
        --components=main --include="$PACKAGES" --skip=cleanup/apt/lists \
        "${cache_opts[@]}" --logfile="$work/mmdebstrap.log" \
        "$SUITE" "$tree" "${mirrors[@]}"; then
        echo "make-dirty-debian: mmdebstrap failed. The end of its log:" >&2
        tail -n 40 "$work/mmdebstrap.log" >&2
        return 1
    fi
}

# Writes the configuration that a vendor's image carries: mounts, resume
# device, machine ID, host name and boot loader settings.
configure_system() {
    local kernel kernel_version
    kernel=$(find "$tree/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -n 1)
    kernel_version=${kernel#vmlinuz-}
    if [[ -z $kernel_version ]]; then
        echo "make-dirty-debian: no kernel found in the tree's /boot" >&2
        return 1
    fi

    cat >"$tree/etc/fstab" <<EOT
# /etc/fstab: static file system information.
/dev/mapper/vg0-root / ext4 errors=remount-ro 0 1
UUID=$boot_uuid /boot ext4 defaults 0 2
/dev/mapper/vg0-var /var ext4 defaults 0 2
UUID=$swap_uuid none swap sw 0 0
EOT
    echo "RESUME=UUID=$swap_uuid" >"$tree/etc/initramfs-tools/conf.d/resume"
    echo "$MACHINE_ID" >"$tree/etc/machine-id"
    echo "vendor-build" >"$tree/etc/hostname"

    cat >"$tree/etc/default/grub" <<'EOT'
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
EOT
    # A grub.cfg as grub-mkconfig writes it for a separate /boot. GRUB
    # reads paths relative to the /boot file system, so they have no /boot
    # prefix.
    mkdir -p "$tree/boot/grub"
    cat >"$tree/boot/grub/grub.cfg" <<EOT
# Placeholder in the shape of grub-mkconfig's output. No boot loader is
# installed on this disk.
set default="0"
set timeout=5
insmod part_gpt
insmod ext2
search --no-floppy --fs-uuid --set=root $boot_uuid
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os {
	load_video
	insmod gzio
	insmod part_gpt
	insmod ext2
	search --no-floppy --fs-uuid --set=root $boot_uuid
	echo	'Loading Linux $kernel_version ...'
	linux	/vmlinuz-$kernel_version root=/dev/mapper/vg0-root ro quiet
	echo	'Loading initial ramdisk ...'
	initrd	/initrd.img-$kernel_version
}
EOT
}

# Leaves the state that forge must clean or replace: resolver and static
# network settings, a MAC binding, passwords, keys and shell history.
add_dirty_state() {
    rm -f "$tree/etc/resolv.conf"
    cat >"$tree/etc/resolv.conf" <<'EOT'
nameserver 192.0.2.53
nameserver 198.51.100.53
EOT

    mkdir -p "$tree/etc/network/interfaces.d"
    cat >"$tree/etc/network/interfaces.d/eth0" <<'EOT'
auto eth0
iface eth0 inet static
    address 192.0.2.10/24
    gateway 192.0.2.1
EOT

    cat >"$tree/etc/udev/rules.d/70-persistent-net.rules" <<'EOT'
# This file was automatically generated by the /lib/udev/write_net_rules
# program, run by the persistent-net-generator.rules rules file.
SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="52:54:00:12:34:56", ATTR{dev_id}=="0x0", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"
EOT

    chroot "$tree" usermod -p "$root_hash" root
    chroot "$tree" useradd --create-home --uid 1000 --user-group \
        --shell /bin/bash --password "$alice_hash" alice

    mkdir -p "$tree/root/.ssh" "$tree/home/alice/.ssh"
    echo "$ROOT_AUTHORIZED_KEY" >"$tree/root/.ssh/authorized_keys"
    echo "$ALICE_AUTHORIZED_KEY" >"$tree/home/alice/.ssh/authorized_keys"
    chmod 0700 "$tree/root/.ssh" "$tree/home/alice/.ssh"
    chmod 0600 "$tree/root/.ssh/authorized_keys" "$tree/home/alice/.ssh/authorized_keys"
    printf '%s\n' 'apt-get update' 'apt-get -y upgrade' \
        'vi /etc/network/interfaces.d/eth0' 'systemctl restart networking' \
        >"$tree/root/.bash_history"
    printf '%s\n' 'ls -la' 'sudo -i' 'ssh vendor@192.0.2.1' >"$tree/home/alice/.bash_history"
    chmod 0600 "$tree/root/.bash_history" "$tree/home/alice/.bash_history"
    chown -R 1000:1000 "$tree/home/alice"

    # openssh-server's postinst normally makes the host keys. This covers
    # a postinst that did not.
    if ! compgen -G "$tree/etc/ssh/ssh_host_*_key" >/dev/null; then
        chroot "$tree" ssh-keygen -A
    fi
}

# Makes the files whose attributes forge must keep, on the root LV and
# on the var LV.
add_fixtures() {
    local fixtures=$tree/opt/forge-fixtures
    mkdir -p "$fixtures"
    echo "owned by 1234:5678" >"$fixtures/owned"
    chown 1234:5678 "$fixtures/owned"
    chmod 0640 "$fixtures/owned"
    cp "$tree/usr/bin/true" "$fixtures/setuid"
    chmod 4755 "$fixtures/setuid"
    mkdir "$fixtures/sticky"
    chmod 1777 "$fixtures/sticky"
    echo "user xattr" >"$fixtures/xattr"
    setfattr -n user.forge.test -v kept "$fixtures/xattr"
    echo "SELinux label" >"$fixtures/selinux"
    setfattr -n security.selinux -v system_u:object_r:httpd_sys_content_t:s0 "$fixtures/selinux"
    echo "access ACL" >"$fixtures/acl"
    setfacl -m u:1234:rw- "$fixtures/acl"
    mkdir "$fixtures/acl-dir"
    setfacl -m d:u:1234:r-x "$fixtures/acl-dir"
    echo "one inode, two names" >"$fixtures/hardlink-a"
    ln "$fixtures/hardlink-a" "$fixtures/hardlink-b"
    truncate -s 64M "$fixtures/sparse"
    printf forge | dd of="$fixtures/sparse" bs=1 seek=$((32 * 1024 * 1024)) \
        conv=notrunc status=none
    cp "$tree/usr/bin/true" "$fixtures/caps"
    setcap cap_net_raw+ep "$fixtures/caps"

    local var_fixtures=$tree/var/lib/forge-fixtures
    mkdir -p "$var_fixtures"
    echo "one inode, two names, on /var" >"$var_fixtures/hardlink-a"
    ln "$var_fixtures/hardlink-a" "$var_fixtures/hardlink-b"
    echo "user xattr on /var" >"$var_fixtures/xattr"
    setfattr -n user.forge.test -v kept-var "$var_fixtures/xattr"
}

# Builds the tree and writes it to standard output as a tar stream that
# keeps owners by number, extended attributes, SELinux labels, ACLs, hard
# links and holes. Everything else goes to standard error.
tree_tar() {
    {
        install_packages
        configure_system
        add_dirty_state
        add_fixtures
    } >&2
    tar -C "$tree" --create --file=- --xattrs --xattrs-include='*' --acls \
        --selinux --sparse --numeric-owner .
}

# The disk. While tree_tar builds the tree, guestfish boots the appliance,
# partitions and formats the disk and mounts the three file systems where
# the tree expects them. Then tar-in reads the tar stream from standard
# input. The commands are arguments, not a script file, because guestfish
# -f reads its script from standard input. If tree_tar fails, tar-in gets
# an empty stream and fails too.
tmp_out=$(mktemp "$out.tmp.XXXXXX")
qemu-img create -q -f qcow2 "$tmp_out" 4G
tree_tar |
    guestfish --format=qcow2 -a "$tmp_out" -- \
        run : \
        part-init /dev/sda gpt : \
        part-add /dev/sda p 2048 4095 : \
        part-add /dev/sda p 4096 1052671 : \
        part-add /dev/sda p 1052672 1576959 : \
        part-add /dev/sda p 1576960 -34 : \
        part-set-gpt-type /dev/sda 1 21686148-6449-6E6F-744E-656564454649 : \
        part-set-gpt-type /dev/sda 2 0FC63DAF-8483-4772-8E79-3D47C7D8C5B1 : \
        part-set-gpt-type /dev/sda 3 0657FD6D-A4AB-438F-A8EF-8A9B1AF2D7BC : \
        part-set-gpt-type /dev/sda 4 E6D6D379-F507-44C2-A23C-238F2A3DF928 : \
        part-set-name /dev/sda 1 bios : \
        part-set-name /dev/sda 2 boot : \
        part-set-name /dev/sda 3 swap : \
        part-set-name /dev/sda 4 lvm : \
        pvcreate /dev/sda4 : \
        vgcreate vg0 /dev/sda4 : \
        lvcreate root vg0 2250 : \
        lvcreate var vg0 700 : \
        mke2fs /dev/sda2 fstype:ext4 "uuid:$boot_uuid" label:boot : \
        mkswap /dev/sda3 "uuid:$swap_uuid" label:swap : \
        mke2fs /dev/vg0/root fstype:ext4 "uuid:$root_uuid" label:root : \
        mke2fs /dev/vg0/var fstype:ext4 "uuid:$var_uuid" label:var : \
        mount /dev/vg0/root / : \
        mkdir /boot : \
        mkdir /var : \
        mount /dev/sda2 /boot : \
        mount /dev/vg0/var /var : \
        tar-in - / xattrs:true selinux:true acls:true : \
        umount-all

# Reads the image back in a new appliance, read-only, with inspection.
cat >"$work/verify.guestfish" <<'EOF'
echo @distro
inspect-get-distro /dev/vg0/root
echo @version
inspect-get-major-version /dev/vg0/root
echo @mountpoints
inspect-get-mountpoints /dev/vg0/root
echo @xattr
lgetxattrs /opt/forge-fixtures/xattr
echo @var-xattr
lgetxattrs /var/lib/forge-fixtures/xattr
echo @selinux
lgetxattrs /opt/forge-fixtures/selinux
echo @caps
lgetxattrs /opt/forge-fixtures/caps
echo @acl
acl-get-file /opt/forge-fixtures/acl access
echo @acl-dir
acl-get-file /opt/forge-fixtures/acl-dir default
echo @hardlink-a
lstatns /opt/forge-fixtures/hardlink-a
echo @hardlink-b
lstatns /opt/forge-fixtures/hardlink-b
echo @var-hardlink-a
lstatns /var/lib/forge-fixtures/hardlink-a
echo @var-hardlink-b
lstatns /var/lib/forge-fixtures/hardlink-b
echo @sparse
lstatns /opt/forge-fixtures/sparse
echo @sparse-data
pread /opt/forge-fixtures/sparse 5 33554432
echo
echo @owned
lstatns /opt/forge-fixtures/owned
echo @setuid
lstatns /opt/forge-fixtures/setuid
echo @sticky
lstatns /opt/forge-fixtures/sticky
echo @boot-uuid
vfs-uuid /dev/sda2
echo @swap-uuid
vfs-uuid /dev/sda3
echo @swap-type
vfs-type /dev/sda3
echo @fstab
cat /etc/fstab
echo @resume
cat /etc/initramfs-tools/conf.d/resume
echo @root-history
is-file /root/.bash_history
echo @alice-history
is-file /home/alice/.bash_history
echo @host-keys
glob-expand /etc/ssh/ssh_host_*
echo @root-keys
cat /root/.ssh/authorized_keys
echo @alice-keys
cat /home/alice/.ssh/authorized_keys
echo @resolv-symlink
is-symlink /etc/resolv.conf
echo @resolv
cat /etc/resolv.conf
echo @interfaces
cat /etc/network/interfaces.d/eth0
echo @net-rules
cat /etc/udev/rules.d/70-persistent-net.rules
echo @shadow
grep ^root: /etc/shadow
grep ^alice: /etc/shadow
echo @passwd
grep ^alice: /etc/passwd
echo @group
grep ^alice: /etc/group
echo @alice-home
lstatns /home/alice
echo @end
EOF
guestfish --ro --format=qcow2 -a "$tmp_out" -i -f "$work/verify.guestfish" >"$work/verify.out"

# Prints the lines of section NAME of the verification output.
section() {
    awk -v name="@$1" '/^@/ { on = ($0 == name); next } on' "$work/verify.out"
}
# Prints field FIELD of an lstatns section.
stat_field() {
    section "$1" | awk -v key="$2:" '$1 == key { print $2 }'
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

echo "make-dirty-debian: verifying $out"
check "inspection finds Debian 12" \
    equal "$(section distro)/$(section version)" "debian/12"
check "mount point / is /dev/vg0/root" has_line mountpoints "/: /dev/vg0/root"
check "mount point /boot is /dev/sda2" has_line mountpoints "/boot: /dev/sda2"
check "mount point /var is /dev/vg0/var" has_line mountpoints "/var: /dev/vg0/var"
check "user.forge.test=kept on /opt" has_text xattr "attrval: kept"
check "user.forge.test=kept-var on /var" has_text var-xattr "attrval: kept-var"
check "security.selinux label kept" \
    has_text selinux "attrval: system_u:object_r:httpd_sys_content_t:s0"
# The expected value is VFS_CAP_REVISION_2 with the effective flag, then
# the permitted mask with bit 13 (CAP_NET_RAW) set, little-endian, as
# guestfish prints it with \xNN escapes.
check "security.capability is cap_net_raw+ep" \
    has_text caps 'attrval: \x01\x00\x00\x02\x00 \x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' 
check "access ACL u:1234:rw-" has_line acl "user:1234:rw-"
check "default ACL u:1234:r-x" has_line acl-dir "user:1234:r-x"
check "hard link on /opt shares an inode" \
    equal "$(stat_field hardlink-a st_ino)/$(stat_field hardlink-a st_nlink)" \
    "$(stat_field hardlink-b st_ino)/2"
check "hard link on /var shares an inode" \
    equal "$(stat_field var-hardlink-a st_ino)/$(stat_field var-hardlink-a st_nlink)" \
    "$(stat_field var-hardlink-b st_ino)/2"
sparse_size=$(stat_field sparse st_size)
sparse_blocks=$(stat_field sparse st_blocks)
check "sparse file is 64 MiB with holes" \
    test "$sparse_size" -eq $((64 * 1024 * 1024)) -a "$sparse_blocks" -le 64
check "sparse file has 'forge' at 32 MiB" has_line sparse-data "forge"
check "owned is 1234:5678 mode 0640" \
    equal "$(stat_field owned st_uid):$(stat_field owned st_gid):$(stat_field owned st_mode)" \
    "1234:5678:$((0100640))"
check "setuid has mode 4755" equal "$(stat_field setuid st_mode)" "$((0104755))"
check "sticky has mode 1777" equal "$(stat_field sticky st_mode)" "$((0041777))"
check "/boot has the UUID in fstab" equal "$(section boot-uuid)" "$boot_uuid"
check "swap has the UUID in fstab" equal "$(section swap-type)/$(section swap-uuid)" "swap/$swap_uuid"
check "fstab mounts / from vg0-root" has_text fstab "/dev/mapper/vg0-root / ext4"
check "fstab mounts /boot by UUID" has_text fstab "UUID=$boot_uuid /boot ext4"
check "fstab mounts /var from vg0-var" has_text fstab "/dev/mapper/vg0-var /var ext4"
check "fstab names the swap by UUID" has_line fstab "UUID=$swap_uuid none swap sw 0 0"
check "initramfs resume names the swap" has_line resume "RESUME=UUID=$swap_uuid"
check "root has shell history" equal "$(section root-history)" true
check "alice has shell history" equal "$(section alice-history)" true
check "SSH host keys present" has_line host-keys /etc/ssh/ssh_host_ed25519_key
check "root has authorized_keys" has_line root-keys "$ROOT_AUTHORIZED_KEY"
check "alice has authorized_keys" has_line alice-keys "$ALICE_AUTHORIZED_KEY"
check "resolv.conf is a regular file" equal "$(section resolv-symlink)" false
check "resolv.conf names 192.0.2.53" has_line resolv "nameserver 192.0.2.53"
check "resolv.conf names 198.51.100.53" has_line resolv "nameserver 198.51.100.53"
check "eth0 has a static address" has_text interfaces "address 192.0.2.10/24"
check "udev binds 52:54:00:12:34:56 to eth0" has_text net-rules '"52:54:00:12:34:56"'
check "root has a SHA-512 password hash" has_text shadow "root:$root_hash:"
check "alice has a SHA-512 password hash" has_text shadow "alice:$alice_hash:"
check "alice is uid 1000 in passwd" has_text passwd "alice:x:1000:1000:"
check "alice has group 1000" has_text group "alice:x:1000:"
check "alice owns her home" \
    equal "$(stat_field alice-home st_uid):$(stat_field alice-home st_gid)" "1000:1000"
echo "  sparse file: st_size=$sparse_size st_blocks=$sparse_blocks (512-byte units)"

if ((failures > 0)); then
    echo "make-dirty-debian: $failures checks failed. The guestfish output:" >&2
    cat "$work/verify.out" >&2
    exit 1
fi

# mktemp made the file with mode 0600.
chmod 0644 "$tmp_out"
mv "$tmp_out" "$out"
tmp_out=""
echo "make-dirty-debian: wrote $out ($(du -h "$out" | cut -f1) on disk)"
