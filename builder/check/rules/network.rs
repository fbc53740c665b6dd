//! Network rules: `firewall-disabled`, `resolv-conf-removed` and
//! `no-custom-network-config`.

use anyhow::Result;

use super::paths::{self, is_under};
use super::services;
use crate::check::{FileKind, ImageView, Outcome, Subject};

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

/// A line of a network configuration file that pins the configuration.
struct Finder {
    /// Glob of the files to search.
    pattern: &'static str,
    /// Whether a trimmed, lower-cased line pins an address or MAC.
    matches: fn(&str, &str) -> bool,
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
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

fn networkd_line(line: &str, section: &str) -> bool {
    let key = key_of(line);
    key == "address"
        || (section == "[match]" && matches!(key, "macaddress" | "permanentmacaddress"))
}

fn networkd_link_line(line: &str, _section: &str) -> bool {
    key_of(line) == "macaddress"
}

fn netplan_line(line: &str, _section: &str) -> bool {
    line.starts_with("addresses:")
        || line.starts_with("macaddress:")
        || line.starts_with("- addresses:")
}

fn network_manager_line(line: &str, _section: &str) -> bool {
    let key = key_of(line);
    key.starts_with("address") || key == "mac-address"
}

fn ifcfg_line(line: &str, _section: &str) -> bool {
    let (key, value) = line.split_once('=').unwrap_or(("", ""));
    let value = value.trim().trim_matches(['"', '\'']);
    (key == "bootproto" && matches!(value, "static" | "none"))
        || key.starts_with("ipaddr")
        || matches!(key, "hwaddr" | "macaddr")
}

fn any_line(_line: &str, _section: &str) -> bool {
    true
}

const FINDERS: &[Finder] = &[
    Finder {
        pattern: "/etc/network/interfaces",
        matches: ifupdown_line,
    },
    Finder {
        pattern: "/etc/network/interfaces.d/*",
        matches: ifupdown_line,
    },
    Finder {
        pattern: "/etc/udev/rules.d/*persistent-net*.rules",
        matches: any_line,
    },
    Finder {
        pattern: "/etc/systemd/network/*.network",
        matches: networkd_line,
    },
    Finder {
        pattern: "/etc/systemd/network/*.link",
        matches: networkd_link_line,
    },
    Finder {
        pattern: "/etc/netplan/*.yaml",
        matches: netplan_line,
    },
    Finder {
        pattern: "/etc/NetworkManager/system-connections/*",
        matches: network_manager_line,
    },
    Finder {
        pattern: "/etc/sysconfig/network-scripts/ifcfg-*",
        matches: ifcfg_line,
    },
];

/// Returns `file:line: text` for each pinning line of the file.
fn scan_file(fs: &dyn ImageView, path: &str, finder: &Finder) -> Result<Vec<String>> {
    let Some(text) = fs.read_text(path)? else {
        return Ok(Vec::new());
    };
    let mut section = String::new();
    let mut found = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim().to_ascii_lowercase();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if line.starts_with('[') {
            section = line.clone();
        }
        if (finder.matches)(&line, &section) {
            found.push(format!("{path}:{}: {}", index + 1, raw.trim()));
        }
    }
    Ok(found)
}

/// Checks `no-custom-network-config` across ifupdown, udev, networkd,
/// netplan, NetworkManager and ifcfg files.
pub fn no_custom_network_config(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut found = Vec::new();
    for finder in FINDERS {
        for path in paths::expand_glob(fs, finder.pattern)? {
            found.extend(scan_file(fs, &path, finder)?);
        }
    }
    if found.is_empty() {
        Ok(Outcome::pass(
            "no static address, MAC binding or persistent-net rule in ifupdown, udev, networkd, \
             netplan, NetworkManager or ifcfg files",
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
    fn ifcfg_settings() {
        assert!(ifcfg_line("bootproto=static", ""));
        assert!(ifcfg_line("bootproto=\"none\"", ""));
        assert!(!ifcfg_line("bootproto=dhcp", ""));
        assert!(ifcfg_line("ipaddr0=10.0.0.5", ""));
        assert!(ifcfg_line("hwaddr=00:11:22:33:44:55", ""));
    }

    #[test]
    fn network_manager_settings() {
        assert!(network_manager_line("address1=10.0.0.5/24,10.0.0.1", ""));
        assert!(network_manager_line("mac-address=00:11:22:33:44:55", ""));
        assert!(!network_manager_line("method=auto", ""));
    }
}
