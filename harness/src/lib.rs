//! # brick-harness
//!
//! What connector developers use in `cargo test`: a [`Lab`] of simulated arrays and hosts,
//! the adapter that gives the simulator the connectors' `Host` port ([`SimHost`]), the
//! correctness checks of `../shared/DESIGN.md` ([`Violation`]), and failure reports.
//!
//! It is the only library that knows both the connectors and the simulator; it keeps them
//! apart everywhere else. It knows nothing of scenario files or of the CLI.

pub mod agent;
pub mod checks;
pub mod error;
pub mod lab;
pub mod loopdev;
pub mod machine;
pub mod report;
pub mod simhost;
pub mod target;
pub mod verify;

pub use checks::{PropertyKind, Violation};
pub use error::LabError;
pub use lab::{Attachment, Lab, LabHostSpec};
pub use simhost::{DiskSync, SharedWorld, SimHost, TreeView};
pub use target::{Need, Target, TargetError, Tier};
