//! Terminals. Not dumped yet: a terminal reopened by its path would be a
//! different terminal (a new pty pair for /dev/ptmx, no peer for
//! /dev/pts/N), so every fd on one is refused by name instead.

/// The kind of terminal a character device `rdev` is, if it is one.
pub fn kind(rdev: u64) -> Option<&'static str> {
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    match (major, minor) {
        (5, 0) => Some("the controlling terminal (/dev/tty)"),
        (5, 1) => Some("the system console"),
        (5, 2) => Some("a pty master (/dev/ptmx)"),
        (4, 0..=63) => Some("a virtual console"),
        (4, _) | (204..=205, _) => Some("a serial terminal"),
        (128..=135, _) => Some("a pty master"),
        (136..=143, _) => Some("a pty slave (/dev/pts)"),
        (2, _) => Some("a BSD pty master"),
        (3, _) => Some("a BSD pty slave"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminals_are_known_by_their_device_numbers() {
        assert_eq!(kind(libc::makedev(5, 2)), Some("a pty master (/dev/ptmx)"));
        assert!(kind(libc::makedev(136, 3)).is_some_and(|k| k.contains("slave")));
        assert!(kind(libc::makedev(5, 0)).is_some());
        assert!(kind(libc::makedev(4, 1)).is_some_and(|k| k.contains("virtual")));
        assert!(kind(libc::makedev(4, 64)).is_some_and(|k| k.contains("serial")));
        // /dev/null, /dev/zero, /dev/urandom are no terminals.
        for (ma, mi) in [(1, 3), (1, 5), (1, 9), (10, 229)] {
            assert_eq!(kind(libc::makedev(ma, mi)), None, "{ma}:{mi}");
        }
    }
}
