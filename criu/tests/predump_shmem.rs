//! End to end: shared anonymous memory through `criu pre-dump` and
//! `criu dump --prev-images-dir --track-mem`: the dump writes only the
//! pages changed since the pre-dump and leaves the rest to it, and the
//! restore brings every page back from both image sets.
//!
//! The test process is made a child subreaper so that the restored task
//! (whose parent, criu, exits) becomes its child and is reaped here.

use std::io::IoSlice;
use std::path::Path;

use criu::sys::testing::{spawn_mem_child, MapSpec};
use criu::sys::PAGE_SIZE;
use nix::sys::uio::{process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;
use serial_test::serial;

mod support;
use support::*;

/// Pages of the shared area, every one written by the child.
const PAGES: u64 = 4096;
/// Pages rewritten between the pre-dump and the dump.
const TOUCHED: [u64; 3] = [0, 1000, PAGES - 1];

/// `stats-dump`'s shared memory counters: (written, left to the parent).
fn shmem_stats(dir: &Path) -> (u64, u64) {
    let d = dump_stats(dir);
    (
        d.shpages_written.unwrap_or(0),
        d.shpages_skipped_parent.unwrap_or(0),
    )
}

/// First byte of each page of the one shared memory object of the images
/// in `dir`, read as restore reads it (parent images followed).
fn first_bytes_in_images(dir: &Path) -> Vec<u8> {
    let name = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("pagemap-shmem-"))
        .expect("a shared memory pagemap");
    let r = criu::image::pages::PagesReader::open_named(dir, &name).expect("open the pagemap");
    let mut out = vec![0u8; PAGES as usize];
    for piece in r.pieces().expect("pieces") {
        let mut data = vec![0u8; piece.len as usize];
        piece
            .src
            .read_at(piece.offset, &mut data)
            .expect("read pages");
        for (i, page) in data.chunks(PAGE_SIZE as usize).enumerate() {
            out[(piece.vaddr / PAGE_SIZE) as usize + i] = page[0];
        }
    }
    out
}

fn expected() -> Vec<u8> {
    (0..PAGES)
        .map(|p| {
            if TOUCHED.contains(&p) {
                0xee
            } else {
                (p as u8).wrapping_add(1)
            }
        })
        .collect()
}

#[test]
#[serial]
fn shared_memory_pages_unchanged_since_the_pre_dump_are_left_to_it() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    const ATTEMPTS: u32 = 3;
    for attempt in 1..=ATTEMPTS {
        let c = spawn_mem_child(&[MapSpec {
            len: PAGES * PAGE_SIZE,
            prot: libc::PROT_READ | libc::PROT_WRITE,
            written: (0..PAGES).collect(),
            read: vec![],
            hidden: vec![],
            shared: true,
        }])
        .expect("spawn the child");
        let (pid, base) = (c.pid, c.bases[0]);
        let tmp = tempfile::tempdir().unwrap();

        let pre = tmp.path().join("pre");
        criu_on_ok("pre-dump", pid, &pre, &[]);
        let (pre_written, _) = shmem_stats(&pre);
        assert_eq!(pre_written, PAGES, "the pre-dump writes the whole area");
        let track: Vec<criu::image::pb::MmTrackEntry> = criu::image::read_image(
            &pre,
            &format!("uffd-track-{pid}.img"),
            criu::image::magic::MM_TRACK,
        )
        .expect("uffd-track image");
        let tracked = track.first().is_some_and(|t| {
            t.uffd >= 0 && t.vmas.iter().any(|v| v.start == base && v.shmid.is_some())
        });

        // Change a few pages through the child's own mapping.
        let page = vec![0xeeu8; PAGE_SIZE as usize];
        for p in TOUCHED {
            let n = process_vm_writev(
                Pid::from_raw(pid),
                &[IoSlice::new(&page)],
                &[RemoteIoVec {
                    base: (base + p * PAGE_SIZE) as usize,
                    len: page.len(),
                }],
            )
            .expect("process_vm_writev");
            assert_eq!(n, page.len());
        }

        let img = tmp.path().join("img");
        criu_on_ok(
            "dump",
            pid,
            &img,
            &["--prev-images-dir", "../pre", "--track-mem"],
        );
        finish(pid);
        let (written, parent) = shmem_stats(&img);
        eprintln!("shared memory: {written} pages written, {parent} left to the parent");
        // The dump stores an object whole when it cannot trust the
        // tracking of every mapping of it (correct, only not incremental);
        // on a loaded machine that happened about once in ten runs, so a
        // fallback is retried with a fresh child, and every attempt still
        // checks the images and the restore below.
        if tracked && written == PAGES && attempt < ATTEMPTS {
            let log = std::fs::read_to_string(img.join("dump.log")).unwrap_or_default();
            let why: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("shared memory"))
                .collect();
            eprintln!("attempt {attempt}: stored whole: {why:?}");
        } else if tracked {
            assert_eq!(
                written,
                TOUCHED.len() as u64,
                "only the changed pages are written"
            );
            assert_eq!(parent, PAGES - TOUCHED.len() as u64);
        } else {
            eprintln!("write tracking could not be armed: full dump checked only");
            assert_eq!(written, PAGES);
        }

        // Every page, from the dump or the pre-dump, as restore reads them.
        assert_eq!(first_bytes_in_images(&img), expected(), "the images differ");
        // And the restore takes them (the child then dies with its parent,
        // criu, by its PR_SET_PDEATHSIG: the zdtm test memory/predump_shmem
        // checks a running restored tree).
        let (o, _) = support::restore_detached(&img, &[]);
        assert_criu_ok(&o, &img, "restore", "restore.log");
        finish(pid);
        if !(tracked && written == PAGES) {
            return;
        }
    }
}
