//! The ptrace requests nix does not wrap: raw register sets (xstate), the
//! signal mask, and the rseq configuration.

use nix::unistd::Pid;

use super::{check, SysResult};

/// The options every tracee is seized with: syscall-stops told apart from
/// SIGTRAP, and tasks it creates attached too.
pub const SEIZE_OPTIONS: nix::sys::ptrace::Options =
    nix::sys::ptrace::Options::PTRACE_O_TRACESYSGOOD
        .union(nix::sys::ptrace::Options::PTRACE_O_TRACECLONE)
        .union(nix::sys::ptrace::Options::PTRACE_O_TRACEFORK)
        .union(nix::sys::ptrace::Options::PTRACE_O_TRACEVFORK);

/// `PTRACE_O_SUSPEND_SECCOMP` (1 << 21), which nix does not name.
pub const O_SUSPEND_SECCOMP: nix::sys::ptrace::Options =
    nix::sys::ptrace::Options::from_bits_retain(1 << 21);

/// `NT_X86_XSTATE`: the XSAVE area in the standard format.
pub const NT_X86_XSTATE: u32 = 0x202;
/// `NT_PRFPREG`: the legacy 512-byte FXSAVE area.
pub const NT_PRFPREG: u32 = 2;

const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;

fn ptrace_raw(
    req: libc::c_uint,
    pid: Pid,
    addr: usize,
    data: *mut libc::c_void,
) -> SysResult<libc::c_long> {
    // SAFETY: every caller passes a `data` pointer valid for the request and
    // its size; ptrace reads or writes at most that.
    check(unsafe { libc::ptrace(req, pid.as_raw(), addr, data) })
}

/// Reads register set `nt` into `buf`; returns how many bytes the kernel
/// filled.
pub fn getregset(pid: Pid, nt: u32, buf: &mut [u8]) -> SysResult<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    ptrace_raw(
        libc::PTRACE_GETREGSET,
        pid,
        nt as usize,
        (&mut iov as *mut libc::iovec).cast(),
    )?;
    Ok(iov.iov_len)
}

/// Writes register set `nt` from `buf`.
pub fn setregset(pid: Pid, nt: u32, buf: &[u8]) -> SysResult<()> {
    let mut iov = libc::iovec {
        // The kernel only reads through this pointer for SETREGSET.
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    ptrace_raw(
        libc::PTRACE_SETREGSET,
        pid,
        nt as usize,
        (&mut iov as *mut libc::iovec).cast(),
    )?;
    Ok(())
}

/// The blocked-signal mask of a stopped tracee (bit `n-1` = signal `n`).
pub fn getsigmask(pid: Pid) -> SysResult<u64> {
    let mut mask: u64 = 0;
    ptrace_raw(PTRACE_GETSIGMASK, pid, 8, (&mut mask as *mut u64).cast())?;
    Ok(mask)
}

/// Sets the blocked-signal mask of a stopped tracee.
pub fn setsigmask(pid: Pid, mask: u64) -> SysResult<()> {
    let mut m = mask;
    ptrace_raw(PTRACE_SETSIGMASK, pid, 8, (&mut m as *mut u64).cast())?;
    Ok(())
}

/// What a thread registered with rseq(2).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// `PTRACE_GET_RSEQ_CONFIGURATION`; a zero pointer means not registered.
pub fn get_rseq_configuration(pid: Pid) -> SysResult<RseqConfiguration> {
    let mut conf = RseqConfiguration::default();
    ptrace_raw(
        PTRACE_GET_RSEQ_CONFIGURATION,
        pid,
        std::mem::size_of::<RseqConfiguration>(),
        (&mut conf as *mut RseqConfiguration).cast(),
    )?;
    Ok(conf)
}

const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
/// Size of a `siginfo_t`.
pub const SIGINFO_SIZE: usize = 128;

#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// The signals queued for a stopped tracee, oldest first, without
/// dequeuing them: its own queue, or with `shared` its thread group's.
pub fn peek_siginfo(pid: Pid, shared: bool) -> SysResult<Vec<[u8; SIGINFO_SIZE]>> {
    const BATCH: usize = 32;
    let mut out = Vec::new();
    loop {
        let mut buf = [[0u8; SIGINFO_SIZE]; BATCH];
        let mut args = PeekSiginfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: BATCH as i32,
        };
        let n = ptrace_raw(
            PTRACE_PEEKSIGINFO,
            pid,
            (&mut args as *mut PeekSiginfoArgs) as usize,
            buf.as_mut_ptr().cast(),
        )? as usize;
        out.extend_from_slice(&buf[..n.min(BATCH)]);
        if n < BATCH {
            return Ok(out);
        }
    }
}
