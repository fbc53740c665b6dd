//! Archived image trees of finished build stages (the bootstrap, and the
//! tree after each layer), so that a build whose earlier stages did not
//! change restores them instead of building them again.
//!
//! Each entry in `<cache-dir>/stages/` is named by its stage key (see
//! `stage_key`):
//!
//! - `<key>.tar` is the tree, archived by GNU tar as root with numeric
//!   owners, permissions, extended attributes, hard links and device nodes.
//!   Its modification time records the entry's last use, for pruning.
//! - `<key>.sha256` holds the archive's sha256 in hex. It is renamed into
//!   place after the archive, so an entry without it is incomplete.
//! - `<key>.lock` is locked with flock(2) by every process that reads,
//!   writes or deletes the entry, so no process reads a half-written
//!   archive and two builds never write the same entry at once.
//!
//! Archives are not compressed: a bootstrap tree of about 1 GiB is archived
//! and restored in seconds, while compression would cost more than that.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::exec::{self, Cmd};

/// Default bound on the stage cache's size: 20 GiB, room for about a dozen
/// stages of a Debian 12 image of about 1.2 GiB each.
pub const DEFAULT_MAX_SIZE: u64 = 20 << 30;

/// How often a process polls a lock that another process holds.
const LOCK_POLL: Duration = Duration::from_millis(200);

/// Options that make tar keep everything a root file system needs:
/// numeric owners, permissions and every extended attribute (file
/// capabilities, for one). Hard links and device nodes are kept by default.
const TAR_TREE_OPTIONS: &[&str] = &[
    "--numeric-owner",
    "--same-permissions",
    "--xattrs",
    "--xattrs-include=*",
];

/// The sha256 that names a stage, in lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StageKey(String);

impl StageKey {
    pub fn from_digest(digest: &[u8]) -> Self {
        Self(hex(digest))
    }

    /// Parses a key from a file name stem; `None` unless it is 64 hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 8 hex digits and an ellipsis, for progress lines.
    pub fn short(&self) -> String {
        format!("{}…", &self.0[..8])
    }
}

impl std::fmt::Display for StageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How [`StageCache::get_or_build`] obtained a stage's tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Restored from a valid cache entry.
    Reused,
    /// Built by the producer and stored in the cache.
    BuiltAndStored,
    /// Built by the producer, but not stored: the producer declined, or
    /// storing failed (logged as a warning).
    BuiltNotStored,
}

/// What a stage producer returns about the tree it built.
#[derive(Debug)]
pub enum Produced {
    /// The tree matches its key and may be stored.
    Cacheable,
    /// The tree may differ from what its key describes, for the reason
    /// given, so it must not be stored.
    NotCacheable(String),
}

/// Totals of one prune.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneSummary {
    pub removed: usize,
    pub freed_bytes: u64,
    pub kept: usize,
    pub kept_bytes: u64,
    /// Entries over the bound that another process had locked.
    pub in_use: usize,
}

/// The stage cache folder and its size bound.
#[derive(Clone, Debug)]
pub struct StageCache {
    dir: PathBuf,
    max_size: u64,
}

/// An exclusive flock(2) on one entry's lock file, released on drop.
#[derive(Debug)]
pub struct EntryLock {
    file: File,
    path: PathBuf,
}

impl StageCache {
    /// Uses the `stages` folder inside forge's cache folder. Builds prune
    /// the folder to `max_size` bytes after storing a stage.
    pub fn new(cache_dir: &Path, max_size: u64) -> Self {
        Self {
            dir: cache_dir.join("stages"),
            max_size,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn archive_path(&self, key: &StageKey) -> PathBuf {
        self.dir.join(format!("{key}.tar"))
    }

    fn checksum_path(&self, key: &StageKey) -> PathBuf {
        self.dir.join(format!("{key}.sha256"))
    }

    fn lock_path(&self, key: &StageKey) -> PathBuf {
        self.dir.join(format!("{key}.lock"))
    }

    /// Returns whether a complete entry for `key` exists, without locking
    /// or verifying it.
    pub fn contains(&self, key: &StageKey) -> bool {
        self.archive_path(key).is_file() && self.checksum_path(key).is_file()
    }

    /// Locks the entry for `key`, waiting while another process holds it.
    /// Waiting stops with an error when the user interrupts forge.
    pub fn lock(&self, key: &StageKey) -> Result<EntryLock> {
        // Archives contain whole root file systems, /etc/shadow included,
        // so only root may read the folder.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("failed to create {}", self.dir.display()))?;
        let path = self.lock_path(key);
        let mut logged = false;
        loop {
            if let Some(lock) = EntryLock::try_acquire(&path)? {
                return Ok(lock);
            }
            if !logged {
                tracing::info!(
                    "waiting for another forge process to finish with stage cache entry {key}"
                );
                logged = true;
            }
            exec::check_interrupted()?;
            std::thread::sleep(LOCK_POLL);
        }
    }

    /// Restores the entry for `key` into `tree` if it exists and is
    /// intact, and returns whether it did. `tree` is emptied first.
    pub fn restore(&self, key: &StageKey, tree: &Path) -> Result<bool> {
        let lock = self.lock(key)?;
        self.restore_locked(&lock, key, tree)
    }

    /// Restores the entry for `key` into `tree`, or else runs `produce` to
    /// build the tree in place and stores the result.
    ///
    /// The entry stays locked while `produce` runs, so a second process
    /// asking for the same key waits and then restores what the first one
    /// stored. `produce` finds `tree` as the caller left it. After storing,
    /// the cache is pruned to its size bound.
    pub fn get_or_build(
        &self,
        key: &StageKey,
        tree: &Path,
        produce: impl FnOnce() -> Result<Produced>,
    ) -> Result<Outcome> {
        let lock = self.lock(key)?;
        if self.restore_locked(&lock, key, tree)? {
            return Ok(Outcome::Reused);
        }
        if let Produced::NotCacheable(reason) = produce()? {
            tracing::warn!("stage {key} was built but not stored in the cache: {reason}");
            return Ok(Outcome::BuiltNotStored);
        }
        let started = std::time::Instant::now();
        if let Err(e) = self.store_locked(&lock, key, tree) {
            exec::check_interrupted()?;
            tracing::warn!(
                "failed to store stage {key} in the cache, so the next build repeats it: {e:#}"
            );
            return Ok(Outcome::BuiltNotStored);
        }
        let bytes = fs::metadata(self.archive_path(key)).map_or(0, |m| m.len());
        tracing::info!(
            "stored stage {} in the cache: {} in {:.1} s",
            key.short(),
            format_size(bytes),
            started.elapsed().as_secs_f64()
        );
        drop(lock);
        match self.prune(self.max_size) {
            Ok(summary) if summary.removed > 0 => tracing::info!(
                "pruned the stage cache: removed {} stage(s), {}",
                summary.removed,
                format_size(summary.freed_bytes)
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("failed to prune the stage cache: {e:#}"),
        }
        Ok(Outcome::BuiltAndStored)
    }

    fn restore_locked(&self, lock: &EntryLock, key: &StageKey, tree: &Path) -> Result<bool> {
        lock.assert_for(&self.lock_path(key));
        let archive = self.archive_path(key);
        let checksum = self.checksum_path(key);
        if !archive.exists() && !checksum.exists() {
            return Ok(false);
        }
        if let Err(damage) = self.verify(key) {
            tracing::warn!(
                "stage cache entry {key} is damaged, so it is deleted and the stage is built again: {damage:#}"
            );
            self.remove_entry_files(key)?;
            return Ok(false);
        }
        empty_folder(tree)?;
        Cmd::new("tar")
            .arg("--extract")
            .arg("--file")
            .arg(&archive)
            .arg("--directory")
            .arg(tree)
            .args(TAR_TREE_OPTIONS)
            .run()
            .with_context(|| {
                format!(
                    "failed to restore stage {key} from {} into {}",
                    archive.display(),
                    tree.display()
                )
            })?;
        // The archive's modification time is its last use, for pruning.
        if let Err(e) = File::options()
            .write(true)
            .open(&archive)
            .and_then(|f| f.set_modified(SystemTime::now()))
        {
            tracing::debug!("failed to record the use of {}: {e}", archive.display());
        }
        Ok(true)
    }

    /// Checks that the entry is complete and that the archive matches its
    /// recorded sha256. The error describes the damage.
    fn verify(&self, key: &StageKey) -> Result<()> {
        let checksum = self.checksum_path(key);
        let recorded = fs::read_to_string(&checksum)
            .with_context(|| format!("failed to read {}", checksum.display()))?;
        let recorded = recorded.trim();
        if StageKey::parse(recorded).is_none() {
            bail!("{} does not contain a sha256", checksum.display());
        }
        let archive = self.archive_path(key);
        let actual = sha256_file(&archive)?;
        if actual != recorded {
            bail!(
                "{} has sha256 {actual}, but {recorded} was recorded",
                archive.display()
            );
        }
        Ok(())
    }

    /// Archives `tree` as the entry for `key`: the archive and its checksum
    /// are written under temporary names and renamed into place, archive
    /// first. A crash leaves no entry or an incomplete one, which
    /// [`StageCache::restore`] deletes.
    fn store_locked(&self, lock: &EntryLock, key: &StageKey, tree: &Path) -> Result<()> {
        lock.assert_for(&self.lock_path(key));
        // The lock is held, so temporary files of this key are left over
        // from a process that died.
        self.remove_temporary_files(key)?;
        let archive = tempfile::Builder::new()
            .prefix(&format!("{key}.tar.tmp"))
            .tempfile_in(&self.dir)
            .with_context(|| format!("failed to create a file in {}", self.dir.display()))?;
        Cmd::new("tar")
            .arg("--create")
            .arg("--file")
            .arg(archive.path())
            .arg("--directory")
            .arg(tree)
            .args(TAR_TREE_OPTIONS)
            .arg("--format=posix")
            .arg(".")
            .run()
            .with_context(|| format!("failed to archive {}", tree.display()))?;
        let sha256 = sha256_file(archive.path())?;
        let checksum = tempfile::Builder::new()
            .prefix(&format!("{key}.sha256.tmp"))
            .tempfile_in(&self.dir)
            .with_context(|| format!("failed to create a file in {}", self.dir.display()))?;
        fs::write(checksum.path(), format!("{sha256}\n"))
            .with_context(|| format!("failed to write {}", checksum.path().display()))?;
        archive
            .persist(self.archive_path(key))
            .context("failed to rename the stage archive into place")?;
        checksum
            .persist(self.checksum_path(key))
            .context("failed to rename the stage checksum into place")?;
        Ok(())
    }

    fn remove_entry_files(&self, key: &StageKey) -> Result<()> {
        for path in [self.checksum_path(key), self.archive_path(key)] {
            // Whatever took the place of an entry's file goes, a folder too.
            let removed = match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to delete {}", path.display()))
                }
            }
        }
        Ok(())
    }

    fn remove_temporary_files(&self, key: &StageKey) -> Result<()> {
        for name in self.file_names()? {
            let stale = [".tar.tmp", ".sha256.tmp"]
                .iter()
                .any(|suffix| name.starts_with(&format!("{key}{suffix}")));
            if stale {
                let path = self.dir.join(&name);
                fs::remove_file(&path)
                    .with_context(|| format!("failed to delete {}", path.display()))?;
            }
        }
        Ok(())
    }

    fn file_names(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to list {}", self.dir.display()))
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to list {}", self.dir.display()))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    /// Deletes least recently used entries until the stage cache holds at
    /// most `max_size` bytes. Entries that another process has locked are
    /// in use and kept, so the result can stay over the bound. Temporary
    /// files count toward their key's entry and go with it.
    pub fn prune(&self, max_size: u64) -> Result<PruneSummary> {
        self.remove_unused_lock_files()?;
        let mut entries = self.list_entries()?;
        // Oldest use first.
        entries.sort_by_key(|e| e.last_used);
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut summary = PruneSummary::default();
        for entry in entries {
            if total <= max_size {
                summary.kept += 1;
                summary.kept_bytes += entry.bytes;
                continue;
            }
            let Some(lock) = EntryLock::try_acquire(&self.lock_path(&entry.key))? else {
                summary.in_use += 1;
                summary.kept += 1;
                summary.kept_bytes += entry.bytes;
                continue;
            };
            self.remove_entry_files(&entry.key)?;
            self.remove_temporary_files(&entry.key)?;
            lock.delete_file()?;
            tracing::debug!("pruned stage cache entry {}", entry.key);
            total -= entry.bytes;
            summary.removed += 1;
            summary.freed_bytes += entry.bytes;
        }
        Ok(summary)
    }

    /// Deletes the lock files of keys without an entry, such as those of
    /// stages whose build failed, unless a process holds them.
    fn remove_unused_lock_files(&self) -> Result<()> {
        let names = self.file_names()?;
        for name in &names {
            let Some(key) = name.strip_suffix(".lock").and_then(StageKey::parse) else {
                continue;
            };
            let has_entry = names
                .iter()
                .any(|other| other != name && other.starts_with(key.as_str()));
            if has_entry {
                continue;
            }
            let Some(lock) = EntryLock::try_acquire(&self.lock_path(&key))? else {
                continue;
            };
            // The last holder may have stored the entry since the listing.
            if !self.archive_path(&key).exists() && !self.checksum_path(&key).exists() {
                lock.delete_file()?;
            }
        }
        Ok(())
    }

    /// Lists the entries with their total file size and last use. Files of
    /// one key count together, temporary files included.
    fn list_entries(&self) -> Result<Vec<PrunableEntry>> {
        let mut entries: Vec<PrunableEntry> = Vec::new();
        for name in self.file_names()? {
            let Some(key) = name.get(..64).and_then(StageKey::parse) else {
                continue;
            };
            if name.ends_with(".lock") {
                continue;
            }
            let path = self.dir.join(&name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                // Deleted by another process since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(e).with_context(|| format!("failed to read {}", path.display()))
                }
            };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let index = match entries.iter().position(|e| e.key == key) {
                Some(index) => index,
                None => {
                    entries.push(PrunableEntry {
                        key,
                        bytes: 0,
                        last_used: SystemTime::UNIX_EPOCH,
                    });
                    entries.len() - 1
                }
            };
            let entry = &mut entries[index];
            entry.bytes += meta.len();
            entry.last_used = entry.last_used.max(modified);
        }
        Ok(entries)
    }
}

struct PrunableEntry {
    key: StageKey,
    bytes: u64,
    last_used: SystemTime,
}

impl EntryLock {
    /// Locks the file at `path`, creating it; `None` when another process
    /// (or another open file in this one) holds the lock.
    fn try_acquire(path: &Path) -> Result<Option<Self>> {
        loop {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("failed to open lock file {}", path.display()))?;
            // SAFETY: flock(2) on a descriptor that `file` owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                match err.raw_os_error() {
                    Some(libc::EWOULDBLOCK) => return Ok(None),
                    Some(libc::EINTR) => continue,
                    _ => {
                        return Err(err)
                            .with_context(|| format!("failed to lock {}", path.display()))
                    }
                }
            }
            // A prune may have deleted the file between open and flock, and
            // a lock on a deleted file excludes nobody, so lock again.
            let locked = file.metadata()?;
            let current = fs::metadata(path);
            if current.is_ok_and(|m| m.dev() == locked.dev() && m.ino() == locked.ino()) {
                return Ok(Some(Self {
                    file,
                    path: path.to_path_buf(),
                }));
            }
        }
    }

    fn assert_for(&self, path: &Path) {
        assert_eq!(self.path, path, "a lock of another stage cache entry");
    }

    /// Deletes the lock file and releases the lock. Processes waiting on
    /// the deleted file notice and lock a new one.
    fn delete_file(self) -> Result<()> {
        fs::remove_file(&self.path)
            .with_context(|| format!("failed to delete {}", self.path.display()))?;
        drop(self.file);
        Ok(())
    }
}

/// Deletes everything inside `dir`, keeping `dir` itself.
fn empty_folder(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))? {
        let path = entry?.path();
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .with_context(|| format!("failed to delete {}", path.display()))?;
    }
    Ok(())
}

/// Returns the sha256 of a file in lowercase hex.
fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("failed to read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats a byte count with a binary unit, such as `1.2 GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Instant;

    fn key(n: u8) -> StageKey {
        StageKey::from_digest(&[n; 32])
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// Fills `tree` like a small root file system: a folder with unusual
    /// permissions, a file, a symlink, a hard link, an extended attribute
    /// and, as root, a device node.
    fn fake_stage(tree: &Path, text: &str) -> Result<Produced> {
        fs::create_dir_all(tree.join("etc/app"))?;
        fs::set_permissions(tree.join("etc/app"), fs::Permissions::from_mode(0o750))?;
        fs::write(tree.join("etc/app/conf"), text)?;
        fs::set_permissions(tree.join("etc/app/conf"), fs::Permissions::from_mode(0o640))?;
        symlink("/etc/app/conf", tree.join("etc/conf-link"))?;
        fs::hard_link(tree.join("etc/app/conf"), tree.join("etc/conf-hard"))?;
        set_xattr(
            &tree.join("etc/app/conf"),
            "user.forge-test",
            text.as_bytes(),
        );
        if is_root() {
            let node = CString::new(tree.join("null").as_os_str().as_bytes())?;
            // SAFETY: mknod with a NUL-terminated path.
            let rc =
                unsafe { libc::mknod(node.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
            assert_eq!(rc, 0, "mknod failed: {}", std::io::Error::last_os_error());
        }
        Ok(Produced::Cacheable)
    }

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let name = CString::new(name).unwrap();
        // SAFETY: NUL-terminated path and name, and a value buffer of the
        // given length.
        let rc = unsafe {
            libc::setxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(
            rc,
            0,
            "setxattr failed: {}",
            std::io::Error::last_os_error()
        );
    }

    fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let name = CString::new(name).unwrap();
        let mut value = vec![0u8; 256];
        // SAFETY: NUL-terminated path and name, and a buffer of the given
        // length.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        (n >= 0).then(|| {
            value.truncate(n as usize);
            value
        })
    }

    /// Every path under `tree` with its mode, owner and link target or
    /// content, sorted.
    fn listing(tree: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![tree.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let relative = path.strip_prefix(tree).unwrap().display().to_string();
                let what = if meta.is_dir() {
                    stack.push(path.clone());
                    String::new()
                } else if meta.file_type().is_symlink() {
                    fs::read_link(&path).unwrap().display().to_string()
                } else if meta.is_file() {
                    fs::read_to_string(&path).unwrap()
                } else {
                    format!("device {:x}", meta.rdev())
                };
                out.push(format!(
                    "{relative} {:o} {}:{} {what}",
                    meta.mode(),
                    meta.uid(),
                    meta.gid()
                ));
            }
        }
        out.sort();
        out
    }

    fn new_tree(dir: &Path, name: &str) -> PathBuf {
        let tree = dir.join(name);
        fs::create_dir(&tree).unwrap();
        tree
    }

    #[test]
    fn stored_stage_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let first = new_tree(dir.path(), "first");
        let outcome = cache
            .get_or_build(&key(1), &first, || fake_stage(&first, "one"))
            .unwrap();
        assert_eq!(outcome, Outcome::BuiltAndStored);
        assert!(cache.contains(&key(1)));

        let second = new_tree(dir.path(), "second");
        let outcome = cache
            .get_or_build(&key(1), &second, || {
                panic!("a cached stage was built again")
            })
            .unwrap();
        assert_eq!(outcome, Outcome::Reused);
        assert_eq!(listing(&first), listing(&second));
    }

    #[test]
    fn restore_keeps_links_and_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let first = new_tree(dir.path(), "first");
        cache
            .get_or_build(&key(1), &first, || fake_stage(&first, "one"))
            .unwrap();
        let second = new_tree(dir.path(), "second");
        assert!(cache.restore(&key(1), &second).unwrap());

        let conf = fs::metadata(second.join("etc/app/conf")).unwrap();
        let hard = fs::metadata(second.join("etc/conf-hard")).unwrap();
        assert_eq!(conf.ino(), hard.ino(), "the hard link became a copy");
        assert_eq!(conf.mode() & 0o7777, 0o640);
        assert_eq!(
            fs::read_link(second.join("etc/conf-link")).unwrap(),
            Path::new("/etc/app/conf")
        );
        assert_eq!(
            get_xattr(&second.join("etc/app/conf"), "user.forge-test").as_deref(),
            Some(b"one".as_slice())
        );
        if is_root() {
            let null = fs::symlink_metadata(second.join("null")).unwrap();
            assert_eq!(null.rdev(), libc::makedev(1, 3), "device node lost");
        }
    }

    #[test]
    fn restore_empties_the_tree_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let first = new_tree(dir.path(), "first");
        cache
            .get_or_build(&key(1), &first, || fake_stage(&first, "one"))
            .unwrap();
        let second = new_tree(dir.path(), "second");
        fs::write(second.join("left-over"), "x").unwrap();
        assert!(cache.restore(&key(1), &second).unwrap());
        assert!(!second.join("left-over").exists());
        assert_eq!(listing(&first), listing(&second));
    }

    #[test]
    fn missing_entry_is_not_restored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let tree = new_tree(dir.path(), "tree");
        assert!(!cache.contains(&key(1)));
        assert!(!cache.restore(&key(1), &tree).unwrap());
    }

    #[test]
    fn damaged_entries_are_deleted_and_rebuilt() {
        type Damage = fn(&Path, &Path);
        let cases: &[(&str, Damage)] = &[
            ("flipped byte", |archive, _| {
                let mut bytes = fs::read(archive).unwrap();
                bytes[600] ^= 0xff;
                fs::write(archive, bytes).unwrap();
            }),
            ("truncated archive", |archive, _| {
                let file = File::options().write(true).open(archive).unwrap();
                file.set_len(1024).unwrap();
            }),
            ("empty archive", |archive, _| {
                fs::write(archive, b"").unwrap()
            }),
            ("missing archive", |archive, _| {
                fs::remove_file(archive).unwrap()
            }),
            ("unreadable archive", |archive, _| {
                fs::remove_file(archive).unwrap();
                fs::create_dir(archive).unwrap();
            }),
            ("missing checksum", |_, checksum| {
                fs::remove_file(checksum).unwrap()
            }),
            ("garbage checksum", |_, checksum| {
                fs::write(checksum, "not a checksum\n").unwrap()
            }),
        ];
        for (name, damage) in cases {
            let dir = tempfile::tempdir().unwrap();
            let cache = StageCache::new(dir.path(), u64::MAX);
            let first = new_tree(dir.path(), "first");
            cache
                .get_or_build(&key(1), &first, || fake_stage(&first, "one"))
                .unwrap();
            let archive = cache.archive_path(&key(1));
            let checksum = cache.checksum_path(&key(1));
            damage(&archive, &checksum);

            let second = new_tree(dir.path(), "second");
            let built = AtomicUsize::new(0);
            let outcome = cache
                .get_or_build(&key(1), &second, || {
                    built.fetch_add(1, Ordering::SeqCst);
                    fake_stage(&second, "rebuilt")
                })
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(outcome, Outcome::BuiltAndStored, "{name}");
            assert_eq!(built.load(Ordering::SeqCst), 1, "{name}: not rebuilt");
            assert_eq!(
                fs::read_to_string(second.join("etc/app/conf")).unwrap(),
                "rebuilt",
                "{name}: the damaged tree was used"
            );

            let third = new_tree(dir.path(), "third");
            assert!(
                cache.restore(&key(1), &third).unwrap(),
                "{name}: the rebuilt stage was not stored"
            );
            assert_eq!(
                fs::read_to_string(third.join("etc/app/conf")).unwrap(),
                "rebuilt",
                "{name}: the rebuilt stage was not stored"
            );
        }
    }

    #[test]
    fn not_cacheable_stage_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let tree = new_tree(dir.path(), "tree");
        let outcome = cache
            .get_or_build(&key(1), &tree, || {
                fake_stage(&tree, "one")?;
                Ok(Produced::NotCacheable("test".into()))
            })
            .unwrap();
        assert_eq!(outcome, Outcome::BuiltNotStored);
        assert!(!cache.contains(&key(1)));
    }

    #[test]
    fn failed_producer_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let tree = new_tree(dir.path(), "tree");
        let result = cache.get_or_build(&key(1), &tree, || anyhow::bail!("producer failed"));
        assert!(result.is_err());
        assert!(!cache.contains(&key(1)));
        assert!(!cache.archive_path(&key(1)).exists());
    }

    #[test]
    fn second_build_waits_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(StageCache::new(dir.path(), u64::MAX));
        let built = Arc::new(AtomicUsize::new(0));
        let first = new_tree(dir.path(), "first");
        let second = new_tree(dir.path(), "second");
        let (producing_tx, producing_rx) = mpsc::channel();

        let writer = {
            let cache = Arc::clone(&cache);
            let built = Arc::clone(&built);
            let first = first.clone();
            std::thread::spawn(move || {
                cache.get_or_build(&key(7), &first, || {
                    producing_tx.send(Instant::now()).unwrap();
                    // Long enough for the second build to reach the lock.
                    std::thread::sleep(Duration::from_millis(1500));
                    built.fetch_add(1, Ordering::SeqCst);
                    fake_stage(&first, "first")
                })
            })
        };
        // The first build now holds the lock and is producing the stage.
        let producing_since = producing_rx.recv().unwrap();

        let reader = {
            let cache = Arc::clone(&cache);
            let built = Arc::clone(&built);
            let second = second.clone();
            std::thread::spawn(move || {
                let outcome = cache.get_or_build(&key(7), &second, || {
                    built.fetch_add(1, Ordering::SeqCst);
                    fake_stage(&second, "second")
                });
                (outcome, Instant::now())
            })
        };

        let first_outcome = writer.join().unwrap().unwrap();
        let (second_outcome, second_done) = reader.join().unwrap();
        assert_eq!(first_outcome, Outcome::BuiltAndStored);
        assert_eq!(second_outcome.unwrap(), Outcome::Reused);
        assert_eq!(built.load(Ordering::SeqCst), 1, "the stage was built twice");
        assert!(
            second_done.duration_since(producing_since) >= Duration::from_millis(1500),
            "the second build did not wait for the first"
        );
        assert_eq!(listing(&first), listing(&second));
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let held = cache.lock(&key(1)).unwrap();
        let path = cache.lock_path(&key(1));
        assert!(EntryLock::try_acquire(&path).unwrap().is_none());
        drop(held);
        assert!(EntryLock::try_acquire(&path).unwrap().is_some());
    }

    /// Stores a small stage for each key and marks the keys as used in
    /// order, oldest first. Returns the size of one entry.
    fn fill(cache: &StageCache, dir: &Path, keys: &[StageKey]) -> u64 {
        let started = SystemTime::now() - Duration::from_secs(3600);
        for (i, key) in keys.iter().enumerate() {
            let tree = new_tree(dir, &format!("tree-{i}"));
            cache
                .get_or_build(key, &tree, || fake_stage(&tree, "same size"))
                .unwrap();
            let used = started + Duration::from_secs(60 * i as u64);
            for path in [cache.archive_path(key), cache.checksum_path(key)] {
                let file = File::options().write(true).open(path).unwrap();
                file.set_modified(used).unwrap();
            }
        }
        let archive = fs::metadata(cache.archive_path(&keys[0])).unwrap().len();
        let checksum = fs::metadata(cache.checksum_path(&keys[0])).unwrap().len();
        archive + checksum
    }

    #[test]
    fn prune_removes_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let keys = [key(1), key(2), key(3)];
        let entry = fill(&cache, dir.path(), &keys);

        let summary = cache.prune(2 * entry).unwrap();
        assert_eq!(summary.removed, 1);
        assert_eq!(summary.freed_bytes, entry);
        assert_eq!(summary.kept, 2);
        assert_eq!(summary.kept_bytes, 2 * entry);
        assert!(!cache.contains(&keys[0]), "the oldest entry was kept");
        assert!(!cache.lock_path(&keys[0]).exists());
        assert!(cache.contains(&keys[1]));
        assert!(cache.contains(&keys[2]));

        let summary = cache.prune(2 * entry).unwrap();
        assert_eq!(summary.removed, 0, "prune under the bound removed entries");
    }

    #[test]
    fn prune_removes_unused_lock_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let tree = new_tree(dir.path(), "tree");
        let failed = cache.get_or_build(&key(1), &tree, || anyhow::bail!("layer failed"));
        assert!(failed.is_err());
        assert!(cache.lock_path(&key(1)).exists());
        let held = cache.lock(&key(2)).unwrap();

        cache.prune(u64::MAX).unwrap();
        assert!(
            !cache.lock_path(&key(1)).exists(),
            "the lock file of a failed stage was kept"
        );
        assert!(
            cache.lock_path(&key(2)).exists(),
            "a lock file in use was deleted"
        );
        drop(held);
    }

    #[test]
    fn reuse_counts_as_recent_use() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let keys = [key(1), key(2)];
        let entry = fill(&cache, dir.path(), &keys);
        let tree = new_tree(dir.path(), "reuse");
        assert!(cache.restore(&keys[0], &tree).unwrap());

        cache.prune(entry).unwrap();
        assert!(cache.contains(&keys[0]), "the entry just reused was pruned");
        assert!(!cache.contains(&keys[1]));
    }

    #[test]
    fn prune_keeps_locked_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        let keys = [key(1), key(2)];
        let entry = fill(&cache, dir.path(), &keys);
        let held = cache.lock(&keys[0]).unwrap();

        let (removed, summary) = prune_until_removed(&cache, 1);
        assert_eq!(removed, 1);
        assert_eq!(summary.in_use, 1);
        assert_eq!(summary.kept_bytes, entry);
        assert!(cache.contains(&keys[0]), "a locked entry was pruned");
        assert!(!cache.contains(&keys[1]));
        drop(held);

        let (removed, _) = prune_until_removed(&cache, 1);
        assert_eq!(removed, 1);
        assert!(!cache.contains(&keys[0]));
    }

    /// Prunes to size 0 until `want` entries are gone or a second passes,
    /// and returns the count with the last summary. A child that another
    /// test thread forks shares every open lock descriptor until it runs
    /// its program, so a free entry can look locked for that moment.
    fn prune_until_removed(cache: &StageCache, want: usize) -> (usize, PruneSummary) {
        let mut removed = 0;
        for _ in 0..50 {
            let summary = cache.prune(0).unwrap();
            removed += summary.removed;
            if removed >= want {
                return (removed, summary);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        (removed, cache.prune(0).unwrap())
    }

    #[test]
    fn build_prunes_after_storing() {
        let dir = tempfile::tempdir().unwrap();
        let sizing = StageCache::new(&dir.path().join("sizing"), u64::MAX);
        let entry = fill(&sizing, dir.path(), &[key(9)]);

        let cache = StageCache::new(dir.path(), entry);
        for (i, k) in [key(1), key(2)].iter().enumerate() {
            let tree = new_tree(dir.path(), &format!("build-{i}"));
            cache
                .get_or_build(k, &tree, || fake_stage(&tree, "same size"))
                .unwrap();
        }
        assert!(!cache.contains(&key(1)), "the older stage was kept");
        assert!(cache.contains(&key(2)), "the new stage was pruned");
    }

    #[test]
    fn stale_temporary_files_are_removed_on_store() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(dir.path(), u64::MAX);
        fs::create_dir_all(cache.dir()).unwrap();
        let stale = cache.dir().join(format!("{}.tar.tmpAbC123", key(1)));
        fs::write(&stale, b"half an archive").unwrap();
        let tree = new_tree(dir.path(), "tree");
        cache
            .get_or_build(&key(1), &tree, || fake_stage(&tree, "one"))
            .unwrap();
        assert!(!stale.exists());
    }

    #[test]
    fn key_parse_accepts_only_hex_digests() {
        assert_eq!(StageKey::parse(key(0xab).as_str()), Some(key(0xab)));
        assert_eq!(StageKey::parse("abc"), None);
        assert_eq!(StageKey::parse(&"G".repeat(64)), None);
        assert_eq!(StageKey::parse(&"A".repeat(64)), None);
        assert_eq!(key(0xab).short(), "abababab…");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(20 << 30), "20.0 GiB");
    }
}
