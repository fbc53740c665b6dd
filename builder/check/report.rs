//! Reports of a check run.

use serde::Serialize;

use super::{Finding, OsInfo, Verdict};

/// The versioned report shape shared by `forge check --format json` and the
/// report `forge build` writes next to the VHD.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    pub image: String,
    pub sha256: String,
    pub os: OsInfo,
    pub verdict: Verdict,
    pub rules: Vec<Finding>,
}

pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.rules {
        out.push_str(&format!("{:<28} {:<15} {}\n", f.id, f.status.as_str(), f.evidence));
    }
    out
}
