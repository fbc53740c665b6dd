use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::*;
use crate::check::{DirView, DiskFacts, Partition};

const STATUS: &str = "\
Package: bash
Status: install ok installed
Architecture: amd64
Version: 5.2.15-2+b2

Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.11-1~deb12u2

Package: removed-long-ago
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
";

/// Writes a small tree: a dpkg status, a config file, a symlink and a
/// folder.
fn write_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/ssh")).unwrap();
    fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), STATUS).unwrap();
    fs::write(root.join("etc/machine-id"), "0123\n").unwrap();
    fs::write(root.join("etc/ssh/sshd_config"), "PermitRootLogin no\n").unwrap();
    symlink("/usr/share/zoneinfo/Etc/UTC", root.join("etc/localtime")).unwrap();
}

fn snapshot(root: &Path) -> Snapshot {
    snapshot_view(&DirView::new(root).assume_root_owner()).unwrap()
}

/// Diffs two trees that `change` makes different, starting from the same
/// content.
fn diff_after(change: impl FnOnce(&Path)) -> Diff {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_tree(a.path());
    write_tree(b.path());
    change(b.path());
    compare("a", &snapshot(a.path()), "b", &snapshot(b.path()))
}

fn changed_paths(diff: &Diff) -> Vec<(String, Vec<String>)> {
    diff.files
        .changed
        .iter()
        .map(|c| {
            (
                c.path.clone(),
                c.changes.iter().map(|f| f.field.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn same_trees_are_identical() {
    let diff = diff_after(|_| {});
    assert!(diff.identical, "{diff:#?}");
    assert!(diff.files.changed.is_empty());
    assert!(diff.packages.changed.is_empty());
    assert!(render_text(&diff).contains("identical"));
}

#[test]
fn content_change_names_the_path() {
    let diff = diff_after(|b| fs::write(b.join("etc/machine-id"), "4567\n").unwrap());
    assert!(!diff.identical);
    assert_eq!(
        changed_paths(&diff),
        [("/etc/machine-id".to_owned(), vec!["content".to_owned()])]
    );
    assert!(diff.files.added.is_empty());
    assert!(diff.files.removed.is_empty());
    let text = render_text(&diff);
    assert!(text.contains("  ~ /etc/machine-id: content\n"), "{text}");
}

#[test]
fn size_and_content_change_together() {
    let diff = diff_after(|b| fs::write(b.join("etc/machine-id"), "45678\n").unwrap());
    assert_eq!(
        changed_paths(&diff),
        [(
            "/etc/machine-id".to_owned(),
            vec!["size".to_owned(), "content".to_owned()]
        )]
    );
}

#[test]
fn mode_change_shows_both_modes() {
    let diff = diff_after(|b| {
        fs::set_permissions(
            b.join("etc/ssh/sshd_config"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap()
    });
    let change = &diff.files.changed[0];
    assert_eq!(change.path, "/etc/ssh/sshd_config");
    assert_eq!(change.changes.len(), 1);
    assert_eq!(change.changes[0].field, "mode");
    assert_eq!(change.changes[0].a.as_deref(), Some("0644"));
    assert_eq!(change.changes[0].b.as_deref(), Some("0600"));
    let text = render_text(&diff);
    assert!(
        text.contains("~ /etc/ssh/sshd_config: mode 0644 -> 0600"),
        "{text}"
    );
}

#[test]
fn added_and_removed_paths() {
    let diff = diff_after(|b| {
        fs::remove_file(b.join("etc/machine-id")).unwrap();
        fs::create_dir(b.join("srv")).unwrap();
        fs::write(b.join("srv/app"), "x").unwrap();
    });
    let added: Vec<(&str, &str)> = diff
        .files
        .added
        .iter()
        .map(|f| (f.path.as_str(), f.kind))
        .collect();
    assert_eq!(added, [("/srv", "dir"), ("/srv/app", "file")]);
    assert_eq!(diff.files.removed.len(), 1);
    assert_eq!(diff.files.removed[0].path, "/etc/machine-id");
    assert!(diff.files.changed.is_empty(), "{:?}", diff.files.changed);
    let text = render_text(&diff);
    assert!(text.contains("  + /srv/app (file)\n"), "{text}");
    assert!(text.contains("  - /etc/machine-id (file)\n"), "{text}");
}

#[test]
fn symlink_target_change() {
    let diff = diff_after(|b| {
        fs::remove_file(b.join("etc/localtime")).unwrap();
        symlink("/usr/share/zoneinfo/Europe/Paris", b.join("etc/localtime")).unwrap();
    });
    let fields: Vec<&str> = diff.files.changed[0]
        .changes
        .iter()
        .map(|c| c.field.as_str())
        .collect();
    assert_eq!(diff.files.changed.len(), 1);
    assert_eq!(fields, ["size", "target"]);
    let target = &diff.files.changed[0].changes[1];
    assert_eq!(
        target.b.as_deref(),
        Some("/usr/share/zoneinfo/Europe/Paris")
    );
}

#[test]
fn kind_change_is_reported_alone() {
    let diff = diff_after(|b| {
        fs::remove_file(b.join("etc/machine-id")).unwrap();
        symlink("/dev/null", b.join("etc/machine-id")).unwrap();
    });
    assert_eq!(
        changed_paths(&diff),
        [("/etc/machine-id".to_owned(), vec!["kind".to_owned()])]
    );
    let text = render_text(&diff);
    assert!(
        text.contains("~ /etc/machine-id: kind file -> symlink"),
        "{text}"
    );
}

#[test]
fn owner_change_compares_uid_and_gid() {
    let a = FileState {
        kind: FileKind::File,
        mode: 0o640,
        uid: 0,
        gid: 42,
        size: 10,
        target: None,
        sha256: Some("aa".into()),
    };
    let b = FileState {
        uid: 1000,
        gid: 1000,
        ..a.clone()
    };
    let fields: Vec<String> = compare_file(&a, &b).into_iter().map(|c| c.field).collect();
    assert_eq!(fields, ["uid", "gid"]);
}

#[test]
fn directory_size_is_not_compared() {
    let a = FileState {
        kind: FileKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 4096,
        target: None,
        sha256: None,
    };
    let b = FileState {
        size: 12288,
        ..a.clone()
    };
    assert!(compare_file(&a, &b).is_empty());
}

#[test]
fn package_changes_added_removed_and_versions() {
    let diff = diff_after(|b| {
        let status = STATUS
            .replace("3.0.11-1~deb12u2", "3.0.13-1~deb12u1")
            .replace(
                "Package: bash\nStatus: install ok installed",
                "Package: bash\nStatus: deinstall ok config-files",
            )
            + "\nPackage: nginx\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22.1-9\n";
        fs::write(b.join("var/lib/dpkg/status"), status).unwrap();
    });

    let packages = &diff.packages;
    assert_eq!(
        packages.added,
        [PackageRef {
            name: "nginx".into(),
            version: "1.22.1-9".into(),
            arch: "amd64".into()
        }]
    );
    assert_eq!(packages.removed.len(), 1);
    assert_eq!(packages.removed[0].name, "bash");
    assert_eq!(packages.changed.len(), 1);
    assert_eq!(packages.changed[0].name, "openssl");
    assert_eq!(
        packages.changed[0].changes,
        [FieldChange {
            field: "version".into(),
            a: Some("3.0.11-1~deb12u2".into()),
            b: Some("3.0.13-1~deb12u1".into()),
        }]
    );

    let text = render_text(&diff);
    assert!(
        text.contains("packages: 1 added, 1 removed, 1 changed"),
        "{text}"
    );
    assert!(text.contains("  + nginx 1.22.1-9 amd64\n"), "{text}");
    assert!(
        text.contains("  ~ openssl: version 3.0.11-1~deb12u2 -> 3.0.13-1~deb12u1\n"),
        "{text}"
    );
    // The status file itself changed too.
    assert_eq!(
        changed_paths(&diff),
        [(
            "/var/lib/dpkg/status".to_owned(),
            vec!["size".to_owned(), "content".to_owned()]
        )]
    );
}

fn package(name: &str, version: &str, arch: &str) -> Package {
    Package {
        name: name.into(),
        version: version.into(),
        arch: arch.into(),
        status: "install ok installed".into(),
        ..Package::default()
    }
}

#[test]
fn package_architecture_change() {
    let a = [package("tzdata", "2024a-0+deb12u1", "all")];
    let b = [package("tzdata", "2024a-0+deb12u1", "amd64")];
    let diff = compare_packages(Some(&a), Some(&b));
    assert_eq!(diff.changed.len(), 1);
    assert_eq!(diff.changed[0].changes[0].field, "architecture");
    assert!(diff.added.is_empty());
    assert!(diff.removed.is_empty());
}

#[test]
fn multi_arch_packages_match_by_architecture() {
    let a = [
        package("libc6", "2.36-9", "amd64"),
        package("libc6", "2.36-9", "i386"),
    ];
    let b = [
        package("libc6", "2.36-9+deb12u4", "amd64"),
        package("libc6", "2.36-9", "arm64"),
        package("libc6", "2.36-9", "i386"),
    ];
    let diff = compare_packages(Some(&a), Some(&b));
    assert_eq!(diff.changed.len(), 1);
    assert_eq!(diff.changed[0].name, "libc6:amd64");
    assert_eq!(diff.added.len(), 1);
    assert_eq!(diff.added[0].arch, "arm64");
    assert!(diff.removed.is_empty());
}

#[test]
fn missing_dpkg_status_on_one_side() {
    let a = [package("bash", "5.2.15-2+b2", "amd64")];
    let diff = compare_packages(Some(&a), None);
    assert!(diff.a_has_dpkg);
    assert!(!diff.b_has_dpkg);
    assert_eq!(diff.removed.len(), 1);
}

fn gpt_disk(disk_guid: &str, root_guid: &str) -> DiskFacts {
    DiskFacts {
        format: "raw".into(),
        virtual_size: 1 << 30,
        partition_table: "gpt".into(),
        disk_guid: Some(disk_guid.into()),
        partitions: vec![Partition {
            number: 1,
            start_sector: 2048,
            size_bytes: 1 << 29,
            type_id: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
            fs_type: Some("ext4".into()),
            guid: Some(root_guid.into()),
            name: Some("root".into()),
            fs_uuid: Some("0b6cbb1a-4b1f-4c1e-9d55-6a7e1c2f3a40".into()),
        }],
        ..DiskFacts::default()
    }
}

#[test]
fn partition_fields_are_compared_by_number() {
    let a = Snapshot {
        disk: gpt_disk("11111111-0000-4000-8000-000000000000", "aaaa"),
        ..Snapshot::default()
    };
    let mut b = Snapshot {
        disk: gpt_disk("22222222-0000-4000-8000-000000000000", "bbbb"),
        ..Snapshot::default()
    };
    b.disk.partitions[0].start_sector = 4096;
    b.disk.partitions.push(Partition {
        number: 2,
        start_sector: 1 << 21,
        size_bytes: 1 << 20,
        type_id: "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F".into(),
        ..Partition::default()
    });

    let diff = compare("a", &a, "b", &b);
    let fields: Vec<&str> = diff.disk.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "disk GUID",
            "partition 1 start sector",
            "partition 1 GUID",
            "partition 2 start sector",
            "partition 2 size",
            "partition 2 type",
            "partition 2 GUID",
            "partition 2 name",
            "partition 2 file system",
            "partition 2 file system UUID",
        ]
    );
    assert!(diff.disk[3].a.is_none(), "partition 2 is only in b");
    assert!(!diff.identical);

    let text = render_text(&diff);
    assert!(text.contains("disk: 10 differences"), "{text}");
    assert!(
        text.contains("~ partition 1 start sector: 2048 -> 4096"),
        "{text}"
    );
    assert!(
        text.contains("~ partition 2 size: (absent) -> 1048576"),
        "{text}"
    );
}

#[test]
fn footer_fields_of_two_vhds() {
    let size = 1u64 << 30;
    let vhd = |time: u64, id: u8| Snapshot {
        disk: DiskFacts {
            format: "vpc".into(),
            tail: Footer::fixed(size, time, [id; 16]).to_bytes().to_vec(),
            ..DiskFacts::default()
        },
        ..Snapshot::default()
    };
    let diff = compare("a", &vhd(1_700_000_000, 1), "b", &vhd(1_700_000_060, 2));
    let FooterDiff::Compared { changes } = &diff.footer else {
        panic!("the footers were not compared: {:?}", diff.footer);
    };
    let fields: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, ["timestamp", "checksum", "unique id"]);
    assert_eq!(
        changes[0].a.as_deref(),
        Some("753315200 (2023-11-14T22:13:20Z)")
    );
    assert_eq!(changes[2].b.as_deref(), Some("02".repeat(16).as_str()));
    assert!(!diff.identical);

    let same = compare("a", &vhd(1_700_000_000, 1), "b", &vhd(1_700_000_000, 1));
    assert_eq!(same.footer, FooterDiff::Compared { changes: vec![] });
    assert!(same.identical);
}

#[test]
fn footer_not_compared_with_a_raw_disk() {
    let vhd = Snapshot {
        disk: DiskFacts {
            format: "vpc".into(),
            tail: Footer::fixed(1 << 30, 0, [0; 16]).to_bytes().to_vec(),
            ..DiskFacts::default()
        },
        ..Snapshot::default()
    };
    let raw = Snapshot {
        disk: DiskFacts {
            format: "raw".into(),
            ..DiskFacts::default()
        },
        ..Snapshot::default()
    };
    let diff = compare("a", &vhd, "b", &raw);
    assert_eq!(
        diff.footer,
        FooterDiff::NotCompared {
            reason: "image b is not a VHD".into()
        }
    );
    assert_eq!(diff.disk.len(), 1, "{:?}", diff.disk);
    assert_eq!(diff.disk[0].field, "format");
}

#[test]
fn json_names_every_section() {
    let diff = diff_after(|b| fs::write(b.join("etc/machine-id"), "4567\n").unwrap());
    let json = serde_json::to_value(&diff).unwrap();
    assert_eq!(json["identical"], false);
    assert_eq!(json["files"]["changed"][0]["path"], "/etc/machine-id");
    assert_eq!(
        json["files"]["changed"][0]["changes"][0]["field"],
        "content"
    );
    assert_eq!(json["footer"]["status"], "not-compared");
    assert!(json["packages"]["added"].as_array().unwrap().is_empty());
}
