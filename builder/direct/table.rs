//! Partition tables read straight from the disk bytes: GPT, with its
//! protective MBR, and the four primary entries of a classic MBR.

use anyhow::{bail, Context, Result};

use super::{le32, le64, Disk};

pub const SECTOR: u64 = 512;

/// One partition as the table records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub number: u32,
    pub start_sector: u64,
    pub sectors: u64,
    /// GPT type GUID in upper case, or the MBR type as `0xnn`.
    pub type_id: String,
    /// GPT unique partition GUID in lower case, or `DISKID-NN` on MBR, as
    /// `PARTUUID=` in fstab spells them.
    pub part_uuid: String,
    /// GPT partition name; empty on MBR.
    pub name: String,
}

/// A parsed partition table.
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// `gpt` or `msdos`, as libguestfs names them; empty without a table.
    pub kind: String,
    /// GPT disk GUID in lower case, or the MBR disk signature as eight hex
    /// digits; empty without a table.
    pub disk_guid: String,
    pub entries: Vec<TableEntry>,
    /// An MBR table with an extended partition, whose logical partitions
    /// this reader does not follow.
    pub has_extended: bool,
}

/// Reads the partition table of `disk`. A partition that ends beyond the
/// end of the disk means the image was truncated, and is an error.
pub fn read(disk: &Disk) -> Result<Table> {
    if disk.len < 2 * SECTOR {
        return Ok(Table::default());
    }
    let mbr = disk.read_vec(0, SECTOR as usize)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(Table::default());
    }
    let protective = (0..4).any(|i| mbr[446 + i * 16 + 4] == 0xEE);
    let table = if protective {
        read_gpt(disk)?
    } else {
        read_mbr(&mbr)
    };
    let disk_sectors = disk.len / SECTOR;
    for entry in &table.entries {
        let end = entry.start_sector.saturating_add(entry.sectors);
        if end > disk_sectors {
            bail!(
                "the image is truncated or damaged: partition {} ends at sector {} \
                 but the disk has only {} sectors",
                entry.number,
                end,
                disk_sectors
            );
        }
    }
    let mut sorted: Vec<&TableEntry> = table.entries.iter().collect();
    sorted.sort_by_key(|e| e.start_sector);
    for pair in sorted.windows(2) {
        if pair[0].start_sector + pair[0].sectors > pair[1].start_sector {
            bail!(
                "the partition table is damaged: partitions {} and {} overlap",
                pair[0].number,
                pair[1].number
            );
        }
    }
    Ok(table)
}

fn read_mbr(mbr: &[u8]) -> Table {
    let disk_id = le32(mbr, 440);
    let mut table = Table {
        kind: "msdos".to_owned(),
        disk_guid: format!("{disk_id:08x}"),
        ..Table::default()
    };
    for i in 0..4 {
        let raw = &mbr[446 + i * 16..446 + (i + 1) * 16];
        let kind = raw[4];
        let start = le32(raw, 8);
        let sectors = le32(raw, 12);
        if kind == 0 || sectors == 0 {
            continue;
        }
        if matches!(kind, 0x05 | 0x0F | 0x85) {
            table.has_extended = true;
        }
        let number = i as u32 + 1;
        table.entries.push(TableEntry {
            number,
            start_sector: u64::from(start),
            sectors: u64::from(sectors),
            type_id: format!("0x{kind:02x}"),
            part_uuid: format!("{disk_id:08x}-{number:02x}"),
            name: String::new(),
        });
    }
    table
}

fn read_gpt(disk: &Disk) -> Result<Table> {
    let header = disk.read_vec(SECTOR, SECTOR as usize)?;
    if &header[0..8] != b"EFI PART" {
        bail!("the disk has a protective MBR but no GPT header in sector 1; the table is damaged");
    }
    let header_len = le32(&header, 12) as usize;
    if !(92..=SECTOR as usize).contains(&header_len) {
        bail!("the GPT header size {header_len} is invalid; the table is damaged");
    }

    let mut check = header[..header_len].to_vec();
    check[16..20].fill(0);
    let stored = le32(&header, 16);
    if crc32fast::hash(&check) != stored {
        bail!("the GPT header checksum does not match; the table is damaged");
    }
    let entries_lba = le64(&header, 72);
    let count = le32(&header, 80);
    let entry_len = le32(&header, 84);
    if !(128..=4096).contains(&entry_len) || !entry_len.is_multiple_of(8) || count > 1024 {
        bail!("the GPT header lists {count} entries of {entry_len} bytes; the table is damaged");
    }

    let entries_at = entries_lba
        .checked_mul(SECTOR)
        .context("the GPT entries lie beyond any disk; the table is damaged")?;
    let entries = disk.read_vec(entries_at, (count * entry_len) as usize)?;
    let stored = le32(&header, 88);
    if crc32fast::hash(&entries) != stored {
        bail!("the GPT partition entries checksum does not match; the table is damaged");
    }

    let mut table = Table {
        kind: "gpt".to_owned(),
        disk_guid: guid_string(&header[56..72]),
        ..Table::default()
    };
    for (index, raw) in entries.chunks(entry_len as usize).enumerate() {
        let kind = &raw[0..16];
        if kind.iter().all(|b| *b == 0) {
            continue;
        }
        let first = le64(raw, 32);
        let last = le64(raw, 40);
        if last < first || last == u64::MAX {
            bail!(
                "GPT entry {} spans sectors {first} to {last}; the table is damaged",
                index + 1
            );
        }
        let name: Vec<u16> = raw[56..128]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|c| *c != 0)
            .collect();
        table.entries.push(TableEntry {
            number: index as u32 + 1,
            start_sector: first,
            sectors: last - first + 1,
            type_id: guid_string(kind).to_uppercase(),
            part_uuid: guid_string(&raw[16..32]),
            name: String::from_utf16_lossy(&name),
        });
    }
    Ok(table)
}

/// Formats a GUID stored in the mixed-endian GPT layout.
pub fn guid_string(bytes: &[u8]) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        le32(bytes, 0),
        u16::from_le_bytes([bytes[4], bytes[5]]),
        u16::from_le_bytes([bytes[6], bytes[7]]),
        bytes[8],
        bytes[9],
        bytes[10..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_uses_mixed_endian_fields() {
        // The ESP type GUID as it is stored on disk.
        let esp = [
            0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
            0xc9, 0x3b,
        ];
        assert_eq!(guid_string(&esp), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    }

    #[test]
    fn mbr_entries_and_extended_partitions() {
        let mut mbr = vec![0u8; 512];
        mbr[440..444].copy_from_slice(&0x1234_abcd_u32.to_le_bytes());
        let first = &mut mbr[446..462];
        first[4] = 0x83;
        first[8..12].copy_from_slice(&2048u32.to_le_bytes());
        first[12..16].copy_from_slice(&4096u32.to_le_bytes());
        let second = &mut mbr[462..478];
        second[4] = 0x05;
        second[8..12].copy_from_slice(&8192u32.to_le_bytes());
        second[12..16].copy_from_slice(&100u32.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        let table = read_mbr(&mbr);
        assert_eq!(table.kind, "msdos");
        assert_eq!(table.disk_guid, "1234abcd");
        assert!(table.has_extended);
        assert_eq!(table.entries.len(), 2);
        assert_eq!(table.entries[0].type_id, "0x83");
        assert_eq!(table.entries[0].part_uuid, "1234abcd-01");
        assert_eq!(table.entries[0].start_sector, 2048);
    }
}
