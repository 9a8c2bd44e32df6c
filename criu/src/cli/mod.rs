//! Layer 6: the command line, with CRIU's command and option names.
//!
//! Options may stand before or after the command, as with CRIU
//! (`criu -D dir restore` and `criu restore -D dir` are the same), and
//! CRIU's verbosity spellings `-v`, `-vvv`, `-v4` and `--verbosity=4` all
//! work.

pub mod check;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};

use crate::objects::files::netlock::Method as NetLock;
use crate::{dump, restore};

/// What criu-rs tells `criu --version` callers: the CRIU release whose
/// interfaces it speaks, and its own version.
pub const CRIU_VERSION: &str = "4.2";

#[derive(Debug, Parser)]
#[command(
    name = "criu",
    about = "Checkpoint/Restore In Userspace (criu-rs)",
    disable_version_flag = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
    /// Print the version and exit.
    #[arg(short = 'V', long = "version", global = true)]
    pub version: bool,
}

#[derive(Debug, Args, Default)]
pub struct Common {
    /// Directory of the image files.
    #[arg(short = 'D', long = "images-dir", global = true, value_name = "DIR")]
    pub images_dir: Option<PathBuf>,
    /// Directory for logs and pid files (default: the images directory).
    #[arg(short = 'W', long = "work-dir", global = true, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Log file; a relative name is in the work directory.
    #[arg(short = 'o', long = "log-file", global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Log level: 0 errors only … 4 debug.
    #[arg(
        long = "verbosity",
        global = true,
        value_name = "N",
        default_value_t = 2
    )]
    pub verbosity: u8,
    /// Write the PID of the restored root (restore) to this file.
    #[arg(long = "pidfile", global = true, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// The tree is a shell job: keep its session and terminal.
    #[arg(short = 'j', long = "shell-job", global = true)]
    pub shell_job: bool,
    /// Checkpoint and restore established TCP connections (TCP repair).
    #[arg(long = "tcp-established", global = true)]
    pub tcp_established: bool,
    /// Restore established TCP connections as closed sockets.
    #[arg(long = "tcp-close", global = true)]
    pub tcp_close: bool,
    /// The biggest unlinked ("ghost") file a dump saves, in bytes with an
    /// optional K, M or G suffix (default 1M).
    #[arg(long = "ghost-limit", global = true, value_name = "SIZE", value_parser = parse_size)]
    pub ghost_limit: Option<u64>,
    /// Dump and restore file locks (flock, POSIX and OFD) held by the tree.
    #[arg(long = "file-locks", short = 'l', global = true)]
    pub file_locks: bool,
    /// Unix datagram sockets connected to a socket outside the tree are
    /// dumped, and connected to that socket's name again at restore.
    #[arg(long = "ext-unix-sk", short = 'x', global = true)]
    pub ext_unix_sk: bool,
    /// How TCP connections are kept from the network between dump and
    /// restore: "nftables" drops their packets, "skip" (the default) does
    /// not; "iptables" is refused.
    #[arg(long = "network-lock", global = true, value_name = "METHOD",
          value_parser = ["iptables", "nftables", "skip"])]
    pub network_lock: Option<String>,
    /// The images of the previous pre-dump, relative to the images
    /// directory (a `parent` link to them is made there).
    #[arg(long = "prev-images-dir", global = true, value_name = "DIR")]
    pub prev_images_dir: Option<PathBuf>,
    /// Track memory changes: leave pages unchanged since the previous
    /// pre-dump to its images.
    #[arg(long = "track-mem", global = true)]
    pub track_mem: bool,
}

/// `--network-lock`: nftables (a table that drops the packets of the
/// tree's TCP connections until restore) or skip (the default here); the
/// iptables method is refused rather than ignored.
fn check_network_lock(c: &Common) -> Result<NetLock, Error> {
    match c.network_lock.as_deref() {
        None | Some("skip") => Ok(NetLock::Skip),
        Some("nftables") => Ok(NetLock::Nftables),
        Some(m) => Err(Error::Usage(format!(
            "--network-lock {m}: criu-rs cannot lock the network with {m}; use --network-lock nftables (or skip)"
        ))),
    }
}

/// A size as CRIU takes it: a number with an optional K, M or G suffix.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number with an optional K, M or G)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too big a size"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checkpoint a process tree into the images directory.
    Dump(DumpArgs),
    /// Save the memory of a process tree that keeps running, and track its
    /// changes for the next (pre-)dump.
    #[command(name = "pre-dump")]
    PreDump(DumpArgs),
    /// Restore a process tree from the images directory.
    Restore(RestoreArgs),
    /// Check that the kernel has what criu needs.
    Check(CheckArgs),
    /// Serve CRIU RPC requests on the inherited socket FD (one end of a
    /// SOCK_SEQPACKET socketpair) until the client closes it.
    Swrk(SwrkArgs),
    /// Serve CRIU RPC requests on a listening unix socket.
    Service(ServiceArgs),
}

#[derive(Debug, Args)]
pub struct SwrkArgs {
    /// The socket's fd number, inherited from the client.
    #[arg(value_name = "FD")]
    pub fd: i32,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// Path of the unix socket to listen on.
    #[arg(
        long = "address",
        value_name = "PATH",
        default_value = "criu_service.socket"
    )]
    pub address: PathBuf,
    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// PID of the root of the tree to dump.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    pub tree: i32,
    /// Leave the tree running after the dump.
    #[arg(short = 'R', long = "leave-running")]
    pub leave_running: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Detach from the restored tree once it runs, instead of waiting for it.
    #[arg(short = 'd', long = "restore-detached")]
    pub restore_detached: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check only this feature (see `criu check --feature list`).
    #[arg(long = "feature", value_name = "NAME")]
    pub feature: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Dump(#[from] dump::Error),
    #[error(transparent)]
    Restore(#[from] restore::Error),
    #[error(transparent)]
    Rpc(#[from] crate::rpc::Error),
    #[error("log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Rewrites CRIU's verbosity spellings (`-v`, `-vvv`, `-v4`) into
/// `--verbosity=N`; everything else passes through.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const DEFAULT: u32 = 2;
    let mut extra_v = None::<u32>;
    let mut out = Vec::new();
    for a in args {
        if let Some(rest) = a.strip_prefix("-v") {
            if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                out.push(format!("--verbosity={rest}"));
                continue;
            }
            if rest.bytes().all(|b| b == b'v') {
                let n = extra_v.unwrap_or(DEFAULT) + 1 + rest.len() as u32;
                extra_v = Some(n);
                continue;
            }
        }
        out.push(a);
    }
    if let Some(n) = extra_v {
        out.push(format!("--verbosity={n}"));
    }
    out
}

fn level(v: u8) -> tracing::Level {
    match v {
        0 | 1 => tracing::Level::ERROR,
        2 => tracing::Level::WARN,
        3 => tracing::Level::INFO,
        4 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    }
}

/// Where relative log and pid files go: the work dir, else the images dir.
fn in_work_dir(c: &Common, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match c.work_dir.as_ref().or(c.images_dir.as_ref()) {
        Some(d) => d.join(p),
        None => p.to_path_buf(),
    }
}

/// A log sink that appends to the log file (when given) and lets errors
/// reach stderr too.
struct Sink(Option<Mutex<std::fs::File>>);

impl Write for &Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.0 {
            Some(f) => f.lock().map_err(|_| std::io::ErrorKind::Other)?.write(buf),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn setup_log(c: &Common) -> Result<Option<PathBuf>, Error> {
    let path = c.log_file.as_ref().map(|p| in_work_dir(c, p));
    let file = match &path {
        Some(p) if p.as_os_str() != "-" => {
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            Some(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|source| Error::Log {
                        path: p.clone(),
                        source,
                    })?,
            ))
        }
        _ => None,
    };
    let sink: &'static Sink = Box::leak(Box::new(Sink(file)));
    let _ = tracing_subscriber::fmt()
        .with_max_level(level(c.verbosity))
        .with_writer(move || sink)
        .with_ansi(false)
        .with_target(false)
        .try_init();
    Ok(path)
}

fn images_dir(c: &Common) -> Result<PathBuf, Error> {
    c.images_dir
        .clone()
        .ok_or_else(|| Error::Usage("the images directory (-D/--images-dir) is required".into()))
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32, Error> {
    if cli.version {
        println!("Version: {CRIU_VERSION}");
        println!("GitID: criu-rs-{}", env!("CARGO_PKG_VERSION"));
        return Ok(0);
    }
    let Some(command) = cli.command else {
        return Err(Error::Usage(
            "a command is needed: dump, restore or check (see --help)".into(),
        ));
    };
    let c = &cli.common;
    match command {
        Command::Dump(a) => {
            let dir = images_dir(c)?;
            let network_lock = check_network_lock(c)?;
            setup_log(c)?;
            let opts = dump::DumpOpts {
                pid: a.tree,
                images_dir: dir,
                leave_running: a.leave_running,
                shell_job: c.shell_job,
                tcp_established: c.tcp_established,
                ghost_limit: c.ghost_limit,
                file_locks: c.file_locks,
                ext_unix_sk: c.ext_unix_sk,
                network_lock,
                prev_images_dir: c.prev_images_dir.clone(),
                track_mem: c.track_mem,
            };
            dump::dump(&opts).inspect_err(|e| tracing::error!("dump failed: {e}"))?;
            tracing::info!("dumping finished successfully");
            Ok(0)
        }
        Command::PreDump(a) => {
            let dir = images_dir(c)?;
            setup_log(c)?;
            let opts = dump::DumpOpts {
                pid: a.tree,
                images_dir: dir,
                leave_running: true,
                shell_job: c.shell_job,
                prev_images_dir: c.prev_images_dir.clone(),
                track_mem: true,
                ..Default::default()
            };
            dump::pre_dump(&opts).inspect_err(|e| tracing::error!("pre-dump failed: {e}"))?;
            tracing::info!("pre-dumping finished successfully");
            Ok(0)
        }
        Command::Restore(a) => {
            let dir = images_dir(c)?;
            let network_lock = check_network_lock(c)?;
            setup_log(c)?;
            let opts = restore::RestoreOpts {
                images_dir: dir,
                detach: a.restore_detached,
                shell_job: c.shell_job,
                tcp_established: c.tcp_established,
                tcp_close: c.tcp_close,
                file_locks: c.file_locks,
                ext_unix_sk: c.ext_unix_sk,
                network_lock,
            };
            let pidfile = c.pidfile.as_ref().map(|p| in_work_dir(c, p));
            let write_pid = |pid: i32| -> std::io::Result<()> {
                match &pidfile {
                    Some(p) => std::fs::write(p, format!("{pid}\n")),
                    None => Ok(()),
                }
            };
            let outcome = restore::restore(&opts, &write_pid)
                .inspect_err(|e| tracing::error!("restore failed: {e}"))?;
            tracing::info!("restore finished: {outcome:?}");
            Ok(match outcome {
                restore::Outcome::Detached(_) => 0,
                restore::Outcome::Exited(code) => code,
                restore::Outcome::Killed(sig) => 128 + sig,
            })
        }
        Command::Check(a) => {
            setup_log(c)?;
            check::run(a.feature.as_deref())
        }
        Command::Swrk(a) => {
            crate::rpc::swrk(a.fd)?;
            Ok(0)
        }
        Command::Service(a) => {
            crate::rpc::service(&a.address, a.daemon, c.pidfile.as_deref())?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod size_tests {
    use super::parse_size;

    #[test]
    fn sizes_take_crius_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16K"), Ok(16 << 10));
        assert_eq!(parse_size("3M"), Ok(3 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}

#[cfg(test)]
mod socket_option_tests {
    use super::*;

    fn common(args: &[&str]) -> Common {
        let mut v = vec!["criu"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("parses").common
    }

    #[test]
    fn network_lock_methods() {
        let m = |args: &[&str]| check_network_lock(&common(args)).ok();
        assert_eq!(m(&["dump", "-t", "1"]), Some(NetLock::Skip));
        assert_eq!(
            m(&["dump", "--network-lock", "skip", "-t", "1"]),
            Some(NetLock::Skip)
        );
        assert_eq!(
            m(&["restore", "--network-lock", "nftables"]),
            Some(NetLock::Nftables)
        );
        let e = check_network_lock(&common(&["dump", "-t", "1", "--network-lock", "iptables"]))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("iptables") && e.contains("nftables"), "{e}");
        assert!(Cli::try_parse_from(["criu", "dump", "-t", "1", "--network-lock", "x"]).is_err());
    }

    #[test]
    fn ext_unix_sk_has_crius_spellings() {
        assert!(common(&["dump", "-t", "1", "--ext-unix-sk"]).ext_unix_sk);
        assert!(common(&["-x", "restore"]).ext_unix_sk);
        assert!(!common(&["restore"]).ext_unix_sk);
    }
}
