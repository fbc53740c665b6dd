//! Error paths of the boot harness, plus a real boot of an image named by
//! `FORGE_BOOT_IMAGE` (ignored by default: it takes minutes under TCG).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::boot::{boot_to_login, Firmware};

#[test]
fn missing_image_error() {
    let path = Path::new("/nonexistent/forge-boot.vhd");
    let error = boot_to_login(path, Firmware::Bios, Duration::from_secs(5)).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("disk image not found"), "{message}");
    assert!(message.contains("/nonexistent/forge-boot.vhd"), "{message}");
}

#[test]
fn image_without_os_error() {
    if !support::tools_present(support::IMAGE_TOOLS) {
        return;
    }
    support::select_libguestfs_accel();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();

    let error = boot_to_login(&path, Firmware::Bios, Duration::from_secs(5)).unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("rootdelay=300"), "{message}");
    assert!(message.contains("no OS found"), "{message}");
}

/// The test image has a GRUB configuration but no boot loader, so QEMU
/// runs until the timeout. The image must stay unchanged.
#[test]
fn timeout_without_boot_loader() {
    if !support::tools_present(support::IMAGE_TOOLS) {
        return;
    }
    support::select_libguestfs_accel();
    let dir = tempfile::tempdir().unwrap();
    let path = support::make_test_image(dir.path());
    let before = support::sha256_file(&path);

    for firmware in [Firmware::Bios, Firmware::Uefi] {
        let started = Instant::now();
        let error = boot_to_login(&path, firmware, Duration::from_secs(10)).unwrap_err();
        let message = format!("{error:#}");
        eprintln!("{firmware:?}: failed after {:?}", started.elapsed());
        assert!(
            message.contains("no login prompt"),
            "{firmware:?}: {message}"
        );
    }
    assert_eq!(
        support::sha256_file(&path),
        before,
        "the image file changed"
    );
}

/// Boots the image in `FORGE_BOOT_IMAGE` with the firmware in
/// `FORGE_BOOT_FIRMWARE` (`bios` or `uefi`, default `bios`).
#[test]
#[ignore = "needs FORGE_BOOT_IMAGE and minutes of TCG time"]
fn boots_image_to_login() {
    let image = std::env::var("FORGE_BOOT_IMAGE").expect("set FORGE_BOOT_IMAGE to a disk image");
    let firmware = match std::env::var("FORGE_BOOT_FIRMWARE").as_deref() {
        Ok("uefi") => Firmware::Uefi,
        _ => Firmware::Bios,
    };
    support::select_libguestfs_accel();
    let before = support::sha256_file(Path::new(&image));

    let started = Instant::now();
    let log = boot_to_login(Path::new(&image), firmware, Duration::from_secs(900))
        .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{firmware:?} boot to login took {:?}", started.elapsed());

    assert!(log.contains("login:"));
    assert_eq!(
        support::sha256_file(Path::new(&image)),
        before,
        "the image file changed"
    );
}
