use crate::prelude::*;
use std::io::Write;
use std::os::fd::AsRawFd;

use super::tcp_established::{connected, expect};

pub const DESC: Desc = Desc {
    name: "sockets/tcp_established_child",
    family: "sockets",
    description: "an established loopback TCP connection between a parent and its child keeps the data queued both ways",
    dump_opts: &["--tcp-established"],
    restore_opts: &["--tcp-established"],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let (mut c, mut s, l) = connected("127.0.0.1:0")?;
    drop(l);
    let mut to_s = vec![0u8; 5000];
    pattern::fill(7, &mut to_s);
    let mut to_c = vec![0u8; 4000];
    pattern::fill(8, &mut to_c);
    let page = SharedPage::new()?;
    // The child keeps the server end; the parent the client end.
    let kid = {
        let page = &page;
        let to_s = to_s.clone();
        let to_c = to_c.clone();
        let client_fd = c.as_raw_fd();
        // The closure owns the server end: the parent's copy closes with it.
        fork_child(move || {
            nix::unistd::close(client_fd).context("child: close the client end")?;
            s.write_all(&to_c).context("child write")?;
            sync::add_and_wake(page.word(0), 1)?;
            sync::wait_until(page.word(1), |v| v != 0)?;
            expect(&mut s, &to_s, "child, data queued before the dump")?;
            s.write_all(b"after-s").context("child write after restore")?;
            expect(&mut s, b"after-c", "child, data sent after restore")
        })?
    };
    let res = (|| {
        c.write_all(&to_s).context("parent write")?;
        ensure!(wait_for(5000, || page.word(0).load(Ordering::SeqCst) == 1), "child did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
        t.daemon()?;
        t.wait_sig();
        sync::set_and_wake(page.word(1), 1)?;
        expect(&mut c, &to_c, "parent, data queued before the dump")?;
        c.write_all(b"after-c").context("parent write after restore")?;
        expect(&mut c, b"after-s", "parent, data sent after restore")?;
        kid.wait_ok()
    })();
    if res.is_err() {
        kid.kill();
    }
    res
}
