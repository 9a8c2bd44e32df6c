use crate::prelude::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const DESC: Desc = Desc {
    name: "events/fanotify00",
    family: "events",
    description: "a fanotify group with an inode mark (and an ignored mask) keeps its flags and marks and delivers an event after restore",
    // fanotify_init needs CAP_SYS_ADMIN of the first user namespace.
    flavors: &[Flavor::Host, Flavor::Ns],
    flags: &[Flag::Suid],
    ..Desc::DEFAULT
};

const FAN_CLASS_NOTIF: u32 = 0;
const FAN_NONBLOCK: u32 = 0x2;
const FAN_CLOEXEC: u32 = 0x1;
const FAN_MARK_ADD: u32 = 0x1;
const FAN_MARK_IGNORED_MASK: u32 = 0x20;
const FAN_MARK_IGNORED_SURV_MODIFY: u32 = 0x40;
const FAN_CLOSE_WRITE: u64 = 0x8;
const FAN_OPEN: u64 = 0x20;
const FAN_MODIFY: u64 = 0x2;
const FAN_EVENT_ON_CHILD: u64 = 0x0800_0000;

fn mark(fd: &OwnedFd, flags: u32, mask: u64, path: &std::path::Path) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).context("path")?;
    // SAFETY: c is a valid C string for the call; the rest are integers.
    let r = unsafe { libc::fanotify_mark(fd.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr()) };
    ensure!(r == 0, "fanotify_mark({flags:#x}, {mask:#x}, {}): {}", path.display(), std::io::Error::last_os_error());
    Ok(())
}

/// The `fanotify` lines of the fdinfo, without the handle bytes' order
/// mattering (ino, mask, ignored mask, flags).
fn marks(fd: &OwnedFd) -> Result<Vec<String>> {
    Ok(fdinfo(fd.as_raw_fd())?.lines().filter(|l| l.starts_with("fanotify")).map(str::to_string).collect())
}

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?.join("fanotify00.d");
    std::fs::create_dir_all(&dir).context("mkdir")?;
    let file = dir.join("watched");
    std::fs::write(&file, b"before").context("create watched")?;
    // SAFETY: integer arguments only.
    let r = unsafe { libc::fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, (libc::O_RDONLY | libc::O_LARGEFILE) as u32) };
    ensure!(r >= 0, "fanotify_init: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd nothing else owns.
    let fan = unsafe { OwnedFd::from_raw_fd(r) };
    mark(&fan, FAN_MARK_ADD, FAN_CLOSE_WRITE | FAN_MODIFY, &file)?;
    mark(&fan, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN, &file)?;
    mark(&fan, FAN_MARK_ADD, FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, &dir)?;
    let before = marks(&fan)?;
    ensure!(before.len() == 3, "fdinfo shows {before:?}");
    t.daemon()?;
    t.wait_sig();
    let after = marks(&fan)?;
    let mut a = after.clone();
    let mut b = before.clone();
    a.sort();
    b.sort();
    ensure!(a == b, "fanotify was {before:?}, now {after:?}");
    std::fs::write(&file, b"after").context("write watched")?;
    let mut buf = [0u8; 4096];
    let mut seen = 0u64;
    for _ in 0..100 {
        match nix::unistd::read(&fan, &mut buf) {
            Ok(n) => {
                let mut off = 0;
                while off + 24 <= n {
                    let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or([0; 4])) as usize;
                    let mask = u64::from_ne_bytes(buf[off + 8..off + 16].try_into().unwrap_or([0; 8]));
                    let efd = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or([0; 4]));
                    seen |= mask;
                    if efd >= 0 {
                        // SAFETY: the event's fd is ours to close.
                        drop(unsafe { OwnedFd::from_raw_fd(efd) });
                    }
                    if len == 0 {
                        break;
                    }
                    off += len;
                }
                if seen & FAN_CLOSE_WRITE != 0 {
                    break;
                }
            }
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(std::time::Duration::from_millis(20)),
            Err(e) => bail!("read fanotify: {e}"),
        }
    }
    ensure!(seen & FAN_MODIFY != 0 && seen & FAN_CLOSE_WRITE != 0, "events after restore: mask {seen:#x}, expected MODIFY and CLOSE_WRITE");
    Ok(())
}
