//! Many remote syscalls for one ptrace stop.
//!
//! A remote syscall run through ptrace's syscall-stops costs two stops of
//! the task (entry and exit), i.e. four ptrace requests and two waits in
//! criu. A [`Batch`] instead becomes a small piece of x86-64 code written
//! into the tracee's blob area (a part of its scratch area mapped
//! executable): for each call it loads the arguments (immediates, or the
//! result of an earlier call of the batch), runs `syscall`, stores the
//! result in a table next to the code and, unless the call may fail,
//! traps when it failed; the code ends in `int3`. The tracee is continued
//! once and stops on the trap's SIGTRAP, which criu then discards.
//!
//! The SIGTRAP of `int3` is forced on the task: were SIGTRAP blocked or
//! ignored there, the kernel would unblock it and reset its disposition to
//! SIG_DFL. So a batch runs with SIGTRAP taken out of the blocked mask
//! (and the mask put back after), and never while the task ignores
//! SIGTRAP (then its calls run one by one instead). A handler the task has
//! for SIGTRAP is kept: ptrace stops the task before the handler is called
//! and criu cancels the signal.

use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use super::{syscall_name, wait_stop, Ctx, Error, Result, Stop, Tracee};

/// One argument of a call in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A value known in advance.
    Imm(u64),
    /// What an earlier call of the same batch (by index) returned.
    Ret(usize),
}

impl From<u64> for Arg {
    fn from(v: u64) -> Self {
        Arg::Imm(v)
    }
}

/// One syscall of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub nr: i64,
    pub args: [Arg; 6],
    /// A failure of this call is only returned, not an error, and the
    /// calls after it run all the same.
    pub may_fail: bool,
    /// Also store the low 32 bits of the result at this address of the
    /// tracee (an fd a later call reads from a struct).
    pub store32: Option<u64>,
}

impl Call {
    /// The call with every argument known (missing ones are 0).
    pub fn new(nr: i64, args: &[u64]) -> Self {
        let args: Vec<Arg> = args.iter().map(|&v| Arg::Imm(v)).collect();
        Self::with_args(nr, &args)
    }

    /// The call with arguments that may refer to earlier results.
    pub fn with_args(nr: i64, args: &[Arg]) -> Self {
        let mut a = [Arg::Imm(0); 6];
        for (slot, &v) in a.iter_mut().zip(args) {
            *slot = v;
        }
        Call {
            nr,
            args: a,
            may_fail: false,
            store32: None,
        }
    }
}

/// Syscalls to run in a tracee in this order, as few stops as possible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    calls: Vec<Call>,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// Adds `nr(args…)`, which must succeed; returns its index.
    pub fn push(&mut self, nr: i64, args: &[u64]) -> usize {
        self.push_call(Call::new(nr, args))
    }

    /// Adds `nr(args…)`, whose failure is only returned; returns its index.
    pub fn push_may_fail(&mut self, nr: i64, args: &[u64]) -> usize {
        let mut c = Call::new(nr, args);
        c.may_fail = true;
        self.push_call(c)
    }

    /// Adds a call; returns its index.
    pub fn push_call(&mut self, c: Call) -> usize {
        self.calls.push(c);
        self.calls.len() - 1
    }

    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

/// Whether [`Tracee::syscall`] may run `nr` alone as a blob (one stop)
/// rather than through syscall-stops (two): not the calls that change the
/// address space (the blob area with it), make or end tasks (a new task
/// would run the blob too), or touch signal dispositions and masks.
pub fn one_stop_ok(nr: i64) -> bool {
    !matches!(
        nr,
        libc::SYS_mmap
            | libc::SYS_munmap
            | libc::SYS_mremap
            | libc::SYS_mprotect
            | libc::SYS_madvise
            | libc::SYS_brk
            | libc::SYS_shmat
            | libc::SYS_shmdt
            | libc::SYS_clone
            | libc::SYS_clone3
            | libc::SYS_fork
            | libc::SYS_vfork
            | libc::SYS_execve
            | libc::SYS_execveat
            | libc::SYS_exit
            | libc::SYS_exit_group
            | libc::SYS_rt_sigaction
            | libc::SYS_rt_sigprocmask
            | libc::SYS_rt_sigreturn
            | libc::SYS_rt_sigsuspend
            | libc::SYS_pause
            | libc::SYS_kill
            | libc::SYS_tkill
            | libc::SYS_tgkill
            | libc::SYS_rt_sigqueueinfo
            | libc::SYS_rt_tgsigqueueinfo
            | libc::SYS_pidfd_send_signal
            | libc::SYS_ptrace
            | libc::SYS_seccomp
    )
}

/// Whether a raw syscall result is `-errno`.
pub fn is_err(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

/// Argument registers in syscall order: rdi, rsi, rdx, r10, r8, r9.
const ARG_REGS: [u8; 6] = [7, 6, 2, 10, 8, 9];
const RAX: u8 = 0;
const INT3: u8 = 0xcc;

/// `mov reg, imm` in its shortest form.
fn mov_imm(out: &mut Vec<u8>, reg: u8, v: u64) {
    let low = reg & 7;
    let ext = reg >= 8;
    if v == 0 {
        // xor r32, r32 (zero-extends to 64 bits)
        if ext {
            out.push(0x45);
        }
        out.extend_from_slice(&[0x31, 0xc0 | low << 3 | low]);
    } else if v <= u64::from(u32::MAX) {
        // mov r32, imm32 (zero-extends)
        if ext {
            out.push(0x41);
        }
        out.push(0xb8 + low);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else if i32::try_from(v as i64).is_ok() {
        // mov r/m64, imm32 (sign-extends)
        out.extend_from_slice(&[if ext { 0x49 } else { 0x48 }, 0xc7, 0xc0 | low]);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        // movabs r64, imm64
        out.extend_from_slice(&[if ext { 0x49 } else { 0x48 }, 0xb8 + low]);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// The rip-relative displacement from the end of an instruction at
/// `next` to `target`. Code, table and progress word share one small area,
/// so it always fits 32 bits.
fn rel32(target: u64, next: u64) -> [u8; 4] {
    (target.wrapping_sub(next) as i64 as i32).to_le_bytes()
}

/// Machine code for some calls of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub bytes: Vec<u8>,
    /// Offset of the final `int3`, where every path ends.
    pub end: usize,
}

/// Where a blob keeps what it reports: call `k`'s result at `table + 8k`,
/// and the number of calls done so far at `progress` (32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub code: u64,
    pub table: u64,
    pub progress: u64,
}

/// Encodes `calls` as code at `l.code`. A `Ret(j)` argument is read from
/// the table (entry `j` of these calls). After each call its result goes
/// to the table, the progress word becomes its index + 1, and, unless it
/// may fail, a failure jumps to the final `int3`.
pub fn encode(calls: &[Call], l: Layout) -> Code {
    let mut out: Vec<u8> = Vec::with_capacity(calls.len() * 48);
    // Offsets of the rel32 of each jump to the end, patched last.
    let mut to_end = Vec::new();
    let here = |out: &Vec<u8>, extra: usize| l.code + (out.len() + extra) as u64;
    for (k, c) in calls.iter().enumerate() {
        for (reg, arg) in ARG_REGS.iter().zip(&c.args) {
            match *arg {
                Arg::Ret(j) => {
                    // mov r64, [rip + disp32]
                    let rex = if *reg >= 8 { 0x4c } else { 0x48 };
                    let next = here(&out, 7);
                    out.extend_from_slice(&[rex, 0x8b, 0x05 | (reg & 7) << 3]);
                    out.extend_from_slice(&rel32(l.table + 8 * j as u64, next));
                }
                Arg::Imm(v) => mov_imm(&mut out, *reg, v),
            }
        }
        mov_imm(&mut out, RAX, c.nr as u64);
        out.extend_from_slice(&[0x0f, 0x05]); // syscall
                                              // mov [rip + disp32], rax
        let next = here(&out, 7);
        out.extend_from_slice(&[0x48, 0x89, 0x05]);
        out.extend_from_slice(&rel32(l.table + 8 * k as u64, next));
        if let Some(at) = c.store32 {
            // mov [moffs64], eax
            out.push(0xa3);
            out.extend_from_slice(&at.to_le_bytes());
        }
        // mov dword [rip + disp32], k + 1
        let next = here(&out, 10);
        out.extend_from_slice(&[0xc7, 0x05]);
        out.extend_from_slice(&rel32(l.progress, next));
        out.extend_from_slice(&(k as u32 + 1).to_le_bytes());
        if !c.may_fail {
            // cmp rax, -4095; jae end
            out.extend_from_slice(&[0x48, 0x3d]);
            out.extend_from_slice(&(-4095i32).to_le_bytes());
            out.extend_from_slice(&[0x0f, 0x83]);
            to_end.push(out.len());
            out.extend_from_slice(&[0; 4]);
        }
    }
    let end = out.len();
    out.push(INT3);
    for at in to_end {
        let rel = (end as i64 - (at as i64 + 4)) as i32;
        out[at..at + 4].copy_from_slice(&rel.to_le_bytes());
    }
    Code { bytes: out, end }
}

/// Upper bound of the code bytes of one call.
const MAX_CALL_CODE: usize = 6 * 10 + 5 + 2 + 7 + 9 + 10 + 12;

/// The arguments of call `c` as they were, for an error message.
fn describe(c: &Call, results: &[i64]) -> String {
    c.args
        .iter()
        .map(|a| match *a {
            Arg::Imm(v) => format!("{v:#x}"),
            Arg::Ret(j) => format!("{:#x}", results.get(j).copied().unwrap_or_default() as u64),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const TRAP_BIT: u64 = 1 << (libc::SIGTRAP - 1);

impl Tracee {
    /// Lets batches run as code at `off` of the scratch area (to its end),
    /// which the caller mapped executable.
    pub fn enable_blobs(&mut self, off: u64) {
        self.blob_off = Some(off);
    }

    /// Runs batches one remote syscall at a time from now on, and blocks
    /// SIGTRAP again if a blob took it out of the mask (a SIGTRAP about to
    /// be queued must wait there).
    pub fn disable_blobs(&mut self) -> Result<()> {
        self.blob_off = None;
        if self.trap_taken.get() {
            let mask = self.sigmask()?;
            self.set_sigmask(mask | TRAP_BIT)?;
        }
        Ok(())
    }

    /// Where batches run (offset in the scratch area), if they may.
    pub fn blob_off(&self) -> Option<u64> {
        self.blob_off
    }

    /// The blob area as (address, length), when there is one.
    fn blob_area(&self) -> Option<(u64, u64)> {
        let off = self.blob_off?;
        let (addr, len) = self.scratch?;
        (off < len && len - off >= 4096).then(|| (addr + off, len - off))
    }

    /// Whether [`Tracee::run_batch`] runs batches as code now (rather than
    /// one remote syscall at a time).
    pub fn blobs_usable(&mut self) -> Result<bool> {
        Ok(self.blob_area().is_some() && !self.sigtrap_ignored()?)
    }

    /// Whether the task ignores SIGTRAP now (read once, then kept until a
    /// remote `rt_sigaction`).
    fn sigtrap_ignored(&mut self) -> Result<bool> {
        if let Some(v) = self.trap_ignored {
            return Ok(v);
        }
        let st = crate::proc::read_status(self.pid()).map_err(|e| Error::Unexpected {
            pid: self.pid(),
            what: format!("reading its status for SIGTRAP's disposition: {e}"),
        })?;
        let v = st.sig_ign & TRAP_BIT != 0;
        self.trap_ignored = Some(v);
        Ok(v)
    }

    /// Runs the calls of `batch` in order and returns their raw results
    /// (`-errno` for a failure). The first failure of a call not marked
    /// `may_fail` ends the batch with an error naming it (index, name,
    /// arguments, errno). With a blob area, one stop per blob; without one
    /// (or while the task ignores SIGTRAP), one remote syscall at a time.
    ///
    /// Once a blob ran, SIGTRAP stays unblocked in the task (the mask is
    /// the caller's to set last, with [`Tracee::set_sigmask`]).
    pub fn run_batch(&mut self, batch: &Batch) -> Result<Vec<i64>> {
        let calls = batch.calls();
        let mut results: Vec<i64> = Vec::with_capacity(calls.len());
        // A batch that sets SIGTRAP's disposition (or one it cannot tell)
        // runs call by call: its own trap could undo what it set.
        let sets_trap = calls.iter().any(|c| {
            c.nr == libc::SYS_rt_sigaction
                && !matches!(c.args[0], Arg::Imm(s) if s != libc::SIGTRAP as u64)
        });
        let area = match self.blob_area() {
            Some(a) if !calls.is_empty() && !sets_trap && !self.sigtrap_ignored()? => Some(a),
            _ => None,
        };
        let Some((addr, len)) = area else {
            for (i, c) in calls.iter().enumerate() {
                let args: Vec<u64> = c
                    .args
                    .iter()
                    .map(|a| match *a {
                        Arg::Imm(v) => v,
                        Arg::Ret(j) => results.get(j).copied().unwrap_or_default() as u64,
                    })
                    .collect();
                let r = self.syscall_raw(c.nr, &args)?;
                results.push(r);
                if is_err(r) && !c.may_fail {
                    return Err(self.batch_error(calls, i, &results, r));
                }
            }
            return Ok(results);
        };
        // The area: the progress word, the results table (a quarter of
        // it), then code, each blob written where the last one stopped so
        // that the task need not be moved there.
        let progress = addr;
        let table = addr + 8;
        let code_start = addr + len / 4;
        let code_end = addr + len;
        let table_max = ((code_start - table) / 8) as usize;
        while results.len() < calls.len() {
            let first = results.len();
            let left = calls.len() - first;
            let fit = |at: u64| {
                (((code_end - at) as usize).saturating_sub(1) / MAX_CALL_CODE)
                    .min(table_max)
                    .min(left)
            };
            let mut at = self
                .blob_rip
                .filter(|&ip| ip >= code_start && ip < code_end)
                .unwrap_or(code_start);
            if fit(at) == 0 {
                at = code_start;
            }
            let n = fit(at);
            if n == 0 {
                return Err(Error::Unexpected {
                    pid: self.pid(),
                    what: format!("blob area of {len} bytes holds no call"),
                });
            }
            // Results from before this blob are immediates now.
            let chunk: Vec<Call> = calls[first..first + n]
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    for a in c.args.iter_mut() {
                        *a = match *a {
                            Arg::Ret(j) if j >= first => Arg::Ret(j - first),
                            Arg::Ret(j) => {
                                Arg::Imm(results.get(j).copied().unwrap_or_default() as u64)
                            }
                            imm => imm,
                        };
                    }
                    c
                })
                .collect();
            let l = Layout {
                code: at,
                table,
                progress,
            };
            let code = encode(&chunk, l);
            self.write_blob(at, &code.bytes)?;
            self.run_blob(at)?;
            self.blob_rip = Some(at + code.end as u64 + 1);
            let mut raw = vec![0u8; 8 + 8 * n];
            super::mem::read(self.pid(), progress, &mut raw).map_err(|e| Error::Unexpected {
                pid: self.pid(),
                what: format!("reading the results of a blob at {progress:#x}: {e}"),
            })?;
            let word = |i: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&raw[8 * i..8 * i + 8]);
                u64::from_le_bytes(b)
            };
            let ran = (word(0) & 0xffff_ffff) as usize;
            if ran == 0 || ran > n {
                return Err(Error::Unexpected {
                    pid: self.pid(),
                    what: format!("a blob at {at:#x} of {n} calls stopped after {ran}"),
                });
            }
            results.extend((1..=ran).map(|i| word(i) as i64));
            let last = first + ran - 1;
            if !calls[last].may_fail && is_err(results[last]) {
                return Err(self.batch_error(calls, last, &results, results[last]));
            }
            if ran < n {
                return Err(Error::Unexpected {
                    pid: self.pid(),
                    what: format!("a blob at {at:#x} of {n} calls stopped after {ran}"),
                });
            }
        }
        if calls.iter().any(|c| c.nr == libc::SYS_rt_sigaction) {
            self.trap_ignored = None;
        }
        Ok(results)
    }

    fn batch_error(&self, calls: &[Call], i: usize, results: &[i64], r: i64) -> Error {
        let c = &calls[i];
        Error::RemoteBatch {
            pid: self.pid(),
            index: i,
            count: calls.len(),
            name: syscall_name(c.nr),
            args: describe(c, results),
            errno: Errno::from_raw(-r as i32),
        }
    }

    fn write_blob(&self, at: u64, code: &[u8]) -> Result<()> {
        super::mem::write(self.pid(), at, code).map_err(|e| Error::Unexpected {
            pid: self.pid(),
            what: format!("writing a blob of {} bytes at {at:#x}: {e}", code.len()),
        })
    }

    /// Runs the code at `ip` until its trap. The task is moved there only
    /// when it is not there already (after the previous blob).
    fn run_blob(&mut self, ip: u64) -> Result<()> {
        let pid = self.pid;
        if !self.trap_unblocked.get() {
            let mask = self.sigmask()?;
            if mask & TRAP_BIT != 0 {
                self.set_sigmask(mask & !TRAP_BIT)?;
                self.trap_taken.set(true);
            }
            self.trap_unblocked.set(true);
        }
        if self.blob_rip != Some(ip) {
            let mut r = self.regs;
            r.rip = ip;
            r.orig_rax = u64::MAX;
            ptrace::setregs(pid, r).ctx(pid, "PTRACE_SETREGS")?;
        }
        // From here on the task is not where blob_rip says until the trap.
        self.blob_rip = None;
        ptrace::cont(pid, None).ctx(pid, "PTRACE_CONT")?;
        let mut retraps = 0;
        loop {
            match wait_stop(pid)? {
                WaitStatus::Stopped(_, Signal::SIGTRAP) => break,
                // A task in a job-control stop traps again on its way: go on.
                WaitStatus::PtraceEvent(_, _, ev)
                    if ev == libc::PTRACE_EVENT_STOP && retraps < 16 =>
                {
                    retraps += 1;
                    ptrace::cont(pid, None).ctx(pid, "PTRACE_CONT")?;
                }
                other => {
                    let at = ptrace::getregs(pid).map(|r| r.rip).unwrap_or_default();
                    return Err(Error::Unexpected {
                        pid: pid.as_raw(),
                        what: format!("a blob at {ip:#x}: unexpected stop {other:?} at {at:#x}"),
                    });
                }
            }
        }
        // A signal-delivery stop: on resume the kernel applies its restart
        // rules, as after an interrupt (orig_rax is -1: nothing to restart).
        self.stop = Stop::Event;
        Ok(())
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    const L: Layout = Layout {
        code: 0x7000_0000_2000,
        table: 0x7000_0000_0008,
        progress: 0x7000_0000_0000,
    };

    #[test]
    fn one_mmap_encodes_to_known_bytes() {
        let c = Call::new(
            libc::SYS_mmap,
            &[0, 0x1000, 3, 0x22, u64::MAX, 0x1_0000_0000],
        );
        let code = encode(&[c], L);
        #[rustfmt::skip]
        let want: Vec<u8> = vec![
            0x31, 0xff,                               // xor edi, edi
            0xbe, 0x00, 0x10, 0x00, 0x00,             // mov esi, 0x1000
            0xba, 0x03, 0x00, 0x00, 0x00,             // mov edx, 3
            0x41, 0xba, 0x22, 0x00, 0x00, 0x00,       // mov r10d, 0x22
            0x49, 0xc7, 0xc0, 0xff, 0xff, 0xff, 0xff, // mov r8, -1
            0x49, 0xb9, 0, 0, 0, 0, 1, 0, 0, 0,       // movabs r9, 0x100000000
            0xb8, 0x09, 0x00, 0x00, 0x00,             // mov eax, 9 (mmap)
            0x0f, 0x05,                               // syscall
            // mov [rip - 0x2029], rax: next ip 0x...2031 -> 0x...0008
            0x48, 0x89, 0x05, 0xd7, 0xdf, 0xff, 0xff,
            // mov dword [rip - 0x203b], 1: next ip 0x...203b -> 0x...0000
            0xc7, 0x05, 0xc5, 0xdf, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00,
            0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff,       // cmp rax, -4095
            0x0f, 0x83, 0x00, 0x00, 0x00, 0x00,       // jae end (the next byte)
            0xcc,                                     // end: int3
        ];
        assert_eq!(code.bytes, want, "{:02x?}", code.bytes);
        assert_eq!(code.end, want.len() - 1);
        assert!(code.bytes.len() <= MAX_CALL_CODE + 1);
    }

    #[test]
    fn an_earlier_result_is_loaded_from_the_table() {
        let calls = [
            Call::new(libc::SYS_getpid, &[]),
            Call::with_args(libc::SYS_close, &[Arg::Ret(0)]),
        ];
        let code = encode(&calls, L);
        let first = encode(&calls[..1], L).end;
        // second call starts with: mov rdi, [rip + disp32] -> table entry 0
        assert_eq!(&code.bytes[first..first + 3], &[0x48, 0x8b, 0x3d]);
        let next = L.code + first as u64 + 7;
        let disp = i32::from_le_bytes(code.bytes[first + 3..first + 7].try_into().unwrap());
        assert_eq!(next.wrapping_add(disp as i64 as u64), L.table);
        // r8 from entry 1: REX.R set
        let c = Call::with_args(
            libc::SYS_mmap,
            &[0.into(), 0.into(), 0.into(), 0.into(), Arg::Ret(1)],
        );
        let code = encode(&[c], L);
        assert!(code.bytes.windows(3).any(|w| w == [0x4c, 0x8b, 0x05]));
    }

    #[test]
    fn a_result_can_also_be_stored_as_32_bits() {
        let mut c = Call::new(libc::SYS_getpid, &[]);
        c.store32 = Some(0x7000_0000_3000);
        let code = encode(&[c], L);
        let store = [0xa3, 0x00, 0x30, 0, 0, 0, 0x70, 0, 0];
        let at = code.bytes.windows(9).position(|w| w == store).unwrap();
        // right after the store of rax into the table
        assert_eq!(&code.bytes[at - 7..at - 4], &[0x48, 0x89, 0x05]);
    }

    #[test]
    fn a_call_that_may_fail_has_no_check() {
        let mut c = Call::new(libc::SYS_madvise, &[1, 2, 3]);
        c.may_fail = true;
        let code = encode(&[c.clone()], L);
        c.may_fail = false;
        let checked = encode(&[c], L);
        assert_eq!(checked.bytes.len() - code.bytes.len(), 12);
        assert_eq!(code.bytes.iter().filter(|&&b| b == INT3).count(), 1);
    }

    /// A paused child of the test, seized, with an executable scratch area.
    fn traced_child() -> (Tracee, u64) {
        let c = crate::sys::testing::spawn_mem_child(&[]).unwrap();
        let mut t = Tracee::seize(c.pid, true).unwrap();
        let maps = crate::proc::read_maps(c.pid).unwrap();
        let vdso = maps
            .iter()
            .find(|m| m.name == crate::proc::MapName::Vdso)
            .unwrap();
        t.find_syscall_ip(vdso.start, vdso.end).unwrap();
        let page = crate::sys::PAGE_SIZE;
        let at = t.map_scratch_with_blobs(None, 4 * page, page).unwrap();
        (t, at)
    }

    fn finish(t: Tracee) {
        let pid = t.pid();
        t.kill();
        let _ = crate::sys::rusage::wait4(pid);
    }

    #[test]
    fn a_blob_maps_memory_in_a_traced_child_in_one_stop() {
        let (mut t, _) = traced_child();
        let pid = t.pid();
        let page = crate::sys::PAGE_SIZE;
        // Puppets run with every signal blocked: blobs take out SIGTRAP
        // only (the caller sets the final mask).
        let all = !((1u64 << (libc::SIGKILL - 1)) | (1u64 << (libc::SIGSTOP - 1)));
        t.set_sigmask(all).unwrap();
        let mut b = Batch::new();
        let m = b.push(
            libc::SYS_mmap,
            &[
                0,
                2 * page,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
                u64::MAX,
                0,
            ],
        );
        b.push_call(Call::with_args(
            libc::SYS_mprotect,
            &[
                Arg::Ret(m),
                Arg::Imm(page),
                Arg::Imm(libc::PROT_READ as u64),
            ],
        ));
        let mut c = Call::new(libc::SYS_getpid, &[]);
        let (scratch, _) = t.scratch().unwrap();
        c.store32 = Some(scratch + 16);
        let gp = b.push_call(c);
        let bad = b.push_may_fail(libc::SYS_munmap, &[1, 1]);
        let r = t.run_batch(&b).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[gp], i64::from(pid));
        assert_eq!(r[1], 0);
        assert_eq!(r[bad], -i64::from(libc::EINVAL));
        let base = r[m] as u64;
        let maps = crate::proc::read_maps(pid).unwrap();
        let prot = |a: u64| {
            maps.iter()
                .find(|e| e.start <= a && a < e.end)
                .map(|e| (e.perms.read, e.perms.write))
        };
        assert_eq!(prot(base), Some((true, false)));
        assert_eq!(prot(base + page), Some((true, true)));
        assert_eq!(t.sigmask().unwrap(), all & !TRAP_BIT);
        let mut word = [0u8; 4];
        t.scratch_get(16, &mut word).unwrap();
        assert_eq!(i32::from_le_bytes(word), pid);
        // And a plain remote syscall still works after the blob's stop.
        assert_eq!(t.syscall(libc::SYS_getpid, &[]).unwrap(), pid as u64);
        finish(t);
    }

    #[test]
    fn a_failing_call_stops_the_blob_and_is_named() {
        let (mut t, _) = traced_child();
        let pid = t.pid();
        let mut b = Batch::new();
        b.push(libc::SYS_getpid, &[]);
        b.push(libc::SYS_munmap, &[1, 1]);
        // Never runs: its result would show in the child's umask.
        b.push(libc::SYS_umask, &[0o077]);
        let e = t.run_batch(&b).unwrap_err();
        match &e {
            Error::RemoteBatch {
                pid: p,
                index,
                count,
                name,
                errno,
                ..
            } => {
                assert_eq!((*p, *index, *count), (pid, 1, 3));
                assert_eq!(name, "munmap");
                assert_eq!(*errno, Errno::EINVAL);
            }
            other => panic!("{other}"),
        }
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {pid}")) && msg.contains("munmap(0x1, 0x1"),
            "{msg}"
        );
        let old = t.syscall(libc::SYS_umask, &[0o022]).unwrap();
        assert_ne!(old, 0o077, "the call after the failure ran");
        finish(t);
    }

    #[test]
    fn a_batch_bigger_than_the_area_runs_in_several_blobs() {
        let (mut t, _) = traced_child();
        let pid = t.pid();
        let mut b = Batch::new();
        let first = b.push(libc::SYS_getpid, &[]);
        // 3 pages of area hold ~100 calls: 300 need several blobs, and the
        // later ones read the first result as an immediate.
        for _ in 0..300 {
            b.push_call(Call::with_args(libc::SYS_getpgid, &[Arg::Ret(first)]));
        }
        let r = t.run_batch(&b).unwrap();
        assert_eq!(r.len(), 301);
        let pgid = t.syscall(libc::SYS_getpgid, &[0]).unwrap() as i64;
        assert!(r[1..].iter().all(|&x| x == pgid), "{r:?}");
        assert_eq!(r[0], i64::from(pid));
        finish(t);
    }

    #[test]
    fn the_argument_registers_hold_the_immediates_at_the_trap() {
        use proptest::strategy::{Strategy, ValueTree};
        let (mut t, _) = traced_child();
        let (area, _) = t.blob_area().unwrap();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let one = proptest::prop_oneof![
            proptest::strategy::Just(0u64),
            0u64..=u64::from(u32::MAX),
            (i64::from(i32::MIN)..0).prop_map(|v| v as u64),
            proptest::num::u64::ANY,
        ];
        let strat = proptest::collection::vec(one, 6);
        let l = Layout {
            code: area + 1024,
            table: area + 8,
            progress: area,
        };
        for _ in 0..64 {
            let args = strat.new_tree(&mut runner).unwrap().current();
            // No such syscall: it fails with ENOSYS and leaves the
            // argument registers as they were loaded.
            let mut c = Call::new(1000, &args);
            c.may_fail = true;
            let code = encode(&[c], l);
            t.write_blob(l.code, &code.bytes).unwrap();
            t.run_blob(l.code).unwrap();
            let r = ptrace::getregs(t.pid).unwrap();
            assert_eq!(r.rip, l.code + code.end as u64 + 1);
            assert_eq!(
                [r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9],
                args[..],
                "{args:x?}"
            );
            assert_eq!(r.rax as i64, -i64::from(libc::ENOSYS));
        }
        finish(t);
    }

    proptest::proptest! {
        #[test]
        fn every_path_ends_on_the_final_int3_and_code_fits_its_bound(
            vals in proptest::collection::vec((0u64..=u64::MAX, proptest::bool::ANY), 1..40),
        ) {
            let calls: Vec<Call> = vals
                .chunks(6)
                .map(|c| {
                    let args: Vec<u64> = c.iter().map(|v| v.0).collect();
                    let mut call = Call::new(libc::SYS_getpid, &args);
                    call.may_fail = c[0].1;
                    call
                })
                .collect();
            let code = encode(&calls, L);
            proptest::prop_assert!(code.bytes.len() <= calls.len() * MAX_CALL_CODE + 1);
            proptest::prop_assert_eq!(code.bytes[code.end], INT3);
            proptest::prop_assert_eq!(code.end, code.bytes.len() - 1);
            // Every jae lands on the final int3.
            let mut jumps = 0;
            for i in 0..code.bytes.len().saturating_sub(5) {
                if code.bytes[i..i + 2] == [0x0f, 0x83] && i >= 6 && code.bytes[i - 6..i - 4] == [0x48, 0x3d] {
                    let rel = i32::from_le_bytes(code.bytes[i + 2..i + 6].try_into().unwrap());
                    proptest::prop_assert_eq!((i as i64 + 6 + i64::from(rel)) as usize, code.end);
                    jumps += 1;
                }
            }
            let checked = calls.iter().filter(|c| !c.may_fail).count();
            proptest::prop_assert_eq!(jumps, checked);
        }
    }
}
