//! The fd kinds against upstream CRIU 4.2's golden "fds" images: what
//! upstream wrote, criu-rs reads and makes again.

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use criu::image::{self, magic, pb};
use criu::objects::files::{self, Opened};

fn golden() -> Option<PathBuf> {
    let p = Path::new("/work/shared/golden-images/fds/img");
    p.exists().then(|| p.to_path_buf())
}

fn files_of(dir: &Path) -> Vec<pb::FileEntry> {
    image::read_image(dir, "files.img", magic::FILES).unwrap()
}

fn by_type(files: &[pb::FileEntry], t: pb::FdTypes) -> Vec<&pb::FileEntry> {
    files.iter().filter(|e| e.r#type == t as i32).collect()
}

fn fdinfo(fd: i32) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap()
}

#[test]
fn golden_pipe_comes_back_with_its_data() {
    let Some(dir) = golden() else { return };
    let files = files_of(&dir);
    let pipes = by_type(&files, pb::FdTypes::Pipe);
    let reader = pipes
        .iter()
        .find(|e| e.pipe.as_ref().unwrap().flags & 3 == 0)
        .unwrap();
    let mut o = Opened::new(&dir);
    let fd = o.get(&files, reader.id).unwrap();
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(fd, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"pipe-data");
}

#[test]
fn golden_memfd_comes_back_with_content_and_seals() {
    let Some(dir) = golden() else { return };
    let files = files_of(&dir);
    let m = by_type(&files, pb::FdTypes::Memfd)[0];
    let mut o = Opened::new(&dir);
    let fd = o.get(&files, m.id).unwrap().try_clone().unwrap();
    let f = std::fs::File::from(fd);
    let mut b = [0u8; 5];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"memfd");
    assert_eq!(f.metadata().unwrap().len(), 5);
    // Seals come last, once every task has mapped its memfds.
    assert_eq!(
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap(),
        0
    );
    o.seal_memfds().unwrap();
    let seals = nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
    assert_eq!(seals, libc::F_SEAL_GROW);
    let link = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    assert_eq!(link.to_string_lossy(), "/memfd:golden (deleted)");
}

#[test]
fn golden_event_files_come_back() {
    let Some(dir) = golden() else { return };
    let files = files_of(&dir);
    let mut o = Opened::new(&dir);
    let efd = by_type(&files, pb::FdTypes::Eventfd)[0].id;
    let i = fdinfo(o.get(&files, efd).unwrap().as_raw_fd());
    assert!(
        i.contains("eventfd-count:                3") || i.contains("eventfd-count: 3"),
        "{i}"
    );
    let sfd = by_type(&files, pb::FdTypes::Signalfd)[0].id;
    let i = fdinfo(o.get(&files, sfd).unwrap().as_raw_fd());
    assert!(i.contains("sigmask:\t0000000000000200"), "{i}");
    let tfd = by_type(&files, pb::FdTypes::Timerfd)[0].id;
    let i = fdinfo(o.get(&files, tfd).unwrap().as_raw_fd());
    assert!(i.contains("clockid: 1"), "{i}");
    assert!(i.contains("it_interval: (11, 0)"), "{i}");
}

#[test]
fn golden_epoll_gets_its_target_under_the_old_number() {
    let Some(dir) = golden() else { return };
    let files = files_of(&dir);
    let fdinfo_img: Vec<pb::FdinfoEntry> =
        image::read_image(&dir, "fdinfo-2.img", magic::FDINFO).unwrap();
    let mut o = Opened::new(&dir);
    o.set_task_fds(&fdinfo_img);
    let ep = by_type(&files, pb::FdTypes::Eventpoll)[0].id;
    let i = fdinfo(o.get(&files, ep).unwrap().as_raw_fd());
    assert!(
        i.contains("tfd:        3 events:       19 data:               2a"),
        "{i}"
    );
}

#[test]
fn unknown_kind_message_names_the_fd() {
    let what = match files::classify("anon_inode:[io_uring]", 0, 1, false) {
        files::Kind::Unsupported(w) => w,
        k => panic!("{k:?}"),
    };
    let msg = files::unsupported(10, 5, "anon_inode:[io_uring]", &what).to_string();
    assert!(msg.contains("fd 5") && msg.contains("io_uring"), "{msg}");
}
