//! Signal dispositions (`sigactions` of `task_core_entry`) and the blocked
//! mask (`blk_sigset`).

use crate::image::pb;
use crate::remote::blob::Batch;
use crate::remote::Tracee;

use super::Result;

/// Size of the kernel's `struct sigaction` on x86_64.
const KSIGACTION: usize = 32;
const NSIG: i32 = 64;

/// The signals that have a disposition of their own (all but SIGKILL and
/// SIGSTOP), in image order.
fn signals() -> impl Iterator<Item = i32> {
    (1..=NSIG).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

/// Dump half: every disposition, read with a remote `rt_sigaction`.
pub fn dump(t: &mut Tracee, scratch_off: u64) -> Result<Vec<pb::SaEntry>> {
    let (base, _) = t.scratch().unwrap_or((0, 0));
    let mut out = Vec::with_capacity(62);
    for sig in signals() {
        t.syscall(
            libc::SYS_rt_sigaction,
            &[sig as u64, 0, base + scratch_off, 8],
        )?;
        let mut k = [0u8; KSIGACTION];
        t.scratch_get(scratch_off, &mut k)?;
        let w = |i: usize| u64::from_le_bytes(k[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        out.push(pb::SaEntry {
            sigaction: w(0),
            flags: w(1),
            restorer: w(2),
            mask: w(3),
            compat_sigaction: Some(false),
            mask_extended: None,
        });
    }
    Ok(out)
}

/// Whether disposition `sa` is what a signal the puppet neither ignores
/// nor catches has already: SIG_DFL with no flags, mask or restorer.
fn is_pristine_default(sa: &pb::SaEntry) -> bool {
    sa.sigaction == 0 && sa.flags == 0 && sa.mask == 0 && sa.restorer == 0
}

/// Restore half: every disposition, set with a remote `rt_sigaction`, but
/// the default ones the puppet has already. Puppets are made from criu
/// before any of them is restored, so they carry criu's dispositions, and
/// criu sets none but what /proc shows (Rust ignores SIGPIPE, catches
/// SIGSEGV/SIGBUS): a signal neither ignored nor caught there is SIG_DFL
/// with flags, mask and restorer cleared by criu's execve. Skipping those
/// saves ~50 remote syscalls per process.
///
/// The others go in one batch (their `struct sigaction`s side by side at
/// `scratch_off`), but SIGTRAP's, which is set alone after it: a batch
/// ends in a trap, which would reset an ignored SIGTRAP to SIG_DFL.
pub fn restore(t: &mut Tracee, sas: &[pb::SaEntry], scratch_off: u64) -> Result<()> {
    let st = crate::proc::read_status(t.pid())?;
    let handled = st.sig_ign | st.sig_cgt;
    let (base, _) = t.scratch().unwrap_or((0, 0));
    let mut structs = Vec::new();
    let mut batch = Batch::new();
    let mut trap = None;
    for (sig, sa) in signals().zip(sas.iter()) {
        if is_pristine_default(sa) && handled & (1u64 << (sig - 1)) == 0 {
            continue;
        }
        let mut k = Vec::with_capacity(KSIGACTION);
        for v in [sa.sigaction, sa.flags, sa.restorer, sa.mask] {
            k.extend_from_slice(&v.to_le_bytes());
        }
        if sig == libc::SIGTRAP {
            trap = Some(k);
            continue;
        }
        let addr = base + scratch_off + structs.len() as u64;
        structs.extend_from_slice(&k);
        batch.push(libc::SYS_rt_sigaction, &[sig as u64, addr, 0, 8]);
    }
    if !batch.is_empty() {
        t.scratch_put(scratch_off, &structs)?;
        t.run_batch(&batch)?;
    }
    if let Some(k) = trap {
        let addr = t.scratch_put(scratch_off, &k)?;
        t.syscall(libc::SYS_rt_sigaction, &[libc::SIGTRAP as u64, addr, 0, 8])?;
    }
    Ok(())
}
