//! The software bill of materials of an image: an SPDX 2.3 JSON document
//! that lists every installed dpkg package, with its license where Debian
//! records one in machine-readable form, and describes the VHD itself with
//! its SHA-256.
//!
//! [`collect`] reads the package data from a tree, so that a build can read
//! it before its tree is gone, and [`Sbom::render`] writes the document
//! once the VHD's checksum is known. The output is deterministic: packages
//! are sorted, `created` comes from `SOURCE_DATE_EPOCH` when it is set, and
//! the document namespace is derived from the product and the checksum.

pub mod dep5;

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

use crate::check::rules::packages::{self, Package};
use crate::check::rules::paths;
use crate::check::ImageView;
use dep5::{DeclaredLicense, ExtractedLicense};

/// SPDX value for "the creator of the document makes no claim".
const NO_ASSERTION: &str = "NOASSERTION";

/// The Debian-based distribution of a tree, as purl's `distro` qualifier
/// and namespace name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distro {
    /// os-release `ID`: `debian`, `ubuntu`.
    pub id: String,
    /// os-release `VERSION_ID`: `12`; empty when the tree has none.
    pub version_id: String,
}

/// One installed package and the license it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageEntry {
    pub package: Package,
    pub license: DeclaredLicense,
}

/// The installed packages of a tree, read for the SBOM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub distro: Distro,
    /// Sorted by name, architecture and version.
    pub packages: Vec<PackageEntry>,
}

/// Reads the installed dpkg packages and their copyright files from a tree.
/// A tree without a dpkg status file has no packages.
pub fn collect(view: &dyn ImageView) -> Result<Inventory> {
    let mut installed = packages::installed(view)?.unwrap_or_default();
    installed.sort_by(|a, b| (&a.name, &a.arch, &a.version).cmp(&(&b.name, &b.arch, &b.version)));
    let mut entries = Vec::with_capacity(installed.len());
    for package in installed {
        let license = read_license(view, &package.name)?;
        entries.push(PackageEntry { package, license });
    }
    Ok(Inventory {
        distro: read_distro(view)?,
        packages: entries,
    })
}

/// Reads `/usr/share/doc/NAME/copyright`, following symlinks inside the
/// tree: a package may link its doc folder to that of another package
/// built from the same source.
fn read_license(view: &dyn ImageView, name: &str) -> Result<DeclaredLicense> {
    let path = format!("/usr/share/doc/{name}/copyright");
    let Some(real) = paths::resolve(view, &path)? else {
        return Ok(DeclaredLicense::NoAssertion);
    };
    Ok(match view.read_text(&real)? {
        Some(text) => dep5::declared_license(&text),
        None => DeclaredLicense::NoAssertion,
    })
}

fn read_distro(view: &dyn ImageView) -> Result<Distro> {
    let text = match view.read_text("/etc/os-release")? {
        Some(text) => text,
        None => view.read_text("/usr/lib/os-release")?.unwrap_or_default(),
    };
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let value = line.trim().strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned())
        })
    };
    Ok(Distro {
        id: field("ID").unwrap_or_else(|| "debian".to_owned()),
        version_id: field("VERSION_ID").unwrap_or_default(),
    })
}

/// An image's product and packages, ready to render once the image's
/// checksum is known.
#[derive(Clone, Debug)]
pub struct Sbom {
    /// Product name, as the recipe's `name`.
    pub name: String,
    /// Product version, as the recipe's `version`; `None` when unknown.
    pub version: Option<String>,
    pub inventory: Inventory,
}

impl Sbom {
    /// Renders the SPDX 2.3 JSON document for the image file `file_name`
    /// whose SHA-256 is `sha256`, created at `created` (seconds since
    /// 1970-01-01 UTC).
    pub fn render(&self, file_name: &str, sha256: &str, created: u64) -> String {
        let document = self.document(file_name, sha256, created);
        serde_json::to_string_pretty(&document).expect("the SBOM serializes to JSON") + "\n"
    }

    fn document(&self, file_name: &str, sha256: &str, created: u64) -> Document {
        let full_name = match &self.version {
            Some(version) => format!("{}-{version}", self.name),
            None => self.name.clone(),
        };
        let mut packages = vec![SpdxPackage {
            spdx_id: IMAGE_ID.to_owned(),
            name: self.name.clone(),
            version_info: self.version.clone(),
            package_file_name: Some(file_name.to_owned()),
            supplier: None,
            download_location: NO_ASSERTION.to_owned(),
            files_analyzed: false,
            checksums: vec![Checksum {
                algorithm: "SHA256",
                checksum_value: sha256.to_owned(),
            }],
            source_info: None,
            license_concluded: NO_ASSERTION.to_owned(),
            license_declared: NO_ASSERTION.to_owned(),
            copyright_text: NO_ASSERTION.to_owned(),
            external_refs: Vec::new(),
            primary_package_purpose: Some("OPERATING_SYSTEM"),
        }];
        let mut relationships = vec![Relationship {
            spdx_element_id: "SPDXRef-DOCUMENT".to_owned(),
            relationship_type: "DESCRIBES",
            related_spdx_element: IMAGE_ID.to_owned(),
        }];
        let mut extracted: BTreeMap<String, ExtractedLicense> = BTreeMap::new();
        let ids = package_ids(&self.inventory.packages);
        for (entry, spdx_id) in self.inventory.packages.iter().zip(ids) {
            let license_declared = match &entry.license {
                DeclaredLicense::Expression {
                    expression,
                    extracted: refs,
                } => {
                    for license in refs {
                        extracted
                            .entry(license.id.clone())
                            .or_insert_with(|| license.clone());
                    }
                    expression.clone()
                }
                DeclaredLicense::NoAssertion => NO_ASSERTION.to_owned(),
            };
            relationships.push(Relationship {
                spdx_element_id: IMAGE_ID.to_owned(),
                relationship_type: "CONTAINS",
                related_spdx_element: spdx_id.clone(),
            });
            packages.push(self.deb_package(entry, spdx_id, license_declared));
        }
        Document {
            spdx_version: "SPDX-2.3",
            data_license: "CC0-1.0",
            spdx_id: "SPDXRef-DOCUMENT",
            name: full_name.clone(),
            document_namespace: format!("https://forge.invalid/spdx/{full_name}-{sha256}"),
            creation_info: CreationInfo {
                created: crate::clock::format_utc(created),
                creators: vec![format!("Tool: forge-{}", env!("CARGO_PKG_VERSION"))],
            },
            packages,
            relationships,
            has_extracted_licensing_infos: extracted
                .into_values()
                .map(|license| ExtractedLicensingInfo {
                    extracted_text: license.text.unwrap_or_else(|| {
                        format!(
                            "The license that Debian copyright files name \"{}\". \
                             Its text is not in a stand-alone License paragraph.",
                            license.name
                        )
                    }),
                    name: license.name,
                    license_id: license.id,
                })
                .collect(),
        }
    }

    fn deb_package(
        &self,
        entry: &PackageEntry,
        spdx_id: String,
        license_declared: String,
    ) -> SpdxPackage {
        let p = &entry.package;
        SpdxPackage {
            spdx_id,
            name: p.name.clone(),
            version_info: Some(p.version.clone()),
            package_file_name: None,
            supplier: Some(supplier(&p.maintainer)),
            download_location: NO_ASSERTION.to_owned(),
            files_analyzed: false,
            checksums: Vec::new(),
            source_info: Some(format!("built package from: {}", p.source_name())),
            license_concluded: NO_ASSERTION.to_owned(),
            license_declared,
            copyright_text: NO_ASSERTION.to_owned(),
            external_refs: vec![ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: purl(p, &self.inventory.distro),
            }],
            primary_package_purpose: None,
        }
    }
}

/// SPDX id of the image package.
const IMAGE_ID: &str = "SPDXRef-Image";

/// Returns one SPDX id per package: `SPDXRef-deb-NAME-ARCH` with characters
/// outside `[A-Za-z0-9.-]` replaced by `-`, and a number appended when two
/// packages would get the same id (`g++` and `g--`).
fn package_ids(packages: &[PackageEntry]) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids = Vec::with_capacity(packages.len());
    for entry in packages {
        let p = &entry.package;
        let raw = format!("deb-{}-{}", p.name, p.arch);
        let clean: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let count = seen.entry(clean.clone()).or_insert(0);
        *count += 1;
        ids.push(if *count == 1 {
            format!("SPDXRef-{clean}")
        } else {
            format!("SPDXRef-{clean}-{count}")
        });
    }
    ids
}

/// Returns the package URL of a dpkg package, as the purl specification
/// defines it for the `deb` type: the name and version percent-encoded,
/// with `arch` and `distro` qualifiers (`distro=debian-12`).
pub fn purl(p: &Package, distro: &Distro) -> String {
    let distro_qualifier = if distro.version_id.is_empty() {
        distro.id.clone()
    } else {
        format!("{}-{}", distro.id, distro.version_id)
    };
    format!(
        "pkg:deb/{}/{}@{}?arch={}&distro={}",
        percent_encode(&distro.id),
        percent_encode(&p.name),
        percent_encode(&p.version),
        percent_encode(&p.arch),
        percent_encode(&distro_qualifier)
    )
}

/// Percent-encodes every byte outside the unreserved characters of RFC
/// 3986 (`A-Z a-z 0-9 - . _ ~`), so that `+` and the epoch's `:` are
/// encoded as the purl specification requires.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Converts a `Maintainer` field (`Name <address>`) to an SPDX supplier.
///
/// The maintainer distributes the package in Debian, which is what SPDX
/// calls the supplier. A maintainer whose name reads as a team (`Debian
/// OpenSSL Team`, `GNU Libc Maintainers`) is an organization, and any
/// other is a person.
fn supplier(maintainer: &str) -> String {
    let maintainer = maintainer.trim();
    if maintainer.is_empty() {
        return NO_ASSERTION.to_owned();
    }
    let (name, address) = match maintainer.split_once('<') {
        Some((name, rest)) => (name.trim(), rest.trim_end_matches('>').trim()),
        None => (maintainer, ""),
    };
    const TEAM_WORDS: &[&str] = &[
        "team",
        "maintainers",
        "group",
        "project",
        "developers",
        "packagers",
        "committee",
        "debian",
    ];
    let is_team = name
        .split_whitespace()
        .any(|word| TEAM_WORDS.contains(&word.to_lowercase().as_str()));
    let kind = if is_team { "Organization" } else { "Person" };
    if address.is_empty() {
        format!("{kind}: {name}")
    } else {
        format!("{kind}: {name} ({address})")
    }
}

/// The SPDX 2.3 document, with the fields this SBOM fills in. Field names
/// follow the SPDX 2.3 JSON schema.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<SpdxPackage>,
    relationships: Vec<Relationship>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<ExtractedLicensingInfo>,
}

#[derive(Serialize)]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_file_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supplier: Option<String>,
    download_location: String,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_info: Option<String>,
    license_concluded: String,
    license_declared: String,
    copyright_text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    primary_package_purpose: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtractedLicensingInfo {
    license_id: String,
    extracted_text: String,
    name: String,
}

#[cfg(test)]
mod tests;
