//! The world: arrays, hosts, the virtual clock, the event queue and the faults.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::array::{
    ArraySpec, ArrayState, ArrayTransport, IdentityPolicy, IqnMode, Mapping, Volume, VolumeState,
    fresh_identity, initiator_key,
};
use crate::clock::{Clock, SplitMix64};
use crate::faults::{Fault, Faults};
use crate::ids::{ArrayId, HostId, SimError, VolumeId};
use crate::kernel::Kernel;
use crate::multipath::Multipathd;
use crate::tree::Tree;
use crate::udev::{Action, UdevDb};
use crate::userland::iscsiadm::IscsiDb;

/// How a simulated host is set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Host name (for reports and the default initiator name).
    pub name: String,
    /// Initiator IQN (`/etc/iscsi/initiatorname.iscsi`).
    pub initiator_iqn: String,
    /// The host's own IP address (`iscsi_host/hostH/ipaddress`).
    pub ip: String,
    /// multipath-tools installed and `multipathd` running (dm_multipath loaded).
    pub multipathd: bool,
    /// `find_multipaths strict`: only WWIDs in the wwids file get maps (else `no`: all do).
    pub find_multipaths_strict: bool,
    /// `user_friendly_names yes`: maps are named `mpatha`, `mpathb`...
    pub user_friendly_names: bool,
    /// How long udev takes to process a kernel event.
    pub udev_delay: Duration,
    /// Fibre Channel HBA ports (none by default: no `fc_host` class).
    #[serde(default)]
    pub fc_hbas: Vec<crate::fc::FcHbaSpec>,
    /// NVMe-oF initiator (nvme-cli, `nvme_fabrics`); `None`: not installed.
    #[serde(default)]
    pub nvme: Option<crate::nvme::NvmeHostSpec>,
    /// `scsi_mod.scan=manual`: the kernel never scans a target by itself. With the default
    /// (`sync`) an FC remote port that logs in, or comes back after a link loss, has its
    /// target scanned for every LUN (`fc_scsi_scan_rport`: `scsi_scan_target` with wildcard
    /// LUN, `SCSI_SCAN_RESCAN`).
    #[serde(default)]
    pub scsi_scan_manual: bool,
}

impl HostSpec {
    /// Defaults: no multipath, IQN `iqn.1993-08.org.debian:01:<name>`, IP 10.0.2.15,
    /// udev delay 50 ms.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            initiator_iqn: format!("iqn.1993-08.org.debian:01:{name}"),
            name,
            ip: "10.0.2.15".to_owned(),
            multipathd: false,
            find_multipaths_strict: false,
            user_friendly_names: false,
            udev_delay: Duration::from_millis(50),
            fc_hbas: Vec::new(),
            nvme: None,
            scsi_scan_manual: false,
        }
    }

    /// Adds an FC HBA port.
    pub fn with_fc_hba(mut self, hba: crate::fc::FcHbaSpec) -> Self {
        self.fc_hbas.push(hba);
        self
    }

    /// Installs the NVMe-oF initiator with the defaults of [`crate::NvmeHostSpec::for_host`].
    pub fn with_nvme(mut self) -> Self {
        self.nvme = Some(crate::nvme::NvmeHostSpec::for_host(&self.name));
        self
    }
}

#[derive(Debug, Clone)]
pub(crate) struct HostState {
    pub(crate) spec: HostSpec,
    pub(crate) kernel: Kernel,
    pub(crate) udev: UdevDb,
    pub(crate) iscsi: IscsiDb,
    pub(crate) mpd: Multipathd,
    /// Last due time of a queued event (events of a host are delivered in order).
    pub(crate) last_due: Duration,
}

#[derive(Debug, Clone)]
pub(crate) enum Event {
    Udev {
        host: HostId,
        action: Action,
        dev: String,
    },
    MpdRemove {
        host: HostId,
        dev: String,
    },
    /// An FC rport's `dev_loss_tmo` expires.
    FcDevLoss {
        host: HostId,
        host_no: u32,
        rport: u32,
    },
    /// A namespace-change AEN reaches an NVMe controller.
    NvmeAen {
        host: HostId,
        ctrl: u32,
    },
    /// A [`Fault::HbaLinkdownAfter`] falls due (ignored if it was cleared meanwhile).
    HbaLinkdown {
        fault: Fault,
    },
}

/// Arrays, hosts, the virtual clock and the faults. Deterministic for a seed.
pub struct World {
    pub(crate) rng: SplitMix64,
    pub(crate) clock: Clock,
    pub(crate) arrays: Vec<ArrayState>,
    pub(crate) volumes: BTreeMap<VolumeId, VolumeState>,
    /// Volumes deleted on their array, kept so that a leftover device's identity can still be
    /// named.
    pub(crate) deleted: BTreeMap<VolumeId, Volume>,
    pub(crate) last_volume: u32,
    pub(crate) hosts: Vec<HostState>,
    pub(crate) faults: Faults,
    pub(crate) events: BTreeMap<(Duration, u64), Event>,
    pub(crate) last_event: u64,
    pub(crate) materialized: HashMap<(HostId, PathBuf), Tree>,
    /// FC zoning and port ids.
    pub(crate) fc: crate::fc::Fabric,
    /// Rendered host trees of the current model state (see `render_cache`).
    pub(crate) trees: crate::render_cache::TreeCache,
    seed: u64,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("seed", &self.seed)
            .field("now", &self.clock.now())
            .field("arrays", &self.arrays.len())
            .field("volumes", &self.volumes.len())
            .field("hosts", &self.hosts.len())
            .field("pending_events", &self.events.len())
            .field("faults", &self.faults.list())
            .finish_non_exhaustive()
    }
}

/// Truth about one block device of a host, for checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTruth {
    /// Kernel name: `sda`, `dm-0`, `nvme0n1`.
    pub name: String,
    /// `H:C:T:L` for SCSI disks (iSCSI and FC).
    pub hctl: Option<String>,
    /// The identity the device reports (cached at probe / scan). SCSI and dm: udev form
    /// `3<naa>` (as `scsi_id` and multipath print it). NVMe: the sysfs `wwid`,
    /// `uuid.<uuid>` (or `eui.<nguid hex>` for a namespace without a UUID), which is also the
    /// `Volume::wwid` of NVMe volumes and the `by-id/nvme-<wwid>` link name.
    pub reported_wwid: String,
    /// The volume I/O reaches now (`None`: nothing mapped there). For a dm map: the volume
    /// its first path that reaches one reaches.
    pub backing: Option<VolumeId>,
    /// `/dev` links (absolute host paths) that resolve to this device.
    pub links: Vec<String>,
    /// dm maps holding this device.
    pub holders: Vec<String>,
    /// Devices under this dm map; for an NVMe head, its hidden per-path disks
    /// (`nvme0c1n1`), which are never reported as devices of their own.
    pub slaves: Vec<String>,
}

/// Truth about one iSCSI session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTruth {
    /// Session id.
    pub sid: u32,
    /// SCSI host number.
    pub host_no: u32,
    /// Portal `ip:port`.
    pub portal: String,
    /// Target IQN.
    pub iqn: String,
    /// Kernel LUNs that have a SCSI device.
    pub luns: Vec<u64>,
}

impl World {
    /// An empty world.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
            clock: Clock::default(),
            arrays: Vec::new(),
            volumes: BTreeMap::new(),
            deleted: BTreeMap::new(),
            last_volume: 0,
            hosts: Vec::new(),
            faults: Faults::default(),
            events: BTreeMap::new(),
            last_event: 0,
            materialized: HashMap::new(),
            fc: crate::fc::Fabric::default(),
            trees: crate::render_cache::TreeCache::default(),
            seed,
        }
    }

    /// The seed this world was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Adds a host.
    pub fn add_host(&mut self, spec: HostSpec) -> HostId {
        self.model_changed();
        let id = HostId(u32::try_from(self.hosts.len()).unwrap_or(u32::MAX));
        let mpd = Multipathd::new(spec.multipathd);
        self.hosts.push(HostState {
            spec,
            kernel: Kernel::default(),
            udev: UdevDb::default(),
            iscsi: IscsiDb::default(),
            mpd,
            last_due: Duration::ZERO,
        });
        self.nvme_init_host(id);
        self.fc_init_host(id);
        id
    }

    /// Adds an array.
    pub fn add_array(&mut self, spec: ArraySpec) -> ArrayId {
        self.model_changed();
        let id = ArrayId(u32::try_from(self.arrays.len()).unwrap_or(u32::MAX));
        self.arrays.push(ArrayState::new(spec));
        self.fc_sync_all();
        id
    }

    /// The ids of every host.
    pub fn host_ids(&self) -> Vec<HostId> {
        (0..self.hosts.len())
            .filter_map(|i| u32::try_from(i).ok().map(HostId))
            .collect()
    }

    /// A host's spec.
    pub fn host_spec(&self, host: HostId) -> Option<&HostSpec> {
        self.hosts.get(host.0 as usize).map(|h| &h.spec)
    }

    pub(crate) fn host_ref(&self, host: HostId) -> &HostState {
        // Ids are only minted by add_host; an unknown id is a caller bug we answer with an
        // empty host rather than a panic.
        self.hosts
            .get(host.0 as usize)
            .unwrap_or_else(|| empty_host())
    }

    pub(crate) fn host_mut(&mut self, host: HostId) -> &mut HostState {
        if host.0 as usize >= self.hosts.len() {
            tracing::warn!(%host, "unknown host id: adding a placeholder host");
            while self.hosts.len() <= host.0 as usize {
                let n = self.hosts.len();
                self.add_host(HostSpec::new(format!("unknown{n}")));
            }
        }
        let idx = host.0 as usize;
        let len = self.hosts.len();
        // idx < len holds after the loop above.
        &mut self.hosts[idx.min(len - 1)]
    }

    pub(crate) fn array_ref(&self, array: ArrayId) -> &ArrayState {
        self.arrays
            .get(array.0 as usize)
            .unwrap_or_else(|| empty_array())
    }

    /// Creates a volume on an array.
    pub fn create_volume(
        &mut self,
        array: ArrayId,
        name: &str,
        size_bytes: u64,
    ) -> Result<VolumeId, SimError> {
        self.model_changed();
        if name.is_empty() || name.len() > 200 {
            return Err(SimError::InvalidName(name.to_owned(), "empty or too long"));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(SimError::InvalidName(
                name.to_owned(),
                "whitespace, control character or `/`",
            ));
        }
        if self.arrays.get(array.0 as usize).is_none() {
            return Err(SimError::UnknownArray(array));
        }
        if self
            .volumes
            .values()
            .any(|v| v.public.array == array && v.public.name == name)
        {
            return Err(SimError::VolumeExists(name.to_owned()));
        }
        let identity = fresh_identity(&mut self.rng);
        let ns_ids = match &self.arrays.get(array.0 as usize).map(|a| &a.spec.transport) {
            Some(ArrayTransport::Nvme(spec)) => {
                Some(crate::nvme::NsIds::fresh(&mut self.rng, spec))
            }
            _ => None,
        };
        let id = VolumeId(self.last_volume);
        self.last_volume += 1;
        let a = self
            .arrays
            .get_mut(array.0 as usize)
            .ok_or(SimError::UnknownArray(array))?;
        let iqn = a.target_iqn_for(name);
        a.ensure_target(&iqn);
        let public = Volume {
            id,
            name: name.to_owned(),
            array,
            wwid: ns_ids
                .as_ref()
                .map_or_else(|| identity.udev_wwid(), crate::nvme::NsIds::wwid),
            size_bytes,
        };
        tracing::debug!(%id, name, %iqn, wwid = %public.wwid, "volume created");
        self.volumes.insert(
            id,
            VolumeState {
                public,
                identity,
                iqn,
                mapped: BTreeMap::new(),
                ns_ids,
            },
        );
        Ok(id)
    }

    /// Maps a volume to a host (idempotent: mapping twice returns the same mapping).
    pub fn map_volume(&mut self, vol: VolumeId, host: HostId) -> Result<Mapping, SimError> {
        self.model_changed();
        let host_spec = &self
            .hosts
            .get(host.0 as usize)
            .ok_or(SimError::UnknownHost(host))?
            .spec;
        let v = self.volumes.get(&vol).ok_or(SimError::UnknownVolume(vol))?;
        let array = v.public.array;
        let iqn = v.iqn.clone();
        let a = self
            .arrays
            .get(array.0 as usize)
            .ok_or(SimError::UnknownArray(array))?;
        let initiator = initiator_key(&a.spec.transport, host_spec);
        if let Some((_, lun)) = v.mapped.get(&host) {
            return Ok(Mapping {
                iqn: a.mapping_name(&iqn),
                portals: a.mapping_portals(),
                lun: *lun,
            });
        }
        let nvme = matches!(a.spec.transport, ArrayTransport::Nvme(_));
        if nvme && initiator.is_empty() {
            return Err(SimError::NoNvmeInitiator(host));
        }
        let lun = if nvme {
            a.allocate_nsid(&iqn, vol)?
        } else {
            a.allocate_lun(&iqn, &initiator)?
        };
        let reuse = a.spec.identity == IdentityPolicy::ReuseOnLun && !nvme;
        let a = self
            .arrays
            .get_mut(array.0 as usize)
            .ok_or(SimError::UnknownArray(array))?;
        a.ensure_target(&iqn)
            .luns
            .insert((initiator.clone(), lun), vol);
        let portals = a.mapping_portals();
        let name = a.mapping_name(&iqn);
        let v = self
            .volumes
            .get_mut(&vol)
            .ok_or(SimError::UnknownVolume(vol))?;
        if let Some(computed) = a.computed_identity(&iqn, lun) {
            // tgt-like: the ids belong to where the volume is exported; the volume reports
            // those of its first mapping.
            if v.mapped.is_empty() {
                v.public.wwid = computed.udev_wwid();
                v.identity = computed;
            }
        } else if reuse {
            let key = (iqn.clone(), lun);
            match a.lun_identity.get(&key) {
                Some(old) if v.mapped.is_empty() => {
                    v.identity = old.clone();
                    v.public.wwid = old.udev_wwid();
                }
                Some(_) => {}
                None => {
                    a.lun_identity.insert(key, v.identity.clone());
                }
            }
        }
        v.mapped.insert(host, (initiator, lun));
        tracing::debug!(%vol, %host, %iqn, lun, "volume mapped");
        if nvme {
            self.nvme_namespaces_changed(array, &iqn);
        }
        Ok(Mapping {
            iqn: name,
            portals,
            lun,
        })
    }

    /// Unmaps a volume from a host on the array. The host's devices are not touched: if the
    /// host did not detach first, they stay (the leaked-detach case).
    pub fn unmap_volume(&mut self, vol: VolumeId, host: HostId) -> Result<(), SimError> {
        self.model_changed();
        let v = self
            .volumes
            .get_mut(&vol)
            .ok_or(SimError::UnknownVolume(vol))?;
        let (initiator, lun) = v
            .mapped
            .remove(&host)
            .ok_or(SimError::NotMapped { vol, host })?;
        let iqn = v.iqn.clone();
        let array = v.public.array;
        if let Some(t) = self
            .arrays
            .get_mut(array.0 as usize)
            .and_then(|a| a.targets.get_mut(&iqn))
        {
            t.luns.remove(&(initiator, lun));
        }
        tracing::debug!(%vol, %host, lun, "volume unmapped");
        self.nvme_namespaces_changed(array, &iqn);
        Ok(())
    }

    /// Deletes a volume (unmapping it everywhere first). Per-volume targets go with it.
    pub fn delete_volume(&mut self, vol: VolumeId) -> Result<(), SimError> {
        self.model_changed();
        let hosts: Vec<HostId> = self
            .volumes
            .get(&vol)
            .ok_or(SimError::UnknownVolume(vol))?
            .mapped
            .keys()
            .copied()
            .collect();
        for h in hosts {
            self.unmap_volume(vol, h)?;
        }
        let v = self
            .volumes
            .remove(&vol)
            .ok_or(SimError::UnknownVolume(vol))?;
        // An FC array has one target for every volume (whatever its `iqn_mode`): deleting
        // one volume must not take the others' LUNs with it.
        if let Some(a) = self.arrays.get_mut(v.public.array.0 as usize)
            && matches!(a.spec.iqn_mode, IqnMode::PerVolume { .. })
            && !matches!(a.spec.transport, ArrayTransport::Fc { .. })
        {
            a.targets.remove(&v.iqn);
        }
        tracing::debug!(%vol, "volume deleted");
        self.deleted.insert(vol, v.public);
        Ok(())
    }

    /// A volume (`None` once deleted).
    pub fn volume(&self, vol: VolumeId) -> Option<&Volume> {
        self.volumes.get(&vol).map(|v| &v.public)
    }

    /// A volume, existing or deleted: what it was called and which identity it had.
    pub fn volume_record(&self, vol: VolumeId) -> Option<&Volume> {
        self.volume(vol).or_else(|| self.deleted.get(&vol))
    }

    /// Whether the volume was deleted on its array.
    pub fn is_deleted(&self, vol: VolumeId) -> bool {
        self.deleted.contains_key(&vol)
    }

    /// Every existing volume.
    pub fn volumes(&self) -> impl Iterator<Item = &Volume> {
        self.volumes.values().map(|v| &v.public)
    }

    /// Where a volume is mapped for a host.
    pub fn mapping(&self, vol: VolumeId, host: HostId) -> Result<Mapping, SimError> {
        let v = self.volumes.get(&vol).ok_or(SimError::UnknownVolume(vol))?;
        let (_, lun) = v
            .mapped
            .get(&host)
            .ok_or(SimError::NotMapped { vol, host })?;
        let a = self
            .arrays
            .get(v.public.array.0 as usize)
            .ok_or(SimError::UnknownArray(v.public.array))?;
        Ok(Mapping {
            iqn: a.mapping_name(&v.iqn),
            portals: a.mapping_portals(),
            lun: *lun,
        })
    }

    /// os-brick connection properties, as Cinder emits them for this mapping.
    pub fn connection_properties(
        &self,
        vol: VolumeId,
        host: HostId,
    ) -> Result<serde_json::Value, SimError> {
        let m = self.mapping(vol, host)?;
        let v = self.volumes.get(&vol).ok_or(SimError::UnknownVolume(vol))?;
        let a = self.array_ref(v.public.array);
        match a.spec.transport {
            ArrayTransport::Iscsi => {}
            ArrayTransport::Fc { .. } => {
                return Ok(self.fc_connection_properties(
                    v.public.array,
                    host,
                    m.lun,
                    &v.public.name,
                ));
            }
            ArrayTransport::Nvme(_) => {
                return Ok(self.nvme_connection_properties(vol, host, &m.iqn, m.lun));
            }
        }
        let first = m.portals.first().cloned().unwrap_or_default();
        let mut data = serde_json::json!({
            "target_discovered": false,
            "target_portal": first,
            "target_iqn": m.iqn,
            "target_lun": m.lun,
            "volume_id": v.public.name,
            "encrypted": false,
            "access_mode": "rw",
        });
        if let Some(obj) = data.as_object_mut() {
            let n = m.portals.len();
            if n > 1 {
                obj.insert("target_portals".into(), serde_json::json!(m.portals));
                obj.insert(
                    "target_iqns".into(),
                    serde_json::json!(vec![m.iqn.clone(); n]),
                );
                obj.insert("target_luns".into(), serde_json::json!(vec![m.lun; n]));
            }
            if a.spec.flat_addressing {
                obj.insert("addressing_mode".into(), serde_json::json!("SAM3-flat"));
            }
        }
        Ok(serde_json::json!({ "driver_volume_type": "iscsi", "data": data }))
    }

    /// The host's initiator IQN (empty for an unknown host).
    pub fn initiator(&self, host: HostId) -> &str {
        self.hosts
            .get(host.0 as usize)
            .map_or("", |h| h.spec.initiator_iqn.as_str())
    }

    /// Arms a fault. A [`Fault::HbaLinkdownAfter`] starts its timer now.
    pub fn inject(&mut self, fault: Fault) {
        self.model_changed();
        tracing::debug!(?fault, "fault armed");
        if let Fault::HbaLinkdownAfter { after, .. } = &fault {
            let after = *after;
            self.schedule_timer(
                after,
                Event::HbaLinkdown {
                    fault: fault.clone(),
                },
            );
        }
        self.faults.inject(fault);
    }

    /// Removes every fault. What a fault held down comes back: NVMe controllers of a port
    /// that answers again reconnect and rescan their namespaces, an HBA taken down by
    /// [`Fault::HbaLinkdownAfter`] is `Online` again.
    pub fn clear_faults(&mut self) {
        self.model_changed();
        let gone = self.faults.clear();
        self.faults_cleared(&gone);
    }

    /// Removes one fault (every armed copy equal to it), with the effects of
    /// [`World::clear_faults`] for it.
    pub fn clear_fault(&mut self, fault: &Fault) {
        self.model_changed();
        let gone = self.faults.remove(fault);
        self.faults_cleared(&gone);
    }

    /// What ends with a fault beyond the fault list.
    fn faults_cleared(&mut self, gone: &[Fault]) {
        for f in gone {
            match f {
                Fault::NvmePortDown {
                    host,
                    traddr,
                    trsvcid,
                } => self.nvme_port_back(*host, traddr, *trsvcid),
                Fault::HbaLinkdownAfter { .. } => self.hba_linkdown_cleared(f),
                _ => {}
            }
        }
    }

    /// The armed faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.faults.list()
    }

    /// Starts or stops multipathd on a host that has multipath-tools installed.
    pub fn set_multipathd_running(&mut self, host: HostId, running: bool) {
        self.model_changed();
        let h = self.host_mut(host);
        if h.spec.multipathd {
            h.mpd.running = running;
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Duration {
        self.clock.now()
    }

    /// Moves the clock forward by `d`, delivering every event that falls due on the way.
    pub fn advance(&mut self, d: Duration) {
        self.model_changed();
        let target = self.clock.now().saturating_add(d);
        while let Some((&(due, seq), _)) = self.events.first_key_value() {
            if due > target {
                break;
            }
            let Some(ev) = self.events.remove(&(due, seq)) else {
                break;
            };
            self.clock.set(due);
            self.deliver(ev);
        }
        self.clock.set(target);
    }

    /// Delivers every pending event, advancing the clock as far as needed.
    pub fn settle(&mut self) {
        self.model_changed();
        // Delivering an event may queue more (multipathd reacting to udev); bound the loop.
        for _ in 0..100_000 {
            let Some((&(due, seq), _)) = self.events.first_key_value() else {
                return;
            };
            let Some(ev) = self.events.remove(&(due, seq)) else {
                return;
            };
            self.clock.set(due);
            self.deliver(ev);
        }
        tracing::warn!("settle: event storm, giving up");
    }

    /// Queues a timer event `delay` from now. Unlike [`World::schedule`] it does not take
    /// part in the ordering of a host's udev events (a timer 30 s away must not hold back the
    /// udev events queued after it).
    pub(crate) fn schedule_timer(&mut self, delay: Duration, ev: Event) {
        let due = self.clock.now().saturating_add(delay);
        self.last_event += 1;
        self.events.insert((due, self.last_event), ev);
    }

    /// How many events are still pending.
    pub fn pending_events(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn schedule(&mut self, host: HostId, delay: Duration, ev: Event) {
        let now = self.clock.now();
        let h = self.host_mut(host);
        let due = now.saturating_add(delay).max(h.last_due);
        h.last_due = due;
        self.last_event += 1;
        self.events.insert((due, self.last_event), ev);
    }

    fn deliver(&mut self, ev: Event) {
        match ev {
            Event::Udev { host, action, dev } => self.udev_process(host, action, &dev),
            Event::MpdRemove { host, dev } => self.mpd_remove_path(host, &dev),
            Event::FcDevLoss {
                host,
                host_no,
                rport,
            } => self.fc_dev_loss(host, host_no, rport),
            Event::NvmeAen { host, ctrl } => self.nvme_scan(host, ctrl),
            Event::HbaLinkdown { fault } => self.hba_linkdown_due(&fault),
        }
    }

    /// Truth: every block device of the host, what it reports and what it reaches.
    pub fn host_devices(&self, host: HostId) -> Vec<DeviceTruth> {
        let h = self.host_ref(host);
        let links = self.dev_links(host);
        let links_to = |name: &str| -> Vec<String> {
            links
                .iter()
                .filter(|(_, dev)| dev.as_str() == name)
                .map(|(l, _)| l.clone())
                .collect()
        };
        let mut out = Vec::new();
        for d in h.kernel.devices.values() {
            let Some(name) = d.sd_name() else { continue };
            out.push(DeviceTruth {
                hctl: Some(d.hctl.to_string()),
                reported_wwid: d.identity.udev_wwid(),
                backing: self.backing_of(host, d),
                links: links_to(&name),
                holders: h
                    .kernel
                    .holders(&name)
                    .iter()
                    .map(|m| m.dev_name())
                    .collect(),
                slaves: Vec::new(),
                name,
            });
        }
        for m in h.kernel.dms.values() {
            let name = m.dev_name();
            let backing = m
                .paths
                .iter()
                .filter_map(|p| h.kernel.disk_by_name(p))
                .find_map(|d| self.backing_of(host, d));
            out.push(DeviceTruth {
                hctl: None,
                reported_wwid: m.wwid.clone(),
                backing,
                links: links_to(&name),
                holders: Vec::new(),
                slaves: m
                    .paths
                    .iter()
                    .filter(|p| h.kernel.block_exists(p))
                    .cloned()
                    .collect(),
                name,
            });
        }
        out.extend(self.nvme_device_truths(host, &links_to));
        out
    }

    /// Truth: every iSCSI session of the host.
    pub fn sessions(&self, host: HostId) -> Vec<SessionTruth> {
        let k = &self.host_ref(host).kernel;
        k.sessions
            .values()
            .map(|s| SessionTruth {
                sid: s.sid,
                host_no: s.host_no,
                portal: s.portal.to_string(),
                iqn: s.iqn.clone(),
                luns: k
                    .devices
                    .values()
                    .filter(|d| d.sid == s.sid)
                    .map(|d| d.hctl.lun)
                    .collect(),
            })
            .collect()
    }

    /// The whole host view: sysfs, /dev and /etc. Unchanged iSCSI sessions come from the
    /// render cache (see `render_cache`); [`World::tree_shared`] also shares the result.
    pub fn tree(&self, host: HostId) -> Tree {
        self.render_from_parts(host)
            .unwrap_or_else(|| self.render_whole(host))
    }

    /// The host view rendered in one pass into one tree: what [`World::tree`] must equal.
    pub(crate) fn render_whole(&self, host: HostId) -> Tree {
        let mut t = Tree::new();
        self.render_sysfs(host, &mut t);
        self.render_dev(host, &mut t);
        self.render_etc(host, &mut t);
        t
    }
}

fn empty_host() -> &'static HostState {
    static EMPTY: std::sync::OnceLock<HostState> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| HostState {
        spec: HostSpec::new("unknown"),
        kernel: Kernel::default(),
        udev: UdevDb::default(),
        iscsi: IscsiDb::default(),
        mpd: Multipathd::new(false),
        last_due: Duration::ZERO,
    })
}

fn empty_array() -> &'static ArrayState {
    static EMPTY: std::sync::OnceLock<ArrayState> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| ArrayState::new(ArraySpec::new("unknown", Vec::new())))
}
