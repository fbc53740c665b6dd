//! Path helpers for image trees: symlink resolution inside the image,
//! shell-style globbing and prefix tests.

use anyhow::{bail, Result};

use crate::check::{FileKind, ImageView};

/// Maximum symlinks followed while resolving one path, as Linux allows.
const MAX_SYMLINKS: usize = 40;

/// Returns the parent folder of an absolute image path (`/` for `/x`).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Returns the last component of a path.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Joins `target` to the folder `dir`, then removes `.` and `..` parts.
/// An absolute `target` ignores `dir`, as a symlink target does.
pub fn join(dir: &str, target: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{dir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Returns whether `path` is `prefix` or lies below it.
pub fn is_under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Resolves every symlink in `path` inside the image, never leaving it.
///
/// Returns the final path when it exists and `None` when some component is
/// missing. Fails on a symlink loop.
pub fn resolve(fs: &dyn ImageView, path: &str) -> Result<Option<String>> {
    let mut pending: Vec<String> = join("/", path)
        .split('/')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .rev()
        .collect();
    let mut current = String::from("/");
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        let next = join(&current, &part);
        let Some(meta) = fs.lstat(&next)? else {
            return Ok(None);
        };
        if meta.kind != FileKind::Symlink {
            current = next;
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINKS {
            bail!("too many levels of symbolic links while resolving {path}");
        }
        let target = fs.read_link(&next)?.unwrap_or_default();
        if target.starts_with('/') {
            current = String::from("/");
        }
        pending.extend(
            target
                .split('/')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .rev(),
        );
    }
    Ok(Some(current))
}

/// Matches a file name against a shell pattern with `*`, `?` and `[...]`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob_from(&p, &n)
}

fn glob_from(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| glob_from(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && glob_from(&p[1..], &n[1..]),
        Some('[') => match (n.first(), bracket(&p[1..])) {
            (Some(&c), Some((set, negated, rest))) => {
                set_contains(&set, c) != negated && glob_from(rest, &n[1..])
            }
            (Some(&c), None) => c == '[' && glob_from(&p[1..], &n[1..]),
            (None, _) => false,
        },
        Some(&c) => n.first() == Some(&c) && glob_from(&p[1..], &n[1..]),
    }
}

/// Parses the inside of `[...]`: the characters, whether it is negated
/// with `!` or `^`, and the pattern after `]`.
fn bracket(p: &[char]) -> Option<(Vec<char>, bool, &[char])> {
    let negated = matches!(p.first(), Some('!' | '^'));
    let start = usize::from(negated);
    let end = p.iter().skip(start + 1).position(|&c| c == ']')? + start + 1;
    Some((p[start..end].to_vec(), negated, &p[end + 1..]))
}

fn set_contains(set: &[char], c: char) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if (set[i]..=set[i + 2]).contains(&c) {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// Expands a glob pattern of absolute image paths, sorted by path.
/// Every component may contain wildcards. A pattern without one returns
/// itself when it exists.
pub fn expand_glob(fs: &dyn ImageView, pattern: &str) -> Result<Vec<String>> {
    let mut matches = vec![String::from("/")];
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for dir in &matches {
            if !part.contains(['*', '?', '[']) {
                let candidate = join(dir, part);
                if fs.lstat(&candidate)?.is_some() {
                    next.push(candidate);
                }
                continue;
            }
            // As in glob(3), a path that is not a folder matches nothing
            // below it: RHEL's /etc/sysconfig/network is a file, SUSE's
            // a folder.
            let kind = fs.lstat(dir)?.map(|m| m.kind);
            if !matches!(kind, Some(FileKind::Dir | FileKind::Symlink)) {
                continue;
            }
            for name in fs.list_dir(dir)? {
                // As in glob(3), a wildcard does not match a leading dot.
                let hidden = name.starts_with('.') && !part.starts_with('.');
                if !hidden && glob_match(part, &name) {
                    next.push(join(dir, &name));
                }
            }
        }
        matches = next;
    }
    matches.sort();
    Ok(matches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::DirView;

    #[test]
    fn glob_below_a_file_matches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/sysconfig")).unwrap();
        std::fs::write(dir.path().join("etc/sysconfig/network"), "NETWORKING=yes\n").unwrap();
        let view = DirView::new(dir.path());
        let found = expand_glob(&view, "/etc/sysconfig/network/ifcfg-*").unwrap();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn join_normalizes() {
        assert_eq!(
            join("/etc/ssh", "sshd_config.d/a.conf"),
            "/etc/ssh/sshd_config.d/a.conf"
        );
        assert_eq!(join("/etc", "../run/x"), "/run/x");
        assert_eq!(join("/etc", "/lib/./a/../b"), "/lib/b");
        assert_eq!(join("/", ".."), "/");
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/etc/passwd"), "/etc");
        assert_eq!(parent("/etc"), "/");
        assert_eq!(file_name("/etc/passwd"), "passwd");
    }

    #[test]
    fn under_prefix() {
        assert!(is_under("/usr/lib/x", "/usr"));
        assert!(is_under("/usr", "/usr"));
        assert!(!is_under("/usrlocal", "/usr"));
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*.conf", "a.conf"));
        assert!(!glob_match("*.conf", "a.conf.bak"));
        assert!(glob_match("ssh_host_*", "ssh_host_rsa_key"));
        assert!(glob_match("ifcfg-?th0", "ifcfg-eth0"));
        assert!(glob_match("[0-9]*", "50-cloud.conf"));
        assert!(!glob_match("[!0-9]*", "50-cloud.conf"));
        assert!(glob_match(
            "*persistent-net*.rules",
            "70-persistent-net.rules"
        ));
    }

    #[test]
    fn resolve_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(root.join("lib/systemd")).unwrap();
        std::fs::write(root.join("lib/systemd/systemd"), b"x").unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", root.join("usr/sbin/init")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let fs = DirView::new(root);
        assert_eq!(
            resolve(&fs, "/sbin/init").unwrap().as_deref(),
            Some("/lib/systemd/systemd")
        );
        assert_eq!(resolve(&fs, "/sbin/missing").unwrap(), None);
        assert!(resolve(&fs, "/loop").is_err());
    }

    #[test]
    fn expand_glob_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/ssh/sshd_config.d")).unwrap();
        for name in ["b.conf", "a.conf", "c.txt"] {
            std::fs::write(root.join("etc/ssh/sshd_config.d").join(name), b"").unwrap();
        }
        let fs = DirView::new(root);
        let found = expand_glob(&fs, "/etc/ssh/sshd_config.d/*.conf").unwrap();
        assert_eq!(
            found,
            [
                "/etc/ssh/sshd_config.d/a.conf",
                "/etc/ssh/sshd_config.d/b.conf"
            ]
        );
        assert_eq!(expand_glob(&fs, "/etc/ssh").unwrap(), ["/etc/ssh"]);
        assert!(expand_glob(&fs, "/etc/nothing/*").unwrap().is_empty());
    }
}
