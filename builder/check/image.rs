//! Runs the check pass on an image file.

use std::path::Path;

use anyhow::Result;

use super::report::Report;
use super::{run_rules, ImageView, Policy, Subject};
use crate::direct::{DirectImage, Opened};
use crate::guestfs::GuestImage;
use crate::hashcache::HashCache;

/// Choice of whether [`check_image`] computes the image's sha256 for the
/// report.
pub enum Hashing {
    /// Leave the report's `sha256` empty, for callers that hash the file
    /// themselves (hashing 30 GiB takes about 20 s).
    Skip,
    /// Hash the file, or take the checksum from the cache when the file is
    /// unchanged since it was last hashed.
    Compute(Option<HashCache>),
}

/// Opens `image` read-only, inspects it and runs every rule.
pub fn check_image(image: &Path, policy: &Policy, hash: Hashing) -> Result<Report> {
    // Hashing reads the file on a second core while the rules run.
    let hashing = match hash {
        Hashing::Skip => None,
        Hashing::Compute(cache) => {
            let image = image.to_path_buf();
            Some(std::thread::spawn(move || {
                crate::hashcache::sha256_of(&image, cache.as_ref())
            }))
        }
    };
    // Whichever reader opens the image must outlive the borrows below.
    let direct;
    let guest;
    let (disk, fs, found_os) = match open_direct(image)? {
        Some(opened) => {
            direct = opened;
            (direct.disk(), direct.view(), direct.os())
        }
        None => {
            guest = GuestImage::open(image)?;
            if guest.disk().partitions.is_empty() && guest.os().is_none() {
                anyhow::bail!(
                    "{} has no partition table and no operating system; is it a disk image?",
                    image.display()
                );
            }
            (guest.disk(), guest.view(), guest.os())
        }
    };
    let os = found_os.cloned().unwrap_or_default();
    let policy = effective_policy(policy, fs)?;
    let findings = run_rules(&Subject {
        disk,
        fs,
        os: &os,
        policy: &policy,
    });
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

/// Returns `policy`, plus the policy recorded in the image when
/// `policy.from_image` is set.
fn effective_policy(policy: &Policy, fs: Option<&dyn ImageView>) -> Result<Policy> {
    let mut effective = policy.clone();
    if let (true, Some(fs)) = (policy.from_image, fs) {
        if super::policy::apply_image_policy(&mut effective, fs)? {
            tracing::info!(
                "applying the declared services and waivers recorded in the image at {}",
                super::policy::IMAGE_POLICY_PATH
            );
        }
    }
    Ok(effective)
}

/// An image opened with the direct reader, or with libguestfs when the
/// direct reader declines it.
pub enum OpenImage {
    Direct(Box<DirectImage>),
    Guest(Box<GuestImage>),
}

impl OpenImage {
    /// Opens `image` with the direct reader, or starts one libguestfs
    /// appliance for it when its layout needs one.
    pub fn open(image: &Path) -> Result<Self> {
        match Self::open_direct(image)? {
            Some(direct) => Ok(direct),
            None => Self::open_guest(image),
        }
    }

    /// Opens `image` with the direct reader; `None` when libguestfs must
    /// read it.
    pub fn open_direct(image: &Path) -> Result<Option<Self>> {
        Ok(open_direct(image)?.map(Self::Direct))
    }

    /// Opens `image` in a libguestfs appliance.
    pub fn open_guest(image: &Path) -> Result<Self> {
        Ok(Self::Guest(Box::new(GuestImage::open(image)?)))
    }

    pub fn disk(&self) -> &super::DiskFacts {
        match self {
            Self::Direct(image) => image.disk(),
            Self::Guest(image) => image.disk(),
        }
    }

    /// Returns the file tree view, or `None` when no OS was found.
    pub fn view(&self) -> Option<&dyn ImageView> {
        match self {
            Self::Direct(image) => image.view(),
            Self::Guest(image) => image.view(),
        }
    }

    /// Names the reader: `direct` or `libguestfs`.
    pub fn reader(&self) -> &'static str {
        match self {
            Self::Direct(_) => "direct",
            Self::Guest(_) => "libguestfs",
        }
    }
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
