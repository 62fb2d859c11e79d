//! A lab: one simulated world (arrays and hosts), each host materialized under its own root,
//! driven through the real connectors, with a record of what the test expects to be attached.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use brick_connectors::{
    ConnectionProperties, Connector, ConnectorConfig, DeviceInfo, DisconnectOptions, Protocol,
    VolumePaths, connector_for,
};
use brick_sim_target::{ArrayId, ArraySpec, Fault, FcPortState, HostId, HostSpec, VolumeId, World};

use crate::checks::{self, Violation};
use crate::error::LabError;
use crate::simhost::{DiskSync, SharedWorld, SimHost, lock};

/// How a lab host is set up.
#[derive(Debug, Clone)]
pub struct LabHostSpec {
    /// The simulated host (initiator, multipathd, udev delay...).
    pub sim: HostSpec,
    /// Whether the connector runs with `use_multipath` (os-brick's `multipath` option).
    pub use_multipath: bool,
}

impl LabHostSpec {
    /// A single-path host named `name`.
    pub fn single(name: &str) -> Self {
        Self {
            sim: HostSpec::new(name),
            use_multipath: false,
        }
    }

    /// A host with multipathd running and the connector configured for multipath.
    pub fn multipath(name: &str) -> Self {
        let mut sim = HostSpec::new(name);
        sim.multipathd = true;
        Self {
            sim,
            use_multipath: true,
        }
    }
}

/// Where temporary host roots go: `BRICK_TMPDIR` if set, else `/dev/shm` when it is a
/// writable directory (a simulated host is thousands of tiny files; tmpfs makes materializing
/// them an order of magnitude faster than ext4), else the system temporary directory.
pub fn scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BRICK_TMPDIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let writable = std::fs::metadata(shm)
        .map(|m| m.is_dir() && !m.permissions().readonly())
        .unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Where a host's root lives: a temporary directory removed with the lab, or a kept path.
#[derive(Debug)]
enum RootDir {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl RootDir {
    fn path(&self) -> &Path {
        match self {
            Self::Temp(dir) => dir.path(),
            Self::Kept(path) => path,
        }
    }
}

#[derive(Debug)]
struct LabHost {
    name: String,
    id: HostId,
    port: SimHost,
    config: ConnectorConfig,
    _root: RootDir,
}

/// A volume attached on a host, as the lab recorded it.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The properties the attach used.
    pub props: ConnectionProperties,
    /// What `connect_volume` returned.
    pub device: DeviceInfo,
}

/// A simulated world plus the connectors that run on its hosts.
#[derive(Debug)]
pub struct Lab {
    world: SharedWorld,
    hosts: Vec<LabHost>,
    arrays: BTreeMap<String, ArrayId>,
    volumes: BTreeMap<String, VolumeId>,
    attached: BTreeMap<(String, String), Attachment>,
    /// Per host, FC HBA WWPNs left out of the `initiator_target_map` the array hands out.
    itmap_excluded: BTreeMap<String, BTreeSet<u64>>,
}

impl Lab {
    /// An empty lab whose simulator is seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            world: Arc::new(Mutex::new(World::new(seed))),
            hosts: Vec::new(),
            arrays: BTreeMap::new(),
            volumes: BTreeMap::new(),
            attached: BTreeMap::new(),
            itmap_excluded: BTreeMap::new(),
        }
    }

    /// The shared simulated world.
    pub fn world(&self) -> &SharedWorld {
        &self.world
    }

    /// Adds a host materialized under a fresh temporary directory.
    pub fn add_host(&mut self, spec: LabHostSpec) -> Result<(), LabError> {
        let dir = tempfile::Builder::new()
            .prefix("brick-host-")
            .tempdir_in(scratch_dir())
            .map_err(|source| LabError::Io {
                what: "creating a host root".into(),
                source,
            })?;
        self.add_host_with_root(spec, RootDir::Temp(dir))
    }

    /// Adds a host materialized under `root` (created if missing, kept after the lab).
    pub fn add_host_at(&mut self, spec: LabHostSpec, root: &Path) -> Result<(), LabError> {
        std::fs::create_dir_all(root).map_err(|source| LabError::Io {
            what: format!("creating host root `{}`", root.display()),
            source,
        })?;
        self.add_host_with_root(spec, RootDir::Kept(root.to_path_buf()))
    }

    fn add_host_with_root(&mut self, spec: LabHostSpec, root: RootDir) -> Result<(), LabError> {
        let name = spec.sim.name.clone();
        if self.hosts.iter().any(|h| h.name == name) {
            return Err(LabError::Duplicate { kind: "host", name });
        }
        let id = lock(&self.world).add_host(spec.sim);
        // A temporary root is private to the lab: it is written when someone asks for it
        // (`Lab::root`); a kept root is a directory people open by path, so it stays current.
        let disk = match root {
            RootDir::Temp(_) => DiskSync::OnDemand,
            RootDir::Kept(_) => DiskSync::Always,
        };
        let port = SimHost::new(self.world.clone(), id, root.path(), disk).map_err(|source| {
            LabError::Io {
                what: format!("materializing host `{name}`"),
                source,
            }
        })?;
        let config = ConnectorConfig {
            use_multipath: spec.use_multipath,
            ..ConnectorConfig::default()
        };
        self.hosts.push(LabHost {
            name,
            id,
            port,
            config,
            _root: root,
        });
        Ok(())
    }

    /// Adds an array.
    pub fn add_array(&mut self, spec: ArraySpec) -> Result<(), LabError> {
        let name = spec.name.clone();
        if self.arrays.contains_key(&name) {
            return Err(LabError::Duplicate {
                kind: "array",
                name,
            });
        }
        let id = lock(&self.world).add_array(spec);
        self.arrays.insert(name, id);
        Ok(())
    }

    /// Zones every FC HBA of `host` with every target port of `array` (FC arrays only).
    pub fn zone(&mut self, host: &str, array: &str) -> Result<(), LabError> {
        let hid = self.host_id(host)?;
        let aid = *self.arrays.get(array).ok_or_else(|| LabError::Unknown {
            kind: "array",
            name: array.to_owned(),
        })?;
        lock(&self.world).zone_host_to_array(hid, aid)?;
        self.sync_all()
    }

    /// Zones two FC ports (an HBA and a target port, by WWPN) on their common fabric.
    pub fn zone_ports(&mut self, a: u64, b: u64) -> Result<(), LabError> {
        lock(&self.world).zone(a, b)?;
        self.sync_all()
    }

    /// Sets the port state of `host`'s FC HBA `wwpn` (`Linkdown` for a pulled cable).
    pub fn set_hba_port_state(
        &mut self,
        host: &str,
        wwpn: u64,
        state: FcPortState,
    ) -> Result<(), LabError> {
        let hid = self.host_id(host)?;
        lock(&self.world).set_hba_port_state(hid, wwpn, state)?;
        self.sync_all()
    }

    /// Leaves `host`'s HBA `wwpn` out of the `initiator_target_map` of every connection
    /// property the lab hands out for `host` from now on (the array's host definition does not
    /// list it): a connector must then not scan through it, zoned or not.
    pub fn exclude_from_initiator_target_map(&mut self, host: &str, wwpn: u64) {
        self.itmap_excluded
            .entry(host.to_owned())
            .or_default()
            .insert(wwpn);
    }

    fn host(&self, name: &str) -> Result<&LabHost, LabError> {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .ok_or_else(|| LabError::Unknown {
                kind: "host",
                name: name.to_owned(),
            })
    }

    /// The simulator's id of volume `name`.
    pub fn volume_id(&self, name: &str) -> Result<VolumeId, LabError> {
        self.volumes
            .get(name)
            .copied()
            .ok_or_else(|| LabError::Unknown {
                kind: "volume",
                name: name.to_owned(),
            })
    }

    /// The simulator's id of host `name`.
    pub fn host_id(&self, name: &str) -> Result<HostId, LabError> {
        self.host(name).map(|h| h.id)
    }

    /// The [`SimHost`] port of host `name` (the simulator behind the connectors' `Host` port).
    pub fn sim_host(&self, host: &str) -> Result<&SimHost, LabError> {
        Ok(&self.host(host)?.port)
    }

    /// The root directory of host `name`.
    pub fn root(&self, host: &str) -> Result<&Path, LabError> {
        Ok(brick_connectors::Host::root(&self.host(host)?.port))
    }

    /// Names of the hosts, in the order they were added.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Names of the volumes created so far (deleted ones included).
    pub fn volume_names(&self) -> Vec<String> {
        self.volumes.keys().cloned().collect()
    }

    /// Creates volume `name` on `array`.
    pub fn create_volume(
        &mut self,
        name: &str,
        array: &str,
        size_bytes: u64,
    ) -> Result<(), LabError> {
        self.create_volume_as(name, name, array, size_bytes)
    }

    /// Creates volume `name` on `array`, where the array calls it `array_name`. Arrays that
    /// name targets after volumes (per-volume IQNs) and recycle names reuse an IQN this way:
    /// a new volume gets the name, hence the IQN, of a deleted one.
    pub fn create_volume_as(
        &mut self,
        name: &str,
        array_name: &str,
        array: &str,
        size_bytes: u64,
    ) -> Result<(), LabError> {
        if self.volumes.contains_key(name) {
            return Err(LabError::Duplicate {
                kind: "volume",
                name: name.to_owned(),
            });
        }
        let array_id = *self.arrays.get(array).ok_or_else(|| LabError::Unknown {
            kind: "array",
            name: array.to_owned(),
        })?;
        let id = lock(&self.world).create_volume(array_id, array_name, size_bytes)?;
        self.volumes.insert(name.to_owned(), id);
        self.sync_all()
    }

    /// Maps (exports) `volume` to `host`'s initiator on its array.
    pub fn map(&mut self, volume: &str, host: &str) -> Result<(), LabError> {
        let (vol, hid) = (self.volume_id(volume)?, self.host_id(host)?);
        lock(&self.world).map_volume(vol, hid)?;
        self.sync_all()
    }

    /// Unmaps `volume` from `host` on the array, without touching the host.
    pub fn unmap(&mut self, volume: &str, host: &str) -> Result<(), LabError> {
        let (vol, hid) = (self.volume_id(volume)?, self.host_id(host)?);
        lock(&self.world).unmap_volume(vol, hid)?;
        self.sync_all()
    }

    /// Deletes `volume` on the array (unmapping it everywhere), without touching any host.
    pub fn delete(&mut self, volume: &str) -> Result<(), LabError> {
        let vol = self.volume_id(volume)?;
        lock(&self.world).delete_volume(vol)?;
        self.sync_all()
    }

    /// The connection properties the array gives `host` for `volume`, parsed by the connectors'
    /// own parser from the JSON a Cinder driver would emit.
    pub fn props(&self, volume: &str, host: &str) -> Result<ConnectionProperties, LabError> {
        let json = self.props_json(volume, host)?;
        Ok(ConnectionProperties::from_json(&json, None)?)
    }

    /// The connection properties as raw os-brick JSON.
    pub fn props_json(&self, volume: &str, host: &str) -> Result<serde_json::Value, LabError> {
        let (vol, hid) = (self.volume_id(volume)?, self.host_id(host)?);
        let mut json = lock(&self.world).connection_properties(vol, hid)?;
        if let Some(excluded) = self.itmap_excluded.get(host)
            && let Some(map) = json
                .get_mut("data")
                .and_then(|d| d.get_mut("initiator_target_map"))
                .and_then(serde_json::Value::as_object_mut)
        {
            map.retain(|wwpn, _| {
                u64::from_str_radix(wwpn.trim_start_matches("0x"), 16)
                    .map_or(true, |w| !excluded.contains(&w))
            });
        }
        Ok(json)
    }

    /// The connector for `protocol` running on `host`.
    pub fn connector(
        &self,
        host: &str,
        protocol: Protocol,
    ) -> Result<Box<dyn Connector + '_>, LabError> {
        let h = self.host(host)?;
        Ok(connector_for(protocol, &h.port, h.config.clone())?)
    }

    /// Attaches `volume` on `host` with the real connector and records the attachment.
    pub fn attach(&mut self, volume: &str, host: &str) -> Result<DeviceInfo, LabError> {
        let props = self.props(volume, host)?;
        let device = self
            .connector(host, props.protocol())?
            .connect_volume(&props)?;
        self.attached.insert(
            (host.to_owned(), volume.to_owned()),
            Attachment {
                props,
                device: device.clone(),
            },
        );
        Ok(device)
    }

    /// Detaches `volume` from `host`. The properties are those recorded at attach (the array may
    /// have forgotten the volume since); `with_device_info` passes the attach's result along.
    ///
    /// The attachment is forgotten when the detach succeeds, or when it was forced (a forced
    /// detach must leave the host clean even when it reports errors).
    pub fn detach(
        &mut self,
        volume: &str,
        host: &str,
        opts: DisconnectOptions,
        with_device_info: bool,
    ) -> Result<(), LabError> {
        let key = (host.to_owned(), volume.to_owned());
        let (props, device) = match self.attached.get(&key) {
            Some(a) => (a.props.clone(), Some(a.device.clone())),
            None => (self.props(volume, host)?, None),
        };
        let info = if with_device_info {
            device.as_ref()
        } else {
            None
        };
        let result = self
            .connector(host, props.protocol())?
            .disconnect_volume(&props, info, opts);
        if result.is_ok() || opts.force {
            self.attached.remove(&key);
        }
        Ok(result?)
    }

    /// `get_volume_paths` for `volume` on `host`.
    pub fn volume_paths(&self, volume: &str, host: &str) -> Result<VolumePaths, LabError> {
        let key = (host.to_owned(), volume.to_owned());
        let props = match self.attached.get(&key) {
            Some(a) => a.props.clone(),
            None => self.props(volume, host)?,
        };
        Ok(self
            .connector(host, props.protocol())?
            .get_volume_paths(&props)?)
    }

    /// The attachments the lab believes exist.
    pub fn attachments(&self) -> &BTreeMap<(String, String), Attachment> {
        &self.attached
    }

    /// Checks every correctness property on every host.
    pub fn check(&self) -> Vec<Violation> {
        checks::check_lab(self)
    }

    /// The side effects the connectors performed on `host`, oldest first.
    pub fn journal(&self, host: &str) -> Result<Vec<String>, LabError> {
        Ok(self.host(host)?.port.journal())
    }

    /// A listing of `host`'s materialized tree, for failure reports.
    pub fn tree_listing(&self, host: &str) -> Result<String, LabError> {
        Ok(crate::report::listing(self.root(host)?))
    }

    /// Arms a fault in the simulator.
    pub fn inject(&mut self, fault: Fault) -> Result<(), LabError> {
        lock(&self.world).inject(fault);
        self.sync_all()
    }

    /// Removes every armed fault.
    pub fn clear_faults(&mut self) {
        lock(&self.world).clear_faults();
    }

    /// Delivers every pending udev and multipathd event and re-materializes every host.
    pub fn settle(&mut self) -> Result<(), LabError> {
        lock(&self.world).settle();
        self.sync_all()
    }

    fn sync_all(&self) -> Result<(), LabError> {
        for h in &self.hosts {
            h.port.sync().map_err(|source| LabError::Io {
                what: format!("materializing host `{}`", h.name),
                source,
            })?;
        }
        Ok(())
    }

    pub(crate) fn volumes_by_id(&self) -> BTreeMap<VolumeId, String> {
        self.volumes
            .iter()
            .map(|(n, id)| (*id, n.clone()))
            .collect()
    }
}
