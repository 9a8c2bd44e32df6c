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

const KCMP_VM: libc::c_int = 1;

/// True when tasks `pid_a` and `pid_b` share one address space (threads of
/// one process, or a vfork/CLONE_VM child and its parent).
pub fn same_vm(pid_a: i32, pid_b: i32) -> SysResult<bool> {
    // SAFETY: integers only; kcmp returns 0 for equal, 1/2 for ordered.
    let r = check(unsafe { libc::syscall(libc::SYS_kcmp, pid_a, pid_b, KCMP_VM, 0, 0) })?;
    Ok(r == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_vm() {
        let me = std::process::id() as i32;
        assert!(same_vm(me, me).unwrap());
        let ppid = nix::unistd::getppid().as_raw();
        if let Ok(same) = same_vm(me, ppid) {
            assert!(!same);
        }
    }
}
