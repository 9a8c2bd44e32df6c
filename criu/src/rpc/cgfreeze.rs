//! `freeze_cgroup`: the tree's cgroup is frozen once the client has
//! answered `pre-dump`, so that no task forks or exits while criu seizes
//! them one by one.
//!
//! - cgroup v2 (`cgroup.freeze`): frozen, then thawed as soon as every
//!   task is seized (they stay stopped under ptrace, and the remote
//!   syscalls of the dump need them out of the freezer).
//! - cgroup v1 (`freezer.state`): a frozen task enters no ptrace stop, so
//!   while the cgroup is frozen criu seizes and interrupts every task of
//!   it (and of the cgroups below) without waiting, then thaws it: each
//!   task stops in the trap criu set, and the dump's seize finds it so.
//!
//! In any case the cgroup is thawed when the dump is over. A cgroup that
//! was frozen before criu came is left frozen, and then cannot be dumped
//! (its tasks cannot run a remote syscall): that is refused up front.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::scripts::{Action, Notify};

/// How long the kernel may take to freeze every task of the cgroup.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which freezer a cgroup directory has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// `cgroup.freeze` / `cgroup.events`.
    V2,
    /// `freezer.state` (THAWED, FREEZING, FROZEN).
    V1,
}

/// A cgroup directory to freeze around the dump.
#[derive(Debug)]
pub struct CgFreeze {
    dir: PathBuf,
    version: Version,
    /// Frozen by criu, to thaw at the end.
    frozen: Cell<bool>,
    /// Tasks of a v1 cgroup seized in advance, let go at the end if the
    /// dump never took them (a failed dump, a task outside the tree).
    early: RefCell<Vec<i32>>,
}

fn read(f: &Path) -> Result<String, String> {
    std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))
}

fn write(f: &Path, v: &str) -> Result<(), String> {
    std::fs::write(f, v).map_err(|e| format!("writing {v} to {}: {e}", f.display()))
}

/// The thread ids of `dir` and of every cgroup below it (v1 `tasks`).
fn tasks_below(dir: &Path, out: &mut Vec<i32>) -> Result<(), String> {
    let text = read(&dir.join("tasks"))?;
    out.extend(
        text.split_whitespace()
            .filter_map(|t| t.parse::<i32>().ok()),
    );
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            tasks_below(&e.path(), out)?;
        }
    }
    Ok(())
}

impl CgFreeze {
    /// Checks that `path` is a cgroup directory criu can freeze.
    pub fn new(path: &str) -> Result<CgFreeze, String> {
        let dir = PathBuf::from(path);
        let what = |m: &str| format!("freeze_cgroup {path}: {m}");
        if !dir.is_dir() {
            return Err(what("no such cgroup directory"));
        }
        let version = if dir.join("cgroup.freeze").exists() {
            Version::V2
        } else if dir.join("freezer.state").exists() {
            Version::V1
        } else {
            return Err(what(
                "neither a cgroup v2 directory (cgroup.freeze) nor a v1 freezer (freezer.state)",
            ));
        };
        let cg = CgFreeze {
            dir,
            version,
            frozen: Cell::new(false),
            early: RefCell::new(Vec::new()),
        };
        if cg.is_frozen().map_err(|e| what(&e))? {
            return Err(what(
                "is frozen already; its tasks could not run what the dump asks of them (thaw it first)",
            ));
        }
        Ok(cg)
    }

    fn is_frozen(&self) -> Result<bool, String> {
        Ok(match self.version {
            Version::V2 => read(&self.dir.join("cgroup.events"))?
                .lines()
                .any(|l| l.trim() == "frozen 1"),
            Version::V1 => read(&self.dir.join("freezer.state"))?.trim() == "FROZEN",
        })
    }

    fn set(&self, frozen: bool) -> Result<(), String> {
        match self.version {
            Version::V2 => write(
                &self.dir.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
            Version::V1 => write(
                &self.dir.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
        }
    }

    /// Freezes the cgroup and waits until every task of it is frozen. A v1
    /// cgroup is thawed again at once, its tasks seized and interrupted.
    pub fn freeze(&self) -> Result<(), String> {
        self.set(true)?;
        self.frozen.set(true);
        let start = Instant::now();
        while !self.is_frozen()? {
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(format!(
                    "cgroup {} did not freeze within {:?}",
                    self.dir.display(),
                    FREEZE_TIMEOUT
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::info!(cgroup = %self.dir.display(), "cgroup frozen");
        if self.version == Version::V1 {
            let mut tids = Vec::new();
            tasks_below(&self.dir, &mut tids)?;
            for tid in tids {
                crate::remote::Tracee::interrupt_early(tid)
                    .map_err(|e| format!("seizing task {tid} of the frozen cgroup: {e}"))?;
                self.early.borrow_mut().push(tid);
            }
            self.thaw()?;
        }
        Ok(())
    }

    /// Thaws what [`CgFreeze::freeze`] froze.
    pub fn thaw(&self) -> Result<(), String> {
        if self.frozen.replace(false) {
            self.set(false)?;
            tracing::info!(cgroup = %self.dir.display(), "cgroup thawed");
        }
        Ok(())
    }
}

impl Drop for CgFreeze {
    fn drop(&mut self) {
        if let Err(e) = self.thaw() {
            tracing::error!("{e}");
        }
        for tid in self.early.take() {
            crate::remote::Tracee::let_go_early(tid);
        }
    }
}

/// Passes every action on to `inner`, freezes the cgroup right after
/// `pre-dump` and thaws it once every task is seized (they stay stopped
/// under ptrace; remote syscalls need them thawed).
pub struct FreezeAfterPreDump<'a> {
    pub inner: &'a dyn Notify,
    pub cg: Option<&'a CgFreeze>,
}

impl Notify for FreezeAfterPreDump<'_> {
    fn notify(&self, action: Action, root: i32) -> Result<(), String> {
        self.inner.notify(action, root)?;
        if let (Action::PreDump, Some(cg)) = (action, self.cg) {
            cg.freeze().map_err(|e| format!("freeze_cgroup: {e}"))?;
        }
        Ok(())
    }

    fn seized(&self, root: i32) -> Result<(), String> {
        self.inner.seized(root)?;
        match self.cg {
            Some(cg) => cg.thaw().map_err(|e| format!("freeze_cgroup: {e}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_are_not_cgroups_are_refused_by_name() {
        let e = CgFreeze::new("/nonexistent/criu-rs-cg").unwrap_err();
        assert!(
            e.contains("/nonexistent/criu-rs-cg") && e.contains("no such"),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        let e = CgFreeze::new(d.path().to_str().unwrap()).unwrap_err();
        assert!(e.contains("neither a cgroup v2"), "{e}");
        std::fs::write(d.path().join("freezer.state"), "FROZEN\n").unwrap();
        let e = CgFreeze::new(d.path().to_str().unwrap()).unwrap_err();
        assert!(e.contains("frozen already"), "{e}");
    }

    #[test]
    fn a_fake_v1_cgroup_is_frozen_then_thawed_at_once() {
        // A v1 freezer with no tasks: frozen (the file then reads FROZEN,
        // as the kernel's would once every task is), then thawed before
        // the dump seizes anything.
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("freezer.state");
        std::fs::write(&state, "THAWED\n").unwrap();
        std::fs::write(d.path().join("tasks"), "").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/tasks"), "").unwrap();
        let cg = CgFreeze::new(d.path().to_str().unwrap()).unwrap();
        cg.freeze().unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "THAWED");
        std::fs::write(&state, "x").unwrap();
        drop(cg);
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "x");
    }

    #[test]
    fn a_fake_cgroup_is_frozen_and_thawed() {
        // A plain directory that looks like a cgroup whose tasks freeze
        // at once.
        let d = tempfile::tempdir().unwrap();
        let freeze = d.path().join("cgroup.freeze");
        let events = d.path().join("cgroup.events");
        std::fs::write(&freeze, "0\n").unwrap();
        std::fs::write(&events, "populated 1\nfrozen 1\n").unwrap();
        let e = CgFreeze::new(d.path().to_str().unwrap()).unwrap_err();
        assert!(e.contains("frozen already"), "{e}");
        std::fs::write(&events, "populated 1\nfrozen 0\n").unwrap();
        let cg = CgFreeze::new(d.path().to_str().unwrap()).unwrap();
        std::fs::write(&events, "frozen 1\n").unwrap();
        let n = FreezeAfterPreDump {
            inner: &crate::scripts::Silent,
            cg: Some(&cg),
        };
        n.notify(Action::PreDump, 1).unwrap();
        assert_eq!(std::fs::read_to_string(&freeze).unwrap(), "1");
        n.seized(1).unwrap();
        assert_eq!(std::fs::read_to_string(&freeze).unwrap(), "0");
        // Thawed once only; the drop writes nothing more.
        std::fs::write(&freeze, "x").unwrap();
        drop(cg);
        assert_eq!(std::fs::read_to_string(&freeze).unwrap(), "x");
    }
}
