//! Fibre Channel: fabrics with zoning, host HBAs (`fc_host`), remote ports (`fc_remote_ports`)
//! and SCSI targets (`fc_transport`), as `scsi_transport_fc` presents them.
//!
//! Model (facts from `drivers/scsi/scsi_transport_fc.c` and `Documentation/scsi`):
//! - Every FC port (an HBA port of a host, a target port of an array) has a WWPN, a WWNN, a
//!   fabric and an N_Port ID (`port_id`, handed out by the fabric at login, in order of first
//!   appearance here: `0x010100`, `0x010200`, ...).
//! - Zoning is a set of port pairs. An `Online` HBA logs into every port zoned with it on its
//!   fabric that is itself up: each gets a remote port `rport-H:0-N` (`N` =
//!   `next_rport_number++`, never reused). A target port gets `roles` `FCP Target` and a
//!   `scsi_target_id` (`next_target_id++`, bound to the WWPN: a port that comes back gets its
//!   old id); another initiator gets `FCP Initiator` and `scsi_target_id` -1.
//! - A port that disappears (unzoned, HBA link down) makes its rport `Blocked`; after
//!   `dev_loss_tmo` (30 s here) a target rport becomes `Not Present` and its SCSI devices are
//!   removed, a non-target rport is deleted. A port that comes back before that is `Online`
//!   again with its devices intact.
//! - A target rport that logs in or comes back has its target scanned for every LUN the array
//!   presents to the host (`fc_scsi_scan_rport`: `scsi_scan_target(.., SCAN_WILD_CARD,
//!   SCSI_SCAN_RESCAN)`), unless the host boots with `scsi_mod.scan=manual`
//!   ([`crate::HostSpec::scsi_scan_manual`]): after a link loss past `dev_loss_tmo` the LUNs
//!   come back by themselves.
//! - A write to `/sys/class/scsi_host/hostH/scan` (`fc_user_scan`) scans every `Online` rport
//!   with a target id matching `C T` (wildcards allowed): `L` probes one LUN, `-` lists every
//!   LUN the array presents to the host on that port (REPORT LUNS). A wildcard target therefore
//!   reaches other arrays' LUNs of the same number: the bug class os-brick's narrow scans avoid.
//! - `fc_transport/targetH:0:T` (the SCSI target) exists only while that target has a LUN
//!   device: the kernel reaps a target without LUNs (os-brick bug 40 reads it, so do we).
//! - LUN masking is per host (a host group holding every HBA WWPN of the host); every target
//!   port of an array presents the same LUN ids (multipath over ports and HBAs).

pub(crate) mod sysfs;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::array::ArrayTransport;
use crate::faults::Fault;
use crate::ids::{ArrayId, HostId, SimError};
use crate::naming::{Hctl, path_id_lun};
use crate::world::{Event, World};

/// The key of the single "target" an FC array keeps its LUN maps under.
pub(crate) const FC_TARGET: &str = "fc-ports";
/// How long a blocked rport waits before its devices are removed.
pub(crate) const DEV_LOSS_TMO: Duration = Duration::from_secs(30);

/// The state of an FC port as `scsi_transport_fc` names it (`fc_port_state_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FcPortState {
    /// `Online`.
    Online,
    /// `Linkdown`: the link is down (cable pulled, switch port disabled).
    Linkdown,
    /// `Offline`.
    Offline,
    /// `Blocked`: a remote port that went away, waiting for `dev_loss_tmo`.
    Blocked,
    /// `Not Present`: a remote target port that stayed away past `dev_loss_tmo`.
    NotPresent,
}

impl FcPortState {
    /// The sysfs text (`port_state`).
    pub fn as_str(self) -> &'static str {
        match self {
            FcPortState::Online => "Online",
            FcPortState::Linkdown => "Linkdown",
            FcPortState::Offline => "Offline",
            FcPortState::Blocked => "Blocked",
            FcPortState::NotPresent => "Not Present",
        }
    }
}

/// One FC target port of an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcTargetPort {
    /// World Wide Port Name.
    pub wwpn: u64,
    /// World Wide Node Name (the array's, usually shared by its ports).
    pub wwnn: u64,
    /// The fabric (SAN) the port is cabled to.
    pub fabric: String,
}

impl FcTargetPort {
    /// A port on fabric `fabric` with WWNN `0x2000 | low 48 bits of the WWPN`.
    pub fn new(wwpn: u64, fabric: impl Into<String>) -> Self {
        Self {
            wwpn,
            wwnn: node_name_for(wwpn),
            fabric: fabric.into(),
        }
    }
}

/// One FC HBA port of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FcHbaSpec {
    /// World Wide Port Name (`fc_host/hostH/port_name`).
    pub wwpn: u64,
    /// World Wide Node Name.
    pub wwnn: u64,
    /// The fabric the port is cabled to.
    pub fabric: String,
    /// The HBA's device path under `/sys/devices`, e.g. `pci0000:00/0000:00:03.0/0000:05:00.2`,
    /// or with a platform bus in front
    /// (`platform/smb/smb:motherboard/80040000000.peu0-c0/pci0000:00/0000:00:03.0/0000:05:00.2`).
    pub device_path: String,
    /// The SCSI host's `proc_name` (LLD), e.g. `qla2xxx` or `lpfc`.
    pub driver: String,
    /// The port state at boot.
    pub port_state: FcPortState,
}

impl FcHbaSpec {
    /// An `Online` qla2xxx HBA port on `fabric` at PCI function `pci` (`0000:05:00.2`) behind
    /// root port `0000:00:03.0`.
    pub fn new(wwpn: u64, fabric: impl Into<String>, pci: &str) -> Self {
        Self {
            wwpn,
            wwnn: node_name_for(wwpn),
            fabric: fabric.into(),
            device_path: format!("pci0000:00/0000:00:03.0/{pci}"),
            driver: "qla2xxx".to_owned(),
            port_state: FcPortState::Online,
        }
    }

    /// The same port behind a platform bus: `platform/<platform>/pci0000:00/...`.
    pub fn behind_platform(mut self, platform: &str) -> Self {
        self.device_path = format!("platform/{platform}/{}", self.device_path);
        self
    }
}

/// `0x20` + the low 56 bits of the WWPN with its NAA nibble cleared: the usual WWNN pairing.
fn node_name_for(wwpn: u64) -> u64 {
    (wwpn & 0x0fff_ffff_ffff_ffff) | 0x2000_0000_0000_0000
}

/// Whether a device path is safe and names a PCI function: components are plain names and
/// the last one looks like `dddd:bb:dd.f`.
pub(crate) fn valid_device_path(path: &str) -> bool {
    let comps: Vec<&str> = path.split('/').collect();
    comps
        .iter()
        .all(|c| !c.is_empty() && *c != "." && *c != ".." && !c.chars().any(char::is_control))
        && comps.last().is_some_and(|l| is_pci_function(l))
}

fn is_pci_function(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b.get(4) == Some(&b':')
        && b.get(7) == Some(&b':')
        && b.get(10) == Some(&b'.')
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// udev `path_id` for the HBA part of an FC by-path name: `pci-<innermost PCI device>`, and
/// `platform-<innermost platform device>-` in front when the PCI root sits on a platform bus
/// (`skip_subsystem` collapses each run of one subsystem to its innermost device).
pub(crate) fn hba_path_id(device_path: &str) -> String {
    let comps: Vec<&str> = device_path.split('/').collect();
    let pci = comps
        .iter()
        .rev()
        .find(|c| is_pci_function(c))
        .copied()
        .unwrap_or_default();
    let root = comps
        .iter()
        .position(|c| c.starts_with("pci") && !is_pci_function(c));
    let platform = match (comps.first(), root) {
        (Some(&"platform"), Some(r)) if r >= 2 => comps.get(r - 1).copied(),
        _ => None,
    };
    match platform {
        Some(p) => format!("platform-{p}-pci-{pci}"),
        None => format!("pci-{pci}"),
    }
}

/// `/dev/disk/by-path` name of an FC disk: `[platform-..-]pci-<pci>-fc-0x<port_name>-lun-<L>`.
/// The port name is `fc_transport/targetH:C:T/port_name`, printed `0x%llx` (no zero padding).
pub(crate) fn fc_by_path_name(device_path: &str, target_wwpn: u64, lun: u64) -> String {
    format!(
        "{}-fc-0x{target_wwpn:x}-{}",
        hba_path_id(device_path),
        path_id_lun(lun)
    )
}

/// What a remote port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FcRole {
    /// An array's target port (`FCP Target`).
    Target,
    /// Another host's HBA port (`FCP Initiator`).
    Initiator,
}

impl FcRole {
    /// The sysfs `roles` text.
    pub fn as_str(self) -> &'static str {
        match self {
            FcRole::Target => "FCP Target",
            FcRole::Initiator => "FCP Initiator",
        }
    }
}

/// The fabric side: zones and the N_Port IDs handed out at fabric login.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fabric {
    /// Zoned port pairs (smaller WWPN first).
    pub(crate) zones: BTreeSet<(u64, u64)>,
    /// WWPN -> N_Port ID.
    pub(crate) port_ids: BTreeMap<u64, u32>,
}

impl Fabric {
    pub(crate) fn zoned(&self, a: u64, b: u64) -> bool {
        self.zones.contains(&(a.min(b), a.max(b)))
    }

    pub(crate) fn port_id(&self, wwpn: u64) -> u32 {
        self.port_ids.get(&wwpn).copied().unwrap_or(0)
    }

    fn register(&mut self, wwpn: u64) {
        let next = 0x01_0000 + 0x100 * (u32::try_from(self.port_ids.len()).unwrap_or(0) + 1);
        self.port_ids.entry(wwpn).or_insert(next);
    }
}

/// A remote port as one HBA sees it.
#[derive(Debug, Clone)]
pub(crate) struct Rport {
    pub(crate) number: u32,
    pub(crate) wwpn: u64,
    pub(crate) wwnn: u64,
    pub(crate) role: FcRole,
    /// `scsi_target_id` (`None` prints -1).
    pub(crate) target_id: Option<u32>,
    pub(crate) state: FcPortState,
    /// The array owning a target port.
    pub(crate) array: Option<ArrayId>,
}

/// One HBA port in the host kernel: a SCSI host with its remote ports.
#[derive(Debug, Clone)]
pub(crate) struct Hba {
    pub(crate) spec: FcHbaSpec,
    pub(crate) host_no: u32,
    pub(crate) state: FcPortState,
    pub(crate) rports: Vec<Rport>,
    pub(crate) next_rport: u32,
    pub(crate) next_target_id: u32,
    /// WWPN -> target id (`tgtid_bind_type` wwpn).
    pub(crate) bindings: BTreeMap<u64, u32>,
}

impl Hba {
    pub(crate) fn rport_by_target(&self, target: u32) -> Option<&Rport> {
        self.rports.iter().find(|r| r.target_id == Some(target))
    }
}

/// The FC part of a host kernel.
#[derive(Debug, Clone, Default)]
pub(crate) struct FcKernel {
    pub(crate) hbas: Vec<Hba>,
}

impl FcKernel {
    pub(crate) fn hba_by_host_no(&self, host_no: u32) -> Option<&Hba> {
        self.hbas.iter().find(|h| h.host_no == host_no)
    }

    pub(crate) fn host_nos(&self) -> impl Iterator<Item = u32> + '_ {
        self.hbas.iter().map(|h| h.host_no)
    }
}

/// A port somewhere in the world.
#[derive(Debug, Clone)]
struct PortInfo {
    wwpn: u64,
    wwnn: u64,
    fabric: String,
    role: FcRole,
    up: bool,
    array: Option<ArrayId>,
}

/// Truth about one remote port seen by an HBA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RportTruth {
    /// `rport-H:0-N`.
    pub name: String,
    /// Remote WWPN.
    pub wwpn: u64,
    /// `FCP Target` or `FCP Initiator`.
    pub role: FcRole,
    /// `scsi_target_id` (-1 for a non-target).
    pub scsi_target_id: i64,
    /// Port state.
    pub state: FcPortState,
    /// The array owning the port, for a target.
    pub array: Option<ArrayId>,
    /// Kernel LUNs that have a SCSI device behind this port.
    pub luns: Vec<u64>,
}

/// Truth about one HBA port of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HbaTruth {
    /// `hostH`.
    pub host_no: u32,
    /// Its WWPN.
    pub wwpn: u64,
    /// Its port state.
    pub state: FcPortState,
    /// The remote ports it sees.
    pub rports: Vec<RportTruth>,
}

impl World {
    /// Every FC port of the world.
    fn fc_ports(&self) -> Vec<PortInfo> {
        let mut out = Vec::new();
        for (i, a) in self.arrays.iter().enumerate() {
            if let ArrayTransport::Fc { ports } = &a.spec.transport {
                let id = u32::try_from(i).ok().map(ArrayId);
                for p in ports {
                    out.push(PortInfo {
                        wwpn: p.wwpn,
                        wwnn: p.wwnn,
                        fabric: p.fabric.clone(),
                        role: FcRole::Target,
                        up: true,
                        array: id,
                    });
                }
            }
        }
        for h in &self.hosts {
            for hba in &h.kernel.fc.hbas {
                out.push(PortInfo {
                    wwpn: hba.spec.wwpn,
                    wwnn: hba.spec.wwnn,
                    fabric: hba.spec.fabric.clone(),
                    role: FcRole::Initiator,
                    up: hba.state == FcPortState::Online,
                    array: None,
                });
            }
        }
        out
    }

    /// Creates the SCSI hosts of a new host's HBAs (lowest free host numbers, spec order).
    pub(crate) fn fc_init_host(&mut self, host: HostId) {
        let specs = self.host_ref(host).spec.fc_hbas.clone();
        let k = &mut self.host_mut(host).kernel;
        for spec in specs {
            if !valid_device_path(&spec.device_path) {
                tracing::warn!(%host, path = %spec.device_path, "FC HBA with an invalid device path: ignored");
                continue;
            }
            let host_no =
                crate::kernel::lowest_free(k.shosts.keys().copied().chain(k.fc.host_nos()));
            let state = spec.port_state;
            k.fc.hbas.push(Hba {
                spec,
                host_no,
                state,
                rports: Vec::new(),
                next_rport: 0,
                next_target_id: 0,
                bindings: BTreeMap::new(),
            });
        }
        self.fc_sync_all();
    }

    /// Re-runs fabric discovery on every host: rports appear, come back or block.
    pub(crate) fn fc_sync_all(&mut self) {
        let ports = self.fc_ports();
        for p in &ports {
            self.fc.register(p.wwpn);
        }
        for hi in 0..self.hosts.len() {
            let Ok(n) = u32::try_from(hi) else { continue };
            self.fc_sync_host(HostId(n), &ports);
        }
    }

    fn fc_sync_host(&mut self, host: HostId, ports: &[PortInfo]) {
        let now = self.clock.now();
        let fabric = self.fc.clone();
        let mut blocked = Vec::new();
        // Target rports that logged in or came back: the kernel scans them.
        let mut online: Vec<(u32, u32)> = Vec::new();
        let h = self.host_mut(host);
        for hba in &mut h.kernel.fc.hbas {
            let mut wanted: Vec<&PortInfo> = if hba.state == FcPortState::Online {
                ports
                    .iter()
                    .filter(|p| {
                        p.wwpn != hba.spec.wwpn
                            && p.up
                            && p.fabric == hba.spec.fabric
                            && fabric.zoned(p.wwpn, hba.spec.wwpn)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            // The name server lists ports by N_Port ID.
            wanted.sort_by_key(|p| fabric.port_id(p.wwpn));
            for p in &wanted {
                if let Some(r) = hba.rports.iter_mut().find(|r| r.wwpn == p.wwpn) {
                    if r.state != FcPortState::Online {
                        tracing::debug!(%host, hba = hba.host_no, rport = r.number, "rport back online");
                        r.state = FcPortState::Online;
                        if let Some(t) = r.target_id {
                            online.push((hba.host_no, t));
                        }
                    }
                    continue;
                }
                let target_id = match p.role {
                    FcRole::Target => Some(match hba.bindings.get(&p.wwpn) {
                        Some(t) => *t,
                        None => {
                            let t = hba.next_target_id;
                            hba.next_target_id += 1;
                            hba.bindings.insert(p.wwpn, t);
                            t
                        }
                    }),
                    FcRole::Initiator => None,
                };
                let number = hba.next_rport;
                hba.next_rport += 1;
                if let Some(t) = target_id {
                    online.push((hba.host_no, t));
                }
                tracing::debug!(%host, hba = hba.host_no, number, wwpn = format_args!("{:#x}", p.wwpn), "rport added");
                hba.rports.push(Rport {
                    number,
                    wwpn: p.wwpn,
                    wwnn: p.wwnn,
                    role: p.role,
                    target_id,
                    state: FcPortState::Online,
                    array: p.array,
                });
            }
            for r in &mut hba.rports {
                if r.state == FcPortState::Online && !wanted.iter().any(|p| p.wwpn == r.wwpn) {
                    r.state = FcPortState::Blocked;
                    blocked.push((hba.host_no, r.number));
                }
            }
        }
        if !self.host_ref(host).spec.scsi_scan_manual {
            for (host_no, t) in online {
                tracing::debug!(%host, host_no, target = t, "rport online: target scan");
                self.fc_scan(host, host_no, Some(0), Some(u64::from(t)), None);
            }
        }
        for (host_no, rport) in blocked {
            tracing::debug!(%host, host_no, rport, ?now, "rport blocked");
            // A timer, not a udev event: the host's later udev events are not held back.
            self.schedule_timer(
                DEV_LOSS_TMO,
                Event::FcDevLoss {
                    host,
                    host_no,
                    rport,
                },
            );
        }
    }

    /// `dev_loss_tmo` fired for a blocked rport: a target loses its devices and becomes
    /// `Not Present`; another initiator's rport is deleted.
    pub(crate) fn fc_dev_loss(&mut self, host: HostId, host_no: u32, number: u32) {
        let Some(hba) = self.host_ref(host).kernel.fc.hba_by_host_no(host_no) else {
            return;
        };
        let Some(r) = hba.rports.iter().find(|r| r.number == number) else {
            return;
        };
        if r.state != FcPortState::Blocked {
            return;
        }
        let target = r.target_id;
        if let Some(t) = target {
            let hctls: Vec<Hctl> = self
                .host_ref(host)
                .kernel
                .devices
                .keys()
                .filter(|h| h.host == host_no && h.target == t)
                .copied()
                .collect();
            for hctl in hctls {
                self.remove_scsi_device(host, hctl);
            }
        }
        let k = &mut self.host_mut(host).kernel;
        if let Some(hba) = k.fc.hbas.iter_mut().find(|h| h.host_no == host_no) {
            match target {
                Some(_) => {
                    if let Some(r) = hba.rports.iter_mut().find(|r| r.number == number) {
                        r.state = FcPortState::NotPresent;
                    }
                }
                None => hba.rports.retain(|r| r.number != number),
            }
        }
        tracing::debug!(%host, host_no, number, "rport dev_loss_tmo expired");
    }

    fn port_fabric(&self, wwpn: u64) -> Option<String> {
        self.fc_ports()
            .into_iter()
            .find(|p| p.wwpn == wwpn)
            .map(|p| p.fabric)
    }

    /// Zones two FC ports together (idempotent); the HBAs log in to the new ports at once
    /// (RSCN). Both ports must exist and sit on the same fabric.
    pub fn zone(&mut self, a: u64, b: u64) -> Result<(), SimError> {
        self.model_changed();
        let fa = self.port_fabric(a).ok_or(SimError::UnknownPort(a))?;
        let fb = self.port_fabric(b).ok_or(SimError::UnknownPort(b))?;
        if fa != fb {
            return Err(SimError::FabricMismatch { a, b });
        }
        self.fc.zones.insert((a.min(b), a.max(b)));
        tracing::debug!(
            a = format_args!("{a:#x}"),
            b = format_args!("{b:#x}"),
            "zoned"
        );
        self.fc_sync_all();
        Ok(())
    }

    /// Removes a zone: the HBAs' rports for the other port block, and lose their devices
    /// after `dev_loss_tmo` (30 s of virtual time).
    pub fn unzone(&mut self, a: u64, b: u64) -> Result<(), SimError> {
        self.model_changed();
        if !self.fc.zones.remove(&(a.min(b), a.max(b))) {
            return Err(SimError::NotZoned { a, b });
        }
        tracing::debug!(
            a = format_args!("{a:#x}"),
            b = format_args!("{b:#x}"),
            "unzoned"
        );
        self.fc_sync_all();
        Ok(())
    }

    /// Zones every HBA of `host` with every port of every FC array on the same fabric.
    pub fn zone_host_to_array(&mut self, host: HostId, array: ArrayId) -> Result<(), SimError> {
        self.model_changed();
        let hbas: Vec<(u64, String)> = self
            .hosts
            .get(host.0 as usize)
            .ok_or(SimError::UnknownHost(host))?
            .kernel
            .fc
            .hbas
            .iter()
            .map(|h| (h.spec.wwpn, h.spec.fabric.clone()))
            .collect();
        let ports = match &self
            .arrays
            .get(array.0 as usize)
            .ok_or(SimError::UnknownArray(array))?
            .spec
            .transport
        {
            ArrayTransport::Fc { ports } => ports.clone(),
            _ => Vec::new(),
        };
        for (w, fabric) in &hbas {
            for p in ports.iter().filter(|p| &p.fabric == fabric) {
                self.fc.zones.insert(((*w).min(p.wwpn), (*w).max(p.wwpn)));
            }
        }
        self.fc_sync_all();
        Ok(())
    }

    /// Changes an HBA port's state (`Linkdown` for a pulled cable, `Online` when it comes
    /// back). Going down blocks every rport of that HBA (and this HBA's rport on other
    /// hosts); devices go after `dev_loss_tmo` unless the link comes back first.
    pub fn set_hba_port_state(
        &mut self,
        host: HostId,
        wwpn: u64,
        state: FcPortState,
    ) -> Result<(), SimError> {
        self.model_changed();
        let h = self
            .hosts
            .get_mut(host.0 as usize)
            .ok_or(SimError::UnknownHost(host))?;
        let hba = h
            .kernel
            .fc
            .hbas
            .iter_mut()
            .find(|b| b.spec.wwpn == wwpn)
            .ok_or(SimError::UnknownPort(wwpn))?;
        tracing::debug!(%host, hba = hba.host_no, state = state.as_str(), "HBA port state");
        hba.state = state;
        self.fc_sync_all();
        Ok(())
    }

    /// A [`Fault::HbaLinkdownAfter`] fell due: if it is still armed, its HBA goes `Linkdown`.
    pub(crate) fn hba_linkdown_due(&mut self, fault: &Fault) {
        let Fault::HbaLinkdownAfter { host, wwpn, .. } = fault else {
            return;
        };
        if !self.faults.any(|f| f == fault) {
            return;
        }
        tracing::debug!(%host, wwpn = format_args!("{wwpn:#x}"), "fault: HBA link lost");
        if let Err(e) = self.set_hba_port_state(*host, *wwpn, FcPortState::Linkdown) {
            tracing::warn!(%host, error = %e, "fault names no HBA of the host: ignored");
        }
    }

    /// One copy of a [`Fault::HbaLinkdownAfter`] was cleared: if its timer is still pending
    /// it never fires; if it fired, the link comes back `Online` (rports log in again, no
    /// scan: devices removed after `dev_loss_tmo` stay gone).
    pub(crate) fn hba_linkdown_cleared(&mut self, fault: &Fault) {
        let pending = self
            .events
            .iter()
            .find(|(_, ev)| matches!(ev, Event::HbaLinkdown { fault: f } if f == fault))
            .map(|(k, _)| *k);
        if let Some(key) = pending {
            self.events.remove(&key);
            return;
        }
        let Fault::HbaLinkdownAfter { host, wwpn, .. } = fault else {
            return;
        };
        tracing::debug!(%host, wwpn = format_args!("{wwpn:#x}"), "fault cleared: HBA link back");
        if let Err(e) = self.set_hba_port_state(*host, *wwpn, FcPortState::Online) {
            tracing::warn!(%host, error = %e, "fault names no HBA of the host: ignored");
        }
    }

    /// Whether the rport behind FC SCSI address `hctl` is usable now.
    pub(crate) fn fc_rport_of(&self, host: HostId, hctl: Hctl) -> Option<(&Hba, &Rport)> {
        let hba = self.host_ref(host).kernel.fc.hba_by_host_no(hctl.host)?;
        let r = hba.rport_by_target(hctl.target)?;
        Some((hba, r))
    }

    /// `fc_user_scan`: a `C T L` write to an FC host's `scan` attribute.
    pub(crate) fn fc_scan(
        &mut self,
        host: HostId,
        host_no: u32,
        channel: Option<u64>,
        target: Option<u64>,
        lun: Option<u64>,
    ) {
        let Some(hba) = self.host_ref(host).kernel.fc.hba_by_host_no(host_no) else {
            return;
        };
        if channel.is_some_and(|c| c != 0) {
            return;
        }
        let targets: Vec<(u32, ArrayId)> = hba
            .rports
            .iter()
            .filter(|r| r.state == FcPortState::Online)
            .filter_map(|r| Some((r.target_id?, r.array?)))
            .filter(|(t, _)| target.is_none_or(|want| want == u64::from(*t)))
            .collect();
        for (t, array) in targets {
            let initiator = crate::array::initiator_key(
                &self.array_ref(array).spec.transport,
                &self.host_ref(host).spec,
            );
            let luns = match lun {
                Some(l) => vec![l],
                None => self.array_ref(array).report_luns(FC_TARGET, &initiator),
            };
            for klun in luns {
                let hctl = Hctl {
                    host: host_no,
                    channel: 0,
                    target: t,
                    lun: klun,
                };
                if self.host_ref(host).kernel.devices.contains_key(&hctl) {
                    continue;
                }
                if let Some(probe) = self.probe(array, FC_TARGET, &initiator, klun) {
                    self.add_scsi_device(host, array, 0, hctl, probe);
                }
            }
        }
    }

    /// Truth: the HBAs of a host and the remote ports each sees.
    pub fn hbas(&self, host: HostId) -> Vec<HbaTruth> {
        let k = &self.host_ref(host).kernel;
        k.fc.hbas
            .iter()
            .map(|hba| HbaTruth {
                host_no: hba.host_no,
                wwpn: hba.spec.wwpn,
                state: hba.state,
                rports: hba
                    .rports
                    .iter()
                    .map(|r| RportTruth {
                        name: format!("rport-{}:0-{}", hba.host_no, r.number),
                        wwpn: r.wwpn,
                        role: r.role,
                        scsi_target_id: r.target_id.map_or(-1, i64::from),
                        state: r.state,
                        array: r.array,
                        luns: k
                            .devices
                            .keys()
                            .filter(|h| h.host == hba.host_no && Some(h.target) == r.target_id)
                            .map(|h| h.lun)
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Cinder's `fibre_channel` connection properties for a mapping: every target port of the
    /// array, the LUN, and the initiator-target map (each host WWPN to the ports zoned with it).
    pub(crate) fn fc_connection_properties(
        &self,
        array: ArrayId,
        host: HostId,
        lun: u64,
        volume_name: &str,
    ) -> serde_json::Value {
        let ports: Vec<u64> = match &self.array_ref(array).spec.transport {
            ArrayTransport::Fc { ports } => ports.iter().map(|p| p.wwpn).collect(),
            _ => Vec::new(),
        };
        let hex = |w: u64| format!("{w:016x}");
        let mut itmap = serde_json::Map::new();
        for hba in &self.host_ref(host).kernel.fc.hbas {
            let zoned: Vec<String> = ports
                .iter()
                .filter(|p| self.fc.zoned(**p, hba.spec.wwpn))
                .map(|p| hex(*p))
                .collect();
            itmap.insert(hex(hba.spec.wwpn), serde_json::json!(zoned));
        }
        let wwns: Vec<String> = ports.iter().map(|p| hex(*p)).collect();
        let mut data = serde_json::json!({
            "target_discovered": false,
            "target_wwn": wwns,
            "target_lun": lun,
            "initiator_target_map": itmap,
            "volume_id": volume_name,
            "encrypted": false,
            "access_mode": "rw",
        });
        if self.array_ref(array).spec.flat_addressing
            && let Some(obj) = data.as_object_mut()
        {
            obj.insert("addressing_mode".into(), serde_json::json!("SAM3-flat"));
        }
        serde_json::json!({ "driver_volume_type": "fibre_channel", "data": data })
    }
}

#[cfg(test)]
mod tests;
