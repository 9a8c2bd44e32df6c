//! Results and the three report formats (markdown, JSON, JUnit XML).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalogue::Flavor;

/// The verdict on one test in one flavor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
    /// Failed, and listed in known-failures.
    Xfail,
    /// Passed although listed in known-failures: the list must shrink.
    Xpass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
            Outcome::Xfail => "xfail",
            Outcome::Xpass => "xpass",
        }
    }

    /// Does this outcome make the run fail?
    pub fn is_bad(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Xpass)
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub test: String,
    pub family: String,
    pub flavor: Flavor,
    pub outcome: Outcome,
    /// Why it failed / was skipped; for xfail/xpass the known-failure reason.
    pub reason: Option<String>,
    /// Known-failure issue number, if any.
    pub issue: Option<u64>,
    pub seconds: f64,
    /// Where the logs, images and outfile were kept.
    pub artifacts: Option<PathBuf>,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Human summary of the mode (`dump+restore`, `--nocr`, …).
    pub mode: String,
    /// The criu binary used (absent with `--nocr`).
    pub criu: Option<String>,
    /// The run stopped at the first failure (no `--keep-going`).
    pub stopped_early: bool,
    pub results: Vec<TestResult>,
}

#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Totals {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
    pub xfail: usize,
    pub xpass: usize,
}

impl Totals {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Pass => self.pass += 1,
            Outcome::Fail => self.fail += 1,
            Outcome::Skip => self.skip += 1,
            Outcome::Xfail => self.xfail += 1,
            Outcome::Xpass => self.xpass += 1,
        }
    }
    pub fn total(&self) -> usize {
        self.pass + self.fail + self.skip + self.xfail + self.xpass
    }
}

impl Report {
    /// True when the run must exit with failure.
    pub fn failed(&self) -> bool {
        self.results.iter().any(|r| r.outcome.is_bad())
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for r in &self.results {
            t.add(r.outcome);
        }
        t
    }

    pub fn family_totals(&self) -> BTreeMap<String, Totals> {
        let mut m: BTreeMap<String, Totals> = BTreeMap::new();
        for r in &self.results {
            m.entry(r.family.clone()).or_default().add(r.outcome);
        }
        m
    }

    fn sorted(&self) -> Vec<&TestResult> {
        let mut v: Vec<&TestResult> = self.results.iter().collect();
        v.sort_by(|a, b| (&a.test, a.flavor).cmp(&(&b.test, b.flavor)));
        v
    }

    /// `report.md`.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let t = self.totals();
        let _ = writeln!(s, "# zdtm report\n");
        let _ = writeln!(s, "- mode: {}", self.mode);
        let _ = writeln!(s, "- criu: {}", self.criu.as_deref().unwrap_or("(none)"));
        let verdict = if self.failed() { "FAILED" } else { "ok" };
        let _ = writeln!(
            s,
            "- result: **{verdict}** — {} pass, {} fail, {} skip, {} xfail, {} xpass",
            t.pass, t.fail, t.skip, t.xfail, t.xpass
        );
        if self.stopped_early {
            let _ = writeln!(
                s,
                "- stopped at the first failure (run with --keep-going to run everything)"
            );
        }
        let _ = writeln!(s, "\n## Families\n");
        let _ = writeln!(s, "| family | pass | fail | skip | xfail | xpass | total |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        for (fam, ft) in self.family_totals() {
            let _ = writeln!(
                s,
                "| {fam} | {} | {} | {} | {} | {} | {} |",
                ft.pass,
                ft.fail,
                ft.skip,
                ft.xfail,
                ft.xpass,
                ft.total()
            );
        }
        let _ = writeln!(
            s,
            "| **all** | {} | {} | {} | {} | {} | {} |",
            t.pass,
            t.fail,
            t.skip,
            t.xfail,
            t.xpass,
            t.total()
        );

        let sections: [(&str, &[Outcome]); 4] = [
            (
                "Unexpected (failures and unexpected passes)",
                &[Outcome::Fail, Outcome::Xpass],
            ),
            ("Expected failures", &[Outcome::Xfail]),
            ("Skipped", &[Outcome::Skip]),
            ("Passed", &[Outcome::Pass]),
        ];
        for (title, kinds) in sections {
            let rows: Vec<&TestResult> = self
                .sorted()
                .into_iter()
                .filter(|r| kinds.contains(&r.outcome))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n## {title}\n");
            let _ = writeln!(s, "| test | flavor | result | time | reason | artifacts |");
            let _ = writeln!(s, "|---|---|---|---:|---|---|");
            for r in rows {
                let mut reason = r.reason.clone().unwrap_or_default();
                if let Some(i) = r.issue {
                    reason = format!("{reason} (issue #{i})");
                }
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.1}s | {} | {} |",
                    r.test,
                    r.flavor,
                    r.outcome.as_str(),
                    r.seconds,
                    md_cell(&reason),
                    r.artifacts
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
        }
        s
    }

    /// `report.json`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct J<'a> {
            #[serde(flatten)]
            report: &'a Report,
            failed: bool,
            totals: Totals,
            families: BTreeMap<String, Totals>,
        }
        let j = J {
            report: self,
            failed: self.failed(),
            totals: self.totals(),
            families: self.family_totals(),
        };
        serde_json::to_string_pretty(&j).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// `report.xml` (JUnit): one testsuite per family, one testcase per
    /// test×flavor. xfail is reported as skipped with its reason, xpass as
    /// a failure.
    pub fn to_junit(&self) -> String {
        let mut s = String::new();
        let t = self.totals();
        let total_time: f64 = self.results.iter().map(|r| r.seconds).sum();
        let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
        let _ = writeln!(
            s,
            r#"<testsuites name="zdtm" tests="{}" failures="{}" skipped="{}" time="{:.3}">"#,
            t.total(),
            t.fail + t.xpass,
            t.skip + t.xfail,
            total_time
        );
        let fams = self.family_totals();
        for (fam, ft) in &fams {
            let rows: Vec<&TestResult> = self
                .sorted()
                .into_iter()
                .filter(|r| &r.family == fam)
                .collect();
            let time: f64 = rows.iter().map(|r| r.seconds).sum();
            let _ = writeln!(
                s,
                r#"  <testsuite name="{}" tests="{}" failures="{}" skipped="{}" time="{:.3}">"#,
                xml(fam),
                ft.total(),
                ft.fail + ft.xpass,
                ft.skip + ft.xfail,
                time
            );
            for r in rows {
                let _ = write!(
                    s,
                    r#"    <testcase classname="{}" name="{} ({})" time="{:.3}""#,
                    xml(fam),
                    xml(&r.test),
                    r.flavor,
                    r.seconds
                );
                let reason = xml(r.reason.as_deref().unwrap_or(""));
                match r.outcome {
                    Outcome::Pass => {
                        let _ = writeln!(s, "/>");
                    }
                    Outcome::Fail => {
                        let _ = writeln!(
                            s,
                            ">\n      <failure message=\"{reason}\"/>\n    </testcase>"
                        );
                    }
                    Outcome::Xpass => {
                        let _ = writeln!(
                            s,
                            ">\n      <failure message=\"unexpected pass (listed as known failure: {reason})\"/>\n    </testcase>"
                        );
                    }
                    Outcome::Skip => {
                        let _ = writeln!(
                            s,
                            ">\n      <skipped message=\"{reason}\"/>\n    </testcase>"
                        );
                    }
                    Outcome::Xfail => {
                        let _ = writeln!(
                            s,
                            ">\n      <skipped message=\"expected failure: {reason}\"/>\n    </testcase>"
                        );
                    }
                }
            }
            let _ = writeln!(s, "  </testsuite>");
        }
        let _ = writeln!(s, "</testsuites>");
        s
    }

    /// Write `report.md`, `report.json` and `report.xml` into `dir`.
    pub fn write_all(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("report.md"), self.to_markdown())?;
        std::fs::write(dir.join("report.json"), self.to_json())?;
        std::fs::write(dir.join("report.xml"), self.to_junit())?;
        Ok(())
    }
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn xml(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\n' => o.push_str("&#10;"),
            c if (c as u32) < 0x20 && c != '\t' => o.push('?'),
            c => o.push(c),
        }
    }
    o
}

/// A file-system-safe directory name for a test (`files/pipe` → `files_pipe`).
pub fn path_safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => format!("_{s}"),
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        test: &str,
        flavor: Flavor,
        outcome: Outcome,
        reason: Option<&str>,
        secs: f64,
    ) -> TestResult {
        TestResult {
            test: test.into(),
            family: test.split('/').next().unwrap_or("").into(),
            flavor,
            outcome,
            reason: reason.map(String::from),
            issue: if outcome == Outcome::Xfail {
                Some(4)
            } else {
                None
            },
            seconds: secs,
            artifacts: if matches!(outcome, Outcome::Fail | Outcome::Xfail) {
                Some(PathBuf::from(format!(
                    "target/zdtm/{}/{}",
                    path_safe(test),
                    flavor
                )))
            } else {
                None
            },
        }
    }

    fn fixed() -> Report {
        Report {
            mode: "dump+restore, 1 iteration".into(),
            criu: Some("target/release/criu".into()),
            stopped_early: false,
            results: vec![
                r(
                    "memory/sparse",
                    Flavor::Ns,
                    Outcome::Xfail,
                    Some("criu cannot dump yet"),
                    1.25,
                ),
                r("memory/anon", Flavor::H, Outcome::Pass, None, 0.5),
                r(
                    "files/pipe",
                    Flavor::H,
                    Outcome::Fail,
                    Some("criu dump failed (exit 1) | see dump.log"),
                    2.0,
                ),
                r(
                    "files/pipe",
                    Flavor::Uns,
                    Outcome::Skip,
                    Some("user namespace: EPERM"),
                    0.0,
                ),
                r(
                    "uffd/lazy",
                    Flavor::H,
                    Outcome::Skip,
                    Some("feature userfaultfd absent: no syscall"),
                    0.0,
                ),
                r(
                    "timers/posix",
                    Flavor::H,
                    Outcome::Xpass,
                    Some("criu cannot dump yet"),
                    3.0,
                ),
            ],
        }
    }

    #[test]
    fn markdown_snapshot() {
        insta::assert_snapshot!(fixed().to_markdown());
    }

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!(fixed().to_junit());
    }

    #[test]
    fn totals_and_verdict() {
        let rep = fixed();
        let t = rep.totals();
        assert_eq!((t.pass, t.fail, t.skip, t.xfail, t.xpass), (1, 1, 2, 1, 1));
        assert!(rep.failed());
        let ok = Report {
            results: rep
                .results
                .iter()
                .filter(|r| !r.outcome.is_bad())
                .cloned()
                .collect(),
            ..rep.clone()
        };
        assert!(!ok.failed());
        let j: serde_json::Value = serde_json::from_str(&rep.to_json()).unwrap();
        assert_eq!(j["failed"], true);
        assert_eq!(j["totals"]["xfail"], 1);
        assert_eq!(j["families"]["files"]["fail"], 1);
        assert_eq!(j["results"][0]["outcome"], "xfail");
    }

    #[test]
    fn safe_names() {
        assert_eq!(path_safe("files/pipe"), "files_pipe");
        assert_eq!(path_safe("../x y"), ".._x_y");
        assert_eq!(path_safe(".."), "_..");
        assert_eq!(path_safe(""), "_");
    }
}
