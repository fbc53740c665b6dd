//! Recipe files: parsing and validation, with no side effects beyond
//! reading the recipe and walking its overlay folders.

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::check::Waiver;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Default OS disk size: 30 GiB.
pub const DEFAULT_DISK_SIZE: u64 = 30 * GIB;
/// Largest OS disk Azure accepts for Linux: 1023 GiB.
pub const MAX_DISK_SIZE: u64 = 1023 * GIB;
pub const MIN_DISK_SIZE: u64 = GIB;

/// A validated recipe.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The recipe file, as given.
    pub path: PathBuf,
    pub name: String,
    pub version: String,
    pub base: Base,
    /// Disk size in bytes, a whole number of MiB.
    pub disk_size: u64,
    pub layers: Vec<Layer>,
    pub waivers: Vec<Waiver>,
}

/// Source of the OS.
#[derive(Clone, Debug)]
pub enum Base {
    /// Debian, bootstrapped from packages.
    Debian(DebianBase),
    /// An existing Linux cloud image, copied file by file.
    Image(ImageBase),
}

impl Base {
    /// Returns the Debian bootstrap settings, or `None` for an image base.
    pub fn debian(&self) -> Option<&DebianBase> {
        match self {
            Base::Debian(d) => Some(d),
            Base::Image(_) => None,
        }
    }

    /// Returns the recipe's package mirror, if it names one.
    pub fn mirror(&self) -> Option<&str> {
        match self {
            Base::Debian(d) => d.mirror.as_deref(),
            Base::Image(_) => None,
        }
    }
}

/// An existing disk image to start from.
#[derive(Clone, Debug)]
pub struct ImageBase {
    /// Absolute path of the image: qcow2, raw, VHD or VHDX.
    pub path: PathBuf,
    /// Expected sha256 of the image file, lowercase hex.
    pub sha256: String,
    /// Package source of the layers.
    pub packages_from: PackageSource,
}

/// The package source of layers on an image base.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackageSource {
    /// The repositories the image itself is configured with.
    ImageRepositories,
    /// A folder of package files (`.deb` or `.rpm`), absolute path.
    Folder(PathBuf),
}

/// A Debian base bootstrapped from packages.
#[derive(Clone, Debug)]
pub struct DebianBase {
    pub distro: String,
    pub release: String,
    /// Debian architecture name (`amd64`).
    pub deb_arch: String,
    /// Mirror URL; `None` means the mirror the host's apt uses.
    pub mirror: Option<String>,
}

/// One layer of the product, applied in order.
#[derive(Clone, Debug, Default)]
pub struct Layer {
    pub name: String,
    pub packages: Vec<String>,
    /// Absolute path of the overlay folder.
    pub overlay: Option<PathBuf>,
    /// Commands run inside the image, each an argv list.
    pub run: Vec<Vec<String>>,
    pub enable: Vec<String>,
    /// Upgrade every installed package before installing `packages`. Set
    /// only on the layer forge adds to an image base.
    pub upgrade: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    name: String,
    version: String,
    base: RawBase,
    #[serde(default)]
    disk: Option<RawDisk>,
    #[serde(default, rename = "layer")]
    layers: Vec<RawLayer>,
    #[serde(default)]
    policy: Option<RawPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBase {
    distro: Option<String>,
    release: Option<String>,
    arch: Option<String>,
    mirror: Option<String>,
    image: Option<String>,
    sha256: Option<String>,
    repository: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisk {
    size: Option<SizeValue>,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a size: a string such as \"30GiB\" or a whole number of bytes"
)]
enum SizeValue {
    Bytes(i64),
    Text(String),
}

impl fmt::Display for SizeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeValue::Bytes(n) => write!(f, "{n}"),
            SizeValue::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    name: String,
    #[serde(default)]
    packages: Vec<String>,
    overlay: Option<String>,
    #[serde(default)]
    run: Vec<Vec<String>>,
    #[serde(default)]
    enable: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    waive: Vec<RawWaiver>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWaiver {
    rule: String,
    reason: String,
}

impl Recipe {
    /// Reads and validates the recipe at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let meta = fs::metadata(path)
            .with_context(|| format!("failed to read recipe {}", path.display()))?;
        if !meta.is_file() {
            bail!("recipe {} is not a regular file", path.display());
        }
        let text = fs::read_to_string(path)
            .with_context(|| format!("failed to read recipe {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Validates recipe text; `path` locates the file for messages and
    /// overlay folders.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let raw: RawRecipe = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: invalid recipe: {}",
                path.display(),
                e.to_string().trim_end()
            )
        })?;
        let file = path.display();
        let recipe_dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();

        check_name(&raw.name, "name").with_context(|| format!("{file}: invalid key `name`"))?;
        check_name(&raw.version, "version")
            .with_context(|| format!("{file}: invalid key `version`"))?;
        let base = validate_base(raw.base, &recipe_dir)
            .with_context(|| format!("{file}: invalid [base]"))?;
        let disk_size = match raw.disk.and_then(|d| d.size) {
            None => DEFAULT_DISK_SIZE,
            Some(v) => {
                parse_disk_size(&v).with_context(|| format!("{file}: invalid key `disk.size`"))?
            }
        };

        let mut layers = Vec::new();
        for (i, raw_layer) in raw.layers.into_iter().enumerate() {
            let label = format!("{file}: layer {} (`{}`)", i + 1, raw_layer.name);
            layers.push(validate_layer(raw_layer, &recipe_dir).with_context(|| label)?);
        }

        let waivers = raw
            .policy
            .map(|p| p.waive)
            .unwrap_or_default()
            .into_iter()
            .map(validate_waiver)
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("{file}: invalid key `policy.waive`"))?;

        Ok(Recipe {
            path: path.to_path_buf(),
            name: raw.name,
            version: raw.version,
            base,
            disk_size,
            layers,
            waivers,
        })
    }

    /// File name stem of the outputs: `<name>-<version>`.
    pub fn artifact_stem(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// Units the product declares, for the `minimal-footprint` rule.
    pub fn declared_units(&self) -> Vec<String> {
        self.layers
            .iter()
            .flat_map(|l| l.enable.iter().cloned())
            .collect()
    }
}

/// Names and versions end up in file names, so they stay in a safe set.
fn check_name(value: &str, key: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
        && !value.starts_with(['.', '-']);
    if !ok {
        let value = clip(value);
        bail!(
            "{key} {value:?} must be 1 to 64 characters of letters, digits, `.`, `_`, `-` or `+`, \
             not starting with `.` or `-`"
        );
    }
    Ok(())
}

/// Shortens a value for an error message.
fn clip(value: &str) -> String {
    const MAX: usize = 80;
    match value.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &value[..i]),
        None => value.to_string(),
    }
}

fn validate_base(raw: RawBase, recipe_dir: &Path) -> Result<Base> {
    if raw.image.is_some() {
        return validate_image_base(raw, recipe_dir).map(Base::Image);
    }
    for (key, value) in [("sha256", &raw.sha256), ("repository", &raw.repository)] {
        if value.is_some() {
            bail!("`{key}` belongs to an image base; add `image = \"path\"` or remove `{key}`");
        }
    }
    let (Some(distro), Some(release), Some(arch)) = (raw.distro, raw.release, raw.arch) else {
        bail!(
            "give either `image` and `sha256` (an existing cloud image), or `distro`, \
             `release` and `arch` (a Debian bootstrap)"
        );
    };
    if distro != "debian" {
        bail!("distro {distro:?} is not supported; use \"debian\", or start from an image with `image`");
    }
    if release != "bookworm" {
        bail!("release {release:?} is not supported; use \"bookworm\" (Debian 12)");
    }
    let deb_arch = check_arch(&arch)?;
    if let Some(m) = &raw.mirror {
        if !(m.starts_with("http://") || m.starts_with("https://") || m.starts_with("file:/")) {
            bail!("mirror {m:?} must be an http://, https:// or file:/ URL");
        }
    }
    Ok(Base::Debian(DebianBase {
        distro,
        release,
        deb_arch: deb_arch.to_string(),
        mirror: raw.mirror,
    }))
}

fn check_arch(arch: &str) -> Result<&'static str> {
    match arch {
        "x86_64" | "amd64" => Ok("amd64"),
        "i386" | "i486" | "i586" | "i686" | "x86" | "armhf" | "armel" | "arm" | "armv7" => {
            bail!(
                "arch {arch:?} is 32-bit; Azure Marketplace images must be 64-bit, use \"x86_64\""
            )
        }
        other => bail!("arch {other:?} is not supported; use \"x86_64\""),
    }
}

fn validate_image_base(raw: RawBase, recipe_dir: &Path) -> Result<ImageBase> {
    for (key, value) in [
        ("distro", &raw.distro),
        ("release", &raw.release),
        ("mirror", &raw.mirror),
    ] {
        if value.is_some() {
            bail!("`{key}` does not apply to an image base: the image decides it; remove `{key}`");
        }
    }
    if let Some(arch) = &raw.arch {
        check_arch(arch)?;
    }
    let written = raw.image.unwrap_or_default();
    if written.trim().is_empty() {
        bail!("image is empty; give the path of a qcow2, raw, VHD or VHDX file");
    }
    let path = recipe_dir.join(&written);
    let meta = fs::metadata(&path)
        .with_context(|| format!("image {written:?} not found at {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "image {written:?} ({}) is not a regular file",
            path.display()
        );
    }
    let path = fs::canonicalize(&path)?;
    let Some(sha256) = raw.sha256 else {
        bail!(
            "an image base needs `sha256`, the checksum of {written:?}; \
             run `sha256sum {}` and copy the digest",
            path.display()
        );
    };
    let sha256 = sha256.trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("sha256 {:?} is not 64 hexadecimal digits", clip(&sha256));
    }
    let packages_from = match raw.repository {
        None => PackageSource::ImageRepositories,
        Some(rel) if rel.trim().is_empty() => {
            bail!("repository is empty; give a folder of packages relative to the recipe")
        }
        Some(rel) => {
            let dir = recipe_dir.join(&rel);
            if !dir.is_dir() {
                bail!(
                    "repository {rel:?} ({}) is not a folder; give a folder of .deb or .rpm \
                     files relative to the recipe",
                    dir.display()
                );
            }
            PackageSource::Folder(fs::canonicalize(&dir)?)
        }
    };
    Ok(ImageBase {
        path,
        sha256,
        packages_from,
    })
}

/// Parses `30GiB`, `512MiB`, `1TiB` or a byte count, and checks limits.
fn parse_disk_size(value: &SizeValue) -> Result<u64> {
    let bytes = match value {
        SizeValue::Bytes(n) if *n > 0 => *n as u64,
        SizeValue::Bytes(_) => bail!("size {value} must be positive"),
        SizeValue::Text(s) => parse_size_text(s.trim())
            .with_context(|| format!("size {value} is not a size like \"30GiB\" or \"4096MiB\""))?,
    };
    if bytes % MIB != 0 {
        bail!("size {value} ({bytes} bytes) is not a whole number of MiB");
    }
    if bytes > MAX_DISK_SIZE {
        bail!("size {value} is over the 1023 GiB maximum of an Azure Linux OS disk");
    }
    if bytes < MIN_DISK_SIZE {
        bail!("size {value} is under the 1 GiB minimum of an Azure Linux OS disk");
    }
    Ok(bytes)
}

/// Parses a size such as `30GiB`, `512MiB`, `1TiB` or a byte count.
pub fn parse_size_text(s: &str) -> Result<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if unit.starts_with(['.', ',']) {
        bail!("fractions are not allowed; give a whole number of MiB such as \"1536MiB\"");
    }
    let n: u64 = digits
        .parse()
        .context("it must start with a whole, non-negative number")?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" | "M" => MIB,
        "GiB" | "G" => GIB,
        "TiB" | "T" => 1 << 40,
        other => bail!("unknown unit {other:?}; use MiB, GiB or TiB"),
    };
    n.checked_mul(factor).context("size overflows")
}

fn validate_layer(raw: RawLayer, recipe_dir: &Path) -> Result<Layer> {
    check_name(&raw.name, "name")?;
    for p in &raw.packages {
        if !is_package_spec(p) {
            bail!(
                "packages: {p:?} is not a package name (letters, digits, `+-._`, optionally \
                 `name=version`)"
            );
        }
    }
    for (i, argv) in raw.run.iter().enumerate() {
        if argv.is_empty() || argv[0].is_empty() {
            bail!("run[{i}] is empty; give a command as a list like [\"systemctl\", \"enable\", \"x\"]");
        }
    }
    for unit in &raw.enable {
        if !is_unit_name(unit) {
            bail!("enable: {unit:?} is not a systemd unit name");
        }
    }
    let overlay = match raw.overlay {
        None => None,
        Some(rel) if rel.trim().is_empty() => {
            bail!("overlay is empty; give a folder path relative to the recipe")
        }
        Some(rel) => Some(validate_overlay(&recipe_dir.join(&rel), &rel)?),
    };
    Ok(Layer {
        name: raw.name,
        packages: raw.packages,
        overlay,
        run: raw.run,
        enable: raw.enable,
        upgrade: false,
    })
}

fn is_package_spec(p: &str) -> bool {
    let (name, version) = match p.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (p, None),
    };
    // apt reads a trailing `-` as "remove" when no package has the whole
    // name, so a name must not end with one. A trailing `+` is kept, for
    // names such as g++. rpm names may have capitals and underscores
    // (WALinuxAgent, python3_pyasn1); Debian's may not, and apt rejects
    // those itself.
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '+')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
    });
    name_ok && version_ok
}

fn is_unit_name(u: &str) -> bool {
    !u.is_empty()
        && !u.starts_with(['-', '.'])
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c))
}

/// Checks that the overlay exists and that no symlink in it leaves it.
///
/// Absolute symlink targets name paths inside the image and are kept; a
/// relative target that climbs above the overlay folder is rejected.
fn validate_overlay(dir: &Path, as_written: &str) -> Result<PathBuf> {
    let meta = fs::metadata(dir).with_context(|| {
        format!(
            "overlay folder {as_written:?} not found at {}",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!("overlay {as_written:?} ({}) is not a folder", dir.display());
    }
    let root = fs::canonicalize(dir)?;
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("failed to read {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                let rel_dir = d.strip_prefix(&root).expect("walk stays under root");
                // A chain of relative links can climb out even when each
                // link alone does not, so the resolved path is checked too.
                let resolved_outside = target.is_relative()
                    && fs::canonicalize(&path).is_ok_and(|real| !real.starts_with(&root));
                if target.is_relative() && (escapes(rel_dir, &target) || resolved_outside) {
                    bail!(
                        "overlay symlink {} points to {} outside the overlay folder; \
                         use a target inside it or an absolute path in the image",
                        path.display(),
                        target.display()
                    );
                }
            } else if !ft.is_file() {
                bail!(
                    "overlay entry {} is not a file, folder or symlink",
                    path.display()
                );
            }
        }
    }
    Ok(root)
}

/// Returns whether `target`, relative to folder `from` (relative to the overlay
/// root), climbs above the root.
fn escapes(from: &Path, target: &Path) -> bool {
    let mut depth: i64 = from.components().count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

fn validate_waiver(raw: RawWaiver) -> Result<Waiver> {
    crate::check::policy::validate_waiver(&raw.rule, &raw.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_of_each_family_pass() {
        for name in [
            "nginx",
            "libssl3",
            "g++",
            "WALinuxAgent",
            "python3_pyasn1",
            "nginx=1.22.1-9",
        ] {
            assert!(is_package_spec(name), "{name}");
        }
    }

    #[test]
    fn package_names_apt_misreads_fail() {
        for name in ["nginx-", "-nginx", "a", "ng inx", "nginx="] {
            assert!(!is_package_spec(name), "{name}");
        }
    }
}
