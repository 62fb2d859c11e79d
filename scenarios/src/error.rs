//! Errors of scenario files and runs.

use std::path::PathBuf;

/// A scenario that cannot be read, parsed or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("reading scenario `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid scenario: bad TOML, an unknown key, a missing field or a
    /// wrong type.
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        /// The file (or `<builtin:name>`).
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message, naming the key.
        message: String,
    },
    /// The file parsed but says something impossible (an unknown host, a missing volume name).
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The lab could not be built.
    #[error("building the lab: {0}")]
    Lab(#[from] brick_harness::LabError),
    /// The target failed outside a step (settling, building the exec target).
    #[error("target: {0}")]
    Target(#[from] brick_harness::TargetError),
}
