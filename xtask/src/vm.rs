//! `cargo xtask vm list|fetch|run|setup`: throwaway qemu VMs that boot a
//! Debian kernel and run one command of the workspace, the host's `/`
//! shared read-only (under a tmpfs overlay) and the workspace's `target/`
//! shared writable, so that host-built binaries run unchanged and their
//! results come back.
//!
//! Kernels are listed in `vm-images/kernels.toml` and cached under
//! `target/vm/kernels/<name>/`. Everything comes from Debian's package
//! registry through apt-get.

use std::cmp::Ordering;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde::Deserialize;
use xshell::{cmd, Shell};

use crate::vm_initramfs::{self as initramfs, kernel_dir};

/// The name that means "this machine's kernel, no VM".
pub const HOST: &str = "host";

#[derive(Subcommand)]
pub enum VmCmd {
    /// The known kernels (vm-images/kernels.toml), cached or not.
    List,
    /// Download and unpack kernels (default: all of them) and busybox.
    Fetch {
        /// A kernel name from the list (repeatable).
        #[arg(long = "kernel", value_name = "NAME")]
        kernels: Vec<String>,
        /// Fetch again even if cached (picks up a newer package).
        #[arg(long)]
        force: bool,
    },
    /// Boot a kernel and run CMD (relative to the workspace root) in it;
    /// the exit status of CMD is this command's.
    Run {
        #[arg(long = "kernel", value_name = "NAME")]
        kernel: String,
        #[command(flatten)]
        opts: RunOpts,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Install what the VMs need on this Debian host (root): qemu (from
    /// bookworm-backports, added to apt's sources if missing) and kmod.
    Setup,
}

/// How to run a VM.
#[derive(clap::Args, Clone, Debug)]
pub struct RunOpts {
    /// Guest memory in MiB (at most 4096).
    #[arg(long, default_value_t = 2048, value_name = "MIB")]
    pub memory: u32,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub cpus: u32,
    /// Seconds before the VM counts as hung and is killed.
    #[arg(long = "vm-timeout", default_value_t = 1800, value_name = "SECS")]
    pub timeout: u64,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            memory: 2048,
            cpus: 2,
            timeout: 1800,
        }
    }
}

/// One entry of `vm-images/kernels.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    pub name: String,
    pub package: String,
    pub suite: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelsFile {
    #[serde(default)]
    kernel: Vec<KernelSpec>,
}

/// Parses and checks the kernel list.
pub fn parse_kernels(text: &str) -> Result<Vec<KernelSpec>> {
    let f: KernelsFile = toml::from_str(text).context("parsing the kernel list")?;
    let mut seen = std::collections::HashSet::new();
    for k in &f.kernel {
        if k.name.is_empty()
            || !k
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            || k.name.starts_with('.')
        {
            bail!(
                "kernel name {:?}: use letters, digits, '.', '_', '-'",
                k.name
            );
        }
        if k.name == HOST {
            bail!("kernel name {HOST:?} is reserved for this machine's kernel");
        }
        if !seen.insert(k.name.clone()) {
            bail!("kernel {:?} is listed twice", k.name);
        }
        if k.package.matches('*').count() > 1 {
            bail!(
                "kernel {}: package {:?} has more than one '*'",
                k.name,
                k.package
            );
        }
        if k.package.is_empty()
            || !k
                .package
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '*'))
        {
            bail!(
                "kernel {}: {:?} is not a Debian package pattern",
                k.name,
                k.package
            );
        }
        if k.suite.is_empty() || k.suite.chars().any(|c| c.is_whitespace() || c == '/') {
            bail!("kernel {}: suite {:?} is not a suite name", k.name, k.suite);
        }
    }
    Ok(f.kernel)
}

/// Does `name` match `pattern`, whose one `*` stands for a non-empty run
/// of characters without '-'?
pub fn package_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.len() > pre.len() + post.len()
                && name.starts_with(pre)
                && name.ends_with(post)
                && !name[pre.len()..name.len() - post.len()].contains('-')
        }
    }
}

/// Orders package names as versions: runs of digits compare as numbers.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut v = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                v.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        v
    }
    let (ra, rb) = (runs(a), runs(b));
    for (x, y) in ra.iter().zip(rb.iter()) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (xs, ys) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                xs.len().cmp(&ys.len()).then_with(|| xs.cmp(ys))
            }
            _ => x.1.cmp(y.1),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ra.len().cmp(&rb.len())
}

/// The packages among `names` matching `pattern`, newest first.
pub fn candidates<'a>(pattern: &str, names: &'a str) -> Vec<&'a str> {
    let mut v: Vec<&str> = names
        .lines()
        .map(str::trim)
        .filter(|n| package_matches(pattern, n))
        .collect();
    v.sort_by(|a, b| version_cmp(b, a));
    v
}

/// One line of `apt-cache madison`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Madison {
    pub package: String,
    pub version: String,
    /// The archive's suite, e.g. `bookworm-security`.
    pub suite: String,
}

/// Parses `apt-cache madison` output (`pkg | version | URL suite/comp arch Packages`).
pub fn parse_madison(text: &str) -> Vec<Madison> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('|').map(str::trim);
            let package = f.next()?.to_string();
            let version = f.next()?.to_string();
            let src = f.next()?;
            let suite = src
                .split_whitespace()
                .nth(1)?
                .split('/')
                .next()?
                .to_string();
            Some(Madison {
                package,
                version,
                suite,
            })
        })
        .collect()
}

/// Does an archive suite belong to the wanted one? `bookworm` also takes
/// its point-release updates and security archives.
pub fn suite_matches(wanted: &str, archive: &str) -> bool {
    archive == wanted
        || archive
            .strip_prefix(wanted)
            .is_some_and(|rest| rest == "-security" || rest == "-updates")
}

/// What `fetch` left in `target/vm/kernels/<name>/kernel.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub package: String,
    /// `uname -r` of the kernel.
    pub release: String,
}

impl Cached {
    fn render(&self) -> String {
        format!("package={}\nrelease={}\n", self.package, self.release)
    }

    fn parse(text: &str) -> Option<Cached> {
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Cached {
            package: get("package")?,
            release: get("release")?,
        })
    }

    pub fn load(target: &Path, name: &str) -> Option<Cached> {
        let dir = kernel_dir(target, name);
        let c = Cached::parse(&std::fs::read_to_string(dir.join("kernel.txt")).ok()?)?;
        (dir.join("vmlinuz").is_file() && modules_dir(target, name, &c.release).is_dir())
            .then_some(c)
    }
}

fn modules_dir(target: &Path, name: &str, release: &str) -> PathBuf {
    kernel_dir(target, name)
        .join("root/lib/modules")
        .join(release)
}

fn busybox_path(target: &Path) -> PathBuf {
    target.join("vm/busybox/bin/busybox")
}

/// The workspace's kernel list.
pub fn load_kernels(ws: &Path) -> Result<Vec<KernelSpec>> {
    let p = ws.join("vm-images/kernels.toml");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    parse_kernels(&text).with_context(|| format!("in {}", p.display()))
}

fn find_kernel<'a>(list: &'a [KernelSpec], name: &str) -> Result<&'a KernelSpec> {
    list.iter().find(|k| k.name == name).with_context(|| {
        let names: Vec<&str> = list.iter().map(|k| k.name.as_str()).collect();
        format!(
            "unknown kernel {name:?} (known: {}; see vm-images/kernels.toml)",
            names.join(", ")
        )
    })
}

pub fn vm(sh: &Shell, ws: &Path, c: VmCmd) -> Result<()> {
    let target = ws.join("target");
    let list = load_kernels(ws)?;
    match c {
        VmCmd::List => {
            println!("{:<8} {:<12} {:<36} cached", "name", "suite", "package");
            for k in &list {
                let cached = match Cached::load(&target, &k.name) {
                    Some(c) => format!("{} ({})", c.release, c.package),
                    None => "no".into(),
                };
                println!("{:<8} {:<12} {:<36} {cached}", k.name, k.suite, k.package);
            }
            Ok(())
        }
        VmCmd::Fetch { kernels, force } => {
            let chosen: Vec<&KernelSpec> = if kernels.is_empty() {
                list.iter().collect()
            } else {
                kernels
                    .iter()
                    .map(|n| find_kernel(&list, n))
                    .collect::<Result<_>>()?
            };
            fetch_busybox(sh, &target, force)?;
            for k in chosen {
                let c = fetch_kernel(sh, &target, k, force)?;
                println!("{}: {} ({})", k.name, c.release, c.package);
            }
            Ok(())
        }
        VmCmd::Run { kernel, opts, cmd } => {
            let k = find_kernel(&list, &kernel)?;
            let out = run(sh, ws, k, &cmd, &opts)?;
            match out {
                VmOutcome::Exited(0) => Ok(()),
                VmOutcome::Exited(c) => Err(crate::ChildFailed(c).into()),
                // `run` has said how it ended
                other => Err(crate::ChildFailed(other.exit_code()).into()),
            }
        }
        VmCmd::Setup => setup(sh, &list),
    }
}

fn setup(sh: &Shell, list: &[KernelSpec]) -> Result<()> {
    let _ = list;
    let policy = cmd!(sh, "apt-cache policy").read().unwrap_or_default();
    if !policy.contains("bookworm-backports") {
        let p = Path::new("/etc/apt/sources.list.d/bookworm-backports.sources");
        std::fs::write(
            p,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
        )
        .with_context(|| format!("writing {} (run as root)", p.display()))?;
        eprintln!("vm setup: added {}", p.display());
    }
    cmd!(sh, "apt-get update").run().context("apt-get update")?;
    // qemu 10 from backports: bookworm's own conflicts with a newer qemu-utils
    cmd!(
        sh,
        "apt-get install -y --no-install-recommends -t bookworm-backports qemu-system-x86"
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .run()
    .context("installing qemu-system-x86")?;
    cmd!(
        sh,
        "apt-get install -y --no-install-recommends kmod xz-utils zstd"
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .run()
    .context("installing kmod, xz-utils and zstd")?;
    Ok(())
}

/// `apt-get download PKG/SUITE` into `dir`, returning the .deb.
fn apt_download(sh: &Shell, dir: &Path, pkg: &str, spec: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _cd = sh.push_dir(dir);
    cmd!(sh, "apt-get download -q {spec}")
        .run()
        .with_context(|| {
            format!(
                "apt-get download {spec} (is the suite in apt's sources? `cargo xtask vm setup`)"
            )
        })?;
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb"))
        })
        .collect();
    debs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    debs.pop().with_context(|| {
        format!(
            "apt-get download {spec} left no {pkg}_*.deb in {}",
            dir.display()
        )
    })
}

fn fetch_busybox(sh: &Shell, target: &Path, force: bool) -> Result<()> {
    let bb = busybox_path(target);
    if bb.is_file() && !force {
        return Ok(());
    }
    let deb = apt_download(
        sh,
        &target.join("vm/downloads"),
        "busybox-static",
        "busybox-static",
    )?;
    let dest = target.join("vm/busybox");
    cmd!(sh, "dpkg-deb -x {deb} {dest}")
        .run()
        .with_context(|| format!("unpacking {}", deb.display()))?;
    if !bb.is_file() {
        bail!("{} has no bin/busybox", deb.display());
    }
    Ok(())
}

/// Downloads and unpacks one kernel (vmlinuz, modules, modules.dep).
pub fn fetch_kernel(sh: &Shell, target: &Path, k: &KernelSpec, force: bool) -> Result<Cached> {
    if !force {
        if let Some(c) = Cached::load(target, &k.name) {
            return Ok(c);
        }
    }
    let prefix = k.package.split('*').next().unwrap_or(&k.package);
    let names = cmd!(sh, "apt-cache pkgnames {prefix}")
        .read()
        .with_context(|| format!("apt-cache pkgnames {prefix}"))?;
    let mut chosen = None;
    for n in candidates(&k.package, &names) {
        let m = cmd!(sh, "apt-cache madison {n}")
            .read()
            .with_context(|| format!("apt-cache madison {n}"))?;
        if let Some(v) = parse_madison(&m)
            .into_iter()
            .find(|l| l.package == n && suite_matches(&k.suite, &l.suite))
        {
            chosen = Some(v);
            break;
        }
    }
    let m = chosen.with_context(|| {
        format!(
            "kernel {}: no package matching {} in suite {} (apt-get update; `cargo xtask vm setup` adds bookworm-backports)",
            k.name, k.package, k.suite
        )
    })?;
    let pkg = m.package.as_str();
    eprintln!("vm fetch: {} -> {pkg} {} ({})", k.name, m.version, m.suite);
    let deb = apt_download(
        sh,
        &target.join("vm/downloads"),
        pkg,
        &format!("{pkg}={}", m.version),
    )?;
    let dir = kernel_dir(target, &k.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let root = dir.join("root");
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    cmd!(sh, "dpkg-deb -x {deb} {root}")
        .run()
        .with_context(|| format!("unpacking {}", deb.display()))?;
    let mods = root.join("lib/modules");
    let release = std::fs::read_dir(&mods)
        .with_context(|| format!("{} has no lib/modules", deb.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .next()
        .with_context(|| format!("{} is empty", mods.display()))?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{release}"));
    std::fs::copy(&vmlinuz, dir.join("vmlinuz"))
        .with_context(|| format!("copying {}", vmlinuz.display()))?;
    // the package leaves depmod to its postinst
    cmd!(sh, "depmod -b {root} {release}")
        .run()
        .with_context(|| format!("depmod for {release} (apt-get install kmod)"))?;
    let c = Cached {
        package: pkg.to_string(),
        release,
    };
    std::fs::write(dir.join("kernel.txt"), c.render())
        .with_context(|| format!("writing {}", dir.join("kernel.txt").display()))?;
    std::fs::remove_file(&deb).with_context(|| format!("removing {}", deb.display()))?;
    Ok(c)
}

/// How a VM run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmOutcome {
    /// The command ran and exited with this status.
    Exited(i32),
    /// The guest kernel panicked.
    Panic,
    /// No end marker within the timeout: the VM was killed.
    Timeout(u64),
    /// qemu ended without the end marker (guest crash, init failure, …).
    Crashed(String),
}

impl VmOutcome {
    /// The status `cargo xtask vm run` exits with.
    pub fn exit_code(&self) -> i32 {
        match self {
            VmOutcome::Exited(c) => *c,
            VmOutcome::Timeout(_) => 124,
            VmOutcome::Panic | VmOutcome::Crashed(_) => 125,
        }
    }
}

impl std::fmt::Display for VmOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmOutcome::Exited(c) => write!(f, "exit {c}"),
            VmOutcome::Panic => write!(f, "guest kernel panic"),
            VmOutcome::Timeout(s) => write!(f, "timeout: no end after {s}s, VM killed"),
            VmOutcome::Crashed(why) => write!(f, "VM crashed: {why}"),
        }
    }
}

fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@%".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The script the guest runs: the host's environment basics, the
/// workspace as working directory, then the command.
fn command_script(ws: &Path, cmd: &[String]) -> String {
    let mut s = String::from("# written by cargo xtask vm run\n");
    for var in [
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "RUST_LOG",
        "RUST_BACKTRACE",
        "CARGO_HOME",
        "RUSTUP_HOME",
    ] {
        if let Ok(v) = std::env::var(var) {
            s.push_str(&format!("export {var}={}\n", sh_quote(&v)));
        }
    }
    s.push_str(&format!(
        "cd {} || exit 126\n",
        sh_quote(&ws.display().to_string())
    ));
    let words: Vec<String> = cmd.iter().map(|w| sh_quote(w)).collect();
    s.push_str(&format!("exec {}\n", words.join(" ")));
    s
}

/// Boots kernel `k` and runs `cmd` in the workspace; the console goes to
/// stdout (and `target/vm/run/<id>/console.log`).
pub fn run(
    sh: &Shell,
    ws: &Path,
    k: &KernelSpec,
    cmd: &[String],
    opts: &RunOpts,
) -> Result<VmOutcome> {
    if opts.memory > 4096 || opts.memory < 256 {
        bail!("--memory {}: between 256 and 4096 MiB", opts.memory);
    }
    let target = ws.join("target");
    let ws_s = ws.display().to_string();
    if ws_s.chars().any(char::is_whitespace) {
        bail!(
            "the workspace path {ws_s:?} has whitespace: the kernel command line cannot carry it"
        );
    }
    fetch_busybox(sh, &target, false)?;
    let cached = fetch_kernel(sh, &target, k, false)?;
    let qemu = "qemu-system-x86_64";
    if Command::new(qemu).arg("--version").output().is_err() {
        bail!("{qemu} not found: run `cargo xtask vm setup` (as root)");
    }

    let id = format!(
        "{}-{}-{}",
        k.name,
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let run_dir = target.join("vm/run").join(&id);
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let cmd_file = run_dir.join("cmd");
    std::fs::write(&cmd_file, command_script(ws, cmd))
        .with_context(|| format!("writing {}", cmd_file.display()))?;
    let mods = modules_dir(&target, &k.name, &cached.release);
    let image = initramfs::build(&busybox_path(&target), &mods, &cached.release)?;
    let initrd = run_dir.join("initramfs.cpio");
    std::fs::write(&initrd, image).with_context(|| format!("writing {}", initrd.display()))?;

    let append = format!(
        "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init {}={} {}={} {}={}",
        initramfs::CMDLINE_TARGET,
        target.display(),
        initramfs::CMDLINE_CMD,
        cmd_file.display(),
        initramfs::CMDLINE_MODS,
        mods.display(),
    );
    let vmlinuz = kernel_dir(&target, &k.name).join("vmlinuz");
    let mut q = Command::new(qemu);
    q.args(["-nodefaults", "-no-user-config", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-accel", "tcg,thread=multi", "-cpu", "max"])
        .args(["-m", &opts.memory.to_string(), "-smp", &opts.cpus.to_string()])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", &append])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap",
        ])
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=target,security_model=passthrough,multidevs=remap",
            target.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "vm: booting {} ({}), {} MiB, {} cpus: {}",
        k.name,
        cached.release,
        opts.memory,
        opts.cpus,
        cmd.join(" ")
    );
    let started = Instant::now();
    let mut child = q.spawn().with_context(|| format!("starting {qemu}"))?;
    let stdout = child.stdout.take().context("qemu's stdout")?;
    let stderr = child.stderr.take().context("qemu's stderr")?;
    let log_path = run_dir.join("console.log");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    if tx.send(Some(line)).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.send(None);
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });

    let deadline = started + Duration::from_secs(opts.timeout);
    let mut outcome = None;
    let mut panicked = false;
    let mut out = std::io::stdout().lock();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(Some(line)) => {
                let _ = writeln!(log, "{line}");
                if let Some(code) = initramfs::parse_end_marker(&line) {
                    outcome = Some(VmOutcome::Exited(code));
                    continue;
                }
                if line.contains(initramfs::END_MARKER) {
                    outcome = Some(VmOutcome::Crashed(format!("guest init: {line}")));
                    continue;
                }
                if line.contains("Kernel panic") {
                    panicked = true;
                }
                // after the end marker only the power-off noise is left
                if outcome.is_none() {
                    let _ = writeln!(out, "{line}");
                }
            }
            Ok(None) => {
                if outcome.is_none() {
                    outcome = Some(if panicked {
                        VmOutcome::Panic
                    } else {
                        VmOutcome::Crashed("qemu ended without the end marker".into())
                    });
                }
                break;
            }
            Err(_) => break,
        }
    }
    drop(out);
    let outcome = match outcome {
        Some(o) => o,
        None => {
            // hung: kill qemu (our own child) and say so
            let _ = child.kill();
            VmOutcome::Timeout(opts.timeout)
        }
    };
    let status = child.wait().context("waiting for qemu")?;
    let _ = reader.join();
    let qemu_err = err_reader.join().unwrap_or_default();
    let outcome = match outcome {
        VmOutcome::Crashed(why) if !status.success() || !qemu_err.trim().is_empty() => {
            VmOutcome::Crashed(format!("{why}; qemu {status}: {}", qemu_err.trim()))
        }
        o => o,
    };
    eprintln!(
        "vm: {} ended after {:.1}s: {outcome} (console: {})",
        k.name,
        started.elapsed().as_secs_f64(),
        log_path.display()
    );
    let _ = std::fs::remove_file(&initrd);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_kernel_list_parses() {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let list = load_kernels(&ws).unwrap();
        let names: Vec<&str> = list.iter().map(|k| k.name.as_str()).collect();
        assert!(
            names.contains(&"6.1") && names.contains(&"6.12"),
            "{names:?}"
        );
    }

    #[test]
    fn kernel_list_parsing() {
        let l = parse_kernels(
            r#"
[[kernel]]
name = "6.1"
package = "linux-image-6.1.0-*-amd64"
suite = "bookworm"
"#,
        )
        .unwrap();
        assert_eq!(
            l,
            [KernelSpec {
                name: "6.1".into(),
                package: "linux-image-6.1.0-*-amd64".into(),
                suite: "bookworm".into()
            }]
        );
        assert!(parse_kernels("").unwrap().is_empty());
        let bad = [
            // duplicate
            "[[kernel]]\nname='a'\npackage='p'\nsuite='s'\n[[kernel]]\nname='a'\npackage='q'\nsuite='s'",
            // reserved
            "[[kernel]]\nname='host'\npackage='p'\nsuite='s'",
            // two stars
            "[[kernel]]\nname='a'\npackage='p*-*'\nsuite='s'",
            // unknown key
            "[[kernel]]\nname='a'\npackage='p'\nsuite='s'\nflavour='x'",
            // missing suite
            "[[kernel]]\nname='a'\npackage='p'",
            // path in the name
            "[[kernel]]\nname='../a'\npackage='p'\nsuite='s'",
            // shell in the package
            "[[kernel]]\nname='a'\npackage='p;rm'\nsuite='s'",
        ];
        for b in bad {
            assert!(parse_kernels(b).is_err(), "accepted {b:?}");
        }
    }

    #[test]
    fn package_patterns() {
        let p = "linux-image-6.1.0-*-amd64";
        assert!(package_matches(p, "linux-image-6.1.0-47-amd64"));
        assert!(!package_matches(p, "linux-image-6.1.0-47-cloud-amd64"));
        assert!(!package_matches(p, "linux-image-6.1.0-47-amd64-unsigned"));
        assert!(!package_matches(p, "linux-image-6.1.0--amd64"));
        let q = "linux-image-6.12.*+deb12-amd64";
        assert!(package_matches(q, "linux-image-6.12.117+deb12-amd64"));
        assert!(!package_matches(q, "linux-image-6.12.117+deb12-rt-amd64"));
        assert!(package_matches("busybox-static", "busybox-static"));
        assert!(!package_matches("busybox-static", "busybox"));
    }

    #[test]
    fn the_newest_package_wins() {
        let names = "linux-image-6.12.9+deb12-amd64
linux-image-6.12.117+deb12-amd64
linux-image-6.12.43+deb12-amd64
linux-image-6.12.200+deb12-cloud-amd64
";
        assert_eq!(
            candidates("linux-image-6.12.*+deb12-amd64", names),
            [
                "linux-image-6.12.117+deb12-amd64",
                "linux-image-6.12.43+deb12-amd64",
                "linux-image-6.12.9+deb12-amd64"
            ]
        );
        assert!(candidates("linux-image-6.1.0-*-amd64", names).is_empty());
        assert_eq!(version_cmp("a-9-b", "a-10-b"), Ordering::Less);
        assert_eq!(version_cmp("a-010", "a-10"), Ordering::Equal);
    }

    #[test]
    fn madison_lines_and_suites() {
        let m = parse_madison(
            "linux-image-6.1.0-56-amd64 |  6.1.192-2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages\n\
             busybox-static | 1:1.35.0-4+deb12u1+b1 | http://deb.debian.org/debian bookworm/main amd64 Packages\n\
             garbage\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].package, "linux-image-6.1.0-56-amd64");
        assert_eq!(m[0].version, "6.1.192-2");
        assert_eq!(m[0].suite, "bookworm-security");
        assert_eq!(m[1].version, "1:1.35.0-4+deb12u1+b1");
        assert!(suite_matches("bookworm", "bookworm-security"));
        assert!(suite_matches("bookworm", "bookworm"));
        assert!(!suite_matches("bookworm", "bookworm-backports"));
        assert!(suite_matches("bookworm-backports", "bookworm-backports"));
        assert!(!suite_matches("bookworm-backports", "bookworm"));
    }

    #[test]
    fn cached_info_round_trips() {
        let c = Cached {
            package: "linux-image-6.1.0-47-amd64".into(),
            release: "6.1.0-47-amd64".into(),
        };
        assert_eq!(Cached::parse(&c.render()), Some(c));
        assert_eq!(Cached::parse("package=x\n"), None);
    }

    #[test]
    fn command_script_quotes_words() {
        let s = command_script(
            Path::new("/w s"),
            &["echo".into(), "a b".into(), "it's".into()],
        );
        assert!(s.contains("cd '/w s' || exit 126\n"), "{s}");
        assert!(s.ends_with("exec echo 'a b' 'it'\\''s'\n"), "{s}");
    }
}
