//! What the Windows build checks in a base's registry before it changes
//! anything, and the hardening it applies to the hives and files. Each
//! change here is one that a Windows rule of the check pass verifies.

use anyhow::{bail, ensure, Context, Result};

use super::registry::{self, Hive, Node, Value};
use crate::check::rules::windows::{
    answer_file_has_credentials, hosts_entries, nt_hash_present, FirewallRule, ACB_DISABLED,
    ACB_PASSWORD_NOT_REQUIRED, AGENT_SERVICES, DENIED_FEATURES, DENIED_SERVICES,
};
use crate::check::{WinBuild, WindowsPolicy};
use crate::recipe::{RegistryValue, REG_SZ};

/// Commands that turn BitLocker on at the first boot, for
/// `bitlocker = "first-boot"`.
pub const BITLOCKER_FIRST_BOOT: [&str; 2] = [
    "manage-bde -protectors -add C: -TPM",
    "manage-bde -on C: -UsedSpaceOnly -RecoveryPassword",
];

/// `GeneralizationState` after `sysprep /generalize` finished.
const GENERALIZED: u32 = 7;
/// `ImageState` of an image sysprep generalized and sealed to the
/// out-of-box experience.
const SEALED_TO_OOBE: &str = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE";
const SETUP_STATE: [&str; 5] = ["Microsoft", "Windows", "CurrentVersion", "Setup", "State"];

const CURRENT_VERSION: [&str; 3] = ["Microsoft", "Windows NT", "CurrentVersion"];
const WINLOGON: [&str; 4] = ["Microsoft", "Windows NT", "CurrentVersion", "Winlogon"];
const AU_POLICY: [&str; 5] = ["Policies", "Microsoft", "Windows", "WindowsUpdate", "AU"];
const TS_POLICY: [&str; 4] = ["Policies", "Microsoft", "Windows NT", "Terminal Services"];
const MACHINE_CERTIFICATES: [&str; 4] = ["Microsoft", "SystemCertificates", "MY", "Certificates"];
const COMPONENT_CACHE: [&str; 4] = [
    "Microsoft",
    "ServerManager",
    "ServicingStorage",
    "ServerComponentCache",
];
const SAM_USERS: [&str; 4] = ["SAM", "Domains", "Account", "Users"];

/// The product name and build that the SOFTWARE hive records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseVersion {
    pub product: String,
    pub build: WinBuild,
}

/// Returns the control set that `SYSTEM\Select\Current` names, such as
/// `ControlSet001`.
pub fn control_set(system: &dyn Hive) -> Result<String> {
    let current = registry::value_at(system, &["Select"], "Current")?
        .and_then(|v| v.dword())
        .with_context(|| {
            format!(
                "{} has no REG_DWORD Select\\Current, so the current control set is unknown",
                system.label()
            )
        })?;
    let name = format!("ControlSet{current:03}");
    if registry::open(system, &[&name])?.is_none() {
        bail!(
            "{}: Select\\Current names {name}, which does not exist",
            system.label()
        );
    }
    Ok(name)
}

/// Rejects a base that sysprep did not generalize or that lacks the Azure
/// guest agent.
pub fn check_system(system: &dyn Hive, cs: &str) -> Result<()> {
    let state = registry::value_at(
        system,
        &["Setup", "Status", "SysprepStatus"],
        "GeneralizationState",
    )?
    .and_then(|v| v.dword());
    if state != Some(GENERALIZED) {
        let found = state.map_or("missing".to_owned(), |s| s.to_string());
        bail!(
            "the base image is not generalized (SYSTEM\\Setup\\Status\\SysprepStatus \
             GeneralizationState is {found}, not {GENERALIZED}); on the VM run \
             `sysprep /generalize /oobe /shutdown`, then export the disk again"
        );
    }
    let missing: Vec<&str> = AGENT_SERVICES
        .iter()
        .copied()
        .filter(|s| {
            registry::open(system, &[cs, "Services", s])
                .map(|n| n.is_none())
                .unwrap_or(true)
        })
        .collect();
    if !missing.is_empty() {
        bail!(
            "the base image lacks the Azure VM Agent (no service {} under SYSTEM\\{cs}\\Services); \
             install the Azure VM Agent on the VM, then generalize and export again",
            missing.join(" or ")
        );
    }
    Ok(())
}

/// Rejects a base that is not Windows Server or is older than
/// `min_build`, or that has a denied feature installed. Returns the
/// product name and build.
pub fn check_software(software: &dyn Hive, policy: &WindowsPolicy) -> Result<BaseVersion> {
    let text = |name: &str| -> Result<Option<String>> {
        Ok(registry::value_at(software, &CURRENT_VERSION, name)?.and_then(|v| v.text()))
    };
    let product = text("ProductName")?.unwrap_or_default();
    let installation = text("InstallationType")?.unwrap_or_default();
    let edition = text("EditionID")?.unwrap_or_default();
    let server = installation.to_ascii_lowercase().starts_with("server")
        || edition.to_ascii_lowercase().starts_with("server");
    if !server {
        bail!(
            "the base image is {:?} (EditionID {:?}, InstallationType {:?}), not a Windows \
             Server edition; Azure Marketplace Windows images start from Windows Server",
            product,
            edition,
            installation
        );
    }
    let image_state =
        registry::value_at(software, &SETUP_STATE, "ImageState")?.and_then(|v| v.text());
    if let Some(state) = image_state {
        if !state.eq_ignore_ascii_case(SEALED_TO_OOBE) {
            bail!(
                "the base image is not sealed to the out-of-box experience (SOFTWARE\\{} \
                 ImageState is {state}); on the VM run `sysprep /generalize /oobe /shutdown`, \
                 then export the disk again",
                SETUP_STATE.join("\\")
            );
        }
    }
    let build_number = text("CurrentBuildNumber")?
        .and_then(|b| b.trim().parse::<u32>().ok())
        .context(
            "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion has no numeric \
             CurrentBuildNumber, so the Windows build is unknown",
        )?;
    let ubr = registry::value_at(software, &CURRENT_VERSION, "UBR")?
        .and_then(|v| v.dword())
        .unwrap_or(0);
    let build = WinBuild {
        build: build_number,
        ubr,
    };
    if let Some(min) = policy.min_build {
        if build < min {
            bail!(
                "the base image is build {build}, older than min_build {min} in [windows]; \
                 install the latest cumulative update on the VM, then generalize and export \
                 again"
            );
        }
    }
    let mut installed = Vec::new();
    for name in denied_names(policy) {
        let state = registry::value_at(
            software,
            &[&COMPONENT_CACHE[..], &[name]].concat(),
            "InstallState",
        )?
        .and_then(|v| v.dword());
        if state == Some(1) {
            installed.push(name);
        }
    }
    if !installed.is_empty() {
        bail!(
            "the base image has the denied feature(s) {} installed, which cannot be removed \
             offline; remove it with Uninstall-WindowsFeature on the VM before exporting",
            installed.join(", ")
        );
    }
    Ok(BaseVersion { product, build })
}

/// forge's denied services and features, then the recipe's `deny`.
fn denied_names(policy: &WindowsPolicy) -> Vec<&str> {
    let mut names: Vec<&str> = DENIED_SERVICES
        .iter()
        .chain(DENIED_FEATURES.iter())
        .copied()
        .collect();
    names.extend(policy.deny.iter().map(String::as_str));
    names
}

/// Rejects accounts the recipe keeps enabled that have no password or
/// need none.
pub fn check_sam(sam: &dyn Hive, policy: &WindowsPolicy) -> Result<()> {
    for user in sam_users(sam)? {
        if !policy
            .accounts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&user.name))
        {
            continue;
        }
        let Some(key) = user.key else { continue };
        let flags = registry::value(sam, key, "F")?
            .and_then(|f| f.data.get(ACB_OFFSET..ACB_OFFSET + 2).map(|b| [b[0], b[1]]))
            .map(u16::from_le_bytes)
            .unwrap_or(ACB_DISABLED);
        if flags & ACB_DISABLED != 0 {
            continue;
        }
        let v = registry::value(sam, key, "V")?.map(|v| v.data);
        if !nt_hash_present(v.as_deref().unwrap_or_default())
            || flags & ACB_PASSWORD_NOT_REQUIRED != 0
        {
            bail!(
                "account {:?}, which `accounts` in [windows] keeps enabled, has no password; \
                 set a password on the VM (or leave the account out of `accounts`, so the \
                 build disables it), then generalize and export again",
                user.name
            );
        }
    }
    Ok(())
}

/// One local account of the SAM hive.
struct SamUser {
    name: String,
    rid: u32,
    /// `SAM\Domains\Account\Users\<RID>`, if it exists.
    key: Option<Node>,
}

fn sam_users(sam: &dyn Hive) -> Result<Vec<SamUser>> {
    let Some(names) = registry::open(sam, &[&SAM_USERS[..], &["Names"]].concat())? else {
        return Ok(Vec::new());
    };
    let users = registry::open(sam, &SAM_USERS)?.context("SAM has Users\\Names but no Users")?;
    let mut out = Vec::new();
    for child in sam.children(names)? {
        let name = sam.name(child)?;
        // The type of the default value is the account's RID.
        let Some(default) = registry::value(sam, child, "")? else {
            continue;
        };
        let rid = default.kind;
        let key = sam.child(users, &format!("{rid:08X}"))?;
        out.push(SamUser { name, rid, key });
    }
    Ok(out)
}

/// Offset of the account control flags in a SAM user's `F` value.
const ACB_OFFSET: usize = 0x38;

/// Disables every account not named in `accounts`. Returns what changed.
pub fn harden_sam(sam: &mut dyn Hive, policy: &WindowsPolicy) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    for user in sam_users(sam)? {
        if policy
            .accounts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(&user.name))
        {
            continue;
        }
        let Some(key) = user.key else {
            tracing::warn!(
                "SAM account {} has no key for RID {:08X}; left as it is",
                user.name,
                user.rid
            );
            continue;
        };
        let f = registry::value(sam, key, "F")?;
        let Some(mut f) = f.filter(|f| f.data.len() >= ACB_OFFSET + 2) else {
            bail!(
                "SAM account {:?} (RID {:08X}) has no F value with account flags, so it \
                 cannot be disabled offline; disable it on the VM before exporting",
                user.name,
                user.rid
            );
        };
        let flags = u16::from_le_bytes([f.data[ACB_OFFSET], f.data[ACB_OFFSET + 1]]);
        if flags & ACB_DISABLED == 0 {
            f.data[ACB_OFFSET..ACB_OFFSET + 2]
                .copy_from_slice(&(flags | ACB_DISABLED).to_le_bytes());
            sam.set_value(key, "F", f.kind, &f.data)?;
            changes.push(format!("disabled account {}", user.name));
        }
    }
    Ok(changes)
}

/// Sets the layers' values of one hive, in order. `cs` replaces a first
/// key name `CurrentControlSet` in SYSTEM.
pub fn apply_values(hive: &mut dyn Hive, values: &[&RegistryValue], cs: &str) -> Result<()> {
    for v in values {
        let path: Vec<&str> = v
            .path
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i == 0 && p.eq_ignore_ascii_case("CurrentControlSet") {
                    cs
                } else {
                    p.as_str()
                }
            })
            .collect();
        let node = registry::create(hive, &path)?;
        let (kind, data) = v.data.encode();
        hive.set_value(node, &v.name, kind, &data)
            .with_context(|| format!("failed to set {}\\{}", v.key, v.name))?;
    }
    Ok(())
}

/// Sets a REG_DWORD unless it already has that value; returns whether it
/// changed.
fn ensure_dword(hive: &mut dyn Hive, path: &[&str], name: &str, n: u32) -> Result<bool> {
    let node = registry::create(hive, path)?;
    if registry::value(hive, node, name)?.and_then(|v| v.dword()) == Some(n) {
        return Ok(false);
    }
    registry::set_dword(hive, node, name, n)?;
    Ok(true)
}

/// Sets a service's `Start` from `from` to `to` when it has one of `from`.
fn service_start(
    hive: &mut dyn Hive,
    cs: &str,
    service: &str,
    from: &[u32],
    to: u32,
) -> Result<bool> {
    let Some(node) = registry::open(hive, &[cs, "Services", service])? else {
        return Ok(false);
    };
    let start = registry::value(hive, node, "Start")?.and_then(|v| v.dword());
    if start.is_some_and(|s| from.contains(&s)) {
        registry::set_dword(hive, node, "Start", to)?;
        return Ok(true);
    }
    Ok(false)
}

/// What [`harden_software`] changed.
pub struct SoftwareChanges {
    pub changes: Vec<String>,
    /// Whether a stored logon password was deleted, whose bytes hivex
    /// leaves in the freed cells of the hive file.
    pub removed_password: bool,
}

/// Hardens the SOFTWARE hive: automatic updates, no automatic logon, the
/// Remote Desktop policy and the machine's personal certificates.
pub fn harden_software(software: &mut dyn Hive) -> Result<SoftwareChanges> {
    let mut changes = Vec::new();
    let mut removed_password = false;
    if ensure_dword(software, &AU_POLICY, "NoAutoUpdate", 0)? {
        changes.push("set NoAutoUpdate 0".to_owned());
    }
    if ensure_dword(software, &AU_POLICY, "AUOptions", 4)? {
        changes.push("set AUOptions 4".to_owned());
    }
    let winlogon = registry::create(software, &WINLOGON)?;
    let logon = registry::value(software, winlogon, "AutoAdminLogon")?;
    if logon.as_ref().and_then(|v| v.text()).as_deref() != Some("0") {
        registry::set_string(software, winlogon, "AutoAdminLogon", "0")?;
        changes.push("set AutoAdminLogon 0".to_owned());
    }
    if registry::delete_value(software, &WINLOGON, "DefaultPassword")? {
        changes.push("removed Winlogon DefaultPassword".to_owned());
        removed_password = true;
    }
    if let Some(node) = registry::open(software, &TS_POLICY)? {
        let deny = registry::value(software, node, "fDenyTSConnections")?;
        if deny.is_some_and(|v| v.dword() != Some(0)) {
            registry::set_dword(software, node, "fDenyTSConnections", 0)?;
            changes.push("set the Terminal Services policy fDenyTSConnections 0".to_owned());
        }
    }
    if let Some(store) = registry::open(software, &MACHINE_CERTIFICATES)? {
        let certificates = software.children(store)?;
        for cert in &certificates {
            software.delete(*cert)?;
        }
        if !certificates.is_empty() {
            changes.push(format!(
                "removed {} certificate(s) of the machine's personal store",
                certificates.len()
            ));
        }
    }
    Ok(SoftwareChanges {
        changes,
        removed_password,
    })
}

/// Overwrites the contents of every free cell of a hive file with zeros,
/// so that deleted values leave no bytes behind. Returns the number of
/// bytes cleared.
///
/// Layout: a 4 KiB base block starting `regf`, then bins starting `hbin`
/// with their size at offset 8, each a run of cells that start with an
/// i32 size, negative for a cell in use and positive for a free one.
pub fn clear_free_cells(hive: &mut [u8]) -> Result<usize> {
    ensure!(hive.starts_with(b"regf"), "the hive has no regf signature");
    let mut cleared = 0;
    let mut bin = 4096;
    while bin + 32 <= hive.len() && &hive[bin..bin + 4] == b"hbin" {
        let size =
            u32::from_le_bytes(hive[bin + 8..bin + 12].try_into().expect("4 bytes")) as usize;
        ensure!(
            size >= 4096 && bin + size <= hive.len(),
            "the bin at {bin:#x} has an invalid size {size:#x}"
        );
        let mut cell = bin + 32;
        while cell + 4 <= bin + size {
            let raw = i32::from_le_bytes(hive[cell..cell + 4].try_into().expect("4 bytes"));
            let len = raw.unsigned_abs() as usize;
            ensure!(
                len >= 4 && cell + len <= bin + size,
                "the cell at {cell:#x} has an invalid size {raw}"
            );
            if raw > 0 {
                hive[cell + 4..cell + len].fill(0);
                cleared += len - 4;
            }
            cell += len;
        }
        bin += size;
    }
    Ok(cleared)
}

/// Hardens the SYSTEM hive's control set `cs`: Windows Update and Remote
/// Desktop on, denied services disabled. The firewall rules are set apart,
/// with [`disable_firewall_rules`].
pub fn harden_system(
    system: &mut dyn Hive,
    cs: &str,
    policy: &WindowsPolicy,
) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    if service_start(system, cs, "wuauserv", &[4], 3)? {
        changes.push("set wuauserv to start on demand".to_owned());
    }
    if ensure_dword(
        system,
        &[cs, "Control", "Terminal Server"],
        "fDenyTSConnections",
        0,
    )? {
        changes.push("set fDenyTSConnections 0".to_owned());
    }
    if service_start(system, cs, "TermService", &[4], 3)? {
        changes.push("set TermService to start on demand".to_owned());
    }
    let mut services: Vec<&str> = DENIED_SERVICES.to_vec();
    services.extend(policy.deny.iter().map(String::as_str));
    for service in services {
        if service_start(system, cs, service, &[0, 1, 2], 4)? {
            changes.push(format!("disabled service {service}"));
        }
    }
    Ok(changes)
}

/// Returns the key of the firewall rules in the control set `cs`.
pub fn firewall_rules_key(cs: &str) -> [&str; 6] {
    [
        cs,
        "Services",
        "SharedAccess",
        "Parameters",
        "FirewallPolicy",
        "FirewallRules",
    ]
}

/// Returns the firewall rules key's values with `Active=FALSE` in every
/// rule that [`firewall_rule_disabled`] picks, and how many it picked;
/// `None` when it picks none.
pub fn disable_firewall_rules(values: &[Value], allow: &[String]) -> Option<(Vec<Value>, usize)> {
    let mut disabled = 0;
    let new: Vec<Value> = values
        .iter()
        .map(|v| {
            if v.kind != REG_SZ {
                return v.clone();
            }
            let text = registry::decode_utf16(&v.data);
            match firewall_rule_disabled(&v.name, &text, allow) {
                Some(rule) => {
                    disabled += 1;
                    Value {
                        data: crate::recipe::utf16z(&rule),
                        ..v.clone()
                    }
                }
                None => v.clone(),
            }
        })
        .collect();
    (disabled > 0).then_some((new, disabled))
}

/// Returns the rule `text` with `Active=FALSE` when it is an active
/// inbound allow rule that is neither Remote Desktop's nor in `allow`,
/// matched by value name or `Name=` field; `None` keeps it as it is.
pub fn firewall_rule_disabled(value_name: &str, text: &str, allow: &[String]) -> Option<String> {
    let rule = FirewallRule {
        id: value_name.to_owned(),
        text: text.to_owned(),
    };
    if !rule.is_active_inbound_allow() || rule.is_remote_desktop() || rule.is_declared(allow) {
        return None;
    }
    let fields: Vec<String> = text
        .split('|')
        .map(|f| match f.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("Active") => format!("{k}=FALSE"),
            _ => f.to_owned(),
        })
        .collect();
    Some(fields.join("|"))
}

/// Returns the hosts file with only its comment and blank lines, or `None`
/// when it has no other line.
pub fn clean_hosts(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut changed = false;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if hosts_entries(&String::from_utf8_lossy(line)).is_empty() {
            out.extend_from_slice(line);
        } else {
            changed = true;
        }
    }
    changed.then_some(out)
}

/// Whether a file name is that of a Windows answer file.
pub fn is_answer_file(name: &str) -> bool {
    name.eq_ignore_ascii_case("unattend.xml") || name.eq_ignore_ascii_case("autounattend.xml")
}

/// Decodes text that may be UTF-16 (with a byte order mark, or ASCII with
/// NUL high bytes) or UTF-8.
pub fn decode_text(bytes: &[u8]) -> String {
    let utf16 = |little: bool, body: &[u8]| {
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|c| {
                if little {
                    u16::from_le_bytes([c[0], c[1]])
                } else {
                    u16::from_be_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(true, rest),
        [0xFE, 0xFF, rest @ ..] => utf16(false, rest),
        [_, 0, ..] => utf16(true, bytes),
        [0, _, ..] => utf16(false, bytes),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Whether an answer file's text contains a password.
pub fn contains_credentials(bytes: &[u8]) -> bool {
    answer_file_has_credentials(&decode_text(bytes))
}

/// Whether PEM text contains a private key.
pub fn is_pem_private_key(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"PRIVATE KEY")
}

/// Returns the lower-case extension of a file name.
pub fn extension(name: &str) -> Option<String> {
    name.rsplit_once('.')
        .filter(|(stem, _)| !stem.is_empty())
        .map(|(_, e)| e.to_ascii_lowercase())
}

/// The marker line before forge's commands in SetupComplete.cmd.
const SETUP_MARKER: &str = "rem Added by forge build: the product's first-boot commands.";

/// Returns SetupComplete.cmd: the base's lines, if it had the file, then
/// forge's commands, with CRLF line ends.
pub fn setup_complete(existing: Option<&[u8]>, commands: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(old) = existing.filter(|o| !o.is_empty()) {
        out.extend_from_slice(old);
        if !old.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(SETUP_MARKER.as_bytes());
    out.extend_from_slice(b"\r\n");
    for command in commands {
        out.extend_from_slice(command.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{utf16z, RegData, REG_DWORD};
    use registry::MemHive;

    fn dword(n: u32) -> Vec<u8> {
        n.to_le_bytes().to_vec()
    }

    fn system_hive() -> MemHive {
        let mut h = MemHive::new();
        h.put(&["Select"], "Current", REG_DWORD, &dword(1));
        h.put(
            &["Setup", "Status", "SysprepStatus"],
            "GeneralizationState",
            REG_DWORD,
            &dword(7),
        );
        for s in ["WindowsAzureGuestAgent", "RdAgent"] {
            h.put(
                &["ControlSet001", "Services", s],
                "Start",
                REG_DWORD,
                &dword(2),
            );
        }
        h
    }

    fn software_hive(product: &str, build: &str, ubr: u32) -> MemHive {
        let mut h = MemHive::new();
        h.put(&CURRENT_VERSION, "ProductName", REG_SZ, &utf16z(product));
        let edition = if product.contains("Server") {
            "ServerDatacenter"
        } else {
            "Professional"
        };
        h.put(&CURRENT_VERSION, "EditionID", REG_SZ, &utf16z(edition));
        h.put(
            &CURRENT_VERSION,
            "CurrentBuildNumber",
            REG_SZ,
            &utf16z(build),
        );
        h.put(&CURRENT_VERSION, "UBR", REG_DWORD, &dword(ubr));
        h
    }

    #[test]
    fn a_generalized_base_with_the_agent_passes() {
        let h = system_hive();
        let cs = control_set(&h).unwrap();
        assert_eq!(cs, "ControlSet001");
        check_system(&h, &cs).unwrap();
    }

    #[test]
    fn ungeneralized_base_names_sysprep_command() {
        let mut h = system_hive();
        h.put(
            &["Setup", "Status", "SysprepStatus"],
            "GeneralizationState",
            REG_DWORD,
            &dword(4),
        );
        let err = check_system(&h, "ControlSet001").unwrap_err().to_string();
        assert!(err.contains("sysprep /generalize /oobe /shutdown"), "{err}");
        assert!(err.contains("is 4"), "{err}");
    }

    #[test]
    fn a_missing_agent_service_is_named() {
        let mut h = system_hive();
        let node = registry::open(&h, &["ControlSet001", "Services", "RdAgent"])
            .unwrap()
            .unwrap();
        h.delete(node).unwrap();
        let err = check_system(&h, "ControlSet001").unwrap_err().to_string();
        assert!(
            err.contains("RdAgent") && err.contains("Azure VM Agent"),
            "{err}"
        );
    }

    #[test]
    fn client_edition_and_old_build_rejected() {
        let policy = WindowsPolicy {
            min_build: Some("20348.2607".parse().unwrap()),
            ..Default::default()
        };
        let client = software_hive("Windows 10 Pro", "19045", 1);
        let err = check_software(&client, &policy).unwrap_err().to_string();
        assert!(err.contains("not a Windows Server edition"), "{err}");
        let old = software_hive("Windows Server 2022 Datacenter", "20348", 2000);
        let err = check_software(&old, &policy).unwrap_err().to_string();
        assert!(
            err.contains("20348.2000") && err.contains("cumulative update"),
            "{err}"
        );
        let new = software_hive("Windows Server 2022 Datacenter", "20348", 2607);
        let v = check_software(&new, &policy).unwrap();
        assert_eq!(v.build.to_string(), "20348.2607");
    }

    #[test]
    fn image_not_sealed_to_oobe_rejected() {
        let mut h = software_hive("Windows Server 2022 Datacenter", "20348", 1);
        h.put(
            &SETUP_STATE,
            "ImageState",
            REG_SZ,
            &utf16z("IMAGE_STATE_COMPLETE"),
        );
        let err = check_software(&h, &WindowsPolicy::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("IMAGE_STATE_COMPLETE"), "{err}");
        assert!(err.contains("sysprep /generalize /oobe"), "{err}");
    }

    #[test]
    fn installed_denied_feature_rejected() {
        let policy = WindowsPolicy {
            deny: vec!["Web-Server".into()],
            ..Default::default()
        };
        let mut h = software_hive("Windows Server 2022 Datacenter", "20348", 1);
        let key = [&COMPONENT_CACHE[..], &["Web-Server"]].concat();
        h.put(&key, "InstallState", REG_DWORD, &dword(1));
        let err = check_software(&h, &policy).unwrap_err().to_string();
        assert!(
            err.contains("Web-Server") && err.contains("Uninstall-WindowsFeature"),
            "{err}"
        );
        h.put(&key, "InstallState", REG_DWORD, &dword(0));
        check_software(&h, &policy).unwrap();
    }

    #[test]
    fn layer_values_create_keys_and_map_the_control_set() {
        let mut h = system_hive();
        let v = RegistryValue {
            key: "HKLM\\SYSTEM\\CurrentControlSet\\Services\\App".into(),
            hive: crate::recipe::HiveName::System,
            path: vec!["CurrentControlSet".into(), "Services".into(), "App".into()],
            name: "Mode".into(),
            data: RegData::Dword(1),
        };
        apply_values(&mut h, &[&v], "ControlSet001").unwrap();
        let got = h
            .get(&["ControlSet001", "Services", "App"], "Mode")
            .unwrap();
        assert_eq!(got.dword(), Some(1));
    }

    fn rule(text: &str) -> String {
        format!("v2.31|{text}|")
    }

    #[test]
    fn firewall_keeps_rdp_and_allowed_rules() {
        let allow = vec!["Contoso-HTTPS-In".to_owned()];
        let web = rule("Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=80|Name=Web");
        let new = firewall_rule_disabled("WEB-In", &web, &allow).unwrap();
        assert_eq!(
            new,
            rule("Action=Allow|Active=FALSE|Dir=In|Protocol=6|LPort=80|Name=Web")
        );
        let rdp = rule("Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=3389|Name=x");
        assert_eq!(firewall_rule_disabled("Other", &rdp, &allow), None);
        let rdp_udp = rule("Action=Allow|Active=TRUE|Dir=In|Protocol=17|Name=x");
        assert_eq!(
            firewall_rule_disabled("RemoteDesktop-UserMode-In-UDP", &rdp_udp, &allow),
            None
        );
        let named = rule("Action=Allow|Active=TRUE|Dir=In|LPort=443|Name=contoso-https-in");
        assert_eq!(firewall_rule_disabled("{guid}", &named, &allow), None);
        let out = rule("Action=Allow|Active=TRUE|Dir=Out|Name=y");
        assert_eq!(firewall_rule_disabled("Out", &out, &allow), None);
        let off = rule("Action=Allow|Active=FALSE|Dir=In|Name=y");
        assert_eq!(firewall_rule_disabled("Off", &off, &allow), None);
    }

    #[test]
    fn firewall_values_disable_only_extra_rules() {
        let value = |name: &str, text: &str| Value {
            name: name.into(),
            kind: REG_SZ,
            data: utf16z(&rule(text)),
        };
        let values = vec![
            value("Web", "Action=Allow|Active=TRUE|Dir=In|LPort=80|Name=Web"),
            value("RDP", "Action=Allow|Active=TRUE|Dir=In|LPort=3389|Name=RDP"),
            Value {
                name: "Binary".into(),
                kind: 3,
                data: vec![1, 2],
            },
        ];
        let (new, disabled) = disable_firewall_rules(&values, &[]).unwrap();
        assert_eq!(disabled, 1);
        assert_eq!(new.len(), 3);
        assert!(new[0].text().unwrap().contains("|Active=FALSE|"));
        assert_eq!(new[1..], values[1..]);
        assert!(disable_firewall_rules(&new, &[]).is_none());
        assert!(disable_firewall_rules(&values, &["web".to_owned()]).is_none());
    }

    #[test]
    fn system_hardening_sets_services_and_rdp() {
        let mut h = system_hive();
        let svc = |h: &mut MemHive, s: &str, start: u32| {
            h.put(
                &["ControlSet001", "Services", s],
                "Start",
                REG_DWORD,
                &dword(start),
            )
        };
        svc(&mut h, "wuauserv", 4);
        svc(&mut h, "TermService", 4);
        svc(&mut h, "TlntSvr", 2);
        svc(&mut h, "W3SVC", 2);
        svc(&mut h, "simptcp", 4);
        let policy = WindowsPolicy {
            deny: vec!["W3SVC".into()],
            ..Default::default()
        };
        let changes = harden_system(&mut h, "ControlSet001", &policy).unwrap();
        assert_eq!(changes.len(), 5, "{changes:?}");
        let start = |h: &MemHive, s: &str| {
            h.get(&["ControlSet001", "Services", s], "Start")
                .unwrap()
                .dword()
                .unwrap()
        };
        assert_eq!(start(&h, "wuauserv"), 3);
        assert_eq!(start(&h, "TermService"), 3);
        assert_eq!(start(&h, "TlntSvr"), 4);
        assert_eq!(start(&h, "W3SVC"), 4);
        let deny = h
            .get(
                &["ControlSet001", "Control", "Terminal Server"],
                "fDenyTSConnections",
            )
            .unwrap();
        assert_eq!(deny.dword(), Some(0));
        // A second pass finds nothing to change.
        assert!(harden_system(&mut h, "ControlSet001", &policy)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn software_hardening_sets_updates_logon_and_certificates() {
        let mut h = MemHive::new();
        h.put(&AU_POLICY, "AUOptions", REG_SZ, &utf16z("4"));
        h.put(&WINLOGON, "AutoAdminLogon", REG_SZ, &utf16z("1"));
        h.put(&WINLOGON, "DefaultPassword", REG_SZ, &utf16z("secret"));
        h.put(&TS_POLICY, "fDenyTSConnections", REG_DWORD, &dword(1));
        let cert = [&MACHINE_CERTIFICATES[..], &["AB12"]].concat();
        h.put(&cert, "Blob", 3, &[1, 2, 3]);
        let result = harden_software(&mut h).unwrap();
        assert_eq!(result.changes.len(), 6, "{:?}", result.changes);
        assert!(result.removed_password);
        assert_eq!(h.get(&AU_POLICY, "AUOptions").unwrap().dword(), Some(4));
        assert_eq!(h.get(&AU_POLICY, "NoAutoUpdate").unwrap().dword(), Some(0));
        let logon = h.get(&WINLOGON, "AutoAdminLogon").unwrap();
        assert_eq!(logon.text().as_deref(), Some("0"));
        assert!(h.get(&WINLOGON, "DefaultPassword").is_none());
        assert_eq!(
            h.get(&TS_POLICY, "fDenyTSConnections").unwrap().dword(),
            Some(0)
        );
        let store = registry::open(&h, &MACHINE_CERTIFICATES).unwrap().unwrap();
        assert!(h.children(store).unwrap().is_empty());
        let again = harden_software(&mut h).unwrap();
        assert!(again.changes.is_empty(), "{:?}", again.changes);
        assert!(!again.removed_password);
    }

    fn sam_hive(users: &[(&str, u32, u16, Option<u32>)]) -> MemHive {
        let mut h = MemHive::new();
        for (name, rid, acb, hash_len) in users {
            let names = [&SAM_USERS[..], &["Names", name]].concat();
            h.put(&names, "", *rid, &[]);
            let rid_key = format!("{rid:08X}");
            let key = [&SAM_USERS[..], &[rid_key.as_str()]].concat();
            let mut f = vec![0u8; 0x50];
            f[ACB_OFFSET..ACB_OFFSET + 2].copy_from_slice(&acb.to_le_bytes());
            h.put(&key, "F", 3, &f);
            if let Some(len) = hash_len {
                let mut v = vec![0u8; 0xCC];
                v[0xAC..0xB0].copy_from_slice(&len.to_le_bytes());
                h.put(&key, "V", 3, &v);
            }
        }
        h
    }

    fn acb(h: &MemHive, rid: u32) -> u16 {
        let rid_key = format!("{rid:08X}");
        let key = [&SAM_USERS[..], &[rid_key.as_str()]].concat();
        let f = h.get(&key, "F").unwrap().data;
        u16::from_le_bytes([f[ACB_OFFSET], f[ACB_OFFSET + 1]])
    }

    #[test]
    fn accounts_outside_the_list_are_disabled() {
        let mut h = sam_hive(&[
            ("Administrator", 0x1f4, 0x0210, Some(0x38)),
            ("contoso-svc", 0x3e8, 0x0210, Some(0x38)),
            ("Guest", 0x1f5, 0x0215, None),
        ]);
        let policy = WindowsPolicy {
            accounts: vec!["CONTOSO-SVC".into()],
            ..Default::default()
        };
        check_sam(&h, &policy).unwrap();
        let changes = harden_sam(&mut h, &policy).unwrap();
        assert_eq!(changes, ["disabled account Administrator"]);
        assert_eq!(acb(&h, 0x1f4), 0x0211);
        assert_eq!(acb(&h, 0x3e8), 0x0210);
        assert_eq!(acb(&h, 0x1f5), 0x0215);
    }

    #[test]
    fn kept_account_without_password_rejected() {
        for hash in [None, Some(0), Some(4), Some(24)] {
            let h = sam_hive(&[("contoso-svc", 0x3e8, 0x0210, hash)]);
            let policy = WindowsPolicy {
                accounts: vec!["contoso-svc".into()],
                ..Default::default()
            };
            let err = check_sam(&h, &policy).unwrap_err().to_string();
            assert!(
                err.contains("contoso-svc") && err.contains("no password"),
                "{err}"
            );
        }
    }

    #[test]
    fn hosts_keeps_comments_and_blank_lines() {
        let hosts = b"# comment\r\n\r\n#\t127.0.0.1 localhost\r\n10.0.0.1 db\r\n  \r\n";
        let clean = clean_hosts(hosts).unwrap();
        assert_eq!(clean, b"# comment\r\n\r\n#\t127.0.0.1 localhost\r\n  \r\n");
        assert_eq!(clean_hosts(&clean), None);
    }

    #[test]
    fn answer_files_with_passwords_in_utf8_and_utf16() {
        let xml = "<unattend><AdministratorPassword><Value>x</Value></AdministratorPassword>";
        assert!(contains_credentials(xml.as_bytes()));
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(
                "<unattend><Password>"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        assert!(contains_credentials(&utf16));
        assert!(!contains_credentials(
            b"<unattend><ComputerName>x</ComputerName>"
        ));
        assert!(is_answer_file("Unattend.XML") && is_answer_file("autounattend.xml"));
        assert!(!is_answer_file("unattend.xml.bak"));
    }

    #[test]
    fn setup_complete_keeps_the_base_lines_first() {
        let cmds = vec!["C:\\App\\install.cmd /quiet".to_owned()];
        let new = setup_complete(None, &cmds);
        assert_eq!(
            String::from_utf8(new).unwrap(),
            format!("{SETUP_MARKER}\r\nC:\\App\\install.cmd /quiet\r\n")
        );
        let kept = setup_complete(Some(b"echo base"), &cmds);
        assert!(kept.starts_with(b"echo base\r\nrem Added by forge"));
    }

    #[test]
    fn free_cells_are_cleared_and_used_ones_kept() {
        let mut hive = vec![0u8; 8192];
        hive[..4].copy_from_slice(b"regf");
        hive[4096..4100].copy_from_slice(b"hbin");
        hive[4104..4108].copy_from_slice(&4096u32.to_le_bytes());
        let cells: [(i32, u8); 3] = [(-16, 0xAA), (32, 0xBB), (4096 - 32 - 48, 0xCC)];
        let mut at = 4096 + 32;
        for (size, fill) in cells {
            hive[at..at + 4].copy_from_slice(&size.to_le_bytes());
            let end = at + size.unsigned_abs() as usize;
            hive[at + 4..end].fill(fill);
            at = end;
        }
        let cleared = clear_free_cells(&mut hive).unwrap();
        assert_eq!(cleared, 28 + 4016 - 4);
        assert!(hive[4128 + 4..4128 + 16].iter().all(|b| *b == 0xAA));
        assert!(hive[4144 + 4..4144 + 32].iter().all(|b| *b == 0));
        assert!(hive[4176 + 4..8192].iter().all(|b| *b == 0));
        assert_eq!(hive[4144..4148], 32i32.to_le_bytes(), "sizes are kept");
        hive[4144..4148].copy_from_slice(&9000i32.to_le_bytes());
        assert!(clear_free_cells(&mut hive).is_err());
    }

    #[test]
    fn private_keys_are_found_by_name_and_content() {
        assert_eq!(extension("a.PFX").as_deref(), Some("pfx"));
        assert_eq!(extension("noext"), None);
        assert!(is_pem_private_key(b"-----BEGIN RSA PRIVATE KEY-----"));
        assert!(!is_pem_private_key(b"-----BEGIN CERTIFICATE-----"));
    }
}
