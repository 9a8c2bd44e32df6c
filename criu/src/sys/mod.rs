//! Layer 0: thin safe wrappers of the syscalls nix lacks.
//!
//! Every `unsafe` block of the crate lives below this module, each with a
//! `// SAFETY:` comment saying why it is sound.
#![allow(unsafe_code)]

pub mod clone3;
pub mod cpu;
pub mod epoll_at;
pub mod events;
pub mod fanotify;
pub mod fd;
pub mod file_map;
pub mod fown;
pub mod kcmp;
pub mod mount_api;
pub mod netlink;
pub mod pagemap_scan;
pub mod pidfd;
pub mod pidfd_more;
pub mod probe;
pub mod ptrace;
pub mod rusage;
pub mod seccomp;
pub mod sock;
pub mod splice;
pub mod sysv;
#[doc(hidden)]
pub mod testing;
pub mod thread_creds;
pub mod tty;
pub mod tty_queue;
pub mod uffd;

pub use nix::errno::Errno;

/// Size of a page on every architecture we support.
pub const PAGE_SIZE: u64 = 4096;

/// Result of the wrappers here: the raw errno, to be wrapped with context by
/// the caller.
pub type SysResult<T> = std::result::Result<T, Errno>;

/// Turns a raw `syscall(2)` return value into a result.
fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}
