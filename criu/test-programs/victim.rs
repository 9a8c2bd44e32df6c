//! A process for criu's integration tests to dump and restore.
//!
//! `victim loop FILE`: counts forever, writing `COUNT PID` (fixed width) to
//! FILE.
//! `victim pattern MIB FILE`: fills MIB MiB of heap with a pseudo-random
//! pattern, writes `ready PID` to FILE, then on each SIGUSR1 checks the
//! pattern and writes `ok N` or `bad OFFSET` to FILE.
//! `victim touch MIB FILE`: like `pattern`, and each SIGUSR2 inverts every
//! 256th page and writes `touched N` to FILE (N: how many times); the check
//! expects those pages inverted when N is odd.
//! `victim unsupported FILE`: like `loop`, holding a netlink socket (which
//! criu-rs cannot dump yet).
//! Stdio goes to /dev/null and other inherited fds are closed, so that only
//! what the mode sets up is in the fd table. The victim leads its own session
//! unless `VICTIM_SHELL_JOB` is set (then it is a job of its parent's
//! session, to be dumped with --shell-job).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

fn fill(buf: &mut [u8]) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in buf.chunks_mut(8) {
        x = xorshift(x);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

fn first_bad(buf: &[u8]) -> Option<usize> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, chunk) in buf.chunks(8).enumerate() {
        x = xorshift(x);
        if chunk != &x.to_le_bytes()[..chunk.len()] {
            return Some(i * 8);
        }
    }
    None
}

/// Rewrites the report. Counter lines are fixed width and overwrite in
/// place (the size never changes under a dump); other lines replace it.
fn report(f: &mut File, line: &str) {
    if f.metadata().map(|m| m.len()).unwrap_or(0) != line.len() as u64 {
        let _ = f.set_len(0);
    }
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.write_all(line.as_bytes());
    let _ = f.flush();
}

fn count_forever(out: &mut File) -> ! {
    let pid = std::process::id();
    let mut n: u64 = 0;
    loop {
        n += 1;
        // Fixed width: the file keeps its size, as restore checks it.
        report(out, &format!("{n:020} {pid:010}\n"));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Closes every fd above stderr that the victim inherited.
fn close_inherited_fds() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        let _ = nix::unistd::close(fd);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    close_inherited_fds();
    // A daemon of its own session, like a zdtm test, unless the test wants
    // a job of its shell (for --shell-job).
    if std::env::var_os("VICTIM_SHELL_JOB").is_none() {
        let _ = nix::unistd::setsid();
    }
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    match mode {
        "loop" => {
            let mut out = File::create(&args[2]).expect("output file");
            count_forever(&mut out);
        }
        "unsupported" => {
            // A netlink socket: something criu-rs cannot dump (yet).
            use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};
            let _nl = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::empty(),
                SockProtocol::NetlinkRoute,
            )
            .expect("netlink socket");
            let mut out = File::create(&args[2]).expect("output file");
            count_forever(&mut out);
        }
        "pattern" => {
            let mib: usize = args[2].parse().expect("size in MiB");
            let mut out = File::create(&args[3]).expect("output file");
            let mut mem = vec![0u8; mib << 20];
            fill(&mut mem);
            let mut set = SigSet::empty();
            set.add(Signal::SIGUSR1);
            set.thread_block().expect("block SIGUSR1");
            report(&mut out, &format!("ready {}\n", std::process::id()));
            let mut checks = 0;
            loop {
                let _ = set.wait();
                checks += 1;
                match first_bad(&mem) {
                    None => report(&mut out, &format!("ok {checks}\n")),
                    Some(off) => report(&mut out, &format!("bad {off}\n")),
                }
            }
        }
        "touch" => {
            let mib: usize = args[2].parse().expect("size in MiB");
            let mut out = File::create(&args[3]).expect("output file");
            let mut mem = vec![0u8; mib << 20];
            fill(&mut mem);
            let mut set = SigSet::empty();
            set.add(Signal::SIGUSR1);
            set.add(Signal::SIGUSR2);
            set.thread_block().expect("block SIGUSR1 and SIGUSR2");
            report(&mut out, &format!("ready {}\n", std::process::id()));
            let (mut checks, mut flips) = (0, 0u32);
            let touched = |i: usize| i % 256 == 0;
            loop {
                match set.wait() {
                    Ok(Signal::SIGUSR2) => {
                        for (i, page) in mem.chunks_mut(4096).enumerate() {
                            if touched(i) {
                                page.iter_mut().for_each(|b| *b = !*b);
                            }
                        }
                        flips += 1;
                        report(&mut out, &format!("touched {flips}\n"));
                    }
                    _ => {
                        checks += 1;
                        let mut copy = mem.clone();
                        if flips % 2 == 1 {
                            for (i, page) in copy.chunks_mut(4096).enumerate() {
                                if touched(i) {
                                    page.iter_mut().for_each(|b| *b = !*b);
                                }
                            }
                        }
                        match first_bad(&copy) {
                            None => report(&mut out, &format!("ok {checks}\n")),
                            Some(off) => report(&mut out, &format!("bad {off}\n")),
                        }
                    }
                }
            }
        }
        _ => {
            eprintln!(
                "usage: victim loop FILE | unsupported FILE | pattern MIB FILE | touch MIB FILE"
            );
            std::process::exit(2);
        }
    }
}
