//! `/proc/PID/fdinfo/FD`: the common `pos`, `flags` (octal), `mnt_id`, `ino`
//! lines, then lines specific to the kind of file. Each known kind-specific
//! line is typed; lines this parser does not know are kept raw in
//! [`Fdinfo::unknown`]. The kernel prints most kind-specific numbers in hex;
//! the field docs say where they are not.

use super::{dec, hex_u32, hex_u64, numbered_lines, perr, Dev, FileKind, Result};

const K: FileKind = FileKind::Fdinfo;

/// `eventfd-count:` (hex), `eventfd-id:`, `eventfd-semaphore:`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventfdInfo {
    pub count: u64,
    /// The eventfd's id (6.x; decimal).
    pub id: Option<u64>,
    /// EFD_SEMAPHORE (6.x).
    pub semaphore: Option<bool>,
}

/// One `tfd:` line of an epoll instance: a registered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpollTfd {
    /// Target fd number in the owner (decimal).
    pub tfd: i32,
    /// `EPOLL*` event mask.
    pub events: u32,
    /// The user's `epoll_data`.
    pub data: u64,
    /// File position of the target (decimal).
    pub pos: u64,
    /// Inode of the target.
    pub ino: u64,
    /// Device of the target's superblock.
    pub dev: Dev,
}

/// A file handle (`fhandle-bytes:`, `fhandle-type:`, `f_handle:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsHandle {
    pub handle_type: i32,
    pub bytes: Vec<u8>,
}

/// One `inotify wd:` watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyWatch {
    pub wd: i32,
    pub ino: u64,
    pub dev: Dev,
    /// `IN_*` mask.
    pub mask: u32,
    pub ignored_mask: u32,
    /// Absent when the filesystem cannot encode a handle.
    pub fhandle: Option<FsHandle>,
}

/// `fanotify flags: event-flags:` (the group's `fanotify_init` arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanotifyInfo {
    /// `FAN_*` init flags.
    pub flags: u32,
    /// `O_*` flags of event files.
    pub event_flags: u32,
}

/// What a fanotify mark is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanotifyMarkTarget {
    /// `fanotify ino:` — an inode.
    Inode {
        ino: u64,
        dev: Dev,
        fhandle: Option<FsHandle>,
    },
    /// `fanotify mnt_id:` — a mount.
    Mount { mnt_id: i32 },
    /// `fanotify sdev:` — a whole filesystem.
    Filesystem { dev: Dev },
}

/// One fanotify mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanotifyMark {
    pub target: FanotifyMarkTarget,
    /// `FAN_MARK_*` flags.
    pub mflags: u32,
    pub mask: u64,
    pub ignored_mask: u64,
}

/// timerfd state. `it_value` is the time left until the next expiry, and
/// both are printed by the kernel as `(SEC, NSEC)` in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerfdInfo {
    pub clockid: i32,
    /// Expirations not yet read.
    pub ticks: u64,
    /// `TFD_TIMER_*` flags passed to settime (octal in the file).
    pub settime_flags: u32,
    /// (seconds, nanoseconds)
    pub it_value: (u64, u64),
    /// (seconds, nanoseconds)
    pub it_interval: (u64, u64),
}

/// pidfd: `Pid:` (-1 once the task is gone, 0 if not visible) and `NSpid:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidfdInfo {
    pub pid: i32,
    pub ns_pid: Vec<i32>,
}

/// Kind of a file lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLockClass {
    Posix,
    Flock,
    /// Open file description lock (F_OFD_SETLK).
    Ofd,
    Lease,
    Deleg,
    Access,
    Other(String),
}

/// Lock type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLockType {
    Read,
    Write,
    Unlock,
    Other(String),
}

/// One `lock:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLock {
    /// Ordinal printed by the kernel.
    pub id: u64,
    /// Printed with `->`: a waiter blocked on the previous lock.
    pub blocked: bool,
    pub class: FileLockClass,
    /// `ADVISORY`/`MANDATORY` for locks, `ACTIVE`/`BREAKING`/`BREAKER` for leases.
    pub mode: String,
    pub lock_type: FileLockType,
    /// Owner pid (-1 for OFD locks).
    pub pid: i32,
    /// Device and inode of the locked file; `None` for `<none>:0`.
    pub dev_ino: Option<(Dev, u64)>,
    /// First byte (decimal).
    pub start: u64,
    /// Last byte, `None` for `EOF`.
    pub end: Option<u64>,
}

/// Parsed `/proc/PID/fdinfo/FD`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fdinfo {
    /// File position (decimal).
    pub pos: u64,
    /// `O_*` flags of the open file (octal in the file).
    pub flags: u32,
    /// Mount id (decimal; absent on old kernels).
    pub mnt_id: Option<i32>,
    /// Inode number (decimal; 5.x+).
    pub ino: Option<u64>,
    pub eventfd: Option<EventfdInfo>,
    pub epoll: Vec<EpollTfd>,
    pub inotify: Vec<InotifyWatch>,
    pub fanotify: Option<FanotifyInfo>,
    pub fanotify_marks: Vec<FanotifyMark>,
    /// signalfd's `sigmask:` (hex, bit N-1 = signal N).
    pub signalfd_sigmask: Option<u64>,
    pub timerfd: Option<TimerfdInfo>,
    pub pidfd: Option<PidfdInfo>,
    pub locks: Vec<FileLock>,
    /// Lines not understood, raw.
    pub unknown: Vec<String>,
}

/// Split `k1:v1 k2: v2 ...` into pairs; a key whose value is empty takes the
/// next token (the kernel pads some values).
fn kv_pairs(s: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let mut it = s.split_ascii_whitespace();
    while let Some(tok) = it.next() {
        let (k, v) = tok.split_once(':')?;
        let v = if v.is_empty() { it.next()? } else { v };
        out.push((k, v));
    }
    Some(out)
}

fn get<'a>(pairs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn fhandle(p: &[(&str, &str)]) -> Option<Option<FsHandle>> {
    let Some(nbytes) = get(p, "fhandle-bytes") else {
        return Some(None);
    };
    let n = hex_u32(nbytes)?;
    let handle_type = i32::from_str_radix(get(p, "fhandle-type")?, 16).ok()?;
    let bytes = hex_bytes(get(p, "f_handle")?)?;
    (bytes.len() == n as usize).then_some(Some(FsHandle { handle_type, bytes }))
}

fn parse_tfd(s: &str) -> Option<EpollTfd> {
    let p = kv_pairs(s)?;
    Some(EpollTfd {
        tfd: dec(get(&p, "tfd")?)?,
        events: hex_u32(get(&p, "events")?)?,
        data: hex_u64(get(&p, "data")?)?,
        pos: dec(get(&p, "pos")?)?,
        ino: hex_u64(get(&p, "ino")?)?,
        dev: Dev::from_kernel(hex_u32(get(&p, "sdev")?)?),
    })
}

fn parse_inotify(s: &str) -> Option<InotifyWatch> {
    let p = kv_pairs(s)?;
    Some(InotifyWatch {
        wd: i32::from_str_radix(get(&p, "wd")?, 16).ok()?,
        ino: hex_u64(get(&p, "ino")?)?,
        dev: Dev::from_kernel(hex_u32(get(&p, "sdev")?)?),
        mask: hex_u32(get(&p, "mask")?)?,
        ignored_mask: hex_u32(get(&p, "ignored_mask")?)?,
        fhandle: fhandle(&p)?,
    })
}

enum Fan {
    Info(FanotifyInfo),
    Mark(FanotifyMark),
}

fn parse_fanotify(s: &str) -> Option<Fan> {
    let p = kv_pairs(s)?;
    if let Some(flags) = get(&p, "flags") {
        return Some(Fan::Info(FanotifyInfo {
            flags: hex_u32(flags)?,
            event_flags: hex_u32(get(&p, "event-flags")?)?,
        }));
    }
    let target = if let Some(ino) = get(&p, "ino") {
        FanotifyMarkTarget::Inode {
            ino: hex_u64(ino)?,
            dev: Dev::from_kernel(hex_u32(get(&p, "sdev")?)?),
            fhandle: fhandle(&p)?,
        }
    } else if let Some(m) = get(&p, "mnt_id") {
        FanotifyMarkTarget::Mount {
            mnt_id: i32::from_str_radix(m, 16).ok()?,
        }
    } else {
        FanotifyMarkTarget::Filesystem {
            dev: Dev::from_kernel(hex_u32(get(&p, "sdev")?)?),
        }
    };
    Some(Fan::Mark(FanotifyMark {
        target,
        mflags: hex_u32(get(&p, "mflags")?)?,
        mask: hex_u64(get(&p, "mask")?)?,
        ignored_mask: hex_u64(get(&p, "ignored_mask")?)?,
    }))
}

fn parse_lock(s: &str) -> Option<FileLock> {
    let mut t: Vec<&str> = s.split_ascii_whitespace().collect();
    let blocked = t.first() == Some(&"->");
    if blocked {
        t.remove(0);
    }
    let [id, class, mode, ty, pid, devino, start, end] = t[..] else {
        return None;
    };
    let id = dec(id.strip_suffix(':')?)?;
    let class = match class {
        "POSIX" => FileLockClass::Posix,
        "FLOCK" => FileLockClass::Flock,
        "OFDLCK" => FileLockClass::Ofd,
        "LEASE" => FileLockClass::Lease,
        "DELEG" => FileLockClass::Deleg,
        "ACCESS" => FileLockClass::Access,
        o => FileLockClass::Other(o.to_string()),
    };
    let lock_type = match ty {
        "READ" => FileLockType::Read,
        "WRITE" => FileLockType::Write,
        "UNLCK" => FileLockType::Unlock,
        o => FileLockType::Other(o.to_string()),
    };
    let dev_ino = if devino == "<none>:0" {
        None
    } else {
        let (dev, ino) = devino.rsplit_once(':')?;
        Some((super::parse_dev_hex(dev)?, dec(ino)?))
    };
    Some(FileLock {
        id,
        blocked,
        class,
        mode: mode.to_string(),
        lock_type,
        pid: dec(pid)?,
        dev_ino,
        start: dec(start)?,
        end: if end == "EOF" { None } else { Some(dec(end)?) },
    })
}

/// `(SEC, NSEC)`
fn parse_pair(s: &str) -> Option<(u64, u64)> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (a, b) = inner.split_once(',')?;
    Some((dec(a.trim())?, dec(b.trim())?))
}

#[derive(Default)]
struct TimerfdParts {
    clockid: Option<i32>,
    ticks: Option<u64>,
    settime_flags: Option<u32>,
    it_value: Option<(u64, u64)>,
    it_interval: Option<(u64, u64)>,
}

/// Parse `/proc/PID/fdinfo/FD`.
pub fn parse_fdinfo(text: &str) -> Result<Fdinfo> {
    let mut fi = Fdinfo::default();
    let (mut seen_pos, mut seen_flags) = (false, false);
    let mut tfd = TimerfdParts::default();
    let mut timer_line = 0;
    for (no, line) in numbered_lines(text.as_bytes()) {
        let l = std::str::from_utf8(line).map_err(|_| perr(K, no, "not UTF-8", line))?;
        let err = |what: &str| perr(K, no, what, line);
        if l.starts_with("tfd:") {
            fi.epoll
                .push(parse_tfd(l).ok_or_else(|| err("bad epoll tfd line"))?);
            continue;
        }
        if let Some(rest) = l.strip_prefix("inotify ") {
            fi.inotify
                .push(parse_inotify(rest).ok_or_else(|| err("bad inotify line"))?);
            continue;
        }
        if let Some(rest) = l.strip_prefix("fanotify ") {
            match parse_fanotify(rest).ok_or_else(|| err("bad fanotify line"))? {
                Fan::Info(i) => fi.fanotify = Some(i),
                Fan::Mark(m) => fi.fanotify_marks.push(m),
            }
            continue;
        }
        let Some((key, val)) = l.split_once(':') else {
            fi.unknown.push(l.to_string());
            continue;
        };
        let val = val.trim();
        let num_u64 = || dec::<u64>(val).ok_or_else(|| err("bad number"));
        let num_i32 = || dec::<i32>(val).ok_or_else(|| err("bad number"));
        match key {
            "pos" => {
                fi.pos = num_u64()?;
                seen_pos = true;
            }
            "flags" => {
                fi.flags = u32::from_str_radix(val, 8).map_err(|_| err("bad octal flags"))?;
                seen_flags = true;
            }
            "mnt_id" => fi.mnt_id = Some(num_i32()?),
            "ino" => fi.ino = Some(num_u64()?),
            "eventfd-count" => {
                fi.eventfd.get_or_insert_with(EventfdInfo::default).count =
                    hex_u64(val).ok_or_else(|| err("bad eventfd count"))?
            }
            "eventfd-id" => {
                fi.eventfd.get_or_insert_with(EventfdInfo::default).id = Some(num_u64()?)
            }
            "eventfd-semaphore" => {
                fi.eventfd
                    .get_or_insert_with(EventfdInfo::default)
                    .semaphore = Some(match val {
                    "0" => false,
                    "1" => true,
                    _ => return Err(err("bad eventfd-semaphore")),
                })
            }
            "sigmask" => {
                fi.signalfd_sigmask = Some(hex_u64(val).ok_or_else(|| err("bad sigmask"))?)
            }
            "clockid" => {
                tfd.clockid = Some(num_i32()?);
                timer_line = no;
            }
            "ticks" => tfd.ticks = Some(num_u64()?),
            "settime flags" => {
                tfd.settime_flags =
                    Some(u32::from_str_radix(val, 8).map_err(|_| err("bad settime flags"))?)
            }
            "it_value" => tfd.it_value = Some(parse_pair(val).ok_or_else(|| err("bad it_value"))?),
            "it_interval" => {
                tfd.it_interval = Some(parse_pair(val).ok_or_else(|| err("bad it_interval"))?)
            }
            "Pid" => {
                fi.pidfd
                    .get_or_insert_with(|| PidfdInfo {
                        pid: 0,
                        ns_pid: vec![],
                    })
                    .pid = num_i32()?
            }
            "NSpid" => {
                fi.pidfd
                    .get_or_insert_with(|| PidfdInfo {
                        pid: 0,
                        ns_pid: vec![],
                    })
                    .ns_pid = val
                    .split_ascii_whitespace()
                    .map(|x| dec(x).ok_or_else(|| err("bad NSpid")))
                    .collect::<Result<_>>()?
            }
            "lock" => fi
                .locks
                .push(parse_lock(val).ok_or_else(|| err("bad lock line"))?),
            _ => fi.unknown.push(l.to_string()),
        }
    }
    let any_timer = tfd.clockid.is_some()
        || tfd.ticks.is_some()
        || tfd.settime_flags.is_some()
        || tfd.it_value.is_some()
        || tfd.it_interval.is_some();
    if any_timer {
        match tfd {
            TimerfdParts {
                clockid: Some(clockid),
                ticks: Some(ticks),
                settime_flags: Some(settime_flags),
                it_value: Some(it_value),
                it_interval: Some(it_interval),
            } => {
                fi.timerfd = Some(TimerfdInfo {
                    clockid,
                    ticks,
                    settime_flags,
                    it_value,
                    it_interval,
                })
            }
            _ => {
                return Err(perr(
                    K,
                    timer_line.max(1),
                    "incomplete timerfd lines",
                    text.as_bytes(),
                ))
            }
        }
    }
    if !seen_pos || !seen_flags {
        return Err(perr(K, 1, "no pos: or flags: line", text.as_bytes()));
    }
    Ok(fi)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fixture;
    use super::*;
    use proptest::prelude::*;

    fn fx(name: &str) -> Fdinfo {
        let t = String::from_utf8(fixture(&format!("fdinfo_{name}.txt"))).expect("utf8");
        parse_fdinfo(&t).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn snapshots() {
        for name in [
            "epoll",
            "eventfd",
            "eventfd_sem",
            "fanotify",
            "inotify",
            "memfd",
            "pidfd",
            "pidfd_dead",
            "pipe",
            "reg_flock",
            "reg_lock",
            "signalfd",
            "socket",
            "timerfd",
            "timerfd_unarmed",
        ] {
            insta::assert_debug_snapshot!(format!("fdinfo_{name}"), fx(name));
        }
    }

    #[test]
    fn typed_values() {
        let e = fx("eventfd");
        assert_eq!(e.flags, (libc::O_RDWR | libc::O_NONBLOCK) as u32);
        assert_eq!(e.eventfd.as_ref().map(|x| x.count), Some(5));
        assert_eq!(
            fx("eventfd_sem").eventfd.and_then(|x| x.semaphore),
            Some(true)
        );
        let ep = fx("epoll");
        assert_eq!(ep.epoll.len(), 2);
        assert_eq!(ep.epoll[0].events, 0x8000_0019);
        // Python's epoll stores the fd in the low half of epoll_data.
        for t in &ep.epoll {
            assert_eq!(t.data as u32, t.tfd as u32);
        }
        assert_eq!(ep.epoll[1].events, 0x1d);
        let ino = fx("inotify");
        assert_eq!(ino.inotify.len(), 2);
        assert_eq!(
            ino.inotify[0].dev,
            Dev {
                major: 0xfe,
                minor: 0
            }
        );
        assert_eq!(ino.inotify[1].mask, 0x300);
        assert_eq!(
            ino.inotify[1].fhandle.as_ref().map(|h| h.bytes.len()),
            Some(8)
        );
        let fan = fx("fanotify");
        assert_eq!(
            fan.fanotify,
            Some(FanotifyInfo {
                flags: 3,
                event_flags: 0x8000
            })
        );
        assert_eq!(fan.fanotify_marks.len(), 2);
        assert_eq!(
            fan.fanotify_marks[0].target,
            FanotifyMarkTarget::Mount { mnt_id: 0x1b }
        );
        let s = fx("signalfd");
        let want = (1u64 << (libc::SIGUSR1 - 1)) | (1 << (libc::SIGTERM - 1)) | (1 << 40);
        assert_eq!(s.signalfd_sigmask, Some(want));
        let t = fx("timerfd").timerfd.expect("timerfd");
        assert_eq!(t.clockid, libc::CLOCK_MONOTONIC);
        assert_eq!(t.it_interval, (2, 500));
        assert_eq!(t.it_value.0, 1000);
        assert_eq!(
            fx("timerfd_unarmed").timerfd.map(|t| t.it_value),
            Some((0, 0))
        );
        assert_eq!(
            fx("pidfd_dead").pidfd,
            Some(PidfdInfo {
                pid: -1,
                ns_pid: vec![-1]
            })
        );
        let l = &fx("reg_lock").locks[0];
        assert_eq!(
            (l.class.clone(), l.lock_type.clone(), l.start, l.end),
            (FileLockClass::Posix, FileLockType::Write, 0, Some(0))
        );
        let f = &fx("reg_flock").locks[0];
        assert_eq!((f.class.clone(), f.end), (FileLockClass::Flock, None));
        assert_eq!(fx("socket").unknown, vec!["scm_fds: 0".to_string()]);
    }

    #[test]
    fn errors() {
        assert!(parse_fdinfo("").is_err());
        assert!(parse_fdinfo("pos:\t0\n").is_err());
        assert!(parse_fdinfo("pos:\t0\nflags:\t09\n").is_err());
        assert!(parse_fdinfo("pos:\t0\nflags:\t0\nclockid: 1\n").is_err());
        assert!(parse_fdinfo("pos:\t0\nflags:\t0\ntfd: 1 events: zz\n").is_err());
        assert!(parse_fdinfo("pos:\t0\nflags:\t0\nlock:\t1: POSIX\n").is_err());
        let e = parse_fdinfo("pos:\t0\nflags:\t0\ninotify wd:x\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        let ok =
            parse_fdinfo("pos:\t0\nflags:\t0\nlock:\t2: OFDLCK ADVISORY READ -1 <none>:0 5 EOF\n")
                .expect("parse");
        assert_eq!(ok.locks[0].pid, -1);
        assert_eq!(ok.locks[0].dev_ino, None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_fdinfo(&s);
        }

        #[test]
        fn keyed_garbage(k in prop::sample::select(vec!["tfd", "inotify wd", "fanotify ino", "fanotify flags", "lock", "it_value", "eventfd-count", "NSpid", "sigmask"]), v in "[ -~]{0,60}") {
            let _ = parse_fdinfo(&format!("pos:\t0\nflags:\t02\n{k}:{v}\n"));
        }

        #[test]
        fn epoll_roundtrip(tfd in 0i32..1_000_000, events in any::<u32>(), data in any::<u64>(), pos in 0u64..i64::MAX as u64, ino in any::<u64>(), major in 0u32..4096, minor in 0u32..(1 << 20)) {
            let sdev = (major << 20) | minor;
            let text = format!("pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1\ntfd: {tfd:8} events: {events:8x} data: {data:16x}  pos:{pos} ino:{ino:x} sdev:{sdev:x}\n");
            let fi = parse_fdinfo(&text).expect("parse");
            prop_assert_eq!(fi.epoll, vec![EpollTfd { tfd, events, data, pos, ino, dev: Dev { major, minor } }]);
        }

        #[test]
        fn timerfd_roundtrip(clockid in 0i32..12, ticks in any::<u64>(), fl in 0u32..4, v in (any::<u64>(), 0u64..1_000_000_000), i in (any::<u64>(), 0u64..1_000_000_000)) {
            let text = format!("pos:\t0\nflags:\t02\nclockid: {clockid}\nticks: {ticks}\nsettime flags: 0{fl:o}\nit_value: ({}, {})\nit_interval: ({}, {})\n", v.0, v.1, i.0, i.1);
            let t = parse_fdinfo(&text).expect("parse").timerfd.expect("timerfd");
            prop_assert_eq!(t, TimerfdInfo { clockid, ticks, settime_flags: fl, it_value: v, it_interval: i });
        }
    }
}
