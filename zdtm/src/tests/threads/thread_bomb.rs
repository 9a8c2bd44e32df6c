use crate::prelude::*;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "threads/thread_bomb",
    family: "threads",
    description: "1000 threads, each with its own counter and tid, all alive and consistent after restore",
    timeout: 180,
    ..Desc::DEFAULT
};

const N: usize = 1000;

pub fn run(t: &mut Test) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU32::new(0));
    let counters: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let mut hs = Vec::with_capacity(N);
    for i in 0..N {
        let (stop, ready, counters) = (stop.clone(), ready.clone(), counters.clone());
        let h = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || -> Result<(u64, i32)> {
                let tid = nix::unistd::gettid();
                let mut own = 0u64;
                ready.fetch_add(1, Ordering::SeqCst);
                while !stop.load(Ordering::SeqCst) {
                    own += 1;
                    counters[i].store(own, Ordering::SeqCst);
                    ensure!(nix::unistd::gettid() == tid, "thread {i}: tid changed from {tid}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                ensure!(counters[i].load(Ordering::SeqCst) == own, "thread {i}: counter {} is not its own {own}", counters[i].load(Ordering::SeqCst));
                Ok((own, tid.as_raw()))
            })
            .with_context(|| format!("spawn thread {i}"))?;
        hs.push(h);
    }
    ensure!(wait_for(30_000, || ready.load(Ordering::SeqCst) == N as u32), "only {} threads started", ready.load(Ordering::SeqCst));
    let tasks = std::fs::read_dir("/proc/self/task").context("read /proc/self/task")?.count();
    ensure!(tasks == N + 1, "{tasks} tasks before dump");
    t.daemon()?;
    t.wait_sig();
    let tasks = std::fs::read_dir("/proc/self/task").context("read /proc/self/task")?.count();
    ensure!(tasks == N + 1, "{tasks} tasks after restore, expected {}", N + 1);
    // every thread must still be counting
    let snap: Vec<u64> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let moved = wait_for(20_000, || counters.iter().zip(&snap).all(|(c, &s)| c.load(Ordering::SeqCst) > s));
    let stuck = counters.iter().zip(&snap).filter(|(c, &s)| c.load(Ordering::SeqCst) == s).count();
    stop.store(true, Ordering::SeqCst);
    let mut tids = std::collections::HashSet::new();
    for (i, h) in hs.into_iter().enumerate() {
        let (_, tid) = h.join().map_err(|_| anyhow!("thread {i} panicked"))??;
        ensure!(tids.insert(tid), "two threads with tid {tid}");
    }
    ensure!(moved, "{stuck} of {N} threads stopped counting after restore");
    Ok(())
}
