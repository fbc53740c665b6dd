//! Stage keys: sha256 digests of everything that can change the tree a
//! build stage produces. A cached tree is reused only under an equal key.
//!
//! Every value is hashed with its field name and length, so no two
//! different sets of inputs hash the same bytes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::bootstrap::{IndexRelease, Plan};
use super::stage_cache::StageKey;
use crate::recipe::{DebianBase, Layer};

/// Version of the key layout and of the stage archives. Change it when the
/// code that bootstraps or applies a layer changes its result without a new
/// forge version, so that no tree of the old code is reused.
const KEY_SCHEMA: &str = "forge-stage-1";

/// Key material that a caller adds to the bootstrap key, such as the
/// content of a lock file that pins package versions.
#[derive(Clone, Debug)]
pub struct ExtraKeyMaterial<'a> {
    /// Field name under which `content` is hashed, such as `lock-file`.
    pub label: &'a str,
    pub content: &'a [u8],
}

/// Everything that can change the tree the bootstrap produces.
#[derive(Clone, Debug)]
pub struct BootstrapKeyInputs<'a> {
    /// forge's own version, because a new release may bootstrap differently.
    pub forge_version: &'a str,
    /// `mmdebstrap --version`, because mmdebstrap lays out the tree.
    pub mmdebstrap_version: &'a str,
    /// The recipe's base: distro, release, architecture and mirror.
    pub base: &'a DebianBase,
    /// The mirrors, mmdebstrap options, base packages and apt options.
    pub plan: &'a Plan,
    /// The mirror's `InRelease` files of every suite. They change with
    /// every package update, so a tree built before a security fix is never
    /// reused after it.
    pub index_releases: &'a [IndexRelease],
    /// Further material, hashed in order. Empty in a plain build.
    pub extra: &'a [ExtraKeyMaterial<'a>],
}

/// Returns the key of the bootstrap stage.
pub fn bootstrap_key(inputs: &BootstrapKeyInputs) -> StageKey {
    let mut h = KeyHasher::new("bootstrap");
    h.field("forge-version", inputs.forge_version.as_bytes());
    h.field("mmdebstrap-version", inputs.mmdebstrap_version.as_bytes());

    let base = inputs.base;
    h.field("distro", base.distro.as_bytes());
    h.field("release", base.release.as_bytes());
    h.field("arch", base.deb_arch.as_bytes());
    h.field("mirror", base.mirror.as_deref().unwrap_or("").as_bytes());

    let plan = inputs.plan;
    h.list("source-lines", &plan.source_lines());
    h.list("mmdebstrap-options", &plan.mmdebstrap_options);
    h.list("packages", &plan.packages);
    h.list("apt-options", &plan.apt_options);

    h.count("index-releases", inputs.index_releases.len());
    for release in inputs.index_releases {
        h.field("index-url", release.url.as_bytes());
        h.field("index-sha256", &release.sha256);
    }

    h.count("extra", inputs.extra.len());
    for extra in inputs.extra {
        h.field("extra-label", extra.label.as_bytes());
        h.field("extra-content", extra.content);
    }
    h.finish()
}

/// Returns the key of the tree copied from an image base with sha256
/// `image_sha256`. It depends on the image alone: the copy stamps nothing.
pub fn image_key(image_sha256: &str) -> StageKey {
    let mut h = KeyHasher::new("image");
    h.field("forge-version", env!("CARGO_PKG_VERSION").as_bytes());
    h.field("image-sha256", image_sha256.as_bytes());
    h.finish()
}

/// Returns the key that the first layer on an image base chains from: the
/// copied tree, plus what shapes the layers without being in that tree
/// (the epoch, a lock, the package indexes the layers install from).
pub fn image_layers_key(image: &StageKey, extra: &[ExtraKeyMaterial]) -> StageKey {
    let mut h = KeyHasher::new("image-layers");
    h.field("image", image.as_str().as_bytes());
    h.count("extra", extra.len());
    for e in extra {
        h.field("extra-label", e.label.as_bytes());
        h.field("extra-content", e.content);
    }
    h.finish()
}

/// Returns the key of the tree after `layer`, applied to the tree of the
/// stage with key `previous`.
///
/// The layer's name is left out, because renaming a layer does not change
/// its tree. The overlay counts by content (see [`overlay_digest`]), not by
/// its path.
pub fn layer_key(previous: &StageKey, layer: &Layer) -> Result<StageKey> {
    let mut h = KeyHasher::new("layer");
    h.field("forge-version", env!("CARGO_PKG_VERSION").as_bytes());
    h.field("previous", previous.as_str().as_bytes());
    h.list("packages", &layer.packages);
    h.count("run", layer.run.len());
    for argv in &layer.run {
        h.list("argv", argv);
    }
    h.list("enable", &layer.enable);
    // Only hashed when set, so that keys of recipe layers stay as they were.
    if layer.upgrade {
        h.field("upgrade", b"yes");
    }
    match &layer.overlay {
        None => h.field("overlay", b""),
        Some(dir) => h.field("overlay", &overlay_digest(dir)?),
    }
    Ok(h.finish())
}

/// Returns a digest of an overlay folder's content: for every entry, in
/// sorted order, its path relative to the folder, its type, its permission
/// bits, and a file's bytes or a symlink's target.
///
/// Owners are left out, because the overlay is copied as root's. NOTE:
/// modification times are left out too, so that a fresh checkout reuses
/// the cache. A change of times alone therefore reuses a tree whose copied
/// files carry the old times.
pub fn overlay_digest(dir: &Path) -> Result<Vec<u8>> {
    let mut h = KeyHasher::new("overlay");
    hash_folder(&mut h, dir, Path::new(""))?;
    Ok(h.finish_bytes())
}

fn hash_folder(h: &mut KeyHasher, root: &Path, relative: &Path) -> Result<()> {
    let dir = root.join(relative);
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("failed to list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("failed to list {}", dir.display()))?;
        names.push(entry.file_name());
    }
    names.sort();
    for name in names {
        let relative = relative.join(&name);
        let path = root.join(&relative);
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("failed to read {}", path.display()))?;
        h.field("path", relative.as_os_str().as_encoded_bytes());
        h.field("mode", &(meta.mode() & 0o7777).to_le_bytes());
        let kind = meta.file_type();
        if kind.is_dir() {
            h.field("type", b"folder");
            hash_folder(h, root, &relative)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("failed to read symlink {}", path.display()))?;
            h.field("type", b"symlink");
            h.field("target", target.as_os_str().as_encoded_bytes());
        } else if kind.is_file() {
            let content =
                fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
            h.field("type", b"file");
            h.field("content-sha256", &Sha256::digest(&content));
        } else {
            // The recipe check rejects these too.
            bail!(
                "overlay entry {} is not a file, folder or symlink",
                path.display()
            );
        }
    }
    Ok(())
}

/// A sha256 over named, length-prefixed fields.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn new(kind: &str) -> Self {
        let mut h = Self(Sha256::new());
        h.field("schema", KEY_SCHEMA.as_bytes());
        h.field("kind", kind.as_bytes());
        h
    }

    fn field(&mut self, name: &str, value: &[u8]) {
        self.0.update((name.len() as u64).to_le_bytes());
        self.0.update(name.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
    }

    fn count(&mut self, name: &str, n: usize) {
        self.field(name, &(n as u64).to_le_bytes());
    }

    fn list<S: AsRef<str>>(&mut self, name: &str, items: &[S]) {
        self.count(name, items.len());
        for item in items {
            self.field(name, item.as_ref().as_bytes());
        }
    }

    fn finish_bytes(self) -> Vec<u8> {
        self.0.finalize().to_vec()
    }

    fn finish(self) -> StageKey {
        StageKey::from_digest(&self.finish_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::bootstrap::Mirrors;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;

    fn base() -> DebianBase {
        DebianBase {
            distro: "debian".into(),
            release: "bookworm".into(),
            deb_arch: "amd64".into(),
            mirror: None,
        }
    }

    fn plan() -> Plan {
        Plan {
            release: "bookworm".into(),
            deb_arch: "amd64".into(),
            mirrors: Mirrors {
                main: "http://m/debian".into(),
                security: "http://m/debian-security".into(),
            },
            mmdebstrap_options: vec!["--variant=apt".into()],
            packages: vec!["systemd-sysv".into(), "udev".into()],
            apt_options: vec![],
        }
    }

    fn releases() -> Vec<IndexRelease> {
        ["bookworm", "bookworm-updates", "bookworm-security"]
            .iter()
            .enumerate()
            .map(|(i, suite)| IndexRelease {
                url: format!("http://m/debian/dists/{suite}/InRelease"),
                sha256: [i as u8; 32],
                date_epoch: 1_700_000_000,
            })
            .collect()
    }

    fn key_with(
        base: &DebianBase,
        plan: &Plan,
        releases: &[IndexRelease],
        extra: &[ExtraKeyMaterial],
    ) -> StageKey {
        bootstrap_key(&BootstrapKeyInputs {
            forge_version: "1.0.0",
            mmdebstrap_version: "mmdebstrap 1.3.5",
            base,
            plan,
            index_releases: releases,
            extra,
        })
    }

    #[test]
    fn bootstrap_key_is_stable() {
        let a = key_with(&base(), &plan(), &releases(), &[]);
        let b = key_with(&base(), &plan(), &releases(), &[]);
        assert_eq!(a, b);
    }

    #[test]
    fn bootstrap_key_follows_every_input() {
        let reference = key_with(&base(), &plan(), &releases(), &[]);

        let mut updated = releases();
        updated[2].sha256[0] ^= 1;
        let security_fix = key_with(&base(), &plan(), &updated, &[]);
        assert_ne!(security_fix, reference, "a new security index was ignored");

        let mut mirror = base();
        mirror.mirror = Some("http://other/debian".into());
        assert_ne!(key_with(&mirror, &plan(), &releases(), &[]), reference);

        let mut packages = plan();
        packages.packages.push("vim".into());
        assert_ne!(key_with(&base(), &packages, &releases(), &[]), reference);

        let mut apt = plan();
        apt.apt_options
            .push("Acquire::Check-Valid-Until \"false\"".into());
        assert_ne!(key_with(&base(), &apt, &releases(), &[]), reference);

        let mut security_mirror = plan();
        security_mirror.mirrors.security = "http://other/debian-security".into();
        assert_ne!(
            key_with(&base(), &security_mirror, &releases(), &[]),
            reference
        );

        let lock = [ExtraKeyMaterial {
            label: "lock-file",
            content: b"nginx=1.22.1-9",
        }];
        assert_ne!(key_with(&base(), &plan(), &releases(), &lock), reference);
    }

    #[test]
    fn list_boundaries_are_part_of_the_key() {
        let mut joined = plan();
        joined.packages = vec!["ab".into()];
        let mut split = plan();
        split.packages = vec!["a".into(), "b".into()];
        assert_ne!(
            key_with(&base(), &joined, &releases(), &[]),
            key_with(&base(), &split, &releases(), &[])
        );
    }

    /// Writes an overlay with a file, a nested folder and a symlink.
    fn overlay(dir: &Path) -> PathBuf {
        let root = dir.join("overlay");
        fs::create_dir_all(root.join("etc/app")).unwrap();
        fs::write(root.join("etc/app/conf"), "listen 80;\n").unwrap();
        symlink("/etc/app/conf", root.join("etc/conf")).unwrap();
        root
    }

    #[test]
    fn overlay_digest_follows_content() {
        type Change = fn(&Path);
        let changes: &[(&str, Change)] = &[
            ("file bytes", |root| {
                fs::write(root.join("etc/app/conf"), "listen 81;\n").unwrap()
            }),
            ("file mode", |root| {
                fs::set_permissions(root.join("etc/app/conf"), fs::Permissions::from_mode(0o600))
                    .unwrap()
            }),
            ("folder mode", |root| {
                fs::set_permissions(root.join("etc/app"), fs::Permissions::from_mode(0o700))
                    .unwrap()
            }),
            ("symlink target", |root| {
                fs::remove_file(root.join("etc/conf")).unwrap();
                symlink("/etc/app/other", root.join("etc/conf")).unwrap();
            }),
            ("new empty file", |root| {
                fs::write(root.join("etc/empty"), "").unwrap()
            }),
            ("new empty folder", |root| {
                fs::create_dir(root.join("srv")).unwrap()
            }),
            ("renamed file", |root| {
                fs::rename(root.join("etc/app/conf"), root.join("etc/app/conf2")).unwrap()
            }),
        ];
        for (name, change) in changes {
            let dir = tempfile::tempdir().unwrap();
            let root = overlay(dir.path());
            let before = overlay_digest(&root).unwrap();
            change(&root);
            assert_ne!(overlay_digest(&root).unwrap(), before, "{name} was ignored");
        }
    }

    #[test]
    fn overlay_digest_ignores_times_and_location() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        let a = overlay(first.path());
        let b = overlay(second.path());
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(b.join("etc/app/conf"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(overlay_digest(&a).unwrap(), overlay_digest(&b).unwrap());
    }

    #[test]
    fn layer_key_follows_definition_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let previous = StageKey::from_digest(&[1; 32]);
        let layer = Layer {
            name: "web".into(),
            packages: vec!["nginx".into()],
            overlay: Some(overlay(dir.path())),
            run: vec![vec!["rm".into(), "-f".into(), "/etc/x".into()]],
            enable: vec!["nginx.service".into()],
            upgrade: false,
            ..Default::default()
        };
        let reference = layer_key(&previous, &layer).unwrap();

        let renamed = Layer {
            name: "www".into(),
            ..layer.clone()
        };
        assert_eq!(layer_key(&previous, &renamed).unwrap(), reference);

        let other_base = StageKey::from_digest(&[2; 32]);
        assert_ne!(layer_key(&other_base, &layer).unwrap(), reference);

        let variants = [
            Layer {
                packages: vec!["nginx-light".into()],
                ..layer.clone()
            },
            Layer {
                run: vec![vec!["rm".into(), "-f".into(), "/etc/y".into()]],
                ..layer.clone()
            },
            Layer {
                run: vec![vec!["rm".into()], vec!["-f".into(), "/etc/x".into()]],
                ..layer.clone()
            },
            Layer {
                enable: vec![],
                ..layer.clone()
            },
            Layer {
                overlay: None,
                ..layer.clone()
            },
        ];
        for variant in &variants {
            assert_ne!(
                layer_key(&previous, variant).unwrap(),
                reference,
                "{variant:?} has the key of the original layer"
            );
        }

        fs::write(dir.path().join("overlay/etc/app/conf"), "listen 81;\n").unwrap();
        assert_ne!(
            layer_key(&previous, &layer).unwrap(),
            reference,
            "an overlay edit was ignored"
        );
    }
}
