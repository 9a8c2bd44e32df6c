use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "sockets/tcp6_established",
    family: "sockets",
    description: "an established TCP connection over ::1 (both ends in the test) keeps its addresses and the data queued both ways",
    dump_opts: &["--tcp-established"],
    restore_opts: &["--tcp-established"],
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    super::tcp_established::run_on(t, "[::1]:0")
}
