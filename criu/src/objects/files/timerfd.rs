//! timerfd: `timerfd_entry` (clock, flags, time left, interval, expirations
//! not read). At restore the timer is armed again for the time that was
//! left, counted from now.

use std::os::fd::{AsFd, OwnedFd};

use crate::image::pb;
use crate::proc;
use crate::sys;

use super::super::{Error, Result};
use super::no_owner;

/// Dump half.
pub fn dump(pid: i32, fd: i32, id: u32, info: &proc::Fdinfo) -> Result<pb::TimerfdEntry> {
    let t = info.timerfd.ok_or_else(|| Error::Unsupported {
        pid,
        what: format!("fd {fd} is a timerfd but its fdinfo has no clockid"),
    })?;
    Ok(pb::TimerfdEntry {
        id,
        flags: info.flags & !(libc::O_CLOEXEC as u32),
        fown: no_owner(),
        clockid: t.clockid as u32,
        ticks: t.ticks,
        settime_flags: t.settime_flags,
        vsec: t.it_value.0,
        vnsec: t.it_value.1,
        isec: t.it_interval.0,
        insec: t.it_interval.1,
    })
}

/// Adds two (sec, nsec) times.
pub fn add(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    let ns = a.1 + b.1;
    (a.0 + b.0 + ns / 1_000_000_000, ns % 1_000_000_000)
}

/// The settime flags and value to arm a timer whose `left` time remains:
/// relative, unless the timer was absolute with TFD_TIMER_CANCEL_ON_SET
/// (which needs an absolute time), then `now + left`.
pub fn rearm(settime_flags: u32, left: (u64, u64), now: (u64, u64)) -> (i32, (u64, u64)) {
    let cancel = libc::TFD_TIMER_CANCEL_ON_SET as u32 | libc::TFD_TIMER_ABSTIME as u32;
    if settime_flags & cancel == cancel && left != (0, 0) {
        (settime_flags as i32, add(now, left))
    } else {
        (0, left)
    }
}

/// Restore half.
pub fn open(e: &pb::TimerfdEntry) -> Result<OwnedFd> {
    let err = |what: &str, errno| Error::Mismatch {
        what: format!("timerfd id {} (clock {}): {what}: {errno}", e.id, e.clockid),
    };
    let clock = e.clockid as i32;
    let fd = sys::events::timerfd_create(clock, libc::TFD_CLOEXEC)
        .map_err(|er| err("timerfd_create", er))?;
    let mut left = (e.vsec, e.vnsec);
    // A periodic timer that expired and was not read since shows nothing
    // left (the kernel moves it on only when it is read): it still ticks,
    // one interval from now.
    if left == (0, 0) && e.ticks != 0 && (e.isec, e.insec) != (0, 0) {
        left = (e.isec, e.insec);
    }
    if left != (0, 0) {
        let now = sys::events::clock_now(clock).map_err(|er| err("clock_gettime", er))?;
        let (flags, value) = rearm(e.settime_flags, left, now);
        sys::events::timerfd_settime(&fd, flags, value, (e.isec, e.insec))
            .map_err(|er| err("timerfd_settime", er))?;
    }
    if e.ticks != 0 {
        sys::events::timerfd_set_ticks(&fd, e.ticks)
            .map_err(|er| err(&format!("setting {} ticks", e.ticks), er))?;
    }
    super::pipe::set_flags(fd.as_fd(), e.flags, &format!("timerfd id {}", e.id))?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn time_arithmetic_carries_nanoseconds() {
        assert_eq!(add((1, 600_000_000), (2, 500_000_000)), (4, 100_000_000));
        assert_eq!(rearm(0, (5, 1), (100, 0)), (0, (5, 1)));
        let abs = (libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET) as u32;
        assert_eq!(
            rearm(abs, (5, 1), (100, 999_999_999)),
            (abs as i32, (106, 0))
        );
        // Plain absolute timers are armed relatively: the time left is what counts.
        assert_eq!(
            rearm(libc::TFD_TIMER_ABSTIME as u32, (5, 0), (100, 0)),
            (0, (5, 0))
        );
    }

    #[test]
    fn armed_periodic_timer_survives() {
        let me = std::process::id() as i32;
        let fd = sys::events::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_NONBLOCK).unwrap();
        sys::events::timerfd_settime(&fd, 0, (1000, 0), (11, 5)).unwrap();
        let info = proc::read_fdinfo(me, fd.as_raw_fd()).unwrap();
        let e = dump(me, fd.as_raw_fd(), 1, &info).unwrap();
        assert_eq!((e.isec, e.insec), (11, 5));
        assert!(e.vsec >= 998 && e.vsec < 1000);
        let back = open(&e).unwrap();
        let info2 = proc::read_fdinfo(me, back.as_raw_fd()).unwrap();
        let t = info2.timerfd.unwrap();
        assert_eq!(t.clockid, libc::CLOCK_MONOTONIC);
        assert_eq!(t.it_interval, (11, 5));
        assert!(t.it_value.0 <= e.vsec && t.it_value.0 + 2 >= e.vsec);
        assert!(info2.flags & libc::O_NONBLOCK as u32 != 0);
    }
}
