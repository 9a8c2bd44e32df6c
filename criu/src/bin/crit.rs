//! crit: the CRIU image tool of criu-rs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use criu::image::explore::{self, Explorer};

#[derive(Parser)]
#[command(name = "crit", about = "CRiu Image Tool")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// explore an images directory: ps, fds, mems or rss
    X {
        /// images directory
        dir: PathBuf,
        /// what to show: ps, fds, mems, rss
        what: Explorer,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::X { dir, what } => {
            let mut out = std::io::stdout().lock();
            explore::explore(&dir, what, &mut out)
                .with_context(|| format!("crit x {} {what:?}", dir.display()))?;
        }
    }
    Ok(())
}
