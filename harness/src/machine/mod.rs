//! The property machine: generated sequences of attaches, detaches, array-side changes and
//! faults, run on the simulator through the real connectors, with every invariant checked
//! after every transition, shrunk to a short readable counterexample.
//!
//! - [`model`]: the reference state machine (`proptest_state_machine::ReferenceStateMachine`)
//!   for SCSI (iSCSI, FC): topology and fault mix drawn per case (swarm testing), the
//!   transitions, and what a correct connector leaves on each host, hence which violations
//!   the checks must report. It restates the kernel's and the array's rules on its own: sd
//!   names and dm minors lowest free, LUNs lowest free per initiator, identities per volume
//!   or per (target, LUN), recycled target IQNs, map membership only for disks multipathd
//!   heard of (`adopt_paths` at map creation), links left dangling by lost udev `remove`
//!   events until their kernel name is reused, FC HBA link loss past `dev_loss_tmo` and the
//!   kernel's scan of a returning remote port.
//! - [`nvme`]: the NVMe-oF reference model (subsystems, controllers per port, namespaces by
//!   AEN or only at rescans on arrays without AEN, nsid reuse, native multipath on or off,
//!   a namespace mapped by a racing attach) and its lab side, dispatched to by
//!   [`model::ModelState`] and `sut` when the protocol is NVMe-oF.
//! - `sut`: the system under test, a [`crate::Lab`], and the comparison of the two after
//!   every step: the connector's results, the checks' violations (actual == expected),
//!   disks (key, identity, kernel name), maps (identity, minor), sessions and controllers
//!   per host, the orphan report on clean histories, multipathd's path table right after a
//!   detach.
//! - [`run`]: one case ([`run::run_case`]), many cases with shrinking ([`run::explore`]),
//!   the failure report and the replay scenario ([`trace`]).
//! - [`Machine`]: the `StateMachineTest` binding, for `prop_state_machine!`.
//!
//! Extending to another protocol: a [`model::MachineProtocol`] variant, its topologies in
//! the model, and its transitions; the runner and reports do not change.

pub mod bench;
pub mod model;
pub mod nvme;
pub mod run;
mod sut;
pub mod trace;

use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

pub use model::{
    AttachFault, DetachFault, FaultMix, FcLayout, FcModel, HostKind, MachineProtocol, Model,
    ModelState, Topology, Transition,
};
pub use nvme::{NvmeLayout, NvmeModel, NvmeName};
pub use run::{
    CaseRun, Counterexample, ExploreOptions, ExploreReport, Progress, explore, failure_report,
    run_case, write_replay,
};

/// The `StateMachineTest` binding: panics with the readable trace when an invariant breaks.
#[derive(Debug, Clone, Copy)]
pub struct Machine;

/// The system under test as `StateMachineTest` sees it: the lab plus the trace so far.
#[derive(Debug)]
pub struct MachineSut {
    sut: sut::Sut,
    initial: ModelState,
    transitions: Vec<Transition>,
    lines: Vec<String>,
}

impl MachineSut {
    /// The lab.
    pub fn lab(&self) -> &crate::Lab {
        self.sut.lab()
    }
}

impl StateMachineTest for Machine {
    type SystemUnderTest = MachineSut;
    type Reference = Model;

    fn init_test(ref_state: &ModelState) -> MachineSut {
        match sut::Sut::new(ref_state) {
            Ok(s) => MachineSut {
                sut: s,
                initial: ref_state.clone(),
                transitions: Vec::new(),
                lines: Vec::new(),
            },
            Err(e) => panic!("building the lab failed: {e}"),
        }
    }

    fn apply(
        mut state: MachineSut,
        ref_state: &<Model as ReferenceStateMachine>::State,
        transition: Transition,
    ) -> MachineSut {
        state.transitions.push(transition.clone());
        match state.sut.apply(ref_state, &transition) {
            Ok(r) => {
                state.lines.push(format!(
                    "{:>2}. {} -> {}",
                    state.lines.len() + 1,
                    r.what,
                    r.result
                ));
                state
            }
            Err((r, f)) => {
                let mut msg = format!(
                    "lab: {} (seed {}), faults {}\n{}\n{:>2}. {} -> {}\nbroken: {}\n",
                    state.initial.topology,
                    state.initial.world_seed,
                    state.initial.faults,
                    state.lines.join("\n"),
                    state.lines.len() + 1,
                    r.what,
                    r.result,
                    f.message
                );
                for (h, j) in &f.journal {
                    msg.push_str(&format!("journal on {h}:\n    {}\n", j.join("\n    ")));
                }
                msg.push_str(&trace::scenario_toml(
                    "property-counterexample",
                    &state.initial,
                    &state.transitions,
                ));
                panic!("{msg}");
            }
        }
    }
}
