//! User namespaces: the uid and gid maps, in `userns-ID.img`. The tasks'
//! credentials are kept as ids inside the namespace; the restore makes the
//! root puppet in a new user namespace and writes its maps from criu.

use std::path::Path;

use super::Result;
use crate::image::{self, magic, pb};
use crate::objects::Error;

fn file(id: u32) -> String {
    format!("userns-{id}.img")
}

/// The id the kernel shows for ids without a mapping.
pub const OVERFLOW_ID: u32 = 65534;

/// Parses /proc/PID/{uid,gid}_map (`INSIDE OUTSIDE COUNT` lines).
pub fn parse_map(text: &str) -> Option<Vec<pb::UidGidExtent>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some(pb::UidGidExtent {
                first: w.next()??,
                lower_first: w.next()??,
                count: w.next()??,
            })
        })
        .collect()
}

/// The map as the kernel takes it.
pub fn format_map(m: &[pb::UidGidExtent]) -> String {
    m.iter()
        .map(|e| format!("{} {} {}\n", e.first, e.lower_first, e.count))
        .collect()
}

/// An id of the parent namespace seen inside.
pub fn to_inner(m: &[pb::UidGidExtent], outer: u32) -> u32 {
    m.iter()
        .find(|e| outer >= e.lower_first && outer - e.lower_first < e.count)
        .map_or(OVERFLOW_ID, |e| e.first + (outer - e.lower_first))
}

/// The host uid and gid of the namespace's root (id 0 inside).
pub fn root_ids(e: &pb::UsernsEntry) -> Option<(u32, u32)> {
    let outer = |m: &[pb::UidGidExtent]| m.iter().find(|x| x.first == 0).map(|x| x.lower_first);
    Some((outer(&e.uid_map)?, outer(&e.gid_map)?))
}

/// Reads the maps of the user namespace of `pid`.
pub fn maps(pid: i32) -> Result<pb::UsernsEntry> {
    let read = |name: &str| -> Result<Vec<pb::UidGidExtent>> {
        let t = crate::objects::read_proc(pid, name)?;
        parse_map(&t).ok_or_else(|| Error::Mismatch {
            what: format!("/proc/{pid}/{name}: cannot parse {t:?}"),
        })
    };
    Ok(pb::UsernsEntry {
        uid_map: read("uid_map")?,
        gid_map: read("gid_map")?,
    })
}

pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let e = maps(pid)?;
    image::write_image(dir, &file(id), magic::USERNS, [&e])?;
    Ok(())
}

pub fn read(dir: &Path, id: u32) -> Result<Option<pb::UsernsEntry>> {
    if id == 0 || !dir.join(file(id)).exists() {
        return Ok(None);
    }
    Ok(Some(image::read_one(dir, &file(id), magic::USERNS)?))
}

/// Writes the maps of the new user namespace of `pid` (from criu, before
/// the task does anything in it).
pub fn restore(pid: i32, e: &pb::UsernsEntry) -> Result<()> {
    for (name, m) in [("uid_map", &e.uid_map), ("gid_map", &e.gid_map)] {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, format_map(m)).map_err(|source| Error::Io {
            pid,
            what: format!("writing {path}"),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip() {
        let m = parse_map("         0     100000      65536\n").unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].first, m[0].lower_first, m[0].count),
            (0, 100000, 65536)
        );
        assert_eq!(format_map(&m), "0 100000 65536\n");
        assert!(parse_map("0 1\n").is_none());
    }

    #[test]
    fn inner_ids() {
        let m = parse_map("0 100000 65536\n").unwrap();
        assert_eq!(to_inner(&m, 100000), 0);
        assert_eq!(to_inner(&m, 118943), 18943);
        assert_eq!(to_inner(&m, 5), OVERFLOW_ID);
        assert_eq!(to_inner(&m, 165536), OVERFLOW_ID);
    }
}
