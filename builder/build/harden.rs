//! Mandatory hardening, applied after the layers so that no layer can undo
//! it. Each step repairs what it can; what it cannot repair (a second UID 0
//! account, a private key the vendor put in the image) is left for the
//! check pass to reject, naming the rule.

use std::fs;

use anyhow::{Context, Result};

use super::{tree, Context as BuildContext};
use crate::check::rules::family::Family;
use crate::check::rules::hardening::SYSCTL_BASELINE;

/// Kernel command line Azure requires, plus a console on the first screen.
pub const KERNEL_CMDLINE: &str = "console=tty1 console=ttyS0 earlyprintk=ttyS0 rootdelay=300";

/// sshd settings this step puts first in `sshd_config`; sshd keeps the
/// first value it reads for a keyword, so these win over any later line.
const SSHD_BLOCK: &str = "\
# Set by forge for Azure Marketplace images. sshd uses the first value it
# reads for each keyword, so these lines stay at the top of this file.
ClientAliveInterval 180
PermitRootLogin no
PermitEmptyPasswords no
# End of forge settings.
";
const SSHD_BLOCK_END: &str = "# End of forge settings.\n";

/// File names of shell and REPL histories, removed wherever they are.
const HISTORY_FILES: &[&str] = &[
    ".bash_history",
    ".zsh_history",
    ".sh_history",
    ".history",
    ".ash_history",
    ".ksh_history",
    ".python_history",
    ".mysql_history",
    ".psql_history",
    ".lesshst",
];
const KEY_FILES: &[&str] = &["authorized_keys", "authorized_keys2", "known_hosts"];

/// Folders of the tree that hold no image state worth scanning.
const SKIP_WALK: &[&str] = &["/proc", "/sys", "/dev", "/run", "/usr", "/boot"];

/// Password fields that mean "locked, no password".
pub const LOCK_MARKERS: &[&str] = &["*", "!", "!!", "*LOCK*", "!*"];

const FIREWALL_UNITS: &[&str] = &[
    "ufw.service",
    "firewalld.service",
    "nftables.service",
    "netfilter-persistent.service",
    "iptables.service",
    "ip6tables.service",
];

type Step = fn(&BuildContext) -> Result<()>;

/// Runs every hardening step on the tree.
pub fn run(ctx: &BuildContext) -> Result<()> {
    let steps: &[(&str, Step)] = &[
        ("sshd settings", sshd_settings),
        ("agent settings", agent_settings),
        ("files with keys and histories", remove_user_files),
        ("SSH host keys", |c| {
            remove_glob(&c.tree, "/etc/ssh", "ssh_host_")
        }),
        ("self-signed key of ssl-cert", remove_snakeoil),
        ("logs", clear_logs),
        ("machine id", reset_machine_id),
        ("provisioning state", clear_provisioning_state),
        ("network config", network_defaults),
        ("swap", remove_swap),
        ("accounts", lock_accounts),
        ("firewall", disable_firewall),
        ("kernel command line", kernel_cmdline),
        ("sysctl baseline", sysctl_baseline),
        ("file modes", file_modes),
        ("cloud-init datasource", cloud_init_azure),
        ("caches and temporary files", clean_caches),
        ("product policy", record_policy),
    ];
    for (name, step) in steps {
        tracing::debug!("hardening: {name}");
        step(ctx).with_context(|| format!("hardening step `{name}` failed"))?;
    }
    Ok(())
}

fn sshd_settings(ctx: &BuildContext) -> Result<()> {
    let path = "/etc/ssh/sshd_config";
    let current = tree::read(&ctx.tree, path)?.unwrap_or_default();
    let rest = match current.find(SSHD_BLOCK_END) {
        Some(i) if current.starts_with("# Set by forge") => &current[i + SSHD_BLOCK_END.len()..],
        _ => current.as_str(),
    };
    tree::write(
        &ctx.tree,
        path,
        format!("{SSHD_BLOCK}{rest}").as_bytes(),
        0o644,
    )
}

/// The agent rewrites sshd's ClientAliveInterval at provisioning from
/// `OS.SshClientAliveInterval`, so that value must be 180 as well.
fn agent_settings(ctx: &BuildContext) -> Result<()> {
    let path = "/etc/waagent.conf";
    let Some(text) = tree::read(&ctx.tree, path)? else {
        return Ok(());
    };
    let mut out: Vec<String> = Vec::new();
    let mut seen = false;
    for line in text.lines() {
        if line.trim_start().starts_with("OS.SshClientAliveInterval") {
            out.push("OS.SshClientAliveInterval=180".into());
            seen = true;
        } else {
            out.push(line.to_string());
        }
    }
    if !seen {
        out.push("OS.SshClientAliveInterval=180".into());
    }
    tree::write(&ctx.tree, path, (out.join("\n") + "\n").as_bytes(), 0o644)
}

/// Walks the image state (not `/usr`), calling `f` for each entry.
fn walk_state(
    ctx: &BuildContext,
    f: &mut dyn FnMut(&str, &fs::Metadata) -> Result<()>,
) -> Result<()> {
    for top in fs::read_dir(&ctx.tree)? {
        let name = format!("/{}", top?.file_name().to_string_lossy());
        if SKIP_WALK.contains(&name.as_str()) {
            continue;
        }
        let meta = fs::symlink_metadata(ctx.tree.join(&name[1..]))?;
        if meta.is_dir() {
            tree::walk(&ctx.tree, &name, f)?;
        } else {
            // A file right under / (a /swapfile, say) is image state too.
            f(&name, &meta)?;
        }
    }
    Ok(())
}

fn remove_user_files(ctx: &BuildContext) -> Result<()> {
    let mut doomed = Vec::new();
    walk_state(ctx, &mut |path, meta| {
        let name = path.rsplit('/').next().unwrap_or("");
        if !meta.is_dir() && (HISTORY_FILES.contains(&name) || KEY_FILES.contains(&name)) {
            doomed.push(path.to_string());
        }
        Ok(())
    })?;
    for path in doomed {
        tracing::info!("hardening: removing {path}");
        tree::remove(&ctx.tree, &path)?;
    }
    Ok(())
}

fn remove_glob(t: &std::path::Path, dir: &str, prefix: &str) -> Result<()> {
    let host = tree::resolve_all(t, dir)?;
    for entry in fs::read_dir(&host).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            tree::remove(t, &format!("{dir}/{name}"))?;
        }
    }
    Ok(())
}

/// ssl-cert makes a key pair at install time, the same in every VM made
/// from the image; it is removed with its certificate.
fn remove_snakeoil(ctx: &BuildContext) -> Result<()> {
    tree::remove(&ctx.tree, "/etc/ssl/private/ssl-cert-snakeoil.key")?;
    tree::remove(&ctx.tree, "/etc/ssl/certs/ssl-cert-snakeoil.pem")?;
    Ok(())
}

/// Empties every log file; rotated copies go away entirely.
fn clear_logs(ctx: &BuildContext) -> Result<()> {
    let mut files = Vec::new();
    tree::walk(&ctx.tree, "/var/log", &mut |path, meta| {
        if meta.is_file() || meta.file_type().is_symlink() {
            files.push(path.to_string());
        }
        Ok(())
    })?;
    for path in files {
        let rotated = path.ends_with(".gz")
            || path.ends_with(".old")
            || path
                .rsplit('.')
                .next()
                .is_some_and(|s| s.chars().all(|c| c.is_ascii_digit()));
        let host = tree::resolve_parent(&ctx.tree, &path)?;
        let is_link = fs::symlink_metadata(&host)?.file_type().is_symlink();
        if rotated || is_link {
            tree::remove(&ctx.tree, &path)?;
        } else {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&host)?;
        }
    }
    Ok(())
}

/// An empty machine-id makes systemd create a new one at first boot.
fn reset_machine_id(ctx: &BuildContext) -> Result<()> {
    tree::write(&ctx.tree, "/etc/machine-id", b"", 0o444)?;
    let dbus = "/var/lib/dbus/machine-id";
    tree::remove(&ctx.tree, dbus)?;
    let host = tree::resolve_parent(&ctx.tree, dbus)?;
    if host.parent().is_some_and(|p| p.is_dir()) {
        std::os::unix::fs::symlink("/etc/machine-id", host)?;
    }
    Ok(())
}

fn clear_provisioning_state(ctx: &BuildContext) -> Result<()> {
    for dir in ["/var/lib/cloud", "/var/lib/waagent", "/var/lib/dhclient"] {
        remove_glob(&ctx.tree, dir, "")?;
    }
    for (dir, needle) in [
        ("/var/lib/dhcp", ".lease"),
        ("/var/lib/NetworkManager", ".lease"),
    ] {
        let host = tree::resolve_all(&ctx.tree, dir)?;
        for entry in fs::read_dir(&host).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(needle) {
                tree::remove(&ctx.tree, &format!("{dir}/{name}"))?;
            }
        }
    }
    Ok(())
}

/// The distribution's DHCP default on the first interface, nothing static,
/// nothing bound to a MAC address, no resolver file baked in.
fn network_defaults(ctx: &BuildContext) -> Result<()> {
    let t = &ctx.tree;
    tree::remove(t, "/etc/resolv.conf")?;
    tree::write(t, "/etc/hostname", b"localhost\n", 0o644)?;
    tree::write(
        t,
        "/etc/hosts",
        b"127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\
          ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n",
        0o644,
    )?;
    // ifupdown's file: Debian's own images use it; Ubuntu's use netplan,
    // whose static files are removed below.
    let ifupdown = ["/usr/sbin/ifup", "/sbin/ifup"]
        .iter()
        .any(|p| tree::resolve_all(t, p).is_ok_and(|h| h.exists()));
    if ctx.family == Family::Debian && ifupdown {
        write_interfaces(t)?;
    }
    if ctx.family == Family::Rhel {
        super::rhel::network_defaults(t)?;
    }
    remove_static_network_files(t)
}

fn write_interfaces(t: &std::path::Path) -> Result<()> {
    tree::write(
        t,
        "/etc/network/interfaces",
        b"# The loopback interface and DHCP on the first network interface.\n\
          source /etc/network/interfaces.d/*\n\n\
          auto lo\niface lo inet loopback\n\n\
          allow-hotplug eth0\niface eth0 inet dhcp\n",
        0o644,
    )
}

/// Removes every network file that sets a static address or binds to a
/// MAC address, in each family's locations.
fn remove_static_network_files(t: &std::path::Path) -> Result<()> {
    let static_markers: &[(&str, &[&str])] = &[
        (
            "/etc/network/interfaces.d",
            &["inet static", "inet6 static", "hwaddress"],
        ),
        ("/etc/systemd/network", &["Address=", "MACAddress="]),
        ("/etc/netplan", &["addresses:", "macaddress:"]),
        (
            "/etc/NetworkManager/system-connections",
            &["address1=", "mac-address="],
        ),
        (
            "/etc/sysconfig/network-scripts",
            &[
                "IPADDR=",
                "HWADDR=",
                "MACADDR=",
                "BOOTPROTO=static",
                "BOOTPROTO=none",
            ],
        ),
    ];
    for (dir, markers) in static_markers {
        let host = tree::resolve_all(t, dir)?;
        for entry in fs::read_dir(&host).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let text = tree::read(t, &format!("{dir}/{name}"))
                .unwrap_or_default()
                .unwrap_or_default();
            if markers.iter().any(|m| text.contains(m)) {
                tracing::info!("hardening: removing static network config {dir}/{name}");
                tree::remove(t, &format!("{dir}/{name}"))?;
            }
        }
    }
    remove_glob(t, "/etc/udev/rules.d", "70-persistent-net")?;
    remove_glob(t, "/etc/udev/rules.d", "75-persistent-net")?;
    Ok(())
}

fn remove_swap(ctx: &BuildContext) -> Result<()> {
    let t = &ctx.tree;
    let mut doomed = Vec::new();
    walk_state(ctx, &mut |path, meta| {
        let name = path.rsplit('/').next().unwrap_or("");
        let unit_dir = path.starts_with("/etc/systemd/system");
        let swap_unit = unit_dir && name.ends_with(".swap");
        if swap_unit || (meta.is_file() && meta.len() >= 40960 && has_swap_signature(t, path)) {
            doomed.push(path.to_string());
        }
        Ok(())
    })?;
    for path in doomed {
        tracing::info!("hardening: removing swap {path}");
        tree::remove(t, &path)?;
    }
    Ok(())
}

fn has_swap_signature(t: &std::path::Path, path: &str) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(host) = tree::resolve_parent(t, path) else {
        return false;
    };
    let Ok(mut f) = fs::File::open(host) else {
        return false;
    };
    let mut magic = [0u8; 10];
    f.seek(SeekFrom::Start(4086)).is_ok()
        && f.read_exact(&mut magic).is_ok()
        && (&magic == b"SWAPSPACE2" || &magic == b"SWAP-SPACE")
}

/// Replaces every password that is not a lock marker with `*`.
fn lock_accounts(ctx: &BuildContext) -> Result<()> {
    let path = "/etc/shadow";
    let Some(text) = tree::read(&ctx.tree, path)? else {
        return Ok(());
    };
    let mut out = String::new();
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 1 && !LOCK_MARKERS.contains(&fields[1]) {
            tracing::info!("hardening: locking the password of {}", fields[0]);
            fields[1] = "*";
        }
        out.push_str(&fields.join(":"));
        out.push('\n');
    }
    let host = tree::resolve_parent(&ctx.tree, path)?;
    fs::write(&host, out).with_context(|| format!("failed to write {path}"))
}

/// Records the recipe's declared services and waivers in the image, for
/// `forge check` runs that have no recipe.
fn record_policy(ctx: &BuildContext) -> Result<()> {
    let text = crate::check::policy::render(&ctx.recipe.declared_units(), &ctx.recipe.waivers);
    tree::write(
        &ctx.tree,
        crate::check::policy::IMAGE_POLICY_PATH,
        text.as_bytes(),
        0o644,
    )
}

/// Labels the files that the layers and forge wrote, on an image whose
/// SELinux policy is in force: with the image's own setfiles when it has
/// one, or else by asking for a relabel at first boot. Without labels,
/// an enforcing policy denies access to those files. Runs after the disk
/// step has written fstab and GRUB's files, the last files forge writes.
pub fn selinux_labels(ctx: &BuildContext) -> Result<()> {
    let Some(config) = tree::read(&ctx.tree, "/etc/selinux/config")? else {
        return Ok(());
    };
    let setting = |key: &str| {
        config.lines().find_map(|l| {
            l.trim()
                .strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    };
    let mode = setting("SELINUX").unwrap_or_default();
    if mode != "enforcing" && mode != "permissive" {
        return Ok(());
    }
    let policy = setting("SELINUXTYPE").unwrap_or_else(|| "targeted".to_owned());
    let contexts = format!("/etc/selinux/{policy}/contexts/files/file_contexts");
    let has = |p: &str| tree::resolve_all(&ctx.tree, p).is_ok_and(|h| h.exists());
    if has("/usr/sbin/setfiles") && has(&contexts) {
        let argv: Vec<String> = [
            "setfiles", "-F", "-e", "/proc", "-e", "/sys", "-e", "/dev", "-e", "/run",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([contexts, "/".to_owned()])
        .collect();
        super::chroot::command(&ctx.tree, &argv, &ctx.chroot_env())?
            .run()
            .context("labelling the tree with setfiles failed")?;
        return Ok(());
    }
    tracing::warn!(
        "SELinux is {mode} in the image but it has no setfiles or no {contexts}; \
         the first boot relabels the file systems"
    );
    tree::write(&ctx.tree, "/.autorelabel", b"", 0o644)
}

fn disable_firewall(ctx: &BuildContext) -> Result<()> {
    if ctx
        .recipe
        .waivers
        .iter()
        .any(|w| w.rule == "firewall-disabled")
    {
        tracing::info!("hardening: firewall left as the layers set it (waived)");
        return Ok(());
    }
    if let Some(text) = tree::read(&ctx.tree, "/etc/ufw/ufw.conf")? {
        let fixed = text.replace("ENABLED=yes", "ENABLED=no");
        tree::write(&ctx.tree, "/etc/ufw/ufw.conf", fixed.as_bytes(), 0o644)?;
    }
    let units_dir = tree::resolve_all(&ctx.tree, "/etc/systemd/system")?;
    for entry in fs::read_dir(&units_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".wants") || name.ends_with(".requires")) {
            continue;
        }
        for unit in FIREWALL_UNITS {
            if tree::remove(&ctx.tree, &format!("/etc/systemd/system/{name}/{unit}"))? {
                tracing::info!("hardening: disabled {unit}");
            }
        }
    }
    Ok(())
}

/// GRUB settings read by grub-mkconfig, here and on every kernel update in
/// the deployed VM. The `zz-` name makes this file sourced last.
fn kernel_cmdline(ctx: &BuildContext) -> Result<()> {
    // The RHEL family's grub2-mkconfig reads only /etc/default/grub, and
    // its BLS entries carry the command line; the disk step writes both,
    // as they name the new root file system.
    if ctx.family != Family::Debian {
        return Ok(());
    }
    let cfg = format!(
        "# Set by forge: the kernel command line Azure requires, and GRUB on\n\
         # the serial console.\n\
         GRUB_CMDLINE_LINUX=\"{KERNEL_CMDLINE}\"\n\
         GRUB_CMDLINE_LINUX_DEFAULT=\"\"\n\
         GRUB_TIMEOUT=1\n\
         GRUB_TERMINAL=\"console serial\"\n\
         GRUB_SERIAL_COMMAND=\"serial --speed=115200\"\n\
         GRUB_DISABLE_OS_PROBER=true\n"
    );
    tree::write(
        &ctx.tree,
        "/etc/default/grub.d/zz-forge.cfg",
        cfg.as_bytes(),
        0o644,
    )
}

fn sysctl_baseline(ctx: &BuildContext) -> Result<()> {
    let mut text =
        String::from("# Set by forge: kernel network settings of the hardening baseline.\n");
    for (k, v) in SYSCTL_BASELINE {
        text.push_str(&format!("{k} = {v}\n"));
    }
    tree::write(
        &ctx.tree,
        "/etc/sysctl.d/zz-forge-baseline.conf",
        text.as_bytes(),
        0o644,
    )
}

fn file_modes(ctx: &BuildContext) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let group = tree::read(&ctx.tree, "/etc/group")?.unwrap_or_default();
    let shadow_gid = group
        .lines()
        .find_map(|l| {
            l.strip_prefix("shadow:x:")
                .and_then(|r| r.split(':').next())
        })
        .and_then(|g| g.parse::<u32>().ok())
        .unwrap_or(0);
    for path in ["/etc/shadow", "/etc/gshadow"] {
        let host = tree::resolve_all(&ctx.tree, path)?;
        if host.is_file() {
            fs::set_permissions(&host, fs::Permissions::from_mode(0o640))?;
            std::os::unix::fs::chown(&host, Some(0), Some(shadow_gid))?;
        }
    }
    Ok(())
}

/// Limits cloud-init to the Azure datasource, so it does not probe other
/// clouds' metadata addresses at boot.
fn cloud_init_azure(ctx: &BuildContext) -> Result<()> {
    if tree::resolve_all(&ctx.tree, "/etc/cloud")?.is_dir() {
        tree::write(
            &ctx.tree,
            "/etc/cloud/cloud.cfg.d/90-forge-azure.cfg",
            b"# Set by forge: provision from Azure only.\ndatasource_list: [ Azure ]\n",
            0o644,
        )?;
    }
    Ok(())
}

fn clean_caches(ctx: &BuildContext) -> Result<()> {
    remove_glob(&ctx.tree, "/var/cache/apt/archives", "")?;
    // dnf's and zypper's downloaded packages and metadata.
    for dir in [
        "/var/cache/dnf",
        "/var/cache/yum",
        "/var/cache/zypp/packages",
    ] {
        remove_glob(&ctx.tree, dir, "")?;
    }
    // apt's binary caches differ from build to build and apt rebuilds them
    // when they are missing.
    for cache in [
        "/var/cache/apt/pkgcache.bin",
        "/var/cache/apt/srcpkgcache.bin",
    ] {
        tree::remove(&ctx.tree, cache)?;
    }
    fs::create_dir_all(tree::resolve_all(&ctx.tree, "/var/cache/apt/archives")?.join("partial"))?;
    for dir in ["/tmp", "/var/tmp"] {
        remove_glob(&ctx.tree, dir, "")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Recipe;

    fn context() -> BuildContext {
        let recipe = Recipe::parse(
            "name = \"t\"\nversion = \"1\"\n[base]\ndistro = \"debian\"\n\
             release = \"bookworm\"\narch = \"x86_64\"\n",
            std::path::Path::new("/r.toml"),
        )
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let tree = work.path().to_path_buf();
        BuildContext {
            recipe,
            tree,
            cache_dir: "/nonexistent".into(),
            epoch: 1_700_000_000,
            lock: None,
            plan: Some(crate::build::bootstrap::Plan {
                release: "bookworm".into(),
                deb_arch: "amd64".into(),
                mirrors: crate::build::bootstrap::Mirrors {
                    main: "http://m/debian".into(),
                    security: "http://m/debian-security".into(),
                },
                mmdebstrap_options: Vec::new(),
                packages: Vec::new(),
                apt_options: Vec::new(),
            }),
            index_releases: Vec::new(),
            family: crate::check::rules::family::Family::Debian,
            packages: crate::build::packages::PackageManager {
                family: crate::check::rules::family::Family::Debian,
                local: false,
            },
            layers: Vec::new(),
            restore_mtimes: Vec::new(),
            _work: work,
        }
    }

    fn swap_file(size: usize) -> Vec<u8> {
        let mut data = vec![0u8; size];
        data[4086..4096].copy_from_slice(b"SWAPSPACE2");
        data
    }

    #[test]
    fn swap_file_at_top_level_removed() {
        let ctx = context();
        fs::write(ctx.tree.join("swapfile"), swap_file(65536)).unwrap();
        remove_swap(&ctx).unwrap();
        assert!(!ctx.tree.join("swapfile").exists());
    }

    #[test]
    fn nested_swap_file_removed() {
        let ctx = context();
        fs::create_dir_all(ctx.tree.join("var/lib")).unwrap();
        fs::write(ctx.tree.join("var/lib/swap"), swap_file(65536)).unwrap();
        remove_swap(&ctx).unwrap();
        assert!(!ctx.tree.join("var/lib/swap").exists());
    }

    #[test]
    fn histories_and_keys_removed() {
        let ctx = context();
        fs::create_dir_all(ctx.tree.join("root/.ssh")).unwrap();
        fs::create_dir_all(ctx.tree.join("home/u/.ssh")).unwrap();
        fs::write(ctx.tree.join("root/.bash_history"), "ls\n").unwrap();
        fs::write(
            ctx.tree.join("root/.ssh/authorized_keys"),
            "ssh-ed25519 A\n",
        )
        .unwrap();
        fs::write(
            ctx.tree.join("home/u/.ssh/known_hosts"),
            "h ssh-ed25519 A\n",
        )
        .unwrap();
        remove_user_files(&ctx).unwrap();
        assert!(!ctx.tree.join("root/.bash_history").exists());
        assert!(!ctx.tree.join("root/.ssh/authorized_keys").exists());
        assert!(!ctx.tree.join("home/u/.ssh/known_hosts").exists());
    }

    #[test]
    fn passwords_locked_markers_kept() {
        let ctx = context();
        fs::create_dir_all(ctx.tree.join("etc")).unwrap();
        fs::write(
            ctx.tree.join("etc/shadow"),
            "root:$6$salt$hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n\
             u:!$6$x$y:19000:0:99999:7:::\nv::19000:0:99999:7:::\n",
        )
        .unwrap();
        lock_accounts(&ctx).unwrap();
        let shadow = fs::read_to_string(ctx.tree.join("etc/shadow")).unwrap();
        assert!(shadow.contains("root:*:"));
        assert!(shadow.contains("daemon:*:"));
        assert!(shadow.contains("u:*:"));
        assert!(shadow.contains("v:*:"));
    }

    #[test]
    fn sshd_block_first_and_once() {
        let ctx = context();
        fs::create_dir_all(ctx.tree.join("etc/ssh")).unwrap();
        fs::write(
            ctx.tree.join("etc/ssh/sshd_config"),
            "ClientAliveInterval 60\n",
        )
        .unwrap();
        sshd_settings(&ctx).unwrap();
        sshd_settings(&ctx).unwrap();
        let text = fs::read_to_string(ctx.tree.join("etc/ssh/sshd_config")).unwrap();
        assert!(text.starts_with("# Set by forge"));
        assert_eq!(text.matches("ClientAliveInterval 180").count(), 1);
        assert!(text.contains("ClientAliveInterval 60"));
    }

    #[test]
    fn enforcing_selinux_without_setfiles_relabels_at_boot() {
        let ctx = context();
        fs::create_dir_all(ctx.tree.join("etc/selinux")).unwrap();
        fs::write(
            ctx.tree.join("etc/selinux/config"),
            "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
        )
        .unwrap();
        selinux_labels(&ctx).unwrap();
        assert!(ctx.tree.join(".autorelabel").exists());
    }

    #[test]
    fn disabled_selinux_needs_no_relabel() {
        let ctx = context();
        fs::create_dir_all(ctx.tree.join("etc/selinux")).unwrap();
        fs::write(ctx.tree.join("etc/selinux/config"), "SELINUX=disabled\n").unwrap();
        selinux_labels(&ctx).unwrap();
        assert!(!ctx.tree.join(".autorelabel").exists());
    }

    #[test]
    fn static_network_config_removed() {
        let ctx = context();
        fs::create_dir_all(ctx.tree.join("etc/network/interfaces.d")).unwrap();
        fs::create_dir_all(ctx.tree.join("etc/udev/rules.d")).unwrap();
        fs::write(
            ctx.tree.join("etc/network/interfaces.d/eth0"),
            "auto eth0\niface eth0 inet static\n address 10.0.0.5/24\n",
        )
        .unwrap();
        fs::write(
            ctx.tree.join("etc/udev/rules.d/70-persistent-net.rules"),
            "x\n",
        )
        .unwrap();
        fs::write(ctx.tree.join("etc/resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
        fs::create_dir_all(ctx.tree.join("usr/sbin")).unwrap();
        fs::write(ctx.tree.join("usr/sbin/ifup"), "").unwrap();
        network_defaults(&ctx).unwrap();
        assert!(!ctx.tree.join("etc/network/interfaces.d/eth0").exists());
        assert!(!ctx
            .tree
            .join("etc/udev/rules.d/70-persistent-net.rules")
            .exists());
        assert!(!ctx.tree.join("etc/resolv.conf").exists());
        let interfaces = fs::read_to_string(ctx.tree.join("etc/network/interfaces")).unwrap();
        assert!(interfaces.contains("iface eth0 inet dhcp"));
    }
}
