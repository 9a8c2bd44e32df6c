use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/ipc_sem",
    family: "ns",
    flavors: NS_FLAVORS,
    feature: Some("sysvipc"),
    description: "SysV semaphore sets of the test's ipc namespace keep their key, id, mode and values",
    ..Desc::DEFAULT
};

const KEY: i32 = 0x2a_5e33;

fn semget(key: i32, n: i32, flags: i32) -> std::io::Result<i32> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::semget(key, n, flags) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

fn ctl(id: i32, cmd: i32, arg: *mut libc::c_void) -> std::io::Result<i32> {
    // SAFETY: every caller passes the buffer its `cmd` needs (or null).
    let r = unsafe { libc::semctl(id, 0, cmd, arg) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

fn stat(id: i32) -> std::io::Result<libc::semid_ds> {
    // SAFETY: semid_ds is plain data; all zeroes is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    ctl(id, libc::IPC_STAT, &mut ds as *mut libc::semid_ds as *mut libc::c_void)?;
    Ok(ds)
}

fn values(id: i32, n: usize) -> std::io::Result<Vec<u16>> {
    let mut v = vec![0u16; n];
    ctl(id, libc::GETALL, v.as_mut_ptr() as *mut libc::c_void)?;
    Ok(v)
}

pub fn run(t: &mut Test) -> Result<()> {
    let gone = semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600).context("semget (scratch)")?;
    let s = semget(KEY, 5, libc::IPC_CREAT | libc::IPC_EXCL | 0o640).context("semget KEY")?;
    let one = semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o606).context("semget private")?;
    ctl(gone, libc::IPC_RMID, std::ptr::null_mut()).context("IPC_RMID scratch")?;
    let mut want: Vec<u16> = vec![1, 0, 300, 32767, 7];
    ctl(s, libc::SETALL, want.as_mut_ptr() as *mut libc::c_void).context("SETALL")?;
    let mut one_v = vec![42u16];
    ctl(one, libc::SETALL, one_v.as_mut_ptr() as *mut libc::c_void).context("SETALL private")?;
    t.daemon()?;
    t.wait_sig();

    let again = semget(KEY, 0, 0).context("semget KEY after restore")?;
    ensure!(again == s, "set of key {KEY:#x} has id {again}, expected {s}");
    let ds = stat(s).with_context(|| format!("IPC_STAT of set {s}"))?;
    ensure!(ds.sem_nsems == 5, "set {s} has {} semaphores", ds.sem_nsems);
    ensure!(ds.sem_perm.mode as u32 & 0o777 == 0o640, "set {s} mode {:o}", ds.sem_perm.mode);
    let got = values(s, 5).context("GETALL")?;
    ensure!(got == want, "set {s} values {got:?}, expected {want:?}");
    let ds = stat(one).with_context(|| format!("IPC_STAT of set {one}"))?;
    ensure!(ds.sem_perm.mode as u32 & 0o777 == 0o606, "set {one} mode {:o}", ds.sem_perm.mode);
    let got = values(one, 1).context("GETALL private")?;
    ensure!(got == [42], "set {one} values {got:?}");
    ctl(s, libc::IPC_RMID, std::ptr::null_mut())?;
    ctl(one, libc::IPC_RMID, std::ptr::null_mut())?;
    Ok(())
}
