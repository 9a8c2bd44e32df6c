//! SysV IPC from criu itself (in the caller's ipc namespace): shared
//! memory segments (make one with a chosen key, copy its content in or
//! out), message queues (read their messages without taking them, make a
//! queue and fill it) and semaphore sets (read and set all values).

use super::{check, Errno, SysResult};

/// `shmget(key, size, flags)`.
pub fn shmget(key: i32, size: usize, flags: i32) -> SysResult<i32> {
    // SAFETY: plain syscall with integer arguments.
    Ok(check(unsafe { libc::shmget(key, size, flags) } as libc::c_long)? as i32)
}

/// Attaches segment `id` for a moment and runs `f` on its bytes (`len`
/// of them, at most the segment's size); read-only unless `write`.
pub fn with_segment<T>(
    id: i32,
    len: usize,
    write: bool,
    f: impl FnOnce(&mut [u8]) -> T,
) -> SysResult<T> {
    let ds = stat(id)?;
    if len > ds.shm_segsz {
        return Err(Errno::EINVAL);
    }
    let flags = if write { 0 } else { libc::SHM_RDONLY };
    // SAFETY: the kernel picks a free address for the attachment; nothing
    // else in criu knows of it.
    let p = unsafe { libc::shmat(id, std::ptr::null(), flags) };
    if p as isize == -1 {
        return Err(Errno::last());
    }
    let out = if write {
        // SAFETY: the segment is mapped read-write at `p` for at least `len`
        // bytes (checked above) until shmdt below.
        f(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, len) })
    } else {
        // Read-only mapping: hand out a copy.
        // SAFETY: mapped readable at `p` for at least `len` bytes until
        // shmdt below.
        let mut copy = unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec();
        f(&mut copy)
    };
    // SAFETY: `p` is the attachment made above, used no more.
    unsafe { libc::shmdt(p) };
    Ok(out)
}

fn stat(id: i32) -> SysResult<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain old data; all zeroes is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the shmid_ds we own.
    check(unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) } as libc::c_long)?;
    Ok(ds)
}

/// Sets the owner and mode of segment `id` (IPC_SET).
pub fn shm_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> SysResult<()> {
    let mut ds = stat(id)?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as libc::c_ushort;
    // SAFETY: IPC_SET reads the shmid_ds we own.
    check(unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) } as libc::c_long)?;
    Ok(())
}

/// Removes segment `id`.
pub fn shm_remove(id: i32) -> SysResult<()> {
    // SAFETY: IPC_RMID takes no buffer.
    check(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } as libc::c_long)?;
    Ok(())
}

/// What criu keeps of a SysV object's permissions (`struct ipc_perm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
}

fn perm_of(p: &libc::ipc_perm) -> Perm {
    Perm {
        key: p.__key,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode as u32,
    }
}

/// A message queue's state (IPC_STAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsqStat {
    pub perm: Perm,
    pub qbytes: u64,
    pub qnum: u64,
}

fn msq_ds(id: i32) -> SysResult<libc::msqid_ds> {
    // SAFETY: msqid_ds is plain old data; all zeroes is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the msqid_ds we own.
    check(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) } as libc::c_long)?;
    Ok(ds)
}

/// IPC_STAT of message queue `id`.
pub fn msq_stat(id: i32) -> SysResult<MsqStat> {
    let ds = msq_ds(id)?;
    Ok(MsqStat {
        perm: perm_of(&ds.msg_perm),
        qbytes: ds.msg_qbytes as u64,
        qnum: ds.msg_qnum as u64,
    })
}

/// `msgget(key, flags)`.
pub fn msgget(key: i32, flags: i32) -> SysResult<i32> {
    // SAFETY: plain syscall with integer arguments.
    Ok(check(unsafe { libc::msgget(key, flags) } as libc::c_long)? as i32)
}

/// Sets owner, mode and qbytes of queue `id` (IPC_SET).
pub fn msq_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> SysResult<()> {
    let mut ds = msq_ds(id)?;
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as libc::c_ushort;
    ds.msg_qbytes = qbytes as _;
    // SAFETY: IPC_SET reads the msqid_ds we own.
    check(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) } as libc::c_long)?;
    Ok(())
}

/// `MSG_COPY` (a kernel with CONFIG_CHECKPOINT_RESTORE): read a message
/// by its position without taking it off the queue.
const MSG_COPY: i32 = 0o40000;

/// Message number `index` (from 0) of queue `id`, left in the queue:
/// (mtype, text). `max` is the largest text that may come (msgmax).
pub fn msg_peek(id: i32, index: usize, max: usize) -> SysResult<(i64, Vec<u8>)> {
    let word = std::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; word + max];
    // SAFETY: `buf` has room for the mtype word and `max` bytes of text.
    let n = check(unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr() as *mut libc::c_void,
            max,
            index as libc::c_long,
            libc::IPC_NOWAIT | MSG_COPY,
        )
    } as libc::c_long)? as usize;
    let mut t = [0u8; 8];
    t[..word].copy_from_slice(&buf[..word]);
    let mtype = i64::from_ne_bytes(t);
    Ok((mtype, buf[word..word + n.min(max)].to_vec()))
}

/// Puts a message at the end of queue `id` without waiting.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> SysResult<()> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&(mtype as libc::c_long).to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: `buf` holds the mtype word followed by text.len() bytes.
    check(unsafe {
        libc::msgsnd(
            id,
            buf.as_ptr() as *const libc::c_void,
            text.len(),
            libc::IPC_NOWAIT,
        )
    } as libc::c_long)?;
    Ok(())
}

/// Removes queue `id`.
pub fn msq_remove(id: i32) -> SysResult<()> {
    // SAFETY: IPC_RMID takes no buffer.
    check(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) } as libc::c_long)?;
    Ok(())
}

/// A semaphore set's state (IPC_STAT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemStat {
    pub perm: Perm,
    pub nsems: u64,
}

fn sem_ds(id: i32) -> SysResult<libc::semid_ds> {
    // SAFETY: semid_ds is plain old data; all zeroes is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the semid_ds we own.
    check(
        unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) }
            as libc::c_long,
    )?;
    Ok(ds)
}

/// IPC_STAT of semaphore set `id`.
pub fn sem_stat(id: i32) -> SysResult<SemStat> {
    let ds = sem_ds(id)?;
    Ok(SemStat {
        perm: perm_of(&ds.sem_perm),
        nsems: ds.sem_nsems as u64,
    })
}

/// `semget(key, nsems, flags)`.
pub fn semget(key: i32, nsems: i32, flags: i32) -> SysResult<i32> {
    // SAFETY: plain syscall with integer arguments.
    Ok(check(unsafe { libc::semget(key, nsems, flags) } as libc::c_long)? as i32)
}

/// The values of the `n` semaphores of set `id` (GETALL).
pub fn sem_values(id: i32, n: usize) -> SysResult<Vec<u16>> {
    if n as u64 != sem_stat(id)?.nsems {
        return Err(Errno::EINVAL);
    }
    let mut v = vec![0u16; n];
    // SAFETY: GETALL writes nsems (== n, checked above) u16s into `v`.
    check(unsafe { libc::semctl(id, 0, libc::GETALL, v.as_mut_ptr()) } as libc::c_long)?;
    Ok(v)
}

/// Sets every value of set `id` (SETALL); `v` must have one per semaphore.
pub fn sem_set_values(id: i32, v: &[u16]) -> SysResult<()> {
    if v.len() as u64 != sem_stat(id)?.nsems {
        return Err(Errno::EINVAL);
    }
    // SAFETY: SETALL reads nsems (== v.len(), checked above) u16s from `v`.
    check(unsafe { libc::semctl(id, 0, libc::SETALL, v.as_ptr()) } as libc::c_long)?;
    Ok(())
}

/// Sets owner and mode of semaphore set `id` (IPC_SET).
pub fn sem_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> SysResult<()> {
    let mut ds = sem_ds(id)?;
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as libc::c_ushort;
    // SAFETY: IPC_SET reads the semid_ds we own.
    check(
        unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) }
            as libc::c_long,
    )?;
    Ok(())
}

/// Removes semaphore set `id`.
pub fn sem_remove(id: i32) -> SysResult<()> {
    // SAFETY: IPC_RMID takes no buffer.
    check(unsafe { libc::semctl(id, 0, libc::IPC_RMID) } as libc::c_long)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_round_trip() {
        let id = shmget(libc::IPC_PRIVATE, 8192, libc::IPC_CREAT | 0o600).unwrap();
        with_segment(id, 5, true, |b| b.copy_from_slice(b"hello")).unwrap();
        let got = with_segment(id, 5, false, |b| b.to_vec()).unwrap();
        assert_eq!(got, b"hello");
        assert_eq!(with_segment(id, 8193, false, |_| ()), Err(Errno::EINVAL));
        shm_remove(id).unwrap();
    }

    #[test]
    fn queue_round_trip() {
        let Ok(id) = msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) else {
            return;
        };
        msg_send(id, 5, b"abc").unwrap();
        msg_send(id, 9, b"").unwrap();
        let st = msq_stat(id).unwrap();
        assert_eq!(st.qnum, 2);
        // MSG_COPY exists only with CONFIG_CHECKPOINT_RESTORE
        if let Ok(m) = msg_peek(id, 0, 64) {
            assert_eq!(m, (5, b"abc".to_vec()));
            assert_eq!(msg_peek(id, 1, 64).unwrap(), (9, Vec::new()));
            assert_eq!(msq_stat(id).unwrap().qnum, 2);
        }
        msq_set(id, st.perm.uid, st.perm.gid, 0o640, st.qbytes - 1).unwrap();
        let st2 = msq_stat(id).unwrap();
        assert_eq!((st2.perm.mode & 0o777, st2.qbytes), (0o640, st.qbytes - 1));
        msq_remove(id).unwrap();
    }

    #[test]
    fn semaphores_round_trip() {
        let Ok(id) = semget(libc::IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600) else {
            return;
        };
        sem_set_values(id, &[4, 0, 9]).unwrap();
        assert_eq!(sem_values(id, 3).unwrap(), vec![4, 0, 9]);
        assert_eq!(sem_values(id, 2), Err(Errno::EINVAL));
        sem_set_owner(id, 0, 0, 0o604).ok();
        sem_remove(id).unwrap();
    }
}
