//! Runs external programs: logs each command line at debug level, kills
//! the whole process group on interruption, and turns a failure into an
//! error that carries the command line and the tail of its stderr.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Process groups of the commands running now, killed on interruption.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Number of stderr lines an error message keeps.
const STDERR_TAIL_LINES: usize = 15;

/// Error raised when the user interrupted forge (Ctrl-C, SIGTERM).
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Installs the SIGINT/SIGTERM/SIGHUP handler that stops running commands.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        let groups = RUNNING.lock().map(|g| g.clone()).unwrap_or_default();
        if groups.is_empty() {
            return;
        }
        eprintln!(
            "forge: stopping the running commands; those still running in {} s are killed",
            KILL_GRACE.as_secs()
        );
        signal_groups(&groups, libc::SIGTERM);
        // A command that ignores SIGTERM would keep forge waiting, so after a
        // grace period it is killed. Commands inside the image tree are the
        // first process of their PID namespace, which ignores SIGTERM unless
        // the program handles it.
        let deadline = std::time::Instant::now() + KILL_GRACE;
        while std::time::Instant::now() < deadline {
            let left = RUNNING.lock().map(|g| g.clone()).unwrap_or_default();
            if left.is_empty() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let left = RUNNING.lock().map(|g| g.clone()).unwrap_or_default();
        signal_groups(&left, libc::SIGKILL);
    })
    .context("failed to install the interrupt handler")
}

/// Time that commands get to end after SIGTERM before they are killed.
const KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn signal_groups(groups: &[u32], signal: libc::c_int) {
    for pgid in groups {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // touches no memory of this process.
        unsafe {
            libc::kill(-(*pgid as i32), signal);
        }
    }
}

/// Returns an error if the user interrupted forge.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// A command line ready to run.
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    /// Short form of the command line shown in errors.
    label: Option<String>,
}

/// Output of a command that succeeded.
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            stdin: None,
            label: None,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }

    pub fn stdin_bytes(mut self, data: Vec<u8>) -> Self {
        self.stdin = Some(data);
        self
    }

    /// Sets what errors show in place of the full command line; the full
    /// line is still logged at debug level.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Returns the command line as a shell user would read it.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command to completion; a non-zero exit is an error.
    pub fn run(self) -> Result<Output> {
        check_interrupted()?;
        let full = self.display();
        tracing::debug!("running: {full}");
        let line = self.label.clone().unwrap_or(full);
        let mut expr = duct::cmd(&self.program, &self.args)
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .before_spawn(|c| {
                // Own process group: Ctrl-C reaches forge alone, and forge
                // then stops the whole group, grandchildren included.
                c.process_group(0);
                Ok(())
            });
        for (k, v) in &self.envs {
            expr = expr.env(k, v);
        }
        expr = match self.stdin {
            Some(data) => expr.stdin_bytes(data),
            None => expr.stdin_null(),
        };
        let handle = expr
            .start()
            .with_context(|| format!("failed to start `{line}`"))?;
        let pids = handle.pids();
        register(&pids);
        let result = handle.wait().cloned();
        unregister(&pids);
        let out = result.with_context(|| format!("failed to wait for `{line}`"))?;
        check_interrupted()?;
        if !out.status.success() {
            bail!(
                "`{line}` failed ({}){}",
                describe_status(&out.status),
                stderr_tail(&out.stderr)
            );
        }
        Ok(Output {
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

fn register(pids: &[u32]) {
    if let Ok(mut g) = RUNNING.lock() {
        g.extend_from_slice(pids);
    }
    // A signal that came between spawn and registration has no group to
    // kill yet, so stop the new group here.
    if INTERRUPTED.load(Ordering::SeqCst) {
        for pid in pids {
            // SAFETY: signals a process group; no memory is touched.
            unsafe {
                libc::kill(-(*pid as i32), libc::SIGTERM);
            }
        }
    }
}

fn unregister(pids: &[u32]) {
    if let Ok(mut g) = RUNNING.lock() {
        g.retain(|p| !pids.contains(p));
    }
}

fn describe_status(s: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    format!(":\n  {}", lines[start..].join("\n  "))
}

/// Quotes `s` for a shell-like display of a command line.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Returns whether `program` is on `PATH` or is an existing path.
pub fn have(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
