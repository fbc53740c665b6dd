//! The product policy a build records inside its image: the network
//! services the recipe declares and the rules it waives, with reasons.
//!
//! `forge build` writes it to [`IMAGE_POLICY_PATH`], so that a later
//! `forge check` of the image, without the recipe, judges
//! `minimal-footprint` and the waivable rules as the build did. Waivers read
//! from an image obey the same limits as recipe waivers, and every report
//! shows them as `waived` with their reason, never as `pass`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::rules::{self, WAIVABLE};
use super::{ImageView, Policy, Waiver, WindowsPolicy};

/// Path of the product policy that a build records in a Linux image.
pub const IMAGE_POLICY_PATH: &str = "/etc/forge/policy.toml";

/// Path of the product policy that a build records on a Windows volume.
pub const WINDOWS_POLICY_PATH: &str = "/ProgramData/forge/policy.toml";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    declared_units: Vec<String>,
    #[serde(default)]
    waive: Vec<WaiverEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    windows: Option<WindowsPolicy>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaiverEntry {
    rule: String,
    reason: String,
}

/// Checks one waiver against the rules a recipe may waive.
pub fn validate_waiver(rule: &str, reason: &str) -> Result<Waiver> {
    if rules::find(rule).is_none() {
        bail!(
            "rule {:?} is not a rule id; `forge rules` lists the ids",
            clip(rule)
        );
    }
    if !WAIVABLE.contains(&rule) {
        bail!(
            "rule {rule:?} cannot be waived; only {} may be waived, with a product reason",
            WAIVABLE.join(", ")
        );
    }
    if reason.trim().is_empty() {
        bail!("waiver of {rule:?} needs a non-empty reason");
    }
    Ok(Waiver {
        rule: rule.to_owned(),
        reason: reason.to_owned(),
    })
}

/// Shortens a value for an error message.
fn clip(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    }
}

/// Renders the policy file a build writes into a Linux image.
pub fn render(declared_units: &[String], waivers: &[Waiver]) -> String {
    let body = toml::to_string(&policy_file(declared_units, waivers, None))
        .expect("the policy serializes to TOML");
    format!(
        "# Written by forge build: the product's declared network services and\n\
         # waived rules, which `forge check` applies to this image.\n{body}"
    )
}

/// Renders the policy file a build writes onto a Windows volume, with
/// Windows line ends.
pub fn render_windows(waivers: &[Waiver], windows: &WindowsPolicy) -> String {
    let body = toml::to_string(&policy_file(&[], waivers, Some(windows.clone())))
        .expect("the policy serializes to TOML");
    format!(
        "# Written by forge build: the product's settings and waived rules,\n\
         # which `forge check` applies to this image.\n{body}"
    )
    .replace('\n', "\r\n")
}

fn policy_file(
    declared_units: &[String],
    waivers: &[Waiver],
    windows: Option<WindowsPolicy>,
) -> PolicyFile {
    PolicyFile {
        declared_units: declared_units.to_vec(),
        waive: waivers
            .iter()
            .map(|w| WaiverEntry {
                rule: w.rule.clone(),
                reason: w.reason.clone(),
            })
            .collect(),
        windows,
    }
}

/// Reads the policy recorded in the image, if any, into `policy`. A file
/// that cannot be parsed, or a waiver no recipe could make, is an error.
pub fn apply_image_policy(policy: &mut Policy, fs: &dyn ImageView) -> Result<bool> {
    let mut found = None;
    for path in [IMAGE_POLICY_PATH, WINDOWS_POLICY_PATH] {
        if let Some(text) = fs.read_text(path)? {
            found = Some((path, text));
            break;
        }
    }
    let Some((path, text)) = found else {
        return Ok(false);
    };
    let file: PolicyFile = toml::from_str(&text)
        .with_context(|| format!("the image's {path} is not a valid policy"))?;
    for entry in &file.waive {
        let waiver = validate_waiver(&entry.rule, &entry.reason)
            .with_context(|| format!("the image's {path} has an invalid waiver"))?;
        policy.waivers.push(waiver);
    }
    policy.declared_units.extend(file.declared_units);
    if let Some(windows) = file.windows {
        let ours = &mut policy.windows;
        ours.min_build = ours.min_build.or(windows.min_build);
        ours.deny.extend(windows.deny);
        ours.firewall_allow.extend(windows.firewall_allow);
        ours.accounts.extend(windows.accounts);
        ours.first_boot.extend(windows.first_boot);
        ours.bitlocker = ours.bitlocker.take().or(windows.bitlocker);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::DirView;

    #[test]
    fn rendered_policy_reads_back() {
        let waivers = vec![Waiver {
            rule: "firewall-disabled".to_owned(),
            reason: "the product is a \"firewall\"".to_owned(),
        }];
        let text = render(&["nginx.service".to_owned()], &waivers);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/forge")).unwrap();
        std::fs::write(dir.path().join("etc/forge/policy.toml"), text).unwrap();
        let mut policy = Policy::default();
        assert!(apply_image_policy(&mut policy, &DirView::new(dir.path())).unwrap());
        assert_eq!(policy.declared_units, ["nginx.service"]);
        assert_eq!(policy.waivers, waivers);
    }

    #[test]
    fn image_cannot_waive_what_a_recipe_cannot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/forge")).unwrap();
        std::fs::write(
            dir.path().join("etc/forge/policy.toml"),
            "[[waive]]\nrule = \"no-swap\"\nreason = \"x\"\n",
        )
        .unwrap();
        let mut policy = Policy::default();
        let err = apply_image_policy(&mut policy, &DirView::new(dir.path())).unwrap_err();
        assert!(format!("{err:#}").contains("cannot be waived"), "{err:#}");
    }

    #[test]
    fn windows_policy_reads_back() {
        let windows = WindowsPolicy {
            min_build: Some("20348.2607".parse().unwrap()),
            deny: vec!["Web-Server".to_owned()],
            firewall_allow: vec!["Contoso-HTTPS-In".to_owned()],
            accounts: vec!["contoso".to_owned()],
            first_boot: vec!["C:\\Contoso\\setup.cmd /quiet".to_owned()],
            bitlocker: Some("first-boot".to_owned()),
        };
        let text = render_windows(&[], &windows);
        assert!(text.contains("\r\n"), "{text}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ProgramData/forge")).unwrap();
        std::fs::write(dir.path().join("ProgramData/forge/policy.toml"), text).unwrap();
        let mut policy = Policy::default();
        assert!(apply_image_policy(&mut policy, &DirView::new(dir.path())).unwrap());
        assert_eq!(policy.windows, windows);
    }

    #[test]
    fn windows_build_needs_both_numbers() {
        let build: crate::check::WinBuild = " 20348.2607".parse().unwrap();
        assert_eq!((build.build, build.ubr), (20348, 2607));
        assert_eq!(build.to_string(), "20348.2607");
        for bad in ["20348", "20348.", "x.1", "20348.2607.1"] {
            let err = bad.parse::<crate::check::WinBuild>().unwrap_err();
            assert!(err.contains("20348.2607"), "{err}");
        }
    }

    #[test]
    fn no_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = Policy::default();
        assert!(!apply_image_policy(&mut policy, &DirView::new(dir.path())).unwrap());
        assert!(policy.waivers.is_empty());
        assert!(policy.declared_units.is_empty());
    }
}
