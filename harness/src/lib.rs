//! # brick-harness
//!
//! What connector developers use in `cargo test`: targets (the simulator, or real ones),
//! the adapter that gives the simulator the connectors' `Host` port, and the checks that
//! nothing is left over and no path leads to the wrong volume.
//!
//! It is the only library that knows both the connectors and the simulator.
