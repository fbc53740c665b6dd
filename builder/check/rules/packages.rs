//! Installed packages (dpkg or rpm) and the apt package index: the rules
//! `security-patches` and `required-packages`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::Result;

use super::family::{self, Family};
use super::{debversion, rpmdb};
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
    /// Name of the source package from the `Source` field, without the
    /// version in brackets that follows it when the versions differ. Empty
    /// when the field is absent, because the source has the package's name.
    pub source: String,
    /// The `Maintainer` field: a name and an address in angle brackets.
    pub maintainer: String,
}

impl Package {
    /// Returns whether dpkg considers the package installed (the third status word).
    pub fn is_installed(&self) -> bool {
        self.status.split_whitespace().nth(2) == Some("installed")
    }

    /// Returns the source package name, which is the package name when
    /// the status has no `Source` field.
    pub fn source_name(&self) -> &str {
        if self.source.is_empty() {
            &self.name
        } else {
            &self.source
        }
    }

    /// Returns the version without epoch and without the Debian revision
    /// or rpm release: `3.0.11` of `1:3.0.11-1~deb12u2`.
    pub fn upstream_version(&self) -> &str {
        let version = self
            .version
            .split_once(':')
            .map_or(&*self.version, |(_, v)| v);
        version
            .rsplit_once('-')
            .map_or(version, |(upstream, _)| upstream)
    }
}

/// Package manager whose database lists the installed packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageFormat {
    Dpkg,
    Rpm,
}

/// The installed packages of an image and the database they come from.
#[derive(Clone, Debug)]
pub struct Installed {
    pub format: PackageFormat,
    /// Path of the database in the image.
    pub source: String,
    /// Installed packages. rpm versions read `[epoch:]version-release`.
    pub packages: Vec<Package>,
}

impl Installed {
    /// Finds an installed package whose name matches, the one with the
    /// highest upstream version when several do.
    pub fn find(&self, matches: impl Fn(&str) -> bool) -> Option<&Package> {
        self.packages
            .iter()
            .filter(|p| matches(&p.name))
            .max_by(|a, b| self.compare_upstream(a.upstream_version(), b.upstream_version()))
    }

    /// Compares two upstream versions by the rules of the package format.
    pub fn compare_upstream(&self, a: &str, b: &str) -> Ordering {
        match self.format {
            PackageFormat::Dpkg => debversion::compare(a, b),
            PackageFormat::Rpm => rpmdb::compare_versions(a, b),
        }
    }
}

/// Result of reading the package database of an image.
#[derive(Clone, Debug)]
pub enum PackageDb {
    Read(Installed),
    /// No database on a tree that is not of an rpm family: the reason.
    Missing(String),
    /// A database that exists but cannot be read, or no database on an
    /// rpm-family tree: the reason. Package rules report `not-run`.
    Unreadable(String),
}

/// Reads the installed packages with the package manager of the family:
/// dpkg for Debian, rpm for the RHEL family and SUSE. A tree of unknown
/// family is read with whichever database it has, dpkg first.
pub fn read_installed(fs: &dyn ImageView, family: Family) -> Result<PackageDb> {
    if !family.uses_rpm() {
        if let Some(packages) = installed(fs)? {
            return Ok(PackageDb::Read(Installed {
                format: PackageFormat::Dpkg,
                source: DPKG_STATUS.to_string(),
                packages,
            }));
        }
        if family == Family::Debian || rpmdb::locate(fs)?.is_none() {
            return Ok(PackageDb::Missing(format!("{DPKG_STATUS} is missing")));
        }
    }
    read_rpm_installed(fs, family)
}

fn read_rpm_installed(fs: &dyn ImageView, family: Family) -> Result<PackageDb> {
    let Some((path, format)) = rpmdb::locate(fs)? else {
        return Ok(PackageDb::Unreadable(format!(
            "the image is of the {} family but has no rpm package database in {}",
            family.as_str(),
            rpmdb::searched_dirs()
        )));
    };
    let kind = match format {
        rpmdb::DbFormat::Sqlite => None,
        rpmdb::DbFormat::BerkeleyDb => Some("Berkeley DB"),
        rpmdb::DbFormat::Ndb => Some("ndb"),
    };
    // TODO: read Berkeley DB (RHEL 8 and older) and ndb (SUSE) databases.
    if let Some(kind) = kind {
        return Ok(PackageDb::Unreadable(format!(
            "{path} is an rpm database in {kind} format, which forge cannot read yet; \
             only rpmdb.sqlite (rpm 4.16 and later) is supported"
        )));
    }
    let packages = match rpmdb::read_sqlite(fs, &path) {
        Ok(packages) => packages,
        Err(e) => {
            return Ok(PackageDb::Unreadable(format!(
                "the rpm database {path} could not be read: {e:#}"
            )))
        }
    };
    Ok(PackageDb::Read(Installed {
        format: PackageFormat::Rpm,
        source: path,
        packages: packages
            .into_iter()
            .map(|p| Package {
                version: p.evr(),
                name: p.name,
                arch: p.arch,
                ..Package::default()
            })
            .collect(),
    }))
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
            "Source" => {
                // `Source: openssl (3.0.11-1)` names a source version
                // that differs from the binary package's.
                let name = value.split_whitespace().next().unwrap_or_default();
                current.source = name.to_string();
            }
            "Maintainer" => current.maintainer = value,
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
    let family = family::detect(fs, s.os)?;
    let installed = match read_installed(fs, family)? {
        PackageDb::Read(installed) if installed.format == PackageFormat::Rpm => {
            // TODO: compare with the repository metadata that dnf or zypper
            // caches (updateinfo.xml and primary.xml of each repository).
            return Ok(Outcome::not_run(format!(
                "{} packages read from {}, but comparing rpm packages with the \
                 distribution's updates is not supported yet",
                installed.packages.len(),
                installed.source
            )));
        }
        PackageDb::Read(installed) => installed.packages,
        PackageDb::Missing(why) => {
            return Ok(Outcome::not_run(format!(
                "{why}, so installed versions are unknown"
            )))
        }
        PackageDb::Unreadable(why) => return Ok(Outcome::not_run(why)),
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

/// Tells whether a package name is one of the names of a required package.
type NameMatcher = fn(&str) -> bool;

/// Returns whether a package is the OpenSSL command-line tool: `openssl`,
/// or SUSE's `openssl-3` and `openssl-1_1`, which carry the library's
/// version in their name.
fn is_openssl(name: &str) -> bool {
    name == "openssl"
        || name.strip_prefix("openssl-").is_some_and(|soversion| {
            !soversion.is_empty() && soversion.chars().all(|c| c.is_ascii_digit() || c == '_')
        })
}

/// Returns whether a package is a Python 3 interpreter: `python3`, a
/// versioned one such as RHEL's `python3.11` or SUSE's `python311`, or
/// SUSE's `python3-base`.
fn is_python3(name: &str) -> bool {
    let name = name.strip_suffix("-base").unwrap_or(name);
    name.strip_prefix("python3").is_some_and(|minor| {
        let minor = minor.strip_prefix('.').unwrap_or(minor);
        minor.chars().all(|c| c.is_ascii_digit())
    })
}

/// Returns whether a package is pyasn1 for a Python 3 interpreter.
fn is_pyasn1(name: &str) -> bool {
    name.strip_suffix("-pyasn1")
        .is_some_and(|python| !python.ends_with("-base") && is_python3(python))
}

/// Checks `required-packages`: OpenSSL 1.0 or later, Python 3 and pyasn1.
pub fn required_packages(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let installed = match read_installed(fs, family::detect(fs, s.os)?)? {
        PackageDb::Read(installed) => installed,
        PackageDb::Missing(why) => {
            return Ok(Outcome::fail(format!(
                "{why}, so no package is known to be installed"
            )))
        }
        PackageDb::Unreadable(why) => return Ok(Outcome::not_run(why)),
    };
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    match installed.find(is_openssl) {
        Some(p) if installed.compare_upstream(p.upstream_version(), "1.0") == Ordering::Less => {
            problems.push(format!("{} {} is older than 1.0", p.name, p.version))
        }
        Some(p) => seen.push(format!("{} {}", p.name, p.version)),
        None => problems.push("openssl is not installed".to_string()),
    }
    let others: [(&str, NameMatcher); 2] = [("python3", is_python3), ("python3-pyasn1", is_pyasn1)];
    for (name, matches) in others {
        match installed.find(matches) {
            Some(p) => seen.push(format!("{} {}", p.name, p.version)),
            None => problems.push(format!("{name} is not installed")),
        }
    }
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "{}: installed {}",
            installed.source,
            seen.join(", ")
        )))
    } else {
        Ok(Outcome::fail(format!(
            "{}: {}",
            installed.source,
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
    fn source_and_maintainer_fields() {
        let status = "Package: libssl3\nSource: openssl (3.0.11-1)\n\
            Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>\n\n\
            Package: bash\nMaintainer: Matthias Klose <doko@debian.org>\n";
        let packages = parse_paragraphs(status);
        assert_eq!(packages[0].source, "openssl");
        assert_eq!(packages[0].source_name(), "openssl");
        assert_eq!(
            packages[0].maintainer,
            "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>"
        );
        assert_eq!(packages[1].source, "");
        assert_eq!(packages[1].source_name(), "bash");
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
    fn upstream_version_strips_epoch_and_release() {
        let package = |version: &str| Package {
            version: version.into(),
            ..Package::default()
        };
        assert_eq!(package("1:3.0.11-1~deb12u2").upstream_version(), "3.0.11");
        assert_eq!(package("1:3.0.7-27.el9").upstream_version(), "3.0.7");
        assert_eq!(package("1.21.22").upstream_version(), "1.21.22");
        assert_eq!(
            package("2.2.40-1ubuntu1-2").upstream_version(),
            "2.2.40-1ubuntu1"
        );
    }

    #[test]
    fn package_names_per_family() {
        for name in ["openssl", "openssl-3", "openssl-1_1"] {
            assert!(is_openssl(name), "{name}");
        }
        for name in ["openssl-libs", "openssl-devel", "openssl-"] {
            assert!(!is_openssl(name), "{name}");
        }
        for name in [
            "python3",
            "python3.11",
            "python311",
            "python3-base",
            "python311-base",
        ] {
            assert!(is_python3(name), "{name}");
        }
        for name in ["python3-libs", "python2", "python3-pyasn1"] {
            assert!(!is_python3(name), "{name}");
        }
        for name in ["python3-pyasn1", "python3.11-pyasn1", "python311-pyasn1"] {
            assert!(is_pyasn1(name), "{name}");
        }
        for name in [
            "python2-pyasn1",
            "python3-pyasn1-modules",
            "python3-base-pyasn1",
        ] {
            assert!(!is_pyasn1(name), "{name}");
        }
    }

    #[test]
    fn arch_all_matches_any() {
        assert!(arch_matches("amd64", "all"));
        assert!(arch_matches("all", "amd64"));
        assert!(!arch_matches("amd64", "arm64"));
    }
}
