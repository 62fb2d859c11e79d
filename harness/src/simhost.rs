//! The simulator behind the connectors' [`Host`] port.
//!
//! Every side effect a connector performs is handed to the simulated kernel or userland, and
//! after each one the host's tree is re-materialized under the root, so the connector's next
//! read sees the new state, exactly as it would on a real host.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brick_connectors::{Cmd, CmdOutput, Host, HostError, HostPath};
use brick_sim_target::{HostId, World};

/// A shared, lockable simulated world.
pub type SharedWorld = Arc<Mutex<World>>;

/// Locks the world, recovering from a poisoned lock (a panicking test must not hide the
/// state from the failure report).
pub fn lock(world: &SharedWorld) -> MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One simulated host, seen through the [`Host`] port.
#[derive(Debug, Clone)]
pub struct SimHost {
    world: SharedWorld,
    host: HostId,
    root: PathBuf,
    journal: Arc<Mutex<Vec<String>>>,
}

impl SimHost {
    /// A port for `host` of `world`, materialized under `root` (which must exist).
    pub fn new(
        world: SharedWorld,
        host: HostId,
        root: impl Into<PathBuf>,
    ) -> std::io::Result<Self> {
        let this = Self {
            world,
            host,
            root: root.into(),
            journal: Arc::default(),
        };
        this.sync()?;
        Ok(this)
    }

    /// The simulated host this port drives.
    pub fn host_id(&self) -> HostId {
        self.host
    }

    /// The shared world.
    pub fn world(&self) -> &SharedWorld {
        &self.world
    }

    /// Brings the materialized tree up to date with the model.
    pub fn sync(&self) -> std::io::Result<()> {
        lock(&self.world).materialize(self.host, &self.root)
    }

    /// Every side effect the connector performed through this port, one line each, oldest
    /// first: the connector's log as the host saw it.
    pub fn journal(&self) -> Vec<String> {
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn note(&self, line: String) {
        let now = self.now();
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(format!("[{:>8.3}s] {line}", now.as_secs_f64()));
    }

    fn sync_logged(&self) {
        if let Err(err) = self.sync() {
            tracing::error!(root = %self.root.display(), %err, "materializing the simulated host failed");
        }
    }
}

impl Host for SimHost {
    fn root(&self) -> &Path {
        &self.root
    }

    fn write_control(&self, path: &HostPath, content: &str) -> Result<(), HostError> {
        let result = lock(&self.world).write_control(self.host, path.as_str(), content);
        self.sync_logged();
        tracing::debug!(%path, content, ok = result.is_ok(), "sim write_control");
        self.note(match &result {
            Ok(()) => format!("write {path} <- {content:?}"),
            Err(err) => format!("write {path} <- {content:?} FAILED: {err}"),
        });
        result.map_err(|err| HostError::Write {
            path: path.clone(),
            content: content.to_owned(),
            source: err.into_io(),
        })
    }

    fn remove(&self, path: &HostPath) -> Result<(), HostError> {
        let result = lock(&self.world).remove(self.host, path.as_str());
        self.sync_logged();
        self.note(match &result {
            Ok(()) => format!("remove {path}"),
            Err(err) => format!("remove {path} FAILED: {err}"),
        });
        result.map_err(|err| HostError::Remove {
            path: path.clone(),
            source: err.into_io(),
        })
    }

    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, HostError> {
        let argv = cmd.argv();
        let out = lock(&self.world).exec(self.host, &argv, cmd.stdin.as_deref());
        // Queries change nothing: the materialized tree is still current.
        if World::command_may_change_host(&argv) {
            self.sync_logged();
        }
        tracing::debug!(cmd = %cmd, status = out.status, "sim run");
        let stdin = cmd
            .stdin
            .as_deref()
            .map(|s| format!(" <<< {s:?}"))
            .unwrap_or_default();
        self.note(format!("run {cmd}{stdin} -> exit {}", out.status));
        Ok(CmdOutput {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }

    fn sleep(&self, duration: Duration) {
        let changed = {
            let mut w = lock(&self.world);
            let due = w.next_event_due();
            let until = w.now().saturating_add(duration);
            w.advance(duration);
            due.is_some_and(|d| d <= until)
        };
        // Only delivered events change the host; an idle wait leaves the tree as it was.
        if changed {
            self.sync_logged();
        }
        self.note(format!("sleep {duration:?}"));
    }

    fn now(&self) -> Duration {
        lock(&self.world).now()
    }
}
