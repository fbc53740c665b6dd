//! Disk container and partition rules, and the fstab reader they share
//! with the swap rule.

use anyhow::Result;

use super::paths::is_under;
use crate::check::{DiskFacts, ImageView, Outcome, Subject};
use crate::vhd::{self, Footer};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// GPT type of an LVM physical volume.
pub const GPT_LVM: &str = "E6D6D379-F507-44C2-A23C-238F2A3DF928";
/// GPT type of a BIOS boot partition.
const GPT_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
/// GPT type of an EFI system partition.
const GPT_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
/// MBR type of an EFI system partition.
const MBR_ESP: &str = "0xEF";
/// MBR type of a Linux LVM partition.
const MBR_LVM: &str = "0x8E";
/// Mount points that must stay on the root file system.
const SEPARATE_MOUNTS: &[&str] = &["/boot", "/var", "/home", "/usr", "/opt", "/srv", "/tmp"];
/// File system types that are not block devices in fstab.
const VIRTUAL_FS: &[&str] = &[
    "tmpfs", "proc", "sysfs", "devpts", "none", "bind", "overlay", "ramfs",
];

/// Checks `vhd-fixed-format` by parsing the footer in the last 512 bytes.
pub fn vhd_fixed_format(s: &Subject) -> Result<Outcome> {
    let disk = s.disk;
    let footer = match Footer::parse(&disk.tail) {
        Ok(footer) => footer,
        Err(e) => {
            return Ok(Outcome::fail(format!("format {:?}: {e:#}", disk.format)));
        }
    };
    let mut problems = Vec::new();
    if footer.disk_type != vhd::DISK_TYPE_FIXED {
        let kind = match footer.disk_type {
            vhd::DISK_TYPE_DYNAMIC => "dynamic",
            vhd::DISK_TYPE_DIFFERENCING => "differencing",
            _ => "unknown",
        };
        problems.push(format!(
            "disk type {} ({kind}); expected 2 (fixed)",
            footer.disk_type
        ));
    }
    if footer.format_version != vhd::FORMAT_VERSION {
        problems.push(format!(
            "file format version {:#010x}; expected 0x00010000",
            footer.format_version
        ));
    }
    if !Footer::checksum_valid(&disk.tail) {
        problems.push(format!(
            "footer checksum {:#010x} does not match its bytes",
            footer.checksum
        ));
    }
    if problems.is_empty() {
        Ok(Outcome::pass(
            "VHD footer: cookie conectix, disk type 2 (fixed), version 1.0, checksum valid",
        ))
    } else {
        Ok(Outcome::fail(format!(
            "VHD footer: {}",
            problems.join("; ")
        )))
    }
}

/// Checks `vhd-size-aligned`: footer sizes match the data length, in MiB.
pub fn vhd_size_aligned(s: &Subject) -> Result<Outcome> {
    let disk = s.disk;
    let Ok(footer) = Footer::parse(&disk.tail) else {
        return Ok(Outcome::fail(format!(
            "no VHD footer in {}, so its sizes cannot be checked",
            disk.path.display()
        )));
    };
    let data_len = disk.file_len.saturating_sub(vhd::FOOTER_LEN as u64);
    let mut problems = Vec::new();
    if footer.current_size != data_len {
        problems.push(format!(
            "current size {} differs from file length - 512 = {data_len}",
            footer.current_size
        ));
    }
    if footer.original_size != data_len {
        problems.push(format!(
            "original size {} differs from file length - 512 = {data_len}",
            footer.original_size
        ));
    }
    if !data_len.is_multiple_of(MIB) {
        problems.push(format!(
            "{data_len} bytes is not a whole number of MiB (remainder {})",
            data_len % MIB
        ));
    }
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "current = original = file length - 512 = {} MiB",
            data_len / MIB
        )))
    } else {
        Ok(Outcome::fail(problems.join("; ")))
    }
}

/// Checks `vhd-size-range` for the OS family.
pub fn vhd_size_range(s: &Subject) -> Result<Outcome> {
    // With a VHD footer the disk is the file less the footer; any other
    // container reports its virtual size.
    let fixed_vhd = vhd::Footer::parse(&s.disk.tail)
        .map(|f| f.disk_type == vhd::DISK_TYPE_FIXED)
        .unwrap_or(false);
    let size = if fixed_vhd {
        s.disk.file_len.saturating_sub(vhd::FOOTER_LEN as u64)
    } else {
        s.disk.virtual_size
    };
    let (family, min, max) = if s.os.family == "windows" {
        ("Windows", 30, 250)
    } else {
        ("Linux", 1, 1023)
    };
    let gib = size as f64 / GIB as f64;
    let seen = format!("disk size {size} bytes ({gib:.2} GiB)");
    if size >= min * GIB && size <= max * GIB {
        Ok(Outcome::pass(format!(
            "{seen} is within {min} to {max} GiB for a {family} OS disk"
        )))
    } else {
        Ok(Outcome::fail(format!(
            "{seen} is outside {min} to {max} GiB for a {family} OS disk"
        )))
    }
}

/// Checks `disk-first-mib-free`: no partition starts before sector 2048.
pub fn first_mib_free(s: &Subject) -> Result<Outcome> {
    let early: Vec<String> = s
        .disk
        .partitions
        .iter()
        .filter(|p| p.start_sector < 2048)
        .map(|p| format!("partition {} starts at sector {}", p.number, p.start_sector))
        .collect();
    if early.is_empty() {
        let first = s.disk.partitions.iter().map(|p| p.start_sector).min();
        let first = first.map_or("no partitions".to_string(), |f| {
            format!("first partition at sector {f}")
        });
        Ok(Outcome::pass(format!("{first}; sectors 0..2048 free")))
    } else {
        Ok(Outcome::fail(early.join("; ")))
    }
}

fn is_lvm(p: &crate::check::Partition) -> bool {
    p.fs_type.as_deref() == Some("LVM2_member")
        || p.type_id.eq_ignore_ascii_case(GPT_LVM)
        || p.type_id.eq_ignore_ascii_case(MBR_LVM)
}

/// Checks `no-lvm` from the disk facts.
pub fn no_lvm(s: &Subject) -> Result<Outcome> {
    if s.os.family == "windows" {
        return Ok(Outcome::not_applicable(
            "the image is Windows; this is a Linux rule",
        ));
    }
    let mut found: Vec<String> = s
        .disk
        .lvm_pvs
        .iter()
        .map(|pv| format!("physical volume {pv}"))
        .collect();
    for p in s.disk.partitions.iter().filter(|p| is_lvm(p)) {
        found.push(format!(
            "partition {} (type {}, fs {})",
            p.number,
            p.type_id,
            p.fs_type.as_deref().unwrap_or("-")
        ));
    }
    if found.is_empty() {
        Ok(Outcome::pass(format!(
            "no LVM physical volume among {} partitions",
            s.disk.partitions.len()
        )))
    } else {
        Ok(Outcome::fail(format!(
            "LVM on the OS disk: {}",
            found.join(", ")
        )))
    }
}

/// One `/etc/fstab` entry with its line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FstabEntry {
    pub line: usize,
    pub source: String,
    pub target: String,
    pub fs_type: String,
}

/// Reads `/etc/fstab`; empty when it does not exist.
pub fn fstab(fs: &dyn ImageView) -> Result<Vec<FstabEntry>> {
    let text = fs.read_text("/etc/fstab")?.unwrap_or_default();
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || fields[0].starts_with('#') {
            continue;
        }
        entries.push(FstabEntry {
            line: index + 1,
            source: fields[0].to_string(),
            target: fields[1].to_string(),
            fs_type: fields[2].to_string(),
        });
    }
    Ok(entries)
}

fn os_partitions(disk: &DiskFacts) -> Vec<String> {
    disk.partitions
        .iter()
        .filter(|p| {
            let t = &p.type_id;
            let fs_type = p.fs_type.as_deref().unwrap_or_default();
            // Swap is judged by the no-swap rule, not counted here.
            !t.eq_ignore_ascii_case(GPT_BIOS_BOOT)
                && !t.eq_ignore_ascii_case(GPT_ESP)
                && !t.eq_ignore_ascii_case(MBR_ESP)
                && !fs_type.is_empty()
                && fs_type != "swap"
        })
        .map(|p| {
            format!(
                "partition {} ({})",
                p.number,
                p.fs_type.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

fn separate_mounts(fs: &dyn ImageView) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in fstab(fs)? {
        if entry.target == "/boot/efi" && entry.fs_type == "vfat" {
            continue;
        }
        let separate = SEPARATE_MOUNTS.iter().any(|m| is_under(&entry.target, m));
        if separate && !VIRTUAL_FS.contains(&entry.fs_type.as_str()) && entry.fs_type != "swap" {
            found.push(format!(
                "/etc/fstab:{}: {} on {} ({})",
                entry.line, entry.source, entry.target, entry.fs_type
            ));
        }
    }
    Ok(found)
}

/// Checks `single-root-partition`: one OS file system partition beside an
/// optional BIOS boot partition and ESP, and no separate system mounts.
pub fn single_root_partition(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let partitions = os_partitions(s.disk);
    let mut problems = Vec::new();
    if partitions.len() != 1 {
        problems.push(format!(
            "{} OS file system partitions ({}); expected exactly one",
            partitions.len(),
            partitions.join(", ")
        ));
    }
    problems.extend(separate_mounts(fs)?);
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "one OS file system: {}; fstab mounts no separate system folder",
            partitions[0]
        )))
    } else {
        Ok(Outcome::fail(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Partition;

    fn mbr(number: u32, type_id: &str, fs_type: Option<&str>) -> Partition {
        Partition {
            number,
            start_sector: 2048,
            size_bytes: 1 << 20,
            type_id: type_id.to_owned(),
            fs_type: fs_type.map(str::to_owned),
            ..Partition::default()
        }
    }

    #[test]
    fn mbr_types_match_in_either_case() {
        // libguestfs and the direct reader both write MBR types in lower case.
        let disk = DiskFacts {
            partitions: vec![
                mbr(1, "0xef", Some("vfat")),
                mbr(2, "0x83", Some("ext4")),
                mbr(3, "0x8e", None),
            ],
            ..DiskFacts::default()
        };
        assert_eq!(os_partitions(&disk), ["partition 2 (ext4)"]);
        assert!(is_lvm(&disk.partitions[2]));
        assert!(!is_lvm(&disk.partitions[1]));
    }
}
