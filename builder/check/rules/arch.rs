//! The `os-64bit` rule: the package architecture, the init binary and the
//! kernel are all 64-bit.

use anyhow::Result;

use super::family::{self, Family};
use super::packages::{self, PackageDb, PackageFormat, DPKG_STATUS};
use super::paths;
use crate::check::{ImageView, Outcome, Subject};

const DPKG_ARCH: &str = "/var/lib/dpkg/arch";
/// 64-bit architectures as dpkg (amd64, arm64) and rpm (x86_64, aarch64)
/// name them.
const ARCHES_64: &[&str] = &["amd64", "arm64", "x86_64", "aarch64"];
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

/// The package architecture of an image, or why it is unknown.
enum PackageArch {
    /// The architecture and where it was read.
    Found(String, String),
    /// No package database: a failure.
    Missing(String),
    /// A package database that cannot be read: the rule cannot run.
    Unreadable(String),
}

/// Returns the package architecture: dpkg's native architecture, or the
/// architecture of the `rpm` package on rpm distributions, whose
/// multilib installs can add 32-bit packages beside 64-bit ones.
fn package_arch(fs: &dyn ImageView, family: Family) -> Result<PackageArch> {
    if !family.uses_rpm() {
        if let Some(text) = fs.read_text(DPKG_ARCH)? {
            if let Some(first) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
                return Ok(PackageArch::Found(first.to_string(), DPKG_ARCH.to_string()));
            }
        }
    }
    let installed = match packages::read_installed(fs, family)? {
        PackageDb::Read(installed) => installed,
        PackageDb::Missing(_) => {
            return Ok(PackageArch::Missing(format!(
                "no package architecture in {DPKG_ARCH} or {DPKG_STATUS}"
            )))
        }
        PackageDb::Unreadable(why) => return Ok(PackageArch::Unreadable(why)),
    };
    let names: &[&str] = match installed.format {
        PackageFormat::Dpkg => &["dpkg", "libc6"],
        PackageFormat::Rpm => &["rpm", "glibc"],
    };
    let package = names.iter().find_map(|name| {
        let mut candidates = installed.packages.iter().filter(|p| p.name == *name);
        let first = candidates.clone().next();
        candidates
            .find(|p| ARCHES_64.contains(&p.arch.as_str()))
            .or(first)
    });
    Ok(match package {
        Some(p) => PackageArch::Found(p.arch.clone(), format!("{} ({})", installed.source, p.name)),
        None => PackageArch::Missing(format!(
            "{} lists none of {}, so the package architecture is unknown",
            installed.source,
            names.join(", ")
        )),
    })
}

/// Checks the package architecture; returns the reason when it cannot be
/// read.
fn check_package_arch(
    fs: &dyn ImageView,
    family: Family,
    seen: &mut Vec<String>,
    problems: &mut Vec<String>,
) -> Result<Option<String>> {
    match package_arch(fs, family)? {
        PackageArch::Found(arch, source) if ARCHES_64.contains(&arch.as_str()) => {
            seen.push(format!("{source}: {arch}"))
        }
        PackageArch::Found(arch, source) => {
            problems.push(format!("{source}: architecture {arch} is not 64-bit"))
        }
        PackageArch::Missing(why) => problems.push(why),
        PackageArch::Unreadable(why) => return Ok(Some(why)),
    }
    Ok(None)
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
    let family = family::detect(fs, s.os)?;
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    let unreadable = check_package_arch(fs, family, &mut seen, &mut problems)?;
    check_init(fs, &mut seen, &mut problems)?;
    check_kernels(fs, &mut seen, &mut problems)?;
    if !problems.is_empty() {
        return Ok(Outcome::fail(problems.join("; ")));
    }
    match unreadable {
        Some(why) => Ok(Outcome::not_run(format!(
            "{why}; the rest is 64-bit: {}",
            seen.join("; ")
        ))),
        None => Ok(Outcome::pass(seen.join("; "))),
    }
}
