use crate::prelude::*;
use std::cell::Cell;
use std::sync::Arc;

pub const DESC: Desc = Desc {
    name: "threads/thread_tls",
    family: "threads",
    description: "thread-local values and each thread's TLS base (fs) are kept",
    ..Desc::DEFAULT
};

thread_local! {
    static VALUE: Cell<u64> = const { Cell::new(0) };
}

#[cfg(target_arch = "x86_64")]
fn tls_base() -> Result<u64> {
    sys::fs_base().context("arch_prctl(ARCH_GET_FS)")
}

#[cfg(not(target_arch = "x86_64"))]
fn tls_base() -> Result<u64> {
    Ok(0)
}

pub fn run(t: &mut Test) -> Result<()> {
    let go = Arc::new(SharedPage::new()?);
    let ready = Arc::new(AtomicU32::new(0));
    let mut hs = Vec::new();
    for i in 0..4u64 {
        let (go, ready) = (go.clone(), ready.clone());
        hs.push(std::thread::spawn(move || -> Result<()> {
            let want = 0x5eed_0000 + i * 0x1111;
            VALUE.with(|v| v.set(want));
            let base = tls_base()?;
            ready.fetch_add(1, Ordering::SeqCst);
            sync::wait_until(go.word(0), |v| v != 0)?;
            let got = VALUE.with(|v| v.get());
            ensure!(got == want, "thread {i}: TLS value {got:#x}, expected {want:#x}");
            let b = tls_base()?;
            ensure!(b == base, "thread {i}: fs base {b:#x}, was {base:#x}");
            Ok(())
        }));
    }
    VALUE.with(|v| v.set(42));
    let base = tls_base()?;
    ensure!(wait_for(5000, || ready.load(Ordering::SeqCst) == 4), "threads did not start");
    t.daemon()?;
    t.wait_sig();
    sync::set_and_wake(go.word(0), 1)?;
    for (i, h) in hs.into_iter().enumerate() {
        h.join().map_err(|_| anyhow!("thread {i} panicked"))??;
    }
    ensure!(VALUE.with(|v| v.get()) == 42, "main thread TLS value changed");
    ensure!(tls_base()? == base, "main thread fs base changed");
    Ok(())
}
