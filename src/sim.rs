//! `brick sim`: run a scenario on the simulator and leave its host trees on disk.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use brick_scenarios::Scenario;

/// Finds a scenario by file path, or by name in the built-in catalogue.
pub(crate) fn resolve(scenario: &str) -> Result<Scenario> {
    let path = Path::new(scenario);
    if path.exists() {
        return Ok(brick_scenarios::load(path)?);
    }
    let all = brick_scenarios::builtin()?;
    let stem = scenario.trim_end_matches(".toml");
    match all.into_iter().find(|s| s.name == stem) {
        Some(s) => Ok(s),
        None => bail!(
            "`{scenario}` is neither a scenario file nor a built-in scenario (see `brick sim list`)"
        ),
    }
}

pub(crate) fn list() -> Result<ExitCode> {
    for scn in brick_scenarios::builtin()? {
        let first = scn.description.lines().next().unwrap_or_default();
        outln!("{:<36} {first}", scn.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn materialize(scenario: &str, out: &Path) -> Result<ExitCode> {
    let scn = resolve(scenario)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating `{}`", out.display()))?;
    let roots = out.join("root");
    if roots.exists() {
        std::fs::remove_dir_all(&roots)
            .with_context(|| format!("clearing the old `{}`", roots.display()))?;
    }
    // One host: its root is `out/root`; several: `out/root/<host>`.
    let single = scn.hosts.len() == 1;
    let staging = if single {
        out.join(".hosts")
    } else {
        roots.clone()
    };
    let (outcome, lab) = brick_scenarios::run(&scn, Some(&staging))?;
    let volumes = brick_scenarios::runner::volumes_json(&lab);
    drop(lab);
    if single {
        let host_dir = staging.join(&scn.hosts[0].name);
        std::fs::rename(&host_dir, &roots)
            .with_context(|| format!("moving the host root to `{}`", roots.display()))?;
        let _ = std::fs::remove_dir_all(&staging);
    }
    let vpath = out.join("volumes.json");
    std::fs::write(&vpath, serde_json::to_string_pretty(&volumes)? + "\n")
        .with_context(|| format!("writing `{}`", vpath.display()))?;
    outln!("wrote {} and {}", roots.display(), vpath.display());
    if outcome.passed() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{}",
            outcome.failure_report(&format!(
                "brick sim materialize {scenario} --out {}",
                out.display()
            ))
        );
        Ok(ExitCode::from(1))
    }
}
