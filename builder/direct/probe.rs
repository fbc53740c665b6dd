//! File system signatures, read from the first bytes of a partition the way
//! blkid does, with the names blkid gives them.

use anyhow::Result;

use super::Region;

/// The file system type and identifiers found in one partition's signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// `ext4`, `vfat`, `ntfs`, `BitLocker`, `swap`, `LVM2_member`, ... or `None` when no known
    /// signature is present.
    pub fs_type: Option<String>,
    /// File system UUID as `UUID=` in fstab spells it.
    pub uuid: Option<String>,
    pub label: Option<String>,
}

/// Reads the signature at the start of `region`.
pub fn probe(region: &Region) -> Result<Probe> {
    let head = region.read_vec_upto(0, 4096)?;
    if head.len() < 512 {
        return Ok(Probe::default());
    }
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);

    if head.len() >= 2048 && u16::from_le_bytes([head[1024 + 56], head[1024 + 57]]) == 0xEF53 {
        return Ok(ext(&head[1024..2048]));
    }
    if at(0, b"LUKS\xba\xbe") {
        return Ok(named("crypto_LUKS"));
    }
    if at(0, b"XFSB") {
        return Ok(Probe {
            fs_type: Some("xfs".to_owned()),
            uuid: Some(uuid_be(&head[32..48])),
            label: text(&head[108..120]),
        });
    }
    if (0..4).any(|s| at(s * 512, b"LABELONE") && at(s * 512 + 24, b"LVM2 001")) {
        return Ok(named("LVM2_member"));
    }
    if at(3, b"NTFS    ") {
        // blkid gives the volume serial number as the UUID.
        return Ok(Probe {
            fs_type: Some("ntfs".to_owned()),
            uuid: Some(format!("{:016X}", super::le64(&head, 0x48))),
            label: None,
        });
    }
    if at(3, b"-FVE-FS-") {
        return Ok(named("BitLocker"));
    }
    if let Some(fat) = fat(&head) {
        return Ok(fat);
    }
    for page in [4096usize, 8192, 16384, 65536] {
        let tail = region.read_vec_upto(page as u64 - 10, 10)?;
        if tail == b"SWAPSPACE2" || tail == b"SWAP-SPACE" {
            return Ok(Probe {
                fs_type: Some("swap".to_owned()),
                uuid: Some(uuid_be(&head[1024 + 12..1024 + 28])),
                label: text(&head[1024 + 28..1024 + 44]),
            });
        }
    }
    if region.read_vec_upto(65536 + 64, 8)? == b"_BHRfS_M" {
        return Ok(named("btrfs"));
    }
    if region.read_vec_upto(0, 4)? == b"hsqs" {
        return Ok(named("squashfs"));
    }
    Ok(Probe::default())
}

fn named(fs_type: &str) -> Probe {
    Probe {
        fs_type: Some(fs_type.to_owned()),
        ..Probe::default()
    }
}

/// Tells ext2, ext3 and ext4 apart by their feature flags, as blkid does.
fn ext(sb: &[u8]) -> Probe {
    let word = |offset: usize| super::le32(sb, offset);
    let compat = word(92);
    let incompat = word(96);
    let ro_compat = word(100);
    const HAS_JOURNAL: u32 = 0x4;
    // Features ext3 supports: filetype, recover, meta_bg (incompat) and
    // sparse_super, large_file, btree_dir (read-only compatible).
    const EXT3_INCOMPAT: u32 = 0x2 | 0x4 | 0x10;
    const EXT3_RO_COMPAT: u32 = 0x1 | 0x2 | 0x4;
    let fs_type = if incompat & !EXT3_INCOMPAT != 0 || ro_compat & !EXT3_RO_COMPAT != 0 {
        "ext4"
    } else if compat & HAS_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    Probe {
        fs_type: Some(fs_type.to_owned()),
        uuid: Some(uuid_be(&sb[104..120])),
        label: text(&sb[120..136]),
    }
}

fn fat(head: &[u8]) -> Option<Probe> {
    if head[510..512] != [0x55, 0xAA] {
        return None;
    }
    let bytes_per_sector = u16::from_le_bytes([head[11], head[12]]);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) || head[13] == 0 {
        return None;
    }
    // FAT32 keeps its volume id and label further in than FAT12/16.
    let (id_at, label_at) = if &head[82..90] == b"FAT32   " {
        (67, 71)
    } else if &head[54..59] == b"FAT12" || &head[54..59] == b"FAT16" {
        (39, 43)
    } else {
        return None;
    };
    let id = super::le32(head, id_at);
    let label = text(&head[label_at..label_at + 11]).filter(|l| l != "NO NAME");
    Some(Probe {
        fs_type: Some("vfat".to_owned()),
        uuid: Some(format!("{:04X}-{:04X}", id >> 16, id & 0xFFFF)),
        label,
    })
}

/// Formats 16 bytes as a UUID in byte order.
fn uuid_be(bytes: &[u8]) -> String {
    let bytes: &[u8; 16] = bytes.try_into().expect("a UUID is 16 bytes");
    crate::build::output::uuid_text(bytes)
}

/// Decodes a NUL- or space-padded label; `None` when blank.
fn text(bytes: &[u8]) -> Option<String> {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let label = String::from_utf8_lossy(&bytes[..end]).trim_end().to_owned();
    (!label.is_empty()).then_some(label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_kinds_follow_feature_flags() {
        let mut sb = vec![0u8; 1024];
        sb[56..58].copy_from_slice(&0xEF53u16.to_le_bytes());
        assert_eq!(ext(&sb).fs_type.as_deref(), Some("ext2"));
        sb[92] = 0x4;
        assert_eq!(ext(&sb).fs_type.as_deref(), Some("ext3"));
        sb[96] = 0x40; // extents
        assert_eq!(ext(&sb).fs_type.as_deref(), Some("ext4"));
        sb[120..124].copy_from_slice(b"root");
        assert_eq!(ext(&sb).label.as_deref(), Some("root"));
    }

    /// Writes `head` to a file and probes it as a partition.
    fn probe_bytes(head: &[u8]) -> Probe {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(head).unwrap();
        probe(&Region {
            file: std::sync::Arc::new(file),
            start: 0,
            len: head.len() as u64,
        })
        .unwrap()
    }

    #[test]
    fn bitlocker_probes_before_fat() {
        // A BitLocker boot sector keeps a FAT32-like BPB after its OEM id.
        let mut head = vec![0u8; 8192];
        head[3..11].copy_from_slice(b"-FVE-FS-");
        head[11..13].copy_from_slice(&512u16.to_le_bytes());
        head[13] = 8;
        head[82..90].copy_from_slice(b"FAT32   ");
        head[510] = 0x55;
        head[511] = 0xAA;
        let probe = probe_bytes(&head);
        assert_eq!(probe.fs_type.as_deref(), Some("BitLocker"));
        assert_eq!(probe.uuid, None);
    }

    #[test]
    fn ntfs_uuid_is_the_serial_number() {
        let mut head = vec![0u8; 8192];
        head[3..11].copy_from_slice(b"NTFS    ");
        head[0x48..0x50].copy_from_slice(&0x0A1C_4F6C_1C4F_5361u64.to_le_bytes());
        let probe = probe_bytes(&head);
        assert_eq!(probe.fs_type.as_deref(), Some("ntfs"));
        assert_eq!(probe.uuid.as_deref(), Some("0A1C4F6C1C4F5361"));
    }

    #[test]
    fn fat32_volume_id_is_formatted_like_blkid() {
        let mut head = vec![0u8; 4096];
        head[11..13].copy_from_slice(&512u16.to_le_bytes());
        head[13] = 1;
        head[67..71].copy_from_slice(&0x1234_ABCDu32.to_le_bytes());
        head[71..82].copy_from_slice(b"NO NAME    ");
        head[82..90].copy_from_slice(b"FAT32   ");
        head[510] = 0x55;
        head[511] = 0xAA;
        let probe = fat(&head).unwrap();
        assert_eq!(probe.uuid.as_deref(), Some("1234-ABCD"));
        assert_eq!(probe.label, None);
    }
}
