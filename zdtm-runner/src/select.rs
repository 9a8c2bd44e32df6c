//! Which (test, flavor) pairs a run covers.

use std::sync::Arc;

use crate::catalogue::{Flavor, TestDesc};
use crate::glob::{glob_match, is_glob};

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Every test not flagged `noauto`.
    pub all: bool,
    /// `-t` patterns (globs allowed).
    pub tests: Vec<String>,
    /// `--family` names.
    pub families: Vec<String>,
    /// `-f` flavors; `None` means every flavor the test supports.
    pub flavors: Option<Vec<Flavor>>,
    /// `--exclude` patterns (globs allowed).
    pub exclude: Vec<String>,
    /// `--shard k/N`: keep job number i (0-based, after sorting) when
    /// `i % N == k - 1`.
    pub shard: Option<Shard>,
}

/// One shard of N (k is 1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?}: expected k/N"))?;
        let k: usize = k.trim().parse().map_err(|e| format!("shard {s:?}: {e}"))?;
        let n: usize = n.trim().parse().map_err(|e| format!("shard {s:?}: {e}"))?;
        if n == 0 || k == 0 || k > n {
            return Err(format!("shard {s:?}: need 1 <= k <= N"));
        }
        Ok(Shard { k, n })
    }
}

/// One unit of work.
#[derive(Debug, Clone)]
pub struct Job {
    pub test: Arc<TestDesc>,
    pub flavor: Flavor,
}

impl Job {
    pub fn id(&self) -> String {
        format!("{} ({})", self.test.name, self.flavor)
    }
}

/// Parse `h,ns,uns`.
pub fn parse_flavors(s: &str) -> Result<Vec<Flavor>, String> {
    let mut v = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let f = Flavor::parse(part).ok_or_else(|| format!("unknown flavor {part:?}"))?;
        if !v.contains(&f) {
            v.push(f);
        }
    }
    if v.is_empty() {
        return Err(format!("no flavor in {s:?}"));
    }
    Ok(v)
}

/// Errors of a selection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("nothing selected: give --all, -t NAME, --family F or --external PATH")]
    Nothing,
    #[error("-t {0}: no test of that name")]
    Unknown(String),
}

/// Expand a selection over the catalogue into sorted jobs.
///
/// `-t` and `--family` filters are combined with AND; `--all` alone takes
/// everything. A `noauto` test is taken only when a `-t` pattern names it
/// exactly (no wildcards). A `-t` name without wildcards that matches no
/// test is an error.
pub fn select(catalogue: &[TestDesc], sel: &Selection) -> Result<Vec<Job>, SelectError> {
    if !sel.all && sel.tests.is_empty() && sel.families.is_empty() {
        return Err(SelectError::Nothing);
    }
    for t in &sel.tests {
        if !is_glob(t) && !catalogue.iter().any(|d| &d.name == t) {
            return Err(SelectError::Unknown(t.clone()));
        }
    }
    let mut tests: Vec<&TestDesc> = catalogue
        .iter()
        .filter(|d| {
            let named_exactly = sel.tests.iter().any(|t| t == &d.name);
            if d.has_flag("noauto") && !named_exactly {
                return false;
            }
            if !sel.tests.is_empty() && !sel.tests.iter().any(|t| glob_match(t, &d.name)) {
                return false;
            }
            if !sel.families.is_empty() && !sel.families.iter().any(|f| f == &d.family) {
                return false;
            }
            !sel.exclude.iter().any(|x| glob_match(x, &d.name))
        })
        .collect();
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    tests.dedup_by(|a, b| a.name == b.name);

    let mut jobs = Vec::new();
    for d in tests {
        let shared = Arc::new(d.clone());
        for f in Flavor::ALL {
            if !d.flavors.contains(&f) {
                continue;
            }
            if let Some(want) = &sel.flavors {
                if !want.contains(&f) {
                    continue;
                }
            }
            jobs.push(Job {
                test: shared.clone(),
                flavor: f,
            });
        }
    }
    if let Some(Shard { k, n }) = sel.shard {
        jobs = jobs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == k - 1)
            .map(|(_, j)| j)
            .collect();
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, flavors: &[Flavor], flags: &[&str]) -> TestDesc {
        TestDesc {
            name: name.into(),
            family: name.split('/').next().unwrap_or("").into(),
            flavors: flavors.to_vec(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            dump_opts: vec![],
            restore_opts: vec![],
            feature: None,
            timeout: 30,
            description: String::new(),
            kind: Default::default(),
            needs: vec![],
        }
    }

    fn cat() -> Vec<TestDesc> {
        vec![
            t("memory/sparse", &Flavor::ALL, &[]),
            t("files/pipe", &[Flavor::H, Flavor::Ns], &[]),
            t("files/slow", &[Flavor::H], &["noauto"]),
            t("net/tcp", &[Flavor::Ns, Flavor::Uns], &["suid", "excl"]),
        ]
    }

    fn ids(jobs: &[Job]) -> Vec<String> {
        jobs.iter().map(Job::id).collect()
    }

    #[test]
    fn all_skips_noauto_and_expands_flavors() {
        let sel = Selection {
            all: true,
            ..Default::default()
        };
        let j = select(&cat(), &sel).unwrap();
        assert_eq!(
            ids(&j),
            [
                "files/pipe (h)",
                "files/pipe (ns)",
                "memory/sparse (h)",
                "memory/sparse (ns)",
                "memory/sparse (uns)",
                "net/tcp (ns)",
                "net/tcp (uns)"
            ]
        );
    }

    #[test]
    fn nothing_selected_is_an_error() {
        assert_eq!(
            select(&cat(), &Selection::default()).unwrap_err(),
            SelectError::Nothing
        );
        let sel = Selection {
            tests: vec!["files/nope".into()],
            ..Default::default()
        };
        assert_eq!(
            select(&cat(), &sel).unwrap_err(),
            SelectError::Unknown("files/nope".into())
        );
    }

    #[test]
    fn globs_family_flavor_exclude() {
        let sel = Selection {
            tests: vec!["files/*".into()],
            flavors: Some(vec![Flavor::H]),
            ..Default::default()
        };
        // noauto is not taken through a glob
        assert_eq!(ids(&select(&cat(), &sel).unwrap()), ["files/pipe (h)"]);
        let sel = Selection {
            tests: vec!["files/slow".into()],
            ..Default::default()
        };
        assert_eq!(ids(&select(&cat(), &sel).unwrap()), ["files/slow (h)"]);
        let sel = Selection {
            families: vec!["memory".into(), "net".into()],
            exclude: vec!["net/*".into()],
            flavors: Some(parse_flavors("uns,h").unwrap()),
            ..Default::default()
        };
        assert_eq!(
            ids(&select(&cat(), &sel).unwrap()),
            ["memory/sparse (h)", "memory/sparse (uns)"]
        );
    }

    #[test]
    fn shards_partition_the_jobs() {
        let all = select(
            &cat(),
            &Selection {
                all: true,
                ..Default::default()
            },
        )
        .unwrap();
        let mut seen = Vec::new();
        for k in 1..=3 {
            let sel = Selection {
                all: true,
                shard: Some(Shard { k, n: 3 }),
                ..Default::default()
            };
            let part = ids(&select(&cat(), &sel).unwrap());
            assert!(part.len() >= all.len() / 3 && part.len() <= all.len() / 3 + 1);
            seen.extend(part);
        }
        seen.sort();
        let mut want = ids(&all);
        want.sort();
        assert_eq!(seen, want);
        assert!("0/3".parse::<Shard>().is_err());
        assert!("4/3".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
        assert_eq!("2/5".parse::<Shard>().unwrap(), Shard { k: 2, n: 5 });
    }

    #[test]
    fn flavor_parsing() {
        assert_eq!(parse_flavors("h,ns").unwrap(), vec![Flavor::H, Flavor::Ns]);
        assert!(parse_flavors("h,xx").is_err());
        assert!(parse_flavors(",").is_err());
    }
}
