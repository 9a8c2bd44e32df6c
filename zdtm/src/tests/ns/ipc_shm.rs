use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "ns/ipc_shm",
    family: "ns",
    feature: Some("sysvipc"),
    description: "a SysV shared memory segment keeps its id, size, attach address and content",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let len = 64 * 1024;
    let mut shm = sys::Shm::create(len).context("shmget/shmat")?;
    pattern::fill(141, shm.bytes_mut());
    let (addr, id) = (shm.addr(), shm.id);
    t.daemon()?;
    t.wait_sig();
    let (size, nattch) = shm.stat().with_context(|| format!("IPC_STAT of shm {id}"))?;
    ensure!(size == len, "segment {id} size {size}, expected {len}");
    ensure!(nattch == 1, "segment {id} attached {nattch} times");
    let perms = maps_perms(addr)?;
    ensure!(perms == "rw-s", "attach at {addr:#x} has perms {perms}");
    let maps = std::fs::read_to_string("/proc/self/maps").context("maps")?;
    ensure!(maps.lines().any(|l| l.starts_with(&format!("{addr:x}-")) && l.contains("SYSV")), "no SYSV mapping at {addr:#x}");
    check_pattern("shm segment", 141, shm.bytes())
}
