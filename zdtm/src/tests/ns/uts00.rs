use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/uts00",
    family: "ns",
    flavors: NS_FLAVORS,
    flags: &[Flag::Suid],
    description: "host and domain name set in the test's own uts namespace are kept",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let host = format!("zdtm-uts00-{}", std::process::id());
    nix::unistd::sethostname(&host).context("sethostname (needs its own uts ns)")?;
    sys::setdomainname("zdtm.domain").context("setdomainname")?;
    t.daemon()?;
    t.wait_sig();
    let u = nix::sys::utsname::uname().context("uname")?;
    let got = u.nodename().to_string_lossy().into_owned();
    ensure!(got == host, "hostname is {got:?}, expected {host:?}");
    let dom = std::fs::read_to_string("/proc/sys/kernel/domainname").context("read domainname")?;
    ensure!(dom.trim() == "zdtm.domain", "domainname is {dom:?}");
    Ok(())
}
