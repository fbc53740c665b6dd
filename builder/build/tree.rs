//! Safe access to paths inside an image tree from the host.
//!
//! A layer can leave symlinks anywhere in the tree, and an absolute link
//! like `/etc/x -> /root/.ssh` must never make forge touch the host. Paths
//! are therefore resolved as a chroot would resolve them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Maximum number of symlinks followed while resolving one path.
const MAX_LINKS: usize = 40;

/// Resolves `path` (absolute, inside the image) to a host path under
/// `tree`, following symlinks in every component but the last as the
/// image would see them.
pub fn resolve_parent(tree: &Path, path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    let parent = p.parent().unwrap_or(Path::new("/"));
    let name = p
        .file_name()
        .with_context(|| format!("{path} has no file name"))?;
    Ok(resolve(tree, parent, 0)?.join(name))
}

/// Resolves every component of `path`, the last one included.
pub fn resolve_all(tree: &Path, path: &str) -> Result<PathBuf> {
    resolve(tree, Path::new(path), 0)
}

fn resolve(tree: &Path, path: &Path, depth: usize) -> Result<PathBuf> {
    let mut inside = PathBuf::from("/");
    // Components still to walk, last one first.
    let mut pending: Vec<Step> = steps(path);
    let mut links = depth;
    while let Some(step) = pending.pop() {
        let name = match step {
            Step::Parent => {
                inside.pop();
                continue;
            }
            Step::Name(n) => n,
        };
        let candidate = inside.join(&name);
        let host = host_of(tree, &candidate);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    bail!(
                        "too many levels of symlinks at {} in the image",
                        candidate.display()
                    );
                }
                let target = fs::read_link(&host)?;
                if target.is_absolute() {
                    inside = PathBuf::from("/");
                }
                pending.extend(steps(&target));
            }
            _ => inside = candidate,
        }
    }
    Ok(host_of(tree, &inside))
}

enum Step {
    Parent,
    Name(std::ffi::OsString),
}

/// Splits a path into steps, reversed so that `pop` yields the first.
fn steps(path: &Path) -> Vec<Step> {
    let mut out: Vec<Step> = path
        .components()
        .filter_map(|c| match c {
            Component::ParentDir => Some(Step::Parent),
            Component::Normal(n) => Some(Step::Name(n.to_os_string())),
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

fn host_of(tree: &Path, inside: &Path) -> PathBuf {
    tree.join(inside.strip_prefix("/").unwrap_or(inside))
}

/// Writes `contents` to `path` in the image with `mode`, replacing a file
/// or symlink that is there. Parent folders are created.
pub fn write(tree: &Path, path: &str, contents: &[u8], mode: u32) -> Result<()> {
    let host = resolve_parent(tree, path)?;
    if let Some(dir) = host.parent() {
        fs::create_dir_all(dir).with_context(|| format!("failed to create folder for {path}"))?;
    }
    remove(tree, path)?;
    let mut f =
        fs::File::create(&host).with_context(|| format!("failed to write {path} in the image"))?;
    f.write_all(contents)?;
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Reads `path` in the image as text; `None` if it does not exist.
pub fn read(tree: &Path, path: &str) -> Result<Option<String>> {
    let host = resolve_all(tree, path)?;
    match fs::read(&host) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("failed to read {path} in the image")),
    }
}

/// Removes the file, symlink or folder at `path` in the image, if any.
/// A symlink is removed itself; its target is left alone.
pub fn remove(tree: &Path, path: &str) -> Result<bool> {
    let host = resolve_parent(tree, path)?;
    match fs::symlink_metadata(&host) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&host),
        Ok(_) => fs::remove_file(&host),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => Err(e),
    }
    .with_context(|| format!("failed to remove {path} from the image"))?;
    Ok(true)
}

/// Every path under `dir` in the image, without following symlinks; the
/// callback gets the path inside the image and its metadata.
pub fn walk(
    tree: &Path,
    dir: &str,
    f: &mut dyn FnMut(&str, &fs::Metadata) -> Result<()>,
) -> Result<()> {
    let start = resolve_all(tree, dir)?;
    let mut stack = vec![(start, dir.trim_end_matches('/').to_string())];
    while let Some((host, inside)) = stack.pop() {
        let entries = match fs::read_dir(&host) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("failed to list {inside}")),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = format!("{inside}/{}", entry.file_name().to_string_lossy());
            if meta.is_dir() {
                stack.push((entry.path(), path.clone()));
            }
            f(&path, &meta)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_link_stays_in_tree() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/root", t.path().join("etc/x")).unwrap();
        let p = resolve_parent(t.path(), "/etc/x/file").unwrap();
        assert_eq!(p, t.path().join("root/file"));
    }

    #[test]
    fn dotdot_link_cannot_climb_out() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp", t.path().join("etc/up")).unwrap();
        let p = resolve_parent(t.path(), "/etc/up/f").unwrap();
        assert_eq!(p, t.path().join("tmp/f"));
    }

    #[test]
    fn write_replaces_symlink_not_target() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("etc/conf")).unwrap();
        write(t.path(), "/etc/conf", b"new", 0o644).unwrap();
        assert_eq!(fs::read(outside.path()).unwrap(), b"");
        assert_eq!(fs::read(t.path().join("etc/conf")).unwrap(), b"new");
    }
}
