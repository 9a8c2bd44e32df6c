//! Finding the tree and stopping every thread of it.

use std::path::Path;

use super::{Error, Result};
use crate::objects::ns;
use crate::proc;
use crate::remote::{self, Regs, Tracee};

/// A stopped thread and what is needed to let it go again.
pub(super) struct Thread {
    pub tracee: Tracee,
    pub regs: Regs,
    pub sigmask: u64,
}

/// A process of the tree: its threads, leader first; none for a zombie.
pub(super) struct Proc {
    pub pid: i32,
    /// Its PIDs in the tree's pid namespace (what the images keep), and in
    /// the pid namespaces nested below it.
    pub inner: ns::pid::Inner,
    /// The tree's PID of a task in the pid namespace its children are born
    /// into, when that is not its own (see [`ns::pid::children_ns_task`]).
    pub children_ns: Option<i32>,
    /// The parent's PID in the tree's pid namespace, 0 for the root.
    pub inner_ppid: i32,
    pub threads: Vec<Thread>,
    /// Stopped by a job-control signal when found (it stays so).
    pub stopped: bool,
}

/// Waits until the killed thread `tid`, traced by criu, has exited (its
/// ptrace stops let go on the way), so that it is released to its parent;
/// gives up at `deadline` (with a warning: criu must not hang on it).
fn reap_traced(tid: i32, deadline: std::time::Instant) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(tid);
    let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
    while std::time::Instant::now() < deadline {
        match waitpid(pid, Some(flags)) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) | Err(_) => return,
            Ok(WaitStatus::StillAlive) => std::thread::sleep(std::time::Duration::from_millis(1)),
            Ok(_) => {
                let _ = nix::sys::ptrace::cont(pid, None);
            }
        }
    }
    tracing::warn!(
        tid,
        "a killed thread was not reported in time; its parent will see it when criu exits"
    );
}

/// The frozen tree, parents before children.
#[derive(Default)]
pub(super) struct Tree {
    pub procs: Vec<Proc>,
    /// The level of the `NSpid` lines that is the tree's own (see
    /// [`ns::pid::tree_level`]).
    pub level: usize,
}

fn list_dir_numbers(pid: i32, dir: &str) -> Result<Vec<i32>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::Task {
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

/// The children of every thread of `pid`.
fn children(pid: i32) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    for tid in list_dir_numbers(pid, &format!("/proc/{pid}/task"))? {
        let path = format!("/proc/{pid}/task/{tid}/children");
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok()),
            );
        }
    }
    Ok(out)
}

/// The namespaces of the tree must be ones criu can dump: the kinds it
/// handles, a pid namespace only from its init (see objects::ns).
fn check_namespaces(pid: i32) -> Result<()> {
    ns::check_root(pid)?;
    Ok(())
}

/// A child sharing the memory of `pid` (vfork, or clone with CLONE_VM)
/// cannot be dumped: a parent in vfork cannot even be stopped until its
/// child execs or exits. Checked before `pid` is seized, so the tree is
/// left as it was.
fn check_no_shared_vm(pid: i32, kids: &[i32]) -> Result<()> {
    for &child in kids {
        // A child gone meanwhile, or one kcmp may not look at, is judged
        // when it is frozen itself.
        if crate::sys::kcmp::same_vm(pid, child) != Ok(true) {
            continue;
        }
        let what = if state(pid)? == Some(proc::ProcState::DiskSleep) {
            format!(
                "waits in vfork for its child {child} (parent and child share one memory until the child calls exec or exits); criu cannot dump a tree in the middle of a vfork, try again later"
            )
        } else {
            format!(
                "shares its memory with its child {child} (clone with CLONE_VM); processes sharing memory cannot be dumped"
            )
        };
        return Err(Error::Task { pid, what });
    }
    Ok(())
}

fn state(pid: i32) -> Result<Option<proc::ProcState>> {
    let status = proc::read_status(pid).map_err(|_| Error::Task {
        pid,
        what: "no such process".into(),
    })?;
    Ok(status.state)
}

fn seize_thread(pid: i32, tid: i32) -> Result<Thread> {
    let tracee = Tracee::seize(tid, false).map_err(|e| match e {
        remote::Error::Sys {
            errno: nix::errno::Errno::EPERM,
            ..
        } => Error::Task {
            pid,
            what: format!(
                "thread {tid} cannot be traced (EPERM): is criu root, or is the task already traced?"
            ),
        },
        remote::Error::Sys {
            errno: nix::errno::Errno::ESRCH,
            ..
        } => Error::Task {
            pid,
            what: "no such process".into(),
        },
        e => e.into(),
    })?;
    let regs = *tracee.regs();
    let sigmask = match tracee.sigmask() {
        Ok(m) => m,
        Err(e) => {
            let _ = tracee.release(&regs, 0);
            return Err(e.into());
        }
    };
    let thread = Thread {
        tracee,
        regs,
        sigmask,
    };
    // Signals arriving from now on wait, queued, until the task runs again.
    thread.tracee.set_sigmask(!0)?;
    Ok(thread)
}

impl Tree {
    fn known(&self, pid: i32) -> bool {
        self.procs.iter().any(|p| p.pid == pid)
    }

    /// Stops every thread of every process of the tree of `root`, again and
    /// again until no new thread or child shows up.
    pub fn freeze(&mut self, root: i32) -> Result<()> {
        if !Path::new(&format!("/proc/{root}")).exists() {
            return Err(Error::Task {
                pid: root,
                what: "no such process".into(),
            });
        }
        check_namespaces(root)?;
        let root_ns = ns::all_of(root)?;
        self.level = ns::pid::tree_level(root)?;
        let mut todo = vec![(root, 0)];
        while let Some((pid, ppid)) = todo.pop() {
            if self.known(pid) {
                continue;
            }
            let state = state(pid)?;
            let zombie = state == Some(proc::ProcState::Zombie);
            if zombie && pid == root {
                return Err(Error::Task {
                    pid,
                    what: "is a zombie; there is nothing to dump".into(),
                });
            }
            if !zombie {
                ns::check_not_nested(pid, &root_ns, ppid)?;
            }
            let inner = ns::pid::inner_at(pid, self.level)?;
            let inner_ppid = self
                .procs
                .iter()
                .find(|p| p.pid == ppid)
                .map_or(0, |p| p.inner.pid);
            self.procs.push(Proc {
                pid,
                inner,
                inner_ppid,
                children_ns: None,
                threads: Vec::new(),
                stopped: state == Some(proc::ProcState::Stopped),
            });
            if zombie {
                continue;
            }
            check_no_shared_vm(pid, &children(pid)?)?;
            self.freeze_threads(pid)?;
            for child in children(pid)?.into_iter().rev() {
                todo.push((child, pid));
            }
        }
        // Parents before children, in the order they were found.
        let hosts: Vec<i32> = self.procs.iter().map(|p| p.pid).collect();
        for i in 0..self.procs.len() {
            if self.procs[i].threads.is_empty() {
                continue;
            }
            if let Some(t) = ns::pid::children_ns_task(self.procs[i].pid, &hosts)? {
                self.procs[i].children_ns =
                    self.procs.iter().find(|p| p.pid == t).map(|p| p.inner.pid);
            }
        }
        Ok(())
    }

    fn freeze_threads(&mut self, pid: i32) -> Result<()> {
        loop {
            let tids = list_dir_numbers(pid, &format!("/proc/{pid}/task"))?;
            let idx = self
                .procs
                .iter()
                .position(|p| p.pid == pid)
                .ok_or_else(|| Error::Task {
                    pid,
                    what: "lost while freezing".into(),
                })?;
            let mut added = false;
            // Leader first.
            let mut order: Vec<i32> = tids.iter().copied().filter(|&t| t == pid).collect();
            order.extend(tids.iter().copied().filter(|&t| t != pid));
            for tid in order {
                if self.procs[idx]
                    .threads
                    .iter()
                    .any(|t| t.tracee.pid() == tid)
                {
                    continue;
                }
                let t = seize_thread(pid, tid)?;
                self.procs[idx].threads.push(t);
                added = true;
            }
            if !added {
                return Ok(());
            }
        }
    }

    /// Lets every task go as it was found; returns the failures.
    pub fn release(self) -> Vec<(i32, remote::Error)> {
        let mut failed = Vec::new();
        for p in self.procs {
            for t in p.threads {
                let tid = t.tracee.pid();
                if let Err(e) = t.tracee.release(&t.regs, t.sigmask) {
                    failed.push((tid, e));
                }
            }
        }
        failed
    }

    /// Kills the tree after a successful dump.
    pub fn kill(self) {
        for p in self.procs.iter().filter(|p| !p.threads.is_empty()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // A traced task that dies is reported to its tracer first; its
        // parent learns of it only once criu has waited for it (a
        // long-lived `criu swrk` would otherwise keep the tree from its
        // parent). Children first: the init of a pid namespace dies only
        // when its children are reaped, which needs them released by criu.
        // In a process the leader goes last: it is reported only when its
        // threads are gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        for p in self.procs.iter().rev().filter(|p| !p.threads.is_empty()) {
            let mut tids: Vec<i32> = p.threads.iter().map(|t| t.tracee.pid()).collect();
            tids.sort_by_key(|&t| t == p.pid);
            for tid in tids {
                reap_traced(tid, deadline);
            }
        }
    }
}
