//! Remembers the sha256 of image files, so that checking an image again does
//! not read 30 GiB again.
//!
//! An entry is keyed by the file's device and inode and is valid only while
//! the file's size, modification time and change time stay as recorded.
//! Any write to the file moves its change time, and no system call sets a
//! change time to a chosen value, so a stale entry is not used unless the
//! system clock itself is moved back.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A folder of remembered checksums, one small file per image.
#[derive(Clone, Debug)]
pub struct HashCache {
    dir: PathBuf,
}

impl HashCache {
    /// Uses the `sha256` folder inside forge's cache folder.
    pub fn new(cache_dir: &Path) -> Self {
        Self {
            dir: cache_dir.join("sha256"),
        }
    }

    /// Returns the remembered checksum of `path`, if the file is unchanged
    /// since it was recorded.
    pub fn get(&self, path: &Path) -> Option<String> {
        let meta = fs::metadata(path).ok()?;
        let text = fs::read_to_string(self.entry(&meta)).ok()?;
        let (stamp, sha256) = text.trim_end().split_once('\n')?;
        let valid = stamp == stamp_of(&meta)
            && sha256.len() == 64
            && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| sha256.to_owned())
    }

    /// Records `sha256` for `path` as it is now. Failing to record only
    /// costs a later rehash, so errors are logged and dropped.
    pub fn put(&self, path: &Path, sha256: &str) {
        if let Err(e) = self.try_put(path, sha256) {
            tracing::debug!(
                "could not remember the checksum of {}: {e:#}",
                path.display()
            );
        }
    }

    fn try_put(&self, path: &Path, sha256: &str) -> Result<()> {
        let meta = fs::metadata(path)?;
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("failed to create {}", self.dir.display()))?;
        let entry = self.entry(&meta);
        let temp = entry.with_extension(format!("tmp{}", std::process::id()));
        fs::write(&temp, format!("{}\n{sha256}\n", stamp_of(&meta)))
            .with_context(|| format!("failed to write {}", temp.display()))?;
        fs::rename(&temp, &entry).with_context(|| format!("failed to write {}", entry.display()))
    }

    fn entry(&self, meta: &fs::Metadata) -> PathBuf {
        self.dir.join(format!("{:x}-{:x}", meta.dev(), meta.ino()))
    }
}

/// Size, modification time and change time, to nanoseconds.
fn stamp_of(meta: &fs::Metadata) -> String {
    format!(
        "{} {}.{:09} {}.{:09}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

/// Returns the sha256 of `path`, from `cache` when it has a valid entry.
/// Otherwise hashes the file and records the result if the file did not
/// change while it was read.
pub fn sha256_of(path: &Path, cache: Option<&HashCache>) -> Result<String> {
    if let Some(sha256) = cache.and_then(|c| c.get(path)) {
        tracing::debug!("sha256 of {} taken from the cache", path.display());
        return Ok(sha256);
    }
    let before = fs::metadata(path).ok().map(|m| stamp_of(&m));
    let sha256 = crate::build::output::sha256_sparse(path)?;
    let after = fs::metadata(path).ok().map(|m| stamp_of(&m));
    if let Some(cache) = cache.filter(|_| before.is_some() && before == after) {
        cache.put(path, &sha256);
    }
    Ok(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_used_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::new(&dir.path().join("cache"));
        let file = dir.path().join("disk.img");
        fs::write(&file, b"one").unwrap();
        let first = sha256_of(&file, Some(&cache)).unwrap();
        assert_eq!(cache.get(&file).as_deref(), Some(first.as_str()));

        fs::write(&file, b"two").unwrap();
        assert_eq!(cache.get(&file), None, "a rewritten file must be rehashed");
        let second = sha256_of(&file, Some(&cache)).unwrap();
        assert_ne!(first, second);
        assert_eq!(
            second,
            crate::build::output::sha256_sparse(&file).unwrap(),
            "the recorded checksum is the file's"
        );
    }

    #[test]
    fn damaged_entry_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = HashCache::new(&dir.path().join("cache"));
        let file = dir.path().join("disk.img");
        fs::write(&file, b"data").unwrap();
        sha256_of(&file, Some(&cache)).unwrap();
        let meta = fs::metadata(&file).unwrap();
        fs::write(
            cache.entry(&meta),
            format!("{}\nnot-a-hash\n", stamp_of(&meta)),
        )
        .unwrap();
        assert_eq!(cache.get(&file), None);
    }
}
