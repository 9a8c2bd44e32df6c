//! `criu pre-dump`: the memory of a tree that keeps running. Freeze, copy
//! the pages (only those written since the previous pre-dump, when there is
//! one with tracking armed), arm write tracking for the next round, thaw.
//! See [`crate::objects::mm_track`] for the tracking itself.
//!
//! The images of a pre-dump are the pagemaps and pages of every process,
//! `uffd-track-<pid>.img`, `inventory.img` and `stats-dump`: enough to be the
//! parent of a later dump, not to restore from.

use tracing::{info, warn};

use super::{extras, freeze, DumpOpts, Error, Parent, Result};
use crate::image::{self, magic, pb};
use crate::objects::{self, files::FileTable, mm, mm_track, shmem, IdGen};
use crate::proc::{self, MapName};

const SCRATCH_LEN: u64 = crate::sys::PAGE_SIZE;

/// Pages of one process, then tracking armed for the next round.
fn pre_dump_process(
    p: &mut freeze::Proc,
    dir: &std::path::Path,
    parent: Option<&Parent>,
    shared: &mut shmem::Dumped,
    pages_ids: &mut IdGen,
) -> Result<()> {
    let pid = p.pid;
    let vpid = p.inner.pid;
    // The remote syscalls below must not be judged by the task's filters.
    objects::seccomp::dump_thread(pid, pid)?;
    let (mut incr, armed, prev_restarts) = match parent {
        Some(pa) => {
            let armed = mm_track::Armed::find(pid, vpid, &pa.dir)?;
            let incr = mm_track::Incremental::open(pid, vpid, &pa.dir, armed.clone())?;
            (Some(incr), armed, mm_track::restarts(pid, vpid, &pa.dir)?)
        }
        None => (None, mm_track::Armed::default(), Vec::new()),
    };
    // Threads stopped in a call the kernel resumes through restart_syscall
    // once they are let go: the next dump must know which call it was.
    let restarts: Vec<pb::MmTrackRestart> = p
        .threads
        .iter()
        .filter_map(|th| objects::thread::restart_record(th.tracee.pid(), &th.regs, &prev_restarts))
        .collect();
    // Only the pages matter here (shared anonymous memory's too, written
    // once the whole tree is seen); the files the mappings name are
    // dumped by the final dump.
    let mut files = FileTable::default();
    mm::dump(
        pid,
        dir,
        &mut files,
        shared,
        pages_ids,
        &mm::MmExtra {
            brk: 0,
            dumpable: 0,
            thp_disabled: false,
            img_pid: vpid,
            mlockall: 0,
        },
        incr.as_mut(),
    )?;

    let maps = proc::read_maps(pid)?;
    let vdso = maps
        .iter()
        .find(|m| m.name == MapName::Vdso)
        .ok_or_else(|| Error::Task {
            pid,
            what: "has no vDSO to run remote syscalls through".into(),
        })?;
    let leader = &mut p.threads[0].tracee;
    leader.find_syscall_ip(vdso.start, vdso.end)?;
    leader.map_scratch(None, SCRATCH_LEN)?;
    let entry = proc::read_smaps(pid)
        .map_err(Error::from)
        .and_then(|smaps| Ok(mm_track::arm(leader, pid, &smaps, &armed, 0)?));
    leader.unmap_scratch()?;
    let mut entry = entry?;
    entry.restarts = restarts;
    if entry.uffd < 0 {
        warn!(
            pid,
            "memory changes are not tracked: the next dump writes every page"
        );
    }
    mm_track::write(dir, vpid, &entry)?;
    Ok(())
}

/// Pre-dumps the tree of `opts.pid` into `opts.images_dir`; the tree keeps
/// running whatever happens.
pub fn pre_dump(opts: &DumpOpts) -> Result<()> {
    let dir = &opts.images_dir;
    std::fs::create_dir_all(dir).map_err(|source| Error::Dir {
        dir: dir.clone(),
        source,
    })?;
    // A pre-dump always tracks memory (as CRIU enforces it).
    let parent = Parent::link(opts)?.map(|p| Parent {
        use_pages: true,
        ..p
    });
    let mut tree = freeze::Tree::default();
    let result = (|| -> Result<()> {
        let start = std::time::Instant::now();
        tree.freeze(opts.pid)?;
        let times = extras::Times {
            start,
            freezing: start.elapsed(),
        };
        info!(
            root = opts.pid,
            processes = tree.procs.len(),
            "tree frozen for a pre-dump"
        );
        let mut pages_ids = IdGen::default();
        let mut shared = shmem::Dumped::default();
        for p in tree.procs.iter_mut().filter(|p| !p.threads.is_empty()) {
            pre_dump_process(p, dir, parent.as_ref(), &mut shared, &mut pages_ids)?;
        }
        shared.finish(dir, &mut pages_ids)?;
        let uptime = std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
            .map(|s| (s * 1e6) as u64);
        let inventory = pb::InventoryEntry {
            img_version: 2,
            fdinfo_per_id: Some(true),
            ns_per_id: Some(true),
            lsmtype: Some(pb::Lsmtype::NoLsm as i32),
            dump_uptime: uptime,
            // upstream's PRE_DUMP_SPLICE: pages copied while frozen
            pre_dump_mode: Some(1),
            ..Default::default()
        };
        image::write_image(dir, "inventory.img", magic::INVENTORY, [&inventory])?;
        extras::write_stats(dir, times)?;
        Ok(())
    })();
    for (pid, e) in tree.release() {
        warn!(pid, "could not let the task go: {e}");
    }
    result
}
