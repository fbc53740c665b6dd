//! The effective global sshd configuration, computed the way OpenSSH's
//! sshd reads `/etc/ssh/sshd_config`:
//!
//! - `Include` is expanded in place. Relative paths are under `/etc/ssh`,
//!   and glob patterns expand in lexical order, recursively.
//! - Keywords are case-insensitive and the first value of a keyword wins.
//! - Settings inside a `Match` block do not count for the global value. A
//!   block lasts until the next `Match` or the end of the file it is in, and
//!   `Match all` returns to settings that apply to every connection.
//! - Arguments may be quoted with `"`, and `Keyword=value` equals
//!   `Keyword value`.

use anyhow::{bail, Result};

use super::paths;
use crate::check::ImageView;

pub const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
const SSH_DIR: &str = "/etc/ssh";
/// Maximum nesting of `Include`, as sshd limits it.
const MAX_INCLUDE_DEPTH: usize = 16;

/// One global setting with the file and line it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Keyword as written in the file.
    pub keyword: String,
    pub args: Vec<String>,
    pub file: String,
    pub line: usize,
}

impl Setting {
    /// Returns the arguments joined with spaces.
    pub fn value(&self) -> String {
        self.args.join(" ")
    }

    /// Returns where the setting is, as `file:line`.
    pub fn origin(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// The global settings of sshd, in the order sshd reads them.
#[derive(Clone, Debug, Default)]
pub struct SshdConfig {
    settings: Vec<Setting>,
}

impl SshdConfig {
    /// Loads the configuration from the image; `None` when
    /// `/etc/ssh/sshd_config` does not exist.
    pub fn load(fs: &dyn ImageView) -> Result<Option<Self>> {
        let Some(text) = fs.read_text(SSHD_CONFIG)? else {
            return Ok(None);
        };
        let mut config = Self::default();
        config.parse_file(fs, SSHD_CONFIG, &text, false, 0)?;
        Ok(Some(config))
    }

    /// Returns the effective global setting of `keyword` (first one wins).
    pub fn effective(&self, keyword: &str) -> Option<&Setting> {
        self.settings
            .iter()
            .find(|s| s.keyword.eq_ignore_ascii_case(keyword))
    }

    fn parse_file(
        &mut self,
        fs: &dyn ImageView,
        file: &str,
        text: &str,
        in_match: bool,
        depth: usize,
    ) -> Result<()> {
        let mut in_match = in_match;
        for (index, raw) in text.lines().enumerate() {
            let Some((keyword, args)) =
                split_line(raw).map_err(|e| e.context(format!("{file}:{}", index + 1)))?
            else {
                continue;
            };
            if keyword.eq_ignore_ascii_case("Match") {
                in_match = !(args.len() == 1 && args[0].eq_ignore_ascii_case("all"));
            } else if keyword.eq_ignore_ascii_case("Include") {
                self.include(fs, &args, in_match, depth)?;
            } else if !in_match {
                self.settings.push(Setting {
                    keyword,
                    args,
                    file: file.to_string(),
                    line: index + 1,
                });
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        fs: &dyn ImageView,
        patterns: &[String],
        in_match: bool,
        depth: usize,
    ) -> Result<()> {
        if depth >= MAX_INCLUDE_DEPTH {
            bail!("sshd Include is nested more than {MAX_INCLUDE_DEPTH} levels deep");
        }
        for pattern in patterns {
            let absolute = paths::join(SSH_DIR, pattern);
            for path in paths::expand_glob(fs, &absolute)? {
                let Some(real) = paths::resolve(fs, &path)? else {
                    continue;
                };
                let Some(text) = fs.read_text(&real)? else {
                    continue;
                };
                self.parse_file(fs, &path, &text, in_match, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// Splits a configuration line into keyword and arguments; `None` for
/// blank lines and comments.
fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_string();
    let mut rest = line[end..].trim_start();
    if let Some(after) = rest.strip_prefix('=') {
        rest = after;
    }
    Ok(Some((keyword, split_args(rest)?)))
}

/// Splits arguments on whitespace, keeping `"quoted strings"` whole. A `#`
/// at the start of an argument begins a comment.
fn split_args(text: &str) -> Result<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            Some('"') => {
                chars.next();
                let quoted: String = chars.by_ref().take_while(|&c| c != '"').collect();
                args.push(quoted);
            }
            Some(_) => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() {
                        break;
                    }
                    if c == '"' {
                        bail!("invalid quote inside argument {word:?}");
                    }
                    word.push(c);
                    chars.next();
                }
                args.push(word);
            }
        }
    }
    Ok(args)
}

/// Converts an sshd time value to seconds: a number means seconds, and
/// `s`, `m`, `h`, `d`, `w` suffixes may be combined (`1m30s` is 90).
pub fn parse_time(value: &str) -> Result<u64> {
    let value = value.trim();
    if value.is_empty() {
        bail!("empty time value");
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => bail!("invalid time value {value:?}: unknown unit {c:?}; use s, m, h, d or w"),
        };
        total = add_part(total, &digits, unit, value)?;
        digits.clear();
    }
    if !digits.is_empty() {
        total = add_part(total, &digits, 1, value)?;
    }
    Ok(total)
}

fn add_part(total: u64, digits: &str, unit: u64, value: &str) -> Result<u64> {
    if digits.is_empty() {
        bail!("invalid time value {value:?}: a unit must follow a number");
    }
    let n: u64 = digits.parse()?;
    n.checked_mul(unit)
        .and_then(|part| total.checked_add(part))
        .ok_or_else(|| anyhow::anyhow!("time value {value:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::DirView;
    use std::fs;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let host = dir.path().join(path.trim_start_matches('/'));
            fs::create_dir_all(host.parent().unwrap()).unwrap();
            fs::write(host, text).unwrap();
        }
        dir
    }

    fn effective(files: &[(&str, &str)], keyword: &str) -> Option<Setting> {
        let dir = tree(files);
        let config = SshdConfig::load(&DirView::new(dir.path()))
            .unwrap()
            .unwrap();
        config.effective(keyword).cloned()
    }

    fn value(files: &[(&str, &str)], keyword: &str) -> Option<String> {
        effective(files, keyword).map(|s| s.value())
    }

    #[test]
    fn first_value_wins() {
        let files = [(
            SSHD_CONFIG,
            "ClientAliveInterval 180\nClientAliveInterval 60\n",
        )];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("180"));
    }

    #[test]
    fn keywords_case_insensitive() {
        let files = [(SSHD_CONFIG, "clientaliveinterval 120\n")];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("120"));
        assert_eq!(effective(&files, "CLIENTALIVEINTERVAL").unwrap().line, 1);
    }

    #[test]
    fn equals_sign_separates() {
        let files = [(
            SSHD_CONFIG,
            "PermitRootLogin=no\nPasswordAuthentication = yes\n",
        )];
        assert_eq!(value(&files, "PermitRootLogin").as_deref(), Some("no"));
        assert_eq!(
            value(&files, "PasswordAuthentication").as_deref(),
            Some("yes")
        );
    }

    #[test]
    fn comments_and_blank_lines_skipped() {
        let files = [(
            SSHD_CONFIG,
            "# ClientAliveInterval 1\n\n   \nClientAliveInterval 180 # trailing\n",
        )];
        let setting = effective(&files, "ClientAliveInterval").unwrap();
        assert_eq!(setting.args, ["180"]);
        assert_eq!(setting.line, 4);
    }

    #[test]
    fn include_expanded_in_place() {
        let files = [
            (
                SSHD_CONFIG,
                "Include /etc/ssh/sshd_config.d/*.conf\nClientAliveInterval 180\n",
            ),
            (
                "/etc/ssh/sshd_config.d/50-cloud.conf",
                "ClientAliveInterval 30\n",
            ),
        ];
        let setting = effective(&files, "ClientAliveInterval").unwrap();
        assert_eq!(setting.value(), "30");
        assert_eq!(setting.origin(), "/etc/ssh/sshd_config.d/50-cloud.conf:1");
    }

    #[test]
    fn include_after_setting_loses() {
        let files = [
            (
                SSHD_CONFIG,
                "ClientAliveInterval 180\nInclude sshd_config.d/*.conf\n",
            ),
            (
                "/etc/ssh/sshd_config.d/50-cloud.conf",
                "ClientAliveInterval 30\n",
            ),
        ];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("180"));
    }

    #[test]
    fn include_glob_in_lexical_order() {
        let files = [
            (SSHD_CONFIG, "Include sshd_config.d/*.conf\n"),
            (
                "/etc/ssh/sshd_config.d/20-b.conf",
                "ClientAliveInterval 20\n",
            ),
            (
                "/etc/ssh/sshd_config.d/10-a.conf",
                "ClientAliveInterval 10\n",
            ),
            ("/etc/ssh/sshd_config.d/05-z.txt", "ClientAliveInterval 5\n"),
        ];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("10"));
    }

    #[test]
    fn include_relative_and_recursive() {
        let files = [
            (SSHD_CONFIG, "Include extra.conf\n"),
            ("/etc/ssh/extra.conf", "Include more/*.conf\n"),
            ("/etc/ssh/more/a.conf", "ClientAliveInterval 3m\n"),
        ];
        let setting = effective(&files, "ClientAliveInterval").unwrap();
        assert_eq!(setting.value(), "3m");
        assert_eq!(setting.file, "/etc/ssh/more/a.conf");
    }

    #[test]
    fn include_missing_file_ignored() {
        let files = [(
            SSHD_CONFIG,
            "Include /etc/ssh/none/*.conf\nClientAliveInterval 180\n",
        )];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("180"));
    }

    #[test]
    fn include_loop_rejected() {
        let dir = tree(&[(SSHD_CONFIG, "Include sshd_config\n")]);
        assert!(SshdConfig::load(&DirView::new(dir.path())).is_err());
    }

    #[test]
    fn match_block_excluded() {
        let files = [(
            SSHD_CONFIG,
            "Match User bob\n  ClientAliveInterval 30\nClientAliveInterval 180\n",
        )];
        let setting = effective(&files, "ClientAliveInterval");
        assert_eq!(setting, None, "a setting after Match stays in the block");
    }

    #[test]
    fn match_all_returns_to_global() {
        let files = [(
            SSHD_CONFIG,
            "Match User bob\n  X11Forwarding yes\nMatch all\nClientAliveInterval 180\n",
        )];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("180"));
        assert_eq!(value(&files, "X11Forwarding"), None);
    }

    #[test]
    fn match_ends_with_included_file() {
        let files = [
            (
                SSHD_CONFIG,
                "Include sshd_config.d/*.conf\nClientAliveInterval 180\n",
            ),
            (
                "/etc/ssh/sshd_config.d/a.conf",
                "Match User bob\nClientAliveInterval 30\n",
            ),
        ];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("180"));
    }

    #[test]
    fn include_inside_match_is_excluded() {
        let files = [
            (
                SSHD_CONFIG,
                "Match User bob\nInclude b.conf\nMatch all\nClientAliveInterval 180\n",
            ),
            ("/etc/ssh/b.conf", "ClientAliveInterval 30\n"),
        ];
        assert_eq!(value(&files, "ClientAliveInterval").as_deref(), Some("180"));
    }

    #[test]
    fn quoted_arguments() {
        let files = [(
            SSHD_CONFIG,
            "Banner \"/etc/issue net\"\nAllowUsers \"a b\" c\n",
        )];
        assert_eq!(
            effective(&files, "Banner").unwrap().args,
            ["/etc/issue net"]
        );
        assert_eq!(effective(&files, "AllowUsers").unwrap().args, ["a b", "c"]);
    }

    #[test]
    fn missing_config_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SshdConfig::load(&DirView::new(dir.path()))
            .unwrap()
            .is_none());
    }

    #[test]
    fn time_values() {
        assert_eq!(parse_time("180").unwrap(), 180);
        assert_eq!(parse_time("180s").unwrap(), 180);
        assert_eq!(parse_time("3m").unwrap(), 180);
        assert_eq!(parse_time("3M").unwrap(), 180);
        assert_eq!(parse_time("2m60s").unwrap(), 180);
        assert_eq!(parse_time("1m30s").unwrap(), 90);
        assert_eq!(parse_time("1h").unwrap(), 3600);
        assert_eq!(parse_time("1d").unwrap(), 86_400);
        assert_eq!(parse_time("1w").unwrap(), 604_800);
        assert_eq!(parse_time("1h1m1").unwrap(), 3661);
        assert_eq!(parse_time("0").unwrap(), 0);
    }

    #[test]
    fn invalid_time_values() {
        assert!(parse_time("").is_err());
        assert!(parse_time("m").is_err());
        assert!(parse_time("3x").is_err());
        assert!(parse_time("-1").is_err());
        assert!(parse_time("99999999999999999999w").is_err());
    }
}
