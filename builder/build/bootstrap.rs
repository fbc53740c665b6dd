//! Bootstraps the Debian root tree with mmdebstrap.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use sha2::{Digest, Sha256};

use super::Context as BuildContext;
use crate::exec::Cmd;
use crate::recipe::DebianBase;

/// Packages every image gets, beyond mmdebstrap's `apt` variant.
///
/// cloud-init provisions the VM on Azure (user, SSH key, host name, disk
/// growth) and the Azure Linux Agent reports health and runs extensions;
/// this is the split Debian's own Azure images use.
pub const BASE_PACKAGES: &[&str] = &[
    "systemd-sysv",
    "udev",
    "dbus",
    "linux-image-cloud-amd64",
    "initramfs-tools",
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub2-common",
    "e2fsprogs",
    "openssh-server",
    "waagent",
    "cloud-init",
    "cloud-guest-utils",
    "python3",
    "python3-pyasn1",
    "openssl",
    "ifupdown",
    "isc-dhcp-client",
    "iproute2",
    "netbase",
    "ca-certificates",
    "sudo",
];

/// apt preferences file that pins a `--locked` build to the lock's
/// versions while packages are installed; removed before hardening. It is
/// the main preferences file, not one in `preferences.d`, because creating
/// that folder would change its time stamp from the one the apt package
/// gives it, and with it the image's bytes.
pub const LOCK_PREFERENCES: &str = "/etc/apt/preferences";

/// Debian archive locations the build installs from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    pub main: String,
    pub security: String,
}

impl Mirrors {
    /// The (archive URL, suite) pairs of a release: main, updates and
    /// security.
    pub fn suites(&self, release: &str) -> Vec<(String, String)> {
        vec![
            (self.main.clone(), release.to_string()),
            (self.main.clone(), format!("{release}-updates")),
            (self.security.clone(), format!("{release}-security")),
        ]
    }

    /// The apt source lines for a release: main, updates and security.
    pub fn source_lines(&self, release: &str) -> Vec<String> {
        self.suites(release)
            .into_iter()
            .map(|(url, suite)| format!("deb {url} {suite} main"))
            .collect()
    }
}

/// Finds the Debian mirrors in the host's apt sources, the recipe's
/// `mirror` taking the place of the main one.
pub fn find_mirrors(release: &str, recipe_mirror: Option<&str>) -> Result<Mirrors> {
    let mut entries = Vec::new();
    for dir_entry in fs::read_dir("/etc/apt/sources.list.d")
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = dir_entry.path();
        let text = fs::read_to_string(&path).unwrap_or_default();
        match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => entries.extend(parse_deb822(&text)),
            Some("list") => entries.extend(parse_one_line(&text)),
            _ => {}
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_one_line(&text));
    }
    let host_main = entries
        .iter()
        .find(|(_, s)| s == release)
        .map(|(u, _)| u.clone());
    let security_suite = format!("{release}-security");
    let host_security = entries
        .iter()
        .find(|(_, s)| *s == security_suite)
        .map(|(u, _)| u.clone());

    let main = match (recipe_mirror, host_main) {
        (Some(m), _) => m.to_string(),
        (None, Some(m)) => m,
        (None, None) => bail!(
            "no apt source for {release} in /etc/apt/sources.list(.d); \
             set `mirror` in the recipe's [base]"
        ),
    };
    let security = host_security.with_context(|| {
        format!("no apt source for {security_suite} in /etc/apt/sources.list(.d); add one so the image gets security updates")
    })?;
    Ok(Mirrors {
        main: main.trim_end_matches('/').into(),
        security: security.trim_end_matches('/').into(),
    })
}

/// (URI, suite) pairs of `deb` entries in deb822 format.
fn parse_deb822(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
                .map(|v| v.trim().to_string())
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        if !(enabled && is_deb) {
            continue;
        }
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        for uri in uris.split_whitespace() {
            for suite in suites.split_whitespace() {
                out.push((uri.to_string(), suite.to_string()));
            }
        }
    }
    out
}

/// (URI, suite) pairs of `deb` lines in one-line format.
fn parse_one_line(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.split('#').next()?.trim();
            let mut words = l.split_whitespace().filter(|w| !w.starts_with('['));
            if words.next()? != "deb" {
                return None;
            }
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// mmdebstrap options that shape the tree, apart from the suites, the
/// package list and the apt options.
const MMDEBSTRAP_OPTIONS: &[&str] = &[
    "--mode=root",
    "--variant=apt",
    "--format=directory",
    "--components=main",
    // The package index stays in the image: the check pass compares the
    // installed versions with it.
    "--skip=cleanup/apt/lists",
    "--skip=download/empty",
];

/// What the bootstrap hands to mmdebstrap, apart from the package cache.
/// Every field is part of the bootstrap's stage key.
#[derive(Clone, Debug)]
pub struct Plan {
    pub release: String,
    pub deb_arch: String,
    pub mirrors: Mirrors,
    /// Fixed mmdebstrap options ([`MMDEBSTRAP_OPTIONS`]).
    pub mmdebstrap_options: Vec<String>,
    /// Packages beyond the `apt` variant ([`BASE_PACKAGES`]).
    pub packages: Vec<String>,
    /// apt configuration lines, each passed as `--aptopt`.
    pub apt_options: Vec<String>,
}

impl Plan {
    /// Finds the mirrors and apt options for the recipe's base.
    /// `lock_mirror` is the lock file's mirror, used when the recipe names
    /// none.
    pub fn new(base: &DebianBase, lock_mirror: Option<&str>) -> Result<Self> {
        let mirrors = find_mirrors(&base.release, base.mirror.as_deref().or(lock_mirror))?;
        let mut apt_options = Vec::new();
        if host_skips_valid_until() {
            apt_options.push("Acquire::Check-Valid-Until \"false\"".to_string());
        }
        Ok(Self {
            release: base.release.clone(),
            deb_arch: base.deb_arch.clone(),
            mirrors,
            mmdebstrap_options: MMDEBSTRAP_OPTIONS.iter().map(|o| o.to_string()).collect(),
            packages: BASE_PACKAGES.iter().map(|p| p.to_string()).collect(),
            apt_options,
        })
    }

    pub fn source_lines(&self) -> Vec<String> {
        self.mirrors.source_lines(&self.release)
    }

    /// URLs of the `InRelease` file of each suite the bootstrap uses.
    pub fn index_urls(&self) -> Vec<String> {
        self.mirrors
            .suites(&self.release)
            .into_iter()
            .map(|(url, suite)| format!("{url}/dists/{suite}/InRelease"))
            .collect()
    }
}

/// One `InRelease` file of the mirror, which names and hashes every package
/// index of its suite, so it changes whenever any package does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRelease {
    pub url: String,
    pub sha256: [u8; 32],
    /// The file's `Date` field in seconds since the Unix epoch.
    pub date_epoch: u64,
}

/// Downloads the `InRelease` file of each suite of `plan` with apt's own
/// downloader, which uses the host's apt configuration (proxies included).
pub fn fetch_index_releases(plan: &Plan) -> Result<Vec<IndexRelease>> {
    let dir = tempfile::Builder::new()
        .prefix("forge-inrelease-")
        .tempdir()
        .context("failed to create a temporary folder")?;
    allow_apt_sandbox_user(dir.path());
    let mut releases = Vec::new();
    for (i, url) in plan.index_urls().into_iter().enumerate() {
        let dest = dir.path().join(format!("{i}-InRelease"));
        Cmd::new(APT_HELPER)
            .arg("download-file")
            .arg(&url)
            .arg(&dest)
            .run()
            .with_context(|| {
                format!(
                    "failed to download {url}, which identifies the mirror's current package \
                     indexes for the stage cache; check the mirror and the network, because \
                     the bootstrap needs them too"
                )
            })?;
        let content =
            fs::read(&dest).with_context(|| format!("failed to read {}", dest.display()))?;
        let date_epoch = super::mirror::release_date(&content).with_context(|| url.clone())?;
        releases.push(IndexRelease {
            url,
            sha256: Sha256::digest(&content).into(),
            date_epoch,
        });
    }
    Ok(releases)
}

/// apt's downloader, part of the apt package.
const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

/// Lets apt's unprivileged `_apt` user write into `dir`, so apt downloads
/// in its sandbox rather than as root. Without that user apt downloads as
/// root and warns, which is harmless.
fn allow_apt_sandbox_user(dir: &Path) {
    // SAFETY: getpwnam takes a NUL-terminated name and returns a pointer
    // to static storage or null; the uid is copied out at once.
    let uid = unsafe {
        let entry = libc::getpwnam(c"_apt".as_ptr());
        if entry.is_null() {
            return;
        }
        (*entry).pw_uid
    };
    if let Err(e) = std::os::unix::fs::chown(dir, Some(uid), None) {
        tracing::debug!("failed to hand {} to _apt: {e}", dir.display());
    }
}

/// Returns the sha256 of each `InRelease` file in the tree's apt lists:
/// the indexes the bootstrap really used.
pub fn tree_index_digests(tree: &Path) -> Result<Vec<[u8; 32]>> {
    let lists = tree.join("var/lib/apt/lists");
    let mut digests = Vec::new();
    for entry in
        fs::read_dir(&lists).with_context(|| format!("failed to list {}", lists.display()))?
    {
        let path = entry?.path();
        if path.to_string_lossy().ends_with("_InRelease") {
            let content =
                fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
            digests.push(Sha256::digest(&content).into());
        }
    }
    Ok(digests)
}

/// Runs mmdebstrap into `ctx.tree` as `plan` says, reusing downloaded
/// packages from the package cache folder and saving new ones there.
pub fn run(ctx: &BuildContext, plan: &Plan) -> Result<()> {
    let cache = ctx.cache_dir.join("debs");
    fs::create_dir_all(&cache).with_context(|| format!("failed to create {}", cache.display()))?;

    let mut cmd = super::chroot::isolated()
        .env("SOURCE_DATE_EPOCH", ctx.epoch.to_string())
        .arg("mmdebstrap")
        .args(&plan.mmdebstrap_options)
        .arg(format!("--architectures={}", plan.deb_arch))
        .arg(format!("--include={}", plan.packages.join(",")))
        .arg("--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives")
        .arg(format!(
            "--setup-hook=sync-in {} /var/cache/apt/archives",
            cache.display()
        ))
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {}",
            cache.display()
        ));
    if let Some(lock) = &ctx.lock {
        let prefs = ctx.tree.with_file_name("forge-lock.pref");
        fs::write(&prefs, lock.apt_preferences())
            .with_context(|| format!("failed to write {}", prefs.display()))?;
        cmd = cmd.arg(format!(
            "--setup-hook=upload {} {LOCK_PREFERENCES}",
            prefs.display()
        ));
    }
    for option in &plan.apt_options {
        cmd = cmd.arg(format!("--aptopt={option}"));
    }
    cmd = cmd
        .arg(&plan.release)
        .arg(&ctx.tree)
        .args(plan.source_lines());
    cmd.run().context("bootstrap with mmdebstrap failed")?;
    Ok(())
}

/// Returns mmdebstrap's version line, which is part of the bootstrap key.
pub fn mmdebstrap_version() -> Result<String> {
    let output = Cmd::new("mmdebstrap")
        .arg("--version")
        .run()
        .context("failed to run `mmdebstrap --version`")?;
    Ok(output.stdout_text().trim().to_string())
}

/// Whether the host's apt accepts expired Release files, as it must with a
/// snapshot mirror; the bootstrap then does the same.
fn host_skips_valid_until() -> bool {
    Cmd::new("apt-config")
        .args(["shell", "V", "Acquire::Check-Valid-Until"])
        .run()
        .map(|o| o.stdout_text().contains("false"))
        .unwrap_or(false)
}

/// Whether the tree looks like a finished bootstrap.
pub fn looks_complete(tree: &Path) -> bool {
    tree.join("var/lib/dpkg/status").is_file() && tree.join("etc/os-release").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_entries() {
        let text = "Types: deb\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb\nURIs: http://m/debian-security\nSuites: bookworm-security\n";
        let e = parse_deb822(text);
        assert!(e.contains(&("http://m/debian".into(), "bookworm".into())));
        assert!(e.contains(&(
            "http://m/debian-security".into(),
            "bookworm-security".into()
        )));
    }

    #[test]
    fn one_line_entries_skip_options_and_src() {
        let text = "deb [arch=amd64] http://m/debian bookworm main\ndeb-src http://m/debian bookworm main\n";
        assert_eq!(
            parse_one_line(text),
            vec![("http://m/debian".into(), "bookworm".into())]
        );
    }
}
