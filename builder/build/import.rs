//! Image bases: the OS tree of an existing cloud image, copied file by file
//! into the build tree, then adapted to forge's disk layout.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context as _, Result};

use super::{tree, Context as BuildContext};
use crate::check::rules::family::{self, Family};
use crate::guestfs::GuestImage;
use crate::hashcache::{self, HashCache};
use crate::recipe::ImageBase;

/// Checks the image against the recipe's `sha256` pin. Runs before anything
/// else of the build, so a changed or wrong file stops it at once.
pub fn verify_pin(base: &ImageBase, cache_dir: &Path) -> Result<()> {
    verify_file_pin(&base.path, &base.sha256, cache_dir)
}

/// Checks the file at `path` against the pinned lowercase `sha256`.
pub fn verify_file_pin(path: &Path, sha256: &str, cache_dir: &Path) -> Result<()> {
    let cache = HashCache::new(cache_dir);
    let actual = hashcache::sha256_of(path, Some(&cache))
        .with_context(|| format!("failed to read base image {}", path.display()))?;
    if actual != sha256 {
        bail!(
            "base image {} has sha256 {actual}, but the recipe pins {sha256}; \
             check that this is the image you meant, then update `sha256` in [base]",
            path.display(),
        );
    }
    Ok(())
}

/// Copies the OS tree of the image into the empty build tree, with every
/// file system mounted as the image's fstab says.
pub fn copy_tree(base: &ImageBase, dest: &Path) -> Result<()> {
    let image = GuestImage::open(&base.path)
        .with_context(|| format!("failed to open base image {}", base.path.display()))?;
    let os = image.os().with_context(|| {
        format!(
            "base image {} contains no operating system that libguestfs recognizes",
            base.path.display()
        )
    })?;
    if os.family == "windows" {
        bail!(
            "base image {} is Windows; `image` takes a Linux image",
            base.path.display()
        );
    }
    if os.arch != "x86_64" {
        bail!(
            "base image {} is {}, not x86_64; Azure Marketplace images must be 64-bit x86",
            base.path.display(),
            os.arch
        );
    }
    tracing::info!("base image: {} {} {}", os.family, os.version, os.arch);
    image.export_tree(dest)
}

/// Reads the distribution family from the tree's os-release.
pub fn detect_family(t: &Path) -> Result<Family> {
    let text = match tree::read(t, "/etc/os-release")? {
        Some(text) => text,
        None => tree::read(t, "/usr/lib/os-release")?
            .context("the image has no /etc/os-release or /usr/lib/os-release")?,
    };
    let family = family::parse_os_release(&text).family();
    if family == Family::Unknown {
        bail!(
            "the image's os-release names a distribution forge does not know (ID and ID_LIKE \
             are neither Debian, Ubuntu, the RHEL family nor SUSE)"
        );
    }
    Ok(family)
}

/// The build's `SOURCE_DATE_EPOCH` for an image base with neither a lock
/// nor a caller's value: the newest modification time in the copied tree,
/// which depends on the image alone.
pub fn newest_mtime(t: &Path) -> Result<u64> {
    let mut newest = 0i64;
    let mut stack = vec![t.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))?
        {
            let entry = entry?;
            let meta = entry.metadata()?;
            newest = newest.max(meta.mtime());
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(newest.max(0) as u64)
}

/// Where the family keeps the Azure Linux Agent, by package name.
pub fn agent_package(family: Family) -> &'static str {
    match family {
        Family::Debian => "waagent",
        Family::Rhel => "WALinuxAgent",
        Family::Suse => "python-azure-agent",
        Family::Unknown => "waagent",
    }
}

/// Packages the Marketplace requires on every family, by the family's
/// names: OpenSSL, Python 3 with pyasn1 (for the agent) and the SSH server.
/// Installing one that is already there changes nothing.
pub fn required_packages(family: Family) -> &'static [&'static str] {
    match family {
        Family::Suse => &["openssl", "python3", "python3-pyasn1", "openssh"],
        _ => &["openssl", "python3", "python3-pyasn1", "openssh-server"],
    }
}

/// Returns the packages of `names` that the tree's package database does
/// not list as installed.
pub fn missing_packages(t: &Path, family: Family, names: &[&str]) -> Result<Vec<String>> {
    let installed: Vec<String> = if family.uses_rpm() {
        crate::lock::installed_rpm_packages(t)?
            .into_iter()
            .map(|p| p.name)
            .collect()
    } else {
        let status = tree::read(t, "/var/lib/dpkg/status")?
            .context("the image has no /var/lib/dpkg/status")?;
        crate::lock::installed_packages(&status)
            .into_iter()
            .map(|p| p.name)
            .collect()
    };
    Ok(names
        .iter()
        .filter(|n| !installed.iter().any(|i| i == *n))
        .map(|n| n.to_string())
        .collect())
}

/// Whether the tree has the Azure Linux Agent's program.
pub fn has_agent(t: &Path) -> Result<bool> {
    for path in ["/usr/sbin/waagent", "/usr/bin/waagent"] {
        if fs::symlink_metadata(tree::resolve_parent(t, path)?).is_ok() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes what forge's layout replaces: the source's EFI system
/// partition contents (forge writes its own) and, on Debian, the resume
/// device, which was a swap partition that the new disk does not have.
pub fn prepare_layout(ctx: &BuildContext, family: Family) -> Result<()> {
    let t = &ctx.tree;
    let esp = tree::resolve_all(t, "/boot/efi")?;
    if esp.is_dir() {
        for entry in fs::read_dir(&esp)? {
            let path = entry?.path();
            if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
    }
    if family == Family::Debian && tree::resolve_all(t, "/etc/initramfs-tools")?.is_dir() {
        tree::write(
            t,
            "/etc/initramfs-tools/conf.d/resume",
            b"# Set by forge: the image has no swap to resume from.\nRESUME=none\n",
            0o644,
        )?;
    }
    Ok(())
}

/// Commands that rebuild the initramfs of every installed kernel with the
/// family's tool, so that it no longer looks for the source's swap or
/// volume groups.
pub fn initramfs_commands(t: &Path, family: Family) -> Result<Vec<Vec<String>>> {
    let argv: &[&str] = match family {
        Family::Debian if tree::resolve_all(t, "/usr/sbin/update-initramfs")?.exists() => {
            &["update-initramfs", "-u", "-k", "all"]
        }
        Family::Rhel | Family::Suse if tree::resolve_all(t, "/usr/bin/dracut")?.exists() => {
            &["dracut", "--force", "--no-hostonly", "--regenerate-all"]
        }
        _ => {
            tracing::warn!("the image has no initramfs tool forge knows; its initramfs is kept");
            return Ok(Vec::new());
        }
    };
    Ok(vec![argv.iter().map(|a| a.to_string()).collect()])
}
