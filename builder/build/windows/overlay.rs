//! Copies a layer's overlay folder onto the Windows volume as one tar
//! stream: entries sorted by name, owner 0, times set to the build's epoch.
//! Names that already exist on the volume in another case take the
//! volume's case, as Windows would find them.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::guestfs::windows::WindowsDisk;

/// One overlay entry and where it lands.
struct Entry {
    /// Path inside the overlay folder.
    source: std::path::PathBuf,
    /// Path on the volume, without the leading `/`.
    target: String,
    dir: bool,
}

/// Unpacks the overlay folder `dir` into `/` and adds each path it wrote to
/// `touched`.
pub fn apply(
    disk: &WindowsDisk,
    dir: &Path,
    epoch: u64,
    scratch: &Path,
    touched: &mut BTreeSet<String>,
) -> Result<()> {
    let mut entries = Vec::new();
    map_folder(disk, dir, "", true, &mut entries)?;
    if entries.is_empty() {
        return Ok(());
    }
    let tar_path = scratch.join("overlay.tar");
    write_tar(&tar_path, &entries, epoch)?;
    disk.tar_in(&tar_path)?;
    let _ = fs::remove_file(&tar_path);
    touched.extend(entries.iter().map(|e| format!("/{}", e.target)));
    Ok(())
}

/// Lists the folder `source` (mapped to `target` on the volume) in name
/// order, depth first. `exists` says whether `target` is on the volume, so
/// that names below a new folder need no lookup.
fn map_folder(
    disk: &WindowsDisk,
    source: &Path,
    target: &str,
    exists: bool,
    out: &mut Vec<Entry>,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(source)
        .with_context(|| format!("failed to list {}", source.display()))?
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort_by_key(|e| e.file_name());
    for entry in names {
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 name", entry.path().display()))?;
        let wanted = if target.is_empty() {
            name.to_owned()
        } else {
            format!("{target}/{name}")
        };
        let (mapped, found) = if exists {
            let resolved = disk.resolve(&format!("/{wanted}"))?;
            let found = disk.exists(&resolved)?;
            (resolved.trim_start_matches('/').to_owned(), found)
        } else {
            (wanted, false)
        };
        let dir = entry.file_type()?.is_dir();
        if found && disk.is_dir(&format!("/{mapped}"))? != dir {
            bail!(
                "overlay entry {} is a {}, but /{mapped} on the volume is not",
                entry.path().display(),
                if dir { "folder" } else { "file" }
            );
        }
        out.push(Entry {
            source: entry.path(),
            target: mapped.clone(),
            dir,
        });
        if dir {
            map_folder(disk, &entry.path(), &mapped, found, out)?;
        }
    }
    Ok(())
}

/// Writes the entries as a tar file with fixed owners, modes and times.
fn write_tar(path: &Path, entries: &[Entry], epoch: u64) -> Result<()> {
    let file =
        fs::File::create(path).with_context(|| format!("failed to create {}", path.display()))?;
    let mut builder = tar::Builder::new(file);
    for e in entries {
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(epoch);
        if e.dir {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            builder.append_data(&mut header, format!("{}/", e.target), std::io::empty())?;
        } else {
            let f = fs::File::open(&e.source)
                .with_context(|| format!("failed to read {}", e.source.display()))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(f.metadata()?.len());
            builder.append_data(&mut header, &e.target, f)?;
        }
    }
    builder.into_inner()?.sync_all()?;
    Ok(())
}
