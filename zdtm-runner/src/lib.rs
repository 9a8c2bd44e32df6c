//! The zdtm runner: starts conformance tests (from the `zdtm-test` catalogue
//! binary or external upstream-protocol binaries), checkpoints and restores
//! them with criu, judges them and writes reports.

pub mod catalogue;
pub mod glob;
pub mod known;
pub mod nsinit;
pub mod proctree;
pub mod reaper;
pub mod report;
pub mod run;
pub mod select;
pub mod snapshot;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use reaper::Reaper;
use report::TestResult;
use run::Config;
use select::Job;

/// Run the jobs: up to `parallel` at a time, then the `excl` ones alone.
/// Without `keep_going` nothing new starts after the first unexpected
/// result. Returns the results (in completion order) and whether the run
/// stopped early.
pub fn run_jobs(
    cfg: &Config,
    reaper: &Reaper,
    jobs: Vec<Job>,
    parallel: usize,
    keep_going: bool,
    progress: &(dyn Fn(usize, usize, &TestResult) + Sync),
) -> (Vec<TestResult>, bool) {
    let total = jobs.len();
    let (excl, normal): (Vec<Job>, Vec<Job>) =
        jobs.into_iter().partition(|j| j.test.has_flag("excl"));
    let queue = Mutex::new(normal.into_iter().collect::<VecDeque<Job>>());
    let results = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);

    let one = |job: &Job| {
        let r = run::run_job(cfg, reaper, job);
        if r.outcome.is_bad() && !keep_going {
            stop.store(true, Ordering::SeqCst);
        }
        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
        progress(n, total, &r);
        if let Ok(mut v) = results.lock() {
            v.push(r);
        }
    };
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let job = match queue.lock() {
                    Ok(mut q) => q.pop_front(),
                    Err(_) => None,
                };
                match job {
                    Some(j) => one(&j),
                    None => break,
                }
            });
        }
    });
    for j in &excl {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        one(j);
    }
    let stopped = stop.load(Ordering::SeqCst) && done.load(Ordering::SeqCst) < total;
    (results.into_inner().unwrap_or_default(), stopped)
}
