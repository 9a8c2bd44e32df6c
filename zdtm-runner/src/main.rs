//! `zdtm-runner`: run zdtm conformance tests through criu.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use zdtm_runner::catalogue::{self, Features};
use zdtm_runner::known::KnownFailures;
use zdtm_runner::nsinit::{self, NsArgs};
use zdtm_runner::reaper::Reaper;
use zdtm_runner::report::Report;
use zdtm_runner::run::Config;
use zdtm_runner::select::{self, parse_flavors, Selection, Shard};

#[derive(Parser, Debug)]
#[command(
    name = "zdtm-runner",
    about = "Run zdtm tests: start, criu dump, criu restore, compare, judge",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    internal: Option<Internal>,

    /// Every test not flagged noauto, in every flavor it supports.
    #[arg(short = 'a', long)]
    all: bool,
    /// A test to run (repeatable; globs like 'files/*' allowed).
    #[arg(short = 't', long = "test", value_name = "NAME")]
    tests: Vec<String>,
    /// Every test of this family (repeatable).
    #[arg(long = "family", value_name = "F")]
    families: Vec<String>,
    /// Flavors to run: comma list of h, ns, uns (default: all a test supports).
    #[arg(short = 'f', long = "flavor", value_name = "LIST")]
    flavor: Option<String>,
    /// Leave out tests matching this glob (repeatable).
    #[arg(short = 'x', long = "exclude", value_name = "PATTERN")]
    exclude: Vec<String>,
    /// Run only shard k of N (1 <= k <= N) of the selected test×flavor jobs.
    #[arg(long, value_name = "k/N")]
    shard: Option<Shard>,
    /// Run up to N tests at once (tests flagged excl always run alone).
    #[arg(short = 'p', long, default_value_t = 1, value_name = "N")]
    parallel: usize,
    /// Run upstream-protocol test binaries: a program, or every executable
    /// in a directory (flavor h only).
    #[arg(long, value_name = "DIR|PROG")]
    external: Vec<PathBuf>,

    /// Dump and restore N times.
    #[arg(long, default_value_t = 1, value_name = "N")]
    iters: u32,
    /// N pre-dumps (criu pre-dump, the tree keeps running) before each
    /// dump, which then leaves unchanged pages to the last of them.
    #[arg(long, default_value_t = 0, value_name = "N", conflicts_with = "nocr")]
    pre: u32,
    /// Dump with --leave-running; do not restore.
    #[arg(long, conflicts_with = "nocr")]
    norst: bool,
    /// Do not run criu at all (checks the tests themselves).
    #[arg(long)]
    nocr: bool,
    /// Keep going after a failure (default: stop at the first one).
    #[arg(short = 'k', long)]
    keep_going: bool,

    /// The criu binary (default: `criu` next to this binary).
    #[arg(long, value_name = "PATH")]
    criu_bin: Option<PathBuf>,
    /// The catalogue binary (default: `zdtm-test` next to this binary).
    #[arg(long, value_name = "PATH")]
    zdtm_bin: Option<PathBuf>,
    /// Known failures list.
    #[arg(long, value_name = "FILE", default_value = "zdtm/known-failures.toml")]
    known_failures: PathBuf,
    /// Where reports and kept artifacts go.
    #[arg(long, value_name = "DIR", default_value = "target/zdtm")]
    out_dir: PathBuf,
    /// Seconds allowed for one criu dump or restore.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    criu_timeout: u64,
    /// uid:gid the tests run as unless flagged suid.
    #[arg(long, default_value = "18943:58467", value_name = "UID:GID")]
    ids: String,
    /// Print the selected jobs and exit.
    #[arg(short = 'l', long)]
    list: bool,
}

#[derive(Subcommand, Debug)]
enum Internal {
    /// (internal) set up the namespaces of the ns/uns flavors
    #[command(name = "__ns-helper", hide = true)]
    Helper(NsArgs),
    /// (internal) pid 1 of the ns/uns flavors
    #[command(name = "__ns-init", hide = true)]
    Init(NsArgs),
    /// (internal) exec the test inside the ns/uns flavors
    #[command(name = "__ns-exec", hide = true)]
    Exec(NsArgs),
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?;
    Ok(dir.join(name))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.internal {
        Some(Internal::Helper(a)) => return ExitCode::from(nsinit::helper_main(&a) as u8),
        Some(Internal::Init(a)) => return ExitCode::from(nsinit::init_main(&a) as u8),
        Some(Internal::Exec(a)) => return ExitCode::from(nsinit::exec_main(&a) as u8),
        None => {}
    }
    match real_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("zdtm-runner: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Marks every fd this runner inherited (beyond stdio) close-on-exec, so
/// that tests start with exactly the fds they open themselves: a stray
/// inherited pipe would otherwise be part of every dumped tree.
fn close_inherited_fds_on_exec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: the fd is only borrowed for the fcntl call; an fd that
        // was the read_dir handle and is gone by now just fails.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = nix::fcntl::fcntl(
            borrowed,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
}

fn real_main(cli: Cli) -> Result<bool> {
    close_inherited_fds_on_exec();
    let (uid, gid) = cli
        .ids
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .with_context(|| format!("--ids {}: expected UID:GID", cli.ids))?;
    if cli.iters == 0 {
        bail!("--iters must be at least 1");
    }
    let zdtm_bin = match &cli.zdtm_bin {
        Some(p) => absolute(p)?,
        None => sibling("zdtm-test")?,
    };
    let criu = if cli.nocr {
        None
    } else {
        let c = match &cli.criu_bin {
            Some(p) => absolute(p)?,
            None => sibling("criu")?,
        };
        if !c.exists() {
            bail!(
                "criu binary {} not found (build it, or give --criu-bin / --nocr)",
                c.display()
            );
        }
        Some(c)
    };

    let sel = Selection {
        all: cli.all,
        tests: cli.tests.clone(),
        families: cli.families.clone(),
        flavors: cli
            .flavor
            .as_deref()
            .map(parse_flavors)
            .transpose()
            .map_err(anyhow::Error::msg)?,
        exclude: cli.exclude.clone(),
        shard: cli.shard,
    };
    let mut jobs = Vec::new();
    let mut features = Features::new();
    let catalogue_wanted = sel.all || !sel.tests.is_empty() || !sel.families.is_empty();
    if catalogue_wanted || cli.external.is_empty() {
        let tests = catalogue::load_catalogue(&zdtm_bin)
            .with_context(|| format!("listing the catalogue with {}", zdtm_bin.display()))?;
        features = catalogue::load_features(&zdtm_bin)
            .with_context(|| format!("asking {} for kernel features", zdtm_bin.display()))?;
        jobs.extend(select::select(&tests, &sel)?);
    }
    if !cli.external.is_empty() {
        let mut ext = Vec::new();
        for p in &cli.external {
            ext.extend(catalogue::load_external(p)?);
        }
        let ext_sel = Selection {
            all: true,
            tests: vec![],
            families: vec![],
            ..sel.clone()
        };
        jobs.extend(select::select(&ext, &ext_sel)?);
    }
    if cli.list {
        for j in &jobs {
            println!("{}", j.id());
        }
        return Ok(true);
    }
    let known = KnownFailures::load(&cli.known_failures)?;
    let out_dir = absolute(&cli.out_dir)?;
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let reaper = Reaper::start().context("becoming a child subreaper")?;
    let mode = if criu.is_none() {
        "--nocr (no criu)".to_string()
    } else if cli.norst {
        format!(
            "dump --leave-running, no restore, {} iteration(s)",
            cli.iters
        )
    } else {
        format!("dump+restore, {} iteration(s)", cli.iters)
    };
    let mode = if cli.pre > 0 && criu.is_some() {
        format!("{mode}, {} pre-dump(s) before each dump", cli.pre)
    } else {
        mode
    };
    let cfg = Config {
        criu: criu.clone(),
        zdtm_bin,
        self_exe: std::env::current_exe().context("finding this binary")?,
        out_dir: out_dir.clone(),
        iters: cli.iters,
        pre: cli.pre,
        norst: cli.norst,
        criu_timeout: Duration::from_secs(cli.criu_timeout),
        uid,
        gid,
        features,
        known,
    };
    eprintln!("zdtm-runner: {} job(s), {mode}", jobs.len());
    let progress = |n: usize, total: usize, r: &zdtm_runner::report::TestResult| {
        eprintln!(
            "[{n}/{total}] {} ({}): {} {:.1}s{}",
            r.test,
            r.flavor,
            r.outcome.as_str(),
            r.seconds,
            r.reason
                .as_deref()
                .map(|s| format!(" — {s}"))
                .unwrap_or_default()
        );
    };
    let (results, stopped) =
        zdtm_runner::run_jobs(&cfg, &reaper, jobs, cli.parallel, cli.keep_going, &progress);
    let report = Report {
        mode,
        criu: criu.map(|c| c.display().to_string()),
        stopped_early: stopped,
        results,
    };
    report
        .write_all(&out_dir)
        .with_context(|| format!("writing reports into {}", out_dir.display()))?;
    let t = report.totals();
    eprintln!(
        "zdtm-runner: {} pass, {} fail, {} skip, {} xfail, {} xpass{} — {}",
        t.pass,
        t.fail,
        t.skip,
        t.xfail,
        t.xpass,
        if stopped {
            " (stopped at the first failure)"
        } else {
            ""
        },
        out_dir.join("report.md").display()
    );
    Ok(!report.failed())
}
