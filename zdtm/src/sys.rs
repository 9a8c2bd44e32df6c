//! Thin wrappers of the raw calls the tests need and nix does not offer
//! safely. Every `unsafe` block of the crate lives here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::AtomicU32;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// fork(2). The caller must be single-threaded, or the child must only use
/// async-signal-safe code until it execs or exits.
pub fn fork() -> io::Result<nix::unistd::ForkResult> {
    // SAFETY: the tests fork only from single-threaded processes (the
    // catalogue documents this); the child continues with a copy of our
    // memory and no other thread exists that could hold a lock.
    unsafe { nix::unistd::fork() }.map_err(io::Error::from)
}

/// Leave the process immediately, without running destructors or atexit.
/// Bytes readable on `fd` now (FIONREAD).
pub fn queued(fd: impl std::os::fd::AsRawFd) -> io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, which lives for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n)
}

pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// FUTEX_WAIT (shared, usable across processes) while `*word == val`.
/// EINTR and EAGAIN are reported as Ok: callers re-check the word in a loop.
pub fn futex_wait(word: &AtomicU32, val: u32) -> io::Result<()> {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call;
    // the kernel only reads it. No timeout pointer is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            val,
            std::ptr::null::<libc::timespec>(),
        )
    };
    match check(r) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// FUTEX_WAKE up to `n` waiters. Async-signal-safe.
pub fn futex_wake(word: &AtomicU32, n: i32) -> io::Result<usize> {
    // SAFETY: `word` is a valid aligned u32; FUTEX_WAKE does not touch memory.
    let r = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n) };
    check(r).map(|v| v as usize)
}

/// An mmap'ed region, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; sharing its
// address between threads is what the tests do on purpose and they only
// access it through atomics or while the other side waits.
unsafe impl Send for Mapping {}
// SAFETY: see Send.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Anonymous mapping (`flags` gets MAP_ANONYMOUS added).
    pub fn anon(len: usize, prot: i32, flags: i32) -> io::Result<Mapping> {
        Self::raw(len, prot, flags | libc::MAP_ANONYMOUS, -1, 0)
    }

    /// Mapping of `fd` at `offset`.
    pub fn file(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: i32,
        flags: i32,
        offset: i64,
    ) -> io::Result<Mapping> {
        Self::raw(len, prot, flags, fd.as_raw_fd(), offset)
    }

    fn raw(len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping with a null hint never overlaps existing
        // Rust objects; the result is checked against MAP_FAILED.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: p as *mut u8,
            len,
        })
    }

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes. Only valid while the mapping is readable: reading a
    /// PROT_NONE piece crashes the test (which then fails, as it should).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len is a live mapping owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The bytes, writable. Only valid while the mapping is writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr..ptr+len is a live mapping owned by self; &mut self
        // guarantees no other slice of it is alive in this process.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// A sub-range `[off, off+len)`, readable.
    pub fn range(&self, off: usize, len: usize) -> &[u8] {
        &self.bytes()[off..off + len]
    }

    /// The u32 at byte offset `off` as an atomic (for futexes and counters
    /// in shared memory).
    pub fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "atomic_u32 offset {off} out of range"
        );
        // SAFETY: in range and 4-aligned (mappings are page aligned); the
        // memory lives as long as &self; AtomicU32 has u32's layout.
        unsafe { &*(self.ptr.add(off) as *const AtomicU32) }
    }

    pub fn protect(&self, off: usize, len: usize, prot: i32) -> io::Result<()> {
        assert!(off + len <= self.len);
        // SAFETY: the range lies inside our own mapping.
        check_int(unsafe { libc::mprotect(self.ptr.add(off) as *mut libc::c_void, len, prot) })
            .map(|_| ())
    }

    pub fn madvise(&self, off: usize, len: usize, advice: i32) -> io::Result<()> {
        assert!(off + len <= self.len);
        // SAFETY: the range lies inside our own mapping.
        check_int(unsafe { libc::madvise(self.ptr.add(off) as *mut libc::c_void, len, advice) })
            .map(|_| ())
    }

    pub fn mlock(&self) -> io::Result<()> {
        // SAFETY: our own mapping; mlock does not change its contents.
        check_int(unsafe { libc::mlock(self.ptr as *const libc::c_void, self.len) }).map(|_| ())
    }

    /// msync(MS_SYNC) of the whole mapping.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: our own mapping.
        check_int(unsafe { libc::msync(self.ptr as *mut libc::c_void, self.len, libc::MS_SYNC) })
            .map(|_| ())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and no slice of it outlives self.
        unsafe {
            libc::munmap(self.ptr as *mut libc::c_void, self.len);
        }
    }
}

/// The signal-handler signature the tests install.
pub type Handler = extern "C" fn(libc::c_int);
/// SA_SIGINFO handler signature.
pub type InfoHandler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Install `act` for `sig`; returns the previous action.
pub fn sigaction(sig: i32, act: &libc::sigaction) -> io::Result<libc::sigaction> {
    // SAFETY: sigaction is a plain C struct; zeroed is a valid value.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    check_int(unsafe { libc::sigaction(sig, act, &mut old) })?;
    Ok(old)
}

/// Read back the action of `sig`.
pub fn get_sigaction(sig: i32) -> io::Result<libc::sigaction> {
    // SAFETY: plain C struct, zeroed is valid.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries.
    check_int(unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) })?;
    Ok(old)
}

/// Build a sigaction with `handler` (a fn pointer value, or SIG_IGN/SIG_DFL),
/// `flags` and the signals of `mask` blocked during the handler.
pub fn make_sigaction(handler: libc::sighandler_t, flags: i32, mask: &[i32]) -> libc::sigaction {
    // SAFETY: plain C struct, zeroed is valid.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler;
    sa.sa_flags = flags;
    // SAFETY: sa_mask is a valid sigset_t inside sa.
    unsafe {
        libc::sigemptyset(&mut sa.sa_mask);
        for &s in mask {
            libc::sigaddset(&mut sa.sa_mask, s);
        }
    }
    sa
}

/// Is `sig` a member of `set`?
pub fn sigismember(set: &libc::sigset_t, sig: i32) -> bool {
    // SAFETY: set is a valid sigset_t.
    unsafe { libc::sigismember(set, sig) == 1 }
}

/// sigtimedwait for the signals in `sigs` (which must be blocked); returns
/// (signo, si_code, si_value as integer) or None after `timeout_ms`.
pub fn sigtimedwait(sigs: &[i32], timeout_ms: u64) -> io::Result<Option<(i32, i32, usize)>> {
    // SAFETY: plain C structs, zeroed valid; all pointers are valid.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let ts = libc::timespec {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_nsec: ((timeout_ms % 1000) * 1_000_000) as libc::c_long,
        };
        let r = libc::sigtimedwait(&set, &mut info, &ts);
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some((r, info.si_code, info.si_value().sival_ptr as usize)))
    }
}

/// sigqueue(2): queue `sig` with integer value `val` to `pid`.
pub fn sigqueue(pid: i32, sig: i32, val: usize) -> io::Result<()> {
    let v = libc::sigval {
        sival_ptr: val as *mut libc::c_void,
    };
    // SAFETY: plain call with a value argument.
    check_int(unsafe { libc::sigqueue(pid, sig, v) }).map(|_| ())
}

/// sigaltstack: set a new stack (ss_sp, size, flags) and return the old one.
pub fn sigaltstack(new: Option<(usize, usize, i32)>) -> io::Result<(usize, usize, i32)> {
    // SAFETY: plain C structs; pointers valid for the call. The caller owns
    // the memory it names as the stack and keeps it mapped.
    unsafe {
        let mut old: libc::stack_t = std::mem::zeroed();
        let r = match new {
            Some((sp, size, flags)) => {
                let ss = libc::stack_t {
                    ss_sp: sp as *mut libc::c_void,
                    ss_flags: flags,
                    ss_size: size,
                };
                libc::sigaltstack(&ss, &mut old)
            }
            None => libc::sigaltstack(std::ptr::null(), &mut old),
        };
        check_int(r)?;
        Ok((old.ss_sp as usize, old.ss_size, old.ss_flags))
    }
}

/// getitimer → (interval, value) in microseconds.
pub fn getitimer(which: i32) -> io::Result<(u64, u64)> {
    // SAFETY: plain C struct, valid pointer.
    unsafe {
        let mut it: libc::itimerval = std::mem::zeroed();
        check_int(libc::getitimer(which as _, &mut it))?;
        Ok((tv_us(&it.it_interval), tv_us(&it.it_value)))
    }
}

fn tv_us(tv: &libc::timeval) -> u64 {
    tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64
}

fn us_tv(us: u64) -> libc::timeval {
    libc::timeval {
        tv_sec: (us / 1_000_000) as libc::time_t,
        tv_usec: (us % 1_000_000) as libc::suseconds_t,
    }
}

/// setitimer with interval and value in microseconds.
pub fn setitimer(which: i32, interval_us: u64, value_us: u64) -> io::Result<()> {
    let it = libc::itimerval {
        it_interval: us_tv(interval_us),
        it_value: us_tv(value_us),
    };
    // SAFETY: valid pointer; old value not requested.
    check_int(unsafe { libc::setitimer(which as _, &it, std::ptr::null_mut()) }).map(|_| ())
}

/// Kernel posix timer creation with SIGEV_SIGNAL; returns the kernel id.
pub fn timer_create(clock: i32, signo: i32, value: usize) -> io::Result<i32> {
    // SAFETY: sigevent zeroed is valid; we fill the fields the kernel reads;
    // the id pointer is valid for the call.
    unsafe {
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = signo;
        sev.sigev_value = libc::sigval {
            sival_ptr: value as *mut libc::c_void,
        };
        let mut id: libc::c_int = -1;
        check(libc::syscall(
            libc::SYS_timer_create,
            clock,
            &mut sev,
            &mut id,
        ))?;
        Ok(id)
    }
}

fn ns_ts(ns: u64) -> libc::timespec {
    libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    }
}

fn ts_ns(ts: &libc::timespec) -> u64 {
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// timer_settime (relative) with interval and value in nanoseconds.
pub fn timer_settime(id: i32, interval_ns: u64, value_ns: u64) -> io::Result<()> {
    let its = libc::itimerspec {
        it_interval: ns_ts(interval_ns),
        it_value: ns_ts(value_ns),
    };
    // SAFETY: valid pointers; old value not requested.
    check(unsafe {
        libc::syscall(
            libc::SYS_timer_settime,
            id,
            0,
            &its,
            std::ptr::null_mut::<libc::itimerspec>(),
        )
    })
    .map(|_| ())
}

/// timer_gettime → (interval, value) in nanoseconds.
pub fn timer_gettime(id: i32) -> io::Result<(u64, u64)> {
    // SAFETY: plain C struct; valid pointer.
    unsafe {
        let mut its: libc::itimerspec = std::mem::zeroed();
        check(libc::syscall(libc::SYS_timer_gettime, id, &mut its))?;
        Ok((ts_ns(&its.it_interval), ts_ns(&its.it_value)))
    }
}

pub fn timer_delete(id: i32) -> io::Result<()> {
    // SAFETY: plain syscall on an integer id.
    check(unsafe { libc::syscall(libc::SYS_timer_delete, id) }).map(|_| ())
}

/// sbrk(2) through glibc, so malloc's idea of the break stays right.
pub fn sbrk(incr: isize) -> io::Result<usize> {
    // SAFETY: growing the break only adds memory that nothing else uses;
    // glibc's malloc checks the break before trimming.
    let p = unsafe { libc::sbrk(incr as libc::intptr_t) };
    if p as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(p as usize)
}

/// Read `len` bytes at an address this process owns (e.g. the heap grown
/// with sbrk). The caller must name memory that is mapped and readable.
pub fn read_mem(addr: usize, len: usize) -> Vec<u8> {
    // SAFETY: the caller names memory of this process that is mapped and
    // readable; we copy it out immediately.
    unsafe { std::slice::from_raw_parts(addr as *const u8, len).to_vec() }
}

/// Write `data` at an address this process owns (see read_mem).
pub fn write_mem(addr: usize, data: &[u8]) {
    // SAFETY: the caller names writable memory of this process that no
    // Rust object refers to.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) }
}

/// membarrier(2).
pub fn membarrier(cmd: i32, flags: u32) -> io::Result<i64> {
    // SAFETY: plain syscall on integers.
    check(unsafe { libc::syscall(libc::SYS_membarrier, cmd, flags, 0) })
}

/// The FS base of the calling thread (x86-64 TLS pointer).
#[cfg(target_arch = "x86_64")]
pub fn fs_base() -> io::Result<u64> {
    const ARCH_GET_FS: i32 = 0x1003;
    let mut v: u64 = 0;
    // SAFETY: the kernel writes one u64 to a valid pointer.
    check(unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_GET_FS, &mut v as *mut u64) })?;
    Ok(v)
}

/// gettimeofday in microseconds.
pub fn gettimeofday_us() -> io::Result<u64> {
    // SAFETY: plain C struct; valid pointer; no timezone.
    unsafe {
        let mut tv: libc::timeval = std::mem::zeroed();
        check_int(libc::gettimeofday(&mut tv, std::ptr::null_mut()))?;
        Ok(tv_us(&tv))
    }
}

/// SysV shared memory segment attached in this process.
pub struct Shm {
    pub id: i32,
    addr: *mut u8,
    len: usize,
}

impl Shm {
    /// Create a private segment of `len` bytes and attach it.
    pub fn create(len: usize) -> io::Result<Shm> {
        // SAFETY: plain syscall.
        let id =
            check_int(unsafe { libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600) })?;
        // SAFETY: attaching a fresh segment at a kernel-chosen address.
        let p = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        if p as isize == -1 {
            let e = io::Error::last_os_error();
            // SAFETY: removing the segment we just created.
            unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
            return Err(e);
        }
        Ok(Shm {
            id,
            addr: p as *mut u8,
            len,
        })
    }

    pub fn addr(&self) -> usize {
        self.addr as usize
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the segment is attached for the life of self.
        unsafe { std::slice::from_raw_parts(self.addr, self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: attached for the life of self; &mut self is exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.addr, self.len) }
    }

    /// (size, nattch) from IPC_STAT.
    pub fn stat(&self) -> io::Result<(usize, u64)> {
        // SAFETY: plain C struct; valid pointer.
        unsafe {
            let mut ds: libc::shmid_ds = std::mem::zeroed();
            check_int(libc::shmctl(self.id, libc::IPC_STAT, &mut ds))?;
            Ok((ds.shm_segsz, ds.shm_nattch as u64))
        }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: detach and remove our own segment; no slice outlives self.
        unsafe {
            libc::shmdt(self.addr as *const libc::c_void);
            libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// A raw syscall returning its result, for feature probes that pass
/// deliberately invalid arguments (null pointers, bad fds) to learn from
/// the error whether the kernel knows the call.
pub fn probe_syscall(nr: libc::c_long, a: [libc::c_long; 4]) -> io::Result<libc::c_long> {
    // SAFETY: the probes pass only integers and null pointers, which the
    // kernel validates (EFAULT/EINVAL/EBADF) without touching our memory.
    // The fifth argument is 0, not whatever its register held (prctl
    // checks its unused arguments).
    check(unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], 0 as libc::c_long) })
}

/// ioctl with an integer argument (probes only: see probe_syscall).
pub fn probe_ioctl(fd: BorrowedFd<'_>, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: the probes pass a null or integer argument the kernel validates.
    check_int(unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) })
}

/// Close a raw fd a probe got back from the kernel.
pub fn close_raw(fd: i32) {
    // SAFETY: the probes pass fds they just received and nothing else owns.
    unsafe {
        libc::close(fd);
    }
}

/// The address of a plain handler, for `make_sigaction`.
pub fn handler(h: Handler) -> libc::sighandler_t {
    h as *const () as libc::sighandler_t
}

/// The address of an SA_SIGINFO handler, for `make_sigaction`.
pub fn info_handler(h: InfoHandler) -> libc::sighandler_t {
    h as *const () as libc::sighandler_t
}

/// Add `sig` (RT signals included) to `set`.
pub fn sigset_add(set: &mut libc::sigset_t, sig: i32) {
    // SAFETY: set is a valid sigset_t; invalid signal numbers are rejected.
    unsafe {
        libc::sigaddset(set, sig);
    }
}

/// Block (how = SIG_BLOCK) or set the calling thread's mask from a raw
/// sigset (RT signals included).
pub fn sigprocmask(how: i32, set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: valid pointers; the old mask is not requested.
    let r = unsafe { libc::pthread_sigmask(how, set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// An empty raw sigset with `sigs` in it.
pub fn sigset_of(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: zeroed is a valid sigset_t; sigemptyset/sigaddset only write it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in sigs {
        sigset_add(&mut set, s);
    }
    set
}

/// Take ownership of an fd number the kernel just returned to the caller
/// (F_DUPFD and the like). The caller must not close it elsewhere.
pub fn own_fd(raw: i32) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: the caller got `raw` from the kernel a moment ago and nothing
    // else owns it.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) }
}

/// `setdomainname(2)`: unlike a write to /proc/sys/kernel/domainname, it
/// works for the root of a user namespace that owns the uts namespace.
pub fn setdomainname(name: &str) -> io::Result<()> {
    let b = name.as_bytes();
    // SAFETY: the pointer and length describe `b`, which outlives the call.
    let r = unsafe { libc::setdomainname(b.as_ptr().cast(), b.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
