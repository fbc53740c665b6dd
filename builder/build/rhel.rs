//! Hardening steps for RHEL-family trees (RHEL, AlmaLinux, Rocky Linux,
//! CentOS Stream, Oracle Linux, Fedora): the kernel command line in every
//! file that GRUB and kernel-install read it from, and DHCP-only networking.
//!
//! Rewrites of existing files follow symlinks inside the tree, so that the
//! file the boot loader reads changes and the link stays (RHEL 8 links
//! `/boot/grub2/grubenv` to the EFI system partition). Every path goes
//! through [`tree`], so no link leads out of the tree.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::tree;

const DEFAULT_GRUB: &str = "/etc/default/grub";
const BLS_ENTRIES: &str = "/boot/loader/entries";
/// Kernel command line that kernel-install writes into the boot entries of
/// kernels installed later.
const KERNEL_CMDLINE_FILE: &str = "/etc/kernel/cmdline";
/// GRUB folder of the BIOS boot, and of the EFI boot since RHEL 9.
const GRUB2_DIR: &str = "/boot/grub2";
/// Parent of the vendor folders (`redhat`, `rocky`, `fedora`, ...) on the
/// EFI system partition, where RHEL 8 and older keep `grub.cfg` and
/// `grubenv` for the EFI boot.
const EFI_VENDOR_DIRS: &str = "/boot/efi/EFI";

const NETWORK_SCRIPTS: &str = "/etc/sysconfig/network-scripts";
/// Files of network-scripts that configure one interface each, named
/// `<prefix><interface>`: its settings, static routes and routing rules.
const INTERFACE_FILE_PREFIXES: &[&str] = &["ifcfg-", "route-", "route6-", "rule-", "rule6-"];
const NM_CONNECTIONS: &str = "/etc/NetworkManager/system-connections";
const SYSCONFIG_NETWORK: &str = "/etc/sysconfig/network";
const UDEV_RULES: &str = "/etc/udev/rules.d";

/// DHCP on eth0, the first network interface of an Azure VM, which gets
/// its address from Azure's DHCP server.
const IFCFG_ETH0: &str = "\
DEVICE=eth0
ONBOOT=yes
BOOTPROTO=dhcp
TYPE=Ethernet
USERCTL=no
PEERDNS=yes
IPV6INIT=no
NM_CONTROLLED=yes
";

/// Sets the kernel command line `root=<root> ro <cmdline>` in every file
/// that RHEL's GRUB and kernel-install read it from: the BLS entries, the
/// `kernelopts` of each `grubenv` and the fallback in each `grub.cfg`,
/// `/etc/kernel/cmdline`, and `GRUB_CMDLINE_LINUX` in `/etc/default/grub`
/// (without `root`, which grub2-mkconfig adds). The source's options
/// (`rhgb`, `quiet`, `crashkernel=`, `resume=`, `rd.lvm.lv=`, an old
/// `root=`) are replaced, not kept.
///
/// `root` is the root file system as the kernel takes it (`UUID=...`).
/// Fails if either value contains a character that one of the files would
/// read as syntax, or if a `grubenv` cannot hold the new `kernelopts`.
///
/// NOTE: menu entries written out in a `grub.cfg` (the `linux` lines that
/// EL7 and `GRUB_ENABLE_BLSCFG=false` generate) are not rewritten.
pub fn set_boot_cmdline(tree: &Path, root: &str, cmdline: &str) -> Result<()> {
    validate_cmdline(root, cmdline)?;
    let kernel_cmdline = format!("root={root} ro {cmdline}").trim_end().to_string();
    let grub_dirs = grub_dirs(tree)?;
    // The environment blocks come first because they are the files most
    // likely to reject the change, and failing there leaves the tree as it
    // was.
    for dir in &grub_dirs {
        set_grubenv_kernelopts(tree, &format!("{dir}/grubenv"), &kernel_cmdline)?;
    }
    for dir in &grub_dirs {
        set_grub_cfg_kernelopts(tree, &format!("{dir}/grub.cfg"), &kernel_cmdline)?;
    }
    set_bls_entries(tree, &kernel_cmdline)?;
    set_default_grub(tree, cmdline)?;
    let file = GuestFile::resolve(tree, KERNEL_CMDLINE_FILE)?;
    file.write(tree, format!("{kernel_cmdline}\n").as_bytes(), 0o644)
}

/// Rejects a root or command line that would change the syntax of a file
/// it is written to. Quotes end the values in `grub.cfg` and
/// `/etc/default/grub`. `$` expands a variable there and in BLS entries,
/// and a backtick runs a command in `/etc/default/grub`. A backslash
/// escapes in `grubenv`, and a line break ends every line.
fn validate_cmdline(root: &str, cmdline: &str) -> Result<()> {
    let is_syntax = |c: char| c.is_control() || matches!(c, '"' | '\'' | '\\' | '$' | '`');
    if root.is_empty() || root.contains(char::is_whitespace) || root.contains(is_syntax) {
        bail!("invalid root {root:?}: expected one word such as UUID=<file system UUID>");
    }
    if let Some(c) = cmdline.chars().find(|&c| is_syntax(c)) {
        bail!("invalid kernel command line {cmdline:?}: it contains {c:?}");
    }
    if let Some(word) = cmdline.split_whitespace().find(|w| w.starts_with("root=")) {
        bail!("invalid kernel command line {cmdline:?}: it sets {word}, but the root file system is passed as `root`");
    }
    Ok(())
}

/// Returns the GRUB folders whose `grub.cfg` and `grubenv` the boot may
/// read: `/boot/grub2` and each vendor folder on the EFI system partition.
fn grub_dirs(tree: &Path) -> Result<Vec<String>> {
    let mut dirs = vec![GRUB2_DIR.to_string()];
    for name in list_dir(tree, EFI_VENDOR_DIRS)? {
        dirs.push(format!("{EFI_VENDOR_DIRS}/{name}"));
    }
    Ok(dirs)
}

/// Returns the names in the image folder `dir`, sorted, or none when the
/// folder does not exist.
fn list_dir(tree: &Path, dir: &str) -> Result<Vec<String>> {
    let host = tree::resolve_all(tree, dir)?;
    let entries = match fs::read_dir(&host) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("failed to list {dir} in the image")),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("failed to list {dir} in the image"))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A file of the image at the path its symlinks resolve to inside the tree.
struct GuestFile {
    /// The requested path, for messages.
    requested: String,
    /// The resolved path inside the image, where reads and writes go.
    path: String,
    host: PathBuf,
    /// Permission bits of the existing file, or `None` when there is none.
    mode: Option<u32>,
}

impl GuestFile {
    /// Resolves `path`; fails if it resolves to something other than a
    /// regular file.
    fn resolve(tree: &Path, path: &str) -> Result<Self> {
        let host = tree::resolve_all(tree, path)?;
        let inside = host
            .strip_prefix(tree)
            .ok()
            .and_then(Path::to_str)
            .with_context(|| format!("{path} in the image resolves to a path that is not UTF-8"))?;
        let mode = match fs::symlink_metadata(&host) {
            Ok(meta) if meta.is_file() => Some(meta.permissions().mode() & 0o7777),
            Ok(_) => bail!("{path} in the image is not a regular file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("failed to read {path} in the image")),
        };
        Ok(Self {
            requested: path.to_string(),
            path: format!("/{inside}"),
            host,
            mode,
        })
    }

    /// Reads the file; `None` if it does not exist.
    fn read(&self) -> Result<Option<Vec<u8>>> {
        if self.mode.is_none() {
            return Ok(None);
        }
        let bytes = fs::read(&self.host)
            .with_context(|| format!("failed to read {} in the image", self.requested))?;
        Ok(Some(bytes))
    }

    fn read_text(&self) -> Result<Option<String>> {
        Ok(self
            .read()?
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Writes `contents` unless the file already holds them. An existing
    /// file keeps its mode, and a new one gets `new_mode`.
    fn write(&self, tree: &Path, contents: &[u8], new_mode: u32) -> Result<()> {
        if self.read()?.as_deref() == Some(contents) {
            return Ok(());
        }
        tree::write(tree, &self.path, contents, self.mode.unwrap_or(new_mode))
            .with_context(|| format!("failed to write {} in the image", self.requested))
    }
}

/// Sets `kernelopts` in the environment block at `path`, if there is one.
/// RHEL 8 and early RHEL 9 BLS entries read their options from it.
fn set_grubenv_kernelopts(tree: &Path, path: &str, kernel_cmdline: &str) -> Result<()> {
    let file = GuestFile::resolve(tree, path)?;
    let Some(old) = file.read()? else {
        return Ok(());
    };
    let mut block = match EnvBlock::parse(&old) {
        Ok(block) => block,
        Err(why) => {
            // GRUB's load_env rejects such a block, so no boot reads a
            // command line from it.
            tracing::warn!("{path} in the image is left as it is: it {why}");
            return Ok(());
        }
    };
    block.set("kernelopts", kernel_cmdline);
    let new = block.to_bytes().map_err(|needed| {
        anyhow!(
            "the kernel command line does not fit in {path} in the image: the variables need \
             {needed} bytes and the block has {}; shorten the command line or remove unused \
             variables from the block with grub2-editenv",
            block.len
        )
    })?;
    file.write(tree, &new, 0o600)
}

/// First line of a GRUB environment block.
const GRUBENV_HEADER: &[u8] = b"# GRUB Environment Block\n";

/// A GRUB environment block as GRUB's `envblk.c` writes it: the header,
/// one `name=value` line per variable, and `#` padding up to the block's
/// fixed length (1024 bytes as grub2-editenv creates it). In a value, a
/// backslash escapes the byte after it, so an escaped line break does not
/// end the line.
struct EnvBlock {
    /// Length of the file in bytes, kept when the block is written back.
    len: usize,
    /// Variable lines in file order, without their line breaks and with
    /// values escaped as in the file.
    lines: Vec<Vec<u8>>,
}

impl EnvBlock {
    /// Parses a block; the error says why GRUB would reject it.
    fn parse(bytes: &[u8]) -> std::result::Result<Self, String> {
        let Some(body) = bytes.strip_prefix(GRUBENV_HEADER) else {
            return Err("does not start with \"# GRUB Environment Block\"".to_string());
        };
        let mut lines = Vec::new();
        for line in split_escaped_lines(body) {
            if line.is_empty() || line.starts_with(b"#") {
                continue;
            }
            if !line.contains(&b'=') {
                return Err(format!(
                    "contains the line {:?}, which is neither a variable nor padding",
                    String::from_utf8_lossy(line)
                ));
            }
            lines.push(line.to_vec());
        }
        Ok(Self {
            len: bytes.len(),
            lines,
        })
    }

    /// Sets `name` to `value` in place, or appends it.
    fn set(&mut self, name: &str, value: &str) {
        let mut line = format!("{name}=").into_bytes();
        for &byte in value.as_bytes() {
            if byte == b'\\' || byte == b'\n' {
                line.push(b'\\');
            }
            line.push(byte);
        }
        let prefix = format!("{name}=");
        match self
            .lines
            .iter_mut()
            .find(|l| l.starts_with(prefix.as_bytes()))
        {
            Some(existing) => *existing = line,
            None => self.lines.push(line),
        }
    }

    /// Returns the block padded to its length, or the length that its
    /// variables need when they do not fit.
    fn to_bytes(&self) -> std::result::Result<Vec<u8>, usize> {
        let mut out = GRUBENV_HEADER.to_vec();
        for line in &self.lines {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        if out.len() > self.len {
            return Err(out.len());
        }
        out.resize(self.len, b'#');
        Ok(out)
    }
}

/// Splits at line breaks that no backslash escapes.
fn split_escaped_lines(body: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'\n' => {
                lines.push(&body[start..i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < body.len() {
        lines.push(&body[start..]);
    }
    lines
}

/// Replaces the value of `set kernelopts=...` in the `grub.cfg` at `path`.
/// RHEL 8's grub.cfg sets it when no environment block defines it.
fn set_grub_cfg_kernelopts(tree: &Path, path: &str, kernel_cmdline: &str) -> Result<()> {
    let file = GuestFile::resolve(tree, path)?;
    let Some(old) = file.read_text()? else {
        return Ok(());
    };
    let mut new = String::with_capacity(old.len());
    let mut found = false;
    for line in old.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let command = content.trim_start();
        if command.starts_with("set kernelopts=") {
            found = true;
            let indent = &content[..content.len() - command.len()];
            let ending = &line[content.len()..];
            new.push_str(&format!(
                "{indent}set kernelopts=\"{kernel_cmdline}\"{ending}"
            ));
        } else {
            new.push_str(line);
        }
    }
    // Without the line the file stays as it is, even where it is not UTF-8.
    if !found {
        return Ok(());
    }
    file.write(tree, new.as_bytes(), 0o600)
}

/// Writes `options <kernel_cmdline>` into every BLS entry that starts a
/// Linux kernel.
fn set_bls_entries(tree: &Path, kernel_cmdline: &str) -> Result<()> {
    for name in list_dir(tree, BLS_ENTRIES)? {
        if !name.ends_with(".conf") {
            continue;
        }
        let path = format!("{BLS_ENTRIES}/{name}");
        let file = GuestFile::resolve(tree, &path)?;
        let Some(old) = file.read_text()? else {
            continue;
        };
        if let Some(new) = set_bls_options(&old, kernel_cmdline) {
            file.write(tree, new.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// Makes the kernel and initramfs paths of every BLS entry absolute in the
/// one root file system. A source with a separate `/boot` writes them
/// relative to that partition (`linux /vmlinuz-...`); once `/boot` is a
/// folder of the root, GRUB finds them only as `/boot/vmlinuz-...`.
pub fn merge_boot_paths(tree: &Path) -> Result<()> {
    for name in list_dir(tree, BLS_ENTRIES)? {
        if !name.ends_with(".conf") {
            continue;
        }
        let path = format!("{BLS_ENTRIES}/{name}");
        let file = GuestFile::resolve(tree, &path)?;
        let Some(old) = file.read_text()? else {
            continue;
        };
        let new = merged_entry_paths(&old, |p| {
            super::tree::resolve_all(tree, &format!("/boot{p}")).is_ok_and(|h| h.is_file())
                && !super::tree::resolve_all(tree, p).is_ok_and(|h| h.is_file())
        });
        if new != old {
            file.write(tree, new.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}

/// Prefixes `/boot` to each absolute path of the `linux` and `initrd`
/// lines for which `under_boot` says the file is only found there.
fn merged_entry_paths(text: &str, under_boot: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some(key @ ("linux" | "initrd")) => {
                let paths: Vec<String> = words
                    .map(|w| {
                        if w.starts_with('/') && !w.starts_with("/boot/") && under_boot(w) {
                            format!("/boot{w}")
                        } else {
                            w.to_owned()
                        }
                    })
                    .collect();
                out.push_str(&format!("{key} {}", paths.join(" ")));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Returns the entry with its first `options` line replaced by
/// `options <kernel_cmdline>` and any later ones dropped, or with that
/// line appended when it has none. Variables such as `$kernelopts` and
/// `$tuned_params` go too, so the line is the whole command line. Returns
/// `None` for an entry that starts no Linux kernel (no `linux` and no
/// `options` key), such as a chainloader.
fn set_bls_options(text: &str, kernel_cmdline: &str) -> Option<String> {
    let options = format!("options {kernel_cmdline}");
    let mut lines = Vec::new();
    let mut has_options = false;
    let mut has_linux = false;
    for line in text.lines() {
        match line.split_whitespace().next() {
            Some("options") if has_options => continue,
            Some("options") => {
                has_options = true;
                lines.push(options.as_str());
            }
            Some("linux") => {
                has_linux = true;
                lines.push(line);
            }
            _ => lines.push(line),
        }
    }
    if !has_options && !has_linux {
        return None;
    }
    if !has_options {
        lines.push(&options);
    }
    Some(lines.join("\n") + "\n")
}

/// Sets the command line and a serial console in `/etc/default/grub`, which
/// grub2-mkconfig reads, and creates the file if missing.
fn set_default_grub(tree: &Path, cmdline: &str) -> Result<()> {
    let settings = [
        ("GRUB_CMDLINE_LINUX", format!("\"{cmdline}\"")),
        ("GRUB_TIMEOUT", "1".to_string()),
        ("GRUB_TERMINAL", "\"console serial\"".to_string()),
        (
            "GRUB_SERIAL_COMMAND",
            "\"serial --speed=115200\"".to_string(),
        ),
        ("GRUB_DISABLE_OS_PROBER", "true".to_string()),
    ];
    // GRUB_TERMINAL_OUTPUT would override the serial terminal for output.
    // grub2-mkconfig appends GRUB_CMDLINE_LINUX_DEFAULT to the command line
    // of normal entries, so a vendor's `rhgb quiet` there would come back.
    let removed = ["GRUB_TERMINAL_OUTPUT", "GRUB_CMDLINE_LINUX_DEFAULT"];
    let file = GuestFile::resolve(tree, DEFAULT_GRUB)?;
    let old = file.read_text()?.unwrap_or_default();
    let new = set_assignments(&old, &settings, &removed);
    file.write(tree, new.as_bytes(), 0o644)
}

/// Sets shell `KEY=value` assignments in `text`. The first assignment of
/// each key in `settings` gets the new value and later ones are dropped,
/// keys that have none are appended, and assignments of `removed` keys are
/// dropped. Other lines stay as they are.
fn set_assignments(text: &str, settings: &[(&str, String)], removed: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some((key, value)) = split_assignment(line) else {
            out.push(line.to_string());
            continue;
        };
        let setting = settings.iter().find(|(k, _)| *k == key);
        if setting.is_none() && !removed.contains(&key) {
            out.push(line.to_string());
            continue;
        }
        // A quoted value may go on over several lines, all of which go.
        let mut quote = open_quote_after(value, None);
        while quote.is_some() {
            let Some(next) = lines.next() else { break };
            quote = open_quote_after(next, quote);
        }
        if let Some((key, value)) = setting {
            if !done.contains(key) {
                out.push(format!("{key}={value}"));
                done.push(key);
            }
        }
    }
    for (key, value) in settings {
        if !done.contains(key) {
            out.push(format!("{key}={value}"));
        }
    }
    out.join("\n") + "\n"
}

/// Splits `KEY=value` or `export KEY=value` into the key and the raw value.
fn split_assignment(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
    let (key, value) = line.split_once('=')?;
    let is_name = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    is_name.then_some((key, value))
}

/// Returns the quote character still open after shell `text`, given the
/// one open before it.
fn open_quote_after(text: &str, mut open: Option<char>) -> Option<char> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (open, c) {
            (Some('"') | None, '\\') => {
                chars.next();
            }
            (None, '"' | '\'') => open = Some(c),
            (Some(q), c) if c == q => open = None,
            _ => {}
        }
    }
    open
}

/// Configures DHCP on eth0 and removes static addresses, configuration
/// bound to a MAC address, persistent-net udev rules and
/// `/etc/resolv.conf`. Each VM made from the image gets new MAC addresses
/// and its addresses and DNS servers from Azure's DHCP server.
///
/// Every network-scripts file of an interface (`ifcfg-`, `route-`,
/// `rule-` and their IPv6 forms) goes except those of `lo`, and a DHCP
/// `ifcfg-eth0` takes their place. NetworkManager keyfiles go only if they
/// set a static address or bind to a MAC address, so DHCP profiles stay.
pub fn network_defaults(tree: &Path) -> Result<()> {
    remove_interface_files(tree)?;
    tree::write(
        tree,
        &format!("{NETWORK_SCRIPTS}/ifcfg-eth0"),
        IFCFG_ETH0.as_bytes(),
        0o644,
    )?;
    remove_pinned_keyfiles(tree)?;
    set_sysconfig_network(tree)?;
    // udev rules in these files name interfaces after the MAC addresses of
    // the machine that built the source image.
    for name in list_dir(tree, UDEV_RULES)? {
        if name.contains("persistent-net") && name.ends_with(".rules") {
            remove_logged(tree, &format!("{UDEV_RULES}/{name}"))?;
        }
    }
    tree::remove(tree, "/etc/resolv.conf")?;
    Ok(())
}

fn remove_logged(tree: &Path, path: &str) -> Result<()> {
    tracing::info!("hardening: removing {path}");
    tree::remove(tree, path)?;
    Ok(())
}

fn remove_interface_files(tree: &Path) -> Result<()> {
    for name in list_dir(tree, NETWORK_SCRIPTS)? {
        let interface = INTERFACE_FILE_PREFIXES
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix));
        if interface.is_some_and(|i| i != "lo") {
            remove_logged(tree, &format!("{NETWORK_SCRIPTS}/{name}"))?;
        }
    }
    Ok(())
}

fn remove_pinned_keyfiles(tree: &Path) -> Result<()> {
    for name in list_dir(tree, NM_CONNECTIONS)? {
        let path = format!("{NM_CONNECTIONS}/{name}");
        let host = tree::resolve_all(tree, &path)?;
        if !host.is_file() {
            continue;
        }
        let text = tree::read(tree, &path)?.unwrap_or_default();
        if keyfile_pins(&text) {
            remove_logged(tree, &path)?;
        }
    }
    Ok(())
}

/// Returns whether a NetworkManager keyfile sets a static address (the
/// `manual` method or an `address` key in `[ipv4]` or `[ipv6]`) or binds
/// the connection to a MAC address (`mac-address`).
fn keyfile_pins(text: &str) -> bool {
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let ip_section = matches!(section, "[ipv4]" | "[ipv6]");
        let static_address =
            ip_section && (key.starts_with("address") || (key == "method" && value == "manual"));
        if static_address || key == "mac-address" {
            return true;
        }
    }
    false
}

/// Turns networking on and sets a placeholder host name, so the image does
/// not carry the name of the machine that built it. Provisioning sets the
/// VM's own name.
fn set_sysconfig_network(tree: &Path) -> Result<()> {
    let settings = [
        ("NETWORKING", "yes".to_string()),
        ("HOSTNAME", "localhost.localdomain".to_string()),
    ];
    let file = GuestFile::resolve(tree, SYSCONFIG_NETWORK)?;
    let old = file.read_text()?.unwrap_or_default();
    let new = set_assignments(&old, &settings, &[]);
    file.write(tree, new.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::symlink;

    use tempfile::TempDir;

    use super::*;
    use crate::build::harden::KERNEL_CMDLINE;
    use crate::check::{DirView, DiskFacts, OsInfo, Policy, Status, Subject};

    const ROOT: &str = "UUID=0b5c3a52-8f0e-4c1f-9d43-6a1f2b7e9c10";
    const ENTRY_ID: &str = "ec2f0b5a4b8e4d7c9a1f3e2d1c0b9a8f-5.14.0-362.8.1.el9_3.x86_64";
    const ENTRY: &str =
        "/boot/loader/entries/ec2f0b5a4b8e4d7c9a1f3e2d1c0b9a8f-5.14.0-362.8.1.el9_3.x86_64.conf";
    const RESCUE: &str = "/boot/loader/entries/ec2f0b5a4b8e4d7c9a1f3e2d1c0b9a8f-0-rescue.conf";
    const SOURCE_OPTIONS: &str = "root=/dev/mapper/rhel-root ro \
        crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap \
        rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet";

    const DEFAULT_GRUB_RHEL9: &str = "\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT=\"console\"
GRUB_CMDLINE_LINUX=\"crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet\"
GRUB_DISABLE_RECOVERY=\"true\"
GRUB_ENABLE_BLSCFG=true
";

    /// The parts of a RHEL 9 grub.cfg that define the variables of BLS
    /// entries, with the fallback `kernelopts`.
    const GRUB_CFG_RHEL9: &str = r#"### BEGIN /etc/grub.d/00_header ###
set pager=1

if [ -f ${config_directory}/grubenv ]; then
  load_env -f ${config_directory}/grubenv
elif [ -s $prefix/grubenv ]; then
  load_env
fi
### END /etc/grub.d/00_header ###

### BEGIN /etc/grub.d/00_tuned ###
set tuned_params=""
set tuned_initrd=""
### END /etc/grub.d/00_tuned ###

### BEGIN /etc/grub.d/10_linux ###
insmod part_gpt
insmod xfs
if [ -z "${kernelopts}" ]; then
  set kernelopts="root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M rhgb quiet "
fi

insmod blscfg
blscfg
### END /etc/grub.d/10_linux ###
"#;

    /// RHEL 9's grub.cfg on the EFI system partition, which only hands
    /// over to /boot/grub2/grub.cfg.
    const EFI_STUB_CFG: &str = "\
search --no-floppy --fs-uuid --set=dev 5a1e2b3c-4d5e-6f70-8192-a3b4c5d6e7f8
set prefix=($dev)/grub2
export $prefix
configfile $prefix/grub.cfg
";

    fn entry_text(options: &str) -> String {
        format!(
            "title Red Hat Enterprise Linux (5.14.0-362.8.1.el9_3.x86_64) 9.3 (Plow)\n\
             version 5.14.0-362.8.1.el9_3.x86_64\n\
             linux /vmlinuz-5.14.0-362.8.1.el9_3.x86_64\n\
             initrd /initramfs-5.14.0-362.8.1.el9_3.x86_64.img $tuned_initrd\n\
             options {options}\n\
             grub_users $grub_users\n\
             grub_arg --unrestricted\n\
             grub_class rhel\n"
        )
    }

    fn rescue_text(options: &str) -> String {
        format!(
            "title Red Hat Enterprise Linux (0-rescue-ec2f0b5a4b8e4d7c9a1f3e2d1c0b9a8f) 9.3 (Plow)\n\
             version 0-rescue-ec2f0b5a4b8e4d7c9a1f3e2d1c0b9a8f\n\
             linux /vmlinuz-0-rescue-ec2f0b5a4b8e4d7c9a1f3e2d1c0b9a8f\n\
             initrd /initramfs-0-rescue-ec2f0b5a4b8e4d7c9a1f3e2d1c0b9a8f.img\n\
             options {options}\n\
             grub_users $grub_users\n\
             grub_arg --unrestricted\n\
             grub_class kernel\n"
        )
    }

    /// Returns a 1024-byte environment block with `variables` (lines of
    /// `name=value\n`), padded with `#` as grub2-editenv writes it.
    fn grubenv_block(variables: &str) -> Vec<u8> {
        let mut block = format!("# GRUB Environment Block\n{variables}").into_bytes();
        assert!(block.len() <= 1024, "test block too long");
        block.resize(1024, b'#');
        block
    }

    fn source_grubenv() -> Vec<u8> {
        grubenv_block(&format!(
            "saved_entry={ENTRY_ID}\nkernelopts={SOURCE_OPTIONS}\nboot_success=0\n"
        ))
    }

    fn expected_cmdline() -> String {
        format!("root={ROOT} ro {KERNEL_CMDLINE}")
    }

    fn host(tree: &Path, path: &str) -> PathBuf {
        tree.join(path.trim_start_matches('/'))
    }

    /// Writes a file of the test tree from the host side, with mode 0644.
    fn put(tree: &Path, path: &str, contents: &[u8]) {
        put_mode(tree, path, contents, 0o644);
    }

    fn put_mode(tree: &Path, path: &str, contents: &[u8], mode: u32) {
        let host = host(tree, path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, contents).unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn link(tree: &Path, target: &str, path: &str) {
        let host = host(tree, path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        symlink(target, host).unwrap();
    }

    fn text(tree: &Path, path: &str) -> String {
        fs::read_to_string(host(tree, path)).unwrap()
    }

    fn exists(tree: &Path, path: &str) -> bool {
        fs::symlink_metadata(host(tree, path)).is_ok()
    }

    fn mode(tree: &Path, path: &str) -> u32 {
        fs::metadata(host(tree, path)).unwrap().permissions().mode() & 0o7777
    }

    /// Builds the boot files of a RHEL 9 cloud image as it comes from the
    /// vendor: LVM root, crash kernel, resume device and a quiet boot.
    fn write_source_boot(tree: &Path) {
        put(tree, DEFAULT_GRUB, DEFAULT_GRUB_RHEL9.as_bytes());
        put_mode(
            tree,
            "/boot/grub2/grub.cfg",
            GRUB_CFG_RHEL9.as_bytes(),
            0o600,
        );
        put_mode(tree, "/boot/grub2/grubenv", &source_grubenv(), 0o600);
        put(
            tree,
            "/boot/efi/EFI/redhat/grub.cfg",
            EFI_STUB_CFG.as_bytes(),
        );
        put(
            tree,
            ENTRY,
            entry_text(&format!("{SOURCE_OPTIONS} $tuned_params")).as_bytes(),
        );
        put(tree, RESCUE, rescue_text("$kernelopts").as_bytes());
    }

    /// Builds the network files of a RHEL 9 image that was configured by
    /// hand: a static eth0 bound to its MAC address, a second interface, a
    /// static route, NetworkManager profiles and a persistent-net rule.
    fn write_source_network(tree: &Path) {
        let scripts = NETWORK_SCRIPTS;
        put(
            tree,
            &format!("{scripts}/ifcfg-eth0"),
            b"DEVICE=eth0\nONBOOT=yes\nBOOTPROTO=static\nIPADDR=10.0.0.5\nPREFIX=24\n\
              GATEWAY=10.0.0.1\nHWADDR=00:0D:3A:00:00:01\n",
        );
        put(
            tree,
            &format!("{scripts}/ifcfg-ens3"),
            b"DEVICE=ens3\nONBOOT=yes\nBOOTPROTO=dhcp\n",
        );
        put(
            tree,
            &format!("{scripts}/route-eth0"),
            b"10.1.0.0/16 via 10.0.0.1 dev eth0\n",
        );
        put(
            tree,
            &format!("{scripts}/ifcfg-lo"),
            b"DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\nNAME=loopback\n",
        );
        put_mode(
            tree,
            &format!("{NM_CONNECTIONS}/static-eth0.nmconnection"),
            b"[connection]\nid=eth0\ntype=ethernet\ninterface-name=eth0\n\n\
              [ipv4]\naddress1=10.0.0.5/24,10.0.0.1\nmethod=manual\n",
            0o600,
        );
        put_mode(
            tree,
            &format!("{NM_CONNECTIONS}/bound-eth1.nmconnection"),
            b"[connection]\nid=eth1\ntype=ethernet\n\n[ethernet]\nmac-address=00:0D:3A:00:00:02\n\n\
              [ipv4]\nmethod=auto\n",
            0o600,
        );
        put_mode(
            tree,
            &format!("{NM_CONNECTIONS}/cloud-init-eth0.nmconnection"),
            b"[connection]\nid=eth0\ntype=ethernet\ninterface-name=eth0\n\n\
              [ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n",
            0o600,
        );
        put(
            tree,
            SYSCONFIG_NETWORK,
            b"# Created by anaconda\nNETWORKING=yes\nHOSTNAME=rhel9-build.example.com\nNOZEROCONF=yes\n",
        );
        put(
            tree,
            &format!("{UDEV_RULES}/70-persistent-net.rules"),
            b"SUBSYSTEM==\"net\", ATTR{address}==\"00:0d:3a:00:00:01\", NAME=\"eth0\"\n",
        );
        put(
            tree,
            &format!("{UDEV_RULES}/75-persistent-net-generator.rules"),
            b"# generator\n",
        );
        put(tree, &format!("{UDEV_RULES}/80-local.rules"), b"# kept\n");
        put(tree, "/etc/resolv.conf", b"nameserver 10.0.0.2\n");
    }

    fn source_tree() -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_source_boot(dir.path());
        write_source_network(dir.path());
        dir
    }

    fn fixed_tree() -> TempDir {
        let dir = source_tree();
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        network_defaults(dir.path()).unwrap();
        dir
    }

    // The kernel command line.

    #[test]
    fn bls_entry_options_replaced() {
        let dir = fixed_tree();
        let expected = entry_text(&expected_cmdline());
        assert_eq!(text(dir.path(), ENTRY), expected);
    }

    #[test]
    fn rescue_entry_kernelopts_replaced() {
        let dir = fixed_tree();
        let expected = rescue_text(&expected_cmdline());
        assert_eq!(text(dir.path(), RESCUE), expected);
    }

    #[test]
    fn bls_entry_mode_kept() {
        let dir = source_tree();
        fs::set_permissions(host(dir.path(), ENTRY), fs::Permissions::from_mode(0o600)).unwrap();
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        assert_eq!(mode(dir.path(), ENTRY), 0o600);
    }

    #[test]
    fn grubenv_keeps_length_and_saved_entry() {
        let dir = fixed_tree();
        let block = fs::read(host(dir.path(), "/boot/grub2/grubenv")).unwrap();
        assert_eq!(block.len(), 1024);
        let expected_start = format!(
            "# GRUB Environment Block\nsaved_entry={ENTRY_ID}\nkernelopts={}\nboot_success=0\n#",
            expected_cmdline()
        );
        let text = String::from_utf8(block).unwrap();
        assert!(text.starts_with(&expected_start), "{text:?}");
        let padding = &text[expected_start.len()..];
        assert!(padding.bytes().all(|b| b == b'#'), "{padding:?}");
        assert_eq!(mode(dir.path(), "/boot/grub2/grubenv"), 0o600);
    }

    #[test]
    fn grubenv_kernelopts_added_when_absent() {
        let dir = tempfile::tempdir().unwrap();
        put(
            dir.path(),
            "/boot/grub2/grubenv",
            &grubenv_block("saved_entry=x\n"),
        );
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        let text = text(dir.path(), "/boot/grub2/grubenv");
        let expected = format!(
            "# GRUB Environment Block\nsaved_entry=x\nkernelopts={}\n#",
            expected_cmdline()
        );
        assert!(text.starts_with(&expected), "{text:?}");
        assert_eq!(text.len(), 1024);
    }

    #[test]
    fn grubenv_too_full_rejected() {
        let dir = source_tree();
        let filler = "x".repeat(900);
        let full = grubenv_block(&format!("saved_entry={ENTRY_ID}\nnotes={filler}\n"));
        put(dir.path(), "/boot/grub2/grubenv", &full);
        let error = set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("/boot/grub2/grubenv"), "{message}");
        assert!(message.contains("does not fit"), "{message}");
        assert!(message.contains("the block has 1024"), "{message}");
        assert_eq!(
            fs::read(host(dir.path(), "/boot/grub2/grubenv")).unwrap(),
            full
        );
        // The block is checked first, so nothing else changed either.
        assert_eq!(text(dir.path(), DEFAULT_GRUB), DEFAULT_GRUB_RHEL9);
    }

    #[test]
    fn grubenv_without_header_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let invalid = b"kernelopts=root=/dev/sda2 ro rhgb quiet\n";
        put(dir.path(), "/boot/grub2/grubenv", invalid);
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        assert_eq!(
            fs::read(host(dir.path(), "/boot/grub2/grubenv")).unwrap(),
            invalid
        );
    }

    #[test]
    fn grubenv_escapes_kept_and_written() {
        let mut source = b"# GRUB Environment Block\nodd=a\\\nb\\\\c\nkernelopts=old\n".to_vec();
        source.resize(1024, b'#');
        let mut block = EnvBlock::parse(&source).unwrap();
        assert_eq!(block.lines.len(), 2);
        block.set("kernelopts", "x\\y");
        let bytes = block.to_bytes().unwrap();
        let expected = b"# GRUB Environment Block\nodd=a\\\nb\\\\c\nkernelopts=x\\\\y\n#";
        assert!(
            bytes.starts_with(expected),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(bytes.len(), 1024);
    }

    #[test]
    fn grubenv_line_without_equals_invalid() {
        let why = EnvBlock::parse(b"# GRUB Environment Block\nbroken\n")
            .err()
            .unwrap();
        assert!(why.contains("\"broken\""), "{why}");
    }

    #[test]
    fn grub_cfg_fallback_kernelopts_replaced() {
        let dir = fixed_tree();
        let expected = GRUB_CFG_RHEL9.replace(
            "  set kernelopts=\"root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M rhgb quiet \"",
            &format!("  set kernelopts=\"{}\"", expected_cmdline()),
        );
        assert_ne!(expected, GRUB_CFG_RHEL9);
        assert_eq!(text(dir.path(), "/boot/grub2/grub.cfg"), expected);
        assert_eq!(mode(dir.path(), "/boot/grub2/grub.cfg"), 0o600);
        assert_eq!(
            text(dir.path(), "/boot/efi/EFI/redhat/grub.cfg"),
            EFI_STUB_CFG
        );
    }

    /// RHEL 8 on EFI: /boot/grub2/grubenv links to the block on the EFI
    /// system partition, beside a full grub.cfg.
    #[test]
    fn rhel8_efi_grubenv_written_through_link() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        put(t, "/boot/efi/EFI/redhat/grubenv", &source_grubenv());
        put(
            t,
            "/boot/efi/EFI/redhat/grub.cfg",
            GRUB_CFG_RHEL9.as_bytes(),
        );
        link(t, "../efi/EFI/redhat/grubenv", "/boot/grub2/grubenv");
        set_boot_cmdline(t, ROOT, KERNEL_CMDLINE).unwrap();
        let link_meta = fs::symlink_metadata(host(t, "/boot/grub2/grubenv")).unwrap();
        assert!(link_meta.file_type().is_symlink());
        let block = text(t, "/boot/efi/EFI/redhat/grubenv");
        assert!(
            block.contains(&format!("\nkernelopts={}\n", expected_cmdline())),
            "{block:?}"
        );
        let cfg = text(t, "/boot/efi/EFI/redhat/grub.cfg");
        assert!(
            cfg.contains(&format!("set kernelopts=\"{}\"", expected_cmdline())),
            "{cfg}"
        );
    }

    #[test]
    fn default_grub_settings() {
        let dir = fixed_tree();
        let expected = format!(
            "GRUB_TIMEOUT=1\n\
             GRUB_DISTRIBUTOR=\"$(sed 's, release .*$,,g' /etc/system-release)\"\n\
             GRUB_DEFAULT=saved\n\
             GRUB_DISABLE_SUBMENU=true\n\
             GRUB_CMDLINE_LINUX=\"{KERNEL_CMDLINE}\"\n\
             GRUB_DISABLE_RECOVERY=\"true\"\n\
             GRUB_ENABLE_BLSCFG=true\n\
             GRUB_TERMINAL=\"console serial\"\n\
             GRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n\
             GRUB_DISABLE_OS_PROBER=true\n"
        );
        assert_eq!(text(dir.path(), DEFAULT_GRUB), expected);
    }

    #[test]
    fn default_grub_created_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        let expected = format!(
            "GRUB_CMDLINE_LINUX=\"{KERNEL_CMDLINE}\"\n\
             GRUB_TIMEOUT=1\n\
             GRUB_TERMINAL=\"console serial\"\n\
             GRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n\
             GRUB_DISABLE_OS_PROBER=true\n"
        );
        assert_eq!(text(dir.path(), DEFAULT_GRUB), expected);
        assert_eq!(mode(dir.path(), DEFAULT_GRUB), 0o644);
        assert!(!exists(dir.path(), "/boot/grub2/grubenv"));
    }

    #[test]
    fn kernel_cmdline_file_written() {
        let dir = fixed_tree();
        assert_eq!(
            text(dir.path(), KERNEL_CMDLINE_FILE),
            format!("{}\n", expected_cmdline())
        );
        assert_eq!(mode(dir.path(), KERNEL_CMDLINE_FILE), 0o644);
    }

    #[test]
    fn entry_without_options_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = "/boot/loader/entries/custom.conf";
        put(
            dir.path(),
            path,
            b"title Custom\nlinux /vmlinuz-custom\ninitrd /initrd-custom\n",
        );
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        let expected = format!(
            "title Custom\nlinux /vmlinuz-custom\ninitrd /initrd-custom\noptions {}\n",
            expected_cmdline()
        );
        assert_eq!(text(dir.path(), path), expected);
    }

    #[test]
    fn entry_options_lines_merged() {
        let entry = "title X\noptions a b\nlinux /vmlinuz\noptions c\n";
        assert_eq!(
            set_bls_options(entry, "root=UUID=x ro").unwrap(),
            "title X\noptions root=UUID=x ro\nlinux /vmlinuz\n"
        );
    }

    #[test]
    fn chainload_entry_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = "/boot/loader/entries/windows.conf";
        let entry = b"title Windows\nefi /EFI/Microsoft/Boot/bootmgfw.efi\n";
        put(dir.path(), path, entry);
        put(dir.path(), "/boot/loader/entries/README", b"options x\n");
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        assert_eq!(fs::read(host(dir.path(), path)).unwrap(), entry);
        assert_eq!(
            text(dir.path(), "/boot/loader/entries/README"),
            "options x\n"
        );
    }

    #[test]
    fn invalid_cmdline_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("", KERNEL_CMDLINE, "invalid root"),
            ("UUID=a b", KERNEL_CMDLINE, "invalid root"),
            ("UUID=\"a\"", KERNEL_CMDLINE, "invalid root"),
            (ROOT, "console=ttyS0 \"x", "contains '\"'"),
            (ROOT, "console=ttyS0 $extra", "contains '$'"),
            (ROOT, "console=ttyS0\nGRUB_TIMEOUT=9", "contains '\\n'"),
            (ROOT, "root=/dev/sda1 console=ttyS0", "sets root=/dev/sda1"),
        ];
        for (root, cmdline, expected) in cases {
            let error = set_boot_cmdline(dir.path(), root, cmdline).unwrap_err();
            let message = format!("{error:#}");
            assert!(
                message.contains(expected),
                "{root:?} {cmdline:?}: {message}"
            );
        }
        assert!(!exists(dir.path(), DEFAULT_GRUB));
    }

    #[test]
    fn assignments_set_added_and_removed() {
        let text = "A=1\n# A=comment\nexport B=\"x\ny\"\nC=3\nA=2\nD='p\nq'\nE=5\n";
        let settings = [
            ("A", "9".to_string()),
            ("B", "\"z\"".to_string()),
            ("F", "6".to_string()),
        ];
        let new = set_assignments(text, &settings, &["D"]);
        assert_eq!(new, "A=9\n# A=comment\nB=\"z\"\nC=3\nE=5\nF=6\n");
    }

    // The network.

    #[test]
    fn static_ifcfg_replaced_by_dhcp() {
        let dir = fixed_tree();
        let t = dir.path();
        let eth0 = format!("{NETWORK_SCRIPTS}/ifcfg-eth0");
        assert_eq!(text(t, &eth0), IFCFG_ETH0);
        assert_eq!(mode(t, &eth0), 0o644);
        assert!(!exists(t, &format!("{NETWORK_SCRIPTS}/ifcfg-ens3")));
        assert!(!exists(t, &format!("{NETWORK_SCRIPTS}/route-eth0")));
        assert!(exists(t, &format!("{NETWORK_SCRIPTS}/ifcfg-lo")));
    }

    #[test]
    fn pinned_keyfiles_removed() {
        let dir = fixed_tree();
        let t = dir.path();
        assert!(!exists(
            t,
            &format!("{NM_CONNECTIONS}/static-eth0.nmconnection")
        ));
        assert!(!exists(
            t,
            &format!("{NM_CONNECTIONS}/bound-eth1.nmconnection")
        ));
        assert!(exists(
            t,
            &format!("{NM_CONNECTIONS}/cloud-init-eth0.nmconnection")
        ));
    }

    #[test]
    fn keyfile_pin_cases() {
        assert!(keyfile_pins("[ipv6]\nmethod = manual\n"));
        assert!(keyfile_pins("[ipv4]\naddresses=10.0.0.5/24;\n"));
        assert!(keyfile_pins("[wifi]\nmac-address=00:0D:3A:00:00:01\n"));
        assert!(!keyfile_pins(
            "[ipv4]\nmethod=auto\n[proxy]\nmethod=manual\n"
        ));
        assert!(!keyfile_pins(
            "[ethernet]\nmac-address-blacklist=00:0D:3A:00:00:01\n"
        ));
        assert!(!keyfile_pins(
            "[ipv4]\n# address1=10.0.0.5/24\nmethod=auto\n"
        ));
    }

    #[test]
    fn sysconfig_network_hostname_replaced() {
        let dir = fixed_tree();
        assert_eq!(
            text(dir.path(), SYSCONFIG_NETWORK),
            "# Created by anaconda\nNETWORKING=yes\nHOSTNAME=localhost.localdomain\nNOZEROCONF=yes\n"
        );
    }

    #[test]
    fn sysconfig_network_created_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        network_defaults(dir.path()).unwrap();
        assert_eq!(
            text(dir.path(), SYSCONFIG_NETWORK),
            "NETWORKING=yes\nHOSTNAME=localhost.localdomain\n"
        );
        assert_eq!(
            text(dir.path(), &format!("{NETWORK_SCRIPTS}/ifcfg-eth0")),
            IFCFG_ETH0
        );
    }

    #[test]
    fn persistent_net_rules_and_resolv_removed() {
        let dir = fixed_tree();
        let t = dir.path();
        assert!(!exists(t, &format!("{UDEV_RULES}/70-persistent-net.rules")));
        assert!(!exists(
            t,
            &format!("{UDEV_RULES}/75-persistent-net-generator.rules")
        ));
        assert!(exists(t, &format!("{UDEV_RULES}/80-local.rules")));
        assert!(!exists(t, "/etc/resolv.conf"));
    }

    // Both steps together.

    /// Returns every path under `root` with its mode and its contents or
    /// link target, without following symlinks.
    fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let mode = meta.permissions().mode();
                let contents = if meta.file_type().is_symlink() {
                    fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes()
                } else if meta.is_dir() {
                    stack.push(path.clone());
                    Vec::new()
                } else {
                    fs::read(&path).unwrap()
                };
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    (mode, contents),
                );
            }
        }
        out
    }

    #[test]
    fn second_run_changes_nothing() {
        let dir = fixed_tree();
        let first = snapshot(dir.path());
        set_boot_cmdline(dir.path(), ROOT, KERNEL_CMDLINE).unwrap();
        network_defaults(dir.path()).unwrap();
        let second = snapshot(dir.path());
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            second.keys().collect::<Vec<_>>()
        );
        for (path, before) in &first {
            assert_eq!(Some(before), second.get(path), "{} changed", path.display());
        }
    }

    /// Absolute links in the tree to a folder of the host: the steps must
    /// resolve them inside the tree and leave the host's files alone.
    #[test]
    fn links_out_of_tree_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let o = outside.path();
        let outside_files: Vec<(PathBuf, &[u8])> = vec![
            (
                o.join("host.conf"),
                b"title Host\nlinux /vmlinuz\noptions quiet\n",
            ),
            (
                o.join("grubenv"),
                b"# GRUB Environment Block\nkernelopts=quiet\n####",
            ),
            (o.join("ifcfg-eth1"), b"DEVICE=eth1\nIPADDR=10.9.9.9\n"),
            (o.join("network"), b"HOSTNAME=host\n"),
            (o.join("resolv.conf"), b"nameserver 10.9.9.1\n"),
            (o.join("static.nmconnection"), b"[ipv4]\nmethod=manual\n"),
        ];
        for (path, contents) in &outside_files {
            fs::write(path, contents).unwrap();
        }
        let outside_dir = o.to_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        link(t, outside_dir, BLS_ENTRIES);
        link(t, &format!("{outside_dir}/grubenv"), "/boot/grub2/grubenv");
        link(t, outside_dir, NETWORK_SCRIPTS);
        link(t, outside_dir, NM_CONNECTIONS);
        link(t, &format!("{outside_dir}/network"), SYSCONFIG_NETWORK);
        link(t, &format!("{outside_dir}/resolv.conf"), "/etc/resolv.conf");
        link(t, outside_dir, "/etc/kernel");

        set_boot_cmdline(t, ROOT, KERNEL_CMDLINE).unwrap();
        network_defaults(t).unwrap();

        for (path, contents) in &outside_files {
            assert_eq!(
                &fs::read(path).unwrap(),
                contents,
                "{} changed",
                path.display()
            );
        }
        assert!(!o.join("cmdline").exists());
        assert!(!o.join("ifcfg-eth0").exists());
        // The same links, resolved as the image sees them, end inside the
        // tree.
        let inside = t.join(o.strip_prefix("/").unwrap());
        assert_eq!(
            fs::read_to_string(inside.join("ifcfg-eth0")).unwrap(),
            IFCFG_ETH0
        );
        assert!(inside.join("cmdline").is_file());
        assert!(!exists(t, "/etc/resolv.conf"));
    }

    /// Runs one check rule on the tree, with the tree taken as a RHEL 9
    /// image.
    fn check_rule(tree: &Path, id: &str) -> (Status, String) {
        let view = DirView::new(tree);
        let disk = DiskFacts::default();
        let os = OsInfo {
            family: "rhel".into(),
            version: "9.3".into(),
            arch: "x86_64".into(),
        };
        let policy = Policy::default();
        let subject = Subject {
            disk: &disk,
            fs: Some(&view),
            os: &os,
            policy: &policy,
        };
        let rule = crate::check::rules::find(id).unwrap();
        let outcome = (rule.check)(&subject).unwrap();
        (outcome.status, outcome.evidence)
    }

    #[test]
    fn separate_boot_paths_get_the_boot_folder() {
        let entry = "title A\nlinux /vmlinuz-5.14\ninitrd /initramfs-5.14.img $tuned_initrd\n\
                     options root=x\n";
        let merged = merged_entry_paths(entry, |p| p != "/boot/other");
        assert_eq!(
            merged,
            "title A\nlinux /boot/vmlinuz-5.14\ninitrd /boot/initramfs-5.14.img $tuned_initrd\n\
             options root=x\n"
        );
        let on_root = "linux /boot/vmlinuz-5.14\n";
        assert_eq!(merged_entry_paths(on_root, |_| true), on_root);
        assert_eq!(
            merged_entry_paths("linux /vmlinuz\n", |_| false),
            "linux /vmlinuz\n"
        );
    }

    #[test]
    fn check_rules_pass_after_steps() {
        let dir = source_tree();
        let t = dir.path();
        for id in ["kernel-cmdline", "no-custom-network-config"] {
            let (status, evidence) = check_rule(t, id);
            assert_eq!(status, Status::Fail, "{id} before the steps: {evidence}");
        }
        set_boot_cmdline(t, ROOT, KERNEL_CMDLINE).unwrap();
        network_defaults(t).unwrap();
        let (status, evidence) = check_rule(t, "kernel-cmdline");
        assert_eq!(status, Status::Pass, "{evidence}");
        assert!(evidence.contains("all 2 boot entries"), "{evidence}");
        let (status, evidence) = check_rule(t, "no-custom-network-config");
        assert_eq!(status, Status::Pass, "{evidence}");
    }
}
