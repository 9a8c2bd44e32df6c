//! Credentials (`creds_entry`): uids, gids, supplementary groups,
//! capability sets, securebits, no_new_privs.
//!
//! Restored last but for the registers: once the puppet has dropped root it
//! can no longer do what the other objects need.

use crate::image::pb;
use crate::proc;
use crate::remote::Tracee;

use super::Result;

fn split(caps: u64) -> Vec<u32> {
    vec![caps as u32, (caps >> 32) as u32]
}

fn join(words: &[u32]) -> u64 {
    words
        .iter()
        .take(2)
        .enumerate()
        .fold(0, |acc, (i, w)| acc | (u64::from(*w) << (32 * i)))
}

/// Dump half for thread `tid` of `pid` (`secbits` read remotely by the
/// caller).
pub fn dump_task(pid: i32, tid: i32, secbits: u32) -> Result<pb::CredsEntry> {
    let s = proc::read_task_status(pid, tid)?;
    Ok(pb::CredsEntry {
        uid: s.uid.real,
        gid: s.gid.real,
        euid: s.uid.effective,
        egid: s.gid.effective,
        suid: s.uid.saved,
        sgid: s.gid.saved,
        fsuid: s.uid.fs,
        fsgid: s.gid.fs,
        cap_inh: split(s.cap_inh),
        cap_prm: split(s.cap_prm),
        cap_eff: split(s.cap_eff),
        cap_bnd: split(s.cap_bnd.unwrap_or(0)),
        secbits,
        groups: s.groups.clone(),
        lsm_profile: None,
        lsm_sockcreate: None,
        apparmor_data: None,
        // set only when on, as upstream does
        no_new_privs: s.no_new_privs.filter(|&on| on).map(u32::from),
        cap_amb: split(s.cap_amb.unwrap_or(0)),
    })
}

const PR_CAPBSET_DROP: u64 = 24;
const PR_SET_SECUREBITS: u64 = 28;
const PR_SET_KEEPCAPS: u64 = 8;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
const CAP_LAST: u64 = 63;
const CAP_SETPCAP: u64 = 8;

fn capset(t: &mut Tracee, eff: u64, prm: u64, inh: u64, off: u64) -> Result<()> {
    let mut b = Vec::with_capacity(8 + 24);
    b.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for i in 0..2 {
        for set in [eff, prm, inh] {
            b.extend_from_slice(&((set >> (32 * i)) as u32).to_le_bytes());
        }
    }
    let addr = t.scratch_put(off, &b)?;
    t.syscall(libc::SYS_capset, &[addr, addr + 8])?;
    Ok(())
}

/// Restore half: turns the puppet (root, all capabilities) into the task's
/// credentials.
pub fn restore(t: &mut Tracee, c: &pb::CredsEntry, scratch_off: u64) -> Result<()> {
    let bnd = join(&c.cap_bnd);
    let prm = join(&c.cap_prm);
    // Bounding set first: dropping needs CAP_SETPCAP, which may go below.
    for cap in 0..=CAP_LAST {
        if bnd & (1 << cap) == 0 {
            let r = t.syscall_raw(libc::SYS_prctl, &[PR_CAPBSET_DROP, cap, 0, 0, 0])?;
            if r == -(libc::EINVAL as i64) {
                break; // past the kernel's last capability
            }
        }
    }
    t.syscall(libc::SYS_prctl, &[PR_SET_KEEPCAPS, 1, 0, 0, 0])?;
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_le_bytes()).collect();
    let addr = t.scratch_put(
        scratch_off,
        if groups.is_empty() {
            &[0u8; 4]
        } else {
            &groups
        },
    )?;
    t.syscall(libc::SYS_setgroups, &[c.groups.len() as u64, addr])?;
    t.syscall(
        libc::SYS_setresgid,
        &[u64::from(c.gid), u64::from(c.egid), u64::from(c.sgid)],
    )?;
    t.syscall(libc::SYS_setfsgid, &[u64::from(c.fsgid)])?;
    t.syscall(
        libc::SYS_setresuid,
        &[u64::from(c.uid), u64::from(c.euid), u64::from(c.suid)],
    )?;
    t.syscall(libc::SYS_setfsuid, &[u64::from(c.fsuid)])?;
    // With KEEPCAPS the permitted set survived the uid change: make it
    // effective long enough to set securebits, then give the exact sets.
    capset(
        t,
        prm | (1 << CAP_SETPCAP),
        prm | (1 << CAP_SETPCAP),
        0,
        scratch_off,
    )
    .or_else(|_| capset(t, prm, prm, 0, scratch_off))?;
    t.syscall(
        libc::SYS_prctl,
        &[PR_SET_SECUREBITS, u64::from(c.secbits), 0, 0, 0],
    )
    .map(|_| ())
    .or_else(|e| if c.secbits == 0 { Ok(()) } else { Err(e) })?;
    capset(t, join(&c.cap_eff), prm, join(&c.cap_inh), scratch_off)?;
    let amb = join(&c.cap_amb);
    for cap in 0..=CAP_LAST {
        if amb & (1 << cap) != 0 {
            t.syscall(
                libc::SYS_prctl,
                &[PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0],
            )?;
        }
    }
    if c.no_new_privs == Some(1) {
        t.syscall(libc::SYS_prctl, &[PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0])?;
    }
    Ok(())
}
