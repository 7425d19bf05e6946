//! The 10-minute soak of issue 12 part 3: `causeway run` on tansu, fed the
//! demo's story at twice its rate (16 traces/s of event time at 75x), then two
//! bursts as fast as the producer goes with `run` stopped, of `BURST_S` and
//! twice that, each caught up before the next. Prints a sample every 10 s and
//! the RSS slope, lag bounds and the peak RSS of each catch-up (the memory
//! ceiling: the same for both backlogs).
//!
//!     cargo build --release -p causeway -p causeway-benches
//!     target/release/soak [STEADY_MIN=10] [BURST_S=20] [RATE=16] [SPEED=75]
//!
//! `SOAK_CAUSEWAY=PATH` soaks another build of `causeway`; `SOAK_WORKERS`
//! sets `run -w` (default 2).

use std::time::Duration;

use causeway_benches::soak::{soak, Sample, SoakOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: f64| -> f64 {
        args.get(i)
            .map(|a| a.parse().expect("a number"))
            .unwrap_or(d)
    };
    let exe = std::env::current_exe().expect("own path");
    let burst = Duration::from_secs_f64(arg(1, 20.0));
    let opts = SoakOptions {
        causeway: std::env::var_os("SOAK_CAUSEWAY")
            .map_or_else(|| exe.with_file_name("causeway"), Into::into),
        dir: std::env::temp_dir().join(format!("causeway-soak-{}", std::process::id())),
        steady: Duration::from_secs_f64(arg(0, 10.0) * 60.0),
        bursts: if burst.is_zero() {
            Vec::new()
        } else {
            vec![burst, burst * 2]
        },
        rate: arg(2, 16.0),
        speed: arg(3, 75.0),
        sample_every: Duration::from_secs(10),
        workers: std::env::var("SOAK_WORKERS")
            .ok()
            .and_then(|w| w.parse().ok())
            .unwrap_or(2),
    };
    eprintln!("{opts:?}");
    println!("phase     t_s  rss_MiB  lag_msgs  behind_s  state_records  produced");
    let r = soak(&opts, |phase, s| {
        println!(
            "{phase:7} {:5.0} {:8.1} {:9} {:9.1} {:14} {:9}",
            s.at_s,
            s.rss_kib as f64 / 1024.0,
            s.lag,
            s.behind_s,
            s.state,
            s.produced
        );
    });
    let max = |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).fold(f64::NAN, f64::max);
    let half = &r.steady[r.steady.len() / 2..];
    println!();
    println!(
        "steady: {:.0} msgs/s produced; RSS slope over the second half {:+.2} MiB/min (state {:+.0} records/min); RSS {:.1}..{:.1} MiB there; peak {:.1} MiB",
        r.steady_rate,
        r.rss_slope_mib_per_min,
        r.state_slope_per_min,
        half.iter().map(|s| s.rss_kib).min().unwrap_or(0) as f64 / 1024.0,
        max(half, |s| s.rss_kib as f64) / 1024.0,
        r.steady_peak_kib as f64 / 1024.0
    );
    println!(
        "steady: watermark behind the feeder at most {:.1} s (second half {:.1} s); consumer lag gauge max {:.0} msgs",
        max(&r.steady, |s| s.behind_s),
        max(half, |s| s.behind_s),
        max(&r.steady, |s| s.lag as f64),
    );
    for (k, b) in r.bursts.iter().enumerate() {
        println!(
            "burst {k} ({:.0} s): backlog {} msgs, {:.1} MiB; catch-up {}; peak RSS {:.1} MiB{}; peak state {} records (steady peak {:.1} MiB, {} records)",
            opts.bursts[k].as_secs_f64(),
            b.backlog.0,
            b.backlog.1 as f64 / 1048576.0,
            b.caught_up_s
                .map_or("not finished".to_string(), |s| format!("took {s:.0} s")),
            b.peak_kib as f64 / 1024.0,
            if b.peak_reset { "" } else { " (VmHWM not reset: the peak so far)" },
            b.peak_state,
            r.steady_peak_kib as f64 / 1024.0,
            r.steady_peak_state,
        );
    }
    let _ = std::fs::remove_dir_all(&opts.dir);
}
