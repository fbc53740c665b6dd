//! Runs commands inside an image tree, in private mount and PID namespaces.
//!
//! The `/dev`, `/proc`, `/sys` and `/run` that a command sees are mounted
//! inside a new mount namespace, so they vanish with the last process in it:
//! no mount outlives a command, even when forge is killed. The PID namespace
//! ends every daemon a package script starts when the command ends.

use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::exec::Cmd;

/// Name of the hidden subcommand that sets up the mounts and runs argv.
pub const ENTER_SUBCOMMAND: &str = "internal-enter";

/// Environment every command inside the tree starts with.
const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("LANG", "C.UTF-8"),
    ("DEBIAN_FRONTEND", "noninteractive"),
    ("DEBCONF_NONINTERACTIVE_SEEN", "true"),
];

/// Starts a command line that runs the program after it in new mount and
/// PID namespaces: its mounts and processes end when it ends.
pub fn isolated() -> Cmd {
    Cmd::new("unshare").args([
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        "--",
    ])
}

/// Builds the command that runs `argv` inside `tree`.
///
/// `env` adds variables to the fixed environment; nothing else of forge's
/// environment reaches the command.
pub fn command(tree: &Path, argv: &[String], env: &[(String, String)]) -> Result<Cmd> {
    command_with_dev_links(tree, argv, env, &[])
}

/// Like [`command`], with extra symlinks in the command's private `/dev`
/// (name relative to `/dev`, target).
pub fn command_with_dev_links(
    tree: &Path,
    argv: &[String],
    env: &[(String, String)],
    dev_links: &[(String, String)],
) -> Result<Cmd> {
    let exe = std::env::current_exe().context("failed to find forge's own executable")?;
    let mut cmd = isolated().arg(exe).arg(ENTER_SUBCOMMAND).arg(tree);
    for (k, v) in env {
        cmd = cmd.arg("--env").arg(format!("{k}={v}"));
    }
    for (name, target) in dev_links {
        cmd = cmd.arg("--dev-link").arg(format!("{name}={target}"));
    }
    let shown: Vec<String> = argv.iter().map(|a| crate::exec::quote(a)).collect();
    Ok(cmd.arg("--").args(argv).label(shown.join(" ")))
}

/// Entry point of the hidden subcommand: mounts the API file systems under
/// `tree`, changes root and replaces this process with `argv`.
pub fn enter(tree: &Path, env: &[String], dev_links: &[String], argv: &[OsString]) -> Result<()> {
    if argv.is_empty() {
        bail!("no command given");
    }
    mount_api_filesystems(tree)?;
    bind_host_resolver(tree)?;
    for link in dev_links {
        let (name, target) = link
            .split_once('=')
            .context("--dev-link needs NAME=TARGET")?;
        if name.split('/').any(|c| c == "..") {
            bail!("--dev-link name {name:?} leaves /dev");
        }
        let path = tree.join("dev").join(name);
        std::fs::create_dir_all(path.parent().expect("path under /dev"))?;
        std::os::unix::fs::symlink(target, &path)?;
    }
    let root = cstring(tree.as_os_str())?;
    // SAFETY: chroot and chdir take valid NUL-terminated strings.
    unsafe {
        if libc::chroot(root.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("chroot to {} failed", tree.display()));
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error()).context("chdir to / failed");
        }
    }
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).env_clear();
    for (k, v) in BASE_ENV {
        cmd.env(k, v);
    }
    for kv in env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).with_context(|| format!("failed to run {:?} inside the image", argv[0]))
}

fn mount_api_filesystems(tree: &Path) -> Result<()> {
    let dev = tree.join("dev");
    mount(
        "tmpfs",
        &dev,
        "tmpfs",
        libc::MS_NOSUID,
        "mode=0755,size=16m",
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        mknod(&dev.join(name), major, minor)?;
    }
    std::fs::create_dir_all(dev.join("pts"))?;
    mount(
        "devpts",
        &dev.join("pts"),
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name))?;
    }
    std::fs::create_dir_all(dev.join("shm"))?;
    mount(
        "tmpfs",
        &dev.join("shm"),
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    )?;
    mount(
        "proc",
        &tree.join("proc"),
        "proc",
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )?;
    mount(
        "sysfs",
        &tree.join("sys"),
        "sysfs",
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        "",
    )?;
    mount(
        "tmpfs",
        &tree.join("run"),
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    )?;
    Ok(())
}

/// Shows the host's resolver file at the tree's `/etc/resolv.conf`, where
/// a symlink there points, so that package managers inside reach their
/// repositories by name. An image base's own file names the nameservers of
/// the network it was made in. The bind mount ends with the namespace and
/// leaves the tree's file as it was.
fn bind_host_resolver(tree: &Path) -> Result<()> {
    let host = Path::new("/etc/resolv.conf");
    if !host.is_file() {
        return Ok(());
    }
    let target = super::tree::resolve_all(tree, "/etc/resolv.conf")?;
    if !target.exists() {
        // A file is created only under the fresh /run, where a symlink such
        // as systemd-resolved's points; anywhere else it would stay in the
        // image.
        if !target.starts_with(tree.join("run")) {
            return Ok(());
        }
        let Some(parent) = target.parent() else {
            return Ok(());
        };
        if std::fs::create_dir_all(parent).is_err() || std::fs::write(&target, b"").is_err() {
            return Ok(());
        }
    }
    if !target.is_file() {
        return Ok(());
    }
    let source = cstring(host.as_os_str())?;
    let dest = cstring(target.as_os_str())?;
    // SAFETY: both are valid NUL-terminated paths; a bind mount takes no
    // file system type or data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            dest.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!("failed to show the host's resolver at {}", target.display())
        });
    }
    Ok(())
}

fn cstring(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).context("path contains a NUL byte")
}

fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<()> {
    std::fs::create_dir_all(target)
        .with_context(|| format!("failed to create {}", target.display()))?;
    let (src, tgt, fs, dat) = (
        cstring(OsStr::new(source))?,
        cstring(target.as_os_str())?,
        cstring(OsStr::new(fstype))?,
        cstring(OsStr::new(data))?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            flags,
            dat.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("failed to mount {fstype} on {}", target.display()));
    }
    Ok(())
}

fn mknod(path: &Path, major: u32, minor: u32) -> Result<()> {
    let p = cstring(path.as_os_str())?;
    // SAFETY: valid path string; makedev only combines numbers.
    let rc = unsafe {
        libc::mknod(
            p.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("failed to create device {}", path.display()));
    }
    // mknod is subject to the umask; device nodes must be world-usable.
    // SAFETY: valid path string.
    unsafe { libc::chmod(p.as_ptr(), 0o666) };
    Ok(())
}
