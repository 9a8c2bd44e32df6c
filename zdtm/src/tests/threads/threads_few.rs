use crate::prelude::*;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "threads/threads_few",
    family: "threads",
    description: "8 threads with their own tids, counters and data keep running consistently",
    ..Desc::DEFAULT
};

const N: usize = 8;

pub fn run(t: &mut Test) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicU32::new(0));
    let mut hs = Vec::new();
    for i in 0..N {
        let (stop, ready) = (stop.clone(), ready.clone());
        hs.push(std::thread::spawn(move || -> Result<u64> {
            let tid = nix::unistd::gettid();
            let seed = 1000 + i as u64;
            let mut data = vec![0u8; 8192];
            pattern::fill(seed, &mut data);
            let (mut a, mut b) = (0u64, 0u64);
            ready.fetch_add(1, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                a += 1;
                b += 7;
                ensure!(b == a * 7, "thread {i}: counters out of step");
                ensure!(nix::unistd::gettid() == tid, "thread {i}: tid changed from {tid}");
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            check_pattern(&format!("thread {i} data"), seed, &data)?;
            Ok(a)
        }));
    }
    ensure!(wait_for(5000, || ready.load(Ordering::SeqCst) == N as u32), "threads did not start");
    let before = std::fs::read_dir("/proc/self/task").context("list tasks")?.count();
    t.daemon()?;
    t.wait_sig();
    let after = std::fs::read_dir("/proc/self/task").context("list tasks")?.count();
    stop.store(true, Ordering::SeqCst);
    for (i, h) in hs.into_iter().enumerate() {
        let n = h.join().map_err(|_| anyhow!("thread {i} panicked"))??;
        ensure!(n > 0, "thread {i} never ran");
    }
    ensure!(after == before, "{after} tasks after restore, {before} before");
    Ok(())
}
