//! `/proc/PID/limits`: a header line, then one row per resource:
//! `NAME (padded to 25) SOFT HARD [UNITS]`, with `unlimited` for
//! RLIM_INFINITY. Rows are matched by name, not by position.

use std::fmt;

use super::{dec, numbered_lines, perr, FileKind, Result};

const K: FileKind = FileKind::Limits;

/// `RLIM_INFINITY` as the kernel stores it.
pub const RLIM_INFINITY: u64 = u64::MAX;

/// Number of resources the kernel knows (`RLIM_NLIMITS`).
pub const RLIM_NLIMITS: usize = 16;

/// The `RLIMIT_*` resources; the discriminant is the kernel's resource number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Resource {
    Cpu = 0,
    Fsize = 1,
    Data = 2,
    Stack = 3,
    Core = 4,
    Rss = 5,
    Nproc = 6,
    Nofile = 7,
    Memlock = 8,
    As = 9,
    Locks = 10,
    Sigpending = 11,
    Msgqueue = 12,
    Nice = 13,
    Rtprio = 14,
    Rttime = 15,
}

impl Resource {
    /// All resources in kernel order.
    pub const ALL: [Resource; RLIM_NLIMITS] = [
        Resource::Cpu,
        Resource::Fsize,
        Resource::Data,
        Resource::Stack,
        Resource::Core,
        Resource::Rss,
        Resource::Nproc,
        Resource::Nofile,
        Resource::Memlock,
        Resource::As,
        Resource::Locks,
        Resource::Sigpending,
        Resource::Msgqueue,
        Resource::Nice,
        Resource::Rtprio,
        Resource::Rttime,
    ];

    /// The kernel's `RLIMIT_*` number.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The row name in /proc/PID/limits.
    pub fn row_name(self) -> &'static str {
        match self {
            Resource::Cpu => "Max cpu time",
            Resource::Fsize => "Max file size",
            Resource::Data => "Max data size",
            Resource::Stack => "Max stack size",
            Resource::Core => "Max core file size",
            Resource::Rss => "Max resident set",
            Resource::Nproc => "Max processes",
            Resource::Nofile => "Max open files",
            Resource::Memlock => "Max locked memory",
            Resource::As => "Max address space",
            Resource::Locks => "Max file locks",
            Resource::Sigpending => "Max pending signals",
            Resource::Msgqueue => "Max msgqueue size",
            Resource::Nice => "Max nice priority",
            Resource::Rtprio => "Max realtime priority",
            Resource::Rttime => "Max realtime timeout",
        }
    }

    /// The unit column (empty for nice and rtprio).
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Cpu => "seconds",
            Resource::Nproc => "processes",
            Resource::Nofile => "files",
            Resource::Locks => "locks",
            Resource::Sigpending => "signals",
            Resource::Rttime => "us",
            Resource::Nice | Resource::Rtprio => "",
            _ => "bytes",
        }
    }
}

/// One resource's limits; [`RLIM_INFINITY`] for `unlimited`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Rlimit {
    pub soft: u64,
    pub hard: u64,
}

impl fmt::Debug for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = |x: u64| {
            if x == RLIM_INFINITY {
                "unlimited".to_string()
            } else {
                x.to_string()
            }
        };
        write!(
            f,
            "Rlimit {{ soft: {}, hard: {} }}",
            v(self.soft),
            v(self.hard)
        )
    }
}

/// Parsed `/proc/PID/limits`: all 16 resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Indexed by the resource number.
    pub rlimits: [Rlimit; RLIM_NLIMITS],
    /// Rows of resources this parser does not know (raw text).
    pub unknown: Vec<String>,
}

impl Limits {
    pub fn get(&self, r: Resource) -> Rlimit {
        self.rlimits[r as usize]
    }

    /// Format as the kernel does.
    pub fn to_kernel_text(&self) -> String {
        let mut s = format!(
            "{:<25} {:<20} {:<20} {:<10}\n",
            "Limit", "Soft Limit", "Hard Limit", "Units"
        );
        let v = |x: u64| {
            if x == RLIM_INFINITY {
                "unlimited".to_string()
            } else {
                x.to_string()
            }
        };
        for r in Resource::ALL {
            let l = self.get(r);
            s += &format!("{:<25} {:<20} {:<20} ", r.row_name(), v(l.soft), v(l.hard));
            if r.unit().is_empty() {
                s.push('\n');
            } else {
                s += &format!("{:<10}\n", r.unit());
            }
        }
        s
    }
}

fn value(s: &str) -> Option<u64> {
    if s == "unlimited" {
        Some(RLIM_INFINITY)
    } else {
        dec(s)
    }
}

/// Parse `/proc/PID/limits`.
pub fn parse_limits(text: &str) -> Result<Limits> {
    let mut rlimits = [Rlimit::default(); RLIM_NLIMITS];
    let mut seen = [false; RLIM_NLIMITS];
    let mut unknown = Vec::new();
    let mut header = false;
    for (no, line) in numbered_lines(text.as_bytes()) {
        let l = std::str::from_utf8(line).map_err(|_| perr(K, no, "not UTF-8", line))?;
        let err = |what: &str| perr(K, no, what, line);
        if no == 1 {
            if !l.starts_with("Limit ") {
                return Err(err("no header line"));
            }
            header = true;
            continue;
        }
        let found = Resource::ALL.iter().copied().find(|r| {
            l.strip_prefix(r.row_name())
                .is_some_and(|rest| rest.starts_with(' '))
        });
        let Some(r) = found else {
            unknown.push(l.to_string());
            continue;
        };
        let rest = &l[r.row_name().len()..];
        let mut it = rest.split_ascii_whitespace();
        let soft = it
            .next()
            .and_then(value)
            .ok_or_else(|| err("bad soft limit"))?;
        let hard = it
            .next()
            .and_then(value)
            .ok_or_else(|| err("bad hard limit"))?;
        let idx = r as usize;
        if seen[idx] {
            return Err(err("resource listed twice"));
        }
        seen[idx] = true;
        rlimits[idx] = Rlimit { soft, hard };
    }
    if !header {
        return Err(perr(K, 1, "empty file", b""));
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(perr(
            K,
            numbered_lines(text.as_bytes()).count(),
            format!("no row for {}", Resource::ALL[i].row_name()),
            b"",
        ));
    }
    Ok(Limits { rlimits, unknown })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fixture;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixture_self() {
        let text = String::from_utf8(fixture("limits_self.txt")).expect("utf8");
        let l = parse_limits(&text).expect("parse");
        assert_eq!(l.get(Resource::Cpu).soft, RLIM_INFINITY);
        assert_eq!(
            l.get(Resource::Stack),
            Rlimit {
                soft: 8388608,
                hard: RLIM_INFINITY
            }
        );
        assert_eq!(l.get(Resource::Core).soft, 0);
        assert!(l.unknown.is_empty());
        // The kernel's exact formatting comes back out.
        assert_eq!(l.to_kernel_text(), text);
        insta::assert_debug_snapshot!("limits_self", l);
    }

    #[test]
    fn numbers_match_libc() {
        use Resource::*;
        let pairs = [
            (Cpu, libc::RLIMIT_CPU),
            (Fsize, libc::RLIMIT_FSIZE),
            (Data, libc::RLIMIT_DATA),
            (Stack, libc::RLIMIT_STACK),
            (Core, libc::RLIMIT_CORE),
            (Rss, libc::RLIMIT_RSS),
            (Nproc, libc::RLIMIT_NPROC),
            (Nofile, libc::RLIMIT_NOFILE),
            (Memlock, libc::RLIMIT_MEMLOCK),
            (As, libc::RLIMIT_AS),
            (Locks, libc::RLIMIT_LOCKS),
            (Sigpending, libc::RLIMIT_SIGPENDING),
            (Msgqueue, libc::RLIMIT_MSGQUEUE),
            (Nice, libc::RLIMIT_NICE),
            (Rtprio, libc::RLIMIT_RTPRIO),
            (Rttime, libc::RLIMIT_RTTIME),
        ];
        for (r, n) in pairs {
            assert_eq!(i64::from(r.number()), n as i64, "{r:?}");
        }
        assert_eq!(RLIM_INFINITY, libc::RLIM_INFINITY);
    }

    #[test]
    fn errors() {
        let text = String::from_utf8(fixture("limits_self.txt")).expect("utf8");
        let missing: String = text
            .lines()
            .filter(|l| !l.starts_with("Max nice"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = parse_limits(&missing).unwrap_err();
        assert!(e.to_string().contains("Max nice priority"), "{e}");
        assert!(parse_limits(&text.replace("8388608 ", "8x88608 ")).is_err());
        assert!(parse_limits("").is_err());
        let extra = format!("{text}Max future thing    1 2 things\n");
        assert_eq!(
            parse_limits(&extra).expect("parse").unknown,
            vec!["Max future thing    1 2 things".to_string()]
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_limits(&s);
        }

        #[test]
        fn roundtrip(vals in proptest::collection::vec((any::<u64>(), any::<u64>()), 16)) {
            let mut rlimits = [Rlimit::default(); RLIM_NLIMITS];
            for (i, (s, h)) in vals.iter().enumerate() {
                // Bias towards unlimited some of the time.
                let f = |x: u64| if x % 5 == 0 { RLIM_INFINITY } else { x };
                rlimits[i] = Rlimit { soft: f(*s), hard: f(*h) };
            }
            let l = Limits { rlimits, unknown: vec![] };
            prop_assert_eq!(parse_limits(&l.to_kernel_text()).expect("parse"), l);
        }
    }
}
