//! Time namespaces: the monotonic and boottime offsets, in `timens-ID.img`.
//!
//! The root puppet is born in a new time namespace (clone3 with
//! `CLONE_NEWTIME`), which freezes its offsets at zero: other offsets are
//! refused at restore for now.

use std::path::Path;

use super::Result;
use crate::image::{self, magic, pb};
use crate::objects::Error;

fn file(id: u32) -> String {
    format!("timens-{id}.img")
}

/// Parses /proc/PID/timens_offsets (`monotonic SECS NSECS` lines).
pub fn parse_offsets(text: &str) -> Option<pb::TimensEntry> {
    let mut mono = None;
    let mut boot = None;
    for l in text.lines() {
        let mut w = l.split_whitespace();
        let (Some(name), Some(s), Some(ns)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let ts = pb::Timespec {
            tv_sec: s.parse::<i64>().ok()? as u64,
            tv_nsec: ns.parse::<u64>().ok()?,
        };
        match name {
            "monotonic" => mono = Some(ts),
            "boottime" => boot = Some(ts),
            _ => {}
        }
    }
    Some(pb::TimensEntry {
        monotonic: mono?,
        boottime: boot?,
    })
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let text = crate::objects::read_proc(pid, "timens_offsets")?;
    let e = parse_offsets(&text).ok_or_else(|| Error::Mismatch {
        what: format!("/proc/{pid}/timens_offsets: cannot parse {text:?}"),
    })?;
    image::write_image(dir, &file(id), magic::TIMENS, [&e])?;
    Ok(())
}

/// Reads the offsets; those the restore cannot make are refused here.
pub fn read(dir: &Path, id: u32) -> Result<Option<pb::TimensEntry>> {
    if id == 0 || !dir.join(file(id)).exists() {
        return Ok(None);
    }
    let e: pb::TimensEntry = image::read_one(dir, &file(id), magic::TIMENS)?;
    let zero = |t: &pb::Timespec| t.tv_sec == 0 && t.tv_nsec == 0;
    if !zero(&e.monotonic) || !zero(&e.boottime) {
        return Err(Error::Unsupported {
            pid: 0,
            what: format!(
                "{}: a time namespace with non-zero offsets (monotonic {}.{:09}, boottime {}.{:09}) cannot be restored yet",
                file(id),
                e.monotonic.tv_sec as i64,
                e.monotonic.tv_nsec,
                e.boottime.tv_sec as i64,
                e.boottime.tv_nsec
            ),
        });
    }
    Ok(Some(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        let e = parse_offsets("monotonic           0         0\nboottime         -5       12\n")
            .unwrap();
        assert_eq!(e.monotonic.tv_sec, 0);
        assert_eq!(e.boottime.tv_sec as i64, -5);
        assert_eq!(e.boottime.tv_nsec, 12);
        assert!(parse_offsets("monotonic 0 0\n").is_none());
        assert!(parse_offsets("monotonic x 0\nboottime 0 0\n").is_none());
    }
}
