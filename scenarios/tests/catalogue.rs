//! Every `*.toml` under `scenarios/catalogue/` is a test, found at run time: dropping a file in
//! adds a test without touching Rust or rebuilding.

use std::path::Path;

fn run_scenario(path: &Path, text: String) -> datatest_stable::Result<()> {
    let scn = brick_scenarios::parse(&path.display().to_string(), &text)?;
    let (outcome, _lab) = brick_scenarios::run(&scn, None)?;
    if outcome.passed() {
        Ok(())
    } else {
        let replay = format!(
            "cargo test -p brick-scenarios --test catalogue -- {}  (or: brick sim materialize {} --out /tmp/{})",
            path.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default(),
            path.display(),
            scn.name
        );
        Err(outcome.failure_report(&replay).into())
    }
}

datatest_stable::harness! {
    { test = run_scenario, root = "catalogue", pattern = r"\.toml$" },
}
