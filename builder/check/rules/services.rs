//! systemd unit enablement as the image's symlinks record it, and the rules
//! that depend on it: `minimal-footprint` and `azure-agent`.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use anyhow::Result;

use super::family::{self, Family};
use super::packages::{self, PackageDb};
use super::paths;
use crate::check::{FileKind, ImageView, Outcome, Subject};

pub const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";
/// Folders systemd loads system units from, highest priority first.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// A unit that a `.wants` or `.requires` symlink enables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnabledUnit {
    /// Name of the symlink (`ssh.service`).
    pub name: String,
    /// Name of the unit file it resolves to (`ssh.service`, or the real
    /// unit behind an alias).
    pub target: String,
    /// The symlink's path in the image.
    pub link: String,
}

impl EnabledUnit {
    /// Returns whether the unit is known under `name`, as link, target or alias.
    pub fn is_named(&self, names: &[&str]) -> bool {
        names.iter().any(|n| *n == self.name || *n == self.target)
    }
}

/// Lists the units enabled through `/etc/systemd/system/*.wants/` and
/// `*.requires/` symlinks. Links to `/dev/null` (masks) are skipped.
pub fn enabled_units(fs: &dyn ImageView) -> Result<Vec<EnabledUnit>> {
    let mut units = Vec::new();
    for dir in fs.list_dir(SYSTEM_UNIT_DIR)? {
        if !(dir.ends_with(".wants") || dir.ends_with(".requires")) {
            continue;
        }
        let dir_path = format!("{SYSTEM_UNIT_DIR}/{dir}");
        for name in fs.list_dir(&dir_path)? {
            let link = format!("{dir_path}/{name}");
            let Some(target) = fs.read_link(&link)? else {
                continue;
            };
            if target == "/dev/null" {
                continue;
            }
            let target_name = paths::file_name(&target).to_string();
            let target = resolve_alias(fs, &target_name)?.unwrap_or(target_name);
            units.push(EnabledUnit { name, target, link });
        }
    }
    Ok(units)
}

/// Follows an alias such as `sshd.service -> ssh.service` in the unit
/// folders to the name of the real unit file.
fn resolve_alias(fs: &dyn ImageView, name: &str) -> Result<Option<String>> {
    for dir in UNIT_DIRS {
        let path = format!("{dir}/{name}");
        if let Some(meta) = fs.lstat(&path)? {
            if meta.kind != FileKind::Symlink {
                return Ok(Some(name.to_string()));
            }
            let resolved = paths::resolve(fs, &path)?;
            return Ok(resolved.map(|p| paths::file_name(&p).to_string()));
        }
    }
    Ok(None)
}

/// Aliases in `/etc/systemd/system` (symlinks to unit files) of units that
/// are enabled, so `sshd.service` counts as enabled when `ssh.service` is.
fn enabled_aliases(fs: &dyn ImageView, units: &[EnabledUnit]) -> Result<Vec<String>> {
    let mut aliases = Vec::new();
    for name in fs.list_dir(SYSTEM_UNIT_DIR)? {
        let path = format!("{SYSTEM_UNIT_DIR}/{name}");
        let Some(target) = fs.read_link(&path)? else {
            continue;
        };
        let target = paths::file_name(&target);
        if units.iter().any(|u| u.target == target || u.name == target) {
            aliases.push(name);
        }
    }
    Ok(aliases)
}

/// Returns the first enabled-unit symlink for any of `names`, aliases
/// included; `None` when none of them is enabled.
pub fn find_enabled(fs: &dyn ImageView, names: &[&str]) -> Result<Option<String>> {
    let units = enabled_units(fs)?;
    if let Some(unit) = units.iter().find(|u| u.is_named(names)) {
        return Ok(Some(unit.link.clone()));
    }
    for alias in enabled_aliases(fs, &units)? {
        if names.contains(&alias.as_str()) {
            return Ok(Some(format!("{SYSTEM_UNIT_DIR}/{alias}")));
        }
    }
    Ok(None)
}

/// Reads a unit file from the first unit folder that contains it.
pub fn read_unit(fs: &dyn ImageView, name: &str) -> Result<Option<(String, String)>> {
    for dir in UNIT_DIRS {
        let path = format!("{dir}/{name}");
        let Some(real) = paths::resolve(fs, &path)? else {
            continue;
        };
        if let Some(text) = fs.read_text(&real)? {
            return Ok(Some((path, text)));
        }
    }
    Ok(None)
}

/// Services that listen on the network in their default configuration.
///
/// NOTE: this table is a heuristic. A service is judged by its name only, so
/// an unlisted listener passes and a listed one configured not to listen
/// fails. Socket units are judged by their `Listen*` lines instead.
const NETWORK_DAEMONS: &[&str] = &[
    "ssh",
    "sshd",
    "nginx",
    "apache2",
    "httpd",
    "lighttpd",
    "mysql",
    "mysqld",
    "mariadb",
    "postgresql",
    "redis-server",
    "redis",
    "memcached",
    "rpcbind",
    "avahi-daemon",
    "cups",
    "cups-browsed",
    "exim4",
    "postfix",
    "sendmail",
    "named",
    "bind9",
    "dnsmasq",
    "smbd",
    "nmbd",
    "samba",
    "nfs-server",
    "nfs-kernel-server",
    "vsftpd",
    "proftpd",
    "pure-ftpd",
    "snmpd",
    "xinetd",
    "inetd",
    "openbsd-inetd",
    "telnet",
    "telnetd",
    "squid",
    "haproxy",
    "docker",
    "containerd",
    "mongod",
    "rabbitmq-server",
    "slapd",
    "tomcat",
    "tomcat9",
    "tomcat10",
    "dovecot",
    "ntpd",
    "chronyd",
    "xrdp",
    "vncserver",
    "cockpit",
    "webmin",
    "elasticsearch",
    "zabbix-agent",
    "nrpe",
    "rsync",
];

fn unit_stem(name: &str) -> &str {
    name.strip_suffix(".service")
        .or(name.strip_suffix(".socket"))
        .unwrap_or(name)
}

/// Returns the network `Listen*` addresses of a socket unit: ports and
/// addresses, not file system paths or abstract socket names.
pub fn socket_listens(text: &str) -> Vec<String> {
    let keys = ["ListenStream", "ListenDatagram", "ListenSequentialPacket"];
    let mut found = Vec::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim();
        if !keys.contains(&key.trim()) || value.is_empty() {
            continue;
        }
        if !value.starts_with('/') && !value.starts_with('@') {
            found.push(format!("{}={value}", key.trim()));
        }
    }
    found
}

/// Describes why an enabled unit listens on the network, or `None`.
fn listening(fs: &dyn ImageView, unit: &EnabledUnit) -> Result<Option<String>> {
    if unit.target.ends_with(".socket") {
        let Some((path, text)) = read_unit(fs, &unit.target)? else {
            return Ok(None);
        };
        let listens = socket_listens(&text);
        return Ok((!listens.is_empty())
            .then(|| format!("{} ({path}: {})", unit.name, listens.join(", "))));
    }
    let known = [&unit.name, &unit.target]
        .iter()
        .any(|n| n.ends_with(".service") && NETWORK_DAEMONS.contains(&unit_stem(n)));
    Ok(known.then(|| format!("{} (known network service)", unit.name)))
}

fn is_declared(unit: &EnabledUnit, declared: &[String]) -> bool {
    let defaults = ["ssh", "sshd"];
    [&unit.name, &unit.target].iter().any(|n| {
        let stem = unit_stem(n);
        defaults.contains(&stem) || declared.iter().any(|d| d == *n || unit_stem(d) == stem)
    })
}

/// Checks `minimal-footprint`: every enabled unit that listens on the
/// network is declared by the recipe (ssh is declared by default).
pub fn minimal_footprint(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let mut listeners = Vec::new();
    let mut undeclared = Vec::new();
    let mut seen = BTreeSet::new();
    for unit in enabled_units(fs)? {
        if !seen.insert(unit.target.clone()) {
            continue;
        }
        let Some(description) = listening(fs, &unit)? else {
            continue;
        };
        if !is_declared(&unit, &s.policy.declared_units) {
            undeclared.push(description.clone());
        }
        listeners.push(description);
    }
    let listed = if listeners.is_empty() {
        "none".to_string()
    } else {
        listeners.join("; ")
    };
    if undeclared.is_empty() {
        Ok(Outcome::pass(format!(
            "enabled network listeners: {listed}; all declared"
        )))
    } else {
        Ok(Outcome::fail(format!(
            "enabled network listeners not declared by the recipe: {}; all listeners: {listed}",
            undeclared.join("; ")
        )))
    }
}

/// Agent versions older than this cannot update themselves safely, so they
/// must keep auto-update on.
const AGENT_MIN_VERSION: &str = "2.2.41";
const WAAGENT_CONF: &str = "/etc/waagent.conf";

/// Reads a `Key=value` setting of `/etc/waagent.conf`, with its line.
pub fn waagent_setting(fs: &dyn ImageView, key: &str) -> Result<Option<(usize, String)>> {
    let Some(text) = fs.read_text(WAAGENT_CONF)? else {
        return Ok(None);
    };
    let mut found = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if k.trim() == key {
                found = Some((number + 1, v.trim().to_string()));
            }
        }
    }
    Ok(found)
}

/// The Azure Linux Agent's package and service names in one family.
struct AgentNames {
    packages: &'static [&'static str],
    units: &'static [&'static str],
}

/// Returns the agent's names: Debian's `waagent` and Ubuntu's
/// `walinuxagent` run `walinuxagent.service`; RHEL's `WALinuxAgent` and
/// SUSE's `python3-azure-agent` run `waagent.service`.
fn agent_names(family: Family) -> AgentNames {
    const DEBIAN: &[&str] = &["waagent", "walinuxagent"];
    const RHEL: &[&str] = &["WALinuxAgent"];
    const SUSE: &[&str] = &[
        "python3-azure-agent",
        "python-azure-agent",
        "python311-azure-agent",
    ];
    const ALL: &[&str] = &[
        "waagent",
        "walinuxagent",
        "WALinuxAgent",
        "python3-azure-agent",
        "python-azure-agent",
        "python311-azure-agent",
    ];
    match family {
        Family::Debian => AgentNames {
            packages: DEBIAN,
            units: &["walinuxagent.service", "waagent.service"],
        },
        Family::Rhel => AgentNames {
            packages: RHEL,
            units: &["waagent.service"],
        },
        Family::Suse => AgentNames {
            packages: SUSE,
            units: &["waagent.service"],
        },
        Family::Unknown => AgentNames {
            packages: ALL,
            units: &["walinuxagent.service", "waagent.service"],
        },
    }
}

/// Checks `azure-agent`: the distribution's agent package is installed and
/// its service enabled; old agents must keep auto-update on.
pub fn azure_agent(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let family = family::detect(fs, s.os)?;
    let names = agent_names(family);
    let installed = match packages::read_installed(fs, family)? {
        PackageDb::Read(installed) => installed,
        PackageDb::Missing(why) => {
            return Ok(Outcome::fail(format!(
                "{why}, so no agent package is known to be installed"
            )))
        }
        PackageDb::Unreadable(why) => return Ok(Outcome::not_run(why)),
    };
    let Some(agent) = installed.find(|name| names.packages.contains(&name)) else {
        return Ok(Outcome::fail(format!(
            "{}: none of {} is installed",
            installed.source,
            names.packages.join(", ")
        )));
    };
    let package = format!("{} {}", agent.name, agent.version);
    let Some(link) = find_enabled(fs, names.units)? else {
        return Ok(Outcome::fail(format!(
            "{package} is installed but {} is not enabled",
            names.units.join(" or ")
        )));
    };
    let old =
        installed.compare_upstream(agent.upstream_version(), AGENT_MIN_VERSION) == Ordering::Less;
    if old {
        if let Some((line, value)) = waagent_setting(fs, "AutoUpdate.Enabled")? {
            if value.eq_ignore_ascii_case("n") {
                return Ok(Outcome::fail(format!(
                    "{package} is older than {AGENT_MIN_VERSION} and {WAAGENT_CONF}:{line} sets AutoUpdate.Enabled=n"
                )));
            }
        }
    }
    Ok(Outcome::pass(format!(
        "{package} installed; enabled by {link}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_do_not_listen() {
        let text = "[Socket]\nListenStream=/run/foo.sock\nListenStream=@abstract\n";
        assert!(socket_listens(text).is_empty());
    }

    #[test]
    fn socket_ports_listen() {
        let text = "[Socket]\nListenStream=22\nListenDatagram=0.0.0.0:69\nListenStream=[::]:80\n";
        assert_eq!(
            socket_listens(text),
            [
                "ListenStream=22",
                "ListenDatagram=0.0.0.0:69",
                "ListenStream=[::]:80"
            ]
        );
    }

    #[test]
    fn declared_matches_with_and_without_suffix() {
        let unit = EnabledUnit {
            name: "nginx.service".into(),
            target: "nginx.service".into(),
            link: String::new(),
        };
        assert!(is_declared(&unit, &["nginx".to_string()]));
        assert!(is_declared(&unit, &["nginx.service".to_string()]));
        assert!(!is_declared(&unit, &["apache2".to_string()]));
        let ssh = EnabledUnit {
            name: "sshd.service".into(),
            target: "ssh.service".into(),
            link: String::new(),
        };
        assert!(is_declared(&ssh, &[]));
    }
}
