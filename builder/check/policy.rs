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
use super::{ImageView, Policy, Waiver};

/// Path of the product policy that a build records in the image.
pub const IMAGE_POLICY_PATH: &str = "/etc/forge/policy.toml";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    declared_units: Vec<String>,
    #[serde(default)]
    waive: Vec<WaiverEntry>,
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

/// Renders the policy file a build writes into its image.
pub fn render(declared_units: &[String], waivers: &[Waiver]) -> String {
    let file = PolicyFile {
        declared_units: declared_units.to_vec(),
        waive: waivers
            .iter()
            .map(|w| WaiverEntry {
                rule: w.rule.clone(),
                reason: w.reason.clone(),
            })
            .collect(),
    };
    let body = toml::to_string(&file).expect("the policy serializes to TOML");
    format!(
        "# Written by forge build: the product's declared network services and\n\
         # waived rules, which `forge check` applies to this image.\n{body}"
    )
}

/// Reads the policy recorded in the image, if any, into `policy`. A file
/// that cannot be parsed, or a waiver no recipe could make, is an error.
pub fn apply_image_policy(policy: &mut Policy, fs: &dyn ImageView) -> Result<bool> {
    let Some(text) = fs.read_text(IMAGE_POLICY_PATH)? else {
        return Ok(false);
    };
    let file: PolicyFile = toml::from_str(&text)
        .with_context(|| format!("the image's {IMAGE_POLICY_PATH} is not a valid policy"))?;
    for entry in &file.waive {
        let waiver = validate_waiver(&entry.rule, &entry.reason)
            .with_context(|| format!("the image's {IMAGE_POLICY_PATH} has an invalid waiver"))?;
        policy.waivers.push(waiver);
    }
    policy.declared_units.extend(file.declared_units);
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
    fn no_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = Policy::default();
        assert!(!apply_image_policy(&mut policy, &DirView::new(dir.path())).unwrap());
        assert!(policy.waivers.is_empty());
        assert!(policy.declared_units.is_empty());
    }
}
