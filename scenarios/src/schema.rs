//! The scenario file format (TOML, `schema = 1`). Every table rejects unknown keys, so a typo
//! is an error that names the file, the line and the key, never a silently ignored setting.
//! `scenarios/README.md` is the reference for third parties.

use serde::{Deserialize, Serialize};

/// A whole scenario file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Schema version; only `1` exists.
    pub schema: u32,
    /// Short name, unique in the catalogue (kebab-case).
    pub name: String,
    /// What the scenario shows and why it matters.
    pub description: String,
    /// The protocol the volumes are attached with.
    #[serde(default)]
    pub protocol: ProtocolName,
    /// The simulator's seed.
    #[serde(default)]
    pub seed: u64,
    /// What the scenario requires from a target (see [`Requires`]).
    #[serde(default)]
    pub requires: Requires,
    /// The hosts.
    #[serde(rename = "host")]
    pub hosts: Vec<HostDef>,
    /// The arrays.
    #[serde(rename = "array")]
    pub arrays: Vec<ArrayDef>,
    /// The steps, in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// The protocols a scenario can name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolName {
    /// iSCSI (the default).
    #[default]
    Iscsi,
    /// Fibre Channel.
    Fc,
    /// NVMe over Fabrics (TCP).
    Nvmeof,
}

impl ProtocolName {
    /// The name as written in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iscsi => "iscsi",
            Self::Fc => "fc",
            Self::Nvmeof => "nvmeof",
        }
    }
}

/// What a scenario requires from a target beyond what its hosts and arrays imply. A target
/// that cannot satisfy a requirement skips the scenario and prints why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requires {
    /// dm-multipath on the host and two portals or more (implied by a `multipath` host).
    #[serde(default)]
    pub multipath: bool,
    /// One target IQN shared by every volume (implied by an array with `iqn = "shared"`).
    #[serde(default)]
    pub shared_iqn: bool,
    /// The scenario relies on the array handing a freed LUN id to the next volume:
    /// `fresh` (new identity) or `same-identity` (implied by `identity = "reuse-on-lun"`).
    #[serde(default)]
    pub lun_reuse: Option<LunReusePolicy>,
    /// Needs the simulator even without faults (for example because it expects violations
    /// only the simulator's truth can see); the text says why.
    #[serde(default)]
    pub simulator: Option<String>,
}

/// How a scenario relies on LUN reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LunReusePolicy {
    /// The reused LUN reports the new volume's identity.
    Fresh,
    /// The reused LUN keeps the old volume's identity (tgtd).
    SameIdentity,
}

impl LunReusePolicy {
    /// The name as written in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::SameIdentity => "same-identity",
        }
    }
}

/// A host of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDef {
    /// Host name (also the last part of its initiator name).
    pub name: String,
    /// multipathd runs and the connector uses multipath.
    #[serde(default)]
    pub multipath: bool,
    /// multipathd's `user_friendly_names` (`mpatha` instead of the wwid).
    #[serde(default)]
    pub friendly_names: bool,
    /// How long udev takes to process an event, in milliseconds.
    #[serde(default)]
    pub udev_delay_ms: Option<u64>,
    /// Fibre Channel HBA ports (`[[host.hba]]`; protocol `fc`, at least one).
    #[serde(default, rename = "hba")]
    pub hbas: Vec<HbaDef>,
    /// NVMe-oF initiator settings (`[host.nvme]`; protocol `nvmeof`, defaults when absent).
    #[serde(default)]
    pub nvme: Option<NvmeHostDef>,
}

/// A World Wide Port Name: written `"50:06:01:60:90:20:31:81"`, `"0x5006016090203181"` or
/// `"5006016090203181"` (16 hex digits, any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wwpn(pub u64);

impl Wwpn {
    /// Parses the forms above; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let hex: String = if t.contains(':') {
            let parts: Vec<&str> = t.split(':').collect();
            if parts.len() != 8 || parts.iter().any(|p| p.len() != 2) {
                return None;
            }
            parts.concat()
        } else {
            t.to_owned()
        };
        if hex.len() != 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(&hex, 16).ok().map(Self)
    }
}

impl std::fmt::Display for Wwpn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:016x}", self.0)
    }
}

impl Serialize for Wwpn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Wwpn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid WWPN {text:?}: expected 16 hex digits, as \"50:06:01:60:90:20:31:81\" or \"0x5006016090203181\""
            ))
        })
    }
}

/// The state of an HBA port at boot (`fc_host/hostH/port_state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HbaState {
    /// `Online` (the default).
    #[default]
    Online,
    /// `Linkdown`: cable pulled, switch port disabled.
    Linkdown,
    /// `Offline`.
    Offline,
}

/// One FC HBA port of a host (`[[host.hba]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbaDef {
    /// The port's WWPN (`fc_host/hostH/port_name`).
    pub wwpn: Wwpn,
    /// The fabric (SAN) it is cabled to; zoning only joins ports of one fabric.
    pub fabric: String,
    /// The HBA's PCI function, `0000:05:00.2` (the `pci-...` part of by-path names).
    pub pci: String,
    /// A platform bus in front of the PCI root (`smb/smb:motherboard/80040000000.peu0-c0`):
    /// by-path names get the `platform-...-` prefix.
    #[serde(default)]
    pub platform: Option<String>,
    /// The port state at boot (default `online`).
    #[serde(default)]
    pub port_state: HbaState,
    /// Zoned with every array target port on its fabric (default true); `false`: the fabric
    /// lets it see no target port.
    #[serde(default = "yes")]
    pub zoned: bool,
    /// Listed in the `initiator_target_map` of the connection properties (default true);
    /// `false`: zoned, so it sees the array, but the map leaves it out, so the connector must
    /// not scan it.
    #[serde(default = "yes")]
    pub in_initiator_target_map: bool,
}

fn yes() -> bool {
    true
}

/// A host's NVMe-oF initiator (`[host.nvme]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmeHostDef {
    /// Native NVMe multipath (`/sys/module/nvme_core/parameters/multipath` = `Y`, default
    /// true): one `/dev/nvmeXnY` per namespace over every controller.
    #[serde(default = "yes")]
    pub native_multipath: bool,
    /// The kernel shows `,src_addr=<host ip>` in a controller's `address` (default true).
    #[serde(default = "yes")]
    pub src_addr: bool,
    /// `/etc/nvme/hostnqn` (default: derived from the host name).
    #[serde(default)]
    pub host_nqn: Option<String>,
}

impl Default for NvmeHostDef {
    fn default() -> Self {
        Self {
            native_multipath: true,
            src_addr: true,
            host_nqn: None,
        }
    }
}

/// How an array names its iSCSI targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IqnStyle {
    /// One target (IQN) per volume.
    PerVolume,
    /// One target shared by every volume, one LUN each.
    Shared,
}

/// What identity a volume created on a reused LUN gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityStyle {
    /// A fresh wwid for every volume (most arrays).
    Fresh,
    /// The wwid belongs to the target and LUN, so a reused LUN keeps it (`tgtd`'s default).
    ReuseOnLun,
}

/// How an iSCSI array builds the identities its LUNs report (VPD pages 0x80 and 0x83).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LunIdStyle {
    /// LIO-like (the default): a random NAA-6 id and serial per volume, INQUIRY
    /// `LIO-ORG`/`IBLOCK`.
    #[default]
    Lio,
    /// tgt-like (`tgtd`): every id computed from the target id and the LUN (`IET     <tid><lun>`,
    /// NAA-3 and NAA-6 designators, serial `beaf<tid><lun>`), INQUIRY `IET`/`VIRTUAL-DISK`,
    /// and a LUN 0 controller on every target; target ids count from 1.
    Tgt,
}

/// An array of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayDef {
    /// Array name.
    pub name: String,
    /// iSCSI portals, `ip:port` or `[v6]:port` (required for `iscsi`, refused otherwise).
    #[serde(default)]
    pub portals: Vec<String>,
    /// Target naming.
    #[serde(default = "default_iqn_style")]
    pub iqn: IqnStyle,
    /// The IQN (shared) or IQN prefix (per volume).
    #[serde(default)]
    pub iqn_name: Option<String>,
    /// Identity of volumes created on reused LUNs.
    #[serde(default = "default_identity")]
    pub identity: IdentityStyle,
    /// iSCSI: how LUN identities are built (`lio`, the default, or `tgt`; `tgt` needs
    /// `identity = "reuse-on-lun"`, since its ids belong to the target and LUN).
    #[serde(default)]
    pub identity_style: Option<LunIdStyle>,
    /// The first LUN id handed out (default 1; some arrays start at 0).
    #[serde(default)]
    pub first_lun: Option<u64>,
    /// FC target ports (required for `fc`): every port presents every LUN mapped to a host.
    #[serde(default)]
    pub fc_ports: Vec<FcPortDef>,
    /// NVMe-oF ports (required for `nvmeof`): every subsystem is reachable on every port.
    #[serde(default)]
    pub nvme_ports: Vec<NvmePortDef>,
    /// NVMe-oF subsystems: `per-volume` (default) or `shared` (one subsystem, one namespace
    /// per volume).
    #[serde(default)]
    pub subsystem: Option<IqnStyle>,
    /// The shared subsystem NQN, or the per-volume NQN prefix.
    #[serde(default)]
    pub nqn: Option<String>,
    /// NVMe-oF: the array sends namespace-change AENs, so hosts rescan by themselves
    /// (default true; `false`: a host keeps its view of a namespace until it rescans).
    #[serde(default)]
    pub aen: Option<bool>,
}

/// An FC target port of an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcPortDef {
    /// The port's WWPN.
    pub wwpn: Wwpn,
    /// The fabric it is cabled to.
    pub fabric: String,
}

/// An NVMe-oF transport.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NvmeTransportName {
    /// NVMe/TCP (the default).
    #[default]
    Tcp,
    /// NVMe/RDMA.
    Rdma,
}

/// An NVMe-oF port of an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmePortDef {
    /// Transport address (IP).
    pub traddr: String,
    /// Transport service id (default 4420).
    #[serde(default = "default_trsvcid")]
    pub trsvcid: u16,
    /// Transport (default `tcp`).
    #[serde(default)]
    pub transport: NvmeTransportName,
}

fn default_trsvcid() -> u16 {
    4420
}

fn default_iqn_style() -> IqnStyle {
    IqnStyle::PerVolume
}

fn default_identity() -> IdentityStyle {
    IdentityStyle::Fresh
}

/// What one step does. Every step may carry expectations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// The action.
    pub action: Action,
    /// The volume acted on (all actions but `settle` and `check`).
    #[serde(default)]
    pub volume: Option<String>,
    /// The host acted on; may be left out when the scenario has one host.
    #[serde(default)]
    pub host: Option<String>,
    /// The array for `create`; may be left out when the scenario has one array.
    #[serde(default)]
    pub array: Option<String>,
    /// `create`/`reuse`: the volume's name on the array, when it differs from `volume`
    /// (simulator only). Arrays with per-volume IQNs name the target after it, so giving a new
    /// volume a deleted volume's array name reuses its IQN.
    #[serde(default)]
    pub array_name: Option<String>,
    /// Size of a created volume in MiB (default 1024).
    #[serde(default)]
    pub size_mib: Option<u64>,
    /// `detach`: force the detach (data loss accepted, host must end clean).
    #[serde(default)]
    pub force: bool,
    /// `detach`: with force, do not report errors.
    #[serde(default)]
    pub ignore_errors: bool,
    /// `detach`: pass the attach's device info (default true; false = after a migration).
    #[serde(default)]
    pub device_info: Option<bool>,
    /// `migrate`: the source host (the volume is attached there).
    #[serde(default)]
    pub from: Option<String>,
    /// `migrate`: the destination host.
    #[serde(default)]
    pub to: Option<String>,
    /// `reuse`: the deleted volume whose LUN the new volume must get.
    #[serde(default)]
    pub of: Option<String>,
    /// `fault`: which fault to inject (see `faults::FAULTS`).
    #[serde(default)]
    pub fault: Option<String>,
    /// `fault = "path-down"`: the portal to take down (default: the array's first);
    /// `fault = "nvme-port-down"`: the port, `traddr:trsvcid` (default: the array's first).
    #[serde(default)]
    pub portal: Option<String>,
    /// `fault = "hba-linkdown"`: the host HBA whose link goes down (default: its first).
    #[serde(default)]
    pub wwpn: Option<Wwpn>,
    /// Counted faults: how many times the fault fires before it disarms (default: until
    /// `clear-faults`).
    #[serde(default)]
    pub times: Option<u32>,
    /// `udev-late`, `multipathd-slow`: the extra delay in milliseconds (default 30000).
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// What must hold after the step.
    #[serde(default)]
    pub expect: Expect,
}

/// The actions a step can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create a volume on an array.
    Create,
    /// Map (export) a volume to a host.
    Map,
    /// Unmap a volume from a host on the array only.
    Unmap,
    /// Delete a volume on the array only.
    Delete,
    /// Attach a volume with the connector.
    Attach,
    /// Detach a volume with the connector.
    Detach,
    /// Ask the connector for the volume's paths.
    Paths,
    /// Live migration as Nova does it: map to and attach on `to`, then detach from and
    /// unmap on `from` (detach options apply to the source detach).
    Migrate,
    /// Create `volume` on the array of `of` (deleting `of` first if it still exists) and map
    /// it to every host `of` was mapped to; the array must hand it `of`'s LUN ids.
    Reuse,
    /// Inject a fault.
    Fault,
    /// Remove every injected fault.
    ClearFaults,
    /// Let pending udev and multipathd events happen.
    Settle,
}

/// Expectations after a step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The step must fail, with an error containing this text.
    #[serde(default)]
    pub error: Option<String>,
    /// Exactly these properties must be broken after the step (default: none), e.g. to show
    /// that a leaked detach is detected: `violations = ["cross-talk"]`.
    #[serde(default)]
    pub violations: Vec<String>,
    /// `paths`: how many paths the connector must report.
    #[serde(default)]
    pub paths: Option<usize>,
    /// `paths`/`attach`/`migrate`: the volume whose identity every path (or the device)
    /// must carry.
    #[serde(default)]
    pub identity: Option<String>,
    /// With `error`: further texts the error must contain (what a forced detach dropped).
    #[serde(default)]
    pub error_mentions: Vec<String>,
    /// The orphan report of the step's host lists exactly these reasons (sorted, with
    /// repeats), e.g. `["stale_link"]`; `[]` = no orphans. Unset: not checked.
    #[serde(default)]
    pub orphans: Option<Vec<String>>,
    /// `true`: the step's host holds no SCSI disk, dm map, iSCSI session or
    /// `/dev/disk/by-path` link at all after the step.
    #[serde(default)]
    pub clean: bool,
    /// `true`: the step changed nothing on its host (tree summary identical before and
    /// after, no write or remove by the connector): "touches nothing".
    #[serde(default)]
    pub unchanged: bool,
}
