//! `forge cache prune` against the built binary, on fake stage entries.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Writes a fake entry of `bytes` archive bytes for `key`, last used
/// `age` ago.
fn fake_entry(stages: &Path, key: char, bytes: usize, age: Duration) {
    let name = key.to_string().repeat(64);
    let used = SystemTime::now() - age;
    for (suffix, content) in [
        ("tar", vec![0u8; bytes]),
        ("sha256", b"0\n".to_vec()),
        ("lock", Vec::new()),
    ] {
        let path = stages.join(format!("{name}.{suffix}"));
        fs::write(&path, content).unwrap();
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(used).unwrap();
    }
}

fn prune(cache: &Path, max_size: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["cache", "prune", "--cache-dir"])
        .arg(cache)
        .args(["--max-size", max_size])
        .output()
        .expect("failed to start the forge binary")
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn prune_removes_oldest_stages() {
    let cache = tempfile::tempdir().unwrap();
    let stages = cache.path().join("stages");
    fs::create_dir(&stages).unwrap();
    let hour = Duration::from_secs(3600);
    fake_entry(&stages, 'a', 4096, 3 * hour);
    fake_entry(&stages, 'b', 4096, 2 * hour);
    fake_entry(&stages, 'c', 4096, hour);

    let output = prune(cache.path(), "10KiB");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "prune failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("removed 1 stage(s)"), "{stdout}");

    let left = names(&stages);
    assert!(
        !left.iter().any(|n| n.starts_with('a')),
        "the oldest stage is left: {left:?}"
    );
    assert_eq!(left.iter().filter(|n| n.starts_with('b')).count(), 3);
    assert_eq!(left.iter().filter(|n| n.starts_with('c')).count(), 3);

    let output = prune(cache.path(), "0");
    assert!(output.status.success());
    assert_eq!(names(&stages), Vec::<String>::new(), "0 left stages behind");
}

#[test]
fn prune_rejects_invalid_size() {
    let cache = tempfile::tempdir().unwrap();
    let output = prune(cache.path(), "lots");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--max-size"), "{stderr}");
}

#[test]
fn prune_of_missing_folder_removes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let output = prune(&cache.path().join("never-created"), "1GiB");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("removed 0 stage(s)"), "{stdout}");
}
