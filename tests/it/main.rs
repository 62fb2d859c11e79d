//! End-to-end tests of the `brick` CLI and of the whole workspace: real processes, real files.

mod agent;
mod cli;
mod cli_protocols;
mod osbrick;
mod scenario_cli;
