//! What a step did to a host, in a form small enough to review as a snapshot: sessions,
//! block devices with their identities, `/dev/disk` and `/dev/mapper` links with their
//! targets, the path report of every attached volume and the orphan report. Not every sysfs
//! attribute: a reviewer reads these in `cargo insta review`.

use std::collections::{BTreeMap, BTreeSet};

use brick_connectors::{Host, HostFs, HostPath, find_orphans};
use serde::Serialize;

/// One host after one step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostSummary {
    /// iSCSI sessions: `sessionN <portal> <target> <state>`.
    pub sessions: Vec<String>,
    /// Block devices: `sda 8:0 wwid=... holders=[dm-0]`, `dm-0 253:0 name=... slaves=[...]`.
    pub block: Vec<String>,
    /// `/dev/disk/by-*` and `/dev/mapper` links: `<link> -> <target>`, `(dangling)` when the
    /// target does not exist.
    pub links: Vec<String>,
    /// `get_volume_paths` of every volume attached on the host: `<path> -> <device> (<wwid>)`.
    pub paths: BTreeMap<String, Vec<String>>,
    /// The orphan report: `<reason> <path>` (orphans present before the scenario excluded).
    pub orphans: Vec<String>,
    /// Fibre Channel HBAs (`hostH port_name=... port_state=...`) and remote ports
    /// (`rport-H:0-N port_name=... roles=... scsi_target_id=... port_state=...`); absent
    /// without FC.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fc: Vec<String>,
    /// NVMe controllers (`nvmeN <transport> <address> state=... nqn=...`) and subsystems
    /// (`nvme-subsysS nqn=... controllers=[...]`); absent without NVMe.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nvme: Vec<String>,
}

impl HostSummary {
    /// Whether the host holds no SCSI disk, NVMe namespace or controller, dm map, session or
    /// by-path link (FC HBAs and remote ports belong to the fabric, not to volumes).
    pub fn is_clean(&self) -> bool {
        self.sessions.is_empty()
            && self.nvme.is_empty()
            && self.block.iter().all(|b| !is_volume_device(b))
            && !self
                .links
                .iter()
                .any(|l| l.starts_with("/dev/disk/by-path/"))
    }

    /// The orphan reasons, sorted (with repeats).
    pub fn orphan_reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .orphans
            .iter()
            .map(|o| o.split(' ').next().unwrap_or_default().to_owned())
            .collect();
        out.sort();
        out
    }
}

fn is_volume_device(line: &str) -> bool {
    ["sd", "dm-", "nvme"].iter().any(|p| line.starts_with(p))
}

fn path(s: &str) -> Option<HostPath> {
    HostPath::new(s).ok()
}

/// Reads the summary of `host` (read-only, confined to its root). `baseline` lists orphan
/// paths to leave out.
pub fn summarize(host: &dyn Host, baseline: &BTreeSet<String>) -> HostSummary {
    let fs = HostFs::of(host);
    let attr = |p: &str| {
        path(p)
            .and_then(|p| fs.read_attr(&p).ok().flatten())
            .map(|s| s.trim().to_owned())
    };
    let list = |p: &str| {
        path(p)
            .and_then(|p| fs.read_dir(&p).ok())
            .unwrap_or_default()
    };
    let mut out = HostSummary::default();

    for s in list("/sys/class/iscsi_session") {
        let base = format!("/sys/class/iscsi_session/{s}");
        let num = s.trim_start_matches("session");
        let conn = format!("/sys/class/iscsi_connection/connection{num}:0");
        let portal = match (
            attr(&format!("{conn}/persistent_address")),
            attr(&format!("{conn}/persistent_port")),
        ) {
            (Some(a), Some(p)) => format!("{a}:{p}"),
            _ => "?".to_owned(),
        };
        out.sessions.push(format!(
            "{s} {portal} {} {}",
            attr(&format!("{base}/targetname")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/state")).unwrap_or_else(|| "?".into()),
        ));
    }

    for dev in list("/sys/block") {
        let base = format!("/sys/block/{dev}");
        let mut line = dev.clone();
        if let Some(d) = attr(&format!("{base}/dev")) {
            line.push_str(&format!(" {d}"));
        }
        if let Some(name) = attr(&format!("{base}/dm/name")) {
            line.push_str(&format!(" name={name}"));
        }
        if let Some(uuid) = attr(&format!("{base}/dm/uuid")) {
            line.push_str(&format!(" uuid={uuid}"));
        }
        let wwid = attr(&format!("{base}/device/wwid")).or_else(|| attr(&format!("{base}/wwid")));
        if let Some(w) = wwid {
            line.push_str(&format!(" wwid={w}"));
        }
        if let Some(nsid) = attr(&format!("{base}/nsid")) {
            line.push_str(&format!(" nsid={nsid}"));
        }
        if let Some(state) = attr(&format!("{base}/device/state")) {
            line.push_str(&format!(" state={state}"));
        }
        if attr(&format!("{base}/hidden")).as_deref() == Some("1") {
            line.push_str(" hidden");
        }
        for rel in ["holders", "slaves"] {
            let mut items = list(&format!("{base}/{rel}"));
            if !items.is_empty() {
                items.sort();
                line.push_str(&format!(" {rel}=[{}]", items.join(",")));
            }
        }
        out.block.push(line);
    }
    out.block.sort();

    for dir in [
        "/dev/disk/by-path",
        "/dev/disk/by-id",
        "/dev/disk/by-uuid",
        "/dev/mapper",
    ] {
        let Some(d) = path(dir) else { continue };
        for name in fs.read_dir(&d).unwrap_or_default() {
            let Ok(link) = d.join(&name) else { continue };
            let Ok(Some(target)) = fs.read_link(&link) else {
                continue;
            };
            let dangling = if fs.realpath(&link).is_ok_and(|p| fs.exists(&p)) {
                ""
            } else {
                " (dangling)"
            };
            out.links.push(format!("{link} -> {target}{dangling}"));
        }
    }
    out.links.sort();

    for h in list("/sys/class/fc_host") {
        let base = format!("/sys/class/fc_host/{h}");
        out.fc.push(format!(
            "{h} port_name={} port_state={}",
            attr(&format!("{base}/port_name")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/port_state")).unwrap_or_else(|| "?".into()),
        ));
    }
    for r in list("/sys/class/fc_remote_ports") {
        let base = format!("/sys/class/fc_remote_ports/{r}");
        out.fc.push(format!(
            "{r} port_name={} roles={} scsi_target_id={} port_state={}",
            attr(&format!("{base}/port_name")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/roles")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/scsi_target_id")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/port_state")).unwrap_or_else(|| "?".into()),
        ));
    }
    out.fc.sort();

    for c in list("/sys/class/nvme") {
        let base = format!("/sys/class/nvme/{c}");
        out.nvme.push(format!(
            "{c} {} {} state={} nqn={}",
            attr(&format!("{base}/transport")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/address")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/state")).unwrap_or_else(|| "?".into()),
            attr(&format!("{base}/subsysnqn")).unwrap_or_else(|| "?".into()),
        ));
    }
    for sub in list("/sys/class/nvme-subsystem") {
        let base = format!("/sys/class/nvme-subsystem/{sub}");
        let mut ctrls: Vec<String> = list(&base)
            .into_iter()
            .filter(|n| {
                n.strip_prefix("nvme")
                    .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
            })
            .collect();
        ctrls.sort();
        out.nvme.push(format!(
            "{sub} nqn={} controllers=[{}]",
            attr(&format!("{base}/subsysnqn")).unwrap_or_else(|| "?".into()),
            ctrls.join(",")
        ));
    }
    out.nvme.sort();

    for o in find_orphans(host).orphans {
        if baseline.contains(o.path.as_str()) {
            continue;
        }
        let reason = serde_json::to_value(o.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", o.reason));
        out.orphans.push(format!("{reason} {}", o.path));
    }
    out.orphans.sort();
    out
}

/// The orphan paths of `host` now (the baseline a run subtracts).
pub fn orphan_paths(host: &dyn Host) -> BTreeSet<String> {
    find_orphans(host)
        .orphans
        .into_iter()
        .map(|o| o.path.as_str().to_owned())
        .collect()
}

/// One step's snapshot: what ran, what it returned, what broke, and every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepSnapshot {
    /// `step 3: detach A from compute-1`.
    pub step: String,
    /// What the step returned (`ok`, a device, paths, or the error).
    pub result: String,
    /// The broken properties (`[kind] volume: detail`).
    pub violations: Vec<String>,
    /// Every host's summary, by name.
    pub hosts: BTreeMap<String, HostSummary>,
}
