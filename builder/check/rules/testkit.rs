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

impl Fixture {
    /// Builds the clean tree.
    pub fn clean() -> Self {
        let fixture = Self {
            dir: tempfile::tempdir().unwrap(),
            disk: disk_facts(30 * GIB),
            os: OsInfo {
                family: "debian".into(),
                version: "12".into(),
                arch: "x86_64".into(),
            },
            policy: Policy::default(),
            empty_db: tempfile::tempdir().unwrap(),
        };
        fixture.write_base_system();
        fixture.write_accounts_and_ssh();
        fixture.write_packages();
        fixture.write_units_and_boot();
        fixture
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
        let link = format!("/etc/systemd/system/multi-user.target.wants/{unit}");
        self.symlink(&format!("/lib/systemd/system/{unit}"), &link);
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
