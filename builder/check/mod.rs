//! The check pass: reads a finished image and gives each compliance rule a
//! verdict with evidence. It never trusts what a build step believes it did.

pub mod image;
pub mod policy;
pub mod report;
pub mod rules;
pub mod view;

use std::path::PathBuf;

use serde::Serialize;

pub use image::{check_image, Hashing};
pub use view::{DirView, FileKind, FileMeta, ImageView, WalkEntry};

/// Verdict of one rule, as the report contract spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    Waived,
    NotApplicable,
    NotRun,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Waived => "waived",
            Status::NotApplicable => "not-applicable",
            Status::NotRun => "not-run",
        }
    }
}

/// Result of one rule: a status and the evidence behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub evidence: String,
}

impl Outcome {
    pub fn pass(evidence: impl Into<String>) -> Self {
        Self {
            status: Status::Pass,
            evidence: evidence.into(),
        }
    }
    pub fn fail(evidence: impl Into<String>) -> Self {
        Self {
            status: Status::Fail,
            evidence: evidence.into(),
        }
    }
    pub fn not_run(evidence: impl Into<String>) -> Self {
        Self {
            status: Status::NotRun,
            evidence: evidence.into(),
        }
    }
    pub fn not_applicable(evidence: impl Into<String>) -> Self {
        Self {
            status: Status::NotApplicable,
            evidence: evidence.into(),
        }
    }
}

/// One rule's line in a report.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub evidence: String,
}

/// One partition of the OS disk, as read from its partition table.
#[derive(Clone, Debug, Default)]
pub struct Partition {
    /// Partition number as the table numbers it (1-based).
    pub number: u32,
    pub start_sector: u64,
    pub size_bytes: u64,
    /// GPT type GUID in upper case, or the MBR type as `0xNN`.
    pub type_id: String,
    /// File system type as libguestfs or blkid names it (`ext4`, `vfat`,
    /// `swap`, `LVM2_member`), if any.
    pub fs_type: Option<String>,
    /// GPT unique partition GUID in lower case; `None` on MBR.
    pub guid: Option<String>,
    /// GPT partition name; `None` on MBR or when the name is empty.
    pub name: Option<String>,
    /// File system UUID as `UUID=` in fstab spells it, if the partition
    /// contains a file system that has one.
    pub fs_uuid: Option<String>,
}

/// Facts about the disk container and its partitions.
#[derive(Clone, Debug, Default)]
pub struct DiskFacts {
    pub path: PathBuf,
    /// Length of the image file in bytes.
    pub file_len: u64,
    /// The last 512 bytes of the file, where a VHD footer lives.
    pub tail: Vec<u8>,
    /// Container format seen by libguestfs or qemu-img (`raw`, `qcow2`, ...).
    pub format: String,
    /// Virtual disk size in bytes, as the guest would see it.
    pub virtual_size: u64,
    /// `gpt`, `msdos`, or empty when the disk has no partition table.
    pub partition_table: String,
    /// GPT disk GUID in lower case, or the MBR disk signature as eight hex
    /// digits. `None` without a partition table, or when the reader has no
    /// way to read it.
    pub disk_guid: Option<String>,
    pub partitions: Vec<Partition>,
    /// LVM physical volumes found on the disk (device names).
    pub lvm_pvs: Vec<String>,
}

/// Operating system found by inspection.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OsInfo {
    pub family: String,
    pub version: String,
    pub arch: String,
}

/// A rule that a recipe waives, with the product reason shown in reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiver {
    pub rule: String,
    pub reason: String,
}

/// Settings of one check run that come from outside the image.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// systemd units the product declares; other enabled network listeners
    /// fail `minimal-footprint`.
    pub declared_units: Vec<String>,
    pub waivers: Vec<Waiver>,
    /// ClamAV signature database folder; `None` means the system default.
    pub clamav_db: Option<PathBuf>,
    /// Adds the declared units and waivers that a build recorded in the
    /// image (see [`policy::IMAGE_POLICY_PATH`]).
    pub from_image: bool,
    /// The product settings that the Windows rules judge against.
    pub windows: WindowsPolicy,
}

/// A Windows product's settings that the Windows rules judge against. A
/// recipe's `[windows]` table gives them, and a build records them in the
/// image (see [`policy::WINDOWS_POLICY_PATH`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsPolicy {
    /// Oldest OS build and update build revision that `win-security-updates`
    /// accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_build: Option<WinBuild>,
    /// Roles, features and services that must not be enabled, besides the
    /// ones forge always refuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Inbound firewall rules the product needs, by registry value name or
    /// display name; every other inbound allow rule must be disabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub firewall_allow: Vec<String>,
    /// Local accounts the product needs enabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Commands the build placed to run at first boot, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_boot: Vec<String>,
    /// How BitLocker is turned on after deployment: `azure-disk-encryption`
    /// (the default: Azure encrypts the OS and data disks when the VM is
    /// deployed) or `first-boot` (commands placed to run at first boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitlocker: Option<String>,
}

/// A Windows build number with its update build revision, `20348.2607`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WinBuild {
    pub build: u32,
    pub ubr: u32,
}

impl std::fmt::Display for WinBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.build, self.ubr)
    }
}

impl std::str::FromStr for WinBuild {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{text:?} is not a Windows build; write the build number and the update \
                 build revision, as in \"20348.2607\""
            )
        };
        let (build, ubr) = text.trim().split_once('.').ok_or_else(bad)?;
        Ok(Self {
            build: build.parse().map_err(|_| bad())?,
            ubr: ubr.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for WinBuild {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for WinBuild {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Everything a rule may look at.
pub struct Subject<'a> {
    pub disk: &'a DiskFacts,
    /// The mounted OS tree, or `None` when no OS was found.
    pub fs: Option<&'a dyn ImageView>,
    pub os: &'a OsInfo,
    pub policy: &'a Policy,
}

/// Runs every rule of the catalogue on `subject` and applies the waivers.
pub fn run_rules(subject: &Subject) -> Vec<Finding> {
    rules::catalogue()
        .iter()
        .map(|rule| {
            let started = std::time::Instant::now();
            let outcome = (rule.check)(subject)
                .unwrap_or_else(|e| Outcome::not_run(format!("the check could not run: {e:#}")));
            tracing::debug!(
                "rule {}: {} in {:.2?}",
                rule.id,
                outcome.status.as_str(),
                started.elapsed()
            );
            apply_waiver(rule.id, outcome, &subject.policy.waivers)
        })
        .collect()
}

fn apply_waiver(id: &'static str, outcome: Outcome, waivers: &[Waiver]) -> Finding {
    let waiver = waivers.iter().find(|w| w.rule == id);
    match (outcome.status, waiver) {
        (Status::Fail, Some(w)) => Finding {
            id,
            status: Status::Waived,
            reason: Some(w.reason.clone()),
            evidence: outcome.evidence,
        },
        (status, w) => Finding {
            id,
            status,
            reason: w.map(|w| w.reason.clone()),
            evidence: outcome.evidence,
        },
    }
}

/// Overall verdict of a set of findings, per the report contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Compliant,
    NonCompliant,
    Incomplete,
}

impl Verdict {
    pub fn of(findings: &[Finding]) -> Self {
        if findings.iter().any(|f| f.status == Status::Fail) {
            Verdict::NonCompliant
        } else if findings.iter().any(|f| f.status == Status::NotRun) {
            Verdict::Incomplete
        } else {
            Verdict::Compliant
        }
    }

    /// Exit code of `forge check` for this verdict.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Compliant => 0,
            Verdict::NonCompliant => 1,
            Verdict::Incomplete => 3,
        }
    }
}
