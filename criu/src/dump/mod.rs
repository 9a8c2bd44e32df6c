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
mod task;

use std::path::PathBuf;

use tracing::{debug, info, warn};

use crate::image::{self, magic, pb};
use crate::objects::{self, files::FileTable, IdGen};
use crate::proc;
use crate::remote;

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
    /// `--ghost-limit`: the biggest unlinked file saved (None: default).
    pub ghost_limit: Option<u64>,
    /// `--file-locks`: keep the file locks the tree holds.
    pub file_locks: bool,
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
    let dir = &opts.images_dir;
    std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
        dir: dir.clone(),
        source,
    })?;
    let mut tree = freeze::Tree::default();
    let result = (|| -> Result<()> {
        let start = std::time::Instant::now();
        tree.freeze(opts.pid)?;
        let times = extras::Times {
            start,
            freezing: start.elapsed(),
        };
        info!(root = opts.pid, processes = tree.procs.len(), "tree frozen");
        let mut files = FileTable::default();
        files.sk.tcp_established = opts.tcp_established;
        files.locks.enabled = opts.file_locks;
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
                )?
            };
            if let Some(k) = kobj {
                root_ids.get_or_insert(k);
            }
            pstree.push(entry);
        }
        check_job(&pstree, opts.shell_job)?;
        let root_cg_set = ns_ids.cgroups.set_of(opts.pid, opts.pid)?;
        ns_ids.cgroups.write(dir)?;
        if let Some(r) = &root_ids {
            objects::ns::dump(opts.pid, r, dir)?;
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
        extras::fill_inventory(&mut inventory, Some(root_cg_set), &mut ids);
        image::write_image(dir, "inventory.img", magic::INVENTORY, [&inventory])?;
        extras::write_stats(dir, times)?;
        if !opts.leave_running {
            files.sk.keep_tcp_locked();
        }
        Ok(())
    })();

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
