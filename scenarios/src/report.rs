//! Summaries a CI system can ingest: JSON and JUnit XML (written by hand: the format is
//! small and this keeps the dependency tree small).

use std::fmt::Write as _;

use serde::Serialize;

use crate::runner::{Outcome, Verdict};

/// One scenario's line in a summary.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name (or the file name when it did not parse).
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// `pass`, `fail`, `skip` or `error` (could not run: bad file, target failure).
    pub verdict: String,
    /// Steps that ran.
    pub steps: usize,
    /// Wall time in milliseconds.
    pub millis: u128,
    /// One line: the failing step and message, the skip reason or the error.
    pub detail: String,
    /// The full failure report (step trace, logs, trees), empty unless it failed.
    pub report: String,
    /// The command that replays this scenario.
    pub replay: String,
}

impl Row {
    /// A row for a scenario that ran (or was skipped).
    pub fn from_outcome(file: &str, outcome: &Outcome, millis: u128, replay: String) -> Self {
        let verdict = outcome.verdict();
        let detail = match (&outcome.failure, &outcome.skipped) {
            (Some(f), _) => format!(
                "step {}: {}",
                f.step,
                f.message.lines().next().unwrap_or_default()
            ),
            (None, Some(reason)) => reason.clone(),
            (None, None) => String::new(),
        };
        Self {
            name: outcome.name.clone(),
            file: file.to_owned(),
            verdict: match verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Skip => "skip",
            }
            .to_owned(),
            steps: outcome.steps.len(),
            millis,
            report: if verdict == Verdict::Fail {
                outcome.failure_report(&replay)
            } else {
                String::new()
            },
            detail,
            replay,
        }
    }

    /// A row for a scenario that could not run.
    pub fn error(name: &str, file: &str, message: String, millis: u128, replay: String) -> Self {
        Self {
            name: name.to_owned(),
            file: file.to_owned(),
            verdict: "error".to_owned(),
            steps: 0,
            millis,
            detail: message.lines().next().unwrap_or_default().to_owned(),
            report: message,
            replay,
        }
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `sim` or `exec:<target name>`.
    pub target: String,
    /// Number of scenarios.
    pub total: usize,
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped (the target cannot run them).
    pub skipped: usize,
    /// Could not run.
    pub errors: usize,
    /// One row per scenario.
    pub scenarios: Vec<Row>,
}

impl Summary {
    /// Counts the rows.
    pub fn new(target: String, scenarios: Vec<Row>) -> Self {
        let count = |v: &str| scenarios.iter().filter(|r| r.verdict == v).count();
        Self {
            target,
            total: scenarios.len(),
            passed: count("pass"),
            failed: count("fail"),
            skipped: count("skip"),
            errors: count("error"),
            scenarios,
        }
    }

    /// Whether nothing failed or errored.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.errors == 0
    }

    /// The summary table printed by `brick scenario run`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:>5}  {:<6} {:>7}  detail",
            "scenario", "steps", "result", "ms"
        );
        for r in &self.scenarios {
            let _ = writeln!(
                out,
                "{:<40} {:>5}  {:<6} {:>7}  {}",
                r.name,
                r.steps,
                r.verdict.to_uppercase(),
                r.millis,
                r.detail
            );
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed, {} skipped, {} errors (target: {})",
            self.passed, self.failed, self.skipped, self.errors, self.target
        );
        out
    }

    /// JUnit XML: one `<testsuite>`, one `<testcase>` per scenario, with `<failure>` (the
    /// full report), `<skipped>` (the reason) or `<error>`.
    pub fn junit(&self) -> String {
        let secs = |ms: u128| format!("{:.3}", ms as f64 / 1000.0);
        let total: u128 = self.scenarios.iter().map(|r| r.millis).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"brickcheck\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            self.total,
            self.failed,
            self.errors,
            self.skipped,
            secs(total)
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"brickcheck scenarios ({})\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            xml(&self.target),
            self.total,
            self.failed,
            self.errors,
            self.skipped,
            secs(total)
        );
        for r in &self.scenarios {
            let _ = write!(
                out,
                "    <testcase classname=\"brickcheck.{}\" name=\"{}\" file=\"{}\" time=\"{}\"",
                xml(&self.target),
                xml(&r.name),
                xml(&r.file),
                secs(r.millis)
            );
            match r.verdict.as_str() {
                "pass" => out.push_str("/>\n"),
                "skip" => {
                    let _ = writeln!(out, ">\n      <skipped message=\"{}\"/>", xml(&r.detail));
                    out.push_str("    </testcase>\n");
                }
                kind => {
                    let tag = if kind == "fail" { "failure" } else { "error" };
                    let _ = writeln!(
                        out,
                        ">\n      <{tag} message=\"{}\">{}\nreplay: {}</{tag}>",
                        xml(&r.detail),
                        xml(&r.report),
                        xml(&r.replay)
                    );
                    out.push_str("    </testcase>\n");
                }
            }
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// Escapes text for XML attributes and content; drops characters XML 1.0 forbids.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if u32::from(c) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, verdict: &str, detail: &str) -> Row {
        Row {
            name: name.into(),
            file: format!("{name}.toml"),
            verdict: verdict.into(),
            steps: 3,
            millis: 1500,
            detail: detail.into(),
            report: if verdict == "fail" {
                "step 2 <failed> & \u{1b}[31mred".into()
            } else {
                String::new()
            },
            replay: "brick scenario run x.toml".into(),
        }
    }

    #[test]
    fn junit_counts_and_escapes() {
        let s = Summary::new(
            "sim".into(),
            vec![
                row("a", "pass", ""),
                row("b", "fail", "step 2: \"boom\""),
                row("c", "skip", "needs 2 hosts"),
                row("d", "error", "bad file"),
            ],
        );
        assert!(!s.ok());
        assert_eq!((s.passed, s.failed, s.skipped, s.errors), (1, 1, 1, 1));
        let x = s.junit();
        assert!(
            x.contains(r#"tests="4" failures="1" errors="1" skipped="1""#),
            "{x}"
        );
        assert!(
            x.contains(
                r#"<testcase classname="brickcheck.sim" name="a" file="a.toml" time="1.500"/>"#
            ),
            "{x}"
        );
        assert!(
            x.contains(
                r#"<failure message="step 2: &quot;boom&quot;">step 2 &lt;failed&gt; &amp; [31mred"#
            ),
            "{x}"
        );
        assert!(x.contains(r#"<skipped message="needs 2 hosts"/>"#), "{x}");
        assert!(x.contains("<error message=\"bad file\">"), "{x}");
        assert!(!x.contains('\u{1b}'));
        // Balanced: every opened testcase is closed.
        assert_eq!(x.matches("<testcase ").count(), 4);
        assert_eq!(x.matches("</testcase>").count(), 3, "{x}");
        let table = s.table();
        assert!(
            table.contains("1 passed, 1 failed, 1 skipped, 1 errors"),
            "{table}"
        );
    }
}
