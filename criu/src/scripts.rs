//! Action scripts: the points of a dump or a restore at which criu tells
//! whoever started it what it is about to do, and waits for the go-ahead.
//!
//! The orchestrators ([`crate::dump`], [`crate::restore`]) call a
//! [`Notify`] at each point; the front ends decide what that means: the
//! command line runs `--action-script` programs ([`Scripts`]), the RPC
//! server sends a `criu_notify` message and waits for the client's answer.
//!
//! Points of a dump: `pre-dump` (nothing frozen yet), `network-lock` (the
//! tree is frozen; only for a tree in its own network namespace),
//! `post-dump` (the images are written and the tree is still frozen; a
//! failure lets the tree run on), `network-unlock` (the tree runs on after
//! all and has its own network namespace).
//!
//! Points of a restore: `pre-restore`, `setup-namespaces` and
//! `post-setup-namespaces` (the root exists in its new namespaces; only
//! when namespaces are made), `post-restore` (everything is restored, no
//! task runs yet), `network-unlock` (own network namespace only),
//! `pre-resume`, `post-resume` (the tree runs).

use std::path::{Path, PathBuf};

/// One point of a dump or a restore, by CRIU's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    PreDump,
    NetworkLock,
    PostDump,
    NetworkUnlock,
    PreRestore,
    SetupNamespaces,
    PostSetupNamespaces,
    PostRestore,
    PreResume,
    PostResume,
}

impl Action {
    /// CRIU's name of the action (`CRTOOLS_SCRIPT_ACTION`, `criu_notify.script`).
    pub fn name(self) -> &'static str {
        match self {
            Action::PreDump => "pre-dump",
            Action::NetworkLock => "network-lock",
            Action::PostDump => "post-dump",
            Action::NetworkUnlock => "network-unlock",
            Action::PreRestore => "pre-restore",
            Action::SetupNamespaces => "setup-namespaces",
            Action::PostSetupNamespaces => "post-setup-namespaces",
            Action::PostRestore => "post-restore",
            Action::PreResume => "pre-resume",
            Action::PostResume => "post-resume",
        }
    }

    /// Whether CRIU's RPC notification of this action carries the root's
    /// pid.
    pub fn rpc_has_pid(self) -> bool {
        matches!(self, Action::SetupNamespaces | Action::PostRestore)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Told of each action; an `Err` (why the caller said no) stops the dump
/// or restore where the action says it does.
pub trait Notify {
    /// `root` is the pid of the tree's root as criu sees it.
    fn notify(&self, action: Action, root: i32) -> Result<(), String>;

    /// Every task of the dumped tree is seized and stopped, and nothing
    /// has run in it yet (no action of CRIU's: for the front ends' own
    /// work, such as thawing a cgroup frozen for the seize).
    fn seized(&self, _root: i32) -> Result<(), String> {
        Ok(())
    }
}

/// Tells nobody.
pub struct Silent;

impl Notify for Silent {
    fn notify(&self, _: Action, _: i32) -> Result<(), String> {
        Ok(())
    }
}

/// `--action-script` programs, run one after the other for each action
/// with `CRTOOLS_SCRIPT_ACTION` (the action), `CRTOOLS_IMAGE_DIR` and
/// `CRTOOLS_INIT_PID` (the root's pid) in their environment.
#[derive(Debug, Clone, Default)]
pub struct Scripts {
    pub paths: Vec<PathBuf>,
    pub images_dir: PathBuf,
}

impl Scripts {
    fn run_one(&self, path: &Path, action: Action, root: i32) -> Result<(), String> {
        tracing::debug!(script = %path.display(), %action, root, "running an action script");
        let mut tries = 0;
        let status = loop {
            let r = std::process::Command::new(path)
                .env("CRTOOLS_SCRIPT_ACTION", action.name())
                .env("CRTOOLS_IMAGE_DIR", &self.images_dir)
                .env("CRTOOLS_INIT_PID", root.to_string())
                .stdin(std::process::Stdio::null())
                .status();
            match r {
                // A script just written may still be open for writing in a
                // child some other thread forks at this moment.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => {
                    break r.map_err(|e| {
                        format!("action script {}: cannot run it: {e}", path.display())
                    })?
                }
            }
        };
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "action script {} failed at {action} ({status})",
                path.display()
            ))
        }
    }
}

impl Notify for Scripts {
    fn notify(&self, action: Action, root: i32) -> Result<(), String> {
        for p in &self.paths {
            self.run_one(p, action, root)?;
        }
        Ok(())
    }
}

/// Two notifiers, the first one first (RPC notifications, then the
/// scripts a configuration file named, as CRIU does).
pub struct Both<'a>(pub &'a dyn Notify, pub &'a dyn Notify);

impl Notify for Both<'_> {
    fn notify(&self, action: Action, root: i32) -> Result<(), String> {
        self.0.notify(action, root)?;
        self.1.notify(action, root)
    }

    fn seized(&self, root: i32) -> Result<(), String> {
        self.0.seized(root)?;
        self.1.seized(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn scripts_see_action_and_pid_and_can_say_no() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = dir.path().join("s.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$CRTOOLS_SCRIPT_ACTION $CRTOOLS_INIT_PID $CRTOOLS_IMAGE_DIR\" >> {}\n[ \"$CRTOOLS_SCRIPT_ACTION\" != post-dump ]\n",
                out.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = Scripts {
            paths: vec![script],
            images_dir: "/imgs".into(),
        };
        s.notify(Action::PreDump, 42).unwrap();
        let e = s.notify(Action::PostDump, 42).unwrap_err();
        assert!(e.contains("post-dump"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "pre-dump 42 /imgs\npost-dump 42 /imgs\n"
        );
    }

    #[test]
    fn pids_go_with_setup_namespaces_and_post_restore_only() {
        let with: Vec<_> = [
            Action::PreDump,
            Action::NetworkLock,
            Action::PostDump,
            Action::NetworkUnlock,
            Action::PreRestore,
            Action::SetupNamespaces,
            Action::PostSetupNamespaces,
            Action::PostRestore,
            Action::PreResume,
            Action::PostResume,
        ]
        .into_iter()
        .filter(|a| a.rpc_has_pid())
        .map(Action::name)
        .collect();
        assert_eq!(with, ["setup-namespaces", "post-restore"]);
    }
}
