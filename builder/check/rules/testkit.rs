//! A clean Debian 12 tree that passes every Linux rule, and tests that
//! plant one violation at a time: the planted rule must fail and no other
//! rule may fail.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

use tempfile::TempDir;

use crate::check::{
    run_rules, DirView, DiskFacts, Finding, OsInfo, Partition, Policy, Status, Subject,
};
use crate::vhd::Footer;

const GIB: u64 = 1 << 30;

const DPKG_STATUS: &str = "\
Package: dpkg
Status: install ok installed
Architecture: amd64
Version: 1.21.22

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u4

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2

Package: python3
Status: install ok installed
Architecture: amd64
Version: 3.11.2-1+b1

Package: python3-pyasn1
Status: install ok installed
Architecture: all
Version: 0.4.8-3

Package: openssh-server
Status: install ok installed
Architecture: amd64
Version: 1:9.2p1-2+deb12u2

Package: waagent
Status: install ok installed
Architecture: all
Version: 2.9.0.4-1
";

const SECURITY_PACKAGES: &str = "\
Package: openssl
Architecture: amd64
Version: 3.0.11-1~deb12u2

Package: libc6
Architecture: amd64
Version: 2.36-9+deb12u4
";

const GRUB_CFG: &str = "\
menuentry 'Debian GNU/Linux' --class debian {
\tlinux\t/boot/vmlinuz-6.1.0-18-amd64 root=UUID=x ro console=tty0 console=ttyS0,115200n8 earlyprintk=ttyS0 rootdelay=300
\tinitrd\t/boot/initrd.img-6.1.0-18-amd64
}
";

const SSHD_CONFIG: &str = "\
Include /etc/ssh/sshd_config.d/*.conf
PermitRootLogin prohibit-password
PermitEmptyPasswords no
ClientAliveInterval 180
";

/// sshd_config of RHEL 9 and SLES 15: the drop-ins come first, so their
/// values win over the lines below.
const RPM_SSHD_CONFIG: &str = "\
Include /etc/ssh/sshd_config.d/*.conf
PermitRootLogin prohibit-password
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/libexec/openssh/sftp-server
";

/// A generated RHEL grub.cfg: the environment block, tuned's variables,
/// the fallback kernelopts, and the BLS entries.
const RHEL_GRUB_CFG: &str = r#"### BEGIN /etc/grub.d/00_header ###
set pager=1

if [ -f ${config_directory}/grubenv ]; then
  load_env -f ${config_directory}/grubenv
elif [ -s $prefix/grubenv ]; then
  load_env
fi
### END /etc/grub.d/00_header ###

### BEGIN /etc/grub.d/00_tuned ###
set tuned_params=""
set tuned_initrd=""
### END /etc/grub.d/00_tuned ###

### BEGIN /etc/grub.d/10_linux ###
insmod part_gpt
insmod xfs
if [ -z "${kernelopts}" ]; then
  set kernelopts="root=/dev/sda2 ro crashkernel=auto "
fi

insmod blscfg
blscfg
### END /etc/grub.d/10_linux ###
"#;

const RHEL_KERNELOPTS: &str =
    "root=UUID=8c4c0a0e-1a8b-4b6e-9e5a-4f1e2d3c4b5a ro console=tty1 console=ttyS0,115200n8 earlyprintk=ttyS0 rootdelay=300";

const RHEL_BLS_ENTRY: &str = "\
title Red Hat Enterprise Linux (5.14.0-362.el9.x86_64) 9.3 (Plow)
version 5.14.0-362.el9.x86_64
linux /boot/vmlinuz-5.14.0-362.el9.x86_64
initrd /boot/initramfs-5.14.0-362.el9.x86_64.img $tuned_initrd
options $kernelopts $tuned_params
grub_users $grub_users
grub_arg --unrestricted
grub_class rhel
";

const SUSE_GRUB_CFG: &str = "\
menuentry 'SLES 15-SP5' --class sles --class gnu-linux --class os $menuentry_id_option 'gnulinux-simple' {
\tload_video
\tlinux\t/boot/vmlinuz-5.14.21-150500.55.39-default root=UUID=x console=ttyS0,115200 earlyprintk=ttyS0 rootdelay=300 net.ifnames=0
\tinitrd\t/boot/initrd-5.14.21-150500.55.39-default
}
";

/// Returns a GRUB environment block of 1024 bytes that defines
/// `kernelopts`, padded with `#` as grub-editenv writes it.
pub fn grubenv(kernelopts: &str) -> Vec<u8> {
    let mut block = format!("# GRUB Environment Block\nkernelopts={kernelopts}\n").into_bytes();
    block.resize(1024, b'#');
    block
}

const SECURITY_LIST: &str = "deb.debian.org_debian-security_dists_bookworm-security";

/// A synthetic image: a host folder plus disk facts, OS info and policy.
pub struct Fixture {
    pub dir: TempDir,
    pub disk: DiskFacts,
    pub os: OsInfo,
    pub policy: Policy,
    /// An empty folder used as the ClamAV database, so no scan runs.
    pub empty_db: TempDir,
}

fn disk_facts(size: u64) -> DiskFacts {
    let partition = |number, start_sector, type_id: &str, fs_type: Option<&str>| Partition {
        number,
        start_sector,
        size_bytes: 0,
        type_id: type_id.to_string(),
        fs_type: fs_type.map(str::to_string),
        ..Partition::default()
    };
    DiskFacts {
        path: PathBuf::from("out/test.vhd"),
        file_len: size + 512,
        tail: Footer::fixed(size, 1_700_000_000, [1; 16])
            .to_bytes()
            .to_vec(),
        format: "raw".into(),
        virtual_size: size,
        partition_table: "gpt".into(),
        disk_guid: None,
        partitions: vec![
            partition(14, 2048, "21686148-6449-6E6F-744E-656564454649", None),
            partition(
                15,
                10240,
                "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
                Some("vfat"),
            ),
            partition(
                1,
                262144,
                "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
                Some("ext4"),
            ),
        ],
        lvm_pvs: Vec::new(),
    }
}

/// A Windows OS disk: MBR, "System Reserved" and "Windows" NTFS
/// partitions, written as a fixed VHD.
fn windows_disk_facts(size: u64) -> DiskFacts {
    let partition = |number, start_sector, size_bytes| Partition {
        number,
        start_sector,
        size_bytes,
        type_id: "0x07".to_string(),
        fs_type: Some("ntfs".to_string()),
        ..Partition::default()
    };
    DiskFacts {
        partition_table: "msdos".into(),
        disk_guid: Some("4a7d1c93".into()),
        partitions: vec![
            partition(1, 2048, 500 << 20),
            partition(2, 1026048, size - (1026048 * 512)),
        ],
        ..disk_facts(size)
    }
}

impl Fixture {
    fn empty(family: &str, version: &str) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            disk: disk_facts(30 * GIB),
            os: OsInfo {
                family: family.into(),
                version: version.into(),
                arch: "x86_64".into(),
            },
            policy: Policy::default(),
            empty_db: tempfile::tempdir().unwrap(),
        }
    }

    /// Copies the clean Windows Server 2022 volume that
    /// `tests/support/make-windows-tree.sh --clean` writes (made once per
    /// test run), on a 32 GiB MBR disk with two NTFS partitions. The
    /// policy pins the volume's own build as the minimum.
    pub fn clean_windows() -> Self {
        static TREE: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
        let tree = TREE.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/make-windows-tree.sh"
            );
            let status = std::process::Command::new("bash")
                .args([script, "--clean"])
                .arg(dir.path().join("c"))
                .status()
                .unwrap();
            assert!(status.success(), "{script} failed");
            dir
        });
        let mut fixture = Self::empty("windows", "10.0");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(tree.path().join("c/."))
            .arg(fixture.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        fixture.disk = windows_disk_facts(32 * GIB);
        fixture.policy.windows.min_build = Some("20348.2607".parse().unwrap());
        fixture
    }

    /// Returns the disk facts of a Windows OS disk of `gib` GiB.
    pub fn clean_windows_disk(gib: u64) -> DiskFacts {
        windows_disk_facts(gib * GIB)
    }

    /// Merges `.reg` text (keys below the hive root, as in
    /// `[Services\\TlntSvr]`) into hive `name` with hivexregedit. Parent
    /// keys must exist or be named first.
    pub fn merge_reg(&self, name: &str, body: &str) {
        let file = self.dir.path().join("plant.reg");
        let root = format!("HKEY_LOCAL_MACHINE\\{name}\\");
        let body: Vec<String> = body
            .lines()
            .map(|line| {
                let line = line.trim();
                if let Some(key) = line.strip_prefix("[-") {
                    format!("[-{root}{key}")
                } else if let Some(key) = line.strip_prefix('[') {
                    format!("[{root}{key}")
                } else {
                    line.to_owned()
                }
            })
            .collect();
        let body = body.join("\n");
        fs::write(
            &file,
            format!("Windows Registry Editor Version 5.00\n\n{body}\n"),
        )
        .unwrap();
        let hive = self.host(&format!("/Windows/System32/config/{name}"));
        let output = std::process::Command::new("hivexregedit")
            .args(["--merge", "--prefix"])
            .arg(format!("HKEY_LOCAL_MACHINE\\{name}"))
            .arg(&hive)
            .arg(&file)
            .output()
            .expect("hivexregedit runs; install libwin-hivex-perl");
        assert!(
            output.status.success(),
            "hivexregedit: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        fs::remove_file(file).unwrap();
    }

    /// Builds the clean Debian 12 tree.
    pub fn clean() -> Self {
        let fixture = Self::empty("debian", "12");
        fixture.write_base_system();
        fixture.write_accounts_and_ssh();
        fixture.write_packages();
        fixture.write_units_and_boot();
        fixture
    }

    /// Builds a clean RHEL 9 tree: rpm database in /var/lib/rpm, sshd
    /// drop-ins, waagent.service, and BLS boot entries whose options come
    /// from grubenv.
    pub fn clean_rhel() -> Self {
        let fixture = Self::empty("rhel", "9.3");
        fixture.write_base_system();
        fixture.remove("/etc/network/interfaces");
        fixture.remove("/etc/ufw/ufw.conf");

        fixture.write(
            "/usr/lib/os-release",
            b"NAME=\"Red Hat Enterprise Linux\"\nVERSION_ID=\"9.3\"\nID=\"rhel\"\nID_LIKE=\"fedora\"\n",
        );
        fixture.symlink("../usr/lib/os-release", "/etc/os-release");
        fixture.write_rpm_accounts_and_ssh();
        fixture.write_rpmdb("rhel9.sqlite", "/var/lib/rpm");
        fixture.write_rpm_units("waagent.service");

        fixture.write(
            "/etc/sysconfig/network-scripts/ifcfg-eth0",
            b"DEVICE=eth0\nONBOOT=yes\nBOOTPROTO=dhcp\nTYPE=Ethernet\nUSERCTL=no\n",
        );
        fixture.write(
            "/etc/sysconfig/network-scripts/ifcfg-lo",
            b"DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\nNAME=loopback\n",
        );
        fixture.write(
            "/etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection",
            b"[connection]\nid=eth0\ntype=ethernet\ninterface-name=eth0\n\n\
              [ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n",
        );

        fixture.write("/boot/grub2/grub.cfg", RHEL_GRUB_CFG.as_bytes());
        fixture.write("/boot/grub2/grubenv", &grubenv(RHEL_KERNELOPTS));
        fixture.write(
            "/boot/loader/entries/0123-5.14.0-362.el9.x86_64.conf",
            RHEL_BLS_ENTRY.as_bytes(),
        );
        fixture.write_kernel("/boot/vmlinuz-5.14.0-362.el9.x86_64");
        fixture
    }

    /// Builds a clean SLES 15 tree: rpm database in /usr/lib/sysimage/rpm,
    /// waagent.service, and GRUB 2 menu entries in /boot/grub2/grub.cfg.
    pub fn clean_suse() -> Self {
        let fixture = Self::empty("sles", "15.5");
        fixture.write_base_system();
        fixture.remove("/etc/network/interfaces");
        fixture.remove("/etc/ufw/ufw.conf");
        fixture.write(
            "/etc/os-release",
            b"NAME=\"SLES\"\nVERSION_ID=\"15.5\"\nID=\"sles\"\nID_LIKE=\"suse\"\n",
        );
        fixture.write_rpm_accounts_and_ssh();
        fixture.write_rpmdb("sles15.sqlite", "/usr/lib/sysimage/rpm");
        fixture.symlink("../../usr/lib/sysimage/rpm", "/var/lib/rpm");
        fixture.write_rpm_units("waagent.service");
        fixture.write(
            "/etc/sysconfig/network/ifcfg-eth0",
            b"BOOTPROTO='dhcp'\nSTARTMODE='auto'\nDHCLIENT_SET_HOSTNAME='yes'\n",
        );
        fixture.write(
            "/etc/sysconfig/network/ifcfg-lo",
            b"IPADDR=127.0.0.1/8\nNETMASK=255.0.0.0\nNETWORK=127.0.0.0\nSTARTMODE=nfsroot\n\
              BOOTPROTO=static\nUSERCONTROL=no\nFIREWALL=no\n",
        );
        fixture.write("/boot/grub2/grub.cfg", SUSE_GRUB_CFG.as_bytes());
        fixture.write_kernel("/boot/vmlinuz-5.14.21-150500.55.39-default");
        fixture
    }

    fn write_rpm_accounts_and_ssh(&self) {
        self.write(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/bash\nazureuser:x:1000:1000::/home/azureuser:/bin/bash\n",
        );
        // RHEL ships the shadow files with mode 0000, within the baseline's 0640.
        self.write_mode(
            "/etc/shadow",
            b"root:!!:19700:0:99999:7:::\nazureuser:!!:19700:0:99999:7:::\n",
            0o000,
        );
        self.write_mode("/etc/gshadow", b"root:::\n", 0o000);
        self.write("/etc/ssh/sshd_config", RPM_SSHD_CONFIG.as_bytes());
        self.write(
            "/etc/ssh/sshd_config.d/05-azure.conf",
            b"ClientAliveInterval 180\n",
        );
        self.write(
            "/etc/ssh/sshd_config.d/50-redhat.conf",
            b"Include /etc/crypto-policies/back-ends/opensshserver.config\n\
              SyslogFacility AUTHPRIV\nUsePAM yes\nX11Forwarding yes\n",
        );
        self.write(
            "/etc/crypto-policies/back-ends/opensshserver.config",
            b"Ciphers aes256-gcm@openssh.com,aes256-ctr\n",
        );
    }

    /// Copies one of the rpm databases made by
    /// scripts/make-rpmdb-fixtures.sh into `dir` as `rpmdb.sqlite`.
    pub fn write_rpmdb(&self, fixture: &str, dir: &str) {
        let bytes = fs::read(format!("{}/{fixture}", super::rpmdb::FIXTURES)).unwrap();
        self.write(&format!("{dir}/rpmdb.sqlite"), &bytes);
    }

    /// Removes every package called `name` from the rpm database, with its
    /// rows in the index tables, as `rpm -e --justdb` would.
    pub fn remove_rpm_package(&self, name: &str) {
        let db = rusqlite::Connection::open(self.host("/var/lib/rpm/rpmdb.sqlite")).unwrap();
        let numbers: Vec<i64> = db
            .prepare("SELECT hnum FROM Name WHERE key = ?1")
            .unwrap()
            .query_map([name], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(!numbers.is_empty(), "{name} is not in the rpm database");
        let tables: Vec<String> = db
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name != 'Packages' AND substr(name, 1, 7) != 'sqlite_'",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for number in numbers {
            for table in &tables {
                db.execute(&format!("DELETE FROM '{table}' WHERE hnum = ?1"), [number])
                    .unwrap();
            }
            db.execute("DELETE FROM Packages WHERE hnum = ?1", [number])
                .unwrap();
        }
    }

    fn write_rpm_units(&self, agent_unit: &str) {
        let units = "/usr/lib/systemd/system";
        self.write(
            &format!("{units}/sshd.service"),
            b"[Service]\nExecStart=/usr/sbin/sshd -D\n",
        );
        self.write(
            &format!("{units}/{agent_unit}"),
            b"[Service]\nExecStart=/usr/sbin/waagent -daemon\n",
        );
        self.write(&format!("{units}/firewalld.service"), b"[Service]\n");
        self.enable_from(units, "sshd.service");
        self.enable_from(units, agent_unit);
    }

    fn write_kernel(&self, path: &str) {
        let mut kernel = vec![0u8; 0x300];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        kernel[0x236] = 0x7f;
        self.write(path, &kernel);
    }

    fn write_base_system(&self) {
        for dir in [
            "usr/lib",
            "usr/sbin",
            "usr/bin",
            "var/log/apt",
            "root",
            "home/debian",
            "tmp",
        ] {
            fs::create_dir_all(self.dir.path().join(dir)).unwrap();
        }

        // Merged /usr, as on Debian 12.
        self.symlink("usr/lib", "/lib");
        self.symlink("usr/sbin", "/sbin");
        self.symlink("usr/bin", "/bin");
        self.symlink("/lib/systemd/systemd", "/usr/sbin/init");
        self.write("/usr/lib/systemd/systemd", b"\x7fELF\x02\x01\x01\x00");

        self.write("/var/log/wtmp", b"");
        self.write("/etc/machine-id", b"");
        self.write(
            "/etc/fstab",
            b"UUID=1 / ext4 defaults 0 1\nUUID=2 /boot/efi vfat umask=0077 0 1\n",
        );
        self.write(
            "/etc/network/interfaces",
            b"auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n",
        );
        self.write(
            "/etc/waagent.conf",
            b"Provisioning.Agent=auto\nAutoUpdate.Enabled=y\n",
        );
        self.write("/etc/ufw/ufw.conf", b"ENABLED=no\n");

        // The baseline file, and a vendor default that it overrides.
        let sysctl: String = super::SYSCTL_BASELINE
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        self.write("/etc/sysctl.d/60-forge-hardening.conf", sysctl.as_bytes());
        self.write(
            "/usr/lib/sysctl.d/50-default.conf",
            b"net.ipv4.tcp_syncookies = 0\n",
        );
    }

    fn write_accounts_and_ssh(&self) {
        self.write(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000::/home/debian:/bin/bash\n",
        );
        self.write_mode(
            "/etc/shadow",
            b"root:*:19700:0:99999:7:::\ndebian:!:19700:0:99999:7:::\n",
            0o640,
        );
        self.write_mode("/etc/gshadow", b"root:*::\n", 0o640);
        self.write("/etc/ssh/sshd_config", SSHD_CONFIG.as_bytes());
        self.write("/etc/ssh/sshd_config.d/README", b"ClientAliveInterval 5\n");
    }

    fn write_packages(&self) {
        self.write("/var/lib/dpkg/status", DPKG_STATUS.as_bytes());
        self.write("/var/lib/dpkg/arch", b"amd64\n");
        self.write(
            "/var/lib/dpkg/info/openssl.list",
            b"/usr/bin/openssl\n/etc/ssl/openssl.cnf\n",
        );
        let lists = "/var/lib/apt/lists";
        let release = "Suite: stable\nCodename: bookworm\nDate: Sat, 10 Feb 2024 10:00:00 UTC\n";
        self.write(
            &format!("{lists}/deb.debian.org_debian_dists_bookworm_InRelease"),
            release.as_bytes(),
        );
        self.write(
            &format!("{lists}/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages"),
            DPKG_STATUS.as_bytes(),
        );
        let security = "Suite: stable-security\nCodename: bookworm-security\nDate: Sun, 11 Feb 2024 09:00:00 UTC\n";
        self.write(
            &format!("{lists}/{SECURITY_LIST}_InRelease"),
            security.as_bytes(),
        );
        self.write(
            &format!("{lists}/{SECURITY_LIST}_main_binary-amd64_Packages"),
            SECURITY_PACKAGES.as_bytes(),
        );
    }

    fn write_units_and_boot(&self) {
        let units = "/lib/systemd/system";
        self.write(
            &format!("{units}/ssh.service"),
            b"[Service]\nExecStart=/usr/sbin/sshd -D\n",
        );
        self.write(
            &format!("{units}/walinuxagent.service"),
            b"[Service]\nExecStart=/usr/sbin/waagent -daemon\n",
        );
        self.write(&format!("{units}/systemd-resolved.service"), b"[Service]\n");
        self.write(&format!("{units}/nftables.service"), b"[Service]\n");
        self.write(&format!("{units}/nginx.service"), b"[Service]\n");
        self.enable("ssh.service");
        self.enable("walinuxagent.service");
        self.enable("systemd-resolved.service");
        self.symlink(
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/sshd.service",
        );
        self.write("/boot/grub/grub.cfg", GRUB_CFG.as_bytes());
        let mut kernel = vec![0u8; 0x300];
        kernel[0x202..0x206].copy_from_slice(b"HdrS");
        kernel[0x236] = 0x7f;
        self.write("/boot/vmlinuz-6.1.0-18-amd64", &kernel);
    }

    /// Enables a unit from `/lib/systemd/system` for multi-user.target.
    pub fn enable(&self, unit: &str) {
        self.enable_from("/lib/systemd/system", unit);
    }

    /// Enables a unit from the unit folder `dir` for multi-user.target.
    pub fn enable_from(&self, dir: &str, unit: &str) {
        let link = format!("/etc/systemd/system/multi-user.target.wants/{unit}");
        self.symlink(&format!("{dir}/{unit}"), &link);
    }

    fn host(&self, path: &str) -> PathBuf {
        self.dir.path().join(path.trim_start_matches('/'))
    }

    /// Writes a file, creating its folders.
    pub fn write(&self, path: &str, content: &[u8]) {
        let host = self.host(path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, content).unwrap();
    }

    pub fn write_mode(&self, path: &str, content: &[u8], mode: u32) {
        self.write(path, content);
        fs::set_permissions(self.host(path), fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Creates a symlink at `path` with the literal `target`.
    pub fn symlink(&self, target: &str, path: &str) {
        let host = self.host(path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        symlink(target, host).unwrap();
    }

    pub fn remove(&self, path: &str) {
        fs::remove_file(self.host(path)).unwrap();
    }

    /// Runs every rule on the tree.
    pub fn run(&self) -> Vec<Finding> {
        let view = DirView::new(self.dir.path()).assume_root_owner();
        let mut policy = self.policy.clone();
        if policy.clamav_db.is_none() {
            policy.clamav_db = Some(self.empty_db.path().to_path_buf());
        }
        let subject = Subject {
            disk: &self.disk,
            fs: Some(&view),
            os: &self.os,
            policy: &policy,
        };
        run_rules(&subject)
    }

    /// Returns the finding of one rule.
    pub fn finding(&self, id: &str) -> Finding {
        self.run().into_iter().find(|f| f.id == id).unwrap()
    }
}

/// Ids of the failing findings.
pub fn failures(findings: &[Finding]) -> Vec<&'static str> {
    findings
        .iter()
        .filter(|f| f.status == Status::Fail)
        .map(|f| f.id)
        .collect()
}

/// Asserts that `id` fails, that it is the only failure, and returns its
/// evidence.
pub fn assert_only_failure(fixture: &Fixture, id: &str) -> String {
    let findings = fixture.run();
    assert_eq!(failures(&findings), [id], "findings: {findings:#?}");
    findings.into_iter().find(|f| f.id == id).unwrap().evidence
}
