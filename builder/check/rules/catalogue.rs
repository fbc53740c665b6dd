//! The rule table: each rule's requirement, how `forge build` applies it
//! and how the check verifies it, in report order.
//!
//! The `applied` and `verified` texts describe the code in `build/` and in
//! this folder. Change them together with that code.

use super::Severity::{Blocking, Required};
use super::{
    accounts, arch, boot, disk, files, hardening, malware, network, packages, services, ssh, swap,
    windows, Rule,
};

pub(super) static CATALOGUE: &[Rule] = &[
    Rule {
        id: "vhd-fixed-format",
        title: "Fixed VHD",
        severity: Blocking,
        requirement: "The file is a fixed VHD with a valid footer (cookie conectix, disk type 2, \
            version 1.0, checksum).",
        applied: "The output step appends a 512-byte fixed VHD footer (cookie conectix, disk \
            type 2, version 1.0, checksum computed over the footer) to the raw disk in place; no \
            conversion tool touches the disk.",
        verified: "Parses the last 512 bytes of the file. Fails when they do not start with the \
            cookie conectix, so dynamic VHD, VHDX, qcow2 and raw files fail, and fails when the \
            disk type is not 2 (fixed), the format version is not 0x00010000 or the one's \
            complement checksum does not match the footer bytes.",
        check: disk::vhd_fixed_format,
    },
    Rule {
        id: "vhd-size-aligned",
        title: "VHD size aligned",
        severity: Blocking,
        requirement: "Footer current and original size equal the file length minus 512 and are \
            whole MiB.",
        applied: "The recipe parser rejects a disk size that is not a whole number of MiB, and \
            the output step writes that size as both the current and the original size of the \
            footer.",
        verified: "Reads the footer and fails unless its current size and original size both \
            equal the file length minus 512 and that length is a whole number of MiB. A file \
            without a VHD footer fails.",
        check: disk::vhd_size_aligned,
    },
    Rule {
        id: "vhd-size-range",
        title: "VHD size range",
        severity: Blocking,
        requirement: "Linux OS disks are 1 to 1023 GiB; Windows OS disks are 30 to 250 GiB.",
        applied: "The recipe parser rejects a disk size under 1 GiB or over 1023 GiB.",
        verified: "Takes the disk size as the file length minus 512 for a fixed VHD and as the \
            virtual size for any other container. Fails unless it lies in 1 to 1023 GiB, or in \
            30 to 250 GiB when the OS family is windows.",
        check: disk::vhd_size_range,
    },
    Rule {
        id: "disk-first-mib-free",
        title: "First MiB free",
        severity: Blocking,
        requirement: "No partition starts before sector 2048.",
        applied: "The disk step partitions with sgdisk at 2048-sector alignment, and the first \
            partition (BIOS boot) starts at sector 2048.",
        verified: "Reads the partition table and fails on every partition whose start sector is \
            below 2048.",
        check: disk::first_mib_free,
    },
    Rule {
        id: "security-patches",
        title: "Security updates installed",
        severity: Required,
        requirement: "Every available security update from the distribution is installed.",
        applied: "The bootstrap installs from the release, -updates and -security suites of the \
            Debian mirrors in the host's apt sources, so apt picks the newest version of each \
            package, and keeps the package lists in the image for the check. On an image base, \
            forge's first layer refreshes the image's repositories and upgrades every package.",
        verified: "On dpkg systems, reads the installed packages from /var/lib/dpkg/status and \
            the uncompressed *_Packages indexes under /var/lib/apt/lists. Fails when a \
            -security or -updates suite has a newer version, by Debian version rules, of an \
            installed package of the same architecture; the evidence names the index files \
            with their Release dates. Not-run when the status file, every index or every update \
            suite is missing. On RHEL-family and SUSE images, always not-run: the rpm database \
            is read, but comparing it with the distribution's updates is not supported yet.",
        check: packages::security_patches,
    },
    Rule {
        id: "hardening-baseline",
        title: "Hardening baseline",
        severity: Required,
        requirement: "The image follows the distribution's accepted hardening guidance.",
        applied: "The hardening step puts PermitRootLogin no and PermitEmptyPasswords no at the \
            top of /etc/ssh/sshd_config, writes the kernel network settings of the baseline to \
            /etc/sysctl.d/zz-forge-baseline.conf, and sets /etc/shadow and /etc/gshadow to mode \
            0640, owner root and group shadow.",
        verified: "Checks forge Linux baseline 1: /etc/shadow and /etc/gshadow exist with no \
            mode bit beyond 0640 and owner uid 0, /etc/passwd is not group or world writable, \
            sshd's effective PermitRootLogin is not yes, PermitEmptyPasswords is no when set, \
            and 7 kernel network settings have their baseline values after the sysctl.d \
            drop-ins are applied in systemd-sysctl order with /etc/sysctl.conf last.",
        check: hardening::hardening_baseline,
    },
    Rule {
        id: "minimal-footprint",
        title: "Minimal footprint",
        severity: Required,
        requirement: "Only the services and ports the product needs are enabled.",
        applied: "The build disables no network service: the image keeps the units that its \
            packages enable, and each layer's enable list is passed to systemctl enable and declares those units to \
            the check.",
        verified: "Lists the units enabled by links in /etc/systemd/system/*.wants and \
            *.requires, masks skipped. A socket unit listens when a ListenStream, \
            ListenDatagram or ListenSequentialPacket value is not a path or an abstract name; a \
            service listens when its name is in a fixed list of known network daemons. Fails on \
            each listener that the recipe does not declare; ssh and sshd count as declared, and \
            forge check, which has no recipe, declares nothing else.",
        check: services::minimal_footprint,
    },
    Rule {
        id: "malware-scan",
        title: "Malware scan",
        severity: Required,
        requirement: "The image's files were scanned for malware with no finding.",
        applied: "Nothing is installed in the image: the check pass of forge build scans the \
            finished disk, with the signatures of --clamav-db or /var/lib/clamav on the host.",
        verified: "Runs clamscan recursively, without following symlinks, over a host copy of \
            the image's files with the signature files of --clamav-db or /var/lib/clamav. Exit \
            code 0 passes, 1 fails with the infected paths, and any other code is not-run. No \
            signature file, or no host copy of the tree, is not-run.",
        check: malware::malware_scan,
    },
    Rule {
        id: "accounts-locked",
        title: "Accounts locked",
        severity: Blocking,
        requirement: "All accounts are locked, none has an empty or default password, and only \
            root has UID 0.",
        applied: "The hardening step replaces every /etc/shadow password field that is not a \
            lock marker (*, !, !!, *LOCK*, !*) with *. A second UID 0 account is left for the \
            check to reject.",
        verified: "Reads /etc/shadow and fails on each empty password field and each field that \
            holds a hash, also behind !; fields made only of ! and * pass. Reads /etc/passwd \
            and fails on every UID 0 user except the first root entry. A missing /etc/shadow \
            fails.",
        check: accounts::accounts_locked,
    },
    Rule {
        id: "firewall-disabled",
        title: "Firewall disabled",
        severity: Required,
        requirement: "Firewall rules are disabled unless the product needs them.",
        applied: "Unless the recipe waives this rule, the hardening step sets ENABLED=no in \
            /etc/ufw/ufw.conf and removes the .wants and .requires links of ufw, firewalld, \
            nftables, netfilter-persistent, iptables and ip6tables services in \
            /etc/systemd/system.",
        verified: "Fails when /etc/ufw/ufw.conf sets ENABLED=yes (quotes and spaces ignored) or \
            when a .wants or .requires link enables ufw, firewalld, nftables, \
            netfilter-persistent, iptables or ip6tables service. A recipe waiver turns the \
            failure into waived with its reason.",
        check: network::firewall_disabled,
    },
    Rule {
        id: "ssh-host-keys-removed",
        title: "SSH host keys removed",
        severity: Blocking,
        requirement: "No /etc/ssh/ssh_host_* keys.",
        applied: "The hardening step removes every /etc/ssh/ssh_host_* file.",
        verified: "Lists /etc/ssh and fails on every name that starts with ssh_host_, public \
            keys included.",
        check: ssh::host_keys_removed,
    },
    Rule {
        id: "authorized-keys-removed",
        title: "Authorized keys removed",
        severity: Blocking,
        requirement: "No authorized_keys or authorized_keys2 file for any user.",
        applied: "The hardening step removes every file named authorized_keys or \
            authorized_keys2 outside /proc, /sys, /dev, /run, /usr and /boot.",
        verified: "Walks the whole tree and fails on every entry that is not a folder and is \
            named authorized_keys or authorized_keys2.",
        check: files::authorized_keys_removed,
    },
    Rule {
        id: "known-hosts-removed",
        title: "Known hosts removed",
        severity: Required,
        requirement: "No known_hosts file for any user.",
        applied: "The hardening step removes every file named known_hosts outside /proc, /sys, \
            /dev, /run, /usr and /boot.",
        verified: "Walks the whole tree and fails on every entry that is not a folder and is \
            named known_hosts.",
        check: files::known_hosts_removed,
    },
    Rule {
        id: "private-keys-removed",
        title: "Private keys removed",
        severity: Blocking,
        requirement: "No private key material outside the distribution's packaged files.",
        applied: "The hardening step removes the key pair that ssl-cert generates at \
            installation (/etc/ssl/private/ssl-cert-snakeoil.key and its certificate). Any \
            other private key is left for the check to reject.",
        verified: "Walks the tree outside /usr, /lib, /lib32, /lib64, /libx32, /boot, /proc and \
            /sys, skipping the paths listed in dpkg's /var/lib/dpkg/info/*.list files. Fails on \
            every .pfx or .p12 file and on every regular file of at most 1 MiB that contains a \
            -----BEGIN ... PRIVATE KEY----- line.",
        check: files::private_keys_removed,
    },
    Rule {
        id: "logs-cleared",
        title: "Logs cleared",
        severity: Required,
        requirement: "/var/log holds no non-empty log file.",
        applied: "The hardening step truncates every regular file under /var/log and removes \
            the symlinks and rotated copies there (.gz, .old and numeric suffixes).",
        verified: "Walks /var/log and fails on every regular file larger than 0 bytes.",
        check: files::logs_cleared,
    },
    Rule {
        id: "machine-id-reset",
        title: "Machine ID reset",
        severity: Required,
        requirement: "/etc/machine-id is empty or absent and no filled copy exists.",
        applied: "The hardening step writes an empty /etc/machine-id with mode 0444 and replaces \
            /var/lib/dbus/machine-id with a link to it when /var/lib/dbus exists.",
        verified: "Fails when /etc/machine-id exists and is not an empty regular file, when \
            /var/lib/dbus/machine-id is a link to any other path, or when it is a file larger \
            than 0 bytes.",
        check: files::machine_id_reset,
    },
    Rule {
        id: "provisioning-state-cleared",
        title: "Provisioning state cleared",
        severity: Required,
        requirement: "No cloud-init instance data, agent state or DHCP lease remains.",
        applied: "The hardening step empties /var/lib/cloud, /var/lib/waagent and \
            /var/lib/dhclient, and removes the lease files in /var/lib/dhcp and \
            /var/lib/NetworkManager.",
        verified: "Walks the tree and fails on every entry that is not a folder under \
            /var/lib/cloud/instances, /var/lib/cloud/instance or /var/lib/cloud/data, on agent \
            state in /var/lib/waagent (ovf-env.xml, provisioned, Certificates.xml, \
            SharedConfig.xml, GoalState.xml, *.crt, *.prv, *.p7m), and on DHCP leases in \
            /var/lib/dhcp/*.leases, /var/lib/NetworkManager/*.lease, /var/lib/dhclient and \
            /var/lib/systemd/netif/leases. Empty regular files pass.",
        check: files::provisioning_state_cleared,
    },
    Rule {
        id: "no-lvm",
        title: "No LVM",
        severity: Blocking,
        requirement: "No LVM physical volume on the OS disk.",
        applied: "The disk step creates the ext4 root file system directly on a GPT partition, \
            with no LVM.",
        verified: "Fails on every partition that holds an LVM2 label (file system type \
            LVM2_member) or has the GPT LVM type or MBR type 0x8E, and on every physical \
            volume libguestfs lists when it reads the disk. Not-applicable on Windows images.",
        check: disk::no_lvm,
    },
    Rule {
        id: "shell-history-cleared",
        title: "Shell history cleared",
        severity: Blocking,
        requirement: "No non-empty shell history file for any user.",
        applied: "The hardening step removes every .bash_history, .zsh_history, .sh_history, \
            .history, .ash_history, .ksh_history, .python_history, .mysql_history, \
            .psql_history and .lesshst file outside /proc, /sys, /dev, /run, /usr and /boot.",
        verified: "Walks the whole tree and fails on every non-empty regular file with one of \
            the names the build removes, or .node_repl_history, .sqlite_history or \
            .rediscli_history.",
        check: files::shell_history_cleared,
    },
    Rule {
        id: "required-packages",
        title: "Required packages",
        severity: Blocking,
        requirement: "OpenSSL 1.0 or later, Python 3 and pyasn1 are installed.",
        applied: "The bootstrap installs openssl, python3 and python3-pyasn1 with the base \
            packages. On an image base, forge's first layer installs those the image lacks \
            with the family's package manager.",
        verified: "Fails unless the package database lists OpenSSL (openssl, or SUSE's \
            openssl-3 or openssl-1_1) at upstream version 1.0 or later by the format's version \
            rules, a Python 3 interpreter (python3, python3.N, python3N or python3-base) and its \
            pyasn1 package. A missing dpkg status file fails. The package database follows the distribution family, read from \
            the os-release ID and ID_LIKE: /var/lib/dpkg/status for Debian and Ubuntu, rpmdb.sqlite in /var/lib/rpm or \
            /usr/lib/sysimage/rpm for the RHEL family and SUSE. An rpm database that is \
            missing, in Berkeley DB or ndb format, or unreadable gives not-run.",
        check: packages::required_packages,
    },
    Rule {
        id: "ssh-server",
        title: "SSH server",
        severity: Blocking,
        requirement: "An SSH server is installed and enabled.",
        applied: "The bootstrap installs openssh-server, whose installation enables \
            ssh.service. On an image base, forge's first layer installs it when the image \
            lacks it.",
        verified: "Fails unless the package database lists openssh-server (or openssh on \
            SUSE) and a .wants or .requires link, or an alias in /etc/systemd/system, enables \
            ssh.service, sshd.service, ssh.socket or sshd.socket. A missing dpkg status file \
            fails. The package database follows the distribution family, read from \
            the os-release ID and ID_LIKE: /var/lib/dpkg/status for Debian and Ubuntu, rpmdb.sqlite in /var/lib/rpm or \
            /usr/lib/sysimage/rpm for the RHEL family and SUSE. An rpm database that is \
            missing, in Berkeley DB or ndb format, or unreadable gives not-run.",
        check: ssh::ssh_server,
    },
    Rule {
        id: "sshd-client-alive-interval",
        title: "sshd ClientAliveInterval",
        severity: Blocking,
        requirement: "The effective ClientAliveInterval of sshd is 180.",
        applied: "The hardening step writes ClientAliveInterval 180 at the top of \
            /etc/ssh/sshd_config, and sets OS.SshClientAliveInterval=180 in /etc/waagent.conf \
            when that file exists.",
        verified: "Computes sshd's effective global configuration: Include expanded in place \
            with globs in lexical order, the first value of a keyword wins, keywords are \
            case-insensitive, and settings inside Match blocks do not count. Fails unless \
            ClientAliveInterval is 180 seconds after time units (3m counts), and fails when \
            /etc/waagent.conf sets OS.SshClientAliveInterval to any other value.",
        check: ssh::client_alive_interval,
    },
    Rule {
        id: "resolv-conf-removed",
        title: "resolv.conf removed",
        severity: Required,
        requirement: "/etc/resolv.conf does not exist in the image.",
        applied: "The hardening step removes /etc/resolv.conf.",
        verified: "Passes when /etc/resolv.conf does not exist, or is a link to a path under \
            /run that does not exist in the image. Fails otherwise.",
        check: network::resolv_conf_removed,
    },
    Rule {
        id: "no-custom-network-config",
        title: "No custom network configuration",
        severity: Blocking,
        requirement: "No static addresses, MAC-bound configuration or persistent-net rules.",
        applied: "The hardening step writes DHCP on eth0 in the family's file \
            (/etc/network/interfaces where ifupdown is installed, \
            /etc/sysconfig/network-scripts/ifcfg-eth0 on the RHEL family), removes \
            the files that set static addresses or MAC addresses from \
            /etc/network/interfaces.d, /etc/systemd/network, /etc/netplan, \
            /etc/NetworkManager/system-connections and /etc/sysconfig/network-scripts, and \
            removes the 70- and 75-persistent-net udev rules.",
        verified: "Reads the network configuration of every family, whatever the image's \
            family, and fails on each line that pins an address or a MAC address: iface ... \
            static stanzas and hwaddress in /etc/network/interfaces and interfaces.d; Address \
            and [Match] MACAddress of /etc/systemd/network/*.network and MACAddress of *.link; \
            addresses of an interface (not of nameservers) and macaddress in \
            /etc/netplan/*.yaml; method=manual and address keys of [ipv4] and [ipv6], and \
            mac-address, in /etc/NetworkManager/system-connections; IPADDR*, IPV6ADDR, HWADDR, \
            MACADDR and a static or none BOOTPROTO beside an address in \
            /etc/sysconfig/network-scripts/ifcfg-*; IPADDR*, LLADDR, BOOTPROTO='static' and \
            ifcfg-*-id-* file names in /etc/sysconfig/network; and every line of a udev rule \
            file named *persistent-net*.rules. ifcfg files of the loopback interface are \
            skipped.",
        check: network::no_custom_network_config,
    },
    Rule {
        id: "azure-agent",
        title: "Azure Linux Agent",
        severity: Blocking,
        requirement: "The Azure Linux Agent is installed from the distribution's package and \
            enabled.",
        applied: "The bootstrap installs Debian's waagent package, whose installation enables \
            its service. On an image without the agent, forge's first layer installs the \
            family's package: waagent, WALinuxAgent or python-azure-agent.",
        verified: "Fails unless the package database lists the family's agent package and a \
            link enables its service: waagent or walinuxagent with walinuxagent.service or \
            waagent.service on Debian and Ubuntu, WALinuxAgent with waagent.service on the RHEL \
            family, python3-azure-agent (or python-azure-agent, python311-azure-agent) with \
            waagent.service on SUSE. An agent older than 2.2.41 also fails when \
            /etc/waagent.conf sets AutoUpdate.Enabled=n. The evidence records the agent's \
            version. A missing dpkg status file fails. The package database follows the distribution family, read from \
            the os-release ID and ID_LIKE: /var/lib/dpkg/status for Debian and Ubuntu, rpmdb.sqlite in /var/lib/rpm or \
            /usr/lib/sysimage/rpm for the RHEL family and SUSE. An rpm database that is \
            missing, in Berkeley DB or ndb format, or unreadable gives not-run.",
        check: services::azure_agent,
    },
    Rule {
        id: "kernel-cmdline",
        title: "Kernel command line",
        severity: Blocking,
        requirement: "Every boot entry has console=ttyS0, earlyprintk=ttyS0 and rootdelay=300.",
        applied: "The hardening step writes /etc/default/grub.d/zz-forge.cfg with \
            GRUB_CMDLINE_LINUX=\"console=tty1 console=ttyS0 earlyprintk=ttyS0 rootdelay=300\" \
            and an empty GRUB_CMDLINE_LINUX_DEFAULT, and the disk step generates \
            /boot/grub/grub.cfg from it with the image's grub-mkconfig. On the RHEL family the \
            disk step writes root=UUID=<root> ro and the same parameters into every BLS entry, \
            grubenv's kernelopts and /etc/kernel/cmdline, and GRUB_CMDLINE_LINUX into \
            /etc/default/grub.",
        verified: "Reads what GRUB reads: every grub.cfg in /boot/grub, /boot/grub2 and \
            /boot/efi/EFI/*, followed as a script. load_env loads the environment block beside \
            the file (its header line required), set assigns, an if [ -z \"$name\" ] block \
            assigns only while the variable is empty, and other conditions count as true. \
            Checks the linux, linuxefi and linux16 lines of the menu entries, and the options \
            lines of every /boot/loader/entries/*.conf with the variables at each blscfg \
            command, or of /boot/grub2/grubenv when no grub.cfg runs blscfg. Fails when no \
            entry is found, when an entry lacks console=ttyS0 (console=ttyS0,115200n8 counts), \
            earlyprintk=ttyS0 or rootdelay=300, or when it uses a variable that nothing \
            defines.",
        check: boot::kernel_cmdline,
    },
    Rule {
        id: "no-swap",
        title: "No swap",
        severity: Blocking,
        requirement: "No swap partition, fstab entry, swap file or enabled swap unit on the OS \
            disk.",
        applied: "The disk step creates no swap partition and writes an fstab without swap, and \
            the hardening step removes .swap units in /etc/systemd/system and files of at least \
            40 KiB with a swap signature outside /proc, /sys, /dev, /run, /usr and /boot.",
        verified: "Fails on a partition with file system type swap or a Linux swap type (GPT, \
            or MBR 0x82), an fstab entry of type swap, an enabled .swap unit or a .swap file in \
            /etc/systemd/system, and a file of at least 40 KiB with the SWAPSPACE2 or \
            SWAP-SPACE signature at offset 4086 outside /usr, /lib*, /boot, /proc, /sys, \
            /var/lib/dpkg and /var/cache/apt.",
        check: swap::no_swap,
    },
    Rule {
        id: "single-root-partition",
        title: "Single root partition",
        severity: Blocking,
        requirement: "The OS disk has exactly one OS file system partition, mounted at /.",
        applied: "The disk step creates a BIOS boot partition, an EFI system partition and one \
            ext4 root partition, and writes an fstab that mounts only / and /boot/efi.",
        verified: "Counts the partitions that have a file system and are not BIOS boot, EFI \
            system or swap, and fails unless there is exactly one. Also fails on every fstab \
            entry that mounts a real file system at or below /boot, /var, /home, /usr, /opt, \
            /srv or /tmp; a vfat /boot/efi and virtual file systems such as tmpfs are allowed.",
        check: disk::single_root_partition,
    },
    Rule {
        id: "os-64bit",
        title: "64-bit OS",
        severity: Blocking,
        requirement: "Package architecture, init binary and kernel are all 64-bit.",
        applied: "The recipe parser accepts only the x86_64 architecture, so the bootstrap \
            installs amd64 packages and the linux-image-cloud-amd64 kernel.",
        verified: "Fails unless the package architecture is amd64, arm64, x86_64 or aarch64, \
            /sbin/init resolves to an ELF file of class 64, and every /boot/vmlinuz-* is an x86 \
            bzImage with the 64-bit flag in xloadflags or an arm64 Image. No kernel fails. The \
            package architecture is the first line of /var/lib/dpkg/arch, else that of dpkg or \
            libc6 in the dpkg status; on rpm systems it is that of the rpm package, else of \
            glibc, a 64-bit one first. When only the rpm database cannot be read, the rule is \
            not-run.",
        check: arch::os_64bit,
    },
    Rule {
        id: "win-azure-base",
        title: "Azure Windows base",
        severity: Blocking,
        requirement: "The image derives from an Azure-provided Windows Server base.",
        applied: "A Windows build refuses, before any step, a base whose SOFTWARE hive is not a \
            Windows Server edition or that lacks the Azure guest agent services.",
        verified: "Reads ProductName, EditionID, InstallationType, CurrentBuildNumber and UBR \
            under SOFTWARE Microsoft\\Windows NT\\CurrentVersion. Fails unless the edition or \
            installation type is a server one, the build is a Windows Server release (14393, \
            17763, 20348, 25398, 26100), and the services WindowsAzureGuestAgent and RdAgent \
            exist in the control set that SYSTEM Select\\Current names.",
        check: windows::azure_base,
    },
    Rule {
        id: "win-security-updates",
        title: "Windows security updates",
        severity: Required,
        requirement: "Latest security updates are installed.",
        applied: "Updates cannot be installed offline. The build refuses a base whose \
            CurrentBuildNumber.UBR is older than the recipe's [windows] min_build, and records \
            the pin in the image.",
        verified: "Reads CurrentBuildNumber and UBR from the SOFTWARE hive and compares them with \
            the minimum that the recipe, or the policy recorded in the image, pins. A lower build \
            or revision fails; no pin is not-run. The evidence says what was seen and compared, \
            names the newest installed cumulative update package (Package_for_RollupFix with \
            CurrentState 0x70 in the servicing store), and says that offline, newer updates \
            cannot be ruled out.",
        check: windows::security_updates,
    },
    Rule {
        id: "win-no-reserved-usernames",
        title: "No reserved user names",
        severity: Required,
        requirement: "Nothing depends on the user names administrator, root or admin.",
        applied: "The build turns auto-logon off (AutoAdminLogon 0, DefaultPassword removed). \
            Service and task accounts cannot be changed offline; the check fails the build when \
            one uses a reserved name.",
        verified: "Fails when the ObjectName of any service in the current control set, any \
            UserId or GroupId of a task file under /Windows/System32/Tasks, or, with \
            AutoAdminLogon 1, DefaultUserName or AltDefaultUserName is administrator, admin or \
            root, case-insensitively, with or without a domain.",
        check: windows::no_reserved_usernames,
    },
    Rule {
        id: "win-bitlocker",
        title: "BitLocker",
        severity: Required,
        requirement: "The captured VHD is not encrypted; BitLocker is arranged for deployment.",
        applied: "The build refuses an encrypted base and never encrypts the VHD. By default the \
            report says to encrypt the OS and data disks with Azure Disk Encryption at \
            deployment; with bitlocker = \"first-boot\" the build places manage-bde commands in \
            SetupComplete.cmd.",
        verified: "Fails when any partition is BitLocker-encrypted (signature -FVE-FS-). With \
            bitlocker = \"first-boot\", fails unless /Windows/Setup/Scripts/SetupComplete.cmd \
            runs manage-bde -on. The evidence names how encryption is arranged.",
        check: windows::bitlocker,
    },
    Rule {
        id: "win-minimal-footprint",
        title: "Windows minimal footprint",
        severity: Required,
        requirement: "Only the roles, features, services and ports needed are enabled.",
        applied: "The build sets Start 4 (disabled) on every denied service and refuses a base \
            with a denied role or feature installed, which only Uninstall-WindowsFeature on the \
            VM can remove.",
        verified: "Lists installed roles and features (InstallState 1 under SOFTWARE \
            Microsoft\\ServerManager\\ServicingStorage\\ServerComponentCache) and services whose \
            Start is 0, 1 or 2. Fails on any named by forge's denylist (TlntSvr, simptcp, tftpd, \
            FS-SMB1, Telnet-Client, TFTP-Client, Simple-TCPIP) or the recipe's [windows] deny. \
            Ports are judged by win-firewall-rules.",
        check: windows::minimal_footprint,
    },
    Rule {
        id: "win-malware-scan",
        title: "Windows malware scan",
        severity: Required,
        requirement: "Files scanned for malware with no finding.",
        applied: "Nothing to apply: the scan is part of the check pass.",
        verified: "Runs clamscan over the volume's files, as malware-scan does on Linux. Without \
            a signature database the rule is not-run.",
        check: windows::malware_scan,
    },
    Rule {
        id: "win-auto-update",
        title: "Automatic updates",
        severity: Required,
        requirement: "Automatic updates are on.",
        applied: "The build sets NoAutoUpdate 0 and AUOptions 4 as REG_DWORD under SOFTWARE \
            Policies\\Microsoft\\Windows\\WindowsUpdate\\AU, replacing values of other types, and \
            sets the wuauserv service to Start 3 when it is disabled.",
        verified: "Fails unless NoAutoUpdate is REG_DWORD 0 and AUOptions is REG_DWORD 4; a \
            string value fails, because Windows ignores it. Also fails when wuauserv has Start 4.",
        check: windows::auto_update,
    },
    Rule {
        id: "win-accounts-locked",
        title: "Windows accounts locked",
        severity: Required,
        requirement: "Only needed accounts exist, locked, with no default passwords.",
        applied: "The build sets the disabled flag of every local account that the recipe's \
            [windows] accounts does not name, and refuses a named account with a blank password.",
        verified: "Reads every account under SAM Domains\\Account\\Users\\Names, its RID and the \
            ACB flags of its F value. Fails on an enabled account that the recipe does not name, \
            an enabled account with no NT hash in its V value (blank password), or one flagged as \
            needing no password. Password hashes are not compared with known passwords.",
        check: windows::accounts_locked,
    },
    Rule {
        id: "win-firewall-rules",
        title: "Windows firewall rules",
        severity: Required,
        requirement: "Firewall rules are disabled unless the product needs them.",
        applied: "The build sets Active=FALSE on every active inbound allow rule in the control \
            set's FirewallPolicy\\FirewallRules, except Remote Desktop rules and those the \
            recipe's [windows] firewall_allow names. A waiver keeps them all.",
        verified: "Fails when an active inbound allow rule is neither a Remote Desktop rule \
            (value name RemoteDesktop-..., or LPort 3389) nor named, by value name or Name field, \
            in the recipe's firewall_allow. Waivable with a product reason.",
        check: windows::firewall,
    },
    Rule {
        id: "win-sensitive-files-removed",
        title: "Sensitive files removed",
        severity: Required,
        requirement: "No hosts-file entries, logs, unneeded certificates or answer files with \
            credentials.",
        applied: "The build keeps only comments in the hosts file, removes answer files with \
            credentials, files in the log folders and Panther logs, private key files outside \
            /Windows and the certificates of the machine's personal store.",
        verified: "Fails on a hosts line that is not a comment; an unattend.xml or \
            autounattend.xml with a Password or AdministratorPassword element in /, \
            /Windows/Panther, /Windows/Panther/Unattend or /Windows/System32/Sysprep; any file \
            under /Windows/Logs, /Windows/Temp, /WindowsAzure/Logs or /inetpub/logs, or a .log or \
            .etl file in /Windows/Panther; a .pfx, .p12 or .pvk file, or a PEM private key, \
            outside /Windows; a key under SOFTWARE \
            Microsoft\\SystemCertificates\\MY\\Certificates.",
        check: windows::sensitive_files,
    },
    Rule {
        id: "win-64bit",
        title: "64-bit Windows",
        severity: Blocking,
        requirement: "The OS is 64-bit.",
        applied: "Nothing to apply: the base decides the architecture.",
        verified: "Fails unless PROCESSOR_ARCHITECTURE in the control set's Session \
            Manager\\Environment is AMD64 or ARM64 and /Windows/System32/ntoskrnl.exe has a PE32+ \
            header for x86-64 or ARM64.",
        check: windows::is_64bit,
    },
    Rule {
        id: "win-generalized",
        title: "Windows generalized",
        severity: Blocking,
        requirement: "The image is generalized (sysprep finished).",
        applied: "Sysprep cannot run offline: the build refuses a base that is not generalized \
            and says to run sysprep /generalize /oobe /shutdown before exporting.",
        verified: "Fails unless SYSTEM Setup\\Status\\SysprepStatus GeneralizationState is 7 and \
            ImageState (SOFTWARE Microsoft\\Windows\\CurrentVersion\\Setup\\State, else \
            /Windows/Setup/State/State.ini) is absent or IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE.",
        check: windows::generalized,
    },
    Rule {
        id: "win-rdp-enabled",
        title: "Remote Desktop enabled",
        severity: Blocking,
        requirement: "Remote Desktop is enabled.",
        applied: "The build sets fDenyTSConnections to REG_DWORD 0, in the control set and in the \
            Terminal Services policy when present, and sets TermService to Start 3 when it is \
            disabled.",
        verified: "Fails unless the control set's Terminal Server fDenyTSConnections is REG_DWORD \
            0, no Terminal Services policy sets it otherwise, and TermService exists and is not \
            disabled.",
        check: windows::rdp_enabled,
    },
];
