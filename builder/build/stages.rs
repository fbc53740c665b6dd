//! The bootstrap and layer steps of a build. Each stage's tree is restored
//! from the stage cache when an entry for its key exists, and stored there
//! after it is built.

use anyhow::{Context as _, Result};

use super::bootstrap::{self, IndexRelease};
use super::import;
use super::layers;
use super::packages::{self, PackageManager};
use super::stage_cache::{Outcome, Produced, StageCache, StageKey};
use super::stage_key::{self, BootstrapKeyInputs, ExtraKeyMaterial};
use super::{Context, Note};
use crate::check::rules::family::Family;
use crate::recipe::{ImageBase, Layer, PackageSource};

/// The keys of a build's stages and how far the bootstrap step got.
pub struct Stages {
    /// Key of the bootstrap, then of the tree after each layer in order.
    keys: Vec<StageKey>,
    /// Number of layers already in the tree after the bootstrap step,
    /// because it restored the tree of a later stage.
    layers_restored: usize,
}

/// Computes every stage's key, then restores the latest stage that the
/// cache holds, or else bootstraps (and stores the bootstrap's tree).
///
/// A layer stage is tried before the bootstrap, so that a build whose
/// layers are all unchanged restores one archive instead of several.
pub fn bootstrap_step(ctx: &Context, cache: &StageCache) -> Result<(Stages, Note)> {
    let plan = ctx
        .plan
        .as_ref()
        .context("the bootstrap step needs a Debian base")?;
    let base = ctx
        .recipe
        .base
        .debian()
        .context("the bootstrap step needs a Debian base")?;
    let index_releases = &ctx.index_releases;
    let mmdebstrap_version = bootstrap::mmdebstrap_version()?;
    // The epoch is stamped into the tree, and a locked build pins versions.
    let epoch = ctx.epoch.to_string();
    let lock_text = ctx.lock.as_ref().map(|l| l.render());
    let mut extra = vec![ExtraKeyMaterial {
        label: "source-date-epoch",
        content: epoch.as_bytes(),
    }];
    if let Some(text) = &lock_text {
        extra.push(ExtraKeyMaterial {
            label: "lock",
            content: text.as_bytes(),
        });
    }
    let bootstrap_key = stage_key::bootstrap_key(&BootstrapKeyInputs {
        forge_version: env!("CARGO_PKG_VERSION"),
        mmdebstrap_version: &mmdebstrap_version,
        base,
        plan,
        index_releases,
        extra: &extra,
    });
    let mut keys = vec![bootstrap_key];
    for layer in &ctx.layers {
        let previous = keys.last().expect("keys start with the bootstrap key");
        let key = stage_key::layer_key(previous, layer).with_context(|| {
            format!("failed to compute the cache key of layer `{}`", layer.name)
        })?;
        keys.push(key);
    }

    for (i, layer) in ctx.layers.iter().enumerate().rev() {
        let key = &keys[i + 1];
        if cache.contains(key) && cache.restore(key, &ctx.tree)? {
            let note = Note::new(format!(
                "reused from cache (the tree after layer `{}`, key {})",
                layer.name,
                key.short()
            ));
            let stages = Stages {
                keys,
                layers_restored: i + 1,
            };
            return Ok((stages, note));
        }
    }

    let key = &keys[0];
    let outcome = cache.get_or_build(key, &ctx.tree, || {
        bootstrap::run(ctx, plan)?;
        Ok(check_indexes_unchanged(ctx, index_releases))
    })?;
    let note = match outcome {
        Outcome::Reused => Note::new(format!("reused from cache (key {})", key.short())),
        Outcome::BuiltAndStored => {
            Note::done().detail(format!("stored in the cache as {}", key.short()))
        }
        Outcome::BuiltNotStored => Note::done().detail("not stored in the cache, see above"),
    };
    let stages = Stages {
        keys,
        layers_restored: 0,
    };
    Ok((stages, note))
}

/// Copies the image base's tree, or restores the copy from the cache.
/// Returns the copy's key.
pub fn image_step(
    ctx: &Context,
    cache: &StageCache,
    image: &ImageBase,
) -> Result<(StageKey, Note)> {
    let key = stage_key::image_key(&image.sha256);
    let outcome = cache.get_or_build(&key, &ctx.tree, || {
        import::copy_tree(image, &ctx.tree)?;
        Ok(Produced::Cacheable)
    })?;
    let note = match outcome {
        Outcome::Reused => Note::new(format!("reused from cache (key {})", key.short())),
        Outcome::BuiltAndStored => {
            Note::done().detail(format!("stored in the cache as {}", key.short()))
        }
        Outcome::BuiltNotStored => Note::done().detail("not stored in the cache, see above"),
    };
    Ok((key, note))
}

/// Readies a copied image tree for the layers: reads its family, fixes the
/// build's epoch, removes what forge's layout replaces, points the package
/// manager at the recipe's repository, and adds forge's own first layer.
/// Returns the keys of the layer stages.
pub fn prepare_image(
    ctx: &mut Context,
    cache: &StageCache,
    image: &ImageBase,
    copy_key: StageKey,
) -> Result<Stages> {
    let family = import::detect_family(&ctx.tree)?;
    ctx.family = family;
    ctx.epoch = match (&ctx.lock, std::env::var("SOURCE_DATE_EPOCH")) {
        (Some(lock), _) => lock.source_date_epoch,
        (None, Ok(value)) => value
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"))?,
        (None, Err(_)) => import::newest_mtime(&ctx.tree)?,
    };
    import::prepare_layout(ctx, family)?;
    // The layers' package managers resolve names through the host's
    // resolver, shown at this path while they run; see `chroot`.
    let resolver = super::tree::resolve_parent(&ctx.tree, "/etc/resolv.conf")?;
    if std::fs::symlink_metadata(&resolver).is_err() {
        super::tree::write(&ctx.tree, "/etc/resolv.conf", b"", 0o644)?;
    }

    let local = matches!(image.packages_from, PackageSource::Folder(_));
    ctx.packages = PackageManager { family, local };
    // An image without its package manager can still take layers without
    // packages; it just cannot be upgraded.
    let needs_packages = !import::has_agent(&ctx.tree)?
        || !import::missing_packages(&ctx.tree, family, import::required_packages(family))?
            .is_empty()
        || ctx.recipe.layers.iter().any(|l| !l.packages.is_empty());
    let manager = ctx.packages.check_present(&ctx.tree);
    let can_install = match manager {
        Ok(()) => true,
        Err(e) if needs_packages => return Err(e),
        Err(e) => {
            tracing::warn!("{e:#}; the image's packages are not upgraded");
            false
        }
    };
    let mut extra_text = vec![("epoch".to_owned(), ctx.epoch.to_string().into_bytes())];
    if let Some(lock) = &ctx.lock {
        extra_text.push(("lock".to_owned(), lock.render().into_bytes()));
        if family == Family::Debian {
            let apt_dir = super::tree::resolve_all(&ctx.tree, "/etc/apt")?;
            let mtime = std::fs::metadata(&apt_dir)
                .with_context(|| format!("failed to read {}", apt_dir.display()))?
                .modified()?;
            let mtime = mtime
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            ctx.restore_mtimes.push(("/etc/apt".to_owned(), mtime));
            let prefs = lock.apt_preferences();
            super::tree::write(
                &ctx.tree,
                bootstrap::LOCK_PREFERENCES,
                prefs.as_bytes(),
                0o644,
            )?;
        }
    }
    match &image.packages_from {
        PackageSource::Folder(folder) => {
            packages::add_local_repo(ctx, family, folder)?;
            extra_text.push((
                "repository-folder".to_owned(),
                stage_key::overlay_digest(folder)?,
            ));
        }
        PackageSource::ImageRepositories => {}
    }
    if let Some(argv) = ctx.packages.refresh().filter(|_| can_install) {
        packages::run_in_tree(ctx, argv).with_context(|| ctx.packages.failure_hint())?;
    }
    // The indexes just read decide what the layers install, so a cached
    // layer is reused only while they are unchanged.
    let mut digests = bootstrap::tree_index_digests(&ctx.tree)?;
    digests.sort();
    extra_text.push(("package-indexes".to_owned(), digests.concat()));

    let mut layers = vec![base_layer(ctx, family, can_install)?];
    layers.extend(ctx.recipe.layers.iter().cloned());
    ctx.layers = layers;

    let extra: Vec<ExtraKeyMaterial> = extra_text
        .iter()
        .map(|(label, content)| ExtraKeyMaterial { label, content })
        .collect();
    let mut keys = vec![stage_key::image_layers_key(&copy_key, &extra)];
    for layer in &ctx.layers {
        let previous = keys.last().expect("keys start with the image key");
        let key = stage_key::layer_key(previous, layer).with_context(|| {
            format!("failed to compute the cache key of layer `{}`", layer.name)
        })?;
        keys.push(key);
    }
    // As after a bootstrap, the latest cached layer is restored at once
    // rather than each layer before it in turn.
    for i in (0..ctx.layers.len()).rev() {
        let key = &keys[i + 1];
        if cache.contains(key) && cache.restore(key, &ctx.tree)? {
            return Ok(Stages {
                keys,
                layers_restored: i + 1,
            });
        }
    }
    Ok(Stages {
        keys,
        layers_restored: 0,
    })
}

/// forge's first layer on an image base: every package upgraded to what
/// the repository has, the required packages and the Azure Linux Agent
/// installed, and the initramfs rebuilt for the new layout.
fn base_layer(ctx: &Context, family: Family, can_install: bool) -> Result<Layer> {
    let mut packages = Vec::new();
    if can_install {
        packages = import::missing_packages(&ctx.tree, family, import::required_packages(family))?;
    }
    if !import::has_agent(&ctx.tree)? {
        packages.push(import::agent_package(family).to_owned());
    }
    Ok(Layer {
        name: "forge-base".to_owned(),
        packages,
        overlay: None,
        run: import::initramfs_commands(&ctx.tree, family)?,
        enable: Vec::new(),
        upgrade: can_install,
        ..Default::default()
    })
}

/// Decides whether the bootstrapped tree may be stored under its key: only
/// if the bootstrap used the package indexes that the key was computed
/// from. The mirror may have published an update in between.
fn check_indexes_unchanged(ctx: &Context, expected: &[IndexRelease]) -> Produced {
    let mut used = match bootstrap::tree_index_digests(&ctx.tree) {
        Ok(digests) => digests,
        Err(e) => {
            return Produced::NotCacheable(format!(
                "the package indexes the bootstrap used could not be read: {e:#}"
            ))
        }
    };
    let mut expected: Vec<[u8; 32]> = expected.iter().map(|r| r.sha256).collect();
    used.sort();
    expected.sort();
    if used == expected {
        Produced::Cacheable
    } else {
        Produced::NotCacheable(
            "the mirror published new package indexes during the bootstrap".to_string(),
        )
    }
}

/// Applies the layers that the bootstrap step did not restore, each one
/// restored from the cache or applied and stored.
pub fn layers_step(ctx: &Context, cache: &StageCache, stages: &Stages) -> Result<Note> {
    let mut reused = Vec::new();
    let mut built = Vec::new();
    for (i, layer) in ctx.layers.iter().enumerate() {
        let key = &stages.keys[i + 1];
        if i < stages.layers_restored {
            reused.push(format!("{} (key {})", layer.name, key.short()));
            continue;
        }
        let outcome = cache.get_or_build(key, &ctx.tree, || {
            layers::run_layer(ctx, layer)?;
            Ok(Produced::Cacheable)
        })?;
        match outcome {
            Outcome::Reused => reused.push(format!("{} (key {})", layer.name, key.short())),
            Outcome::BuiltAndStored => {
                built.push(format!("{} (stored as {})", layer.name, key.short()))
            }
            Outcome::BuiltNotStored => built.push(format!("{} (not stored)", layer.name)),
        }
    }

    let mut parts = Vec::new();
    if !reused.is_empty() {
        parts.push(format!("reused: {}", reused.join(", ")));
    }
    if !built.is_empty() {
        parts.push(format!("built: {}", built.join(", ")));
    }
    let note = if built.is_empty() && !reused.is_empty() {
        Note::new("reused from cache")
    } else {
        Note::done()
    };
    Ok(if parts.is_empty() {
        note
    } else {
        note.detail(parts.join("; "))
    })
}
