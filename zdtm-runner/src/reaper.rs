//! The runner is a child subreaper: daemonized and restored tests become its
//! children. One thread reaps every child and records how it ended; test
//! workers ask for the status of the PIDs they care about.
//!
//! Consequence: nothing else in the process may call `wait` (so no
//! `Command::status()`/`output()` once the reaper runs; spawn and ask here).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

#[derive(Default)]
struct Inner {
    exited: Mutex<HashMap<i32, Exit>>,
    cv: Condvar,
}

/// Handle to the process-wide reaper.
#[derive(Clone)]
pub struct Reaper {
    inner: Arc<Inner>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

impl Reaper {
    /// Become a child subreaper and start the reaping thread (once).
    pub fn start() -> Result<Reaper, Errno> {
        if let Some(r) = REAPER.get() {
            return Ok(r.clone());
        }
        nix::sys::prctl::set_child_subreaper(true)?;
        let r = REAPER.get_or_init(|| {
            let r = Reaper {
                inner: Arc::new(Inner::default()),
            };
            let inner = r.inner.clone();
            std::thread::Builder::new()
                .name("reaper".into())
                .spawn(move || reap_loop(&inner))
                .map(|_| ())
                .unwrap_or_else(|e| eprintln!("zdtm-runner: cannot start the reaper thread: {e}"));
            r
        });
        Ok(r.clone())
    }

    /// Take the recorded exit of `pid`, if it has ended.
    pub fn try_take(&self, pid: i32) -> Option<Exit> {
        self.inner
            .exited
            .lock()
            .map(|mut m| m.remove(&pid))
            .unwrap_or(None)
    }

    /// Forget any stale record for `pid` (call right after spawning it).
    pub fn forget(&self, pid: i32) {
        if let Ok(mut m) = self.inner.exited.lock() {
            m.remove(&pid);
        }
    }

    /// Wait up to `timeout` for `pid` to end and take its exit.
    pub fn wait(&self, pid: i32, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        let Ok(mut m) = self.inner.exited.lock() else {
            return None;
        };
        loop {
            if let Some(e) = m.remove(&pid) {
                return Some(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Wake up now and then: a PID that is not our child (e.g. a
            // grandchild still parented elsewhere) never shows up here, and
            // callers poll /proc between waits.
            let step = (deadline - now).min(Duration::from_millis(50));
            m = match self.inner.cv.wait_timeout(m, step) {
                Ok((g, _)) => g,
                Err(_) => return None,
            };
        }
    }
}

fn reap_loop(inner: &Inner) {
    loop {
        match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Ok(st) => {
                let rec = match st {
                    WaitStatus::Exited(pid, code) => Some((pid, Exit::Code(code))),
                    WaitStatus::Signaled(pid, sig, _) => Some((pid, Exit::Signal(sig as i32))),
                    _ => None,
                };
                if let Some((pid, e)) = rec {
                    if let Ok(mut m) = inner.exited.lock() {
                        m.insert(pid.as_raw(), e);
                    }
                    inner.cv.notify_all();
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
