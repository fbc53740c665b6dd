//! NTFS volumes, read with the `ntfs` crate and shown the way ntfs-3g, the
//! driver that libguestfs mounts NTFS with, shows them:
//!
//! - Names are looked up with their exact case, as a default ntfs-3g mount
//!   does. A short (8.3) name can be looked up but is not listed, and the
//!   metadata files of the root (`$MFT`, `$Bitmap`, ...) are not listed.
//! - Every file and folder has mode 0777 and belongs to uid 0 and gid 0.
//!   A folder's size is that of its index allocation, 0 when it has none.
//! - A reparse point is a symlink. A junction or an absolute symlink
//!   (`\??\C:\Users`) points to the same path in this volume, spelled
//!   with the case of the names found there. Any other reparse point
//!   points to `unsupported reparse tag 0x...`, as in ntfs-3g. ntfs-3g puts
//!   the mount point in front of absolute targets (`/sysroot/Users` in
//!   the appliance), but here they start at the volume's root (`/Users`).
//! - An Interix symlink (a system file starting with `IntxLNK\1`) is a
//!   symlink, and an empty or one-byte system file that is not hidden is a
//!   FIFO or a socket, which the view reports as `Other`.
//! - Bytes past a file's valid data length read as zeros.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read, Seek, SeekFrom};

use anyhow::{anyhow, bail, Context, Result};
use ntfs::indexes::NtfsFileNameIndex;
use ntfs::structured_values::{NtfsFileAttributeFlags, NtfsFileNamespace};
use ntfs::{
    KnownNtfsFileRecordNumber, Ntfs, NtfsAttribute, NtfsAttributeFlags, NtfsAttributeType,
    NtfsError, NtfsFile, NtfsReadSeek,
};

use super::Region;
use crate::check::{FileKind, FileMeta};

/// Mode ntfs-3g gives every path when mounted without a user mapping.
const NTFS_MODE: u32 = 0o777;

/// Files below this record number are NTFS's own metadata, which ntfs-3g
/// leaves out of listings.
const FIRST_USER_RECORD: u64 = 16;

const ROOT_RECORD: u64 = KnownNtfsFileRecordNumber::RootDirectory as u64;

/// Symlinks followed while resolving one path, as Linux allows.
const MAX_LINK_HOPS: usize = 40;

const TAG_MOUNT_POINT: u32 = 0xA000_0003;
const TAG_SYMLINK: u32 = 0xA000_000C;
/// `SYMLINK_FLAG_RELATIVE` of a symlink reparse point.
const SYMLINK_RELATIVE: u32 = 1;

/// Magic numbers at the start of Interix special files.
const INTERIX_SYMLINK: &[u8; 8] = b"IntxLNK\x01";
const INTERIX_CHAR_DEVICE: &[u8; 8] = b"IntxCHR\0";
const INTERIX_BLOCK_DEVICE: &[u8; 8] = b"IntxBLK\0";
/// Size of an Interix device file: magic, then major and minor as u64.
const INTERIX_DEVICE_LEN: u64 = 24;
/// Longest Interix symlink ntfs-3g reads: the magic and PATH_MAX UTF-16
/// code units.
const INTERIX_MAX_LEN: u64 = 8 + 2 * 4096;

/// Bytes read at a time when streaming a file.
const CHUNK: usize = 256 << 10;

/// A mounted NTFS volume.
pub struct NtfsVolume {
    ntfs: Ntfs,
    io: RefCell<CachedIo>,
}

/// The type and size of a path, as ntfs-3g's `lstat` reports them.
enum Node {
    Dir {
        index_len: u64,
    },
    File {
        len: u64,
    },
    Link(String),
    /// A FIFO, socket or device node.
    Special {
        len: u64,
    },
}

impl Node {
    fn meta(&self) -> FileMeta {
        let (kind, size) = match self {
            Node::Dir { index_len } => (FileKind::Dir, *index_len),
            Node::File { len } => (FileKind::File, *len),
            Node::Link(target) => (FileKind::Symlink, target.len() as u64),
            Node::Special { len } => (FileKind::Other, *len),
        };
        FileMeta {
            kind,
            mode: NTFS_MODE,
            uid: 0,
            gid: 0,
            size,
        }
    }
}

impl NtfsVolume {
    /// Reads the boot sector and the upcase table of the NTFS file system
    /// in `region`.
    pub fn open(region: Region) -> Result<Self> {
        let mut io = CachedIo::new(region);
        let mut ntfs = Ntfs::new(&mut io).map_err(ntfs_error)?;
        ntfs.read_upcase_table(&mut io).map_err(ntfs_error)?;
        let volume = Self {
            ntfs,
            io: RefCell::new(io),
        };
        // Reading the root folder's index catches a damaged file table now
        // rather than in the first rule.
        volume.list("/").context("failed to list the root folder")?;
        Ok(volume)
    }

    /// Metadata of `path` without following a final symlink.
    pub fn lstat(&self, path: &str) -> Result<Option<FileMeta>> {
        let io = &mut *self.io.borrow_mut();
        let Some(record) = self.resolve(io, path, false)? else {
            return Ok(None);
        };
        let file = self.file(io, record)?;
        Ok(Some(self.describe(io, &file)?.meta()))
    }

    /// Reads a regular file whole, or returns `None` when `path` is not one.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let io = &mut *self.io.borrow_mut();
        let Some(record) = self.resolve(io, path, false)? else {
            return Ok(None);
        };
        let file = self.file(io, record)?;
        let Node::File { len } = self.describe(io, &file)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(len.min(1 << 30) as usize);
        self.stream(io, &file, 0, u64::MAX, &mut |bytes| {
            out.extend_from_slice(bytes);
            Ok(())
        })
        .with_context(|| format!("read {path}"))?;
        Ok(Some(out))
    }

    /// Reads up to `len` bytes at `offset` of a regular file, following
    /// symlinks.
    pub fn read_at(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let io = &mut *self.io.borrow_mut();
        let file = self.open_following(io, path)?;
        let mut out = Vec::with_capacity(len.min(1 << 20));
        self.stream(io, &file, offset, len as u64, &mut |bytes| {
            out.extend_from_slice(bytes);
            Ok(())
        })
        .with_context(|| format!("read {path}"))?;
        Ok(out)
    }

    /// Computes the SHA-256 of a regular file, streaming it.
    pub fn sha256_of_file(&self, path: &str) -> Result<String> {
        use sha2::{Digest, Sha256};
        let io = &mut *self.io.borrow_mut();
        let file = self.open_following(io, path)?;
        let mut hasher = Sha256::new();
        self.stream(io, &file, 0, u64::MAX, &mut |bytes| {
            hasher.update(bytes);
            Ok(())
        })
        .with_context(|| format!("read {path}"))?;
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Returns the target of a symlink, or `None` when `path` is not one.
    pub fn read_link(&self, path: &str) -> Result<Option<String>> {
        let io = &mut *self.io.borrow_mut();
        let Some(record) = self.resolve(io, path, false)? else {
            return Ok(None);
        };
        let file = self.file(io, record)?;
        self.link_target(io, &file)
    }

    /// Lists a folder with each entry's metadata, sorted by name. The list
    /// is empty when `path` is not a folder.
    pub fn list(&self, path: &str) -> Result<Vec<(String, FileMeta)>> {
        let io = &mut *self.io.borrow_mut();
        let Some(record) = self.resolve(io, path, false)? else {
            return Ok(Vec::new());
        };
        let dir = self.file(io, record)?;
        if !matches!(self.describe(io, &dir)?, Node::Dir { .. }) {
            return Ok(Vec::new());
        }
        let names = self
            .children(io, &dir)
            .with_context(|| format!("list {path}"))?;
        let mut out = Vec::with_capacity(names.len());
        for (name, record) in names {
            let file = self.file(io, record)?;
            let meta = self
                .describe(io, &file)
                .with_context(|| format!("lstat {}/{name}", path.trim_end_matches('/')))?
                .meta();
            out.push((name, meta));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Tells whether `path` exists, following symlinks.
    pub fn exists(&self, path: &str) -> bool {
        let io = &mut *self.io.borrow_mut();
        matches!(self.resolve(io, path, true), Ok(Some(_)))
    }

    /// Reads a file, following symlinks.
    pub fn read_following(&self, path: &str) -> Option<Vec<u8>> {
        let io = &mut *self.io.borrow_mut();
        let file = self.open_following(io, path).ok()?;
        if !matches!(self.describe(io, &file).ok()?, Node::File { .. }) {
            return None;
        }
        let mut out = Vec::new();
        self.stream(io, &file, 0, u64::MAX, &mut |bytes| {
            out.extend_from_slice(bytes);
            Ok(())
        })
        .ok()?;
        Some(out)
    }

    /// Finds `path` comparing names without regard to case, as Windows
    /// does, and returns it spelled as on the volume. Returns `None` when a
    /// part of it is missing. Symlinks on the way are not followed.
    pub fn find_ignoring_case(&self, path: &str) -> Result<Option<String>> {
        let io = &mut *self.io.borrow_mut();
        let mut record = ROOT_RECORD;
        let mut found = String::new();
        for name in path.split('/').filter(|n| !n.is_empty()) {
            let dir = self.file(io, record)?;
            if !dir.is_directory() {
                return Ok(None);
            }
            let Some((on_disk, child)) = self.child_ignoring_case(io, &dir, name)? else {
                return Ok(None);
            };
            found.push('/');
            found.push_str(&on_disk);
            record = child;
        }
        Ok(Some(if found.is_empty() {
            "/".to_owned()
        } else {
            found
        }))
    }

    fn file<'n>(&'n self, io: &mut CachedIo, record: u64) -> Result<NtfsFile<'n>> {
        self.ntfs
            .file(io, record)
            .map_err(ntfs_error)
            .with_context(|| format!("read file record {record}"))
    }

    /// Opens the file at `path`, following symlinks. Fails when nothing is
    /// there.
    fn open_following<'n>(&'n self, io: &mut CachedIo, path: &str) -> Result<NtfsFile<'n>> {
        let record = self
            .resolve(io, path, true)?
            .ok_or_else(|| anyhow!("{path} does not exist"))?;
        self.file(io, record)
    }

    /// Finds the file record of `path`. Symlinks in the folders on the way
    /// are followed, and the last one too when `follow_last` is set.
    fn resolve(&self, io: &mut CachedIo, path: &str, follow_last: bool) -> Result<Option<u64>> {
        if !path.starts_with('/') {
            bail!("paths in a volume must be absolute, got {path:?}");
        }
        let mut stack = vec![ROOT_RECORD];
        let mut pending: VecDeque<String> = path
            .split('/')
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        let mut hops = 0;
        while let Some(name) = pending.pop_front() {
            match name.as_str() {
                "." => continue,
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let dir = self.file(io, *stack.last().expect("the root stays"))?;
            if !dir.is_directory() {
                return Ok(None);
            }
            let Some(child) = self.child(io, &dir, &name)? else {
                return Ok(None);
            };
            if follow_last || !pending.is_empty() {
                let file = self.file(io, child)?;
                if let Some(target) = self.link_target(io, &file)? {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        bail!("too many levels of symbolic links in {path}");
                    }
                    if target.starts_with('/') {
                        stack.truncate(1);
                    }
                    for part in target.split('/').rev().filter(|n| !n.is_empty()) {
                        pending.push_front(part.to_owned());
                    }
                    continue;
                }
            }
            stack.push(child);
        }
        Ok(stack.last().copied())
    }

    /// Looks `name` up in the folder `dir` with its exact case, among long
    /// and short names alike, as ntfs-3g does.
    fn child(&self, io: &mut CachedIo, dir: &NtfsFile, name: &str) -> Result<Option<u64>> {
        let index = dir.directory_index(io).map_err(ntfs_error)?;
        // The index is sorted without regard to case, so a search finds a
        // name that differs at most in case. Only when it differs is a
        // second name with the same letters possible, in the POSIX
        // namespace, and the whole index is read.
        {
            let mut finder = index.finder();
            match NtfsFileNameIndex::find(&mut finder, &self.ntfs, io, name) {
                None => return Ok(None),
                Some(entry) => {
                    let entry = entry.map_err(ntfs_error)?;
                    if let Some(key) = entry.key() {
                        if key.map_err(ntfs_error)?.name() == name {
                            return Ok(Some(entry.file_reference().file_record_number()));
                        }
                    }
                }
            }
        }
        let mut entries = index.entries();
        while let Some(entry) = entries.next(io) {
            let entry = entry.map_err(ntfs_error)?;
            let Some(key) = entry.key() else { continue };
            if key.map_err(ntfs_error)?.name() == name {
                return Ok(Some(entry.file_reference().file_record_number()));
            }
        }
        Ok(None)
    }

    /// Looks `name` up in the folder `dir` without regard to case and
    /// returns the name that a listing shows for it, with its record.
    fn child_ignoring_case(
        &self,
        io: &mut CachedIo,
        dir: &NtfsFile,
        name: &str,
    ) -> Result<Option<(String, u64)>> {
        let index = dir.directory_index(io).map_err(ntfs_error)?;
        let mut finder = index.finder();
        let Some(entry) = NtfsFileNameIndex::find(&mut finder, &self.ntfs, io, name) else {
            return Ok(None);
        };
        let entry = entry.map_err(ntfs_error)?;
        let record = entry.file_reference().file_record_number();
        let Some(key) = entry.key() else {
            return Ok(None);
        };
        let key = key.map_err(ntfs_error)?;
        if key.namespace() != NtfsFileNamespace::Dos {
            return Ok(Some((key.name().to_string_lossy(), record)));
        }
        // A short name matched, but listings show the file's long name in
        // the same folder instead.

        let file = self.file(io, record)?;
        let mut attributes = file.attributes();
        while let Some(item) = attributes.next(io) {
            let item = item.map_err(ntfs_error)?;
            let attribute = item.to_attribute().map_err(ntfs_error)?;
            if attribute.ty().map_err(ntfs_error)? != NtfsAttributeType::FileName {
                continue;
            }
            let file_name = attribute
                .structured_value::<_, ntfs::structured_values::NtfsFileName>(io)
                .map_err(ntfs_error)?;
            if file_name.namespace() != NtfsFileNamespace::Dos
                && file_name.parent_directory_reference().file_record_number()
                    == dir.file_record_number()
            {
                return Ok(Some((file_name.name().to_string_lossy(), record)));
            }
        }
        Ok(Some((key.name().to_string_lossy(), record)))
    }

    /// Returns the names a listing of `dir` shows, with their records: no
    /// short names, no metadata files, no `.`.
    fn children(&self, io: &mut CachedIo, dir: &NtfsFile) -> Result<Vec<(String, u64)>> {
        let index = dir.directory_index(io).map_err(ntfs_error)?;
        let mut entries = index.entries();
        let mut out = Vec::new();
        while let Some(entry) = entries.next(io) {
            let entry = entry.map_err(ntfs_error)?;
            let Some(key) = entry.key() else { continue };
            let key = key.map_err(ntfs_error)?;
            let record = entry.file_reference().file_record_number();
            if key.namespace() == NtfsFileNamespace::Dos || record < FIRST_USER_RECORD {
                continue;
            }
            let name = key.name().to_string_lossy();
            if name == "." || name == ".." {
                continue;
            }
            out.push((name, record));
        }
        Ok(out)
    }

    /// Tells what `file` is, the way ntfs-3g's `lstat` does.
    fn describe(&self, io: &mut CachedIo, file: &NtfsFile) -> Result<Node> {
        if let Some(target) = self.link_target(io, file)? {
            return Ok(Node::Link(target));
        }
        if file.is_directory() {
            let index_len = self
                .find_attribute(io, file, NtfsAttributeType::IndexAllocation, "$I30")?
                .unwrap_or(0);
            return Ok(Node::Dir { index_len });
        }
        let len = self
            .find_attribute(io, file, NtfsAttributeType::Data, "")?
            .unwrap_or(0);
        let flags = file.info().map_err(ntfs_error)?.file_attributes();
        if flags.contains(NtfsFileAttributeFlags::SYSTEM) {
            if !flags.contains(NtfsFileAttributeFlags::HIDDEN) && len <= 1 {
                return Ok(Node::Special { len });
            }
            if len == INTERIX_DEVICE_LEN {
                let head = self.head(io, file, 8)?;
                if head == INTERIX_CHAR_DEVICE || head == INTERIX_BLOCK_DEVICE {
                    return Ok(Node::Special { len });
                }
            }
        }
        Ok(Node::File { len })
    }

    /// Returns the target that ntfs-3g shows for a reparse point or an
    /// Interix symlink, or `None` for any other file.
    fn link_target(&self, io: &mut CachedIo, file: &NtfsFile) -> Result<Option<String>> {
        let flags = file.info().map_err(ntfs_error)?.file_attributes();
        if flags.contains(NtfsFileAttributeFlags::REPARSE_POINT) {
            if let Some(data) = self.reparse_data(io, file)? {
                return Ok(Some(self.reparse_target(io, &data)));
            }
        }
        if !flags.contains(NtfsFileAttributeFlags::SYSTEM) || file.is_directory() {
            return Ok(None);
        }
        let len = self
            .find_attribute(io, file, NtfsAttributeType::Data, "")?
            .unwrap_or(0);
        if len <= 8 || len > INTERIX_MAX_LEN {
            return Ok(None);
        }
        let bytes = self.head(io, file, len as usize)?;
        if !bytes.starts_with(INTERIX_SYMLINK) {
            return Ok(None);
        }
        Ok(Some(utf16(&bytes[8..])))
    }

    /// Reads the first `len` bytes of the file's data.
    fn head(&self, io: &mut CachedIo, file: &NtfsFile, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len);
        self.stream(io, file, 0, len as u64, &mut |bytes| {
            out.extend_from_slice(bytes);
            Ok(())
        })?;
        Ok(out)
    }

    /// Returns the value length of the attribute of type `ty` named `name`
    /// (empty for the unnamed one), or `None` when the file has none.
    fn find_attribute(
        &self,
        io: &mut CachedIo,
        file: &NtfsFile,
        ty: NtfsAttributeType,
        name: &str,
    ) -> Result<Option<u64>> {
        let mut attributes = file.attributes();
        while let Some(item) = attributes.next(io) {
            let item = item.map_err(ntfs_error)?;
            let attribute = item.to_attribute().map_err(ntfs_error)?;
            if attribute.ty().map_err(ntfs_error)? == ty
                && attribute.name().map_err(ntfs_error)? == name
            {
                return Ok(Some(attribute.value_length()));
            }
        }
        Ok(None)
    }

    /// Returns the value of the file's `$REPARSE_POINT` attribute.
    fn reparse_data(&self, io: &mut CachedIo, file: &NtfsFile) -> Result<Option<Vec<u8>>> {
        let mut attributes = file.attributes();
        while let Some(item) = attributes.next(io) {
            let item = item.map_err(ntfs_error)?;
            let attribute = item.to_attribute().map_err(ntfs_error)?;
            if attribute.ty().map_err(ntfs_error)? != NtfsAttributeType::ReparsePoint {
                continue;
            }
            // Reparse data is at most 16 KiB.
            let value = attribute.value(io).map_err(ntfs_error)?;
            let mut data = Vec::new();
            value.attach(io).take(64 << 10).read_to_end(&mut data)?;
            return Ok(Some(data));
        }
        Ok(None)
    }

    /// Turns reparse data into the symlink target ntfs-3g shows.
    fn reparse_target(&self, io: &mut CachedIo, data: &[u8]) -> String {
        let tag = u32_at(data, 0).unwrap_or(0);
        let unsupported = format!("unsupported reparse tag 0x{tag:08x}");
        // Both layouts start with the offset and length of the substitute
        // name in their path buffer. A symlink has a flags word before the
        // buffer.
        let (buffer_at, relative) = match tag {
            TAG_MOUNT_POINT => (16, false),
            TAG_SYMLINK => (
                20,
                u32_at(data, 16).is_some_and(|f| f & SYMLINK_RELATIVE != 0),
            ),
            _ => return unsupported,
        };

        let (Some(offset), Some(len)) = (u16_at(data, 8), u16_at(data, 10)) else {
            return unsupported;
        };
        let start = buffer_at + usize::from(offset);
        let Some(name) = data.get(start..start + usize::from(len)) else {
            return unsupported;
        };
        let name = utf16(name);

        if relative {
            return name.replace('\\', "/");
        }
        // `\??\C:\Users`: a path on a drive, taken to be this volume.
        let Some(on_drive) = name.strip_prefix("\\??\\").and_then(|rest| {
            rest.get(2..)
                .filter(|_| rest.as_bytes().get(1) == Some(&b':'))
        }) else {
            return unsupported;
        };
        let path = format!("/{}", on_drive.replace('\\', "/").trim_start_matches('/'));
        self.with_disk_case(io, &path)
    }

    /// Returns `path` with each name that exists spelled as on the volume,
    /// and the rest as given.
    fn with_disk_case(&self, io: &mut CachedIo, path: &str) -> String {
        let mut record = Some(ROOT_RECORD);
        let mut out = String::new();
        for name in path.split('/').filter(|n| !n.is_empty()) {
            let found = record.and_then(|r| {
                let dir = self.file(io, r).ok()?;
                if !dir.is_directory() {
                    return None;
                }
                self.child_ignoring_case(io, &dir, name).ok().flatten()
            });
            out.push('/');
            match found {
                Some((on_disk, child)) => {
                    out.push_str(&on_disk);
                    record = Some(child);
                }
                None => {
                    out.push_str(name);
                    record = None;
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Passes the bytes of the file's unnamed data stream from `offset`, at
    /// most `len` of them, to `sink` in chunks.
    fn stream(
        &self,
        io: &mut CachedIo,
        file: &NtfsFile,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let Some(item) = file.data(io, "") else {
            return Ok(());
        };
        let item = item.map_err(ntfs_error)?;
        let attribute = item.to_attribute().map_err(ntfs_error)?;
        let flags = attribute.flags();
        if flags.contains(NtfsAttributeFlags::ENCRYPTED) {
            bail!("the file is encrypted with EFS, and its content cannot be read");
        }
        // NOTE: ntfs-3g decompresses LZNT1 files, but this reader does not,
        // so rules that read such a file fail on the direct reader.
        if flags.contains(NtfsAttributeFlags::COMPRESSED) {
            bail!("the file is compressed by NTFS, which the direct reader cannot decompress");
        }

        let size = attribute.value_length();
        let valid = if attribute.is_resident() {
            size
        } else {
            valid_data_length(io, &attribute)?.min(size)
        };
        let end = offset.saturating_add(len).min(size);
        if offset >= end {
            return Ok(());
        }

        let mut value = attribute.value(io).map_err(ntfs_error)?;
        if offset < valid {
            value
                .seek(io, SeekFrom::Start(offset))
                .map_err(ntfs_error)?;
        }
        let mut buf = vec![0u8; CHUNK.min((end - offset) as usize)];
        let mut pos = offset;
        while pos < end {
            let want = (end - pos).min(buf.len() as u64) as usize;
            if pos >= valid {
                buf[..want].fill(0);
                sink(&buf[..want])?;
                pos += want as u64;
                continue;
            }
            let want = want.min((valid - pos) as usize);
            let n = value.read(io, &mut buf[..want]).map_err(ntfs_error)?;
            if n == 0 {
                bail!("the file's data ends at byte {pos}, before its size of {size} bytes");
            }
            sink(&buf[..n])?;
            pos += n as u64;
        }
        Ok(())
    }
}

/// Reads the valid data length ("initialized size") of a non-resident
/// attribute from its header, which the `ntfs` crate does not expose.
///
/// The field is the u64 at byte 0x38 of the header. The last two bytes of
/// every 512 bytes of a file record hold the record's update sequence
/// number on disk, and the real bytes are kept elsewhere in the record.
/// When the field ends there, its top two bytes are such a stand-in, and
/// the real ones are zero for any length below 256 TiB: those two bytes are
/// then taken as zero.
fn valid_data_length(io: &mut CachedIo, attribute: &NtfsAttribute) -> Result<u64> {
    let header = attribute
        .position()
        .value()
        .ok_or_else(|| anyhow!("an attribute has no position on the volume"))?
        .get();
    let field = header + 0x38;
    let mut bytes = [0u8; 8];
    io.seek(SeekFrom::Start(field))?;
    io.read_exact(&mut bytes)?;
    let mut value = u64::from_le_bytes(bytes);
    if field % 512 == 512 - 8 {
        value &= (1 << 48) - 1;
    }
    Ok(value)
}

fn u16_at(data: &[u8], offset: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        data.get(offset..offset + 2)?.try_into().ok()?,
    ))
}

fn u32_at(data: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        data.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

/// Decodes UTF-16LE, replacing what does not decode, up to a NUL.
fn utf16(bytes: &[u8]) -> String {
    let units = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
        .take_while(|unit| *unit != 0);
    char::decode_utf16(units)
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn ntfs_error(e: NtfsError) -> anyhow::Error {
    anyhow!("ntfs: {e}")
}

/// Size of one cached block of the partition.
const BLOCK: u64 = 64 << 10;
/// Blocks kept: the file table's first record, the records being read and
/// the index blocks of the folders being walked fit in 1 MiB.
const BLOCKS: usize = 16;

/// A read-only stream over a partition for the `ntfs` crate, which reads
/// a few bytes at a time while it parses records and indexes. Small reads
/// are served from the most recently used 64 KiB blocks; reads of a block
/// or more go straight to the file.
pub struct CachedIo {
    region: Region,
    pos: u64,
    /// Start offset and bytes of each cached block, most recent last.
    blocks: Vec<(u64, Vec<u8>)>,
}

impl CachedIo {
    fn new(region: Region) -> Self {
        Self {
            region,
            pos: 0,
            blocks: Vec::with_capacity(BLOCKS),
        }
    }

    fn block(&mut self, start: u64) -> std::io::Result<&[u8]> {
        match self.blocks.iter().position(|(s, _)| *s == start) {
            Some(index) => {
                let block = self.blocks.remove(index);
                self.blocks.push(block);
            }
            None => {
                let bytes = self
                    .region
                    .read_vec_upto(start, BLOCK as usize)
                    .map_err(std::io::Error::other)?;
                if self.blocks.len() == BLOCKS {
                    self.blocks.remove(0);
                }
                self.blocks.push((start, bytes));
            }
        }
        Ok(&self.blocks.last().expect("just pushed").1)
    }
}

impl Read for CachedIo {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.len() as u64 >= BLOCK {
            let bytes = self
                .region
                .read_vec_upto(self.pos, buf.len())
                .map_err(std::io::Error::other)?;
            buf[..bytes.len()].copy_from_slice(&bytes);
            self.pos += bytes.len() as u64;
            return Ok(bytes.len());
        }
        let start = self.pos - self.pos % BLOCK;
        let skip = (self.pos - start) as usize;
        let block = self.block(start)?;
        let n = block.len().saturating_sub(skip).min(buf.len());
        buf[..n].copy_from_slice(&block[skip..skip + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for CachedIo {
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

#[cfg(test)]
mod tests {
    //! Compares the volume with an ntfs-3g mount of the same file system,
    //! made at test time with mkntfs and filled through ntfs-3g. ntfs-3g on
    //! the host is the driver the libguestfs appliance copies, so both show
    //! the same tree. The tests skip when the tools, FUSE or root are
    //! missing.

    use super::*;
    use std::collections::BTreeMap;
    use std::fs::{self, File};
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::{Arc, OnceLock};

    /// Runs a tool and returns whether it succeeded, printing its stderr
    /// when it did not.
    fn run(program: &str, args: &[&str]) -> bool {
        match Command::new(program).args(args).output() {
            Ok(out) if out.status.success() => true,
            Ok(out) => {
                eprintln!(
                    "{program} {args:?} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                false
            }
            Err(e) => {
                eprintln!("{program} could not start: {e}");
                false
            }
        }
    }

    fn set_attr(path: &Path, name: &str, value: &str) {
        assert!(run(
            "setfattr",
            &["-n", name, "-v", value, path.to_str().unwrap()]
        ));
    }

    /// Builds reparse data for a junction (`\??\C:\...`) or a symlink.
    fn reparse_hex(tag: u32, target: &str, flags: Option<u32>) -> String {
        let name: Vec<u8> = target.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut body = Vec::new();
        for field in [0u16, name.len() as u16, name.len() as u16, 0] {
            body.extend_from_slice(&field.to_le_bytes());
        }
        if let Some(flags) = flags {
            body.extend_from_slice(&flags.to_le_bytes());
        }
        body.extend_from_slice(&name);
        let mut data = tag.to_le_bytes().to_vec();
        data.extend_from_slice(&(body.len() as u16).to_le_bytes());
        data.extend_from_slice(&[0, 0]);
        data.extend_from_slice(&body);
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    }

    /// Fills the mounted file system at `root` with one of each kind of
    /// file this reader handles.
    fn fill(root: &Path) {
        fs::write(root.join("small.txt"), "hello\n").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(root.join("big.bin"), &big).unwrap();
        let sparse = File::create(root.join("sparse.bin")).unwrap();
        sparse.set_len(10 << 20).unwrap();
        sparse.write_all_at(b"in the middle", 5 << 20).unwrap();
        fs::create_dir(root.join("bigdir")).unwrap();
        for i in 0..600 {
            fs::write(
                root.join(format!("bigdir/file-with-a-long-name-{i}.txt")),
                "x",
            )
            .unwrap();
        }
        let long = root.join("Long Name Folder");
        fs::create_dir(&long).unwrap();
        fs::write(long.join("Mixed Case File.TXT"), "mixed\n").unwrap();
        set_attr(&long, "system.ntfs_dos_name", "LONGNA~1");
        fs::write(root.join("UPPER.TXT"), "upper\n").unwrap();
        fs::write(root.join("upper.txt"), "lower\n").unwrap();
        fs::hard_link(root.join("small.txt"), root.join("hardlink.txt")).unwrap();
        std::os::unix::fs::symlink("small.txt", root.join("link")).unwrap();
        std::os::unix::fs::symlink("bigdir", root.join("dirlink")).unwrap();
        fs::write(root.join("streams.txt"), "main\n").unwrap();
        set_attr(&root.join("streams.txt"), "user.extra", "stream data");
        fs::write(root.join("empty"), "").unwrap();
        fs::write(root.join("readonly.txt"), "ro\n").unwrap();
        set_attr(
            &root.join("readonly.txt"),
            "system.ntfs_attrib_be",
            "0x00000001",
        );
        fs::write(root.join("fifo"), "").unwrap();
        set_attr(&root.join("fifo"), "system.ntfs_attrib_be", "0x00000004");
        fs::write(root.join("hidden-system"), "").unwrap();
        set_attr(
            &root.join("hidden-system"),
            "system.ntfs_attrib_be",
            "0x00000006",
        );
        fs::create_dir(root.join("junction")).unwrap();
        set_attr(
            &root.join("junction"),
            "system.ntfs_reparse_data",
            &reparse_hex(TAG_MOUNT_POINT, "\\??\\C:\\BIGDIR", None),
        );
        fs::write(root.join("relative"), "").unwrap();
        set_attr(
            &root.join("relative"),
            "system.ntfs_reparse_data",
            &reparse_hex(TAG_SYMLINK, "bigdir\\file-with-a-long-name-7.txt", Some(1)),
        );
        fs::write(root.join("wof"), "").unwrap();
        set_attr(
            &root.join("wof"),
            "system.ntfs_reparse_data",
            "0x170000801000000001000000020000000100000000000000",
        );
        // Clusters full of 0xAA for the preallocated file below to reuse.
        fs::write(root.join("junk"), vec![0xAAu8; 1 << 20]).unwrap();
        fs::remove_file(root.join("junk")).unwrap();
        fs::write(root.join("prealloc"), "valid part\n").unwrap();
    }

    /// The test file system: its image and a read-only ntfs-3g mount of
    /// it.
    struct Fixture {
        _dir: tempfile::TempDir,
        image: PathBuf,
        mount: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            run("umount", &[self.mount.to_str().unwrap()]);
        }
    }

    /// Returns the file system shared by the tests, made on first use, or
    /// `None` when it cannot be made here.
    fn fixture() -> Option<&'static Fixture> {
        static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
        FIXTURE.get_or_init(make_fixture).as_ref()
    }

    fn make_fixture() -> Option<Fixture> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: mounting NTFS with ntfs-3g needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("ntfs.img");
        let mount = dir.path().join("mnt");
        fs::create_dir(&mount).unwrap();
        File::create(&image).unwrap().set_len(64 << 20).unwrap();
        let (img, mnt) = (image.to_str().unwrap(), mount.to_str().unwrap());
        if !run("mkntfs", &["-q", "-F", "-f", "-L", "test", img]) || !run("ntfs-3g", &[img, mnt]) {
            eprintln!("skipping: mkntfs or ntfs-3g is missing or FUSE does not work here");
            return None;
        }
        fill(&mount);
        assert!(run("umount", &[mnt]));
        assert!(run("ntfsfallocate", &["-l", "1M", img, "/prealloc"]));
        assert!(run("ntfs-3g", &["-o", "ro", img, mnt]));
        Some(Fixture {
            _dir: dir,
            image,
            mount,
        })
    }

    fn open(fixture: &Fixture) -> NtfsVolume {
        let file = File::open(&fixture.image).unwrap();
        let len = file.metadata().unwrap().len();
        NtfsVolume::open(Region {
            file: Arc::new(file),
            start: 0,
            len,
        })
        .unwrap()
    }

    /// Walks the ntfs-3g mount: each path below the root with its
    /// metadata as `lstat` shows it.
    fn walk_mount(root: &Path, dir: &str, out: &mut BTreeMap<String, FileMeta>) {
        let host = root.join(dir.trim_start_matches('/'));
        for entry in fs::read_dir(&host).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            let kind = if meta.is_dir() {
                FileKind::Dir
            } else if meta.is_file() {
                FileKind::File
            } else if meta.file_type().is_symlink() {
                FileKind::Symlink
            } else {
                FileKind::Other
            };
            out.insert(
                path.clone(),
                FileMeta {
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.len(),
                },
            );
            if kind == FileKind::Dir {
                walk_mount(root, &path, out);
            }
        }
    }

    fn walk_volume(volume: &NtfsVolume, dir: &str, out: &mut BTreeMap<String, FileMeta>) {
        for (name, meta) in volume.list(dir).unwrap() {
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            if meta.kind == FileKind::Dir {
                walk_volume(volume, &path, out);
            }
            out.insert(path, meta);
        }
    }

    #[test]
    fn tree_matches_ntfs_3g() {
        let Some(fixture) = fixture() else { return };
        let volume = open(fixture);
        let mut expected = BTreeMap::new();
        walk_mount(&fixture.mount, "/", &mut expected);
        assert!(
            expected.len() > 600,
            "the mount lists {} paths",
            expected.len()
        );
        let mut found = BTreeMap::new();
        walk_volume(&volume, "/", &mut found);
        let expected_names: Vec<&String> = expected.keys().collect();
        let found_names: Vec<&String> = found.keys().collect();
        assert_eq!(found_names, expected_names);
        for (path, meta) in &expected {
            // ntfs-3g puts the mount point in front of a junction's
            // target, so the lengths of those links differ.
            if path == "/junction" {
                continue;
            }
            assert_eq!(&found[path], meta, "metadata of {path}");
            assert_eq!(
                volume.lstat(path).unwrap().as_ref(),
                Some(meta),
                "lstat {path}"
            );
        }
    }

    #[test]
    fn contents_match_ntfs_3g() {
        let Some(fixture) = fixture() else { return };
        let volume = open(fixture);
        let mut expected = BTreeMap::new();
        walk_mount(&fixture.mount, "/", &mut expected);
        for (path, meta) in expected.iter().filter(|(_, m)| m.kind == FileKind::File) {
            let bytes = fs::read(fixture.mount.join(path.trim_start_matches('/'))).unwrap();
            assert_eq!(bytes.len() as u64, meta.size, "size of {path}");
            let read = volume.read(path).unwrap().unwrap();
            assert!(read == bytes, "content of {path} differs from ntfs-3g's");
            assert_eq!(
                volume.sha256_of_file(path).unwrap(),
                crate::check::view::sha256_hex(&bytes),
                "sha256 of {path}"
            );
        }
    }

    #[test]
    fn sparse_and_preallocated_data() {
        let Some(fixture) = fixture() else { return };
        let volume = open(fixture);
        let middle = volume.read_at("/sparse.bin", (5 << 20) - 2, 17).unwrap();
        assert_eq!(middle, b"\0\0in the middle\0\0");
        let prealloc = volume.read("/prealloc").unwrap().unwrap();
        assert_eq!(prealloc.len(), 1 << 20);
        assert_eq!(&prealloc[..11], b"valid part\n");
        assert!(
            prealloc[11..].iter().all(|b| *b == 0),
            "bytes past the valid data length"
        );
        let tail = volume.read_at("/prealloc", (1 << 20) - 4, 100).unwrap();
        assert_eq!(tail, [0, 0, 0, 0]);
    }

    #[test]
    fn links_and_special_files() {
        let Some(fixture) = fixture() else { return };
        let volume = open(fixture);
        assert_eq!(
            volume.read_link("/link").unwrap().as_deref(),
            Some("small.txt")
        );
        assert_eq!(
            volume.read_link("/junction").unwrap().as_deref(),
            Some("/bigdir")
        );
        assert_eq!(
            volume.read_link("/relative").unwrap().as_deref(),
            Some("bigdir/file-with-a-long-name-7.txt")
        );
        assert_eq!(
            volume.read_link("/wof").unwrap().as_deref(),
            Some("unsupported reparse tag 0x80000017")
        );
        assert_eq!(volume.read_link("/small.txt").unwrap(), None);
        assert_eq!(
            volume.lstat("/fifo").unwrap().unwrap().kind,
            FileKind::Other
        );
        assert_eq!(
            volume.read("/link").unwrap(),
            None,
            "read does not follow links"
        );
        assert_eq!(volume.read_at("/link", 0, 100).unwrap(), b"hello\n");
        assert!(volume.exists("/junction/file-with-a-long-name-3.txt"));
        assert_eq!(
            volume
                .lstat("/dirlink/file-with-a-long-name-3.txt")
                .unwrap()
                .unwrap()
                .kind,
            FileKind::File,
            "links in the folders of a path are followed"
        );
        assert!(volume.list("/link").unwrap().is_empty());
    }

    #[test]
    fn lookups_are_exact_case() {
        let Some(fixture) = fixture() else { return };
        let volume = open(fixture);
        assert_eq!(volume.read("/UPPER.TXT").unwrap().unwrap(), b"upper\n");
        assert_eq!(volume.read("/upper.txt").unwrap().unwrap(), b"lower\n");
        assert_eq!(volume.lstat("/Upper.txt").unwrap(), None);
        assert_eq!(volume.lstat("/BIGDIR").unwrap(), None);
        assert_eq!(volume.lstat("/$MFT").unwrap().unwrap().kind, FileKind::File);
        assert_eq!(
            volume.list("/LONGNA~1").unwrap().len(),
            1,
            "a short name can be looked up"
        );
        assert_eq!(volume.lstat("/longna~1").unwrap(), None);
        assert_eq!(
            volume
                .find_ignoring_case("/longna~1/mixed case file.txt")
                .unwrap()
                .as_deref(),
            Some("/Long Name Folder/Mixed Case File.TXT")
        );
        assert_eq!(volume.find_ignoring_case("/nothere").unwrap(), None);
    }
}
