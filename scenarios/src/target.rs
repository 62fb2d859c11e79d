//! Choosing where scenarios run: the simulator (default) or an exec-tier `target.toml`
//! (`--target FILE` or `BRICK_TARGET=FILE`).

use std::path::{Path, PathBuf};

use brick_harness::target::exec::{ExecSpec, ExecTarget};

use crate::error::ScenarioError;
use crate::runner::Outcome;
use crate::schema::Scenario;

/// The environment variable naming a `target.toml` for `cargo test -p brick-scenarios`.
pub const TARGET_ENV: &str = "BRICK_TARGET";

/// A parsed `target.toml` and where it lives (commands run in its directory).
#[derive(Debug, Clone)]
pub struct TargetFile {
    /// The file.
    pub path: PathBuf,
    /// Its contents.
    pub spec: ExecSpec,
}

/// Reads and checks a `target.toml`. Errors name the file, line, column and field.
pub fn load_target(path: &Path) -> Result<TargetFile, ScenarioError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    let spec: ExecSpec = crate::parse_toml(&file, &text)?;
    spec.validate()
        .map_err(|message| ScenarioError::Invalid { file, message })?;
    Ok(TargetFile {
        path: path.to_owned(),
        spec,
    })
}

/// The `target.toml` named by `BRICK_TARGET`, if set.
pub fn target_from_env() -> Result<Option<TargetFile>, ScenarioError> {
    match std::env::var_os(TARGET_ENV) {
        Some(p) if !p.is_empty() => load_target(Path::new(&p)).map(Some),
        _ => Ok(None),
    }
}

/// Runs `scn` on the simulator, or on the exec target described by `target`.
pub fn run_scenario(scn: &Scenario, target: Option<&TargetFile>) -> Result<Outcome, ScenarioError> {
    let Some(tf) = target else {
        return crate::run(scn, None).map(|(outcome, _lab)| outcome);
    };
    crate::validate(scn)?;
    let host = scn.hosts.first().ok_or_else(|| ScenarioError::Invalid {
        file: scn.name.clone(),
        message: "no [[host]]".into(),
    })?;
    let dir = tf
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut exec = ExecTarget::new(tf.spec.clone(), dir, &scn.name, &host.name, host.multipath)?;
    let outcome = crate::run_on(scn, &mut exec);
    // Leave the operator's array and host as we found them, whatever happened.
    for note in exec.cleanup() {
        tracing::info!(scenario = %scn.name, "{note}");
    }
    outcome
}
