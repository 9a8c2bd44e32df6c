//! Restartable sequences: the area a thread registered with rseq(2).

use crate::image::pb;
use crate::remote::Tracee;

use super::Result;

const RSEQ_FLAG_UNREGISTER: u64 = 1;

/// Dump half: what the thread registered (None when nothing).
pub fn dump(t: &Tracee) -> Result<Option<pb::RseqEntry>> {
    let c = t.rseq()?;
    Ok((c.rseq_abi_pointer != 0).then_some(pb::RseqEntry {
        rseq_abi_pointer: c.rseq_abi_pointer,
        rseq_abi_size: c.rseq_abi_size,
        signature: c.signature,
        rseq_cs_pointer: None,
    }))
}

/// Drops the puppet's inherited registration (criu's own, whose memory is
/// about to go away).
pub fn unregister(t: &mut Tracee) -> Result<()> {
    let c = t.rseq()?;
    if c.rseq_abi_pointer != 0 {
        t.syscall(
            libc::SYS_rseq,
            &[
                c.rseq_abi_pointer,
                u64::from(c.rseq_abi_size),
                RSEQ_FLAG_UNREGISTER,
                u64::from(c.signature),
            ],
        )?;
    }
    Ok(())
}

/// Restore half: registers the area again (its memory must be in place).
pub fn restore(t: &mut Tracee, e: &pb::RseqEntry) -> Result<()> {
    t.syscall(
        libc::SYS_rseq,
        &[
            e.rseq_abi_pointer,
            u64::from(e.rseq_abi_size),
            0,
            u64::from(e.signature),
        ],
    )?;
    Ok(())
}
