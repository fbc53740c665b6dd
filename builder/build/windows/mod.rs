//! `forge build` from a Windows Server base: the base disk is copied whole
//! beside the output and changed offline in one libguestfs appliance, on
//! its NTFS volume and through hivex on its registry hives. Nothing of
//! Windows runs: what needs Windows is left to commands that run at the
//! first boot.

pub mod harden;
pub mod hivex;
pub mod ntfs_times;
pub mod overlay;
pub mod registry;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use super::{output, Artifacts, BuildOptions, NewFolder, Note, Progress};
use crate::check::rules::windows::{
    ANSWER_FILE_FOLDERS, HOSTS, LOG_FOLDERS, PANTHER_FOLDERS, SETUP_COMPLETE,
};
use crate::check::{self, Status, Verdict, WindowsPolicy};
use crate::exec;
use crate::guestfs::windows::WindowsDisk;
use crate::guestfs::{detect_container, Container};
use crate::lock::{self, Lock};
use crate::recipe::{HiveName, Recipe, RegistryValue, WindowsBase};
use crate::vhd;
use hivex::HostHive;

const GIB: u64 = 1 << 30;
/// Size limits of a Windows OS disk for the Marketplace.
const MIN_WINDOWS_DISK: u64 = 30 * GIB;
const MAX_WINDOWS_DISK: u64 = 250 * GIB;

/// Where forge records the product policy on the Windows volume.
const POLICY_PATH: &str = check::policy::WINDOWS_POLICY_PATH;

/// Builds a recipe with a Windows base into a checked, fixed VHD. The
/// caller has checked the base against its pin.
pub fn build(
    recipe: Recipe,
    base: &WindowsBase,
    recipe_path: &Path,
    opts: &BuildOptions,
) -> Result<Artifacts> {
    preflight()?;
    let lock_path = lock::path_for(recipe_path, &recipe.name);
    let locked = if opts.locked {
        if !lock_path.exists() {
            bail!(
                "--locked needs the lock file {}; build once without --locked to write it",
                lock_path.display()
            );
        }
        let lock = Lock::load(&lock_path)?;
        if lock.base_image_sha256.as_deref() != Some(base.sha256.as_str()) {
            bail!(
                "--locked: the lock file {} was written for base image sha256 {}, but the \
                 recipe pins {}; build without --locked to write a new lock",
                lock_path.display(),
                lock.base_image_sha256.as_deref().unwrap_or("(none)"),
                base.sha256
            );
        }
        Some(lock)
    } else {
        None
    };
    let mut output_folder = NewFolder::create(&opts.output_dir)?;
    let mut outputs = output::Pending::new(&opts.output_dir, &recipe.artifact_stem());
    let scratch = tempfile::Builder::new()
        .prefix("forge-windows-")
        .tempdir()
        .context("failed to create a temporary work folder")?;
    let mut progress = Progress {
        total: 10,
        done: 0,
        started: Instant::now(),
    };

    let image = outputs.vhd_partial();
    progress.step_noted("copy the base image", || {
        let (size, how) = copy_base(&base.path, &image)?;
        let detail = format!("{how}, {:.1} GiB", size as f64 / GIB as f64);
        Ok(((), Note::done().detail(detail)))
    })?;

    let disk = progress.step("open the Windows volume", || WindowsDisk::open(&image))?;
    let mut plan = Plan::new(&recipe);
    let facts = progress.step_noted("check the base", || {
        let facts = check_base(&disk, &recipe.windows)?;
        let note = Note::done().detail(format!("{}, build {}", facts.product, facts.build));
        Ok((facts, note))
    })?;
    let epoch = match (&locked, std::env::var("SOURCE_DATE_EPOCH")) {
        (Some(lock), _) => lock.source_date_epoch,
        (None, Ok(value)) => value
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"))?,
        // The last time Windows wrote its registry, which depends on the
        // base alone.
        (None, Err(_)) => facts.software_mtime.max(0) as u64,
    };
    progress.step("apply layer files", || {
        for layer in &recipe.layers {
            if let Some(dir) = &layer.overlay {
                overlay::apply(&disk, dir, epoch, scratch.path(), &mut plan.touched).with_context(
                    || format!("failed to apply the overlay of layer `{}`", layer.name),
                )?;
            }
        }
        Ok(())
    })?;
    progress.step_noted("edit the registry", || {
        let changes = edit_registry(&disk, &recipe, &facts, scratch.path(), &mut plan)?;
        Ok(((), Note::done().detail(summary(&changes))))
    })?;
    let windows_policy =
        progress.step_noted("clean files and place first-boot commands", || {
            let mut changes = clean_files(&disk, &facts, scratch.path(), &mut plan)?;
            let policy = place_first_boot(&disk, &recipe, &mut plan, &mut changes)?;
            Ok((policy, Note::done().detail(summary(&changes))))
        })?;
    progress.step_noted("close the Windows volume", || {
        // Folders whose entries changed get new times from the appliance's
        // clock; the build's epoch replaces them.
        for path in plan.touched_with_parents() {
            if disk.exists(&path)? {
                disk.set_times(&path, epoch as i64)?;
            }
        }
        let start = disk.volume_start()?;
        disk.close()?;
        let clamped = ntfs_times::clamp(&image, start, epoch)
            .context("failed to set the volume's NTFS times to the build's epoch")?;
        let note = Note::done().detail(format!("{clamped} NTFS times set to the epoch"));
        Ok(((), note))
    })?;
    progress.step("write VHD footer", || {
        let ids = super::disk::DiskIds::derive(&recipe.artifact_stem());
        output::append_footer(&image, &ids, epoch)
    })?;

    let policy = check::Policy {
        declared_units: Vec::new(),
        waivers: recipe.waivers.clone(),
        clamav_db: opts.clamav_db.clone(),
        from_image: false,
        windows: windows_policy.clone(),
    };
    let hashing = {
        let image = image.clone();
        std::thread::spawn(move || output::sha256_sparse(&image))
    };
    let mut report = progress.step("check the finished disk", || {
        check::check_image(&image, &policy, check::Hashing::Skip)
    })?;
    if report.verdict == Verdict::NonCompliant {
        super::print_failures(&report);
        bail!(
            "the image fails {} rule(s); no VHD was written",
            report
                .rules
                .iter()
                .filter(|f| f.status == Status::Fail)
                .count()
        );
    }
    for f in report.rules.iter().filter(|f| f.status == Status::NotRun) {
        tracing::warn!("rule {} was not run: {}", f.id, f.evidence);
    }
    report.first_boot = windows_policy.first_boot.clone();
    report.notes = bitlocker_notes(&windows_policy);

    let mut new_lock = Lock::new(epoch, None, Vec::new(), Vec::new());
    new_lock.base_image_sha256 = Some(base.sha256.clone());
    let artifacts = progress.step("write outputs", || {
        let sha256 = hashing
            .join()
            .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))??;
        let sbom = crate::sbom::Sbom {
            name: recipe.name.clone(),
            version: Some(recipe.version.clone()),
            inventory: crate::sbom::Inventory {
                distro: crate::sbom::Distro {
                    id: "windows".to_owned(),
                    version_id: String::new(),
                },
                packages: Vec::new(),
            },
        };
        let written = outputs.finish(report, sha256, &sbom, epoch)?;
        crate::hashcache::HashCache::new(&opts.cache_dir).put(&written.vhd, &written.sha256);
        if locked.is_none() && !opts.updating {
            super::keep_changed_lock(&lock_path, &new_lock)?;
            new_lock.save(&lock_path)?;
        }
        Ok(Artifacts {
            vhd: written.vhd,
            sbom: written.sbom,
            json_report: written.json_report,
            text_report: written.text_report,
            sha256: written.sha256,
            verdict: written.verdict,
            lock_path: lock_path.clone(),
            lock: new_lock.clone(),
        })
    })?;
    if artifacts.verdict == Verdict::Incomplete {
        eprintln!(
            "warning: the image is incomplete, not compliant: some rules could not run (see above)"
        );
    }
    eprintln!(
        "build finished in {:.1} s",
        progress.started.elapsed().as_secs_f64()
    );
    output_folder.keep();
    Ok(artifacts)
}

/// Checks the host tools a Windows build runs.
fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("forge build must run as root (libguestfs opens the disk read-write)");
    }
    let missing: Vec<String> = [
        ("qemu-img", "qemu-utils"),
        ("supermin", "libguestfs-tools"),
        ("cp", "coreutils"),
    ]
    .iter()
    .filter(|(t, _)| !exec::have(t) && !exec::have(&format!("/usr/sbin/{t}")))
    .map(|(t, p)| format!("{t} (package {p})"))
    .collect();
    if !missing.is_empty() {
        bail!(
            "missing tools: {}; run scripts/install-deps.sh as root",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Copies the base to `dest` as a raw disk, sparse, never through memory:
/// a fixed VHD loses its footer (a new one is written at the end), a raw
/// disk is copied as it is, and a dynamic VHD, VHDX or qcow2 file is
/// converted with qemu-img. Returns the disk size and how it was copied.
fn copy_base(base: &Path, dest: &Path) -> Result<(u64, &'static str)> {
    let container = detect_container(base)?;
    let how = match container {
        Container::FixedVhd | Container::Raw => {
            exec::Cmd::new("cp")
                .arg("--sparse=always")
                .arg(base)
                .arg(dest)
                .label("copy the base image")
                .run()?;
            if container == Container::FixedVhd {
                let f = std::fs::OpenOptions::new().write(true).open(dest)?;
                let len = f.metadata()?.len();
                f.set_len(len - vhd::FOOTER_LEN as u64)?;
                "fixed VHD, footer replaced"
            } else {
                "raw disk"
            }
        }
        Container::DynamicVhd | Container::Vhdx | Container::Qcow2 => {
            exec::Cmd::new("qemu-img")
                .args(["convert", "-q", "-f", container.qemu_format(), "-O", "raw"])
                .arg(base)
                .arg(dest)
                .label("convert the base image to a raw disk")
                .run()?;
            "converted to raw with qemu-img"
        }
    };
    let size = std::fs::metadata(dest)?.len();
    if !(MIN_WINDOWS_DISK..=MAX_WINDOWS_DISK).contains(&size) {
        bail!(
            "the base image {} is a {:.1} GiB disk; a Windows OS disk for the Marketplace must \
             be 30 to 250 GiB: resize the VM's OS disk and export it again",
            base.display(),
            size as f64 / GIB as f64
        );
    }
    if size % 512 != 0 {
        bail!(
            "the base image {} is {size} bytes, not a whole number of 512-byte sectors",
            base.display()
        );
    }
    Ok((size, how))
}

/// What the build learned from the base's registry.
pub struct BaseFacts {
    pub product: String,
    pub build: check::WinBuild,
    /// `/Windows`, as the volume spells it.
    pub system_root: String,
    pub control_set: String,
    pub software: String,
    pub system: String,
    pub sam: String,
    /// Modification time of the SOFTWARE hive, before the build.
    pub software_mtime: i64,
}

/// Reads the hives read-only and rejects a base that cannot become a
/// Marketplace image, before anything on it changes.
fn check_base(disk: &WindowsDisk, policy: &WindowsPolicy) -> Result<BaseFacts> {
    let system_root = disk.system_root()?;
    let hive = |name: &str| -> Result<String> {
        let path = format!("{system_root}/System32/config/{name}");
        disk.find(&path)?
            .with_context(|| format!("the base image has no registry hive {path}"))
    };
    let (software, system, sam) = (hive("SOFTWARE")?, hive("SYSTEM")?, hive("SAM")?);
    let control_set = {
        let h = disk.open_hive(&system, false)?;
        let cs = harden::control_set(&h)?;
        harden::check_system(&h, &cs)?;
        cs
    };
    let version = {
        let h = disk.open_hive(&software, false)?;
        harden::check_software(&h, policy)?
    };
    {
        let h = disk.open_hive(&sam, false)?;
        harden::check_sam(&h, policy)?;
    }
    let product = match disk.product_name() {
        Ok(name) if !name.is_empty() && name != "unknown" => name,
        _ => version.product,
    };
    Ok(BaseFacts {
        product,
        build: version.build,
        software_mtime: disk.mtime(&software)?,
        system_root,
        control_set,
        software,
        system,
        sam,
    })
}

/// What the build changes on the volume, gathered as it goes.
struct Plan {
    /// Paths whose data or entries changed, to get the epoch's times.
    touched: BTreeSet<String>,
    /// The layers' first-boot commands, in order.
    first_boot: Vec<String>,
}

impl Plan {
    fn new(recipe: &Recipe) -> Self {
        Self {
            touched: BTreeSet::new(),
            first_boot: recipe
                .layers
                .iter()
                .flat_map(|l| l.first_boot.iter().cloned())
                .collect(),
        }
    }

    /// Every touched path and the folders above it, deepest first.
    fn touched_with_parents(&self) -> Vec<String> {
        let mut all = BTreeSet::new();
        for path in &self.touched {
            let mut p = path.as_str();
            all.insert(p.to_owned());
            while let Some((parent, _)) = p.rsplit_once('/') {
                p = if parent.is_empty() { "/" } else { parent };
                all.insert(p.to_owned());
                if p == "/" {
                    break;
                }
            }
        }
        let mut list: Vec<String> = all.into_iter().collect();
        list.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        list
    }
}

/// Sets the layers' values and hardens each hive, opening each once and
/// committing it once.
fn edit_registry(
    disk: &WindowsDisk,
    recipe: &Recipe,
    facts: &BaseFacts,
    scratch: &Path,
    plan: &mut Plan,
) -> Result<Vec<String>> {
    let values = |hive: HiveName| -> Vec<&RegistryValue> {
        recipe
            .layers
            .iter()
            .flat_map(|l| l.registry.iter())
            .filter(|v| v.hive == hive)
            .collect()
    };
    let cs = facts.control_set.as_str();
    let firewall_waived = recipe
        .waivers
        .iter()
        .any(|w| w.rule == "win-firewall-rules");
    let mut changes = Vec::new();

    let mut h = disk.open_hive(&facts.system, true)?;
    harden::apply_values(&mut h, &values(HiveName::System), cs)?;
    changes.extend(harden::harden_system(&mut h, cs, &recipe.windows)?);
    h.commit()?;
    if !firewall_waived {
        let disabled = disable_firewall_rules(
            disk,
            &facts.system,
            cs,
            &recipe.windows.firewall_allow,
            scratch,
        )?;
        if disabled > 0 {
            changes.push(format!("disabled {disabled} inbound firewall rule(s)"));
        }
    }

    let mut h = disk.open_hive(&facts.software, true)?;
    harden::apply_values(&mut h, &values(HiveName::Software), cs)?;
    let software = harden::harden_software(&mut h)?;
    changes.extend(software.changes);
    h.commit()?;
    if software.removed_password {
        // hivex marks a deleted value's cells free without clearing them,
        // so the password would stay readable in the hive file.
        // NOTE: the hive's transaction logs (SOFTWARE.LOG1, .LOG2) are not
        // changed and may still contain it.
        let copy = scratch.join("SOFTWARE");
        disk.download(&facts.software, &copy)?;
        let mut bytes = std::fs::read(&copy)?;
        let cleared = harden::clear_free_cells(&mut bytes)
            .with_context(|| format!("failed to clear the free cells of {}", facts.software))?;
        std::fs::write(&copy, &bytes)?;
        disk.upload(&copy, &facts.software)?;
        let _ = std::fs::remove_file(&copy);
        changes.push(format!("cleared {cleared} bytes of free cells in SOFTWARE"));
    }

    let mut h = disk.open_hive(&facts.sam, true)?;
    changes.extend(harden::harden_sam(&mut h, &recipe.windows)?);
    h.commit()?;

    plan.touched.extend([
        facts.system.clone(),
        facts.software.clone(),
        facts.sam.clone(),
    ]);
    for change in &changes {
        tracing::info!("registry: {change}");
    }
    Ok(changes)
}

/// Disables the inbound firewall rules the product does not need, with
/// hivex on the host: the SYSTEM hive is copied out, its rules key written
/// once, and the hive copied back in place. Returns how many rules it
/// disabled.
fn disable_firewall_rules(
    disk: &WindowsDisk,
    system: &str,
    cs: &str,
    allow: &[String],
    scratch: &Path,
) -> Result<usize> {
    let copy = scratch.join("SYSTEM");
    disk.download(system, &copy)?;
    let mut hive = HostHive::open(&copy)?;
    let disabled = match hive.open_key(&harden::firewall_rules_key(cs))? {
        None => 0,
        Some(node) => match harden::disable_firewall_rules(&hive.values(node)?, allow) {
            None => 0,
            Some((values, disabled)) => {
                hive.set_values(node, &values)?;
                hive.commit()?;
                disk.upload(&copy, system)?;
                disabled
            }
        },
    };
    let _ = std::fs::remove_file(&copy);
    Ok(disabled)
}

/// Removes a file and records its folder as touched.
fn remove(
    disk: &WindowsDisk,
    path: &str,
    plan: &mut Plan,
    changes: &mut Vec<String>,
) -> Result<()> {
    disk.rm(path)?;
    tracing::info!("removed {path}");
    changes.push(format!("removed {path}"));
    if let Some((parent, _)) = path.rsplit_once('/') {
        plan.touched
            .insert(if parent.is_empty() { "/" } else { parent }.to_owned());
    }
    Ok(())
}

/// Removes what must not ship: hosts entries, answer files with
/// passwords, logs and private keys.
fn clean_files(
    disk: &WindowsDisk,
    facts: &BaseFacts,
    scratch: &Path,
    plan: &mut Plan,
) -> Result<Vec<String>> {
    let mut changes = Vec::new();

    if let Some(hosts) = disk.find(HOSTS)? {
        if disk.is_file(&hosts)? {
            if let Some(clean) = harden::clean_hosts(&disk.read(&hosts)?) {
                disk.write(&hosts, &clean)?;
                plan.touched.insert(hosts.clone());
                changes.push(format!("removed the entries of {hosts}"));
            }
        }
    }

    for dir in ANSWER_FILE_FOLDERS {
        let Some(dir) = disk.find(dir)? else { continue };
        if !disk.is_dir(&dir)? {
            continue;
        }
        for name in disk.ls(&dir)? {
            let path = join(&dir, &name);
            if harden::is_answer_file(&name)
                && disk.is_file(&path)?
                && harden::contains_credentials(&disk.read(&path)?)
            {
                remove(disk, &path, plan, &mut changes)?;
            }
        }
    }

    for dir in LOG_FOLDERS {
        let Some(dir) = disk.find(dir)? else { continue };
        if !disk.is_dir(&dir)? {
            continue;
        }
        for rel in disk.find_all(&dir, scratch)? {
            let path = join(&dir, &rel);
            if !disk.is_dir(&path)? {
                remove(disk, &path, plan, &mut changes)?;
            }
        }
    }
    for panther in PANTHER_FOLDERS {
        let Some(panther) = disk.find(panther)? else {
            continue;
        };
        if disk.is_dir(&panther)? {
            for name in disk.ls(&panther)? {
                let path = join(&panther, &name);
                let log = matches!(harden::extension(&name).as_deref(), Some("log" | "etl"));
                if log && disk.is_file(&path)? {
                    remove(disk, &path, plan, &mut changes)?;
                }
            }
        }
    }

    let windows_prefix = format!(
        "{}/",
        facts
            .system_root
            .trim_start_matches('/')
            .to_ascii_lowercase()
    );
    for rel in disk.find_all("/", scratch)? {
        if rel.to_ascii_lowercase().starts_with(&windows_prefix) {
            continue;
        }
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        let ext = harden::extension(name).unwrap_or_default();
        let by_name = crate::recipe::PRIVATE_KEY_EXTENSIONS.contains(&ext.as_str());
        let maybe_pem = crate::check::rules::windows::may_hold_private_key(&format!(
            "/{}",
            rel.to_ascii_lowercase()
        ));
        if !(by_name || maybe_pem) {
            continue;
        }
        let path = format!("/{rel}");
        if !disk.is_file(&path)? {
            continue;
        }
        let key = by_name
            || (disk.size(&path)? <= 1 << 20 && harden::is_pem_private_key(&disk.read(&path)?));
        if key {
            remove(disk, &path, plan, &mut changes)?;
        }
    }
    Ok(changes)
}

/// Writes SetupComplete.cmd with the first-boot commands and records the
/// product policy on the volume. Returns the policy as recorded.
fn place_first_boot(
    disk: &WindowsDisk,
    recipe: &Recipe,
    plan: &mut Plan,
    changes: &mut Vec<String>,
) -> Result<WindowsPolicy> {
    let mut policy = recipe.windows.clone();
    let mut commands = plan.first_boot.clone();
    if policy.bitlocker.as_deref() == Some("first-boot") {
        commands.extend(harden::BITLOCKER_FIRST_BOOT.iter().map(|c| c.to_string()));
    }
    if !commands.is_empty() {
        let (folder, file) = SETUP_COMPLETE.rsplit_once('/').expect("an absolute path");
        let scripts = make_dirs(disk, folder, plan)?;
        let path = disk.resolve(&format!("{scripts}/{file}"))?;
        let existing = if disk.is_file(&path)? {
            Some(disk.read(&path)?)
        } else {
            None
        };
        disk.write(
            &path,
            &harden::setup_complete(existing.as_deref(), &commands),
        )?;
        plan.touched.insert(path.clone());
        changes.push(format!(
            "wrote {} first-boot command(s) to {path}",
            commands.len()
        ));
    }
    policy.first_boot = commands;
    let (folder, file) = POLICY_PATH.rsplit_once('/').expect("an absolute path");
    let folder = make_dirs(disk, folder, plan)?;
    let path = disk.resolve(&format!("{folder}/{file}"))?;
    disk.write(
        &path,
        check::policy::render_windows(&recipe.waivers, &policy).as_bytes(),
    )?;
    plan.touched.insert(path);
    Ok(policy)
}

/// Creates the folders of `path` that are missing, reusing the case of
/// those that exist; returns the path as the volume spells it.
fn make_dirs(disk: &WindowsDisk, path: &str, plan: &mut Plan) -> Result<String> {
    let mut at = String::new();
    for name in path.split('/').filter(|n| !n.is_empty()) {
        let next = disk.resolve(&format!("{at}/{name}"))?;
        if disk.exists(&next)? {
            if !disk.is_dir(&next)? {
                bail!("{next} is a file, where forge needs a folder");
            }
        } else {
            disk.mkdir_p(&next)?;
            plan.touched.insert(next.clone());
        }
        at = next;
    }
    Ok(at)
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// A progress line's detail: the number of changes.
fn summary(changes: &[String]) -> String {
    match changes.len() {
        0 => "nothing to change".to_owned(),
        1 => "1 change".to_owned(),
        n => format!("{n} changes"),
    }
}

/// The report's lines about how BitLocker is arranged.
fn bitlocker_notes(policy: &WindowsPolicy) -> Vec<String> {
    let line = if policy.bitlocker.as_deref() == Some("first-boot") {
        "BitLocker: the VHD is not encrypted; SetupComplete.cmd turns BitLocker on at the first \
         boot with a TPM protector, so the VM needs a vTPM (Trusted Launch)"
    } else {
        "BitLocker: the VHD is not encrypted; encryption comes from Azure Disk Encryption when \
         the VM is deployed"
    };
    vec![line.to_owned()]
}
