//! The catalogue. Each test lives in `<family>/<name>.rs` with its `DESC`
//! and `run`; list it here too.

use crate::desc::Desc;
use crate::test::Body;

/// One test of the catalogue.
#[derive(Clone, Copy)]
pub struct Entry {
    pub desc: &'static Desc,
    pub body: Body,
}

macro_rules! catalogue {
    ($($fam:ident { $($name:ident),* $(,)? })*) => {
        $(pub mod $fam { $(pub mod $name;)* })*

        /// Every test, in catalogue order.
        pub fn all() -> Vec<Entry> {
            vec![$($(Entry { desc: &$fam::$name::DESC, body: $fam::$name::run },)*)*]
        }
    };
}

catalogue! {
    basic { loop00, env00, pid00, umask00, cwd00, rlimits00 }
    memory { maps00, mprotect00, prot_wx00, brk00, big64m, sparse, shm_anon_fork, file_shared, deleted_file_map, madvise_dontfork, mlock00, vdso00, predump_touch, guard_region, mlockall00, mlockall_onfault, thp00, hugetlb00, hugetlbfs_file, predump_shmem }
    threads { threads_few, thread_tls, thread_sigmask, futex_wait, thread_bomb, blocked }
    signals { sigaction00, sigpending00, sigaltstack00, sigstop, stopped_tree, sigtrap00, sigtrap01, sigtrap02 }
    timers { itimer00, posix_timers, nanosleep }
    pipes { pipe00, pipe_bigbuf, fifo00 }
    files { file_read, devnull, fd_gaps, unlinked_file, dup_shared_offset, ghost_limit, ghost_limit_raised, flock00, posix_lock00, ofd_lock00, flock_nolocks, pidfd00, pidfd_dead, pidfd_outside, fown00, lease00,
        opath00, odd_paths, reopen_links, hardlink00, hardlink_unlinked, dir_fd, hardlink_unlinked_map,
        link_remap_rollback }
    memfd { memfd00, memfd_mmap, memfd_mmap_sealed }
    membarrier { membarrier00 }
    events { eventfd00, epoll00, timerfd00, signalfd00, inotify00, fanotify00 }
    sockets { unix_socketpair, tcp_listen, udp00, unix_bound, unix_listen_queued, unix_seqpacket, udp6, sockopts00, tcp_established, tcp6_established, tcp_established_child, unix_scm_rights, unix_shutdown, tcp_shutdown, netlink00, packet00, raw_icmp, unix_ext_dgram, unix_ext_refused, tcp_netlock, unix_scm_creds, tcp_dualstack, netlink_queued, tcp_close, tcp_syn_sent, tcp_fin_states, packet_queued, unix_scm_pidfd }
    tree { children, zombie00, pgrp_session, tree500, vfork00 }
    ns { uts00, ipc_shm, pidns00, ipc_msg, ipc_sem, timens, pidns_nested, pidns_last_pid, mnt_fs, cgroup00, cgroupns, cgroupns_nested, cgroup_props, netns_dev, mnt_tmpfs, netns_sysctl,
        mnt_shared }
    tty { pty00, pty_data, ctty00, ctty01, pty_pkt, ctty_member,
        pty_canon }
    task { seccomp_strict, seccomp_filter, seccomp_tsync, sched00, oom_score_adj, prctl00, affinity00 }
}

/// Look a test up by `family/name`.
pub fn find(name: &str) -> Option<Entry> {
    all().into_iter().find(|e| e.desc.name == name)
}

#[cfg(test)]
mod selftest {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_match_families() {
        let mut seen = HashSet::new();
        for e in all() {
            let d = e.desc;
            assert!(seen.insert(d.name), "duplicate test {}", d.name);
            assert_eq!(d.name.split('/').next(), Some(d.family), "{}", d.name);
            assert!(!d.description.is_empty(), "{} has no description", d.name);
            assert!(!d.flavors.is_empty(), "{} has no flavor", d.name);
            assert!(d.timeout > 0, "{}", d.name);
            if let Some(f) = d.feature {
                assert!(
                    crate::features::FEATURES.contains(&f),
                    "{}: unknown feature {f}",
                    d.name
                );
            }
        }
    }
}
