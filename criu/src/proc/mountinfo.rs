//! `/proc/PID/mountinfo`: one mount per line,
//! `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
//!
//! The kernel escapes space, tab, newline and backslash in the root, the
//! mount point, the fs type and the source as `\ooo` octal; we unescape those
//! into bytes ([`PathBuf`] / [`OsString`]). Option strings are kept raw.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::{dec, line_str, numbered_lines, os, parse_dev_dec, perr, unescape_octal, Dev};
use super::{FileKind, Result};

const K: FileKind = FileKind::Mountinfo;

/// One optional (propagation) field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionalField {
    /// `shared:N`: member of peer group N.
    Shared(u32),
    /// `master:N`: slave of peer group N.
    Master(u32),
    /// `propagate_from:N`: receives from peer group N (nearest dominant).
    PropagateFrom(u32),
    /// `unbindable`
    Unbindable,
    /// Anything else, raw.
    Other(String),
}

/// One line of `/proc/PID/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub mnt_id: i32,
    pub parent_id: i32,
    /// `st_dev` of files on this mount.
    pub dev: Dev,
    /// Root of the mount within its filesystem.
    pub root: PathBuf,
    /// Mount point relative to the reader's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`), raw.
    pub options: String,
    pub optional: Vec<OptionalField>,
    /// Filesystem type, with subtype if any (`fuse.sshfs`).
    pub fs_type: String,
    /// Mount source (`/dev/vda`, `tmpfs`, `none`; may be empty).
    pub source: OsString,
    /// Per-superblock options, raw.
    pub super_options: String,
}

impl MountInfo {
    /// Peer group this mount is shared in.
    pub fn shared(&self) -> Option<u32> {
        self.optional.iter().find_map(|o| match o {
            OptionalField::Shared(n) => Some(*n),
            _ => None,
        })
    }

    /// Peer group this mount is a slave of.
    pub fn master(&self) -> Option<u32> {
        self.optional.iter().find_map(|o| match o {
            OptionalField::Master(n) => Some(*n),
            _ => None,
        })
    }

    pub fn propagate_from(&self) -> Option<u32> {
        self.optional.iter().find_map(|o| match o {
            OptionalField::PropagateFrom(n) => Some(*n),
            _ => None,
        })
    }

    pub fn unbindable(&self) -> bool {
        self.optional.contains(&OptionalField::Unbindable)
    }

    /// The line as the kernel formats it (without newline).
    pub fn to_kernel_line(&self) -> Vec<u8> {
        let mut v = format!(
            "{} {} {}:{} ",
            self.mnt_id, self.parent_id, self.dev.major, self.dev.minor
        )
        .into_bytes();
        escape_into(&mut v, self.root.as_os_str().as_bytes());
        v.push(b' ');
        escape_into(&mut v, self.mount_point.as_os_str().as_bytes());
        v.push(b' ');
        v.extend_from_slice(self.options.as_bytes());
        for o in &self.optional {
            let s = match o {
                OptionalField::Shared(n) => format!(" shared:{n}"),
                OptionalField::Master(n) => format!(" master:{n}"),
                OptionalField::PropagateFrom(n) => format!(" propagate_from:{n}"),
                OptionalField::Unbindable => " unbindable".to_string(),
                OptionalField::Other(s) => format!(" {s}"),
            };
            v.extend_from_slice(s.as_bytes());
        }
        v.extend_from_slice(b" - ");
        escape_into(&mut v, self.fs_type.as_bytes());
        v.push(b' ');
        escape_into(&mut v, self.source.as_bytes());
        v.push(b' ');
        v.extend_from_slice(self.super_options.as_bytes());
        v
    }
}

fn escape_into(v: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            v.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            v.push(b);
        }
    }
}

fn parse_optional(s: &str) -> OptionalField {
    let num = |p: &str| s.strip_prefix(p).and_then(dec::<u32>);
    if let Some(n) = num("shared:") {
        OptionalField::Shared(n)
    } else if let Some(n) = num("master:") {
        OptionalField::Master(n)
    } else if let Some(n) = num("propagate_from:") {
        OptionalField::PropagateFrom(n)
    } else if s == "unbindable" {
        OptionalField::Unbindable
    } else {
        OptionalField::Other(s.to_string())
    }
}

fn parse_line(no: usize, line: &[u8]) -> Result<MountInfo> {
    let err = |what: &str| perr(K, no, what, line);
    let sep = line
        .windows(3)
        .position(|w| w == b" - ")
        .ok_or_else(|| err("no ' - ' separator"))?;
    let (head, tail) = (&line[..sep], &line[sep + 3..]);
    let mut hf = head.split(|&b| b == b' ');
    let mut next = |what: &str| hf.next().ok_or_else(|| err(what));
    let s = |b: &[u8]| -> Result<String> { Ok(line_str(K, no, b)?.to_string()) };
    let mnt_id = dec(&s(next("no mount id")?)?).ok_or_else(|| err("bad mount id"))?;
    let parent_id = dec(&s(next("no parent id")?)?).ok_or_else(|| err("bad parent id"))?;
    let dev = parse_dev_dec(&s(next("no device")?)?).ok_or_else(|| err("bad device"))?;
    let root = PathBuf::from(os(unescape_octal(next("no root")?)));
    let mount_point = PathBuf::from(os(unescape_octal(next("no mount point")?)));
    let options = s(next("no mount options")?)?;
    let optional = hf
        .map(|f| Ok(parse_optional(&s(f)?)))
        .collect::<Result<Vec<_>>>()?;
    let mut tf = tail.splitn(3, |&b| b == b' ');
    let fs_type = tf.next().ok_or_else(|| err("no fs type"))?;
    let fs_type =
        String::from_utf8(unescape_octal(fs_type)).map_err(|_| err("fs type not UTF-8"))?;
    let source = os(unescape_octal(tf.next().ok_or_else(|| err("no source"))?));
    let super_options = s(tf.next().ok_or_else(|| err("no super options"))?)?;
    Ok(MountInfo {
        mnt_id,
        parent_id,
        dev,
        root,
        mount_point,
        options,
        optional,
        fs_type,
        source,
        super_options,
    })
}

/// Parse `/proc/PID/mountinfo` given as text.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountInfo>> {
    parse_mountinfo_bytes(text.as_bytes())
}

/// Parse `/proc/PID/mountinfo` given as raw bytes.
pub fn parse_mountinfo_bytes(text: &[u8]) -> Result<Vec<MountInfo>> {
    numbered_lines(text)
        .map(|(no, l)| parse_line(no, l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::fixture;
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    #[test]
    fn fixtures_roundtrip_and_snapshot() {
        for (name, snap) in [
            ("mountinfo_self.txt", "mountinfo_self"),
            ("mountinfo_ns.txt", "mountinfo_ns"),
        ] {
            let text = fixture(name);
            let m = parse_mountinfo_bytes(&text).expect("parse");
            let lines: Vec<&[u8]> = text
                .strip_suffix(b"\n")
                .unwrap_or(&text)
                .split(|&b| b == b'\n')
                .collect();
            assert_eq!(m.len(), lines.len());
            for (mi, l) in m.iter().zip(lines) {
                assert_eq!(mi.to_kernel_line(), l);
            }
            insta::assert_debug_snapshot!(snap, m);
        }
    }

    #[test]
    fn propagation_and_escapes() {
        let m = parse_mountinfo_bytes(&fixture("mountinfo_ns.txt")).expect("parse");
        let sp = m
            .iter()
            .find(|x| x.mount_point == Path::new("/tmp/criu mnt"))
            .expect("mount with a space");
        assert_eq!(sp.source, "src with space");
        assert_eq!(sp.fs_type, "tmpfs");
        let peer = sp.shared().expect("shared");
        let slave = m
            .iter()
            .find(|x| x.mount_point == Path::new("/tmp/criu-slave"))
            .expect("slave");
        assert_eq!(slave.master(), Some(peer));
        assert!(slave.shared().is_some());
        let unb = m
            .iter()
            .find(|x| x.mount_point == Path::new("/tmp/criu mnt/unb"))
            .expect("unbindable");
        assert!(unb.unbindable());
        assert_eq!(unb.parent_id, sp.mnt_id);
    }

    #[test]
    fn odd_lines() {
        let m =
            parse_mountinfo("1 2 0:3 / /x rw propagate_from:4 weird - tmpfs  rw\n").expect("parse");
        assert_eq!(m[0].propagate_from(), Some(4));
        assert_eq!(m[0].optional[1], OptionalField::Other("weird".into()));
        assert_eq!(m[0].source, "");
        assert_eq!(m[0].super_options, "rw");
        for bad in [
            "1 2 0:3 / /x rw tmpfs x rw",
            "a 2 0:3 / /x rw - t s o",
            "1 2 03 / /x rw - t s o",
            "1 2 0:3 / - t s o",
            "1 2 0:3 / /x rw - t s",
        ] {
            assert!(parse_mountinfo(bad).is_err(), "{bad}");
        }
    }

    fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Kernel paths here are absolute.
        proptest::collection::vec(any::<u8>(), 0..30).prop_map(|mut v| {
            v.insert(0, b'/');
            v
        })
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_mountinfo(&s);
        }

        #[test]
        fn bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_mountinfo_bytes(&b);
        }

        #[test]
        fn roundtrip(
            mnt_id in 0i32..100000, parent_id in 0i32..100000, major in any::<u32>(), minor in any::<u32>(),
            root in arb_bytes(), mp in arb_bytes(), source in proptest::collection::vec(any::<u8>(), 0..20),
            fs_type in "[a-z0-9.]{1,10}", options in "[a-z0-9=,]{1,20}", super_options in "[a-z0-9=, ]{0,20}",
            shared in proptest::option::of(1u32..1000), master in proptest::option::of(1u32..1000), unb in any::<bool>(),
        ) {
            let mut optional = Vec::new();
            if let Some(n) = shared { optional.push(OptionalField::Shared(n)); }
            if let Some(n) = master { optional.push(OptionalField::Master(n)); }
            if unb { optional.push(OptionalField::Unbindable); }
            let m = MountInfo {
                mnt_id, parent_id, dev: Dev { major, minor },
                root: PathBuf::from(os(root)), mount_point: PathBuf::from(os(mp)),
                options, optional, fs_type, source: os(source), super_options,
            };
            let mut line = m.to_kernel_line();
            line.push(b'\n');
            prop_assert_eq!(parse_mountinfo_bytes(&line).expect("parse"), vec![m]);
        }
    }
}
