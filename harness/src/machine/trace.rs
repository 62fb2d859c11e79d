//! The replay scenario: a counterexample written in the scenarios crate's TOML format
//! (`schema = 1`), with the model's expectations after every step, so that replaying it on
//! the broken connector fails at the same step.
//!
//! The text is written by hand (the harness does not depend on the scenarios crate); the
//! root package's tests parse it with the real schema. What the format cannot express yet is
//! written as a comment next to the step (hosts with multipathd but a single-path connector,
//! SAM3-flat arrays, a second portal going down).

use std::fmt::Write as _;

use crate::checks::PropertyKind;
use crate::machine::model::{
    AttachFault, DetachFault, HostKind, ModelState, Outcome, Transition, host_name, vol_name,
};
use crate::machine::nvme::{NQN_PREFIX, SHARED_NQN, TRSVCID, port_addr};
use crate::machine::sut::{ARRAY, IQN_PREFIX, SHARED_IQN, fabric, fc_port_wwpn, hba_wwpn, portal};

/// How each machine fault is written in a scenario: the fault name of the scenarios crate,
/// plus its `times` / `delay_ms` fields. `None`: not expressible (the crash; the replay keeps
/// only its retried detach, whose end state is the one the model judges).
fn attach_fault(f: AttachFault) -> (&'static str, Vec<(&'static str, String)>) {
    match f {
        AttachFault::UdevLate => ("udev-late", vec![("delay_ms", "30000".to_owned())]),
        AttachFault::UdevLost => ("udev-lost", Vec::new()),
        AttachFault::NamespaceAppears { vol } => {
            ("namespace-appears", vec![("volume", q(&vol_name(vol)))])
        }
    }
}

fn detach_fault(f: DetachFault) -> Option<(&'static str, Vec<(&'static str, String)>)> {
    Some(match f {
        DetachFault::MapFlushFails { persistent: true } => ("flush-fails", Vec::new()),
        DetachFault::MapFlushFails { persistent: false } => {
            ("flush-fails", vec![("times", "1".to_owned())])
        }
        DetachFault::DeviceFlushFails => ("blockdev-flush-fails", Vec::new()),
        DetachFault::DeleteBusy => ("delete-busy", Vec::new()),
        DetachFault::UdevLate => ("udev-late", vec![("delay_ms", "30000".to_owned())]),
        DetachFault::UdevLostRemove => ("udev-lost-remove", Vec::new()),
        DetachFault::MultipathdSlow => ("multipathd-slow", vec![("delay_ms", "5000".to_owned())]),
        DetachFault::Crash { .. } => return None,
    })
}

fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn kinds(state: &ModelState) -> Vec<String> {
    let set: std::collections::BTreeSet<PropertyKind> = state
        .expected_violations()
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    set.into_iter().map(|k| k.to_string()).collect()
}

struct Writer<'a> {
    out: &'a mut String,
    multi_host: bool,
}

impl Writer<'_> {
    fn step(
        &mut self,
        action: &str,
        fields: &[(&str, String)],
        after: &ModelState,
        expect_err: bool,
    ) {
        let _ = writeln!(self.out, "\n[[step]]\naction = {}", q(action));
        for (k, v) in fields {
            let _ = writeln!(self.out, "{k} = {v}");
        }
        let mut expect = Vec::new();
        if expect_err {
            expect.push("error = \"\"".to_owned());
        }
        let v = kinds(after);
        if !v.is_empty() {
            let list: Vec<String> = v.iter().map(|s| q(s)).collect();
            expect.push(format!("violations = [{}]", list.join(", ")));
        }
        let attached = match after.outcome {
            Outcome::Attached {
                wwn: Some(ident), ..
            }
            | Outcome::NvmeAttached { ident, .. } => Some(ident),
            _ => None,
        };
        if let Some(ident) = attached
            && let Some(owner) = after.name_of_ident(ident)
        {
            expect.push(format!("identity = {}", q(&vol_name(owner))));
        }
        if !expect.is_empty() {
            let _ = writeln!(self.out, "expect = {{ {} }}", expect.join(", "));
        }
    }

    fn host(&self, h: usize) -> Vec<(&'static str, String)> {
        if self.multi_host {
            vec![("host", q(&host_name(h)))]
        } else {
            Vec::new()
        }
    }
}

/// The scenario TOML that replays `transitions` from `initial`.
pub fn scenario_toml(name: &str, initial: &ModelState, transitions: &[Transition]) -> String {
    let t = &initial.topology;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by the brickcheck property machine: a shrunk counterexample."
    );
    let _ = writeln!(out, "# Lab: {t}; fault classes drawn: {}.", initial.faults);
    let _ = writeln!(out, "schema = 1\nname = {}", q(name));
    let _ = writeln!(
        out,
        "description = {}",
        q(&format!(
            "Counterexample found by the property machine ({} transitions). Every step carries \
             what a correct connector must produce; a replay fails where the connector under \
             test broke an invariant.",
            transitions.len()
        ))
    );
    let _ = writeln!(
        out,
        "protocol = {}\nseed = {}",
        q(t.protocol.name()),
        initial.world_seed
    );
    for h in 0..t.hosts {
        let _ = writeln!(out, "\n[[host]]\nname = {}", q(&host_name(h)));
        match t.host_kind {
            HostKind::Single => {}
            HostKind::Multipath => {
                let _ = writeln!(out, "multipath = true");
            }
            HostKind::MultipathdSingle => {
                let _ = writeln!(
                    out,
                    "# not expressible yet: multipathd runs but the connector is single-path\nmultipath = true"
                );
            }
        }
        let _ = writeln!(out, "udev_delay_ms = 50");
        if let Some(n) = &t.nvme {
            let _ = writeln!(
                out,
                "nvme = {{ native_multipath = {} }}",
                n.native_multipath
            );
        }
        if let Some(fc) = &t.fc {
            for i in 0..fc.hbas {
                let _ = writeln!(
                    out,
                    "\n[[host.hba]]\nwwpn = {}\nfabric = {}\npci = {}",
                    q(&colon_wwpn(hba_wwpn(h, i))),
                    q(&fabric(i)),
                    q(&format!("0000:05:00.{}", i + 2))
                );
            }
        }
    }
    if let Some(fc) = &t.fc {
        let ports: Vec<String> = (0..fc.ports)
            .map(|j| {
                format!(
                    "  {{ wwpn = {}, fabric = {} }},",
                    q(&colon_wwpn(fc_port_wwpn(j))),
                    q(&fabric(fc.port_fabric(j)))
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\n[[array]]\nname = {}\nfirst_lun = {}\nfc_ports = [\n{}\n]",
            q(ARRAY),
            t.first_lun,
            ports.join("\n")
        );
        if t.reuse_identity {
            let _ = writeln!(out, "identity = \"reuse-on-lun\"");
        }
    } else if t.nvme.is_some() {
        let ports: Vec<String> = (0..t.portals)
            .map(|i| {
                format!(
                    "  {{ traddr = {}, trsvcid = {} }},",
                    q(&port_addr(i)),
                    TRSVCID
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "\n[[array]]\nname = {}\nnvme_ports = [\n{}\n]",
            q(ARRAY),
            ports.join("\n")
        );
        if t.shared_target {
            let _ = writeln!(out, "subsystem = \"shared\"\nnqn = {}", q(SHARED_NQN));
        } else {
            let _ = writeln!(out, "subsystem = \"per-volume\"\nnqn = {}", q(NQN_PREFIX));
        }
        if t.nvme.is_some_and(|n| !n.aen) {
            let _ = writeln!(out, "aen = false");
        }
    } else {
        write_iscsi_array(&mut out, initial);
    }
    write_steps(&mut out, initial, transitions);
    out
}

/// `21:00:00:24:ff:7c:00:01`.
fn colon_wwpn(w: u64) -> String {
    let b = w.to_be_bytes();
    let parts: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    parts.join(":")
}

fn write_iscsi_array(out: &mut String, initial: &ModelState) {
    let t = &initial.topology;
    let portals: Vec<String> = (0..t.portals).map(|i| q(&portal(i))).collect();
    let _ = writeln!(
        out,
        "\n[[array]]\nname = {}\nportals = [{}]",
        q(ARRAY),
        portals.join(", ")
    );
    if t.shared_target {
        let _ = writeln!(out, "iqn = \"shared\"\niqn_name = {}", q(SHARED_IQN));
    } else {
        let _ = writeln!(out, "iqn = \"per-volume\"\niqn_name = {}", q(IQN_PREFIX));
    }
    if t.reuse_identity {
        let _ = writeln!(out, "identity = \"reuse-on-lun\"");
    }
    if t.flat_addressing {
        let _ = writeln!(out, "# not expressible yet: SAM3-flat addressing");
    }
}

fn write_steps(out: &mut String, initial: &ModelState, transitions: &[Transition]) {
    let t = &initial.topology;
    let mut w = Writer {
        out,
        multi_host: t.hosts > 1,
    };
    let mut state = initial.clone();
    for tr in transitions {
        let before = state.clone();
        state = state.step(tr);
        let err = state.outcome == Outcome::Err;
        match *tr {
            Transition::Create => {
                let n = before.volumes.len();
                let mut f = vec![("volume", q(&vol_name(n)))];
                if let Some(slot) = state.volumes.get(n).map(|v| v.slot)
                    && slot != n
                {
                    // A recycled target: the array names it after a deleted volume.
                    f.push(("array_name", q(&vol_name(slot))));
                }
                w.step("create", &f, &state, false);
            }
            Transition::Map { vol, host } => {
                let mut f = vec![("volume", q(&vol_name(vol)))];
                f.extend(w.host(host));
                w.step("map", &f, &state, false);
            }
            Transition::Unmap { vol, host } => {
                let mut f = vec![("volume", q(&vol_name(vol)))];
                f.extend(w.host(host));
                w.step("unmap", &f, &state, false);
            }
            Transition::Delete { vol } => {
                w.step("delete", &[("volume", q(&vol_name(vol)))], &state, false);
            }
            Transition::Attach { vol, host, fault } => {
                if let Some(fl) = fault {
                    let (n, extra) = attach_fault(fl);
                    let mut f = vec![("fault", q(n))];
                    f.extend(extra);
                    f.extend(w.host(host));
                    w.step("fault", &f, &before, false);
                }
                let mut f = vec![("volume", q(&vol_name(vol)))];
                f.extend(w.host(host));
                w.step("attach", &f, &state, err);
                if fault.is_some() {
                    w.step("clear-faults", &[], &state, false);
                }
            }
            Transition::Detach {
                vol,
                host,
                force,
                device_info,
                fault,
            } => {
                let armed = fault.and_then(detach_fault);
                if let Some((n, extra)) = &armed {
                    let mut f = vec![("fault", q(n))];
                    f.extend(extra.iter().cloned());
                    f.extend(w.host(host));
                    w.step("fault", &f, &before, false);
                }
                let mut f = vec![("volume", q(&vol_name(vol)))];
                f.extend(w.host(host));
                if force {
                    f.push(("force", "true".to_owned()));
                }
                if !device_info || (force && matches!(fault, Some(DetachFault::Crash { .. }))) {
                    f.push(("device_info", "false".to_owned()));
                }
                if let Some(DetachFault::Crash { after }) = fault {
                    let _ = writeln!(
                        w.out,
                        "\n# the machine crashed this detach after {after} side effect(s) and retried it; \
                         only the retry is replayed"
                    );
                }
                w.step("detach", &f, &state, err);
                if armed.is_some() {
                    w.step("clear-faults", &[], &state, false);
                }
            }
            Transition::PathDown { host, portal: p } if t.nvme.is_some() => {
                let mut f = vec![
                    ("fault", q("nvme-port-down")),
                    ("portal", q(&format!("{}:{TRSVCID}", port_addr(p)))),
                ];
                f.extend(w.host(host));
                w.step("fault", &f, &state, false);
            }
            Transition::PathDown { host, portal: p } => {
                let mut f = if t.fc.is_some() {
                    vec![
                        ("fault", q("hba-linkdown")),
                        ("wwpn", q(&colon_wwpn(hba_wwpn(host, p)))),
                    ]
                } else {
                    vec![("fault", q("path-down")), ("portal", q(&portal(p)))]
                };
                f.extend(w.host(host));
                w.step("fault", &f, &state, false);
                if t.fc.is_some() {
                    // dev_loss_tmo passes before the next step.
                    w.step("settle", &[], &state, false);
                }
            }
            Transition::Wait => {
                w.step("settle", &[], &state, false);
            }
            Transition::PathUp { .. } => {
                let _ = writeln!(
                    w.out,
                    "\n# the portal comes back: every fault is cleared (no per-portal clear yet)"
                );
                w.step("clear-faults", &[], &state, false);
            }
        }
    }
}
