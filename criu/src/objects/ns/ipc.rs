//! IPC namespaces: the namespace's sysctls (`ipcns-var-ID.img`), its
//! SysV shared memory segments (`ipcns-shm-ID.img`: each entry followed by
//! the segment's bytes, rounded up to 4), message queues
//! (`ipcns-msg-ID.img`: each queue's entry, then per message an `IpcMsg`
//! followed by its text rounded up to 8) and semaphore sets
//! (`ipcns-sem-ID.img`: each set's entry followed by its u16 values,
//! rounded up to 8).
//!
//! Every object is made again with its id by setting the namespace's
//! `*_next_id` sysctl just before creating it.

use std::path::Path;

use super::{in_ns, in_ns_as, Kind, Result};
use crate::image::{self, magic, pb};
use crate::objects::Error;
use crate::sys;

/// A message (mtype, text).
pub type Message = (i64, Vec<u8>);

/// A message queue and its messages, oldest first.
pub type Queue = (pb::IpcMsgEntry, Vec<Message>);

/// What the images say of an ipc namespace.
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub var: pb::IpcVarEntry,
    /// Each segment and its content.
    pub shm: Vec<(pb::IpcShmEntry, Vec<u8>)>,
    /// Each queue and its messages (mtype, text), oldest first.
    pub msg: Vec<Queue>,
    /// Each semaphore set and its values.
    pub sem: Vec<(pb::IpcSemEntry, Vec<u16>)>,
}

fn msg_file(id: u32) -> String {
    format!("ipcns-msg-{id}.img")
}

fn sem_file(id: u32) -> String {
    format!("ipcns-sem-{id}.img")
}

/// `len` rounded up to a multiple of 8 (messages and semaphore values).
fn padded8(len: u64) -> u64 {
    (len + 7) & !7
}

fn desc_of(id: i32, p: &sys::sysv::Perm) -> pb::IpcDescEntry {
    pb::IpcDescEntry {
        key: p.key as u32,
        uid: p.uid,
        gid: p.gid,
        cuid: p.cuid,
        cgid: p.cgid,
        mode: p.mode,
        id: id as u32,
    }
}

/// The ids listed in a /proc/sysvipc file (second column).
fn listed_ids(pid: i32, kind: &str, text: &str) -> Result<Vec<i32>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| Error::Mismatch {
                    what: format!(
                        "/proc/sysvipc/{kind} of pid {pid}'s ipc namespace: cannot parse {l:?}"
                    ),
                })
        })
        .collect()
}

/// Every message queue of the caller's ipc namespace, with its messages
/// read in place (MSG_COPY) so that the tree finds them again.
fn dump_queues(pid: i32, msgmax: u32) -> Result<Vec<Queue>> {
    let text = get(pid, "/proc/sysvipc/msg")?;
    let mut out = Vec::new();
    for id in listed_ids(pid, "msg", &text)? {
        let sys_err = |what: String| move |errno| Error::Sys { pid, what, errno };
        let st =
            sys::sysv::msq_stat(id).map_err(sys_err(format!("IPC_STAT of message queue {id}")))?;
        let mut msgs = Vec::new();
        for i in 0..st.qnum as usize {
            let mut max = msgmax.max(8192) as usize;
            let m = loop {
                match sys::sysv::msg_peek(id, i, max) {
                    // a message sent before msgmax was lowered
                    Err(nix::errno::Errno::E2BIG) if max < st.qbytes as usize => {
                        max = (st.qbytes as usize).min(1 << 24)
                    }
                    r => break r,
                }
            };
            let m = m.map_err(sys_err(format!(
                "reading message {i} of queue {id} in place (msgrcv MSG_COPY; the kernel needs CONFIG_CHECKPOINT_RESTORE)"
            )))?;
            msgs.push(m);
        }
        let e = pb::IpcMsgEntry {
            desc: desc_of(id, &st.perm),
            qbytes: st.qbytes as u32,
            qnum: msgs.len() as u32,
        };
        out.push((e, msgs));
    }
    Ok(out)
}

/// Every semaphore set of the caller's ipc namespace and its values.
fn dump_sems(pid: i32) -> Result<Vec<(pb::IpcSemEntry, Vec<u16>)>> {
    let text = get(pid, "/proc/sysvipc/sem")?;
    let mut out = Vec::new();
    for id in listed_ids(pid, "sem", &text)? {
        let sys_err = |what: String| move |errno| Error::Sys { pid, what, errno };
        let st =
            sys::sysv::sem_stat(id).map_err(sys_err(format!("IPC_STAT of semaphore set {id}")))?;
        let v = sys::sysv::sem_values(id, st.nsems as usize)
            .map_err(sys_err(format!("GETALL of semaphore set {id}")))?;
        let e = pb::IpcSemEntry {
            desc: desc_of(id, &st.perm),
            nsems: st.nsems as u32,
        };
        out.push((e, v));
    }
    Ok(out)
}

fn shm_file(id: u32) -> String {
    format!("ipcns-shm-{id}.img")
}

/// One line of /proc/sysvipc/shm: `key shmid perms size cpid lpid nattch
/// uid gid cuid cgid …` (perms in octal).
pub fn parse_shm_line(line: &str) -> Option<pb::IpcShmEntry> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let n = |i: usize| w.get(i)?.parse::<i64>().ok();
    Some(pb::IpcShmEntry {
        desc: pb::IpcDescEntry {
            key: n(0)? as u32,
            id: n(1)? as u32,
            mode: u32::from_str_radix(w.get(2)?, 8).ok()?,
            uid: n(7)? as u32,
            gid: n(8)? as u32,
            cuid: n(9)? as u32,
            cgid: n(10)? as u32,
        },
        size: n(3)? as u64,
        ..Default::default()
    })
}

fn padded(len: u64) -> u64 {
    (len + 3) & !3
}

fn var_file(id: u32) -> String {
    format!("ipcns-var-{id}.img")
}

fn get(pid: i32, path: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        pid,
        what: format!("reading {path} in the ipc namespace"),
        source,
    })
}

fn num<T: std::str::FromStr>(pid: i32, path: &str) -> Result<T> {
    let t = get(pid, path)?;
    t.trim().parse().map_err(|_| Error::Mismatch {
        what: format!("{path} of pid {pid}'s ipc namespace: not a number: {t:?}"),
    })
}

fn opt_num<T: std::str::FromStr>(path: &str) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The sysctls that belong to the ipc namespace, and whether they are
/// optional (absent on some kernels).
const K: &str = "/proc/sys/kernel";
const MQ: &str = "/proc/sys/fs/mqueue";

fn read_var(pid: i32) -> Result<pb::IpcVarEntry> {
    let sem = get(pid, &format!("{K}/sem"))?;
    let sem_ctls: Vec<u32> = sem
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Ok(pb::IpcVarEntry {
        sem_ctls,
        msg_ctlmax: num(pid, &format!("{K}/msgmax"))?,
        msg_ctlmnb: num(pid, &format!("{K}/msgmnb"))?,
        msg_ctlmni: num(pid, &format!("{K}/msgmni"))?,
        auto_msgmni: opt_num(&format!("{K}/auto_msgmni")).unwrap_or(0),
        shm_ctlmax: num(pid, &format!("{K}/shmmax"))?,
        shm_ctlall: num(pid, &format!("{K}/shmall"))?,
        shm_ctlmni: num(pid, &format!("{K}/shmmni"))?,
        shm_rmid_forced: num(pid, &format!("{K}/shm_rmid_forced"))?,
        mq_queues_max: num(pid, &format!("{MQ}/queues_max"))?,
        mq_msg_max: num(pid, &format!("{MQ}/msg_max"))?,
        mq_msgsize_max: num(pid, &format!("{MQ}/msgsize_max"))?,
        mq_msg_default: opt_num(&format!("{MQ}/msg_default")),
        mq_msgsize_default: opt_num(&format!("{MQ}/msgsize_default")),
        msg_next_id: next_id(&format!("{K}/msg_next_id")),
        sem_next_id: next_id(&format!("{K}/sem_next_id")),
        shm_next_id: next_id(&format!("{K}/shm_next_id")),
    })
}

/// A `*_next_id` sysctl: None when unset (-1, the kernel's default).
fn next_id(path: &str) -> Option<u32> {
    opt_num::<i64>(path).filter(|&v| v >= 0).map(|v| v as u32)
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let (var, shm, msg, sem) = in_ns(pid, &[Kind::Ipc], || {
        let text = get(pid, "/proc/sysvipc/shm")?;
        let mut shm = Vec::new();
        for l in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let e = parse_shm_line(l).ok_or_else(|| Error::Mismatch {
                what: format!("/proc/sysvipc/shm of pid {pid}'s ipc namespace: cannot parse {l:?}"),
            })?;
            let len = usize::try_from(e.size).unwrap_or(usize::MAX);
            let data = sys::sysv::with_segment(e.desc.id as i32, len, false, |b| b.to_vec())
                .map_err(|errno| Error::Sys {
                    pid,
                    what: format!("reading SysV segment {}", e.desc.id),
                    errno,
                })?;
            shm.push((e, data));
        }
        let var = read_var(pid)?;
        let msg = dump_queues(pid, var.msg_ctlmax)?;
        let sem = dump_sems(pid)?;
        Ok((var, shm, msg, sem))
    })?;
    image::write_image(dir, &var_file(id), magic::IPC_VAR, [&var])?;
    let mut w = image::ImageWriter::create(dir, &shm_file(id), magic::IPCNS_SHM)?;
    for (e, data) in &shm {
        w.write(e)?;
        let mut d = data.clone();
        d.resize(padded(e.size) as usize, 0);
        w.write_raw(&d)?;
    }
    w.finish()?;
    let mut w = image::ImageWriter::create(dir, &msg_file(id), magic::IPCNS_MSG)?;
    for (e, msgs) in &msg {
        w.write(e)?;
        for (mtype, text) in msgs {
            w.write(&pb::IpcMsg {
                mtype: *mtype as u64,
                msize: text.len() as u32,
            })?;
            let mut d = text.clone();
            d.resize(padded8(text.len() as u64) as usize, 0);
            w.write_raw(&d)?;
        }
    }
    w.finish()?;
    let mut w = image::ImageWriter::create(dir, &sem_file(id), magic::IPCNS_SEM)?;
    for (e, values) in &sem {
        w.write(e)?;
        w.write_raw(&sem_bytes(values))?;
    }
    w.finish()?;
    Ok(())
}

/// Semaphore values as stored: native u16s, zero-padded to 8 bytes.
fn sem_bytes(values: &[u16]) -> Vec<u8> {
    let mut d: Vec<u8> = values.iter().flat_map(|v| v.to_ne_bytes()).collect();
    d.resize(padded8(d.len() as u64) as usize, 0);
    d
}

fn read_msgs(dir: &Path, id: u32) -> Result<Vec<Queue>> {
    let mut out = Vec::new();
    if !dir.join(msg_file(id)).exists() {
        return Ok(out);
    }
    let mut r = image::ImageReader::open(dir, &msg_file(id), magic::IPCNS_MSG)?;
    while let Some(e) = r.next::<pb::IpcMsgEntry>()? {
        let mut msgs = Vec::new();
        for i in 0..e.qnum {
            let m = r.next::<pb::IpcMsg>()?.ok_or_else(|| Error::Mismatch {
                what: format!(
                    "{}: queue {} ends after {i} of its {} messages",
                    msg_file(id),
                    e.desc.id,
                    e.qnum
                ),
            })?;
            let mut text = r.read_raw(padded8(m.msize as u64))?;
            text.truncate(m.msize as usize);
            msgs.push((m.mtype as i64, text));
        }
        out.push((e, msgs));
    }
    Ok(out)
}

fn read_sems(dir: &Path, id: u32) -> Result<Vec<(pb::IpcSemEntry, Vec<u16>)>> {
    let mut out = Vec::new();
    if !dir.join(sem_file(id)).exists() {
        return Ok(out);
    }
    let mut r = image::ImageReader::open(dir, &sem_file(id), magic::IPCNS_SEM)?;
    while let Some(e) = r.next::<pb::IpcSemEntry>()? {
        let raw = r.read_raw(padded8(2 * e.nsems as u64))?;
        let values = raw
            .chunks_exact(2)
            .take(e.nsems as usize)
            .map(|c| u16::from_ne_bytes([c[0], c[1]]))
            .collect();
        out.push((e, values));
    }
    Ok(out)
}

pub fn read(dir: &Path, id: u32) -> Result<Option<Images>> {
    if id == 0 || !dir.join(var_file(id)).exists() {
        return Ok(None);
    }
    let mut shm = Vec::new();
    if dir.join(shm_file(id)).exists() {
        let mut r = image::ImageReader::open(dir, &shm_file(id), magic::IPCNS_SHM)?;
        while let Some(e) = r.next::<pb::IpcShmEntry>()? {
            if e.in_pagemaps == Some(true) {
                return Err(Error::Unsupported {
                    pid: 0,
                    what: format!(
                        "{}: segment {} keeps its pages in a pagemap; not read yet",
                        shm_file(id),
                        e.desc.id
                    ),
                });
            }
            let mut data = r.read_raw(padded(e.size))?;
            data.truncate(e.size as usize);
            shm.push((e, data));
        }
    }
    Ok(Some(Images {
        var: image::read_one(dir, &var_file(id), magic::IPC_VAR)?,
        shm,
        msg: read_msgs(dir, id)?,
        sem: read_sems(dir, id)?,
    }))
}

fn set(pid: i32, path: &str, v: impl std::fmt::Display) -> Result<()> {
    std::fs::write(path, v.to_string()).map_err(|source| Error::Io {
        pid,
        what: format!("writing {path} in the ipc namespace"),
        source,
    })
}

/// Makes segment `e` again with its id (through shm_next_id), owner, mode
/// and content.
fn make_segment(pid: i32, e: &pb::IpcShmEntry, data: &[u8]) -> Result<()> {
    let d = &e.desc;
    let sys_err = |what: String| move |errno| Error::Sys { pid, what, errno };
    set(pid, &format!("{K}/shm_next_id"), d.id as i32)?;
    let size = usize::try_from(e.size).unwrap_or(usize::MAX);
    let got = sys::sysv::shmget(d.key as i32, size, libc::IPC_CREAT | libc::IPC_EXCL | 0o600)
        .map_err(sys_err(format!("shmget of SysV segment {}", d.id)))?;
    if got as u32 != d.id {
        return Err(Error::Mismatch {
            what: format!("SysV segment {} came back with id {got}", d.id),
        });
    }
    sys::sysv::with_segment(got, data.len(), true, |b| b.copy_from_slice(data))
        .map_err(sys_err(format!("filling SysV segment {}", d.id)))?;
    sys::sysv::shm_set_owner(got, d.uid, d.gid, d.mode)
        .map_err(sys_err(format!("IPC_SET of SysV segment {}", d.id)))?;
    Ok(())
}

/// Makes queue `e` again with its id, owner, mode, qbytes and messages.
fn make_queue(pid: i32, e: &pb::IpcMsgEntry, msgs: &[(i64, Vec<u8>)]) -> Result<()> {
    let d = &e.desc;
    let sys_err = |what: String| move |errno| Error::Sys { pid, what, errno };
    set(pid, &format!("{K}/msg_next_id"), d.id as i32)?;
    let got = sys::sysv::msgget(
        d.key as i32,
        libc::IPC_CREAT | libc::IPC_EXCL | (d.mode & 0o777) as i32,
    )
    .map_err(sys_err(format!("msgget of message queue {}", d.id)))?;
    if got as u32 != d.id {
        return Err(Error::Mismatch {
            what: format!("message queue {} came back with id {got}", d.id),
        });
    }
    let owner = |qbytes: u64| {
        sys::sysv::msq_set(got, d.uid, d.gid, d.mode, qbytes).map_err(sys_err(format!(
            "IPC_SET of message queue {} (qbytes {qbytes}; more than msgmnb needs CAP_SYS_RESOURCE)",
            d.id
        )))
    };
    let now =
        sys::sysv::msq_stat(got).map_err(sys_err(format!("IPC_STAT of message queue {}", d.id)))?;
    // Room first when the queue held more than a new one takes.
    if e.qbytes as u64 > now.qbytes {
        owner(e.qbytes as u64)?;
    }
    for (i, (mtype, text)) in msgs.iter().enumerate() {
        sys::sysv::msg_send(got, *mtype, text).map_err(sys_err(format!(
            "msgsnd of message {i} ({} bytes) to queue {}",
            text.len(),
            d.id
        )))?;
    }
    owner(e.qbytes as u64)
}

/// Makes semaphore set `e` again with its id, owner, mode and values.
fn make_sem_set(pid: i32, e: &pb::IpcSemEntry, values: &[u16]) -> Result<()> {
    let d = &e.desc;
    let sys_err = |what: String| move |errno| Error::Sys { pid, what, errno };
    set(pid, &format!("{K}/sem_next_id"), d.id as i32)?;
    let got = sys::sysv::semget(
        d.key as i32,
        e.nsems as i32,
        libc::IPC_CREAT | libc::IPC_EXCL | (d.mode & 0o777) as i32,
    )
    .map_err(sys_err(format!("semget of semaphore set {}", d.id)))?;
    if got as u32 != d.id {
        return Err(Error::Mismatch {
            what: format!("semaphore set {} came back with id {got}", d.id),
        });
    }
    sys::sysv::sem_set_values(got, values)
        .map_err(sys_err(format!("SETALL of semaphore set {}", d.id)))?;
    sys::sysv::sem_set_owner(got, d.uid, d.gid, d.mode)
        .map_err(sys_err(format!("IPC_SET of semaphore set {}", d.id)))?;
    Ok(())
}

/// Sets the sysctls of the new ipc namespace of `pid`; `owner` is the
/// root of its user namespace (host ids), when it has its own.
pub fn restore(pid: i32, i: &Images, owner: Option<(u32, u32)>) -> Result<()> {
    let v = &i.var;
    in_ns_as(pid, &[Kind::Ipc], owner, || {
        if !v.sem_ctls.is_empty() {
            let s: Vec<String> = v.sem_ctls.iter().map(|x| x.to_string()).collect();
            set(pid, &format!("{K}/sem"), s.join(" "))?;
        }
        set(pid, &format!("{K}/msgmax"), v.msg_ctlmax)?;
        set(pid, &format!("{K}/msgmnb"), v.msg_ctlmnb)?;
        set(pid, &format!("{K}/msgmni"), v.msg_ctlmni)?;
        set(pid, &format!("{K}/shmmax"), v.shm_ctlmax)?;
        set(pid, &format!("{K}/shmall"), v.shm_ctlall)?;
        set(pid, &format!("{K}/shmmni"), v.shm_ctlmni)?;
        set(pid, &format!("{K}/shm_rmid_forced"), v.shm_rmid_forced)?;
        set(pid, &format!("{MQ}/queues_max"), v.mq_queues_max)?;
        set(pid, &format!("{MQ}/msg_max"), v.mq_msg_max)?;
        set(pid, &format!("{MQ}/msgsize_max"), v.mq_msgsize_max)?;
        if let Some(x) = v.mq_msg_default {
            set(pid, &format!("{MQ}/msg_default"), x)?;
        }
        if let Some(x) = v.mq_msgsize_default {
            set(pid, &format!("{MQ}/msgsize_default"), x)?;
        }
        Ok(())
    })?;
    // The *_next_id sysctls want CAP_CHECKPOINT_RESTORE over the
    // namespace (criu has it, its root has not): the segments and the ids
    // are made as criu.
    in_ns(pid, &[Kind::Ipc], || {
        for (e, data) in &i.shm {
            make_segment(pid, e, data)?;
        }
        for (e, msgs) in &i.msg {
            make_queue(pid, e, msgs)?;
        }
        for (e, values) in &i.sem {
            make_sem_set(pid, e, values)?;
        }
        for (name, x) in [
            ("msg_next_id", v.msg_next_id),
            ("sem_next_id", v.sem_next_id),
            ("shm_next_id", v.shm_next_id),
        ] {
            if let Some(x) = x {
                set(pid, &format!("{K}/{name}"), x as i32)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_listed() {
        let hdr = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime\n";
        assert!(listed_ids(1, "msg", hdr).unwrap().is_empty());
        let two = format!("{hdr}   2774359      32769   640          21          5  12  0  0  0  0  0  0  0  0\n         0          2   604  7 1 12 0 0 0 0 0 0 0 0\n");
        assert_eq!(listed_ids(1, "msg", &two).unwrap(), vec![32769, 2]);
        assert!(listed_ids(1, "msg", &format!("{hdr}  12\n")).is_err());
    }

    #[test]
    fn queues_and_sets_round_trip_through_images() {
        let dir = tempfile::tempdir().unwrap();
        let desc = |id| pb::IpcDescEntry {
            key: 0x2a5157,
            uid: 1,
            gid: 2,
            cuid: 3,
            cgid: 4,
            mode: 0o640,
            id,
        };
        let msgs = vec![
            (7i64, b"hello".to_vec()),
            (1 << 40, Vec::new()),
            (3, vec![9; 17]),
        ];
        let values = vec![1u16, 0, 65535];
        let mut w = image::ImageWriter::create(dir.path(), &msg_file(5), magic::IPCNS_MSG).unwrap();
        w.write(&pb::IpcMsgEntry {
            desc: desc(32769),
            qbytes: 15384,
            qnum: 3,
        })
        .unwrap();
        for (t, text) in &msgs {
            w.write(&pb::IpcMsg {
                mtype: *t as u64,
                msize: text.len() as u32,
            })
            .unwrap();
            let mut d = text.clone();
            d.resize(padded8(text.len() as u64) as usize, 0);
            w.write_raw(&d).unwrap();
        }
        w.finish().unwrap();
        let mut w = image::ImageWriter::create(dir.path(), &sem_file(5), magic::IPCNS_SEM).unwrap();
        w.write(&pb::IpcSemEntry {
            desc: desc(3),
            nsems: 3,
        })
        .unwrap();
        w.write_raw(&sem_bytes(&values)).unwrap();
        w.finish().unwrap();
        assert_eq!(sem_bytes(&values).len(), 8);
        let m = read_msgs(dir.path(), 5).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].0.desc.id, m[0].0.qbytes), (32769, 15384));
        assert_eq!(m[0].1, msgs);
        let s = read_sems(dir.path(), 5).unwrap();
        assert_eq!(
            s,
            vec![(
                pb::IpcSemEntry {
                    desc: desc(3),
                    nsems: 3
                },
                values
            )]
        );
        assert!(read_msgs(dir.path(), 6).unwrap().is_empty());
    }

    #[test]
    fn shm_lines() {
        let l =
            "  1234     65539  1600     65536   12   12    1 18943 58467 18943 58467 0 0 0 16384 0";
        let e = parse_shm_line(l).unwrap();
        assert_eq!(
            (e.desc.key, e.desc.id, e.desc.mode, e.size),
            (1234, 65539, 0o1600, 65536)
        );
        assert_eq!(
            (e.desc.uid, e.desc.gid, e.desc.cuid, e.desc.cgid),
            (18943, 58467, 18943, 58467)
        );
        assert!(parse_shm_line("1 2 x").is_none());
        assert_eq!(padded(5), 8);
        assert_eq!(padded(8), 8);
    }

    #[test]
    fn own_sysctls() {
        let v = read_var(std::process::id() as i32).unwrap();
        assert_eq!(v.sem_ctls.len(), 4);
        assert!(v.shm_ctlmni > 0);
    }
}
