//! Everything of one process: what only it can tell (remote syscalls),
//! its memory, files, and each thread's state, into its images.

use std::os::fd::OwnedFd;
use std::path::Path;

use super::freeze::{Proc, Thread};
use super::{Error, Result};
use crate::image::{self, magic, pb};
use crate::objects::{self, files::FileTable, mm, ns, shmem, IdGen};
use crate::proc::{self, MapName};
use crate::remote::Tracee;
use crate::sys;

const SCRATCH_LEN: u64 = 4 * sys::PAGE_SIZE;

// prctl options read from inside the task.
const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_GET_SECUREBITS: u64 = 27;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_GET_THP_DISABLE: u64 = 42;

/// `task_state` values of the image format.
const TASK_ALIVE: u32 = 1;
const TASK_DEAD: u32 = 2;
const TASK_STOPPED: u32 = 3;

fn scratch_u64(t: &Tracee, off: u64) -> Result<u64> {
    let mut b = [0u8; 8];
    t.scratch_get(off, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn prctl(t: &mut Tracee, op: u64, arg: u64) -> Result<u64> {
    Ok(t.syscall(libc::SYS_prctl, &[op, arg, 0, 0, 0])?)
}

/// State of the process that only it can tell.
struct ProcInside {
    brk: u64,
    personality: u32,
    dumpable: i32,
    thp_disabled: bool,
    child_subreaper: bool,
    sigactions: Vec<pb::SaEntry>,
    timers: pb::TaskTimersEntry,
    /// membarrier registrations (`MEMBARRIER_CMD_REGISTER_*` bits).
    membarrier: Option<u32>,
    /// mlockall(MCL_FUTURE…) flags, seen on the scratch area.
    mlockall: u32,
    /// The init of a pid namespace of the tree: that namespace's
    /// ns_last_pid (see [`ns::pid::last_pid`]).
    last_pid: Option<u32>,
}

/// State of one thread that only it can tell.
struct ThreadInside {
    clear_tid_addr: u64,
    secbits: u32,
    pdeath_sig: u32,
    sas: pb::ThreadSasEntry,
    robust_list: (u64, u32),
    timer_slack: u64,
    /// CPU affinity mask, 64 CPUs a word.
    cpu_affinity: Vec<u64>,
    io_prio: u32,
}

/// `membarrier` command that returns the process's registrations.
const MEMBARRIER_CMD_GET_REGISTRATIONS: u64 = 1 << 9;

/// `ns_init`: the process is the init of a pid namespace of the tree.
fn ask_process(t: &mut Tracee, pid: i32, ns_init: bool) -> Result<ProcInside> {
    let base = t.scratch().map_or(0, |s| s.0);
    let brk = t.syscall(libc::SYS_brk, &[0])?;
    let dumpable = prctl(t, PR_GET_DUMPABLE, 0)? as i32;
    let thp_disabled = prctl(t, PR_GET_THP_DISABLE, 0)? != 0;
    t.scratch_put(0, &[0u8; 8])?;
    prctl(t, PR_GET_CHILD_SUBREAPER, base)?;
    let child_subreaper = scratch_u64(t, 0)? as u32 != 0;
    let personality = t.syscall(libc::SYS_personality, &[0xffff_ffff])? as u32;
    let sigactions = objects::signal::dump(t, 0)?;
    let mut timers = objects::timer::dump(t, 0)?;
    timers.posix = objects::timer::dump_posix(t, pid, 0)?;
    // Older kernels cannot tell (EINVAL): nothing to restore then.
    let membarrier = t.syscall_raw(
        libc::SYS_membarrier,
        &[MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0],
    )?;
    let mlockall = mm::dump_mlockall(t)?;
    let last_pid = if ns_init { ns::pid::last_pid(t)? } else { None };
    Ok(ProcInside {
        last_pid,
        mlockall,
        membarrier: (membarrier > 0).then_some(membarrier as u32),
        brk,
        personality,
        dumpable,
        thp_disabled,
        child_subreaper,
        sigactions,
        timers,
    })
}

fn ask_thread(t: &mut Tracee) -> Result<ThreadInside> {
    let base = t.scratch().map_or(0, |s| s.0);
    prctl(t, PR_GET_TID_ADDRESS, base)?;
    let clear_tid_addr = scratch_u64(t, 0)?;
    let secbits = prctl(t, PR_GET_SECUREBITS, 0)? as u32;
    t.scratch_put(0, &[0u8; 8])?;
    prctl(t, PR_GET_PDEATHSIG, base)?;
    let pdeath_sig = scratch_u64(t, 0)? as u32;
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
    let timer_slack = objects::sched::dump_slack(t)?;
    let cpu_affinity = objects::sched::dump_affinity(t, 0)?;
    let io_prio = objects::sched::dump_ioprio(t)?;
    Ok(ThreadInside {
        timer_slack,
        cpu_affinity,
        io_prio,
        clear_tid_addr,
        secbits,
        pdeath_sig,
        sas,
        robust_list,
    })
}

/// Runs the remote questions with a scratch page shared by all threads,
/// removed again whatever happens.
fn ask_inside(p: &mut Proc) -> Result<(ProcInside, Vec<ThreadInside>)> {
    let pid = p.pid;
    let maps = proc::read_maps(pid)?;
    let vdso = maps
        .iter()
        .find(|m| m.name == MapName::Vdso)
        .ok_or_else(|| Error::Task {
            pid,
            what: "has no vDSO to run remote syscalls through".into(),
        })?;
    let leader = &mut p.threads[0].tracee;
    let ip = leader.find_syscall_ip(vdso.start, vdso.end)?;
    let scratch = leader.map_scratch(None, SCRATCH_LEN)?;
    let res = (|| -> Result<(ProcInside, Vec<ThreadInside>)> {
        let ns_init = p.inner.is_ns_init();
        let process = ask_process(&mut p.threads[0].tracee, pid, ns_init)?;
        let mut threads = Vec::with_capacity(p.threads.len());
        for th in p.threads.iter_mut() {
            th.tracee.set_syscall_ip(ip);
            th.tracee.set_scratch(Some((scratch, SCRATCH_LEN)));
            threads.push(ask_thread(&mut th.tracee)?);
        }
        Ok((process, threads))
    })();
    for th in p.threads.iter_mut().skip(1) {
        th.tracee.set_scratch(None);
    }
    p.threads[0].tracee.unmap_scratch()?;
    res
}

fn read_num<T: std::str::FromStr>(pid: i32, name: &str) -> Result<Option<T>> {
    Ok(objects::read_proc(pid, name)?.trim().parse().ok())
}

/// Credentials as seen inside the tree's user namespace.
fn inner_creds(c: &mut pb::CredsEntry, u: &pb::UsernsEntry) {
    let uid = |x: &mut u32| *x = ns::user::to_inner(&u.uid_map, *x);
    let gid = |x: &mut u32| *x = ns::user::to_inner(&u.gid_map, *x);
    for x in [&mut c.uid, &mut c.euid, &mut c.suid, &mut c.fsuid] {
        uid(x);
    }
    for x in [&mut c.gid, &mut c.egid, &mut c.sgid, &mut c.fsgid] {
        gid(x);
    }
    for x in c.groups.iter_mut() {
        gid(x);
    }
}

fn thread_core(
    pid: i32,
    th: &Thread,
    inside: &ThreadInside,
    seccomp: objects::seccomp::CoreFields,
    userns: Option<&pb::UsernsEntry>,
    restarts: &[pb::MmTrackRestart],
) -> Result<(pb::ThreadInfoX86, pb::ThreadCoreEntry)> {
    let tid = th.tracee.pid();
    let stat = proc::read_task_stat(pid, tid)?;
    let mut creds = objects::creds::dump_task(pid, tid, inside.secbits)?;
    if let Some(u) = userns {
        inner_creds(&mut creds, u);
    }
    let comm = objects::read_proc(pid, &format!("task/{tid}/comm"))?
        .trim_end_matches('\n')
        .to_string();
    let info = objects::thread::dump(&th.tracee, inside.clear_tid_addr, restarts)?;
    let core = pb::ThreadCoreEntry {
        futex_rla: inside.robust_list.0,
        futex_rla_len: inside.robust_list.1,
        sched_nice: Some(stat.nice as i32),
        sched_policy: Some(stat.policy),
        // upstream sets these two only when they are not 0
        sched_prio: (stat.rt_priority != 0).then_some(stat.rt_priority),
        blk_sigset: Some(th.sigmask),
        sas: Some(inside.sas),
        pdeath_sig: (inside.pdeath_sig != 0).then_some(inside.pdeath_sig),
        signals_p: Some(objects::sigqueue::dump(&th.tracee, false)?),
        creds: Some(creds),
        comm: Some(comm),
        rseq_entry: objects::rseq::dump(&th.tracee)?,
        // filled below from the tree's cgroup sets
        cg_set: None,
        seccomp_mode: seccomp.0,
        seccomp_filter: seccomp.1,
        timer_slack_ns: Some(inside.timer_slack),
        cpu_affinity: inside.cpu_affinity.clone(),
        io_prio: Some(inside.io_prio),
        ..Default::default()
    };
    Ok((info, core))
}

/// Dumps a live process: memory, files, fs, and a core image per thread.
#[allow(clippy::too_many_arguments)]
pub(super) fn dump_process(
    p: &mut Proc,
    dir: &Path,
    files: &mut FileTable,
    ids: &mut IdGen,
    shared: &mut shmem::Dumped,
    pages_ids: &mut IdGen,
    ns_ids: &mut ns::NsIds,
    userns: Option<&pb::UsernsEntry>,
    parent: Option<&super::Parent>,
) -> Result<(pb::PstreeEntry, Option<pb::TaskKobjIdsEntry>)> {
    let pid = p.pid;
    // Seccomp first: it also keeps the filters from judging the remote
    // syscalls below.
    let seccomp = p
        .threads
        .iter()
        .map(|th| objects::seccomp::dump_thread(pid, th.tracee.pid()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let vpid = p.inner.pid;
    let (process, threads_inside) = ask_inside(p)?;
    let stat = proc::read_stat(pid)?;
    let (mut incr, mut uffd) = match parent {
        Some(pa) => pa.for_process(pid, vpid)?,
        None => (None, Vec::new()),
    };
    // Without the pre-dump's record (no parent images given, or a task it
    // did not arm) criu's tracking fds are known by what they are.
    for fd in objects::mm_track::leftover(pid)? {
        if !uffd.contains(&fd) {
            uffd.push(fd);
        }
    }
    let restarts = match parent {
        Some(pa) => objects::mm_track::restarts(pid, vpid, &pa.dir)?,
        None => Vec::new(),
    };
    let mm_entry = mm::dump(
        pid,
        dir,
        files,
        shared,
        pages_ids,
        &mm::MmExtra {
            brk: process.brk,
            dumpable: process.dumpable,
            thp_disabled: process.thp_disabled,
            img_pid: vpid,
            mlockall: process.mlockall,
        },
        incr.as_mut(),
    )?;
    mm::write(dir, vpid, &mm_entry)?;
    // The write-tracking userfaultfd of the pre-dump is criu's, not the
    // task's: it goes before the fds are dumped.
    for fd in uffd {
        objects::mm_track::disarm(&mut p.threads[0].tracee, fd)?;
    }

    let pidfd: OwnedFd = sys::pidfd::pidfd_open(pid).map_err(|e| Error::Task {
        pid,
        what: format!("pidfd_open: {e}"),
    })?;
    let fdinfo = files.dump_fds(pid, &pidfd)?;
    let fs = objects::fs::dump(pid, files)?;
    let rlimits = objects::rlimit::dump(pid)?;

    let mut kobj = pb::TaskKobjIdsEntry {
        vm_id: ids.next_id(),
        files_id: ids.next_id(),
        fs_id: ids.next_id(),
        sighand_id: ids.next_id(),
        ..Default::default()
    };
    ns_ids.fill(pid, &mut kobj)?;
    // The init of a pid namespace of the tree's (its root's, or one nested
    // below) keeps the namespace's ns_last_pid.
    if let (true, Some(id)) = (p.inner.is_ns_init(), kobj.pid_ns_id) {
        ns::pid::write(dir, id, process.last_pid)?;
    }
    image::write_image(
        dir,
        &format!("fdinfo-{}.img", kobj.files_id),
        magic::FDINFO,
        &fdinfo,
    )?;
    image::write_image(dir, &format!("fs-{vpid}.img"), magic::FS, [&fs])?;
    image::write_image(dir, &format!("ids-{vpid}.img"), magic::IDS, [&kobj])?;
    // The first process of the dump (the first to take ids) starts
    // seccomp.img, the others add to it.
    let seccomp_fields = objects::seccomp::write(
        dir,
        |e| objects::seccomp::add_process(e, &seccomp),
        kobj.vm_id == 1,
    )?;

    let comm = objects::read_proc(pid, "comm")?
        .trim_end_matches('\n')
        .to_string();
    let shared_signals = objects::sigqueue::dump(&p.threads[0].tracee, true)?;
    let mut tids = Vec::with_capacity(p.threads.len());
    let mut nested_tids = Vec::new();
    for (i, (th, inside)) in p.threads.iter().zip(&threads_inside).enumerate() {
        let host_tid = th.tracee.pid();
        let (tid, nested) = if host_tid == pid {
            (vpid, p.inner.nested.clone())
        } else {
            ns::pid::inner_tid_like(pid, host_tid, &p.inner)?
        };
        tids.push(tid as u32);
        nested_tids.extend(nested.iter().map(|&t| t as u32));
        let sc = seccomp_fields.get(i).copied().unwrap_or((None, None));
        let (info, mut tcore) = thread_core(pid, th, inside, sc, userns, &restarts)?;
        tcore.cg_set = Some(ns_ids.cgroups.set_of(pid, host_tid)?);
        let tc = (i == 0).then(|| {
            // The leader's core carries the process-wide state; its mask is
            // the leader's own.
            tcore.blk_sigset = None;
            pb::TaskCoreEntry {
                task_state: if p.stopped { TASK_STOPPED } else { TASK_ALIVE },
                exit_code: 0,
                personality: process.personality,
                flags: stat.flags,
                blk_sigset: th.sigmask,
                comm: comm.clone(),
                timers: Some(process.timers.clone()),
                rlimits: Some(rlimits.clone()),
                signals_s: Some(shared_signals.clone()),
                loginuid: read_num(pid, "loginuid").ok().flatten(),
                oom_score_adj: read_num(pid, "oom_score_adj").ok().flatten(),
                sigactions: process.sigactions.clone(),
                child_subreaper: Some(process.child_subreaper),
                membarrier_registration_mask: process.membarrier,
                ..Default::default()
            }
        });
        let core = pb::CoreEntry {
            mtype: pb::core_entry::March::X8664 as i32,
            thread_info: Some(info),
            tc,
            thread_core: Some(tcore),
            ..Default::default()
        };
        image::write_image(dir, &format!("core-{tid}.img"), magic::CORE, [&core])?;
    }

    let pstree = pb::PstreeEntry {
        pid: vpid as u32,
        ppid: p.inner_ppid as u32,
        pgid: p.inner.pgid as u32,
        sid: p.inner.sid as u32,
        threads: tids,
        nested_pids: p.inner.nested.iter().map(|&t| t as u32).collect(),
        nested_tids,
        pid_for_children: p.children_ns.map(|t| t as u32),
    };
    Ok((pstree, Some(kobj)))
}

/// Dumps a zombie: its ids and exit status, nothing more to be had.
pub(super) fn dump_zombie(
    p: &mut Proc,
    dir: &Path,
) -> Result<(pb::PstreeEntry, Option<pb::TaskKobjIdsEntry>)> {
    let pid = p.pid;
    let vpid = p.inner.pid;
    let stat = proc::read_stat(pid)?;
    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        tc: Some(pb::TaskCoreEntry {
            task_state: TASK_DEAD,
            exit_code: stat.exit_code as u32,
            personality: 0,
            flags: 0,
            blk_sigset: 0,
            comm: stat.comm.to_string_lossy().into_owned(),
            ..Default::default()
        }),
        ..Default::default()
    };
    image::write_image(dir, &format!("core-{vpid}.img"), magic::CORE, [&core])?;
    Ok((
        pb::PstreeEntry {
            pid: vpid as u32,
            ppid: p.inner_ppid as u32,
            pgid: p.inner.pgid as u32,
            sid: p.inner.sid as u32,
            threads: vec![0],
            nested_pids: p.inner.nested.iter().map(|&t| t as u32).collect(),
            ..Default::default()
        },
        None,
    ))
}
