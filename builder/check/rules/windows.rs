//! Windows Server rules, read offline from the volume's files and its
//! SOFTWARE, SYSTEM and SAM hives. They are `not-applicable` on images
//! that are not Windows.

use anyhow::Result;

use super::winreg::{self, find_path, HiveName, Registry};
use crate::check::{ImageView, Outcome, Subject, WinBuild};

const CURRENT_VERSION: &str = r"Microsoft\Windows NT\CurrentVersion";
const AU_POLICY: &str = r"Policies\Microsoft\Windows\WindowsUpdate\AU";
const WINLOGON: &str = r"Microsoft\Windows NT\CurrentVersion\Winlogon";
const SAM_USERS: &str = r"SAM\Domains\Account\Users";
const SERVER_COMPONENTS: &str = r"Microsoft\ServerManager\ServicingStorage\ServerComponentCache";
const MACHINE_PERSONAL_STORE: &str = r"Microsoft\SystemCertificates\MY\Certificates";
const TS_POLICY: &str = r"Policies\Microsoft\Windows NT\Terminal Services";
const SETUP_STATE: &str = r"Microsoft\Windows\CurrentVersion\Setup\State";
const GENERALIZED_STATE: &str = "IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE";
const CBS_PACKAGES: &str = r"Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages";
/// `CurrentState` of a servicing package that is installed.
const PACKAGE_INSTALLED: u32 = 0x70;

/// Windows Server releases by build number.
const SERVER_BUILDS: &[(u32, &str)] = &[
    (14393, "Windows Server 2016"),
    (17763, "Windows Server 2019"),
    (20348, "Windows Server 2022"),
    (25398, "Windows Server 23H2"),
    (26100, "Windows Server 2025"),
];

/// Services of the Azure guest agent.
pub const AGENT_SERVICES: &[&str] = &["WindowsAzureGuestAgent", "RdAgent"];

/// User names nothing may depend on.
const RESERVED_NAMES: &[&str] = &["administrator", "admin", "root"];

/// Services forge rejects, whatever the recipe's settings.
pub const DENIED_SERVICES: &[&str] = &["TlntSvr", "simptcp", "tftpd"];
/// Roles and features forge rejects, whatever the recipe's settings.
pub const DENIED_FEATURES: &[&str] = &["FS-SMB1", "Telnet-Client", "TFTP-Client", "Simple-TCPIP"];

/// Folders whose files are logs, relative to the volume root.
pub const LOG_FOLDERS: &[&str] = &[
    "/Windows/Logs",
    "/Windows/Temp",
    "/WindowsAzure/Logs",
    "/inetpub/logs",
];
/// Folders whose `*.log` and `*.etl` files are setup logs.
pub const PANTHER_FOLDERS: &[&str] = &["/Windows/Panther", "/Windows/System32/Sysprep/Panther"];
/// Folders where Windows setup looks for answer files.
pub const ANSWER_FILE_FOLDERS: &[&str] = &[
    "/",
    "/Windows/Panther",
    "/Windows/Panther/Unattend",
    "/Windows/System32/Sysprep",
];
/// Names of answer files, compared without regard to case.
pub const ANSWER_FILE_NAMES: &[&str] = &["unattend.xml", "autounattend.xml"];
/// The hosts file.
pub const HOSTS: &str = "/Windows/System32/drivers/etc/hosts";
/// The script Windows runs once setup completes on a deployed image.
pub const SETUP_COMPLETE: &str = "/Windows/Setup/Scripts/SetupComplete.cmd";

/// Returns the volume of a Windows image, or the outcome that a Windows
/// rule gives when there is none.
fn windows_tree_of<'a>(s: &Subject<'a>) -> std::result::Result<&'a dyn ImageView, Outcome> {
    if s.os.family != "windows" {
        let family = if s.os.family.is_empty() {
            "unknown"
        } else {
            s.os.family.as_str()
        };
        return Err(Outcome::not_applicable(format!(
            "the image OS family is {family}, not windows"
        )));
    }
    s.fs.ok_or_else(|| {
        Outcome::not_run("no Windows volume was mounted, so its files could not be checked")
    })
}

macro_rules! windows_tree {
    ($subject:expr) => {
        match windows_tree_of($subject) {
            Ok(fs) => fs,
            Err(outcome) => return Ok(outcome),
        }
    };
}

/// Evaluates to the control set, or returns `not-run` when the SYSTEM hive
/// does not name one.
macro_rules! control_set {
    ($reg:expr) => {
        match $reg.control_set()? {
            Some(cs) if $reg.key_exists(HiveName::System, &cs)? => cs,
            Some(cs) => {
                return Ok(Outcome::not_run(format!(
                    "the SYSTEM hive's Select\\Current names {cs}, which does not exist"
                )))
            }
            None => {
                return Ok(Outcome::not_run(
                    "the SYSTEM hive is missing or has no Select\\Current value",
                ))
            }
        }
    };
}

/// Returns whether `account` (`NAME`, `DOMAIN\NAME`, `.\NAME` or
/// `NAME@DOMAIN`) names a reserved user.
fn is_reserved(account: &str) -> bool {
    let name = account.rsplit('\\').next().unwrap_or(account);
    let name = name.split('@').next().unwrap_or(name).trim();
    RESERVED_NAMES.iter().any(|r| name.eq_ignore_ascii_case(r))
}

fn contains_ignore_case(list: &[String], name: &str) -> bool {
    list.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Reads a text file that may be UTF-16 (with a byte order mark) or UTF-8.
pub fn decode_text(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xff, 0xfe]) {
        return utf16_text_all(rest);
    }
    if bytes.len() >= 2 && bytes[1] == 0 && bytes[0] != 0 {
        return utf16_text_all(bytes);
    }
    let bytes = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn utf16_text_all(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Parses the build number and update build revision of the SOFTWARE hive.
fn os_build(reg: &Registry) -> Result<Option<WinBuild>> {
    let build = reg
        .text(HiveName::Software, CURRENT_VERSION, "CurrentBuildNumber")?
        .or(reg.text(HiveName::Software, CURRENT_VERSION, "CurrentBuild")?);
    let Some(build) = build.and_then(|b| b.trim().parse().ok()) else {
        return Ok(None);
    };
    let ubr = reg
        .dword(HiveName::Software, CURRENT_VERSION, "UBR")?
        .unwrap_or(0);
    Ok(Some(WinBuild { build, ubr }))
}

/// Checks `win-azure-base`: a Windows Server edition and build in the
/// SOFTWARE hive, and the Azure guest agent's services.
pub fn azure_base(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    if !reg.has(HiveName::Software)? {
        return Ok(Outcome::fail(format!(
            "{}/SOFTWARE is missing",
            winreg::CONFIG_DIR
        )));
    }
    let text = |name: &str| reg.text(HiveName::Software, CURRENT_VERSION, name);
    let product = text("ProductName")?.unwrap_or_default();
    let edition = text("EditionID")?.unwrap_or_default();
    let installation = text("InstallationType")?.unwrap_or_default();
    let build = os_build(&reg)?;
    let mut problems = Vec::new();
    let is_server = installation.to_ascii_lowercase().starts_with("server")
        || edition.to_ascii_lowercase().starts_with("server");
    if !is_server {
        problems.push(format!(
            "EditionID {edition:?} and InstallationType {installation:?} are not a Windows Server \
             edition"
        ));
    }
    let release = build.and_then(|b| SERVER_BUILDS.iter().find(|(n, _)| *n == b.build));
    match (build, release) {
        (None, _) => problems.push("CurrentBuildNumber is missing".to_owned()),
        (Some(b), None) => problems.push(format!(
            "build {} is not a Windows Server release forge knows ({})",
            b.build,
            SERVER_BUILDS
                .iter()
                .map(|(n, name)| format!("{n} {name}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => {}
    }
    let cs = control_set!(reg);
    let mut agent = Vec::new();
    for service in AGENT_SERVICES {
        if reg.key_exists(HiveName::System, &format!(r"{cs}\Services\{service}"))? {
            agent.push(*service);
        } else {
            problems.push(format!(
                "the Azure guest agent service {service} is not installed (SYSTEM {cs}\\Services)"
            ));
        }
    }
    let seen = format!(
        "{product:?}, EditionID {edition}, build {}{}",
        build.map(|b| b.to_string()).unwrap_or_default(),
        release.map(|(_, r)| format!(" ({r})")).unwrap_or_default()
    );
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "{seen}; guest agent services {}",
            agent.join(", ")
        )))
    } else {
        Ok(Outcome::fail(format!("{seen}: {}", problems.join("; "))))
    }
}

/// Returns the newest installed cumulative update package of the
/// servicing store, as its build and revision and its name.
fn newest_rollup(reg: &Registry) -> Result<Option<(WinBuild, String)>> {
    let mut newest: Option<(WinBuild, String)> = None;
    for name in reg
        .subkeys(HiveName::Software, CBS_PACKAGES)?
        .unwrap_or_default()
    {
        if !name
            .to_ascii_lowercase()
            .starts_with("package_for_rollupfix")
        {
            continue;
        }
        let key = format!(r"{CBS_PACKAGES}\{name}");
        if reg.dword(HiveName::Software, &key, "CurrentState")? != Some(PACKAGE_INSTALLED) {
            continue;
        }
        // The version is the last field: 20348.2607.1.10.
        let version = name.rsplit('~').next().unwrap_or_default();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
        let (Some(Some(build)), Some(Some(ubr))) = (parts.next(), parts.next()) else {
            continue;
        };
        let found = WinBuild { build, ubr };
        if newest.as_ref().is_none_or(|(n, _)| found > *n) {
            newest = Some((found, name));
        }
    }
    Ok(newest)
}

/// Checks `win-security-updates`: the build and update build revision
/// against the minimum the recipe pins.
pub fn security_updates(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let Some(seen) = os_build(&reg)? else {
        return Ok(Outcome::not_run(
            "the SOFTWARE hive has no CurrentBuildNumber, so the update level is unknown",
        ));
    };
    let offline = match newest_rollup(&reg)? {
        Some((build, name)) => format!(
            "the newest installed cumulative update package is {build} ({name}); offline, forge \
             cannot tell whether newer updates exist"
        ),
        None => "no cumulative update package is recorded as installed; offline, forge cannot \
                 tell whether newer updates exist"
            .to_owned(),
    };
    let Some(min) = s.policy.windows.min_build else {
        return Ok(Outcome::not_run(format!(
            "saw build {seen} (CurrentBuildNumber.UBR), but no minimum is pinned; set \
             min_build in the recipe's [windows] table and pass --recipe; {offline}"
        )));
    };
    let compared = format!(
        "saw build {seen} (CurrentBuildNumber.UBR) and compared it with the pinned minimum {min}"
    );
    if seen.build != min.build {
        let older = seen.build < min.build;
        let text = format!(
            "{compared}: the image is build {}, the pin names build {}",
            seen.build, min.build
        );
        return Ok(if older {
            Outcome::fail(text)
        } else {
            Outcome::pass(format!("{text}, a later release; {offline}"))
        });
    }
    if seen.ubr < min.ubr {
        Ok(Outcome::fail(format!(
            "{compared}: update revision {} is older than {}; install the security updates on \
             the VM and export the disk again",
            seen.ubr, min.ubr
        )))
    } else {
        Ok(Outcome::pass(format!("{compared}; {offline}")))
    }
}

/// Collects the `<UserId>` and `<GroupId>` entries of scheduled task files
/// under `dir`.
fn task_principals(fs: &dyn ImageView, dir: &str, out: &mut Vec<(String, String)>) -> Result<()> {
    for name in fs.list_dir(dir)? {
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        let Some(meta) = fs.lstat(&path)? else {
            continue;
        };
        match meta.kind {
            crate::check::FileKind::Dir => task_principals(fs, &path, out)?,
            crate::check::FileKind::File => {
                let Some(bytes) = fs.read(&path)? else {
                    continue;
                };
                let text = decode_text(&bytes);
                for tag in ["UserId", "GroupId"] {
                    let open = format!("<{tag}>");
                    let close = format!("</{tag}>");
                    let mut rest = text.as_str();
                    while let Some(start) = rest.find(&open) {
                        rest = &rest[start + open.len()..];
                        let Some(end) = rest.find(&close) else {
                            break;
                        };
                        out.push((path.clone(), rest[..end].trim().to_owned()));
                        rest = &rest[end..];
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks `win-no-reserved-usernames`: service accounts, scheduled task
/// principals and the auto-logon user.
pub fn no_reserved_usernames(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let cs = control_set!(reg);
    let mut found = Vec::new();
    let services_key = format!(r"{cs}\Services");
    let services = reg
        .subkeys(HiveName::System, &services_key)?
        .unwrap_or_default();
    let mut accounts = 0;
    for service in &services {
        let key = format!(r"{services_key}\{service}");
        if let Some(account) = reg.text(HiveName::System, &key, "ObjectName")? {
            accounts += 1;
            if is_reserved(&account) {
                found.push(format!("service {service} runs as {account:?}"));
            }
        }
    }
    let mut principals = Vec::new();
    if let Some(tasks) = find_path(fs, "/Windows/System32/Tasks")? {
        task_principals(fs, &tasks, &mut principals)?;
    }
    for (path, user) in &principals {
        if is_reserved(user) {
            found.push(format!("scheduled task {path} runs as {user:?}"));
        }
    }
    let mut local = 0;
    if let Ok(Some(accounts)) = sam_accounts(&reg) {
        local = accounts.len();
        for a in accounts {
            if a.flags & ACB_DISABLED == 0 && is_reserved(&a.name) {
                found.push(format!(
                    "the enabled local account {} has a reserved name",
                    a.name
                ));
            }
        }
    }
    let logon = reg.text(HiveName::Software, WINLOGON, "AutoAdminLogon")?;
    let auto_logon = logon.as_deref().is_some_and(|v| v.trim() == "1");
    if auto_logon {
        for name in ["DefaultUserName", "AltDefaultUserName"] {
            if let Some(user) = reg.text(HiveName::Software, WINLOGON, name)? {
                if is_reserved(&user) {
                    found.push(format!("auto-logon is on with {name} {user:?}"));
                }
            }
        }
    }
    let looked = format!(
        "service accounts in {cs}\\Services: {accounts}, scheduled task principals: {}, enabled \
         local accounts among {local}, auto-logon {}",
        principals.len(),
        if auto_logon { "on" } else { "off" }
    );
    if found.is_empty() {
        Ok(Outcome::pass(format!(
            "nothing uses administrator, admin or root; looked at {looked}"
        )))
    } else {
        Ok(Outcome::fail(format!(
            "{}; looked at {looked}",
            found.join("; ")
        )))
    }
}

/// One local account of the SAM hive.
#[derive(Debug)]
pub struct Account {
    pub name: String,
    pub rid: u32,
    /// The ACB flags of the F value.
    pub flags: u16,
    /// Whether the V value contains an NT password hash.
    pub has_password: bool,
}

/// ACB flag: the account is disabled.
pub const ACB_DISABLED: u16 = 0x0001;
/// ACB flag: the account needs no password.
pub const ACB_PASSWORD_NOT_REQUIRED: u16 = 0x0004;

/// Reads the local accounts of the SAM hive; `None` when there is no SAM.
pub fn sam_accounts(reg: &Registry) -> Result<Option<Vec<Account>>> {
    let Some(names) = reg.subkeys(HiveName::Sam, &format!(r"{SAM_USERS}\Names"))? else {
        return Ok(None);
    };
    let mut accounts = Vec::new();
    for name in names {
        let key = format!(r"{SAM_USERS}\Names\{name}");
        // The type of the default value is the account's RID.
        let Some(rid) = reg.value(HiveName::Sam, &key, "")?.map(|v| v.kind) else {
            anyhow::bail!("SAM {key} has no default value holding the RID");
        };
        let user = format!(r"{SAM_USERS}\{rid:08X}");
        let f = reg.value(HiveName::Sam, &user, "F")?.map(|v| v.data);
        let Some(f) = f.filter(|f| f.len() >= 0x3a) else {
            anyhow::bail!("SAM {user} has no F value with account flags");
        };
        let flags = u16::from_le_bytes([f[0x38], f[0x39]]);
        let v = reg
            .value(HiveName::Sam, &user, "V")?
            .map(|v| v.data)
            .unwrap_or_default();
        accounts.push(Account {
            name,
            rid,
            flags,
            has_password: nt_hash_present(&v),
        });
    }
    Ok(Some(accounts))
}

/// Returns whether a SAM V value contains an NT hash. The entry's length
/// sits at 0xAC: 0 or 4 (the RC4 form's header alone) or 24 (the AES
/// form's header and salt alone) mean no password is set.
pub fn nt_hash_present(v: &[u8]) -> bool {
    let Some(len) = v.get(0xac..0xb0) else {
        return false;
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
    !matches!(len, 0 | 4 | 24)
}

/// Checks `win-accounts-locked`: every local account in the SAM hive is
/// disabled, unless the product needs it, and none needs no password.
pub fn accounts_locked(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let Some(accounts) = sam_accounts(&reg)? else {
        return Ok(Outcome::not_run(format!(
            "{}/SAM has no {SAM_USERS}\\Names key, so the local accounts are unknown",
            winreg::CONFIG_DIR
        )));
    };
    let needed = &s.policy.windows.accounts;
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for a in &accounts {
        let enabled = a.flags & ACB_DISABLED == 0;
        seen.push(format!(
            "{} (RID {}) {}",
            a.name,
            a.rid,
            if enabled { "enabled" } else { "disabled" }
        ));
        if !enabled {
            continue;
        }
        if !contains_ignore_case(needed, &a.name) {
            problems.push(format!(
                "{} is enabled, and no [windows] accounts list of the recipe or the image names it",
                a.name
            ));
        }
        if !a.has_password {
            problems.push(format!("{} is enabled with a blank password", a.name));
        } else if a.flags & ACB_PASSWORD_NOT_REQUIRED != 0 {
            problems.push(format!("{} is enabled and needs no password", a.name));
        }
    }
    let seen = seen.join(", ");
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "{seen}; blank passwords are found from the stored hash length, the passwords \
             themselves are not compared"
        )))
    } else {
        Ok(Outcome::fail(format!(
            "{}; accounts: {seen}",
            problems.join("; ")
        )))
    }
}

/// Checks `win-bitlocker`: no partition is encrypted at capture, and the
/// way BitLocker is turned on after deployment.
pub fn bitlocker(s: &Subject) -> Result<Outcome> {
    let encrypted: Vec<String> = s
        .disk
        .partitions
        .iter()
        .filter(|p| {
            p.fs_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("bitlocker"))
        })
        .map(|p| format!("partition {}", p.number))
        .collect();
    // An encrypted C: hides the OS, so an encrypted partition fails the
    // rule even when no OS was found.
    let unknown_os = s.os.family.is_empty() || s.fs.is_none();
    if !encrypted.is_empty() && (s.os.family == "windows" || unknown_os) {
        return Ok(Outcome::fail(format!(
            "{} BitLocker-encrypted; certification rejects an OS VHD encrypted at capture, so \
             decrypt it (manage-bde -off) before exporting and encrypt after deployment",
            encrypted.join(", ")
        )));
    }
    let fs = windows_tree!(s);
    let volumes = s
        .disk
        .partitions
        .iter()
        .filter_map(|p| p.fs_type.as_deref().map(|t| format!("{} {t}", p.number)))
        .collect::<Vec<_>>()
        .join(", ");
    let plan = s.policy.windows.bitlocker.as_deref();
    if plan == Some("first-boot") {
        let script = match find_path(fs, SETUP_COMPLETE)? {
            Some(path) => fs.read_text(&path)?.unwrap_or_default(),
            None => String::new(),
        };
        if !script.to_ascii_lowercase().contains("manage-bde -on") {
            return Ok(Outcome::fail(format!(
                "the recipe turns BitLocker on at first boot, but {SETUP_COMPLETE} has no \
                 manage-bde -on command"
            )));
        }
        return Ok(Outcome::pass(format!(
            "no partition is encrypted at capture (partitions {volumes}); {SETUP_COMPLETE} turns \
             BitLocker on at first boot with manage-bde, which needs a VM with a virtual TPM"
        )));
    }
    Ok(Outcome::pass(format!(
        "no partition is encrypted at capture (partitions {volumes}); encrypt the OS and data \
         disks at deployment with Azure Disk Encryption"
    )))
}

/// Checks `win-minimal-footprint`: installed roles and features, and
/// services that start on their own, against the denylist.
pub fn minimal_footprint(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let cs = control_set!(reg);
    let deny = &s.policy.windows.deny;
    let denied = |name: &str, builtin: &[&str]| {
        builtin.iter().any(|d| d.eq_ignore_ascii_case(name)) || contains_ignore_case(deny, name)
    };
    let mut problems = Vec::new();
    let mut installed = 0;
    for feature in reg
        .subkeys(HiveName::Software, SERVER_COMPONENTS)?
        .unwrap_or_default()
    {
        let key = format!(r"{SERVER_COMPONENTS}\{feature}");
        if reg.dword(HiveName::Software, &key, "InstallState")? == Some(1) {
            installed += 1;
            if denied(&feature, DENIED_FEATURES) {
                problems.push(format!("feature {feature} is installed"));
            }
        }
    }
    let services_key = format!(r"{cs}\Services");
    let mut enabled = 0;
    for service in reg
        .subkeys(HiveName::System, &services_key)?
        .unwrap_or_default()
    {
        let key = format!(r"{services_key}\{service}");
        let start = reg.dword(HiveName::System, &key, "Start")?;
        if start.is_none_or(|n| n > 2) {
            continue;
        }
        enabled += 1;
        if denied(&service, DENIED_SERVICES) {
            problems.push(format!(
                "service {service} starts on its own (Start {})",
                start.unwrap_or_default()
            ));
        }
    }
    let mut list: Vec<&str> = DENIED_SERVICES
        .iter()
        .chain(DENIED_FEATURES)
        .copied()
        .collect();
    list.extend(deny.iter().map(String::as_str));
    let looked = format!(
        "{installed} roles and features installed ({SERVER_COMPONENTS}), {enabled} services \
         that start on their own ({cs}\\Services); denylist {}",
        list.join(", ")
    );
    if problems.is_empty() {
        Ok(Outcome::pass(format!("{looked}; none is on it")))
    } else {
        Ok(Outcome::fail(format!("{}; {looked}", problems.join("; "))))
    }
}

/// Checks `win-malware-scan` with ClamAV, as for Linux.
pub fn malware_scan(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    super::malware::scan_view(s, fs)
}

/// Checks `win-auto-update`: the Windows Update policy values are DWORDs
/// that turn automatic updates on, and the service is not disabled.
pub fn auto_update(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let cs = control_set!(reg);
    let no_auto = reg.value(HiveName::Software, AU_POLICY, "NoAutoUpdate")?;
    let options = reg.value(HiveName::Software, AU_POLICY, "AUOptions")?;
    let mut problems = Vec::new();
    match no_auto.as_ref().map(|v| v.dword()) {
        Some(Some(0)) => {}
        None => problems.push("NoAutoUpdate is absent".to_owned()),
        Some(Some(_)) => problems.push("NoAutoUpdate turns automatic updates off".to_owned()),
        Some(None) => problems.push(
            "NoAutoUpdate is not a REG_DWORD, and Windows ignores a policy value of another type"
                .to_owned(),
        ),
    }
    match options.as_ref().map(|v| v.dword()) {
        Some(Some(4)) => {}
        None => problems.push(
            "AUOptions is absent, so Windows may only notify; set it to 4 (download and install \
             on a schedule)"
                .to_owned(),
        ),
        Some(Some(n)) => problems.push(format!(
            "AUOptions {n} does not install updates automatically; 4 does"
        )),
        Some(None) => problems.push(
            "AUOptions is not a REG_DWORD, and Windows ignores a policy value of another type"
                .to_owned(),
        ),
    }
    let service = format!(r"{cs}\Services\wuauserv");
    let start = reg.dword(HiveName::System, &service, "Start")?;
    if start == Some(4) {
        problems.push("the Windows Update service wuauserv is disabled (Start 4)".to_owned());
    }
    let seen = format!(
        "SOFTWARE\\{AU_POLICY}: NoAutoUpdate {}, AUOptions {}; wuauserv Start {}",
        winreg::describe(no_auto.as_ref()),
        winreg::describe(options.as_ref()),
        start.map_or_else(|| "absent".to_owned(), |n| n.to_string())
    );
    if problems.is_empty() {
        Ok(Outcome::pass(seen))
    } else {
        Ok(Outcome::fail(format!("{}; {seen}", problems.join("; "))))
    }
}

/// One rule of the Windows firewall's registry list.
#[derive(Debug)]
pub struct FirewallRule {
    /// The registry value name.
    pub id: String,
    /// The rule text, `v2.31|Action=Allow|Active=TRUE|Dir=In|...|`.
    pub text: String,
}

impl FirewallRule {
    /// Returns the first value of `field`, compared without regard to case.
    pub fn field(&self, field: &str) -> Option<&str> {
        self.text.split('|').find_map(|part| {
            let (key, value) = part.split_once('=')?;
            key.eq_ignore_ascii_case(field).then_some(value)
        })
    }

    fn is(&self, field: &str, value: &str) -> bool {
        self.field(field)
            .is_some_and(|v| v.eq_ignore_ascii_case(value))
    }

    /// Returns whether the rule is active and lets inbound traffic in.
    pub fn is_active_inbound_allow(&self) -> bool {
        self.is("Action", "Allow") && self.is("Dir", "In") && self.is("Active", "TRUE")
    }

    /// Returns whether this is a Remote Desktop rule, which `win-rdp-enabled` needs.
    pub fn is_remote_desktop(&self) -> bool {
        self.id.to_ascii_lowercase().starts_with("remotedesktop-") || self.is("LPort", "3389")
    }

    /// Whether the product declares this rule as needed.
    pub fn is_declared(&self, allow: &[String]) -> bool {
        contains_ignore_case(allow, &self.id)
            || self
                .field("Name")
                .is_some_and(|name| contains_ignore_case(allow, name))
    }
}

/// Registry key of the firewall rules, below the control set.
pub const FIREWALL_RULES: &str = r"Services\SharedAccess\Parameters\FirewallPolicy\FirewallRules";

/// Reads the firewall rules of the control set.
pub fn firewall_rules(reg: &Registry, cs: &str) -> Result<Vec<FirewallRule>> {
    let key = format!(r"{cs}\{FIREWALL_RULES}");
    Ok(reg
        .values(HiveName::System, &key)?
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| {
            v.text().map(|text| FirewallRule {
                id: v.name.clone(),
                text,
            })
        })
        .collect())
}

/// Checks `win-firewall-rules`: every active inbound allow rule is Remote
/// Desktop or one the product declares.
pub fn firewall(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let cs = control_set!(reg);
    let rules = firewall_rules(&reg, &cs)?;
    let allow = &s.policy.windows.firewall_allow;
    let active: Vec<&FirewallRule> = rules
        .iter()
        .filter(|r| r.is_active_inbound_allow())
        .collect();
    let (kept, extra): (Vec<&FirewallRule>, Vec<&FirewallRule>) = active
        .iter()
        .partition(|r| r.is_remote_desktop() || r.is_declared(allow));
    let names = |rules: &[&FirewallRule]| {
        rules
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let seen = format!(
        "rules in {cs}\\{FIREWALL_RULES}: {}, active inbound allow rules: {}",
        rules.len(),
        active.len()
    );
    if extra.is_empty() {
        let kept = if kept.is_empty() {
            String::new()
        } else {
            format!("; needed: {}", names(&kept))
        };
        Ok(Outcome::pass(format!("{seen}{kept}")))
    } else {
        Ok(Outcome::fail(format!(
            "active inbound allow rules that neither Remote Desktop nor the recipe's [windows] \
             firewall_allow needs: {}; {seen}",
            names(&extra)
        )))
    }
}

/// A file or registry key that `win-sensitive-files-removed` objects to.
#[derive(Debug, PartialEq, Eq)]
pub struct Sensitive {
    pub path: String,
    pub why: &'static str,
}

/// Returns whether `text` has a line that is neither blank nor a comment.
pub fn hosts_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Returns whether an answer file's text holds a credential.
pub fn answer_file_has_credentials(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("<password") || lower.contains("<administratorpassword")
}

fn collect_files(fs: &dyn ImageView, dir: &str, out: &mut Vec<String>) -> Result<()> {
    for name in fs.list_dir(dir)? {
        let path = format!("{}/{name}", dir.trim_end_matches('/'));
        match fs.lstat(&path)?.map(|m| m.kind) {
            Some(crate::check::FileKind::Dir) => collect_files(fs, &path, out)?,
            Some(_) => out.push(path),
            None => {}
        }
    }
    Ok(())
}

/// Lists what `win-sensitive-files-removed` objects to: hosts entries,
/// answer files with credentials, logs, private keys and certificates in
/// the machine's personal store.
pub fn sensitive_items(fs: &dyn ImageView, reg: &Registry) -> Result<Vec<Sensitive>> {
    let mut out = Vec::new();
    if let Some(hosts) = find_path(fs, HOSTS)? {
        let text = decode_text(&fs.read(&hosts)?.unwrap_or_default());
        if !hosts_entries(&text).is_empty() {
            out.push(Sensitive {
                path: hosts,
                why: "has host entries",
            });
        }
    }
    for folder in ANSWER_FILE_FOLDERS {
        let Some(folder) = find_path(fs, folder)? else {
            continue;
        };
        for name in fs.list_dir(&folder)? {
            if !ANSWER_FILE_NAMES
                .iter()
                .any(|n| n.eq_ignore_ascii_case(&name))
            {
                continue;
            }
            let path = format!("{}/{name}", folder.trim_end_matches('/'));
            if let Some(bytes) = fs.read(&path)? {
                if answer_file_has_credentials(&decode_text(&bytes)) {
                    out.push(Sensitive {
                        path,
                        why: "is an answer file with credentials",
                    });
                }
            }
        }
    }
    for folder in LOG_FOLDERS {
        if let Some(folder) = find_path(fs, folder)? {
            let mut files = Vec::new();
            collect_files(fs, &folder, &mut files)?;
            out.extend(files.into_iter().map(|path| Sensitive {
                path,
                why: "is a log or temporary file",
            }));
        }
    }
    for panther in PANTHER_FOLDERS {
        let Some(panther) = find_path(fs, panther)? else {
            continue;
        };
        for name in fs.list_dir(&panther)? {
            let lower = name.to_ascii_lowercase();
            let path = format!("{panther}/{name}");
            let is_file = fs
                .lstat(&path)?
                .is_some_and(|m| m.kind == crate::check::FileKind::File);
            if is_file && (lower.ends_with(".log") || lower.ends_with(".etl")) {
                out.push(Sensitive {
                    path,
                    why: "is a setup log",
                });
            }
        }
    }
    if let Some(password) = reg.value(HiveName::Software, WINLOGON, "DefaultPassword")? {
        if !password.data.iter().all(|&b| b == 0) {
            out.push(Sensitive {
                path: format!(r"HKLM\SOFTWARE\{WINLOGON}\DefaultPassword"),
                why: "is a stored logon password",
            });
        }
    }
    out.extend(private_keys(fs)?);
    for thumbprint in reg
        .subkeys(HiveName::Software, MACHINE_PERSONAL_STORE)?
        .unwrap_or_default()
    {
        out.push(Sensitive {
            path: format!(r"HKLM\SOFTWARE\{MACHINE_PERSONAL_STORE}\{thumbprint}"),
            why: "is a certificate in the machine's personal store",
        });
    }
    Ok(out)
}

/// Returns whether a file at `lower` (a lower-case path) is read to see
/// whether it holds a PEM private key: PEM-style extensions, and every file
/// in an `ssh` or `.ssh` folder, where OpenSSH keeps its keys without one.
pub fn may_hold_private_key(lower: &str) -> bool {
    let in_ssh_folder = lower
        .rsplit('/')
        .nth(1)
        .is_some_and(|dir| dir == "ssh" || dir == ".ssh");
    in_ssh_folder
        || [".pem", ".key", ".crt", ".cer"]
            .iter()
            .any(|e| lower.ends_with(e))
}

/// Finds private-key files outside `/Windows`: PKCS #12 and PVK files,
/// and PEM files that hold a private key.
fn private_keys(fs: &dyn ImageView) -> Result<Vec<Sensitive>> {
    let mut out = Vec::new();
    let mut pem = Vec::new();
    for entry in fs.walk()? {
        if entry.meta.kind != crate::check::FileKind::File {
            continue;
        }
        let lower = entry.path.to_ascii_lowercase();
        if lower.starts_with("/windows/") {
            continue;
        }
        if [".pfx", ".p12", ".pvk"].iter().any(|e| lower.ends_with(e)) {
            out.push(Sensitive {
                path: entry.path,
                why: "is a private key file",
            });
        } else if may_hold_private_key(&lower) && entry.meta.size <= 1 << 20 {
            pem.push(entry.path);
        }
    }
    for (path, bytes) in fs.read_many(&pem)? {
        if String::from_utf8_lossy(&bytes).contains("PRIVATE KEY-----") {
            out.push(Sensitive {
                path,
                why: "holds a private key",
            });
        }
    }
    Ok(out)
}

/// Checks `win-sensitive-files-removed`.
pub fn sensitive_files(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let items = sensitive_items(fs, &reg)?;
    if items.is_empty() {
        return Ok(Outcome::pass(format!(
            "no entries in {HOSTS}; no answer file with credentials in {}; no files in {} or \
             logs in {}; no stored logon password; no private key file outside /Windows; no certificate in the \
             machine's personal store",
            ANSWER_FILE_FOLDERS.join(", "),
            LOG_FOLDERS.join(", "),
            PANTHER_FOLDERS.join(" or ")
        )));
    }
    let shown: Vec<String> = items
        .iter()
        .take(20)
        .map(|i| format!("{} {}", i.path, i.why))
        .collect();
    let more = items.len().saturating_sub(shown.len());
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    Ok(Outcome::fail(format!("{}{more}", shown.join("; "))))
}

/// Reads the machine type and optional header magic of a PE image.
fn pe_kind(header: &[u8]) -> Option<(u16, u16)> {
    if header.get(..2) != Some(b"MZ") {
        return None;
    }
    let at = u32::from_le_bytes(header.get(0x3c..0x40)?.try_into().ok()?) as usize;
    if header.get(at..at + 4)? != b"PE\0\0" {
        return None;
    }
    let machine = u16::from_le_bytes(header.get(at + 4..at + 6)?.try_into().ok()?);
    let magic = u16::from_le_bytes(header.get(at + 24..at + 26)?.try_into().ok()?);
    Some((machine, magic))
}

/// Checks `win-64bit`: the processor architecture in the SYSTEM hive and
/// the PE header of the kernel.
pub fn is_64bit(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let cs = control_set!(reg);
    let mut problems = Vec::new();
    let env = format!(r"{cs}\Control\Session Manager\Environment");
    let arch = reg.text(HiveName::System, &env, "PROCESSOR_ARCHITECTURE")?;
    match arch.as_deref() {
        Some(a) if a.eq_ignore_ascii_case("AMD64") || a.eq_ignore_ascii_case("ARM64") => {}
        Some(a) => problems.push(format!("PROCESSOR_ARCHITECTURE is {a}")),
        None => problems.push(format!("SYSTEM {env} has no PROCESSOR_ARCHITECTURE")),
    }
    let kernel = find_path(fs, "/Windows/System32/ntoskrnl.exe")?;
    let kind = match &kernel {
        Some(path) => pe_kind(&fs.read_at(path, 0, 4096)?),
        None => None,
    };
    let kernel_text = match (kernel.as_deref(), kind) {
        (None, _) => {
            problems.push("/Windows/System32/ntoskrnl.exe is missing".to_owned());
            "no kernel".to_owned()
        }
        (Some(path), None) => {
            problems.push(format!("{path} has no PE header"));
            format!("{path} unreadable")
        }
        (Some(path), Some((machine, magic))) => {
            let machine_name = match machine {
                0x8664 => "x86-64",
                0xaa64 => "ARM64",
                0x014c => "i386",
                _ => "other",
            };
            if !matches!(machine, 0x8664 | 0xaa64) || magic != 0x20b {
                problems.push(format!(
                    "{path} is not a 64-bit image (machine {machine:#06x} {machine_name}, \
                     optional header magic {magic:#x})"
                ));
            }
            format!("{path} PE32+ {machine_name}")
        }
    };
    let seen = format!(
        "PROCESSOR_ARCHITECTURE {}; {kernel_text}",
        arch.as_deref().unwrap_or("absent")
    );
    if problems.is_empty() {
        Ok(Outcome::pass(seen))
    } else {
        Ok(Outcome::fail(format!("{}; {seen}", problems.join("; "))))
    }
}

/// Checks `win-generalized`: sysprep generalized the image and sealed it
/// to the out-of-box experience.
pub fn generalized(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    if !reg.has(HiveName::System)? {
        return Ok(Outcome::not_run(format!(
            "{}/SYSTEM is missing, so the sysprep state is unknown",
            winreg::CONFIG_DIR
        )));
    }
    let state = reg.dword(
        HiveName::System,
        r"Setup\Status\SysprepStatus",
        "GeneralizationState",
    )?;
    let mut image_state = reg.text(HiveName::Software, SETUP_STATE, "ImageState")?;
    if image_state.is_none() {
        if let Some(path) = find_path(fs, "/Windows/Setup/State/State.ini")? {
            let text = decode_text(&fs.read(&path)?.unwrap_or_default());
            image_state = text.lines().find_map(|l| {
                let (key, value) = l.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("ImageState")
                    .then(|| value.trim().to_owned())
            });
        }
    }
    let seen = format!(
        "GeneralizationState {}, ImageState {}",
        state.map_or_else(|| "absent".to_owned(), |n| n.to_string()),
        image_state.as_deref().unwrap_or("absent")
    );
    let generalized = state == Some(7);
    let sealed = image_state
        .as_deref()
        .is_none_or(|v| v.eq_ignore_ascii_case(GENERALIZED_STATE));
    if generalized && sealed {
        Ok(Outcome::pass(seen))
    } else {
        Ok(Outcome::fail(format!(
            "{seen}: the image is not generalized; run sysprep /generalize /oobe /shutdown on \
             the VM and export the disk after it stops"
        )))
    }
}

/// Checks `win-rdp-enabled`: Remote Desktop connections are allowed and
/// the service can start.
pub fn rdp_enabled(s: &Subject) -> Result<Outcome> {
    let fs = windows_tree!(s);
    let reg = Registry::new(fs);
    let cs = control_set!(reg);
    let mut problems = Vec::new();
    let ts = format!(r"{cs}\Control\Terminal Server");
    let deny = reg.value(HiveName::System, &ts, "fDenyTSConnections")?;
    if deny.as_ref().and_then(|v| v.dword()) != Some(0) {
        problems.push(format!(
            "fDenyTSConnections is {}, not REG_DWORD 0",
            winreg::describe(deny.as_ref())
        ));
    }
    let policy = reg.value(HiveName::Software, TS_POLICY, "fDenyTSConnections")?;
    if let Some(v) = &policy {
        if v.dword() != Some(0) {
            problems.push(format!(
                "the policy SOFTWARE\\{TS_POLICY} sets fDenyTSConnections to {}",
                winreg::describe(Some(v))
            ));
        }
    }
    let service = format!(r"{cs}\Services\TermService");
    let start = reg.dword(HiveName::System, &service, "Start")?;
    match start {
        None => problems.push(format!(
            "the Remote Desktop service TermService is not installed ({cs}\\Services)"
        )),
        Some(4) => problems.push("the Remote Desktop service TermService is disabled".to_owned()),
        Some(_) => {}
    }
    let seen = format!(
        "{cs}\\Control\\Terminal Server fDenyTSConnections {}, TermService Start {}",
        winreg::describe(deny.as_ref()),
        start.map_or_else(|| "absent".to_owned(), |n| n.to_string())
    );
    if problems.is_empty() {
        Ok(Outcome::pass(seen))
    } else {
        Ok(Outcome::fail(format!("{}; {seen}", problems.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_in_every_spelling() {
        for account in [
            "Administrator",
            r".\administrator",
            r"CONTOSO\Admin",
            "root@contoso.example",
            " ROOT ",
        ] {
            assert!(is_reserved(account), "{account}");
        }
        for account in [
            "LocalSystem",
            r"NT AUTHORITY\NetworkService",
            "S-1-5-18",
            "administrators",
            "contoso-admin",
        ] {
            assert!(!is_reserved(account), "{account}");
        }
    }

    #[test]
    fn hosts_comments_are_not_entries() {
        let text = "# 127.0.0.1 localhost\r\n\r\n   # ::1 localhost\r\n";
        assert!(hosts_entries(text).is_empty());
        let text = "# sample\r\n10.0.0.1 cache # build\r\n";
        assert_eq!(hosts_entries(text), ["10.0.0.1 cache"]);
    }

    #[test]
    fn utf16_files_decode() {
        let mut bytes = vec![0xff, 0xfe];
        for unit in "<UserId>S-1-5-18</UserId>".encode_utf16() {
            bytes.extend(unit.to_le_bytes());
        }
        assert_eq!(decode_text(&bytes), "<UserId>S-1-5-18</UserId>");
        assert_eq!(decode_text(b"\xef\xbb\xbfplain"), "plain");
    }

    #[test]
    fn firewall_rule_fields() {
        let rule = FirewallRule {
            id: "WINRM-HTTP-In-TCP".to_owned(),
            text: "v2.31|Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=5985|Name=Contoso|"
                .to_owned(),
        };
        assert!(rule.is_active_inbound_allow());
        assert!(!rule.is_remote_desktop());
        assert!(rule.is_declared(&["contoso".to_owned()]));
        assert!(rule.is_declared(&["winrm-http-in-tcp".to_owned()]));
        assert!(!rule.is_declared(&["other".to_owned()]));
        let off = FirewallRule {
            id: "x".to_owned(),
            text: "v2.31|Action=Allow|Active=FALSE|Dir=In|".to_owned(),
        };
        assert!(!off.is_active_inbound_allow());
    }

    #[test]
    fn nt_hash_lengths() {
        let mut v = vec![0u8; 0xcc];
        for (len, present) in [
            (0u32, false),
            (4, false),
            (24, false),
            (20, true),
            (56, true),
        ] {
            v[0xac..0xb0].copy_from_slice(&len.to_le_bytes());
            assert_eq!(nt_hash_present(&v), present, "{len}");
        }
        assert!(!nt_hash_present(&[0u8; 16]));
    }

    #[test]
    fn pe_headers() {
        let mut image = vec![0u8; 512];
        image[..2].copy_from_slice(b"MZ");
        image[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        image[0x40..0x44].copy_from_slice(b"PE\0\0");
        image[0x44..0x46].copy_from_slice(&0x8664u16.to_le_bytes());
        image[0x58..0x5a].copy_from_slice(&0x20bu16.to_le_bytes());
        assert_eq!(pe_kind(&image), Some((0x8664, 0x20b)));
        assert_eq!(pe_kind(b"\x7fELF"), None);
    }
}
