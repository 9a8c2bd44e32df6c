//! Forking children that run a closure and report how it went.

use crate::sys;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};

/// A forked child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    pub pid: Pid,
}

/// Fork; the child runs `f` and exits 0 on Ok, 1 (after printing the error
/// to stderr) on Err. Call only while single-threaded.
pub fn fork_child<F: FnOnce() -> anyhow::Result<()>>(f: F) -> anyhow::Result<Child> {
    match sys::fork().map_err(|e| anyhow::anyhow!("fork: {e}"))? {
        ForkResult::Parent { child } => Ok(Child { pid: child }),
        ForkResult::Child => {
            let ready = crate::test::READY_FD.swap(-1, std::sync::atomic::Ordering::SeqCst);
            if ready >= 0 {
                let _ = nix::unistd::close(ready);
            }
            let code = match f() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("child {}: {e:#}", std::process::id());
                    1
                }
            };
            sys::exit_now(code)
        }
    }
}

impl Child {
    /// Wait for the child and require exit status 0.
    pub fn wait_ok(&self) -> anyhow::Result<()> {
        match waitpid(self.pid, None).map_err(|e| anyhow::anyhow!("waitpid {}: {e}", self.pid))? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => anyhow::bail!("child {} ended badly: {other:?}", self.pid),
        }
    }

    /// Wait for the child and return its status.
    pub fn wait(&self) -> anyhow::Result<WaitStatus> {
        waitpid(self.pid, None).map_err(|e| anyhow::anyhow!("waitpid {}: {e}", self.pid))
    }

    /// Has it ended (without reaping it)?
    pub fn is_zombie_or_gone(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(s) => s
                .rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
                .unwrap_or(false),
            Err(_) => true,
        }
    }

    /// SIGKILL and reap (for cleanup; errors ignored).
    pub fn kill(&self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        let _ = waitpid(self.pid, Some(WaitPidFlag::__WALL));
    }

    /// Send a signal.
    pub fn signal(&self, sig: Signal) -> anyhow::Result<()> {
        kill(self.pid, sig).map_err(|e| anyhow::anyhow!("kill({}, {sig}): {e}", self.pid))
    }
}

/// The state letter of a task from /proc/PID/stat (R, S, T, Z, ...).
pub fn proc_state(pid: Pid) -> anyhow::Result<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| anyhow::anyhow!("read /proc/{pid}/stat: {e}"))?;
    let rest = s
        .rsplit_once(')')
        .map(|(_, r)| r.trim_start())
        .unwrap_or("");
    rest.chars()
        .next()
        .ok_or_else(|| anyhow::anyhow!("/proc/{pid}/stat: no state in {s:?}"))
}

/// A field of /proc/PID/status ("VmLck", "SigBlk", ...), without the key.
pub fn proc_status(pid: Option<Pid>, key: &str) -> anyhow::Result<String> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let s = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("read {path}: {e}"))?;
    for line in s.lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k == key {
                return Ok(v.trim().to_string());
            }
        }
    }
    anyhow::bail!("{path}: no field {key}")
}
