//! Which `criu_opts` criu-rs honours, and which it must refuse.
//!
//! Every field of `criu_opts` is looked at. A field that is absent, or holds
//! the value that means "do nothing special", is accepted; a field that would
//! change what criu does in a way criu-rs cannot do yet is refused by name,
//! never silently ignored.

use super::pb::{CriuCgMode, CriuOpts};
use crate::objects::ns::cgroup;

/// The two requests that take options with an effect on the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Dump,
    Restore,
}

fn on(b: Option<bool>) -> bool {
    b.unwrap_or(false)
}

/// The cgroup mode of a request, as CRIU reads it: `manage_cgroups`
/// true means soft and false ignore, and `manage_cgroups_mode`, when set,
/// overrides it; neither means CRIU's default, soft.
pub fn cgroup_mode(o: &CriuOpts) -> Result<cgroup::Mode, String> {
    let from_flag = match o.manage_cgroups {
        Some(false) => cgroup::Mode::Ignore,
        _ => cgroup::Mode::Soft,
    };
    let Some(m) = o.manage_cgroups_mode else {
        return Ok(from_flag);
    };
    match CriuCgMode::try_from(m) {
        Ok(CriuCgMode::Ignore) => Ok(cgroup::Mode::Ignore),
        Ok(CriuCgMode::Soft) | Ok(CriuCgMode::Default) => Ok(cgroup::Mode::Soft),
        Ok(CriuCgMode::CgNone) => Ok(cgroup::Mode::None),
        Ok(CriuCgMode::Props) => Ok(cgroup::Mode::Props),
        Ok(CriuCgMode::Full) => Ok(cgroup::Mode::Full),
        Ok(CriuCgMode::Strict) => Ok(cgroup::Mode::Strict),
        Err(_) => Err(format!("manage_cgroups_mode {m} (unknown mode)")),
    }
}

/// The names (as in rpc.proto) of the options in `o` that criu-rs cannot
/// honour for `action`; empty when the request can be served.
pub fn unsupported(o: &CriuOpts, action: Action) -> Vec<String> {
    let mut bad: Vec<String> = Vec::new();
    let mut flag = |name: &str, set: bool| {
        if set {
            bad.push(name.to_string());
        }
    };
    // Options with an effect on both dump and restore.
    flag(
        "network_lock IPTABLES (criu-rs locks with NFTABLES, or SKIP)",
        o.network_lock == Some(super::pb::CriuNetworkLockMethod::Iptables as i32),
    );
    flag("ps (page server)", o.ps.is_some());
    flag("auto_dedup", on(o.auto_dedup));
    flag("force_irmap", on(o.force_irmap));
    flag("irmap_scan_paths", !o.irmap_scan_paths.is_empty());
    flag(
        "auto_ext_mnt (each external mount must be named in ext_mnt)",
        on(o.auto_ext_mnt),
    );
    flag("skip_mnt", !o.skip_mnt.is_empty());
    flag("enable_fs", !o.enable_fs.is_empty());
    flag("unix_sk_ino", !o.unix_sk_ino.is_empty());
    flag(
        "external (criu-rs knows only veth[IFNAME]:OUTNAME[@BRIDGE] and mnt[KEY]:VAL)",
        o.external.iter().any(|e| {
            crate::objects::ns::net::VethOutside::from_external(e).is_none()
                && crate::objects::ns::mnt::ExtMount::from_external(e).is_none_or(|r| r.is_err())
        }),
    );
    flag(
        "join_ns (on a dump)",
        action == Action::Dump && !o.join_ns.is_empty(),
    );
    let cg = cgroup_mode(o).err();
    flag(
        "cg_root (on a dump)",
        action == Action::Dump && !o.cg_root.is_empty(),
    );
    flag(
        "cgroup_props (criu-rs keeps its built-in list of cgroup properties)",
        o.cgroup_props.is_some(),
    );
    flag(
        "cgroup_props_file (criu-rs keeps its built-in list of cgroup properties)",
        o.cgroup_props_file.is_some(),
    );
    flag(
        "cgroup_dump_controller",
        !o.cgroup_dump_controller.is_empty(),
    );
    flag("cgroup_yard", o.cgroup_yard.is_some());
    flag("timeout", o.timeout.unwrap_or(0) != 0);
    flag("tcp_skip_in_flight", on(o.tcp_skip_in_flight));
    flag("weak_sysctls", on(o.weak_sysctls));
    flag("lazy_pages", on(o.lazy_pages));
    flag("status_fd", o.status_fd.is_some());
    flag("lsm_profile", o.lsm_profile.is_some());
    flag("lsm_mount_context", o.lsm_mount_context.is_some());
    flag(
        "tls",
        on(o.tls)
            || on(o.tls_no_cn_verify)
            || o.tls_cacert.is_some()
            || o.tls_cacrl.is_some()
            || o.tls_cert.is_some()
            || o.tls_key.is_some(),
    );
    flag("pidfd_store_sk", o.pidfd_store_sk.is_some());
    flag("mntns_compat_mode", on(o.mntns_compat_mode));
    flag("unprivileged", on(o.unprivileged));
    flag("leave_stopped", on(o.leave_stopped));
    flag("exec_cmd", !o.exec_cmd.is_empty());
    // config_file is read before this check (rpc::config).
    match action {
        Action::Dump => {
            flag(
                "evasive_devices (no other path is searched for a device file whose path is gone)",
                on(o.evasive_devices),
            );
            // empty_ns on a dump: the namespaces are dumped anyway (what
            // cannot be, such as a network device other than lo, is
            // refused by name); the restore leaves them empty.
        }
        Action::Restore => {
            flag(
                "empty_ns (only CLONE_NEWNET can be left empty)",
                o.empty_ns.unwrap_or(0) & !(libc::CLONE_NEWNET as u32) != 0,
            );
            // Freezing is for dumps (rpc::cgfreeze).
            flag("freeze_cgroup (on restore)", o.freeze_cgroup.is_some());
        }
    }
    bad.extend(cg);
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CriuOpts {
        CriuOpts {
            images_dir_fd: 3,
            ..Default::default()
        }
    }

    #[test]
    fn plain_options_are_accepted() {
        let mut o = base();
        o.pid = Some(42);
        o.leave_running = Some(true);
        o.shell_job = Some(true);
        o.notify_scripts = Some(true);
        o.log_level = Some(4);
        o.log_file = Some("dump.log".into());
        o.work_dir_fd = Some(4);
        o.tcp_established = Some(false);
        o.ext_unix_sk = Some(true);
        o.network_lock = Some(super::super::pb::CriuNetworkLockMethod::Nftables as i32);
        o.root = Some("/".into());
        o.config_file = Some("/nonexistent/criu-rs/runc.conf".into());
        o.orphan_pts_master = Some(true);
        o.empty_ns = Some(libc::CLONE_NEWNET as u32);
        assert!(unsupported(&o, Action::Dump).is_empty());
    }

    #[test]
    fn effective_options_are_named() {
        let mut o = base();
        o.tcp_established = Some(true);
        o.tcp_close = Some(true);
        o.ghost_limit = Some(4096);
        o.file_locks = Some(true);
        o.freeze_cgroup = Some("/sys/fs/cgroup/x".into());
        o.ext_mnt.push(super::super::pb::ExtMountMap {
            key: "/a".into(),
            val: "a".into(),
        });
        let names = |v: Vec<String>| {
            v.iter()
                .map(|n| n.split(' ').next().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        };
        o.auto_ext_mnt = Some(true);
        o.external.push("mnt[/a]:a".into());
        assert_eq!(names(unsupported(&o, Action::Dump)), ["auto_ext_mnt"]);
        assert_eq!(
            names(unsupported(&o, Action::Restore)),
            ["auto_ext_mnt", "freeze_cgroup"]
        );
        o.root = Some("/run/runc/x/criu-root".into());
        assert_eq!(
            names(unsupported(&o, Action::Restore)),
            ["auto_ext_mnt", "freeze_cgroup"]
        );
        o.external.push("mnt[]".into());
        assert_eq!(
            names(unsupported(&o, Action::Dump)),
            ["auto_ext_mnt", "external"]
        );
    }

    #[test]
    fn empty_ns_takes_the_network_only() {
        let mut o = base();
        o.empty_ns = Some(libc::CLONE_NEWNET as u32);
        assert!(unsupported(&o, Action::Dump).is_empty());
        assert!(unsupported(&o, Action::Restore).is_empty());
        o.empty_ns = Some((libc::CLONE_NEWNET | libc::CLONE_NEWUTS) as u32);
        assert_eq!(
            unsupported(&o, Action::Restore),
            ["empty_ns (only CLONE_NEWNET can be left empty)"]
        );
    }

    #[test]
    fn cgroup_modes_are_taken() {
        let mut o = base();
        assert_eq!(cgroup_mode(&o), Ok(cgroup::Mode::Soft));
        o.manage_cgroups = Some(true);
        assert_eq!(cgroup_mode(&o), Ok(cgroup::Mode::Soft));
        o.manage_cgroups = Some(false);
        assert_eq!(cgroup_mode(&o), Ok(cgroup::Mode::Ignore));
        o.manage_cgroups = Some(true);
        o.manage_cgroups_mode = Some(CriuCgMode::Ignore as i32);
        assert_eq!(cgroup_mode(&o), Ok(cgroup::Mode::Ignore));
        assert!(unsupported(&o, Action::Restore).is_empty());
        for (m, want) in [
            (CriuCgMode::Soft, cgroup::Mode::Soft),
            (CriuCgMode::Default, cgroup::Mode::Soft),
            (CriuCgMode::Full, cgroup::Mode::Full),
            (CriuCgMode::Strict, cgroup::Mode::Strict),
            (CriuCgMode::Props, cgroup::Mode::Props),
            (CriuCgMode::CgNone, cgroup::Mode::None),
        ] {
            o.manage_cgroups_mode = Some(m as i32);
            assert_eq!(cgroup_mode(&o), Ok(want));
            assert!(unsupported(&o, Action::Dump).is_empty());
            assert!(unsupported(&o, Action::Restore).is_empty());
        }
        o.manage_cgroups_mode = Some(77);
        assert!(cgroup_mode(&o).is_err());
    }
}
