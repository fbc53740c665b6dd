//! `forge check` on the made-up Windows Server disks of
//! `tests/support/make-windows-synthetic.sh`: the clean disk passes every
//! Windows rule, the dirty one fails the rules a build resets, and a check
//! never changes the image file, hives included.
//!
//! Each disk is built once per run (about 55 s under TCG) and checked with
//! the default reader and with libguestfs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;
use tempfile::TempDir;

/// Serializes the checks, so that TCG appliances do not compete for the
/// cores of a small machine.
static APPLIANCE: Mutex<()> = Mutex::new(());

const TOOLS: &[&str] = &[
    "guestfish",
    "qemu-img",
    "hivexregedit",
    "hivexget",
    "python3",
];

fn prerequisites_met() -> bool {
    static MET: OnceLock<bool> = OnceLock::new();
    *MET.get_or_init(|| support::tools_present(TOOLS))
}

/// Builds the clean or the dirty disk once and returns its path.
fn disk(clean: bool) -> &'static Path {
    static CLEAN: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    static DIRTY: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    let cell = if clean { &CLEAN } else { &DIRTY };
    let (_, path) = cell.get_or_init(|| {
        support::select_libguestfs_accel();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("windows.vhd");
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/make-windows-synthetic.sh"
        );
        let mut command = Command::new("bash");
        command.arg(script);
        if clean {
            command.arg("--clean");
        }
        let output = command.arg(&path).output().unwrap();
        assert!(
            output.status.success(),
            "{script} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (dir, path)
    });
    path
}

/// Writes a ClamAV database whose one signature matches nothing on the
/// disks, so the malware rule runs.
fn clamav_db() -> &'static Path {
    static DB: OnceLock<TempDir> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // sha256:size:name of 28 bytes that no test file contains.
        std::fs::write(
            dir.path().join("forge-test.hsb"),
            "3f1f4ae1e8d8fb0ed2b2c0bf6a3ed0a5d69bd3d2e0a8f3b3a5b7e5b0f2c3d4e5:28:Forge.Test.None\n",
        )
        .unwrap();
        dir
    })
    .path()
}

/// Writes a recipe that pins `min_build`, for `--recipe`.
fn recipe(dir: &Path, image: &Path, min_build: &str) -> PathBuf {
    let path = dir.join("recipe.toml");
    let sha256 = support::sha256_file(image);
    std::fs::write(
        &path,
        format!(
            "name = \"contoso-win\"\nversion = \"1.0.0\"\n\n[base]\nwindows = {{ image = {:?}, \
             sha256 = \"{sha256}\" }}\n\n[windows]\nmin_build = \"{min_build}\"\n",
            image.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Runs `forge check --format json` with `reader` (`None` for the
/// default) and returns the exit code and the report.
fn check(image: &Path, reader: Option<&str>, recipe: Option<&Path>) -> (i32, Value) {
    let _turn = APPLIANCE.lock().unwrap_or_else(|e| e.into_inner());
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .arg("check")
        .arg(image)
        .args(["--format", "json", "--clamav-db"])
        .arg(clamav_db());
    if let Some(recipe) = recipe {
        command.arg("--recipe").arg(recipe);
    }
    if let Some(reader) = reader {
        command.env("FORGE_CHECK_READER", reader);
    }
    let output = command.output().unwrap();
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap(), report)
}

/// Returns each rule's status, keyed by id.
fn statuses(report: &Value) -> Vec<(String, String)> {
    report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn failed(report: &Value) -> Vec<String> {
    statuses(report)
        .into_iter()
        .filter(|(_, status)| status == "fail")
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn clean_disk_passes_every_windows_rule() {
    if !prerequisites_met() {
        return;
    }
    let image = disk(true);
    let before = support::sha256_file(image);
    let scratch = tempfile::tempdir().unwrap();
    let recipe = recipe(scratch.path(), image, "20348.2607");
    for reader in [None, Some("libguestfs")] {
        let (code, report) = check(image, reader, Some(&recipe));
        assert_eq!(report["os"]["family"], "windows", "{reader:?}: {report:#}");
        for (id, status) in statuses(&report) {
            if id.starts_with("win-") || id.starts_with("vhd-") || id == "disk-first-mib-free" {
                assert_eq!(status, "pass", "{reader:?} {id}: {report:#}");
            } else {
                assert_eq!(status, "not-applicable", "{reader:?} {id}: {report:#}");
            }
        }
        assert_eq!(report["verdict"], "compliant", "{reader:?}");
        assert_eq!(code, 0, "{reader:?}");
        assert_eq!(report["sha256"], before.as_str(), "{reader:?}");
    }
    assert_eq!(
        support::sha256_file(image),
        before,
        "forge check changed the image file"
    );
}

#[test]
fn newer_pin_fails_only_security_updates() {
    if !prerequisites_met() {
        return;
    }
    let image = disk(true);
    let scratch = tempfile::tempdir().unwrap();
    let recipe = recipe(scratch.path(), image, "20348.2700");
    let (code, report) = check(image, None, Some(&recipe));
    assert_eq!(failed(&report), ["win-security-updates"], "{report:#}");
    assert_eq!(code, 1);
    let rule = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "win-security-updates")
        .unwrap();
    let evidence = rule["evidence"].as_str().unwrap();
    assert!(evidence.contains("saw build 20348.2607"), "{evidence}");
    assert!(evidence.contains("minimum 20348.2700"), "{evidence}");
}

#[test]
fn dirty_disk_fails_what_a_build_resets() {
    if !prerequisites_met() {
        return;
    }
    let image = disk(false);
    let before = support::sha256_file(image);
    let mut seen = Vec::new();
    for reader in [None, Some("libguestfs")] {
        let (code, report) = check(image, reader, None);
        assert_eq!(
            failed(&report),
            [
                "win-no-reserved-usernames",
                "win-auto-update",
                "win-accounts-locked",
                "win-firewall-rules",
                "win-sensitive-files-removed",
            ],
            "{reader:?}: {report:#}"
        );
        assert_eq!(code, 1);
        seen.push(statuses(&report));
    }
    assert_eq!(seen[0], seen[1], "the two readers disagree");
    assert_eq!(support::sha256_file(image), before);
}
