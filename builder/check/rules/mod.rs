//! The rule catalogue: one entry per requirement id.

mod accounts;
mod arch;
mod boot;
mod catalogue;
pub mod debversion;
mod disk;
pub mod family;
mod files;
mod grub_env;
pub mod hardening;
mod malware;
mod network;
pub mod packages;
pub mod paths;
pub mod rpmdb;
pub mod services;
mod ssh;
pub mod sshd_config;
mod swap;
pub mod windows;
pub mod winreg;

#[cfg(test)]
mod plant_tests;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod windows_plant_tests;

use anyhow::Result;

use super::{ImageView, Outcome, Subject};

pub use hardening::{BASELINE_NAME, SYSCTL_BASELINE};

/// How much a failing rule matters to a Marketplace submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Certification rejects the image.
    Blocking,
    /// Microsoft recommends it; forge enforces it.
    Required,
}

/// One compliance rule.
pub struct Rule {
    pub id: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    /// The requirement, in one sentence.
    pub requirement: &'static str,
    /// The steps of `forge build` that make an image meet the requirement.
    pub applied: &'static str,
    /// The files and facts the check reads, and its decision rule.
    pub verified: &'static str,
    pub check: fn(&Subject) -> Result<Outcome>,
}

/// Rules a recipe may waive with a product reason.
pub const WAIVABLE: &[&str] = &["firewall-disabled", "win-firewall-rules"];

/// Returns the OS tree of a Linux image, or the outcome that a Linux rule
/// gives when there is none.
pub(crate) fn linux_tree_of<'a>(
    s: &Subject<'a>,
) -> std::result::Result<&'a dyn ImageView, Outcome> {
    if s.os.family == "windows" {
        return Err(Outcome::not_applicable(
            "the image is Windows; this is a Linux rule",
        ));
    }
    s.fs.ok_or_else(|| {
        Outcome::not_run(
            "no operating system was found on the disk, so its files could not be checked",
        )
    })
}

/// Evaluates to the OS tree of a Linux image, or returns the outcome that a
/// Linux rule gives when there is none.
macro_rules! linux_tree {
    ($subject:expr) => {
        match $crate::check::rules::linux_tree_of($subject) {
            Ok(fs) => fs,
            Err(outcome) => return Ok(outcome),
        }
    };
}
pub(crate) use linux_tree;

/// Returns every rule, in report order.
pub fn catalogue() -> &'static [Rule] {
    catalogue::CATALOGUE
}

/// Finds a rule by its id.
pub fn find(id: &str) -> Option<&'static Rule> {
    catalogue::CATALOGUE.iter().find(|rule| rule.id == id)
}
