//! The bootstrap and layer steps of a build. Each stage's tree is restored
//! from the stage cache when an entry for its key exists, and stored there
//! after it is built.

use anyhow::{Context as _, Result};

use super::bootstrap::{self, IndexRelease};
use super::layers;
use super::stage_cache::{Outcome, Produced, StageCache, StageKey};
use super::stage_key::{self, BootstrapKeyInputs, ExtraKeyMaterial};
use super::{Context, Note};

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
    let plan = &ctx.plan;
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
        base: &ctx.recipe.base,
        plan,
        index_releases,
        extra: &extra,
    });
    let mut keys = vec![bootstrap_key];
    for layer in &ctx.recipe.layers {
        let previous = keys.last().expect("keys start with the bootstrap key");
        let key = stage_key::layer_key(previous, layer).with_context(|| {
            format!("failed to compute the cache key of layer `{}`", layer.name)
        })?;
        keys.push(key);
    }

    for (i, layer) in ctx.recipe.layers.iter().enumerate().rev() {
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
    for (i, layer) in ctx.recipe.layers.iter().enumerate() {
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
