//! The dump half of sockets against live sockets of this process, and the
//! shape of its entries against what upstream CRIU 4.2 wrote (golden "fds").

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use criu::image::{self, magic, pb};
use criu::objects::files::socket::{self, SkDump};
use criu::objects::Error;

fn ino(f: &impl AsFd) -> u32 {
    nix::sys::stat::fstat(f.as_fd()).unwrap().st_ino as u32
}

fn dump(st: &mut SkDump, fd: &impl AsFd, id: u32) -> Result<pb::FileEntry, Error> {
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd());
    let sk = socket::SkFd {
        pid: std::process::id() as i32,
        fd: raw,
        id,
        flags: libc::O_RDWR as u32,
        file: fd.as_fd(),
        ino: ino(fd),
    };
    socket::dump(st, sk, &std::collections::HashMap::new())
}

#[test]
fn socketpair_entries_have_the_fields_upstream_writes() {
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"a->b").unwrap();
    let mut st = SkDump::default();
    let ea = dump(&mut st, &a, 8).unwrap();
    let eb = dump(&mut st, &b, 9).unwrap();
    let (ua, ub) = (ea.usk.unwrap(), eb.usk.unwrap());
    assert_eq!(ua.peer, ub.ino);
    assert_eq!(ub.peer, ua.ino);
    assert_eq!(ua.state, 1);
    assert_eq!(ua.flags, 2);

    let golden: Vec<pb::FileEntry> = image::read_image(
        std::path::Path::new("tests/fixtures/golden-fds"),
        "files.img",
        magic::FILES,
    )
    .unwrap();
    let g = golden.iter().find_map(|e| e.usk.clone()).unwrap();
    // Same optional fields present (ns_id aside: no net namespace images yet).
    let shape = |u: &pb::UnixSkEntry| {
        let o = &u.opts;
        (
            u.shutdown.is_some(),
            u.file_perms.is_some(),
            o.reuseaddr.is_some(),
            o.so_priority.is_some(),
            o.so_rcvlowat.is_some(),
            o.so_passcred.is_some(),
            o.so_passsec.is_some(),
            o.so_keepalive.is_some(),
            o.so_linger.is_some(),
            o.so_mark.is_some(),
            o.so_buf_lock.is_some(),
        )
    };
    assert_eq!(shape(&ua), shape(&g));
    assert_eq!(
        ua.backlog > 0,
        g.backlog > 0,
        "backlog is the send queue of a connected socket"
    );

    let dir = tempfile::tempdir().unwrap();
    st.write(dir.path()).unwrap();
    let q = criu::objects::files::sk_queue::Queues::load(dir.path()).unwrap();
    assert_eq!(
        q[&9],
        vec![criu::objects::files::sk_queue::Queued::plain(
            b"a->b".to_vec()
        )]
    );
    assert!(!q.contains_key(&8));
}

#[test]
fn a_peer_outside_the_dump_is_refused() {
    let (a, _b) = UnixStream::pair().unwrap();
    let mut st = SkDump::default();
    dump(&mut st, &a, 1).unwrap();
    let err = st.externals(100).unwrap_err().to_string();
    assert!(err.contains("outside the dumped tree"), "{err}");
    assert!(err.contains("--ext-unix-sk"), "{err}");
    // A stream peer cannot be external even with the option.
    st.ext_unix_sk = true;
    let err = st.externals(100).unwrap_err().to_string();
    assert!(err.contains("only datagram sockets"), "{err}");
}

#[test]
fn a_named_datagram_peer_outside_the_dump_is_external_with_the_option() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.sock");
    let _outside = UnixDatagram::bind(&path).unwrap();
    let a = UnixDatagram::unbound().unwrap();
    a.connect(&path).unwrap();
    let mut st = SkDump::default();
    let inside = dump(&mut st, &a, 1).unwrap().usk.unwrap();
    assert!(st.externals(100).is_err());
    st.ext_unix_sk = true;
    let ext = st.externals(100).unwrap();
    assert_eq!(ext.len(), 1);
    let u = ext[0].usk.as_ref().unwrap();
    assert_eq!((ext[0].id, u.id, u.ino), (100, 100, inside.peer));
    assert_eq!(u.uflags, 1);
    assert!(u.name.starts_with(path.as_os_str().as_encoded_bytes()));
}

#[test]
fn an_established_tcp_connection_needs_the_option() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let mut st = SkDump::default();
    let err = dump(&mut st, &c, 1).unwrap_err().to_string();
    assert!(err.contains("--tcp-established"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}", l.local_addr().unwrap().port())),
        "{err}"
    );
    let e = dump(&mut st, &l, 2).unwrap().isk.unwrap();
    assert_eq!(e.state, 10);
    assert_eq!(e.src_addr, vec![0x0100_007f]);
}
