//! The agent's wire format: the JSON bodies of every route, shared by the server
//! ([`crate::agent`]) and the verifier client ([`crate::verify`]).
//!
//! These are deliberately *copies* of the connectors' result types, not the types
//! themselves: the HTTP contract changes only when this file changes. Enums carry an
//! `Other` variant so that an older verifier can read a newer agent's answer.

use serde::{Deserialize, Serialize};

use brick_connectors::{HostPath, Wwid};

/// `GET /healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the agent answers.
    pub status: String,
    /// The agent's version (`brick --version`).
    pub version: String,
    /// Always true: the agent never attaches, detaches or writes.
    pub read_only: bool,
}

/// `GET /v1/{protocol}/search-path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPath {
    /// The protocol asked for (its canonical name: `iscsi`, `fc`, `nvmeof`, `local`).
    pub protocol: String,
    /// The directory the connector looks for devices in, if it has one.
    pub search_path: Option<HostPath>,
}

/// `GET /v1/{protocol}/volumes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volumes {
    /// The protocol asked for.
    pub protocol: String,
    /// Every entry of the search path (os-brick's `get_all_available_volumes`).
    pub volumes: Vec<HostPath>,
    /// Side effects the connector tried and the agent refused (should always be empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

/// `POST /v1/{protocol}/paths`: a volume's existing paths on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paths {
    /// The protocol asked for.
    pub protocol: String,
    /// Whether the connector ran with `use_multipath` (`?multipath=true`): then every
    /// target of the properties is checked, not only those with a live session.
    pub multipath: bool,
    /// The paths that exist, each with its device and that device's identity.
    pub paths: Vec<PathEntry>,
    /// What discovery skipped and why (dangling links, unreadable attributes).
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
}

/// One existing path of a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEntry {
    /// The path, e.g. `/dev/disk/by-path/ip-...-lun-1`.
    pub path: HostPath,
    /// The device it resolves to inside the host root (`/dev/sda`).
    pub device: Option<HostPath>,
    /// The device's identity from sysfs.
    pub wwid: Option<Wwid>,
}

impl From<&brick_connectors::VolumePath> for PathEntry {
    fn from(p: &brick_connectors::VolumePath) -> Self {
        Self {
            path: p.path.clone(),
            device: p.device.clone(),
            wwid: p.wwid.clone(),
        }
    }
}

/// Something the agent could not read or chose to skip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// The host path concerned, if any.
    #[serde(default)]
    pub path: Option<HostPath>,
    /// What happened.
    pub message: String,
}

impl From<&brick_connectors::Diagnostic> for Diagnostic {
    fn from(d: &brick_connectors::Diagnostic) -> Self {
        Self {
            path: d.path.clone(),
            message: d.message.clone(),
        }
    }
}

/// `GET /v1/orphans`: everything on the host that looks left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphans {
    /// The suspects.
    pub orphans: Vec<Orphan>,
    /// What could not be read.
    #[serde(default)]
    pub diagnostics: Vec<Diagnostic>,
}

/// One suspect leftover (see `brick_connectors::orphans`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// `link`, `device`, `map` or `session`.
    pub kind: OrphanKind,
    /// Why it is reported.
    pub reason: OrphanReason,
    /// The link, device node, map or session.
    pub path: HostPath,
    /// What it leads to, resolved inside the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<HostPath>,
    /// The identity of the device it leads to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwid: Option<Wwid>,
    /// The identity its name claims, when different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_wwid: Option<Wwid>,
    /// The iSCSI target it belongs to, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<IscsiRef>,
    /// A human explanation.
    pub detail: String,
}

/// The iSCSI target of an orphan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IscsiRef {
    /// The target IQN as the host reports it.
    pub iqn: String,
    /// `address:port`, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<String>,
    /// The LUN as written in a by-path name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<String>,
}

/// What kind of thing an orphan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanKind {
    /// A udev symlink.
    Link,
    /// A block device or a sysfs holder entry.
    Device,
    /// A device-mapper map.
    Map,
    /// An iSCSI session.
    Session,
    /// A kind this client does not know.
    #[serde(other)]
    Other,
}

/// Why something is an orphan (stable codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanReason {
    /// `stale_link`: a symlink whose target is missing.
    StaleLink,
    /// `empty_map`: a multipath map with no path device.
    EmptyMap,
    /// `idle_session`: an iSCSI session with no SCSI disk.
    IdleSession,
    /// `identity_mismatch`: a name claiming one WWID leads to a device with another.
    IdentityMismatch,
    /// `dangling_holder`: a holders/slaves entry leading nowhere.
    DanglingHolder,
    /// `stale_node`: a `/dev` node without a kernel device.
    StaleNode,
    /// `unlinked_device`: a SAN disk no link and no map uses.
    UnlinkedDevice,
    /// A reason this client does not know.
    #[serde(other)]
    Other,
}

impl From<&brick_connectors::Orphan> for Orphan {
    fn from(o: &brick_connectors::Orphan) -> Self {
        use brick_connectors::{OrphanKind as K, OrphanReason as R};
        Self {
            kind: match o.kind {
                K::Link => OrphanKind::Link,
                K::Device => OrphanKind::Device,
                K::Map => OrphanKind::Map,
                K::Session => OrphanKind::Session,
            },
            reason: match o.reason {
                R::StaleLink => OrphanReason::StaleLink,
                R::EmptyMap => OrphanReason::EmptyMap,
                R::IdleSession => OrphanReason::IdleSession,
                R::IdentityMismatch => OrphanReason::IdentityMismatch,
                R::DanglingHolder => OrphanReason::DanglingHolder,
                R::StaleNode => OrphanReason::StaleNode,
                R::UnlinkedDevice => OrphanReason::UnlinkedDevice,
            },
            path: o.path.clone(),
            target: o.target.clone(),
            wwid: o.wwid.clone(),
            claimed_wwid: o.claimed_wwid.clone(),
            iscsi: o.iscsi.as_ref().map(|i| IscsiRef {
                iqn: i.iqn.clone(),
                portal: i.portal.clone(),
                lun: i.lun.clone(),
            }),
            detail: o.detail.clone(),
        }
    }
}

impl From<&brick_connectors::OrphanReport> for Orphans {
    fn from(r: &brick_connectors::OrphanReport) -> Self {
        Self {
            orphans: r.orphans.iter().map(Orphan::from).collect(),
            diagnostics: r.diagnostics.iter().map(Diagnostic::from).collect(),
        }
    }
}

/// `GET /v1/connector`: what the host would tell Cinder about itself (os-brick key names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// The iSCSI initiator IQN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator: Option<String>,
    /// Online FC port WWPNs (no `0x`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wwpns: Vec<String>,
    /// Their WWNNs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wwnns: Vec<String>,
    /// The NVMe host NQN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nqn: Option<String>,
    /// The host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Whether multipathd looks present (pid file; no command is run).
    pub multipath: bool,
    /// What could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

impl From<&brick_connectors::HostConnectorProperties> for ConnectorInfo {
    fn from(p: &brick_connectors::HostConnectorProperties) -> Self {
        Self {
            initiator: p.initiator.as_ref().map(ToString::to_string),
            wwpns: p.wwpns.iter().map(ToString::to_string).collect(),
            wwnns: p.wwnns.iter().map(ToString::to_string).collect(),
            nqn: p.nqn.as_ref().map(ToString::to_string),
            host: p.host.clone(),
            multipath: p.multipath,
            diagnostics: p.diagnostics.iter().map(Diagnostic::from).collect(),
        }
    }
}

/// Every error body: `{"error": "<stable code>", "message": "<human text>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code a client can match on.
    pub error: ErrorCode,
    /// A human explanation (never a raw I/O error).
    pub message: String,
}

/// The stable error codes of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON.
    BadJson,
    /// 400: the connection properties are invalid (bad IQN, absurd LUN, path outside `/`).
    InvalidProperties,
    /// 400: the query string is invalid.
    BadQuery,
    /// 404 (unknown name) or 501 (known protocol without a connector yet).
    UnsupportedProtocol,
    /// 401: missing or wrong bearer token.
    Unauthorized,
    /// 413: the body exceeds the limit.
    PayloadTooLarge,
    /// 404: no such route.
    NotFound,
    /// 405: the route exists with another method.
    MethodNotAllowed,
    /// 503: the request took longer than the agent's request timeout.
    Timeout,
    /// 500: anything else; details are in the agent's log only.
    Internal,
    /// A code this client does not know.
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::InvalidProperties => "invalid_properties",
            ErrorCode::BadQuery => "bad_query",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
