//! `criu check`: does this kernel have what criu-rs needs?

use super::Error;

/// One kernel feature and how to tell whether it is there.
pub struct Feature {
    pub name: &'static str,
    pub required: bool,
    pub probe: fn() -> Result<(), String>,
}

fn syscall_exists(nr: libc::c_long, args: [libc::c_long; 3]) -> Result<(), String> {
    match crate::sys::probe::syscall3(nr, args) {
        Err(nix::errno::Errno::ENOSYS) => Err("the syscall is missing (ENOSYS)".into()),
        _ => Ok(()),
    }
}

fn file_exists(path: &'static str) -> Result<(), String> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| format!("{path}: {e}"))
}

/// Asynchronous userfaultfd write-protection, which pre-dumps track memory
/// with (criu-rs does not use soft-dirty bits).
fn uffd_wp_async() -> Result<(), String> {
    let u = crate::sys::uffd::Uffd::for_tracking().map_err(|e| format!("userfaultfd: {e}"))?;
    let want = crate::sys::uffd::TRACK_FEATURES;
    if u.features & want != want {
        return Err(format!(
            "the kernel offers userfaultfd features {:#x}, without {:#x}",
            u.features, want
        ));
    }
    Ok(())
}

/// The features criu-rs knows, with CRIU's names where CRIU has one.
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "ptrace_seize",
        required: true,
        probe: || Ok(()),
    },
    Feature {
        name: "pidfd_getfd",
        required: true,
        // pidfd_getfd(-1, …) fails with EBADF when the syscall exists.
        probe: || syscall_exists(libc::SYS_pidfd_getfd, [-1, 0, 0]),
    },
    Feature {
        name: "clone3_set_tid",
        required: true,
        probe: || syscall_exists(libc::SYS_clone3, [0, 0, 0]),
    },
    Feature {
        name: "kcmp",
        required: true,
        probe: || syscall_exists(libc::SYS_kcmp, [0, 0, -1]),
    },
    Feature {
        name: "get_rseq_conf",
        required: false,
        probe: || syscall_exists(libc::SYS_rseq, [0, 0, -1]),
    },
    Feature {
        name: "mem_dirty_track",
        required: false,
        // pre-dumps track with userfaultfd; soft-dirty would do as well
        probe: || {
            uffd_wp_async()
                .or_else(|e| crate::sys::probe::soft_dirty().map_err(|s| format!("{e}; {s}")))
        },
    },
    Feature {
        name: "uffd_wp_async",
        required: false,
        probe: uffd_wp_async,
    },
    Feature {
        name: "pagemap_scan",
        required: false,
        probe: crate::sys::probe::pagemap_scan,
    },
    Feature {
        name: "uffd",
        required: false,
        probe: || syscall_exists(libc::SYS_userfaultfd, [-1, 0, 0]),
    },
    Feature {
        name: "timens",
        required: false,
        probe: || file_exists("/proc/self/ns/time"),
    },
    Feature {
        name: "ns_pid",
        required: false,
        probe: || file_exists("/proc/self/ns/pid"),
    },
];

/// Runs the checks; returns the exit code.
pub fn run(only: Option<&str>) -> Result<i32, Error> {
    if only == Some("list") {
        for f in FEATURES {
            println!("{}", f.name);
        }
        return Ok(0);
    }
    let selected: Vec<&Feature> = match only {
        Some(name) => {
            let f = FEATURES.iter().find(|f| f.name == name).ok_or_else(|| {
                Error::Usage(format!("unknown feature {name:?} (try --feature list)"))
            })?;
            vec![f]
        }
        None => FEATURES.iter().collect(),
    };
    let mut failed = false;
    for f in selected {
        match (f.probe)() {
            Ok(()) => {
                if only.is_some() {
                    println!("{} is supported", f.name);
                }
            }
            Err(why) => {
                let required = f.required || only.is_some();
                failed |= required;
                println!(
                    "{}: {} is not supported: {why}",
                    if required { "Error" } else { "Warn" },
                    f.name
                );
            }
        }
    }
    if failed {
        return Ok(1);
    }
    if only.is_none() {
        println!("Looks good.");
    }
    Ok(0)
}
