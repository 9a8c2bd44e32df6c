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

/// The cgroup sets seen during a dump.
#[derive(Debug, Default)]
pub struct Sets {
    criu: Option<Vec<Member>>,
    /// Sets other than criu's, with their ids (2 up).
    others: Vec<(u32, Vec<Member>)>,
}

impl Sets {
    /// The id of the cgroup set of thread `tid` (host ids) of `pid`.
    pub fn set_of(&mut self, pid: i32, tid: i32) -> Result<u32> {
        if self.criu.is_none() {
            self.criu = Some(read(0, "/proc/self/cgroup")?);
        }
        let theirs = read(pid, &format!("/proc/{pid}/task/{tid}/cgroup"))?;
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
                        cgns_prefix: None,
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
                    m.path = p;
                }
            }
        }
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
}
