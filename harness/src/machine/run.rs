//! Running the machine: one case, and many cases with shrinking ([`explore`]), with the
//! reports a person reads (trace, replay scenario, commands).

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree as _};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use proptest_state_machine::ReferenceStateMachine as _;

use crate::machine::model::{FcModel, MachineProtocol, Model, ModelState, Transition};
use crate::machine::nvme::NvmeModel;
use crate::machine::sut::{StepFailure, StepRecord, Sut};
use crate::machine::trace::scenario_toml;

/// The transitions of one case: at most this many.
pub const MAX_TRANSITIONS: usize = 24;

/// A whole case: what ran and, if it broke, where and why.
#[derive(Debug, Clone)]
pub struct CaseRun {
    /// The initial state (topology, fault mix, simulator seed).
    pub initial: ModelState,
    /// The transitions, in order.
    pub transitions: Vec<Transition>,
    /// One record per transition that ran.
    pub steps: Vec<StepView>,
    /// The broken invariant, if any.
    pub failure: Option<CaseFailure>,
}

/// One step as reported.
#[derive(Debug, Clone)]
pub struct StepView {
    /// `attach v0 on host-1`.
    pub what: String,
    /// What it returned.
    pub result: String,
    /// The violations the checks reported after it.
    pub violations: Vec<String>,
    /// The model's state summary after it.
    pub summary: String,
}

/// Where and why a case broke.
#[derive(Debug, Clone)]
pub struct CaseFailure {
    /// 1-based index of the failing transition.
    pub step: usize,
    /// The broken invariant.
    pub message: String,
    /// The connector's side effects during that step, per host.
    pub journal: Vec<(String, Vec<String>)>,
}

fn view(r: StepRecord) -> StepView {
    StepView {
        what: r.what,
        result: r.result,
        violations: r.violations,
        summary: r.summary,
    }
}

/// Runs one case on a fresh lab; `verbose` prints a state summary after every step.
pub fn run_case(initial: &ModelState, transitions: &[Transition], verbose: bool) -> CaseRun {
    let mut run = CaseRun {
        initial: initial.clone(),
        transitions: transitions.to_vec(),
        steps: Vec::new(),
        failure: None,
    };
    let mut sut = match Sut::new(initial) {
        Ok(s) => s,
        Err(message) => {
            run.failure = Some(CaseFailure {
                step: 0,
                message,
                journal: Vec::new(),
            });
            return run;
        }
    };
    let mut state = initial.clone();
    for (i, t) in transitions.iter().enumerate() {
        state = state.step(t);
        match sut.apply(&state, t) {
            Ok(r) => {
                if verbose {
                    eprintln!(
                        "  {:>2}. {} -> {}\n      {}",
                        i + 1,
                        r.what,
                        r.result,
                        r.summary
                    );
                }
                run.steps.push(view(r));
            }
            Err((r, StepFailure { message, journal })) => {
                if verbose {
                    eprintln!(
                        "  {:>2}. {} -> {}\n      FAILED: {message}",
                        i + 1,
                        r.what,
                        r.result
                    );
                }
                run.steps.push(view(r));
                run.failure = Some(CaseFailure {
                    step: i + 1,
                    message,
                    journal,
                });
                break;
            }
        }
    }
    drop(sut);
    run
}

impl CaseRun {
    /// The trace a person reads: the lab, one line per transition with its result and the
    /// violations the checks reported, then the failure and the connector's journal of the
    /// failing step.
    pub fn trace(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "lab: {} (simulator seed {}), fault classes: {}",
            self.initial.topology, self.initial.world_seed, self.initial.faults
        );
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {} -> {}", i + 1, s.what, s.result);
            if !s.violations.is_empty() {
                for v in &s.violations {
                    let _ = writeln!(out, "        reported: {v}");
                }
            }
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(out, "broken at step {}: {}", f.step, f.message);
            for (host, lines) in &f.journal {
                let _ = writeln!(out, "connector journal on {host} during step {}:", f.step);
                for l in lines {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
        out
    }

    /// The steps as a scenario file (`brick scenario run FILE` replays it).
    pub fn scenario(&self, name: &str) -> String {
        scenario_toml(name, &self.initial, &self.transitions[..self.steps.len()])
    }
}

/// What [`explore`] does.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// The protocol.
    pub protocol: MachineProtocol,
    /// Cases to generate.
    pub cases: u32,
    /// The seed of the whole run (same seed, same cases).
    pub seed: u64,
    /// Print a state summary after every step (`PROPTEST_VERBOSE=1`).
    pub verbose: bool,
    /// Shrink a failure (off: report the first failing case as found).
    pub shrink: bool,
}

impl ExploreOptions {
    /// `cases` cases of `protocol` from `seed`; verbose when `PROPTEST_VERBOSE=1`.
    pub fn new(protocol: MachineProtocol, cases: u32, seed: u64) -> Self {
        Self {
            protocol,
            cases,
            seed,
            verbose: std::env::var("PROPTEST_VERBOSE").is_ok_and(|v| v.trim() == "1"),
            shrink: true,
        }
    }
}

/// Progress, reported after every generated case.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Cases run (before shrinking).
    pub cases: u32,
    /// Transitions applied so far (shrinking included).
    pub steps: u64,
    /// Time since the start.
    pub elapsed: Duration,
    /// Failures seen (0 or 1: the run stops at the first and shrinks it).
    pub failures: u32,
}

/// A shrunk counterexample.
#[derive(Debug, Clone)]
pub struct Counterexample {
    /// The case number (1-based) where the first failure appeared.
    pub found_at_case: u32,
    /// The minimal case, re-run.
    pub case: CaseRun,
}

/// The result of [`explore`].
#[derive(Debug, Clone)]
pub struct ExploreReport {
    /// The run's seed.
    pub seed: u64,
    /// Cases generated (until the first failure, or all of them).
    pub cases: u32,
    /// Transitions applied (shrinking included).
    pub steps: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// A digest of every step line of every case (the determinism check compares two runs).
    pub digest: u64,
    /// The shrunk failure, if one was found.
    pub failure: Option<Counterexample>,
}

impl ExploreReport {
    /// Generated cases per second.
    pub fn cases_per_second(&self) -> f64 {
        f64::from(self.cases) / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Transitions per second.
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// 32 seed bytes from a `u64` (SplitMix64), for proptest's ChaCha RNG.
fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut x = seed;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    out
}

fn fnv(hash: &mut u64, text: &str) {
    for b in text.bytes() {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

/// Generates `opts.cases` cases from `opts.seed`, runs each on a fresh lab with every
/// invariant checked after every transition, and shrinks the first failure. `progress` is
/// called after every generated case.
pub fn explore(opts: &ExploreOptions, progress: &mut dyn FnMut(&Progress)) -> ExploreReport {
    let start = Instant::now();
    let config = Config {
        cases: opts.cases,
        failure_persistence: None,
        max_shrink_iters: if opts.shrink { 4096 } else { 0 },
        max_global_rejects: 100_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(opts.seed)),
    );
    let strategy = match opts.protocol {
        MachineProtocol::Iscsi => Model::sequential_strategy(1..=MAX_TRANSITIONS).boxed(),
        MachineProtocol::Fc => FcModel::sequential_strategy(1..=MAX_TRANSITIONS).boxed(),
        MachineProtocol::Nvmeof => NvmeModel::sequential_strategy(1..=MAX_TRANSITIONS).boxed(),
    };
    let cases = Cell::new(0u32);
    let steps = Cell::new(0u64);
    let failing = Cell::new(false);
    let found_at = Cell::new(0u32);
    let digest = Cell::new(0xcbf2_9ce4_8422_2325u64);
    let verbose = opts.verbose;
    let progress = RefCell::new(progress);
    let result = runner.run(&strategy, |(initial, transitions, seen)| {
        if !failing.get() {
            cases.set(cases.get() + 1);
            if verbose {
                eprintln!(
                    "case {}: {} | faults: {} | {} transitions",
                    cases.get(),
                    initial.topology,
                    initial.faults,
                    transitions.len()
                );
            }
        }
        let run = run_case(&initial, &transitions, verbose);
        if let Some(seen) = seen {
            seen.store(run.steps.len(), std::sync::atomic::Ordering::SeqCst);
        }
        steps.set(steps.get() + run.steps.len() as u64);
        if !failing.get() {
            let mut d = digest.get();
            for s in &run.steps {
                fnv(&mut d, &s.what);
                fnv(&mut d, &s.result);
                for v in &s.violations {
                    fnv(&mut d, v);
                }
            }
            digest.set(d);
            (progress.borrow_mut())(&Progress {
                cases: cases.get(),
                steps: steps.get(),
                elapsed: start.elapsed(),
                failures: u32::from(run.failure.is_some()),
            });
        }
        match run.failure {
            None => Ok(()),
            Some(f) => {
                if !failing.get() {
                    failing.set(true);
                    found_at.set(cases.get());
                }
                Err(TestCaseError::fail(f.message))
            }
        }
    });
    let failure = match result {
        Err(TestError::Fail(_, (initial, transitions, _))) => {
            let case = run_case(&initial, &transitions, false);
            Some(Counterexample {
                found_at_case: found_at.get(),
                case,
            })
        }
        Err(TestError::Abort(reason)) => Some(Counterexample {
            found_at_case: cases.get(),
            case: CaseRun {
                initial: first_state(opts.seed),
                transitions: Vec::new(),
                steps: Vec::new(),
                failure: Some(CaseFailure {
                    step: 0,
                    message: format!("the run aborted: {reason}"),
                    journal: Vec::new(),
                }),
            },
        }),
        Ok(()) => None,
    };
    ExploreReport {
        seed: opts.seed,
        cases: cases.get(),
        steps: steps.get(),
        elapsed: start.elapsed(),
        digest: digest.get(),
        failure,
    }
}

/// The first initial state drawn from `seed` (for reports that have no case).
fn first_state(seed: u64) -> ModelState {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(seed)),
    );
    let tree = Model::init_state().new_tree(&mut runner);
    match tree {
        Ok(t) => t.current(),
        Err(_) => {
            // Unreachable in practice: the initial-state strategy never rejects.
            let mut r = TestRunner::deterministic();
            let mut t = Model::init_state().new_tree(&mut r);
            loop {
                if let Ok(t) = t {
                    return t.current();
                }
                t = Model::init_state().new_tree(&mut r);
            }
        }
    }
}

/// The report printed when a property run fails: the trace, where the replay scenario was
/// written, and the commands that replay it.
pub fn failure_report(report: &ExploreReport, scenario_path: Option<&std::path::Path>) -> String {
    let mut out = String::new();
    let Some(cx) = &report.failure else {
        return out;
    };
    let _ = writeln!(
        out,
        "property run failed (seed {}): found at case {}, shrunk to {} transition(s)\n",
        report.seed,
        cx.found_at_case,
        cx.case.steps.len()
    );
    out.push_str(&cx.case.trace());
    let _ = writeln!(out);
    if let Some(p) = scenario_path {
        let _ = writeln!(out, "replay scenario written to {}", p.display());
        let _ = writeln!(out, "replay: brick scenario run {}", p.display());
    }
    let protocol = cx.case.initial.topology.protocol.name();
    let _ = writeln!(
        out,
        "replay: BRICK_SEED={} cargo test -p brick-harness --test property {protocol}_property_run",
        report.seed
    );
    let _ = writeln!(
        out,
        "replay: brick explore --protocol {protocol} --cases {} --seed {}",
        report.cases.max(1),
        report.seed
    );
    out
}

/// Writes the counterexample's replay scenario under `dir` (named after the seed); returns
/// its path.
pub fn write_replay(report: &ExploreReport, dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let cx = report.failure.as_ref()?;
    let name = format!("property-seed-{}", report.seed);
    let path = dir.join(format!("{name}.toml"));
    std::fs::create_dir_all(dir).ok()?;
    std::fs::write(&path, cx.case.scenario(&name)).ok()?;
    Some(path)
}
