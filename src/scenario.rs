//! `brick scenario run`: scenario files on the simulator or an exec-tier target, with a
//! summary table, JSON and JUnit reports; and `brick sim array`: a simulated array kept in
//! a state file, so a `target.toml` can drive it with shell commands (the exec tier's own
//! end-to-end test).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use brick_harness::target::journal::{ArrayJournal, ArrayOp};
use brick_scenarios::report::{Row, Summary};
use brick_scenarios::target::{TargetFile, load_target, run_scenario};
use brick_sim_target::{ArraySpec, IdentityPolicy, IqnMode};
use clap::{Args, Subcommand, ValueEnum};

/// `brick scenario ...`
#[derive(Debug, Args)]
pub(crate) struct ScenarioArgs {
    #[command(subcommand)]
    command: ScenarioCommand,
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Runs scenario files (or built-in scenario names) and prints a summary table.
    ///
    /// Exit status: 0 all passed or skipped, 1 a scenario failed or could not run, 2 bad
    /// arguments. Skipped scenarios (the target cannot satisfy a requirement) print why.
    Run {
        /// Scenario files, directories of them, or built-in scenario names.
        #[arg(required = true)]
        files: Vec<String>,
        /// An exec-tier `target.toml` (default: the simulator; also `BRICK_TARGET`).
        #[arg(long)]
        target: Option<PathBuf>,
        /// Print the summary as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write a JUnit XML report to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
}

/// Expands the arguments into (display name, scenario or error) pairs.
fn collect(files: &[String]) -> Vec<(String, Result<brick_scenarios::Scenario>)> {
    let mut out = Vec::new();
    for f in files {
        let path = Path::new(f);
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                        .collect()
                })
                .unwrap_or_default();
            entries.sort();
            for p in entries {
                let load = brick_scenarios::load(&p).map_err(anyhow::Error::from);
                out.push((p.display().to_string(), load));
            }
        } else {
            out.push((f.clone(), crate::sim::resolve(f)));
        }
    }
    out
}

pub(crate) fn run(args: ScenarioArgs) -> Result<ExitCode> {
    let ScenarioCommand::Run {
        files,
        target,
        json,
        junit,
    } = args.command;
    let target = target.or_else(|| {
        std::env::var_os(brick_scenarios::target::TARGET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let target: Option<TargetFile> = target
        .as_deref()
        .map(load_target)
        .transpose()
        .context("reading the target file")?;
    let target_name = target
        .as_ref()
        .map_or_else(|| "sim".to_owned(), |t| format!("exec:{}", t.spec.name));
    let target_flag = target
        .as_ref()
        .map(|t| format!(" --target {}", t.path.display()))
        .unwrap_or_default();
    let mut rows = Vec::new();
    for (file, scn) in collect(&files) {
        let replay = format!("brick scenario run {file}{target_flag}");
        let start = Instant::now();
        let scn = match scn {
            Ok(s) => s,
            Err(err) => {
                rows.push(Row::error(&file, &file, format!("{err:#}"), 0, replay));
                continue;
            }
        };
        let row = match run_scenario(&scn, target.as_ref()) {
            Ok(outcome) => {
                let replay = if target.is_none() {
                    format!(
                        "{replay}   (host trees: brick sim materialize {file} --out /tmp/{})",
                        scn.name
                    )
                } else {
                    replay
                };
                Row::from_outcome(&file, &outcome, start.elapsed().as_millis(), replay)
            }
            Err(err) => Row::error(
                &scn.name,
                &file,
                err.to_string(),
                start.elapsed().as_millis(),
                replay,
            ),
        };
        rows.push(row);
    }
    let summary = Summary::new(target_name, rows);
    if let Some(path) = &junit {
        std::fs::write(path, summary.junit())
            .with_context(|| format!("writing the JUnit report `{}`", path.display()))?;
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        out!("{}", summary.table());
        for r in summary.scenarios.iter().filter(|r| !r.report.is_empty()) {
            eprintln!("\n{}", r.report);
        }
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `brick sim array --state FILE ...`
#[derive(Debug, Args)]
pub(crate) struct SimArrayArgs {
    /// The state file (a header and an append-only journal of array operations).
    #[arg(long)]
    state: PathBuf,
    #[command(subcommand)]
    command: ArrayCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum IdentityArg {
    Fresh,
    ReuseOnLun,
}

#[derive(Debug, Subcommand)]
enum ArrayCommand {
    /// Starts a new array (replaces the state file).
    Init {
        /// Array name.
        #[arg(long, default_value = "sim-array")]
        name: String,
        /// Portals `ip:port` (repeat for multipath).
        #[arg(long = "portal", default_value = "10.0.2.2:3260")]
        portals: Vec<String>,
        /// One shared target IQN for every volume (default: one target per volume).
        #[arg(long)]
        shared_iqn: Option<String>,
        /// Identity of volumes on reused LUNs.
        #[arg(long, value_enum, default_value = "fresh")]
        identity: IdentityArg,
        /// The simulator's seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Creates a volume.
    Create {
        /// Volume name.
        volume: String,
        /// Size in bytes.
        #[arg(long)]
        size_bytes: u64,
    },
    /// Maps a volume to an initiator.
    Map {
        /// Volume name.
        volume: String,
        /// Initiator IQN.
        #[arg(long)]
        initiator: String,
    },
    /// Unmaps a volume from an initiator.
    Unmap {
        /// Volume name.
        volume: String,
        /// Initiator IQN.
        #[arg(long)]
        initiator: String,
    },
    /// Deletes a volume.
    Delete {
        /// Volume name.
        volume: String,
    },
    /// Prints `{"wwid": "..."}` for a volume (deleted volumes too).
    Identity {
        /// Volume name.
        volume: String,
    },
    /// Prints the os-brick connection properties an initiator gets for a volume.
    Props {
        /// Volume name.
        volume: String,
        /// Initiator IQN.
        #[arg(long)]
        initiator: String,
    },
}

pub(crate) fn sim_array(args: SimArrayArgs) -> Result<ExitCode> {
    let state = &args.state;
    let op = match args.command {
        ArrayCommand::Init {
            name,
            portals,
            shared_iqn,
            identity,
            seed,
        } => {
            let mut spec = ArraySpec::new(name, portals);
            if let Some(iqn) = shared_iqn {
                spec.iqn_mode = IqnMode::Shared { iqn };
            }
            spec.identity = match identity {
                IdentityArg::Fresh => IdentityPolicy::Fresh,
                IdentityArg::ReuseOnLun => IdentityPolicy::ReuseOnLun,
            };
            ArrayJournal::create(state, seed, spec)?;
            return Ok(ExitCode::SUCCESS);
        }
        ArrayCommand::Identity { volume } => {
            let wwid = ArrayJournal::open(state)?.identity(&volume)?;
            outln!("{}", serde_json::json!({ "wwid": wwid }));
            return Ok(ExitCode::SUCCESS);
        }
        ArrayCommand::Props { volume, initiator } => {
            let props = ArrayJournal::open(state)?.props(&volume, &initiator)?;
            outln!("{props}");
            return Ok(ExitCode::SUCCESS);
        }
        ArrayCommand::Create { volume, size_bytes } => ArrayOp::Create { volume, size_bytes },
        ArrayCommand::Map { volume, initiator } => ArrayOp::Map { volume, initiator },
        ArrayCommand::Unmap { volume, initiator } => ArrayOp::Unmap { volume, initiator },
        ArrayCommand::Delete { volume } => ArrayOp::Delete { volume },
    };
    ArrayJournal::open(state)?.apply(op)?;
    Ok(ExitCode::SUCCESS)
}
