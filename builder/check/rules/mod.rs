//! The rule catalogue: one entry per requirement id.

mod accounts;
mod arch;
mod boot;
pub mod debversion;
mod disk;
mod files;
pub mod hardening;
mod malware;
mod network;
pub mod packages;
pub mod paths;
pub mod services;
mod ssh;
pub mod sshd_config;
mod swap;
mod windows;

#[cfg(test)]
mod plant_tests;
#[cfg(test)]
mod testkit;

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

const fn rule(
    id: &'static str,
    title: &'static str,
    severity: Severity,
    requirement: &'static str,
    check: fn(&Subject) -> Result<Outcome>,
) -> Rule {
    Rule {
        id,
        title,
        severity,
        requirement,
        check,
    }
}

use Severity::{Blocking, Required};

static CATALOGUE: &[Rule] = &[
    rule("vhd-fixed-format", "Fixed VHD", Blocking,
        "The file is a fixed VHD with a valid footer (cookie conectix, disk type 2, version 1.0, checksum).",
        disk::vhd_fixed_format),
    rule("vhd-size-aligned", "VHD size aligned", Blocking,
        "Footer current and original size equal the file length minus 512 and are whole MiB.",
        disk::vhd_size_aligned),
    rule("vhd-size-range", "VHD size range", Blocking,
        "Linux OS disks are 1 to 1023 GiB; Windows OS disks are 30 to 250 GiB.",
        disk::vhd_size_range),
    rule("disk-first-mib-free", "First MiB free", Blocking,
        "No partition starts before sector 2048.",
        disk::first_mib_free),
    rule("security-patches", "Security updates installed", Required,
        "Every available security update from the distribution is installed.",
        packages::security_patches),
    rule("hardening-baseline", "Hardening baseline", Required,
        "The image follows the distribution's accepted hardening guidance.",
        hardening::hardening_baseline),
    rule("minimal-footprint", "Minimal footprint", Required,
        "Only the services and ports the product needs are enabled.",
        services::minimal_footprint),
    rule("malware-scan", "Malware scan", Required,
        "The image's files were scanned for malware with no finding.",
        malware::malware_scan),
    rule("accounts-locked", "Accounts locked", Blocking,
        "All accounts are locked, none has an empty or default password, and only root has UID 0.",
        accounts::accounts_locked),
    rule("firewall-disabled", "Firewall disabled", Required,
        "Firewall rules are disabled unless the product needs them.",
        network::firewall_disabled),
    rule("ssh-host-keys-removed", "SSH host keys removed", Blocking,
        "No /etc/ssh/ssh_host_* keys.",
        ssh::host_keys_removed),
    rule("authorized-keys-removed", "Authorized keys removed", Blocking,
        "No authorized_keys or authorized_keys2 file for any user.",
        files::authorized_keys_removed),
    rule("known-hosts-removed", "Known hosts removed", Required,
        "No known_hosts file for any user.",
        files::known_hosts_removed),
    rule("private-keys-removed", "Private keys removed", Blocking,
        "No private key material outside the distribution's packaged files.",
        files::private_keys_removed),
    rule("logs-cleared", "Logs cleared", Required,
        "/var/log holds no non-empty log file.",
        files::logs_cleared),
    rule("machine-id-reset", "Machine ID reset", Required,
        "/etc/machine-id is empty or absent and no filled copy exists.",
        files::machine_id_reset),
    rule("provisioning-state-cleared", "Provisioning state cleared", Required,
        "No cloud-init instance data, agent state or DHCP lease remains.",
        files::provisioning_state_cleared),
    rule("no-lvm", "No LVM", Blocking,
        "No LVM physical volume on the OS disk.",
        disk::no_lvm),
    rule("shell-history-cleared", "Shell history cleared", Blocking,
        "No non-empty shell history file for any user.",
        files::shell_history_cleared),
    rule("required-packages", "Required packages", Blocking,
        "OpenSSL 1.0 or later, Python 3 and pyasn1 are installed.",
        packages::required_packages),
    rule("ssh-server", "SSH server", Blocking,
        "An SSH server is installed and enabled.",
        ssh::ssh_server),
    rule("sshd-client-alive-interval", "sshd ClientAliveInterval", Blocking,
        "The effective ClientAliveInterval of sshd is 180.",
        ssh::client_alive_interval),
    rule("resolv-conf-removed", "resolv.conf removed", Required,
        "/etc/resolv.conf does not exist in the image.",
        network::resolv_conf_removed),
    rule("no-custom-network-config", "No custom network configuration", Blocking,
        "No static addresses, MAC-bound configuration or persistent-net rules.",
        network::no_custom_network_config),
    rule("azure-agent", "Azure Linux Agent", Blocking,
        "The Azure Linux Agent is installed from the distribution's package and enabled.",
        services::azure_agent),
    rule("kernel-cmdline", "Kernel command line", Blocking,
        "Every boot entry has console=ttyS0, earlyprintk=ttyS0 and rootdelay=300.",
        boot::kernel_cmdline),
    rule("no-swap", "No swap", Blocking,
        "No swap partition, fstab entry, swap file or enabled swap unit on the OS disk.",
        swap::no_swap),
    rule("single-root-partition", "Single root partition", Blocking,
        "The OS disk has exactly one OS file system partition, mounted at /.",
        disk::single_root_partition),
    rule("os-64bit", "64-bit OS", Blocking,
        "Package architecture, init binary and kernel are all 64-bit.",
        arch::os_64bit),
    rule("win-azure-base", "Azure Windows base", Blocking,
        "The image derives from an Azure-provided Windows Server base.",
        windows::pending),
    rule("win-security-updates", "Windows security updates", Required,
        "Latest security updates are installed.",
        windows::pending),
    rule("win-no-reserved-usernames", "No reserved user names", Required,
        "Nothing depends on the user names administrator, root or admin.",
        windows::pending),
    rule("win-bitlocker", "BitLocker", Required,
        "The captured VHD is not encrypted; BitLocker is arranged for deployment.",
        windows::pending),
    rule("win-minimal-footprint", "Windows minimal footprint", Required,
        "Only the roles, features, services and ports needed are enabled.",
        windows::pending),
    rule("win-malware-scan", "Windows malware scan", Required,
        "Files scanned for malware with no finding.",
        windows::pending),
    rule("win-auto-update", "Automatic updates", Required,
        "Automatic updates are on.",
        windows::pending),
    rule("win-accounts-locked", "Windows accounts locked", Required,
        "Only needed accounts exist, locked, with no default passwords.",
        windows::pending),
    rule("win-firewall-rules", "Windows firewall rules", Required,
        "Firewall rules are disabled unless the product needs them.",
        windows::pending),
    rule("win-sensitive-files-removed", "Sensitive files removed", Required,
        "No hosts-file entries, logs, unneeded certificates or answer files with credentials.",
        windows::pending),
    rule("win-64bit", "64-bit Windows", Blocking,
        "The OS is 64-bit.",
        windows::pending),
    rule("win-generalized", "Windows generalized", Blocking,
        "The image is generalized (sysprep finished).",
        windows::pending),
    rule("win-rdp-enabled", "Remote Desktop enabled", Blocking,
        "Remote Desktop is enabled.",
        windows::pending),
];

/// Returns every rule, in report order.
pub fn catalogue() -> &'static [Rule] {
    CATALOGUE
}

/// Finds a rule by its id.
pub fn find(id: &str) -> Option<&'static Rule> {
    CATALOGUE.iter().find(|rule| rule.id == id)
}
