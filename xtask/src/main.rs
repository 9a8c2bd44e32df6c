//! `cargo xtask zdtm|test|ci|bench|vm`: the project's task runner.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod bench;
mod vm;
mod vm_initramfs;
mod vm_matrix;

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
    ///
    /// `--kernel K` (repeatable; `host` is this machine's kernel, any other
    /// name one of vm-images/kernels.toml, run in a VM) runs the suite on
    /// each kernel with --keep-going into target/zdtm/<K>/ and writes
    /// target/zdtm/matrix.md and matrix.json. With kernels, also
    /// `--vm-timeout SECS` (default 14400) and `--vm-memory MIB` (2048).
    /// `--matrix` takes kernels and runner arguments from
    /// ci/kernel-matrix.toml (the nightly job).
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

/// The nightly kernel matrix.
const MATRIX_FILE: &str = "ci/kernel-matrix.toml";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MatrixFile {
    kernels: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    vm_timeout: Option<u64>,
}

fn parse_matrix_file(text: &str) -> Result<MatrixFile> {
    let m: MatrixFile = toml::from_str(text)?;
    if m.kernels.is_empty() {
        anyhow::bail!("no kernels");
    }
    Ok(m)
}

fn load_matrix_file(p: &Path) -> Result<MatrixFile> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    parse_matrix_file(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Takes `--matrix` (ci/kernel-matrix.toml), `--kernel K`, `--vm-timeout S` and `--vm-memory M` (also with
/// `=`) out of the arguments meant for the runner.
fn split_kernel_args(args: &[String]) -> Result<(Vec<String>, vm::RunOpts, Vec<String>)> {
    let mut kernels = Vec::new();
    let mut opts = vm::RunOpts {
        timeout: 4 * 3600,
        ..Default::default()
    };
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (key, inline) = match a.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        if key == "--matrix" && inline.is_none() {
            let m = load_matrix_file(&workspace_root().join(MATRIX_FILE))?;
            kernels.extend(m.kernels);
            rest.extend(m.args);
            if let Some(t) = m.vm_timeout {
                opts.timeout = t;
            }
            continue;
        }
        if !matches!(key, "--kernel" | "--vm-timeout" | "--vm-memory") {
            rest.push(a.clone());
            continue;
        }
        let v = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .with_context(|| format!("{key} needs a value"))?,
        };
        match key {
            "--kernel" => kernels.push(v),
            "--vm-timeout" => {
                opts.timeout = v
                    .parse()
                    .with_context(|| format!("--vm-timeout {v}: seconds"))?
            }
            _ => opts.memory = v.parse().with_context(|| format!("--vm-memory {v}: MiB"))?,
        }
    }
    Ok((kernels, opts, rest))
}

/// The suite on each kernel, then the matrix.
fn zdtm_matrix(sh: &Shell, kernels: &[String], opts: &vm::RunOpts, args: &[String]) -> Result<()> {
    let ws = sh.current_dir();
    let list = vm::load_kernels(&ws)?;
    let mut specs = Vec::new();
    for k in kernels {
        if k == vm::HOST {
            specs.push(None);
        } else {
            let s = list.iter().find(|s| &s.name == k).with_context(|| {
                format!("unknown kernel {k:?}: `host` or one of `cargo xtask vm list`")
            })?;
            specs.push(Some(s.clone()));
        }
    }
    if args
        .iter()
        .any(|a| a == "--out-dir" || a.starts_with("--out-dir="))
    {
        anyhow::bail!("--out-dir is chosen per kernel (target/zdtm/<kernel>) with --kernel");
    }
    if args
        .iter()
        .any(|a| a == "-l" || a == "--list" || a == "-h" || a == "--help")
    {
        return zdtm(sh, args);
    }
    cmd!(sh, "cargo build --release -p criu -p zdtm -p zdtm-runner")
        .run()
        .context("building criu, zdtm and zdtm-runner")?;
    let mut base = args.to_vec();
    if !base.iter().any(|a| is_selection(a)) {
        base.insert(0, "--all".into());
    }
    if !base.iter().any(|a| a == "--keep-going" || a == "-k") {
        base.push("--keep-going".into());
    }
    let runner = ws.join("target/release/zdtm-runner");
    let zdtm_dir = ws.join("target/zdtm");
    let mut runs = Vec::new();
    for (name, spec) in kernels.iter().zip(&specs) {
        let out = zdtm_dir.join(name);
        let report = out.join("report.json");
        if report.exists() {
            std::fs::remove_file(&report)
                .with_context(|| format!("removing the old {}", report.display()))?;
        }
        let mut a = base.clone();
        a.push("--out-dir".into());
        a.push(out.display().to_string());
        let started = std::time::Instant::now();
        let (status, ok, release) = match spec {
            None => {
                eprintln!("zdtm: kernel host: {} {}", runner.display(), a.join(" "));
                let st = std::process::Command::new(&runner)
                    .args(&a)
                    .current_dir(&ws)
                    .status()
                    .with_context(|| format!("running {}", runner.display()))?;
                let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .ok()
                    .map(|s| s.trim().to_string());
                let status = match st.code() {
                    Some(c) => format!("exit {c}"),
                    None => format!("{st}"),
                };
                (status, st.success(), release)
            }
            Some(spec) => {
                let mut c = vec![runner.display().to_string()];
                c.extend(a.iter().cloned());
                let o = vm::run(sh, &ws, spec, &c, opts)?;
                let release = vm::Cached::load(&ws.join("target"), &spec.name).map(|c| c.release);
                (o.to_string(), o == vm::VmOutcome::Exited(0), release)
            }
        };
        eprintln!(
            "zdtm: kernel {name}: {status} after {:.0}s",
            started.elapsed().as_secs_f64()
        );
        let results = match vm_matrix::load_report(&report) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("zdtm: kernel {name}: no report: {e:#}");
                None
            }
        };
        runs.push(vm_matrix::KernelRun {
            kernel: name.clone(),
            release,
            status,
            ok,
            results,
        });
    }
    let m = vm_matrix::Matrix { kernels: runs };
    m.write(&zdtm_dir)?;
    eprintln!("zdtm: matrix in {}", zdtm_dir.join("matrix.md").display());
    if m.kernels.iter().all(|k| k.ok) {
        Ok(())
    } else {
        Err(ChildFailed(1).into())
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
        Task::Zdtm { args } => {
            let (kernels, vm_opts, rest) = split_kernel_args(&args)?;
            if kernels.is_empty() {
                zdtm(&sh, &rest)
            } else {
                zdtm_matrix(&sh, &kernels, &vm_opts, &rest)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn matrix_file_parsing() {
        let m = parse_matrix_file("kernels = [\"6.1\"]\n").unwrap();
        assert_eq!(m.kernels, ["6.1"]);
        assert!(m.args.is_empty() && m.vm_timeout.is_none());
        assert!(parse_matrix_file("kernels = []").is_err());
        assert!(parse_matrix_file("kernels = [\"6.1\"]\nextra = 1").is_err());
    }

    #[test]
    fn kernel_options_are_taken_out_of_the_runner_args() {
        let (k, o, rest) = split_kernel_args(&strings(&[
            "--kernel",
            "6.1",
            "-t",
            "basic/loop00",
            "--kernel=host",
            "--vm-timeout=60",
            "--vm-memory",
            "1024",
            "-f",
            "h",
        ]))
        .unwrap();
        assert_eq!(k, ["6.1", "host"]);
        assert_eq!((o.timeout, o.memory), (60, 1024));
        assert_eq!(rest, ["-t", "basic/loop00", "-f", "h"]);
        let (k, o, rest) = split_kernel_args(&strings(&["--all"])).unwrap();
        assert!(k.is_empty());
        assert_eq!(o.timeout, 4 * 3600);
        assert_eq!(rest, ["--all"]);
        assert!(split_kernel_args(&strings(&["--kernel"])).is_err());
        let (k, o, rest) = split_kernel_args(&strings(&["--matrix"])).unwrap();
        assert!(k.contains(&"host".to_string()) && k.len() > 1, "{k:?}");
        assert!(o.timeout > 0);
        assert!(rest.iter().any(|a| is_selection(a)), "{rest:?}");
        assert!(split_kernel_args(&strings(&["--vm-timeout", "soon"])).is_err());
    }
}
