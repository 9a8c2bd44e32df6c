//! `criu service --address PATH`: a listening SOCK_SEQPACKET socket where
//! each connection is served by a worker of its own.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu::rpc::pb::{CriuReq, CriuReqType, CriuResp};
use nix::sys::socket::{
    connect, recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use prost::Message;

const CRIU: &str = env!("CARGO_BIN_EXE_criu");

fn ask(path: &std::path::Path, ty: CriuReqType) -> CriuResp {
    let sk: OwnedFd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    connect(sk.as_raw_fd(), &UnixAddr::new(path).unwrap()).expect("connect");
    let req = CriuReq {
        r#type: ty as i32,
        ..Default::default()
    };
    send(sk.as_raw_fd(), &req.encode_to_vec(), MsgFlags::empty()).expect("send");
    let mut buf = vec![0u8; 4096];
    let n = recv(sk.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv");
    CriuResp::decode(&buf[..n]).expect("decode")
}

#[test]
fn service_answers_one_connection_after_another() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("criu.sock");
    let mut service = Command::new(CRIU)
        .arg("service")
        .arg("--address")
        .arg(&path)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn criu service");
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Listening comes just after bind: retry the first connection briefly.
    std::thread::sleep(Duration::from_millis(100));
    let mode = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o666);
    let v = ask(&path, CriuReqType::Version);
    assert!(v.success);
    assert_eq!(
        v.version.map(|v| v.major_number.to_string()),
        criu::cli::CRIU_VERSION.split('.').next().map(String::from)
    );
    let e = ask(&path, CriuReqType::PageServer);
    assert!(!e.success);
    assert!(e.cr_errmsg.unwrap_or_default().contains("PAGE_SERVER"));
    assert!(service.try_wait().unwrap().is_none(), "service exited");
    service.kill().unwrap();
    service.wait().unwrap();
}
