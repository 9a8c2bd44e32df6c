//! Making the tree of puppets: right PIDs, parents, sessions, process
//! groups, and zombies.

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tracing::debug;

use super::{Error, Result, TaskImages};
use crate::objects::ns;
use crate::proc::{self, MapName};
use crate::remote::Tracee;
use crate::sys;

/// The cgroup set of a process, from its leader's core image.
pub(super) fn cg_set_of(t: &TaskImages) -> Option<u32> {
    let core = t.cores.first()?;
    core.tc
        .as_ref()
        .and_then(|tc| tc.cg_set)
        .or_else(|| core.thread_core.as_ref().and_then(|th| th.cg_set))
}

/// clone3 flags of a thread.
pub(super) const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// Room for the clone3 arguments while the tree is made.
const BIRTH_SCRATCH: u64 = sys::PAGE_SIZE;

/// One process being remade: its threads' tracees, leader first.
pub(crate) struct PuppetProc {
    /// Its PID in the tree's pid namespace (the images' PID).
    pub pid: i32,
    /// Its PID as criu sees it.
    pub host: i32,
    pub threads: Vec<Tracee>,
}

/// Every puppet made so far.
pub(crate) struct Puppets {
    pub procs: Vec<PuppetProc>,
    was_subreaper: bool,
    /// `--restore-sibling`: the root is a child of criu's parent.
    sibling: bool,
    /// A pidfd of a sibling root: criu cannot wait for it, but can kill it.
    root_pidfd: Option<std::os::fd::OwnedFd>,
}

fn pid_in_use(pid: i32) -> String {
    let holder = proc::read_status(pid)
        .map(|s| match s.state {
            Some(proc::ProcState::Zombie) => {
                format!(" (by a zombie not yet reaped by its parent {})", s.ppid)
            }
            _ => format!(" (by the running task {:?})", s.name),
        })
        .unwrap_or_default();
    format!("the PID is already in use{holder}; cannot restore the task with it")
}

/// Runs clone3 inside `parent` to make task `pid` (the tree's PID) with
/// `flags` (a process when without CLONE_THREAD, else a thread) and the
/// TIDs of `set_tid` (its own namespace's first); returns the new task,
/// stopped and traced.
pub(super) fn clone_in(
    parent: &mut Tracee,
    pid: i32,
    set_tid: &[i32],
    flags: u64,
) -> Result<Tracee> {
    let exit_signal = if flags & libc::CLONE_THREAD as u64 != 0 {
        0
    } else {
        libc::SIGCHLD as u64
    };
    let (base, _) = parent.scratch().ok_or_else(|| Error::Task {
        pid,
        what: "no scratch area in the parent to pass clone3 its arguments".into(),
    })?;
    // struct clone_args, then the set_tid array.
    let tid_at = base + 88;
    let args: [u64; 11] = [
        flags,
        0,
        0,
        0,
        exit_signal,
        0,
        0,
        0,
        tid_at,
        set_tid.len() as u64,
        0,
    ];
    // set_tid is an array of pid_t.
    let bytes: Vec<u8> = args
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .chain(set_tid.iter().flat_map(|t| t.to_le_bytes()))
        .collect();
    parent.scratch_put(0, &bytes)?;
    let ret = parent.syscall_raw(libc::SYS_clone3, &[base, 88])?;
    if ret == -(libc::EEXIST as i64) {
        return Err(Error::Task {
            pid,
            what: pid_in_use(pid),
        });
    }
    if ret < 0 {
        return Err(Error::Task {
            pid,
            what: format!(
                "clone3 in {} with TIDs {set_tid:?} failed: {}",
                parent.pid(),
                nix::errno::Errno::from_raw(-ret as i32)
            ),
        });
    }
    // clone3 answers with the PID in the parent's namespace; ptrace tells
    // criu's.
    let host = parent
        .take_events()
        .new_tasks
        .last()
        .copied()
        .unwrap_or(ret as i32);
    let mut child = Tracee::adopt(host)?;
    if let Some(ip) = parent.syscall_ip() {
        child.set_syscall_ip(ip);
    }
    child.set_scratch(parent.scratch());
    Ok(child)
}

impl Puppets {
    /// Makes criu the subreaper of what it creates, so that it can reap
    /// everything should the restore fail.
    /// With `sibling`, the root is born a child of criu's parent.
    pub fn new(sibling: bool) -> Result<Self> {
        let was_subreaper = nix::sys::prctl::get_child_subreaper().unwrap_or(false);
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::Task {
            pid: std::process::id() as i32,
            what: format!("PR_SET_CHILD_SUBREAPER: {e}"),
        })?;
        Ok(Puppets {
            procs: Vec::new(),
            was_subreaper,
            sibling,
            root_pidfd: None,
        })
    }

    pub fn get_mut(&mut self, pid: i32) -> Result<&mut PuppetProc> {
        self.procs
            .iter_mut()
            .find(|p| p.pid == pid)
            .ok_or_else(|| Error::Task {
                pid,
                what: "no puppet for this task".into(),
            })
    }

    /// The PID criu sees for the task with PID `pid` in the images.
    pub fn host_of(&self, pid: i32) -> Option<i32> {
        self.procs.iter().find(|p| p.pid == pid).map(|p| p.host)
    }

    /// The root puppet: a fork of criu, born in the namespaces of `plan`
    /// (PID 1 of a new pid namespace, or with its old PID in criu's), which
    /// are then filled.
    fn make_root(&mut self, pid: i32, plan: &ns::Plan) -> Result<()> {
        let flags = plan.clone_flags();
        let new_pidns = flags & libc::CLONE_NEWPID as u64 != 0;
        if new_pidns && pid != 1 {
            return Err(Error::Task {
                pid,
                what: "the root of a new pid namespace must be its PID 1".into(),
            });
        }
        // The first task of a new pid namespace is its PID 1 anyway; its
        // PID in criu's namespace is whatever is free.
        let tids: &[i32] = if new_pidns { &[] } else { &[pid] };
        let spawned = plan.joins.inside(|| {
            if self.sibling {
                sys::clone3::spawn_sibling_puppet_in_ns(flags, tids).map(|(p, fd)| (p, Some(fd)))
            } else {
                sys::clone3::spawn_puppet_in_ns(flags, tids).map(|p| (p, None))
            }
        })?;
        let (got, pidfd) = spawned.map_err(|errno| Error::Task {
            pid,
            what: match errno {
                nix::errno::Errno::EEXIST => pid_in_use(pid),
                e if self.sibling => {
                    format!(
                        "cannot create a sibling of criu with this PID: clone3 CLONE_PARENT: {e}"
                    )
                }
                e => format!("cannot create a task with this PID: clone3: {e}"),
            },
        })?;
        self.root_pidfd = pidfd;
        // Registered first, so that a failure below still kills it.
        self.procs.push(PuppetProc {
            pid,
            host: got,
            threads: Vec::new(),
        });
        plan.born(got)?;
        let mut t = Tracee::seize(got, true)?;
        let maps = proc::read_maps(got)?;
        let vdso = maps
            .iter()
            .find(|m| m.name == MapName::Vdso)
            .ok_or_else(|| Error::Task {
                pid,
                what: "criu has no vDSO to run remote syscalls through".into(),
            })?;
        t.find_syscall_ip(vdso.start, vdso.end)?;
        // Nothing is delivered to a puppet while it is being made; the
        // task's own mask is set last.
        t.set_sigmask(!0)?;
        t.map_scratch(None, BIRTH_SCRATCH)?;
        plan.fill(got, &mut t)?;
        self.procs[0].threads.push(t);
        Ok(())
    }

    /// Creates every process of the tree with its PID, parent and session.
    /// `on_session` runs in each session leader just after its `setsid`,
    /// before any of its children exist (it takes its controlling
    /// terminal there, for its session's members to inherit).
    pub fn create(
        &mut self,
        tasks: &[TaskImages],
        plan: &ns::Plan,
        on_session: &mut dyn FnMut(&mut Tracee, i32) -> Result<()>,
    ) -> Result<()> {
        // Tasks already in the pid namespace their children are born into.
        let mut joined = Vec::new();
        for t in tasks {
            let pid = t.pid();
            if t.pstree.ppid == 0 {
                self.make_root(pid, plan)?;
                let root = self.get_mut(pid)?;
                let leader = root.threads.first_mut().ok_or_else(|| Error::Task {
                    pid,
                    what: "root has no thread".into(),
                })?;
                plan.join_cgroup(leader, pid, cg_set_of(t))?;
            } else {
                let ppid = t.pstree.ppid as i32;
                let parent_task = tasks.iter().find(|p| p.pid() == ppid).ok_or_else(|| {
                    Error::Images(format!(
                        "pstree.img: the parent {ppid} of {pid} is not in the tree"
                    ))
                })?;
                let flags = self.pid_ns_flags(t, parent_task, tasks, &mut joined)?;
                let parent = self.get_mut(ppid)?;
                let leader = parent.threads.first_mut().ok_or_else(|| Error::Task {
                    pid,
                    what: "parent has no thread".into(),
                })?;
                let mut child = clone_in(leader, pid, &t.set_pid(), flags)?;
                // A new pid namespace's ns_last_pid, before anything else
                // is born in it.
                if let Some(e) = t.live.as_ref().and_then(|l| l.pidns.as_ref()) {
                    ns::pid::restore(&mut child, e)?;
                }
                self.procs.push(PuppetProc {
                    pid,
                    host: child.pid(),
                    threads: vec![child],
                });
                let me = self.get_mut(pid)?;
                let born = me.threads.first_mut().ok_or_else(|| Error::Task {
                    pid,
                    what: "puppet has no thread".into(),
                })?;
                plan.join_cgroup(born, pid, cg_set_of(t))?;
            }
            if t.pstree.sid == t.pstree.pid {
                let p = self.get_mut(pid)?;
                p.threads[0].syscall(libc::SYS_setsid, &[])?;
                on_session(&mut p.threads[0], pid)?;
            }
            debug!(pid, "puppet made");
        }
        // The pid namespace for children of those that unshared one.
        for t in tasks.iter().filter(|t| t.live.is_some()) {
            if t.pstree.pid_for_children.is_some() && !joined.contains(&t.pid()) {
                self.join_children_ns(t, tasks)?;
            }
        }
        // Process groups, once every would-be leader exists: leaders first.
        for t in tasks
            .iter()
            .filter(|t| t.pstree.pgid == t.pstree.pid && t.pstree.sid != t.pstree.pid)
        {
            self.get_mut(t.pid())?.threads[0].syscall(libc::SYS_setpgid, &[0, 0])?;
        }
        for t in tasks.iter().filter(|t| t.pstree.pgid != t.pstree.pid) {
            let pid = t.pid();
            let Some(pgid) = self.pgid_to_join(t, tasks)? else {
                continue;
            };
            let r = self.get_mut(pid)?.threads[0].syscall_raw(libc::SYS_setpgid, &[0, pgid])?;
            if r < 0 {
                return Err(Error::Task {
                    pid,
                    what: format!(
                        "cannot join process group {}: {} (a group whose leader is gone is not supported yet)",
                        t.pstree.pgid,
                        nix::errno::Errno::from_raw(-r as i32)
                    ),
                });
            }
        }
        for t in tasks.iter().filter(|t| t.live.is_none()) {
            self.make_zombie(t)?;
        }
        // The parents of the zombies got a SIGCHLD the task had long had
        // (or ignored): take it back.
        for t in tasks.iter().filter(|t| t.live.is_none()) {
            let parent = self.get_mut(t.pstree.ppid as i32)?;
            let p = &mut parent.threads[0];
            let (base, _) = p.scratch().unwrap_or((0, 0));
            let set = 1u64 << (libc::SIGCHLD - 1);
            let mut b = set.to_le_bytes().to_vec();
            b.extend_from_slice(&[0u8; 16]); // timespec {0, 0}
            p.scratch_put(0, &b)?;
            p.syscall_raw(libc::SYS_rt_sigtimedwait, &[base, 0, base + 8, 8])?;
        }
        Ok(())
    }

    /// The clone3 flags that put child `t` of `parent` in its pid
    /// namespace: its parent's, or a new one it is the init of. A child
    /// born into a namespace its parent unshared for its children but is
    /// not the init of needs the parent in that namespace first.
    fn pid_ns_flags(
        &mut self,
        t: &TaskImages,
        parent: &TaskImages,
        tasks: &[TaskImages],
        joined: &mut Vec<i32>,
    ) -> Result<u64> {
        let (depth, up) = (t.depth(), parent.depth());
        if depth == up {
            return Ok(0);
        }
        if depth != up + 1 {
            return Err(Error::Images(format!(
                "pstree.img: task {} is {depth} pid namespaces below the tree's, its parent {} is {up}",
                t.pid(),
                parent.pid()
            )));
        }
        if t.own_pid() == 1 {
            return Ok(libc::CLONE_NEWPID as u64);
        }
        if !joined.contains(&parent.pid()) {
            self.join_children_ns(parent, tasks)?;
            joined.push(parent.pid());
        }
        Ok(0)
    }

    /// Makes the children of `t` born in the pid namespace of the task its
    /// image names (`pid_for_children`): setns on a pidfd of that task.
    fn join_children_ns(&mut self, t: &TaskImages, tasks: &[TaskImages]) -> Result<()> {
        let pid = t.pid();
        let target = t.pstree.pid_for_children.ok_or_else(|| {
            Error::Images(format!(
                "pstree.img: task {pid} has a child born in a nested pid namespace it is not the init of, and no pid_for_children"
            ))
        })? as i32;
        let seen = tasks
            .iter()
            .find(|o| o.pid() == target)
            .and_then(|o| o.pid_at(t.depth()))
            .filter(|_| self.host_of(target).is_some())
            .ok_or_else(|| Error::Task {
                pid,
                what: format!(
                    "its children are born in the pid namespace of task {target}, which is not remade yet or not below it"
                ),
            })?;
        let p = &mut self.get_mut(pid)?.threads[0];
        let fd = p.syscall(libc::SYS_pidfd_open, &[seen as u64, 0])?;
        let r = p.syscall_raw(libc::SYS_setns, &[fd, libc::CLONE_NEWPID as u64]);
        p.syscall(libc::SYS_close, &[fd])?;
        let r = r?;
        if r < 0 {
            return Err(Error::Task {
                pid,
                what: format!(
                    "setns into the pid namespace of task {target} for its children: {}",
                    nix::errno::Errno::from_raw(-r as i32)
                ),
            });
        }
        Ok(())
    }

    /// The process group `t` must join, as `t` names it in its own pid
    /// namespace; None when it is in that group already (born there).
    fn pgid_to_join(&self, t: &TaskImages, tasks: &[TaskImages]) -> Result<Option<u64>> {
        let pgid = t.pstree.pgid as i32;
        let (host, leader) = (self.host_of(t.pid()), self.host_of(pgid));
        if let (Some(h), Some(l)) = (host, leader) {
            if nix::unistd::getpgid(Some(Pid::from_raw(h))).is_ok_and(|g| g.as_raw() == l) {
                return Ok(None);
            }
        }
        if t.depth() == 0 {
            return Ok(Some(u64::from(pgid as u32)));
        }
        tasks
            .iter()
            .find(|o| o.pid() == pgid)
            .and_then(|o| o.pid_at(t.depth()))
            .map(|g| Some(u64::from(g as u32)))
            .ok_or_else(|| Error::Task {
                pid: t.pid(),
                what: format!(
                    "cannot join process group {pgid} from a pid namespace nested in the tree's: its leader is outside that namespace"
                ),
            })
    }

    /// Lets a zombie's puppet die with the task's exit status; its parent
    /// (a puppet, released later) has not reaped it.
    fn make_zombie(&mut self, t: &TaskImages) -> Result<()> {
        let pid = t.pid();
        let status = t.tc()?.exit_code;
        let p = self.get_mut(pid)?;
        let mut th = p.threads.pop().ok_or_else(|| Error::Task {
            pid,
            what: "zombie puppet lost".into(),
        })?;
        let ip = th.syscall_ip().unwrap_or(0);
        let mut regs = *th.regs();
        let sig = status & 0x7f;
        if sig != 0 {
            // Killed by a signal: default action, then the signal itself.
            let (base, _) = th.scratch().unwrap_or((0, 0));
            let dfl = [0u8; 32];
            th.scratch_put(0, &dfl)?;
            th.syscall(libc::SYS_rt_sigaction, &[u64::from(sig), base, 0, 8])?;
            th.syscall(libc::SYS_prlimit64, &[0, libc::RLIMIT_CORE as u64, base, 0])?;
            regs.rax = libc::SYS_kill as u64;
            regs.rdi = t.own_pid() as u64;
            regs.rsi = u64::from(sig);
        } else {
            regs.rax = libc::SYS_exit_group as u64;
            regs.rdi = u64::from((status >> 8) & 0xff);
        }
        regs.orig_rax = u64::MAX;
        regs.rip = ip;
        th.set_regs(&regs)?;
        th.set_sigmask(0)?;
        th.detach()?;
        debug!(pid, status, "zombie made");
        Ok(())
    }

    /// Lets every task run, all at once.
    pub fn let_go(&mut self) -> Result<()> {
        for p in self.procs.iter_mut() {
            for t in p.threads.drain(..) {
                t.detach()?;
            }
        }
        Ok(())
    }

    /// Kills every puppet and reaps them all. A sibling root is killed
    /// through its pidfd and left to its parent (criu's) to reap.
    pub fn destroy(&mut self) {
        for (i, p) in self.procs.iter().enumerate().rev() {
            match (&self.root_pidfd, i) {
                (Some(fd), 0) => {
                    if let Err(e) =
                        sys::pidfd_more::send_signal(std::os::fd::AsFd::as_fd(fd), libc::SIGKILL)
                    {
                        tracing::warn!(pid = p.host, "killing the sibling root: {e}");
                    }
                }
                _ => {
                    let _ = kill(Pid::from_raw(p.host), Signal::SIGKILL);
                }
            }
        }
        for p in self.procs.iter_mut() {
            p.threads.clear();
        }
        // Everything is our child or re-parented to us (subreaper), or a
        // sibling root, which waitpid(-1) does not report once detached.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
            ) {
                Err(nix::errno::Errno::ECHILD) => break,
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                    if std::time::Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => {}
            }
        }
        self.procs.clear();
    }
}

impl Drop for Puppets {
    fn drop(&mut self) {
        if !self.was_subreaper {
            let _ = nix::sys::prctl::set_child_subreaper(false);
        }
    }
}
