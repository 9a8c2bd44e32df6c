//! `stats-restore`: how long the restore took and how many pages it put
//! back, in CRIU's `restore_stats_entry`.

use std::path::Path;
use std::time::Duration;

use super::TaskImages;
use crate::image::{self, magic, pb};

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The pages the pagemaps of the live tasks describe.
fn pages(dir: &Path, tasks: &[TaskImages]) -> Result<u64, image::Error> {
    let mut n = 0;
    for t in tasks.iter().filter(|t| t.live.is_some()) {
        let name = format!("pagemap-{}.img", t.pid());
        if !dir.join(&name).exists() {
            continue;
        }
        let mut r = image::ImageReader::open(dir, &name, magic::PAGEMAP)?;
        let _head: Option<pb::PagemapHead> = r.next()?;
        while let Some(pe) = r.next::<pb::PagemapEntry>()? {
            n += pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages));
        }
    }
    Ok(n)
}

/// The entry for a restore that took `total`, `forking` of it to make the
/// tasks. Pages are never compared or skipped: criu-rs always writes them
/// all.
pub(super) fn entry(pages_restored: u64, forking: Duration, total: Duration) -> pb::StatsEntry {
    pb::StatsEntry {
        dump: None,
        restore: Some(pb::RestoreStatsEntry {
            pages_compared: 0,
            pages_skipped_cow: 0,
            forking_time: micros(forking),
            restore_time: micros(total),
            pages_restored: Some(pages_restored),
        }),
    }
}

/// Writes `stats-restore` into `dir`; a failure is only logged (the tree
/// is restored by then).
pub(super) fn write(dir: &Path, forking: Duration, total: Duration, tasks: &[TaskImages]) {
    let r = pages(dir, tasks).and_then(|p| {
        image::write_image(
            dir,
            "stats-restore",
            magic::STATS,
            [&entry(p, forking, total)],
        )
    });
    if let Err(e) = r {
        tracing::warn!("stats-restore not written: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_microseconds_and_saturate() {
        let e = entry(7, Duration::from_millis(3), Duration::from_secs(1));
        let r = e.restore.unwrap();
        assert_eq!((r.forking_time, r.restore_time), (3000, 1_000_000));
        assert_eq!(r.pages_restored, Some(7));
        let e = entry(0, Duration::from_secs(1 << 40), Duration::ZERO);
        assert_eq!(e.restore.unwrap().forking_time, u32::MAX);
    }
}
