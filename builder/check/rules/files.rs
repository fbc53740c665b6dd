//! Rules about files a finished image must not carry: keys, logs, shell
//! histories, the machine ID and provisioning state.

use std::collections::HashSet;

use anyhow::Result;

use super::paths::{self, file_name, is_under};
use crate::check::{FileKind, ImageView, Outcome, Subject, WalkEntry};

/// Files larger than this are not searched for private key blocks; PEM and
/// OpenSSH key files are a few KiB.
const MAX_KEY_FILE: u64 = 1 << 20;
/// Trees that hold distribution binaries and kernel state, not secrets.
const SYSTEM_TREES: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc", "/sys",
];
const DPKG_INFO: &str = "/var/lib/dpkg/info";
const HISTORY_FILES: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".history",
    ".ash_history",
    ".ksh_history",
    ".python_history",
    ".mysql_history",
    ".psql_history",
    ".lesshst",
    ".node_repl_history",
    ".sqlite_history",
    ".rediscli_history",
];

/// Fails when any walked file has one of `names`.
fn no_files_named(fs: &dyn ImageView, names: &[&str]) -> Result<Outcome> {
    let found: Vec<String> = fs
        .walk()?
        .into_iter()
        .filter(|e| e.meta.kind != FileKind::Dir && names.contains(&file_name(&e.path)))
        .map(|e| e.path)
        .collect();
    if found.is_empty() {
        Ok(Outcome::pass(format!(
            "no file named {} in the tree",
            names.join(" or ")
        )))
    } else {
        Ok(Outcome::fail(format!("found {}", found.join(", "))))
    }
}

/// Checks `authorized-keys-removed`.
pub fn authorized_keys_removed(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    no_files_named(fs, &["authorized_keys", "authorized_keys2"])
}

/// Checks `known-hosts-removed`.
pub fn known_hosts_removed(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    no_files_named(fs, &["known_hosts"])
}

/// Reads every path that dpkg lists as installed by a package.
fn packaged_files(fs: &dyn ImageView) -> Result<HashSet<String>> {
    let lists: Vec<String> = fs
        .list_dir(DPKG_INFO)?
        .into_iter()
        .filter(|name| name.ends_with(".list"))
        .map(|name| format!("{DPKG_INFO}/{name}"))
        .collect();
    let mut files = HashSet::new();
    for (_, bytes) in fs.read_many(&lists)? {
        files.extend(String::from_utf8_lossy(&bytes).lines().map(str::to_string));
    }
    Ok(files)
}

/// Returns whether `content` has a PEM or OpenSSH private key block, encrypted or not.
pub fn has_private_key_block(content: &[u8]) -> bool {
    let text = String::from_utf8_lossy(content);
    text.match_indices("-----BEGIN ").any(|(start, _)| {
        let rest = &text[start + 11..];
        let line_end = rest.find('\n').unwrap_or(rest.len()).min(80);
        rest[..line_end].contains("PRIVATE KEY-----")
    })
}

fn is_key_candidate(entry: &WalkEntry) -> bool {
    entry.meta.kind == FileKind::File && !SYSTEM_TREES.iter().any(|t| is_under(&entry.path, t))
}

/// Checks `private-keys-removed`: no private key block and no `.pfx` or
/// `.p12` outside the distribution's own packaged files.
pub fn private_keys_removed(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let packaged = packaged_files(fs)?;
    let mut found = Vec::new();
    let mut to_read = Vec::new();
    for entry in fs.walk()?.iter().filter(|e| is_key_candidate(e)) {
        if packaged.contains(&entry.path) {
            continue;
        }
        let lower = entry.path.to_ascii_lowercase();
        if lower.ends_with(".pfx") || lower.ends_with(".p12") {
            found.push(format!("{} (PKCS #12 file)", entry.path));
        } else if entry.meta.size <= MAX_KEY_FILE {
            to_read.push(entry.path.clone());
        }
    }
    for (path, content) in fs.read_many(&to_read)? {
        if has_private_key_block(&content) {
            found.push(format!("{path} (private key block)"));
        }
    }
    found.sort();
    if found.is_empty() {
        Ok(Outcome::pass(format!(
            "no private key block or .pfx/.p12 file outside {} and {} packaged files",
            SYSTEM_TREES.join(", "),
            packaged.len()
        )))
    } else {
        Ok(Outcome::fail(format!(
            "private key material: {}",
            found.join(", ")
        )))
    }
}

/// Checks `logs-cleared`: every regular file under `/var/log` is empty.
pub fn logs_cleared(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let found: Vec<String> = fs
        .walk()?
        .into_iter()
        .filter(|e| {
            is_under(&e.path, "/var/log") && e.meta.kind == FileKind::File && e.meta.size > 0
        })
        .map(|e| format!("{} ({} bytes)", e.path, e.meta.size))
        .collect();
    if found.is_empty() {
        Ok(Outcome::pass("every regular file under /var/log is empty"))
    } else {
        Ok(Outcome::fail(format!(
            "non-empty logs: {}",
            found.join(", ")
        )))
    }
}

/// Checks `machine-id-reset`.
pub fn machine_id_reset(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut problems = Vec::new();
    if let Some(meta) = fs.lstat("/etc/machine-id")? {
        if meta.kind != FileKind::File || meta.size > 0 {
            let id = fs.read_text("/etc/machine-id")?.unwrap_or_default();
            problems.push(format!("/etc/machine-id is not empty: {:?}", id.trim()));
        }
    }
    let dbus = "/var/lib/dbus/machine-id";
    if let Some(meta) = fs.lstat(dbus)? {
        if meta.kind == FileKind::Symlink {
            let target = fs.read_link(dbus)?.unwrap_or_default();
            if paths::join("/var/lib/dbus", &target) != "/etc/machine-id" {
                problems.push(format!("{dbus} links to {target}, not /etc/machine-id"));
            }
        } else if meta.size > 0 {
            problems.push(format!("{dbus} is a filled copy ({} bytes)", meta.size));
        }
    }
    if problems.is_empty() {
        Ok(Outcome::pass(
            "/etc/machine-id is empty or absent; /var/lib/dbus/machine-id holds no copy",
        ))
    } else {
        Ok(Outcome::fail(problems.join("; ")))
    }
}

/// Returns whether a walked path is state from an earlier provisioning.
fn is_provisioning_state(entry: &WalkEntry) -> bool {
    let path = entry.path.as_str();
    let name = file_name(path);
    let has_content = entry.meta.kind != FileKind::File || entry.meta.size > 0;
    let cloud = is_under(path, "/var/lib/cloud/instances")
        || is_under(path, "/var/lib/cloud/instance")
        || is_under(path, "/var/lib/cloud/data");
    let agent = paths::parent(path) == "/var/lib/waagent"
        && (matches!(
            name,
            "ovf-env.xml"
                | "provisioned"
                | "Certificates.xml"
                | "SharedConfig.xml"
                | "GoalState.xml"
        ) || name.ends_with(".crt")
            || name.ends_with(".prv")
            || name.ends_with(".p7m"));
    let leases = (paths::parent(path) == "/var/lib/dhcp" && name.ends_with(".leases"))
        || (paths::parent(path) == "/var/lib/NetworkManager" && name.ends_with(".lease"))
        || paths::parent(path) == "/var/lib/dhclient"
        || paths::parent(path) == "/var/lib/systemd/netif/leases";
    let flagged = (cloud && entry.meta.kind != FileKind::Dir) || agent || leases;
    flagged && has_content
}

/// Checks `provisioning-state-cleared`: no cloud-init instance data, Azure
/// agent state or DHCP lease.
pub fn provisioning_state_cleared(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let found: Vec<String> = fs
        .walk()?
        .into_iter()
        .filter(is_provisioning_state)
        .map(|e| e.path)
        .collect();
    if found.is_empty() {
        Ok(Outcome::pass(
            "no cloud-init instance data, /var/lib/waagent state or DHCP lease in the tree",
        ))
    } else {
        Ok(Outcome::fail(format!(
            "provisioning state left: {}",
            found.join(", ")
        )))
    }
}

/// Checks `shell-history-cleared` for every user, root included.
pub fn shell_history_cleared(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let found: Vec<String> = fs
        .walk()?
        .into_iter()
        .filter(|e| {
            e.meta.kind == FileKind::File
                && e.meta.size > 0
                && HISTORY_FILES.contains(&file_name(&e.path))
        })
        .map(|e| format!("{} ({} bytes)", e.path, e.meta.size))
        .collect();
    if found.is_empty() {
        Ok(Outcome::pass("no non-empty shell history file in the tree"))
    } else {
        Ok(Outcome::fail(format!(
            "shell history: {}",
            found.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_key_headers_recognized() {
        for kind in ["", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED "] {
            let text = format!("x\n-----BEGIN {kind}PRIVATE KEY-----\nAAAA\n");
            assert!(has_private_key_block(text.as_bytes()), "kind {kind:?}");
        }
    }

    #[test]
    fn public_material_ignored() {
        assert!(!has_private_key_block(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n"
        ));
        assert!(!has_private_key_block(b"-----BEGIN PUBLIC KEY-----\n"));
        assert!(!has_private_key_block(
            b"-----BEGIN CERT\n PRIVATE KEY-----"
        ));
    }
}
