//! `cargo xtask bench [--reference PATH] [--big] [--table-only]`: the
//! criterion page benches of criu (`criu/benches/pages.rs`) and, with a
//! reference criu binary, the same dumps and restores through it, side by
//! side in a table (MiB/s, peak RSS, latency).

use std::path::Path;

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// What `cargo xtask bench` was asked.
pub struct Opts<'a> {
    pub reference: Option<&'a Path>,
    pub big: bool,
    pub table_only: bool,
    pub args: &'a [String],
}

pub fn bench(sh: &Shell, o: &Opts<'_>) -> Result<()> {
    let _env = [
        o.reference
            .map(|r| ("CRIU_BENCH_REFERENCE", r.display().to_string())),
        o.big.then(|| ("CRIU_BENCH_2G", "1".to_string())),
        o.table_only
            .then(|| ("CRIU_BENCH_TABLE_ONLY", "1".to_string())),
    ]
    .into_iter()
    .flatten()
    .map(|(k, v)| sh.push_env(k, v))
    .collect::<Vec<_>>();
    if let Some(r) = o.reference {
        if !r.is_file() {
            bail!("reference criu {} is not a file", r.display());
        }
    } else if o.table_only {
        bail!("--table-only needs --reference PATH");
    }
    let args = o.args;
    cmd!(sh, "cargo bench -p criu --bench pages -- {args...}")
        .run()
        .context("running the criu page benches")
}
