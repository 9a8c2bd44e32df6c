//! The `ns` and `uns` flavors.
//!
//! The runner re-executes itself twice:
//!
//! 1. `zdtm-runner __ns-helper …` (a fresh, single-threaded process): for
//!    `uns` it unshares a user namespace, prints `userns`, and waits for the
//!    runner to write its uid/gid maps and answer `go`; then it becomes root
//!    of that namespace and unshares pid, mount, net, ipc, uts and (if the
//!    kernel has it) time namespaces. It starts the init (below), prints
//!    `pid HOSTPID` and exits, so the init is reparented to the runner (a
//!    child subreaper).
//! 2. `zdtm-runner __ns-init …` is pid 1 of the new pid namespace. It makes
//!    the mounts private, mounts a fresh /proc, starts the test program
//!    (as the test uid/gid), which daemonizes inside; once the test's pidfile
//!    is there it writes its own *host* PID to the outer pidfile. That PID is
//!    what the runner dumps. On SIGTERM it forwards SIGTERM to the test,
//!    reaps everything and exits 0 when the test exited 0 (1 otherwise).
//!
//! Exit code 3 (of the helper or the init before it is ready) means "the
//! namespaces could not be set up": the runner reports a skip.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{setresgid, setresuid, Gid, Pid, Uid};
use std::os::unix::process::CommandExt;

/// Exit code meaning "namespace setup failed".
pub const SETUP_FAILED: i32 = 3;

/// Lowest host uid/gid that the `uns` flavor maps to uid/gid 0 inside.
pub const UNS_BASE: u32 = 100_000;
/// How many ids the `uns` map covers.
pub const UNS_COUNT: u32 = 65_536;

/// The map the runner writes into /proc/HELPER/{uid,gid}_map.
pub fn uns_map() -> String {
    format!("0 {UNS_BASE} {UNS_COUNT}\n")
}

/// Arguments shared by the helper and the init.
#[derive(Debug, Clone, clap::Args)]
pub struct NsArgs {
    /// `ns` or `uns`
    #[arg(long)]
    pub flavor: String,
    /// Where the test writes its (in-namespace) pid.
    #[arg(long)]
    pub inner_pidfile: PathBuf,
    /// Where the init writes its host pid once the test is ready.
    #[arg(long)]
    pub outer_pidfile: PathBuf,
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
    /// Working directory of the test.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// The test program and its arguments.
    #[arg(last = true, required = true)]
    pub cmd: Vec<String>,
}

impl NsArgs {
    fn to_args(&self) -> Vec<String> {
        let mut v = vec![
            "--flavor".into(),
            self.flavor.clone(),
            "--inner-pidfile".into(),
            self.inner_pidfile.display().to_string(),
            "--outer-pidfile".into(),
            self.outer_pidfile.display().to_string(),
        ];
        if let Some(u) = self.uid {
            v.extend(["--uid".into(), u.to_string()]);
        }
        if let Some(g) = self.gid {
            v.extend(["--gid".into(), g.to_string()]);
        }
        if let Some(c) = &self.cwd {
            v.extend(["--cwd".into(), c.display().to_string()]);
        }
        v.push("--".into());
        v.extend(self.cmd.iter().cloned());
        v
    }

    /// The command line for `zdtm-runner __ns-helper`.
    pub fn helper_args(&self) -> Vec<String> {
        let mut v = vec!["__ns-helper".to_string()];
        v.extend(self.to_args());
        v
    }
}

fn setup_fail(what: &str, e: impl std::fmt::Display) -> i32 {
    eprintln!("setup-error: {what}: {e}");
    SETUP_FAILED
}

/// Body of `__ns-helper`. Returns the exit code.
pub fn helper_main(a: &NsArgs) -> i32 {
    if a.flavor == "uns" {
        if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
            return setup_fail("unshare(CLONE_NEWUSER)", e);
        }
        let mut out = std::io::stdout();
        if writeln!(out, "userns").and_then(|_| out.flush()).is_err() {
            return setup_fail("talking to the runner", "stdout closed");
        }
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() || line.trim() != "go" {
            return setup_fail("user namespace maps", "the runner did not write them");
        }
        if let Err(e) = setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)) {
            return setup_fail("setresgid(0) in the user namespace", e);
        }
        if let Err(e) = setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)) {
            return setup_fail("setresuid(0) in the user namespace", e);
        }
    }
    let base = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    let time = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    if let Err(e) = unshare(base | time) {
        if e != Errno::EINVAL {
            return setup_fail("unshare(pid, mnt, net, ipc, uts, time)", e);
        }
        // no time namespaces on this kernel
        if let Err(e) = unshare(base) {
            return setup_fail("unshare(pid, mnt, net, ipc, uts)", e);
        }
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return setup_fail("finding the runner binary", e),
    };
    let mut cmd = Command::new(exe);
    cmd.arg("__ns-init").args(a.to_args()).stdin(Stdio::null());
    // The init must be started by a plain fork. Without a pre_exec hook,
    // std spawns through posix_spawn, which glibc implements with
    // clone(CLONE_VM | CLONE_VFORK); a child sharing our memory cannot go
    // into another time namespace than ours, and after
    // unshare(CLONE_NEWTIME) it would (time_for_children differs from
    // time). Kernels before the one that lets a vfork child switch time
    // namespaces at exec (Linux 6.1 is one) refuse that clone with EINVAL.
    // An empty pre_exec hook makes std fork instead.
    // SAFETY: the hook does nothing, so it is trivially async-signal-safe
    // in the forked child.
    unsafe {
        cmd.pre_exec(|| Ok(()));
    }
    // init's stdout goes where our stderr goes (the flavor log)
    match std::io::stderr().as_fd_dup() {
        Some(fd) => {
            cmd.stdout(fd);
        }
        None => {
            cmd.stdout(Stdio::null());
        }
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return setup_fail("starting the namespace init", e),
    };
    let mut out = std::io::stdout();
    if writeln!(out, "pid {}", child.id())
        .and_then(|_| out.flush())
        .is_err()
    {
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        return setup_fail("talking to the runner", "stdout closed");
    }
    0
}

trait DupFd {
    fn as_fd_dup(&self) -> Option<std::os::fd::OwnedFd>;
}

impl DupFd for std::io::Stderr {
    fn as_fd_dup(&self) -> Option<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned().ok()
    }
}

fn own_host_pid() -> Option<i32> {
    std::fs::read_link("/proc/self")
        .ok()?
        .to_str()?
        .parse()
        .ok()
}

fn write_atomic(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Body of `__ns-init` (pid 1 of the new namespaces). Returns the exit code.
pub fn init_main(a: &NsArgs) -> i32 {
    // /proc is still the host's: it names our host pid.
    let Some(host_pid) = own_host_pid() else {
        return setup_fail("reading /proc/self", "no host pid");
    };
    // Own session and process group, so the dumped tree does not share
    // them with the runner (criu would call it a shell job).
    if let Err(e) = nix::unistd::setsid() {
        return setup_fail("setsid", e);
    }
    if let Err(e) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        return setup_fail("making / private", e);
    }
    if let Err(e) = mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        return setup_fail("mounting /proc for the new pid namespace", e);
    }
    // The new network namespace starts with lo down; tests talk over it.
    if let Err(e) = lo_up() {
        return setup_fail("bringing lo up in the new network namespace", e);
    }
    let mut sigs = SigSet::empty();
    sigs.add(Signal::SIGTERM);
    sigs.add(Signal::SIGCHLD);
    if let Err(e) = sigs.thread_block() {
        return setup_fail("blocking SIGTERM/SIGCHLD", e);
    }
    let prog = a.cmd.first().cloned().unwrap_or_default();
    // The test must not inherit our blocked signals: start it through
    // `__ns-exec`, which clears the mask and execs it.
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return setup_fail("finding the runner binary", e),
    };
    let mut cmd = Command::new(exe);
    cmd.arg("__ns-exec").args(a.to_args()).stdin(Stdio::null());
    let starter = match cmd.spawn() {
        Ok(c) => c.id() as i32,
        Err(e) => {
            eprintln!("ns-init: starting {prog}: {e}");
            return 1;
        }
    };
    let mut test_pid: Option<i32> = None;
    let mut test_exit: Option<i32> = None;
    let mut terminating = false;
    loop {
        let sig = match sigs.wait() {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("ns-init: sigwait: {e}");
                return 1;
            }
        };
        if sig == Signal::SIGTERM {
            terminating = true;
            let target = test_pid.unwrap_or(starter);
            let _ = kill(Pid::from_raw(target), Signal::SIGTERM);
        }
        // reap everything that ended
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(WaitStatus::Exited(pid, code)) => {
                    let pid = pid.as_raw();
                    if pid == starter && test_pid.is_none() {
                        if code != 0 {
                            eprintln!("ns-init: test starter exited with {code}");
                            return 1;
                        }
                        let p = std::fs::read_to_string(&a.inner_pidfile)
                            .ok()
                            .and_then(|s| s.trim().parse::<i32>().ok());
                        let Some(p) = p else {
                            eprintln!(
                                "ns-init: no pid in {} after the starter exited",
                                a.inner_pidfile.display()
                            );
                            return 1;
                        };
                        test_pid = Some(p);
                        if let Err(e) = write_atomic(&a.outer_pidfile, &format!("{host_pid}\n")) {
                            eprintln!("ns-init: writing {}: {e}", a.outer_pidfile.display());
                            return 1;
                        }
                    } else if Some(pid) == test_pid {
                        test_exit = Some(code);
                    }
                }
                Ok(WaitStatus::Signaled(pid, s, _)) => {
                    if Some(pid.as_raw()) == test_pid || pid.as_raw() == starter {
                        eprintln!("ns-init: test {pid} killed by {s}");
                        test_exit = Some(128 + s as i32);
                    }
                }
                Ok(_) => {}
                Err(Errno::ECHILD) => {
                    // nobody left: we are done
                    let code = match test_exit {
                        Some(0) if terminating => 0,
                        Some(0) => {
                            eprintln!("ns-init: test exited before SIGTERM");
                            1
                        }
                        _ => 1,
                    };
                    return code;
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("ns-init: waitpid: {e}");
                    return 1;
                }
            }
        }
    }
}

/// Body of `__ns-exec`: clear the signal mask inherited from the init and
/// become the test program (as the test uid/gid, in its directory).
/// Returns only on failure.
pub fn exec_main(a: &NsArgs) -> i32 {
    if let Err(e) = SigSet::empty().thread_set_mask() {
        eprintln!("ns-exec: clearing the signal mask: {e}");
        return 1;
    }
    let Some((prog, args)) = a.cmd.split_first() else {
        eprintln!("ns-exec: no command");
        return 1;
    };
    let mut cmd = Command::new(prog);
    cmd.args(args);
    if let Some(c) = &a.cwd {
        cmd.current_dir(c);
    }
    if let Some(g) = a.gid {
        cmd.gid(g);
    }
    if let Some(u) = a.uid {
        cmd.uid(u);
    }
    let e = cmd.exec();
    eprintln!("ns-exec: executing {prog}: {e}");
    1
}

/// `struct ifreq` as SIOCGIFFLAGS/SIOCSIFFLAGS use it: a name, then the
/// flags (the rest of the union is padding).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Sets IFF_UP on `lo` of the current network namespace.
fn lo_up() -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let mut ifr = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    ifr.name[..2].copy_from_slice(b"lo");
    // SAFETY: `ifr` is a live ifreq-shaped buffer for both calls, and the
    // socket is open for their whole duration.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(Errno::last());
        }
        ifr.flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}
