//! Read-only access to the file tree of an image, so that rules can be
//! tested on synthetic folders and run on real disks through libguestfs.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Kind of a directory entry, as `lstat` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// Metadata of one path, without following a final symlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeta {
    pub kind: FileKind,
    /// Permission bits only (`0o7777` mask).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
}

/// One entry of a whole-tree walk: an absolute path inside the image.
#[derive(Clone, Debug)]
pub struct WalkEntry {
    pub path: String,
    pub meta: FileMeta,
}

/// Read-only view of an image's root file system.
///
/// Paths are absolute paths inside the image (`/etc/passwd`). Symlinks are
/// never followed by the view itself; rules resolve them when they need to.
pub trait ImageView {
    /// Reads a whole regular file; `Ok(None)` when nothing exists at `path`.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>>;

    /// Reads up to `len` bytes at `offset` of a regular file.
    fn read_at(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// Returns metadata of `path`; `Ok(None)` when it does not exist.
    fn lstat(&self, path: &str) -> Result<Option<FileMeta>>;

    /// Returns the target of a symlink; `Ok(None)` when `path` is not one.
    fn read_link(&self, path: &str) -> Result<Option<String>>;

    /// Lists the names in a directory, sorted; empty when it does not exist.
    fn list_dir(&self, path: &str) -> Result<Vec<String>>;

    /// Returns every path of the tree below `/`, sorted, with metadata.
    fn walk(&self) -> Result<Vec<WalkEntry>>;

    /// Returns the host folder that contains this tree, when the tree is an
    /// ordinary folder of the host. Tools such as `clamscan` need one.
    fn host_root(&self) -> Option<&Path> {
        None
    }

    /// Reads many regular files; paths that are missing or not regular
    /// files are left out of the result. Views where each read is a round
    /// trip override this to fetch the files in bulk.
    fn read_many(&self, paths: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            if let Some(bytes) = self.read(p)? {
                out.push((p.clone(), bytes));
            }
        }
        Ok(out)
    }

    /// Computes the SHA-256 of many regular files as lower-case hex; paths
    /// that are missing or not regular files are left out of the result.
    /// Views where each read is a round trip override this to hash the
    /// files where they are.
    fn sha256_many(&self, paths: &[String]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(paths.len());
        for path in paths {
            if let Some(bytes) = self.read(path)? {
                out.push((path.clone(), sha256_hex(&bytes)));
            }
        }
        Ok(out)
    }

    /// Reads a file as text, replacing invalid UTF-8; `Ok(None)` if missing.
    fn read_text(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .read(path)?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// Returns the SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An [`ImageView`] over a folder of the host, used by unit tests and for
/// trees that are already unpacked.
pub struct DirView {
    root: PathBuf,
    root_owner: bool,
}

impl DirView {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            root_owner: false,
        }
    }

    /// Reports every path as owned by uid 0 and gid 0, as in the image, for
    /// trees that were unpacked or written without root privileges.
    pub fn assume_root_owner(mut self) -> Self {
        self.root_owner = true;
        self
    }

    fn host_path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
}

fn meta_of(m: &fs::Metadata) -> FileMeta {
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    FileMeta {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.len(),
    }
}

fn missing_is_none<T>(r: std::io::Result<T>, path: &Path) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

impl ImageView for DirView {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let p = self.host_path(path);
        match self.lstat(path)? {
            Some(m) if m.kind == FileKind::File => missing_is_none(fs::read(&p), &p),
            _ => Ok(None),
        }
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let p = self.host_path(path);
        let mut f =
            fs::File::open(&p).with_context(|| format!("failed to open {}", p.display()))?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn lstat(&self, path: &str) -> Result<Option<FileMeta>> {
        let p = self.host_path(path);
        let meta = missing_is_none(fs::symlink_metadata(&p), &p)?.map(|m| meta_of(&m));
        Ok(meta.map(|mut m| {
            if self.root_owner {
                m.uid = 0;
                m.gid = 0;
            }
            m
        }))
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        let p = self.host_path(path);
        match fs::read_link(&p) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(_) => Ok(None),
        }
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let p = self.host_path(path);
        let Some(entries) = missing_is_none(fs::read_dir(&p), &p)? else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for entry in entries {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn walk(&self) -> Result<Vec<WalkEntry>> {
        let mut out = Vec::new();
        let mut stack = vec![String::from("/")];
        while let Some(dir) = stack.pop() {
            for name in self.list_dir(&dir)? {
                let path = if dir == "/" {
                    format!("/{name}")
                } else {
                    format!("{dir}/{name}")
                };
                let Some(meta) = self.lstat(&path)? else {
                    continue;
                };
                if meta.kind == FileKind::Dir {
                    stack.push(path.clone());
                }
                out.push(WalkEntry { path, meta });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn host_root(&self) -> Option<&Path> {
        Some(&self.root)
    }
}
