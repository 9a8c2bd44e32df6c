//! Layer 1: parsers of /proc text into typed structs.
//!
//! Every parser is a pure function of the file's contents (`&str`, or `&[u8]`
//! where the file can hold arbitrary bytes such as path names), so it can be
//! tested against captured fixtures. The `read_*` helpers read the real file
//! of a live process and call the parser; their errors name the path.
//!
//! Parsers never panic on malformed input: they return [`Error::Parse`], which
//! names the kind of file, the 1-based line number and the offending text.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

pub mod auxv;
pub mod fdinfo;
pub mod limits;
pub mod maps;
pub mod mountinfo;
pub mod stat;
pub mod status;
pub mod timers;

pub use auxv::{parse_auxv, Auxv, AuxvEntry};
pub use fdinfo::{
    parse_fdinfo, EpollTfd, EventfdInfo, FanotifyInfo, FanotifyMark, FanotifyMarkTarget, Fdinfo,
    FileLock, FileLockClass, FileLockType, FsHandle, InotifyWatch, PidfdInfo, TimerfdInfo,
};
pub use limits::{parse_limits, Limits, Resource, Rlimit, RLIM_INFINITY};
pub use maps::{
    parse_maps, parse_maps_bytes, parse_smaps, parse_smaps_bytes, MapName, MapsEntry, Perms,
    SmapsEntry, SmapsSizes, VmFlag, VmFlags,
};
pub use mountinfo::{parse_mountinfo, parse_mountinfo_bytes, MountInfo, OptionalField};
pub use stat::{parse_stat, parse_stat_bytes, Stat};
pub use status::{parse_status, parse_status_bytes, Ids, SigQ, Status};
pub use timers::{parse_timers, PosixTimer};

/// Which /proc file a parse error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Maps,
    Smaps,
    Status,
    Stat,
    Limits,
    Fdinfo,
    Mountinfo,
    Auxv,
    Timers,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            FileKind::Maps => "maps",
            FileKind::Smaps => "smaps",
            FileKind::Status => "status",
            FileKind::Stat => "stat",
            FileKind::Limits => "limits",
            FileKind::Fdinfo => "fdinfo",
            FileKind::Mountinfo => "mountinfo",
            FileKind::Auxv => "auxv",
            FileKind::Timers => "timers",
        };
        f.write_str(s)
    }
}

/// Errors of the /proc layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text of a /proc file did not have the expected shape.
    #[error("parsing /proc {kind} line {line}: {what}: {text:?}")]
    Parse {
        kind: FileKind,
        /// 1-based line number (for auxv: the 1-based entry number).
        line: usize,
        /// What was wrong.
        what: String,
        /// The offending text (truncated to a few hundred characters).
        text: String,
    },
    /// Reading a /proc file failed.
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A parse error in a file that was read from `path`.
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
}

/// Result of the /proc layer.
pub type Result<T> = std::result::Result<T, Error>;

const MAX_ERR_TEXT: usize = 256;

/// Build a parse error from bytes (lossily shown, truncated).
pub(crate) fn perr(kind: FileKind, line: usize, what: impl Into<String>, text: &[u8]) -> Error {
    let cut = &text[..text.len().min(MAX_ERR_TEXT)];
    Error::Parse {
        kind,
        line,
        what: what.into(),
        text: String::from_utf8_lossy(cut).into_owned(),
    }
}

/// A device number as the kernel prints it: `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dev {
    pub major: u32,
    pub minor: u32,
}

impl Dev {
    /// Decode the kernel-internal `dev_t` encoding (20-bit minor), as printed
    /// in hex by fdinfo's `sdev:` fields.
    pub fn from_kernel(sdev: u32) -> Dev {
        Dev {
            major: sdev >> 20,
            minor: sdev & 0xfffff,
        }
    }

    /// The userspace `dev_t` (glibc's `makedev`).
    pub fn to_dev_t(self) -> u64 {
        let (ma, mi) = (u64::from(self.major), u64::from(self.minor));
        ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
    }
}

/// Parse `MAJ:MIN` in hex (as in maps, file locks).
pub(crate) fn parse_dev_hex(s: &str) -> Option<Dev> {
    let (ma, mi) = s.split_once(':')?;
    Some(Dev {
        major: u32::from_str_radix(ma, 16).ok()?,
        minor: u32::from_str_radix(mi, 16).ok()?,
    })
}

/// Parse `MAJ:MIN` in decimal (as in mountinfo).
pub(crate) fn parse_dev_dec(s: &str) -> Option<Dev> {
    let (ma, mi) = s.split_once(':')?;
    Some(Dev {
        major: ma.parse().ok()?,
        minor: mi.parse().ok()?,
    })
}

/// Hex number without a `0x` prefix; `None` if not one.
pub(crate) fn hex_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with('+') {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

pub(crate) fn hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('+') {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// Decimal number, no sign prefix allowed for unsigned types.
pub(crate) fn dec<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.starts_with('+') {
        return None;
    }
    s.parse().ok()
}

/// Undo the kernel's octal escapes (`\040`, `\011`, `\012`, `\134`): every
/// backslash followed by three octal digits becomes that byte; anything else
/// is kept as is.
pub(crate) fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            if let Some(b) = octal3(&s[i + 1..]) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn octal3(s: &[u8]) -> Option<u8> {
    if s.len() < 3 {
        return None;
    }
    let d = |c: u8| (b'0'..=b'7').contains(&c).then(|| c - b'0');
    let (a, b, c) = (d(s[0])?, d(s[1])?, d(s[2])?);
    let v = u16::from(a) * 64 + u16::from(b) * 8 + u16::from(c);
    u8::try_from(v).ok()
}

pub(crate) fn os(bytes: Vec<u8>) -> OsString {
    OsString::from_vec(bytes)
}

/// Split into lines, 1-based numbered; a trailing newline does not make an
/// extra empty line.
pub(crate) fn numbered_lines(text: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let empty = text.is_empty();
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !empty)
        .map(|(i, l)| (i + 1, l))
}

/// A line as `&str`, or a parse error naming it.
pub(crate) fn line_str(kind: FileKind, no: usize, line: &[u8]) -> Result<&str> {
    std::str::from_utf8(line).map_err(|_| perr(kind, no, "not UTF-8", line))
}

/// The scheduling state of a task, as in `stat` field 3 and `status` `State:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    /// `R`
    Running,
    /// `S`
    Sleeping,
    /// `D`
    DiskSleep,
    /// `T`
    Stopped,
    /// `t`
    TracingStop,
    /// `X`
    Dead,
    /// `Z`
    Zombie,
    /// `P`
    Parked,
    /// `I`
    Idle,
    /// Any other letter.
    Other(char),
}

impl ProcState {
    pub fn from_char(c: char) -> ProcState {
        match c {
            'R' => ProcState::Running,
            'S' => ProcState::Sleeping,
            'D' => ProcState::DiskSleep,
            'T' => ProcState::Stopped,
            't' => ProcState::TracingStop,
            'X' => ProcState::Dead,
            'Z' => ProcState::Zombie,
            'P' => ProcState::Parked,
            'I' => ProcState::Idle,
            c => ProcState::Other(c),
        }
    }

    pub fn as_char(self) -> char {
        match self {
            ProcState::Running => 'R',
            ProcState::Sleeping => 'S',
            ProcState::DiskSleep => 'D',
            ProcState::Stopped => 'T',
            ProcState::TracingStop => 't',
            ProcState::Dead => 'X',
            ProcState::Zombie => 'Z',
            ProcState::Parked => 'P',
            ProcState::Idle => 'I',
            ProcState::Other(c) => c,
        }
    }
}

// ---------------------------------------------------------------------------
// Convenience readers of a live process's files.

fn proc_path(pid: i32, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn in_file<T>(path: &Path, r: Result<T>) -> Result<T> {
    r.map_err(|e| Error::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })
}

fn read_with<T>(path: PathBuf, parse: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    let data = read_bytes(&path)?;
    in_file(&path, parse(&data))
}

fn utf8(kind: FileKind, data: &[u8]) -> Result<&str> {
    std::str::from_utf8(data).map_err(|e| {
        let upto = e.valid_up_to();
        let line = data[..upto].iter().filter(|&&b| b == b'\n').count() + 1;
        perr(kind, line, "not UTF-8", &data[upto..])
    })
}

/// `/proc/PID/maps`.
pub fn read_maps(pid: i32) -> Result<Vec<MapsEntry>> {
    read_with(proc_path(pid, "maps"), parse_maps_bytes)
}

/// `/proc/PID/smaps`.
pub fn read_smaps(pid: i32) -> Result<Vec<SmapsEntry>> {
    read_with(proc_path(pid, "smaps"), parse_smaps_bytes)
}

/// `/proc/PID/status`.
pub fn read_status(pid: i32) -> Result<Status> {
    read_with(proc_path(pid, "status"), parse_status_bytes)
}

/// `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> Result<Stat> {
    read_with(proc_path(pid, "stat"), parse_stat_bytes)
}

/// `/proc/PID/task/TID/status` (one thread).
pub fn read_task_status(pid: i32, tid: i32) -> Result<Status> {
    read_with(
        proc_path(pid, &format!("task/{tid}/status")),
        parse_status_bytes,
    )
}

/// `/proc/PID/task/TID/stat` (one thread).
pub fn read_task_stat(pid: i32, tid: i32) -> Result<Stat> {
    read_with(
        proc_path(pid, &format!("task/{tid}/stat")),
        parse_stat_bytes,
    )
}

/// `/proc/PID/limits`.
pub fn read_limits(pid: i32) -> Result<Limits> {
    read_with(proc_path(pid, "limits"), |d| {
        parse_limits(utf8(FileKind::Limits, d)?)
    })
}

/// `/proc/PID/fdinfo/FD`.
pub fn read_fdinfo(pid: i32, fd: i32) -> Result<Fdinfo> {
    read_with(proc_path(pid, &format!("fdinfo/{fd}")), |d| {
        parse_fdinfo(utf8(FileKind::Fdinfo, d)?)
    })
}

/// `/proc/PID/mountinfo`.
pub fn read_mountinfo(pid: i32) -> Result<Vec<MountInfo>> {
    read_with(proc_path(pid, "mountinfo"), parse_mountinfo_bytes)
}

/// `/proc/PID/auxv`.
pub fn read_auxv(pid: i32) -> Result<Auxv> {
    read_with(proc_path(pid, "auxv"), parse_auxv)
}

/// `/proc/PID/timers`.
pub fn read_timers(pid: i32) -> Result<Vec<PosixTimer>> {
    read_with(proc_path(pid, "timers"), parse_timers)
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;

    /// Path of a fixture file.
    pub fn fixture_path(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/proc/fixtures")
            .join(name)
    }

    /// Bytes of a fixture file; panics (test only) if missing.
    pub fn fixture(name: &str) -> Vec<u8> {
        let p = fixture_path(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_octal_cases() {
        assert_eq!(unescape_octal(br"a\040b"), b"a b");
        assert_eq!(unescape_octal(br"\012\134\011"), b"\n\\\t");
        assert_eq!(unescape_octal(br"\04"), br"\04");
        assert_eq!(unescape_octal(br"\089x"), br"\089x");
        assert_eq!(unescape_octal(br"\777"), br"\777");
        assert_eq!(unescape_octal(br"end\\"), br"end\\");
    }

    #[test]
    fn dev_encodings() {
        let d = Dev::from_kernel(0xfe00000);
        assert_eq!(
            d,
            Dev {
                major: 0xfe,
                minor: 0
            }
        );
        assert_eq!(Dev { major: 8, minor: 1 }.to_dev_t(), 0x801);
        assert_eq!(
            Dev {
                major: 0x123,
                minor: 0x45678
            }
            .to_dev_t(),
            libc::makedev(0x123, 0x45678)
        );
    }

    #[test]
    fn numbered_lines_counts() {
        let v: Vec<_> = numbered_lines(b"a\nb\n").collect();
        assert_eq!(v, vec![(1, &b"a"[..]), (2, &b"b"[..])]);
        assert_eq!(numbered_lines(b"").count(), 0);
        assert_eq!(numbered_lines(b"\n").count(), 1);
    }

    #[test]
    fn errors_name_the_file() {
        let e = read_maps(i32::MAX).unwrap_err();
        assert!(e.to_string().contains(&format!("/proc/{}/maps", i32::MAX)));
    }

    #[test]
    fn readers_work_on_self() {
        let pid = i32::try_from(std::process::id()).expect("pid fits i32");
        let maps = read_maps(pid).expect("maps");
        assert!(maps.iter().any(|m| m.name == MapName::Stack));
        let smaps = read_smaps(pid).expect("smaps");
        assert_eq!(smaps.len(), read_maps(pid).expect("maps").len());
        assert!(smaps.iter().any(|s| s.vm_flags.contains(VmFlag::Read)));
        let status = read_status(pid).expect("status");
        assert_eq!(status.pid, pid);
        assert_eq!(status.tgid, pid);
        let stat = read_stat(pid).expect("stat");
        assert_eq!(stat.pid, pid);
        assert_eq!(stat.ppid, status.ppid);
        assert_eq!(stat.comm, status.name);
        let tid = nix::unistd::gettid().as_raw();
        let ts = read_task_status(pid, tid).expect("task status");
        assert_eq!(ts.pid, tid);
        assert_eq!(read_task_stat(pid, tid).expect("task stat").pid, tid);
        let limits = read_limits(pid).expect("limits");
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        let got = limits.get(Resource::Nofile);
        assert_eq!((got.soft, got.hard), nofile);
        let f = std::fs::File::open("/proc/self/status").expect("open");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let fi = read_fdinfo(pid, fd).expect("fdinfo");
        assert_eq!(fi.flags & libc::O_ACCMODE as u32, libc::O_RDONLY as u32);
        let mi = read_mountinfo(pid).expect("mountinfo");
        assert!(mi
            .iter()
            .any(|m| m.mount_point == std::path::Path::new("/")));
        let auxv = read_auxv(pid).expect("auxv");
        let pagesz = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .expect("sysconf")
            .expect("page size") as u64;
        assert_eq!(auxv.get(auxv::AT_PAGESZ), Some(pagesz));
        assert!(read_fdinfo(pid, -5).is_err());
    }
}
