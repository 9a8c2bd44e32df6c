//! `cargo xtask zdtm|test|ci|bench|vm`: the project's task runner.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bench;
mod vm;
mod vm_initramfs;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xshell::{cmd, Shell};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "criu-rs tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build criu, zdtm and zdtm-runner in release, then run the zdtm suite.
    /// Arguments go to zdtm-runner (default: --all). See
    /// `cargo xtask zdtm -- --help`.
    Zdtm {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Unit and integration tests of the whole workspace.
    Test {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// What CI runs: fmt --check, clippy -D warnings, tests, zdtm --all --keep-going -p 2.
    Ci,
    /// Page dump throughput and restore latency (criterion), and with
    /// --reference PATH the same work through that criu, side by side.
    Bench {
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Add the 2 GiB dump case (slow).
        #[arg(long)]
        big: bool,
        /// Only the side-by-side table (needs --reference).
        #[arg(long)]
        table_only: bool,
        /// Passed to the bench binary (e.g. a criterion filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Throwaway qemu VMs booting other kernels (vm-images/kernels.toml).
    Vm {
        #[command(subcommand)]
        cmd: vm::VmCmd,
    },
}

/// Exit status of a failed child, passed through.
#[derive(Debug)]
struct ChildFailed(i32);

impl std::fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exited with status {}", self.0)
    }
}
impl std::error::Error for ChildFailed {}

fn workspace_root() -> PathBuf {
    // xtask/ lives directly under the workspace root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn is_selection(a: &str) -> bool {
    matches!(
        a,
        "--all" | "-a" | "-t" | "--test" | "--family" | "--external" | "-l"
    ) || a.starts_with("--test=")
        || a.starts_with("--family=")
        || a.starts_with("--external=")
        || a == "--help"
        || a == "-h"
}

fn zdtm(sh: &Shell, args: &[String]) -> Result<()> {
    cmd!(sh, "cargo build --release -p criu -p zdtm -p zdtm-runner")
        .run()
        .context("building criu, zdtm and zdtm-runner")?;
    let mut args = args.to_vec();
    if !args.iter().any(|a| is_selection(a)) {
        args.insert(0, "--all".into());
    }
    let runner = sh.current_dir().join("target/release/zdtm-runner");
    let status = std::process::Command::new(&runner)
        .args(&args)
        .current_dir(sh.current_dir())
        .status()
        .with_context(|| format!("running {}", runner.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(ChildFailed(c).into()),
        None => Err(ChildFailed(2).into()),
    }
}

fn test(sh: &Shell, args: &[String]) -> Result<()> {
    cmd!(sh, "cargo test --workspace {args...}")
        .run()
        .context("cargo test --workspace")?;
    Ok(())
}

fn ci(sh: &Shell) -> Result<()> {
    cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("formatting (run cargo fmt --all)")?;
    cmd!(sh, "cargo clippy --workspace --all-targets -- -D warnings")
        .run()
        .context("clippy")?;
    test(sh, &[])?;
    // two cores: two tests at a time (tests flagged excl still run alone)
    zdtm(
        sh,
        &[
            "--all".into(),
            "--keep-going".into(),
            "--parallel".into(),
            "2".into(),
        ],
    )
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let sh = Shell::new()?;
    sh.change_dir(workspace_root());
    match cli.task {
        Task::Zdtm { args } => zdtm(&sh, &args),
        Task::Test { args } => test(&sh, &args),
        Task::Ci => ci(&sh),
        Task::Bench {
            reference,
            big,
            table_only,
            args,
        } => bench::bench(
            &sh,
            &bench::Opts {
                reference: reference.as_deref(),
                big,
                table_only,
                args: &args,
            },
        ),
        Task::Vm { cmd } => vm::vm(&sh, &workspace_root(), cmd),
    }
}

#[derive(Debug)]
struct NotBuilt(&'static str);

impl std::fmt::Display for NotBuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`cargo xtask {}` is not built yet", self.0)
    }
}
impl std::error::Error for NotBuilt {}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(c) = e.downcast_ref::<ChildFailed>() {
                // the runner already reported; pass its status through
                if e.chain().count() == 1 {
                    return ExitCode::from(c.0.clamp(1, 255) as u8);
                }
            }
            eprintln!("xtask: {e:#}");
            if e.downcast_ref::<NotBuilt>().is_some() {
                return ExitCode::from(2);
            }
            ExitCode::FAILURE
        }
    }
}
