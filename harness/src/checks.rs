//! The correctness properties of ../shared/DESIGN.md, checked against the simulator's truth.
//!
//! The simulator knows what each host device *really* reaches (the volume the array maps at
//! that LUN now) and what it *reports* (the identity the kernel read at probe time). The lab
//! knows what the test attached. Comparing the two with what the connector reports gives:
//! leftovers, truth of `get_volume_paths`, cross-talk and isolation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::lab::Lab;
use crate::simhost::lock;

/// Which property a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PropertyKind {
    /// Something on the host still leads to a volume that is not attached there.
    Leftover,
    /// `get_volume_paths` differs from the paths that really lead to the volume.
    Truth,
    /// A path or device of one volume carries or reaches another volume's data.
    CrossTalk,
}

impl fmt::Display for PropertyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Leftover => "leftover",
            Self::Truth => "truth",
            Self::CrossTalk => "cross-talk",
        })
    }
}

/// One broken property, with what a person needs to see it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Violation {
    /// The property.
    pub kind: PropertyKind,
    /// The host where it was seen.
    pub host: String,
    /// The volume concerned, when there is one.
    pub volume: Option<String>,
    /// A one-line explanation naming paths and identities.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] host {}", self.kind, self.host)?;
        if let Some(v) = &self.volume {
            write!(f, ", volume {v}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The paths through which a device is reported as a volume path, by the rules of
/// `get_volume_paths`: the `/dev/disk/by-path` links of a SCSI disk (iSCSI, FC), or the
/// namespace's own node for NVMe-oF (which has no by-path links). dm maps and hidden NVMe
/// per-path nodes are never volume paths of their own.
fn volume_paths_of(dev: &brick_sim_target::DeviceTruth) -> Vec<String> {
    if dev.name.starts_with("sd") {
        dev.links
            .iter()
            .filter(|l| l.starts_with("/dev/disk/by-path/"))
            .cloned()
            .collect()
    } else if dev.name.starts_with("nvme") && !dev.name.contains('c') {
        vec![format!("/dev/{}", dev.name)]
    } else {
        Vec::new()
    }
}

pub(crate) fn check_lab(lab: &Lab) -> Vec<Violation> {
    let names = lab.volumes_by_id();
    let mut out = Vec::new();
    for host in lab.host_names() {
        let Ok(hid) = lab.host_id(&host) else {
            continue;
        };
        let attached: BTreeSet<String> = lab
            .attachments()
            .keys()
            .filter(|(h, _)| *h == host)
            .map(|(_, v)| v.clone())
            .collect();
        let (devices, stale, wwids, idle) = {
            let world = lock(lab.world());
            let wwids: BTreeMap<String, String> = names
                .iter()
                .filter_map(|(id, name)| {
                    world
                        .volume_record(*id)
                        .map(|v| (v.wwid.clone(), name.clone()))
                })
                .collect();
            // Transport connections that carry nothing: an iSCSI session without a SCSI
            // device, an NVMe controller without a namespace. No attached volume needs them.
            let mut idle: Vec<String> = world
                .sessions(hid)
                .into_iter()
                .filter(|s| s.luns.is_empty())
                .map(|s| {
                    format!(
                        "iSCSI session{} to {} at {} carries no device (idle session)",
                        s.sid, s.iqn, s.portal
                    )
                })
                .collect();
            idle.extend(
                world
                    .controllers(hid)
                    .into_iter()
                    .filter(|c| c.nsids.is_empty())
                    .map(|c| {
                        format!(
                            "NVMe controller {} to {} at {} has no namespace (idle controller)",
                            c.name, c.nqn, c.portal
                        )
                    }),
            );
            (world.host_devices(hid), world.stale_links(hid), wwids, idle)
        };
        let violation = |kind, volume: Option<&str>, detail: String| Violation {
            kind,
            host: host.clone(),
            volume: volume.map(str::to_owned),
            detail,
        };

        // Every device: what it says it is against what it reaches, and whether it should exist.
        let mut really_leads_to: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for dev in &devices {
            let reported = wwids.get(&dev.reported_wwid).cloned();
            let backing = dev.backing.and_then(|id| names.get(&id).cloned());
            let links = dev.links.join(", ");
            match (&reported, &backing) {
                (_, None) => out.push(violation(
                    PropertyKind::Leftover,
                    reported.as_deref(),
                    format!(
                        "/dev/{} (wwid {}) reaches no volume: its LUN is no longer mapped [{links}]",
                        dev.name, dev.reported_wwid
                    ),
                )),
                (r, Some(b)) if r.as_ref() != Some(b) => out.push(violation(
                    PropertyKind::CrossTalk,
                    Some(b),
                    format!(
                        "/dev/{} reports wwid {} ({}) but reads and writes volume {b} [{links}]",
                        dev.name,
                        dev.reported_wwid,
                        r.as_deref().unwrap_or("unknown volume"),
                    ),
                )),
                (_, Some(b)) if !attached.contains(b) => out.push(violation(
                    PropertyKind::Leftover,
                    Some(b),
                    format!(
                        "/dev/{} still leads to volume {b}, which is not attached here [{links}]",
                        dev.name
                    ),
                )),
                (_, Some(b)) => {
                    really_leads_to
                        .entry(b.clone())
                        .or_default()
                        .extend(volume_paths_of(dev));
                }
            }
        }
        for detail in idle {
            out.push(violation(PropertyKind::Leftover, None, detail));
        }
        for link in stale {
            out.push(violation(
                PropertyKind::Leftover,
                None,
                format!("{link} is a stale link: its device is gone"),
            ));
        }

        // Every attached volume: the connector's report against the truth.
        for volume in &attached {
            let expected = really_leads_to.remove(volume).unwrap_or_default();
            let wwid = lab
                .volume_id(volume)
                .ok()
                .and_then(|id| lock(lab.world()).volume_record(id).map(|v| v.wwid.clone()));
            match lab.volume_paths(volume, &host) {
                Err(err) => out.push(violation(
                    PropertyKind::Truth,
                    Some(volume),
                    format!("get_volume_paths failed: {err}"),
                )),
                Ok(found) => {
                    let reported: BTreeSet<String> = found
                        .paths
                        .iter()
                        .map(|p| p.path.as_str().to_owned())
                        .collect();
                    if reported != expected {
                        out.push(violation(
                            PropertyKind::Truth,
                            Some(volume),
                            format!(
                                "get_volume_paths reported {reported:?}, but the paths that lead to it are {expected:?}"
                            ),
                        ));
                    }
                    for p in &found.paths {
                        let got = p.wwid.as_ref().map(|w| w.as_str().to_owned());
                        if got.is_some() && got != wwid {
                            out.push(violation(
                                PropertyKind::CrossTalk,
                                Some(volume),
                                format!(
                                    "{} -> {} has wwid {} ({}), not the volume's {}",
                                    p.path,
                                    p.device.as_ref().map_or("?", |d| d.as_str()),
                                    got.as_deref().unwrap_or("?"),
                                    got.as_ref()
                                        .and_then(|g| wwids.get(g))
                                        .map_or("unknown volume", String::as_str),
                                    wwid.as_deref().unwrap_or("(unknown)"),
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// One volume as a host-only check sees it (the exec tier, which has no simulator truth).
#[derive(Debug, Clone)]
pub struct HostViewVolume {
    /// The scenario's name of the volume.
    pub name: String,
    /// The identity the array reports (udev form), if known.
    pub wwid: Option<String>,
    /// `Some` when the volume is attached on this host: what `get_volume_paths` returned.
    pub paths: Option<Result<brick_connectors::VolumePaths, String>>,
}

/// The correctness properties as far as a real host can show them, without simulator truth:
///
/// - cross-talk: a path reported for an attached volume whose device carries another identity;
/// - truth: the reported paths differ from the `/dev/disk/by-path` links (and, for NVMe-oF,
///   the namespace nodes `/dev/nvmeXnY`) whose device carries the volume's identity;
/// - leftover: a block device or a `/dev/disk/by-id` link that still carries the identity of
///   a volume not attached here, and every orphan of
///   [`find_orphans`](brick_connectors::find_orphans) not in `baseline` (orphans that
///   existed before the run, by path).
pub fn check_host_view(
    port: &dyn brick_connectors::Host,
    host: &str,
    volumes: &[HostViewVolume],
    baseline: &BTreeSet<String>,
) -> Vec<Violation> {
    use brick_connectors::{HostFs, HostPath, Wwid};
    let fs = HostFs::of(port);
    let violation = |kind, volume: Option<&str>, detail: String| Violation {
        kind,
        host: host.to_owned(),
        volume: volume.map(str::to_owned),
        detail,
    };
    let path = |s: &str| HostPath::new(s).ok();
    // Every block device and the identity it carries; NVMe namespaces are volume paths of
    // their own (they have no by-path links).
    let mut identity_of: BTreeMap<String, String> = BTreeMap::new();
    let mut nvme_heads: Vec<(String, Option<String>)> = Vec::new();
    if let Some(dir) = path("/sys/block") {
        for dev in fs.read_dir(&dir).unwrap_or_default() {
            let attr = |rel: &str| {
                path(&format!("/sys/block/{dev}/{rel}"))
                    .and_then(|p| fs.read_attr(&p).ok().flatten())
            };
            // Hidden NVMe per-path nodes (`nvme0c1n1`) are not devices of their own.
            if attr("hidden").as_deref() == Some("1") {
                continue;
            }
            let nvme = dev.starts_with("nvme");
            let wwid = attr("device/wwid")
                .and_then(|w| Wwid::from_sysfs(&w).ok())
                .or_else(|| attr("dm/uuid").and_then(|u| Wwid::from_dm_uuid(&u).ok()))
                // An NVMe namespace carries its identity as the kernel prints it (`uuid.…`).
                .or_else(|| {
                    nvme.then(|| attr("wwid").and_then(|w| Wwid::new(&w).ok()))
                        .flatten()
                });
            if nvme {
                nvme_heads.push((
                    format!("/dev/{dev}"),
                    wwid.as_ref().map(|w| w.as_str().to_owned()),
                ));
            }
            if let Some(w) = wwid {
                identity_of.insert(dev, w.as_str().to_owned());
            }
        }
    }
    // by-path links and the identity of the device each leads to.
    let mut by_path: Vec<(String, Option<String>)> = Vec::new();
    if let Some(dir) = path("/dev/disk/by-path") {
        for name in fs.read_dir(&dir).unwrap_or_default() {
            let Some(link) = dir.join(&name).ok() else {
                continue;
            };
            let dev = fs.realpath(&link).ok().map(|p| p.file_name().to_owned());
            let wwid = dev.and_then(|d| identity_of.get(&d).cloned());
            by_path.push((link.as_str().to_owned(), wwid));
        }
    }
    let attached_ids: BTreeSet<&str> = volumes
        .iter()
        .filter(|v| v.paths.is_some())
        .filter_map(|v| v.wwid.as_deref())
        .collect();
    let mut out = Vec::new();
    for v in volumes {
        let name = v.name.as_str();
        match (&v.paths, &v.wwid) {
            (Some(Err(err)), _) => out.push(violation(
                PropertyKind::Truth,
                Some(name),
                format!("get_volume_paths failed: {err}"),
            )),
            (Some(Ok(found)), wwid) => {
                let reported: BTreeSet<String> = found
                    .paths
                    .iter()
                    .map(|p| p.path.as_str().to_owned())
                    .collect();
                if let Some(w) = wwid {
                    let expected: BTreeSet<String> = by_path
                        .iter()
                        .chain(&nvme_heads)
                        .filter(|(_, id)| id.as_deref() == Some(w.as_str()))
                        .map(|(l, _)| l.clone())
                        .collect();
                    if reported != expected {
                        out.push(violation(
                            PropertyKind::Truth,
                            Some(name),
                            format!(
                                "get_volume_paths reported {reported:?}, but the by-path links whose device carries {w} are {expected:?}"
                            ),
                        ));
                    }
                    for p in &found.paths {
                        if let Some(got) = &p.wwid
                            && got.as_str() != w
                        {
                            out.push(violation(
                                PropertyKind::CrossTalk,
                                Some(name),
                                format!(
                                    "{} has wwid {}, not the identity the array reports ({w})",
                                    p.path,
                                    got.as_str()
                                ),
                            ));
                        }
                    }
                }
            }
            (None, Some(w)) if !attached_ids.contains(w.as_str()) => {
                for (dev, id) in &identity_of {
                    if id == w {
                        out.push(violation(
                            PropertyKind::Leftover,
                            Some(name),
                            format!("/dev/{dev} still carries the identity {w} of volume {name}, which is not attached here"),
                        ));
                    }
                }
                let naa = w.get(1..).unwrap_or_default();
                for link in [
                    format!("/dev/disk/by-id/scsi-{w}"),
                    format!("/dev/disk/by-id/wwn-0x{naa}"),
                    format!("/dev/disk/by-id/dm-uuid-mpath-{w}"),
                ] {
                    if path(&link).is_some_and(|p| fs.is_link(&p)) {
                        out.push(violation(
                            PropertyKind::Leftover,
                            Some(name),
                            format!("{link} still names volume {name}, which is not attached here"),
                        ));
                    }
                }
            }
            (None, _) => {}
        }
    }
    for o in brick_connectors::find_orphans(port).orphans {
        if baseline.contains(o.path.as_str()) {
            continue;
        }
        out.push(violation(
            PropertyKind::Leftover,
            None,
            format!("orphan ({:?}) {}: {}", o.reason, o.path, o.detail),
        ));
    }
    out.sort();
    out.dedup();
    out
}
