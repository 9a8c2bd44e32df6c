//! The protocol: daemonize, announce readiness with the pid file, wait for
//! SIGTERM, check, and write `PASS` or `FAIL: why` to the outfile.

use crate::opts::Opts;
use crate::sync;
use crate::sys;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Protocol errors (the test bodies themselves use anyhow).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("daemon() called twice")]
    AlreadyDaemon,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Set by the SIGTERM handler; a futex word the main thread waits on.
static TERM: AtomicU32 = AtomicU32::new(0);

/// The test's end of the ready pipe until it is ready (-1 after): children
/// forked before that close their copy, so that the starter sees the pipe
/// closed once the test itself closes it.
pub(crate) static READY_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_term(_sig: libc::c_int) {
    TERM.store(1, Ordering::SeqCst);
    let _ = sys::futex_wake(&TERM, i32::MAX);
}

/// The handle a test body gets.
pub struct Test {
    opts: Opts,
    ready: Option<OwnedFd>,
}

impl Test {
    pub fn opts(&self) -> &Opts {
        &self.opts
    }

    /// A test-specific option, if given.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.opts.get(name)
    }

    /// The test's directory: `--dirname` (created if missing) or, without
    /// it, `<outfile>.d` beside the outfile.
    pub fn dir(&self) -> Result<PathBuf, Error> {
        let d = match &self.opts.dirname {
            Some(d) => d.clone(),
            None => PathBuf::from(format!("{}.d", self.opts.outfile.display())),
        };
        std::fs::create_dir_all(&d).map_err(io_err(format!("create dir {}", d.display())))?;
        Ok(d)
    }

    /// The test's file path: `--filename` or, without it, `<outfile>.file`.
    pub fn file(&self) -> PathBuf {
        match &self.opts.filename {
            Some(f) => f.clone(),
            None => PathBuf::from(format!("{}.file", self.opts.outfile.display())),
        }
    }

    /// The state is ready: write the pid file and let the starter exit.
    pub fn daemon(&mut self) -> Result<(), Error> {
        let ready = self.ready.take().ok_or(Error::AlreadyDaemon)?;
        READY_FD.store(-1, Ordering::SeqCst);
        let pid = std::process::id();
        let tmp = PathBuf::from(format!("{}.tmp{pid}", self.opts.pidfile.display()));
        std::fs::write(&tmp, format!("{pid}\n"))
            .map_err(io_err(format!("write {}", tmp.display())))?;
        std::fs::rename(&tmp, &self.opts.pidfile).map_err(io_err(format!(
            "rename {} to {}",
            tmp.display(),
            self.opts.pidfile.display()
        )))?;
        let mut f = std::fs::File::from(ready);
        f.write_all(b"R")
            .map_err(io_err("tell the starter we are ready"))?;
        Ok(())
    }

    /// Block until SIGTERM arrived (a wait interrupted by a freeze or a
    /// restore just waits again).
    pub fn wait_sig(&self) {
        let _ = sync::wait_until(&TERM, |v| v != 0);
    }

    /// The frame of a test whose checks run in `child`: once `ready` holds
    /// (within 5 s, else the test fails saying `what` did not start), it
    /// reports ready and waits for the runner's signal, then sets `go` for
    /// the child to check and waits for it to exit 0. The child is killed
    /// on any failure.
    pub fn checks_in_child(
        &mut self,
        child: &crate::child::Child,
        what: &str,
        ready: impl FnMut() -> bool,
        go: &AtomicU32,
    ) -> anyhow::Result<()> {
        let res = (|| {
            anyhow::ensure!(
                crate::prelude::wait_for(5000, ready),
                "{what} did not start"
            );
            self.daemon()?;
            self.wait_sig();
            sync::set_and_wake(go, 1)?;
            child.wait_ok()
        })();
        if res.is_err() {
            child.kill();
        }
        res
    }

    /// Has SIGTERM arrived? (for tests that keep busy until then)
    pub fn sig_received(&self) -> bool {
        TERM.load(Ordering::SeqCst) != 0
    }

    fn verdict(&self, line: &str) {
        let r = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.opts.outfile)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = r {
            eprintln!(
                "cannot write verdict to {}: {e}",
                self.opts.outfile.display()
            );
        }
    }

    /// Write `PASS`.
    pub fn pass(&self) {
        self.verdict("PASS");
    }

    /// Write `FAIL: reason`.
    pub fn fail(&self, reason: &str) {
        let one_line = reason.replace('\n', " | ");
        self.verdict(&format!("FAIL: {one_line}"));
    }
}

/// A test body.
pub type Body = fn(&mut Test) -> anyhow::Result<()>;

/// Run `body` under the protocol. Returns the exit code for the starter
/// (the daemonized child never returns from here).
pub fn run(opts: Opts, body: Body) -> i32 {
    match run_inner(opts, body) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("zdtm: {e}");
            1
        }
    }
}

fn run_inner(opts: Opts, body: Body) -> Result<i32, Error> {
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
        what: "ready pipe".into(),
        source: e.into(),
    })?;
    match sys::fork().map_err(io_err("fork the test"))? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(wr);
            let mut f = std::fs::File::from(rd);
            let mut b = [0u8; 1];
            let n = loop {
                match f.read(&mut b) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    r => break r.map_err(io_err("wait for the test to be ready"))?,
                }
            };
            if n == 1 && b[0] == b'R' {
                // Wait for the test to close its end too, so that no trace
                // of the start is left in its fd table once we exit.
                let mut rest = [0u8; 1];
                while let Err(e) = f.read(&mut rest) {
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        break;
                    }
                }
                return Ok(0);
            }
            // The test ended before it was ready.
            let st = nix::sys::wait::waitpid(child, None);
            eprintln!("zdtm: test {child} ended before it was ready: {st:?}");
            Ok(1)
        }
        nix::unistd::ForkResult::Child => {
            drop(rd);
            let code = child_main(opts, wr, body);
            sys::exit_now(code)
        }
    }
}

fn child_main(opts: Opts, ready: OwnedFd, body: Body) -> i32 {
    {
        use std::os::fd::AsRawFd;
        READY_FD.store(ready.as_raw_fd(), Ordering::SeqCst);
    }
    let t0 = Test {
        opts,
        ready: Some(ready),
    };
    if let Err(e) = child_setup(&t0) {
        t0.fail(&format!("setup: {e}"));
        return 1;
    }
    let mut t = t0;
    let res = body(&mut t);
    if t.ready.is_some() && res.is_ok() {
        t.fail("the test ended without calling daemon()");
        return 1;
    }
    let _ = std::io::stdout().flush();
    match res {
        Ok(()) => {
            t.pass();
            0
        }
        Err(e) => {
            t.fail(&format!("{e:#}"));
            1
        }
    }
}

fn child_setup(t: &Test) -> Result<(), Error> {
    nix::unistd::setsid().map_err(|e| Error::Io {
        what: "setsid".into(),
        source: e.into(),
    })?;
    let devnull = OpenOptions::new()
        .read(true)
        .open("/dev/null")
        .map_err(io_err("open /dev/null"))?;
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&t.opts.outfile)
        .map_err(io_err(format!("open outfile {}", t.opts.outfile.display())))?;
    let dup = |r: nix::Result<()>, what: &str| {
        r.map_err(|e| Error::Io {
            what: what.into(),
            source: e.into(),
        })
    };
    dup(nix::unistd::dup2_stdin(&devnull), "dup2 stdin")?;
    dup(nix::unistd::dup2_stdout(&out), "dup2 stdout")?;
    dup(nix::unistd::dup2_stderr(&out), "dup2 stderr")?;
    let sa = sys::make_sigaction(sys::handler(on_term), 0, &[]);
    sys::sigaction(libc::SIGTERM, &sa).map_err(io_err("install the SIGTERM handler"))?;
    Ok(())
}
