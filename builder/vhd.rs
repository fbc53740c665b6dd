//! The fixed VHD container: a raw disk followed by a 512-byte footer.
//!
//! Layout from Microsoft's "Virtual Hard Disk Image Format Specification"
//! (version 1.0): every field is big-endian and the checksum is the one's
//! complement of the byte sum of the footer with the checksum field zeroed.

use anyhow::{bail, ensure, Result};

pub const FOOTER_LEN: usize = 512;
pub const COOKIE: &[u8; 8] = b"conectix";
/// Disk type 2: fixed hard disk.
pub const DISK_TYPE_FIXED: u32 = 2;
pub const DISK_TYPE_DYNAMIC: u32 = 3;
pub const DISK_TYPE_DIFFERENCING: u32 = 4;
/// File format version 1.0.
pub const FORMAT_VERSION: u32 = 0x0001_0000;
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01 UTC).
pub const VHD_EPOCH_OFFSET: u64 = 946_684_800;

/// A parsed VHD footer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Footer {
    pub cookie: [u8; 8],
    pub features: u32,
    pub format_version: u32,
    pub data_offset: u64,
    /// Seconds since 2000-01-01 UTC.
    pub timestamp: u32,
    pub creator_app: [u8; 4],
    pub creator_version: u32,
    pub creator_os: [u8; 4],
    pub original_size: u64,
    pub current_size: u64,
    pub cylinders: u16,
    pub heads: u8,
    pub sectors_per_track: u8,
    pub disk_type: u32,
    pub checksum: u32,
    pub unique_id: [u8; 16],
    pub saved_state: u8,
}

/// CHS geometry of a disk size, by the algorithm in the VHD specification.
pub fn geometry(size: u64) -> (u16, u8, u8) {
    let mut total = (size / 512).min(65535 * 16 * 255);
    let (spt, heads, cyl_x_heads);
    if total >= 65535 * 16 * 63 {
        spt = 255u64;
        heads = 16u64;
        cyl_x_heads = total / spt;
    } else {
        let mut s = 17u64;
        let mut cth = total / s;
        let mut h = cth.div_ceil(1024);
        if h < 4 {
            h = 4;
        }
        if cth >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            cth = total / s;
        }
        if cth >= h * 1024 {
            s = 63;
            h = 16;
            cth = total / s;
        }
        spt = s;
        heads = h;
        cyl_x_heads = cth;
    }
    total = cyl_x_heads / heads;
    (total as u16, heads as u8, spt as u8)
}

/// Sums the footer bytes, skipping the checksum field, and complements.
pub fn checksum(bytes: &[u8; FOOTER_LEN]) -> u32 {
    let sum = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !(64..68).contains(i))
        .fold(0u32, |acc, (_, b)| acc.wrapping_add(u32::from(*b)));
    !sum
}

impl Footer {
    /// A footer for a fixed disk of `size` bytes.
    ///
    /// `unix_time` and `unique_id` are inputs, not read from the clock or a
    /// random source, so the same inputs give the same bytes.
    pub fn fixed(size: u64, unix_time: u64, unique_id: [u8; 16]) -> Self {
        let (cylinders, heads, sectors_per_track) = geometry(size);
        Self {
            cookie: *COOKIE,
            features: 2,
            format_version: FORMAT_VERSION,
            data_offset: u64::MAX,
            timestamp: unix_time.saturating_sub(VHD_EPOCH_OFFSET) as u32,
            creator_app: *b"frge",
            creator_version: 0x0001_0000,
            creator_os: *b"Wi2k",
            original_size: size,
            current_size: size,
            cylinders,
            heads,
            sectors_per_track,
            disk_type: DISK_TYPE_FIXED,
            checksum: 0,
            unique_id,
            saved_state: 0,
        }
    }

    /// Serializes the footer and fills in its checksum.
    pub fn to_bytes(&self) -> [u8; FOOTER_LEN] {
        let mut b = [0u8; FOOTER_LEN];
        b[0..8].copy_from_slice(&self.cookie);
        b[8..12].copy_from_slice(&self.features.to_be_bytes());
        b[12..16].copy_from_slice(&self.format_version.to_be_bytes());
        b[16..24].copy_from_slice(&self.data_offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.timestamp.to_be_bytes());
        b[28..32].copy_from_slice(&self.creator_app);
        b[32..36].copy_from_slice(&self.creator_version.to_be_bytes());
        b[36..40].copy_from_slice(&self.creator_os);
        b[40..48].copy_from_slice(&self.original_size.to_be_bytes());
        b[48..56].copy_from_slice(&self.current_size.to_be_bytes());
        b[56..58].copy_from_slice(&self.cylinders.to_be_bytes());
        b[58] = self.heads;
        b[59] = self.sectors_per_track;
        b[60..64].copy_from_slice(&self.disk_type.to_be_bytes());
        b[68..84].copy_from_slice(&self.unique_id);
        b[84] = self.saved_state;
        let sum = checksum(&b);
        b[64..68].copy_from_slice(&sum.to_be_bytes());
        b
    }

    /// Parses a footer without judging it; see [`Footer::checksum_valid`].
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        ensure!(
            bytes.len() >= FOOTER_LEN,
            "a VHD footer is {FOOTER_LEN} bytes, got {}",
            bytes.len()
        );
        let b = &bytes[..FOOTER_LEN];
        if &b[0..8] != COOKIE {
            bail!("no VHD footer: the last 512 bytes do not start with the cookie \"conectix\"");
        }
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let arr4 = |o: usize| -> [u8; 4] { b[o..o + 4].try_into().expect("4 bytes") };
        Ok(Self {
            cookie: *COOKIE,
            features: u32_at(8),
            format_version: u32_at(12),
            data_offset: u64_at(16),
            timestamp: u32_at(24),
            creator_app: arr4(28),
            creator_version: u32_at(32),
            creator_os: arr4(36),
            original_size: u64_at(40),
            current_size: u64_at(48),
            cylinders: u16::from_be_bytes([b[56], b[57]]),
            heads: b[58],
            sectors_per_track: b[59],
            disk_type: u32_at(60),
            checksum: u32_at(64),
            unique_id: b[68..84].try_into().expect("16 bytes"),
            saved_state: b[84],
        })
    }

    /// Whether the stored checksum matches the footer's bytes.
    pub fn checksum_valid(raw: &[u8]) -> bool {
        let Ok(arr) = <[u8; FOOTER_LEN]>::try_from(&raw[..FOOTER_LEN.min(raw.len())]) else {
            return false;
        };
        let stored = u32::from_be_bytes(arr[64..68].try_into().expect("4 bytes"));
        stored == checksum(&arr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips() {
        let f = Footer::fixed(30 << 30, 1_700_000_000, [7; 16]);
        let bytes = f.to_bytes();
        assert!(Footer::checksum_valid(&bytes));
        let mut parsed = Footer::parse(&bytes).unwrap();
        parsed.checksum = 0;
        assert_eq!(parsed, f);
    }

    #[test]
    fn corrupted_footer_fails_checksum() {
        let mut bytes = Footer::fixed(1 << 30, 0, [0; 16]).to_bytes();
        bytes[45] ^= 1;
        assert!(!Footer::checksum_valid(&bytes));
    }

    #[test]
    fn geometry_caps_large_disks() {
        assert_eq!(geometry(1 << 40), (65535, 16, 255));
    }

    #[test]
    fn geometry_of_small_disk() {
        // 1 GiB: 2097152 sectors -> 63 sectors per track, 16 heads.
        assert_eq!(geometry(1 << 30), (2080, 16, 63));
    }

    #[test]
    fn parse_rejects_missing_cookie() {
        let err = Footer::parse(&[0u8; 512]).unwrap_err();
        assert!(err.to_string().contains("conectix"));
    }
}
