//! The multi-host verifier (`brick verify`): asks path agents ([`crate::agent`]) over HTTP
//! whether a live migration or a detach left anything of a volume behind, and returns a
//! serializable [`Report`] with a verdict a gate job can act on.
//!
//! The HTTP client is `ureq` 3, blocking, without default features (so without a TLS stack):
//! the verifier makes a handful of sequential requests and exits, so an async runtime and a
//! TLS stack would only add build time and attack surface. Agents are plain HTTP on test and
//! gate networks; `https://` URLs are refused with a clear error (put a TLS proxy or an SSH
//! tunnel in front if the network needs it).
//!
//! # Verdicts
//!
//! Migration (`source` → `destination`) passes only if:
//! - the destination reports at least one path for the volume, every path has a readable
//!   identity, and every identity is the volume's;
//! - the source reports no path and no orphan related to the volume;
//! - no orphan on the destination claims the volume's identity for another device.
//!
//! Detach passes if every host reports no path and no related orphan.
//!
//! Paths are always asked with `?multipath=true`, so that every target of the properties is
//! checked, including those without a live session (a stale link of a logged-out portal).
//!
//! # The volume's identity
//!
//! In order of precedence: `--wwid` ([`VerifyOptions::expected_wwid`]); an identity key of
//! the connection properties (`volume_wwid`, `wwid`, `scsi_wwn`, `volume_wwn` or `wwn`, as a
//! udev WWID `3600…`, a kernel form `naa.600…`, or bare NAA hex `600…`/`0x600…`; never
//! `target_wwn`, which names FC *ports*); else the identity the destination's paths agree on.
//! Two given identities that differ make the check impossible (verdict `error`).
//!
//! An orphan is *related* to the volume when one of its identities is the volume's, or when it
//! belongs to one of the volume's iSCSI targets (same IQN, and the same LUN for links).
//!
//! When hosts disagree, `fail` wins over `error`, which wins over `pass`: a definite leftover
//! is reported even if another agent could not be reached.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use brick_connectors::naming::format_lun;
use brick_connectors::{ConnectionProperties, Protocol, Wwid};

use crate::agent::wire::{self, ErrorBody, OrphanReason};

/// The largest agent answer read (an orphan report of a big host included).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// Keys of the connection properties that may carry the volume's SCSI identity.
pub const IDENTITY_KEYS: [&str; 5] = ["volume_wwid", "wwid", "scsi_wwn", "volume_wwn", "wwn"];

/// Why a host (or the whole check) could not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The agent URL is not usable.
    #[error("agent URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The agent could not be reached or the exchange broke.
    #[error("agent {url} unreachable")]
    Unreachable {
        /// The request URL.
        url: String,
        /// The client error.
        #[source]
        source: ureq::Error,
    },
    /// The agent answered with an error.
    #[error("agent {url} answered {status} {code}: {message}")]
    Agent {
        /// The request URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The agent's stable error code (`unauthorized`, `invalid_properties`, ...).
        code: String,
        /// The agent's message.
        message: String,
    },
    /// The agent's answer is not what the protocol says.
    #[error("agent {url} sent an unexpected answer: {reason}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The connection properties are invalid.
    #[error("connection properties: {0}")]
    Props(#[from] brick_connectors::PropsError),
    /// An identity key of the properties holds no valid WWID.
    #[error("connection properties key {key}: {source}")]
    Identity {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: brick_connectors::IdError,
    },
}

/// Settings of a verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The bearer token the agents require, if any.
    pub token: Option<String>,
    /// The volume's identity, stated explicitly.
    pub expected_wwid: Option<Wwid>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            token: None,
            expected_wwid: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// One volume's connection properties, validated locally before any agent is asked.
#[derive(Debug, Clone)]
pub struct VolumeProps {
    raw: serde_json::Value,
    parsed: ConnectionProperties,
    identity: Option<(String, Wwid)>,
}

impl VolumeProps {
    /// Parses Cinder's JSON (wrapper optional; `protocol` required without it).
    pub fn from_json(
        value: &serde_json::Value,
        protocol: Option<Protocol>,
    ) -> Result<Self, VerifyError> {
        let parsed = ConnectionProperties::from_json(value, protocol)?;
        let data = value
            .get("data")
            .filter(|_| value.get("driver_volume_type").is_some())
            .unwrap_or(value);
        let mut identity = None;
        for key in IDENTITY_KEYS {
            if let Some(serde_json::Value::String(s)) = data.get(key) {
                let w = normalize_identity(s).map_err(|source| VerifyError::Identity {
                    key: key.to_owned(),
                    source,
                })?;
                identity = Some((key.to_owned(), w));
                break;
            }
        }
        Ok(Self {
            raw: value.clone(),
            parsed,
            identity,
        })
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.parsed.protocol()
    }

    /// The identity the properties carry, with the key it came from.
    pub fn identity(&self) -> Option<(&str, &Wwid)> {
        self.identity.as_ref().map(|(k, w)| (k.as_str(), w))
    }

    /// `(iqn, by-path LUN text)` of every iSCSI target.
    fn iscsi_targets(&self) -> Vec<(String, String)> {
        match &self.parsed {
            ConnectionProperties::Iscsi(p) => p
                .targets
                .iter()
                .map(|t| {
                    (
                        t.iqn.to_string(),
                        format_lun(t.lun.for_addressing(p.addressing_mode)),
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Human names of the targets (`portal iqn lun N`).
    fn target_names(&self) -> Vec<String> {
        match &self.parsed {
            ConnectionProperties::Iscsi(p) => p
                .targets
                .iter()
                .map(|t| format!("{} {} lun {}", t.portal, t.iqn, t.lun))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Reads an identity as users write it: udev form (`3600…`), kernel form (`naa.600…`),
/// or bare NAA hex (`600…`, `0x600…`, 16 or 32 digits, NAA type 5 or 6).
pub fn normalize_identity(s: &str) -> Result<Wwid, brick_connectors::IdError> {
    let t = s.trim();
    if ["naa.", "eui.", "t10."].iter().any(|p| t.starts_with(p)) {
        return Wwid::from_sysfs(t);
    }
    let (hex, prefixed) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => (h, true),
        None => (t, false),
    };
    let is_naa_hex = (hex.len() == 16 || hex.len() == 32)
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && (prefixed || hex.starts_with('5') || hex.starts_with('6'));
    if is_naa_hex {
        return Wwid::new(&format!("3{}", hex.to_ascii_lowercase()));
    }
    Wwid::new(t)
}

/// The outcome of a check or of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing wrong found.
    Pass,
    /// Something could not be checked.
    Error,
    /// A leftover or a wrong identity was found.
    Fail,
}

impl Verdict {
    /// The process exit code: 0 pass, 1 fail, 2 error.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Error => 2,
        }
    }
}

/// Which check a report is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// `brick verify migration`.
    Migration,
    /// `brick verify detach`.
    Detach,
}

/// A host's part in the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The migration source: must hold nothing of the volume.
    Source,
    /// The migration destination: must hold the volume, under its identity.
    Destination,
    /// A host that detached the volume.
    Detached,
}

impl Role {
    /// `source`, `destination` or `detached`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
            Role::Detached => "detached",
        }
    }
}

/// Where the volume's identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// `--wwid`.
    Option,
    /// A key of the connection properties.
    Properties,
    /// The destination's paths.
    Destination,
}

/// The volume as the verifier understood it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSummary {
    /// The protocol.
    pub protocol: String,
    /// The identity checked against, if known.
    pub wwid: Option<Wwid>,
    /// Where it came from.
    pub wwid_source: Option<IdentitySource>,
    /// The targets of the properties (`portal iqn lun N`).
    pub targets: Vec<String>,
}

/// What one host reported and what the verifier concluded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostReport {
    /// The host's role.
    pub role: Role,
    /// The agent's base URL.
    pub url: String,
    /// The host's verdict.
    pub verdict: Verdict,
    /// Why it failed or could not be checked (empty on pass).
    pub reasons: Vec<String>,
    /// Things worth a look that do not fail the check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The volume's paths on the host, each with device and identity.
    pub paths: Vec<wire::PathEntry>,
    /// The orphans related to the volume.
    pub orphans: Vec<wire::Orphan>,
    /// What the agent could not read while looking for paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<wire::Diagnostic>,
}

/// The verifier's report: a verdict, its reasons, and what every host said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Which check.
    pub check: CheckKind,
    /// The overall verdict (fail > error > pass across hosts).
    pub verdict: Verdict,
    /// Every reason of every host, prefixed with its role and URL.
    pub reasons: Vec<String>,
    /// The volume.
    pub volume: VolumeSummary,
    /// One entry per host asked.
    pub hosts: Vec<HostReport>,
}

impl Report {
    /// The process exit code: 0 pass, 1 fail, 2 error.
    pub fn exit_code(&self) -> u8 {
        self.verdict.exit_code()
    }

    /// A short human summary, one line per reason.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{:?} check: {}\n",
            self.check,
            match self.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Error => "COULD NOT VERIFY",
            }
        );
        if let Some(w) = &self.volume.wwid {
            out.push_str(&format!("volume identity: {w}\n"));
        }
        for h in &self.hosts {
            out.push_str(&format!(
                "  {} {}: {:?}, {} path(s), {} related orphan(s)\n",
                h.role.as_str(),
                h.url,
                h.verdict,
                h.paths.len(),
                h.orphans.len()
            ));
            for r in &h.reasons {
                out.push_str(&format!("    - {r}\n"));
            }
            for w in &h.warnings {
                out.push_str(&format!("    ~ {w}\n"));
            }
        }
        out
    }

    /// A report for a check that could not start (bad properties, bad URL).
    pub fn error(check: CheckKind, reason: String) -> Self {
        Self {
            check,
            verdict: Verdict::Error,
            reasons: vec![reason],
            volume: VolumeSummary {
                protocol: String::new(),
                wwid: None,
                wwid_source: None,
                targets: Vec::new(),
            },
            hosts: Vec::new(),
        }
    }
}

// ---------------------------------------------------------------------------- client

/// A blocking client of one or more path agents.
#[derive(Debug)]
pub struct AgentClient {
    agent: ureq::Agent,
    token: Option<String>,
}

impl AgentClient {
    /// A client with a per-request timeout and an optional bearer token.
    pub fn new(token: Option<String>, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_redirects(0)
            .build()
            .into();
        Self { agent, token }
    }

    fn url(base: &str, path: &str) -> Result<String, VerifyError> {
        let bad = |reason| VerifyError::BadUrl {
            url: base.to_owned(),
            reason,
        };
        if base.starts_with("https://") {
            return Err(bad(
                "https is not supported (the verifier has no TLS stack; use http on test networks)",
            ));
        }
        let Some(rest) = base.strip_prefix("http://") else {
            return Err(bad("expected http://HOST:PORT"));
        };
        if rest.trim_end_matches('/').is_empty() {
            return Err(bad("no host"));
        }
        Ok(format!("{}{}", base.trim_end_matches('/'), path))
    }

    fn read<T: DeserializeOwned>(
        url: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, VerifyError> {
        let mut resp = result.map_err(|source| VerifyError::Unreachable {
            url: url.to_owned(),
            source,
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|source| VerifyError::Unreachable {
                url: url.to_owned(),
                source,
            })?;
        if !status.is_success() {
            let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
                Ok(b) => (b.error.to_string(), b.message),
                Err(_) => ("unknown".to_owned(), text.chars().take(200).collect()),
            };
            return Err(VerifyError::Agent {
                url: url.to_owned(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| VerifyError::BadResponse {
            url: url.to_owned(),
            reason: e.to_string(),
        })
    }

    fn auth(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// `GET base+path`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, base: &str, path: &str) -> Result<T, VerifyError> {
        let url = Self::url(base, path)?;
        let mut req = self.agent.get(&url);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        Self::read(&url, req.call())
    }

    /// `POST base+path` with a JSON body, decoded as `T`.
    pub fn post<T: DeserializeOwned>(
        &self,
        base: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, VerifyError> {
        let url = Self::url(base, path)?;
        let mut req = self.agent.post(&url);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        Self::read(&url, req.send_json(body))
    }

    /// The volume's paths on the host behind `base` (always with `multipath=true`).
    pub fn paths(&self, base: &str, props: &VolumeProps) -> Result<wire::Paths, VerifyError> {
        let path = format!("/v1/{}/paths?multipath=true", props.protocol().as_str());
        self.post(base, &path, &props.raw)
    }

    /// The host's orphan report.
    pub fn orphans(&self, base: &str) -> Result<wire::Orphans, VerifyError> {
        self.get(base, "/v1/orphans")
    }
}

// ---------------------------------------------------------------------------- verdicts

/// What was fetched from one host.
struct Observed {
    paths: wire::Paths,
    orphans: wire::Orphans,
}

fn observe(client: &AgentClient, url: &str, props: &VolumeProps) -> Result<Observed, VerifyError> {
    Ok(Observed {
        paths: client.paths(url, props)?,
        orphans: client.orphans(url)?,
    })
}

fn host_report(role: Role, url: &str) -> HostReport {
    HostReport {
        role,
        url: url.to_owned(),
        verdict: Verdict::Pass,
        reasons: Vec::new(),
        warnings: Vec::new(),
        paths: Vec::new(),
        orphans: Vec::new(),
        diagnostics: Vec::new(),
    }
}

fn errored(role: Role, url: &str, e: &VerifyError) -> HostReport {
    let mut h = host_report(role, url);
    h.verdict = Verdict::Error;
    h.reasons.push(error_chain(e));
    h
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Whether `o` belongs to the volume (same identity, or same iSCSI target and LUN).
fn related(o: &wire::Orphan, wwid: Option<&Wwid>, targets: &[(String, String)]) -> bool {
    if let Some(w) = wwid
        && (o.wwid.as_ref() == Some(w) || o.claimed_wwid.as_ref() == Some(w))
    {
        return true;
    }
    o.iscsi.as_ref().is_some_and(|i| {
        targets
            .iter()
            .any(|(iqn, lun)| *iqn == i.iqn && i.lun.as_ref().is_none_or(|l| l == lun))
    })
}

fn describe_path(p: &wire::PathEntry) -> String {
    format!(
        "{} -> {} (wwid {})",
        p.path,
        p.device.as_ref().map_or("?", |d| d.as_str()),
        p.wwid.as_ref().map_or("unreadable", |w| w.as_str())
    )
}

fn describe_orphan(o: &wire::Orphan) -> String {
    let reason = serde_json::to_value(o.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "other".to_owned());
    let ids: Vec<&str> = o
        .wwid
        .iter()
        .chain(o.claimed_wwid.iter())
        .map(Wwid::as_str)
        .collect();
    let ids = if ids.is_empty() {
        String::new()
    } else {
        format!(" (wwid {})", ids.join(" / "))
    };
    format!("{reason}: {}{ids}: {}", o.path, o.detail)
}

/// Resolves the expected identity from the option and the properties.
fn given_identity(
    props: &VolumeProps,
    opts: &VerifyOptions,
) -> Result<Option<(Wwid, IdentitySource)>, String> {
    match (&opts.expected_wwid, props.identity()) {
        (Some(o), Some((key, p))) if o != p => Err(format!(
            "--wwid {o} contradicts the properties' {key} {p}; cannot tell which is the volume"
        )),
        (Some(o), _) => Ok(Some((o.clone(), IdentitySource::Option))),
        (None, Some((_, p))) => Ok(Some((p.clone(), IdentitySource::Properties))),
        (None, None) => Ok(None),
    }
}

fn finish(check: CheckKind, volume: VolumeSummary, hosts: Vec<HostReport>) -> Report {
    let verdict = hosts
        .iter()
        .map(|h| h.verdict)
        .max()
        .unwrap_or(Verdict::Error);
    let reasons = hosts
        .iter()
        .flat_map(|h| {
            h.reasons
                .iter()
                .map(move |r| format!("{} {}: {r}", h.role.as_str(), h.url))
        })
        .collect();
    Report {
        check,
        verdict,
        reasons,
        volume,
        hosts,
    }
}

fn summary(props: &VolumeProps, wwid: Option<(Wwid, IdentitySource)>) -> VolumeSummary {
    VolumeSummary {
        protocol: props.protocol().as_str().to_owned(),
        wwid_source: wwid.as_ref().map(|(_, s)| *s),
        wwid: wwid.map(|(w, _)| w),
        targets: props.target_names(),
    }
}

/// Checks a host that must hold nothing of the volume.
fn check_clean(
    role: Role,
    url: &str,
    seen: Observed,
    wwid: Option<&Wwid>,
    targets: &[(String, String)],
) -> HostReport {
    let mut h = host_report(role, url);
    for p in &seen.paths.paths {
        h.reasons
            .push(format!("still has path {}", describe_path(p)));
    }
    h.orphans = seen
        .orphans
        .orphans
        .into_iter()
        .filter(|o| related(o, wwid, targets))
        .collect();
    for o in &h.orphans {
        h.reasons.push(format!("leftover {}", describe_orphan(o)));
    }
    h.paths = seen.paths.paths;
    h.diagnostics = seen.paths.diagnostics;
    if !h.reasons.is_empty() {
        h.verdict = Verdict::Fail;
    }
    h
}

/// Verifies a live migration: `source` must hold nothing of the volume, `dest` must hold it
/// under its identity. `source_props` are the source's properties when the array gave the two
/// hosts different ones (LUN ids per host); `props` (the destination's) otherwise.
pub fn verify_migration(
    source: &str,
    dest: &str,
    props: &VolumeProps,
    source_props: Option<&VolumeProps>,
    opts: &VerifyOptions,
) -> Report {
    let source_props = source_props.unwrap_or(props);
    let client = AgentClient::new(opts.token.clone(), opts.timeout);
    let given = match given_identity(props, opts) {
        Ok(g) => g,
        Err(reason) => {
            let mut r = Report::error(CheckKind::Migration, reason);
            r.volume = summary(props, None);
            return r;
        }
    };

    // Destination: at least one path, every path under the volume's identity.
    let mut wwid = given.clone();
    let dest_report = match observe(&client, dest, props) {
        Err(e) => errored(Role::Destination, dest, &e),
        Ok(seen) => {
            let mut h = host_report(Role::Destination, dest);
            if seen.paths.paths.is_empty() {
                h.reasons
                    .push("reports no path for the volume (the attach is missing)".to_owned());
            }
            let mut found: Vec<&Wwid> = Vec::new();
            for p in &seen.paths.paths {
                match &p.wwid {
                    None => h.reasons.push(format!(
                        "path {} has no readable identity, cannot prove it is the volume",
                        describe_path(p)
                    )),
                    Some(w) if !found.contains(&w) => found.push(w),
                    Some(_) => {}
                }
            }
            match &wwid {
                Some((expected, _)) => {
                    for p in &seen.paths.paths {
                        if let Some(w) = &p.wwid
                            && w != expected
                        {
                            h.reasons.push(format!(
                                "path {} leads to another volume than {expected} (cross-talk)",
                                describe_path(p)
                            ));
                        }
                    }
                }
                None => match found.as_slice() {
                    [one] => wwid = Some(((*one).clone(), IdentitySource::Destination)),
                    [] => {}
                    many => h.reasons.push(format!(
                        "paths disagree on the volume's identity: {}",
                        many.iter()
                            .map(|w| w.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                },
            }
            let w = wwid.as_ref().map(|(w, _)| w);
            let targets = props.iscsi_targets();
            let rel: Vec<wire::Orphan> = seen
                .orphans
                .orphans
                .into_iter()
                .filter(|o| related(o, w, &targets))
                .collect();
            for o in &rel {
                if o.reason == OrphanReason::IdentityMismatch {
                    h.reasons
                        .push(format!("identity hazard {}", describe_orphan(o)));
                } else {
                    h.warnings.push(format!("leftover {}", describe_orphan(o)));
                }
            }
            h.orphans = rel;
            h.paths = seen.paths.paths;
            h.diagnostics = seen.paths.diagnostics;
            if !h.reasons.is_empty() {
                h.verdict = Verdict::Fail;
            }
            h
        }
    };

    // Source: nothing of the volume.
    let w = wwid.as_ref().map(|(w, _)| w);
    let source_report = match observe(&client, source, source_props) {
        Err(e) => errored(Role::Source, source, &e),
        Ok(seen) => {
            let mut targets = source_props.iscsi_targets();
            targets.extend(props.iscsi_targets());
            let mut h = check_clean(Role::Source, source, seen, w, &targets);
            if w.is_none() {
                h.warnings.push(
                    "the volume's identity is unknown: orphans were matched by target only"
                        .to_owned(),
                );
            }
            h
        }
    };

    finish(
        CheckKind::Migration,
        summary(props, wwid),
        vec![source_report, dest_report],
    )
}

/// Verifies a detach on every host of `hosts`: none may hold a path of the volume or an
/// orphan related to it.
pub fn verify_detach(hosts: &[String], props: &VolumeProps, opts: &VerifyOptions) -> Report {
    let client = AgentClient::new(opts.token.clone(), opts.timeout);
    let given = match given_identity(props, opts) {
        Ok(g) => g,
        Err(reason) => {
            let mut r = Report::error(CheckKind::Detach, reason);
            r.volume = summary(props, None);
            return r;
        }
    };
    let w = given.as_ref().map(|(w, _)| w);
    let targets = props.iscsi_targets();
    let reports = hosts
        .iter()
        .map(|url| match observe(&client, url, props) {
            Err(e) => errored(Role::Detached, url, &e),
            Ok(seen) => {
                let mut h = check_clean(Role::Detached, url, seen, w, &targets);
                if w.is_none() {
                    h.warnings.push(
                        "the volume's identity is unknown: orphans were matched by target only"
                            .to_owned(),
                    );
                }
                h
            }
        })
        .collect();
    finish(CheckKind::Detach, summary(props, given), reports)
}

#[cfg(test)]
mod tests;
