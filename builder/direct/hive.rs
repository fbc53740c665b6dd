//! Windows registry hive files (`SOFTWARE`, `SYSTEM`, ...), read with the
//! `nt-hive` crate. Only reading keys and their DWORD and string values is
//! offered; nothing here writes a hive.

use anyhow::{anyhow, Context, Result};
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
    /// Parses the hive in `bytes`. A hive whose two sequence numbers differ
    /// was not fully written back when the OS stopped; it is read as it is,
    /// without replaying its log files.
    pub fn open(bytes: &'a [u8]) -> Result<Self> {
        let inner = match nt_hive::Hive::new(bytes) {
            Ok(hive) => hive,
            Err(NtHiveError::SequenceNumberMismatch { primary, secondary }) => {
                tracing::debug!(
                    primary,
                    secondary,
                    "the hive's sequence numbers differ; reading it without its logs"
                );
                nt_hive::Hive::without_validation(bytes).map_err(hive_error)?
            }
            Err(e) => return Err(hive_error(e)),
        };
        Ok(Self { inner })
    }

    /// Returns the key at `path`, its names separated by backslashes and
    /// compared without regard to case as Windows does; `None` when a
    /// part of the path is missing. The empty path is the root key.
    pub fn key(&self, path: &str) -> Result<Option<Key<'_, 'a>>> {
        let root = self.inner.root_key_node().map_err(hive_error)?;
        match root.subpath(path) {
            None => Ok(None),
            Some(node) => Ok(Some(Key {
                node: node
                    .map_err(hive_error)
                    .with_context(|| format!("key {path}"))?,
            })),
        }
    }
}

impl Key<'_, '_> {
    /// Reads a `REG_DWORD` value; `None` when the key has no value `name`.
    pub fn dword(&self, name: &str) -> Result<Option<u32>> {
        match self.node.value(name) {
            None => Ok(None),
            Some(value) => {
                let value = value.map_err(hive_error)?;
                let dword = value
                    .dword_data()
                    .map_err(hive_error)
                    .with_context(|| format!("value {name}"))?;
                Ok(Some(dword))
            }
        }
    }

    /// Reads a `REG_SZ` or `REG_EXPAND_SZ` value, without expanding it;
    /// `None` when the key has no value `name`.
    pub fn string(&self, name: &str) -> Result<Option<String>> {
        match self.node.value(name) {
            None => Ok(None),
            Some(value) => {
                let value = value.map_err(hive_error)?;
                let text = value
                    .string_data()
                    .map_err(hive_error)
                    .with_context(|| format!("value {name}"))?;
                Ok(Some(text))
            }
        }
    }
}

fn hive_error(e: NtHiveError) -> anyhow::Error {
    anyhow!("registry hive: {e}")
}
