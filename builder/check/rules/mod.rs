//! The rule catalogue: one entry per requirement id.

use anyhow::Result;

use super::{Outcome, Subject};

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
    pub check: fn(&Subject) -> Result<Outcome>,
}

/// Rules a recipe may waive with a product reason.
pub const WAIVABLE: &[&str] = &["firewall-disabled", "win-firewall-rules"];

/// Every rule, in report order.
pub fn catalogue() -> &'static [Rule] {
    &[]
}
