//! # brick-scenarios
//!
//! Named, declarative attach/detach scenarios: TOML files in `scenarios/catalogue/` (format in
//! [`schema`] and `scenarios/README.md`), the runner that plays them on a simulated lab and
//! checks every correctness property after every step, and the built-in catalogue embedded for
//! `brick check`.
//!
//! It knows the file format and the harness; it does not know the CLI.

pub mod error;
pub mod faults;
pub mod report;
pub mod runner;
pub mod schema;
pub mod snapshot;
pub mod target;

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin.rs"));
}

use std::path::Path;

pub use builtin::BUILTIN;
pub use error::ScenarioError;
pub use runner::{Outcome, Verdict, run, run_on};
pub use schema::Scenario;

/// Parses a scenario from TOML text; `file` names it in errors.
///
/// Every error names the file, the 1-based line and column, and the field
/// (`file.toml:12:13: step[3].size_mib: invalid type: string "big", expected u64`).
pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
    let scn: Scenario = parse_toml(file, text)?;
    if scn.schema != 1 {
        let (line, column) = key_position(text, "schema");
        return Err(ScenarioError::Parse {
            file: file.to_owned(),
            line,
            column,
            message: format!(
                "schema: {} is not supported (only schema = 1; see scenarios/README.md)",
                scn.schema
            ),
        });
    }
    check_shape(file, text, &scn)?;
    Ok(scn)
}

/// The 1-based line and column of the `n`th `[[table]]` header (or the start of the file).
fn table_position(text: &str, table: &str, n: usize) -> (usize, usize) {
    let header = format!("[[{table}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(n)
        .map_or((1, 1), |(i, l)| (i + 1, l.len() - l.trim_start().len() + 1))
}

/// Protocol-specific keys: an iSCSI array needs `portals`, an FC array `fc_ports`, an NVMe-oF
/// array `nvme_ports`; keys of another protocol are refused. Errors point at the table.
fn check_shape(file: &str, text: &str, scn: &Scenario) -> Result<(), ScenarioError> {
    use schema::{IdentityStyle, IqnStyle, LunIdStyle, ProtocolName as P};
    let proto = scn.protocol;
    let at = |table: &str, n: usize, message: String| {
        let (line, column) = table_position(text, table, n);
        ScenarioError::Parse {
            file: file.to_owned(),
            line,
            column,
            message: format!("{table}[{n}]: {message}"),
        }
    };
    let other = |key: &str, wants: &str| {
        format!(
            "`{key}` is for {wants} arrays/hosts; this scenario's protocol is `{}`",
            proto.as_str()
        )
    };
    for (i, a) in scn.arrays.iter().enumerate() {
        let err = |m: String| Err(at("array", i, m));
        match proto {
            P::Iscsi => {
                if a.portals.is_empty() {
                    return err(
                        "missing field `portals` (an iSCSI array needs one portal or more)".into(),
                    );
                }
            }
            P::Fc => {
                if a.fc_ports.is_empty() {
                    return err(
                        "missing field `fc_ports` (an FC array needs one target port or more)"
                            .into(),
                    );
                }
            }
            P::Nvmeof => {
                if a.nvme_ports.is_empty() {
                    return err(
                        "missing field `nvme_ports` (an NVMe-oF array needs one port or more)"
                            .into(),
                    );
                }
            }
        }
        if proto != P::Iscsi {
            if !a.portals.is_empty() {
                return err(other("portals", "iSCSI"));
            }
            if a.iqn != IqnStyle::PerVolume || a.iqn_name.is_some() {
                return err(other("iqn`/`iqn_name", "iSCSI"));
            }
        }
        if proto != P::Fc && !a.fc_ports.is_empty() {
            return err(other("fc_ports", "FC"));
        }
        if proto != P::Nvmeof {
            if !a.nvme_ports.is_empty() {
                return err(other("nvme_ports", "NVMe-oF"));
            }
            if a.subsystem.is_some() || a.nqn.is_some() || a.aen.is_some() {
                return err(other("subsystem`/`nqn`/`aen", "NVMe-oF"));
            }
        }
        if proto != P::Iscsi && a.identity_style.is_some() {
            return err(other("identity_style", "iSCSI"));
        }
        if a.identity_style == Some(LunIdStyle::Tgt) && a.identity != IdentityStyle::ReuseOnLun {
            return err(
                "`identity_style = \"tgt\"` computes ids from the target and LUN, so a reused LUN \
                 keeps its identity: it needs `identity = \"reuse-on-lun\"`"
                    .into(),
            );
        }
        if proto == P::Nvmeof && a.identity != IdentityStyle::Fresh {
            return err(
                "`identity = \"reuse-on-lun\"` is not modelled for NVMe-oF (namespaces carry their own uuid)"
                    .into(),
            );
        }
    }
    for (i, h) in scn.hosts.iter().enumerate() {
        let err = |m: String| Err(at("host", i, m));
        if proto == P::Fc && h.hbas.is_empty() {
            return err("missing `[[host.hba]]` (an FC host needs one HBA port or more)".into());
        }
        if proto != P::Fc && !h.hbas.is_empty() {
            return err(other("hba", "FC"));
        }
        if proto != P::Nvmeof && h.nvme.is_some() {
            return err(other("nvme", "NVMe-oF"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for hba in &h.hbas {
            if !seen.insert(hba.wwpn) {
                return err(format!("HBA {} is listed twice", hba.wwpn));
            }
        }
    }
    Ok(())
}

/// Deserializes TOML text into `T`, with errors that name the file, line, column and field.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, ScenarioError> {
    let at = |err: &toml::de::Error, field: Option<String>| {
        let (line, column) = err
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        let message = err.message().trim().to_owned();
        let message = match field {
            Some(f) if !f.is_empty() && f != "." => format!("{f}: {message}"),
            _ => message,
        };
        ScenarioError::Parse {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    };
    let de = toml::Deserializer::parse(text).map_err(|e| at(&e, None))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        at(e.inner(), Some(field))
    })
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&path.display().to_string(), &text)
}

/// The built-in catalogue, parsed.
pub fn builtin() -> Result<Vec<Scenario>, ScenarioError> {
    BUILTIN
        .iter()
        .map(|(file, text)| parse(&format!("<builtin:{file}>"), text))
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn key_position(text: &str, key: &str) -> (usize, usize) {
    text.lines()
        .enumerate()
        .find(|(_, l)| l.trim_start().starts_with(key))
        .map_or((1, 1), |(n, l)| (n + 1, l.len() - l.trim_start().len() + 1))
}

/// The property names `expect.violations` accepts.
pub const PROPERTIES: &[&str] = &["leftover", "truth", "cross-talk"];

/// The orphan reasons `expect.orphans` accepts (as the orphan report names them).
pub const ORPHAN_REASONS: &[&str] = &[
    "stale_link",
    "empty_map",
    "idle_session",
    "identity_mismatch",
    "dangling_holder",
    "stale_node",
    "unlinked_device",
];

/// Checks references inside a parsed scenario (hosts, arrays, volumes named by steps).
pub fn validate(scn: &Scenario) -> Result<(), ScenarioError> {
    use schema::Action as A;
    let invalid = |message: String| ScenarioError::Invalid {
        file: scn.name.clone(),
        message,
    };
    if scn.hosts.is_empty() || scn.arrays.is_empty() {
        return Err(invalid(
            "a scenario needs at least one [[host]] and one [[array]]".into(),
        ));
    }
    let known_host = |h: &str| scn.hosts.iter().any(|d| d.name == h);
    for (i, step) in scn.steps.iter().enumerate() {
        let at = |m: String| invalid(format!("step {}: {m}", i + 1));
        let action = format!("{:?}", step.action).to_lowercase();
        if !matches!(step.action, A::Settle | A::ClearFaults | A::Fault) && step.volume.is_none() {
            return Err(at(format!("`{action}` needs `volume`")));
        }
        if scn.hosts.len() > 1
            && step.host.is_none()
            && matches!(
                step.action,
                A::Map | A::Unmap | A::Attach | A::Detach | A::Paths | A::Fault
            )
        {
            return Err(at(format!(
                "`{action}` needs `host` (the scenario has several hosts)"
            )));
        }
        for h in [&step.host, &step.from, &step.to].into_iter().flatten() {
            if !known_host(h) {
                return Err(at(format!("unknown host `{h}`")));
            }
        }
        if step.action == A::Migrate {
            match (&step.from, &step.to) {
                (Some(f), Some(t)) if f != t => {}
                (Some(_), Some(_)) => return Err(at("`migrate` needs two different hosts".into())),
                _ => return Err(at("`migrate` needs `from` and `to`".into())),
            }
        }
        if step.action == A::Reuse && step.of.is_none() {
            return Err(at(
                "`reuse` needs `of` (the deleted volume whose LUN it takes)".into(),
            ));
        }
        if let Some(a) = &step.array
            && !scn.arrays.iter().any(|d| &d.name == a)
        {
            return Err(at(format!("unknown array `{a}`")));
        }
        if step.action == A::Fault {
            let name = step.fault.as_deref().unwrap_or_default();
            if !faults::FAULTS.iter().any(|(n, _)| *n == name) {
                let known: Vec<&str> = faults::FAULTS.iter().map(|(n, _)| *n).collect();
                return Err(at(format!(
                    "unknown fault `{name}`; known: {}",
                    known.join(", ")
                )));
            }
            if let Some(p) = faults::fault_protocol(name)
                && p != scn.protocol
            {
                return Err(at(format!(
                    "fault `{name}` is for protocol {}, the scenario's is {}",
                    p.as_str(),
                    scn.protocol.as_str()
                )));
            }
            if name == "hba-linkdown-later" && step.delay_ms.is_none() {
                return Err(at(
                    "`hba-linkdown-later` needs `delay_ms` (how far into the next step the link goes)"
                        .into(),
                ));
            }
            if name == "namespace-appears" && step.volume.is_none() {
                return Err(at(
                    "`namespace-appears` needs `volume` (the volume that appears)".into(),
                ));
            }
            if name == "nvme-port-down"
                && let Some(p) = &step.portal
                && faults::split_port(p).is_none()
            {
                return Err(at(format!("portal {p:?} is not `traddr:trsvcid`")));
            }
            if let Some(w) = step.wwpn {
                let host = step
                    .host
                    .as_deref()
                    .or_else(|| scn.hosts.first().map(|h| h.name.as_str()))
                    .unwrap_or_default();
                let has = scn
                    .hosts
                    .iter()
                    .any(|h| h.name == host && h.hbas.iter().any(|b| b.wwpn == w));
                if !has {
                    return Err(at(format!("host `{host}` has no HBA {w}")));
                }
            }
        }
        if step.wwpn.is_some()
            && !matches!(
                step.fault.as_deref(),
                Some("hba-linkdown" | "hba-linkdown-later")
            )
        {
            return Err(at(
                "`wwpn` is only for `fault = \"hba-linkdown\"` or `\"hba-linkdown-later\"`".into(),
            ));
        }
        for v in &step.expect.violations {
            if !PROPERTIES.contains(&v.as_str()) {
                return Err(at(format!(
                    "unknown property `{v}` in expect.violations ({})",
                    PROPERTIES.join(", ")
                )));
            }
        }
        for r in step.expect.orphans.iter().flatten() {
            if !ORPHAN_REASONS.contains(&r.as_str()) {
                return Err(at(format!(
                    "unknown orphan reason `{r}` in expect.orphans ({})",
                    ORPHAN_REASONS.join(", ")
                )));
            }
        }
        if !step.expect.error_mentions.is_empty() && step.expect.error.is_none() {
            return Err(at("`expect.error_mentions` needs `expect.error`".into()));
        }
    }
    Ok(())
}

/// What `scn` needs from a target: its hosts and protocol, what its hosts and arrays imply,
/// its `[requires]` table, and the simulator for faults and truth-only expectations.
pub fn needs(scn: &Scenario) -> Vec<brick_harness::Need> {
    use brick_harness::Need;
    use schema::{Action as A, IdentityStyle, IqnStyle};
    let mut out = vec![
        Need::Protocol(scn.protocol.as_str().to_owned()),
        Need::Hosts(scn.hosts.len()),
    ];
    if scn.requires.multipath || scn.hosts.iter().any(|h| h.multipath) {
        out.push(Need::Multipath);
    }
    if scn.requires.shared_iqn
        || scn
            .arrays
            .iter()
            .any(|a| a.iqn == IqnStyle::Shared || a.subsystem == Some(IqnStyle::Shared))
    {
        out.push(Need::SharedIqn);
    }
    for h in &scn.hosts {
        for hba in &h.hbas {
            let why = if !hba.zoned {
                Some("is not zoned")
            } else if !hba.in_initiator_target_map {
                Some("is left out of the initiator-target map")
            } else if hba.port_state != schema::HbaState::Online {
                Some("starts with its link down")
            } else {
                None
            };
            if let Some(why) = why {
                out.push(Need::Simulator(format!(
                    "HBA {} of host `{}` {why}",
                    hba.wwpn, h.name
                )));
            }
        }
    }
    let same = scn
        .arrays
        .iter()
        .any(|a| a.identity == IdentityStyle::ReuseOnLun);
    let reuse = scn
        .requires
        .lun_reuse
        .map(|p| p.as_str())
        .or_else(|| same.then_some("same-identity"))
        .or_else(|| {
            scn.steps
                .iter()
                .any(|s| s.action == A::Reuse)
                .then_some("fresh")
        });
    if let Some(p) = reuse {
        out.push(Need::LunReuse(p.to_owned()));
    }
    if let Some(why) = &scn.requires.simulator {
        out.push(Need::Simulator(why.clone()));
    }
    for (i, s) in scn.steps.iter().enumerate() {
        if s.action == A::Fault {
            out.push(Need::Simulator(format!(
                "step {} injects fault `{}`",
                i + 1,
                s.fault.as_deref().unwrap_or_default()
            )));
        } else if s.array_name.is_some() {
            out.push(Need::Simulator(format!(
                "step {} names the volume on the array (`array_name`)",
                i + 1
            )));
        } else if !s.expect.violations.is_empty() {
            out.push(Need::Simulator(format!(
                "step {} expects violations only the simulator's truth shows",
                i + 1
            )));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"schema = 1
name = "t"
description = "d"

[[host]]
name = "compute-1"

[[array]]
name = "array-1"
portals = ["10.0.2.2:3260"]

[[step]]
action = "create"
volume = "A"
size_mib = 10
"#;

    fn err(text: &str) -> String {
        parse("cat/t.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn the_good_file_parses_and_validates() {
        let scn = parse("cat/t.toml", GOOD).unwrap();
        validate(&scn).unwrap();
        assert_eq!(scn.protocol, schema::ProtocolName::Iscsi);
        assert_eq!(scn.steps[0].size_mib, Some(10));
    }

    #[test]
    fn an_unknown_key_names_file_line_and_key() {
        let e = err(&GOOD.replace("size_mib = 10", "size_mb = 10"));
        assert!(e.starts_with("cat/t.toml:15:1: "), "{e}");
        assert!(e.contains("unknown field `size_mb`"), "{e}");
        assert!(
            e.contains("size_mib"),
            "the message lists the known keys: {e}"
        );
        let e = err(&GOOD.replace(
            "name = \"compute-1\"",
            "name = \"compute-1\"\nmultipth = true",
        ));
        assert!(e.starts_with("cat/t.toml:7:1: "), "{e}");
        assert!(e.contains("unknown field `multipth`"), "{e}");
    }

    #[test]
    fn a_missing_field_names_file_line_and_field() {
        let e = err(&GOOD.replace("description = \"d\"\n", ""));
        assert!(e.starts_with("cat/t.toml:1:1: "), "{e}");
        assert!(e.contains("missing field `description`"), "{e}");
        let e = err(&GOOD.replace("portals = [\"10.0.2.2:3260\"]\n", ""));
        assert!(e.contains("missing field `portals`"), "{e}");
        assert!(e.contains("array[0]"), "names the table: {e}");
        assert!(e.starts_with("cat/t.toml:8:"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_file_line_column_and_field() {
        let e = err(&GOOD.replace("size_mib = 10", "size_mib = \"big\""));
        assert!(e.starts_with("cat/t.toml:15:12: "), "{e}");
        assert!(e.contains("step[0].size_mib"), "{e}");
        assert!(e.contains("invalid type: string \"big\""), "{e}");
        let e = err(&GOOD.replace("action = \"create\"", "action = \"explode\""));
        assert!(e.starts_with("cat/t.toml:13:"), "{e}");
        assert!(e.contains("step[0].action") && e.contains("explode"), "{e}");
        let e = err(&GOOD
            .replace("protocol", "x")
            .replace("schema = 1\n", "schema = 1\nprotocol = \"iscsi-tcp\"\n"));
        assert!(e.contains("protocol") && e.contains("iscsi-tcp"), "{e}");
    }

    #[test]
    fn bad_toml_and_schema_versions_are_located() {
        let e = err(&GOOD.replace("volume = \"A\"", "volume = \"A"));
        assert!(e.starts_with("cat/t.toml:14:"), "{e}");
        let e = err(&GOOD.replace("schema = 1", "schema = 2"));
        assert!(
            e.starts_with("cat/t.toml:1:1: schema: 2 is not supported"),
            "{e}"
        );
    }

    #[test]
    fn references_are_validated() {
        let bad = |from: &str, to: &str| {
            let scn = parse("t", &GOOD.replace(from, to)).unwrap();
            validate(&scn).unwrap_err().to_string()
        };
        assert!(
            bad("volume = \"A\"\n", "volume = \"A\"\nhost = \"nope\"\n")
                .contains("unknown host `nope`")
        );
        assert!(bad("action = \"create\"", "action = \"migrate\"").contains("`from` and `to`"));
        assert!(bad("action = \"create\"", "action = \"reuse\"").contains("`of`"));
        assert!(
            bad("size_mib = 10", "expect = { violations = [\"leak\"] }")
                .contains("unknown property `leak`")
        );
        assert!(
            bad("size_mib = 10", "expect = { orphans = [\"ghost\"] }")
                .contains("unknown orphan reason")
        );
        assert!(
            bad(
                "action = \"create\"\nvolume = \"A\"",
                "action = \"fault\"\nfault = \"meteor\""
            )
            .contains("unknown fault `meteor`")
        );
    }

    #[test]
    fn needs_follow_from_hosts_arrays_steps_and_requires() {
        use brick_harness::Need;
        let builtin = builtin().unwrap();
        let by = |n: &str| builtin.iter().find(|s| s.name == n).unwrap();
        let n = needs(by("iscsi-live-migration"));
        assert!(
            n.contains(&Need::Hosts(2)) && n.contains(&Need::SharedIqn),
            "{n:?}"
        );
        let n = needs(by("iscsi-multipath-path-down-detach"));
        assert!(n.contains(&Need::Multipath), "{n:?}");
        assert!(
            n.iter()
                .any(|x| matches!(x, Need::Simulator(w) if w.contains("path-down"))),
            "{n:?}"
        );
        let n = needs(by("iscsi-lun-reuse-same-identity"));
        assert!(n.contains(&Need::LunReuse("same-identity".into())), "{n:?}");
        let n = needs(by("iscsi-single-attach-detach"));
        assert_eq!(n, vec![Need::Protocol("iscsi".into()), Need::Hosts(1)]);
    }

    const FC: &str = r#"schema = 1
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
fault = "hba-linkdown"
wwpn = "21000024FF7C0001"
"#;

    const NVME: &str = r#"schema = 1
name = "t"
description = "d"
protocol = "nvmeof"

[[host]]
name = "compute-1"
nvme = { native_multipath = false }

[[array]]
name = "array-1"
nvme_ports = [{ traddr = "10.0.0.1" }]
subsystem = "shared"

[[step]]
action = "fault"
fault = "nvme-port-down"
portal = "10.0.0.1:4420"
"#;

    #[test]
    fn fc_and_nvme_files_parse_with_their_defaults() {
        let scn = parse("t", FC).unwrap();
        validate(&scn).unwrap();
        let hba = &scn.hosts[0].hbas[0];
        assert_eq!(hba.wwpn, schema::Wwpn(0x2100_0024_ff7c_0001));
        assert!(hba.zoned && hba.in_initiator_target_map);
        assert_eq!(hba.port_state, schema::HbaState::Online);
        assert_eq!(scn.arrays[0].fc_ports[0].wwpn.0, 0x5006_0160_9020_3181);
        assert_eq!(scn.steps[0].wwpn, Some(schema::Wwpn(0x2100_0024_ff7c_0001)));

        let scn = parse("t", NVME).unwrap();
        validate(&scn).unwrap();
        let n = scn.hosts[0].nvme.clone().unwrap();
        assert!(!n.native_multipath && n.src_addr && n.host_nqn.is_none());
        let p = &scn.arrays[0].nvme_ports[0];
        assert_eq!(
            (p.trsvcid, p.transport),
            (4420, schema::NvmeTransportName::Tcp)
        );
        assert!(needs(&scn).contains(&brick_harness::Need::SharedIqn));
        assert!(
            needs(&scn).iter().all(|n| match n {
                brick_harness::Need::Simulator(why) => why.contains("injects fault"),
                _ => true,
            }),
            "only the fault step needs the simulator, not NVMe-oF itself: {:?}",
            needs(&scn)
        );
        assert!(needs(&scn).contains(&brick_harness::Need::Protocol("nvmeof".into())));
    }

    #[test]
    fn wwpns_accept_the_usual_spellings_only() {
        for ok in [
            "50:06:01:60:90:20:31:81",
            "0x5006016090203181",
            "5006016090203181",
            "50:06:01:60:90:20:31:81".to_uppercase().as_str(),
        ] {
            assert_eq!(
                schema::Wwpn::parse(ok),
                Some(schema::Wwpn(0x5006_0160_9020_3181)),
                "{ok}"
            );
        }
        for bad in [
            "",
            "0x",
            "500601609020318",
            "50:06:01:60:90:20:31",
            "5006:0160:9020:3181",
            "zz06016090203181",
            "0x50060160902031810",
        ] {
            assert_eq!(schema::Wwpn::parse(bad), None, "{bad}");
        }
        let e = err(&FC.replace("0x5006016090203181", "0x5006"));
        assert!(e.starts_with("cat/t.toml:16:"), "{e}");
        assert!(
            e.contains("array[0].fc_ports[0].wwpn") && e.contains("invalid WWPN"),
            "{e}"
        );
    }

    #[test]
    fn protocol_keys_are_required_and_refused_with_a_location() {
        // FC array without target ports: the error points at its [[array]] header.
        let e = err(&FC.replace(
            "fc_ports = [{ wwpn = \"0x5006016090203181\", fabric = \"a\" }]",
            "",
        ));
        assert!(
            e.starts_with("cat/t.toml:14:1: array[0]: missing field `fc_ports`"),
            "{e}"
        );
        // FC host without an HBA.
        let no_hba = FC.replace(
            "[[host.hba]]\nwwpn = \"21:00:00:24:ff:7c:00:01\"\nfabric = \"a\"\npci = \"0000:05:00.2\"\n",
            "",
        );
        let e = err(&no_hba.replace("wwpn = \"21000024FF7C0001\"\n", ""));
        assert!(
            e.starts_with("cat/t.toml:6:1: host[0]: missing `[[host.hba]]`"),
            "{e}"
        );
        // iSCSI portals on an NVMe array, NVMe keys on an iSCSI array, HBAs on an NVMe host.
        let e = err(&NVME.replace("subsystem = \"shared\"", "portals = [\"10.0.2.2:3260\"]"));
        assert!(e.contains("array[0]: `portals` is for iSCSI"), "{e}");
        let e = err(&GOOD.replace("[[step]]", "subsystem = \"shared\"\n\n[[step]]"));
        assert!(e.starts_with("cat/t.toml:8:1: array[0]: `subsystem"), "{e}");
        let e = err(&NVME.replace(
            "nvme = { native_multipath = false }",
            "[[host.hba]]\nwwpn = \"0x21000024ff7c0001\"\nfabric = \"a\"\npci = \"0000:05:00.2\"",
        ));
        assert!(e.contains("host[0]: `hba` is for FC"), "{e}");
        // Unknown keys inside the new tables are still refused.
        let e = err(&FC.replace("pci = \"0000:05:00.2\"", "pci = \"0000:05:00.2\"\nslot = 3"));
        assert!(
            e.contains("unknown field `slot`") && e.contains("host[0].hba[0]"),
            "{e}"
        );
        let e = err(&NVME.replace("native_multipath = false", "native_multipth = false"));
        assert!(e.contains("unknown field `native_multipth`"), "{e}");
    }

    #[test]
    fn faults_belong_to_their_protocol() {
        let scn = parse(
            "t",
            &GOOD.replace(
                "action = \"create\"\nvolume = \"A\"",
                "action = \"fault\"\nfault = \"hba-linkdown\"",
            ),
        )
        .unwrap();
        let e = validate(&scn).unwrap_err().to_string();
        assert!(e.contains("`hba-linkdown` is for protocol fc"), "{e}");
        let scn = parse("t", &FC.replace("21000024FF7C0001", "21000024FF7C0009")).unwrap();
        let e = validate(&scn).unwrap_err().to_string();
        assert!(e.contains("has no HBA 0x21000024ff7c0009"), "{e}");
        let scn = parse("t", &NVME.replace("10.0.0.1:4420", "10.0.0.1")).unwrap();
        let e = validate(&scn).unwrap_err().to_string();
        assert!(e.contains("not `traddr:trsvcid`"), "{e}");
        let scn = parse(
            "t",
            &NVME.replace(
                "fault = \"nvme-port-down\"\nportal = \"10.0.0.1:4420\"",
                "fault = \"namespace-appears\"",
            ),
        )
        .unwrap();
        let e = validate(&scn).unwrap_err().to_string();
        assert!(e.contains("`namespace-appears` needs `volume`"), "{e}");
    }

    #[test]
    fn hba_linkdown_later_takes_a_wwpn_and_needs_a_delay() {
        let later = FC.replace("fault = \"hba-linkdown\"", "fault = \"hba-linkdown-later\"");
        let e = validate(&parse("t", &later).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("`hba-linkdown-later` needs `delay_ms`"), "{e}");
        let scn = parse(
            "t",
            &later.replace(
                "wwpn = \"21000024FF7C0001\"",
                "wwpn = \"21000024FF7C0001\"\ndelay_ms = 500",
            ),
        )
        .unwrap();
        validate(&scn).unwrap();
        assert_eq!(scn.steps[0].delay_ms, Some(500));
        // On an iSCSI scenario it is refused like every FC fault.
        let scn = parse(
            "t",
            &GOOD.replace(
                "action = \"create\"\nvolume = \"A\"",
                "action = \"fault\"\nfault = \"hba-linkdown-later\"\ndelay_ms = 5",
            ),
        )
        .unwrap();
        let e = validate(&scn).unwrap_err().to_string();
        assert!(e.contains("is for protocol fc"), "{e}");
    }

    #[test]
    fn identity_style_is_for_iscsi_and_tgt_needs_reuse_on_lun() {
        let tgt = GOOD.replace(
            "portals = [\"10.0.2.2:3260\"]",
            "portals = [\"10.0.2.2:3260\"]\nidentity = \"reuse-on-lun\"\nidentity_style = \"tgt\"",
        );
        let scn = parse("t", &tgt).unwrap();
        assert_eq!(scn.arrays[0].identity_style, Some(schema::LunIdStyle::Tgt));
        assert_eq!(parse("t", GOOD).unwrap().arrays[0].identity_style, None);
        let e = err(&tgt.replace("identity = \"reuse-on-lun\"\n", ""));
        assert!(
            e.starts_with("cat/t.toml:8:1: array[0]: `identity_style = \"tgt\"`")
                && e.contains("needs `identity = \"reuse-on-lun\"`"),
            "{e}"
        );
        let e = err(&tgt.replace("\"tgt\"", "\"scst\""));
        assert!(e.contains("unknown variant `scst`"), "{e}");
        let e = err(&FC.replace("fc_ports = [", "identity_style = \"lio\"\nfc_ports = ["));
        assert!(e.contains("array[0]: `identity_style` is for iSCSI"), "{e}");
    }

    #[test]
    fn simulator_only_fabric_settings_are_needs() {
        use brick_harness::Need;
        let text = FC.replace(
            "pci = \"0000:05:00.2\"",
            "pci = \"0000:05:00.2\"\nzoned = false",
        );
        let n = needs(&parse("t", &text).unwrap());
        assert!(
            n.iter()
                .any(|x| matches!(x, Need::Simulator(w) if w.contains("is not zoned"))),
            "{n:?}"
        );
        let builtin = builtin().unwrap();
        let by = |n: &str| builtin.iter().find(|s| s.name == n).unwrap();
        let n = needs(by("fc-single-attach-detach"));
        assert_eq!(n, vec![Need::Protocol("fc".into()), Need::Hosts(1)]);
        let n = needs(by("nvmeof-single-attach-detach"));
        assert_eq!(n, vec![Need::Protocol("nvmeof".into()), Need::Hosts(1),]);
    }

    #[test]
    fn the_builtin_catalogue_is_valid_and_large_enough() {
        let all = builtin().unwrap();
        assert!(all.len() >= 15, "{}", all.len());
        let mut names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        for s in &all {
            validate(s).unwrap();
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "scenario names are unique");
        for proto in [
            schema::ProtocolName::Iscsi,
            schema::ProtocolName::Fc,
            schema::ProtocolName::Nvmeof,
        ] {
            let n = all.iter().filter(|s| s.protocol == proto).count();
            assert!(n >= 3, "{} has {n} scenarios", proto.as_str());
        }
        for (file, _) in BUILTIN {
            let scn = all.iter().find(|s| format!("{}.toml", s.name) == *file);
            assert!(scn.is_some(), "{file}: the name is the file name");
        }
    }
}
