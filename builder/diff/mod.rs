//! `forge diff`: names what differs between two images, so that a vendor
//! can review a rebuild and a test can explain why two builds of the same
//! recipe are not byte-identical.
//!
//! Each image is reduced to a [`Snapshot`]: its disk facts, its installed
//! dpkg packages and, for every path of its tree, the metadata and the
//! SHA-256 of regular files. [`compare`] then lists the differences by
//! section: disk and partition table, VHD footer, packages and files.

mod render;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::check::rules::packages::Package;
use crate::check::FileKind;
use crate::vhd::Footer;

pub use render::render_text;
pub use snapshot::{snapshot_image, snapshot_view, Snapshot};

/// State of one path of an image tree, as far as `forge diff` compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileState {
    pub kind: FileKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Target of a symlink.
    pub target: Option<String>,
    /// SHA-256 of a regular file's content, lower-case hex.
    pub sha256: Option<String>,
}

/// One field whose value differs; `None` means the field is absent on
/// that side (a partition or package only one image has).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// A package as `forge diff` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageRef {
    pub name: String,
    pub version: String,
    pub arch: String,
}

/// A package that both images have, with the fields that differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    pub name: String,
    pub changes: Vec<FieldChange>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PackageDiff {
    /// Whether each image has a dpkg status file; packages are compared
    /// only when at least one has.
    pub a_has_dpkg: bool,
    pub b_has_dpkg: bool,
    pub added: Vec<PackageRef>,
    pub removed: Vec<PackageRef>,
    pub changed: Vec<PackageChange>,
}

/// A path that only one image has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    pub path: String,
    pub kind: &'static str,
}

/// A path that both images have, with the fields that differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    pub changes: Vec<FieldChange>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    pub added: Vec<FileEntry>,
    pub removed: Vec<FileEntry>,
    pub changed: Vec<FileChange>,
}

/// Comparison of the VHD footers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum FooterDiff {
    /// Both images have a footer; the fields that differ.
    Compared { changes: Vec<FieldChange> },
    /// At least one image is not a VHD: the reason.
    NotCompared { reason: String },
}

/// Everything that differs between image `a` and image `b`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub a: String,
    pub b: String,
    pub identical: bool,
    pub disk: Vec<FieldChange>,
    pub footer: FooterDiff,
    pub packages: PackageDiff,
    pub files: FileDiff,
}

/// Compares two snapshots. `a_name` and `b_name` label them in the result.
pub fn compare(a_name: &str, a: &Snapshot, b_name: &str, b: &Snapshot) -> Diff {
    let disk = compare_fields(&disk_fields(a), &disk_fields(b));
    let footer = compare_footers(a, b);
    let packages = compare_packages(a.packages.as_deref(), b.packages.as_deref());
    let files = compare_files(&a.files, &b.files);
    let footer_same = match &footer {
        FooterDiff::Compared { changes } => changes.is_empty(),
        FooterDiff::NotCompared { .. } => true,
    };
    let identical = disk.is_empty()
        && footer_same
        && packages.added.is_empty()
        && packages.removed.is_empty()
        && packages.changed.is_empty()
        && files.added.is_empty()
        && files.removed.is_empty()
        && files.changed.is_empty();
    Diff {
        a: a_name.to_owned(),
        b: b_name.to_owned(),
        identical,
        disk,
        footer,
        packages,
        files,
    }
}

/// Lists named fields that differ. Fields are matched by name, in the order
/// of `a` and then the names only `b` has.
fn compare_fields(a: &[(String, String)], b: &[(String, String)]) -> Vec<FieldChange> {
    let b_values: BTreeMap<&str, &str> = b.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a_names: BTreeSet<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
    let mut changes = Vec::new();
    for (field, value) in a {
        let other = b_values.get(field.as_str()).copied();
        if other != Some(value.as_str()) {
            changes.push(FieldChange {
                field: field.clone(),
                a: Some(value.clone()),
                b: other.map(str::to_owned),
            });
        }
    }
    for (field, value) in b {
        if !a_names.contains(field.as_str()) {
            changes.push(FieldChange {
                field: field.clone(),
                a: None,
                b: Some(value.clone()),
            });
        }
    }
    changes
}

/// Returns the disk facts as named fields, one set per partition.
fn disk_fields(snapshot: &Snapshot) -> Vec<(String, String)> {
    let disk = &snapshot.disk;
    let mut fields = vec![
        ("format".to_owned(), disk.format.clone()),
        ("virtual size".to_owned(), disk.virtual_size.to_string()),
        ("partition table".to_owned(), or_none(&disk.partition_table)),
        (
            "disk GUID".to_owned(),
            disk.disk_guid
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        ),
    ];
    for p in &disk.partitions {
        let n = p.number;
        fields.push((
            format!("partition {n} start sector"),
            p.start_sector.to_string(),
        ));
        fields.push((format!("partition {n} size"), p.size_bytes.to_string()));
        fields.push((format!("partition {n} type"), p.type_id.clone()));
        fields.push((format!("partition {n} GUID"), opt_or_none(&p.guid)));
        fields.push((format!("partition {n} name"), opt_or_none(&p.name)));
        fields.push((
            format!("partition {n} file system"),
            opt_or_none(&p.fs_type),
        ));
        fields.push((
            format!("partition {n} file system UUID"),
            opt_or_none(&p.fs_uuid),
        ));
    }
    fields
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        "none".to_owned()
    } else {
        value.to_owned()
    }
}

fn opt_or_none(value: &Option<String>) -> String {
    value.clone().unwrap_or_else(|| "none".to_owned())
}

fn compare_footers(a: &Snapshot, b: &Snapshot) -> FooterDiff {
    match (a.footer(), b.footer()) {
        (Some(fa), Some(fb)) => FooterDiff::Compared {
            changes: compare_fields(&footer_fields(&fa), &footer_fields(&fb)),
        },
        (fa, fb) => {
            let reason = match (fa.is_some(), fb.is_some()) {
                (false, false) => "neither image is a VHD",
                (true, false) => "image b is not a VHD",
                _ => "image a is not a VHD",
            };
            FooterDiff::NotCompared {
                reason: reason.to_owned(),
            }
        }
    }
}

/// Returns the footer fields by name, in the order of the VHD specification.
fn footer_fields(f: &Footer) -> Vec<(String, String)> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let fields = [
        ("features", format!("0x{:08x}", f.features)),
        ("format version", format!("0x{:08x}", f.format_version)),
        ("data offset", format!("0x{:016x}", f.data_offset)),
        ("timestamp", vhd_time(f.timestamp)),
        ("creator application", text(&f.creator_app)),
        ("creator version", format!("0x{:08x}", f.creator_version)),
        ("creator host OS", text(&f.creator_os)),
        ("original size", f.original_size.to_string()),
        ("current size", f.current_size.to_string()),
        (
            "geometry",
            format!("{}/{}/{}", f.cylinders, f.heads, f.sectors_per_track),
        ),
        ("disk type", f.disk_type.to_string()),
        ("checksum", format!("0x{:08x}", f.checksum)),
        ("unique id", hex(&f.unique_id)),
        ("saved state", f.saved_state.to_string()),
    ];
    fields
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

/// Formats a VHD timestamp (seconds since 2000-01-01 UTC) with its UTC
/// date, so that a reader sees which build is older.
fn vhd_time(seconds: u32) -> String {
    let unix = crate::vhd::VHD_EPOCH_OFFSET + u64::from(seconds);
    format!("{seconds} ({})", crate::clock::format_utc(unix))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn package_ref(p: &Package) -> PackageRef {
    PackageRef {
        name: p.name.clone(),
        version: p.version.clone(),
        arch: p.arch.clone(),
    }
}

/// Compares the installed packages. A name that each image has once is
/// one package, whose version or architecture may change. A name that an
/// image has several times (a `Multi-Arch: same` library installed for two
/// architectures) is matched by architecture.
fn compare_packages(a: Option<&[Package]>, b: Option<&[Package]>) -> PackageDiff {
    let mut diff = PackageDiff {
        a_has_dpkg: a.is_some(),
        b_has_dpkg: b.is_some(),
        ..PackageDiff::default()
    };
    let by_name = |packages: Option<&[Package]>| {
        let mut map: BTreeMap<String, Vec<Package>> = BTreeMap::new();
        for p in packages.unwrap_or_default() {
            map.entry(p.name.clone()).or_default().push(p.clone());
        }
        map
    };
    let a_map = by_name(a);
    let b_map = by_name(b);
    let names: BTreeSet<&String> = a_map.keys().chain(b_map.keys()).collect();
    for name in names {
        let a_list = a_map.get(name).map(Vec::as_slice).unwrap_or_default();
        let b_list = b_map.get(name).map(Vec::as_slice).unwrap_or_default();
        if let ([pa], [pb]) = (a_list, b_list) {
            let changes = compare_fields(&package_fields(pa), &package_fields(pb));
            if !changes.is_empty() {
                diff.changed.push(PackageChange {
                    name: name.clone(),
                    changes,
                });
            }
            continue;
        }
        for pa in a_list {
            match b_list.iter().find(|pb| pb.arch == pa.arch) {
                Some(pb) if pb.version != pa.version => diff.changed.push(PackageChange {
                    name: format!("{name}:{}", pa.arch),
                    changes: compare_fields(&package_fields(pa), &package_fields(pb)),
                }),
                Some(_) => {}
                None => diff.removed.push(package_ref(pa)),
            }
        }
        for pb in b_list {
            if !a_list.iter().any(|pa| pa.arch == pb.arch) {
                diff.added.push(package_ref(pb));
            }
        }
    }
    diff
}

fn package_fields(p: &Package) -> Vec<(String, String)> {
    vec![
        ("version".to_owned(), p.version.clone()),
        ("architecture".to_owned(), p.arch.clone()),
    ]
}

/// Names a file kind as the reports spell it.
pub fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Other => "other",
    }
}

fn compare_files(a: &BTreeMap<String, FileState>, b: &BTreeMap<String, FileState>) -> FileDiff {
    let mut diff = FileDiff::default();
    for (path, state) in a {
        match b.get(path) {
            None => diff.removed.push(FileEntry {
                path: path.clone(),
                kind: kind_name(state.kind),
            }),
            Some(other) => {
                let changes = compare_file(state, other);
                if !changes.is_empty() {
                    diff.changed.push(FileChange {
                        path: path.clone(),
                        changes,
                    });
                }
            }
        }
    }
    for (path, state) in b {
        if !a.contains_key(path) {
            diff.added.push(FileEntry {
                path: path.clone(),
                kind: kind_name(state.kind),
            });
        }
    }
    diff
}

/// Lists what differs between two states of one path. A change of kind
/// replaces the path, so it is reported alone.
fn compare_file(a: &FileState, b: &FileState) -> Vec<FieldChange> {
    let change = |field: &str, va: String, vb: String| FieldChange {
        field: field.to_owned(),
        a: Some(va),
        b: Some(vb),
    };
    if a.kind != b.kind {
        return vec![change(
            "kind",
            kind_name(a.kind).to_owned(),
            kind_name(b.kind).to_owned(),
        )];
    }

    let mut changes = Vec::new();
    if a.mode != b.mode {
        changes.push(change(
            "mode",
            format!("{:04o}", a.mode),
            format!("{:04o}", b.mode),
        ));
    }
    if a.uid != b.uid {
        changes.push(change("uid", a.uid.to_string(), b.uid.to_string()));
    }
    if a.gid != b.gid {
        changes.push(change("gid", a.gid.to_string(), b.gid.to_string()));
    }
    // A directory's size counts the blocks of its entry list. It depends
    // on the order in which files were created and deleted, so the entries
    // are compared one by one instead.
    if a.kind != FileKind::Dir && a.size != b.size {
        changes.push(change("size", a.size.to_string(), b.size.to_string()));
    }

    if a.target != b.target {
        changes.push(change(
            "target",
            a.target.clone().unwrap_or_default(),
            b.target.clone().unwrap_or_default(),
        ));
    }
    if a.sha256 != b.sha256 {
        changes.push(change(
            "content",
            a.sha256.clone().unwrap_or_default(),
            b.sha256.clone().unwrap_or_default(),
        ));
    }
    changes
}

#[cfg(test)]
mod tests;
