use crate::prelude::*;
use nix::time::{clock_gettime, ClockId};

pub const DESC: Desc = Desc {
    name: "memory/vdso00",
    family: "memory",
    description: "vDSO time calls still work and agree with the kernel after restore; [vdso] is mapped",
    ..Desc::DEFAULT
};

fn ns(c: ClockId) -> Result<i128> {
    let ts = clock_gettime(c).with_context(|| format!("clock_gettime {c}"))?;
    Ok(ts.tv_sec() as i128 * 1_000_000_000 + ts.tv_nsec() as i128)
}

pub fn run(t: &mut Test) -> Result<()> {
    let mono0 = ns(ClockId::CLOCK_MONOTONIC)?;
    t.daemon()?;
    t.wait_sig();
    let maps = std::fs::read_to_string("/proc/self/maps").context("read maps")?;
    ensure!(maps.contains("[vdso]"), "no [vdso] in /proc/self/maps");
    for _ in 0..1000 {
        let a = ns(ClockId::CLOCK_MONOTONIC)?;
        let b = ns(ClockId::CLOCK_MONOTONIC)?;
        ensure!(b >= a && a >= mono0, "CLOCK_MONOTONIC went backwards: {mono0} {a} {b}");
    }
    let rt = ns(ClockId::CLOCK_REALTIME)? / 1000;
    let tod = sys::gettimeofday_us().context("gettimeofday")? as i128;
    ensure!((tod - rt).abs() < 2_000_000, "gettimeofday {tod} us and CLOCK_REALTIME {rt} us disagree");
    let raw = ns(ClockId::CLOCK_MONOTONIC_RAW)?;
    ensure!(raw > 0, "CLOCK_MONOTONIC_RAW is {raw}");
    // compare with the real syscall's idea of boot time
    let up: f64 = std::fs::read_to_string("/proc/uptime")
        .context("read /proc/uptime")?
        .split_whitespace()
        .next()
        .unwrap_or("")
        .parse()
        .context("parse /proc/uptime")?;
    let boot = ns(ClockId::CLOCK_BOOTTIME)? as f64 / 1e9;
    ensure!((boot - up).abs() < 5.0, "CLOCK_BOOTTIME {boot}s vs /proc/uptime {up}s");
    Ok(())
}
