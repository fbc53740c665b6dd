//! Windows Server rules. Only the OS family is checked so far: they are
//! `not-applicable` on other images and `not-run` on Windows.

use anyhow::Result;

use crate::check::{Outcome, Subject};

/// Checks a Windows rule whose offline check is not implemented yet.
pub fn pending(s: &Subject) -> Result<Outcome> {
    if s.os.family != "windows" {
        let family = if s.os.family.is_empty() {
            "unknown"
        } else {
            s.os.family.as_str()
        };
        return Ok(Outcome::not_applicable(format!(
            "the image OS family is {family}, not windows"
        )));
    }
    // TODO: read the SOFTWARE and SYSTEM hives offline to check each rule.
    Ok(Outcome::not_run("Windows checks are not implemented yet"))
}
