//! Output files of a build, written under temporary names in the output
//! folder and renamed into place only once the check pass has accepted the
//! image. Dropping an unfinished [`Pending`] removes every temporary file.

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::disk::DiskIds;
use crate::check::report::{render_junit, render_markdown, render_text, Report};
use crate::check::Verdict;
use crate::sbom::Sbom;
use crate::vhd::Footer;

pub struct Pending {
    dir: PathBuf,
    stem: String,
    temps: Vec<PathBuf>,
    finished: bool,
}

impl Pending {
    pub fn new(dir: &Path, stem: &str) -> Self {
        Self {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            temps: Vec::new(),
            finished: false,
        }
    }

    fn temp(&mut self, suffix: &str) -> PathBuf {
        let p = self.dir.join(format!(".{}{suffix}.partial", self.stem));
        self.temps.push(p.clone());
        p
    }

    fn final_path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}{suffix}", self.stem))
    }

    /// Temporary path the disk is assembled at; removed if the build fails.
    pub fn vhd_partial(&mut self) -> PathBuf {
        let p = self.temp(".vhd");
        // A stale file from a killed build would make the assembly fail.
        let _ = fs::remove_file(&p);
        p
    }

    /// Writes the reports, checksum and SBOM, then renames everything into
    /// place, the VHD last so that it never appears without its reports.
    /// `sha256` is the VHD's checksum, computed by the caller; `created` is
    /// the SBOM's creation time, the build's epoch.
    pub fn finish(
        &mut self,
        mut report: Report,
        sha256: String,
        sbom: &Sbom,
        created: u64,
    ) -> Result<Written> {
        let vhd_tmp = self.dir.join(format!(".{}.vhd.partial", self.stem));
        let vhd = self.final_path(".vhd");
        report.image = vhd.display().to_string();
        report.sha256 = sha256;

        let json_tmp = self.temp(".report.json");
        let text_tmp = self.temp(".report.txt");
        let junit_tmp = self.temp(".report.junit.xml");
        let markdown_tmp = self.temp(".report.md");
        let sum_tmp = self.temp(".vhd.sha256");
        let sbom_tmp = self.temp(".spdx.json");
        let json = serde_json::to_string_pretty(&report)? + "\n";
        write_synced(&json_tmp, json.as_bytes())?;
        write_synced(&text_tmp, render_text(&report).as_bytes())?;
        write_synced(&junit_tmp, render_junit(&report).as_bytes())?;
        write_synced(&markdown_tmp, render_markdown(&report).as_bytes())?;
        let sum_line = format!("{}  {}.vhd\n", report.sha256, self.stem);
        write_synced(&sum_tmp, sum_line.as_bytes())?;
        let document = sbom.render(&format!("{}.vhd", self.stem), &report.sha256, created);
        write_synced(&sbom_tmp, document.as_bytes())?;

        let json_report = self.final_path(".report.json");
        let text_report = self.final_path(".report.txt");
        fs::rename(&json_tmp, &json_report)?;
        fs::rename(&text_tmp, &text_report)?;
        fs::rename(&junit_tmp, self.final_path(".report.junit.xml"))?;
        fs::rename(&markdown_tmp, self.final_path(".report.md"))?;
        fs::rename(&sum_tmp, self.final_path(".vhd.sha256"))?;
        let sbom_path = self.final_path(".spdx.json");
        fs::rename(&sbom_tmp, &sbom_path)?;
        fs::rename(&vhd_tmp, &vhd)?;
        sync_dir(&self.dir);
        self.finished = true;
        Ok(Written {
            vhd,
            json_report,
            text_report,
            sbom: sbom_path,
            sha256: report.sha256,
            verdict: report.verdict,
        })
    }
}

/// Paths of the files [`Pending::finish`] put in place.
#[derive(Debug)]
pub struct Written {
    pub vhd: PathBuf,
    pub sbom: PathBuf,
    pub json_report: PathBuf,
    pub text_report: PathBuf,
    pub sha256: String,
    pub verdict: Verdict,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        for p in &self.temps {
            let _ = fs::remove_file(p);
        }
    }
}

fn write_synced(path: &Path, data: &[u8]) -> Result<()> {
    let mut f =
        fs::File::create(path).with_context(|| format!("failed to write {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Appends the fixed VHD footer to the raw disk in place: the disk is never
/// copied. `time` is the footer's time stamp, the build's epoch.
pub fn append_footer(image: &Path, ids: &DiskIds, time: u64) -> Result<()> {
    let mut f = OpenOptions::new().read(true).write(true).open(image)?;
    let size = f.metadata()?.len();
    let id_hash = Sha256::digest(format!("forge:vhd-unique-id:{}", ids.disk_guid).as_bytes());
    let mut unique_id = [0u8; 16];
    unique_id.copy_from_slice(&id_hash[..16]);
    let footer = Footer::fixed(size, time, unique_id).to_bytes();
    f.seek(SeekFrom::End(0))?;
    f.write_all(&footer)?;
    f.sync_all()?;
    Ok(())
}

/// sha256 of a file, reading only its data regions: holes are hashed as
/// zeros from memory instead of being read from disk.
pub fn sha256_sparse(path: &Path) -> Result<String> {
    const CHUNK: usize = 4 << 20;
    let f = fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let len = f.metadata()?.len();
    let zeros = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut pos = 0u64;
    while pos < len {
        crate::exec::check_interrupted()?;
        // No data after `pos` (ENXIO) means the rest of the file is a hole.
        let data = match seek_data(&f, pos) {
            Ok(d) => d.min(len),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => len,
            Err(_) => pos,
        };
        // Hash the hole [pos, data) from the zero buffer.
        while pos < data {
            crate::exec::check_interrupted()?;
            let n = (data - pos).min(CHUNK as u64) as usize;
            hasher.update(&zeros[..n]);
            pos += n as u64;
        }
        if pos >= len {
            break;
        }
        // SEEK_HOLE always finds a hole, the end of the file at the latest;
        // a result not past `pos` would stall the loop, so read to the end.
        let hole = match seek_hole(&f, pos) {
            Ok(h) if h > pos => h.min(len),
            _ => len,
        };
        while pos < hole {
            crate::exec::check_interrupted()?;
            let n = (hole - pos).min(CHUNK as u64) as usize;
            f.read_exact_at(&mut buf[..n], pos)?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// Formats bytes as lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Formats 16 bytes, in the order given, as a UUID
/// (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub fn uuid_text(bytes: &[u8; 16]) -> String {
    let hex = hex(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn seek_data(f: &fs::File, from: u64) -> std::io::Result<u64> {
    lseek(f, from, libc::SEEK_DATA)
}

fn seek_hole(f: &fs::File, from: u64) -> std::io::Result<u64> {
    lseek(f, from, libc::SEEK_HOLE)
}

fn lseek(f: &fs::File, from: u64, whence: libc::c_int) -> std::io::Result<u64> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: lseek on an open descriptor; only the file offset changes,
    // and reads use pread, which ignores it.
    let r = unsafe { libc::lseek(f.as_raw_fd(), from as libc::off_t, whence) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_hash_of_trailing_hole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = fs::File::create(&p).unwrap();
        f.write_all_at(b"data", 0).unwrap();
        f.set_len(9 << 20).unwrap();
        let plain: String = Sha256::digest(fs::read(&p).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha256_sparse(&p).unwrap(), plain);
    }

    #[test]
    fn sparse_hash_of_empty_and_all_hole_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        fs::File::create(&empty).unwrap();
        let hole = dir.path().join("hole");
        fs::File::create(&hole).unwrap().set_len(5 << 20).unwrap();
        for p in [empty, hole] {
            let plain: String = Sha256::digest(fs::read(&p).unwrap())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(sha256_sparse(&p).unwrap(), plain);
        }
    }

    #[test]
    fn sparse_hash_matches_plain_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let f = fs::File::create(&p).unwrap();
        f.set_len(20 << 20).unwrap();
        f.write_all_at(b"hello", 9 << 20).unwrap();
        f.write_all_at(b"end", (20 << 20) - 3).unwrap();
        let plain: String = Sha256::digest(fs::read(&p).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sha256_sparse(&p).unwrap(), plain);
    }
}
