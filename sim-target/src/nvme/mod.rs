//! NVMe over fabrics: subsystems with namespaces on arrays, controllers, subsystems and
//! namespaces in the host kernel (`nvme_core`, `nvme_fabrics`), with the 6.1 numbering rules.
//!
//! Host side, as `drivers/nvme/host/core.c` and `multipath.c` do it (and as the captures
//! `nvme-tcp-1ctrl.txt`, `nvme-tcp-2ctrl.txt`, `nvme-after-delete*.txt` show):
//! - A controller gets the lowest free instance of `nvme_instance_ida` (`nvmeN`, char 246:N).
//!   A subsystem seen for the first time is named after the controller that found it
//!   (`nvme-subsys<ctrl instance>`) and keeps that instance reserved until the subsystem goes,
//!   so a later controller never reuses it while the subsystem lives.
//! - A namespace head gets the lowest free instance >= 1 of the subsystem's `ns_ida` (not the
//!   nsid!). Native multipath on: the head disk is `nvme<S>n<head>` (block 259:m, `/dev` node,
//!   `ng<S>n<head>` char device) and each controller has a hidden path disk
//!   `nvme<S>c<C>n<head>` (in `/sys/block`, no `dev`, no `/dev` node). Multipath off: each
//!   controller has a plain disk `nvme<C>n<head>` with `ng<C>n<head>`.
//! - blkext minors are lowest free; the path disk is allocated (minor, diskseq) before its head.
//! - A scan (connect, AEN, `ns-rescan`, `rescan_controller`) drops namespaces whose identifiers
//!   changed or that vanished, and adds new ones; a namespace removed in a scan is not re-added
//!   in the same scan (the kernel's `nvme_validate_ns` removes, the next scan adds).
//! - The last path of a head going removes the head; the last controller of a subsystem going
//!   removes the subsystem.
//!
//! Array side: a subsystem (NQN, named like iSCSI targets through the array's `iqn_mode`) holds
//! namespaces; a namespace id is handed out lowest free when a volume is first exported in the
//! subsystem, and freed when it is unmapped from its last host (so it can be reused by another
//! volume, with that volume's uuid). A host sees the namespaces mapped to its host NQN; it may
//! connect when it has at least one (or the subsystem allows any host). With AEN support the
//! array tells live controllers about namespace changes a little later (an event).

pub(crate) mod attrs;
pub(crate) mod sysfs;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::array::ArrayTransport;
use crate::faults::Fault;
use crate::ids::{ArrayId, HostId, VolumeId};
use crate::kernel::lowest_free;
use crate::udev::Action;
use crate::world::{Event, World};

/// Char major of `/dev/nvmeN` on the captured kernel (dynamic).
pub(crate) const NVME_CHAR_MAJOR: u32 = 246;
/// Char major of `/dev/ngXnY` (nvme-generic) on the captured kernel (dynamic).
pub(crate) const NG_MAJOR: u32 = 245;
/// blkext: the major of NVMe block devices.
pub(crate) const BLKEXT_MAJOR: u32 = 259;
/// How long after a namespace change an AEN reaches the host's controllers.
pub(crate) const AEN_DELAY: Duration = Duration::from_millis(20);

/// An NVMe-oF transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NvmeTransport {
    /// NVMe/TCP.
    Tcp,
    /// NVMe/RDMA (RoCE).
    Rdma,
}

impl NvmeTransport {
    /// The name the kernel and `nvme` use (`tcp`, `rdma`).
    pub fn as_str(self) -> &'static str {
        match self {
            NvmeTransport::Tcp => "tcp",
            NvmeTransport::Rdma => "rdma",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(NvmeTransport::Tcp),
            "rdma" => Some(NvmeTransport::Rdma),
            _ => None,
        }
    }
}

/// An NVMe-oF port of an array.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NvmePort {
    /// Transport address (IP).
    pub traddr: String,
    /// Transport service id (TCP port).
    pub trsvcid: u16,
    /// Transport.
    pub transport: NvmeTransport,
}

impl NvmePort {
    /// A TCP port.
    pub fn tcp(traddr: impl Into<String>, trsvcid: u16) -> Self {
        Self {
            traddr: traddr.into(),
            trsvcid,
            transport: NvmeTransport::Tcp,
        }
    }
}

/// The NVMe side of an array spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeTargetSpec {
    /// Ports every subsystem is reachable on.
    pub ports: Vec<NvmePort>,
    /// Namespaces report a UUID (NIDT 3).
    pub uuid: bool,
    /// Namespaces report an NGUID (NIDT 2).
    pub nguid: bool,
    /// The array sends namespace-change AENs (the host rescans by itself).
    pub aen: bool,
    /// Any host NQN may connect (nvmet `attr_allow_any_host`); else only hosts with a
    /// namespace mapped in the subsystem.
    pub allow_any_host: bool,
    /// Controller firmware revision (`firmware_rev`, up to 8 chars).
    pub firmware_rev: String,
}

impl NvmeTargetSpec {
    /// nvmet-like: uuid and nguid, AENs, host allow-list, firmware `6.1.0-56`.
    pub fn new(ports: Vec<NvmePort>) -> Self {
        Self {
            ports,
            uuid: true,
            nguid: true,
            aen: true,
            allow_any_host: false,
            firmware_rev: "6.1.0-56".to_owned(),
        }
    }
}

/// The NVMe side of a host: nvme-cli installed and the fabrics modules loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeHostSpec {
    /// `/etc/nvme/hostnqn`.
    pub hostnqn: String,
    /// `/etc/nvme/hostid`.
    pub hostid: String,
    /// `/sys/class/dmi/id/product_uuid`.
    pub product_uuid: String,
    /// `/sys/module/nvme_core/parameters/multipath` is `Y`.
    pub native_multipath: bool,
    /// The kernel appends `,src_addr=<host ip>` to a TCP controller's `address` (newer
    /// kernels, 6.1 does).
    pub src_addr: bool,
}

impl NvmeHostSpec {
    /// Defaults for a host named `name`: a UUID derived from the name (stable), host NQN
    /// `nqn.2014-08.org.nvmexpress:uuid:<uuid>`, host id = that UUID, native multipath on,
    /// `src_addr` shown.
    pub fn for_host(name: &str) -> Self {
        let uuid = uuid_from_name(name);
        Self {
            hostnqn: format!("nqn.2014-08.org.nvmexpress:uuid:{uuid}"),
            hostid: uuid.clone(),
            product_uuid: uuid,
            native_multipath: true,
            src_addr: true,
        }
    }
}

/// FNV-1a, for stable names.
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn uuid_text(a: u64, b: u64) -> String {
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn uuid_from_name(name: &str) -> String {
    let a = fnv(name);
    let b = fnv(&format!("{name}/host"));
    // Version 4, variant 1 bits, so it looks like a real random UUID.
    uuid_text(
        (a & !0xf000) | 0x4000,
        (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000,
    )
}

/// A namespace's identifiers, lower-case hyphenated as sysfs prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsIds {
    /// Namespace UUID (`uuid`).
    pub uuid: Option<String>,
    /// Namespace GUID (`nguid`, printed in UUID form).
    pub nguid: Option<String>,
}

impl NsIds {
    pub(crate) fn fresh(rng: &mut crate::clock::SplitMix64, spec: &NvmeTargetSpec) -> Self {
        let (a, b, c, d) = (
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64(),
        );
        let uuid = uuid_text(
            (a & !0xf000) | 0x4000,
            (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000,
        );
        let nguid = uuid_text(c, d);
        Self {
            uuid: (spec.uuid || !spec.nguid).then_some(uuid),
            nguid: spec.nguid.then_some(nguid),
        }
    }

    /// sysfs `wwid` (`wwid_show`): `uuid.<uuid>`, else `eui.<nguid hex>`.
    pub fn wwid(&self) -> String {
        match (&self.uuid, &self.nguid) {
            (Some(u), _) => format!("uuid.{u}"),
            (None, Some(g)) => format!("eui.{}", g.replace('-', "")),
            (None, None) => "eui.0000000000000000".to_owned(),
        }
    }
}

/// A controller state, as sysfs `state` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtrlState {
    /// `live`.
    Live,
    /// `connecting`: the connection was lost, the kernel reconnects every `reconnect_delay`.
    Connecting,
    /// `resetting`.
    Resetting,
    /// `deleting`.
    Deleting,
}

impl CtrlState {
    /// The sysfs text.
    pub fn as_str(self) -> &'static str {
        match self {
            CtrlState::Live => "live",
            CtrlState::Connecting => "connecting",
            CtrlState::Resetting => "resetting",
            CtrlState::Deleting => "deleting",
        }
    }
}

/// A namespace behind one controller (the per-path disk).
#[derive(Debug, Clone)]
pub(crate) struct PathNs {
    pub(crate) nsid: u32,
    /// Head instance in the subsystem.
    pub(crate) head: u32,
    /// Identifiers read at scan time.
    pub(crate) ids: NsIds,
    pub(crate) size_bytes: u64,
    pub(crate) minor: u32,
    pub(crate) diskseq: u64,
    /// `ngXnY` minor (multipath off only).
    pub(crate) ng_minor: Option<u32>,
}

#[derive(Debug, Clone)]
pub(crate) struct Ctrl {
    pub(crate) instance: u32,
    pub(crate) subsys: u32,
    pub(crate) array: ArrayId,
    pub(crate) nqn: String,
    pub(crate) port: NvmePort,
    pub(crate) hostnqn: String,
    pub(crate) hostid: String,
    pub(crate) src_addr: Option<String>,
    pub(crate) cntlid: u16,
    pub(crate) state: CtrlState,
    pub(crate) ctrl_loss_tmo: Option<u32>,
    pub(crate) reconnect_delay: u32,
    pub(crate) hwmon: u32,
    pub(crate) ns: BTreeMap<u32, PathNs>,
}

/// A namespace head (multipath node) of a subsystem.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) instance: u32,
    pub(crate) nsid: u32,
    pub(crate) ids: NsIds,
    pub(crate) size_bytes: u64,
    /// The head disk (multipath on only): blkext minor, ng minor, diskseq.
    pub(crate) disk: Option<(u32, u32, u64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Subsys {
    pub(crate) instance: u32,
    pub(crate) nqn: String,
    pub(crate) serial: String,
    pub(crate) model: String,
    pub(crate) firmware_rev: String,
    pub(crate) heads: BTreeMap<u32, Head>,
}

/// The NVMe part of a host kernel.
#[derive(Debug, Clone, Default)]
pub(crate) struct NvmeKernel {
    /// Native multipath (`nvme_core.multipath=Y`).
    pub(crate) multipath: bool,
    pub(crate) ctrls: BTreeMap<u32, Ctrl>,
    pub(crate) subsystems: BTreeMap<u32, Subsys>,
}

/// A block device of the NVMe stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NvmeBlock {
    /// A head disk `nvme<S>n<H>` (multipath on).
    Head { subsys: u32, head: u32 },
    /// A per-controller disk: hidden `nvme<S>c<C>n<H>` (multipath on) or `nvme<C>n<H>`.
    Path { ctrl: u32, nsid: u32 },
}

impl NvmeKernel {
    pub(crate) fn path_name(&self, ctrl: &Ctrl, ns: &PathNs, multipath: bool) -> String {
        if multipath {
            format!("nvme{}c{}n{}", ctrl.subsys, ctrl.instance, ns.head)
        } else {
            format!("nvme{}n{}", ctrl.instance, ns.head)
        }
    }

    /// Every NVMe block device name with what it is.
    pub(crate) fn blocks(&self, multipath: bool) -> Vec<(String, NvmeBlock)> {
        let mut out = Vec::new();
        for s in self.subsystems.values() {
            for h in s.heads.values() {
                if h.disk.is_some() {
                    out.push((
                        format!("nvme{}n{}", s.instance, h.instance),
                        NvmeBlock::Head {
                            subsys: s.instance,
                            head: h.instance,
                        },
                    ));
                }
            }
        }
        for c in self.ctrls.values() {
            for ns in c.ns.values() {
                out.push((
                    self.path_name(c, ns, multipath),
                    NvmeBlock::Path {
                        ctrl: c.instance,
                        nsid: ns.nsid,
                    },
                ));
            }
        }
        out
    }

    fn mp_mode(&self) -> bool {
        self.multipath
    }

    pub(crate) fn find(&self, name: &str) -> Option<NvmeBlock> {
        let mp = self.mp_mode();
        self.blocks(mp)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
    }

    pub(crate) fn block_exists(&self, name: &str) -> bool {
        name.starts_with("nvme") && self.find(name).is_some()
    }

    pub(crate) fn block_size(&self, name: &str) -> Option<u64> {
        match self.find(name)? {
            NvmeBlock::Head { subsys, head } => self
                .subsystems
                .get(&subsys)?
                .heads
                .get(&head)
                .map(|h| h.size_bytes),
            NvmeBlock::Path { ctrl, nsid } => {
                self.ctrls.get(&ctrl)?.ns.get(&nsid).map(|n| n.size_bytes)
            }
        }
    }

    fn used_minors(&self) -> impl Iterator<Item = u32> + '_ {
        let heads = self
            .subsystems
            .values()
            .flat_map(|s| s.heads.values())
            .filter_map(|h| h.disk.map(|(m, _, _)| m));
        let paths = self
            .ctrls
            .values()
            .flat_map(|c| c.ns.values())
            .map(|n| n.minor);
        heads.chain(paths)
    }

    fn used_ng(&self) -> impl Iterator<Item = u32> + '_ {
        let heads = self
            .subsystems
            .values()
            .flat_map(|s| s.heads.values())
            .filter_map(|h| h.disk.map(|(_, g, _)| g));
        let paths = self
            .ctrls
            .values()
            .flat_map(|c| c.ns.values())
            .filter_map(|n| n.ng_minor);
        heads.chain(paths)
    }
}

/// Why `nvme connect` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectError {
    /// A controller with the same parameters exists.
    AlreadyConnected,
    /// Nothing listens there (ECONNREFUSED).
    Refused,
    /// The port does not answer (fault): the write times out.
    TimedOut,
    /// The target rejected the connect (unknown subsystem, host not allowed): EIO.
    Rejected,
}

/// Parameters of a connect request.
#[derive(Debug, Clone)]
pub(crate) struct ConnectArgs {
    pub(crate) port: NvmePort,
    pub(crate) nqn: String,
    pub(crate) hostnqn: String,
    pub(crate) hostid: String,
    pub(crate) ctrl_loss_tmo: Option<u32>,
    pub(crate) reconnect_delay: u32,
}

/// Truth about one NVMe controller of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerTruth {
    /// `nvmeN`.
    pub name: String,
    /// `nvme-subsysS`.
    pub subsystem: String,
    /// Subsystem NQN.
    pub nqn: String,
    /// `traddr:trsvcid`.
    pub portal: String,
    /// Transport.
    pub transport: NvmeTransport,
    /// Host NQN it connected with.
    pub hostnqn: String,
    /// State as sysfs shows it.
    pub state: CtrlState,
    /// The array it reaches.
    pub array: ArrayId,
    /// Namespace ids it has a path namespace for.
    pub nsids: Vec<u32>,
}

impl World {
    fn nvme_spec(&self, array: ArrayId) -> Option<&NvmeTargetSpec> {
        match &self.arrays.get(array.0 as usize)?.spec.transport {
            ArrayTransport::Nvme(s) => Some(s),
            _ => None,
        }
    }

    /// Sets up a new host's NVMe stack (multipath mode from its spec).
    pub(crate) fn nvme_init_host(&mut self, host: HostId) {
        let mp = self
            .host_ref(host)
            .spec
            .nvme
            .as_ref()
            .is_some_and(|n| n.native_multipath);
        self.host_mut(host).kernel.nvme.multipath = mp;
    }

    /// Whether an NVMe port is unreachable from `host` (fault).
    pub(crate) fn nvme_port_down(&self, host: HostId, port: &NvmePort) -> bool {
        self.faults.any(|f| match f {
            Fault::NvmePortDown {
                host: h,
                traddr,
                trsvcid,
            } => *h == host && *traddr == port.traddr && *trsvcid == port.trsvcid,
            _ => false,
        })
    }

    /// A [`Fault::NvmePortDown`] was cleared: the port answers again, and each controller of
    /// the host on it that is no longer `connecting` reconnects. As the kernel does when a
    /// reconnect succeeds (`nvme_start_ctrl` queues `nvme_queue_scan`), it scans its
    /// namespaces: those mapped while it was away appear, those unmapped go. (An AEN sent
    /// while it was away was lost with the connection.)
    pub(crate) fn nvme_port_back(&mut self, host: HostId, traddr: &str, trsvcid: u16) {
        let back: Vec<u32> = self
            .host_ref(host)
            .kernel
            .nvme
            .ctrls
            .values()
            .filter(|c| c.port.traddr == traddr && c.port.trsvcid == trsvcid)
            .filter(|c| self.ctrl_state(host, c) == CtrlState::Live)
            .map(|c| c.instance)
            .collect();
        for instance in back {
            tracing::debug!(%host, instance, "nvme controller reconnected: rescanning");
            self.nvme_scan(host, instance);
        }
    }

    /// The state a controller shows now (a down port makes a live controller `connecting`).
    pub(crate) fn ctrl_state(&self, host: HostId, c: &Ctrl) -> CtrlState {
        if c.state == CtrlState::Live && self.nvme_port_down(host, &c.port) {
            CtrlState::Connecting
        } else {
            c.state
        }
    }

    /// The namespaces the array exposes to `hostnqn` in subsystem `nqn` now:
    /// nsid -> (volume, ids, size).
    pub(crate) fn exposed_namespaces(
        &self,
        array: ArrayId,
        nqn: &str,
        hostnqn: &str,
    ) -> BTreeMap<u32, (VolumeId, NsIds, u64)> {
        let mut out = BTreeMap::new();
        let Some(t) = self
            .arrays
            .get(array.0 as usize)
            .and_then(|a| a.targets.get(nqn))
        else {
            return out;
        };
        for ((initiator, nsid), vol) in &t.luns {
            if initiator != hostnqn {
                continue;
            }
            let (Ok(nsid), Some(v)) = (u32::try_from(*nsid), self.volumes.get(vol)) else {
                continue;
            };
            if let Some(ids) = &v.ns_ids {
                out.insert(nsid, (*vol, ids.clone(), v.public.size_bytes));
            }
        }
        out
    }

    /// `nvme connect`: creates a live controller and scans its namespaces.
    pub(crate) fn nvme_connect(
        &mut self,
        host: HostId,
        args: ConnectArgs,
    ) -> Result<u32, ConnectError> {
        let k = &self.host_ref(host).kernel.nvme;
        let dup = k.ctrls.values().any(|c| {
            c.port == args.port
                && c.nqn == args.nqn
                && c.hostnqn == args.hostnqn
                && c.state != CtrlState::Deleting
        });
        if dup {
            return Err(ConnectError::AlreadyConnected);
        }
        let array = self
            .arrays
            .iter()
            .position(|a| matches!(&a.spec.transport, ArrayTransport::Nvme(s) if s.ports.contains(&args.port)))
            .and_then(|i| u32::try_from(i).ok())
            .map(ArrayId)
            .ok_or(ConnectError::Refused)?;
        if self.nvme_port_down(host, &args.port) {
            return Err(ConnectError::TimedOut);
        }
        // Another attach racing with this one maps a volume of this subsystem first.
        let racing: Vec<Fault> = self
            .faults
            .list()
            .into_iter()
            .filter(|f| {
                matches!(f, Fault::NamespaceAppears { host: h, volume } if *h == host
                && self.volumes.get(volume).is_some_and(|v| v.iqn == args.nqn))
            })
            .collect();
        for f in racing {
            if let Fault::NamespaceAppears { volume, .. } = &f {
                tracing::debug!(%host, %volume, "fault: namespace mapped concurrently");
                let _ = self.map_volume(*volume, host);
            }
            self.faults.remove(&f);
        }
        let spec = self
            .nvme_spec(array)
            .cloned()
            .ok_or(ConnectError::Refused)?;
        let a = self.array_ref(array);
        let Some(target) = a.targets.get(&args.nqn) else {
            return Err(ConnectError::Rejected);
        };
        let allowed = spec.allow_any_host || target.luns.keys().any(|(i, _)| *i == args.hostnqn);
        if !allowed {
            return Err(ConnectError::Rejected);
        }
        let serial = format!("{:016x}{:04x}", fnv(&a.spec.name), target.tid & 0xffff);
        let model = a.spec.model.clone();
        let cntlid = self.next_cntlid(array, &args.nqn);
        let src_addr = {
            let hs = &self.host_ref(host).spec;
            hs.nvme
                .as_ref()
                .is_some_and(|n| n.src_addr && args.port.transport == NvmeTransport::Tcp)
                .then(|| hs.ip.clone())
        };
        let k = &mut self.host_mut(host).kernel.nvme;
        let reserved = k.ctrls.keys().chain(k.subsystems.keys()).copied();
        let instance = lowest_free(reserved);
        let hwmon = lowest_free(k.ctrls.values().map(|c| c.hwmon));
        let subsys = match k.subsystems.values().find(|s| s.nqn == args.nqn) {
            Some(s) => s.instance,
            None => {
                k.subsystems.insert(
                    instance,
                    Subsys {
                        instance,
                        nqn: args.nqn.clone(),
                        serial,
                        model,
                        firmware_rev: spec.firmware_rev.clone(),
                        heads: BTreeMap::new(),
                    },
                );
                instance
            }
        };
        tracing::debug!(%host, instance, subsys, nqn = %args.nqn, "nvme controller created");
        k.ctrls.insert(
            instance,
            Ctrl {
                instance,
                subsys,
                array,
                nqn: args.nqn,
                port: args.port,
                hostnqn: args.hostnqn,
                hostid: args.hostid,
                src_addr,
                cntlid,
                state: CtrlState::Live,
                ctrl_loss_tmo: args.ctrl_loss_tmo,
                reconnect_delay: args.reconnect_delay,
                hwmon,
                ns: BTreeMap::new(),
            },
        );
        self.nvme_scan(host, instance);
        Ok(instance)
    }

    /// nvmet hands out controller ids lowest free from 1 per subsystem, over every host.
    fn next_cntlid(&self, array: ArrayId, nqn: &str) -> u16 {
        let used: BTreeSet<u16> = self
            .hosts
            .iter()
            .flat_map(|h| h.kernel.nvme.ctrls.values())
            .filter(|c| c.array == array && c.nqn == nqn)
            .map(|c| c.cntlid)
            .collect();
        (1..=u16::MAX)
            .find(|i| !used.contains(i))
            .unwrap_or(u16::MAX)
    }

    /// Scans a controller's namespaces against what the array exposes now.
    pub(crate) fn nvme_scan(&mut self, host: HostId, instance: u32) {
        let Some(c) = self
            .host_ref(host)
            .kernel
            .nvme
            .ctrls
            .get(&instance)
            .cloned()
        else {
            return;
        };
        if self.ctrl_state(host, &c) != CtrlState::Live {
            return;
        }
        let exposed = self.exposed_namespaces(c.array, &c.nqn, &c.hostnqn);
        let mut removed = BTreeSet::new();
        for (nsid, ns) in &c.ns {
            match exposed.get(nsid) {
                Some((_, ids, size)) if *ids == ns.ids => {
                    if *size != ns.size_bytes {
                        self.nvme_resize(host, instance, *nsid, *size);
                    }
                }
                Some(_) => {
                    tracing::debug!(%host, instance, nsid, "identifiers changed: namespace removed");
                    self.nvme_remove_ns(host, instance, *nsid);
                    removed.insert(*nsid);
                }
                None => {
                    self.nvme_remove_ns(host, instance, *nsid);
                    removed.insert(*nsid);
                }
            }
        }
        for (nsid, (_, ids, size)) in exposed {
            if c.ns.contains_key(&nsid) || removed.contains(&nsid) {
                continue;
            }
            self.nvme_add_ns(host, instance, nsid, ids, size);
        }
    }

    fn nvme_resize(&mut self, host: HostId, instance: u32, nsid: u32, size: u64) {
        let k = &mut self.host_mut(host).kernel.nvme;
        let Some(c) = k.ctrls.get_mut(&instance) else {
            return;
        };
        let subsys = c.subsys;
        let Some(ns) = c.ns.get_mut(&nsid) else {
            return;
        };
        ns.size_bytes = size;
        let head = ns.head;
        if let Some(h) = k
            .subsystems
            .get_mut(&subsys)
            .and_then(|s| s.heads.get_mut(&head))
        {
            h.size_bytes = size;
        }
    }

    fn nvme_add_ns(&mut self, host: HostId, instance: u32, nsid: u32, ids: NsIds, size: u64) {
        let multipath = self.host_ref(host).kernel.nvme.multipath;
        let h = self.host_mut(host);
        let kernel = &mut h.kernel;
        let k = &mut kernel.nvme;
        let Some(subsys) = k.ctrls.get(&instance).map(|c| c.subsys) else {
            return;
        };
        let existing = k
            .subsystems
            .get(&subsys)
            .and_then(|s| s.heads.values().find(|h| h.nsid == nsid))
            .map(|h| (h.instance, h.ids.clone()));
        let head = match existing {
            Some((_, old)) if old != ids => {
                tracing::warn!(
                    instance,
                    nsid,
                    "IDs don't match for shared namespace: not added"
                );
                return;
            }
            Some((head, _)) => Some(head),
            None => None,
        };
        let minor = lowest_free(k.used_minors());
        let path_seq = {
            kernel.last_diskseq += 1;
            kernel.last_diskseq
        };
        let k = &mut kernel.nvme;
        let ng_minor = (!multipath).then(|| lowest_free(k.used_ng()));
        let head = match head {
            Some(h) => h,
            None => {
                let Some(s) = k.subsystems.get(&subsys) else {
                    return;
                };
                (1..).find(|i| !s.heads.contains_key(i)).unwrap_or(u32::MAX)
            }
        };
        let ns = PathNs {
            nsid,
            head,
            ids: ids.clone(),
            size_bytes: size,
            minor,
            diskseq: path_seq,
            ng_minor,
        };
        let Some(c) = k.ctrls.get_mut(&instance) else {
            return;
        };
        c.ns.insert(nsid, ns);
        let mut new_head = None;
        let has_head = k
            .subsystems
            .get(&subsys)
            .is_some_and(|s| s.heads.contains_key(&head));
        if !has_head {
            let disk = if multipath {
                let hm = lowest_free(k.used_minors());
                let ng = lowest_free(k.used_ng());
                kernel.last_diskseq += 1;
                Some((hm, ng, kernel.last_diskseq))
            } else {
                None
            };
            let k = &mut kernel.nvme;
            if let Some(s) = k.subsystems.get_mut(&subsys) {
                s.heads.insert(
                    head,
                    Head {
                        instance: head,
                        nsid,
                        ids,
                        size_bytes: size,
                        disk,
                    },
                );
                if disk.is_some() {
                    new_head = Some(format!("nvme{subsys}n{head}"));
                }
            }
        }
        let path_name = if multipath {
            format!("nvme{subsys}c{instance}n{head}")
        } else {
            format!("nvme{instance}n{head}")
        };
        tracing::debug!(%host, instance, nsid, %path_name, ?new_head, "nvme namespace added");
        self.queue_udev(host, Action::Add, &path_name);
        if let Some(n) = new_head {
            self.queue_udev(host, Action::Add, &n);
        }
    }

    fn nvme_remove_ns(&mut self, host: HostId, instance: u32, nsid: u32) {
        let k = &self.host_ref(host).kernel.nvme;
        let mp = k.mp_mode();
        let Some(c) = k.ctrls.get(&instance) else {
            return;
        };
        let Some(ns) = c.ns.get(&nsid) else {
            return;
        };
        let path_name = k.path_name(c, ns, mp);
        let subsys = c.subsys;
        let head = ns.head;
        let k = &mut self.host_mut(host).kernel.nvme;
        if let Some(c) = k.ctrls.get_mut(&instance) {
            c.ns.remove(&nsid);
        }
        let still_used = k
            .ctrls
            .values()
            .any(|c| c.subsys == subsys && c.ns.values().any(|n| n.head == head));
        let mut gone_head = None;
        if !still_used
            && let Some(s) = k.subsystems.get_mut(&subsys)
            && let Some(h) = s.heads.remove(&head)
            && h.disk.is_some()
        {
            gone_head = Some(format!("nvme{subsys}n{head}"));
        }
        tracing::debug!(%host, instance, nsid, %path_name, ?gone_head, "nvme namespace removed");
        self.queue_udev(host, Action::Remove, &path_name);
        if let Some(n) = gone_head {
            self.queue_udev(host, Action::Remove, &n);
        }
    }

    /// `delete_controller` / `nvme disconnect`: removes the controller's namespaces, the
    /// controller, and the subsystem when it was the last one.
    pub(crate) fn nvme_delete_ctrl(&mut self, host: HostId, instance: u32) -> bool {
        let Some(c) = self
            .host_ref(host)
            .kernel
            .nvme
            .ctrls
            .get(&instance)
            .cloned()
        else {
            return false;
        };
        for nsid in c.ns.keys() {
            self.nvme_remove_ns(host, instance, *nsid);
        }
        let k = &mut self.host_mut(host).kernel.nvme;
        k.ctrls.remove(&instance);
        if !k.ctrls.values().any(|o| o.subsys == c.subsys) {
            k.subsystems.remove(&c.subsys);
        }
        tracing::debug!(%host, instance, "nvme controller deleted");
        true
    }

    /// The array changed the namespaces of subsystem `nqn`: live controllers get an AEN.
    pub(crate) fn nvme_namespaces_changed(&mut self, array: ArrayId, nqn: &str) {
        if !self.nvme_spec(array).is_some_and(|s| s.aen) {
            return;
        }
        let mut targets = Vec::new();
        for (hi, h) in self.hosts.iter().enumerate() {
            let Ok(hi) = u32::try_from(hi) else { continue };
            for c in h.kernel.nvme.ctrls.values() {
                if c.array == array && c.nqn == nqn {
                    targets.push((HostId(hi), c.instance));
                }
            }
        }
        for (host, ctrl) in targets {
            self.schedule(host, AEN_DELAY, Event::NvmeAen { host, ctrl });
        }
    }

    /// The volume I/O to an NVMe block device reaches now.
    pub(crate) fn nvme_backing(&self, host: HostId, name: &str) -> Option<VolumeId> {
        let k = &self.host_ref(host).kernel.nvme;
        let (ctrl, nsid) = match k.find(name)? {
            NvmeBlock::Path { ctrl, nsid } => (k.ctrls.get(&ctrl)?, nsid),
            NvmeBlock::Head { subsys, head } => {
                let h = k.subsystems.get(&subsys)?.heads.get(&head)?;
                let c = k
                    .ctrls
                    .values()
                    .filter(|c| c.subsys == subsys && c.ns.values().any(|n| n.head == head))
                    .find(|c| self.ctrl_state(host, c) == CtrlState::Live)
                    .or_else(|| k.ctrls.values().find(|c| c.subsys == subsys))?;
                (c, h.nsid)
            }
        };
        self.exposed_namespaces(ctrl.array, &ctrl.nqn, &ctrl.hostnqn)
            .get(&nsid)
            .map(|(v, _, _)| *v)
    }

    /// Whether I/O to an NVMe block device works now: some path's controller is live and
    /// the namespace is still there.
    pub(crate) fn nvme_io_ok(&self, host: HostId, name: &str) -> bool {
        let k = &self.host_ref(host).kernel.nvme;
        let live = match k.find(name) {
            Some(NvmeBlock::Path { ctrl, .. }) => k
                .ctrls
                .get(&ctrl)
                .is_some_and(|c| self.ctrl_state(host, c) == CtrlState::Live),
            Some(NvmeBlock::Head { subsys, head }) => k.ctrls.values().any(|c| {
                c.subsys == subsys
                    && c.ns.values().any(|n| n.head == head)
                    && self.ctrl_state(host, c) == CtrlState::Live
            }),
            None => false,
        };
        live && self.nvme_backing(host, name).is_some()
    }

    /// The NVMe block devices of a host for [`World::host_devices`]: heads (multipath on) or
    /// per-controller disks (multipath off). Hidden path disks are listed as the head's
    /// `slaves`, never as devices of their own.
    pub(crate) fn nvme_device_truths(
        &self,
        host: HostId,
        links_to: &dyn Fn(&str) -> Vec<String>,
    ) -> Vec<crate::DeviceTruth> {
        let k = &self.host_ref(host).kernel.nvme;
        let mp = k.mp_mode();
        let mut out = Vec::new();
        for s in k.subsystems.values() {
            for h in s.heads.values().filter(|h| h.disk.is_some()) {
                let name = format!("nvme{}n{}", s.instance, h.instance);
                let slaves = k
                    .ctrls
                    .values()
                    .filter(|c| c.subsys == s.instance)
                    .filter_map(|c| {
                        c.ns.values()
                            .find(|n| n.head == h.instance)
                            .map(|n| k.path_name(c, n, true))
                    })
                    .collect();
                out.push(crate::DeviceTruth {
                    hctl: None,
                    reported_wwid: h.ids.wwid(),
                    backing: self.nvme_backing(host, &name),
                    links: links_to(&name),
                    holders: Vec::new(),
                    slaves,
                    name,
                });
            }
        }
        if !mp {
            for c in k.ctrls.values() {
                for n in c.ns.values() {
                    let name = k.path_name(c, n, false);
                    out.push(crate::DeviceTruth {
                        hctl: None,
                        reported_wwid: n.ids.wwid(),
                        backing: self.nvme_backing(host, &name),
                        links: links_to(&name),
                        holders: Vec::new(),
                        slaves: Vec::new(),
                        name,
                    });
                }
            }
        }
        out
    }

    /// Truth: every NVMe controller of a host.
    pub fn controllers(&self, host: HostId) -> Vec<ControllerTruth> {
        let k = &self.host_ref(host).kernel.nvme;
        k.ctrls
            .values()
            .map(|c| ControllerTruth {
                name: format!("nvme{}", c.instance),
                subsystem: format!("nvme-subsys{}", c.subsys),
                nqn: c.nqn.clone(),
                portal: format!("{}:{}", c.port.traddr, c.port.trsvcid),
                transport: c.port.transport,
                hostnqn: c.hostnqn.clone(),
                state: self.ctrl_state(host, c),
                array: c.array,
                nsids: c.ns.keys().copied().collect(),
            })
            .collect()
    }

    /// Maps a volume of an NVMe array to a host *now*, as another attach racing with the
    /// caller would (the namespace appears on live controllers after the AEN delay). Same as
    /// [`World::map_volume`]; named for the scenario it serves.
    pub fn map_namespace_concurrently(
        &mut self,
        vol: VolumeId,
        host: HostId,
    ) -> Result<crate::Mapping, crate::SimError> {
        self.model_changed();
        self.map_volume(vol, host)
    }

    /// os-brick's `nvmeof` connection properties (new single-target format).
    pub(crate) fn nvme_connection_properties(
        &self,
        vol: VolumeId,
        host: HostId,
        nqn: &str,
        nsid: u64,
    ) -> serde_json::Value {
        let v = self.volumes.get(&vol);
        let ids = v.and_then(|v| v.ns_ids.clone());
        let array = v.map(|v| v.public.array);
        let portals: Vec<serde_json::Value> = array
            .and_then(|a| self.nvme_spec(a))
            .map(|s| {
                s.ports
                    .iter()
                    .map(|p| {
                        serde_json::json!([p.traddr, p.trsvcid.to_string(), p.transport.as_str()])
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut data = serde_json::json!({
            "target_nqn": nqn,
            "vol_uuid": ids.as_ref().and_then(|i| i.uuid.clone()),
            "portals": portals,
            "ns_id": nsid.to_string(),
            "volume_id": v.map(|v| v.public.name.clone()),
            "encrypted": false,
            "access_mode": "rw",
        });
        if let Some(obj) = data.as_object_mut() {
            if let Some(g) = ids.and_then(|i| i.nguid) {
                obj.insert("volume_nguid".into(), serde_json::json!(g));
            }
            if let Some(n) = &self.host_ref(host).spec.nvme {
                obj.insert("host_nqn".into(), serde_json::json!(n.hostnqn));
            }
        }
        serde_json::json!({ "driver_volume_type": "nvmeof", "data": data })
    }
}

#[cfg(test)]
mod tests;
