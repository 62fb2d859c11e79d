//! `brick serve`: the read-only path agent (see `brick_harness::agent`).
//!
//! The first line on stdout is `listening on http://ADDR` (with the port actually bound, so
//! `--listen 127.0.0.1:0` works); SIGINT or SIGTERM stops it gracefully (exit 0).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use brick_harness::agent::{Agent, AgentConfig, DEFAULT_BODY_LIMIT, Token, shutdown_signal};

/// Arguments of `brick serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The host root to serve (`/` on a real host); fixed at start, must be a directory.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// The address to listen on. A non-loopback address requires --token-file.
    #[arg(long, default_value = brick_harness::agent::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// A file holding the bearer token every /v1 request must present (trimmed; not empty).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Seconds a request may take before it is answered with `timeout`.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    request_timeout: u64,
}

/// Runs the agent until SIGINT or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> Result<ExitCode> {
    let token = args
        .token_file
        .as_deref()
        .map(Token::from_file)
        .transpose()?;
    let config = AgentConfig {
        root: args.root,
        listen: args.listen,
        token,
        body_limit: DEFAULT_BODY_LIMIT,
        request_timeout: Duration::from_secs(args.request_timeout),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let agent = Agent::bind(config).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{}", agent.local_addr())?;
        writeln!(out, "serving {} read-only", agent.root().display())?;
        out.flush()?;
        drop(out);
        agent.run(shutdown_signal()).await?;
        // Whoever started us may have stopped reading stdout: never fail (or panic) on it.
        let _ = writeln!(std::io::stdout(), "stopped");
        Ok(ExitCode::SUCCESS)
    })
}
