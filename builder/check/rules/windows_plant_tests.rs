//! One planted violation per Windows rule on the clean volume that
//! `tests/support/make-windows-tree.sh --clean` writes. Each test asserts
//! that the rule fails and that no other rule fails.

use sha2::{Digest, Sha256};

use super::testkit::{assert_only_failure, failures, Fixture};
use crate::check::{Status, Verdict, Waiver};

const CS: &str = r"ControlSet001";

/// Returns a test ClamAV database whose one signature matches `payload`.
fn clamav_db(payload: &[u8]) -> tempfile::TempDir {
    let db = tempfile::tempdir().unwrap();
    let digest: String = Sha256::digest(payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signature = format!("{digest}:{}:Forge.Test.Windows\n", payload.len());
    std::fs::write(db.path().join("forge-test.hsb"), signature).unwrap();
    db
}

fn clamscan_available() -> bool {
    std::process::Command::new("clamscan")
        .arg("--version")
        .output()
        .is_ok()
}

/// Returns the 80-byte F value of a SAM user as `.reg` hex.
fn sam_f(rid: u32, flags: u16) -> String {
    let mut value = [0u8; 0x50];
    value[0] = 2;
    value[0x20..0x28].copy_from_slice(&0x7fff_ffff_ffff_ffffu64.to_le_bytes());
    value[0x30..0x34].copy_from_slice(&rid.to_le_bytes());
    value[0x38..0x3a].copy_from_slice(&flags.to_le_bytes());
    let bytes: Vec<String> = value.iter().map(|b| format!("{b:02x}")).collect();
    format!("hex:{}", bytes.join(","))
}

/// Returns a SAM V value with `name` and an NT hash entry of `len` bytes.
fn sam_v(name: &str, len: u32) -> String {
    let mut value = vec![0u8; 0xcc];
    let user: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    value[0x0c..0x10].copy_from_slice(&0u32.to_le_bytes());
    value[0x10..0x14].copy_from_slice(&(user.len() as u32).to_le_bytes());
    let hash_at = user.len().next_multiple_of(4) as u32;
    value[0xa8..0xac].copy_from_slice(&hash_at.to_le_bytes());
    value[0xac..0xb0].copy_from_slice(&len.to_le_bytes());
    value.extend(&user);
    value.resize(0xcc + hash_at as usize + len as usize, 0x5a);
    let bytes: Vec<String> = value.iter().map(|b| format!("{b:02x}")).collect();
    format!("hex:{}", bytes.join(","))
}

#[test]
fn clean_windows_volume_is_compliant() {
    let mut fixture = Fixture::clean_windows();
    let db = clamav_db(b"a payload that is not on the volume");
    fixture.policy.clamav_db = Some(db.path().to_path_buf());
    let findings = fixture.run();
    assert_eq!(failures(&findings), Vec::<&str>::new(), "{findings:#?}");
    for finding in &findings {
        let expected = if finding.id.starts_with("win-") || finding.id.starts_with("vhd-") {
            if finding.id == "win-malware-scan" && !clamscan_available() {
                Status::NotRun
            } else {
                Status::Pass
            }
        } else if finding.id == "disk-first-mib-free" {
            Status::Pass
        } else {
            Status::NotApplicable
        };
        assert_eq!(finding.status, expected, "{finding:#?}");
    }
    if clamscan_available() {
        assert_eq!(Verdict::of(&findings), Verdict::Compliant);
    }
}

#[test]
fn windows_rules_say_what_they_saw() {
    let fixture = Fixture::clean_windows();
    let evidence = |id: &str| fixture.finding(id).evidence;
    let base = evidence("win-azure-base");
    assert!(base.contains("Windows Server 2022"), "{base}");
    assert!(base.contains("WindowsAzureGuestAgent, RdAgent"), "{base}");
    let updates = evidence("win-security-updates");
    assert!(updates.contains("saw build 20348.2607"), "{updates}");
    assert!(updates.contains("minimum 20348.2607"), "{updates}");
    assert!(updates.contains("offline"), "{updates}");
    assert!(
        updates.contains("package is 20348.2607 (Package_for_RollupFix~"),
        "{updates}"
    );
    let accounts = evidence("win-accounts-locked");
    assert!(
        accounts.contains("Administrator (RID 500) disabled, Guest (RID 501) disabled"),
        "{accounts}"
    );
    let users = evidence("win-no-reserved-usernames");
    assert!(users.contains("scheduled task principals: 1"), "{users}");
    let bitlocker = evidence("win-bitlocker");
    assert!(bitlocker.contains("Azure Disk Encryption"), "{bitlocker}");
    let firewall = evidence("win-firewall-rules");
    assert!(
        firewall.contains("needed: RemoteDesktop-UserMode-In-TCP"),
        "{firewall}"
    );
}

#[test]
fn no_pinned_build_is_not_run() {
    let mut fixture = Fixture::clean_windows();
    fixture.policy.windows.min_build = None;
    let finding = fixture.finding("win-security-updates");
    assert_eq!(finding.status, Status::NotRun);
    assert!(
        finding.evidence.contains("min_build"),
        "{}",
        finding.evidence
    );
}

#[test]
fn plant_client_edition() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Microsoft\Windows NT\CurrentVersion]
"EditionID"="Professional"
"InstallationType"="Client""#,
    );
    let evidence = assert_only_failure(&fixture, "win-azure-base");
    assert!(
        evidence.contains("not a Windows Server edition"),
        "{evidence}"
    );
}

#[test]
fn plant_missing_guest_agent() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg("SYSTEM", &format!(r"[-{CS}\Services\RdAgent]"));
    let evidence = assert_only_failure(&fixture, "win-azure-base");
    assert!(evidence.contains("RdAgent is not installed"), "{evidence}");
}

#[test]
fn plant_old_update_revision() {
    let mut fixture = Fixture::clean_windows();
    fixture.policy.windows.min_build = Some("20348.2700".parse().unwrap());
    let evidence = assert_only_failure(&fixture, "win-security-updates");
    assert!(
        evidence.contains("update revision 2607 is older than 2700"),
        "{evidence}"
    );
    fixture.policy.windows.min_build = Some("26100.1".parse().unwrap());
    assert_only_failure(&fixture, "win-security-updates");
    fixture.policy.windows.min_build = Some("17763.9999".parse().unwrap());
    assert_eq!(fixture.finding("win-security-updates").status, Status::Pass);
}

#[test]
fn plant_service_running_as_administrator() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        &format!(
            r#"[{CS}\Services\ContosoSync]
"ObjectName"=".\\ADMINISTRATOR"
"Start"=dword:00000003
"Type"=dword:00000010"#
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-no-reserved-usernames");
    assert!(
        evidence.contains(r#"service ContosoSync runs as ".\\ADMINISTRATOR""#),
        "{evidence}"
    );
}

#[test]
fn plant_task_running_as_root() {
    let fixture = Fixture::clean_windows();
    let xml: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(
            "<Task><Principals><Principal><UserId>CONTOSO\\root</UserId></Principal>\
             </Principals></Task>"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    fixture.write("/Windows/System32/Tasks/Contoso/Nightly", &xml);
    let evidence = assert_only_failure(&fixture, "win-no-reserved-usernames");
    assert!(evidence.contains("Contoso/Nightly runs as"), "{evidence}");
}

#[test]
fn plant_auto_logon_as_admin() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Microsoft\Windows NT\CurrentVersion\Winlogon]
"AutoAdminLogon"="1"
"DefaultUserName"="admin""#,
    );
    let evidence = assert_only_failure(&fixture, "win-no-reserved-usernames");
    assert!(evidence.contains("auto-logon is on"), "{evidence}");
}

#[test]
fn plant_encrypted_partition() {
    let mut fixture = Fixture::clean_windows();
    fixture.disk.partitions[1].fs_type = Some("BitLocker".to_owned());
    let evidence = assert_only_failure(&fixture, "win-bitlocker");
    assert!(
        evidence.contains("partition 2 BitLocker-encrypted"),
        "{evidence}"
    );
}

#[test]
fn first_boot_bitlocker_needs_the_command() {
    let mut fixture = Fixture::clean_windows();
    fixture.policy.windows.bitlocker = Some("first-boot".to_owned());
    let evidence = assert_only_failure(&fixture, "win-bitlocker");
    assert!(evidence.contains("no manage-bde -on"), "{evidence}");
    fixture.write(
        "/Windows/Setup/Scripts/SetupComplete.cmd",
        b"manage-bde -protectors -add C: -TPM\r\nmanage-bde -on C: -UsedSpaceOnly\r\n",
    );
    let finding = fixture.finding("win-bitlocker");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
}

#[test]
fn plant_telnet_server() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        &format!(
            r#"[{CS}\Services\TlntSvr]
"ObjectName"="NT AUTHORITY\\LocalService"
"Start"=dword:00000002
"Type"=dword:00000010"#
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-minimal-footprint");
    assert!(
        evidence.contains("service TlntSvr starts on its own"),
        "{evidence}"
    );
}

#[test]
fn plant_denied_feature() {
    let mut fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Microsoft\ServerManager\ServicingStorage\ServerComponentCache\Web-Server]
"InstallState"=dword:00000001"#,
    );
    let finding = fixture.finding("win-minimal-footprint");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
    fixture.policy.windows.deny = vec!["web-server".to_owned()];
    let evidence = assert_only_failure(&fixture, "win-minimal-footprint");
    assert!(
        evidence.contains("feature Web-Server is installed"),
        "{evidence}"
    );
}

#[test]
fn plant_malware() {
    if !clamscan_available() {
        eprintln!("skipped: clamscan is not installed");
        return;
    }
    let mut fixture = Fixture::clean_windows();
    let payload = b"forge test payload for the Windows scan\n";
    let db = clamav_db(payload);
    fixture.policy.clamav_db = Some(db.path().to_path_buf());
    fixture.write("/Users/Public/Downloads/tool.exe", payload);
    let evidence = assert_only_failure(&fixture, "win-malware-scan");
    assert!(
        evidence.contains("/Users/Public/Downloads/tool.exe: Forge.Test.Windows"),
        "{evidence}"
    );
}

#[test]
fn plant_string_policy_value() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Policies\Microsoft\Windows\WindowsUpdate\AU]
"NoAutoUpdate"="0""#,
    );
    let evidence = assert_only_failure(&fixture, "win-auto-update");
    assert!(
        evidence.contains("NoAutoUpdate is not a REG_DWORD"),
        "{evidence}"
    );
}

#[test]
fn plant_disabled_update_service() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        &format!(
            r#"[{CS}\Services\wuauserv]
"Start"=dword:00000004"#
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-auto-update");
    assert!(evidence.contains("wuauserv is disabled"), "{evidence}");
}

#[test]
fn plant_enabled_guest() {
    let mut fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SAM",
        &format!(
            "[SAM\\Domains\\Account\\Users\\000001F5]\n\"F\"={}",
            sam_f(0x1f5, 0x0214)
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-accounts-locked");
    assert!(
        evidence.contains("Guest is enabled, and no [windows] accounts list"),
        "{evidence}"
    );
    assert!(
        evidence.contains("Guest is enabled with a blank password"),
        "{evidence}"
    );
    fixture.policy.windows.accounts = vec!["guest".to_owned()];
    let evidence = assert_only_failure(&fixture, "win-accounts-locked");
    assert!(
        !evidence.contains("no [windows] accounts list"),
        "{evidence}"
    );
}

#[test]
fn needed_account_with_a_password_passes() {
    let mut fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SAM",
        &format!(
            "[SAM\\Domains\\Account\\Users\\000003E8]\n\"F\"={}\n\"V\"={}\n\n\
             [SAM\\Domains\\Account\\Users\\Names\\contoso]\n@=hex(3e8):",
            sam_f(1000, 0x0210),
            sam_v("contoso", 0x38)
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-accounts-locked");
    assert!(evidence.contains("contoso is enabled, and"), "{evidence}");
    fixture.policy.windows.accounts = vec!["Contoso".to_owned()];
    let finding = fixture.finding("win-accounts-locked");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
    assert!(
        finding.evidence.contains("contoso (RID 1000) enabled"),
        "{}",
        finding.evidence
    );
}

#[test]
fn plant_open_winrm_rule() {
    let mut fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        &format!(
            r#"[{CS}\Services\SharedAccess\Parameters\FirewallPolicy\FirewallRules]
"WINRM-HTTP-In-TCP"="v2.31|Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=5985|Name=Contoso WinRM|""#
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-firewall-rules");
    assert!(evidence.contains("WINRM-HTTP-In-TCP"), "{evidence}");
    fixture.policy.waivers = vec![Waiver {
        rule: "win-firewall-rules".to_owned(),
        reason: "the product is managed over WinRM".to_owned(),
    }];
    assert_eq!(fixture.finding("win-firewall-rules").status, Status::Waived);
    fixture.policy.waivers.clear();
    fixture.policy.windows.firewall_allow = vec!["contoso winrm".to_owned()];
    assert_eq!(fixture.finding("win-firewall-rules").status, Status::Pass);
}

#[test]
fn plant_each_sensitive_item() {
    let plants: [(&str, &[u8]); 8] = [
        (
            "/Windows/System32/drivers/etc/hosts",
            b"# sample\r\n10.20.30.40 cache.example\r\n",
        ),
        (
            "/Windows/Panther/Unattend/Unattend.xml",
            b"<unattend><AutoLogon><Password><Value>x</Value></Password></AutoLogon></unattend>",
        ),
        ("/Windows/Logs/CBS/CBS.log", b"log line\r\n"),
        ("/Windows/Panther/setupact.log", b"log line\r\n"),
        ("/Users/Public/Documents/signing.pfx", b"0\x82made-up"),
        (
            "/Windows/System32/Sysprep/Panther/setupact.log",
            b"log line\r\n",
        ),
        (
            "/ProgramData/ssh/ssh_host_ed25519_key",
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----\n",
        ),
        (
            "/ProgramData/Contoso/tls.pem",
            b"-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n",
        ),
    ];
    for (path, content) in plants {
        let fixture = Fixture::clean_windows();
        fixture.write(path, content);
        let evidence = assert_only_failure(&fixture, "win-sensitive-files-removed");
        assert!(evidence.contains(path), "{path}: {evidence}");
    }
    // An answer file without credentials and a public certificate stay.
    let fixture = Fixture::clean_windows();
    fixture.write("/Windows/Panther/unattend.xml", b"<unattend></unattend>");
    fixture.write(
        "/ProgramData/Contoso/ca.pem",
        b"-----BEGIN CERTIFICATE-----\n",
    );
    let finding = fixture.finding("win-sensitive-files-removed");
    assert_eq!(finding.status, Status::Pass, "{}", finding.evidence);
}

#[test]
fn plant_personal_certificate() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Microsoft\SystemCertificates\MY\Certificates\0123456789ABCDEF0123456789ABCDEF01234567]
"Blob"=hex:01,02"#,
    );
    let evidence = assert_only_failure(&fixture, "win-sensitive-files-removed");
    assert!(evidence.contains("machine's personal store"), "{evidence}");
}

#[test]
fn plant_32bit_kernel() {
    let fixture = Fixture::clean_windows();
    let mut kernel = vec![0u8; 512];
    kernel[..2].copy_from_slice(b"MZ");
    kernel[0x3c] = 0x40;
    kernel[0x40..0x44].copy_from_slice(b"PE\0\0");
    kernel[0x44..0x46].copy_from_slice(&0x014cu16.to_le_bytes());
    kernel[0x58..0x5a].copy_from_slice(&0x10bu16.to_le_bytes());
    fixture.write("/Windows/System32/ntoskrnl.exe", &kernel);
    let evidence = assert_only_failure(&fixture, "win-64bit");
    assert!(evidence.contains("machine 0x014c i386"), "{evidence}");
}

#[test]
fn plant_x86_architecture() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        &format!(
            r#"[{CS}\Control\Session Manager\Environment]
"PROCESSOR_ARCHITECTURE"="x86""#
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-64bit");
    assert!(
        evidence.contains("PROCESSOR_ARCHITECTURE is x86"),
        "{evidence}"
    );
}

#[test]
fn plant_not_generalized() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        r#"[Setup\Status\SysprepStatus]
"GeneralizationState"=dword:00000004"#,
    );
    let evidence = assert_only_failure(&fixture, "win-generalized");
    assert!(evidence.contains("GeneralizationState 4"), "{evidence}");
}

#[test]
fn plant_deployed_image_state() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Microsoft\Windows\CurrentVersion\Setup\State]
"ImageState"="IMAGE_STATE_COMPLETE""#,
    );
    let evidence = assert_only_failure(&fixture, "win-generalized");
    assert!(
        evidence.contains("ImageState IMAGE_STATE_COMPLETE"),
        "{evidence}"
    );
}

#[test]
fn plant_remote_desktop_denied() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        &format!(
            r#"[{CS}\Control\Terminal Server]
"fDenyTSConnections"=dword:00000001"#
        ),
    );
    let evidence = assert_only_failure(&fixture, "win-rdp-enabled");
    assert!(
        evidence.contains("fDenyTSConnections is REG_DWORD 1"),
        "{evidence}"
    );
}

#[test]
fn plant_remote_desktop_policy() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Policies\Microsoft\Windows NT]

[Policies\Microsoft\Windows NT\Terminal Services]
"fDenyTSConnections"=dword:00000001"#,
    );
    let evidence = assert_only_failure(&fixture, "win-rdp-enabled");
    assert!(evidence.contains("the policy"), "{evidence}");
}

#[test]
fn plant_small_windows_disk() {
    let mut fixture = Fixture::clean_windows();
    let small = Fixture::clean_windows_disk(28);
    fixture.disk = small;
    let evidence = assert_only_failure(&fixture, "vhd-size-range");
    assert!(evidence.contains("30"), "{evidence}");
}

#[test]
fn dirty_windows_volume_fails_what_a_build_resets() {
    let fixture = Fixture::clean_windows();
    let dirty = fixture.dir.path().join("dirty");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/make-windows-tree.sh"
    );
    let status = std::process::Command::new("bash")
        .arg(script)
        .arg(&dirty)
        .status()
        .unwrap();
    assert!(status.success());
    let view = crate::check::DirView::new(&dirty).assume_root_owner();
    let mut policy = fixture.policy.clone();
    policy.clamav_db = Some(fixture.empty_db.path().to_path_buf());
    let findings = crate::check::run_rules(&crate::check::Subject {
        disk: &fixture.disk,
        fs: Some(&view),
        os: &fixture.os,
        policy: &policy,
    });
    assert_eq!(
        failures(&findings),
        [
            "win-no-reserved-usernames",
            "win-auto-update",
            "win-accounts-locked",
            "win-firewall-rules",
            "win-sensitive-files-removed",
        ],
        "{findings:#?}"
    );
    let sensitive = findings
        .iter()
        .find(|f| f.id == "win-sensitive-files-removed")
        .unwrap();
    for path in [
        "/Windows/System32/drivers/etc/hosts",
        "/Windows/Panther/unattend.xml",
        "/Windows/Panther/setupact.log",
        "/Windows/Logs/CBS/CBS.log",
        "/WindowsAzure/Logs/WaAppAgent.log",
        "/Users/Public/Documents/signing.pfx",
        r"MY\Certificates\3F2A9C1D7E5B4A6C8D0E1F2A3B4C5D6E7F809A1B",
    ] {
        assert!(sensitive.evidence.contains(path), "{path}: {sensitive:#?}");
    }
}

#[test]
fn plant_stored_logon_password() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SOFTWARE",
        r#"[Microsoft\Windows NT\CurrentVersion\Winlogon]
"DefaultUserName"="azureuser"
"DefaultPassword"="Forge-Test-Pa55!""#,
    );
    let evidence = assert_only_failure(&fixture, "win-sensitive-files-removed");
    assert!(evidence.contains("stored logon password"), "{evidence}");
}

#[test]
fn plant_enabled_admin_account() {
    let mut fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SAM",
        &format!(
            "[SAM\\Domains\\Account\\Users\\000003E9]\n\"F\"={}\n\"V\"={}\n\n\
             [SAM\\Domains\\Account\\Users\\Names\\admin]\n@=hex(3e9):",
            sam_f(1001, 0x0210),
            sam_v("admin", 0x38)
        ),
    );
    fixture.policy.windows.accounts = vec!["admin".to_owned()];
    let evidence = assert_only_failure(&fixture, "win-no-reserved-usernames");
    assert!(
        evidence.contains("the enabled local account admin has a reserved name"),
        "{evidence}"
    );
}

#[test]
fn missing_control_set_is_not_run() {
    let fixture = Fixture::clean_windows();
    fixture.merge_reg(
        "SYSTEM",
        r#"[Select]
"Current"=dword:00000002"#,
    );
    let finding = fixture.finding("win-rdp-enabled");
    assert_eq!(finding.status, Status::NotRun);
    assert!(
        finding
            .evidence
            .contains("ControlSet002, which does not exist"),
        "{}",
        finding.evidence
    );
}

#[test]
fn encrypted_volume_without_os_fails_bitlocker() {
    let mut fixture = Fixture::clean_windows();
    fixture.disk.partitions[1].fs_type = Some("BitLocker".to_owned());
    fixture.os = crate::check::OsInfo::default();
    let subject = crate::check::Subject {
        disk: &fixture.disk,
        fs: None,
        os: &fixture.os,
        policy: &fixture.policy,
    };
    let findings = crate::check::run_rules(&subject);
    let bitlocker = findings.iter().find(|f| f.id == "win-bitlocker").unwrap();
    assert_eq!(bitlocker.status, Status::Fail, "{bitlocker:#?}");
    assert!(bitlocker.evidence.contains("partition 2"), "{bitlocker:#?}");
}
