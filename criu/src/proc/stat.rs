//! `/proc/PID/stat` (and `/proc/PID/task/TID/stat`): one line of 52 fields.
//!
//! Field 2 is `(comm)`, printed raw: it may contain spaces, parentheses and
//! even newlines, so the comm ends at the LAST `)` of the text. Field names
//! follow proc(5). Times are in clock ticks (`sysconf(_SC_CLK_TCK)`), `rss`
//! in pages, `vsize` in bytes, addresses as plain numbers.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use super::{dec, os, perr, FileKind, ProcState, Result};

const K: FileKind = FileKind::Stat;

macro_rules! stat_fields {
    ($( $name:ident : $ty:ty, $doc:literal; )*) => {
        /// Parsed `/proc/PID/stat`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Stat {
            /// (1) pid
            pub pid: i32,
            /// (2) comm, without the parentheses (bytes, unescaped by the kernel).
            pub comm: OsString,
            /// (3) state
            pub state: ProcState,
            $( #[doc = $doc] pub $name: $ty, )*
        }

        const FIELD_NAMES: &[&str] = &[$(stringify!($name),)*];

        impl Stat {
            fn from_fields(pid: i32, comm: OsString, state: ProcState, f: &[&str], line: &[u8]) -> Result<Stat> {
                let mut it = f.iter().copied().zip(FIELD_NAMES.iter().copied()).enumerate();
                $(
                    let $name: $ty = {
                        let (i, (s, n)) = it.next().ok_or_else(|| perr(K, 1, "too few fields", line))?;
                        dec(s).ok_or_else(|| perr(K, 1, format!("bad field {} ({n})", i + 4), line))?
                    };
                )*
                Ok(Stat { pid, comm, state, $($name,)* })
            }

            /// Format as the kernel does (the line, with its newline).
            pub fn to_kernel_bytes(&self) -> Vec<u8> {
                let mut v = format!("{} (", self.pid).into_bytes();
                v.extend_from_slice(self.comm.as_bytes());
                v.extend_from_slice(format!(") {}", self.state.as_char()).as_bytes());
                $( v.extend_from_slice(format!(" {}", self.$name).as_bytes()); )*
                v.push(b'\n');
                v
            }
        }
    };
}

stat_fields! {
    ppid: i32, "(4) parent pid";
    pgrp: i32, "(5) process group id";
    session: i32, "(6) session id";
    tty_nr: i32, "(7) controlling terminal (encoded dev_t)";
    tpgid: i32, "(8) foreground process group of the terminal, -1 if none";
    flags: u32, "(9) PF_* flags";
    minflt: u64, "(10) minor faults";
    cminflt: u64, "(11) minor faults of waited-for children";
    majflt: u64, "(12) major faults";
    cmajflt: u64, "(13) major faults of waited-for children";
    utime: u64, "(14) user time, clock ticks";
    stime: u64, "(15) system time, clock ticks";
    cutime: i64, "(16) children's user time, clock ticks";
    cstime: i64, "(17) children's system time, clock ticks";
    priority: i64, "(18) priority (for normal tasks: nice + 20)";
    nice: i64, "(19) nice value, -20..19";
    num_threads: i64, "(20) number of threads";
    itrealvalue: i64, "(21) always 0";
    starttime: u64, "(22) start time after boot, clock ticks";
    vsize: u64, "(23) virtual memory size, bytes";
    rss: i64, "(24) resident set, pages";
    rsslim: u64, "(25) RLIMIT_RSS soft limit, bytes";
    start_code: u64, "(26) start of text";
    end_code: u64, "(27) end of text";
    start_stack: u64, "(28) start (bottom) of stack";
    kstkesp: u64, "(29) saved stack pointer (0 unless core dumping)";
    kstkeip: u64, "(30) saved instruction pointer (0 unless core dumping)";
    signal: u64, "(31) pending signals (obsolete, decimal; use status)";
    blocked: u64, "(32) blocked signals (obsolete)";
    sigignore: u64, "(33) ignored signals (obsolete)";
    sigcatch: u64, "(34) caught signals (obsolete)";
    wchan: u64, "(35) 0 or 1 (wait channel hidden)";
    nswap: u64, "(36) always 0";
    cnswap: u64, "(37) always 0";
    exit_signal: i32, "(38) signal sent to the parent on death";
    processor: i32, "(39) CPU last run on";
    rt_priority: u32, "(40) real-time priority, 0 for normal tasks";
    policy: u32, "(41) scheduling policy (SCHED_*)";
    delayacct_blkio_ticks: u64, "(42) block I/O delays, clock ticks";
    guest_time: u64, "(43) guest time, clock ticks";
    cguest_time: i64, "(44) children's guest time, clock ticks";
    start_data: u64, "(45) start of data+bss";
    end_data: u64, "(46) end of data+bss";
    start_brk: u64, "(47) start of heap (brk)";
    arg_start: u64, "(48) start of argv";
    arg_end: u64, "(49) end of argv";
    env_start: u64, "(50) start of environ";
    env_end: u64, "(51) end of environ";
    exit_code: i32, "(52) exit status as waitpid reports it";
}

/// Parse `/proc/PID/stat` given as text.
pub fn parse_stat(text: &str) -> Result<Stat> {
    parse_stat_bytes(text.as_bytes())
}

/// Parse `/proc/PID/stat` given as raw bytes (comm need not be UTF-8).
pub fn parse_stat_bytes(text: &[u8]) -> Result<Stat> {
    let line = text.strip_suffix(b"\n").unwrap_or(text);
    let open = line
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| perr(K, 1, "no '('", line))?;
    let close = line
        .iter()
        .rposition(|&b| b == b')')
        .ok_or_else(|| perr(K, 1, "no ')'", line))?;
    if close < open {
        return Err(perr(K, 1, "')' before '('", line));
    }
    let pid_s = std::str::from_utf8(&line[..open]).map_err(|_| perr(K, 1, "bad pid", line))?;
    let pid = dec(pid_s.trim_end_matches(' ')).ok_or_else(|| perr(K, 1, "bad pid", line))?;
    let comm = os(line[open + 1..close].to_vec());
    let rest = std::str::from_utf8(&line[close + 1..])
        .map_err(|_| perr(K, 1, "fields not ASCII", line))?;
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| perr(K, 1, "no space after ')'", line))?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let (state, fields) = fields
        .split_first()
        .ok_or_else(|| perr(K, 1, "no state", line))?;
    let mut sc = state.chars();
    let state = match (sc.next(), sc.next()) {
        (Some(c), None) => ProcState::from_char(c),
        _ => return Err(perr(K, 1, "bad state", line)),
    };
    if fields.len() < FIELD_NAMES.len() {
        return Err(perr(
            K,
            1,
            format!("{} fields, expected at least 52", fields.len() + 3),
            line,
        ));
    }
    Stat::from_fields(pid, comm, state, fields, line)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fixture;
    use super::*;
    use proptest::prelude::*;

    fn fx(name: &str) -> Stat {
        parse_stat_bytes(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn fixtures() {
        for (name, snap) in [
            ("stat_python.txt", "stat_python"),
            ("stat_thread.txt", "stat_thread"),
            ("stat_space.txt", "stat_space"),
            ("stat_paren.txt", "stat_paren"),
            ("stat_stopped.txt", "stat_stopped"),
            ("stat_zombie.txt", "stat_zombie"),
        ] {
            let st = fx(name);
            // Formatting back gives the kernel's exact bytes.
            assert_eq!(st.to_kernel_bytes(), fixture(name), "{name}");
            insta::assert_debug_snapshot!(snap, st);
        }
    }

    #[test]
    fn odd_comms() {
        assert_eq!(fx("stat_space.txt").comm, "a b");
        assert_eq!(fx("stat_paren.txt").comm, "x) (y");
        let t = fx("stat_thread.txt");
        assert_eq!(t.comm, "t\\1\n2\t) (x");
        assert_eq!(t.num_threads, 2);
        assert_eq!(fx("stat_zombie.txt").state, ProcState::Zombie);
        assert_eq!(fx("stat_stopped.txt").state, ProcState::Stopped);
        assert_eq!(fx("stat_zombie.txt").exit_code, 9);
        let s = fx("stat_space.txt");
        assert!(s.start_code < s.end_code);
        assert!(s.arg_start < s.arg_end && s.arg_end <= s.env_start);
    }

    #[test]
    fn errors() {
        let good = String::from_utf8(fixture("stat_python.txt")).expect("utf8");
        assert!(parse_stat(&good).is_ok());
        let short: String = good.rsplit_once(' ').expect("has space").0.to_string();
        let e = parse_stat(&short).unwrap_err();
        assert!(e.to_string().contains("expected at least 52"), "{e}");
        assert!(parse_stat(&good.replacen(") R ", ") RR ", 1)).is_err());
        assert!(parse_stat(&good.replacen(") R ", ")  ", 1)).is_err());
        assert!(parse_stat("1 x) S").is_err());
        assert!(parse_stat(")(").is_err());
        assert!(parse_stat("").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_stat(&s);
        }

        #[test]
        fn numeric_garbage_never_panics(head in "[0-9]{1,5} \\([ -~]{0,20}\\) [A-Za-z]", tail in "[ 0-9a-z-]{0,200}") {
            let _ = parse_stat(&format!("{head} {tail}"));
        }

        #[test]
        fn roundtrip(
            comm in proptest::collection::vec(any::<u8>(), 0..16),
            pid in 1i32..i32::MAX,
            nums in proptest::collection::vec(any::<u32>(), 49),
            state in prop::sample::select(vec!['R', 'S', 'D', 'T', 't', 'Z', 'X', 'I']),
        ) {
            let mut text = format!("{pid} (").into_bytes();
            text.extend_from_slice(&comm);
            text.extend_from_slice(format!(") {state}").as_bytes());
            for n in &nums {
                // i32 fields must stay in range: keep values below 2^31.
                text.extend_from_slice(format!(" {}", n >> 1).as_bytes());
            }
            text.push(b'\n');
            let st = parse_stat_bytes(&text).expect("parse");
            prop_assert_eq!(st.pid, pid);
            prop_assert_eq!(st.comm.as_bytes(), &comm[..]);
            prop_assert_eq!(st.exit_code as u32, nums[48] >> 1);
            prop_assert_eq!(st.start_code, u64::from(nums[22] >> 1));
            prop_assert_eq!(st.to_kernel_bytes(), text);
        }
    }
}
