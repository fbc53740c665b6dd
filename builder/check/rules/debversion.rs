//! Debian package version comparison, as dpkg orders versions.
//!
//! A version is `[epoch:]upstream[-revision]`, and the epoch compares as a
//! number. Upstream and revision compare in alternating runs. A run of
//! non-digits compares character by character, where `~` sorts before
//! everything (even the end of the run), then letters, then other
//! characters. A run of digits compares as a number. Source: the dpkg
//! manual page deb-version(7).

use std::cmp::Ordering;

/// Compares two Debian version strings as dpkg does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (epoch_a, upstream_a, revision_a) = split(a);
    let (epoch_b, upstream_b, revision_b) = split(b);
    epoch_a
        .cmp(&epoch_b)
        .then_with(|| compare_part(upstream_a, upstream_b))
        .then_with(|| compare_part(revision_a, revision_b))
}

/// Splits a version into epoch, upstream version and Debian revision.
///
/// A missing or unreadable epoch counts as 0 and a missing revision as
/// empty, which dpkg orders like "0".
fn split(version: &str) -> (u64, &str, &str) {
    let version = version.trim();
    let (epoch, rest) = match version.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// Weight of one byte in a non-digit run; `None` is the end of the run.
fn order(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        let (text_a, rest_a) = take_while(a, |c| !c.is_ascii_digit());
        let (text_b, rest_b) = take_while(b, |c| !c.is_ascii_digit());
        let ordering = compare_text(text_a, text_b);
        if ordering != Ordering::Equal {
            return ordering;
        }
        let (digits_a, rest_a) = take_while(rest_a, |c| c.is_ascii_digit());
        let (digits_b, rest_b) = take_while(rest_b, |c| c.is_ascii_digit());
        let ordering = compare_digits(digits_a, digits_b);
        if ordering != Ordering::Equal {
            return ordering;
        }
        a = rest_a;
        b = rest_b;
    }
    Ordering::Equal
}

fn take_while(s: &[u8], pred: impl Fn(&u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| pred(c)).count();
    s.split_at(n)
}

fn compare_text(a: &[u8], b: &[u8]) -> Ordering {
    let len = a.len().max(b.len());
    for i in 0..len {
        let ordering = order(a.get(i).copied()).cmp(&order(b.get(i).copied()));
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Compares digit runs as numbers of any length, so no overflow is possible.
fn compare_digits(a: &[u8], b: &[u8]) -> Ordering {
    let a = trim_zeros(a);
    let b = trim_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    fn check(a: &str, b: &str, expected: Ordering) {
        assert_eq!(compare(a, b), expected, "compare({a:?}, {b:?})");
        assert_eq!(compare(b, a), expected.reverse(), "compare({b:?}, {a:?})");
    }

    #[test]
    fn equal_versions() {
        check("1.0", "1.0", Equal);
        check("1.0-1", "1.0-1", Equal);
        check("0:1.0", "1.0", Equal);
        check("1.0", "1.0-0", Equal);
        check("1.01", "1.1", Equal);
        check("1.0-", "1.0", Equal);
    }

    #[test]
    fn numeric_runs_compare_as_numbers() {
        check("1.2", "1.10", Less);
        check("9", "10", Less);
        check("1.0.10", "1.0.9", Greater);
        check(
            "123456789012345678901234567890",
            "123456789012345678901234567889",
            Greater,
        );
    }

    #[test]
    fn epoch_dominates() {
        check("1:0.1", "2.0", Greater);
        check("1:1.0", "2:0.1", Less);
        check("10:1", "9:1", Greater);
    }

    #[test]
    fn tilde_sorts_before_everything() {
        check("1.0~rc1", "1.0", Less);
        check("1.0~rc1", "1.0~rc2", Less);
        check("1.0~~", "1.0~", Less);
        check("1.0~~a", "1.0~", Less);
        check("1.0~", "1.0", Less);
        check("2.0~beta1-1", "2.0-1", Less);
    }

    #[test]
    fn letters_before_other_characters() {
        check("1.0a", "1.0+", Less);
        check("1.0a", "1.0.", Less);
        check("1.0+b1", "1.0", Greater);
        check("1.0a", "1.0", Greater);
        check("1.0A", "1.0a", Less);
    }

    #[test]
    fn revision_compared_after_upstream() {
        check("1.0-1", "1.0-2", Less);
        check("1.0-10", "1.0-9", Greater);
        check("1.0-1+deb12u1", "1.0-1", Greater);
        check("1.0-1+deb12u1", "1.0-1+deb12u2", Less);
        check("1.0-1-2", "1.0-1-10", Less);
    }

    #[test]
    fn real_security_updates() {
        check("3.0.11-1~deb12u1", "3.0.11-1~deb12u2", Less);
        check("3.0.9-1", "3.0.11-1~deb12u2", Less);
        check("2.36-9+deb12u4", "2.36-9+deb12u7", Less);
        check("6.1.0-18", "6.1.0-9", Greater);
        check("1:9.2p1-2+deb12u2", "1:9.2p1-2+deb12u3", Less);
        check("2.9.4-1", "2.9.4-1+b1", Less);
    }

    #[test]
    fn hyphen_splits_at_last() {
        assert_eq!(split("1:2.0-rc-3"), (1, "2.0-rc", "3"));
        assert_eq!(split("2.0"), (0, "2.0", ""));
        assert_eq!(split("a:2.0"), (0, "a:2.0", ""));
    }
}
