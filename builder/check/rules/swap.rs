//! The `no-swap` rule: no swap partition, fstab entry, swap unit or swap
//! file on the OS disk.

use anyhow::Result;

use super::disk::fstab;
use super::paths::is_under;
use super::services::{self, SYSTEM_UNIT_DIR};
use crate::check::{FileKind, ImageView, Outcome, Subject};

/// GPT type of a Linux swap partition.
const GPT_SWAP: &str = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F";
/// MBR type of a Linux swap partition.
const MBR_SWAP: &str = "0x82";
/// mkswap writes its signature in the last 10 bytes of the first 4 KiB page.
const SIGNATURE_OFFSET: u64 = 4086;
const SIGNATURES: &[&[u8]] = &[b"SWAPSPACE2", b"SWAP-SPACE"];
/// The kernel rejects swap areas smaller than 10 pages (40 KiB).
const MIN_SWAP_FILE: u64 = 40 * 1024;
/// Trees that hold packaged files and caches, never swap files.
const SKIPPED_TREES: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/boot",
    "/proc",
    "/sys",
    "/var/lib/dpkg",
    "/var/cache/apt",
];

fn swap_partitions(s: &Subject) -> Vec<String> {
    s.disk
        .partitions
        .iter()
        .filter(|p| {
            p.fs_type.as_deref() == Some("swap")
                || p.type_id.eq_ignore_ascii_case(GPT_SWAP)
                || p.type_id.eq_ignore_ascii_case(MBR_SWAP)
        })
        .map(|p| format!("partition {} (type {})", p.number, p.type_id))
        .collect()
}

fn swap_units(fs: &dyn ImageView) -> Result<Vec<String>> {
    let mut found: Vec<String> = services::enabled_units(fs)?
        .into_iter()
        .filter(|u| u.name.ends_with(".swap") || u.target.ends_with(".swap"))
        .map(|u| format!("{} enabled by {}", u.name, u.link))
        .collect();
    for name in fs.list_dir(SYSTEM_UNIT_DIR)? {
        if name.ends_with(".swap") {
            found.push(format!("unit file {SYSTEM_UNIT_DIR}/{name}"));
        }
    }
    Ok(found)
}

fn swap_files(fs: &dyn ImageView) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in fs.walk()? {
        let skipped = SKIPPED_TREES.iter().any(|t| is_under(&entry.path, t));
        if skipped || entry.meta.kind != FileKind::File || entry.meta.size < MIN_SWAP_FILE {
            continue;
        }
        let bytes = fs.read_at(&entry.path, SIGNATURE_OFFSET, 10)?;
        if SIGNATURES.contains(&bytes.as_slice()) {
            found.push(format!(
                "swap file {} ({} bytes)",
                entry.path, entry.meta.size
            ));
        }
    }
    Ok(found)
}

/// Checks `no-swap`. Swap that the agent creates on the resource disk at
/// run time is not on the OS disk and so is not seen here.
pub fn no_swap(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut found = swap_partitions(s);
    for entry in fstab(fs)? {
        if entry.fs_type == "swap" {
            found.push(format!("/etc/fstab:{}: {} swap", entry.line, entry.source));
        }
    }
    found.extend(swap_units(fs)?);
    found.extend(swap_files(fs)?);
    if found.is_empty() {
        Ok(Outcome::pass(
            "no swap partition, fstab swap entry, swap unit or swap file",
        ))
    } else {
        Ok(Outcome::fail(format!(
            "swap on the OS disk: {}",
            found.join("; ")
        )))
    }
}
