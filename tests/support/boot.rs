//! Boots a disk image in QEMU until the serial console shows a login
//! prompt, without changing the image: the guest writes to a throwaway
//! qcow2 overlay.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Firmware the guest boots with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS, QEMU's default, booting GRUB from the BIOS boot partition.
    Bios,
    /// OVMF from Debian's `ovmf` package, without Secure Boot.
    Uefi,
}

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const GRUB_CFG: &str = "/boot/grub/grub.cfg";
const LOG_TAIL_LINES: usize = 40;

/// Boots `vhd` with `firmware` and waits until the serial log contains
/// `login:`. Returns the serial log, or an error with its last lines when
/// QEMU exits first or `timeout` expires. QEMU is killed in every case.
///
/// The guest has no network. It uses KVM only when `forge::accel` allows,
/// so under TCG allow a few minutes for a full boot.
pub fn boot_to_login(vhd: &Path, firmware: Firmware, timeout: Duration) -> Result<String> {
    let vhd = vhd
        .canonicalize()
        .with_context(|| format!("disk image not found: {}", vhd.display()))?;
    let work = tempfile::Builder::new().prefix("forge-boot-").tempdir()?;
    let overlay = make_overlay(&vhd, work.path())?;
    drop_rootdelay(&overlay)?;

    let log = work.path().join("serial.log");
    let stderr_path = work.path().join("qemu.stderr");
    let mut command = qemu_command(&overlay, &log, firmware, work.path())?;
    let stderr = fs::File::create(&stderr_path)?;
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .context("failed to start qemu-system-x86_64")?;
    let mut qemu = QemuGuard(child);
    wait_for_login(&mut qemu, &log, &stderr_path, timeout)
}

/// Creates a qcow2 overlay backed by `vhd`, so the guest never writes to
/// the image and sees a fixed VHD without its footer.
fn make_overlay(vhd: &Path, dir: &Path) -> Result<PathBuf> {
    let overlay = dir.join("overlay.qcow2");
    forge::guestfs::create_overlay(vhd, &overlay)?;
    Ok(overlay)
}

/// Removes `rootdelay=300` from the overlay's GRUB configuration.
///
/// Debian's initramfs sleeps the full 300 s at every boot with that
/// parameter. Marketplace images must keep it, so only this throwaway
/// overlay is edited, never the image.
// NOTE: only the Debian path /boot/grub/grub.cfg is edited; on other
// distributions the boot keeps the delay.
fn drop_rootdelay(overlay: &Path) -> Result<()> {
    forge::guestfs::edit_file_in_image(overlay, "qcow2", GRUB_CFG, |text| {
        text.replace(" rootdelay=300", "")
    })
    .with_context(|| format!("failed to remove rootdelay=300 from {GRUB_CFG} in the overlay"))
}

fn qemu_command(overlay: &Path, log: &Path, firmware: Firmware, dir: &Path) -> Result<Command> {
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-machine",
            &format!("q35,accel={}", forge::accel::qemu_accel()),
        ])
        .args([
            "-m", "1024", "-display", "none", "-monitor", "none", "-nic", "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", overlay.display()));
    if firmware == Firmware::Uefi {
        let vars = dir.join("OVMF_VARS.fd");
        fs::copy(OVMF_VARS, &vars).with_context(|| {
            format!("failed to copy {OVMF_VARS}; is the ovmf package installed?")
        })?;
        command
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
            ))
            .arg("-drive")
            .arg(format!(
                "if=pflash,format=raw,unit=1,file={}",
                vars.display()
            ));
    }
    Ok(command)
}

fn wait_for_login(
    qemu: &mut QemuGuard,
    log: &Path,
    stderr_path: &Path,
    timeout: Duration,
) -> Result<String> {
    let started = Instant::now();
    loop {
        let text = fs::read(log).map(|b| String::from_utf8_lossy(&b).into_owned());
        let text = text.unwrap_or_default();
        if text.contains("login:") {
            return Ok(text);
        }
        if let Some(status) = qemu.0.try_wait()? {
            let stderr = fs::read_to_string(stderr_path).unwrap_or_default();
            bail!(
                "QEMU exited with {status} before a login prompt; stderr: {}\nlast lines of the serial log:\n{}",
                stderr.trim(),
                tail_lines(&text, LOG_TAIL_LINES)
            );
        }
        if started.elapsed() >= timeout {
            bail!(
                "no login prompt on the serial console after {timeout:?}; last lines of the serial log:\n{}",
                tail_lines(&text, LOG_TAIL_LINES)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn tail_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Kills QEMU when dropped, whether the boot succeeded or not.
struct QemuGuard(Child);

impl Drop for QemuGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
