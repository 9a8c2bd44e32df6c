use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "signals/sigaltstack00",
    family: "signals",
    description: "the alternate signal stack is kept and SA_ONSTACK handlers run on it",
    ..Desc::DEFAULT
};

static WHERE: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    let x = 0u8;
    WHERE.store(std::hint::black_box(&x) as *const u8 as u64, Ordering::SeqCst);
}

pub fn run(t: &mut Test) -> Result<()> {
    let len = 64 * 1024;
    let stack = Mapping::anon(len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE).context("mmap stack")?;
    sys::sigaltstack(Some((stack.addr(), len, 0))).context("sigaltstack")?;
    let sa = sys::make_sigaction(sys::handler(on_usr1), libc::SA_ONSTACK, &[]);
    sys::sigaction(libc::SIGUSR1, &sa).context("sigaction")?;
    t.daemon()?;
    t.wait_sig();
    let (sp, size, flags) = sys::sigaltstack(None).context("read sigaltstack")?;
    ensure!(sp == stack.addr() && size == len, "altstack is {sp:#x}+{size:#x}, expected {:#x}+{len:#x}", stack.addr());
    ensure!(flags & libc::SS_DISABLE == 0, "altstack disabled (flags {flags:#x})");
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGUSR1).context("raise")?;
    let w = WHERE.load(Ordering::SeqCst) as usize;
    ensure!(w >= stack.addr() && w < stack.addr() + len, "handler ran at {w:#x}, not on the altstack");
    Ok(())
}
