//! What a test tree looks like from outside, before and after dump+restore.

use std::collections::BTreeMap;

use crate::proctree::{ns_pid, tree, ProcId};

/// One process: memory layout and open files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSnapshot {
    pub comm: String,
    /// Normalized VMAs: `start-end perms path`, adjacent areas with the same
    /// perms and path merged.
    pub maps: Vec<String>,
    /// fd number → normalized link target.
    pub fds: BTreeMap<i32, String>,
}

/// A whole tree, keyed by the PID each process has in its own pid namespace
/// (PIDs are what criu preserves; host PIDs of an ns init are not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeSnapshot {
    pub procs: BTreeMap<i32, ProcSnapshot>,
    /// Normalized mountinfo of the root (ns flavors only).
    pub mounts: Option<Vec<String>>,
}

/// Errors while taking a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("process {0} is gone")]
    Gone(i32),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

fn read(path: String) -> Result<String, SnapshotError> {
    std::fs::read_to_string(&path).map_err(|source| SnapshotError::Read { path, source })
}

/// Normalize the text of /proc/PID/maps.
pub fn normalize_maps(text: &str) -> Vec<String> {
    let mut out: Vec<(u64, u64, String, String)> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        // offset, dev, inode: skip (inodes of shmem/memfd change on restore)
        let path: Vec<&str> = it.skip(3).collect();
        let path = path.join(" ");
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if let Some(last) = out.last_mut() {
            if last.1 == a && last.2 == perms && last.3 == path {
                last.1 = b;
                continue;
            }
        }
        out.push((a, b, perms.to_string(), path));
    }
    out.into_iter()
        .map(|(a, b, p, path)| {
            if path.is_empty() {
                format!("{a:x}-{b:x} {p}")
            } else {
                format!("{a:x}-{b:x} {p} {path}")
            }
        })
        .collect()
}

/// Drop inode numbers from fd link targets: `pipe:[123]` → `pipe`,
/// `socket:[9]` → `socket`; `anon_inode:[eventfd]` and paths stay.
pub fn normalize_fd_target(t: &str) -> String {
    for kind in ["pipe:[", "socket:["] {
        if let Some(rest) = t.strip_prefix(kind) {
            if rest.ends_with(']') && rest[..rest.len() - 1].bytes().all(|c| c.is_ascii_digit()) {
                return kind.trim_end_matches(":[").to_string();
            }
        }
    }
    t.to_string()
}

/// Normalize mountinfo: mount point, root, fs type, source (IDs dropped).
pub fn normalize_mountinfo(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let post: Vec<&str> = post.split_whitespace().collect();
            Some(format!(
                "{} {} {} {}",
                pre.get(4)?,
                pre.get(3)?,
                post.first()?,
                post.get(1).unwrap_or(&"")
            ))
        })
        .collect();
    v.sort();
    v
}

fn proc_snapshot(p: ProcId) -> Result<ProcSnapshot, SnapshotError> {
    let maps = normalize_maps(&read(format!("/proc/{}/maps", p.pid))?);
    let dir = format!("/proc/{}/fd", p.pid);
    let rd = std::fs::read_dir(&dir).map_err(|source| SnapshotError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut fds = BTreeMap::new();
    for e in rd.flatten() {
        let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let target = std::fs::read_link(e.path())
            .map(|t| normalize_fd_target(&t.to_string_lossy()))
            .unwrap_or_else(|_| "?".into());
        fds.insert(n, target);
    }
    if !p.exists() {
        return Err(SnapshotError::Gone(p.pid));
    }
    Ok(ProcSnapshot {
        comm: p.comm(),
        maps,
        fds,
    })
}

/// Snapshot `root` and its descendants.
pub fn take(root: ProcId, with_mounts: bool) -> Result<TreeSnapshot, SnapshotError> {
    if !root.alive() {
        return Err(SnapshotError::Gone(root.pid));
    }
    let mut procs = BTreeMap::new();
    for p in tree(root) {
        let key = ns_pid(p.pid).unwrap_or(p.pid);
        procs.insert(key, proc_snapshot(p)?);
    }
    let mounts = if with_mounts {
        Some(normalize_mountinfo(&read(format!(
            "/proc/{}/mountinfo",
            root.pid
        ))?))
    } else {
        None
    };
    Ok(TreeSnapshot { procs, mounts })
}

/// Human-readable differences (empty when equal).
pub fn compare(before: &TreeSnapshot, after: &TreeSnapshot) -> Vec<String> {
    let mut d = Vec::new();
    for pid in before.procs.keys() {
        if !after.procs.contains_key(pid) {
            d.push(format!("pid {pid} ({}) is missing", before.procs[pid].comm));
        }
    }
    for pid in after.procs.keys() {
        if !before.procs.contains_key(pid) {
            d.push(format!("pid {pid} ({}) is new", after.procs[pid].comm));
        }
    }
    for (pid, b) in &before.procs {
        let Some(a) = after.procs.get(pid) else {
            continue;
        };
        for m in &b.maps {
            if !a.maps.contains(m) {
                d.push(format!("pid {pid}: mapping lost: {m}"));
            }
        }
        for m in &a.maps {
            if !b.maps.contains(m) {
                d.push(format!("pid {pid}: mapping appeared: {m}"));
            }
        }
        for (fd, t) in &b.fds {
            match a.fds.get(fd) {
                None => d.push(format!("pid {pid}: fd {fd} ({t}) lost")),
                Some(t2) if t2 != t => d.push(format!("pid {pid}: fd {fd} was {t}, now {t2}")),
                _ => {}
            }
        }
        for (fd, t) in &a.fds {
            if !b.fds.contains_key(fd) {
                d.push(format!("pid {pid}: fd {fd} ({t}) appeared"));
            }
        }
    }
    if let (Some(bm), Some(am)) = (&before.mounts, &after.mounts) {
        for m in bm {
            if !am.contains(m) {
                d.push(format!("mount lost: {m}"));
            }
        }
        for m in am {
            if !bm.contains(m) {
                d.push(format!("mount appeared: {m}"));
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0000000-55d0c0001000 r--p 00000000 fd:01 1234 /usr/bin/cat
55d0c0001000-55d0c0005000 r-xp 00001000 fd:01 1234 /usr/bin/cat
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
7f0000001000-7f0000003000 rw-p 00000000 00:00 0
7f0000003000-7f0000004000 rw-s 00000000 00:01 77 /memfd:x (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn maps_merge_and_drop_inodes() {
        let n = normalize_maps(MAPS);
        assert_eq!(
            n,
            [
                "55d0c0000000-55d0c0001000 r--p /usr/bin/cat",
                "55d0c0001000-55d0c0005000 r-xp /usr/bin/cat",
                "7f0000000000-7f0000003000 rw-p",
                "7f0000003000-7f0000004000 rw-s /memfd:x (deleted)",
                "7ffd00000000-7ffd00021000 rw-p [stack]",
            ]
        );
        // same layout, other inode for the memfd, split differently: equal
        let other = MAPS.replace("00:01 77", "00:01 99").replace(
            "7f0000000000-7f0000001000 rw-p 00000000 00:00 0\n7f0000001000-7f0000003000",
            "7f0000000000-7f0000002000 rw-p 00000000 00:00 0\n7f0000002000-7f0000003000",
        );
        assert_eq!(normalize_maps(&other), n);
        // a protection change is a difference
        let changed = MAPS.replace(
            "7f0000001000-7f0000003000 rw-p",
            "7f0000001000-7f0000003000 r--p",
        );
        assert_ne!(normalize_maps(&changed), n);
    }

    fn snap(maps: &str, fds: &[(i32, &str)]) -> TreeSnapshot {
        let mut procs = BTreeMap::new();
        procs.insert(
            1,
            ProcSnapshot {
                comm: "t".into(),
                maps: normalize_maps(maps),
                fds: fds
                    .iter()
                    .map(|(n, t)| (*n, normalize_fd_target(t)))
                    .collect(),
            },
        );
        TreeSnapshot {
            procs,
            mounts: None,
        }
    }

    #[test]
    fn compare_reports_differences() {
        let a = snap(MAPS, &[(0, "/dev/null"), (3, "pipe:[100]")]);
        let b = snap(MAPS, &[(0, "/dev/null"), (3, "pipe:[555]")]);
        assert!(compare(&a, &b).is_empty());
        let c = snap(MAPS, &[(0, "/dev/null"), (3, "socket:[1]"), (4, "/tmp/x")]);
        let d = compare(&a, &c);
        assert_eq!(
            d,
            [
                "pid 1: fd 3 was pipe, now socket",
                "pid 1: fd 4 (/tmp/x) appeared"
            ]
        );
        let short = MAPS.lines().take(3).collect::<Vec<_>>().join("\n");
        let e = snap(&short, &[(0, "/dev/null"), (3, "pipe:[1]")]);
        let d = compare(&a, &e);
        // the anon area shrank (lost + appeared), memfd and stack lost
        assert_eq!(d.len(), 4);
        assert!(d[0].starts_with("pid 1: mapping lost: 7f0000000000-7f0000003000"));
        assert_eq!(
            d[3],
            "pid 1: mapping appeared: 7f0000000000-7f0000001000 rw-p"
        );
        let mut f = a.clone();
        f.procs.insert(2, f.procs[&1].clone());
        assert_eq!(compare(&a, &f), ["pid 2 (t) is new"]);
    }

    #[test]
    fn fd_targets() {
        assert_eq!(normalize_fd_target("pipe:[123]"), "pipe");
        assert_eq!(normalize_fd_target("socket:[9]"), "socket");
        assert_eq!(
            normalize_fd_target("anon_inode:[eventfd]"),
            "anon_inode:[eventfd]"
        );
        assert_eq!(normalize_fd_target("/tmp/a (deleted)"), "/tmp/a (deleted)");
    }

    #[test]
    fn mountinfo() {
        let t = "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n\
                 25 22 0:22 / /sys rw - sysfs sysfs rw\n";
        assert_eq!(
            normalize_mountinfo(t),
            ["/proc / proc proc", "/sys / sysfs sysfs"]
        );
    }

    #[test]
    fn snapshot_of_self() {
        let me = ProcId::of(std::process::id() as i32).unwrap();
        let s = take(me, true).unwrap();
        let mine = s.procs.values().next().unwrap();
        assert!(!mine.maps.is_empty());
        assert!(mine.fds.contains_key(&0) || mine.fds.contains_key(&1));
        assert!(s.mounts.unwrap().iter().any(|m| m.starts_with("/proc ")));
    }
}
