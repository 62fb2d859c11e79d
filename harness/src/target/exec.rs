//! The exec tier: an operator's array described by the shell commands of a `target.toml`.
//!
//! The array side runs the commands of [`Commands`] through `sh -c`, with placeholders
//! (`{volume}`, `{initiator_iqn}`...; see [`PLACEHOLDERS`]) replaced by shell-quoted values,
//! so no value (a hostile volume name included) can inject a command. The host side is the
//! real machine (`RealHost` on `/`), or, for our own tests, a simulated host replaying the
//! state file of `brick sim array` ([`super::journal::ReplayHost`]).
//!
//! Checks degrade to what a real host shows ([`crate::checks::check_host_view`]): devices and
//! paths against the identity the array reports, leftovers by identity, the orphan report
//! (minus what was already orphaned before the run), and the target's session listing when
//! `commands.sessions` is given.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use brick_connectors::{
    Cmd, ConnectionProperties, Connector, ConnectorConfig, DeviceInfo, DisconnectOptions, Host,
    RealHost, VolumePaths, connector_for, connector_properties, find_orphans,
};
use brick_sim_target::HostSpec;
use serde::{Deserialize, Serialize};

use super::journal::ReplayHost;
use super::{Need, Target, TargetError, Tier, normalize_wwid};
use crate::checks::{HostViewVolume, Violation, check_host_view};

/// The only `target.toml` schema version.
pub const EXEC_SCHEMA: u32 = 1;

/// The placeholders a command may use, with what each becomes (always shell-quoted).
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    (
        "volume",
        "the volume's name on the array (`volume_prefix` + scenario + `-` + scenario volume)",
    ),
    ("size_bytes", "the volume size in bytes"),
    ("size_mib", "the volume size in MiB, rounded up"),
    ("size_gib", "the volume size in GiB, rounded up"),
    (
        "initiator_iqn",
        "this host's iSCSI initiator name (/etc/iscsi/initiatorname.iscsi)",
    ),
    (
        "initiator_wwpns",
        "this host's online FC port WWPNs, comma separated",
    ),
    ("host_nqn", "this host's NVMe host NQN (/etc/nvme/hostnqn)"),
    ("host", "this host's name"),
];

/// A `target.toml`: how to drive the operator's array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Always `1`.
    pub schema: u32,
    /// A name for reports.
    pub name: String,
    /// The protocol the array exports volumes with (`iscsi`, `fc`, `nvmeof`).
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Prefix of every volume created on the array (default `brick-`), so test volumes are
    /// easy to find and clean up.
    #[serde(default = "default_prefix")]
    pub volume_prefix: String,
    /// What the array can do; scenarios needing more are skipped with a reason.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// The commands.
    pub commands: Commands,
    /// Where the host side runs.
    #[serde(default)]
    pub host: HostSection,
}

fn default_protocol() -> String {
    "iscsi".to_owned()
}

fn default_prefix() -> String {
    "brick-".to_owned()
}

/// What the operator's array and host can do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// The host runs multipathd and the array exports every volume on two portals or more.
    #[serde(default)]
    pub multipath: bool,
    /// Every volume is exported on one shared target IQN, told apart by LUN.
    #[serde(default)]
    pub shared_iqn: bool,
    /// What happens to a LUN id after its volume is deleted.
    #[serde(default)]
    pub lun_reuse: LunReuse,
}

/// LUN id reuse by the array.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LunReuse {
    /// Not promised: scenarios that rely on reuse are skipped.
    #[default]
    None,
    /// The next volume mapped gets the freed LUN id, with a new identity.
    Fresh,
    /// The next volume mapped gets the freed LUN id and the old identity (tgtd's default).
    SameIdentity,
}

/// The commands of a `target.toml`. Each is a `sh -c` command line with placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commands {
    /// Create a volume (`{volume}`, `{size_*}`).
    pub create: String,
    /// Export a volume to this host (`{volume}`, `{initiator_iqn}`/`{initiator_wwpns}`/`{host_nqn}`).
    pub map: String,
    /// Remove that export.
    pub unmap: String,
    /// Delete a volume.
    pub delete: String,
    /// Print the volume's identity: JSON, a string or an object.
    pub identity: String,
    /// JSON pointer to the identity in that output (default `/wwid` for an object).
    #[serde(default)]
    pub identity_pointer: Option<String>,
    /// Print the connection properties this host gets (os-brick JSON).
    pub props: String,
    /// JSON pointer to the properties in that output (default: the whole document).
    #[serde(default)]
    pub props_pointer: Option<String>,
    /// Optional: print a JSON array of the sessions the target has from this host's
    /// initiator (strings or objects). Checked to be empty once nothing is attached.
    #[serde(default)]
    pub sessions: Option<String>,
    /// Seconds a command may run before it is killed (with everything it started) and the
    /// step fails (default 300).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// How long a `target.toml` command may run when `timeout_secs` is not given.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `cmd` (stdout and stderr captured) for at most `limit`; `None` when it ran out of time,
/// after killing its whole process group (a shell pipeline leaves nothing behind).
fn output_within(
    mut cmd: Command,
    limit: Duration,
) -> std::io::Result<Option<std::process::Output>> {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt as _;
    cmd.process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() >= limit {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(status.map(|status| std::process::Output {
        status,
        stdout,
        stderr,
    }))
}

/// Where the host side of the exec tier runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// `real` (default): this machine, root `/`. `simulated`: a simulated host replaying the
    /// array journal at `state` (brickcheck's own tests).
    #[serde(default)]
    pub kind: HostKind,
    /// `simulated`: the state file of `brick sim array`.
    #[serde(default)]
    pub state: Option<PathBuf>,
}

/// The kind of host side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKind {
    /// The real machine.
    #[default]
    Real,
    /// A simulated host replaying a `brick sim array` journal.
    Simulated,
}

impl ExecSpec {
    /// Checks the schema version and that every command uses known placeholders only.
    pub fn validate(&self) -> Result<(), String> {
        if self.schema != EXEC_SCHEMA {
            return Err(format!(
                "schema {} is not supported (only schema = {EXEC_SCHEMA})",
                self.schema
            ));
        }
        let c = &self.commands;
        let mut all = vec![
            ("create", &c.create),
            ("map", &c.map),
            ("unmap", &c.unmap),
            ("delete", &c.delete),
            ("identity", &c.identity),
            ("props", &c.props),
        ];
        if let Some(s) = &c.sessions {
            all.push(("sessions", s));
        }
        for (name, template) in all {
            render(template, &|_| Some(String::new()))
                .map_err(|e| format!("commands.{name}: {e}"))?;
        }
        if self.host.kind == HostKind::Simulated && self.host.state.is_none() {
            return Err("host.kind = \"simulated\" needs host.state".into());
        }
        if self.volume_prefix.contains('/') {
            return Err("volume_prefix must not contain `/`".into());
        }
        Ok(())
    }
}

/// Quotes `s` for `sh`: single quotes, with each `'` written as `'\''`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Replaces `{name}` placeholders in `template` with the shell-quoted value `lookup` gives;
/// `{{` and `}}` are literal braces. An unknown placeholder or a value the host lacks is an
/// error naming it.
pub fn render(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        let (before, after) = rest.split_at(pos);
        out.push_str(before);
        if let Some(r) = after.strip_prefix("{{") {
            out.push('{');
            rest = r;
        } else if let Some(r) = after.strip_prefix("}}") {
            out.push('}');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in {template:?}"))?;
            let name = r.get(..end).unwrap_or_default();
            if !PLACEHOLDERS.iter().any(|(n, _)| *n == name) {
                let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "unknown placeholder `{{{name}}}` (known: {})",
                    known.join(", ")
                ));
            }
            let value = lookup(name)
                .ok_or_else(|| format!("placeholder `{{{name}}}` has no value on this host"))?;
            out.push_str(&shell_quote(&value));
            rest = r.get(end + 1..).unwrap_or_default();
        } else {
            return Err(format!("lone `}}` in {template:?} (write `}}}}`)"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// What a command printed.
#[derive(Debug, Clone)]
struct Output {
    stdout: String,
}

enum HostSide {
    Real(RealHost),
    Replay(Box<ReplayHost>),
}

impl std::fmt::Debug for HostSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Real(h) => f.debug_tuple("Real").field(&h.root()).finish(),
            Self::Replay(_) => f.write_str("Replay"),
        }
    }
}

impl HostSide {
    fn port(&self) -> &dyn Host {
        match self {
            Self::Real(h) => h,
            Self::Replay(h) => h.port(),
        }
    }

    fn refresh(&mut self) -> Result<(), TargetError> {
        match self {
            Self::Real(_) => Ok(()),
            Self::Replay(h) => h.refresh(),
        }
    }
}

#[derive(Debug, Clone)]
struct ExecAttachment {
    props: ConnectionProperties,
    device: DeviceInfo,
}

/// An exec-tier target: the array through `target.toml` commands, one host.
#[derive(Debug)]
pub struct ExecTarget {
    spec: ExecSpec,
    dir: PathBuf,
    scenario: String,
    host_name: String,
    config: ConnectorConfig,
    host: HostSide,
    created: Vec<String>,
    attached: BTreeMap<String, ExecAttachment>,
    identities: Mutex<BTreeMap<String, String>>,
    log: Mutex<Vec<String>>,
    baseline_orphans: BTreeSet<String>,
}

impl ExecTarget {
    /// A target for scenario `scenario`, whose single host is called `host_name` in the
    /// scenario. Commands run in `dir` (the directory of `target.toml`).
    pub fn new(
        spec: ExecSpec,
        dir: &Path,
        scenario: &str,
        host_name: &str,
        use_multipath: bool,
    ) -> Result<Self, TargetError> {
        spec.validate().map_err(|message| TargetError::Output {
            name: "target.toml".into(),
            message,
        })?;
        let host = match spec.host.kind {
            HostKind::Real => HostSide::Real(RealHost::system()),
            HostKind::Simulated => {
                let state = spec.host.state.clone().unwrap_or_default();
                let state = if state.is_absolute() {
                    state
                } else {
                    dir.join(state)
                };
                let mut hs = HostSpec::new(host_name);
                hs.multipathd = use_multipath;
                HostSide::Replay(Box::new(ReplayHost::new(&state, hs)?))
            }
        };
        let baseline_orphans = find_orphans(host.port())
            .orphans
            .iter()
            .map(|o| o.path.as_str().to_owned())
            .collect();
        Ok(Self {
            spec,
            dir: dir.to_owned(),
            scenario: scenario.to_owned(),
            host_name: host_name.to_owned(),
            config: ConnectorConfig {
                use_multipath,
                ..ConnectorConfig::default()
            },
            host,
            created: Vec::new(),
            attached: BTreeMap::new(),
            identities: Mutex::default(),
            log: Mutex::default(),
            baseline_orphans,
        })
    }

    /// Best-effort cleanup after a scenario: force-detaches what is still attached, then
    /// unmaps and deletes every volume the scenario created (errors ignored: a volume the
    /// scenario already deleted fails to delete again). Returns what it did, one line each.
    pub fn cleanup(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let host = self.host_name.clone();
        let attached: Vec<String> = self.attached.keys().cloned().collect();
        for v in attached {
            let opts = DisconnectOptions {
                force: true,
                ignore_errors: true,
            };
            let r = Target::detach(self, &v, &host, opts, true);
            notes.push(format!(
                "force-detach {v}: {}",
                r.map_or_else(|e| e.to_string(), |()| "ok".into())
            ));
        }
        for v in std::mem::take(&mut self.created) {
            let unmap = self.run("unmap", &v, 0).is_ok();
            let delete = self.run("delete", &v, 0).is_ok();
            notes.push(format!("cleanup {v}: unmap {unmap}, delete {delete}"));
        }
        notes
    }

    /// The name a scenario volume has on the array.
    pub fn array_name(&self, volume: &str) -> String {
        format!("{}{}-{volume}", self.spec.volume_prefix, self.scenario)
    }

    fn note(&self, line: String) {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }

    fn check_host(&self, host: &str) -> Result<(), TargetError> {
        if host == self.host_name {
            Ok(())
        } else {
            Err(TargetError::Unknown {
                kind: "host",
                name: host.to_owned(),
            })
        }
    }

    /// Runs command `name` for `volume` (and `size_bytes` for create).
    fn run(&self, name: &str, volume: &str, size_bytes: u64) -> Result<Output, TargetError> {
        let c = &self.spec.commands;
        let template = match name {
            "create" => &c.create,
            "map" => &c.map,
            "unmap" => &c.unmap,
            "delete" => &c.delete,
            "identity" => &c.identity,
            "props" => &c.props,
            "sessions" => c.sessions.as_ref().ok_or_else(|| TargetError::Unknown {
                kind: "command",
                name: name.to_owned(),
            })?,
            other => {
                return Err(TargetError::Unknown {
                    kind: "command",
                    name: other.to_owned(),
                });
            }
        };
        let hostinfo = connector_properties(self.host.port());
        let array_name = self.array_name(volume);
        let lookup = |p: &str| -> Option<String> {
            let round = |unit: u64| size_bytes.div_ceil(unit).to_string();
            match p {
                "volume" => Some(array_name.clone()),
                "size_bytes" => Some(size_bytes.to_string()),
                "size_mib" => Some(round(1 << 20)),
                "size_gib" => Some(round(1 << 30)),
                "initiator_iqn" => hostinfo.initiator.as_ref().map(|i| i.as_str().to_owned()),
                "initiator_wwpns" => Some(
                    hostinfo
                        .wwpns
                        .iter()
                        .map(|w| w.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                "host_nqn" => hostinfo.nqn.as_ref().map(|n| n.as_str().to_owned()),
                "host" => Some(
                    hostinfo
                        .host
                        .clone()
                        .unwrap_or_else(|| self.host_name.clone()),
                ),
                _ => None,
            }
        };
        let command = render(template, &lookup).map_err(|message| TargetError::Output {
            name: name.to_owned(),
            message,
        })?;
        tracing::info!(command = %command, "exec target: {name}");
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg(&command)
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        let limit = self
            .spec
            .commands
            .timeout_secs
            .map_or(DEFAULT_COMMAND_TIMEOUT, Duration::from_secs);
        let out = output_within(sh, limit)
            .map_err(|source| TargetError::Io {
                what: format!("running the `{name}` command `{command}`"),
                source,
            })?
            .ok_or_else(|| {
                self.note(format!("array {name}: {command} -> killed after {limit:?}"));
                TargetError::Timeout {
                    name: name.to_owned(),
                    command: command.clone(),
                    seconds: limit.as_secs(),
                }
            })?;
        let status = out.status.code().unwrap_or(-1);
        self.note(format!("array {name}: {command} -> exit {status}"));
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(TargetError::Command {
                name: name.to_owned(),
                command,
                status,
                stderr: stderr.chars().take(2000).collect(),
            });
        }
        Ok(Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        })
    }

    fn json(
        &self,
        name: &str,
        out: &Output,
        pointer: Option<&str>,
    ) -> Result<serde_json::Value, TargetError> {
        let bad = |message: String| TargetError::Output {
            name: name.to_owned(),
            message,
        };
        let doc: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .map_err(|e| bad(format!("stdout is not JSON ({e}): {:?}", out.stdout)))?;
        match pointer {
            None | Some("") => Ok(doc),
            Some(p) => doc
                .pointer(p)
                .cloned()
                .ok_or_else(|| bad(format!("no `{p}` in {doc}"))),
        }
    }

    fn fetch_identity(&self, volume: &str) -> Result<String, TargetError> {
        let out = self.run("identity", volume, 0)?;
        let pointer = self.spec.commands.identity_pointer.as_deref();
        let mut doc = self.json("identity", &out, pointer)?;
        if pointer.is_none() && doc.is_object() {
            doc = doc.get("wwid").cloned().unwrap_or(doc);
        }
        let raw = doc.as_str().ok_or_else(|| TargetError::Output {
            name: "identity".into(),
            message: format!("expected a string (or an object with `wwid`), got {doc}"),
        })?;
        let wwid = normalize_wwid(raw);
        self.identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(volume.to_owned(), wwid.clone());
        Ok(wwid)
    }

    fn props(&self, volume: &str) -> Result<ConnectionProperties, TargetError> {
        let json = Target::props_json(self, volume, &self.host_name)?;
        Ok(ConnectionProperties::from_json(&json, None)?)
    }

    fn connector(
        &self,
        props: &ConnectionProperties,
    ) -> Result<Box<dyn Connector + '_>, TargetError> {
        Ok(connector_for(
            props.protocol(),
            self.host.port(),
            self.config.clone(),
        )?)
    }
}

impl Target for ExecTarget {
    fn tier(&self) -> Tier {
        Tier::Exec
    }

    fn unsupported(&self, need: &Need) -> Option<String> {
        let caps = &self.spec.capabilities;
        match need {
            Need::Hosts(n) if *n > 1 => Some(format!(
                "needs {n} hosts; the exec tier drives one host (this machine)"
            )),
            Need::Protocol(p) if *p != self.spec.protocol => Some(format!(
                "needs protocol {p}; target `{}` exports {}",
                self.spec.name, self.spec.protocol
            )),
            Need::Multipath if !caps.multipath => Some(format!(
                "needs multipath; target `{}` says capabilities.multipath = false",
                self.spec.name
            )),
            Need::SharedIqn if !caps.shared_iqn => Some(format!(
                "needs a shared target IQN; target `{}` says capabilities.shared_iqn = false",
                self.spec.name
            )),
            Need::LunReuse(p) => {
                let ok = match caps.lun_reuse {
                    LunReuse::None => false,
                    LunReuse::Fresh => p == "fresh",
                    LunReuse::SameIdentity => p == "same-identity",
                };
                (!ok).then(|| {
                    format!(
                        "needs LUN reuse with {p} identity; target `{}` says lun_reuse = {:?}",
                        self.spec.name, caps.lun_reuse
                    )
                })
            }
            Need::Simulator(what) => Some(format!("needs the simulator: {what}")),
            _ => None,
        }
    }

    fn host_names(&self) -> Vec<String> {
        vec![self.host_name.clone()]
    }

    fn create_volume(
        &mut self,
        volume: &str,
        _array: &str,
        size_bytes: u64,
    ) -> Result<(), TargetError> {
        self.run("create", volume, size_bytes)?;
        self.created.push(volume.to_owned());
        // Remember the identity now: after a delete the array may not know it any more.
        self.fetch_identity(volume)?;
        Ok(())
    }

    fn map(&mut self, volume: &str, host: &str) -> Result<(), TargetError> {
        self.check_host(host)?;
        self.run("map", volume, 0)?;
        self.fetch_identity(volume)?;
        self.host.refresh()
    }

    fn unmap(&mut self, volume: &str, host: &str) -> Result<(), TargetError> {
        self.check_host(host)?;
        self.run("unmap", volume, 0)?;
        self.host.refresh()
    }

    fn delete(&mut self, volume: &str) -> Result<(), TargetError> {
        self.run("delete", volume, 0)?;
        self.host.refresh()
    }

    fn identity(&self, volume: &str) -> Result<String, TargetError> {
        let cached = self
            .identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(volume)
            .cloned();
        match cached {
            Some(w) => Ok(w),
            None => self.fetch_identity(volume),
        }
    }

    fn props_json(&self, volume: &str, host: &str) -> Result<serde_json::Value, TargetError> {
        self.check_host(host)?;
        let out = self.run("props", volume, 0)?;
        self.json("props", &out, self.spec.commands.props_pointer.as_deref())
    }

    fn attach(&mut self, volume: &str, host: &str) -> Result<DeviceInfo, TargetError> {
        self.check_host(host)?;
        self.host.refresh()?;
        let props = self.props(volume)?;
        let device = self.connector(&props)?.connect_volume(&props)?;
        self.attached.insert(
            volume.to_owned(),
            ExecAttachment {
                props,
                device: device.clone(),
            },
        );
        Ok(device)
    }

    fn detach(
        &mut self,
        volume: &str,
        host: &str,
        opts: DisconnectOptions,
        with_device_info: bool,
    ) -> Result<(), TargetError> {
        self.check_host(host)?;
        self.host.refresh()?;
        let (props, device) = match self.attached.get(volume) {
            Some(a) => (a.props.clone(), Some(a.device.clone())),
            None => (self.props(volume)?, None),
        };
        let info = if with_device_info {
            device.as_ref()
        } else {
            None
        };
        let result = self
            .connector(&props)?
            .disconnect_volume(&props, info, opts);
        if result.is_ok() || opts.force {
            self.attached.remove(volume);
        }
        Ok(result?)
    }

    fn volume_paths(&self, volume: &str, host: &str) -> Result<VolumePaths, TargetError> {
        self.check_host(host)?;
        let props = match self.attached.get(volume) {
            Some(a) => a.props.clone(),
            None => self.props(volume)?,
        };
        Ok(self.connector(&props)?.get_volume_paths(&props)?)
    }

    fn attached_device(&self, volume: &str, host: &str) -> Option<DeviceInfo> {
        (host == self.host_name)
            .then(|| self.attached.get(volume).map(|a| a.device.clone()))
            .flatten()
    }

    fn attachments(&self) -> Vec<(String, String)> {
        self.attached
            .keys()
            .map(|v| (self.host_name.clone(), v.clone()))
            .collect()
    }

    fn settle(&mut self) -> Result<(), TargetError> {
        match &mut self.host {
            HostSide::Real(h) => {
                // Best effort: a host without udevadm has nothing to settle.
                if let Err(err) = h.run(&Cmd::new("udevadm").arg("settle")) {
                    tracing::warn!(%err, "udevadm settle failed");
                }
                Ok(())
            }
            HostSide::Replay(h) => {
                h.refresh()?;
                h.settle()
            }
        }
    }

    fn check(&self) -> Vec<Violation> {
        let port = self.host.port();
        let mut volumes = Vec::new();
        for name in &self.created {
            let wwid = self.identity(name).ok();
            let paths = self.attached.get(name).map(|a| {
                self.connector(&a.props)
                    .and_then(|c| Ok(c.get_volume_paths(&a.props)?))
                    .map_err(|e| e.to_string())
            });
            volumes.push(HostViewVolume {
                name: name.clone(),
                wwid,
                paths,
            });
        }
        let mut out = check_host_view(port, &self.host_name, &volumes, &self.baseline_orphans);
        if self.attached.is_empty()
            && let Some(result) = self.target_sessions(&self.host_name)
        {
            match result {
                Ok(list) if !list.is_empty() => out.push(Violation {
                    kind: crate::PropertyKind::Leftover,
                    host: self.host_name.clone(),
                    volume: None,
                    detail: format!(
                        "nothing is attached, but the target lists sessions from this host: {}",
                        list.join("; ")
                    ),
                }),
                Ok(_) => {}
                Err(err) => tracing::warn!(%err, "listing the target's sessions failed"),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn port(&self, host: &str) -> Result<&dyn Host, TargetError> {
        self.check_host(host)?;
        Ok(self.host.port())
    }

    fn journal(&self, host: &str) -> Vec<String> {
        if host != self.host_name {
            return Vec::new();
        }
        let mut out = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let HostSide::Replay(h) = &self.host {
            out.extend(h.port().journal());
        }
        out
    }

    fn tree_listing(&self, host: &str) -> Option<String> {
        match &self.host {
            HostSide::Replay(h) if host == self.host_name => {
                Some(crate::report::listing(h.port().root()))
            }
            _ => None,
        }
    }

    fn target_sessions(&self, host: &str) -> Option<Result<Vec<String>, TargetError>> {
        if host != self.host_name {
            return None;
        }
        self.spec.commands.sessions.as_ref()?;
        let list = self.run("sessions", "", 0).and_then(|out| {
            let doc = self.json("sessions", &out, None)?;
            let arr = doc.as_array().ok_or_else(|| TargetError::Output {
                name: "sessions".into(),
                message: format!("expected a JSON array, got {doc}"),
            })?;
            Ok(arr
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect())
        });
        Some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_quoted_so_values_cannot_inject_commands() {
        let hostile = "v'; touch /tmp/pwned; echo '";
        let cmd = render("mk --name {volume} --size {size_gib}G", &|p| {
            Some(match p {
                "volume" => hostile.to_owned(),
                _ => "2".to_owned(),
            })
        })
        .unwrap();
        assert_eq!(
            cmd,
            r"mk --name 'v'\''; touch /tmp/pwned; echo '\''' --size '2'G"
        );
        // Run through sh: the value arrives as one argument, nothing else runs.
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pwned");
        let hostile = format!(
            "x; touch {}; $(touch {})",
            marker.display(),
            marker.display()
        );
        let cmd = render("printf %s {volume}", &|_| Some(hostile.clone())).unwrap();
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
        assert!(!marker.exists());
    }

    #[test]
    fn templates_reject_unknown_placeholders_and_stray_braces() {
        let any = |_: &str| Some("x".to_owned());
        assert!(render("a {nope}", &any).unwrap_err().contains("`{nope}`"));
        assert!(render("a {volume", &any).unwrap_err().contains("unclosed"));
        assert!(render("a }", &any).unwrap_err().contains("lone"));
        assert_eq!(render("jq '{{a: 1}}'", &any).unwrap(), "jq '{a: 1}'");
        let none = |_: &str| None;
        assert!(
            render("{host_nqn}", &none)
                .unwrap_err()
                .contains("no value on this host")
        );
    }

    #[test]
    fn exec_targets_skip_what_they_cannot_do() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("array.jsonl");
        super::super::journal::ArrayJournal::create(
            &state,
            0,
            brick_sim_target::ArraySpec::new("a", vec!["10.0.2.2:3260".into()]),
        )
        .unwrap();
        let spec = ExecSpec {
            schema: 1,
            name: "t".into(),
            protocol: "iscsi".into(),
            volume_prefix: "ci-".into(),
            capabilities: Capabilities {
                lun_reuse: LunReuse::Fresh,
                ..Capabilities::default()
            },
            commands: Commands {
                create: "true".into(),
                map: "true".into(),
                unmap: "true".into(),
                delete: "true".into(),
                identity: "echo '\"naa.6001\"'".into(),
                identity_pointer: None,
                props: "echo '{{}}'".into(),
                props_pointer: None,
                sessions: None,
                timeout_secs: None,
            },
            host: HostSection {
                kind: HostKind::Simulated,
                state: Some(state),
            },
        };
        let t = ExecTarget::new(spec, dir.path(), "scn", "compute-1", false).unwrap();
        assert!(t.unsupported(&Need::Hosts(2)).is_some());
        assert!(t.unsupported(&Need::Hosts(1)).is_none());
        assert!(t.unsupported(&Need::Multipath).is_some());
        assert!(t.unsupported(&Need::LunReuse("fresh".into())).is_none());
        assert!(
            t.unsupported(&Need::LunReuse("same-identity".into()))
                .is_some()
        );
        assert!(t.unsupported(&Need::Simulator("faults".into())).is_some());
        assert_eq!(t.array_name("A"), "ci-scn-A");
        assert_eq!(t.identity("A").unwrap(), "36001");
    }

    #[test]
    fn a_command_that_hangs_is_killed_with_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("late");
        // The shell starts a child that would write the marker after 0.5 s; the whole group
        // goes at 0.1 s.
        let mut sh = Command::new("sh");
        sh.arg("-c").arg(format!(
            "(sleep 0.5; touch {}) & echo started; sleep 30",
            marker.display()
        ));
        let start = Instant::now();
        let out = output_within(sh, Duration::from_millis(100)).unwrap();
        assert!(out.is_none(), "ran out of time");
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(900));
        assert!(!marker.exists(), "the background child was killed too");
        // In time: status and both streams.
        let mut sh = Command::new("sh");
        sh.arg("-c").arg("echo out; echo err >&2; exit 3");
        let out = output_within(sh, Duration::from_secs(30)).unwrap().unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }
}
