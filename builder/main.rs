//! Command-line entry point: parses arguments, sets up logging, runs one
//! subcommand and maps its result to an exit code.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use forge::build::{self, chroot, BuildOptions};

#[derive(Parser)]
#[command(
    name = "forge",
    version,
    about = "Build and check Azure Marketplace VM images"
)]
struct Cli {
    /// Log every external command line (repeat for more detail).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Arguments that `forge build` and `forge update` share.
#[derive(clap::Args)]
struct BuildArgs {
    /// Recipe file (TOML).
    recipe: PathBuf,
    /// Folder for the VHD and its reports.
    #[arg(short, long, default_value = "out")]
    output: PathBuf,
    /// Folder for downloaded packages and cached build stages, reused by
    /// later builds.
    #[arg(long, env = "FORGE_CACHE_DIR", default_value = "/var/cache/forge")]
    cache_dir: PathBuf,
    /// Size bound on the stage cache in the cache folder, such as 20GiB.
    /// After storing a stage, the build deletes the least recently used
    /// stages to stay under it.
    #[arg(long, env = "FORGE_CACHE_MAX_SIZE", default_value = "20GiB", value_parser = parse_size)]
    cache_max_size: u64,
    /// ClamAV signature database folder for the malware scan.
    #[arg(long)]
    clamav_db: Option<PathBuf>,
}

impl BuildArgs {
    /// Returns the recipe path and the build options these arguments give.
    fn into_options(self, locked: bool, updating: bool) -> (PathBuf, BuildOptions) {
        let opts = BuildOptions {
            output_dir: self.output,
            cache_dir: self.cache_dir,
            cache_max_size: self.cache_max_size,
            clamav_db: self.clamav_db,
            locked,
            updating,
        };
        (self.recipe, opts)
    }
}

/// Prints the paths of a build's outputs and its checksum on stdout.
fn print_artifacts(a: &build::Artifacts) {
    println!("{}", a.vhd.display());
    println!("sha256 {}", a.sha256);
    println!("report {}", a.json_report.display());
    println!("lock {}", a.lock_path.display());
    println!("sbom {}", a.sbom.display());
}

#[derive(Subcommand)]
enum Command {
    /// Build a recipe into a checked, fixed VHD.
    Build {
        #[command(flatten)]
        args: BuildArgs,
        /// Install exactly the versions in the recipe's lock file
        /// (`<name>.lock` beside the recipe).
        #[arg(long)]
        locked: bool,
    },
    /// Rebuild a recipe with the mirror's current packages, refresh its lock
    /// file and list the packages that changed.
    Update {
        #[command(flatten)]
        args: BuildArgs,
    },
    /// Manage forge's cache folder.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Check an image against every rule and print the report.
    Check {
        /// Image file: fixed or dynamic VHD, VHDX, qcow2 or raw.
        image: PathBuf,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// ClamAV signature database folder for the malware scan.
        #[arg(long)]
        clamav_db: Option<PathBuf>,
        /// Recipe whose declared services and waivers apply, instead of
        /// those a forge build recorded in the image.
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Folder where forge remembers image checksums; a checked image
        /// that has not changed since is not hashed again.
        #[arg(long, env = "FORGE_CACHE_DIR", default_value = "/var/cache/forge")]
        cache_dir: PathBuf,
    },
    /// Compare two images: partition table, VHD footer, packages and files.
    ///
    /// Exits 0 when the images are identical in every compared field, 1 when
    /// they differ and 2 when an image cannot be read.
    Diff {
        /// First image (lines starting with `-` are only in this one).
        a: PathBuf,
        /// Second image (lines starting with `+` are only in this one).
        b: PathBuf,
        /// Report format on stdout.
        #[arg(long, value_enum, default_value = "text")]
        format: DiffFormat,
    },
    /// Print the SPDX 2.3 SBOM of an image: its installed dpkg packages, and
    /// the image file with its SHA-256 as the described package.
    Sbom {
        /// Image file: fixed or dynamic VHD, VHDX, qcow2 or raw.
        image: PathBuf,
        /// Product name in the document [default: the image's file name
        /// without its extension].
        #[arg(long)]
        name: Option<String>,
        /// Product version in the document; left out when not given.
        #[arg(long = "version")]
        product_version: Option<String>,
        /// File to write the document to, instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Folder where forge remembers image checksums; an image that has
        /// not changed since it was last hashed is not hashed again.
        #[arg(long, env = "FORGE_CACHE_DIR", default_value = "/var/cache/forge")]
        cache_dir: PathBuf,
    },
    /// List every rule: id, severity and title.
    Rules,
    /// Print one rule in full.
    Explain {
        /// Rule id, as `forge rules` lists it.
        id: String,
    },
    /// Internal: run a command inside an image tree (used by forge itself).
    #[command(name = "internal-enter", hide = true)]
    InternalEnter {
        tree: PathBuf,
        #[arg(long = "env")]
        env: Vec<String>,
        #[arg(long = "dev-link")]
        dev_links: Vec<String>,
        #[arg(last = true, required = true)]
        argv: Vec<OsString>,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Delete the least recently used build stages until the stage cache
    /// is under the size bound.
    Prune {
        /// Cache folder whose `stages` folder is pruned.
        #[arg(long, env = "FORGE_CACHE_DIR", default_value = "/var/cache/forge")]
        cache_dir: PathBuf,
        /// Size bound, such as 20GiB, 500MiB or a byte count. A bound of 0
        /// empties the stage cache.
        #[arg(long, env = "FORGE_CACHE_MAX_SIZE", default_value = "20GiB", value_parser = parse_size)]
        max_size: u64,
    },
}

fn parse_size(text: &str) -> Result<u64, String> {
    forge::recipe::parse_size_text(text.trim()).map_err(|e| format!("{e:#}"))
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Junit,
    Markdown,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DiffFormat {
    Text,
    Json,
}

fn severity_name(rule: &forge::check::rules::Rule) -> &'static str {
    match rule.severity {
        forge::check::rules::Severity::Blocking => "blocking",
        forge::check::rules::Severity::Required => "required",
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn,forge=info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::InternalEnter {
        tree,
        env,
        dev_links,
        argv,
    } = &cli.command
    {
        // Only returns on failure: success replaces this process.
        let err = chroot::enter(tree, env, dev_links, argv).unwrap_err();
        eprintln!("forge: {err:#}");
        return ExitCode::from(127);
    }
    init_logging(cli.verbose);
    if let Err(e) = forge::exec::install_interrupt_handler() {
        eprintln!("forge: {e:#}");
        return ExitCode::from(2);
    }
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // A signal also reaches the libguestfs appliance and the other
            // children in forge's process group, so their failure may
            // surface first. The interruption is the cause either way.
            if e.downcast_ref::<forge::exec::Interrupted>().is_some()
                || forge::exec::check_interrupted().is_err()
            {
                eprintln!("forge: interrupted; temporary files were removed");
                return ExitCode::from(130);
            }
            eprintln!("forge: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build { args, locked } => {
            let (recipe, opts) = args.into_options(locked, false);
            print_artifacts(&build::build(&recipe, &opts)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Update { args } => {
            let (recipe, opts) = args.into_options(false, true);
            let update = build::update(&recipe, &opts)?;
            print_artifacts(&update.artifacts);
            match &update.previous_lock {
                Some(previous) => {
                    println!("previous lock {}", previous.display());
                    print!("{}", build::render_changes(&update.changes));
                }
                None => println!(
                    "packages: no previous lock to compare with; {} packages locked",
                    update.artifacts.lock.packages.len()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            image,
            format,
            clamav_db,
            recipe,
            cache_dir,
        } => {
            let policy = match recipe {
                Some(path) => {
                    let recipe = match forge::recipe::Recipe::load(&path) {
                        Ok(recipe) => recipe,
                        Err(e) => {
                            eprintln!("forge: error: {e:#}");
                            return Ok(ExitCode::from(2));
                        }
                    };
                    forge::check::Policy {
                        declared_units: recipe.declared_units(),
                        waivers: recipe.waivers,
                        clamav_db,
                        from_image: false,
                        windows: recipe.windows,
                    }
                }
                None => forge::check::Policy {
                    clamav_db,
                    from_image: true,
                    ..Default::default()
                },
            };
            let report = match forge::check::check_image(
                &image,
                &policy,
                forge::check::Hashing::Compute(Some(forge::hashcache::HashCache::new(&cache_dir))),
            ) {
                Ok(r) => r,
                Err(e) => {
                    // An interrupt makes the appliance fail too; report the
                    // interrupt, not the appliance's error.
                    forge::exec::check_interrupted()?;
                    eprintln!("forge: error: cannot check {}: {e:#}", image.display());
                    return Ok(ExitCode::from(2));
                }
            };
            // A rule that was interrupted reports not-run, so a report
            // finished after Ctrl-C would be wrong: report the interrupt.
            forge::exec::check_interrupted()?;
            match format {
                Format::Text => print!("{}", forge::check::report::render_text(&report)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Format::Junit => print!("{}", forge::check::report::render_junit(&report)),
                Format::Markdown => print!("{}", forge::check::report::render_markdown(&report)),
            }
            Ok(ExitCode::from(report.verdict.exit_code() as u8))
        }
        Command::Cache {
            command:
                CacheCommand::Prune {
                    cache_dir,
                    max_size,
                },
        } => {
            let cache = build::stage_cache::StageCache::new(&cache_dir, max_size);
            let summary = cache.prune(max_size)?;
            let size = build::stage_cache::format_size;
            println!(
                "removed {} stage(s), {}; kept {} stage(s), {}, in {}",
                summary.removed,
                size(summary.freed_bytes),
                summary.kept,
                size(summary.kept_bytes),
                cache.dir().display()
            );
            if summary.in_use > 0 && summary.kept_bytes > max_size {
                eprintln!(
                    "forge: warning: {} stage(s) over the bound are in use by a running build and were kept",
                    summary.in_use
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { a, b, format } => run_diff(&a, &b, format),
        Command::Sbom {
            image,
            name,
            product_version,
            output,
            cache_dir,
        } => run_sbom(&image, name, product_version, output.as_deref(), &cache_dir),
        Command::Rules => {
            for rule in forge::check::rules::catalogue() {
                println!("{:<28} {:<9} {}", rule.id, severity_name(rule), rule.title);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { id } => {
            let Some(rule) = forge::check::rules::find(&id) else {
                eprintln!("forge: error: unknown rule {id:?}; `forge rules` lists the ids");
                return Ok(ExitCode::from(2));
            };
            println!("{}: {}", rule.id, rule.title);
            println!("severity: {}", severity_name(rule));
            println!("requirement: {}", rule.requirement);
            println!("applied: {}", rule.applied);
            println!("verified: {}", rule.verified);
            let waivable = forge::check::rules::WAIVABLE.contains(&rule.id);
            println!(
                "waivable: {}",
                if waivable { "yes, with a reason" } else { "no" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::InternalEnter { .. } => unreachable!("handled before logging starts"),
    }
}

/// Runs `forge diff`: reads both images at once, each on its own thread.
fn run_diff(a: &Path, b: &Path, format: DiffFormat) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let (snapshot_a, snapshot_b) = std::thread::scope(|scope| {
        let first = scope.spawn(|| forge::diff::snapshot_image(a));
        let second = forge::diff::snapshot_image(b);
        let first = first
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the thread reading the image panicked")));
        (first, second)
    });
    let mut snapshots = Vec::new();
    for (path, snapshot) in [(a, snapshot_a), (b, snapshot_b)] {
        match snapshot {
            Ok(snapshot) => snapshots.push(snapshot),
            Err(e) => {
                forge::exec::check_interrupted()?;
                eprintln!("forge: error: cannot read {}: {e:#}", path.display());
                return Ok(ExitCode::from(2));
            }
        }
    }
    tracing::info!(
        "read both images in {:.1} s ({} and {} paths)",
        started.elapsed().as_secs_f64(),
        snapshots[0].files.len(),
        snapshots[1].files.len()
    );
    let diff = forge::diff::compare(
        &a.display().to_string(),
        &snapshots[0],
        &b.display().to_string(),
        &snapshots[1],
    );
    match format {
        DiffFormat::Text => print!("{}", forge::diff::render_text(&diff)),
        DiffFormat::Json => println!("{}", serde_json::to_string_pretty(&diff)?),
    }
    Ok(ExitCode::from(if diff.identical { 0 } else { 1 }))
}

/// Runs `forge sbom`: reads the packages and hashes the image file at once.
fn run_sbom(
    image: &Path,
    name: Option<String>,
    version: Option<String>,
    output: Option<&Path>,
    cache_dir: &Path,
) -> anyhow::Result<ExitCode> {
    let cache = forge::hashcache::HashCache::new(cache_dir);
    let read = std::thread::scope(|scope| {
        let hashing = scope.spawn(|| forge::hashcache::sha256_of(image, Some(&cache)));
        let inventory = read_inventory(image);
        let sha256 = hashing
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the hashing thread panicked")));
        inventory.and_then(|inventory| Ok((inventory, sha256?)))
    });
    let (inventory, sha256) = match read {
        Ok(read) => read,
        Err(e) => {
            forge::exec::check_interrupted()?;
            eprintln!("forge: error: cannot read {}: {e:#}", image.display());
            return Ok(ExitCode::from(2));
        }
    };
    let file_name = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.unwrap_or_else(|| {
        image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let sbom = forge::sbom::Sbom {
        name,
        version,
        inventory,
    };
    let document = sbom.render(
        &file_name,
        &sha256,
        forge::clock::source_date_epoch_or_now(),
    );
    match output {
        Some(path) => std::fs::write(path, document)
            .map_err(|e| anyhow::anyhow!("failed to write {}: {e}", path.display()))?,
        None => print!("{document}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the installed packages of an image through the direct reader, or
/// libguestfs when the direct reader declines it.
fn read_inventory(image: &Path) -> anyhow::Result<forge::sbom::Inventory> {
    let opened = forge::check::image::OpenImage::open(image)?;
    match opened.view() {
        Some(view) => forge::sbom::collect(view),
        None => anyhow::bail!("no operating system found in the image"),
    }
}
