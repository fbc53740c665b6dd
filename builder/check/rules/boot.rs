//! The `kernel-cmdline` rule: reads the boot entries the boot loader uses
//! (generated GRUB menus and Boot Loader Specification entries) rather than
//! `/etc/default/grub`.
//!
//! A generated `grub.cfg` is a script, so its variables are followed in
//! order: `load_env` reads the environment block beside the file, `set`
//! assigns, and `if [ -z "$name" ]` blocks assign only when the variable
//! is empty. BLS entries, which RHEL-family GRUB reads with its `blscfg`
//! command, are expanded with the variables at that command.

use std::collections::BTreeSet;

use anyhow::Result;

use super::grub_env::{self, Variables};
use super::paths;
use crate::check::{ImageView, Outcome, Subject};

/// Generated GRUB configurations: Debian's, the RHEL family's and SUSE's,
/// and those on the EFI system partition.
const GRUB_CONFIGS: &[&str] = &[
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/efi/EFI/*/grub.cfg",
];
const BLS_ENTRIES: &str = "/boot/loader/entries";
/// Environment blocks used for BLS entries when no `grub.cfg` runs
/// `blscfg`, in order of preference.
const GRUBENV_FILES: &[&str] = &["/boot/grub2/grubenv", "/boot/grub/grubenv"];
const LINUX_COMMANDS: &[&str] = &["linux", "linuxefi", "linux16"];

/// One kernel command line and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootEntry {
    /// Menu path of the entry (`Advanced options > Debian GNU/Linux ...`).
    pub title: String,
    /// `file:line` of the command line, and for BLS entries the
    /// configuration whose variables expanded it.
    pub origin: String,
    /// Kernel parameters after the kernel path, variables expanded.
    pub params: Vec<String>,
    /// Variables the command line uses that nothing defines.
    pub undefined: Vec<String>,
}

/// The environment block that `load_env` reads for one `grub.cfg`: its
/// path and variables, or why it cannot be loaded.
#[derive(Clone, Debug)]
pub struct EnvBlock {
    pub path: String,
    pub values: std::result::Result<std::collections::BTreeMap<String, String>, String>,
}

/// Result of running one `grub.cfg`: its entries and variables.
#[derive(Clone, Debug, Default)]
pub struct GrubScript {
    pub entries: Vec<BootEntry>,
    /// The variables at the first `blscfg` command, when the script runs one.
    pub bls_variables: Option<Variables>,
    /// Environment blocks that `load_env` could not load, with the reason.
    pub notes: Vec<String>,
}

/// A condition of an enclosing `if` block.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Guard {
    /// A condition this reader does not evaluate; it is taken as true.
    Unknown,
    /// `[ -z "$name" ]`.
    Empty(String),
    /// `[ -n "$name" ]`, or the `else` branch of `[ -z "$name" ]`.
    NonEmpty(String),
}

impl Guard {
    fn parse(condition: &str) -> Self {
        let words: Vec<&str> = condition.split_whitespace().collect();
        let Some(test) = words.iter().position(|w| *w == "-z" || *w == "-n") else {
            return Guard::Unknown;
        };
        let Some(operand) = words.get(test + 1) else {
            return Guard::Unknown;
        };
        let name = operand
            .trim_matches(['"', '\''])
            .trim_start_matches('$')
            .trim_start_matches('{')
            .trim_end_matches('}');
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Guard::Unknown;
        }
        if words[test] == "-z" {
            Guard::Empty(name.to_string())
        } else {
            Guard::NonEmpty(name.to_string())
        }
    }

    fn negated(self) -> Self {
        match self {
            Guard::Unknown => Guard::Unknown,
            Guard::Empty(name) => Guard::NonEmpty(name),
            Guard::NonEmpty(name) => Guard::Empty(name),
        }
    }

    fn holds(&self, vars: &Variables) -> bool {
        match self {
            Guard::Unknown => true,
            Guard::Empty(name) => !vars.is_non_empty(name),
            Guard::NonEmpty(name) => vars.is_non_empty(name),
        }
    }
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

/// Splits a script line into commands at `;` outside quotes.
fn split_commands(line: &str) -> Vec<&str> {
    let mut commands = Vec::new();
    let mut quote = None;
    let mut start = 0;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                commands.push(line[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    commands.push(line[start..].trim());
    commands.retain(|c| !c.is_empty());
    commands
}

/// Parses `name=value` after `set`, removing one level of quotes.
fn parse_set(assignment: &str) -> Option<(&str, &str)> {
    let (name, value) = assignment.trim().split_once('=')?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let value = match value.chars().next() {
        Some(quote @ ('"' | '\'')) => {
            let inner = &value[1..];
            &inner[..inner.find(quote).unwrap_or(inner.len())]
        }
        _ => value.split_whitespace().next().unwrap_or_default(),
    };
    Some((name, value))
}

/// Removes `${...}` references, so that their braces do not count as
/// blocks.
fn without_references(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => rest = &rest[start + end + 1..],
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits an expanded command line into parameters, dropping the quotes
/// that GRUB removes when it splits words.
fn split_params(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.replace(['"', '\''], ""))
        .filter(|w| !w.is_empty())
        .collect()
}

/// State of a `grub.cfg` run: variables, enclosing conditions and menus.
#[derive(Default)]
struct ScriptRun {
    script: GrubScript,
    vars: Variables,
    guards: Vec<Guard>,
    titles: Vec<String>,
}

impl ScriptRun {
    /// Runs one command of line `line` of `file`.
    fn command(&mut self, file: &str, line: usize, command: &str, env: &EnvBlock) {
        let mut command = command;
        for keyword in ["then", "do", "else"] {
            let Some(rest) = command.strip_prefix(keyword) else {
                continue;
            };
            if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                if keyword == "else" {
                    if let Some(top) = self.guards.pop() {
                        self.guards.push(top.negated());
                    }
                }
                command = rest.trim_start();
            }
        }
        let word = command.split_whitespace().next().unwrap_or_default();
        let active = self.guards.iter().all(|g| g.holds(&self.vars));
        match word {
            "if" => self.guards.push(Guard::parse(&command[2..])),
            "elif" => {
                self.guards.pop();
                self.guards.push(Guard::Unknown);
            }
            "fi" => {
                self.guards.pop();
            }
            "set" if active => {
                if let Some((name, value)) = parse_set(&command[3..]) {
                    self.vars.set(name, value);
                }
            }
            "load_env" if active => match &env.values {
                Ok(values) => self.vars.load(values),
                Err(why) => {
                    let note = format!("{} {why}", env.path);
                    if !self.script.notes.contains(&note) {
                        self.script.notes.push(note);
                    }
                }
            },
            "blscfg" if active && self.script.bls_variables.is_none() => {
                self.script.bls_variables = Some(self.vars.clone());
            }
            w if LINUX_COMMANDS.contains(&w) => self.linux(file, line, command),
            _ => {}
        }
    }

    /// Records the command line of a `linux` command, variables expanded.
    fn linux(&mut self, file: &str, line: usize, command: &str) {
        let title = if self.titles.is_empty() {
            "(top level)".to_string()
        } else {
            self.titles.join(" > ")
        };
        let args: Vec<&str> = command.split_whitespace().skip(2).collect();
        let expansion = self.vars.expand(&args.join(" "));
        self.script.entries.push(BootEntry {
            title,
            origin: format!("{file}:{line}"),
            params: split_params(&expansion.text),
            undefined: expansion.undefined,
        });
    }
}

/// Runs a generated `grub.cfg` as far as the kernel command lines need:
/// menu entries with their titles, and the variables that `load_env` and
/// `set` define along the way.
///
/// NOTE: conditions other than `[ -z "$name" ]` and `[ -n "$name" ]` are
/// taken as true, so both branches of such an `if` assign, the later one
/// last.
pub fn run_grub_cfg(file: &str, text: &str, env: &EnvBlock) -> GrubScript {
    let mut run = ScriptRun::default();
    let mut depth_of_entry: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap_or_default();
        if matches!(first, "menuentry" | "submenu") && line.ends_with('{') {
            run.titles.push(entry_title(line));
            depth += 1;
            depth_of_entry.push(depth);
            continue;
        }
        for command in split_commands(line) {
            run.command(file, index + 1, command, env);
        }

        let line = without_references(line);
        depth += line.matches('{').count();
        for _ in 0..line.matches('}').count() {
            if depth_of_entry.last() == Some(&depth) {
                depth_of_entry.pop();
                run.titles.pop();
            }
            depth = depth.saturating_sub(1);
        }
    }
    run.script
}

/// Parses a Boot Loader Specification entry: its `options` lines, expanded
/// with `vars`. Returns `None` for an entry that starts no Linux kernel
/// (no `linux` and no `options` key).
pub fn parse_bls_entry(file: &str, text: &str, vars: &Variables) -> Option<BootEntry> {
    let mut title = None;
    let mut options = Vec::new();
    let mut options_line = None;
    let mut linux_line = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let (key, value) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(k, v)| (k, v.trim()));
        match key {
            "title" => title = Some(value.to_string()),
            "linux" => linux_line = linux_line.or(Some(index + 1)),
            "options" => {
                options.push(value);
                options_line = options_line.or(Some(index + 1));
            }
            _ => {}
        }
    }
    let line = options_line.or(linux_line)?;
    let expansion = vars.expand(&options.join(" "));
    Some(BootEntry {
        title: title.unwrap_or_else(|| paths::file_name(file).to_string()),
        origin: format!("{file}:{line}"),
        params: split_params(&expansion.text),
        undefined: expansion.undefined,
    })
}

/// Reads the environment block at `path` as `load_env` would.
fn read_env_block(fs: &dyn ImageView, path: &str) -> Result<EnvBlock> {
    let values = match paths::resolve(fs, path)? {
        Some(real) => match fs.read_text(&real)? {
            Some(text) => grub_env::parse_grubenv(&text),
            None => Err("is not a regular file".to_string()),
        },
        None => Err("does not exist".to_string()),
    };
    Ok(EnvBlock {
        path: path.to_string(),
        values,
    })
}

/// The boot entries of an image, and the problems met while reading the
/// variables they use.
#[derive(Clone, Debug, Default)]
pub struct BootEntries {
    pub entries: Vec<BootEntry>,
    pub notes: Vec<String>,
}

/// Collects the kernel command lines of every boot entry in the image:
/// the menu entries of each `grub.cfg`, and each BLS entry once for every
/// `grub.cfg` that runs `blscfg`.
pub fn boot_entries(fs: &dyn ImageView) -> Result<BootEntries> {
    let mut found = BootEntries::default();
    let mut bls_sources: Vec<(String, Variables)> = Vec::new();
    let mut seen = BTreeSet::new();
    for pattern in GRUB_CONFIGS {
        for file in paths::expand_glob(fs, pattern)? {
            let Some(real) = paths::resolve(fs, &file)? else {
                continue;
            };
            if !seen.insert(real.clone()) {
                continue;
            }
            let Some(text) = fs.read_text(&real)? else {
                continue;
            };
            let env = read_env_block(fs, &format!("{}/grubenv", paths::parent(&real)))?;
            let script = run_grub_cfg(&file, &text, &env);
            found.entries.extend(script.entries);
            found.notes.extend(script.notes);
            if let Some(vars) = script.bls_variables {
                bls_sources.push((file, vars));
            }
        }
    }
    let bls_files: Vec<String> = fs
        .list_dir(BLS_ENTRIES)?
        .into_iter()
        .filter(|name| name.ends_with(".conf"))
        .map(|name| format!("{BLS_ENTRIES}/{name}"))
        .collect();
    if !bls_files.is_empty() && bls_sources.is_empty() {
        bls_sources.push(bls_variables_without_blscfg(fs, &mut found.notes)?);
    }
    for (source, vars) in &bls_sources {
        for file in &bls_files {
            let Some(text) = fs.read_text(file)? else {
                continue;
            };
            if let Some(mut entry) = parse_bls_entry(file, &text, vars) {
                entry.origin = format!("{} (variables of {source})", entry.origin);
                found.entries.push(entry);
            }
        }
    }
    Ok(found)
}

/// Returns the variables for BLS entries when no `grub.cfg` runs
/// `blscfg`: those of the first environment block that exists.
fn bls_variables_without_blscfg(
    fs: &dyn ImageView,
    notes: &mut Vec<String>,
) -> Result<(String, Variables)> {
    let mut vars = Variables::default();
    for path in GRUBENV_FILES {
        let env = read_env_block(fs, path)?;
        match env.values {
            Ok(values) => {
                vars.load(&values);
                return Ok((path.to_string(), vars));
            }
            Err(why) => notes.push(format!("{path} {why}")),
        }
    }
    Ok(("no environment block".to_string(), vars))
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

/// Describes what is wrong with one entry, or `None` when nothing is.
fn entry_problem(entry: &BootEntry, notes: &[String]) -> Option<String> {
    let mut parts = Vec::new();
    let missing = missing_params(&entry.params);
    if !missing.is_empty() {
        parts.push(format!("lacks {}", missing.join(", ")));
    }
    if !entry.undefined.is_empty() {
        let names: Vec<String> = entry.undefined.iter().map(|n| format!("${n}")).collect();
        let mut part = format!("uses undefined {}", names.join(", "));
        if !notes.is_empty() {
            part.push_str(&format!(" ({})", notes.join("; ")));
        }
        parts.push(part);
    }
    (!parts.is_empty())
        .then(|| format!("{} {:?} {}", entry.origin, entry.title, parts.join(" and ")))
}

/// Checks `kernel-cmdline` on every boot entry.
pub fn kernel_cmdline(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let found = boot_entries(fs)?;
    if found.entries.is_empty() {
        return Ok(Outcome::fail(format!(
            "no boot entry found in {} or {BLS_ENTRIES}/*.conf",
            GRUB_CONFIGS.join(", ")
        )));
    }
    let problems: Vec<String> = found
        .entries
        .iter()
        .filter_map(|entry| entry_problem(entry, &found.notes))
        .collect();
    if problems.is_empty() {
        Ok(Outcome::pass(format!(
            "all {} boot entries have console=ttyS0, earlyprintk=ttyS0 and rootdelay=300",
            found.entries.len()
        )))
    } else {
        Ok(Outcome::fail(problems.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> EnvBlock {
        EnvBlock {
            path: "/boot/grub/grubenv".into(),
            values: Err("does not exist".into()),
        }
    }

    fn env(text: &str) -> EnvBlock {
        EnvBlock {
            path: "/boot/grub2/grubenv".into(),
            values: grub_env::parse_grubenv(text),
        }
    }

    fn params(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

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
        let entries = run_grub_cfg("/boot/grub/grub.cfg", GRUB, &no_env()).entries;
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].title, "Debian GNU/Linux");
        assert_eq!(entries[0].origin, "/boot/grub/grub.cfg:8");
        assert_eq!(
            entries[1].title,
            "Advanced options for Debian GNU/Linux > Debian GNU/Linux, with Linux 6.1.0-18-amd64 (recovery mode)"
        );
        assert!(entries.iter().all(|e| e.undefined.is_empty()));
    }

    #[test]
    fn grub_missing_params_named() {
        let entries = run_grub_cfg("/boot/grub/grub.cfg", GRUB, &no_env()).entries;
        assert!(missing_params(&entries[0].params).is_empty());
        assert_eq!(
            missing_params(&entries[1].params),
            ["console=ttyS0", "earlyprintk=ttyS0", "rootdelay=300"]
        );
    }

    #[test]
    fn serial_console_variants() {
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

    /// The parts of a RHEL 8 grub.cfg that define variables for BLS entries.
    const RHEL_CFG: &str = r#"
if [ -f ${config_directory}/grubenv ]; then
  load_env -f ${config_directory}/grubenv
elif [ -s $prefix/grubenv ]; then
  load_env
fi
set tuned_params=""
if [ -z "${kernelopts}" ]; then
  set kernelopts="root=/dev/sda2 ro crashkernel=auto "
fi
insmod blscfg
blscfg
set late="after blscfg"
"#;

    const BLS: &str = "title Red Hat Enterprise Linux (4.18.0)\nversion 4.18.0\n\
        linux /vmlinuz-4.18.0\noptions $kernelopts $tuned_params rootdelay=300\n";

    #[test]
    fn bls_takes_kernelopts_from_grubenv() {
        let block =
            "# GRUB Environment Block\nkernelopts=root=/dev/sda2 console=ttyS0 earlyprintk=ttyS0\n";
        let script = run_grub_cfg("/boot/grub2/grub.cfg", RHEL_CFG, &env(block));
        let vars = script.bls_variables.unwrap();
        let entry = parse_bls_entry("/boot/loader/entries/a.conf", BLS, &vars).unwrap();
        assert_eq!(entry.title, "Red Hat Enterprise Linux (4.18.0)");
        assert_eq!(entry.origin, "/boot/loader/entries/a.conf:4");
        assert!(entry.undefined.is_empty(), "{entry:?}");
        assert!(missing_params(&entry.params).is_empty(), "{entry:?}");
        assert!(
            !vars.is_non_empty("late"),
            "set after blscfg does not count"
        );
    }

    #[test]
    fn bls_falls_back_to_grub_cfg_kernelopts() {
        let block = "# GRUB Environment Block\nsaved_entry=x\n";
        let script = run_grub_cfg("/boot/grub2/grub.cfg", RHEL_CFG, &env(block));
        let entry = parse_bls_entry(
            "/boot/loader/entries/a.conf",
            BLS,
            &script.bls_variables.unwrap(),
        )
        .unwrap();
        assert!(entry.undefined.is_empty(), "{entry:?}");
        assert_eq!(
            entry.params,
            ["root=/dev/sda2", "ro", "crashkernel=auto", "rootdelay=300"]
        );
    }

    #[test]
    fn bls_undefined_variable_reported() {
        let cfg = "load_env\nblscfg\n";
        let script = run_grub_cfg("/boot/grub2/grub.cfg", cfg, &no_env());
        assert_eq!(script.notes, ["/boot/grub/grubenv does not exist"]);
        let entry = parse_bls_entry(
            "/boot/loader/entries/a.conf",
            BLS,
            &script.bls_variables.unwrap(),
        )
        .unwrap();
        assert_eq!(entry.undefined, ["kernelopts", "tuned_params"]);
        let problem = entry_problem(&entry, &script.notes).unwrap();
        assert!(
            problem.contains("uses undefined $kernelopts, $tuned_params"),
            "{problem}"
        );
        assert!(
            problem.contains("/boot/grub/grubenv does not exist"),
            "{problem}"
        );
    }

    #[test]
    fn bls_without_options_is_an_entry() {
        let entry = parse_bls_entry(
            "/boot/loader/entries/b.conf",
            "title X\nlinux /vmlinuz\n",
            &Variables::default(),
        )
        .unwrap();
        assert!(entry.params.is_empty());
        assert_eq!(entry.origin, "/boot/loader/entries/b.conf:2");
        let chainload = "title Windows\nefi /EFI/Microsoft/Boot/bootmgfw.efi\n";
        assert!(parse_bls_entry("c.conf", chainload, &Variables::default()).is_none());
    }

    #[test]
    fn grub_cfg_variables_in_linux_lines() {
        let cfg = "if [ \"${linux_gfx_mode}\" != \"text\" ]; then set vt_handoff=vt.handoff=7; else set vt_handoff= ; fi\n\
            menuentry 'Ubuntu' {\n\
            \tlinux /boot/vmlinuz root=x console=ttyS0 earlyprintk=ttyS0 rootdelay=300 $vt_handoff ${extra}\n\
            }\n";
        let entries = run_grub_cfg("/boot/grub/grub.cfg", cfg, &no_env()).entries;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].title, "Ubuntu");
        assert_eq!(entries[0].undefined, ["extra"]);
        assert!(missing_params(&entries[0].params).is_empty());
    }

    #[test]
    fn commands_split_outside_quotes() {
        assert_eq!(
            split_commands("if [ -z \"$a;b\" ]; then set a=1; fi"),
            ["if [ -z \"$a;b\" ]", "then set a=1", "fi"]
        );
        assert_eq!(
            parse_set(" kernelopts=\"a b \""),
            Some(("kernelopts", "a b "))
        );
        assert_eq!(parse_set(" x=1 2"), Some(("x", "1")));
        assert_eq!(parse_set(" =1"), None);
    }

    #[test]
    fn else_branch_negates_guard() {
        let cfg = "set a=full\nif [ -z \"$a\" ]; then\nset b=empty\nelse\nset b=full\nfi\nblscfg\n";
        let vars = run_grub_cfg("/boot/grub2/grub.cfg", cfg, &no_env())
            .bls_variables
            .unwrap();
        assert_eq!(vars.expand("$b").text, "full");
    }
}
