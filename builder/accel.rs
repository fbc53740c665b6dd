//! The choice between KVM and TCG (software emulation) for the QEMU guests
//! that forge starts: the libguestfs appliance and boot tests.
//!
//! TCG is the default. On nested virtualization KVM can pass a small probe
//! and still abort or hang once a real kernel runs, so a probe alone cannot
//! prove that KVM works. Set `FORGE_KVM=1` to request KVM; forge then uses
//! it only if the probe below also passes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Environment variable that requests KVM when set to `1`.
pub const KVM_ENV: &str = "FORGE_KVM";

const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit status of QEMU when the probe firmware writes 1 to the
/// `isa-debug-exit` port: QEMU exits with `(value << 1) | 1`.
const PROBE_EXIT_STATUS: i32 = 3;

/// Returns whether guests should run under KVM: only when `FORGE_KVM=1` and
/// the probe passes. The probe runs at most once per process.
pub fn kvm_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        if std::env::var(KVM_ENV).as_deref() != Ok("1") {
            return false;
        }
        let usable = probe_kvm();
        if !usable {
            tracing::warn!("{KVM_ENV}=1 but the KVM probe failed, using TCG");
        }
        usable
    })
}

/// Returns the QEMU `-accel` value matching [`kvm_enabled`].
pub fn qemu_accel() -> &'static str {
    if kvm_enabled() {
        "kvm"
    } else {
        "tcg"
    }
}

/// Starts a 16 MiB KVM guest whose firmware is one instruction sequence at
/// the reset vector: write 1 to the debug-exit port. Passes when QEMU exits
/// with the matching status within the timeout.
fn probe_kvm() -> bool {
    if !Path::new("/dev/kvm").exists() {
        return false;
    }
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let firmware = dir.path().join("probe.bin");

    // 64 KiB of HLT, mapped below 1 MiB so that the reset vector lands at
    // offset 0xFFF0: `mov al, 1; out 0xf4, al; hlt`.
    let mut image = vec![0xf4u8; 0x1_0000];
    image[0xfff0..0xfff5].copy_from_slice(&[0xb0, 0x01, 0xe6, 0xf4, 0xf4]);
    if std::fs::write(&firmware, &image).is_err() {
        return false;
    }

    let child = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-M", "pc", "-m", "16", "-display", "none"])
        .args(["-nodefaults", "-no-reboot", "-nic", "none", "-bios"])
        .arg(&firmware)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };

    let start = Instant::now();
    while start.elapsed() < PROBE_TIMEOUT {
        match child.try_wait() {
            Ok(Some(status)) => return status.code() == Some(PROBE_EXIT_STATUS),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}
