//! Throughput figures shared by `cargo bench -p brick-harness --bench cycles` and
//! `brick bench`: attach+detach cycles per second on the simulator, and property cases per
//! second.

use std::time::{Duration, Instant};

use brick_connectors::DisconnectOptions;
use brick_sim_target::ArraySpec;

use crate::lab::{Lab, LabHostSpec};
use crate::machine::model::MachineProtocol;
use crate::machine::run::{ExploreOptions, explore};

/// How many cycles ran in how long.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Cycles (or cases).
    pub count: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Throughput {
    /// Per second.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A lab with one host (single-path or multipath) and one mapped volume `v`.
pub fn cycle_lab(multipath: bool) -> Result<Lab, String> {
    let mut lab = Lab::new(1);
    let host = if multipath {
        LabHostSpec::multipath("h")
    } else {
        LabHostSpec::single("h")
    };
    lab.add_host(host).map_err(|e| e.to_string())?;
    let portals = if multipath {
        vec!["10.0.2.2:3260".to_owned(), "10.0.3.2:3260".to_owned()]
    } else {
        vec!["10.0.2.2:3260".to_owned()]
    };
    lab.add_array(ArraySpec::new("a", portals))
        .map_err(|e| e.to_string())?;
    lab.create_volume("v", "a", 1 << 30)
        .map_err(|e| e.to_string())?;
    lab.map("v", "h").map_err(|e| e.to_string())?;
    Ok(lab)
}

/// One attach + detach of `v` on `h` with the real iSCSI connector.
pub fn cycle(lab: &mut Lab) -> Result<(), String> {
    lab.attach("v", "h").map_err(|e| e.to_string())?;
    lab.detach("v", "h", DisconnectOptions::default(), true)
        .map_err(|e| e.to_string())
}

/// `n` attach+detach cycles on one lab.
pub fn attach_detach_cycles(n: u64, multipath: bool) -> Result<Throughput, String> {
    let mut lab = cycle_lab(multipath)?;
    cycle(&mut lab)?;
    let start = Instant::now();
    for _ in 0..n {
        cycle(&mut lab)?;
    }
    Ok(Throughput {
        count: n,
        elapsed: start.elapsed(),
    })
}

/// `cases` property cases of `protocol` (fixed seed); fails if one breaks an invariant.
pub fn property_cases(protocol: MachineProtocol, cases: u32) -> Result<Throughput, String> {
    let opts = ExploreOptions {
        verbose: false,
        ..ExploreOptions::new(protocol, cases, 7)
    };
    let report = explore(&opts, &mut |_| {});
    if report.failure.is_some() {
        return Err(format!(
            "the property run failed: {}",
            crate::machine::run::failure_report(&report, None)
        ));
    }
    Ok(Throughput {
        count: u64::from(report.cases),
        elapsed: report.elapsed,
    })
}
