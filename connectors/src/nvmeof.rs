//! The NVMe-oF connector: os-brick's `NVMeOFConnector` (single, non-replicated volumes), run
//! sequentially on the [`Host`] port.
//!
//! What it reads (real 6.1 layout, see `testdata/real-kernel/nvme-*.walk`):
//! - controllers `/sys/class/nvme-fabrics/ctl/nvmeN/{subsysnqn,transport,address,hostnqn,
//!   state,reconnect_delay}`; `address` is parsed as comma-separated `key=value` pairs, so
//!   `src_addr=` (newer kernels) and any other extra key are tolerated;
//! - namespaces *under the controller's own directory*: `nvmeNnM` without native multipath,
//!   the hidden per-path node `nvmeScNnM` with it (`S` = subsystem instance), whose head is
//!   `nvmeSnM` (`/dev/nvmeSnM`); per node `uuid`, `nguid`, `nsid`; the head's `wwid`;
//! - `/sys/module/nvme_core/parameters/multipath` (`Y` = native multipath), `/etc/nvme/hostnqn`.
//!
//! Commands: `nvme connect -a A -s P -t T -n NQN -Q 128 -l -1 [-q HOSTNQN]` (exit 70, 114
//! (`EALREADY`) or 1 with "already connected" in the output mean another process connected
//! first), `nvme ns-rescan /dev/nvmeN` on live controllers, `blockdev --flushbufs`,
//! `nvme disconnect -d /dev/nvmeN`.
//!
//! Deliberate differences from os-brick:
//! - a controller is assigned to the first *unassigned* matching portal (os-brick can assign
//!   two controllers to one portal and overwrite the first);
//! - the portal's transport address is compared case-insensitively and the service id as a
//!   number; a controller without `hostnqn`, or a host without a known host NQN, matches any;
//! - the "devices_on_start" fallback (no uuid, nguid or nsid in the properties) compares
//!   *head* devices found under our controllers, and rejects any ambiguity (os-brick accepts
//!   several new devices when their uuids agree, and compares a head's subsystem number with
//!   controller names, which never matches under native multipath);
//! - `disconnect_volume` finds the controllers from the properties even without
//!   `device_info`/`device_path` (os-brick §9.4 returns early and leaves them connected);
//! - `get_volume_paths` works on the parsed Cinder properties (§9.3) and reports each head's
//!   `wwid`; with an identity in the properties it reports what sysfs says, never a stale
//!   `device_path`;
//! - a failing `nvme ns-rescan` is logged, not fatal;
//! - replicated (md RAID) volumes are refused with [`ConnectorError::UnsupportedFeature`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::connector::{
    Connector, ConnectorConfig, DeviceInfo, Diagnostic, DisconnectOptions, VolumePath, VolumePaths,
};
use crate::error::{ConnectorError, ErrorChain};
use crate::fs::HostFs;
use crate::host::{Cmd, CmdOutput, Host, HostPath};
use crate::ids::{Nguid, NvmeUuid, Wwid};
use crate::props::{ConnectionProperties, NvmePortal, NvmeofLayout, NvmeofTarget, Protocol};
use crate::scsi::Scsi;

/// The NVMe-oF controllers class directory.
pub const NVME_CTRL_CLASS: &str = "/sys/class/nvme-fabrics/ctl";
/// `Y` when the kernel does native NVMe multipath.
pub const NVME_MULTIPATH_PARAM: &str = "/sys/module/nvme_core/parameters/multipath";
/// nvme-cli's host NQN file.
pub const HOST_NQN_FILE: &str = "/etc/nvme/hostnqn";
/// The message of the error returned for replicated volumes.
pub const REPLICATED_UNSUPPORTED: &str =
    "replicated NVMe-oF volumes (md RAID) are not supported yet";

/// `nvme connect` exit status of older nvme-cli for "already connected".
const EXIT_ALREADY_OLD: i32 = 70;
/// `EALREADY`, used by newer nvme-cli.
const EXIT_EALREADY: i32 = 114;
/// Seconds added to the largest `reconnect_delay` when waiting for `connecting` controllers.
const TIME_TO_CONNECT: u64 = 10;
/// The kernel's default `reconnect_delay`.
const DEFAULT_RECONNECT_DELAY: u64 = 10;
/// Attempts of the whole target connection on "device not found" (os-brick retry, 2 s doubling).
const CONNECT_ATTEMPTS: u32 = 3;
/// Attempts of the device lookup after connecting (os-brick `find_device`, 1 s doubling).
const FIND_DEVICE_ATTEMPTS: u32 = 5;

/// One NVMe-oF controller as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeController {
    /// `nvmeN`.
    pub name: String,
    /// `subsysnqn`.
    pub subsysnqn: Option<String>,
    /// `transport` (`tcp`, `rdma`, `fc`, `loop`).
    pub transport: Option<String>,
    /// `address`, parsed: `traddr`, `trsvcid`, and possibly `src_addr`, `host_traddr`, ...
    pub address: BTreeMap<String, String>,
    /// `hostnqn` (absent on some kernels).
    pub hostnqn: Option<String>,
    /// `state` (`live`, `connecting`, `resetting`, `deleting`, ...).
    pub state: Option<String>,
    /// `reconnect_delay` in seconds.
    pub reconnect_delay: Option<u64>,
}

impl NvmeController {
    /// Whether the state is `live`.
    pub fn is_live(&self) -> bool {
        self.state.as_deref() == Some("live")
    }

    /// `/dev/nvmeN`.
    pub fn dev_path(&self) -> Result<HostPath, ConnectorError> {
        Ok(HostPath::new("/dev")?.join(&self.name)?)
    }

    fn matches(&self, portal: &NvmePortal, nqn: &str, host_nqn: Option<&str>) -> bool {
        self.subsysnqn.as_deref() == Some(nqn)
            && self.transport.as_deref() == Some(portal.transport.as_str())
            && self
                .address
                .get("traddr")
                .is_some_and(|a| a.eq_ignore_ascii_case(&portal.address))
            && self
                .address
                .get("trsvcid")
                .and_then(|p| p.parse::<u16>().ok())
                == Some(portal.port)
            && match (self.hostnqn.as_deref(), host_nqn) {
                (Some(theirs), Some(ours)) => theirs == ours,
                _ => true,
            }
    }
}

/// One namespace node under a controller directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeNamespace {
    /// The node name: `nvme1n2`, or the hidden per-path node `nvme0c1n2`.
    pub node: String,
    /// The block device that carries I/O: the node itself, or the head `nvme0n2`.
    pub head: String,
    /// `uuid`.
    pub uuid: Option<NvmeUuid>,
    /// `nguid` (the kernel shows it only when it is not zero).
    pub nguid: Option<Nguid>,
    /// `nsid`.
    pub nsid: Option<u32>,
}

/// Parses `key=value,key=value` (the controller's `address`); items without `=` are ignored.
pub fn parse_address(text: &str) -> BTreeMap<String, String> {
    text.trim()
        .split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            let k = k.trim();
            (!k.is_empty()).then(|| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `name` is a controller name `nvme<N>`.
fn is_ctrl_name(name: &str) -> bool {
    name.strip_prefix("nvme").is_some_and(all_digits)
}

/// Parses a namespace node name `nvme<X>n<Z>` or `nvme<X>c<Y>n<Z>` into `(X, Y, Z)`.
pub fn parse_ns_name(name: &str) -> Option<(u32, Option<u32>, u32)> {
    let rest = name.strip_prefix("nvme")?;
    let (left, nsid) = rest.rsplit_once('n')?;
    if !all_digits(nsid) {
        return None;
    }
    let nsid = nsid.parse().ok()?;
    match left.split_once('c') {
        Some((x, y)) if all_digits(x) && all_digits(y) => {
            Some((x.parse().ok()?, Some(y.parse().ok()?), nsid))
        }
        None if all_digits(left) => Some((left.parse().ok()?, None, nsid)),
        _ => None,
    }
}

/// The head block device of a namespace node: `nvme0c1n10` → `nvme0n10`, `nvme1n2` → itself.
pub fn nvme_head_name(node: &str) -> Option<String> {
    let (x, _, z) = parse_ns_name(node)?;
    Some(format!("nvme{x}n{z}"))
}

/// How the volume's namespace is recognised, in os-brick's order of preference.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    Uuid(NvmeUuid),
    Nguid(Nguid),
    Nsid(u32),
    /// None of the three: the "devices_on_start" fallback.
    Unknown,
}

impl Identity {
    fn of(t: &NvmeofTarget) -> Self {
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::NvmeIdentityByNsid)
            && let Some(n) = t.ns_id
        {
            return Identity::Nsid(n);
        }
        if let Some(u) = &t.vol_uuid {
            Identity::Uuid(u.clone())
        } else if let Some(n) = &t.volume_nguid {
            Identity::Nguid(n.clone())
        } else if let Some(n) = t.ns_id {
            Identity::Nsid(n)
        } else {
            Identity::Unknown
        }
    }

    fn matches(&self, ns: &NvmeNamespace) -> bool {
        match self {
            Identity::Uuid(u) => ns.uuid.as_ref() == Some(u),
            Identity::Nguid(n) => ns.nguid.as_ref() == Some(n),
            Identity::Nsid(n) => ns.nsid == Some(*n),
            Identity::Unknown => false,
        }
    }
}

/// The NVMe-oF connector. Built by [`crate::connector_for`] or [`NvmeofConnector::new`].
pub struct NvmeofConnector<'h> {
    host: &'h dyn Host,
    config: ConnectorConfig,
}

impl std::fmt::Debug for NvmeofConnector<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmeofConnector")
            .field("root", &self.host.root())
            .field("config", &self.config)
            .finish()
    }
}

/// How an `nvme connect` ended.
#[derive(Debug, PartialEq, Eq)]
enum ConnectOutcome {
    Connected,
    AlreadyConnected,
    Failed,
}

/// Classifies `nvme connect` output: 0 ok; 70, 114, or 1 with "already connected" in either
/// stream mean another process connected the same controller first.
fn classify_connect(out: &CmdOutput) -> ConnectOutcome {
    match out.status {
        0 => ConnectOutcome::Connected,
        EXIT_ALREADY_OLD | EXIT_EALREADY => ConnectOutcome::AlreadyConnected,
        1 if out.stdout.contains("already connected")
            || out.stderr.contains("already connected") =>
        {
            ConnectOutcome::AlreadyConnected
        }
        _ => ConnectOutcome::Failed,
    }
}

impl<'h> NvmeofConnector<'h> {
    /// An NVMe-oF connector acting on `host`.
    pub fn new(host: &'h dyn Host, config: ConnectorConfig) -> Self {
        Self { host, config }
    }

    fn fs(&self) -> HostFs<'h> {
        HostFs::of(self.host)
    }

    fn target<'p>(
        &self,
        props: &'p ConnectionProperties,
    ) -> Result<&'p NvmeofTarget, ConnectorError> {
        match props {
            ConnectionProperties::Nvmeof(p) => match &p.layout {
                NvmeofLayout::Single(t) => Ok(t),
                NvmeofLayout::Replicated(_) => Err(ConnectorError::UnsupportedFeature {
                    feature: REPLICATED_UNSUPPORTED.to_owned(),
                }),
            },
            other => Err(ConnectorError::WrongProtocol {
                connector: Protocol::Nvmeof.to_string(),
                given: other.protocol().to_string(),
            }),
        }
    }

    /// Whether the kernel does native NVMe multipath (`/sys/module/nvme_core/parameters/multipath` is `Y`).
    pub fn native_multipath(&self) -> bool {
        HostPath::new(NVME_MULTIPATH_PARAM)
            .ok()
            .and_then(|p| self.fs().read_attr(&p).ok().flatten())
            .is_some_and(|v| v == "Y")
    }

    /// The host NQN: the properties' `host_nqn`, else `/etc/nvme/hostnqn`.
    fn host_nqn(&self, t: &NvmeofTarget) -> Option<String> {
        if let Some(n) = &t.host_nqn {
            return Some(n.as_str().to_owned());
        }
        HostPath::new(HOST_NQN_FILE)
            .ok()
            .and_then(|p| self.fs().read_attr(&p).ok().flatten())
            .filter(|s| !s.is_empty())
    }

    // ------------------------------------------------------------------ sysfs

    /// Every NVMe-oF controller, sorted by number. Unreadable attributes read as absent.
    pub fn controllers(&self) -> Vec<NvmeController> {
        let fs = self.fs();
        let Ok(class) = HostPath::new(NVME_CTRL_CLASS) else {
            return Vec::new();
        };
        let mut out: Vec<(u32, NvmeController)> = Vec::new();
        for name in fs.read_dir(&class).unwrap_or_default() {
            if !is_ctrl_name(&name) {
                continue;
            }
            let Ok(dir) = class.join(&name) else { continue };
            let attr = |a: &str| -> Option<String> {
                let path = dir.join(a).ok()?;
                match fs.read_attr(&path) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(path = %path, error = %e, "unreadable controller attribute");
                        None
                    }
                }
            };
            let num = name
                .strip_prefix("nvme")
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(u32::MAX);
            out.push((
                num,
                NvmeController {
                    subsysnqn: attr("subsysnqn"),
                    transport: attr("transport"),
                    address: attr("address")
                        .map(|a| parse_address(&a))
                        .unwrap_or_default(),
                    hostnqn: attr("hostnqn").filter(|s| !s.is_empty()),
                    state: attr("state"),
                    reconnect_delay: attr("reconnect_delay").and_then(|d| d.parse().ok()),
                    name,
                },
            ));
        }
        out.sort_by_key(|(n, _)| *n);
        out.into_iter().map(|(_, c)| c).collect()
    }

    /// The namespace nodes under controller `ctrl` (its own directory only).
    pub fn namespaces(&self, ctrl: &str) -> Vec<NvmeNamespace> {
        let fs = self.fs();
        let Ok(dir) = HostPath::new(NVME_CTRL_CLASS).and_then(|c| c.join(ctrl)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for node in fs.read_dir(&dir).unwrap_or_default() {
            let Some(head) = nvme_head_name(&node) else {
                continue;
            };
            let Ok(ndir) = dir.join(&node) else { continue };
            let attr =
                |a: &str| -> Option<String> { fs.read_attr(&ndir.join(a).ok()?).ok().flatten() };
            out.push(NvmeNamespace {
                uuid: attr("uuid").and_then(|u| NvmeUuid::new(&u).ok()),
                nguid: attr("nguid").and_then(|u| Nguid::new(&u).ok()),
                nsid: attr("nsid").and_then(|n| n.parse().ok()),
                head,
                node,
            });
        }
        out
    }

    /// The head names of `/dev/nvme*n*` block devices (no partitions, no controllers).
    fn dev_heads(&self) -> BTreeSet<String> {
        let Ok(dev) = HostPath::new("/dev") else {
            return BTreeSet::new();
        };
        self.fs()
            .read_dir(&dev)
            .unwrap_or_default()
            .into_iter()
            .filter(|n| parse_ns_name(n).is_some_and(|(_, c, _)| c.is_none()))
            .collect()
    }

    /// os-brick `set_portals_controllers`: for each portal of `t`, the controller that
    /// matches (subsystem NQN, transport, traddr, trsvcid, host NQN). Each controller goes to
    /// at most one portal; a live controller wins over a non-live duplicate.
    fn assign(&self, t: &NvmeofTarget, host_nqn: Option<&str>) -> Vec<Option<NvmeController>> {
        let mut assigned: Vec<Option<NvmeController>> = vec![None; t.portals.len()];
        let nqn = t.target_nqn.as_str();
        let mut warned = false;
        for c in self.controllers() {
            if c.subsysnqn.as_deref() != Some(nqn) {
                continue;
            }
            if c.hostnqn.is_none() && !warned {
                tracing::warn!(
                    controller = c.name,
                    "controller shows no hostnqn; it may be matched incorrectly"
                );
                warned = true;
            }
            let mut slot = None;
            for (i, p) in t.portals.iter().enumerate() {
                if !c.matches(p, nqn, host_nqn) {
                    continue;
                }
                match assigned.get(i) {
                    Some(None) => {
                        slot = Some(i);
                        break;
                    }
                    Some(Some(prev)) if !prev.is_live() && c.is_live() && slot.is_none() => {
                        slot = Some(i);
                    }
                    _ => {}
                }
            }
            match slot.and_then(|i| assigned.get_mut(i)) {
                Some(s) => *s = Some(c),
                None => {
                    tracing::debug!(controller = c.name, "controller is not one of the portals")
                }
            }
        }
        assigned
    }

    /// The head device of the volume on controller `ctrl`, by identity.
    fn device_on(&self, ctrl: &NvmeController, ident: &Identity) -> Option<String> {
        self.namespaces(&ctrl.name)
            .into_iter()
            .find(|ns| ident.matches(ns))
            .map(|ns| ns.head)
    }

    /// os-brick `get_device_path_by_initial_devices`, without its ambiguity: the one head
    /// device under our controllers that did not exist when the attach started.
    fn device_by_initial_devices(
        &self,
        ctrls: &[&NvmeController],
        on_start: &BTreeSet<String>,
    ) -> Option<String> {
        let new: BTreeSet<String> = ctrls
            .iter()
            .flat_map(|c| self.namespaces(&c.name))
            .map(|ns| ns.head)
            .filter(|h| !on_start.contains(h))
            .collect();
        tracing::warn!(new = ?new, "no uuid, nguid or nsid: using the unreliable devices_on_start mechanism");
        if new.len() > 1 {
            tracing::error!(devices = ?new, "several new namespaces appeared; refusing to guess");
            return None;
        }
        new.into_iter().next()
    }

    fn head_exists(&self, head: &str) -> bool {
        HostPath::new("/dev")
            .and_then(|d| d.join(head))
            .is_ok_and(|p| self.fs().exists(&p))
    }

    // ------------------------------------------------------------------ connect

    fn nvme_connect(&self, t: &NvmeofTarget, p: &NvmePortal) -> ConnectOutcome {
        let mut cmd = Cmd::new("nvme").args([
            "connect".to_owned(),
            "-a".to_owned(),
            p.address.clone(),
            "-s".to_owned(),
            p.port.to_string(),
            "-t".to_owned(),
            p.transport.as_str().to_owned(),
            "-n".to_owned(),
            t.target_nqn.as_str().to_owned(),
            "-Q".to_owned(),
            "128".to_owned(),
            "-l".to_owned(),
            "-1".to_owned(),
        ]);
        if let Some(h) = &t.host_nqn {
            cmd = cmd.args(["-q", h.as_str()]);
        }
        match self.host.run(&cmd) {
            Ok(out) => {
                let outcome = classify_connect(&out);
                match outcome {
                    ConnectOutcome::Connected => tracing::info!(%cmd, "connected"),
                    ConnectOutcome::AlreadyConnected => tracing::warn!(%cmd, status = out.status,
                        "race with another process connecting the same controller; check the system configuration"),
                    ConnectOutcome::Failed => tracing::error!(%cmd, status = out.status,
                        stdout = out.stdout.trim(), stderr = out.stderr.trim(), "could not connect"),
                }
                outcome
            }
            Err(e) => {
                tracing::error!(%cmd, error = %e, "could not run nvme connect");
                ConnectOutcome::Failed
            }
        }
    }

    fn rescan(&self, ctrl: &NvmeController) {
        let Ok(dev) = ctrl.dev_path() else { return };
        let cmd = Cmd::new("nvme").args(["ns-rescan", dev.as_str()]);
        match self.host.run(&cmd) {
            Ok(out) if out.success() => {}
            Ok(out) => {
                tracing::warn!(%cmd, status = out.status, stderr = out.stderr.trim(), "ns-rescan failed")
            }
            Err(e) => tracing::warn!(%cmd, error = %e, "ns-rescan could not run"),
        }
    }

    fn describe(t: &NvmeofTarget) -> String {
        let portals: Vec<String> = t
            .portals
            .iter()
            .map(|p| format!("{} {}:{}", p.transport.as_str(), p.address, p.port))
            .collect();
        format!("{} via {}", t.target_nqn, portals.join(", "))
    }

    /// os-brick `_connect_target` (one attempt).
    fn connect_target(
        &self,
        t: &NvmeofTarget,
        on_start: &BTreeSet<String>,
    ) -> Result<String, ConnectorError> {
        let host_nqn = self.host_nqn(t);
        let hn = host_nqn.as_deref();
        let ctrls = self.assign(t, hn);
        let mut connected = false;
        let mut missing = Vec::new();
        let mut reconnecting = Vec::new();
        for (i, c) in ctrls.iter().enumerate() {
            match c {
                None => missing.push(i),
                Some(c) if c.is_live() => {
                    connected = true;
                    #[cfg(feature = "mutants")]
                    if crate::mutants::active(crate::mutants::Mutant::NvmeNoRescanOnAttach) {
                        continue;
                    }
                    self.rescan(c);
                }
                Some(c) if c.state.as_deref() == Some("connecting") => {
                    tracing::debug!(controller = c.name, "controller is reconnecting");
                    reconnecting.push(i);
                }
                Some(c) => {
                    tracing::debug!(controller = c.name, state = ?c.state, "ignoring controller")
                }
            }
        }
        let do_multipath = self.config.use_multipath && self.native_multipath();
        if do_multipath || !connected {
            for i in missing {
                let Some(p) = t.portals.get(i) else { continue };
                match self.nvme_connect(t, p) {
                    ConnectOutcome::Connected => connected = true,
                    ConnectOutcome::AlreadyConnected => {
                        match self.assign(t, hn).get(i).cloned().flatten() {
                            Some(c) if c.is_live() => connected = true,
                            Some(c) if c.state.as_deref() == Some("connecting") => {
                                reconnecting.push(i);
                            }
                            other => {
                                tracing::error!(portal = i, state = ?other.and_then(|c| c.state),
                                "ignoring portal in an unknown state")
                            }
                        }
                    }
                    ConnectOutcome::Failed => continue,
                }
                if !do_multipath {
                    break;
                }
            }
        }
        if !connected && !reconnecting.is_empty() {
            let max_delay = reconnecting
                .iter()
                .filter_map(|&i| ctrls.get(i).cloned().flatten())
                .map(|c| c.reconnect_delay.unwrap_or(DEFAULT_RECONNECT_DELAY))
                .max()
                .unwrap_or(DEFAULT_RECONNECT_DELAY);
            let delay = Duration::from_secs(TIME_TO_CONNECT.saturating_add(max_delay));
            tracing::debug!(?delay, "waiting for controllers to reconnect");
            let deadline = self.host.now() + delay;
            let mut states = Vec::new();
            while self.host.now() < deadline {
                self.host.sleep(Duration::from_secs(1));
                let now = self.assign(t, hn);
                states = reconnecting
                    .iter()
                    .filter_map(|&i| now.get(i).cloned().flatten())
                    .map(|c| format!("{}={}", c.name, c.state.unwrap_or_else(|| "?".to_owned())))
                    .collect();
                if reconnecting.iter().any(|&i| {
                    now.get(i)
                        .is_some_and(|c| c.as_ref().is_some_and(NvmeController::is_live))
                }) {
                    connected = true;
                    break;
                }
            }
            if !connected {
                return Err(ConnectorError::NvmeControllerNotLive {
                    target: Self::describe(t),
                    waited: delay,
                    states: states.join(", "),
                });
            }
        }
        if !connected {
            return Err(ConnectorError::VolumeDeviceNotFound {
                what: Self::describe(t),
            });
        }
        let ident = Identity::of(t);
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=FIND_DEVICE_ATTEMPTS {
            let ctrls = self.assign(t, hn);
            let live: Vec<&NvmeController> =
                ctrls.iter().flatten().filter(|c| c.is_live()).collect();
            #[cfg(feature = "mutants")]
            let live: Vec<&NvmeController> =
                if crate::mutants::active(crate::mutants::Mutant::NvmeDeviceFromAnyController) {
                    ctrls.iter().flatten().collect()
                } else {
                    live
                };
            let found = if ident == Identity::Unknown {
                self.device_by_initial_devices(&live, on_start)
            } else {
                live.iter().find_map(|c| self.device_on(c, &ident))
            };
            if let Some(head) = found.filter(|h| self.head_exists(h)) {
                return Ok(head);
            }
            if attempt < FIND_DEVICE_ATTEMPTS {
                self.host.sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
        Err(ConnectorError::VolumeDeviceNotFound {
            what: format!("namespace {ident:?} of {}", Self::describe(t)),
        })
    }

    fn connect(&self, t: &NvmeofTarget) -> Result<HostPath, ConnectorError> {
        let on_start = if Identity::of(t) == Identity::Unknown {
            self.dev_heads()
        } else {
            BTreeSet::new()
        };
        let mut wait = Duration::from_secs(2);
        let mut attempt = 1;
        loop {
            match self.connect_target(t, &on_start) {
                Ok(head) => return Ok(HostPath::new("/dev")?.join(&head)?),
                Err(
                    e @ (ConnectorError::VolumeDeviceNotFound { .. }
                    | ConnectorError::NvmeControllerNotLive { .. }),
                ) if attempt < CONNECT_ATTEMPTS => {
                    tracing::info!(attempt, error = %e, "retrying the NVMe-oF connection");
                    self.host.sleep(wait);
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    // ------------------------------------------------------------------ disconnect

    /// os-brick `can_disconnect`: no namespace under the controller, or exactly one and it
    /// is this volume's (by identity, or the device that was flushed when there is none).
    fn can_disconnect(
        &self,
        ctrl: &NvmeController,
        ident: &Identity,
        ours: &BTreeSet<String>,
    ) -> bool {
        let nss = self.namespaces(&ctrl.name);
        match nss.as_slice() {
            [] => true,
            [only] => {
                let mine = if *ident == Identity::Unknown {
                    ours.contains(&only.head)
                } else {
                    ident.matches(only)
                };
                tracing::debug!(
                    controller = ctrl.name,
                    namespace = only.node,
                    mine,
                    "one namespace left"
                );
                mine
            }
            more => {
                #[cfg(feature = "mutants")]
                if crate::mutants::active(crate::mutants::Mutant::NvmeDisconnectWithOthers) {
                    return true;
                }
                tracing::debug!(
                    controller = ctrl.name,
                    n = more.len(),
                    "other namespaces remain; keeping the controller"
                );
                false
            }
        }
    }

    /// The head devices of the volume on the portals' present controllers, by identity.
    fn identity_devices(&self, t: &NvmeofTarget) -> BTreeSet<String> {
        let ident = Identity::of(t);
        if ident == Identity::Unknown {
            return BTreeSet::new();
        }
        let host_nqn = self.host_nqn(t);
        self.assign(t, host_nqn.as_deref())
            .iter()
            .flatten()
            .filter(|c| c.state.is_some())
            .filter_map(|c| self.device_on(c, &ident))
            .collect()
    }

    fn disconnect(
        &self,
        t: &NvmeofTarget,
        device_path: Option<&HostPath>,
        device_info: Option<&DeviceInfo>,
        opts: DisconnectOptions,
    ) -> Result<(), ConnectorError> {
        let force = opts.force;
        #[cfg(feature = "mutants")]
        if crate::mutants::active(crate::mutants::Mutant::NvmeDetachNeedsDeviceInfo)
            && device_info.is_none()
            && device_path.is_none()
        {
            tracing::warn!("no device path: assuming the volume is not there");
            return Ok(());
        }
        let mut chain = ErrorChain::new();
        let mut heads = self.identity_devices(t);
        for p in device_info.map(|d| &d.path).into_iter().chain(device_path) {
            // A udev link (`/dev/disk/by-id/nvme-uuid.*`) counts as the device it leads to.
            let real = self.fs().realpath(p).unwrap_or_else(|_| p.clone());
            match real.as_str().strip_prefix("/dev/") {
                Some(name) if parse_ns_name(name).is_some_and(|(_, c, _)| c.is_none()) => {
                    if !heads.contains(name) && !heads.is_empty() {
                        tracing::warn!(path = %p, found = ?heads,
                            "the given device path is not the namespace found by identity");
                    }
                    heads.insert(name.to_owned());
                }
                _ => tracing::warn!(path = %p, "not an NVMe namespace device; not flushed"),
            }
        }
        let scsi = Scsi::new(self.host);
        #[cfg(feature = "mutants")]
        let no_flush = crate::mutants::active(crate::mutants::Mutant::NvmeNoFlush);
        #[cfg(not(feature = "mutants"))]
        let no_flush = false;
        for head in heads.iter().filter(|_| !no_flush) {
            if !self.head_exists(head) {
                tracing::warn!(device = head, "device is not there; not flushed");
                continue;
            }
            chain.step(force, &format!("flushing /dev/{head}"), || {
                scsi.flush_device_io(head)
            })?;
        }
        let ident = Identity::of(t);
        let host_nqn = self.host_nqn(t);
        for ctrl in self.assign(t, host_nqn.as_deref()).into_iter().flatten() {
            if !self.can_disconnect(&ctrl, &ident, &heads) {
                continue;
            }
            #[cfg(feature = "mutants")]
            if crate::mutants::active(crate::mutants::Mutant::NvmeNeverDisconnect) {
                continue;
            }
            let dev = ctrl.dev_path()?;
            let cmd = Cmd::new("nvme").args(["disconnect", "-d", dev.as_str()]);
            tracing::info!(controller = ctrl.name, "disconnecting controller");
            // Failures to disconnect a controller never stop the others (os-brick).
            chain.step(true, &format!("nvme disconnect -d {dev}"), || {
                crate::iscsiadm::run_checked(self.host, &cmd, &[0]).map(|_| ())
            })?;
        }
        chain.finish(opts.ignore_errors, &format!("{heads:?}"))
    }

    fn volume_paths(&self, t: &NvmeofTarget, device_path: Option<&HostPath>) -> VolumePaths {
        let fs = self.fs();
        let mut res = VolumePaths::default();
        let mut heads: Vec<String> = self.identity_devices(t).into_iter().collect();
        if Identity::of(t) == Identity::Unknown {
            if let Some(p) = device_path {
                res.diagnostics.push(Diagnostic::at(
                    p,
                    "no uuid, nguid or nsid in the properties: reporting device_path as given",
                ));
                if let Some(name) = p
                    .as_str()
                    .strip_prefix("/dev/")
                    .filter(|n| !n.contains('/'))
                {
                    heads.push(name.to_owned());
                }
            }
        } else if let Some(p) = device_path
            && !heads.iter().any(|h| p.as_str() == format!("/dev/{h}"))
        {
            res.diagnostics.push(Diagnostic::at(
                p,
                "device_path is not the namespace found by identity; not reported",
            ));
        }
        for head in heads {
            let Ok(path) = HostPath::new("/dev").and_then(|d| d.join(&head)) else {
                continue;
            };
            if !fs.exists(&path) {
                res.diagnostics.push(Diagnostic::at(
                    &path,
                    "namespace present in sysfs but its device node is missing",
                ));
                continue;
            }
            let device = fs.realpath(&path).unwrap_or_else(|_| path.clone());
            let wwid = match self.namespace_wwid(device.file_name()) {
                Ok(w) => Some(w),
                Err(message) => {
                    res.diagnostics.push(Diagnostic::at(&path, message));
                    None
                }
            };
            res.paths.push(VolumePath {
                path,
                device: Some(device),
                wwid,
            });
        }
        res
    }

    /// The identity of a namespace head: its `wwid` attribute as the kernel prints it
    /// (`uuid.<uuid>`, `eui.<hex>` or `nvme.<vid>-<serial>-<model>-<nsid>`), else
    /// `uuid.<uuid>` built from its `uuid` attribute.
    pub fn namespace_wwid(&self, head: &str) -> Result<Wwid, String> {
        let fs = self.fs();
        let dir = HostPath::new("/sys/class/block")
            .and_then(|b| b.join(head))
            .map_err(|e| e.to_string())?;
        let read = |a: &str| -> Result<Option<String>, String> {
            let p = dir.join(a).map_err(|e| e.to_string())?;
            fs.read_attr(&p).map_err(|e| e.to_string())
        };
        if let Some(w) = read("wwid")?.filter(|w| !w.is_empty()) {
            return Wwid::new(&w).map_err(|e| e.to_string());
        }
        if let Some(u) = read("uuid")? {
            let u = NvmeUuid::new(&u).map_err(|e| e.to_string())?;
            return Wwid::new(&format!("uuid.{u}")).map_err(|e| e.to_string());
        }
        Err(format!("no wwid or uuid for {head} in sysfs"))
    }
}

impl Connector for NvmeofConnector<'_> {
    fn protocol(&self) -> Protocol {
        Protocol::Nvmeof
    }

    fn connect_volume(&self, props: &ConnectionProperties) -> Result<DeviceInfo, ConnectorError> {
        let t = self.target(props)?;
        if self.config.use_multipath && !self.native_multipath() {
            if self.config.enforce_multipath {
                return Err(ConnectorError::MultipathRequired {
                    reason: format!("{NVME_MULTIPATH_PARAM} is not Y"),
                });
            }
            tracing::warn!("multipath requested but native NVMe multipath is off");
        }
        match self.connect(t) {
            Ok(path) => {
                tracing::info!(%path, "NVMe-oF volume connected");
                Ok(DeviceInfo {
                    kind: "block".to_owned(),
                    path,
                    scsi_wwn: None,
                    multipath_id: None,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "connect failed; disconnecting unused controllers");
                let ident = Identity::of(t);
                let host_nqn = self.host_nqn(t);
                for ctrl in self.assign(t, host_nqn.as_deref()).into_iter().flatten() {
                    if self.can_disconnect(&ctrl, &ident, &BTreeSet::new())
                        && let Ok(dev) = ctrl.dev_path()
                    {
                        let cmd = Cmd::new("nvme").args(["disconnect", "-d", dev.as_str()]);
                        if let Err(de) = self.host.run(&cmd) {
                            tracing::warn!(error = %de, "nvme disconnect failed");
                        }
                    }
                }
                Err(e)
            }
        }
    }

    fn disconnect_volume(
        &self,
        props: &ConnectionProperties,
        device_info: Option<&DeviceInfo>,
        opts: DisconnectOptions,
    ) -> Result<(), ConnectorError> {
        let t = self.target(props)?;
        let device_path = match props {
            ConnectionProperties::Nvmeof(p) => p.device_path.as_ref(),
            _ => None,
        };
        self.disconnect(t, device_path, device_info, opts)
    }

    fn get_volume_paths(
        &self,
        props: &ConnectionProperties,
    ) -> Result<VolumePaths, ConnectorError> {
        let t = self.target(props)?;
        let device_path = match props {
            ConnectionProperties::Nvmeof(p) => p.device_path.as_ref(),
            _ => None,
        };
        Ok(self.volume_paths(t, device_path))
    }

    fn get_search_path(&self) -> Option<HostPath> {
        HostPath::new("/dev").ok()
    }

    /// The NVMe namespace head devices under `/dev` (`nvme<X>n<Y>`), not every entry of
    /// `/dev` as os-brick's generic glob returns: controllers, generic `ng*` nodes,
    /// partitions and unrelated devices are left out.
    fn get_all_available_volumes(
        &self,
        _props: Option<&ConnectionProperties>,
    ) -> Result<Vec<HostPath>, ConnectorError> {
        let dev = HostPath::new("/dev")?;
        Ok(self
            .dev_heads()
            .into_iter()
            .filter_map(|n| dev.join(&n).ok())
            .collect())
    }

    /// Rescans the live controllers, then returns `blockdev --getsize64` of the namespace
    /// (os-brick reads `nvme id-ns` first; the rescan is what makes the kernel see the size).
    fn extend_volume(&self, props: &ConnectionProperties) -> Result<u64, ConnectorError> {
        let t = self.target(props)?;
        let host_nqn = self.host_nqn(t);
        for c in self
            .assign(t, host_nqn.as_deref())
            .iter()
            .flatten()
            .filter(|c| c.is_live())
        {
            self.rescan(c);
        }
        let paths = self.volume_paths(t, None);
        let Some(path) = paths.paths.first().map(|p| p.path.clone()) else {
            return Err(ConnectorError::VolumePathsNotFound {
                what: Self::describe(t),
            });
        };
        Scsi::new(self.host).size_bytes(&path)
    }
}

#[cfg(test)]
#[path = "nvmeof_tests.rs"]
mod tests;
