//! Errors of the lab.

use brick_connectors::{ConnectorError, PropsError};
use brick_sim_target::SimError;

/// What went wrong while driving a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// A name that the lab does not know.
    #[error("unknown {kind} `{name}`")]
    Unknown {
        /// host, array or volume
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// A name given twice.
    #[error("{kind} `{name}` already exists")]
    Duplicate {
        /// host, array or volume
        kind: &'static str,
        /// The repeated name.
        name: String,
    },
    /// The simulated array or kernel refused an action.
    #[error("simulator: {0}")]
    Sim(#[from] SimError),
    /// The array's connection properties did not parse.
    #[error("connection properties: {0}")]
    Props(#[from] PropsError),
    /// The connector failed.
    #[error("connector: {0}")]
    Connector(#[from] ConnectorError),
    /// Creating or materializing a host root failed.
    #[error("{what}: {source}")]
    Io {
        /// What the lab was doing.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    /// The connector error inside, if the connector failed.
    pub fn as_connector(&self) -> Option<&ConnectorError> {
        match self {
            Self::Connector(err) => Some(err),
            _ => None,
        }
    }
}
