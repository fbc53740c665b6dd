//! Reports of a check run: the versioned JSON shape that `forge check` and
//! `forge build` write, and a plain-text table for terminals.

use serde::Serialize;

use super::{Finding, OsInfo, Status, Verdict};

/// Version of the JSON report shape.
pub const SCHEMA_VERSION: u32 = 1;

/// The result of checking one image.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: u32,
    /// Path of the image as given on the command line.
    pub image: String,
    /// SHA-256 of the image file, lower-case hex.
    pub sha256: String,
    pub os: OsInfo,
    pub verdict: Verdict,
    pub rules: Vec<Finding>,
    /// Commands the build placed to run once at the first boot of a
    /// Windows VM, in order; only in a build's report.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub first_boot: Vec<String>,
    /// What a build's reader should know beyond the rules, such as how
    /// BitLocker is arranged.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    /// Builds a report and computes its verdict from the findings.
    pub fn new(
        image: impl Into<String>,
        sha256: impl Into<String>,
        os: OsInfo,
        rules: Vec<Finding>,
    ) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            image: image.into(),
            sha256: sha256.into(),
            os,
            verdict: Verdict::of(&rules),
            rules,
            first_boot: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl Verdict {
    /// Returns the verdict as the report spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Compliant => "compliant",
            Verdict::NonCompliant => "non-compliant",
            Verdict::Incomplete => "incomplete",
        }
    }
}

/// Renders a report as an aligned table of rule, status and evidence,
/// followed by the verdict and the reasons of waived rules.
pub fn render_text(report: &Report) -> String {
    let os = &report.os;
    let mut out = format!("image:  {}\nsha256: {}\n", report.image, report.sha256);
    out.push_str(&format!(
        "os:     {} {} {}\n\n",
        os.family, os.version, os.arch
    ));
    out.push_str(&render_table(&report.rules));
    out.push_str(&format!("\nverdict: {}\n", report.verdict.as_str()));

    let waived: Vec<&Finding> = report
        .rules
        .iter()
        .filter(|f| f.status == Status::Waived)
        .collect();
    if !waived.is_empty() {
        out.push_str("\nwaived:\n");
        for finding in waived {
            let reason = finding.reason.as_deref().unwrap_or("no reason given");
            out.push_str(&format!("  {}: {reason}\n", finding.id));
        }
    }
    if !report.first_boot.is_empty() {
        out.push_str("\nfirst boot, in order:\n");
        for command in &report.first_boot {
            out.push_str(&format!("  {command}\n"));
        }
    }
    for note in &report.notes {
        out.push_str(&format!("\n{note}\n"));
    }
    out
}

/// Renders JUnit XML with one test case per rule, so CI systems show each
/// rule as a test: `fail` is a failure, `not-run` an error, and `waived`
/// and `not-applicable` are skipped with the reason or evidence.
pub fn render_junit(report: &Report) -> String {
    let count = |s: Status| report.rules.iter().filter(|f| f.status == s).count();
    let skipped = count(Status::Waived) + count(Status::NotApplicable);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuite name=\"forge check\" tests=\"{}\" failures=\"{}\" errors=\"{}\" \
         skipped=\"{skipped}\">\n",
        report.rules.len(),
        count(Status::Fail),
        count(Status::NotRun),
    ));
    out.push_str(&format!(
        "  <properties>\n    <property name=\"image\" value=\"{}\"/>\n    \
         <property name=\"sha256\" value=\"{}\"/>\n    \
         <property name=\"verdict\" value=\"{}\"/>\n  </properties>\n",
        xml_escape(&report.image),
        xml_escape(&report.sha256),
        report.verdict.as_str()
    ));
    for f in &report.rules {
        let evidence = xml_escape(&f.evidence);
        out.push_str(&format!(
            "  <testcase classname=\"forge.rules\" name=\"{}\">",
            f.id
        ));
        match f.status {
            Status::Pass => out.push_str(&format!("<system-out>{evidence}</system-out>")),
            Status::Fail => out.push_str(&format!(
                "<failure message=\"{evidence}\">{evidence}</failure>"
            )),
            Status::NotRun => out.push_str(&format!(
                "<error message=\"not run: {evidence}\">{evidence}</error>"
            )),
            Status::Waived => {
                let reason = xml_escape(f.reason.as_deref().unwrap_or(""));
                out.push_str(&format!(
                    "<skipped message=\"waived: {reason}\"/><system-out>{evidence}</system-out>"
                ));
            }
            Status::NotApplicable => out.push_str(&format!(
                "<skipped message=\"not applicable: {evidence}\"/>"
            )),
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("</testsuite>\n");
    out
}

/// Renders Markdown a vendor can attach to a Marketplace submission.
pub fn render_markdown(report: &Report) -> String {
    let os = &report.os;
    let mut out = String::from("# forge compliance report\n\n");
    out.push_str(&format!("- Image: `{}`\n", report.image));
    out.push_str(&format!("- SHA-256: `{}`\n", report.sha256));
    out.push_str(&format!("- OS: {} {} {}\n", os.family, os.version, os.arch));
    out.push_str(&format!("- Verdict: **{}**\n\n", report.verdict.as_str()));
    out.push_str("| Rule | Status | Evidence |\n|---|---|---|\n");
    for f in &report.rules {
        let mut evidence = f.evidence.clone();
        if let Some(reason) = &f.reason {
            evidence = format!("waived: {reason}; {evidence}");
        }
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            f.id,
            f.status.as_str(),
            evidence.replace('|', "\\|").replace('\n', " ")
        ));
    }
    if !report.first_boot.is_empty() {
        out.push_str(
            "\n## First boot\n\nCommands run once, in order, when the VM first boots:\n\n",
        );
        for command in &report.first_boot {
            out.push_str(&format!("1. `{command}`\n"));
        }
    }
    if !report.notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for note in &report.notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    out.push_str(&render_verification(&report.rules));
    out
}

/// Renders what each rule of the report checks, so a reader of the report
/// can judge the evidence without the forge sources.
fn render_verification(findings: &[Finding]) -> String {
    let mut out = String::from("\n## How each rule was checked\n\n");
    for f in findings {
        if let Some(rule) = super::rules::find(f.id) {
            out.push_str(&format!("- `{}`: {}\n", rule.id, rule.verified));
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Renders one row per finding with the columns padded to the widest value.
fn render_table(rules: &[Finding]) -> String {
    let id_width = rules
        .iter()
        .map(|f| f.id.len())
        .max()
        .unwrap_or(0)
        .max("rule".len());
    let status_width = rules
        .iter()
        .map(|f| f.status.as_str().len())
        .max()
        .unwrap_or(0)
        .max("status".len());
    let mut out = format!(
        "{:id_width$}  {:status_width$}  evidence\n",
        "rule", "status"
    );
    for finding in rules {
        out.push_str(&format!(
            "{:id_width$}  {:status_width$}  {}\n",
            finding.id,
            finding.status.as_str(),
            finding.evidence
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let rules = vec![
            Finding {
                id: "no-swap",
                status: Status::Pass,
                reason: None,
                evidence: "no swap".into(),
            },
            Finding {
                id: "firewall-disabled",
                status: Status::Waived,
                reason: Some("the product is a firewall".into()),
                evidence: "ufw.service is enabled".into(),
            },
        ];
        let os = OsInfo {
            family: "debian".into(),
            version: "12".into(),
            arch: "x86_64".into(),
        };
        Report::new("out/x.vhd", "ab12", os, rules)
    }

    #[test]
    fn junit_has_one_case_per_rule() {
        let xml = render_junit(&sample());
        assert_eq!(xml.matches("<testcase ").count(), 2);
        assert!(xml.contains("tests=\"2\" failures=\"0\" errors=\"0\" skipped=\"1\""));
        assert!(xml.contains("waived: the product is a firewall"));
    }

    #[test]
    fn junit_escapes_evidence() {
        let mut report = sample();
        report.rules[0].status = Status::Fail;
        report.rules[0].evidence = "a <b> & \"c\"".into();
        let xml = render_junit(&report);
        assert!(xml.contains("a &lt;b&gt; &amp; &quot;c&quot;"));
        assert!(!xml.contains("<b>"));
    }

    #[test]
    fn markdown_shows_verdict_and_reason() {
        let md = render_markdown(&sample());
        assert!(md.contains("Verdict: **compliant**"));
        assert!(md.contains("| `firewall-disabled` | waived | waived: the product is a firewall"));
    }

    #[test]
    fn markdown_explains_each_check() {
        let md = render_markdown(&sample());
        let no_swap = crate::check::rules::find("no-swap").unwrap();
        assert!(md.contains("## How each rule was checked"), "{md}");
        assert!(
            md.contains(&format!("- `no-swap`: {}", no_swap.verified)),
            "{md}"
        );
        assert!(md.contains("- `firewall-disabled`: "), "{md}");
    }

    #[test]
    fn json_has_contract_shape() {
        let json = serde_json::to_string(&sample()).unwrap();
        let expected = concat!(
            r#"{"schema":1,"image":"out/x.vhd","sha256":"ab12","#,
            r#""os":{"family":"debian","version":"12","arch":"x86_64"},"verdict":"compliant","#,
            r#""rules":[{"id":"no-swap","status":"pass","evidence":"no swap"},"#,
            r#"{"id":"firewall-disabled","status":"waived","reason":"the product is a firewall","#,
            r#""evidence":"ufw.service is enabled"}]}"#
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn json_spells_kebab_case() {
        let mut report = sample();
        report.rules[0].status = Status::NotRun;
        report.verdict = Verdict::of(&report.rules);
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""status":"not-run""#));
        assert!(json.contains(r#""verdict":"incomplete""#));
        report.rules[0].status = Status::Fail;
        report.verdict = Verdict::of(&report.rules);
        assert!(serde_json::to_string(&report)
            .unwrap()
            .contains(r#""verdict":"non-compliant""#));
    }

    #[test]
    fn text_is_aligned() {
        let text = render_text(&sample());
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("no-swap") || l.starts_with("firewall"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].find("pass"), rows[1].find("waived"));
        assert!(text.contains("verdict: compliant"));
        assert!(text.contains("firewall-disabled: the product is a firewall"));
    }
}
