//! The package manager of the image's distribution family, and the
//! repository its layers install from.

use std::path::Path;

use anyhow::{bail, Context as _, Result};

use super::{chroot, tree, Context as BuildContext};
use crate::check::rules::family::Family;
use crate::exec::Cmd;

/// Where a folder of packages is copied inside the tree while layers run.
/// It is removed before the tree becomes the disk.
pub const LOCAL_REPO: &str = "/var/cache/forge-local-repo";
/// apt's source list and index folder for [`LOCAL_REPO`], inside it, so
/// that the image's own sources and indexes stay untouched.
const LOCAL_APT_LIST: &str = "/var/cache/forge-local-repo/forge.list";
const LOCAL_APT_LISTS_DIR: &str = "/var/cache/forge-local-repo/lists";

/// The commands a layer's packages are installed with.
#[derive(Clone, Debug)]
pub struct PackageManager {
    pub family: Family,
    /// Whether packages come from [`LOCAL_REPO`] only.
    pub local: bool,
}

impl PackageManager {
    /// The program the family installs packages with.
    pub fn program(&self) -> &'static str {
        match self.family {
            Family::Rhel => "dnf",
            Family::Suse => "zypper",
            Family::Debian | Family::Unknown => "apt-get",
        }
    }

    /// The command line up to the subcommand, with the repository options.
    fn prefix(&self) -> Vec<String> {
        let words: Vec<String> = match (self.family, self.local) {
            (Family::Rhel, false) => vec!["dnf".into(), "-y".into()],
            (Family::Rhel, true) => vec![
                "dnf".into(),
                "-y".into(),
                "--disablerepo=*".into(),
                format!("--repofrompath=forge-local,{LOCAL_REPO}"),
                "--setopt=forge-local.gpgcheck=0".into(),
            ],
            (Family::Suse, false) => vec!["zypper".into(), "--non-interactive".into()],
            (Family::Suse, true) => vec![
                "zypper".into(),
                "--non-interactive".into(),
                "--no-gpg-checks".into(),
                "--plus-repo".into(),
                format!("dir:{LOCAL_REPO}"),
            ],
            (_, false) => vec!["apt-get".into(), "-q".into()],
            (_, true) => vec![
                "apt-get".into(),
                "-q".into(),
                "-o".into(),
                format!("Dir::Etc::SourceList={LOCAL_APT_LIST}"),
                "-o".into(),
                "Dir::Etc::SourceParts=-".into(),
                "-o".into(),
                format!("Dir::State::Lists={LOCAL_APT_LISTS_DIR}"),
            ],
        };
        words
    }

    /// Command line that installs `packages`.
    pub fn install(&self, packages: &[String]) -> Vec<String> {
        let mut argv = self.prefix();
        match self.family {
            Family::Rhel => {
                argv.extend(["--setopt=install_weak_deps=False".into(), "install".into()])
            }
            Family::Suse => argv.extend(["install".into(), "--no-recommends".into()]),
            _ => argv.extend([
                "install".into(),
                "-y".into(),
                "--no-install-recommends".into(),
            ]),
        }
        argv.extend(packages.iter().cloned());
        argv
    }

    /// Command line that upgrades every installed package the repository
    /// has a newer version of.
    pub fn upgrade(&self) -> Vec<String> {
        let mut argv = self.prefix();
        match self.family {
            Family::Rhel => argv.push("upgrade".into()),
            Family::Suse => argv.push("update".into()),
            _ => argv.extend(["upgrade".into(), "-y".into()]),
        }
        argv
    }

    /// Command line that reads the repository's indexes before the first
    /// install, where the family needs one.
    pub fn refresh(&self) -> Option<Vec<String>> {
        match self.family {
            Family::Debian | Family::Unknown => {
                let mut argv = self.prefix();
                argv.push("update".into());
                Some(argv)
            }
            Family::Rhel | Family::Suse => None,
        }
    }

    /// Explains a failed package command.
    pub fn failure_hint(&self) -> String {
        if self.local {
            format!(
                "{} could not install from the recipe's `repository` folder; check that it \
                 holds the packages and their missing dependencies",
                self.program()
            )
        } else {
            format!(
                "{} could not install from the image's own repositories, which this machine \
                 may not reach (see the messages above); set `repository` in [base] to a \
                 folder of packages",
                self.program()
            )
        }
    }

    /// Checks that the tree has the package manager.
    pub fn check_present(&self, t: &Path) -> Result<()> {
        let program = self.program();
        let found = ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .any(|dir| tree::resolve_all(t, &format!("{dir}/{program}")).is_ok_and(|p| p.exists()));
        if !found {
            bail!(
                "the image has no {program}, which installs packages on its distribution \
                 family ({}); layers with `packages` cannot be applied",
                self.family.as_str()
            );
        }
        Ok(())
    }
}

/// Copies the folder of packages into the tree at [`LOCAL_REPO`] and makes
/// the family's package manager read it: an apt index for Debian, which
/// forge writes; dnf and zypper need the folder's own `repodata`.
pub fn add_local_repo(ctx: &BuildContext, family: Family, folder: &Path) -> Result<()> {
    if family.uses_rpm() && !folder.join("repodata").is_dir() {
        bail!(
            "repository folder {} has no repodata/; run `createrepo_c {}` on it first",
            folder.display(),
            folder.display()
        );
    }
    let dest = tree::resolve_all(&ctx.tree, LOCAL_REPO)?;
    if dest.exists() {
        std::fs::remove_dir_all(&dest)?;
    }
    std::fs::create_dir_all(&dest)?;
    Cmd::new("cp")
        .args(["-R", "--no-preserve=ownership", "-L", "-T"])
        .arg(folder)
        .arg(&dest)
        .run()
        .with_context(|| format!("failed to copy repository folder {}", folder.display()))?;
    if family == Family::Debian {
        // File names in the index are relative to the folder, as apt
        // expects for a flat repository.
        let index = Cmd::new("sh")
            .args([
                "-c",
                "cd \"$1\" && apt-ftparchive packages .",
                "forge-index",
            ])
            .arg(&dest)
            .label("apt-ftparchive packages")
            .run()
            .context("failed to index the repository folder with apt-ftparchive")?
            .stdout;
        if index.is_empty() {
            bail!("repository folder {} holds no .deb files", folder.display());
        }
        std::fs::write(dest.join("Packages"), index)?;
        std::fs::create_dir_all(dest.join("lists/partial"))?;
        tree::write(
            &ctx.tree,
            LOCAL_APT_LIST,
            format!("deb [trusted=yes] file:{LOCAL_REPO} ./\n").as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}

/// Removes the copied repository folder from the tree.
pub fn remove_local_repo(ctx: &BuildContext) -> Result<()> {
    let dest = tree::resolve_all(&ctx.tree, LOCAL_REPO)?;
    if dest.is_dir() {
        std::fs::remove_dir_all(&dest)
            .with_context(|| format!("failed to remove {LOCAL_REPO} from the tree"))?;
    }
    Ok(())
}

/// Runs `argv` inside the tree.
pub fn run_in_tree(ctx: &BuildContext, argv: Vec<String>) -> Result<()> {
    chroot::command(&ctx.tree, &argv, &ctx.chroot_env())?.run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_from_a_folder_reads_only_the_folder() {
        let pm = PackageManager {
            family: Family::Debian,
            local: true,
        };
        let argv = pm.install(&["nginx".into()]);
        assert_eq!(argv[0], "apt-get");
        assert!(argv.contains(&format!("Dir::Etc::SourceList={LOCAL_APT_LIST}")));
        assert!(argv.contains(&"Dir::Etc::SourceParts=-".to_string()));
        assert_eq!(argv.last().unwrap(), "nginx");
    }

    #[test]
    fn each_family_uses_its_own_tool() {
        for (family, program, sub) in [
            (Family::Debian, "apt-get", "install"),
            (Family::Rhel, "dnf", "install"),
            (Family::Suse, "zypper", "install"),
        ] {
            let pm = PackageManager {
                family,
                local: false,
            };
            let argv = pm.install(&["x".into()]);
            assert_eq!(argv[0], program);
            assert!(argv.contains(&sub.to_string()));
        }
        let dnf = PackageManager {
            family: Family::Rhel,
            local: true,
        };
        assert!(dnf
            .upgrade()
            .contains(&format!("--repofrompath=forge-local,{LOCAL_REPO}")));
        assert!(dnf.refresh().is_none());
    }
}
