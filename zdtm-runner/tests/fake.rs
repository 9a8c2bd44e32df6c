//! End-to-end runs of the runner with a fake catalogue binary (a shell
//! script speaking the zdtm protocol) and a fake criu. Nothing here depends
//! on the real catalogue or on criu working.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

const FAKE_ZDTM: &str = r#"#!/bin/sh
# A fake zdtm-test: list, features, run (upstream protocol), daemon.
case "$1" in
list)
cat <<'LIST'
[{"name":"fake/pass","family":"fake","flavors":["h","ns","uns"],"flags":[],"timeout":10},
 {"name":"fake/fail","family":"fake","flavors":["h"],"timeout":10},
 {"name":"fake/hang","family":"slow","flavors":["h"],"timeout":2},
 {"name":"fake/leftover","family":"fake","flavors":["h"],"timeout":10},
 {"name":"fake/crash","family":"fake","flavors":["h"],"timeout":10},
 {"name":"fake/nostart","family":"fake","flavors":["h"],"timeout":10},
 {"name":"fake/feature","family":"fake","flavors":["h"],"feature":"userfaultfd"},
 {"name":"fake/noauto","family":"fake","flavors":["h"],"flags":["noauto"]},
 {"name":"fake/crfail","family":"fake","flavors":["h"],"flags":["crfail"],"timeout":10}]
LIST
;;
features)
echo '{"userfaultfd":{"present":false,"reason":"fake kernel"}}'
;;
run)
  name=$2; shift 2
  for a in "$@"; do
    case $a in
      --pidfile=*) pidfile=${a#--pidfile=};;
      --outfile=*) outfile=${a#--outfile=};;
    esac
  done
  if [ "$name" = fake/nostart ]; then echo "cannot prepare" >&2; exit 1; fi
  sh "$0" daemon "$name" "$outfile" "$pidfile" </dev/null >/dev/null 2>&1 &
  while [ ! -s "$pidfile" ]; do sleep 0.01; done
  exit 0
;;
daemon)
  name=$2; out=$3; pidfile=$4
  # A child that is settled before the pid file says ready: exec'd, and in
  # the C locale (no locale files mapped after the runner's first look).
  LC_ALL=C sleep 1000 & sp=$!
  while [ "$(readlink /proc/$sp/exe)" = "$(readlink /proc/$$/exe)" ]; do sleep 0.01; done
  case $name in
    fake/pass|fake/crfail|fake/noauto) trap 'kill $sp; echo PASS > "$out"; exit 0' TERM;;
    fake/fail) trap 'kill $sp; echo "FAIL: value mismatch" > "$out"; exit 1' TERM;;
    fake/hang) trap '' TERM;;
    fake/leftover) echo $sp > "$out.child"; trap 'echo PASS > "$out"; exit 0' TERM;;
    fake/crash) trap 'kill $sp; kill -KILL $$' TERM;;
  esac
  echo $$ > "$pidfile.tmp"; mv "$pidfile.tmp" "$pidfile"
  while :; do wait $sp; done
;;
*) exit 2;;
esac
"#;

const FAKE_CRIU: &str = r#"#!/bin/sh
# A fake criu: dump leaves the tree running, restore names the same pid.
cmd=$1; shift
while [ $# -gt 0 ]; do
  case $1 in
    -t) pid=$2; shift;;
    -D) dir=$2; shift;;
    --pidfile) pf=$2; shift;;
  esac
  shift
done
case $cmd in
dump)
  if [ -n "$FAKE_CRIU_FAIL" ]; then echo "fake dump failure" > "$dir/dump.log"; exit 1; fi
  echo "$pid" > "$dir/fake.pid"; echo "fake dump of $pid" > "$dir/dump.log"; exit 0;;
restore)
  cp "$dir/fake.pid" "$pf" && echo "fake restore" > "$dir/restore.log"; exit $?;;
esac
exit 2
"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, text) in [("zdtm-test", FAKE_ZDTM), ("criu", FAKE_CRIU)] {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Env { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn criu(&self) -> String {
        self.path("criu").display().to_string()
    }

    fn ids() -> String {
        if nix::unistd::getuid().is_root() {
            "18943:58467".into()
        } else {
            format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid())
        }
    }

    /// Run the runner; returns (exit code, report.json, stderr).
    fn run(&self, args: &[&str], envs: &[(&str, &str)]) -> (i32, serde_json::Value, String) {
        let out = self.path("out");
        let _ = std::fs::remove_file(out.join("report.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_zdtm-runner"));
        cmd.args(["--zdtm-bin", self.path("zdtm-test").to_str().unwrap()])
            .args(["--out-dir", out.to_str().unwrap()])
            .args([
                "--known-failures",
                self.path("known.toml").to_str().unwrap(),
            ])
            .args(["--ids", &Self::ids()])
            .args(args)
            .current_dir(self.dir.path());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let o = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let json = std::fs::read_to_string(out.join("report.json"))
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap_or(serde_json::Value::Null);
        (o.status.code().unwrap_or(-1), json, stderr)
    }
}

fn outcome<'a>(rep: &'a serde_json::Value, test: &str, flavor: &str) -> (&'a str, &'a str) {
    let r = rep["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {rep:#}"))
        .iter()
        .find(|r| r["test"] == test && r["flavor"] == flavor)
        .unwrap_or_else(|| panic!("no result for {test} ({flavor}) in {rep:#}"));
    (
        r["outcome"].as_str().unwrap(),
        r["reason"].as_str().unwrap_or(""),
    )
}

fn pid_gone(pid: i32) -> bool {
    // gone, or at most a zombie about to be reaped
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn nocr_judges_pass_fail_timeout_leftover_crash() {
    let env = Env::new();
    let (code, rep, err) = env.run(&["--nocr", "--all", "--keep-going", "-p", "2"], &[]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(outcome(&rep, "fake/pass", "h").0, "pass", "{err}");
    let (o, why) = outcome(&rep, "fake/fail", "h");
    assert_eq!((o, why), ("fail", "FAIL: value mismatch"));
    let (o, why) = outcome(&rep, "fake/hang", "h");
    assert_eq!(o, "fail");
    assert!(why.contains("did not exit within 2s"), "{why}");
    let (o, why) = outcome(&rep, "fake/leftover", "h");
    assert_eq!(o, "fail");
    assert!(why.contains("leftover processes"), "{why}");
    let (o, why) = outcome(&rep, "fake/crash", "h");
    assert_eq!(o, "fail");
    assert!(why.contains("SIGKILL"), "{why}");
    let (o, why) = outcome(&rep, "fake/nostart", "h");
    assert_eq!(o, "fail");
    assert!(
        why.contains("failed to start") && why.contains("cannot prepare"),
        "{why}"
    );
    let (o, why) = outcome(&rep, "fake/feature", "h");
    assert_eq!(
        (o, why),
        ("skip", "feature userfaultfd absent: fake kernel")
    );
    // noauto is not part of --all
    assert!(rep["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["test"] != "fake/noauto"));
    // the leftover child was killed
    let child: i32 = std::fs::read_to_string(env.path("out/fake_leftover/h/test/out.child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_gone(child), "leftover {child} still alive");
    // artifacts: kept for failures, removed for passes
    assert!(env.path("out/fake_fail/h/test.log").exists());
    assert!(!env.path("out/fake_pass").exists());
    let md = std::fs::read_to_string(env.path("out/report.md")).unwrap();
    assert!(md.contains("| fake | 4 | 4 | 1 | 0 | 0 | 9 |"), "{md}");
    let xml = std::fs::read_to_string(env.path("out/report.xml")).unwrap();
    assert!(
        xml.contains("<failure message=\"FAIL: value mismatch\"/>"),
        "{xml}"
    );
}

#[test]
fn namespace_flavors() {
    let env = Env::new();
    let (code, rep, err) = env.run(&["--nocr", "-t", "fake/pass"], &[]);
    if !nix::unistd::getuid().is_root() {
        // without root the namespaces cannot be made: skipped, never passed
        assert_ne!(outcome(&rep, "fake/pass", "ns").0, "pass");
        return;
    }
    assert_eq!(code, 0, "{err}\n{rep:#}");
    for f in ["h", "ns", "uns"] {
        assert_eq!(outcome(&rep, "fake/pass", f).0, "pass", "{f}: {err}");
    }
    // with the fake criu: the ns init's host pid is what gets dumped
    let criu = env.criu();
    let (code, rep, err) = env.run(
        &["--criu-bin", &criu, "-t", "fake/pass", "-f", "ns,uns"],
        &[],
    );
    assert_eq!(code, 0, "{err}\n{rep:#}");
    assert_eq!(outcome(&rep, "fake/pass", "ns").0, "pass");
    assert_eq!(outcome(&rep, "fake/pass", "uns").0, "pass");
}

#[test]
fn fake_criu_cycles() {
    let env = Env::new();
    let criu = env.criu();
    let (code, rep, err) = env.run(
        &[
            "--criu-bin",
            &criu,
            "--iters",
            "2",
            "-t",
            "fake/pass",
            "-f",
            "h",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}\n{rep:#}");
    assert_eq!(outcome(&rep, "fake/pass", "h").0, "pass");
    let (code, rep, err) = env.run(
        &[
            "--criu-bin",
            &criu,
            "--norst",
            "-t",
            "fake/pass",
            "-t",
            "fake/fail",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}\n{rep:#}");
    assert_eq!(outcome(&rep, "fake/fail", "h").0, "fail");
    // a failing dump: failure with logs kept; crfail expects exactly that
    let (code, rep, err) = env.run(
        &[
            "--criu-bin",
            &criu,
            "-k",
            "-t",
            "fake/pass",
            "-t",
            "fake/crfail",
            "-f",
            "h",
        ],
        &[("FAKE_CRIU_FAIL", "1")],
    );
    assert_eq!(code, 1, "{err}");
    let (o, why) = outcome(&rep, "fake/pass", "h");
    assert_eq!(o, "fail");
    assert!(
        why.contains("criu dump failed") && why.contains("fake dump failure"),
        "{why}"
    );
    assert!(env.path("out/fake_pass/h/img-1/dump.log").exists());
    assert_eq!(outcome(&rep, "fake/crfail", "h").0, "pass", "{err}");
}

#[test]
fn known_failures_and_stop_on_first_failure() {
    let env = Env::new();
    std::fs::write(
        env.path("known.toml"),
        "[[xfail]]\ntest = \"fake/fail\"\nreason = \"known bug\"\nissue = 7\n",
    )
    .unwrap();
    let args = ["--nocr", "-t", "fake/fail", "-t", "fake/pass", "-f", "h"];
    let (code, rep, err) = env.run(&args, &[]);
    assert_eq!(code, 0, "{err}\n{rep:#}");
    let (o, why) = outcome(&rep, "fake/fail", "h");
    assert_eq!(o, "xfail");
    assert!(why.starts_with("known bug"), "{why}");
    std::fs::write(
        env.path("known.toml"),
        "[[xfail]]\ntest = \"fake/pass\"\nflavor = \"h\"\nreason = \"was broken\"\n",
    )
    .unwrap();
    let (code, rep, _) = env.run(&["--nocr", "-t", "fake/pass", "-f", "h"], &[]);
    assert_eq!(code, 1);
    assert_eq!(outcome(&rep, "fake/pass", "h").0, "xpass");

    // without --keep-going the run stops after fake/fail (sorted first)
    std::fs::remove_file(env.path("known.toml")).unwrap();
    let (code, rep, _) = env.run(&args, &[]);
    assert_eq!(code, 1);
    assert_eq!(rep["stopped_early"], true);
    assert_eq!(rep["results"].as_array().unwrap().len(), 1);
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    let (code, _, err) = env.run(&["--nocr"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("nothing selected"), "{err}");
    let (code, _, err) = env.run(&["--nocr", "-t", "fake/none"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("fake/none"), "{err}");
}
