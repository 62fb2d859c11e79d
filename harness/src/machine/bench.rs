//! Throughput figures shared by `cargo bench -p brick-harness --bench cycles` and
//! `brick bench`: attach+detach cycles per second on the simulator, and property cases per
//! second.

use std::time::{Duration, Instant};

use brick_connectors::DisconnectOptions;
use brick_sim_target::ArraySpec;

use crate::lab::{Lab, LabHostSpec};
use crate::machine::model::MachineProtocol;
use crate::machine::run::{ExploreOptions, explore};

/// How many cycles ran in how long, and how fast each batch of them went.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// Cycles (or cases).
    pub count: u64,
    /// Wall time, all batches together.
    pub elapsed: Duration,
    /// Cycles per second of each batch, in the order they ran (one batch for property
    /// cases).
    pub batches: Vec<f64>,
}

impl Throughput {
    /// Per second, over the whole run.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The median batch's rate: the figure to quote on a shared machine, where another
    /// process can slow one batch down but not most of them.
    pub fn median_per_second(&self) -> f64 {
        let mut rates = self.batches.clone();
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => self.per_second(),
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        }
    }

    /// The fastest batch's rate.
    pub fn best_per_second(&self) -> f64 {
        self.batches
            .iter()
            .copied()
            .fold(self.per_second(), f64::max)
    }

    /// One line: the median, the best batch and the whole run.
    pub fn summary(&self, unit: &str) -> String {
        format!(
            "{:>7.0} {unit}/s median of {} batches (best {:.0}, whole run {:.0}: {} {unit} in {:.2?})",
            self.median_per_second(),
            self.batches.len(),
            self.best_per_second(),
            self.per_second(),
            self.count,
            self.elapsed
        )
    }
}

/// How many batches [`attach_detach_cycles`] times.
pub const BATCHES: u64 = 5;

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

/// `n` attach+detach cycles on one lab (after one untimed), timed in [`BATCHES`] batches.
pub fn attach_detach_cycles(n: u64, multipath: bool) -> Result<Throughput, String> {
    let mut lab = cycle_lab(multipath)?;
    cycle(&mut lab)?;
    let mut batches = Vec::new();
    let mut elapsed = Duration::ZERO;
    let per_batch = n.div_ceil(BATCHES).max(1);
    let mut done = 0;
    while done < n {
        let count = per_batch.min(n - done);
        let start = Instant::now();
        for _ in 0..count {
            cycle(&mut lab)?;
        }
        let took = start.elapsed();
        elapsed += took;
        batches.push(count as f64 / took.as_secs_f64().max(1e-9));
        done += count;
    }
    Ok(Throughput {
        count: n,
        elapsed,
        batches,
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
    let count = u64::from(report.cases);
    Ok(Throughput {
        count,
        elapsed: report.elapsed,
        batches: vec![count as f64 / report.elapsed.as_secs_f64().max(1e-9)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_batch_is_quoted_and_the_best_and_whole_run_are_shown() {
        let t = Throughput {
            count: 40,
            elapsed: Duration::from_secs(4),
            batches: vec![5.0, 20.0, 10.0, 1.0],
        };
        assert_eq!(t.per_second(), 10.0);
        assert_eq!(t.median_per_second(), 7.5);
        assert_eq!(t.best_per_second(), 20.0);
        let line = t.summary("cycles");
        assert!(line.contains("8 cycles/s median of 4 batches"), "{line}");
        assert!(
            line.contains("best 20, whole run 10: 40 cycles in"),
            "{line}"
        );
        let odd = Throughput {
            batches: vec![3.0, 1.0, 2.0],
            ..t
        };
        assert_eq!(odd.median_per_second(), 2.0);
    }

    #[test]
    fn cycles_run_in_batches_that_add_up() {
        let t = attach_detach_cycles(7, false).expect("cycles");
        assert_eq!(t.count, 7);
        assert_eq!(t.batches.len(), 4, "batches of 2, 2, 2 and 1");
        assert!(t.batches.iter().all(|r| *r > 0.0));
    }
}
