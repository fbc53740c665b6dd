//! Recipe files: parsing and validation, with no side effects beyond
//! reading the recipe and walking its overlay folders.

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::check::{Waiver, WinBuild, WindowsPolicy};

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
    /// The `[windows]` table; default on other bases.
    pub windows: WindowsPolicy,
}

/// Source of the OS.
#[derive(Clone, Debug)]
pub enum Base {
    /// Debian, bootstrapped from packages.
    Debian(DebianBase),
    /// An existing Linux cloud image, copied file by file.
    Image(ImageBase),
    /// A generalized Windows Server disk, copied whole and changed offline.
    Windows(WindowsBase),
}

impl Base {
    /// Returns the Debian bootstrap settings, or `None` for an image base.
    pub fn debian(&self) -> Option<&DebianBase> {
        match self {
            Base::Debian(d) => Some(d),
            Base::Image(_) | Base::Windows(_) => None,
        }
    }

    /// Returns the recipe's package mirror, if it names one.
    pub fn mirror(&self) -> Option<&str> {
        match self {
            Base::Debian(d) => d.mirror.as_deref(),
            Base::Image(_) | Base::Windows(_) => None,
        }
    }

    /// Returns the Windows base, or `None` for a Linux one.
    pub fn windows(&self) -> Option<&WindowsBase> {
        match self {
            Base::Windows(w) => Some(w),
            _ => None,
        }
    }
}

/// A Windows Server disk image to start from.
#[derive(Clone, Debug)]
pub struct WindowsBase {
    /// Absolute path of the image: a fixed VHD or raw disk, or a dynamic
    /// VHD, VHDX or qcow2 file that the build converts.
    pub path: PathBuf,
    /// Expected sha256 of the image file, lowercase hex.
    pub sha256: String,
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
    /// Registry values a layer sets on a Windows base, in order.
    pub registry: Vec<RegistryValue>,
    /// Commands a layer runs once at the first boot of a Windows VM.
    pub first_boot: Vec<String>,
}

/// The registry hives a recipe may set values in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiveName {
    Software,
    System,
}

impl HiveName {
    /// Returns the name as it follows `HKLM\` in a key.
    pub fn as_str(self) -> &'static str {
        match self {
            HiveName::Software => "SOFTWARE",
            HiveName::System => "SYSTEM",
        }
    }
}

/// One registry value a layer sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryValue {
    /// The key as the recipe writes it, for messages.
    pub key: String,
    pub hive: HiveName,
    /// Key names below the hive's root. In SYSTEM, a first name
    /// `CurrentControlSet` is replaced by the control set that
    /// `SYSTEM\Select\Current` names.
    pub path: Vec<String>,
    /// Value name; empty for the key's default value.
    pub name: String,
    pub data: RegData,
}

/// The data of a registry value, by type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegData {
    String(String),
    ExpandString(String),
    MultiString(Vec<String>),
    Dword(u32),
    Qword(u64),
    Binary(Vec<u8>),
}

/// Registry value types, as the hive stores them.
pub const REG_SZ: u32 = 1;
pub const REG_EXPAND_SZ: u32 = 2;
pub const REG_BINARY: u32 = 3;
pub const REG_DWORD: u32 = 4;
pub const REG_MULTI_SZ: u32 = 7;
pub const REG_QWORD: u32 = 11;

impl RegData {
    /// Returns the value's type and its bytes as the hive stores them:
    /// strings in UTF-16LE with a terminating NUL, a multi-string with an
    /// empty string after the last, numbers little-endian.
    pub fn encode(&self) -> (u32, Vec<u8>) {
        match self {
            RegData::String(s) => (REG_SZ, utf16z(s)),
            RegData::ExpandString(s) => (REG_EXPAND_SZ, utf16z(s)),
            RegData::MultiString(list) => {
                let mut bytes = Vec::new();
                for s in list {
                    bytes.extend(utf16z(s));
                }
                bytes.extend([0, 0]);
                (REG_MULTI_SZ, bytes)
            }
            RegData::Dword(n) => (REG_DWORD, n.to_le_bytes().to_vec()),
            RegData::Qword(n) => (REG_QWORD, n.to_le_bytes().to_vec()),
            RegData::Binary(b) => (REG_BINARY, b.clone()),
        }
    }
}

/// Encodes a string as UTF-16LE followed by a NUL character.
pub fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(std::iter::once(0))
        .flat_map(u16::to_le_bytes)
        .collect()
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
    #[serde(default)]
    windows: Option<RawWindows>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindows {
    min_build: Option<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    firewall_allow: Vec<String>,
    #[serde(default)]
    accounts: Vec<String>,
    bitlocker: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowsImage {
    image: String,
    sha256: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    key: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    value: toml::Value,
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
    windows: Option<RawWindowsImage>,
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
    #[serde(default)]
    registry: Vec<RawRegistry>,
    #[serde(default)]
    first_boot: Vec<String>,
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
        let is_windows = matches!(base, Base::Windows(_));
        if is_windows && raw.disk.is_some() {
            bail!(
                "{file}: invalid key `disk.size`: it does not apply to a Windows base, whose VHD \
                 keeps the size of the base image; remove [disk]"
            );
        }
        let disk_size = match raw.disk.and_then(|d| d.size) {
            None => DEFAULT_DISK_SIZE,
            Some(v) => {
                parse_disk_size(&v).with_context(|| format!("{file}: invalid key `disk.size`"))?
            }
        };
        let windows = match raw.windows {
            None => WindowsPolicy::default(),
            Some(_) if !is_windows => bail!(
                "{file}: invalid table [windows]: it applies only to a Windows base \
                 (`[base] windows = {{ image = ..., sha256 = ... }}`); remove it"
            ),
            Some(w) => validate_windows(w).with_context(|| format!("{file}: invalid [windows]"))?,
        };

        let mut layers = Vec::new();
        for (i, raw_layer) in raw.layers.into_iter().enumerate() {
            let label = format!("{file}: layer {} (`{}`)", i + 1, raw_layer.name);
            layers.push(validate_layer(raw_layer, &recipe_dir, is_windows).with_context(|| label)?);
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
            windows,
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
    if raw.windows.is_some() {
        return validate_windows_base(raw, recipe_dir).map(Base::Windows);
    }
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

fn validate_windows_base(raw: RawBase, recipe_dir: &Path) -> Result<WindowsBase> {
    for (key, value) in [
        ("distro", raw.distro.is_some()),
        ("release", raw.release.is_some()),
        ("arch", raw.arch.is_some()),
        ("mirror", raw.mirror.is_some()),
        ("image", raw.image.is_some()),
        ("sha256", raw.sha256.is_some()),
        ("repository", raw.repository.is_some()),
    ] {
        if value {
            bail!(
                "`{key}` cannot be combined with `windows`: a Windows base is only \
                 `windows = {{ image = \"path\", sha256 = \"...\" }}`; remove `{key}`"
            );
        }
    }
    let windows = raw.windows.expect("called for a Windows base");
    let (path, sha256) = validate_pinned_image(&windows.image, &windows.sha256, recipe_dir)
        .context("invalid key `windows`")?;
    Ok(WindowsBase { path, sha256 })
}

/// Checks an image path relative to the recipe and its sha256 pin; returns
/// the absolute path and the digest in lowercase.
fn validate_pinned_image(
    written: &str,
    sha256: &str,
    recipe_dir: &Path,
) -> Result<(PathBuf, String)> {
    if written.trim().is_empty() {
        bail!("image is empty; give the path of the disk image relative to the recipe");
    }
    let path = recipe_dir.join(written);
    let meta = fs::metadata(&path)
        .with_context(|| format!("image {written:?} not found at {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "image {written:?} ({}) is not a regular file",
            path.display()
        );
    }
    let path = fs::canonicalize(&path)?;
    let sha256 = sha256.trim().to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "sha256 {:?} is not 64 hexadecimal digits; run `sha256sum {}` and copy the digest",
            clip(&sha256),
            path.display()
        );
    }
    Ok((path, sha256))
}

/// User names no enabled account of a Windows image may have.
const RESERVED_USER_NAMES: [&str; 3] = ["administrator", "admin", "root"];

/// The ways BitLocker may be arranged for a Windows image.
pub const BITLOCKER_CHOICES: [&str; 2] = ["azure-disk-encryption", "first-boot"];

fn validate_windows(raw: RawWindows) -> Result<WindowsPolicy> {
    let min_build = match raw.min_build {
        None => None,
        Some(text) => Some(
            text.parse::<WinBuild>()
                .map_err(anyhow::Error::msg)
                .context("invalid key `min_build`")?,
        ),
    };
    for (key, names) in [
        ("deny", &raw.deny),
        ("firewall_allow", &raw.firewall_allow),
        ("accounts", &raw.accounts),
    ] {
        for name in names {
            if name.trim().is_empty() || name.chars().any(|c| c.is_control() || c == '\\') {
                bail!(
                    "invalid key `{key}`: {:?} is not a name; give names without \
                     backslashes or control characters",
                    clip(name)
                );
            }
        }
    }
    if let Some(name) = raw.accounts.iter().find(|a| {
        RESERVED_USER_NAMES
            .iter()
            .any(|r| a.eq_ignore_ascii_case(r))
    }) {
        bail!(
            "invalid key `accounts`: {name:?} is a reserved user name ({}), which an enabled \
             account of a Marketplace image must not have; rename the account on the VM and \
             name the new one here",
            RESERVED_USER_NAMES.join(", ")
        );
    }
    let bitlocker = raw
        .bitlocker
        .unwrap_or_else(|| BITLOCKER_CHOICES[0].to_owned());
    if !BITLOCKER_CHOICES.contains(&bitlocker.as_str()) {
        bail!(
            "invalid key `bitlocker`: {:?} is not one of \"azure-disk-encryption\" \
             (Azure encrypts the disks when the VM is deployed) or \"first-boot\" \
             (BitLocker is turned on at the first boot, which needs a VM with a vTPM)",
            clip(&bitlocker)
        );
    }
    Ok(WindowsPolicy {
        min_build,
        deny: raw.deny,
        firewall_allow: raw.firewall_allow,
        accounts: raw.accounts,
        first_boot: Vec::new(),
        bitlocker: Some(bitlocker),
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

fn validate_layer(raw: RawLayer, recipe_dir: &Path, windows: bool) -> Result<Layer> {
    check_name(&raw.name, "name")?;
    if windows {
        for (key, used) in [
            ("packages", !raw.packages.is_empty()),
            ("run", !raw.run.is_empty()),
            ("enable", !raw.enable.is_empty()),
        ] {
            if used {
                bail!(
                    "`{key}` applies only to a Linux base; on a Windows base a layer has \
                     `overlay`, `registry` and `first_boot`"
                );
            }
        }
    } else {
        for (key, used) in [
            ("registry", !raw.registry.is_empty()),
            ("first_boot", !raw.first_boot.is_empty()),
        ] {
            if used {
                bail!(
                    "`{key}` applies only to a Windows base; on a Linux base a layer has \
                     `packages`, `overlay`, `run` and `enable`"
                );
            }
        }
    }
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
    let registry = raw
        .registry
        .into_iter()
        .enumerate()
        .map(|(i, r)| validate_registry(r).with_context(|| format!("invalid `registry[{i}]`")))
        .collect::<Result<Vec<_>>>()?;
    for (i, command) in raw.first_boot.iter().enumerate() {
        if command.trim().is_empty() {
            bail!(
                "first_boot[{i}] is empty; give a command line such as 'C:\\App\\setup.cmd /quiet'"
            );
        }
        if command.chars().any(|c| c.is_control()) {
            bail!(
                "first_boot[{i}] {:?} contains a line break or control character; give one \
                 command line per entry",
                clip(command)
            );
        }
    }
    let overlay = match raw.overlay {
        None => None,
        Some(rel) if rel.trim().is_empty() => {
            bail!("overlay is empty; give a folder path relative to the recipe")
        }
        Some(rel) => {
            let dir = validate_overlay(&recipe_dir.join(&rel), &rel)?;
            if windows {
                validate_windows_overlay(&dir, &rel)?;
            }
            Some(dir)
        }
    };
    Ok(Layer {
        name: raw.name,
        packages: raw.packages,
        overlay,
        run: raw.run,
        enable: raw.enable,
        upgrade: false,
        registry,
        first_boot: raw.first_boot,
    })
}

/// Checks one `registry` entry and encodes its value.
fn validate_registry(raw: RawRegistry) -> Result<RegistryValue> {
    let key = raw.key.trim_end_matches('\\');
    let parts: Vec<&str> = key.split('\\').collect();
    let hive = match parts.as_slice() {
        [root, hive, _, ..] if root.eq_ignore_ascii_case("HKLM") => {
            if hive.eq_ignore_ascii_case("SOFTWARE") {
                Some(HiveName::Software)
            } else if hive.eq_ignore_ascii_case("SYSTEM") {
                Some(HiveName::System)
            } else {
                None
            }
        }
        _ => None,
    };
    let Some(hive) = hive else {
        bail!(
            "key `{}` is outside the hives forge edits; it must start with \
             HKLM\\SOFTWARE\\ or HKLM\\SYSTEM\\ (per-user keys cannot be set offline)",
            clip(&raw.key)
        );
    };
    let path: Vec<String> = parts[2..].iter().map(|p| p.to_string()).collect();
    if path
        .iter()
        .any(|p| p.is_empty() || p.chars().any(|c| c.is_control()))
    {
        bail!(
            "key `{}` has an empty key name or a control character between backslashes",
            clip(&raw.key)
        );
    }
    if raw.name.chars().any(|c| c.is_control()) {
        bail!(
            "value name {:?} contains a control character",
            clip(&raw.name)
        );
    }
    let data = parse_reg_data(&raw.kind, &raw.value)
        .with_context(|| format!("value {:?} of key `{}`", raw.name, clip(&raw.key)))?;
    Ok(RegistryValue {
        key: raw.key,
        hive,
        path,
        name: raw.name,
        data,
    })
}

fn parse_reg_data(kind: &str, value: &toml::Value) -> Result<RegData> {
    use toml::Value as V;
    let want = |what: &str| -> anyhow::Error {
        anyhow::anyhow!("type {kind:?} needs {what}, not {value}")
    };
    Ok(match kind {
        "string" | "expand_string" => {
            let V::String(s) = value else {
                return Err(want("a string"));
            };
            if s.contains('\0') {
                bail!("a string value cannot contain a NUL character");
            }
            if kind == "string" {
                RegData::String(s.clone())
            } else {
                RegData::ExpandString(s.clone())
            }
        }
        "multi_string" => {
            let V::Array(items) = value else {
                return Err(want("an array of strings"));
            };
            let mut list = Vec::new();
            for item in items {
                match item {
                    V::String(s) if !s.is_empty() && !s.contains('\0') => list.push(s.clone()),
                    _ => return Err(want("an array of non-empty strings")),
                }
            }
            RegData::MultiString(list)
        }
        "dword" => match value {
            V::Integer(n) if (0..=i64::from(u32::MAX)).contains(n) => RegData::Dword(*n as u32),
            _ => return Err(want("an integer from 0 to 4294967295")),
        },
        "qword" => match value {
            V::Integer(n) if *n >= 0 => RegData::Qword(*n as u64),
            _ => return Err(want("a non-negative integer")),
        },
        "binary" => {
            let V::String(s) = value else {
                return Err(want("a string of hexadecimal digits"));
            };
            let digits: String = s
                .chars()
                .filter(|c| !c.is_whitespace() && *c != ',')
                .collect();
            if !digits.len().is_multiple_of(2) || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(want(
                    "an even number of hexadecimal digits, such as \"01ab\"",
                ));
            }
            RegData::Binary(
                (0..digits.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex checked"))
                    .collect(),
            )
        }
        other => bail!(
            "type {other:?} is not one of string, expand_string, multi_string, dword, qword \
             or binary"
        ),
    })
}

/// File name extensions of private keys that forge removes from Windows
/// volumes; an overlay must not bring them.
pub const PRIVATE_KEY_EXTENSIONS: [&str; 3] = ["pfx", "p12", "pvk"];

/// Checks that an overlay for a Windows volume contains only files and folders
/// whose names Windows accepts, and no private keys.
fn validate_windows_overlay(root: &Path, as_written: &str) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("failed to read {}", d.display()))? {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_symlink() {
                bail!(
                    "overlay {as_written:?}: {} is a symlink; an overlay for a Windows base \
                     contains files and folders only",
                    path.display()
                );
            }
            let name = entry.file_name();
            let name = name.to_str().with_context(|| {
                format!(
                    "overlay {as_written:?}: {} is not a UTF-8 name",
                    path.display()
                )
            })?;
            if name
                .chars()
                .any(|c| c.is_control() || "<>:\"|?*\\".contains(c))
                || name.ends_with(['.', ' '])
            {
                bail!(
                    "overlay {as_written:?}: {} has a name Windows does not accept (no \
                     <>:\"|?*\\ or control characters, no trailing dot or space)",
                    path.display()
                );
            }
            let extension = Path::new(name)
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if ft.is_file()
                && extension.is_some_and(|e| PRIVATE_KEY_EXTENSIONS.contains(&e.as_str()))
            {
                bail!(
                    "overlay {as_written:?}: {} is a private key file, which the build removes \
                     from Windows images; import certificates with a first_boot command instead",
                    path.display()
                );
            }
            if ft.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
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

    fn windows_recipe(rest: &str) -> Result<Recipe> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.vhd"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("payload")).unwrap();
        let text = format!(
            "name = \"w\"\nversion = \"1\"\n[base]\nwindows = {{ image = \"base.vhd\", \
             sha256 = \"{}\" }}\n{rest}",
            "AB".repeat(32)
        );
        Recipe::parse(&text, &dir.path().join("r.toml"))
    }

    #[test]
    fn windows_recipe_parses() {
        let r = windows_recipe(
            r#"
[windows]
min_build = "20348.2607"
deny = ["Web-Server"]
firewall_allow = ["Contoso-HTTPS-In"]
accounts = ["contoso-svc"]
bitlocker = "first-boot"

[[layer]]
name = "contoso"
overlay = "payload"
registry = [
  { key = 'HKLM\SOFTWARE\Contoso\App', name = "Mode", type = "dword", value = 1 },
  { key = 'hklm\system\CurrentControlSet\Services\App\', name = "", type = "string", value = "x" },
]
first_boot = ['C:\Contoso\install.cmd /quiet']
"#,
        )
        .unwrap();
        let base = r.base.windows().unwrap();
        assert_eq!(base.sha256, "ab".repeat(32));
        assert_eq!(r.windows.min_build.unwrap().to_string(), "20348.2607");
        assert_eq!(r.windows.bitlocker.as_deref(), Some("first-boot"));
        assert_eq!(r.windows.accounts, ["contoso-svc"]);
        let layer = &r.layers[0];
        assert_eq!(layer.first_boot, ["C:\\Contoso\\install.cmd /quiet"]);
        assert_eq!(layer.registry[0].hive, HiveName::Software);
        assert_eq!(layer.registry[0].path, ["Contoso", "App"]);
        assert_eq!(layer.registry[0].data, RegData::Dword(1));
        assert_eq!(layer.registry[1].hive, HiveName::System);
        assert_eq!(
            layer.registry[1].path,
            ["CurrentControlSet", "Services", "App"]
        );
        assert_eq!(layer.registry[1].name, "");
    }

    #[test]
    fn windows_accounts_reject_reserved_names() {
        let err = windows_recipe("[windows]\naccounts = [\"Administrator\"]\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("\"Administrator\" is a reserved user name"),
            "{text}"
        );
    }

    #[test]
    fn windows_bitlocker_defaults_to_azure_disk_encryption() {
        let r = windows_recipe("[windows]\n").unwrap();
        assert_eq!(
            r.windows.bitlocker.as_deref(),
            Some("azure-disk-encryption")
        );
        assert!(windows_recipe("").unwrap().windows.bitlocker.is_none());
    }

    #[test]
    fn registry_data_encodes_as_the_hive_stores_it() {
        let value = |kind: &str, v: &str| {
            let v: toml::Value =
                toml::from_str::<toml::Table>(&format!("v = {v}")).unwrap()["v"].clone();
            parse_reg_data(kind, &v)
        };
        let (t, b) = value("string", "\"Ab\"").unwrap().encode();
        assert_eq!((t, b), (REG_SZ, vec![b'A', 0, b'b', 0, 0, 0]));
        let (t, b) = value("multi_string", "[\"a\", \"b\"]").unwrap().encode();
        assert_eq!(
            (t, b),
            (REG_MULTI_SZ, vec![b'a', 0, 0, 0, b'b', 0, 0, 0, 0, 0])
        );
        let (t, b) = value("binary", "\"01 ab\"").unwrap().encode();
        assert_eq!((t, b), (REG_BINARY, vec![1, 0xab]));
        let (t, b) = value("qword", "5").unwrap().encode();
        assert_eq!((t, b), (REG_QWORD, vec![5, 0, 0, 0, 0, 0, 0, 0]));
        assert_eq!(
            value("expand_string", "\"%x%\"").unwrap().encode().0,
            REG_EXPAND_SZ
        );
        for (kind, v) in [
            ("dword", "-1"),
            ("dword", "4294967296"),
            ("binary", "\"abc\""),
            ("multi_string", "\"a\""),
            ("reg_sz", "\"a\""),
        ] {
            assert!(value(kind, v).is_err(), "{kind} {v}");
        }
    }

    #[test]
    fn windows_overlay_names_and_keys_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pfx"), b"x").unwrap();
        let err = validate_windows_overlay(dir.path(), "ov").unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a:b"), b"x").unwrap();
        let err = validate_windows_overlay(dir.path(), "ov").unwrap_err();
        assert!(err.to_string().contains("Windows does not accept"), "{err}");
    }

    #[test]
    fn package_names_apt_misreads_fail() {
        for name in ["nginx-", "-nginx", "a", "ng inx", "nginx="] {
            assert!(!is_package_spec(name), "{name}");
        }
    }
}
