//! `forge check` on the test disk image in each container format it
//! accepts, and on inputs it must reject: the verdicts of the container
//! rules, the exit codes and error lines, and that a check leaves the image
//! file unchanged.
//!
//! Every fixture derives from the raw image of `tests/support/mkimage.sh`,
//! built once per run. A check that reaches libguestfs launches an
//! appliance, which took 30 to 60 s under TCG on a 2-core host, so each
//! fixture is checked once and the checks run one at a time.

mod support;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use serde_json::Value;
use tempfile::TempDir;

/// Size of the test image, and so of every fixture's virtual disk.
const DISK_SIZE: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const FOOTER_LEN: u64 = 512;

/// Serializes the forge checks, so that TCG appliances do not compete with
/// each other and with other work for the cores of a small machine.
static APPLIANCE: Mutex<()> = Mutex::new(());

/// Returns whether the tools that build and convert the fixtures are
/// installed. When one is missing this prints why and returns false, or
/// panics when `CI` is set.
fn prerequisites_met() -> bool {
    static MET: OnceLock<bool> = OnceLock::new();
    *MET.get_or_init(|| {
        let mut tools = support::IMAGE_TOOLS.to_vec();
        tools.push("qemu-img");
        support::tools_present(&tools)
    })
}

/// Returns the raw test image, built once per run into
/// `CARGO_TARGET_TMPDIR/check_formats`. Tests copy it and never change it.
fn base_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("check_formats");
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .unwrap_or_else(|e| panic!("failed to empty {}: {e}", dir.display()));
        }
        fs::create_dir_all(&dir).unwrap();
        let image = support::make_test_image(&dir);
        assert_eq!(fs::metadata(&image).unwrap().len(), DISK_SIZE);
        image
    })
}

/// Copies `source` to `target` and keeps the holes, so that a 1 GiB copy
/// of the mostly empty test image takes a few MiB of disk.
fn copy_sparse(source: &Path, target: &Path) {
    run_tool(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(source)
            .arg(target),
    );
}

/// Runs a fixture tool and panics with its stderr when it fails.
fn run_tool(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Converts the base image with `qemu-img convert -O format -o options`.
fn qemu_convert(target: &Path, format: &str, options: Option<&str>) {
    let mut command = Command::new("qemu-img");
    command.args(["convert", "-q", "-f", "raw", "-O", format]);
    if let Some(options) = options {
        command.args(["-o", options]);
    }
    run_tool(command.arg(base_image()).arg(target));
}

/// Returns the footer of a fixed VHD with 1 GiB of data. The bytes follow
/// the field layout of Microsoft's "Virtual Hard Disk Image Format
/// Specification" and do not use forge's own writer, so a mistake shared by
/// the writer and the rule cannot hide.
fn fixed_vhd_footer_1gib() -> [u8; 512] {
    let mut footer = [0u8; 512];
    footer[0..8].copy_from_slice(b"conectix");
    // Features: only the reserved bit, which the specification sets always.
    footer[8..12].copy_from_slice(&2u32.to_be_bytes());
    // File format version 1.0.
    footer[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    // Data offset: none, because a fixed disk has no dynamic header.
    footer[16..24].copy_from_slice(&u64::MAX.to_be_bytes());
    footer[28..32].copy_from_slice(b"test");
    footer[36..40].copy_from_slice(b"Wi2k");
    footer[40..48].copy_from_slice(&DISK_SIZE.to_be_bytes());
    footer[48..56].copy_from_slice(&DISK_SIZE.to_be_bytes());
    // CHS geometry of 1 GiB by the specification's algorithm: 2080
    // cylinders, 16 heads, 63 sectors per track.
    footer[56..58].copy_from_slice(&2080u16.to_be_bytes());
    footer[58] = 16;
    footer[59] = 63;
    // Disk type 2: fixed.
    footer[60..64].copy_from_slice(&2u32.to_be_bytes());
    footer[68..84].copy_from_slice(&[0x5a; 16]);
    // The checksum is the one's complement of the byte sum, taken while
    // the checksum field is still zero.
    let sum = footer
        .iter()
        .fold(0u32, |acc, b| acc.wrapping_add(u32::from(*b)));
    footer[64..68].copy_from_slice(&(!sum).to_be_bytes());
    footer
}

/// Appends a fixed VHD footer to a raw 1 GiB disk at `path`.
fn append_vhd_footer(path: &Path) {
    assert_eq!(fs::metadata(path).unwrap().len(), DISK_SIZE);
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(&fixed_vhd_footer_1gib())
        .unwrap();
}

/// Makes a fixed VHD the way forge writes one: the raw disk and a footer.
fn make_fixed_vhd(dir: &Path) -> PathBuf {
    let path = dir.join("fixed.vhd");
    copy_sparse(base_image(), &path);
    append_vhd_footer(&path);
    path
}

/// Output of one `forge check --format json` run.
struct CheckRun {
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `forge check IMAGE --format json` as the invoking user or, with
/// `as_nobody`, as the user `nobody` through setpriv. Panics when forge
/// panicked.
fn forge_check_as(image: &Path, as_nobody: bool) -> CheckRun {
    let _one_at_a_time = APPLIANCE.lock().unwrap_or_else(|e| e.into_inner());
    let forge = env!("CARGO_BIN_EXE_forge");
    let mut command = if as_nobody {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(forge);
        command
    } else {
        Command::new(forge)
    };
    command.arg("check").arg(image).args(["--format", "json"]);
    let started = Instant::now();
    let output = command.output().expect("failed to start the forge binary");
    eprintln!(
        "forge check {} took {:.1} s",
        image.display(),
        started.elapsed().as_secs_f64()
    );
    let run = CheckRun {
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("panicked"),
        "forge panicked on {}:\n{}",
        image.display(),
        run.stderr
    );
    run
}

fn forge_check(image: &Path) -> CheckRun {
    forge_check_as(image, false)
}

impl CheckRun {
    /// Parses the JSON report, or panics with forge's stderr.
    fn report(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not a JSON report ({e}), exit code {:?}; stderr:\n{}",
                self.exit_code, self.stderr
            )
        })
    }

    /// Asserts that the check ran to a non-compliant verdict and exit
    /// code 1, and returns the report. The test image has no packages,
    /// SSH server or Azure agent, so every complete check of it is
    /// non-compliant whatever its container.
    fn non_compliant_report(&self) -> Value {
        let report = self.report();
        assert_eq!(
            report["verdict"], "non-compliant",
            "stderr:\n{}",
            self.stderr
        );
        assert_eq!(self.exit_code, Some(1), "stderr:\n{}", self.stderr);
        report
    }

    /// Asserts the exit code 2 of an input that cannot be checked, no
    /// report, and one `forge: error:` line that names `image` and
    /// contains `reason`.
    fn assert_input_error(&self, image: &Path, reason: &str) {
        assert_eq!(self.exit_code, Some(2), "stderr:\n{}", self.stderr);
        assert_eq!(self.stdout, "", "no report is written");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line, got:\n{}", self.stderr);
        let line = lines[0];
        assert!(line.starts_with("forge: error: "), "{line}");
        assert!(
            line.contains(&image.display().to_string()),
            "the error names the file: {line}"
        );
        assert!(line.contains(reason), "expected {reason:?} in: {line}");
    }
}

/// Returns the status and evidence of rule `id` in `report`.
fn rule<'a>(report: &'a Value, id: &str) -> (&'a str, &'a str) {
    let finding = report["rules"]
        .as_array()
        .expect("the report lists rules")
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("rule {id} is missing from the report"));
    (
        finding["status"].as_str().expect("status is a string"),
        finding["evidence"].as_str().expect("evidence is a string"),
    )
}

/// Asserts that rule `id` has `status` and returns its evidence.
fn assert_rule<'a>(report: &'a Value, id: &str, status: &str) -> &'a str {
    let (actual, evidence) = rule(report, id);
    assert_eq!(actual, status, "{id}: {evidence}");
    evidence
}

/// Returns the rule ids that `forge rules` lists.
fn catalogue_ids() -> &'static BTreeSet<String> {
    static IDS: OnceLock<BTreeSet<String>> = OnceLock::new();
    IDS.get_or_init(|| {
        let output = Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("rules")
            .output()
            .expect("failed to start the forge binary");
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    })
}

/// Asserts that the report has a finding for every rule and that the
/// rules reading the file tree saw the Debian root, so a failed container
/// rule did not stop the rest of the check.
fn assert_all_rules_ran(report: &Value) {
    let ids: BTreeSet<String> = report["rules"]
        .as_array()
        .expect("the report lists rules")
        .iter()
        .map(|f| f["id"].as_str().expect("id is a string").to_owned())
        .collect();
    assert_eq!(&ids, catalogue_ids());
    assert_eq!(report["os"]["family"], "debian");
    assert_rule(report, "single-root-partition", "pass");
    assert_rule(report, "no-lvm", "pass");
}

/// Asserts what every non-VHD container shares: no footer, so neither
/// VHD rule passes, while the size and layout rules read the guest disk.
fn assert_not_a_vhd(report: &Value, format: &str) {
    let evidence = assert_rule(report, "vhd-fixed-format", "fail");
    assert_eq!(
        evidence,
        format!(
            "format \"{format}\": no VHD footer: the last 512 bytes do not start \
             with the cookie \"conectix\""
        )
    );
    let evidence = assert_rule(report, "vhd-size-aligned", "fail");
    assert!(evidence.contains("no VHD footer"), "{evidence}");
    assert_rule(report, "vhd-size-range", "pass");
    assert_rule(report, "disk-first-mib-free", "pass");
}

/// The content hash and modification time of a file.
#[derive(Debug, PartialEq, Eq)]
struct FileState {
    sha256: String,
    modified: SystemTime,
    len: u64,
}

fn file_state(path: &Path) -> FileState {
    let meta = fs::metadata(path).unwrap();
    FileState {
        sha256: support::sha256_file(path),
        modified: meta.modified().unwrap(),
        len: meta.len(),
    }
}

#[test]
fn fixed_vhd_passes_container_rules() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let vhd = make_fixed_vhd(dir.path());
    let before = file_state(&vhd);

    let run = forge_check(&vhd);
    assert_eq!(file_state(&vhd), before, "forge check changed the image");

    let report = run.non_compliant_report();
    assert_eq!(report["sha256"], before.sha256.as_str());
    assert_all_rules_ran(&report);
    let evidence = assert_rule(&report, "vhd-fixed-format", "pass");
    assert!(evidence.contains("disk type 2 (fixed)"), "{evidence}");
    let evidence = assert_rule(&report, "vhd-size-aligned", "pass");
    assert!(evidence.ends_with("= 1024 MiB"), "{evidence}");
    let evidence = assert_rule(&report, "vhd-size-range", "pass");
    assert!(evidence.contains("1073741824 bytes"), "{evidence}");
    let evidence = assert_rule(&report, "disk-first-mib-free", "pass");
    assert!(
        evidence.contains("first partition at sector 2048"),
        "{evidence}"
    );
}

#[test]
fn raw_image_fails_fixed_format() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let raw = dir.path().join("disk.raw");
    copy_sparse(base_image(), &raw);

    let report = forge_check(&raw).non_compliant_report();
    assert_all_rules_ran(&report);
    assert_not_a_vhd(&report, "raw");
}

#[test]
fn qcow2_fails_fixed_format() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let qcow2 = dir.path().join("disk.qcow2");
    qemu_convert(&qcow2, "qcow2", None);
    let before = file_state(&qcow2);

    let run = forge_check(&qcow2);
    assert_eq!(file_state(&qcow2), before, "forge check changed the image");

    let report = run.non_compliant_report();
    assert_all_rules_ran(&report);
    assert_not_a_vhd(&report, "qcow2");
}

#[test]
fn dynamic_vhd_fails_fixed_format() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let vhd = dir.path().join("dynamic.vhd");
    qemu_convert(&vhd, "vpc", Some("subformat=dynamic"));

    let report = forge_check(&vhd).non_compliant_report();
    assert_all_rules_ran(&report);
    let evidence = assert_rule(&report, "vhd-fixed-format", "fail");
    assert_eq!(
        evidence,
        "VHD footer: disk type 3 (dynamic); expected 2 (fixed)"
    );
    // The footer copy at the end states the virtual size, not the length
    // of this sparse file.
    let evidence = assert_rule(&report, "vhd-size-aligned", "fail");
    assert!(evidence.contains("differs from file length"), "{evidence}");
    assert_rule(&report, "vhd-size-range", "pass");
    assert_rule(&report, "disk-first-mib-free", "pass");
}

#[test]
fn vhdx_fails_fixed_format() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let vhdx = dir.path().join("disk.vhdx");
    qemu_convert(&vhdx, "vhdx", None);

    let report = forge_check(&vhdx).non_compliant_report();
    assert_all_rules_ran(&report);
    assert_not_a_vhd(&report, "vhdx");
}

/// Without `force_size`, qemu-img sizes a fixed VHD from the CHS geometry
/// of the source and pads the data to it. For 1 GiB, QEMU 7.2 pads to
/// 1073995776 bytes, 248 KiB more and not a whole number of MiB.
#[test]
fn qemu_fixed_vhd_without_force_size_misaligned() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let vhd = dir.path().join("chs.vhd");
    qemu_convert(&vhd, "vpc", Some("subformat=fixed"));
    let data_len = fs::metadata(&vhd).unwrap().len() - FOOTER_LEN;
    assert_ne!(
        data_len % MIB,
        0,
        "qemu-img kept {data_len} bytes, a whole number of MiB, so this case tests nothing"
    );

    let report = forge_check(&vhd).non_compliant_report();
    assert_all_rules_ran(&report);
    assert_rule(&report, "vhd-fixed-format", "pass");
    let evidence = assert_rule(&report, "vhd-size-aligned", "fail");
    assert_eq!(
        evidence,
        format!(
            "{data_len} bytes is not a whole number of MiB (remainder {})",
            data_len % MIB
        ),
        "the footer sizes match the data, so only the MiB rounding fails"
    );
    assert_rule(&report, "vhd-size-range", "pass");
    assert_rule(&report, "disk-first-mib-free", "pass");
}

#[test]
fn early_partition_fails_first_mib_rule() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let vhd = dir.path().join("early.vhd");
    copy_sparse(base_image(), &vhd);
    // Alignment 1 lets sgdisk place partition 4 in the gap before
    // partition 1, at the first usable sector of a GPT disk.
    run_tool(
        Command::new("sgdisk")
            .args(["--set-alignment=1", "--new=4:34:2047"])
            .arg(&vhd),
    );
    append_vhd_footer(&vhd);

    let report = forge_check(&vhd).non_compliant_report();
    assert_all_rules_ran(&report);
    let evidence = assert_rule(&report, "disk-first-mib-free", "fail");
    assert_eq!(evidence, "partition 4 starts at sector 34");
    assert_rule(&report, "vhd-fixed-format", "pass");
    assert_rule(&report, "vhd-size-aligned", "pass");
    assert_rule(&report, "vhd-size-range", "pass");
}

/// A 64 MiB fixed VHD with one unformatted partition: below the 1 GiB
/// minimum of a Linux OS disk, and otherwise a valid container.
#[test]
fn small_disk_fails_size_range() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let vhd = dir.path().join("small.vhd");
    let size = 64 * MIB;
    fs::File::create(&vhd).unwrap().set_len(size).unwrap();
    run_tool(Command::new("sgdisk").args(["--new=1:2048:0"]).arg(&vhd));
    let footer = forge::vhd::Footer::fixed(size, 0, [7; 16]).to_bytes();
    OpenOptions::new()
        .append(true)
        .open(&vhd)
        .unwrap()
        .write_all(&footer)
        .unwrap();

    let run = forge_check(&vhd);
    let report = run.non_compliant_report();
    let failed: Vec<&str> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "fail")
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["vhd-size-range"], "{}", run.stdout);
    let evidence = assert_rule(&report, "vhd-size-range", "fail");
    assert!(evidence.contains("0.06 GiB"), "{evidence}");
}

/// Byte offset of the test image's ext4 root (sector 208896).
const TEST_ROOT_OFFSET: u64 = 208_896 * 512;

#[test]
fn overlapping_partitions_exit_2() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let raw = dir.path().join("overlap.img");
    copy_sparse(base_image(), &raw);
    // Stretch the ESP (entry 2) over the start of the root partition and
    // store valid checksums, as a buggy partitioning tool could.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&raw)
        .unwrap();
    let mut header = [0u8; 512];
    file.read_exact_at(&mut header, 512).unwrap();
    let entries_at = u64::from_le_bytes(header[72..80].try_into().unwrap()) * 512;
    let count = u32::from_le_bytes(header[80..84].try_into().unwrap()) as usize;
    let size = u32::from_le_bytes(header[84..88].try_into().unwrap()) as usize;
    let mut entries = vec![0u8; count * size];
    file.read_exact_at(&mut entries, entries_at).unwrap();
    entries[size + 40..size + 48].copy_from_slice(&300_000u64.to_le_bytes());
    file.write_all_at(&entries, entries_at).unwrap();
    header[88..92].copy_from_slice(&crc32fast::hash(&entries).to_le_bytes());
    let header_len = u32::from_le_bytes(header[12..16].try_into().unwrap()) as usize;
    header[16..20].fill(0);
    let sum = crc32fast::hash(&header[..header_len]);
    header[16..20].copy_from_slice(&sum.to_le_bytes());
    file.write_all_at(&header, 512).unwrap();
    forge_check(&raw).assert_input_error(&raw, "overlap");
}

#[test]
fn directory_loop_exits_2_quickly() {
    if !prerequisites_met() || !support::tools_present(&["debugfs"]) {
        return;
    }
    let dir = TempDir::new().unwrap();
    let raw = dir.path().join("loop.img");
    copy_sparse(base_image(), &raw);
    // A second name for /etc inside /etc: ext4 forbids directory hard
    // links, and a walk that follows this one never ends.
    run_tool(
        Command::new("debugfs")
            .args(["-w", "-R", "link /etc /etc/loop"])
            .arg(format!("{}?offset={TEST_ROOT_OFFSET}", raw.display())),
    );
    let started = Instant::now();
    forge_check(&raw).assert_input_error(&raw, "directory loop");
    assert!(
        started.elapsed().as_secs() < 60,
        "the check took {:?}",
        started.elapsed()
    );
}

/// Inputs rejected before libguestfs starts: a missing path, a directory
/// and an empty file.
#[test]
fn unopenable_inputs_exit_2() {
    let dir = TempDir::new().unwrap();

    let missing = dir.path().join("missing.vhd");
    forge_check(&missing).assert_input_error(&missing, "No such file or directory");

    let folder = dir.path().join("folder.vhd");
    fs::create_dir(&folder).unwrap();
    forge_check(&folder).assert_input_error(&folder, "Is a directory");

    let empty = dir.path().join("empty.vhd");
    fs::write(&empty, b"").unwrap();
    forge_check(&empty).assert_input_error(&empty, "is empty, not a disk image");
}

#[test]
fn text_file_exits_2() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let text = dir.path().join("notes.txt");
    fs::write(
        &text,
        "This is a text file, not a disk image.\n".repeat(300),
    )
    .unwrap();

    forge_check(&text).assert_input_error(&text, "no partition table");
}

/// A root-owned file with mode 0600, checked by the user `nobody`.
#[test]
fn unreadable_file_exits_2() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: making a root-owned file needs root");
        return;
    }
    if !support::tools_present(&["setpriv"]) {
        return;
    }
    let dir = TempDir::new().unwrap();
    // The user `nobody` must reach the file, so that only the file's own
    // mode denies the read.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let image = dir.path().join("private.vhd");
    fs::write(&image, vec![0u8; 4096]).unwrap();
    fs::set_permissions(&image, fs::Permissions::from_mode(0o600)).unwrap();

    forge_check_as(&image, true).assert_input_error(&image, "Permission denied");
}

/// A qcow2 cut in half, whose tables point at clusters past the end of
/// the file.
#[test]
fn truncated_qcow2_exits_2() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let qcow2 = dir.path().join("truncated.qcow2");
    qemu_convert(&qcow2, "qcow2", None);
    let file = OpenOptions::new().write(true).open(&qcow2).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len / 2).unwrap();
    drop(file);

    forge_check(&qcow2).assert_input_error(&qcow2, "truncated or corrupted");
}

/// A fixed VHD cut at 512 MiB: the footer is gone, so the file reads as a
/// raw disk, and the root partition 3 ends past the end of the file.
#[test]
fn truncated_fixed_vhd_exits_2() {
    if !prerequisites_met() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let vhd = make_fixed_vhd(dir.path());
    let file = OpenOptions::new().write(true).open(&vhd).unwrap();
    file.set_len(DISK_SIZE / 2).unwrap();
    drop(file);

    let run = forge_check(&vhd);
    run.assert_input_error(&vhd, "truncated");
    assert!(run.stderr.contains("partition 3"), "{}", run.stderr);
}
