//! Runs the check pass on an image file.

use std::path::Path;

use anyhow::Result;

use super::report::Report;
use super::{run_rules, Policy, Subject};
use crate::direct::{DirectImage, Opened};
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
    let findings;
    let os;
    match open_direct(image)? {
        Some(direct) => {
            os = direct.os().clone();
            let subject = Subject {
                disk: direct.disk(),
                fs: Some(&*direct as &dyn crate::check::ImageView),
                os: &os,
                policy,
            };
            findings = run_rules(&subject);
        }
        None => {
            let guest = GuestImage::open(image)?;
            if guest.disk().partitions.is_empty() && guest.os().is_none() {
                anyhow::bail!(
                    "{} has no partition table and no operating system; is it a disk image?",
                    image.display()
                );
            }
            os = guest.os().cloned().unwrap_or_default();
            let subject = Subject {
                disk: guest.disk(),
                fs: guest.view(),
                os: &os,
                policy,
            };
            findings = run_rules(&subject);
        }
    }
    let sha256 = match hashing {
        Some(handle) => handle
            .join()
            .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))??,
        None => String::new(),
    };
    Ok(Report::new(
        image.display().to_string(),
        sha256,
        os,
        findings,
    ))
}

/// Environment variable that picks the reader: `libguestfs` forces the
/// appliance even where the direct reader would do, for comparing the two.
pub const READER_ENV: &str = "FORGE_CHECK_READER";

/// Opens `image` with the direct reader when its layout allows; `None`
/// means libguestfs must read it.
fn open_direct(image: &Path) -> Result<Option<Box<DirectImage>>> {
    if std::env::var(READER_ENV).is_ok_and(|v| v == "libguestfs") {
        tracing::debug!("{READER_ENV}=libguestfs: reading the image through libguestfs");
        return Ok(None);
    }
    match DirectImage::open(image)? {
        Opened::Image(direct) => {
            tracing::debug!("reading the image directly, without an appliance");
            Ok(Some(direct))
        }
        Opened::Declined(reason) => {
            tracing::debug!("reading the image through libguestfs: {reason}");
            Ok(None)
        }
    }
}
