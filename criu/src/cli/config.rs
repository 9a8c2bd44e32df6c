//! Configuration files in CRIU's syntax.
//!
//! One option per line, by its long name without the leading dashes:
//! `option` for a flag, `option value` for an option with a value. A value
//! may be put in double quotes (`lsm-profile "apparmor:x y"`), inside which
//! `\"` stands for a quote. `#` starts a comment, on a line of its own or
//! after the option. Anything else on a line is an error.
//!
//! Files are read in CRIU's order, each one overriding the ones before:
//! `/etc/criu/default.conf`, `$HOME/.criu/default.conf` (both skipped with
//! `--no-default-config` or `--config`), the file named by
//! `$CRIU_CONFIG_FILE`, the file given with `--config FILE`; the command
//! line comes last and overrides them all.

use std::path::{Path, PathBuf};

/// The system-wide default configuration file.
pub const GLOBAL_CONFIG: &str = "/etc/criu/default.conf";
/// The per-user default configuration file, under `$HOME`.
pub const USER_CONFIG: &str = ".criu/default.conf";
/// The environment variable naming one more configuration file.
pub const ENV_CONFIG: &str = "CRIU_CONFIG_FILE";

/// A configuration file could not be read or has a line criu cannot take.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration file {path}, line {line}: {what}")]
    Syntax {
        path: PathBuf,
        line: usize,
        what: String,
    },
    #[error("configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One statement of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number.
    pub line: usize,
    /// The option's long name, without dashes.
    pub option: String,
    /// Its value, when the line has one.
    pub value: Option<String>,
}

impl Entry {
    /// The entry as command-line words: `--option` and maybe the value.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![format!("--{}", self.option)];
        v.extend(self.value.clone());
        v
    }
}

/// Why one line is not a statement (without the file and line number).
fn statement(line: &str) -> Result<Option<(String, Option<String>)>, String> {
    let s = line.trim_start();
    if s.is_empty() || s.starts_with('#') {
        return Ok(None);
    }
    let (name, rest) = match s.find([' ', '\t', '#']) {
        Some(i) if s[i..].starts_with('#') => (&s[..i], ""),
        Some(i) => (&s[..i], &s[i..]),
        None => (s.trim_end(), ""),
    };
    if name.starts_with('-') {
        return Err(format!(
            "option {name:?}: options are written without leading dashes"
        ));
    }
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(Some((name.to_string(), None)));
    }
    let value = if let Some(q) = rest.strip_prefix('"') {
        // Up to the first quote that is not escaped.
        let mut val = String::new();
        let mut chars = q.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if q[i + 1..].starts_with('"') => {
                    val.push('"');
                    chars.next();
                }
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                c => val.push(c),
            }
        }
        let Some(end) = end else {
            return Err(format!(
                "option {name}: the quoted value has no closing quote"
            ));
        };
        let tail = q[end..].trim_start();
        if !(tail.is_empty() || tail.starts_with('#')) {
            return Err(format!(
                "option {name}: {tail:?} after the quoted value (one value per option)"
            ));
        }
        val
    } else {
        let v = rest.split('#').next().unwrap_or_default().trim_end();
        if v.contains(char::is_whitespace) {
            return Err(format!(
                "option {name}: value {v:?} has spaces (quote it, one value per option)"
            ));
        }
        v.replace("\\\"", "\"")
    };
    Ok(Some((name.to_string(), Some(value))))
}

/// Parses the text of a configuration file; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match statement(line) {
            Ok(None) => {}
            Ok(Some((option, value))) => out.push(Entry {
                line: i + 1,
                option,
                value,
            }),
            Err(what) => {
                return Err(Error::Syntax {
                    path: path.to_path_buf(),
                    line: i + 1,
                    what,
                })
            }
        }
    }
    Ok(out)
}

/// Reads and parses one configuration file. A file that does not exist
/// gives `Ok(None)` when `optional`, an error otherwise.
pub fn read(path: &Path, optional: bool) -> Result<Option<Vec<Entry>>, Error> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let text = String::from_utf8(text).map_err(|e| Error::Syntax {
        path: path.to_path_buf(),
        line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        what: "not UTF-8 text".into(),
    })?;
    parse(&text, path).map(Some)
}

/// Where the configuration files are looked for. [`Sources::from_env`]
/// gives CRIU's places; tests make their own.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The system-wide file.
    pub global: Option<PathBuf>,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$CRIU_CONFIG_FILE`.
    pub env_file: Option<PathBuf>,
}

impl Sources {
    /// CRIU's places, from this process's environment.
    pub fn from_env() -> Sources {
        Sources {
            global: Some(PathBuf::from(GLOBAL_CONFIG)),
            home: std::env::var_os("HOME").map(PathBuf::from),
            env_file: std::env::var_os(ENV_CONFIG)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    /// The files to read, lowest precedence first: the default files
    /// (unless `defaults` is false), the environment's file, then
    /// `explicit`. Each with whether it may be absent.
    pub fn files(&self, defaults: bool, explicit: Option<&Path>) -> Vec<(PathBuf, bool)> {
        let mut v = Vec::new();
        if defaults {
            v.extend(self.global.clone().map(|p| (p, true)));
            v.extend(self.home.as_ref().map(|h| (h.join(USER_CONFIG), true)));
        }
        v.extend(self.env_file.clone().map(|p| (p, false)));
        v.extend(explicit.map(|p| (p.to_path_buf(), false)));
        v
    }

    /// Every entry of the files [`Sources::files`] names, in order, each
    /// with the file it came from.
    pub fn entries(
        &self,
        defaults: bool,
        explicit: Option<&Path>,
    ) -> Result<Vec<(PathBuf, Entry)>, Error> {
        let mut out = Vec::new();
        for (path, optional) in self.files(defaults, explicit) {
            if let Some(es) = read(&path, optional)? {
                out.extend(es.into_iter().map(|e| (path.clone(), e)));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(text: &str) -> Result<Vec<(String, Option<String>)>, Error> {
        parse(text, Path::new("t.conf"))
            .map(|v| v.into_iter().map(|e| (e.option, e.value)).collect())
    }

    fn kv(k: &str, v: Option<&str>) -> (String, Option<String>) {
        (k.to_string(), v.map(str::to_string))
    }

    #[test]
    fn flags_values_and_comments() {
        let text = "\
# a comment
   tcp-established
verbosity 4
log-file   dump.log   # where the log goes
\tshell-job\t# a flag and a comment

work-dir\t/tmp/w
manage-cgroups#right after
";
        assert_eq!(
            p(text).unwrap(),
            [
                kv("tcp-established", None),
                kv("verbosity", Some("4")),
                kv("log-file", Some("dump.log")),
                kv("shell-job", None),
                kv("work-dir", Some("/tmp/w")),
                kv("manage-cgroups", None),
            ]
        );
    }

    #[test]
    fn quoted_values() {
        assert_eq!(
            p("lsm-profile \"apparmor:a b\"\n").unwrap(),
            [kv("lsm-profile", Some("apparmor:a b"))]
        );
        assert_eq!(
            p("x \"say \\\"hi\\\" # not a comment\" # a comment").unwrap(),
            [kv("x", Some("say \"hi\" # not a comment"))]
        );
        assert_eq!(p("x \"\"").unwrap(), [kv("x", Some(""))]);
        assert_eq!(p("x a\\\"b").unwrap(), [kv("x", Some("a\"b"))]);
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, line) in [
            ("ok\nverbosity 4 5\n", 2),
            ("x \"open", 1),
            ("\n\nx \"a\" b", 3),
            ("--tcp-close", 1),
        ] {
            match parse(text, Path::new("/c.conf")) {
                Err(Error::Syntax { line: l, path, .. }) => {
                    assert_eq!(
                        (l, path.as_path()),
                        (line, Path::new("/c.conf")),
                        "{text:?}"
                    )
                }
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn entries_become_arguments() {
        let e = parse("verbosity 4\ntcp-close", Path::new("c"))
            .unwrap()
            .iter()
            .flat_map(Entry::to_args)
            .collect::<Vec<_>>();
        assert_eq!(e, ["--verbosity", "4", "--tcp-close"]);
    }

    #[test]
    fn files_in_criu_order() {
        let s = Sources {
            global: Some("/g".into()),
            home: Some("/h".into()),
            env_file: Some("/e".into()),
        };
        let names = |v: Vec<(PathBuf, bool)>| {
            v.into_iter()
                .map(|(p, opt)| (p.display().to_string(), opt))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(s.files(true, None)),
            [
                ("/g".to_string(), true),
                ("/h/.criu/default.conf".to_string(), true),
                ("/e".to_string(), false)
            ]
        );
        assert_eq!(
            names(s.files(false, Some(Path::new("/x")))),
            [("/e".to_string(), false), ("/x".to_string(), false)]
        );
    }

    #[test]
    fn absent_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.conf");
        assert!(read(&missing, true).unwrap().is_none());
        assert!(matches!(read(&missing, false), Err(Error::Read { .. })));
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = parse(&text, Path::new("p"));
        }

        #[test]
        fn never_panics_on_config_shapes(
            lines in prop::collection::vec("[ \t]{0,2}[a-z#\"\\\\-]{0,6}[ \t]{0,2}[a-z#\" \\\\]{0,8}", 0..8)
        ) {
            let _ = parse(&lines.join("\n"), Path::new("p"));
        }

        #[test]
        fn written_statements_read_back(
            stmts in prop::collection::vec(("[a-z][a-z-]{0,12}", prop::option::of("[ -\\[\\]-~]{0,12}")), 0..8)
        ) {
            let mut text = String::new();
            for (k, v) in &stmts {
                match v {
                    Some(v) => text.push_str(&format!("{k} \"{}\"\n", v.replace('"', "\\\""))),
                    None => text.push_str(&format!("{k}\n")),
                }
            }
            let got = parse(&text, Path::new("p")).unwrap();
            let got: Vec<_> = got.into_iter().map(|e| (e.option, e.value)).collect();
            prop_assert_eq!(got, stmts);
        }
    }
}
