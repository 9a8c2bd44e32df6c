//! Running one test in one flavor: start, dump, restore, compare, stop, judge.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::catalogue::{Features, Flavor, TestKind};
use crate::known::KnownFailures;
use crate::nsinit::{self, NsArgs};
use crate::proctree::{kill_set, kill_tree, tree, ProcId};
use crate::reaper::{Exit, Reaper};
use crate::report::{path_safe, Outcome, TestResult};
use crate::select::Job;
use crate::snapshot;

/// Everything a test run needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// criu binary; `None` is `--nocr`.
    pub criu: Option<PathBuf>,
    /// The catalogue binary (`zdtm-test`).
    pub zdtm_bin: PathBuf,
    /// This binary (re-executed for the ns flavors).
    pub self_exe: PathBuf,
    /// `target/zdtm` (absolute).
    pub out_dir: PathBuf,
    /// dump/restore cycles per test.
    pub iters: u32,
    /// Pre-dumps before each dump (zdtm.py's `--pre N`): the dump then
    /// takes the last one as parent images, with `--track-mem`.
    pub pre: u32,
    /// Dump with --leave-running, never restore.
    pub norst: bool,
    pub criu_timeout: Duration,
    /// Unprivileged ids the tests run as (unless flagged `suid`).
    pub uid: u32,
    pub gid: u32,
    pub features: Features,
    pub known: KnownFailures,
}

/// The verdict before known failures are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Skip(String),
}

/// Kills whatever test tree is still registered when dropped.
struct Live {
    root: Option<ProcId>,
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(r) = self.root.take() {
            let procs = tree(r);
            kill_set(&procs);
            wait_all_gone(&procs, Duration::from_secs(5));
        }
    }
}

fn wait_all_gone(procs: &[ProcId], timeout: Duration) -> Vec<ProcId> {
    let deadline = Instant::now() + timeout;
    loop {
        let left: Vec<ProcId> = procs.iter().copied().filter(|p| p.exists()).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait for `p` to end: its exit status if we reaped it, `Some(None)` if it
/// vanished otherwise, `None` on timeout.
fn wait_gone(reaper: &Reaper, p: ProcId, timeout: Duration) -> Option<Option<Exit>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(e) = reaper.wait(p.pid, Duration::from_millis(20)) {
            return Some(Some(e));
        }
        if !p.exists() {
            return Some(reaper.try_take(p.pid));
        }
        if Instant::now() >= deadline {
            return None;
        }
    }
}

/// The verdict of an outfile: its last non-empty line, without the
/// `HH:MM:SS.mmm: PID: ` prefix upstream's tests print before each line.
fn verdict_line(out: &str) -> &str {
    let last = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut parts = last.splitn(3, ": ");
    match (parts.next(), parts.next(), parts.next()) {
        (Some(time), Some(pid), Some(rest))
            if time.len() >= 8
                && time
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b':' || b == b'.')
                && pid.bytes().all(|b| b.is_ascii_digit()) =>
        {
            rest.trim()
        }
        _ => last,
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let t = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = t.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join(" / ")
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The host uid that `ns_uid` is inside the flavor's user namespace.
fn host_id(flavor: Flavor, ns_id: u32) -> u32 {
    match flavor {
        Flavor::Uns => nsinit::UNS_BASE + ns_id,
        _ => ns_id,
    }
}

struct Ctx<'a> {
    cfg: &'a Config,
    reaper: &'a Reaper,
    job: &'a Job,
    work: PathBuf,
}

macro_rules! fail {
    ($($t:tt)*) => { return Verdict::Fail(format!($($t)*)) };
}

impl Ctx<'_> {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.job.test.timeout.max(1))
    }

    fn run_criu(&self, what: &str, args: &[String], dir: &Path) -> Result<(), String> {
        let Some(criu) = &self.cfg.criu else {
            return Err("no criu".into());
        };
        let out = File::create(dir.join(format!("criu-{what}.out")))
            .map_err(|e| format!("creating criu-{what}.out in {}: {e}", dir.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("duplicating criu-{what}.out: {e}"))?;
        let child = Command::new(criu)
            .arg(what)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {} {what}: {e}", criu.display()))?;
        let pid = child.id() as i32;
        let id = ProcId::of(pid);
        match self.reaper.wait(pid, self.cfg.criu_timeout) {
            Some(e) if e.success() => Ok(()),
            Some(e) => Err(format!(
                "criu {what} failed ({e}); log {}: {}",
                dir.join(format!("{what}.log")).display(),
                tail(&dir.join(format!("{what}.log")), 3)
            )),
            None => {
                if let Some(id) = id {
                    kill_tree(id);
                }
                Err(format!(
                    "criu {what} timed out after {}s",
                    self.cfg.criu_timeout.as_secs()
                ))
            }
        }
    }

    fn test_argv(&self, tdir: &Path, pidfile: &Path) -> Vec<String> {
        let outfile = tdir.join("out");
        match &self.job.test.kind {
            TestKind::Catalogue => vec![
                self.cfg.zdtm_bin.display().to_string(),
                "run".into(),
                self.job.test.name.clone(),
                format!("--pidfile={}", pidfile.display()),
                format!("--outfile={}", outfile.display()),
                format!("--filename={}", tdir.join("file").display()),
                format!("--dirname={}", tdir.join("dir").display()),
            ],
            TestKind::External(p) => {
                let _ = p;
                let mut v = vec![
                    p.display().to_string(),
                    format!("--pidfile={}", pidfile.display()),
                    format!("--outfile={}", outfile.display()),
                ];
                // Upstream's tests say in --help which options they need.
                for o in &self.job.test.needs {
                    match o.as_str() {
                        "filename" => v.push(format!("--filename={}", tdir.join("file").display())),
                        "dirname" => v.push(format!("--dirname={}", tdir.join("dir").display())),
                        _ => {}
                    }
                }
                v
            }
        }
    }

    /// Start the test; the PID to dump, or the verdict if it did not start.
    fn start(&self, tdir: &Path, log: &File, ids: Option<(u32, u32)>) -> Result<ProcId, Verdict> {
        let inner_pidfile = tdir.join("pid");
        let argv = self.test_argv(tdir, &inner_pidfile);
        let dup = |f: &File| {
            f.try_clone()
                .map_err(|e| Verdict::Fail(format!("duplicating the test log fd: {e}")))
        };
        if self.job.flavor == Flavor::H {
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .current_dir(tdir)
                .stdin(Stdio::null())
                .stdout(dup(log)?)
                .stderr(dup(log)?);
            if let Some((u, g)) = ids {
                cmd.gid(g).uid(u);
            }
            let child = cmd
                .spawn()
                .map_err(|e| Verdict::Fail(format!("starting {}: {e}", argv[0])))?;
            let starter = child.id() as i32;
            let sid = ProcId::of(starter);
            match self.reaper.wait(starter, self.timeout()) {
                Some(e) if e.success() => {}
                Some(e) => {
                    return Err(Verdict::Fail(format!(
                        "test failed to start ({e}): {}",
                        tail(&self.work.join("test.log"), 3)
                    )))
                }
                None => {
                    if let Some(s) = sid {
                        kill_tree(s);
                    }
                    return Err(Verdict::Fail(format!(
                        "test did not get ready within {}s",
                        self.timeout().as_secs()
                    )));
                }
            }
            let pid = read_pid(&inner_pidfile).ok_or_else(|| {
                Verdict::Fail(format!(
                    "test started but wrote no pid to {}",
                    inner_pidfile.display()
                ))
            })?;
            return ProcId::of(pid)
                .filter(|p| p.alive())
                .ok_or_else(|| Verdict::Fail(format!("test pid {pid} is not running")));
        }

        // ns / uns: the init (root of the namespaces, host uid UNS_BASE in
        // uns) writes its pidfile into a directory it owns.
        let nsdir = self.work.join("ns");
        let root_id = host_id(self.job.flavor, 0);
        std::fs::create_dir(&nsdir)
            .and_then(|_| std::os::unix::fs::chown(&nsdir, Some(root_id), Some(root_id)))
            .map_err(|e| Verdict::Fail(format!("preparing {}: {e}", nsdir.display())))?;
        let outer = nsdir.join("init.pid");
        let args = NsArgs {
            flavor: self.job.flavor.as_str().into(),
            inner_pidfile,
            outer_pidfile: outer.clone(),
            uid: ids.map(|i| i.0),
            gid: ids.map(|i| i.1),
            cwd: Some(tdir.to_path_buf()),
            cmd: argv,
        };
        let nslog = self.work.join("test.log");
        let setup_skip = |what: &str| {
            Verdict::Skip(format!(
                "flavor {} cannot be set up: {what}{}",
                self.job.flavor,
                match tail(&nslog, 1) {
                    t if t.is_empty() => String::new(),
                    t => format!(": {t}"),
                }
            ))
        };
        let mut child = Command::new(&self.cfg.self_exe)
            .args(args.helper_args())
            .current_dir(tdir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(dup(log)?)
            .spawn()
            .map_err(|e| Verdict::Fail(format!("starting the ns helper: {e}")))?;
        let helper = child.id() as i32;
        let (Some(stdout), Some(mut stdin)) = (child.stdout.take(), child.stdin.take()) else {
            return Err(Verdict::Fail("ns helper without pipes".into()));
        };
        let mut lines = BufReader::new(stdout).lines();
        let helper_done = |reaper: &Reaper| reaper.wait(helper, Duration::from_secs(10));
        if self.job.flavor == Flavor::Uns {
            match lines.next() {
                Some(Ok(l)) if l == "userns" => {}
                _ => {
                    helper_done(self.reaper);
                    return Err(setup_skip("user namespace"));
                }
            }
            let map = nsinit::uns_map();
            for f in ["uid_map", "gid_map"] {
                let p = format!("/proc/{helper}/{f}");
                if let Err(e) = std::fs::write(&p, &map) {
                    let _ = kill(Pid::from_raw(helper), Signal::SIGKILL);
                    helper_done(self.reaper);
                    return Err(setup_skip(&format!("writing {p}: {e}")));
                }
            }
            if writeln!(stdin, "go").is_err() {
                helper_done(self.reaper);
                return Err(setup_skip("ns helper went away"));
            }
        }
        drop(stdin);
        let init = match lines.next() {
            Some(Ok(l)) => l
                .strip_prefix("pid ")
                .and_then(|p| p.trim().parse::<i32>().ok()),
            _ => None,
        };
        let hexit = helper_done(self.reaper);
        let Some(init) = init else {
            return Err(match hexit {
                Some(Exit::Code(nsinit::SETUP_FAILED)) => setup_skip("namespaces"),
                e => Verdict::Fail(format!(
                    "ns helper failed ({}): {}",
                    e.map(|e| e.to_string()).unwrap_or_else(|| "hung".into()),
                    tail(&nslog, 2)
                )),
            });
        };
        let init_id = ProcId::of(init);
        let deadline = Instant::now() + self.timeout();
        loop {
            if let Some(pid) = read_pid(&outer) {
                if pid != init {
                    return Err(Verdict::Fail(format!(
                        "ns init wrote pid {pid}, expected {init}"
                    )));
                }
                return init_id
                    .filter(|p| p.alive())
                    .ok_or_else(|| Verdict::Fail(format!("ns init {init} is not running")));
            }
            if let Some(e) = self.reaper.wait(init, Duration::from_millis(20)) {
                return Err(match e {
                    Exit::Code(nsinit::SETUP_FAILED) => setup_skip("ns init"),
                    e => Verdict::Fail(format!(
                        "test failed to start in {} ({e}): {}",
                        self.job.flavor,
                        tail(&nslog, 3)
                    )),
                });
            }
            if Instant::now() >= deadline {
                if let Some(i) = init_id {
                    kill_tree(i);
                }
                return Err(Verdict::Fail(format!(
                    "test did not get ready within {}s",
                    self.timeout().as_secs()
                )));
            }
        }
    }

    fn execute(&self) -> Verdict {
        let test = &self.job.test;
        let flavor = self.job.flavor;
        if let Some(feat) = &test.feature {
            match self.cfg.features.get(feat) {
                Some(f) if f.present => {}
                Some(f) => return Verdict::Skip(format!("feature {feat} absent: {}", f.reason)),
                None => return Verdict::Skip(format!("feature {feat} unknown to zdtm-test")),
            }
        }
        let _ = std::fs::remove_dir_all(&self.work);
        if let Err(e) = std::fs::create_dir_all(&self.work) {
            fail!("creating {}: {e}", self.work.display());
        }
        // every ancestor must be traversable by the test uid
        let mut p = self.work.as_path();
        while p.starts_with(&self.cfg.out_dir) {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
            match p.parent() {
                Some(q) => p = q,
                None => break,
            }
        }
        let tdir = self.work.join("test");
        if let Err(e) = std::fs::create_dir(&tdir) {
            fail!("creating {}: {e}", tdir.display());
        }
        let suid = test.has_flag("suid");
        let ids = (!suid).then_some((self.cfg.uid, self.cfg.gid));
        let (ns_u, ns_g) = ids.unwrap_or((0, 0));
        let (hu, hg) = (host_id(flavor, ns_u), host_id(flavor, ns_g));
        if let Err(e) = std::os::unix::fs::chown(&tdir, Some(hu), Some(hg)) {
            fail!("chown {} to {hu}:{hg}: {e}", tdir.display());
        }
        let log = match File::create(self.work.join("test.log")) {
            Ok(f) => f,
            Err(e) => fail!("creating test.log: {e}"),
        };

        if let TestKind::External(_) = &test.kind {
            if let Some(o) = test
                .needs
                .iter()
                .find(|o| *o != "filename" && *o != "dirname")
            {
                return Verdict::Skip(format!(
                    "needs --{o}, a value only upstream's zdtm.py knows for this test"
                ));
            }
        }
        let mut live = Live { root: None };
        let mut root = match self.start(&tdir, &log, ids) {
            Ok(r) => r,
            Err(v) => return v,
        };
        live.root = Some(root);
        let with_mounts = flavor != Flavor::H;
        let crfail = test.has_flag("crfail");

        if self.cfg.criu.is_some() {
            for i in 1..=self.cfg.iters {
                let before = match snapshot::take(root, with_mounts) {
                    Ok(s) => s,
                    Err(e) => fail!("iteration {i}: snapshot before dump: {e}"),
                };
                let procs = tree(root);
                let img = self.work.join(format!("img-{i}"));
                if let Err(e) = std::fs::create_dir(&img) {
                    fail!("creating {}: {e}", img.display());
                }
                // Pre-dumps (the tree runs on), each the parent of the next.
                let mut parent: Option<String> = None;
                for k in 1..=self.cfg.pre {
                    let name = format!("img-{i}-pre{k}");
                    let pdir = self.work.join(&name);
                    if let Err(e) = std::fs::create_dir(&pdir) {
                        fail!("creating {}: {e}", pdir.display());
                    }
                    let mut args: Vec<String> = vec![
                        "-t".into(),
                        root.pid.to_string(),
                        "-D".into(),
                        pdir.display().to_string(),
                        "-o".into(),
                        "pre-dump.log".into(),
                        "-v4".into(),
                    ];
                    if let Some(p) = &parent {
                        args.extend(["--prev-images-dir".into(), format!("../{p}")]);
                    }
                    args.extend(test.dump_opts.iter().cloned());
                    if let Err(e) = self.run_criu("pre-dump", &args, &pdir) {
                        if crfail {
                            break;
                        }
                        fail!("iteration {i}, pre-dump {k}: {e}");
                    }
                    parent = Some(name);
                }
                let mut args: Vec<String> = vec![
                    "-t".into(),
                    root.pid.to_string(),
                    "-D".into(),
                    img.display().to_string(),
                    "-o".into(),
                    "dump.log".into(),
                    "-v4".into(),
                ];
                if self.cfg.norst {
                    args.push("--leave-running".into());
                }
                if let Some(p) = &parent {
                    args.extend([
                        "--prev-images-dir".into(),
                        format!("../{p}"),
                        "--track-mem".into(),
                    ]);
                }
                args.extend(test.dump_opts.iter().cloned());
                match self.run_criu("dump", &args, &img) {
                    Err(e) if crfail => {
                        let _ = e;
                        break;
                    }
                    Err(e) => fail!("iteration {i}: {e}"),
                    Ok(()) if crfail => fail!("criu dump succeeded but the test is flagged crfail"),
                    Ok(()) => {}
                }
                if !self.cfg.norst {
                    // criu kills the dumped tree; the PIDs must be free before
                    // restore. If they are not, restore will say so (EEXIST);
                    // keep the fact for the failure message.
                    let left = wait_all_gone(&procs, Duration::from_secs(2));
                    let note = if left.is_empty() {
                        String::new()
                    } else {
                        let l: Vec<String> = left.iter().map(|p| p.pid.to_string()).collect();
                        format!(" (dumped tasks still existed after dump: {})", l.join(","))
                    };
                    if left.is_empty() {
                        // The killed tree ends up reaped here (we are the
                        // subreaper): take every exit status now, or a
                        // restored task with the same PID would be judged
                        // by its predecessor's death.
                        // One deadline for all: tasks of a pid namespace
                        // are reaped by its init, never by us, and a second
                        // each would add minutes for a big tree (ours are
                        // already reaped: they are gone from /proc).
                        let deadline = Instant::now() + Duration::from_secs(1);
                        for p in &procs {
                            let left = deadline.saturating_duration_since(Instant::now());
                            let _ = self.reaper.wait(p.pid, left);
                        }
                        live.root = None;
                    }
                    let rpid = img.join("restore.pid");
                    let mut args: Vec<String> = vec![
                        "-D".into(),
                        img.display().to_string(),
                        "-o".into(),
                        "restore.log".into(),
                        "-v4".into(),
                        "--restore-detached".into(),
                        "--pidfile".into(),
                        rpid.display().to_string(),
                    ];
                    args.extend(test.restore_opts.iter().cloned());
                    let res = self.run_criu("restore", &args, &img);
                    // whatever got restored is ours to clean up
                    let restored = read_pid(&rpid).and_then(ProcId::of);
                    if restored.is_some() {
                        live.root = restored;
                    }
                    if let Err(e) = res {
                        fail!("iteration {i}: {e}{note}");
                    }
                    let Some(r) = restored else {
                        fail!(
                            "iteration {i}: criu restore succeeded but {} names no live task",
                            rpid.display()
                        );
                    };
                    if flavor == Flavor::H && r.pid != root.pid {
                        fail!(
                            "iteration {i}: restored with pid {} instead of {}",
                            r.pid,
                            root.pid
                        );
                    }
                    root = r;
                }
                let after = match snapshot::take(root, with_mounts) {
                    Ok(s) => s,
                    Err(e) => fail!("iteration {i}: snapshot after restore: {e}"),
                };
                let diffs = snapshot::compare(&before, &after);
                if !diffs.is_empty() {
                    let n = diffs.len();
                    let shown: Vec<String> = diffs.into_iter().take(5).collect();
                    fail!(
                        "iteration {i}: state changed over dump/restore ({n} differences): {}",
                        shown.join("; ")
                    );
                }
            }
        }

        // stop the test and judge it
        if !root.alive() {
            fail!(
                "test exited before SIGTERM; outfile: {}",
                tail(&tdir.join("out"), 2)
            );
        }
        let procs = tree(root);
        if let Err(e) = kill(Pid::from_raw(root.pid), Signal::SIGTERM) {
            fail!("SIGTERM to {}: {e}", root.pid);
        }
        let exit = match wait_gone(self.reaper, root, self.timeout()) {
            Some(e) => e,
            None => fail!(
                "test did not exit within {}s after SIGTERM",
                self.timeout().as_secs()
            ),
        };
        live.root = None;
        let others: Vec<ProcId> = procs.iter().copied().filter(|p| *p != root).collect();
        let left: Vec<ProcId> = wait_all_gone(&others, Duration::from_secs(2))
            .into_iter()
            .filter(|p| p.alive())
            .collect();
        if !left.is_empty() {
            let names: Vec<String> = left
                .iter()
                .map(|p| format!("{}({})", p.pid, p.comm()))
                .collect();
            kill_set(&left);
            wait_all_gone(&left, Duration::from_secs(5));
            fail!(
                "leftover processes after the test exited: {}",
                names.join(", ")
            );
        }
        let out = std::fs::read_to_string(tdir.join("out")).unwrap_or_default();
        let first = verdict_line(&out);
        if let Some(Exit::Signal(_)) = exit {
            let e = exit.map(|e| e.to_string()).unwrap_or_default();
            fail!("test {e}; outfile: {first:?}");
        }
        if first.starts_with("PASS") {
            match exit {
                Some(Exit::Code(c)) if c != 0 => {
                    fail!("outfile says PASS but the test exited with {c}")
                }
                _ => Verdict::Pass,
            }
        } else if first.is_empty() {
            fail!(
                "no result in the outfile ({})",
                tail(&self.work.join("test.log"), 2)
            )
        } else {
            let mut s = first.to_string();
            s.truncate(400);
            Verdict::Fail(s)
        }
    }
}

/// Run one job and judge it (known failures applied). Artifacts are kept
/// under `out_dir/<test>/<flavor>/` for failures, removed otherwise.
pub fn run_job(cfg: &Config, reaper: &Reaper, job: &Job) -> TestResult {
    let work = cfg
        .out_dir
        .join(path_safe(&job.test.name))
        .join(job.flavor.as_str());
    let ctx = Ctx {
        cfg,
        reaper,
        job,
        work: work.clone(),
    };
    let t0 = Instant::now();
    let verdict = ctx.execute();
    let seconds = t0.elapsed().as_secs_f64();
    judge(cfg, job, verdict, seconds, work)
}

/// Apply known failures and decide about the artifacts.
pub fn judge(cfg: &Config, job: &Job, v: Verdict, seconds: f64, work: PathBuf) -> TestResult {
    let known = cfg.known.lookup(&job.test.name, job.flavor);
    let (outcome, reason, issue) = match (&v, known) {
        (Verdict::Pass, None) => (Outcome::Pass, None, None),
        (Verdict::Pass, Some(k)) => (
            Outcome::Xpass,
            Some(format!("listed as known failure ({}) but passed", k.reason)),
            k.issue,
        ),
        (Verdict::Fail(why), None) => (Outcome::Fail, Some(why.clone()), None),
        (Verdict::Fail(why), Some(k)) => (
            Outcome::Xfail,
            Some(format!("{} — {why}", k.reason)),
            k.issue,
        ),
        (Verdict::Skip(why), _) => (Outcome::Skip, Some(why.clone()), None),
    };
    let keep = matches!(outcome, Outcome::Fail | Outcome::Xfail);
    let artifacts = if keep && work.exists() {
        Some(work)
    } else {
        let _ = std::fs::remove_dir_all(&work);
        if let Some(parent) = work.parent() {
            let _ = std::fs::remove_dir(parent); // only if empty
        }
        None
    };
    TestResult {
        test: job.test.name.clone(),
        family: job.test.family.clone(),
        flavor: job.flavor,
        outcome,
        reason,
        issue,
        seconds,
        artifacts,
    }
}
