//! Cgroup helpers shared by the cgroup tests.

use anyhow::{bail, Context, Result};

/// The cgroup v2 path of `who` (`self` or a PID: the `0::/path` line) as
/// the reader sees it.
pub fn v2_path(who: &str) -> Result<String> {
    let text = std::fs::read_to_string(format!("/proc/{who}/cgroup")).context("read cgroup")?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
        .context("no cgroup v2 line in /proc/PID/cgroup")
}

/// Where the whole cgroup v2 hierarchy is mounted.
pub fn v2_mount() -> Result<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").context("read mountinfo")?;
    for l in text.lines() {
        let (left, right) = l.split_once(" - ").context("mountinfo line")?;
        if right.split_whitespace().next() == Some("cgroup2")
            && left.split_whitespace().nth(3) == Some("/")
        {
            return left
                .split_whitespace()
                .nth(4)
                .map(str::to_owned)
                .context("mountinfo line");
        }
    }
    bail!("no cgroup2 mount")
}

/// The cgroup namespace of `who` (`self` or a PID), as its link reads.
pub fn ns(who: &str) -> Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{who}/ns/cgroup"))
        .with_context(|| format!("readlink /proc/{who}/ns/cgroup"))
}

/// /proc/self/cgroup.
pub fn own() -> Result<String> {
    of("self")
}

/// /proc/WHO/cgroup (`self` or a PID).
pub fn of(who: &str) -> Result<String> {
    std::fs::read_to_string(format!("/proc/{who}/cgroup"))
        .with_context(|| format!("read /proc/{who}/cgroup"))
}
