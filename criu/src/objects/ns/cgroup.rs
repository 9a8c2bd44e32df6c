//! Cgroup membership: which cgroups each task is in, as upstream keeps it.
//!
//! Dump: every thread's `/proc/PID/task/TID/cgroup` is a cgroup set (one
//! member per hierarchy: its controllers — empty for cgroup v2 — and its
//! path). The set criu itself is in is id 1, the others count up from 2;
//! core images carry the ids (`cg_set`), and `cgroup.img` lists every set
//! other than criu's (none at all when the whole tree lives where criu
//! does, as upstream). With them go, per hierarchy, the directories of
//! those cgroups, of the cgroups below them and of those above them up to
//! criu's own (not criu's nor any above it: they are the caller's), as
//! upstream's tree of `cgroup_dir_entry`, each with its mode and owner and
//! the properties criu-rs keeps (see [`prop_names`]: upstream's v1 lists,
//! for v2 the global ones and those of each enabled controller).
//!
//! Restore: first the directories, as the `--manage-cgroups` mode says
//! ([`Mode`], [`Restore::prepare`]); then each process is put back into the
//! cgroups of its set, by writing its PID to `cgroup.procs` under the
//! mount of each hierarchy in criu's mount namespace. A cgroup of a set
//! that is still missing is left out with a warning in soft mode (images
//! without directories), made in full and strict mode, an error in the
//! others.
//!
//! Cgroup namespaces (any task may have its own, nested or not): the
//! paths are the full ones (criu reads them from its own cgroup
//! namespace), and every member of a task in another cgroup namespace
//! than criu's carries the length of the path of that namespace's root
//! (`cgns_prefix`, as upstream; a root where criu's is, `/`, is kept as 1
//! so that the namespace is not taken for criu's). The roots are found
//! once per namespace by reading a task's cgroup file from a helper thread
//! that joined its cgroup namespace: the path seen there is the full one
//! with the root cut off. Each task's `cgroup_ns_id` (ids image) says
//! which tasks share one.
//!
//! At restore the root puppet is moved into its namespace's roots and
//! unshares one there before its mount namespace is filled
//! ([`Restore::enter_root_ns`]). Every other puppet, just born in its
//! parent's, is put into its own before it makes children
//! ([`Restore::enter`]): nothing to do when it is the parent's; the first
//! task of a namespace moves into the roots and unshares, the others join
//! it with `setns` on a pidfd of that first task.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::Result;
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::proc;
use crate::remote::Tracee;

const FILE: &str = "cgroup.img";

/// The set criu itself is in (upstream's first set).
pub const CRIU_SET: u32 = 1;

/// One membership: hierarchy (`cpu,cpuacct`, `name=systemd`, or empty for
/// cgroup v2) and path in it (`/a/b`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Member {
    pub name: String,
    pub path: String,
    /// Length of the path of the task's cgroup namespace root in this
    /// hierarchy, when that root is not criu's.
    pub cgns_prefix: Option<u32>,
}

/// Parses a /proc/PID/cgroup text (`ID:CONTROLLERS:PATH` lines), sorted by
/// hierarchy name as upstream sorts them.
pub fn parse(text: &str) -> Option<Vec<Member>> {
    let mut v = Vec::new();
    for l in text.lines().filter(|l| !l.is_empty()) {
        let (_, rest) = l.split_once(':')?;
        let (name, path) = rest.split_once(':')?;
        v.push(Member {
            name: name.to_owned(),
            path: path.to_owned(),
            cgns_prefix: None,
        });
    }
    v.sort();
    Some(v)
}

fn read(pid: i32, path: &str) -> Result<Vec<Member>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        pid,
        what: format!("reading {path}"),
        source,
    })?;
    parse(&text).ok_or_else(|| Error::Mismatch {
        what: format!("{path}: cannot parse {text:?}"),
    })
}

/// `path` is `root` or below it.
fn is_below(path: &str, root: &str) -> bool {
    root == "/"
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The roots of a cgroup namespace, per hierarchy, from the paths of one
/// task as criu sees them (`outer`, full paths) and as the task sees them
/// from inside its namespace (`inner`). Equal paths mean the root is
/// criu's own (`/`): the namespace is another one all the same, and the
/// root is kept so that the restore makes it.
pub fn ns_roots(
    outer: &[Member],
    inner: &[Member],
) -> std::result::Result<Vec<(String, String)>, String> {
    let mut v = Vec::new();
    for o in outer {
        let Some(i) = inner.iter().find(|i| i.name == o.name) else {
            continue;
        };
        if i.path == o.path {
            v.push((o.name.clone(), "/".to_owned()));
            continue;
        }
        if i.path == "/.." || i.path.starts_with("/../") {
            return Err(format!(
                "hierarchy {:?}: the task is in {} outside the root of its cgroup namespace ({})",
                o.name, o.path, i.path
            ));
        }
        let root = if i.path == "/" {
            Some(o.path.as_str())
        } else {
            o.path
                .strip_suffix(i.path.as_str())
                .filter(|r| r.is_empty() || !r.ends_with('/'))
        };
        match root {
            Some(r) if !r.is_empty() && r != "/" => v.push((o.name.clone(), r.to_owned())),
            _ => {
                return Err(format!(
                    "hierarchy {:?}: {} seen from inside the cgroup namespace does not end {}",
                    o.name, i.path, o.path
                ))
            }
        }
    }
    Ok(v)
}

/// Properties of a cgroup v1 hierarchy kept for every controller.
const V1_GLOBAL: &[&str] = &["cgroup.clone_children", "notify_on_release"];
/// Properties of a cgroup v2 directory kept whatever it enables
/// (`cgroup.freeze` is not: a tree dumped frozen would come back frozen).
const V2_GLOBAL: &[&str] = &[
    "cgroup.subtree_control",
    "cgroup.max.descendants",
    "cgroup.max.depth",
    "cgroup.type",
];

/// The properties of v1 controller `ctl` that are kept, in the order they
/// are set back (limits before the ones that depend on them).
fn v1_props(ctl: &str) -> &'static [&'static str] {
    match ctl {
        "cpu" => &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.rt_period_us",
            "cpu.rt_runtime_us",
        ],
        "memory" => &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.swappiness",
            "memory.soft_limit_in_bytes",
            "memory.move_charge_at_immigrate",
            "memory.use_hierarchy",
        ],
        "cpuset" => &[
            "cpuset.cpus",
            "cpuset.mems",
            "cpuset.memory_migrate",
            "cpuset.cpu_exclusive",
            "cpuset.mem_exclusive",
            "cpuset.mem_hardwall",
            "cpuset.memory_spread_page",
            "cpuset.memory_spread_slab",
            "cpuset.sched_load_balance",
            "cpuset.sched_relax_domain_level",
        ],
        "blkio" => &["blkio.weight"],
        "net_cls" => &["net_cls.classid"],
        "net_prio" => &["net_prio.ifpriomap"],
        "pids" => &["pids.max"],
        _ => &[],
    }
}

/// The properties of v2 controller `ctl` (enabled in a directory) that
/// are kept.
fn v2_props(ctl: &str) -> &'static [&'static str] {
    match ctl {
        "cpu" => &["cpu.weight", "cpu.max"],
        "cpuset" => &["cpuset.cpus", "cpuset.mems"],
        "memory" => &[
            "memory.min",
            "memory.low",
            "memory.high",
            "memory.max",
            "memory.swap.max",
        ],
        "pids" => &["pids.max"],
        "io" => &["io.weight"],
        _ => &[],
    }
}

/// The names of the properties kept for a directory of hierarchy `name`
/// (`cpu,cpuacct`, or empty for v2, where `controllers` is the text of
/// the directory's `cgroup.controllers`).
pub fn prop_names(name: &str, controllers: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    if name.is_empty() {
        v.extend(V2_GLOBAL);
        for c in controllers.split_whitespace() {
            v.extend(v2_props(c));
        }
    } else {
        v.extend(V1_GLOBAL);
        for c in name.split(',') {
            v.extend(v1_props(c));
        }
    }
    v
}

fn perms_of(path: &Path) -> Option<pb::CgroupPerms> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(pb::CgroupPerms {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
    })
}

/// Reads the kept properties of cgroup directory `dir` of hierarchy
/// `name` (those the kernel does not show are left out).
fn read_props(dir: &Path, name: &str) -> Vec<pb::CgroupPropEntry> {
    let controllers = if name.is_empty() {
        std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default()
    } else {
        String::new()
    };
    prop_names(name, &controllers)
        .into_iter()
        .filter_map(|p| {
            let file = dir.join(p);
            let value = std::fs::read_to_string(&file).ok()?;
            Some(pb::CgroupPropEntry {
                name: p.to_owned(),
                value: value.trim_end_matches('\n').to_owned(),
                perms: perms_of(&file),
            })
        })
        .collect()
}

/// Every cgroup directory below `dir` (path `path` in its hierarchy),
/// `dir` first, parents before children.
fn walk(dir: &Path, path: &str, out: &mut Vec<String>) -> Result<()> {
    out.push(path.to_owned());
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        pid: 0,
        what: format!("listing cgroup directory {}", dir.display()),
        source,
    })?;
    let mut subs: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    subs.sort();
    for s in subs {
        let child = format!("{}/{s}", path.trim_end_matches('/'));
        walk(&dir.join(&s), &child, out)?;
    }
    Ok(())
}

/// The directory entries (upstream's tree: a head's name is its path
/// without the leading `/`, a child's its last component) of `paths`
/// (sorted, parents before children) in hierarchy `name`.
fn dir_tree(
    mounts: &[proc::MountInfo],
    name: &str,
    paths: &[String],
    parent: Option<&str>,
) -> Vec<pb::CgroupDirEntry> {
    let direct = |p: &str| -> bool {
        match parent {
            Some(par) => p
                .strip_prefix(par.trim_end_matches('/'))
                .and_then(|r| r.strip_prefix('/'))
                .is_some_and(|r| !r.is_empty() && !r.contains('/')),
            // a head: no other path is its parent
            None => !paths
                .iter()
                .any(|q| q != p && is_below(p, q) && q.as_str() != "/"),
        }
    };
    paths
        .iter()
        .filter(|p| direct(p))
        .map(|p| {
            let dir = dir_of(mounts, name, p);
            let dir_name = match parent {
                Some(_) => p.rsplit('/').next().unwrap_or_default().to_owned(),
                None => p.trim_start_matches('/').to_owned(),
            };
            pb::CgroupDirEntry {
                dir_name,
                children: dir_tree(mounts, name, paths, Some(p)),
                properties: dir
                    .as_deref()
                    .map(|d| read_props(d, name))
                    .unwrap_or_default(),
                dir_perms: dir.as_deref().and_then(perms_of),
            }
        })
        .collect()
}

/// A cgroup directory of the images, with its full path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgDir {
    /// The hierarchy (`cpu,cpuacct`, or empty for v2).
    pub name: String,
    pub path: String,
    pub props: Vec<(String, String)>,
    pub perms: Option<pb::CgroupPerms>,
}

/// The directories of `cgroup.img`'s controllers, parents first.
pub fn flatten(controllers: &[pb::CgControllerEntry]) -> Vec<CgDir> {
    fn go(name: &str, parent: &str, d: &pb::CgroupDirEntry, out: &mut Vec<CgDir>) {
        let rel = d.dir_name.trim_matches('/');
        let path = if rel.is_empty() {
            parent.to_owned()
        } else {
            format!("{}/{rel}", parent.trim_end_matches('/'))
        };
        out.push(CgDir {
            name: name.to_owned(),
            path: path.clone(),
            props: d
                .properties
                .iter()
                .map(|p| (p.name.clone(), p.value.clone()))
                .collect(),
            perms: d.dir_perms,
        });
        for c in &d.children {
            go(name, &path, c, out);
        }
    }
    let mut out = Vec::new();
    for c in controllers {
        let name = c.cnames.join(",");
        for d in &c.dirs {
            go(&name, "/", d, &mut out);
        }
    }
    out
}

/// The cgroup sets seen during a dump.
#[derive(Debug, Default)]
pub struct Sets {
    criu: Option<Vec<Member>>,
    /// The inode of criu's cgroup namespace.
    criu_ns: Option<u64>,
    /// Sets other than criu's, with their ids (2 up).
    others: Vec<(u32, Vec<Member>)>,
    /// The roots (hierarchy, path) of every cgroup namespace met that is
    /// not criu's, by inode.
    ns_roots: Vec<(u64, Vec<(String, String)>)>,
}

impl Sets {
    /// The roots of the cgroup namespace `ino` of thread `tid` of `pid`,
    /// found once per namespace by reading the thread's cgroup file from
    /// a helper thread that joined it: the path seen there is the full
    /// one with the root cut off.
    fn roots_of(&mut self, pid: i32, tid: i32, ino: u64) -> Result<&[(String, String)]> {
        let at = match self.ns_roots.iter().position(|(i, _)| *i == ino) {
            Some(at) => at,
            None => {
                let path = format!("/proc/{pid}/task/{tid}/cgroup");
                let outer = read(pid, &path)?;
                let inner = super::in_ns(tid, &[super::Kind::Cgroup], || read(pid, &path))?;
                let roots = ns_roots(&outer, &inner).map_err(|what| Error::Unsupported {
                    pid,
                    what: format!("its cgroup namespace cannot be dumped: {what}"),
                })?;
                debug!(pid, tid, ino, ?roots, "cgroup namespace roots");
                self.ns_roots.push((ino, roots));
                self.ns_roots.len() - 1
            }
        };
        Ok(&self.ns_roots[at].1)
    }

    /// Marks the members of `set` (of task `pid`) below the roots of its
    /// cgroup namespace.
    fn mark_ns_roots(pid: i32, roots: &[(String, String)], set: &mut [Member]) -> Result<()> {
        for m in set.iter_mut() {
            let Some((_, root)) = roots.iter().find(|(n, _)| *n == m.name) else {
                continue;
            };
            if !is_below(&m.path, root) {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "is in cgroup {} (hierarchy {:?}), outside the root {root} of its cgroup namespace",
                        m.path, m.name
                    ),
                });
            }
            m.cgns_prefix = Some(root.len() as u32);
        }
        Ok(())
    }

    /// The id of the cgroup set of thread `tid` (host ids) of `pid`.
    pub fn set_of(&mut self, pid: i32, tid: i32) -> Result<u32> {
        if self.criu.is_none() {
            self.criu = Some(read(0, "/proc/self/cgroup")?);
            self.criu_ns = super::own_inode(super::Kind::Cgroup)?;
        }
        let mut theirs = read(pid, &format!("/proc/{pid}/task/{tid}/cgroup"))?;
        let ns = super::inode_at(
            &format!("/proc/{pid}/task/{tid}/ns/cgroup"),
            pid,
            super::Kind::Cgroup,
        )?;
        if let Some(ino) = ns.filter(|&i| Some(i) != self.criu_ns) {
            let roots = self.roots_of(pid, tid, ino)?.to_vec();
            Self::mark_ns_roots(pid, &roots, &mut theirs)?;
        }
        if self.criu.as_ref() == Some(&theirs) {
            return Ok(CRIU_SET);
        }
        if let Some((id, _)) = self.others.iter().find(|(_, m)| *m == theirs) {
            return Ok(*id);
        }
        let id = CRIU_SET + 1 + self.others.len() as u32;
        self.others.push((id, theirs));
        Ok(id)
    }

    /// What `cgroup.img` holds, or None when every task is where criu is.
    pub fn entry(&self) -> Option<pb::CgroupEntry> {
        if self.others.is_empty() {
            return None;
        }
        let sets = self
            .others
            .iter()
            .map(|(id, members)| pb::CgSetEntry {
                id: *id,
                ctls: members
                    .iter()
                    .map(|m| pb::CgMemberEntry {
                        name: m.name.clone(),
                        path: m.path.clone(),
                        cgns_prefix: m.cgns_prefix,
                    })
                    .collect(),
            })
            .collect::<Vec<_>>();
        // One controller entry per hierarchy met (its directories are
        // filled in by [`Sets::write`]).
        let mut names: Vec<&str> = self
            .others
            .iter()
            .flat_map(|(_, m)| m.iter().map(|m| m.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        let controllers = names
            .into_iter()
            .map(|n| pb::CgControllerEntry {
                cnames: n.split(',').map(str::to_owned).collect(),
                dirs: Vec::new(),
                is_threaded: None,
            })
            .collect();
        Some(pb::CgroupEntry { sets, controllers })
    }

    /// The cgroup directories of hierarchy `name` to keep: those of the
    /// sets other than criu's, everything below them and the ones above
    /// them, but neither criu's own cgroup nor those above it (the
    /// caller's).
    fn dirs(&self, mounts: &[proc::MountInfo], name: &str) -> Result<Vec<pb::CgroupDirEntry>> {
        let criu_path = self
            .criu
            .iter()
            .flatten()
            .find(|m| m.name == name)
            .map(|m| m.path.as_str());
        let mut starts: Vec<&str> = self
            .others
            .iter()
            .flat_map(|(_, ms)| ms.iter())
            .filter(|m| m.name == name)
            .map(|m| m.path.as_str())
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let mut paths: Vec<String> = Vec::new();
        for p in starts {
            if p == "/" || criu_path.is_some_and(|c| is_below(c, p)) {
                continue;
            }
            if paths.iter().any(|q| q == p) {
                continue;
            }
            let Some(d) = dir_of(mounts, name, p).filter(|d| d.is_dir()) else {
                continue;
            };
            walk(&d, p, &mut paths)?;
            // and the cgroups above it, up to criu's (or a common one)
            let mut up = p;
            while let Some((a, _)) = up.rsplit_once('/') {
                if a.is_empty() || criu_path.is_some_and(|c| is_below(c, a)) {
                    break;
                }
                paths.push(a.to_owned());
                up = a;
            }
        }
        paths.sort();
        paths.dedup();
        Ok(dir_tree(mounts, name, &paths, None))
    }

    /// Writes `cgroup.img` when a task is not where criu is: the sets,
    /// and the directories of the tasks' cgroups with their properties.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let Some(mut e) = self.entry() else {
            return Ok(());
        };
        let mounts =
            proc::read_mountinfo(std::process::id() as i32).map_err(|e| Error::Mismatch {
                what: format!("reading criu's mountinfo to find the cgroup mounts: {e}"),
            })?;
        for c in e.controllers.iter_mut() {
            c.dirs = self.dirs(&mounts, &c.cnames.join(","))?;
        }
        image::write_image(dir, FILE, magic::CGROUP, [&e])?;
        Ok(())
    }
}

/// What the restore does with cgroups (`--manage-cgroups` modes, as CRIU
/// documents them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Leave every task where it is born (criu's cgroups).
    Ignore,
    /// The cgroups must exist; their properties are left alone.
    None,
    /// The cgroups must exist; their properties are set.
    Props,
    /// Missing cgroups are made and get their properties; existing ones
    /// are left alone (the default).
    #[default]
    Soft,
    /// Missing cgroups are made; every one gets its properties.
    Full,
    /// Every cgroup is made, with its properties: one that exists already
    /// is an error.
    Strict,
}

impl Mode {
    /// CRIU's name of a mode (`--manage-cgroups=NAME`).
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "ignore" => Mode::Ignore,
            "none" => Mode::None,
            "props" => Mode::Props,
            "soft" => Mode::Soft,
            "full" => Mode::Full,
            "strict" => Mode::Strict,
            _ => return Option::None,
        })
    }

    /// Whether this mode makes a cgroup that is missing.
    fn makes(self) -> bool {
        matches!(self, Mode::Soft | Mode::Full | Mode::Strict)
    }
}

/// `--cgroup-root [CONTROLLER:]/PATH` (RPC `cg_root`): the cgroup the
/// root task is put into at restore, in the hierarchy of CONTROLLER or,
/// without one, in every hierarchy no other option names. The cgroups of
/// the other tasks that lie below the root task's move along with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoot {
    pub controller: Option<String>,
    pub path: String,
}

impl NewRoot {
    /// Parses the option's value.
    pub fn parse(s: &str) -> std::result::Result<NewRoot, String> {
        let (controller, path) = match s.split_once(':') {
            Some((c, p)) if !s.starts_with('/') => (Some(c.to_owned()), p),
            _ => (None, s),
        };
        if !path.starts_with('/') {
            return Err(format!("{s:?}: the cgroup root must be an absolute path"));
        }
        Ok(NewRoot {
            controller,
            path: path.to_owned(),
        })
    }

    /// Whether this option is for hierarchy `name` (`cpu,cpuacct`,
    /// `name=systemd`, or empty for cgroup v2).
    fn names(&self, name: &str) -> bool {
        self.controller
            .as_deref()
            .is_some_and(|c| name.split(',').any(|n| n == c))
    }
}

/// `path` with its prefix `old` (a cgroup and everything below it)
/// replaced by `new`; None when `path` is not below `old`.
fn moved(path: &str, old: &str, new: &str) -> Option<String> {
    let rest = path.strip_prefix(old.trim_end_matches('/'))?;
    if !rest.is_empty() && !rest.starts_with('/') {
        return None;
    }
    let joined = format!("{}{rest}", new.trim_end_matches('/'));
    let joined = joined.trim_end_matches('/');
    Some(if joined.is_empty() {
        "/".into()
    } else {
        joined.to_owned()
    })
}

/// The cgroup sets of a dump, for the restore.
#[derive(Debug, Default)]
pub struct Restore {
    pub sets: Vec<pb::CgSetEntry>,
    pub mode: Mode,
    /// The cgroup directories of the images, parents first.
    pub dirs: Vec<CgDir>,
    /// The image directory (each task's `ids-PID.img` names its cgroup
    /// namespace).
    dir: PathBuf,
    /// The root task: its PID, cgroup namespace id and set.
    pub root_pid: i32,
    pub root_cgns: u32,
    pub root_set: u32,
    /// The cgroup namespaces restored so far: key, PID (in the images) of
    /// a task in it, inode.
    made: std::sync::Mutex<Vec<(NsKey, i32, u64)>>,
}

/// Which cgroup namespace a task is in: its id in the images, or (images
/// without one) the roots it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NsKey {
    Id(u32),
    Roots(Vec<(String, String)>),
}

/// Reads `cgroup.img` (None without one: every task goes where criu is).
pub fn read_image(dir: &Path) -> Result<Option<Restore>> {
    if !dir.join(FILE).exists() {
        return Ok(None);
    }
    let e: pb::CgroupEntry = image::read_one(dir, FILE, magic::CGROUP)?;
    Ok(Some(Restore {
        sets: e.sets,
        dirs: flatten(&e.controllers),
        dir: dir.to_owned(),
        ..Default::default()
    }))
}

/// Makes cgroup directory `path` (and its parents), with `perms` when
/// the images give them.
fn make_dir(path: &Path, perms: Option<&pb::CgroupPerms>) -> Result<()> {
    let io = |what: String| {
        move |source| Error::Io {
            pid: 0,
            what,
            source,
        }
    };
    std::fs::create_dir_all(path).map_err(io(format!("making cgroup {}", path.display())))?;
    if let Some(p) = perms {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(p.mode))
            .map_err(io(format!("chmod {:o} cgroup {}", p.mode, path.display())))?;
        std::os::unix::fs::chown(path, Some(p.uid), Some(p.gid)).map_err(io(format!(
            "chown {}:{} cgroup {}",
            p.uid,
            p.gid,
            path.display()
        )))?;
    }
    debug!(cgroup = %path.display(), "cgroup made");
    Ok(())
}

/// What to write into property file `name` (now holding `now`) for it to
/// hold `want`; None when nothing is to be written.
pub fn prop_write(name: &str, want: &str, now: &str) -> Option<String> {
    if want == now {
        return Option::None;
    }
    match name {
        // enable what is missing, one `+controller` each
        "cgroup.subtree_control" => {
            let add: Vec<String> = want
                .split_whitespace()
                .filter(|c| !now.split_whitespace().any(|n| n == *c))
                .map(|c| format!("+{c}"))
                .collect();
            (!add.is_empty()).then(|| add.join(" "))
        }
        // only a threaded cgroup is written: "domain" cannot be
        "cgroup.type" => (want == "threaded").then(|| want.to_owned()),
        _ => Some(want.to_owned()),
    }
}

/// Sets the properties `props` (name, value) of cgroup directory `dir`.
fn set_props_of(dir: &Path, props: &[(String, String)]) -> Result<()> {
    for (name, value) in props {
        let file = dir.join(name);
        let now = std::fs::read_to_string(&file).unwrap_or_default();
        let Some(w) = prop_write(name, value, now.trim_end_matches('\n')) else {
            continue;
        };
        std::fs::write(&file, &w).map_err(|source| Error::Io {
            pid: 0,
            what: format!("setting cgroup property {} to {w:?}", file.display()),
            source,
        })?;
        debug!(file = %file.display(), value = %w, "cgroup property set");
    }
    Ok(())
}

/// The directory of hierarchy `name` (`""` for cgroup v2) and path `path`
/// among criu's mounts.
pub fn dir_of(mounts: &[proc::MountInfo], name: &str, path: &str) -> Option<PathBuf> {
    let m = mounts.iter().find(|m| {
        if name.is_empty() {
            m.fs_type == "cgroup2"
        } else {
            m.fs_type == "cgroup"
                && name
                    .split(',')
                    .all(|c| m.super_options.split(',').any(|o| o == c))
        }
    })?;
    // A mount of a sub-tree of the hierarchy shows the paths below it.
    let root = m.root.to_str()?;
    let rel = if root == "/" {
        path
    } else {
        path.strip_prefix(root)?
    };
    Some(m.mount_point.join(rel.trim_start_matches('/')))
}

impl Restore {
    /// Applies `--cgroup-root` options: the cgroups of set `root_set` (the
    /// root task's) become the new roots, and whatever lies below them in
    /// every set moves along.
    pub fn rewrite_roots(&mut self, root_set: u32, roots: &[NewRoot]) {
        self.root_set = root_set;
        if roots.is_empty() {
            return;
        }
        let Some(root) = self.sets.iter().find(|s| s.id == root_set).cloned() else {
            warn!(
                root_set,
                "the root task was in criu's cgroups at dump time; --cgroup-root has nothing to move"
            );
            return;
        };
        let global = roots.iter().find(|r| r.controller.is_none());
        for old in &root.ctls {
            let Some(new) = roots.iter().find(|r| r.names(&old.name)).or(global) else {
                continue;
            };
            for m in self
                .sets
                .iter_mut()
                .flat_map(|s| s.ctls.iter_mut())
                .filter(|m| m.name == old.name)
            {
                if let Some(p) = moved(&m.path, &old.path, &new.path) {
                    debug!(hierarchy = %m.name, from = %m.path, to = %p, "cgroup root rewritten");
                    // The root of the cgroup namespace moves along when
                    // it lies below the old root.
                    let ns_root = m
                        .cgns_prefix
                        .and_then(|n| m.path.get(..n as usize))
                        .and_then(|r| moved(r, &old.path, &new.path));
                    if let Some(r) = ns_root {
                        m.cgns_prefix = Some(r.len() as u32);
                    }
                    m.path = p;
                }
            }
            for d in self.dirs.iter_mut().filter(|d| d.name == old.name) {
                if let Some(p) = moved(&d.path, &old.path, &new.path) {
                    d.path = p;
                }
            }
        }
    }

    /// The roots of the cgroup namespace (hierarchy, path) of the tasks in
    /// set `id`, from its members that record one; empty for criu's set,
    /// an unknown one or one in criu's cgroup namespace.
    pub fn ns_roots(&self, id: u32) -> Result<Vec<(String, String)>> {
        let mut v: Vec<(String, String)> = Vec::new();
        let Some(set) = self.sets.iter().find(|s| s.id == id) else {
            return Ok(v);
        };
        for m in &set.ctls {
            let Some(n) = m.cgns_prefix.filter(|&n| n > 0) else {
                continue;
            };
            let root = m
                .path
                .get(..n as usize)
                .filter(|r| is_below(&m.path, r))
                .ok_or_else(|| Error::Mismatch {
                    what: format!(
                        "{FILE}: cgns_prefix {n} does not cut cgroup path {:?} (hierarchy {:?}) at a directory",
                        m.path, m.name
                    ),
                })?;
            if v.iter().any(|(name, _)| *name == m.name) {
                return Err(Error::Mismatch {
                    what: format!("{FILE}: set {id} has hierarchy {:?} twice", m.name),
                });
            }
            v.push((m.name.clone(), root.to_owned()));
        }
        Ok(v)
    }

    /// The cgroup namespace of task `pid` whose set has the roots `roots`.
    fn key_of(&self, pid: i32, roots: &[(String, String)]) -> NsKey {
        let id = if pid == self.root_pid {
            self.root_cgns
        } else {
            image::read_one::<pb::TaskKobjIdsEntry>(
                &self.dir,
                &format!("ids-{pid}.img"),
                magic::IDS,
            )
            .ok()
            .and_then(|ids| ids.cgroup_ns_id)
            .unwrap_or(0)
        };
        if id != 0 {
            NsKey::Id(id)
        } else {
            NsKey::Roots(roots.to_vec())
        }
    }

    /// Notes that process `host` (criu's PID) is in cgroup namespace
    /// `key`, inode `ino`.
    fn remember(&self, key: NsKey, host: i32, ino: u64) {
        if let Ok(mut made) = self.made.lock() {
            made.push((key, host, ino));
        }
    }

    fn made(&self, key: &NsKey) -> Option<(i32, u64)> {
        let made = self.made.lock().ok()?;
        made.iter()
            .find(|(k, _, _)| k == key)
            .map(|&(_, pid, ino)| (pid, ino))
    }

    fn made_with_inode(&self, ino: u64) -> Option<i32> {
        let made = self.made.lock().ok()?;
        made.iter()
            .find(|&&(_, _, i)| i == ino)
            .map(|&(_, pid, _)| pid)
    }

    /// Moves process `host` (PID `pid` in the images) into `roots`, the
    /// roots of the cgroup namespace it is to unshare.
    fn enter_roots(&self, pid: i32, host: i32, roots: &[(String, String)]) -> Result<()> {
        let mounts =
            proc::read_mountinfo(std::process::id() as i32).map_err(|e| Error::Mismatch {
                what: format!("reading criu's mountinfo to find the cgroup mounts: {e}"),
            })?;
        let now = read(host, &format!("/proc/{host}/cgroup"))?;
        for (name, root) in roots {
            if now.iter().any(|n| n.name == *name && n.path == *root) {
                continue;
            }
            let procs = dir_of(&mounts, name, root)
                .ok_or_else(|| Error::Mismatch {
                    what: format!(
                        "no mount of cgroup hierarchy {name:?} to put task {pid} into the root {root} of its cgroup namespace"
                    ),
                })?
                .join("cgroup.procs");
            std::fs::write(&procs, host.to_string()).map_err(|source| Error::Io {
                pid,
                what: format!(
                    "moving the task (host pid {host}) into {} (the root of its cgroup namespace; it is not made)",
                    procs.display()
                ),
                source,
            })?;
            debug!(pid, cgroup = %procs.display(), "task moved into its cgroup namespace's root");
        }
        Ok(())
    }

    /// The root puppet `t` (PID [`Restore::root_pid`] in the images), just
    /// born in criu's cgroup namespace: when the root had one of its own,
    /// it moves into that one's roots and unshares one there.
    pub fn enter_root_ns(&self, t: &mut Tracee) -> Result<()> {
        if self.mode == Mode::Ignore {
            return Ok(());
        }
        self.prepare()?;
        let (pid, host) = (self.root_pid, t.pid());
        let roots = self.ns_roots(self.root_set)?;
        let key = self.key_of(pid, &roots);
        if !roots.is_empty() {
            self.enter_roots(pid, host, &roots)?;
            t.syscall(libc::SYS_unshare, &[libc::CLONE_NEWCGROUP as u64])?;
        }
        let ino = super::inode(host, super::Kind::Cgroup)?.unwrap_or(0);
        self.remember(key, host, ino);
        Ok(())
    }

    /// Makes puppet `t` (PID `pid` in the images, in set `id`) enter the
    /// cgroup namespace of the task it was: the one it was born in (its
    /// parent's), one another task has already entered, or a new one
    /// unshared at its roots.
    fn enter_ns(&self, t: &mut Tracee, pid: i32, id: u32) -> Result<()> {
        let host = t.pid();
        let roots = self.ns_roots(id)?;
        let key = self.key_of(pid, &roots);
        let now = super::inode(host, super::Kind::Cgroup)?.unwrap_or(0);
        let join_from = match self.made(&key) {
            Some((_, ino)) if ino == now => return Ok(()),
            Some((other, _)) => other,
            None if roots.is_empty() => {
                // criu's own namespace (the one the root was born in)
                let criu = super::own_inode(super::Kind::Cgroup)?.unwrap_or(0);
                if now == criu {
                    self.remember(key, host, now);
                    return Ok(());
                }
                self.made_with_inode(criu).ok_or_else(|| Error::Unsupported {
                    pid,
                    what: "was in criu's cgroup namespace below a task in another one, and no restored task is in criu's".into(),
                })?
            }
            None => {
                self.enter_roots(pid, host, &roots)?;
                t.syscall(libc::SYS_unshare, &[libc::CLONE_NEWCGROUP as u64])?;
                let ino = super::inode(host, super::Kind::Cgroup)?.unwrap_or(0);
                debug!(pid, ino, "cgroup namespace made");
                self.remember(key, host, ino);
                return Ok(());
            }
        };
        // Join the namespace of process `join_from` (criu's PID) through a
        // pidfd, by the PID the puppet sees it under.
        let seen = super::pid::seen_by(host, join_from)?.ok_or_else(|| Error::Unsupported {
            pid,
            what: format!(
                "is to join the cgroup namespace of process {join_from}, which its pid namespace does not show"
            ),
        })?;
        let fd = t.syscall(libc::SYS_pidfd_open, &[seen as u64, 0])?;
        let joined = t.syscall(libc::SYS_setns, &[fd, libc::CLONE_NEWCGROUP as u64]);
        t.syscall(libc::SYS_close, &[fd])?;
        joined?;
        debug!(pid, other = join_from, "cgroup namespace joined");
        Ok(())
    }

    /// Puppet `t` (PID `pid` in the images), just born: into its cgroup
    /// namespace and the cgroups of its set `id` (0 or criu's set: it stays
    /// where it was born).
    pub fn enter(&self, t: &mut Tracee, pid: i32, id: u32) -> Result<()> {
        if self.mode == Mode::Ignore || id == 0 {
            return Ok(());
        }
        if pid != self.root_pid {
            self.enter_ns(t, pid, id)?;
        }
        self.join(pid, t.pid(), id)
    }

    /// Makes the cgroups of the images ready before any task joins one, as
    /// the mode says: made when missing (soft, full, strict; none and props
    /// need them to exist), properties set on those made (soft) or on all
    /// (props, full, strict); strict wants none to exist.
    pub fn prepare(&self) -> Result<()> {
        if self.mode == Mode::Ignore || self.dirs.is_empty() {
            return Ok(());
        }
        let mounts =
            proc::read_mountinfo(std::process::id() as i32).map_err(|e| Error::Mismatch {
                what: format!("reading criu's mountinfo to find the cgroup mounts: {e}"),
            })?;
        self.prepare_in(&mounts)
    }

    /// [`Restore::prepare`] with the cgroup hierarchies mounted as in
    /// `mounts`.
    fn prepare_in(&self, mounts: &[proc::MountInfo]) -> Result<()> {
        for d in &self.dirs {
            let Some(path) = dir_of(mounts, &d.name, &d.path) else {
                warn!(hierarchy = %d.name, cgroup = %d.path, "no mount of this cgroup hierarchy; the cgroup is left out");
                continue;
            };
            let exists = path.is_dir();
            let set_props = match (exists, self.mode) {
                (true, Mode::Strict) => {
                    return Err(Error::Mismatch {
                        what: format!(
                            "--manage-cgroups=strict: cgroup {} exists already",
                            path.display()
                        ),
                    })
                }
                (true, m) => matches!(m, Mode::Props | Mode::Full),
                (false, m) if !m.makes() => {
                    return Err(Error::Mismatch {
                        what: format!(
                            "--manage-cgroups={}: cgroup {} does not exist",
                            if m == Mode::None { "none" } else { "props" },
                            path.display()
                        ),
                    })
                }
                (false, _) => {
                    make_dir(&path, d.perms.as_ref())?;
                    true
                }
            };
            if set_props {
                set_props_of(&path, &d.props)?;
            }
        }
        Ok(())
    }

    /// Puts process `host` (PID `pid` in the images) into the cgroups of
    /// set `id` (0 or criu's set: it stays where it was born).
    pub fn join(&self, pid: i32, host: i32, id: u32) -> Result<()> {
        if self.mode == Mode::Ignore || id == 0 || id == CRIU_SET {
            return Ok(());
        }
        let set = self
            .sets
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| Error::Mismatch {
                what: format!("{FILE}: no cgroup set {id} (of task {pid})"),
            })?;
        let mounts =
            proc::read_mountinfo(std::process::id() as i32).map_err(|e| Error::Mismatch {
                what: format!("reading criu's mountinfo to find the cgroup mounts: {e}"),
            })?;
        let now = read(host, &format!("/proc/{host}/cgroup"))?;
        for m in &set.ctls {
            if now.iter().any(|n| n.name == m.name && n.path == m.path) {
                continue;
            }
            let Some(dir) = dir_of(&mounts, &m.name, &m.path) else {
                warn!(pid, hierarchy = %m.name, "no mount of this cgroup hierarchy; the task stays where it is");
                continue;
            };
            if !dir.is_dir() {
                match self.mode {
                    Mode::Soft => {
                        warn!(pid, dir = %dir.display(), "cgroup does not exist (the images do not have it to make); the task stays where it is");
                        continue;
                    }
                    Mode::Full | Mode::Strict => make_dir(&dir, Option::None)?,
                    _ => {
                        return Err(Error::Mismatch {
                            what: format!(
                                "cgroup {} of task {pid} does not exist (the mode makes none)",
                                dir.display()
                            ),
                        })
                    }
                }
            }
            let procs = dir.join("cgroup.procs");
            std::fs::write(&procs, host.to_string()).map_err(|source| Error::Io {
                pid,
                what: format!("moving the task (host pid {host}) into {}", procs.display()),
                source,
            })?;
            debug!(pid, cgroup = %dir.display(), "task moved into its cgroup");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(name: &str, path: &str) -> Member {
        Member {
            name: name.into(),
            path: path.into(),
            cgns_prefix: None,
        }
    }

    #[test]
    fn cgroup_files() {
        let v = parse("4:memory:/a/b\n1:cpu,cpuacct:/\n0::/x/y\n").unwrap();
        assert_eq!(
            v,
            vec![m("", "/x/y"), m("cpu,cpuacct", "/"), m("memory", "/a/b")]
        );
        assert!(parse("garbage\n").is_none());
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn sets_are_numbered_and_imaged() {
        let mut s = Sets {
            criu: Some(vec![m("", "/")]),
            ..Default::default()
        };
        assert!(s.entry().is_none());
        let me = std::process::id() as i32;
        // criu's own thread is where criu is
        s.criu = Some(read(0, "/proc/self/cgroup").unwrap());
        s.criu_ns = super::super::own_inode(super::super::Kind::Cgroup).unwrap();
        assert_eq!(s.set_of(me, me).unwrap(), CRIU_SET);
        s.others.push((2, vec![m("", "/t"), m("cpu,cpuacct", "/")]));
        let e = s.entry().unwrap();
        assert_eq!(e.sets.len(), 1);
        assert_eq!(e.sets[0].id, 2);
        assert_eq!(e.sets[0].ctls[0].name, "");
        assert_eq!(e.sets[0].ctls[0].path, "/t");
        let cn: Vec<Vec<String>> = e.controllers.iter().map(|c| c.cnames.clone()).collect();
        assert_eq!(
            cn,
            vec![
                vec![String::new()],
                vec!["cpu".to_string(), "cpuacct".to_string()]
            ]
        );
    }

    #[test]
    fn cgroup_root_options() {
        assert_eq!(
            NewRoot::parse("/a/b").unwrap(),
            NewRoot {
                controller: None,
                path: "/a/b".into()
            }
        );
        assert_eq!(
            NewRoot::parse("cpu:/x").unwrap(),
            NewRoot {
                controller: Some("cpu".into()),
                path: "/x".into()
            }
        );
        assert!(NewRoot::parse("cpu:x").unwrap_err().contains("absolute"));
        assert!(NewRoot::parse("").is_err());
    }

    #[test]
    fn paths_below_the_old_root_move() {
        assert_eq!(moved("/c1", "/c1", "/c2").as_deref(), Some("/c2"));
        assert_eq!(moved("/c1/sub", "/c1", "/c2").as_deref(), Some("/c2/sub"));
        assert_eq!(moved("/c10", "/c1", "/c2"), None);
        assert_eq!(moved("/other", "/c1", "/c2"), None);
        assert_eq!(moved("/x/y", "/", "/c2").as_deref(), Some("/c2/x/y"));
        assert_eq!(moved("/c1/sub", "/c1", "/").as_deref(), Some("/sub"));
        assert_eq!(moved("/c1", "/c1", "/").as_deref(), Some("/"));
        assert_eq!(moved("/", "/", "/n").as_deref(), Some("/n"));
        assert_eq!(moved("/", "/", "/").as_deref(), Some("/"));
    }

    #[test]
    fn cgroup_roots_are_rewritten_per_hierarchy() {
        let ctl = |name: &str, path: &str| pb::CgMemberEntry {
            name: name.into(),
            path: path.into(),
            cgns_prefix: None,
        };
        let mut r = Restore {
            sets: vec![
                pb::CgSetEntry {
                    id: 2,
                    ctls: vec![
                        ctl("cpu", "/ct1"),
                        ctl("memory", "/m/ct1"),
                        ctl("", "/u/ct1"),
                    ],
                },
                pb::CgSetEntry {
                    id: 3,
                    ctls: vec![
                        ctl("cpu", "/ct1/a"),
                        ctl("memory", "/elsewhere"),
                        ctl("", "/u/ct1/b"),
                    ],
                },
            ],
            mode: Mode::Soft,
            ..Default::default()
        };
        r.rewrite_roots(
            2,
            &[
                NewRoot::parse("cpu:/ct2").unwrap(),
                NewRoot::parse("/g").unwrap(),
            ],
        );
        let paths: Vec<Vec<&str>> = r
            .sets
            .iter()
            .map(|s| s.ctls.iter().map(|m| m.path.as_str()).collect())
            .collect();
        assert_eq!(
            paths,
            [
                vec!["/ct2", "/g", "/g"],
                vec!["/ct2/a", "/elsewhere", "/g/b"]
            ]
        );
    }

    #[test]
    fn hierarchy_dirs() {
        let text = "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n\
                    31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                    32 25 0:28 /sub /mnt/mem rw - cgroup cgroup rw,memory\n";
        let mounts = proc::parse_mountinfo(text).unwrap();
        assert_eq!(
            dir_of(&mounts, "", "/a/b"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/a/b"))
        );
        assert_eq!(
            dir_of(&mounts, "cpu,cpuacct", "/"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu/"))
        );
        assert_eq!(
            dir_of(&mounts, "memory", "/sub/x"),
            Some(PathBuf::from("/mnt/mem/x"))
        );
        assert_eq!(dir_of(&mounts, "memory", "/other"), None);
        assert_eq!(dir_of(&mounts, "pids", "/"), None);
    }

    #[test]
    fn cgroup_namespace_roots_from_both_views() {
        let outer = parse("2:cpu:/\n1:name=systemd:/a/b\n0::/t/ct/sub\n").unwrap();
        let inner = parse("2:cpu:/\n1:name=systemd:/\n0::/sub\n").unwrap();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            ns_roots(&outer, &inner).unwrap(),
            vec![s("", "/t/ct"), s("cpu", "/"), s("name=systemd", "/a/b")]
        );
        // the same view: a namespace rooted where criu's is
        assert_eq!(
            ns_roots(&outer, &outer).unwrap(),
            vec![s("", "/"), s("cpu", "/"), s("name=systemd", "/")]
        );
        // a task moved above its namespace's root
        let above = parse("0::/../x\n").unwrap();
        assert!(ns_roots(&parse("0::/x\n").unwrap(), &above)
            .unwrap_err()
            .contains("outside"));
        // inner view that is no suffix of the outer one
        let bad = parse("0::/other\n").unwrap();
        assert!(ns_roots(&parse("0::/t/sub\n").unwrap(), &bad).is_err());
        assert!(ns_roots(
            &parse("0::/t/xsub\n").unwrap(),
            &parse("0::/sub\n").unwrap()
        )
        .is_err());
    }

    #[test]
    fn members_below_the_namespace_root_record_it() {
        let mut s = Sets::default();
        let roots = vec![("".into(), "/t/ct".into()), ("memory".into(), "/".into())];
        let mut set = vec![m("", "/t/ct/sub"), m("cpu", "/x"), m("memory", "/m")];
        Sets::mark_ns_roots(1, &roots, &mut set).unwrap();
        assert_eq!(set[0].cgns_prefix, Some(5));
        assert_eq!(set[1].cgns_prefix, None);
        // a root where criu's is: "/", kept all the same
        assert_eq!(set[2].cgns_prefix, Some(1));
        assert!(Sets::mark_ns_roots(1, &roots, &mut [m("", "/t/ctx")]).is_err());
        s.others.push((2, set));
        let e = s.entry().unwrap();
        assert_eq!(e.sets[0].ctls[0].cgns_prefix, Some(5));
    }

    fn ctl(name: &str, path: &str, prefix: Option<u32>) -> pb::CgMemberEntry {
        pb::CgMemberEntry {
            name: name.into(),
            path: path.into(),
            cgns_prefix: prefix,
        }
    }

    #[test]
    fn namespace_roots_at_restore() {
        let mut r = Restore {
            sets: vec![
                pb::CgSetEntry {
                    id: 2,
                    ctls: vec![ctl("", "/t/ct", Some(5)), ctl("cpu", "/", None)],
                },
                pb::CgSetEntry {
                    id: 3,
                    ctls: vec![ctl("", "/t/ct/sub", Some(5)), ctl("cpu", "/c", Some(1))],
                },
            ],
            mode: Mode::Soft,
            ..Default::default()
        };
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(r.ns_roots(2).unwrap(), vec![s("", "/t/ct")]);
        assert_eq!(r.ns_roots(3).unwrap(), vec![s("", "/t/ct"), s("cpu", "/")]);
        assert!(r.ns_roots(1).unwrap().is_empty(), "criu's set");
        assert!(r.ns_roots(9).unwrap().is_empty(), "an unknown set");
        r.rewrite_roots(2, &[NewRoot::parse("/n").unwrap()]);
        assert_eq!(r.root_set, 2);
        assert_eq!(r.sets[1].ctls[0].path, "/n/sub");
        assert_eq!(r.ns_roots(3).unwrap()[0], s("", "/n"));
        r.sets[1].ctls[0].cgns_prefix = Some(3);
        assert!(r.ns_roots(3).is_err(), "a prefix that cuts a name");
        r.sets[1].ctls[0].cgns_prefix = Some(99);
        assert!(r.ns_roots(3).is_err(), "a prefix past the path");
    }

    #[test]
    fn namespaces_are_told_apart_by_id_then_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ids = pb::TaskKobjIdsEntry {
            cgroup_ns_id: Some(7),
            ..Default::default()
        };
        image::write_image(dir.path(), "ids-5.img", magic::IDS, [&ids]).unwrap();
        let r = Restore {
            dir: dir.path().to_owned(),
            root_pid: 1,
            root_cgns: 3,
            ..Default::default()
        };
        let roots = vec![("".to_string(), "/x".to_string())];
        assert_eq!(r.key_of(1, &roots), NsKey::Id(3));
        assert_eq!(r.key_of(5, &roots), NsKey::Id(7));
        assert_eq!(r.key_of(6, &roots), NsKey::Roots(roots.clone()));
        r.remember(NsKey::Id(7), 5, 42);
        assert_eq!(r.made(&NsKey::Id(7)), Some((5, 42)));
        assert_eq!(r.made(&NsKey::Id(3)), None);
        assert_eq!(r.made_with_inode(42), Some(5));
    }

    #[test]
    fn property_lists() {
        let v2 = prop_names("", "memory pids hugetlb");
        assert!(v2.contains(&"cgroup.subtree_control") && v2.contains(&"memory.max"));
        assert!(v2.contains(&"pids.max") && !v2.contains(&"cpu.max"));
        assert!(!v2.contains(&"cgroup.freeze"));
        let v1 = prop_names("cpu,cpuacct", "");
        assert!(v1.contains(&"cpu.shares") && v1.contains(&"notify_on_release"));
        assert!(!v1.contains(&"pids.max"));
        let mem = prop_names("memory", "");
        let at = |n| mem.iter().position(|p| *p == n).unwrap();
        assert!(at("memory.limit_in_bytes") < at("memory.memsw.limit_in_bytes"));
    }

    #[test]
    fn property_writes() {
        assert_eq!(prop_write("pids.max", "5", "max").as_deref(), Some("5"));
        assert_eq!(prop_write("pids.max", "max", "max"), None);
        assert_eq!(
            prop_write("cgroup.subtree_control", "memory pids", "pids").as_deref(),
            Some("+memory")
        );
        assert_eq!(
            prop_write("cgroup.subtree_control", "cpu io", "").as_deref(),
            Some("+cpu +io")
        );
        assert_eq!(prop_write("cgroup.subtree_control", "", "cpu"), None);
        assert_eq!(prop_write("cgroup.type", "domain", "domain threaded"), None);
        assert_eq!(
            prop_write("cgroup.type", "threaded", "domain").as_deref(),
            Some("threaded")
        );
    }

    /// A fake cgroup v2 hierarchy in a temporary directory.
    fn fake_v2() -> (tempfile::TempDir, Vec<proc::MountInfo>) {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!(
            "31 25 0:27 / {} rw - cgroup2 cgroup2 rw\n",
            tmp.path().display()
        );
        let mounts = proc::parse_mountinfo(&text).unwrap();
        (tmp, mounts)
    }

    fn put(dir: &Path, files: &[(&str, &str)]) {
        std::fs::create_dir_all(dir).unwrap();
        for (n, v) in files {
            std::fs::write(dir.join(n), format!("{v}\n")).unwrap();
        }
    }

    #[test]
    fn directories_are_kept_as_a_tree_and_read_back_flat() {
        let (tmp, mounts) = fake_v2();
        put(
            &tmp.path().join("a/b"),
            &[
                ("cgroup.controllers", "pids memory"),
                ("pids.max", "7"),
                ("memory.max", "max"),
            ],
        );
        put(
            &tmp.path().join("a/b/c"),
            &[("cgroup.controllers", "pids"), ("pids.max", "3")],
        );
        let mut paths = Vec::new();
        walk(&tmp.path().join("a/b"), "/a/b", &mut paths).unwrap();
        assert_eq!(paths, ["/a/b", "/a/b/c"]);
        let tree = dir_tree(&mounts, "", &paths, None);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].dir_name, "a/b");
        assert_eq!(tree[0].children.len(), 1);
        assert_eq!(tree[0].children[0].dir_name, "c");
        assert!(tree[0].dir_perms.is_some());
        let flat = flatten(&[pb::CgControllerEntry {
            cnames: vec![String::new()],
            dirs: tree,
            is_threaded: None,
        }]);
        let got: Vec<(&str, Vec<(&str, &str)>)> = flat
            .iter()
            .map(|d| {
                (
                    d.path.as_str(),
                    d.props
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/a/b", vec![("pids.max", "7"), ("memory.max", "max")]),
                ("/a/b/c", vec![("pids.max", "3")])
            ]
        );
    }

    fn restore_with(mode: Mode, dirs: &[(&str, &str)]) -> Restore {
        Restore {
            mode,
            dirs: dirs
                .iter()
                .map(|(p, v)| CgDir {
                    name: String::new(),
                    path: (*p).into(),
                    props: vec![("pids.max".into(), (*v).into())],
                    perms: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn modes_make_cgroups_and_set_properties_as_crius() {
        let read = |d: &Path| std::fs::read_to_string(d.join("pids.max")).unwrap_or_default();
        for (mode, made_gets, existing_gets) in [(Mode::Soft, "5", "max\n"), (Mode::Full, "5", "6")]
        {
            let (tmp, mounts) = fake_v2();
            put(&tmp.path().join("old"), &[("pids.max", "max")]);
            // (in the fake, setting a made cgroup's property makes its file)
            let r = restore_with(mode, &[("/old", "6"), ("/new", "5")]);
            r.prepare_in(&mounts).unwrap();
            assert_eq!(read(&tmp.path().join("old")), existing_gets, "{mode:?}");
            assert!(tmp.path().join("new").is_dir(), "{mode:?}");
            assert_eq!(read(&tmp.path().join("new")), made_gets, "{mode:?}");
        }
        let (tmp, mounts) = fake_v2();
        put(&tmp.path().join("old"), &[("pids.max", "max")]);
        let e = restore_with(Mode::Strict, &[("/old", "6")])
            .prepare_in(&mounts)
            .unwrap_err();
        assert!(e.to_string().contains("exists already"), "{e}");
        restore_with(Mode::Strict, &[("/fresh", "4")])
            .prepare_in(&mounts)
            .unwrap();
        assert_eq!(read(&tmp.path().join("fresh")), "4");
        for mode in [Mode::None, Mode::Props] {
            let e = restore_with(mode, &[("/missing", "1")])
                .prepare_in(&mounts)
                .unwrap_err();
            assert!(e.to_string().contains("does not exist"), "{e}");
            assert!(!tmp.path().join("missing").exists());
        }
        restore_with(Mode::Props, &[("/old", "9")])
            .prepare_in(&mounts)
            .unwrap();
        assert_eq!(read(&tmp.path().join("old")), "9");
        restore_with(Mode::None, &[("/old", "1")])
            .prepare_in(&mounts)
            .unwrap();
        assert_eq!(read(&tmp.path().join("old")), "9");
        restore_with(Mode::Ignore, &[("/other", "1")])
            .prepare()
            .unwrap();
    }

    #[test]
    fn cgroup_root_moves_the_directories_too() {
        let mut r = restore_with(Mode::Soft, &[("/ct1", "1"), ("/ct1/a", "2"), ("/x", "3")]);
        r.sets = vec![pb::CgSetEntry {
            id: 2,
            ctls: vec![ctl("", "/ct1", None)],
        }];
        r.rewrite_roots(2, &[NewRoot::parse("/ct2").unwrap()]);
        let paths: Vec<&str> = r.dirs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/ct2", "/ct2/a", "/x"]);
    }

    fn cg_path() -> impl Strategy<Value = String> {
        proptest::collection::vec("[a-z]{1,4}", 0..4).prop_map(|v| format!("/{}", v.join("/")))
    }

    proptest! {
        /// A task at ROOT/REST that sees itself at /REST: its namespace's
        /// root is ROOT (`/` when it sees the full path), and the prefix
        /// recorded cuts the full path back to that root.
        #[test]
        fn namespace_root_is_what_the_inside_view_cuts_off(root in cg_path(), rest in cg_path()) {
            let full = if rest == "/" { root.clone() } else { format!("{}{rest}", root.trim_end_matches('/')) };
            let outer = vec![m("", &full)];
            let inner = vec![m("", &rest)];
            let got = ns_roots(&outer, &inner).unwrap();
            let want = if full == rest { "/".to_string() } else { root.clone() };
            prop_assert_eq!(&got, &vec![(String::new(), want.clone())]);
            let mut set = vec![m("", &full)];
            Sets::mark_ns_roots(1, &got, &mut set).unwrap();
            let n = set[0].cgns_prefix.unwrap() as usize;
            prop_assert_eq!(&full[..n], want.as_str());
        }

        /// Moving a cgroup tree and moving it back gives the paths back.
        #[test]
        fn moved_and_back(old in cg_path(), new in cg_path(), rest in cg_path()) {
            let p = if rest == "/" { old.clone() } else { format!("{}{rest}", old.trim_end_matches('/')) };
            let there = moved(&p, &old, &new).unwrap();
            prop_assert!(is_below(&there, &new));
            prop_assert_eq!(moved(&there, &new, &old).unwrap(), p);
        }
    }
}
