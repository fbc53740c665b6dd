//! GRUB variables as a generated `grub.cfg` uses them: the environment
//! block that `load_env` reads, the `set` commands of the script, and the
//! expansion of `$name` and `${name}` in kernel command lines.

use std::collections::BTreeMap;

/// First line of a GRUB environment block; `load_env` rejects a file
/// without it.
pub const GRUBENV_HEADER: &str = "# GRUB Environment Block";
/// Variables that GRUB sets itself while it runs, so a script may use
/// them without defining them.
const BUILTIN: &[&str] = &[
    "root",
    "prefix",
    "cmdpath",
    "config_directory",
    "grub_platform",
    "grub_cpu",
];
/// Maximum nesting of variables inside variable values.
const MAX_EXPANSION_DEPTH: usize = 8;

/// Parses a GRUB environment block: the header line, then `name=value`
/// lines, with `#` lines as padding. A backslash escapes the character
/// after it. Returns why the block is invalid when the header is missing.
pub fn parse_grubenv(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(GRUBENV_HEADER) {
        return Err(format!("does not start with {GRUBENV_HEADER:?}"));
    }
    let mut values = BTreeMap::new();
    for line in lines {
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let mut unescaped = String::with_capacity(value.len());
        let mut chars = value.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                unescaped.extend(chars.next());
            } else {
                unescaped.push(c);
            }
        }
        values.insert(name.to_string(), unescaped);
    }
    Ok(values)
}

/// A kernel command line after variable expansion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    pub text: String,
    /// Variables that were used but never defined, in order of first use.
    pub undefined: Vec<String>,
}

/// The variables of one GRUB script at one point of its run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Variables {
    values: BTreeMap<String, String>,
}

impl Variables {
    /// Sets a variable; the value may refer to other variables, which are
    /// expanded when the value is used.
    pub fn set(&mut self, name: &str, value: &str) {
        self.values.insert(name.to_string(), value.to_string());
    }

    /// Sets every variable of an environment block.
    pub fn load(&mut self, block: &BTreeMap<String, String>) {
        for (name, value) in block {
            self.set(name, value);
        }
    }

    /// Returns whether a variable is defined with a value that is not
    /// empty, as GRUB's `[ -n "$name" ]` tests it.
    pub fn is_non_empty(&self, name: &str) -> bool {
        self.values.get(name).is_some_and(|v| !v.is_empty())
    }

    /// Expands `$name` and `${name}` in `text`. An undefined variable
    /// expands to nothing, as in GRUB, and is listed in the result.
    /// GRUB's own run-time variables are kept as written.
    pub fn expand(&self, text: &str) -> Expansion {
        let mut expansion = Expansion::default();
        self.expand_into(text, 0, &mut expansion);
        expansion
    }

    fn expand_into(&self, text: &str, depth: usize, out: &mut Expansion) {
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            out.text.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let (name, reference_len) = match after.strip_prefix('{') {
                Some(braced) => match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => ("", 0),
                },
                None => {
                    let len = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..len], len)
                }
            };
            if name.is_empty() {
                out.text.push('$');
                rest = after;
                continue;
            }
            rest = &after[reference_len..];
            if BUILTIN.contains(&name) {
                out.text.push_str(&format!("${{{name}}}"));
            } else if let (Some(value), true) = (self.values.get(name), depth < MAX_EXPANSION_DEPTH)
            {
                self.expand_into(value, depth + 1, out);
            } else if !out.undefined.iter().any(|u| u == name) {
                out.undefined.push(name.to_string());
            }
        }
        out.text.push_str(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grubenv_block_parsed() {
        let mut text = format!(
            "{GRUBENV_HEADER}\nsaved_entry=abc\nkernelopts=root=/dev/sda2 ro console=ttyS0\n\
             odd=a\\\\b\\#c\n"
        );
        text.push_str(&"#".repeat(900));
        let values = parse_grubenv(&text).unwrap();
        assert_eq!(values["saved_entry"], "abc");
        assert_eq!(values["kernelopts"], "root=/dev/sda2 ro console=ttyS0");
        assert_eq!(values["odd"], "a\\b#c");
        assert_eq!(values.len(), 3);
    }

    #[test]
    fn grubenv_without_header_rejected() {
        let error = parse_grubenv("kernelopts=console=ttyS0\n").unwrap_err();
        assert!(error.contains("GRUB Environment Block"), "{error}");
    }

    #[test]
    fn expansion_of_both_forms() {
        let mut vars = Variables::default();
        vars.set("kernelopts", "root=/dev/sda2 $extra");
        vars.set("extra", "console=ttyS0");
        vars.set("tuned_params", "");
        let expansion = vars.expand("$kernelopts ${tuned_params} rootdelay=300 $missing");
        assert_eq!(
            expansion.text,
            "root=/dev/sda2 console=ttyS0  rootdelay=300 "
        );
        assert_eq!(expansion.undefined, ["missing"]);
    }

    #[test]
    fn builtins_and_lone_dollars_kept() {
        let vars = Variables::default();
        let expansion = vars.expand("($root)/vmlinuz a=$ b=${unclosed");
        assert_eq!(expansion.text, "(${root})/vmlinuz a=$ b=${unclosed");
        assert!(expansion.undefined.is_empty());
    }

    #[test]
    fn self_reference_stops() {
        let mut vars = Variables::default();
        vars.set("loop", "x $loop");
        let expansion = vars.expand("$loop");
        assert_eq!(expansion.undefined, ["loop"]);
        assert!(expansion.text.starts_with("x x "), "{}", expansion.text);
    }
}
