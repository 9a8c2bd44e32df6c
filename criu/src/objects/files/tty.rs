//! Terminals. Unix98 pty pairs are dumped (`tty_file_entry` in files.img,
//! one `tty_info_entry` per side of a pty in `tty-info.img`) and made again
//! with the same index; every other terminal is refused by name.
//!
//! What a pty keeps: its index, the termios and window size of the slave,
//! the lock of the slave, packet mode, exclusive mode, and the bytes queued
//! unread on either side (`tty-data.img`, one `tty_data_entry` per side
//! that has any, named by that side's info id, as upstream). Queued bytes
//! are read at the end of the dump and written back into the other side
//! (so the dumped tree finds them again). That rewrite goes through the
//! line discipline: output queued for the master is kept only when the
//! slave does no output processing (no OPOST). Input queued for the slave
//! is kept in any mode: in canonical mode the slave leaves it for a moment
//! to read the partial line too; input that the line discipline would
//! process again is written back under a quiet termios (no input mapping,
//! no signals or editing characters, echo only to know when it has been
//! taken, read away again) and the slave's termios is put back after.
//! (A line ended by the EOF character comes back ended by it; a NUL byte
//! of canonical input is taken for one.)
//!
//! Controlling terminals: a session leader of the tree whose controlling
//! terminal is a pty slave it holds gets it back (its `sid` and foreground
//! `pgrp` go into the slave's info entry; restore does TIOCSCTTY and
//! TIOCSPGRP inside the leader). Any other task with a controlling
//! terminal is refused by name: a task that is not its session's leader
//! (the kernel lets only a leader take one), or one that holds no fd on
//! its terminal.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};

use crate::image::{self, magic, pb};
use crate::remote::Tracee;
use crate::sys;

use super::super::{Error, Result};
use super::no_owner;

/// Entries of the kernel's termios `c_cc` (NCCS of termios2).
const NCC: usize = 19;

/// The kind of terminal a character device `rdev` is, if it is one.
pub fn kind(rdev: u64) -> Option<&'static str> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    match (major, minor) {
        (5, 0) => Some("the controlling terminal (/dev/tty)"),
        (5, 1) => Some("the system console"),
        (5, 2) => Some("a pty master (/dev/ptmx)"),
        (4, 0..=63) => Some("a virtual console"),
        (4, _) | (204..=205, _) => Some("a serial terminal"),
        (128..=135, _) => Some("a pty master"),
        (136..=143, _) => Some("a pty slave (/dev/pts)"),
        (2, _) => Some("a BSD pty master"),
        (3, _) => Some("a BSD pty slave"),
        _ => None,
    }
}

/// Which side of a Unix98 pty `rdev` is: Some(true) for the master,
/// Some(false) for the slave, None for no pty.
/// A pty master opened through a ptmx (device 5:2), of /dev or of a devpts
/// instance.
pub fn is_ptmx(rdev: u64) -> bool {
    (libc::major(rdev), libc::minor(rdev)) == (5, 2)
}

pub fn pty_side(rdev: u64) -> Option<bool> {
    match (libc::major(rdev), libc::minor(rdev)) {
        (5, 2) | (128..=135, _) => Some(true),
        (136..=143, _) => Some(false),
        _ => None,
    }
}

/// `rdev` as the kernel's 32-bit device number (the image's `rdev`).
fn encode_dev(rdev: u64) -> u32 {
    let (ma, mi) = (libc::major(rdev), libc::minor(rdev));
    (mi & 0xff) | ((ma & 0xfff) << 8) | ((mi & !0xff) << 12)
}

/// The image's 32-bit `rdev` back as a device number.
fn decode_dev(dev: u32) -> u64 {
    libc::makedev((dev & 0xfff00) >> 8, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

/// The pty index of a slave whose /proc link is `link` (`/dev/pts/N`),
/// else its minor number.
fn slave_index(link: &str, rdev: u64) -> u32 {
    link.rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(libc::minor(rdev))
}

fn termios_entry(t: &libc::termios2) -> pb::TermiosEntry {
    pb::TermiosEntry {
        c_iflag: t.c_iflag,
        c_oflag: t.c_oflag,
        c_cflag: t.c_cflag,
        c_lflag: t.c_lflag,
        c_line: u32::from(t.c_line),
        c_ispeed: t.c_ispeed,
        c_ospeed: t.c_ospeed,
        c_cc: t.c_cc.iter().take(NCC).map(|&c| u32::from(c)).collect(),
    }
}

fn termios_of(e: &pb::TermiosEntry) -> libc::termios2 {
    let mut cc = [0 as libc::cc_t; NCC];
    for (d, &s) in cc.iter_mut().zip(&e.c_cc) {
        *d = s as libc::cc_t;
    }
    libc::termios2 {
        c_iflag: e.c_iflag,
        c_oflag: e.c_oflag,
        c_cflag: e.c_cflag,
        c_lflag: e.c_lflag,
        c_line: e.c_line as libc::cc_t,
        c_cc: cc,
        c_ispeed: e.c_ispeed,
        c_ospeed: e.c_ospeed,
    }
}

/// One side of a pty met in the dump: where it was seen first, and a copy
/// of its open file to read its queued bytes from.
#[derive(Debug)]
struct Side {
    info_id: u32,
    pid: i32,
    fd: i32,
    file: OwnedFd,
}

/// The controlling terminal of the task whose fds are being dumped.
#[derive(Debug)]
struct Ctty {
    pid: i32,
    /// `tty_nr` of its stat: the terminal's device, as the images keep it.
    dev: u32,
    /// Session and foreground group, as criu sees them.
    session: i32,
    tpgid: i32,
    /// An fd of the task was found on it.
    held: bool,
    /// The task does not lead its session, whose leader is dumped too.
    leader_dumped: bool,
}

/// The ttys of a dump: one info entry per side of each pty.
#[derive(Debug, Default)]
pub struct TtyDump {
    infos: Vec<pb::TtyInfoEntry>,
    /// (is master, pty index) -> info id.
    by_side: HashMap<(bool, u32), u32>,
    sides: Vec<(bool, u32, Side)>,
    ctty: Option<Ctty>,
}

/// Whether bytes queued for `master_side` (true: output of the slave
/// waiting for the master; false: input waiting for the slave) come out
/// the same when written again into the other side under termios `t`.
fn rewrite_is_exact(t: &libc::termios2, master_side: bool) -> bool {
    if master_side {
        t.c_oflag & libc::OPOST == 0
    } else {
        t.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN) == 0
            && t.c_iflag
                & (libc::ICRNL
                    | libc::INLCR
                    | libc::IGNCR
                    | libc::ISTRIP
                    | libc::IUCLC
                    | libc::IXON
                    | libc::PARMRK)
                == 0
    }
}

/// Reads every byte readable on `fd` now.
fn drain(fd: BorrowedFd<'_>) -> std::result::Result<Vec<u8>, nix::errno::Errno> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while sys::tty_queue::readable_now(fd)? {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The termios under which input written into the master is taken as is
/// by the slave: `t` without input mapping, output processing, signals
/// or editing characters, with echo (to see when it has been taken), in
/// canonical mode if `t` is.
fn quiet_termios(t: &libc::termios2) -> libc::termios2 {
    let mut q = *t;
    q.c_iflag = 0;
    q.c_oflag &= !libc::OPOST;
    q.c_lflag = (t.c_lflag & libc::ICANON) | libc::ECHO;
    for c in [
        libc::VINTR,
        libc::VQUIT,
        libc::VERASE,
        libc::VKILL,
        libc::VEOF,
        libc::VSTART,
        libc::VSTOP,
        libc::VSUSP,
        libc::VREPRINT,
        libc::VDISCARD,
        libc::VWERASE,
        libc::VLNEXT,
    ] {
        q.c_cc[c] = 0;
    }
    if t.c_lflag & libc::ICANON == 0 {
        q.c_cc[libc::VMIN] = 1;
        q.c_cc[libc::VTIME] = 0;
    }
    q
}

/// How many bytes of echo writing `data` under [`quiet_termios`] of `t`
/// gives: all but the NULs that end lines in canonical mode.
fn echo_len(t: &libc::termios2, data: &[u8]) -> usize {
    if t.c_lflag & libc::ICANON != 0 {
        data.iter().filter(|&&b| b != 0).count()
    } else {
        data.len()
    }
}

/// Queues `data` as input of the slave of pty `master`, whose termios is
/// `t`, so that the slave reads exactly `data` (line ends included): plain
/// when `t` takes it as is, else under [`quiet_termios`], waiting for the
/// echo (which is read away), then `t` again.
fn queue_input(
    master: BorrowedFd<'_>,
    t: &libc::termios2,
    data: &[u8],
) -> std::result::Result<(), nix::errno::Errno> {
    if rewrite_is_exact(t, false) {
        return write_all(master, data);
    }
    if sys::tty_queue::queued(master)? != 0 {
        // The echo could not be told apart from what waits already.
        return Err(nix::errno::Errno::EBUSY);
    }
    sys::tty::set_termios(master, &quiet_termios(t))?;
    let r = (|| {
        write_all(master, data)?;
        let want = echo_len(t, data);
        let mut got = 0;
        let mut buf = [0u8; 4096];
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got < want {
            if sys::tty_queue::readable_now(master)? {
                let room = (want - got).min(buf.len());
                match nix::unistd::read(master, &mut buf[..room]) {
                    Ok(0) => return Err(nix::errno::Errno::EIO),
                    Ok(n) => got += n,
                    Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
                    Err(e) => return Err(e),
                }
            } else if std::time::Instant::now() > end {
                return Err(nix::errno::Errno::ETIMEDOUT);
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(())
    })();
    let back = sys::tty::set_termios(master, t);
    r.and(back)
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> std::result::Result<(), nix::errno::Errno> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return Err(nix::errno::Errno::EIO),
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl TtyDump {
    /// Called before the fds of `pid` are dumped: notes its controlling
    /// terminal, if any. `tree`: the pids of the dumped tree (as criu sees
    /// them, the keys).
    pub fn begin_task(&mut self, pid: i32, tree: &HashMap<i32, i32>) -> Result<()> {
        let st = crate::proc::read_stat(pid)?;
        self.ctty = (st.tty_nr != 0).then_some(Ctty {
            pid,
            dev: st.tty_nr as u32,
            session: st.session,
            tpgid: st.tpgid,
            held: false,
            leader_dumped: st.session != pid && tree.contains_key(&st.session),
        });
        Ok(())
    }

    /// Called for every fd of the task on tty `info_id` (dumped now or
    /// shared with an fd dumped before): if it is the task's controlling
    /// terminal, the info keeps the session and foreground group, or the
    /// dump fails when they could not be made again.
    pub fn note_fd(
        &mut self,
        pid: i32,
        fd: i32,
        info_id: u32,
        tree: &HashMap<i32, i32>,
    ) -> Result<()> {
        let Some(c) = self.ctty.as_ref() else {
            return Ok(());
        };
        let Some(info) = self.infos.iter().find(|i| i.id == info_id) else {
            return Ok(());
        };
        if info.rdev != c.dev || pty_side(decode_dev(info.rdev)) != Some(false) {
            return Ok(());
        }
        let (session, tpgid) = (c.session, c.tpgid);
        let name = info.pty.as_ref().map_or(0, |p| p.index);
        let refuse = |why: String| Error::Unsupported {
            pid,
            what: format!(
                "fd {fd} (/dev/pts/{name}) is the controlling terminal of the task, {why}"
            ),
        };
        if session != pid && c.leader_dumped {
            // A member of a session whose leader is dumped: it gets the
            // terminal from its leader at restore, whose fds say which.
            if let Some(c) = self.ctty.as_mut() {
                c.held = true;
            }
            return Ok(());
        }
        if session != pid {
            return Err(refuse(format!(
                "which does not lead its session {session}: criu-rs gives a controlling terminal back only to a session leader"
            )));
        }
        let sid = *tree.get(&session).ok_or_else(|| {
            refuse(format!(
                "whose session {session} is led from outside the tree"
            ))
        })?;
        let pgrp = if tpgid > 0 {
            match tree.get(&tpgid) {
                Some(&p) => p,
                None => crate::proc::read_status(tpgid)
                    .ok()
                    .and_then(|s| s.ns_pid.last().copied())
                    .ok_or_else(|| {
                        refuse(format!("whose foreground group {tpgid} is not in the tree"))
                    })?,
            }
        } else {
            0
        };
        if let Some(info) = self.infos.iter_mut().find(|i| i.id == info_id) {
            info.sid = sid as u32;
            info.pgrp = pgrp as u32;
        }
        if let Some(c) = self.ctty.as_mut() {
            c.held = true;
        }
        Ok(())
    }

    /// Called after the fds of a task are dumped: a controlling terminal
    /// none of them was on cannot be made again.
    pub fn end_task(&mut self) -> Result<()> {
        match self.ctty.take() {
            Some(c) if c.leader_dumped => Ok(()),
            Some(c) if !c.held && c.session != c.pid => Err(Error::Unsupported {
                pid: c.pid,
                what: format!(
                    "the task has a controlling terminal (device {:#x}) but does not lead its session {}: criu-rs gives a controlling terminal back only to a session leader",
                    c.dev, c.session
                ),
            }),
            Some(c) if !c.held => Err(Error::Unsupported {
                pid: c.pid,
                what: format!(
                    "the task has a controlling terminal (device {:#x}) but no fd on it, which criu-rs cannot restore",
                    c.dev
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The bytes queued on every pty side of the dump, read out and
    /// written back into the other side at once: (info id, bytes) for the
    /// sides that had any. A side whose bytes could not come back the same
    /// fails the dump before anything is read.
    fn queued_data(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut todo = Vec::new();
        for (master, index, side) in &self.sides {
            let err = |what: String| Error::Unsupported {
                pid: side.pid,
                what: format!("fd {} (pty {index}): {what}", side.fd),
            };
            let f = side.file.as_fd();
            let t = sys::tty::termios(f).map_err(|e| err(format!("TCGETS2: {e}")))?;
            // In canonical mode only whole lines are readable: the slave
            // leaves it until its input is read (the partial line too).
            let canon = !*master && t.c_lflag & libc::ICANON != 0;
            if canon {
                let mut raw = t;
                raw.c_lflag &= !libc::ICANON;
                raw.c_cc[libc::VMIN] = 1;
                raw.c_cc[libc::VTIME] = 0;
                sys::tty::set_termios(f, &raw)
                    .map_err(|e| err(format!("leaving canonical mode to read the input: {e}")))?;
            }
            let n = sys::tty_queue::queued(f).map_err(|e| err(format!("FIONREAD: {e}")));
            let n = match n {
                Ok(n) if n > 0 => n,
                other => {
                    if canon {
                        sys::tty::set_termios(f, &t)
                            .map_err(|e| err(format!("back to canonical mode: {e}")))?;
                    }
                    other?;
                    continue;
                }
            };
            let dir = if *master { "master" } else { "slave" };
            if *master && !rewrite_is_exact(&t, true) {
                return Err(err(format!(
                    "{n} bytes are queued for the {dir} and the pty is not in raw mode, so criu-rs cannot keep them byte for byte"
                )));
            }
            // The other side, to write the bytes back into.
            let peer = if *master {
                sys::tty::open_peer(f, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
                    .map_err(|e| err(format!("opening the slave to write back: {e}")))?
            } else {
                let m = self
                    .sides
                    .iter()
                    .find(|(m, i, _)| *m && i == index)
                    .ok_or_else(|| {
                        err(format!(
                            "{n} bytes are queued for the slave, but no task of the tree holds the master"
                        ))
                    })?;
                m.2.file
                    .try_clone()
                    .map_err(|e| err(format!("dup of the master: {e}")))?
            };
            todo.push((*master, side, peer, dir, t, canon));
        }
        // Input first: its rewrite needs the master's queue empty.
        todo.sort_by_key(|(master, ..)| *master);
        let mut read = Vec::new();
        for (_, side, _, dir, t, canon) in &todo {
            let data = drain(side.file.as_fd()).map_err(|e| Error::Sys {
                pid: side.pid,
                what: format!("fd {}: reading the bytes queued for the pty {dir}", side.fd),
                errno: e,
            });
            if *canon {
                if let Err(e) = sys::tty::set_termios(side.file.as_fd(), t) {
                    tracing::warn!(pid = side.pid, fd = side.fd, "back to canonical mode: {e}");
                }
            }
            read.push(data);
        }
        // Back where they were, whatever happened.
        let mut out = Vec::new();
        let mut first_err = None;
        for ((master, side, peer, dir, t, _), data) in todo.iter().zip(read) {
            match data {
                Ok(d) => {
                    let put = if *master {
                        write_all(peer.as_fd(), &d)
                    } else {
                        queue_input(peer.as_fd(), t, &d)
                    };
                    if let Err(e) = put {
                        first_err.get_or_insert(Error::Sys {
                            pid: side.pid,
                            what: format!(
                                "fd {}: writing back {} bytes queued for the pty {dir}",
                                side.fd,
                                d.len()
                            ),
                            errno: e,
                        });
                    }
                    out.push((side.info_id, d));
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Writes `tty-info.img` when any tty was dumped, and `tty-data.img`
    /// when bytes were queued on any.
    pub fn write(&self, dir: &Path) -> Result<()> {
        if !self.infos.is_empty() {
            image::write_image(dir, "tty-info.img", magic::TTY_INFO, &self.infos)?;
        }
        let data: Vec<pb::TtyDataEntry> = self
            .queued_data()?
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(tty_id, data)| pb::TtyDataEntry { tty_id, data })
            .collect();
        if !data.is_empty() {
            image::write_image(dir, "tty-data.img", magic::TTY_DATA, &data)?;
        }
        Ok(())
    }
}

/// Dump half: the `tty_file_entry` of `fd` of `pid` (fetched into criu as
/// `file`, a character device `st` with /proc link `link`), or the refusal
/// of a terminal that is no pty.
#[allow(clippy::too_many_arguments)]
pub fn dump(
    tt: &mut TtyDump,
    pid: i32,
    fd: i32,
    id: u32,
    flags: u32,
    link: &str,
    file: BorrowedFd<'_>,
    st: &FileStat,
) -> Result<pb::TtyFileEntry> {
    let Some(master) = pty_side(st.st_rdev) else {
        let what = kind(st.st_rdev).unwrap_or("a terminal");
        return Err(super::unsupported(pid, fd, link, what));
    };
    let sys_err = |what: &str, errno| Error::Sys {
        pid,
        what: format!("fd {fd} ({link}): {what}"),
        errno,
    };
    let index = if master {
        sys::tty::pty_index(file).map_err(|e| sys_err("TIOCGPTN", e))?
    } else {
        slave_index(link, st.st_rdev)
    };
    let info_id = match tt.by_side.get(&(master, index)) {
        Some(&i) => i,
        None => {
            let t = sys::tty::termios(file).map_err(|e| sys_err("TCGETS2", e))?;
            let w = sys::tty::winsize(file).map_err(|e| sys_err("TIOCGWINSZ", e))?;
            let (locked, packet_mode) = if master {
                (
                    sys::tty::pty_locked(file).map_err(|e| sys_err("TIOCGPTLCK", e))?,
                    sys::tty::packet_mode(file).map_err(|e| sys_err("TIOCGPKT", e))?,
                )
            } else {
                (false, false)
            };
            let exclusive = sys::tty::exclusive(file).map_err(|e| sys_err("TIOCGEXCL", e))?;
            let info_id = tt.infos.len() as u32 + 1;
            tt.infos.push(pb::TtyInfoEntry {
                id: info_id,
                r#type: pb::TtyType::Pty as i32,
                locked,
                exclusive,
                packet_mode,
                sid: 0,
                pgrp: 0,
                rdev: encode_dev(st.st_rdev),
                termios: Some(termios_entry(&t)),
                termios_locked: None,
                winsize: Some(pb::WinsizeEntry {
                    ws_row: u32::from(w.ws_row),
                    ws_col: u32::from(w.ws_col),
                    ws_xpixel: u32::from(w.ws_xpixel),
                    ws_ypixel: u32::from(w.ws_ypixel),
                }),
                pty: Some(pb::TtyPtyEntry { index }),
                dev: Some(encode_dev(st.st_dev)),
                uid: None,
                gid: None,
            });
            tt.by_side.insert((master, index), info_id);
            let copy = file.try_clone_to_owned().map_err(|e| {
                sys_err(
                    "dup",
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                )
            })?;
            tt.sides.push((
                master,
                index,
                Side {
                    info_id,
                    pid,
                    fd,
                    file: copy,
                },
            ));
            info_id
        }
    };
    Ok(pb::TtyFileEntry {
        id,
        tty_info_id: info_id,
        flags: flags & !(libc::O_CLOEXEC as u32),
        fown: no_owner(),
        regf_id: None,
    })
}

/// A pty master made for restore.
#[derive(Debug)]
struct Master {
    fd: OwnedFd,
    /// The slave is to stay locked (it is unlocked while criu opens it).
    locked: bool,
    /// The master's own open file description is handed out already.
    handed: bool,
}

/// The ptys of a restore, by index.
#[derive(Debug, Default)]
pub struct TtyRestore {
    infos: Option<Vec<pb::TtyInfoEntry>>,
    /// tty-data.img by info id.
    data: Option<HashMap<u32, Vec<u8>>>,
    /// The ptmx a pty (by index) was opened through, when not /dev/ptmx:
    /// that of another devpts instance (a container's), from the
    /// `regf_id` of its master's file entry.
    ptmx: HashMap<u32, String>,
    masters: HashMap<u32, Master>,
}

/// Opens `ptmx` (/dev/ptmx, or the ptmx of another devpts instance, a
/// path of the restored tree) until the new pty has index `want`, holding
/// the smaller ones meanwhile (the kernel hands out the lowest free index).
fn pty_with_index(want: u32, ptmx: Option<&str>) -> Result<OwnedFd> {
    let mut held = Vec::new();
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    loop {
        let fd = match ptmx {
            None => nix::fcntl::open("/dev/ptmx", flags, Mode::empty()),
            Some(p) => crate::objects::ns::mnt::open_in_tree(p, flags),
        }
        .map_err(|e| Error::Mismatch {
            what: format!(
                "opening {} for pty index {want}: {e}",
                ptmx.unwrap_or("/dev/ptmx")
            ),
        })?;
        let got = sys::tty::pty_index(fd.as_fd()).map_err(|e| Error::Mismatch {
            what: format!("TIOCGPTN of a new pty (wanted index {want}): {e}"),
        })?;
        if got == want {
            return Ok(fd);
        }
        if got > want || held.len() > want as usize {
            return Err(Error::Mismatch {
                what: format!(
                    "pty index {want} is busy (/dev/pts/{want} is taken; the next free index is {got})"
                ),
            });
        }
        held.push(fd);
    }
}

/// The ptmx paths of the ptys whose masters were not opened through
/// /dev/ptmx: pty index -> path (`regf_id` of a master's file entry).
fn ptmx_paths(infos: &[pb::TtyInfoEntry], files: &[pb::FileEntry]) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    for t in files.iter().filter_map(|f| f.tty.as_ref()) {
        let Some(regf) = t.regf_id else { continue };
        let info = infos.iter().find(|i| i.id == t.tty_info_id);
        let index = info.and_then(|i| i.pty.as_ref()).map(|p| p.index);
        let path = files
            .iter()
            .find(|f| f.id == regf)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone());
        if let (Some(index), Some(path)) = (index, path) {
            out.insert(index, path);
        }
    }
    out
}

impl TtyRestore {
    fn info(&mut self, dir: &Path, info_id: u32) -> Result<pb::TtyInfoEntry> {
        self.load(dir)?;
        self.infos
            .iter()
            .flatten()
            .find(|i| i.id == info_id)
            .cloned()
            .ok_or_else(|| Error::Mismatch {
                what: format!("tty-info.img has no tty {info_id}"),
            })
    }

    /// Reads tty-info.img and tty-data.img, once, and the ptmx paths of
    /// the masters in files.img.
    fn load(&mut self, dir: &Path) -> Result<()> {
        if self.infos.is_none() {
            let infos: Vec<pb::TtyInfoEntry> =
                image::read_image(dir, "tty-info.img", magic::TTY_INFO)?;
            let files: Vec<pb::FileEntry> = if dir.join("files.img").exists() {
                image::read_image(dir, "files.img", magic::FILES)?
            } else {
                Vec::new()
            };
            self.ptmx = ptmx_paths(&infos, &files);
            self.infos = Some(infos);
        }
        if self.data.is_none() {
            let list: Vec<pb::TtyDataEntry> = if dir.join("tty-data.img").exists() {
                image::read_image(dir, "tty-data.img", magic::TTY_DATA)?
            } else {
                Vec::new()
            };
            self.data = Some(list.into_iter().map(|d| (d.tty_id, d.data)).collect());
        }
        Ok(())
    }

    /// For session leader `pid`, as soon as it has made its session and
    /// before it has children: a new open file of the pty slave that was
    /// its controlling terminal, for it to take as such (TIOCSCTTY) so
    /// that the members of its session inherit it. None when it had none.
    pub fn session_ctty(&mut self, dir: &Path, pid: i32) -> Result<Option<OwnedFd>> {
        if self.infos.is_none() && !dir.join("tty-info.img").exists() {
            return Ok(None);
        }
        self.load(dir)?;
        let Some(info) = self
            .infos
            .iter()
            .flatten()
            .find(|i| {
                i.sid != 0 && i.sid as i32 == pid && pty_side(decode_dev(i.rdev)) == Some(false)
            })
            .cloned()
        else {
            return Ok(None);
        };
        let index = info.pty.as_ref().map_or(0, |p| p.index);
        let err = |what: &str, e| Error::Mismatch {
            what: format!("pty {index}, controlling terminal of session {pid}: {what}: {e}"),
        };
        let m = self.master(index, &info)?;
        if m.locked {
            sys::tty::set_pty_locked(m.fd.as_fd(), false).map_err(|e| err("unlocking", e))?;
        }
        let fd = sys::tty::open_peer(
            m.fd.as_fd(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if m.locked {
            sys::tty::set_pty_locked(m.fd.as_fd(), true).map_err(|e| err("locking", e))?;
        }
        fd.map(Some).map_err(|e| err("opening the slave", e))
    }

    /// The master of pty `index`, made on first use with the termios and
    /// window size of `info`.
    fn master(&mut self, index: u32, info: &pb::TtyInfoEntry) -> Result<&mut Master> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.masters.entry(index) {
            let fd = pty_with_index(index, self.ptmx.get(&index).map(String::as_str))?;
            let err = |what: &str, e| Error::Mismatch {
                what: format!("pty {index}: {what}: {e}"),
            };
            sys::tty::set_pty_locked(fd.as_fd(), false).map_err(|e| err("unlocking", e))?;
            if let Some(t) = &info.termios {
                sys::tty::set_termios(fd.as_fd(), &termios_of(t))
                    .map_err(|e| err("setting termios", e))?;
            }
            if let Some(w) = &info.winsize {
                let ws = libc::winsize {
                    ws_row: w.ws_row as u16,
                    ws_col: w.ws_col as u16,
                    ws_xpixel: w.ws_xpixel as u16,
                    ws_ypixel: w.ws_ypixel as u16,
                };
                sys::tty::set_winsize(fd.as_fd(), &ws)
                    .map_err(|e| err("setting the window size", e))?;
            }
            // Bytes that were queued on either side, written into the
            // other one (the termios is in place: no processing again).
            let mut sides: Vec<&pb::TtyInfoEntry> = self
                .infos
                .iter()
                .flatten()
                .filter(|i| i.pty.as_ref().map(|p| p.index) == Some(index))
                .collect();
            // Input first: its rewrite needs the master's queue empty.
            sides.sort_by_key(|i| pty_side(decode_dev(i.rdev)) == Some(true));
            for side in sides {
                let Some(data) = self.data.as_ref().and_then(|d| d.get(&side.id)) else {
                    continue;
                };
                if pty_side(decode_dev(side.rdev)) == Some(true) {
                    let slave = sys::tty::open_peer(
                        fd.as_fd(),
                        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
                    )
                    .map_err(|e| err("opening the slave for its queued output", e))?;
                    write_all(slave.as_fd(), data)
                        .map_err(|e| err("queueing bytes for the master", e))?;
                } else {
                    let t = sys::tty::termios(fd.as_fd())
                        .map_err(|e| err("reading the termios back", e))?;
                    queue_input(fd.as_fd(), &t, data)
                        .map_err(|e| err("queueing bytes for the slave", e))?;
                }
            }
            slot.insert(Master {
                fd,
                locked: false,
                handed: false,
            });
        }
        self.masters.get_mut(&index).ok_or_else(|| Error::Mismatch {
            what: format!("pty {index} vanished"),
        })
    }

    /// Gives task `pid` (`t`, its fds in place) its controlling terminal
    /// back: the slave among `ttys` (fd number, entry) whose info names
    /// `pid` as its session, made the controlling terminal with TIOCSCTTY,
    /// its foreground group set with TIOCSPGRP.
    pub fn restore_ctty(
        &mut self,
        dir: &Path,
        t: &mut Tracee,
        pid: i32,
        ttys: &[(u32, &pb::TtyFileEntry)],
        data_off: u64,
    ) -> Result<()> {
        for &(fd, e) in ttys {
            let info = self.info(dir, e.tty_info_id)?;
            if info.sid == 0
                || info.sid as i32 != pid
                || pty_side(decode_dev(info.rdev)) != Some(false)
            {
                continue;
            }
            t.syscall(libc::SYS_ioctl, &[u64::from(fd), libc::TIOCSCTTY, 0])?;
            if info.pgrp != 0 {
                let at = t.scratch_put(data_off, &(info.pgrp as i32).to_ne_bytes())?;
                t.syscall(libc::SYS_ioctl, &[u64::from(fd), libc::TIOCSPGRP, at])?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// Restore half: the open file of `e`, with images in `dir`.
    pub fn open(&mut self, dir: &Path, e: &pb::TtyFileEntry) -> Result<OwnedFd> {
        let info = self.info(dir, e.tty_info_id)?;
        let what = format!("tty file id {} (tty {})", e.id, e.tty_info_id);
        let (Ok(pb::TtyType::Pty), Some(pty)) = (pb::TtyType::try_from(info.r#type), &info.pty)
        else {
            return Err(Error::Mismatch {
                what: format!(
                    "{what} is of tty type {}, which criu-rs cannot restore yet",
                    info.r#type
                ),
            });
        };
        let index = pty.index;
        let master_side = pty_side(decode_dev(info.rdev)).ok_or_else(|| Error::Mismatch {
            what: format!("{what}: rdev {:#x} is no pty", info.rdev),
        })?;
        let err = |doing: &str, e| Error::Mismatch {
            what: format!("{what}, pty {index}: {doing}: {e}"),
        };
        let m = self.master(index, &info)?;
        let fd = if master_side {
            let fd = if m.handed {
                // Another open file description of one master cannot be
                // made: ptmx opens make new ptys.
                return Err(Error::Mismatch {
                    what: format!("{what}: pty {index} has two master files in the images"),
                });
            } else {
                m.handed = true;
                m.fd.try_clone().map_err(|e| Error::Mismatch {
                    what: format!("{what}: duplicating the master: {e}"),
                })?
            };
            sys::tty::set_packet_mode(fd.as_fd(), info.packet_mode)
                .map_err(|e| err("setting packet mode", e))?;
            if info.locked {
                sys::tty::set_pty_locked(fd.as_fd(), true).map_err(|e| err("locking", e))?;
                m.locked = true;
            }
            fd
        } else {
            let acc = e.flags as i32 & libc::O_ACCMODE;
            let flags = acc | libc::O_NOCTTY | libc::O_CLOEXEC;
            if m.locked {
                sys::tty::set_pty_locked(m.fd.as_fd(), false).map_err(|e| err("unlocking", e))?;
            }
            let fd = sys::tty::open_peer(m.fd.as_fd(), flags);
            if m.locked {
                sys::tty::set_pty_locked(m.fd.as_fd(), true).map_err(|e| err("locking", e))?;
            }
            fd.map_err(|e| err("opening the slave (TIOCGPTPEER)", e))?
        };
        if info.exclusive {
            sys::tty::set_exclusive(fd.as_fd(), true).map_err(|e| err("TIOCEXCL", e))?;
        }
        super::pipe::set_flags(fd.as_fd(), e.flags, &what)?;
        Ok(fd)
    }
}

#[cfg(test)]
mod quiet_tests {
    use super::*;

    /// A real pty in canonical mode with echo: input rewritten through
    /// `queue_input` reads back line by line, with no echo left over and
    /// the termios as it was.
    #[test]
    fn canonical_input_is_queued_again_as_it_was() {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let m = pty.master.as_fd();
        let t = sys::tty::termios(m).expect("termios");
        assert!(t.c_lflag & libc::ICANON != 0 && t.c_lflag & libc::ECHO != 0);
        assert!(!rewrite_is_exact(&t, false));
        let q = quiet_termios(&t);
        assert_eq!(q.c_lflag, libc::ICANON | libc::ECHO);
        assert_eq!(q.c_iflag, 0);
        assert_eq!(q.c_cc[libc::VERASE], 0);
        assert_eq!(q.c_cc[libc::VEOL], t.c_cc[libc::VEOL]);
        assert_eq!(echo_len(&t, b"a\0b\n"), 3);
        queue_input(m, &t, b"one\ntwo\npart").expect("queue");
        assert_eq!(sys::tty_queue::queued(m).expect("master queue"), 0);
        let back = sys::tty::termios(m).expect("termios");
        assert_eq!((back.c_lflag, back.c_iflag), (t.c_lflag, t.c_iflag));
        nix::fcntl::fcntl(
            &pty.slave,
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_RDWR | OFlag::O_NONBLOCK),
        )
        .expect("nonblock");
        let mut buf = [0u8; 64];
        let n = nix::unistd::read(&pty.slave, &mut buf).expect("line 1");
        assert_eq!(&buf[..n], b"one\n");
        let n = nix::unistd::read(&pty.slave, &mut buf).expect("line 2");
        assert_eq!(&buf[..n], b"two\n");
        assert_eq!(
            nix::unistd::read(&pty.slave, &mut buf),
            Err(nix::errno::Errno::EAGAIN)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_are_known_by_their_device_numbers() {
        assert_eq!(kind(libc::makedev(5, 2)), Some("a pty master (/dev/ptmx)"));
        assert!(kind(libc::makedev(136, 3)).is_some_and(|k| k.contains("slave")));
        assert!(kind(libc::makedev(5, 0)).is_some());
        assert!(kind(libc::makedev(4, 1)).is_some_and(|k| k.contains("virtual")));
        assert!(kind(libc::makedev(4, 64)).is_some_and(|k| k.contains("serial")));
        // /dev/null, /dev/zero, /dev/urandom are no terminals.
        for (ma, mi) in [(1, 3), (1, 5), (1, 9), (10, 229)] {
            assert_eq!(kind(libc::makedev(ma, mi)), None, "{ma}:{mi}");
        }
    }

    #[test]
    fn queued_bytes_are_kept_only_in_raw_mode() {
        let mut t = libc::termios2 {
            c_iflag: 0,
            c_oflag: 0,
            c_cflag: 0,
            c_lflag: 0,
            c_line: 0,
            c_cc: [0; NCC],
            c_ispeed: 0,
            c_ospeed: 0,
        };
        assert!(rewrite_is_exact(&t, true) && rewrite_is_exact(&t, false));
        t.c_oflag = libc::OPOST | libc::ONLCR;
        assert!(!rewrite_is_exact(&t, true));
        assert!(rewrite_is_exact(&t, false));
        t.c_lflag = libc::ECHO;
        assert!(!rewrite_is_exact(&t, false));
        t.c_lflag = 0;
        t.c_iflag = libc::ICRNL;
        assert!(!rewrite_is_exact(&t, false));
    }

    #[test]
    fn queued_bytes_are_read_and_written_back() {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut t = sys::tty::termios(pty.slave.as_fd()).expect("termios");
        t.c_lflag = 0;
        t.c_iflag = 0;
        t.c_oflag = 0;
        sys::tty::set_termios(pty.slave.as_fd(), &t).expect("raw");
        nix::unistd::write(&pty.master, b"in\r\n").expect("write master");
        nix::unistd::write(&pty.slave, b"out").expect("write slave");
        let mut d = TtyDump::default();
        for (master, fd, info_id) in [(true, &pty.master, 1), (false, &pty.slave, 2)] {
            d.sides.push((
                master,
                0,
                Side {
                    info_id,
                    pid: 1,
                    fd: 3,
                    file: fd.try_clone().expect("dup"),
                },
            ));
        }
        let mut got = None;
        for _ in 0..100 {
            let q = d.queued_data().expect("queued");
            if q.iter().map(|(_, b)| b.len()).sum::<usize>() == 7 {
                got = Some(q);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let got = got.expect("all bytes seen");
        assert!(got.contains(&(1, b"out".to_vec())), "{got:?}");
        assert!(got.contains(&(2, b"in\r\n".to_vec())), "{got:?}");
        // Written back: the same bytes are queued again (the pty moves
        // them over a little later).
        let queued = |fd: &OwnedFd| sys::tty_queue::queued(fd.as_fd()).expect("FIONREAD");
        for _ in 0..100 {
            if queued(&pty.master) + queued(&pty.slave) == 7 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!((queued(&pty.master), queued(&pty.slave)), (3, 4));
    }

    fn with_slave_ctty(pid: i32, session: i32, leader_dumped: bool) -> TtyDump {
        let rdev = encode_dev(libc::makedev(136, 4));
        TtyDump {
            infos: vec![pb::TtyInfoEntry {
                id: 1,
                r#type: pb::TtyType::Pty as i32,
                rdev,
                pty: Some(pb::TtyPtyEntry { index: 4 }),
                ..Default::default()
            }],
            ctty: Some(Ctty {
                pid,
                dev: rdev,
                session,
                tpgid: session,
                held: false,
                leader_dumped: pid != session && leader_dumped,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_leader_keeps_its_controlling_terminal() {
        let tree = HashMap::from([(700, 1), (701, 2)]);
        let mut d = with_slave_ctty(700, 700, true);
        d.note_fd(700, 0, 1, &tree).expect("leader");
        assert_eq!((d.infos[0].sid, d.infos[0].pgrp), (1, 1));
        d.end_task().expect("held");
    }

    #[test]
    fn a_member_of_a_dumped_leader_inherits_at_restore() {
        let tree = HashMap::from([(700, 1), (701, 2)]);
        let mut d = with_slave_ctty(701, 700, true);
        d.note_fd(701, 3, 1, &tree).expect("member");
        // The leader's fd sets the session; the member leaves it alone.
        assert_eq!((d.infos[0].sid, d.infos[0].pgrp), (0, 0));
        d.end_task().expect("member");
        // Even with no fd on it.
        let mut d = with_slave_ctty(701, 700, true);
        d.end_task().expect("member without fd");
    }

    #[test]
    fn a_member_or_a_terminal_without_fd_is_refused() {
        let tree = HashMap::from([(700, 1), (701, 2)]);
        let mut d = with_slave_ctty(701, 700, false);
        let msg = d.note_fd(701, 3, 1, &tree).expect_err("member").to_string();
        assert!(
            msg.contains("pid 701") && msg.contains("fd 3") && msg.contains("session"),
            "{msg}"
        );
        let mut d = with_slave_ctty(700, 700, true);
        let msg = d.end_task().expect_err("no fd").to_string();
        assert!(msg.contains("pid 700") && msg.contains("no fd"), "{msg}");
        let mut d = with_slave_ctty(700, 700, true);
        let outside = HashMap::from([(701, 2)]);
        assert!(d.note_fd(700, 0, 1, &outside).is_err());
    }

    #[test]
    fn ptmx_paths_come_from_masters_that_name_one() {
        let info = |id, index| pb::TtyInfoEntry {
            id,
            pty: Some(pb::TtyPtyEntry { index }),
            ..Default::default()
        };
        let tty = |id, tty_info_id, regf_id| pb::FileEntry {
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id,
                regf_id,
                ..Default::default()
            }),
            ..Default::default()
        };
        let reg = pb::FileEntry {
            id: 9,
            reg: Some(pb::RegFileEntry {
                id: 9,
                name: "/dev/pts/ptmx".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let infos = [info(1, 3), info(2, 4)];
        // pty 3's master names its ptmx; pty 4's was opened through /dev/ptmx
        let files = [tty(5, 1, Some(9)), tty(6, 2, None), reg];
        let got = ptmx_paths(&infos, &files);
        assert_eq!(got.len(), 1);
        assert_eq!(got.get(&3).map(String::as_str), Some("/dev/pts/ptmx"));
    }

    #[test]
    fn pty_sides() {
        assert_eq!(pty_side(libc::makedev(5, 2)), Some(true));
        assert_eq!(pty_side(libc::makedev(136, 7)), Some(false));
        assert_eq!(pty_side(libc::makedev(5, 0)), None);
        assert_eq!(pty_side(libc::makedev(4, 1)), None);
    }

    #[test]
    fn device_numbers_round_trip_through_32_bits() {
        for (ma, mi) in [(136, 0), (136, 255), (136, 256), (5, 2), (136, 70000)] {
            let d = libc::makedev(ma, mi);
            assert_eq!(decode_dev(encode_dev(d)), d, "{ma}:{mi}");
        }
        // The kernel's encoding of 136:3 is 0x8803.
        assert_eq!(encode_dev(libc::makedev(136, 3)), 0x8803);
    }

    #[test]
    fn slave_index_comes_from_the_path() {
        assert_eq!(slave_index("/dev/pts/12", libc::makedev(136, 12)), 12);
        assert_eq!(slave_index("/weird", libc::makedev(136, 4)), 4);
    }

    #[test]
    fn termios_round_trips() {
        let mut cc = [0u8; NCC];
        for (i, c) in cc.iter_mut().enumerate() {
            *c = i as u8 + 1;
        }
        let t = libc::termios2 {
            c_iflag: 1,
            c_oflag: 2,
            c_cflag: 3,
            c_lflag: 4,
            c_line: 5,
            c_cc: cc,
            c_ispeed: 38400,
            c_ospeed: 9600,
        };
        let e = termios_entry(&t);
        assert_eq!(e.c_cc.len(), NCC);
        let back = termios_of(&e);
        assert_eq!(
            (
                back.c_iflag,
                back.c_oflag,
                back.c_cflag,
                back.c_lflag,
                back.c_line
            ),
            (1, 2, 3, 4, 5)
        );
        assert_eq!(back.c_cc, cc);
        assert_eq!((back.c_ispeed, back.c_ospeed), (38400, 9600));
    }
}
