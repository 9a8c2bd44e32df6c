//! Writer → reader round trips (proptest) and errors on broken images.

use criu::image::{self, magic, pb, ImageReader, ImageWriter};
use proptest::prelude::*;
use std::path::Path;

fn round_trip<M: prost::Message + Default + PartialEq + std::fmt::Debug>(mg: u32, v: &[M]) {
    let dir = tempfile::tempdir().unwrap();
    image::write_image(dir.path(), "x.img", mg, v).unwrap();
    let back: Vec<M> = image::read_image(dir.path(), "x.img", mg).unwrap();
    assert_eq!(back, v);
}

prop_compose! {
    fn gpregs()(r in prop::array::uniform16(any::<u64>()), ip in any::<u64>(), mode in 1i32..3)
        -> pb::UserX86RegsEntry {
        pb::UserX86RegsEntry {
            r15: r[0], r14: r[1], r13: r[2], r12: r[3], bp: r[4], bx: r[5], r11: r[6],
            r10: r[7], r9: r[8], r8: r[9], ax: r[10], cx: r[11], dx: r[12], si: r[13],
            di: r[14], orig_ax: r[15], ip, mode: Some(mode), ..Default::default()
        }
    }
}

prop_compose! {
    fn core()(gp in gpregs(), comm in "[a-z]{0,15}", state in 0u32..8, exit in any::<u32>(),
              sigs in any::<u64>(), st in prop::collection::vec(any::<u32>(), 0..64))
        -> pb::CoreEntry {
        pb::CoreEntry {
            mtype: 1,
            thread_info: Some(pb::ThreadInfoX86 {
                clear_tid_addr: sigs,
                gpregs: gp,
                fpregs: pb::UserX86FpregsEntry { st_space: st, ..Default::default() },
                ..Default::default()
            }),
            tc: Some(pb::TaskCoreEntry {
                task_state: state, exit_code: exit, comm, blk_sigset: sigs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

prop_compose! {
    fn vma()(start in any::<u64>(), len in any::<u64>(), prot in 0u32..8, flags in any::<u32>(),
             fd in any::<i64>(), madv in proptest::option::of(any::<u64>())) -> pb::VmaEntry {
        pb::VmaEntry { start, end: start.wrapping_add(len), prot, flags, fd, madv,
                       ..Default::default() }
    }
}

prop_compose! {
    fn mm()(vmas in prop::collection::vec(vma(), 0..8), brk in any::<u64>(),
            auxv in prop::collection::vec(any::<u64>(), 0..40), exe in proptest::option::of(any::<u32>()))
        -> pb::MmEntry {
        pb::MmEntry { mm_brk: brk, vmas, mm_saved_auxv: auxv, exe_file_id: exe.unwrap_or(0),
                      ..Default::default() }
    }
}

prop_compose! {
    fn pstree()(pid in any::<u32>(), ppid in any::<u32>(), threads in prop::collection::vec(any::<u32>(), 0..5),
                nested_pids in prop::collection::vec(any::<u32>(), 0..3), pid_for_children in any::<Option<u32>>())
        -> pb::PstreeEntry {
        let nested_tids = threads.iter().flat_map(|&t| nested_pids.iter().map(move |&n| n ^ t)).collect();
        pb::PstreeEntry { pid, ppid, pgid: pid, sid: ppid, threads, nested_pids, nested_tids, pid_for_children }
    }
}

prop_compose! {
    fn fdinfo()(id in any::<u32>(), flags in any::<u32>(), fd in any::<u32>(), ty in 1i32..20,
                selinux in proptest::option::of("[a-z_:]{0,20}")) -> pb::FdinfoEntry {
        pb::FdinfoEntry { id, flags, r#type: ty, fd, xattr_security_selinux: selinux }
    }
}

prop_compose! {
    fn file()(id in any::<u32>(), path in "/[a-z/]{0,30}", pos in any::<u64>(), flags in any::<u32>())
        -> pb::FileEntry {
        pb::FileEntry {
            r#type: 1, id,
            reg: Some(pb::RegFileEntry { id, flags, pos, name: path,
                fown: pb::FownEntry::default(), ..Default::default() }),
            ..Default::default()
        }
    }
}

prop_compose! {
    fn pagemap()(vaddr in any::<u64>(), nr in any::<u64>(), flags in 0u32..8) -> pb::PagemapEntry {
        pb::PagemapEntry { vaddr, compat_nr_pages: 0, in_parent: None, flags: Some(flags), nr_pages: Some(nr) }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test] fn core_round_trips(v in prop::collection::vec(core(), 0..3)) { round_trip(magic::CORE, &v) }
    #[test] fn mm_round_trips(v in prop::collection::vec(mm(), 0..3)) { round_trip(magic::MM, &v) }
    #[test] fn pstree_round_trips(v in prop::collection::vec(pstree(), 0..10)) { round_trip(magic::PSTREE, &v) }
    #[test] fn fdinfo_round_trips(v in prop::collection::vec(fdinfo(), 0..10)) { round_trip(magic::FDINFO, &v) }
    #[test] fn files_round_trip(v in prop::collection::vec(file(), 0..10)) { round_trip(magic::FILES, &v) }
    #[test] fn pagemap_round_trips(v in prop::collection::vec(pagemap(), 0..10)) { round_trip(magic::PAGEMAP, &v) }
    #[test] fn inventory_round_trips(img_version in any::<u32>(), lsm in proptest::option::of(0i32..3)) {
        round_trip(magic::INVENTORY, &[pb::InventoryEntry { img_version, lsmtype: lsm, ..Default::default() }])
    }

    /// Whatever the bytes after the magic, reading gives entries or an error
    /// that names the file, never a panic.
    #[test] fn garbage_never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = magic::IMG_COMMON.to_le_bytes().to_vec();
        bytes.extend_from_slice(&magic::CORE.to_le_bytes());
        bytes.extend_from_slice(&body);
        let mut r = ImageReader::from_bytes("core-1.img", bytes).unwrap();
        loop {
            match r.next::<pb::CoreEntry>() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    prop_assert!(e.to_string().contains("core-1.img"));
                    prop_assert!(e.offset().is_some());
                    break;
                }
            }
        }
    }
}

fn write_pstree(dir: &Path) -> Vec<u8> {
    let e = pb::PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1],
        ..Default::default()
    };
    let mut w = ImageWriter::create(dir, "pstree.img", magic::PSTREE).unwrap();
    w.write(&e).unwrap();
    w.write(&e).unwrap();
    w.finish().unwrap();
    std::fs::read(dir.join("pstree.img")).unwrap()
}

fn read_err(dir: &Path, bytes: &[u8]) -> image::Error {
    std::fs::write(dir.join("pstree.img"), bytes).unwrap();
    image::read_image::<pb::PstreeEntry>(dir, "pstree.img", magic::PSTREE).unwrap_err()
}

#[test]
fn truncated_entry_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_pstree(dir.path());
    let entry = 8 + 4 + good[8] as usize; // second entry starts here
    let e = read_err(dir.path(), &good[..good.len() - 1]);
    assert_eq!(e.offset(), Some(entry as u64), "{e}");
    assert!(e.to_string().contains("pstree.img"), "{e}");
    let e = read_err(dir.path(), &good[..entry + 2]);
    assert_eq!(e.offset(), Some(entry as u64), "{e}");
    assert!(e.to_string().contains("truncated"), "{e}");
}

#[test]
fn oversized_entry_is_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = write_pstree(dir.path())[..8].to_vec();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    let e = read_err(dir.path(), &bytes);
    assert_eq!(e.offset(), Some(8));
    assert!(e.to_string().contains("over the limit"), "{e}");
    // under the limit but past the end of the file
    let mut bytes = bytes[..8].to_vec();
    bytes.extend_from_slice(&1000u32.to_le_bytes());
    bytes.extend_from_slice(&[0; 10]);
    let e = read_err(dir.path(), &bytes);
    assert_eq!(e.offset(), Some(8));
    assert!(e.to_string().contains("past the end"), "{e}");
}

#[test]
fn garbled_entry_and_wrong_magic() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = write_pstree(dir.path())[..8].to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
    let e = read_err(dir.path(), &bytes);
    assert!(matches!(e, image::Error::Decode { offset: 8, .. }), "{e}");
    assert!(e.to_string().contains("pstree.img"), "{e}");

    let mut bytes = write_pstree(dir.path());
    bytes[4..8].copy_from_slice(&magic::CORE.to_le_bytes());
    let e = read_err(dir.path(), &bytes);
    assert_eq!(e.offset(), Some(4), "{e}");
    bytes[0..4].copy_from_slice(&0x1234u32.to_le_bytes());
    let e = read_err(dir.path(), &bytes);
    assert_eq!(e.offset(), Some(0), "{e}");
    let good = write_pstree(dir.path());
    let e = read_err(dir.path(), &good[..6]);
    assert!(e.to_string().contains("truncated"), "{e}");
    assert_eq!(e.offset(), Some(4), "{e}");
}

#[test]
fn read_one_wants_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    write_pstree(dir.path());
    let e =
        image::read_one::<pb::PstreeEntry>(dir.path(), "pstree.img", magic::PSTREE).unwrap_err();
    assert!(e.to_string().contains("more than one"), "{e}");
    image::write_image::<pb::PstreeEntry>(dir.path(), "pstree.img", magic::PSTREE, []).unwrap();
    let e =
        image::read_one::<pb::PstreeEntry>(dir.path(), "pstree.img", magic::PSTREE).unwrap_err();
    assert!(e.to_string().contains("no "), "{e}");
    let one = pb::PstreeEntry {
        pid: 5,
        ..Default::default()
    };
    image::write_image(dir.path(), "pstree.img", magic::PSTREE, [&one]).unwrap();
    assert_eq!(
        image::read_one::<pb::PstreeEntry>(dir.path(), "pstree.img", magic::PSTREE).unwrap(),
        one
    );
}

#[test]
fn inventory_has_no_common_magic() {
    let dir = tempfile::tempdir().unwrap();
    let inv = pb::InventoryEntry {
        img_version: 2,
        ..Default::default()
    };
    image::write_image(dir.path(), "inventory.img", magic::INVENTORY, [&inv]).unwrap();
    let b = std::fs::read(dir.path().join("inventory.img")).unwrap();
    assert_eq!(&b[..4], &magic::INVENTORY.to_le_bytes());
    let s = pb::StatsEntry::default();
    image::write_image(dir.path(), "stats-dump", magic::STATS, [&s]).unwrap();
    let b = std::fs::read(dir.path().join("stats-dump")).unwrap();
    assert_eq!(&b[..4], &magic::IMG_SERVICE.to_le_bytes());
}
