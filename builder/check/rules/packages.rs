//! Installed packages (dpkg) and the apt package index: the rules
//! `security-patches` and `required-packages`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::Result;

use super::debversion;
use crate::check::{ImageView, Outcome, Subject};

pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";
const APT_LISTS: &str = "/var/lib/apt/lists";
/// How many outdated packages the evidence names before it summarizes.
const MAX_LISTED: usize = 10;

/// One package paragraph of the dpkg status file or an apt index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The `Status` field (`install ok installed`); empty in apt indexes.
    pub status: String,
}

impl Package {
    /// Returns whether dpkg considers the package installed (the third status word).
    pub fn is_installed(&self) -> bool {
        self.status.split_whitespace().nth(2) == Some("installed")
    }
}

/// Parses Debian control paragraphs (dpkg status, apt `Packages` files).
pub fn parse_paragraphs(text: &str) -> Vec<Package> {
    let mut packages = Vec::new();
    let mut current = Package::default();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !current.name.is_empty() {
                packages.push(std::mem::take(&mut current));
            }
            current = Package::default();
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match key {
            "Package" => current.name = value,
            "Version" => current.version = value,
            "Architecture" => current.arch = value,
            "Status" => current.status = value,
            _ => {}
        }
    }
    packages
}

/// Reads the installed packages; `None` when the image has no dpkg database.
pub fn installed(fs: &dyn ImageView) -> Result<Option<Vec<Package>>> {
    let Some(text) = fs.read_text(DPKG_STATUS)? else {
        return Ok(None);
    };
    let packages = parse_paragraphs(&text);
    Ok(Some(
        packages.into_iter().filter(Package::is_installed).collect(),
    ))
}

/// Finds an installed package by any of its names.
pub fn find_installed<'a>(packages: &'a [Package], names: &[&str]) -> Option<&'a Package> {
    packages.iter().find(|p| names.contains(&p.name.as_str()))
}

/// One apt `Packages` index with the suite and date of its release file.
struct Index {
    file: String,
    suite: String,
    date: String,
    packages: Vec<Package>,
}

impl Index {
    fn is_update_suite(&self) -> bool {
        self.suite.ends_with("-security") || self.suite.ends_with("-updates")
    }
}

/// Release metadata: (suite names, date) of each `*Release` file prefix.
fn read_releases(
    fs: &dyn ImageView,
    names: &[String],
) -> Result<Vec<(String, Vec<String>, String)>> {
    let mut releases = Vec::new();
    for name in names {
        let Some(prefix) = name
            .strip_suffix("InRelease")
            .or(name.strip_suffix("Release"))
        else {
            continue;
        };
        let Some(text) = fs.read_text(&format!("{APT_LISTS}/{name}"))? else {
            continue;
        };
        let mut suites = Vec::new();
        let mut date = String::new();
        for line in text.lines() {
            if let Some(v) = line
                .strip_prefix("Suite:")
                .or(line.strip_prefix("Codename:"))
            {
                suites.push(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Date:") {
                date = v.trim().to_string();
            }
        }
        releases.push((prefix.to_string(), suites, date));
    }
    Ok(releases)
}

/// Returns the suite named in an index file name (`..._dists_bookworm-security_main_...`).
fn suite_from_file_name(name: &str) -> String {
    let Some((_, rest)) = name.split_once("_dists_") else {
        return String::new();
    };
    rest.split('_').next().unwrap_or_default().to_string()
}

/// Reads every uncompressed `*_Packages` index under the apt lists folder.
///
/// NOTE: compressed indexes (`Acquire::GzipIndexes`, `*.lz4`) are skipped;
/// Debian and Ubuntu store them uncompressed by default.
fn read_indexes(fs: &dyn ImageView) -> Result<Vec<Index>> {
    let names = fs.list_dir(APT_LISTS)?;
    let releases = read_releases(fs, &names)?;
    let mut indexes = Vec::new();
    for name in names.iter().filter(|n| n.ends_with("_Packages")) {
        let Some(text) = fs.read_text(&format!("{APT_LISTS}/{name}"))? else {
            continue;
        };
        let release = releases
            .iter()
            .filter(|(prefix, _, _)| name.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _, _)| prefix.len());
        let from_name = suite_from_file_name(name);
        let (suite, date) = match release {
            Some((_, suites, date)) => {
                let update = suites
                    .iter()
                    .find(|s| s.ends_with("-security") || s.ends_with("-updates"));
                (update.cloned().unwrap_or(from_name), date.clone())
            }
            None => (from_name, String::new()),
        };
        indexes.push(Index {
            file: name.clone(),
            suite,
            date,
            packages: parse_paragraphs(&text),
        });
    }
    Ok(indexes)
}

fn arch_matches(installed: &str, available: &str) -> bool {
    installed == available || available == "all" || installed == "all"
}

/// Highest version of each (package, architecture) in the update suites,
/// with the index it comes from.
type Newest<'a> = BTreeMap<(&'a str, &'a str), (&'a str, &'a Index)>;

fn newest_updates(indexes: &[Index]) -> Newest<'_> {
    let mut newest = Newest::new();
    for index in indexes.iter().filter(|i| i.is_update_suite()) {
        for p in &index.packages {
            let key = (p.name.as_str(), p.arch.as_str());
            let better = match newest.get(&key) {
                Some((v, _)) => debversion::compare(&p.version, v) == Ordering::Greater,
                None => true,
            };
            if better {
                newest.insert(key, (p.version.as_str(), index));
            }
        }
    }
    newest
}

/// Checks `security-patches`: no installed package is older than the
/// version in a `-security` or `-updates` suite of the image's apt index.
pub fn security_patches(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let Some(installed) = installed(fs)? else {
        return Ok(Outcome::not_run(format!(
            "{DPKG_STATUS} is missing, so installed versions are unknown"
        )));
    };
    let indexes = read_indexes(fs)?;
    if indexes.is_empty() {
        return Ok(Outcome::not_run(format!(
            "no package index under {APT_LISTS}; run `apt-get update` in the image before checking"
        )));
    }
    let updates: Vec<&Index> = indexes.iter().filter(|i| i.is_update_suite()).collect();
    if updates.is_empty() {
        return Ok(Outcome::not_run(format!(
            "no -security or -updates suite among the {} indexes under {APT_LISTS}; add the security suite to apt sources",
            indexes.len()
        )));
    }
    let outdated = find_outdated(&installed, &newest_updates(&indexes));
    let sources: Vec<String> = updates.iter().map(|i| describe_index(i)).collect();
    if outdated.is_empty() {
        return Ok(Outcome::pass(format!(
            "{} installed packages are at or above the versions in {}",
            installed.len(),
            sources.join("; ")
        )));
    }
    Ok(Outcome::fail(format!(
        "{} packages have updates: {}; index: {}",
        outdated.len(),
        list_first(&outdated, MAX_LISTED),
        sources.join("; ")
    )))
}

/// Lists each installed package that an update suite has a newer version
/// of, as `name installed -> available (suite)`.
fn find_outdated(installed: &[Package], newest: &Newest) -> Vec<String> {
    let mut outdated = Vec::new();
    for p in installed {
        let candidates = newest
            .iter()
            .filter(|((name, arch), _)| *name == p.name && arch_matches(&p.arch, arch));
        for (_, (version, index)) in candidates {
            if debversion::compare(version, &p.version) == Ordering::Greater {
                outdated.push(format!(
                    "{} {} -> {} ({})",
                    p.name, p.version, version, index.suite
                ));
                break;
            }
        }
    }
    outdated
}

/// Joins the first `max` items and counts the rest.
fn list_first(items: &[String], max: usize) -> String {
    let listed = items[..items.len().min(max)].join(", ");
    if items.len() > max {
        format!("{listed} and {} more", items.len() - max)
    } else {
        listed
    }
}

fn describe_index(index: &Index) -> String {
    let date = if index.date.is_empty() {
        "no date"
    } else {
        index.date.as_str()
    };
    format!("{} [{}, {}]", index.file, index.suite, date)
}

/// Checks `required-packages`: OpenSSL 1.0 or later, Python 3 and pyasn1.
pub fn required_packages(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let Some(installed) = installed(fs)? else {
        return Ok(Outcome::fail(format!(
            "{DPKG_STATUS} is missing, so no package is known to be installed"
        )));
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    match find_installed(&installed, &["openssl"]) {
        Some(p) if debversion::compare(&p.version, "1.0") == Ordering::Less => {
            problems.push(format!("openssl {} is older than 1.0", p.version))
        }
        Some(p) => seen.push(format!("openssl {}", p.version)),
        None => problems.push("openssl is not installed".to_string()),
    }
    for name in ["python3", "python3-pyasn1"] {
        match find_installed(&installed, &[name]) {
            Some(p) => seen.push(format!("{name} {}", p.version)),
            None => problems.push(format!("{name} is not installed")),
        }
    }
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "{DPKG_STATUS}: installed {}",
            seen.join(", ")
        )))
    } else {
        Ok(Outcome::fail(format!(
            "{DPKG_STATUS}: {}",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: openssl\nStatus: install ok installed\nArchitecture: amd64\n\
        Version: 3.0.11-1~deb12u2\nDescription: tools\n more text\n\n\
        Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n";

    #[test]
    fn paragraphs_parse_fields() {
        let packages = parse_paragraphs(STATUS);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "openssl");
        assert_eq!(packages[0].version, "3.0.11-1~deb12u2");
        assert_eq!(packages[0].arch, "amd64");
        assert!(packages[0].is_installed());
        assert!(!packages[1].is_installed());
    }

    #[test]
    fn suite_read_from_file_name() {
        let name =
            "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages";
        assert_eq!(suite_from_file_name(name), "bookworm-security");
        assert_eq!(suite_from_file_name("local_Packages"), "");
    }

    #[test]
    fn long_lists_truncated() {
        let items: Vec<String> = (1..=12).map(|i| format!("p{i}")).collect();
        assert_eq!(list_first(&items[..2], 10), "p1, p2");
        assert!(list_first(&items, 10).ends_with("p10 and 2 more"));
    }

    #[test]
    fn arch_all_matches_any() {
        assert!(arch_matches("amd64", "all"));
        assert!(arch_matches("all", "amd64"));
        assert!(!arch_matches("amd64", "arm64"));
    }
}
