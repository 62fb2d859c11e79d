//! # brick-scenarios
//!
//! Named, declarative attach/detach scenarios: TOML files in `scenarios/catalogue/` (format in
//! [`schema`] and `scenarios/README.md`), the runner that plays them on a simulated lab and
//! checks every correctness property after every step, and the built-in catalogue embedded for
//! `brick check`.
//!
//! It knows the file format and the harness; it does not know the CLI.

pub mod error;
pub mod faults;
pub mod runner;
pub mod schema;

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

use std::path::Path;

use brick_harness::Lab;
use brick_sim_target::Fault;

pub use builtin::BUILTIN;
pub use error::ScenarioError;
pub use runner::{Outcome, run};
pub use schema::Scenario;

/// Parses a scenario from TOML text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let scn: Scenario = toml::from_str(text).map_err(|err| {
        let (line, column) = err
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        ScenarioError::Parse {
            file: file.to_owned(),
            line,
            column,
            message: err.message().trim().to_owned(),
        }
    })?;
    if scn.schema != 1 {
        return Err(ScenarioError::Invalid {
            file: file.to_owned(),
            message: format!("schema {} is not supported (only schema = 1)", scn.schema),
        });
    }
    Ok(scn)
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// The built-in catalogue, parsed.
pub fn builtin() -> Result<Vec<Scenario>, ScenarioError> {
    BUILTIN
        .iter()
        .map(|(file, text)| parse(&format!("<builtin:{file}>"), text))
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Checks references inside a parsed scenario (hosts, arrays, volumes named by steps).
pub fn validate(scn: &Scenario) -> Result<(), ScenarioError> {
    let invalid = |message: String| ScenarioError::Invalid {
        file: scn.name.clone(),
        message,
    };
    if scn.hosts.is_empty() || scn.arrays.is_empty() {
        return Err(invalid(
            "a scenario needs at least one [[host]] and one [[array]]".into(),
        ));
    }
    if scn.protocol != "iscsi" {
        return Err(invalid(format!(
            "protocol `{}` is not simulated yet (only `iscsi`)",
            scn.protocol
        )));
    }
    for (i, step) in scn.steps.iter().enumerate() {
        let at = |m: String| invalid(format!("step {}: {m}", i + 1));
        use schema::Action as A;
        if !matches!(step.action, A::Settle | A::ClearFaults | A::Fault) && step.volume.is_none() {
            return Err(at(
                format!("`{:?}` needs `volume`", step.action).to_lowercase()
            ));
        }
        if let Some(h) = &step.host {
            if !scn.hosts.iter().any(|d| &d.name == h) {
                return Err(at(format!("unknown host `{h}`")));
            }
        }
        if let Some(a) = &step.array {
            if !scn.arrays.iter().any(|d| &d.name == a) {
                return Err(at(format!("unknown array `{a}`")));
            }
        }
        if step.action == A::Fault {
            let name = step.fault.as_deref().unwrap_or_default();
            if !faults::FAULTS.iter().any(|(n, _)| *n == name) {
                let known: Vec<&str> = faults::FAULTS.iter().map(|(n, _)| *n).collect();
                return Err(at(format!(
                    "unknown fault `{name}`; known: {}",
                    known.join(", ")
                )));
            }
        }
        for v in &step.expect.violations {
            if !["leftover", "truth", "cross-talk"].contains(&v.as_str()) {
                return Err(at(format!(
                    "unknown property `{v}` in expect.violations (leftover, truth, cross-talk)"
                )));
            }
        }
    }
    Ok(())
}

/// The wwid of volume `name` in the lab's simulator.
pub(crate) fn volume_wwid(lab: &Lab, name: &str) -> Result<String, String> {
    let id = lab.volume_id(name).map_err(|e| e.to_string())?;
    let world = brick_harness::simhost::lock(lab.world());
    world
        .volume_record(id)
        .map(|v| v.wwid.clone())
        .ok_or_else(|| format!("volume {name} is unknown to the simulator"))
}

pub(crate) fn sim_fault(lab: &Lab, name: &str, host: &str) -> Result<Fault, String> {
    let _ = (lab, host);
    Err(format!("fault `{name}` is not wired to the simulator yet"))
}
