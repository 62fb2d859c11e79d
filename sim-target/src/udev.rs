//! udev: kernel events are delivered after the host's udev delay; on delivery udev
//! (re)computes the links a device claims and records them in its database. `/dev` links are
//! derived from that database, so a device that vanished without its `remove` event being
//! processed leaves its links behind (stale links), exactly like leftovers on a real host.
//!
//! Device nodes (`/dev/sdX`, `/dev/dm-N`, `/dev/sgN`, `/dev/bsg/H:C:T:L`) come from
//! devtmpfs: they exist exactly while the kernel device exists. udev only sets their final
//! mode (`0660 root:disk` for disks, `0600` until udev processed the `add`).
//!
//! Links a device claims (as the stock rules plus multipath-tools and sg3-utils rules do):
//! - sd: `disk/by-path/ip-<ip>:<port>-iscsi-<iqn>-lun-<lun>`, `disk/by-id/scsi-3<naa>`,
//!   `disk/by-id/wwn-0x<naa>`, `disk/by-id/scsi-S<vendor>_<model>_<serial>`,
//!   `disk/by-diskseq/<n>`, `block/<maj>:<min>`.
//! - FC sd: `disk/by-path/[platform-<dev>-]pci-<pci>-fc-0x<target port_name>-lun-<lun>` instead
//!   of the iSCSI by-path name (see `fc`).
//! - NVMe (visible disks only): `disk/by-id/nvme-<wwid>`, `nvme-<model>_<serial>[_<nsid>]`,
//!   `disk/by-diskseq/<n>`, `block/259:<m>`; no by-path link (see `nvme::sysfs`).
//! - dm-multipath: `mapper/<name>`, `disk/by-id/dm-name-<name>`,
//!   `disk/by-id/dm-uuid-mpath-<wwid>`, and `scsi-<wwid>` / `wwn-0x<naa>` with a higher link
//!   priority, so they point at the map while it exists and fall back to an sd after.

use std::collections::BTreeMap;

use crate::faults::{Fault, UdevAction};
use crate::fc::fc_by_path_name;
use crate::ids::{ControlError, Errno, HostId};
use crate::kernel::{BSG_MAJOR, DM_MAJOR, DevKind, SG_MAJOR};
use crate::naming::{by_path_name, sd_devt, udev_clean};
use crate::tree::{Node, Tree};
use crate::world::{Event, World};

/// A kernel uevent action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Add,
    Remove,
    Change,
}

/// One link a device claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// Absolute link path (`/dev/disk/by-id/...`).
    pub(crate) path: String,
    /// Raw link target (`../../sda`).
    pub(crate) target: String,
    pub(crate) priority: i32,
}

/// udev's database: device name -> links it claims.
#[derive(Debug, Clone, Default)]
pub(crate) struct UdevDb {
    pub(crate) devices: BTreeMap<String, Vec<Claim>>,
}

impl World {
    /// Queues a kernel event for udev (dropped if a `UdevLost` fault fires).
    pub(crate) fn queue_udev(&mut self, host: HostId, action: Action, dev: &str) {
        let lost = self.faults.fire(|f| match f {
            Fault::UdevLost {
                host: h, action: a, ..
            } => {
                *h == host
                    && match a {
                        UdevAction::Any => true,
                        UdevAction::Add => action == Action::Add,
                        UdevAction::Remove => action == Action::Remove,
                        UdevAction::Change => action == Action::Change,
                    }
            }
            _ => false,
        });
        if lost {
            tracing::debug!(%host, ?action, dev, "udev event lost (fault)");
            return;
        }
        let extra = self.faults.extra(|f| match f {
            Fault::UdevLate { host: h, extra } if *h == host => Some(*extra),
            _ => None,
        });
        let delay = self.host_ref(host).spec.udev_delay + extra;
        self.schedule(
            host,
            delay,
            Event::Udev {
                host,
                action,
                dev: dev.to_owned(),
            },
        );
    }

    /// udev processes one event.
    pub(crate) fn udev_process(&mut self, host: HostId, action: Action, dev: &str) {
        tracing::trace!(%host, ?action, dev, "udev event");
        match action {
            Action::Add | Action::Change => {
                let claims = self.claims_of(host, dev);
                let h = self.host_mut(host);
                match claims {
                    Some(c) => {
                        h.udev.devices.insert(dev.to_owned(), c);
                    }
                    // The device is already gone: udev finds no sysfs entry and does nothing.
                    None => return,
                }
                if action == Action::Add {
                    self.mpd_uevent_add(host, dev);
                }
            }
            Action::Remove => {
                self.host_mut(host).udev.devices.remove(dev);
                self.mpd_uevent_remove(host, dev);
            }
        }
    }

    /// The links `dev` claims given the current kernel state (`None` if it does not exist).
    fn claims_of(&self, host: HostId, dev: &str) -> Option<Vec<Claim>> {
        let k = &self.host_ref(host).kernel;
        let disk = |path: String, prio: i32| Claim {
            path,
            target: format!("../../{dev}"),
            priority: prio,
        };
        if k.nvme.block_exists(dev) {
            return self.nvme_claims(host, dev);
        }
        if let Some(d) = k.disk_by_name(dev) {
            let DevKind::Disk { sd } = d.kind else {
                return None;
            };
            let by_path = match k.session_of(d) {
                Some(s) => by_path_name(&s.portal, &s.iqn, d.hctl.lun),
                None => {
                    let (hba, r) = self.fc_rport_of(host, d.hctl)?;
                    fc_by_path_name(&hba.spec.device_path, r.wwpn, d.hctl.lun)
                }
            };
            let (maj, min) = sd_devt(sd);
            let naa = &d.identity.naa;
            let mut c = vec![
                disk(format!("/dev/disk/by-path/{by_path}"), 0),
                disk(format!("/dev/disk/by-id/scsi-3{naa}"), 0),
                disk(format!("/dev/disk/by-id/wwn-0x{naa}"), 0),
                disk(format!("/dev/disk/by-diskseq/{}", d.diskseq), 0),
                Claim {
                    path: format!("/dev/block/{maj}:{min}"),
                    target: format!("../{dev}"),
                    priority: 0,
                },
            ];
            let serial = udev_clean(&d.identity.serial);
            if !serial.is_empty() {
                c.push(disk(
                    format!(
                        "/dev/disk/by-id/scsi-S{}_{}_{}",
                        udev_clean(&d.vendor),
                        udev_clean(&d.model),
                        serial
                    ),
                    0,
                ));
            }
            return Some(c);
        }
        let m = k.dm_by_name(dev)?;
        let naa = m.wwid.strip_prefix('3').unwrap_or(&m.wwid);
        Some(vec![
            Claim {
                path: format!("/dev/mapper/{}", m.name),
                target: format!("../{dev}"),
                priority: 0,
            },
            disk(format!("/dev/disk/by-id/dm-name-{}", m.name), 0),
            disk(format!("/dev/disk/by-id/dm-uuid-mpath-{}", m.wwid), 0),
            disk(format!("/dev/disk/by-id/scsi-{}", m.wwid), 50),
            disk(format!("/dev/disk/by-id/wwn-0x{naa}"), 50),
            Claim {
                path: format!("/dev/block/{DM_MAJOR}:{}", m.minor),
                target: format!("../{dev}"),
                priority: 0,
            },
        ])
    }

    /// Every `/dev` link: path -> (raw target, claiming device). Highest priority wins, ties
    /// go to the lowest device name.
    pub(crate) fn dev_link_table(&self, host: HostId) -> BTreeMap<String, (String, String)> {
        let mut best: BTreeMap<String, (i32, String, String)> = BTreeMap::new();
        for (dev, claims) in &self.host_ref(host).udev.devices {
            for c in claims {
                let better = match best.get(&c.path) {
                    None => true,
                    Some((p, d, _)) => c.priority > *p || (c.priority == *p && dev < d),
                };
                if better {
                    best.insert(c.path.clone(), (c.priority, dev.clone(), c.target.clone()));
                }
            }
        }
        best.into_iter()
            .map(|(p, (_, dev, target))| (p, (target, dev)))
            .collect()
    }

    /// Link path -> device name it points to.
    pub(crate) fn dev_links(&self, host: HostId) -> BTreeMap<String, String> {
        self.dev_link_table(host)
            .into_iter()
            .map(|(p, (target, _))| {
                let dev = target.rsplit('/').next().unwrap_or_default().to_owned();
                (p, dev)
            })
            .collect()
    }

    /// `/dev` links whose device is gone.
    pub fn stale_links(&self, host: HostId) -> Vec<String> {
        let k = &self.host_ref(host).kernel;
        self.dev_links(host)
            .into_iter()
            .filter(|(_, dev)| !k.block_exists(dev))
            .map(|(p, _)| p)
            .collect()
    }

    /// Unlinks a `/dev` link (os-brick removes stale `by-id/scsi-*` links itself). udev
    /// forgets the claim; a later event for the device may create it again.
    pub fn remove(&mut self, host: HostId, path: &str) -> Result<(), ControlError> {
        if !path.starts_with("/dev/") || path.split('/').any(|c| c == ".." || c == ".") {
            let kind = if path.starts_with("/sys/") || path.starts_with("/etc/") {
                Errno::EACCES
            } else {
                Errno::ENOENT
            };
            return Err(ControlError::new(
                kind,
                path,
                "only /dev links can be removed",
            ));
        }
        if self.faults.crashed(host) {
            return Err(ControlError::new(Errno::EIO, path, "crash fault"));
        }
        let table = self.dev_link_table(host);
        if !table.contains_key(path) {
            let t = self.tree(host);
            return Err(match t.get(path) {
                Some(Node::Dir { .. }) => ControlError::new(Errno::EISDIR, path, "is a directory"),
                Some(_) => {
                    ControlError::new(Errno::EACCES, path, "device nodes belong to devtmpfs")
                }
                None => ControlError::new(Errno::ENOENT, path, "no such link"),
            });
        }
        for claims in self.host_mut(host).udev.devices.values_mut() {
            claims.retain(|c| c.path != path);
        }
        Ok(())
    }

    pub(crate) fn render_dev(&self, host: HostId, t: &mut Tree) {
        let h = self.host_ref(host);
        let k = &h.kernel;
        let processed = |name: &str| h.udev.devices.contains_key(name);
        for d in k.devices.values() {
            if let Some(name) = d.sd_name()
                && let DevKind::Disk { sd } = d.kind
            {
                let (major, minor) = sd_devt(sd);
                let mode = if processed(&name) { 0o660 } else { 0o600 };
                t.insert(&format!("/dev/{name}"), Node::Block { major, minor, mode });
            }
            let sg_mode = if d.sd_name().is_some_and(|n| processed(&n)) {
                0o660
            } else {
                0o600
            };
            t.insert(
                &format!("/dev/sg{}", d.sg),
                Node::Char {
                    major: SG_MAJOR,
                    minor: d.sg,
                    mode: sg_mode,
                },
            );
            t.insert(
                &format!("/dev/bsg/{}", d.hctl),
                Node::Char {
                    major: BSG_MAJOR,
                    minor: d.bsg,
                    mode: 0o600,
                },
            );
        }
        for m in k.dms.values() {
            let name = m.dev_name();
            let mode = if processed(&name) { 0o660 } else { 0o600 };
            t.insert(
                &format!("/dev/{name}"),
                Node::Block {
                    major: DM_MAJOR,
                    minor: m.minor,
                    mode,
                },
            );
        }
        self.render_nvme_dev(host, t);
        if h.spec.multipathd {
            t.insert(
                "/dev/mapper/control",
                Node::Char {
                    major: 10,
                    minor: 236,
                    mode: 0o600,
                },
            );
        }
        for (path, (target, _)) in self.dev_link_table(host) {
            t.link(&path, &target);
        }
    }
}
