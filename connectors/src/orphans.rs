//! The orphan report: everything on a host that looks left behind by an incomplete detach.
//!
//! A detach that stops half way (CVE-2023-2088's class of bug) leaves things that no volume
//! owns any more: a udev link whose device is gone, a multipath map with no paths, an iSCSI
//! session with no disk, a `/dev/disk/by-id/scsi-<wwid>` link that now leads to a device of
//! *another* volume. [`find_orphans`] walks `/sys/block`, `/dev`, `/dev/disk/by-{path,id}`,
//! `/dev/mapper` and `/sys/class/iscsi_session` of a host, read-only and confined to its
//! root, and lists each suspect with a [`OrphanReason`].
//!
//! It is heuristic on purpose and errs towards silence on real hosts:
//! - identity checks only compare link names that *are* identities: `scsi-2…`/`scsi-3…`
//!   (EUI-64 and NAA designators), `wwn-0x…` and `dm-uuid-mpath-…`; a device may carry several
//!   designators (VPD page 0x83), all of which are accepted when the page is readable;
//! - only device-mapper maps with a multipath uuid (`mpath-…`) can be "empty";
//! - only SCSI disks behind an iSCSI session or an FC remote port can be "unlinked".
//!
//! Nothing here fails: unreadable attributes become [`Diagnostic`]s next to the partial report.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::connector::Diagnostic;
use crate::fs::HostFs;
use crate::host::{Host, HostPath};
use crate::ids::Wwid;

/// The most bytes read from a binary VPD attribute (a VPD page is at most 4 + 65535 bytes).
const MAX_VPD_BYTES: u64 = 4 + 65_535;

/// What kind of thing an orphan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanKind {
    /// A udev symlink (`/dev/disk/by-path/...`, `/dev/disk/by-id/...`, `/dev/mapper/...`).
    Link,
    /// A block device (`/dev/sdX`) or a sysfs holder/slave entry of one.
    Device,
    /// A device-mapper map (`/dev/dm-N`).
    Map,
    /// An iSCSI session (`/sys/class/iscsi_session/sessionN`).
    Session,
}

/// Why something is reported as an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanReason {
    /// A symlink whose target does not exist.
    StaleLink,
    /// A multipath map with no path device under it.
    EmptyMap,
    /// An iSCSI session with no SCSI disk under it.
    IdleSession,
    /// A name that claims one identity leading to a device with another: a `scsi-<wwid>`,
    /// `wwn-0x…` or `dm-uuid-mpath-<wwid>` link, or a multipath map over a path device whose
    /// WWID is not the map's.
    IdentityMismatch,
    /// A `holders/` or `slaves/` entry that leads nowhere, or that the other side does not list.
    DanglingHolder,
    /// A device node under `/dev` with no kernel device in `/sys/block`.
    StaleNode,
    /// A SCSI disk behind an iSCSI session or FC port that no by-path link and no map uses.
    UnlinkedDevice,
}

/// The iSCSI target an orphan belongs to, when its name or sysfs says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IscsiRef {
    /// The target IQN, as the host reports it (not validated: it is only reported).
    pub iqn: String,
    /// The portal (`address:port`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    /// The LUN as written in a by-path name (`1`, `0x4001000000000000`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lun: Option<String>,
}

/// One suspect leftover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphan {
    /// What it is.
    pub kind: OrphanKind,
    /// Why it is reported.
    pub reason: OrphanReason,
    /// The link, device node, map or session.
    pub path: HostPath,
    /// What it leads to, resolved inside the root (a dangling link's intended target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<HostPath>,
    /// The identity of the device it leads to, as sysfs reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wwid: Option<Wwid>,
    /// The identity its name (or map uuid) claims, when that differs from `wwid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_wwid: Option<Wwid>,
    /// The iSCSI target it belongs to, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<IscsiRef>,
    /// A human explanation.
    pub detail: String,
}

impl Orphan {
    /// The identities this orphan is tied to (the device's and the claimed one).
    pub fn identities(&self) -> impl Iterator<Item = &Wwid> {
        self.wwid.iter().chain(self.claimed_wwid.iter())
    }
}

/// Every orphan found on a host, plus what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanReport {
    /// The suspects, sorted by path then reason.
    pub orphans: Vec<Orphan>,
    /// What was skipped and why.
    pub diagnostics: Vec<Diagnostic>,
}

impl OrphanReport {
    /// Whether nothing looks orphaned.
    pub fn is_clean(&self) -> bool {
        self.orphans.is_empty()
    }
}

/// Walks the host (read-only, confined to its root) and reports what looks orphaned.
pub fn find_orphans(host: &dyn Host) -> OrphanReport {
    let mut w = Walker {
        fs: HostFs::of(host),
        report: OrphanReport::default(),
        blocks: BTreeMap::new(),
    };
    w.scan_blocks();
    let linked = w.scan_links();
    w.scan_nodes_and_unlinked(&linked);
    w.scan_sessions();
    let mut report = w.report;
    report
        .orphans
        .sort_by(|a, b| (&a.path, a.reason).cmp(&(&b.path, b.reason)));
    report.orphans.dedup();
    report
}

/// What is known about one `/sys/block` entry.
#[derive(Debug, Default)]
struct Block {
    /// The primary identity (`device/wwid`, or the map's `dm/uuid`).
    wwid: Option<Wwid>,
    /// Every identity accepted for it (primary, VPD designators, a map's path devices').
    ids: BTreeSet<String>,
    /// Existing `slaves/` entries (maps) and `holders/` entries.
    slaves: Vec<String>,
    holders: Vec<String>,
    /// A multipath map (`dm/uuid` starts with `mpath-`).
    multipath: bool,
    /// A SCSI disk behind an iSCSI session or FC remote port.
    san_disk: bool,
}

struct Walker<'a> {
    fs: HostFs<'a>,
    report: OrphanReport,
    blocks: BTreeMap<String, Block>,
}

fn hp(s: &str) -> Option<HostPath> {
    HostPath::new(s).ok()
}

fn is_dm(name: &str) -> bool {
    name.strip_prefix("dm-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_sd_disk(name: &str) -> bool {
    name.strip_prefix("sd")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The udev-form identities (`3<naa hex>`, `2<eui hex>`) of the NAA and EUI-64 designators in
/// a VPD page 0x83. Malformed pages give what could be parsed before the damage.
pub(crate) fn vpd83_designators(page: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    if page.get(1) != Some(&0x83) {
        return out;
    }
    let (Some(&hi), Some(&lo)) = (page.get(2), page.get(3)) else {
        return out;
    };
    let end = (4 + usize::from(u16::from_be_bytes([hi, lo]))).min(page.len());
    let mut i = 4usize;
    while i + 4 <= end {
        let (Some(&b1), Some(&len)) = (page.get(i + 1), page.get(i + 3)) else {
            break;
        };
        let start = i + 4;
        let stop = start + usize::from(len);
        let Some(designator) = page.get(start..stop.min(end)).filter(|_| stop <= end) else {
            break;
        };
        match b1 & 0x0f {
            2 if !designator.is_empty() => out.push(format!("2{}", hex(designator))),
            3 if !designator.is_empty() => out.push(format!("3{}", hex(designator))),
            _ => {}
        }
        i = stop;
    }
    out
}

impl Walker<'_> {
    fn diag(&mut self, path: &HostPath, message: impl Into<String>) {
        self.report.diagnostics.push(Diagnostic::at(path, message));
    }

    fn orphan(&mut self, orphan: Orphan) {
        self.report.orphans.push(orphan);
    }

    /// Reads a text attribute; errors become diagnostics.
    fn attr(&mut self, path: &HostPath) -> Option<String> {
        match self.fs.read_attr(path) {
            Ok(v) => v,
            Err(e) => {
                self.diag(path, e.to_string());
                None
            }
        }
    }

    fn dir(&mut self, path: &HostPath) -> Vec<String> {
        match self.fs.read_dir(path) {
            Ok(v) => v,
            Err(e) => {
                self.diag(path, e.to_string());
                Vec::new()
            }
        }
    }

    /// Reads a binary attribute (VPD pages), bounded; unreadable means absent.
    fn raw(&self, path: &HostPath) -> Option<Vec<u8>> {
        self.fs.read_raw(path, MAX_VPD_BYTES)
    }

    // ------------------------------------------------------------------ /sys/block

    fn scan_blocks(&mut self) {
        let Some(sys_block) = hp("/sys/block") else {
            return;
        };
        for name in self.dir(&sys_block) {
            let Ok(base) = sys_block.join(&name) else {
                continue;
            };
            let block = if is_dm(&name) {
                self.read_map(&base)
            } else if is_sd_disk(&name) {
                self.read_disk(&base)
            } else {
                continue;
            };
            self.blocks.insert(name, block);
        }
        // A map accepts the identities of its path devices too (a `scsi-<wwid>` link of the
        // volume may point at the map), and checks them against its own.
        let maps: Vec<String> = self.blocks.keys().filter(|n| is_dm(n)).cloned().collect();
        for map in maps {
            self.check_map(&map);
        }
        let names: Vec<String> = self.blocks.keys().cloned().collect();
        for name in names {
            self.check_holders(&name);
        }
    }

    fn read_disk(&mut self, base: &HostPath) -> Block {
        let mut block = Block::default();
        if let Ok(wwid_path) = base.join("device").and_then(|d| d.join("wwid"))
            && let Some(text) = self.attr(&wwid_path)
        {
            match Wwid::from_sysfs(&text) {
                Ok(w) => {
                    block.ids.insert(w.as_str().to_owned());
                    block.wwid = Some(w);
                }
                Err(e) => self.diag(&wwid_path, e.to_string()),
            }
        }
        if let Ok(vpd) = base.join("device").and_then(|d| d.join("vpd_pg83"))
            && let Some(page) = self.raw(&vpd)
        {
            block.ids.extend(vpd83_designators(&page));
        }
        if let Ok(real) = self.fs.realpath(base) {
            let s = real.as_str();
            block.san_disk = s.contains("/session") || s.contains("/rport-");
        }
        block.holders = self.entries(base, "holders");
        block
    }

    fn read_map(&mut self, base: &HostPath) -> Block {
        let mut block = Block::default();
        if let Ok(uuid_path) = base.join("dm").and_then(|d| d.join("uuid"))
            && let Some(text) = self.attr(&uuid_path)
            && text.starts_with("mpath-")
        {
            block.multipath = true;
            match Wwid::from_dm_uuid(&text) {
                Ok(w) => {
                    block.ids.insert(w.as_str().to_owned());
                    block.wwid = Some(w);
                }
                Err(e) => self.diag(&uuid_path, e.to_string()),
            }
        }
        block.slaves = self.entries(base, "slaves");
        block.holders = self.entries(base, "holders");
        block
    }

    /// The entries of `base/sub` that lead somewhere; dangling ones are reported.
    fn entries(&mut self, base: &HostPath, sub: &str) -> Vec<String> {
        let Ok(dir) = base.join(sub) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for name in self.dir(&dir) {
            let Ok(entry) = dir.join(&name) else {
                continue;
            };
            if self.fs.exists(&entry) {
                out.push(name);
            } else {
                let target = self.fs.realpath(&entry).ok();
                self.orphan(Orphan {
                    kind: OrphanKind::Device,
                    reason: OrphanReason::DanglingHolder,
                    path: entry,
                    target,
                    wwid: None,
                    claimed_wwid: None,
                    iscsi: None,
                    detail: format!("`{sub}` entry {name} of {} leads nowhere", base.file_name()),
                });
            }
        }
        out
    }

    fn check_map(&mut self, map: &str) {
        let Some(block) = self.blocks.get(map) else {
            return;
        };
        if !block.multipath {
            return;
        }
        let map_wwid = block.wwid.clone();
        let slaves = block.slaves.clone();
        let Some(dev) = hp("/dev").and_then(|d| d.join(map).ok()) else {
            return;
        };
        if slaves.is_empty() {
            self.orphan(Orphan {
                kind: OrphanKind::Map,
                reason: OrphanReason::EmptyMap,
                path: dev.clone(),
                target: None,
                wwid: map_wwid.clone(),
                claimed_wwid: None,
                iscsi: None,
                detail: format!("multipath map {map} has no path device"),
            });
        }
        let mut extra = BTreeSet::new();
        for slave in &slaves {
            let Some(s) = self.blocks.get(slave) else {
                continue;
            };
            extra.extend(s.ids.iter().cloned());
            if let (Some(mw), Some(sw)) = (&map_wwid, &s.wwid)
                && mw != sw
            {
                let orphan = Orphan {
                    kind: OrphanKind::Map,
                    reason: OrphanReason::IdentityMismatch,
                    path: dev.clone(),
                    target: hp("/dev").and_then(|d| d.join(slave).ok()),
                    wwid: Some(sw.clone()),
                    claimed_wwid: Some(mw.clone()),
                    iscsi: None,
                    detail: format!(
                        "multipath map {map} ({mw}) has path device {slave} of another volume ({sw})"
                    ),
                };
                self.orphan(orphan);
            }
        }
        if let Some(b) = self.blocks.get_mut(map) {
            b.ids.extend(extra);
        }
    }

    /// A holder must list the device among its slaves (and a map's slaves list it as holder).
    fn check_holders(&mut self, name: &str) {
        let Some(block) = self.blocks.get(name) else {
            return;
        };
        let holders = block.holders.clone();
        for holder in holders {
            let listed = self
                .blocks
                .get(&holder)
                .is_none_or(|h| !is_dm(&holder) || h.slaves.iter().any(|s| s == name));
            if !listed {
                let path = hp("/sys/block")
                    .and_then(|b| b.join(name).ok())
                    .and_then(|b| b.join("holders").ok())
                    .and_then(|b| b.join(&holder).ok());
                if let Some(path) = path {
                    self.orphan(Orphan {
                        kind: OrphanKind::Device,
                        reason: OrphanReason::DanglingHolder,
                        target: hp("/dev").and_then(|d| d.join(&holder).ok()),
                        path,
                        wwid: self.blocks.get(name).and_then(|b| b.wwid.clone()),
                        claimed_wwid: None,
                        iscsi: None,
                        detail: format!(
                            "{name} names {holder} as holder, which does not list it as a slave"
                        ),
                    });
                }
            }
        }
    }

    // ------------------------------------------------------------------ udev links

    /// Checks every link; returns the device names that some by-path link or map leads to.
    fn scan_links(&mut self) -> BTreeSet<String> {
        let mut linked = BTreeSet::new();
        for dir in ["/dev/disk/by-path", "/dev/disk/by-id", "/dev/mapper"] {
            let Some(dir) = hp(dir) else { continue };
            for name in self.dir(&dir) {
                let Ok(link) = dir.join(&name) else { continue };
                if !self.fs.is_link(&link) {
                    continue;
                }
                let target = match self.fs.realpath(&link) {
                    Ok(t) => t,
                    Err(e) => {
                        self.diag(&link, e.to_string());
                        continue;
                    }
                };
                let by_path = dir.as_str().ends_with("by-path");
                let iscsi = if by_path {
                    parse_iscsi_by_path(&name)
                } else {
                    None
                };
                if !self.fs.exists(&link) {
                    let raw = self.fs.read_link(&link).ok().flatten().unwrap_or_default();
                    let claimed = claimed_identity(&name).and_then(|c| Wwid::new(&c).ok());
                    self.orphan(Orphan {
                        kind: OrphanKind::Link,
                        reason: OrphanReason::StaleLink,
                        path: link,
                        target: Some(target),
                        wwid: None,
                        claimed_wwid: claimed,
                        iscsi,
                        detail: format!("link target {raw:?} does not exist"),
                    });
                    continue;
                }
                let dev = target.file_name().to_owned();
                let under_dev = target.parent().is_some_and(|p| p.as_str() == "/dev");
                if !under_dev {
                    continue;
                }
                if by_path {
                    linked.insert(dev.clone());
                }
                if dir.as_str().ends_with("by-id") {
                    self.check_identity(&link, &name, &target, &dev, iscsi);
                }
            }
        }
        linked
    }

    fn check_identity(
        &mut self,
        link: &HostPath,
        name: &str,
        target: &HostPath,
        dev: &str,
        iscsi: Option<IscsiRef>,
    ) {
        let Some(block) = self.blocks.get(dev) else {
            return;
        };
        if block.ids.is_empty() {
            return;
        }
        let accepted = if let Some(h) = name.strip_prefix("wwn-0x") {
            let h = h.to_ascii_lowercase();
            Some(
                block
                    .ids
                    .iter()
                    .any(|id| id.get(1..).is_some_and(|rest| rest.starts_with(&h))),
            )
        } else {
            claimed_identity(name).map(|claim| block.ids.contains(&claim))
        };
        if accepted == Some(false) {
            let claimed = claimed_identity(name).and_then(|c| Wwid::new(&c).ok());
            let actual = block.wwid.clone();
            let detail = format!(
                "{name} leads to {dev}, whose identity is {}",
                actual.as_ref().map_or("unknown", Wwid::as_str)
            );
            self.orphan(Orphan {
                kind: OrphanKind::Link,
                reason: OrphanReason::IdentityMismatch,
                path: link.clone(),
                target: Some(target.clone()),
                wwid: actual,
                claimed_wwid: claimed,
                iscsi,
                detail,
            });
        }
    }

    // ------------------------------------------------------------------ /dev nodes

    fn scan_nodes_and_unlinked(&mut self, linked: &BTreeSet<String>) {
        let Some(dev) = hp("/dev") else { return };
        for name in self.dir(&dev) {
            if !(is_sd_disk(&name) || is_dm(&name)) || self.blocks.contains_key(&name) {
                continue;
            }
            let Ok(node) = dev.join(&name) else { continue };
            if self.fs.is_link(&node) || !self.fs.exists(&node) || self.fs.is_dir(&node) {
                continue;
            }
            self.orphan(Orphan {
                kind: OrphanKind::Device,
                reason: OrphanReason::StaleNode,
                path: node,
                target: None,
                wwid: None,
                claimed_wwid: None,
                iscsi: None,
                detail: format!("device node {name} has no kernel device in /sys/block"),
            });
        }
        let unlinked: Vec<(String, Option<Wwid>)> = self
            .blocks
            .iter()
            .filter(|(name, b)| {
                b.san_disk && b.holders.is_empty() && !linked.contains(name.as_str())
            })
            .map(|(n, b)| (n.clone(), b.wwid.clone()))
            .collect();
        for (name, wwid) in unlinked {
            let Ok(node) = dev.join(&name) else { continue };
            self.orphan(Orphan {
                kind: OrphanKind::Device,
                reason: OrphanReason::UnlinkedDevice,
                path: node,
                target: None,
                wwid,
                claimed_wwid: None,
                iscsi: None,
                detail: format!("SAN disk {name} has no by-path link and no holder"),
            });
        }
    }

    // ------------------------------------------------------------------ iSCSI sessions

    fn scan_sessions(&mut self) {
        let Some(class) = hp("/sys/class/iscsi_session") else {
            return;
        };
        for name in self.dir(&class) {
            let Some(num) = name
                .strip_prefix("session")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(entry) = class.join(&name) else {
                continue;
            };
            let read = |w: &mut Self, attr: &str| entry.join(attr).ok().and_then(|p| w.attr(&p));
            let iqn = read(self, "targetname").unwrap_or_default();
            let state = read(self, "state").unwrap_or_else(|| "unknown".to_owned());
            // `iscsi_session/sessionN/device` → the session's device directory, whose
            // `target*/H:C:T:L/block/` hold its disks.
            let device_dir = entry
                .join("device")
                .ok()
                .and_then(|d| self.fs.realpath(&d).ok());
            let Some(device_dir) = device_dir.filter(|d| self.fs.is_dir(d)) else {
                self.diag(&entry, "session has no device directory");
                continue;
            };
            if self.session_has_disk(&device_dir) {
                continue;
            }
            let portal = self.session_portal(num);
            self.orphan(Orphan {
                kind: OrphanKind::Session,
                reason: OrphanReason::IdleSession,
                path: entry,
                target: Some(device_dir),
                wwid: None,
                claimed_wwid: None,
                detail: format!(
                    "{name} to {iqn}{} ({state}) has no SCSI disk",
                    portal
                        .as_ref()
                        .map(|p| format!(" at {p}"))
                        .unwrap_or_default()
                ),
                iscsi: (!iqn.is_empty()).then_some(IscsiRef {
                    iqn,
                    portal,
                    lun: None,
                }),
            });
        }
    }

    fn session_has_disk(&mut self, device_dir: &HostPath) -> bool {
        for target in self.dir(device_dir) {
            if !target.starts_with("target") {
                continue;
            }
            let Ok(tdir) = device_dir.join(&target) else {
                continue;
            };
            for lun in self.dir(&tdir) {
                if crate::scsi::parse_hctl(&lun).is_none() {
                    continue;
                }
                let Ok(block) = tdir.join(&lun).and_then(|l| l.join("block")) else {
                    continue;
                };
                if !self.dir(&block).is_empty() {
                    return true;
                }
            }
        }
        false
    }

    fn session_portal(&mut self, num: &str) -> Option<String> {
        let conn = hp("/sys/class/iscsi_connection")?
            .join(&format!("connection{num}:0"))
            .ok()?;
        let address = conn
            .join("persistent_address")
            .ok()
            .and_then(|p| self.attr(&p))
            .or_else(|| conn.join("address").ok().and_then(|p| self.attr(&p)))?;
        let port = conn
            .join("persistent_port")
            .ok()
            .and_then(|p| self.attr(&p))
            .or_else(|| conn.join("port").ok().and_then(|p| self.attr(&p)))?;
        Some(if address.contains(':') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        })
    }
}

/// The identity a by-id link name claims, in udev form: `scsi-2…`/`scsi-3…` (EUI-64, NAA
/// designators, hex) and `dm-uuid-mpath-<wwid>`. Other names (`scsi-1…` T10 vendor ids,
/// `scsi-S…` serials, `dm-name-…`) are not identities we can compare.
fn claimed_identity(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("dm-uuid-mpath-") {
        return Some(rest.to_owned());
    }
    let id = name.strip_prefix("scsi-")?;
    let mut chars = id.chars();
    let kind = chars.next()?;
    let rest = chars.as_str();
    ((kind == '2' || kind == '3')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_hexdigit()))
    .then(|| id.to_ascii_lowercase())
}

/// Splits `ip-<address>:<port>-iscsi-<iqn>-lun-<lun>` (udev's path_id for iSCSI).
fn parse_iscsi_by_path(name: &str) -> Option<IscsiRef> {
    let (_, rest) = name.split_once("ip-")?;
    let (portal, rest) = rest.split_once("-iscsi-")?;
    let (iqn, lun) = rest.rsplit_once("-lun-")?;
    (!iqn.is_empty() && !portal.is_empty()).then(|| IscsiRef {
        iqn: iqn.to_owned(),
        portal: Some(portal.to_owned()),
        lun: Some(lun.to_owned()),
    })
}

#[cfg(test)]
mod tests;
