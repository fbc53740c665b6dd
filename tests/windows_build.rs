//! A build from a Windows Server base. The base is the made-up Windows
//! Server 2022 disk of `tests/support/make-windows-synthetic.sh`, dirty as
//! a vendor's VM leaves it, with more dirty state added here. The recipe
//! has one layer with an overlay file, a registry value and a first-boot
//! command. A ClamAV database with one signature that matches nothing lets
//! the malware rule run, so the build can be compliant.
//!
//! Run with `cargo test --release --test windows_build`. The base, its
//! dirtier copy and the build are made once per run and shared by the
//! tests; they take about three minutes under TCG. Outputs go to
//! `target/e2e-windows/`, emptied by the first test. Set
//! `FORGE_TEST_WINDOWS_IMAGE` to a base made before to skip the script.
//!
//! A missing tool, or a user other than root, skips these tests unless `CI`
//! is set, in which case they fail.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use guestfs::{AddDriveOptArgs, Handle, HivexOpenOptArgs};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

const TOOLS: &[&str] = &[
    "guestfish",
    "supermin",
    "qemu-img",
    "qemu-system-x86_64",
    "hivexregedit",
    "hivexget",
    "python3",
];

/// What the added dirty state names.
const DEFAULT_PASSWORD: &str = "Autologon-Pa55!";
const PFX: &str = "/Users/Public/leftover.pfx";
const SERVICE_TO_DISABLE: &str = "TlntSvr";

/// Registry value types.
const REG_SZ: i64 = 1;
const REG_DWORD: i64 = 4;

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
            eprintln!("skipping: building from a Windows image needs root");
            return false;
        }
        if !support::tools_present(TOOLS) {
            return false;
        }
        support::select_libguestfs_accel();
        true
    })
}

/// Returns `target/e2e-windows`, emptied on the first call of this run.
fn run_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is inside the target folder");
        let root = target.join("e2e-windows");
        if root.exists() {
            fs::remove_dir_all(&root).unwrap();
        }
        fs::create_dir_all(&root).unwrap();
        root
    })
}

/// Opens a disk image in an appliance and mounts its Windows volume.
fn open_windows(image: &Path, readonly: bool) -> Handle {
    let g = Handle::create().expect("create a libguestfs handle");
    g.add_drive(
        image.to_str().unwrap(),
        AddDriveOptArgs {
            readonly: Some(readonly),
            format: Some("raw"),
            ..Default::default()
        },
    )
    .unwrap();
    g.launch().expect("launch the appliance");
    let roots = g.inspect_os().unwrap();
    assert_eq!(roots.len(), 1, "{roots:?}");
    if readonly {
        g.mount_ro(&roots[0], "/").unwrap();
    } else {
        g.mount(&roots[0], "/").unwrap();
    }
    g
}

/// Walks from the hive's root to the key at `path`, adding missing keys.
fn key(g: &Handle, path: &[&str]) -> i64 {
    let mut node = g.hivex_root().unwrap();
    for name in path {
        node = match g.hivex_node_get_child(node, name).unwrap() {
            0 => g.hivex_node_add_child(node, name).unwrap(),
            child => child,
        };
    }
    node
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Edits one hive of the mounted volume with `edit` and commits it.
fn edit_hive(g: &Handle, name: &str, edit: impl FnOnce(&Handle)) {
    let path = format!("/Windows/System32/config/{name}");
    g.hivex_open(
        &path,
        HivexOpenOptArgs {
            write: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    edit(g);
    g.hivex_commit(None).unwrap();
    g.hivex_close().unwrap();
}

/// Writes a ClamAV database whose one signature matches nothing on the
/// disk.
fn clamav_db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = run_root().join("clamav");
        fs::create_dir_all(&dir).unwrap();
        // sha256:size:name of 28 bytes that no file of the disk contains.
        fs::write(
            dir.join("forge-test.hsb"),
            "3f1f4ae1e8d8fb0ed2b2c0bf6a3ed0a5d69bd3d2e0a8f3b3a5b7e5b0f2c3d4e5:28:Forge.Test.None\n",
        )
        .unwrap();
        dir
    })
}

/// Returns the dirty synthetic base, made once per run, with more dirty
/// state: automatic logon with a password, a certificate in the machine's
/// store, an enabled Telnet service, Windows Update disabled, three inbound
/// firewall rules, an enabled Administrator, and a private key file.
fn base() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let clean = match std::env::var_os("FORGE_TEST_WINDOWS_IMAGE") {
            Some(path) => PathBuf::from(path),
            None => {
                let image = run_root().join("synthetic.vhd");
                let started = Instant::now();
                let output = Command::new("bash")
                    .arg(Path::new(REPO).join("tests/support/make-windows-synthetic.sh"))
                    .arg(&image)
                    .stdin(Stdio::null())
                    .output()
                    .unwrap();
                eprintln!(
                    "make-windows-synthetic.sh took {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                assert!(
                    output.status.success(),
                    "make-windows-synthetic.sh failed:\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                image
            }
        };
        let dirty = run_root().join("dirty.vhd");
        let status = Command::new("cp")
            .arg("--sparse=always")
            .arg(&clean)
            .arg(&dirty)
            .status()
            .unwrap();
        assert!(status.success());
        let g = open_windows(&dirty, false);
        edit_hive(&g, "SOFTWARE", |g| {
            let winlogon = key(
                g,
                &["Microsoft", "Windows NT", "CurrentVersion", "Winlogon"],
            );
            g.hivex_node_set_value(winlogon, "AutoAdminLogon", REG_SZ, &utf16z("1"))
                .unwrap();
            g.hivex_node_set_value(winlogon, "DefaultUserName", REG_SZ, &utf16z("azureuser"))
                .unwrap();
            g.hivex_node_set_value(
                winlogon,
                "DefaultPassword",
                REG_SZ,
                &utf16z(DEFAULT_PASSWORD),
            )
            .unwrap();
            let cert = key(
                g,
                &[
                    "Microsoft",
                    "SystemCertificates",
                    "MY",
                    "Certificates",
                    "0A1B2C",
                ],
            );
            g.hivex_node_set_value(cert, "Blob", 3, &[1, 2, 3]).unwrap();
        });
        edit_hive(&g, "SYSTEM", |g| {
            for (service, start) in [(SERVICE_TO_DISABLE, 2u32), ("wuauserv", 4)] {
                let node = key(g, &["ControlSet001", "Services", service]);
                g.hivex_node_set_value(node, "Start", REG_DWORD, &start.to_le_bytes())
                    .unwrap();
            }
            let rules = key(
                g,
                &[
                    "ControlSet001",
                    "Services",
                    "SharedAccess",
                    "Parameters",
                    "FirewallPolicy",
                    "FirewallRules",
                ],
            );
            for (name, rule) in [
                (
                    "WebHTTP-In",
                    "Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=80|Name=Web",
                ),
                (
                    "RemoteDesktop-UserMode-In-TCP",
                    "Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=3389|Name=RDP",
                ),
                (
                    "{7A1E}",
                    "Action=Allow|Active=TRUE|Dir=In|Protocol=6|LPort=443|Name=Contoso-HTTPS-In",
                ),
            ] {
                let text = format!("v2.31|{rule}|");
                g.hivex_node_set_value(rules, name, REG_SZ, &utf16z(&text))
                    .unwrap();
            }
        });
        edit_hive(&g, "SAM", |g| {
            let admin = key(g, &["SAM", "Domains", "Account", "Users", "000001F4"]);
            let v = g.hivex_node_get_value(admin, "F").unwrap();
            let mut f = g.hivex_value_value(v).unwrap();
            f[0x38] &= !1;
            g.hivex_node_set_value(admin, "F", 3, &f).unwrap();
        });
        g.write(PFX, b"not really a PKCS#12 file").unwrap();
        g.umount_all().unwrap();
        g.shutdown().unwrap();
        dirty
    })
}

/// The finished build, made once per run.
struct Built {
    dir: PathBuf,
    vhd: PathBuf,
    report: serde_json::Value,
}

const COMMAND: &str = r"C:\Contoso\install.cmd /quiet";

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let base = base();
        let dir = run_root().join("build");
        fs::create_dir_all(dir.join("payload/Contoso")).unwrap();
        fs::write(
            dir.join("payload/Contoso/install.cmd"),
            "echo installed\r\n",
        )
        .unwrap();
        let recipe = dir.join("contoso-win.toml");
        fs::write(
            &recipe,
            format!(
                r#"name = "contoso-win"
version = "1.0.0"

[base]
windows = {{ image = "{}", sha256 = "{}" }}

[windows]
min_build = "20348.2607"
deny = ["Web-Server", "W3SVC"]
firewall_allow = ["Contoso-HTTPS-In"]

[[layer]]
name = "contoso"
overlay = "payload"
registry = [ {{ key = 'HKLM\SOFTWARE\Contoso\App', name = "Mode", type = "dword", value = 1 }} ]
first_boot = ['{COMMAND}']
"#,
                base.display(),
                support::sha256_file(base)
            ),
        )
        .unwrap();
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_forge"))
            .arg("build")
            .arg(&recipe)
            .arg("--output")
            .arg(dir.join("out"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--clamav-db")
            .arg(clamav_db())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "forge build took {:.1} s:\n{stderr}",
            started.elapsed().as_secs_f64()
        );
        assert!(output.status.success(), "forge build failed:\n{stderr}");
        let vhd = dir.join("out/contoso-win-1.0.0.vhd");
        let report = fs::read_to_string(dir.join("out/contoso-win-1.0.0.report.json")).unwrap();
        Built {
            vhd,
            report: serde_json::from_str(&report).unwrap(),
            dir,
        }
    })
}

#[test]
fn output_fixed_vhd_of_base_size() {
    if !prerequisites_met() {
        return;
    }
    let b = built();
    let len = fs::metadata(&b.vhd).unwrap().len();
    assert_eq!(len, fs::metadata(base()).unwrap().len());
    let mut footer = [0u8; 512];
    use std::os::unix::fs::FileExt;
    fs::File::open(&b.vhd)
        .unwrap()
        .read_exact_at(&mut footer, len - 512)
        .unwrap();
    assert_eq!(&footer[..8], b"conectix");
    // Disk type 2, fixed, and the size without the footer.
    assert_eq!(u32::from_be_bytes(footer[60..64].try_into().unwrap()), 2);
    assert_eq!(
        u64::from_be_bytes(footer[48..56].try_into().unwrap()),
        len - 512
    );
    let leftovers: Vec<_> = fs::read_dir(b.dir.join("out"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn report_lists_the_first_boot_command() {
    if !prerequisites_met() {
        return;
    }
    let report = &built().report;
    assert_eq!(report["first_boot"], serde_json::json!([COMMAND]));
    assert_eq!(report["os"]["family"], "windows");
    assert_eq!(report["verdict"], "compliant", "{report:#}");
}

#[test]
fn check_of_output_compliant() {
    if !prerequisites_met() {
        return;
    }
    let b = built();
    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("check")
        .arg(&b.vhd)
        .args(["--format", "json"])
        .arg("--clamav-db")
        .arg(clamav_db())
        .arg("--cache-dir")
        .arg(b.dir.join("cache"))
        .output()
        .unwrap();

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "forge check printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });

    let rules = report["rules"].as_array().unwrap();
    let windows: Vec<&serde_json::Value> = rules
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with("win-"))
        .collect();
    let failed: Vec<&serde_json::Value> = rules.iter().filter(|r| r["status"] == "fail").collect();
    assert!(failed.is_empty(), "{failed:#?}");
    for rule in &windows {
        assert_eq!(rule["status"], "pass", "{rule:#}");
    }
    assert_eq!(windows.len(), 13);
    assert_eq!(report["verdict"], "compliant");
    assert_eq!(output.status.code(), Some(0));
}

/// Returns the value `value` of `key` in the hive file `dir/hive` as
/// hivexget prints it, or an empty string when it is missing.
fn hive_value(dir: &Path, hive: &str, key: &str, value: &str) -> String {
    let output = Command::new("hivexget")
        .arg(dir.join(hive))
        .arg(key)
        .arg(value)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[test]
fn volume_has_the_layer_and_no_dirty_state() {
    if !prerequisites_met() {
        return;
    }
    let b = built();
    let hives = b.dir.join("hives");
    fs::create_dir_all(&hives).unwrap();
    let g = open_windows(&b.vhd, true);
    let read = |p: &str| String::from_utf8(g.read_file(p).unwrap()).unwrap();
    let exists = |p: &str| g.exists(p).unwrap();

    assert_eq!(read("/Contoso/install.cmd"), "echo installed\r\n");
    let setup = read("/Windows/Setup/Scripts/SetupComplete.cmd");
    assert!(setup.ends_with(&format!("\r\n{COMMAND}\r\n")), "{setup:?}");
    assert!(!setup.replace("\r\n", "").contains('\n'), "{setup:?}");
    let policy = read("/ProgramData/forge/policy.toml");
    assert!(
        policy.contains("first_boot = ['C:\\Contoso\\install.cmd /quiet']"),
        "{policy}"
    );

    let hosts = read("/Windows/System32/drivers/etc/hosts");
    assert!(hosts.contains("# localhost name resolution"), "{hosts}");
    assert!(!hosts.contains("10.20.30.40"), "{hosts}");
    assert!(!exists("/Windows/Panther/unattend.xml"));
    assert!(!exists("/Windows/Panther/setupact.log"));
    assert!(!exists("/Users/Public/Documents/signing.pfx"));
    assert!(!exists("/Windows/Logs/CBS/CBS.log"));
    assert!(exists("/Windows/Logs/CBS"), "log folders are kept");
    assert!(!exists("/WindowsAzure/Logs/WaAppAgent.log"));
    assert!(!exists(PFX));

    for hive in ["SOFTWARE", "SYSTEM", "SAM"] {
        g.download(
            &format!("/Windows/System32/config/{hive}"),
            hives.join(hive).to_str().unwrap(),
        )
        .unwrap();
    }
    g.shutdown().unwrap();

    assert_eq!(hive_value(&hives, "SOFTWARE", r"\Contoso\App", "Mode"), "1");
    let winlogon = r"\Microsoft\Windows NT\CurrentVersion\Winlogon";
    assert_eq!(
        hive_value(&hives, "SOFTWARE", winlogon, "AutoAdminLogon"),
        "0"
    );
    assert_eq!(
        hive_value(&hives, "SOFTWARE", winlogon, "DefaultPassword"),
        ""
    );
    let software = fs::read(hives.join("SOFTWARE")).unwrap();
    for password in [DEFAULT_PASSWORD, "Forge-Test-Pa55!"] {
        let utf16: Vec<u8> = password.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert!(
            !software.windows(utf16.len()).any(|w| w == utf16.as_slice()),
            "{password} is still in the SOFTWARE hive file"
        );
    }
    assert_eq!(
        hive_value(&hives, "SOFTWARE", winlogon, "DefaultUserName"),
        "azureuser"
    );
    let certs = Command::new("hivexregedit")
        .arg("--export")
        .arg(hives.join("SOFTWARE"))
        .arg(r"\Microsoft\SystemCertificates\MY\Certificates")
        .output()
        .unwrap();
    let certs = String::from_utf8_lossy(&certs.stdout);
    assert!(!certs.contains("0A1B2C"), "{certs}");

    let services = r"\ControlSet001\Services";
    let start = |s: &str| hive_value(&hives, "SYSTEM", &format!(r"{services}\{s}"), "Start");
    assert_eq!(start(SERVICE_TO_DISABLE), "4");
    assert_eq!(start("wuauserv"), "3");
    let rules = format!(r"{services}\SharedAccess\Parameters\FirewallPolicy\FirewallRules");
    let rule = |name: &str| hive_value(&hives, "SYSTEM", &rules, name);
    assert!(rule("WebHTTP-In").contains("|Active=FALSE|"));
    assert!(rule("RemoteDesktop-UserMode-In-TCP").contains("|Active=TRUE|"));
    assert!(rule("{7A1E}").contains("|Active=TRUE|"));

    let flags = |rid: &str| {
        let f = Command::new("hivexget")
            .arg(hives.join("SAM"))
            .arg(format!(r"\SAM\Domains\Account\Users\{rid}"))
            .arg("F")
            .output()
            .unwrap()
            .stdout;
        u16::from_le_bytes([f[0x38], f[0x39]])
    };
    assert_eq!(flags("000001F4") & 1, 1, "Administrator is disabled again");
    assert_eq!(flags("000001F5") & 1, 1, "Guest is disabled");
}

#[test]
fn locked_build_rejects_another_base() {
    if !prerequisites_met() {
        return;
    }
    let b = built();
    let dir = run_root().join("locked");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(b.dir.join("contoso-win.lock"), dir.join("contoso-win.lock")).unwrap();
    let other = dir.join("other.vhd");
    fs::write(&other, b"another base").unwrap();
    let recipe = dir.join("contoso-win.toml");
    fs::write(
        &recipe,
        format!(
            "name = \"contoso-win\"\nversion = \"1.0.0\"\n\n[base]\nwindows = {{ image = \
             \"other.vhd\", sha256 = \"{}\" }}\n",
            support::sha256_file(&other)
        ),
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("build")
        .arg("--locked")
        .arg(&recipe)
        .arg("--output")
        .arg(dir.join("out"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--locked"), "{stderr}");
    assert!(
        stderr.contains("was written for base image sha256"),
        "{stderr}"
    );
    assert!(!dir.join("out").exists(), "no output folder is left");
}
