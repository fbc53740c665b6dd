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
    // Hashing reads the file on the host while the appliance works on its
    // own copy-on-write view, so the two run side by side.
    let hashing = hash.then(|| {
        let image = image.to_path_buf();
        std::thread::spawn(move || crate::build::output::sha256_sparse(&image))
    });
    let guest = GuestImage::open(image)?;
    if guest.disk().partitions.is_empty() && guest.os().is_none() {
        anyhow::bail!(
            "{} has no partition table and no operating system; is it a disk image?",
            image.display()
        );
    }
    let no_os = OsInfo::default();
    let os = guest.os().unwrap_or(&no_os);
    let subject = Subject {
        disk: guest.disk(),
        fs: guest.view(),
        os,
        policy,
    };
    let findings = run_rules(&subject);
    let sha256 = match hashing {
        Some(handle) => handle
            .join()
            .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))??,
        None => String::new(),
    };
    Ok(Report::new(
        image.display().to_string(),
        sha256,
        os.clone(),
        findings,
    ))
}
