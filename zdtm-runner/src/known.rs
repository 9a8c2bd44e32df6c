//! `zdtm/known-failures.toml`: tests expected to fail.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalogue::Flavor;
use crate::glob::glob_match;

/// Errors loading the list.
#[derive(Debug, thiserror::Error)]
pub enum KnownError {
    #[error("reading known failures {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("parsing known failures {path}: {err}")]
    Parse { path: PathBuf, err: toml::de::Error },
    #[error("known failures {path}: entry for {test:?}: bad flavor {flavor:?}")]
    Flavor {
        path: PathBuf,
        test: String,
        flavor: String,
    },
}

fn star() -> String {
    "*".into()
}

/// One `[[xfail]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Xfail {
    /// Test name or glob (`memory/*`).
    pub test: String,
    /// `*`, or a comma list of flavors (`h,ns`).
    #[serde(default = "star")]
    pub flavor: String,
    pub reason: String,
    #[serde(default)]
    pub issue: Option<u64>,
}

impl Xfail {
    fn matches(&self, test: &str, flavor: Flavor) -> bool {
        glob_match(&self.test, test)
            && (self.flavor.trim() == "*"
                || self
                    .flavor
                    .split(',')
                    .any(|f| Flavor::parse(f) == Some(flavor)))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    xfail: Vec<Xfail>,
}

/// The whole list.
#[derive(Debug, Clone, Default)]
pub struct KnownFailures {
    pub entries: Vec<Xfail>,
}

impl KnownFailures {
    /// Parse the TOML text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, KnownError> {
        let f: File = toml::from_str(text).map_err(|err| KnownError::Parse {
            path: path.to_path_buf(),
            err,
        })?;
        for e in &f.xfail {
            let ok =
                e.flavor.trim() == "*" || e.flavor.split(',').all(|p| Flavor::parse(p).is_some());
            if !ok {
                return Err(KnownError::Flavor {
                    path: path.to_path_buf(),
                    test: e.test.clone(),
                    flavor: e.flavor.clone(),
                });
            }
        }
        Ok(KnownFailures { entries: f.xfail })
    }

    /// Load the file; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<Self, KnownError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Self::parse(&t, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(err) => Err(KnownError::Read {
                path: path.to_path_buf(),
                err,
            }),
        }
    }

    /// The first entry that expects `test` in `flavor` to fail.
    pub fn lookup(&self, test: &str, flavor: Flavor) -> Option<&Xfail> {
        self.entries.iter().find(|e| e.matches(test, flavor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
# comment
[[xfail]]
test = "memory/sparse"
flavor = "*"
reason = "criu cannot dump yet"
issue = 4

[[xfail]]
test = "net/*"
flavor = "ns,uns"
reason = "no net ns"
"#;

    #[test]
    fn matching() {
        let k = KnownFailures::parse(TEXT, Path::new("k.toml")).unwrap();
        assert_eq!(k.entries.len(), 2);
        let e = k.lookup("memory/sparse", Flavor::Uns).unwrap();
        assert_eq!(e.issue, Some(4));
        assert!(k.lookup("memory/sparse2", Flavor::H).is_none());
        assert_eq!(k.lookup("net/tcp", Flavor::Ns).unwrap().reason, "no net ns");
        assert!(k.lookup("net/tcp", Flavor::H).is_none());
    }

    #[test]
    fn rejects_bad_entries() {
        let bad = "[[xfail]]\ntest = \"a/b\"\nflavor = \"hx\"\nreason = \"r\"\n";
        assert!(matches!(
            KnownFailures::parse(bad, Path::new("k")),
            Err(KnownError::Flavor { .. })
        ));
        let missing_reason = "[[xfail]]\ntest = \"a/b\"\n";
        assert!(KnownFailures::parse(missing_reason, Path::new("k")).is_err());
        let typo = "[[xfail]]\ntest = \"a/b\"\nreason = \"r\"\nisue = 3\n";
        assert!(KnownFailures::parse(typo, Path::new("k")).is_err());
        assert!(KnownFailures::parse("", Path::new("k"))
            .unwrap()
            .entries
            .is_empty());
    }
}
