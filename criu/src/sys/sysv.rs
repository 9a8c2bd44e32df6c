//! SysV shared memory from criu itself (in the caller's ipc namespace):
//! make a segment with a chosen key, copy its content in or out.

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
}
