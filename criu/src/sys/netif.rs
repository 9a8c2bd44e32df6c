//! Network interface flags (SIOCGIFFLAGS / SIOCSIFFLAGS) in the caller's
//! network namespace.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

use super::{check, Errno, SysResult};

fn ifreq(name: &str) -> SysResult<libc::ifreq> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() >= libc::IFNAMSIZ || b.contains(&0) {
        return Err(Errno::EINVAL);
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(b) {
        *d = *s as libc::c_char;
    }
    Ok(r)
}

fn sock() -> SysResult<OwnedFd> {
    socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
}

/// The flags (IFF_*) of interface `name`.
pub fn get_flags(name: &str) -> SysResult<u32> {
    let s = sock()?;
    let mut r = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS reads and writes the ifreq we own, which lives
    // across the call.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut r) } as libc::c_long)?;
    // SAFETY: the kernel filled the flags member of the union.
    Ok(u32::from(unsafe { r.ifr_ifru.ifru_flags } as u16))
}

/// Sets the flags (IFF_*) of interface `name`.
pub fn set_flags(name: &str, flags: u32) -> SysResult<()> {
    let s = sock()?;
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_flags = flags as u16 as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own, which lives across the
    // call.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &r) } as libc::c_long)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_flags() {
        let f = get_flags("lo").unwrap();
        assert_ne!(f & libc::IFF_LOOPBACK as u32, 0);
        assert_eq!(get_flags("no-such-if0"), Err(Errno::ENODEV));
        assert_eq!(get_flags(""), Err(Errno::EINVAL));
    }
}
