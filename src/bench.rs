//! `brick bench`: simulator throughput (attach+detach cycles per second) and property cases
//! per second, the same figures `cargo bench -p brick-harness --bench cycles` prints.

use std::process::ExitCode;

use anyhow::{Result, anyhow};
use brick_harness::machine::MachineProtocol;
use brick_harness::machine::bench::{attach_detach_cycles, property_cases};

/// Arguments of `brick bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Attach+detach cycles to time.
    #[arg(long, default_value_t = 2000)]
    cycles: u64,
    /// Property cases to time.
    #[arg(long, default_value_t = 128)]
    cases: u32,
}

pub(crate) fn run(args: BenchArgs) -> Result<ExitCode> {
    let single = attach_detach_cycles(args.cycles, false).map_err(|e| anyhow!(e))?;
    outln!(
        "single-path iSCSI attach+detach: {}",
        single.summary("cycles")
    );
    let multi = attach_detach_cycles((args.cycles / 4).max(1), true).map_err(|e| anyhow!(e))?;
    outln!(
        "multipath iSCSI attach+detach:   {}",
        multi.summary("cycles")
    );
    let cases = property_cases(MachineProtocol::Iscsi, args.cases).map_err(|e| anyhow!(e))?;
    outln!(
        "property machine (iSCSI):        {:>7.1} cases/s ({} cases in {:.2?})",
        cases.per_second(),
        cases.count,
        cases.elapsed
    );
    Ok(ExitCode::SUCCESS)
}
