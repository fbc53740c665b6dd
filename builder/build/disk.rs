//! Assembles the OS disk straight into the output file: GPT with a BIOS boot
//! partition, an EFI system partition and one ext4 root; GRUB for BIOS and
//! UEFI. Every tool here writes into the image file at an offset, so no
//! loop device, partition node or device-mapper is needed.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};

use super::{chroot, reproducible, tree, Context as BuildContext};
use crate::exec::Cmd;

const SECTOR: u64 = 512;
/// The first MiB stays free; the BIOS boot partition starts right after.
const BIOS_BOOT_START: u64 = 2048;
const BIOS_BOOT_SECTORS: u64 = 2048;
const ESP_START: u64 = BIOS_BOOT_START + BIOS_BOOT_SECTORS;
/// 127 MiB of EFI system partition, FAT32.
const ESP_SECTORS: u64 = 127 * 2048;
const ROOT_START: u64 = ESP_START + ESP_SECTORS;
/// Sectors the backup GPT takes at the end of the disk.
const GPT_BACKUP_SECTORS: u64 = 33;

pub const ROOT_PART: u32 = 1;
pub const BIOS_PART: u32 = 14;
pub const ESP_PART: u32 = 15;

/// Identifiers of the disk, derived from the recipe so that a rebuild gives
/// the same ones.
pub struct DiskIds {
    pub disk_guid: String,
    pub root_part_guid: String,
    pub esp_part_guid: String,
    pub bios_part_guid: String,
    pub root_fs_uuid: String,
    pub root_hash_seed: String,
    /// FAT volume id, 8 hex digits.
    pub esp_volume_id: String,
}

fn derived_uuid(seed: &str, label: &str) -> String {
    let h = Sha256::digest(format!("forge:{seed}:{label}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    // Version 4 and RFC 4122 variant bits, so tools accept it as a UUID.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    super::output::uuid_text(&b)
}

impl DiskIds {
    pub fn derive(seed: &str) -> Self {
        let vol = derived_uuid(seed, "esp-volume-id");
        Self {
            disk_guid: derived_uuid(seed, "disk"),
            root_part_guid: derived_uuid(seed, "root-part"),
            esp_part_guid: derived_uuid(seed, "esp-part"),
            bios_part_guid: derived_uuid(seed, "bios-part"),
            root_fs_uuid: derived_uuid(seed, "root-fs"),
            root_hash_seed: derived_uuid(seed, "root-hash-seed"),
            esp_volume_id: vol[..8].to_string(),
        }
    }

    /// The FAT volume id as fstab and blkid show it (`ABCD-1234`).
    pub fn esp_uuid(&self) -> String {
        let v = self.esp_volume_id.to_uppercase();
        format!("{}-{}", &v[..4], &v[4..])
    }
}

/// How the image's GRUB names its programs and folder: `grub-mkconfig` and
/// `/boot/grub` on Debian, `grub2-mkconfig` and `/boot/grub2` on the RHEL
/// family and SUSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grub {
    name: &'static str,
}

impl Grub {
    /// Reads the naming from the programs the tree has.
    pub fn of_tree(t: &Path) -> Self {
        let grub2 = tree::resolve_all(t, "/usr/sbin/grub2-probe").is_ok_and(|p| p.exists())
            && !tree::resolve_all(t, "/usr/sbin/grub-probe").is_ok_and(|p| p.exists());
        Self {
            name: if grub2 { "grub2" } else { "grub" },
        }
    }

    /// `grub-<program>` or `grub2-<program>`.
    pub fn program(self, program: &str) -> String {
        format!("{}-{program}", self.name)
    }

    /// `/boot/grub` or `/boot/grub2`.
    pub fn dir(self) -> String {
        format!("/boot/{}", self.name)
    }
}

/// Writes fstab, the GRUB files and GRUB's boot code into the tree, before
/// it becomes the root file system.
pub fn prepare_tree(ctx: &BuildContext, ids: &DiskIds) -> Result<()> {
    write_boot_config(ctx, ids)?;
    let grub = Grub::of_tree(&ctx.tree);
    for platform in ["i386-pc", "x86_64-efi"] {
        copy_grub_modules(&ctx.tree, grub, platform)?;
    }
    generate_grub_cfg(ctx, grub, ids)?;
    make_grub_images(ctx, grub, ids)
}

/// Writes the files that name forge's layout: fstab with the new root and
/// ESP, and on the RHEL family the kernel command line of the BLS entries
/// and `grubenv`, which carry the root file system's UUID.
pub fn write_boot_config(ctx: &BuildContext, ids: &DiskIds) -> Result<()> {
    let fstab = format!(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n\
         UUID={} / ext4 rw,discard,errors=remount-ro,x-systemd.growfs 0 1\n\
         UUID={} /boot/efi vfat umask=0077 0 1\n",
        ids.root_fs_uuid,
        ids.esp_uuid()
    );
    tree::write(&ctx.tree, "/etc/fstab", fstab.as_bytes(), 0o644)?;
    fs::create_dir_all(tree::resolve_all(&ctx.tree, "/boot/efi")?)?;
    if ctx.family == crate::check::rules::family::Family::Rhel {
        // BLS entries and grubenv carry the command line on this family,
        // not only the generated grub.cfg.
        super::rhel::merge_boot_paths(&ctx.tree)?;
        super::rhel::set_boot_cmdline(
            &ctx.tree,
            &format!("UUID={}", ids.root_fs_uuid),
            super::harden::KERNEL_CMDLINE,
        )?;
    }
    Ok(())
}

/// Copies GRUB's modules where the boot code looks for them, as
/// grub-install does.
fn copy_grub_modules(t: &Path, grub: Grub, platform: &str) -> Result<()> {
    let src = tree::resolve_all(t, &format!("/usr/lib/grub/{platform}"))?;
    let dst = tree::resolve_all(t, &format!("{}/{platform}", grub.dir()))?;
    fs::create_dir_all(&dst)?;
    let entries = fs::read_dir(&src).with_context(|| {
        format!(
            "GRUB files for {platform} missing in the image ({}); install the package \
             with them in a layer (Debian: grub-pc-bin and grub-efi-amd64-bin; RHEL \
             family: grub2-pc-modules and grub2-efi-x64-modules)",
            src.display()
        )
    })?;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".mod") || n.ends_with(".lst") {
            fs::copy(entry.path(), dst.join(&name))?;
        }
    }
    Ok(())
}

/// Runs the image's own grub-mkconfig. grub-probe cannot see a disk that
/// does not exist yet, so a stand-in answers with the planned layout while
/// grub-mkconfig runs, and the real one is put back afterwards.
fn generate_grub_cfg(ctx: &BuildContext, grub: Grub, ids: &DiskIds) -> Result<()> {
    let probe = format!("/usr/sbin/{}", grub.program("probe"));
    let saved = format!("{probe}.forge-saved");
    let (probe, saved) = (probe.as_str(), saved.as_str());
    let probe_host = tree::resolve_parent(&ctx.tree, probe)?;
    let saved_host = tree::resolve_parent(&ctx.tree, saved)?;
    ensure!(
        probe_host.is_file(),
        "{probe} is missing in the image; install GRUB's tools (Debian: grub2-common; \
         RHEL family: grub2-tools)"
    );
    fs::rename(&probe_host, &saved_host)?;
    let result = (|| -> Result<()> {
        tree::write(&ctx.tree, probe, probe_stand_in(ids).as_bytes(), 0o755)?;
        let argv = vec![
            grub.program("mkconfig"),
            "-o".to_owned(),
            format!("{}/grub.cfg", grub.dir()),
        ];
        let by_uuid = vec![(
            format!("disk/by-uuid/{}", ids.root_fs_uuid),
            "../../null".to_string(),
        )];
        chroot::command_with_dev_links(&ctx.tree, &argv, &ctx.chroot_env(), &by_uuid)?
            .run()
            .with_context(|| format!("{} failed", grub.program("mkconfig")))?;
        Ok(())
    })();
    fs::rename(&saved_host, &probe_host)?;
    result
}

fn probe_stand_in(ids: &DiskIds) -> String {
    format!(
        r#"#!/bin/sh
# Stand-in for grub-probe while forge generates grub.cfg for a disk that
# is not attached to the build host. It answers with the planned layout.
target=
while [ $# -gt 0 ]; do
  case "$1" in
    --target=*) target=${{1#--target=}} ;;
    -t) shift; target=$1 ;;
  esac
  shift
done
case "$target" in
  device) echo /dev/sda{root} ;;
  disk) echo /dev/sda ;;
  fs) echo ext2 ;;
  fs_uuid) echo {uuid} ;;
  partuuid) echo {partuuid} ;;
  partmap) echo gpt ;;
  abstraction) ;;
  drive) echo '(hd0,gpt{root})' ;;
  compatibility_hint) echo 'hd0,gpt{root}' ;;
  hints_string) echo '--hint-bios=hd0,gpt{root} --hint-efi=hd0,gpt{root} --hint-baremetal=ahci0,gpt{root}' ;;
  *) echo "grub-probe stand-in: unknown target $target" >&2; exit 1 ;;
esac
"#,
        root = ROOT_PART,
        uuid = ids.root_fs_uuid,
        partuuid = ids.root_part_guid,
    )
}

/// Builds GRUB's BIOS core image and UEFI executable with the image's own
/// grub-mkimage. Both find the root file system by UUID and read
/// `/boot/grub/grub.cfg` from it.
fn make_grub_images(ctx: &BuildContext, grub: Grub, ids: &DiskIds) -> Result<()> {
    let dir = grub.dir();
    let early = format!(
        "search.fs_uuid {} root\nset prefix=($root){dir}\n",
        ids.root_fs_uuid
    );
    let early_path = format!("{dir}/forge-early.cfg");
    tree::write(&ctx.tree, &early_path, early.as_bytes(), 0o644)?;
    let images: [(&str, String, &[&str]); 2] = [
        (
            "i386-pc",
            format!("{dir}/i386-pc/core.img"),
            &["biosdisk", "part_gpt", "ext2", "search_fs_uuid"],
        ),
        (
            "x86_64-efi",
            format!("{dir}/x86_64-efi/grubx64.efi"),
            &["part_gpt", "ext2", "fat", "search_fs_uuid"],
        ),
    ];
    for (platform, output, modules) in images {
        let mut argv: Vec<String> = vec![
            grub.program("mkimage"),
            "-O".into(),
            platform.into(),
            "-d".into(),
            format!("/usr/lib/grub/{platform}"),
            "-o".into(),
            output,
            "-p".into(),
            dir.clone(),
            "-c".into(),
            early_path.clone(),
        ];
        argv.extend(modules.iter().map(|m| m.to_string()));
        chroot::command(&ctx.tree, &argv, &ctx.chroot_env())?
            .run()
            .with_context(|| format!("grub-mkimage for {platform} failed"))?;
    }
    Ok(())
}

/// Creates the partitioned disk at `image`, fills the root file system from
/// the tree and installs the boot code.
pub fn assemble(ctx: &BuildContext, ids: &DiskIds, image: &Path) -> Result<()> {
    let size = ctx.recipe.disk_size;
    let total_sectors = size / SECTOR;
    let root_end = total_sectors - GPT_BACKUP_SECTORS - 1;
    ensure!(
        root_end > ROOT_START + 2048,
        "disk size {size} is too small for the layout"
    );

    let f = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(image)
        .with_context(|| format!("failed to create {}", image.display()))?;
    f.set_len(size)?;
    drop(f);

    Cmd::new("sgdisk")
        .args(["--zap-all", "--set-alignment=2048"])
        .arg(format!("--disk-guid={}", ids.disk_guid))
        .arg(format!(
            "--new={BIOS_PART}:{BIOS_BOOT_START}:{}",
            ESP_START - 1
        ))
        .arg(format!("--typecode={BIOS_PART}:EF02"))
        .arg(format!(
            "--partition-guid={BIOS_PART}:{}",
            ids.bios_part_guid
        ))
        .arg(format!("--change-name={BIOS_PART}:bios-boot"))
        .arg(format!("--new={ESP_PART}:{ESP_START}:{}", ROOT_START - 1))
        .arg(format!("--typecode={ESP_PART}:EF00"))
        .arg(format!("--partition-guid={ESP_PART}:{}", ids.esp_part_guid))
        .arg(format!("--change-name={ESP_PART}:efi"))
        .arg(format!("--new={ROOT_PART}:{ROOT_START}:{root_end}"))
        .arg(format!("--typecode={ROOT_PART}:8304"))
        .arg(format!(
            "--partition-guid={ROOT_PART}:{}",
            ids.root_part_guid
        ))
        .arg(format!("--change-name={ROOT_PART}:root"))
        .arg(image)
        .run()
        .context("partitioning with sgdisk failed")?;

    make_esp(ctx, ids, image)?;
    make_root_fs(ctx, ids, image, root_end)?;
    install_bios_boot(ctx, image)
}

fn make_esp(ctx: &BuildContext, ids: &DiskIds, image: &Path) -> Result<()> {
    Cmd::new("mkfs.fat")
        // Fixed time stamps in the boot sector and label entry.
        .arg("--invariant")
        // One sector per cluster gives 127 MiB enough clusters to be FAT32.
        .args(["-F", "32", "-s", "1", "-n", "EFI", "-i", &ids.esp_volume_id])
        .arg(format!("--offset={ESP_START}"))
        .arg(image)
        .arg((ESP_SECTORS * SECTOR / 1024).to_string())
        .run()
        .context("creating the EFI system partition failed")?;
    let target = format!("{}@@{}", image.display(), ESP_START * SECTOR);
    let grub_dir = Grub::of_tree(&ctx.tree).dir();
    let efi = tree::resolve_all(&ctx.tree, &format!("{grub_dir}/x86_64-efi/grubx64.efi"))?;
    let mtools = |args: &[&str]| -> Result<()> {
        Cmd::new(args[0])
            .env("MTOOLS_SKIP_CHECK", "1")
            // mtools stamps new entries with this time instead of now.
            .env("SOURCE_DATE_EPOCH", ctx.epoch.to_string())
            .args(["-i", &target])
            .args(&args[1..])
            .run()
            .map(|_| ())
    };
    mtools(&["mmd", "::/EFI", "::/EFI/BOOT", "::/EFI/debian"])?;
    let efi_s = efi.to_string_lossy().into_owned();
    // The removable-media path boots with no NVRAM entry, as on a new VM.
    mtools(&["mcopy", &efi_s, "::/EFI/BOOT/BOOTX64.EFI"])?;
    mtools(&["mcopy", &efi_s, "::/EFI/debian/grubx64.efi"])
        .context("copying GRUB into the EFI system partition failed")
}

fn make_root_fs(ctx: &BuildContext, ids: &DiskIds, image: &Path, root_end: u64) -> Result<()> {
    let sectors = root_end + 1 - ROOT_START;
    let size_kib = sectors * SECTOR / 4096 * 4;
    reproducible::clamp_times(&ctx.tree, ctx.epoch)?;
    let copy = tempfile::Builder::new()
        .prefix("forge-sorted-")
        .tempdir_in(SORTED_COPY_PARENT)
        .with_context(|| format!("failed to create a folder in {SORTED_COPY_PARENT}"))?;
    reproducible::sorted_copy(&ctx.tree, copy.path())?;
    Cmd::new("mkfs.ext4")
        .env("E2FSPROGS_FAKE_TIME", ctx.epoch.to_string())
        .args([
            "-F",
            "-q",
            "-b",
            "4096",
            "-L",
            "root",
            "-U",
            &ids.root_fs_uuid,
        ])
        .arg("-E")
        .arg(format!(
            "offset={},hash_seed={},nodiscard,lazy_itable_init=1,root_owner=0:0",
            ROOT_START * SECTOR,
            ids.root_hash_seed
        ))
        .arg("-d")
        .arg(copy.path())
        .arg(image)
        .arg(format!("{size_kib}k"))
        .run()
        .context("creating the root file system with mkfs.ext4 failed")?;
    drop(copy);
    reproducible::fix_inode_times(image, ROOT_START * SECTOR, ctx.epoch)
}

/// tmpfs folder for the name-ordered copy of the tree that `mkfs.ext4 -d`
/// reads (see [`reproducible::sorted_copy`]).
const SORTED_COPY_PARENT: &str = "/dev/shm";

/// Installs GRUB's BIOS boot code as grub-bios-setup does for a GPT disk:
/// boot.img in the first sector, pointing at core.img, which fills the
/// start of the BIOS boot partition and lists the sectors that follow.
fn install_bios_boot(ctx: &BuildContext, image: &Path) -> Result<()> {
    let boot_img = fs::read(tree::resolve_all(
        &ctx.tree,
        "/usr/lib/grub/i386-pc/boot.img",
    )?)?;
    let grub_dir = Grub::of_tree(&ctx.tree).dir();
    let mut core = fs::read(tree::resolve_all(
        &ctx.tree,
        &format!("{grub_dir}/i386-pc/core.img"),
    )?)?;
    ensure!(
        boot_img.len() == 512,
        "boot.img is {} bytes, expected 512",
        boot_img.len()
    );
    let core_sectors = (core.len() as u64).div_ceil(SECTOR);
    if core_sectors > BIOS_BOOT_SECTORS {
        bail!(
            "core.img ({} bytes) does not fit the BIOS boot partition",
            core.len()
        );
    }
    core.resize((core_sectors * SECTOR) as usize, 0);
    patch_core_blocklist(&mut core, BIOS_BOOT_START, core_sectors)?;

    let mut f = OpenOptions::new().read(true).write(true).open(image)?;
    let mut mbr = [0u8; 512];
    f.read_exact(&mut mbr)?;
    let mbr = patch_boot_sector(&boot_img, &mbr, BIOS_BOOT_START);
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&mbr)?;
    f.seek(SeekFrom::Start(BIOS_BOOT_START * SECTOR))?;
    f.write_all(&core)?;
    f.sync_all()?;
    Ok(())
}

/// Offsets in boot.img, from GRUB's `include/grub/i386/pc/boot.h`.
const KERNEL_SECTOR_OFFSET: usize = 0x5c;
const BOOT_DRIVE_OFFSET: usize = 0x64;
const DRIVE_CHECK_OFFSET: usize = 0x66;
const PARTITION_TABLE_START: usize = 0x1b8;

/// boot.img's code with the existing disk signature and partition table
/// kept, core.img's first sector recorded, and the drive check enabled.
fn patch_boot_sector(boot_img: &[u8], current: &[u8; 512], core_sector: u64) -> [u8; 512] {
    let mut out = [0u8; 512];
    out.copy_from_slice(boot_img);
    out[PARTITION_TABLE_START..510].copy_from_slice(&current[PARTITION_TABLE_START..510]);
    out[510] = 0x55;
    out[511] = 0xaa;
    out[KERNEL_SECTOR_OFFSET..KERNEL_SECTOR_OFFSET + 8].copy_from_slice(&core_sector.to_le_bytes());
    // 0xff: use the drive number the BIOS passes in DL.
    out[BOOT_DRIVE_OFFSET] = 0xff;
    // Replace the jump over the drive check with two NOPs, for BIOSes that
    // pass a wrong drive number, as grub-bios-setup does for hard disks.
    out[DRIVE_CHECK_OFFSET] = 0x90;
    out[DRIVE_CHECK_OFFSET + 1] = 0x90;
    out
}

/// The first sector of core.img (diskboot.img) ends with a block list:
/// start sector (u64), sector count (u16) and load segment (u16). The rest
/// of core.img follows its first sector contiguously.
fn patch_core_blocklist(core: &mut [u8], first_sector: u64, sectors: u64) -> Result<()> {
    const ENTRY: usize = 12;
    let at = 512 - ENTRY;
    let segment = u16::from_le_bytes([core[at + 10], core[at + 11]]);
    ensure!(
        segment == 0x820,
        "core.img has an unexpected block list (segment {segment:#x})"
    );
    core[at..at + 8].copy_from_slice(&(first_sector + 1).to_le_bytes());
    core[at + 8..at + 10].copy_from_slice(&((sectors - 1) as u16).to_le_bytes());
    // The entry before is the list's terminator.
    core[at - ENTRY..at].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_uuids() {
        let a = DiskIds::derive("web-1.0");
        let b = DiskIds::derive("web-1.0");
        assert_eq!(a.root_fs_uuid, b.root_fs_uuid);
        assert_ne!(a.root_fs_uuid, a.disk_guid);
        assert_eq!(a.root_fs_uuid.len(), 36);
        assert_eq!(&a.root_fs_uuid[14..15], "4");
        assert_eq!(a.esp_uuid().len(), 9);
    }

    #[test]
    fn boot_sector_keeps_partition_table() {
        let boot = [0xabu8; 512];
        let mut current = [0u8; 512];
        current[0x1be] = 0xee;
        let out = patch_boot_sector(&boot, &current, 2048);
        assert_eq!(out[0x1be], 0xee);
        assert_eq!(&out[0x5c..0x64], &2048u64.to_le_bytes());
        assert_eq!(out[0x66], 0x90);
        assert_eq!(&out[510..], &[0x55, 0xaa]);
    }

    #[test]
    fn core_blocklist_points_past_first_sector() {
        let mut core = vec![0u8; 4 * 512];
        core[510] = 0x20;
        core[511] = 0x08;
        patch_core_blocklist(&mut core, 2048, 4).unwrap();
        assert_eq!(&core[500..508], &2049u64.to_le_bytes());
        assert_eq!(&core[508..510], &3u16.to_le_bytes());
    }
}
