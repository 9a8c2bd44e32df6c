//! Time namespaces, in `timens-ID.img`: as upstream, the image holds the
//! values CLOCK_MONOTONIC and CLOCK_BOOTTIME had inside the namespace at
//! dump time (not its offsets).
//!
//! Dump: a namespace's clock is the host's raw clock plus the namespace's
//! offset (`/proc/PID/timens_offsets`, relative to the host's initial
//! time namespace); criu reads its own clock and removes its own offset.
//!
//! Restore: the root puppet is born in criu's time namespace; inside it
//! (remote syscalls) it unshares a new one, criu writes the offsets that
//! make the clocks go on from the dumped values, and the puppet joins it
//! (setns on `/proc/self/ns/time_for_children`) before it or any other
//! task runs in it — offsets can only be written while nobody is inside.

use std::path::Path;

use super::Result;
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::remote::Tracee;

fn file(id: u32) -> String {
    format!("timens-{id}.img")
}

const NSEC: i128 = 1_000_000_000;

/// A clock reading or offset in nanoseconds.
type Nanos = i128;

/// The offsets of a time namespace (monotonic, boottime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offsets {
    pub monotonic: Nanos,
    pub boottime: Nanos,
}

/// Parses a timens_offsets text (`monotonic SECS NSECS` lines; the kernel
/// also accepts clock numbers, 1 and 7).
pub fn parse_offsets(text: &str) -> Option<Offsets> {
    let mut mono = None;
    let mut boot = None;
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let (Some(name), Some(s), Some(ns)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let v = s.parse::<i64>().ok()? as i128 * NSEC + ns.parse::<u32>().ok()? as i128;
        match name {
            "monotonic" | "1" => mono = Some(v),
            "boottime" | "7" => boot = Some(v),
            _ => {}
        }
    }
    Some(Offsets {
        monotonic: mono?,
        boottime: boot?,
    })
}

/// The text that sets `o` through timens_offsets (clock numbers, which
/// every kernel with time namespaces accepts).
pub fn offsets_text(o: &Offsets) -> String {
    let line = |clock: i32, v: Nanos| {
        format!(
            "{clock} {} {}\n",
            v.div_euclid(NSEC) as i64,
            v.rem_euclid(NSEC) as u32
        )
    };
    line(libc::CLOCK_MONOTONIC, o.monotonic) + &line(libc::CLOCK_BOOTTIME, o.boottime)
}

fn to_nanos(t: &pb::Timespec) -> Nanos {
    t.tv_sec as i64 as i128 * NSEC + t.tv_nsec as i128
}

fn to_timespec(v: Nanos) -> pb::Timespec {
    pb::Timespec {
        tv_sec: v.div_euclid(NSEC) as i64 as u64,
        tv_nsec: v.rem_euclid(NSEC) as u64,
    }
}

/// The host's raw clocks now (criu's clocks without criu's own offsets).
fn host_now() -> Result<(Nanos, Nanos)> {
    let own = offsets_of("self")?;
    let read = |c: nix::time::ClockId| {
        nix::time::clock_gettime(c)
            .map(|t| t.tv_sec() as i128 * NSEC + t.tv_nsec() as i128)
            .map_err(|errno| Error::Sys {
                pid: 0,
                what: format!("clock_gettime({c})"),
                errno,
            })
    };
    Ok((
        read(nix::time::ClockId::CLOCK_MONOTONIC)? - own.monotonic,
        read(nix::time::ClockId::CLOCK_BOOTTIME)? - own.boottime,
    ))
}

fn offsets_of(who: &str) -> Result<Offsets> {
    let path = format!("/proc/{who}/timens_offsets");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        pid: who.parse().unwrap_or(0),
        what: format!("reading {path}"),
        source,
    })?;
    parse_offsets(&text).ok_or_else(|| Error::Mismatch {
        what: format!("{path}: cannot parse {text:?}"),
    })
}

/// The clocks of the time namespace of `pid` now.
fn clocks_of(pid: i32) -> Result<pb::TimensEntry> {
    // timens_offsets shows the namespace of the task's future children:
    // it must be the one the task is in.
    let ns = super::inode(pid, super::Kind::Time)?;
    let kids = std::fs::read_link(format!("/proc/{pid}/ns/time_for_children"))
        .ok()
        .and_then(|t| super::parse_ns_link(super::Kind::Time, &t.to_string_lossy()));
    if kids.is_some() && kids != ns {
        return Err(Error::Unsupported {
            pid,
            what: "has unshared a time namespace it has not entered (time_for_children differs from time)".into(),
        });
    }
    let off = offsets_of(&pid.to_string())?;
    let (mono, boot) = host_now()?;
    Ok(pb::TimensEntry {
        monotonic: to_timespec(mono + off.monotonic),
        boottime: to_timespec(boot + off.boottime),
    })
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let e = clocks_of(pid)?;
    image::write_image(dir, &file(id), magic::TIMENS, [&e])?;
    Ok(())
}

pub fn read(dir: &Path, id: u32) -> Result<Option<pb::TimensEntry>> {
    if id == 0 || !dir.join(file(id)).exists() {
        return Ok(None);
    }
    Ok(Some(image::read_one(dir, &file(id), magic::TIMENS)?))
}

/// The offsets that make a new namespace's clocks read `e` when the host's
/// raw clocks read `host`.
pub fn offsets_for(e: &pb::TimensEntry, host: (Nanos, Nanos)) -> Offsets {
    Offsets {
        monotonic: to_nanos(&e.monotonic) - host.0,
        boottime: to_nanos(&e.boottime) - host.1,
    }
}

/// Where the path of time_for_children goes in the scratch area.
const PATH_OFF: u64 = 512;

/// Inside the root puppet `t` (host PID `host`), not yet in any new time
/// namespace: makes one whose clocks go on from `e` and joins it.
pub fn restore(t: &mut Tracee, host: i32, e: &pb::TimensEntry) -> Result<()> {
    t.syscall(libc::SYS_unshare, &[libc::CLONE_NEWTIME as u64])?;
    let o = offsets_for(e, host_now()?);
    let path = format!("/proc/{host}/timens_offsets");
    std::fs::write(&path, offsets_text(&o)).map_err(|source| Error::Io {
        pid: host,
        what: format!(
            "writing {path} (monotonic offset {}ns, boottime offset {}ns)",
            o.monotonic, o.boottime
        ),
        source,
    })?;
    let p = t.scratch_put(PATH_OFF, b"/proc/self/ns/time_for_children\0")?;
    let fd = t.syscall(
        libc::SYS_openat,
        &[
            libc::AT_FDCWD as u64,
            p,
            (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
        ],
    )?;
    let joined = t.syscall(libc::SYS_setns, &[fd, libc::CLONE_NEWTIME as u64]);
    t.syscall(libc::SYS_close, &[fd])?;
    joined?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let o = parse_offsets("monotonic           0         0\nboottime         -5       12\n")
            .unwrap();
        assert_eq!(o.monotonic, 0);
        assert_eq!(o.boottime, -5 * NSEC + 12);
        assert_eq!(
            parse_offsets("1 3 4\n7 0 0\n").unwrap().monotonic,
            3 * NSEC + 4
        );
        assert!(parse_offsets("monotonic 0 0\n").is_none());
        assert!(parse_offsets("monotonic x 0\nboottime 0 0\n").is_none());
    }

    #[test]
    fn offsets_text_round_trips() {
        let o = Offsets {
            monotonic: -5 * NSEC + 12,
            boottime: 86_400_000 * NSEC + 999_999_999,
        };
        assert_eq!(offsets_text(&o), "1 -5 12\n7 86400000 999999999\n");
        assert_eq!(parse_offsets(&offsets_text(&o)), Some(o));
    }

    #[test]
    fn offsets_make_the_clocks_go_on() {
        let e = pb::TimensEntry {
            monotonic: to_timespec(100 * NSEC + 5),
            boottime: to_timespec(200 * NSEC),
        };
        let o = offsets_for(&e, (1_000 * NSEC, 1_500 * NSEC + 7));
        assert_eq!(o.monotonic, -900 * NSEC + 5);
        assert_eq!(o.boottime, -1_300 * NSEC - 7);
        assert_eq!(to_nanos(&to_timespec(-3)), -3);
    }

    #[test]
    fn own_clocks_are_read() {
        let e = clocks_of(std::process::id() as i32).unwrap();
        let m = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        let got = to_nanos(&e.monotonic);
        let now = m.tv_sec() as i128 * NSEC + m.tv_nsec() as i128;
        assert!(got <= now && now - got < 5 * NSEC, "{got} vs {now}");
    }
}
