//! What the runner knows about tests: read from `zdtm-test list --json` and
//! `zdtm-test features`, or made up for external (upstream) test binaries.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Errors while loading the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("running {cmd}: {err}")]
    Spawn { cmd: String, err: std::io::Error },
    #[error("{cmd} exited with {status}: {stderr}")]
    Failed {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("parsing the output of {cmd}: {err}")]
    Parse { cmd: String, err: serde_json::Error },
    #[error("reading external tests from {path}: {err}")]
    External { path: PathBuf, err: std::io::Error },
    #[error("external test path {0} is neither an executable nor a directory of executables")]
    NoExternal(PathBuf),
}

/// A test flavor: where the test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// In the host namespaces.
    H,
    /// As init of new pid/mount/net/ipc/uts(/time) namespaces.
    Ns,
    /// Like `ns`, inside a new user namespace.
    Uns,
}

impl Flavor {
    pub const ALL: [Flavor; 3] = [Flavor::H, Flavor::Ns, Flavor::Uns];

    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::H => "h",
            Flavor::Ns => "ns",
            Flavor::Uns => "uns",
        }
    }

    pub fn parse(s: &str) -> Option<Flavor> {
        match s.trim() {
            "h" => Some(Flavor::H),
            "ns" => Some(Flavor::Ns),
            "uns" => Some(Flavor::Uns),
            _ => None,
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the test program is started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TestKind {
    /// `zdtm-test run NAME …`
    #[default]
    Catalogue,
    /// An upstream-protocol binary started as `PATH --pidfile=… --outfile=…`.
    External(PathBuf),
}

fn default_timeout() -> u64 {
    30
}

/// One test as described by the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestDesc {
    pub name: String,
    pub family: String,
    pub flavors: Vec<Flavor>,
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default)]
    pub dump_opts: Vec<String>,
    #[serde(default)]
    pub restore_opts: Vec<String>,
    #[serde(default)]
    pub feature: Option<String>,
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub description: String,
    #[serde(skip)]
    pub kind: TestKind,
    /// Options an external program requires besides --pidfile/--outfile
    /// (from its `--help`), e.g. `filename`.
    #[serde(skip)]
    pub needs: Vec<String>,
}

impl TestDesc {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Whether a kernel feature is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feature {
    pub present: bool,
    #[serde(default)]
    pub reason: String,
}

pub type Features = BTreeMap<String, Feature>;

fn run_json(bin: &Path, args: &[&str]) -> Result<String, CatalogueError> {
    let cmd = format!("{} {}", bin.display(), args.join(" "));
    let out = Command::new(bin)
        .args(args)
        .output()
        .map_err(|err| CatalogueError::Spawn {
            cmd: cmd.clone(),
            err,
        })?;
    if !out.status.success() {
        return Err(CatalogueError::Failed {
            cmd,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Parse the output of `zdtm-test list --json`.
pub fn parse_list(json: &str) -> Result<Vec<TestDesc>, serde_json::Error> {
    serde_json::from_str(json)
}

/// Parse the output of `zdtm-test features`.
pub fn parse_features(json: &str) -> Result<Features, serde_json::Error> {
    serde_json::from_str(json)
}

/// Ask the catalogue binary for its tests.
pub fn load_catalogue(zdtm_bin: &Path) -> Result<Vec<TestDesc>, CatalogueError> {
    let out = run_json(zdtm_bin, &["list", "--json"])?;
    parse_list(&out).map_err(|err| CatalogueError::Parse {
        cmd: format!("{} list --json", zdtm_bin.display()),
        err,
    })
}

/// Ask the catalogue binary which kernel features are present.
pub fn load_features(zdtm_bin: &Path) -> Result<Features, CatalogueError> {
    let out = run_json(zdtm_bin, &["features"])?;
    parse_features(&out).map_err(|err| CatalogueError::Parse {
        cmd: format!("{} features", zdtm_bin.display()),
        err,
    })
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn external_desc(path: &Path) -> TestDesc {
    let base = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    TestDesc {
        name: format!("external/{base}"),
        family: "external".into(),
        flavors: vec![Flavor::H],
        flags: vec![],
        dump_opts: vec![],
        restore_opts: vec![],
        feature: None,
        timeout: default_timeout(),
        description: format!("external test {}", path.display()),
        kind: TestKind::External(path.to_path_buf()),
        needs: required_options(path),
    }
}

/// The options an upstream zdtm test program requires, from its `--help`
/// (required ones are listed without brackets: `  --filename=string ...`).
/// Asked while the catalogue is loaded, before the reaper takes over every
/// child of the runner.
fn required_options(prog: &Path) -> Vec<String> {
    let Ok(out) = std::process::Command::new(prog)
        .arg("--help")
        .stdin(std::process::Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_once('='))
        .map(|(name, _)| name.to_string())
        .filter(|n| n != "pidfile" && n != "outfile")
        .collect()
}

/// External tests: `path` itself when it is an executable, or every
/// executable file directly inside it when it is a directory.
pub fn load_external(path: &Path) -> Result<Vec<TestDesc>, CatalogueError> {
    let abs = std::path::absolute(path).map_err(|err| CatalogueError::External {
        path: path.to_path_buf(),
        err,
    })?;
    if abs.is_dir() {
        let rd = std::fs::read_dir(&abs).map_err(|err| CatalogueError::External {
            path: abs.clone(),
            err,
        })?;
        let mut v = Vec::new();
        for e in rd {
            let e = e.map_err(|err| CatalogueError::External {
                path: abs.clone(),
                err,
            })?;
            let p = e.path();
            if is_executable_file(&p) {
                v.push(external_desc(&p));
            }
        }
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    } else if is_executable_file(&abs) {
        Ok(vec![external_desc(&abs)])
    } else {
        Err(CatalogueError::NoExternal(abs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_shape() {
        let j = r#"[{"name":"memory/sparse","family":"memory","flavors":["h","ns","uns"],
            "flags":["suid"],"dump_opts":["--tcp-established"],"restore_opts":[],
            "feature":null,"timeout":30,"description":"sparse mapping"},
            {"name":"uffd/lazy","family":"uffd","flavors":["h"],"feature":"userfaultfd"}]"#;
        let v = parse_list(j).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].flavors, Flavor::ALL.to_vec());
        assert!(v[0].has_flag("suid"));
        assert_eq!(v[0].dump_opts, vec!["--tcp-established"]);
        assert_eq!(v[1].feature.as_deref(), Some("userfaultfd"));
        assert_eq!(v[1].timeout, 30);
        assert_eq!(v[1].kind, TestKind::Catalogue);
        let f =
            parse_features(r#"{"userfaultfd":{"present":false,"reason":"no syscall"}}"#).unwrap();
        assert!(!f["userfaultfd"].present);
    }

    #[test]
    fn external_directory_lists_executables_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("pipe00");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.path().join("pipe00.c"), "").unwrap();
        let v = load_external(d.path()).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name, "external/pipe00");
        assert_eq!(v[0].flavors, vec![Flavor::H]);
        assert!(v[0].flags.is_empty());
        assert!(load_external(&d.path().join("pipe00.c")).is_err());
    }
}
