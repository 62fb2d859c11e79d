//! Validated identifiers: iSCSI names, portals, LUNs, WWIDs, NVMe names, WWPNs, UUIDs.
//!
//! Every type here is validated once, on construction, and is then known to be safe to put in
//! a host path component or a command argument: no `/`, no `..`, no whitespace at the edges,
//! no control characters, bounded length. All of them implement `FromStr`, `TryFrom<&str>`,
//! `Display`, and serde `Serialize`/`Deserialize` (deserialisation validates too).
//!
//! Strictness: [`Iqn::new`] and [`Nqn::new`] (and therefore `FromStr`, `TryFrom` and serde)
//! are *strict*: they require the standard name forms. os-brick's unit-test fixtures use
//! placeholder names such as `tgt1` or `nqn_value`; those are accepted only by
//! [`Iqn::new_lenient`] / [`Nqn::new_lenient`], which keep the safety checks (character set,
//! length, no `/`, no `..`) but not the structure.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The kind of identifier an [`IdError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// An iSCSI name ([`Iqn`]).
    Iqn,
    /// An iSCSI portal ([`Portal`]).
    Portal,
    /// A SCSI LUN ([`Lun`]).
    Lun,
    /// A SCSI addressing mode ([`AddressingMode`]).
    AddressingMode,
    /// A SCSI WWID ([`Wwid`]).
    Wwid,
    /// An NVMe qualified name ([`Nqn`]).
    Nqn,
    /// A Fibre Channel port name ([`Wwpn`]).
    Wwpn,
    /// An NVMe namespace UUID ([`NvmeUuid`]).
    NvmeUuid,
    /// An NVMe namespace globally unique identifier ([`Nguid`]).
    Nguid,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Iqn => "IQN",
            IdKind::Portal => "portal",
            IdKind::Lun => "LUN",
            IdKind::AddressingMode => "addressing mode",
            IdKind::Wwid => "WWID",
            IdKind::Nqn => "NQN",
            IdKind::Wwpn => "WWPN",
            IdKind::NvmeUuid => "NVMe UUID",
            IdKind::Nguid => "NGUID",
        })
    }
}

/// An identifier failed validation: which kind, the offending value and why.
///
/// Displayed as `invalid IQN "iqn.2010-10.org.openstack:../../etc": contains "/"`.
/// The value is kept (truncated to 256 characters) so the message is self-explanatory.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct IdError {
    kind: IdKind,
    value: String,
    reason: String,
}

/// Values longer than this are truncated in error messages.
const MAX_ERROR_VALUE_CHARS: usize = 256;

impl IdError {
    /// Builds an error for `value` of `kind`.
    pub fn new(kind: IdKind, value: &str, reason: impl Into<String>) -> Self {
        let value = if value.chars().count() > MAX_ERROR_VALUE_CHARS {
            let mut v: String = value.chars().take(MAX_ERROR_VALUE_CHARS).collect();
            v.push('…');
            v
        } else {
            value.to_owned()
        };
        Self {
            kind,
            value,
            reason: reason.into(),
        }
    }

    /// The kind of identifier that was rejected.
    pub fn kind(&self) -> IdKind {
        self.kind
    }

    /// The rejected value (possibly truncated).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why it was rejected, e.g. `contains "/"`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// RFC 3720 §3.2.6.1: an iSCSI name is at most 223 bytes. NVMe uses the same limit for NQNs.
pub const MAX_NAME_BYTES: usize = 223;

/// Characters allowed in iSCSI and NVMe names (after the structural checks).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_')
}

/// The safety checks shared by every textual identifier: non-empty, bounded, printable ASCII
/// without whitespace, no `/`, no `..`, and only `allowed` characters.
fn check_safe(
    kind: IdKind,
    s: &str,
    max_bytes: usize,
    allowed: fn(char) -> bool,
    allowed_desc: &str,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::new(kind, s, "empty"));
    }
    if s.len() > max_bytes {
        return Err(IdError::new(
            kind,
            s,
            format!("longer than {max_bytes} bytes ({} bytes)", s.len()),
        ));
    }
    if s.contains('/') {
        return Err(IdError::new(kind, s, "contains \"/\""));
    }
    if s.contains("..") {
        return Err(IdError::new(kind, s, "contains \"..\""));
    }
    for c in s.chars() {
        if c == '\0' {
            return Err(IdError::new(kind, s, "contains a NUL byte"));
        }
        if c.is_control() {
            return Err(IdError::new(kind, s, "contains a control character"));
        }
        if c.is_whitespace() {
            return Err(IdError::new(kind, s, "contains whitespace"));
        }
        if !allowed(c) {
            return Err(IdError::new(
                kind,
                s,
                format!("contains {c:?} (allowed: {allowed_desc})"),
            ));
        }
    }
    Ok(())
}

const NAME_CHARS_DESC: &str = "ASCII letters, digits, '.', '-', ':', '_'";

/// Checks `yyyy-mm` (month 01 to 12).
fn is_year_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b.iter().take(4).all(u8::is_ascii_digit)
        && b.get(4) == Some(&b'-')
        && b.iter().skip(5).all(u8::is_ascii_digit)
        && matches!(s.get(5..7).and_then(|m| m.parse::<u8>().ok()), Some(1..=12))
}

fn is_hex_len(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Implements `FromStr`, `TryFrom<&str>`, `TryFrom<String>`, `Display`, `AsRef<str>` and
/// string-based serde for a validated string newtype with a `new` constructor.
macro_rules! string_id {
    ($ty:ident) => {
        impl FromStr for $ty {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                $ty::new(s)
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                $ty::new(s)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                $ty::new(&s)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                $ty::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

// ------------------------------------------------------------------------------------------
// Iqn
// ------------------------------------------------------------------------------------------

/// An iSCSI name (RFC 3720 §3.2.6.3): `iqn.yyyy-mm.<reversed domain>[:<anything>]`,
/// `eui.<16 hex>` or `naa.<16 or 32 hex>`.
///
/// [`Iqn::new`] is strict about that structure; [`Iqn::new_lenient`] accepts any name made of
/// ASCII letters, digits, `.`, `-`, `:`, `_` (os-brick fixtures use `tgt1`). Both reject empty
/// names, whitespace, control characters, `/`, `..` and names over 223 bytes. The text is kept
/// as given (no case folding): os-brick compares IQNs byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Iqn(String);

impl Iqn {
    /// Validates a standard iSCSI name (`iqn.`, `eui.` or `naa.` form).
    pub fn new(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::Iqn;
        check_safe(kind, s, MAX_NAME_BYTES, is_name_char, NAME_CHARS_DESC)?;
        if let Some(rest) = s.strip_prefix("iqn.") {
            let (date, rest) = rest.split_at_checked(7).unwrap_or((rest, ""));
            if !is_year_month(date) {
                return Err(IdError::new(kind, s, "date after \"iqn.\" must be yyyy-mm"));
            }
            let Some(rest) = rest.strip_prefix('.') else {
                return Err(IdError::new(kind, s, "expected '.' after the yyyy-mm date"));
            };
            let (authority, suffix) = match rest.split_once(':') {
                Some((a, sfx)) => (a, Some(sfx)),
                None => (rest, None),
            };
            let authority_ok = !authority.is_empty()
                && authority.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !authority_ok {
                return Err(IdError::new(
                    kind,
                    s,
                    "naming authority must be a reversed domain name (letters, digits, '-', '.')",
                ));
            }
            if suffix == Some("") {
                return Err(IdError::new(kind, s, "empty name after ':'"));
            }
        } else if let Some(hex) = s.strip_prefix("eui.") {
            if !is_hex_len(hex, 16) {
                return Err(IdError::new(
                    kind,
                    s,
                    "\"eui.\" must be followed by 16 hex digits",
                ));
            }
        } else if let Some(hex) = s.strip_prefix("naa.") {
            if !is_hex_len(hex, 16) && !is_hex_len(hex, 32) {
                return Err(IdError::new(
                    kind,
                    s,
                    "\"naa.\" must be followed by 16 or 32 hex digits",
                ));
            }
        } else {
            return Err(IdError::new(
                kind,
                s,
                "does not start with \"iqn.\", \"eui.\" or \"naa.\"",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// Validates only safety (character set, length, no `/`, no `..`), not the name structure.
    ///
    /// For placeholder names from test fixtures and for target names read back from a host.
    pub fn new_lenient(s: &str) -> Result<Self, IdError> {
        check_safe(
            IdKind::Iqn,
            s,
            MAX_NAME_BYTES,
            is_name_char,
            NAME_CHARS_DESC,
        )?;
        Ok(Self(s.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(Iqn);

// ------------------------------------------------------------------------------------------
// Nqn
// ------------------------------------------------------------------------------------------

/// An NVMe qualified name: starts with `nqn.`, at most 223 bytes.
///
/// The NVMe base specification recommends `nqn.yyyy-mm.<reversed domain>[:...]` and
/// `nqn.2014-08.org.nvmexpress:uuid:<uuid>`, but Cinder's own nvmet target emits
/// `nqn.<subsystem name>-<volume id>` and the Linux target accepts any name, so [`Nqn::new`]
/// checks the `nqn.` prefix, the character set and the length, and checks the UUID when the
/// name uses the `nqn.2014-08.org.nvmexpress:uuid:` form. [`Nqn::new_lenient`] drops the prefix
/// requirement (os-brick fixtures use `nqn_value`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nqn(String);

/// The prefix of UUID-based NQNs.
const NQN_UUID_PREFIX: &str = "nqn.2014-08.org.nvmexpress:uuid:";

impl Nqn {
    /// Validates an NQN (see the type documentation).
    pub fn new(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::Nqn;
        check_safe(kind, s, MAX_NAME_BYTES, is_name_char, NAME_CHARS_DESC)?;
        let Some(rest) = s.strip_prefix("nqn.") else {
            return Err(IdError::new(kind, s, "does not start with \"nqn.\""));
        };
        if rest.is_empty() {
            return Err(IdError::new(kind, s, "nothing after \"nqn.\""));
        }
        if let Some(uuid) = s.strip_prefix(NQN_UUID_PREFIX) {
            let ok = uuid.len() == 36
                && uuid.char_indices().all(|(i, c)| {
                    if matches!(i, 8 | 13 | 18 | 23) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                });
            if !ok {
                return Err(IdError::new(
                    kind,
                    s,
                    "UUID-based NQN must end with a hyphenated UUID",
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Validates only safety (character set, length, no `/`, no `..`), not the `nqn.` prefix.
    pub fn new_lenient(s: &str) -> Result<Self, IdError> {
        check_safe(
            IdKind::Nqn,
            s,
            MAX_NAME_BYTES,
            is_name_char,
            NAME_CHARS_DESC,
        )?;
        Ok(Self(s.to_owned()))
    }

    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(Nqn);

// ------------------------------------------------------------------------------------------
// Portal
// ------------------------------------------------------------------------------------------

/// The default iSCSI port (not applied implicitly; see [`Portal`]).
pub const ISCSI_DEFAULT_PORT: u16 = 3260;

/// Longest accepted host name (RFC 1035).
const MAX_HOSTNAME_BYTES: usize = 253;

/// The host part of a [`Portal`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum PortalHost {
    V4(Ipv4Addr),
    /// Parsed address plus the text as given (case preserved) including any `%zone`.
    V6(Ipv6Addr, String),
    Name(String),
}

/// An iSCSI portal: `ipv4:port`, `[ipv6]:port` or `hostname:port`.
///
/// - Anything from the first `,` on (the target portal group tag, `ip:port,1`) is dropped, as
///   os-brick does before logging in.
/// - The port is **required** (1 to 65535): Cinder drivers always send it, and the by-path name
///   and the iscsiadm node record both contain it, so guessing 3260 would hide a driver bug.
///   Use [`Portal::from_parts`] with [`ISCSI_DEFAULT_PORT`] to build one deliberately.
/// - IPv6 addresses must be bracketed (`[fe80::1]:3260`, an optional `%zone` is kept); the
///   address text keeps its case. Equality is exact; [`Portal::same_endpoint`] compares IPv6
///   addresses case-insensitively (os-brick bug 1793627).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Portal {
    host: PortalHost,
    port: u16,
    text: String,
}

impl Portal {
    /// Parses `addr:port` / `[v6]:port` / `host:port`, dropping a `,tpgt` suffix.
    pub fn new(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::Portal;
        fn portal_char(c: char) -> bool {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '[' | ']' | '%' | ',')
        }
        check_safe(
            kind,
            s,
            MAX_HOSTNAME_BYTES + 64,
            portal_char,
            "ASCII letters, digits, '.', '-', ':', '_', '[', ']', '%', ','",
        )?;
        let main = s.split(',').next().unwrap_or(s);
        if main.is_empty() {
            return Err(IdError::new(kind, s, "empty address"));
        }
        let (host, port_text) = if let Some(rest) = main.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(IdError::new(kind, s, "missing ']' after IPv6 address"));
            };
            let host = parse_v6(inner).ok_or_else(|| {
                IdError::new(kind, s, format!("{inner:?} is not an IPv6 address"))
            })?;
            if after.is_empty() {
                return Err(IdError::new(
                    kind,
                    s,
                    "missing port (expected [address]:port)",
                ));
            }
            let Some(port) = after.strip_prefix(':') else {
                return Err(IdError::new(kind, s, "expected ':' after ']'"));
            };
            (host, port)
        } else {
            let Some((addr, port)) = main.rsplit_once(':') else {
                return Err(IdError::new(
                    kind,
                    s,
                    "missing port (expected address:port)",
                ));
            };
            if addr.contains(':') {
                return Err(IdError::new(
                    kind,
                    s,
                    "IPv6 address must be in brackets ([address]:port)",
                ));
            }
            if addr.contains(['[', ']', '%']) {
                return Err(IdError::new(kind, s, "unexpected '[', ']' or '%'"));
            }
            (parse_host(kind, s, addr)?, port)
        };
        let port = parse_port(kind, s, port_text)?;
        Ok(Self::build(host, port))
    }

    /// Builds a portal from an address (IPv4, bare IPv6 or host name) and a port.
    pub fn from_parts(address: &str, port: u16) -> Result<Self, IdError> {
        let kind = IdKind::Portal;
        let shown = format!("{address}:{port}");
        if port == 0 {
            return Err(IdError::new(kind, &shown, "port 0 is not valid"));
        }
        let host = if address.contains(':') {
            parse_v6(address).ok_or_else(|| {
                IdError::new(kind, &shown, format!("{address:?} is not an IPv6 address"))
            })?
        } else {
            if address.contains(['[', ']', '%', '/', ',']) || address.contains("..") {
                return Err(IdError::new(kind, &shown, "invalid character in address"));
            }
            parse_host(kind, &shown, address)?
        };
        Ok(Self::build(host, port))
    }

    fn build(host: PortalHost, port: u16) -> Self {
        let text = match &host {
            PortalHost::V4(a) => format!("{a}:{port}"),
            PortalHost::V6(_, t) => format!("[{t}]:{port}"),
            PortalHost::Name(n) => format!("{n}:{port}"),
        };
        Self { host, port, text }
    }

    /// The address without brackets or port: `10.0.2.15`, `fe80::1`, `array.example.com`.
    pub fn address(&self) -> &str {
        match &self.host {
            PortalHost::V4(_) => self.text.rsplit_once(':').map_or("", |(a, _)| a),
            PortalHost::V6(_, t) => t,
            PortalHost::Name(n) => n,
        }
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The IP address, if the portal is not a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.host {
            PortalHost::V4(a) => Some(IpAddr::V4(*a)),
            PortalHost::V6(a, _) => Some(IpAddr::V6(*a)),
            PortalHost::Name(_) => None,
        }
    }

    /// Whether the address is IPv6 (displayed in brackets).
    pub fn is_ipv6(&self) -> bool {
        matches!(self.host, PortalHost::V6(..))
    }

    /// `ip:port` or `[v6]:port` (no tpgt), as passed to `iscsiadm -p`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether two portals name the same endpoint: same port and the same address, compared
    /// case-insensitively (IPv6 hex digits and host names; os-brick bug 1793627).
    pub fn same_endpoint(&self, other: &Portal) -> bool {
        self.port == other.port && self.address().eq_ignore_ascii_case(other.address())
    }
}

fn parse_v6(text: &str) -> Option<PortalHost> {
    let (addr, zone) = match text.split_once('%') {
        Some((a, z)) => (a, Some(z)),
        None => (text, None),
    };
    if let Some(zone) = zone {
        let zone_ok = !zone.is_empty()
            && zone.len() <= 32
            && zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !zone_ok {
            return None;
        }
    }
    let parsed = addr.parse::<Ipv6Addr>().ok()?;
    Some(PortalHost::V6(parsed, text.to_owned()))
}

fn parse_host(kind: IdKind, whole: &str, addr: &str) -> Result<PortalHost, IdError> {
    if addr.is_empty() {
        return Err(IdError::new(kind, whole, "empty address"));
    }
    if let Ok(v4) = addr.parse::<Ipv4Addr>() {
        return Ok(PortalHost::V4(v4));
    }
    let labels_ok = addr.len() <= MAX_HOSTNAME_BYTES
        && addr.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !labels_ok {
        return Err(IdError::new(
            kind,
            whole,
            format!("{addr:?} is neither an IP address nor a host name"),
        ));
    }
    if addr
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(IdError::new(
            kind,
            whole,
            format!("{addr:?} is not a valid IPv4 address"),
        ));
    }
    Ok(PortalHost::Name(addr.to_owned()))
}

fn parse_port(kind: IdKind, whole: &str, text: &str) -> Result<u16, IdError> {
    if text.is_empty() {
        return Err(IdError::new(kind, whole, "missing port after ':'"));
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::new(
            kind,
            whole,
            format!("port {text:?} is not a decimal number"),
        ));
    }
    match text.parse::<u32>() {
        Ok(0) => Err(IdError::new(kind, whole, "port 0 is not valid")),
        Ok(p) => u16::try_from(p)
            .map_err(|_| IdError::new(kind, whole, format!("port {p} is out of range (1-65535)"))),
        Err(_) => Err(IdError::new(
            kind,
            whole,
            format!("port {text:?} is out of range (1-65535)"),
        )),
    }
}

string_id!(Portal);

// ------------------------------------------------------------------------------------------
// Lun and addressing modes
// ------------------------------------------------------------------------------------------

/// How the array encodes LUN numbers (os-brick `addressing_mode`, os_brick/constants.py).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AddressingMode {
    /// `transparent`: no translation (like `SAM`). The default.
    #[default]
    Transparent,
    /// `SAM`: the 64-bit LUN as is.
    Sam,
    /// `SAM2`: peripheral addressing below 256, flat space addressing (+16384) from 256 on.
    Sam2,
    /// `SAM3-flat`: flat space addressing for every LUN (+16384).
    Sam3Flat,
}

impl AddressingMode {
    /// The os-brick spelling: `transparent`, `SAM`, `SAM2`, `SAM3-flat`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressingMode::Transparent => "transparent",
            AddressingMode::Sam => "SAM",
            AddressingMode::Sam2 => "SAM2",
            AddressingMode::Sam3Flat => "SAM3-flat",
        }
    }

    /// Parses the os-brick spelling (case-sensitive, as os-brick's membership test is).
    pub fn new(s: &str) -> Result<Self, IdError> {
        match s {
            "transparent" => Ok(AddressingMode::Transparent),
            "SAM" => Ok(AddressingMode::Sam),
            "SAM2" => Ok(AddressingMode::Sam2),
            "SAM3-flat" => Ok(AddressingMode::Sam3Flat),
            _ => Err(IdError::new(
                IdKind::AddressingMode,
                s,
                "expected one of \"transparent\", \"SAM\", \"SAM2\", \"SAM3-flat\"",
            )),
        }
    }
}

string_id!(AddressingMode);

/// Offset added by flat space addressing (address method 01b in the first LUN level).
pub const FLAT_SPACE_OFFSET: u64 = 16384;

/// A SCSI logical unit number, in the kernel's integer form (the `L` of `H:C:T:L`).
///
/// SAM LUNs are 8 bytes and the kernel maps them to a `u64` (`scsilun_to_int`), so every
/// `u64` is accepted. Parsing accepts a JSON integer or a string of decimal digits (os-brick
/// fixtures have `'target_lun': '1'`), always normalised to an integer, so the os-brick bug in
/// which a string LUN never matches the sysfs LUN cannot happen. Negative numbers,
/// fractions, signs, whitespace, hex and values above 2^64-1 are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lun(u64);

impl Lun {
    /// The largest LUN (2^64-1).
    pub const MAX: Lun = Lun(u64::MAX);

    /// Wraps an integer LUN (every `u64` is valid).
    pub const fn new(lun: u64) -> Self {
        Self(lun)
    }

    /// The LUN as an integer.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// Parses a string of decimal digits.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::Lun;
        if s.is_empty() {
            return Err(IdError::new(kind, s, "empty"));
        }
        if s.starts_with('-') {
            return Err(IdError::new(kind, s, "expected a non-negative integer"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdError::new(
                kind,
                s,
                "expected a non-negative integer (decimal digits only)",
            ));
        }
        s.parse::<u64>()
            .map(Self)
            .map_err(|_| IdError::new(kind, s, "larger than 2^64-1"))
    }

    /// Converts a JSON value: an integer, or a string of decimal digits.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, IdError> {
        match value {
            serde_json::Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Ok(Self(u))
                } else if n.as_i64().is_some() {
                    Err(IdError::new(
                        IdKind::Lun,
                        &n.to_string(),
                        "expected a non-negative integer",
                    ))
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    let reason = if f.fract() == 0.0 && f > 0.0 {
                        "larger than 2^64-1 or not an integer"
                    } else {
                        "expected a non-negative integer"
                    };
                    Err(IdError::new(IdKind::Lun, &n.to_string(), reason))
                }
            }
            serde_json::Value::String(s) => Self::parse(s),
            other => Err(IdError::new(
                IdKind::Lun,
                &other.to_string(),
                format!("expected a non-negative integer, got {}", json_type(other)),
            )),
        }
    }

    /// The value os-brick uses for this LUN under `mode` (`LinuxSCSI.lun_for_addressing`):
    /// `SAM3-flat` adds 16384; `SAM2` adds 16384 when the LUN is 256 or more; `SAM` and
    /// `transparent` leave it unchanged.
    ///
    /// Like os-brick this does not check that the LUN fits the 14-bit flat space; LUNs within
    /// 16384 of 2^64-1 saturate at 2^64-1 instead of overflowing.
    pub fn for_addressing(self, mode: AddressingMode) -> u64 {
        match mode {
            AddressingMode::Sam3Flat => self.0.saturating_add(FLAT_SPACE_OFFSET),
            AddressingMode::Sam2 if self.0 >= 256 => self.0.saturating_add(FLAT_SPACE_OFFSET),
            _ => self.0,
        }
    }
}

/// A short name for a JSON value's type, for error messages.
pub(crate) fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl From<u64> for Lun {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

impl From<Lun> for u64 {
    fn from(v: Lun) -> Self {
        v.0
    }
}

impl FromStr for Lun {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for Lun {
    type Error = IdError;
    fn try_from(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl fmt::Display for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Lun {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Lun {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LunVisitor;
        impl serde::de::Visitor<'_> for LunVisitor {
            type Value = Lun;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer LUN or a string of decimal digits")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Lun, E> {
                Ok(Lun(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Lun, E> {
                u64::try_from(v).map(Lun).map_err(|_| {
                    E::custom(IdError::new(
                        IdKind::Lun,
                        &v.to_string(),
                        "expected a non-negative integer",
                    ))
                })
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Lun, E> {
                Err(E::custom(IdError::new(
                    IdKind::Lun,
                    &v.to_string(),
                    "expected a non-negative integer",
                )))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Lun, E> {
                Lun::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(LunVisitor)
    }
}

// ------------------------------------------------------------------------------------------
// Wwid
// ------------------------------------------------------------------------------------------

/// Longest accepted WWID. SCSI designators are at most 255 bytes; with a type prefix this is
/// a comfortable bound.
pub const MAX_WWID_BYTES: usize = 256;

/// A SCSI WWID in udev/scsi_id form: a type digit (`3` NAA, `2` EUI-64, `1` T10 vendor id,
/// `8` other) followed by the identifier, e.g. `3600140598d2e10957eb444ab09805555`. This is the
/// multipath map name (without friendly names) and the `scsi-<wwid>` by-id link suffix.
///
/// Validation: non-empty, at most 256 bytes, printable ASCII, no `/`, no `..`, no leading or
/// trailing space. Inner spaces are allowed because T10 vendor ids contain them as the
/// kernel reports them (`t10.ATA     QEMU HARDDISK`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wwid(String);

impl Wwid {
    /// Validates an already udev-formatted WWID.
    pub fn new(s: &str) -> Result<Self, IdError> {
        let kind = IdKind::Wwid;
        fn wwid_char(c: char) -> bool {
            c.is_ascii_graphic()
        }
        // Spaces are allowed inside: check with them replaced, then check the edges.
        let probe = s.replace(' ', "_");
        check_safe(kind, &probe, MAX_WWID_BYTES, wwid_char, "printable ASCII")
            .map_err(|e| IdError::new(kind, s, e.reason))?;
        if s.starts_with(' ') || s.ends_with(' ') {
            return Err(IdError::new(kind, s, "leading or trailing space"));
        }
        Ok(Self(s.to_owned()))
    }

    /// Converts the kernel's `/sys/block/<dev>/device/wwid` content as os-brick's
    /// `get_sysfs_wwid` does: trims it, then maps the 4-character prefix `naa.`→`3`,
    /// `eui.`→`2`, `t10.`→`1`, anything else → `8`, and appends the text after the first four
    /// characters (so an unknown prefix loses its first four characters, as in os-brick).
    pub fn from_sysfs(content: &str) -> Result<Self, IdError> {
        let trimmed = content.trim();
        let Some((prefix, rest)) = trimmed.split_at_checked(4) else {
            return Err(IdError::new(
                IdKind::Wwid,
                trimmed,
                "sysfs wwid shorter than its 4-character type prefix",
            ));
        };
        let digit = match prefix {
            "naa." => '3',
            "eui." => '2',
            "t10." => '1',
            _ => '8',
        };
        if rest.is_empty() {
            return Err(IdError::new(
                IdKind::Wwid,
                trimmed,
                "nothing after the type prefix",
            ));
        }
        Self::new(&format!("{digit}{rest}"))
    }

    /// Extracts the WWID from a device-mapper multipath uuid (`/sys/block/dm-N/dm/uuid`,
    /// `mpath-<wwid>`). Other dm uuids (`CRYPT-...`, `LVM-...`) are an error.
    pub fn from_dm_uuid(content: &str) -> Result<Self, IdError> {
        let trimmed = content.trim();
        let Some(rest) = trimmed.strip_prefix("mpath-") else {
            return Err(IdError::new(
                IdKind::Wwid,
                trimmed,
                "not a multipath dm uuid (expected \"mpath-<wwid>\")",
            ));
        };
        Self::new(rest)
    }

    /// The WWID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(Wwid);

// ------------------------------------------------------------------------------------------
// Wwpn
// ------------------------------------------------------------------------------------------

/// A Fibre Channel port (or node) name: 16 hex digits.
///
/// Accepts an optional `0x`/`0X` prefix and any case; stored lower-case without the prefix
/// (the form os-brick uses everywhere and udev uses after `fc-0x`). `Display` prints it
/// without prefix; [`Wwpn::to_prefixed`] adds `0x` (the sysfs `port_name` form).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Wwpn(String);

impl Wwpn {
    /// Validates and normalises a WWPN.
    pub fn new(s: &str) -> Result<Self, IdError> {
        let hex = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        if !is_hex_len(hex, 16) {
            return Err(IdError::new(
                IdKind::Wwpn,
                s,
                "expected 16 hex digits (optionally prefixed with 0x)",
            ));
        }
        Ok(Self(hex.to_ascii_lowercase()))
    }

    /// Lower-case hex without prefix, e.g. `500a098188fe6e8c`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// With a `0x` prefix, as in `/sys/class/fc_host/hostN/port_name`.
    pub fn to_prefixed(&self) -> String {
        format!("0x{}", self.0)
    }
}

string_id!(Wwpn);

// ------------------------------------------------------------------------------------------
// NvmeUuid, Nguid
// ------------------------------------------------------------------------------------------

/// Normalises 32 hex digits with optional hyphens (anywhere, as Python's `uuid.UUID`
/// accepts) to lower-case `8-4-4-4-12` text.
fn normalise_uuid(kind: IdKind, s: &str) -> Result<String, IdError> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if s.len() > 40 || !is_hex_len(&hex, 32) {
        return Err(IdError::new(
            kind,
            s,
            "expected 32 hex digits, optionally hyphenated",
        ));
    }
    let hex = hex.to_ascii_lowercase();
    let part = |a: usize, b: usize| hex.get(a..b).unwrap_or("");
    Ok(format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    ))
}

/// An NVMe namespace UUID: any case, hyphens optional; normalised to lower-case
/// hyphenated text (`c20aba21-6ef6-446b-b374-45733b4883ba`), as os-brick compares them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NvmeUuid(String);

impl NvmeUuid {
    /// Validates and normalises a UUID.
    pub fn new(s: &str) -> Result<Self, IdError> {
        normalise_uuid(IdKind::NvmeUuid, s).map(Self)
    }

    /// Lower-case hyphenated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(NvmeUuid);

/// An NVMe namespace globally unique identifier (16 bytes): same text rules as [`NvmeUuid`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nguid(String);

impl Nguid {
    /// Validates and normalises an NGUID.
    pub fn new(s: &str) -> Result<Self, IdError> {
        normalise_uuid(IdKind::Nguid, s).map(Self)
    }

    /// Lower-case hyphenated text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

string_id!(Nguid);

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[rstest]
    #[case("iqn.2010-10.org.openstack:volume-00000001")]
    #[case("iqn.2000-05.com.3pardata:20810002ac00383d")]
    #[case("iqn.2004-04.com.qnap:ts-831x:iscsi.cinder-20170531114245.9eff88")]
    #[case("iqn.1992-08.com.netapp:sn.33615311")]
    #[case("iqn.1234-12.foo.bar:01:23456789abc")]
    #[case("iqn.2001-04.com.example")]
    #[case("eui.02004567A425678D")]
    #[case("naa.52004567BA64678D")]
    #[case("naa.60000000000000000e00000000010001")]
    fn valid_iqns(#[case] s: &str) {
        let iqn = Iqn::new(s).unwrap();
        assert_eq!(iqn.as_str(), s);
        assert_eq!(iqn.to_string(), s);
        assert_eq!(s.parse::<Iqn>().unwrap(), iqn);
    }

    #[rstest]
    #[case("", "empty")]
    #[case("iqn.2010-10.org.openstack:../../etc", "contains \"/\"")]
    #[case("iqn.2010-10.org.openstack:a..b", "contains \"..\"")]
    #[case("iqn.2010-10.org.openstack:a/b", "contains \"/\"")]
    #[case("iqn.2010-10.org.openstack:a b", "contains whitespace")]
    #[case("iqn.2010-10.org.openstack:a\nb", "contains a control character")]
    #[case("iqn.2010-10.org.openstack:a\0b", "contains a NUL byte")]
    #[case("iqn.2010-10.org.openstack:a*", "contains '*'")]
    #[case("iqn.2010-13.org.openstack:a", "yyyy-mm")]
    #[case("iqn.10-10.org.openstack:a", "yyyy-mm")]
    #[case("iqn.2010-10org.openstack:a", "expected '.'")]
    #[case("iqn.2010-10.:a", "naming authority")]
    #[case("iqn.2010-10.org.openstack:", "empty name after ':'")]
    #[case("eui.0200", "16 hex digits")]
    #[case("naa.zz004567BA64678D", "16 or 32 hex digits")]
    #[case("tgt1", "does not start with")]
    #[case("IQN.2010-10.org.openstack:a", "does not start with")]
    fn invalid_iqns(#[case] s: &str, #[case] reason: &str) {
        let err = Iqn::new(s).unwrap_err();
        assert_eq!(err.kind(), IdKind::Iqn);
        assert!(err.reason().contains(reason), "{err}");
    }

    #[test]
    fn iqn_error_message_names_value_and_reason() {
        let err = Iqn::new("iqn.2010-10.org.openstack:../../etc").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid IQN "iqn.2010-10.org.openstack:../../etc": contains "/""#
        );
    }

    #[test]
    fn iqn_length_limit_is_223_bytes() {
        let base = "iqn.2010-10.org.openstack:";
        let ok = format!("{base}{}", "a".repeat(MAX_NAME_BYTES - base.len()));
        assert!(Iqn::new(&ok).is_ok());
        let too_long = format!("{ok}a");
        let err = Iqn::new(&too_long).unwrap_err();
        assert!(err.reason().contains("longer than 223 bytes"), "{err}");
    }

    #[test]
    fn long_values_are_truncated_in_errors() {
        let err = Iqn::new(&"x".repeat(10_000)).unwrap_err();
        assert!(err.value().chars().count() <= MAX_ERROR_VALUE_CHARS + 1);
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn lenient_iqn_accepts_placeholders_but_not_paths() {
        assert_eq!(Iqn::new_lenient("tgt1").unwrap().as_str(), "tgt1");
        assert!(Iqn::new_lenient("../etc").is_err());
        assert!(Iqn::new_lenient("a/b").is_err());
        assert!(Iqn::new_lenient("").is_err());
    }

    #[test]
    fn iqn_serde_validates() {
        let iqn: Iqn = serde_json::from_value(json!("iqn.2010-10.org.openstack:v")).unwrap();
        assert_eq!(
            serde_json::to_value(&iqn).unwrap(),
            json!("iqn.2010-10.org.openstack:v")
        );
        let err =
            serde_json::from_value::<Iqn>(json!("iqn.2010-10.org.openstack:../x")).unwrap_err();
        assert!(err.to_string().contains("contains \"/\""), "{err}");
        assert!(serde_json::from_value::<Iqn>(json!(5)).is_err());
    }

    #[rstest]
    #[case("nqn.2014-08.org.nvmexpress:uuid:beaae2de-3a97-4be1-a739-6ac4bc5bf138")]
    #[case("nqn.2014-08.org.nvmexpress.discovery")]
    #[case("nqn.2016-06.io.spdk:cnode1")]
    #[case("nqn.nvme-subsystem-1-c20aba21-6ef6-446b-b374-45733b4883ba")]
    fn valid_nqns(#[case] s: &str) {
        assert_eq!(Nqn::new(s).unwrap().as_str(), s);
    }

    #[rstest]
    #[case("nqn_value", "does not start with \"nqn.\"")]
    #[case("nqn.", "nothing after")]
    #[case("nqn.2014-08.org.nvmexpress:uuid:not-a-uuid", "hyphenated UUID")]
    #[case("nqn.x/y", "contains \"/\"")]
    #[case("nqn.x:..", "contains \"..\"")]
    fn invalid_nqns(#[case] s: &str, #[case] reason: &str) {
        let err = Nqn::new(s).unwrap_err();
        assert_eq!(err.kind(), IdKind::Nqn);
        assert!(err.reason().contains(reason), "{err}");
    }

    #[test]
    fn nqn_length_and_lenient() {
        let long = format!("nqn.{}", "a".repeat(MAX_NAME_BYTES));
        assert!(Nqn::new(&long).unwrap_err().reason().contains("223"));
        assert!(Nqn::new_lenient("nqn_value").is_ok());
        assert!(Nqn::new_lenient("a/b").is_err());
    }

    #[rstest]
    #[case("10.0.2.15:3260", "10.0.2.15", 3260, false, "10.0.2.15:3260")]
    #[case("10.0.2.15:3260,1", "10.0.2.15", 3260, false, "10.0.2.15:3260")]
    #[case("10.0.2.15:3260,-1", "10.0.2.15", 3260, false, "10.0.2.15:3260")]
    #[case("[fe80::1]:3260", "fe80::1", 3260, true, "[fe80::1]:3260")]
    #[case("[FE80::1]:3261", "FE80::1", 3261, true, "[FE80::1]:3261")]
    #[case(
        "[fe80::1%eth0]:3260",
        "fe80::1%eth0",
        3260,
        true,
        "[fe80::1%eth0]:3260"
    )]
    #[case(
        "array-1.example.com:860",
        "array-1.example.com",
        860,
        false,
        "array-1.example.com:860"
    )]
    #[case("10.0.0.1:65535", "10.0.0.1", 65535, false, "10.0.0.1:65535")]
    fn valid_portals(
        #[case] s: &str,
        #[case] address: &str,
        #[case] port: u16,
        #[case] v6: bool,
        #[case] shown: &str,
    ) {
        let p = Portal::new(s).unwrap();
        assert_eq!(p.address(), address);
        assert_eq!(p.port(), port);
        assert_eq!(p.is_ipv6(), v6);
        assert_eq!(p.to_string(), shown);
        assert_eq!(Portal::new(shown).unwrap(), p);
    }

    #[rstest]
    #[case("10.0.2.15", "missing port")]
    #[case("[fe80::1]", "missing port")]
    #[case("10.0.2.15:", "missing port")]
    #[case("10.0.2.15:0", "port 0 is not valid")]
    #[case("10.0.2.15:70000", "out of range")]
    #[case("10.0.2.15:99999999999999999999", "out of range")]
    #[case("10.0.2.15:port1", "not a decimal number")]
    #[case("10.0.2.15:+80", "contains '+'")]
    #[case("fe80::1:3260", "must be in brackets")]
    #[case("[fe80::zz]:3260", "not an IPv6 address")]
    #[case("[fe80::1:3260", "missing ']'")]
    #[case("[fe80::1]3260", "expected ':'")]
    #[case("999.1.1.1:3260", "not a valid IPv4")]
    #[case("a/b:3260", "contains \"/\"")]
    #[case("a..b:3260", "contains \"..\"")]
    #[case("a b:3260", "contains whitespace")]
    #[case("", "empty")]
    #[case(",1", "empty address")]
    #[case(":3260", "empty address")]
    #[case("-bad.example:3260", "neither an IP address nor a host name")]
    fn invalid_portals(#[case] s: &str, #[case] reason: &str) {
        let err = Portal::new(s).unwrap_err();
        assert_eq!(err.kind(), IdKind::Portal);
        assert!(err.reason().contains(reason), "{err}");
    }

    #[test]
    fn portal_ipv6_case_insensitive_endpoint() {
        let a = Portal::new("[FE80::1]:3260").unwrap();
        let b = Portal::new("[fe80::1]:3260").unwrap();
        let c = Portal::new("[fe80::1]:3261").unwrap();
        assert_ne!(a, b);
        assert!(a.same_endpoint(&b));
        assert!(!a.same_endpoint(&c));
        assert_eq!(a.ip(), b.ip());
    }

    #[test]
    fn portal_from_parts() {
        let p = Portal::from_parts("fe80::1", ISCSI_DEFAULT_PORT).unwrap();
        assert_eq!(p.to_string(), "[fe80::1]:3260");
        let p = Portal::from_parts("10.0.0.1", 3260).unwrap();
        assert_eq!(p.as_str(), "10.0.0.1:3260");
        assert!(Portal::from_parts("10.0.0.1", 0).is_err());
        assert!(Portal::from_parts("../x", 3260).is_err());
        assert!(Portal::from_parts("a,b", 3260).is_err());
    }

    #[rstest]
    #[case("transparent", AddressingMode::Transparent)]
    #[case("SAM", AddressingMode::Sam)]
    #[case("SAM2", AddressingMode::Sam2)]
    #[case("SAM3-flat", AddressingMode::Sam3Flat)]
    fn addressing_modes(#[case] s: &str, #[case] mode: AddressingMode) {
        assert_eq!(s.parse::<AddressingMode>().unwrap(), mode);
        assert_eq!(mode.to_string(), s);
    }

    #[rstest]
    #[case("sam")]
    #[case("SAM3")]
    #[case("")]
    fn bad_addressing_modes(#[case] s: &str) {
        let err = s.parse::<AddressingMode>().unwrap_err();
        assert_eq!(err.kind(), IdKind::AddressingMode);
        assert!(err.reason().contains("SAM3-flat"));
    }

    #[rstest]
    #[case(AddressingMode::Transparent, 0, 0)]
    #[case(AddressingMode::Sam, 256, 256)]
    #[case(AddressingMode::Sam2, 255, 255)]
    #[case(AddressingMode::Sam2, 256, 16640)]
    #[case(AddressingMode::Sam3Flat, 0, 16384)]
    #[case(AddressingMode::Sam3Flat, 1, 16385)]
    #[case(AddressingMode::Sam3Flat, 256, 16640)]
    #[case(AddressingMode::Sam3Flat, u64::MAX, u64::MAX)]
    fn lun_for_addressing(#[case] mode: AddressingMode, #[case] lun: u64, #[case] want: u64) {
        assert_eq!(Lun::new(lun).for_addressing(mode), want);
    }

    #[rstest]
    #[case(json!(0), 0)]
    #[case(json!(1), 1)]
    #[case(json!("1"), 1)]
    #[case(json!("007"), 7)]
    #[case(json!(u64::MAX), u64::MAX)]
    #[case(json!("18446744073709551615"), u64::MAX)]
    fn lun_from_json_ok(#[case] v: serde_json::Value, #[case] want: u64) {
        assert_eq!(Lun::from_json(&v).unwrap().get(), want);
        assert_eq!(serde_json::from_value::<Lun>(v).unwrap().get(), want);
    }

    #[rstest]
    #[case(json!(-1), "non-negative")]
    #[case(json!("-1"), "non-negative")]
    #[case(json!("abc"), "decimal digits only")]
    #[case(json!("1.5"), "decimal digits only")]
    #[case(json!(" 1"), "decimal digits only")]
    #[case(json!("0x10"), "decimal digits only")]
    #[case(json!(1.5), "non-negative integer")]
    #[case(json!(""), "empty")]
    #[case(json!("18446744073709551616"), "larger than 2^64-1")]
    #[case(json!(1e30), "larger than 2^64-1")]
    #[case(json!(null), "got null")]
    #[case(json!(true), "got a boolean")]
    #[case(json!([1]), "got an array")]
    fn lun_from_json_err(#[case] v: serde_json::Value, #[case] reason: &str) {
        let err = Lun::from_json(&v).unwrap_err();
        assert_eq!(err.kind(), IdKind::Lun);
        assert!(err.reason().contains(reason), "{err}");
        assert!(serde_json::from_value::<Lun>(v).is_err());
    }

    #[test]
    fn lun_serialises_as_integer() {
        assert_eq!(serde_json::to_value(Lun::new(5)).unwrap(), json!(5));
        assert_eq!(Lun::new(5).to_string(), "5");
        assert_eq!("5".parse::<Lun>().unwrap(), Lun::from(5));
    }

    #[rstest]
    #[case(
        "naa.600140598d2e10957eb444ab09805555\n",
        "3600140598d2e10957eb444ab09805555"
    )]
    #[case("naa.wwid1", "3wwid1")]
    #[case("eui.0123456789abcdef", "20123456789abcdef")]
    #[case(
        "t10.ATA     QEMU HARDDISK   QM00001",
        "1ATA     QEMU HARDDISK   QM00001"
    )]
    #[case("abcdxyz", "8xyz")]
    fn wwid_from_sysfs(#[case] content: &str, #[case] want: &str) {
        assert_eq!(Wwid::from_sysfs(content).unwrap().as_str(), want);
    }

    #[rstest]
    #[case("", "shorter than")]
    #[case("naa.", "nothing after")]
    #[case("naa.60/../x", "contains \"/\"")]
    #[case("naa.6\u{1}", "control character")]
    fn wwid_from_sysfs_err(#[case] content: &str, #[case] reason: &str) {
        let err = Wwid::from_sysfs(content).unwrap_err();
        assert_eq!(err.kind(), IdKind::Wwid);
        assert!(err.reason().contains(reason), "{err}");
    }

    #[test]
    fn wwid_from_dm_uuid() {
        let w = Wwid::from_dm_uuid("mpath-3600d0230000000000e13955cc3757800\n").unwrap();
        assert_eq!(w.as_str(), "3600d0230000000000e13955cc3757800");
        assert!(Wwid::from_dm_uuid("CRYPT-LUKS2-abc").is_err());
        assert!(Wwid::from_dm_uuid("mpath-").is_err());
        assert!(Wwid::new(" 3600").is_err());
        assert!(Wwid::new(&"3".repeat(MAX_WWID_BYTES + 1)).is_err());
    }

    #[rstest]
    #[case("1234567890123456", "1234567890123456")]
    #[case("0x50014380242B9750", "50014380242b9750")]
    #[case("0X20210002AC00383D", "20210002ac00383d")]
    fn wwpn_ok(#[case] s: &str, #[case] want: &str) {
        let w = Wwpn::new(s).unwrap();
        assert_eq!(w.as_str(), want);
        assert_eq!(w.to_string(), want);
        assert_eq!(w.to_prefixed(), format!("0x{want}"));
    }

    #[rstest]
    #[case("12345678901234")]
    #[case("123456789012345g")]
    #[case("0x")]
    #[case("0x0x1234567890123456")]
    #[case("")]
    fn wwpn_err(#[case] s: &str) {
        assert_eq!(Wwpn::new(s).unwrap_err().kind(), IdKind::Wwpn);
    }

    #[rstest]
    #[case("c20aba21-6ef6-446b-b374-45733b4883ba")]
    #[case("c20aba216ef6446bb37445733b4883ba")]
    #[case("C20ABA21-6EF6-446B-B374-45733B4883BA")]
    fn uuid_normalised(#[case] s: &str) {
        assert_eq!(
            NvmeUuid::new(s).unwrap().as_str(),
            "c20aba21-6ef6-446b-b374-45733b4883ba"
        );
        assert_eq!(
            Nguid::new(s).unwrap().to_string(),
            "c20aba21-6ef6-446b-b374-45733b4883ba"
        );
    }

    #[rstest]
    #[case("c20aba21-6ef6-446b-b374-45733b4883b")]
    #[case("c20aba21-6ef6-446b-b374-45733b4883bz")]
    #[case("")]
    #[case("----------------------------------------c20aba216ef6446bb37445733b4883ba")]
    fn uuid_invalid(#[case] s: &str) {
        assert_eq!(NvmeUuid::new(s).unwrap_err().kind(), IdKind::NvmeUuid);
        assert_eq!(Nguid::new(s).unwrap_err().kind(), IdKind::Nguid);
    }
}
