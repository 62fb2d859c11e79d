//! The array side: volumes, targets, portals, LUN masking and identities.
//!
//! Every volume is exported on a target (an IQN) reachable through every portal of its array.
//! A mapping is `(target, initiator IQN, LUN) -> volume`: LUN ids are per initiator (host
//! group), allocated lowest-free from [`ArraySpec::first_lun`]. The identity the array reports
//! at a LUN (NAA-6 WWID, serial) belongs to the volume, or, with
//! [`IdentityPolicy::ReuseOnLun`], to the (target, LUN) pair, as `tgtd` does.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::clock::SplitMix64;
use crate::ids::{ArrayId, HostId, SimError, VolumeId};
use crate::naming::Portal;

/// How the array names its targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IqnMode {
    /// One target per volume: IQN = prefix + volume name (LVM/tgt style). LUN = `first_lun`.
    PerVolume {
        /// e.g. `iqn.2010-10.org.openstack:`
        prefix: String,
    },
    /// One target for every volume; volumes are told apart by LUN.
    Shared {
        /// The single target IQN.
        iqn: String,
    },
}

/// Which identity a volume reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdentityPolicy {
    /// Every volume gets a fresh, unique identity.
    Fresh,
    /// The identity is tied to (target, LUN): a volume mapped on a LUN that had an identity
    /// before reports that old identity (tgtd's default).
    ReuseOnLun,
}

/// How an array is built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySpec {
    /// Array name (for reports).
    pub name: String,
    /// Portals `ip:port` (`[v6]:port` for IPv6).
    pub portals: Vec<String>,
    /// Target naming.
    pub iqn_mode: IqnMode,
    /// Identity policy.
    pub identity: IdentityPolicy,
    /// First LUN id handed out (1 by default, 0 is allowed).
    pub first_lun: u64,
    /// SAM-3 flat space addressing: the kernel sees LUN `16384 + lun`.
    pub flat_addressing: bool,
    /// Export a LUN 0 "controller" (SCSI type 12, no sd) on every target, as tgt does.
    pub lun0_controller: bool,
    /// INQUIRY vendor (up to 8 chars).
    pub vendor: String,
    /// INQUIRY model (up to 16 chars).
    pub model: String,
    /// How hosts reach the array: iSCSI through `portals` (the default), FC target ports, or
    /// NVMe-oF ports.
    #[serde(default)]
    pub transport: ArrayTransport,
}

/// The transport an array exports its volumes over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArrayTransport {
    /// iSCSI targets reachable through [`ArraySpec::portals`].
    #[default]
    Iscsi,
    /// Fibre Channel: the array's target ports. Every port presents every LUN mapped to a
    /// host (LUN masking per host group).
    Fc {
        /// Target ports.
        ports: Vec<crate::fc::FcTargetPort>,
    },
    /// NVMe over fabrics: subsystems (named by [`ArraySpec::iqn_mode`], which then holds NQNs)
    /// reachable through every port.
    Nvme(crate::nvme::NvmeTargetSpec),
}

/// The LUN-masking key of a host on an array: initiator IQN (iSCSI), host group (FC), host
/// NQN (NVMe).
pub(crate) fn initiator_key(transport: &ArrayTransport, host: &crate::world::HostSpec) -> String {
    match transport {
        ArrayTransport::Iscsi => host.initiator_iqn.clone(),
        ArrayTransport::Fc { .. } => format!("fc-host-group:{}", host.name),
        ArrayTransport::Nvme(_) => host
            .nvme
            .as_ref()
            .map_or_else(String::new, |n| n.hostnqn.clone()),
    }
}

impl ArraySpec {
    /// An LIO-like array: per-volume IQNs `iqn.2010-10.org.openstack:<name>`, fresh
    /// identities, LUNs from 1, peripheral addressing, no controller LUN.
    pub fn new(name: impl Into<String>, portals: Vec<String>) -> Self {
        Self {
            name: name.into(),
            portals,
            iqn_mode: IqnMode::PerVolume {
                prefix: "iqn.2010-10.org.openstack:".to_owned(),
            },
            identity: IdentityPolicy::Fresh,
            first_lun: 1,
            flat_addressing: false,
            lun0_controller: false,
            vendor: "LIO-ORG".to_owned(),
            model: "IBLOCK".to_owned(),
            transport: ArrayTransport::Iscsi,
        }
    }

    /// An FC array with these target ports: LUNs from 1, fresh identities, INQUIRY
    /// `LIO-ORG`/`IBLOCK` (change `vendor`/`model` for another brand).
    pub fn fc(name: impl Into<String>, ports: Vec<crate::fc::FcTargetPort>) -> Self {
        let mut spec = Self::new(name, Vec::new());
        spec.transport = ArrayTransport::Fc { ports };
        spec
    }

    /// An NVMe-oF array (nvmet-like): one subsystem per volume named
    /// `nqn.nvme-subsystem-1-<volume name>`, namespace ids from 1, reachable on `ports`.
    /// Use [`IqnMode::Shared`] with an NQN for one subsystem holding every namespace.
    pub fn nvme(name: impl Into<String>, ports: Vec<crate::nvme::NvmePort>) -> Self {
        let mut spec = Self::new(name, Vec::new());
        spec.iqn_mode = IqnMode::PerVolume {
            prefix: "nqn.nvme-subsystem-1-".to_owned(),
        };
        spec.vendor = "Linux".to_owned();
        spec.model = "Linux".to_owned();
        spec.transport = ArrayTransport::Nvme(crate::nvme::NvmeTargetSpec::new(ports));
        spec
    }
}

/// A volume as the array knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its id.
    pub id: VolumeId,
    /// Its name on the array.
    pub name: String,
    /// The array holding it.
    pub array: ArrayId,
    /// The identity it reports, in udev form (`36001405...`: `3` + NAA hex).
    pub wwid: String,
    /// Size in bytes.
    pub size_bytes: u64,
}

/// What the array answers INQUIRY / VPD with at one LUN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// NAA hex digits without prefix (`6001405...`, 32 digits).
    pub(crate) naa: String,
    /// Unit serial number (VPD page 0x80).
    pub(crate) serial: String,
}

impl Identity {
    pub(crate) fn udev_wwid(&self) -> String {
        format!("3{}", self.naa)
    }
}

/// Where a volume is mapped for one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Target name: the IQN (iSCSI), the subsystem NQN (NVMe), empty for FC.
    pub iqn: String,
    /// Where the target is reachable: portals `ip:port` (iSCSI), target WWPNs as 16 hex
    /// digits (FC), `traddr:trsvcid` (NVMe).
    pub portals: Vec<String>,
    /// LUN id as the array numbers it (what Cinder reports); the namespace id for NVMe.
    pub lun: u64,
}

/// A LUN as the kernel probes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A disk backed by this volume, reporting this identity.
    Disk {
        vol: VolumeId,
        identity: Identity,
        size_bytes: u64,
    },
    /// tgt's LUN 0 controller.
    Controller { identity: Identity },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    /// (initiator IQN, array LUN) -> volume.
    pub(crate) luns: BTreeMap<(String, u64), VolumeId>,
    /// Target id (for controller identities).
    pub(crate) tid: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct VolumeState {
    pub(crate) public: Volume,
    pub(crate) identity: Identity,
    /// Target IQN the volume is exported on.
    pub(crate) iqn: String,
    /// (host, initiator, lun) it is mapped to.
    pub(crate) mapped: BTreeMap<HostId, (String, u64)>,
    /// NVMe namespace identifiers (volumes of NVMe arrays only).
    pub(crate) ns_ids: Option<crate::nvme::NsIds>,
}

#[derive(Debug, Clone)]
pub(crate) struct ArrayState {
    pub(crate) spec: ArraySpec,
    pub(crate) portals: Vec<Portal>,
    pub(crate) targets: BTreeMap<String, Target>,
    /// (target, LUN) -> the identity first reported there (ReuseOnLun).
    pub(crate) lun_identity: BTreeMap<(String, u64), Identity>,
    next_tid: u32,
}

impl ArrayState {
    pub(crate) fn new(spec: ArraySpec) -> Self {
        let portals = spec
            .portals
            .iter()
            .filter_map(|p| Portal::parse(p))
            .collect();
        let mut this = Self {
            spec,
            portals,
            targets: BTreeMap::new(),
            lun_identity: BTreeMap::new(),
            next_tid: 1,
        };
        if let IqnMode::Shared { iqn } = this.spec.iqn_mode.clone() {
            this.ensure_target(&iqn);
        }
        this
    }

    pub(crate) fn ensure_target(&mut self, iqn: &str) -> &mut Target {
        if !self.targets.contains_key(iqn) {
            let tid = self.next_tid;
            self.next_tid += 1;
            self.targets.insert(
                iqn.to_owned(),
                Target {
                    luns: BTreeMap::new(),
                    tid,
                },
            );
        }
        self.targets.entry(iqn.to_owned()).or_default()
    }

    pub(crate) fn target_iqn_for(&self, name: &str) -> String {
        if let ArrayTransport::Fc { .. } = self.spec.transport {
            return crate::fc::FC_TARGET.to_owned();
        }
        match &self.spec.iqn_mode {
            IqnMode::PerVolume { prefix } => format!("{prefix}{name}"),
            IqnMode::Shared { iqn } => iqn.clone(),
        }
    }

    /// The LUN number the kernel sees for array LUN `lun`.
    pub(crate) fn kernel_lun(&self, lun: u64) -> u64 {
        if self.spec.flat_addressing {
            lun + 16384
        } else {
            lun
        }
    }

    /// The array LUN behind kernel LUN `klun`, if the addressing can express it.
    pub(crate) fn array_lun(&self, klun: u64) -> Option<u64> {
        if self.spec.flat_addressing {
            klun.checked_sub(16384).filter(|l| *l < 16384)
        } else {
            Some(klun)
        }
    }

    /// NVMe namespace ids are per subsystem, not per host: a volume already exported in the
    /// subsystem keeps its nsid; else the lowest free nsid from `first_lun` (at least 1).
    pub(crate) fn allocate_nsid(&self, nqn: &str, vol: VolumeId) -> Result<u64, SimError> {
        let Some(t) = self.targets.get(nqn) else {
            return Ok(self.spec.first_lun.max(1));
        };
        if let Some(((_, nsid), _)) = t.luns.iter().find(|(_, v)| **v == vol) {
            return Ok(*nsid);
        }
        let used: BTreeSet<u64> = t.luns.keys().map(|(_, l)| *l).collect();
        let mut nsid = self.spec.first_lun.max(1);
        while used.contains(&nsid) {
            nsid += 1;
        }
        if nsid > u64::from(u32::MAX - 1) {
            return Err(SimError::NoFreeLun(nqn.to_owned()));
        }
        Ok(nsid)
    }

    pub(crate) fn allocate_lun(&self, iqn: &str, initiator: &str) -> Result<u64, SimError> {
        let used: BTreeSet<u64> = self
            .targets
            .get(iqn)
            .map(|t| {
                t.luns
                    .keys()
                    .filter(|(i, _)| i == initiator)
                    .map(|(_, l)| *l)
                    .collect()
            })
            .unwrap_or_default();
        let mut lun = self.spec.first_lun;
        if self.spec.lun0_controller && lun == 0 {
            lun = 1;
        }
        while used.contains(&lun) {
            lun += 1;
        }
        if lun >= 16384 && self.spec.flat_addressing {
            return Err(SimError::NoFreeLun(iqn.to_owned()));
        }
        Ok(lun)
    }

    /// Kernel LUNs a REPORT LUNS from `initiator` on `iqn` lists, ascending.
    pub(crate) fn report_luns(&self, iqn: &str, initiator: &str) -> Vec<u64> {
        let Some(t) = self.targets.get(iqn) else {
            return Vec::new();
        };
        let mut out: BTreeSet<u64> = t
            .luns
            .keys()
            .filter(|(i, _)| i == initiator)
            .map(|(_, l)| self.kernel_lun(*l))
            .collect();
        if self.spec.lun0_controller {
            out.insert(0);
        }
        out.into_iter().collect()
    }

    pub(crate) fn controller_identity(&self, iqn: &str) -> Identity {
        let tid = self.targets.get(iqn).map_or(0, |t| t.tid);
        Identity {
            naa: format!("60000000000000000e{tid:08x}{:06x}", 0),
            serial: format!("beaf{tid}0"),
        }
    }

    /// `Mapping::iqn` for a target key: the IQN / NQN, empty for FC.
    pub(crate) fn mapping_name(&self, key: &str) -> String {
        match self.spec.transport {
            ArrayTransport::Fc { .. } => String::new(),
            _ => key.to_owned(),
        }
    }

    /// `Mapping::portals`: portals (iSCSI), target WWPNs (FC), `traddr:trsvcid` (NVMe).
    pub(crate) fn mapping_portals(&self) -> Vec<String> {
        match &self.spec.transport {
            ArrayTransport::Iscsi => self.spec.portals.clone(),
            ArrayTransport::Fc { ports } => {
                ports.iter().map(|p| format!("{:016x}", p.wwpn)).collect()
            }
            ArrayTransport::Nvme(n) => n
                .ports
                .iter()
                .map(|p| format!("{}:{}", p.traddr, p.trsvcid))
                .collect(),
        }
    }

    pub(crate) fn has_portal(&self, p: &Portal) -> bool {
        self.portals.iter().any(|q| q == p)
    }
}

/// A fresh identity: LIO-style NAA-6 (`6001405` + 25 hex digits) and a serial.
pub(crate) fn fresh_identity(rng: &mut SplitMix64) -> Identity {
    let a = rng.next_u64();
    let b = rng.next_u64();
    let hex = format!("{a:016x}{b:016x}");
    Identity {
        naa: format!("6001405{}", &hex[..25]),
        serial: hex[16..32].to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(first: u64) -> ArrayState {
        let mut spec = ArraySpec::new("a", vec!["10.0.2.2:3260".into()]);
        spec.iqn_mode = IqnMode::Shared {
            iqn: "iqn.x:t".into(),
        };
        spec.first_lun = first;
        ArrayState::new(spec)
    }

    #[test]
    fn lun_allocation_is_lowest_free_per_initiator() {
        let mut a = shared(1);
        assert_eq!(a.allocate_lun("iqn.x:t", "i1").ok(), Some(1));
        a.ensure_target("iqn.x:t")
            .luns
            .insert(("i1".into(), 1), VolumeId(0));
        a.ensure_target("iqn.x:t")
            .luns
            .insert(("i1".into(), 3), VolumeId(1));
        assert_eq!(a.allocate_lun("iqn.x:t", "i1").ok(), Some(2));
        assert_eq!(a.allocate_lun("iqn.x:t", "i2").ok(), Some(1));
        assert_eq!(shared(0).allocate_lun("iqn.x:t", "i1").ok(), Some(0));
    }

    #[test]
    fn flat_addressing_offsets_the_kernel_lun() {
        let mut a = shared(1);
        a.spec.flat_addressing = true;
        assert_eq!(a.kernel_lun(1), 16385);
        assert_eq!(a.array_lun(16385), Some(1));
        assert_eq!(a.array_lun(1), None);
    }

    #[test]
    fn fresh_identities_are_naa6_and_deterministic() {
        let mut r = SplitMix64::new(1);
        let i = fresh_identity(&mut r);
        assert_eq!(i.naa.len(), 32);
        assert!(i.naa.starts_with("6001405"));
        assert_eq!(i, fresh_identity(&mut SplitMix64::new(1)));
        assert_ne!(i, fresh_identity(&mut r));
    }
}
