//! `/proc/PID/maps` and `/proc/PID/smaps`.
//!
//! A maps line is
//! `START-END PERMS OFFSET MAJ:MIN INODE [padding NAME]`, all numbers in hex
//! except the inode (decimal). The name is printed by the kernel with only
//! `\n` escaped (as `\012`); a backslash in a path is printed raw, so a path
//! that really contains the four characters `\012` cannot be told apart from
//! one with a newline. Paths are bytes ([`PathBuf`]), not necessarily UTF-8.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[cfg(test)]
use super::Error;
use super::Result;
use super::{dec, hex_u64, line_str, numbered_lines, os, parse_dev_hex, perr, Dev, FileKind};

/// The permission column: `rwxp` / `rwxs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// `s` (MAP_SHARED); `p` (private, copy-on-write) otherwise.
    pub shared: bool,
}

impl Perms {
    /// `PROT_*` bits.
    pub fn prot(self) -> i32 {
        let mut p = 0;
        if self.read {
            p |= libc::PROT_READ;
        }
        if self.write {
            p |= libc::PROT_WRITE;
        }
        if self.exec {
            p |= libc::PROT_EXEC;
        }
        p
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |b: bool, ch: char| if b { ch } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            c(self.read, 'r'),
            c(self.write, 'w'),
            c(self.exec, 'x'),
            if self.shared { 's' } else { 'p' }
        )
    }
}

/// The last column of a maps line, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapName {
    /// No name: anonymous memory.
    Anonymous,
    /// A file mapping. `deleted` when the kernel appended ` (deleted)`. memfd
    /// mappings appear as `/memfd:NAME` (deleted), SysV shm as
    /// `/SYSV%08x` (deleted), shared anonymous memory as `/dev/zero` (deleted).
    File { path: PathBuf, deleted: bool },
    /// `[heap]`
    Heap,
    /// `[stack]`
    Stack,
    /// `[vdso]`
    Vdso,
    /// `[vvar]`
    Vvar,
    /// `[vvar_vclock]` (kernel 6.13+)
    VvarVclock,
    /// `[vsyscall]`
    Vsyscall,
    /// `[anon:NAME]`: private anonymous memory named by PR_SET_VMA_ANON_NAME.
    AnonNamed(OsString),
    /// `[anon_shmem:NAME]`: shared anonymous memory named the same way.
    AnonShmemNamed(OsString),
    /// Any other `[...]` name (e.g. `[uprobes]`, `[stack:TID]`), without the brackets.
    Special(OsString),
}

impl MapName {
    fn parse(raw: &[u8]) -> MapName {
        if raw.is_empty() {
            return MapName::Anonymous;
        }
        if raw.len() >= 2 && raw[0] == b'[' && raw[raw.len() - 1] == b']' {
            let inner = &raw[1..raw.len() - 1];
            return match inner {
                b"heap" => MapName::Heap,
                b"stack" => MapName::Stack,
                b"vdso" => MapName::Vdso,
                b"vvar" => MapName::Vvar,
                b"vvar_vclock" => MapName::VvarVclock,
                b"vsyscall" => MapName::Vsyscall,
                _ => {
                    if let Some(n) = inner.strip_prefix(b"anon:") {
                        MapName::AnonNamed(os(n.to_vec()))
                    } else if let Some(n) = inner.strip_prefix(b"anon_shmem:") {
                        MapName::AnonShmemNamed(os(n.to_vec()))
                    } else {
                        MapName::Special(os(inner.to_vec()))
                    }
                }
            };
        }
        let (body, deleted) = match raw.strip_suffix(b" (deleted)") {
            Some(b) => (b, true),
            None => (raw, false),
        };
        let path = unescape_newline(body);
        MapName::File {
            path: PathBuf::from(os(path)),
            deleted,
        }
    }

    /// The text the kernel would print for this name.
    pub fn to_kernel_bytes(&self) -> Vec<u8> {
        let br = |s: &[u8]| {
            let mut v = b"[".to_vec();
            v.extend_from_slice(s);
            v.push(b']');
            v
        };
        match self {
            MapName::Anonymous => Vec::new(),
            MapName::File { path, deleted } => {
                let mut v = Vec::new();
                for &b in path.as_os_str().as_bytes() {
                    if b == b'\n' {
                        v.extend_from_slice(b"\\012");
                    } else {
                        v.push(b);
                    }
                }
                if *deleted {
                    v.extend_from_slice(b" (deleted)");
                }
                v
            }
            MapName::Heap => b"[heap]".to_vec(),
            MapName::Stack => b"[stack]".to_vec(),
            MapName::Vdso => b"[vdso]".to_vec(),
            MapName::Vvar => b"[vvar]".to_vec(),
            MapName::VvarVclock => b"[vvar_vclock]".to_vec(),
            MapName::Vsyscall => b"[vsyscall]".to_vec(),
            MapName::AnonNamed(n) => br(&[b"anon:", n.as_bytes()].concat()),
            MapName::AnonShmemNamed(n) => br(&[b"anon_shmem:", n.as_bytes()].concat()),
            MapName::Special(n) => br(n.as_bytes()),
        }
    }
}

fn unescape_newline(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"\\012") {
            out.push(b'\n');
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, PartialEq, Eq)]
pub struct MapsEntry {
    /// First address (inclusive).
    pub start: u64,
    /// Last address (exclusive).
    pub end: u64,
    pub perms: Perms,
    /// Offset into the file, in bytes (for anonymous memory: the page offset
    /// the kernel keeps, usually 0 or `start >> 12`-derived).
    pub offset: u64,
    pub dev: Dev,
    pub inode: u64,
    pub name: MapName,
}

impl fmt::Debug for MapsEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Addresses in hex, as the kernel prints them.
        f.debug_struct("MapsEntry")
            .field("start", &format_args!("{:#x}", self.start))
            .field("end", &format_args!("{:#x}", self.end))
            .field("perms", &format_args!("{}", self.perms))
            .field("offset", &format_args!("{:#x}", self.offset))
            .field(
                "dev",
                &format_args!("{:02x}:{:02x}", self.dev.major, self.dev.minor),
            )
            .field("inode", &self.inode)
            .field("name", &self.name)
            .finish()
    }
}

impl MapsEntry {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// Whether the range is empty (never, for kernel output).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The path of a file mapping.
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.name {
            MapName::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// `NAME` of a memfd mapping (`/memfd:NAME (deleted)`).
    pub fn memfd_name(&self) -> Option<&OsStr> {
        match &self.name {
            MapName::File {
                path,
                deleted: true,
            } => path
                .as_os_str()
                .as_bytes()
                .strip_prefix(b"/memfd:")
                .map(OsStr::from_bytes),
            _ => None,
        }
    }

    /// The SysV shm key of a `/SYSV%08x (deleted)` mapping (the inode is the shmid).
    pub fn sysv_shm_key(&self) -> Option<u32> {
        match &self.name {
            MapName::File {
                path,
                deleted: true,
            } => {
                let b = path.as_os_str().as_bytes().strip_prefix(b"/SYSV")?;
                let s = std::str::from_utf8(b).ok()?;
                (s.len() == 8).then(|| u32::from_str_radix(s, 16).ok())?
            }
            _ => None,
        }
    }

    /// Shared anonymous memory (`MAP_SHARED|MAP_ANONYMOUS`): shown as
    /// `/dev/zero (deleted)` on the internal shmem mount, or `[anon_shmem:..]`.
    pub fn is_anon_shmem(&self) -> bool {
        match &self.name {
            MapName::AnonShmemNamed(_) => true,
            MapName::File {
                path,
                deleted: true,
            } => path.as_os_str().as_bytes() == b"/dev/zero" && self.perms.shared,
            _ => false,
        }
    }

    /// The line exactly as the kernel formats it (64-bit), without newline.
    pub fn to_kernel_line(&self) -> Vec<u8> {
        let head = format!(
            "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
            self.start,
            self.end,
            self.perms,
            self.offset,
            self.dev.major,
            self.dev.minor,
            self.inode
        );
        let mut v = head.into_bytes();
        let name = self.name.to_kernel_bytes();
        if !name.is_empty() {
            while v.len() < 72 {
                v.push(b' ');
            }
            v.push(b' ');
            v.extend_from_slice(&name);
        }
        v
    }

    fn parse_line(kind: FileKind, no: usize, line: &[u8]) -> Result<MapsEntry> {
        let err = |what: &str| perr(kind, no, what, line);
        let mut rest = line;
        let mut field = || -> Option<&[u8]> {
            let i = rest.iter().position(|&b| b == b' ')?;
            let f = &rest[..i];
            rest = &rest[i + 1..];
            Some(f)
        };
        let mut fields = [&b""[..]; 5];
        for f in fields.iter_mut() {
            *f = field().ok_or_else(|| err("too few fields"))?;
        }
        fn s(b: &[u8]) -> std::result::Result<&str, std::str::Utf8Error> {
            std::str::from_utf8(b)
        }
        let bad_ascii = |_| err("field not ASCII");
        let (start, end) = s(fields[0])
            .map_err(bad_ascii)?
            .split_once('-')
            .ok_or_else(|| err("no '-' in address range"))?;
        let start = hex_u64(start).ok_or_else(|| err("bad start address"))?;
        let end = hex_u64(end).ok_or_else(|| err("bad end address"))?;
        if end < start {
            return Err(err("end below start"));
        }
        let p = fields[1];
        if p.len() != 4 {
            return Err(err("bad permissions"));
        }
        let flag = |b: u8, on: u8| -> Result<bool> {
            if b == on {
                Ok(true)
            } else if b == b'-' {
                Ok(false)
            } else {
                Err(err("bad permissions"))
            }
        };
        let shared = match p[3] {
            b's' => true,
            b'p' => false,
            _ => return Err(err("bad sharing flag")),
        };
        let perms = Perms {
            read: flag(p[0], b'r')?,
            write: flag(p[1], b'w')?,
            exec: flag(p[2], b'x')?,
            shared,
        };
        let offset = hex_u64(s(fields[2]).map_err(bad_ascii)?).ok_or_else(|| err("bad offset"))?;
        let dev =
            parse_dev_hex(s(fields[3]).map_err(bad_ascii)?).ok_or_else(|| err("bad device"))?;
        let inode = dec(s(fields[4]).map_err(bad_ascii)?).ok_or_else(|| err("bad inode"))?;
        let first = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        let name = MapName::parse(&rest[first..]);
        Ok(MapsEntry {
            start,
            end,
            perms,
            offset,
            dev,
            inode,
            name,
        })
    }
}

/// Parse `/proc/PID/maps` given as text.
pub fn parse_maps(text: &str) -> Result<Vec<MapsEntry>> {
    parse_maps_bytes(text.as_bytes())
}

/// Parse `/proc/PID/maps` given as raw bytes (paths need not be UTF-8).
pub fn parse_maps_bytes(text: &[u8]) -> Result<Vec<MapsEntry>> {
    numbered_lines(text)
        .map(|(no, l)| MapsEntry::parse_line(FileKind::Maps, no, l))
        .collect()
}

macro_rules! vm_flags {
    ($( $code:literal => $name:ident, $doc:literal; )*) => {
        /// One `VmFlags:` code of smaps.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum VmFlag {
            $( #[doc = $doc] $name, )*
        }

        impl VmFlag {
            /// All known flags, in bit order.
            pub const ALL: &'static [VmFlag] = &[$(VmFlag::$name,)*];

            /// The two-letter code.
            pub fn code(self) -> &'static str {
                match self { $(VmFlag::$name => $code,)* }
            }

            /// Decode a two-letter code.
            pub fn from_code(c: &str) -> Option<VmFlag> {
                match c { $($code => Some(VmFlag::$name),)* _ => None }
            }
        }
    };
}

vm_flags! {
    "rd" => Read, "readable";
    "wr" => Write, "writable";
    "ex" => Exec, "executable";
    "sh" => Shared, "shared";
    "mr" => MayRead, "may read";
    "mw" => MayWrite, "may write";
    "me" => MayExec, "may execute";
    "ms" => MayShare, "may share";
    "gd" => GrowsDown, "stack segment grows down";
    "pf" => PfnMap, "pure PFN range";
    "dw" => DenyWrite, "disabled write to the mapped file (old kernels)";
    "lo" => Locked, "pages are locked in memory";
    "io" => Io, "memory mapped I/O area";
    "sr" => SeqRead, "sequential read advise";
    "rr" => RandRead, "random read advise";
    "dc" => DontCopy, "do not copy on fork";
    "de" => DontExpand, "do not expand on remapping";
    "ac" => Account, "area is accountable";
    "nr" => NoReserve, "swap space is not reserved";
    "ht" => Hugetlb, "area uses huge tlb pages";
    "sf" => Sync, "synchronous page faults";
    "nl" => NonLinear, "non-linear mapping (old kernels)";
    "ar" => Arch1, "architecture specific flag";
    "wf" => WipeOnFork, "wipe on fork";
    "dd" => DontDump, "do not include in core dump";
    "bt" => ArmBti, "arm64 BTI guarded page";
    "mt" => ArmMte, "arm64 MTE allocation tags enabled";
    "sd" => SoftDirty, "soft-dirty";
    "mm" => MixedMap, "mixed map";
    "hg" => HugePage, "MADV_HUGEPAGE";
    "nh" => NoHugePage, "MADV_NOHUGEPAGE";
    "mg" => Mergeable, "MADV_MERGEABLE (KSM)";
    "um" => UffdMissing, "userfaultfd missing-pages tracking";
    "uw" => UffdWp, "userfaultfd write-protect tracking";
    "ui" => UffdMinor, "userfaultfd minor-fault tracking";
    "lf" => LockOnFault, "lock pages on fault (mlock2 MLOCK_ONFAULT)";
    "ss" => ShadowStack, "shadow stack";
    "sl" => Sealed, "sealed (mseal)";
    "dp" => Droppable, "droppable (MAP_DROPPABLE)";
    "gu" => Guard, "guard regions";
}

/// The `VmFlags:` line of smaps: a set of known flags plus any codes this
/// code does not know (kept in order of appearance).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct VmFlags {
    bits: u64,
    pub unknown: Vec<String>,
}

impl VmFlags {
    pub fn contains(&self, f: VmFlag) -> bool {
        self.bits & (1u64 << (f as u8)) != 0
    }

    pub fn insert(&mut self, f: VmFlag) {
        self.bits |= 1u64 << (f as u8);
    }

    /// Known flags that are set, in bit order.
    pub fn iter(&self) -> impl Iterator<Item = VmFlag> + '_ {
        VmFlag::ALL.iter().copied().filter(|&f| self.contains(f))
    }

    /// Parse the value of a `VmFlags:` line (space separated codes).
    pub fn parse(s: &str) -> VmFlags {
        let mut v = VmFlags::default();
        for code in s.split_ascii_whitespace() {
            match VmFlag::from_code(code) {
                Some(f) => v.insert(f),
                None => v.unknown.push(code.to_string()),
            }
        }
        v
    }
}

impl fmt::Debug for VmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VmFlags(")?;
        let mut first = true;
        let known = self.iter().map(|f| f.code());
        for code in known.chain(self.unknown.iter().map(|s| s.as_str())) {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(code)?;
        }
        f.write_str(")")
    }
}

/// One VMA of `/proc/PID/smaps`. All sizes are in kB, as printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmapsSizes {
    pub size_kb: u64,
    pub kernel_page_size_kb: u64,
    pub mmu_page_size_kb: u64,
    pub rss_kb: u64,
    pub pss_kb: u64,
    pub pss_dirty_kb: u64,
    pub shared_clean_kb: u64,
    pub shared_dirty_kb: u64,
    pub private_clean_kb: u64,
    pub private_dirty_kb: u64,
    pub referenced_kb: u64,
    pub anonymous_kb: u64,
    pub ksm_kb: u64,
    pub lazy_free_kb: u64,
    pub anon_huge_pages_kb: u64,
    pub shmem_pmd_mapped_kb: u64,
    pub file_pmd_mapped_kb: u64,
    pub shared_hugetlb_kb: u64,
    pub private_hugetlb_kb: u64,
    pub swap_kb: u64,
    pub swap_pss_kb: u64,
    pub locked_kb: u64,
}

/// One VMA of `/proc/PID/smaps`: the maps line plus its per-VMA counters.
/// Counters absent from the file (older kernels) are 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsEntry {
    pub map: MapsEntry,
    pub sizes: SmapsSizes,
    /// `THPeligible:` (absent on old kernels).
    pub thp_eligible: Option<bool>,
    /// `ProtectionKey:` (only with memory protection keys).
    pub protection_key: Option<u32>,
    pub vm_flags: VmFlags,
    /// Keys this parser does not know, with their raw value.
    pub other: BTreeMap<String, String>,
}

/// Parse `/proc/PID/smaps` given as text.
pub fn parse_smaps(text: &str) -> Result<Vec<SmapsEntry>> {
    parse_smaps_bytes(text.as_bytes())
}

/// Parse `/proc/PID/smaps` given as raw bytes.
pub fn parse_smaps_bytes(text: &[u8]) -> Result<Vec<SmapsEntry>> {
    const K: FileKind = FileKind::Smaps;
    let mut out: Vec<SmapsEntry> = Vec::new();
    for (no, line) in numbered_lines(text) {
        let first = line.split(|&b| b == b' ').next().unwrap_or(b"");
        if !first.ends_with(b":") {
            out.push(SmapsEntry {
                map: MapsEntry::parse_line(K, no, line)?,
                sizes: SmapsSizes::default(),
                thp_eligible: None,
                protection_key: None,
                vm_flags: VmFlags::default(),
                other: BTreeMap::new(),
            });
            continue;
        }
        let l = line_str(K, no, line)?;
        let err = |what: &str| perr(K, no, what, line);
        let cur = out
            .last_mut()
            .ok_or_else(|| err("counter before any VMA header"))?;
        let (key, val) = l.split_once(':').ok_or_else(|| err("no ':'"))?;
        let val = val.trim();
        let kb = || -> Result<u64> {
            let n = val
                .strip_suffix(" kB")
                .ok_or_else(|| err("size without kB"))?
                .trim();
            dec(n).ok_or_else(|| err("bad size"))
        };
        let z = &mut cur.sizes;
        match key {
            "Size" => z.size_kb = kb()?,
            "KernelPageSize" => z.kernel_page_size_kb = kb()?,
            "MMUPageSize" => z.mmu_page_size_kb = kb()?,
            "Rss" => z.rss_kb = kb()?,
            "Pss" => z.pss_kb = kb()?,
            "Pss_Dirty" => z.pss_dirty_kb = kb()?,
            "Shared_Clean" => z.shared_clean_kb = kb()?,
            "Shared_Dirty" => z.shared_dirty_kb = kb()?,
            "Private_Clean" => z.private_clean_kb = kb()?,
            "Private_Dirty" => z.private_dirty_kb = kb()?,
            "Referenced" => z.referenced_kb = kb()?,
            "Anonymous" => z.anonymous_kb = kb()?,
            "KSM" => z.ksm_kb = kb()?,
            "LazyFree" => z.lazy_free_kb = kb()?,
            "AnonHugePages" => z.anon_huge_pages_kb = kb()?,
            "ShmemPmdMapped" => z.shmem_pmd_mapped_kb = kb()?,
            "FilePmdMapped" => z.file_pmd_mapped_kb = kb()?,
            "Shared_Hugetlb" => z.shared_hugetlb_kb = kb()?,
            "Private_Hugetlb" => z.private_hugetlb_kb = kb()?,
            "Swap" => z.swap_kb = kb()?,
            "SwapPss" => z.swap_pss_kb = kb()?,
            "Locked" => z.locked_kb = kb()?,
            "THPeligible" => {
                cur.thp_eligible = Some(match val {
                    "0" => false,
                    "1" => true,
                    _ => return Err(err("bad THPeligible")),
                })
            }
            "ProtectionKey" => {
                cur.protection_key = Some(dec(val).ok_or_else(|| err("bad ProtectionKey"))?)
            }
            "VmFlags" => cur.vm_flags = VmFlags::parse(val),
            _ => {
                cur.other.insert(key.to_string(), val.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fixture;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixture_maps_layout() {
        let maps = parse_maps_bytes(&fixture("maps_layout.txt")).expect("parse");
        let find = |n: &MapName| maps.iter().filter(|m| &m.name == n).count();
        assert_eq!(find(&MapName::Heap), 1);
        assert_eq!(find(&MapName::Stack), 1);
        assert_eq!(find(&MapName::Vdso), 1);
        assert_eq!(find(&MapName::Vvar), 1);
        assert_eq!(find(&MapName::VvarVclock), 1);
        assert_eq!(find(&MapName::Vsyscall), 1);
        let memfd: Vec<_> = maps.iter().filter_map(|m| m.memfd_name()).collect();
        assert_eq!(memfd, vec![OsStr::new("fixture memfd")]);
        assert!(maps.iter().any(|m| m.sysv_shm_key() == Some(0)));
        assert!(maps.iter().any(|m| m.is_anon_shmem()));
        assert!(maps
            .iter()
            .any(|m| m.path() == Some(std::path::Path::new("/tmp/criu fixture\nodd name"))));
        assert!(maps.iter().any(|m| m.name
            == MapName::File {
                path: "/tmp/criu-fixture-deleted".into(),
                deleted: true
            }));
        // Every line formats back to exactly what the kernel printed.
        let text = fixture("maps_layout.txt");
        for (m, line) in maps.iter().zip(text.split(|&b| b == b'\n')) {
            assert_eq!(
                m.to_kernel_line(),
                line,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        insta::assert_debug_snapshot!("maps_layout", maps);
    }

    #[test]
    fn synthetic_names() {
        // This kernel lacks CONFIG_ANON_VMA_NAME, so these lines are written
        // by hand in the kernel's format.
        let maps = parse_maps_bytes(&fixture("maps_synthetic.txt")).expect("parse");
        insta::assert_debug_snapshot!("maps_synthetic", maps);
        assert_eq!(maps[0].name, MapName::AnonNamed("criu buf".into()));
        assert_eq!(maps[1].name, MapName::AnonShmemNamed("shm".into()));
        assert!(maps[1].is_anon_shmem());
        assert_eq!(maps[2].name, MapName::Special("uprobes".into()));
    }

    #[test]
    fn fixture_smaps_layout() {
        let smaps = parse_smaps_bytes(&fixture("smaps_layout.txt")).expect("parse");
        let maps = parse_maps_bytes(&fixture("maps_layout.txt")).expect("parse");
        assert_eq!(smaps.len(), maps.len());
        for (s, m) in smaps.iter().zip(&maps) {
            assert_eq!(&s.map, m);
            assert_eq!(s.sizes.size_kb * 1024, m.len());
            assert_eq!(s.vm_flags.contains(VmFlag::Read), m.perms.read);
            assert_eq!(s.vm_flags.contains(VmFlag::Write), m.perms.write);
            // maps prints 's' for VM_MAYSHARE; VM_SHARED is dropped for
            // read-only shared file mappings.
            assert_eq!(s.vm_flags.contains(VmFlag::MayShare), m.perms.shared);
            if s.vm_flags.contains(VmFlag::Shared) {
                assert!(m.perms.shared);
            }
            assert!(s.thp_eligible.is_some());
            assert!(s.vm_flags.unknown.is_empty(), "{:?}", s.vm_flags);
        }
        let stack = smaps
            .iter()
            .find(|s| s.map.name == MapName::Stack)
            .expect("stack");
        assert!(stack.vm_flags.contains(VmFlag::GrowsDown));
        assert!(stack.sizes.rss_kb > 0);
        insta::assert_debug_snapshot!("smaps_layout_first3", &smaps[..3]);
        insta::assert_debug_snapshot!("smaps_stack", stack);
    }

    #[test]
    fn vmflags_unknown_kept() {
        let f = VmFlags::parse("rd zz wr  ex ");
        assert!(f.contains(VmFlag::Read) && f.contains(VmFlag::Write));
        assert!(!f.contains(VmFlag::Shared));
        assert_eq!(f.unknown, vec!["zz".to_string()]);
        assert_eq!(format!("{f:?}"), "VmFlags(rd wr ex zz)");
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            "zz-10 r--p 0 00:00 0",
            "10-20 r--q 00000000 00:00 0 ",
            "10-20 r--p 00000000 00:00",
            "20-10 r--p 00000000 00:00 0 ",
            "10-20 r--p 0 0000 0 ",
            "10-20 r--p 0 00:00 x ",
        ] {
            let e = parse_maps(bad).unwrap_err();
            assert!(
                matches!(
                    &e,
                    Error::Parse {
                        kind: FileKind::Maps,
                        line: 1,
                        ..
                    }
                ),
                "{e}"
            );
        }
        assert!(parse_smaps("Size: 4 kB\n").is_err());
        assert!(parse_smaps("10-20 r--p 0 00:00 0 \nSize: 4\n").is_err());
    }

    fn arb_name() -> impl Strategy<Value = MapName> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40);
        let inner = "[a-z0-9 _.-]{1,20}";
        prop_oneof![
            Just(MapName::Anonymous),
            Just(MapName::Heap),
            Just(MapName::Stack),
            Just(MapName::Vdso),
            Just(MapName::Vvar),
            Just(MapName::VvarVclock),
            Just(MapName::Vsyscall),
            inner.prop_map(|s| MapName::AnonNamed(s.into())),
            inner.prop_map(|s| MapName::AnonShmemNamed(s.into())),
            "[a-z]{1,10}".prop_map(|s| MapName::Special(s.into())),
            (bytes, any::<bool>()).prop_map(|(mut b, deleted)| {
                b.retain(|&c| c != b'\\');
                b.insert(0, b'/');
                // " (deleted)" at the end of a real name is ambiguous.
                while b.ends_with(b" (deleted)") {
                    b.pop();
                }
                MapName::File {
                    path: PathBuf::from(os(b)),
                    deleted,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn maps_never_panics(s in "\\PC*") {
            let _ = parse_maps(&s);
            let _ = parse_smaps(&s);
        }

        #[test]
        fn maps_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_maps_bytes(&b);
            let _ = parse_smaps_bytes(&b);
        }

        #[test]
        fn maps_roundtrip(
            start in any::<u64>(), len in any::<u64>(),
            r in any::<bool>(), w in any::<bool>(), x in any::<bool>(), sh in any::<bool>(),
            offset in any::<u64>(), major in 0u32..4096, minor in 0u32..1_048_576,
            inode in any::<u64>(), name in arb_name(),
        ) {
            let e = MapsEntry {
                start, end: start.saturating_add(len),
                perms: Perms { read: r, write: w, exec: x, shared: sh },
                offset, dev: Dev { major, minor }, inode, name,
            };
            let mut text = e.to_kernel_line();
            text.push(b'\n');
            let back = parse_maps_bytes(&text).expect("roundtrip parse");
            prop_assert_eq!(back, vec![e]);
        }

        #[test]
        fn smaps_line_mutations(idx in 0usize..2000, byte in any::<u8>()) {
            let mut t = fixture("smaps_layout.txt");
            let i = idx % t.len();
            t[i] = byte;
            let _ = parse_smaps_bytes(&t);
        }
    }
}
