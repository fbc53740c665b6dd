//! Reads raw disks and fixed VHDs straight from the image file, without
//! starting a libguestfs appliance.
//!
//! Under emulation an appliance costs about 20 s to launch and each file it
//! serves is a round trip, while the common images (GPT, ext4 root, FAT
//! ESP; MBR or GPT with an NTFS Windows volume) can be read on the host in
//! well under a second. [`DirectImage::open`] handles those common cases.
//! It declines everything else with a reason, so that the caller falls
//! back to libguestfs: other containers, LVM, LUKS, XFS, btrfs, Windows
//! dynamic disks, several OS roots, and an ext4 feature or an NTFS volume
//! it cannot read.

pub mod hive;
mod ntfs_volume;
mod probe;
mod table;
mod volume;

use std::cell::{OnceCell, RefCell};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use crate::check::rules::paths;
use crate::check::{DiskFacts, FileKind, FileMeta, ImageView, OsInfo, Partition, WalkEntry};
use crate::guestfs::{detect_container, Container};
use hive::Hive;
use probe::Probe;
use volume::Volume;

/// The data part of an image file: the whole file for a raw disk, all but
/// the footer for a fixed VHD.
pub struct Disk {
    file: Arc<File>,
    pub len: u64,
}

impl Disk {
    /// Reads exactly `len` bytes at `offset`.
    pub fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if offset.saturating_add(len as u64) > self.len {
            bail!(
                "the image is truncated: {len} bytes at offset {offset} lie beyond \
                 its end at {}",
                self.len
            );
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .with_context(|| format!("failed to read {len} bytes at offset {offset}"))?;
        Ok(buf)
    }

    fn region(&self, start: u64, len: u64) -> Region {
        Region {
            file: Arc::clone(&self.file),
            start,
            len,
        }
    }
}

/// The bytes of one partition.
#[derive(Clone)]
pub struct Region {
    file: Arc<File>,
    start: u64,
    pub len: u64,
}

impl Region {
    /// Reads up to `len` bytes at `offset`, fewer at the end of the region.
    pub fn read_vec_upto(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let available = self.len.saturating_sub(offset).min(len as u64) as usize;
        let mut buf = vec![0u8; available];
        self.file
            .read_exact_at(&mut buf, self.start + offset)
            .with_context(|| format!("failed to read {available} bytes of a partition"))?;
        Ok(buf)
    }
}

impl ext4_view::Ext4Read for Region {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        if start_byte.saturating_add(dst.len() as u64) > self.len {
            return Err("read beyond the end of the partition".into());
        }
        self.file.read_exact_at(dst, self.start + start_byte)?;
        Ok(())
    }
}

/// A disk image read on the host, with its OS file systems mounted at the
/// places the OS's fstab lists.
pub struct DirectImage {
    disk: DiskFacts,
    /// `None` when the disk has no file system an OS could live on.
    os: Option<OsInfo>,
    volumes: Vec<Volume>,
    /// Mount points and the volume mounted there, longest first.
    mounts: Vec<(String, usize)>,
    walk_cache: RefCell<Option<Vec<WalkEntry>>>,
    extracted: OnceCell<Option<tempfile::TempDir>>,
}

/// The outcome of trying the direct reader.
pub enum Opened {
    Image(Box<DirectImage>),
    /// The image is readable but needs libguestfs, for the reason given.
    Declined(String),
}

impl DirectImage {
    /// Opens `path` if its layout is one the direct reader handles. Errors
    /// mean the image itself cannot be read (missing, truncated, damaged
    /// partition table), not that libguestfs is needed.
    pub fn open(path: &Path) -> Result<Opened> {
        let container = detect_container(path)?;
        let file =
            File::open(path).with_context(|| format!("failed to open image {}", path.display()))?;
        let file_len = file
            .metadata()
            .with_context(|| format!("failed to read the size of {}", path.display()))?
            .len();
        let data_len = match container {
            Container::Raw => file_len,
            Container::FixedVhd => file_len - crate::vhd::FOOTER_LEN as u64,
            other => {
                return Ok(Opened::Declined(format!(
                    "{} images are read through libguestfs",
                    other.qemu_format()
                )))
            }
        };
        if file_len == 0 {
            bail!("{} is empty, not a disk image", path.display());
        }
        let tail_len = file_len.min(crate::vhd::FOOTER_LEN as u64) as usize;
        let mut tail = vec![0u8; tail_len];
        file.read_exact_at(&mut tail, file_len - tail_len as u64)
            .with_context(|| format!("failed to read the end of {}", path.display()))?;
        let disk = Disk {
            file: Arc::new(file),
            len: data_len,
        };

        let table = table::read(&disk).with_context(|| path.display().to_string())?;
        if table.kind.is_empty() {
            let whole = probe::probe(&disk.region(0, disk.len))?;
            if whole.fs_type.is_none() {
                bail!(
                    "{} has no partition table and no file system; is it a disk image?",
                    path.display()
                );
            }
            return Ok(Opened::Declined(
                "the disk has a file system but no partition table".to_owned(),
            ));
        }
        if table.has_extended {
            return Ok(Opened::Declined(
                "the MBR has an extended partition".to_owned(),
            ));
        }
        let mut partitions = Vec::new();
        let mut probes = Vec::new();
        for entry in &table.entries {
            let region = disk.region(
                entry.start_sector * table::SECTOR,
                entry.sectors * table::SECTOR,
            );
            if is_dynamic_disk_part(&entry.type_id) {
                return Ok(Opened::Declined(format!(
                    "partition {} (type {}) belongs to a Windows dynamic disk or storage pool",
                    entry.number, entry.type_id
                )));
            }
            let probe = probe::probe(&region)?;
            if let Some(kind) = probe.fs_type.as_deref() {
                if !matches!(
                    kind,
                    "ext2" | "ext3" | "ext4" | "vfat" | "swap" | "ntfs" | "BitLocker"
                ) {
                    return Ok(Opened::Declined(format!(
                        "partition {} holds {kind}",
                        entry.number
                    )));
                }
            }
            partitions.push(Partition {
                number: entry.number,
                start_sector: entry.start_sector,
                size_bytes: entry.sectors * table::SECTOR,
                type_id: entry.type_id.clone(),
                fs_type: probe.fs_type.clone(),
                guid: (table.kind == "gpt").then(|| entry.part_uuid.clone()),
                name: (!entry.name.is_empty()).then(|| entry.name.clone()),
                fs_uuid: probe.uuid.clone(),
            });
            probes.push((entry.clone(), probe, region));
        }
        let facts = DiskFacts {
            path: path.to_path_buf(),
            file_len,
            tail,
            format: container.qemu_format().to_owned(),
            virtual_size: data_len,
            partition_table: table.kind.clone(),
            disk_guid: Some(table.disk_guid.clone()),
            partitions,
            lvm_pvs: Vec::new(),
        };

        let mut roots = Vec::new();
        for (index, (_, probe, region)) in probes.iter().enumerate() {
            if !matches!(probe.fs_type.as_deref(), Some("ext2" | "ext3" | "ext4")) {
                continue;
            }
            let volume = match Volume::open_ext(region.clone()) {
                Ok(volume) => volume,
                Err(e) if volume::is_damaged(&e) => {
                    bail!(
                        "the {} file system in partition {} is damaged: {e:#}",
                        probe.fs_type.as_deref().unwrap_or("ext"),
                        probes[index].0.number
                    )
                }
                Err(e) => return Ok(Opened::Declined(format!("{e:#}"))),
            };
            if volume.exists("/etc/os-release") || volume.exists("/usr/lib/os-release") {
                roots.push((index, volume));
            }
        }
        let mut windows_roots = Vec::new();
        for (entry, probe, region) in &probes {
            if probe.fs_type.as_deref() != Some("ntfs") {
                continue;
            }
            let volume = match Volume::open_ntfs(region.clone()) {
                Ok(volume) => volume,
                Err(e) => {
                    return Ok(Opened::Declined(format!(
                        "partition {}: {e:#}",
                        entry.number
                    )))
                }
            };
            match find_windows_hives(&volume)? {
                WindowsHives::Found(config) => windows_roots.push((volume, config)),
                WindowsHives::None => {}
                WindowsHives::Incomplete(folder) => {
                    return Ok(Opened::Declined(format!(
                        "partition {} has {folder} but no SOFTWARE hive in it",
                        entry.number
                    )))
                }
            }
        }
        let has_ext = probes
            .iter()
            .any(|(_, p, _)| matches!(p.fs_type.as_deref(), Some("ext2" | "ext3" | "ext4")));
        let (root_index, root) = match (roots.len(), windows_roots.len()) {
            (1, 0) => roots.pop().expect("one root"),
            (0, 1) => {
                let (volume, config) = windows_roots.pop().expect("one root");
                return Self::open_windows(facts, volume, &config);
            }
            // FAT, swap, NTFS without Windows, BitLocker or unformatted
            // partitions only: no Linux OS can be there, no Windows was
            // found, and other OSes need file systems declined above.
            (0, 0) if !has_ext => {
                return Ok(Opened::Image(Box::new(DirectImage {
                    disk: facts,
                    os: None,
                    volumes: Vec::new(),
                    mounts: Vec::new(),
                    walk_cache: RefCell::new(None),
                    extracted: OnceCell::new(),
                })))
            }
            (0, 0) => return Ok(Opened::Declined("no OS root with os-release".to_owned())),
            (linux, windows) => {
                return Ok(Opened::Declined(format!("{} OS roots", linux + windows)))
            }
        };

        let mut volumes = vec![root];
        let mut mounts = vec![("/".to_owned(), 0)];
        let fstab = volumes[0]
            .read_following("/etc/fstab")
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default();
        for (source, target) in local_mounts(&fstab) {
            let Some(index) = probes
                .iter()
                .position(|(entry, probe, _)| source_matches(&source, entry, probe))
            else {
                tracing::debug!(%source, %target, "fstab source is not on this disk; not mounted");
                continue;
            };
            if index == root_index {
                continue;
            }
            let (_, probe, region) = &probes[index];
            let volume = match probe.fs_type.as_deref() {
                Some("ext2" | "ext3" | "ext4") => Volume::open_ext(region.clone()),
                Some("vfat") => Volume::open_fat(region.clone()),
                other => {
                    return Ok(Opened::Declined(format!(
                        "fstab mounts {} from a partition holding {}",
                        target,
                        other.unwrap_or("no file system")
                    )))
                }
            };
            match volume {
                Ok(volume) => {
                    volumes.push(volume);
                    mounts.push((target, volumes.len() - 1));
                }
                Err(e) => return Ok(Opened::Declined(format!("{target}: {e:#}"))),
            }
        }
        mounts.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));

        let mut image = DirectImage {
            disk: facts,
            os: None,
            volumes,
            mounts,
            walk_cache: RefCell::new(None),
            extracted: OnceCell::new(),
        };
        image.os = Some(image.read_os_info()?);
        // Every check walks the tree; walking now turns a damaged tree into
        // an error about the image rather than rules that cannot run.
        image.walk().context("the OS file tree cannot be read")?;
        Ok(Opened::Image(Box::new(image)))
    }

    /// Opens a Windows disk whose OS volume is `volume`, with its registry
    /// hives in the folder `config`. Only that volume is mounted, at `/`,
    /// as libguestfs does for Windows.
    fn open_windows(disk: DiskFacts, volume: Volume, config: &str) -> Result<Opened> {
        let mut image = DirectImage {
            disk,
            os: None,
            volumes: vec![volume],
            mounts: vec![("/".to_owned(), 0)],
            walk_cache: RefCell::new(None),
            extracted: OnceCell::new(),
        };
        image.os = match image.read_windows_info(config) {
            Ok(os) => Some(os),
            Err(e) => return Ok(Opened::Declined(format!("{e:#}"))),
        };
        // As for Linux, a damaged tree is an error about the image.
        image
            .walk()
            .context("the Windows file tree cannot be read")?;
        Ok(Opened::Image(Box::new(image)))
    }

    /// Reads the Windows version from the SOFTWARE hive and the
    /// architecture from the SYSTEM hive, as libguestfs inspection does.
    fn read_windows_info(&self, config: &str) -> Result<OsInfo> {
        let software_path = paths::join(config, "SOFTWARE");
        let software = self
            .read(&software_path)?
            .with_context(|| format!("{software_path} is not a regular file"))?;
        let hive = Hive::open(&software).with_context(|| format!("read {software_path}"))?;
        let (major, minor) =
            windows_version(&hive).with_context(|| format!("read {software_path}"))?;
        let version = crate::guestfs::format_version("windows", major, minor);

        let system_path =
            match self.volumes[0].find_ignoring_case(&paths::join(config, "SYSTEM"))? {
                Some(path) => path,
                None => bail!("{config} has a SOFTWARE hive but no SYSTEM hive"),
            };
        let system = self
            .read(&system_path)?
            .with_context(|| format!("{system_path} is not a regular file"))?;
        let hive = Hive::open(&system).with_context(|| format!("read {system_path}"))?;
        let arch = match windows_arch(&hive).with_context(|| format!("read {system_path}"))? {
            Some(arch) => arch,
            None => self.pe_arch(&paths::join(paths::parent(config), "cmd.exe"))?,
        };
        Ok(OsInfo {
            family: "windows".to_owned(),
            version,
            arch,
        })
    }

    /// Reads the architecture of a Windows program from its PE header, the
    /// way libguestfs inspection reads `cmd.exe`: `unknown` when the file
    /// is missing or not a PE image.
    fn pe_arch(&self, path: &str) -> Result<String> {
        let Some(real) = self.volumes[0].find_ignoring_case(path)? else {
            return Ok("unknown".to_owned());
        };
        let head = self.read_at(&real, 0, 4096)?;
        let machine = (head.len() >= 0x40 && head.starts_with(b"MZ"))
            .then(|| le32(&head, 0x3c) as usize)
            .and_then(|pe| head.get(pe..pe + 6))
            .filter(|pe| pe.starts_with(b"PE\0\0"))
            .map(|pe| u16::from_le_bytes([pe[4], pe[5]]));
        let arch = match machine {
            Some(0x8664) => "x86_64",
            Some(0x014c) => "i386",
            Some(0xaa64) => "aarch64",
            _ => "unknown",
        };
        Ok(arch.to_owned())
    }

    pub fn disk(&self) -> &DiskFacts {
        &self.disk
    }

    /// Returns the OS found on the disk, or `None` when there is none.
    pub fn os(&self) -> Option<&OsInfo> {
        self.os.as_ref()
    }

    /// Returns the file tree view, or `None` when there is no OS.
    pub fn view(&self) -> Option<&dyn ImageView> {
        self.os.as_ref().map(|_| self as &dyn ImageView)
    }

    /// Finds the volume that contains `path` and the path inside that volume.
    fn resolve(&self, path: &str) -> Result<(&Volume, String)> {
        if !path.starts_with('/') {
            bail!("image paths must be absolute, got {path:?}");
        }
        for (point, index) in &self.mounts {
            let inner = if point == "/" {
                Some(path)
            } else if path == point {
                Some("/")
            } else {
                path.strip_prefix(point.as_str())
                    .filter(|rest| rest.starts_with('/'))
            };
            if let Some(inner) = inner {
                return Ok((&self.volumes[*index], inner.to_owned()));
            }
        }
        unreachable!("/ is always mounted")
    }

    fn is_mount_point(&self, path: &str) -> bool {
        self.mounts.iter().any(|(point, _)| point == path)
    }

    fn read_os_info(&self) -> Result<OsInfo> {
        let release = match self.read_text("/etc/os-release")? {
            Some(text) => text,
            None => {
                let target = paths::resolve(self, "/etc/os-release")?;
                let fallback = target.as_deref().unwrap_or("/usr/lib/os-release");
                self.read_text(fallback)?.unwrap_or_default()
            }
        };
        let field = |key: &str| {
            release.lines().find_map(|line| {
                let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
                Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
            })
        };
        let id = field("ID").unwrap_or_else(|| "linux".to_owned());
        let family = distro_name(&id);
        let version = match (family.as_str(), field("VERSION_ID")) {
            ("debian", Some(v)) => v.split('.').next().unwrap_or_default().to_owned(),
            ("debian", None) => self
                .read_text("/etc/debian_version")?
                .and_then(|v| {
                    let major: String = v.chars().take_while(char::is_ascii_digit).collect();
                    (!major.is_empty()).then_some(major)
                })
                .unwrap_or_default(),
            (_, v) => v.unwrap_or_default(),
        };
        Ok(OsInfo {
            family,
            version,
            arch: self.read_arch()?,
        })
    }

    /// Reads the architecture of the OS's shell and core tools from their
    /// ELF headers, named as libguestfs names it.
    fn read_arch(&self) -> Result<String> {
        for candidate in ["/bin/bash", "/bin/sh", "/bin/ls", "/usr/bin/env"] {
            let Some(real) = paths::resolve(self, candidate)? else {
                continue;
            };
            let head = match self.lstat(&real)? {
                Some(meta) if meta.kind == FileKind::File => self.read_at(&real, 0, 20)?,
                _ => continue,
            };
            if head.len() < 20 || &head[0..4] != b"\x7fELF" {
                continue;
            }
            let class64 = head[4] == 2;
            let little = head[5] == 1;
            let machine = if little {
                u16::from_le_bytes([head[18], head[19]])
            } else {
                u16::from_be_bytes([head[18], head[19]])
            };
            let arch = match (machine, class64, little) {
                (0x3E, _, _) => "x86_64",
                (0xB7, _, _) => "aarch64",
                (0x03, _, _) => "i386",
                (0x28, _, _) => "arm",
                (0xF3, true, _) => "riscv64",
                (0x15, true, true) => "ppc64le",
                (0x15, true, false) => "ppc64",
                (0x16, _, _) => "s390x",
                _ => "unknown",
            };
            return Ok(arch.to_owned());
        }
        Ok("unknown".to_owned())
    }

    /// Unpacks the whole tree into a temporary folder, for clamscan.
    fn extract_tree(&self) -> Result<tempfile::TempDir> {
        let dir = tempfile::Builder::new()
            .prefix("forge-tree-")
            .tempdir()
            .context("failed to create a folder to unpack the image into")?;
        for entry in self.walk()? {
            if entry.path.starts_with("/dev/") || entry.path.starts_with("/proc/") {
                continue;
            }
            let host = dir.path().join(entry.path.trim_start_matches('/'));
            match entry.meta.kind {
                FileKind::Dir => std::fs::create_dir_all(&host)?,
                FileKind::File => {
                    if let Some(parent) = host.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    let bytes = self.read(&entry.path)?.unwrap_or_default();
                    std::fs::write(&host, bytes)
                        .with_context(|| format!("failed to write {}", host.display()))?;
                }
                FileKind::Symlink | FileKind::Other => {}
            }
        }
        Ok(dir)
    }

    /// Lists `dir` with each entry's metadata, mount points showing the
    /// root of the file system mounted there.
    fn entries(&self, dir: &str) -> Result<Vec<(String, FileMeta)>> {
        let (volume, inner) = self.resolve(dir)?;
        let mut entries = volume.list(&inner)?;
        for (name, meta) in &mut entries {
            let path = paths::join(dir, name);
            if self.is_mount_point(&path) {
                if let Some(root) = self.lstat(&path)? {
                    *meta = root;
                }
            }
        }
        Ok(entries)
    }

    /// Walks below `dir`. `ancestors` has the listings of the folders
    /// above, to recognize a directory hard-linked to one of them: ext4
    /// forbids such links, and following one never ends.
    fn walk_into(
        &self,
        dir: &str,
        listing: Vec<(String, FileMeta)>,
        ancestors: &mut Vec<Vec<(String, FileMeta)>>,
        out: &mut Vec<WalkEntry>,
    ) -> Result<()> {
        crate::exec::check_interrupted()?;
        if ancestors.len() >= MAX_DEPTH {
            bail!("folders nest deeper than {MAX_DEPTH} levels at {dir}; the file system may contain a directory loop");
        }
        ancestors.push(listing.clone());
        for (name, meta) in listing {
            let path = paths::join(dir, &name);
            let is_dir = meta.kind == FileKind::Dir;
            out.push(WalkEntry {
                path: path.clone(),
                meta,
            });
            if !is_dir {
                continue;
            }
            let children = self.entries(&path)?;
            if let Some(depth) = ancestors.iter().position(|a| *a == children) {
                if self.same_below(&path, &ancestor_path(&path, ancestors.len() - depth))? {
                    bail!(
                        "{path} is a link to the folder {} above it, a directory loop; \
                         the file system is damaged",
                        ancestor_path(&path, ancestors.len() - depth)
                    );
                }
            }
            self.walk_into(&path, children, ancestors, out)?;
        }
        ancestors.pop();
        Ok(())
    }

    /// Tells whether the folders `a` and `b` hold the same names and
    /// metadata two levels down, which a directory loop always shows.
    fn same_below(&self, a: &str, b: &str) -> Result<bool> {
        let (left, right) = (self.entries(a)?, self.entries(b)?);
        if left != right {
            return Ok(false);
        }
        for (name, meta) in &left {
            if meta.kind == FileKind::Dir
                && self.entries(&paths::join(a, name))? != self.entries(&paths::join(b, name))?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl ImageView for DirectImage {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let (volume, inner) = self.resolve(path)?;
        volume.read(&inner)
    }

    fn read_at(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let (volume, inner) = self.resolve(path)?;
        volume.read_at(&inner, offset, len)
    }

    fn lstat(&self, path: &str) -> Result<Option<FileMeta>> {
        let (volume, inner) = self.resolve(path)?;
        volume.lstat(&inner)
    }

    fn read_link(&self, path: &str) -> Result<Option<String>> {
        let (volume, inner) = self.resolve(path)?;
        volume.read_link(&inner)
    }

    fn list_dir(&self, path: &str) -> Result<Vec<String>> {
        let (volume, inner) = self.resolve(path)?;
        Ok(volume
            .list(&inner)?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    fn walk(&self) -> Result<Vec<WalkEntry>> {
        if let Some(cached) = self.walk_cache.borrow().as_ref() {
            return Ok(cached.clone());
        }
        let mut entries = Vec::new();
        let top = self.entries("/")?;
        self.walk_into("/", top, &mut Vec::new(), &mut entries)?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        *self.walk_cache.borrow_mut() = Some(entries.clone());
        Ok(entries)
    }

    /// Hashes each file with one path lookup and no copy of its content,
    /// because the walk lists which paths are regular files and no `lstat`
    /// is needed first. This cut the CPU time of hashing a 2 GiB Debian
    /// image from about 3.6 s to 2.2 s.
    fn sha256_many(&self, paths: &[String]) -> Result<Vec<(String, String)>> {
        let regular: std::collections::HashSet<String> = self
            .walk()?
            .into_iter()
            .filter(|e| e.meta.kind == FileKind::File)
            .map(|e| e.path)
            .collect();
        let mut out = Vec::with_capacity(paths.len());
        for path in paths.iter().filter(|p| regular.contains(p.as_str())) {
            let (volume, inner) = self.resolve(path)?;
            out.push((path.clone(), volume.sha256_of_file(&inner)?));
        }
        Ok(out)
    }

    fn host_root(&self) -> Option<&Path> {
        self.extracted
            .get_or_init(|| match self.extract_tree() {
                Ok(dir) => Some(dir),
                Err(e) => {
                    tracing::warn!("could not unpack the image for scanning: {e:#}");
                    None
                }
            })
            .as_ref()
            .map(tempfile::TempDir::path)
    }
}

/// Deepest folder nesting the walk follows. Real trees stay far below it.
const MAX_DEPTH: usize = 100;

/// Returns the folder `up` levels above `path`: 1 gives its parent.
fn ancestor_path(path: &str, up: usize) -> String {
    let mut p = path.to_owned();
    for _ in 0..up {
        p = paths::parent(&p).to_owned();
    }
    p
}

/// GPT types of partitions that hold a Windows dynamic disk (LDM metadata
/// and data) or a Storage Spaces pool, which only Windows assembles.
const DYNAMIC_DISK_TYPES: &[&str] = &[
    "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3",
    "AF9B60A0-1431-4F62-BC68-3311714A69AD",
    "E75CAF8F-F680-4CEE-AFA3-B001E56EFC2D",
];

/// Tells whether a partition belongs to a dynamic disk: MBR type 0x42 or
/// one of [`DYNAMIC_DISK_TYPES`].
fn is_dynamic_disk_part(type_id: &str) -> bool {
    type_id.eq_ignore_ascii_case("0x42")
        || DYNAMIC_DISK_TYPES
            .iter()
            .any(|t| t.eq_ignore_ascii_case(type_id))
}

/// Folders that libguestfs takes as a Windows system root.
const SYSTEM_ROOTS: &[&str] = &["Windows", "WINNT"];

/// The part of a Windows installation found on an NTFS volume.
enum WindowsHives {
    /// The registry folder, spelled as on the volume
    /// (`/Windows/System32/config`), with a SOFTWARE hive in it.
    Found(String),
    /// No Windows system folder.
    None,
    /// A system folder (named here) without a SOFTWARE hive, which
    /// libguestfs may still recognize.
    Incomplete(String),
}

/// Looks for `Windows/System32/config/SOFTWARE`, comparing names without
/// regard to case as Windows does.
fn find_windows_hives(volume: &Volume) -> Result<WindowsHives> {
    let Volume::Ntfs(fs) = volume else {
        return Ok(WindowsHives::None);
    };
    for root in SYSTEM_ROOTS {
        let Some(system32) = fs.find_ignoring_case(&format!("/{root}/System32"))? else {
            continue;
        };
        let software = fs.find_ignoring_case(&format!("{system32}/config/SOFTWARE"))?;
        return Ok(match software {
            Some(path) => WindowsHives::Found(paths::parent(&path).to_owned()),
            None => WindowsHives::Incomplete(system32),
        });
    }
    Ok(WindowsHives::None)
}

/// Reads the Windows version from the SOFTWARE hive: the DWORDs
/// `CurrentMajorVersionNumber` and `CurrentMinorVersionNumber` that
/// Windows 10 and later write, else the `CurrentVersion` string ("6.3").
fn windows_version(software: &Hive) -> Result<(i32, i32)> {
    let Some(key) = software.key("Microsoft\\Windows NT\\CurrentVersion")? else {
        return Ok((0, 0));
    };
    let major = key.dword("CurrentMajorVersionNumber")?;
    let minor = key.dword("CurrentMinorVersionNumber")?;
    if major.is_some() || minor.is_some() {
        return Ok((
            major.unwrap_or(0).try_into().unwrap_or(i32::MAX),
            minor.unwrap_or(0).try_into().unwrap_or(i32::MAX),
        ));
    }
    let text = key.string("CurrentVersion")?.unwrap_or_default();
    let mut parts = text.trim().split('.').map(|p| p.parse::<i32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), minor) => Ok((major, minor.unwrap_or(0))),
        _ => Ok((0, 0)),
    }
}

/// Reads `PROCESSOR_ARCHITECTURE` of the current control set from the
/// SYSTEM hive and names it as libguestfs names architectures. Returns
/// `None` when the hive has no such value.
fn windows_arch(system: &Hive) -> Result<Option<String>> {
    let Some(current) = system
        .key("Select")?
        .map(|k| k.dword("Current"))
        .transpose()?
    else {
        return Ok(None);
    };
    let Some(set) = current else {
        return Ok(None);
    };
    let environment = format!("ControlSet{set:03}\\Control\\Session Manager\\Environment");
    let Some(key) = system.key(&environment)? else {
        return Ok(None);
    };
    Ok(key
        .string("PROCESSOR_ARCHITECTURE")?
        .map(|arch| windows_arch_name(&arch)))
}

/// Maps a Windows `PROCESSOR_ARCHITECTURE` to the name libguestfs gives.
fn windows_arch_name(arch: &str) -> String {
    match arch.trim().to_ascii_lowercase().as_str() {
        "amd64" => "x86_64".to_owned(),
        "x86" => "i386".to_owned(),
        "arm64" => "aarch64".to_owned(),
        other => other.to_owned(),
    }
}

/// Maps an os-release `ID` to the distribution name of libguestfs
/// inspection.
fn distro_name(id: &str) -> String {
    match id {
        "ol" => "oraclelinux",
        "sles" | "sled" | "sles_sap" => "sles",
        "opensuse" | "opensuse-leap" | "opensuse-tumbleweed" => "opensuse",
        "rhel" | "redhat" => "rhel",
        other => other,
    }
    .to_owned()
}

/// File systems in fstab that are not on a disk.
const NOT_ON_DISK: &[&str] = &[
    "swap",
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "nfs",
    "nfs4",
    "cifs",
    "smbfs",
    "fuse",
    "none",
    "bind",
    "overlay",
    "efivarfs",
    "securityfs",
    "debugfs",
    "mqueue",
    "hugetlbfs",
    "ramfs",
    "9p",
    "virtiofs",
];

/// Returns the `(source, mount point)` pairs of fstab entries that mount a
/// local file system somewhere other than `/`.
fn local_mounts(fstab: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in fstab.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || fields[0].starts_with('#') {
            continue;
        }
        let (source, target, kind) = (fields[0], fields[1], fields[2]);
        let options = fields.get(3).copied().unwrap_or_default();
        if target == "/"
            || !target.starts_with('/')
            || NOT_ON_DISK.contains(&kind)
            || options.split(',').any(|o| o == "bind")
        {
            continue;
        }
        out.push((source.to_owned(), paths_normalize(target)));
    }
    out
}

fn paths_normalize(target: &str) -> String {
    let trimmed = target.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Tells whether an fstab source names this partition.
fn source_matches(source: &str, entry: &table::TableEntry, probe: &Probe) -> bool {
    let eq = |a: Option<&str>, b: &str| a.is_some_and(|a| a.eq_ignore_ascii_case(b));
    let by = |prefix: &str, link: &str| {
        source
            .strip_prefix(prefix)
            .or_else(|| source.strip_prefix(link))
    };
    if let Some(uuid) = by("UUID=", "/dev/disk/by-uuid/") {
        return eq(probe.uuid.as_deref(), uuid);
    }
    if let Some(label) = by("LABEL=", "/dev/disk/by-label/") {
        return probe.label.as_deref() == Some(label);
    }
    if let Some(uuid) = by("PARTUUID=", "/dev/disk/by-partuuid/") {
        return entry.part_uuid.eq_ignore_ascii_case(uuid);
    }
    if let Some(name) = by("PARTLABEL=", "/dev/disk/by-partlabel/") {
        return entry.name == name;
    }
    device_number(source) == Some(entry.number)
}

/// Returns the partition number of a device name of the first disk (`/dev/sda2`,
/// `/dev/vda2`, `/dev/nvme0n1p2`).
fn device_number(source: &str) -> Option<u32> {
    let name = source.strip_prefix("/dev/")?;
    let number = ["sda", "vda", "xvda", "hda", "nvme0n1p", "mmcblk0p"]
        .iter()
        .find_map(|disk| name.strip_prefix(disk))?;
    number.parse().ok()
}

/// Reads a little-endian `u32` at `offset`.
fn le32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

/// Reads a little-endian `u64` at `offset`.
fn le64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_arch_names_follow_libguestfs() {
        assert_eq!(windows_arch_name("AMD64"), "x86_64");
        assert_eq!(windows_arch_name("x86"), "i386");
        assert_eq!(windows_arch_name("ARM64"), "aarch64");
        assert_eq!(windows_arch_name("IA64"), "ia64");
    }

    #[test]
    fn dynamic_disk_partitions() {
        assert!(is_dynamic_disk_part("0x42"));
        assert!(is_dynamic_disk_part("AF9B60A0-1431-4F62-BC68-3311714A69AD"));
        assert!(is_dynamic_disk_part("5808c8aa-7e8f-42e0-85d2-e1e90434cfb3"));
        assert!(!is_dynamic_disk_part("0x07"));
        assert!(!is_dynamic_disk_part(
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
        ));
    }

    #[test]
    fn fstab_mounts_skip_root_swap_and_virtual() {
        let fstab = "\
# comment
UUID=abc / ext4 defaults 0 1
UUID=1234-ABCD /boot/efi/ vfat umask=0077 0 1
/swapfile none swap sw 0 0
tmpfs /tmp tmpfs defaults 0 0
/srv /mnt/srv none bind 0 0
/dev/vda3 /var ext4 defaults 0 2
";
        assert_eq!(
            local_mounts(fstab),
            vec![
                ("UUID=1234-ABCD".to_owned(), "/boot/efi".to_owned()),
                ("/dev/vda3".to_owned(), "/var".to_owned()),
            ]
        );
    }

    #[test]
    fn sources_match_by_uuid_label_partuuid_and_device() {
        let entry = table::TableEntry {
            number: 15,
            start_sector: 4096,
            sectors: 1000,
            type_id: String::new(),
            part_uuid: "0f1e2d3c-0000-4000-8000-000000000001".to_owned(),
            name: "efi".to_owned(),
        };
        let probe = Probe {
            fs_type: Some("vfat".to_owned()),
            uuid: Some("1234-ABCD".to_owned()),
            label: Some("ESP".to_owned()),
        };
        assert!(source_matches("UUID=1234-abcd", &entry, &probe));
        assert!(source_matches("LABEL=ESP", &entry, &probe));
        assert!(source_matches(
            "PARTUUID=0F1E2D3C-0000-4000-8000-000000000001",
            &entry,
            &probe
        ));
        assert!(source_matches("PARTLABEL=efi", &entry, &probe));
        assert!(source_matches("/dev/sda15", &entry, &probe));
        assert!(source_matches("/dev/nvme0n1p15", &entry, &probe));
        assert!(!source_matches("/dev/sda1", &entry, &probe));
        assert!(!source_matches("UUID=other", &entry, &probe));
    }
}
