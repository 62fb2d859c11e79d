//! `brick explore`: long property runs (generated attach/detach/array/fault sequences on the
//! simulator, every invariant after every step), optionally against a planted bug.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use brick_harness::machine::{
    ExploreOptions, MachineProtocol, Progress, explore, failure_report, write_replay,
};

/// Arguments of `brick explore`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExploreArgs {
    /// The protocol to explore.
    #[arg(long, default_value = "iscsi")]
    protocol: String,
    /// Cases to generate.
    #[arg(long, default_value_t = 1000)]
    cases: u32,
    /// Seed of the run (default: drawn from the clock and printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Run against a planted bug (needs a build with `--features mutants`).
    #[arg(long)]
    mutant: Option<String>,
    /// Print the planted bugs, one a line (needs `--features mutants`).
    #[arg(long)]
    list_mutants: bool,
    /// Where the replay scenario of a failure is written.
    #[arg(long, default_value = "brick-replays")]
    out: PathBuf,
    /// Report the first failing case as found, without shrinking it.
    #[arg(long)]
    no_shrink: bool,
}

#[cfg(feature = "mutants")]
fn mutant_names() -> Result<Vec<&'static str>> {
    Ok(brick_connectors::mutants::Mutant::ALL
        .iter()
        .map(|m| m.name())
        .collect())
}

#[cfg(not(feature = "mutants"))]
fn mutant_names() -> Result<Vec<&'static str>> {
    bail!(
        "this brick was built without planted bugs: rebuild with `--features mutants` (e.g. `cargo run --features mutants -- explore --list-mutants`)"
    )
}

#[cfg(feature = "mutants")]
fn set_mutant(name: Option<&str>) -> Result<()> {
    use brick_connectors::mutants::{Mutant, set};
    match name {
        None => set(None),
        Some(n) => match Mutant::from_name(n) {
            Some(m) => set(Some(m)),
            None => bail!("unknown mutant `{n}`; `brick explore --list-mutants` lists them"),
        },
    }
    Ok(())
}

#[cfg(not(feature = "mutants"))]
fn set_mutant(name: Option<&str>) -> Result<()> {
    match name {
        None => Ok(()),
        Some(_) => mutant_names().map(|_| ()),
    }
}

fn seed_from_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() ^ u64::from(d.subsec_nanos()))
        .unwrap_or(1)
}

pub(crate) fn run(args: ExploreArgs) -> Result<ExitCode> {
    if args.list_mutants {
        for name in mutant_names()? {
            outln!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(protocol) = MachineProtocol::from_name(&args.protocol) else {
        let known: Vec<&str> = MachineProtocol::ALL.iter().map(|p| p.name()).collect();
        bail!(
            "protocol `{}` is not explored yet (known: {})",
            args.protocol,
            known.join(", ")
        );
    };
    set_mutant(args.mutant.as_deref())?;
    let seed = args.seed.unwrap_or_else(seed_from_clock);
    outln!(
        "exploring {} with {} cases, seed {seed}{}; each case draws its topology and fault classes (swarm)",
        protocol.name(),
        args.cases,
        args.mutant
            .as_deref()
            .map(|m| format!(", mutant {m}"))
            .unwrap_or_default()
    );
    let opts = ExploreOptions {
        shrink: !args.no_shrink,
        ..ExploreOptions::new(protocol, args.cases, seed)
    };
    let tty = std::io::stderr().is_terminal();
    let total = args.cases;
    let mut last_line = 0u32;
    let mut show = |p: &Progress| {
        let rate = p.steps as f64 / p.elapsed.as_secs_f64().max(1e-9);
        if tty {
            eprint!(
                "\r{:>6}/{total} cases, {:>8.0} steps/s, {} failure(s)   ",
                p.cases, rate, p.failures
            );
            let _ = std::io::stderr().flush();
        } else if p.cases >= last_line + (total / 10).max(1) || p.failures > 0 || p.cases == total {
            last_line = p.cases;
            eprintln!(
                "{} of {total} cases, {rate:.0} steps/s, {} failure(s)",
                p.cases, p.failures
            );
        }
    };
    let report = explore(&opts, &mut show);
    if tty {
        eprintln!();
    }
    outln!(
        "{} cases, {} transitions in {:.1?} ({:.1} cases/s, {:.0} transitions/s)",
        report.cases,
        report.steps,
        report.elapsed,
        report.cases_per_second(),
        report.steps_per_second()
    );
    if report.failure.is_some() {
        let path = write_replay(&report, &args.out);
        out!("{}", failure_report(&report, path.as_deref()));
        if let Some(m) = &args.mutant {
            // The planted bug must be active in the replay too.
            outln!(
                "the replays need the mutant (a `--features mutants` build): add `--mutant {m}` \
                 to brick explore, or run the scenario with BRICK_MUTANT={m}"
            );
        }
        outln!();
        return Ok(ExitCode::from(1));
    }
    outln!("no invariant broken");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use brick_harness::machine::{FaultMix, HostKind, ModelState, Topology, Transition, run_case};

    #[test]
    fn replay_scenarios_parse_with_the_scenario_schema() {
        // A hand-made case, written as a scenario and parsed back with the real schema.
        let topology = Topology {
            protocol: MachineProtocol::Iscsi,
            hosts: 1,
            host_kind: HostKind::Single,
            portals: 1,
            shared_target: true,
            reuse_identity: false,
            flat_addressing: false,
            first_lun: 1,
            recycle_iqns: false,
            fc: None,
            nvme: None,
        };
        let initial = ModelState::new(topology, FaultMix::default(), 9);
        let transitions = vec![
            Transition::Create,
            Transition::Map { vol: 0, host: 0 },
            Transition::Attach {
                vol: 0,
                host: 0,
                fault: None,
            },
            Transition::Detach {
                vol: 0,
                host: 0,
                force: true,
                device_info: false,
                fault: None,
            },
            Transition::Delete { vol: 0 },
        ];
        let case = run_case(&initial, &transitions, false);
        assert!(case.failure.is_none(), "{}", case.trace());
        let text = case.scenario("replay-test");
        let scn = brick_scenarios::parse("replay-test.toml", &text).expect("parses");
        assert_eq!(scn.name, "replay-test");
        assert_eq!(scn.steps.len(), 5);
        brick_scenarios::validate(&scn).expect("validates");
    }

    #[test]
    fn nvmeof_replay_scenarios_parse_with_the_scenario_schema() {
        // Two ports, native multipath, a shared subsystem, a port going down and back.
        let topology = Topology {
            protocol: MachineProtocol::Nvmeof,
            hosts: 1,
            host_kind: HostKind::Multipath,
            portals: 2,
            shared_target: true,
            reuse_identity: false,
            flat_addressing: false,
            first_lun: 1,
            recycle_iqns: false,
            fc: None,
            nvme: Some(brick_harness::machine::NvmeLayout {
                native_multipath: true,
                aen: true,
            }),
        };
        let faults = FaultMix {
            path_flap: true,
            ..FaultMix::default()
        };
        let initial = ModelState::new(topology, faults, 9);
        let transitions = vec![
            Transition::Create,
            Transition::Map { vol: 0, host: 0 },
            Transition::Attach {
                vol: 0,
                host: 0,
                fault: None,
            },
            Transition::PathDown { host: 0, portal: 1 },
            Transition::PathUp { host: 0, portal: 1 },
            Transition::Detach {
                vol: 0,
                host: 0,
                force: false,
                device_info: true,
                fault: None,
            },
        ];
        let case = run_case(&initial, &transitions, false);
        assert!(case.failure.is_none(), "{}", case.trace());
        let text = case.scenario("nvmeof-replay-test");
        assert!(text.contains("nvme-port-down"), "{text}");
        let scn = brick_scenarios::parse("nvmeof-replay-test.toml", &text).expect("parses");
        assert_eq!(scn.protocol.as_str(), "nvmeof");
        assert_eq!(scn.steps.len(), 6);
        brick_scenarios::validate(&scn).expect("validates");
    }

    #[test]
    fn fc_replay_scenarios_parse_with_the_scenario_schema() {
        // Two HBAs on two fabrics, multipath, LUNs from 256, and a leaked detach.
        let fc = brick_harness::machine::FcLayout {
            hbas: 2,
            ports: 2,
            two_fabrics: true,
        };
        let topology = Topology {
            protocol: MachineProtocol::Fc,
            hosts: 1,
            host_kind: HostKind::Multipath,
            portals: fc.paths().len(),
            shared_target: true,
            reuse_identity: false,
            flat_addressing: false,
            first_lun: 256,
            recycle_iqns: false,
            fc: Some(fc),
            nvme: None,
        };
        let initial = ModelState::new(topology, FaultMix::default(), 9);
        let transitions = vec![
            Transition::Create,
            Transition::Map { vol: 0, host: 0 },
            Transition::Attach {
                vol: 0,
                host: 0,
                fault: None,
            },
            Transition::Unmap { vol: 0, host: 0 },
        ];
        let case = run_case(&initial, &transitions, false);
        assert!(case.failure.is_none(), "{}", case.trace());
        let text = case.scenario("fc-replay-test");
        assert!(text.contains("first_lun = 256"), "{text}");
        let scn = brick_scenarios::parse("fc-replay-test.toml", &text).expect("parses");
        assert_eq!(scn.steps.len(), 4);
        assert_eq!(scn.hosts.first().map(|h| h.hbas.len()), Some(2), "{text}");
        brick_scenarios::validate(&scn).expect("validates");
    }

    /// Plays `transitions` on the machine (it must pass), writes the replay scenario, and
    /// runs that scenario on the simulator: it must pass too, so the replay command
    /// reproduces what the machine saw.
    fn replays_green(initial: &ModelState, transitions: &[Transition], must_contain: &[&str]) {
        let case = run_case(initial, transitions, false);
        assert!(case.failure.is_none(), "{}", case.trace());
        let text = case.scenario("replay-roundtrip");
        for needle in must_contain {
            assert!(text.contains(needle), "no {needle:?} in\n{text}");
        }
        let scn = brick_scenarios::parse("replay-roundtrip.toml", &text).expect("parses");
        let (outcome, _lab) = brick_scenarios::run(&scn, None).expect("runs");
        assert!(
            outcome.failure.is_none(),
            "the replay failed: {:?}\n{text}",
            outcome.failure
        );
    }

    #[test]
    fn recycled_iqn_and_lost_remove_events_replay() {
        // A leaked detach, the volume deleted, a new volume on the recycled IQN with the old
        // identity (reuse-on-LUN); then a detach whose udev `remove` events are lost.
        let topology = Topology {
            protocol: MachineProtocol::Iscsi,
            hosts: 1,
            host_kind: HostKind::Single,
            portals: 1,
            shared_target: false,
            reuse_identity: true,
            flat_addressing: false,
            first_lun: 1,
            recycle_iqns: true,
            fc: None,
            nvme: None,
        };
        let faults = FaultMix {
            udev_lost_remove: true,
            ..FaultMix::default()
        };
        let initial = ModelState::new(topology, faults, 3);
        let attach = |vol| Transition::Attach {
            vol,
            host: 0,
            fault: None,
        };
        let transitions = vec![
            Transition::Create,
            Transition::Map { vol: 0, host: 0 },
            attach(0),
            Transition::Delete { vol: 0 },
            Transition::Create,
            Transition::Map { vol: 1, host: 0 },
            Transition::Detach {
                vol: 0,
                host: 0,
                force: true,
                device_info: true,
                fault: Some(brick_harness::machine::DetachFault::UdevLostRemove),
            },
        ];
        let state = transitions.iter().fold(initial.clone(), |s, t| s.step(t));
        assert_eq!(state.volumes[1].slot, 0, "v1 gets v0's target back");
        assert!(state.has_stale_link(0), "the lost removes leave links");
        replays_green(
            &initial,
            &transitions,
            &["array_name = \"v0\"", "udev-lost-remove"],
        );
    }

    #[test]
    fn fc_hba_link_loss_replays() {
        // Two HBAs on two fabrics, one array port on each: two paths; HBA 1 loses its link.
        let fc = brick_harness::machine::FcLayout {
            hbas: 2,
            ports: 2,
            two_fabrics: true,
        };
        let topology = Topology {
            protocol: MachineProtocol::Fc,
            hosts: 1,
            host_kind: HostKind::Multipath,
            portals: fc.paths().len(),
            shared_target: true,
            reuse_identity: false,
            flat_addressing: false,
            first_lun: 1,
            recycle_iqns: false,
            fc: Some(fc),
            nvme: None,
        };
        let faults = FaultMix {
            path_flap: true,
            ..FaultMix::default()
        };
        let initial = ModelState::new(topology, faults, 5);
        let transitions = vec![
            Transition::Create,
            Transition::Map { vol: 0, host: 0 },
            Transition::Attach {
                vol: 0,
                host: 0,
                fault: None,
            },
            Transition::PathDown { host: 0, portal: 1 },
            Transition::Detach {
                vol: 0,
                host: 0,
                force: false,
                device_info: true,
                fault: None,
            },
            Transition::PathUp { host: 0, portal: 1 },
        ];
        let up = transitions[..3]
            .iter()
            .fold(initial.clone(), |s, t| s.step(t));
        assert_eq!(up.devices.len(), 2, "one disk per path");
        let down = up.step(&transitions[3]);
        assert_eq!(
            down.devices.len(),
            1,
            "the HBA's disk went with dev_loss_tmo"
        );
        replays_green(&initial, &transitions, &["hba-linkdown"]);
    }

    #[test]
    fn nvmeof_race_on_an_array_without_aen_replays() {
        // A shared subsystem on an array without AENs: v1's namespace races v0's connect;
        // v0 is then unmapped (the host never hears of it) and both are detached.
        let topology = Topology {
            protocol: MachineProtocol::Nvmeof,
            hosts: 1,
            host_kind: HostKind::Single,
            portals: 1,
            shared_target: true,
            reuse_identity: false,
            flat_addressing: false,
            first_lun: 1,
            recycle_iqns: false,
            fc: None,
            nvme: Some(brick_harness::machine::NvmeLayout {
                native_multipath: true,
                aen: false,
            }),
        };
        let faults = FaultMix {
            namespace_appears: true,
            ..FaultMix::default()
        };
        let initial = ModelState::new(topology, faults, 11);
        let attach = |vol, fault| Transition::Attach {
            vol,
            host: 0,
            fault,
        };
        let detach = |vol| Transition::Detach {
            vol,
            host: 0,
            force: false,
            device_info: true,
            fault: None,
        };
        let transitions = vec![
            Transition::Create,
            Transition::Map { vol: 0, host: 0 },
            Transition::Create,
            attach(
                0,
                Some(brick_harness::machine::AttachFault::NamespaceAppears { vol: 1 }),
            ),
            attach(1, None),
            Transition::Unmap { vol: 0, host: 0 },
            detach(0),
            detach(1),
        ];
        let raced = transitions[..4]
            .iter()
            .fold(initial.clone(), |s, t| s.step(t));
        assert_eq!(raced.volumes[1].mapped.get(&0), Some(&2), "v1 raced in");
        replays_green(
            &initial,
            &transitions,
            &[
                "aen = false",
                "fault = \"namespace-appears\"",
                "volume = \"v1\"",
            ],
        );
    }

    /// With a planted bug, the machine's shrunk counterexample written as a scenario fails
    /// when replayed with the bug active, and passes without it: the printed replay command
    /// reproduces the failure, and the expectations it writes are the correct connector's.
    #[cfg(feature = "mutants")]
    #[test]
    fn mutant_counterexamples_replay_as_failing_scenarios() {
        use brick_connectors::mutants::{Mutant, set};
        use brick_harness::machine::{ExploreOptions, explore};
        for (name, protocol) in [
            ("wildcard-scan", MachineProtocol::Iscsi),
            ("fc-scan-every-lun", MachineProtocol::Fc),
            ("nvme-never-disconnect", MachineProtocol::Nvmeof),
        ] {
            let m = Mutant::from_name(name).expect("a mutant");
            set(Some(m));
            let report = explore(&ExploreOptions::new(protocol, 256, 7), &mut |_| {});
            let cx = report.failure.expect("the mutant is caught");
            let text = cx.case.scenario("mutant-replay");
            let scn = brick_scenarios::parse("mutant-replay.toml", &text).expect("parses");
            let (with_bug, _) = brick_scenarios::run(&scn, None).expect("runs");
            set(None);
            assert!(
                with_bug.failure.is_some(),
                "{name}: the replay passed with the bug active\n{text}"
            );
            let (without, _) = brick_scenarios::run(&scn, None).expect("runs");
            assert!(
                without.failure.is_none(),
                "{name}: the replay fails without the bug: {:?}\n{text}",
                without.failure
            );
        }
    }
}
