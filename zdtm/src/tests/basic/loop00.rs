use crate::prelude::*;

pub const DESC: Desc = Desc {
    name: "basic/loop00",
    family: "basic",
    description: "a busy loop keeps two counters in step; they must still agree after restore",
    ..Desc::DEFAULT
};

pub fn run(t: &mut Test) -> Result<()> {
    let mut a: u64 = 0;
    let mut b: u64 = 0;
    t.daemon()?;
    while !t.sig_received() {
        for _ in 0..10_000 {
            a = std::hint::black_box(a + 1);
            b = std::hint::black_box(b + 3);
            if b != a * 3 {
                bail!("counters out of step: a={a} b={b}");
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    ensure!(a > 0, "the loop never ran");
    Ok(())
}
