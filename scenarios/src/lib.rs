//! # brick-scenarios
//!
//! Named, declarative scenarios (TOML files in this folder's `catalogue/`) and their runner.
