//! Windows registry hive files (`SOFTWARE`, `SYSTEM`, ...), read with the
//! `nt-hive` crate. Only keys and their DWORD and string values can be
//! read, and nothing here writes a hive.

use anyhow::{anyhow, bail, Context, Result};
use nt_hive::{KeyNode, NtHiveError};

/// A hive file whose bytes the caller keeps.
pub struct Hive<'a> {
    inner: nt_hive::Hive<&'a [u8]>,
}

/// One key of a hive.
pub struct Key<'h, 'a> {
    node: KeyNode<'h, &'a [u8]>,
}

impl<'a> Hive<'a> {
    /// Parses the hive in `bytes`. When the two sequence numbers differ,
    /// the OS stopped before it wrote the hive back in full. Such a hive is
    /// read as it is, without replaying its log files.
    pub fn open(bytes: &'a [u8]) -> Result<Self> {
        // nt-hive 0.3 panics instead of failing on a missing signature.
        if !bytes.starts_with(b"regf") {
            bail!("registry hive: the file does not start with the signature regf");
        }
        let inner = guarded(|| match nt_hive::Hive::new(bytes) {
            Ok(hive) => Ok(hive),
            Err(NtHiveError::SequenceNumberMismatch { primary, secondary }) => {
                tracing::debug!(
                    primary,
                    secondary,
                    "the hive's sequence numbers differ, so it is read without its logs"
                );
                nt_hive::Hive::without_validation(bytes).map_err(hive_error)
            }
            Err(e) => Err(hive_error(e)),
        })?;
        Ok(Self { inner })
    }

    /// Finds the key at `path`, whose names are separated by backslashes
    /// and compared without regard to case as Windows does. Returns `None`
    /// when a part of the path is missing. The empty path is the root key.
    pub fn key(&self, path: &str) -> Result<Option<Key<'_, 'a>>> {
        guarded(|| {
            let root = self.inner.root_key_node().map_err(hive_error)?;
            match root.subpath(path) {
                None => Ok(None),
                Some(node) => {
                    let node = node
                        .map_err(hive_error)
                        .with_context(|| format!("key {path}"))?;
                    Ok(Some(Key { node }))
                }
            }
        })
    }
}

impl Key<'_, '_> {
    /// Reads a `REG_DWORD` value, or `None` when the key has no value `name`.
    pub fn dword(&self, name: &str) -> Result<Option<u32>> {
        guarded(|| match self.node.value(name) {
            None => Ok(None),
            Some(value) => {
                let value = value.map_err(hive_error)?;
                let dword = value
                    .dword_data()
                    .map_err(hive_error)
                    .with_context(|| format!("value {name}"))?;
                Ok(Some(dword))
            }
        })
    }

    /// Reads a `REG_SZ` or `REG_EXPAND_SZ` value without expanding it, or
    /// `None` when the key has no value `name`.
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        guarded(|| match self.node.value(name) {
            None => Ok(None),
            Some(value) => {
                let value = value.map_err(hive_error)?;
                let text = value
                    .string_data()
                    .map_err(hive_error)
                    .with_context(|| format!("value {name}"))?;
                Ok(Some(text))
            }
        })
    }
}

/// Runs `read` and turns a panic into an error. nt-hive 0.3 asserts on some
/// malformed input, such as a cell offset of 0xFFFFFFFF where a cell must
/// be, instead of returning an error.
fn guarded<T>(read: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
        .unwrap_or_else(|_| Err(anyhow!("registry hive: the hive is damaged")))
}

fn hive_error(e: NtHiveError) -> anyhow::Error {
    anyhow!("registry hive: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG_SZ: u32 = 1;
    const REG_DWORD: u32 = 4;

    /// Cells of one 4 KiB hive bin, laid out one after another. Offsets
    /// are from the start of the bin, as the hive format counts them.
    struct Bin {
        bytes: Vec<u8>,
    }

    impl Bin {
        fn new() -> Self {
            let mut bytes = vec![0u8; 0x20];
            bytes[0..4].copy_from_slice(b"hbin");
            bytes[8..12].copy_from_slice(&0x1000u32.to_le_bytes());
            Self { bytes }
        }

        /// Appends an allocated cell and returns its offset.
        fn cell(&mut self, data: &[u8]) -> u32 {
            let offset = self.bytes.len() as u32;
            let size = (4 + data.len()).next_multiple_of(8);
            self.bytes
                .extend_from_slice(&(-(size as i32)).to_le_bytes());
            self.bytes.extend_from_slice(data);
            self.bytes.resize(offset as usize + size, 0);
            offset
        }

        /// Appends a key node named `name` with its subkey and value lists.
        fn key(&mut self, name: &str, flags: u16, subkeys: &[u32], values: &[u32]) -> u32 {
            let subkey_list = if subkeys.is_empty() {
                u32::MAX
            } else {
                let mut list = b"lf".to_vec();
                list.extend_from_slice(&(subkeys.len() as u16).to_le_bytes());
                for offset in subkeys {
                    list.extend_from_slice(&offset.to_le_bytes());
                    list.extend_from_slice(b"Sub\0");
                }
                self.cell(&list)
            };
            let value_list = if values.is_empty() {
                u32::MAX
            } else {
                let list: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.cell(&list)
            };
            let mut node = b"nk".to_vec();
            node.extend_from_slice(&flags.to_le_bytes());
            node.extend_from_slice(&[0; 12]); // timestamp, access bits
            let fields = [
                0,
                subkeys.len() as u32,
                0,
                subkey_list,
                u32::MAX,
                values.len() as u32,
                value_list,
                u32::MAX,
                u32::MAX,
                0,
                0,
                0,
                0,
                0,
            ];
            for field in fields {
                node.extend_from_slice(&field.to_le_bytes());
            }
            node.extend_from_slice(&(name.len() as u16).to_le_bytes());
            node.extend_from_slice(&0u16.to_le_bytes());
            node.extend_from_slice(name.as_bytes());
            self.cell(&node)
        }

        /// Appends a value: data of up to 4 bytes stays in the value cell.
        fn value(&mut self, name: &str, kind: u32, data: &[u8]) -> u32 {
            let (size, offset) = if data.len() <= 4 {
                let mut inline = [0u8; 4];
                inline[..data.len()].copy_from_slice(data);
                (data.len() as u32 | 0x8000_0000, u32::from_le_bytes(inline))
            } else {
                (data.len() as u32, self.cell(data))
            };
            let mut value = b"vk".to_vec();
            value.extend_from_slice(&(name.len() as u16).to_le_bytes());
            value.extend_from_slice(&size.to_le_bytes());
            value.extend_from_slice(&offset.to_le_bytes());
            value.extend_from_slice(&kind.to_le_bytes());
            value.extend_from_slice(&1u16.to_le_bytes()); // ASCII name
            value.extend_from_slice(&0u16.to_le_bytes());
            value.extend_from_slice(name.as_bytes());
            self.cell(&value)
        }
    }

    /// Builds a hive with the key `Sub`, which has a DWORD `Number` of 10
    /// and a string `Text` of "6.3", under a root with the given
    /// sequence numbers.
    fn hive_bytes(primary: u32, secondary: u32) -> Vec<u8> {
        let mut bin = Bin::new();
        let number = bin.value("Number", REG_DWORD, &10u32.to_le_bytes());
        let text: Vec<u8> = "6.3\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let text = bin.value("Text", REG_SZ, &text);
        // Flags: ASCII name (0x20), and the root is the hive's entry (0x04).
        let sub = bin.key("Sub", 0x20, &[], &[number, text]);
        let root = bin.key("ROOT", 0x24, &[sub], &[]);
        let used = bin.bytes.len();
        bin.bytes.resize(0x1000, 0);
        bin.bytes[used..used + 4].copy_from_slice(&((0x1000 - used) as i32).to_le_bytes());

        let mut base = vec![0u8; 0x1000];
        let header = [
            u32::from_le_bytes(*b"regf"),
            primary,
            secondary,
            0,
            0,
            1,
            5,
            0,
            1,
            root,
            0x1000,
            1,
        ];
        for (i, field) in header.iter().enumerate() {
            base[i * 4..i * 4 + 4].copy_from_slice(&field.to_le_bytes());
        }
        let checksum = base[..0x1fc].chunks(4).fold(0u32, |sum, word| {
            sum ^ u32::from_le_bytes(word.try_into().unwrap())
        });
        base[0x1fc..0x200].copy_from_slice(&checksum.to_le_bytes());
        base.extend_from_slice(&bin.bytes);
        base
    }

    #[test]
    fn reads_dword_and_string_values() {
        let bytes = hive_bytes(7, 7);
        let hive = Hive::open(&bytes).unwrap();
        let key = hive.key("SUB").unwrap().expect("names ignore case");
        assert_eq!(key.dword("Number").unwrap(), Some(10));
        assert_eq!(key.string("text").unwrap().as_deref(), Some("6.3"));
        assert_eq!(key.dword("Missing").unwrap(), None);
        assert!(key.dword("Text").is_err(), "a string is not a DWORD");
        assert!(hive.key("Sub\\Deeper").unwrap().is_none());
        assert!(
            hive.key("").unwrap().is_some(),
            "the empty path is the root"
        );
    }

    #[test]
    fn differing_sequence_numbers_still_open() {
        let bytes = hive_bytes(8, 7);
        let hive = Hive::open(&bytes).unwrap();
        let key = hive.key("Sub").unwrap().unwrap();
        assert_eq!(key.dword("Number").unwrap(), Some(10));
    }

    #[test]
    fn damaged_hive_is_an_error() {
        let mut bytes = hive_bytes(7, 7);
        bytes[0..4].copy_from_slice(b"nope");
        assert!(Hive::open(&bytes).is_err());
        assert!(Hive::open(&bytes[..100]).is_err());
    }

    #[test]
    fn missing_root_cell_is_an_error() {
        let mut bytes = hive_bytes(7, 7);
        // The root cell offset, with the checksum kept valid.
        bytes[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        let checksum = bytes[..0x1fc].chunks(4).fold(0u32, |sum, word| {
            sum ^ u32::from_le_bytes(word.try_into().unwrap())
        });
        bytes[0x1fc..0x200].copy_from_slice(&checksum.to_le_bytes());
        let hive = Hive::open(&bytes).unwrap();
        assert!(hive.key("Sub").is_err());
    }
}
