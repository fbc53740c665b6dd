//! Plants violations into copies of a built image, without an appliance:
//! `debugfs -w` edits the ext4 root file system in place at its byte
//! offset, `sgdisk` edits the partition table, and the VHD footer is
//! rewritten with forge's own footer code.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use forge::vhd::{Footer, FOOTER_LEN};

/// A sparse copy of a fixed VHD, open for planting.
pub struct Planted {
    pub vhd: PathBuf,
    root_offset: u64,
    scratch: PathBuf,
}

impl Planted {
    /// Copies `source` to `dest` (holes stay holes) and finds the byte
    /// offset of partition `root_number`.
    pub fn copy(source: &Path, dest: &Path, root_number: u32) -> Self {
        let _ = fs::remove_file(dest);
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(source)
            .arg(dest));
        let info = run(Command::new("sgdisk")
            .arg(format!("--info={root_number}"))
            .arg(dest));
        let first = info
            .lines()
            .find_map(|l| l.strip_prefix("First sector: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no first sector in sgdisk output:\n{info}"));
        let scratch = dest.with_extension("plant.d");
        fs::create_dir_all(&scratch).unwrap();
        Self {
            vhd: dest.to_path_buf(),
            root_offset: first * 512,
            scratch,
        }
    }

    /// Runs debugfs requests on the root file system, read-write.
    pub fn debugfs(&self, requests: &[String]) {
        let script = self.scratch.join("requests");
        fs::write(&script, requests.join("\n") + "\n").unwrap();
        let out = run(Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(format!(
                "{}?offset={}",
                self.vhd.display(),
                self.root_offset
            )));
        // debugfs exits 0 even when a request fails; its messages name the
        // request that failed.
        for bad in [
            "not found",
            "File not found",
            "Ext2 ",
            "Could not",
            "invalid",
        ] {
            assert!(
                !out.contains(bad),
                "debugfs reported a failure ({bad}) for {requests:?}:\n{out}"
            );
        }
    }

    /// Writes a regular file with mode 0644, replacing what is there.
    pub fn write(&self, path: &str, contents: &str) {
        let host = self.scratch.join("contents");
        fs::write(&host, contents).unwrap();
        if self.exists(path) {
            self.debugfs(&[format!("rm {path}")]);
        }
        self.debugfs(&[
            format!("write {} {path}", host.display()),
            format!("set_inode_field {path} mode 0100644"),
            format!("set_inode_field {path} uid 0"),
            format!("set_inode_field {path} gid 0"),
        ]);
    }

    /// Rewrites a text file through `edit`, keeping its mode.
    pub fn edit(&self, path: &str, edit: impl FnOnce(String) -> String) {
        let host = self.scratch.join("dumped");
        let _ = fs::remove_file(&host);
        self.debugfs(&[format!("dump -p {path} {}", host.display())]);
        let text = fs::read_to_string(&host).unwrap();
        let edited = edit(text.clone());
        assert_ne!(text, edited, "the edit of {path} changed nothing");
        fs::write(&host, edited).unwrap();
        self.debugfs(&[
            format!("rm {path}"),
            format!("write {} {path}", host.display()),
        ]);
    }

    /// Tells whether `path` exists in the root file system.
    pub fn exists(&self, path: &str) -> bool {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {path}"))
            .arg(format!(
                "{}?offset={}",
                self.vhd.display(),
                self.root_offset
            ))
            .output()
            .unwrap();
        !String::from_utf8_lossy(&out.stderr).contains("File not found")
    }

    /// Creates a symlink.
    pub fn symlink(&self, path: &str, target: &str) {
        self.debugfs(&[format!("symlink {path} {target}")]);
    }

    /// Removes a file or symlink.
    pub fn remove(&self, path: &str) {
        self.debugfs(&[format!("rm {path}")]);
    }

    /// Sets the permission bits of a regular file.
    pub fn chmod_file(&self, path: &str, mode: u32) {
        self.debugfs(&[format!(
            "set_inode_field {path} mode 0{:o}",
            0o100000 | mode
        )]);
    }

    /// Rewrites the VHD footer through `edit`, with a valid checksum.
    pub fn edit_footer(&self, edit: impl FnOnce(&mut Footer)) {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.vhd)
            .unwrap();
        let at = file.metadata().unwrap().len() - FOOTER_LEN as u64;
        let mut raw = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut raw, at).unwrap();
        let mut footer = Footer::parse(&raw).unwrap();
        edit(&mut footer);
        file.write_all_at(&footer.to_bytes(), at).unwrap();
    }

    /// Breaks the footer's checksum and nothing else.
    pub fn flip_footer_checksum(&self) {
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.vhd)
            .unwrap();
        let at = file.metadata().unwrap().len() - FOOTER_LEN as u64 + 64;
        let mut sum = [0u8; 4];
        file.read_exact_at(&mut sum, at).unwrap();
        sum[3] ^= 0x01;
        file.write_all_at(&sum, at).unwrap();
    }

    /// Runs `sgdisk` with `args` on the disk without its footer, so that
    /// sgdisk's backup table lands where it was, then puts the footer back.
    pub fn sgdisk(&self, args: &[&str]) {
        let len = fs::metadata(&self.vhd).unwrap().len();
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.vhd)
            .unwrap();
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer, len - FOOTER_LEN as u64)
            .unwrap();
        file.set_len(len - FOOTER_LEN as u64).unwrap();
        run(Command::new("sgdisk").args(args).arg(&self.vhd));
        let mut file = fs::OpenOptions::new().append(true).open(&self.vhd).unwrap();
        file.write_all(&footer).unwrap();
        assert_eq!(fs::metadata(&self.vhd).unwrap().len(), len);
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.scratch);
        let _ = fs::remove_file(&self.vhd);
    }
}

/// Runs a command, panics with its output when it fails, and returns its
/// stdout and stderr.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{command:?} failed:\n{text}");
    text
}
