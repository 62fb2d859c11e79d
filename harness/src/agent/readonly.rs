//! [`ReadOnlyHost`]: a `Host` that refuses every side effect, so the agent is read-only by
//! construction: even a connector bug cannot write, remove, run a command or sleep.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use brick_connectors::{Cmd, CmdOutput, Host, HostError, HostPath};

/// A host whose tree can be read under `root` and whose every side effect is refused.
///
/// Refused attempts are logged and remembered ([`ReadOnlyHost::refused`]) so the agent can
/// report them. `sleep` returns at once and advances a virtual clock that `now` reads, so a
/// connector's wait loop ends after its virtual timeout instead of spinning or blocking.
#[derive(Debug)]
pub struct ReadOnlyHost {
    root: PathBuf,
    refused: Mutex<Vec<String>>,
    clock: Mutex<Duration>,
}

impl ReadOnlyHost {
    /// A read-only view of the tree under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            refused: Mutex::new(Vec::new()),
            clock: Mutex::new(Duration::ZERO),
        }
    }

    /// The side effects refused so far, one line each.
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn refuse(&self, what: String) -> std::io::Error {
        tracing::warn!(what, "read-only agent refused a side effect");
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(what);
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "the path agent is read-only",
        )
    }
}

impl Host for ReadOnlyHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn write_control(&self, path: &HostPath, content: &str) -> Result<(), HostError> {
        let source = self.refuse(format!("write {content:?} to {path}"));
        Err(HostError::Write {
            path: path.clone(),
            content: content.to_owned(),
            source,
        })
    }

    fn remove(&self, path: &HostPath) -> Result<(), HostError> {
        let source = self.refuse(format!("remove {path}"));
        Err(HostError::Remove {
            path: path.clone(),
            source,
        })
    }

    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, HostError> {
        let source = self.refuse(format!("run `{cmd}`"));
        Err(HostError::Spawn {
            cmd: cmd.to_string(),
            source,
        })
    }

    fn sleep(&self, duration: Duration) {
        let mut clock = self
            .clock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *clock = clock.saturating_add(duration);
    }

    fn now(&self) -> Duration {
        *self
            .clock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_side_effect_is_refused_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/scsi_host/host0")).unwrap();
        let scan = dir.path().join("sys/class/scsi_host/host0/scan");
        std::fs::write(&scan, "").unwrap();
        std::fs::write(dir.path().join("victim"), "keep").unwrap();
        let host = ReadOnlyHost::new(dir.path());
        let p = HostPath::new("/sys/class/scsi_host/host0/scan").unwrap();
        assert!(host.write_control(&p, "- - -").is_err());
        assert!(host.remove(&HostPath::new("/victim").unwrap()).is_err());
        assert!(
            host.run(&Cmd::new("iscsiadm").arg("-m").arg("session"))
                .is_err()
        );
        assert_eq!(std::fs::read_to_string(&scan).unwrap(), "");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("victim")).unwrap(),
            "keep"
        );
        let refused = host.refused();
        assert_eq!(refused.len(), 3, "{refused:?}");
        assert!(refused[2].contains("iscsiadm -m session"));
    }

    #[test]
    fn sleep_is_virtual() {
        let host = ReadOnlyHost::new("/nonexistent");
        let start = std::time::Instant::now();
        host.sleep(Duration::from_secs(3600));
        assert_eq!(host.now(), Duration::from_secs(3600));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
