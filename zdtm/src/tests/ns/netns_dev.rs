use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/netns_dev",
    family: "ns",
    flavors: NS_FLAVORS,
    flags: &[Flag::Suid],
    feature: Some("ip_tool"),
    description: "a veth pair in the test's own network namespace keeps its names, indexes, MTU, MAC, flags, IPv4/IPv6 addresses and routes",
    ..Desc::DEFAULT
};

fn ip(args: &str) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .with_context(|| format!("ip {args}"))?;
    ensure!(
        out.status.success(),
        "ip {args}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Everything the namespace's devices, addresses and routes look like, from
/// /sys and /proc (not from criu's own netlink code).
fn snapshot() -> Result<String> {
    let mut out = String::new();
    let mut devs: Vec<_> = std::fs::read_dir("/sys/class/net")
        .context("/sys/class/net")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    devs.sort();
    for d in &devs {
        let attr = |a: &str| {
            std::fs::read_to_string(format!("/sys/class/net/{d}/{a}"))
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|e| format!("({e})"))
        };
        // flags without IFF_RUNNING/LOWER_UP-style state, which follows the
        // carrier and may lag behind right after the restore
        out += &format!(
            "dev {d} index {} mtu {} address {} flags {} iflink {}\n",
            attr("ifindex"),
            attr("mtu"),
            attr("address"),
            attr("flags"),
            attr("iflink")
        );
    }
    for a in nix::ifaddrs::getifaddrs().context("getifaddrs")? {
        if let Some(sin) = a.address.as_ref().and_then(|x| x.as_sockaddr_in()) {
            let mask = a.netmask.as_ref().and_then(|m| m.as_sockaddr_in()).map(|m| m.ip());
            out += &format!("inet {} {} {:?}\n", a.interface_name, sin.ip(), mask);
        }
    }
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let mut v6: Vec<&str> = v6.lines().collect();
    v6.sort();
    for l in v6 {
        out += &format!("inet6 {l}\n");
    }
    // routes without their use counters (columns RefCnt and Use)
    let r4 = std::fs::read_to_string("/proc/net/route").context("/proc/net/route")?;
    for l in r4.lines().skip(1) {
        let c: Vec<&str> = l.split_whitespace().collect();
        let keep: Vec<&str> = c.iter().enumerate().filter(|(i, _)| *i != 4 && *i != 5).map(|(_, s)| *s).collect();
        out += &format!("route {}\n", keep.join(" "));
    }
    let r6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut r6: Vec<String> = r6
        .lines()
        .map(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.iter().enumerate().filter(|(i, _)| *i != 6 && *i != 7).map(|(_, s)| *s).collect::<Vec<_>>().join(" ")
        })
        .collect();
    r6.sort();
    for l in r6 {
        out += &format!("route6 {l}\n");
    }
    Ok(out)
}

pub fn run(t: &mut Test) -> Result<()> {
    ip("link add zv0 index 40 type veth peer name zv1 index 41")?;
    ip("link set zv0 mtu 1400")?;
    ip("link set zv1 address 02:00:00:00:77:01")?;
    ip("link set zv0 up")?;
    ip("link set zv1 up")?;
    ip("addr add 10.77.0.1/24 dev zv0")?;
    ip("addr add 10.77.1.1/24 dev zv1")?;
    ip("addr add 127.0.0.7/8 dev lo")?;
    ip("addr add fd00:77::1/64 dev zv0 nodad")?;
    ip("route add 10.88.0.0/16 via 10.77.0.2 dev zv0")?;
    ip("-6 route add fd00:88::/64 via fd00:77::2 dev zv0")?;
    // link-local addresses come and go with DAD: let them settle
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = snapshot()?;
    t.daemon()?;
    t.wait_sig();
    let after = snapshot()?;
    if before != after {
        let diff: Vec<String> = before
            .lines()
            .filter(|l| !after.lines().any(|a| a == *l))
            .map(|l| format!("- {l}"))
            .chain(after.lines().filter(|l| !before.lines().any(|b| b == *l)).map(|l| format!("+ {l}")))
            .collect();
        bail!("the network namespace changed:\n{}", diff.join("\n"));
    }
    Ok(())
}
