//! A simulated array that lives in a file: the state behind `brick sim array --state FILE`.
//!
//! The file is JSON lines: a header ([`JournalHeader`]: the seed and the array's spec), then
//! one [`ArrayOp`] per line, appended and never rewritten. Every process that reads it
//! rebuilds the same array by replaying the operations on a fresh [`World`] with the header's
//! seed (the simulator is deterministic: identities depend only on the seed and the order of
//! creations). That lets an exec-tier `target.toml` drive a simulated array through shell
//! commands, each a separate `brick` process, while the test process keeps a simulated
//! *host* whose world replays the same journal before each host-side step
//! ([`ReplayHost`]): the array side goes only through the commands, the host side sees what
//! they did. Single writer: steps run one at a time.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use brick_sim_target::{ArrayId, ArraySpec, HostId, HostSpec, VolumeId, World};
use serde::{Deserialize, Serialize};

use super::TargetError;
use crate::simhost::{DiskSync, SimHost, lock};

/// The journal format version written in the header.
pub const JOURNAL_VERSION: u32 = 1;

/// The first line of a state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalHeader {
    /// Always [`JOURNAL_VERSION`].
    pub brick_sim_array: u32,
    /// The simulator's seed.
    pub seed: u64,
    /// The array.
    pub array: ArraySpec,
}

/// One array-side operation, as the journal records it. Hosts are named by initiator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ArrayOp {
    /// Create a volume.
    Create {
        /// Volume name on the array.
        volume: String,
        /// Size in bytes.
        size_bytes: u64,
    },
    /// Map a volume to an initiator.
    Map {
        /// Volume name.
        volume: String,
        /// Initiator IQN.
        initiator: String,
    },
    /// Unmap a volume from an initiator.
    Unmap {
        /// Volume name.
        volume: String,
        /// Initiator IQN.
        initiator: String,
    },
    /// Delete a volume.
    Delete {
        /// Volume name.
        volume: String,
    },
}

/// Applies journal operations to a world, keeping the names the journal uses.
#[derive(Debug, Clone)]
pub struct Replayer {
    array: ArrayId,
    volumes: BTreeMap<String, VolumeId>,
    hosts: BTreeMap<String, HostId>,
    applied: usize,
}

impl Replayer {
    /// Adds the header's array to `world`. Hosts already in the world are matched by
    /// initiator IQN; unknown initiators get a placeholder host when first mapped.
    pub fn new(world: &mut World, header: &JournalHeader) -> Self {
        let array = world.add_array(header.array.clone());
        let hosts = world
            .host_ids()
            .into_iter()
            .map(|h| (world.initiator(h).to_owned(), h))
            .collect();
        Self {
            array,
            volumes: BTreeMap::new(),
            hosts,
            applied: 0,
        }
    }

    /// How many operations were applied so far.
    pub fn applied(&self) -> usize {
        self.applied
    }

    fn host(&mut self, world: &mut World, initiator: &str) -> HostId {
        if let Some(h) = self.hosts.get(initiator) {
            return *h;
        }
        let mut spec = HostSpec::new(format!("initiator-{}", self.hosts.len()));
        spec.initiator_iqn = initiator.to_owned();
        let h = world.add_host(spec);
        self.hosts.insert(initiator.to_owned(), h);
        h
    }

    /// The simulator's id of a volume named by the journal.
    pub fn volume(&self, name: &str) -> Result<VolumeId, TargetError> {
        self.volumes
            .get(name)
            .copied()
            .ok_or_else(|| TargetError::Journal(format!("no volume `{name}` on the array")))
    }

    /// Applies one operation.
    pub fn apply(&mut self, world: &mut World, op: &ArrayOp) -> Result<(), TargetError> {
        let sim = |e: brick_sim_target::SimError| TargetError::Journal(e.to_string());
        match op {
            ArrayOp::Create { volume, size_bytes } => {
                if self.volumes.contains_key(volume) {
                    return Err(TargetError::Journal(format!(
                        "volume `{volume}` already exists"
                    )));
                }
                let id = world
                    .create_volume(self.array, volume, *size_bytes)
                    .map_err(sim)?;
                self.volumes.insert(volume.clone(), id);
            }
            ArrayOp::Map { volume, initiator } => {
                let (v, h) = (self.volume(volume)?, self.host(world, initiator));
                world.map_volume(v, h).map_err(sim)?;
            }
            ArrayOp::Unmap { volume, initiator } => {
                let (v, h) = (self.volume(volume)?, self.host(world, initiator));
                world.unmap_volume(v, h).map_err(sim)?;
            }
            ArrayOp::Delete { volume } => {
                let v = self.volume(volume)?;
                world.delete_volume(v).map_err(sim)?;
            }
        }
        self.applied += 1;
        Ok(())
    }

    /// Applies the operations of `ops` not applied yet; returns how many were new.
    pub fn catch_up(&mut self, world: &mut World, ops: &[ArrayOp]) -> Result<usize, TargetError> {
        let new = ops.get(self.applied..).unwrap_or_default();
        for op in new {
            self.apply(world, op)?;
        }
        Ok(new.len())
    }

    /// The host id of `initiator`, adding a placeholder host if needed.
    pub fn host_for(&mut self, world: &mut World, initiator: &str) -> HostId {
        self.host(world, initiator)
    }
}

/// A state file: header plus journal.
#[derive(Debug, Clone)]
pub struct ArrayJournal {
    path: PathBuf,
    header: JournalHeader,
    ops: Vec<ArrayOp>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> TargetError {
    move |source| TargetError::Io { what, source }
}

impl ArrayJournal {
    /// Starts a new state file at `path` (replacing any old one).
    pub fn create(path: &Path, seed: u64, array: ArraySpec) -> Result<Self, TargetError> {
        let header = JournalHeader {
            brick_sim_array: JOURNAL_VERSION,
            seed,
            array,
        };
        let line = serde_json::to_string(&header)
            .map_err(|e| TargetError::Journal(format!("encoding the header: {e}")))?;
        std::fs::write(path, line + "\n").map_err(io(format!("writing `{}`", path.display())))?;
        Ok(Self {
            path: path.to_owned(),
            header,
            ops: Vec::new(),
        })
    }

    /// Reads a state file.
    pub fn open(path: &Path) -> Result<Self, TargetError> {
        let text = std::fs::read_to_string(path)
            .map_err(io(format!("reading array state `{}`", path.display())))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let bad = |n: usize, e: serde_json::Error| {
            TargetError::Journal(format!("{}:{}: {e}", path.display(), n + 1))
        };
        let (n, first) = lines.next().ok_or_else(|| {
            TargetError::Journal(format!("`{}` is empty: run `init` first", path.display()))
        })?;
        let header: JournalHeader = serde_json::from_str(first).map_err(|e| bad(n, e))?;
        if header.brick_sim_array != JOURNAL_VERSION {
            return Err(TargetError::Journal(format!(
                "`{}` has journal version {}, this brick reads {JOURNAL_VERSION}",
                path.display(),
                header.brick_sim_array
            )));
        }
        let ops = lines
            .map(|(n, l)| serde_json::from_str(l).map_err(|e| bad(n, e)))
            .collect::<Result<Vec<ArrayOp>, _>>()?;
        Ok(Self {
            path: path.to_owned(),
            header,
            ops,
        })
    }

    /// The header.
    pub fn header(&self) -> &JournalHeader {
        &self.header
    }

    /// The operations, oldest first.
    pub fn ops(&self) -> &[ArrayOp] {
        &self.ops
    }

    /// A fresh world with the array after every operation, and the replayer that built it.
    pub fn world(&self) -> Result<(World, Replayer), TargetError> {
        let mut world = World::new(self.header.seed);
        let mut rep = Replayer::new(&mut world, &self.header);
        rep.catch_up(&mut world, &self.ops)?;
        Ok((world, rep))
    }

    /// Applies `op` (refused if the array refuses it) and appends it to the file.
    pub fn apply(&mut self, op: ArrayOp) -> Result<(), TargetError> {
        let (mut world, mut rep) = self.world()?;
        rep.apply(&mut world, &op)?;
        let line = serde_json::to_string(&op)
            .map_err(|e| TargetError::Journal(format!("encoding an operation: {e}")))?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io(format!("opening `{}`", self.path.display())))?;
        file.write_all(format!("{line}\n").as_bytes())
            .map_err(io(format!("appending to `{}`", self.path.display())))?;
        self.ops.push(op);
        Ok(())
    }

    /// The identity (udev form) of `volume`, deleted volumes included.
    pub fn identity(&self, volume: &str) -> Result<String, TargetError> {
        let (world, rep) = self.world()?;
        let id = rep.volume(volume)?;
        world
            .volume_record(id)
            .map(|v| v.wwid.clone())
            .ok_or_else(|| TargetError::Journal(format!("no volume `{volume}` on the array")))
    }

    /// The connection properties `initiator` gets for `volume` (os-brick JSON).
    pub fn props(&self, volume: &str, initiator: &str) -> Result<serde_json::Value, TargetError> {
        let (mut world, mut rep) = self.world()?;
        let v = rep.volume(volume)?;
        let h = rep.host_for(&mut world, initiator);
        world
            .connection_properties(v, h)
            .map_err(|e| TargetError::Journal(e.to_string()))
    }
}

/// A simulated host whose array side is a state file written by other processes.
///
/// Before each host-side step, [`ReplayHost::refresh`] applies the journal's new operations
/// to this host's world and re-materializes the host, so the simulated kernel sees what the
/// array commands did.
#[derive(Debug)]
pub struct ReplayHost {
    state: PathBuf,
    world: Arc<Mutex<World>>,
    replayer: Replayer,
    port: SimHost,
    _root: tempfile::TempDir,
}

impl ReplayHost {
    /// A host built from `spec` in a world seeded from the state file at `state`.
    pub fn new(state: &Path, spec: HostSpec) -> Result<Self, TargetError> {
        let journal = ArrayJournal::open(state)?;
        let mut world = World::new(journal.header().seed);
        let hid = world.add_host(spec);
        let mut replayer = Replayer::new(&mut world, journal.header());
        replayer.catch_up(&mut world, journal.ops())?;
        let world = Arc::new(Mutex::new(world));
        let root = tempfile::Builder::new()
            .prefix("brick-replay-")
            .tempdir_in(crate::lab::scratch_dir())
            .map_err(io("creating a host root".into()))?;
        let port = SimHost::new(world.clone(), hid, root.path(), DiskSync::Always)
            .map_err(io("materializing the replayed host".into()))?;
        Ok(Self {
            state: state.to_owned(),
            world,
            replayer,
            port,
            _root: root,
        })
    }

    /// Applies what the array commands did since the last refresh.
    pub fn refresh(&mut self) -> Result<(), TargetError> {
        let journal = ArrayJournal::open(&self.state)?;
        let new = {
            let mut world = lock(&self.world);
            self.replayer.catch_up(&mut world, journal.ops())?
        };
        if new > 0 {
            self.port
                .sync()
                .map_err(io("materializing the replayed host".into()))?;
        }
        Ok(())
    }

    /// Delivers pending udev and multipathd events and re-materializes.
    pub fn settle(&mut self) -> Result<(), TargetError> {
        lock(&self.world).settle();
        self.port
            .sync()
            .map_err(io("materializing the replayed host".into()))
    }

    /// The host port.
    pub fn port(&self) -> &SimHost {
        &self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ArraySpec {
        ArraySpec::new("array-1", vec!["10.0.2.2:3260".into()])
    }

    #[test]
    fn every_reader_rebuilds_the_same_array() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("array.jsonl");
        let mut j = ArrayJournal::create(&state, 7, spec()).unwrap();
        j.apply(ArrayOp::Create {
            volume: "v1".into(),
            size_bytes: 1 << 30,
        })
        .unwrap();
        j.apply(ArrayOp::Map {
            volume: "v1".into(),
            initiator: "iqn.1993-08.org.debian:01:h1".into(),
        })
        .unwrap();
        let wwid = j.identity("v1").unwrap();
        // Another process: reopen and compare.
        let again = ArrayJournal::open(&state).unwrap();
        assert_eq!(again.ops().len(), 2);
        assert_eq!(again.identity("v1").unwrap(), wwid);
        let props = again.props("v1", "iqn.1993-08.org.debian:01:h1").unwrap();
        assert_eq!(props["data"]["target_lun"], 1, "{props}");
        // A refused operation is not journalled.
        let mut j = again;
        let err = j
            .apply(ArrayOp::Delete {
                volume: "nope".into(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(ArrayJournal::open(&state).unwrap().ops().len(), 2);
    }

    #[test]
    fn a_replay_host_sees_array_changes_made_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("array.jsonl");
        let mut j = ArrayJournal::create(&state, 1, spec()).unwrap();
        let host_spec = HostSpec::new("h1");
        let initiator = host_spec.initiator_iqn.clone();
        let mut host = ReplayHost::new(&state, host_spec).unwrap();
        j.apply(ArrayOp::Create {
            volume: "v1".into(),
            size_bytes: 1 << 30,
        })
        .unwrap();
        j.apply(ArrayOp::Map {
            volume: "v1".into(),
            initiator,
        })
        .unwrap();
        host.refresh().unwrap();
        let world = lock(&host.world);
        let v = host.replayer.volume("v1").unwrap();
        assert_eq!(world.volume(v).unwrap().wwid, j.identity("v1").unwrap());
        assert_eq!(host.replayer.applied(), 2);
    }

    #[test]
    fn garbage_state_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("array.jsonl");
        std::fs::write(&state, "").unwrap();
        assert!(ArrayJournal::open(&state).is_err());
        std::fs::write(&state, "{not json\n").unwrap();
        let err = ArrayJournal::open(&state).unwrap_err().to_string();
        assert!(err.contains(":1:"), "{err}");
        let j = ArrayJournal::create(&state, 0, spec()).unwrap();
        drop(j);
        let mut text = std::fs::read_to_string(&state).unwrap();
        text.push_str("{\"op\":\"explode\"}\n");
        std::fs::write(&state, text).unwrap();
        let err = ArrayJournal::open(&state).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
    }
}
