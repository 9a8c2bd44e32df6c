//! `/proc/PID/timers`: the POSIX timers of a process, four lines each:
//!
//! ```text
//! ID: 0
//! signal: 14/00000000deadbeef
//! notify: signal/pid.1234
//! ClockID: 1
//! ```
//!
//! `notify` is `signal`, `none` or `thread` (SIGEV_SIGNAL, SIGEV_NONE,
//! SIGEV_THREAD), followed by `/tid.N` when SIGEV_THREAD_ID is set, else
//! `/pid.N`.

use super::{numbered_lines, perr, FileKind, Result};

const K: FileKind = FileKind::Timers;

/// `SIGEV_THREAD_ID`, or'ed into `notify` for a thread target.
pub const SIGEV_THREAD_ID: i32 = 4;

/// One POSIX timer as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PosixTimer {
    pub id: i32,
    pub signo: i32,
    /// `sigev_value` (the pointer as the kernel prints it).
    pub sival: u64,
    /// `sigev_notify`, with [`SIGEV_THREAD_ID`] for a thread target.
    pub notify: i32,
    /// The pid or tid signalled.
    pub target: i32,
    pub clock: i32,
}

/// Parses `/proc/PID/timers`.
pub fn parse_timers(text: &[u8]) -> Result<Vec<PosixTimer>> {
    let mut out: Vec<PosixTimer> = Vec::new();
    for (no, line) in numbered_lines(text) {
        let l = std::str::from_utf8(line).map_err(|_| perr(K, no, "not UTF-8", line))?;
        let (key, val) = l
            .split_once(':')
            .ok_or_else(|| perr(K, no, "no ':'", line))?;
        let val = val.trim();
        let bad = |what: &str| perr(K, no, what, line);
        match key {
            "ID" => out.push(PosixTimer {
                id: val.parse().map_err(|_| bad("bad ID"))?,
                ..Default::default()
            }),
            _ => {
                let t = out.last_mut().ok_or_else(|| bad("a field before any ID"))?;
                match key {
                    "signal" => {
                        let (s, v) = val.split_once('/').ok_or_else(|| bad("no '/' in signal"))?;
                        t.signo = s.parse().map_err(|_| bad("bad signal number"))?;
                        t.sival = u64::from_str_radix(v, 16).map_err(|_| bad("bad sigev value"))?;
                    }
                    "notify" => {
                        let (how, who) =
                            val.split_once('/').ok_or_else(|| bad("no '/' in notify"))?;
                        let base = match how {
                            "signal" => libc::SIGEV_SIGNAL,
                            "none" => libc::SIGEV_NONE,
                            "thread" => libc::SIGEV_THREAD,
                            _ => return Err(bad("unknown notify kind")),
                        };
                        let (kind, n) =
                            who.split_once('.').ok_or_else(|| bad("no '.' in notify"))?;
                        t.notify = base | if kind == "tid" { SIGEV_THREAD_ID } else { 0 };
                        t.target = n.parse().map_err(|_| bad("bad notify pid"))?;
                    }
                    "ClockID" => t.clock = val.parse().map_err(|_| bad("bad ClockID"))?,
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_notify_kind() {
        let text = b"ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.77\nClockID: 0\n\
ID: 3\nsignal: 36/00007ffd1234abcd\nnotify: signal/tid.78\nClockID: 1\n\
ID: 7\nsignal: 0/0000000000000000\nnotify: none/pid.77\nClockID: 7\n";
        let t = parse_timers(text).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(
            t[1],
            PosixTimer {
                id: 3,
                signo: 36,
                sival: 0x7ffd_1234_abcd,
                notify: libc::SIGEV_SIGNAL | SIGEV_THREAD_ID,
                target: 78,
                clock: 1,
            }
        );
        assert_eq!(t[2].notify, libc::SIGEV_NONE);
    }

    #[test]
    fn the_real_file_of_this_process_parses() {
        let text = std::fs::read("/proc/self/timers").unwrap();
        parse_timers(&text).unwrap();
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_timers(s.as_bytes());
        }
    }
}
