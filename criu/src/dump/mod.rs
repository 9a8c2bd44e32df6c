//! Layer 5: dump orchestration — find and freeze the tree, read every object
//! off every task into images, then kill the tree or let it run on.
//!
//! Order of work for each task (it matters):
//! 1. seize and stop it, block its signals (they stay queued);
//! 2. remote syscalls for what only the task can say (brk, sigactions,
//!    itimers, prctl state …) through a scratch page, removed again;
//! 3. memory (after the scratch page is gone, so it is not dumped);
//! 4. fds through pidfd_getfd, fs, creds, rlimits, registers.
//!
//! A dump that fails lets every task go exactly as it was found.

mod extras;
mod freeze;
mod predump;
mod task;

pub use predump::pre_dump;

use std::path::PathBuf;

use tracing::{debug, info, warn};

use crate::image::{self, magic, pb};
use crate::objects::{self, files::FileTable, IdGen};
use crate::proc;
use crate::remote;
use crate::scripts;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Object(#[from] objects::Error),
    #[error(transparent)]
    Remote(#[from] remote::Error),
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Proc(#[from] proc::Error),
    #[error("pid {pid}: {what}")]
    Task { pid: i32, what: String },
    #[error("images directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What `criu dump` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct DumpOpts {
    pub pid: i32,
    pub images_dir: PathBuf,
    pub leave_running: bool,
    pub shell_job: bool,
    /// `--tcp-established`: dump established TCP connections.
    pub tcp_established: bool,
    /// `--tcp-close`: established TCP connections are dumped without their
    /// state (they come back closed); they are neither repaired nor locked.
    pub tcp_close: bool,
    /// `--ghost-limit`: the biggest unlinked file saved (None: default).
    pub ghost_limit: Option<u64>,
    /// `--file-locks`: keep the file locks the tree holds.
    pub file_locks: bool,
    /// `--ext-unix-sk`: unix sockets connected outside the tree are dumped.
    pub ext_unix_sk: bool,
    /// `--network-lock`: how TCP connections are kept from the network.
    pub network_lock: objects::files::netlock::Method,
    /// `--prev-images-dir`: the images of the previous pre-dump, relative
    /// to `images_dir` (as CRIU takes it); a `parent` link to it is made.
    pub prev_images_dir: Option<PathBuf>,
    /// `--track-mem`: leave pages unchanged since the previous pre-dump to
    /// its images.
    pub track_mem: bool,
    /// `--external mnt[MOUNTPOINT]:KEY` (RPC `ext_mnt`): mounts recorded
    /// by key, without their contents.
    pub ext_mounts: Vec<objects::ns::mnt::ExtMount>,
    /// `--ext-sharing`, `--ext-masters`: external mounts may keep their
    /// propagation with mounts outside the tree.
    pub ext_prop: objects::ns::mnt::ExtPropagation,
    /// `--file-validation`: what restore will check files against (the
    /// build-ids of ELF files are recorded with `buildid`).
    pub file_validation: objects::files::reg::Validation,
    /// `--link-remap`: files open by an unlinked name that have another
    /// get a temporary name for restore.
    pub link_remap: bool,
}

/// The parent images of a dump: where they are, and whether pages may be
/// left to them.
#[derive(Debug, Clone)]
pub(crate) struct Parent {
    pub dir: PathBuf,
    pub use_pages: bool,
    /// Tracking fds processes inherited by a fork, found before any is
    /// closed (the comparison needs the arming process's fd open).
    pub inherited: Vec<(i32, Vec<i32>)>,
}

impl Parent {
    /// Makes the `parent` link of `opts.images_dir` (when
    /// `--prev-images-dir` was given) and says where it leads.
    fn link(opts: &DumpOpts) -> Result<Option<Self>> {
        let Some(prev) = &opts.prev_images_dir else {
            return Ok(None);
        };
        let dir = &opts.images_dir;
        let link = dir.join(image::pages::PARENT_LINK);
        if !dir.join(prev).is_dir() {
            return Err(Error::Dir {
                dir: dir.join(prev),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the previous images directory (--prev-images-dir, relative to the images directory) is not a directory",
                ),
            });
        }
        match std::os::unix::fs::symlink(prev, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(Error::Dir { dir: link, source }),
        }
        Ok(Some(Parent {
            dir: link,
            use_pages: opts.track_mem,
            inherited: Vec::new(),
        }))
    }

    /// Finds the inherited tracking fds of every process of the frozen tree.
    fn find_inherited(&mut self, pids: impl Iterator<Item = i32>) -> Result<()> {
        for pid in pids {
            let fds = objects::mm_track::inherited(pid, &self.dir)?;
            if !fds.is_empty() {
                self.inherited.push((pid, fds));
            }
        }
        Ok(())
    }

    /// For process `pid` (image pid `img_pid`): what decides which of its
    /// pages stay in the parent (when they may), and the tracking fds left
    /// in it (its own, or inherited from a tracked parent), to close.
    pub(crate) fn for_process(
        &self,
        pid: i32,
        img_pid: i32,
    ) -> Result<(Option<objects::mm_track::Incremental>, Vec<i32>)> {
        let armed = objects::mm_track::Armed::find(pid, img_pid, &self.dir)?;
        let mut fd: Vec<i32> = armed.uffd.into_iter().collect();
        if let Some((_, more)) = self.inherited.iter().find(|(p, _)| *p == pid) {
            for &f in more {
                if !fd.contains(&f) {
                    fd.push(f);
                }
            }
        }
        let incr = if self.use_pages {
            Some(objects::mm_track::Incremental::open(
                pid, img_pid, &self.dir, armed,
            )?)
        } else {
            None
        };
        Ok((incr, fd))
    }
}

/// A tree whose session or process group is led from outside it (a job of
/// the shell that started it) can only be restored into the session of the
/// restoring criu: that is what `--shell-job` asks for; without it such a
/// tree is refused, as CRIU does.
fn check_job(pstree: &[pb::PstreeEntry], shell_job: bool) -> Result<()> {
    let inside = |id: u32| pstree.iter().any(|e| e.pid == id);
    for e in pstree {
        let outside = [("session", e.sid), ("process group", e.pgid)]
            .into_iter()
            .find(|&(_, id)| !inside(id));
        if let (Some((what, id)), false) = (outside, shell_job) {
            return Err(Error::Task {
                pid: e.pid as i32,
                what: format!(
                    "is in {what} {id}, whose leader is not in the dumped tree; dump it as a shell job (-j/--shell-job)"
                ),
            });
        }
    }
    Ok(())
}

/// Dumps the tree of `opts.pid` into `opts.images_dir`.
pub fn dump(opts: &DumpOpts) -> Result<()> {
    dump_with(opts, &scripts::Silent)
}

/// [`dump`], telling `notify` of each action point (see [`scripts`]).
pub fn dump_with(opts: &DumpOpts, notify: &dyn scripts::Notify) -> Result<()> {
    let dir = &opts.images_dir;
    std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
        dir: dir.clone(),
        source,
    })?;
    let mut parent = Parent::link(opts)?;
    let tell = |a: scripts::Action| {
        notify.notify(a, opts.pid).map_err(|what| Error::Task {
            pid: opts.pid,
            what: format!("{a} notification: {what}"),
        })
    };
    tell(scripts::Action::PreDump)?;
    let mut tree = freeze::Tree::default();
    let mut net_locked = false;
    let result = (|| -> Result<()> {
        let start = std::time::Instant::now();
        tree.freeze(opts.pid)?;
        if let Some(pa) = parent.as_mut() {
            pa.find_inherited(
                tree.procs
                    .iter()
                    .filter(|p| !p.threads.is_empty())
                    .map(|p| p.pid),
            )?;
        }
        notify.seized(opts.pid).map_err(|what| Error::Task {
            pid: opts.pid,
            what: format!("once the tree was seized: {what}"),
        })?;
        if objects::ns::foreign(opts.pid)?.contains(&objects::ns::Kind::Net) {
            net_locked = true;
            tell(scripts::Action::NetworkLock)?;
        }
        let times = extras::Times {
            start,
            freezing: start.elapsed(),
        };
        info!(root = opts.pid, processes = tree.procs.len(), "tree frozen");
        let mut files = FileTable::default();
        files.sk.tcp_established = opts.tcp_established;
        files.sk.tcp_close = opts.tcp_close;
        files.sk.ext_unix_sk = opts.ext_unix_sk;
        files.sk.network_lock = opts.network_lock;
        let run_id = extras::run_id();
        files.sk.run_id = run_id.clone();
        files.locks.enabled = opts.file_locks;
        files.file_validation = opts.file_validation;
        files.link_remap = opts.link_remap;
        files.tree = tree.procs.iter().map(|p| (p.pid, p.inner.pid)).collect();
        if let Some(l) = opts.ghost_limit {
            files.ghost_limit = l;
        }
        let mut ids = IdGen::default();
        let mut pstree = Vec::with_capacity(tree.procs.len());
        let mut root_ids = None;
        let mut shared = objects::shmem::Dumped::default();
        let mut pages_ids = IdGen::default();
        let mut ns_ids = objects::ns::NsIds::default();
        // Credentials are kept as the tree sees them, in its user namespace.
        let userns = if objects::ns::foreign(opts.pid)?.contains(&objects::ns::Kind::User) {
            Some(objects::ns::user::maps(opts.pid)?)
        } else {
            None
        };
        for p in tree.procs.iter_mut() {
            let (entry, kobj) = if p.threads.is_empty() {
                task::dump_zombie(p, dir)?
            } else {
                task::dump_process(
                    p,
                    dir,
                    &mut files,
                    &mut ids,
                    &mut shared,
                    &mut pages_ids,
                    &mut ns_ids,
                    userns.as_ref(),
                    parent.as_ref(),
                )?
            };
            if let Some(k) = kobj {
                root_ids.get_or_insert(k);
            }
            pstree.push(entry);
        }
        // Shared anonymous memory, once every mapping of it is known.
        shared.finish(dir, &mut pages_ids)?;
        check_job(&pstree, opts.shell_job)?;
        let root_cg_set = ns_ids.cgroups.set_of(opts.pid, opts.pid)?;
        ns_ids.cgroups.write(dir)?;
        if let Some(r) = &root_ids {
            objects::ns::dump(opts.pid, r, dir, &opts.ext_mounts, opts.ext_prop)?;
        }
        files.write(dir)?;
        image::write_image(dir, "pstree.img", magic::PSTREE, &pstree)?;
        let mut inventory = pb::InventoryEntry {
            img_version: 2,
            fdinfo_per_id: Some(true),
            root_ids,
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            ..Default::default()
        };
        extras::fill_inventory(&mut inventory, Some(root_cg_set), &mut ids, &run_id);
        if opts.network_lock == objects::files::netlock::Method::Nftables {
            // upstream's NETWORK_LOCK_NFTABLES
            inventory.network_lock_method = Some(1);
        }
        image::write_image(dir, "inventory.img", magic::INVENTORY, [&inventory])?;
        extras::write_stats(dir, times)?;
        // The images are complete and the tree is still frozen: the caller
        // may move them away, or say no (the tree then runs on).
        tell(scripts::Action::PostDump)?;
        if !opts.leave_running {
            files.sk.keep_tcp_locked();
        }
        files.keep_link_remaps();
        Ok(())
    })();

    if net_locked && (result.is_err() || opts.leave_running) {
        if let Err(e) = tell(scripts::Action::NetworkUnlock) {
            warn!("{e}");
        }
    }
    match (&result, opts.leave_running) {
        (Ok(()), false) => {
            debug!("killing the dumped tree");
            tree.kill();
        }
        _ => {
            for (pid, e) in tree.release() {
                warn!(pid, "could not let the task go: {e}");
            }
        }
    }
    result
}
