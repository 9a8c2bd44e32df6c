//! What upstream CRIU writes into every dump besides the state of the tasks,
//! so that our images look like its own to its tools: the inventory fields
//! it always sets, the cgroup set of tasks that live in criu's own cgroups,
//! an (empty) `seccomp.img` and the `stats-dump` of the dump.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Error, Result};
use crate::image::{self, magic, pb};
use crate::objects::IdGen;

/// `network_lock_method` of the inventory: upstream's NETWORK_LOCK_SKIP.
/// We put no firewall rules around a dump (established connections are
/// held by TCP repair), so an upstream restore must not try to remove any.
const NETWORK_LOCK_SKIP: u32 = 2;

/// Sets the inventory fields upstream sets on every dump; `root_cg_set` is
/// the cgroup set of the root task.
///
/// `root_ids` of the inventory are not the root task's: they are the ids of
/// the objects of the dumping criu itself, against which upstream's restore
/// compares the root task (a root task with criu's fd table is a corrupt
/// image to it). criu shares no mm, fd table, fs or sighand with the tree,
/// so those get fresh ids; its namespaces are the root task's.
pub(super) fn fill_inventory(
    inv: &mut pb::InventoryEntry,
    root_cg_set: Option<u32>,
    ids: &mut IdGen,
    run_id: &str,
) {
    if let Some(r) = inv.root_ids.as_mut() {
        r.vm_id = ids.next_id();
        r.files_id = ids.next_id();
        r.fs_id = ids.next_id();
        r.sighand_id = ids.next_id();
    }
    inv.root_cg_set = root_cg_set;
    inv.network_lock_method = Some(NETWORK_LOCK_SKIP);
    inv.plugins_entry = Some(pb::PluginsEntry::default());
    inv.dump_criu_run_id = Some(run_id.to_owned());
}

/// The dump's run id (`dump_criu_run_id`): a random UUID, which the kernel
/// makes for us; it names the network lock table.
pub(super) fn run_id() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        Ok(s) => s.trim().to_owned(),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            format!("{}-{}", std::process::id(), t.as_nanos())
        }
    }
}

/// Times of one dump, taken by the orchestrator.
#[derive(Debug, Clone, Copy)]
pub(super) struct Times {
    /// when freezing began
    pub start: Instant,
    /// how long freezing took
    pub freezing: Duration,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Page counts read back from the pagemaps written into `dir`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pages {
    written: u64,
    in_parent: u64,
    sh_written: u64,
    sh_in_parent: u64,
    /// pages of every private VMA (upstream's `pages_scanned`)
    scanned: u64,
}

const PE_PARENT: u32 = 1 << 0;
const VMA_AREA_REGULAR: u32 = 1;
const VMA_FILE_SHARED: u32 = 1 << 7;
const VMA_ANON_SHARED: u32 = 1 << 8;
const PAGE_SIZE: u64 = 4096;

fn count_pages(dir: &Path) -> Result<Pages> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Dir {
        dir: dir.to_owned(),
        source,
    })?;
    let mut p = Pages::default();
    for e in rd {
        let e = e.map_err(|source| Error::Dir {
            dir: dir.to_owned(),
            source,
        })?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".img") {
            continue;
        }
        if name.starts_with("pagemap-") {
            let shmem = name.starts_with("pagemap-shmem-");
            let mut r = image::ImageReader::open(dir, &name, magic::PAGEMAP)?;
            let _head: Option<pb::PagemapHead> = r.next()?;
            while let Some(pe) = r.next::<pb::PagemapEntry>()? {
                let n = pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages));
                let parent = pe.in_parent == Some(true) || pe.flags.unwrap_or(0) & PE_PARENT != 0;
                match (shmem, parent) {
                    (true, true) => p.sh_in_parent += n,
                    (true, false) => p.sh_written += n,
                    (false, true) => p.in_parent += n,
                    (false, false) => p.written += n,
                }
            }
        } else if name.starts_with("mm-") {
            let mut r = image::ImageReader::open(dir, &name, magic::MM)?;
            while let Some(mm) = r.next::<pb::MmEntry>()? {
                p.scanned += mm
                    .vmas
                    .iter()
                    .filter(|v| {
                        v.status & VMA_AREA_REGULAR != 0
                            && v.status & (VMA_FILE_SHARED | VMA_ANON_SHARED) == 0
                    })
                    .map(|v| v.end.saturating_sub(v.start) / PAGE_SIZE)
                    .sum::<u64>();
            }
        }
    }
    Ok(p)
}

/// `stats-dump`: the times and page counts of the dump, as upstream's crit
/// `show stats-dump` expects them. We copy and write pages in one pass, so
/// memdump_time covers both and memwrite_time is 0; the page-pipe counters
/// of upstream's machinery do not exist here and are 0.
pub(super) fn write_stats(dir: &Path, t: Times) -> Result<()> {
    let pages = count_pages(dir)?;
    let frozen = t.start.elapsed().saturating_sub(t.freezing);
    let entry = pb::StatsEntry {
        dump: Some(pb::DumpStatsEntry {
            freezing_time: micros(t.freezing),
            frozen_time: micros(frozen),
            memdump_time: micros(frozen),
            memwrite_time: 0,
            pages_scanned: pages.scanned,
            pages_skipped_parent: pages.in_parent,
            pages_written: pages.written,
            irmap_resolve: Some(0),
            pages_lazy: 0,
            page_pipes: Some(0),
            page_pipe_bufs: Some(0),
            shpages_scanned: Some(pages.sh_written + pages.sh_in_parent),
            shpages_skipped_parent: Some(pages.sh_in_parent),
            shpages_written: Some(pages.sh_written),
        }),
        restore: None,
    };
    image::write_image(dir, "stats-dump", magic::STATS, [&entry])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_counted_from_the_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let head = pb::PagemapHead { pages_id: 1 };
        let mut w = image::ImageWriter::create(d, "pagemap-7.img", magic::PAGEMAP).expect("w");
        w.write(&head).expect("head");
        for (n, flags) in [(3u64, 4u32), (2, PE_PARENT)] {
            w.write(&pb::PagemapEntry {
                vaddr: 0x1000,
                nr_pages: Some(n),
                flags: Some(flags),
                ..Default::default()
            })
            .expect("pe");
        }
        w.finish().expect("finish");
        // Shared memory: 5 pages here, 6 left to the parent.
        let mut w =
            image::ImageWriter::create(d, "pagemap-shmem-9.img", magic::PAGEMAP).expect("w");
        w.write(&head).expect("head");
        for (n, flags) in [(5u64, 4u32), (6, PE_PARENT)] {
            w.write(&pb::PagemapEntry {
                vaddr: 0,
                nr_pages: Some(n),
                flags: Some(flags),
                ..Default::default()
            })
            .expect("pe");
        }
        w.finish().expect("finish");
        let vma = |start: u64, end: u64, status: u32| pb::VmaEntry {
            start,
            end,
            status,
            ..Default::default()
        };
        let mm = pb::MmEntry {
            vmas: vec![
                vma(0x1000, 0x5000, VMA_AREA_REGULAR),
                vma(0x5000, 0x6000, VMA_AREA_REGULAR | VMA_ANON_SHARED),
                vma(0x6000, 0x7000, 0),
            ],
            ..Default::default()
        };
        image::write_image(d, "mm-7.img", magic::MM, [&mm]).expect("mm");
        let got = count_pages(d).expect("count");
        assert_eq!(
            got,
            Pages {
                written: 3,
                in_parent: 2,
                sh_written: 5,
                sh_in_parent: 6,
                scanned: 4
            }
        );
    }
}
