//! `--join-ns NS:PID|FILE` (RPC `join_ns`): the tree is restored into a
//! namespace that exists already instead of one made for it. The root
//! puppet is born in it (criu's thread enters it for the clone and goes
//! back right after), and nothing of the dumped namespace is restored into
//! it: its devices, hostname or IPC objects are what they are.
//!
//! The kinds a thread of a running (multi-threaded) criu can enter and
//! leave: net, uts and ipc. The others are refused by name.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;

use super::{Kind, Result};
use crate::objects::Error;

/// One `--join-ns` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinNs {
    pub kind: Kind,
    /// `/proc/PID/ns/KIND` for a PID, else the namespace file given.
    pub file: PathBuf,
}

impl JoinNs {
    /// Parses `NS:PID` or `NS:FILE`; `extra` is the option's third part
    /// (CRIU's `uid,gid` of a user namespace), which none of the kinds here
    /// takes.
    pub fn parse(ns: &str, target: &str, extra: Option<&str>) -> std::result::Result<Self, String> {
        let kind = match ns {
            "net" => Kind::Net,
            "uts" => Kind::Uts,
            "ipc" => Kind::Ipc,
            "user" | "time" | "pid" | "mnt" | "cgroup" => {
                return Err(format!(
                    "{ns}: joining an existing {ns} namespace is not supported by criu-rs (net, uts and ipc are)"
                ))
            }
            _ => return Err(format!("{ns}: no such namespace kind")),
        };
        if let Some(x) = extra.filter(|x| !x.is_empty()) {
            return Err(format!(
                "{ns}:{target},{x}: extra options are for user namespaces only"
            ));
        }
        if target.is_empty() {
            return Err(format!("{ns}: the namespace needs a PID or a file"));
        }
        let file = match target.parse::<u32>() {
            Ok(pid) => PathBuf::from(format!("/proc/{pid}/ns/{}", kind.proc_name())),
            Err(_) => PathBuf::from(target),
        };
        Ok(JoinNs { kind, file })
    }

    /// Parses the command line's `NS:TARGET[,EXTRA]`.
    pub fn parse_option(s: &str) -> std::result::Result<Self, String> {
        let (ns, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected NS:PID or NS:FILE"))?;
        let (target, extra) = match rest.split_once(',') {
            Some((t, x)) => (t, Some(x)),
            None => (rest, None),
        };
        JoinNs::parse(ns, target, extra)
    }

    fn flag(&self) -> CloneFlags {
        CloneFlags::from_bits_retain(self.kind.clone_flag() as i32)
    }
}

/// The namespaces to join, opened (and checked to be of their kind) before
/// anything is restored.
#[derive(Debug, Default)]
pub struct Joins {
    ns: Vec<(JoinNs, OwnedFd)>,
}

impl Joins {
    pub fn open(joins: &[JoinNs]) -> Result<Joins> {
        let mut ns = Vec::new();
        for j in joins {
            if ns.iter().any(|(o, _): &(JoinNs, OwnedFd)| o.kind == j.kind) {
                return Err(Error::Mismatch {
                    what: format!("--join-ns {}: given twice", j.kind.proc_name()),
                });
            }
            let fd = open(&j.file, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(
                |errno| Error::Sys {
                    pid: 0,
                    what: format!(
                        "--join-ns {}: opening {}",
                        j.kind.proc_name(),
                        j.file.display()
                    ),
                    errno,
                },
            )?;
            if super::kind_of_fd(fd.as_fd()) != Some(j.kind) {
                return Err(Error::Mismatch {
                    what: format!(
                        "--join-ns {}: {} is not a {} namespace",
                        j.kind.proc_name(),
                        j.file.display(),
                        j.kind.proc_name()
                    ),
                });
            }
            ns.push((j.clone(), fd));
        }
        Ok(Joins { ns })
    }

    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.ns.iter().map(|(j, _)| j.kind)
    }

    /// Runs `f` with criu's thread in the namespaces to join, and puts it
    /// back into its own afterwards (whatever `f` returned).
    pub fn inside<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        let mut back = Vec::new();
        let mut entered = || -> Result<()> {
            for (j, fd) in &self.ns {
                let own = format!("/proc/thread-self/ns/{}", j.kind.proc_name());
                let mine = open(
                    own.as_str(),
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|errno| Error::Sys {
                    pid: 0,
                    what: format!("opening {own}"),
                    errno,
                })?;
                setns(fd, j.flag()).map_err(|errno| Error::Sys {
                    pid: 0,
                    what: format!(
                        "entering the {} namespace {}",
                        j.kind.proc_name(),
                        j.file.display()
                    ),
                    errno,
                })?;
                back.push((mine, j.flag()));
            }
            Ok(())
        };
        let r = entered().map(|()| f());
        for (fd, flag) in back.into_iter().rev() {
            if let Err(errno) = setns(&fd, flag) {
                // criu cannot go on in a namespace not its own.
                panic!("cannot return to criu's own namespace ({flag:?}): {errno}");
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        assert_eq!(
            JoinNs::parse_option("net:123").unwrap(),
            JoinNs {
                kind: Kind::Net,
                file: "/proc/123/ns/net".into()
            }
        );
        assert_eq!(
            JoinNs::parse_option("uts:/run/uts/x").unwrap().file,
            PathBuf::from("/run/uts/x")
        );
        assert!(JoinNs::parse_option("user:1,0,0")
            .unwrap_err()
            .contains("not supported"));
        assert!(JoinNs::parse_option("ipc:1,x")
            .unwrap_err()
            .contains("extra"));
        assert!(JoinNs::parse_option("bogus:1")
            .unwrap_err()
            .contains("no such"));
        assert!(JoinNs::parse_option("net").is_err());
        assert!(JoinNs::parse_option("net:").is_err());
    }

    #[test]
    fn a_file_of_another_kind_is_refused() {
        let e = Joins::open(&[JoinNs {
            kind: Kind::Net,
            file: "/proc/self/ns/uts".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("is not a net namespace"), "{e}");
        let e = Joins::open(&[JoinNs {
            kind: Kind::Net,
            file: "/nonexistent/ns".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ns"), "{e}");
    }

    #[test]
    fn criu_enters_its_own_namespace_and_comes_back() {
        let me = std::fs::read_link("/proc/thread-self/ns/uts").unwrap();
        let j = Joins::open(&[JoinNs {
            kind: Kind::Uts,
            file: "/proc/self/ns/uts".into(),
        }])
        .unwrap();
        let inside = j
            .inside(|| std::fs::read_link("/proc/thread-self/ns/uts").unwrap())
            .unwrap();
        assert_eq!(inside, me);
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/uts").unwrap(), me);
    }
}
