//! NVMe-oF in the property machine: the reference model of the host kernel's NVMe stack and
//! of the NVMe-oF connector's contract, and the lab side that builds, drives and compares it.
//!
//! The model follows the simulator's documented kernel rules (`brick_sim_target` crate doc of
//! its `nvme` module), which are the 6.1 kernel's:
//! - the array hands out namespace ids per subsystem, lowest free over every host, and frees
//!   one when its volume is unmapped from its last host; a new volume on a reused nsid has its
//!   own uuid (NVMe has no identity reuse);
//! - a controller is `(host, subsystem, port)`; it takes the lowest instance not used by a
//!   controller *or a subsystem*; a subsystem is named after the controller that found it and
//!   lives until its last controller goes;
//! - a scan (connect, AEN, `ns-rescan`, reconnect) drops namespaces whose identifiers changed or
//!   that vanished and adds new ones; one dropped in a scan is not re-added in the same scan;
//!   a path whose nsid has a head with other identifiers in the subsystem is not added;
//! - heads take the lowest free instance >= 1 of their subsystem; native multipath on: one
//!   head disk `nvme<S>n<H>` per namespace; off: one disk `nvme<C>n<H>` per controller;
//! - the array sends an AEN to every controller of the subsystem when its namespaces change
//!   (one per host a volume was unmapped from, for a delete); a controller whose port is down
//!   misses it and rescans when the port answers again. An array without AEN support
//!   ([`NvmeLayout::aen`] off) tells no one: a host learns of a change only when a controller
//!   is scanned (the connector's `nvme ns-rescan` of live controllers at attach, a new
//!   connect, a reconnect), so a namespace unmapped or deleted on the array stays on the host
//!   (the leaked-detach shape of NVMe-oF) and one mapped later is invisible until then;
//! - `Fault::NamespaceAppears` (the [`AttachFault::NamespaceAppears`] race): the first
//!   `nvme connect` of the attach that reaches the array in the racing volume's subsystem maps
//!   that volume to the host first (lowest free nsid), so the new controller's scan finds it
//!   too, and the AEN of that mapping reaches the host's other controllers; a connect to a
//!   port that does not answer leaves the race armed for the next one.
//!
//! The connector's contract (`brick_connectors::NvmeofConnector`): attach rescans the live
//! controllers of the portals, connects the missing ones (every portal with native multipath
//! and `use_multipath`, else the first that answers, only when nothing is live), waits for
//! `connecting` ones, and returns the volume's namespace (by uuid) on the first live
//! controller, retrying the whole connection three times; on failure it disconnects the
//! controllers that carry nothing else. Detach flushes the namespace devices found by uuid
//! (and the attach's device), then disconnects each controller left with no namespace or
//! with only this volume's. A namespace still mapped on a connected controller cannot be
//! removed alone: it stays, and the checks report it as a leftover.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Union;
use serde::Serialize;

use brick_connectors::DeviceInfo;
use brick_sim_target::{ArraySpec, ArrayTransport, Fault, HostId, IqnMode, NvmePort};

use crate::checks::PropertyKind;
use crate::lab::{Lab, LabHostSpec};
use crate::machine::model::{
    AttachFault, DetachFault, FaultMix, HostKind, MAX_VOLUMES, MachineProtocol, ModelState,
    ModelVolume, Outcome, Tgt, Topology, Transition, host_name, vol_name,
};
use crate::machine::sut::ARRAY;
use crate::simhost::lock;

/// NQN of the shared subsystem.
pub(crate) const SHARED_NQN: &str = "nqn.2010-10.org.openstack:shared";
/// Prefix of per-volume subsystem NQNs.
pub(crate) const NQN_PREFIX: &str = "nqn.2010-10.org.openstack:volume-";
/// TCP service id of every port.
pub(crate) const TRSVCID: u16 = 4420;

/// Address of the array's NVMe port `i`.
pub(crate) fn port_addr(i: usize) -> String {
    format!("10.0.{}.1", i + 2)
}

/// The host side of an NVMe-oF case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NvmeLayout {
    /// `nvme_core.multipath=Y`: one head disk per namespace over every controller.
    pub native_multipath: bool,
    /// The array sends namespace-change AENs (nvmet does); without them hosts learn of
    /// changes only by rescanning.
    pub aen: bool,
}

/// An NVMe block device name `nvme<x>n<n>`: a head disk `nvme<S>n<H>` (native multipath) or
/// a controller's own disk `nvme<C>n<H>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct NvmeName {
    /// Subsystem instance (native multipath) or controller instance.
    pub x: u32,
    /// Head instance.
    pub n: u32,
}

impl fmt::Display for NvmeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nvme{}n{}", self.x, self.n)
    }
}

/// A namespace behind one controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PathNs {
    /// The identity read at scan time.
    pub ident: u32,
    /// Its head instance in the subsystem.
    pub head: u32,
}

/// A controller of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ctrl {
    /// Its subsystem on the array.
    pub tgt: Tgt,
    /// The array port.
    pub port: usize,
    /// The host's subsystem instance.
    pub subsys: u32,
    /// nsid -> namespace.
    pub ns: BTreeMap<u64, PathNs>,
}

/// A subsystem as a host's kernel sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subsys {
    /// The array's subsystem.
    pub tgt: Tgt,
    /// Head instance -> (nsid, identity).
    pub heads: BTreeMap<u32, (u64, u32)>,
}

/// The NVMe stack of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NvmeHost {
    /// Controller instance -> controller.
    pub ctrls: BTreeMap<u32, Ctrl>,
    /// Subsystem instance -> subsystem.
    pub subsystems: BTreeMap<u32, Subsys>,
}

/// An attachment as the lab records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NvmeAttachment {
    /// What attach returned.
    pub dev: NvmeName,
}

/// The NVMe part of the reference state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NvmeState {
    /// Host index -> its NVMe stack.
    pub hosts: BTreeMap<usize, NvmeHost>,
    /// (host, volume) -> attachment.
    pub attachments: BTreeMap<(usize, usize), NvmeAttachment>,
    /// The volume a racing attach maps at the next `nvme connect` of the running attach
    /// (set only during an attach with [`AttachFault::NamespaceAppears`]).
    pub race: Option<usize>,
}

/// One NVMe block device of a host, as the model derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Disk {
    name: NvmeName,
    tgt: Tgt,
    nsid: u64,
    ident: u32,
}

fn lowest_free(used: impl Iterator<Item = u32>, from: u32) -> u32 {
    let used: BTreeSet<u32> = used.collect();
    (from..).find(|i| !used.contains(i)).unwrap_or(u32::MAX)
}

fn layout(s: &ModelState) -> NvmeLayout {
    s.topology.nvme.unwrap_or(NvmeLayout {
        native_multipath: true,
        aen: true,
    })
}

fn native(s: &ModelState) -> bool {
    layout(s).native_multipath
}

fn exists(s: &ModelState, v: usize) -> bool {
    s.volumes.get(v).is_some_and(|x| x.exists)
}

fn ident_of(s: &ModelState, v: usize) -> Option<u32> {
    s.volumes.get(v).map(|x| x.ident)
}

fn host(s: &ModelState, h: usize) -> NvmeHost {
    s.nvme.hosts.get(&h).cloned().unwrap_or_default()
}

fn host_mut(s: &mut ModelState, h: usize) -> &mut NvmeHost {
    s.nvme.hosts.entry(h).or_default()
}

fn port_down(s: &ModelState, h: usize, p: usize) -> bool {
    s.down.contains(&(h, p))
}

/// The namespaces the array exposes to `h` in subsystem `tgt`: nsid -> identity.
fn exposed(s: &ModelState, h: usize, tgt: Tgt) -> BTreeMap<u64, u32> {
    s.volumes
        .iter()
        .enumerate()
        .filter(|(i, v)| v.exists && s.tgt_of(*i) == tgt)
        .filter_map(|(_, v)| v.mapped.get(&h).map(|n| (*n, v.ident)))
        .collect()
}

/// The controller of `(h, tgt, p)`, if connected.
fn ctrl_at(s: &ModelState, h: usize, tgt: Tgt, p: usize) -> Option<u32> {
    s.nvme.hosts.get(&h).and_then(|k| {
        k.ctrls
            .iter()
            .find(|(_, c)| c.tgt == tgt && c.port == p)
            .map(|(i, _)| *i)
    })
}

/// The block device of namespace `ns` on controller `c`.
fn disk_name(s: &ModelState, c: u32, ctrl: &Ctrl, ns: &PathNs) -> NvmeName {
    NvmeName {
        x: if native(s) { ctrl.subsys } else { c },
        n: ns.head,
    }
}

/// Every NVMe block device of host `h` (heads with native multipath, else per controller).
fn disks(s: &ModelState, h: usize) -> Vec<Disk> {
    let k = host(s, h);
    if native(s) {
        k.subsystems
            .iter()
            .flat_map(|(si, sub)| {
                sub.heads.iter().map(move |(hi, (nsid, ident))| Disk {
                    name: NvmeName { x: *si, n: *hi },
                    tgt: sub.tgt,
                    nsid: *nsid,
                    ident: *ident,
                })
            })
            .collect()
    } else {
        k.ctrls
            .iter()
            .flat_map(|(ci, c)| {
                c.ns.iter().map(move |(nsid, ns)| Disk {
                    name: NvmeName { x: *ci, n: ns.head },
                    tgt: c.tgt,
                    nsid: *nsid,
                    ident: ns.ident,
                })
            })
            .collect()
    }
}

// -------------------------------------------------------------------- kernel

fn add_ns(s: &mut ModelState, h: usize, c: u32, nsid: u64, ident: u32) {
    let k = host_mut(s, h);
    let Some(subsys) = k.ctrls.get(&c).map(|x| x.subsys) else {
        return;
    };
    let Some(sub) = k.subsystems.get(&subsys) else {
        return;
    };
    let head = match sub.heads.iter().find(|(_, (n, _))| *n == nsid) {
        // "IDs don't match for shared namespace": the path is not added.
        Some((_, (_, old))) if *old != ident => return,
        Some((hi, _)) => *hi,
        None => lowest_free(sub.heads.keys().copied(), 1),
    };
    if let Some(ctrl) = k.ctrls.get_mut(&c) {
        ctrl.ns.insert(nsid, PathNs { ident, head });
    }
    if let Some(sub) = k.subsystems.get_mut(&subsys) {
        sub.heads.entry(head).or_insert((nsid, ident));
    }
}

fn remove_ns(s: &mut ModelState, h: usize, c: u32, nsid: u64) {
    let k = host_mut(s, h);
    let Some(ctrl) = k.ctrls.get_mut(&c) else {
        return;
    };
    let Some(ns) = ctrl.ns.remove(&nsid) else {
        return;
    };
    let subsys = ctrl.subsys;
    let used = k
        .ctrls
        .values()
        .any(|x| x.subsys == subsys && x.ns.values().any(|n| n.head == ns.head));
    if !used && let Some(sub) = k.subsystems.get_mut(&subsys) {
        sub.heads.remove(&ns.head);
    }
}

/// A scan of controller `c` of host `h` (nothing when its port is down).
fn scan(s: &mut ModelState, h: usize, c: u32) {
    let Some(ctrl) = host(s, h).ctrls.get(&c).cloned() else {
        return;
    };
    if port_down(s, h, ctrl.port) {
        return;
    }
    let want = exposed(s, h, ctrl.tgt);
    let mut removed = BTreeSet::new();
    for (nsid, ns) in &ctrl.ns {
        if want.get(nsid) != Some(&ns.ident) {
            remove_ns(s, h, c, *nsid);
            removed.insert(*nsid);
        }
    }
    for (nsid, ident) in want {
        if ctrl.ns.contains_key(&nsid) || removed.contains(&nsid) {
            continue;
        }
        add_ns(s, h, c, nsid, ident);
    }
}

/// `nvme connect`: a live controller, scanned; `None` when the port does not answer, the
/// subsystem is gone, or nothing in it is mapped to the host.
fn connect(s: &mut ModelState, h: usize, tgt: Tgt, p: usize) -> Option<u32> {
    if port_down(s, h, p) {
        return None;
    }
    // Another attach maps its volume of this subsystem first (`Fault::NamespaceAppears`);
    // its AEN reaches the live controllers after this connect's own scan.
    let raced = match s.nvme.race {
        Some(o) if s.tgt_of(o) == tgt && exists(s, o) => {
            s.nvme.race = None;
            map_ns(s, o, h);
            true
        }
        _ => false,
    };
    let subsystem_exists = match tgt {
        None => true,
        Some(v) => exists(s, v),
    };
    let allowed = s
        .volumes
        .iter()
        .enumerate()
        .any(|(i, v)| v.exists && s.tgt_of(i) == tgt && v.mapped.contains_key(&h));
    if !subsystem_exists || !allowed {
        if raced {
            aen(s, tgt);
        }
        return None;
    }
    let k = host_mut(s, h);
    let instance = lowest_free(k.ctrls.keys().chain(k.subsystems.keys()).copied(), 0);
    let subsys = match k.subsystems.iter().find(|(_, x)| x.tgt == tgt) {
        Some((i, _)) => *i,
        None => {
            k.subsystems.insert(
                instance,
                Subsys {
                    tgt,
                    heads: BTreeMap::new(),
                },
            );
            instance
        }
    };
    k.ctrls.insert(
        instance,
        Ctrl {
            tgt,
            port: p,
            subsys,
            ns: BTreeMap::new(),
        },
    );
    scan(s, h, instance);
    if raced {
        aen(s, tgt);
    }
    Some(instance)
}

/// `nvme disconnect -d /dev/nvme<c>`.
fn delete_ctrl(s: &mut ModelState, h: usize, c: u32) {
    let Some(ctrl) = host(s, h).ctrls.get(&c).cloned() else {
        return;
    };
    for nsid in ctrl.ns.keys() {
        remove_ns(s, h, c, *nsid);
    }
    let k = host_mut(s, h);
    k.ctrls.remove(&c);
    if !k.ctrls.values().any(|x| x.subsys == ctrl.subsys) {
        k.subsystems.remove(&ctrl.subsys);
    }
}

/// The array changed subsystem `tgt`: every controller of it, on every host, gets an AEN
/// (the settle after the step delivers them, in host then instance order).
fn aen(s: &mut ModelState, tgt: Tgt) {
    if !layout(s).aen {
        return;
    }
    for h in 0..s.topology.hosts {
        let ctrls: Vec<u32> = host(s, h)
            .ctrls
            .iter()
            .filter(|(_, c)| c.tgt == tgt)
            .map(|(i, _)| *i)
            .collect();
        for c in ctrls {
            scan(s, h, c);
        }
    }
}

// ------------------------------------------------------------------ connector

/// os-brick `can_disconnect`: no namespace, or exactly one and it is the volume's.
fn can_disconnect(s: &ModelState, h: usize, c: u32, ident: u32) -> bool {
    let Some(ctrl) = host(s, h).ctrls.get(&c).cloned() else {
        return false;
    };
    let mut it = ctrl.ns.values();
    match (it.next(), it.next()) {
        (None, _) => true,
        (Some(only), None) => only.ident == ident,
        _ => false,
    }
}

/// The volume's device on controller `c`, by identity.
fn device_on(s: &ModelState, h: usize, c: u32, ident: u32) -> Option<NvmeName> {
    let k = host(s, h);
    let ctrl = k.ctrls.get(&c)?;
    let ns = ctrl.ns.values().find(|n| n.ident == ident)?;
    Some(disk_name(s, c, ctrl, ns))
}

/// One `_connect_target` attempt.
fn connect_target(s: &mut ModelState, h: usize, tgt: Tgt, ident: u32) -> Option<NvmeName> {
    let ports = s.topology.portals;
    let mut connected = false;
    let mut missing = Vec::new();
    for p in 0..ports {
        match ctrl_at(s, h, tgt, p) {
            None => missing.push(p),
            Some(c) if !port_down(s, h, p) => {
                connected = true;
                scan(s, h, c);
            }
            // `connecting`: waited for, in vain (the port stays down during the step).
            Some(_) => {}
        }
    }
    let do_multipath = s.topology.host_kind == HostKind::Multipath && native(s);
    if do_multipath || !connected {
        for p in missing {
            if connect(s, h, tgt, p).is_none() {
                continue;
            }
            connected = true;
            if !do_multipath {
                break;
            }
        }
    }
    if !connected {
        return None;
    }
    (0..ports)
        .filter(|p| !port_down(s, h, *p))
        .filter_map(|p| ctrl_at(s, h, tgt, p))
        .find_map(|c| device_on(s, h, c, ident))
}

fn attach(s: &mut ModelState, v: usize, h: usize, fault: Option<AttachFault>) {
    let (Some(_), Some(ident)) = (s.mapped(v, h), ident_of(s, v)) else {
        s.outcome = Outcome::Err;
        return;
    };
    s.nvme.race = match fault {
        Some(AttachFault::NamespaceAppears { vol }) => Some(vol),
        _ => None,
    };
    attach_armed(s, v, h, ident);
    // Not consumed (no connect reached the array): the lab disarms it after the attach.
    s.nvme.race = None;
}

fn attach_armed(s: &mut ModelState, v: usize, h: usize, ident: u32) {
    let tgt = s.tgt_of(v);
    let previous = s.nvme.attachments.get(&(h, v)).copied();
    let mut found = None;
    for _ in 0..3 {
        found = connect_target(s, h, tgt, ident);
        if found.is_some() {
            break;
        }
    }
    match found {
        Some(dev) => {
            s.nvme.attachments.insert((h, v), NvmeAttachment { dev });
            s.outcome = Outcome::NvmeAttached {
                dev,
                ident,
                again: previous.is_some_and(|a| a.dev == dev),
            };
        }
        None => {
            for p in 0..s.topology.portals {
                if let Some(c) = ctrl_at(s, h, tgt, p)
                    && can_disconnect(s, h, c, ident)
                {
                    delete_ctrl(s, h, c);
                }
            }
            s.outcome = Outcome::Err;
        }
    }
}

fn detach(
    s: &mut ModelState,
    v: usize,
    h: usize,
    force: bool,
    device_info: bool,
    fault: Option<DetachFault>,
) {
    let attachment = s.nvme.attachments.get(&(h, v)).copied();
    let Some(ident) = ident_of(s, v) else {
        s.outcome = Outcome::Err;
        return;
    };
    if attachment.is_none() && s.mapped(v, h).is_none() {
        s.outcome = Outcome::Err;
        return;
    }
    if let Some(DetachFault::Crash { .. }) = fault {
        // The crashed first attempt is retried; each controller's decision depends only on
        // its own namespaces, so the end state is the retry's. With force the lab forgot
        // the attachment: the retry has no device info.
        detach(s, v, h, force, device_info && !force, None);
        if force {
            s.outcome = Outcome::Any;
        }
        return;
    }
    let tgt = s.tgt_of(v);
    let ports = s.topology.portals;
    // The devices flushed: the volume's namespaces by uuid, and the attach's device when it
    // still exists (whatever it is now).
    let names: BTreeSet<NvmeName> = disks(s, h).iter().map(|d| d.name).collect();
    let mut flushed: BTreeSet<NvmeName> = (0..ports)
        .filter_map(|p| ctrl_at(s, h, tgt, p))
        .filter_map(|c| device_on(s, h, c, ident))
        .collect();
    if device_info && let Some(a) = attachment {
        flushed.insert(a.dev);
    }
    let mut error = false;
    if fault == Some(DetachFault::DeviceFlushFails) && flushed.iter().any(|n| names.contains(n)) {
        error = true;
        if !force {
            s.outcome = Outcome::Err;
            return;
        }
    }
    for p in 0..ports {
        if let Some(c) = ctrl_at(s, h, tgt, p)
            && can_disconnect(s, h, c, ident)
        {
            delete_ctrl(s, h, c);
        }
    }
    s.nvme.attachments.remove(&(h, v));
    s.outcome = if error { Outcome::Err } else { Outcome::Ok };
}

fn map(s: &mut ModelState, v: usize, h: usize) {
    map_ns(s, v, h);
    aen(s, s.tgt_of(v));
}

/// Maps `v` to `h` on the array: its nsid in the subsystem (the one it has for another
/// host, else the lowest free), without telling anyone.
fn map_ns(s: &mut ModelState, v: usize, h: usize) {
    let tgt = s.tgt_of(v);
    let own = s
        .volumes
        .get(v)
        .and_then(|x| x.mapped.values().next().copied());
    let nsid = own.unwrap_or_else(|| {
        let used: BTreeSet<u64> = s
            .volumes
            .iter()
            .enumerate()
            .filter(|(i, x)| x.exists && s.tgt_of(*i) == tgt)
            .flat_map(|(_, x)| x.mapped.values().copied())
            .collect();
        (1..).find(|n| !used.contains(n)).unwrap_or(1)
    });
    if let Some(x) = s.volumes.get_mut(v) {
        x.mapped.insert(h, nsid);
    }
}

/// Applies one transition to an NVMe-oF state.
pub(crate) fn step(s: &mut ModelState, t: &Transition) {
    match *t {
        Transition::Create => {
            let ident = u32::try_from(s.volumes.len()).unwrap_or(u32::MAX);
            let slot = s.volumes.len();
            s.volumes.push(ModelVolume {
                ident,
                slot,
                exists: true,
                mapped: BTreeMap::new(),
            });
        }
        Transition::Map { vol, host } => map(s, vol, host),
        Transition::Unmap { vol, host } => {
            let tgt = s.tgt_of(vol);
            if let Some(x) = s.volumes.get_mut(vol)
                && x.mapped.remove(&host).is_some()
            {
                aen(s, tgt);
            }
        }
        Transition::Delete { vol } => {
            let tgt = s.tgt_of(vol);
            let mut unmapped = 0;
            if let Some(x) = s.volumes.get_mut(vol) {
                x.exists = false;
                unmapped = x.mapped.len();
                x.mapped.clear();
            }
            // One AEN per host it was unmapped from.
            for _ in 0..unmapped {
                aen(s, tgt);
            }
        }
        Transition::Attach { vol, host, fault } => attach(s, vol, host, fault),
        Transition::Detach {
            vol,
            host,
            force,
            device_info,
            fault,
        } => detach(s, vol, host, force, device_info, fault),
        Transition::PathDown { host, portal } => {
            s.down.insert((host, portal));
        }
        Transition::PathUp { host, portal } => {
            s.down.remove(&(host, portal));
            // The controllers on that port reconnect and rescan.
            let back: Vec<u32> = self::host(s, host)
                .ctrls
                .iter()
                .filter(|(_, c)| c.port == portal)
                .map(|(i, _)| *i)
                .collect();
            for c in back {
                scan(s, host, c);
            }
        }
        Transition::Wait => {}
    }
}

/// Whether `t` may run in an NVMe-oF state.
pub(crate) fn allows(s: &ModelState, t: &Transition) -> bool {
    let hosts = s.topology.hosts;
    match *t {
        Transition::Create => {
            s.volumes.iter().filter(|v| v.exists).count() < MAX_VOLUMES
                && s.volumes.len() < 2 * MAX_VOLUMES
        }
        Transition::Wait => true,
        Transition::Map { vol, host } => {
            host < hosts && exists(s, vol) && s.mapped(vol, host).is_none()
        }
        Transition::Unmap { vol, host } => host < hosts && s.mapped(vol, host).is_some(),
        Transition::Delete { vol } => exists(s, vol),
        Transition::Attach { vol, host, fault } => {
            host < hosts
                && s.mapped(vol, host).is_some()
                && match fault {
                    None => true,
                    Some(AttachFault::NamespaceAppears { vol: other }) => {
                        may_race(s, vol, host, other)
                    }
                    Some(_) => false,
                }
        }
        Transition::Detach {
            vol, host, fault, ..
        } => {
            host < hosts
                && (s.nvme.attachments.contains_key(&(host, vol)) || s.mapped(vol, host).is_some())
                && match fault {
                    None => true,
                    Some(DetachFault::DeviceFlushFails) => s.faults.device_flush,
                    // The retry of a forced detach reads the array's current mapping.
                    Some(DetachFault::Crash { .. }) => {
                        s.faults.crash && s.mapped(vol, host).is_some()
                    }
                    Some(_) => false,
                }
        }
        Transition::PathDown { host, portal } => {
            s.faults.path_flap
                && host < hosts
                && portal < s.topology.portals
                && !s.down.iter().any(|(h, _)| *h == host)
        }
        Transition::PathUp { host, portal } => s.down.contains(&(host, portal)),
    }
}

/// Whether an attach of `v` on `h` may draw the race mapping `other`: another live volume
/// of the same (shared) subsystem, not mapped to `h` yet.
fn may_race(s: &ModelState, v: usize, h: usize, other: usize) -> bool {
    s.faults.namespace_appears
        && other != v
        && exists(s, other)
        && s.tgt_of(other) == s.tgt_of(v)
        && s.mapped(other, h).is_none()
}

/// The violations the harness must report now: `(property, host, volume)`.
pub(crate) fn expected_violations(
    s: &ModelState,
) -> BTreeSet<(PropertyKind, String, Option<String>)> {
    let mut out = BTreeSet::new();
    for h in 0..s.topology.hosts {
        let hn = host_name(h);
        let attached: BTreeSet<usize> = s
            .nvme
            .attachments
            .keys()
            .filter(|(x, _)| *x == h)
            .map(|(_, v)| *v)
            .collect();
        let name = |v: Option<usize>| v.map(vol_name);
        let mut leads_to: BTreeMap<usize, BTreeSet<NvmeName>> = BTreeMap::new();
        for d in disks(s, h) {
            let reported = s.name_of_ident(d.ident);
            match s.backing(h, d.tgt, d.nsid) {
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
                    leads_to.entry(b).or_default().insert(d.name);
                }
            }
        }
        if host(s, h).ctrls.values().any(|c| c.ns.is_empty()) {
            out.insert((PropertyKind::Leftover, hn.clone(), None));
        }
        for v in &attached {
            let (tgt, Some(ident)) = (s.tgt_of(*v), ident_of(s, *v)) else {
                continue;
            };
            let reported: BTreeSet<NvmeName> = (0..s.topology.portals)
                .filter_map(|p| ctrl_at(s, h, tgt, p))
                .filter_map(|c| device_on(s, h, c, ident))
                .collect();
            if reported != leads_to.remove(v).unwrap_or_default() {
                out.insert((PropertyKind::Truth, hn.clone(), name(Some(*v))));
            }
        }
    }
    out
}

/// One line per host: controllers with their namespaces, disks, attachments.
pub(crate) fn summary(s: &ModelState) -> String {
    let mut parts = Vec::new();
    for h in 0..s.topology.hosts {
        let k = host(s, h);
        let who = |ident: u32| {
            s.name_of_ident(ident)
                .map_or_else(|| "?".to_owned(), vol_name)
        };
        let ctrls: Vec<String> = k
            .ctrls
            .iter()
            .map(|(i, c)| {
                let ns: Vec<String> =
                    c.ns.iter()
                        .map(|(n, x)| format!("{n}={}", who(x.ident)))
                        .collect();
                format!(
                    "nvme{i}(port {}{})[{}]",
                    c.port,
                    if port_down(s, h, c.port) {
                        ", connecting"
                    } else {
                        ""
                    },
                    ns.join(" ")
                )
            })
            .collect();
        let devs: Vec<String> = disks(s, h)
            .iter()
            .map(|d| format!("{}={}", d.name, who(d.ident)))
            .collect();
        let att: Vec<String> = s
            .nvme
            .attachments
            .iter()
            .filter(|((x, _), _)| *x == h)
            .map(|((_, v), a)| format!("{}@{}", vol_name(*v), a.dev))
            .collect();
        parts.push(format!(
            "{}: controllers [{}], disks [{}], attached [{}]",
            host_name(h),
            ctrls.join(" "),
            devs.join(" "),
            att.join(" ")
        ));
    }
    parts.join(" | ")
}

/// The topology line of an NVMe-oF case.
pub(crate) fn fmt_topology(
    t: &Topology,
    n: &NvmeLayout,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    write!(
        f,
        "{} host(s), NVMe-oF, {} port(s){}, native multipath {}, connector {}, {} subsystem",
        t.hosts,
        t.portals,
        if n.aen { "" } else { " without AEN" },
        if n.native_multipath { "on" } else { "off" },
        if t.host_kind == HostKind::Multipath {
            "multipath"
        } else {
            "single-path"
        },
        if t.shared_target {
            "shared"
        } else {
            "per-volume"
        }
    )
}

// ------------------------------------------------------------------ strategies

fn topology_strategy() -> BoxedStrategy<Topology> {
    (
        prop_oneof![Just(HostKind::Single), Just(HostKind::Multipath)],
        1usize..=2,
        1usize..=2,
        any::<bool>(),
        prop::bool::weighted(0.7),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(host_kind, hosts, ports, shared, native, aen)| Topology {
            protocol: MachineProtocol::Nvmeof,
            hosts,
            host_kind,
            portals: ports,
            shared_target: shared,
            reuse_identity: false,
            flat_addressing: false,
            first_lun: 1,
            recycle_iqns: false,
            fc: None,
            nvme: Some(NvmeLayout {
                native_multipath: native,
                aen,
            }),
        })
        .boxed()
}

fn fault_mix_strategy() -> BoxedStrategy<FaultMix> {
    let b = || prop::bool::weighted(0.4);
    (b(), b(), b(), b())
        .prop_map(
            |(device_flush, crash, path_flap, namespace_appears)| FaultMix {
                device_flush,
                crash,
                path_flap,
                namespace_appears,
                ..FaultMix::default()
            },
        )
        .boxed()
}

pub(super) fn transitions(s: &ModelState) -> BoxedStrategy<Transition> {
    let hosts = s.topology.hosts;
    let nvol = s.volumes.len();
    let pairs = |keep: &dyn Fn(usize, usize) -> bool| -> Vec<(usize, usize)> {
        (0..nvol)
            .flat_map(|v| (0..hosts).map(move |h| (v, h)))
            .filter(|(v, h)| keep(*v, *h))
            .collect()
    };
    let live = s.volumes.iter().filter(|v| v.exists).count();
    let mut arms: Vec<(u32, BoxedStrategy<Transition>)> = Vec::new();
    if live < MAX_VOLUMES && nvol < 2 * MAX_VOLUMES {
        arms.push((
            if live == 0 { 10 } else { 3 },
            Just(Transition::Create).boxed(),
        ));
    }
    let to_map = pairs(&|v, h| exists(s, v) && s.mapped(v, h).is_none());
    if !to_map.is_empty() {
        arms.push((
            6,
            prop::sample::select(to_map)
                .prop_map(|(vol, host)| Transition::Map { vol, host })
                .boxed(),
        ));
    }
    let mapped = pairs(&|v, h| s.mapped(v, h).is_some());
    let races: Vec<Transition> = mapped
        .iter()
        .flat_map(|(v, h)| (0..nvol).map(move |o| (*v, *h, o)))
        .filter(|(v, h, o)| may_race(s, *v, *h, *o))
        .map(|(vol, host, other)| Transition::Attach {
            vol,
            host,
            fault: Some(AttachFault::NamespaceAppears { vol: other }),
        })
        .collect();
    if !races.is_empty() {
        arms.push((3, prop::sample::select(races).boxed()));
    }
    if !mapped.is_empty() {
        arms.push((
            2,
            prop::sample::select(mapped.clone())
                .prop_map(|(vol, host)| Transition::Unmap { vol, host })
                .boxed(),
        ));
        arms.push((
            8,
            prop::sample::select(mapped)
                .prop_map(|(vol, host)| Transition::Attach {
                    vol,
                    host,
                    fault: None,
                })
                .boxed(),
        ));
    }
    let existing: Vec<usize> = (0..nvol).filter(|v| exists(s, *v)).collect();
    if !existing.is_empty() {
        arms.push((
            1,
            prop::sample::select(existing)
                .prop_map(|vol| Transition::Delete { vol })
                .boxed(),
        ));
    }
    let detachable =
        pairs(&|v, h| s.nvme.attachments.contains_key(&(h, v)) || s.mapped(v, h).is_some());
    if !detachable.is_empty() {
        let mut faults: Vec<BoxedStrategy<Option<DetachFault>>> =
            vec![Just(None).boxed(), Just(None).boxed(), Just(None).boxed()];
        if s.faults.device_flush {
            faults.push(Just(Some(DetachFault::DeviceFlushFails)).boxed());
        }
        if s.faults.crash {
            faults.push(
                (0u8..6)
                    .prop_map(|after| Some(DetachFault::Crash { after }))
                    .boxed(),
            );
        }
        arms.push(super::model::detach_arm(detachable, faults));
    }
    if s.faults.path_flap {
        super::model::flap_arms(s, s.topology.portals, 3, &mut arms);
    }
    if arms.is_empty() {
        arms.push((1, Just(Transition::Wait).boxed()));
    }
    Union::new_weighted(arms).boxed()
}

super::model::reference_machine!(
    /// The reference state machine for NVMe-oF.
    NvmeModel,
    topology_strategy(),
    fault_mix_strategy()
);

// ------------------------------------------------------------------ the lab side

/// A lab for an NVMe-oF case: NVMe hosts (no multipathd; native multipath as drawn) and an
/// nvmet-like array (AENs as drawn) on `topology.portals` ports.
pub(crate) fn new_lab(state: &ModelState, n: &NvmeLayout) -> Result<Lab, String> {
    let t = &state.topology;
    let mut lab = Lab::new(state.world_seed);
    for h in 0..t.hosts {
        let mut spec = LabHostSpec::single(&host_name(h));
        spec.use_multipath = t.host_kind == HostKind::Multipath;
        spec.sim = spec.sim.with_nvme();
        if let Some(nv) = spec.sim.nvme.as_mut() {
            nv.native_multipath = n.native_multipath;
        }
        spec.sim.udev_delay = Duration::from_millis(50);
        lab.add_host(spec).map_err(|e| format!("lab: {e}"))?;
    }
    let ports = (0..t.portals)
        .map(|i| NvmePort::tcp(port_addr(i), TRSVCID))
        .collect();
    let mut spec = ArraySpec::nvme(ARRAY, ports);
    spec.iqn_mode = if t.shared_target {
        IqnMode::Shared {
            iqn: SHARED_NQN.to_owned(),
        }
    } else {
        IqnMode::PerVolume {
            prefix: NQN_PREFIX.to_owned(),
        }
    };
    if let ArrayTransport::Nvme(nv) = &mut spec.transport {
        nv.aen = n.aen;
    }
    lab.add_array(spec).map_err(|e| format!("lab: {e}"))?;
    Ok(lab)
}

/// The fault that makes array port `p` unreachable from host `hid`.
pub(crate) fn port_fault(hid: HostId, p: usize) -> Fault {
    Fault::NvmePortDown {
        host: hid,
        traddr: port_addr(p),
        trsvcid: TRSVCID,
    }
}

/// The attach returned the device the model expects.
pub(crate) fn judge_attach(want: NvmeName, info: Option<&DeviceInfo>) -> Result<(), String> {
    let Some(info) = info else {
        return Err("the attach returned no device".to_owned());
    };
    let want = format!("/dev/{want}");
    if info.path.as_str() != want {
        return Err(format!(
            "attach returned {} but the model expects {want}",
            info.path
        ));
    }
    Ok(())
}

fn tgt_of_nqn(nqn: &str) -> Option<Tgt> {
    if nqn == SHARED_NQN {
        return Some(None);
    }
    let n: usize = nqn
        .strip_prefix(NQN_PREFIX)?
        .strip_prefix('v')?
        .parse()
        .ok()?;
    Some(Some(n))
}

fn wwid_of(lab: &Lab, ident: u32) -> String {
    let w = lab
        .volume_id(&vol_name(ident as usize))
        .ok()
        .and_then(|id| lock(lab.world()).volume_record(id).map(|r| r.wwid.clone()));
    w.unwrap_or_else(|| "?".to_owned())
}

/// One controller as compared: (instance, subsystem instance, subsystem, port, nsids).
type CtrlView = (u32, u32, Tgt, usize, Vec<u64>);

fn describe_ctrls(c: &BTreeSet<CtrlView>) -> String {
    let items: Vec<String> = c
        .iter()
        .map(|(i, s, t, p, ns)| {
            format!(
                "nvme{i} (nvme-subsys{s}, {}, port {p}, nsids {ns:?})",
                t.map_or_else(|| "shared".to_owned(), vol_name)
            )
        })
        .collect();
    format!("[{}]", items.join("; "))
}

/// Every host holds exactly the controllers (with their namespaces) and NVMe disks (with
/// their identities) the model says.
pub(crate) fn compare_state(lab: &Lab, model: &ModelState) -> Result<(), String> {
    for h in 0..model.topology.hosts {
        let hn = host_name(h);
        let hid = lab.host_id(&hn).map_err(|e| format!("lab: {e}"))?;
        let (ctrls, devs) = {
            let w = lock(lab.world());
            let ctrls: BTreeSet<CtrlView> = w
                .controllers(hid)
                .into_iter()
                .map(|c| {
                    let inst = c
                        .name
                        .trim_start_matches("nvme")
                        .parse()
                        .unwrap_or(u32::MAX);
                    let sub = c
                        .subsystem
                        .trim_start_matches("nvme-subsys")
                        .parse()
                        .unwrap_or(u32::MAX);
                    let port = (0..model.topology.portals)
                        .find(|p| c.portal == format!("{}:{TRSVCID}", port_addr(*p)))
                        .unwrap_or(usize::MAX);
                    let tgt = tgt_of_nqn(&c.nqn).unwrap_or(Some(usize::MAX));
                    let ns = c.nsids.iter().map(|n| u64::from(*n)).collect();
                    (inst, sub, tgt, port, ns)
                })
                .collect();
            let devs: BTreeMap<String, String> = w
                .host_devices(hid)
                .into_iter()
                .filter(|d| d.name.starts_with("nvme"))
                .map(|d| (d.name, d.reported_wwid))
                .collect();
            (ctrls, devs)
        };
        let k = host(model, h);
        let want: BTreeSet<CtrlView> = k
            .ctrls
            .iter()
            .map(|(i, c)| (*i, c.subsys, c.tgt, c.port, c.ns.keys().copied().collect()))
            .collect();
        if ctrls != want {
            return Err(format!(
                "{hn} has controllers {} but the model expects {}",
                describe_ctrls(&ctrls),
                describe_ctrls(&want)
            ));
        }
        let want_devs: BTreeMap<String, String> = disks(model, h)
            .iter()
            .map(|d| (d.name.to_string(), wwid_of(lab, d.ident)))
            .collect();
        if devs != want_devs {
            return Err(format!(
                "{hn} holds NVMe disks {devs:?} but the model expects {want_devs:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::run::run_case;

    fn state(hosts: usize, ports: usize, kind: HostKind, shared: bool, native: bool) -> ModelState {
        let t = Topology {
            protocol: MachineProtocol::Nvmeof,
            hosts,
            host_kind: kind,
            portals: ports,
            shared_target: shared,
            reuse_identity: false,
            flat_addressing: false,
            first_lun: 1,
            recycle_iqns: false,
            fc: None,
            nvme: Some(NvmeLayout {
                native_multipath: native,
                aen: true,
            }),
        };
        let faults = FaultMix {
            path_flap: true,
            device_flush: true,
            crash: true,
            namespace_appears: true,
            ..FaultMix::default()
        };
        ModelState::new(t, faults, 7)
    }

    fn att(vol: usize) -> Transition {
        Transition::Attach {
            vol,
            host: 0,
            fault: None,
        }
    }

    fn det(vol: usize) -> Transition {
        Transition::Detach {
            vol,
            host: 0,
            force: false,
            device_info: true,
            fault: None,
        }
    }

    fn map(vol: usize) -> Transition {
        Transition::Map { vol, host: 0 }
    }

    fn assert_runs(s: &ModelState, ts: &[Transition]) -> ModelState {
        let run = run_case(s, ts, false);
        assert!(run.failure.is_none(), "{}", run.trace());
        assert_eq!(run.steps.len(), ts.len());
        ts.iter().fold(s.clone(), |st, t| st.step(t))
    }

    #[test]
    fn native_multipath_attach_connects_every_port_and_detach_disconnects() {
        let s = state(1, 2, HostKind::Multipath, false, true);
        let end = assert_runs(&s, &[Transition::Create, map(0), att(0)]);
        assert_eq!(
            end.outcome,
            Outcome::NvmeAttached {
                dev: NvmeName { x: 0, n: 1 },
                ident: 0,
                again: false
            }
        );
        assert_eq!(end.nvme.hosts.get(&0).map(|k| k.ctrls.len()), Some(2));
        let end = assert_runs(&s, &[Transition::Create, map(0), att(0), det(0)]);
        assert_eq!(end.outcome, Outcome::Ok);
        assert!(end.nvme.hosts.get(&0).is_none_or(|k| k.ctrls.is_empty()));
        assert!(expected_violations(&end).is_empty());
    }

    #[test]
    fn a_detached_but_still_mapped_namespace_next_to_another_is_a_leftover() {
        let s = state(1, 1, HostKind::Single, true, true);
        let ts = [
            Transition::Create,
            map(0),
            Transition::Create,
            map(1),
            att(0),
            att(1),
            det(0),
        ];
        let end = assert_runs(&s, &ts);
        let v = expected_violations(&end);
        assert_eq!(
            v.into_iter().collect::<Vec<_>>(),
            [(PropertyKind::Leftover, host_name(0), Some(vol_name(0)))]
        );
    }

    #[test]
    fn nsid_reuse_after_a_leaked_detach_is_predicted() {
        // v0 attached and deleted on the array; v1 takes nsid 1 on the shared subsystem.
        let s = state(1, 1, HostKind::Single, true, false);
        let ts = [
            Transition::Create,
            map(0),
            att(0),
            Transition::Delete { vol: 0 },
            Transition::Create,
            map(1),
            att(1),
            det(0),
            det(1),
        ];
        let end = assert_runs(&s, &ts);
        assert_eq!(end.volumes.get(1).and_then(|v| v.mapped.get(&0)), Some(&1));
        assert!(
            expected_violations(&end)
                .iter()
                .all(|(k, _, _)| *k == PropertyKind::Leftover)
        );
    }

    #[test]
    fn a_port_down_while_the_namespace_changes_is_rescanned_when_it_comes_back() {
        let s = state(1, 2, HostKind::Multipath, true, true);
        let ts = [
            Transition::Create,
            map(0),
            att(0),
            Transition::PathDown { host: 0, portal: 1 },
            Transition::Create,
            map(1),
            att(1),
            Transition::PathUp { host: 0, portal: 1 },
            // Cinder's order: detach, then unmap (the AEN drops the namespace).
            det(1),
            Transition::Unmap { vol: 1, host: 0 },
            det(0),
        ];
        let end = assert_runs(&s, &ts);
        assert!(expected_violations(&end).is_empty(), "{}", summary(&end));
    }

    fn without_aen(mut s: ModelState) -> ModelState {
        if let Some(n) = s.topology.nvme.as_mut() {
            n.aen = false;
        }
        s
    }

    fn race(vol: usize, other: usize) -> Transition {
        Transition::Attach {
            vol,
            host: 0,
            fault: Some(AttachFault::NamespaceAppears { vol: other }),
        }
    }

    fn nsids(s: &ModelState) -> Vec<Vec<u64>> {
        host(s, 0)
            .ctrls
            .values()
            .map(|c| c.ns.keys().copied().collect())
            .collect()
    }

    #[test]
    fn without_aen_an_unmapped_namespace_stays_until_the_detach() {
        let s = without_aen(state(1, 1, HostKind::Single, true, true));
        let ts = [
            Transition::Create,
            map(0),
            att(0),
            Transition::Unmap { vol: 0, host: 0 },
        ];
        let end = assert_runs(&s, &ts);
        assert_eq!(nsids(&end), [vec![1]]);
        // Its namespace stays, reaching nothing, and is still reported as v0's path.
        assert_eq!(
            expected_violations(&end).into_iter().collect::<Vec<_>>(),
            [
                (PropertyKind::Leftover, host_name(0), Some(vol_name(0))),
                (PropertyKind::Truth, host_name(0), Some(vol_name(0)))
            ]
        );
        // With AENs the namespace goes at once.
        let with = assert_runs(&state(1, 1, HostKind::Single, true, true), &ts);
        assert_eq!(nsids(&with), [Vec::<u64>::new()]);
        let end = assert_runs(&s, &[&ts[..], &[det(0)]].concat());
        assert!(end.nvme.hosts.get(&0).is_none_or(|k| k.ctrls.is_empty()));
        assert!(expected_violations(&end).is_empty(), "{}", summary(&end));
    }

    #[test]
    fn without_aen_a_new_namespace_appears_at_the_attach_rescan() {
        let s = without_aen(state(1, 2, HostKind::Multipath, true, false));
        let ts = [
            Transition::Create,
            map(0),
            att(0),
            Transition::Create,
            map(1),
        ];
        let end = assert_runs(&s, &ts);
        // Native multipath off: one controller; v1 is not on it yet.
        assert_eq!(nsids(&end), [vec![1]]);
        let end = assert_runs(&s, &[&ts[..], &[att(1)]].concat());
        assert_eq!(nsids(&end), [vec![1, 2]]);
        assert!(matches!(
            end.outcome,
            Outcome::NvmeAttached { ident: 1, .. }
        ));
        assert!(expected_violations(&end).is_empty(), "{}", summary(&end));
    }

    #[test]
    fn without_aen_a_reused_nsid_is_cross_talk_until_the_rescan() {
        let s = without_aen(state(1, 1, HostKind::Single, true, true));
        let ts = [
            Transition::Create,
            map(0),
            att(0),
            Transition::Delete { vol: 0 },
            Transition::Create,
            map(1),
        ];
        let end = assert_runs(&s, &ts);
        assert!(expected_violations(&end).contains(&(
            PropertyKind::CrossTalk,
            host_name(0),
            Some(vol_name(1))
        )));
        // The attach's rescan drops the stale namespace; the retry's rescan adds v1's.
        let end = assert_runs(&s, &[&ts[..], &[att(1)]].concat());
        assert!(matches!(
            end.outcome,
            Outcome::NvmeAttached { ident: 1, .. }
        ));
        assert!(expected_violations(&end).is_empty(), "{}", summary(&end));
    }

    #[test]
    fn a_namespace_racing_the_connect_is_found_and_left_to_its_own_attach() {
        for aen in [true, false] {
            let mut s = state(1, 2, HostKind::Multipath, true, true);
            if let Some(n) = s.topology.nvme.as_mut() {
                n.aen = aen;
            }
            let ts = [Transition::Create, map(0), Transition::Create, race(0, 1)];
            let end = assert_runs(&s, &ts);
            assert_eq!(end.volumes.get(1).and_then(|v| v.mapped.get(&0)), Some(&2));
            assert_eq!(nsids(&end), [vec![1, 2], vec![1, 2]]);
            assert!(matches!(
                end.outcome,
                Outcome::NvmeAttached { ident: 0, .. }
            ));
            assert_eq!(
                expected_violations(&end).into_iter().collect::<Vec<_>>(),
                [(PropertyKind::Leftover, host_name(0), Some(vol_name(1)))]
            );
            // Cinder's order: detach, then unmap. Without AENs the host never hears of v0's
            // unmap: its namespace keeps the controllers (leftover) after both detaches.
            let unmap = |vol| Transition::Unmap { vol, host: 0 };
            let ts = [&ts[..], &[att(1), det(0), unmap(0), det(1), unmap(1)]].concat();
            let end = assert_runs(&s, &ts);
            let v = expected_violations(&end);
            if aen {
                assert!(v.is_empty(), "{}", summary(&end));
            } else {
                assert_eq!(
                    v.into_iter().collect::<Vec<_>>(),
                    [
                        (PropertyKind::Leftover, host_name(0), Some(vol_name(0))),
                        (PropertyKind::Leftover, host_name(0), Some(vol_name(1)))
                    ]
                );
            }
        }
    }

    #[test]
    fn a_race_reaches_live_controllers_by_aen_only() {
        // v0's controller lives on port 0; port 1 was down during its attach, so the second
        // attach connects port 1, where the race fires.
        for aen in [true, false] {
            let mut s = state(1, 2, HostKind::Multipath, true, true);
            if let Some(n) = s.topology.nvme.as_mut() {
                n.aen = aen;
            }
            let ts = [
                Transition::Create,
                map(0),
                Transition::PathDown { host: 0, portal: 1 },
                att(0),
                Transition::PathUp { host: 0, portal: 1 },
                Transition::Create,
                race(0, 1),
            ];
            let end = assert_runs(&s, &ts);
            let want = if aen {
                [vec![1, 2], vec![1, 2]]
            } else {
                [vec![1], vec![1, 2]]
            };
            assert_eq!(nsids(&end), want, "aen {aen}");
        }
    }

    #[test]
    fn a_race_without_a_connect_does_not_fire() {
        let s = state(1, 1, HostKind::Single, true, true);
        let ts = [
            Transition::Create,
            map(0),
            att(0),
            Transition::Create,
            race(0, 1),
        ];
        let end = assert_runs(&s, &ts);
        assert!(end.volumes.get(1).is_some_and(|v| v.mapped.is_empty()));
        assert!(end.nvme.race.is_none());
        // Only in one subsystem, and only when drawn.
        assert!(!allows(&end, &race(0, 0)));
        let per_volume = state(1, 1, HostKind::Single, false, true);
        let pv = [Transition::Create, map(0), Transition::Create]
            .iter()
            .fold(per_volume, |st, t| st.step(t));
        assert!(!allows(&pv, &race(0, 1)));
    }

    #[test]
    fn nqn_parsing_round_trips() {
        assert_eq!(tgt_of_nqn(SHARED_NQN), Some(None));
        assert_eq!(tgt_of_nqn(&format!("{NQN_PREFIX}v3")), Some(Some(3)));
        assert_eq!(tgt_of_nqn("nqn.other"), None);
        assert_eq!(NvmeName { x: 2, n: 5 }.to_string(), "nvme2n5");
    }
}
