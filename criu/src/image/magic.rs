//! Magic numbers of CRIU image files (the facts of upstream `criu/include/magic.h`).
//!
//! Every image file but `inventory.img` starts with [`IMG_COMMON`] (or
//! [`IMG_SERVICE`] for `stats-*` and `irmap-cache`), then its own magic.
//! Raw images (`pages-*.img`, netfilter dumps, tmpfs tarballs) have none.

pub const RAW_IMAGE: u32 = 0x00000000;
pub const IMG_COMMON: u32 = 0x54564319;
pub const IMG_SERVICE: u32 = 0x55105940;
pub const INVENTORY: u32 = 0x58313116;
pub const PSTREE: u32 = 0x50273030;
pub const FDINFO: u32 = 0x56213732;
pub const PAGEMAP: u32 = 0x56084025;
pub const SHMEM_PAGEMAP: u32 = 0x56084025;
pub const PAGES: u32 = 0x00000000;
pub const CORE: u32 = 0x55053847;
pub const IDS: u32 = 0x54432030;
pub const VMAS: u32 = 0x54123737;
pub const PIPES: u32 = 0x56513555;
pub const PIPES_DATA: u32 = 0x56453709;
pub const FIFO: u32 = 0x58364939;
pub const FIFO_DATA: u32 = 0x59333054;
pub const SIGACT: u32 = 0x55344201;
pub const UNIXSK: u32 = 0x54373943;
pub const INETSK: u32 = 0x56443851;
pub const PACKETSK: u32 = 0x60454618;
pub const ITIMERS: u32 = 0x57464056;
pub const POSIX_TIMERS: u32 = 0x52603957;
pub const SK_QUEUES: u32 = 0x56264026;
pub const UTSNS: u32 = 0x54473203;
pub const CREDS: u32 = 0x54023547;
pub const IPC_VAR: u32 = 0x53115007;
pub const IPCNS_SHM: u32 = 0x46283044;
pub const IPCNS_MSG: u32 = 0x55453737;
pub const IPCNS_SEM: u32 = 0x59573019;
pub const REG_FILES: u32 = 0x50363636;
pub const EXT_FILES: u32 = 0x59255641;
pub const FS: u32 = 0x51403912;
pub const MM: u32 = 0x57492820;
pub const REMAP_FPATH: u32 = 0x59133954;
pub const GHOST_FILE: u32 = 0x52583605;
pub const TCP_STREAM: u32 = 0x51465506;
pub const EVENTFD_FILE: u32 = 0x44523722;
pub const EVENTPOLL_FILE: u32 = 0x45023858;
pub const EVENTPOLL_TFD: u32 = 0x44433746;
pub const SIGNALFD: u32 = 0x57323820;
pub const INOTIFY_FILE: u32 = 0x48424431;
pub const INOTIFY_WD: u32 = 0x54562009;
pub const MNTS: u32 = 0x55563928;
pub const NETDEV: u32 = 0x57373951;
pub const NETNS: u32 = 0x55933752;
pub const TTY_FILES: u32 = 0x59433025;
pub const TTY_INFO: u32 = 0x59453036;
pub const TTY_DATA: u32 = 0x59413026;
pub const FILE_LOCKS: u32 = 0x54323616;
pub const RLIMIT: u32 = 0x57113925;
pub const FANOTIFY_FILE: u32 = 0x55096122;
pub const FANOTIFY_MARK: u32 = 0x56506035;
pub const SIGNAL: u32 = 0x59255647;
pub const PSIGNAL: u32 = 0x59255647;
pub const NETLINK_SK: u32 = 0x58005614;
pub const NS_FILES: u32 = 0x61394011;
pub const TUNFILE: u32 = 0x57143751;
pub const CGROUP: u32 = 0x59383330;
pub const TIMERFD: u32 = 0x50493712;
pub const CPUINFO: u32 = 0x61404013;
pub const USERNS: u32 = 0x55474906;
pub const SECCOMP: u32 = 0x64413049;
pub const BINFMT_MISC: u32 = 0x67343323;
pub const AUTOFS: u32 = 0x49353943;
pub const FILES: u32 = 0x56303138;
pub const MEMFD_INODE: u32 = 0x48453499;
pub const TIMENS: u32 = 0x43114433;
pub const PIDNS: u32 = 0x61157326;
pub const BPFMAP_FILE: u32 = 0x57506142;
pub const BPFMAP_DATA: u32 = 0x64324033;
pub const APPARMOR: u32 = 0x59423047;
pub const PIDFD: u32 = 0x54435556;
pub const IFADDR: u32 = 0x00000000;
pub const ROUTE: u32 = 0x00000000;
pub const ROUTE6: u32 = 0x00000000;
pub const RULE: u32 = 0x00000000;
pub const TMPFS_IMG: u32 = 0x00000000;
pub const TMPFS_DEV: u32 = 0x00000000;
pub const IPTABLES: u32 = 0x00000000;
pub const IP6TABLES: u32 = 0x00000000;
pub const NFTABLES: u32 = 0x00000000;
pub const NETNF_CT: u32 = 0x00000000;
pub const NETNF_EXP: u32 = 0x00000000;
pub const PAGES_OLD: u32 = 0x56084025;
pub const SHM_PAGES_OLD: u32 = 0x56084025;
pub const BINFMT_MISC_OLD: u32 = 0x67343323;
pub const STATS: u32 = 0x57093306;
pub const IRMAP_CACHE: u32 = 0x57004059;
pub const KDAT: u32 = 0x57023458;
/// criu-rs only: `uffd-track-<pid>.img`, the write tracking a pre-dump armed.
pub const MM_TRACK: u32 = 0x5A1F_7ACC;

/// Names crit uses for the magics that identify an image, as `(name, magic)`.
/// Aliases (`SHMEM_PAGEMAP` = `PAGEMAP`, ...) and raw magics are left out, so
/// every value appears once.
pub const NAMES: &[(&str, u32)] = &[
    ("IMG_COMMON", IMG_COMMON),
    ("IMG_SERVICE", IMG_SERVICE),
    ("INVENTORY", INVENTORY),
    ("PSTREE", PSTREE),
    ("FDINFO", FDINFO),
    ("PAGEMAP", PAGEMAP),
    ("CORE", CORE),
    ("IDS", IDS),
    ("VMAS", VMAS),
    ("PIPES", PIPES),
    ("PIPES_DATA", PIPES_DATA),
    ("FIFO", FIFO),
    ("FIFO_DATA", FIFO_DATA),
    ("SIGACT", SIGACT),
    ("UNIXSK", UNIXSK),
    ("INETSK", INETSK),
    ("PACKETSK", PACKETSK),
    ("ITIMERS", ITIMERS),
    ("POSIX_TIMERS", POSIX_TIMERS),
    ("SK_QUEUES", SK_QUEUES),
    ("UTSNS", UTSNS),
    ("CREDS", CREDS),
    ("IPC_VAR", IPC_VAR),
    ("IPCNS_SHM", IPCNS_SHM),
    ("IPCNS_MSG", IPCNS_MSG),
    ("IPCNS_SEM", IPCNS_SEM),
    ("REG_FILES", REG_FILES),
    ("EXT_FILES", EXT_FILES),
    ("FS", FS),
    ("MM", MM),
    ("REMAP_FPATH", REMAP_FPATH),
    ("GHOST_FILE", GHOST_FILE),
    ("TCP_STREAM", TCP_STREAM),
    ("EVENTFD_FILE", EVENTFD_FILE),
    ("EVENTPOLL_FILE", EVENTPOLL_FILE),
    ("EVENTPOLL_TFD", EVENTPOLL_TFD),
    ("SIGNALFD", SIGNALFD),
    ("INOTIFY_FILE", INOTIFY_FILE),
    ("INOTIFY_WD", INOTIFY_WD),
    ("MNTS", MNTS),
    ("NETDEV", NETDEV),
    ("NETNS", NETNS),
    ("TTY_FILES", TTY_FILES),
    ("TTY_INFO", TTY_INFO),
    ("TTY_DATA", TTY_DATA),
    ("FILE_LOCKS", FILE_LOCKS),
    ("RLIMIT", RLIMIT),
    ("FANOTIFY_FILE", FANOTIFY_FILE),
    ("FANOTIFY_MARK", FANOTIFY_MARK),
    ("SIGNAL", SIGNAL),
    ("NETLINK_SK", NETLINK_SK),
    ("NS_FILES", NS_FILES),
    ("TUNFILE", TUNFILE),
    ("CGROUP", CGROUP),
    ("TIMERFD", TIMERFD),
    ("CPUINFO", CPUINFO),
    ("USERNS", USERNS),
    ("SECCOMP", SECCOMP),
    ("BINFMT_MISC", BINFMT_MISC),
    ("AUTOFS", AUTOFS),
    ("FILES", FILES),
    ("MEMFD_INODE", MEMFD_INODE),
    ("TIMENS", TIMENS),
    ("PIDNS", PIDNS),
    ("BPFMAP_FILE", BPFMAP_FILE),
    ("BPFMAP_DATA", BPFMAP_DATA),
    ("APPARMOR", APPARMOR),
    ("PIDFD", PIDFD),
    ("STATS", STATS),
    ("IRMAP_CACHE", IRMAP_CACHE),
    ("KDAT", KDAT),
    ("MM_TRACK", MM_TRACK),
];

/// The first magic of ordinary images (the brief's spelling of [`IMG_COMMON`]).
pub const IMG_COMMON_MAGIC: u32 = IMG_COMMON;
/// The first magic of service images (the brief's spelling of [`IMG_SERVICE`]).
pub const IMG_SERVICE_MAGIC: u32 = IMG_SERVICE;

/// crit's name of an image magic (`CORE`, `PAGEMAP`, ...).
pub fn name_of(magic: u32) -> Option<&'static str> {
    NAMES.iter().find(|(_, v)| *v == magic).map(|(n, _)| *n)
}

/// The magic crit calls `name`.
pub fn by_name(name: &str) -> Option<u32> {
    NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The first magic an image with this (second) magic starts with, or `None`
/// for `inventory.img`, which has only its own.
pub fn first_magic(magic: u32) -> Option<u32> {
    match magic {
        INVENTORY => None,
        STATS | IRMAP_CACHE => Some(IMG_SERVICE),
        _ => Some(IMG_COMMON),
    }
}

/// Protobuf message (full name in package `criu`) of the entries of an image
/// with this magic. For `PAGEMAP` it is the type of all entries but the first
/// (a `pagemap_head`); for `GHOST_FILE` the type of the first entry.
pub fn message_of(magic: u32) -> Option<&'static str> {
    Some(match magic {
        INVENTORY => "criu.inventory_entry",
        CORE => "criu.core_entry",
        IDS => "criu.task_kobj_ids_entry",
        CREDS => "criu.creds_entry",
        UTSNS => "criu.utsns_entry",
        TIMENS => "criu.timens_entry",
        PIDNS => "criu.pidns_entry",
        IPC_VAR => "criu.ipc_var_entry",
        FS => "criu.fs_entry",
        GHOST_FILE => "criu.ghost_file_entry",
        MM => "criu.mm_entry",
        CGROUP => "criu.cgroup_entry",
        TCP_STREAM => "criu.tcp_stream_entry",
        STATS => "criu.stats_entry",
        PAGEMAP => "criu.pagemap_entry",
        PSTREE => "criu.pstree_entry",
        REG_FILES => "criu.reg_file_entry",
        NS_FILES => "criu.ns_file_entry",
        EVENTFD_FILE => "criu.eventfd_file_entry",
        EVENTPOLL_FILE => "criu.eventpoll_file_entry",
        EVENTPOLL_TFD => "criu.eventpoll_tfd_entry",
        SIGNALFD => "criu.signalfd_entry",
        TIMERFD => "criu.timerfd_entry",
        INOTIFY_FILE => "criu.inotify_file_entry",
        INOTIFY_WD => "criu.inotify_wd_entry",
        FANOTIFY_FILE => "criu.fanotify_file_entry",
        FANOTIFY_MARK => "criu.fanotify_mark_entry",
        VMAS => "criu.vma_entry",
        PIPES => "criu.pipe_entry",
        FIFO => "criu.fifo_entry",
        SIGACT => "criu.sa_entry",
        NETLINK_SK => "criu.netlink_sk_entry",
        REMAP_FPATH => "criu.remap_file_path_entry",
        MNTS => "criu.mnt_entry",
        TTY_FILES => "criu.tty_file_entry",
        TTY_INFO => "criu.tty_info_entry",
        TTY_DATA => "criu.tty_data_entry",
        RLIMIT => "criu.rlimit_entry",
        TUNFILE => "criu.tunfile_entry",
        EXT_FILES => "criu.ext_file_entry",
        IRMAP_CACHE => "criu.irmap_cache_entry",
        FILE_LOCKS => "criu.file_lock_entry",
        FDINFO => "criu.fdinfo_entry",
        UNIXSK => "criu.unix_sk_entry",
        INETSK => "criu.inet_sk_entry",
        PACKETSK => "criu.packet_sock_entry",
        ITIMERS => "criu.itimer_entry",
        POSIX_TIMERS => "criu.posix_timer_entry",
        NETDEV => "criu.net_device_entry",
        PIPES_DATA | FIFO_DATA => "criu.pipe_data_entry",
        SK_QUEUES => "criu.sk_packet_entry",
        IPCNS_SHM => "criu.ipc_shm_entry",
        IPCNS_SEM => "criu.ipc_sem_entry",
        IPCNS_MSG => "criu.ipc_msg_entry",
        NETNS => "criu.netns_entry",
        USERNS => "criu.userns_entry",
        SECCOMP => "criu.seccomp_entry",
        AUTOFS => "criu.autofs_entry",
        FILES => "criu.file_entry",
        CPUINFO => "criu.cpuinfo_entry",
        MEMFD_INODE => "criu.memfd_inode_entry",
        BPFMAP_FILE => "criu.bpfmap_file_entry",
        BPFMAP_DATA => "criu.bpfmap_data_entry",
        APPARMOR => "criu.apparmor_entry",
        PIDFD => "criu.pidfd_entry",
        MM_TRACK => "criu.mm_track_entry",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, (n, v)) in NAMES.iter().enumerate() {
            assert_eq!(by_name(n), Some(*v));
            assert_eq!(name_of(*v), Some(*n));
            assert!(NAMES[..i].iter().all(|(m, w)| m != n && w != v), "{n}");
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(name_of(0x55053847), Some("CORE"));
        assert_eq!(name_of(PAGEMAP), Some("PAGEMAP"));
        assert_eq!(SHMEM_PAGEMAP, PAGEMAP);
        assert_eq!(first_magic(INVENTORY), None);
        assert_eq!(first_magic(STATS), Some(IMG_SERVICE_MAGIC));
        assert_eq!(first_magic(CORE), Some(IMG_COMMON_MAGIC));
    }
}
