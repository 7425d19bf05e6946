//! `causeway replay` into an output directory it cannot finish writing: a full
//! file system (a 32 KiB tmpfs in a private mount namespace, or a file-size
//! limit where namespaces are not allowed), a file-size limit that kills the
//! process (SIGXFSZ) mid-write, and an output path that is not a directory.
//! Each fails with a message naming the directory and the cause and leaves no
//! file under a final output name (ISSUE 12, part 2c); a replay that succeeds
//! afterwards writes every file. A flood of dead letters, spooled to disk as
//! the replay runs, fails the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use causeway::sinks::file::OUTPUT_FILES;
use causeway_benches::workload::{generate, Format, WorkloadConfig};
use causeway_tests::kafka::causeway_binary;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("causeway-replay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A workload whose outputs are far larger than the 32 KiB the faults allow.
fn input(dir: &Path) -> PathBuf {
    let input = dir.join("in");
    let cfg = WorkloadConfig {
        seed: 12,
        traces: 1500,
        duration_s: 600,
        partitions: 2,
        ..Default::default()
    };
    generate(&cfg).write(&input, Format::Json, 2).unwrap();
    input
}

/// Runs the replay into `out` after `fault` (shell lines; `$1` is `out`),
/// inside a private mount namespace if `namespace`. An earlier replay's
/// `sli.jsonl` is put into `out` first: it must not survive as if new. Returns
/// causeway's exit code, its stderr and the names left in `out`, listed where
/// the fault's mounts are visible.
fn replay_under(
    fault: &str,
    namespace: bool,
    input: &Path,
    out: &Path,
) -> (i32, String, Vec<String>) {
    std::fs::create_dir_all(out).unwrap();
    let script = out.with_extension("sh");
    std::fs::write(
        &script,
        format!(
            "{fault}\necho '{{}}' > \"$1/sli.jsonl\"\n\"$2\" replay --input \"$3\" --out \"$1\" --quiet\nrc=$?\necho \"@@ $rc\"\nls -A \"$1\"\n"
        ),
    )
    .unwrap();
    let mut cmd = if namespace {
        let mut c = Command::new("unshare");
        c.args(["-rm", "sh"]);
        c
    } else {
        Command::new("sh")
    };
    let o = cmd
        .arg(&script)
        .arg(out)
        .arg(causeway_binary())
        .arg(input)
        .output()
        .expect("sh");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    let (_, listing) = stdout
        .split_once("@@ ")
        .unwrap_or_else(|| panic!("the fault setup failed: {stdout}\n{stderr}"));
    let mut lines = listing.lines();
    let rc: i32 = lines.next().unwrap().trim().parse().unwrap();
    (rc, stderr, lines.map(str::to_string).collect())
}

/// Whether this machine lets us mount a tmpfs in a private mount namespace.
fn can_mount_tmpfs() -> bool {
    Command::new("unshare")
        .args([
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=32k tmpfs \"$1\"",
            "sh",
        ])
        .arg(std::env::temp_dir())
        .output()
        .is_ok_and(|o| o.status.success())
}

fn final_names(left: &[String]) -> Vec<&String> {
    left.iter()
        .filter(|n| OUTPUT_FILES.contains(&n.as_str()))
        .collect()
}

#[test]
fn replay_into_a_full_file_system_fails_clearly_and_leaves_no_output() {
    let dir = scratch("full");
    let input = input(&dir);
    let out = dir.join("out");
    replay_into_full_disk_fails_clearly(&input, &out);

    // The same replay without the fault writes every file, and more than the
    // fault allowed (so the fault really cut it short).
    let (rc, stderr, left) = replay_under("", false, &input, &out);
    assert_eq!(rc, 0, "{stderr}");
    let mut names: Vec<&str> = left.iter().map(String::as_str).collect();
    names.sort();
    let mut want = OUTPUT_FILES.to_vec();
    want.sort();
    assert_eq!(names, want);
    let bytes: u64 = OUTPUT_FILES
        .iter()
        .map(|n| std::fs::metadata(out.join(n)).unwrap().len())
        .sum();
    assert!(
        bytes > 4 * 32 * 1024,
        "outputs of {bytes} bytes: make the workload bigger"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replays `input` into `out` on a full file system (a 32 KiB tmpfs if
/// namespaces are allowed, else a 32 KiB file-size limit with SIGXFSZ ignored:
/// either way writes start failing, ENOSPC / EFBIG, mid-replay): the replay
/// fails, says where and why, and leaves nothing behind.
fn replay_into_full_disk_fails_clearly(input: &Path, out: &Path) {
    let tmpfs = can_mount_tmpfs();
    let fault = if tmpfs {
        "mount -t tmpfs -o size=32k tmpfs \"$1\" || exit 99"
    } else {
        eprintln!("no tmpfs in a user namespace here: using a 32 KiB file-size limit");
        "trap '' XFSZ; ulimit -f 64"
    };
    let (rc, stderr, left) = replay_under(fault, tmpfs, input, out);
    assert_ne!(rc, 0, "replay into a full file system must fail");
    assert!(
        stderr.contains(&format!("cannot write output in {}", out.display()))
            && (stderr.contains("No space left on device") || stderr.contains("File too large")),
        "stderr should name the directory and the cause: {stderr}"
    );
    assert!(
        left.is_empty(),
        "a failed replay leaves nothing behind (no final name, no .partial): {left:?}"
    );
}

/// The dead letters are spooled to disk while the replay runs (one file per
/// input partition): a full file system then fails the replay in the middle,
/// clearly, and the spool files go with the other temporary files.
#[test]
fn a_dead_letter_flood_into_a_full_file_system_fails_clearly_and_leaves_no_output() {
    let dir = scratch("dlqfull");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    // About 1 MiB of dead letters per file (so several spool files are open
    // when the space runs out), against 32 KiB of space; no other output.
    for p in 0..3 {
        std::fs::write(
            input.join(format!("otlp_spans_{p}.jsonl")),
            "not json\n".repeat(8000),
        )
        .unwrap();
    }
    let out = dir.join("out");
    replay_into_full_disk_fails_clearly(&input, &out);

    let (rc, stderr, left) = replay_under("", false, &input, &out);
    assert_eq!(rc, 0, "{stderr}");
    assert_eq!(left.len(), OUTPUT_FILES.len(), "{left:?}");
    let dlq = std::fs::read_to_string(out.join("dlq.jsonl")).unwrap();
    assert_eq!(dlq.lines().count(), 3 * 8000);
    assert!(
        dlq.len() > 32 * 32 * 1024,
        "{} bytes of dead letters",
        dlq.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_killed_by_a_file_size_limit_leaves_only_partial_files() {
    let dir = scratch("xfsz");
    let input = input(&dir);
    let out = dir.join("out");
    // SIGXFSZ kills causeway at the first write past 32 KiB (its default action).
    let (rc, _, left) = replay_under("ulimit -f 64", false, &input, &out);
    assert_eq!(rc, 128 + 25, "causeway should die of SIGXFSZ (exit {rc})");
    assert!(
        final_names(&left).is_empty(),
        "no file under a final name after a kill mid-write: {left:?}"
    );
    assert!(
        left.iter().any(|n| n.ends_with(".partial")),
        "the kill should land while the outputs are written: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_into_a_path_that_is_not_a_directory_fails_clearly() {
    let dir = scratch("notdir");
    let input = input(&dir);
    let out = dir.join("file");
    std::fs::write(&out, "not a directory").unwrap();
    let o = Command::new(causeway_binary())
        .args(["replay", "--quiet", "--input"])
        .arg(&input)
        .arg("--out")
        .arg(out.join("sub"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains(&format!(
            "cannot write output in {}",
            out.join("sub").display()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "not a directory");
    let _ = std::fs::remove_dir_all(&dir);
}
