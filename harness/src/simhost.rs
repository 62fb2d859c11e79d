//! The simulator behind the connectors' [`Host`] port.
//!
//! Every side effect a connector performs is handed to the simulated kernel or userland.
//! After each one the port takes the host's new tree from the model ([`World::tree`]) and
//! serves the connector's reads from it through [`Host::view`], so the connector's next read
//! sees the new state, exactly as it would on a real host.
//!
//! # Why reads come from memory (performance design)
//!
//! Re-materializing the tree into the root directory after every port call made a
//! simulated attach+detach cycle create and delete hundreds of real files: system time was
//! over half of a property run, and single-path cycles ran at ~150/s. Three options were
//! measured: (a) an incremental tree cache in the world with dirty tracking per
//! device/session/map, (b) an in-memory read backend for [`HostFs`](brick_connectors::HostFs)
//! with lazy materialization, and (c) cheaper materialization (batching, skipping unchanged
//! subtrees). (c) still pays a syscall per changed node, which is most of the cost of a cycle;
//! (a) only helps once the files are gone, and touches every mutation site of the model.
//! (b) removes the file system from the hot path with one small, connector-side trait whose
//! semantics are pinned by running the same `HostFs` checks against both backends
//! (`harness/tests/view_equivalence.rs`). So reads come from memory, and the directory is
//! written ([`World::materialize_tree`], incremental as before):
//!
//! - with [`DiskSync::Always`], after every change, as before (kept roots: scenario
//!   `--keep` directories that people and tools open by path);
//! - with [`DiskSync::OnDemand`], whenever someone asks for the root ([`Host::root`],
//!   `Lab::root`, `Lab::tree_listing`, the agent, os-brick's oracle): whoever learns where the
//!   tree lives finds it current. Labs with temporary roots use this mode.
//!
//! A sync only marks the view out of date; the tree is taken from the model at the first
//! read (or flush) after it, so a run of side effects with no read in between costs one
//! render, not one per call ([`World::tree_shared`]: the world keeps that tree for its own
//! lookups until the model changes, and joins a new state mostly from cached parts). The directory always receives exactly the tree the view served,
//! so both backends agree at every point. The view locks the world to render: never read
//! through the port while holding [`lock`] on its world.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use brick_connectors::{Cmd, CmdOutput, Host, HostError, HostPath, HostView, ViewEntry};
use brick_sim_target::{HostId, Node, Tree, TreeCursor, World};

/// A shared, lockable simulated world.
pub type SharedWorld = Arc<Mutex<World>>;

/// Locks the world, recovering from a poisoned lock (a panicking test must not hide the
/// state from the failure report).
pub fn lock(world: &SharedWorld) -> MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// When a [`SimHost`] writes the host's tree into its root directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSync {
    /// After every change (the directory is always current).
    Always,
    /// When someone asks for the root ([`Host::root`]); reads through the port come from
    /// memory meanwhile.
    OnDemand,
}

/// The tree the port serves (`None`: render it at the next read), and whether the directory
/// still has to receive it.
#[derive(Debug, Default)]
struct View {
    tree: Option<Arc<Tree>>,
    disk_stale: bool,
    /// Where the last lookup left off: path resolution asks about each prefix in turn.
    cursor: TreeCursor,
}

/// One simulated host, seen through the [`Host`] port.
#[derive(Debug, Clone)]
pub struct SimHost {
    world: SharedWorld,
    host: HostId,
    root: PathBuf,
    disk: DiskSync,
    view: Arc<Mutex<View>>,
    /// (time, line): formatted when someone asks ([`SimHost::journal`]), not on the hot path.
    journal: Arc<Mutex<Vec<(Duration, String)>>>,
}

impl SimHost {
    /// A port for `host` of `world`, materialized under `root` (which must exist) now and
    /// then as `disk` says.
    pub fn new(
        world: SharedWorld,
        host: HostId,
        root: impl Into<PathBuf>,
        disk: DiskSync,
    ) -> std::io::Result<Self> {
        let this = Self {
            world,
            host,
            root: root.into(),
            disk,
            view: Arc::default(),
            journal: Arc::default(),
        };
        this.sync()?;
        this.flush()?;
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

    /// Brings the port's view up to date with the model (and the directory too with
    /// [`DiskSync::Always`]).
    pub fn sync(&self) -> std::io::Result<()> {
        {
            let mut v = self.view_lock();
            v.tree = None;
            v.disk_stale = true;
        }
        if self.disk == DiskSync::Always {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the view's tree into the root directory if it is not there yet.
    pub fn flush(&self) -> std::io::Result<()> {
        let tree = {
            let mut v = self.view_lock();
            if !v.disk_stale {
                return Ok(());
            }
            v.disk_stale = false;
            self.current(&mut v)
        };
        let result = lock(&self.world).materialize_tree(self.host, &self.root, (*tree).clone());
        if result.is_err() {
            self.view_lock().disk_stale = true;
        }
        result
    }

    fn current(&self, v: &mut View) -> Arc<Tree> {
        match &v.tree {
            Some(t) => Arc::clone(t),
            None => {
                let t = lock(&self.world).tree_shared(self.host);
                v.tree = Some(Arc::clone(&t));
                t
            }
        }
    }

    fn tree_now(&self) -> Arc<Tree> {
        let mut v = self.view_lock();
        self.current(&mut v)
    }

    fn view_lock(&self) -> MutexGuard<'_, View> {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every side effect the connector performed through this port, one line each, oldest
    /// first: the connector's log as the host saw it.
    pub fn journal(&self) -> Vec<String> {
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(now, line)| format!("[{:>8.3}s] {line}", now.as_secs_f64()))
            .collect()
    }

    fn note(&self, line: String) {
        let now = self.now();
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((now, line));
    }

    fn sync_logged(&self) {
        if let Err(err) = self.sync() {
            tracing::error!(root = %self.root.display(), %err, "materializing the simulated host failed");
        }
    }
}

/// The view of a [`Tree`] that the materialized directory gives: device nodes and
/// unreadable attributes are written as empty regular files there, so they read as such here.
#[derive(Debug, Clone, Copy)]
pub struct TreeView<'a> {
    tree: &'a Tree,
    root: &'a Path,
}

impl<'a> TreeView<'a> {
    /// Serves `tree`, which stands for the directory `root`.
    pub fn new(tree: &'a Tree, root: &'a Path) -> Self {
        Self { tree, root }
    }
}

const ENOENT: i32 = 2;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;

fn tree_entry(tree: &Tree, path: &str) -> Option<ViewEntry> {
    if path == "/" {
        return Some(ViewEntry::Dir);
    }
    tree.get(path).map(view_entry)
}

fn view_entry(node: &Node) -> ViewEntry {
    match node {
        Node::Dir { .. } => ViewEntry::Dir,
        Node::Link { target } => ViewEntry::Link(target.clone()),
        Node::File { .. } | Node::Block { .. } | Node::Char { .. } | Node::Unreadable { .. } => {
            ViewEntry::File
        }
    }
}

fn tree_read(tree: &Tree, path: &str) -> std::io::Result<Vec<u8>> {
    let err = std::io::Error::from_raw_os_error;
    if path == "/" {
        return Err(err(EISDIR));
    }
    match tree.get(path) {
        Some(Node::File { content, .. }) => Ok(content.clone()),
        Some(Node::Block { .. } | Node::Char { .. } | Node::Unreadable { .. }) => Ok(Vec::new()),
        Some(Node::Dir { .. }) => Err(err(EISDIR)),
        // HostFs hands over resolved paths: a link here is one it could not follow.
        Some(Node::Link { .. }) | None => Err(err(ENOENT)),
    }
}

fn tree_list(tree: &Tree, path: &str) -> std::io::Result<Vec<String>> {
    match tree_entry(tree, path) {
        Some(ViewEntry::Dir) => Ok(tree.children(path).map(|(n, _)| n.to_owned()).collect()),
        Some(_) => Err(std::io::Error::from_raw_os_error(ENOTDIR)),
        None => Err(std::io::Error::from_raw_os_error(ENOENT)),
    }
}

impl HostView for TreeView<'_> {
    fn root(&self) -> &Path {
        self.root
    }
    fn entry(&self, path: &str) -> Option<ViewEntry> {
        tree_entry(self.tree, path)
    }
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        tree_read(self.tree, path)
    }
    fn list(&self, path: &str) -> std::io::Result<Vec<String>> {
        tree_list(self.tree, path)
    }
}

/// The port's reads: the tree rendered at the first read after the last sync, the same one
/// the directory receives.
impl HostView for SimHost {
    fn root(&self) -> &Path {
        &self.root
    }
    /// [`tree_entry`], through the view's cursor.
    fn entry(&self, path: &str) -> Option<ViewEntry> {
        if path == "/" {
            return Some(ViewEntry::Dir);
        }
        let mut v = self.view_lock();
        let tree = self.current(&mut v);
        tree.get_near(path, &mut v.cursor, |node| node.map(view_entry))
    }
    fn read(&self, path: &str) -> std::io::Result<Vec<u8>> {
        tree_read(&self.tree_now(), path)
    }
    fn list(&self, path: &str) -> std::io::Result<Vec<String>> {
        tree_list(&self.tree_now(), path)
    }
}

impl Host for SimHost {
    /// The root directory, brought up to date first: whoever asks where the tree lives
    /// (a listing, a tool, the agent) reads the current state.
    fn root(&self) -> &Path {
        if let Err(err) = self.flush() {
            tracing::error!(root = %self.root.display(), %err, "materializing the simulated host failed");
        }
        &self.root
    }

    fn view(&self) -> Option<&dyn HostView> {
        Some(self)
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
        let out = lock(&self.world).exec(self.host, argv, cmd.stdin.as_deref());
        // Queries change nothing: the materialized tree is still current.
        if World::command_may_change_host(argv) {
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
