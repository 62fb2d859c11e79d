//! `brick check`: the main job. Every built-in scenario on the simulator, then a property run
//! per explored protocol, in one table; exit 1 if any row fails.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;
use brick_harness::machine::{
    ExploreOptions, MachineProtocol, explore, failure_report, write_replay,
};
use serde::Serialize;

/// Property cases per protocol in `brick check` (about a minute in a release build,
/// together with the catalogue); `brick explore` runs longer.
const PROPERTY_CASES: u32 = 1000;
/// The seed of `brick check`'s property run (`BRICK_SEED` overrides it).
const PROPERTY_SEED: u64 = 0x0063_6865_636b;

#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    protocol: String,
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
                        "brick scenario run {}  (host trees: brick sim materialize {} --out /tmp/{})",
                        scn.name, scn.name, scn.name
                    )));
                }
                Row {
                    scenario: scn.name.clone(),
                    protocol: scn.protocol.as_str().to_owned(),
                    steps: outcome.steps.len(),
                    result: if outcome.passed() { "pass" } else { "FAIL" },
                    millis: start.elapsed().as_millis(),
                    detail,
                }
            }
            Err(err) => Row {
                scenario: scn.name.clone(),
                protocol: scn.protocol.as_str().to_owned(),
                steps: 0,
                result: "ERROR",
                millis: start.elapsed().as_millis(),
                detail: err.to_string(),
            },
        };
        rows.push(row);
    }
    // The property machine: generated sequences with faults, every invariant after every step.
    let seed = std::env::var("BRICK_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(PROPERTY_SEED);
    for protocol in MachineProtocol::ALL {
        let opts = ExploreOptions {
            verbose: false,
            ..ExploreOptions::new(*protocol, PROPERTY_CASES, seed)
        };
        let report =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                explore(&opts, &mut |_| {})
            });
        let passed = report.failure.is_none();
        if !passed {
            let dir = std::env::temp_dir().join("brick-replays");
            let path = write_replay(&report, &dir);
            reports.push(failure_report(&report, path.as_deref()));
        }
        rows.push(Row {
            scenario: format!("property:{} ({} cases)", protocol.name(), report.cases),
            protocol: protocol.name().to_owned(),
            steps: usize::try_from(report.steps).unwrap_or(usize::MAX),
            result: if passed { "pass" } else { "FAIL" },
            millis: report.elapsed.as_millis(),
            detail: match &report.failure {
                None => format!("seed {seed}"),
                Some(cx) => format!(
                    "seed {seed}: {}",
                    cx.case
                        .failure
                        .as_ref()
                        .map(|f| f.message.lines().next().unwrap_or_default().to_owned())
                        .unwrap_or_default()
                ),
            },
        });
    }
    let failed = rows.iter().filter(|r| r.result != "pass").count();
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        outln!(
            "{:<40} {:<8} {:>5}  {:<6} {:>7}  detail",
            "scenario",
            "protocol",
            "steps",
            "result",
            "ms"
        );
        for r in &rows {
            outln!(
                "{:<40} {:<8} {:>5}  {:<6} {:>7}  {}",
                r.scenario,
                r.protocol,
                r.steps,
                r.result,
                r.millis,
                r.detail
            );
        }
        outln!("{} passed, {} failed", rows.len() - failed, failed);
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
