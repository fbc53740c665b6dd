//! Bad recipes: each is rejected with one message that names the file and
//! the key or value, and nothing is written to the output folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(recipe: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("r.toml"), recipe).unwrap();
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `forge build` and returns (exit code, stderr).
    fn build(&self) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("build")
            .arg(self.path("r.toml"))
            .arg("--output")
            .arg(self.path("out"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

const HEAD: &str = "name = \"t\"\nversion = \"1\"\n";
const BASE: &str = "[base]\ndistro = \"debian\"\nrelease = \"bookworm\"\narch = \"x86_64\"\n";

fn assert_rejected(case: &Case, needles: &[&str]) {
    let (code, stderr) = case.build();
    assert_ne!(code, 0, "expected failure, stderr: {stderr}");
    assert!(
        stderr.contains("r.toml"),
        "message does not name the file: {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "message lacks {n:?}: {stderr}");
    }
    assert_eq!(
        stderr.matches("forge: error").count(),
        1,
        "expected one error: {stderr}"
    );
    assert_no_outputs(&case.path("out"));
}

fn assert_no_outputs(out: &Path) {
    let entries: Vec<_> = fs::read_dir(out)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(
        entries.is_empty(),
        "output folder is not empty: {entries:?}"
    );
}

#[test]
fn malformed_toml() {
    let case = Case::new("name = \"t\nversion = 1");
    assert_rejected(&case, &["line 1"]);
}

#[test]
fn unknown_key_names_key_and_position() {
    let case = Case::new(&format!("{HEAD}{BASE}colour = \"red\"\n"));
    assert_rejected(&case, &["colour", "line 7", "column 1"]);
}

#[test]
fn unknown_key_in_layer() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[[layer]]\nname = \"a\"\npackage = [\"x\"]\n"
    ));
    assert_rejected(&case, &["package"]);
}

#[test]
fn missing_overlay_folder() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[[layer]]\nname = \"a\"\noverlay = \"nope\"\n"
    ));
    assert_rejected(&case, &["overlay", "nope", "not found"]);
}

#[test]
fn overlay_symlink_pointing_outside() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[[layer]]\nname = \"a\"\noverlay = \"ov\"\n"
    ));
    fs::create_dir_all(case.path("ov/etc")).unwrap();
    std::os::unix::fs::symlink("../../../secret", case.path("ov/etc/link")).unwrap();
    assert_rejected(&case, &["symlink", "outside the overlay"]);
}

#[test]
fn thirty_two_bit_arch() {
    let case = Case::new(&format!(
        "{HEAD}[base]\ndistro = \"debian\"\nrelease = \"bookworm\"\narch = \"i386\"\n"
    ));
    assert_rejected(&case, &["i386", "32-bit"]);
}

#[test]
fn disk_size_not_whole_mib() {
    let case = Case::new(&format!("{HEAD}{BASE}[disk]\nsize = 1073741825\n"));
    assert_rejected(&case, &["disk.size", "whole number of MiB"]);
}

#[test]
fn disk_size_over_limit() {
    let case = Case::new(&format!("{HEAD}{BASE}[disk]\nsize = \"1024GiB\"\n"));
    assert_rejected(&case, &["disk.size", "1023 GiB"]);
}

#[test]
fn waiver_of_unwaivable_rule() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[policy]\nwaive = [{{ rule = \"no-swap\", reason = \"x\" }}]\n"
    ));
    assert_rejected(&case, &["no-swap", "cannot be waived"]);
}

#[test]
fn missing_recipe_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["build", "/nonexistent/recipe.toml", "--output"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("/nonexistent/recipe.toml"), "{stderr}");
}

#[test]
fn empty_overlay_path() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[[layer]]\nname = \"a\"\noverlay = \"\"\n"
    ));
    assert_rejected(&case, &["overlay is empty"]);
}

#[test]
fn package_name_with_trailing_dash() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[[layer]]\nname = \"a\"\npackages = [\"nginx-\"]\n"
    ));
    assert_rejected(&case, &["nginx-", "is not a package name"]);
}

#[test]
fn symlink_chain_climbing_out() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[[layer]]\nname = \"a\"\noverlay = \"ov\"\n"
    ));
    fs::create_dir_all(case.path("ov")).unwrap();
    std::os::unix::fs::symlink(".", case.path("ov/s")).unwrap();
    std::os::unix::fs::symlink("s/..", case.path("ov/x")).unwrap();
    assert_rejected(&case, &["symlink", "outside the overlay"]);
}

#[test]
fn waiver_of_unknown_rule() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[policy]\nwaive = [{{ rule = \"no-such-rule\", reason = \"x\" }}]\n"
    ));
    assert_rejected(&case, &["no-such-rule", "not a rule id"]);
}

#[test]
fn fractional_disk_size() {
    let case = Case::new(&format!("{HEAD}{BASE}[disk]\nsize = \"1.5GiB\"\n"));
    assert_rejected(&case, &["disk.size", "fractions are not allowed"]);
}

#[test]
fn disk_size_of_wrong_type() {
    let case = Case::new(&format!("{HEAD}{BASE}[disk]\nsize = true\n"));
    assert_rejected(&case, &["a size"]);
}

/// A Windows base whose image file exists; the pin is not checked before
/// the recipe is.
const WINDOWS_BASE: &str = "[base]\nwindows = { image = \"base.vhd\", sha256 = \
     \"0000000000000000000000000000000000000000000000000000000000000000\" }\n";

fn windows_case(rest: &str) -> Case {
    let case = Case::new(&format!("{HEAD}{WINDOWS_BASE}{rest}"));
    fs::write(case.path("base.vhd"), b"not a disk").unwrap();
    case
}

#[test]
fn windows_table_on_a_linux_base() {
    let case = Case::new(&format!("{HEAD}{BASE}[windows]\nmin_build = \"20348.1\"\n"));
    assert_rejected(&case, &["[windows]", "only to a Windows base"]);
}

#[test]
fn linux_layer_key_on_a_windows_base() {
    let case = windows_case("[[layer]]\nname = \"a\"\npackages = [\"nginx\"]\n");
    assert_rejected(&case, &["layer 1", "`packages`", "only to a Linux base"]);
}

#[test]
fn first_boot_on_a_linux_base() {
    let case = Case::new(&format!(
        "{HEAD}{BASE}[[layer]]\nname = \"a\"\nfirst_boot = [\"x\"]\n"
    ));
    assert_rejected(
        &case,
        &["layer 1", "`first_boot`", "only to a Windows base"],
    );
}

#[test]
fn disk_size_on_a_windows_base() {
    let case = windows_case("[disk]\nsize = \"40GiB\"\n");
    assert_rejected(
        &case,
        &["disk.size", "Windows base", "size of the base image"],
    );
}

#[test]
fn registry_key_outside_hklm_software_and_system() {
    let case = windows_case(
        "[[layer]]\nname = \"a\"\nregistry = [{ key = 'HKCU\\Software\\X', name = \"n\", \
         type = \"dword\", value = 1 }]\n",
    );
    assert_rejected(
        &case,
        &[
            "layer 1 (`a`)",
            "key `HKCU\\Software\\X`",
            "HKLM\\SOFTWARE\\",
        ],
    );
}

#[test]
fn registry_value_of_the_wrong_type() {
    let case = windows_case(
        "[[layer]]\nname = \"a\"\nregistry = [{ key = 'HKLM\\SOFTWARE\\X', name = \"n\", \
         type = \"dword\", value = \"one\" }]\n",
    );
    assert_rejected(&case, &["registry[0]", "dword", "integer"]);
}

#[test]
fn unknown_bitlocker_choice() {
    let case = windows_case("[windows]\nbitlocker = \"tpm\"\n");
    assert_rejected(&case, &["bitlocker", "\"tpm\"", "first-boot"]);
}

#[test]
fn min_build_without_revision() {
    let case = windows_case("[windows]\nmin_build = \"20348\"\n");
    assert_rejected(&case, &["min_build", "20348.2607"]);
}
