use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "timers/itimer00",
    family: "timers",
    description: "ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF stay armed with sane remaining time",
    ..Desc::DEFAULT
};

const VALUE: u64 = 1000 * 1_000_000;
const INTERVAL: u64 = 500 * 1_000_000;

pub fn run(t: &mut Test) -> Result<()> {
    let which = [(libc::ITIMER_REAL, "REAL"), (libc::ITIMER_VIRTUAL, "VIRTUAL"), (libc::ITIMER_PROF, "PROF")];
    for (w, name) in which {
        sys::setitimer(w, INTERVAL, VALUE).with_context(|| format!("setitimer {name}"))?;
    }
    let start = std::time::Instant::now();
    t.daemon()?;
    t.wait_sig();
    let elapsed = start.elapsed().as_micros() as u64;
    for (w, name) in which {
        let (interval, value) = sys::getitimer(w).with_context(|| format!("getitimer {name}"))?;
        ensure!(interval == INTERVAL, "ITIMER_{name} interval {interval} us, expected {INTERVAL}");
        // CPU-time timers are rounded up to the tick
        ensure!(value > 0 && value <= VALUE + 20_000, "ITIMER_{name} value {value} us out of (0, {VALUE}+tick]");
        if w == libc::ITIMER_REAL {
            // remaining ≈ VALUE - elapsed wall time (some slack for the freeze)
            ensure!(
                value + elapsed + 5_000_000 >= VALUE,
                "ITIMER_REAL has {value} us left after {elapsed} us: it ran ahead"
            );
        } else {
            ensure!(value + 60_000_000 >= VALUE, "ITIMER_{name} lost more than a minute of CPU time: {value}");
        }
    }
    Ok(())
}
