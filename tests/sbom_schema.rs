//! Validates the SBOM against the official SPDX 2.3 JSON schema, which the
//! `serde-spdx` crate ships, with Debian's python3-jsonschema (draft
//! 2019-09 with format checks). The documents come from a synthetic tree and
//! from `forge sbom` on the test disk image with a planted dpkg status.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use forge::check::DirView;
use serde_json::Value;
use support::plant::Planted;

/// Debian's interpreter, where apt installs python3-jsonschema; another
/// python3 on `PATH` may lack the module.
const PYTHON: &str = "/usr/bin/python3";

/// Validates the document at argv[2] against the schema at argv[1] and
/// prints one line per error.
const VALIDATE: &str = "\
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
document = json.load(open(sys.argv[2]))
jsonschema.Draft201909Validator.check_schema(schema)
validator = jsonschema.Draft201909Validator(schema, format_checker=jsonschema.FormatChecker())
errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
for error in errors:
    print('/'.join(str(p) for p in error.path) + ': ' + error.message)
sys.exit(1 if errors else 0)
";

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
Version: 1:3.0.11-1~deb12u2+b1

Package: removed
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
";

const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Someone
License: GPL-2+ or MIT/X11

License: MIT/X11
 Permission is hereby granted.
";

/// Returns the path of the SPDX 2.3 schema in the `serde-spdx` sources,
/// found through `cargo metadata`; `None` when a validator part is missing.
fn schema() -> Option<&'static Path> {
    static SCHEMA: OnceLock<Option<PathBuf>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let has_jsonschema = Path::new(PYTHON).exists()
                && Command::new(PYTHON)
                    .args(["-c", "import jsonschema"])
                    .status()
                    .is_ok_and(|s| s.success());
            if !has_jsonschema {
                let ci = std::env::var("CI").unwrap_or_default();
                assert!(
                    ci.is_empty() || ci == "false",
                    "CI is set and {PYTHON} has no jsonschema module; \
                     run scripts/install-deps.sh"
                );
                eprintln!(
                    "skipping: {PYTHON} has no jsonschema module (apt install python3-jsonschema)"
                );
                return None;
            }
            // Without a platform filter, cargo metadata wants the sources of
            // every optional and foreign-platform dependency too.
            let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
            let output = Command::new(env!("CARGO"))
                .args(["metadata", "--format-version", "1", "--offline"])
                .args(["--filter-platform", &platform])
                .arg("--manifest-path")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
                .output()
                .expect("failed to run cargo metadata");
            assert!(
                output.status.success(),
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
            let manifest = metadata["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "serde-spdx")
                .and_then(|p| p["manifest_path"].as_str())
                .expect("serde-spdx is a dev-dependency");
            let schema = Path::new(manifest)
                .parent()
                .unwrap()
                .join("schemas/spdx_2_3.json");
            assert!(schema.is_file(), "{} is missing", schema.display());
            Some(schema)
        })
        .as_deref()
}

/// Validates `document` and returns the validator's error lines.
fn schema_errors(schema: &Path, document: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("document.spdx.json");
    fs::write(&path, document).unwrap();
    let output = Command::new(PYTHON)
        .args(["-c", VALIDATE])
        .arg(schema)
        .arg(&path)
        .output()
        .expect("failed to run the validator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.trim().is_empty(),
        "the validator failed to run:\n{stderr}"
    );
    let errors: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(output.status.success(), errors.is_empty());
    errors
}

/// Writes a tree with a dpkg status, a copyright file and os-release.
fn write_tree(root: &Path) {
    fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc/bash")).unwrap();
    fs::write(root.join("var/lib/dpkg/status"), STATUS).unwrap();
    fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    fs::write(root.join("usr/share/doc/bash/copyright"), COPYRIGHT).unwrap();
}

/// Renders the SBOM of a synthetic tree, describing a small file.
fn synthetic_document() -> String {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write_tree(&root);
    let image = dir.path().join("small.vhd");
    fs::write(&image, b"not really a disk\n").unwrap();
    let sbom = forge::sbom::Sbom {
        name: "small".into(),
        version: Some("1.0.0".into()),
        inventory: forge::sbom::collect(&DirView::new(&root)).unwrap(),
    };
    sbom.render("small.vhd", &support::sha256_file(&image), 1_700_000_000)
}

#[test]
fn synthetic_sbom_matches_schema() {
    let Some(schema) = schema() else { return };
    let document = synthetic_document();
    let errors = schema_errors(schema, &document);
    assert!(
        errors.is_empty(),
        "schema errors:\n{}\n{document}",
        errors.join("\n")
    );

    let parsed: Value = serde_json::from_str(&document).unwrap();
    let names: Vec<&str> = parsed["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["small", "bash", "libssl3"]);
    assert_eq!(
        parsed["packages"][1]["licenseDeclared"],
        "GPL-2.0-or-later OR LicenseRef-MIT-X11"
    );
    assert_eq!(
        parsed["hasExtractedLicensingInfos"][0]["extractedText"],
        "Permission is hereby granted."
    );
}

#[test]
fn synthetic_sbom_parses_as_spdx_types() {
    let document = synthetic_document();
    let spdx: serde_spdx::spdx::v_2_3::Spdx = serde_json::from_str(&document)
        .unwrap_or_else(|e| panic!("serde-spdx rejects the document: {e}\n{document}"));
    assert_eq!(spdx.spdx_version, "SPDX-2.3");
    assert_eq!(spdx.packages.as_ref().map(Vec::len), Some(3));
}

#[test]
fn schema_check_rejects_invalid_documents() {
    let Some(schema) = schema() else { return };
    let mut document: Value = serde_json::from_str(&synthetic_document()).unwrap();
    document["packages"][0]["primaryPackagePurpose"] = "DISK-IMAGE".into();
    document.as_object_mut().unwrap().remove("dataLicense");
    let errors = schema_errors(schema, &document.to_string());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("dataLicense")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("packages/0/primaryPackagePurpose")),
        "{errors:?}"
    );
}

/// Tools of `mkimage.sh` and of the planting helpers.
const IMAGE_TOOLS: &[&str] = &["sgdisk", "mkfs.ext4", "mkfs.fat", "mmd", "mcopy", "debugfs"];

#[test]
fn forge_sbom_of_disk_image_matches_schema() {
    let Some(schema) = schema() else { return };
    if !support::tools_present(IMAGE_TOOLS) {
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sbom_schema");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let raw = support::make_test_image(&dir);
    // The test image's root file system is partition 3.
    let image = Planted::copy(&raw, &dir.join("with-dpkg.img"), 3);
    image.debugfs(&[
        "mkdir /var/lib".to_owned(),
        "mkdir /var/lib/dpkg".to_owned(),
    ]);
    image.write("/var/lib/dpkg/status", STATUS);

    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["sbom", "--name", "test", "--version", "2.0"])
        .arg(&image.vhd)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null())
        .output()
        .expect("failed to start the forge binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr:\n{stderr}");
    let document = String::from_utf8(output.stdout).unwrap();
    let errors = schema_errors(schema, &document);
    assert!(errors.is_empty(), "schema errors:\n{}", errors.join("\n"));

    let parsed: Value = serde_json::from_str(&document).unwrap();
    assert_eq!(parsed["name"], "test-2.0");
    assert_eq!(parsed["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let image_package = &parsed["packages"][0];
    assert_eq!(image_package["packageFileName"], "with-dpkg.img");
    assert_eq!(
        image_package["checksums"][0]["checksumValue"],
        support::sha256_file(&image.vhd)
    );
    let purls: Vec<&str> = parsed["packages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|p| p["externalRefs"][0]["referenceLocator"].as_str().unwrap())
        .collect();
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/bash@5.2.15-2%2Bb2?arch=amd64&distro=debian-12",
            "pkg:deb/debian/libssl3@1%3A3.0.11-1~deb12u2%2Bb1?arch=amd64&distro=debian-12",
        ]
    );
}
