//! The page dump keeps exactly the pages that hold data: a 1 TiB
//! reservation with a few touched pages costs a few pages, pages that only
//! map the shared zero page are left out, and pages without read
//! permission still make it (through /proc/PID/mem).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use criu::image::pages::PagesReader;
use criu::sys::rusage::wait4;
use criu::sys::testing::{spawn_mem_child, MapSpec, MemChild};
use criu::sys::PAGE_SIZE;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serial_test::serial;

const CRIU: &str = env!("CARGO_BIN_EXE_criu");
const TIB: u64 = 1 << 40;

fn dump(pid: i32, dir: &Path) -> Output {
    Command::new(CRIU)
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .args(["-o", "dump.log", "-v4"])
        .output()
        .expect("run criu")
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("dump.log")).unwrap_or_default()
}

/// Kills (if still there) and reaps our child.
fn reap(c: &MemChild) {
    let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
    let _ = wait4(c.pid);
}

/// Runs of the image clipped to `[base, base + len)`, as (first page,
/// pages). (The image may merge runs of adjacent VMAs.)
fn runs_in(r: &PagesReader, base: u64, len: u64) -> Vec<(u64, u64)> {
    r.runs()
        .iter()
        .filter_map(|x| {
            let s = x.vaddr.max(base);
            let e = (x.vaddr + x.len()).min(base + len);
            (s < e).then(|| {
                assert!(x.is_present(), "run at {:#x} has no data", x.vaddr);
                ((s - base) / PAGE_SIZE, (e - s) / PAGE_SIZE)
            })
        })
        .collect()
}

/// First byte of each page of the image in `[base, base + len)`.
fn first_bytes(r: &PagesReader, base: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for x in r.runs() {
        for p in 0..x.nr_pages {
            let at = x.vaddr + p * PAGE_SIZE;
            if at >= base && at < base + len {
                let mut b = [0u8; 1];
                r.read_at(x.offset + p * PAGE_SIZE, &mut b).unwrap();
                out.push(b[0]);
            }
        }
    }
    out
}

fn dump_child(c: &MemChild, dir: &Path) -> (PagesReader, Duration) {
    let t = Instant::now();
    let o = dump(c.pid, dir);
    let took = t.elapsed();
    if !o.status.success() {
        reap(c);
        panic!(
            "dump failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            log(dir)
        );
    }
    reap(c);
    (PagesReader::open(dir, c.pid as u32).unwrap(), took)
}

#[test]
#[serial]
fn a_tib_reservation_with_a_few_touched_pages_costs_those_pages() {
    let last = TIB / PAGE_SIZE - 1;
    let c = spawn_mem_child(&[
        // PROT_NONE reservation; a few pages opened up and written, one of
        // them closed again (read through /proc/PID/mem).
        MapSpec {
            len: TIB,
            prot: libc::PROT_NONE,
            written: vec![0, 1, 262_144, 134_217_728, last],
            read: vec![],
            hidden: vec![1],
            shared: false,
        },
        // One read-write VMA of 1 TiB, three pages written.
        MapSpec {
            len: TIB,
            prot: libc::PROT_READ | libc::PROT_WRITE,
            written: vec![7, 100_000_000, last],
            read: vec![],
            hidden: vec![],
            shared: false,
        },
    ])
    .expect("spawn the sparse child");
    let tmp = tempfile::tempdir().unwrap();
    let (r, took) = dump_child(&c, tmp.path());

    assert_eq!(
        runs_in(&r, c.bases[0], TIB),
        [(0, 2), (262_144, 1), (134_217_728, 1), (last, 1)]
    );
    assert_eq!(
        first_bytes(&r, c.bases[0], TIB),
        [1, 2, 1, 1, (last as u8).wrapping_add(1)]
    );
    assert_eq!(
        runs_in(&r, c.bases[1], TIB),
        [(7, 1), (100_000_000, 1), (last, 1)]
    );
    assert_eq!(
        first_bytes(&r, c.bases[1], TIB),
        [
            8,
            (100_000_000u64 as u8).wrapping_add(1),
            (last as u8).wrapping_add(1)
        ]
    );
    // Walking 2 TiB page by page would take far longer than this.
    assert!(took < Duration::from_secs(10), "dump took {took:?}");
    // Only the touched pages of those 2 TiB are in the pages file.
    let size = std::fs::metadata(tmp.path().join(format!("pages-{}.img", r.pages_id())))
        .unwrap()
        .len();
    let all: u64 = r.runs().iter().map(|x| x.len()).sum();
    assert_eq!(size, all);
    assert!(size < 64 << 20, "pages file is {size} bytes");
}

#[test]
#[serial]
fn pages_that_map_the_zero_page_are_left_out() {
    let c = spawn_mem_child(&[MapSpec {
        len: 512 * PAGE_SIZE,
        prot: libc::PROT_READ | libc::PROT_WRITE,
        written: vec![5, 6, 300],
        read: (0..256).chain(400..512).collect(),
        hidden: vec![],
        shared: false,
    }])
    .expect("spawn the zero-page child");
    // The child did map the zero page in those 368 pages.
    let pm = std::fs::File::open(format!("/proc/{}/pagemap", c.pid)).unwrap();
    let mut e = [0u8; 8];
    pm.read_exact_at(&mut e, (c.bases[0] / PAGE_SIZE + 100) * 8)
        .unwrap();
    assert_ne!(u64::from_le_bytes(e) & (1 << 63), 0, "page 100 not present");
    drop(pm);

    let tmp = tempfile::tempdir().unwrap();
    let (r, _) = dump_child(&c, tmp.path());
    assert_eq!(runs_in(&r, c.bases[0], 512 * PAGE_SIZE), [(5, 2), (300, 1)]);
    assert_eq!(
        first_bytes(&r, c.bases[0], 512 * PAGE_SIZE),
        [6, 7, (300u64 as u8).wrapping_add(1)]
    );
}
