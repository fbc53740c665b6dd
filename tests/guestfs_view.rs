//! Opens a real GPT disk image with `GuestImage` and checks the disk facts,
//! the OS inspection and every `ImageView` method against what
//! `tests/support/mkimage.sh` put there.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use forge::check::{FileKind, ImageView};
use forge::guestfs::GuestImage;
use forge::vhd::Footer;

/// One appliance at a time: two parallel TCG guests on a small machine
/// make both slower than running them in turn.
static APPLIANCE: Mutex<()> = Mutex::new(());

const GPT_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const GPT_ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const GPT_LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const DISK_SIZE: u64 = 1 << 30;

fn open_timed(path: &Path) -> GuestImage {
    let started = Instant::now();
    let image = GuestImage::open(path).unwrap_or_else(|e| panic!("open {}: {e:#}", path.display()));
    eprintln!("GuestImage::open took {:?}", started.elapsed());
    image
}

fn assert_disk_layout(image: &GuestImage) {
    let disk = image.disk();
    assert_eq!(disk.virtual_size, DISK_SIZE);
    assert_eq!(disk.partition_table, "gpt");
    assert!(
        disk.lvm_pvs.is_empty(),
        "unexpected PVs: {:?}",
        disk.lvm_pvs
    );

    let numbers: Vec<u32> = disk.partitions.iter().map(|p| p.number).collect();
    assert_eq!(numbers, [1, 2, 3]);
    let starts: Vec<u64> = disk.partitions.iter().map(|p| p.start_sector).collect();
    assert_eq!(starts, [2048, 4096, 208896]);
    let types: Vec<&str> = disk.partitions.iter().map(|p| p.type_id.as_str()).collect();
    assert_eq!(types, [GPT_BIOS_BOOT, GPT_ESP, GPT_LINUX]);
    let fs_types: Vec<Option<&str>> = disk
        .partitions
        .iter()
        .map(|p| p.fs_type.as_deref())
        .collect();
    assert_eq!(fs_types, [None, Some("vfat"), Some("ext4")]);
    assert_eq!(disk.partitions[0].size_bytes, 1 << 20);
    assert_eq!(disk.partitions[1].size_bytes, 100 << 20);
}

fn assert_os(image: &GuestImage) {
    let os = image.os().expect("inspection finds the Debian root");
    assert_eq!(os.family, "debian");
    assert_eq!(os.version, "12");
    assert_eq!(os.arch, "x86_64");
    assert!(image.view().is_some());
}

fn assert_read(view: &dyn ImageView) {
    let passwd = view
        .read("/etc/passwd")
        .unwrap()
        .expect("/etc/passwd exists");
    assert!(passwd.starts_with(b"root:x:0:0:root:/root:/bin/bash\n"));
    assert_eq!(view.read("/etc/missing").unwrap(), None);
    assert_eq!(view.read("/missing/dir/file").unwrap(), None);
    assert_eq!(view.read("/etc").unwrap(), None, "a directory is not read");
    assert_eq!(
        view.read("/etc/localtime").unwrap(),
        None,
        "a symlink is not followed"
    );
    assert_eq!(view.read("/var/log/empty.log").unwrap(), Some(Vec::new()));

    // Through the /bin -> usr/bin symlink in a middle component.
    assert!(view
        .read("/bin/ls")
        .unwrap()
        .expect("/bin/ls")
        .starts_with(b"\x7fELF"));

    let big = view
        .read("/root/big.bin")
        .unwrap()
        .expect("/root/big.bin exists");
    assert_eq!(big.len(), 5 << 20);
    assert!(big.iter().all(|b| *b == b'x'));

    let text = view
        .read_text("/etc/os-release")
        .unwrap()
        .expect("os-release");
    assert!(text.contains("VERSION_ID=\"12\""));

    // Files on the ESP, mounted at /boot/efi from fstab.
    let loader = view.read("/boot/efi/EFI/BOOT/BOOTX64.EFI").unwrap();
    assert_eq!(loader.as_deref(), Some(&b"not a real loader\n"[..]));
}

fn assert_read_at(view: &dyn ImageView) {
    assert_eq!(view.read_at("/etc/passwd", 5, 4).unwrap(), b"x:0:");
    assert_eq!(view.read_at("/etc/passwd", 1 << 20, 16).unwrap(), b"");
    let tail = view.read_at("/root/big.bin", (5 << 20) - 3, 100).unwrap();
    assert_eq!(tail, b"xxx");
    let span = view.read_at("/root/big.bin", 1, (3 << 20) + 7).unwrap();
    assert_eq!(span.len(), (3 << 20) + 7);
}

fn assert_lstat(view: &dyn ImageView) {
    let shadow = view
        .lstat("/etc/shadow")
        .unwrap()
        .expect("/etc/shadow exists");
    assert_eq!(shadow.kind, FileKind::File);
    assert_eq!(shadow.mode, 0o640);
    assert_eq!((shadow.uid, shadow.gid), (0, 42));

    let home = view
        .lstat("/home/alice")
        .unwrap()
        .expect("/home/alice exists");
    assert_eq!(home.kind, FileKind::Dir);
    assert_eq!((home.uid, home.gid), (1000, 1000));

    let link = view
        .lstat("/etc/localtime")
        .unwrap()
        .expect("/etc/localtime exists");
    assert_eq!(link.kind, FileKind::Symlink);
    assert_eq!(
        view.lstat("/").unwrap().expect("/ exists").kind,
        FileKind::Dir
    );
    assert_eq!(view.lstat("/etc/missing").unwrap(), None);
    assert_eq!(view.lstat("/missing/dir/file").unwrap(), None);
    let passwd_size = view.lstat("/etc/passwd").unwrap().expect("passwd").size;
    assert_eq!(passwd_size, 78);
}

fn assert_links_and_dirs(view: &dyn ImageView) {
    let target = view.read_link("/etc/localtime").unwrap();
    assert_eq!(target.as_deref(), Some("/usr/share/zoneinfo/Etc/UTC"));
    assert_eq!(view.read_link("/bin").unwrap().as_deref(), Some("usr/bin"));
    assert_eq!(view.read_link("/etc/passwd").unwrap(), None);
    assert_eq!(view.read_link("/etc/missing").unwrap(), None);

    let etc = view.list_dir("/etc").unwrap();
    let expected = [
        "debian_version",
        "fstab",
        "localtime",
        "os-release",
        "passwd",
        "shadow",
    ];
    assert_eq!(etc, expected);
    assert_eq!(view.list_dir("/boot/efi/EFI").unwrap(), ["BOOT"]);
    assert!(view.list_dir("/missing").unwrap().is_empty());
    assert!(view.list_dir("/etc/passwd").unwrap().is_empty());
}

fn assert_walk(view: &dyn ImageView) {
    let started = Instant::now();
    let entries = view.walk().unwrap();
    eprintln!("walk: {} entries in {:?}", entries.len(), started.elapsed());

    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "walk output is sorted");
    assert!(!paths.contains(&"/"));
    for expected in [
        "/etc/passwd",
        "/bin",
        "/usr/bin/ls",
        "/boot/efi/EFI/BOOT/BOOTX64.EFI",
    ] {
        assert!(paths.contains(&expected), "walk misses {expected}");
    }
    let shadow = entries
        .iter()
        .find(|e| e.path == "/etc/shadow")
        .expect("shadow in walk");
    assert_eq!(shadow.meta.mode, 0o640);
    let bin = entries
        .iter()
        .find(|e| e.path == "/bin")
        .expect("/bin in walk");
    assert_eq!(bin.meta.kind, FileKind::Symlink);

    let started = Instant::now();
    let again = view.walk().unwrap();
    eprintln!("cached walk took {:?}", started.elapsed());
    assert_eq!(again.len(), entries.len());
}

/// Opens `path`, runs every check on it, and checks that the file did not
/// change.
fn check_image(path: &Path, format: &str) {
    let before = support::sha256_file(path);
    let bytes_len = std::fs::metadata(path).unwrap().len();
    let tail = std::fs::read(path)
        .unwrap()
        .split_off(bytes_len as usize - 512);
    {
        let image = open_timed(path);
        assert_eq!(image.disk().format, format);
        assert_eq!(image.disk().file_len, bytes_len);
        assert_eq!(image.disk().tail, tail);
        assert_disk_layout(&image);
        assert_os(&image);
        let view = image.view().expect("OS mounted");
        assert_read(view);
        assert_read_at(view);
        assert_lstat(view);
        assert_links_and_dirs(view);
        assert_walk(view);
    }
    assert_eq!(support::sha256_file(path), before, "the image file changed");
}

#[test]
fn raw_gpt_image() {
    if !support::tools_present(support::IMAGE_TOOLS) {
        return;
    }
    support::select_libguestfs_accel();
    let _one_at_a_time = APPLIANCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = support::make_test_image(dir.path());

    check_image(&path, "raw");
}

/// A fixed VHD with forge's own footer, whose creator QEMU does not know:
/// the guest must still see the whole disk, without the footer.
#[test]
fn fixed_vhd_image() {
    if !support::tools_present(support::IMAGE_TOOLS) {
        return;
    }
    support::select_libguestfs_accel();
    let _one_at_a_time = APPLIANCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = support::make_test_image(dir.path());
    let footer = Footer::fixed(DISK_SIZE, 1_700_000_000, [9; 16]).to_bytes();
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&footer)
        .unwrap();

    check_image(&path, "vpc");
}

/// Times a walk over about 25,000 files; run it with `--ignored`.
#[test]
#[ignore = "timing only: builds a larger image and takes a minute"]
fn walk_large_tree() {
    if !support::tools_present(support::IMAGE_TOOLS) {
        return;
    }
    support::select_libguestfs_accel();
    let _one_at_a_time = APPLIANCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let path = support::make_test_image_with(dir.path(), 25_000);
    eprintln!(
        "mkimage.sh with 25000 extra files took {:?}",
        started.elapsed()
    );

    let image = open_timed(&path);
    let view = image.view().expect("OS mounted");
    let started = Instant::now();
    let entries = view.walk().unwrap();
    eprintln!("walk: {} entries in {:?}", entries.len(), started.elapsed());
    assert!(entries.len() > 25_000);
}

#[test]
fn disk_without_os() {
    if !support::tools_present(support::IMAGE_TOOLS) {
        return;
    }
    support::select_libguestfs_accel();
    let _one_at_a_time = APPLIANCE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    let image = open_timed(&path);
    assert_eq!(image.disk().partition_table, "");
    assert!(image.disk().partitions.is_empty());
    assert_eq!(image.disk().virtual_size, 64 << 20);
    assert!(image.os().is_none());
    assert!(image.view().is_none());
}

#[test]
fn missing_image_error() {
    let error = match GuestImage::open(Path::new("/nonexistent/forge-test.vhd")) {
        Ok(_) => panic!("opening a missing file succeeded"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("/nonexistent/forge-test.vhd"), "{error}");
    assert!(error.contains("No such file"), "{error}");
}
