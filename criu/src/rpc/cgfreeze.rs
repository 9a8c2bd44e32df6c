//! `freeze_cgroup`: the tree's cgroup is frozen (cgroup v2 `cgroup.freeze`)
//! once the client has answered `pre-dump`, so that no task forks or
//! exits while criu seizes them one by one; it is thawed as soon as every
//! task is seized (they stay stopped under ptrace, and the remote
//! syscalls of the dump need them out of the freezer), and in any case
//! when the dump is over. A cgroup that was frozen before criu came is
//! left frozen, and then cannot be dumped (its tasks cannot run a remote
//! syscall): that is refused up front.
//!
//! A cgroup v1 freezer is refused: its frozen tasks cannot enter the
//! ptrace stop criu waits for while seizing.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::scripts::{Action, Notify};

/// How long the kernel may take to freeze every task of the cgroup.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// A cgroup v2 directory to freeze around the dump.
#[derive(Debug)]
pub struct CgFreeze {
    dir: PathBuf,
    /// Frozen by criu, to thaw at the end.
    frozen: Cell<bool>,
}

fn frozen(dir: &Path) -> Result<bool, String> {
    let ev = dir.join("cgroup.events");
    let text = std::fs::read_to_string(&ev).map_err(|e| format!("{}: {e}", ev.display()))?;
    Ok(text.lines().any(|l| l.trim() == "frozen 1"))
}

impl CgFreeze {
    /// Checks that `path` is a cgroup v2 directory criu can freeze.
    pub fn new(path: &str) -> Result<CgFreeze, String> {
        let dir = PathBuf::from(path);
        let what = |m: &str| format!("freeze_cgroup {path}: {m}");
        if !dir.is_dir() {
            return Err(what("no such cgroup directory"));
        }
        if !dir.join("cgroup.freeze").exists() {
            if dir.join("freezer.state").exists() {
                return Err(what(
                    "a cgroup v1 freezer; criu-rs freezes only through cgroup v2's cgroup.freeze",
                ));
            }
            return Err(what("not a cgroup v2 directory with cgroup.freeze"));
        }
        if frozen(&dir).map_err(|e| what(&e))? {
            return Err(what(
                "is frozen already; its tasks could not run what the dump asks of them (thaw it first)",
            ));
        }
        Ok(CgFreeze {
            dir,
            frozen: Cell::new(false),
        })
    }

    fn write(&self, v: &str) -> Result<(), String> {
        let f = self.dir.join("cgroup.freeze");
        std::fs::write(&f, v).map_err(|e| format!("writing {v} to {}: {e}", f.display()))
    }

    /// Freezes the cgroup and waits until every task of it is frozen.
    pub fn freeze(&self) -> Result<(), String> {
        self.write("1")?;
        self.frozen.set(true);
        let start = Instant::now();
        while !frozen(&self.dir)? {
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
        Ok(())
    }

    /// Thaws what [`CgFreeze::freeze`] froze.
    pub fn thaw(&self) -> Result<(), String> {
        if self.frozen.replace(false) {
            self.write("0")?;
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
    fn paths_that_are_not_v2_cgroups_are_refused_by_name() {
        let e = CgFreeze::new("/nonexistent/criu-rs-cg").unwrap_err();
        assert!(
            e.contains("/nonexistent/criu-rs-cg") && e.contains("no such"),
            "{e}"
        );
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("freezer.state"), "THAWED\n").unwrap();
        let e = CgFreeze::new(d.path().to_str().unwrap()).unwrap_err();
        assert!(e.contains("cgroup v1"), "{e}");
        std::fs::remove_file(d.path().join("freezer.state")).unwrap();
        let e = CgFreeze::new(d.path().to_str().unwrap()).unwrap_err();
        assert!(e.contains("not a cgroup v2"), "{e}");
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
