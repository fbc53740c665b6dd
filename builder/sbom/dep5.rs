//! Licenses from Debian's machine-readable copyright files (DEP-5,
//! "copyright-format 1.0"), turned into SPDX license expressions.
//!
//! A package's declared license is the `License` field of the paragraph
//! whose `Files` field lists `*`. Its first line is an expression of short
//! names joined by `and`, `or` and commas, where `A or B, and C` means
//! `(A or B) and C`. Short names that match an SPDX license id become that
//! id, and the others become `LicenseRef-` ids whose text the SBOM carries.

use std::collections::BTreeMap;

/// A license that has no SPDX id, declared in the SBOM under its own id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtractedLicense {
    /// `LicenseRef-` followed by the short name, with characters outside
    /// `[A-Za-z0-9.-]` replaced by `-`.
    pub id: String,
    /// The short name as the copyright file spells it.
    pub name: String,
    /// The license text from the file's stand-alone `License` paragraph
    /// for that name, when it has one.
    pub text: Option<String>,
}

/// The license a package declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclaredLicense {
    /// An SPDX license expression and the `LicenseRef-` licenses it uses.
    Expression {
        expression: String,
        extracted: Vec<ExtractedLicense>,
    },
    /// The copyright file is missing, not machine-readable, or has no
    /// `Files: *` paragraph with a `License` field.
    NoAssertion,
}

/// Reads the declared license from the text of a copyright file.
pub fn declared_license(copyright: &str) -> DeclaredLicense {
    let paragraphs = parse_paragraphs(copyright);
    let Some(header) = paragraphs.first() else {
        return DeclaredLicense::NoAssertion;
    };
    let machine_readable = header.get("format").is_some_and(|format| {
        format.contains("copyright-format/1.0") || format.contains("dep.debian.net/deps/dep5")
    });
    if !machine_readable {
        return DeclaredLicense::NoAssertion;
    }

    // Texts of the stand-alone License paragraphs, by short name.
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for paragraph in &paragraphs[1..] {
        if paragraph.contains_key("files") {
            continue;
        }
        if let Some(license) = paragraph.get("license") {
            let (name, text) = split_first_line(license);
            if !text.trim().is_empty() {
                texts.insert(name.to_lowercase(), text.to_owned());
            }
        }
    }

    let short_names: Vec<&str> = paragraphs[1..]
        .iter()
        .filter(|p| {
            p.get("files")
                .is_some_and(|files| files.split_whitespace().any(|pattern| pattern == "*"))
        })
        .filter_map(|p| p.get("license"))
        .map(|license| split_first_line(license).0)
        .filter(|name| !name.is_empty())
        .collect();
    if short_names.is_empty() {
        return DeclaredLicense::NoAssertion;
    }

    let mut extracted = BTreeMap::new();
    let parts: Vec<String> = short_names
        .iter()
        .map(|names| convert_expression(names, &texts, &mut extracted))
        .collect();
    let expression = match parts.as_slice() {
        [one] => one.clone(),
        several => several
            .iter()
            .map(|part| format!("({part})"))
            .collect::<Vec<_>>()
            .join(" AND "),
    };
    DeclaredLicense::Expression {
        expression,
        extracted: extracted.into_values().collect(),
    }
}

/// Splits a field value into its first line and the lines after it.
fn split_first_line(value: &str) -> (&str, &str) {
    match value.split_once('\n') {
        Some((first, rest)) => (first.trim(), rest),
        None => (value.trim(), ""),
    }
}

/// Parses control-file paragraphs into fields keyed by lower-case name.
/// Continuation lines are kept, without their leading space, and a line
/// that is only ` .` becomes an empty line.
fn parse_paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut paragraphs = Vec::new();
    let mut current: BTreeMap<String, String> = BTreeMap::new();
    let mut last_key: Option<String> = None;
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
            last_key = None;
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(value) = last_key.as_ref().and_then(|k| current.get_mut(k)) {
                let continued = line.trim();
                value.push('\n');
                if continued != "." {
                    value.push_str(continued);
                }
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            let key = key.trim().to_lowercase();
            current.insert(key.clone(), value.trim().to_owned());
            last_key = Some(key);
        }
    }
    paragraphs
}

/// Converts a DEP-5 license expression to SPDX syntax. Falls back to one
/// `LicenseRef-` for the whole text when the result does not parse as an
/// SPDX expression, so the output is always valid.
fn convert_expression(
    names: &str,
    texts: &BTreeMap<String, String>,
    extracted: &mut BTreeMap<String, ExtractedLicense>,
) -> String {
    let mut used = BTreeMap::new();
    let converted = convert_groups(names, texts, &mut used);
    if spdx::Expression::parse(&converted).is_ok() {
        extracted.append(&mut used);
        return converted;
    }
    license_ref(names, texts, extracted)
}

/// Converts comma-separated groups: each group after the first starts with
/// the operator that joins it to everything before it.
fn convert_groups(
    names: &str,
    texts: &BTreeMap<String, String>,
    extracted: &mut BTreeMap<String, ExtractedLicense>,
) -> String {
    let mut groups = names.split(',');
    let mut expression = convert_group(groups.next().unwrap_or_default(), texts, extracted);
    for group in groups {
        let group = group.trim();
        let (operator, rest) = match group.split_once(char::is_whitespace) {
            Some((word, rest)) if word.eq_ignore_ascii_case("and") => ("AND", rest),
            Some((word, rest)) if word.eq_ignore_ascii_case("or") => ("OR", rest),
            // A comma inside a name: the conversion fails and the caller
            // falls back to one reference for the whole text.
            _ => return format!("{expression},{group}"),
        };
        let rest = convert_group(rest, texts, extracted);
        expression = format!("({expression}) {operator} ({rest})");
    }
    expression
}

/// Converts names joined by `and` and `or`. A name followed by `with ...
/// exception` becomes one `LicenseRef-`, because SPDX 2.3 allows only
/// listed exception ids after `WITH`.
fn convert_group(
    group: &str,
    texts: &BTreeMap<String, String>,
    extracted: &mut BTreeMap<String, ExtractedLicense>,
) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut name: Vec<&str> = Vec::new();
    let mut flush = |name: &mut Vec<&str>, out: &mut Vec<String>| {
        if !name.is_empty() {
            out.push(convert_name(&name.join(" "), texts, extracted));
            name.clear();
        }
    };
    for word in group.split_whitespace() {
        if word.eq_ignore_ascii_case("and") || word.eq_ignore_ascii_case("or") {
            flush(&mut name, &mut out);
            out.push(word.to_uppercase());
        } else {
            name.push(word);
        }
    }
    flush(&mut name, &mut out);
    out.join(" ")
}

/// Converts one short name (possibly with `+` or a `with` clause).
fn convert_name(
    name: &str,
    texts: &BTreeMap<String, String>,
    extracted: &mut BTreeMap<String, ExtractedLicense>,
) -> String {
    match spdx_id(name) {
        Some(id) => id,
        None => license_ref(name, texts, extracted),
    }
}

/// Returns the SPDX license id of a DEP-5 short name, if it has one.
///
/// DEP-5 spells the GNU licenses `GPL-2`, `GPL-2.0` or `GPL-2+`, and names
/// some licenses differently from SPDX: `Expat` is SPDX `MIT`, `Artistic`
/// is Perl's `Artistic-1.0-Perl` and `CC0` is `CC0-1.0`. Other names match
/// SPDX ids regardless of case (`BSD-3-clause`), with a bare major version
/// taken as `.0` (`MPL-2`). A GNU license without a version has no id.
pub fn spdx_id(name: &str) -> Option<String> {
    let (base, or_later) = match name.strip_suffix('+') {
        Some(base) => (base, true),
        None => (name, false),
    };
    if base.contains(char::is_whitespace) {
        return None;
    }
    let lower = base.to_lowercase();
    let alias = match lower.as_str() {
        "expat" => Some("MIT"),
        "artistic" => Some("Artistic-1.0-Perl"),
        "cc0" => Some("CC0-1.0"),
        _ => None,
    };
    if let Some(alias) = alias {
        return (!or_later).then(|| alias.to_owned());
    }

    for (family, spdx_family) in [
        ("gfdl-niv-", "GFDL-"),
        ("agpl-", "AGPL-"),
        ("lgpl-", "LGPL-"),
        ("gpl-", "GPL-"),
        ("gfdl-", "GFDL-"),
    ] {
        if let Some(version) = lower.strip_prefix(family) {
            let version = if version.contains('.') {
                version.to_owned()
            } else {
                format!("{version}.0")
            };
            let suffix = if family == "gfdl-niv-" {
                "-no-invariants"
            } else {
                ""
            };
            let gnu_base = format!("{spdx_family}{version}{suffix}");
            return spdx::gnu_license_id(&gnu_base, or_later).map(|id| id.name.to_owned());
        }
    }

    let found = find_license(&lower).or_else(|| {
        let is_major = lower
            .rsplit_once('-')
            .is_some_and(|(_, v)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        if is_major {
            find_license(&format!("{lower}.0"))
        } else {
            None
        }
    })?;
    if or_later {
        // Only GNU licenses have an -or-later form in SPDX 2.3; `+` on
        // another id is valid syntax with the same meaning.
        return Some(format!("{found}+"));
    }
    Some(found)
}

/// Finds a current (not deprecated) SPDX license id, ignoring case.
fn find_license(lower: &str) -> Option<String> {
    spdx::identifiers::LICENSES
        .iter()
        .find(|license| {
            license.name.eq_ignore_ascii_case(lower)
                && license.flags & spdx::flags::IS_DEPRECATED == 0
        })
        .map(|license| license.name.to_owned())
}

/// Returns the `LicenseRef-` id for a name and records it with its text.
fn license_ref(
    name: &str,
    texts: &BTreeMap<String, String>,
    extracted: &mut BTreeMap<String, ExtractedLicense>,
) -> String {
    let sanitized: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let id = format!("LicenseRef-{sanitized}");
    extracted
        .entry(id.clone())
        .or_insert_with(|| ExtractedLicense {
            id: id.clone(),
            name: name.to_owned(),
            text: texts.get(&name.to_lowercase()).cloned(),
        });
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expression_of(copyright: &str) -> String {
        match declared_license(copyright) {
            DeclaredLicense::Expression { expression, .. } => expression,
            DeclaredLicense::NoAssertion => panic!("no license found in:\n{copyright}"),
        }
    }

    fn files_star(license: &str) -> String {
        format!(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
             Upstream-Name: example\n\n\
             Files: *\nCopyright: 2020 Someone\nLicense: {license}\n\n\
             Files: debian/*\nCopyright: 2021 Debian\nLicense: GPL-2+\n"
        )
    }

    #[test]
    fn short_names_map_to_spdx_ids() {
        let cases = [
            ("GPL-2+", Some("GPL-2.0-or-later")),
            ("GPL-2", Some("GPL-2.0-only")),
            ("GPL-2.0", Some("GPL-2.0-only")),
            ("GPL-3+", Some("GPL-3.0-or-later")),
            ("LGPL-2.1+", Some("LGPL-2.1-or-later")),
            ("LGPL-2", Some("LGPL-2.0-only")),
            ("AGPL-3", Some("AGPL-3.0-only")),
            ("GFDL-NIV-1.3+", Some("GFDL-1.3-no-invariants-or-later")),
            ("Expat", Some("MIT")),
            ("expat", Some("MIT")),
            ("MIT", Some("MIT")),
            ("BSD-3-clause", Some("BSD-3-Clause")),
            ("BSD-2-clause", Some("BSD-2-Clause")),
            ("Apache-2.0", Some("Apache-2.0")),
            ("MPL-2", Some("MPL-2.0")),
            ("Zlib", Some("Zlib")),
            ("ISC", Some("ISC")),
            ("Artistic", Some("Artistic-1.0-Perl")),
            ("CC0", Some("CC0-1.0")),
            ("libpng", Some("Libpng")),
            ("Apache-2.0+", Some("Apache-2.0+")),
            ("GPL", None),
            ("public-domain", None),
            ("MIT/X11", None),
            ("BSD-3-clauses", None),
        ];
        for (name, expected) in cases {
            assert_eq!(spdx_id(name).as_deref(), expected, "{name}");
        }
    }

    #[test]
    fn files_star_paragraph_gives_the_license() {
        assert_eq!(expression_of(&files_star("GPL-3+")), "GPL-3.0-or-later");
    }

    #[test]
    fn operators_and_comma_precedence() {
        assert_eq!(
            expression_of(&files_star("GPL-1+ or Artistic")),
            "GPL-1.0-or-later OR Artistic-1.0-Perl"
        );
        assert_eq!(
            expression_of(&files_star("GPL-2+ or AFL-2.1, and Expat and Tcl-BSDish")),
            "(GPL-2.0-or-later OR AFL-2.1) AND (MIT AND LicenseRef-Tcl-BSDish)"
        );
    }

    #[test]
    fn unknown_names_become_license_refs_with_text() {
        let copyright = files_star("public-domain or MIT/X11")
            + "\nLicense: public-domain\n The author places this in the public domain.\n .\n Really.\n";
        let DeclaredLicense::Expression {
            expression,
            extracted,
        } = declared_license(&copyright)
        else {
            panic!("no license found");
        };
        assert_eq!(expression, "LicenseRef-public-domain OR LicenseRef-MIT-X11");
        assert_eq!(extracted.len(), 2);
        assert_eq!(extracted[0].id, "LicenseRef-MIT-X11");
        assert_eq!(extracted[0].text, None);
        assert_eq!(extracted[1].id, "LicenseRef-public-domain");
        assert_eq!(extracted[1].name, "public-domain");
        assert_eq!(
            extracted[1].text.as_deref(),
            Some("The author places this in the public domain.\n\nReally.")
        );
    }

    #[test]
    fn exception_clause_becomes_one_reference() {
        assert_eq!(
            expression_of(&files_star("GPL-2+ with OpenSSL exception")),
            "LicenseRef-GPL-2--with-OpenSSL-exception"
        );
    }

    #[test]
    fn not_machine_readable_is_no_assertion() {
        let text = "This is the Debian prepackaged version of bash.\n\nLicense: GPL-3+\n";
        assert_eq!(declared_license(text), DeclaredLicense::NoAssertion);
        assert_eq!(declared_license(""), DeclaredLicense::NoAssertion);
    }

    #[test]
    fn missing_files_star_is_no_assertion() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
                    Files: src/*\nCopyright: 2020 Someone\nLicense: MIT\n";
        assert_eq!(declared_license(text), DeclaredLicense::NoAssertion);
    }

    #[test]
    fn old_dep5_format_url_is_machine_readable() {
        let text = "Format: http://dep.debian.net/deps/dep5\n\n\
                    Files: *\nCopyright: 2020 Someone\nLicense: ISC\n";
        assert_eq!(expression_of(text), "ISC");
    }

    #[test]
    fn every_result_parses_as_spdx() {
        // Short names found in the copyright files of a Debian 12 image.
        let names = [
            "GPL-2+ or AFL-2.1, and Expat and Tcl-BSDish",
            "BSD-3-clause or GPL",
            "LGPL-3+ or GPL-2+",
            "GPL-3 or Apache-2.0",
            "CC0 or Apache-2.0",
            "LGPL-2.1 or BSD-2-Clause",
            "Sleepycat and BSD-3-clause",
            "BSD-3-clause-Cambridge with BINARY LIBRARY-LIKE PACKAGES exception",
            "OpenSSH",
            "ad-hoc",
            "a, b",
            "MIT-style",
            "TCP-wrappers",
            "FTL",
        ];
        for name in names {
            let expression = expression_of(&files_star(name));
            assert!(
                spdx::Expression::parse(&expression).is_ok(),
                "{name} gave {expression}"
            );
        }
    }
}
