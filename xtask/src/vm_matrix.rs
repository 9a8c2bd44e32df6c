//! `target/zdtm/matrix.md` and `matrix.json`: the zdtm suite run on
//! several kernels, feature family × kernel, and the tests whose outcome
//! differs between kernels.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One test×flavor line of a runner's `report.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Row {
    pub test: String,
    pub family: String,
    pub flavor: String,
    /// pass, fail, skip, xfail or xpass.
    pub outcome: String,
}

#[derive(Deserialize)]
struct ReportJson {
    results: Vec<Row>,
}

/// Reads the rows of a runner's `report.json`.
pub fn load_report(path: &Path) -> Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let r: ReportJson =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(r.results)
}

/// The suite on one kernel.
#[derive(Debug, Clone, Serialize)]
pub struct KernelRun {
    /// `host` or a name from vm-images/kernels.toml.
    pub kernel: String,
    /// `uname -r`, when known.
    pub release: Option<String>,
    /// How the run ended: `exit 0`, `exit 1`, `guest kernel panic`, …
    pub status: String,
    /// Whether the run counts as good (runner exit 0).
    pub ok: bool,
    /// None when the run left no report (VM crash, runner error).
    pub results: Option<Vec<Row>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    pub xfail: usize,
    pub xpass: usize,
}

impl Counts {
    fn add(&mut self, outcome: &str) {
        match outcome {
            "pass" => self.pass += 1,
            "skip" => self.skip += 1,
            "xfail" => self.xfail += 1,
            "xpass" => self.xpass += 1,
            _ => self.fail += 1,
        }
    }

    fn cell(&self) -> String {
        let mut s = format!("{}/{}/{}/{}", self.pass, self.fail, self.skip, self.xfail);
        if self.xpass > 0 {
            let _ = write!(s, " +{} xpass", self.xpass);
        }
        s
    }
}

/// A test in a flavor whose outcome is not the same on every kernel that
/// has a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub test: String,
    pub flavor: String,
    /// kernel -> outcome (`-` when that kernel did not run it).
    pub outcomes: BTreeMap<String, String>,
}

/// The runs on every kernel, in the order asked for.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub kernels: Vec<KernelRun>,
}

impl Matrix {
    fn with_reports(&self) -> impl Iterator<Item = (&KernelRun, &Vec<Row>)> {
        self.kernels
            .iter()
            .filter_map(|k| k.results.as_ref().map(|r| (k, r)))
    }

    /// family -> kernel -> counts.
    pub fn families(&self) -> BTreeMap<String, BTreeMap<String, Counts>> {
        let mut m: BTreeMap<String, BTreeMap<String, Counts>> = BTreeMap::new();
        for (k, rows) in self.with_reports() {
            for r in rows {
                m.entry(r.family.clone())
                    .or_default()
                    .entry(k.kernel.clone())
                    .or_default()
                    .add(&r.outcome);
            }
        }
        m
    }

    pub fn totals(&self, kernel: &KernelRun) -> Option<Counts> {
        let rows = kernel.results.as_ref()?;
        let mut c = Counts::default();
        for r in rows {
            c.add(&r.outcome);
        }
        Some(c)
    }

    /// Tests whose outcome differs between the kernels that have a report.
    pub fn differences(&self) -> Vec<Difference> {
        type Outcomes<'a> = BTreeMap<(&'a str, &'a str), &'a str>;
        let runs: Vec<(&KernelRun, Outcomes)> = self
            .with_reports()
            .map(|(k, rows)| {
                let m = rows
                    .iter()
                    .map(|r| ((r.test.as_str(), r.flavor.as_str()), r.outcome.as_str()))
                    .collect();
                (k, m)
            })
            .collect();
        if runs.len() < 2 {
            return Vec::new();
        }
        let keys: BTreeSet<(&str, &str)> =
            runs.iter().flat_map(|(_, m)| m.keys().copied()).collect();
        let mut out = Vec::new();
        for key in keys {
            let outcomes: BTreeMap<String, String> = runs
                .iter()
                .map(|(k, m)| {
                    (
                        k.kernel.clone(),
                        m.get(&key).copied().unwrap_or("-").to_string(),
                    )
                })
                .collect();
            let distinct: BTreeSet<&String> = outcomes.values().collect();
            if distinct.len() > 1 {
                out.push(Difference {
                    test: key.0.to_string(),
                    flavor: key.1.to_string(),
                    outcomes,
                });
            }
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut s = String::from("# zdtm kernel matrix\n\n");
        let _ = writeln!(
            s,
            "| kernel | release | run | pass | fail | skip | xfail | xpass |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|");
        for k in &self.kernels {
            let rel = k.release.as_deref().unwrap_or("?");
            match self.totals(k) {
                Some(t) => {
                    let _ = writeln!(
                        s,
                        "| {} | {rel} | {} | {} | {} | {} | {} | {} |",
                        k.kernel, k.status, t.pass, t.fail, t.skip, t.xfail, t.xpass
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "| {} | {rel} | {} (no report) | - | - | - | - | - |",
                        k.kernel, k.status
                    );
                }
            }
        }
        let _ = writeln!(s, "\n## Families\n");
        let _ = writeln!(
            s,
            "Each cell: pass/fail/skip/xfail (and unexpected passes).\n"
        );
        let names: Vec<&str> = self.kernels.iter().map(|k| k.kernel.as_str()).collect();
        let _ = writeln!(s, "| family | {} |", names.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(names.len()));
        for (fam, per) in self.families() {
            let cells: Vec<String> = self
                .kernels
                .iter()
                .map(|k| match (&k.results, per.get(&k.kernel)) {
                    (None, _) => "no report".to_string(),
                    (Some(_), None) => "-".to_string(),
                    (Some(_), Some(c)) => c.cell(),
                })
                .collect();
            let _ = writeln!(s, "| {fam} | {} |", cells.join(" | "));
        }
        let diffs = self.differences();
        let _ = writeln!(s, "\n## Differences between kernels\n");
        let compared: Vec<&str> = self
            .with_reports()
            .map(|(k, _)| k.kernel.as_str())
            .collect();
        if compared.len() < 2 {
            let _ = writeln!(
                s,
                "Fewer than two kernels have a report: nothing to compare."
            );
        } else if diffs.is_empty() {
            let _ = writeln!(
                s,
                "None: every test has the same outcome on {}.",
                compared.join(", ")
            );
        } else {
            let _ = writeln!(s, "| test | flavor | {} |", compared.join(" | "));
            let _ = writeln!(s, "|---|---|{}", "---|".repeat(compared.len()));
            for d in &diffs {
                let cells: Vec<&str> = compared
                    .iter()
                    .map(|k| d.outcomes.get(*k).map(String::as_str).unwrap_or("-"))
                    .collect();
                let _ = writeln!(s, "| {} | {} | {} |", d.test, d.flavor, cells.join(" | "));
            }
        }
        s
    }

    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct K<'a> {
            kernel: &'a str,
            release: Option<&'a str>,
            status: &'a str,
            ok: bool,
            totals: Option<Counts>,
        }
        #[derive(Serialize)]
        struct J<'a> {
            kernels: Vec<K<'a>>,
            families: BTreeMap<String, BTreeMap<String, Counts>>,
            differences: Vec<Difference>,
        }
        let j = J {
            kernels: self
                .kernels
                .iter()
                .map(|k| K {
                    kernel: &k.kernel,
                    release: k.release.as_deref(),
                    status: &k.status,
                    ok: k.ok,
                    totals: self.totals(k),
                })
                .collect(),
            families: self.families(),
            differences: self.differences(),
        };
        serde_json::to_string_pretty(&j).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Writes `matrix.md` and `matrix.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in [
            ("matrix.md", self.to_markdown()),
            ("matrix.json", self.to_json()),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(test: &str, flavor: &str, outcome: &str) -> Row {
        Row {
            test: test.into(),
            family: test.split('/').next().unwrap_or(test).into(),
            flavor: flavor.into(),
            outcome: outcome.into(),
        }
    }

    fn sample() -> Matrix {
        Matrix {
            kernels: vec![
                KernelRun {
                    kernel: "host".into(),
                    release: Some("6.18.44".into()),
                    status: "exit 0".into(),
                    ok: true,
                    results: Some(vec![
                        row("basic/loop00", "h", "pass"),
                        row("basic/loop00", "ns", "xfail"),
                        row("memory/softdirty", "h", "skip"),
                        row("signals/sigpending00", "h", "xfail"),
                    ]),
                },
                KernelRun {
                    kernel: "6.1".into(),
                    release: Some("6.1.0-56-amd64".into()),
                    status: "exit 1".into(),
                    ok: false,
                    results: Some(vec![
                        row("basic/loop00", "h", "pass"),
                        row("basic/loop00", "ns", "xfail"),
                        row("memory/softdirty", "h", "fail"),
                        row("signals/sigpending00", "h", "xpass"),
                    ]),
                },
                KernelRun {
                    kernel: "6.12".into(),
                    release: Some("6.12.117+deb12-amd64".into()),
                    status: "guest kernel panic".into(),
                    ok: false,
                    results: None,
                },
            ],
        }
    }

    #[test]
    fn matrix_markdown() {
        insta::assert_snapshot!(sample().to_markdown());
    }

    #[test]
    fn matrix_json() {
        insta::assert_snapshot!(sample().to_json());
    }

    #[test]
    fn differences_ignore_kernels_without_a_report() {
        let d = sample().differences();
        let tests: Vec<&str> = d.iter().map(|d| d.test.as_str()).collect();
        assert_eq!(tests, ["memory/softdirty", "signals/sigpending00"]);
        assert!(!d[0].outcomes.contains_key("6.12"));
        assert_eq!(d[0].outcomes["6.1"], "fail");
        assert_eq!(d[0].outcomes["host"], "skip");
    }

    #[test]
    fn a_test_run_on_one_kernel_only_differs() {
        let mut m = sample();
        if let Some(r) = m.kernels[0].results.as_mut() {
            r.push(row("files/new", "h", "pass"));
        }
        let d = m.differences();
        let new = d.iter().find(|d| d.test == "files/new").unwrap();
        assert_eq!(new.outcomes["6.1"], "-");
    }

    #[test]
    fn reports_of_the_runner_load() {
        let dir = std::env::temp_dir().join(format!("xtask-matrix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("report.json");
        std::fs::write(
            &p,
            r#"{"mode":"dump+restore","criu":null,"stopped_early":false,"results":[
{"test":"basic/loop00","family":"basic","flavor":"h","outcome":"pass","reason":null,"issue":null,"seconds":1.0,"artifacts":null}],
"failed":false}"#,
        )
        .unwrap();
        let rows = load_report(&p).unwrap();
        assert_eq!(rows, [row("basic/loop00", "h", "pass")]);
        std::fs::write(&p, "{").unwrap();
        assert!(load_report(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
