//! One mounted file system of the direct reader: ext2/3/4 through
//! `ext4-view`, FAT through `fatfs`, NTFS through the `ntfs` crate. All
//! read the partition's bytes from the image file and never write.

use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};
use ext4_view::{Ext4, Ext4Error};

use super::ntfs_volume::NtfsVolume;
use super::Region;
use crate::check::{FileKind, FileMeta};

/// A file system, addressed by paths inside itself (`/` is its root).
pub enum Volume {
    Ext(Ext4),
    Fat(Box<fatfs::FileSystem<FatIo>>),
    Ntfs(Box<NtfsVolume>),
}

/// Mode that Linux gives every FAT file and folder with the default
/// `umask` of 022.
const FAT_MODE: u32 = 0o755;

impl Volume {
    pub fn open_ext(region: Region) -> Result<Self> {
        Ok(Volume::Ext(
            Ext4::load(Box::new(region)).map_err(ext_error)?,
        ))
    }

    pub fn open_fat(region: Region) -> Result<Self> {
        let io = FatIo { region, pos: 0 };
        let fs = fatfs::FileSystem::new(io, fatfs::FsOptions::new())
            .context("failed to read the FAT file system")?;
        Ok(Volume::Fat(Box::new(fs)))
    }

    pub fn open_ntfs(region: Region) -> Result<Self> {
        let fs = NtfsVolume::open(region).context("failed to read the NTFS file system")?;
        Ok(Volume::Ntfs(Box::new(fs)))
    }

    /// Metadata of `path` without following a final symlink.
    pub fn lstat(&self, path: &str) -> Result<Option<FileMeta>> {
        match self {
            Volume::Ext(fs) => match fs.symlink_metadata(path) {
                Ok(m) => Ok(Some(ext_meta(&m))),
                Err(e) if is_missing(&e) => Ok(None),
                Err(e) => Err(ext_error(e)).with_context(|| format!("lstat {path}")),
            },
            Volume::Fat(fs) => {
                if path == "/" {
                    return Ok(Some(fat_meta(true, 0)));
                }
                let (parent, name) = split(path);
                let Some(dir) = fat_dir(fs, parent) else {
                    return Ok(None);
                };
                for entry in dir.iter() {
                    let entry = entry.with_context(|| format!("list {parent}"))?;
                    if entry.file_name().eq_ignore_ascii_case(name) {
                        return Ok(Some(fat_meta(entry.is_dir(), entry.len())));
                    }
                }
                Ok(None)
            }
            Volume::Ntfs(fs) => fs.lstat(path),
        }
    }

    /// Reads a regular file whole; `None` when `path` is not one.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        // The NTFS volume checks the file type in the lookup that reads it.
        if let Volume::Ntfs(fs) = self {
            return fs.read(path);
        }
        match self.lstat(path)? {
            Some(meta) if meta.kind == FileKind::File => {}
            _ => return Ok(None),
        }
        match self {
            Volume::Ext(fs) => fs
                .read(path)
                .map(Some)
                .map_err(ext_error)
                .with_context(|| format!("read {path}")),
            Volume::Fat(fs) => {
                let mut file = fs
                    .root_dir()
                    .open_file(path.trim_start_matches('/'))
                    .with_context(|| format!("open {path}"))?;
                let mut out = Vec::new();
                file.read_to_end(&mut out)
                    .with_context(|| format!("read {path}"))?;
                Ok(Some(out))
            }
            Volume::Ntfs(_) => unreachable!("NTFS reads return above"),
        }
    }

    /// Computes the SHA-256 of a file that the caller knows to be a
    /// regular file, streaming it block by block. A symlink at `path` would
    /// be followed, so callers pass paths that a walk listed as files.
    pub fn sha256_of_file(&self, path: &str) -> Result<String> {
        use sha2::{Digest, Sha256};
        match self {
            Volume::Ext(fs) => {
                let mut file = fs
                    .open(path)
                    .map_err(ext_error)
                    .with_context(|| format!("open {path}"))?;
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = file
                        .read_bytes(&mut buf)
                        .map_err(ext_error)
                        .with_context(|| format!("read {path}"))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                Ok(hasher
                    .finalize()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect())
            }
            Volume::Fat(_) => {
                let bytes = self
                    .read(path)?
                    .with_context(|| format!("{path} is not a regular file"))?;
                Ok(crate::check::view::sha256_hex(&bytes))
            }
            Volume::Ntfs(fs) => fs.sha256_of_file(path),
        }
    }

    /// Reads up to `len` bytes at `offset` of a regular file.
    pub fn read_at(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len.min(1 << 20));
        match self {
            Volume::Ext(fs) => {
                let mut file = fs.open(path).map_err(ext_error)?;
                file.seek(SeekFrom::Start(offset))?;
                file.take(len as u64).read_to_end(&mut out)?;
            }
            Volume::Fat(fs) => {
                let mut file = fs.root_dir().open_file(path.trim_start_matches('/'))?;
                file.seek(SeekFrom::Start(offset))?;
                file.take(len as u64).read_to_end(&mut out)?;
            }
            Volume::Ntfs(fs) => return fs.read_at(path, offset, len),
        }
        Ok(out)
    }

    /// Returns the target of a symlink; `None` when `path` is not one.
    pub fn read_link(&self, path: &str) -> Result<Option<String>> {
        match self {
            Volume::Ext(fs) => match fs.read_link(path) {
                Ok(target) => Ok(Some(String::from_utf8_lossy(target.as_ref()).into_owned())),
                Err(Ext4Error::NotASymlink) => Ok(None),
                Err(e) if is_missing(&e) => Ok(None),
                Err(e) => Err(ext_error(e)).with_context(|| format!("readlink {path}")),
            },
            Volume::Fat(_) => Ok(None),
            Volume::Ntfs(fs) => fs.read_link(path),
        }
    }

    /// Lists a directory with each entry's metadata, sorted by name; empty
    /// when `path` is not a directory.
    pub fn list(&self, path: &str) -> Result<Vec<(String, FileMeta)>> {
        let mut out = Vec::new();
        match self {
            Volume::Ext(fs) => {
                match fs.symlink_metadata(path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Ok(out),
                    Err(e) if is_missing(&e) => return Ok(out),
                    Err(e) => return Err(ext_error(e)).with_context(|| format!("lstat {path}")),
                }
                let entries = fs
                    .read_dir(path)
                    .map_err(ext_error)
                    .with_context(|| format!("list {path}"))?;
                for entry in entries {
                    let entry = entry
                        .map_err(ext_error)
                        .with_context(|| format!("list {path}"))?;
                    let name = entry.file_name();
                    let name = String::from_utf8_lossy(name.as_ref()).into_owned();
                    if name == "." || name == ".." {
                        continue;
                    }
                    let meta = entry
                        .metadata()
                        .map_err(ext_error)
                        .with_context(|| format!("lstat {path}/{name}"))?;
                    out.push((name, ext_meta(&meta)));
                }
            }
            Volume::Fat(fs) => {
                let Some(dir) = fat_dir(fs, path) else {
                    return Ok(out);
                };
                for entry in dir.iter() {
                    let entry = entry.with_context(|| format!("list {path}"))?;
                    let name = entry.file_name();
                    if name == "." || name == ".." {
                        continue;
                    }
                    out.push((name, fat_meta(entry.is_dir(), entry.len())));
                }
            }
            Volume::Ntfs(fs) => return fs.list(path),
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Tells whether `path` exists, following symlinks inside this file
    /// system.
    pub fn exists(&self, path: &str) -> bool {
        match self {
            Volume::Ext(fs) => fs.exists(path).unwrap_or(false),
            Volume::Fat(_) => self.lstat(path).ok().flatten().is_some(),
            Volume::Ntfs(fs) => fs.exists(path),
        }
    }

    /// Returns `path` spelled as on the volume. NTFS compares the names
    /// without regard to case, as Windows does; the other file systems
    /// take `path` as it is. `None` when nothing is there.
    pub fn find_ignoring_case(&self, path: &str) -> Result<Option<String>> {
        match self {
            Volume::Ntfs(fs) => fs.find_ignoring_case(path),
            _ => Ok(self.lstat(path)?.map(|_| path.to_owned())),
        }
    }

    /// Reads a file, following symlinks inside this file system.
    pub fn read_following(&self, path: &str) -> Option<Vec<u8>> {
        match self {
            Volume::Ext(fs) => fs.read(path).ok(),
            Volume::Fat(_) => self.read(path).ok().flatten(),
            Volume::Ntfs(fs) => fs.read_following(path),
        }
    }
}

fn is_missing(e: &Ext4Error) -> bool {
    matches!(e, Ext4Error::NotFound | Ext4Error::NotADirectory)
}

fn ext_error(e: Ext4Error) -> anyhow::Error {
    let damaged = matches!(e, Ext4Error::Corrupt(_));
    let error = anyhow::anyhow!("ext4: {e}");
    if damaged {
        error.context(Damaged)
    } else {
        error
    }
}

/// Marks an error as damage in the file system, as opposed to a feature
/// this reader does not support.
#[derive(Debug)]
struct Damaged;

impl std::fmt::Display for Damaged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the file system is damaged")
    }
}

/// Tells whether `error` comes from a damaged file system.
pub fn is_damaged(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Damaged>().is_some()
}

fn ext_meta(m: &ext4_view::Metadata) -> FileMeta {
    let ft = m.file_type();
    let kind = if ft.is_regular_file() {
        FileKind::File
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_symlink() {
        FileKind::Symlink
    } else {
        FileKind::Other
    };
    FileMeta {
        kind,
        mode: u32::from(m.mode()) & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
    }
}

fn fat_meta(dir: bool, size: u64) -> FileMeta {
    FileMeta {
        kind: if dir { FileKind::Dir } else { FileKind::File },
        mode: FAT_MODE,
        uid: 0,
        gid: 0,
        size: if dir { 0 } else { size },
    }
}

fn fat_dir<'a>(fs: &'a fatfs::FileSystem<FatIo>, path: &str) -> Option<fatfs::Dir<'a, FatIo>> {
    let relative = path.trim_matches('/');
    if relative.is_empty() {
        Some(fs.root_dir())
    } else {
        fs.root_dir().open_dir(relative).ok()
    }
}

fn split(path: &str) -> (&str, &str) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => ("/", &trimmed[1..]),
        Some(cut) => (&trimmed[..cut], &trimmed[cut + 1..]),
        None => ("/", trimmed),
    }
}

/// Byte access to a FAT partition for `fatfs`, whose API takes a writable
/// stream. Every write fails: the image is opened read-only.
pub struct FatIo {
    region: Region,
    pos: u64,
}

impl Read for FatIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let bytes = self
            .region
            .read_vec_upto(self.pos, buf.len())
            .map_err(std::io::Error::other)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.pos += bytes.len() as u64;
        Ok(bytes.len())
    }
}

impl Write for FatIo {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the image is open read-only",
        ))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for FatIo {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let next = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.region.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = next.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek out of range")
        })?;
        Ok(self.pos)
    }
}
