//! Reads the registry hives of a Windows volume offline, on the host.
//!
//! The hive files are read whole through the image view and parsed here,
//! so checking never opens a hive for writing. Windows resolves paths and
//! registry keys without regard to case, and so does this module.

use std::cell::OnceCell;

use anyhow::{anyhow, Context, Result};
use nt_hive::{Hive as NtHive, KeyNode, NtHiveError};

use crate::check::ImageView;

/// Folder of the system hives, relative to the volume root.
pub const CONFIG_DIR: &str = "/Windows/System32/config";

/// One of the hives the Windows rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiveName {
    Software,
    System,
    Sam,
}

impl HiveName {
    pub fn file_name(self) -> &'static str {
        match self {
            HiveName::Software => "SOFTWARE",
            HiveName::System => "SYSTEM",
            HiveName::Sam => "SAM",
        }
    }
}

/// Registry value types, as Windows numbers them.
pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_DWORD: u32 = 4;

/// One registry value, copied out of its hive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The value name; empty for the key's default value.
    pub name: String,
    /// The type number (1 REG_SZ, 4 REG_DWORD, ...). SAM keys use types
    /// outside the documented range to hold numbers, so this is not an
    /// enum.
    pub kind: u32,
    pub data: Vec<u8>,
}

impl Value {
    /// Returns the value as a DWORD, when it is one.
    pub fn dword(&self) -> Option<u32> {
        (self.kind == REG_DWORD && self.data.len() >= 4)
            .then(|| u32::from_le_bytes([self.data[0], self.data[1], self.data[2], self.data[3]]))
    }

    /// Returns the value as text, when it is a REG_SZ or REG_EXPAND_SZ.
    pub fn text(&self) -> Option<String> {
        matches!(self.kind, REG_SZ | REG_EXPAND_SZ).then(|| utf16_text(&self.data))
    }

    /// Names the type for evidence.
    pub fn kind_name(&self) -> String {
        match self.kind {
            0 => "REG_NONE".to_owned(),
            REG_SZ => "REG_SZ".to_owned(),
            REG_EXPAND_SZ => "REG_EXPAND_SZ".to_owned(),
            3 => "REG_BINARY".to_owned(),
            REG_DWORD => "REG_DWORD".to_owned(),
            7 => "REG_MULTI_SZ".to_owned(),
            11 => "REG_QWORD".to_owned(),
            other => format!("type {other:#x}"),
        }
    }
}

/// Decodes UTF-16LE text up to its first NUL.
pub fn utf16_text(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// The registry of one Windows volume: its hive files, read on first use.
pub struct Registry<'a> {
    fs: &'a dyn ImageView,
    software: OnceCell<Option<Vec<u8>>>,
    system: OnceCell<Option<Vec<u8>>>,
    sam: OnceCell<Option<Vec<u8>>>,
}

impl<'a> Registry<'a> {
    pub fn new(fs: &'a dyn ImageView) -> Self {
        Self {
            fs,
            software: OnceCell::new(),
            system: OnceCell::new(),
            sam: OnceCell::new(),
        }
    }

    fn bytes(&self, hive: HiveName) -> Result<Option<&[u8]>> {
        let cell = match hive {
            HiveName::Software => &self.software,
            HiveName::System => &self.system,
            HiveName::Sam => &self.sam,
        };
        if cell.get().is_none() {
            let path = format!("{CONFIG_DIR}/{}", hive.file_name());
            let bytes = match find_path(self.fs, &path)? {
                Some(found) => self.fs.read(&found)?,
                None => None,
            };
            let _ = cell.set(bytes);
        }
        Ok(cell.get().and_then(|b| b.as_deref()))
    }

    /// Returns whether the hive file exists.
    pub fn has(&self, hive: HiveName) -> Result<bool> {
        Ok(self.bytes(hive)?.is_some())
    }

    /// Runs `f` on the key at `path` (backslash-separated, below the hive
    /// root); `None` when the hive or the key does not exist.
    fn with_key<T>(
        &self,
        hive: HiveName,
        path: &str,
        f: impl FnOnce(&KeyNode<'_, &[u8]>) -> Result<T>,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.bytes(hive)? else {
            return Ok(None);
        };
        let name = hive.file_name();
        if !bytes.starts_with(b"regf") {
            anyhow::bail!("the {name} hive does not start with the signature regf");
        }
        // nt-hive 0.3 panics on some damaged cells instead of returning an
        // error, so a damaged hive must not take the whole check down.
        let read = || -> Result<Option<T>> {
            let parsed = match NtHive::new(bytes) {
                Ok(h) => h,
                // A hive whose last write was not flushed has differing
                // sequence numbers, and its cells are still readable.
                Err(_) => NtHive::without_validation(bytes)
                    .map_err(|e| anyhow!("the {name} hive cannot be parsed: {e}"))?,
            };
            let root = parsed
                .root_key_node()
                .map_err(|e| anyhow!("the {name} hive has no root key: {e}"))?;
            let path = path.trim_matches('\\');
            let key = if path.is_empty() {
                root
            } else {
                match root.subpath(path) {
                    None => return Ok(None),
                    Some(key) => key.map_err(|e| anyhow!("{name}\\{path}: {e}"))?,
                }
            };
            f(&key)
                .with_context(|| format!("failed to read {name}\\{path}"))
                .map(Some)
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
            .unwrap_or_else(|_| Err(anyhow!("the {name} hive is damaged")))
    }

    /// Returns whether the key exists.
    pub fn key_exists(&self, hive: HiveName, path: &str) -> Result<bool> {
        Ok(self.with_key(hive, path, |_| Ok(()))?.is_some())
    }

    /// Lists the names of the key's subkeys; `None` when the key is absent.
    pub fn subkeys(&self, hive: HiveName, path: &str) -> Result<Option<Vec<String>>> {
        self.with_key(hive, path, |key| {
            let mut names = Vec::new();
            if let Some(subkeys) = key.subkeys() {
                for subkey in subkeys.map_err(hive_error)? {
                    let subkey = subkey.map_err(hive_error)?;
                    names.push(subkey.name().map_err(hive_error)?.to_string_lossy());
                }
            }
            Ok(names)
        })
    }

    /// Copies out every value of the key; `None` when the key is absent.
    pub fn values(&self, hive: HiveName, path: &str) -> Result<Option<Vec<Value>>> {
        self.with_key(hive, path, |key| {
            let mut out = Vec::new();
            if let Some(values) = key.values() {
                for value in values.map_err(hive_error)? {
                    let value = value.map_err(hive_error)?;
                    let kind = match value.data_type() {
                        Ok(kind) => kind as u32,
                        Err(NtHiveError::UnsupportedKeyValueDataType { actual, .. }) => actual,
                        Err(e) => return Err(hive_error(e)),
                    };
                    out.push(Value {
                        name: value.name().map_err(hive_error)?.to_string_lossy(),
                        kind,
                        data: value
                            .data()
                            .and_then(|d| d.into_vec())
                            .map_err(hive_error)?,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Returns one value of a key, matching its name without regard to
    /// case; `None` when the key or the value is absent.
    pub fn value(&self, hive: HiveName, path: &str, name: &str) -> Result<Option<Value>> {
        Ok(self.values(hive, path)?.and_then(|values| {
            values
                .into_iter()
                .find(|v| v.name.eq_ignore_ascii_case(name))
        }))
    }

    /// Returns a DWORD value; `None` when it is absent or of another type.
    pub fn dword(&self, hive: HiveName, path: &str, name: &str) -> Result<Option<u32>> {
        Ok(self.value(hive, path, name)?.and_then(|v| v.dword()))
    }

    /// Returns a string value; `None` when it is absent or not text.
    pub fn text(&self, hive: HiveName, path: &str, name: &str) -> Result<Option<String>> {
        Ok(self.value(hive, path, name)?.and_then(|v| v.text()))
    }

    /// Names the control set Windows boots with, `ControlSet001` when
    /// `Select\Current` is 1. `None` when the SYSTEM hive has no such value.
    pub fn control_set(&self) -> Result<Option<String>> {
        let current = self.dword(HiveName::System, "Select", "Current")?;
        Ok(current.map(|n| format!("ControlSet{n:03}")))
    }

    /// Like [`Self::control_set`], but an error when there is none.
    pub fn require_control_set(&self) -> Result<String> {
        self.control_set()?.ok_or_else(|| {
            anyhow!("the SYSTEM hive has no Select\\Current value naming the control set")
        })
    }
}

fn hive_error(e: NtHiveError) -> anyhow::Error {
    anyhow!("{e}")
}

/// Finds `path` on the volume without regard to case, the way Windows
/// looks paths up; returns the path as the volume spells it.
pub fn find_path(fs: &dyn ImageView, path: &str) -> Result<Option<String>> {
    let mut found = String::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let dir = if found.is_empty() { "/" } else { &found };
        let names = fs.list_dir(dir)?;
        let name = match names.iter().find(|n| *n == part) {
            Some(exact) => exact.clone(),
            None => match names.iter().find(|n| n.eq_ignore_ascii_case(part)) {
                Some(other) => other.clone(),
                None => return Ok(None),
            },
        };
        found.push('/');
        found.push_str(&name);
    }
    Ok(Some(if found.is_empty() {
        "/".to_owned()
    } else {
        found
    }))
}

/// Describes a REG_DWORD check for evidence: the value's type name and,
/// when it is a DWORD, the number.
pub fn describe(value: Option<&Value>) -> String {
    match value {
        None => "absent".to_owned(),
        Some(v) => match v.dword() {
            Some(n) => format!("REG_DWORD {n}"),
            None => match v.text() {
                Some(text) => format!("{} {text:?}", v.kind_name()),
                None => v.kind_name(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::DirView;

    #[test]
    fn damaged_hive_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("Windows/System32/config");
        std::fs::create_dir_all(&config).unwrap();
        let mut bytes = vec![0u8; 8192];
        bytes[..4].copy_from_slice(b"regf");
        // Root cell offset 0xFFFFFFFF, where a cell must be.
        bytes[0x24..0x28].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(config.join("SYSTEM"), &bytes).unwrap();
        std::fs::write(config.join("software"), b"not a hive").unwrap();
        let view = DirView::new(dir.path());
        let reg = Registry::new(&view);
        assert!(reg.dword(HiveName::System, "Select", "Current").is_err());
        let err = reg
            .text(HiveName::Software, "Microsoft", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("signature regf"), "{err}");
        assert!(!reg.has(HiveName::Sam).unwrap());
    }
}
