//! Targets: where a scenario's volumes live and where they are attached.
//!
//! One scenario format, several tiers (../shared/DESIGN.md, "Target tiers"). A [`Target`] is
//! the array side (create, map, unmap, delete, the identity the array reports) plus the host
//! side (the connectors running on a [`Host`] port). Two tiers exist:
//!
//! - **sim**: the [`Lab`], in process and deterministic. It knows the truth (which
//!   volume each device really reaches), so its checks are the full correctness properties.
//! - **exec**: [`exec::ExecTarget`], for third-party CI. The array is driven by the shell
//!   commands of a `target.toml` ([`exec::ExecSpec`]); the host is `RealHost` on `/` (or, in
//!   our own tests, a simulated host that replays the array journal of `brick sim array`,
//!   [`journal`]). Its checks degrade to what a real host can show: the identity of the
//!   devices against the identity the array reports, leftovers by identity, the orphan report,
//!   and, when the target lists them, the target's sessions from our initiator.
//!
//! A scenario declares what it needs ([`Need`]); a target that cannot give it says why
//! ([`Target::unsupported`]) and the scenario is skipped with that reason.

pub mod exec;
pub mod journal;
mod sim;

use brick_connectors::{DeviceInfo, DisconnectOptions, Host, VolumePaths};

use crate::checks::Violation;
use crate::error::LabError;
use crate::lab::Lab;

/// Which tier a target belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// The in-process simulator.
    Sim,
    /// A real (or journal-replayed) array driven by shell commands.
    Exec,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sim => "sim",
            Self::Exec => "exec",
        })
    }
}

/// Something a scenario needs from its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// This many hosts.
    Hosts(usize),
    /// This protocol (`iscsi`, `fc`, `nvmeof`).
    Protocol(String),
    /// dm-multipath on the host and at least two portals on the array.
    Multipath,
    /// Every volume on one shared target (IQN), told apart by LUN.
    SharedIqn,
    /// After a volume is deleted, the next volume mapped to the host gets its LUN id, with
    /// the identity policy given (`fresh` or `same-identity`).
    LunReuse(String),
    /// Something only the simulator can do or see (fault injection, truth checks); the
    /// text says what.
    Simulator(String),
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hosts(n) => write!(f, "{n} host(s)"),
            Self::Protocol(p) => write!(f, "protocol {p}"),
            Self::Multipath => f.write_str("multipath (dm-multipath and two portals)"),
            Self::SharedIqn => f.write_str("a shared target IQN"),
            Self::LunReuse(p) => write!(f, "LUN reuse with {p} identity"),
            Self::Simulator(what) => write!(f, "the simulator ({what})"),
        }
    }
}

/// What went wrong on a target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The simulated lab failed (including connector errors on a simulated host).
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The connector failed on the target's host.
    #[error("connector: {0}")]
    Connector(#[from] brick_connectors::ConnectorError),
    /// The array's connection properties did not parse.
    #[error("connection properties: {0}")]
    Props(#[from] brick_connectors::PropsError),
    /// A command of `target.toml` failed.
    #[error("`{name}` command failed (exit {status}): {command}\n{stderr}")]
    Command {
        /// Which command (`create`, `map`...).
        name: String,
        /// The command line as run (placeholders filled in).
        command: String,
        /// Its exit status (-1: killed by a signal).
        status: i32,
        /// What it wrote on stderr (truncated).
        stderr: String,
    },
    /// A command of `target.toml` ran longer than its `timeout_secs` and was killed.
    #[error("`{name}` command killed after {seconds} s (commands.timeout_secs): {command}")]
    Timeout {
        /// Which command.
        name: String,
        /// The command line as run.
        command: String,
        /// The limit.
        seconds: u64,
    },
    /// A command's output was not what `target.toml` promised.
    #[error("`{name}` command: {message}")]
    Output {
        /// Which command.
        name: String,
        /// What is wrong with its output.
        message: String,
    },
    /// The target cannot do this at all.
    #[error("not supported by the {tier} target: {what}")]
    Unsupported {
        /// The tier.
        tier: Tier,
        /// What was asked.
        what: String,
    },
    /// A host, volume or placeholder the target does not know.
    #[error("unknown {kind} `{name}`")]
    Unknown {
        /// host, volume, placeholder
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// Reading or writing a file (journal, host root) failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The array journal (`brick sim array --state`) is invalid or refused an operation.
    #[error("array journal: {0}")]
    Journal(String),
}

impl TargetError {
    /// The connector error inside, if the connector failed.
    pub fn as_connector(&self) -> Option<&brick_connectors::ConnectorError> {
        match self {
            Self::Connector(err) => Some(err),
            Self::Lab(lab) => lab.as_connector(),
            _ => None,
        }
    }
}

/// An array plus the hosts its volumes are attached on, as a scenario drives them.
///
/// Volume and host names are the scenario's; a target maps them onto its own names (the exec
/// target prefixes volume names, for instance).
pub trait Target {
    /// The tier.
    fn tier(&self) -> Tier;

    /// Why this target cannot give `need`, or `None` when it can.
    fn unsupported(&self, need: &Need) -> Option<String>;

    /// The hosts, in scenario order.
    fn host_names(&self) -> Vec<String>;

    /// Creates `volume` on `array` (the exec target has one array and ignores the name).
    fn create_volume(
        &mut self,
        volume: &str,
        array: &str,
        size_bytes: u64,
    ) -> Result<(), TargetError>;

    /// Maps `volume` to `host`'s initiator on the array.
    fn map(&mut self, volume: &str, host: &str) -> Result<(), TargetError>;

    /// Unmaps `volume` from `host` on the array only.
    fn unmap(&mut self, volume: &str, host: &str) -> Result<(), TargetError>;

    /// Deletes `volume` on the array only.
    fn delete(&mut self, volume: &str) -> Result<(), TargetError>;

    /// The identity (udev-form WWID, `3600...`) the array reports for `volume`, also after
    /// it was deleted (the last identity seen).
    fn identity(&self, volume: &str) -> Result<String, TargetError>;

    /// The connection properties the array gives `host` for `volume` (os-brick JSON).
    fn props_json(&self, volume: &str, host: &str) -> Result<serde_json::Value, TargetError>;

    /// Attaches `volume` on `host` with the connector.
    fn attach(&mut self, volume: &str, host: &str) -> Result<DeviceInfo, TargetError>;

    /// Detaches `volume` from `host` with the connector (properties recorded at attach).
    fn detach(
        &mut self,
        volume: &str,
        host: &str,
        opts: DisconnectOptions,
        with_device_info: bool,
    ) -> Result<(), TargetError>;

    /// `get_volume_paths` for `volume` on `host`.
    fn volume_paths(&self, volume: &str, host: &str) -> Result<VolumePaths, TargetError>;

    /// The device the attach of `volume` on `host` returned, while attached.
    fn attached_device(&self, volume: &str, host: &str) -> Option<DeviceInfo>;

    /// `(host, volume)` of every attachment the target believes exists.
    fn attachments(&self) -> Vec<(String, String)>;

    /// Lets pending host events happen (`udevadm settle`) and refreshes the host view.
    fn settle(&mut self) -> Result<(), TargetError>;

    /// Checks the correctness properties the tier can see.
    fn check(&self) -> Vec<Violation>;

    /// The host port of `host` (reads for snapshots and orphan reports).
    fn port(&self, host: &str) -> Result<&dyn Host, TargetError>;

    /// The side effects performed on `host` (connector and array commands), oldest first.
    fn journal(&self, host: &str) -> Vec<String>;

    /// A listing of `host`'s tree for failure reports (`None` on a real host, whose tree is
    /// too large and not ours to print).
    fn tree_listing(&self, host: &str) -> Option<String>;

    /// The sessions the target side lists from `host`'s initiator, when it can list them.
    fn target_sessions(&self, host: &str) -> Option<Result<Vec<String>, TargetError>>;

    /// The simulated lab behind this target, for simulator-only steps (faults).
    fn lab_mut(&mut self) -> Option<&mut Lab> {
        None
    }

    /// The simulated lab behind this target, read-only.
    fn lab(&self) -> Option<&Lab> {
        None
    }
}

/// Normalizes an identity as an array may print it (`naa.6001405...`, `0x6001405...`,
/// `6001405...`, `36001405...`, upper or lower case) to the udev form hosts report
/// (`36001405...`). Unknown forms are returned trimmed and lower-cased.
pub fn normalize_wwid(raw: &str) -> String {
    let s = raw.trim().to_ascii_lowercase();
    let hex = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(rest) = s.strip_prefix("naa.").or_else(|| s.strip_prefix("wwn-0x")) {
        return format!("3{rest}");
    }
    if let Some(rest) = s.strip_prefix("eui.") {
        return format!("2{rest}");
    }
    if let Some(rest) = s.strip_prefix("0x")
        && hex(rest)
    {
        return format!("3{rest}");
    }
    // A bare NAA: 16 hex digits (NAA 5) or 32 (NAA 6).
    if hex(&s) && ((s.len() == 16 && s.starts_with('5')) || (s.len() == 32 && s.starts_with('6'))) {
        return format!("3{s}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_normalize_to_the_udev_form() {
        let udev = "36001405e220a8397b1dcdaf6e789e6aa";
        for raw in [
            "naa.6001405e220a8397b1dcdaf6e789e6aa",
            "NAA.6001405E220A8397B1DCDAF6E789E6AA",
            "0x6001405e220a8397b1dcdaf6e789e6aa",
            "6001405e220a8397b1dcdaf6e789e6aa",
            " 36001405e220a8397b1dcdaf6e789e6aa\n",
        ] {
            assert_eq!(normalize_wwid(raw), udev, "{raw}");
        }
        assert_eq!(normalize_wwid("eui.0011223344556677"), "20011223344556677");
        assert_eq!(normalize_wwid("5000c5004f2f1b1d"), "35000c5004f2f1b1d");
        assert_eq!(normalize_wwid("t10.foo"), "t10.foo");
    }
}
