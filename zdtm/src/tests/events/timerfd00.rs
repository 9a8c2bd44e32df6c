use crate::prelude::*;
use nix::sys::time::TimeSpec;
use nix::sys::timer::{Expiration, TimerSetTimeFlags};
use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
use std::time::Duration;

pub const DESC: Desc = Desc {
    name: "events/timerfd00",
    family: "events",
    description: "a periodic and a one-shot timerfd keep their settings; the periodic one ticks",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let per = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK).context("timerfd")?;
    let iv = TimeSpec::from(Duration::from_millis(100));
    per.set(Expiration::IntervalDelayed(iv, iv), TimerSetTimeFlags::empty()).context("arm periodic")?;
    let one = TimerFd::new(ClockId::CLOCK_REALTIME, TimerFlags::TFD_NONBLOCK).context("timerfd 2")?;
    let far = TimeSpec::from(Duration::from_secs(1000));
    one.set(Expiration::OneShot(far), TimerSetTimeFlags::empty()).context("arm one-shot")?;
    t.daemon()?;
    t.wait_sig();
    match per.get().context("get periodic")? {
        Some(Expiration::IntervalDelayed(_, i)) | Some(Expiration::Interval(i)) => {
            ensure!(i == iv, "periodic interval {i:?}, expected {iv:?}")
        }
        other => bail!("periodic timerfd is {other:?}"),
    }
    match one.get().context("get one-shot")? {
        Some(Expiration::OneShot(v)) => {
            ensure!(v <= far && v > TimeSpec::from(Duration::from_secs(900)), "one-shot has {v:?} left")
        }
        other => bail!("one-shot timerfd is {other:?}"),
    }
    ensure!(
        wait_for(2000, || {
            let mut b = [0u8; 8];
            nix::unistd::read(&per, &mut b).map(|n| n == 8 && u64::from_ne_bytes(b) > 0).unwrap_or(false)
        }),
        "periodic timerfd does not tick"
    );
    Ok(())
}
