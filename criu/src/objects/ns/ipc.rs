//! IPC namespaces: the namespace's sysctls (`ipcns-var-ID.img`). SysV
//! objects (shared memory, message queues, semaphores) inside a namespace
//! are refused at dump for now.

use std::path::Path;

use super::{in_ns, in_ns_as, Kind, Result};
use crate::image::{self, magic, pb};
use crate::objects::Error;

/// What the images say of an ipc namespace.
#[derive(Debug, Clone, Default)]
pub struct Images {
    pub var: pb::IpcVarEntry,
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
    let sem_ctls: Vec<u32> = sem.split_whitespace().filter_map(|w| w.parse().ok()).collect();
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

/// The number of objects listed in a /proc/sysvipc file (after its header).
fn count_objects(text: &str) -> usize {
    text.lines().skip(1).filter(|l| !l.trim().is_empty()).count()
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let var = in_ns(pid, &[Kind::Ipc], || {
        for kind in ["shm", "msg", "sem"] {
            let t = get(pid, &format!("/proc/sysvipc/{kind}"))?;
            let n = count_objects(&t);
            if n > 0 {
                return Err(Error::Unsupported {
                    pid,
                    what: format!(
                        "its ipc namespace holds {n} SysV {kind} object(s); dumping SysV objects is not supported yet"
                    ),
                });
            }
        }
        read_var(pid)
    })?;
    image::write_image(dir, &var_file(id), magic::IPC_VAR, [&var])?;
    Ok(())
}

pub fn read(dir: &Path, id: u32) -> Result<Option<Images>> {
    if id == 0 || !dir.join(var_file(id)).exists() {
        return Ok(None);
    }
    Ok(Some(Images {
        var: image::read_one(dir, &var_file(id), magic::IPC_VAR)?,
    }))
}

fn set(pid: i32, path: &str, v: impl std::fmt::Display) -> Result<()> {
    std::fs::write(path, v.to_string()).map_err(|source| Error::Io {
        pid,
        what: format!("writing {path} in the ipc namespace"),
        source,
    })
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
    fn objects_counted() {
        let hdr = "       key      shmid perms                  size  cpid  lpid nattch\n";
        assert_eq!(count_objects(hdr), 0);
        let one = format!("{hdr}         0         3   600      65536   12   12   1\n");
        assert_eq!(count_objects(&one), 1);
    }

    #[test]
    fn own_sysctls() {
        let v = read_var(std::process::id() as i32).unwrap();
        assert_eq!(v.sem_ctls.len(), 4);
        assert!(v.shm_ctlmni > 0);
    }
}
