//! The `hardening-baseline` rule and the baseline it checks.
//!
//! "forge Linux baseline 1" is a small subset of the CIS Debian benchmark:
//! modes and owners of the account databases, two sshd settings and the
//! kernel network settings in [`SYSCTL_BASELINE`].

use std::collections::BTreeMap;

use anyhow::Result;

use super::paths;
use super::sshd_config::{SshdConfig, SSHD_CONFIG};
use crate::check::{ImageView, Outcome, Subject};

/// Name of the baseline, shown in the rule's evidence.
pub const BASELINE_NAME: &str = "forge Linux baseline 1";

/// Kernel settings of the baseline. The build's hardening step writes these
/// same values, and this rule reads them back.
pub const SYSCTL_BASELINE: &[(&str, &str)] = &[
    ("net.ipv4.conf.all.accept_redirects", "0"),
    ("net.ipv4.conf.default.accept_redirects", "0"),
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.all.accept_source_route", "0"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
    ("net.ipv4.tcp_syncookies", "1"),
    ("net.ipv6.conf.all.accept_redirects", "0"),
];

/// Folders of sysctl.d drop-ins, highest priority first.
const SYSCTL_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// One kernel setting and the file and line that set it last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlValue {
    pub value: String,
    pub origin: String,
}

/// Lists the sysctl files in the order systemd-sysctl applies them: the
/// drop-ins sorted by file name (a name in `/etc` hides the same name in
/// later folders), then `/etc/sysctl.conf` last.
fn sysctl_files(fs: &dyn ImageView) -> Result<Vec<String>> {
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for dir in SYSCTL_DIRS {
        for name in fs.list_dir(dir)? {
            if name.ends_with(".conf") && !by_name.contains_key(&name) {
                by_name.insert(name.clone(), format!("{dir}/{name}"));
            }
        }
    }
    let mut files: Vec<String> = by_name.into_values().collect();
    files.push(SYSCTL_CONF.to_string());
    Ok(files)
}

/// Normalizes a sysctl key: `/` separators become `.`, as sysctl allows.
fn normalize_key(key: &str) -> String {
    key.trim().trim_start_matches('-').replace('/', ".")
}

/// Computes the kernel settings from the image's sysctl files; a later
/// assignment replaces an earlier one.
pub fn effective_sysctls(fs: &dyn ImageView) -> Result<BTreeMap<String, SysctlValue>> {
    let mut values = BTreeMap::new();
    for file in sysctl_files(fs)? {
        let Some(real) = paths::resolve(fs, &file)? else {
            continue;
        };
        let Some(text) = fs.read_text(&real)? else {
            continue;
        };
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let origin = format!("{file}:{}", index + 1);
            values.insert(
                normalize_key(key),
                SysctlValue {
                    value: value.trim().to_string(),
                    origin,
                },
            );
        }
    }
    Ok(values)
}

fn check_owner_mode(
    fs: &dyn ImageView,
    path: &str,
    max_mode: u32,
    problems: &mut Vec<String>,
) -> Result<()> {
    let Some(meta) = fs.lstat(path)? else {
        problems.push(format!("{path} is missing"));
        return Ok(());
    };
    if meta.mode & !max_mode != 0 {
        problems.push(format!(
            "{path} has mode {:04o}; expected at most {max_mode:04o}",
            meta.mode
        ));
    }
    if meta.uid != 0 {
        problems.push(format!("{path} is owned by uid {}; expected 0", meta.uid));
    }
    Ok(())
}

fn check_sshd(fs: &dyn ImageView, problems: &mut Vec<String>) -> Result<()> {
    let Some(config) = SshdConfig::load(fs)? else {
        problems.push(format!("{SSHD_CONFIG} is missing"));
        return Ok(());
    };
    if let Some(s) = config.effective("PermitRootLogin") {
        if s.value().eq_ignore_ascii_case("yes") {
            problems.push(format!("{}: PermitRootLogin yes", s.origin()));
        }
    }
    if let Some(s) = config.effective("PermitEmptyPasswords") {
        if !s.value().eq_ignore_ascii_case("no") {
            problems.push(format!(
                "{}: PermitEmptyPasswords {}; expected no",
                s.origin(),
                s.value()
            ));
        }
    }
    Ok(())
}

fn check_sysctls(fs: &dyn ImageView, problems: &mut Vec<String>) -> Result<()> {
    let values = effective_sysctls(fs)?;
    for (key, expected) in SYSCTL_BASELINE {
        match values.get(*key) {
            Some(v) if v.value == *expected => {}
            Some(v) => problems.push(format!(
                "{}: {key} = {}; expected {expected}",
                v.origin, v.value
            )),
            None => problems.push(format!(
                "{key} is not set in any sysctl file; expected {expected}"
            )),
        }
    }
    Ok(())
}

/// Checks `hardening-baseline` against [`BASELINE_NAME`].
pub fn hardening_baseline(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut problems = Vec::new();
    check_owner_mode(fs, "/etc/shadow", 0o640, &mut problems)?;
    check_owner_mode(fs, "/etc/gshadow", 0o640, &mut problems)?;
    match fs.lstat("/etc/passwd")? {
        Some(meta) if meta.mode & 0o022 != 0 => problems.push(format!(
            "/etc/passwd has mode {:04o}; it must not be group or world writable",
            meta.mode
        )),
        Some(_) => {}
        None => problems.push("/etc/passwd is missing".to_string()),
    }
    check_sshd(fs, &mut problems)?;
    check_sysctls(fs, &mut problems)?;
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "{BASELINE_NAME}: shadow/gshadow/passwd modes, sshd PermitRootLogin and \
             PermitEmptyPasswords, {} kernel settings all as required",
            SYSCTL_BASELINE.len()
        )))
    } else {
        Ok(Outcome::fail(format!(
            "{BASELINE_NAME}: {}",
            problems.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::DirView;
    use std::fs;

    fn write(root: &std::path::Path, path: &str, text: &str) {
        let host = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(host, text).unwrap();
    }

    #[test]
    fn sysctl_order_and_override() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "/usr/lib/sysctl.d/50-default.conf",
            "net.ipv4.tcp_syncookies = 0\nkernel.a = 1\n",
        );
        write(root, "/etc/sysctl.d/50-default.conf", "kernel.a = 2\n");
        write(
            root,
            "/lib/sysctl.d/10-early.conf",
            "net.ipv4.tcp_syncookies = 1\nkernel.b=1\n",
        );
        write(
            root,
            "/etc/sysctl.d/99-late.conf",
            "net/ipv4/tcp_syncookies=1\n",
        );
        write(
            root,
            "/etc/sysctl.conf",
            "# comment\n; other\nkernel.b = 5\n",
        );

        let values = effective_sysctls(&DirView::new(root)).unwrap();
        assert_eq!(
            values["kernel.a"].value, "2",
            "/etc hides the same file name"
        );
        assert_eq!(
            values["kernel.b"].value, "5",
            "/etc/sysctl.conf applies last"
        );
        assert_eq!(values["net.ipv4.tcp_syncookies"].value, "1");
        assert_eq!(
            values["net.ipv4.tcp_syncookies"].origin,
            "/etc/sysctl.d/99-late.conf:1"
        );
    }

    #[test]
    fn later_file_name_wins() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "/etc/sysctl.d/10-a.conf",
            "net.ipv4.tcp_syncookies = 1\n",
        );
        write(
            root,
            "/usr/lib/sysctl.d/20-b.conf",
            "net.ipv4.tcp_syncookies = 0\n",
        );
        let values = effective_sysctls(&DirView::new(root)).unwrap();
        assert_eq!(values["net.ipv4.tcp_syncookies"].value, "0");
    }
}
