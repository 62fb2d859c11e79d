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

/// How an array builds the identity a LUN reports (VPD pages 0x80 and 0x83). Real arrays
/// differ in exactly this, and the host's udev links follow: one `/dev/disk/by-id/scsi-*` link
/// per designator (os-brick's WWN detection reads them; a LUN with several designators is
/// os-brick bug 1881608).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdStyle {
    /// LIO-like: a random NAA-6 id (`6001405` + 25 hex digits) and unit serial per volume.
    /// VPD 0x83 holds a T10 vendor-id designator (vendor padded to 8, then `<model>:<serial>`)
    /// and the NAA-6 designator; VPD 0x80 is the bare serial.
    #[default]
    Lio,
    /// tgt-like (`tgtd`): every id is computed from the target id and the LUN, so it belongs
    /// to the (target, LUN) pair, not to the volume. SCSI id `IET     <tid:04x><lun:04x>`,
    /// serial `beaf<tid><lun>` (decimal), VPD 0x80 right-justified in 36 spaces, VPD 0x83 with
    /// three designators: T10 vendor id (the SCSI id, NUL-padded to 36), NAA-3 local
    /// (`3` + `tid << 32 | lun`) and NAA-6 (the SCSI id read as hex digits, e.g.
    /// `60000000000000000e00000000010001`).
    Tgt {
        /// Target id of the array's first target (`tgtadm --tid`, at least 1); later targets
        /// count up from it.
        first_tid: u32,
    },
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
    /// How LUN identities (VPD 0x80/0x83) are built.
    #[serde(default)]
    pub id_style: IdStyle,
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
            id_style: IdStyle::Lio,
            transport: ArrayTransport::Iscsi,
        }
    }

    /// A tgt-like iSCSI array (`tgtd`): per-volume IQNs, LUNs from 1, a LUN 0 controller on
    /// every target, INQUIRY `IET`/`VIRTUAL-DISK`, identities computed from (target id, LUN)
    /// with target ids from 1 ([`IdStyle::Tgt`]).
    pub fn tgt(name: impl Into<String>, portals: Vec<String>) -> Self {
        let mut spec = Self::new(name, portals);
        spec.lun0_controller = true;
        spec.vendor = "IET".to_owned();
        spec.model = "VIRTUAL-DISK".to_owned();
        spec.identity = IdentityPolicy::ReuseOnLun;
        spec.id_style = IdStyle::Tgt { first_tid: 1 };
        spec
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
    /// The T10 vendor-id designator of VPD 0x83 as sent; `None`: the device's INQUIRY vendor
    /// padded to 8, then `<model>:<serial>` (LIO).
    pub(crate) t10: Option<Vec<u8>>,
    /// A NAA-3 (locally assigned) designator, 16 hex digits (tgt).
    pub(crate) naa_local: Option<String>,
    /// Width of the VPD 0x80 serial field (serial right-justified in spaces); `None`: the
    /// serial exactly.
    pub(crate) serial_width: Option<usize>,
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
        let next_tid = match spec.id_style {
            IdStyle::Tgt { first_tid } => first_tid,
            IdStyle::Lio => 1,
        };
        let mut this = Self {
            spec,
            portals,
            targets: BTreeMap::new(),
            lun_identity: BTreeMap::new(),
            next_tid,
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

    /// tgt's LUN 0 controller: its identity is computed like any tgt LUN's.
    pub(crate) fn controller_identity(&self, iqn: &str) -> Identity {
        tgt_identity(self.tid_of(iqn), 0)
    }

    /// The target id of `iqn` (0 if the target does not exist).
    pub(crate) fn tid_of(&self, iqn: &str) -> u32 {
        self.targets.get(iqn).map_or(0, |t| t.tid)
    }

    /// The identity computed from where a LUN sits, for arrays whose ids are not the
    /// volume's own ([`IdStyle::Tgt`]); `None` for LIO-like arrays.
    pub(crate) fn computed_identity(&self, iqn: &str, lun: u64) -> Option<Identity> {
        match self.spec.id_style {
            IdStyle::Lio => None,
            IdStyle::Tgt { .. } => Some(tgt_identity(self.tid_of(iqn), lun)),
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
        t10: None,
        naa_local: None,
        serial_width: None,
    }
}

/// Width of tgt's SCSI id and serial fields (`SCSI_ID_LEN`, `SCSI_SN_LEN`).
const TGT_FIELD_LEN: usize = 36;

/// The identity `tgtd` reports for LUN `lun` of target `tid` (see [`IdStyle::Tgt`]).
pub(crate) fn tgt_identity(tid: u32, lun: u64) -> Identity {
    let scsi_id = format!("IET     {tid:04x}{lun:04x}");
    // NAA-6: the SCSI id read one character at a time as a hex digit (anything else counts
    // 0) into a 128-bit value, then the top nibble set to 6.
    let digits: Vec<char> = scsi_id
        .chars()
        .map(|c| {
            if c.is_ascii_hexdigit() {
                c.to_ascii_lowercase()
            } else {
                '0'
            }
        })
        .collect();
    let tail: String = digits[digits.len().saturating_sub(31)..].iter().collect();
    let naa = format!("6{tail:0>31}");
    let numeric = (u64::from(tid) << 32) | lun;
    let mut t10 = scsi_id.into_bytes();
    t10.resize(TGT_FIELD_LEN, 0);
    Identity {
        naa,
        serial: format!("beaf{tid}{lun}"),
        t10: Some(t10),
        naa_local: Some(format!("{:016x}", numeric | (3 << 60))),
        serial_width: Some(TGT_FIELD_LEN),
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
    fn tgt_identities_are_computed_from_tid_and_lun() {
        // The values of the real-kernel captures (tgt 1.0.85).
        let i = tgt_identity(2, 2);
        assert_eq!(i.naa, "60000000000000000e00000000020002");
        assert_eq!(i.naa_local.as_deref(), Some("3000000200000002"));
        assert_eq!(i.serial, "beaf22");
        assert_eq!(i.serial_width, Some(36));
        let t10 = i.t10.unwrap_or_default();
        assert_eq!(t10.len(), 36);
        assert!(t10.starts_with(b"IET     00020002\0"));
        assert_eq!(tgt_identity(1, 0).naa, "60000000000000000e00000000010000");
        assert_eq!(tgt_identity(1, 0).serial, "beaf10");
        // Wider ids push the digits left, as tgt's 128-bit shift does.
        assert_eq!(
            tgt_identity(0x12345, 1).naa,
            "6000000000000000e000000123450001"
        );
    }

    #[test]
    fn tgt_arrays_number_targets_from_first_tid() {
        let mut spec = ArraySpec::tgt("t", vec!["10.0.2.2:3260".into()]);
        spec.id_style = IdStyle::Tgt { first_tid: 5 };
        let mut a = ArrayState::new(spec);
        a.ensure_target("iqn.x:a");
        a.ensure_target("iqn.x:b");
        assert_eq!((a.tid_of("iqn.x:a"), a.tid_of("iqn.x:b")), (5, 6));
        assert_eq!(
            a.computed_identity("iqn.x:b", 3).map(|i| i.serial),
            Some("beaf63".to_owned())
        );
        assert_eq!(
            shared(1).computed_identity("iqn.x:t", 1),
            None,
            "LIO: the volume's own"
        );
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
