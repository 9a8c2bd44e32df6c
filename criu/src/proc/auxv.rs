//! `/proc/PID/auxv`: the ELF auxiliary vector, pairs of native-endian `u64`
//! (key, value) for a 64-bit task, ended by an `AT_NULL` pair.

use std::fmt;

use super::{perr, FileKind, Result};

pub const AT_NULL: u64 = 0;
pub const AT_IGNORE: u64 = 1;
pub const AT_EXECFD: u64 = 2;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_NOTELF: u64 = 10;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_BASE_PLATFORM: u64 = 24;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_RSEQ_FEATURE_SIZE: u64 = 27;
pub const AT_RSEQ_ALIGN: u64 = 28;
pub const AT_HWCAP3: u64 = 29;
pub const AT_HWCAP4: u64 = 30;
pub const AT_EXECFN: u64 = 31;
pub const AT_SYSINFO_EHDR: u64 = 33;
pub const AT_MINSIGSTKSZ: u64 = 51;

/// One (key, value) pair.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuxvEntry {
    pub key: u64,
    pub value: u64,
}

impl AuxvEntry {
    /// The `AT_*` name of the key, if known.
    pub fn name(&self) -> Option<&'static str> {
        Some(match self.key {
            AT_NULL => "AT_NULL",
            AT_IGNORE => "AT_IGNORE",
            AT_EXECFD => "AT_EXECFD",
            AT_PHDR => "AT_PHDR",
            AT_PHENT => "AT_PHENT",
            AT_PHNUM => "AT_PHNUM",
            AT_PAGESZ => "AT_PAGESZ",
            AT_BASE => "AT_BASE",
            AT_FLAGS => "AT_FLAGS",
            AT_ENTRY => "AT_ENTRY",
            AT_NOTELF => "AT_NOTELF",
            AT_UID => "AT_UID",
            AT_EUID => "AT_EUID",
            AT_GID => "AT_GID",
            AT_EGID => "AT_EGID",
            AT_PLATFORM => "AT_PLATFORM",
            AT_HWCAP => "AT_HWCAP",
            AT_CLKTCK => "AT_CLKTCK",
            AT_SECURE => "AT_SECURE",
            AT_BASE_PLATFORM => "AT_BASE_PLATFORM",
            AT_RANDOM => "AT_RANDOM",
            AT_HWCAP2 => "AT_HWCAP2",
            AT_RSEQ_FEATURE_SIZE => "AT_RSEQ_FEATURE_SIZE",
            AT_RSEQ_ALIGN => "AT_RSEQ_ALIGN",
            AT_HWCAP3 => "AT_HWCAP3",
            AT_HWCAP4 => "AT_HWCAP4",
            AT_EXECFN => "AT_EXECFN",
            AT_SYSINFO_EHDR => "AT_SYSINFO_EHDR",
            AT_MINSIGSTKSZ => "AT_MINSIGSTKSZ",
            _ => return None,
        })
    }
}

impl fmt::Debug for AuxvEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} = {:#x}", self.value),
            None => write!(f, "{} = {:#x}", self.key, self.value),
        }
    }
}

/// The auxiliary vector, without the terminating `AT_NULL`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auxv {
    pub entries: Vec<AuxvEntry>,
}

impl Auxv {
    /// Value of the first entry with this key.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.value)
    }

    /// Raw bytes as the kernel gives them, `AT_NULL` pair included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity((self.entries.len() + 1) * 16);
        for e in self.entries.iter().chain(std::iter::once(&AuxvEntry {
            key: AT_NULL,
            value: 0,
        })) {
            v.extend_from_slice(&e.key.to_ne_bytes());
            v.extend_from_slice(&e.value.to_ne_bytes());
        }
        v
    }
}

/// Parse the bytes of `/proc/PID/auxv` (64-bit task). Stops at `AT_NULL`;
/// a length that is not a whole number of pairs is an error.
pub fn parse_auxv(data: &[u8]) -> Result<Auxv> {
    let mut entries = Vec::new();
    for (i, pair) in data.chunks(16).enumerate() {
        let (k, v) = match (pair.get(..8), pair.get(8..16)) {
            (Some(k), Some(v)) => (k, v),
            _ => {
                return Err(perr(
                    FileKind::Auxv,
                    i + 1,
                    format!("truncated pair at byte offset {}", i * 16),
                    pair,
                ))
            }
        };
        let word = |b: &[u8]| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_ne_bytes(a)
        };
        let e = AuxvEntry {
            key: word(k),
            value: word(v),
        };
        if e.key == AT_NULL {
            return Ok(Auxv { entries });
        }
        entries.push(e);
    }
    // The kernel always ends with AT_NULL; accept its absence (a short read).
    Ok(Auxv { entries })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fixture;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixture_python() {
        let data = fixture("auxv_python.bin");
        let a = parse_auxv(&data).expect("parse");
        assert_eq!(a.get(AT_PAGESZ), Some(4096));
        assert_eq!(a.get(AT_UID), Some(0));
        assert!(a.get(AT_SYSINFO_EHDR).is_some());
        assert!(a.get(AT_ENTRY).is_some());
        assert_eq!(a.to_bytes(), data);
        insta::assert_debug_snapshot!("auxv_python", a);
    }

    #[test]
    fn errors() {
        let e = parse_auxv(&[1, 2, 3]).unwrap_err();
        assert!(e.to_string().contains("auxv"), "{e}");
        assert_eq!(parse_auxv(&[]).expect("empty").entries.len(), 0);
    }

    proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_auxv(&b);
        }

        #[test]
        fn roundtrip(pairs in proptest::collection::vec((1u64.., any::<u64>()), 0..30)) {
            let a = Auxv { entries: pairs.iter().map(|&(key, value)| AuxvEntry { key, value }).collect() };
            prop_assert_eq!(parse_auxv(&a.to_bytes()).expect("parse"), a);
        }
    }
}
