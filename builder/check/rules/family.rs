//! The distribution family of an image tree, read from os-release, so
//! that rules look for each family's own files and packages.

use anyhow::Result;

use super::paths;
use crate::check::{ImageView, OsInfo};

/// os-release locations, in the order that os-release(5) gives for reading them.
const OS_RELEASE_FILES: &[&str] = &["/etc/os-release", "/usr/lib/os-release"];

/// A group of distributions that share package format and file layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Debian and Ubuntu: dpkg, ifupdown or netplan.
    Debian,
    /// Fedora, RHEL, CentOS, AlmaLinux, Rocky Linux and Oracle Linux: rpm,
    /// network-scripts or NetworkManager, GRUB with BLS entries.
    Rhel,
    /// SLES and openSUSE: rpm, /etc/sysconfig/network, wicked.
    Suse,
    Unknown,
}

impl Family {
    /// Returns the family name used in evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Debian => "debian",
            Family::Rhel => "rhel",
            Family::Suse => "suse",
            Family::Unknown => "unknown",
        }
    }

    /// Returns whether the family installs packages with rpm.
    pub fn uses_rpm(self) -> bool {
        matches!(self, Family::Rhel | Family::Suse)
    }
}

/// Classifies one os-release `ID` or `ID_LIKE` word, or a distribution
/// name that libguestfs inspection reports (`oraclelinux`, `redhat-based`).
pub fn family_of_id(id: &str) -> Family {
    match id {
        "debian" | "ubuntu" | "linuxmint" => Family::Debian,
        "rhel" | "fedora" | "centos" | "almalinux" | "rocky" | "ol" | "oraclelinux"
        | "redhat-based" | "scientificlinux" | "circle" => Family::Rhel,
        "suse" | "sles" | "sled" | "suse-based" => Family::Suse,
        id if id.starts_with("opensuse") => Family::Suse,
        _ => Family::Unknown,
    }
}

/// The `ID` and `ID_LIKE` words of an os-release file, quotes removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
}

/// Parses the `ID` and `ID_LIKE` assignments of an os-release file.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut release = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(['"', '\'']);
        match key.trim() {
            "ID" => release.id = value.to_ascii_lowercase(),
            "ID_LIKE" => {
                release.id_like = value
                    .split_whitespace()
                    .map(str::to_ascii_lowercase)
                    .collect();
            }
            _ => {}
        }
    }
    release
}

impl OsRelease {
    /// Returns the family of `ID`, else of the first `ID_LIKE` word that
    /// names a known family.
    pub fn family(&self) -> Family {
        std::iter::once(&self.id)
            .chain(&self.id_like)
            .map(|id| family_of_id(id))
            .find(|f| *f != Family::Unknown)
            .unwrap_or(Family::Unknown)
    }
}

/// Returns the family of the image: from its os-release file, or from the
/// distribution that libguestfs reported when os-release names none.
pub fn detect(fs: &dyn ImageView, os: &OsInfo) -> Result<Family> {
    for file in OS_RELEASE_FILES {
        let Some(real) = paths::resolve(fs, file)? else {
            continue;
        };
        if let Some(text) = fs.read_text(&real)? {
            let family = parse_os_release(&text).family();
            if family != Family::Unknown {
                return Ok(family);
            }
            break;
        }
    }
    Ok(family_of_id(&os.family))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(text: &str) -> Family {
        parse_os_release(text).family()
    }

    #[test]
    fn rhel_family_ids() {
        assert_eq!(family("ID=\"rhel\"\nID_LIKE=\"fedora\"\n"), Family::Rhel);
        assert_eq!(family("ID=fedora\n"), Family::Rhel);
        assert_eq!(family("ID=\"ol\"\nID_LIKE=\"fedora\"\n"), Family::Rhel);
        assert_eq!(
            family("ID=\"almalinux\"\nID_LIKE=\"rhel centos fedora\"\n"),
            Family::Rhel
        );
        assert_eq!(
            family("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n"),
            Family::Rhel
        );
        assert_eq!(
            family("ID=\"centos\"\nID_LIKE=\"rhel fedora\"\n"),
            Family::Rhel
        );
    }

    #[test]
    fn suse_family_ids() {
        assert_eq!(family("ID=\"sles\"\nID_LIKE=\"suse\"\n"), Family::Suse);
        assert_eq!(
            family("ID=\"opensuse-leap\"\nID_LIKE=\"suse opensuse\"\n"),
            Family::Suse
        );
        assert_eq!(family("ID=opensuse-tumbleweed\n"), Family::Suse);
    }

    #[test]
    fn debian_family_and_derivatives() {
        assert_eq!(family("ID=debian\n"), Family::Debian);
        assert_eq!(family("ID=ubuntu\nID_LIKE=debian\n"), Family::Debian);
        assert_eq!(
            family("ID=pop\nID_LIKE=\"ubuntu debian\"\n"),
            Family::Debian
        );
        assert_eq!(family("ID=arch\n"), Family::Unknown);
    }

    #[test]
    fn libguestfs_names_classified() {
        assert_eq!(family_of_id("oraclelinux"), Family::Rhel);
        assert_eq!(family_of_id("redhat-based"), Family::Rhel);
        assert_eq!(family_of_id("opensuse"), Family::Suse);
        assert_eq!(family_of_id("windows"), Family::Unknown);
    }
}
