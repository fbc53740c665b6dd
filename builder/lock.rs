//! The lock file: what a build installed and from which package indexes,
//! so that `forge build --locked` can install exactly the same again and
//! `forge update` can list what changed.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::build::mirror::IndexRelease;

/// Version of the lock file format.
const LOCK_FORMAT: u32 = 1;

/// One installed package.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockedPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Whether this version is in the distribution's security suite.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub security: bool,
}

/// Contents of `<name>.lock`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub format: u32,
    pub forge_version: String,
    pub source_date_epoch: u64,
    /// Main archive the packages came from, when the recipe or the lock
    /// names one (a snapshot archive, for instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_sha256: Option<String>,
    #[serde(rename = "index")]
    pub indexes: Vec<IndexRelease>,
    #[serde(rename = "package")]
    pub packages: Vec<LockedPackage>,
}

impl Lock {
    pub fn new(
        source_date_epoch: u64,
        mirror: Option<String>,
        indexes: Vec<IndexRelease>,
        mut packages: Vec<LockedPackage>,
    ) -> Self {
        packages.sort();
        Lock {
            format: LOCK_FORMAT,
            forge_version: env!("CARGO_PKG_VERSION").to_owned(),
            source_date_epoch,
            mirror,
            base_image_sha256: None,
            indexes,
            packages,
        }
    }

    /// Reads and validates a lock file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("failed to read lock file {}", path.display()))?;
        let lock: Lock = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid lock file: {}",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        if lock.format != LOCK_FORMAT {
            bail!(
                "{}: lock format {} is not supported (this forge writes format {LOCK_FORMAT})",
                path.display(),
                lock.format
            );
        }
        Ok(lock)
    }

    /// Serializes the lock as TOML with a header comment.
    pub fn render(&self) -> String {
        let body = toml::to_string(self).expect("the lock serializes to TOML");
        format!(
            "# Written by forge build: the exact packages of the image and the\n\
             # package indexes they came from. `forge build --locked` installs\n\
             # these versions again; `forge update` refreshes them.\n{body}"
        )
    }

    /// Writes the lock to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let temp = path.with_extension("lock.partial");
        fs::write(&temp, self.render())
            .with_context(|| format!("failed to write {}", temp.display()))?;
        fs::rename(&temp, path).with_context(|| format!("failed to write {}", path.display()))
    }

    /// apt preferences that pin every package to its locked version.
    pub fn apt_preferences(&self) -> String {
        let mut out = String::new();
        for p in &self.packages {
            out.push_str(&format!(
                "Package: {}\nPin: version {}\nPin-Priority: 1001\n\n",
                p.name, p.version
            ));
        }
        out
    }
}

/// Returns the lock file of a recipe: `<name>.lock` in the recipe's folder.
pub fn path_for(recipe_path: &Path, name: &str) -> PathBuf {
    recipe_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(format!("{name}.lock"))
}

/// Reads the installed packages of an rpm-based tree from its package
/// database (`rpmdb.sqlite`, as RHEL 9 and SUSE 15 SP5 and later keep it).
pub fn installed_rpm_packages(tree: &Path) -> Result<Vec<LockedPackage>> {
    use crate::check::rules::rpmdb::{self, DbFormat};
    let view = crate::check::DirView::new(tree);
    let Some((path, format)) = rpmdb::locate(&view)? else {
        bail!(
            "the image has no rpm package database in {}",
            rpmdb::searched_dirs()
        );
    };
    if format != DbFormat::Sqlite {
        bail!("the image's rpm database {path} is not rpmdb.sqlite, the only format forge reads");
    }
    Ok(rpmdb::read_sqlite(&view, &path)?
        .into_iter()
        .filter(|p| !p.arch.is_empty())
        .map(|p| LockedPackage {
            version: p.evr(),
            name: p.name,
            arch: p.arch,
            security: false,
        })
        .collect())
}

/// Reads the installed packages from a dpkg status file.
pub fn installed_packages(status: &str) -> Vec<LockedPackage> {
    let mut out = Vec::new();
    for stanza in status.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_owned())
            })
        };
        let installed = field("Status").is_some_and(|s| s.ends_with(" installed"));
        if let (true, Some(name), Some(version), Some(arch)) = (
            installed,
            field("Package"),
            field("Version"),
            field("Architecture"),
        ) {
            out.push(LockedPackage {
                name,
                version,
                arch,
                security: false,
            });
        }
    }
    out.sort();
    out
}

/// Marks the packages whose installed version is listed in one of the
/// security suite's `Packages` indexes in `lists` (an image's
/// `/var/lib/apt/lists` on the host).
pub fn mark_security(packages: &mut [LockedPackage], lists: &Path) -> Result<()> {
    let mut security = std::collections::BTreeSet::new();
    for entry in
        fs::read_dir(lists).with_context(|| format!("failed to list {}", lists.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.contains("-security_") && name.ends_with("_Packages")) {
            continue;
        }
        let text = fs::read_to_string(entry.path())?;
        for stanza in text.split("\n\n") {
            let field = |key: &str| {
                stanza.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|r| r.strip_prefix(':'))
                        .map(|v| v.trim().to_owned())
                })
            };
            if let (Some(p), Some(v)) = (field("Package"), field("Version")) {
                security.insert((p, v));
            }
        }
    }
    for p in packages.iter_mut() {
        p.security = security.contains(&(p.name.clone(), p.version.clone()));
    }
    Ok(())
}

/// One line of a package comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageChange {
    pub name: String,
    pub old: Option<String>,
    pub new: Option<String>,
    /// Whether the new version comes from the security suite.
    pub security: bool,
}

/// Compares two package lists by name.
pub fn compare(old: &[LockedPackage], new: &[LockedPackage]) -> Vec<PackageChange> {
    let key = |p: &LockedPackage| (p.name.clone(), p.arch.clone());
    let old_map: BTreeMap<(String, String), &LockedPackage> =
        old.iter().map(|p| (key(p), p)).collect();
    let new_map: BTreeMap<(String, String), &LockedPackage> =
        new.iter().map(|p| (key(p), p)).collect();
    let mut names: Vec<&(String, String)> = old_map.keys().chain(new_map.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|k| {
            let o = old_map.get(k).map(|p| p.version.clone());
            let n = new_map.get(k).map(|p| p.version.clone());
            (o != n).then(|| PackageChange {
                name: old_map
                    .get(k)
                    .or(new_map.get(k))
                    .expect("in one map")
                    .name
                    .clone(),
                old: o,
                new: n,
                security: new_map.get(k).is_some_and(|p| p.security),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: openssl
Status: install ok installed
Architecture: amd64
Version: 3.0.15-1~deb12u1

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u8
";

    #[test]
    fn only_installed_packages_are_locked() {
        let packages = installed_packages(STATUS);
        let names: Vec<&str> = packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["base-files", "openssl"]);
    }

    #[test]
    fn lock_round_trips_and_pins() {
        let lock = Lock::new(
            1_700_000_000,
            None,
            vec![IndexRelease {
                suite: "bookworm".into(),
                date: "Tue, 14 Nov 2023 22:13:20 UTC".into(),
                date_epoch: 1_700_000_000,
                sha256: "ab".repeat(32),
            }],
            installed_packages(STATUS),
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        lock.save(&path).unwrap();
        assert_eq!(Lock::load(&path).unwrap(), lock);
        assert!(lock
            .apt_preferences()
            .contains("Package: openssl\nPin: version 3.0.15-1~deb12u1\nPin-Priority: 1001\n"));
    }

    #[test]
    fn comparison_lists_changed_added_and_removed() {
        let old = installed_packages(STATUS);
        let mut new = old.clone();
        new[1].version = "3.0.16-1~deb12u1".into();
        new.remove(0);
        new.push(LockedPackage {
            name: "curl".into(),
            version: "7.88".into(),
            arch: "amd64".into(),
            security: false,
        });
        let changes = compare(&old, &new);
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].name, "base-files");
        assert_eq!(changes[0].new, None);
        assert_eq!(changes[1].name, "curl");
        assert_eq!(changes[1].old, None);
        assert_eq!(changes[2].new.as_deref(), Some("3.0.16-1~deb12u1"));
    }
}
