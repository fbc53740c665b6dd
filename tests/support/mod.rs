//! Helpers shared by the integration tests: tool checks, the test disk
//! image, and the boot harness.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod boot;
pub mod plant;

use std::path::{Path, PathBuf};
use std::process::Command;

/// Returns whether every tool in `tools` is on `PATH`. When one is missing
/// the test should skip: this prints why and returns false. Under `CI` set
/// to anything but `false` or empty, a missing tool fails the test instead.
pub fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let ci = std::env::var("CI").unwrap_or_default();
    if !ci.is_empty() && ci != "false" {
        panic!(
            "CI is set and these tools are missing: {}",
            missing.join(", ")
        );
    }
    eprintln!(
        "skipping: missing tools: {} (install them to run this test)",
        missing.join(", ")
    );
    false
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Tools that `tests/support/mkimage.sh` and a libguestfs launch need.
pub const IMAGE_TOOLS: &[&str] = &[
    "sgdisk",
    "mkfs.ext4",
    "mkfs.fat",
    "mmd",
    "mcopy",
    "supermin",
    "qemu-system-x86_64",
];

/// Builds the 1 GiB GPT test image into `dir` and returns its path.
pub fn make_test_image(dir: &Path) -> PathBuf {
    make_test_image_with(dir, 0)
}

/// Builds the test image with `extra_files` more files in the root tree.
pub fn make_test_image_with(dir: &Path, extra_files: usize) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/mkimage.sh");
    let image = dir.join("test.img");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&image)
        .env("MKIMAGE_EXTRA_FILES", extra_files.to_string())
        .output()
        .expect("run mkimage.sh");
    assert!(
        output.status.success(),
        "mkimage.sh failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    image
}

/// Selects TCG for libguestfs through its environment variable unless the
/// caller already set one or KVM was requested and passed the probe.
pub fn select_libguestfs_accel() {
    if std::env::var_os("LIBGUESTFS_BACKEND_SETTINGS").is_none() && !forge::accel::kvm_enabled() {
        std::env::set_var("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg");
    }
}

/// Returns the SHA-256 of a file as lower-case hex, reading it in 4 MiB
/// chunks. With the 8 KiB reads of `io::copy`, a 30 GiB VHD took 80 s on a
/// 2-core host with a build running beside it.
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path).expect("open file to hash");
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 4 << 20];
    loop {
        let count = file.read(&mut buffer).expect("hash file");
        if count == 0 {
            break;
        }
        hasher.update(&buffer[..count]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
