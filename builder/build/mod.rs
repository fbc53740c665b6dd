//! `forge build`: a flat list of named steps over one build context.

pub mod bootstrap;
pub mod chroot;
pub mod disk;
pub mod harden;
pub mod layers;
pub mod output;
pub mod tree;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::check::{self, Status, Verdict};
use crate::exec;
use crate::recipe::Recipe;

/// Options of one build that do not come from the recipe.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub output_dir: PathBuf,
    /// Folder for downloaded packages, kept between builds.
    pub cache_dir: PathBuf,
    pub clamav_db: Option<PathBuf>,
}

/// State shared by the build steps.
pub struct Context {
    pub recipe: Recipe,
    /// The image's root tree on the host, inside `_work`.
    pub tree: PathBuf,
    pub cache_dir: PathBuf,
    _work: tempfile::TempDir,
}

/// Paths of a finished build.
#[derive(Debug)]
pub struct Artifacts {
    pub vhd: PathBuf,
    pub json_report: PathBuf,
    pub text_report: PathBuf,
    /// The SPDX 2.3 JSON software bill of materials.
    pub sbom: PathBuf,
    pub sha256: String,
    pub verdict: Verdict,
}

/// Prints each step with its number and wall time on stderr.
struct Progress {
    total: usize,
    done: usize,
    started: Instant,
}

impl Progress {
    fn step<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        exec::check_interrupted()?;
        self.done += 1;
        eprintln!("[{}/{}] {name} ...", self.done, self.total);
        let t = Instant::now();
        let r = f();
        let secs = t.elapsed().as_secs_f64();
        match &r {
            Ok(_) => eprintln!("[{}/{}] {name}: done in {secs:.1} s", self.done, self.total),
            Err(_) => eprintln!(
                "[{}/{}] {name}: failed after {secs:.1} s",
                self.done, self.total
            ),
        }
        r
    }
}

/// Builds the recipe at `recipe_path` into a checked, fixed VHD.
pub fn build(recipe_path: &Path, opts: &BuildOptions) -> Result<Artifacts> {
    let recipe = Recipe::load(recipe_path)?;
    preflight()?;
    std::fs::create_dir_all(&opts.output_dir).with_context(|| {
        format!(
            "failed to create output folder {}",
            opts.output_dir.display()
        )
    })?;
    let work = tempfile::Builder::new()
        .prefix("forge-build-")
        .tempdir()
        .context("failed to create a temporary work folder")?;
    let tree = work.path().join("root");
    std::fs::create_dir(&tree)?;
    let ctx = Context {
        recipe,
        tree,
        cache_dir: opts.cache_dir.clone(),
        _work: work,
    };
    let mut outputs = output::Pending::new(&opts.output_dir, &ctx.recipe.artifact_stem());
    let mut progress = Progress {
        total: 7,
        done: 0,
        started: Instant::now(),
    };

    progress.step("bootstrap Debian", || bootstrap::run(&ctx))?;
    progress.step("apply layers", || layers::run(&ctx))?;
    progress.step("harden", || harden::run(&ctx))?;
    let ids = disk::DiskIds::derive(&ctx.recipe.artifact_stem());
    let image = outputs.vhd_partial();
    let inventory = progress.step("assemble disk", || {
        disk::prepare_tree(&ctx, &ids)?;
        // The SBOM lists the packages of the final tree, read while the
        // tree is still there.
        let inventory = crate::sbom::collect(&check::DirView::new(&ctx.tree))
            .context("failed to read the installed packages for the SBOM")?;
        disk::assemble(&ctx, &ids, &image)?;
        Ok(inventory)
    })?;
    progress.step("write VHD footer", || output::append_footer(&image, &ids))?;
    let policy = check::Policy {
        declared_units: ctx.recipe.declared_units(),
        waivers: ctx.recipe.waivers.clone(),
        clamav_db: opts.clamav_db.clone(),
        from_image: false,
    };
    // The image's bytes are final now, so hashing (about 20 s for 30 GiB)
    // runs on the second core while the appliance checks the disk.
    let hashing = {
        let image = image.clone();
        std::thread::spawn(move || output::sha256_sparse(&image))
    };
    let report = progress.step("check the finished disk", || {
        check::check_image(&image, &policy, check::Hashing::Skip)
    })?;
    if report.verdict == Verdict::NonCompliant {
        print_failures(&report);
        bail!(
            "the image fails {} rule(s); no VHD was written",
            report
                .rules
                .iter()
                .filter(|f| f.status == Status::Fail)
                .count()
        );
    }
    for f in report.rules.iter().filter(|f| f.status == Status::NotRun) {
        tracing::warn!("rule {} was not run: {}", f.id, f.evidence);
    }
    let artifacts = progress.step("write outputs", || {
        let sha256 = hashing
            .join()
            .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))??;
        let sbom = crate::sbom::Sbom {
            name: ctx.recipe.name.clone(),
            version: Some(ctx.recipe.version.clone()),
            inventory,
        };
        let artifacts = outputs.finish(report, sha256, &sbom)?;
        // A later `forge check` of the VHD then skips hashing it again.
        crate::hashcache::HashCache::new(&opts.cache_dir).put(&artifacts.vhd, &artifacts.sha256);
        Ok(artifacts)
    })?;
    if artifacts.verdict == Verdict::Incomplete {
        eprintln!(
            "warning: the image is incomplete, not compliant: some rules could not run (see above)"
        );
    }
    eprintln!(
        "build finished in {:.1} s",
        progress.started.elapsed().as_secs_f64()
    );
    Ok(artifacts)
}

fn print_failures(report: &check::report::Report) {
    for f in report.rules.iter().filter(|f| f.status == Status::Fail) {
        eprintln!("fail  {}: {}", f.id, f.evidence);
    }
}

/// Checks the host tools the build runs, so a missing one fails in the
/// first second with the package to install rather than after a bootstrap.
fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("forge build must run as root (it bootstraps and chroots into the image tree)");
    }
    let tools = [
        ("mmdebstrap", "mmdebstrap"),
        ("unshare", "util-linux"),
        ("sgdisk", "gdisk"),
        ("mkfs.fat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mkfs.ext4", "e2fsprogs"),
        ("tar", "tar"),
    ];
    let missing: Vec<String> = tools
        .iter()
        .filter(|(t, _)| {
            !exec::have(t)
                && !exec::have(&format!("/usr/sbin/{t}"))
                && !exec::have(&format!("/sbin/{t}"))
        })
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools: {}; run scripts/install-deps.sh as root",
            missing.join(", ")
        );
    }
    Ok(())
}
