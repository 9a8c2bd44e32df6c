use crate::prelude::*;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::os::fd::{AsFd, AsRawFd};

pub const DESC: Desc = Desc {
    name: "events/inotify00",
    family: "events",
    description: "an inotify watch on a directory keeps its mask and reports events after restore",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?.join("inotify00.d");
    std::fs::create_dir_all(&dir).context("mkdir")?;
    let ino = Inotify::init(InitFlags::IN_NONBLOCK).context("inotify_init")?;
    let mask = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE;
    let wd = ino.add_watch(&dir, mask).context("add_watch")?;
    let raw = ino.as_fd().as_raw_fd();
    let watches = |s: &str| -> Vec<String> {
        s.lines().filter(|l| l.starts_with("inotify")).map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" ")).collect()
    };
    let before = watches(&fdinfo(raw)?);
    ensure!(before.len() == 1, "fdinfo: {before:?}");
    t.daemon()?;
    t.wait_sig();
    let after = watches(&fdinfo(raw)?);
    ensure!(after == before, "watches were {before:?}, now {after:?}");
    std::fs::write(dir.join("born"), b"").context("create file")?;
    let evs = ino.read_events().context("read events")?;
    let ok = evs.iter().any(|e| e.wd == wd && e.mask.contains(AddWatchFlags::IN_CREATE) && e.name.as_deref() == Some(std::ffi::OsStr::new("born")));
    ensure!(ok, "no IN_CREATE for 'born': {evs:?}");
    Ok(())
}
