//! The zdtm conformance catalogue: the protocol library every test uses
//! (option parsing, daemonizing, SIGTERM wait, verdict), helpers (data
//! patterns, futex barriers, children), kernel feature probes, and the
//! tests themselves under `tests/<family>/<name>.rs`.

pub mod cgroup;
pub mod child;
pub mod desc;
pub mod features;
pub mod opts;
pub mod pattern;
pub mod sync;
pub mod sys;
pub mod test;
pub mod tests;

pub use desc::{Desc, Flag, Flavor, ALL_FLAVORS, NS_FLAVORS};
pub use opts::{Opts, OptsError};
pub use test::{run, Body, Test};

/// What every test file imports.
pub mod prelude {
    pub use crate::child::{fork_child, proc_state, proc_status, Child};
    pub use crate::desc::{Desc, Flag, Flavor, ALL_FLAVORS, NS_FLAVORS};
    pub use crate::pattern;
    pub use crate::sync::{self, Barrier, SharedPage, TaskWaiter};
    pub use crate::sys::{self, Mapping};
    pub use crate::test::Test;
    pub use anyhow::{anyhow, bail, ensure, Context, Result};
    pub use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    /// Check a buffer against a pattern, naming the region on failure.
    pub fn check_pattern(what: &str, seed: u64, buf: &[u8]) -> Result<()> {
        pattern::check(seed, buf).map_err(|off| anyhow!("{what}: data differs at offset {off:#x}"))
    }

    /// The permission string ("rw-p") of the /proc/self/maps line that
    /// starts at `addr`.
    pub fn maps_perms(addr: usize) -> Result<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").context("read /proc/self/maps")?;
        for l in maps.lines() {
            let mut it = l.split_whitespace();
            let range = it.next().unwrap_or("");
            let perms = it.next().unwrap_or("");
            if let Some((s, _)) = range.split_once('-') {
                if usize::from_str_radix(s, 16).ok() == Some(addr) {
                    return Ok(perms.to_string());
                }
            }
        }
        bail!("no mapping starts at {addr:#x} in /proc/self/maps")
    }

    /// The VmFlags of the smaps entry that starts at `addr`.
    pub fn smaps_vmflags(addr: usize) -> Result<Vec<String>> {
        let s = std::fs::read_to_string("/proc/self/smaps").context("read /proc/self/smaps")?;
        let mut inside = false;
        for l in s.lines() {
            let first = l.split_whitespace().next().unwrap_or("");
            if let Some((a, _)) = first.split_once('-') {
                if let Ok(a) = usize::from_str_radix(a, 16) {
                    inside = a == addr;
                    continue;
                }
            }
            if inside {
                if let Some(f) = l.strip_prefix("VmFlags:") {
                    return Ok(f.split_whitespace().map(str::to_string).collect());
                }
            }
        }
        bail!("no smaps entry with VmFlags starts at {addr:#x}")
    }

    /// readlink /proc/self/fd/N.
    pub fn fd_link(fd: i32) -> Result<String> {
        let p = format!("/proc/self/fd/{fd}");
        Ok(std::fs::read_link(&p)
            .with_context(|| format!("readlink {p}"))?
            .to_string_lossy()
            .into_owned())
    }

    /// The lines of /proc/self/fdinfo/N.
    pub fn fdinfo(fd: i32) -> Result<String> {
        let p = format!("/proc/self/fdinfo/{fd}");
        std::fs::read_to_string(&p).with_context(|| format!("read {p}"))
    }

    /// Poll `cond` every 10 ms for up to `ms` milliseconds.
    pub fn wait_for(ms: u64, mut cond: impl FnMut() -> bool) -> bool {
        let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            if cond() {
                return true;
            }
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
