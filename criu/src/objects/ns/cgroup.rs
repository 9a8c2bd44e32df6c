//! Cgroup membership: which cgroups each task is in, as upstream keeps it.
//!
//! Dump: every thread's `/proc/PID/task/TID/cgroup` is a cgroup set (one
//! member per hierarchy: its controllers — empty for cgroup v2 — and its
//! path). The set criu itself is in is id 1, the others count up from 2;
//! core images carry the ids (`cg_set`), and `cgroup.img` lists every set
//! other than criu's (none at all when the whole tree lives where criu
//! does, as upstream). The cgroups' own properties and directories are not
//! dumped.
//!
//! Restore: each process is put back into the cgroups of its set, by
//! writing its PID to `cgroup.procs` under the mount of each hierarchy in
//! criu's mount namespace. The cgroups are not made: in the default mode
//! (soft) a cgroup that does not exist is left out with a warning.
//!
//! Cgroup namespace (of the root, one per tree): the paths are the full
//! ones (criu reads them from its own cgroup namespace), and a member
//! below the namespace's root carries the length of that root's path
//! (`cgns_prefix`, as upstream). The namespace's root per hierarchy is
//! found by reading the root task's cgroup file from a helper thread that
//! joined its cgroup namespace: the path seen there is the full one with
//! the root cut off. At restore the root puppet is moved into those roots,
//! unshares a cgroup namespace there, and only then goes into its own
//! cgroups (see [`Restore::enter_ns_roots`]).

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::Result;
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::proc;

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
/// from inside its namespace (`inner`). Hierarchies whose root is the
/// same as criu's (equal paths) are left out.
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

/// The cgroup sets seen during a dump.
#[derive(Debug, Default)]
pub struct Sets {
    criu: Option<Vec<Member>>,
    /// Sets other than criu's, with their ids (2 up).
    others: Vec<(u32, Vec<Member>)>,
    /// The roots of the tree's cgroup namespace (hierarchy, path) where
    /// they are not criu's.
    ns_roots: Vec<(String, String)>,
}

impl Sets {
    /// Finds the roots of the cgroup namespace of `pid` (the root of the
    /// tree, in another cgroup namespace than criu's): every set met
    /// afterwards records them (`cgns_prefix`).
    pub fn find_ns_roots(&mut self, pid: i32) -> Result<()> {
        let path = format!("/proc/{pid}/cgroup");
        let outer = read(pid, &path)?;
        let inner = super::in_ns(pid, &[super::Kind::Cgroup], || read(pid, &path))?;
        self.ns_roots = ns_roots(&outer, &inner).map_err(|what| Error::Unsupported {
            pid,
            what: format!("its cgroup namespace cannot be dumped: {what}"),
        })?;
        debug!(pid, roots = ?self.ns_roots, "cgroup namespace roots");
        Ok(())
    }

    /// Marks the members of `set` (of task `pid`) below the roots of the
    /// cgroup namespace.
    fn mark_ns_roots(&self, pid: i32, set: &mut [Member]) -> Result<()> {
        for m in set.iter_mut() {
            let Some((_, root)) = self.ns_roots.iter().find(|(n, _)| *n == m.name) else {
                continue;
            };
            if !is_below(&m.path, root) {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "is in cgroup {} (hierarchy {:?}), outside the root {root} of the tree's cgroup namespace",
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
        }
        let mut theirs = read(pid, &format!("/proc/{pid}/task/{tid}/cgroup"))?;
        self.mark_ns_roots(pid, &mut theirs)?;
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
        // One controller entry per hierarchy met (no directories: the
        // cgroups themselves are not dumped).
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

    /// Writes `cgroup.img` when a task is not where criu is.
    pub fn write(&self, dir: &Path) -> Result<()> {
        if let Some(e) = self.entry() {
            image::write_image(dir, FILE, magic::CGROUP, [&e])?;
        }
        Ok(())
    }
}

/// What the restore does with cgroups (`--manage-cgroups` modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Leave every task where it is born (criu's cgroups).
    Ignore,
    /// Move tasks into their cgroups when these exist (the default).
    #[default]
    Soft,
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
    Some(if joined.is_empty() {
        "/".into()
    } else {
        joined
    })
}

/// The cgroup sets of a dump, for the restore.
#[derive(Debug, Clone, Default)]
pub struct Restore {
    pub sets: Vec<pb::CgSetEntry>,
    pub mode: Mode,
}

/// Reads `cgroup.img` (None without one: every task goes where criu is).
pub fn read_image(dir: &Path) -> Result<Option<Restore>> {
    if !dir.join(FILE).exists() {
        return Ok(None);
    }
    let e: pb::CgroupEntry = image::read_one(dir, FILE, magic::CGROUP)?;
    Ok(Some(Restore {
        sets: e.sets,
        mode: Mode::default(),
    }))
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
        }
    }

    /// The roots of the tree's cgroup namespace (hierarchy, path), from
    /// the members that record one; empty when the tree shared criu's
    /// cgroup namespace (or its root was criu's cgroups).
    pub fn ns_roots(&self) -> Result<Vec<(String, String)>> {
        let mut v: Vec<(String, String)> = Vec::new();
        for m in self.sets.iter().flat_map(|s| s.ctls.iter()) {
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
            match v.iter().find(|(name, _)| *name == m.name) {
                Some((_, r)) if r != root => {
                    return Err(Error::Mismatch {
                        what: format!(
                            "{FILE}: two cgroup namespace roots in hierarchy {:?}: {r} and {root}",
                            m.name
                        ),
                    })
                }
                Some(_) => {}
                None => v.push((m.name.clone(), root.to_owned())),
            }
        }
        Ok(v)
    }

    /// Moves process `host` (the root puppet, PID `pid` in the images)
    /// into the roots of the tree's cgroup namespace, where it is to
    /// unshare one. False when there is nothing to do (no cgroup
    /// namespace of its own, or cgroups ignored).
    pub fn enter_ns_roots(&self, pid: i32, host: i32) -> Result<bool> {
        if self.mode == Mode::Ignore {
            return Ok(false);
        }
        let roots = self.ns_roots()?;
        if roots.is_empty() {
            return Ok(false);
        }
        let mounts =
            proc::read_mountinfo(std::process::id() as i32).map_err(|e| Error::Mismatch {
                what: format!("reading criu's mountinfo to find the cgroup mounts: {e}"),
            })?;
        for (name, root) in &roots {
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
        Ok(true)
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
                warn!(pid, dir = %dir.display(), "cgroup does not exist (it is not made in soft mode); the task stays where it is");
                continue;
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
            others: Vec::new(),
            ns_roots: Vec::new(),
        };
        assert!(s.entry().is_none());
        let me = std::process::id() as i32;
        // criu's own thread is where criu is
        s.criu = Some(read(0, "/proc/self/cgroup").unwrap());
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
        assert_eq!(
            ns_roots(&outer, &inner).unwrap(),
            vec![
                ("".to_string(), "/t/ct".to_string()),
                ("name=systemd".to_string(), "/a/b".to_string())
            ]
        );
        // the same view: criu's own namespace
        assert!(ns_roots(&outer, &outer).unwrap().is_empty());
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
        let mut s = Sets {
            ns_roots: vec![("".into(), "/t/ct".into())],
            ..Default::default()
        };
        let mut set = vec![m("", "/t/ct/sub"), m("cpu", "/x")];
        s.mark_ns_roots(1, &mut set).unwrap();
        assert_eq!(set[0].cgns_prefix, Some(5));
        assert_eq!(set[1].cgns_prefix, None);
        assert!(s.mark_ns_roots(1, &mut [m("", "/t/ctx")]).is_err());
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
                    ctls: vec![ctl("", "/t/ct/sub", Some(5))],
                },
            ],
            mode: Mode::Soft,
        };
        assert_eq!(r.ns_roots().unwrap(), vec![("".into(), "/t/ct".into())]);
        r.rewrite_roots(2, &[NewRoot::parse("/n").unwrap()]);
        assert_eq!(r.sets[1].ctls[0].path, "/n/sub");
        assert_eq!(r.ns_roots().unwrap(), vec![("".into(), "/n".into())]);
        r.sets[1].ctls[0].cgns_prefix = Some(3);
        assert!(r.ns_roots().is_err(), "a prefix that cuts a name");
        r.sets[1].ctls[0].cgns_prefix = Some(99);
        assert!(r.ns_roots().is_err(), "a prefix past the path");
        r.mode = Mode::Ignore;
        assert!(!r.enter_ns_roots(1, 1).unwrap());
        let none = Restore {
            sets: vec![pb::CgSetEntry {
                id: 2,
                ctls: vec![ctl("", "/t", None)],
            }],
            mode: Mode::Soft,
        };
        assert!(none.ns_roots().unwrap().is_empty());
        assert!(!none.enter_ns_roots(1, 1).unwrap());
    }
}
