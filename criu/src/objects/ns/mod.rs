//! Namespaces: which ones a tree lives in, their ids in `ids-PID.img` and
//! `inventory.img`, and (for the namespaces the root does not share with
//! criu) their state, one module per kind.
//!
//! Dump: every task gets an id per namespace kind (the same namespace, the
//! same id). For each namespace of the root that is not criu's own, the kind
//! module writes its image (`utsns-ID.img`, `mountpoints-ID.img`, …). Trees
//! with nested namespaces (a task in another namespace than the root) are
//! refused before that task is seized ([`check_not_nested`]), except
//! pid namespaces nested in the tree's, which [`pid`] keeps, and cgroup
//! namespaces: these have no image, each task's namespace roots go with
//! its cgroup membership (not a namespace, but kept beside them) in
//! [`cgroup`], and any task may have one of its own.
//!
//! Restore: [`Plan::read`] says which namespaces the root puppet must be
//! born in (the kinds with an image, and a new pid namespace when the root
//! is PID 1); [`Plan::clone_flags`] is for clone3, and the kind modules fill
//! the new namespaces before any task runs (a time namespace is made then
//! too, see [`time`], and a cgroup namespace, see [`cgroup`]).
//! [`Plan::join_cgroup`] puts each process into its cgroups as it is made.

pub mod cgroup;
pub mod ipc;
pub mod join;
pub mod mnt;
pub mod net;
pub mod pid;
pub mod time;
pub mod user;
pub mod uts;

use std::os::fd::OwnedFd;
use std::path::Path;

use super::{Error, IdGen, Result};
use crate::image::pb;
use crate::remote::Tracee;

/// A kind of namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Pid,
    Mnt,
    Net,
    Ipc,
    Uts,
    Cgroup,
    Time,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::User,
        Kind::Pid,
        Kind::Mnt,
        Kind::Net,
        Kind::Ipc,
        Kind::Uts,
        Kind::Cgroup,
        Kind::Time,
    ];

    /// Its name under /proc/PID/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Pid => "pid",
            Kind::Mnt => "mnt",
            Kind::Net => "net",
            Kind::Ipc => "ipc",
            Kind::Uts => "uts",
            Kind::Cgroup => "cgroup",
            Kind::Time => "time",
        }
    }

    /// Its `CLONE_NEW*` flag.
    pub fn clone_flag(self) -> u64 {
        (match self {
            Kind::User => libc::CLONE_NEWUSER,
            Kind::Pid => libc::CLONE_NEWPID,
            Kind::Mnt => libc::CLONE_NEWNS,
            Kind::Net => libc::CLONE_NEWNET,
            Kind::Ipc => libc::CLONE_NEWIPC,
            Kind::Uts => libc::CLONE_NEWUTS,
            Kind::Cgroup => libc::CLONE_NEWCGROUP,
            Kind::Time => libc::CLONE_NEWTIME,
        }) as u64
    }
}

/// Parses the target of a /proc/PID/ns/ link: `pid:[4026531836]`.
pub fn parse_ns_link(kind: Kind, link: &str) -> Option<u64> {
    link.strip_prefix(kind.proc_name())?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The kind of the namespace file open at `fd` (None: not a namespace).
pub fn kind_of_fd(fd: std::os::fd::BorrowedFd) -> Option<Kind> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
    let link = link.to_str()?;
    Kind::ALL
        .into_iter()
        .find(|&k| parse_ns_link(k, link).is_some())
}

/// The inode of the `kind` namespace of `pid` (`"self"` allowed through
/// [`own_inode`]); None when the kernel has no such namespace.
pub fn inode(pid: i32, kind: Kind) -> Result<Option<u64>> {
    inode_at(&format!("/proc/{pid}/ns/{}", kind.proc_name()), pid, kind)
}

/// The inode of criu's own `kind` namespace.
pub fn own_inode(kind: Kind) -> Result<Option<u64>> {
    inode_at(&format!("/proc/self/ns/{}", kind.proc_name()), 0, kind)
}

fn inode_at(path: &str, pid: i32, kind: Kind) -> Result<Option<u64>> {
    match std::fs::read_link(path) {
        Ok(t) => {
            let t = t.to_string_lossy();
            parse_ns_link(kind, &t)
                .map(Some)
                .ok_or_else(|| Error::Mismatch {
                    what: format!(
                        "{path} points to {t:?}, not a {} namespace",
                        kind.proc_name()
                    ),
                })
        }
        // the kernel lacks this kind of namespace
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(source) => Err(Error::Io {
            pid,
            what: format!("reading {path}"),
            source,
        }),
    }
}

/// The kinds of namespace in which `pid` is not where criu is.
pub fn foreign(pid: i32) -> Result<Vec<Kind>> {
    let mut v = Vec::new();
    for k in Kind::ALL {
        let theirs = inode(pid, k)?;
        if theirs.is_some() && theirs != own_inode(k)? {
            v.push(k);
        }
    }
    Ok(v)
}

/// Ids of the namespaces seen during a dump: one per namespace, shared by
/// every task in it, from 1 up (in their own sequence, apart from the other
/// object ids).
#[derive(Debug, Default)]
pub struct NsIds {
    seen: Vec<(Kind, u64, u32)>,
    gen: IdGen,
    /// The root's namespaces: (kind, inode).
    root: Vec<(Kind, u64)>,
    /// The cgroup sets of the tasks.
    pub cgroups: cgroup::Sets,
}

impl NsIds {
    fn id_of(&mut self, kind: Kind, ino: u64) -> u32 {
        if let Some(&(_, _, id)) = self.seen.iter().find(|(k, i, _)| *k == kind && *i == ino) {
            return id;
        }
        let id = self.gen.next_id();
        self.seen.push((kind, ino, id));
        id
    }

    /// Fills the namespace ids of `pid` into `ids`. The first task given is
    /// the root; a later one in another namespace than the root's (nested
    /// namespaces) is refused, but for pid namespaces (see [`pid`]).
    pub fn fill(&mut self, pid: i32, ids: &mut pb::TaskKobjIdsEntry) -> Result<()> {
        let first = self.root.is_empty();
        for k in Kind::ALL {
            let Some(ino) = inode(pid, k)? else { continue };
            if first {
                self.root.push((k, ino));
            } else if k != Kind::Cgroup && k != Kind::Pid && !self.root.contains(&(k, ino)) {
                // (a cgroup namespace of its own is kept with the task's
                // cgroup set, see [`cgroup`]; a nested pid namespace with
                // the task's PIDs, see [`pid`])
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "lives in another {} namespace than the root of the tree (nested namespaces are not supported yet)",
                        k.proc_name()
                    ),
                });
            }
            let id = Some(self.id_of(k, ino));
            match k {
                Kind::User => ids.user_ns_id = id,
                Kind::Pid => ids.pid_ns_id = id,
                Kind::Mnt => ids.mnt_ns_id = id,
                Kind::Net => ids.net_ns_id = id,
                Kind::Ipc => ids.ipc_ns_id = id,
                Kind::Uts => ids.uts_ns_id = id,
                Kind::Cgroup => ids.cgroup_ns_id = id,
                Kind::Time => ids.time_ns_id = id,
            }
        }
        Ok(())
    }
}

/// The id of `kind` in `ids` (0 when absent).
pub fn id_in(ids: &pb::TaskKobjIdsEntry, kind: Kind) -> u32 {
    match kind {
        Kind::User => ids.user_ns_id,
        Kind::Pid => ids.pid_ns_id,
        Kind::Mnt => ids.mnt_ns_id,
        Kind::Net => ids.net_ns_id,
        Kind::Ipc => ids.ipc_ns_id,
        Kind::Uts => ids.uts_ns_id,
        Kind::Cgroup => ids.cgroup_ns_id,
        Kind::Time => ids.time_ns_id,
    }
    .unwrap_or(0)
}

/// The namespaces of a task: (kind, inode) for every kind the kernel has.
pub fn all_of(pid: i32) -> Result<Vec<(Kind, u64)>> {
    let mut v = Vec::new();
    for k in Kind::ALL {
        if let Some(ino) = inode(pid, k)? {
            v.push((k, ino));
        }
    }
    Ok(v)
}

/// Checks, before task `pid` of the tree is seized, that it lives in the
/// namespaces of the root (`root`, from [`all_of`]): nested namespaces are
/// refused, with the tree left as it was. A nested pid namespace is the
/// exception, checked against the parent (host PID `parent`) by
/// [`pid::check_nested`].
pub fn check_not_nested(pid: i32, root: &[(Kind, u64)], parent: i32) -> Result<()> {
    for (k, ino) in all_of(pid)? {
        // Cgroup namespaces may nest: each task's is kept with its set.
        if k == Kind::Cgroup || root.contains(&(k, ino)) || !root.iter().any(|&(rk, _)| rk == k) {
            continue;
        }
        if k == Kind::Pid {
            pid::check_nested(pid, parent)?;
            continue;
        }
        return Err(Error::Unsupported {
            pid,
            what: format!(
                "lives in another {} namespace than the root of the tree; nested namespaces are not supported yet",
                k.proc_name()
            ),
        });
    }
    Ok(())
}

/// Checks before anything is frozen that the namespaces of `root` can be
/// dumped: every kind not shared with criu must be one we handle.
pub fn check_root(root: i32) -> Result<Vec<Kind>> {
    let foreign = foreign(root)?;
    for &k in &foreign {
        if k == Kind::Pid {
            pid::check_root(root)?;
        }
    }
    Ok(foreign)
}

/// Dump half: the state of every namespace of `root` (host pid) that is not
/// criu's, into its image named by its id in `ids`; `ext_mounts` names
/// the external mounts (mount point → key).
pub fn dump(
    root: i32,
    ids: &pb::TaskKobjIdsEntry,
    dir: &Path,
    ext_mounts: &[mnt::ExtMount],
    ext_prop: mnt::ExtPropagation,
) -> Result<()> {
    let foreign = check_root(root)?;
    let has = |k: Kind| foreign.contains(&k);
    if has(Kind::User) {
        user::dump(root, id_in(ids, Kind::User), dir)?;
    }
    if has(Kind::Uts) {
        uts::dump(root, id_in(ids, Kind::Uts), dir)?;
    }
    if has(Kind::Ipc) {
        ipc::dump(root, id_in(ids, Kind::Ipc), dir)?;
    }
    if has(Kind::Net) {
        net::dump(root, id_in(ids, Kind::Net), dir)?;
    }
    if has(Kind::Time) {
        time::dump(root, id_in(ids, Kind::Time), dir)?;
    } else if inode(root, Kind::Time)?.is_some() {
        // As upstream: the clocks of a tree in criu's time namespace go
        // to timens-0.img (an upstream restore puts such a tree into a new
        // time namespace where they go on; ours leaves it in its own).
        time::dump(root, 0, dir)?;
    }
    if has(Kind::Mnt) {
        mnt::dump(root, id_in(ids, Kind::Mnt), dir, ext_mounts, ext_prop)?;
    }
    Ok(())
}

/// Opens /proc/PID/ns/KIND.
pub fn open_ns(pid: i32, kind: Kind) -> Result<OwnedFd> {
    let path = format!("/proc/{pid}/ns/{}", kind.proc_name());
    std::fs::File::open(&path)
        .map(OwnedFd::from)
        .map_err(|source| Error::Io {
            pid,
            what: format!("opening {path}"),
            source,
        })
}

/// Runs `f` on a short-lived thread of criu that has joined the `kinds`
/// namespaces of `pid` (not the user namespace: a thread cannot join one;
/// criu's capabilities reach into the namespaces of its descendants).
pub fn in_ns<T: Send>(pid: i32, kinds: &[Kind], f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    in_ns_as(pid, kinds, None, f)
}

/// [`in_ns`], with the helper thread's effective uid and gid switched to
/// `owner` after it joined (files owned by the root of a user namespace,
/// like the ipc sysctls, let only it write).
pub fn in_ns_as<T: Send>(
    pid: i32,
    kinds: &[Kind],
    owner: Option<(u32, u32)>,
    f: impl FnOnce() -> Result<T> + Send,
) -> Result<T> {
    let fds = kinds
        .iter()
        .map(|&k| open_ns(pid, k).map(|fd| (k, fd)))
        .collect::<Result<Vec<_>>>()?;
    std::thread::scope(|s| {
        s.spawn(move || {
            for (k, fd) in &fds {
                // The thread must not share its fs with the process for a
                // mount namespace; for the others nothing is needed.
                if *k == Kind::Mnt {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).map_err(|errno| {
                        Error::Sys {
                            pid,
                            what: "unshare(CLONE_FS) of a helper thread".into(),
                            errno,
                        }
                    })?;
                }
                nix::sched::setns(
                    fd,
                    nix::sched::CloneFlags::from_bits_retain(k.clone_flag() as i32),
                )
                .map_err(|errno| Error::Sys {
                    pid,
                    what: format!("joining the {} namespace", k.proc_name()),
                    errno,
                })?;
            }
            if let Some((uid, gid)) = owner {
                crate::sys::thread_creds::set_thread_effective_ids(uid, gid).map_err(|errno| {
                    Error::Sys {
                        pid,
                        what: format!("becoming {uid}:{gid} in a helper thread"),
                        errno,
                    }
                })?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Mismatch {
                what: format!("a helper thread in the namespaces of {pid} panicked"),
            })
        })
    })
}

/// What the images say of the root's namespaces, for the restore.
#[derive(Debug, Default)]
pub struct Plan {
    pub new: Vec<Kind>,
    pub user: Option<pb::UsernsEntry>,
    pub uts: Option<pb::UtsnsEntry>,
    pub ipc: Option<ipc::Images>,
    pub net: Option<net::Images>,
    pub time: Option<pb::TimensEntry>,
    /// The new pid namespace's `ns_last_pid`.
    pub pid: Option<pb::PidnsEntry>,
    pub mnt: Option<mnt::Images>,
    /// The cgroup sets of the tasks (`cgroup.img`).
    pub cgroup: Option<cgroup::Restore>,
    /// Existing namespaces the root is born in (`--join-ns`).
    pub joins: join::Joins,
}

impl Plan {
    /// Reads the namespace images of the root (ids `root_ids`; PID
    /// `root_pid` in its own pid namespace).
    pub fn read(
        dir: &Path,
        root_ids: Option<&pb::TaskKobjIdsEntry>,
        root_pid: i32,
    ) -> Result<Plan> {
        let mut p = Plan::default();
        if root_pid == 1 {
            p.new.push(Kind::Pid);
        }
        p.cgroup = cgroup::read_image(dir)?;
        if let Some(c) = p.cgroup.as_mut() {
            c.root_pid = root_pid;
            c.root_cgns = root_ids.and_then(|i| i.cgroup_ns_id).unwrap_or(0);
        }
        let Some(ids) = root_ids else { return Ok(p) };
        let id = |k| id_in(ids, k);
        p.user = user::read(dir, id(Kind::User))?;
        p.uts = uts::read(dir, id(Kind::Uts))?;
        p.ipc = ipc::read(dir, id(Kind::Ipc))?;
        p.net = net::read(dir, id(Kind::Net))?;
        p.time = time::read(dir, id(Kind::Time))?;
        if p.new.contains(&Kind::Pid) {
            p.pid = pid::read(dir, id(Kind::Pid))?;
        }
        p.mnt = mnt::read(dir, id(Kind::Mnt))?;
        for (k, there) in [
            (Kind::User, p.user.is_some()),
            (Kind::Uts, p.uts.is_some()),
            (Kind::Ipc, p.ipc.is_some()),
            (Kind::Net, p.net.is_some()),
            (Kind::Time, p.time.is_some()),
            (Kind::Mnt, p.mnt.is_some()),
        ] {
            if there {
                p.new.push(k);
            }
        }
        Ok(p)
    }

    /// `--join-ns`: the root is born in these namespaces, not in new
    /// ones, and nothing of the dumped ones is restored into them.
    pub fn join(&mut self, joins: join::Joins) {
        for k in joins.kinds() {
            self.new.retain(|&n| n != k);
            match k {
                Kind::Net => self.net = None,
                Kind::Uts => self.uts = None,
                Kind::Ipc => self.ipc = None,
                _ => {}
            }
        }
        self.joins = joins;
    }

    /// Puts puppet `t` (PID `pid` in the images), just born, into its
    /// cgroup namespace and the cgroups of its set `cg_set` (from its core
    /// image), before it makes any children.
    pub fn join_cgroup(&self, t: &mut Tracee, pid: i32, cg_set: Option<u32>) -> Result<()> {
        match (&self.cgroup, cg_set) {
            (Some(c), Some(id)) => c.enter(t, pid, id),
            _ => Ok(()),
        }
    }

    /// The clone3 flags of the root puppet. Not a new time namespace: one
    /// entered at birth has its offsets frozen; [`Plan::fill`] makes it.
    pub fn clone_flags(&self) -> u64 {
        self.new
            .iter()
            .filter(|&&k| k != Kind::Time)
            .fold(0, |f, k| f | k.clone_flag())
    }

    /// Right after the root puppet (host PID `host`) is born, before it
    /// does anything: the user namespace's maps.
    pub fn born(&self, host: i32) -> Result<()> {
        if let Some(u) = &self.user {
            user::restore(host, u)?;
        }
        Ok(())
    }

    /// The namespaces' state, made from criu (through a helper thread) or
    /// inside the root puppet `t` (host PID `host`) with remote syscalls.
    pub fn fill(&self, host: i32, t: &mut Tracee) -> Result<()> {
        // Through the criu's /proc the puppet still has.
        if let Some(e) = &self.pid {
            pid::restore(t, e)?;
        }
        // First the cgroup namespace: a cgroup file system mounted in the
        // new mount namespace shows the one it is mounted from.
        if let Some(c) = &self.cgroup {
            c.enter_root_ns(t)?;
        }
        if let Some(e) = &self.time {
            time::restore(t, host, e)?;
        }
        if let Some(m) = &self.mnt {
            mnt::restore(t, m, self.user.as_ref())?;
        }
        if let Some(u) = &self.uts {
            uts::restore(host, u)?;
        }
        if let Some(i) = &self.ipc {
            ipc::restore(host, i, self.user.as_ref().and_then(user::root_ids))?;
        }
        if let Some(n) = &self.net {
            net::restore(host, n)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_links() {
        assert_eq!(
            parse_ns_link(Kind::Pid, "pid:[4026531836]"),
            Some(4026531836)
        );
        assert_eq!(parse_ns_link(Kind::Mnt, "mnt:[7]"), Some(7));
        assert_eq!(parse_ns_link(Kind::Mnt, "pid:[7]"), None);
        assert_eq!(parse_ns_link(Kind::Net, "net:[x]"), None);
        assert_eq!(parse_ns_link(Kind::Net, "net:[12"), None);
    }

    #[test]
    fn ids_shared_per_namespace() {
        let mut n = NsIds::default();
        let mut a = pb::TaskKobjIdsEntry::default();
        n.fill(std::process::id() as i32, &mut a).unwrap();
        let mut b = pb::TaskKobjIdsEntry::default();
        n.fill(std::process::id() as i32, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.pid_ns_id.is_some() && a.mnt_ns_id.is_some());
        assert_ne!(a.pid_ns_id, a.mnt_ns_id);
    }

    #[test]
    fn criu_is_not_foreign_to_itself() {
        assert!(foreign(std::process::id() as i32).unwrap().is_empty());
    }

    #[test]
    fn plan_flags() {
        let p = Plan {
            new: vec![Kind::Pid, Kind::Uts, Kind::Time],
            ..Default::default()
        };
        assert_eq!(
            p.clone_flags(),
            (libc::CLONE_NEWPID | libc::CLONE_NEWUTS) as u64
        );
    }
}
