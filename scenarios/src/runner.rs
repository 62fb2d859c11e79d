//! Runs a scenario on a [`Target`] (the simulated [`Lab`] by default) and checks every
//! correctness property after every step.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use brick_connectors::DisconnectOptions;
use brick_harness::{Lab, LabHostSpec, Target, Tier, Violation};
use brick_sim_target::{
    ArraySpec, ArrayTransport, FcHbaSpec, FcPortState, FcTargetPort, IdStyle, IdentityPolicy,
    IqnMode, NvmePort, NvmeTransport,
};
use serde::Serialize;

use crate::error::ScenarioError;
use crate::faults::{Injected, Undo};
use crate::schema::{
    Action, HbaState, IdentityStyle, IqnStyle, LunIdStyle, NvmeTransportName, ProtocolName,
    Scenario, Step,
};
use crate::snapshot::{HostSummary, StepSnapshot, orphan_paths, summarize};

/// What happened at one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// 1-based index in the file.
    pub index: usize,
    /// A one-line description of the step (`attach A on compute-1`).
    pub summary: String,
    /// What the step returned (`ok`, the device, the paths, or the error).
    pub result: String,
    /// The properties broken after the step.
    pub violations: Vec<Violation>,
    /// The reviewable snapshot of every host after the step (simulated hosts only).
    #[serde(skip)]
    pub snapshot: Option<StepSnapshot>,
}

/// Why a scenario failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The step (1-based) where an expectation did not hold.
    pub step: usize,
    /// What was expected and what happened.
    pub message: String,
    /// Each host's tree listing at that point (simulated hosts only).
    pub trees: Vec<(String, String)>,
    /// Each host's connector log (side effects, array commands) up to that point.
    pub logs: Vec<(String, Vec<String>)>,
}

/// The verdict of one scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// An expectation did not hold.
    Fail,
    /// The target cannot run it (see [`Outcome::skipped`]).
    Skip,
}

/// The result of running one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// The tier it ran on (`sim`, `exec`).
    pub tier: String,
    /// The steps that ran.
    pub steps: Vec<StepRecord>,
    /// `None` when every expectation held.
    pub failure: Option<Failure>,
    /// Why the scenario was not run, when the target cannot satisfy a requirement.
    pub skipped: Option<String>,
}

impl Outcome {
    /// Whether every expectation held (a skipped scenario did not fail).
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// Pass, fail or skip.
    pub fn verdict(&self) -> Verdict {
        match (&self.failure, &self.skipped) {
            (Some(_), _) => Verdict::Fail,
            (None, Some(_)) => Verdict::Skip,
            (None, None) => Verdict::Pass,
        }
    }

    /// A readable report of a failure: the step trace, the expectation, the connector logs,
    /// the trees, and the replay command.
    pub fn failure_report(&self, replay: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario `{}` failed ({} tier)", self.name, self.tier);
        for s in &self.steps {
            let _ = writeln!(out, "  step {:>2}: {} -> {}", s.index, s.summary, s.result);
            for v in &s.violations {
                let _ = writeln!(out, "           {v}");
            }
        }
        if let Some(f) = &self.failure {
            let _ = writeln!(out, "\nat step {}: {}", f.step, f.message);
            for (host, log) in &f.logs {
                let _ = writeln!(out, "\nconnector log on {host}:");
                for line in log {
                    let _ = writeln!(out, "  {line}");
                }
            }
            for (host, tree) in &f.trees {
                let _ = writeln!(out, "\nhost tree of {host} (/dev and sessions):");
                for line in tree.lines().filter(|l| is_interesting(l)) {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        let _ = writeln!(out, "\nreplay: {replay}");
        out
    }
}

fn is_interesting(line: &str) -> bool {
    line.starts_with("/dev/")
        || line.starts_with("/sys/class/iscsi_session/")
        || line.starts_with("/sys/block/")
}

/// Builds the lab a scenario describes. With `roots`, each host is materialized under
/// `roots/<host name>` and kept; otherwise under temporary directories.
///
/// FC: every HBA with `zoned` (the default) is zoned with every target port on its fabric;
/// HBAs with `in_initiator_target_map = false` are left out of the connection properties'
/// initiator-target map.
pub fn build_lab(scn: &Scenario, roots: Option<&Path>) -> Result<Lab, ScenarioError> {
    let mut lab = Lab::new(scn.seed);
    for h in &scn.hosts {
        let mut spec = if h.multipath {
            LabHostSpec::multipath(&h.name)
        } else {
            LabHostSpec::single(&h.name)
        };
        spec.sim.user_friendly_names = h.friendly_names;
        if let Some(ms) = h.udev_delay_ms {
            spec.sim.udev_delay = std::time::Duration::from_millis(ms);
        }
        for hba in &h.hbas {
            let mut sim = FcHbaSpec::new(hba.wwpn.0, &hba.fabric, &hba.pci);
            if let Some(p) = &hba.platform {
                sim = sim.behind_platform(p);
            }
            sim.port_state = match hba.port_state {
                HbaState::Online => FcPortState::Online,
                HbaState::Linkdown => FcPortState::Linkdown,
                HbaState::Offline => FcPortState::Offline,
            };
            spec.sim = spec.sim.with_fc_hba(sim);
        }
        if scn.protocol == ProtocolName::Nvmeof {
            spec.sim = spec.sim.with_nvme();
            let def = h.nvme.clone().unwrap_or_default();
            if let Some(n) = spec.sim.nvme.as_mut() {
                n.native_multipath = def.native_multipath;
                n.src_addr = def.src_addr;
                if let Some(nqn) = def.host_nqn {
                    n.hostnqn = nqn;
                }
            }
        }
        match roots {
            Some(dir) => lab.add_host_at(spec, &dir.join(&h.name))?,
            None => lab.add_host(spec)?,
        }
        for hba in h.hbas.iter().filter(|b| !b.in_initiator_target_map) {
            lab.exclude_from_initiator_target_map(&h.name, hba.wwpn.0);
        }
    }
    for a in &scn.arrays {
        let mut spec = match scn.protocol {
            ProtocolName::Iscsi => ArraySpec::new(&a.name, a.portals.clone()),
            ProtocolName::Fc => ArraySpec::fc(
                &a.name,
                a.fc_ports
                    .iter()
                    .map(|p| FcTargetPort::new(p.wwpn.0, &p.fabric))
                    .collect(),
            ),
            ProtocolName::Nvmeof => {
                let mut spec = ArraySpec::nvme(
                    &a.name,
                    a.nvme_ports
                        .iter()
                        .map(|p| NvmePort {
                            traddr: p.traddr.clone(),
                            trsvcid: p.trsvcid,
                            transport: match p.transport {
                                NvmeTransportName::Tcp => NvmeTransport::Tcp,
                                NvmeTransportName::Rdma => NvmeTransport::Rdma,
                            },
                        })
                        .collect(),
                );
                if let ArrayTransport::Nvme(n) = &mut spec.transport {
                    n.aen = a.aen.unwrap_or(true);
                }
                spec
            }
        };
        spec.iqn_mode = match scn.protocol {
            ProtocolName::Iscsi => match a.iqn {
                IqnStyle::PerVolume => IqnMode::PerVolume {
                    prefix: a
                        .iqn_name
                        .clone()
                        .unwrap_or_else(|| "iqn.2010-10.org.openstack:volume-".to_owned()),
                },
                IqnStyle::Shared => IqnMode::Shared {
                    iqn: a
                        .iqn_name
                        .clone()
                        .unwrap_or_else(|| format!("iqn.2010-10.org.openstack:{}", a.name)),
                },
            },
            ProtocolName::Nvmeof => match a.subsystem.unwrap_or(IqnStyle::PerVolume) {
                IqnStyle::PerVolume => IqnMode::PerVolume {
                    prefix: a
                        .nqn
                        .clone()
                        .unwrap_or_else(|| "nqn.nvme-subsystem-1-".to_owned()),
                },
                IqnStyle::Shared => IqnMode::Shared {
                    iqn: a
                        .nqn
                        .clone()
                        .unwrap_or_else(|| format!("nqn.2010-10.org.openstack:{}", a.name)),
                },
            },
            // FC has no target names: the array's single LUN map.
            ProtocolName::Fc => spec.iqn_mode.clone(),
        };
        spec.identity = match a.identity {
            IdentityStyle::Fresh => IdentityPolicy::Fresh,
            IdentityStyle::ReuseOnLun => IdentityPolicy::ReuseOnLun,
        };
        if a.identity_style == Some(LunIdStyle::Tgt) {
            spec.id_style = IdStyle::Tgt { first_tid: 1 };
            spec.vendor = "IET".to_owned();
            spec.model = "VIRTUAL-DISK".to_owned();
            spec.lun0_controller = true;
        }
        if let Some(first) = a.first_lun {
            spec.first_lun = first;
        }
        lab.add_array(spec)?;
    }
    for h in &scn.hosts {
        for hba in h.hbas.iter().filter(|b| b.zoned) {
            for a in &scn.arrays {
                for p in a.fc_ports.iter().filter(|p| p.fabric == hba.fabric) {
                    lab.zone_ports(hba.wwpn.0, p.wwpn.0)?;
                }
            }
        }
    }
    Ok(lab)
}

/// Runs `scn` on a fresh simulated lab (see [`build_lab`]), with snapshots.
pub fn run(scn: &Scenario, roots: Option<&Path>) -> Result<(Outcome, Lab), ScenarioError> {
    crate::validate(scn)?;
    let mut lab = build_lab(scn, roots)?;
    let outcome = run_on(scn, &mut lab)?;
    Ok((outcome, lab))
}

/// Runs `scn` on `target`. A requirement the target cannot satisfy skips the scenario (on
/// the simulator it is an error: the simulator is meant to run everything).
pub fn run_on(scn: &Scenario, target: &mut dyn Target) -> Result<Outcome, ScenarioError> {
    crate::validate(scn)?;
    let tier = target.tier();
    let mut outcome = Outcome {
        name: scn.name.clone(),
        tier: tier.to_string(),
        steps: Vec::new(),
        failure: None,
        skipped: None,
    };
    for need in crate::needs(scn) {
        if let Some(reason) = target.unsupported(&need) {
            if tier == Tier::Sim {
                return Err(ScenarioError::Invalid {
                    file: scn.name.clone(),
                    message: reason,
                });
            }
            tracing::info!(scenario = %scn.name, %reason, "skipped");
            outcome.skipped = Some(reason);
            return Ok(outcome);
        }
    }
    // Snapshots are for review of simulated hosts; a real host's tree is not ours to keep.
    let snapshots = tier == Tier::Sim;
    let mut state = RunState::default();
    for h in target.host_names() {
        if let Ok(port) = target.port(&h) {
            state.baseline.insert(h, orphan_paths(port));
        }
    }
    for (i, step) in scn.steps.iter().enumerate() {
        let index = i + 1;
        let host = host_of(scn, step);
        let before = step
            .expect
            .unchanged
            .then(|| (summary(target, &host, &state), target.journal(&host).len()));
        arm_deferred(target, &mut state)?;
        let (summary_line, result) = run_step(scn, target, step, &mut state);
        // Properties hold for the settled host: udev and multipathd have processed every
        // event (`udevadm settle`). A lost event is a fault, and what it leaves behind shows.
        if let Err(err) = target.settle() {
            outcome.steps.push(StepRecord {
                index,
                summary: summary_line,
                result: format!("error: settling failed: {err}"),
                violations: Vec::new(),
                snapshot: None,
            });
            return Err(ScenarioError::Target(err));
        }
        let violations = target.check();
        let result_text = match &result {
            Ok(text) => text.clone(),
            Err(err) => format!("error: {err}"),
        };
        let hosts: BTreeMap<String, HostSummary> = target
            .host_names()
            .into_iter()
            .map(|h| {
                let s = summary(target, &h, &state);
                (h, s)
            })
            .collect();
        let snapshot = snapshots.then(|| StepSnapshot {
            step: format!("step {index}: {summary_line}"),
            result: result_text.clone(),
            violations: violations.iter().map(ToString::to_string).collect(),
            hosts: hosts.clone(),
        });
        outcome.steps.push(StepRecord {
            index,
            summary: summary_line,
            result: result_text,
            violations: violations.clone(),
            snapshot,
        });
        let judged = judge(
            scn,
            target,
            step,
            &result,
            &violations,
            hosts.get(&host),
            before.as_ref(),
        );
        if let Err(message) = judged {
            outcome.failure = Some(Failure {
                step: index,
                message,
                trees: target
                    .host_names()
                    .into_iter()
                    .filter_map(|h| target.tree_listing(&h).map(|t| (h, t)))
                    .collect(),
                logs: target
                    .host_names()
                    .into_iter()
                    .map(|h| {
                        let log = target.journal(&h);
                        (h, log)
                    })
                    .collect(),
            });
            break;
        }
    }
    Ok(outcome)
}

/// What the runner remembers across steps.
#[derive(Debug, Default)]
struct RunState {
    /// Orphans present before the scenario, per host.
    baseline: BTreeMap<String, BTreeSet<String>>,
    /// Volumes that exist on the array.
    existing: BTreeSet<String>,
    /// Hosts each volume is (or last was) mapped to, with the LUN it got.
    mapped: BTreeMap<String, BTreeMap<String, Option<u64>>>,
    /// What `clear-faults` must undo beyond the simulator's fault list.
    undo: Vec<Undo>,
    /// Faults to arm when the next step starts (timed faults: see `Injected::WithNextStep`).
    deferred: Vec<brick_sim_target::Fault>,
}

fn summary(target: &dyn Target, host: &str, state: &RunState) -> HostSummary {
    let Ok(port) = target.port(host) else {
        return HostSummary::default();
    };
    let empty = BTreeSet::new();
    let mut s = summarize(port, state.baseline.get(host).unwrap_or(&empty));
    for (h, vol) in target.attachments() {
        if h != host {
            continue;
        }
        let lines = match target.volume_paths(&vol, host) {
            Ok(p) => p
                .paths
                .iter()
                .map(|p| {
                    format!(
                        "{} -> {} ({})",
                        p.path,
                        p.device.as_ref().map_or("?", |d| d.as_str()),
                        p.wwid.as_ref().map_or("?", |w| w.as_str())
                    )
                })
                .collect(),
            Err(e) => vec![format!("error: {e}")],
        };
        s.paths.insert(vol, lines);
    }
    s
}

fn host_of(scn: &Scenario, step: &Step) -> String {
    step.host
        .clone()
        .or_else(|| step.from.clone())
        .or_else(|| scn.hosts.first().map(|h| h.name.clone()))
        .unwrap_or_default()
}

fn array_of<'a>(scn: &'a Scenario, step: &'a Step) -> &'a str {
    step.array
        .as_deref()
        .or_else(|| scn.arrays.first().map(|a| a.name.as_str()))
        .unwrap_or_default()
}

/// The LUN in os-brick properties (`target_lun`, or the first of `target_luns`; the
/// namespace id `ns_id`, a string or a number, for NVMe-oF).
fn lun_of(props: &serde_json::Value) -> Option<u64> {
    let data = props.get("data").unwrap_or(props);
    data.get("target_lun")
        .and_then(serde_json::Value::as_u64)
        .or_else(|| {
            data.get("target_luns")
                .and_then(|l| l.get(0))
                .and_then(serde_json::Value::as_u64)
        })
        .or_else(|| {
            data.get("ns_id").and_then(|n| {
                n.as_u64()
                    .or_else(|| n.as_str().and_then(|s| s.trim().parse().ok()))
            })
        })
}

/// What the protocol calls the number a volume gets in its target: `LUN`, or `nsid`.
fn lun_word(scn: &Scenario) -> &'static str {
    match scn.protocol {
        ProtocolName::Nvmeof => "nsid",
        ProtocolName::Iscsi | ProtocolName::Fc => "LUN",
    }
}

fn map_volume(
    target: &mut dyn Target,
    state: &mut RunState,
    vol: &str,
    host: &str,
) -> Result<Option<u64>, String> {
    target.map(vol, host).map_err(|e| e.to_string())?;
    let lun = target.props_json(vol, host).ok().as_ref().and_then(lun_of);
    state
        .mapped
        .entry(vol.to_owned())
        .or_default()
        .insert(host.to_owned(), lun);
    Ok(lun)
}

fn detach_options(step: &Step) -> (DisconnectOptions, bool) {
    (
        DisconnectOptions {
            force: step.force,
            ignore_errors: step.ignore_errors,
        },
        step.device_info.unwrap_or(true),
    )
}

fn detach_summary(step: &Step) -> String {
    let (opts, info) = detach_options(step);
    format!(
        "{}{}{}",
        if opts.force { " force" } else { "" },
        if opts.ignore_errors {
            " ignore_errors"
        } else {
            ""
        },
        if info { "" } else { " without device info" }
    )
}

fn device_text(d: &brick_connectors::DeviceInfo) -> String {
    let wwn = d.scsi_wwn.as_ref().map_or("-", |w| w.as_str());
    format!("{} (wwid {wwn})", d.path)
}

/// Arms the faults a `fault` step left for this step (simulated targets only: a `fault`
/// step on another target already failed).
fn arm_deferred(
    target: &mut dyn Target,
    state: &mut RunState,
) -> Result<(), brick_harness::LabError> {
    let faults = std::mem::take(&mut state.deferred);
    if let Some(lab) = target.lab_mut() {
        for f in faults {
            lab.inject(f)?;
        }
    }
    Ok(())
}

/// Runs one step; returns its summary and its result text or error text.
fn run_step(
    scn: &Scenario,
    target: &mut dyn Target,
    step: &Step,
    state: &mut RunState,
) -> (String, Result<String, String>) {
    let vol = step.volume.as_deref().unwrap_or_default();
    let host = host_of(scn, step);
    let host = host.as_str();
    let err = |e: brick_harness::TargetError| e.to_string();
    let ok = |()| "ok".to_owned();
    match step.action {
        Action::Create => {
            let array = array_of(scn, step);
            let size = step.size_mib.unwrap_or(1024).saturating_mul(1 << 20);
            let r = create(target, step, vol, array, size);
            if r.is_ok() {
                state.existing.insert(vol.to_owned());
            }
            (format!("create {vol} on {array}"), r)
        }
        Action::Map => (
            format!("map {vol} to {host}"),
            map_volume(target, state, vol, host).map(|lun| match lun {
                Some(l) => format!("ok ({} {l})", lun_word(scn)),
                None => "ok".to_owned(),
            }),
        ),
        Action::Unmap => (
            format!("unmap {vol} from {host} on the array"),
            target.unmap(vol, host).map(ok).map_err(err),
        ),
        Action::Delete => {
            let r = target.delete(vol).map(ok).map_err(err);
            if r.is_ok() {
                state.existing.remove(vol);
            }
            (format!("delete {vol} on the array"), r)
        }
        Action::Reuse => {
            let of = step.of.as_deref().unwrap_or_default();
            (
                format!("reuse: create {vol} on {of}'s LUN"),
                reuse(scn, target, step, state, vol, of),
            )
        }
        Action::Attach => (
            format!("attach {vol} on {host}"),
            target
                .attach(vol, host)
                .map(|d| device_text(&d))
                .map_err(err),
        ),
        Action::Detach => {
            let (opts, info) = detach_options(step);
            (
                format!("detach {vol} from {host}{}", detach_summary(step)),
                target.detach(vol, host, opts, info).map(ok).map_err(err),
            )
        }
        Action::Migrate => {
            let from = step.from.as_deref().unwrap_or_default();
            let to = step.to.as_deref().unwrap_or_default();
            (
                format!("migrate {vol} from {from} to {to}{}", detach_summary(step)),
                migrate(target, step, state, vol, from, to),
            )
        }
        Action::Paths => (
            format!("get_volume_paths {vol} on {host}"),
            target
                .volume_paths(vol, host)
                .map(|p| {
                    let list: Vec<String> = p
                        .paths
                        .iter()
                        .map(|p| {
                            format!(
                                "{} -> {} ({})",
                                p.path,
                                p.device.as_ref().map_or("?", |d| d.as_str()),
                                p.wwid.as_ref().map_or("?", |w| w.as_str())
                            )
                        })
                        .collect();
                    format!("[{}]", list.join(", "))
                })
                .map_err(err),
        ),
        Action::Fault => {
            let name = step.fault.as_deref().unwrap_or_default();
            let r = match target.lab_mut() {
                Some(lab) => crate::faults::inject(lab, scn, step, host).map(|i| match i {
                    Injected::Now(Undo::Nothing) => "ok".to_owned(),
                    Injected::Now(u) => {
                        state.undo.push(u);
                        "ok".to_owned()
                    }
                    Injected::WithNextStep(f) => {
                        state.deferred.push(f);
                        "ok (armed when the next step starts)".to_owned()
                    }
                }),
                None => Err(format!("fault `{name}` needs the simulator")),
            };
            (format!("inject fault {name} on {host}"), r)
        }
        Action::ClearFaults => {
            let mut r = Ok("ok".to_owned());
            if let Some(lab) = target.lab_mut() {
                lab.clear_faults();
                for u in std::mem::take(&mut state.undo) {
                    if let Err(e) = crate::faults::undo(lab, &u) {
                        r = Err(e);
                    }
                }
            }
            ("clear faults".into(), r)
        }
        Action::Settle => ("settle".into(), target.settle().map(ok).map_err(err)),
    }
}

fn create(
    target: &mut dyn Target,
    step: &Step,
    vol: &str,
    array: &str,
    size: u64,
) -> Result<String, String> {
    match (&step.array_name, target.lab_mut()) {
        (Some(name), Some(lab)) => lab
            .create_volume_as(vol, name, array, size)
            .map_err(|e| e.to_string())?,
        (Some(_), None) => return Err("`array_name` needs the simulator".into()),
        (None, _) => target
            .create_volume(vol, array, size)
            .map_err(|e| e.to_string())?,
    }
    Ok("ok".into())
}

fn reuse(
    scn: &Scenario,
    target: &mut dyn Target,
    step: &Step,
    state: &mut RunState,
    vol: &str,
    of: &str,
) -> Result<String, String> {
    let hosts = state.mapped.get(of).cloned().unwrap_or_default();
    if hosts.is_empty() {
        return Err(format!("`{of}` was never mapped: nothing to reuse"));
    }
    if state.existing.contains(of) {
        target
            .delete(of)
            .map_err(|e| format!("deleting {of}: {e}"))?;
        state.existing.remove(of);
    }
    let size = step.size_mib.unwrap_or(1024).saturating_mul(1 << 20);
    create(target, step, vol, array_of(scn, step), size)
        .map_err(|e| format!("creating {vol}: {e}"))?;
    state.existing.insert(vol.to_owned());
    let mut out = Vec::new();
    for (host, old) in hosts {
        let new =
            map_volume(target, state, vol, &host).map_err(|e| format!("mapping {vol}: {e}"))?;
        if old.is_some() && new != old {
            return Err(format!(
                "the array gave {vol} LUN {new:?} on {host}, not {of}'s LUN {old:?}: it does not reuse LUN ids"
            ));
        }
        out.push(format!(
            "{host}: {} {}",
            lun_word(scn),
            new.map_or("?".to_owned(), |l| l.to_string())
        ));
    }
    Ok(format!("ok ({})", out.join(", ")))
}

fn migrate(
    target: &mut dyn Target,
    step: &Step,
    state: &mut RunState,
    vol: &str,
    from: &str,
    to: &str,
) -> Result<String, String> {
    let already = state.mapped.get(vol).is_some_and(|m| m.contains_key(to));
    if !already {
        map_volume(target, state, vol, to).map_err(|e| format!("mapping to {to}: {e}"))?;
    }
    let dev = target
        .attach(vol, to)
        .map_err(|e| format!("attach on {to}: {e}"))?;
    let (opts, info) = detach_options(step);
    target
        .detach(vol, from, opts, info)
        .map_err(|e| format!("detach from {from}: {e}"))?;
    target
        .unmap(vol, from)
        .map_err(|e| format!("unmap from {from}: {e}"))?;
    if let Some(m) = state.mapped.get_mut(vol) {
        m.remove(from);
    }
    Ok(format!("attached on {to}: {}", device_text(&dev)))
}

/// The identity of an attached device: what the connector returned (`scsi_wwn`, then
/// `multipath_id`), else the device's sysfs `wwid` (NVMe-oF returns none, as os-brick).
fn device_identity(
    target: &dyn Target,
    host: &str,
    d: &brick_connectors::DeviceInfo,
) -> Option<String> {
    if let Some(w) = d.scsi_wwn.as_ref().or(d.multipath_id.as_ref()) {
        return Some(w.as_str().to_owned());
    }
    let port = target.port(host).ok()?;
    let fs = brick_connectors::HostFs::of(port);
    let name = d.path.as_str().rsplit('/').next()?;
    ["wwid", "device/wwid"].iter().find_map(|attr| {
        let p = brick_connectors::HostPath::new(format!("/sys/block/{name}/{attr}")).ok()?;
        fs.read_attr(&p).ok().flatten().map(|s| s.trim().to_owned())
    })
}

/// Checks a step's expectations; `Err` explains the first that failed.
fn judge(
    scn: &Scenario,
    target: &dyn Target,
    step: &Step,
    result: &Result<String, String>,
    violations: &[Violation],
    after: Option<&HostSummary>,
    before: Option<&(HostSummary, usize)>,
) -> Result<(), String> {
    let e = &step.expect;
    match (&e.error, result) {
        (None, Err(err)) => return Err(format!("the step failed unexpectedly: {err}")),
        (Some(want), Ok(got)) => {
            return Err(format!(
                "expected an error containing {want:?}, but the step succeeded: {got}"
            ));
        }
        (Some(want), Err(err)) => {
            for w in std::iter::once(want).chain(&e.error_mentions) {
                if !err.contains(w.as_str()) {
                    return Err(format!("expected an error containing {w:?}, got: {err}"));
                }
            }
        }
        (None, Ok(_)) => {}
    }
    let got: BTreeSet<String> = violations.iter().map(|v| v.kind.to_string()).collect();
    let want: BTreeSet<String> = e.violations.iter().cloned().collect();
    if got != want {
        let list: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(format!(
            "expected broken properties {want:?}, found {got:?}:\n    {}",
            if list.is_empty() {
                "(none)".to_owned()
            } else {
                list.join("\n    ")
            }
        ));
    }
    let host = host_of(scn, step);
    let vol = step.volume.as_deref().unwrap_or_default();
    if let Some(want) = &e.orphans {
        let got = after.map(HostSummary::orphan_reasons).unwrap_or_default();
        let mut want = want.clone();
        want.sort();
        if got != want {
            return Err(format!(
                "expected orphans {want:?} on {host}, the orphan report lists {:?}",
                after.map(|a| a.orphans.clone()).unwrap_or_default()
            ));
        }
    }
    if e.clean && !after.is_some_and(HostSummary::is_clean) {
        return Err(format!(
            "expected {host} to hold nothing, it holds: {:#?}",
            after
        ));
    }
    if let (Some((old, journal_len)), Some(new)) = (before, after) {
        let mut old = old.clone();
        let mut new = new.clone();
        // Paths are the report of attached volumes, not the host: compare the host itself.
        old.paths.clear();
        new.paths.clear();
        if old != new {
            return Err(format!(
                "expected the step to touch nothing on {host}; before: {old:#?}\nafter: {new:#?}"
            ));
        }
        let journal = target.journal(&host);
        let writes: Vec<&String> = journal
            .iter()
            .skip(*journal_len)
            .filter(|l| l.contains("] write ") || l.contains("] remove "))
            .collect();
        if !writes.is_empty() {
            return Err(format!(
                "expected the step to touch nothing on {host}, it wrote: {writes:?}"
            ));
        }
    }
    if step.action == Action::Paths && result.is_ok() {
        let paths = target.volume_paths(vol, &host).map_err(|e| e.to_string())?;
        if let Some(n) = e.paths
            && paths.paths.len() != n
        {
            return Err(format!(
                "expected {n} path(s), the connector reported {}",
                paths.paths.len()
            ));
        }
        if let Some(owner) = &e.identity {
            let wwid = target.identity(owner).map_err(|e| e.to_string())?;
            for p in &paths.paths {
                let got = p.wwid.as_ref().map(|w| w.as_str().to_owned());
                if got.as_deref() != Some(wwid.as_str()) {
                    return Err(format!(
                        "{} carries wwid {}, expected volume {owner}'s {wwid}",
                        p.path,
                        got.as_deref().unwrap_or("(none)")
                    ));
                }
            }
        }
    }
    if matches!(step.action, Action::Attach | Action::Migrate)
        && result.is_ok()
        && let Some(owner) = &e.identity
    {
        let on = match step.action {
            Action::Migrate => step.to.clone().unwrap_or_default(),
            _ => host.clone(),
        };
        let wwid = target.identity(owner).map_err(|e| e.to_string())?;
        let got = target
            .attached_device(vol, &on)
            .and_then(|d| device_identity(target, &on, &d));
        if got.as_deref() != Some(wwid.as_str()) {
            return Err(format!(
                "attach returned a device with wwid {}, expected volume {owner}'s {wwid}",
                got.as_deref().unwrap_or("(none)")
            ));
        }
    }
    if let Some(n) = e.paths
        && step.action != Action::Paths
    {
        let on = step.to.clone().unwrap_or(host);
        let got = target
            .volume_paths(vol, &on)
            .map(|p| p.paths.len())
            .map_err(|e| e.to_string())?;
        if got != n {
            return Err(format!(
                "expected {n} path(s) for {vol} on {on}, the connector reported {got}"
            ));
        }
    }
    Ok(())
}

/// Every volume of the lab as `volumes.json` describes it: name, wwid, whether it still
/// exists, the hosts it is attached to, and per host its connection properties in os-brick form.
pub fn volumes_json(lab: &Lab) -> serde_json::Value {
    let mut list = Vec::new();
    for name in lab.volume_names() {
        let (wwid, exists) = {
            let world = brick_harness::simhost::lock(lab.world());
            let id = lab.volume_id(&name).ok();
            (
                id.and_then(|id| world.volume_record(id).map(|v| v.wwid.clone())),
                id.is_some_and(|id| world.volume(id).is_some()),
            )
        };
        let mut props = serde_json::Map::new();
        for host in lab.host_names() {
            if let Ok(p) = lab.props_json(&name, &host) {
                props.insert(host, p);
            }
        }
        let attached: Vec<String> = lab
            .attachments()
            .keys()
            .filter(|(_, v)| *v == name)
            .map(|(h, _)| h.clone())
            .collect();
        list.push(serde_json::json!({
            "name": name,
            "wwid": wwid,
            "exists": exists,
            "attached": !attached.is_empty(),
            "attached_to": attached,
            "connection_properties": props,
        }));
    }
    serde_json::Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HBA states of the only host after each step.
    fn hba_states(outcome: &Outcome) -> Vec<String> {
        outcome
            .steps
            .iter()
            .map(|s| {
                let snap = s.snapshot.as_ref().unwrap();
                let fc = &snap.hosts["compute-1"].fc;
                fc.iter()
                    .filter(|l| l.starts_with("host0 "))
                    .map(|l| l.rsplit('=').next().unwrap().to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_later_hba_linkdown_is_armed_with_the_next_step() {
        let text = r#"schema = 1
name = "t"
description = "d"
protocol = "fc"

[[host]]
name = "compute-1"

[[host.hba]]
wwpn = "21:00:00:24:ff:7c:00:01"
fabric = "a"
pci = "0000:05:00.2"

[[array]]
name = "array-1"
fc_ports = [{ wwpn = "0x5006016090203181", fabric = "a" }]

[[step]]
action = "fault"
fault = "hba-linkdown-later"
delay_ms = 100

[[step]]
action = "settle"

[[step]]
action = "clear-faults"
"#;
        let scn = crate::parse("t.toml", text).unwrap();
        let (outcome, _lab) = run(&scn, None).unwrap();
        assert!(outcome.passed(), "{outcome:?}");
        // The fault step itself settles without taking the link down; the next one does.
        assert_eq!(hba_states(&outcome), ["Online", "Linkdown", "Online"]);
        assert_eq!(
            outcome.steps[0].result,
            "ok (armed when the next step starts)"
        );
    }
}
