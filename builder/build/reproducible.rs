//! Steps that make the same recipe and package versions give the same
//! bytes: clamped file times, a tree copy with a fixed directory order, and
//! fixed inode times in the finished ext4 file system.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::exec::Cmd;

/// Sets the modification time of every path in `tree` that is newer than
/// `epoch` to `epoch`, and every access time to the modification time.
/// Files from packages keep their older times.
pub fn clamp_times(tree: &Path, epoch: u64) -> Result<()> {
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            }
            clamp_one(&entry.path(), &meta, epoch)?;
        }
    }
    let meta = fs::symlink_metadata(tree)?;
    clamp_one(tree, &meta, epoch)
}

fn clamp_one(path: &Path, meta: &fs::Metadata, epoch: u64) -> Result<()> {
    set_times(path, u64::try_from(meta.mtime()).unwrap_or(0).min(epoch))
}

/// Sets the access and modification times of `path`, not following a
/// final symlink.
pub fn set_times(path: &Path, mtime: u64) -> Result<()> {
    let time = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [time, time];
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: c_path is a valid NUL-terminated string and times holds two
    // timespec values, as utimensat requires.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("failed to set the times of {}", path.display()));
    }
    Ok(())
}

/// Removes `path` from `tree` and gives its folder back the modification
/// time it had, so that a file forge added and took away again leaves no
/// trace in the image's bytes.
pub fn remove_without_trace(tree: &Path, path: &str) -> Result<()> {
    let host = super::tree::resolve_all(tree, path)?;
    let Some(parent) = host.parent() else {
        return Ok(());
    };
    let before = fs::symlink_metadata(parent)
        .with_context(|| format!("failed to read {}", parent.display()))?;
    if super::tree::remove(tree, path)? {
        set_times(parent, u64::try_from(before.mtime()).unwrap_or(0))?;
    }
    Ok(())
}

/// Copies `tree` into the empty folder `dest` in name order, through tar.
///
/// `mkfs.ext4 -d` adds entries in the order the host lists them, and on an
/// ext4 host that order depends on the host file system's hash seed.
/// `dest` should be on tmpfs, which listed entries newest first in tests
/// here, so the order follows from the name-ordered creation alone.
pub fn sorted_copy(tree: &Path, dest: &Path) -> Result<()> {
    Cmd::new("bash")
        .arg("-c")
        .arg(
            "set -o pipefail; \
             tar -C \"$1\" --sort=name --numeric-owner --xattrs --xattrs-include='*' \
                 --acls --selinux -cpf - . \
             | tar -C \"$2\" --numeric-owner --xattrs --xattrs-include='*' \
                 --acls --selinux -xpf -",
        )
        .arg("forge-sorted-copy")
        .arg(tree)
        .arg(dest)
        .label("copy the tree in name order")
        .run()
        .context("failed to copy the tree in name order")?;
    Ok(())
}

/// Sets the access, change and creation times of every inode in use in the
/// ext4 file system at byte `offset` of `image` to `epoch`.
///
/// `mkfs.ext4 -d` copies the host's access and change times, which no
/// program can set to a chosen value on the host.
pub fn fix_inode_times(image: &Path, offset: u64, epoch: u64) -> Result<()> {
    let device = format!("{}?offset={offset}", image.display());
    let out = Cmd::new("dumpe2fs")
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .arg(&device)
        .label("dumpe2fs")
        .run()
        .context("failed to read the root file system's inode use")?;
    let used = used_inodes(&out.stdout_text())?;
    let mut script = String::new();
    for range in used {
        for ino in range.0..=range.1 {
            for field in ["atime", "ctime", "crtime"] {
                script.push_str(&format!("sif <{ino}> {field} @{epoch}\n"));
            }
            for field in ["atime_extra", "ctime_extra", "crtime_extra", "mtime_extra"] {
                script.push_str(&format!("sif <{ino}> {field} 0\n"));
            }
        }
    }
    let dir = tempfile::tempdir().context("failed to create a scratch folder")?;
    let script_path = dir.path().join("times.debugfs");
    fs::write(&script_path, script)?;
    let out = Cmd::new("debugfs")
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(&device)
        .label("debugfs")
        .run()
        .context("failed to set inode times in the root file system")?;
    let text = out.stdout_text();
    if let Some(line) = text.lines().find(|l| l.contains("set_inode_field:")) {
        bail!("debugfs could not set an inode time: {line}");
    }
    Ok(())
}

/// Reads the inode ranges in use from `dumpe2fs` output: each group's
/// inode range minus its "Free inodes" ranges.
fn used_inodes(dumpe2fs: &str) -> Result<Vec<(u64, u64)>> {
    let per_group: u64 = dumpe2fs
        .lines()
        .find_map(|l| l.strip_prefix("Inodes per group:"))
        .and_then(|v| v.trim().parse().ok())
        .context("dumpe2fs printed no inode count per group")?;
    let mut used = Vec::new();
    let mut group: Option<u64> = None;
    for line in dumpe2fs.lines() {
        if let Some(rest) = line.strip_prefix("Group ") {
            group = rest.split(':').next().and_then(|g| g.trim().parse().ok());
            continue;
        }
        let Some(free) = line.trim().strip_prefix("Free inodes:") else {
            continue;
        };
        let Some(g) = group else { continue };
        let first = g * per_group + 1;
        let last = first + per_group - 1;
        let mut next = first;
        for part in free.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u64>()?, b.trim().parse::<u64>()?),
                None => {
                    let n = part.parse::<u64>()?;
                    (n, n)
                }
            };
            if a > next {
                used.push((next, a - 1));
            }
            next = b + 1;
        }
        if next <= last {
            used.push((next, last));
        }
    }
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_inodes_are_the_complement_of_free_ranges() {
        let out = "\
Inodes per group:         8192
Free inodes:              12000
Group 0: (Blocks 0-32767) csum 0x1234 [ITABLE_ZEROED]
  Free inodes: 4000-8192
Group 1: (Blocks 32768-65535) csum 0x5678 [INODE_UNINIT]
  Free inodes: 8193-16384
Group 2: (Blocks 65536-98303)
  Free inodes: 16385-16390, 16400, 16500-24576
Group 3: (Blocks 98304-131071)
  Free inodes: 
";
        assert_eq!(
            used_inodes(out).unwrap(),
            vec![(1, 3999), (16391, 16399), (16401, 16499), (24577, 32768)]
        );
    }

    #[test]
    fn newer_times_are_clamped_and_older_kept() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old");
        let new = dir.path().join("new");
        fs::write(&old, b"o").unwrap();
        fs::write(&new, b"n").unwrap();
        std::os::unix::fs::symlink("old", dir.path().join("link")).unwrap();
        let past = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(past)
            .unwrap();
        clamp_times(dir.path(), 2_000_000).unwrap();
        assert_eq!(fs::metadata(&old).unwrap().mtime(), 1_000_000);
        assert_eq!(fs::metadata(&new).unwrap().mtime(), 2_000_000);
        assert_eq!(
            fs::symlink_metadata(dir.path().join("link"))
                .unwrap()
                .mtime(),
            2_000_000
        );
        assert_eq!(fs::metadata(dir.path()).unwrap().mtime(), 2_000_000);
    }
}
