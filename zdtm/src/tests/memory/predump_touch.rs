use crate::prelude::*;
use std::sync::atomic::{compiler_fence, Ordering};

pub const DESC: Desc = Desc {
    name: "memory/predump_touch",
    family: "memory",
    timeout: 120,
    description: "keeps rewriting, dropping (MADV_DONTNEED) and remapping pages until SIGTERM; every byte is checked against a log kept in memory (run it with --pre N)",
    ..Desc::DEFAULT
};

const PAGE: usize = 4096;
/// Pages of the area that is rewritten page by page.
const PAGES: usize = 2048;
/// Pages of the area that is mapped anew from time to time.
const FRESH: usize = 16;
/// A page dropped with MADV_DONTNEED: zeros.
const ZERO: u32 = u32::MAX;
/// No write in flight.
const NONE: u32 = u32::MAX;

fn seed(area: u64, page: usize, gen: u32) -> u64 {
    (area << 56) | ((page as u64) << 24) | u64::from(gen)
}

/// Maps fresh anonymous memory over `[addr, addr + len)`, a new mapping
/// where the old one was (same place, same protection).
fn remap(addr: usize, len: usize) -> Result<()> {
    // SAFETY: `[addr, addr + len)` is the middle of a reservation this
    // test owns; nothing but this test's page log refers to it, and the
    // log is rewritten right after.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
            -1,
            0,
        )
    };
    ensure!(p as usize == addr, "mmap MAP_FIXED at {addr:#x}: {}", std::io::Error::last_os_error());
    Ok(())
}

/// A page log: the generation each page holds, and the write in flight
/// (a freeze may stop the writer between the page and the log).
struct Log {
    gens: Vec<u32>,
    pending: (usize, u32),
    /// The whole area is being replaced: zeros are fine too.
    replacing: bool,
}

impl Log {
    fn new(n: usize) -> Self {
        Log {
            gens: vec![0; n],
            pending: (0, NONE),
            replacing: false,
        }
    }

    /// Writes generation `gen` of page `i` of `area` at `page`.
    fn write(&mut self, area: u64, i: usize, gen: u32, page: &mut [u8]) {
        self.pending = (i, gen);
        compiler_fence(Ordering::SeqCst);
        if gen == ZERO {
            page.fill(0);
        } else {
            pattern::fill(seed(area, i, gen), page);
        }
        compiler_fence(Ordering::SeqCst);
        self.gens[i] = gen;
        compiler_fence(Ordering::SeqCst);
        self.pending = (0, NONE);
    }

    fn check(&self, what: &str, area: u64, bytes: &[u8]) -> Result<()> {
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            let ok = |gen: u32| {
                if gen == ZERO {
                    page.iter().all(|&b| b == 0)
                } else {
                    pattern::check(seed(area, i, gen), page).is_ok()
                }
            };
            let g = self.gens[i];
            let in_flight = self.pending.0 == i && self.pending.1 != NONE && ok(self.pending.1);
            let replaced = self.replacing && ok(ZERO);
            ensure!(ok(g) || in_flight || replaced, "{what}: page {i} does not hold generation {g} (pending {:?})", self.pending);
        }
        Ok(())
    }
}

pub fn run(t: &mut Test) -> Result<()> {
    let mut m = Mapping::anon(PAGES * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE).context("mmap")?;
    // The fresh area sits between two PROT_NONE guard pages so that it
    // never merges with a neighbour: the layout stays the same.
    let mut r = Mapping::anon((FRESH + 2) * PAGE, libc::PROT_NONE, libc::MAP_PRIVATE).context("mmap reservation")?;
    r.protect(PAGE, FRESH * PAGE, libc::PROT_READ | libc::PROT_WRITE).context("mprotect")?;
    let mut log = Log::new(PAGES);
    let mut flog = Log::new(FRESH);
    for i in 0..PAGES {
        log.write(1, i, 0, &mut m.bytes_mut()[i * PAGE..(i + 1) * PAGE]);
    }
    for i in 0..FRESH {
        flog.write(2, i, 0, &mut r.bytes_mut()[(i + 1) * PAGE..(i + 2) * PAGE]);
    }
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut gen: u32 = 1;
    let mut rounds: u64 = 0;
    t.daemon()?;
    while !t.sig_received() {
        let x = next();
        let i = (x % PAGES as u64) as usize;
        match (x >> 32) % 16 {
            // drop it: zeros from now on
            0 => {
                log.pending = (i, ZERO);
                compiler_fence(Ordering::SeqCst);
                m.madvise(i * PAGE, PAGE, libc::MADV_DONTNEED).context("madvise")?;
                compiler_fence(Ordering::SeqCst);
                log.gens[i] = ZERO;
                compiler_fence(Ordering::SeqCst);
                log.pending = (0, NONE);
            }
            // a new mapping over the fresh area
            1 if rounds % 8 == 0 => {
                flog.replacing = true;
                compiler_fence(Ordering::SeqCst);
                remap(r.addr() + PAGE, FRESH * PAGE)?;
                compiler_fence(Ordering::SeqCst);
                for g in flog.gens.iter_mut() {
                    *g = ZERO;
                }
                compiler_fence(Ordering::SeqCst);
                flog.replacing = false;
                let j = (x >> 8) as usize % FRESH;
                flog.write(2, j, gen, &mut r.bytes_mut()[(j + 1) * PAGE..(j + 2) * PAGE]);
            }
            _ => log.write(1, i, gen, &mut m.bytes_mut()[i * PAGE..(i + 1) * PAGE]),
        }
        gen = (gen + 1) % (1 << 24);
        rounds += 1;
        std::thread::sleep(std::time::Duration::from_micros(300));
    }
    ensure!(rounds > 0, "no round ran before SIGTERM");
    log.check("rewritten area", 1, m.bytes())?;
    flog.check("remapped area", 2, r.range(PAGE, FRESH * PAGE))?;
    ensure!(maps_perms(r.addr())? == "---p", "the guard page lost PROT_NONE");
    ensure!(maps_perms(r.addr() + PAGE)? == "rw-p", "the remapped area is not rw-p");
    Ok(())
}
