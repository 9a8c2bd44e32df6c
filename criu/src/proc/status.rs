//! `/proc/PID/status` (and `/proc/PID/task/TID/status`).
//!
//! `Key:\tvalue` lines. `Name:` is the task's comm with `\` and newline
//! escaped as `\\` and `\n` (other bytes, tabs and spaces included, raw).
//! Memory sizes are in kB (fields named `*_kb`). Fields a kernel may omit
//! (zombies have no `Umask:` nor `Vm*:`; old kernels lack newer keys) are
//! `Option`s. Keys this parser does not know are kept in [`Status::other`].

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::ops::RangeInclusive;

use super::{dec, hex_u64, line_str, numbered_lines, os, perr, FileKind, ProcState, Result};

const K: FileKind = FileKind::Status;

/// Four ids: real, effective, saved set, filesystem (`Uid:` / `Gid:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
    pub fs: u32,
}

/// `SigQ:` queued signals / RLIMIT_SIGPENDING of the real uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SigQ {
    pub queued: u64,
    pub limit: u64,
}

/// Parsed `/proc/PID/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `Name:` unescaped (bytes, at most 15 of them).
    pub name: OsString,
    /// `Umask:` (octal in the file); absent for zombies and old kernels.
    pub umask: Option<u32>,
    /// `State:` letter.
    pub state: Option<ProcState>,
    pub tgid: i32,
    pub ngid: Option<i32>,
    pub pid: i32,
    pub ppid: i32,
    pub tracer_pid: i32,
    pub uid: Ids,
    pub gid: Ids,
    pub fd_size: Option<u64>,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Ids in each pid namespace, outermost first.
    pub ns_tgid: Vec<i32>,
    pub ns_pid: Vec<i32>,
    pub ns_pgid: Vec<i32>,
    pub ns_sid: Vec<i32>,
    /// `Kthread:` (6.x).
    pub kthread: Option<bool>,
    pub vm_peak_kb: Option<u64>,
    pub vm_size_kb: Option<u64>,
    pub vm_lck_kb: Option<u64>,
    pub vm_pin_kb: Option<u64>,
    pub vm_hwm_kb: Option<u64>,
    pub vm_rss_kb: Option<u64>,
    pub rss_anon_kb: Option<u64>,
    pub rss_file_kb: Option<u64>,
    pub rss_shmem_kb: Option<u64>,
    pub vm_data_kb: Option<u64>,
    pub vm_stk_kb: Option<u64>,
    pub vm_exe_kb: Option<u64>,
    pub vm_lib_kb: Option<u64>,
    pub vm_pte_kb: Option<u64>,
    pub vm_swap_kb: Option<u64>,
    pub hugetlb_pages_kb: Option<u64>,
    pub core_dumping: Option<bool>,
    pub thp_enabled: Option<bool>,
    /// `untag_mask:` (hex).
    pub untag_mask: Option<u64>,
    pub threads: Option<u64>,
    pub sig_q: Option<SigQ>,
    /// Pending for this thread.
    pub sig_pnd: u64,
    /// Pending for the whole thread group.
    pub shd_pnd: u64,
    pub sig_blk: u64,
    pub sig_ign: u64,
    pub sig_cgt: u64,
    pub cap_inh: u64,
    pub cap_prm: u64,
    pub cap_eff: u64,
    pub cap_bnd: Option<u64>,
    pub cap_amb: Option<u64>,
    pub no_new_privs: Option<bool>,
    /// Seccomp mode: 0 disabled, 1 strict, 2 filter.
    pub seccomp: Option<u32>,
    pub seccomp_filters: Option<u32>,
    pub speculation_store_bypass: Option<String>,
    pub speculation_indirect_branch: Option<String>,
    /// `Cpus_allowed:` raw hex mask (comma-separated 32-bit words).
    pub cpus_allowed: Option<String>,
    pub cpus_allowed_list: Option<Vec<RangeInclusive<u32>>>,
    /// `Mems_allowed:` raw hex mask.
    pub mems_allowed: Option<String>,
    pub mems_allowed_list: Option<Vec<RangeInclusive<u32>>>,
    pub voluntary_ctxt_switches: Option<u64>,
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// Keys not known to this parser, with their value (trimmed).
    pub other: BTreeMap<String, String>,
}

/// Parse a kernel cpu/node list such as `0-3,8,10-11` (empty → empty list).
pub fn parse_cpu_list(s: &str) -> Option<Vec<RangeInclusive<u32>>> {
    let s = s.trim();
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (dec::<u32>(a)?, dec::<u32>(b)?);
                (a <= b).then_some(a..=b)
            }
            None => {
                let a = dec::<u32>(part)?;
                Some(a..=a)
            }
        })
        .collect()
}

/// Undo the escaping of `Name:`: `\\` → `\`, `\n` → newline (also the other
/// C escapes older kernels used); unknown escapes are kept.
fn unescape_name(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let c = match s[i + 1] {
                b'\\' => Some(b'\\'),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                b'f' => Some(0x0c),
                b'v' => Some(0x0b),
                b'a' => Some(0x07),
                b'e' => Some(0x1b),
                b'"' => Some(b'"'),
                _ => None,
            };
            if let Some(c) = c {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Parse `/proc/PID/status` given as text.
pub fn parse_status(text: &str) -> Result<Status> {
    parse_status_bytes(text.as_bytes())
}

/// Parse `/proc/PID/status` given as raw bytes (the name need not be UTF-8).
pub fn parse_status_bytes(text: &[u8]) -> Result<Status> {
    let mut st = Status::default();
    let (mut seen_name, mut seen_pid, mut seen_tgid, mut seen_ppid) = (false, false, false, false);
    let (mut seen_uid, mut seen_gid) = (false, false);
    for (no, line) in numbered_lines(text) {
        if let Some(n) = line.strip_prefix(b"Name:") {
            let n = n.strip_prefix(b"\t").unwrap_or(n);
            st.name = os(unescape_name(n));
            seen_name = true;
            continue;
        }
        let l = line_str(K, no, line)?;
        let err = |what: &str| perr(K, no, what, line);
        let (key, val) = l.split_once(':').ok_or_else(|| err("no ':'"))?;
        let val = val.trim();
        let num_i32 = || dec::<i32>(val).ok_or_else(|| err("bad number"));
        let num_u64 = || dec::<u64>(val).ok_or_else(|| err("bad number"));
        let num_u32 = || dec::<u32>(val).ok_or_else(|| err("bad number"));
        let hex = || hex_u64(val).ok_or_else(|| err("bad hex mask"));
        let flag = || match val {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(err("expected 0 or 1")),
        };
        let kb = || -> Result<Option<u64>> {
            let n = val
                .strip_suffix("kB")
                .ok_or_else(|| err("size without kB"))?
                .trim();
            Ok(Some(dec(n).ok_or_else(|| err("bad size"))?))
        };
        let list = || -> Result<Vec<i32>> {
            val.split_ascii_whitespace()
                .map(|x| dec(x).ok_or_else(|| err("bad id list")))
                .collect()
        };
        let ids = || -> Result<Ids> {
            let v: Vec<u32> = val
                .split_ascii_whitespace()
                .map(|x| dec(x).ok_or_else(|| err("bad id")))
                .collect::<Result<_>>()?;
            match v[..] {
                [real, effective, saved, fs] => Ok(Ids {
                    real,
                    effective,
                    saved,
                    fs,
                }),
                _ => Err(err("expected four ids")),
            }
        };
        match key {
            "Umask" => st.umask = Some(u32::from_str_radix(val, 8).map_err(|_| err("bad umask"))?),
            "State" => {
                let mut cs = val.chars();
                let c = cs.next().ok_or_else(|| err("empty state"))?;
                st.state = Some(ProcState::from_char(c));
            }
            "Tgid" => {
                st.tgid = num_i32()?;
                seen_tgid = true;
            }
            "Ngid" => st.ngid = Some(num_i32()?),
            "Pid" => {
                st.pid = num_i32()?;
                seen_pid = true;
            }
            "PPid" => {
                st.ppid = num_i32()?;
                seen_ppid = true;
            }
            "TracerPid" => st.tracer_pid = num_i32()?,
            "Uid" => {
                st.uid = ids()?;
                seen_uid = true;
            }
            "Gid" => {
                st.gid = ids()?;
                seen_gid = true;
            }
            "FDSize" => st.fd_size = Some(num_u64()?),
            "Groups" => {
                st.groups = val
                    .split_ascii_whitespace()
                    .map(|x| dec(x).ok_or_else(|| err("bad group")))
                    .collect::<Result<_>>()?
            }
            "NStgid" => st.ns_tgid = list()?,
            "NSpid" => st.ns_pid = list()?,
            "NSpgid" => st.ns_pgid = list()?,
            "NSsid" => st.ns_sid = list()?,
            "Kthread" => st.kthread = Some(flag()?),
            "VmPeak" => st.vm_peak_kb = kb()?,
            "VmSize" => st.vm_size_kb = kb()?,
            "VmLck" => st.vm_lck_kb = kb()?,
            "VmPin" => st.vm_pin_kb = kb()?,
            "VmHWM" => st.vm_hwm_kb = kb()?,
            "VmRSS" => st.vm_rss_kb = kb()?,
            "RssAnon" => st.rss_anon_kb = kb()?,
            "RssFile" => st.rss_file_kb = kb()?,
            "RssShmem" => st.rss_shmem_kb = kb()?,
            "VmData" => st.vm_data_kb = kb()?,
            "VmStk" => st.vm_stk_kb = kb()?,
            "VmExe" => st.vm_exe_kb = kb()?,
            "VmLib" => st.vm_lib_kb = kb()?,
            "VmPTE" => st.vm_pte_kb = kb()?,
            "VmSwap" => st.vm_swap_kb = kb()?,
            "HugetlbPages" => st.hugetlb_pages_kb = kb()?,
            "CoreDumping" => st.core_dumping = Some(flag()?),
            "THP_enabled" => st.thp_enabled = Some(flag()?),
            "untag_mask" => {
                let h = val.strip_prefix("0x").ok_or_else(|| err("expected 0x"))?;
                st.untag_mask = Some(hex_u64(h).ok_or_else(|| err("bad untag_mask"))?)
            }
            "Threads" => st.threads = Some(num_u64()?),
            "SigQ" => {
                let (q, l) = val.split_once('/').ok_or_else(|| err("no '/' in SigQ"))?;
                st.sig_q = Some(SigQ {
                    queued: dec(q).ok_or_else(|| err("bad SigQ"))?,
                    limit: dec(l).ok_or_else(|| err("bad SigQ"))?,
                })
            }
            "SigPnd" => st.sig_pnd = hex()?,
            "ShdPnd" => st.shd_pnd = hex()?,
            "SigBlk" => st.sig_blk = hex()?,
            "SigIgn" => st.sig_ign = hex()?,
            "SigCgt" => st.sig_cgt = hex()?,
            "CapInh" => st.cap_inh = hex()?,
            "CapPrm" => st.cap_prm = hex()?,
            "CapEff" => st.cap_eff = hex()?,
            "CapBnd" => st.cap_bnd = Some(hex()?),
            "CapAmb" => st.cap_amb = Some(hex()?),
            "NoNewPrivs" => st.no_new_privs = Some(flag()?),
            "Seccomp" => st.seccomp = Some(num_u32()?),
            "Seccomp_filters" => st.seccomp_filters = Some(num_u32()?),
            "Speculation_Store_Bypass" => st.speculation_store_bypass = Some(val.to_string()),
            "SpeculationIndirectBranch" => st.speculation_indirect_branch = Some(val.to_string()),
            "Cpus_allowed" => st.cpus_allowed = Some(val.to_string()),
            "Cpus_allowed_list" => {
                st.cpus_allowed_list = Some(parse_cpu_list(val).ok_or_else(|| err("bad list"))?)
            }
            "Mems_allowed" => st.mems_allowed = Some(val.to_string()),
            "Mems_allowed_list" => {
                st.mems_allowed_list = Some(parse_cpu_list(val).ok_or_else(|| err("bad list"))?)
            }
            "voluntary_ctxt_switches" => st.voluntary_ctxt_switches = Some(num_u64()?),
            "nonvoluntary_ctxt_switches" => st.nonvoluntary_ctxt_switches = Some(num_u64()?),
            _ => {
                st.other.insert(key.to_string(), val.to_string());
            }
        }
    }
    let missing = [
        (seen_name, "Name"),
        (seen_pid, "Pid"),
        (seen_tgid, "Tgid"),
        (seen_ppid, "PPid"),
        (seen_uid, "Uid"),
        (seen_gid, "Gid"),
    ]
    .iter()
    .find(|(seen, _)| !seen)
    .map(|(_, k)| *k);
    if let Some(k) = missing {
        let lines = numbered_lines(text).count();
        return Err(perr(K, lines, format!("no {k}: line"), b""));
    }
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fixture;
    use super::*;
    use proptest::prelude::*;

    fn fx(name: &str) -> Status {
        parse_status_bytes(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn fixtures() {
        for (name, snap) in [
            ("status_python.txt", "status_python"),
            ("status_thread.txt", "status_thread"),
            ("status_space.txt", "status_space"),
            ("status_paren.txt", "status_paren"),
            ("status_stopped.txt", "status_stopped"),
            ("status_zombie.txt", "status_zombie"),
        ] {
            insta::assert_debug_snapshot!(snap, fx(name));
        }
    }

    #[test]
    fn names_and_states() {
        assert_eq!(fx("status_space.txt").name, "a b");
        assert_eq!(fx("status_paren.txt").name, "x) (y");
        assert_eq!(fx("status_thread.txt").name, "t\\1\n2\t) (x");
        let th = fx("status_thread.txt");
        assert_ne!(th.pid, th.tgid);
        assert_eq!(th.ns_pid, vec![th.pid]);
        assert_eq!(fx("status_stopped.txt").state, Some(ProcState::Stopped));
        let z = fx("status_zombie.txt");
        assert_eq!(z.state, Some(ProcState::Zombie));
        assert_eq!(z.umask, None);
        assert_eq!(z.vm_rss_kb, None);
        assert_eq!(z.shd_pnd, 1 << 8); // SIGKILL pending
        let p = fx("status_python.txt");
        assert_eq!(p.umask, Some(0o22));
        assert_eq!(p.cap_eff, 0x1fffeffffff);
        assert_eq!(p.untag_mask, Some(u64::MAX));
        assert_eq!(p.cpus_allowed_list, Some(vec![0..=1]));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0..=3, 8..=8, 10..=11])
        );
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("a"), None);
    }

    #[test]
    fn errors() {
        assert!(parse_status("Name:\tx\nPid: q\n").is_err());
        assert!(parse_status("Name:\tx\n").is_err());
        assert!(parse_status("Name:\tx\nUid:\t1 2 3\n").is_err());
        let e = parse_status("garbage line\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_status(&s);
        }

        #[test]
        fn keyed_garbage_never_panics(k in "[A-Za-z_]{1,12}", v in "[ -~\t]{0,30}") {
            let _ = parse_status(&format!("Name:\tx\n{k}:\t{v}\n"));
        }

        #[test]
        fn name_roundtrip(name in proptest::collection::vec(1u8..=255, 0..16), pid in 1i32..i32::MAX) {
            // Escape as the kernel does: only '\' and '\n'.
            let mut esc = Vec::new();
            for &b in &name {
                match b {
                    b'\\' => esc.extend_from_slice(b"\\\\"),
                    b'\n' => esc.extend_from_slice(b"\\n"),
                    b => esc.push(b),
                }
            }
            let mut text = b"Name:\t".to_vec();
            text.extend_from_slice(&esc);
            text.extend_from_slice(
                format!("\nTgid:\t{pid}\nPid:\t{pid}\nPPid:\t1\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\n")
                    .as_bytes(),
            );
            let st = parse_status_bytes(&text).expect("parse");
            prop_assert_eq!(st.name, os(name));
            prop_assert_eq!(st.pid, pid);
            prop_assert_eq!(st.uid, Ids { real: 0, effective: 1, saved: 2, fs: 3 });
        }
    }
}
