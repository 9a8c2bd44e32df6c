//! Remaking each process in its puppet, then each of its threads.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use tracing::{debug, warn};

use super::tree::{clone_in, Puppets, THREAD_FLAGS};
use super::{Error, LiveImages, Result, TaskImages};
use crate::image::pb;
use crate::objects::{self, files::Opened, mm, shmem};
use crate::proc;
use crate::remote::blob::{Arg, Batch, Call};
use crate::remote::{fdpass, Tracee};
use crate::sys;

const SCRATCH_LEN: u64 = 32 * sys::PAGE_SIZE;
/// Scratch offsets: fd passing at 0, strings and structs above, and from
/// BLOB_OFF to the end the code of batched remote syscalls.
const FDPASS_OFF: u64 = 0;
const DATA_OFF: u64 = sys::PAGE_SIZE;
const BLOB_OFF: u64 = 16 * sys::PAGE_SIZE;

/// The unix socket files travel to the puppets through. Every puppet
/// inherits `theirs` (at a number no task uses) from criu at its birth.
pub(crate) struct FdChannel {
    ours: OwnedFd,
    theirs: OwnedFd,
}

impl FdChannel {
    pub fn new(tasks: &[TaskImages]) -> Result<Self> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| Error::Images(format!("socketpair for passing files: {e}")))?;
        let top = tasks
            .iter()
            .flat_map(|t| t.live.iter().flat_map(|l| &l.fdinfo))
            .map(|f| f.fd)
            .max()
            .unwrap_or(0) as i32;
        let theirs = sys::fd::dup_above(&theirs, i32::max(top + 1, 100))
            .map_err(|e| Error::Images(format!("moving the fd socket: {e}")))?;
        Ok(FdChannel { ours, theirs })
    }

    fn remote(&self) -> u64 {
        self.theirs.as_raw_fd() as u64
    }
}

/// Session leader `pid` (`p`, just made its session, no children yet)
/// takes back its controlling terminal, if it had one: the members of its
/// session then inherit it when they are born. (Its foreground group is
/// set later, once the groups exist.)
pub(crate) fn session_ctty(
    p: &mut Tracee,
    pid: i32,
    opened: &mut Opened,
    chan: &FdChannel,
) -> Result<()> {
    let Some(tty) = opened.session_ctty(pid)? else {
        return Ok(());
    };
    let got = fdpass::pass_fd(
        p,
        chan.ours.as_fd(),
        chan.remote() as i32,
        tty.as_fd(),
        FDPASS_OFF,
    )?;
    p.syscall(libc::SYS_ioctl, &[got as u64, libc::TIOCSCTTY, 0])?;
    p.syscall(libc::SYS_close, &[got as u64])?;
    debug!(pid, "session leader took its controlling terminal");
    Ok(())
}

fn prctl(t: &mut Tracee, op: i32, arg: u64) -> Result<()> {
    t.syscall(libc::SYS_prctl, &[op as u64, arg, 0, 0, 0])?;
    Ok(())
}

/// Process-wide state: memory, files, fs, signals, limits, mm fields.
#[allow(clippy::too_many_arguments)]
fn restore_process(
    p: &mut Tracee,
    dir: &Path,
    task: &TaskImages,
    live: &LiveImages,
    files: &[pb::FileEntry],
    opened: &mut Opened,
    shared: &mut shmem::Made,
    chan: &FdChannel,
) -> Result<()> {
    let pid = task.pid();
    let tc = task.tc()?;

    // The puppet itself: criu's rseq registration and fds go, a scratch
    // area is put where the task has nothing.
    objects::rseq::unregister(p)?;
    let maps = proc::read_maps(p.pid())?;
    let at = mm::pick_scratch(&live.mm, &maps, SCRATCH_LEN).ok_or_else(|| Error::Task {
        pid,
        what: "no room for criu's scratch area in the address space".into(),
    })?;
    p.map_scratch_with_blobs(Some(at), SCRATCH_LEN, BLOB_OFF)?;
    let rs = chan.remote();
    let mut b = Batch::new();
    b.push(libc::SYS_close_range, &[0, rs - 1, 0]);
    b.push(libc::SYS_close_range, &[rs + 1, u64::from(u32::MAX), 0]);
    p.run_batch(&b)?;

    let mf = mm::MapFiles {
        files,
        opened,
        chan: chan.ours.as_fd(),
        remote: rs as i32,
    };
    mm::restore(p, dir, pid, &live.mm, mf, shared, DATA_OFF)?;
    // membarrier registrations belong to the address space just made.
    let membarrier = tc.membarrier_registration_mask.unwrap_or(0);
    for bit in (0..32).filter(|b| membarrier & (1 << b) != 0) {
        p.syscall(libc::SYS_membarrier, &[1u64 << bit, 0, 0])?;
    }

    // The fds: received in messages of up to fdpass::MAX_FDS (one remote
    // recvmsg each), then put at their numbers in one batch.
    let mut gots: Vec<i32> = Vec::with_capacity(live.fdinfo.len());
    for chunk in live.fdinfo.chunks(fdpass::MAX_FDS) {
        let mut owned = Vec::with_capacity(chunk.len());
        for fi in chunk {
            let f = opened.get(files, fi.id)?;
            owned.push(f.try_clone().map_err(|e| Error::Task {
                pid,
                what: format!("dup of the file for fd {}: {e}", fi.fd),
            })?);
        }
        let fds: Vec<_> = owned.iter().map(|f| f.as_fd()).collect();
        gots.extend(fdpass::pass_fds(
            p,
            chan.ours.as_fd(),
            rs as i32,
            &fds,
            FDPASS_OFF,
        )?);
    }
    p.run_batch(&install_fds(&live.fdinfo, &gots, rs))?;
    // Locks on the fds just installed, taken by their owner (before creds).
    objects::files::locks::restore(p, pid, opened.file_locks()?, DATA_OFF)?;
    // A session leader takes its controlling terminal back.
    opened.restore_ctty(p, pid, &live.fdinfo, files, DATA_OFF)?;

    objects::signal::restore(p, &tc.sigactions, DATA_OFF)?;
    if let Some(timers) = &tc.timers {
        objects::timer::restore(p, timers, DATA_OFF)?;
    }
    if let Some(rl) = &tc.rlimits {
        objects::rlimit::restore(p, pid, rl, DATA_OFF)?;
    }
    let mut b = Batch::new();
    mm::restore_fields(p, &live.mm, files, DATA_OFF, &mut b)?;
    if tc.child_subreaper == Some(true) {
        b.push(
            libc::SYS_prctl,
            &[libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0],
        );
    }
    b.push(libc::SYS_personality, &[u64::from(tc.personality)]);
    p.run_batch(&b)?;
    // After the last file opened by path (the exe link's, in the batch): a
    // chroot would hide the paths, which are from the top of the mount
    // namespace.
    objects::fs::restore(p, &live.fs, files, DATA_OFF)?;
    if let Some(adj) = tc.oom_score_adj {
        restore_oom_score_adj(p.pid(), adj);
    }
    Ok(())
}

/// The calls that move the fds the puppet received (`gots`, close on exec)
/// to their numbers with their close-on-exec flag, then close its end `rs`
/// of the fd channel. When a number wanted is one still holding a received
/// fd, every fd goes above all of them first.
fn install_fds(fdinfo: &[pb::FdinfoEntry], gots: &[i32], rs: u64) -> Batch {
    let mut b = Batch::new();
    let want = |i: usize| {
        (
            u64::from(fdinfo[i].fd),
            fdinfo[i].flags & libc::FD_CLOEXEC as u32 != 0,
        )
    };
    let clash = (0..gots.len()).any(|i| {
        let (to, _) = want(i);
        gots[i + 1..].iter().any(|&g| g as u64 == to)
    });
    if !clash {
        for (i, &got) in gots.iter().enumerate() {
            let (to, cloexec) = want(i);
            if got as u64 == to {
                if !cloexec {
                    b.push(libc::SYS_fcntl, &[to, libc::F_SETFD as u64, 0]);
                }
            } else {
                let fl = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
                b.push(libc::SYS_dup3, &[got as u64, to, fl]);
                b.push(libc::SYS_close, &[got as u64]);
            }
        }
    } else {
        let top = gots
            .iter()
            .map(|&g| g as u64)
            .chain((0..gots.len()).map(|i| want(i).0))
            .max()
            .unwrap_or(0)
            + 1;
        let mut moved = Vec::with_capacity(gots.len());
        for &got in gots {
            moved.push(b.push(
                libc::SYS_fcntl,
                &[got as u64, libc::F_DUPFD_CLOEXEC as u64, top],
            ));
            b.push(libc::SYS_close, &[got as u64]);
        }
        for (i, &m) in moved.iter().enumerate() {
            let (to, cloexec) = want(i);
            let fl = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            b.push_call(Call::with_args(
                libc::SYS_dup3,
                &[Arg::Ret(m), Arg::Imm(to), Arg::Imm(fl)],
            ));
            b.push_call(Call::with_args(libc::SYS_close, &[Arg::Ret(m)]));
        }
    }
    b.push(libc::SYS_close, &[rs]);
    b
}

/// Written by criu to /proc/PID/oom_score_adj. As in CRIU, not critical:
/// lowering it below what the task may set itself needs CAP_SYS_RESOURCE,
/// which criu may lack; then the restore goes on with a warning.
fn restore_oom_score_adj(pid: i32, adj: i32) {
    let path = format!("/proc/{pid}/oom_score_adj");
    let now = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if now == Some(adj) {
        return;
    }
    if let Err(e) = std::fs::write(&path, adj.to_string()) {
        warn!(
            pid,
            adj,
            ?now,
            "cannot restore oom_score_adj ({e}); the task keeps {now:?}"
        );
    }
}

/// Per-thread state but registers: rseq, robust list, clear_child_tid,
/// sigaltstack, name, pdeath signal, then creds.
fn restore_thread(t: &mut Tracee, pid: i32, core: &pb::CoreEntry) -> Result<()> {
    let tid = t.pid();
    let th = core
        .thread_core
        .as_ref()
        .ok_or_else(|| Error::Images(format!("core-{tid}.img has no thread core")))?;
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| Error::Images(format!("core-{tid}.img has no registers")))?;
    // While the puppet is root: raising priority needs CAP_SYS_NICE.
    objects::sched::restore(t, th, DATA_OFF)?;
    if let Some(rseq) = &th.rseq_entry {
        objects::rseq::restore(t, rseq)?;
    }
    // Robust list, clear_child_tid, sigaltstack and name: one batch, its
    // arguments side by side in the scratch area.
    let mut b = Batch::new();
    if th.futex_rla != 0 {
        b.push(
            libc::SYS_set_robust_list,
            &[th.futex_rla, u64::from(th.futex_rla_len)],
        );
    }
    b.push(libc::SYS_set_tid_address, &[ti.clear_tid_addr]);
    let mut data = Vec::with_capacity(40);
    if let Some(sas) = &th.sas {
        data.extend_from_slice(&sas.ss_sp.to_le_bytes());
        data.extend_from_slice(&u64::from(sas.ss_flags).to_le_bytes());
        data.extend_from_slice(&sas.ss_size.to_le_bytes());
    }
    let name = th
        .comm
        .clone()
        .or_else(|| core.tc.as_ref().map(|tc| tc.comm.clone()))
        .unwrap_or_default();
    let mut comm = name.into_bytes();
    comm.truncate(15);
    comm.push(0);
    let comm_off = data.len() as u64;
    data.extend_from_slice(&comm);
    let a = t.scratch_put(DATA_OFF, &data)?;
    if th.sas.is_some() {
        b.push(libc::SYS_sigaltstack, &[a, 0]);
    }
    b.push(
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, a + comm_off, 0, 0, 0],
    );
    t.run_batch(&b)?;
    if let Some(q) = &th.signals_p {
        objects::sigqueue::restore(t, pid, q, false, DATA_OFF)?;
    }
    if let Some(q) = core.tc.as_ref().and_then(|tc| tc.signals_s.as_ref()) {
        objects::sigqueue::restore(t, pid, q, true, DATA_OFF)?;
    }
    if let Some(creds) = &th.creds {
        objects::creds::restore(t, creds, DATA_OFF).map_err(|e| Error::Task {
            pid,
            what: format!("thread {tid}: credentials: {e}"),
        })?;
    }
    // After credentials: the kernel clears the pdeath signal when they change.
    prctl(
        t,
        libc::PR_SET_PDEATHSIG,
        u64::from(th.pdeath_sig.unwrap_or(0)),
    )?;
    Ok(())
}

/// The thread's seccomp filters, installed before its credentials: a task
/// without CAP_SYS_ADMIN or NO_NEW_PRIVS at the end (a container's) could
/// not install them after. The puppet's seccomp is suspended while criu
/// traces it (PTRACE_O_SUSPEND_SECCOMP), so the remote syscalls that follow
/// are not filtered; the filters apply once criu lets go.
fn restore_seccomp_filters(
    t: &mut Tracee,
    core: &pb::CoreEntry,
    seccomp: &pb::SeccompEntry,
) -> Result<()> {
    let tid = t.pid();
    let Some(th) = core.thread_core.as_ref() else {
        return Ok(());
    };
    if th.seccomp_mode.unwrap_or(0) as u32 != objects::seccomp::MODE_FILTER {
        return Ok(());
    }
    let oldest = th.seccomp_filter.ok_or_else(|| {
        Error::Images(format!(
            "core-{tid}.img: seccomp filter mode without a filter"
        ))
    })?;
    let chain = objects::seccomp::chain(seccomp, oldest)?;
    let sp = core
        .thread_info
        .as_ref()
        .map(|ti| ti.gpregs.sp)
        .ok_or_else(|| Error::Images(format!("core-{tid}.img has no registers")))?;
    t.suspend_seccomp()?;
    Ok(objects::seccomp::install(t, sp, &chain)?)
}

/// Strict seccomp mode: the thread's last syscall (it allows no other).
fn restore_seccomp_strict(t: &mut Tracee, core: &pb::CoreEntry) -> Result<()> {
    let tid = t.pid();
    match core
        .thread_core
        .as_ref()
        .and_then(|th| th.seccomp_mode)
        .unwrap_or(0) as u32
    {
        objects::seccomp::MODE_STRICT => Ok(objects::seccomp::set_strict(t)?),
        objects::seccomp::MODE_DISABLED | objects::seccomp::MODE_FILTER => Ok(()),
        m => Err(Error::Images(format!(
            "core-{tid}.img: unknown seccomp mode {m}"
        ))),
    }
}

/// The last step of a thread before it runs: registers, FPU state, mask.
fn finish_thread(t: &mut Tracee, core: &pb::CoreEntry, leader_mask: Option<u64>) -> Result<()> {
    let tid = t.pid();
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| Error::Images(format!("core-{tid}.img has no registers")))?;
    objects::thread::restore(t, ti)?;
    let mask = core
        .thread_core
        .as_ref()
        .and_then(|th| th.blk_sigset)
        .or(leader_mask)
        .unwrap_or(0);
    t.set_sigmask(mask)?;
    Ok(())
}

/// Whether a SIGTRAP is among the signals the task had pending (its
/// threads' queues or the shared one).
fn queues_sigtrap(task: &TaskImages) -> bool {
    let is_trap = |si: &pb::SiginfoEntry| {
        si.siginfo
            .get(0..4)
            .is_some_and(|b| b == libc::SIGTRAP.to_le_bytes())
    };
    task.cores
        .iter()
        .flat_map(|c| {
            let own = c.thread_core.as_ref().and_then(|th| th.signals_p.as_ref());
            let shared = c.tc.as_ref().and_then(|tc| tc.signals_s.as_ref());
            own.into_iter().chain(shared)
        })
        .any(|q| q.signals.iter().any(is_trap))
}

/// Remakes every live process of the tree in its puppet.
pub(super) fn restore_all(
    puppets: &mut Puppets,
    dir: &Path,
    tasks: &[TaskImages],
    files: &[pb::FileEntry],
    opened: &mut Opened,
    chan: &FdChannel,
) -> Result<()> {
    let mut shared = shmem::Made::default();
    let seccomp = objects::seccomp::read(dir)?;
    let ours = chan
        .ours
        .try_clone()
        .map_err(|e| Error::Images(format!("dup of the fd socket: {e}")))?;
    shared.set_channel(ours, chan.remote() as i32);
    for task in tasks {
        let Some(live) = &task.live else { continue };
        let pid = task.pid();
        let proc = puppets.get_mut(pid)?;
        let leader = proc.threads.first_mut().ok_or_else(|| Error::Task {
            pid,
            what: "puppet has no thread".into(),
        })?;
        restore_process(leader, dir, task, live, files, opened, &mut shared, chan)?;

        // The other threads, born from the leader with their own TIDs.
        for (i, &tid) in task.pstree.threads.iter().enumerate() {
            if tid as i32 == pid {
                continue;
            }
            let leader = &mut proc.threads[0];
            let mut t = clone_in(leader, tid as i32, &task.set_tid(i)?, THREAD_FLAGS)?;
            if let Some(off) = leader.blob_off() {
                t.enable_blobs(off);
            }
            proc.threads.push(t);
        }
        // POSIX timers may signal any of the threads: made once they exist.
        if let Some(timers) = task.tc()?.timers.as_ref() {
            objects::timer::restore_posix(&mut proc.threads[0], pid, &timers.posix, DATA_OFF)?;
        }
        // Filters before credentials, the leader after the others: its
        // filters may be installed with TSYNC for all of them.
        for (t, core) in proc.threads.iter_mut().zip(&task.cores).rev() {
            restore_seccomp_filters(t, core, &seccomp)?;
        }
        // A SIGTRAP queued again would be taken for a blob's trap (blobs
        // run with SIGTRAP unblocked): remote syscalls one at a time then,
        // with SIGTRAP blocked like every other signal of a puppet (threads
        // cloned after the leader's blobs inherited it unblocked).
        if queues_sigtrap(task) {
            for t in proc.threads.iter_mut() {
                t.disable_blobs()?;
                let mask = t.sigmask()?;
                t.set_sigmask(mask | 1 << (libc::SIGTRAP - 1))?;
            }
        }
        for (t, core) in proc.threads.iter_mut().zip(&task.cores) {
            restore_thread(t, pid, core)?;
        }
        // File owners: once the owner threads exist, with the task's creds.
        objects::files::fown::restore(&mut proc.threads[0], pid, &live.fdinfo, files, DATA_OFF)?;
        mm::restore_dumpable(&mut proc.threads[0], &live.mm)?;
        proc.threads[0].unmap_scratch()?;
        for (t, core) in proc.threads.iter_mut().zip(&task.cores) {
            restore_seccomp_strict(t, core)?;
        }
        let leader_mask = task.tc().ok().map(|tc| tc.blk_sigset);
        for (t, core) in proc.threads.iter_mut().zip(&task.cores) {
            t.set_scratch(None);
            finish_thread(t, core, leader_mask)?;
        }
        debug!(pid, threads = proc.threads.len(), "process remade");
    }
    // Every memfd is mapped where it was: now its seals may go on.
    opened.seal_memfds()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fi(fd: u32, cloexec: bool) -> pb::FdinfoEntry {
        pb::FdinfoEntry {
            fd,
            flags: if cloexec { libc::FD_CLOEXEC as u32 } else { 0 },
            ..Default::default()
        }
    }

    #[test]
    fn received_fds_go_to_their_numbers_directly_when_nothing_clashes() {
        // 0 and 1 arrive where they belong; 2 arrived at 3 and goes to 7.
        let b = install_fds(&[fi(0, false), fi(1, true), fi(7, true)], &[0, 1, 3], 100);
        let calls: Vec<(i64, Vec<Arg>)> = b
            .calls()
            .iter()
            .map(|c| (c.nr, c.args[..3].to_vec()))
            .collect();
        let imm = |v: &[u64]| v.iter().map(|&x| Arg::Imm(x)).collect::<Vec<_>>();
        assert_eq!(
            calls,
            vec![
                (libc::SYS_fcntl, imm(&[0, libc::F_SETFD as u64, 0])),
                (libc::SYS_dup3, imm(&[3, 7, libc::O_CLOEXEC as u64])),
                (libc::SYS_close, imm(&[3, 0, 0])),
                (libc::SYS_close, imm(&[100, 0, 0])),
            ]
        );
    }

    #[test]
    fn a_target_still_holding_a_received_fd_moves_everything_above_first() {
        // fd 0 arrived at 0 but must become 1, where fd 1 arrived.
        let b = install_fds(&[fi(1, false), fi(0, false)], &[0, 1], 100);
        let nrs: Vec<i64> = b.calls().iter().map(|c| c.nr).collect();
        assert_eq!(
            nrs,
            vec![
                libc::SYS_fcntl,
                libc::SYS_close,
                libc::SYS_fcntl,
                libc::SYS_close,
                libc::SYS_dup3,
                libc::SYS_close,
                libc::SYS_dup3,
                libc::SYS_close,
                libc::SYS_close,
            ]
        );
        // Parked above every number involved, then moved from there.
        assert_eq!(b.calls()[0].args[2], Arg::Imm(2));
        assert_eq!(b.calls()[4].args[..2], [Arg::Ret(0), Arg::Imm(1)]);
        assert_eq!(b.calls()[6].args[..2], [Arg::Ret(2), Arg::Imm(0)]);
    }
}
