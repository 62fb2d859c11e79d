//! The reference model: what the arrays and each host *should* hold after every transition if
//! the connector behaves as its contract says (os-brick's converged iSCSI behaviour), and the
//! violations the harness must therefore report (none on a clean history; the leaked-detach
//! ones after an array-side unmap or delete without a host detach).
//!
//! The model is abstract: devices are keyed by `(host, target, portal, LUN)` and carry an
//! identity *token*, not a WWID; the system under test maps the simulator's WWIDs onto the
//! tokens. It mirrors the array's documented rules (lowest-free LUN per initiator, identity
//! per volume or per (target, LUN)) and the kernel's (a scan of an existing LUN keeps the
//! identity read at probe time).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use proptest::prelude::*;
use proptest::strategy::Union;
use serde::Serialize;

use crate::checks::PropertyKind;

/// At most this many volumes are created in one case.
pub const MAX_VOLUMES: usize = 4;

/// The protocol a machine drives. FC and NVMe-oF plug in as new variants with their own
/// topologies and transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MachineProtocol {
    /// iSCSI (single path, multipath, shared targets).
    Iscsi,
    /// Fibre Channel (one or two HBAs on one or two fabrics, zoned to one or two array
    /// ports; no sessions: every zoned path is scanned).
    Fc,
    /// NVMe-oF (subsystems, controllers per port, namespaces by AEN; see [`super::nvme`]).
    Nvmeof,
}

impl MachineProtocol {
    /// Every protocol the machine knows.
    pub const ALL: &'static [MachineProtocol] = &[
        MachineProtocol::Iscsi,
        MachineProtocol::Fc,
        MachineProtocol::Nvmeof,
    ];

    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Iscsi => "iscsi",
            Self::Fc => "fc",
            Self::Nvmeof => "nvmeof",
        }
    }

    /// The protocol called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.name() == name)
    }
}

/// How the hosts of a case are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// No multipathd; the connector is single-path.
    Single,
    /// multipathd runs and the connector uses multipath.
    Multipath,
    /// multipathd runs (`find_multipaths no`: it maps every disk) but the connector is
    /// configured single-path: os-brick bug 1921381's configuration.
    MultipathdSingle,
}

/// The lab of one case: hosts, array, naming and identity policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The protocol.
    pub protocol: MachineProtocol,
    /// Number of hosts (2 = live-migration shapes).
    pub hosts: usize,
    /// Host setup (every host alike).
    pub host_kind: HostKind,
    /// Portals of the array (paths per volume for multipath).
    pub portals: usize,
    /// One target IQN for every volume (LUNs tell them apart) instead of one per volume.
    pub shared_target: bool,
    /// `IdentityPolicy::ReuseOnLun`: a volume mapped on a used (target, LUN) reports the old
    /// identity, as tgtd does.
    pub reuse_identity: bool,
    /// SAM-3 flat space addressing (the kernel sees LUN 16384 + n).
    pub flat_addressing: bool,
    /// The first LUN the array hands out (256 and more: FC's larger LUN numbers).
    pub first_lun: u64,
    /// Per-volume targets named from a recycled pool: a new volume gets the IQN of the
    /// lowest-numbered target no live volume holds, so a deleted volume's IQN comes back
    /// (arrays that name targets after recycled volume names do this).
    pub recycle_iqns: bool,
    /// The Fibre Channel layout (`None` for iSCSI).
    pub fc: Option<FcLayout>,
    /// The NVMe-oF layout (`None` for SCSI protocols); `portals` counts the array's ports.
    pub nvme: Option<super::nvme::NvmeLayout>,
}

/// HBAs and array ports of a Fibre Channel case. HBA `i` sits on fabric `i`; with
/// `two_fabrics` array port `j` sits on fabric `j`, else every port is on fabric 0. A path
/// is an (HBA, array port) pair on the same fabric, HBA-major (the connector's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FcLayout {
    /// HBA ports per host (1 or 2).
    pub hbas: usize,
    /// Target ports of the array (1 or 2).
    pub ports: usize,
    /// The array's ports are spread over two fabrics.
    pub two_fabrics: bool,
}

impl FcLayout {
    /// The fabric of array port `j`.
    pub fn port_fabric(&self, j: usize) -> usize {
        if self.two_fabrics { j } else { 0 }
    }

    /// Every (HBA, array port) path, HBA-major.
    pub fn paths(&self) -> Vec<(usize, usize)> {
        (0..self.hbas)
            .flat_map(|i| (0..self.ports).map(move |j| (i, j)))
            .filter(|(i, j)| self.port_fabric(*j) == *i)
            .collect()
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.nvme {
            return super::nvme::fmt_topology(self, n, f);
        }
        if let Some(fc) = &self.fc {
            write!(
                f,
                "{} host(s) {:?}, FC {} HBA(s), {} array port(s) on {} fabric(s), {} path(s), \
                 first LUN {}, ",
                self.hosts,
                self.host_kind,
                fc.hbas,
                fc.ports,
                if fc.two_fabrics { 2 } else { 1 },
                self.portals,
                self.first_lun
            )?;
            return write!(
                f,
                "identity {}",
                if self.reuse_identity {
                    "reuse-on-lun"
                } else {
                    "fresh"
                }
            );
        }
        write!(
            f,
            "{} host(s) {:?}, {} portal(s), {} target, identity {}{}",
            self.hosts,
            self.host_kind,
            self.portals,
            if self.shared_target {
                "shared"
            } else if self.recycle_iqns {
                "per-volume (recycled IQNs)"
            } else {
                "per-volume"
            },
            if self.reuse_identity {
                "reuse-on-lun"
            } else {
                "fresh"
            },
            if self.flat_addressing {
                ", SAM3-flat addressing"
            } else {
                ""
            }
        )
    }
}

/// Which fault classes a case may draw (swarm testing: each case enables a random subset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultMix {
    /// `multipath -f` fails (once, or on every try).
    pub map_flush: bool,
    /// `blockdev --flushbufs` fails.
    pub device_flush: bool,
    /// Writing a SCSI device's `delete` fails with EBUSY.
    pub delete_busy: bool,
    /// udev events are 30 s late.
    pub udev_late: bool,
    /// udev `add` events are lost (no links for the new devices).
    pub udev_lost: bool,
    /// udev `remove` events of a detach are lost (the removed disks' and maps' links stay
    /// behind, dangling, until a new disk or map takes the same kernel name; multipathd
    /// does not hear of the removed paths either). Never with `udev_lost` in one case.
    pub udev_lost_remove: bool,
    /// multipathd takes 5 s more to drop removed paths.
    pub multipathd_slow: bool,
    /// The detaching process crashes after k side effects, then the detach is retried.
    pub crash: bool,
    /// Portals go down and come back.
    pub path_flap: bool,
    /// NVMe-oF: another volume of the subsystem is mapped to the host while an attach
    /// connects (`Fault::NamespaceAppears`: a concurrent attach's namespace appears).
    pub namespace_appears: bool,
}

impl fmt::Display for FaultMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.map_flush, "map-flush"),
            (self.device_flush, "device-flush"),
            (self.delete_busy, "delete-busy"),
            (self.udev_late, "udev-late"),
            (self.udev_lost, "udev-lost"),
            (self.udev_lost_remove, "udev-lost-remove"),
            (self.multipathd_slow, "multipathd-slow"),
            (self.crash, "crash"),
            (self.path_flap, "path-flap"),
            (self.namespace_appears, "namespace-appears"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// A fault armed for the duration of one attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachFault {
    /// udev events are 30 s late.
    UdevLate,
    /// udev `add` events are lost.
    UdevLost,
    /// NVMe-oF: the first `nvme connect` of the attach finds volume `vol` (same subsystem)
    /// newly mapped to the host, as if another attach raced with this one.
    NamespaceAppears {
        /// The volume mapped concurrently.
        vol: usize,
    },
}

/// A fault armed for the duration of one detach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DetachFault {
    /// `multipath -f` fails once (a retry succeeds) or on every try (`persistent`).
    MapFlushFails {
        /// Fails on every try.
        persistent: bool,
    },
    /// `blockdev --flushbufs` fails on every try.
    DeviceFlushFails,
    /// Every SCSI device `delete` write fails with EBUSY.
    DeleteBusy,
    /// udev events are 30 s late.
    UdevLate,
    /// udev `remove` events are lost: the removed disks' links stay, dangling.
    UdevLostRemove,
    /// multipathd drops removed paths 5 s late.
    MultipathdSlow,
    /// The process dies after `after` side effects; the detach is then retried.
    Crash {
        /// Side effects that still succeed.
        after: u8,
    },
}

/// One step of a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Transition {
    /// Create the next volume (`v0`, `v1`...).
    Create,
    /// Map (export) a volume to a host: the array picks the LUN.
    Map {
        /// Volume index.
        vol: usize,
        /// Host index.
        host: usize,
    },
    /// Unmap a volume from a host on the array only (a leaked detach if it is attached).
    Unmap {
        /// Volume index.
        vol: usize,
        /// Host index.
        host: usize,
    },
    /// Delete a volume on the array only.
    Delete {
        /// Volume index.
        vol: usize,
    },
    /// Attach with the connector.
    Attach {
        /// Volume index.
        vol: usize,
        /// Host index.
        host: usize,
        /// Fault armed during the attach.
        fault: Option<AttachFault>,
    },
    /// Detach with the connector.
    Detach {
        /// Volume index.
        vol: usize,
        /// Host index.
        host: usize,
        /// `force`.
        force: bool,
        /// Pass the attach's device info.
        device_info: bool,
        /// Fault armed during the detach.
        fault: Option<DetachFault>,
    },
    /// A portal becomes unreachable from a host (iSCSI), or a host's HBA loses its link
    /// past `dev_loss_tmo`, taking its disks with it (FC: `portal` is the HBA index).
    PathDown {
        /// Host index.
        host: usize,
        /// Portal index (FC: HBA index).
        portal: usize,
    },
    /// The portal is reachable again (FC: the HBA link is back and the kernel scans the
    /// targets it reaches for every LUN presented to the host).
    PathUp {
        /// Host index.
        host: usize,
        /// Portal index.
        portal: usize,
    },
    /// Nothing happens but time (a minute).
    Wait,
}

/// Name of volume `i` in the lab and in scenario files.
pub fn vol_name(i: usize) -> String {
    format!("v{i}")
}

/// Name of host `i`.
pub fn host_name(i: usize) -> String {
    format!("host-{}", i + 1)
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create => f.write_str("create next volume"),
            Self::Map { vol, host } => write!(f, "map {} to {}", vol_name(*vol), host_name(*host)),
            Self::Unmap { vol, host } => write!(
                f,
                "unmap {} from {} on the array",
                vol_name(*vol),
                host_name(*host)
            ),
            Self::Delete { vol } => write!(f, "delete {} on the array", vol_name(*vol)),
            Self::Attach { vol, host, fault } => {
                write!(f, "attach {} on {}", vol_name(*vol), host_name(*host))?;
                if let Some(x) = fault {
                    write!(f, " [fault {x:?}]")?;
                }
                Ok(())
            }
            Self::Detach {
                vol,
                host,
                force,
                device_info,
                fault,
            } => {
                write!(f, "detach {} from {}", vol_name(*vol), host_name(*host))?;
                if *force {
                    f.write_str(" force")?;
                }
                if !device_info {
                    f.write_str(" without device info")?;
                }
                if let Some(x) = fault {
                    write!(f, " [fault {x:?}]")?;
                }
                Ok(())
            }
            Self::PathDown { host, portal } => {
                write!(f, "portal {portal} down for {}", host_name(*host))
            }
            Self::PathUp { host, portal } => {
                write!(f, "portal {portal} up for {}", host_name(*host))
            }
            Self::Wait => f.write_str("wait a minute"),
        }
    }
}

/// A target: `None` is the shared target, `Some(n)` per-volume target number `n` (volume
/// `n`'s own, or with recycled IQNs the slot a volume was given).
pub type Tgt = Option<usize>;

/// Where a device sits: host, target, portal, kernel-independent LUN (the array's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DevKey {
    /// Host index.
    pub host: usize,
    /// Target.
    pub tgt: Tgt,
    /// Portal index.
    pub portal: usize,
    /// The array's LUN.
    pub lun: u64,
}

/// A SCSI disk on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Device {
    /// The identity read at probe time.
    pub ident: u32,
    /// udev processed its `add` (its links exist).
    pub linked: bool,
    /// Its `/dev/disk/by-id/scsi-*` links were unlinked by a detach that then failed to
    /// delete it (os-brick unlinks them whatever the outcome).
    pub id_unlinked: bool,
    /// Creation order (dm path order; udev claims its links in this order too).
    pub seq: u64,
    /// The kernel's `sd` index (`sda` = 0): the lowest free one on the host at probe time.
    pub name: u32,
}

/// A removed disk whose udev `remove` event was lost: its links still claim their paths and
/// point at a kernel name no device has, until a new disk takes that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StaleDisk {
    /// Where it sat (`key.host` is the host).
    pub key: DevKey,
    /// Its identity.
    pub ident: u32,
    /// Its `sd` index.
    pub name: u32,
}

/// A volume the array created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelVolume {
    /// Its current identity token.
    pub ident: u32,
    /// Its target's number (per-volume targets): its own index, or the recycled one.
    pub slot: usize,
    /// Not deleted.
    pub exists: bool,
    /// Host index -> LUN.
    pub mapped: BTreeMap<usize, u64>,
}

/// What the attach returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AttachedDev {
    /// A single SCSI disk.
    Sd(DevKey),
    /// A multipath map of this identity.
    Dm(u32),
}

/// An attachment as the lab records it (props at attach time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ModelAttachment {
    /// Target of the props.
    pub tgt: Tgt,
    /// LUN of the props.
    pub lun: u64,
    /// What attach returned.
    pub dev: AttachedDev,
    /// That device has existed without interruption since (a disk or map removed and
    /// created again, e.g. by an FC link loss and the scan when the link returns, is
    /// another device, perhaps under another name).
    pub alive: bool,
}

/// What the last transition must have returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Nothing to check (array-side and fault transitions).
    Any,
    /// The connector call succeeds.
    Ok,
    /// The connector call fails.
    Err,
    /// Attach succeeds returning this device; `wwn`: the identity it reports, `None` when a
    /// udev fault may hide it (then either is accepted).
    Attached {
        /// The device.
        dev: AttachedDev,
        /// The identity token expected in `scsi_wwn`.
        wwn: Option<u32>,
        /// The volume was already attached through the same device (idempotence).
        again: bool,
    },
    /// NVMe-oF attach succeeds returning this namespace device.
    NvmeAttached {
        /// The device.
        dev: super::nvme::NvmeName,
        /// The identity it carries.
        ident: u32,
        /// The volume was already attached through the same device.
        again: bool,
    },
}

/// The reference state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelState {
    /// The lab.
    pub topology: Topology,
    /// The fault classes this case may draw.
    pub faults: FaultMix,
    /// The simulator's seed.
    pub world_seed: u64,
    /// Volumes in creation order.
    pub volumes: Vec<ModelVolume>,
    next_ident: u32,
    /// (target, LUN) -> identity first reported there (reuse policy).
    pub lun_identity: BTreeMap<(Tgt, u64), u32>,
    /// Host-side disks.
    pub devices: BTreeMap<DevKey, Device>,
    next_seq: u64,
    /// Multipath maps: (host, identity).
    pub dms: BTreeSet<(usize, u32)>,
    /// iSCSI sessions: (host, target, portal).
    pub sessions: BTreeSet<(usize, Tgt, usize)>,
    /// (host, volume) -> attachment.
    pub attachments: BTreeMap<(usize, usize), ModelAttachment>,
    /// (host, portal) unreachable (FC: (host, HBA) link down).
    pub down: BTreeSet<(usize, usize)>,
    /// Removed disks whose udev `remove` was lost.
    pub stale: Vec<StaleDisk>,
    /// The dm minor of each map (`dm-N`: lowest free on the host when it was created).
    pub dm_minor: BTreeMap<(usize, u32), u32>,
    /// Removed maps whose udev `remove` was lost: (host, minor, identity). Their links,
    /// `scsi-<wwid>` among them (it outranks the disks'), dangle.
    pub stale_dms: Vec<(usize, u32, u32)>,
    /// udev `remove` events are being lost (during one detach).
    #[serde(skip)]
    losing_removes: bool,
    /// What the last transition must return.
    pub outcome: Outcome,
    /// NVMe-oF controllers, subsystems and attachments (empty for SCSI protocols).
    pub nvme: super::nvme::NvmeState,
}

impl ModelState {
    /// The empty lab of a case: no volume, nothing attached.
    pub fn new(topology: Topology, faults: FaultMix, world_seed: u64) -> Self {
        Self {
            topology,
            faults,
            world_seed,
            volumes: Vec::new(),
            next_ident: 0,
            lun_identity: BTreeMap::new(),
            devices: BTreeMap::new(),
            next_seq: 0,
            dms: BTreeSet::new(),
            sessions: BTreeSet::new(),
            attachments: BTreeMap::new(),
            down: BTreeSet::new(),
            stale: Vec::new(),
            dm_minor: BTreeMap::new(),
            stale_dms: Vec::new(),
            losing_removes: false,
            outcome: Outcome::Any,
            nvme: super::nvme::NvmeState::default(),
        }
    }

    fn shared(&self) -> bool {
        self.topology.shared_target
    }

    fn multipathd(&self) -> bool {
        self.topology.host_kind != HostKind::Single
    }

    fn connector_multipath(&self) -> bool {
        self.topology.host_kind == HostKind::Multipath
    }

    /// NVMe-oF: the model lives in [`super::nvme`].
    pub fn is_nvme(&self) -> bool {
        self.topology.protocol == MachineProtocol::Nvmeof
    }

    /// Fibre Channel: no sessions, every zoned path is scanned.
    pub fn is_fc(&self) -> bool {
        self.topology.protocol == MachineProtocol::Fc
    }

    /// Whether path (portal) `p` is unreachable from `h` now. For FC, `down` holds
    /// (host, HBA) pairs whose link is down.
    fn is_down(&self, h: usize, p: usize) -> bool {
        match &self.topology.fc {
            Some(fc) => fc
                .paths()
                .get(p)
                .is_some_and(|(hba, _)| self.down.contains(&(h, *hba))),
            None => self.down.contains(&(h, p)),
        }
    }

    /// The target of volume `v`.
    pub fn tgt_of(&self, v: usize) -> Tgt {
        if self.shared() {
            None
        } else {
            Some(self.volumes.get(v).map_or(v, |x| x.slot))
        }
    }

    fn exists(&self, v: usize) -> bool {
        self.volumes.get(v).is_some_and(|x| x.exists)
    }

    /// The LUN `v` is mapped at for `h`.
    pub fn mapped(&self, v: usize, h: usize) -> Option<u64> {
        self.volumes
            .get(v)
            .filter(|x| x.exists)
            .and_then(|x| x.mapped.get(&h).copied())
    }

    /// Whether `(h, v)` is attached (as the lab records it).
    pub fn attached(&self, h: usize, v: usize) -> bool {
        self.attachments.contains_key(&(h, v))
    }

    /// The volume the array maps at `(tgt, lun)` for host `h` now.
    pub fn backing(&self, h: usize, tgt: Tgt, lun: u64) -> Option<usize> {
        self.volumes
            .iter()
            .enumerate()
            .find(|(i, v)| v.exists && self.tgt_of(*i) == tgt && v.mapped.get(&h) == Some(&lun))
            .map(|(i, _)| i)
    }

    /// The identity a probe at `(tgt, lun)` for `h` reads now, if anything is mapped there.
    fn probe(&self, h: usize, tgt: Tgt, lun: u64) -> Option<u32> {
        let v = self.backing(h, tgt, lun)?;
        let own = self.volumes.get(v)?.ident;
        Some(if self.topology.reuse_identity {
            self.lun_identity.get(&(tgt, lun)).copied().unwrap_or(own)
        } else {
            own
        })
    }

    /// The volume the checks name for identity `ident` (the newest volume with it), as the
    /// harness resolves WWIDs to names.
    pub fn name_of_ident(&self, ident: u32) -> Option<usize> {
        self.volumes
            .iter()
            .enumerate()
            .filter(|(_, v)| v.ident == ident)
            .map(|(i, _)| i)
            .next_back()
    }

    fn session_has_devices(&self, h: usize, tgt: Tgt, p: usize) -> bool {
        self.devices
            .keys()
            .any(|k| k.host == h && k.tgt == tgt && k.portal == p)
    }

    fn target_exists(&self, tgt: Tgt) -> bool {
        match tgt {
            None => true,
            Some(n) => self.volumes.iter().any(|x| x.exists && x.slot == n),
        }
    }

    /// Whether `h` may log in to `tgt` through `p` now.
    fn can_login(&self, h: usize, tgt: Tgt, p: usize) -> bool {
        !self.is_down(h, p)
            && self.target_exists(tgt)
            && self
                .volumes
                .iter()
                .enumerate()
                .any(|(i, v)| v.exists && self.tgt_of(i) == tgt && v.mapped.contains_key(&h))
    }

    fn add_device(&mut self, key: DevKey, ident: u32, linked: bool) {
        self.next_seq += 1;
        let used: BTreeSet<u32> = self
            .devices
            .iter()
            .filter(|(k, _)| k.host == key.host)
            .map(|(_, d)| d.name)
            .collect();
        let name = (0..).find(|n| !used.contains(n)).unwrap_or(0);
        if linked {
            // udev's `add` for the name replaces every claim the name's old device left.
            self.stale
                .retain(|s| !(s.key.host == key.host && s.name == name));
        }
        self.devices.insert(
            key,
            Device {
                ident,
                linked,
                id_unlinked: false,
                seq: self.next_seq,
                name,
            },
        );
    }

    /// Removes devices; a map left without paths goes too.
    fn remove_devices(&mut self, keys: &[DevKey]) {
        for k in keys {
            for a in self.attachments.values_mut() {
                if a.dev == AttachedDev::Sd(*k) {
                    a.alive = false;
                }
            }
            if let Some(d) = self.devices.remove(k)
                && self.losing_removes
                && d.linked
            {
                self.stale.push(StaleDisk {
                    key: *k,
                    ident: d.ident,
                    name: d.name,
                });
            }
        }
        self.prune_dms();
    }

    /// Whether a `/dev` link of `h` points at a removed disk now. A stale disk's
    /// `by-diskseq/<n>` link is never claimed by another disk (disk sequence numbers are
    /// not reused), so it dangles until a new disk takes the stale disk's kernel name (udev's
    /// `add` for the name replaces what the name claimed).
    pub fn has_stale_link(&self, h: usize) -> bool {
        self.stale.iter().any(|s| s.key.host == h) || self.stale_dms.iter().any(|s| s.0 == h)
    }

    /// Drops maps left without paths. A disk is a path of its identity's map once
    /// multipathd heard of it, i.e. once udev processed its `add` (`linked`).
    fn prune_dms(&mut self) {
        let devices = &self.devices;
        let gone: Vec<(usize, u32)> = self
            .dms
            .iter()
            .filter(|(h, ident)| {
                !devices
                    .iter()
                    .any(|(k, d)| k.host == *h && d.ident == *ident && d.linked)
            })
            .copied()
            .collect();
        for (h, ident) in gone {
            self.drop_dm(h, ident);
        }
    }

    /// Creates map `(h, ident)` if it does not exist, on the lowest free dm minor; udev's
    /// `add` for `dm-N` replaces what a lost `remove` left on that name.
    fn add_dm(&mut self, h: usize, ident: u32) {
        if !self.dms.insert((h, ident)) {
            return;
        }
        let used: BTreeSet<u32> = self
            .dm_minor
            .iter()
            .filter(|((x, _), _)| *x == h)
            .map(|(_, m)| *m)
            .collect();
        let minor = (0..).find(|m| !used.contains(m)).unwrap_or(0);
        self.dm_minor.insert((h, ident), minor);
        self.stale_dms.retain(|s| (s.0, s.1) != (h, minor));
    }

    /// Removes map `(h, ident)`; an attachment that returned it no longer has its device.
    fn drop_dm(&mut self, h: usize, ident: u32) {
        self.dms.remove(&(h, ident));
        if let Some(minor) = self.dm_minor.remove(&(h, ident))
            && self.losing_removes
        {
            self.stale_dms.push((h, minor, ident));
        }
        for ((x, _), a) in self.attachments.iter_mut() {
            if *x == h && a.dev == AttachedDev::Dm(ident) {
                a.alive = false;
            }
        }
    }

    fn logout_idle(&mut self, h: usize, tgt: Tgt, portals: impl Iterator<Item = usize>) {
        for p in portals {
            if !self.session_has_devices(h, tgt, p) {
                self.sessions.remove(&(h, tgt, p));
            }
        }
    }

    // ---------------------------------------------------------------- transitions

    fn create(&mut self) {
        let ident = self.next_ident;
        self.next_ident += 1;
        let slot = if self.topology.recycle_iqns {
            let held: BTreeSet<usize> = self
                .volumes
                .iter()
                .filter(|x| x.exists)
                .map(|x| x.slot)
                .collect();
            (0..).find(|n| !held.contains(n)).unwrap_or(0)
        } else {
            self.volumes.len()
        };
        self.volumes.push(ModelVolume {
            ident,
            slot,
            exists: true,
            mapped: BTreeMap::new(),
        });
    }

    fn map(&mut self, v: usize, h: usize) {
        let tgt = self.tgt_of(v);
        let used: BTreeSet<u64> = self
            .volumes
            .iter()
            .enumerate()
            .filter(|(i, x)| x.exists && self.tgt_of(*i) == tgt)
            .filter_map(|(_, x)| x.mapped.get(&h).copied())
            .collect();
        let first = self.topology.first_lun;
        let lun = (first..).find(|l| !used.contains(l)).unwrap_or(first);
        let reuse = self.topology.reuse_identity;
        let first_mapping = self.volumes.get(v).is_some_and(|x| x.mapped.is_empty());
        if reuse {
            match self.lun_identity.get(&(tgt, lun)).copied() {
                Some(old) if first_mapping => {
                    if let Some(x) = self.volumes.get_mut(v) {
                        x.ident = old;
                    }
                }
                Some(_) => {}
                None => {
                    let own = self.volumes.get(v).map_or(0, |x| x.ident);
                    self.lun_identity.insert((tgt, lun), own);
                }
            }
        }
        if let Some(x) = self.volumes.get_mut(v) {
            x.mapped.insert(h, lun);
        }
    }

    fn attach(&mut self, v: usize, h: usize, fault: Option<AttachFault>) {
        let Some(lun) = self.mapped(v, h) else {
            self.outcome = Outcome::Err;
            return;
        };
        let tgt = self.tgt_of(v);
        let lost = fault == Some(AttachFault::UdevLost);
        let late = fault == Some(AttachFault::UdevLate);
        let portals = self.topology.portals;
        let previous = self.attachments.get(&(h, v)).copied();
        let existed = |s: &Self, d: AttachedDev| match d {
            AttachedDev::Sd(k) => s.devices.contains_key(&k),
            AttachedDev::Dm(i) => s.dms.contains(&(h, i)),
        };
        let kept = previous.is_some_and(|a| a.alive && existed(self, a.dev));
        let result = if self.is_fc() {
            self.attach_fc(h, tgt, lun, portals, lost)
        } else if self.connector_multipath() {
            self.attach_multipath(h, tgt, lun, portals, lost, late)
        } else {
            self.attach_single(h, tgt, lun, portals, lost, late)
        };
        match result {
            Some((dev, wwn)) => {
                self.attachments.insert(
                    (h, v),
                    ModelAttachment {
                        tgt,
                        lun,
                        dev,
                        alive: true,
                    },
                );
                self.outcome = Outcome::Attached {
                    dev,
                    wwn,
                    again: kept
                        && previous.is_some_and(|a| a.dev == dev && a.lun == lun && a.tgt == tgt),
                };
            }
            None => {
                // connect_volume cleans up with force: sessions left without devices go.
                self.logout_idle(h, tgt, 0..portals);
                self.outcome = Outcome::Err;
            }
        }
    }

    /// A new disk at `key` (probed now); multipathd maps it when udev tells it (late events
    /// are delivered by the settle that follows every step, lost ones never).
    fn scan_new(&mut self, key: DevKey, lost: bool) -> Option<u32> {
        let ident = self.probe(key.host, key.tgt, key.lun)?;
        self.add_device(key, ident, !lost);
        if self.multipathd() && !lost {
            self.add_dm(key.host, ident);
        }
        Some(ident)
    }

    fn attach_single(
        &mut self,
        h: usize,
        tgt: Tgt,
        lun: u64,
        portals: usize,
        lost: bool,
        late: bool,
    ) -> Option<(AttachedDev, Option<u32>)> {
        for p in 0..portals {
            let key = DevKey {
                host: h,
                tgt,
                portal: p,
                lun,
            };
            if let Some(d) = self.devices.get(&key).copied() {
                let wwn = self.scsi_link(h, d.ident).then_some(d.ident);
                return Some((AttachedDev::Sd(key), wwn));
            }
            let has_session = self.sessions.contains(&(h, tgt, p));
            if !self.is_down(h, p) && (has_session || self.can_login(h, tgt, p)) {
                self.sessions.insert((h, tgt, p));
                let linked_before = self
                    .probe(h, tgt, lun)
                    .is_some_and(|i| self.scsi_link(h, i));
                if let Some(ident) = self.scan_new(key, lost) {
                    let wwn = ((!lost && !late) || linked_before).then_some(ident);
                    return Some((AttachedDev::Sd(key), wwn));
                }
            }
            // A failed portal is cleaned at once (force, ignore_errors).
            self.logout_idle(h, tgt, std::iter::once(p));
        }
        None
    }

    /// Fibre Channel: a linked device on a live path is used as it is; else every live
    /// path is scanned for the LUN (narrow scans) and the first linked one is returned. Lost
    /// udev events leave no by-path link: the attach fails, the devices stay.
    fn attach_fc(
        &mut self,
        h: usize,
        tgt: Tgt,
        lun: u64,
        paths: usize,
        lost: bool,
    ) -> Option<(AttachedDev, Option<u32>)> {
        let key = |p: usize| DevKey {
            host: h,
            tgt,
            portal: p,
            lun,
        };
        let usable = |s: &Self, p: usize| {
            !s.is_down(h, p) && s.devices.get(&key(p)).is_some_and(|d| d.linked)
        };
        let found = match (0..paths).find(|p| usable(self, *p)) {
            Some(p) => p,
            None => {
                for p in 0..paths {
                    if !self.is_down(h, p) && !self.devices.contains_key(&key(p)) {
                        self.scan_new(key(p), lost);
                    }
                }
                (0..paths).find(|p| usable(self, *p))?
            }
        };
        let k = key(found);
        let ident = self.devices.get(&k)?.ident;
        if self.connector_multipath() && self.dms.contains(&(h, ident)) {
            return Some((AttachedDev::Dm(ident), Some(ident)));
        }
        // The WWN comes from sysfs when a `scsi-<wwid>` link vouches for it, else from
        // `scsi_id`, which asks the LUN now: the identity of whatever is mapped there.
        let wwn = if self.scsi_link(h, ident) {
            Some(ident)
        } else {
            self.probe(h, tgt, lun)
        };
        Some((AttachedDev::Sd(k), wwn))
    }

    /// Whether the connector handles disk `a` before disk `b` when it removes a volume's
    /// disks: FC in path order, iSCSI in sorted device-name order.
    fn removed_before(&self, a: &DevKey, b: &DevKey) -> bool {
        if self.is_fc() {
            return a.portal < b.portal;
        }
        let name = |k: &DevKey| {
            self.devices
                .get(k)
                .map(|d| crate::agent::fixture::sd_name(d.name as usize))
        };
        matches!((name(a), name(b)), (Some(x), Some(y)) if x < y)
    }

    /// The connector unlinks every `by-id/scsi-*` link that points at a disk it removes
    /// (os-brick's `_remove_scsi_symlinks`), whether the delete worked or not. Without
    /// multipathd that link is the disk's own when the disk holds the newest claim of its
    /// identity, and then every other disk of that identity on the host loses it too
    /// (volumes sharing an identity: reuse-on-LUN arrays). With multipathd the map's claim
    /// outranks the disks' and the link is left alone.
    fn unlink_scsi_ids(&mut self, h: usize, removed: &[DevKey]) {
        if self.multipathd() {
            return;
        }
        let idents: BTreeSet<u32> = removed
            .iter()
            .filter_map(|k| self.devices.get(k))
            .map(|d| d.ident)
            .collect();
        for ident in idents {
            let winner = self
                .devices
                .iter()
                .filter(|(k, d)| k.host == h && d.ident == ident && d.linked && !d.id_unlinked)
                .max_by_key(|(_, d)| d.seq)
                .map(|(k, _)| *k);
            if winner.is_some_and(|w| removed.contains(&w)) {
                for (k, d) in self.devices.iter_mut() {
                    if k.host == h && d.ident == ident {
                        d.id_unlinked = true;
                    }
                }
            }
        }
    }

    /// Whether a `scsi-<wwid>` link of `ident` exists on `h` (some linked disk has it).
    fn scsi_link(&self, h: usize, ident: u32) -> bool {
        self.devices
            .iter()
            .any(|(k, d)| k.host == h && d.ident == ident && d.linked && !d.id_unlinked)
            || self.stale_dms.iter().any(|s| s.0 == h && s.2 == ident)
    }

    fn attach_multipath(
        &mut self,
        h: usize,
        tgt: Tgt,
        lun: u64,
        portals: usize,
        lost: bool,
        late: bool,
    ) -> Option<(AttachedDev, Option<u32>)> {
        let dms_before = self.dms.clone();
        let linked_before: BTreeSet<u32> = self
            .devices
            .iter()
            .filter(|(k, d)| k.host == h && d.linked && !d.id_unlinked)
            .map(|(_, d)| d.ident)
            .chain(self.stale_dms.iter().filter(|s| s.0 == h).map(|s| s.2))
            .collect();
        let mut found: Vec<DevKey> = Vec::new();
        let mut announced = false;
        // A down portal whose session exists has the connector rescan for about a minute
        // before it moves on to the next portal: events that are "only" 30 s late, of disks
        // found at earlier portals, arrive while it waits.
        let slow_after: Vec<bool> = (0..portals)
            .map(|q| {
                (q + 1..portals).any(|p| {
                    self.is_down(h, p)
                        && self.sessions.contains(&(h, tgt, p))
                        && !self.devices.contains_key(&DevKey {
                            host: h,
                            tgt,
                            portal: p,
                            lun,
                        })
                })
            })
            .collect();
        for p in 0..portals {
            let key = DevKey {
                host: h,
                tgt,
                portal: p,
                lun,
            };
            if self.devices.contains_key(&key) {
                found.push(key);
                continue;
            }
            let has_session = self.sessions.contains(&(h, tgt, p));
            if !self.is_down(h, p) && (has_session || self.can_login(h, tgt, p)) {
                self.sessions.insert((h, tgt, p));
                if self.scan_new(key, lost).is_some() {
                    found.push(key);
                    announced |= !lost && (!late || slow_after.get(p).copied().unwrap_or(false));
                }
            }
        }
        let first = *found.first()?;
        let ident = self.devices.get(&first)?.ident;
        // A map of that identity already exists, or udev forms one while the connector
        // waits, or the connector knows the WWID (a `scsi-` link) and adds the path itself.
        if dms_before.contains(&(h, ident)) || announced || linked_before.contains(&ident) {
            self.add_dm(h, ident);
            return Some((AttachedDev::Dm(ident), Some(ident)));
        }
        // udev late or lost and no WWID known: the first path is returned (late events
        // still form the map after the settle).
        Some((AttachedDev::Sd(first), None))
    }

    fn detach(
        &mut self,
        v: usize,
        h: usize,
        force: bool,
        device_info: bool,
        fault: Option<DetachFault>,
    ) {
        let (tgt, lun, dev) = match self.attachments.get(&(h, v)) {
            Some(a) => (a.tgt, a.lun, Some(a.dev)),
            None => match self.mapped(v, h) {
                Some(l) => (self.tgt_of(v), l, None),
                None => {
                    self.outcome = Outcome::Err;
                    return;
                }
            },
        };
        let info = if device_info { dev } else { None };
        let portals = self.topology.portals;
        let belong: Vec<DevKey> = (0..portals)
            .map(|p| DevKey {
                host: h,
                tgt,
                portal: p,
                lun,
            })
            .filter(|k| self.devices.contains_key(k))
            .collect();
        // The map over those devices (os-brick: the first holder).
        let dm = belong
            .iter()
            .filter_map(|k| self.devices.get(k))
            .filter(|d| d.linked)
            .map(|d| d.ident)
            .find(|i| self.dms.contains(&(h, *i)));
        // The single device flushed: the one attach returned, passed as device info.
        let flushed = match info {
            Some(AttachedDev::Sd(k)) => {
                // FC passes its by-path link. Once that link is gone (its disk went with an
                // HBA link loss), its realpath is the link itself, outside `/dev`, and
                // os-brick's `requires_flush` rule then flushes every disk.
                let link_gone = self.is_fc()
                    && !self.devices.contains_key(&k)
                    && !self.stale.iter().any(|s| s.key == k);
                belong.contains(&k) || link_gone
            }
            _ => false,
        };
        if let Some(DetachFault::Crash { .. }) = fault {
            // The crashed first attempt is retried: the end state is the retry's. With
            // force the lab forgot the attachment, so the retry has no device info.
            self.detach(v, h, force, device_info && !force, None);
            if force {
                // Either attempt may have reported errors; only the end state is checked.
                self.outcome = Outcome::Any;
            }
            return;
        }
        self.losing_removes = fault == Some(DetachFault::UdevLostRemove);
        let used = match info {
            Some(AttachedDev::Sd(k)) if belong.contains(&k) => Some(k),
            _ => None,
        };
        self.detach_devices(h, v, tgt, lun, dm, &belong, (flushed, used), force, fault);
        self.losing_removes = false;
    }

    /// The device part of [`Self::detach`]: flush the map, remove the disks, log out.
    #[allow(clippy::too_many_arguments)]
    fn detach_devices(
        &mut self,
        h: usize,
        v: usize,
        tgt: Tgt,
        lun: u64,
        dm: Option<u32>,
        belong: &[DevKey],
        (flushed, used): (bool, Option<DevKey>),
        force: bool,
        fault: Option<DetachFault>,
    ) {
        let portals = self.topology.portals;
        let mut error = false;
        let mut removed_dm = false;
        if let Some(ident) = dm {
            if fault == Some(DetachFault::MapFlushFails { persistent: true }) {
                error = true;
                if !force {
                    self.outcome = Outcome::Err;
                    return;
                }
            } else {
                removed_dm = true;
            }
            if removed_dm {
                self.drop_dm(h, ident);
            }
        }
        if !belong.is_empty() {
            let flush_fails = fault == Some(DetachFault::DeviceFlushFails) && flushed;
            let busy = fault == Some(DetachFault::DeleteBusy);
            if flush_fails || busy {
                error = true;
                if !force {
                    // Nothing after the first failure runs. A failing flush is the used
                    // device's: the disks the connector handles before it (sysfs name order
                    // for iSCSI, path order for FC) need no flush and are deleted already.
                    if flush_fails
                        && !busy
                        && let Some(k) = used
                    {
                        let before: Vec<DevKey> = belong
                            .iter()
                            .filter(|x| self.removed_before(x, &k))
                            .copied()
                            .collect();
                        self.remove_devices(&before);
                    }
                    self.prune_dms();
                    self.outcome = Outcome::Err;
                    return;
                }
            }
            // The connector got as far as removing the disks' `scsi-*` links.
            self.unlink_scsi_ids(h, belong);
            if busy {
                // No delete worked; a logout takes the devices with the session (FC has
                // none: the devices stay).
                let logout_portals = if self.is_fc() { 0 } else { portals };
                for p in 0..logout_portals {
                    let others = self
                        .devices
                        .keys()
                        .any(|k| k.host == h && k.tgt == tgt && k.portal == p && k.lun != lun);
                    if !others {
                        let gone: Vec<DevKey> = self
                            .devices
                            .keys()
                            .filter(|k| k.host == h && k.tgt == tgt && k.portal == p)
                            .copied()
                            .collect();
                        self.remove_devices(&gone);
                        self.sessions.remove(&(h, tgt, p));
                    }
                }
                for k in belong {
                    if let Some(d) = self.devices.get_mut(k) {
                        d.id_unlinked = true;
                    }
                }
            } else {
                self.remove_devices(belong);
            }
        }
        self.logout_idle(h, tgt, 0..portals);
        if error && !force {
            self.outcome = Outcome::Err;
            return;
        }
        self.attachments.remove(&(h, v));
        self.outcome = if error { Outcome::Err } else { Outcome::Ok };
    }

    /// Applies one transition.
    pub fn step(mut self, t: &Transition) -> Self {
        self.outcome = Outcome::Any;
        if self.is_nvme() {
            super::nvme::step(&mut self, t);
            return self;
        }
        match *t {
            Transition::Create => self.create(),
            Transition::Map { vol, host } => self.map(vol, host),
            Transition::Unmap { vol, host } => {
                if let Some(x) = self.volumes.get_mut(vol) {
                    x.mapped.remove(&host);
                }
            }
            Transition::Delete { vol } => {
                if let Some(x) = self.volumes.get_mut(vol) {
                    x.exists = false;
                    x.mapped.clear();
                }
            }
            Transition::Attach { vol, host, fault } => self.attach(vol, host, fault),
            Transition::Detach {
                vol,
                host,
                force,
                device_info,
                fault,
            } => self.detach(vol, host, force, device_info, fault),
            Transition::PathDown { host, portal } => {
                self.down.insert((host, portal));
                if let Some(fc) = self.topology.fc {
                    // dev_loss_tmo passes (the step settles): the HBA's disks go.
                    let paths = fc.paths();
                    let gone: Vec<DevKey> = self
                        .devices
                        .keys()
                        .filter(|k| {
                            k.host == host && paths.get(k.portal).is_some_and(|(i, _)| *i == portal)
                        })
                        .copied()
                        .collect();
                    self.remove_devices(&gone);
                }
            }
            Transition::PathUp { host, portal } => {
                self.down.remove(&(host, portal));
                if let Some(fc) = self.topology.fc {
                    // The HBA logs in again and the kernel scans every target it reaches for
                    // every LUN presented to the host (rports in port order, LUNs ascending).
                    let mut luns: Vec<u64> = (0..self.volumes.len())
                        .filter_map(|v| self.mapped(v, host))
                        .collect();
                    luns.sort_unstable();
                    for (p, (hba, _)) in fc.paths().into_iter().enumerate() {
                        if hba != portal {
                            continue;
                        }
                        for lun in &luns {
                            let key = DevKey {
                                host,
                                tgt: None,
                                portal: p,
                                lun: *lun,
                            };
                            if !self.devices.contains_key(&key) {
                                self.scan_new(key, false);
                            }
                        }
                    }
                }
            }
            Transition::Wait => {}
        }
        self
    }

    /// Whether `t` may run in this state (also checked while shrinking).
    pub fn allows(&self, t: &Transition) -> bool {
        if self.is_nvme() {
            return super::nvme::allows(self, t);
        }
        let hosts = self.topology.hosts;
        match *t {
            Transition::Create => {
                self.volumes.iter().filter(|v| v.exists).count() < MAX_VOLUMES
                    && self.volumes.len() < 2 * MAX_VOLUMES
            }
            Transition::Wait => true,
            Transition::Map { vol, host } => {
                host < hosts
                    && self.exists(vol)
                    && self.mapped(vol, host).is_none()
                    && !self.map_duplicates_identity(vol, host)
            }
            Transition::Unmap { vol, host } => host < hosts && self.mapped(vol, host).is_some(),
            Transition::Delete { vol } => self.exists(vol),
            Transition::Attach { vol, host, fault } => {
                host < hosts
                    && self.mapped(vol, host).is_some()
                    && match fault {
                        None => true,
                        Some(AttachFault::UdevLate) => self.faults.udev_late && !self.is_fc(),
                        Some(AttachFault::UdevLost) => self.faults.udev_lost,
                        Some(AttachFault::NamespaceAppears { .. }) => false,
                    }
            }
            Transition::Detach {
                vol, host, fault, ..
            } => {
                host < hosts
                    && (self.attached(host, vol) || self.mapped(vol, host).is_some())
                    && match fault {
                        None => true,
                        Some(DetachFault::MapFlushFails { .. }) => self.faults.map_flush,
                        Some(DetachFault::DeviceFlushFails) => self.faults.device_flush,
                        Some(DetachFault::DeleteBusy) => self.faults.delete_busy,
                        Some(DetachFault::UdevLate) => self.faults.udev_late,
                        Some(DetachFault::UdevLostRemove) => self.lost_removes_allowed(),
                        Some(DetachFault::MultipathdSlow) => self.faults.multipathd_slow,
                        // The retry of a forced detach has no record of the attach and
                        // uses the array's current mapping: it must be the same LUN.
                        Some(DetachFault::Crash { .. }) => {
                            self.faults.crash
                                && self.mapped(vol, host).is_some_and(|lun| {
                                    self.attachments
                                        .get(&(host, vol))
                                        .is_none_or(|a| a.lun == lun)
                                })
                        }
                    }
            }
            Transition::PathDown { host, portal } => {
                self.faults.path_flap
                    && host < hosts
                    && portal < self.flap_points()
                    && (self.is_fc() || self.topology.portals > 1)
                    && !self.down.iter().any(|(h, _)| *h == host)
            }
            Transition::PathUp { host, portal } => self.down.contains(&(host, portal)),
        }
    }

    /// Whether mapping `v` to `h` would leave two live volumes with one identity: on a
    /// reuse-on-LUN array a volume mapped for the first time takes the LUN's old identity,
    /// which a volume remapped elsewhere may still carry. No real array presents two volumes
    /// under one WWID at once (tgtd computes it from the target and the LUN), so the machine
    /// does not go there; the simulator's reuse-on-LUN policy allows it.
    fn map_duplicates_identity(&self, v: usize, h: usize) -> bool {
        if !self.topology.reuse_identity || self.is_nvme() {
            return false;
        }
        let mut next = self.clone();
        next.map(v, h);
        let live: Vec<u32> = next
            .volumes
            .iter()
            .filter(|x| x.exists)
            .map(|x| x.ident)
            .collect();
        let unique: BTreeSet<u32> = live.iter().copied().collect();
        unique.len() != live.len()
    }

    /// What a path flap takes down: portals (iSCSI) or HBAs (FC).
    pub fn flap_points(&self) -> usize {
        self.topology.fc.map_or(self.topology.portals, |fc| fc.hbas)
    }

    /// Lost `remove` events are never drawn with lost `add` events in one case.
    fn lost_removes_allowed(&self) -> bool {
        self.faults.udev_lost_remove && !self.faults.udev_lost
    }

    /// The violations the harness must report now: `(property, host, volume)`.
    pub fn expected_violations(&self) -> BTreeSet<(PropertyKind, String, Option<String>)> {
        if self.is_nvme() {
            return super::nvme::expected_violations(self);
        }
        let mut out = BTreeSet::new();
        for h in 0..self.topology.hosts {
            let hn = host_name(h);
            let attached: BTreeSet<usize> = self
                .attachments
                .keys()
                .filter(|(x, _)| *x == h)
                .map(|(_, v)| *v)
                .collect();
            let name = |v: Option<usize>| v.map(vol_name);
            let idle_session = self
                .sessions
                .iter()
                .any(|(x, t, p)| *x == h && !self.session_has_devices(h, *t, *p));
            if self.has_stale_link(h) || idle_session {
                out.insert((PropertyKind::Leftover, hn.clone(), None));
            }
            let mut leads_to: BTreeMap<usize, BTreeSet<DevKey>> = BTreeMap::new();
            let mut judge = |reported: Option<usize>,
                             backing: Option<usize>,
                             key: Option<DevKey>,
                             out: &mut BTreeSet<_>| {
                match backing {
                    None => {
                        out.insert((PropertyKind::Leftover, hn.clone(), name(reported)));
                    }
                    Some(b) if reported != Some(b) => {
                        out.insert((PropertyKind::CrossTalk, hn.clone(), name(Some(b))));
                    }
                    Some(b) if !attached.contains(&b) => {
                        out.insert((PropertyKind::Leftover, hn.clone(), name(Some(b))));
                    }
                    Some(b) => {
                        if let Some(k) = key {
                            leads_to.entry(b).or_default().insert(k);
                        }
                    }
                }
            };
            for (k, d) in self.devices.iter().filter(|(k, _)| k.host == h) {
                let reported = self.name_of_ident(d.ident);
                let backing = self.backing(h, k.tgt, k.lun);
                judge(reported, backing, d.linked.then_some(*k), &mut out);
            }
            for (_, ident) in self.dms.iter().filter(|(x, _)| *x == h) {
                let mut paths: Vec<(&DevKey, &Device)> = self
                    .devices
                    .iter()
                    .filter(|(k, d)| k.host == h && d.ident == *ident)
                    .collect();
                paths.sort_by_key(|(_, d)| d.seq);
                let backing = paths
                    .iter()
                    .find_map(|(k, _)| self.backing(h, k.tgt, k.lun));
                judge(self.name_of_ident(*ident), backing, None, &mut out);
            }
            for v in &attached {
                let Some(a) = self.attachments.get(&(h, *v)) else {
                    continue;
                };
                let reported: BTreeSet<DevKey> = (0..self.topology.portals)
                    .map(|p| DevKey {
                        host: h,
                        tgt: a.tgt,
                        portal: p,
                        lun: a.lun,
                    })
                    .filter(|k| {
                        self.devices.get(k).is_some_and(|d| d.linked)
                            && (self.connector_multipath()
                                || self.is_fc()
                                || self.sessions.contains(&(h, k.tgt, k.portal)))
                    })
                    .collect();
                let expected = leads_to.remove(v).unwrap_or_default();
                if reported != expected {
                    out.insert((PropertyKind::Truth, hn.clone(), name(Some(*v))));
                }
                let own = self.volumes.get(*v).map(|x| x.ident);
                if reported
                    .iter()
                    .any(|k| self.devices.get(k).map(|d| d.ident) != own)
                {
                    out.insert((PropertyKind::CrossTalk, hn.clone(), name(Some(*v))));
                }
            }
        }
        out
    }

    /// Whether every device of the model has its udev links (the orphan report can then be
    /// expected empty).
    pub fn all_linked(&self) -> bool {
        self.devices.values().all(|d| d.linked)
    }

    /// One line: sessions, devices per volume, maps, attachments (`PROPTEST_VERBOSE=1`).
    pub fn summary(&self) -> String {
        if self.is_nvme() {
            return super::nvme::summary(self);
        }
        let mut parts = Vec::new();
        for h in 0..self.topology.hosts {
            let sessions = self.sessions.iter().filter(|s| s.0 == h).count();
            let devs: Vec<String> = self
                .devices
                .iter()
                .filter(|(k, _)| k.host == h)
                .map(|(k, d)| {
                    let who = self
                        .name_of_ident(d.ident)
                        .map_or_else(|| "?".to_owned(), vol_name);
                    format!(
                        "p{}l{}={}{}",
                        k.portal,
                        k.lun,
                        who,
                        if d.linked { "" } else { "(unlinked)" }
                    )
                })
                .collect();
            let dms = self.dms.iter().filter(|d| d.0 == h).count();
            let att: Vec<String> = self
                .attachments
                .keys()
                .filter(|(x, _)| *x == h)
                .map(|(_, v)| vol_name(*v))
                .collect();
            parts.push(format!(
                "{}: {} session(s), disks [{}], {} map(s), attached [{}]",
                host_name(h),
                sessions,
                devs.join(" "),
                dms,
                att.join(" ")
            ));
        }
        parts.join(" | ")
    }
}

/// Declares a reference state machine over [`ModelState`] whose cases draw their topology
/// and fault mix from the given strategies. Stepping, preconditions and the transitions
/// offered dispatch on the protocol inside the state, so only the initial draw differs.
macro_rules! reference_machine {
    ($(#[$doc:meta])* $name:ident, $topology:expr, $faults:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl proptest_state_machine::ReferenceStateMachine for $name {
            type State = $crate::machine::model::ModelState;
            type Transition = $crate::machine::model::Transition;

            fn init_state() -> proptest::strategy::BoxedStrategy<Self::State> {
                use proptest::prelude::*;
                ($topology, $faults, any::<u64>())
                    .prop_map(|(t, f, seed)| $crate::machine::model::ModelState::new(t, f, seed))
                    .boxed()
            }

            fn transitions(
                state: &Self::State,
            ) -> proptest::strategy::BoxedStrategy<Self::Transition> {
                $crate::machine::model::transitions_of(state)
            }

            fn apply(state: Self::State, t: &Self::Transition) -> Self::State {
                state.step(t)
            }

            fn preconditions(state: &Self::State, t: &Self::Transition) -> bool {
                state.allows(t)
            }
        }
    };
}
pub(crate) use reference_machine;

reference_machine!(
    /// The reference state machine for iSCSI.
    Model,
    topology_strategy(),
    fault_mix_strategy()
);

reference_machine!(
    /// The reference state machine for Fibre Channel.
    FcModel,
    fc_topology_strategy(),
    fault_mix_strategy()
);

/// The weighted detach arm of a transition strategy: one of `detachable` (volume, host),
/// `force` half the time, with the attach's device info 70% of the time, and a fault drawn
/// from `faults`.
pub(crate) fn detach_arm(
    detachable: Vec<(usize, usize)>,
    faults: Vec<BoxedStrategy<Option<DetachFault>>>,
) -> (u32, BoxedStrategy<Transition>) {
    (
        7,
        (
            prop::sample::select(detachable),
            any::<bool>(),
            prop::bool::weighted(0.7),
            Union::new(faults),
        )
            .prop_map(
                |((vol, host), force, device_info, fault)| Transition::Detach {
                    vol,
                    host,
                    force,
                    device_info,
                    fault,
                },
            )
            .boxed(),
    )
}

/// The path-flap arms of a transition strategy: a host with nothing down loses one of
/// `points` (portals, HBAs or ports), with weight `down_weight`; a down one comes back.
pub(crate) fn flap_arms(
    s: &ModelState,
    points: usize,
    down_weight: u32,
    arms: &mut Vec<(u32, BoxedStrategy<Transition>)>,
) {
    let up: Vec<usize> = (0..s.topology.hosts)
        .filter(|h| !s.down.iter().any(|(x, _)| x == h))
        .collect();
    if !up.is_empty() {
        arms.push((
            down_weight,
            (prop::sample::select(up), 0..points)
                .prop_map(|(host, portal)| Transition::PathDown { host, portal })
                .boxed(),
        ));
    }
    if !s.down.is_empty() {
        let down: Vec<(usize, usize)> = s.down.iter().copied().collect();
        arms.push((
            2,
            prop::sample::select(down)
                .prop_map(|(host, portal)| Transition::PathUp { host, portal })
                .boxed(),
        ));
    }
}

/// The transitions a state offers, by its protocol.
pub(crate) fn transitions_of(s: &ModelState) -> BoxedStrategy<Transition> {
    if s.is_nvme() {
        super::nvme::transitions(s)
    } else {
        transitions_for(s)
    }
}

fn topology_strategy() -> BoxedStrategy<Topology> {
    (
        prop_oneof![
            3 => Just(HostKind::Single),
            3 => Just(HostKind::Multipath),
            2 => Just(HostKind::MultipathdSingle),
        ],
        1usize..=2,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(host_kind, hosts, shared_target, reuse, flat, two, recycle)| {
                let portals = if host_kind == HostKind::Multipath || two {
                    2
                } else {
                    1
                };
                Topology {
                    protocol: MachineProtocol::Iscsi,
                    hosts,
                    host_kind,
                    portals,
                    shared_target,
                    // Identities shared across hosts make the checks' wwid -> name mapping
                    // ambiguous: reuse only on one host.
                    reuse_identity: reuse && hosts == 1,
                    flat_addressing: flat,
                    first_lun: 1,
                    recycle_iqns: recycle && !shared_target,
                    fc: None,
                    nvme: None,
                }
            },
        )
        .boxed()
}

fn fc_topology_strategy() -> BoxedStrategy<Topology> {
    (
        prop_oneof![
            3 => Just(HostKind::Single),
            3 => Just(HostKind::Multipath),
            2 => Just(HostKind::MultipathdSingle),
        ],
        1usize..=2,
        1usize..=2,
        1usize..=2,
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.25),
    )
        .prop_map(
            |(host_kind, hosts, hbas, ports, two_fabrics, reuse, high)| {
                let fc = FcLayout {
                    hbas,
                    ports,
                    two_fabrics,
                };
                Topology {
                    protocol: MachineProtocol::Fc,
                    hosts,
                    host_kind,
                    portals: fc.paths().len(),
                    // One FC target (the array's ports); LUNs tell the volumes apart.
                    shared_target: true,
                    reuse_identity: reuse && hosts == 1,
                    flat_addressing: false,
                    first_lun: if high { 256 } else { 1 },
                    recycle_iqns: false,
                    fc: Some(fc),
                    nvme: None,
                }
            },
        )
        .boxed()
}

fn fault_mix_strategy() -> BoxedStrategy<FaultMix> {
    let b = || prop::bool::weighted(0.4);
    (b(), b(), b(), b(), b(), b(), b(), b(), b())
        .prop_map(|(a, b, c, d, e, f, g, h, i)| FaultMix {
            map_flush: a,
            device_flush: b,
            delete_busy: c,
            udev_late: d,
            udev_lost: e,
            // Never both: a lost `add` on a name a lost `remove` left claims on is not modelled.
            udev_lost_remove: i && !e,
            multipathd_slow: f,
            crash: g,
            path_flap: h,
            namespace_appears: false,
        })
        .boxed()
}

fn transitions_for(s: &ModelState) -> BoxedStrategy<Transition> {
    let hosts = s.topology.hosts;
    let nvol = s.volumes.len();
    let portals = s.topology.portals;
    let pairs = |keep: &dyn Fn(usize, usize) -> bool| -> Vec<(usize, usize)> {
        (0..nvol)
            .flat_map(|v| (0..hosts).map(move |h| (v, h)))
            .filter(|(v, h)| keep(*v, *h))
            .collect()
    };
    let existing = s.volumes.iter().filter(|v| v.exists).count();
    let mut arms: Vec<(u32, BoxedStrategy<Transition>)> = Vec::new();
    if existing < MAX_VOLUMES && nvol < 2 * MAX_VOLUMES {
        arms.push((
            if existing == 0 { 10 } else { 3 },
            Just(Transition::Create).boxed(),
        ));
    }
    let to_map = pairs(&|v, h| s.exists(v) && s.mapped(v, h).is_none());
    if !to_map.is_empty() {
        arms.push((
            6,
            prop::sample::select(to_map)
                .prop_map(|(vol, host)| Transition::Map { vol, host })
                .boxed(),
        ));
    }
    let mapped = pairs(&|v, h| s.mapped(v, h).is_some());
    if !mapped.is_empty() {
        arms.push((
            1,
            prop::sample::select(mapped.clone())
                .prop_map(|(vol, host)| Transition::Unmap { vol, host })
                .boxed(),
        ));
        let f = s.faults.clone();
        let mut afaults: Vec<Option<AttachFault>> = vec![None, None, None];
        if f.udev_late && !s.is_fc() {
            afaults.push(Some(AttachFault::UdevLate));
        }
        if f.udev_lost {
            afaults.push(Some(AttachFault::UdevLost));
        }
        arms.push((
            8,
            (prop::sample::select(mapped), prop::sample::select(afaults))
                .prop_map(|((vol, host), fault)| Transition::Attach { vol, host, fault })
                .boxed(),
        ));
    }
    let live: Vec<usize> = (0..nvol).filter(|v| s.exists(*v)).collect();
    if !live.is_empty() {
        arms.push((
            1,
            prop::sample::select(live)
                .prop_map(|vol| Transition::Delete { vol })
                .boxed(),
        ));
    }
    let detachable = pairs(&|v, h| s.attached(h, v) || s.mapped(v, h).is_some());
    if !detachable.is_empty() {
        let f = s.faults.clone();
        let mut dfaults: Vec<BoxedStrategy<Option<DetachFault>>> =
            vec![Just(None).boxed(), Just(None).boxed(), Just(None).boxed()];
        if f.map_flush {
            dfaults.push(
                any::<bool>()
                    .prop_map(|persistent| Some(DetachFault::MapFlushFails { persistent }))
                    .boxed(),
            );
        }
        if f.device_flush {
            dfaults.push(Just(Some(DetachFault::DeviceFlushFails)).boxed());
        }
        if f.delete_busy {
            dfaults.push(Just(Some(DetachFault::DeleteBusy)).boxed());
        }
        if f.udev_late {
            dfaults.push(Just(Some(DetachFault::UdevLate)).boxed());
        }
        if s.lost_removes_allowed() {
            dfaults.push(Just(Some(DetachFault::UdevLostRemove)).boxed());
        }
        if f.multipathd_slow {
            dfaults.push(Just(Some(DetachFault::MultipathdSlow)).boxed());
        }
        if f.crash {
            dfaults.push(
                (0u8..12)
                    .prop_map(|after| Some(DetachFault::Crash { after }))
                    .boxed(),
            );
        }
        arms.push(detach_arm(detachable, dfaults));
    }
    if s.faults.path_flap && (s.is_fc() || portals > 1) {
        flap_arms(s, s.flap_points(), 1, &mut arms);
    }
    if arms.is_empty() {
        arms.push((1, Just(Transition::Wait).boxed()));
    }
    Union::new_weighted(arms).boxed()
}
