//! Builds that start from an existing cloud image. The dirty Debian image
//! of `tests/support/make-dirty-debian.sh` has LVM, a separate `/boot` and
//! `/var`, a swap partition, and the state a used VM leaves behind. The
//! RHEL-shaped image of `tests/support/make-rhel-shaped.sh` has BLS
//! entries, `grubenv` with `kernelopts`, ifcfg files and an XFS root.
//!
//! Run with `cargo test --release`. The dirty image and its build with the
//! nginx layer are made once per run and shared by the tests that read
//! them. Outputs go to `target/e2e-image-base/`, emptied by the first test.
//!
//! A missing tool, or a user other than root, skips these tests unless `CI`
//! is set, in which case they fail.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use forge::check::{self, DirView, ImageView, OsInfo, Status};
use forge::direct::{DirectImage, Opened};
use support::boot::{boot_to_login, Firmware};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Tools of the image scripts, the build, the check and the boot test.
const TOOLS: &[&str] = &[
    "mmdebstrap",
    "guestfish",
    "unshare",
    "sgdisk",
    "mkfs.fat",
    "mcopy",
    "mkfs.ext4",
    "debugfs",
    "supermin",
    "qemu-img",
    "qemu-system-x86_64",
    "apt-ftparchive",
    "dpkg-deb",
];

/// Time allowed for the boot to the login prompt under TCG.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The part of the nginx example recipe that makes the product.
const NGINX_LAYER: &str = "\
[[layer]]
name = \"nginx\"
packages = [\"nginx\"]
overlay = \"{REPO}/overlays/nginx-site\"
run = [[\"rm\", \"-f\", \"/etc/nginx/sites-enabled/default\"]]
enable = [\"nginx.service\"]
";

fn prerequisites_met() -> bool {
    static MET: OnceLock<bool> = OnceLock::new();
    *MET.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let ci = std::env::var("CI").unwrap_or_default();
            assert!(
                ci.is_empty() || ci == "false",
                "CI is set and these tests need root"
            );
            eprintln!("skipping: building from an image needs root");
            return false;
        }
        if !support::tools_present(TOOLS) {
            return false;
        }
        support::select_libguestfs_accel();
        true
    })
}

/// Returns `target/e2e-image-base`, emptied on the first call of this run.
fn run_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is inside the target folder");
        let root = target.join("e2e-image-base");
        if root.exists() {
            fs::remove_dir_all(&root).unwrap();
        }
        fs::create_dir_all(&root).unwrap();
        root
    })
}

fn case_dir(case: &str) -> PathBuf {
    let dir = run_root().join(case);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn cache_dir() -> PathBuf {
    std::env::var_os("FORGE_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/forge"))
}

/// Runs one of the image scripts of `tests/support` and returns the image.
fn make_image(script: &str, name: &str) -> PathBuf {
    let image = run_root().join(name);
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(Path::new(REPO).join("tests/support").join(script))
        .arg(&image)
        .stdin(Stdio::null())
        .output()
        .expect("failed to start bash");
    eprintln!("{script} took {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "{script} failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    image
}

/// Returns the dirty Debian image, made once per run. `FORGE_TEST_DIRTY_IMAGE`
/// names one made before, which saves the script's three minutes.
fn dirty_image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| match std::env::var_os("FORGE_TEST_DIRTY_IMAGE") {
        Some(path) => PathBuf::from(path),
        None => make_image("make-dirty-debian.sh", "dirty-debian.qcow2"),
    })
}

fn rhel_image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| make_image("make-rhel-shaped.sh", "rhel-shaped.qcow2"))
}

/// Writes a recipe on an image base into `dir`. `base_extra` adds lines to
/// `[base]`.
fn write_recipe(
    dir: &Path,
    name: &str,
    image: &Path,
    sha256: &str,
    base_extra: &str,
    size: &str,
    layers: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\nversion = \"1.0.0\"\n\n[base]\nimage = \"{}\"\nsha256 = \"{sha256}\"\n\
         {base_extra}\n[disk]\nsize = \"{size}\"\n\n{layers}",
        image.display()
    );
    fs::write(&path, text).unwrap();
    path
}

/// One finished `forge build`.
struct Build {
    code: Option<i32>,
    stderr: String,
    vhd: PathBuf,
}

impl Build {
    fn assert_succeeded(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "forge build failed; stderr:\n{}",
            self.stderr
        );
    }
}

fn run_build(recipe: &Path, out: &Path, stem: &str) -> Build {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache_dir())
        .stdin(Stdio::null())
        .output()
        .expect("failed to start the forge binary");
    eprintln!(
        "forge build {} took {:.1} s",
        recipe.display(),
        started.elapsed().as_secs_f64()
    );
    Build {
        code: output.status.code(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        vhd: out.join(format!("{stem}.vhd")),
    }
}

/// Builds the dirty Debian image with the nginx layer of the example recipe,
/// once per run.
fn dirty_build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        let image = dirty_image();
        let dir = case_dir("dirty-nginx");
        let layers = NGINX_LAYER.replace("{REPO}", REPO);
        let sha = support::sha256_file(image);
        let recipe = write_recipe(&dir, "dirty-nginx", image, &sha, "", "4GiB", &layers);
        run_build(&recipe, &dir.join("out"), "dirty-nginx-1.0.0")
    })
}

/// Opens the built dirty image with the direct reader.
fn built() -> Box<DirectImage> {
    let build = dirty_build();
    build.assert_succeeded();
    match DirectImage::open(&build.vhd).unwrap_or_else(|e| panic!("{e:#}")) {
        Opened::Image(image) => image,
        Opened::Declined(reason) => panic!("the direct reader declined the build: {reason}"),
    }
}

fn read_text(image: &DirectImage, path: &str) -> Option<String> {
    let view = image.view().expect("the built image has an OS");
    view.read(path)
        .unwrap_or_else(|e| panic!("failed to read {path}: {e:#}"))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

fn exists(image: &DirectImage, path: &str) -> bool {
    let view = image.view().expect("the built image has an OS");
    view.lstat(path)
        .unwrap_or_else(|e| panic!("failed to stat {path}: {e:#}"))
        .is_some()
}

/// Runs one debugfs request on the root file system of the built image.
fn debugfs(request: &str) -> String {
    let build = dirty_build();
    build.assert_succeeded();
    let info = Command::new("sgdisk")
        .arg("--info=1")
        .arg(&build.vhd)
        .output()
        .expect("failed to run sgdisk");
    let info = String::from_utf8_lossy(&info.stdout);
    let first: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("First sector: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no first sector of partition 1 in:\n{info}"));
    let output = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(format!("{}?offset={}", build.vhd.display(), first * 512))
        .output()
        .expect("failed to run debugfs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes a ClamAV database with one signature that matches nothing in the
/// image, so that the malware scan runs.
fn clamav_db(dir: &Path) -> PathBuf {
    let db = dir.join("clamav-db");
    fs::create_dir_all(&db).unwrap();
    let payload = b"forge test signature that no image file contains\n";
    let digest = {
        use sha2::{Digest, Sha256};
        forge::build::output::hex(&Sha256::digest(payload))
    };
    fs::write(
        db.join("forge-test.hsb"),
        format!("{digest}:{}:Forge.Test.Nothing\n", payload.len()),
    )
    .unwrap();
    db
}

fn check_json(image: &Path, args: &[&std::ffi::OsStr]) -> (Option<i32>, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["check", "--format", "json"])
        .args(args)
        .arg(image)
        .env("FORGE_CACHE_DIR", cache_dir())
        .stdin(Stdio::null())
        .output()
        .expect("failed to start the forge binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("forge check printed no JSON ({e}); stderr:\n{stderr}"));
    (output.status.code(), report)
}

fn rules_with_status(report: &serde_json::Value, status: &str) -> Vec<String> {
    report["rules"]
        .as_array()
        .expect("report has a `rules` array")
        .iter()
        .filter(|r| r["status"] == status)
        .map(|r| r["id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

// The build and its verdict.

#[test]
fn dirty_image_with_nginx_passes_check() {
    if !prerequisites_met() || !support::tools_present(&["clamscan"]) {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let db = clamav_db(&case_dir("dirty-check"));
    let (code, report) = check_json(
        &build.vhd,
        &[std::ffi::OsStr::new("--clamav-db"), db.as_os_str()],
    );
    assert_eq!(
        rules_with_status(&report, "fail"),
        Vec::<String>::new(),
        "report: {report:#}"
    );
    assert_eq!(rules_with_status(&report, "not-run"), Vec::<String>::new());
    assert_eq!(report["verdict"], "compliant");
    assert_eq!(code, Some(0));
}

#[test]
fn dirty_image_with_nginx_boots_to_login() {
    if !prerequisites_met() {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let started = Instant::now();
    let log = boot_to_login(&build.vhd, Firmware::Bios, BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the boot failed: {e:#}"));
    eprintln!("boot took {:.1} s", started.elapsed().as_secs_f64());
    assert!(log.contains("login:"), "no login prompt in:\n{log}");
}

#[test]
fn layer_and_agent_are_installed() {
    if !prerequisites_met() {
        return;
    }
    let image = built();
    assert!(exists(&image, "/usr/sbin/nginx"), "nginx is missing");
    // The dirty image has no agent; forge installs the family's package.
    assert!(exists(&image, "/usr/sbin/waagent"), "the agent is missing");
    assert!(!exists(&image, "/etc/nginx/sites-enabled/default"));
}

// The layout: forge's, whatever the source's was.

#[test]
fn lvm_and_swap_partition_do_not_survive() {
    if !prerequisites_met() {
        return;
    }
    let image = built();
    let disk = image.disk();
    assert_eq!(
        disk.partitions.len(),
        3,
        "expected BIOS boot, ESP and root: {:?}",
        disk.partitions
    );
    assert!(disk.lvm_pvs.is_empty(), "LVM left: {:?}", disk.lvm_pvs);
    let fstab = read_text(&image, "/etc/fstab").unwrap();
    assert!(!fstab.contains("swap"), "fstab: {fstab}");
    assert!(!fstab.contains("/dev/mapper"), "fstab: {fstab}");
    let resume = read_text(&image, "/etc/initramfs-tools/conf.d/resume").unwrap_or_default();
    assert!(resume.contains("RESUME=none"), "resume: {resume}");
}

#[test]
fn boot_and_var_merge_into_root() {
    if !prerequisites_met() {
        return;
    }
    let image = built();
    let view = image.view().unwrap();
    let kernels: Vec<String> = view
        .list_dir("/boot")
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("vmlinuz-"))
        .collect();
    assert!(!kernels.is_empty(), "no kernel in /boot");
    assert!(exists(&image, "/var/lib/dpkg/status"));
    assert!(exists(&image, "/var/lib/forge-fixtures/hardlink-a"));
}

// Every dirty item of the source, one test each.

#[test]
fn root_shell_history_is_gone() {
    if !prerequisites_met() {
        return;
    }
    assert!(!exists(&built(), "/root/.bash_history"));
}

#[test]
fn user_shell_history_is_gone() {
    if !prerequisites_met() {
        return;
    }
    let image = built();
    assert!(exists(&image, "/home/alice"), "the user's home is kept");
    assert!(!exists(&image, "/home/alice/.bash_history"));
}

#[test]
fn ssh_host_keys_are_gone() {
    if !prerequisites_met() {
        return;
    }
    let image = built();
    let left: Vec<String> = image
        .view()
        .unwrap()
        .list_dir("/etc/ssh")
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    assert!(left.is_empty(), "host keys left: {left:?}");
}

#[test]
fn authorized_keys_are_gone() {
    if !prerequisites_met() {
        return;
    }
    let image = built();
    assert!(!exists(&image, "/root/.ssh/authorized_keys"));
    assert!(!exists(&image, "/home/alice/.ssh/authorized_keys"));
}

#[test]
fn resolv_conf_nameservers_are_gone() {
    if !prerequisites_met() {
        return;
    }
    let text = read_text(&built(), "/etc/resolv.conf").unwrap_or_default();
    assert!(!text.contains("192.0.2.53"), "resolv.conf: {text}");
}

#[test]
fn static_interface_file_is_gone() {
    if !prerequisites_met() {
        return;
    }
    let image = built();
    assert!(!exists(&image, "/etc/network/interfaces.d/eth0"));
    let interfaces = read_text(&image, "/etc/network/interfaces").unwrap();
    assert!(interfaces.contains("iface eth0 inet dhcp"), "{interfaces}");
    assert!(!interfaces.contains("192.0.2.10"), "{interfaces}");
}

#[test]
fn persistent_net_rule_is_gone() {
    if !prerequisites_met() {
        return;
    }
    assert!(!exists(
        &built(),
        "/etc/udev/rules.d/70-persistent-net.rules"
    ));
}

#[test]
fn root_password_is_gone() {
    if !prerequisites_met() {
        return;
    }
    let shadow = read_text(&built(), "/etc/shadow").unwrap();
    for user in ["root", "alice"] {
        let field = shadow
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{user}:")))
            .and_then(|rest| rest.split(':').next())
            .unwrap_or_else(|| panic!("no {user} in shadow"));
        assert!(
            forge::build::harden::LOCK_MARKERS.contains(&field),
            "{user} still has a password: {field}"
        );
    }
}

// What the copy keeps: one test per property.

#[test]
fn owners_and_modes_survive() {
    if !prerequisites_met() {
        return;
    }
    let owned = debugfs("stat /opt/forge-fixtures/owned");
    assert!(owned.contains("User:  1234"), "{owned}");
    assert!(owned.contains("Group:  5678"), "{owned}");
    assert!(owned.contains("Mode:  0640"), "{owned}");
    let setuid = debugfs("stat /opt/forge-fixtures/setuid");
    assert!(setuid.contains("Mode:  04755"), "{setuid}");
    let sticky = debugfs("stat /opt/forge-fixtures/sticky");
    assert!(sticky.contains("Mode:  01777"), "{sticky}");
}

#[test]
fn extended_attributes_survive() {
    if !prerequisites_met() {
        return;
    }
    let root = debugfs("ea_get /opt/forge-fixtures/xattr user.forge.test");
    assert!(root.contains("kept"), "{root}");
    let var = debugfs("ea_get /var/lib/forge-fixtures/xattr user.forge.test");
    assert!(var.contains("kept-var"), "{var}");
}

#[test]
fn selinux_label_survives() {
    if !prerequisites_met() {
        return;
    }
    let label = debugfs("ea_get /opt/forge-fixtures/selinux security.selinux");
    assert!(
        label.contains("system_u:object_r:httpd_sys_content_t:s0"),
        "{label}"
    );
}

#[test]
fn acls_survive() {
    if !prerequisites_met() {
        return;
    }
    // ext4's ACL entries: tag 2 (a named user), permissions 6 (rw-), and
    // the user id 1234 (0x04d2), little-endian.
    let access = debugfs("ea_list /opt/forge-fixtures/acl");
    assert!(access.contains("system.posix_acl_access"), "{access}");
    assert!(access.contains("02 00 06 00 d2 04 00 00"), "{access}");
    let default = debugfs("ea_list /opt/forge-fixtures/acl-dir");
    assert!(default.contains("system.posix_acl_default"), "{default}");
    assert!(default.contains("02 00 05 00 d2 04 00 00"), "{default}");
}

#[test]
fn hard_links_survive() {
    if !prerequisites_met() {
        return;
    }
    for dir in ["/opt/forge-fixtures", "/var/lib/forge-fixtures"] {
        let a = debugfs(&format!("stat {dir}/hardlink-a"));
        let b = debugfs(&format!("stat {dir}/hardlink-b"));
        let inode = |s: &str| {
            s.split_whitespace()
                .skip_while(|w| *w != "Inode:")
                .nth(1)
                .map(str::to_owned)
        };
        assert!(inode(&a).is_some(), "{a}");
        assert_eq!(inode(&a), inode(&b), "{dir}: two inodes");
        assert!(a.contains("Links: 2"), "{a}");
    }
}

#[test]
fn sparse_file_stays_sparse() {
    if !prerequisites_met() {
        return;
    }
    let stat = debugfs("stat /opt/forge-fixtures/sparse");
    assert!(stat.contains("Size: 67108864"), "{stat}");
    let blocks: u64 = stat
        .split_whitespace()
        .skip_while(|w| *w != "Blockcount:")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no block count in:\n{stat}"));
    // 64 MiB would be 131072 sectors; one data block is 8.
    assert!(blocks <= 64, "{blocks} sectors allocated:\n{stat}");
    let data = debugfs("dump_extents /opt/forge-fixtures/sparse");
    assert!(!data.is_empty());
}

#[test]
fn file_capabilities_survive() {
    if !prerequisites_met() {
        return;
    }
    // vfs_cap_data revision 2 with the effective flag, then the permitted
    // mask: CAP_NET_RAW is bit 13 (0x2000).
    let caps = debugfs("ea_list /opt/forge-fixtures/caps");
    assert!(
        caps.contains("security.capability (20) = 01 00 00 02 00 20 00 00"),
        "{caps}"
    );
}

// Recipe errors and package sources.

#[test]
fn pin_mismatch_stops_the_build_before_anything_runs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let dir = case_dir("pin-mismatch");
    let image = dir.join("base.qcow2");
    fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    let wrong = "0".repeat(64);
    let recipe = write_recipe(&dir, "pinned", &image, &wrong, "", "2GiB", "");
    let started = Instant::now();
    let out = dir.join("out");
    let build = run_build(&recipe, &out, "pinned-1.0.0");
    assert_ne!(build.code, Some(0));
    assert!(build.stderr.contains("pins"), "{}", build.stderr);
    assert!(
        build.stderr.contains(&image.display().to_string()),
        "{}",
        build.stderr
    );
    // Nothing ran: no step line, no output.
    assert!(!build.stderr.contains("[1/"), "{}", build.stderr);
    assert!(fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()));
    eprintln!("refused in {:.2} s", started.elapsed().as_secs_f64());
}

/// Builds a `.deb` with one file, for the local repository.
fn make_deb(dir: &Path, name: &str) {
    let root = dir.join(format!("{name}-root"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: forge tests \
             <tests@localhost>\nDescription: test package of forge's local repository\n"
        ),
    )
    .unwrap();
    fs::write(root.join(format!("usr/share/{name}/hello")), "hello\n").unwrap();
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(dir.join("repo").join(format!("{name}_1.0_all.deb")))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn local_repository_folder_supplies_the_packages() {
    if !prerequisites_met() {
        return;
    }
    let dir = case_dir("local-repo");
    let repo = dir.join("repo");
    fs::create_dir_all(&repo).unwrap();
    make_deb(&dir, "forge-hello");
    // The agent, pyasn1, and what they need beyond the image, from
    // Debian's mirror.
    let status = Command::new("apt-get")
        .args([
            "download",
            "-q",
            "waagent",
            "python3-distro",
            "python3-pkg-resources",
            "python3-pyasn1",
        ])
        .current_dir(&repo)
        .status()
        .unwrap();
    assert!(status.success(), "apt-get download failed");
    let image = dirty_image();
    let sha = support::sha256_file(image);
    let layers = "[[layer]]\nname = \"hello\"\npackages = [\"forge-hello\"]\n";
    let recipe = write_recipe(
        &dir,
        "local-repo",
        image,
        &sha,
        "repository = \"repo\"",
        "3GiB",
        layers,
    );
    let build = run_build(&recipe, &dir.join("out"), "local-repo-1.0.0");
    build.assert_succeeded();
    assert!(
        build.stderr.contains("[2/8] prepare the base image: done"),
        "{}",
        build.stderr
    );
    let image = match DirectImage::open(&build.vhd).unwrap() {
        Opened::Image(image) => image,
        Opened::Declined(reason) => panic!("{reason}"),
    };
    assert!(exists(&image, "/usr/share/forge-hello/hello"));
    assert!(exists(&image, "/usr/sbin/waagent"));
    // The copied folder and its source list are gone.
    assert!(!exists(&image, forge::build::packages::LOCAL_REPO));
}

#[test]
fn unreachable_repository_fails_with_a_clear_message() {
    if !prerequisites_met() {
        return;
    }
    let dir = case_dir("unreachable");
    let image = dirty_image();
    let sha = support::sha256_file(image);
    // The first layer points apt at a closed port on loopback; the second
    // needs a package from there.
    let layers = "\
[[layer]]
name = \"offline\"
run = [[\"sh\", \"-c\", \"echo 'deb http://127.0.0.1:9/debian bookworm main' > /etc/apt/sources.list && rm -f /etc/apt/sources.list.d/*\"]]

[[layer]]
name = \"needs-network\"
packages = [\"hello\"]
";
    let recipe = write_recipe(&dir, "unreachable", image, &sha, "", "3GiB", layers);
    let out = dir.join("out");
    let build = run_build(&recipe, &out, "unreachable-1.0.0");
    assert_ne!(build.code, Some(0));
    assert!(
        build
            .stderr
            .contains("could not install from the image's own repositories"),
        "{}",
        build.stderr
    );
    assert!(build.stderr.contains("needs-network"), "{}", build.stderr);
    assert!(!build.vhd.exists());
}

// The RHEL-shaped image.

#[test]
fn check_reads_the_rhel_shaped_source() {
    if !prerequisites_met() {
        return;
    }
    let (code, report) = check_json(rhel_image(), &[]);
    assert_eq!(code, Some(1));
    let failed = rules_with_status(&report, "fail");
    for rule in ["kernel-cmdline", "no-custom-network-config"] {
        assert!(
            failed.contains(&rule.to_owned()),
            "{rule} passed: {report:#}"
        );
    }
    let evidence = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "kernel-cmdline")
        .and_then(|r| r["evidence"].as_str())
        .unwrap()
        .to_owned();
    assert!(evidence.contains("/boot/loader/entries/"), "{evidence}");
}

#[test]
fn rhel_tree_gets_azure_boot_and_network() {
    if !prerequisites_met() {
        return;
    }
    use forge::build::{disk, harden, import, Context};
    let image = rhel_image();
    let dir = case_dir("rhel-shaped");
    let sha = support::sha256_file(image);
    let recipe_path = write_recipe(&dir, "rhel-shaped", image, &sha, "", "4GiB", "");
    let recipe = forge::recipe::Recipe::load(&recipe_path).unwrap();
    let forge::recipe::Base::Image(base) = &recipe.base else {
        panic!("not an image base");
    };
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).unwrap();
    import::copy_tree(base, &tree).unwrap();
    let family = import::detect_family(&tree).unwrap();
    assert_eq!(family.as_str(), "rhel");
    let ctx = Context::for_tree(recipe.clone(), tree.clone(), family, 1_700_000_000).unwrap();
    harden::run(&ctx).unwrap();
    let ids = disk::DiskIds::derive(&recipe.artifact_stem());
    disk::write_boot_config(&ctx, &ids).unwrap();
    harden::selinux_labels(&ctx).unwrap();
    // The source enforces SELinux and the tree has no setfiles, so the
    // first boot relabels what forge wrote.
    assert!(tree.join(".autorelabel").exists());

    let expected = format!(
        "root=UUID={} ro {}",
        ids.root_fs_uuid,
        harden::KERNEL_CMDLINE
    );
    let entries = tree.join("boot/loader/entries");
    let mut seen = 0;
    for entry in fs::read_dir(&entries).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        let options: Vec<&str> = text.lines().filter(|l| l.starts_with("options")).collect();
        assert_eq!(options, [format!("options {expected}")], "{text}");
        seen += 1;
    }
    assert_eq!(seen, 2, "both BLS entries were read");
    let grubenv = fs::read(tree.join("boot/grub2/grubenv")).unwrap();
    assert_eq!(grubenv.len(), 1024);
    let grubenv = String::from_utf8_lossy(&grubenv);
    assert!(
        grubenv.contains(&format!("\nkernelopts={expected}\n")),
        "{grubenv}"
    );
    assert!(grubenv.contains("saved_entry="), "{grubenv}");
    let default_grub = fs::read_to_string(tree.join("etc/default/grub")).unwrap();
    assert!(
        default_grub.contains(&format!(
            "GRUB_CMDLINE_LINUX=\"{}\"",
            harden::KERNEL_CMDLINE
        )),
        "{default_grub}"
    );

    let scripts = tree.join("etc/sysconfig/network-scripts");
    let eth0 = fs::read_to_string(scripts.join("ifcfg-eth0")).unwrap();
    assert!(eth0.contains("BOOTPROTO=dhcp"), "{eth0}");
    for gone in ["IPADDR", "HWADDR", "GATEWAY"] {
        assert!(!eth0.contains(gone), "{gone} left in ifcfg-eth0:\n{eth0}");
    }
    assert!(!scripts.join("ifcfg-ens3").exists());
    assert!(!tree
        .join("etc/NetworkManager/system-connections/ens3.nmconnection")
        .exists());
    assert!(!tree.join("etc/resolv.conf").exists());

    // The check pass, on the same tree, agrees.
    let view = DirView::new(&tree);
    let os = OsInfo {
        family: "almalinux".into(),
        version: "9.4".into(),
        arch: "x86_64".into(),
    };
    let disk = check::DiskFacts::default();
    let policy = check::Policy::default();
    let findings = check::run_rules(&check::Subject {
        disk: &disk,
        fs: Some(&view as &dyn ImageView),
        os: &os,
        policy: &policy,
    });
    for rule in [
        "kernel-cmdline",
        "no-custom-network-config",
        "resolv-conf-removed",
    ] {
        let finding = findings.iter().find(|f| f.id == rule).unwrap();
        assert_eq!(finding.status, Status::Pass, "{rule}: {}", finding.evidence);
    }
}

#[test]
fn every_container_format_is_copied() {
    if !prerequisites_met() {
        return;
    }
    let dir = case_dir("formats");
    let raw = support::make_test_image(&dir);
    // qcow2 is the dirty image's format. The direct reader has no part in
    // a copy, so each format here goes through libguestfs alone.
    for (format, options) in [
        ("raw", ""),
        ("vpc", "subformat=fixed,force_size=on"),
        ("vpc", "subformat=dynamic"),
        ("vhdx", ""),
    ] {
        let image = dir.join(format!("test-{format}-{}.img", options.len()));
        let mut convert = Command::new("qemu-img");
        convert.args(["convert", "-O", format]);
        if !options.is_empty() {
            convert.args(["-o", options]);
        }
        assert!(convert.arg(&raw).arg(&image).status().unwrap().success());
        let base = forge::recipe::ImageBase {
            path: image.clone(),
            sha256: support::sha256_file(&image),
            packages_from: forge::recipe::PackageSource::ImageRepositories,
        };
        let tree = dir.join(format!("tree-{format}-{}", options.len()));
        fs::create_dir_all(&tree).unwrap();
        forge::build::import::copy_tree(&base, &tree)
            .unwrap_or_else(|e| panic!("{format} {options}: {e:#}"));
        let os_release = fs::read_to_string(tree.join("etc/os-release")).unwrap();
        assert!(os_release.contains("debian"), "{format}: {os_release}");
        assert!(tree.join("home/alice").is_dir(), "{format}");
    }
}

#[test]
fn locked_rebuild_gives_the_same_bytes() {
    if !prerequisites_met() {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let dir = run_root().join("dirty-nginx");
    let recipe = dir.join("dirty-nginx.toml");
    let out = case_dir("dirty-nginx-locked");
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("build")
        .arg("--locked")
        .arg(&recipe)
        .arg("--output")
        .arg(&out)
        .arg("--cache-dir")
        .arg(cache_dir())
        .stdin(Stdio::null())
        .output()
        .expect("failed to start the forge binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let locked = out.join("dirty-nginx-1.0.0.vhd");
    assert_eq!(
        support::sha256_file(&locked),
        support::sha256_file(&build.vhd),
        "a --locked rebuild from the same image differs"
    );
}

#[test]
fn btrfs_subvolumes_are_copied() {
    if !prerequisites_met() {
        return;
    }
    let image = make_image("make-btrfs-subvolumes.sh", "btrfs-subvolumes.qcow2");
    let dir = case_dir("btrfs");
    let base = forge::recipe::ImageBase {
        path: image.clone(),
        sha256: support::sha256_file(&image),
        packages_from: forge::recipe::PackageSource::ImageRepositories,
    };
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).unwrap();
    forge::build::import::copy_tree(&base, &tree).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        tree.join("etc/os-release").is_file(),
        "the @ subvolume is missing"
    );
    let note = fs::read_to_string(tree.join("home/alice/note")).unwrap();
    assert_eq!(note, "kept on the @home subvolume\n");
}
