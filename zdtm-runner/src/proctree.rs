//! Process trees as seen in /proc: descendants, identity, killing by PID.

use std::collections::BTreeSet;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process identified by PID and start time, so a recycled PID is not
/// mistaken for the original.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId {
    pub pid: i32,
    pub start: u64,
}

/// Fields of /proc/PID/stat after the command name.
fn stat_tail(pid: i32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let i = s.rfind(')')?;
    Some(s[i + 1..].to_string())
}

/// Parse (state, starttime) out of the text after `)` in /proc/PID/stat.
pub fn parse_stat_tail(tail: &str) -> Option<(char, u64)> {
    let f: Vec<&str> = tail.split_whitespace().collect();
    // tail[0] is field 3 (state); starttime is field 22.
    let state = f.first()?.chars().next()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, start))
}

impl ProcId {
    /// Identify the live process `pid`, if any.
    pub fn of(pid: i32) -> Option<ProcId> {
        let (_, start) = parse_stat_tail(&stat_tail(pid)?)?;
        Some(ProcId { pid, start })
    }

    /// Still there and not a zombie.
    pub fn alive(&self) -> bool {
        match stat_tail(self.pid).and_then(|t| parse_stat_tail(&t)) {
            Some((state, start)) => start == self.start && state != 'Z' && state != 'X',
            None => false,
        }
    }

    /// Still holds its PID (alive or an unreaped zombie).
    pub fn exists(&self) -> bool {
        match stat_tail(self.pid).and_then(|t| parse_stat_tail(&t)) {
            Some((_, start)) => start == self.start,
            None => false,
        }
    }

    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    }
}

/// Direct children of `pid` (of all its threads).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = BTreeSet::new();
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    for t in rd.flatten() {
        let p = t.path().join("children");
        if let Ok(s) = std::fs::read_to_string(p) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    out.into_iter().collect()
}

/// `root` and all its descendants that are alive now, root first.
pub fn tree(root: ProcId) -> Vec<ProcId> {
    if !root.exists() {
        return vec![];
    }
    let mut seen = vec![root];
    let mut i = 0;
    while i < seen.len() {
        for c in children(seen[i].pid) {
            if let Some(id) = ProcId::of(c) {
                if !seen.contains(&id) {
                    seen.push(id);
                }
            }
        }
        i += 1;
    }
    seen
}

fn signal(p: ProcId, sig: Signal) {
    if p.exists() {
        let _ = kill(Pid::from_raw(p.pid), sig);
    }
}

/// Kill `root` and everything below it: stop them all first so nobody forks
/// behind our back, then SIGKILL. Only these PIDs are touched.
pub fn kill_tree(root: ProcId) {
    kill_set(&tree(root));
}

/// Kill exactly these processes (stop, rescan their children, kill).
pub fn kill_set(procs: &[ProcId]) {
    let mut all: Vec<ProcId> = Vec::new();
    for p in procs {
        for q in tree(*p) {
            if !all.contains(&q) {
                signal(q, Signal::SIGSTOP);
                all.push(q);
            }
        }
    }
    // Children forked before the stop landed.
    let mut i = 0;
    while i < all.len() {
        for c in children(all[i].pid) {
            if let Some(id) = ProcId::of(c) {
                if !all.contains(&id) {
                    signal(id, Signal::SIGSTOP);
                    all.push(id);
                }
            }
        }
        i += 1;
    }
    for p in &all {
        signal(*p, Signal::SIGKILL);
    }
}

/// The PID inside its innermost pid namespace (last `NSpid:` field).
pub fn ns_pid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing() {
        let tail = " S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat_tail(tail), Some(('S', 987654)));
        assert_eq!(parse_stat_tail(" Z 1"), None);
    }

    #[test]
    fn self_is_alive_and_has_a_tree() {
        let me = ProcId::of(std::process::id() as i32).unwrap();
        assert!(me.alive());
        assert_eq!(tree(me)[0], me);
        let fake = ProcId {
            pid: me.pid,
            start: me.start + 1,
        };
        assert!(!fake.alive());
        assert!(ns_pid(me.pid).is_some());
    }
}
