//! `forge diff` on the test disk image of `tests/support/mkimage.sh` and on
//! copies of it with one planted change each: the diff must name exactly
//! the planted change. One case reads a qcow2 copy through libguestfs and
//! expects the same tree as the direct reader finds in the original.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::Value;
use support::plant::Planted;

/// The root file system is partition 3 of the test image.
const ROOT_PARTITION: u32 = 3;

/// Tools of `mkimage.sh` and of the planting helpers.
const TOOLS: &[&str] = &["sgdisk", "mkfs.ext4", "mkfs.fat", "mmd", "mcopy", "debugfs"];

/// Returns the test image as a fixed VHD, built once per run into
/// `CARGO_TARGET_TMPDIR/diff_images`; `None` when a tool is missing.
fn base_vhd() -> Option<&'static Path> {
    static IMAGE: OnceLock<Option<PathBuf>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            if !support::tools_present(TOOLS) {
                return None;
            }
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("diff_images");
            if dir.exists() {
                fs::remove_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("failed to empty {}: {e}", dir.display()));
            }
            fs::create_dir_all(&dir).unwrap();
            let raw = support::make_test_image(&dir);
            let size = fs::metadata(&raw).unwrap().len();
            let footer = forge::vhd::Footer::fixed(size, 1_700_000_000, [7; 16]).to_bytes();
            OpenOptions::new()
                .append(true)
                .open(&raw)
                .unwrap()
                .write_all(&footer)
                .unwrap();
            let vhd = dir.join("base.vhd");
            fs::rename(&raw, &vhd).unwrap();
            Some(vhd)
        })
        .as_deref()
}

/// Returns a new scratch folder for one test.
fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("diff_images-work")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `forge diff --format json A B` and returns the exit code and the
/// parsed report.
fn diff_json(a: &Path, b: &Path) -> (Option<i32>, Value) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["diff", "--format", "json"])
        .arg(a)
        .arg(b)
        .stdin(Stdio::null())
        .output()
        .expect("failed to start the forge binary");
    eprintln!("forge diff took {:.1} s", started.elapsed().as_secs_f64());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "forge diff panicked:\n{stderr}"
    );
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("forge diff printed no JSON ({e}); stderr:\n{stderr}"));
    (output.status.code(), report)
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v[key].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Returns the changed paths, each with the names of its changed fields.
fn changed_files(report: &Value) -> Vec<(String, Vec<String>)> {
    report["files"]["changed"]
        .as_array()
        .expect("files.changed is an array")
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or("?").to_owned(),
                strings(&c["changes"], "field"),
            )
        })
        .collect()
}

/// Asserts that the report lists no difference outside the sections that
/// `except` names.
fn assert_nothing_else(report: &Value, except: &[&str]) {
    let sections = [
        ("disk", &report["disk"]),
        ("footer", &report["footer"]["changes"]),
        ("files.added", &report["files"]["added"]),
        ("files.removed", &report["files"]["removed"]),
        ("files.changed", &report["files"]["changed"]),
        ("packages.added", &report["packages"]["added"]),
        ("packages.removed", &report["packages"]["removed"]),
        ("packages.changed", &report["packages"]["changed"]),
    ];
    for (name, value) in sections {
        if except.contains(&name) {
            continue;
        }
        let empty = value.as_array().is_none_or(|a| a.is_empty());
        assert!(empty, "unexpected differences in {name}: {value}");
    }
}

#[test]
fn identical_images_exit_zero() {
    let Some(base) = base_vhd() else { return };
    let work = work_dir("identical");
    let copy = Planted::copy(base, &work.join("copy.vhd"), ROOT_PARTITION);
    let (code, report) = diff_json(base, &copy.vhd);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["identical"], true);
    assert_nothing_else(&report, &[]);
    assert_eq!(report["footer"]["status"], "compared");
}

#[test]
fn planted_file_is_the_only_change() {
    let Some(base) = base_vhd() else { return };
    let work = work_dir("added-file");
    let copy = Planted::copy(base, &work.join("planted.vhd"), ROOT_PARTITION);
    copy.write("/etc/planted.conf", "planted\n");
    let (code, report) = diff_json(base, &copy.vhd);
    assert_eq!(code, Some(1));
    assert_eq!(report["identical"], false);
    assert_eq!(
        strings(&report["files"]["added"], "path"),
        ["/etc/planted.conf"]
    );
    assert_eq!(strings(&report["files"]["added"], "kind"), ["file"]);
    assert_nothing_else(&report, &["files.added"]);
}

#[test]
fn planted_mode_and_content_changes() {
    let Some(base) = base_vhd() else { return };
    let work = work_dir("changed-files");
    let copy = Planted::copy(base, &work.join("planted.vhd"), ROOT_PARTITION);
    copy.chmod_file("/etc/passwd", 0o600);
    copy.edit("/etc/os-release", |text| {
        text.replace("VERSION_ID=\"12\"", "VERSION_ID=\"13\"")
    });
    copy.remove("/var/log/empty.log");
    let (code, report) = diff_json(base, &copy.vhd);
    assert_eq!(code, Some(1));
    assert_eq!(
        changed_files(&report),
        [
            ("/etc/os-release".to_owned(), vec!["content".to_owned()]),
            ("/etc/passwd".to_owned(), vec!["mode".to_owned()]),
        ]
    );
    assert_eq!(
        strings(&report["files"]["removed"], "path"),
        ["/var/log/empty.log"]
    );
    assert_nothing_else(&report, &["files.changed", "files.removed"]);

    let text = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("diff")
        .arg(base)
        .arg(&copy.vhd)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("  ~ /etc/passwd: mode 0644 -> 0600\n"),
        "{text}"
    );
    assert!(text.contains("  ~ /etc/os-release: content\n"), "{text}");
    assert!(text.contains("  - /var/log/empty.log (file)\n"), "{text}");
}

#[test]
fn planted_partition_guid_and_footer() {
    let Some(base) = base_vhd() else { return };
    let work = work_dir("disk");
    let copy = Planted::copy(base, &work.join("planted.vhd"), ROOT_PARTITION);
    let guid = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";
    copy.sgdisk(&[&format!("--partition-guid={ROOT_PARTITION}:{guid}")]);
    copy.edit_footer(|f| f.timestamp += 60);
    let (code, report) = diff_json(base, &copy.vhd);
    assert_eq!(code, Some(1));
    assert_eq!(
        strings(&report["disk"], "field"),
        [format!("partition {ROOT_PARTITION} GUID")]
    );
    assert_eq!(report["disk"][0]["b"], guid);
    assert_eq!(
        strings(&report["footer"]["changes"], "field"),
        ["timestamp", "checksum"]
    );
    assert_nothing_else(&report, &["disk", "footer"]);
}

#[test]
fn unreadable_image_exits_two() {
    let Some(base) = base_vhd() else { return };
    let work = work_dir("unreadable");
    let empty = work.join("empty.img");
    fs::write(&empty, b"").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("diff")
        .arg(base)
        .arg(&empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(stderr.contains("empty.img"), "{stderr}");
}

#[test]
fn qcow2_through_libguestfs_matches_direct_reader() {
    let Some(base) = base_vhd() else { return };
    let mut tools = support::IMAGE_TOOLS.to_vec();
    tools.push("qemu-img");
    if !support::tools_present(&tools) {
        return;
    }
    support::select_libguestfs_accel();

    let work = work_dir("qcow2");
    let qcow2 = work.join("copy.qcow2");
    // QEMU sizes a VHD from its CHS geometry unless `force_size_calc`
    // selects the footer's current size, and the geometry of 1 GiB is
    // smaller than 1 GiB.
    let source = format!(
        "driver=vpc,force_size_calc=current_size,file.filename={}",
        base.display()
    );
    let status = Command::new("qemu-img")
        .args(["convert", "--image-opts", &source, "-O", "qcow2"])
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img convert failed");

    let (code, report) = diff_json(base, &qcow2);
    assert_eq!(code, Some(1), "{report:#}");
    // Only the container differs: the partition table, the file system
    // UUIDs and every file read through libguestfs match the direct
    // reader's.
    assert_eq!(strings(&report["disk"], "field"), ["format"]);
    assert_eq!(report["disk"][0]["a"], "vpc");
    assert_eq!(report["disk"][0]["b"], "qcow2");
    assert_eq!(report["footer"]["status"], "not-compared");
    assert_nothing_else(&report, &["disk"]);
}
