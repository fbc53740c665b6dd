//! Reads what `forge diff` compares from one image or tree.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::FileState;
use crate::check::image::OpenImage;
use crate::check::rules::packages::{self, Package};
use crate::check::{DiskFacts, FileKind, ImageView};
use crate::vhd::Footer;

/// Everything `forge diff` compares of one image.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub disk: DiskFacts,
    /// Installed dpkg packages; `None` when the tree has no dpkg status.
    pub packages: Option<Vec<Package>>,
    /// Every path of the tree below `/`.
    pub files: BTreeMap<String, FileState>,
    /// `direct` or `libguestfs`; empty for a tree that is not an image.
    pub reader: &'static str,
}

impl Snapshot {
    /// Returns the VHD footer, when the image is a VHD.
    pub fn footer(&self) -> Option<Footer> {
        if self.disk.format != "vpc" {
            return None;
        }
        Footer::parse(&self.disk.tail).ok()
    }
}

/// One libguestfs appliance at a time: two TCG guests on a small machine
/// are each slower than running them in turn.
static APPLIANCE: Mutex<()> = Mutex::new(());

/// Opens `path` (direct reader, or libguestfs when it declines) and reads
/// its snapshot, hashing every regular file.
pub fn snapshot_image(path: &Path) -> Result<Snapshot> {
    let mut guard = None;
    let image = match OpenImage::open_direct(path)? {
        Some(image) => image,
        None => {
            guard = Some(APPLIANCE.lock().unwrap_or_else(|e| e.into_inner()));
            OpenImage::open_guest(path)?
        }
    };
    let mut snapshot = match image.view() {
        Some(view) => snapshot_view(view)
            .with_context(|| format!("failed to read the file tree of {}", path.display()))?,
        None => Snapshot::default(),
    };
    snapshot.disk = image.disk().clone();
    snapshot.reader = image.reader();
    // The appliance stops before the next one may start.
    drop(image);
    drop(guard);
    Ok(snapshot)
}

/// Reads the packages and files of a tree; the disk facts stay empty.
pub fn snapshot_view(view: &dyn ImageView) -> Result<Snapshot> {
    let started = std::time::Instant::now();
    let packages = packages::installed(view)?;
    let entries = view.walk()?;
    tracing::debug!(
        "walked {} paths in {:.2?}",
        entries.len(),
        started.elapsed()
    );
    let regular: Vec<String> = entries
        .iter()
        .filter(|e| e.meta.kind == FileKind::File)
        .map(|e| e.path.clone())
        .collect();
    let bytes: u64 = entries
        .iter()
        .filter(|e| e.meta.kind == FileKind::File)
        .map(|e| e.meta.size)
        .sum();

    let hashing = std::time::Instant::now();
    let mut sums: BTreeMap<String, String> = view.sha256_many(&regular)?.into_iter().collect();
    tracing::debug!(
        "hashed {} files ({} MiB) in {:.2?}",
        sums.len(),
        bytes >> 20,
        hashing.elapsed()
    );

    let mut files = BTreeMap::new();
    for entry in entries {
        crate::exec::check_interrupted()?;
        let meta = entry.meta;
        let target = match meta.kind {
            FileKind::Symlink => view.read_link(&entry.path)?,
            _ => None,
        };
        let sha256 = sums.remove(&entry.path);
        files.insert(
            entry.path,
            FileState {
                kind: meta.kind,
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                size: meta.size,
                target,
                sha256,
            },
        );
    }
    Ok(Snapshot {
        packages,
        files,
        ..Snapshot::default()
    })
}
