//! Applies one of the recipe's layers to the tree.

use anyhow::{Context, Result};

use super::{chroot, tree, Context as BuildContext};
use crate::exec::Cmd;
use crate::recipe::Layer;

/// Keeps package scripts from starting services inside the tree.
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// Applies one layer to the tree. Package scripts cannot start services
/// while it runs.
pub fn run_layer(ctx: &BuildContext, layer: &Layer) -> Result<()> {
    tree::write(&ctx.tree, POLICY_RC_D, b"#!/bin/sh\nexit 101\n", 0o755)?;
    let result = apply(ctx, layer).with_context(|| format!("layer `{}` failed", layer.name));
    tree::remove(&ctx.tree, POLICY_RC_D)?;
    result
}

fn apply(ctx: &BuildContext, layer: &Layer) -> Result<()> {
    let in_tree = |argv: Vec<String>| -> Result<()> {
        chroot::command(&ctx.tree, &argv, &ctx.chroot_env())?.run()?;
        Ok(())
    };

    let pm = &ctx.packages;
    if layer.upgrade {
        tracing::info!("layer {}: upgrading installed packages", layer.name);
        in_tree(pm.upgrade()).with_context(|| pm.failure_hint())?;
    }
    if !layer.packages.is_empty() {
        tracing::info!(
            "layer {}: installing {}",
            layer.name,
            layer.packages.join(" ")
        );
        in_tree(pm.install(&layer.packages)).with_context(|| pm.failure_hint())?;
    }

    if let Some(overlay) = &layer.overlay {
        tracing::info!(
            "layer {}: copying overlay {}",
            layer.name,
            overlay.display()
        );
        copy_overlay(ctx, overlay)?;
    }

    for argv in &layer.run {
        tracing::info!("layer {}: running {}", layer.name, argv.join(" "));
        in_tree(argv.clone()).context("a command inside the image failed")?;
    }

    if !layer.enable.is_empty() {
        let mut argv: Vec<String> = vec!["systemctl".into(), "enable".into()];
        argv.extend(layer.enable.iter().cloned());
        in_tree(argv).context("enabling units failed")?;
    }
    Ok(())
}

/// Copies the overlay into `/` of the tree. The archive is unpacked inside
/// the tree, so a symlink in the tree resolves as it would in the image and
/// never reaches the host. Files become owned by root.
fn copy_overlay(ctx: &BuildContext, overlay: &std::path::Path) -> Result<()> {
    let archive = Cmd::new("tar")
        .arg("-C")
        .arg(overlay)
        .args(["--owner=0", "--group=0", "--numeric-owner", "-cf", "-", "."])
        .run()
        .with_context(|| format!("failed to read overlay {}", overlay.display()))?
        .stdout;
    let argv: Vec<String> = [
        "tar",
        "-x",
        "-f",
        "-",
        "-C",
        "/",
        "--keep-directory-symlink",
        "--no-overwrite-dir",
        "--no-same-owner",
    ]
    .map(String::from)
    .into();
    chroot::command(&ctx.tree, &argv, &ctx.chroot_env())?
        .stdin_bytes(archive)
        .run()
        .with_context(|| format!("failed to copy overlay {}", overlay.display()))?;
    Ok(())
}
