//! Same process, same images: each golden program (`source.c` of a folder of
//! `/work/shared/golden-images`, or `$CRIU_GOLDEN_IMAGES`) is built with gcc,
//! run, and dumped by our `criu`; every image of ours and of upstream CRIU
//! 4.2's checkpoint of the same program is decoded to JSON with our crit code
//! and the two are compared structurally:
//!
//! - the same set of image files (pid and id numbers in names aside);
//! - in each image the same entries, with the same fields set, recursively,
//!   with the same JSON types and the same repeated counts;
//! - the same values, except for the fields listed in [`IGNORED`] (values
//!   that differ from one run to the next), each with the reason.
//!
//! Differences that remain on purpose are listed in [`KNOWN`], each with the
//! reason; anything else fails the test with the list of differences.
//!
//! Needs gcc, setsid and root (criu's dump); skips with a printed reason
//! otherwise. `COMPAT_KEEP=1` keeps our images and prints where.

use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CRIU: &str = env!("CARGO_BIN_EXE_criu");

/// Where the golden program was built when upstream dumped it; our build
/// directory is renamed to this before values are compared.
const GOLDEN_BUILD_DIR: &str = "/tmp/golden";

/// Fields whose values are not compared (their presence and type are):
/// `(image name pattern, field path, why)`. The image pattern is the file
/// name with numbers replaced by `N` (`*` for any image); the path names the
/// field inside one entry, `[]` standing for the elements of a repeated field.
const IGNORED: &[(&str, &str, &str)] = &[
    // --- numbers the kernel hands out anew on every run
    ("*", "pid", "pids are given by the kernel at fork"),
    ("*", "ppid", "pids are given by the kernel at fork"),
    ("*", "pgid", "pids are given by the kernel at fork"),
    ("*", "sid", "pids are given by the kernel at fork"),
    (
        "*",
        "threads[]",
        "thread ids are given by the kernel at clone",
    ),
    // --- object ids: criu numbers objects in the order it meets them, and
    // namespace ids follow the order of /proc/PID/ns/*; both sides must
    // only be consistent with themselves (checked by the pairing of images).
    (
        "inventory.img",
        "root_ids.*",
        "object ids are criu's own numbering",
    ),
    (
        "inventory.img",
        "dump_criu_run_id",
        "a random UUID per dump",
    ),
    (
        "ids-N.img",
        "*",
        "object and namespace ids are criu's own numbering",
    ),
    // --- addresses: ASLR places every mapping anew on each run
    ("mm-N.img", "mm_start_code", "ASLR"),
    ("mm-N.img", "mm_end_code", "ASLR"),
    ("mm-N.img", "mm_start_data", "ASLR"),
    ("mm-N.img", "mm_end_data", "ASLR"),
    ("mm-N.img", "mm_start_stack", "ASLR"),
    ("mm-N.img", "mm_start_brk", "ASLR"),
    (
        "mm-N.img",
        "mm_brk",
        "ASLR, and the heap grows as the program runs",
    ),
    ("mm-N.img", "mm_arg_start", "ASLR"),
    (
        "mm-N.img",
        "mm_arg_end",
        "ASLR; the argv holds a temporary path",
    ),
    ("mm-N.img", "mm_env_start", "ASLR"),
    (
        "mm-N.img",
        "mm_env_end",
        "ASLR; the environment of the test differs",
    ),
    (
        "mm-N.img",
        "mm_saved_auxv[]",
        "the auxv holds addresses (ASLR)",
    ),
    (
        "mm-N.img",
        "exe_file_id",
        "file ids are criu's own numbering",
    ),
    ("mm-N.img", "vmas[].start", "ASLR"),
    ("mm-N.img", "vmas[].end", "ASLR; heap and stack sizes vary"),
    ("mm-N.img", "vmas[].shmid", "file ids / shmem inodes vary"),
    (
        "mm-N.img",
        "vmas[].pgoff",
        "the pgoff of anonymous VMAs is their address",
    ),
    (
        "pagemap-N.img",
        "[]",
        "one entry per run of dumped pages: depends on how many pages were touched and where",
    ),
    ("pagemap-N.img", "pages_id", "ids are criu's own numbering"),
    ("pagemap-N.img", "vaddr", "ASLR"),
    (
        "pagemap-N.img",
        "nr_pages",
        "how many pages are dirty varies",
    ),
    ("pagemap-N.img", "flags", "how pages are split varies"),
    // --- registers and per-thread kernel state
    (
        "core-N.img",
        "thread_info.gpregs.*",
        "register values depend on where the thread was stopped",
    ),
    (
        "core-N.img",
        "thread_info.fpregs.*",
        "FPU state depends on where the thread was stopped",
    ),
    ("core-N.img", "thread_info.clear_tid_addr", "ASLR"),
    (
        "core-N.img",
        "thread_core.blk_sigset",
        "varies with where the thread was stopped (glibc blocks signals inside some calls)",
    ),
    (
        "core-N.img",
        "thread_core.rseq_entry.*",
        "the rseq area is in the TLS (ASLR)",
    ),
    (
        "core-N.img",
        "tc.loginuid",
        "the login uid of the session that ran the test",
    ),
    (
        "core-N.img",
        "tc.rlimits.rlimits[].cur",
        "limits are inherited from whoever started the test",
    ),
    (
        "core-N.img",
        "tc.rlimits.rlimits[].max",
        "limits are inherited from whoever started the test",
    ),
    (
        "core-N.img",
        "tc.sigactions[].restorer",
        "glibc's __restore_rt (ASLR)",
    ),
    (
        "core-N.img",
        "tc.sigactions[].sigaction",
        "the handler's address (ASLR)",
    ),
    ("core-N.img", "thread_core.sas.*", "ASLR"),
    (
        "core-N.img",
        "tc.timers.real.*",
        "time left on the timer when dumped",
    ),
    (
        "core-N.img",
        "thread_core.signals_p.signals[].siginfo",
        "siginfo carries the sender's pid and uid",
    ),
    (
        "core-N.img",
        "tc.signals_s.signals[].siginfo",
        "siginfo carries the sender's pid and uid",
    ),
    (
        "core-N.img",
        "thread_core.futex_rla",
        "the robust futex list head is in the TLS (ASLR)",
    ),
    (
        "core-N.img",
        "tc.timers.posix[].vnsec",
        "time left on the timer when dumped",
    ),
    (
        "core-N.img",
        "tc.timers.posix[].vsec",
        "time left on the timer when dumped",
    ),
    // --- files
    (
        "files.img",
        "tfd.vsec",
        "time left on the timer when dumped",
    ),
    (
        "files.img",
        "tfd.vnsec",
        "time left on the timer when dumped",
    ),
    (
        "files.img",
        "epfd.tfd[].inode",
        "inode numbers of the watched files",
    ),
    ("memfd.img", "shmid", "the memfd's inode number"),
    (
        "pagemap-shmem-N.img",
        "pages_id",
        "ids are criu's own numbering",
    ),
    (
        "sk-queues.img",
        "id_for",
        "socket file ids are criu's own numbering",
    ),
    ("files.img", "id", "file ids are criu's own numbering"),
    ("files.img", "*.id", "file ids are criu's own numbering"),
    (
        "files.img",
        "reg.build_id[]",
        "the build id of a binary built by this test",
    ),
    ("files.img", "reg.size", "sizes of files of this machine"),
    ("files.img", "*.pipe_id", "pipe inode numbers"),
    ("files.img", "*.ino", "inode numbers"),
    ("files.img", "*.peer", "socket inode numbers"),
    ("files.img", "*.mnt_id", "mount ids"),
    ("files.img", "*.shmid", "shmem inode numbers"),
    (
        "files.img",
        "isk.src_port",
        "the kernel picks the client's ephemeral port anew on every run",
    ),
    (
        "files.img",
        "isk.dst_port",
        "the kernel picks the client's ephemeral port anew on every run",
    ),
    (
        "tcp-stream-N.img",
        "*_seq",
        "initial sequence numbers are random per connection",
    ),
    (
        "tcp-stream-N.img",
        "rcv_wup",
        "follows the random initial sequence number",
    ),
    (
        "tcp-stream-N.img",
        "snd_wl1",
        "follows the random initial sequence number",
    ),
    (
        "tcp-stream-N.img",
        "timestamp",
        "TCP timestamps have a random offset per connection",
    ),
    (
        "files.img",
        "*.inode_id",
        "memfd inode ids are criu's own numbering",
    ),
    ("fdinfo-N.img", "id", "file ids are criu's own numbering"),
    ("fs-N.img", "*", "file ids are criu's own numbering"),
    ("pipes-data.img", "pipe_id", "pipe inode numbers"),
    ("sk-queues.img", "id", "socket ids are criu's own numbering"),
    // --- times and counters
    ("stats-dump", "dump.*", "times and page counts of this dump"),
    ("timens-N.img", "*", "the clocks at the time of the dump"),
    (
        "inventory.img",
        "network_lock_method",
        "we write SKIP (we put up no firewall rules), upstream its default, iptables",
    ),
    (
        "inventory.img",
        "root_cg_set",
        "cgroup set ids are criu's own numbering",
    ),
];

/// Differences kept on purpose: `(image pattern, path, why)`; a difference
/// whose image and path match is reported but does not fail the test.
const KNOWN: &[(&str, &str, &str)] = &[
    // namespaces: the ids of the namespaces of each task, their images and
    // the net namespace of sockets are the work of the namespace branch.
    ("ids-N.img", "*_ns_id", "namespace ids: not written yet (namespace work in progress)"),
    ("inventory.img", "root_ids.*_ns_id", "namespace ids: not written yet (namespace work in progress)"),
    ("files.img", "usk.ns_id", "the net namespace id of a socket: needs namespace ids"),
    ("files.img", "isk.ns_id", "the net namespace id of a socket: needs namespace ids"),
    // registers
    ("core-N.img", "thread_info.fpregs.padding", "we keep the reserved bytes 416..512 of the fxsave area (the xsave software bytes say which xsave layout follows); upstream rebuilds them"),
    ("core-N.img", "thread_info.fpregs.xsave.cet", "CET user state (shadow stacks) is not dumped: none of the programs uses it"),
    ("core-N.img", "thread_info.tls", "the 3 GDT TLS slots (PTRACE_GET_THREAD_AREA) are not dumped: 64-bit code uses fs_base, which is in gpregs"),
    ("core-N.img", "thread_core.cpu_affinity", "criu-rs keeps each thread's CPU affinity, for which upstream's format has no field: ours is field 1002, which upstream does not use (its readers skip it)"),
    ("core-N.img", "thread_core.io_prio", "criu-rs keeps each thread's I/O priority, for which upstream's format has no field: ours is field 1003, which upstream does not use (its readers skip it)"),
    ("core-N.img", "thread_core.timer_slack_ns", "criu-rs keeps each thread's timer slack, for which upstream's format has no field: ours is field 1001, which upstream does not use (its readers skip it)"),
    // files
    ("files.img", "reg.build_id", "the ELF build-id of mapped files is not recorded yet"),
];

/// The fd the golden programs inherited from the shell that started them.
const GOLDEN_INHERITED_FD: i32 = 10;

/// fds the golden programs inherited at high numbers from the harness that
/// started them (a pipe at 251) are not theirs; they open only small fd
/// numbers, and ours inherit nothing above [`GOLDEN_INHERITED_FD`].
const MAX_OWN_FD: i64 = 64;

fn golden_root() -> PathBuf {
    if let Some(p) = std::env::var_os("CRIU_GOLDEN_IMAGES") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        "../../shared/golden-images",
        "../../../shared/golden-images",
    ]
    .iter()
    .map(|r| manifest.join(r))
    .find(|p| p.is_dir())
    .unwrap_or_else(|| manifest.join("../../shared/golden-images"))
}

/// `core-20157.img` -> `core-N.img`, `tcp-stream-180ed4.img` ->
/// `tcp-stream-N.img`.
fn pattern_of(name: &str) -> String {
    let (stem, ext) = match name.strip_suffix(".img") {
        Some(s) => (s, ".img"),
        None => (name, ""),
    };
    let mut parts: Vec<String> = stem.split('-').map(str::to_owned).collect();
    if parts.len() > 1 {
        let last = parts.last_mut().expect("non-empty");
        if last.chars().all(|c| c.is_ascii_hexdigit()) && last.chars().any(|c| c.is_ascii_digit()) {
            *last = "N".into();
        }
    }
    format!("{}{ext}", parts.join("-"))
}

/// The number in a file name (for pairing in order); hex for tcp streams.
fn number_of(name: &str) -> u64 {
    let stem = name.strip_suffix(".img").unwrap_or(name);
    let last = stem.rsplit('-').next().unwrap_or("");
    u64::from_str_radix(last, 16).unwrap_or(0)
}

/// Every image of a directory decoded to JSON (pages are raw: `Json::Null`),
/// grouped by pattern, each group in the order of the numbers in the names.
fn decode_dir(dir: &Path) -> BTreeMap<String, Vec<(String, Json)>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".img") || n == "stats-dump")
        .collect();
    names.sort_by_key(|n| (pattern_of(n), number_of(n)));
    let mut out: BTreeMap<String, Vec<(String, Json)>> = BTreeMap::new();
    for n in names {
        let p = dir.join(&n);
        let j = if n.starts_with("pages-") {
            Json::Null
        } else {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            criu::image::json::decode_image(&p, bytes, false)
                .unwrap_or_else(|e| panic!("our crit cannot decode {}: {e}", p.display()))
        };
        out.entry(pattern_of(&n)).or_default().push((n, j));
    }
    out
}

fn glob(pat: &str, s: &str) -> bool {
    match pat.split_once('*') {
        None => pat == s,
        Some((a, b)) => s.len() >= a.len() + b.len() && s.starts_with(a) && s.ends_with(b),
    }
}

fn lookup(table: &'static [(&str, &str, &str)], img: &str, path: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(i, p, _)| (*i == "*" || glob(i, img)) && glob(p, path))
        .map(|(_, _, why)| *why)
}

fn kind(j: &Json) -> &'static str {
    match j {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// The set of field names of every object in an array (its shapes).
fn shapes(a: &[Json]) -> std::collections::BTreeSet<String> {
    a.iter()
        .map(|e| match e {
            Json::Object(o) => o.keys().cloned().collect::<Vec<_>>().join(","),
            other => kind(other).to_string(),
        })
        .collect()
}

struct Cmp<'a> {
    img: &'a str,
    diffs: Vec<(String, String)>,
}

impl Cmp<'_> {
    fn diff(&mut self, path: &str, what: String) {
        self.diffs.push((path.to_owned(), what));
    }

    fn value(&mut self, path: &str, ours: &Json, theirs: &Json) {
        let ignored = lookup(IGNORED, self.img, path).is_some();
        match (ours, theirs) {
            (Json::Object(a), Json::Object(b)) => {
                for k in b.keys().filter(|k| !a.contains_key(*k)) {
                    self.diff(&join(path, k), "upstream sets it, we do not".into());
                }
                for k in a.keys().filter(|k| !b.contains_key(*k)) {
                    self.diff(&join(path, k), "we set it, upstream does not".into());
                }
                for (k, va) in a {
                    if let Some(vb) = b.get(k) {
                        self.value(&join(path, k), va, vb);
                    }
                }
            }
            (Json::Array(a), Json::Array(b)) => {
                let p = format!("{path}[]");
                if a.len() == b.len() {
                    for (x, y) in a.iter().zip(b) {
                        self.value(&p, x, y);
                    }
                } else if !ignored {
                    self.diff(&p, format!("{} elements, upstream {}", a.len(), b.len()));
                } else if shapes(a) != shapes(b) {
                    self.diff(
                        &p,
                        format!("element shapes {:?}, upstream {:?}", shapes(a), shapes(b)),
                    );
                }
            }
            (a, b) if kind(a) != kind(b) => {
                self.diff(
                    path,
                    format!("a {} ({a}), upstream a {} ({b})", kind(a), kind(b)),
                );
            }
            (a, b) => {
                if a != b && !ignored {
                    self.diff(path, format!("{a}, upstream {b}"));
                }
            }
        }
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_owned()
    } else {
        format!("{path}.{k}")
    }
}

/// Replaces `from` by `to` in every string of `j`.
fn rename(j: &mut Json, from: &str, to: &str) {
    match j {
        Json::String(s) if s.contains(from) => *s = s.replace(from, to),
        Json::Array(a) => a.iter_mut().for_each(|x| rename(x, from, to)),
        Json::Object(o) => o.values_mut().for_each(|x| rename(x, from, to)),
        _ => {}
    }
}

/// Drops the fd table entries of fds inherited from the test harness (see
/// [`MAX_OWN_FD`]) and the files only they use.
fn drop_inherited(imgs: &mut BTreeMap<String, Vec<(String, Json)>>) {
    let mut dropped_ids = Vec::new();
    let mut kept_ids = Vec::new();
    if let Some(v) = imgs.get_mut("fdinfo-N.img") {
        for (_, j) in v.iter_mut() {
            if let Some(Json::Array(es)) = j.get_mut("entries") {
                es.retain(|e| {
                    let own = e["fd"].as_i64().unwrap_or(0) < MAX_OWN_FD;
                    if own { &mut kept_ids } else { &mut dropped_ids }.push(e["id"].clone());
                    own
                });
            }
        }
    }
    if let Some(v) = imgs.get_mut("files.img") {
        for (_, j) in v.iter_mut() {
            if let Some(Json::Array(es)) = j.get_mut("entries") {
                es.retain(|e| !dropped_ids.contains(&e["id"]) || kept_ids.contains(&e["id"]));
            }
        }
    }
}

/// files.img lists files in the order criu met them, which depends on the
/// order of its own walk; sort both sides by what the file is.
fn sort_files(imgs: &mut BTreeMap<String, Vec<(String, Json)>>) {
    let key = |e: &Json| {
        let sub = e
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| *k != "id" && *k != "type"))
            .map(|(_, v)| v.clone())
            .unwrap_or(Json::Null);
        format!(
            "{} {} {} {} {}",
            e["type"], sub["name"], sub["flags"], sub["pos"], sub["type"]
        )
    };
    for (_, j) in imgs.get_mut("files.img").into_iter().flatten() {
        if let Some(Json::Array(es)) = j.get_mut("entries") {
            es.sort_by_key(key);
            // Upstream writes a files.img entry for the cwd and another for
            // the root of every task, even when they are the same
            // directory; we write one per path. Both are valid (the ids in
            // fs-N.img point at a REG entry either way): compare the files
            // without duplicates.
            es.dedup_by(|x, y| {
                let mut x = x.clone();
                let mut y = y.clone();
                strip_ids(&mut x);
                strip_ids(&mut y);
                x == y
            });
        }
    }
}

/// Removes every `id` field (criu's numbering) from a files.img entry.
fn strip_ids(j: &mut Json) {
    if let Json::Object(o) = j {
        o.remove("id");
        o.values_mut().for_each(strip_ids);
    }
}

fn compare(case: &str, ours: &Path, golden: &Path, build_dir: &str) -> Vec<String> {
    let mut a = decode_dir(ours);
    for (_, j) in a.values_mut().flatten() {
        rename(j, build_dir, GOLDEN_BUILD_DIR);
    }
    let mut b = decode_dir(golden);
    drop_inherited(&mut a);
    drop_inherited(&mut b);
    sort_files(&mut a);
    sort_files(&mut b);
    let mut out = Vec::new();
    let mut report = |img: &str, path: &str, what: &str| match lookup(KNOWN, img, path) {
        Some(why) => eprintln!("{case}: known: {img} {path}: {what} ({why})"),
        None => out.push(format!("{img} {path}: {what}")),
    };
    let pats: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for pat in pats {
        let (va, vb) = (a.get(pat.as_str()), b.get(pat.as_str()));
        let (va, vb) = match (va, vb) {
            (Some(x), Some(y)) => (x, y),
            (None, _) => {
                report(pat, "", "upstream writes this image, we do not");
                continue;
            }
            (_, None) => {
                report(pat, "", "we write this image, upstream does not");
                continue;
            }
        };
        if va.len() != vb.len() {
            report(
                pat,
                "",
                &format!("{} images, upstream {}", va.len(), vb.len()),
            );
            continue;
        }
        for ((_, ja), (_, jb)) in va.iter().zip(vb) {
            let mut c = Cmp {
                img: pat,
                diffs: Vec::new(),
            };
            if ja.is_null() {
                continue; // raw pages
            }
            c.value("magic", &ja["magic"], &jb["magic"]);
            let (ea, eb) = (&ja["entries"], &jb["entries"]);
            match (ea.as_array(), eb.as_array()) {
                (Some(x), Some(y)) if x.len() == y.len() => {
                    for (p, q) in x.iter().zip(y) {
                        c.value("", p, q);
                    }
                }
                (Some(x), Some(y)) if lookup(IGNORED, pat, "[]").is_some() => {
                    if shapes(x) != shapes(y) {
                        c.diff(
                            "[]",
                            format!("entry shapes {:?}, upstream {:?}", shapes(x), shapes(y)),
                        );
                    }
                }
                (Some(x), Some(y)) => {
                    c.diff("", format!("{} entries, upstream {}", x.len(), y.len()));
                }
                _ => c.diff("", "no entries".into()),
            }
            for (path, what) in c.diffs {
                report(pat, &path, &what);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Builds, runs and dumps one golden program; returns the images directory
/// (inside `tmp`) or why it was skipped.
fn dump_case(case: &str, tmp: &Path) -> Result<PathBuf, String> {
    let src = golden_root().join(case).join("source.c");
    let bin = tmp.join(format!("g_{case}"));
    let st = Command::new("gcc")
        .args(["-O0", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(["-lrt", "-lpthread"])
        .status()
        .map_err(|e| format!("gcc: {e}"))?;
    assert!(st.success(), "gcc failed on {}", src.display());
    let mut extra: Vec<&str> = Vec::new();
    if case == "tcp" {
        let help = Command::new(CRIU)
            .args(["dump", "--help"])
            .output()
            .map_err(|e| format!("criu --help: {e}"))?;
        if !String::from_utf8_lossy(&help.stdout).contains("--tcp-established") {
            return Err("our criu has no --tcp-established yet".into());
        }
        extra.push("--tcp-established");
    }
    let pidfile = tmp.join(format!("{case}.pid"));
    // setsid: the golden programs were session leaders (sid == pid).
    // Like a shell's `</dev/null >/dev/null 2>&1`: stdout and stderr share
    // one open file description, as in the golden runs.
    let null_out = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null");
    let null_err = null_out.try_clone().expect("dup /dev/null");
    let mut cmd = Command::new("setsid");
    cmd.arg(&bin)
        .arg(&pidfile)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(null_out)
        .stderr(null_err);
    // The golden programs found /dev/null open read-only at fd 10 (left by
    // the shell that started them) and nothing else above stdio: give ours
    // the same table, so the fds they open get the same numbers.
    let inherited = std::fs::File::open("/dev/null").expect("open /dev/null");
    criu::sys::testing::exact_fds(&mut cmd, vec![(inherited.into(), GOLDEN_INHERITED_FD)]);
    let mut child = cmd.spawn().map_err(|e| format!("setsid: {e}"))?;
    let start = Instant::now();
    let pid = loop {
        if let Some(p) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            break p;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{case}: no pid file");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(pid as u32, child.id(), "{case}: setsid forked");
    // let the program settle into its steady state (threads, timers).
    std::thread::sleep(Duration::from_millis(300));
    let dir = tmp.join(format!("img-{case}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = Command::new(CRIU)
        .arg("dump")
        .arg("-t")
        .arg(pid.to_string())
        .arg("-D")
        .arg(&dir)
        .args(["-o", "dump.log", "-v4"])
        .args(&extra)
        .output()
        .expect("run criu");
    // the dump killed the tree; make sure and reap the session leader (its
    // children are reparented and reaped by init).
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{case}: criu dump failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("dump.log")).unwrap_or_default()
    );
    let _ = std::fs::remove_file(dir.join("dump.log"));
    Ok(dir)
}

fn run_case(case: &str) {
    if !have("gcc", "--version") || !have("setsid", "--version") {
        eprintln!("{case}: skipped: needs gcc and setsid");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("{case}: skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = match dump_case(case, tmp.path()) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("{case}: skipped: {why}");
            return;
        }
    };
    let tmp_s = tmp.path().to_str().expect("utf-8 temp path");
    let golden = golden_root().join(case).join("img");
    let diffs = compare(case, &dir, &golden, tmp_s);
    if std::env::var_os("COMPAT_KEEP").is_some() {
        eprintln!("{case}: images kept in {}", dir.display());
        std::mem::forget(tmp);
    }
    assert!(
        diffs.is_empty(),
        "{case}: our images differ from upstream's:\n  {}",
        diffs.join("\n  ")
    );
}

#[test]
fn basic() {
    run_case("basic");
}

#[test]
fn threads() {
    run_case("threads");
}

#[test]
fn fds() {
    run_case("fds");
}

#[test]
fn tree() {
    run_case("tree");
}

#[test]
fn tcp() {
    run_case("tcp");
}
