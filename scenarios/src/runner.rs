//! Runs a scenario on a [`Lab`] and checks every correctness property after every step.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use brick_connectors::DisconnectOptions;
use brick_harness::{Lab, LabHostSpec, Violation};
use brick_sim_target::{ArraySpec, IdentityPolicy, IqnMode};
use serde::Serialize;

use crate::error::ScenarioError;
use crate::schema::{Action, IdentityStyle, IqnStyle, Scenario, Step};

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
}

/// Why a scenario failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The step (1-based) where an expectation did not hold.
    pub step: usize,
    /// What was expected and what happened.
    pub message: String,
    /// Each host's materialized tree at that point.
    pub trees: Vec<(String, String)>,
    /// Each host's connector log (side effects) up to that point.
    pub logs: Vec<(String, Vec<String>)>,
}

/// The result of running one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The scenario's name.
    pub name: String,
    /// The steps that ran.
    pub steps: Vec<StepRecord>,
    /// `None` when every expectation held.
    pub failure: Option<Failure>,
}

impl Outcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// A readable report of a failure: the step trace, the expectation, the trees and the
    /// connector logs, and a replay command.
    pub fn failure_report(&self, replay: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "scenario `{}` failed", self.name);
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
        match roots {
            Some(dir) => lab.add_host_at(spec, &dir.join(&h.name))?,
            None => lab.add_host(spec)?,
        }
    }
    for a in &scn.arrays {
        let mut spec = ArraySpec::new(&a.name, a.portals.clone());
        spec.iqn_mode = match a.iqn {
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
        };
        spec.identity = match a.identity {
            IdentityStyle::Fresh => IdentityPolicy::Fresh,
            IdentityStyle::ReuseOnLun => IdentityPolicy::ReuseOnLun,
        };
        if let Some(first) = a.first_lun {
            spec.first_lun = first;
        }
        lab.add_array(spec)?;
    }
    Ok(lab)
}

/// Runs `scn` on a fresh lab (see [`build_lab`]).
pub fn run(scn: &Scenario, roots: Option<&Path>) -> Result<(Outcome, Lab), ScenarioError> {
    crate::validate(scn)?;
    let mut lab = build_lab(scn, roots)?;
    let mut outcome = Outcome {
        name: scn.name.clone(),
        steps: Vec::new(),
        failure: None,
    };
    for (i, step) in scn.steps.iter().enumerate() {
        let index = i + 1;
        let (summary, result) = run_step(scn, &mut lab, step);
        // Properties hold for the settled host: udev and multipathd have processed every event
        // (`udevadm settle`). A lost event is a fault, and what it leaves behind still shows.
        let violations = match lab.settle() {
            Ok(()) => lab.check(),
            Err(err) => {
                outcome.steps.push(StepRecord {
                    index,
                    summary,
                    result: format!("error: settling the simulator failed: {err}"),
                    violations: Vec::new(),
                });
                return Err(err.into());
            }
        };
        let record = StepRecord {
            index,
            summary,
            result: match &result {
                Ok(text) => text.clone(),
                Err(err) => format!("error: {err}"),
            },
            violations: violations.clone(),
        };
        outcome.steps.push(record);
        if let Err(message) = judge(scn, &lab, step, &result, &violations) {
            outcome.failure = Some(Failure {
                step: index,
                message,
                trees: lab
                    .host_names()
                    .into_iter()
                    .map(|h| {
                        let tree = lab.tree_listing(&h).unwrap_or_default();
                        (h, tree)
                    })
                    .collect(),
                logs: lab
                    .host_names()
                    .into_iter()
                    .map(|h| {
                        let log = lab.journal(&h).unwrap_or_default();
                        (h, log)
                    })
                    .collect(),
            });
            break;
        }
    }
    Ok((outcome, lab))
}

fn host_of<'a>(scn: &'a Scenario, step: &'a Step) -> &'a str {
    step.host
        .as_deref()
        .or_else(|| scn.hosts.first().map(|h| h.name.as_str()))
        .unwrap_or_default()
}

fn array_of<'a>(scn: &'a Scenario, step: &'a Step) -> &'a str {
    step.array
        .as_deref()
        .or_else(|| scn.arrays.first().map(|a| a.name.as_str()))
        .unwrap_or_default()
}

/// Runs one step; returns its summary and its result text or error text.
fn run_step(scn: &Scenario, lab: &mut Lab, step: &Step) -> (String, Result<String, String>) {
    let vol = step.volume.as_deref().unwrap_or_default();
    let host = host_of(scn, step);
    let err = |e: brick_harness::LabError| e.to_string();
    match step.action {
        Action::Create => {
            let array = array_of(scn, step);
            let size = step.size_mib.unwrap_or(1024).saturating_mul(1 << 20);
            (
                format!("create {vol} on {array}"),
                lab.create_volume(vol, array, size)
                    .map(|()| "ok".into())
                    .map_err(err),
            )
        }
        Action::Map => (
            format!("map {vol} to {host}"),
            lab.map(vol, host).map(|()| "ok".into()).map_err(err),
        ),
        Action::Unmap => (
            format!("unmap {vol} from {host} on the array"),
            lab.unmap(vol, host).map(|()| "ok".into()).map_err(err),
        ),
        Action::Delete => (
            format!("delete {vol} on the array"),
            lab.delete(vol).map(|()| "ok".into()).map_err(err),
        ),
        Action::Attach => (
            format!("attach {vol} on {host}"),
            lab.attach(vol, host)
                .map(|d| {
                    let wwn = d.scsi_wwn.as_ref().map_or("-", |w| w.as_str()).to_owned();
                    format!("{} (wwid {wwn})", d.path)
                })
                .map_err(err),
        ),
        Action::Detach => {
            let opts = DisconnectOptions {
                force: step.force,
                ignore_errors: step.ignore_errors,
            };
            let info = step.device_info.unwrap_or(true);
            (
                format!(
                    "detach {vol} from {host}{}{}{}",
                    if step.force { " force" } else { "" },
                    if step.ignore_errors {
                        " ignore_errors"
                    } else {
                        ""
                    },
                    if info { "" } else { " without device info" }
                ),
                lab.detach(vol, host, opts, info)
                    .map(|()| "ok".into())
                    .map_err(err),
            )
        }
        Action::Paths => (
            format!("get_volume_paths {vol} on {host}"),
            lab.volume_paths(vol, host)
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
            (
                format!("inject fault {name}"),
                crate::faults::inject(lab, name, host).map(|()| "ok".into()),
            )
        }
        Action::ClearFaults => {
            lab.clear_faults();
            ("clear faults".into(), Ok("ok".into()))
        }
        Action::Settle => (
            "settle".into(),
            lab.settle().map(|()| "ok".into()).map_err(err),
        ),
    }
}

/// Checks a step's expectations; `Err` explains the first that failed.
fn judge(
    scn: &Scenario,
    lab: &Lab,
    step: &Step,
    result: &Result<String, String>,
    violations: &[Violation],
) -> Result<(), String> {
    match (&step.expect.error, result) {
        (None, Err(e)) => return Err(format!("the step failed unexpectedly: {e}")),
        (Some(want), Ok(got)) => {
            return Err(format!(
                "expected an error containing {want:?}, but the step succeeded: {got}"
            ));
        }
        (Some(want), Err(e)) if !e.contains(want.as_str()) => {
            return Err(format!("expected an error containing {want:?}, got: {e}"));
        }
        _ => {}
    }
    let got: BTreeSet<String> = violations.iter().map(|v| v.kind.to_string()).collect();
    let want: BTreeSet<String> = step.expect.violations.iter().cloned().collect();
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
    if step.action == Action::Paths {
        let vol = step.volume.as_deref().unwrap_or_default();
        let host = host_of(scn, step);
        let paths = lab.volume_paths(vol, host).map_err(|e| e.to_string())?;
        if let Some(n) = step.expect.paths {
            if paths.paths.len() != n {
                return Err(format!(
                    "expected {n} path(s), the connector reported {}",
                    paths.paths.len()
                ));
            }
        }
        if let Some(owner) = &step.expect.identity {
            let wwid = crate::volume_wwid(lab, owner)?;
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
    if step.action == Action::Attach {
        if let (Some(owner), Ok(_)) = (&step.expect.identity, result) {
            let vol = step.volume.as_deref().unwrap_or_default();
            let host = host_of(scn, step);
            let wwid = crate::volume_wwid(lab, owner)?;
            let key = (host.to_owned(), vol.to_owned());
            let got = lab
                .attachments()
                .get(&key)
                .and_then(|a| a.device.scsi_wwn.as_ref().map(|w| w.as_str().to_owned()));
            if got.as_deref() != Some(wwid.as_str()) {
                return Err(format!(
                    "attach returned a device with wwid {}, expected volume {owner}'s {wwid}",
                    got.as_deref().unwrap_or("(none)")
                ));
            }
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
