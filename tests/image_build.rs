//! Real builds: runs the `forge` binary on the example recipes and on test
//! recipes, then checks the outputs, boots the images in QEMU and reads
//! them back through libguestfs.
//!
//! Run this file with `cargo test --release`. `CARGO_BIN_EXE_forge` is the
//! binary of the test profile, and a debug build takes many minutes to
//! hash a 30 GiB disk, which a release build hashes in about 20 s.
//!
//! Measured on a 2-core Debian 12 host under TCG with `--test-threads=2`:
//! a 30 GiB example build took about 7 min, a 2 GiB test build about
//! 8 min (the check pass ran beside another one), and each boot to the
//! login prompt about 110 s.
//!
//! Each example image is built once per run and shared: the first test that
//! needs it builds it, and the others wait for that build. Outputs go to
//! `target/e2e/`, which the first test of a run empties. Test recipes use a
//! 2 GiB disk to keep the run shorter.
//!
//! A missing tool, or a user other than root, skips these tests unless `CI`
//! is set, in which case they fail.

mod support;

use support::plant::Planted;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use forge::check::FileKind;
use forge::direct::{DirectImage, Opened};
use support::boot::{boot_to_login, Firmware};

/// Tools of the build, the check pass (libguestfs) and the boot tests.
const BUILD_TOOLS: &[&str] = &[
    "mmdebstrap",
    "unshare",
    "sgdisk",
    "mkfs.fat",
    "mcopy",
    "mkfs.ext4",
    "supermin",
    "qemu-img",
    "qemu-system-x86_64",
];

/// Time allowed for one boot to the login prompt, about five times the
/// boot time measured under TCG on 2 cores.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Time after SIGTERM within which an interrupted build must exit.
const INTERRUPT_EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// Time that processes of a finished build get to disappear. Processes
/// killed with their PID namespace can outlive forge by a few milliseconds.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

/// Environment variable set on every forge run of this file. Its value
/// marks the processes that the run started, because children inherit it.
const RUN_MARKER: &str = "FORGE_E2E_RUN";

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Recipe head shared by the test recipes: the example base, a 2 GiB disk.
const TEST_RECIPE_HEAD: &str = "\
version = \"1.0.0\"

[base]
distro = \"debian\"
release = \"bookworm\"
arch = \"x86_64\"

[disk]
size = \"2GiB\"
";

/// One finished `forge build`.
struct Build {
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
    out_dir: PathBuf,
    /// `<name>-<version>`, the file name stem of every output.
    stem: String,
}

impl Build {
    fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }

    fn output(&self, suffix: &str) -> PathBuf {
        self.out_dir.join(format!("{}{suffix}", self.stem))
    }

    fn vhd(&self) -> PathBuf {
        self.output(".vhd")
    }

    /// Panics with forge's stderr unless the build succeeded.
    fn assert_succeeded(&self) {
        assert!(
            self.succeeded(),
            "forge build exited with {:?}; stderr:\n{}",
            self.exit_code,
            self.stderr
        );
    }
}

/// Returns `target/e2e`, emptied on the first call of this run.
fn run_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is inside the target folder");
        let root = target.join("e2e");
        if root.exists() {
            fs::remove_dir_all(&root)
                .unwrap_or_else(|e| panic!("failed to empty {}: {e}", root.display()));
        }
        fs::create_dir_all(&root).unwrap();
        root
    })
}

/// Returns a new folder `target/e2e/<case>`.
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

/// Returns whether the tests can build images here. When they cannot, this
/// prints why and returns false, or panics when `CI` is set.
fn prerequisites_met() -> bool {
    static MET: OnceLock<bool> = OnceLock::new();
    *MET.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !root {
            let ci = std::env::var("CI").unwrap_or_default();
            assert!(
                ci.is_empty() || ci == "false",
                "CI is set and forge build needs root; run the tests as root"
            );
            eprintln!("skipping: forge build needs root");
            return false;
        }
        if !support::tools_present(BUILD_TOOLS) {
            return false;
        }
        support::select_libguestfs_accel();
        true
    })
}

/// Writes a test recipe named `name` with `layers` (TOML `[[layer]]`
/// tables) into `dir` and returns its path.
fn write_test_recipe(dir: &Path, name: &str, layers: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!("name = \"{name}\"\n{TEST_RECIPE_HEAD}\n{layers}");
    fs::write(&path, text).unwrap();
    path
}

/// Returns the command line of `forge build` for `recipe`, writing its
/// outputs into `out_dir`.
fn forge_command(recipe: &Path, out_dir: &Path, marker: &str) -> Command {
    forge_command_with_cache(recipe, out_dir, marker, &cache_dir())
}

/// Like [`forge_command`], with its own cache folder.
fn forge_command_with_cache(recipe: &Path, out_dir: &Path, marker: &str, cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .arg("build")
        .arg(recipe)
        .arg("--output")
        .arg(out_dir)
        .arg("--cache-dir")
        .arg(cache)
        .env(RUN_MARKER, marker)
        .stdin(Stdio::null());
    command
}

/// Runs `forge build` to completion. `tmp`, when given, becomes forge's
/// `TMPDIR`, so the caller can check what is left in it.
fn run_build(recipe: &Path, case: &Path, stem: &str, tmp: Option<&Path>) -> Build {
    let out_dir = case.join("out");
    let marker = case.display().to_string();
    let mut command = forge_command(recipe, &out_dir, &marker);
    if let Some(tmp) = tmp {
        command.env("TMPDIR", tmp);
    }
    finish_build(command, recipe, out_dir, stem)
}

/// Runs a prepared `forge build` command to completion.
fn finish_build(mut command: Command, recipe: &Path, out_dir: PathBuf, stem: &str) -> Build {
    let started = Instant::now();
    let output = command.output().expect("failed to start the forge binary");
    eprintln!(
        "forge build {} took {:.1} s",
        recipe.display(),
        started.elapsed().as_secs_f64()
    );
    Build {
        exit_code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        out_dir,
        stem: stem.to_owned(),
    }
}

/// Builds an example recipe of `recipes/` once per run and returns it.
fn example_build(cell: &'static OnceLock<Build>, name: &str) -> &'static Build {
    cell.get_or_init(|| {
        let recipe = Path::new(REPO).join("recipes").join(format!("{name}.toml"));
        run_build(&recipe, &case_dir(name), &format!("{name}-1.0.0"), None)
    })
}

fn minimal_build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    example_build(&BUILD, "debian-12-minimal")
}

fn nginx_build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    example_build(&BUILD, "debian-12-nginx")
}

/// Boots a built image and asserts that it reaches a login prompt.
fn assert_boots(build: &Build, firmware: Firmware) {
    build.assert_succeeded();
    let started = Instant::now();
    let result = boot_to_login(&build.vhd(), firmware, BOOT_TIMEOUT);
    eprintln!(
        "{firmware:?} boot of {} took {:.1} s",
        build.stem,
        started.elapsed().as_secs_f64()
    );
    let log = result.unwrap_or_else(|e| panic!("{firmware:?} boot failed: {e:#}"));
    assert!(log.contains("login:"), "no login prompt in:\n{log}");
}

/// Reads the JSON report of a build.
fn read_report(build: &Build) -> serde_json::Value {
    let path = build.output(".report.json");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Returns the ids of the report's rules that have `status`.
fn rules_with_status(report: &serde_json::Value, status: &str) -> Vec<String> {
    report["rules"]
        .as_array()
        .expect("report has a `rules` array")
        .iter()
        .filter(|rule| rule["status"] == status)
        .map(|rule| rule["id"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Asserts a verdict of `compliant`, or `incomplete` with only the malware
/// scan not run: no ClamAV database can be downloaded on the test machine.
fn assert_accepted_verdict(build: &Build) {
    let report = read_report(build);
    let failed = rules_with_status(&report, "fail");
    let not_run = rules_with_status(&report, "not-run");
    let verdict = report["verdict"].as_str().unwrap_or_default();
    assert!(
        failed.is_empty(),
        "rules failed: {failed:?}; stderr:\n{}",
        build.stderr
    );
    assert!(
        verdict == "compliant" || verdict == "incomplete",
        "verdict is {verdict:?}; stderr:\n{}",
        build.stderr
    );
    assert!(
        not_run.iter().all(|id| id == "malware-scan"),
        "rules other than malware-scan were not run: {not_run:?}"
    );
}

/// Returns the names in `dir`; empty when it does not exist.
fn list_names(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Returns `(pid, name)` of live processes started by the forge run with
/// `marker`. A process counts when it carries the marker in its
/// environment, or when its root folder lies under `tmp`: commands that
/// forge runs inside the image tree start with an empty environment.
fn processes_of_run(marker: &str, tmp: &Path) -> Vec<(u32, String)> {
    let needle = format!("{RUN_MARKER}={marker}\0");
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let proc_dir = entry.path();
        let environ = fs::read(proc_dir.join("environ")).unwrap_or_default();
        let marked = String::from_utf8_lossy(&environ).contains(&needle);
        let in_tree = fs::read_link(proc_dir.join("root")).is_ok_and(|r| r.starts_with(tmp));
        if marked || in_tree {
            let name = fs::read_to_string(proc_dir.join("comm")).unwrap_or_default();
            found.push((pid, name.trim().to_owned()));
        }
    }
    found
}

/// Waits up to [`LEFTOVER_GRACE`] for the processes of a run to end and
/// returns the ones still alive.
fn leftover_processes(marker: &str, tmp: &Path) -> Vec<(u32, String)> {
    let started = Instant::now();
    loop {
        let found = processes_of_run(marker, tmp);
        if found.is_empty() || started.elapsed() >= LEFTOVER_GRACE {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts that a failed run left no outputs, no temporary files and no
/// processes behind.
fn assert_nothing_left(case: &Path, tmp: &Path, stderr: &str) {
    let outputs = list_names(&case.join("out"));
    assert!(
        outputs.is_empty(),
        "output folder is not empty: {outputs:?}; stderr:\n{stderr}"
    );
    let temps = list_names(tmp);
    let work_folders: Vec<&String> = temps
        .iter()
        .filter(|n| n.starts_with("forge-build-"))
        .collect();
    assert!(
        work_folders.is_empty(),
        "forge-build-* folders left in TMPDIR: {work_folders:?}"
    );
    assert!(temps.is_empty(), "files left in TMPDIR: {temps:?}");
    let processes = leftover_processes(&case.display().to_string(), tmp);
    assert!(
        processes.is_empty(),
        "processes left running: {processes:?}"
    );
}

/// Returns a private `TMPDIR` for one forge run. The run's temporary
/// folders are checked there rather than in the shared temporary folder,
/// where builds of other tests in this binary create their own.
fn private_tmp(case: &Path) -> PathBuf {
    let tmp = case.join("tmp");
    fs::create_dir_all(&tmp).unwrap();
    tmp.canonicalize().unwrap()
}

#[test]
fn minimal_recipe_builds_compliant() {
    if !prerequisites_met() {
        return;
    }
    let build = minimal_build();
    build.assert_succeeded();

    for suffix in [
        ".vhd",
        ".report.json",
        ".report.txt",
        ".report.junit.xml",
        ".report.md",
        ".vhd.sha256",
        ".spdx.json",
    ] {
        let path = build.output(suffix);
        assert!(path.is_file(), "{} is missing", path.display());
    }
    assert_accepted_verdict(build);

    let sum_line = fs::read_to_string(build.output(".vhd.sha256")).unwrap();
    let mut fields = sum_line.split_whitespace();
    let recorded = fields.next().unwrap_or_default().to_owned();
    let named = fields.next().unwrap_or_default().to_owned();
    assert_eq!(
        named,
        format!("{}.vhd", build.stem),
        "sha256 file names another file"
    );

    let started = Instant::now();
    let fresh = support::sha256_file(&build.vhd());
    eprintln!(
        "sha256 of the VHD took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(recorded, fresh, "sha256 file does not match the VHD");
    assert!(
        build.stdout.contains(&format!("sha256 {fresh}")),
        "stdout lacks the sha256 line: {}",
        build.stdout
    );
}

#[test]
fn minimal_boots_bios() {
    if !prerequisites_met() {
        return;
    }
    assert_boots(minimal_build(), Firmware::Bios);
}

#[test]
fn minimal_boots_uefi() {
    if !prerequisites_met() {
        return;
    }
    assert_boots(minimal_build(), Firmware::Uefi);
}

#[test]
fn nginx_recipe_builds_with_nginx_enabled() {
    if !prerequisites_met() {
        return;
    }
    let build = nginx_build();
    build.assert_succeeded();
    assert_accepted_verdict(build);

    let image = open_direct(&build.vhd());
    let view = image.view().expect("no OS found in the image");

    let wants = "/etc/systemd/system/multi-user.target.wants/nginx.service";
    let link = view.lstat(wants).unwrap();
    assert_eq!(
        link.map(|m| m.kind),
        Some(FileKind::Symlink),
        "{wants} is not a symlink"
    );

    let page = "/var/www/contoso/index.html";
    let expected = fs::read(Path::new(REPO).join("overlays/nginx-site").join(&page[1..])).unwrap();
    let actual = view.read(page).unwrap();
    assert_eq!(
        actual,
        Some(expected),
        "{page} differs from the overlay's file"
    );

    // Without the recipe, `forge check` applies the services the build
    // recorded in the image, so nginx counts as declared.
    let (_, report) = check_json(&build.vhd(), &[]);
    assert_eq!(rules_with_status(&report, "fail"), Vec::<String>::new());
    let footprint = rule_evidence(&report, "minimal-footprint");
    assert!(footprint.contains("nginx.service"), "{footprint}");
}

#[test]
fn nginx_boots_bios() {
    if !prerequisites_met() {
        return;
    }
    assert_boots(nginx_build(), Firmware::Bios);
}

#[test]
fn nginx_boots_uefi() {
    if !prerequisites_met() {
        return;
    }
    assert_boots(nginx_build(), Firmware::Uefi);
}

/// Builds a recipe whose first layer is the nginx example's layer and
/// whose second layer copies a fresh overlay, after the nginx example
/// build. The bootstrap and the nginx layer must come from the stage cache
/// and only the second layer be built.
///
/// NOTE: a mirror update between the two builds changes the bootstrap key,
/// so this test then fails on the reuse lines.
#[test]
fn unchanged_stages_come_from_cache() {
    if !prerequisites_met() {
        return;
    }
    nginx_build().assert_succeeded();
    let case = case_dir("stage-cache");
    let overlay = case.join("overlay");
    let note = overlay.join("etc/forge-cache-test");
    fs::create_dir_all(note.parent().unwrap()).unwrap();
    // Different on every run, so that the second layer is never cached.
    let stamp = format!("{:?}\n", std::time::SystemTime::now());
    fs::write(&note, &stamp).unwrap();
    let nginx_overlay = Path::new(REPO).join("overlays/nginx-site");
    let layers = format!(
        r#"
[[layer]]
name = "nginx"
packages = ["nginx"]
overlay = "{}"
run = [["rm", "-f", "/etc/nginx/sites-enabled/default"]]
enable = ["nginx.service"]

[[layer]]
name = "extra"
overlay = "{}"
"#,
        nginx_overlay.display(),
        overlay.display()
    );
    let recipe = write_test_recipe(&case, "e2e-stage-cache", &layers);
    let build = run_build(&recipe, &case, "e2e-stage-cache-1.0.0", None);
    build.assert_succeeded();

    let progress: Vec<&str> = build
        .stderr
        .lines()
        .filter(|l| l.starts_with('['))
        .collect();
    let bootstrap = progress
        .iter()
        .find(|l| l.starts_with("[1/7] bootstrap Debian:"))
        .unwrap_or_else(|| panic!("no bootstrap result line; stderr:\n{}", build.stderr));
    assert!(
        bootstrap.contains("reused from cache (the tree after layer `nginx`"),
        "the bootstrap and nginx layer were not restored: {bootstrap}"
    );
    let layers_line = progress
        .iter()
        .find(|l| l.starts_with("[2/7] apply layers:"))
        .unwrap_or_else(|| panic!("no layers result line; stderr:\n{}", build.stderr));
    assert!(
        layers_line.contains("reused: nginx"),
        "nginx layer not reused: {layers_line}"
    );
    assert!(
        layers_line.contains("built: extra (stored as"),
        "extra layer not built and stored: {layers_line}"
    );
    assert_accepted_verdict(&build);

    let image = open_direct(&build.vhd());
    let view = image.view().expect("no OS found in the image");
    assert_eq!(
        view.read("/etc/forge-cache-test").unwrap(),
        Some(stamp.into_bytes()),
        "the second layer's overlay is missing from the image"
    );
    let wants = "/etc/systemd/system/multi-user.target.wants/nginx.service";
    assert_eq!(
        view.lstat(wants).unwrap().map(|m| m.kind),
        Some(FileKind::Symlink),
        "the restored nginx layer lacks {wants}"
    );
}

/// Layer commands that leave what a Marketplace image must not contain:
/// a swap file with its fstab line, an SSH key, a root password, a shell
/// history and a static network configuration bound to a MAC address.
const DIRTY_LAYER: &str = r#"
[[layer]]
name = "dirty"
run = [
  ["fallocate", "-l", "64M", "/swapfile"],
  ["chmod", "600", "/swapfile"],
  ["mkswap", "/swapfile"],
  ["sh", "-c", "echo '/swapfile none swap sw 0 0' >> /etc/fstab"],
  ["sh", "-c", "mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e build@host' > /root/.ssh/authorized_keys"],
  ["sh", "-c", "echo root:secret | chpasswd"],
  ["sh", "-c", "echo 'curl -u admin:secret http://10.0.0.1/' > /root/.bash_history"],
  ["sh", "-c", "mkdir -p /etc/network/interfaces.d && printf 'auto eth0\niface eth0 inet static\n  address 10.0.0.5/24\n  hwaddress ether 00:0d:3a:12:34:56\n' > /etc/network/interfaces.d/eth0"],
  ["sh", "-c", "mkdir -p /etc/udev/rules.d && echo 'SUBSYSTEM==\"net\", ATTR{address}==\"00:0d:3a:12:34:56\", NAME=\"eth0\"' > /etc/udev/rules.d/70-persistent-net.rules"],
]
"#;

/// Builds the dirty-layer recipe once per run. Its 2 GiB image is also the
/// clean base of the planted-violation tests.
fn dirty_build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        let case = case_dir("dirty");
        let recipe = write_test_recipe(&case, "e2e-dirty", DIRTY_LAYER);
        run_build(&recipe, &case, "e2e-dirty-1.0.0", None)
    })
}

#[test]
fn dirty_layer_still_compliant() {
    if !prerequisites_met() {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    assert_accepted_verdict(build);

    let image = open_direct(&build.vhd());
    let view = image.view().expect("no OS found in the image");

    assert_eq!(
        view.lstat("/swapfile").unwrap(),
        None,
        "/swapfile is still there"
    );

    let fstab = view.read_text("/etc/fstab").unwrap().unwrap_or_default();
    let swap_lines: Vec<&str> = fstab
        .lines()
        .filter(|l| l.split_whitespace().nth(2) == Some("swap"))
        .collect();
    assert!(
        swap_lines.is_empty(),
        "/etc/fstab still mounts swap: {swap_lines:?}"
    );

    let keys = "/root/.ssh/authorized_keys";
    assert_eq!(view.lstat(keys).unwrap(), None, "{keys} is still there");

    let shadow = view.read_text("/etc/shadow").unwrap().unwrap_or_default();
    let root_password = shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|rest| rest.split(':').next())
        .unwrap_or_default()
        .to_owned();
    assert!(
        root_password.starts_with('*') || root_password.starts_with('!'),
        "root password is not locked: {root_password:?}"
    );

    let history = "/root/.bash_history";
    let history_size = view.lstat(history).unwrap().map_or(0, |m| m.size);
    assert_eq!(history_size, 0, "{history} still has content");

    let static_configs: Vec<String> = view
        .list_dir("/etc/network/interfaces.d")
        .unwrap()
        .into_iter()
        .filter(|name| {
            let text = view
                .read_text(&format!("/etc/network/interfaces.d/{name}"))
                .unwrap()
                .unwrap_or_default();
            text.contains("inet static") || text.contains("hwaddress")
        })
        .collect();
    assert!(
        static_configs.is_empty(),
        "static network config left in /etc/network/interfaces.d: {static_configs:?}"
    );

    let rules = "/etc/udev/rules.d/70-persistent-net.rules";
    assert_eq!(view.lstat(rules).unwrap(), None, "{rules} is still there");
}

#[test]
fn unrepairable_layer_fails_naming_rule() {
    if !prerequisites_met() {
        return;
    }
    let case = case_dir("second-root");
    let layer = "[[layer]]\nname = \"second-root\"\nrun = [[\"useradd\", \"-o\", \"-u\", \"0\", \"-g\", \"0\", \"toor\"]]\n";
    let recipe = write_test_recipe(&case, "e2e-second-root", layer);
    let build = run_build(&recipe, &case, "e2e-second-root-1.0.0", None);

    assert_ne!(
        build.exit_code,
        Some(0),
        "build succeeded; stderr:\n{}",
        build.stderr
    );
    assert!(
        build.stderr.contains("fail  accounts-locked:"),
        "stderr does not name accounts-locked:\n{}",
        build.stderr
    );
    let outputs = list_names(&build.out_dir);
    let images: Vec<&String> = outputs
        .iter()
        .filter(|n| n.ends_with(".vhd") || n.ends_with(".partial"))
        .collect();
    assert!(images.is_empty(), "image files left: {images:?}");
}

#[test]
fn failing_layer_command_leaves_nothing() {
    if !prerequisites_met() {
        return;
    }
    let case = case_dir("failing-command");
    let tmp = private_tmp(&case);
    let layer = "[[layer]]\nname = \"fails-here\"\nrun = [[\"false\"]]\n";
    let recipe = write_test_recipe(&case, "e2e-failing-command", layer);
    let build = run_build(&recipe, &case, "e2e-failing-command-1.0.0", Some(&tmp));

    assert_ne!(
        build.exit_code,
        Some(0),
        "build succeeded; stderr:\n{}",
        build.stderr
    );
    let error = build
        .stderr
        .lines()
        .find(|l| l.starts_with("forge: error:"))
        .unwrap_or_default();
    assert!(
        error.contains("fails-here"),
        "error does not name the layer:\n{}",
        build.stderr
    );
    assert!(
        error.contains("`false`"),
        "error does not name the command:\n{}",
        build.stderr
    );
    assert_nothing_left(&case, &tmp, &build.stderr);
}

#[test]
fn interrupted_build_leaves_nothing() {
    if !prerequisites_met() {
        return;
    }
    let case = case_dir("interrupted");
    let tmp = private_tmp(&case);
    // Earlier builds may have cached the bootstrap, so a slow layer keeps
    // the build busy at the moment of the signal. It is interrupted, so it
    // is never cached. The command runs as PID 1 of its namespace, where
    // SIGTERM does not end a program without a handler, so forge must
    // kill it after its grace period.
    let recipe = write_test_recipe(
        &case,
        "e2e-interrupted",
        r#"[[layer]]
name = "slow"
run = [["sleep", "600"]]
"#,
    );
    let stderr_path = case.join("stderr.txt");
    let marker = case.display().to_string();

    let mut child = forge_command(&recipe, &case.join("out"), &marker)
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("failed to start the forge binary");

    // 20 s is well into the bootstrap, which took 50 to 90 s with a warm
    // package cache on a 2-core host, or into restoring the cached
    // bootstrap or the slow layer after it.
    std::thread::sleep(Duration::from_secs(20));
    let progress = fs::read_to_string(&stderr_path).unwrap_or_default();
    // SAFETY: kill(2) on the pid of a child this test has not yet waited
    // for, so the pid cannot belong to another process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }

    let signalled = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() >= INTERRUPT_EXIT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("forge did not exit within {INTERRUPT_EXIT_TIMEOUT:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "forge exited {:.1} s after SIGTERM",
        signalled.elapsed().as_secs_f64()
    );
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();

    assert!(
        progress.contains("bootstrap Debian"),
        "the bootstrap had not started after 20 s; stderr:\n{stderr}"
    );
    assert_ne!(
        status.code(),
        Some(0),
        "interrupted build succeeded; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("interrupted"),
        "stderr does not report the interruption:\n{stderr}"
    );
    assert_nothing_left(&case, &tmp, &stderr);
}

/// Runs `forge check --format json` on `image` with `env` set, and returns
/// the exit code and the parsed report.
fn check_json(image: &Path, env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    check_json_with(image, env, &[])
}

/// Like [`check_json`], with extra arguments for `forge check`.
fn check_json_with(
    image: &Path,
    env: &[(&str, &str)],
    args: &[&std::ffi::OsStr],
) -> (Option<i32>, serde_json::Value) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forge"));
    command
        .args(["check", "--format", "json"])
        .args(args)
        .arg(image)
        .env("FORGE_CACHE_DIR", cache_dir())
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("failed to start the forge binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "forge check panicked:\n{stderr}"
    );
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("forge check printed no JSON report ({e}); stderr:\n{stderr}"));
    (output.status.code(), report)
}

/// Opens a built image with the direct reader, which every forge-built
/// layout allows.
fn open_direct(vhd: &Path) -> Box<DirectImage> {
    match DirectImage::open(vhd).unwrap_or_else(|e| panic!("{e:#}")) {
        Opened::Image(image) => image,
        Opened::Declined(reason) => {
            panic!("the direct reader declined {}: {reason}", vhd.display())
        }
    }
}

/// Returns the evidence of rule `id` in a report.
fn rule_evidence(report: &serde_json::Value, id: &str) -> String {
    report["rules"]
        .as_array()
        .expect("report has a `rules` array")
        .iter()
        .find(|r| r["id"] == id)
        .and_then(|r| r["evidence"].as_str())
        .unwrap_or_else(|| panic!("no rule {id} in the report"))
        .to_owned()
}

/// Statuses of every rule, by id.
fn statuses(report: &serde_json::Value) -> Vec<(String, String)> {
    report["rules"]
        .as_array()
        .expect("report has a `rules` array")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("?").to_owned(),
                r["status"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

#[test]
fn direct_reader_and_libguestfs_agree() {
    if !prerequisites_met() {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let (direct_code, direct) = check_json(&build.vhd(), &[]);
    let started = Instant::now();
    let (guest_code, guest) = check_json(&build.vhd(), &[("FORGE_CHECK_READER", "libguestfs")]);
    eprintln!(
        "check through libguestfs took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(direct_code, guest_code);
    assert_eq!(direct["os"], guest["os"]);
    assert_eq!(direct["sha256"], guest["sha256"]);
    // Same verdict and same evidence, rule by rule.
    assert_eq!(direct["rules"], guest["rules"]);
}

/// One violation planted into a copy of the clean image, and the rule that
/// must be the only one to fail because of it.
struct Plant {
    rule: &'static str,
    description: &'static str,
    plant: fn(&Planted),
}

const ROOT_PARTITION: u32 = 1;
const WANTS: &str = "/etc/systemd/system/multi-user.target.wants";

fn plants() -> Vec<Plant> {
    vec![
        Plant {
            rule: "vhd-fixed-format",
            description: "footer says dynamic disk",
            plant: |p| p.edit_footer(|f| f.disk_type = forge::vhd::DISK_TYPE_DYNAMIC),
        },
        Plant {
            rule: "vhd-fixed-format",
            description: "footer checksum wrong",
            plant: |p| p.flip_footer_checksum(),
        },
        Plant {
            rule: "vhd-size-aligned",
            description: "footer current size 1 MiB short",
            plant: |p| p.edit_footer(|f| f.current_size -= 1 << 20),
        },
        Plant {
            rule: "disk-first-mib-free",
            description: "BIOS boot partition moved to sector 34",
            plant: |p| p.sgdisk(&["-d", "14", "-a", "1", "-n", "14:34:2047", "-t", "14:EF02"]),
        },
        Plant {
            rule: "no-lvm",
            description: "a partition typed LVM",
            plant: |p| p.sgdisk(&["-t", "14:8E00"]),
        },
        Plant {
            rule: "security-patches",
            description: "openssl older than the security suite's",
            plant: |p| {
                p.edit("/var/lib/dpkg/status", |text| {
                    set_package_field(&text, "openssl", "Version", "3.0.0-1")
                })
            },
        },
        Plant {
            rule: "hardening-baseline",
            description: "/etc/shadow readable by all",
            plant: |p| p.chmod_file("/etc/shadow", 0o644),
        },
        Plant {
            rule: "minimal-footprint",
            description: "an undeclared listening socket enabled",
            plant: |p| {
                p.write(
                    "/etc/systemd/system/echo.socket",
                    "[Socket]\nListenStream=7\n",
                );
                p.symlink(
                    &format!("{WANTS}/echo.socket"),
                    "/etc/systemd/system/echo.socket",
                );
            },
        },
        Plant {
            rule: "accounts-locked",
            description: "a password hash behind a lock marker",
            plant: |p| {
                p.edit("/etc/shadow", |text| {
                    let mut out = String::new();
                    for line in text.lines() {
                        match line.split_once(':') {
                            Some(("root", rest)) => {
                                let rest = rest.split_once(':').map_or("", |(_, r)| r);
                                out.push_str(&format!("root:!$6$saltsalt$2vQ8Ay1Yk0:{rest}\n"));
                            }
                            _ => out.push_str(&format!("{line}\n")),
                        }
                    }
                    out
                })
            },
        },
        Plant {
            rule: "firewall-disabled",
            description: "nftables.service enabled",
            plant: |p| {
                p.symlink(
                    &format!("{WANTS}/nftables.service"),
                    "/lib/systemd/system/nftables.service",
                )
            },
        },
        Plant {
            rule: "ssh-host-keys-removed",
            description: "a public host key",
            plant: |p| {
                p.write(
                    "/etc/ssh/ssh_host_ed25519_key.pub",
                    &format!("{PUBLIC_KEY}\n"),
                )
            },
        },
        Plant {
            rule: "authorized-keys-removed",
            description: "root's authorized_keys",
            plant: |p| p.write("/root/.ssh/authorized_keys", &format!("{PUBLIC_KEY}\n")),
        },
        Plant {
            rule: "known-hosts-removed",
            description: "root's known_hosts",
            plant: |p| p.write("/root/.ssh/known_hosts", &format!("host {PUBLIC_KEY}\n")),
        },
        Plant {
            rule: "private-keys-removed",
            description: "a PEM private key under /srv",
            plant: |p| {
                p.write(
                    "/srv/service.pem",
                    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
                )
            },
        },
        Plant {
            rule: "logs-cleared",
            description: "a non-empty log file",
            plant: |p| p.write("/var/log/product.log", "started\n"),
        },
        Plant {
            rule: "machine-id-reset",
            description: "a filled machine-id",
            plant: |p| p.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        },
        Plant {
            rule: "provisioning-state-cleared",
            description: "a DHCP lease",
            plant: |p| {
                p.write(
                    "/var/lib/dhcp/dhclient.eth0.leases",
                    "lease {\n  interface \"eth0\";\n  fixed-address 10.0.0.4;\n}\n",
                )
            },
        },
        Plant {
            rule: "shell-history-cleared",
            description: "root's bash history",
            plant: |p| p.write("/root/.bash_history", "ls\n"),
        },
        Plant {
            rule: "required-packages",
            description: "python3-pyasn1 removed",
            plant: |p| {
                p.edit("/var/lib/dpkg/status", |text| {
                    set_package_field(
                        &text,
                        "python3-pyasn1",
                        "Status",
                        "deinstall ok config-files",
                    )
                })
            },
        },
        Plant {
            rule: "ssh-server",
            description: "ssh.service not enabled",
            plant: |p| p.remove(&format!("{WANTS}/ssh.service")),
        },
        Plant {
            rule: "sshd-client-alive-interval",
            description: "ClientAliveInterval 120",
            plant: |p| {
                p.edit("/etc/ssh/sshd_config", |text| {
                    text.replacen("ClientAliveInterval 180", "ClientAliveInterval 120", 1)
                })
            },
        },
        Plant {
            rule: "resolv-conf-removed",
            description: "a resolv.conf with a name server",
            plant: |p| p.write("/etc/resolv.conf", "nameserver 10.0.0.2\n"),
        },
        Plant {
            rule: "no-custom-network-config",
            description: "a MAC-bound persistent-net rule",
            plant: |p| {
                p.write(
                    "/etc/udev/rules.d/70-persistent-net.rules",
                    "SUBSYSTEM==\"net\", ATTR{address}==\"00:0d:3a:12:34:56\", NAME=\"eth0\"\n",
                )
            },
        },
        Plant {
            rule: "azure-agent",
            description: "the agent's service not enabled",
            plant: |p| p.remove(&format!("{WANTS}/walinuxagent.service")),
        },
        Plant {
            rule: "kernel-cmdline",
            description: "rootdelay=300 missing from one grub.cfg entry",
            plant: |p| {
                p.edit("/boot/grub/grub.cfg", |text| {
                    text.replacen(" rootdelay=300", "", 1)
                })
            },
        },
        Plant {
            rule: "no-swap",
            description: "a swap line in fstab",
            plant: |p| {
                p.edit("/etc/fstab", |text| {
                    format!("{text}/dev/disk/by-label/swap none swap sw 0 0\n")
                })
            },
        },
        Plant {
            rule: "single-root-partition",
            description: "a separate /var in fstab",
            plant: |p| {
                p.edit("/etc/fstab", |text| {
                    format!(
                        "{text}UUID=0a0b0c0d-0000-4000-8000-000000000001 /var ext4 defaults 0 2\n"
                    )
                })
            },
        },
        Plant {
            rule: "os-64bit",
            description: "dpkg's native architecture i386",
            plant: |p| {
                p.edit("/var/lib/dpkg/arch", |text| {
                    text.replacen("amd64", "i386", 1)
                })
            },
        },
    ]
}

const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eGqUe8jS0EAqV6ZtxoTLCoXmR4jRuLzKbJ8sFzfYq test@plant";

/// Sets `field` of `package`'s stanza in a dpkg status file.
fn set_package_field(status: &str, package: &str, field: &str, value: &str) -> String {
    let mut out = String::new();
    for stanza in status.split("\n\n") {
        let ours = stanza.lines().any(|l| l == format!("Package: {package}"));
        for line in stanza.lines() {
            if ours && line.starts_with(&format!("{field}: ")) {
                out.push_str(&format!("{field}: {value}\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

#[test]
fn planted_violations_fail_only_their_rule() {
    if !prerequisites_met() {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let base = build.vhd();
    let (_, clean) = check_json(&base, &[]);
    let clean_failures: Vec<String> = statuses(&clean)
        .into_iter()
        .filter(|(_, s)| s == "fail")
        .map(|(id, _)| id)
        .collect();
    assert!(
        clean_failures.is_empty(),
        "the clean image fails {clean_failures:?}"
    );

    let work = case_dir("plants");
    let mut problems = Vec::new();
    let started = Instant::now();
    let plants = plants();
    for plant in &plants {
        let copy = Planted::copy(&base, &work.join("planted.vhd"), ROOT_PARTITION);
        (plant.plant)(&copy);
        let (code, report) = check_json(&copy.vhd, &[]);
        let failed: Vec<String> = statuses(&report)
            .into_iter()
            .filter(|(_, s)| s == "fail")
            .map(|(id, _)| id)
            .collect();
        if failed != [plant.rule] || code != Some(1) {
            problems.push(format!(
                "{} ({}): exit {code:?}, failed {failed:?}",
                plant.rule, plant.description
            ));
        }
    }
    eprintln!(
        "{} planted images checked in {:.1} s",
        plants.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "planted violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn build_sbom_lists_installed_packages() {
    if !prerequisites_met() {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let path = build.output(".spdx.json");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
    let sbom: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        build.stdout.contains(&format!("sbom {}", path.display())),
        "stdout lacks the sbom line: {}",
        build.stdout
    );

    let image = &sbom["packages"][0];
    assert_eq!(image["name"], "e2e-dirty");
    assert_eq!(image["versionInfo"], "1.0.0");
    assert_eq!(image["packageFileName"], "e2e-dirty-1.0.0.vhd");
    assert_eq!(
        image["checksums"][0]["checksumValue"],
        support::sha256_file(&build.vhd())
    );

    // Every installed package of the image, and nothing else.
    let direct = open_direct(&build.vhd());
    let status = direct
        .view()
        .unwrap()
        .read_text("/var/lib/dpkg/status")
        .unwrap()
        .expect("the image has a dpkg status file");
    let mut installed: Vec<String> = forge::check::rules::packages::parse_paragraphs(&status)
        .into_iter()
        .filter(|p| p.is_installed())
        .map(|p| format!("{} {}", p.name, p.version))
        .collect();
    installed.sort();
    let mut listed: Vec<String> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["versionInfo"].as_str().unwrap()
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, installed);
    let bash = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "bash")
        .expect("bash is listed");
    assert_eq!(bash["licenseDeclared"], "GPL-3.0-or-later");

    // forge sbom gives the same document for the built VHD, apart from the
    // creation time, which is the build's time.
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["sbom", "--name", "e2e-dirty", "--version", "1.0.0"])
        .arg(build.vhd())
        .env("FORGE_CACHE_DIR", cache_dir())
        .stdin(Stdio::null())
        .output()
        .expect("failed to start the forge binary");
    assert_eq!(output.status.code(), Some(0));
    let mut again: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    again["creationInfo"]["created"] = sbom["creationInfo"]["created"].clone();
    assert_eq!(again, sbom);
}

#[test]
fn diff_names_only_planted_changes() {
    if !prerequisites_met() {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let work = case_dir("diff");
    let copy = Planted::copy(&build.vhd(), &work.join("planted.vhd"), ROOT_PARTITION);
    copy.write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    copy.edit("/var/lib/dpkg/status", |status| {
        set_package_field(&status, "bash", "Version", "99.0-planted")
    });

    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["diff", "--format", "json"])
        .arg(build.vhd())
        .arg(&copy.vhd)
        .stdin(Stdio::null())
        .output()
        .expect("failed to start the forge binary");
    eprintln!(
        "forge diff of two 2 GiB images took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("forge diff printed no JSON ({e}); stderr:\n{stderr}"));

    let changed: Vec<&str> = report["files"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["/etc/machine-id", "/var/lib/dpkg/status"]);
    assert_eq!(report["files"]["added"], serde_json::json!([]));
    assert_eq!(report["files"]["removed"], serde_json::json!([]));
    assert_eq!(report["disk"], serde_json::json!([]));
    assert_eq!(report["footer"]["changes"], serde_json::json!([]));

    let packages = &report["packages"];
    assert_eq!(packages["added"], serde_json::json!([]));
    assert_eq!(packages["removed"], serde_json::json!([]));
    let package_changes = packages["changed"].as_array().unwrap();
    assert_eq!(package_changes.len(), 1, "{packages:#}");
    assert_eq!(package_changes[0]["name"], "bash");
    assert_eq!(package_changes[0]["changes"][0]["field"], "version");
    assert_eq!(package_changes[0]["changes"][0]["b"], "99.0-planted");
}

/// Contents of the planted "malware": a file that only the test's own
/// signature database matches.
const PAYLOAD: &str = "forge planted payload, harmless, for the malware-scan test\n";

#[test]
fn planted_file_fails_malware_scan() {
    if !prerequisites_met() || !support::tools_present(&["clamscan"]) {
        return;
    }
    let build = dirty_build();
    build.assert_succeeded();
    let work = case_dir("malware");
    // A ClamAV hash signature: sha256, size and name of the payload.
    let db = work.join("clamav-db");
    fs::create_dir_all(&db).unwrap();
    let payload = work.join("payload");
    fs::write(&payload, PAYLOAD).unwrap();
    fs::write(
        db.join("forge-test.hsb"),
        format!(
            "{}:{}:Forge.Test.Payload\n",
            support::sha256_file(&payload),
            PAYLOAD.len()
        ),
    )
    .unwrap();
    let args = [std::ffi::OsStr::new("--clamav-db"), db.as_os_str()];

    let (code, clean) = check_json_with(&build.vhd(), &[], &args);
    let failed: Vec<String> = rules_with_status(&clean, "fail");
    assert!(failed.is_empty(), "the clean image fails {failed:?}");
    assert_eq!(
        code,
        Some(0),
        "with a database the clean image is compliant"
    );

    let copy = Planted::copy(&build.vhd(), &work.join("planted.vhd"), ROOT_PARTITION);
    copy.write("/srv/payload.bin", PAYLOAD);
    let (code, report) = check_json_with(&copy.vhd, &[], &args);
    assert_eq!(rules_with_status(&report, "fail"), ["malware-scan"]);
    assert_eq!(code, Some(1));
    let evidence = rule_evidence(&report, "malware-scan");
    assert!(
        evidence.contains("Forge.Test.Payload"),
        "the evidence names no signature: {evidence}"
    );
}

/// A firewall product: nftables enabled by a layer, and the firewall rule
/// waived with a reason.
const FIREWALL_LAYER: &str = r#"
[[layer]]
name = "firewall"
packages = ["nftables"]
enable = ["nftables.service"]

[policy]
waive = [{ rule = "firewall-disabled", reason = "the product is a network firewall" }]
"#;

#[test]
fn waived_firewall_shows_in_every_report() {
    if !prerequisites_met() {
        return;
    }
    let case = case_dir("firewall");
    let recipe = write_test_recipe(&case, "e2e-firewall", FIREWALL_LAYER);
    let build = run_build(&recipe, &case, "e2e-firewall-1.0.0", None);
    build.assert_succeeded();
    assert_accepted_verdict(&build);
    let reason = "the product is a network firewall";

    let report = read_report(&build);
    assert_eq!(rules_with_status(&report, "waived"), ["firewall-disabled"]);
    let waived = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "firewall-disabled")
        .unwrap();
    assert_eq!(waived["reason"], reason);
    assert!(waived["evidence"]
        .as_str()
        .unwrap()
        .contains("nftables.service"));
    for suffix in [".report.txt", ".report.junit.xml", ".report.md"] {
        let text = fs::read_to_string(build.output(suffix)).unwrap();
        assert!(
            text.contains("firewall-disabled") && text.contains(reason),
            "{suffix} does not show the waiver and its reason:\n{text}"
        );
    }

    // A later check without the recipe applies the waiver the build
    // recorded in the image.
    let (_, checked) = check_json(&build.vhd(), &[]);
    assert_eq!(rules_with_status(&checked, "waived"), ["firewall-disabled"]);

    // With a recipe that waives nothing, the same image fails the rule.
    let strict = case.join("strict.toml");
    fs::write(
        &strict,
        fs::read_to_string(&recipe)
            .unwrap()
            .replace("waive = [{", "# waive = [{"),
    )
    .unwrap();
    let (code, strict_report) = check_json_with(
        &build.vhd(),
        &[],
        &[std::ffi::OsStr::new("--recipe"), strict.as_os_str()],
    );
    assert_eq!(
        rules_with_status(&strict_report, "fail"),
        ["firewall-disabled"]
    );
    assert_eq!(code, Some(1));
}

/// A product layer for the reproducibility test: a package whose scripts
/// run, and an enabled service.
const REPRO_LAYER: &str = r#"
[[layer]]
name = "web"
packages = ["nginx"]
enable = ["nginx.service"]
"#;

/// Builds `recipe` into `case/<out>` with an empty package cache of its own.
fn cold_build(recipe: &Path, case: &Path, out: &str, extra: &[&str]) -> Build {
    let cache = case.join(format!("{out}-cache"));
    let _ = fs::remove_dir_all(&cache);
    fs::create_dir_all(&cache).unwrap();
    let out_dir = case.join(out);
    let mut command =
        forge_command_with_cache(recipe, &out_dir, &case.display().to_string(), &cache);
    command.args(extra);
    let build = finish_build(command, recipe, out_dir, "e2e-repro-1.0.0");
    let _ = fs::remove_dir_all(&cache);
    build
}

#[test]
fn same_recipe_and_lock_give_the_same_bytes() {
    if !prerequisites_met() {
        return;
    }
    let case = case_dir("repro");
    let recipe = write_test_recipe(&case, "e2e-repro", REPRO_LAYER);
    let lock = case.join("e2e-repro.lock");

    let first = cold_build(&recipe, &case, "first", &[]);
    first.assert_succeeded();
    let locked_text = fs::read_to_string(&lock).expect("the build wrote no lock file");
    assert!(locked_text.contains("name = \"nginx\""), "{locked_text}");
    assert!(locked_text.contains("source_date_epoch"), "{locked_text}");

    let second = cold_build(&recipe, &case, "second", &[]);
    second.assert_succeeded();
    let locked = cold_build(&recipe, &case, "locked", &["--locked"]);
    locked.assert_succeeded();

    let sums: Vec<String> = [&first, &second, &locked]
        .iter()
        .map(|b| support::sha256_file(&b.vhd()))
        .collect();
    if sums[0] != sums[1] || sums[0] != sums[2] {
        let diff = Command::new(env!("CARGO_BIN_EXE_forge"))
            .args(["diff"])
            .arg(first.vhd())
            .arg(if sums[0] != sums[1] {
                second.vhd()
            } else {
                locked.vhd()
            })
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!("builds differ: {sums:?}\n{diff}");
    }
    assert_eq!(
        fs::read_to_string(&lock).unwrap(),
        locked_text,
        "a --locked build must leave the lock file as it was"
    );

    // A locked version the mirror does not serve fails the build and names
    // the package; nothing is written.
    let missing = locked_text.replacen(
        "name = \"openssl\"\nversion = \"",
        "name = \"openssl\"\nversion = \"0.0.0-0forge\"\nold_version = \"",
        1,
    );
    assert_ne!(missing, locked_text, "no openssl entry in the lock");
    // The edit must stay valid TOML: drop the key the replacement shifted.
    let missing: String = missing
        .lines()
        .filter(|l| !l.starts_with("old_version = "))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&lock, &missing).unwrap();
    let out_dir = case.join("missing");
    let mut command = forge_command(&recipe, &out_dir, &case.display().to_string());
    command.arg("--locked");
    let failed = finish_build(command, &recipe, out_dir.clone(), "e2e-repro-1.0.0");
    assert_eq!(failed.exit_code, Some(1), "stderr:\n{}", failed.stderr);
    assert!(
        failed.stderr.contains("openssl (locked 0.0.0-0forge"),
        "the error does not name the package: {}",
        failed.stderr
    );
    assert!(
        list_names(&out_dir).is_empty(),
        "outputs left: {:?}",
        list_names(&out_dir)
    );
}
