use super::tcp_established::expect;
use crate::prelude::*;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

pub const DESC: Desc = Desc {
    name: "sockets/tcp_syn_sent",
    family: "sockets",
    description: "a TCP connect still in SYN_SENT (its SYNs dropped by a filter on the loopback listener) is restored with --tcp-established and completes once the filter is lifted",
    dump_opts: &["--tcp-established"],
    restore_opts: &["--tcp-established"],
    // SO_ATTACH_FILTER is refused to the unprivileged test user here.
    flags: &[Flag::Suid],
    ..Desc::DEFAULT
};

const SYN_SENT: u8 = 2;

pub fn state(s: BorrowedFd<'_>) -> Result<u8> {
    let mut info = [0u8; 104];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid for writes of `len` bytes.
    let r = unsafe { libc::getsockopt(s.as_raw_fd(), libc::SOL_TCP, libc::TCP_INFO, info.as_mut_ptr().cast(), &mut len) };
    ensure!(r == 0, "TCP_INFO: {}", Errno::last());
    Ok(info[0])
}

/// Attaches a classic BPF program of one instruction: drop every packet.
pub fn drop_all(l: BorrowedFd<'_>) -> Result<()> {
    let prog = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 }];
    let fprog = libc::sock_fprog { len: 1, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `fprog` points at `prog`, alive across the call.
    let r = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    ensure!(r == 0, "SO_ATTACH_FILTER: {}", Errno::last());
    Ok(())
}

pub fn detach(l: BorrowedFd<'_>) -> Result<()> {
    let z: libc::c_int = 0;
    // SAFETY: an int option value, alive across the call.
    let r = unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DETACH_FILTER,
            (&z as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(r == 0, "SO_DETACH_FILTER (was the filter restored?): {}", Errno::last());
    Ok(())
}

pub fn run(t: &mut Test) -> Result<()> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind")?;
    drop_all(l.as_fd())?;
    let at = match l.local_addr().context("addr")? {
        std::net::SocketAddr::V4(a) => a,
        a => bail!("listener on {a}"),
    };
    let c = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_NONBLOCK, SockProtocol::Tcp).context("socket")?;
    match connect(c.as_raw_fd(), &SockaddrIn::from(at)) {
        Err(Errno::EINPROGRESS) => {}
        other => bail!("non-blocking connect gave {other:?}"),
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    ensure!(state(c.as_fd())? == SYN_SENT, "the connect is in TCP state {}, not SYN_SENT", state(c.as_fd())?);
    t.daemon()?;
    t.wait_sig();
    let now = state(c.as_fd())?;
    ensure!(now == SYN_SENT, "after restore the connect is in TCP state {now}, not SYN_SENT");
    detach(l.as_fd())?;
    let mut p = [PollFd::new(c.as_fd(), PollFlags::POLLOUT)];
    let n = poll(&mut p, PollTimeout::from(15_000u16)).context("poll")?;
    ensure!(n == 1, "the connect did not complete within 15 s of lifting the filter");
    let err = nix::sys::socket::getsockopt(&c, nix::sys::socket::sockopt::SocketError).context("SO_ERROR")?;
    ensure!(err == 0, "the connect failed: {}", Errno::from_raw(err));
    let mut c = TcpStream::from(c);
    c.set_nonblocking(false).context("blocking")?;
    let (mut s, from) = l.accept().context("accept")?;
    ensure!(from == c.local_addr().context("local")?, "accepted {from}, the client is {:?}", c.local_addr());
    c.write_all(b"syn-sent").context("client write")?;
    expect(&mut s, b"syn-sent", "server")?;
    s.write_all(b"back").context("server write")?;
    expect(&mut c, b"back", "client")
}
