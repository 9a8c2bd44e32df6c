//! Configuration files in RPC mode.
//!
//! As CRIU does: the default files (and `$CRIU_CONFIG_FILE`) are read
//! first and give what the request leaves unset; the request's own
//! `config_file` (runc's `/etc/criu/runc.conf`) is read last and overrides
//! the request. A `config_file` that does not exist is no error (runc
//! always names one).
//!
//! Options are mapped onto the fields of `criu_opts`, so that what a file
//! asks for is honoured or refused exactly as the same field sent over RPC
//! would be. An option with no RPC field is refused by name.

use std::path::{Path, PathBuf};

use super::pb::{CriuCgMode, CriuNetworkLockMethod, CriuOpts};
use crate::cli::config::{self, Entry};

/// What a file may set that has no place in `criu_opts`.
#[derive(Debug, Default, Clone)]
pub struct Extra {
    /// `work-dir` of the request's own file: replaces `work_dir_fd`.
    pub work_dir: Option<PathBuf>,
    /// `action-script`s: run after the client's notification, as CRIU does.
    pub scripts: Vec<PathBuf>,
}

fn set<T>(slot: &mut Option<T>, v: T, over: bool) {
    if over || slot.is_none() {
        *slot = Some(v);
    }
}

/// Applies one entry; `over` says whether it overrides the request.
fn apply(o: &mut CriuOpts, x: &mut Extra, e: &Entry, over: bool) -> Result<(), String> {
    let val = || {
        e.value
            .clone()
            .ok_or_else(|| format!("option {} needs a value", e.option))
    };
    let num = |v: String| {
        v.parse::<u32>()
            .map_err(|_| format!("option {}: {v:?} is not a number", e.option))
    };
    // A flag may be written `flag` (on); CRIU takes no value for them.
    let flag = |slot: &mut Option<bool>| -> Result<(), String> {
        if let Some(v) = &e.value {
            return Err(format!("option {} takes no value (got {v:?})", e.option));
        }
        set(slot, true, over);
        Ok(())
    };
    match e.option.as_str() {
        "images-dir" => {
            // Only the request's own file may move the images (CRIU).
            if over {
                o.images_dir = Some(val()?);
                o.images_dir_fd = -1;
            }
        }
        "work-dir" => {
            if over || o.work_dir_fd.is_none() {
                x.work_dir = Some(PathBuf::from(val()?));
                if over {
                    o.work_dir_fd = None;
                }
            }
        }
        "log-file" => set(&mut o.log_file, val()?, over),
        "verbosity" => set(&mut o.log_level, num(val()?)? as i32, over),
        "action-script" => x.scripts.push(PathBuf::from(val()?)),
        "ghost-limit" => {
            let n =
                crate::cli::parse_size(&val()?).map_err(|m| format!("option ghost-limit: {m}"))?;
            let n = u32::try_from(n)
                .map_err(|_| format!("option ghost-limit: {n} does not fit RPC's 32 bits"))?;
            set(&mut o.ghost_limit, n, over)
        }
        "timeout" => set(&mut o.timeout, num(val()?)?, over),
        "root" => set(&mut o.root, val()?, over),
        "freeze-cgroup" => set(&mut o.freeze_cgroup, val()?, over),
        "lsm-profile" => set(&mut o.lsm_profile, val()?, over),
        "lsm-mount-context" => set(&mut o.lsm_mount_context, val()?, over),
        "manage-cgroups" => {
            let mode = match e.value.as_deref() {
                None | Some("soft") => CriuCgMode::Soft,
                Some("none") => CriuCgMode::CgNone,
                Some("props") => CriuCgMode::Props,
                Some("full") => CriuCgMode::Full,
                Some("strict") => CriuCgMode::Strict,
                Some("ignore") => CriuCgMode::Ignore,
                Some(m) => return Err(format!("option manage-cgroups: unknown mode {m:?}")),
            };
            set(&mut o.manage_cgroups, true, over);
            set(&mut o.manage_cgroups_mode, mode as i32, over);
        }
        "network-lock" => {
            let m = match val()?.as_str() {
                "iptables" => CriuNetworkLockMethod::Iptables,
                "nftables" => CriuNetworkLockMethod::Nftables,
                "skip" => CriuNetworkLockMethod::Skip,
                m => return Err(format!("option network-lock: unknown method {m:?}")),
            };
            set(&mut o.network_lock, m as i32, over)
        }
        "tcp-established" => flag(&mut o.tcp_established)?,
        "tcp-close" => flag(&mut o.tcp_close)?,
        "skip-in-flight" => flag(&mut o.tcp_skip_in_flight)?,
        "shell-job" => flag(&mut o.shell_job)?,
        "file-locks" => flag(&mut o.file_locks)?,
        "leave-running" => flag(&mut o.leave_running)?,
        "leave-stopped" => flag(&mut o.leave_stopped)?,
        "ext-unix-sk" => flag(&mut o.ext_unix_sk)?,
        "evasive-devices" => flag(&mut o.evasive_devices)?,
        "link-remap" => flag(&mut o.link_remap)?,
        "auto-dedup" => flag(&mut o.auto_dedup)?,
        "force-irmap" => flag(&mut o.force_irmap)?,
        "restore-sibling" => flag(&mut o.rst_sibling)?,
        "auto-ext-mnt" => flag(&mut o.auto_ext_mnt)?,
        "ext-sharing" => flag(&mut o.ext_sharing)?,
        "ext-masters" => flag(&mut o.ext_masters)?,
        "weak-sysctls" => flag(&mut o.weak_sysctls)?,
        "lazy-pages" => flag(&mut o.lazy_pages)?,
        "track-mem" => flag(&mut o.track_mem)?,
        "display-stats" => flag(&mut o.display_stats)?,
        "log-to-stderr" => flag(&mut o.log_to_stderr)?,
        "skip-file-rwx-check" => flag(&mut o.skip_file_rwx_check)?,
        "mntns-compat-mode" => flag(&mut o.mntns_compat_mode)?,
        "unprivileged" => flag(&mut o.unprivileged)?,
        "tls" => flag(&mut o.tls)?,
        other => {
            return Err(format!(
                "option {other} cannot be used in RPC mode by criu-rs"
            ))
        }
    }
    Ok(())
}

fn apply_all(
    o: &mut CriuOpts,
    x: &mut Extra,
    entries: &[(PathBuf, Entry)],
    over: bool,
) -> Result<(), String> {
    for (path, e) in entries {
        apply(o, x, e, over).map_err(|m| {
            format!(
                "configuration file {}, line {}: {m}",
                path.display(),
                e.line
            )
        })?;
    }
    Ok(())
}

/// The request's options with the configuration files applied, and what
/// they set beyond `criu_opts`.
pub fn resolve(o: &CriuOpts, sources: &config::Sources) -> Result<(CriuOpts, Extra), String> {
    let mut o = o.clone();
    let mut x = Extra::default();
    let defaults = sources.entries(true, None).map_err(|e| e.to_string())?;
    apply_all(&mut o, &mut x, &defaults, false)?;
    if let Some(f) = o.config_file.clone() {
        if let Some(es) = config::read(Path::new(&f), true).map_err(|e| e.to_string())? {
            let es: Vec<_> = es.into_iter().map(|e| (PathBuf::from(&f), e)).collect();
            apply_all(&mut o, &mut x, &es, true)?;
        }
    }
    Ok((o, x))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_fill_gaps_and_the_request_file_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let global = file(
            dir.path(),
            "g.conf",
            "log-file g.log\nverbosity 1\ntcp-established\nimages-dir /nope\n",
        );
        let rc = file(
            dir.path(),
            "runc.conf",
            "verbosity 4\nwork-dir /w\naction-script /s\n",
        );
        let sources = config::Sources {
            global: Some(global),
            ..Default::default()
        };
        let req = CriuOpts {
            images_dir_fd: 5,
            log_file: Some("req.log".into()),
            tcp_established: Some(false),
            config_file: Some(rc.display().to_string()),
            work_dir_fd: Some(6),
            ..Default::default()
        };
        let (o, x) = resolve(&req, &sources).unwrap();
        // The request beats the defaults, even with false.
        assert_eq!(o.log_file.as_deref(), Some("req.log"));
        assert_eq!(o.tcp_established, Some(false));
        // The default file does not move the images; runc.conf may.
        assert_eq!((o.images_dir_fd, o.images_dir.as_deref()), (5, None));
        // runc.conf beats the request.
        assert_eq!(o.log_level, Some(4));
        assert_eq!(o.work_dir_fd, None);
        assert_eq!(x.work_dir.as_deref(), Some(Path::new("/w")));
        assert_eq!(x.scripts, [PathBuf::from("/s")]);
    }

    #[test]
    fn absent_request_file_is_fine_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let req = CriuOpts {
            config_file: Some("/nonexistent/criu-rs/runc.conf".into()),
            ..Default::default()
        };
        assert!(resolve(&req, &config::Sources::default()).is_ok());
        let rc = file(dir.path(), "r.conf", "\n\npage-server\n");
        let req = CriuOpts {
            config_file: Some(rc.display().to_string()),
            ..Default::default()
        };
        let e = resolve(&req, &config::Sources::default()).unwrap_err();
        assert!(
            e.contains("r.conf, line 3") && e.contains("page-server"),
            "{e}"
        );
        let rc = file(dir.path(), "v.conf", "tcp-close yes\n");
        let req = CriuOpts {
            config_file: Some(rc.display().to_string()),
            ..Default::default()
        };
        assert!(resolve(&req, &config::Sources::default())
            .unwrap_err()
            .contains("no value"));
    }

    #[test]
    fn manage_cgroups_takes_a_mode() {
        let dir = tempfile::tempdir().unwrap();
        let rc = file(dir.path(), "r.conf", "manage-cgroups soft\n");
        let req = CriuOpts {
            config_file: Some(rc.display().to_string()),
            ..Default::default()
        };
        let (o, _) = resolve(&req, &config::Sources::default()).unwrap();
        assert_eq!(o.manage_cgroups_mode, Some(CriuCgMode::Soft as i32));
        assert_eq!(o.manage_cgroups, Some(true));
    }
}
