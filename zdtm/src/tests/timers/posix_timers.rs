use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "timers/posix_timers",
    family: "timers",
    feature: Some("timer_restore_ids"),
    description: "POSIX timers keep their ids, clocks, signals and settings; a periodic one keeps firing",
    ..Desc::DEFAULT
};

static FIRED: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_tick(_: libc::c_int) {
    FIRED.fetch_add(1, Ordering::SeqCst);
}

/// (id, signal, clock) triples from /proc/self/timers.
fn proc_timers() -> Result<Vec<(i32, i32, i32)>> {
    let s = std::fs::read_to_string("/proc/self/timers").context("read /proc/self/timers")?;
    let mut out = Vec::new();
    let (mut id, mut sig) = (None, None);
    for l in s.lines() {
        if let Some(v) = l.strip_prefix("ID:") {
            id = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("signal:") {
            sig = v.trim().split('/').next().and_then(|x| x.parse().ok());
        } else if let Some(v) = l.strip_prefix("ClockID:") {
            let clock = v.trim().parse().context("ClockID")?;
            out.push((id.ok_or_else(|| anyhow!("timer without ID"))?, sig.unwrap_or(0), clock));
        }
    }
    out.sort();
    Ok(out)
}

pub fn run(t: &mut Test) -> Result<()> {
    let sig_slow = libc::SIGRTMIN() + 1;
    let sig_tick = libc::SIGRTMIN() + 3;
    sys::sigaction(sig_tick, &sys::make_sigaction(sys::handler(on_tick), libc::SA_RESTART, &[]))
        .context("sigaction")?;
    sys::sigaction(sig_slow, &sys::make_sigaction(libc::SIG_IGN, 0, &[])).context("sigaction")?;
    let a = sys::timer_create(libc::CLOCK_MONOTONIC, sig_slow, 1).context("timer a")?;
    sys::timer_settime(a, 100_000_000_000, 1_000_000_000_000).context("arm a")?;
    let b = sys::timer_create(libc::CLOCK_REALTIME, sig_slow, 2).context("timer b")?;
    sys::timer_settime(b, 0, 2_000_000_000_000).context("arm b")?;
    let c = sys::timer_create(libc::CLOCK_BOOTTIME, sig_tick, 3).context("timer c")?;
    sys::timer_settime(c, 10_000_000, 10_000_000).context("arm c")?;
    let d = sys::timer_create(libc::CLOCK_MONOTONIC, sig_slow, 4).context("timer d")?;
    let before = proc_timers()?;
    ensure!(before.len() == 4, "expected 4 timers, /proc/self/timers has {before:?}");
    t.daemon()?;
    t.wait_sig();
    let after = proc_timers()?;
    ensure!(after == before, "/proc/self/timers was {before:?}, now {after:?}");
    let (ia, va) = sys::timer_gettime(a).context("gettime a")?;
    ensure!(ia == 100_000_000_000 && va > 0 && va <= 1_000_000_000_000, "timer a: ({ia}, {va})");
    let (ib, vb) = sys::timer_gettime(b).context("gettime b")?;
    ensure!(ib == 0 && vb > 1_000_000_000_000 && vb <= 2_000_000_000_000, "timer b: ({ib}, {vb})");
    let (ic, _) = sys::timer_gettime(c).context("gettime c")?;
    ensure!(ic == 10_000_000, "timer c interval {ic}");
    let (id_, vd) = sys::timer_gettime(d).context("gettime d")?;
    ensure!(id_ == 0 && vd == 0, "timer d should be disarmed: ({id_}, {vd})");
    let f0 = FIRED.load(Ordering::SeqCst);
    ensure!(wait_for(3000, || FIRED.load(Ordering::SeqCst) >= f0 + 5), "periodic timer c stopped firing");
    for id in [a, b, c, d] {
        sys::timer_delete(id).with_context(|| format!("timer_delete {id}"))?;
    }
    Ok(())
}
