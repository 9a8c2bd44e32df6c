//! Layer 5: restore orchestration with puppets.
//!
//! Each task starts as a fork of criu with its old PID, seized at once, and
//! is remade one remote syscall at a time. The order is fixed, and matters:
//!
//! 1. **tree** ([`tree`]): the root puppet is a clone3 of criu with
//!    `set_tid`; every other process is made by a remote clone3 inside its
//!    real parent, so parentage is right from the start. A task that leads
//!    its session calls setsid before it forks its children (who inherit
//!    the session); process groups are joined once all tasks exist;
//!    zombies are made to exit with their status.
//! 2. per process ([`task`]): drop criu's rseq registration, map a scratch
//!    area where the task has nothing, close criu's fds; **memory**
//!    (criu's mappings out, vDSO/vvar moved to their old place, every
//!    mapping made and filled); **files** (made in criu, passed over a unix
//!    socket, received with a remote recvmsg, moved to their numbers);
//!    **fs**, signal dispositions, itimers, rlimits, the mm fields
//!    (PR_SET_MM_MAP); then the **threads** (remote clone3 with
//!    CLONE_THREAD and `set_tid` in the leader).
//! 3. per thread: rseq, robust list, clear_child_tid, sigaltstack, name,
//!    pdeath signal, then **creds** — after everything that needs root —
//!    then dumpable.
//! 4. the scratch areas go, every thread gets its registers, FPU state and
//!    signal mask, and all tasks are let go together.
//!
//! A restore that fails kills every puppet it made and reaps them all (criu
//! is their subreaper meanwhile): nothing is left behind. With
//! `--restore-sibling` the root is born a child of criu's parent (clone3
//! `CLONE_PARENT`): criu kills it through its pidfd and leaves the reaping
//! to that parent.

mod stats;
mod task;
mod tree;

use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use tracing::{debug, info};

use crate::image::{self, magic, pb};
use crate::objects::{self, files::Opened, mm};
use crate::proc;
use crate::remote;
use crate::scripts;

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
    #[error("{0}")]
    Usage(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// What `criu restore` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub images_dir: PathBuf,
    pub detach: bool,
    pub shell_job: bool,
    /// `--tcp-established`: established TCP connections may be restored.
    pub tcp_established: bool,
    /// `--tcp-close`: established TCP connections come back closed.
    pub tcp_close: bool,
    /// `--file-locks`: take the dumped file locks again.
    pub file_locks: bool,
    /// `--ext-unix-sk`: sockets connected outside the tree connect again.
    pub ext_unix_sk: bool,
    /// `--network-lock`: the method the dump locked the network with.
    pub network_lock: objects::files::netlock::Method,
    /// `--empty-ns`: namespaces (CLONE_NEW* bits) made new but left empty;
    /// only `CLONE_NEWNET` is known (its devices are not restored).
    pub empty_ns: u32,
    /// `--manage-cgroups`: what is done with the tasks' cgroups.
    pub cgroup_mode: objects::ns::cgroup::Mode,
    /// `--cgroup-root` (`cg_root`): where the root task's cgroups go.
    pub cgroup_roots: Vec<objects::ns::cgroup::NewRoot>,
    /// `--join-ns` (`join_ns`): existing namespaces the tree is restored
    /// into.
    pub join_ns: Vec<objects::ns::join::JoinNs>,
    /// `--restore-sibling` (`rst_sibling`): the root is born a child of
    /// criu's parent, not of criu (then criu cannot wait for it).
    pub sibling: bool,
    /// `--inherit-fd` (`inherit_fd`): files of the images that are not
    /// opened but given by criu's caller.
    pub inherit_fds: Vec<objects::files::InheritFd>,
    /// Where the outside ends of veths go (`--external veth[…]`).
    pub veths: Vec<objects::ns::net::VethOutside>,
    /// `--root`: the directory a tree with a root mount of its own (a
    /// container) is restored into.
    pub root: Option<PathBuf>,
    /// `--external mnt[KEY]:PATH` (RPC `ext_mnt`): the host paths of the
    /// external mounts.
    pub ext_mounts: Vec<objects::ns::mnt::ExtMount>,
    /// `--ext-sharing`, `--ext-masters`: external mounts keep the
    /// propagation their copies bring from outside, as dumped.
    pub ext_prop: objects::ns::mnt::ExtPropagation,
    /// `--file-validation`: None compares whatever the dump recorded
    /// (size, build-ids); `filesize` only sizes.
    pub file_validation: Option<objects::files::reg::Validation>,
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

/// `task_state` of a zombie in the images.
const TASK_DEAD: u32 = 2;
/// `task_state` of a task stopped by a job-control signal.
const TASK_STOPPED: u32 = 3;

/// Everything the images say of one process.
pub(crate) struct TaskImages {
    pub pstree: pb::PstreeEntry,
    /// The leader's core, then the other threads' in pstree order.
    pub cores: Vec<pb::CoreEntry>,
    /// None for a zombie.
    pub live: Option<LiveImages>,
}

pub(crate) struct LiveImages {
    pub mm: pb::MmEntry,
    pub fs: pb::FsEntry,
    pub fdinfo: Vec<pb::FdinfoEntry>,
    /// The init of a pid namespace nested in the tree's: that namespace's
    /// `pidns-ID.img`.
    pub pidns: Option<pb::PidnsEntry>,
}

impl TaskImages {
    pub fn pid(&self) -> i32 {
        self.pstree.pid as i32
    }

    /// How many pid namespaces below the tree's this process lives in.
    pub fn depth(&self) -> usize {
        self.pstree.nested_pids.len()
    }

    /// Its PID in level `level` of the tree's pid namespaces (0: the
    /// tree's own, then the nested ones); None below its own.
    pub fn pid_at(&self, level: usize) -> Option<i32> {
        match level {
            0 => Some(self.pid()),
            l => self.pstree.nested_pids.get(l - 1).map(|&p| p as i32),
        }
    }

    /// Its PID in its own pid namespace, as it sees itself.
    pub fn own_pid(&self) -> i32 {
        self.pid_at(self.depth()).unwrap_or_else(|| self.pid())
    }

    /// The `set_tid` array of clone3 for the process: its PIDs from its
    /// own pid namespace up to the tree's.
    pub fn set_pid(&self) -> Vec<i32> {
        set_tid_of(self.pid(), &self.pstree.nested_pids)
    }

    /// The `set_tid` array of clone3 for thread `i` of `pstree.threads`
    /// (not the leader): its TIDs from its own pid namespace up to the
    /// tree's.
    pub fn set_tid(&self, i: usize) -> Result<Vec<i32>> {
        let n = self.depth();
        let tid = self.pstree.threads.get(i).copied().unwrap_or_default();
        let nested = self.pstree.nested_tids.get(i * n..(i + 1) * n).ok_or_else(|| {
            Error::Images(format!(
                "pstree.img: task {} has {n} nested pid levels but no nested TIDs for its thread {tid}",
                self.pid(),
            ))
        })?;
        Ok(set_tid_of(tid as i32, nested))
    }

    /// The leader's task core (process-wide state).
    pub fn tc(&self) -> Result<&pb::TaskCoreEntry> {
        self.cores[0]
            .tc
            .as_ref()
            .ok_or_else(|| Error::Images(format!("core-{}.img has no task core", self.pid())))
    }
}

/// A `set_tid` array: the IDs of the nested levels, innermost first, then
/// the tree's.
fn set_tid_of(tid: i32, nested: &[u32]) -> Vec<i32> {
    nested
        .iter()
        .rev()
        .map(|&t| t as i32)
        .chain(std::iter::once(tid))
        .collect()
}

fn load_task(dir: &Path, pstree: pb::PstreeEntry) -> Result<TaskImages> {
    let pid = pstree.pid as i32;
    let leader: pb::CoreEntry = image::read_one(dir, &format!("core-{pid}.img"), magic::CORE)?;
    if leader.mtype != pb::core_entry::March::X8664 as i32 {
        return Err(Error::Images(format!(
            "core-{pid}.img is for architecture {}, not x86_64",
            leader.mtype
        )));
    }
    let zombie = leader
        .tc
        .as_ref()
        .is_some_and(|tc| tc.task_state == TASK_DEAD);
    let mut cores = vec![leader];
    if zombie {
        return Ok(TaskImages {
            pstree,
            cores,
            live: None,
        });
    }
    for &tid in pstree.threads.iter().filter(|&&t| t as i32 != pid) {
        cores.push(image::read_one(
            dir,
            &format!("core-{tid}.img"),
            magic::CORE,
        )?);
    }
    let ids: pb::TaskKobjIdsEntry = image::read_one(dir, &format!("ids-{pid}.img"), magic::IDS)?;
    let live = LiveImages {
        mm: image::read_one(dir, &mm::mm_file(pid), magic::MM)?,
        fs: image::read_one(dir, &format!("fs-{pid}.img"), magic::FS)?,
        fdinfo: image::read_image(dir, &format!("fdinfo-{}.img", ids.files_id), magic::FDINFO)?,
        pidns: match ids.pid_ns_id {
            Some(id) if pstree.nested_pids.last() == Some(&1) => objects::ns::pid::read(dir, id)?,
            _ => None,
        },
    };
    Ok(TaskImages {
        pstree,
        cores,
        live: Some(live),
    })
}

/// Checks the shape of the tree: one root, every parent before its
/// children.
fn check_tree(tasks: &[TaskImages]) -> Result<()> {
    let root = tasks
        .first()
        .ok_or_else(|| Error::Images("pstree.img has no tasks".into()))?;
    if root.pstree.ppid != 0 {
        return Err(Error::Images(format!(
            "pstree.img: the first task {} has a parent ({})",
            root.pid(),
            root.pstree.ppid
        )));
    }
    if root.live.is_none() {
        return Err(Error::Images(format!(
            "pstree.img: the root {} is a zombie",
            root.pid()
        )));
    }
    for (i, t) in tasks.iter().enumerate().skip(1) {
        let parent = tasks[..i].iter().find(|p| p.pstree.pid == t.pstree.ppid);
        match parent {
            Some(p) if p.live.is_some() => {}
            _ => {
                return Err(Error::Images(format!(
                    "pstree.img: task {} comes before (or without) its parent {}",
                    t.pid(),
                    t.pstree.ppid
                )))
            }
        }
    }
    Ok(())
}

/// Restores the tree in `opts.images_dir`.
///
/// `on_running` is told the root's PID once the whole tree runs (for
/// `--pidfile`), before criu waits for it.
pub fn restore(
    opts: &RestoreOpts,
    on_running: &dyn Fn(i32) -> std::io::Result<()>,
) -> Result<Outcome> {
    restore_with(opts, on_running, &scripts::Silent)
}

/// [`restore`], telling `notify` of each action point (see [`scripts`]).
pub fn restore_with(
    opts: &RestoreOpts,
    on_running: &dyn Fn(i32) -> std::io::Result<()>,
    notify: &dyn scripts::Notify,
) -> Result<Outcome> {
    let started = std::time::Instant::now();
    if opts.sibling && !opts.detach {
        return Err(Error::Usage(
            "--restore-sibling needs --restore-detached: criu cannot wait for a task that is not its child".into(),
        ));
    }
    let dir = &opts.images_dir;
    let inventory: pb::InventoryEntry = image::read_one(dir, "inventory.img", magic::INVENTORY)?;
    if inventory.img_version != 2 {
        return Err(Error::Images(format!(
            "inventory.img has image version {}, only 2 is known",
            inventory.img_version
        )));
    }
    let pstree: Vec<pb::PstreeEntry> = image::read_image(dir, "pstree.img", magic::PSTREE)?;
    let mut files: Vec<pb::FileEntry> = image::read_image(dir, "files.img", magic::FILES)?;
    if opts.file_validation == Some(objects::files::reg::Validation::FileSize) {
        // Sizes only: mapped files and the executables too.
        objects::files::reg::forget_build_ids(&mut files);
    }
    let files = files;
    let tasks = pstree
        .into_iter()
        .map(|e| load_task(dir, e))
        .collect::<Result<Vec<_>>>()?;
    check_tree(&tasks)?;
    let root = &tasks[0].pstree;
    if (root.sid != root.pid || root.pgid != root.pid) && !opts.shell_job {
        return Err(Error::Images(format!(
            "task {} was dumped as a shell job (its session {} or group {} is led from outside the tree): restore it with -j/--shell-job",
            root.pid, root.sid, root.pgid
        )));
    }

    let root = tasks[0].pid();
    let tell = |a: scripts::Action, pid: i32| {
        notify.notify(a, pid).map_err(|what| Error::Task {
            pid,
            what: format!("{a} notification: {what}"),
        })
    };
    tell(scripts::Action::PreRestore, root)?;
    let joins = objects::ns::join::Joins::open(&opts.join_ns)?;
    let mut plan = objects::ns::Plan::read(dir, inventory.root_ids.as_ref(), root)?;
    plan.join(joins);
    if let Some(c) = plan.cgroup.as_mut() {
        c.mode = opts.cgroup_mode;
        c.rewrite_roots(tree::cg_set_of(&tasks[0]).unwrap_or(0), &opts.cgroup_roots);
    }
    if opts.empty_ns & libc::CLONE_NEWNET as u32 != 0 {
        if let Some(n) = plan.net.as_mut() {
            debug!("empty_ns: the network namespace is made without its devices");
            n.devices.clear();
        }
    }
    if let Some(n) = plan.net.as_mut() {
        n.veths = opts.veths.clone();
    }
    if let Some(m) = plan.mnt.as_mut() {
        m.configure(opts.root.as_deref(), &opts.ext_mounts)?;
        m.prop = opts.ext_prop;
    }
    info!(root, tasks = tasks.len(), namespaces = ?plan.new, "restoring");
    let chan = task::FdChannel::new(&tasks)?;
    let mut puppets = tree::Puppets::new(opts.sibling)?;
    let mut opened = Opened::new(dir);
    opened.set_sk_opts(opts.tcp_established, opts.tcp_close);
    opened.set_ext_unix_sk(opts.ext_unix_sk);
    opened.set_network_lock(opts.network_lock, inventory.dump_criu_run_id.clone());
    opened.file_locks = opts.file_locks;
    opened.file_validation = opts.file_validation;
    opened.set_inherited(&opts.inherit_fds);
    let mut forking = std::time::Duration::ZERO;
    let result = (|| -> Result<()> {
        let t0 = std::time::Instant::now();
        puppets.create(&tasks, &plan, &mut |t, pid| {
            task::session_ctty(t, pid, &mut opened, &chan)
        })?;
        opened.set_host_pids(
            puppets.host_of(root).unwrap_or(root),
            tasks
                .iter()
                .map(|t| (t.pid(), puppets.host_of(t.pid()).unwrap_or(t.pid()))),
        )?;
        forking = t0.elapsed();
        if !plan.new.is_empty() {
            let host = puppets.host_of(root).unwrap_or(root);
            tell(scripts::Action::SetupNamespaces, host)?;
            tell(scripts::Action::PostSetupNamespaces, host)?;
        }
        // The files, made in criu once the namespaces exist: sockets in the
        // tree's network namespace.
        // (fds work: the image dir for extra images; each task's fd table
        // for its epoll sets' targets)
        let root_host = puppets.host_of(root).unwrap_or(root);
        let _net = if plan.new.contains(&objects::ns::Kind::Net) {
            Some(objects::ns::net::NetGuard::enter(root_host)?)
        } else {
            None
        };
        for t in &tasks {
            if let Some(l) = &t.live {
                opened.set_task(t.pid(), &l.fdinfo);
            }
            for fi in t.live.iter().flat_map(|l| &l.fdinfo) {
                opened.get(&files, fi.id)?;
            }
        }
        drop(_net);
        // Every file exists: established connections may leave repair mode.
        opened.release_tcp()?;
        task::restore_all(&mut puppets, dir, &tasks, &files, &mut opened, &chan)?;
        let host = puppets.host_of(root).unwrap_or(root);
        tell(scripts::Action::PostRestore, host)?;
        if plan.new.contains(&objects::ns::Kind::Net) {
            tell(scripts::Action::NetworkUnlock, host)?;
        }
        if let Err(e) = tell(scripts::Action::PreResume, host) {
            tracing::warn!("{e}");
        }
        puppets.let_go()?;
        opened.remove_link_remaps();
        Ok(())
    })();
    if let Err(e) = result {
        puppets.destroy();
        return Err(e);
    }
    debug!(root, "restored tree let go");
    let host = |pid: i32| puppets.host_of(pid).unwrap_or(pid);
    // Tasks that were stopped stop again, as they were.
    for t in tasks
        .iter()
        .filter(|t| t.tc().is_ok_and(|tc| tc.task_state == TASK_STOPPED))
    {
        let sig = t
            .tc()
            .ok()
            .and_then(|tc| tc.stop_signo)
            .filter(|&s| s != 0)
            .unwrap_or(libc::SIGSTOP as u32);
        let sig = nix::sys::signal::Signal::try_from(sig as i32)
            .unwrap_or(nix::sys::signal::Signal::SIGSTOP);
        let pid = host(t.pid());
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        // Only done once the task has taken the signal: it may not have run
        // yet, and whoever looks next must see it stopped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while proc::read_stat(pid).is_ok_and(|s| s.state != proc::ProcState::Stopped)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    let root = host(root);
    if let Err(e) = tell(scripts::Action::PostResume, root) {
        tracing::warn!("{e}");
    }
    stats::write(dir, forking, started.elapsed(), &tasks);
    on_running(root).map_err(|e| Error::Task {
        pid: root,
        what: format!("writing the pid file: {e}"),
    })?;

    if opts.detach {
        return Ok(Outcome::Detached(root));
    }
    loop {
        match waitpid(Pid::from_raw(root), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Outcome::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Outcome::Killed(sig as i32)),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Task {
                    pid: root,
                    what: format!("waiting for the restored task: {e}"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(pstree: pb::PstreeEntry) -> TaskImages {
        TaskImages {
            pstree,
            cores: Vec::new(),
            live: None,
        }
    }

    #[test]
    fn set_tid_is_innermost_first() {
        let t = task(pb::PstreeEntry {
            pid: 900,
            threads: vec![900, 901],
            nested_pids: vec![40, 1],
            nested_tids: vec![40, 1, 41, 2],
            ..Default::default()
        });
        assert_eq!(t.depth(), 2);
        assert_eq!(t.own_pid(), 1);
        assert_eq!(t.pid_at(0), Some(900));
        assert_eq!(t.pid_at(1), Some(40));
        assert_eq!(t.pid_at(3), None);
        assert_eq!(t.set_pid(), vec![1, 40, 900]);
        assert_eq!(t.set_tid(1).unwrap(), vec![2, 41, 901]);
    }

    #[test]
    fn a_task_of_the_trees_namespace_has_one_level() {
        let t = task(pb::PstreeEntry {
            pid: 7,
            threads: vec![7, 8],
            ..Default::default()
        });
        assert_eq!(t.own_pid(), 7);
        assert_eq!(t.set_pid(), vec![7]);
        assert_eq!(t.set_tid(1).unwrap(), vec![8]);
    }

    #[test]
    fn missing_nested_tids_are_an_image_error() {
        let t = task(pb::PstreeEntry {
            pid: 900,
            threads: vec![900, 901],
            nested_pids: vec![1],
            nested_tids: vec![1],
            ..Default::default()
        });
        let e = t.set_tid(1).unwrap_err().to_string();
        assert!(e.contains("901"), "{e}");
    }
}
