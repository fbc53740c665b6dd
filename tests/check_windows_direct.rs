//! Reads the made-up Windows Server 2022 disk of
//! `tests/support/make-windows-synthetic.sh` (MBR, two NTFS partitions)
//! with the direct reader and with libguestfs, and compares what the two
//! show. The image is built once, in about a minute, and libguestfs is
//! launched once. A copy made to look encrypted checks that a BitLocker
//! volume is listed.

mod support;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use forge::check::image::OpenImage;
use forge::check::{ImageView, WalkEntry};

/// Tools the image script and a libguestfs launch need.
const TOOLS: &[&str] = &[
    "guestfish",
    "qemu-img",
    "hivexregedit",
    "hivexget",
    "python3",
    "tar",
    "mkntfs",
    "supermin",
    "qemu-system-x86_64",
];

const HIVES: &[&str] = &[
    "/Windows/System32/config/SAM",
    "/Windows/System32/config/SOFTWARE",
    "/Windows/System32/config/SYSTEM",
];

/// First sector of the Windows partition in the image.
const WINDOWS_START: u64 = 1_026_048;

/// Returns the Windows image, built on first use. Tests copy it and never
/// change it.
fn windows_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(build_image)
}

/// Builds the Windows image into `CARGO_TARGET_TMPDIR/check_windows_direct`.
fn build_image() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("check_windows_direct");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .unwrap_or_else(|e| panic!("failed to empty {}: {e}", dir.display()));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("windows.vhd");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/make-windows-synthetic.sh");
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .arg(&image)
        .output()
        .expect("failed to start make-windows-synthetic.sh");
    assert!(
        output.status.success(),
        "make-windows-synthetic.sh failed with {}: {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("built the Windows image in {:?}", started.elapsed());
    image
}

fn sha256_file(path: &Path) -> String {
    forge::hashcache::sha256_of(path, None).unwrap()
}

fn walk(view: &dyn ImageView) -> Vec<(String, forge::check::FileMeta)> {
    view.walk()
        .unwrap()
        .into_iter()
        .map(|WalkEntry { path, meta }| (path, meta))
        .collect()
}

#[test]
fn direct_reader_matches_libguestfs() {
    if !support::tools_present(TOOLS) {
        return;
    }
    let image = windows_image();
    let before = sha256_file(image);

    let started = Instant::now();
    let direct = OpenImage::open_direct(image)
        .unwrap()
        .expect("the direct reader opens the Windows image");
    eprintln!("direct reader opened the image in {:?}", started.elapsed());
    assert_eq!(direct.reader(), "direct");
    let started = Instant::now();
    let guest = OpenImage::open_guest(image).unwrap();
    eprintln!("libguestfs opened the image in {:?}", started.elapsed());

    let (Some(dv), Some(gv)) = (direct.view(), guest.view()) else {
        panic!("both readers find the Windows root");
    };
    let OpenImage::Direct(direct_image) = &direct else {
        unreachable!("open_direct returns the direct reader")
    };
    let OpenImage::Guest(guest_image) = &guest else {
        unreachable!("open_guest returns libguestfs")
    };
    let (dos, gos) = (direct_image.os().unwrap(), guest_image.os().unwrap());
    assert_eq!(dos.family, "windows");
    assert_eq!(dos.family, gos.family);
    assert_eq!(dos.version, gos.version);
    assert_eq!(dos.arch, "x86_64");
    assert_eq!(dos.arch, gos.arch);

    let (dd, gd) = (direct.disk(), guest.disk());
    assert_eq!(dd.partition_table, "msdos");
    assert_eq!(dd.partition_table, gd.partition_table);
    assert_eq!(dd.virtual_size, gd.virtual_size);
    assert_eq!(dd.partitions.len(), 2);
    for (d, g) in dd.partitions.iter().zip(&gd.partitions) {
        assert_eq!(d.number, g.number);
        assert_eq!(
            d.start_sector, g.start_sector,
            "start of partition {}",
            d.number
        );
        assert_eq!(d.size_bytes, g.size_bytes, "size of partition {}", d.number);
        assert_eq!(d.type_id, g.type_id, "type of partition {}", d.number);
        assert_eq!(d.fs_type.as_deref(), Some("ntfs"));
        assert_eq!(
            d.fs_type, g.fs_type,
            "file system of partition {}",
            d.number
        );
        assert_eq!(d.fs_uuid, g.fs_uuid, "UUID of partition {}", d.number);
    }

    for dir in ["/", "/Windows/System32/config", "/Users", "/missing"] {
        assert_eq!(
            dv.list_dir(dir).unwrap(),
            gv.list_dir(dir).unwrap(),
            "listing of {dir}"
        );
    }
    let names = dv.list_dir("/Windows/System32/config").unwrap();
    assert_eq!(names, ["SAM", "SOFTWARE", "SYSTEM"]);

    let hives: Vec<String> = HIVES.iter().map(|h| h.to_string()).collect();
    for hive in &hives {
        let meta = dv.lstat(hive).unwrap();
        assert!(meta.is_some(), "{hive} exists");
        assert_eq!(meta, gv.lstat(hive).unwrap(), "lstat {hive}");
    }
    let direct_sums = dv.sha256_many(&hives).unwrap();
    assert_eq!(direct_sums.len(), 3);
    assert_eq!(direct_sums, gv.sha256_many(&hives).unwrap());

    let hosts = "/Windows/System32/drivers/etc/hosts";
    assert_eq!(dv.read(hosts).unwrap(), gv.read(hosts).unwrap());
    assert_eq!(
        dv.read_at(hosts, 10, 20).unwrap(),
        gv.read_at(hosts, 10, 20).unwrap()
    );
    for path in [
        "/windows",
        "/Windows/system32",
        "/WINDOWS/System32/config/SOFTWARE",
    ] {
        assert_eq!(dv.lstat(path).unwrap(), None, "{path} differs in case");
        assert_eq!(gv.lstat(path).unwrap(), None, "{path} differs in case");
    }

    let direct_walk = walk(dv);
    assert!(
        direct_walk.len() > 20,
        "the walk lists {} paths",
        direct_walk.len()
    );
    assert_eq!(direct_walk, walk(gv));

    drop(guest);
    drop(direct);
    assert_eq!(
        sha256_file(image),
        before,
        "the readers left the image unchanged"
    );
}

#[test]
fn bitlocker_volume_is_listed_without_os() {
    if !support::tools_present(TOOLS) {
        return;
    }
    let image = windows_image();
    // The same disk with the boot sector of its Windows volume made to
    // look like BitLocker's, whose OEM id is "-FVE-FS-".
    let locked = image.with_file_name("bitlocker.vhd");
    let copied = Command::new("cp")
        .arg("--sparse=always")
        .arg(image)
        .arg(&locked)
        .status()
        .unwrap();
    assert!(copied.success());
    let file = OpenOptions::new().write(true).open(&locked).unwrap();
    file.write_all_at(b"-FVE-FS-", WINDOWS_START * 512 + 3)
        .unwrap();

    let opened = OpenImage::open_direct(&locked)
        .unwrap()
        .expect("the direct reader opens a disk with a BitLocker volume");
    assert!(opened.view().is_none(), "no OS is readable");
    let fs_types: Vec<Option<&str>> = opened
        .disk()
        .partitions
        .iter()
        .map(|p| p.fs_type.as_deref())
        .collect();
    assert_eq!(fs_types, [Some("ntfs"), Some("BitLocker")]);
}
