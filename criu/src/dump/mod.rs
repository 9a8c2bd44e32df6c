//! Layer 5: dump orchestration — find and freeze the tree, read every object
//! off every task into images, then kill the tree or let it run on.
//!
//! Order of work for each task (it matters):
//! 1. seize and stop it, block its signals (they stay queued);
//! 2. remote syscalls for what only the task can say (brk, sigactions,
//!    itimers, prctl state …) through a scratch page, removed again;
//! 3. memory (after the scratch page is gone, so it is not dumped);
//! 4. fds through pidfd_getfd, fs, creds, rlimits, registers.
//!
//! A dump that fails lets every task go exactly as it was found.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::image::{self, magic, pb};
use crate::objects::{self, files::FileTable, mm, IdGen};
use crate::proc::{self, MapName};
use crate::remote::{self, Tracee};
use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Object(#[from] objects::Error),
    #[error(transparent)]
    Remote(#[from] remote::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Proc(#[from] proc::Error),
    #[error("pid {pid}: {what}")]
    Task { pid: i32, what: String },
    #[error("images directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What `criu dump` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct DumpOpts {
    pub pid: i32,
    pub images_dir: PathBuf,
    pub leave_running: bool,
    pub shell_job: bool,
}

/// A frozen task and what is needed to let it go again.
struct Frozen {
    tracee: Tracee,
    regs: remote::Regs,
    sigmask: u64,
}

/// The processes of the tree rooted at `root`, parents before children.
fn collect_tree(root: i32) -> Result<Vec<i32>> {
    if !Path::new(&format!("/proc/{root}")).exists() {
        return Err(Error::Task {
            pid: root,
            what: "no such process".into(),
        });
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let pid = out[i];
        let dir = format!("/proc/{pid}/task");
        let tasks = std::fs::read_dir(&dir).map_err(|e| Error::Task {
            pid,
            what: format!("cannot list {dir}: {e}"),
        })?;
        for t in tasks.flatten() {
            let path = t.path().join("children");
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.extend(
                    text.split_whitespace()
                        .filter_map(|c| c.parse::<i32>().ok()),
                );
            }
        }
        i += 1;
    }
    Ok(out)
}

fn threads_of(pid: i32) -> Result<Vec<i32>> {
    let dir = format!("/proc/{pid}/task");
    let rd = std::fs::read_dir(&dir).map_err(|e| Error::Task {
        pid,
        what: format!("cannot list {dir}: {e}"),
    })?;
    let mut v: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

fn freeze(pid: i32) -> Result<Frozen> {
    let status = proc::read_status(pid).map_err(|_| Error::Task {
        pid,
        what: "no such process".into(),
    })?;
    if status.state == Some(proc::ProcState::Zombie) {
        return Err(Error::Task {
            pid,
            what: "is a zombie; dumping zombies is not supported yet".into(),
        });
    }
    let tracee = Tracee::seize(pid, false).map_err(|e| match e {
        remote::Error::Sys { errno, .. } if errno == nix::errno::Errno::EPERM => Error::Task {
            pid,
            what: "cannot be traced (EPERM): is criu root, or is the task already traced?".into(),
        },
        remote::Error::Sys { errno, .. } if errno == nix::errno::Errno::ESRCH => Error::Task {
            pid,
            what: "no such process".into(),
        },
        e => e.into(),
    })?;
    let regs = *tracee.regs();
    let sigmask = tracee.sigmask()?;
    // Signals arriving from now on wait, queued, until the task runs again.
    tracee.set_sigmask(!0)?;
    Ok(Frozen {
        tracee,
        regs,
        sigmask,
    })
}

/// Scratch layout for the dump: offsets into the page.
const SCRATCH_LEN: u64 = 4 * sys::PAGE_SIZE;

/// prctl options read from inside the task.
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_GET_SECUREBITS: u64 = 27;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_GET_THP_DISABLE: u64 = 42;

fn scratch_u64(t: &Tracee, off: u64) -> Result<u64> {
    let mut b = [0u8; 8];
    t.scratch_get(off, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// State of a task only the task itself can tell, via remote syscalls.
struct Inside {
    brk: u64,
    clear_tid_addr: u64,
    secbits: u32,
    personality: u32,
    dumpable: i32,
    thp_disabled: bool,
    pdeath_sig: u32,
    child_subreaper: bool,
    sas: pb::ThreadSasEntry,
    robust_list: (u64, u32),
    sigactions: Vec<pb::SaEntry>,
    timers: pb::TaskTimersEntry,
}

fn ask_inside(t: &mut Tracee, pid: i32) -> Result<Inside> {
    let maps = proc::read_maps(pid)?;
    let vdso = maps
        .iter()
        .find(|m| m.name == MapName::Vdso)
        .ok_or_else(|| Error::Task {
            pid,
            what: "has no vDSO to run remote syscalls through".into(),
        })?;
    t.find_syscall_ip(vdso.start, vdso.end)?;
    let base = t.map_scratch(None, SCRATCH_LEN)?;
    let res = (|| -> Result<Inside> {
        let prctl =
            |t: &mut Tracee, op: u64, arg: u64| t.syscall(libc::SYS_prctl, &[op, arg, 0, 0, 0]);
        let brk = t.syscall(libc::SYS_brk, &[0])?;
        prctl(t, PR_GET_TID_ADDRESS, base)?;
        let clear_tid_addr = scratch_u64(t, 0)?;
        let secbits = prctl(t, PR_GET_SECUREBITS, 0)? as u32;
        let dumpable = prctl(t, PR_GET_DUMPABLE, 0)? as i32;
        let thp_disabled = prctl(t, PR_GET_THP_DISABLE, 0)? != 0;
        t.scratch_put(0, &[0u8; 8])?;
        prctl(t, PR_GET_PDEATHSIG, base)?;
        let pdeath_sig = scratch_u64(t, 0)? as u32;
        t.scratch_put(0, &[0u8; 8])?;
        prctl(t, PR_GET_CHILD_SUBREAPER, base)?;
        let child_subreaper = scratch_u64(t, 0)? as u32 != 0;
        let personality = t.syscall(libc::SYS_personality, &[0xffff_ffff])? as u32;
        t.syscall(libc::SYS_sigaltstack, &[0, base])?;
        let mut ss = [0u8; 24];
        t.scratch_get(0, &mut ss)?;
        let w = |i: usize| u64::from_le_bytes(ss[i..i + 8].try_into().unwrap_or_default());
        let sas = pb::ThreadSasEntry {
            ss_sp: w(0),
            ss_flags: w(8) as u32,
            ss_size: w(16),
        };
        t.syscall(libc::SYS_get_robust_list, &[0, base, base + 8])?;
        let robust_list = (scratch_u64(t, 0)?, scratch_u64(t, 8)? as u32);
        let sigactions = objects::signal::dump(t, 0)?;
        let timers = objects::timer::dump(t, 0)?;
        Ok(Inside {
            brk,
            clear_tid_addr,
            secbits,
            personality,
            dumpable,
            thp_disabled,
            pdeath_sig,
            child_subreaper,
            sas,
            robust_list,
            sigactions,
            timers,
        })
    })();
    t.unmap_scratch()?;
    res
}

fn read_num<T: std::str::FromStr>(pid: i32, name: &str) -> Result<Option<T>> {
    Ok(objects::read_proc(pid, name)?.trim().parse().ok())
}

/// Everything of one process, written to its images.
fn dump_process(
    f: &mut Frozen,
    dir: &Path,
    files: &mut FileTable,
    ids: &mut IdGen,
    pages_id: u32,
) -> Result<(pb::PstreeEntry, pb::TaskKobjIdsEntry)> {
    let pid = f.tracee.pid();
    let threads = threads_of(pid)?;
    if threads.len() > 1 {
        return Err(Error::Task {
            pid,
            what: format!(
                "has {} threads; multi-threaded tasks are not supported yet",
                threads.len()
            ),
        });
    }
    let inside = ask_inside(&mut f.tracee, pid)?;
    let stat = proc::read_stat(pid)?;
    let mm_entry = mm::dump(
        pid,
        dir,
        files,
        pages_id,
        &mm::MmExtra {
            brk: inside.brk,
            dumpable: inside.dumpable,
            thp_disabled: inside.thp_disabled,
        },
    )?;
    mm::write(dir, pid, &mm_entry)?;

    let pidfd: OwnedFd = sys::pidfd::pidfd_open(pid).map_err(|e| Error::Task {
        pid,
        what: format!("pidfd_open: {e}"),
    })?;
    let fdinfo = files.dump_fds(pid, &pidfd)?;
    let fs = objects::fs::dump(pid, files)?;
    let creds = objects::creds::dump(pid, inside.secbits)?;
    let rlimits = objects::rlimit::dump(pid)?;
    let rseq = objects::rseq::dump(&f.tracee)?;
    let thread_info = objects::thread::dump(&f.tracee, inside.clear_tid_addr)?;
    let comm = objects::read_proc(pid, "comm")?
        .trim_end_matches('\n')
        .to_string();

    let kobj = pb::TaskKobjIdsEntry {
        vm_id: ids.next_id(),
        files_id: ids.next_id(),
        fs_id: ids.next_id(),
        sighand_id: ids.next_id(),
        ..Default::default()
    };
    image::write_image(
        dir,
        &format!("fdinfo-{}.img", kobj.files_id),
        magic::FDINFO,
        &fdinfo,
    )?;
    image::write_image(dir, &format!("fs-{pid}.img"), magic::FS, [&fs])?;
    image::write_image(dir, &format!("ids-{pid}.img"), magic::IDS, [&kobj])?;

    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        thread_info: Some(thread_info),
        tc: Some(pb::TaskCoreEntry {
            task_state: 1, // alive
            exit_code: 0,
            personality: inside.personality,
            flags: stat.flags,
            blk_sigset: f.sigmask,
            comm: comm.clone(),
            timers: Some(inside.timers),
            rlimits: Some(rlimits),
            signals_s: Some(pb::SignalQueueEntry::default()),
            loginuid: read_num(pid, "loginuid")?,
            oom_score_adj: read_num(pid, "oom_score_adj")?,
            sigactions: inside.sigactions,
            child_subreaper: Some(inside.child_subreaper),
            ..Default::default()
        }),
        ids: None,
        thread_core: Some(pb::ThreadCoreEntry {
            futex_rla: inside.robust_list.0,
            futex_rla_len: inside.robust_list.1,
            sched_nice: Some(stat.nice as i32),
            sched_policy: Some(stat.policy),
            sched_prio: Some(stat.rt_priority),
            sas: Some(inside.sas),
            pdeath_sig: Some(inside.pdeath_sig),
            signals_p: Some(pb::SignalQueueEntry::default()),
            creds: Some(creds),
            comm: Some(comm),
            rseq_entry: rseq,
            ..Default::default()
        }),
        ..Default::default()
    };
    image::write_image(dir, &format!("core-{pid}.img"), magic::CORE, [&core])?;

    let pstree = pb::PstreeEntry {
        pid: pid as u32,
        ppid: 0,
        pgid: stat.pgrp as u32,
        sid: stat.session as u32,
        threads: threads.iter().map(|&t| t as u32).collect(),
    };
    Ok((pstree, kobj))
}

/// Dumps the tree of `opts.pid` into `opts.images_dir`.
pub fn dump(opts: &DumpOpts) -> Result<()> {
    let dir = &opts.images_dir;
    std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
        dir: dir.clone(),
        source,
    })?;
    let pids = collect_tree(opts.pid)?;
    info!(root = opts.pid, tasks = pids.len(), "dumping");
    let mut frozen: Vec<Frozen> = Vec::with_capacity(pids.len());
    let result = (|| -> Result<()> {
        for &pid in &pids {
            frozen.push(freeze(pid)?);
        }
        if pids.len() > 1 {
            return Err(Error::Task {
                pid: opts.pid,
                what: format!(
                    "has {} processes in its tree; trees are not supported yet",
                    pids.len()
                ),
            });
        }
        let mut files = FileTable::default();
        let mut ids = IdGen::default();
        let mut pstree = Vec::new();
        let mut root_ids = None;
        for (n, f) in frozen.iter_mut().enumerate() {
            let (entry, kobj) = dump_process(f, dir, &mut files, &mut ids, n as u32 + 1)?;
            root_ids.get_or_insert(kobj);
            pstree.push(entry);
        }
        files.write(dir)?;
        image::write_image(dir, "pstree.img", magic::PSTREE, &pstree)?;
        let inventory = pb::InventoryEntry {
            img_version: 2,
            fdinfo_per_id: Some(true),
            root_ids,
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            ..Default::default()
        };
        image::write_image(dir, "inventory.img", magic::INVENTORY, [&inventory])?;
        Ok(())
    })();

    match (&result, opts.leave_running) {
        (Ok(()), false) => {
            for f in frozen {
                debug!(pid = f.tracee.pid(), "killing dumped task");
                f.tracee.kill();
            }
        }
        _ => {
            for f in frozen {
                let pid = f.tracee.pid();
                if let Err(e) = f.tracee.release(&f.regs, f.sigmask) {
                    warn!(pid, "could not let the task go: {e}");
                }
            }
        }
    }
    result
}
