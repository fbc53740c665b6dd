//! One planted violation per rule on the clean tree of [`super::testkit`].
//! Each test asserts that the rule fails and that no other rule fails.

use sha2::{Digest, Sha256};

use super::testkit::{assert_only_failure, failures, Fixture};
use super::{catalogue, find};
use crate::check::{run_rules, DiskFacts, OsInfo, Policy, Status, Subject, Verdict};
use crate::vhd::{Footer, DISK_TYPE_DYNAMIC};

const GIB: u64 = 1 << 30;

#[test]
fn catalogue_ids_in_table_order() {
    let ids: Vec<&str> = catalogue().iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), 42, "4 disk, 25 Linux and 13 Windows rules");
    assert_eq!(
        ids[..4],
        [
            "vhd-fixed-format",
            "vhd-size-aligned",
            "vhd-size-range",
            "disk-first-mib-free"
        ]
    );
    assert_eq!(ids[4], "security-patches");
    assert_eq!(ids[28], "os-64bit");
    assert_eq!(ids[29], "win-azure-base");
    assert_eq!(ids[41], "win-rdp-enabled");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());
}

#[test]
fn rules_have_applied_and_verified_texts() {
    for rule in catalogue() {
        for (field, text) in [("applied", rule.applied), ("verified", rule.verified)] {
            assert!(!text.trim().is_empty(), "{} has no {field} text", rule.id);
            assert!(
                text.ends_with('.'),
                "{} {field} text is not a full sentence: {text:?}",
                rule.id
            );
            assert!(
                !text.contains("  "),
                "{} {field} text has a double space: {text:?}",
                rule.id
            );
        }
    }
}

#[test]
fn find_by_id() {
    assert_eq!(find("no-swap").map(|r| r.id), Some("no-swap"));
    assert!(find("no-such-rule").is_none());
}

#[test]
fn clean_tree_has_no_failure() {
    let fixture = Fixture::clean();
    let findings = fixture.run();
    assert!(failures(&findings).is_empty(), "findings: {findings:#?}");
    let linux_passes = findings.iter().filter(|f| f.status == Status::Pass).count();
    assert_eq!(linux_passes, 28, "findings: {findings:#?}");
    let malware = findings.iter().find(|f| f.id == "malware-scan").unwrap();
    assert_eq!(malware.status, Status::NotRun);
    assert!(findings
        .iter()
        .filter(|f| f.id.starts_with("win-"))
        .all(|f| f.status == Status::NotApplicable));
    assert_eq!(Verdict::of(&findings), Verdict::Incomplete);
}

#[test]
fn no_os_means_not_run() {
    let fixture = Fixture::clean();
    let subject = Subject {
        disk: &fixture.disk,
        fs: None,
        os: &OsInfo::default(),
        policy: &Policy::default(),
    };
    let findings = run_rules(&subject);
    let status = |id: &str| findings.iter().find(|f| f.id == id).unwrap().status;
    assert_eq!(status("vhd-fixed-format"), Status::Pass);
    assert_eq!(status("no-lvm"), Status::Pass);
    assert_eq!(status("no-swap"), Status::NotRun);
    assert_eq!(status("accounts-locked"), Status::NotRun);
    assert_eq!(status("win-64bit"), Status::NotApplicable);
}

#[test]
fn windows_family_skips_linux_rules() {
    let mut fixture = Fixture::clean();
    fixture.os.family = "windows".into();
    let findings = fixture.run();
    let status = |id: &str| findings.iter().find(|f| f.id == id).unwrap().status;
    assert_eq!(status("win-rdp-enabled"), Status::NotRun);
    assert_eq!(status("sshd-client-alive-interval"), Status::NotApplicable);
    assert_eq!(status("vhd-size-range"), Status::Pass);
    assert_eq!(status("vhd-fixed-format"), Status::Pass);
}

fn with_footer(fixture: &mut Fixture, footer: &Footer, file_len: u64) {
    fixture.disk.tail = footer.to_bytes().to_vec();
    fixture.disk.file_len = file_len;
}

#[test]
fn plant_dynamic_vhd() {
    let mut fixture = Fixture::clean();
    let mut footer = Footer::fixed(30 * GIB, 0, [2; 16]);
    footer.disk_type = DISK_TYPE_DYNAMIC;
    with_footer(&mut fixture, &footer, 30 * GIB + 512);
    let evidence = assert_only_failure(&fixture, "vhd-fixed-format");
    assert!(evidence.contains("disk type 3 (dynamic)"), "{evidence}");
}

#[test]
fn plant_qcow2_names_format() {
    let mut fixture = Fixture::clean();
    fixture.disk.format = "qcow2".into();
    fixture.disk.tail = vec![0; 512];
    let finding = fixture.finding("vhd-fixed-format");
    assert_eq!(finding.status, Status::Fail);
    assert!(finding.evidence.contains("qcow2"), "{}", finding.evidence);
}

#[test]
fn plant_bad_footer_checksum() {
    let mut fixture = Fixture::clean();
    fixture.disk.tail[70] ^= 1;
    let evidence = assert_only_failure(&fixture, "vhd-fixed-format");
    assert!(evidence.contains("checksum"), "{evidence}");
}

#[test]
fn plant_unaligned_size() {
    let mut fixture = Fixture::clean();
    let size = 30 * GIB + 4096;
    with_footer(&mut fixture, &Footer::fixed(size, 0, [2; 16]), size + 512);
    let evidence = assert_only_failure(&fixture, "vhd-size-aligned");
    assert!(evidence.contains("not a whole number of MiB"), "{evidence}");
}

#[test]
fn plant_footer_size_mismatch() {
    let mut fixture = Fixture::clean();
    fixture.disk.file_len += 1 << 20;
    let evidence = assert_only_failure(&fixture, "vhd-size-aligned");
    assert!(evidence.contains("current size"), "{evidence}");
}

#[test]
fn plant_oversized_disk() {
    let mut fixture = Fixture::clean();
    let size = 1024 * GIB;
    with_footer(&mut fixture, &Footer::fixed(size, 0, [2; 16]), size + 512);
    let evidence = assert_only_failure(&fixture, "vhd-size-range");
    assert!(evidence.contains("outside 1 to 1023 GiB"), "{evidence}");
}

#[test]
fn windows_disk_too_small() {
    let mut fixture = Fixture::clean();
    fixture.os.family = "windows".into();
    assert_eq!(fixture.finding("vhd-size-range").status, Status::Pass);
    let size = 29 * GIB;
    with_footer(&mut fixture, &Footer::fixed(size, 0, [2; 16]), size + 512);
    assert_eq!(fixture.finding("vhd-size-range").status, Status::Fail);
}

#[test]
fn plant_partition_in_first_mib() {
    let mut fixture = Fixture::clean();
    fixture.disk.partitions[0].start_sector = 34;
    let evidence = assert_only_failure(&fixture, "disk-first-mib-free");
    assert!(
        evidence.contains("partition 14 starts at sector 34"),
        "{evidence}"
    );
}

const SECURITY_PACKAGES: &str =
    "/var/lib/apt/lists/deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages";

#[test]
fn plant_missing_security_update() {
    let fixture = Fixture::clean();
    let index = "Package: openssl\nArchitecture: amd64\nVersion: 3.0.11-1~deb12u3\n\n\
                 Package: libc6\nArchitecture: i386\nVersion: 2.36-9+deb12u9\n";
    fixture.write(SECURITY_PACKAGES, index.as_bytes());
    let evidence = assert_only_failure(&fixture, "security-patches");
    assert!(
        evidence.contains("openssl 3.0.11-1~deb12u2 -> 3.0.11-1~deb12u3"),
        "{evidence}"
    );
    assert!(
        !evidence.contains("libc6"),
        "other architectures are ignored: {evidence}"
    );
    assert!(
        evidence.contains("Sun, 11 Feb 2024 09:00:00 UTC"),
        "{evidence}"
    );
}

#[test]
fn security_patches_without_index_not_run() {
    let fixture = Fixture::clean();
    for name in std::fs::read_dir(fixture.dir.path().join("var/lib/apt/lists")).unwrap() {
        std::fs::remove_file(name.unwrap().path()).unwrap();
    }
    let finding = fixture.finding("security-patches");
    assert_eq!(finding.status, Status::NotRun);
    assert!(
        finding.evidence.contains("no package index"),
        "{}",
        finding.evidence
    );
}

#[test]
fn plant_shadow_world_readable() {
    let fixture = Fixture::clean();
    fixture.write_mode("/etc/shadow", b"root:*:1::::::\ndebian:!:1::::::\n", 0o644);
    let evidence = assert_only_failure(&fixture, "hardening-baseline");
    assert!(evidence.contains("/etc/shadow has mode 0644"), "{evidence}");
    assert!(evidence.contains("forge Linux baseline 1"), "{evidence}");
}

#[test]
fn plant_root_login_and_sysctl() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/ssh/sshd_config.d/50-root.conf",
        b"PermitRootLogin yes\n",
    );
    fixture.write(
        "/etc/sysctl.d/99-local.conf",
        b"net.ipv4.conf.all.accept_redirects = 1\n",
    );
    let evidence = assert_only_failure(&fixture, "hardening-baseline");
    assert!(
        evidence.contains("/etc/ssh/sshd_config.d/50-root.conf:1: PermitRootLogin yes"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/etc/sysctl.d/99-local.conf:1: net.ipv4.conf.all.accept_redirects = 1"),
        "{evidence}"
    );
}

#[test]
fn plant_undeclared_network_service() {
    let mut fixture = Fixture::clean();
    fixture.enable("nginx.service");
    let evidence = assert_only_failure(&fixture, "minimal-footprint");
    assert!(evidence.contains("nginx.service"), "{evidence}");
    fixture.policy.declared_units = vec!["nginx".into()];
    assert_eq!(fixture.finding("minimal-footprint").status, Status::Pass);
}

#[test]
fn plant_listening_socket() {
    let fixture = Fixture::clean();
    fixture.write(
        "/lib/systemd/system/tftp.socket",
        b"[Socket]\nListenDatagram=69\n",
    );
    fixture.write(
        "/lib/systemd/system/local.socket",
        b"[Socket]\nListenStream=/run/local.sock\n",
    );
    fixture.symlink(
        "/lib/systemd/system/tftp.socket",
        "/etc/systemd/system/sockets.target.wants/tftp.socket",
    );
    fixture.symlink(
        "/lib/systemd/system/local.socket",
        "/etc/systemd/system/sockets.target.wants/local.socket",
    );
    let evidence = assert_only_failure(&fixture, "minimal-footprint");
    assert!(evidence.contains("tftp.socket"), "{evidence}");
    assert!(!evidence.contains("local.socket"), "{evidence}");
}

fn clamscan_available() -> bool {
    std::process::Command::new("clamscan")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn plant_malware_with_custom_signature() {
    if !clamscan_available() {
        eprintln!("skipped: clamscan is not installed");
        return;
    }
    let mut fixture = Fixture::clean();
    let db = tempfile::tempdir().unwrap();
    let planted = b"forge test payload that the custom signature matches\n";
    // A ClamAV .hsb line is `sha256:size:name`.
    let digest: String = Sha256::digest(planted)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signature = format!("{digest}:{}:Forge.Test.Planted\n", planted.len());
    std::fs::write(db.path().join("forge-test.hsb"), signature).unwrap();
    fixture.policy.clamav_db = Some(db.path().to_path_buf());
    assert_eq!(fixture.finding("malware-scan").status, Status::Pass);
    fixture.write("/home/debian/payload.bin", planted);
    let evidence = assert_only_failure(&fixture, "malware-scan");
    assert!(
        evidence.contains("/home/debian/payload.bin: Forge.Test.Planted"),
        "{evidence}"
    );
}

#[test]
fn plant_password_hash() {
    let fixture = Fixture::clean();
    fixture.write_mode(
        "/etc/shadow",
        b"root:*:1::::::\ndebian:!$6$salt$hash:1::::::\n",
        0o640,
    );
    let evidence = assert_only_failure(&fixture, "accounts-locked");
    assert!(
        evidence
            .contains("/etc/shadow:2: user \"debian\" has a password hash behind a lock marker"),
        "{evidence}"
    );
}

#[test]
fn plant_second_uid_zero() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/passwd",
        b"root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n",
    );
    let evidence = assert_only_failure(&fixture, "accounts-locked");
    assert!(evidence.contains("user \"toor\" has UID 0"), "{evidence}");
}

#[test]
fn plant_ufw_enabled() {
    let fixture = Fixture::clean();
    fixture.write("/etc/ufw/ufw.conf", b"# comment\nENABLED=yes\n");
    let evidence = assert_only_failure(&fixture, "firewall-disabled");
    assert!(
        evidence.contains("/etc/ufw/ufw.conf:2: ENABLED=yes"),
        "{evidence}"
    );
}

#[test]
fn plant_nftables_enabled() {
    let mut fixture = Fixture::clean();
    fixture.enable("nftables.service");
    assert_only_failure(&fixture, "firewall-disabled");
    fixture.policy.waivers = vec![crate::check::Waiver {
        rule: "firewall-disabled".into(),
        reason: "the product is a firewall".into(),
    }];
    let finding = fixture.finding("firewall-disabled");
    assert_eq!(finding.status, Status::Waived);
    assert_eq!(finding.reason.as_deref(), Some("the product is a firewall"));
}

#[test]
fn plant_host_key() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/ssh/ssh_host_ed25519_key.pub",
        b"ssh-ed25519 AAAA root@build\n",
    );
    let evidence = assert_only_failure(&fixture, "ssh-host-keys-removed");
    assert!(
        evidence.contains("/etc/ssh/ssh_host_ed25519_key.pub"),
        "{evidence}"
    );
}

#[test]
fn plant_authorized_keys() {
    let fixture = Fixture::clean();
    fixture.write("/root/.ssh/authorized_keys", b"ssh-ed25519 AAAA builder\n");
    let evidence = assert_only_failure(&fixture, "authorized-keys-removed");
    assert!(
        evidence.contains("/root/.ssh/authorized_keys"),
        "{evidence}"
    );
}

#[test]
fn plant_known_hosts() {
    let fixture = Fixture::clean();
    fixture.write("/home/debian/.ssh/known_hosts", b"host ssh-ed25519 AAAA\n");
    let evidence = assert_only_failure(&fixture, "known-hosts-removed");
    assert!(
        evidence.contains("/home/debian/.ssh/known_hosts"),
        "{evidence}"
    );
}

#[test]
fn plant_private_key() {
    let fixture = Fixture::clean();
    fixture.write(
        "/opt/app/server.key",
        b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    );
    fixture.write("/opt/app/client.PFX", b"\x30\x82");
    let evidence = assert_only_failure(&fixture, "private-keys-removed");
    assert!(
        evidence.contains("/opt/app/server.key (private key block)"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/opt/app/client.PFX (PKCS #12 file)"),
        "{evidence}"
    );
}

#[test]
fn packaged_and_system_keys_ignored() {
    let fixture = Fixture::clean();
    let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n";
    fixture.write("/etc/ssl/openssl.cnf", key);
    fixture.write("/usr/share/doc/example/test.key", key);
    assert_eq!(fixture.finding("private-keys-removed").status, Status::Pass);
}

#[test]
fn plant_log_file() {
    let fixture = Fixture::clean();
    fixture.write("/var/log/apt/history.log", b"Start-Date: 2024-02-11\n");
    let evidence = assert_only_failure(&fixture, "logs-cleared");
    assert!(
        evidence.contains("/var/log/apt/history.log (23 bytes)"),
        "{evidence}"
    );
}

#[test]
fn plant_machine_id() {
    let fixture = Fixture::clean();
    fixture.write("/etc/machine-id", b"0123456789abcdef0123456789abcdef\n");
    let evidence = assert_only_failure(&fixture, "machine-id-reset");
    assert!(
        evidence.contains("0123456789abcdef0123456789abcdef"),
        "{evidence}"
    );
}

#[test]
fn plant_dbus_machine_id_copy() {
    let fixture = Fixture::clean();
    fixture.symlink("/etc/machine-id", "/var/lib/dbus/machine-id");
    assert_eq!(fixture.finding("machine-id-reset").status, Status::Pass);
    fixture.remove("/var/lib/dbus/machine-id");
    fixture.write(
        "/var/lib/dbus/machine-id",
        b"0123456789abcdef0123456789abcdef\n",
    );
    let evidence = assert_only_failure(&fixture, "machine-id-reset");
    assert!(
        evidence.contains("/var/lib/dbus/machine-id is a filled copy"),
        "{evidence}"
    );
}

#[test]
fn plant_provisioning_state() {
    let fixture = Fixture::clean();
    std::fs::create_dir_all(fixture.dir.path().join("var/lib/cloud/instances")).unwrap();
    std::fs::create_dir_all(fixture.dir.path().join("var/lib/dhcp")).unwrap();
    assert_eq!(
        fixture.finding("provisioning-state-cleared").status,
        Status::Pass
    );
    fixture.write("/var/lib/waagent/ovf-env.xml", b"<Environment/>");
    fixture.write("/var/lib/cloud/instances/i-1/obj.pkl", b"x");
    fixture.write("/var/lib/dhcp/dhclient.eth0.leases", b"lease {}");
    let evidence = assert_only_failure(&fixture, "provisioning-state-cleared");
    for path in [
        "/var/lib/waagent/ovf-env.xml",
        "/var/lib/cloud/instances/i-1/obj.pkl",
        "/var/lib/dhcp/dhclient.eth0.leases",
    ] {
        assert!(evidence.contains(path), "{path} missing from {evidence}");
    }
}

#[test]
fn plant_lvm_volume() {
    let mut fixture = Fixture::clean();
    fixture.disk.lvm_pvs = vec!["/dev/sda1".into()];
    let evidence = assert_only_failure(&fixture, "no-lvm");
    assert!(evidence.contains("physical volume /dev/sda1"), "{evidence}");
}

#[test]
fn plant_lvm_partition_type() {
    let mut fixture = Fixture::clean();
    fixture.disk.partitions[2].type_id = super::disk::GPT_LVM.into();
    let evidence = assert_only_failure(&fixture, "no-lvm");
    assert!(evidence.contains("partition 1"), "{evidence}");
}

#[test]
fn plant_shell_history() {
    let fixture = Fixture::clean();
    fixture.write("/root/.bash_history", b"");
    assert_eq!(
        fixture.finding("shell-history-cleared").status,
        Status::Pass
    );
    fixture.write("/root/.bash_history", b"ls\n");
    fixture.write("/home/debian/.python_history", b"import os\n");
    let evidence = assert_only_failure(&fixture, "shell-history-cleared");
    assert!(
        evidence.contains("/root/.bash_history (3 bytes)"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/home/debian/.python_history"),
        "{evidence}"
    );
}

fn rewrite_status(fixture: &Fixture, from: &str, to: &str) {
    let path = fixture.dir.path().join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in the status file");
    std::fs::write(path, text.replace(from, to)).unwrap();
}

#[test]
fn plant_missing_pyasn1() {
    let fixture = Fixture::clean();
    rewrite_status(
        &fixture,
        "Package: python3-pyasn1\nStatus: install ok installed",
        "Package: python3-pyasn1\nStatus: deinstall ok config-files",
    );
    let evidence = assert_only_failure(&fixture, "required-packages");
    assert!(
        evidence.contains("python3-pyasn1 is not installed"),
        "{evidence}"
    );
}

#[test]
fn plant_old_openssl() {
    let fixture = Fixture::clean();
    rewrite_status(&fixture, "Version: 3.0.11-1~deb12u2", "Version: 0.9.8o-4");
    let findings = fixture.run();
    let evidence = &findings
        .iter()
        .find(|f| f.id == "required-packages")
        .unwrap()
        .evidence;
    assert!(
        evidence.contains("openssl 0.9.8o-4 is older than 1.0"),
        "{evidence}"
    );
    assert_eq!(
        failures(&findings),
        ["security-patches", "required-packages"],
        "the index also has a newer openssl"
    );
}

#[test]
fn plant_ssh_disabled() {
    let fixture = Fixture::clean();
    fixture.remove("/etc/systemd/system/multi-user.target.wants/ssh.service");
    let evidence = assert_only_failure(&fixture, "ssh-server");
    assert!(evidence.contains("is installed but none of"), "{evidence}");
}

#[test]
fn ssh_socket_counts_as_enabled() {
    let fixture = Fixture::clean();
    fixture.remove("/etc/systemd/system/multi-user.target.wants/ssh.service");
    fixture.write(
        "/lib/systemd/system/ssh.socket",
        b"[Socket]\nListenStream=22\n",
    );
    fixture.symlink(
        "/lib/systemd/system/ssh.socket",
        "/etc/systemd/system/sockets.target.wants/ssh.socket",
    );
    let finding = fixture.finding("ssh-server");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
    assert!(failures(&fixture.run()).is_empty());
}

#[test]
fn plant_client_alive_override() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/ssh/sshd_config.d/50-cloud.conf",
        b"ClientAliveInterval 2m\n",
    );
    let evidence = assert_only_failure(&fixture, "sshd-client-alive-interval");
    assert!(
        evidence
            .contains("/etc/ssh/sshd_config.d/50-cloud.conf:1: ClientAliveInterval 2m is 120 s"),
        "{evidence}"
    );
}

#[test]
fn client_alive_in_minutes_passes() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/ssh/sshd_config.d/50-cloud.conf",
        b"Match User x\nClientAliveInterval 5\nMatch all\nClientAliveInterval 3m\n",
    );
    let finding = fixture.finding("sshd-client-alive-interval");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
}

#[test]
fn plant_agent_interval_override() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/waagent.conf",
        b"AutoUpdate.Enabled=y\nOS.SshClientAliveInterval=60\n",
    );
    let evidence = assert_only_failure(&fixture, "sshd-client-alive-interval");
    assert!(
        evidence.contains("/etc/waagent.conf:2: OS.SshClientAliveInterval=60"),
        "{evidence}"
    );
}

#[test]
fn plant_resolv_conf() {
    let fixture = Fixture::clean();
    fixture.symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        "/etc/resolv.conf",
    );
    assert_eq!(fixture.finding("resolv-conf-removed").status, Status::Pass);
    fixture.remove("/etc/resolv.conf");
    fixture.write("/etc/resolv.conf", b"nameserver 168.63.129.16\n");
    let evidence = assert_only_failure(&fixture, "resolv-conf-removed");
    assert!(evidence.contains("/etc/resolv.conf exists"), "{evidence}");
}

#[test]
fn plant_static_interface() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/network/interfaces.d/eth0",
        b"auto eth0\niface eth0 inet static\n  address 10.0.0.5/24\n",
    );
    fixture.write(
        "/etc/systemd/network/10-eth0.network",
        b"[Match]\nMACAddress=00:0d:3a:00:00:01\n\n[Network]\nDHCP=yes\n",
    );
    let evidence = assert_only_failure(&fixture, "no-custom-network-config");
    assert!(
        evidence.contains("/etc/network/interfaces.d/eth0:2: iface eth0 inet static"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/etc/systemd/network/10-eth0.network:2: MACAddress=00:0d:3a:00:00:01"),
        "{evidence}"
    );
}

#[test]
fn plant_netplan_and_udev() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/netplan/50-cloud-init.yaml",
        b"network:\n  ethernets:\n    eth0:\n      match:\n        macaddress: 00:0d:3a:00:00:01\n",
    );
    fixture.write(
        "/etc/udev/rules.d/70-persistent-net.rules",
        b"SUBSYSTEM==\"net\", NAME=\"eth0\"\n",
    );
    let evidence = assert_only_failure(&fixture, "no-custom-network-config");
    assert!(
        evidence.contains("/etc/netplan/50-cloud-init.yaml:5"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/etc/udev/rules.d/70-persistent-net.rules:1"),
        "{evidence}"
    );
}

#[test]
fn plant_agent_disabled() {
    let fixture = Fixture::clean();
    fixture.remove("/etc/systemd/system/multi-user.target.wants/walinuxagent.service");
    let evidence = assert_only_failure(&fixture, "azure-agent");
    assert!(
        evidence.contains("waagent 2.9.0.4-1 is installed but walinuxagent.service or waagent.service is not enabled"),
        "{evidence}"
    );
}

#[test]
fn plant_old_agent_without_auto_update() {
    let fixture = Fixture::clean();
    rewrite_status(&fixture, "Version: 2.9.0.4-1", "Version: 2.2.40-1");
    assert_eq!(fixture.finding("azure-agent").status, Status::Pass);
    fixture.write("/etc/waagent.conf", b"AutoUpdate.Enabled=n\n");
    let evidence = assert_only_failure(&fixture, "azure-agent");
    assert!(evidence.contains("older than 2.2.41"), "{evidence}");
}

#[test]
fn plant_missing_rootdelay() {
    let fixture = Fixture::clean();
    let cfg = "submenu 'Advanced' {\n menuentry 'Debian, recovery' {\n  linux /boot/vmlinuz root=x console=ttyS0 earlyprintk=ttyS0\n }\n}\n";
    fixture.write("/boot/grub/grub.cfg", cfg.as_bytes());
    let evidence = assert_only_failure(&fixture, "kernel-cmdline");
    assert!(
        evidence.contains("\"Advanced > Debian, recovery\" lacks rootdelay=300"),
        "{evidence}"
    );
}

#[test]
fn plant_no_boot_entries() {
    let fixture = Fixture::clean();
    fixture.remove("/boot/grub/grub.cfg");
    let evidence = assert_only_failure(&fixture, "kernel-cmdline");
    assert!(evidence.contains("no boot entry"), "{evidence}");
}

#[test]
fn plant_swap_in_fstab() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/fstab",
        b"UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n",
    );
    let evidence = assert_only_failure(&fixture, "no-swap");
    assert!(
        evidence.contains("/etc/fstab:2: /swapfile swap"),
        "{evidence}"
    );
}

#[test]
fn plant_swap_file_signature() {
    let fixture = Fixture::clean();
    let mut swap = vec![0u8; 64 * 1024];
    swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
    fixture.write("/swapfile", &swap);
    fixture.write("/usr/share/swap-image", &swap);
    let evidence = assert_only_failure(&fixture, "no-swap");
    assert!(
        evidence.contains("swap file /swapfile (65536 bytes)"),
        "{evidence}"
    );
    assert!(!evidence.contains("/usr/share"), "{evidence}");
}

#[test]
fn plant_swap_partition_and_unit() {
    let mut fixture = Fixture::clean();
    fixture.disk.partitions.push(crate::check::Partition {
        number: 2,
        start_sector: 60_000_000,
        size_bytes: GIB,
        type_id: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F".into(),
        fs_type: Some("swap".into()),
        ..Default::default()
    });
    fixture.write(
        "/etc/systemd/system/swapfile.swap",
        b"[Swap]\nWhat=/swapfile\n",
    );
    fixture.symlink(
        "/etc/systemd/system/swapfile.swap",
        "/etc/systemd/system/swap.target.wants/swapfile.swap",
    );
    let evidence = assert_only_failure(&fixture, "no-swap");
    assert!(evidence.contains("partition 2"), "{evidence}");
    assert!(evidence.contains("swapfile.swap enabled by"), "{evidence}");
}

#[test]
fn plant_separate_var() {
    let mut fixture = Fixture::clean();
    fixture.disk.partitions.push(crate::check::Partition {
        number: 2,
        start_sector: 60_000_000,
        size_bytes: GIB,
        type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
        fs_type: Some("ext4".into()),
        ..Default::default()
    });
    fixture.write("/etc/fstab", b"UUID=1 / ext4 defaults 0 1\nUUID=3 /var ext4 defaults 0 2\ntmpfs /tmp tmpfs defaults 0 0\n");
    let evidence = assert_only_failure(&fixture, "single-root-partition");
    assert!(
        evidence.contains("2 OS file system partitions"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/etc/fstab:2: UUID=3 on /var (ext4)"),
        "{evidence}"
    );
    assert!(!evidence.contains("/tmp"), "{evidence}");
}

#[test]
fn plant_32bit_userland() {
    let fixture = Fixture::clean();
    fixture.write("/var/lib/dpkg/arch", b"i386\n");
    fixture.write("/usr/lib/systemd/systemd", b"\x7fELF\x01\x01\x01\x00");
    let evidence = assert_only_failure(&fixture, "os-64bit");
    assert!(
        evidence.contains("/var/lib/dpkg/arch: architecture i386 is not 64-bit"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/sbin/init -> /usr/lib/systemd/systemd has ELF class 1"),
        "{evidence}"
    );
}

#[test]
fn plant_32bit_kernel() {
    let fixture = Fixture::clean();
    let mut kernel = vec![0u8; 0x300];
    kernel[0x202..0x206].copy_from_slice(b"HdrS");
    fixture.write("/boot/vmlinuz-6.1.0-18-686", &kernel);
    let evidence = assert_only_failure(&fixture, "os-64bit");
    assert!(
        evidence.contains("/boot/vmlinuz-6.1.0-18-686 is an x86 bzImage without the 64-bit flag"),
        "{evidence}"
    );
}

#[test]
fn arm64_kernel_accepted() {
    let fixture = Fixture::clean();
    let mut kernel = vec![0u8; 0x300];
    kernel[0x38..0x3c].copy_from_slice(b"ARM\x64");
    fixture.remove("/boot/vmlinuz-6.1.0-18-amd64");
    fixture.write("/boot/vmlinuz-6.1.0-18-arm64", &kernel);
    let finding = fixture.finding("os-64bit");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
    assert!(finding.evidence.contains("arm64 Image"));
}

#[test]
fn disk_facts_default_fail_container_rules() {
    let disk = DiskFacts::default();
    let subject = Subject {
        disk: &disk,
        fs: None,
        os: &OsInfo::default(),
        policy: &Policy::default(),
    };
    let findings = run_rules(&subject);
    let failed = failures(&findings);
    assert!(failed.contains(&"vhd-fixed-format"));
    assert!(failed.contains(&"vhd-size-range"));
}

/// Ids and statuses of the findings that are neither pass nor
/// not-applicable.
fn unsettled(findings: &[crate::check::Finding]) -> Vec<(&'static str, Status)> {
    findings
        .iter()
        .filter(|f| !matches!(f.status, Status::Pass | Status::NotApplicable))
        .map(|f| (f.id, f.status))
        .collect()
}

#[test]
fn clean_rhel_tree_has_no_failure() {
    let fixture = Fixture::clean_rhel();
    let findings = fixture.run();
    assert_eq!(
        unsettled(&findings),
        [
            ("security-patches", Status::NotRun),
            ("malware-scan", Status::NotRun)
        ],
        "findings: {findings:#?}"
    );
    let patches = findings
        .iter()
        .find(|f| f.id == "security-patches")
        .unwrap();
    assert!(
        patches
            .evidence
            .contains("8 packages read from /var/lib/rpm/rpmdb.sqlite"),
        "{}",
        patches.evidence
    );
}

#[test]
fn clean_suse_tree_has_no_failure() {
    let fixture = Fixture::clean_suse();
    let findings = fixture.run();
    assert_eq!(
        unsettled(&findings),
        [
            ("security-patches", Status::NotRun),
            ("malware-scan", Status::NotRun)
        ],
        "findings: {findings:#?}"
    );
    let agent = fixture.finding("azure-agent");
    assert!(
        agent
            .evidence
            .contains("python3-azure-agent 2.9.1.1-150100.3.44.1 installed"),
        "{}",
        agent.evidence
    );
}

#[test]
fn rhel_evidence_names_rpm_packages() {
    let fixture = Fixture::clean_rhel();
    let required = fixture.finding("required-packages");
    assert!(
        required.evidence.contains(
            "/var/lib/rpm/rpmdb.sqlite: installed openssl 1:3.0.7-27.el9, \
             python3 3.9.18-1.el9, python3-pyasn1 0.4.8-6.el9"
        ),
        "{}",
        required.evidence
    );
    let arch = fixture.finding("os-64bit");
    assert!(
        arch.evidence
            .contains("/var/lib/rpm/rpmdb.sqlite (rpm): x86_64"),
        "{}",
        arch.evidence
    );
    let ssh = fixture.finding("ssh-server");
    assert!(
        ssh.evidence
            .contains("openssh-server 8.7p1-34.el9 installed"),
        "{}",
        ssh.evidence
    );
}

#[test]
fn plant_rhel_missing_pyasn1() {
    let fixture = Fixture::clean_rhel();
    fixture.remove_rpm_package("python3-pyasn1");
    let evidence = assert_only_failure(&fixture, "required-packages");
    assert!(
        evidence.contains("/var/lib/rpm/rpmdb.sqlite: python3-pyasn1 is not installed"),
        "{evidence}"
    );
}

#[test]
fn plant_suse_missing_agent_package() {
    let fixture = Fixture::clean_suse();
    fixture.remove_rpm_package("python3-azure-agent");
    let evidence = assert_only_failure(&fixture, "azure-agent");
    assert!(
        evidence.contains("/usr/lib/sysimage/rpm/rpmdb.sqlite: none of python3-azure-agent"),
        "{evidence}"
    );
}

#[test]
fn plant_suse_missing_ssh_server() {
    let fixture = Fixture::clean_suse();
    fixture.remove_rpm_package("openssh-server");
    let evidence = assert_only_failure(&fixture, "ssh-server");
    assert!(
        evidence.contains("openssh-server or openssh is not installed"),
        "{evidence}"
    );
}

#[test]
fn plant_rhel_agent_disabled() {
    let fixture = Fixture::clean_rhel();
    fixture.remove("/etc/systemd/system/multi-user.target.wants/waagent.service");
    // Debian's unit name does not count on RHEL.
    fixture.write(
        "/usr/lib/systemd/system/walinuxagent.service",
        b"[Service]\n",
    );
    fixture.enable_from("/usr/lib/systemd/system", "walinuxagent.service");
    let evidence = assert_only_failure(&fixture, "azure-agent");
    assert!(
        evidence
            .contains("WALinuxAgent 2.7.0.6-9.el9 is installed but waagent.service is not enabled"),
        "{evidence}"
    );
}

#[test]
fn plant_rhel_32bit_packages() {
    let fixture = Fixture::clean_rhel();
    fixture.write_rpmdb("rhel9-i686.sqlite", "/var/lib/rpm");
    let evidence = assert_only_failure(&fixture, "os-64bit");
    assert!(
        evidence.contains("/var/lib/rpm/rpmdb.sqlite (rpm): architecture i686 is not 64-bit"),
        "{evidence}"
    );
}

/// Statuses of the rules that read the package database.
fn package_rule_statuses(fixture: &Fixture) -> Vec<(&'static str, Status)> {
    let ids = [
        "security-patches",
        "required-packages",
        "ssh-server",
        "azure-agent",
        "os-64bit",
    ];
    let findings = fixture.run();
    assert!(failures(&findings).is_empty(), "findings: {findings:#?}");
    ids.iter()
        .map(|id| (*id, findings.iter().find(|f| f.id == *id).unwrap().status))
        .collect()
}

#[test]
fn rhel_berkeley_db_not_run() {
    let fixture = Fixture::clean_rhel();
    fixture.remove("/var/lib/rpm/rpmdb.sqlite");
    fixture.write("/var/lib/rpm/Packages", &[0; 4096]);
    for (id, status) in package_rule_statuses(&fixture) {
        assert_eq!(status, Status::NotRun, "{id}");
    }
    let evidence = fixture.finding("required-packages").evidence;
    assert!(
        evidence.contains("/var/lib/rpm/Packages is an rpm database in Berkeley DB format"),
        "{evidence}"
    );
}

#[test]
fn rhel_without_rpm_database_not_run() {
    let fixture = Fixture::clean_rhel();
    fixture.remove("/var/lib/rpm/rpmdb.sqlite");
    for (id, status) in package_rule_statuses(&fixture) {
        assert_eq!(status, Status::NotRun, "{id}");
    }
    let evidence = fixture.finding("azure-agent").evidence;
    assert!(
        evidence.contains("rhel family but has no rpm package database"),
        "{evidence}"
    );
}

#[test]
fn rhel_corrupt_rpm_database_not_run() {
    let fixture = Fixture::clean_rhel();
    fixture.write(
        "/var/lib/rpm/rpmdb.sqlite",
        b"SQLite format 3\0 but cut short",
    );
    for (id, status) in package_rule_statuses(&fixture) {
        assert_eq!(status, Status::NotRun, "{id}");
    }
    let evidence = fixture.finding("ssh-server").evidence;
    assert!(
        evidence.contains("the rpm database /var/lib/rpm/rpmdb.sqlite could not be read"),
        "{evidence}"
    );
}

const RHEL_BLS: &str = "/boot/loader/entries/0123-5.14.0-362.el9.x86_64.conf";

#[test]
fn plant_rhel_grubenv_without_rootdelay() {
    let fixture = Fixture::clean_rhel();
    fixture.write(
        "/boot/grub2/grubenv",
        &super::testkit::grubenv("root=UUID=x ro console=ttyS0 earlyprintk=ttyS0"),
    );
    let evidence = assert_only_failure(&fixture, "kernel-cmdline");
    assert!(
        evidence.contains(&format!(
            "{RHEL_BLS}:5 (variables of /boot/grub2/grub.cfg) \
             \"Red Hat Enterprise Linux (5.14.0-362.el9.x86_64) 9.3 (Plow)\" lacks rootdelay=300"
        )),
        "{evidence}"
    );
}

#[test]
fn plant_rhel_grubenv_without_header() {
    let fixture = Fixture::clean_rhel();
    // Without its header GRUB ignores the block, so kernelopts falls back
    // to the value in grub.cfg, which lacks the serial console.
    fixture.write(
        "/boot/grub2/grubenv",
        b"kernelopts=root=UUID=x console=ttyS0 earlyprintk=ttyS0 rootdelay=300\n",
    );
    let evidence = assert_only_failure(&fixture, "kernel-cmdline");
    assert!(
        evidence.contains("lacks console=ttyS0, earlyprintk=ttyS0, rootdelay=300"),
        "{evidence}"
    );
}

#[test]
fn plant_rhel_undefined_bls_variable() {
    let fixture = Fixture::clean_rhel();
    let entry = "title RHEL custom\nlinux /boot/vmlinuz-5.14.0-362.el9.x86_64\n\
                 options console=ttyS0 earlyprintk=ttyS0 rootdelay=300 $custom_opts\n";
    fixture.write("/boot/loader/entries/0456-custom.conf", entry.as_bytes());
    let evidence = assert_only_failure(&fixture, "kernel-cmdline");
    assert!(
        evidence.contains("\"RHEL custom\" uses undefined $custom_opts"),
        "{evidence}"
    );
    assert!(!evidence.contains("Plow"), "{evidence}");
}

#[test]
fn plant_rhel_efi_config_without_kernelopts() {
    let fixture = Fixture::clean_rhel();
    let cfg = "load_env -f ${config_directory}/grubenv\nblscfg\n";
    fixture.write("/boot/efi/EFI/redhat/grub.cfg", cfg.as_bytes());
    fixture.write(
        "/boot/efi/EFI/redhat/grubenv",
        b"# GRUB Environment Block\nsaved_entry=x\n",
    );
    let evidence = assert_only_failure(&fixture, "kernel-cmdline");
    assert!(
        evidence.contains("(variables of /boot/efi/EFI/redhat/grub.cfg)"),
        "{evidence}"
    );
    assert!(
        evidence.contains("uses undefined $kernelopts, $tuned_params"),
        "{evidence}"
    );
    assert!(
        !evidence.contains("(variables of /boot/grub2/grub.cfg)"),
        "{evidence}"
    );
}

#[test]
fn rhel_efi_stub_config_adds_no_entry() {
    let fixture = Fixture::clean_rhel();
    let stub = "search --no-floppy --fs-uuid --set=dev 8c4c0a0e\n\
                set prefix=($dev)/grub2\nexport $prefix\nconfigfile $prefix/grub.cfg\n";
    fixture.write("/boot/efi/EFI/redhat/grub.cfg", stub.as_bytes());
    let finding = fixture.finding("kernel-cmdline");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
    assert!(
        finding.evidence.contains("all 1 boot entries"),
        "{}",
        finding.evidence
    );
}

#[test]
fn rhel_bls_without_blscfg_uses_grubenv() {
    let fixture = Fixture::clean_rhel();
    fixture.remove("/boot/grub2/grub.cfg");
    let finding = fixture.finding("kernel-cmdline");
    assert_eq!(finding.status, Status::Fail, "{}", finding.evidence);
    assert!(
        finding
            .evidence
            .contains("(variables of /boot/grub2/grubenv)"),
        "{}",
        finding.evidence
    );
    assert!(
        finding.evidence.contains("uses undefined $tuned_params"),
        "{}",
        finding.evidence
    );
    assert!(
        !finding.evidence.contains("lacks"),
        "kernelopts comes from grubenv: {}",
        finding.evidence
    );
}

#[test]
fn plant_suse_entry_without_earlyprintk() {
    let fixture = Fixture::clean_suse();
    let cfg = "menuentry 'SLES 15-SP5' {\n\tlinux /boot/vmlinuz-5.14.21-150500.55.39-default \
               root=UUID=x console=ttyS0,115200 rootdelay=300\n}\n";
    fixture.write("/boot/grub2/grub.cfg", cfg.as_bytes());
    let evidence = assert_only_failure(&fixture, "kernel-cmdline");
    assert!(
        evidence.contains("/boot/grub2/grub.cfg:2 \"SLES 15-SP5\" lacks earlyprintk=ttyS0"),
        "{evidence}"
    );
}

#[test]
fn plant_rhel_static_ifcfg() {
    let fixture = Fixture::clean_rhel();
    fixture.write(
        "/etc/sysconfig/network-scripts/ifcfg-eth0",
        b"DEVICE=eth0\nONBOOT=yes\nBOOTPROTO=static\nIPADDR=10.0.0.5\nPREFIX=24\n\
          HWADDR=00:0D:3A:00:00:01\n",
    );
    let evidence = assert_only_failure(&fixture, "no-custom-network-config");
    for line in [
        "3: BOOTPROTO=static",
        "4: IPADDR=10.0.0.5",
        "6: HWADDR=00:0D:3A:00:00:01",
    ] {
        assert!(
            evidence.contains(&format!("/etc/sysconfig/network-scripts/ifcfg-eth0:{line}")),
            "{line} missing from {evidence}"
        );
    }
}

#[test]
fn plant_rhel_manual_nmconnection() {
    let fixture = Fixture::clean_rhel();
    let path = "/etc/NetworkManager/system-connections/cloud-init-eth0.nmconnection";
    fixture.write(
        path,
        b"[connection]\nid=eth0\ntype=ethernet\n\n[ethernet]\nmac-address=00:0D:3A:00:00:01\n\n\
          [ipv4]\nmethod=manual\naddress1=10.0.0.5/24,10.0.0.1\n",
    );
    let evidence = assert_only_failure(&fixture, "no-custom-network-config");
    for line in [
        "6: mac-address=00:0D:3A:00:00:01",
        "9: method=manual",
        "10: address1=10.0.0.5/24,10.0.0.1",
    ] {
        assert!(
            evidence.contains(&format!("{path}:{line}")),
            "{line} missing from {evidence}"
        );
    }
}

#[test]
fn plant_suse_static_ifcfg() {
    let fixture = Fixture::clean_suse();
    fixture.write(
        "/etc/sysconfig/network/ifcfg-eth0",
        b"BOOTPROTO='static'\nSTARTMODE='auto'\nIPADDR='10.0.0.5/24'\n",
    );
    let evidence = assert_only_failure(&fixture, "no-custom-network-config");
    assert!(
        evidence.contains("/etc/sysconfig/network/ifcfg-eth0:1: BOOTPROTO='static'"),
        "{evidence}"
    );
    assert!(
        evidence.contains("/etc/sysconfig/network/ifcfg-eth0:3: IPADDR='10.0.0.5/24'"),
        "{evidence}"
    );
}

#[test]
fn plant_suse_lladdr() {
    let fixture = Fixture::clean_suse();
    fixture.write(
        "/etc/sysconfig/network/ifcfg-eth0",
        b"BOOTPROTO='dhcp'\nSTARTMODE='auto'\nLLADDR='00:0d:3a:00:00:01'\n",
    );
    let evidence = assert_only_failure(&fixture, "no-custom-network-config");
    assert!(
        evidence.contains("ifcfg-eth0:3: LLADDR='00:0d:3a:00:00:01'"),
        "{evidence}"
    );
}

#[test]
fn netplan_dns_servers_allowed() {
    let fixture = Fixture::clean();
    fixture.write(
        "/etc/netplan/90-dns.yaml",
        b"network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n      nameservers:\n        addresses: [168.63.129.16]\n",
    );
    let finding = fixture.finding("no-custom-network-config");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
}

#[test]
fn plant_rhel_earlier_dropin_interval() {
    let fixture = Fixture::clean_rhel();
    fixture.write(
        "/etc/ssh/sshd_config.d/01-local.conf",
        b"ClientAliveInterval 60\n",
    );
    let evidence = assert_only_failure(&fixture, "sshd-client-alive-interval");
    assert!(
        evidence.contains("/etc/ssh/sshd_config.d/01-local.conf:1: ClientAliveInterval 60 is 60 s"),
        "{evidence}"
    );
}

#[test]
fn rhel_later_settings_do_not_override() {
    let fixture = Fixture::clean_rhel();
    // The drop-ins come before these lines, and sshd keeps the first value.
    fixture.write(
        "/etc/ssh/sshd_config.d/50-cloud-init.conf",
        b"ClientAliveInterval 30\nPermitRootLogin yes\n",
    );
    let mut config =
        std::fs::read_to_string(fixture.dir.path().join("etc/ssh/sshd_config")).unwrap();
    config.push_str("ClientAliveInterval 120\n");
    fixture.write("/etc/ssh/sshd_config", config.as_bytes());
    let finding = fixture.finding("sshd-client-alive-interval");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
    assert!(
        finding
            .evidence
            .contains("/etc/ssh/sshd_config.d/05-azure.conf:1: ClientAliveInterval 180"),
        "{}",
        finding.evidence
    );
    let evidence = assert_only_failure(&fixture, "hardening-baseline");
    assert!(
        evidence.contains("/etc/ssh/sshd_config.d/50-cloud-init.conf:2: PermitRootLogin yes"),
        "{evidence}"
    );
}
