//! `crit x DIR ps|fds|mems|rss` on the images upstream CRIU 4.2 wrote
//! (`/work/shared/golden-images`, or `$CRIU_GOLDEN_IMAGES`) prints exactly
//! what upstream crit 4.2 prints. The expected texts in `tests/crit_x/` were
//! made by running upstream's own crit on those images; for `tree`, whose
//! zombie has no ids/mm image, upstream crit stops with an exception after
//! the live tasks, which is where ours stops too (it leaves the zombie out).

use std::path::{Path, PathBuf};
use std::process::Command;

const CRIT: &str = env!("CARGO_BIN_EXE_crit");

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

fn check(checkpoint: &str, what: &str) {
    let dir = golden_root().join(checkpoint).join("img");
    let expected_file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/crit_x")
        .join(format!("{checkpoint}-{what}.txt"));
    let expected = std::fs::read_to_string(&expected_file)
        .unwrap_or_else(|e| panic!("{}: {e}", expected_file.display()));
    let out = Command::new(CRIT)
        .arg("x")
        .arg(&dir)
        .arg(what)
        .output()
        .expect("run crit");
    assert!(
        out.status.success(),
        "crit x {} {what}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let got = String::from_utf8_lossy(&out.stdout);
    if got != expected {
        for (i, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
            assert_eq!(g, e, "crit x {checkpoint} {what}: line {}", i + 1);
        }
        assert_eq!(
            got.lines().count(),
            expected.lines().count(),
            "crit x {checkpoint} {what}: number of lines"
        );
        panic!("crit x {checkpoint} {what}: output differs in line endings");
    }
}

macro_rules! golden {
    ($($name:ident: $cp:literal $what:literal;)*) => {
        $(#[test] fn $name() { check($cp, $what); })*
    };
}

golden! {
    tree_ps: "tree" "ps";
    tree_fds: "tree" "fds";
    tree_mems: "tree" "mems";
    tree_rss: "tree" "rss";
    fds_ps: "fds" "ps";
    fds_fds: "fds" "fds";
    fds_mems: "fds" "mems";
    fds_rss: "fds" "rss";
    basic_ps: "basic" "ps";
    basic_fds: "basic" "fds";
    basic_mems: "basic" "mems";
    basic_rss: "basic" "rss";
    threads_ps: "threads" "ps";
    threads_fds: "threads" "fds";
    threads_mems: "threads" "mems";
    threads_rss: "threads" "rss";
    tcp_ps: "tcp" "ps";
    tcp_fds: "tcp" "fds";
    tcp_mems: "tcp" "mems";
    tcp_rss: "tcp" "rss";
}

#[test]
fn an_unknown_explorer_is_refused() {
    let dir = golden_root().join("tree/img");
    let out = Command::new(CRIT)
        .arg("x")
        .arg(&dir)
        .arg("pss")
        .output()
        .expect("run crit");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pss"));
}

#[test]
fn a_directory_without_images_fails_naming_pstree() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(CRIT)
        .arg("x")
        .arg(tmp.path())
        .arg("ps")
        .output()
        .expect("run crit");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("pstree.img"));
}
