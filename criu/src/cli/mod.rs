//! Layer 6: the command line, with CRIU's command and option names.
//!
//! Options may stand before or after the command, as with CRIU
//! (`criu -D dir restore` and `criu restore -D dir` are the same), and
//! CRIU's verbosity spellings `-v`, `-vvv`, `-v4` and `--verbosity=4` all
//! work.

pub mod check;
pub mod config;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::{Args, Parser, Subcommand};

use crate::image::{self, magic, pb};
use crate::objects::files::netlock::Method as NetLock;
use crate::objects::ns::cgroup::Mode as CgMode;
use crate::{dump, restore};

/// What criu-rs tells `criu --version` callers: the CRIU release whose
/// interfaces it speaks, and its own version.
pub const CRIU_VERSION: &str = "4.2";

#[derive(Debug, Parser)]
#[command(
    name = "criu",
    about = "Checkpoint/Restore In Userspace (criu-rs)",
    disable_version_flag = true,
    args_override_self = true
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
    /// How restore checks that files are those dumped: filesize (the
    /// default: sizes must match) or buildid (also the ELF build-id of
    /// files that have one, recorded at dump).
    #[arg(long = "file-validation", global = true, value_name = "METHOD",
          value_parser = ["filesize", "buildid"])]
    pub file_validation: Option<String>,
    /// A file open by a name unlinked since, that still has another name,
    /// gets a temporary hard link (`link_remap.N` beside it) for restore.
    #[arg(long = "link-remap", global = true)]
    pub link_remap: bool,
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
    /// Restore these namespaces empty (only `net`: its devices are not
    /// restored; whoever restores sets the network up).
    #[arg(long = "empty-ns", global = true, value_name = "NS", value_parser = ["net"])]
    pub empty_ns: Option<String>,
    /// Read options from this configuration file (the default files are
    /// then not read).
    #[arg(long = "config", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not read /etc/criu/default.conf and $HOME/.criu/default.conf.
    #[arg(long = "no-default-config", global = true)]
    pub no_default_config: bool,
    /// Run this script at each step of a dump or restore, with the step's
    /// name in CRTOOLS_SCRIPT_ACTION (may be given more than once).
    #[arg(long = "action-script", global = true, value_name = "FILE", action = clap::ArgAction::Append)]
    pub action_script: Vec<PathBuf>,
    /// What the restore does with the tasks' cgroups: soft (the default:
    /// missing cgroups are made with their properties), full (properties
    /// set on all), strict (none may exist), props (all must exist, their
    /// properties are set), none (all must exist, left alone) or ignore
    /// (the tasks stay in criu's cgroups).
    #[arg(long = "manage-cgroups", global = true, value_name = "MODE",
          num_args = 0..=1, require_equals = true, default_missing_value = "soft",
          value_parser = ["none", "props", "soft", "full", "strict", "ignore"])]
    pub manage_cgroups: Option<String>,
    /// `[CONTROLLER:]/PATH`: at restore, the root task goes into cgroup
    /// PATH of CONTROLLER's hierarchy (of every other hierarchy without
    /// CONTROLLER), and the cgroups below its old one move along.
    #[arg(long = "cgroup-root", global = true, value_name = "[CTRL:]PATH",
          value_parser = crate::objects::ns::cgroup::NewRoot::parse,
          action = clap::ArgAction::Append)]
    pub cgroup_root: Vec<crate::objects::ns::cgroup::NewRoot>,
    /// Refused: criu-rs keeps its built-in list of cgroup properties.
    #[arg(long = "cgroup-props", global = true, value_name = "SPEC", hide = true)]
    pub cgroup_props: Option<String>,
    /// Refused, as --cgroup-props.
    #[arg(
        long = "cgroup-props-file",
        global = true,
        value_name = "FILE",
        hide = true
    )]
    pub cgroup_props_file: Option<String>,
    /// Refused, as --cgroup-props.
    #[arg(long = "cgroup-dump-controller", global = true, value_name = "NAME",
          hide = true, action = clap::ArgAction::Append)]
    pub cgroup_dump_controller: Vec<String>,
    /// `NS:PID|FILE`: restore the tree into this existing namespace (net,
    /// uts or ipc) of process PID, or of the namespace file FILE.
    #[arg(long = "join-ns", global = true, value_name = "NS:PID|FILE",
          value_parser = crate::objects::ns::join::JoinNs::parse_option,
          action = clap::ArgAction::Append)]
    pub join_ns: Vec<crate::objects::ns::join::JoinNs>,
    /// `veth[IFNAME]:OUTNAME[@BRIDGE]`: at restore the veth IFNAME, whose
    /// peer was in another network namespace, gets its peer OUTNAME in
    /// criu's network namespace (enslaved to BRIDGE when given).
    /// `mnt[MOUNTPOINT]:KEY` at dump: the mount is external, recorded by
    /// KEY; `mnt[KEY]:PATH` at restore: PATH is bind-mounted in its place.
    /// Other kinds of external resources are refused.
    #[arg(long = "external", global = true, value_name = "RES", action = clap::ArgAction::Append)]
    pub external: Vec<String>,
    /// `IN=OUT[@BRIDGE]`: the older spelling of `--external veth[IN]:OUT`.
    #[arg(long = "veth-pair", global = true, value_name = "IN=OUT", action = clap::ArgAction::Append)]
    pub veth_pair: Vec<String>,
    /// `KEY:VAL`: the older spelling of `--external mnt[KEY]:VAL`.
    #[arg(long = "ext-mount-map", short = 'M', global = true, value_name = "KEY:VAL", action = clap::ArgAction::Append)]
    pub ext_mount_map: Vec<String>,
    /// Restore: the directory the tree's own root mount (a container's
    /// rootfs) is made of.
    #[arg(long = "root", short = 'r', global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Dump and restore: an external mount in a peer group shared with
    /// mounts outside the tree stays shared with them.
    #[arg(long = "ext-sharing", global = true)]
    pub ext_sharing: bool,
    /// Dump and restore: an external mount that is a slave of a mount
    /// outside the tree stays one.
    #[arg(long = "ext-masters", global = true)]
    pub ext_masters: bool,
}

/// `--ext-sharing` and `--ext-masters`.
fn ext_prop(c: &Common) -> crate::objects::ns::mnt::ExtPropagation {
    crate::objects::ns::mnt::ExtPropagation {
        sharing: c.ext_sharing,
        masters: c.ext_masters,
    }
}

/// The external mounts of `--external mnt[KEY]:VAL` and `--ext-mount-map`.
fn ext_mounts(c: &Common) -> Result<Vec<crate::objects::ns::mnt::ExtMount>, Error> {
    use crate::objects::ns::mnt::ExtMount;
    let mut out = Vec::new();
    for e in &c.external {
        if let Some(m) = ExtMount::from_external(e) {
            out.push(m.map_err(|w| Error::Usage(format!("--external {w}")))?);
        }
    }
    for m in &c.ext_mount_map {
        out.push(ExtMount::from_map(m).map_err(|w| Error::Usage(format!("--ext-mount-map {w}")))?);
    }
    Ok(out)
}

/// The outside ends of veths asked for with `--external veth[…]` and
/// `--veth-pair`.
fn veths(c: &Common) -> Result<Vec<crate::objects::ns::net::VethOutside>, Error> {
    use crate::objects::ns::net::VethOutside;
    let mut out = Vec::new();
    for e in &c.external {
        match VethOutside::from_external(e) {
            Some(v) => out.push(v.map_err(|w| Error::Usage(format!("--external {w}")))?),
            None if e.starts_with("mnt[") => {}
            None => {
                return Err(Error::Usage(format!(
                    "--external {e}: criu-rs knows only veth[IFNAME]:OUTNAME[@BRIDGE] and mnt[KEY]:VAL resources"
                )))
            }
        }
    }
    for p in &c.veth_pair {
        out.push(VethOutside::from_pair(p).map_err(|w| Error::Usage(format!("--veth-pair {w}")))?);
    }
    Ok(out)
}

/// `--manage-cgroups[=MODE]` (clap has checked the name); the options
/// that would change which properties are kept are refused by name.
fn cgroup_mode(c: &Common) -> Result<CgMode, Error> {
    for (opt, set) in [
        ("--cgroup-props", c.cgroup_props.is_some()),
        ("--cgroup-props-file", c.cgroup_props_file.is_some()),
        (
            "--cgroup-dump-controller",
            !c.cgroup_dump_controller.is_empty(),
        ),
    ] {
        if set {
            return Err(Error::Usage(format!(
                "{opt}: not supported by criu-rs (it keeps its built-in list of cgroup properties)"
            )));
        }
    }
    let name = c.manage_cgroups.as_deref().unwrap_or("soft");
    CgMode::parse(name)
        .ok_or_else(|| Error::Usage(format!("--manage-cgroups={name}: unknown mode")))
}

/// `--file-validation METHOD` (clap has checked the name).
fn file_validation(c: &Common) -> Option<crate::objects::files::reg::Validation> {
    c.file_validation
        .as_deref()
        .and_then(crate::objects::files::reg::Validation::parse)
}

/// `--inherit-fd fd[N]:KEY`: criu's fd N stands for the file named KEY.
pub fn parse_inherit_fd(s: &str) -> Result<(i32, String), String> {
    let bad = || format!("invalid --inherit-fd {s:?}: expected fd[N]:KEY");
    let rest = s.strip_prefix("fd[").ok_or_else(bad)?;
    let (n, key) = rest.split_once("]:").ok_or_else(bad)?;
    let fd: i32 = n.parse().map_err(|_| bad())?;
    if fd < 0 || key.is_empty() {
        return Err(bad());
    }
    Ok((fd, key.to_string()))
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
    /// Release the network lock (`--network-lock nftables`) of the dump in
    /// the images directory, for a dump that will not be restored.
    #[command(name = "network-unlock")]
    NetworkUnlock,
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
    /// Freeze this cgroup (v2, or a v1 freezer: the tree's cgroup) while the tree
    /// is seized, so that no task forks or exits meanwhile.
    #[arg(long = "freeze-cgroup", value_name = "PATH")]
    pub freeze_cgroup: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Detach from the restored tree once it runs, instead of waiting for it.
    #[arg(short = 'd', long = "restore-detached")]
    pub restore_detached: bool,
    /// Make the restored root a child of criu's parent, not of criu
    /// (needs --restore-detached).
    #[arg(short = 'S', long = "restore-sibling")]
    pub restore_sibling: bool,
    /// Use criu's fd N for the file the images name KEY (`pipe:[INODE]`,
    /// or a regular file's path without its leading `/`).
    #[arg(long = "inherit-fd", value_name = "fd[N]:KEY", value_parser = parse_inherit_fd,
          action = clap::ArgAction::Append)]
    pub inherit_fd: Vec<(i32, String)>,
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
    #[error("network-unlock: {0}")]
    Unlock(#[source] crate::objects::Error),
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

/// Where the command's name stands in `args` (after the program name and
/// any options before it), found with the option table of [`Cli`].
fn command_index(args: &[String]) -> Option<usize> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut takes_value = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    let all = std::iter::once(&cmd).chain(cmd.get_subcommands());
    for c in all {
        for a in c.get_arguments() {
            // An optional value (`--manage-cgroups[=MODE]`) is never the
            // next argument.
            if a.get_action().takes_values() && !a.is_positional() && !a.is_require_equals_set() {
                takes_value.extend(a.get_long().map(|l| format!("--{l}")));
                takes_value.extend(a.get_short().map(|s| format!("-{s}")));
            }
        }
    }
    for c in cmd.get_subcommands() {
        names.insert(c.get_name().to_string());
    }
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            return None;
        }
        if takes_value.contains(a) {
            i += 2;
            continue;
        }
        if a.starts_with('-') {
            i += 1;
            continue;
        }
        return names.contains(a).then_some(i);
    }
    None
}

/// The command line with the options of the configuration files put in,
/// so that they count as if given before every option of the command line
/// (which then overrides them): `criu COMMAND <files' options> <the rest>`.
///
/// As CRIU does, `--help` skips the files (a broken file must not hide the
/// help), `--config FILE` reads FILE and no default file, and
/// `--no-default-config` reads neither default file; `$CRIU_CONFIG_FILE`
/// is read in every case.
pub fn with_config(
    args: Vec<String>,
    sources: &config::Sources,
) -> Result<Vec<String>, config::Error> {
    let mut defaults = true;
    let mut explicit = None;
    for (i, a) in args.iter().enumerate().skip(1) {
        match a.as_str() {
            "-h" | "--help" => return Ok(args),
            "--no-default-config" => defaults = false,
            "--config" => {
                explicit = args.get(i + 1).map(PathBuf::from);
                defaults = false;
            }
            _ => {
                if let Some(f) = a.strip_prefix("--config=") {
                    explicit = Some(PathBuf::from(f));
                    defaults = false;
                }
            }
        }
    }
    // An option whose value is optional takes it only after `=`.
    let glued: std::collections::HashSet<String> = {
        use clap::CommandFactory;
        let cmd = Cli::command();
        std::iter::once(&cmd)
            .chain(cmd.get_subcommands())
            .flat_map(|c| c.get_arguments())
            .filter(|a| a.is_require_equals_set())
            .filter_map(|a| a.get_long().map(str::to_string))
            .collect()
    };
    let from_files: Vec<String> = sources
        .entries(defaults, explicit.as_deref())?
        .iter()
        .flat_map(|(_, e)| match &e.value {
            Some(v) if glued.contains(&e.option) => vec![format!("--{}={v}", e.option)],
            _ => e.to_args(),
        })
        .collect();
    if from_files.is_empty() {
        return Ok(args);
    }
    let idx = command_index(&args);
    let mut out = Vec::with_capacity(args.len() + from_files.len());
    out.extend(args.first().cloned());
    out.extend(idx.map(|i| args[i].clone()));
    out.extend(from_files);
    out.extend(
        args.into_iter()
            .enumerate()
            .skip(1)
            .filter(|&(i, _)| Some(i) != idx)
            .map(|(_, a)| a),
    );
    Ok(out)
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

/// The `--action-script` programs of the command line.
fn scripts(c: &Common, images_dir: &Path) -> crate::scripts::Scripts {
    crate::scripts::Scripts {
        paths: c.action_script.clone(),
        images_dir: images_dir.to_path_buf(),
    }
}

/// Prints a line for people: into the log file when there is one, else on
/// stderr.
fn say(log: Option<&Path>, line: &str) {
    let to_file = log.filter(|p| p.as_os_str() != "-").and_then(|p| {
        OpenOptions::new()
            .append(true)
            .open(p)
            .and_then(|mut f| writeln!(f, "{line}"))
            .ok()
    });
    if to_file.is_none() {
        eprintln!("{line}");
    }
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

/// One line on a finished dump, from its `stats-dump`: how long the tree
/// was frozen, how many pages were written and how fast.
pub fn dump_summary(d: &pb::DumpStatsEntry) -> String {
    const PAGE: u64 = 4096;
    let pages = d.pages_written + d.shpages_written.unwrap_or(0);
    let bytes = pages * PAGE;
    let mib = bytes as f64 / (1024.0 * 1024.0);
    let secs = f64::from(d.memdump_time.saturating_add(d.memwrite_time)) / 1e6;
    let rate = if secs > 0.0 {
        format!("{:.1} MiB/s", mib / secs)
    } else {
        "n/a".to_string()
    };
    format!(
        "dump summary: frozen for {:.1} ms (freezing took {:.1} ms), memory dumped in {:.1} ms; {} pages written ({} private, {} shared), {} bytes ({:.1} MiB), {}",
        ms(d.frozen_time),
        ms(d.freezing_time),
        ms(d.memdump_time.saturating_add(d.memwrite_time)),
        pages,
        d.pages_written,
        d.shpages_written.unwrap_or(0),
        bytes,
        mib,
        rate
    )
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
            // Membership, directories and properties are always recorded
            // (the mode is for the restore); refused options fail here.
            cgroup_mode(c)?;
            let log = setup_log(c)?;
            let opts = dump::DumpOpts {
                pid: a.tree,
                images_dir: dir,
                leave_running: a.leave_running,
                shell_job: c.shell_job,
                tcp_established: c.tcp_established,
                tcp_close: c.tcp_close,
                ghost_limit: c.ghost_limit,
                file_locks: c.file_locks,
                ext_unix_sk: c.ext_unix_sk,
                network_lock,
                prev_images_dir: c.prev_images_dir.clone(),
                track_mem: c.track_mem,
                ext_mounts: ext_mounts(c)?,
                ext_prop: ext_prop(c),
                file_validation: file_validation(c).unwrap_or_default(),
                link_remap: c.link_remap,
            };
            let scripts = scripts(c, &opts.images_dir);
            let cg = a
                .freeze_cgroup
                .as_deref()
                .map(crate::rpc::cgfreeze::CgFreeze::new)
                .transpose()
                .map_err(Error::Usage)?;
            let notify = crate::rpc::cgfreeze::FreezeAfterPreDump {
                inner: &scripts,
                cg: cg.as_ref(),
            };
            let result = dump::dump_with(&opts, &notify);
            let thawed = cg.as_ref().map_or(Ok(()), |cg| cg.thaw());
            result.inspect_err(|e| tracing::error!("dump failed: {e}"))?;
            thawed.map_err(|e| Error::Usage(format!("--freeze-cgroup: {e}")))?;
            tracing::info!("dumping finished successfully");
            if c.verbosity >= 2 {
                let stats: Result<pb::StatsEntry, _> =
                    image::read_one(&opts.images_dir, "stats-dump", magic::STATS);
                match stats.map(|s| s.dump) {
                    Ok(Some(d)) => say(log.as_deref(), &dump_summary(&d)),
                    Ok(None) => tracing::warn!("stats-dump has no dump statistics"),
                    Err(e) => tracing::warn!("no summary: {e}"),
                }
            }
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
            let cgroup_mode = cgroup_mode(c)?;
            let veths = veths(c)?;
            setup_log(c)?;
            let inherit_fds = a
                .inherit_fd
                .iter()
                .map(|(fd, key)| crate::rpc::inherited(key, *fd))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::Usage)?;
            let opts = restore::RestoreOpts {
                veths,
                root: c.root.clone(),
                ext_mounts: ext_mounts(c)?,
                ext_prop: ext_prop(c),
                images_dir: dir,
                detach: a.restore_detached,
                shell_job: c.shell_job,
                tcp_established: c.tcp_established,
                tcp_close: c.tcp_close,
                file_locks: c.file_locks,
                ext_unix_sk: c.ext_unix_sk,
                network_lock,
                empty_ns: if c.empty_ns.is_some() {
                    libc::CLONE_NEWNET as u32
                } else {
                    0
                },
                cgroup_mode,
                cgroup_roots: c.cgroup_root.clone(),
                join_ns: c.join_ns.clone(),
                sibling: a.restore_sibling,
                inherit_fds,
                file_validation: file_validation(c),
            };
            let pidfile = c.pidfile.as_ref().map(|p| in_work_dir(c, p));
            let write_pid = |pid: i32| -> std::io::Result<()> {
                match &pidfile {
                    Some(p) => std::fs::write(p, format!("{pid}\n")),
                    None => Ok(()),
                }
            };
            let scripts = scripts(c, &opts.images_dir);
            let outcome = restore::restore_with(&opts, &write_pid, &scripts)
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
        Command::NetworkUnlock => {
            let dir = images_dir(c)?;
            setup_log(c)?;
            let table = crate::objects::files::netlock::unlock_dump(&dir).map_err(Error::Unlock)?;
            if table {
                println!(
                    "the network lock of the dump in {} is released",
                    dir.display()
                );
            } else {
                println!(
                    "the dump in {} holds no network lock any more (restored, or released already)",
                    dir.display()
                );
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn sources(dir: &Path, global: &str, home: &str) -> config::Sources {
        std::fs::write(dir.join("global.conf"), global).unwrap();
        std::fs::create_dir_all(dir.join(".criu")).unwrap();
        std::fs::write(dir.join(".criu/default.conf"), home).unwrap();
        config::Sources {
            global: Some(dir.join("global.conf")),
            home: Some(dir.to_path_buf()),
            env_file: None,
        }
    }

    fn parsed(a: Vec<String>) -> Cli {
        Cli::try_parse_from(normalize_args(a)).unwrap()
    }

    #[test]
    fn manage_cgroups_in_a_file_keeps_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path(), "manage-cgroups ignore\n", "");
        let got = with_config(args("criu restore -D /imgs"), &s).unwrap();
        assert_eq!(got, args("criu restore --manage-cgroups=ignore -D /imgs"));
        assert_eq!(cgroup_mode(&parsed(got).common).ok(), Some(CgMode::Ignore));
        let s = sources(dir.path(), "manage-cgroups\n", "");
        let got = with_config(args("criu restore -D /imgs"), &s).unwrap();
        assert_eq!(cgroup_mode(&parsed(got).common).ok(), Some(CgMode::Soft));
    }

    #[test]
    fn files_come_after_the_command_and_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(
            dir.path(),
            "verbosity 1\nlog-file g.log\n",
            "log-file h.log\n",
        );
        let got = with_config(args("criu -D /imgs dump -t 5"), &s).unwrap();
        assert_eq!(
            got,
            args("criu dump --verbosity 1 --log-file g.log --log-file h.log -D /imgs -t 5")
        );
        let cli = parsed(got);
        assert_eq!(cli.common.log_file.as_deref(), Some(Path::new("h.log")));
        assert_eq!(cli.common.verbosity, 1);
        // The command line wins, wherever it puts its options.
        let cli = parsed(with_config(args("criu -o c.log -v4 dump -t 5"), &s).unwrap());
        assert_eq!(cli.common.log_file.as_deref(), Some(Path::new("c.log")));
        assert_eq!(cli.common.verbosity, 4);
    }

    #[test]
    fn no_default_config_and_config_skip_the_default_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path(), "tcp-established\n", "file-locks\n");
        let cli = parsed(with_config(args("criu dump -t 5 --no-default-config"), &s).unwrap());
        assert!(!cli.common.tcp_established && !cli.common.file_locks);
        let mine = dir.path().join("mine.conf");
        std::fs::write(&mine, "shell-job\nleave-running\n").unwrap();
        let a = format!("criu dump -t 5 --config {}", mine.display());
        let cli = parsed(with_config(args(&a), &s).unwrap());
        assert!(!cli.common.tcp_established && !cli.common.file_locks);
        assert!(cli.common.shell_job);
        assert!(matches!(
            cli.command,
            Some(Command::Dump(DumpArgs {
                leave_running: true,
                tree: 5,
                ..
            }))
        ));
        let a = format!("criu dump -t 5 --config={}", mine.display());
        assert!(parsed(with_config(args(&a), &s).unwrap()).common.shell_job);
        // Without either, both default files count.
        let cli = parsed(with_config(args("criu dump -t 5"), &s).unwrap());
        assert!(cli.common.tcp_established && cli.common.file_locks);
    }

    #[test]
    fn file_options_parse_from_the_line_and_config_files() {
        use crate::objects::files::reg::Validation;
        let cli = parsed(args("criu restore --file-validation buildid"));
        assert_eq!(file_validation(&cli.common), Some(Validation::BuildId));
        let cli = parsed(args("criu restore"));
        assert_eq!(file_validation(&cli.common), None);
        assert!(!cli.common.link_remap);
        let cli = parsed(args(
            "criu dump -t 3 --link-remap --file-validation filesize",
        ));
        assert!(cli.common.link_remap);
        assert_eq!(file_validation(&cli.common), Some(Validation::FileSize));
        assert!(
            Cli::try_parse_from(normalize_args(args("criu restore --file-validation crc")))
                .is_err()
        );
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path(), "link-remap\nfile-validation buildid\n", "");
        let cli = parsed(with_config(args("criu dump -t 1"), &s).unwrap());
        assert!(cli.common.link_remap);
        assert_eq!(file_validation(&cli.common), Some(Validation::BuildId));
    }

    #[test]
    fn the_environment_file_counts_even_without_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(dir.path(), "", "ghost-limit 1K\n");
        let env = dir.path().join("env.conf");
        std::fs::write(&env, "ghost-limit 2K\n").unwrap();
        s.env_file = Some(env);
        let cli = parsed(with_config(args("criu dump -t 1"), &s).unwrap());
        assert_eq!(cli.common.ghost_limit, Some(2048));
        let cli = parsed(with_config(args("criu --no-default-config dump -t 1"), &s).unwrap());
        assert_eq!(cli.common.ghost_limit, Some(2048));
        let cli = parsed(with_config(args("criu dump -t 1 --ghost-limit 3K"), &s).unwrap());
        assert_eq!(cli.common.ghost_limit, Some(3072));
    }

    #[test]
    fn help_skips_broken_files_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path(), "verbosity 1 2\n", "");
        assert_eq!(
            with_config(args("criu --help"), &s).unwrap(),
            args("criu --help")
        );
        let e = with_config(args("criu dump -t 1"), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("global.conf") && e.contains("line 1"), "{e}");
        let e = with_config(args("criu dump --config /nonexistent/x.conf"), &s)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.conf"), "{e}");
    }

    #[test]
    fn options_taking_values_are_not_the_command() {
        let a = args("criu -D dump -o restore check");
        assert_eq!(command_index(&a), Some(5));
        assert_eq!(command_index(&args("criu -V")), None);
        assert_eq!(command_index(&args("criu --verbosity=3 swrk 7")), Some(2));
    }

    #[test]
    fn action_scripts_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let s = sources(dir.path(), "action-script /a\n", "action-script /b\n");
        let cli = parsed(with_config(args("criu dump -t 1 --action-script /c"), &s).unwrap());
        assert_eq!(
            cli.common.action_script,
            [Path::new("/a"), Path::new("/b"), Path::new("/c")]
        );
    }

    #[test]
    fn the_dump_summary_has_time_pages_bytes_and_rate() {
        let d = pb::DumpStatsEntry {
            freezing_time: 1500,
            frozen_time: 250_000,
            memdump_time: 200_000,
            pages_written: 256,
            shpages_written: Some(256),
            ..Default::default()
        };
        let s = dump_summary(&d);
        for want in [
            "frozen for 250.0 ms",
            "freezing took 1.5 ms",
            "512 pages written",
            "2097152 bytes",
            "2.0 MiB",
            "10.0 MiB/s",
        ] {
            assert!(s.contains(want), "{want:?} not in {s:?}");
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
    fn veth_outside_ends_from_external_and_veth_pair() {
        let c = common(&[
            "restore",
            "--external",
            "veth[eth0]:vh0@br0",
            "--veth-pair",
            "eth1=vh1",
        ]);
        let v = veths(&c).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(
            (
                v[0].inside.as_str(),
                v[0].outside.as_str(),
                v[0].bridge.as_deref()
            ),
            ("eth0", "vh0", Some("br0"))
        );
        assert_eq!(
            (v[1].inside.as_str(), v[1].bridge.as_deref()),
            ("eth1", None)
        );
        let bad = common(&["restore", "--external", "dev[x]:y"]);
        assert!(veths(&bad)
            .unwrap_err()
            .to_string()
            .contains("veth[IFNAME]"));
    }

    #[test]
    fn external_mounts_from_external_and_ext_mount_map() {
        let c = common(&[
            "restore",
            "--external",
            "mnt[/proc/keys]:null",
            "--external",
            "veth[eth0]:vh0",
            "-M",
            "cg:/sys/fs/cgroup/cpu",
            "--root",
            "/tmp/r",
        ]);
        let m = ext_mounts(&c).unwrap();
        let pairs: Vec<_> = m.iter().map(|e| (e.key.as_str(), e.val.as_str())).collect();
        assert_eq!(
            pairs,
            [("/proc/keys", "null"), ("cg", "/sys/fs/cgroup/cpu")]
        );
        assert_eq!(veths(&c).unwrap().len(), 1);
        assert_eq!(c.root.as_deref(), Some(Path::new("/tmp/r")));
        for bad in [
            ["--external", "mnt[]"],
            ["--external", "mnt[x]"],
            ["-M", "nocolon"],
        ] {
            let c = common(&["dump", "-t", "1", bad[0], bad[1]]);
            assert!(ext_mounts(&c).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ext_unix_sk_has_crius_spellings() {
        assert!(common(&["dump", "-t", "1", "--ext-unix-sk"]).ext_unix_sk);
        assert!(common(&["-x", "restore"]).ext_unix_sk);
        assert!(!common(&["restore"]).ext_unix_sk);
    }
}

#[cfg(test)]
mod runc_option_tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["criu"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).expect("parses")
    }

    #[test]
    fn manage_cgroups_takes_crius_modes_and_refuses_what_it_cannot_do() {
        let mode = |args: &[&str]| cgroup_mode(&parse(args).common);
        assert_eq!(mode(&["restore"]).ok(), Some(CgMode::Soft));
        assert_eq!(
            mode(&["restore", "--manage-cgroups"]).ok(),
            Some(CgMode::Soft)
        );
        assert_eq!(
            mode(&["--manage-cgroups=ignore", "restore"]).ok(),
            Some(CgMode::Ignore)
        );
        assert_eq!(
            mode(&["dump", "-t", "1", "--manage-cgroups=soft"]).ok(),
            Some(CgMode::Soft)
        );
        for (m, want) in [
            ("full", CgMode::Full),
            ("strict", CgMode::Strict),
            ("props", CgMode::Props),
            ("none", CgMode::None),
        ] {
            assert_eq!(
                mode(&["restore", &format!("--manage-cgroups={m}")]).ok(),
                Some(want)
            );
        }
        for opt in [
            "--cgroup-props=x",
            "--cgroup-props-file=/f",
            "--cgroup-dump-controller=cpu",
        ] {
            let e = mode(&["dump", "-t", "1", opt])
                .expect_err("refused")
                .to_string();
            let name = opt.split('=').next().unwrap_or_default();
            assert!(e.contains(name) && e.contains("not supported"), "{e}");
        }
        assert!(Cli::try_parse_from(["criu", "restore", "--manage-cgroups=bogus"]).is_err());
        // A bare --manage-cgroups does not swallow the command after it.
        let args: Vec<String> = ["criu", "--manage-cgroups", "restore", "-D", "x"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(command_index(&args), Some(2));
        assert!(matches!(
            parse(&["--manage-cgroups", "restore"]).command,
            Some(Command::Restore(_))
        ));
    }

    #[test]
    fn inherit_fd_and_restore_sibling() {
        assert_eq!(
            parse_inherit_fd("fd[7]:pipe:[1234]"),
            Ok((7, "pipe:[1234]".to_string()))
        );
        assert_eq!(
            parse_inherit_fd("fd[0]:tmp/log"),
            Ok((0, "tmp/log".to_string()))
        );
        for bad in [
            "fd[x]:a",
            "fd[1]:",
            "fd[-1]:a",
            "7:pipe",
            "fd[1]pipe",
            "debug[1]:x",
        ] {
            assert!(parse_inherit_fd(bad).is_err(), "{bad}");
        }
        let Some(Command::Restore(a)) = parse(&[
            "restore",
            "-d",
            "-S",
            "--inherit-fd",
            "fd[3]:pipe:[9]",
            "--inherit-fd=fd[4]:tmp/x",
        ])
        .command
        else {
            panic!("not a restore");
        };
        assert!(a.restore_sibling && a.restore_detached);
        assert_eq!(
            a.inherit_fd,
            vec![(3, "pipe:[9]".to_string()), (4, "tmp/x".to_string())]
        );
        assert!(matches!(
            parse(&["restore", "-d"]).command,
            Some(Command::Restore(a)) if !a.restore_sibling && a.inherit_fd.is_empty()
        ));
    }
}
