//! The `kernel-cmdline` rule: reads the boot entries the boot loader uses
//! (generated GRUB menus and Boot Loader Specification entries) rather than
//! `/etc/default/grub`.

use anyhow::Result;

use super::paths;
use crate::check::{ImageView, Outcome, Subject};

const GRUB_CONFIGS: &[&str] = &["/boot/grub/grub.cfg", "/boot/grub2/grub.cfg"];
const BLS_ENTRIES: &str = "/boot/loader/entries";
const GRUBENV: &str = "/boot/grub2/grubenv";
const LINUX_COMMANDS: &[&str] = &["linux", "linuxefi", "linux16"];

/// One kernel command line and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// Menu path of the entry (`Advanced options > Debian GNU/Linux ...`).
    pub title: String,
    /// `file:line` of the command line.
    pub origin: String,
    /// Kernel parameters after the kernel path.
    pub params: Vec<String>,
}

/// Returns the first quoted or bare word after a `menuentry`/`submenu`.
fn entry_title(line: &str) -> String {
    let rest = line
        .split_once(char::is_whitespace)
        .map_or("", |(_, r)| r)
        .trim_start();
    let mut chars = rest.chars();
    match chars.next() {
        Some(quote @ ('\'' | '"')) => chars.take_while(|&c| c != quote).collect(),
        Some(_) => rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string(),
        None => String::new(),
    }
}

/// Parses the menu entries of a generated `grub.cfg`, nested submenus
/// included. Lines outside any entry are reported under "(top level)".
pub fn parse_grub_cfg(file: &str, text: &str) -> Vec<BootEntry> {
    let mut stack: Vec<String> = Vec::new();
    let mut depth_of_entry: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let first = line.split_whitespace().next().unwrap_or_default();
        if matches!(first, "menuentry" | "submenu") && line.ends_with('{') {
            stack.push(entry_title(line));
            depth += 1;
            depth_of_entry.push(depth);
            continue;
        }
        if LINUX_COMMANDS.contains(&first) {
            let title = if stack.is_empty() {
                "(top level)".to_string()
            } else {
                stack.join(" > ")
            };
            let params = line
                .split_whitespace()
                .skip(2)
                .map(str::to_string)
                .collect();
            entries.push(BootEntry {
                title,
                origin: format!("{file}:{}", index + 1),
                params,
            });
        }
        depth += line.matches('{').count();
        for _ in 0..line.matches('}').count() {
            if depth_of_entry.last() == Some(&depth) {
                depth_of_entry.pop();
                stack.pop();
            }
            depth = depth.saturating_sub(1);
        }
    }
    entries
}

/// Reads `kernelopts` from the GRUB environment block, if any.
fn kernelopts(fs: &dyn ImageView) -> Result<Option<String>> {
    let text = fs.read_text(GRUBENV)?.unwrap_or_default();
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("kernelopts="))
        .map(str::to_string))
}

/// Parses the `options` line of a Boot Loader Specification entry,
/// expanding `$kernelopts`.
pub fn parse_bls_entry(file: &str, text: &str, kernelopts: Option<&str>) -> Option<BootEntry> {
    let title = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("title"))
        .map(|t| t.trim().to_string());
    let (index, options) = text.lines().enumerate().find_map(|(i, l)| {
        l.trim()
            .strip_prefix("options")
            .map(|o| (i, o.trim().to_string()))
    })?;
    let mut params = Vec::new();
    for word in options.split_whitespace() {
        if word == "$kernelopts" {
            params.extend(
                kernelopts
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_string),
            );
        } else {
            params.push(word.to_string());
        }
    }
    let title = title.unwrap_or_else(|| paths::file_name(file).to_string());
    Some(BootEntry {
        title,
        origin: format!("{file}:{}", index + 1),
        params,
    })
}

/// Collects the kernel command lines of every boot entry in the image.
pub fn boot_entries(fs: &dyn ImageView) -> Result<Vec<BootEntry>> {
    let mut entries = Vec::new();
    for file in GRUB_CONFIGS {
        if let Some(text) = fs.read_text(file)? {
            entries.extend(parse_grub_cfg(file, &text));
        }
    }
    let opts = kernelopts(fs)?;
    for name in fs.list_dir(BLS_ENTRIES)? {
        if !name.ends_with(".conf") {
            continue;
        }
        let file = format!("{BLS_ENTRIES}/{name}");
        if let Some(text) = fs.read_text(&file)? {
            entries.extend(parse_bls_entry(&file, &text, opts.as_deref()));
        }
    }
    Ok(entries)
}

/// Returns the required parameters that a command line lacks.
pub fn missing_params(params: &[String]) -> Vec<&'static str> {
    let has_serial = |key: &str| {
        params.iter().any(|p| {
            p.strip_prefix(key)
                .is_some_and(|v| v == "ttyS0" || v.starts_with("ttyS0,"))
        })
    };
    let mut missing = Vec::new();
    if !has_serial("console=") {
        missing.push("console=ttyS0");
    }
    if !has_serial("earlyprintk=") {
        missing.push("earlyprintk=ttyS0");
    }
    if !params.iter().any(|p| p == "rootdelay=300") {
        missing.push("rootdelay=300");
    }
    missing
}

/// Checks `kernel-cmdline` on every boot entry.
pub fn kernel_cmdline(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let entries = boot_entries(fs)?;
    if entries.is_empty() {
        return Ok(Outcome::fail(format!(
            "no boot entry found in {} or {BLS_ENTRIES}/*.conf",
            GRUB_CONFIGS.join(" or ")
        )));
    }
    let mut problems = Vec::new();
    for entry in &entries {
        let missing = missing_params(&entry.params);
        if !missing.is_empty() {
            problems.push(format!(
                "{} {:?} lacks {}",
                entry.origin,
                entry.title,
                missing.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "all {} boot entries have console=ttyS0, earlyprintk=ttyS0 and rootdelay=300",
            entries.len()
        )))
    } else {
        Ok(Outcome::fail(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRUB: &str = r#"
set default="0"
function load_video {
  insmod all_video
}
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple' {
	load_video
	linux	/boot/vmlinuz-6.1.0-18-amd64 root=UUID=x ro console=tty0 console=ttyS0,115200n8 earlyprintk=ttyS0 rootdelay=300
	initrd	/boot/initrd.img-6.1.0-18-amd64
}
submenu 'Advanced options for Debian GNU/Linux' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-18-amd64 (recovery mode)' {
		if [ x$grub_platform = xefi ]; then
			echo x
		fi
		linux	/boot/vmlinuz-6.1.0-18-amd64 root=UUID=x ro single
	}
}
menuentry "UEFI Firmware Settings" {
	fwsetup
}
"#;

    #[test]
    fn grub_entries_with_titles() {
        let entries = parse_grub_cfg("/boot/grub/grub.cfg", GRUB);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].title, "Debian GNU/Linux");
        assert_eq!(entries[0].origin, "/boot/grub/grub.cfg:8");
        assert_eq!(
            entries[1].title,
            "Advanced options for Debian GNU/Linux > Debian GNU/Linux, with Linux 6.1.0-18-amd64 (recovery mode)"
        );
    }

    #[test]
    fn grub_missing_params_named() {
        let entries = parse_grub_cfg("/boot/grub/grub.cfg", GRUB);
        assert!(missing_params(&entries[0].params).is_empty());
        assert_eq!(
            missing_params(&entries[1].params),
            ["console=ttyS0", "earlyprintk=ttyS0", "rootdelay=300"]
        );
    }

    #[test]
    fn serial_console_variants() {
        let params = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert!(missing_params(&params(
            "console=ttyS0 earlyprintk=ttyS0,115200 rootdelay=300"
        ))
        .is_empty());
        assert_eq!(
            missing_params(&params("console=ttyS01 earlyprintk=ttyS0 rootdelay=300")),
            ["console=ttyS0"]
        );
        assert_eq!(
            missing_params(&params("console=ttyS0 earlyprintk=ttyS0 rootdelay=30")),
            ["rootdelay=300"]
        );
    }

    #[test]
    fn bls_expands_kernelopts() {
        let text = "title Red Hat Enterprise Linux (5.14)\nlinux /vmlinuz\noptions $kernelopts rootdelay=300\n";
        let entry = parse_bls_entry(
            "/boot/loader/entries/a.conf",
            text,
            Some("root=/dev/sda2 console=ttyS0 earlyprintk=ttyS0"),
        )
        .unwrap();
        assert_eq!(entry.title, "Red Hat Enterprise Linux (5.14)");
        assert!(missing_params(&entry.params).is_empty());
        let bare = parse_bls_entry("/boot/loader/entries/a.conf", text, None).unwrap();
        assert_eq!(
            missing_params(&bare.params),
            ["console=ttyS0", "earlyprintk=ttyS0"]
        );
    }
}
