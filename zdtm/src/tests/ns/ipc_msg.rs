use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/ipc_msg",
    family: "ns",
    flavors: NS_FLAVORS,
    feature: Some("sysvipc"),
    description: "SysV message queues of the test's ipc namespace keep their key, id, mode, qbytes and messages (types and bytes, in order)",
    ..Desc::DEFAULT
};

const KEY: i32 = 0x2a_5157;
const MAX: usize = 512;

#[repr(C)]
struct MsgBuf {
    mtype: libc::c_long,
    text: [u8; MAX],
}

fn msgget(key: i32, flags: i32) -> std::io::Result<i32> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe { libc::msgget(key, flags) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

fn stat(id: i32) -> std::io::Result<libc::msqid_ds> {
    // SAFETY: msqid_ds is plain data; IPC_STAT fills the one we own.
    unsafe {
        let mut ds: libc::msqid_ds = std::mem::zeroed();
        if libc::msgctl(id, libc::IPC_STAT, &mut ds) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ds)
    }
}

fn set(id: i32, ds: &mut libc::msqid_ds) -> std::io::Result<()> {
    // SAFETY: IPC_SET reads the msqid_ds we own.
    if unsafe { libc::msgctl(id, libc::IPC_SET, ds) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn remove(id: i32) -> std::io::Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    if unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn send(id: i32, mtype: i64, data: &[u8]) -> std::io::Result<()> {
    let mut b = MsgBuf { mtype: mtype as libc::c_long, text: [0; MAX] };
    b.text[..data.len()].copy_from_slice(data);
    // SAFETY: `b` holds mtype followed by at least data.len() bytes.
    let r = unsafe { libc::msgsnd(id, &b as *const MsgBuf as *const libc::c_void, data.len(), libc::IPC_NOWAIT) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The next message of the queue (any type), or None when it is empty.
fn recv(id: i32) -> std::io::Result<Option<(i64, Vec<u8>)>> {
    let mut b = MsgBuf { mtype: 0, text: [0; MAX] };
    // SAFETY: `b` has room for mtype and MAX bytes of text.
    let r = unsafe { libc::msgrcv(id, &mut b as *mut MsgBuf as *mut libc::c_void, MAX, 0, libc::IPC_NOWAIT) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOMSG) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some((b.mtype, b.text[..r as usize].to_vec())))
}

fn messages() -> Vec<(i64, Vec<u8>)> {
    vec![
        (7, b"first message".to_vec()),
        (3, Vec::new()),
        (7, (0..=255u8).cycle().take(301).collect()),
        (1 << 40, b"big type".to_vec()),
        (2, vec![0xa5; 9]),
    ]
}

pub fn run(t: &mut Test) -> Result<()> {
    // A queue made and removed first, so that the kept queues do not have
    // the ids a fresh namespace would hand out.
    let gone = msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600).context("msgget (scratch)")?;
    let q = msgget(KEY, libc::IPC_CREAT | libc::IPC_EXCL | 0o640).context("msgget KEY")?;
    let p = msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o604).context("msgget private")?;
    remove(gone).context("IPC_RMID scratch")?;
    let mut ds = stat(q).context("IPC_STAT")?;
    let qbytes = ds.msg_qbytes as u64 - 1000;
    ds.msg_qbytes = qbytes as _;
    set(q, &mut ds).context("IPC_SET qbytes")?;
    for (ty, data) in messages() {
        send(q, ty, &data).with_context(|| format!("msgsnd type {ty}"))?;
    }
    send(p, 99, b"private").context("msgsnd private")?;
    t.daemon()?;
    t.wait_sig();

    let again = msgget(KEY, 0).context("msgget KEY after restore")?;
    ensure!(again == q, "queue of key {KEY:#x} has id {again}, expected {q}");
    let ds = stat(q).with_context(|| format!("IPC_STAT of queue {q}"))?;
    let mode = ds.msg_perm.mode as u32 & 0o777;
    ensure!(mode == 0o640, "queue {q} mode {mode:o}, expected 640");
    ensure!(ds.msg_qbytes as u64 == qbytes, "queue {q} qbytes {}, expected {qbytes}", ds.msg_qbytes);
    let want = messages();
    ensure!(ds.msg_qnum as usize == want.len(), "queue {q} holds {} messages, expected {}", ds.msg_qnum, want.len());
    for (i, (ty, data)) in want.iter().enumerate() {
        let got = recv(q).with_context(|| format!("msgrcv #{i}"))?;
        ensure!(got.as_ref() == Some(&(*ty, data.clone())), "message #{i}: got {got:?}, expected type {ty} with {} bytes", data.len());
    }
    ensure!(recv(q)?.is_none(), "queue {q} holds more messages than were sent");
    let ds = stat(p).with_context(|| format!("IPC_STAT of private queue {p}"))?;
    ensure!(ds.msg_perm.__key == libc::IPC_PRIVATE, "queue {p} got key {:#x}", ds.msg_perm.__key);
    ensure!(ds.msg_perm.mode as u32 & 0o777 == 0o604, "queue {p} mode {:o}", ds.msg_perm.mode);
    let got = recv(p).context("msgrcv private")?;
    ensure!(got == Some((99, b"private".to_vec())), "private queue message: {got:?}");
    remove(q)?;
    remove(p)?;
    Ok(())
}
