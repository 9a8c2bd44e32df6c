use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "sockets/udp6",
    family: "sockets",
    description: "bound and connected UDP sockets on ::1 keep their addresses and still exchange datagrams",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    super::udp00::bound_and_connected(t, "[::1]:0")
}
