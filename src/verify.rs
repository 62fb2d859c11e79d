//! `brick verify`: asks path agents (`brick serve`) whether a live migration or a detach left
//! anything of a volume behind. Exit codes: 0 pass, 1 verification failed, 2 could not verify.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use brick_connectors::Wwid;
use brick_harness::agent::Token;
use brick_harness::verify::{
    CheckKind, Report, VerifyOptions, VolumeProps, normalize_identity, verify_detach,
    verify_migration,
};

use crate::ProtocolArg;

/// Arguments of `brick verify`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    #[command(subcommand)]
    command: VerifyCommand,
}

#[derive(Debug, clap::Subcommand)]
enum VerifyCommand {
    /// After a live migration: the source holds no path and no orphan of the volume; the
    /// destination holds at least one path, each under the volume's identity.
    Migration {
        /// The source host's agent, e.g. http://compute-1:7450.
        #[arg(long)]
        source: String,
        /// The destination host's agent.
        #[arg(long)]
        dest: String,
        /// Connection properties as Cinder emits them (JSON, wrapper optional), as given to
        /// the destination.
        #[arg(long)]
        props: PathBuf,
        /// The source's connection properties, when the array gave it different ones
        /// (default: --props).
        #[arg(long)]
        source_props: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// After plain detaches: no host holds a path or an orphan of the volume.
    Detach {
        /// An agent to ask (repeat for every host).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Connection properties as Cinder emits them (JSON, wrapper optional).
        #[arg(long)]
        props: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// A file holding the agents' bearer token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The protocol, required when the properties have no wrapper.
    #[arg(long, value_enum)]
    protocol: Option<ProtocolArg>,
    /// The volume's identity (udev WWID `3600...`, `naa.600...` or NAA hex), when the
    /// properties do not carry it; otherwise it is taken from the destination's paths.
    #[arg(long)]
    wwid: Option<String>,
    /// Print the report as JSON (for gate jobs) instead of a summary.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for each agent answer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

fn load_props(path: &Path, common: &Common) -> Result<VolumeProps> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading connection properties `{}`", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not valid JSON", path.display()))?;
    VolumeProps::from_json(&value, common.protocol.map(Into::into))
        .with_context(|| format!("connection properties in `{}`", path.display()))
}

fn options(common: &Common) -> Result<VerifyOptions> {
    let token = common
        .token_file
        .as_deref()
        .map(Token::from_file)
        .transpose()?
        .map(|t| t.expose().to_owned());
    let expected_wwid: Option<Wwid> = common
        .wwid
        .as_deref()
        .map(normalize_identity)
        .transpose()
        .context("--wwid")?;
    Ok(VerifyOptions {
        token,
        expected_wwid,
        timeout: Duration::from_secs(common.timeout),
    })
}

fn print(report: &Report, json: bool) -> Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        out!("{}", report.summary());
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Runs a verification and prints its report.
pub(crate) fn run(args: VerifyArgs) -> Result<ExitCode> {
    let (check, common) = match &args.command {
        VerifyCommand::Migration { common, .. } => (CheckKind::Migration, common),
        VerifyCommand::Detach { common, .. } => (CheckKind::Detach, common),
    };
    let prepared = (|| -> Result<_> {
        let opts = options(common)?;
        Ok(match &args.command {
            VerifyCommand::Migration {
                source,
                dest,
                props,
                source_props,
                ..
            } => {
                let props = load_props(props, common)?;
                let source_props = source_props
                    .as_deref()
                    .map(|p| load_props(p, common))
                    .transpose()?;
                verify_migration(source, dest, &props, source_props.as_ref(), &opts)
            }
            VerifyCommand::Detach { hosts, props, .. } => {
                verify_detach(hosts, &load_props(props, common)?, &opts)
            }
        })
    })();
    match prepared {
        Ok(report) => print(&report, common.json),
        Err(e) if common.json => print(&Report::error(check, format!("{e:#}")), true),
        Err(e) => Err(e),
    }
}
