//! A Windows disk opened read-write in one libguestfs appliance for a
//! build: its NTFS volume mounted at `/` and its registry hives edited
//! with the appliance's hivex.
//!
//! ntfs-3g looks names up case-sensitively, while Windows does not, so
//! paths that the base decides the case of go through [`WindowsDisk::resolve`].

use std::path::Path;

use anyhow::{bail, Context, Result};
use guestfs::{Handle, HivexOpenOptArgs, IsFileOptArgs, TarInOptArgs};

use super::{guest_error, Appliance, GuestContext};
use crate::build::windows::registry::{Hive, Node, Value};

/// Largest file [`WindowsDisk::read`] reads: libguestfs limits one message
/// to 4 MiB.
const MAX_READ: u64 = 2 << 20;

/// The Windows volume of a disk, mounted read-write.
pub struct WindowsDisk {
    appliance: Appliance,
    /// The inspection root: the Windows volume's device.
    root: String,
}

impl WindowsDisk {
    /// Launches the appliance on the raw disk `path`, rejects a
    /// BitLocker-encrypted volume, finds the one Windows installation and
    /// mounts it read-write with `noatime`, so that reading a file does not
    /// change its access time.
    pub fn open(path: &Path) -> Result<Self> {
        let appliance = Appliance::launch(path, "raw", false)
            .with_context(|| format!("failed to open {} in libguestfs", path.display()))?;
        let g = &appliance.handle;
        let partitions = g
            .list_partitions()
            .guest_context(|| "list the partitions".to_owned())?;
        for p in &partitions {
            let fs = g.vfs_type(p).unwrap_or_default();
            if fs.eq_ignore_ascii_case("BitLocker") {
                bail!(
                    "partition {p} of the base image is BitLocker-encrypted; a Marketplace VHD \
                     must not be encrypted: on the VM run `manage-bde -off C:`, wait until \
                     `manage-bde -status` shows the volume fully decrypted, then generalize and \
                     export again"
                );
            }
        }
        let roots = g
            .inspect_os()
            .guest_context(|| "inspect the disk for an OS".to_owned())?;
        let root = match roots.as_slice() {
            [root] => root.clone(),
            [] => bail!(
                "libguestfs found no operating system on the base image; give the OS disk \
                 exported from a generalized Windows Server VM"
            ),
            many => bail!(
                "the base image contains {} operating systems ({}); give a disk with one \
                 Windows installation",
                many.len(),
                many.join(", ")
            ),
        };
        let kind = g
            .inspect_get_type(&root)
            .guest_context(|| format!("read the OS type of {root}"))?;
        if kind != "windows" {
            bail!(
                "the base image contains {kind}, not Windows; a Linux image goes in `[base] image`"
            );
        }
        g.mount_options("noatime", &root, "/")
            .map_err(guest_error)
            .with_context(|| {
                format!(
                    "failed to mount the Windows volume {root} read-write; if Windows was \
                     hibernated or shut down with Fast Startup, shut it down fully (sysprep's \
                     /shutdown does) and export the disk again"
                )
            })?;
        Ok(Self { appliance, root })
    }

    fn g(&self) -> &Handle {
        &self.appliance.handle
    }

    /// Returns the byte offset of the Windows volume on the disk.
    pub fn volume_start(&self) -> Result<u64> {
        let g = self.g();
        let root = &self.root;
        let device = g
            .part_to_dev(root)
            .guest_context(|| format!("find the disk of {root}"))?;
        let number = g
            .part_to_partnum(root)
            .guest_context(|| format!("find the partition number of {root}"))?;
        let partitions = g
            .part_list(&device)
            .guest_context(|| format!("list the partitions of {device}"))?;
        let partition = partitions
            .iter()
            .find(|p| p.part_num == number)
            .with_context(|| format!("{device} has no partition {number}"))?;
        Ok(partition.part_start)
    }

    /// Returns the product name that inspection reads, such as "Windows
    /// Server 2022 Datacenter".
    pub fn product_name(&self) -> Result<String> {
        self.g()
            .inspect_get_product_name(&self.root)
            .guest_context(|| "read the product name".to_owned())
    }

    /// Returns the Windows folder, such as `/Windows`.
    pub fn system_root(&self) -> Result<String> {
        self.g()
            .inspect_get_windows_systemroot(&self.root)
            .guest_context(|| "read the Windows folder".to_owned())
    }

    /// Returns `path` with each existing name in the case the volume has;
    /// the last name may be missing.
    pub fn resolve(&self, path: &str) -> Result<String> {
        self.g()
            .case_sensitive_path(path)
            .guest_context(|| format!("resolve {path} ignoring case"))
    }

    /// Resolves `path` ignoring case, or `None` when a folder on the way or
    /// the last name is missing.
    pub fn find(&self, path: &str) -> Result<Option<String>> {
        let (parent, _) = path.rsplit_once('/').unwrap_or(("", path));
        if !parent.is_empty() && !self.is_dir(parent)? {
            // case_sensitive_path fails on a missing folder; find out which
            // names are missing one at a time.
            let mut at = String::new();
            for name in parent.split('/').filter(|n| !n.is_empty()) {
                let next = self.resolve(&format!("{at}/{name}"))?;
                if !self.is_dir(&next)? {
                    return Ok(None);
                }
                at = next;
            }
        }
        let resolved = self.resolve(path)?;
        Ok(self.exists(&resolved)?.then_some(resolved))
    }

    pub fn exists(&self, path: &str) -> Result<bool> {
        self.g()
            .exists(path)
            .guest_context(|| format!("check whether {path} exists"))
    }

    pub fn is_dir(&self, path: &str) -> Result<bool> {
        self.g()
            .is_dir(
                path,
                guestfs::IsDirOptArgs {
                    followsymlinks: Some(false),
                },
            )
            .guest_context(|| format!("check whether {path} is a folder"))
    }

    pub fn is_file(&self, path: &str) -> Result<bool> {
        self.g()
            .is_file(
                path,
                IsFileOptArgs {
                    followsymlinks: Some(false),
                },
            )
            .guest_context(|| format!("check whether {path} is a file"))
    }

    /// Returns the size of a file in bytes.
    pub fn size(&self, path: &str) -> Result<u64> {
        let stat = self
            .g()
            .lstatns(path)
            .guest_context(|| format!("lstat {path}"))?;
        Ok(stat.st_size.max(0) as u64)
    }

    /// Returns the modification time of `path` in seconds since 1970.
    pub fn mtime(&self, path: &str) -> Result<i64> {
        let stat = self
            .g()
            .lstatns(path)
            .guest_context(|| format!("lstat {path}"))?;
        Ok(stat.st_mtime_sec)
    }

    /// Reads a whole file of at most 2 MiB.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        let size = self.size(path)?;
        if size > MAX_READ {
            bail!("{path} is {size} bytes, more than forge reads whole");
        }
        self.g()
            .read_file(path)
            .guest_context(|| format!("read {path}"))
    }

    /// Creates or replaces the file at `path`. A file that exists keeps its
    /// record, and so its security descriptor.
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.g()
            .write(path, bytes)
            .guest_context(|| format!("write {path}"))
    }

    /// Copies the file at `path` to the host file `to`.
    pub fn download(&self, path: &str, to: &Path) -> Result<()> {
        let to_str = to.to_str().context("scratch path is not valid UTF-8")?;
        self.g()
            .download(path, to_str)
            .guest_context(|| format!("copy {path} out of the volume"))
    }

    /// Replaces the contents of the file at `path` with the host file
    /// `from`. The file is truncated and written in place, so it keeps its
    /// record and security descriptor.
    pub fn upload(&self, from: &Path, path: &str) -> Result<()> {
        let from_str = from.to_str().context("scratch path is not valid UTF-8")?;
        self.g()
            .upload(from_str, path)
            .guest_context(|| format!("copy {} onto {path}", from.display()))
    }

    pub fn mkdir_p(&self, path: &str) -> Result<()> {
        self.g()
            .mkdir_p(path)
            .guest_context(|| format!("create folder {path}"))
    }

    pub fn rm(&self, path: &str) -> Result<()> {
        self.g().rm(path).guest_context(|| format!("remove {path}"))
    }

    /// Lists the names in a folder, sorted.
    pub fn ls(&self, dir: &str) -> Result<Vec<String>> {
        let mut names = self.g().ls(dir).guest_context(|| format!("list {dir}"))?;
        names.sort();
        Ok(names)
    }

    /// Lists every path below `dir`, relative to it and without a leading
    /// `/`, sorted.
    pub fn find_all(&self, dir: &str, scratch: &Path) -> Result<Vec<String>> {
        let list = scratch.join("find0.list");
        let list_str = list.to_str().context("scratch path is not valid UTF-8")?;
        self.g()
            .find0(dir, list_str)
            .guest_context(|| format!("list the files under {dir}"))?;
        let bytes = std::fs::read(&list)
            .with_context(|| format!("failed to read the file list {}", list.display()))?;
        let _ = std::fs::remove_file(&list);
        let mut names: Vec<String> = bytes
            .split(|b| *b == 0)
            .filter(|name| !name.is_empty())
            .map(|name| {
                String::from_utf8_lossy(name)
                    .trim_start_matches("./")
                    .trim_start_matches('/')
                    .to_owned()
            })
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Unpacks a tar file from the host into `/`.
    pub fn tar_in(&self, tar: &Path) -> Result<()> {
        let tar_str = tar.to_str().context("tar path is not valid UTF-8")?;
        self.g()
            .tar_in(
                tar_str,
                "/",
                TarInOptArgs {
                    compress: None,
                    xattrs: None,
                    selinux: None,
                    acls: None,
                },
            )
            .guest_context(|| "unpack the overlay onto the volume".to_owned())
    }

    /// Sets the access and modification times of `path` to `secs`.
    pub fn set_times(&self, path: &str, secs: i64) -> Result<()> {
        self.g()
            .utimens(path, secs, 0, secs, 0)
            .guest_context(|| format!("set the times of {path}"))
    }

    /// Opens the hive file at `path` for hivex; `write` allows commits.
    pub fn open_hive(&self, path: &str, write: bool) -> Result<GuestHive<'_>> {
        self.g()
            .hivex_open(
                path,
                HivexOpenOptArgs {
                    write: Some(write),
                    ..Default::default()
                },
            )
            .guest_context(|| format!("open the registry hive {path}"))?;
        Ok(GuestHive {
            g: self.g(),
            label: path.to_owned(),
            open: true,
        })
    }

    /// Unmounts the volume, so that ntfs-3g writes everything out, and
    /// shuts the appliance down.
    pub fn close(self) -> Result<()> {
        self.g()
            .umount_all()
            .guest_context(|| "unmount the Windows volume".to_owned())?;
        self.appliance
            .shutdown()
            .context("failed to shut down the appliance, so writes may be lost")
    }
}

/// A registry hive open in the appliance. libguestfs keeps one hive open
/// per appliance; dropping this closes it without saving.
pub struct GuestHive<'a> {
    g: &'a Handle,
    label: String,
    open: bool,
}

impl GuestHive<'_> {
    /// Writes the changes back to the hive file and closes it.
    pub fn commit(mut self) -> Result<()> {
        self.g
            .hivex_commit(None)
            .guest_context(|| format!("write the registry hive {}", self.label))?;
        self.open = false;
        self.g
            .hivex_close()
            .guest_context(|| format!("close the registry hive {}", self.label))
    }
}

impl Drop for GuestHive<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.g.hivex_close();
        }
    }
}

impl Hive for GuestHive<'_> {
    fn label(&self) -> &str {
        &self.label
    }

    fn root(&self) -> Result<Node> {
        self.g
            .hivex_root()
            .guest_context(|| format!("read the root key of {}", self.label))
    }

    fn child(&self, node: Node, name: &str) -> Result<Option<Node>> {
        // hivex returns 0 when there is no such child.
        let child = self
            .g
            .hivex_node_get_child(node, name)
            .guest_context(|| format!("look up key {name:?} in {}", self.label))?;
        Ok((child != 0).then_some(child))
    }

    fn children(&self, node: Node) -> Result<Vec<Node>> {
        Ok(self
            .g
            .hivex_node_children(node)
            .guest_context(|| format!("list subkeys in {}", self.label))?
            .into_iter()
            .map(|c| c.hivex_node_h)
            .collect())
    }

    fn name(&self, node: Node) -> Result<String> {
        self.g
            .hivex_node_name(node)
            .guest_context(|| format!("read a key name in {}", self.label))
    }

    fn values(&self, node: Node) -> Result<Vec<Value>> {
        let handles = self
            .g
            .hivex_node_values(node)
            .guest_context(|| format!("list values in {}", self.label))?;
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let h = h.hivex_value_h;
            let what = || format!("read a value in {}", self.label);
            out.push(Value {
                name: self.g.hivex_value_key(h).guest_context(what)?,
                kind: self.g.hivex_value_type(h).guest_context(what)? as u32,
                data: self.g.hivex_value_value(h).guest_context(what)?,
            });
        }
        Ok(out)
    }

    fn add_child(&mut self, parent: Node, name: &str) -> Result<Node> {
        self.g
            .hivex_node_add_child(parent, name)
            .guest_context(|| format!("add key {name:?} in {}", self.label))
    }

    fn delete(&mut self, node: Node) -> Result<()> {
        self.g
            .hivex_node_delete_child(node)
            .guest_context(|| format!("delete a key in {}", self.label))
    }

    fn set_value(&mut self, node: Node, name: &str, kind: u32, data: &[u8]) -> Result<()> {
        self.g
            .hivex_node_set_value(node, name, i64::from(kind), data)
            .guest_context(|| format!("set value {name:?} in {}", self.label))
    }
}
