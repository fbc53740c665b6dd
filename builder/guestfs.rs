//! The one module that talks to libguestfs: opens a disk image read-only,
//! reads its partition table, finds and mounts the OS, and serves the
//! [`ImageView`] that the compliance rules read.
//!
//! [`windows::WindowsDisk`] opens a Windows disk read-write for a build.
//!
//! Each [`GuestImage`] starts one libguestfs appliance (a small QEMU guest).
//! Under TCG a launch takes about 20 s, so open an image once and reuse it.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use guestfs::{AddDriveOptArgs, Handle, IsDirOptArgs, StatNS};
use tempfile::TempDir;

use crate::accel;

pub mod windows;
use crate::check::{DiskFacts, FileKind, FileMeta, ImageView, OsInfo, Partition, WalkEntry};
use crate::vhd;

/// Chunk size for reads and walks. The libguestfs protocol limits one
/// message to 4 MiB, so whole-file and partial reads stay well below that.
const READ_CHUNK: usize = 2 << 20;

/// Number of paths sent in one `lstatnslist` call during a walk.
const STAT_BATCH: usize = 1000;

/// GPT type of a BIOS boot partition, which contains GRUB's core image and
/// no file system.
const GPT_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";

/// A disk image opened read-only in a libguestfs appliance, with its OS file
/// systems mounted read-only when inspection finds an OS.
///
/// The appliance reads the image through a qcow2 overlay from
/// [`create_overlay`], added as a read-only drive, so nothing is written to
/// the image file, not even an ext4 journal replay.
pub struct GuestImage {
    appliance: Appliance,
    disk: DiskFacts,
    os: Option<OsInfo>,
    /// Scratch folder with the qcow2 overlay and file transfers.
    scratch: TempDir,
    walk_cache: RefCell<Option<Vec<WalkEntry>>>,
    /// The whole tree unpacked on the host, made on first request.
    extracted: std::cell::OnceCell<Option<PathBuf>>,
}

impl GuestImage {
    /// Opens `path` read-only, launches the appliance, reads the disk layout
    /// and mounts the OS found by inspection.
    pub fn open(path: &Path) -> Result<Self> {
        let format = detect_format(path)?;
        reject_external_files(path, format)?;
        if format == "qcow2" {
            reject_corrupt_qcow2(path)?;
        }
        let scratch = tempfile::Builder::new()
            .prefix("forge-guestfs-")
            .tempdir()
            .context("failed to create a scratch folder for libguestfs")?;
        let overlay = scratch.path().join("overlay.qcow2");
        create_overlay(path, &overlay)?;

        let appliance = Appliance::launch(&overlay, "qcow2", true)
            .with_context(|| format!("failed to open {} in libguestfs", path.display()))?;
        let mut disk = read_disk_facts(&appliance.handle, path)?;
        disk.format = format.to_owned();
        let os = inspect_and_mount(&appliance.handle, false)
            .with_context(|| format!("failed to inspect the OS in {}", path.display()))?
            .map(|(_, os)| os);
        Ok(Self {
            appliance,
            disk,
            os,
            scratch,
            walk_cache: RefCell::new(None),
            extracted: std::cell::OnceCell::new(),
        })
    }

    /// Facts about the container and partition table.
    pub fn disk(&self) -> &DiskFacts {
        &self.disk
    }

    /// The OS found by inspection, or `None` when the disk contains no OS.
    pub fn os(&self) -> Option<&OsInfo> {
        self.os.as_ref()
    }

    /// Returns the file tree view, or `None` when no OS was mounted.
    pub fn view(&self) -> Option<&dyn ImageView> {
        self.os.as_ref().map(|_| self as &dyn ImageView)
    }

    fn g(&self) -> &Handle {
        &self.appliance.handle
    }

    /// Reads the whole regular file at `path`, whose size is `size`.
    fn read_whole(&self, path: &str, size: u64) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        if size <= READ_CHUNK as u64 {
            return self
                .g()
                .read_file(path)
                .guest_context(|| format!("read {path}"));
        }
        let mut out = Vec::with_capacity(size as usize);
        loop {
            let chunk = self.pread(path, out.len() as u64, READ_CHUNK)?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn pread(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let count = len.min(READ_CHUNK) as i32;
        let offset_arg = i64::try_from(offset).context("read offset too large")?;
        self.g()
            .pread(path, count, offset_arg)
            .guest_context(|| format!("read {count} bytes at offset {offset} of {path}"))
    }

    /// Lists every path below `/` with `find0`, which streams the names
    /// through a file so that large trees do not hit the message limit.
    fn find_all(&self) -> Result<Vec<String>> {
        let list = self.scratch.path().join("find0.list");
        let list_str = list.to_str().context("scratch path is not valid UTF-8")?;
        self.g()
            .find0("/", list_str)
            .guest_context(|| "list the files under /".to_owned())?;
        let bytes = std::fs::read(&list)
            .with_context(|| format!("failed to read the file list {}", list.display()))?;
        let _ = std::fs::remove_file(&list);
        Ok(bytes
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect())
    }

    fn walk_uncached(&self) -> Result<Vec<WalkEntry>> {
        // lstatnslist takes plain names inside one directory, so group the
        // paths by parent.
        let mut by_parent: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for relative in self.find_all()? {
            let path = format!("/{relative}");
            let (parent, name) = split_parent(&path)?;
            let Some(name) = name else { continue };
            by_parent
                .entry(parent.to_owned())
                .or_default()
                .push(name.to_owned());
        }

        let mut out = Vec::new();
        let mut unreadable = 0usize;
        for (parent, names) in &by_parent {
            for batch in names.chunks(STAT_BATCH) {
                let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
                let stats = self
                    .g()
                    .lstatnslist(parent, &refs)
                    .guest_context(|| format!("lstat {} names in {parent}", refs.len()))?;
                for (name, stat) in batch.iter().zip(stats) {
                    // NOTE: a name that is not valid UTF-8 was converted
                    // lossily in find_all, so lstat cannot find it and the
                    // walk leaves it out.
                    if stat.st_ino == -1 {
                        unreadable += 1;
                        continue;
                    }
                    out.push(WalkEntry {
                        path: join_path(parent, name),
                        meta: meta_of(&stat),
                    });
                }
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                count = unreadable,
                "walk skipped paths that lstat could not read"
            );
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

/// Rejects images that make QEMU open other files: a qcow2 backing file or
/// a differencing VHD's parent. Such a reference can name any path on the
/// host, and forge checks self-contained images only.
// NOTE: a VHDX parent locator is not looked for yet.
fn reject_external_files(path: &Path, format: &str) -> Result<()> {
    use std::io::Read;

    let mut head = [0u8; 512];
    let mut file =
        std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let len = file.read(&mut head)?;
    if len == 0 {
        bail!("{} is empty, not a disk image", path.display());
    }
    let backing = format == "qcow2"
        && len >= 16
        && u64::from_be_bytes(head[8..16].try_into().expect("8 bytes")) != 0;
    let differencing = format == "vpc"
        && head.starts_with(crate::vhd::COOKIE)
        && crate::vhd::Footer::parse(&head)
            .is_ok_and(|f| f.disk_type == crate::vhd::DISK_TYPE_DIFFERENCING);
    if backing || differencing {
        bail!(
            "{} depends on a backing or parent file; flatten it first \
             (qemu-img convert -O qcow2 IMAGE flat.qcow2) and check the result",
            path.display()
        );
    }
    Ok(())
}

/// Rejects a qcow2 image whose metadata `qemu-img check` finds corrupt,
/// such as a truncated copy whose tables point past the end of the file.
/// QEMU 7.2 still opens such a copy, and a check of a qcow2 cut in half
/// found the partitions but no OS and reported a non-compliant image.
fn reject_corrupt_qcow2(path: &Path) -> Result<()> {
    let output = std::process::Command::new("qemu-img")
        .args(["check", "-f", "qcow2", "--output=json"])
        .arg(path)
        .output()
        .context("failed to run qemu-img; is qemu-utils installed?")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first_error = stderr
        .lines()
        .map(|line| line.trim().trim_start_matches("ERROR: "))
        .find(|line| !line.is_empty())
        .unwrap_or("no message");
    // Exit codes of qemu-img check (QEMU 7.2 manual): 0 consistent, 1 check
    // not completed, 2 corrupted, 3 leaked clusters only. Leaked clusters
    // waste space in the file but do not change what the guest reads.
    match output.status.code() {
        Some(0 | 3) => Ok(()),
        Some(2) => {
            let report: serde_json::Value =
                serde_json::from_slice(&output.stdout).unwrap_or_default();
            let count = report["corruptions"].as_u64().unwrap_or(0);
            bail!(
                "qemu-img check found {count} errors in the qcow2 image {}, so it is \
                 truncated or corrupted (first error: {first_error}); copy or convert \
                 the image again",
                path.display()
            )
        }
        _ => bail!(
            "qemu-img check could not read the qcow2 metadata of {} ({}): {first_error}",
            path.display(),
            output.status
        ),
    }
}

/// Files larger than this are left out of bulk reads unless requested.
const EXCLUDE_OVER_BYTES: u64 = 64 * 1024;

/// Escapes the characters tar's `--exclude` treats as a pattern.
fn glob_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl GuestImage {
    /// Fetches every regular file under the top-level folder `top` in one
    /// tar stream and keeps those in `wanted`.
    fn read_tree_files(
        &self,
        top: &str,
        wanted: &BTreeSet<&str>,
        out: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        let archive = self.scratch.path().join("read-many.tar");
        let archive_str = archive
            .to_str()
            .context("scratch path is not valid UTF-8")?;
        // Large files outside the request stay out of the stream, because
        // under emulation the appliance sends a few MB per second and apt's
        // package lists alone are over 100 MB.
        let prefix = format!("{top}/");
        let skipped: Vec<String> = self
            .walk()?
            .into_iter()
            .filter(|e| e.meta.kind == FileKind::File && e.meta.size > EXCLUDE_OVER_BYTES)
            .filter(|e| e.path.starts_with(&prefix) && !wanted.contains(e.path.as_str()))
            .map(|e| format!("./{}", glob_escape(&e.path[prefix.len()..])))
            .collect();
        let skipped_refs: Vec<&str> = skipped.iter().map(String::as_str).collect();
        let opts = guestfs::TarOutOptArgs {
            compress: None,
            numericowner: Some(true),
            excludes: Some(&skipped_refs),
            xattrs: None,
            selinux: None,
            acls: None,
        };
        self.g()
            .tar_out(top, archive_str, opts)
            .guest_context(|| format!("archive {top}"))?;
        let file = std::fs::File::open(&archive)
            .with_context(|| format!("failed to open {}", archive.display()))?;
        let mut tar = tar::Archive::new(file);
        for entry in tar.entries().context("failed to read the tar stream")? {
            let mut entry = entry.context("failed to read a tar entry")?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let rel = entry
                .path()?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_owned();
            let path = join_path(top, &rel);
            if wanted.contains(path.as_str()) {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes)?;
                out.push((path, bytes));
            }
        }
        let _ = std::fs::remove_file(&archive);
        Ok(())
    }
}

impl GuestImage {
    /// Copies the whole OS tree, every file system mounted where the
    /// image's fstab puts it, into the empty folder `dest`, keeping owners,
    /// modes, times, hard links, extended attributes (file capabilities
    /// included), SELinux labels and ACLs.
    ///
    /// The appliance's tar streams into a FIFO that the host's tar unpacks
    /// from, so the archive never lands on disk. Swap partitions and LVM
    /// metadata are not files of the tree, so they stay behind.
    pub fn export_tree(&self, dest: &Path) -> Result<()> {
        if self.os.is_none() {
            bail!("no operating system found in the image, so there is no tree to copy");
        }
        let fifo = self.scratch.path().join("export.fifo");
        let fifo_c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())?;
        // SAFETY: the path is a valid NUL-terminated string.
        if unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("failed to create {}", fifo.display()));
        }

        // tar stops at the archive's end marker, and the appliance still
        // writes the padding of its last record after it, so `cat` reads
        // the rest of the FIFO; otherwise the appliance's write fails.
        let unpack = crate::exec::Cmd::new("sh")
            .arg("-c")
            .arg(
                "{ tar -x --numeric-owner --same-permissions --same-owner --xattrs \
                   --xattrs-include='*' --acls --selinux --exclude='./dev/*' -f - -C \"$2\"; \
                   status=$?; cat > /dev/null; exit $status; } < \"$1\"",
            )
            .arg("forge-unpack")
            .arg(&fifo)
            .arg(dest)
            .label("unpack the image's tree");
        let reader = std::thread::spawn(move || unpack.run());

        let opts = guestfs::TarOutOptArgs {
            compress: None,
            numericowner: Some(true),
            excludes: None,
            xattrs: Some(true),
            selinux: Some(true),
            acls: Some(true),
        };
        let fifo_str = fifo.to_str().context("scratch path is not valid UTF-8")?;
        let sent = self
            .g()
            .tar_out("/", fifo_str, opts)
            .guest_context(|| "archive the OS tree".to_owned());
        if sent.is_err() {
            // If the appliance failed before it opened the FIFO, the reader
            // still waits for a writer; opening and closing ends its input.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
        }

        let unpacked = reader
            .join()
            .map_err(|_| anyhow!("the thread unpacking the tree panicked"))?;
        // When the host's tar stops first, the appliance only gets a broken
        // pipe, so tar's own error is the one to report.
        unpacked.context("failed to unpack the image's tree")?;
        sent?;
        let _ = std::fs::remove_file(&fifo);
        Ok(())
    }
}

impl GuestImage {
    /// Unpacks the whole OS tree into the scratch folder, for tools that
    /// need host files (clamscan). Ownership is not kept: the copy is only
    /// read.
    fn extract_tree(&self) -> Result<PathBuf> {
        let archive = self.scratch.path().join("tree.tar");
        let archive_str = archive
            .to_str()
            .context("scratch path is not valid UTF-8")?;
        let opts = guestfs::TarOutOptArgs {
            compress: None,
            numericowner: Some(true),
            excludes: None,
            xattrs: None,
            selinux: None,
            acls: None,
        };
        self.g()
            .tar_out("/", archive_str, opts)
            .guest_context(|| "archive the OS tree".to_owned())?;
        let root = self.scratch.path().join("tree");
        std::fs::create_dir(&root)?;
        crate::exec::Cmd::new("tar")
            .args([
                "-x",
                "--no-same-owner",
                "--no-same-permissions",
                "--exclude=./dev/*",
            ])
            .arg("-f")
            .arg(&archive)
            .arg("-C")
            .arg(&root)
            .run()
            .context("failed to unpack the OS tree")?;
        let _ = std::fs::remove_file(&archive);
        Ok(root)
    }
}

impl ImageView for GuestImage {
    fn host_root(&self) -> Option<&Path> {
        self.extracted
            .get_or_init(|| match self.extract_tree() {
                Ok(root) => Some(root),
                Err(e) => {
                    tracing::warn!("could not unpack the image for scanning: {e:#}");
                    None
                }
            })
            .as_deref()
    }

    /// Groups the paths by top-level folder and reads each folder as one
    /// tar stream: one round trip per folder instead of one per file,
    /// which matters when the appliance runs under emulation.
    fn read_many(&self, paths: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        let wanted: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
        let mut tops: BTreeSet<String> = BTreeSet::new();
        let mut out = Vec::new();
        for p in paths {
            match p.trim_start_matches('/').split_once('/') {
                Some((top, _)) => {
                    tops.insert(format!("/{top}"));
                }
                None => {
                    if let Some(bytes) = self.read(p)? {
                        out.push((p.clone(), bytes));
                    }
                }
            }
        }
        for top in &tops {
            self.read_tree_files(top, &wanted, &mut out)?;
        }
        Ok(out)
    }

    /// Hashes every regular file of the tree inside the appliance in one
    /// `checksums_out` call and keeps the requested ones, because reading
    /// each file to the host is a round trip.
    fn sha256_many(&self, paths: &[String]) -> Result<Vec<(String, String)>> {
        let list = self.scratch.path().join("sha256.list");
        let list_str = list.to_str().context("scratch path is not valid UTF-8")?;
        self.g()
            .checksums_out("sha256", "/", list_str)
            .guest_context(|| "hash the files under /".to_owned())?;
        let bytes = std::fs::read(&list)
            .with_context(|| format!("failed to read the checksum list {}", list.display()))?;
        let _ = std::fs::remove_file(&list);
        let mut sums = parse_sha256sum(&String::from_utf8_lossy(&bytes));
        Ok(paths
            .iter()
            .filter_map(|path| sums.remove(path).map(|sum| (path.clone(), sum)))
            .collect())
    }

    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.lstat(path)? {
            Some(meta) if meta.kind == FileKind::File => self.read_whole(path, meta.size).map(Some),
            _ => Ok(None),
        }
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(len.min(READ_CHUNK));
        while out.len() < len {
            let chunk = self.pread(path, offset + out.len() as u64, len - out.len())?;
            if chunk.is_empty() {
                break;
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    fn lstat(&self, path: &str) -> Result<Option<FileMeta>> {
        let (parent, name) = split_parent(path)?;
        let Some(name) = name else {
            // `/` itself: lstat it through its own name.
            let stat = self
                .g()
                .lstatns("/")
                .guest_context(|| "lstat /".to_owned())?;
            return Ok(Some(meta_of(&stat)));
        };

        // lstatnslist marks a missing name with st_ino == -1 instead of
        // failing, but it does fail when the parent is missing.
        if !self.is_dir(parent)? {
            return Ok(None);
        }
        let stats = self
            .g()
            .lstatnslist(parent, &[name])
            .guest_context(|| format!("lstat {path}"))?;
        Ok(stats.first().filter(|s| s.st_ino != -1).map(meta_of))
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        match self.lstat(path)? {
            Some(meta) if meta.kind == FileKind::Symlink => self
                .g()
                .readlink(path)
                .guest_context(|| format!("readlink {path}"))
                .map(Some),
            _ => Ok(None),
        }
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        if !self.is_dir(path)? {
            return Ok(Vec::new());
        }
        let mut names = self.g().ls(path).guest_context(|| format!("list {path}"))?;
        names.sort();
        Ok(names)
    }

    fn walk(&self) -> Result<Vec<WalkEntry>> {
        if let Some(cached) = self.walk_cache.borrow().as_ref() {
            return Ok(cached.clone());
        }
        let entries = self.walk_uncached()?;
        *self.walk_cache.borrow_mut() = Some(entries.clone());
        Ok(entries)
    }
}

impl GuestImage {
    /// Returns whether `path` is a directory, following symlinks.
    fn is_dir(&self, path: &str) -> Result<bool> {
        self.g()
            .is_dir(
                path,
                IsDirOptArgs {
                    followsymlinks: Some(true),
                },
            )
            .guest_context(|| format!("check whether {path} is a directory"))
    }
}

/// Splits an absolute path into its parent directory and final name; the
/// name is `None` for `/`.
fn split_parent(path: &str) -> Result<(&str, Option<&str>)> {
    if !path.starts_with('/') {
        bail!("image paths must be absolute, got {path:?}");
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(("/", None));
    }
    let cut = trimmed.rfind('/').expect("an absolute path contains '/'");
    let parent = if cut == 0 { "/" } else { &trimmed[..cut] };
    Ok((parent, Some(&trimmed[cut + 1..])))
}

/// Parses `sha256sum` output for paths relative to `/` (`./etc/passwd`)
/// into absolute paths and checksums. GNU coreutils starts the line of a
/// name that contains a backslash or newline with a backslash and escapes
/// those characters as `\\` and `\n`.
fn parse_sha256sum(text: &str) -> BTreeMap<String, String> {
    let mut sums = BTreeMap::new();
    for line in text.lines() {
        let (escaped, line) = match line.strip_prefix('\\') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let Some((sum, name)) = line.split_once("  ") else {
            continue;
        };
        let name = if escaped {
            unescape_sum_name(name)
        } else {
            name.to_owned()
        };
        let relative = name.strip_prefix("./").unwrap_or(&name);
        sums.insert(format!("/{relative}"), sum.to_owned());
    }
    sums
}

fn unescape_sum_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

fn join_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn meta_of(stat: &StatNS) -> FileMeta {
    let kind = match stat.st_mode as u32 & libc::S_IFMT {
        libc::S_IFREG => FileKind::File,
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    };
    FileMeta {
        kind,
        mode: stat.st_mode as u32 & 0o7777,
        uid: stat.st_uid as u32,
        gid: stat.st_gid as u32,
        size: stat.st_size.max(0) as u64,
    }
}

/// Container format of an image file, detected from its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    Raw,
    /// Raw data followed by a 512-byte footer with the `conectix` cookie.
    FixedVhd,
    /// A `conectix` cookie at offset 0: dynamic or differencing VHD.
    DynamicVhd,
    Vhdx,
    Qcow2,
}

impl Container {
    /// Returns the QEMU driver name of the format.
    pub(crate) fn qemu_format(self) -> &'static str {
        match self {
            Container::Raw => "raw",
            Container::FixedVhd | Container::DynamicVhd => "vpc",
            Container::Vhdx => "vhdx",
            Container::Qcow2 => "qcow2",
        }
    }
}

/// Detects the container format of an image file by its magic bytes and
/// returns QEMU's name for it. A `conectix` cookie at offset 0 (dynamic
/// VHD) or in the last 512 bytes (fixed VHD) gives `vpc`. The others are
/// `vhdx`, `qcow2`, and `raw` for anything else.
pub fn detect_format(path: &Path) -> Result<&'static str> {
    Ok(detect_container(path)?.qemu_format())
}

pub(crate) fn detect_container(path: &Path) -> Result<Container> {
    let mut file =
        File::open(path).with_context(|| format!("failed to open image {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("failed to read the size of {}", path.display()))?
        .len();
    let mut head = [0u8; 8];
    let head_len = read_up_to(&mut file, &mut head)
        .with_context(|| format!("failed to read the header of {}", path.display()))?;
    let head = &head[..head_len];
    if head.starts_with(vhd::COOKIE) {
        return Ok(Container::DynamicVhd);
    }
    if head.starts_with(b"vhdxfile") {
        return Ok(Container::Vhdx);
    }
    if head.starts_with(b"QFI\xfb") {
        return Ok(Container::Qcow2);
    }
    if len >= vhd::FOOTER_LEN as u64 {
        let mut cookie = [0u8; 8];
        file.seek(SeekFrom::Start(len - vhd::FOOTER_LEN as u64))
            .and_then(|_| file.read_exact(&mut cookie))
            .with_context(|| format!("failed to read the footer of {}", path.display()))?;
        if &cookie == vhd::COOKIE {
            return Ok(Container::FixedVhd);
        }
    }
    Ok(Container::Raw)
}

/// Creates a qcow2 file at `overlay` backed by `image`, which presents the
/// disk as a VM would see it, so that QEMU and libguestfs never write to
/// `image`.
///
/// A fixed VHD is opened as raw data limited to the length before the
/// footer. QEMU 7.2's `vpc` driver instead sizes a fixed VHD from its CHS
/// geometry unless the footer names a creator it recognizes. On a 1 GiB
/// image with forge's footer that cut 256 KiB, and the backup GPT, off the
/// end.
pub fn create_overlay(image: &Path, overlay: &Path) -> Result<()> {
    let image = image
        .canonicalize()
        .with_context(|| format!("disk image not found: {}", image.display()))?;
    let container = detect_container(&image)?;
    let (backing, backing_format) = if container == Container::FixedVhd {
        let len = std::fs::metadata(&image)?.len();
        let spec = serde_json::json!({
            "driver": "raw",
            "size": len - vhd::FOOTER_LEN as u64,
            "file": {"driver": "file", "filename": image},
        });
        (format!("json:{spec}"), "raw")
    } else {
        let path = image.to_str().context("image path is not valid UTF-8")?;
        (path.to_owned(), container.qemu_format())
    };

    let output = std::process::Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            backing_format,
            "-b",
            &backing,
        ])
        .arg(overlay)
        .output()
        .context("failed to run qemu-img; is qemu-utils installed?")?;
    if !output.status.success() {
        bail!(
            "qemu-img create -f qcow2 -b {backing} {} failed: {}",
            overlay.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads the length and the last 512 bytes of the file with std::fs.
fn read_tail(path: &Path) -> Result<(u64, Vec<u8>)> {
    let mut file =
        File::open(path).with_context(|| format!("failed to open image {}", path.display()))?;
    let len = file.metadata()?.len();
    let tail_len = len.min(vhd::FOOTER_LEN as u64);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::Start(len - tail_len))
        .and_then(|_| file.read_exact(&mut tail))
        .with_context(|| format!("failed to read the last bytes of {}", path.display()))?;
    Ok((len, tail))
}

/// Gathers everything in [`DiskFacts`] except `format`.
fn read_disk_facts(g: &Handle, path: &Path) -> Result<DiskFacts> {
    let (file_len, tail) = read_tail(path)?;
    let devices = g
        .list_devices()
        .guest_context(|| "list the disks".to_owned())?;
    let device = devices
        .first()
        .context("libguestfs shows no disk for the image")?
        .clone();
    let virtual_size = g
        .blockdev_getsize64(&device)
        .guest_context(|| format!("read the size of {device}"))?;

    // A disk without a partition table makes part_get_parttype fail, so
    // ask only when the kernel found partitions.
    let has_partitions = !g
        .list_partitions()
        .guest_context(|| "list the partitions".to_owned())?
        .is_empty();
    let (partition_table, partitions) = if has_partitions {
        let table = g
            .part_get_parttype(&device)
            .guest_context(|| format!("read the partition table type of {device}"))?;
        let partitions = read_partitions(g, &device, &table)?;
        (table, partitions)
    } else {
        (String::new(), Vec::new())
    };
    // NOTE: libguestfs has no call for the MBR disk signature, so it stays
    // unknown on MBR disks read this way.
    let disk_guid = if partition_table == "gpt" {
        let guid = g
            .part_get_disk_guid(&device)
            .guest_context(|| format!("read the GPT disk GUID of {device}"))?;
        Some(guid.to_lowercase())
    } else {
        None
    };

    let lvm_pvs = g
        .pvs()
        .guest_context(|| "list LVM physical volumes".to_owned())?;
    Ok(DiskFacts {
        path: path.to_path_buf(),
        file_len,
        tail,
        format: String::new(),
        virtual_size: virtual_size.max(0) as u64,
        partition_table,
        disk_guid,
        partitions,
        lvm_pvs,
    })
}

fn read_partitions(g: &Handle, device: &str, table: &str) -> Result<Vec<Partition>> {
    let sector_size = g
        .blockdev_getss(device)
        .guest_context(|| format!("read the sector size of {device}"))?
        .max(1) as u64;
    let listed = g
        .part_list(device)
        .guest_context(|| format!("list the partitions of {device}"))?;
    let mut partitions = Vec::with_capacity(listed.len());
    for p in listed {
        let number = p.part_num;
        let type_id = if table == "gpt" {
            g.part_get_gpt_type(device, number)
                .guest_context(|| format!("read the GPT type of {device} partition {number}"))?
                .to_uppercase()
        } else {
            let id = g
                .part_get_mbr_id(device, number)
                .guest_context(|| format!("read the MBR type of {device} partition {number}"))?;
            format!("0x{id:02x}")
        };
        let partition = partition_device(device, number);
        let fs_type = read_fs_type(g, &partition, &type_id)?;
        let (guid, name) = if table == "gpt" {
            let guid = g
                .part_get_gpt_guid(device, number)
                .guest_context(|| format!("read the GPT GUID of {device} partition {number}"))?;
            let name = g
                .part_get_name(device, number)
                .guest_context(|| format!("read the GPT name of {device} partition {number}"))?;
            (
                Some(guid.to_lowercase()),
                Some(name).filter(|n| !n.is_empty()),
            )
        } else {
            (None, None)
        };
        // A partition without a file system, or one whose file system has
        // no UUID, makes vfs_uuid fail or return an empty string.
        let fs_uuid = match fs_type {
            Some(_) => g.vfs_uuid(&partition).ok().filter(|u| !u.is_empty()),
            None => None,
        };
        partitions.push(Partition {
            number: number as u32,
            start_sector: p.part_start / sector_size,
            size_bytes: p.part_size,
            type_id,
            fs_type,
            guid,
            name,
            fs_uuid,
        });
    }
    Ok(partitions)
}

/// Returns the device name of partition `number` of a whole-disk device,
/// as the appliance names it (`/dev/sda` → `/dev/sda1`).
fn partition_device(device: &str, number: i32) -> String {
    if device.ends_with(|c: char| c.is_ascii_digit()) {
        format!("{device}p{number}")
    } else {
        format!("{device}{number}")
    }
}

fn read_fs_type(g: &Handle, partition: &str, type_id: &str) -> Result<Option<String>> {
    match g.vfs_type(partition) {
        Ok(fs) if fs.is_empty() => Ok(None),
        Ok(fs) => Ok(Some(fs)),
        Err(_) if type_id == GPT_BIOS_BOOT => Ok(None),
        Err(e) => Err(guest_error(e)).context(format!(
            "failed to read the file system type of {partition}"
        )),
    }
}

/// Runs inspection and mounts the first OS root and its file systems, in
/// order of mount point length so that `/` comes before `/boot/efi`.
/// Returns the root device and the OS, or `None` when no OS was found.
fn inspect_and_mount(g: &Handle, writable: bool) -> Result<Option<(String, OsInfo)>> {
    let roots = g
        .inspect_os()
        .guest_context(|| "inspect the disk for an OS".to_owned())?;
    let Some(root) = roots.first().cloned() else {
        return Ok(None);
    };
    if roots.len() > 1 {
        tracing::warn!(?roots, chosen = %root, "the disk contains several OS roots, using the first");
    }

    let mut mounts: Vec<(String, String)> = g
        .inspect_get_mountpoints(&root)
        .guest_context(|| format!("read the mount points of {root}"))?
        .into_iter()
        .collect();
    mounts.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
    for (mountpoint, device) in &mounts {
        let mounted = if writable {
            g.mount(device, mountpoint)
        } else {
            g.mount_ro(device, mountpoint)
        };
        match mounted {
            Ok(()) => {}
            Err(e) if mountpoint == "/" => {
                return Err(guest_error(e)).context(format!("failed to mount {device} at /"));
            }
            Err(e) => {
                let error = format!("{:#}", guest_error(e));
                tracing::warn!(%device, %mountpoint, %error, "failed to mount, continuing without it");
            }
        }
    }

    let os = read_os_info(g, &root)?;
    Ok(Some((root, os)))
}

fn read_os_info(g: &Handle, root: &str) -> Result<OsInfo> {
    let kind = g
        .inspect_get_type(root)
        .guest_context(|| format!("read the OS type of {root}"))?;
    let distro = g
        .inspect_get_distro(root)
        .guest_context(|| format!("read the distribution of {root}"))?;
    let major = g
        .inspect_get_major_version(root)
        .guest_context(|| format!("read the OS version of {root}"))?;
    let minor = g
        .inspect_get_minor_version(root)
        .guest_context(|| format!("read the OS version of {root}"))?;
    let arch = g
        .inspect_get_arch(root)
        .guest_context(|| format!("read the architecture of {root}"))?;
    let family = if distro == "unknown" { kind } else { distro };
    Ok(OsInfo {
        version: format_version(&family, major, minor),
        family,
        arch,
    })
}

/// Formats an OS version as the distribution's `VERSION_ID` writes it:
/// `12` for Debian (whose point release libguestfs reads as the minor),
/// `22.04` for Ubuntu, `9.3` or `9.0` for the RHEL family, and the major
/// version plus any non-zero minor elsewhere.
pub(crate) fn format_version(family: &str, major: i32, minor: i32) -> String {
    match family {
        "debian" => major.to_string(),
        "ubuntu" => format!("{major}.{minor:02}"),
        "rhel" | "centos" | "rocky" | "almalinux" | "oraclelinux" => format!("{major}.{minor}"),
        _ if minor == 0 => major.to_string(),
        _ => format!("{major}.{minor}"),
    }
}

/// Edits one text file inside a disk image in place, through libguestfs in
/// read-write mode: mounts the OS found by inspection, passes the file's
/// text to `edit` and writes back what it returns.
///
/// Test support: boot tests use it on a throwaway overlay. Never call it on
/// a build artifact, which must stay byte-identical once written.
pub fn edit_file_in_image(
    image: &Path,
    format: &str,
    path: &str,
    edit: impl FnOnce(String) -> String,
) -> Result<()> {
    let appliance = Appliance::launch(image, format, false)?;
    let g = &appliance.handle;
    inspect_and_mount(g, true)?
        .with_context(|| format!("no OS found in {} to edit {path} in", image.display()))?;

    let bytes = g.read_file(path).guest_context(|| format!("read {path}"))?;
    let text = String::from_utf8(bytes).with_context(|| format!("{path} is not UTF-8 text"))?;
    let edited = edit(text);
    g.write(path, edited.as_bytes())
        .guest_context(|| format!("write {path}"))?;

    g.umount_all()
        .guest_context(|| "unmount the file systems".to_owned())?;
    appliance
        .shutdown()
        .with_context(|| format!("failed to flush {}", image.display()))
}

/// A launched libguestfs handle that shuts the appliance down on drop, so
/// no QEMU process outlives it.
struct Appliance {
    handle: Handle,
    shut_down: bool,
}

impl Appliance {
    fn launch(path: &Path, format: &str, readonly: bool) -> Result<Self> {
        let path_str = path.to_str().context("image path is not valid UTF-8")?;
        let handle = Handle::create()
            .map_err(guest_error)
            .context("failed to create a libguestfs handle")?;
        let appliance = Self {
            handle,
            shut_down: false,
        };
        let g = &appliance.handle;

        // libguestfs reads LIBGUESTFS_BACKEND_SETTINGS itself; an explicit
        // setting there wins over forge's choice.
        if std::env::var_os("LIBGUESTFS_BACKEND_SETTINGS").is_none() && !accel::kvm_enabled() {
            g.set_backend_settings(&["force_tcg"])
                .guest_context(|| "select TCG for the appliance".to_owned())?;
        }
        let options = AddDriveOptArgs {
            readonly: Some(readonly),
            format: Some(format),
            ..Default::default()
        };
        g.add_drive(path_str, options)
            .guest_context(|| format!("add drive {}", path.display()))?;

        let started = std::time::Instant::now();
        g.launch()
            .guest_context(|| format!("launch the appliance for {}", path.display()))?;
        tracing::debug!(image = %path.display(), elapsed = ?started.elapsed(), "libguestfs appliance launched");
        Ok(appliance)
    }

    /// Shuts the appliance down and reports failures, which for a writable
    /// drive can mean lost writes.
    fn shutdown(mut self) -> Result<()> {
        self.shut_down = true;
        self.handle
            .shutdown()
            .guest_context(|| "shut down the appliance".to_owned())
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        if let Err(e) = self.handle.shutdown() {
            let error = format!("{:#}", guest_error(e));
            tracing::warn!(%error, "failed to shut down the libguestfs appliance");
        }
        // Dropping `handle` afterwards closes it.
    }
}

/// Converts a libguestfs error into an `anyhow` error. The binding keeps the
/// message field private, so it is taken from the `Debug` text.
fn guest_error(e: guestfs::Error) -> anyhow::Error {
    match e {
        guestfs::Error::API(api) => {
            let debug = format!("{api:?}");
            anyhow!(api_message(&debug).unwrap_or(debug))
        }
        guestfs::Error::IllegalString(e) => anyhow!("argument contains a NUL byte: {e}"),
        guestfs::Error::Utf8Error(e) => anyhow!("libguestfs returned text that is not UTF-8: {e}"),
        guestfs::Error::Create => anyhow!("libguestfs could not create a handle"),
    }
}

/// Extracts `message` from `APIError { operation: "..", message: "..", errno: N }`.
fn api_message(debug: &str) -> Option<String> {
    let start = debug.find("message: \"")? + "message: \"".len();
    let end = debug.rfind("\", errno:")?;
    let message = debug
        .get(start..end)?
        .replace("\\\"", "\"")
        .replace("\\n", " ");
    Some(message)
}

/// Adds "failed to <operation>" context to a libguestfs result.
trait GuestContext<T> {
    fn guest_context(self, operation: impl FnOnce() -> String) -> Result<T>;
}

impl<T> GuestContext<T> for std::result::Result<T, guestfs::Error> {
    fn guest_context(self, operation: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| guest_error(e).context(format!("failed to {}", operation())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_parent_cases() {
        assert_eq!(split_parent("/").unwrap(), ("/", None));
        assert_eq!(split_parent("/etc").unwrap(), ("/", Some("etc")));
        assert_eq!(
            split_parent("/etc/passwd").unwrap(),
            ("/etc", Some("passwd"))
        );
        assert_eq!(split_parent("/etc/ssh/").unwrap(), ("/etc", Some("ssh")));
        assert!(split_parent("etc/passwd").is_err());
    }

    #[test]
    fn version_formats_per_distribution() {
        assert_eq!(format_version("debian", 12, 0), "12");
        assert_eq!(format_version("debian", 12, 5), "12");
        assert_eq!(format_version("rhel", 9, 0), "9.0");
        assert_eq!(format_version("fedora", 39, 0), "39");
        assert_eq!(format_version("ubuntu", 22, 4), "22.04");
        assert_eq!(format_version("rhel", 9, 3), "9.3");
    }

    #[test]
    fn api_message_from_debug_text() {
        let debug =
            r#"APIError { operation: "ls", message: "ls: /x: No such \"file\"", errno: 2 }"#;
        assert_eq!(api_message(debug).unwrap(), r#"ls: /x: No such "file""#);
        assert_eq!(api_message("garbage"), None);
    }

    #[test]
    fn partition_device_names() {
        assert_eq!(partition_device("/dev/sda", 3), "/dev/sda3");
        assert_eq!(partition_device("/dev/nvme0n1", 2), "/dev/nvme0n1p2");
    }

    fn detect(bytes: &[u8]) -> &'static str {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, bytes).unwrap();
        detect_format(&path).unwrap()
    }

    #[test]
    fn detect_format_by_magic() {
        let fixed = [
            vec![0u8; 4096],
            vhd::Footer::fixed(4096, 0, [0; 16]).to_bytes().to_vec(),
        ];
        assert_eq!(detect(&fixed.concat()), "vpc");
        assert_eq!(detect(b"conectix and a dynamic header"), "vpc");
        assert_eq!(detect(b"vhdxfile...."), "vhdx");
        assert_eq!(detect(b"QFI\xfb\0\0\0\x03"), "qcow2");
        assert_eq!(detect(&[0u8; 8192]), "raw");
        assert_eq!(detect(b""), "raw");
    }

    #[test]
    fn sha256sum_lines_with_escaped_names() {
        let text = "\
0123  ./etc/passwd
\\4567  ./tmp/a\\nb
\\89ab  ./tmp/back\\\\slash
cdef  ./with  two spaces
";
        let sums = parse_sha256sum(text);
        assert_eq!(sums["/etc/passwd"], "0123");
        assert_eq!(sums["/tmp/a\nb"], "4567");
        assert_eq!(sums["/tmp/back\\slash"], "89ab");
        assert_eq!(sums["/with  two spaces"], "cdef");
        assert_eq!(sums.len(), 4);
    }
}
