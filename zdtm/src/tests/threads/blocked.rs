use crate::prelude::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const DESC: Desc = Desc {
    name: "threads/blocked",
    family: "threads",
    description: "threads blocked in futex wait, nanosleep, read of an empty pipe, poll, and one inside a signal handler resume correctly",
    ..Desc::DEFAULT
};

static IN_HANDLER: AtomicU32 = AtomicU32::new(0);
static HANDLER_GO: AtomicU32 = AtomicU32::new(0);
static HANDLER_DONE: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    IN_HANDLER.store(1, Ordering::SeqCst);
    // stays in the handler until told; futex wait is async-signal-safe
    while HANDLER_GO.load(Ordering::SeqCst) == 0 {
        let _ = sys::futex_wait(&HANDLER_GO, 0);
    }
    HANDLER_DONE.store(1, Ordering::SeqCst);
}

pub fn run(t: &mut Test) -> Result<()> {
    let page = Arc::new(SharedPage::new()?);
    // words: 0 futex, 1 futex result, 2 sleep done, 3 read byte, 4 poll result
    let (pr, pw) = nix::unistd::pipe().context("pipe")?;
    let (qr, qw) = nix::unistd::pipe().context("pipe")?;
    let mut hs: Vec<std::thread::JoinHandle<Result<()>>> = Vec::new();

    let p = page.clone();
    hs.push(std::thread::spawn(move || {
        while p.word(0).load(Ordering::SeqCst) == 0 {
            sys::futex_wait(p.word(0), 0).context("FUTEX_WAIT")?;
        }
        p.word(1).store(1, Ordering::SeqCst);
        Ok(())
    }));
    let p = page.clone();
    let start = Instant::now();
    hs.push(std::thread::spawn(move || {
        let ts = libc::timespec { tv_sec: 4, tv_nsec: 0 };
        let mut rem = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: ts and rem are live timespecs.
        let r = unsafe { libc::nanosleep(&ts, &mut rem) };
        if r != 0 {
            p.word(7).store(std::io::Error::last_os_error().raw_os_error().unwrap_or(-1) as u32, Ordering::SeqCst);
        }
        ensure!(r == 0, "nanosleep ended early: {} (rem {}s)", std::io::Error::last_os_error(), rem.tv_sec);
        p.word(2).store(1, Ordering::SeqCst);
        Ok(())
    }));
    let p = page.clone();
    hs.push(std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let n = nix::unistd::read(&pr, &mut b).context("read of the pipe")?;
        ensure!(n == 1, "read returned {n}");
        p.word(3).store(u32::from(b[0]), Ordering::SeqCst);
        Ok(())
    }));
    let p = page.clone();
    hs.push(std::thread::spawn(move || {
        let mut fds = [PollFd::new(qr.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::NONE).context("poll")?;
        ensure!(n == 1, "poll returned {n}");
        p.word(4).store(1, Ordering::SeqCst);
        Ok(())
    }));
    // SAFETY: on_usr1 only touches atomics and futex syscalls.
    sys::sigaction(libc::SIGUSR1, &sys::make_sigaction(sys::handler(on_usr1), 0, &[]))?;
    let p = page.clone();
    let sig_thread = std::thread::spawn(move || -> Result<()> {
        p.word(5).store(nix::unistd::gettid().as_raw() as u32, Ordering::SeqCst);
        while HANDLER_DONE.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
        p.word(6).store(1, Ordering::SeqCst);
        Ok(())
    });
    ensure!(wait_for(5000, || page.word(5).load(Ordering::SeqCst) != 0), "signal thread did not start");
    let tid = page.word(5).load(Ordering::SeqCst) as i32;
    // SAFETY: tgkill with integers.
    ensure!(unsafe { libc::syscall(libc::SYS_tgkill, std::process::id(), tid, libc::SIGUSR1) } == 0, "tgkill");
    ensure!(wait_for(5000, || IN_HANDLER.load(Ordering::SeqCst) == 1), "thread never entered the handler");
    std::thread::sleep(Duration::from_millis(200));
    let (sw_r, _) = (page.word(2).load(Ordering::SeqCst), 0);
    ensure!(sw_r == 0, "the sleep ended before the dump");

    t.daemon()?;
    t.wait_sig();

    let mut res: Result<()> = (|| {
        ensure!(page.word(1).load(Ordering::SeqCst) == 0, "futex waiter woke without a wake");
        ensure!(page.word(3).load(Ordering::SeqCst) == 0, "reader returned from an empty pipe");
        ensure!(page.word(4).load(Ordering::SeqCst) == 0, "poll returned with nothing to read");
        ensure!(HANDLER_DONE.load(Ordering::SeqCst) == 0, "the handler ended by itself");
        sync::set_and_wake(page.word(0), 1)?;
        ensure!(wait_for(5000, || page.word(1).load(Ordering::SeqCst) == 1), "futex waiter not woken by FUTEX_WAKE");
        nix::unistd::write(&pw, b"z").context("write pipe")?;
        ensure!(wait_for(5000, || page.word(3).load(Ordering::SeqCst) == u32::from(b'z')), "reader did not get the byte");
        nix::unistd::write(&qw, b"q").context("write poll pipe")?;
        ensure!(wait_for(5000, || page.word(4).load(Ordering::SeqCst) == 1), "poll did not return on data");
        HANDLER_GO.store(1, Ordering::SeqCst);
        sys::futex_wake(&HANDLER_GO, 1)?;
        ensure!(wait_for(5000, || page.word(6).load(Ordering::SeqCst) == 1), "signal thread did not return from its handler");
        let left = Duration::from_secs(4).saturating_sub(start.elapsed());
        let woke = wait_for(left.as_millis() as u64 + 8000, || page.word(2).load(Ordering::SeqCst) == 1);
        let err = page.word(7).load(Ordering::SeqCst);
        ensure!(err == 0, "the sleep failed with errno {err}");
        ensure!(woke, "the sleeper never woke");
        Ok(())
    })();
    if res.is_ok() {
        for h in hs.into_iter().chain(std::iter::once(sig_thread)) {
            if let Err(e) = h.join().map_err(|_| anyhow!("thread panicked"))? {
                res = Err(e);
                break;
            }
        }
    }
    res
}
