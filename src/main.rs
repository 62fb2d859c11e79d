//! `brick`: verify volume attach and detach on Linux hosts.
//!
//! Exit codes: 0 success, 1 a check or scenario failed, 2 the command could not run (bad
//! input, unreadable files).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

use brick_connectors::{ConnectionProperties, ConnectorConfig, Protocol, RealHost, connector_for};

#[macro_use]
mod output;
mod bench;
mod check;
mod explore;
mod scenario;
mod serve;
mod sim;
mod verify;

/// Verify volume attach and detach on Linux hosts.
#[derive(Debug, Parser)]
#[command(name = "brick", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A volume's existing paths on a host (os-brick's get_volume_paths).
    Paths {
        /// The host's root directory (`/` on a real host).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Connection properties as a Cinder driver emits them (JSON, with or without the
        /// `driver_volume_type`/`data` wrapper).
        #[arg(long)]
        props: PathBuf,
        /// The protocol, required when the properties have no wrapper.
        #[arg(long, value_enum)]
        protocol: Option<ProtocolArg>,
        /// The connector is configured for multipath (os-brick's `use_multipath`).
        #[arg(long)]
        multipath: bool,
        /// Print a JSON array of {path, device, wwid}.
        #[arg(long)]
        json: bool,
    },
    /// Every entry of the connector's search path (os-brick's get_all_available_volumes).
    Volumes {
        /// The host's root directory (`/` on a real host).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The protocol.
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// The directory where the connector looks for devices (os-brick's get_search_path).
    SearchPath {
        /// The protocol.
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
    },
    /// The simulator.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// The main job: every built-in scenario on the simulator, with a summary table.
    Check {
        /// Print the results as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The read-only path agent over HTTP/JSON, for test and gate hosts (not production).
    Serve(serve::ServeArgs),
    /// Ask path agents whether a live migration or a detach left anything behind.
    Verify(verify::VerifyArgs),
    /// Long property runs: generated attach/detach/array/fault sequences on the simulator.
    Explore(explore::ExploreArgs),
    /// Simulator throughput: attach+detach cycles and property cases per second.
    Bench(bench::BenchArgs),
    /// Scenario files on the simulator or a real target (`brick scenario run FILE...`).
    Scenario(scenario::ScenarioArgs),
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Runs a scenario on the simulator and writes the host tree(s) and volumes.json.
    Materialize {
        /// A scenario file, or the name of a built-in scenario.
        scenario: String,
        /// Output directory: `root/` (one host) or `root/<host>/` (several), `volumes.json`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Lists the built-in scenarios.
    List,
    /// A simulated array kept in a state file, driven one command at a time (exec-tier tests).
    Array(scenario::SimArrayArgs),
}

/// The protocols, spelled as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProtocolArg {
    Iscsi,
    Fc,
    Nvmeof,
    Local,
}

impl From<ProtocolArg> for Protocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::Iscsi => Protocol::Iscsi,
            ProtocolArg::Fc => Protocol::FibreChannel,
            ProtocolArg::Nvmeof => Protocol::Nvmeof,
            ProtocolArg::Local => Protocol::Local,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr, filtered by `BRICK_LOG`. Without it, commands that drive simulated
/// hosts through planned faults (`check`, `scenario`, `explore`, `bench`) stay quiet — their
/// reports carry each connector's log where it matters — and the others show warnings.
fn init_tracing(command: &Command) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let quiet = matches!(
        command,
        Command::Check { .. } | Command::Scenario(..) | Command::Explore(..) | Command::Bench(..)
    );
    let default = if quiet { "off" } else { "warn" };
    let filter = EnvFilter::try_from_env("BRICK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Paths {
            root,
            props,
            protocol,
            multipath,
            json,
        } => paths(&root, &props, protocol.map(Into::into), multipath, json),
        Command::Volumes {
            root,
            protocol,
            json,
        } => volumes(&root, protocol.into(), json),
        Command::SearchPath { protocol } => {
            let host = RealHost::system();
            let connector = connector_for(protocol.into(), &host, ConnectorConfig::default())?;
            match connector.get_search_path() {
                Some(p) => outln!("{p}"),
                None => outln!(),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim { command } => match command {
            SimCommand::Materialize { scenario, out } => sim::materialize(&scenario, &out),
            SimCommand::List => sim::list(),
            SimCommand::Array(args) => scenario::sim_array(args),
        },
        Command::Check { json } => check::run(json),
        Command::Serve(args) => serve::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Explore(args) => explore::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Scenario(args) => scenario::run(args),
    }
}

fn check_root(root: &Path) -> Result<()> {
    let meta = std::fs::metadata(root)
        .with_context(|| format!("host root `{}` cannot be read", root.display()))?;
    if !meta.is_dir() {
        bail!("host root `{}` is not a directory", root.display());
    }
    Ok(())
}

fn paths(
    root: &Path,
    props_file: &Path,
    protocol: Option<Protocol>,
    multipath: bool,
    json: bool,
) -> Result<ExitCode> {
    check_root(root)?;
    let text = std::fs::read_to_string(props_file)
        .with_context(|| format!("reading connection properties `{}`", props_file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not valid JSON", props_file.display()))?;
    let props = ConnectionProperties::from_json(&value, protocol)
        .with_context(|| format!("connection properties in `{}`", props_file.display()))?;
    let host = RealHost::new(root);
    let config = ConnectorConfig {
        use_multipath: multipath,
        ..ConnectorConfig::default()
    };
    let connector = connector_for(props.protocol(), &host, config)?;
    let found = connector.get_volume_paths(&props)?;
    for d in &found.diagnostics {
        match &d.path {
            Some(p) => eprintln!("note: {p}: {}", d.message),
            None => eprintln!("note: {}", d.message),
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&found.paths)?);
    } else {
        for p in &found.paths {
            outln!("{}", p.path);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn volumes(root: &Path, protocol: Protocol, json: bool) -> Result<ExitCode> {
    check_root(root)?;
    let host = RealHost::new(root);
    let connector = connector_for(protocol, &host, ConnectorConfig::default())?;
    let all = connector.get_all_available_volumes(None)?;
    if json {
        let list: Vec<&str> = all.iter().map(|p| p.as_str()).collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for p in &all {
            outln!("{p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
