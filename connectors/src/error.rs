//! The connectors' error type, and the error chain of a forced disconnect.

use crate::fs::FsError;
use crate::host::HostError;
use crate::ids::IdError;
use crate::props::PropsError;

/// Why a connector operation failed. Messages name the device, map or portal involved.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The connection properties are invalid or incomplete.
    #[error("invalid connection properties: {0}")]
    Props(#[from] PropsError),
    /// An identifier read from the host or the properties is invalid.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The host refused a side effect (a write, a removal, a command that could not start).
    #[error(transparent)]
    Host(#[from] HostError),
    /// Reading the host tree failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A command exited with a status the connector does not accept.
    #[error(
        "`{cmd}` exited with status {status}: {}",
        describe_output(stdout, stderr)
    )]
    CommandFailed {
        /// The command line (secrets masked).
        cmd: String,
        /// Its exit status.
        status: i32,
        /// Its standard output, trimmed.
        stdout: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A connector of one protocol was given properties of another.
    #[error("{connector} connector given {given} connection properties")]
    WrongProtocol {
        /// The connector's protocol.
        connector: String,
        /// The protocol of the properties.
        given: String,
    },
    /// No connector exists for this protocol yet.
    #[error("no connector for protocol {protocol}")]
    Unsupported {
        /// The protocol asked for.
        protocol: String,
    },
    /// `enforce_multipath` was requested but multipathd is not running.
    #[error("multipath was requested and enforced but multipathd is not running: {reason}")]
    MultipathRequired {
        /// What `multipathd show status` said.
        reason: String,
    },
    /// No device appeared for the volume.
    #[error("could not find a device for {what}")]
    VolumeDeviceNotFound {
        /// The volume (portal, IQN, LUN) or device looked for.
        what: String,
    },
    /// No existing path of the volume was found (extend).
    #[error("no path of the volume exists on the host: {what}")]
    VolumePathsNotFound {
        /// The volume.
        what: String,
    },
    /// No portal could be determined for the targets (discovery yielded nothing).
    #[error("unable to find target portals for {portal}: {reason}")]
    TargetPortalsNotFound {
        /// The portal used for discovery.
        portal: String,
        /// Why.
        reason: String,
    },
    /// Logging in to a portal failed.
    #[error("login to {iqn} on portal {portal} failed: {reason}")]
    LoginFailed {
        /// The portal.
        portal: String,
        /// The target IQN.
        iqn: String,
        /// What iscsiadm reported.
        reason: String,
    },
    /// Flushing a multipath map failed (it is probably in use); nothing under it was removed
    /// unless the disconnect was forced.
    #[error("flushing multipath map {map} failed: {output}")]
    FlushFailed {
        /// The map name (`dm/name`).
        map: String,
        /// What `multipath -f` printed.
        output: String,
    },
    /// Flushing a device's buffers failed.
    #[error("flushing buffers of {device} failed: {output}")]
    DeviceFlushFailed {
        /// The device (`/dev/sdb`).
        device: String,
        /// What `blockdev --flushbufs` printed.
        output: String,
    },
    /// Device nodes were still present after their SCSI devices were deleted.
    #[error("device nodes still present after removal: {}", devices.join(", "))]
    VolumePathNotRemoved {
        /// The device names (`sdb`).
        devices: Vec<String>,
    },
    /// multipathd still lists paths after their devices were removed.
    #[error("multipathd still lists removed paths: {}", paths.join(", "))]
    MultipathdPathsNotRemoved {
        /// The device names.
        paths: Vec<String>,
    },
    /// A multipath map could not be removed from multipathd.
    #[error("multipathd could not delete map {map}: {output}")]
    MapNotRemoved {
        /// The map name.
        map: String,
        /// What multipathd printed.
        output: String,
    },
    /// Extending the volume failed.
    #[error("extending the volume failed: {reason}")]
    ExtendFailed {
        /// Why.
        reason: String,
    },
    /// A forced disconnect went on past failures; these are all of them, in order.
    #[error("disconnect finished with {} error(s), leftovers may remain: {}", errors.len(), join_errors(errors))]
    DisconnectErrors {
        /// Every failure, in the order it happened.
        errors: Vec<ConnectorError>,
    },
    /// No Fibre Channel HBA was found under `/sys/class/fc_host`.
    #[error("no Fibre Channel HBA found under /sys/class/fc_host")]
    NoFibreChannelHosts,
    /// The properties ask for something this crate does not implement yet.
    #[error("not supported: {feature}")]
    UnsupportedFeature {
        /// What is not supported.
        feature: String,
    },
    /// NVMe-oF controllers stayed in a non-live state (`connecting`) for the whole wait.
    #[error("no NVMe-oF controller of {target} became live within {waited:?} (states: {states})")]
    NvmeControllerNotLive {
        /// The subsystem NQN and portals.
        target: String,
        /// How long the connector waited.
        waited: std::time::Duration,
        /// The last states seen (`nvme1=connecting`).
        states: String,
    },
    /// A device path that does not lead to a block device under `/dev`.
    #[error("{path} is not a usable block device: {reason}")]
    NotABlockDevice {
        /// The path given.
        path: String,
        /// What it resolves to and why it is refused.
        reason: String,
    },
}

fn describe_output(stdout: &str, stderr: &str) -> String {
    match (stdout.is_empty(), stderr.is_empty()) {
        (true, true) => "no output".to_owned(),
        (false, true) => stdout.to_owned(),
        (true, false) => stderr.to_owned(),
        (false, false) => format!("{stderr} (stdout: {stdout})"),
    }
}

fn join_errors(errors: &[ConnectorError]) -> String {
    errors
        .iter()
        .enumerate()
        .map(|(i, e)| format!("[{}] {e}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// os-brick's `ExceptionChainer`: runs destructive steps under the disconnect's `force` flag.
///
/// [`ErrorChain::step`] with `force = false` returns the first failure at once (the caller
/// propagates it with `?`, so nothing after it runs); with `force = true` it records the
/// failure and lets the caller continue. [`ErrorChain::finish`] then reports everything.
#[derive(Debug, Default)]
pub(crate) struct ErrorChain {
    errors: Vec<ConnectorError>,
}

impl ErrorChain {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Runs `f`. On failure: with `force`, records it and returns `Ok(None)`; otherwise returns it.
    pub(crate) fn step<T>(
        &mut self,
        force: bool,
        what: &str,
        f: impl FnOnce() -> Result<T, ConnectorError>,
    ) -> Result<Option<T>, ConnectorError> {
        match f() {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                tracing::warn!(error = %e, force, "{what} failed");
                if force {
                    self.errors.push(e);
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Whether anything failed.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok` if nothing failed or `ignore_errors`; otherwise every failure as
    /// [`ConnectorError::DisconnectErrors`].
    pub(crate) fn finish(self, ignore_errors: bool, what: &str) -> Result<(), ConnectorError> {
        if self.errors.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            n_errors = self.errors.len(),
            "there were errors removing {what}, leftovers may remain in the system"
        );
        if ignore_errors {
            Ok(())
        } else {
            Err(ConnectorError::DisconnectErrors {
                errors: self.errors,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(n: u32) -> Result<(), ConnectorError> {
        Err(ConnectorError::VolumeDeviceNotFound {
            what: format!("dev{n}"),
        })
    }

    #[test]
    fn no_force_stops_at_first_failure() {
        let mut chain = ErrorChain::new();
        let mut ran_after = false;
        let res = (|| -> Result<(), ConnectorError> {
            chain.step(false, "one", || fail(1))?;
            ran_after = true;
            Ok(())
        })();
        assert!(!ran_after);
        assert!(res.unwrap_err().to_string().contains("dev1"));
    }

    #[test]
    fn force_continues_and_lists_every_failure() {
        let mut chain = ErrorChain::new();
        assert!(chain.step(true, "one", || fail(1)).unwrap().is_none());
        assert_eq!(chain.step(true, "ok", || Ok(5)).unwrap(), Some(5));
        chain.step(true, "two", || fail(2)).unwrap();
        assert!(!chain.is_empty());
        let err = chain.finish(false, "sda").unwrap_err();
        match &err {
            ConnectorError::DisconnectErrors { errors } => assert_eq!(errors.len(), 2),
            other => panic!("unexpected {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("[1]") && msg.contains("dev1") && msg.contains("dev2"),
            "{msg}"
        );
    }

    #[test]
    fn ignore_errors_swallows_the_chain() {
        let mut chain = ErrorChain::new();
        chain.step(true, "one", || fail(1)).unwrap();
        assert!(chain.finish(true, "sda").is_ok());
    }

    #[test]
    fn command_failed_message_shows_output() {
        let e = ConnectorError::CommandFailed {
            cmd: "multipath -f 36000".into(),
            status: 1,
            stdout: String::new(),
            stderr: "map in use".into(),
        };
        assert_eq!(
            e.to_string(),
            "`multipath -f 36000` exited with status 1: map in use"
        );
    }
}
