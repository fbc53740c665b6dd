//! The `accounts-locked` rule: every password is locked and only root has
//! UID 0.

use anyhow::Result;

use crate::check::{Outcome, Subject};

const SHADOW: &str = "/etc/shadow";
const PASSWD: &str = "/etc/passwd";
/// Password fields that lock an account without holding a hash.
const LOCK_MARKERS: &[&str] = &["*", "!", "!!", "*LOCK*", "!*"];

/// Returns why a shadow password field does not lock the account, or
/// `None` when it does.
pub fn password_problem(field: &str) -> Option<&'static str> {
    if LOCK_MARKERS.contains(&field) {
        return None;
    }
    if field.is_empty() {
        return Some("has an empty password");
    }
    let rest = field.trim_start_matches(['!', '*']);
    if field.starts_with('!') && rest.is_empty() {
        return None;
    }
    if field.starts_with('!') {
        Some("has a password hash behind a lock marker")
    } else {
        Some("has a password hash")
    }
}

/// Checks `accounts-locked` in `/etc/shadow` and `/etc/passwd`.
pub fn accounts_locked(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let Some(shadow) = fs.read_text(SHADOW)? else {
        return Ok(Outcome::fail(format!(
            "{SHADOW} is missing, so password locks cannot be verified"
        )));
    };
    let mut problems = Vec::new();
    let mut users = 0;
    for (index, line) in shadow.lines().enumerate() {
        let mut fields = line.split(':');
        let (Some(user), Some(password)) = (fields.next(), fields.next()) else {
            continue;
        };
        users += 1;
        if let Some(problem) = password_problem(password) {
            problems.push(format!("{SHADOW}:{}: user {user:?} {problem}", index + 1));
        }
    }
    let passwd = fs.read_text(PASSWD)?.unwrap_or_default();
    let mut root_seen = false;
    for (index, line) in passwd.lines().enumerate() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 3 || fields[2].trim() != "0" {
            continue;
        }
        if fields[0] == "root" && !root_seen {
            root_seen = true;
        } else {
            problems.push(format!(
                "{PASSWD}:{}: user {:?} has UID 0",
                index + 1,
                fields[0]
            ));
        }
    }
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "{SHADOW}: all {users} accounts locked; {PASSWD}: only root has UID 0"
        )))
    } else {
        Ok(Outcome::fail(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_markers_accepted() {
        for field in ["*", "!", "!!", "*LOCK*", "!*", "!!!"] {
            assert_eq!(password_problem(field), None, "field {field:?}");
        }
    }

    #[test]
    fn empty_and_hashes_rejected() {
        assert_eq!(password_problem(""), Some("has an empty password"));
        assert_eq!(
            password_problem("$6$salt$hash"),
            Some("has a password hash")
        );
        assert_eq!(
            password_problem("!$6$salt$hash"),
            Some("has a password hash behind a lock marker")
        );
        assert_eq!(password_problem("plaintext"), Some("has a password hash"));
    }
}
