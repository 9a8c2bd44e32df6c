//! Uts namespaces: host and domain name, in `utsns-ID.img`.

use std::path::Path;

use super::{in_ns, Kind, Result};
use crate::image::{self, magic, pb};
use crate::objects::Error;

fn file(id: u32) -> String {
    format!("utsns-{id}.img")
}

fn sysctl_get(pid: i32, name: &str) -> Result<String> {
    let path = format!("/proc/sys/kernel/{name}");
    std::fs::read_to_string(&path)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|source| Error::Io {
            pid,
            what: format!("reading {path} in the uts namespace"),
            source,
        })
}

fn sysctl_set(pid: i32, name: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/kernel/{name}");
    std::fs::write(&path, value).map_err(|source| Error::Io {
        pid,
        what: format!("writing {path} in the uts namespace"),
        source,
    })
}

/// Dump half: the names of the uts namespace of `pid`.
pub fn dump(pid: i32, id: u32, dir: &Path) -> Result<()> {
    let e = in_ns(pid, &[Kind::Uts], || {
        Ok(pb::UtsnsEntry {
            nodename: sysctl_get(pid, "hostname")?,
            domainname: sysctl_get(pid, "domainname")?,
        })
    })?;
    image::write_image(dir, &file(id), magic::UTSNS, [&e])?;
    Ok(())
}

pub fn read(dir: &Path, id: u32) -> Result<Option<pb::UtsnsEntry>> {
    if id == 0 || !dir.join(file(id)).exists() {
        return Ok(None);
    }
    Ok(Some(image::read_one(dir, &file(id), magic::UTSNS)?))
}

/// Restore half: the names, set in the new uts namespace of `pid`.
pub fn restore(pid: i32, e: &pb::UtsnsEntry) -> Result<()> {
    in_ns(pid, &[Kind::Uts], || {
        sysctl_set(pid, "hostname", &e.nodename)?;
        sysctl_set(pid, "domainname", &e.domainname)
    })
}
