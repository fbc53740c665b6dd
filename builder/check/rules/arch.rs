//! The `os-64bit` rule: the package architecture, the init binary and the
//! kernel are all 64-bit.

use anyhow::Result;

use super::packages::{self, DPKG_STATUS};
use super::paths;
use crate::check::{ImageView, Outcome, Subject};

const DPKG_ARCH: &str = "/var/lib/dpkg/arch";
const ARCHES_64: &[&str] = &["amd64", "arm64"];
const INIT: &str = "/sbin/init";
/// ELF identification: class byte at offset 4, where 2 means 64-bit.
const ELF_MAGIC: &[u8] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
/// x86 boot protocol: `xloadflags` at 0x236, bit 0 = 64-bit entry point.
const BZIMAGE_XLOADFLAGS: u64 = 0x236;
/// x86 boot protocol: the "HdrS" header magic at 0x202.
const BZIMAGE_HDRS: u64 = 0x202;
/// arm64 Image header: magic "ARM\x64" at 0x38.
const ARM64_MAGIC_OFFSET: u64 = 0x38;

/// Returns the dpkg architecture and where it was read.
fn package_arch(fs: &dyn ImageView) -> Result<Option<(String, String)>> {
    if let Some(text) = fs.read_text(DPKG_ARCH)? {
        if let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Ok(Some((first.to_string(), DPKG_ARCH.to_string())));
        }
    }
    let installed = packages::installed(fs)?.unwrap_or_default();
    let package = packages::find_installed(&installed, &["dpkg"])
        .or(packages::find_installed(&installed, &["libc6"]));
    Ok(package.map(|p| (p.arch.clone(), format!("{DPKG_STATUS} ({})", p.name))))
}

fn check_package_arch(
    fs: &dyn ImageView,
    seen: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<()> {
    match package_arch(fs)? {
        Some((arch, source)) if ARCHES_64.contains(&arch.as_str()) => {
            seen.push(format!("{source}: {arch}"))
        }
        Some((arch, source)) => {
            problems.push(format!("{source}: architecture {arch} is not 64-bit"))
        }
        None => problems.push(format!(
            "no package architecture in {DPKG_ARCH} or {DPKG_STATUS}"
        )),
    }
    Ok(())
}

fn check_init(
    fs: &dyn ImageView,
    seen: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<()> {
    let Some(real) = paths::resolve(fs, INIT)? else {
        problems.push(format!("{INIT} is missing or a dangling link"));
        return Ok(());
    };
    let header = fs.read_at(&real, 0, 5)?;
    if header.len() < 5 || &header[..4] != ELF_MAGIC {
        problems.push(format!("{INIT} -> {real} is not an ELF binary"));
    } else if header[4] != ELFCLASS64 {
        problems.push(format!(
            "{INIT} -> {real} has ELF class {}; expected 2 (64-bit)",
            header[4]
        ));
    } else {
        seen.push(format!("{INIT} -> {real}: ELF 64-bit"));
    }
    Ok(())
}

/// Describes a kernel image as 64-bit, or returns why it is not.
fn kernel_kind(
    fs: &dyn ImageView,
    path: &str,
) -> Result<std::result::Result<&'static str, String>> {
    let arm = fs.read_at(path, ARM64_MAGIC_OFFSET, 4)?;
    if arm == b"ARM\x64" {
        return Ok(Ok("arm64 Image"));
    }
    let hdrs = fs.read_at(path, BZIMAGE_HDRS, 4)?;
    if hdrs != b"HdrS" {
        return Ok(Err("neither an x86 bzImage nor an arm64 Image".to_string()));
    }
    let flags = fs.read_at(path, BZIMAGE_XLOADFLAGS, 1)?;
    match flags.first() {
        Some(f) if f & 1 == 1 => Ok(Ok("x86 bzImage with a 64-bit entry point")),
        _ => Ok(Err(
            "an x86 bzImage without the 64-bit flag in xloadflags".to_string()
        )),
    }
}

fn check_kernels(
    fs: &dyn ImageView,
    seen: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<()> {
    let kernels: Vec<String> = fs
        .list_dir("/boot")?
        .into_iter()
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    if kernels.is_empty() {
        problems.push("no /boot/vmlinuz-* kernel".to_string());
    }
    for name in kernels {
        let path = format!("/boot/{name}");
        let Some(real) = paths::resolve(fs, &path)? else {
            continue;
        };
        match kernel_kind(fs, &real)? {
            Ok(kind) => seen.push(format!("{path}: {kind}")),
            Err(why) => problems.push(format!("{path} is {why}")),
        }
    }
    Ok(())
}

/// Checks `os-64bit`.
pub fn os_64bit(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    check_package_arch(fs, &mut seen, &mut problems)?;
    check_init(fs, &mut seen, &mut problems)?;
    check_kernels(fs, &mut seen, &mut problems)?;
    if problems.is_empty() {
        Ok(Outcome::pass(seen.join("; ")))
    } else {
        Ok(Outcome::fail(problems.join("; ")))
    }
}
