use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;
use crate::check::DirView;

const STATUS: &str = "\
Package: bash
Status: install ok installed
Maintainer: Matthias Klose <doko@debian.org>
Architecture: amd64
Version: 5.2.15-2+b2

Package: libssl3
Status: install ok installed
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Source: openssl (3.0.11-1~deb12u2)
Version: 3.0.11-1~deb12u2+b1

Package: libssl3
Status: install ok installed
Architecture: i386
Source: openssl
Version: 1:3.0.11-1~deb12u2

Package: old-tool
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0-1
";

const BASH_COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: bash

Files: *
Copyright: (C) 1987-2022 Free Software Foundation, Inc.
License: GPL-3+

Files: examples/*
Copyright: 2011 Someone
License: public-domain

License: public-domain
 Placed in the public domain.
";

const OS_RELEASE: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";

fn write_tree(root: &Path) {
    fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc/bash")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc/libssl3")).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), STATUS).unwrap();
    fs::write(root.join("etc/os-release"), OS_RELEASE).unwrap();
    fs::write(root.join("usr/share/doc/bash/copyright"), BASH_COPYRIGHT).unwrap();
    fs::write(
        root.join("usr/share/doc/libssl3/copyright"),
        "Copyright: not machine-readable\n",
    )
    .unwrap();
}

fn inventory() -> Inventory {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path());
    collect(&DirView::new(dir.path())).unwrap()
}

fn sbom() -> Sbom {
    Sbom {
        name: "example".into(),
        version: Some("1.0.0".into()),
        inventory: inventory(),
    }
}

fn rendered() -> serde_json::Value {
    let text = sbom().render("example-1.0.0.vhd", &"ab".repeat(32), 1_700_000_000);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn collect_keeps_installed_packages_sorted() {
    let inventory = inventory();
    let names: Vec<(&str, &str)> = inventory
        .packages
        .iter()
        .map(|e| (e.package.name.as_str(), e.package.arch.as_str()))
        .collect();
    assert_eq!(
        names,
        [("bash", "amd64"), ("libssl3", "amd64"), ("libssl3", "i386")]
    );
    assert_eq!(
        inventory.distro,
        Distro {
            id: "debian".into(),
            version_id: "12".into()
        }
    );
}

#[test]
fn collect_reads_licenses_from_copyright() {
    let inventory = inventory();
    assert_eq!(
        inventory.packages[0].license,
        DeclaredLicense::Expression {
            expression: "GPL-3.0-or-later".into(),
            extracted: vec![],
        }
    );
    assert_eq!(inventory.packages[1].license, DeclaredLicense::NoAssertion);
}

#[test]
fn copyright_through_symlinked_doc_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_tree(dir.path());
    fs::remove_dir_all(dir.path().join("usr/share/doc/libssl3")).unwrap();
    symlink("bash", dir.path().join("usr/share/doc/libssl3")).unwrap();
    let inventory = collect(&DirView::new(dir.path())).unwrap();
    assert_eq!(inventory.packages[1].license, inventory.packages[0].license);
}

#[test]
fn tree_without_dpkg_has_no_packages() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = collect(&DirView::new(dir.path())).unwrap();
    assert!(inventory.packages.is_empty());
    assert_eq!(inventory.distro.id, "debian");
    assert_eq!(inventory.distro.version_id, "");
}

#[test]
fn document_header_fields() {
    let doc = rendered();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(doc["name"], "example-1.0.0");
    assert_eq!(
        doc["documentNamespace"],
        format!(
            "https://forge.invalid/spdx/example-1.0.0-{}",
            "ab".repeat(32)
        )
    );
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        doc["creationInfo"]["creators"][0],
        format!("Tool: forge-{}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn image_is_the_described_package() {
    let doc = rendered();
    let image = &doc["packages"][0];
    assert_eq!(image["SPDXID"], "SPDXRef-Image");
    assert_eq!(image["name"], "example");
    assert_eq!(image["versionInfo"], "1.0.0");
    assert_eq!(image["packageFileName"], "example-1.0.0.vhd");
    assert_eq!(image["checksums"][0]["algorithm"], "SHA256");
    assert_eq!(image["checksums"][0]["checksumValue"], "ab".repeat(32));
    assert_eq!(doc["relationships"][0]["spdxElementId"], "SPDXRef-DOCUMENT");
    assert_eq!(doc["relationships"][0]["relationshipType"], "DESCRIBES");
    assert_eq!(
        doc["relationships"][0]["relatedSpdxElement"],
        "SPDXRef-Image"
    );
}

#[test]
fn deb_package_fields() {
    let doc = rendered();
    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 4, "the image and three installed packages");

    let bash = &packages[1];
    assert_eq!(bash["SPDXID"], "SPDXRef-deb-bash-amd64");
    assert_eq!(bash["name"], "bash");
    assert_eq!(bash["versionInfo"], "5.2.15-2+b2");
    assert_eq!(bash["supplier"], "Person: Matthias Klose (doko@debian.org)");
    assert_eq!(bash["sourceInfo"], "built package from: bash");
    assert_eq!(bash["licenseDeclared"], "GPL-3.0-or-later");
    assert_eq!(bash["licenseConcluded"], "NOASSERTION");
    assert_eq!(
        bash["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12"
    );

    let ssl = &packages[2];
    assert_eq!(ssl["SPDXID"], "SPDXRef-deb-libssl3-amd64");
    assert_eq!(
        ssl["supplier"],
        "Organization: Debian OpenSSL Team (pkg-openssl-devel@alioth-lists.debian.net)"
    );
    assert_eq!(ssl["sourceInfo"], "built package from: openssl");
    assert_eq!(ssl["licenseDeclared"], "NOASSERTION");

    let ssl_i386 = &packages[3];
    assert_eq!(ssl_i386["supplier"], "NOASSERTION");
    assert_eq!(
        ssl_i386["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/libssl3@1%3A3.0.11-1~deb12u2?arch=i386&distro=debian-12"
    );

    let contained: Vec<&str> = doc["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|r| r["relatedSpdxElement"].as_str().unwrap())
        .collect();
    assert_eq!(
        contained,
        [
            "SPDXRef-deb-bash-amd64",
            "SPDXRef-deb-libssl3-amd64",
            "SPDXRef-deb-libssl3-i386"
        ]
    );
}

#[test]
fn output_is_deterministic() {
    let first = sbom().render("x.vhd", "00", 1);
    let second = sbom().render("x.vhd", "00", 1);
    assert_eq!(first, second);
    assert!(first.ends_with("}\n"));
}

#[test]
fn license_refs_are_declared_once() {
    let mut sbom = sbom();
    let reference = DeclaredLicense::Expression {
        expression: "LicenseRef-public-domain".into(),
        extracted: vec![ExtractedLicense {
            id: "LicenseRef-public-domain".into(),
            name: "public-domain".into(),
            text: None,
        }],
    };
    sbom.inventory.packages[1].license = reference.clone();
    sbom.inventory.packages[2].license = reference;
    let doc: serde_json::Value = serde_json::from_str(&sbom.render("x.vhd", "00", 1)).unwrap();
    let infos = doc["hasExtractedLicensingInfos"].as_array().unwrap();
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0]["licenseId"], "LicenseRef-public-domain");
    assert_eq!(infos[0]["name"], "public-domain");
    assert!(infos[0]["extractedText"]
        .as_str()
        .unwrap()
        .contains("\"public-domain\""));
}

#[test]
fn document_without_version() {
    let mut sbom = sbom();
    sbom.version = None;
    let doc: serde_json::Value = serde_json::from_str(&sbom.render("x.img", "00", 1)).unwrap();
    assert_eq!(doc["name"], "example");
    assert!(doc["packages"][0].get("versionInfo").is_none());
}

#[test]
fn package_ids_stay_unique() {
    let entry = |name: &str| PackageEntry {
        package: Package {
            name: name.into(),
            arch: "amd64".into(),
            ..Package::default()
        },
        license: DeclaredLicense::NoAssertion,
    };
    let ids = package_ids(&[entry("g++"), entry("g--"), entry("libstdc++6")]);
    assert_eq!(
        ids,
        [
            "SPDXRef-deb-g---amd64",
            "SPDXRef-deb-g---amd64-2",
            "SPDXRef-deb-libstdc--6-amd64"
        ]
    );
}

#[test]
fn supplier_person_or_organization() {
    assert_eq!(
        supplier("GNU Libc Maintainers <debian-glibc@lists.debian.org>"),
        "Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
    );
    assert_eq!(
        supplier("Santiago Vila <sanvila@debian.org>"),
        "Person: Santiago Vila (sanvila@debian.org)"
    );
    assert_eq!(supplier("Someone"), "Person: Someone");
    assert_eq!(supplier(""), "NOASSERTION");
}

#[test]
fn purl_encodes_plus_and_epoch() {
    let package = Package {
        name: "libstdc++6".into(),
        version: "1:12.2.0-14".into(),
        arch: "amd64".into(),
        ..Package::default()
    };
    let distro = Distro {
        id: "debian".into(),
        version_id: "12".into(),
    };
    assert_eq!(
        purl(&package, &distro),
        "pkg:deb/debian/libstdc%2B%2B6@1%3A12.2.0-14?arch=amd64&distro=debian-12"
    );
}
