//! The planted-bug catalogue against the property machine: every mutant must be caught
//! within the default case count, and the unmutated connectors must pass. Needs the
//! `mutants` feature: `cargo test -p brick-harness --features mutants --test mutants`.
#![cfg(feature = "mutants")]

use std::sync::Mutex;

use brick_connectors::mutants::{self, Mutant};
use brick_harness::machine::{ExploreOptions, MachineProtocol, explore, run_case};

/// Same seed and case count as the default property run.
const SEED: u64 = 0x6272_6963_6b04;
const CASES: u32 = 256;

#[derive(Debug, Clone)]
struct Row {
    mutant: &'static str,
    caught: bool,
    cases: u32,
    shrunk: usize,
    why: String,
    /// Running the shrunk transitions again on a fresh lab breaks the same invariant at the
    /// same step (what the printed replay commands rely on).
    replays: bool,
}

/// The machine a mutant is hunted with: `fc-*` mutants live in the FC connector, `nvme-*`
/// ones in the NVMe-oF connector.
fn protocol_of(m: Option<Mutant>) -> MachineProtocol {
    match m {
        Some(m) if m.name().starts_with("fc-") => MachineProtocol::Fc,
        Some(m) if m.name().starts_with("nvme-") => MachineProtocol::Nvmeof,
        _ => MachineProtocol::Iscsi,
    }
}

fn hunt(m: Option<Mutant>) -> Row {
    mutants::set(m);
    let opts = ExploreOptions {
        verbose: false,
        ..ExploreOptions::new(protocol_of(m), CASES, SEED)
    };
    let report = explore(&opts, &mut |_| {});
    let replays = report.failure.as_ref().is_some_and(|cx| {
        let again = run_case(&cx.case.initial, &cx.case.transitions, false);
        match (&again.failure, &cx.case.failure) {
            (Some(a), Some(b)) => a.step == b.step && a.message == b.message,
            _ => false,
        }
    });
    mutants::set(None);
    let (caught, shrunk, why) = match &report.failure {
        Some(cx) => (
            true,
            cx.case.steps.len(),
            cx.case
                .failure
                .as_ref()
                .map(|f| f.message.lines().next().unwrap_or_default().to_owned())
                .unwrap_or_default(),
        ),
        None => (false, 0, String::new()),
    };
    if std::env::var("BRICK_MUTANT_TRACES").is_ok()
        && let Some(cx) = &report.failure
    {
        eprintln!(
            "--- {} ---\n{}",
            m.map_or("none", Mutant::name),
            cx.case.trace()
        );
    }
    Row {
        mutant: m.map_or("(unmutated)", Mutant::name),
        caught,
        cases: report
            .failure
            .as_ref()
            .map_or(report.cases, |c| c.found_at_case),
        shrunk,
        why,
        replays,
    }
}

#[test]
fn every_mutant_is_caught_and_the_unmutated_connectors_pass() {
    // `BRICK_MUTANTS=a,b` hunts only those (while working on a mutant or on the model).
    let only: Option<Vec<String>> = std::env::var("BRICK_MUTANTS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect());
    let todo = Mutex::new(
        Mutant::ALL
            .iter()
            .copied()
            .filter(|m| {
                only.as_ref()
                    .is_none_or(|o| o.iter().any(|n| n == m.name()))
            })
            .collect::<Vec<_>>(),
    );
    let rows = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            std::thread::Builder::new()
                .stack_size(32 << 20)
                .spawn_scoped(s, || {
                    loop {
                        let next = todo.lock().unwrap().pop();
                        let Some(m) = next else { break };
                        let row = hunt(Some(m));
                        rows.lock().unwrap().push(row);
                    }
                })
                .expect("a worker thread");
        }
    });
    let mut rows = rows.into_inner().unwrap();
    rows.sort_by_key(|r| r.mutant);
    let clean = hunt(None);
    println!(
        "{:<32} {:<7} {:>6} {:>7}  first broken invariant",
        "mutant", "caught", "cases", "shrunk"
    );
    for r in &rows {
        println!(
            "{:<32} {:<7} {:>6} {:>7}  {}",
            r.mutant,
            if r.caught { "yes" } else { "NO" },
            r.cases,
            if r.caught {
                r.shrunk.to_string()
            } else {
                "-".into()
            },
            r.why
        );
    }
    println!(
        "{:<32} {:<7} {:>6} {:>7}  {}",
        clean.mutant,
        if clean.caught { "FAILED" } else { "passes" },
        clean.cases,
        "-",
        clean.why
    );
    let mut lens: Vec<usize> = rows.iter().filter(|r| r.caught).map(|r| r.shrunk).collect();
    lens.sort_unstable();
    let median = lens.get(lens.len() / 2).copied().unwrap_or(usize::MAX);
    println!("median shrunk counterexample: {median} transitions");
    assert!(
        !clean.caught,
        "the unmutated connectors must pass: {}",
        clean.why
    );
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.caught)
        .map(|r| r.mutant)
        .collect();
    assert!(
        missed.is_empty(),
        "mutants not caught in {CASES} cases: {missed:?}"
    );
    let unreplayable: Vec<&str> = rows
        .iter()
        .filter(|r| r.caught && !r.replays)
        .map(|r| r.mutant)
        .collect();
    assert!(
        unreplayable.is_empty(),
        "shrunk counterexamples that do not break the same way when run again: {unreplayable:?}"
    );
    assert!(
        median <= 6,
        "median shrunk counterexample is {median} transitions (> 6)"
    );
}
