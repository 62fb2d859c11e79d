//! `brick check`: the main job. Every built-in scenario on the simulator, one table.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    steps: usize,
    result: &'static str,
    millis: u128,
    detail: String,
}

pub(crate) fn run(json: bool) -> Result<ExitCode> {
    let scenarios = brick_scenarios::builtin()?;
    let mut rows = Vec::new();
    let mut reports = Vec::new();
    for scn in &scenarios {
        let start = Instant::now();
        let row = match brick_scenarios::run(scn, None) {
            Ok((outcome, _lab)) => {
                let detail = outcome
                    .failure
                    .as_ref()
                    .map(|f| {
                        format!(
                            "step {}: {}",
                            f.step,
                            f.message.lines().next().unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                if !outcome.passed() {
                    reports.push(outcome.failure_report(&format!(
                        "brick sim materialize {} --out /tmp/{}",
                        scn.name, scn.name
                    )));
                }
                Row {
                    scenario: scn.name.clone(),
                    steps: outcome.steps.len(),
                    result: if outcome.passed() { "pass" } else { "FAIL" },
                    millis: start.elapsed().as_millis(),
                    detail,
                }
            }
            Err(err) => Row {
                scenario: scn.name.clone(),
                steps: 0,
                result: "ERROR",
                millis: start.elapsed().as_millis(),
                detail: err.to_string(),
            },
        };
        rows.push(row);
    }
    let failed = rows.iter().filter(|r| r.result != "pass").count();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<36} {:>5}  {:<6} {:>7}  detail",
            "scenario", "steps", "result", "ms"
        );
        for r in &rows {
            println!(
                "{:<36} {:>5}  {:<6} {:>7}  {}",
                r.scenario, r.steps, r.result, r.millis, r.detail
            );
        }
        println!("{} passed, {} failed", rows.len() - failed, failed);
        for report in &reports {
            eprintln!("\n{report}");
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
