//! Installed packages of rpm distributions, read from rpm's package
//! database without the rpm tool, and rpm's version comparison.
//!
//! rpm 4.16 and later (RHEL 9, Fedora 33 and later) can keep the database
//! in SQLite: `rpmdb.sqlite`, whose `Packages` table contains one header blob
//! per installed package. Older releases keep it in Berkeley DB
//! (`Packages`), and SUSE's rpm can use its own ndb format (`Packages.db`).

use std::cmp::Ordering;

use anyhow::{bail, ensure, Context, Result};

use super::paths;
use crate::check::ImageView;

/// Folders of the package database: the traditional one first, then the
/// one newer Fedora and SUSE releases use (often with `/var/lib/rpm` as a
/// link to it).
const DB_DIRS: &[&str] = &["/var/lib/rpm", "/usr/lib/sysimage/rpm"];
const SQLITE_FILE: &str = "rpmdb.sqlite";
const BERKELEY_FILE: &str = "Packages";
const NDB_FILE: &str = "Packages.db";

/// Header tags, as rpm's `rpmtag.h` numbers them.
const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
/// Header data types used by those tags.
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
/// rpm rejects headers with more index entries or data than this.
const MAX_INDEX_ENTRIES: usize = 0xffff;
const MAX_DATA_LEN: usize = 256 << 20;

/// One installed package, from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmPackage {
    pub name: String,
    pub epoch: Option<u32>,
    pub version: String,
    pub release: String,
    /// Empty for pseudo-packages such as `gpg-pubkey`, which have none.
    pub arch: String,
}

impl RpmPackage {
    /// Returns `[epoch:]version-release`, as `rpm -q` shows it.
    pub fn evr(&self) -> String {
        match self.epoch {
            Some(epoch) => format!("{epoch}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }
}

/// Storage format of a package database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFormat {
    Sqlite,
    BerkeleyDb,
    Ndb,
}

/// Finds the package database of the tree: its path and format, or `None`
/// when neither database folder contains one.
///
/// NOTE: when a folder contains several formats (a leftover after a database
/// conversion), SQLite is taken first, without reading `%_db_backend`.
pub fn locate(fs: &dyn ImageView) -> Result<Option<(String, DbFormat)>> {
    let formats = [
        (SQLITE_FILE, DbFormat::Sqlite),
        (NDB_FILE, DbFormat::Ndb),
        (BERKELEY_FILE, DbFormat::BerkeleyDb),
    ];
    for dir in DB_DIRS {
        for (file, format) in formats {
            let path = format!("{dir}/{file}");
            if let Some(real) = paths::resolve(fs, &path)? {
                if fs.read_link(&real)?.is_none() && fs.lstat(&real)?.is_some() {
                    return Ok(Some((real, format)));
                }
            }
        }
    }
    Ok(None)
}

/// Returns the folders searched for a package database, for messages.
pub fn searched_dirs() -> String {
    DB_DIRS.join(" and ")
}

/// Reads every package of an `rpmdb.sqlite` in the image.
///
/// The database and its write-ahead log, when there is one, are copied to
/// a temporary folder first: opening the file in place could write to
/// the image, and transactions still in the log would be missed without
/// it.
pub fn read_sqlite(fs: &dyn ImageView, path: &str) -> Result<Vec<RpmPackage>> {
    let scratch = tempfile::tempdir().context("failed to create a temporary folder")?;
    let copy = scratch.path().join(SQLITE_FILE);
    let bytes = fs
        .read(path)?
        .with_context(|| format!("{path} is not a regular file"))?;
    std::fs::write(&copy, bytes)?;
    let wal = format!("{path}-wal");
    if let Some(log) = fs.read(&wal)? {
        std::fs::write(scratch.path().join(format!("{SQLITE_FILE}-wal")), log)?;
    }
    let db = rusqlite::Connection::open(&copy)
        .with_context(|| format!("failed to open {path} as SQLite"))?;
    let mut query = db
        .prepare("SELECT hnum, blob FROM Packages ORDER BY hnum")
        .with_context(|| format!("{path} has no readable Packages table"))?;
    let rows = query.query_map([], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    let mut packages = Vec::new();
    for row in rows {
        let (number, blob) = row.with_context(|| format!("failed to read {path}"))?;
        let package = parse_header(&blob)
            .with_context(|| format!("{path}: header of package number {number} is invalid"))?;
        packages.push(package);
    }
    Ok(packages)
}

fn be_u32(bytes: &[u8], at: usize) -> Result<u32> {
    let word = bytes
        .get(at..at + 4)
        .with_context(|| format!("offset {at} is past the end of the header"))?;
    Ok(u32::from_be_bytes(word.try_into().expect("4 bytes")))
}

/// Parses the header blob of one package: a count of index entries and
/// the data length (big-endian u32 each), then 16-byte index entries of
/// tag, type, offset and count, then the data that the offsets point into.
pub fn parse_header(blob: &[u8]) -> Result<RpmPackage> {
    let entries = be_u32(blob, 0)? as usize;
    let data_len = be_u32(blob, 4)? as usize;
    ensure!(
        entries <= MAX_INDEX_ENTRIES && data_len <= MAX_DATA_LEN,
        "{entries} index entries and {data_len} data bytes exceed rpm's limits"
    );
    let data_start = 8 + entries * 16;
    ensure!(
        data_start + data_len <= blob.len(),
        "the header declares {} bytes but the blob has {}",
        data_start + data_len,
        blob.len()
    );
    let data = &blob[data_start..data_start + data_len];

    let mut name = None;
    let mut version = None;
    let mut release = None;
    let mut epoch = None;
    let mut arch = None;
    for index in 0..entries {
        let at = 8 + index * 16;
        let tag = be_u32(blob, at)?;
        let kind = be_u32(blob, at + 4)?;
        let offset = be_u32(blob, at + 8)? as usize;
        match tag {
            TAG_NAME => name = Some(string_at(data, kind, offset, tag)?),
            TAG_VERSION => version = Some(string_at(data, kind, offset, tag)?),
            TAG_RELEASE => release = Some(string_at(data, kind, offset, tag)?),
            TAG_ARCH => arch = Some(string_at(data, kind, offset, tag)?),
            TAG_EPOCH => {
                ensure!(
                    kind == TYPE_INT32,
                    "tag {tag} has type {kind}; expected INT32"
                );
                epoch = Some(be_u32(data, offset)?);
            }
            _ => {}
        }
    }

    let (Some(name), Some(version), Some(release)) = (name, version, release) else {
        bail!("the header lacks the name, version or release tag");
    };
    Ok(RpmPackage {
        name,
        epoch,
        version,
        release,
        arch: arch.unwrap_or_default(),
    })
}

/// Reads the NUL-terminated string of a STRING entry.
fn string_at(data: &[u8], kind: u32, offset: usize, tag: u32) -> Result<String> {
    ensure!(
        kind == TYPE_STRING,
        "tag {tag} has type {kind}; expected STRING"
    );
    let rest = data
        .get(offset..)
        .with_context(|| format!("tag {tag} points past the end of the data"))?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .with_context(|| format!("the string of tag {tag} has no terminating NUL"))?;
    Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
}

/// Compares two version or release strings as rpm does (`rpmvercmp`).
///
/// Both strings are cut into runs of digits and runs of letters; other
/// characters only separate runs. Runs compare pairwise: numbers by value,
/// letters by byte order, and a number is newer than letters. `~` sorts
/// before anything, even the end of the string (`1.0~rc1` < `1.0`), and
/// `^` sorts after the end but before anything else (`1.0` < `1.0^git1` <
/// `1.0.1`). When all pairs are equal, the string with runs left is newer.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (mut left, mut right) = (a.as_bytes(), b.as_bytes());
    let is_separator = |c: &u8| !c.is_ascii_alphanumeric() && *c != b'~' && *c != b'^';
    loop {
        while left.first().is_some_and(is_separator) {
            left = &left[1..];
        }
        while right.first().is_some_and(is_separator) {
            right = &right[1..];
        }
        if left.first() == Some(&b'~') || right.first() == Some(&b'~') {
            if left.first() != Some(&b'~') {
                return Ordering::Greater;
            }
            if right.first() != Some(&b'~') {
                return Ordering::Less;
            }
            left = &left[1..];
            right = &right[1..];
            continue;
        }
        if left.first() == Some(&b'^') || right.first() == Some(&b'^') {
            if left.is_empty() {
                return Ordering::Less;
            }
            if right.is_empty() {
                return Ordering::Greater;
            }
            if left.first() != Some(&b'^') {
                return Ordering::Greater;
            }
            if right.first() != Some(&b'^') {
                return Ordering::Less;
            }
            left = &left[1..];
            right = &right[1..];
            continue;
        }
        if left.is_empty() || right.is_empty() {
            break;
        }
        let numeric = left[0].is_ascii_digit();
        let run = |s: &[u8]| {
            s.iter()
                .take_while(|c| {
                    if numeric {
                        c.is_ascii_digit()
                    } else {
                        c.is_ascii_alphabetic()
                    }
                })
                .count()
        };
        let (left_len, right_len) = (run(left), run(right));
        if right_len == 0 {
            // Runs of different kinds: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (run_one, run_two) = (&left[..left_len], &right[..right_len]);
        let order = if numeric {
            let trim = |s: &[u8]| {
                let zeros = s.iter().take_while(|&&c| c == b'0').count();
                s[zeros..].to_vec()
            };
            let (x, y) = (trim(run_one), trim(run_two));
            x.len().cmp(&y.len()).then_with(|| x.cmp(&y))
        } else {
            run_one.cmp(run_two)
        };
        if order != Ordering::Equal {
            return order;
        }
        left = &left[left_len..];
        right = &right[right_len..];
    }
    match (left.is_empty(), right.is_empty()) {
        (true, true) => Ordering::Equal,
        (false, _) => Ordering::Greater,
        (true, false) => Ordering::Less,
    }
}

/// Folder of the package databases that scripts/make-rpmdb-fixtures.sh
/// made with Debian's rpm 4.18.
#[cfg(test)]
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rpmdb");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::DirView;

    fn fixture_tree(name: &str, dir: &str) -> tempfile::TempDir {
        let tree = tempfile::tempdir().unwrap();
        let target = tree.path().join(dir.trim_start_matches('/'));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::copy(format!("{FIXTURES}/{name}"), target.join(SQLITE_FILE)).unwrap();
        tree
    }

    #[test]
    fn sqlite_database_read() {
        let tree = fixture_tree("rhel9.sqlite", "/var/lib/rpm");
        let fs = DirView::new(tree.path());
        let (path, format) = locate(&fs).unwrap().unwrap();
        assert_eq!(path, "/var/lib/rpm/rpmdb.sqlite");
        assert_eq!(format, DbFormat::Sqlite);
        let packages = read_sqlite(&fs, &path).unwrap();
        assert_eq!(packages.len(), 8);
        let openssl = packages.iter().find(|p| p.name == "openssl").unwrap();
        assert_eq!(openssl.epoch, Some(1));
        assert_eq!(openssl.version, "3.0.7");
        assert_eq!(openssl.release, "27.el9");
        assert_eq!(openssl.arch, "x86_64");
        assert_eq!(openssl.evr(), "1:3.0.7-27.el9");
        let agent = packages.iter().find(|p| p.name == "WALinuxAgent").unwrap();
        assert_eq!(agent.epoch, None);
        assert_eq!(agent.arch, "noarch");
        let glibc: Vec<&str> = packages
            .iter()
            .filter(|p| p.name == "glibc")
            .map(|p| p.arch.as_str())
            .collect();
        assert_eq!(glibc.len(), 2);
        assert!(glibc.contains(&"i686"), "{glibc:?}");
    }

    #[test]
    fn sysimage_folder_through_link() {
        let tree = fixture_tree("sles15.sqlite", "/usr/lib/sysimage/rpm");
        std::fs::create_dir_all(tree.path().join("var/lib")).unwrap();
        std::os::unix::fs::symlink(
            "../../usr/lib/sysimage/rpm",
            tree.path().join("var/lib/rpm"),
        )
        .unwrap();
        let fs = DirView::new(tree.path());
        let (path, _) = locate(&fs).unwrap().unwrap();
        assert_eq!(path, "/usr/lib/sysimage/rpm/rpmdb.sqlite");
        let packages = read_sqlite(&fs, &path).unwrap();
        assert!(packages.iter().any(|p| p.name == "python3-azure-agent"));
    }

    #[test]
    fn other_formats_located() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("var/lib/rpm")).unwrap();
        std::fs::write(tree.path().join("var/lib/rpm/Packages"), b"x").unwrap();
        let fs = DirView::new(tree.path());
        assert_eq!(
            locate(&fs).unwrap(),
            Some(("/var/lib/rpm/Packages".to_string(), DbFormat::BerkeleyDb))
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(locate(&DirView::new(empty.path())).unwrap(), None);
    }

    #[test]
    fn not_sqlite_is_error() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("var/lib/rpm")).unwrap();
        std::fs::write(tree.path().join("var/lib/rpm/rpmdb.sqlite"), b"not a db").unwrap();
        let fs = DirView::new(tree.path());
        assert!(read_sqlite(&fs, "/var/lib/rpm/rpmdb.sqlite").is_err());
    }

    #[test]
    fn truncated_header_rejected() {
        let mut blob = Vec::new();
        blob.extend_from_slice(&1u32.to_be_bytes());
        blob.extend_from_slice(&100u32.to_be_bytes());
        blob.extend_from_slice(&[0; 16]);
        let error = parse_header(&blob).unwrap_err().to_string();
        assert!(error.contains("declares 124 bytes"), "{error}");
        assert!(parse_header(&[0, 0]).is_err());
    }

    #[test]
    fn version_order_like_rpm() {
        let cases = [
            ("1.0", "1.0", Ordering::Equal),
            ("1.0", "1.0.1", Ordering::Less),
            ("2.10", "2.9", Ordering::Greater),
            ("1.010", "1.10", Ordering::Equal),
            ("1.0a", "1.0", Ordering::Greater),
            ("1.0", "1.a", Ordering::Greater),
            ("8.7p1", "8.7", Ordering::Greater),
            ("1.0~rc1", "1.0", Ordering::Less),
            ("1.0~rc1", "1.0~rc2", Ordering::Less),
            ("1.0^git1", "1.0", Ordering::Greater),
            ("1.0^git1", "1.0.1", Ordering::Less),
            ("0.9.8e", "1.0", Ordering::Less),
            ("3.0.7", "1.0", Ordering::Greater),
            ("1_0", "1.0", Ordering::Equal),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
            assert_eq!(compare_versions(b, a), expected.reverse(), "{b} vs {a}");
        }
    }
}
