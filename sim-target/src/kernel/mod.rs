//! The simulated host kernel: iSCSI sessions (each its own SCSI host), SCSI devices created
//! by scans, sd/sg/bsg numbering, and device-mapper multipath maps.
//!
//! Numbering, as the 6.1 kernel does it:
//! - SCSI host numbers come from an IDA (`scsi_host_alloc`): the lowest free number is reused
//!   after a logout.
//! - iSCSI session ids come from an atomic counter (`iscsi_add_session`:
//!   `atomic_add_return(1, &iscsi_session_nr)`): they always count up, never reused.
//! - sd indexes (sda, sdb..), sg and bsg minors and dm minors are lowest-free IDA/IDR
//!   allocations; `diskseq` always counts up.
//!
//! A SCSI device caches the identity (INQUIRY, VPD 0x83/0x80) and capacity it read when it
//! was probed, until it is deleted or rescanned; I/O goes to whatever the array maps at its
//! (target, LUN) *now*. That split is what CVE-2023-2088 is about.

pub(crate) mod attrs;
pub(crate) mod sysfs;

use std::collections::{BTreeMap, BTreeSet};

use crate::array::{Identity, Probe};
use crate::ids::{ArrayId, HostId};
use crate::naming::{Hctl, Portal, sd_name};
use crate::udev::Action as UdevAction;
use crate::world::World;

/// Major of bsg char devices on the captured kernel (dynamic; 248 there).
pub(crate) const BSG_MAJOR: u32 = 248;
/// Major of device-mapper block devices on the captured kernel.
pub(crate) const DM_MAJOR: u32 = 253;
/// Major of sg char devices.
pub(crate) const SG_MAJOR: u32 = 21;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub(crate) sid: u32,
    pub(crate) host_no: u32,
    pub(crate) array: ArrayId,
    pub(crate) iqn: String,
    pub(crate) portal: Portal,
    pub(crate) recovery_tmo: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DevKind {
    /// A disk with its sd index.
    Disk { sd: u32 },
    /// A non-disk LUN (tgt's controller, type 12).
    Controller,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScsiDev {
    pub(crate) hctl: Hctl,
    pub(crate) sid: u32,
    pub(crate) kind: DevKind,
    /// Cached at probe / rescan time.
    pub(crate) identity: Identity,
    pub(crate) vendor: String,
    pub(crate) model: String,
    pub(crate) size_bytes: u64,
    pub(crate) sg: u32,
    pub(crate) bsg: u32,
    pub(crate) diskseq: u64,
}

impl ScsiDev {
    pub(crate) fn sd_name(&self) -> Option<String> {
        match self.kind {
            DevKind::Disk { sd } => Some(sd_name(sd)),
            DevKind::Controller => None,
        }
    }

    pub(crate) fn scsi_type(&self) -> u8 {
        match self.kind {
            DevKind::Disk { .. } => 0,
            DevKind::Controller => 12,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DmMap {
    pub(crate) minor: u32,
    pub(crate) name: String,
    /// udev form (`3...`).
    pub(crate) wwid: String,
    /// Path device names (`sda`), in table order.
    pub(crate) paths: Vec<String>,
    pub(crate) size_bytes: u64,
    pub(crate) vendor: String,
    pub(crate) model: String,
    pub(crate) diskseq: u64,
}

impl DmMap {
    pub(crate) fn dev_name(&self) -> String {
        format!("dm-{}", self.minor)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Kernel {
    /// SCSI host number -> session id.
    pub(crate) shosts: BTreeMap<u32, u32>,
    pub(crate) sessions: BTreeMap<u32, Session>,
    pub(crate) last_sid: u32,
    pub(crate) devices: BTreeMap<Hctl, ScsiDev>,
    pub(crate) last_diskseq: u64,
    pub(crate) dms: BTreeMap<u32, DmMap>,
    /// FC HBAs (SCSI hosts) and their remote ports.
    pub(crate) fc: crate::fc::FcKernel,
    /// NVMe controllers, subsystems and namespaces.
    pub(crate) nvme: crate::nvme::NvmeKernel,
}

/// Where a SCSI device's I/O goes.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub(crate) array: ArrayId,
    /// Target IQN (iSCSI) or the FC target key.
    pub(crate) target: String,
    /// The host's masking key on that array.
    pub(crate) initiator: String,
    /// Whether the path works now (portal up / HBA and rport online).
    pub(crate) up: bool,
}

pub(crate) fn lowest_free(used: impl Iterator<Item = u32>) -> u32 {
    let used: BTreeSet<u32> = used.collect();
    (0..).find(|i| !used.contains(i)).unwrap_or(u32::MAX)
}

impl Kernel {
    pub(crate) fn disk_by_name(&self, name: &str) -> Option<&ScsiDev> {
        self.devices
            .values()
            .find(|d| d.sd_name().as_deref() == Some(name))
    }

    pub(crate) fn dm_by_name(&self, name: &str) -> Option<&DmMap> {
        self.dms.values().find(|m| m.dev_name() == name)
    }

    pub(crate) fn session_of(&self, dev: &ScsiDev) -> Option<&Session> {
        self.sessions.get(&dev.sid)
    }

    pub(crate) fn next_diskseq(&mut self) -> u64 {
        self.last_diskseq += 1;
        self.last_diskseq
    }

    /// Whether a block device (`sdX`, `dm-N`, `nvmeXnY`, `nvmeXcYnZ`) exists.
    pub(crate) fn block_exists(&self, name: &str) -> bool {
        self.disk_by_name(name).is_some()
            || self.dm_by_name(name).is_some()
            || self.nvme.block_exists(name)
    }

    /// The dm maps holding `sd`.
    pub(crate) fn holders(&self, sd: &str) -> Vec<&DmMap> {
        self.dms
            .values()
            .filter(|m| m.paths.iter().any(|p| p == sd))
            .collect()
    }
}

/// The outcome of a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoginError {
    /// Portal unreachable (ISCSI_ERR_TRANS_TIMEOUT, 8).
    Unreachable,
    /// No such target on that portal (ISCSI_ERR_FATAL_LOGIN, 19).
    TargetNotFound,
    /// Initiator not allowed (ISCSI_ERR_LOGIN_AUTH_FAILED, 24).
    NotAuthorized,
}

impl World {
    pub(crate) fn portal_down(&self, host: HostId, portal: &Portal) -> bool {
        self.faults.any(|f| match f {
            crate::Fault::PortalDown { host: h, portal: p } => {
                *h == host && Portal::parse(p).as_ref() == Some(portal)
            }
            _ => false,
        })
    }

    /// The array reachable at `portal` that exports `iqn`.
    pub(crate) fn find_target(&self, portal: &Portal, iqn: &str) -> Option<ArrayId> {
        self.arrays
            .iter()
            .enumerate()
            .find(|(_, a)| a.has_portal(portal) && a.targets.contains_key(iqn))
            .and_then(|(i, _)| u32::try_from(i).ok().map(ArrayId))
    }

    /// Logs in: creates the session and its SCSI host, and scans every LUN when `auto_scan`.
    pub(crate) fn login(
        &mut self,
        host: HostId,
        portal: &Portal,
        iqn: &str,
        auto_scan: bool,
    ) -> Result<u32, LoginError> {
        if self.portal_down(host, portal) || !self.arrays.iter().any(|a| a.has_portal(portal)) {
            return Err(LoginError::Unreachable);
        }
        let array = self
            .find_target(portal, iqn)
            .ok_or(LoginError::TargetNotFound)?;
        let initiator = self.host_ref(host).spec.initiator_iqn.clone();
        let a = self.array_ref(array);
        let allowed = a
            .targets
            .get(iqn)
            .is_some_and(|t| t.luns.keys().any(|(i, _)| *i == initiator));
        if !allowed {
            return Err(LoginError::NotAuthorized);
        }
        let Some(h) = self.hosts.get_mut(host.0 as usize) else {
            return Err(LoginError::Unreachable);
        };
        let k = &mut h.kernel;
        let host_no = lowest_free(k.shosts.keys().copied().chain(k.fc.host_nos()));
        k.last_sid += 1;
        let sid = k.last_sid;
        k.shosts.insert(host_no, sid);
        k.sessions.insert(
            sid,
            Session {
                sid,
                host_no,
                array,
                iqn: iqn.to_owned(),
                portal: portal.clone(),
                recovery_tmo: 120,
            },
        );
        tracing::debug!(%host, sid, host_no, %portal, iqn, "iscsi login");
        if auto_scan {
            self.scan_session(host, sid, None);
        }
        Ok(sid)
    }

    /// Logs out: removes every device of the session, then the session and its SCSI host.
    pub(crate) fn logout(&mut self, host: HostId, sid: u32) -> bool {
        let hctls: Vec<Hctl> = self
            .host_ref(host)
            .kernel
            .devices
            .values()
            .filter(|d| d.sid == sid)
            .map(|d| d.hctl)
            .collect();
        for hctl in hctls {
            self.remove_scsi_device(host, hctl);
        }
        let Some(h) = self.hosts.get_mut(host.0 as usize) else {
            return false;
        };
        let Some(s) = h.kernel.sessions.remove(&sid) else {
            return false;
        };
        h.kernel.shosts.remove(&s.host_no);
        tracing::debug!(%host, sid, "iscsi logout");
        true
    }

    /// Scans a session: one kernel LUN, or every LUN REPORT LUNS lists when `lun` is None.
    /// Existing devices are left untouched (the kernel does not re-read their identity).
    pub(crate) fn scan_session(&mut self, host: HostId, sid: u32, lun: Option<u64>) {
        let Some(s) = self.host_ref(host).kernel.sessions.get(&sid).cloned() else {
            return;
        };
        if self.portal_down(host, &s.portal) {
            return;
        }
        let initiator = self.host_ref(host).spec.initiator_iqn.clone();
        let luns = match lun {
            Some(l) => vec![l],
            None => self.array_ref(s.array).report_luns(&s.iqn, &initiator),
        };
        for klun in luns {
            let hctl = Hctl {
                host: s.host_no,
                channel: 0,
                target: 0,
                lun: klun,
            };
            if self.host_ref(host).kernel.devices.contains_key(&hctl) {
                continue;
            }
            if let Some(probe) = self.probe(s.array, &s.iqn, &initiator, klun) {
                self.add_scsi_device(host, s.array, s.sid, hctl, probe);
            }
        }
    }

    /// What the array answers at kernel LUN `klun` of `iqn` for `initiator`, now.
    pub(crate) fn probe(
        &self,
        array: ArrayId,
        iqn: &str,
        initiator: &str,
        klun: u64,
    ) -> Option<Probe> {
        let a = self.arrays.get(array.0 as usize)?;
        if klun == 0 && a.spec.lun0_controller {
            return Some(Probe::Controller {
                identity: a.controller_identity(iqn),
            });
        }
        let lun = a.array_lun(klun)?;
        let vol = *a.targets.get(iqn)?.luns.get(&(initiator.to_owned(), lun))?;
        let v = self.volumes.get(&vol)?;
        let identity = match a.spec.identity {
            _ if let Some(computed) = a.computed_identity(iqn, lun) => computed,
            crate::IdentityPolicy::Fresh => v.identity.clone(),
            crate::IdentityPolicy::ReuseOnLun => a
                .lun_identity
                .get(&(iqn.to_owned(), lun))
                .cloned()
                .unwrap_or_else(|| v.identity.clone()),
        };
        Some(Probe::Disk {
            vol,
            identity,
            size_bytes: v.public.size_bytes,
        })
    }

    /// The volume I/O to this device reaches now (`None` if nothing is mapped there or the
    /// device is not a disk).
    pub(crate) fn backing_of(&self, host: HostId, dev: &ScsiDev) -> Option<crate::VolumeId> {
        let r = self.scsi_route(host, dev)?;
        match self.probe(r.array, &r.target, &r.initiator, dev.hctl.lun)? {
            Probe::Disk { vol, .. } => Some(vol),
            Probe::Controller { .. } => None,
        }
    }

    /// The array, target and masking key behind a SCSI device (iSCSI session or FC rport).
    pub(crate) fn scsi_route(&self, host: HostId, dev: &ScsiDev) -> Option<Route> {
        let h = self.host_ref(host);
        if let Some(s) = h.kernel.sessions.get(&dev.sid) {
            return Some(Route {
                array: s.array,
                target: s.iqn.clone(),
                initiator: h.spec.initiator_iqn.clone(),
                up: !self.portal_down(host, &s.portal),
            });
        }
        let (hba, rport) = self.fc_rport_of(host, dev.hctl)?;
        let array = rport.array?;
        Some(Route {
            array,
            target: crate::fc::FC_TARGET.to_owned(),
            initiator: crate::array::initiator_key(&self.array_ref(array).spec.transport, &h.spec),
            up: hba.state == crate::fc::FcPortState::Online
                && rport.state == crate::fc::FcPortState::Online,
        })
    }

    pub(crate) fn add_scsi_device(
        &mut self,
        host: HostId,
        array: ArrayId,
        sid: u32,
        hctl: Hctl,
        probe: Probe,
    ) {
        let (vendor, model) = {
            let a = self.array_ref(array);
            (a.spec.vendor.clone(), a.spec.model.clone())
        };
        let Some(h) = self.hosts.get_mut(host.0 as usize) else {
            return;
        };
        let k = &mut h.kernel;
        let sg = lowest_free(k.devices.values().map(|d| d.sg));
        let bsg = lowest_free(k.devices.values().map(|d| d.bsg));
        let (kind, identity, size_bytes, model) = match probe {
            Probe::Disk {
                identity,
                size_bytes,
                ..
            } => {
                let sd = lowest_free(k.devices.values().filter_map(|d| match d.kind {
                    DevKind::Disk { sd } => Some(sd),
                    DevKind::Controller => None,
                }));
                (DevKind::Disk { sd }, identity, size_bytes, model)
            }
            Probe::Controller { identity } => {
                (DevKind::Controller, identity, 0, "Controller".to_owned())
            }
        };
        let diskseq = if matches!(kind, DevKind::Disk { .. }) {
            k.next_diskseq()
        } else {
            0
        };
        let dev = ScsiDev {
            hctl,
            sid,
            kind,
            identity,
            vendor,
            model,
            size_bytes,
            sg,
            bsg,
            diskseq,
        };
        let name = dev.sd_name();
        tracing::debug!(%host, %hctl, ?name, "scsi device added");
        k.devices.insert(hctl, dev);
        if let Some(name) = name {
            self.queue_udev(host, UdevAction::Add, &name);
        }
    }

    /// Removes a SCSI device (sysfs `delete`, logout): its sd/sg/bsg numbers are freed at once.
    pub(crate) fn remove_scsi_device(&mut self, host: HostId, hctl: Hctl) {
        let Some(h) = self.hosts.get_mut(host.0 as usize) else {
            return;
        };
        let Some(dev) = h.kernel.devices.remove(&hctl) else {
            return;
        };
        tracing::debug!(%host, %hctl, "scsi device removed");
        if let Some(name) = dev.sd_name() {
            self.queue_udev(host, UdevAction::Remove, &name);
        }
    }

    /// Rescans one device: re-reads identity and capacity from the array.
    pub(crate) fn rescan_device(&mut self, host: HostId, hctl: Hctl) {
        let Some(dev) = self.host_ref(host).kernel.devices.get(&hctl).cloned() else {
            return;
        };
        let Some(r) = self.scsi_route(host, &dev) else {
            return;
        };
        if !r.up {
            return;
        }
        let probe = self.probe(r.array, &r.target, &r.initiator, hctl.lun);
        let Some(h) = self.hosts.get_mut(host.0 as usize) else {
            return;
        };
        let Some(d) = h.kernel.devices.get_mut(&hctl) else {
            return;
        };
        match probe {
            Some(Probe::Disk {
                identity,
                size_bytes,
                ..
            }) => {
                d.identity = identity;
                d.size_bytes = size_bytes;
            }
            Some(Probe::Controller { identity }) => d.identity = identity,
            // READ CAPACITY fails: the disk reports 0 sectors; INQUIRY data is kept.
            None => d.size_bytes = 0,
        }
        if let Some(name) = d.sd_name() {
            self.queue_udev(host, UdevAction::Change, &name);
        }
    }

    /// Creates a dm-multipath map over `paths` (lowest free dm minor).
    pub(crate) fn dm_create(
        &mut self,
        host: HostId,
        name: &str,
        wwid: &str,
        paths: Vec<String>,
    ) -> u32 {
        let h = self.host_mut(host);
        let k = &mut h.kernel;
        let minor = lowest_free(k.dms.keys().copied());
        let first = paths.first().and_then(|p| k.disk_by_name(p)).cloned();
        let diskseq = k.next_diskseq();
        let map = DmMap {
            minor,
            name: name.to_owned(),
            wwid: wwid.to_owned(),
            paths,
            size_bytes: first.as_ref().map_or(0, |d| d.size_bytes),
            vendor: first
                .as_ref()
                .map_or_else(String::new, |d| d.vendor.clone()),
            model: first.as_ref().map_or_else(String::new, |d| d.model.clone()),
            diskseq,
        };
        let sids: Vec<u32> = map
            .paths
            .iter()
            .filter_map(|p| k.disk_by_name(p).map(|d| d.sid))
            .collect();
        for sid in sids {
            if let Some(s) = k.sessions.get_mut(&sid) {
                // multipathd sets fast_io_fail/dev_loss on its paths: iscsi recovery_tmo 5.
                s.recovery_tmo = 5;
            }
        }
        k.dms.insert(minor, map);
        let dm = format!("dm-{minor}");
        tracing::debug!(%host, %dm, name, "dm map created");
        self.queue_udev(host, UdevAction::Add, &dm);
        minor
    }

    /// Removes a dm map (the device vanishes at once; udev follows).
    pub(crate) fn dm_remove(&mut self, host: HostId, minor: u32) {
        let h = self.host_mut(host);
        if h.kernel.dms.remove(&minor).is_some() {
            tracing::debug!(%host, minor, "dm map removed");
            self.queue_udev(host, UdevAction::Remove, &format!("dm-{minor}"));
        }
    }
}
