//! Layer 6: CRIU's RPC protocol, as `criu swrk FD` and `criu service`.
//!
//! A client sends one `criu_req` per SOCK_SEQPACKET packet (no length
//! prefix: the packet is the message) and gets one `criu_resp` back, with
//! `criu_notify` round trips in between when it asked for notify scripts.
//! `swrk` serves the socket it inherited as fd FD until the client closes it;
//! `service` listens on a unix socket and serves each connection in a fresh
//! `criu swrk` of its own, as upstream forks one worker per connection.
//!
//! Directories the client names by fd (`images_dir_fd`, `work_dir_fd`) are
//! numbers in the client's fd table, reached through
//! `/proc/<client pid>/fd/<N>`; the client's pid is the socket's peer
//! credential.

pub mod cgfreeze;
pub mod config;
pub mod log;
pub mod opts;

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{self, sockopt, MsgFlags};
use prost::Message;
use tracing::{debug, error, info, warn};

use crate::cli::{self, CRIU_VERSION};
use crate::{dump, restore, sys};
use opts::Action;

/// The RPC messages, generated from our own `proto/rpc.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/criu.rpc.rs"));
}

use pb::{CriuNotify, CriuOpts, CriuReq, CriuReqType, CriuResp};

/// Errors of the RPC layer: the socket itself failed, so no answer can be
/// given. Failures of a request are answered to the client instead
/// (`success = false`, `cr_errmsg`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rpc socket fd {fd}: {what}: {source}")]
    Socket {
        fd: RawFd,
        what: &'static str,
        #[source]
        source: Errno,
    },
    #[error("rpc socket fd {fd}: cannot decode a criu_req of {len} bytes: {source}")]
    Decode {
        fd: RawFd,
        len: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error("rpc socket fd {fd}: {what}")]
    Protocol { fd: RawFd, what: String },
    #[error("service socket {path}: {what}: {source}")]
    Service {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The whole chain of an error, as one line for `cr_errmsg`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

/// Takes ownership of fd number `raw`, inherited from the parent, as a
/// close-on-exec duplicate (pidfd_getfd on ourselves), and closes `raw`.
pub fn adopt_fd(raw: RawFd) -> Result<OwnedFd> {
    let err = |what, source| Error::Socket {
        fd: raw,
        what,
        source,
    };
    let me = sys::pidfd::pidfd_open(std::process::id() as i32)
        .map_err(|e| err("pidfd_open of criu itself", e))?;
    let fd = sys::pidfd::pidfd_getfd(&me, raw).map_err(|e| err("taking the inherited fd", e))?;
    nix::unistd::close(raw).map_err(|e| err("closing the inherited number", e))?;
    Ok(fd)
}

/// `inherit_fd { key, fd }`: criu's own fd `fd` (inherited from the
/// client) stands for the file of the images named `key`; criu keeps a
/// close-on-exec duplicate.
pub fn inherited(
    key: &str,
    fd: RawFd,
) -> std::result::Result<crate::objects::files::InheritFd, String> {
    if key.is_empty() {
        return Err(format!("inherit_fd: fd {fd} has an empty key"));
    }
    let dup = sys::pidfd::pidfd_open(std::process::id() as i32)
        .and_then(|me| sys::pidfd::pidfd_getfd(&me, fd))
        .map_err(|e| format!("inherit_fd {key}: criu has no fd {fd}: {e}"))?;
    Ok(crate::objects::files::InheritFd {
        key: key.to_string(),
        fd: std::sync::Arc::new(dup),
    })
}

fn fail(ty: CriuReqType, msg: impl Into<String>) -> CriuResp {
    let msg = msg.into();
    error!("{:?} request failed: {msg}", ty);
    CriuResp {
        r#type: ty as i32,
        success: false,
        cr_errmsg: Some(msg),
        ..Default::default()
    }
}

fn ok(ty: CriuReqType) -> CriuResp {
    CriuResp {
        r#type: ty as i32,
        success: true,
        ..Default::default()
    }
}

/// One client connection.
pub struct Conn {
    sk: OwnedFd,
    /// The client's pid (socket peer credentials).
    peer: i32,
}

impl Conn {
    pub fn new(sk: OwnedFd) -> Result<Conn> {
        let cred =
            socket::getsockopt(&sk, sockopt::PeerCredentials).map_err(|source| Error::Socket {
                fd: sk.as_raw_fd(),
                what: "SO_PEERCRED",
                source,
            })?;
        Ok(Conn {
            sk,
            peer: cred.pid(),
        })
    }

    /// The client's pid.
    pub fn peer(&self) -> i32 {
        self.peer
    }

    fn fd(&self) -> RawFd {
        self.sk.as_raw_fd()
    }

    /// The next request, or `None` once the client has closed its end.
    pub fn recv(&self) -> Result<Option<CriuReq>> {
        let fd = self.fd();
        let len = loop {
            match socket::recv(fd, &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
                Err(Errno::EINTR) => continue,
                Err(Errno::ECONNRESET) => return Ok(None),
                Err(source) => {
                    return Err(Error::Socket {
                        fd,
                        what: "peeking at a request",
                        source,
                    })
                }
                Ok(n) => break n,
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len];
        let n = loop {
            match socket::recv(fd, &mut buf, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                Err(source) => {
                    return Err(Error::Socket {
                        fd,
                        what: "reading a request",
                        source,
                    })
                }
                Ok(n) => break n,
            }
        };
        CriuReq::decode(&buf[..n])
            .map(Some)
            .map_err(|source| Error::Decode { fd, len: n, source })
    }

    /// Sends one response as one packet.
    pub fn send(&self, resp: &CriuResp) -> Result<()> {
        let fd = self.fd();
        let buf = resp.encode_to_vec();
        loop {
            match socket::send(fd, &buf, MsgFlags::MSG_NOSIGNAL) {
                Err(Errno::EINTR) => continue,
                Err(source) => {
                    return Err(Error::Socket {
                        fd,
                        what: "sending a response",
                        source,
                    })
                }
                Ok(n) if n != buf.len() => {
                    return Err(Error::Protocol {
                        fd,
                        what: format!("response cut short: {n} of {} bytes sent", buf.len()),
                    })
                }
                Ok(_) => return Ok(()),
            }
        }
    }

    /// The client, as told of action points by `criu_notify` messages.
    pub fn notifier(&self) -> RpcNotify<'_> {
        RpcNotify(self)
    }

    /// Tells the client that `script` is due and waits for its go-ahead.
    pub fn notify(&self, script: &str, pid: Option<i32>) -> std::result::Result<(), String> {
        debug!(script, ?pid, "notifying the client");
        let msg = CriuResp {
            notify: Some(CriuNotify {
                script: Some(script.to_string()),
                pid,
            }),
            ..ok(CriuReqType::Notify)
        };
        self.send(&msg).map_err(|e| chain(&e))?;
        match self.recv() {
            Ok(Some(r)) if r.r#type == CriuReqType::Notify as i32 && r.notify_success() => Ok(()),
            Ok(Some(_)) => Err(format!(
                "the client reported failure of notify script {script}"
            )),
            Ok(None) => Err(format!(
                "the client went away during notify script {script}"
            )),
            Err(e) => Err(chain(&e)),
        }
    }

    /// `/proc/<client>/fd/<fd>`: a directory the client passed by number.
    fn client_fd_path(&self, fd: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{fd}", self.peer))
    }

    /// The images and work directories of a request, checked to be there.
    fn dirs(&self, o: &CriuOpts) -> std::result::Result<(PathBuf, PathBuf), String> {
        self.dirs_with(o, None)
    }

    fn dirs_with(
        &self,
        o: &CriuOpts,
        work_dir: Option<&Path>,
    ) -> std::result::Result<(PathBuf, PathBuf), String> {
        let images = if o.images_dir_fd >= 0 {
            self.client_fd_path(o.images_dir_fd)
        } else if let Some(d) = &o.images_dir {
            PathBuf::from(d)
        } else {
            return Err("neither images_dir_fd nor images_dir was given".into());
        };
        match std::fs::metadata(&images) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "images dir {} is not a directory",
                    images.display()
                ))
            }
            Err(e) => return Err(format!("images dir {}: {e}", images.display())),
        }
        let work = match (o.work_dir_fd, work_dir) {
            (Some(fd), _) if fd >= 0 => self.client_fd_path(fd),
            (_, Some(w)) => w.to_path_buf(),
            _ => images.clone(),
        };
        Ok((images, work))
    }

    /// Points the log at the request's `log_file` in the work dir.
    fn setup_log(&self, o: &CriuOpts, work: &Path) -> std::result::Result<(), String> {
        let name = o.log_file.as_deref().unwrap_or("criu.log");
        if name.contains('/') {
            return Err(format!(
                "log_file {name:?}: no directories are allowed (use work_dir_fd)"
            ));
        }
        let path = work.join(name);
        log::set(Some(&path), o.log_to_stderr(), o.log_level())
            .map_err(|e| format!("log file {}: {e}", path.display()))
    }

    /// Serves requests until the client closes the socket.
    pub fn serve(&self) -> Result<()> {
        info!(peer = self.peer, "serving RPC requests");
        while let Some(req) = self.recv()? {
            let resp = self.handle(&req);
            self.send(&resp)?;
        }
        debug!("the client closed the RPC socket");
        Ok(())
    }

    /// Serves one request and gives its response.
    pub fn handle(&self, req: &CriuReq) -> CriuResp {
        let Ok(ty) = CriuReqType::try_from(req.r#type) else {
            return fail(
                CriuReqType::Empty,
                format!("invalid request type {}", req.r#type),
            );
        };
        debug!("request {:?}", ty);
        match ty {
            CriuReqType::Version => version(),
            CriuReqType::Check => self.check(req.opts.as_ref()),
            CriuReqType::FeatureCheck => feature_check(req),
            CriuReqType::Dump => self.dump(req.opts.as_ref(), false),
            CriuReqType::PreDump => self.dump(req.opts.as_ref(), true),
            CriuReqType::Restore => self.restore(req.opts.as_ref()),
            CriuReqType::WaitPid => wait_pid(req.pid),
            CriuReqType::SinglePreDump
            | CriuReqType::PageServer
            | CriuReqType::PageServerChld
            | CriuReqType::CpuinfoDump
            | CriuReqType::CpuinfoCheck => fail(
                ty,
                format!(
                    "{} requests are not supported by criu-rs yet",
                    ty.as_str_name()
                ),
            ),
            CriuReqType::Empty | CriuReqType::Notify => fail(
                CriuReqType::Empty,
                format!("invalid request type {}", ty.as_str_name()),
            ),
        }
    }

    fn check(&self, o: Option<&CriuOpts>) -> CriuResp {
        let ty = CriuReqType::Check;
        if let Some(o) = o {
            if o.log_file.is_some() {
                match self.dirs(o) {
                    Ok((_, work)) => {
                        if let Err(e) = self.setup_log(o, &work) {
                            return fail(ty, e);
                        }
                    }
                    Err(e) => return fail(ty, e),
                }
            }
        }
        let missing: Vec<String> = cli::check::FEATURES
            .iter()
            .filter(|f| f.required)
            .filter_map(|f| (f.probe)().err().map(|why| format!("{}: {why}", f.name)))
            .collect();
        if missing.is_empty() {
            ok(ty)
        } else {
            fail(
                ty,
                format!("required kernel features missing: {}", missing.join("; ")),
            )
        }
    }

    /// What dump and restore share: configuration files, refused options,
    /// directories, log.
    fn prepare(
        &self,
        ty: CriuReqType,
        o: Option<&CriuOpts>,
        action: Action,
    ) -> std::result::Result<Prepared, Box<CriuResp>> {
        let fail = |msg: String| Box::new(fail(ty, msg));
        let Some(o) = o else {
            return Err(fail(format!("a {} request needs opts", ty.as_str_name())));
        };
        let (o, extra) =
            config::resolve(o, &crate::cli::config::Sources::from_env()).map_err(fail)?;
        // The log first: a refusal below is then in the file the client
        // points its user at (runc prints only "log file: ...").
        let (images, work) = self
            .dirs_with(&o, extra.work_dir.as_deref())
            .map_err(fail)?;
        self.setup_log(&o, &work).map_err(fail)?;
        debug!("{} options: {o:?}", ty.as_str_name());
        let bad = opts::unsupported(&o, action);
        if !bad.is_empty() {
            return Err(fail(format!(
                "criu-rs does not support these {} options yet: {}",
                ty.as_str_name(),
                bad.join(", ")
            )));
        }
        let scripts = crate::scripts::Scripts {
            paths: extra.scripts,
            images_dir: images.clone(),
        };
        Ok(Prepared { o, images, scripts })
    }

    fn dump(&self, o: Option<&CriuOpts>, pre: bool) -> CriuResp {
        let ty = if pre {
            CriuReqType::PreDump
        } else {
            CriuReqType::Dump
        };
        let Prepared { o, images, scripts } = match self.prepare(ty, o, Action::Dump) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        let Some(pid) = o.pid else {
            return fail(
                ty,
                "pid: dumping the requesting process itself is not supported",
            );
        };
        info!(pid, images = %images.display(), "dump requested over RPC");
        let d = dump::DumpOpts {
            pid,
            images_dir: images.clone(),
            leave_running: o.leave_running(),
            shell_job: o.shell_job(),
            tcp_established: o.tcp_established(),
            tcp_close: o.tcp_close(),
            ghost_limit: o.ghost_limit.map(u64::from),
            file_locks: o.file_locks(),
            ext_unix_sk: o.ext_unix_sk(),
            network_lock: network_lock(&o),
            prev_images_dir: o.parent_img.clone().map(PathBuf::from),
            track_mem: o.track_mem() || pre,
            ext_mounts: ext_mounts(&o),
            ext_prop: crate::objects::ns::mnt::ExtPropagation {
                sharing: o.ext_sharing(),
                masters: o.ext_masters(),
            },
            link_remap: o.link_remap.unwrap_or(false),
            ..Default::default()
        };
        if pre {
            // A pre-dump leaves the tree running and sends no callbacks.
            if let Err(e) = dump::pre_dump(&d) {
                return fail(ty, chain(&e));
            }
            info!("pre-dumping finished successfully");
            return ok(ty);
        }
        let rpc = self.notifier();
        let silent = crate::scripts::Silent;
        let client: &dyn crate::scripts::Notify = if o.notify_scripts() { &rpc } else { &silent };
        let cg = match o.freeze_cgroup.as_deref().map(cgfreeze::CgFreeze::new) {
            None => None,
            Some(Ok(cg)) => Some(cg),
            Some(Err(e)) => return fail(ty, e),
        };
        let notify = cgfreeze::FreezeAfterPreDump {
            inner: &crate::scripts::Both(client, &scripts),
            cg: cg.as_ref(),
        };
        let result = dump::dump_with(&d, &notify);
        let thawed = cg.as_ref().map_or(Ok(()), |cg| cg.thaw());
        if let Err(e) = result {
            return fail(ty, chain(&e));
        }
        if let Err(e) = thawed {
            return fail(ty, format!("freeze_cgroup: {e}"));
        }
        info!("dumping finished successfully");
        if o.display_stats() {
            display_stats(&images, "stats-dump");
        }
        CriuResp {
            dump: Some(pb::CriuDumpResp {
                restored: Some(false),
            }),
            ..ok(ty)
        }
    }

    fn restore(&self, o: Option<&CriuOpts>) -> CriuResp {
        let ty = CriuReqType::Restore;
        let Prepared { o, images, scripts } = match self.prepare(ty, o, Action::Restore) {
            Ok(p) => p,
            Err(r) => return *r,
        };
        // Both need criu's caller to be its parent (criu swrk), as CRIU
        // requires: a service worker's parent is the service.
        let swrk = nix::unistd::getppid().as_raw() == self.peer;
        if o.rst_sibling() && !swrk {
            return fail(
                ty,
                "rst_sibling is only allowed in criu swrk, started by the client",
            );
        }
        if !o.inherit_fd.is_empty() && !swrk {
            return fail(
                ty,
                "inherit_fd is only allowed in criu swrk, started by the client",
            );
        }
        let inherit_fds = match o
            .inherit_fd
            .iter()
            .map(|i| inherited(&i.key, i.fd))
            .collect::<std::result::Result<Vec<_>, _>>()
        {
            Ok(v) => v,
            Err(e) => return fail(ty, e),
        };
        let cgroup_mode = match opts::cgroup_mode(&o) {
            Ok(m) => m,
            Err(e) => return fail(ty, e),
        };
        let r = restore::RestoreOpts {
            images_dir: images.clone(),
            detach: true,
            shell_job: o.shell_job(),
            tcp_established: o.tcp_established(),
            tcp_close: o.tcp_close(),
            file_locks: o.file_locks(),
            ext_unix_sk: o.ext_unix_sk(),
            network_lock: network_lock(&o),
            empty_ns: o.empty_ns(),
            cgroup_mode,
            cgroup_roots: o
                .cg_root
                .iter()
                .map(|r| crate::objects::ns::cgroup::NewRoot {
                    controller: r.ctrl.clone().filter(|c| !c.is_empty()),
                    path: r.path.clone(),
                })
                .collect(),
            join_ns: match o
                .join_ns
                .iter()
                .map(|j| {
                    crate::objects::ns::join::JoinNs::parse(
                        &j.ns,
                        &j.ns_file,
                        j.extra_opt.as_deref(),
                    )
                    .map_err(|e| format!("join_ns {e}"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()
            {
                Ok(v) => v,
                Err(e) => return fail(ty, e),
            },
            sibling: o.rst_sibling(),
            inherit_fds,
            veths: match veths(&o) {
                Ok(v) => v,
                Err(e) => return fail(ty, e),
            },
            root: o.root.clone().map(PathBuf::from),
            ext_mounts: ext_mounts(&o),
            ext_prop: crate::objects::ns::mnt::ExtPropagation {
                sharing: o.ext_sharing(),
                masters: o.ext_masters(),
            },
            ..Default::default()
        };
        let rpc = self.notifier();
        let silent = crate::scripts::Silent;
        let client: &dyn crate::scripts::Notify = if o.notify_scripts() { &rpc } else { &silent };
        let on_running = |_pid: i32| -> std::io::Result<()> { Ok(()) };
        match restore::restore_with(&r, &on_running, &crate::scripts::Both(client, &scripts)) {
            Ok(restore::Outcome::Detached(pid)) => {
                info!(pid, "restore finished successfully");
                if o.display_stats() {
                    display_stats(&images, "stats-restore");
                }
                CriuResp {
                    restore: Some(pb::CriuRestoreResp { pid }),
                    ..ok(ty)
                }
            }
            Ok(other) => fail(ty, format!("restore did not detach: {other:?}")),
            Err(e) => fail(ty, chain(&e)),
        }
    }
}

/// A request's options once configuration files are applied.
struct Prepared {
    o: CriuOpts,
    images: PathBuf,
    scripts: crate::scripts::Scripts,
}

/// The client, told of action points with `criu_notify` messages; only
/// `setup-namespaces` and `post-restore` carry the root's pid, as CRIU's do.
pub struct RpcNotify<'a>(&'a Conn);

impl crate::scripts::Notify for RpcNotify<'_> {
    fn notify(&self, action: crate::scripts::Action, root: i32) -> std::result::Result<(), String> {
        self.0
            .notify(action.name(), action.rpc_has_pid().then_some(root))
    }
}

/// `display_stats`: the statistics of the request, into the log.
fn display_stats(images: &Path, name: &str) {
    use crate::image::{magic, read_one};
    let s: std::result::Result<crate::image::pb::StatsEntry, _> =
        read_one(images, name, magic::STATS);
    match s {
        Ok(s) => {
            if let Some(d) = &s.dump {
                info!("{}", cli::dump_summary(d));
            }
            if let Some(r) = &s.restore {
                info!(
                    "restore statistics: forking {} us, restore {} us, {} pages restored",
                    r.forking_time,
                    r.restore_time,
                    r.pages_restored.unwrap_or(0)
                );
            }
        }
        Err(e) => warn!("display_stats: {e}"),
    }
}

fn version() -> CriuResp {
    let mut parts = CRIU_VERSION.split('.').map(|p| p.parse::<i32>().ok());
    let major = parts.next().flatten().unwrap_or(0);
    let minor = parts.next().flatten().unwrap_or(0);
    let sublevel = parts.next().flatten();
    CriuResp {
        version: Some(pb::CriuVersion {
            major_number: major,
            minor_number: minor,
            gitid: Some(format!("criu-rs-{}", env!("CARGO_PKG_VERSION"))),
            sublevel,
            extra: None,
            name: None,
        }),
        ..ok(CriuReqType::Version)
    }
}

/// Every feature answers false: memory tracking (pre-dump), lazy pages and
/// the pidfd store are not implemented by criu-rs, whatever the kernel has.
fn feature_check(req: &CriuReq) -> CriuResp {
    if req.features.is_none() {
        return fail(CriuReqType::FeatureCheck, "FEATURE_CHECK needs features");
    }
    CriuResp {
        features: Some(pb::CriuFeatures {
            mem_track: Some(false),
            lazy_pages: Some(false),
            pidfd_store: Some(false),
        }),
        ..ok(CriuReqType::FeatureCheck)
    }
}

/// Waits for a child of criu (a restored root) and gives its wait status
/// in waitpid(2)'s encoding.
fn wait_pid(pid: Option<u32>) -> CriuResp {
    use nix::sys::wait::{waitpid, WaitStatus};
    let ty = CriuReqType::WaitPid;
    let Some(pid) = pid else {
        return fail(ty, "WAIT_PID needs pid");
    };
    let p = nix::unistd::Pid::from_raw(pid as i32);
    loop {
        let status = match waitpid(p, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return CriuResp {
                    cr_errno: Some(e as i32),
                    ..fail(ty, format!("waiting for pid {pid}: {e}"))
                }
            }
            Ok(WaitStatus::Exited(_, code)) => (code & 0xff) << 8,
            Ok(WaitStatus::Signaled(_, sig, core)) => sig as i32 | if core { 0x80 } else { 0 },
            Ok(_) => continue,
        };
        return CriuResp {
            status: Some(status),
            ..ok(ty)
        };
    }
}

/// `criu swrk FD`: serves the inherited socket FD until the client closes it.
pub fn swrk(fd: RawFd) -> Result<()> {
    log::init();
    let conn = Conn::new(adopt_fd(fd)?)?;
    conn.serve()
}

/// `criu service`: listens on `address` and serves each connection in a
/// `criu swrk` child of its own.
pub fn service(address: &Path, daemon: bool, pidfile: Option<&Path>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    log::init();
    let _ = log::set(None, true, 2);
    let err = |what, source| Error::Service {
        path: address.to_path_buf(),
        what,
        source,
    };
    let sk = socket::socket(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err("socket", e.into()))?;
    let addr = socket::UnixAddr::new(address).map_err(|e| err("address", e.into()))?;
    match std::fs::remove_file(address) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("removing the old socket", e)),
    }
    socket::bind(sk.as_raw_fd(), &addr).map_err(|e| err("bind", e.into()))?;
    std::fs::set_permissions(address, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| err("chmod 0666", e))?;
    socket::listen(
        &sk,
        socket::Backlog::new(16).map_err(|e| err("backlog", e.into()))?,
    )
    .map_err(|e| err("listen", e.into()))?;
    info!(address = %address.display(), "the service socket is listening");
    if daemon {
        nix::unistd::daemon(true, false).map_err(|e| err("daemon", e.into()))?;
    }
    if let Some(p) = pidfile {
        std::fs::write(p, format!("{}\n", std::process::id())).map_err(|e| err("pidfile", e))?;
    }
    let exe = std::env::current_exe().map_err(|e| err("finding criu's own binary", e))?;
    loop {
        let raw = match socket::accept(sk.as_fd().as_raw_fd()) {
            Err(Errno::EINTR) | Err(Errno::ECONNABORTED) => continue,
            Err(e) => return Err(err("accept", e.into())),
            Ok(fd) => fd,
        };
        // accept(2) gives an fd without close-on-exec: the worker inherits
        // it under the same number.
        let child = std::process::Command::new(&exe)
            .arg("swrk")
            .arg(raw.to_string())
            .spawn();
        let _ = nix::unistd::close(raw);
        match child {
            Ok(mut c) => {
                debug!(worker = c.id(), "connection handed to a worker");
                std::thread::spawn(move || {
                    let _ = c.wait();
                });
            }
            Err(e) => error!("cannot start a worker: {e}"),
        }
    }
}

/// The network lock a request asks for. rpc.proto's default is IPTABLES,
/// which runc never sets: an absent field means criu-rs's default (skip);
/// an explicit IPTABLES is refused by `opts::unsupported`.
/// The outside ends of veths: `veths` (if_in, if_out) and the `external`
/// entries `veth[IFNAME]:OUTNAME[@BRIDGE]`.
fn veths(o: &CriuOpts) -> std::result::Result<Vec<crate::objects::ns::net::VethOutside>, String> {
    use crate::objects::ns::net::VethOutside;
    let mut out = Vec::new();
    for e in &o.external {
        if let Some(v) = VethOutside::from_external(e) {
            out.push(v.map_err(|w| format!("external: {w}"))?);
        }
    }
    for p in &o.veths {
        out.push(
            VethOutside::from_pair(&format!("{}={}", p.if_in, p.if_out))
                .map_err(|w| format!("veths: {w}"))?,
        );
    }
    Ok(out)
}

/// The external mounts of a request: `ext_mnt` (key, val) and the
/// `external` entries `mnt[KEY]:VAL` (both: at dump mount point → key, at
/// restore key → host path).
fn ext_mounts(o: &CriuOpts) -> Vec<crate::objects::ns::mnt::ExtMount> {
    use crate::objects::ns::mnt::ExtMount;
    let mut out: Vec<ExtMount> = o
        .external
        .iter()
        .filter_map(|e| ExtMount::from_external(e).and_then(|r| r.ok()))
        .collect();
    out.extend(o.ext_mnt.iter().map(|m| ExtMount {
        key: m.key.clone(),
        val: m.val.clone(),
    }));
    out
}

fn network_lock(o: &CriuOpts) -> crate::objects::files::netlock::Method {
    use crate::objects::files::netlock::Method;
    match o.network_lock.map(pb::CriuNetworkLockMethod::try_from) {
        Some(Ok(pb::CriuNetworkLockMethod::Nftables)) => Method::Nftables,
        _ => Method::Skip,
    }
}
