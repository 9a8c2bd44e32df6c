//! Reading a task's seccomp filters with ptrace, and keeping them from
//! judging the syscalls criu runs inside it.

use nix::errno::Errno;

use super::{check, SysResult};

const PTRACE_O_SUSPEND_SECCOMP: libc::c_long = 1 << 21;
const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
const PTRACE_SECCOMP_GET_METADATA: libc::c_uint = 0x420d;
/// Most instructions a classic BPF program may have.
pub const BPF_MAXINSNS: usize = 4096;
/// Size of one `struct sock_filter`.
pub const SOCK_FILTER_SIZE: usize = 8;

/// The ptrace options criu seizes with ([`super::ptrace::SEIZE_OPTIONS`]),
/// plus `PTRACE_O_SUSPEND_SECCOMP`: the task's seccomp mode stops applying
/// while criu holds it, so remote syscalls work even in strict mode. Dropped
/// again by the kernel at detach.
pub fn suspend(tid: i32) -> SysResult<()> {
    let raw = super::ptrace::SEIZE_OPTIONS.bits() as libc::c_long | PTRACE_O_SUSPEND_SECCOMP;
    // SAFETY: PTRACE_SETOPTIONS takes the options as an integer in `data`
    // and touches no memory of ours.
    check(unsafe {
        libc::ptrace(
            libc::PTRACE_SETOPTIONS,
            tid,
            0usize,
            raw as *mut libc::c_void,
        )
    })
    .map(|_| ())
}

/// The BPF program of filter `index` of a stopped tracee, counted from the
/// newest (0); `None` past the oldest.
pub fn get_filter(tid: i32, index: usize) -> SysResult<Option<Vec<u8>>> {
    let mut buf = vec![0u8; BPF_MAXINSNS * SOCK_FILTER_SIZE];
    // SAFETY: buf has room for BPF_MAXINSNS instructions, the most a filter
    // can hold; the kernel writes at most that many.
    let r = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            tid,
            index,
            buf.as_mut_ptr().cast::<libc::c_void>(),
        )
    });
    match r {
        Ok(n) => {
            buf.truncate(n as usize * SOCK_FILTER_SIZE);
            Ok(Some(buf))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The flags filter `index` was installed with (`SECCOMP_FILTER_FLAG_*`),
/// `None` where the kernel cannot tell.
pub fn get_flags(tid: i32, index: usize) -> SysResult<Option<u64>> {
    // struct seccomp_metadata { __u64 filter_off; __u64 flags; }
    let mut meta = [index as u64, 0u64];
    // SAFETY: meta is a live 16-byte seccomp_metadata and its size is passed.
    let r = check(unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_METADATA,
            tid,
            std::mem::size_of_val(&meta),
            meta.as_mut_ptr().cast::<libc::c_void>(),
        )
    });
    match r {
        Ok(_) => Ok(Some(meta[1])),
        Err(Errno::EIO) | Err(Errno::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}
