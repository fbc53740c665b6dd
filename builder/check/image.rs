//! Runs the check pass on an image file.

use std::path::Path;

use anyhow::Result;

use super::report::Report;
use super::{run_rules, OsInfo, Policy, Subject};
use crate::guestfs::GuestImage;

/// Opens `image` read-only, inspects it and runs every rule.
///
/// With `hash` false the report's `sha256` stays empty, for callers that
/// hash the file themselves later (hashing 30 GiB takes about 20 s).
pub fn check_image(image: &Path, policy: &Policy, hash: bool) -> Result<Report> {
    let guest = GuestImage::open(image)?;
    let no_os = OsInfo::default();
    let os = guest.os().unwrap_or(&no_os);
    let subject = Subject {
        disk: guest.disk(),
        fs: guest.view(),
        os,
        policy,
    };
    let findings = run_rules(&subject);
    let sha256 = if hash {
        crate::build::output::sha256_sparse(image)?
    } else {
        String::new()
    };
    Ok(Report::new(
        image.display().to_string(),
        sha256,
        os.clone(),
        findings,
    ))
}
