use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/netns_sysctl",
    family: "ns",
    flavors: NS_FLAVORS,
    flags: &[Flag::Suid],
    description: "sysctls of the test's own network namespace (ipv4/ipv6 conf of all, default and lo, net.unix, ping_group_range) are kept",
    ..Desc::DEFAULT
};

/// (sysctl under /proc/sys/net, a value, another value): the test sets the
/// first unless the namespace has it already (a new namespace may inherit
/// the host's), then the second.
const SET: &[(&str, &str, &str)] = &[
    ("ipv4/conf/all/forwarding", "1", "0"),
    ("ipv4/conf/default/accept_source_route", "1", "0"),
    ("ipv4/conf/default/arp_ignore", "2", "1"),
    ("ipv4/conf/lo/accept_local", "1", "0"),
    ("ipv4/conf/lo/route_localnet", "1", "0"),
    ("ipv6/conf/all/hop_limit", "33", "34"),
    ("ipv6/conf/default/accept_dad", "2", "0"),
    ("ipv6/conf/lo/max_addresses", "7", "8"),
    ("unix/max_dgram_qlen", "77", "78"),
    ("ipv4/ping_group_range", "0\t0", "0\t1"),
];

fn path(name: &str) -> String {
    format!("/proc/sys/net/{name}")
}

fn get(name: &str) -> Result<String> {
    Ok(std::fs::read_to_string(path(name))
        .with_context(|| format!("reading {}", path(name)))?
        .trim_end()
        .to_string())
}

pub fn run(t: &mut Test) -> Result<()> {
    let mut set = Vec::new();
    for (name, a, b) in SET {
        let v = if get(name)? == *a { *b } else { *a };
        std::fs::write(path(name), v).with_context(|| format!("writing {v:?} to {}", path(name)))?;
        ensure!(get(name)? == v, "{name} did not take {v:?}");
        set.push((*name, v));
    }
    // what the writes to "all" and "default" changed elsewhere too
    let watched = ["ipv4/conf/lo/forwarding", "ipv4/conf/default/forwarding"];
    let seen: Vec<String> = watched.iter().map(|n| get(n)).collect::<Result<_>>()?;
    t.daemon()?;
    t.wait_sig();
    for (name, v) in &set {
        let got = get(name)?;
        ensure!(got == *v, "{name} is {got:?} after restore, expected {v:?}");
    }
    for (name, v) in watched.iter().zip(&seen) {
        let got = get(name)?;
        ensure!(got == *v, "{name} is {got:?} after restore, expected {v:?}");
    }
    Ok(())
}
