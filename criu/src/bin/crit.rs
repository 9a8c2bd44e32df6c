//! crit: convert CRIU images to JSON and back, compatible with upstream crit.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use criu::image::explore::{self, Explorer};
use criu::image::json;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "crit", about = "CRiu Image Tool: images to JSON and back")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// convert an image to JSON
    Decode {
        /// image file (default: stdin)
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// JSON file (default: stdout)
        #[arg(short = 'o', long = "out")]
        output: Option<PathBuf>,
        /// indented JSON with hex, flag and enum names
        #[arg(long)]
        pretty: bool,
        /// do not show entry payload (if exists), only its size
        #[arg(long)]
        nopl: bool,
    },
    /// convert JSON to an image
    Encode {
        /// JSON file (default: stdin)
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// image file (default: stdout)
        #[arg(short = 'o', long = "out")]
        output: Option<PathBuf>,
    },
    /// decode an image with --pretty to stdout
    Show {
        /// image file
        input: PathBuf,
        /// do not show entry payload (if exists), only its size
        #[arg(long)]
        nopl: bool,
    },
    /// the image's magic and number of entries
    Info {
        /// image file
        input: PathBuf,
    },
    /// explore an images directory: ps, fds, mems or rss
    X {
        /// images directory
        dir: PathBuf,
        /// what to show: ps, fds, mems, rss
        what: Explorer,
    },
}

fn read_input(input: &Option<PathBuf>) -> Result<(PathBuf, Vec<u8>)> {
    match input {
        Some(p) => Ok((
            p.clone(),
            std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        )),
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .context("reading stdin")?;
            Ok((PathBuf::from("<stdin>"), b))
        }
    }
}

fn write_output(output: &Option<PathBuf>, data: &[u8]) -> Result<()> {
    match output {
        Some(p) => std::fs::write(p, data).with_context(|| format!("writing {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(data)
                .and_then(|()| out.flush())
                .context("writing stdout")
        }
    }
}

fn decode(
    input: &Option<PathBuf>,
    output: &Option<PathBuf>,
    pretty: bool,
    nopl: bool,
) -> Result<()> {
    let (name, bytes) = read_input(input)?;
    let img = json::decode_image_with(&name, bytes, pretty, nopl).with_context(|| {
        format!(
            "decoding {} (pages-*.img hold raw data, not an image crit reads)",
            name.display()
        )
    })?;
    let mut text = json::to_python_json(&img, pretty);
    if output.is_none() {
        text.push('\n');
    }
    write_output(output, text.as_bytes())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Decode {
            input,
            output,
            pretty,
            nopl,
        } => decode(&input, &output, pretty, nopl),
        Cmd::Show { input, nopl } => decode(&Some(input), &None, true, nopl),
        Cmd::Encode { input, output } => {
            let (name, bytes) = read_input(&input)?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| {
                format!("{}: not JSON (encode expects crit's JSON)", name.display())
            })?;
            let img = json::encode_image(Path::new(&name), &v)?;
            write_output(&output, &img)
        }
        Cmd::Info { input } => {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let v = json::info(&input, bytes)?;
            println!("{}", json::to_python_json(&v, true));
            Ok(())
        }
        Cmd::X { dir, what } => {
            let mut out = std::io::stdout().lock();
            explore::explore(&dir, what, &mut out)
                .with_context(|| format!("crit x {} {what:?}", dir.display()))
        }
    }
}
