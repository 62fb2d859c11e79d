//! Connection properties, parsed once at the edge from the JSON that Cinder drivers emit.
//!
//! [`ConnectionProperties::from_json`] takes either Cinder's wrapper
//! `{"driver_volume_type": "iscsi", "data": {...}}` or the bare `data` object plus a
//! [`Protocol`], validates every identifier it reads (see [`crate::ids`]) and keeps every key
//! it does not know in an `extra` map (drivers add their own keys; they are never rejected).
//! [`ConnectionProperties::to_json`] writes os-brick-shaped JSON back, so
//! `from_json(to_json(p)) == p`.
//!
//! Deliberate differences from os-brick (which reads raw dicts lazily):
//! - LUNs given as strings of digits (`'target_lun': '1'`) are normalised to integers, so a
//!   string LUN can never fail to match the kernel's integer LUN (os-brick latent bug 9.5).
//! - Plural iSCSI lists of different lengths are an error (os-brick's `zip` truncates).
//! - FC `target_lun` given as a string of digits is used (os-brick silently uses 0).
//! - `null` is treated as an absent key, as Python's `dict.get` does.
//! - IQNs and NQNs are validated strictly ([`Iqn::new`], [`Nqn::new`]); os-brick's placeholder
//!   fixture values (`tgt1`, `ip1:port1`) are rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::host::HostPath;
use crate::ids::{
    AddressingMode, IdError, Iqn, Lun, Nguid, Nqn, NvmeUuid, Portal, Wwpn, json_type,
};

/// Why connection properties were rejected. Every message names the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PropsError {
    /// The text was not JSON at all.
    #[error("connection properties are not valid JSON: {0}")]
    Json(String),
    /// The top level (or `data`) is not a JSON object.
    #[error("{key}: expected a JSON object, got {got}")]
    NotAnObject {
        /// `(top level)` or `data`.
        key: String,
        /// The JSON type found.
        got: &'static str,
    },
    /// A required key is absent (or `null`).
    #[error("missing key {key}")]
    Missing {
        /// The key (or alternatives, `target_wwns or target_wwn`).
        key: String,
    },
    /// A key has the wrong JSON type or an impossible value.
    #[error("{key}: expected {expected}, got {got}")]
    WrongType {
        /// The key, with an index for list items (`target_luns[2]`).
        key: String,
        /// What was expected, e.g. `a non-negative integer`.
        expected: &'static str,
        /// The value found, as compact (truncated) JSON.
        got: String,
    },
    /// An identifier under `key` failed validation.
    #[error("{key}: {source}")]
    InvalidId {
        /// The key, with an index for list items.
        key: String,
        /// The validation error.
        #[source]
        source: IdError,
    },
    /// A value is well-typed but not acceptable (unknown `auth_method`, relative `device_path`).
    #[error("{key}: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Lists that must have the same length do not.
    #[error("inconsistent lengths: {detail}")]
    LengthMismatch {
        /// Which keys and lengths, e.g. `target_portals has 2 entries, target_iqns has 3`.
        detail: String,
    },
    /// `driver_volume_type` (or a protocol argument) is not a supported protocol.
    #[error(
        "driver_volume_type: unknown protocol {0:?} (expected iscsi, iser, fibre_channel, fc, nvmeof, nvme or local)"
    )]
    UnknownProtocol(String),
    /// Bare `data` was given without a protocol.
    #[error(
        "no protocol: pass the wrapper {{\"driver_volume_type\": ..., \"data\": {{...}}}} or give the protocol"
    )]
    MissingProtocol,
    /// The wrapper's `driver_volume_type` and the given protocol disagree.
    #[error("driver_volume_type says {wrapper} but protocol {given} was requested")]
    ProtocolMismatch {
        /// From the wrapper.
        wrapper: Protocol,
        /// From the caller.
        given: Protocol,
    },
}

/// Renders a JSON value compactly for an error message, truncated to 80 characters.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        let mut t: String = s.chars().take(80).collect();
        t.push('…');
        t
    } else {
        s
    }
}

fn invalid_id(key: &str, source: IdError) -> PropsError {
    PropsError::InvalidId {
        key: key.to_owned(),
        source,
    }
}

fn wrong_type(key: &str, expected: &'static str, got: &Value) -> PropsError {
    PropsError::WrongType {
        key: key.to_owned(),
        expected,
        got: shown(got),
    }
}

// ------------------------------------------------------------------------------------------
// Protocol
// ------------------------------------------------------------------------------------------

/// A volume transport protocol, as named by Cinder's `driver_volume_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// iSCSI (`iscsi`, and `iser` with [`IscsiTransport::Iser`]).
    Iscsi,
    /// Fibre Channel (`fibre_channel`, `fibrechan`, `fc`).
    FibreChannel,
    /// NVMe over fabrics (`nvmeof`, `nvme`).
    Nvmeof,
    /// A local block device (`local`).
    Local,
}

impl Protocol {
    /// The CLI spelling: `iscsi`, `fc`, `nvmeof`, `local`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Iscsi => "iscsi",
            Protocol::FibreChannel => "fc",
            Protocol::Nvmeof => "nvmeof",
            Protocol::Local => "local",
        }
    }

    /// Parses a `driver_volume_type` (case-insensitive); also returns the iSCSI transport
    /// (`iser` is iSCSI over iSER).
    fn parse_with_transport(s: &str) -> Result<(Self, IscsiTransport), PropsError> {
        let p = match s.to_ascii_lowercase().as_str() {
            "iscsi" => (Protocol::Iscsi, IscsiTransport::Tcp),
            "iser" => (Protocol::Iscsi, IscsiTransport::Iser),
            "fibre_channel" | "fibrechan" | "fc" => (Protocol::FibreChannel, IscsiTransport::Tcp),
            "nvmeof" | "nvme" => (Protocol::Nvmeof, IscsiTransport::Tcp),
            "local" => (Protocol::Local, IscsiTransport::Tcp),
            _ => return Err(PropsError::UnknownProtocol(s.to_owned())),
        };
        Ok(p)
    }
}

impl FromStr for Protocol {
    type Err = PropsError;
    /// Case-insensitive: `iscsi`, `iser`, `fibre_channel`, `fibrechan`, `fc`, `nvmeof`,
    /// `nvme`, `local`.
    fn from_str(s: &str) -> Result<Self, PropsError> {
        Self::parse_with_transport(s).map(|(p, _)| p)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ------------------------------------------------------------------------------------------
// Shared small types
// ------------------------------------------------------------------------------------------

/// `access_mode`: read-write or read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessMode {
    /// `rw`.
    Rw,
    /// `ro`.
    Ro,
}

impl AccessMode {
    /// `rw` or `ro`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::Rw => "rw",
            AccessMode::Ro => "ro",
        }
    }
}

/// The iSCSI transport: plain TCP, or iSER (`driver_volume_type: iser`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IscsiTransport {
    /// The default `tcp` transport.
    #[default]
    Tcp,
    /// iSCSI Extensions for RDMA.
    Iser,
}

/// CHAP credentials. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Chap {
    /// The CHAP user name.
    pub username: String,
    /// The CHAP secret.
    pub password: String,
}

impl fmt::Debug for Chap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

// ------------------------------------------------------------------------------------------
// Reading helpers: each takes the key out of the map so that the rest is `extra`
// ------------------------------------------------------------------------------------------

/// Removes `key`; `null` counts as absent.
fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    match map.remove(key) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v),
    }
}

fn take_required(map: &mut Map<String, Value>, key: &str) -> Result<Value, PropsError> {
    take(map, key).ok_or_else(|| PropsError::Missing {
        key: key.to_owned(),
    })
}

fn as_string(key: &str, v: &Value) -> Result<String, PropsError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| wrong_type(key, "a string", v))
}

fn take_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, PropsError> {
    take_string_as(map, key, key)
}

/// Like [`take_string`], naming the key `shown_key` in errors (nested keys).
fn take_string_as(
    map: &mut Map<String, Value>,
    key: &str,
    shown_key: &str,
) -> Result<Option<String>, PropsError> {
    take(map, key).map(|v| as_string(shown_key, &v)).transpose()
}

fn take_bool(map: &mut Map<String, Value>, key: &str, default: bool) -> Result<bool, PropsError> {
    match take(map, key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(b),
        Some(v) => Err(wrong_type(key, "a boolean", &v)),
    }
}

fn lun_at(key: &str, v: &Value) -> Result<Lun, PropsError> {
    match v {
        Value::String(s) => Lun::parse(s).map_err(|e| invalid_id(key, e)),
        Value::Number(n) => n
            .as_u64()
            .map(Lun::new)
            .ok_or_else(|| wrong_type(key, "a non-negative integer", v)),
        _ => Err(wrong_type(key, "a non-negative integer", v)),
    }
}

fn take_list(map: &mut Map<String, Value>, key: &str) -> Result<Option<Vec<Value>>, PropsError> {
    match take(map, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(v) => Err(wrong_type(key, "a list", &v)),
    }
}

fn take_addressing_mode(map: &mut Map<String, Value>) -> Result<AddressingMode, PropsError> {
    const KEY: &str = "addressing_mode";
    match take_string(map, KEY)? {
        None => Ok(AddressingMode::default()),
        Some(s) => AddressingMode::new(&s).map_err(|e| invalid_id(KEY, e)),
    }
}

fn take_access_mode(map: &mut Map<String, Value>) -> Result<Option<AccessMode>, PropsError> {
    const KEY: &str = "access_mode";
    match take_string(map, KEY)?.as_deref() {
        None => Ok(None),
        Some("rw") => Ok(Some(AccessMode::Rw)),
        Some("ro") => Ok(Some(AccessMode::Ro)),
        Some(other) => Err(PropsError::Invalid {
            key: KEY.to_owned(),
            message: format!("expected \"rw\" or \"ro\", got {other:?}"),
        }),
    }
}

fn device_path_from(key: &str, s: &str) -> Result<HostPath, PropsError> {
    HostPath::new(s).map_err(|_| PropsError::Invalid {
        key: key.to_owned(),
        message: format!(
            "{:?} is not an absolute, normalised path (no \"..\", \".\", \"//\" or NUL)",
            shown(&Value::String(s.to_owned()))
        ),
    })
}

fn take_device_path(map: &mut Map<String, Value>) -> Result<Option<HostPath>, PropsError> {
    const KEY: &str = "device_path";
    take_string(map, KEY)?
        .map(|s| device_path_from(KEY, &s))
        .transpose()
}

/// `volume_id`: a string, or a number kept as its decimal text.
fn take_volume_id(map: &mut Map<String, Value>) -> Result<Option<String>, PropsError> {
    const KEY: &str = "volume_id";
    match take(map, KEY) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(wrong_type(KEY, "a string", &v)),
    }
}

/// Reads `<prefix>auth_method`, `<prefix>auth_username`, `<prefix>auth_password`.
///
/// os-brick passes any truthy `auth_method` to `iscsiadm`, which knows `CHAP` and `None`.
/// Here `CHAP` (any case) needs a user name and password; `None`, `""` or absent means no
/// authentication (user name and password are then ignored but kept in `extra`); anything
/// else is an error. Credentials must not contain control characters (they end up in
/// iscsid's node records, one setting per line).
fn take_chap(map: &mut Map<String, Value>, prefix: &str) -> Result<Option<Chap>, PropsError> {
    let method_key = format!("{prefix}auth_method");
    let user_key = format!("{prefix}auth_username");
    let pass_key = format!("{prefix}auth_password");
    let method = take_string(map, &method_key)?;
    match method.as_deref() {
        None | Some("") => return Ok(None),
        Some(m) if m.eq_ignore_ascii_case("none") => return Ok(None),
        Some(m) if m.eq_ignore_ascii_case("chap") => {}
        Some(m) => {
            return Err(PropsError::Invalid {
                key: method_key,
                message: format!("unsupported authentication method {m:?} (expected \"CHAP\")"),
            });
        }
    }
    let username = as_string(&user_key, &take_required(map, &user_key)?)?;
    let password = as_string(&pass_key, &take_required(map, &pass_key)?)?;
    for (key, value) in [(&user_key, &username), (&pass_key, &password)] {
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(PropsError::Invalid {
                key: key.clone(),
                message: "must be non-empty and contain no control characters".to_owned(),
            });
        }
    }
    Ok(Some(Chap { username, password }))
}

fn put_chap(map: &mut Map<String, Value>, prefix: &str, chap: Option<&Chap>) {
    if let Some(c) = chap {
        map.insert(format!("{prefix}auth_method"), json!("CHAP"));
        map.insert(format!("{prefix}auth_username"), json!(c.username));
        map.insert(format!("{prefix}auth_password"), json!(c.password));
    }
}

/// Writes the generic keys shared by the SCSI protocols.
fn put_common(
    map: &mut Map<String, Value>,
    device_path: Option<&HostPath>,
    encrypted: bool,
    access_mode: Option<AccessMode>,
) {
    if let Some(p) = device_path {
        map.insert("device_path".into(), json!(p.as_str()));
    }
    map.insert("encrypted".into(), json!(encrypted));
    if let Some(m) = access_mode {
        map.insert("access_mode".into(), json!(m.as_str()));
    }
}

// ------------------------------------------------------------------------------------------
// iSCSI
// ------------------------------------------------------------------------------------------

/// One iSCSI path to the volume: portal, target name, LUN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IscsiTarget {
    /// The target portal (`ip:port`).
    pub portal: Portal,
    /// The target IQN.
    pub iqn: Iqn,
    /// The LUN as the array reports it (before the addressing mode).
    pub lun: Lun,
}

/// iSCSI connection properties (os-brick §2.1).
#[derive(Debug, Clone, PartialEq)]
pub struct IscsiProperties {
    /// Every path, expanded like os-brick's `_get_all_targets`: the plural lists zipped when
    /// both `target_portals` and `target_iqns` are present (`target_luns`, or `target_lun`
    /// repeated), else the single target. Never empty.
    pub targets: Vec<IscsiTarget>,
    /// The single-form target (`target_portal`, `target_iqn`, `target_lun` default 0); when
    /// only the plural form is given, the first plural target.
    pub primary: IscsiTarget,
    /// Session CHAP (`auth_method`, `auth_username`, `auth_password`).
    pub auth: Option<Chap>,
    /// Discovery CHAP (`discovery_auth_*`).
    pub discovery_auth: Option<Chap>,
    /// `addressing_mode` (default transparent).
    pub addressing_mode: AddressingMode,
    /// Nova's `device_path` (the path used for I/O).
    pub device_path: Option<HostPath>,
    /// `encrypted` (default false).
    pub encrypted: bool,
    /// `access_mode`.
    pub access_mode: Option<AccessMode>,
    /// `volume_id` (numbers kept as decimal text).
    pub volume_id: Option<String>,
    /// From the wrapper's `driver_volume_type` (`iser`); TCP otherwise.
    pub transport: IscsiTransport,
    /// `target_discovered` (default false; not read by os-brick's connector).
    pub target_discovered: bool,
    /// Every other key, unchanged. A lone `target_portals` (or `target_iqns`) without its
    /// partner is not a plural target list for os-brick and stays here too.
    pub extra: Map<String, Value>,
}

fn iscsi_target_single(map: &mut Map<String, Value>) -> Result<Option<IscsiTarget>, PropsError> {
    let portal = take_string(map, "target_portal")?;
    let iqn = take_string(map, "target_iqn")?;
    let lun = take(map, "target_lun");
    let (portal, iqn) = match (portal, iqn) {
        (None, None) => {
            if let Some(l) = lun {
                // Keep the LUN for the plural form (`target_lun` repeated).
                map.insert("target_lun".into(), l);
            }
            return Ok(None);
        }
        (Some(_), None) => {
            return Err(PropsError::Missing {
                key: "target_iqn".into(),
            });
        }
        (None, Some(_)) => {
            return Err(PropsError::Missing {
                key: "target_portal".into(),
            });
        }
        (Some(p), Some(i)) => (p, i),
    };
    let lun = match &lun {
        None => Lun::new(0),
        Some(v) => lun_at("target_lun", v)?,
    };
    Ok(Some(IscsiTarget {
        portal: Portal::new(&portal).map_err(|e| invalid_id("target_portal", e))?,
        iqn: Iqn::new(&iqn).map_err(|e| invalid_id("target_iqn", e))?,
        lun,
    }))
}

impl IscsiProperties {
    fn from_map(
        mut map: Map<String, Value>,
        transport: IscsiTransport,
    ) -> Result<Self, PropsError> {
        let plural = map.contains_key("target_portals") && map.contains_key("target_iqns");
        // The single-form LUN also feeds the plural form, so read it before removing it.
        let single_lun = map.get("target_lun").cloned();
        let single = iscsi_target_single(&mut map)?;
        let targets = if plural {
            let portals = take_list(&mut map, "target_portals")?.unwrap_or_default();
            let iqns = take_list(&mut map, "target_iqns")?.unwrap_or_default();
            let luns = take_list(&mut map, "target_luns")?.unwrap_or_default();
            if portals.len() != iqns.len() {
                return Err(PropsError::LengthMismatch {
                    detail: format!(
                        "target_portals has {} entries, target_iqns has {}",
                        portals.len(),
                        iqns.len()
                    ),
                });
            }
            if portals.is_empty() {
                return Err(PropsError::Invalid {
                    key: "target_portals".into(),
                    message: "empty list".into(),
                });
            }
            // os-brick: `target_luns or [target_lun] * n` (an empty list falls back too).
            let luns: Vec<Lun> = if luns.is_empty() {
                let Some(v) = single_lun.filter(|v| !v.is_null()) else {
                    return Err(PropsError::Missing {
                        key: "target_luns or target_lun".into(),
                    });
                };
                vec![lun_at("target_lun", &v)?; portals.len()]
            } else {
                if luns.len() != portals.len() {
                    return Err(PropsError::LengthMismatch {
                        detail: format!(
                            "target_portals has {} entries, target_luns has {}",
                            portals.len(),
                            luns.len()
                        ),
                    });
                }
                luns.iter()
                    .enumerate()
                    .map(|(i, v)| lun_at(&format!("target_luns[{i}]"), v))
                    .collect::<Result<_, _>>()?
            };
            // Read (or overridden by `target_luns`): never left in `extra`.
            map.remove("target_lun");
            let mut targets = Vec::with_capacity(portals.len());
            for (i, ((p, q), lun)) in portals.iter().zip(&iqns).zip(luns).enumerate() {
                let pkey = format!("target_portals[{i}]");
                let qkey = format!("target_iqns[{i}]");
                let portal =
                    Portal::new(&as_string(&pkey, p)?).map_err(|e| invalid_id(&pkey, e))?;
                let iqn = Iqn::new(&as_string(&qkey, q)?).map_err(|e| invalid_id(&qkey, e))?;
                targets.push(IscsiTarget { portal, iqn, lun });
            }
            targets
        } else {
            match &single {
                Some(t) => vec![t.clone()],
                None => {
                    return Err(PropsError::Missing {
                        key: "target_portal".into(),
                    });
                }
            }
        };
        let primary = match single {
            Some(t) => t,
            None => targets
                .first()
                .cloned()
                .ok_or_else(|| PropsError::Missing {
                    key: "target_portal".into(),
                })?,
        };
        Ok(Self {
            targets,
            primary,
            auth: take_chap(&mut map, "")?,
            discovery_auth: take_chap(&mut map, "discovery_")?,
            addressing_mode: take_addressing_mode(&mut map)?,
            device_path: take_device_path(&mut map)?,
            encrypted: take_bool(&mut map, "encrypted", false)?,
            access_mode: take_access_mode(&mut map)?,
            volume_id: take_volume_id(&mut map)?,
            transport,
            target_discovered: take_bool(&mut map, "target_discovered", false)?,
            extra: map,
        })
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut m = self.extra.clone();
        m.insert("target_portal".into(), json!(self.primary.portal.as_str()));
        m.insert("target_iqn".into(), json!(self.primary.iqn.as_str()));
        m.insert("target_lun".into(), json!(self.primary.lun.get()));
        if self.targets.len() != 1 || self.targets.first() != Some(&self.primary) {
            let portals: Vec<&str> = self.targets.iter().map(|t| t.portal.as_str()).collect();
            let iqns: Vec<&str> = self.targets.iter().map(|t| t.iqn.as_str()).collect();
            let luns: Vec<u64> = self.targets.iter().map(|t| t.lun.get()).collect();
            m.insert("target_portals".into(), json!(portals));
            m.insert("target_iqns".into(), json!(iqns));
            m.insert("target_luns".into(), json!(luns));
        }
        put_chap(&mut m, "", self.auth.as_ref());
        put_chap(&mut m, "discovery_", self.discovery_auth.as_ref());
        if self.addressing_mode != AddressingMode::default() {
            m.insert(
                "addressing_mode".into(),
                json!(self.addressing_mode.as_str()),
            );
        }
        put_common(
            &mut m,
            self.device_path.as_ref(),
            self.encrypted,
            self.access_mode,
        );
        if let Some(v) = &self.volume_id {
            m.insert("volume_id".into(), json!(v));
        }
        m.insert("target_discovered".into(), json!(self.target_discovered));
        m
    }
}

// ------------------------------------------------------------------------------------------
// Fibre Channel
// ------------------------------------------------------------------------------------------

/// Fibre Channel connection properties (os-brick §3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct FcProperties {
    /// `(target WWPN, LUN)` pairs: `target_wwns` (or `target_wwn`, string or list) zipped with
    /// `target_luns` (or `target_lun`, default 0); one LUN for many WWPNs is repeated.
    pub targets: Vec<(Wwpn, Lun)>,
    /// `initiator_target_map`: initiator WWPN → target WWPNs (lower-cased).
    pub initiator_target_map: Option<BTreeMap<Wwpn, Vec<Wwpn>>>,
    /// `addressing_mode` (default transparent).
    pub addressing_mode: AddressingMode,
    /// `enable_wildcard_scan` (default true).
    pub enable_wildcard_scan: bool,
    /// Nova's `device_path`.
    pub device_path: Option<HostPath>,
    /// `encrypted` (default false).
    pub encrypted: bool,
    /// `access_mode` (`ro` skips the wait for read-write in os-brick).
    pub access_mode: Option<AccessMode>,
    /// `volume_id` (numbers kept as decimal text).
    pub volume_id: Option<String>,
    /// Every other key, unchanged.
    pub extra: Map<String, Value>,
}

/// A WWPN list given as one string or a list of strings.
fn wwpn_list(key: &str, v: &Value) -> Result<Vec<Wwpn>, PropsError> {
    match v {
        Value::String(s) => Ok(vec![Wwpn::new(s).map_err(|e| invalid_id(key, e))?]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let k = format!("{key}[{i}]");
                Wwpn::new(&as_string(&k, item)?).map_err(|e| invalid_id(&k, e))
            })
            .collect(),
        other => Err(wrong_type(key, "a string or a list of strings", other)),
    }
}

impl FcProperties {
    fn from_map(mut map: Map<String, Value>) -> Result<Self, PropsError> {
        let wwns_v = take(&mut map, "target_wwns");
        let wwn_v = take(&mut map, "target_wwn");
        let wwns = match (&wwns_v, &wwn_v) {
            (Some(v), _) => wwpn_list("target_wwns", v)?,
            (None, Some(v)) => wwpn_list("target_wwn", v)?,
            (None, None) => {
                return Err(PropsError::Missing {
                    key: "target_wwns or target_wwn".into(),
                });
            }
        };
        if wwns.is_empty() {
            return Err(PropsError::Invalid {
                key: if wwns_v.is_some() {
                    "target_wwns"
                } else {
                    "target_wwn"
                }
                .into(),
                message: "empty list".into(),
            });
        }
        if let (Some(_), Some(v)) = (&wwns_v, wwn_v) {
            // Both given: os-brick uses the plural; keep the singular untouched.
            map.insert("target_wwn".into(), v);
        }
        let luns_v = take_list(&mut map, "target_luns")?.filter(|l| !l.is_empty());
        let lun_v = take(&mut map, "target_lun");
        let luns: Vec<Lun> = match luns_v {
            Some(list) => {
                if let Some(v) = lun_v {
                    map.insert("target_lun".into(), v);
                }
                list.iter()
                    .enumerate()
                    .map(|(i, v)| lun_at(&format!("target_luns[{i}]"), v))
                    .collect::<Result<_, _>>()?
            }
            None => vec![match &lun_v {
                Some(v) => lun_at("target_lun", v)?,
                None => Lun::new(0),
            }],
        };
        let targets: Vec<(Wwpn, Lun)> = if luns.len() == wwns.len() {
            wwns.into_iter().zip(luns).collect()
        } else if let [lun] = luns.as_slice() {
            wwns.into_iter().map(|w| (w, *lun)).collect()
        } else {
            return Err(PropsError::LengthMismatch {
                detail: format!(
                    "{} target WWPNs but {} target LUNs (expected one LUN or one per WWPN)",
                    wwns.len(),
                    luns.len()
                ),
            });
        };
        const ITM: &str = "initiator_target_map";
        let initiator_target_map = match take(&mut map, ITM) {
            None => None,
            Some(Value::Object(obj)) => {
                let mut itm = BTreeMap::new();
                for (init, tgts) in &obj {
                    let init = Wwpn::new(init).map_err(|e| invalid_id(&format!("{ITM} key"), e))?;
                    let tgts = wwpn_list(&format!("{ITM}[{init}]"), tgts)?;
                    itm.insert(init, tgts);
                }
                Some(itm)
            }
            Some(v) => return Err(wrong_type(ITM, "an object", &v)),
        };
        Ok(Self {
            targets,
            initiator_target_map,
            addressing_mode: take_addressing_mode(&mut map)?,
            enable_wildcard_scan: take_bool(&mut map, "enable_wildcard_scan", true)?,
            device_path: take_device_path(&mut map)?,
            encrypted: take_bool(&mut map, "encrypted", false)?,
            access_mode: take_access_mode(&mut map)?,
            volume_id: take_volume_id(&mut map)?,
            extra: map,
        })
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut m = self.extra.clone();
        let wwns: Vec<&str> = self.targets.iter().map(|(w, _)| w.as_str()).collect();
        let luns: Vec<u64> = self.targets.iter().map(|(_, l)| l.get()).collect();
        m.insert("target_wwns".into(), json!(wwns));
        m.insert("target_luns".into(), json!(luns));
        if let Some(itm) = &self.initiator_target_map {
            let obj: Map<String, Value> = itm
                .iter()
                .map(|(k, v)| {
                    let v: Vec<&str> = v.iter().map(Wwpn::as_str).collect();
                    (k.as_str().to_owned(), json!(v))
                })
                .collect();
            m.insert("initiator_target_map".into(), Value::Object(obj));
        }
        if self.addressing_mode != AddressingMode::default() {
            m.insert(
                "addressing_mode".into(),
                json!(self.addressing_mode.as_str()),
            );
        }
        m.insert(
            "enable_wildcard_scan".into(),
            json!(self.enable_wildcard_scan),
        );
        put_common(
            &mut m,
            self.device_path.as_ref(),
            self.encrypted,
            self.access_mode,
        );
        if let Some(v) = &self.volume_id {
            m.insert("volume_id".into(), json!(v));
        }
        m
    }
}

// ------------------------------------------------------------------------------------------
// NVMe-oF
// ------------------------------------------------------------------------------------------

/// NVMe-oF transport: `RoCEv2` or `rdma` (any case) → RDMA, anything else → TCP (os-brick).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NvmeTransport {
    /// `tcp`.
    Tcp,
    /// `rdma`.
    Rdma,
}

impl NvmeTransport {
    /// `tcp` or `rdma`, as passed to `nvme connect -t`.
    pub fn as_str(self) -> &'static str {
        match self {
            NvmeTransport::Tcp => "tcp",
            NvmeTransport::Rdma => "rdma",
        }
    }

    fn from_text(s: &str) -> Self {
        if s.eq_ignore_ascii_case("rocev2") || s.eq_ignore_ascii_case("rdma") {
            NvmeTransport::Rdma
        } else {
            NvmeTransport::Tcp
        }
    }
}

/// One NVMe-oF portal: transport address, service id (port) and transport.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NvmePortal {
    /// `traddr`: an IP address (IPv6 without brackets) or host name. Letters, digits, `.`,
    /// `-`, `:`, `_`, `%` only (no `,`: it separates fields in the kernel's `address`).
    pub address: String,
    /// `trsvcid`: the port, 1 to 65535 (JSON integer or string of digits).
    pub port: u16,
    /// The transport.
    pub transport: NvmeTransport,
}

/// One NVMe-oF target: the single new format (os-brick §4.1 format 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeofTarget {
    /// `target_nqn` (old format: `nqn`).
    pub target_nqn: Nqn,
    /// `vol_uuid`: the namespace UUID (`None` in the old format).
    pub vol_uuid: Option<NvmeUuid>,
    /// `portals` (old format: one portal from `target_portal`, `target_port`,
    /// `transport_type`).
    pub portals: Vec<NvmePortal>,
    /// `volume_nguid`.
    pub volume_nguid: Option<Nguid>,
    /// `ns_id`: the namespace id (JSON integer or string of digits).
    pub ns_id: Option<u32>,
    /// `host_nqn`.
    pub host_nqn: Option<Nqn>,
}

/// A replicated (md RAID1) NVMe-oF volume (os-brick §4.1 formats 1-2).
///
/// Parsed so that such properties are not rejected, but **no connector in this crate supports
/// replicated volumes yet**: connectors return an "unsupported" error for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvmeReplicas {
    /// `vol_uuid`: here the Cinder volume id.
    pub vol_uuid: Option<NvmeUuid>,
    /// `alias`: the md device name (`/dev/md/<alias>`).
    pub alias: String,
    /// `replica_count`.
    pub replica_count: u32,
    /// `volume_replicas`, each in the single new format.
    pub replicas: Vec<NvmeofTarget>,
}

/// The shape of an NVMe-oF volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmeofLayout {
    /// One target (new or converted old format).
    Single(NvmeofTarget),
    /// `volume_replicas` (unsupported by the connectors for now).
    Replicated(NvmeReplicas),
}

/// NVMe-oF connection properties (os-brick §4.1).
#[derive(Debug, Clone, PartialEq)]
pub struct NvmeofProperties {
    /// The target or the replicas.
    pub layout: NvmeofLayout,
    /// Nova's `device_path`.
    pub device_path: Option<HostPath>,
    /// `encrypted` (default false).
    pub encrypted: bool,
    /// `access_mode`.
    pub access_mode: Option<AccessMode>,
    /// Every other key, unchanged.
    pub extra: Map<String, Value>,
}

fn port_at(key: &str, v: &Value) -> Result<u16, PropsError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        _ => None,
    };
    match n.and_then(|n| u16::try_from(n).ok()) {
        Some(p) if p > 0 => Ok(p),
        _ => Err(wrong_type(key, "a port number from 1 to 65535", v)),
    }
}

fn nvme_address(key: &str, v: &Value) -> Result<String, PropsError> {
    let s = as_string(key, v)?;
    let ok = !s.is_empty()
        && s.len() <= 255
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '%'));
    if ok {
        Ok(s)
    } else {
        Err(PropsError::Invalid {
            key: key.to_owned(),
            message: format!(
                "{} is not a valid transport address (letters, digits, '.', '-', ':', '_', '%')",
                shown(v)
            ),
        })
    }
}

fn ns_id_at(key: &str, v: &Value) -> Result<u32, PropsError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<u64>().ok()
        }
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| wrong_type(key, "a namespace id (32-bit unsigned integer)", v))
}

impl NvmeofTarget {
    /// Reads one target from `map` (new format, or old format when `target_nqn` is absent
    /// and `nqn` present). `ctx` prefixes keys in errors (`volume_replicas[0].`).
    fn take_from(map: &mut Map<String, Value>, ctx: &str) -> Result<Self, PropsError> {
        let k = |key: &str| format!("{ctx}{key}");
        let old = !map.contains_key("target_nqn") && map.contains_key("nqn");
        let (nqn_key, target_nqn) = if old {
            (
                "nqn",
                take_required(map, "nqn").map_err(|_| PropsError::Missing { key: k("nqn") })?,
            )
        } else {
            (
                "target_nqn",
                take_required(map, "target_nqn").map_err(|_| PropsError::Missing {
                    key: k("target_nqn"),
                })?,
            )
        };
        let target_nqn = Nqn::new(&as_string(&k(nqn_key), &target_nqn)?)
            .map_err(|e| invalid_id(&k(nqn_key), e))?;
        let portals = if old {
            let addr_v = take(map, "target_portal").ok_or_else(|| PropsError::Missing {
                key: k("target_portal"),
            })?;
            let port_v = take(map, "target_port").ok_or_else(|| PropsError::Missing {
                key: k("target_port"),
            })?;
            let transport = match take(map, "transport_type") {
                None => NvmeTransport::Tcp,
                Some(v) => NvmeTransport::from_text(&as_string(&k("transport_type"), &v)?),
            };
            vec![NvmePortal {
                address: nvme_address(&k("target_portal"), &addr_v)?,
                port: port_at(&k("target_port"), &port_v)?,
                transport,
            }]
        } else {
            let list =
                take(map, "portals").ok_or_else(|| PropsError::Missing { key: k("portals") })?;
            let Value::Array(items) = list else {
                return Err(wrong_type(
                    &k("portals"),
                    "a list of [address, port, transport]",
                    &list,
                ));
            };
            let mut portals = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let pk = k(&format!("portals[{i}]"));
                let Some([addr, port, transport]) = item.as_array().map(Vec::as_slice) else {
                    return Err(wrong_type(&pk, "[address, port, transport]", item));
                };
                portals.push(NvmePortal {
                    address: nvme_address(&format!("{pk}[0]"), addr)?,
                    port: port_at(&format!("{pk}[1]"), port)?,
                    transport: NvmeTransport::from_text(&as_string(
                        &format!("{pk}[2]"),
                        transport,
                    )?),
                });
            }
            portals
        };
        let vol_uuid = if old {
            None
        } else {
            take_string_as(map, "vol_uuid", &k("vol_uuid"))?
                .map(|s| NvmeUuid::new(&s).map_err(|e| invalid_id(&k("vol_uuid"), e)))
                .transpose()?
        };
        let volume_nguid = take_string_as(map, "volume_nguid", &k("volume_nguid"))?
            .map(|s| Nguid::new(&s).map_err(|e| invalid_id(&k("volume_nguid"), e)))
            .transpose()?;
        let ns_id = take(map, "ns_id")
            .map(|v| ns_id_at(&k("ns_id"), &v))
            .transpose()?;
        let host_nqn = take_string_as(map, "host_nqn", &k("host_nqn"))?
            .map(|s| Nqn::new(&s).map_err(|e| invalid_id(&k("host_nqn"), e)))
            .transpose()?;
        Ok(Self {
            target_nqn,
            vol_uuid,
            portals,
            volume_nguid,
            ns_id,
            host_nqn,
        })
    }

    fn put_into(&self, m: &mut Map<String, Value>) {
        m.insert("target_nqn".into(), json!(self.target_nqn.as_str()));
        m.insert(
            "vol_uuid".into(),
            self.vol_uuid
                .as_ref()
                .map_or(Value::Null, |u| json!(u.as_str())),
        );
        let portals: Vec<Value> = self
            .portals
            .iter()
            .map(|p| json!([p.address, p.port, p.transport.as_str()]))
            .collect();
        m.insert("portals".into(), Value::Array(portals));
        if let Some(n) = &self.volume_nguid {
            m.insert("volume_nguid".into(), json!(n.as_str()));
        }
        if let Some(n) = self.ns_id {
            m.insert("ns_id".into(), json!(n));
        }
        if let Some(n) = &self.host_nqn {
            m.insert("host_nqn".into(), json!(n.as_str()));
        }
    }
}

impl NvmeofProperties {
    fn from_map(mut map: Map<String, Value>) -> Result<Self, PropsError> {
        let replicas = take_list(&mut map, "volume_replicas")?.filter(|r| !r.is_empty());
        let layout = match replicas {
            Some(items) => {
                let mut replicas = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let key = format!("volume_replicas[{i}]");
                    let Value::Object(mut obj) = item else {
                        return Err(wrong_type(&key, "an object", &item));
                    };
                    replicas.push(NvmeofTarget::take_from(&mut obj, &format!("{key}."))?);
                }
                let replica_count = match take(&mut map, "replica_count") {
                    None => u32::try_from(replicas.len()).unwrap_or(u32::MAX),
                    Some(v) => v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| wrong_type("replica_count", "a non-negative integer", &v))?,
                };
                let alias = take_string(&mut map, "alias")?.ok_or_else(|| PropsError::Missing {
                    key: "alias".into(),
                })?;
                if alias.is_empty()
                    || alias.len() > 255
                    || alias.contains("..")
                    || !alias
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                {
                    return Err(PropsError::Invalid {
                        key: "alias".into(),
                        message: format!("{alias:?} is not a valid md device name"),
                    });
                }
                let vol_uuid = take_string(&mut map, "vol_uuid")?
                    .map(|s| NvmeUuid::new(&s).map_err(|e| invalid_id("vol_uuid", e)))
                    .transpose()?;
                NvmeofLayout::Replicated(NvmeReplicas {
                    vol_uuid,
                    alias,
                    replica_count,
                    replicas,
                })
            }
            None => NvmeofLayout::Single(NvmeofTarget::take_from(&mut map, "")?),
        };
        Ok(Self {
            layout,
            device_path: take_device_path(&mut map)?,
            encrypted: take_bool(&mut map, "encrypted", false)?,
            access_mode: take_access_mode(&mut map)?,
            extra: map,
        })
    }

    /// The single target, or `None` for a replicated volume.
    pub fn target(&self) -> Option<&NvmeofTarget> {
        match &self.layout {
            NvmeofLayout::Single(t) => Some(t),
            NvmeofLayout::Replicated(_) => None,
        }
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut m = self.extra.clone();
        match &self.layout {
            NvmeofLayout::Single(t) => t.put_into(&mut m),
            NvmeofLayout::Replicated(r) => {
                let replicas: Vec<Value> = r
                    .replicas
                    .iter()
                    .map(|t| {
                        let mut o = Map::new();
                        t.put_into(&mut o);
                        Value::Object(o)
                    })
                    .collect();
                m.insert("volume_replicas".into(), Value::Array(replicas));
                m.insert("replica_count".into(), json!(r.replica_count));
                m.insert("alias".into(), json!(r.alias));
                if let Some(u) = &r.vol_uuid {
                    m.insert("vol_uuid".into(), json!(u.as_str()));
                }
            }
        }
        put_common(
            &mut m,
            self.device_path.as_ref(),
            self.encrypted,
            self.access_mode,
        );
        m
    }
}

// ------------------------------------------------------------------------------------------
// Local
// ------------------------------------------------------------------------------------------

/// Local block device properties.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalProperties {
    /// `device_path` (required): absolute, normalised.
    pub device_path: HostPath,
    /// Every other key, unchanged.
    pub extra: Map<String, Value>,
}

impl LocalProperties {
    fn from_map(mut map: Map<String, Value>) -> Result<Self, PropsError> {
        let v = take_required(&mut map, "device_path")?;
        let device_path = device_path_from("device_path", &as_string("device_path", &v)?)?;
        Ok(Self {
            device_path,
            extra: map,
        })
    }

    fn to_map(&self) -> Map<String, Value> {
        let mut m = self.extra.clone();
        m.insert("device_path".into(), json!(self.device_path.as_str()));
        m
    }
}

// ------------------------------------------------------------------------------------------
// ConnectionProperties
// ------------------------------------------------------------------------------------------

/// Validated connection properties, one variant per protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionProperties {
    /// iSCSI or iSER.
    Iscsi(IscsiProperties),
    /// Fibre Channel.
    FibreChannel(FcProperties),
    /// NVMe over fabrics.
    Nvmeof(NvmeofProperties),
    /// A local block device.
    Local(LocalProperties),
}

impl ConnectionProperties {
    /// Parses Cinder's wrapper `{"driver_volume_type": ..., "data": {...}}` (recognised by its
    /// `driver_volume_type` key) or a bare `data` object, for which `protocol` is required.
    /// With the wrapper, a given `protocol` must agree with `driver_volume_type`.
    /// Never panics, whatever the JSON.
    pub fn from_json(value: &Value, protocol: Option<Protocol>) -> Result<Self, PropsError> {
        let Value::Object(top) = value else {
            return Err(PropsError::NotAnObject {
                key: "(top level)".into(),
                got: json_type(value),
            });
        };
        let (proto, transport, data) = if let Some(dvt) = top.get("driver_volume_type") {
            let dvt = as_string("driver_volume_type", dvt)?;
            let (wrapped, transport) = Protocol::parse_with_transport(&dvt)?;
            if let Some(given) = protocol
                && given != wrapped
            {
                return Err(PropsError::ProtocolMismatch {
                    wrapper: wrapped,
                    given,
                });
            }
            let data = match top.get("data") {
                None | Some(Value::Null) => {
                    return Err(PropsError::Missing { key: "data".into() });
                }
                Some(Value::Object(d)) => d.clone(),
                Some(other) => {
                    return Err(PropsError::NotAnObject {
                        key: "data".into(),
                        got: json_type(other),
                    });
                }
            };
            (wrapped, transport, data)
        } else {
            let proto = protocol.ok_or(PropsError::MissingProtocol)?;
            (proto, IscsiTransport::Tcp, top.clone())
        };
        Ok(match proto {
            Protocol::Iscsi => Self::Iscsi(IscsiProperties::from_map(data, transport)?),
            Protocol::FibreChannel => Self::FibreChannel(FcProperties::from_map(data)?),
            Protocol::Nvmeof => Self::Nvmeof(NvmeofProperties::from_map(data)?),
            Protocol::Local => Self::Local(LocalProperties::from_map(data)?),
        })
    }

    /// Parses JSON text, then as [`ConnectionProperties::from_json`].
    pub fn from_json_str(text: &str, protocol: Option<Protocol>) -> Result<Self, PropsError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PropsError::Json(e.to_string()))?;
        Self::from_json(&value, protocol)
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::Iscsi(_) => Protocol::Iscsi,
            Self::FibreChannel(_) => Protocol::FibreChannel,
            Self::Nvmeof(_) => Protocol::Nvmeof,
            Self::Local(_) => Protocol::Local,
        }
    }

    /// Cinder's `driver_volume_type` for these properties: `iscsi`, `iser`, `fibre_channel`,
    /// `nvmeof` or `local`.
    pub fn driver_volume_type(&self) -> &'static str {
        match self {
            Self::Iscsi(p) if p.transport == IscsiTransport::Iser => "iser",
            Self::Iscsi(_) => "iscsi",
            Self::FibreChannel(_) => "fibre_channel",
            Self::Nvmeof(_) => "nvmeof",
            Self::Local(_) => "local",
        }
    }

    /// The bare `data` object, os-brick-shaped (extra keys included, LUNs as integers).
    pub fn data_json(&self) -> Value {
        Value::Object(match self {
            Self::Iscsi(p) => p.to_map(),
            Self::FibreChannel(p) => p.to_map(),
            Self::Nvmeof(p) => p.to_map(),
            Self::Local(p) => p.to_map(),
        })
    }

    /// The wrapper `{"driver_volume_type": ..., "data": {...}}`; parsing it back gives an
    /// equal value.
    pub fn to_json(&self) -> Value {
        json!({
            "driver_volume_type": self.driver_volume_type(),
            "data": self.data_json(),
        })
    }
}

impl Serialize for ConnectionProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ConnectionProperties {
    /// Deserialises the wrapper form (the protocol comes from `driver_volume_type`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(deserializer)?;
        Self::from_json(&v, None).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;
    use serde_json::json;

    const IQN1: &str = "iqn.2010-10.org.openstack:volume-00000001";

    fn iscsi(v: Value) -> IscsiProperties {
        match ConnectionProperties::from_json(&v, Some(Protocol::Iscsi)).unwrap() {
            ConnectionProperties::Iscsi(p) => p,
            other => panic!("not iSCSI: {other:?}"),
        }
    }

    fn err(v: Value, protocol: Option<Protocol>) -> PropsError {
        ConnectionProperties::from_json(&v, protocol).unwrap_err()
    }

    fn round_trips(p: &ConnectionProperties) {
        let again = ConnectionProperties::from_json(&p.to_json(), None).unwrap();
        assert_eq!(&again, p);
        let text = serde_json::to_string(p).unwrap();
        let back: ConnectionProperties = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, p);
    }

    #[rstest]
    #[case("iscsi", Protocol::Iscsi)]
    #[case("ISCSI", Protocol::Iscsi)]
    #[case("iser", Protocol::Iscsi)]
    #[case("fibre_channel", Protocol::FibreChannel)]
    #[case("FIBRE_CHANNEL", Protocol::FibreChannel)]
    #[case("fibrechan", Protocol::FibreChannel)]
    #[case("fc", Protocol::FibreChannel)]
    #[case("nvmeof", Protocol::Nvmeof)]
    #[case("NVMe", Protocol::Nvmeof)]
    #[case("local", Protocol::Local)]
    fn protocols(#[case] s: &str, #[case] p: Protocol) {
        assert_eq!(s.parse::<Protocol>().unwrap(), p);
        assert_eq!(p.to_string().parse::<Protocol>().unwrap(), p);
    }

    #[test]
    fn protocol_display_is_cli_spelling() {
        assert_eq!(Protocol::FibreChannel.to_string(), "fc");
        assert_eq!(Protocol::Nvmeof.to_string(), "nvmeof");
        assert!(matches!(
            "rbd".parse::<Protocol>(),
            Err(PropsError::UnknownProtocol(s)) if s == "rbd"
        ));
    }

    #[test]
    fn iscsi_single_with_wrapper_and_string_lun() {
        let v = json!({"driver_volume_type": "iscsi", "data": {
            "volume_id": "vol_id", "target_portal": "10.0.2.15:3260",
            "target_iqn": IQN1, "encryption": false, "target_lun": "1"}});
        let c = ConnectionProperties::from_json(&v, None).unwrap();
        assert_eq!(c.protocol(), Protocol::Iscsi);
        let ConnectionProperties::Iscsi(p) = &c else {
            panic!()
        };
        assert_eq!(p.targets.len(), 1);
        assert_eq!(p.primary, p.targets[0]);
        assert_eq!(p.primary.lun, Lun::new(1));
        assert_eq!(p.primary.portal.as_str(), "10.0.2.15:3260");
        assert_eq!(p.volume_id.as_deref(), Some("vol_id"));
        assert_eq!(p.transport, IscsiTransport::Tcp);
        assert_eq!(p.extra.get("encryption"), Some(&json!(false)));
        // The LUN is written back as an integer.
        assert_eq!(c.data_json()["target_lun"], json!(1));
        round_trips(&c);
    }

    #[test]
    fn iscsi_lun_defaults_to_zero_and_tpgt_dropped() {
        let p = iscsi(json!({"target_portal": "10.0.2.15:3260,1", "target_iqn": IQN1}));
        assert_eq!(p.primary.lun, Lun::new(0));
        assert_eq!(p.primary.portal.as_str(), "10.0.2.15:3260");
        assert_eq!(p.addressing_mode, AddressingMode::Transparent);
        assert!(!p.encrypted && !p.target_discovered && p.auth.is_none());
    }

    #[test]
    fn iscsi_multipath() {
        let iqns: Vec<String> = (1..=4)
            .map(|i| format!("iqn.2010-10.org.openstack:tgt{i}"))
            .collect();
        let v = json!({
            "target_portal": "10.0.0.1:3260", "target_iqn": iqns[0], "target_lun": 4,
            "target_portals": ["10.0.0.1:3260", "10.0.0.2:3260", "10.0.0.3:3260", "[fe80::1]:3260"],
            "target_iqns": iqns, "target_luns": [4, 5, "6", 7],
            "target_discovered": true, "access_mode": "rw", "qos_specs": null,
            "discard": true});
        let c = ConnectionProperties::from_json(&v, Some(Protocol::Iscsi)).unwrap();
        let ConnectionProperties::Iscsi(p) = &c else {
            panic!()
        };
        let got: Vec<(String, String, u64)> = p
            .targets
            .iter()
            .map(|t| (t.portal.to_string(), t.iqn.to_string(), t.lun.get()))
            .collect();
        assert_eq!(got[3], ("[fe80::1]:3260".into(), iqns[3].clone(), 7));
        assert_eq!(got[2].2, 6);
        assert_eq!(p.targets.len(), 4);
        assert_eq!(p.primary.lun, Lun::new(4));
        assert!(p.target_discovered);
        assert_eq!(p.access_mode, Some(AccessMode::Rw));
        assert_eq!(p.extra.get("discard"), Some(&json!(true)));
        // Unknown keys are kept verbatim, nulls included.
        assert_eq!(p.extra.get("qos_specs"), Some(&Value::Null));
        round_trips(&c);
    }

    #[test]
    fn iscsi_plural_without_luns_repeats_target_lun() {
        let p = iscsi(json!({
            "target_portals": ["10.0.0.1:3260", "10.0.0.2:3260"],
            "target_iqns": [IQN1, IQN1], "target_lun": 3}));
        assert!(p.targets.iter().all(|t| t.lun == Lun::new(3)));
        assert_eq!(p.primary, p.targets[0]);
        assert!(p.extra.is_empty());
    }

    #[test]
    fn iscsi_lone_plural_key_is_kept_in_extra() {
        let p = iscsi(json!({"target_portal": "10.0.0.1:3260", "target_iqn": IQN1,
            "target_portals": ["10.0.0.1:3260", "10.0.0.2:3260"]}));
        assert_eq!(p.targets.len(), 1);
        assert!(p.extra.contains_key("target_portals"));
    }

    #[test]
    fn iscsi_chap_and_iser_and_redaction() {
        let v = json!({"driver_volume_type": "iser", "data": {
            "target_portal": "10.0.2.15:3260", "target_iqn": IQN1, "target_lun": 1,
            "auth_method": "CHAP", "auth_username": "fake_chap_username",
            "auth_password": "fake_chap_password",
            "discovery_auth_method": "CHAP", "discovery_auth_username": "du",
            "discovery_auth_password": "dp-secret",
            "addressing_mode": "SAM2", "encrypted": true, "device_path": "/dev/sda"}});
        let c = ConnectionProperties::from_json(&v, Some(Protocol::Iscsi)).unwrap();
        let ConnectionProperties::Iscsi(p) = &c else {
            panic!()
        };
        assert_eq!(p.transport, IscsiTransport::Iser);
        assert_eq!(p.auth.as_ref().unwrap().username, "fake_chap_username");
        assert_eq!(p.discovery_auth.as_ref().unwrap().password, "dp-secret");
        assert_eq!(p.addressing_mode, AddressingMode::Sam2);
        assert!(p.encrypted);
        assert_eq!(p.device_path.as_ref().unwrap().as_str(), "/dev/sda");
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("fake_chap_password") && !dbg.contains("dp-secret"),
            "{dbg}"
        );
        assert!(dbg.contains("fake_chap_username"));
        assert_eq!(c.driver_volume_type(), "iser");
        round_trips(&c);
    }

    #[rstest]
    #[case(json!({"auth_method": "None", "auth_username": "u"}), false)]
    #[case(json!({"auth_method": ""}), false)]
    #[case(json!({"auth_method": "chap", "auth_username": "u", "auth_password": "p"}), true)]
    fn iscsi_auth_methods(#[case] extra: Value, #[case] chap: bool) {
        let mut v = json!({"target_portal": "10.0.2.15:3260", "target_iqn": IQN1});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        assert_eq!(iscsi(v).auth.is_some(), chap);
    }

    #[rstest]
    #[case(json!({"target_iqn": "iqn.2010-10.org.openstack:../../etc"}), "target_iqn: invalid IQN \"iqn.2010-10.org.openstack:../../etc\": contains \"/\"")]
    #[case(json!({"target_iqn": "iqn.2010-10.org.openstack:a/b"}), "contains \"/\"")]
    #[case(json!({"target_iqn": "tgt1"}), "target_iqn: invalid IQN \"tgt1\"")]
    #[case(json!({"target_iqn": 5}), "target_iqn: expected a string, got 5")]
    #[case(json!({"target_lun": -1}), "target_lun: expected a non-negative integer, got -1")]
    #[case(json!({"target_lun": "abc"}), "target_lun: invalid LUN \"abc\"")]
    #[case(json!({"target_lun": 1.5}), "target_lun: expected a non-negative integer, got 1.5")]
    #[case(json!({"target_lun": 18446744073709551616.0}), "target_lun: expected a non-negative integer")]
    #[case(json!({"target_lun": "18446744073709551616"}), "larger than 2^64-1")]
    #[case(json!({"target_lun": [1]}), "target_lun: expected a non-negative integer, got [1]")]
    #[case(json!({"target_portal": "10.0.2.15"}), "target_portal: invalid portal \"10.0.2.15\": missing port")]
    #[case(json!({"target_portal": "10.0.2.15:0"}), "port 0 is not valid")]
    #[case(json!({"target_portal": "10.0.2.15:70000"}), "port 70000 is out of range")]
    #[case(json!({"target_portal": "ip1:port1"}), "target_portal: invalid portal")]
    #[case(json!({"target_portal": null}), "missing key target_portal")]
    #[case(json!({"addressing_mode": "SAM4"}), "addressing_mode: invalid addressing mode \"SAM4\"")]
    #[case(json!({"access_mode": "rwx"}), "access_mode: expected \"rw\" or \"ro\"")]
    #[case(json!({"encrypted": "yes"}), "encrypted: expected a boolean, got \"yes\"")]
    #[case(json!({"device_path": "/dev/../etc/passwd"}), "device_path:")]
    #[case(json!({"device_path": "dev/sda"}), "device_path:")]
    #[case(json!({"auth_method": "CHAP", "auth_username": "u"}), "missing key auth_password")]
    #[case(json!({"auth_method": "kerberos"}), "auth_method: unsupported authentication method")]
    #[case(json!({"auth_method": "CHAP", "auth_username": "u", "auth_password": "a\nb"}), "auth_password: must be non-empty and contain no control characters")]
    #[case(json!({"target_portals": ["10.0.0.1:3260", "10.0.0.2:3260"], "target_iqns": [IQN1]}), "inconsistent lengths: target_portals has 2 entries, target_iqns has 1")]
    #[case(json!({"target_portals": ["10.0.0.1:3260"], "target_iqns": [IQN1], "target_luns": [1, 2]}), "target_portals has 1 entries, target_luns has 2")]
    #[case(json!({"target_portals": ["10.0.0.1:3260"], "target_iqns": [IQN1], "target_luns": [-1]}), "target_luns[0]: expected a non-negative integer, got -1")]
    #[case(json!({"target_portals": ["10.0.0.1:3260", "bad"], "target_iqns": [IQN1, IQN1]}), "target_portals[1]: invalid portal \"bad\"")]
    #[case(json!({"target_portals": "10.0.0.1:3260", "target_iqns": [IQN1]}), "target_portals: expected a list")]
    #[case(json!({"target_portals": [], "target_iqns": []}), "target_portals: empty list")]
    fn iscsi_hostile_values(#[case] patch: Value, #[case] message: &str) {
        let mut v = json!({"target_portal": "10.0.2.15:3260", "target_iqn": IQN1, "target_lun": 1});
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        let e = err(v, Some(Protocol::Iscsi));
        assert!(e.to_string().contains(message), "{e}");
    }

    #[test]
    fn plural_without_any_lun_is_missing() {
        let e = err(
            json!({"target_portals": ["10.0.0.1:3260"], "target_iqns": [IQN1]}),
            Some(Protocol::Iscsi),
        );
        assert_eq!(
            e,
            PropsError::Missing {
                key: "target_luns or target_lun".into()
            }
        );
    }

    #[rstest]
    #[case(json!([1, 2]), None, "(top level): expected a JSON object, got an array")]
    #[case(json!("iscsi"), None, "expected a JSON object, got a string")]
    #[case(json!(null), Some(Protocol::Iscsi), "got null")]
    #[case(json!({"driver_volume_type": "iscsi", "data": [1]}), None, "data: expected a JSON object, got an array")]
    #[case(json!({"driver_volume_type": "iscsi"}), None, "missing key data")]
    #[case(json!({"driver_volume_type": 3, "data": {}}), None, "driver_volume_type: expected a string")]
    #[case(json!({"driver_volume_type": "rbd", "data": {}}), None, "unknown protocol \"rbd\"")]
    #[case(json!({"driver_volume_type": "iscsi", "data": {}}), Some(Protocol::FibreChannel), "driver_volume_type says iscsi but protocol fc was requested")]
    #[case(json!({"target_portal": "10.0.2.15:3260"}), None, "no protocol")]
    #[case(json!({}), Some(Protocol::Iscsi), "missing key target_portal")]
    fn envelope_errors(
        #[case] v: Value,
        #[case] protocol: Option<Protocol>,
        #[case] message: &str,
    ) {
        let e = err(v, protocol);
        assert!(e.to_string().contains(message), "{e}");
    }

    #[test]
    fn from_json_str_reports_bad_json() {
        let e = ConnectionProperties::from_json_str("{", None).unwrap_err();
        assert!(matches!(e, PropsError::Json(_)), "{e}");
        let ok = ConnectionProperties::from_json_str(
            r#"{"driver_volume_type":"local","data":{"device_path":"/dev/vdb"}}"#,
            Some(Protocol::Local),
        )
        .unwrap();
        assert_eq!(ok.protocol(), Protocol::Local);
    }

    fn fc(v: Value) -> FcProperties {
        match ConnectionProperties::from_json(&v, Some(Protocol::FibreChannel)).unwrap() {
            ConnectionProperties::FibreChannel(p) => p,
            other => panic!("not FC: {other:?}"),
        }
    }

    #[rstest]
    #[case(json!({"target_wwn": "1234567890123456", "target_lun": 1}), vec![("1234567890123456", 1)])]
    #[case(json!({"target_wwn": ["1234567890123456", "0x2234567890ABCDEF"], "target_lun": "2"}), vec![("1234567890123456", 2), ("2234567890abcdef", 2)])]
    #[case(json!({"target_wwns": ["20210002AC00383D", "20220002AC00383D"], "target_luns": [1, 2]}), vec![("20210002ac00383d", 1), ("20220002ac00383d", 2)])]
    #[case(json!({"target_wwns": ["20210002AC00383D"], "target_wwn": "ffffffffffffffff"}), vec![("20210002ac00383d", 0)])]
    fn fc_targets(#[case] v: Value, #[case] want: Vec<(&str, u64)>) {
        let p = fc(v);
        let got: Vec<(&str, u64)> = p
            .targets
            .iter()
            .map(|(w, l)| (w.as_str(), l.get()))
            .collect();
        assert_eq!(got, want);
        assert!(p.enable_wildcard_scan);
        round_trips(&ConnectionProperties::FibreChannel(p));
    }

    #[test]
    fn fc_fixture_with_wrapper_and_itmap() {
        let v = json!({"driver_volume_type": "fibrechan", "data": {
            "volume_id": 1, "target_portal": "10.0.2.15:3260",
            "target_wwn": "1234567890123456", "target_lun": 1,
            "initiator_target_map": {"50014380186AF83C": ["514F0C50023F6C00"],
                                     "50014380186af83e": "514f0c50023f6c01"},
            "enable_wildcard_scan": false, "access_mode": "ro", "addressing_mode": "SAM3-flat"}});
        let c = ConnectionProperties::from_json(&v, None).unwrap();
        let ConnectionProperties::FibreChannel(p) = &c else {
            panic!()
        };
        let itm = p.initiator_target_map.as_ref().unwrap();
        let init = Wwpn::new("50014380186af83c").unwrap();
        assert_eq!(itm[&init], vec![Wwpn::new("514f0c50023f6c00").unwrap()]);
        assert_eq!(itm.len(), 2);
        assert!(!p.enable_wildcard_scan);
        assert_eq!(p.access_mode, Some(AccessMode::Ro));
        assert_eq!(p.volume_id.as_deref(), Some("1"));
        assert_eq!(p.extra.get("target_portal"), Some(&json!("10.0.2.15:3260")));
        assert_eq!(c.driver_volume_type(), "fibre_channel");
        round_trips(&c);
    }

    #[rstest]
    #[case(json!({"target_lun": 1}), "missing key target_wwns or target_wwn")]
    #[case(json!({"target_wwn": "12345"}), "target_wwn: invalid WWPN \"12345\"")]
    #[case(json!({"target_wwns": ["1234567890123456", 5]}), "target_wwns[1]: expected a string, got 5")]
    #[case(json!({"target_wwns": []}), "target_wwns: empty list")]
    #[case(json!({"target_wwn": {}}), "target_wwn: expected a string or a list of strings")]
    #[case(json!({"target_wwns": ["1234567890123456", "1234567890123457", "1234567890123458"], "target_luns": [1, 2]}), "3 target WWPNs but 2 target LUNs")]
    #[case(json!({"target_wwn": "1234567890123456", "target_lun": -3}), "target_lun: expected a non-negative integer, got -3")]
    #[case(json!({"target_wwn": "1234567890123456", "initiator_target_map": {"zz": []}}), "initiator_target_map key: invalid WWPN")]
    #[case(json!({"target_wwn": "1234567890123456", "initiator_target_map": []}), "initiator_target_map: expected an object")]
    fn fc_errors(#[case] v: Value, #[case] message: &str) {
        let e = err(v, Some(Protocol::FibreChannel));
        assert!(e.to_string().contains(message), "{e}");
    }

    const UUID: &str = "c20aba21-6ef6-446b-b374-45733b4883ba";
    const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:beaae2de-3a97-4be1-a739-6ac4bc5bf138";

    fn nvme(v: Value) -> NvmeofProperties {
        match ConnectionProperties::from_json(&v, Some(Protocol::Nvmeof)).unwrap() {
            ConnectionProperties::Nvmeof(p) => p,
            other => panic!("not NVMe: {other:?}"),
        }
    }

    #[test]
    fn nvme_new_format() {
        let v = json!({"target_nqn": "nqn.2016-06.io.spdk:cnode1",
            "vol_uuid": "C20ABA216EF6446BB37445733B4883BA",
            "portals": [["10.0.0.1", 4420, "tcp"], ["10.0.0.2", "4421", "RoCEv2"], ["fe80::1", 4420, "fc"]],
            "volume_nguid": "4941ef75-95b8-ee97-8ccf-096800f205c6", "ns_id": "10",
            "host_nqn": HOST_NQN, "cacheable": false});
        let p = nvme(v);
        let t = p.target().unwrap();
        assert_eq!(t.vol_uuid.as_ref().unwrap().as_str(), UUID);
        assert_eq!(t.portals[1].port, 4421);
        assert_eq!(t.portals[1].transport, NvmeTransport::Rdma);
        assert_eq!(t.portals[2].transport, NvmeTransport::Tcp);
        assert_eq!(t.ns_id, Some(10));
        assert_eq!(t.host_nqn.as_ref().unwrap().as_str(), HOST_NQN);
        assert_eq!(p.extra.get("cacheable"), Some(&json!(false)));
        round_trips(&ConnectionProperties::Nvmeof(p));
    }

    #[test]
    fn nvme_old_format_is_converted() {
        let p = nvme(
            json!({"nqn": "nqn.2016-06.io.spdk:cnode1", "transport_type": "rdma",
            "target_portal": "10.0.0.1", "target_port": 4420, "ns_id": 1}),
        );
        let t = p.target().unwrap();
        assert_eq!(t.target_nqn.as_str(), "nqn.2016-06.io.spdk:cnode1");
        assert_eq!(t.vol_uuid, None);
        assert_eq!(
            t.portals,
            vec![NvmePortal {
                address: "10.0.0.1".into(),
                port: 4420,
                transport: NvmeTransport::Rdma
            }]
        );
        assert!(p.extra.is_empty());
        let c = ConnectionProperties::Nvmeof(p);
        assert_eq!(
            c.data_json()["portals"],
            json!([["10.0.0.1", 4420, "rdma"]])
        );
        round_trips(&c);
    }

    #[test]
    fn nvme_replicated_is_parsed() {
        let rep = |i: u32| {
            json!({"target_nqn": format!("nqn.2016-06.io.spdk:r{i}"),
            "vol_uuid": format!("9b30ec12-75b9-4a53-be32-11111111111{i}"),
            "portals": [["10.0.0.1", 4420, "tcp"]]})
        };
        let p = nvme(
            json!({"vol_uuid": UUID, "alias": "fakealias", "replica_count": 3,
            "volume_replicas": [rep(1), rep(2), rep(3)]}),
        );
        assert!(p.target().is_none());
        let NvmeofLayout::Replicated(r) = &p.layout else {
            panic!()
        };
        assert_eq!(r.replicas.len(), 3);
        assert_eq!(r.replica_count, 3);
        assert_eq!(r.alias, "fakealias");
        round_trips(&ConnectionProperties::Nvmeof(p));
    }

    #[rstest]
    #[case(json!({"portals": []}), "missing key target_nqn")]
    #[case(json!({"target_nqn": "nqn_value", "portals": []}), "target_nqn: invalid NQN \"nqn_value\"")]
    #[case(json!({"target_nqn": "nqn.x"}), "missing key portals")]
    #[case(json!({"target_nqn": "nqn.x", "portals": [["a", 1]]}), "portals[0]: expected [address, port, transport]")]
    #[case(json!({"target_nqn": "nqn.x", "portals": [["portal1", "port1", "tcp"]]}), "portals[0][1]: expected a port number from 1 to 65535, got \"port1\"")]
    #[case(json!({"target_nqn": "nqn.x", "portals": [["a,b", 1, "tcp"]]}), "portals[0][0]:")]
    #[case(json!({"target_nqn": "nqn.x", "portals": [["a", 0, "tcp"]]}), "portals[0][1]:")]
    #[case(json!({"target_nqn": "nqn.x", "portals": [], "vol_uuid": "xyz"}), "vol_uuid: invalid NVMe UUID")]
    #[case(json!({"target_nqn": "nqn.x", "portals": [], "ns_id": -1}), "ns_id: expected a namespace id")]
    #[case(json!({"nqn": "nqn.x", "target_portal": "10.0.0.1"}), "missing key target_port")]
    #[case(json!({"volume_replicas": [{"target_nqn": "nqn.x", "portals": "p"}], "alias": "a"}), "volume_replicas[0].portals: expected a list")]
    #[case(json!({"volume_replicas": [5]}), "volume_replicas[0]: expected an object")]
    #[case(json!({"volume_replicas": [{"target_nqn": "nqn.x", "portals": []}], "alias": "../md"}), "alias:")]
    fn nvme_errors(#[case] v: Value, #[case] message: &str) {
        let e = err(v, Some(Protocol::Nvmeof));
        assert!(e.to_string().contains(message), "{e}");
    }

    #[test]
    fn local_properties() {
        let c = ConnectionProperties::from_json(
            &json!({"device_path": "/dev/vdb", "foo": 1}),
            Some(Protocol::Local),
        )
        .unwrap();
        let ConnectionProperties::Local(p) = &c else {
            panic!()
        };
        assert_eq!(p.device_path.as_str(), "/dev/vdb");
        assert_eq!(p.extra.get("foo"), Some(&json!(1)));
        round_trips(&c);
        for (v, msg) in [
            (json!({}), "missing key device_path"),
            (json!({"device_path": "/dev/../x"}), "device_path:"),
            (
                json!({"device_path": 7}),
                "device_path: expected a string, got 7",
            ),
        ] {
            let e = err(v, Some(Protocol::Local));
            assert!(e.to_string().contains(msg), "{e}");
        }
    }

    #[test]
    fn unknown_keys_round_trip_unchanged() {
        let extra = json!({"qos_specs": {"total_iops_sec": 100}, "cacheable": true,
            "vendor_thing": [1, "two", null], "discard": false});
        let mut v = json!({"target_portal": "10.0.2.15:3260", "target_iqn": IQN1, "target_lun": 0});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let c = ConnectionProperties::from_json(&v, Some(Protocol::Iscsi)).unwrap();
        let data = c.data_json();
        for (k, val) in extra.as_object().unwrap() {
            assert_eq!(&data[k], val, "{k}");
        }
        round_trips(&c);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("driver_volume_type".to_owned()),
            Just("data".to_owned()),
            Just("target_portal".to_owned()),
            Just("target_iqn".to_owned()),
            Just("target_lun".to_owned()),
            Just("target_portals".to_owned()),
            Just("target_iqns".to_owned()),
            Just("target_luns".to_owned()),
            Just("target_wwn".to_owned()),
            Just("target_wwns".to_owned()),
            Just("initiator_target_map".to_owned()),
            Just("target_nqn".to_owned()),
            Just("nqn".to_owned()),
            Just("portals".to_owned()),
            Just("volume_replicas".to_owned()),
            Just("alias".to_owned()),
            Just("auth_method".to_owned()),
            Just("device_path".to_owned()),
            "[a-z_]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            prop_oneof![
                Just("iscsi".to_owned()),
                Just("fc".to_owned()),
                Just("nvmeof".to_owned()),
                Just("CHAP".to_owned()),
                Just("10.0.0.1:3260".to_owned()),
                Just(IQN1.to_owned()),
                Just("1234567890123456".to_owned()),
                Just("nqn.x".to_owned()),
                ".{0,12}",
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_json_never_panics(v in arb_json(), p in prop::option::of(prop_oneof![
            Just(Protocol::Iscsi), Just(Protocol::FibreChannel), Just(Protocol::Nvmeof), Just(Protocol::Local)]))
        {
            match ConnectionProperties::from_json(&v, p) {
                Ok(c) => {
                    let again = ConnectionProperties::from_json(&c.to_json(), None);
                    prop_assert_eq!(again, Ok(c));
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
        }
    }
}
