use crate::prelude::*;
use std::sync::atomic::{compiler_fence, Ordering};

pub const DESC: Desc = Desc {
    name: "memory/predump_shmem",
    family: "memory",
    timeout: 120,
    description: "parent and child keep rewriting and dropping (MADV_DONTNEED, MADV_REMOVE) pages of one MAP_SHARED anonymous area until SIGTERM; every page is checked against the writer's log (run it with --pre N)",
    ..Desc::DEFAULT
};

const PAGE: usize = 4096;
/// Pages each of the two writers owns; the parent has the first half.
const HALF: usize = 512;
/// A page punched out with MADV_REMOVE: zeros.
const ZERO: u32 = u32::MAX;
/// No write in flight.
const NONE: u32 = u32::MAX;

fn seed(who: u64, page: usize, gen: u32) -> u64 {
    (who << 56) | ((page as u64) << 24) | u64::from(gen)
}

/// What one writer put in its half, and the write in flight (a freeze may
/// stop it between the page and the log).
struct Log {
    who: u64,
    base: usize,
    gens: Vec<u32>,
    pending: (usize, u32),
}

impl Log {
    fn new(who: u64, base: usize) -> Self {
        Log {
            who,
            base,
            gens: vec![0; HALF],
            pending: (0, NONE),
        }
    }

    fn addr(&self, i: usize) -> usize {
        self.base + i * PAGE
    }

    fn write(&mut self, i: usize, gen: u32) {
        let mut page = vec![0u8; PAGE];
        if gen != ZERO {
            pattern::fill(seed(self.who, i, gen), &mut page);
        }
        self.pending = (i, gen);
        compiler_fence(Ordering::SeqCst);
        sys::write_mem(self.addr(i), &page);
        compiler_fence(Ordering::SeqCst);
        self.gens[i] = gen;
        compiler_fence(Ordering::SeqCst);
        self.pending = (0, NONE);
    }

    /// One step of random work on page `i` of the half.
    fn step(&mut self, m: &Mapping, x: u64, i: usize, gen: u32) -> Result<()> {
        let off = self.addr(i) - m.addr();
        match (x >> 32) % 16 {
            // unmapped from this process only: the data stays
            0 => m.madvise(off, PAGE, libc::MADV_DONTNEED).context("MADV_DONTNEED")?,
            // punched out of the object: zeros
            1 => {
                self.pending = (i, ZERO);
                compiler_fence(Ordering::SeqCst);
                m.madvise(off, PAGE, libc::MADV_REMOVE).context("MADV_REMOVE")?;
                compiler_fence(Ordering::SeqCst);
                self.gens[i] = ZERO;
                compiler_fence(Ordering::SeqCst);
                self.pending = (0, NONE);
            }
            _ => self.write(i, gen),
        }
        Ok(())
    }

    fn check(&self, what: &str) -> Result<()> {
        let bytes = sys::read_mem(self.base, HALF * PAGE);
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            let ok = |gen: u32| {
                if gen == ZERO {
                    page.iter().all(|&b| b == 0)
                } else {
                    pattern::check(seed(self.who, i, gen), page).is_ok()
                }
            };
            let g = self.gens[i];
            let in_flight = self.pending.0 == i && self.pending.1 != NONE && ok(self.pending.1);
            ensure!(ok(g) || in_flight, "{what}: page {i} does not hold generation {g} (pending {:?})", self.pending);
        }
        Ok(())
    }
}

/// Rewrites pages of `log`'s half until `stop` says so.
fn work(log: &mut Log, m: &Mapping, mut rng: u64, stop: impl Fn() -> bool) -> Result<()> {
    let mut gen: u32 = 1;
    // At least one round, however soon the stop comes.
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = (rng % HALF as u64) as usize;
        log.step(m, rng, i, gen)?;
        gen = (gen + 1) % (1 << 24);
        if stop() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_micros(300));
    }
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let m = Mapping::anon(2 * HALF * PAGE, rw, libc::MAP_SHARED).context("mmap")?;
    let mut mine = Log::new(1, m.addr());
    for i in 0..HALF {
        mine.write(i, 0);
    }
    // 1: the child's half is written; 2: stop; 3: the child's check passed.
    let w = TaskWaiter::new()?;
    let child = fork_child(|| {
        let mut log = Log::new(2, m.addr() + HALF * PAGE);
        for i in 0..HALF {
            log.write(i, 0);
        }
        w.complete(1)?;
        work(&mut log, &m, 0x9e37_79b9_7f4a_7c15, || w.step() >= 2)?;
        log.check("child: its half")?;
        w.complete(3)?;
        Ok(())
    })?;
    w.wait(1)?;
    t.daemon()?;
    let res = (|| {
        work(&mut mine, &m, 0x2545_f491_4f6c_dd1d, || t.sig_received())?;
        w.complete(2)?;
        ensure!(wait_for(20_000, || w.step() >= 3 || child.is_zombie_or_gone()), "child did not answer");
        child.wait_ok()?;
        mine.check("parent: its half")
    })();
    if res.is_err() {
        child.kill();
    }
    res
}
