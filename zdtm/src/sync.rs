//! Synchronisation between a test's processes and threads: futex waits on
//! words in shared memory (they survive dump/restore as plain memory, and a
//! wait interrupted by the freeze simply waits again).

use crate::sys::{self, Mapping};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// Wait until `pred(*word)` holds. Robust against EINTR/spurious wakeups.
pub fn wait_until(word: &AtomicU32, pred: impl Fn(u32) -> bool) -> io::Result<u32> {
    loop {
        let v = word.load(Ordering::SeqCst);
        if pred(v) {
            return Ok(v);
        }
        sys::futex_wait(word, v)?;
    }
}

/// Store `val` and wake every waiter.
pub fn set_and_wake(word: &AtomicU32, val: u32) -> io::Result<()> {
    word.store(val, Ordering::SeqCst);
    sys::futex_wake(word, i32::MAX).map(|_| ())
}

/// Add `n` and wake every waiter; returns the new value.
pub fn add_and_wake(word: &AtomicU32, n: u32) -> io::Result<u32> {
    let v = word.fetch_add(n, Ordering::SeqCst).wrapping_add(n);
    sys::futex_wake(word, i32::MAX)?;
    Ok(v)
}

/// One page of MAP_SHARED anonymous memory, shared with children forked
/// after it was made. Words are addressed by index.
pub struct SharedPage {
    map: Mapping,
}

impl SharedPage {
    pub const WORDS: usize = 1024;

    pub fn new() -> io::Result<SharedPage> {
        Ok(SharedPage {
            map: Mapping::anon(4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED)?,
        })
    }

    pub fn word(&self, idx: usize) -> &AtomicU32 {
        self.map.atomic_u32(idx * 4)
    }
}

/// A reusable barrier for `n` participants (processes or threads), in
/// shared memory.
pub struct Barrier {
    page: SharedPage,
    n: u32,
}

impl Barrier {
    pub fn new(n: u32) -> io::Result<Barrier> {
        Ok(Barrier {
            page: SharedPage::new()?,
            n,
        })
    }

    /// Wait until all `n` participants arrived at this round.
    pub fn wait(&self) -> io::Result<()> {
        let count = self.page.word(0);
        let gen = self.page.word(1);
        let my_gen = gen.load(Ordering::SeqCst);
        if count.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            count.store(0, Ordering::SeqCst);
            add_and_wake(gen, 1)?;
            return Ok(());
        }
        wait_until(gen, |g| g != my_gen).map(|_| ())
    }
}

/// A "task waiter": one side announces it reached step N, the other waits
/// for it (e.g. a child tells its parent it is ready).
pub struct TaskWaiter {
    page: SharedPage,
}

impl TaskWaiter {
    pub fn new() -> io::Result<TaskWaiter> {
        Ok(TaskWaiter {
            page: SharedPage::new()?,
        })
    }

    /// Announce step `step` (steps only grow).
    pub fn complete(&self, step: u32) -> io::Result<()> {
        set_and_wake(self.page.word(0), step)
    }

    /// Wait for step `step` or a later one.
    pub fn wait(&self, step: u32) -> io::Result<()> {
        wait_until(self.page.word(0), |v| v >= step).map(|_| ())
    }

    /// The last announced step.
    pub fn step(&self) -> u32 {
        self.page.word(0).load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn barrier_between_threads() {
        let b = Arc::new(Barrier::new(4).unwrap());
        let hits = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..3)
            .map(|_| {
                let (b, hits) = (b.clone(), hits.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        hits.fetch_add(1, Ordering::SeqCst);
                        b.wait().unwrap();
                        b.wait().unwrap();
                    }
                })
            })
            .collect();
        for round in 1..=50u32 {
            hits.fetch_add(1, Ordering::SeqCst);
            b.wait().unwrap();
            // everyone has added before the first barrier of this round
            assert_eq!(hits.load(Ordering::SeqCst), round * 4);
            b.wait().unwrap();
        }
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn task_waiter_across_fork() {
        let w = TaskWaiter::new().unwrap();
        let child = crate::child::fork_child(|| {
            w.complete(1)?;
            w.wait(2)?;
            w.complete(3)?;
            Ok(())
        })
        .unwrap();
        w.wait(1).unwrap();
        assert!(w.step() >= 1);
        w.complete(2).unwrap();
        w.wait(3).unwrap();
        child.wait_ok().unwrap();
    }
}
