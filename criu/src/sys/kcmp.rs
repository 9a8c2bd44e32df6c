//! kcmp(2): are two file descriptors the same open file description?

use super::{check, SysResult};

const KCMP_FILE: libc::c_int = 0;

/// True when fd `a` of task `pid_a` and fd `b` of task `pid_b` refer to the
/// same open file description.
pub fn same_file(pid_a: i32, a: i32, pid_b: i32, b: i32) -> SysResult<bool> {
    // SAFETY: integers only; kcmp returns 0 for equal, 1/2 for ordered.
    let r = check(unsafe { libc::syscall(libc::SYS_kcmp, pid_a, pid_b, KCMP_FILE, a, b) })?;
    Ok(r == 0)
}
