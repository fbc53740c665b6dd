//! Identity of the package indexes a build installs from: the signed
//! `InRelease` file of each suite, its `Date` and its sha256.
//!
//! The newest index date becomes the build's `SOURCE_DATE_EPOCH` unless one
//! is given, so two builds against the same mirror state stamp the same
//! times into the image. The files come from
//! [`super::bootstrap::fetch_index_releases`] before the bootstrap and from
//! the tree's apt lists after it.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One suite's release file, as the lock file records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRelease {
    /// Suite name (`bookworm-security`).
    pub suite: String,
    /// The `Date` field, as written in the file.
    pub date: String,
    /// The `Date` field in seconds since the Unix epoch.
    pub date_epoch: u64,
    /// sha256 of the whole `InRelease` file.
    pub sha256: String,
}

/// Reads the `Date` of a release file in seconds since the Unix epoch.
pub fn release_date(bytes: &[u8]) -> Result<u64> {
    let text = String::from_utf8_lossy(bytes);
    let date = field(&text, "Date").context("the release file has no Date field")?;
    parse_date(&date)
}

/// Reads the identities of the `InRelease` files that apt left in an
/// image's `/var/lib/apt/lists` folder on the host.
pub fn releases_in_tree(lists: &Path) -> Result<Vec<IndexRelease>> {
    let mut out = Vec::new();
    let mut names: Vec<String> = fs::read_dir(lists)
        .with_context(|| format!("failed to list {}", lists.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("_InRelease"))
        .collect();
    names.sort();
    for name in names {
        let bytes = fs::read(lists.join(&name))?;
        let suite = field(&String::from_utf8_lossy(&bytes), "Suite")
            .or_else(|| field(&String::from_utf8_lossy(&bytes), "Codename"))
            .unwrap_or_else(|| name.clone());
        out.push(parse_release(&suite, &bytes).with_context(|| name.clone())?);
    }
    Ok(out)
}

fn parse_release(suite: &str, bytes: &[u8]) -> Result<IndexRelease> {
    let text = String::from_utf8_lossy(bytes);
    let Some(date) = field(&text, "Date") else {
        bail!("the release file has no Date field");
    };
    let date_epoch = parse_date(&date)?;
    Ok(IndexRelease {
        suite: suite.to_owned(),
        date,
        date_epoch,
        sha256: super::output::hex(&Sha256::digest(bytes)),
    })
}

fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        Some(value.trim().to_owned())
    })
}

/// Parses a release file date such as `Sat, 15 Nov 2025 09:09:40 UTC`.
pub fn parse_date(date: &str) -> Result<u64> {
    let parts: Vec<&str> = date.split_whitespace().collect();
    let [_, day, month, year, time, zone] = parts[..] else {
        bail!("unexpected date format {date:?}");
    };
    if !matches!(zone, "UTC" | "GMT" | "+0000") {
        bail!("unexpected time zone in date {date:?}");
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .iter()
        .position(|m| *m == month)
        .with_context(|| format!("unknown month in date {date:?}"))? as i64
        + 1;
    let day: i64 = day
        .parse()
        .with_context(|| format!("bad day in {date:?}"))?;
    let year: i64 = year
        .parse()
        .with_context(|| format!("bad year in {date:?}"))?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse::<i64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("bad time in {date:?}"))?;
    let [h, m, s] = hms[..] else {
        bail!("bad time in {date:?}");
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    u64::try_from(seconds).with_context(|| format!("date {date:?} is before 1970"))
}

/// Days from 1970-01-01 to a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_dates_parse_to_unix_seconds() {
        assert_eq!(parse_date("Thu, 01 Jan 1970 00:00:00 UTC").unwrap(), 0);
        assert_eq!(
            parse_date("Sat, 15 Nov 2025 09:09:40 UTC").unwrap(),
            1_763_197_780
        );
        assert_eq!(
            parse_date("Tue, 29 Feb 2000 12:00:00 UTC").unwrap(),
            951_825_600
        );
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn release_identity_reads_date_and_hash() {
        let text = b"-----BEGIN PGP SIGNED MESSAGE-----\nOrigin: Debian\nSuite: stable-security\nDate: Sat, 15 Nov 2025 09:09:40 UTC\n";
        let release = parse_release("bookworm-security", text).unwrap();
        assert_eq!(release.date_epoch, 1_763_197_780);
        assert_eq!(release.sha256.len(), 64);
    }
}
