//! The default property run: generated attach/detach/array/fault sequences on the simulator,
//! every invariant checked after every transition (see `brick_harness::machine`).
//!
//! `BRICK_SEED=<n>` replays a run, `PROPTEST_CASES=<n>` changes the case count,
//! `PROPTEST_VERBOSE=1` prints a state summary after every step.

use brick_harness::machine::{
    ExploreOptions, Machine, MachineProtocol, explore, failure_report, write_replay,
};
use proptest_state_machine::prop_state_machine;

/// The seed of the default run (fixed, so CI is deterministic; `BRICK_SEED` overrides it).
const DEFAULT_SEED: u64 = 0x6272_6963_6b04;
/// Cases per protocol in the default run.
const DEFAULT_CASES: u32 = 256;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

fn run(protocol: MachineProtocol) {
    let seed = env_u64("BRICK_SEED").unwrap_or(DEFAULT_SEED);
    let cases = env_u64("PROPTEST_CASES")
        .and_then(|c| u32::try_from(c).ok())
        .unwrap_or(DEFAULT_CASES);
    eprintln!(
        "property run: protocol {}, {cases} cases, seed {seed} (BRICK_SEED={seed} replays it); \
         each case draws its topology and its fault classes (swarm)",
        protocol.name()
    );
    let opts = ExploreOptions::new(protocol, cases, seed);
    let report = explore(&opts, &mut |_| {});
    eprintln!(
        "{} cases, {} transitions in {:.1?} ({:.0} cases/s, {:.0} transitions/s)",
        report.cases,
        report.steps,
        report.elapsed,
        report.cases_per_second(),
        report.steps_per_second()
    );
    if report.failure.is_some() {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("property");
        let path = write_replay(&report, &dir);
        panic!("{}", failure_report(&report, path.as_deref()));
    }
    assert_eq!(report.cases, cases, "every case must run");
}

#[test]
fn iscsi_property_run() {
    run(MachineProtocol::Iscsi);
}

#[test]
fn fc_property_run() {
    run(MachineProtocol::Fc);
}

#[test]
fn nvmeof_property_run() {
    run(MachineProtocol::Nvmeof);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let opts = ExploreOptions {
        verbose: false,
        ..ExploreOptions::new(MachineProtocol::Iscsi, 12, 42)
    };
    let a = explore(&opts, &mut |_| {});
    let b = explore(&opts, &mut |_| {});
    assert!(a.steps > 12, "the cases ran transitions");
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.digest, b.digest, "two runs of seed 42 differ");
    let c = explore(
        &ExploreOptions {
            seed: 43,
            ..opts.clone()
        },
        &mut |_| {},
    );
    assert_ne!(
        a.digest, c.digest,
        "different seeds should draw different cases"
    );
}

#[test]
fn the_same_seed_gives_the_same_nvmeof_trace() {
    let opts = ExploreOptions {
        verbose: false,
        ..ExploreOptions::new(MachineProtocol::Nvmeof, 12, 42)
    };
    let a = explore(&opts, &mut |_| {});
    let b = explore(&opts, &mut |_| {});
    assert!(a.steps > 12, "the cases ran transitions");
    assert!(a.failure.is_none(), "{}", failure_report(&a, None));
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.digest, b.digest, "two NVMe-oF runs of seed 42 differ");
}

prop_state_machine! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 8,
        failure_persistence: None,
        .. proptest::test_runner::Config::default()
    })]

    /// The same model through proptest-state-machine's own driver.
    #[test]
    fn state_machine_test_binding(sequential 1..12 => Machine);
}
