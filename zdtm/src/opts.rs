//! Command-line options of a test program: the protocol's own
//! (`--pidfile`, `--outfile`, `--filename`, `--dirname`) and test-specific
//! `--name=value` pairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the options could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptsError {
    #[error("option {0:?} is not of the form --name=value")]
    Malformed(String),
    #[error("missing required option --{0}")]
    Missing(&'static str),
    #[error("option --{0} given twice")]
    Duplicate(String),
    #[error("cannot make path of --{0} absolute: {1}")]
    Path(&'static str, String),
}

/// Parsed options. Paths are made absolute at parse time so that a test
/// that changes its cwd still finds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opts {
    pub pidfile: PathBuf,
    pub outfile: PathBuf,
    pub filename: Option<PathBuf>,
    pub dirname: Option<PathBuf>,
    /// Test-specific `--name=value` (a bare `--name` has value "").
    pub extra: BTreeMap<String, String>,
}

fn absolute(what: &'static str, p: &str) -> Result<PathBuf, OptsError> {
    let p = Path::new(p);
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|e| OptsError::Path(what, e.to_string()))?;
    Ok(cwd.join(p))
}

impl Opts {
    /// Parse the arguments after the program (and subcommand) name.
    pub fn parse<I, S>(args: I) -> Result<Opts, OptsError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut pidfile = None;
        let mut outfile = None;
        let mut filename = None;
        let mut dirname = None;
        let mut extra = BTreeMap::new();
        for a in args {
            let a = a.as_ref();
            let body = a
                .strip_prefix("--")
                .ok_or_else(|| OptsError::Malformed(a.to_string()))?;
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, v),
                None => (body, ""),
            };
            if name.is_empty() {
                return Err(OptsError::Malformed(a.to_string()));
            }
            let slot = match name {
                "pidfile" => Some((&mut pidfile, "pidfile")),
                "outfile" => Some((&mut outfile, "outfile")),
                "filename" => Some((&mut filename, "filename")),
                "dirname" => Some((&mut dirname, "dirname")),
                _ => None,
            };
            match slot {
                Some((slot, what)) => {
                    if slot.is_some() {
                        return Err(OptsError::Duplicate(name.to_string()));
                    }
                    if value.is_empty() {
                        return Err(OptsError::Malformed(a.to_string()));
                    }
                    *slot = Some(absolute(what, value)?);
                }
                None => {
                    if extra.insert(name.to_string(), value.to_string()).is_some() {
                        return Err(OptsError::Duplicate(name.to_string()));
                    }
                }
            }
        }
        Ok(Opts {
            pidfile: pidfile.ok_or(OptsError::Missing("pidfile"))?,
            outfile: outfile.ok_or(OptsError::Missing("outfile"))?,
            filename,
            dirname,
            extra,
        })
    }

    /// A test-specific option.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.extra.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_protocol_and_extra() {
        let o = Opts::parse([
            "--pidfile=/a/p",
            "--outfile=/a/o",
            "--dirname=/d",
            "--size=12",
            "--flag",
        ])
        .unwrap();
        assert_eq!(o.pidfile, PathBuf::from("/a/p"));
        assert_eq!(o.outfile, PathBuf::from("/a/o"));
        assert_eq!(o.dirname, Some(PathBuf::from("/d")));
        assert_eq!(o.filename, None);
        assert_eq!(o.get("size"), Some("12"));
        assert_eq!(o.get("flag"), Some(""));
        assert_eq!(o.get("nope"), None);
    }

    #[test]
    fn relative_paths_become_absolute() {
        let o = Opts::parse(["--pidfile=p", "--outfile=x/o"]).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(o.pidfile, cwd.join("p"));
        assert_eq!(o.outfile, cwd.join("x/o"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            Opts::parse(["--outfile=o"]),
            Err(OptsError::Missing("pidfile"))
        );
        assert_eq!(
            Opts::parse(["--pidfile=o"]),
            Err(OptsError::Missing("outfile"))
        );
        assert_eq!(
            Opts::parse(["pidfile=o"]),
            Err(OptsError::Malformed("pidfile=o".into()))
        );
        assert_eq!(
            Opts::parse(["--pidfile="]),
            Err(OptsError::Malformed("--pidfile=".into()))
        );
        assert_eq!(
            Opts::parse(["--pidfile=a", "--pidfile=b", "--outfile=o"]),
            Err(OptsError::Duplicate("pidfile".into()))
        );
        assert_eq!(
            Opts::parse(["--=3"]),
            Err(OptsError::Malformed("--=3".into()))
        );
    }
}
