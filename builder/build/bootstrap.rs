//! Bootstraps the Debian root tree with mmdebstrap.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::Context as BuildContext;
use crate::exec::Cmd;

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
/// versions while packages are installed; removed before hardening.
pub const LOCK_PREFERENCES: &str = "/etc/apt/preferences.d/forge-lock";

/// Debian archive locations the build installs from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirrors {
    pub main: String,
    pub security: String,
}

impl Mirrors {
    /// The apt source lines for a release: main, updates and security.
    pub fn source_lines(&self, release: &str) -> Vec<String> {
        vec![
            format!("deb {} {release} main", self.main),
            format!("deb {} {release}-updates main", self.main),
            format!("deb {} {release}-security main", self.security),
        ]
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

/// Runs mmdebstrap into `ctx.tree`, reusing downloaded packages from the
/// package cache folder and saving new ones there.
pub fn run(ctx: &BuildContext) -> Result<()> {
    let base = &ctx.recipe.base;
    let lock_mirror = ctx.lock.as_ref().and_then(|l| l.mirror.as_deref());
    let mirrors = find_mirrors(&base.release, base.mirror.as_deref().or(lock_mirror))?;
    let cache = ctx.cache_dir.join("debs");
    fs::create_dir_all(&cache).with_context(|| format!("failed to create {}", cache.display()))?;

    let mut cmd = super::chroot::isolated()
        .env("SOURCE_DATE_EPOCH", ctx.epoch.to_string())
        .arg("mmdebstrap")
        .args([
            "--mode=root",
            "--variant=apt",
            "--format=directory",
            "--components=main",
        ])
        .arg(format!("--architectures={}", base.deb_arch))
        .arg(format!("--include={}", BASE_PACKAGES.join(",")))
        // The package index stays in the image: the check pass compares the
        // installed versions with it.
        .arg("--skip=cleanup/apt/lists")
        .arg("--skip=download/empty")
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
        cmd = cmd
            .arg("--setup-hook=mkdir -p \"$1\"/etc/apt/preferences.d")
            .arg(format!(
                "--setup-hook=upload {} {LOCK_PREFERENCES}",
                prefs.display()
            ));
    }
    if host_skips_valid_until() {
        cmd = cmd.arg("--aptopt=Acquire::Check-Valid-Until \"false\"");
    }
    cmd = cmd
        .arg(&base.release)
        .arg(&ctx.tree)
        .args(mirrors.source_lines(&base.release));
    cmd.run().context("bootstrap with mmdebstrap failed")?;
    Ok(())
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
