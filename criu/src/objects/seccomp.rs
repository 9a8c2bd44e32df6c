//! Seccomp: a thread's mode (strict or filter) and its stack of BPF
//! filters — `seccomp.img` (one `seccomp_entry` for the whole dump) and
//! `thread_core.seccomp_mode` / `seccomp_filter` in each core image.
//!
//! Image layout (CRIU's): a thread's filters are stored newest first; the
//! thread's core names its oldest, and each filter's `prev` names the one
//! installed right after it (despite the name), so following `prev` from
//! the core's index gives the order to install them in. Where every thread of a process has the
//! same chain, only the leader keeps it, flagged with TSYNC, and restoring
//! it with that flag gives all threads the very same filters again.
//!
//! Restore installs the filters last of all in each thread, after
//! credentials, right before registers: a filter may forbid the syscalls
//! criu still needs. The programs are put below the thread's stack pointer
//! (memory the task does not use), so no scratch area has to be removed
//! after the filter is in force.

use std::path::Path;

use crate::image::{self, magic, pb};
use crate::remote::{mem, Tracee};
use crate::sys;

use super::{Error, Result};

pub const MODE_DISABLED: u32 = 0;
pub const MODE_STRICT: u32 = 1;
pub const MODE_FILTER: u32 = 2;
/// `SECCOMP_FILTER_FLAG_TSYNC`.
pub const FLAG_TSYNC: u32 = 1;
const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const IMG: &str = "seccomp.img";

/// One thread's seccomp state as found at dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadSeccomp {
    pub mode: u32,
    /// (BPF program, install flags), oldest first.
    pub filters: Vec<(Vec<u8>, u32)>,
}

/// `Seccomp:` of the thread's status.
fn mode_of(pid: i32, tid: i32) -> Result<u32> {
    let status = super::read_proc(pid, &format!("task/{tid}/status"))?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(MODE_DISABLED))
}

/// Dump half for one stopped thread: its mode and filters. A thread under
/// seccomp gets its filters suspended while criu holds it, so the remote
/// syscalls of the dump are not judged by them.
pub fn dump_thread(pid: i32, tid: i32) -> Result<ThreadSeccomp> {
    let mode = mode_of(pid, tid)?;
    if mode == MODE_DISABLED {
        return Ok(ThreadSeccomp::default());
    }
    let sys_err = |what: String| {
        move |errno| Error::Sys {
            pid,
            what: format!("thread {tid}: {what}"),
            errno,
        }
    };
    sys::seccomp::suspend(tid).map_err(sys_err("PTRACE_O_SUSPEND_SECCOMP".into()))?;
    let mut filters = Vec::new();
    if mode == MODE_FILTER {
        for i in 0.. {
            let Some(prog) = sys::seccomp::get_filter(tid, i)
                .map_err(sys_err(format!("PTRACE_SECCOMP_GET_FILTER {i}")))?
            else {
                break;
            };
            let flags = sys::seccomp::get_flags(tid, i)
                .map_err(sys_err(format!("PTRACE_SECCOMP_GET_METADATA {i}")))?
                .unwrap_or(0) as u32;
            filters.push((prog, flags));
        }
    }
    Ok(ThreadSeccomp { mode, filters })
}

/// What goes into a thread's core: `(seccomp_mode, seccomp_filter)`.
pub type CoreFields = (Option<i32>, Option<u32>);

/// Adds a process's filters to the dump's entry; returns each thread's
/// core fields (leader first, as `threads`).
pub fn add_process(entry: &mut pb::SeccompEntry, threads: &[ThreadSeccomp]) -> Vec<CoreFields> {
    let tsync = threads.first().is_some_and(|l| {
        l.mode == MODE_FILTER
            && threads.iter().all(|t| {
                t.mode == l.mode
                    && t.filters.len() == l.filters.len()
                    && t.filters.iter().zip(&l.filters).all(|(a, b)| a.0 == b.0)
            })
    });
    let mut out = Vec::with_capacity(threads.len());
    for (i, t) in threads.iter().enumerate() {
        if t.mode == MODE_DISABLED || (tsync && i > 0) {
            out.push((None, None));
            continue;
        }
        if t.mode != MODE_FILTER {
            out.push((Some(t.mode as i32), None));
            continue;
        }
        let first = entry.seccomp_filters.len();
        for (k, (prog, flags)) in t.filters.iter().rev().enumerate() {
            entry.seccomp_filters.push(pb::SeccompFilter {
                filter: prog.clone(),
                prev: (k > 0).then(|| (first + k - 1) as u32),
                flags: Some(flags | if tsync { FLAG_TSYNC } else { 0 }),
            });
        }
        let oldest = entry.seccomp_filters.len().checked_sub(1).map(|n| n as u32);
        out.push((Some(MODE_FILTER as i32), oldest));
    }
    out
}

/// Writes `seccomp.img`. The dump of the first process starts it afresh;
/// later processes add to what is there.
pub fn write<T>(
    dir: &Path,
    add: impl FnOnce(&mut pb::SeccompEntry) -> T,
    first: bool,
) -> Result<T> {
    let mut entry = if first {
        pb::SeccompEntry::default()
    } else {
        read(dir)?
    };
    let fields = add(&mut entry);
    image::write_image(dir, IMG, magic::SECCOMP, [&entry])?;
    Ok(fields)
}

/// Reads `seccomp.img` (absent or empty: no filters).
pub fn read(dir: &Path) -> Result<pb::SeccompEntry> {
    if !dir.join(IMG).exists() {
        return Ok(pb::SeccompEntry::default());
    }
    Ok(
        image::read_image::<pb::SeccompEntry>(dir, IMG, magic::SECCOMP)?
            .into_iter()
            .next()
            .unwrap_or_default(),
    )
}

/// The filters of a thread whose core names `oldest`, in the order to
/// install them (oldest first).
pub fn chain(entry: &pb::SeccompEntry, oldest: u32) -> Result<Vec<&pb::SeccompFilter>> {
    let n = entry.seccomp_filters.len();
    let bad = |what: String| Error::Mismatch {
        what: format!("seccomp.img: {what}"),
    };
    let mut out = Vec::new();
    let mut at = Some(oldest);
    while let Some(i) = at {
        let f = entry
            .seccomp_filters
            .get(i as usize)
            .ok_or_else(|| bad(format!("filter {i} of {n} does not exist")))?;
        if f.filter.is_empty() || f.filter.len() % sys::seccomp::SOCK_FILTER_SIZE != 0 {
            return Err(bad(format!("filter {i} is {} bytes long", f.filter.len())));
        }
        if out.len() >= n {
            return Err(bad(format!("filters chained in a loop through {i}")));
        }
        out.push(f);
        at = f.prev;
    }
    Ok(out)
}

/// Restore half: installs `filters` (oldest first) in the thread, whose
/// stack pointer will be `sp`. This must be the thread's last syscall.
pub fn install(t: &mut Tracee, sp: u64, filters: &[&pb::SeccompFilter]) -> Result<()> {
    let tid = t.pid();
    for (i, f) in filters.iter().enumerate() {
        let insns = f.filter.len() / sys::seccomp::SOCK_FILTER_SIZE;
        // struct sock_fprog { u16 len; u64 filter; } then the program,
        // below the red zone of the thread's stack.
        let total = 16 + f.filter.len() as u64;
        let at = (sp.wrapping_sub(512 + total)) & !15;
        let mut b = Vec::with_capacity(total as usize);
        b.extend_from_slice(&(insns as u64).to_le_bytes());
        b.extend_from_slice(&(at + 16).to_le_bytes());
        b.extend_from_slice(&f.filter);
        mem::write(tid, at, &b).map_err(|source| Error::Io {
            pid: tid,
            what: format!("writing seccomp filter {i} below the stack at {at:#x}"),
            source,
        })?;
        let flags = u64::from(f.flags.unwrap_or(0));
        let r = t.syscall(libc::SYS_seccomp, &[SECCOMP_SET_MODE_FILTER, flags, at])?;
        if r != 0 {
            return Err(Error::Mismatch {
                what: format!(
                    "thread {tid}: seccomp filter {i} with TSYNC: thread {r} cannot take it"
                ),
            });
        }
    }
    Ok(())
}

/// Restore half of strict mode: the thread's last syscall.
pub fn set_strict(t: &mut Tracee) -> Result<()> {
    t.syscall(libc::SYS_seccomp, &[SECCOMP_SET_MODE_STRICT, 0, 0])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(mode: u32, progs: &[&[u8]]) -> ThreadSeccomp {
        ThreadSeccomp {
            mode,
            filters: progs.iter().map(|p| (p.to_vec(), 0)).collect(),
        }
    }

    #[test]
    fn shared_chain_goes_to_the_leader_with_tsync() {
        let a: &[u8] = &[1; 8];
        let b: &[u8] = &[2; 16];
        let mut e = pb::SeccompEntry::default();
        let f = add_process(&mut e, &[th(2, &[a, b]), th(2, &[a, b])]);
        assert_eq!(f, vec![(Some(2), Some(1)), (None, None)]);
        assert_eq!(e.seccomp_filters.len(), 2);
        // newest first, the oldest named by the core and pointing onwards
        assert_eq!(e.seccomp_filters[0].filter, b);
        assert_eq!(e.seccomp_filters[1].prev, Some(0));
        assert_eq!(e.seccomp_filters[0].prev, None);
        assert!(e
            .seccomp_filters
            .iter()
            .all(|f| f.flags == Some(FLAG_TSYNC)));
        let c = chain(&e, 1).unwrap();
        assert_eq!(c[0].filter, a);
        assert_eq!(c[1].filter, b);
    }

    #[test]
    fn different_chains_stay_per_thread() {
        let a: &[u8] = &[1; 8];
        let b: &[u8] = &[2; 8];
        let mut e = pb::SeccompEntry {
            seccomp_filters: vec![pb::SeccompFilter {
                filter: vec![9; 8],
                prev: None,
                flags: Some(0),
            }],
        };
        let f = add_process(
            &mut e,
            &[th(2, &[a]), th(2, &[a, b]), th(1, &[]), th(0, &[])],
        );
        assert_eq!(
            f,
            vec![
                (Some(2), Some(1)),
                (Some(2), Some(3)),
                (Some(1), None),
                (None, None)
            ]
        );
        let c = chain(&e, 3).unwrap();
        assert_eq!((c[0].filter.as_slice(), c[1].filter.as_slice()), (a, b));
        assert_eq!(e.seccomp_filters[2].prev, None);
        assert!(e
            .seccomp_filters
            .iter()
            .all(|f| f.flags != Some(FLAG_TSYNC)));
    }

    #[test]
    fn bad_chains_are_refused() {
        let mut e = pb::SeccompEntry {
            seccomp_filters: vec![pb::SeccompFilter {
                filter: vec![1; 8],
                prev: Some(0),
                flags: None,
            }],
        };
        assert!(chain(&e, 0).is_err());
        assert!(chain(&e, 5).is_err());
        e.seccomp_filters[0].prev = None;
        e.seccomp_filters[0].filter = vec![1; 7];
        assert!(chain(&e, 0).is_err());
    }
}
