//! The fuzz targets' checks (`tests/fuzz/src/lib.rs`) on every committed seed
//! (`tests/fuzz/corpus/<target>/`) and every input a fuzzer found crashing
//! (`tests/fuzz/regressions/<target>/`), so a crash found once stays fixed.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod harness;

use std::path::Path;

fn run_dir(dir: &Path, check: fn(&[u8])) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails its fuzz target's checks", f.display());
        }
    }
    files.len()
}

#[test]
fn every_seed_and_every_crash_found_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seeds = 0;
    for (name, check) in harness::TARGETS {
        let n = run_dir(&root.join("corpus").join(name), check);
        assert!(n > 0, "target {name} has no committed seed");
        seeds += n;
        run_dir(&root.join("regressions").join(name), check);
    }
    assert!(seeds >= 80, "{seeds} seeds");
}
