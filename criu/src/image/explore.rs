//! `crit x DIR ps|fds|mems|rss`: summaries of a whole images directory, in
//! the same layout as upstream crit's explorers.
//!
//! Tasks whose images are missing (zombies have no `ids`, `fs` or `mm`
//! image) are left out of `fds`, `mems` and `rss`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use super::{magic, pb, read_image, Error, ImageReader, Result};

/// What `crit x` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Explorer {
    /// The process tree with pgid, sid and comm.
    Ps,
    /// Each task's file descriptors, cwd and root.
    Fds,
    /// Each task's memory areas.
    Mems,
    /// Each task's dumped pages against its memory areas.
    Rss,
}

impl std::str::FromStr for Explorer {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "ps" => Ok(Explorer::Ps),
            "fds" => Ok(Explorer::Fds),
            "mems" => Ok(Explorer::Mems),
            "rss" => Ok(Explorer::Rss),
            _ => Err(format!("unknown explorer {s:?} (ps, fds, mems or rss)")),
        }
    }
}

// Bits of vma_entry.status.
const VMA_AREA_REGULAR: u32 = 1 << 0;
const VMA_AREA_STACK: u32 = 1 << 1;
const VMA_AREA_VSYSCALL: u32 = 1 << 2;
const VMA_AREA_VDSO: u32 = 1 << 3;
const VMA_FILE_PRIVATE: u32 = 1 << 6;
const VMA_FILE_SHARED: u32 = 1 << 7;
const VMA_ANON_SHARED: u32 = 1 << 8;
const VMA_AREA_SYSVIPC: u32 = 1 << 10;
const VMA_AREA_SOCKET: u32 = 1 << 11;
const MAP_GROWSDOWN: u32 = 0x0100;
const PAGE_SHIFT: u32 = 12;

/// Shows `what` of the images in `dir` on `out`.
pub fn explore(dir: &Path, what: Explorer, out: &mut dyn Write) -> Result<()> {
    let mut text = String::new();
    let mut x = Explore {
        dir,
        files: None,
        legacy: HashMap::new(),
        names: HashMap::new(),
    };
    match what {
        Explorer::Ps => x.ps(&mut text)?,
        Explorer::Fds => x.fds(&mut text)?,
        Explorer::Mems => x.mems(&mut text)?,
        Explorer::Rss => x.rss(&mut text)?,
    }
    out.write_all(text.as_bytes()).map_err(|source| Error::Io {
        file: dir.to_path_buf(),
        op: "writing the crit x output",
        source,
    })
}

struct Explore<'a> {
    dir: &'a Path,
    /// files.img, read on first use (empty when absent).
    files: Option<Vec<pb::FileEntry>>,
    /// Per-kind images of older CRIU (reg-files.img, …), read on first use.
    legacy: HashMap<&'static str, Vec<pb::FileEntry>>,
    /// Names already worked out, by (fd type, file id).
    names: HashMap<(i32, u32), String>,
}

fn first<M: prost::Message + Default>(dir: &Path, file: &str, magic: u32) -> Result<M> {
    let path = dir.join(file);
    read_image::<M>(dir, file, magic)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Format {
            file: path,
            offset: 0,
            what: "the image has no entries".into(),
        })
}

// Infallible: writing to a String.
macro_rules! out {
    ($t:expr, $($arg:tt)*) => { let _ = writeln!($t, $($arg)*); };
}

impl Explore<'_> {
    fn pstree(&self) -> Result<Vec<pb::PstreeEntry>> {
        read_image(self.dir, "pstree.img", magic::PSTREE)
    }

    fn exists(&self, file: &str) -> bool {
        self.dir.join(file).exists()
    }

    fn ps(&mut self, t: &mut String) -> Result<()> {
        let tree = self.pstree()?;
        let mut comms = Vec::with_capacity(tree.len());
        for p in &tree {
            let core: pb::CoreEntry = first(self.dir, &format!("core-{}.img", p.pid), magic::CORE)?;
            comms.push(core.tc.map(|tc| tc.comm).unwrap_or_default());
        }
        let index: HashMap<u32, usize> = tree.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
        let mut kids: Vec<Vec<usize>> = vec![Vec::new(); tree.len()];
        let mut root = None;
        for (i, p) in tree.iter().enumerate() {
            if p.ppid == 0 {
                root = Some(i);
            } else if let Some(&pp) = index.get(&p.ppid) {
                kids[pp].push(i);
            } else {
                return Err(Error::Format {
                    file: self.dir.join("pstree.img"),
                    offset: 0,
                    what: format!(
                        "task {} has parent {} which is not in the tree",
                        p.pid, p.ppid
                    ),
                });
            }
        }
        out!(t, "{:>7}{:>7}{:>7}   {}", "PID", "PGID", "SID", "COMM");
        let Some(root) = root else {
            return Ok(());
        };
        let mut stack = vec![(root, 0usize)];
        while let Some((i, depth)) = stack.pop() {
            let p = &tree[i];
            out!(
                t,
                "{:7}{:7}{:7}   {}{}",
                p.pid,
                p.pgid,
                p.sid,
                " ".repeat(4 * depth),
                comms[i]
            );
            for &k in kids[i].iter().rev() {
                stack.push((k, depth + 1));
            }
        }
        Ok(())
    }

    fn files(&mut self) -> &[pb::FileEntry] {
        let dir = self.dir;
        self.files
            .get_or_insert_with(|| read_image(dir, "files.img", magic::FILES).unwrap_or_default())
    }

    /// The entry of file `id` of kind `ty`: from files.img, or else from
    /// the kind's own image of older CRIU.
    fn find(&mut self, ty: pb::FdTypes, id: u32) -> Option<pb::FileEntry> {
        let files = self.files();
        if !files.is_empty() {
            if let Some(f) = files.iter().find(|f| f.id == id) {
                return Some(f.clone());
            }
        }
        let (img, magic) = match ty {
            pb::FdTypes::Reg => ("reg-files.img", magic::REG_FILES),
            pb::FdTypes::Pipe => ("pipes.img", magic::PIPES),
            pb::FdTypes::Unixsk => ("unixsk.img", magic::UNIXSK),
            _ => return None,
        };
        let dir = self.dir;
        let legacy = self.legacy.entry(img).or_insert_with(|| match ty {
            pb::FdTypes::Reg => read_image::<pb::RegFileEntry>(dir, img, magic)
                .unwrap_or_default()
                .into_iter()
                .map(|r| pb::FileEntry {
                    r#type: ty as i32,
                    id: r.id,
                    reg: Some(r),
                    ..Default::default()
                })
                .collect(),
            pb::FdTypes::Pipe => read_image::<pb::PipeEntry>(dir, img, magic)
                .unwrap_or_default()
                .into_iter()
                .map(|p| pb::FileEntry {
                    r#type: ty as i32,
                    id: p.id,
                    pipe: Some(p),
                    ..Default::default()
                })
                .collect(),
            _ => read_image::<pb::UnixSkEntry>(dir, img, magic)
                .unwrap_or_default()
                .into_iter()
                .map(|u| pb::FileEntry {
                    r#type: ty as i32,
                    id: u.id,
                    usk: Some(u),
                    ..Default::default()
                })
                .collect(),
        });
        legacy.iter().find(|f| f.id == id).cloned()
    }

    /// How upstream crit names the file `id` of kind `ty`.
    fn name(&mut self, ty: i32, id: u32) -> String {
        if let Some(n) = self.names.get(&(ty, id)) {
            return n.clone();
        }
        let kind = pb::FdTypes::try_from(ty).ok();
        let n = match kind {
            Some(k @ pb::FdTypes::Reg) => self
                .find(k, id)
                .and_then(|f| f.reg)
                .map(|r| r.name)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "unknown path".into()),
            Some(k @ pb::FdTypes::Pipe) => match self.find(k, id).and_then(|f| f.pipe) {
                Some(p) => format!("pipe[{}]", p.pipe_id),
                None => "pipe[?]".into(),
            },
            Some(k @ pb::FdTypes::Unixsk) => match self.find(k, id).and_then(|f| f.usk) {
                Some(u) => {
                    let name = if u.name.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", String::from_utf8_lossy(&u.name))
                    };
                    format!("unix[{} ({}){}]", u.ino, u.peer, name)
                }
                None => "unix[?]".into(),
            },
            Some(k) => format!("{}.{id}", k.as_str_name()),
            None => format!("{ty}.{id}"),
        };
        self.names.insert((ty, id), n.clone());
        n
    }

    fn reg(&mut self, id: u32) -> String {
        self.name(pb::FdTypes::Reg as i32, id)
    }

    fn fds(&mut self, t: &mut String) -> Result<()> {
        for p in self.pstree()? {
            let pid = p.pid;
            let ids_file = format!("ids-{pid}.img");
            if !self.exists(&ids_file) {
                continue;
            }
            let ids: pb::TaskKobjIdsEntry = first(self.dir, &ids_file, magic::IDS)?;
            let fdinfo: Vec<pb::FdinfoEntry> = read_image(
                self.dir,
                &format!("fdinfo-{}.img", ids.files_id),
                magic::FDINFO,
            )?;
            out!(t, "{pid}");
            for fd in fdinfo {
                let name = self.name(fd.r#type, fd.id);
                out!(t, "\t{:7}: {}", fd.fd, name);
            }
            let fs: pb::FsEntry = first(self.dir, &format!("fs-{pid}.img"), magic::FS)?;
            let cwd = self.reg(fs.cwd_id);
            let root = self.reg(fs.root_id);
            out!(t, "\t{:>7}: {}", "cwd", cwd);
            out!(t, "\t{:>7}: {}", "root", root);
        }
        Ok(())
    }

    fn mems(&mut self, t: &mut String) -> Result<()> {
        let mut vids: HashMap<u64, u64> = HashMap::new();
        let mut vid = |shmid: u64| {
            let next = vids.len() as u64 + 1;
            *vids.entry(shmid).or_insert(next)
        };
        for p in self.pstree()? {
            let pid = p.pid;
            let mm_file = format!("mm-{pid}.img");
            if !self.exists(&mm_file) {
                continue;
            }
            let mm: pb::MmEntry = first(self.dir, &mm_file, magic::MM)?;
            out!(t, "{pid}");
            let exe = self.reg(mm.exe_file_id);
            out!(t, "\t{:<36}    {}", "exe", exe);
            for vma in &mm.vmas {
                let st = vma.status;
                let mut fname = if st & VMA_AREA_SYSVIPC != 0 {
                    format!(" ips[{:x}]", vid(vma.shmid))
                } else if st & VMA_ANON_SHARED != 0 {
                    format!(" shmem[{:x}]", vid(vma.shmid))
                } else if st & VMA_AREA_SOCKET != 0 {
                    format!(" packet[{:x}]", vid(vma.shmid))
                } else if st & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
                    let mut s = format!(" {}", self.reg(vma.shmid as u32));
                    if vma.pgoff != 0 {
                        let _ = write!(s, " + {:#x}", vma.pgoff);
                    }
                    if st & VMA_FILE_SHARED != 0 {
                        s.push_str(" (s)");
                    }
                    s
                } else if st & VMA_AREA_STACK != 0 {
                    " [stack]".into()
                } else if st & VMA_AREA_VSYSCALL != 0 {
                    " [vsyscall]".into()
                } else if st & VMA_AREA_VDSO != 0 {
                    " [vdso]".into()
                } else if vma.flags & MAP_GROWSDOWN != 0 {
                    " [stack?]".into()
                } else {
                    String::new()
                };
                if st & VMA_AREA_REGULAR == 0 {
                    fname.push_str(" *");
                }
                let prot: String = [(0x1, 'r'), (0x2, 'w'), (0x4, 'x')]
                    .iter()
                    .map(|&(bit, c)| if vma.prot & bit != 0 { c } else { '-' })
                    .collect();
                let range = format!("{:08x}-{:08x}", vma.start, vma.end);
                out!(t, "\t{:<36}{}{}", range, prot, fname);
            }
        }
        Ok(())
    }

    fn rss(&mut self, t: &mut String) -> Result<()> {
        for p in self.pstree()? {
            let pid = p.pid;
            let mm_file = format!("mm-{pid}.img");
            if !self.exists(&mm_file) {
                continue;
            }
            let vmas = first::<pb::MmEntry>(self.dir, &mm_file, magic::MM)?.vmas;
            let mut r = ImageReader::open(self.dir, &format!("pagemap-{pid}.img"), magic::PAGEMAP)?;
            let _head: Option<pb::PagemapHead> = r.next()?;
            let mut pms: Vec<pb::PagemapEntry> = Vec::new();
            while let Some(e) = r.next()? {
                pms.push(e);
            }
            out!(t, "{pid}");
            // Indices as upstream keeps them: signed, -1 meaning the last.
            let n = vmas.len() as isize;
            let at = |i: isize| &vmas[(if i < 0 { n + i } else { i }) as usize];
            let mut vmi: isize = 0;
            let mut pvmi: isize = -1;
            for pm in &pms {
                let nr = pm.nr_pages.unwrap_or(pm.compat_nr_pages as u64);
                let pstr = format!("\t{:x} / {:<8}", pm.vaddr, nr);
                while vmi < n && -vmi <= n && at(vmi).end <= pm.vaddr {
                    vmi += 1;
                }
                let pme = pm.vaddr + (nr << PAGE_SHIFT);
                let mut vstr = String::new();
                while vmi < n && -vmi <= n && at(vmi).start < pme {
                    let vma = at(vmi);
                    if vmi == pvmi {
                        vstr.push_str(" ~");
                    } else {
                        let _ = write!(
                            vstr,
                            " {:08x} / {:<8}",
                            vma.start,
                            (vma.end - vma.start) >> PAGE_SHIFT
                        );
                        if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
                            let name = self.reg(vma.shmid as u32);
                            let _ = write!(vstr, " {name}");
                        }
                        pvmi = vmi;
                    }
                    let _ = write!(vstr, "\n\t{:23}", "");
                    vmi += 1;
                }
                vmi -= 1;
                out!(t, "{:<24}{}", pstr, vstr);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explorer_names_parse() {
        assert_eq!("ps".parse::<Explorer>(), Ok(Explorer::Ps));
        assert_eq!("rss".parse::<Explorer>(), Ok(Explorer::Rss));
        assert!("pss".parse::<Explorer>().is_err());
    }

    #[test]
    fn a_missing_pstree_is_an_error_naming_the_file() {
        let tmp = std::env::temp_dir().join(format!("crit-x-empty-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&tmp);
        let mut out = Vec::new();
        let e = explore(&tmp, Explorer::Ps, &mut out).unwrap_err();
        assert!(e.file().ends_with("pstree.img"), "{e}");
        let _ = std::fs::remove_dir(&tmp);
    }
}
