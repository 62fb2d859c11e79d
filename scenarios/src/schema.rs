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

/// An array of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrayDef {
    /// Array name.
    pub name: String,
    /// Portals, `ip:port` or `[v6]:port`.
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
    /// The first LUN id handed out (default 1; some arrays start at 0).
    #[serde(default)]
    pub first_lun: Option<u64>,
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
    /// `fault = "path-down"`: the portal to take down (default: the array's first).
    #[serde(default)]
    pub portal: Option<String>,
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
