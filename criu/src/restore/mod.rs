//! Layer 5: restore orchestration with puppets.
//!
//! Each task starts as a fork of criu with its old PID (clone3 + set_tid),
//! seized at once. Criu then remakes it one remote syscall at a time. The
//! order is fixed, and matters:
//!
//! 1. puppet: clone3 with the PID, seize, drop criu's rseq registration,
//!    map a scratch area where the task has nothing, close criu's fds;
//! 2. memory: criu's mappings out, vDSO/vvar moved to their old place,
//!    every mapping made and filled;
//! 3. files: each made in criu, passed over a unix socket, received with a
//!    remote recvmsg and moved to its number;
//! 4. fs (root, cwd, umask), signal dispositions, itimers, rlimits, the mm
//!    fields (PR_SET_MM_MAP), rseq, robust list, clear_child_tid,
//!    sigaltstack, name, pdeath signal, session and process group;
//! 5. creds — after everything that needs root — then dumpable;
//! 6. the scratch area goes, the registers, FPU state and signal mask are
//!    set, and the task is let go.
//!
//! A restore that fails kills every puppet it made and reaps it: nothing is
//! left behind.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, info};

use crate::image::{self, magic, pb};
use crate::objects::{self, files::Opened, mm};
use crate::proc::{self, MapName};
use crate::remote::{self, fdpass, Tracee};
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
    #[error("{0}")]
    Images(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What `criu restore` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub images_dir: PathBuf,
    pub detach: bool,
    pub shell_job: bool,
}

/// Everything the images say of one process.
struct TaskImages {
    pstree: pb::PstreeEntry,
    core: pb::CoreEntry,
    mm: pb::MmEntry,
    fs: pb::FsEntry,
    fdinfo: Vec<pb::FdinfoEntry>,
}

fn load_task(dir: &Path, pstree: pb::PstreeEntry) -> Result<TaskImages> {
    let pid = pstree.pid as i32;
    let core: pb::CoreEntry = image::read_one(dir, &format!("core-{pid}.img"), magic::CORE)?;
    let ids: pb::TaskKobjIdsEntry = image::read_one(dir, &format!("ids-{pid}.img"), magic::IDS)?;
    let mm: pb::MmEntry = image::read_one(dir, &mm::mm_file(pid), magic::MM)?;
    let fs: pb::FsEntry = image::read_one(dir, &format!("fs-{pid}.img"), magic::FS)?;
    let fdinfo = image::read_image(dir, &format!("fdinfo-{}.img", ids.files_id), magic::FDINFO)?;
    if core.mtype != pb::core_entry::March::X8664 as i32 {
        return Err(Error::Images(format!(
            "core-{pid}.img is for architecture {}, not x86_64",
            core.mtype
        )));
    }
    Ok(TaskImages {
        pstree,
        core,
        mm,
        fs,
        fdinfo,
    })
}

/// A puppet under construction; killed and reaped if dropped unfinished.
struct Puppet {
    tracee: Option<Tracee>,
    pid: i32,
}

impl Drop for Puppet {
    fn drop(&mut self) {
        if let Some(t) = self.tracee.take() {
            t.kill();
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
    }
}

const SCRATCH_LEN: u64 = 16 * sys::PAGE_SIZE;
/// Scratch offsets: fd passing at 0, strings and structs above.
const FDPASS_OFF: u64 = 0;
const DATA_OFF: u64 = sys::PAGE_SIZE;

fn make_puppet(pid: i32) -> Result<Puppet> {
    let got = sys::clone3::spawn_puppet(Some(pid)).map_err(|errno| Error::Task {
        pid,
        what: match errno {
            nix::errno::Errno::EEXIST => {
                let holder = proc::read_status(pid)
                    .map(|s| match s.state {
                        Some(proc::ProcState::Zombie) => {
                            format!(" (a zombie not yet reaped by its parent {})", s.ppid)
                        }
                        _ => format!(" (by the running task {:?})", s.name),
                    })
                    .unwrap_or_default();
                format!("the PID is already in use{holder}; cannot restore the task with it")
            }
            e => format!("cannot create a task with this PID: clone3: {e}"),
        },
    })?;
    let mut p = Puppet {
        tracee: None,
        pid: got,
    };
    p.tracee = Some(Tracee::seize(got, true)?);
    Ok(p)
}

fn prctl(t: &mut Tracee, op: i32, arg: u64) -> Result<()> {
    t.syscall(libc::SYS_prctl, &[op as u64, arg, 0, 0, 0])?;
    Ok(())
}

/// Remakes one process in puppet `p`.
fn restore_process(
    p: &mut Tracee,
    dir: &Path,
    t: &TaskImages,
    files: &[pb::FileEntry],
    opened: &mut Opened,
    sock: &OwnedFd,
    remote_sock: i32,
) -> Result<()> {
    let pid = t.pstree.pid as i32;
    let tc = t
        .core
        .tc
        .as_ref()
        .ok_or_else(|| Error::Images(format!("core-{pid}.img has no task core")))?;
    let th = t
        .core
        .thread_core
        .as_ref()
        .ok_or_else(|| Error::Images(format!("core-{pid}.img has no thread core")))?;
    let ti = t
        .core
        .thread_info
        .as_ref()
        .ok_or_else(|| Error::Images(format!("core-{pid}.img has no registers")))?;

    // 1. The puppet itself.
    let maps = proc::read_maps(p.pid())?;
    let vdso = maps
        .iter()
        .find(|m| m.name == MapName::Vdso)
        .ok_or_else(|| Error::Task {
            pid,
            what: "criu has no vDSO".into(),
        })?;
    p.find_syscall_ip(vdso.start, vdso.end)?;
    objects::rseq::unregister(p)?;
    let at = mm::pick_scratch(&t.mm, &maps, SCRATCH_LEN).ok_or_else(|| Error::Task {
        pid,
        what: "no room for criu's scratch area in the address space".into(),
    })?;
    p.map_scratch(Some(at), SCRATCH_LEN)?;
    let rs = remote_sock as u64;
    if rs > 0 {
        p.syscall(libc::SYS_close_range, &[0, rs - 1, 0])?;
    }
    p.syscall(libc::SYS_close_range, &[rs + 1, u64::from(u32::MAX), 0])?;

    // 2. Memory.
    mm::restore(p, dir, pid, &t.mm, files, DATA_OFF)?;

    // 3. Files.
    for fi in &t.fdinfo {
        let file = opened.get(files, fi.id)?;
        let got = fdpass::pass_fd(p, sock.as_fd(), remote_sock, file.as_fd(), FDPASS_OFF)?;
        let cloexec = fi.flags & libc::FD_CLOEXEC as u32 != 0;
        if got as u32 == fi.fd {
            if !cloexec {
                p.syscall(libc::SYS_fcntl, &[got as u64, libc::F_SETFD as u64, 0])?;
            }
        } else {
            let fl = if cloexec { libc::O_CLOEXEC as u64 } else { 0 };
            p.syscall(libc::SYS_dup3, &[got as u64, u64::from(fi.fd), fl])?;
            p.syscall(libc::SYS_close, &[got as u64])?;
        }
    }
    p.syscall(libc::SYS_close, &[rs])?;

    // 4. The rest of the task's state.
    objects::fs::restore(p, &t.fs, files, DATA_OFF)?;
    objects::signal::restore(p, &tc.sigactions, DATA_OFF)?;
    if let Some(timers) = &tc.timers {
        objects::timer::restore(p, timers, DATA_OFF)?;
    }
    if let Some(rl) = &tc.rlimits {
        objects::rlimit::restore(p, pid, rl, DATA_OFF)?;
    }
    mm::restore_fields(p, &t.mm, files, DATA_OFF)?;
    if let Some(rseq) = &th.rseq_entry {
        objects::rseq::restore(p, rseq)?;
    }
    if th.futex_rla != 0 {
        p.syscall(
            libc::SYS_set_robust_list,
            &[th.futex_rla, u64::from(th.futex_rla_len)],
        )?;
    }
    p.syscall(libc::SYS_set_tid_address, &[ti.clear_tid_addr])?;
    if let Some(sas) = &th.sas {
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&sas.ss_sp.to_le_bytes());
        b.extend_from_slice(&u64::from(sas.ss_flags).to_le_bytes());
        b.extend_from_slice(&sas.ss_size.to_le_bytes());
        let a = p.scratch_put(DATA_OFF, &b)?;
        p.syscall(libc::SYS_sigaltstack, &[a, 0])?;
    }
    let mut comm = tc.comm.as_bytes().to_vec();
    comm.truncate(15);
    comm.push(0);
    let a = p.scratch_put(DATA_OFF, &comm)?;
    prctl(p, libc::PR_SET_NAME, a)?;
    prctl(
        p,
        libc::PR_SET_PDEATHSIG,
        u64::from(th.pdeath_sig.unwrap_or(0)),
    )?;
    if tc.child_subreaper == Some(true) {
        prctl(p, libc::PR_SET_CHILD_SUBREAPER, 1)?;
    }
    p.syscall(libc::SYS_personality, &[u64::from(tc.personality)])?;
    if t.pstree.sid == t.pstree.pid {
        p.syscall(libc::SYS_setsid, &[])?;
    } else if t.pstree.pgid == t.pstree.pid {
        p.syscall(libc::SYS_setpgid, &[0, 0])?;
    }

    // 5. Credentials, then what they reset.
    if let Some(creds) = &th.creds {
        objects::creds::restore(p, creds, DATA_OFF)?;
    }
    mm::restore_dumpable(p, &t.mm)?;

    // 6. Registers last.
    p.unmap_scratch()?;
    objects::thread::restore(p, ti)?;
    p.set_sigmask(tc.blk_sigset)?;
    Ok(())
}

/// How the restored tree ended, when criu waited for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `--restore-detached`: the tree runs on; its root's PID.
    Detached(i32),
    /// The root exited with this code.
    Exited(i32),
    /// The root was killed by this signal.
    Killed(i32),
}

/// Restores the tree in `opts.images_dir`.
///
/// `on_running` is told the root's PID once the whole tree runs (for
/// `--pidfile`), before criu waits for it.
pub fn restore(
    opts: &RestoreOpts,
    on_running: &dyn Fn(i32) -> std::io::Result<()>,
) -> Result<Outcome> {
    let dir = &opts.images_dir;
    let inventory: pb::InventoryEntry = image::read_one(dir, "inventory.img", magic::INVENTORY)?;
    if inventory.img_version != 2 {
        return Err(Error::Images(format!(
            "inventory.img has image version {}, only 2 is known",
            inventory.img_version
        )));
    }
    let pstree: Vec<pb::PstreeEntry> = image::read_image(dir, "pstree.img", magic::PSTREE)?;
    let root = pstree
        .first()
        .cloned()
        .ok_or_else(|| Error::Images("pstree.img has no tasks".into()))?;
    if pstree.len() > 1 {
        return Err(Error::Images(format!(
            "pstree.img has {} tasks; restoring trees is not supported yet",
            pstree.len()
        )));
    }
    if root.threads.len() > 1 {
        return Err(Error::Images(format!(
            "task {} has {} threads; restoring threads is not supported yet",
            root.pid,
            root.threads.len()
        )));
    }
    let files: Vec<pb::FileEntry> = image::read_image(dir, "files.img", magic::FILES)?;
    let task = load_task(dir, root)?;
    let pid = task.pstree.pid as i32;

    // Everything that can be checked or made before a task exists.
    let mut opened = Opened::new(dir);
    for fi in &task.fdinfo {
        opened.get(&files, fi.id)?;
    }
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::Task {
        pid,
        what: format!("socketpair: {e}"),
    })?;
    // The puppet's end must not sit on a number the task uses.
    let top = task.fdinfo.iter().map(|f| f.fd).max().unwrap_or(0) as i32;
    let theirs = sys::fd::dup_above(&theirs, i32::max(top + 1, 100)).map_err(|e| Error::Task {
        pid,
        what: format!("moving the fd socket: {e}"),
    })?;
    let remote_sock = theirs.as_raw_fd();

    info!(pid, "restoring");
    let mut puppet = make_puppet(pid)?;
    drop(theirs);
    let tracee = puppet.tracee.as_mut().ok_or_else(|| Error::Task {
        pid,
        what: "puppet lost".into(),
    })?;
    restore_process(tracee, dir, &task, &files, &mut opened, &ours, remote_sock)?;
    let tracee = puppet.tracee.take().ok_or_else(|| Error::Task {
        pid,
        what: "puppet lost".into(),
    })?;
    tracee.detach()?;
    debug!(pid, "restored task let go");
    on_running(pid).map_err(|e| Error::Task {
        pid,
        what: format!("writing the pid file: {e}"),
    })?;

    if opts.detach {
        return Ok(Outcome::Detached(pid));
    }
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Outcome::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Outcome::Killed(sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Task {
                    pid,
                    what: format!("waiting for the restored task: {e}"),
                })
            }
        }
    }
}
