//! Layer 3: a seized task.
//!
//! [`Tracee`] seizes a task with ptrace, stops it, reads and sets its
//! registers, and runs syscalls *inside* it ("remote syscalls"): the task's
//! registers are pointed at a `syscall` instruction already present in its
//! address space (its vDSO has some), and ptrace's syscall-stops bring it back
//! under control right after the kernel returns. A restore's puppet also
//! gets an executable scratch area: there batches of syscalls run as a few
//! generated instructions each, one stop per batch ([`blob`]). Dump injects
//! no code.
//!
//! A tracee is released either exactly as it was found
//! ([`Tracee::release`]: registers and signal mask put back, an interrupted
//! syscall restarted by the kernel's own rules) or with new registers
//! ([`Tracee::detach`], used by restore).

pub mod blob;
pub mod fdpass;
pub mod mem;

use nix::errno::Errno;
use nix::libc::user_regs_struct;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::sys;

/// The registers of an x86_64 task as ptrace shows them.
pub type Regs = user_regs_struct;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pid {pid}: {what}: {errno}")]
    Sys {
        pid: i32,
        what: &'static str,
        errno: Errno,
    },
    #[error("pid {pid}: {what}")]
    Unexpected { pid: i32, what: String },
    #[error(
        "pid {pid}: remote {name}({args}) failed: {errno} (call {index} of a batch of {count})"
    )]
    RemoteBatch {
        pid: i32,
        index: usize,
        count: usize,
        name: String,
        args: String,
        errno: Errno,
    },
    #[error("pid {pid}: remote {name}({args}) failed: {errno}")]
    Remote {
        pid: i32,
        name: String,
        args: String,
        errno: Errno,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches `what` and the PID to a raw errno.
pub(crate) trait Ctx<T> {
    fn ctx(self, pid: Pid, what: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, Errno> {
    fn ctx(self, pid: Pid, what: &'static str) -> Result<T> {
        self.map_err(|errno| Error::Sys {
            pid: pid.as_raw(),
            what,
            errno,
        })
    }
}

/// Where the tracee is stopped, which decides how it may be let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// A PTRACE_EVENT_STOP (from PTRACE_INTERRUPT): on resume the kernel
    /// applies its syscall restart rules to the registers.
    Event,
    /// A syscall-exit-stop after a remote syscall: on resume nothing looks at
    /// the registers again.
    SyscallExit,
}

/// Children that the tracee created while running a remote `clone`.
#[derive(Debug, Default)]
pub struct Events {
    pub new_tasks: Vec<i32>,
}

/// A seized, stopped task.
#[derive(Debug)]
pub struct Tracee {
    pid: Pid,
    stop: Stop,
    /// Address of a `syscall` instruction in the task.
    syscall_ip: Option<u64>,
    /// Registers when stopped; the base of every remote syscall.
    regs: Regs,
    events: Events,
    /// A page range criu mapped in the task for syscall arguments.
    scratch: Option<(u64, u64)>,
    /// Where in the scratch area batches of syscalls run as code (see
    /// [`blob`]), when the area is executable.
    blob_off: Option<u64>,
    /// Whether the task ignores SIGTRAP, once known.
    trap_ignored: Option<bool>,
    /// Where the task sits after the trap of the last blob, while nothing
    /// moved it since: the next blob is written there.
    blob_rip: Option<u64>,
    /// Whether criu took SIGTRAP out of the task's mask for blobs (and
    /// nothing put it back since).
    trap_unblocked: std::cell::Cell<bool>,
    /// Whether criu did so on a mask that blocked it.
    trap_taken: std::cell::Cell<bool>,
}

const OPTIONS: Options = sys::ptrace::SEIZE_OPTIONS;

/// Blocks until `pid` reports a ptrace stop.
fn wait_stop(pid: Pid) -> Result<WaitStatus> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL)) {
            Ok(s) => return Ok(s),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).ctx(pid, "waitpid"),
        }
    }
}

impl Tracee {
    /// Seizes `pid` and stops it. `kill_on_exit` asks the kernel to kill it
    /// should criu die while it is attached (only for tasks criu made).
    pub fn seize(pid: i32, kill_on_exit: bool) -> Result<Self> {
        let pid = Pid::from_raw(pid);
        let mut opts = OPTIONS;
        if kill_on_exit {
            opts |= Options::PTRACE_O_EXITKILL;
        }
        match ptrace::seize(pid, opts) {
            Ok(()) => {
                if let Err(e) = ptrace::interrupt(pid) {
                    let _ = ptrace::detach(pid, None);
                    return Err(e).ctx(pid, "PTRACE_INTERRUPT");
                }
            }
            // Seized and interrupted in advance by `interrupt_early`: its
            // stop only needs waiting for.
            Err(Errno::EPERM) if traced_by_us(pid) => {}
            Err(e) => return Err(e).ctx(pid, "PTRACE_SEIZE"),
        }
        loop {
            match wait_stop(pid)? {
                WaitStatus::PtraceEvent(_, _, ev) if ev == libc::PTRACE_EVENT_STOP => break,
                // A signal arrived before our interrupt: let it be
                // delivered and keep waiting for the interrupt's stop.
                WaitStatus::Stopped(_, sig) => {
                    ptrace::cont(pid, sig).ctx(pid, "PTRACE_CONT")?;
                }
                WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                    return Err(Error::Unexpected {
                        pid: pid.as_raw(),
                        what: "exited while being seized".into(),
                    })
                }
                other => {
                    let _ = ptrace::detach(pid, None);
                    return Err(Error::Unexpected {
                        pid: pid.as_raw(),
                        what: format!("unexpected stop while seizing: {other:?}"),
                    });
                }
            }
        }
        Self::stopped(pid)
    }

    /// Seizes and interrupts `pid` without waiting for its stop: a task in
    /// a frozen cgroup v1 stops only once the cgroup is thawed, and until
    /// then it can neither run nor fork. [`Tracee::seize`] later waits for
    /// the stop of such a task.
    pub fn interrupt_early(pid: i32) -> Result<()> {
        let pid = Pid::from_raw(pid);
        ptrace::seize(pid, OPTIONS).ctx(pid, "PTRACE_SEIZE")?;
        if let Err(e) = ptrace::interrupt(pid) {
            let _ = ptrace::detach(pid, None);
            return Err(e).ctx(pid, "PTRACE_INTERRUPT");
        }
        Ok(())
    }

    /// Lets go of a task [`Tracee::interrupt_early`] seized, if criu still
    /// traces it (a task the dump took was released or killed with the
    /// tree already).
    pub fn let_go_early(pid: i32) {
        let pid = Pid::from_raw(pid);
        if traced_by_us(pid) {
            if let Err(e) = ptrace::detach(pid, None) {
                tracing::warn!(pid = pid.as_raw(), "letting go of a task seized early: {e}");
            }
        }
    }

    /// Suspends the seccomp filters of this puppet (seized with
    /// `kill_on_exit`, or born of one) while criu traces it, so that
    /// filters installed by a remote syscall do not apply to the remote
    /// syscalls after it; they apply once criu lets go.
    pub fn suspend_seccomp(&self) -> Result<()> {
        let opts = OPTIONS | Options::PTRACE_O_EXITKILL | sys::ptrace::O_SUSPEND_SECCOMP;
        ptrace::setoptions(self.pid, opts).ctx(self.pid, "PTRACE_SETOPTIONS SUSPEND_SECCOMP")
    }

    /// A tracee for `pid`, which is in an interrupt (event) stop.
    fn stopped(pid: Pid) -> Result<Self> {
        let regs = ptrace::getregs(pid).ctx(pid, "PTRACE_GETREGS")?;
        Ok(Tracee {
            pid,
            stop: Stop::Event,
            syscall_ip: None,
            regs,
            events: Events::default(),
            scratch: None,
            blob_off: None,
            trap_ignored: None,
            blob_rip: None,
            trap_unblocked: std::cell::Cell::new(false),
            trap_taken: std::cell::Cell::new(false),
        })
    }

    /// Takes over a task that was attached automatically when a tracee
    /// created it (PTRACE_O_TRACECLONE/FORK): waits for its first stop.
    pub fn adopt(pid: i32) -> Result<Self> {
        let pid = Pid::from_raw(pid);
        match wait_stop(pid)? {
            WaitStatus::PtraceEvent(_, _, ev) if ev == libc::PTRACE_EVENT_STOP => {}
            WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
            other => {
                return Err(Error::Unexpected {
                    pid: pid.as_raw(),
                    what: format!("unexpected first stop of a new task: {other:?}"),
                })
            }
        }
        Self::stopped(pid)
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// The registers as found when the task was seized.
    pub fn regs(&self) -> &Regs {
        &self.regs
    }

    pub fn set_regs(&mut self, regs: &Regs) -> Result<()> {
        self.blob_rip = None;
        ptrace::setregs(self.pid, *regs).ctx(self.pid, "PTRACE_SETREGS")?;
        self.regs = *regs;
        Ok(())
    }

    /// The XSAVE area (FPU, SSE, AVX, AVX-512, PKRU …) in the standard format.
    pub fn xstate(&self) -> Result<Vec<u8>> {
        let (_, size) = sys::cpu::xsave_features();
        let mut buf = vec![0u8; size.max(4096) as usize];
        let n = sys::ptrace::getregset(self.pid, sys::ptrace::NT_X86_XSTATE, &mut buf)
            .ctx(self.pid, "PTRACE_GETREGSET(NT_X86_XSTATE)")?;
        buf.truncate(n);
        Ok(buf)
    }

    pub fn set_xstate(&self, xsave: &[u8]) -> Result<()> {
        sys::ptrace::setregset(self.pid, sys::ptrace::NT_X86_XSTATE, xsave)
            .ctx(self.pid, "PTRACE_SETREGSET(NT_X86_XSTATE)")
    }

    pub fn sigmask(&self) -> Result<u64> {
        sys::ptrace::getsigmask(self.pid).ctx(self.pid, "PTRACE_GETSIGMASK")
    }

    pub fn set_sigmask(&self, mask: u64) -> Result<()> {
        sys::ptrace::setsigmask(self.pid, mask).ctx(self.pid, "PTRACE_SETSIGMASK")?;
        self.trap_unblocked
            .set(mask & (1 << (libc::SIGTRAP - 1)) == 0);
        self.trap_taken.set(false);
        Ok(())
    }

    pub fn rseq(&self) -> Result<sys::ptrace::RseqConfiguration> {
        sys::ptrace::get_rseq_configuration(self.pid).ctx(self.pid, "PTRACE_GET_RSEQ_CONFIGURATION")
    }

    /// The `syscall` instruction remote syscalls go through.
    pub fn syscall_ip(&self) -> Option<u64> {
        self.syscall_ip
    }

    /// Uses the `syscall` instruction at `ip` for remote syscalls.
    pub fn set_syscall_ip(&mut self, ip: u64) {
        self.syscall_ip = Some(ip);
    }

    /// Finds a `syscall` instruction in the task's vDSO at `[start, end)`.
    pub fn find_syscall_ip(&mut self, start: u64, end: u64) -> Result<u64> {
        let mut code = vec![0u8; (end - start) as usize];
        mem::read(self.pid(), start, &mut code).map_err(|e| Error::Unexpected {
            pid: self.pid(),
            what: format!("reading the vDSO at {start:#x}: {e}"),
        })?;
        let off = code
            .windows(2)
            .position(|w| w == [0x0f, 0x05])
            .ok_or_else(|| Error::Unexpected {
                pid: self.pid(),
                what: format!("no syscall instruction in the vDSO at {start:#x}"),
            })?;
        let ip = start + off as u64;
        self.syscall_ip = Some(ip);
        Ok(ip)
    }

    /// Tasks the tracee created (remote clone/fork) since the last call.
    pub fn take_events(&mut self) -> Events {
        std::mem::take(&mut self.events)
    }

    /// Runs syscall `nr` inside the task and returns its raw result
    /// (`-errno` on failure).
    pub fn syscall_raw(&mut self, nr: i64, args: &[u64]) -> Result<i64> {
        // One stop instead of two, as a batch of one, where the call
        // cannot disturb the blob area, the task's signal state or the
        // task tree.
        if blob::one_stop_ok(nr) && self.blobs_usable()? {
            let mut b = blob::Batch::new();
            b.push_may_fail(nr, args);
            let r = self.run_batch(&b)?;
            return r.first().copied().ok_or_else(|| Error::Unexpected {
                pid: self.pid(),
                what: format!("remote {}: no result", syscall_name(nr)),
            });
        }
        let ip = self.syscall_ip.ok_or_else(|| Error::Unexpected {
            pid: self.pid(),
            what: "no syscall instruction known for remote syscalls".into(),
        })?;
        self.syscall_raw_at(ip, nr, args)
    }

    /// Runs syscall `nr` from the `syscall` instruction at `ip`, whatever
    /// the current default is; a failure names the call.
    pub fn syscall_at(&mut self, ip: u64, nr: i64, args: &[u64]) -> Result<u64> {
        let ret = self.syscall_raw_at(ip, nr, args)?;
        self.check_ret(nr, args, ret)
    }

    fn syscall_raw_at(&mut self, ip: u64, nr: i64, args: &[u64]) -> Result<i64> {
        let mut r = self.regs;
        let a = |i: usize| args.get(i).copied().unwrap_or(0);
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rdi = a(0);
        r.rsi = a(1);
        r.rdx = a(2);
        r.r10 = a(3);
        r.r8 = a(4);
        r.r9 = a(5);
        r.rip = ip;
        if nr == libc::SYS_rt_sigaction {
            self.trap_ignored = None;
        }
        if nr == libc::SYS_rt_sigprocmask {
            self.trap_unblocked.set(false);
        }
        self.blob_rip = None;
        ptrace::setregs(self.pid, r).ctx(self.pid, "PTRACE_SETREGS")?;
        let mut entered = false;
        let mut retraps = 0;
        ptrace::syscall(self.pid, None).ctx(self.pid, "PTRACE_SYSCALL")?;
        loop {
            match wait_stop(self.pid)? {
                WaitStatus::PtraceSyscall(_) if !entered => {
                    entered = true;
                    ptrace::syscall(self.pid, None).ctx(self.pid, "PTRACE_SYSCALL")?;
                }
                WaitStatus::PtraceSyscall(_) => break,
                // A task in a job-control stop traps again on its way: go on.
                WaitStatus::PtraceEvent(_, _, ev)
                    if ev == libc::PTRACE_EVENT_STOP && retraps < 16 =>
                {
                    retraps += 1;
                    ptrace::syscall(self.pid, None).ctx(self.pid, "PTRACE_SYSCALL")?;
                }
                WaitStatus::PtraceEvent(_, _, ev)
                    if ev == libc::PTRACE_EVENT_CLONE
                        || ev == libc::PTRACE_EVENT_FORK
                        || ev == libc::PTRACE_EVENT_VFORK =>
                {
                    let child = ptrace::getevent(self.pid).ctx(self.pid, "PTRACE_GETEVENTMSG")?;
                    self.events.new_tasks.push(child as i32);
                    ptrace::syscall(self.pid, None).ctx(self.pid, "PTRACE_SYSCALL")?;
                }
                other => {
                    return Err(Error::Unexpected {
                        pid: self.pid(),
                        what: format!("remote syscall {nr}: unexpected stop {other:?}"),
                    })
                }
            }
        }
        self.stop = Stop::SyscallExit;
        let out = ptrace::getregs(self.pid).ctx(self.pid, "PTRACE_GETREGS")?;
        Ok(out.rax as i64)
    }

    /// Runs syscall `nr` inside the task; a failure names the call.
    pub fn syscall(&mut self, nr: i64, args: &[u64]) -> Result<u64> {
        let ret = self.syscall_raw(nr, args)?;
        self.check_ret(nr, args, ret)
    }

    fn check_ret(&self, nr: i64, args: &[u64], ret: i64) -> Result<u64> {
        if (-4095..0).contains(&ret) {
            return Err(Error::Remote {
                pid: self.pid(),
                name: syscall_name(nr),
                args: args
                    .iter()
                    .map(|a| format!("{a:#x}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                errno: Errno::from_raw(-ret as i32),
            });
        }
        Ok(ret as u64)
    }

    /// Maps `len` bytes of anonymous read-write memory in the task.
    pub fn mmap_scratch(&mut self, len: u64) -> Result<u64> {
        self.syscall(
            libc::SYS_mmap,
            &[
                0,
                len,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        )
    }

    /// Maps the scratch area criu passes syscall arguments through: `len`
    /// bytes, at `at` exactly when given.
    pub fn map_scratch(&mut self, at: Option<u64>, len: u64) -> Result<u64> {
        self.map_scratch_prot(at, len, libc::PROT_READ | libc::PROT_WRITE)
    }

    /// Maps the scratch area at `at` (exactly, when given) executable too,
    /// and lets batches of syscalls run as code in it from `blob_off` to
    /// its end (see [`blob`]).
    pub fn map_scratch_with_blobs(
        &mut self,
        at: Option<u64>,
        len: u64,
        blob_off: u64,
    ) -> Result<u64> {
        let prot = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        let addr = self.map_scratch_prot(at, len, prot)?;
        self.enable_blobs(blob_off);
        Ok(addr)
    }

    fn map_scratch_prot(&mut self, at: Option<u64>, len: u64, prot: i32) -> Result<u64> {
        let (hint, fixed) = match at {
            None => (0, 0),
            Some(at) => (at, libc::MAP_FIXED_NOREPLACE),
        };
        let got = self.syscall(
            libc::SYS_mmap,
            &[
                hint,
                len,
                prot as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | fixed) as u64,
                u64::MAX,
                0,
            ],
        )?;
        if at.is_some_and(|at| got != at) {
            return Err(Error::Unexpected {
                pid: self.pid(),
                what: format!("scratch area wanted at {hint:#x}, got {got:#x}"),
            });
        }
        self.scratch = Some((got, len));
        Ok(got)
    }

    /// Uses a scratch area another thread of the same address space mapped.
    pub fn set_scratch(&mut self, scratch: Option<(u64, u64)>) {
        self.scratch = scratch;
    }

    /// The scratch area (address, length), once mapped.
    pub fn scratch(&self) -> Option<(u64, u64)> {
        self.scratch
    }

    fn scratch_at(&self, off: u64, len: usize) -> Result<u64> {
        match self.scratch {
            Some((addr, size)) if off + len as u64 <= size => Ok(addr + off),
            _ => Err(Error::Unexpected {
                pid: self.pid(),
                what: format!("{len} bytes at scratch offset {off} do not fit the scratch area"),
            }),
        }
    }

    /// Copies `data` into the scratch area at `off`; returns its address in
    /// the task.
    pub fn scratch_put(&self, off: u64, data: &[u8]) -> Result<u64> {
        let addr = self.scratch_at(off, data.len())?;
        mem::write(self.pid(), addr, data).map_err(|e| Error::Unexpected {
            pid: self.pid(),
            what: format!("writing {} bytes of scratch at {addr:#x}: {e}", data.len()),
        })?;
        Ok(addr)
    }

    /// Reads `buf.len()` bytes of the scratch area at `off`.
    pub fn scratch_get(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let addr = self.scratch_at(off, buf.len())?;
        mem::read(self.pid(), addr, buf).map_err(|e| Error::Unexpected {
            pid: self.pid(),
            what: format!("reading {} bytes of scratch at {addr:#x}: {e}", buf.len()),
        })
    }

    /// Removes the scratch area again.
    pub fn unmap_scratch(&mut self) -> Result<()> {
        if let Some((addr, len)) = self.scratch.take() {
            self.syscall(libc::SYS_munmap, &[addr, len])?;
        }
        Ok(())
    }

    /// Lets the task go exactly as it was found: `regs` (normally the ones
    /// read at seize time) are put back, and if the task was inside a syscall
    /// the kernel restarts it (or returns EINTR) by its own rules.
    pub fn release(self, regs: &Regs, sigmask: u64) -> Result<()> {
        self.set_sigmask(sigmask)?;
        ptrace::setregs(self.pid, *regs).ctx(self.pid, "PTRACE_SETREGS")?;
        if self.stop == Stop::SyscallExit {
            // Resuming from a syscall-exit-stop skips the restart rules:
            // pass through one more interrupt stop so that they apply.
            ptrace::interrupt(self.pid).ctx(self.pid, "PTRACE_INTERRUPT")?;
            ptrace::cont(self.pid, None).ctx(self.pid, "PTRACE_CONT")?;
            loop {
                match wait_stop(self.pid)? {
                    WaitStatus::PtraceEvent(_, _, ev) if ev == libc::PTRACE_EVENT_STOP => break,
                    WaitStatus::Stopped(_, sig) => {
                        // A signal that became deliverable: keep it queued
                        // for after the detach.
                        let _ = sig;
                        ptrace::cont(self.pid, sig).ctx(self.pid, "PTRACE_CONT")?;
                    }
                    other => {
                        return Err(Error::Unexpected {
                            pid: self.pid(),
                            what: format!("unexpected stop while releasing: {other:?}"),
                        })
                    }
                }
            }
        }
        ptrace::detach(self.pid, None).ctx(self.pid, "PTRACE_DETACH")
    }

    /// Lets the task run from the registers it has now.
    pub fn detach(self) -> Result<()> {
        ptrace::detach(self.pid, None).ctx(self.pid, "PTRACE_DETACH")
    }

    /// Kills a task criu made (restore failure path) and reaps nothing: the
    /// caller waits for it.
    pub fn kill(self) {
        let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
    }
}

/// A readable name of the syscalls criu runs remotely, for error messages.
pub fn syscall_name(nr: i64) -> String {
    let name = match nr {
        libc::SYS_mmap => "mmap",
        libc::SYS_munmap => "munmap",
        libc::SYS_mprotect => "mprotect",
        libc::SYS_mremap => "mremap",
        libc::SYS_madvise => "madvise",
        libc::SYS_brk => "brk",
        libc::SYS_rt_sigaction => "rt_sigaction",
        libc::SYS_prctl => "prctl",
        libc::SYS_rseq => "rseq",
        libc::SYS_close => "close",
        libc::SYS_dup2 => "dup2",
        libc::SYS_dup3 => "dup3",
        libc::SYS_recvmsg => "recvmsg",
        libc::SYS_openat => "openat",
        libc::SYS_lseek => "lseek",
        libc::SYS_fcntl => "fcntl",
        libc::SYS_chdir => "chdir",
        libc::SYS_fchdir => "fchdir",
        libc::SYS_chroot => "chroot",
        libc::SYS_umask => "umask",
        libc::SYS_setsid => "setsid",
        libc::SYS_setpgid => "setpgid",
        libc::SYS_clone3 => "clone3",
        libc::SYS_setresuid => "setresuid",
        libc::SYS_setresgid => "setresgid",
        libc::SYS_setgroups => "setgroups",
        libc::SYS_capset => "capset",
        libc::SYS_prlimit64 => "prlimit64",
        libc::SYS_getitimer => "getitimer",
        libc::SYS_setitimer => "setitimer",
        libc::SYS_set_robust_list => "set_robust_list",
        libc::SYS_set_tid_address => "set_tid_address",
        libc::SYS_sigaltstack => "sigaltstack",
        libc::SYS_close_range => "close_range",
        _ => return format!("syscall#{nr}"),
    };
    name.to_string()
}

/// Whether criu is the tracer of `pid` already.
fn traced_by_us(pid: Pid) -> bool {
    crate::proc::read_status(pid.as_raw())
        .is_ok_and(|st| st.tracer_pid == std::process::id() as i32)
}
