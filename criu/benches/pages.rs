//! Page dump throughput and restore latency of the real `criu` binary.
//!
//! Each iteration starts a fresh `criu-test-victim pattern MIB` child
//! (pseudo-random, dirty anonymous memory), dumps it with `criu dump` (which
//! kills it; we reap it by PID) and times only the criu process. criu's
//! peak RSS and CPU time (user + system, all threads) come from
//! /usr/bin/time run in between (wait4's rusage of a child we spawn
//! ourselves also counts our own RSS at spawn). The table shows the median
//! wall time and, apart, the median CPU time: on a loaded machine the CPU
//! time is the steadier figure.
//!
//! Environment:
//! - `CRIU_BENCH_2G=1`: add the 2 GiB case (slow here).
//! - `CRIU_BENCH_REFERENCE=PATH`: after the criterion runs, run the same
//!   dumps and restores through that criu binary too (e.g. upstream CRIU)
//!   and print a table side by side with ours.
//! - `CRIU_BENCH_RUNS=N`: runs per cell of that table (default 3).
//! - `CRIU_BENCH_DISK=DIR`, `CRIU_BENCH_TMPFS=DIR`: where images go
//!   (default /var/tmp and /dev/shm).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BenchmarkId, Criterion, SamplingMode, Throughput};
use criu::sys::rusage::wait4;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const OURS: &str = env!("CARGO_BIN_EXE_criu");
const VICTIM: &str = env!("CARGO_BIN_EXE_criu-test-victim");

/// Where images go: (label, directory).
fn targets() -> Vec<(&'static str, PathBuf)> {
    let env = |k: &str, d: &str| PathBuf::from(std::env::var(k).unwrap_or_else(|_| d.into()));
    vec![
        ("tmpfs", env("CRIU_BENCH_TMPFS", "/dev/shm")),
        ("disk", env("CRIU_BENCH_DISK", "/var/tmp")),
    ]
}

fn sizes() -> Vec<u64> {
    let mut s = vec![64, 512];
    if std::env::var_os("CRIU_BENCH_2G").is_some() {
        s.push(2048);
    }
    s
}

/// A criu binary and the options it needs for our victim.
#[derive(Clone)]
struct Criu {
    name: String,
    path: String,
    /// Upstream wants --shell-job for a task in our session.
    extra: Vec<&'static str>,
}

impl Criu {
    fn ours() -> Self {
        Criu {
            name: "criu-rs".into(),
            path: OURS.into(),
            extra: vec![],
        }
    }
}

/// A victim holding `mib` MiB of pattern, ready to be dumped.
struct Victim {
    pid: i32,
}

impl Victim {
    fn start(mib: u64, work: &Path) -> Self {
        let report = work.join("report");
        let _ = std::fs::remove_file(&report);
        // Reaped by wait4 in `finish`, by PID: criu's restore may have
        // replaced the process the Child handle stands for.
        #[allow(clippy::zombie_processes)]
        let c = Command::new(VICTIM)
            .args(["pattern", &mib.to_string()])
            .arg(&report)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn criu-test-victim");
        let pid = c.id() as i32;
        let start = Instant::now();
        while !std::fs::read_to_string(&report)
            .unwrap_or_default()
            .starts_with("ready")
        {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "victim not ready"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Victim { pid }
    }

    /// Kills (if criu left it) and reaps the victim.
    fn finish(self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = wait4(self.pid);
    }
}

/// One run of a criu command: how long it took and its peak RSS.
#[derive(Clone, Copy, Debug)]
struct Run {
    took: Duration,
    maxrss_kb: i64,
    /// criu's user + system time, all its threads (10 ms resolution;
    /// `None` without /usr/bin/time). A reference CRIU's parasite runs in
    /// the victim: its share is not counted here.
    cpu: Option<Duration>,
}

fn fresh_dir(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).expect("make image dir");
}

fn log_tail(dir: &Path, name: &str) -> String {
    let s = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let errs: Vec<&str> = s
        .lines()
        .filter(|l| l.contains("Error") || l.contains("ERROR"))
        .collect();
    let lines = if errs.is_empty() {
        s.lines().rev().take(3).collect::<Vec<_>>()
    } else {
        errs.into_iter().rev().take(3).collect()
    };
    lines.join(" | ")
}

/// GNU time, to read criu's own peak RSS: the rusage of a child we spawn
/// ourselves (vfork + exec) also counts the RSS this bench had at spawn.
const TIME: &str = "/usr/bin/time";

/// Runs criu with `args`, timing it and reading its peak RSS.
fn run_criu(c: &Criu, args: &[&str], dir: &Path, log: &str) -> Result<Run, String> {
    let use_time = Path::new(TIME).is_file();
    let rss_file = dir.with_extension("rss");
    let mut cmd = if use_time {
        let mut t = Command::new(TIME);
        t.args(["-f", "%M %U %S", "-o"]).arg(&rss_file).arg(&c.path);
        t
    } else {
        Command::new(&c.path)
    };
    let t = Instant::now();
    let child = cmd
        .args(args)
        .arg("-D")
        .arg(dir)
        .args(["-o", log])
        .args(&c.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", c.path))?;
    let r = wait4(child.id() as i32).map_err(|e| format!("wait4: {e}"))?;
    let took = t.elapsed();
    if r.exit_code() != Some(0) {
        return Err(format!("{} failed: {}", args[0], log_tail(dir, log)));
    }
    let (maxrss_kb, cpu) = if use_time {
        let s = std::fs::read_to_string(&rss_file).unwrap_or_default();
        let _ = std::fs::remove_file(&rss_file);
        s.lines()
            .rev()
            .find_map(parse_time_line)
            .map_or((r.maxrss_kb, None), |(m, c)| (m, Some(c)))
    } else {
        (r.maxrss_kb, None)
    };
    Ok(Run {
        took,
        maxrss_kb,
        cpu,
    })
}

/// `MAXRSS_KB USER_S SYS_S`, as `/usr/bin/time -f "%M %U %S"` writes it.
fn parse_time_line(l: &str) -> Option<(i64, Duration)> {
    let mut it = l.split_whitespace();
    let rss = it.next()?.parse().ok()?;
    let user: f64 = it.next()?.parse().ok()?;
    let sys: f64 = it.next()?.parse().ok()?;
    if it.next().is_some() || !(user >= 0.0 && sys >= 0.0) {
        return None;
    }
    Some((rss, Duration::from_secs_f64(user + sys)))
}

/// Dumps a fresh `mib` MiB victim into `dir`.
fn dump_once(c: &Criu, mib: u64, dir: &Path, work: &Path) -> Result<Run, String> {
    fresh_dir(dir);
    let v = Victim::start(mib, work);
    let pid = v.pid.to_string();
    let r = run_criu(c, &["dump", "-t", &pid], dir, "dump.log");
    v.finish();
    r
}

/// Restores from `dir`, then kills and reaps the restored task (our child
/// as we are its subreaper).
fn restore_once(c: &Criu, dir: &Path) -> Result<Run, String> {
    let pidfile = dir.join("restored.pid");
    let _ = std::fs::remove_file(&pidfile);
    let p = pidfile.to_string_lossy().into_owned();
    let r = run_criu(c, &["restore", "-d", "--pidfile", &p], dir, "restore.log");
    if let Some(pid) = std::fs::read_to_string(&pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = wait4(pid);
    }
    r
}

fn bench_dir(label: &str, base: &Path) -> PathBuf {
    base.join(format!("criu-bench-{label}-{}", std::process::id()))
}

fn dump_benches(cr: &mut Criterion) {
    let ours = Criu::ours();
    let work = bench_dir("work", Path::new("/dev/shm"));
    fresh_dir(&work);
    let mut g = cr.benchmark_group("dump");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    for mib in sizes() {
        g.throughput(Throughput::Bytes(mib << 20));
        for (label, base) in targets() {
            let dir = bench_dir(label, &base);
            let mut peak = 0;
            g.bench_with_input(
                BenchmarkId::new(label, format!("{mib}MiB")),
                &mib,
                |b, &mib| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let r = dump_once(&ours, mib, &dir, &work).expect("criu-rs dump");
                            peak = peak.max(r.maxrss_kb);
                            total += r.took;
                        }
                        total
                    })
                },
            );
            println!("dump/{label}/{mib}MiB: criu-rs peak RSS {} KiB", peak);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&work);
}

fn restore_benches(cr: &mut Criterion) {
    let ours = Criu::ours();
    let work = bench_dir("work", Path::new("/dev/shm"));
    fresh_dir(&work);
    let mut g = cr.benchmark_group("restore");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, mib) in [("minimal", 0u64), ("64MiB", 64), ("512MiB", 512)] {
        let dir = bench_dir(&format!("restore-{name}"), Path::new("/dev/shm"));
        dump_once(&ours, mib, &dir, &work).expect("criu-rs dump for restore");
        let mut peak = 0;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let r = restore_once(&ours, &dir).expect("criu-rs restore");
                    peak = peak.max(r.maxrss_kb);
                    total += r.took;
                }
                total
            })
        });
        println!("restore/{name}: criu-rs peak RSS {} KiB", peak);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&work);
}

/// One cell of the side-by-side table: the median run, the largest peak
/// RSS, or why it could not run.
fn cell(runs: Vec<Result<Run, String>>) -> Result<(Run, i64), String> {
    let mut ok = Vec::new();
    for r in runs {
        ok.push(r?);
    }
    let peak = ok.iter().map(|r| r.maxrss_kb).max().unwrap_or(0);
    // The median CPU time, independently of the median wall time: on a
    // loaded machine the first is the steadier one.
    let mut cpus: Vec<Duration> = ok.iter().filter_map(|r| r.cpu).collect();
    cpus.sort();
    let cpu = (cpus.len() == ok.len())
        .then(|| cpus.get(cpus.len() / 2).copied())
        .flatten();
    ok.sort_by_key(|r| r.took);
    ok.get(ok.len() / 2)
        .map(|&r| (Run { cpu, ..r }, peak))
        .ok_or_else(|| "no runs".into())
}

fn fmt_cpu(r: &Run) -> String {
    match r.cpu {
        Some(c) => format!("{:>5.0} ms CPU", c.as_secs_f64() * 1000.0),
        None => "CPU n/a".into(),
    }
}

fn fmt_dump(c: &Result<(Run, i64), String>, mib: u64) -> String {
    match c {
        Ok((r, peak)) => format!(
            "{:>8.0} MiB/s {:>6.1} MiB RSS {}",
            mib as f64 / r.took.as_secs_f64(),
            *peak as f64 / 1024.0,
            fmt_cpu(r)
        ),
        Err(e) => format!("n/a ({e})"),
    }
}

fn fmt_restore(c: &Result<(Run, i64), String>) -> String {
    match c {
        Ok((r, peak)) => format!(
            "{:>8.1} ms {:>6.1} MiB RSS {}",
            r.took.as_secs_f64() * 1000.0,
            *peak as f64 / 1024.0,
            fmt_cpu(r)
        ),
        Err(e) => format!("n/a ({e})"),
    }
}

/// The same work through criu-rs and a reference criu, as a table.
fn side_by_side(reference: &str) {
    let runs: usize = std::env::var("CRIU_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let tools = [
        Criu::ours(),
        Criu {
            name: format!("reference ({reference})"),
            path: reference.into(),
            extra: vec!["--shell-job"],
        },
    ];
    let work = bench_dir("work", Path::new("/dev/shm"));
    fresh_dir(&work);
    println!();
    println!("| case | {} | {} |", tools[0].name, tools[1].name);
    println!("|---|---|---|");
    for mib in sizes() {
        for (label, base) in targets() {
            let dir = bench_dir(label, &base);
            let cells: Vec<String> = tools
                .iter()
                .map(|t| {
                    let c = cell((0..runs).map(|_| dump_once(t, mib, &dir, &work)).collect());
                    fmt_dump(&c, mib)
                })
                .collect();
            println!(
                "| dump {mib} MiB to {label} | {} | {} |",
                cells[0], cells[1]
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    for (name, mib) in [("minimal", 0u64), ("64 MiB", 64), ("512 MiB", 512)] {
        let dir = bench_dir("restore", Path::new("/dev/shm"));
        let cells: Vec<String> = tools
            .iter()
            .map(|t| {
                let c = match dump_once(t, mib, &dir, &work) {
                    Ok(_) => cell((0..runs).map(|_| restore_once(t, &dir)).collect()),
                    Err(e) => Err(e),
                };
                fmt_restore(&c)
            })
            .collect();
        println!("| restore {name} (tmpfs) | {} | {} |", cells[0], cells[1]);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&work);
}

criterion_group!(benches, dump_benches, restore_benches);

fn main() {
    // Restored tasks (whose parent, criu, exits) become our children.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let only_table = std::env::var_os("CRIU_BENCH_TABLE_ONLY").is_some();
    if !only_table {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
    if let Ok(r) = std::env::var("CRIU_BENCH_REFERENCE") {
        side_by_side(&r);
    }
}
