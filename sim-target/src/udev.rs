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
//!   `disk/by-diskseq/<n>`, `block/<maj>:<min>`, plus one link per logical-unit designator
//!   of VPD page 0x83 (sg3-utils' `sg_vpd --export` and 58-scsi-sg3_symlink.rules):
//!   `scsi-1<T10 vendor id>`, `scsi-3<NAA>` (every NAA type), `scsi-2<EUI-64>`,
//!   `scsi-8<SCSI name>`. Which designators a LUN has is the array's business
//!   ([`crate::IdStyle`]).
//! - FC sd: `disk/by-path/[platform-<dev>-]pci-<pci>-fc-0x<target port_name>-lun-<lun>` instead
//!   of the iSCSI by-path name (see `fc`).
//! - NVMe (visible disks only): `disk/by-id/nvme-<wwid>`, `nvme-<model>_<serial>[_<nsid>]`,
//!   `disk/by-diskseq/<n>`, `block/259:<m>`; no by-path link (see `nvme::sysfs`).
//! - dm-multipath: `mapper/<name>`, `disk/by-id/dm-name-<name>`,
//!   `disk/by-id/dm-uuid-mpath-<wwid>`, and `scsi-<wwid>` / `wwn-0x<naa>` with a higher link
//!   priority, so they point at the map while it exists and fall back to an sd after.
//!
//! Several devices may claim one link (every path of a multipath LUN claims its `scsi-*`
//! links). As systemd-udevd's `link_update` does, the highest link priority wins, and among
//! equal priorities the device whose `add` or `change` event was processed last takes the
//! link over. multipathd adds such a `change`: when it creates a map for a WWID that was not
//! yet in its wwids file, it triggers a `change` uevent on every path udev had not marked as a
//! multipath member (`multipath -u` treats `find_multipaths no` like `strict`), so that udev
//! re-runs its rules on it (`trigger_paths_udev_change`).

use std::collections::{BTreeMap, BTreeSet};

use crate::faults::{Fault, UdevAction};
use crate::fc::fc_by_path_name;
use crate::ids::{ControlError, Errno, HostId};
use crate::kernel::sysfs::vpd83;
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
    /// Device name -> when its links were last claimed (order of processed `add`/`change`
    /// events): with equal priority, the latest claimant owns a link.
    claimed_at: BTreeMap<String, u64>,
    /// Counter for `claimed_at`.
    claims_processed: u64,
    /// Devices udev last saw as multipath paths (`DM_MULTIPATH_DEVICE_PATH=1`).
    pub(crate) mpath_members: BTreeSet<String>,
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
                let member = self.multipath_u(host, dev);
                let h = self.host_mut(host);
                match claims {
                    Some(c) => {
                        let db = &mut h.udev;
                        db.devices.insert(dev.to_owned(), c);
                        db.claims_processed += 1;
                        db.claimed_at.insert(dev.to_owned(), db.claims_processed);
                        if member {
                            db.mpath_members.insert(dev.to_owned());
                        } else {
                            db.mpath_members.remove(dev);
                        }
                    }
                    // The device is already gone: udev finds no sysfs entry and does nothing.
                    None => return,
                }
                if action == Action::Add {
                    self.mpd_uevent_add(host, dev);
                }
            }
            Action::Remove => {
                let db = &mut self.host_mut(host).udev;
                db.devices.remove(dev);
                db.claimed_at.remove(dev);
                db.mpath_members.remove(dev);
                self.mpd_uevent_remove(host, dev);
            }
        }
    }

    /// `multipath -u <dev>` in multipath.rules: whether udev marks the sd as a multipath path.
    /// It behaves like `find_multipaths strict` (also for `no`): only a WWID listed in the
    /// wwids file, or one that already has a map, makes a path.
    fn multipath_u(&self, host: HostId, dev: &str) -> bool {
        let h = self.host_ref(host);
        if !h.mpd.installed {
            return false;
        }
        let Some(d) = h.kernel.disk_by_name(dev) else {
            return false;
        };
        let wwid = d.identity.udev_wwid();
        h.mpd.wwids.contains(&wwid) || h.kernel.dms.values().any(|m| m.wwid == wwid)
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
            for name in sg3_designator_links(&vpd83(d)) {
                let path = format!("/dev/disk/by-id/{name}");
                if !c.iter().any(|x| x.path == path) {
                    c.push(disk(path, 0));
                }
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
    /// go to the device that claimed last (see the module doc).
    pub(crate) fn dev_link_table(&self, host: HostId) -> BTreeMap<&str, (&str, &str)> {
        let db = &self.host_ref(host).udev;
        let mut best: BTreeMap<&str, (i32, u64, &str, &str)> = BTreeMap::new();
        for (dev, claims) in &db.devices {
            let at = db.claimed_at.get(dev).copied().unwrap_or(0);
            for c in claims {
                let better = match best.get(c.path.as_str()) {
                    None => true,
                    Some((p, a, _, _)) => (c.priority, at) > (*p, *a),
                };
                if better {
                    best.insert(&c.path, (c.priority, at, dev, &c.target));
                }
            }
        }
        best.into_iter()
            .map(|(p, (_, _, dev, target))| (p, (target, dev)))
            .collect()
    }

    /// Link path -> device name it points to.
    pub(crate) fn dev_links(&self, host: HostId) -> BTreeMap<String, String> {
        self.dev_link_table(host)
            .into_iter()
            .map(|(p, (target, _))| {
                let dev = target.rsplit('/').next().unwrap_or_default().to_owned();
                (p.to_owned(), dev)
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
        let result = self.remove_now(host, path);
        // It looked `path` up in the cached tree (if any) before changing anything.
        self.model_changed();
        result
    }

    fn remove_now(&mut self, host: HostId, path: &str) -> Result<(), ControlError> {
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
        if !self.dev_link_table(host).contains_key(path) {
            let t = self.tree_shared(host);
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
            t.link(path, target);
        }
    }
}

/// The by-id link names 58-scsi-sg3_symlink.rules makes from a VPD page 0x83, as `sg_vpd
/// --export` reports its logical-unit designators (those associated with a target port or
/// device are not linked): T10 vendor id -> `scsi-1<id>` (whitespace runs as one `_`, NULs
/// ending it), NAA of any type -> `scsi-3<hex>`, EUI-64 -> `scsi-2<hex>`, SCSI name string ->
/// `scsi-8<name>`. A truncated page yields the designators it holds whole.
pub(crate) fn sg3_designator_links(page: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = page.get(4..).unwrap_or_default();
    while let [code_set, kind, _, len, tail @ ..] = rest {
        let Some(value) = tail.get(..usize::from(*len)) else {
            break;
        };
        rest = tail.get(usize::from(*len)..).unwrap_or_default();
        if (kind >> 4) & 0x3 != 0 {
            continue;
        }
        let hex = || value.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let text = || encode_whitespaces(value);
        let name = match (kind & 0x0f, code_set & 0x0f) {
            (1, _) => format!("scsi-1{}", text()),
            (2, 1) => format!("scsi-2{}", hex()),
            (3, 1) => format!("scsi-3{}", hex()),
            (8, 2 | 3) => format!("scsi-8{}", text()),
            _ => continue,
        };
        if name.len() > 6 && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// sg_vpd's whitespace encoding of a text designator: stops at the first NUL, drops leading
/// and trailing whitespace, turns each inner run of whitespace into one `_`; a `/` (which a
/// link name cannot hold) becomes `_` too.
fn encode_whitespaces(value: &[u8]) -> String {
    let end = value.iter().position(|b| *b == 0).unwrap_or(value.len());
    let text = String::from_utf8_lossy(value.get(..end).unwrap_or_default()).into_owned();
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join("_")
        .chars()
        .map(|c| {
            if c == '/' || !c.is_ascii_graphic() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    #[test]
    fn tgt_page_83_gives_the_three_sg3_links() {
        // vpd_pg83 of 0:0:0:1 in multipath-2paths.txt.
        let page = hex(
            "00 83 00 48 02 01 00 24 49 45 54 20 20 20 20 20 30 30 30 31 30 30 30 31 00 00 00 00 \
             00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 03 00 08 30 00 00 01 00 00 00 01 \
             01 03 00 10 60 00 00 00 00 00 00 00 0e 00 00 00 00 01 00 01",
        );
        assert_eq!(
            sg3_designator_links(&page),
            [
                "scsi-1IET_00010001",
                "scsi-33000000100000001",
                "scsi-360000000000000000e00000000010001"
            ]
        );
    }

    #[test]
    fn port_designators_and_garbage_give_no_link() {
        // A relative target port designator (association 1) and a truncated NAA designator.
        let page = hex("00 83 00 0c 01 14 00 04 00 00 00 01 01 03 00 10 60 01");
        assert!(sg3_designator_links(&page).is_empty());
        assert!(sg3_designator_links(&[]).is_empty());
        assert!(sg3_designator_links(&[0, 0x83]).is_empty());
        // EUI-64 and SCSI name string designators; a `/` cannot be part of a link name.
        let page = hex(
            "00 83 00 18 01 02 00 08 00 11 22 33 44 55 66 77 03 08 00 08 69 71 6e 2e 61 2f 62 00",
        );
        assert_eq!(
            sg3_designator_links(&page),
            ["scsi-20011223344556677", "scsi-8iqn.a_b"]
        );
    }
}
