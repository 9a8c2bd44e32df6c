use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "basic/env00",
    family: "basic",
    description: "an environment variable set before the dump keeps its value",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let name = t.opt("envname").unwrap_or("ZDTM_ENV00").to_string();
    let value = format!("zdtm-{}-{:x}", std::process::id(), pattern::crc32(name.as_bytes()));
    std::env::set_var(&name, &value);
    t.daemon()?;
    t.wait_sig();
    let got = std::env::var(&name).with_context(|| format!("read ${name}"))?;
    ensure!(got == value, "${name} is {got:?}, expected {value:?}");
    Ok(())
}
