use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "basic/cwd00",
    family: "basic",
    description: "the working directory (inside --dirname) is kept",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let dir = t.dir()?.join("cwd00.sub");
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    std::fs::write(dir.join("marker"), b"cwd00").context("write marker")?;
    std::env::set_current_dir(&dir).with_context(|| format!("chdir {}", dir.display()))?;
    let want = std::env::current_dir().context("getcwd")?;
    t.daemon()?;
    t.wait_sig();
    let got = std::env::current_dir().context("getcwd after restore")?;
    ensure!(got == want, "cwd is {}, expected {}", got.display(), want.display());
    let m = std::fs::read("marker").context("read ./marker relative to cwd")?;
    ensure!(m == b"cwd00", "./marker holds {m:?}");
    Ok(())
}
