use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "signals/sigaction00",
    family: "signals",
    description: "handlers, flags and masks of many signals are kept, and a handler still runs",
    ..Desc::DEFAULT
};

/// glibc adds this flag behind our back (x86 value).
const SA_RESTORER: i32 = 0x0400_0000;

static HITS: AtomicU32 = AtomicU32::new(0);

extern "C" fn plain(_: libc::c_int) {
    HITS.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn info(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    HITS.fetch_add(100, Ordering::SeqCst);
}

struct Want {
    sig: i32,
    handler: libc::sighandler_t,
    flags: i32,
    mask: Vec<i32>,
}

fn wants() -> Vec<Want> {
    let rt = libc::SIGRTMIN();
    vec![
        Want { sig: libc::SIGUSR1, handler: sys::handler(plain), flags: libc::SA_RESTART, mask: vec![libc::SIGUSR2] },
        Want {
            sig: libc::SIGUSR2,
            handler: sys::info_handler(info),
            flags: libc::SA_SIGINFO | libc::SA_NODEFER,
            mask: vec![libc::SIGHUP, rt + 3],
        },
        Want { sig: libc::SIGHUP, handler: libc::SIG_IGN, flags: 0, mask: vec![] },
        Want { sig: libc::SIGALRM, handler: sys::handler(plain), flags: libc::SA_RESETHAND, mask: vec![libc::SIGINT] },
        Want {
            sig: libc::SIGWINCH,
            handler: sys::handler(plain),
            flags: libc::SA_ONSTACK | libc::SA_RESTART,
            mask: vec![libc::SIGQUIT, libc::SIGPIPE],
        },
        Want { sig: libc::SIGPIPE, handler: libc::SIG_IGN, flags: 0, mask: vec![] },
        Want { sig: rt + 1, handler: sys::handler(plain), flags: 0, mask: (1..32).filter(|s| *s != 9 && *s != 19).collect() },
        Want { sig: rt + 5, handler: sys::info_handler(info), flags: libc::SA_SIGINFO, mask: vec![rt + 6, libc::SIGRTMAX()] },
    ]
}

pub fn run(t: &mut Test) -> Result<()> {
    let ws = wants();
    for w in &ws {
        let sa = sys::make_sigaction(w.handler, w.flags, &w.mask);
        sys::sigaction(w.sig, &sa).with_context(|| format!("sigaction {}", w.sig))?;
    }
    t.daemon()?;
    t.wait_sig();
    for w in &ws {
        let got = sys::get_sigaction(w.sig).with_context(|| format!("read sigaction {}", w.sig))?;
        ensure!(got.sa_sigaction == w.handler, "signal {}: handler {:#x}, expected {:#x}", w.sig, got.sa_sigaction, w.handler);
        let flags = got.sa_flags & !SA_RESTORER;
        ensure!(flags == w.flags, "signal {}: flags {flags:#x}, expected {:#x}", w.sig, w.flags);
        for s in 1..=libc::SIGRTMAX() {
            let want = w.mask.contains(&s);
            let has = sys::sigismember(&got.sa_mask, s);
            ensure!(has == want, "signal {}: mask has signal {s}={has}, expected {want}", w.sig);
        }
    }
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR1).context("raise SIGUSR1")?;
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR2).context("raise SIGUSR2")?;
    ensure!(HITS.load(Ordering::SeqCst) == 101, "handlers ran {} (want 101)", HITS.load(Ordering::SeqCst));
    Ok(())
}
