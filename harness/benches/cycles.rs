//! Simulator throughput: single-path and multipath iSCSI attach+detach cycles per second,
//! and property-machine cases per second. Run with `cargo bench -p brick-harness --bench
//! cycles`; prints a plain summary first, then divan's table (`item/s` = cycles per second).

use brick_harness::machine::MachineProtocol;
use brick_harness::machine::bench::{attach_detach_cycles, cycle, cycle_lab, property_cases};
use divan::Bencher;
use divan::counter::ItemsCount;

fn main() {
    match attach_detach_cycles(2_000, false) {
        Ok(t) => println!("single-path iSCSI attach+detach: {}", t.summary("cycles")),
        Err(e) => eprintln!("single-path cycles failed: {e}"),
    }
    match attach_detach_cycles(500, true) {
        Ok(t) => println!("multipath iSCSI attach+detach:   {}", t.summary("cycles")),
        Err(e) => eprintln!("multipath cycles failed: {e}"),
    }
    match property_cases(MachineProtocol::Iscsi, 256) {
        Ok(t) => println!(
            "property machine (iSCSI):        {:.1} cases/s ({} cases in {:.2?})",
            t.per_second(),
            t.count,
            t.elapsed
        ),
        Err(e) => eprintln!("{e}"),
    }
    divan::main();
}

#[divan::bench(args = [false, true])]
fn attach_detach(bencher: Bencher, multipath: bool) {
    let mut lab = cycle_lab(multipath).expect("a lab");
    bencher
        .counter(ItemsCount::new(1usize))
        .bench_local(|| cycle(&mut lab).expect("a cycle"));
}
