use crate::prelude::*;
use nix::sys::resource::{getrlimit, setrlimit, Resource};

pub const DESC: Desc = Desc {
    name: "basic/rlimits00",
    family: "basic",
    description: "soft (and one lowered hard) resource limits are kept",
    ..Desc::DEFAULT
};

const SET: &[(Resource, u64)] = &[
    (Resource::RLIMIT_NOFILE, 777),
    (Resource::RLIMIT_CORE, 3 * 4096),
    (Resource::RLIMIT_FSIZE, 1 << 40),
    (Resource::RLIMIT_LOCKS, 1001),
    (Resource::RLIMIT_SIGPENDING, 1234),
    (Resource::RLIMIT_STACK, 6 << 20),
];

pub fn run(t: &mut Test) -> Result<()> {
    let mut want = Vec::new();
    for &(r, soft) in SET {
        let (_, hard) = getrlimit(r).with_context(|| format!("getrlimit {r:?}"))?;
        let soft = soft.min(hard);
        setrlimit(r, soft, hard).with_context(|| format!("setrlimit {r:?} soft {soft}"))?;
        want.push((r, soft, hard));
    }
    // Lowering a hard limit needs no privilege.
    let (_, hard) = getrlimit(Resource::RLIMIT_MSGQUEUE).context("getrlimit MSGQUEUE")?;
    let mq = 123_456u64.min(hard);
    setrlimit(Resource::RLIMIT_MSGQUEUE, mq, mq).context("setrlimit MSGQUEUE")?;
    want.push((Resource::RLIMIT_MSGQUEUE, mq, mq));
    t.daemon()?;
    t.wait_sig();
    for (r, soft, hard) in want {
        let got = getrlimit(r).with_context(|| format!("getrlimit {r:?}"))?;
        ensure!(got == (soft, hard), "{r:?} is {got:?}, expected ({soft}, {hard})");
    }
    Ok(())
}
