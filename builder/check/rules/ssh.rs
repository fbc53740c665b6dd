//! SSH server rules: `ssh-server`, `sshd-client-alive-interval` and
//! `ssh-host-keys-removed`.

use anyhow::Result;

use super::family::{self, Family};
use super::packages::{self, PackageDb};
use super::services;
use super::sshd_config::{self, SshdConfig, SSHD_CONFIG};
use crate::check::{Outcome, Subject};

/// The interval Microsoft recommends and forge sets, in seconds.
pub const CLIENT_ALIVE_INTERVAL: u64 = 180;
const SSH_UNITS: &[&str] = &["ssh.service", "sshd.service", "ssh.socket", "sshd.socket"];

/// Checks `ssh-server`: the OpenSSH server package is installed and its
/// service or socket enabled.
pub fn ssh_server(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let family = family::detect(fs, s.os)?;
    // Older SUSE releases ship sshd in the openssh package itself.
    let names: &[&str] = match family {
        Family::Suse => &["openssh-server", "openssh"],
        _ => &["openssh-server"],
    };
    let installed = match packages::read_installed(fs, family)? {
        PackageDb::Read(installed) => installed,
        PackageDb::Missing(why) => {
            return Ok(Outcome::fail(format!(
                "{why}, so openssh-server is not known to be installed"
            )))
        }
        PackageDb::Unreadable(why) => return Ok(Outcome::not_run(why)),
    };
    let Some(server) = installed.find(|name| names.contains(&name)) else {
        return Ok(Outcome::fail(format!(
            "{}: {} is not installed",
            installed.source,
            names.join(" or ")
        )));
    };
    match services::find_enabled(fs, SSH_UNITS)? {
        Some(link) => Ok(Outcome::pass(format!(
            "{} {} installed; enabled by {link}",
            server.name, server.version
        ))),
        None => Ok(Outcome::fail(format!(
            "{} {} is installed but none of {} is enabled",
            server.name,
            server.version,
            SSH_UNITS.join(", ")
        ))),
    }
}

/// Checks `sshd-client-alive-interval`: the effective global value is 180
/// and the Azure agent is not set to rewrite it at provisioning.
pub fn client_alive_interval(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let Some(config) = SshdConfig::load(fs)? else {
        return Ok(Outcome::fail(format!("{SSHD_CONFIG} is missing")));
    };
    if let Some((line, value)) = services::waagent_setting(fs, "OS.SshClientAliveInterval")? {
        if value != CLIENT_ALIVE_INTERVAL.to_string() {
            return Ok(Outcome::fail(format!(
                "/etc/waagent.conf:{line}: OS.SshClientAliveInterval={value} makes the agent rewrite sshd's \
                 interval; set it to {CLIENT_ALIVE_INTERVAL} or remove it"
            )));
        }
    }
    let Some(setting) = config.effective("ClientAliveInterval") else {
        return Ok(Outcome::fail(format!(
            "ClientAliveInterval is not set globally in {SSHD_CONFIG} or its includes (sshd default 0)"
        )));
    };
    let seconds = match sshd_config::parse_time(&setting.value()) {
        Ok(seconds) => seconds,
        Err(e) => return Ok(Outcome::fail(format!("{}: {e:#}", setting.origin()))),
    };
    let seen = format!(
        "{}: ClientAliveInterval {}",
        setting.origin(),
        setting.value()
    );
    if seconds == CLIENT_ALIVE_INTERVAL {
        Ok(Outcome::pass(format!("{seen} ({seconds} s)")))
    } else {
        Ok(Outcome::fail(format!(
            "{seen} is {seconds} s; expected {CLIENT_ALIVE_INTERVAL} s"
        )))
    }
}

/// Checks `ssh-host-keys-removed`: no `/etc/ssh/ssh_host_*` file.
pub fn host_keys_removed(s: &Subject) -> Result<Outcome> {
    let fs = super::linux_tree!(s);
    let keys: Vec<String> = fs
        .list_dir("/etc/ssh")?
        .into_iter()
        .filter(|name| name.starts_with("ssh_host_"))
        .map(|name| format!("/etc/ssh/{name}"))
        .collect();
    if keys.is_empty() {
        Ok(Outcome::pass("no /etc/ssh/ssh_host_* files"))
    } else {
        Ok(Outcome::fail(format!(
            "host keys present: {}",
            keys.join(", ")
        )))
    }
}
