//! `forge build`: a flat list of named steps over one build context.

pub mod bootstrap;
pub mod chroot;
pub mod disk;
pub mod harden;
pub mod import;
pub mod layers;
pub mod mirror;
pub mod output;
pub mod packages;
pub mod reproducible;
pub mod rhel;
pub mod stage_cache;
pub mod stage_key;
pub mod stages;
pub mod tree;
pub mod windows;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::check::rules::family::Family;
use crate::check::{self, Status, Verdict};
use crate::exec;
use crate::lock::{self, Lock};
use crate::recipe::{Base, Layer, Recipe};

/// Options of one build that do not come from the recipe.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub output_dir: PathBuf,
    /// Folder for downloaded packages and cached stages, kept between
    /// builds.
    pub cache_dir: PathBuf,
    /// Bound in bytes on the stage cache, enforced after each stored stage.
    pub cache_max_size: u64,
    pub clamav_db: Option<PathBuf>,
    /// Install exactly the package versions of the recipe's lock file.
    pub locked: bool,
    /// Set by `forge update`, which replaces the lock on purpose and keeps
    /// the old one itself.
    pub updating: bool,
}

/// State shared by the build steps.
pub struct Context {
    pub recipe: Recipe,
    /// The image's root tree on the host, inside `_work`.
    pub tree: PathBuf,
    pub cache_dir: PathBuf,
    /// `SOURCE_DATE_EPOCH` of the build: every time stamped into the image
    /// is this time or older.
    pub epoch: u64,
    /// The lock whose versions a `--locked` build installs.
    pub lock: Option<Lock>,
    /// What the bootstrap hands to mmdebstrap; `None` for an image base.
    pub plan: Option<bootstrap::Plan>,
    /// The mirror's `InRelease` files, fetched when the build started.
    pub index_releases: Vec<bootstrap::IndexRelease>,
    /// The distribution family of the tree.
    pub family: Family,
    /// How the layers install packages.
    pub packages: packages::PackageManager,
    /// The layers to apply: the recipe's, after the one forge adds to an
    /// image base.
    pub layers: Vec<Layer>,
    /// Folders of an image base whose modification time forge sets back
    /// after removing the files it put there for the layers.
    pub restore_mtimes: Vec<(String, u64)>,
    _work: tempfile::TempDir,
}

impl Context {
    /// A context for working on an existing tree outside a whole build, as
    /// tests of single steps do: no bootstrap plan, no lock, the tree's
    /// family as given.
    pub fn for_tree(recipe: Recipe, tree: PathBuf, family: Family, epoch: u64) -> Result<Self> {
        let work = tempfile::Builder::new()
            .prefix("forge-steps-")
            .tempdir()
            .context("failed to create a temporary work folder")?;
        Ok(Self {
            layers: recipe.layers.clone(),
            recipe,
            tree,
            cache_dir: work.path().join("cache"),
            epoch,
            lock: None,
            plan: None,
            index_releases: Vec::new(),
            family,
            packages: packages::PackageManager {
                family,
                local: false,
            },
            restore_mtimes: Vec::new(),
            _work: work,
        })
    }

    /// Environment of commands run inside the tree.
    pub fn chroot_env(&self) -> Vec<(String, String)> {
        vec![("SOURCE_DATE_EPOCH".to_owned(), self.epoch.to_string())]
    }
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
    /// The lock file beside the recipe, and what it records.
    pub lock_path: PathBuf,
    pub lock: Lock,
}

/// Prints each step with its number and wall time on stderr.
pub(crate) struct Progress {
    pub(crate) total: usize,
    pub(crate) done: usize,
    pub(crate) started: Instant,
}

/// The end of a step's progress line: what happened, shown before the
/// step's time, and an optional detail after it.
pub struct Note {
    outcome: String,
    detail: Option<String>,
}

impl Note {
    pub fn new(outcome: impl Into<String>) -> Self {
        Self {
            outcome: outcome.into(),
            detail: None,
        }
    }

    pub fn done() -> Self {
        Self::new("done")
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl Progress {
    pub(crate) fn step<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.step_noted(name, || Ok((f()?, Note::done())))
    }

    /// Runs a step whose closure also returns the note for its progress
    /// line, such as whether the cache supplied its result.
    pub(crate) fn step_noted<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> Result<(T, Note)>,
    ) -> Result<T> {
        exec::check_interrupted()?;
        self.done += 1;
        eprintln!("[{}/{}] {name} ...", self.done, self.total);
        let t = Instant::now();
        let r = f();
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok((value, note)) => {
                let detail = note.detail.map(|d| format!(" ({d})")).unwrap_or_default();
                eprintln!(
                    "[{}/{}] {name}: {} in {secs:.1} s{detail}",
                    self.done, self.total, note.outcome
                );
                Ok(value)
            }
            Err(e) => {
                eprintln!(
                    "[{}/{}] {name}: failed after {secs:.1} s",
                    self.done, self.total
                );
                Err(e)
            }
        }
    }
}

/// Builds the recipe at `recipe_path` into a checked, fixed VHD.
pub fn build(recipe_path: &Path, opts: &BuildOptions) -> Result<Artifacts> {
    let recipe = Recipe::load(recipe_path)?;
    if let Base::Windows(base) = &recipe.base {
        import::verify_file_pin(&base.path, &base.sha256, &opts.cache_dir)?;
        let base = base.clone();
        return windows::build(recipe, &base, recipe_path, opts);
    }
    if let Base::Image(image) = &recipe.base {
        import::verify_pin(image, &opts.cache_dir)?;
    }
    preflight(&recipe)?;
    let mut output_folder = NewFolder::create(&opts.output_dir)?;
    let work = tempfile::Builder::new()
        .prefix("forge-build-")
        .tempdir()
        .context("failed to create a temporary work folder")?;
    let tree = work.path().join("root");
    std::fs::create_dir(&tree)?;
    let lock_path = lock::path_for(recipe_path, &recipe.name);
    let locked = if opts.locked {
        if !lock_path.exists() {
            bail!(
                "--locked needs the lock file {}; build once without --locked to write it",
                lock_path.display()
            );
        }
        let lock = Lock::load(&lock_path)?;
        if let Base::Image(image) = &recipe.base {
            if lock.base_image_sha256.as_deref() != Some(image.sha256.as_str()) {
                bail!(
                    "--locked: the lock file {} was written for base image sha256 {}, but the \
                     recipe pins {}; build without --locked to write a new lock",
                    lock_path.display(),
                    lock.base_image_sha256.as_deref().unwrap_or("(none)"),
                    image.sha256
                );
            }
        }
        Some(lock)
    } else {
        None
    };
    let lock_mirror = locked.as_ref().and_then(|l| l.mirror.as_deref());
    let (plan, index_releases, epoch) = match &recipe.base {
        Base::Debian(debian) => {
            let plan = bootstrap::Plan::new(debian, lock_mirror)?;
            let index_releases = bootstrap::fetch_index_releases(&plan)?;
            let epoch = build_epoch(locked.as_ref(), &index_releases)?;
            (Some(plan), index_releases, epoch)
        }
        // Known once the image's tree is copied.
        Base::Image(_) => (None, Vec::new(), 0),
        Base::Windows(_) => unreachable!("a Windows base is built by build::windows"),
    };
    let layers = recipe.layers.clone();
    let mut ctx = Context {
        recipe,
        tree,
        cache_dir: opts.cache_dir.clone(),
        epoch,
        lock: locked,
        plan,
        index_releases,
        family: Family::Debian,
        packages: packages::PackageManager {
            family: Family::Debian,
            local: false,
        },
        layers,
        restore_mtimes: Vec::new(),
        _work: work,
    };
    let mut outputs = output::Pending::new(&opts.output_dir, &ctx.recipe.artifact_stem());
    let image_base = match &ctx.recipe.base {
        Base::Image(image) => Some(image.clone()),
        Base::Debian(_) | Base::Windows(_) => None,
    };
    let mut progress = Progress {
        total: if image_base.is_some() { 8 } else { 7 },
        done: 0,
        started: Instant::now(),
    };

    let stage_cache = stage_cache::StageCache::new(&opts.cache_dir, opts.cache_max_size);
    let stages = match &image_base {
        None => progress.step_noted("bootstrap Debian", || {
            stages::bootstrap_step(&ctx, &stage_cache)
        })?,
        Some(image) => {
            let key = progress.step_noted("copy the base image", || {
                stages::image_step(&ctx, &stage_cache, image)
            })?;
            progress.step("prepare the base image", || {
                stages::prepare_image(&mut ctx, &stage_cache, image, key)
            })?
        }
    };
    progress.step_noted("apply layers", || {
        let note = stages::layers_step(&ctx, &stage_cache, &stages)?;
        Ok(((), note))
    })?;
    packages::remove_local_repo(&ctx)?;
    reproducible::remove_without_trace(&ctx.tree, bootstrap::LOCK_PREFERENCES)?;
    for (dir, mtime) in &ctx.restore_mtimes {
        reproducible::set_times(&tree::resolve_all(&ctx.tree, dir)?, *mtime)?;
    }
    progress.step("harden", || harden::run(&ctx))?;
    let new_lock = read_lock(&ctx)?;
    let ids = disk::DiskIds::derive(&ctx.recipe.artifact_stem());
    let image = outputs.vhd_partial();
    let inventory = progress.step("assemble disk", || {
        disk::prepare_tree(&ctx, &ids)?;
        harden::selinux_labels(&ctx).context("labelling the tree for SELinux failed")?;
        // The SBOM lists the packages of the final tree, read while the
        // tree is still there.
        let inventory = crate::sbom::collect(&check::DirView::new(&ctx.tree))
            .context("failed to read the installed packages for the SBOM")?;
        disk::assemble(&ctx, &ids, &image)?;
        Ok(inventory)
    })?;
    progress.step("write VHD footer", || {
        output::append_footer(&image, &ids, ctx.epoch)
    })?;
    let policy = check::Policy {
        declared_units: ctx.recipe.declared_units(),
        waivers: ctx.recipe.waivers.clone(),
        clamav_db: opts.clamav_db.clone(),
        from_image: false,
        windows: Default::default(),
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
        let artifacts = outputs.finish(report, sha256, &sbom, ctx.epoch)?;
        // A later `forge check` of the VHD then skips hashing it again.
        crate::hashcache::HashCache::new(&opts.cache_dir).put(&artifacts.vhd, &artifacts.sha256);
        if ctx.lock.is_none() && !opts.updating {
            keep_changed_lock(&lock_path, &new_lock)?;
            new_lock.save(&lock_path)?;
        }
        Ok(Artifacts {
            vhd: artifacts.vhd,
            sbom: artifacts.sbom,
            json_report: artifacts.json_report,
            text_report: artifacts.text_report,
            sha256: artifacts.sha256,
            verdict: artifacts.verdict,
            lock_path: lock_path.clone(),
            lock: new_lock.clone(),
        })
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
    output_folder.keep();
    Ok(artifacts)
}

/// The output folder, removed again when the build that created it fails
/// before writing anything into it.
pub(crate) struct NewFolder {
    path: PathBuf,
    created: bool,
}

impl NewFolder {
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let created = !path.exists();
        std::fs::create_dir_all(path)
            .with_context(|| format!("failed to create output folder {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            created,
        })
    }

    pub(crate) fn keep(&mut self) {
        self.created = false;
    }
}

impl Drop for NewFolder {
    fn drop(&mut self) {
        if self.created {
            // Fails, and so keeps the folder, when anything is in it.
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

/// Before a build replaces a lock whose packages differ from what it
/// installed, keeps the old one as `<name>.lock.previous` and says so.
pub(crate) fn keep_changed_lock(lock_path: &Path, new: &Lock) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(lock_path) else {
        return Ok(());
    };
    let changed = match toml::from_str::<Lock>(&text) {
        Ok(old) => lock::compare(&old.packages, &new.packages).len(),
        Err(_) => usize::MAX,
    };
    if changed == 0 {
        return Ok(());
    }
    let kept = lock_path.with_extension("lock.previous");
    std::fs::write(&kept, text).with_context(|| format!("failed to write {}", kept.display()))?;
    let what = if changed == usize::MAX {
        "could not be read".to_owned()
    } else {
        format!("differs in {changed} package(s)")
    };
    eprintln!(
        "warning: the lock file {} {what}; it is replaced, and the old one kept as {}",
        lock_path.display(),
        kept.display()
    );
    Ok(())
}

/// Result of [`update`].
pub struct Update {
    pub artifacts: Artifacts,
    /// Where the lock from before the update was kept, if there was one.
    pub previous_lock: Option<PathBuf>,
    /// Packages whose version changed, appeared or went away.
    pub changes: Vec<lock::PackageChange>,
}

/// Rebuilds `recipe_path` against the mirror's current state. The lock
/// from before is kept as `<name>.lock.previous` beside the new one.
pub fn update(recipe_path: &Path, opts: &BuildOptions) -> Result<Update> {
    let recipe = Recipe::load(recipe_path)?;
    let lock_path = lock::path_for(recipe_path, &recipe.name);
    let previous_text = std::fs::read_to_string(&lock_path).ok();
    // An unreadable old lock is kept but not compared: updating is how a
    // broken lock gets replaced.
    let previous = match &previous_text {
        Some(_) => match Lock::load(&lock_path) {
            Ok(lock) => Some(lock),
            Err(e) => {
                eprintln!("warning: {e:#}; it is replaced");
                None
            }
        },
        None => None,
    };
    let opts = BuildOptions {
        updating: true,
        ..opts.clone()
    };
    let artifacts = build(recipe_path, &opts)?;
    let mut previous_lock = None;
    if let Some(text) = previous_text {
        let kept = lock_path.with_extension("lock.previous");
        std::fs::write(&kept, text)
            .with_context(|| format!("failed to write {}", kept.display()))?;
        previous_lock = Some(kept);
    }
    let changes = match &previous {
        Some(old) => lock::compare(&old.packages, &artifacts.lock.packages),
        None => Vec::new(),
    };
    Ok(Update {
        artifacts,
        previous_lock,
        changes,
    })
}

/// Formats package changes as a table: name, old and new version, and
/// whether the new version comes from the security suite.
pub fn render_changes(changes: &[lock::PackageChange]) -> String {
    if changes.is_empty() {
        return "packages: no change from the previous lock\n".to_owned();
    }
    let mut out = format!("packages: {} changed\n", changes.len());
    out.push_str(&format!(
        "{:<32} {:<28} {:<28} {}\n",
        "package", "old", "new", "source"
    ));
    for c in changes {
        out.push_str(&format!(
            "{:<32} {:<28} {:<28} {}\n",
            c.name,
            c.old.as_deref().unwrap_or("(added)"),
            c.new.as_deref().unwrap_or("(removed)"),
            if c.security { "security" } else { "" }
        ));
    }
    out
}

/// Reads what the tree installed, and from which indexes, as a lock. A
/// `--locked` build fails here when it did not get the locked versions.
fn read_lock(ctx: &Context) -> Result<Lock> {
    let lists = tree::resolve_all(&ctx.tree, "/var/lib/apt/lists")?;
    let (packages, indexes) = if ctx.family.uses_rpm() {
        (lock::installed_rpm_packages(&ctx.tree)?, Vec::new())
    } else {
        let status = tree::read(&ctx.tree, "/var/lib/dpkg/status")?
            .context("the image has no /var/lib/dpkg/status")?;
        let mut packages = lock::installed_packages(&status);
        lock::mark_security(&mut packages, &lists)?;
        (packages, mirror::releases_in_tree(&lists)?)
    };
    let mirror = ctx
        .recipe
        .base
        .mirror()
        .map(str::to_owned)
        .or_else(|| ctx.lock.as_ref().and_then(|l| l.mirror.clone()));
    let mut new = Lock::new(ctx.epoch, mirror, indexes, packages);
    if let Base::Image(image) = &ctx.recipe.base {
        new.base_image_sha256 = Some(image.sha256.clone());
    }
    if let Some(old) = &ctx.lock {
        let changes = lock::compare(&old.packages, &new.packages);
        if !changes.is_empty() {
            let listed: Vec<String> = changes
                .iter()
                .take(10)
                .map(|c| {
                    format!(
                        "{} (locked {}, installed {})",
                        c.name,
                        c.old.as_deref().unwrap_or("-"),
                        c.new.as_deref().unwrap_or("-")
                    )
                })
                .collect();
            bail!(
                "the build did not install the locked versions: {}{}; the mirror may no longer \
                 serve them: set `mirror` in the recipe to a snapshot archive of the lock's \
                 date, or run `forge update` to move to current versions",
                listed.join(", "),
                if changes.len() > 10 { ", ..." } else { "" }
            );
        }
    }
    Ok(new)
}

/// Picks the build's `SOURCE_DATE_EPOCH`: the lock's, the caller's, or
/// else the date of the newest package index the build installs from.
fn build_epoch(lock: Option<&Lock>, releases: &[bootstrap::IndexRelease]) -> Result<u64> {
    if let Some(lock) = lock {
        return Ok(lock.source_date_epoch);
    }
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"));
    }
    let epoch = releases.iter().map(|r| r.date_epoch).max().unwrap_or(0);
    tracing::info!("SOURCE_DATE_EPOCH={epoch}, the date of the newest package index");
    Ok(epoch)
}

pub(crate) fn print_failures(report: &check::report::Report) {
    for f in report.rules.iter().filter(|f| f.status == Status::Fail) {
        eprintln!("fail  {}: {}", f.id, f.evidence);
    }
}

/// Checks the host tools the build runs, so a missing one fails in the
/// first second with the package to install rather than after a bootstrap.
fn preflight(recipe: &Recipe) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("forge build must run as root (it bootstraps and chroots into the image tree)");
    }
    let mut tools = vec![
        ("mmdebstrap", "mmdebstrap"),
        ("unshare", "util-linux"),
        ("sgdisk", "gdisk"),
        ("mkfs.fat", "dosfstools"),
        ("mcopy", "mtools"),
        ("mkfs.ext4", "e2fsprogs"),
        ("tar", "tar"),
        ("/usr/lib/apt/apt-helper", "apt"),
    ];
    if let Base::Image(image) = &recipe.base {
        tools.push(("qemu-img", "qemu-utils"));
        tools.push(("supermin", "libguestfs-tools"));
        if image.packages_from != crate::recipe::PackageSource::ImageRepositories {
            tools.push(("apt-ftparchive", "apt-utils"));
        }
    }
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
