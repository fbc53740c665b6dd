//! Network rules: `firewall-disabled`, `resolv-conf-removed` and
//! `no-custom-network-config`.

use anyhow::Result;

use super::paths::{self, is_under};
use super::services;
use crate::check::{FileKind, Outcome, Subject};

/// Units that load firewall rules at boot.
const FIREWALL_UNITS: &[&str] = &[
    "ufw.service",
    "firewalld.service",
    "nftables.service",
    "netfilter-persistent.service",
    "iptables.service",
    "ip6tables.service",
];
const UFW_CONF: &str = "/etc/ufw/ufw.conf";

/// Checks `firewall-disabled`: ufw is off and no firewall unit is enabled.
pub fn firewall_disabled(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut found = Vec::new();
    let ufw = fs.read_text(UFW_CONF)?.unwrap_or_default();
    for (index, line) in ufw.lines().enumerate() {
        let setting: String = line
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\'')
            .collect();
        if setting.eq_ignore_ascii_case("ENABLED=yes") {
            found.push(format!("{UFW_CONF}:{}: {}", index + 1, line.trim()));
        }
    }
    for unit in services::enabled_units(fs)? {
        if unit.is_named(FIREWALL_UNITS) {
            found.push(format!("{} is enabled by {}", unit.name, unit.link));
        }
    }
    if found.is_empty() {
        Ok(Outcome::pass(format!(
            "ufw not enabled; none of {} enabled",
            FIREWALL_UNITS.join(", ")
        )))
    } else {
        Ok(Outcome::fail(format!(
            "firewall active at boot: {}",
            found.join("; ")
        )))
    }
}

/// Checks `resolv-conf-removed`: no `/etc/resolv.conf`, or only a dangling
/// link to a runtime path under `/run`.
pub fn resolv_conf_removed(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let path = "/etc/resolv.conf";
    let Some(meta) = fs.lstat(path)? else {
        return Ok(Outcome::pass(format!("{path} does not exist")));
    };
    if meta.kind != FileKind::Symlink {
        return Ok(Outcome::fail(format!(
            "{path} exists ({} bytes)",
            meta.size
        )));
    }
    let target = fs.read_link(path)?.unwrap_or_default();
    let absolute = paths::join("/etc", &target);
    if !is_under(&absolute, "/run") {
        return Ok(Outcome::fail(format!(
            "{path} links to {target}, which is not a runtime path under /run"
        )));
    }
    if paths::resolve(fs, path)?.is_some() {
        return Ok(Outcome::fail(format!(
            "{path} links to {target}, which exists in the image"
        )));
    }
    Ok(Outcome::pass(format!(
        "{path} is a dangling link to the runtime file {target}"
    )))
}

/// Files of one network configuration format and the scanner that finds
/// the lines pinning an address or a MAC address in them.
struct Finder {
    /// Glob of the files to search.
    pattern: &'static str,
    /// Returns `file:line: text` for each pinning line of a file.
    scan: fn(&str, &str) -> Vec<String>,
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Lines of a file that are not blank or comments, with their numbers,
/// as (number, trimmed text, lower-cased text).
fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str, String)> {
    text.lines().enumerate().filter_map(|(index, raw)| {
        let line = raw.trim();
        let comment = line.is_empty() || line.starts_with(['#', ';']);
        (!comment).then(|| (index + 1, line, line.to_ascii_lowercase()))
    })
}

/// Scans an INI-style or line-based file with a matcher that receives each
/// lower-cased line and the current `[section]`.
fn scan_lines(path: &str, text: &str, matches: fn(&str, &str) -> bool) -> Vec<String> {
    let mut section = String::new();
    let mut found = Vec::new();
    for (number, line, lower) in content_lines(text) {
        if lower.starts_with('[') {
            section = lower.clone();
        }
        if matches(&lower, &section) {
            found.push(format!("{path}:{number}: {line}"));
        }
    }
    found
}

fn ifupdown_line(line: &str, _section: &str) -> bool {
    let w = words(line);
    let static_iface =
        w.len() >= 4 && w[0] == "iface" && matches!(w[2], "inet" | "inet6") && w[3] == "static";
    static_iface || w.first() == Some(&"hwaddress")
}

fn key_of(line: &str) -> &str {
    line.split_once('=').map_or("", |(k, _)| k.trim())
}

fn value_of(line: &str) -> &str {
    line.split_once('=')
        .map_or("", |(_, v)| v.trim().trim_matches(['"', '\'']))
}

fn networkd_line(line: &str, section: &str) -> bool {
    let key = key_of(line);
    key == "address"
        || (section == "[match]" && matches!(key, "macaddress" | "permanentmacaddress"))
}

fn networkd_link_line(line: &str, _section: &str) -> bool {
    key_of(line) == "macaddress"
}

/// Matches, in NetworkManager keyfiles, a manual method or address in `[ipv4]` or
/// `[ipv6]`, and a `mac-address` binding.
fn network_manager_line(line: &str, section: &str) -> bool {
    let key = key_of(line);
    let ip_section = matches!(section, "[ipv4]" | "[ipv6]");
    let manual = ip_section && key == "method" && value_of(line) == "manual";
    let address = ip_section && key.starts_with("address");
    manual || address || key == "mac-address"
}

fn any_line(path: &str, text: &str) -> Vec<String> {
    content_lines(text)
        .map(|(number, line, _)| format!("{path}:{number}: {line}"))
        .collect()
}

/// Finds, in netplan YAML, the `addresses` of an interface (not of `nameservers`) and
/// `macaddress`, in a match or set on the interface. The parent of a key
/// is the nearest less indented key before it.
fn scan_netplan(path: &str, text: &str) -> Vec<String> {
    let mut parents: Vec<(usize, String)> = Vec::new();
    let mut found = Vec::new();
    for (number, line, lower) in content_lines(text) {
        let raw = text.lines().nth(number - 1).unwrap_or_default();
        let mut indent = raw.len() - raw.trim_start().len();
        let mut item = lower.as_str();
        while let Some(rest) = item.strip_prefix("- ") {
            indent += 2;
            item = rest.trim_start();
        }
        let Some((key, _)) = item.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']).to_string();
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let parent = parents.last().map(|(_, k)| k.as_str());
        let pins = (key == "addresses" && parent != Some("nameservers")) || key == "macaddress";
        if pins {
            found.push(format!("{path}:{number}: {line}"));
        }
        parents.push((indent, key));
    }
    found
}

/// Returns the `KEY=value` settings of an ifcfg file, keys upper-cased and
/// values without quotes, with their line numbers and text.
fn ifcfg_settings(text: &str) -> Vec<(String, String, usize, &str)> {
    content_lines(text)
        .filter_map(|(number, line, _)| {
            let (key, value) = line.split_once('=')?;
            let value = value.trim().trim_matches(['"', '\'']);
            Some((
                key.trim().to_ascii_uppercase(),
                value.to_string(),
                number,
                line,
            ))
        })
        .collect()
}

/// Returns whether an ifcfg file configures the loopback interface, which
/// has a static address on every system.
fn is_loopback_ifcfg(path: &str, settings: &[(String, String, usize, &str)]) -> bool {
    paths::file_name(path) == "ifcfg-lo"
        || settings
            .iter()
            .any(|(key, value, _, _)| key == "DEVICE" && value == "lo")
}

/// Returns whether an ifcfg key sets a static address: RHEL's `IPADDR`,
/// `IPADDR0`..`IPADDRn` and `IPV6ADDR`, or SUSE's `IPADDR_suffix`.
fn is_address_key(key: &str) -> bool {
    let Some(suffix) = key.strip_prefix("IPADDR") else {
        return key == "IPV6ADDR";
    };
    let suffix = suffix.strip_prefix('_').unwrap_or(suffix);
    suffix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Finds, in RHEL network-scripts, a static address (`IPADDR*`, `IPV6ADDR`, with
/// the static `BOOTPROTO` line that goes with it), and `HWADDR` or
/// `MACADDR`, which bind the file to a MAC address.
fn scan_rhel_ifcfg(path: &str, text: &str) -> Vec<String> {
    let settings = ifcfg_settings(text);
    if is_loopback_ifcfg(path, &settings) {
        return Vec::new();
    }
    let has_address = settings
        .iter()
        .any(|(key, value, _, _)| is_address_key(key) && !value.is_empty());
    settings
        .iter()
        .filter(|(key, value, _, _)| {
            let static_proto = key == "BOOTPROTO"
                && matches!(value.to_ascii_lowercase().as_str(), "static" | "none");
            let pinned = is_address_key(key) || matches!(key.as_str(), "HWADDR" | "MACADDR");
            !value.is_empty() && (pinned || (static_proto && has_address))
        })
        .map(|(_, _, number, line)| format!("{path}:{number}: {line}"))
        .collect()
}

/// Finds, in SUSE sysconfig, `BOOTPROTO='static'`, a static address (`IPADDR`,
/// `IPADDR_suffix`), `LLADDR`, which sets the MAC address, and the old
/// `ifcfg-eth-id-MAC` file names, which bind the file to a MAC address.
fn scan_suse_ifcfg(path: &str, text: &str) -> Vec<String> {
    let settings = ifcfg_settings(text);
    if is_loopback_ifcfg(path, &settings) {
        return Vec::new();
    }
    let mut found: Vec<String> = settings
        .iter()
        .filter(|(key, value, _, _)| {
            let static_proto = key == "BOOTPROTO" && value.eq_ignore_ascii_case("static");
            let pinned = is_address_key(key) || key == "LLADDR";
            !value.is_empty() && (pinned || static_proto)
        })
        .map(|(_, _, number, line)| format!("{path}:{number}: {line}"))
        .collect();
    if paths::file_name(path).contains("-id-") {
        found.insert(
            0,
            format!("{path}: the file name binds it to a MAC address"),
        );
    }
    found
}

const FINDERS: &[Finder] = &[
    Finder {
        pattern: "/etc/network/interfaces",
        scan: |path, text| scan_lines(path, text, ifupdown_line),
    },
    Finder {
        pattern: "/etc/network/interfaces.d/*",
        scan: |path, text| scan_lines(path, text, ifupdown_line),
    },
    Finder {
        pattern: "/etc/udev/rules.d/*persistent-net*.rules",
        scan: any_line,
    },
    Finder {
        pattern: "/etc/systemd/network/*.network",
        scan: |path, text| scan_lines(path, text, networkd_line),
    },
    Finder {
        pattern: "/etc/systemd/network/*.link",
        scan: |path, text| scan_lines(path, text, networkd_link_line),
    },
    Finder {
        pattern: "/etc/netplan/*.yaml",
        scan: scan_netplan,
    },
    Finder {
        pattern: "/etc/NetworkManager/system-connections/*",
        scan: |path, text| scan_lines(path, text, network_manager_line),
    },
    Finder {
        pattern: "/etc/sysconfig/network-scripts/ifcfg-*",
        scan: scan_rhel_ifcfg,
    },
    Finder {
        pattern: "/etc/sysconfig/network/ifcfg-*",
        scan: scan_suse_ifcfg,
    },
];

/// Checks `no-custom-network-config` across the configuration files of
/// ifupdown, udev, systemd-networkd, netplan, NetworkManager, RHEL
/// network-scripts and SUSE sysconfig.
pub fn no_custom_network_config(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut found = Vec::new();
    for finder in FINDERS {
        for path in paths::expand_glob(fs, finder.pattern)? {
            if let Some(text) = fs.read_text(&path)? {
                found.extend((finder.scan)(&path, &text));
            }
        }
    }
    if found.is_empty() {
        Ok(Outcome::pass(
            "no static address, MAC binding or persistent-net rule in ifupdown, udev, networkd, \
             netplan, NetworkManager, network-scripts or SUSE sysconfig files",
        ))
    } else {
        Ok(Outcome::fail(format!(
            "custom network configuration: {}",
            found.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifupdown_static_found() {
        assert!(ifupdown_line("iface eth0 inet static", ""));
        assert!(ifupdown_line("iface eth0 inet6 static", ""));
        assert!(ifupdown_line("hwaddress ether 00:11:22:33:44:55", ""));
        assert!(!ifupdown_line("iface eth0 inet dhcp", ""));
    }

    #[test]
    fn networkd_match_mac_only_in_match() {
        assert!(networkd_line("macaddress=00:11:22:33:44:55", "[match]"));
        assert!(!networkd_line("macaddress=00:11:22:33:44:55", "[link]"));
        assert!(networkd_line("address=10.0.0.5/24", "[network]"));
        assert!(!networkd_line("dhcp=yes", "[network]"));
    }

    #[test]
    fn rhel_ifcfg_static_and_mac() {
        let path = "/etc/sysconfig/network-scripts/ifcfg-eth0";
        let dhcp = "DEVICE=eth0\nBOOTPROTO=dhcp\nONBOOT=yes\n";
        assert!(scan_rhel_ifcfg(path, dhcp).is_empty());
        let static_ = "DEVICE=eth0\nBOOTPROTO=none\nIPADDR0=\"10.0.0.5\"\nPREFIX0=24\n";
        assert_eq!(
            scan_rhel_ifcfg(path, static_),
            [
                format!("{path}:2: BOOTPROTO=none"),
                format!("{path}:3: IPADDR0=\"10.0.0.5\""),
            ]
        );
        let bound = "DEVICE=eth0\nBOOTPROTO=dhcp\nHWADDR=00:0d:3a:00:00:01\nMACADDR=\n";
        assert_eq!(
            scan_rhel_ifcfg(path, bound),
            [format!("{path}:3: HWADDR=00:0d:3a:00:00:01")]
        );
        let unconfigured = "DEVICE=eth1\nBOOTPROTO=none\nONBOOT=no\n";
        assert!(scan_rhel_ifcfg(path, unconfigured).is_empty());
    }

    #[test]
    fn loopback_ifcfg_ignored() {
        let rhel = "DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nONBOOT=yes\n";
        assert!(scan_rhel_ifcfg("/etc/sysconfig/network-scripts/ifcfg-loopback", rhel).is_empty());
        let suse = "IPADDR=127.0.0.1/8\nNETMASK=255.0.0.0\nSTARTMODE=nfsroot\nBOOTPROTO=static\n";
        assert!(scan_suse_ifcfg("/etc/sysconfig/network/ifcfg-lo", suse).is_empty());
    }

    #[test]
    fn suse_ifcfg_static_and_lladdr() {
        let path = "/etc/sysconfig/network/ifcfg-eth0";
        assert!(scan_suse_ifcfg(path, "BOOTPROTO='dhcp'\nSTARTMODE='auto'\n").is_empty());
        let text = "BOOTPROTO='static'\nIPADDR_0='10.0.0.5/24'\nLLADDR='00:0d:3a:00:00:01'\n";
        assert_eq!(
            scan_suse_ifcfg(path, text),
            [
                format!("{path}:1: BOOTPROTO='static'"),
                format!("{path}:2: IPADDR_0='10.0.0.5/24'"),
                format!("{path}:3: LLADDR='00:0d:3a:00:00:01'"),
            ]
        );
        let by_name = "/etc/sysconfig/network/ifcfg-eth-id-00:0d:3a:00:00:01";
        assert_eq!(scan_suse_ifcfg(by_name, "BOOTPROTO='dhcp'\n").len(), 1);
    }

    #[test]
    fn address_keys() {
        for key in [
            "IPADDR",
            "IPADDR0",
            "IPADDR12",
            "IPADDR_0",
            "IPADDR_x1",
            "IPV6ADDR",
        ] {
            assert!(is_address_key(key), "{key}");
        }
        for key in ["IPV6ADDR_SECONDARIES", "IPV6INIT", "PREFIX0", "IPADDR-X"] {
            assert!(!is_address_key(key), "{key}");
        }
    }

    #[test]
    fn netplan_nameservers_not_addresses() {
        let path = "/etc/netplan/50-cloud-init.yaml";
        let dhcp = "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n\
                    \x20     nameservers:\n        addresses: [168.63.129.16]\n";
        assert!(
            scan_netplan(path, dhcp).is_empty(),
            "{:?}",
            scan_netplan(path, dhcp)
        );
        let pinned = "network:\n  ethernets:\n    eth0:\n      addresses:\n        - 10.0.0.5/24\n\
                      \x20     match:\n        macaddress: 00:0d:3a:00:00:01\n      set-name: eth0\n";
        assert_eq!(
            scan_netplan(path, pinned),
            [
                format!("{path}:4: addresses:"),
                format!("{path}:7: macaddress: 00:0d:3a:00:00:01"),
            ]
        );
        let listed = "network:\n  ethernets:\n    eth0:\n      routes:\n        - to: default\n\
                      \x20         via: 10.0.0.1\n  bonds:\n    - addresses: [10.0.0.6/24]\n";
        assert_eq!(
            scan_netplan(path, listed),
            [format!("{path}:8: - addresses: [10.0.0.6/24]")]
        );
    }

    #[test]
    fn network_manager_settings() {
        assert!(network_manager_line(
            "address1=10.0.0.5/24,10.0.0.1",
            "[ipv4]"
        ));
        assert!(network_manager_line("method=manual", "[ipv6]"));
        assert!(network_manager_line(
            "mac-address=00:11:22:33:44:55",
            "[ethernet]"
        ));
        assert!(!network_manager_line("method=auto", "[ipv4]"));
        assert!(!network_manager_line("method=manual", "[proxy]"));
        assert!(!network_manager_line(
            "mac-address-blacklist=00:11:22:33:44:55",
            "[ethernet]"
        ));
    }
}
