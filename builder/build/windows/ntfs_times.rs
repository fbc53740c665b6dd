//! Clamps the time stamps of an NTFS volume to the build's epoch, on the
//! host, after the appliance has closed the volume.
//!
//! ntfs-3g stamps the MFT change time of every file it touches, and the
//! creation time of every file it creates, from the appliance's clock, and
//! copies these times into the `$FILE_NAME` attributes and the parent
//! folder's index. No libguestfs call sets them back (`utimens` sets the
//! access and modification times only), so two builds of one recipe would
//! differ in those bytes alone. This pass rewrites every such time that is
//! later than the epoch, in `$STANDARD_INFORMATION`, `$FILE_NAME` and the
//! `$I30` folder indexes, and nothing else.
//!
//! Layout from the NTFS documentation of the Linux-NTFS project (MFT
//! records, attributes, runlists, index blocks, update sequence arrays).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

/// 100 ns intervals between 1601-01-01 and 1970-01-01.
const NTFS_UNIX_OFFSET: u64 = 116_444_736_000_000_000;

const ATTR_STANDARD_INFORMATION: u32 = 0x10;
const ATTR_FILE_NAME: u32 = 0x30;
const ATTR_DATA: u32 = 0x80;
const ATTR_INDEX_ROOT: u32 = 0x90;
const ATTR_INDEX_ALLOCATION: u32 = 0xA0;
const ATTR_END: u32 = 0xFFFF_FFFF;

/// Records 0 to 3 (`$MFT`, `$MFTMirr`, `$LogFile`, `$Volume`) have a copy
/// in `$MFTMirr` that must stay equal, so they are left alone; the build
/// does not touch them.
const FIRST_CLAMPED_RECORD: u64 = 4;

/// Runs of clusters: (first cluster, number of clusters).
type Runs = Vec<(u64, u64)>;

/// Converts seconds since 1970 to an NTFS time.
pub fn ntfs_time(unix_seconds: u64) -> u64 {
    unix_seconds * 10_000_000 + NTFS_UNIX_OFFSET
}

/// The geometry of an NTFS volume, from its boot sector.
struct Volume<'a> {
    file: &'a File,
    /// Byte offset of the volume in the image file.
    start: u64,
    cluster: u64,
    record_size: usize,
    index_block_size: usize,
}

impl Volume<'_> {
    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, self.start + offset)
            .with_context(|| format!("failed to read {len} bytes at volume offset {offset}"))?;
        Ok(buf)
    }

    fn write(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.start + offset)
            .with_context(|| format!("failed to write at volume offset {offset}"))
    }

    /// Returns the volume offsets of the whole blocks of `block` bytes that
    /// the runs of clusters cover, in order.
    fn blocks(&self, runs: &[(u64, u64)], block: usize) -> Vec<u64> {
        let mut offsets = Vec::new();
        for (lcn, clusters) in runs {
            let start = lcn * self.cluster;
            let len = clusters * self.cluster;
            let mut at = 0;
            while at + block as u64 <= len {
                offsets.push(start + at);
                at += block as u64;
            }
        }
        offsets
    }
}

/// Clamps the times of the NTFS volume that starts at byte `start` of
/// `image` to `epoch` (seconds since 1970). Returns the number of time
/// stamps changed.
pub fn clamp(image: &Path, start: u64, epoch: u64) -> Result<usize> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .with_context(|| format!("failed to open {}", image.display()))?;
    let mut boot = [0u8; 512];
    file.read_exact_at(&mut boot, start)
        .context("failed to read the NTFS boot sector")?;
    ensure!(
        &boot[3..11] == b"NTFS    ",
        "the volume at byte {start} of {} is not NTFS",
        image.display()
    );
    let sector = u64::from(u16::from_le_bytes([boot[0x0B], boot[0x0C]]));
    let per_cluster = match boot[0x0D] {
        n if n <= 0x80 => u64::from(n),
        n => 1 << (256 - u32::from(n)),
    };
    let cluster = sector * per_cluster;
    ensure!(cluster > 0, "the NTFS boot sector gives no cluster size");
    let size_of = |v: u8| -> usize {
        let v = v as i8;
        if v < 0 {
            1 << (-i32::from(v))
        } else {
            v as usize * cluster as usize
        }
    };
    let volume = Volume {
        file: &file,
        start,
        cluster,
        record_size: size_of(boot[0x40]),
        index_block_size: size_of(boot[0x44]),
    };
    let mft_lcn = u64::from_le_bytes(boot[0x30..0x38].try_into().expect("8 bytes"));
    let limit = ntfs_time(epoch);

    // Record 0 describes the MFT itself: its $DATA runlist gives where
    // every other record lies.
    let mut first = volume.read(mft_lcn * cluster, volume.record_size)?;
    unprotect(&mut first, "FILE").context("MFT record 0 is damaged")?;
    let (runs, mft_size) = data_runs(&first)?.context("MFT record 0 has no $DATA runlist")?;

    let mut changed = 0;
    let records = volume.blocks(&runs, volume.record_size);
    let count = (mft_size / volume.record_size as u64) as usize;
    for (number, offset) in records.into_iter().take(count).enumerate() {
        if (number as u64) < FIRST_CLAMPED_RECORD {
            continue;
        }
        let mut record = volume.read(offset, volume.record_size)?;
        // Records never used, and damaged ones, are left as they are.
        if unprotect(&mut record, "FILE").is_err() {
            continue;
        }
        let in_use = u16::from_le_bytes([record[0x16], record[0x17]]) & 1 == 1;
        if !in_use {
            continue;
        }
        let (n, indexes) = clamp_record(&mut record, limit)
            .with_context(|| format!("MFT record {number} is damaged"))?;
        if n > 0 {
            protect(&mut record)?;
            volume.write(offset, &record)?;
            changed += n;
        }
        for runs in indexes {
            for block_offset in volume.blocks(&runs, volume.index_block_size) {
                let mut block = volume.read(block_offset, volume.index_block_size)?;
                // Blocks not yet used by the index have no signature.
                if unprotect(&mut block, "INDX").is_err() {
                    continue;
                }
                let n = clamp_index(&mut block, 0x18, limit)
                    .with_context(|| format!("an index block of MFT record {number} is damaged"))?;
                if n > 0 {
                    protect(&mut block)?;
                    volume.write(block_offset, &block)?;
                    changed += n;
                }
            }
        }
    }
    Ok(changed)
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    let bytes = b.get(at..at + 2).context("a field lies past the end")?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    let bytes = b.get(at..at + 4).context("a field lies past the end")?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    let bytes = b.get(at..at + 8).context("a field lies past the end")?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

/// Checks the signature and undoes the update sequence: the last two
/// bytes of each 512-byte sector hold the sequence number on disk, and the
/// real bytes are in the update sequence array.
fn unprotect(block: &mut [u8], signature: &str) -> Result<()> {
    ensure!(
        block.get(..4) == Some(signature.as_bytes()),
        "no {signature} signature"
    );
    let (array, count) = (u16_at(block, 4)? as usize, u16_at(block, 6)? as usize);
    ensure!(
        count >= 1 && (count - 1) * 512 <= block.len(),
        "bad update sequence"
    );
    let usn = u16_at(block, array)?;
    for i in 1..count {
        let end = i * 512 - 2;
        ensure!(u16_at(block, end)? == usn, "torn write in sector {i}");
        let real = u16_at(block, array + 2 * i)?;
        block[end..end + 2].copy_from_slice(&real.to_le_bytes());
    }
    Ok(())
}

/// Redoes the update sequence before a block is written back, with the
/// sequence number it had.
fn protect(block: &mut [u8]) -> Result<()> {
    let (array, count) = (u16_at(block, 4)? as usize, u16_at(block, 6)? as usize);
    let usn = u16_at(block, array)?;
    for i in 1..count {
        let end = i * 512 - 2;
        let real = u16_at(block, end)?;
        block[array + 2 * i..array + 2 * i + 2].copy_from_slice(&real.to_le_bytes());
        block[end..end + 2].copy_from_slice(&usn.to_le_bytes());
    }
    Ok(())
}

/// Sets each of `count` times at `at` that is later than `limit` to it.
fn clamp_times(b: &mut [u8], at: usize, count: usize, limit: u64) -> Result<usize> {
    let mut changed = 0;
    for i in 0..count {
        let field = at + 8 * i;
        if u64_at(b, field)? > limit {
            b[field..field + 8].copy_from_slice(&limit.to_le_bytes());
            changed += 1;
        }
    }
    Ok(changed)
}

/// Walks the attributes of an MFT record with its update sequence undone,
/// yielding (type, offset) of each.
fn attributes(record: &[u8]) -> Result<Vec<(u32, usize)>> {
    let mut at = u16_at(record, 0x14)? as usize;
    let mut out = Vec::new();
    loop {
        let kind = u32_at(record, at)?;
        if kind == ATTR_END {
            return Ok(out);
        }
        let len = u32_at(record, at + 4)? as usize;
        ensure!(
            len >= 0x18 && at + len <= record.len(),
            "bad attribute length"
        );
        out.push((kind, at));
        at += len;
    }
}

/// Returns the name of the attribute at `at`.
fn attribute_name(record: &[u8], at: usize) -> Result<String> {
    let len = *record.get(at + 9).context("a field lies past the end")? as usize;
    let offset = u16_at(record, at + 0x0A)? as usize;
    let bytes = record
        .get(at + offset..at + offset + 2 * len)
        .context("an attribute name lies past the end")?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// Returns the offset of a resident attribute's value.
fn resident_value(record: &[u8], at: usize) -> Result<usize> {
    ensure!(record[at + 8] == 0, "expected a resident attribute");
    Ok(at + u16_at(record, at + 0x14)? as usize)
}

/// Decodes the runlist of the non-resident attribute at `at` into (first
/// cluster, number of clusters) runs; sparse runs are left out.
fn runlist(record: &[u8], at: usize) -> Result<Runs> {
    ensure!(record[at + 8] == 1, "expected a non-resident attribute");
    let mut p = at + u16_at(record, at + 0x20)? as usize;
    let end = at + u32_at(record, at + 4)? as usize;
    let mut lcn: i64 = 0;
    let mut runs = Vec::new();
    while p < end {
        let header = record[p];
        if header == 0 {
            break;
        }
        let (len_size, off_size) = ((header & 0x0F) as usize, (header >> 4) as usize);
        ensure!(len_size <= 8 && off_size <= 8, "bad runlist header");
        let field = record
            .get(p + 1..p + 1 + len_size + off_size)
            .context("a runlist lies past the end")?;
        let mut length = 0u64;
        for (i, b) in field[..len_size].iter().enumerate() {
            length |= u64::from(*b) << (8 * i);
        }
        if off_size > 0 {
            let mut delta = 0i64;
            for (i, b) in field[len_size..].iter().enumerate() {
                delta |= i64::from(*b) << (8 * i);
            }
            // Sign-extend the offset, which is relative to the last run.
            let shift = 64 - 8 * off_size as u32;
            delta = (delta << shift) >> shift;
            lcn += delta;
            ensure!(lcn >= 0, "a run starts before the volume");
            runs.push((lcn as u64, length));
        }
        p += 1 + len_size + off_size;
    }
    Ok(runs)
}

/// Returns the runlist and size of the unnamed `$DATA` attribute.
fn data_runs(record: &[u8]) -> Result<Option<(Runs, u64)>> {
    for (kind, at) in attributes(record)? {
        if kind == ATTR_DATA && record[at + 9] == 0 && record[at + 8] == 1 {
            return Ok(Some((runlist(record, at)?, u64_at(record, at + 0x30)?)));
        }
    }
    Ok(None)
}

/// Clamps the times in one MFT record. Returns the number changed and the
/// runlists of its `$I30` index blocks.
fn clamp_record(record: &mut [u8], limit: u64) -> Result<(usize, Vec<Runs>)> {
    let mut changed = 0;
    let mut indexes = Vec::new();
    for (kind, at) in attributes(record)? {
        match kind {
            ATTR_STANDARD_INFORMATION => {
                let value = resident_value(record, at)?;
                changed += clamp_times(record, value, 4, limit)?;
            }
            ATTR_FILE_NAME => {
                let value = resident_value(record, at)?;
                changed += clamp_times(record, value + 8, 4, limit)?;
            }
            ATTR_INDEX_ROOT if attribute_name(record, at)? == "$I30" => {
                let value = resident_value(record, at)?;
                changed += clamp_index(record, value + 0x10, limit)?;
            }
            ATTR_INDEX_ALLOCATION if attribute_name(record, at)? == "$I30" => {
                indexes.push(runlist(record, at)?);
            }
            _ => {}
        }
    }
    Ok((changed, indexes))
}

/// Clamps the `$FILE_NAME` times of the entries of the index whose header
/// is at `header` in `b`.
fn clamp_index(b: &mut [u8], header: usize, limit: u64) -> Result<usize> {
    let first = u32_at(b, header)? as usize;
    let used = u32_at(b, header + 4)? as usize;
    let end = header + used;
    ensure!(end <= b.len(), "an index lies past the end");
    let mut at = header + first;
    let mut changed = 0;
    while at + 0x10 <= end {
        let len = u16_at(b, at + 8)? as usize;
        let key = u16_at(b, at + 10)? as usize;
        let flags = u16_at(b, at + 12)?;
        if flags & 2 != 0 {
            break;
        }
        ensure!(len >= 0x10 && at + len <= end, "bad index entry length");
        if key >= 0x42 {
            changed += clamp_times(b, at + 0x10 + 8, 4, limit)?;
        }
        at += len;
    }
    if at + 0x10 > end {
        bail!("an index has no last entry");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_converts_to_ntfs_time() {
        // 2023-11-14 22:13:20 UTC, as ntfs-3g reads it back.
        assert_eq!(ntfs_time(1_700_000_000), 0x01DA_1747_C66D_0000);
    }

    #[test]
    fn update_sequence_round_trips() {
        let mut block = vec![0u8; 1024];
        block[..4].copy_from_slice(b"FILE");
        block[4..6].copy_from_slice(&0x30u16.to_le_bytes());
        block[6..8].copy_from_slice(&3u16.to_le_bytes());
        block[0x30..0x32].copy_from_slice(&7u16.to_le_bytes());
        block[510..512].copy_from_slice(&[0xAA, 0xBB]);
        block[1022..1024].copy_from_slice(&[0xCC, 0xDD]);
        let plain = block.clone();
        protect(&mut block).unwrap();
        assert_eq!(&block[510..512], &7u16.to_le_bytes());
        assert_eq!(&block[0x32..0x34], &[0xAA, 0xBB]);
        unprotect(&mut block, "FILE").unwrap();
        assert_eq!(&block[510..512], &[0xAA, 0xBB]);
        assert_eq!(&block[1022..1024], &[0xCC, 0xDD]);
        assert_eq!(block[..0x32], plain[..0x32]);
        block[1022] ^= 1;
        protect(&mut block).unwrap();
        block[1022] = 0;
        assert!(
            unprotect(&mut block, "FILE").is_err(),
            "a torn write is found"
        );
    }

    #[test]
    fn runlist_decodes_relative_offsets() {
        // One attribute header with a runlist at 0x40: 0x10 clusters at
        // 0x1000, then 0x08 at 0x1000 - 0x800, then a sparse run.
        let mut record = vec![0u8; 0x60];
        record[8] = 1;
        record[4..8].copy_from_slice(&0x60u32.to_le_bytes());
        record[0x20..0x22].copy_from_slice(&0x40u16.to_le_bytes());
        let runs = [
            0x21, 0x10, 0x00, 0x10, 0x21, 0x08, 0x00, 0xF8, 0x01, 0x05, 0x00,
        ];
        record[0x40..0x40 + runs.len()].copy_from_slice(&runs);
        assert_eq!(
            runlist(&record, 0).unwrap(),
            [(0x1000, 0x10), (0x800, 0x08)]
        );
    }
}
