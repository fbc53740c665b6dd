//! The text form of a [`Diff`]: one section per kind of difference and one
//! line per difference, prefixed `+` (only in b), `-` (only in a) or `~`
//! (in both, changed).

use super::{Diff, FieldChange, FooterDiff, PackageRef};

/// Renders a diff for a terminal.
pub fn render_text(diff: &Diff) -> String {
    let mut out = format!("a: {}\nb: {}\n", diff.a, diff.b);

    out.push_str(&format!("\ndisk: {}\n", count(diff.disk.len())));
    for change in &diff.disk {
        out.push_str(&format!("  ~ {}\n", field_line(change)));
    }

    match &diff.footer {
        FooterDiff::Compared { changes } => {
            out.push_str(&format!("\nVHD footer: {}\n", count(changes.len())));
            for change in changes {
                out.push_str(&format!("  ~ {}\n", field_line(change)));
            }
        }
        FooterDiff::NotCompared { reason } => {
            out.push_str(&format!("\nVHD footer: not compared: {reason}\n"));
        }
    }

    let packages = &diff.packages;
    if !packages.a_has_dpkg && !packages.b_has_dpkg {
        out.push_str("\npackages: not compared: neither image has a dpkg status file\n");
    } else {
        out.push_str(&format!(
            "\npackages: {} added, {} removed, {} changed\n",
            packages.added.len(),
            packages.removed.len(),
            packages.changed.len()
        ));
        for p in &packages.added {
            out.push_str(&format!("  + {}\n", package_line(p)));
        }
        for p in &packages.removed {
            out.push_str(&format!("  - {}\n", package_line(p)));
        }
        for p in &packages.changed {
            out.push_str(&format!("  ~ {}: {}\n", p.name, changes_line(&p.changes)));
        }
    }

    let files = &diff.files;
    out.push_str(&format!(
        "\nfiles: {} added, {} removed, {} changed\n",
        files.added.len(),
        files.removed.len(),
        files.changed.len()
    ));
    for f in &files.added {
        out.push_str(&format!("  + {} ({})\n", printable(&f.path), f.kind));
    }
    for f in &files.removed {
        out.push_str(&format!("  - {} ({})\n", printable(&f.path), f.kind));
    }
    for f in &files.changed {
        out.push_str(&format!(
            "  ~ {}: {}\n",
            printable(&f.path),
            changes_line(&f.changes)
        ));
    }

    out.push_str(if diff.identical {
        "\nThe images are identical in every compared field.\n"
    } else {
        "\nThe images differ.\n"
    });
    out
}

fn count(n: usize) -> String {
    match n {
        0 => "no differences".to_owned(),
        1 => "1 difference".to_owned(),
        n => format!("{n} differences"),
    }
}

fn package_line(p: &PackageRef) -> String {
    format!("{} {} {}", p.name, p.version, p.arch)
}

fn value(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("(absent)")
}

fn field_line(change: &FieldChange) -> String {
    format!(
        "{}: {} -> {}",
        change.field,
        value(&change.a),
        value(&change.b)
    )
}

/// Joins the changes of one path or package. A content change is named
/// without its checksums, which are too long to read in a list.
fn changes_line(changes: &[FieldChange]) -> String {
    changes
        .iter()
        .map(|c| {
            if c.field == "content" {
                "content".to_owned()
            } else {
                format!("{} {} -> {}", c.field, value(&c.a), value(&c.b))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Escapes control characters and backslashes in a name from an image, so
/// that a crafted file name cannot add, split or erase report lines.
pub fn printable(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("/tmp/a\nb"), "/tmp/a\\nb");
        assert_eq!(printable("/tmp/\u{1b}[2K"), "/tmp/\\x1b[2K");
        assert_eq!(printable("/etc/pass wd"), "/etc/pass wd");
        assert_eq!(printable("a\\b"), "a\\\\b");
    }
}
