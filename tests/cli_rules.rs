//! `forge rules` and `forge explain` against the built binary.

use std::process::Command;

/// Every rule id of the Marketplace rule set, in report order.
const IDS: &[&str] = &[
    "vhd-fixed-format",
    "vhd-size-aligned",
    "vhd-size-range",
    "disk-first-mib-free",
    "security-patches",
    "hardening-baseline",
    "minimal-footprint",
    "malware-scan",
    "accounts-locked",
    "firewall-disabled",
    "ssh-host-keys-removed",
    "authorized-keys-removed",
    "known-hosts-removed",
    "private-keys-removed",
    "logs-cleared",
    "machine-id-reset",
    "provisioning-state-cleared",
    "no-lvm",
    "shell-history-cleared",
    "required-packages",
    "ssh-server",
    "sshd-client-alive-interval",
    "resolv-conf-removed",
    "no-custom-network-config",
    "azure-agent",
    "kernel-cmdline",
    "no-swap",
    "single-root-partition",
    "os-64bit",
    "win-azure-base",
    "win-security-updates",
    "win-no-reserved-usernames",
    "win-bitlocker",
    "win-minimal-footprint",
    "win-malware-scan",
    "win-auto-update",
    "win-accounts-locked",
    "win-firewall-rules",
    "win-sensitive-files-removed",
    "win-64bit",
    "win-generalized",
    "win-rdp-enabled",
];

fn forge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn rules_lists_every_id_in_order() {
    let (code, stdout, _) = forge(&["rules"]);
    assert_eq!(code, 0);
    let listed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(listed, IDS);
}

#[test]
fn explain_prints_one_rule() {
    let (code, stdout, _) = forge(&["explain", "firewall-disabled"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("firewall-disabled: "), "{stdout}");
    assert!(stdout.contains("requirement: "), "{stdout}");
    assert!(stdout.contains("waivable: yes"), "{stdout}");
}

#[test]
fn explain_prints_applied_and_verified() {
    for id in IDS {
        let (code, stdout, stderr) = forge(&["explain", id]);
        assert_eq!(code, 0, "forge explain {id}: {stderr}");
        for label in ["requirement: ", "applied: ", "verified: "] {
            let text = stdout
                .lines()
                .find_map(|l| l.strip_prefix(label))
                .unwrap_or_else(|| {
                    panic!("forge explain {id} prints no {label:?} line:\n{stdout}")
                });
            assert!(
                !text.trim().is_empty(),
                "forge explain {id}: empty {label:?} line"
            );
        }
    }
}

#[test]
fn explain_windows_rule() {
    let (code, stdout, _) = forge(&["explain", "win-rdp-enabled"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("applied: The build sets fDenyTSConnections"),
        "{stdout}"
    );
    assert!(stdout.contains("TermService"), "{stdout}");
}

#[test]
fn explain_unknown_rule_exits_2() {
    let (code, _, stderr) = forge(&["explain", "no-such-rule"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no-such-rule"), "{stderr}");
}
