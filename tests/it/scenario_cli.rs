//! `brick scenario run` and `brick sim array`, run as a user runs them; the exec tier end to
//! end: a `target.toml` whose commands drive a simulated array through the `brick` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn brick_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brick"))
        .args(args)
        .current_dir(dir)
        .env("BRICK_LOG", "off")
        .env_remove("BRICK_TARGET")
        .output()
        .expect("the brick binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn catalogue(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios/catalogue")
        .join(format!("{name}.toml"))
        .display()
        .to_string()
}

/// A state file and a target.toml driving it through `brick sim array`.
fn exec_target(dir: &Path) -> PathBuf {
    let o = brick_in(
        dir,
        &[
            "sim",
            "array",
            "--state",
            "array.jsonl",
            "init",
            "--shared-iqn",
            "iqn.2010-10.org.openstack:shared",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let b = env!("CARGO_BIN_EXE_brick");
    let arr = format!("'{b}' sim array --state array.jsonl");
    let toml = format!(
        r#"schema = 1
name = "sim-through-shell"
volume_prefix = "ci-"

[capabilities]
shared_iqn = true
lun_reuse = "fresh"

[commands]
create = "{arr} create {{volume}} --size-bytes {{size_bytes}}"
map = "{arr} map {{volume}} --initiator {{initiator_iqn}}"
unmap = "{arr} unmap {{volume}} --initiator {{initiator_iqn}}"
delete = "{arr} delete {{volume}}"
identity = "{arr} identity {{volume}}"
props = "{arr} props {{volume}} --initiator {{initiator_iqn}}"

[host]
kind = "simulated"
state = "array.jsonl"
"#
    );
    let path = dir.join("target.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[test]
fn exec_tier_runs_scenarios_through_shell_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exec_target(tmp.path());
    let junit = tmp.path().join("junit.xml");
    let o = brick_in(
        tmp.path(),
        &[
            "scenario",
            "run",
            &catalogue("iscsi-single-attach-detach"),
            &catalogue("iscsi-shared-target"),
            &catalogue("iscsi-lun-reuse"),
            &catalogue("iscsi-multipath-path-down-detach"),
            "--target",
            target.to_str().unwrap(),
            "--json",
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["target"], "exec:sim-through-shell", "{summary}");
    assert_eq!(summary["passed"], 3, "{summary}");
    assert_eq!(summary["skipped"], 1, "{summary}");
    let skipped = summary["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["verdict"] == "skip")
        .unwrap();
    assert!(
        skipped["detail"].as_str().unwrap().contains("multipath"),
        "{skipped}"
    );
    // The array side went through the commands: the journal holds every operation, with
    // the prefixed names, and the cleanup deleted what the scenarios left.
    let journal = std::fs::read_to_string(tmp.path().join("array.jsonl")).unwrap();
    for needle in [
        r#""op":"create","volume":"ci-iscsi-single-attach-detach-A""#,
        r#""op":"map","volume":"ci-iscsi-shared-target-B""#,
        r#""op":"unmap""#,
        r#""op":"delete","volume":"ci-iscsi-lun-reuse-A""#,
    ] {
        assert!(journal.contains(needle), "{needle} not in\n{journal}");
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"tests="4" failures="0" errors="0" skipped="1""#),
        "{xml}"
    );
}

#[test]
fn exec_tier_failures_carry_the_connector_log_and_a_replay_command() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exec_target(tmp.path());
    // A scenario whose expectation is wrong on purpose: it must fail, with a report.
    let scn = std::fs::read_to_string(catalogue("iscsi-single-attach-detach"))
        .unwrap()
        .replace(
            "expect = { paths = 1, identity = \"A\" }",
            "expect = { paths = 3 }",
        );
    let file = tmp.path().join("wrong.toml");
    std::fs::write(&file, scn).unwrap();
    let o = brick_in(
        tmp.path(),
        &[
            "scenario",
            "run",
            file.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("expected 3 path(s), the connector reported 1"),
        "{out}"
    );
    assert!(out.contains("connector log on compute-1"), "{out}");
    assert!(
        out.contains("array map: "),
        "the array commands are in the log: {out}"
    );
    assert!(out.contains("iscsiadm -m node"), "{out}");
    assert!(
        out.contains(&format!(
            "replay: brick scenario run {} --target",
            file.display()
        )),
        "{out}"
    );
}

#[test]
fn hostile_volume_names_cannot_inject_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let target = exec_target(tmp.path());
    let hostile = "A';touch${IFS}PWNED;'$(touch${IFS}PWNED2)";
    let scn = format!(
        r#"schema = 1
name = "hostile"
description = "a volume name full of shell syntax"

[[host]]
name = "compute-1"

[[array]]
name = "a"
portals = ["10.0.2.2:3260"]
iqn = "shared"

[[step]]
action = "create"
volume = "{hostile}"

[[step]]
action = "map"
volume = "{hostile}"

[[step]]
action = "attach"
volume = "{hostile}"
expect = {{ identity = "{hostile}" }}

[[step]]
action = "detach"
volume = "{hostile}"
expect = {{ clean = true }}
"#,
        hostile = hostile.replace('\\', "\\\\")
    );
    let file = tmp.path().join("hostile.toml");
    std::fs::write(&file, scn).unwrap();
    let o = brick_in(
        tmp.path(),
        &[
            "scenario",
            "run",
            file.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(!tmp.path().join("PWNED").exists());
    assert!(!tmp.path().join("PWNED2").exists());
    let journal = std::fs::read_to_string(tmp.path().join("array.jsonl")).unwrap();
    let name = serde_json::to_string(&format!("ci-hostile-{hostile}")).unwrap();
    assert!(journal.contains(&name), "{name} not in\n{journal}");
}

#[test]
fn a_dropped_in_scenario_runs_without_a_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mine");
    std::fs::create_dir_all(&dir).unwrap();
    let text_in = std::fs::read_to_string(catalogue("iscsi-detach-twice"))
        .unwrap()
        .replace(
            "name = \"iscsi-detach-twice\"",
            "name = \"my-new-scenario\"",
        );
    std::fs::write(dir.join("my-new-scenario.toml"), text_in).unwrap();
    let o = brick_in(tmp.path(), &["scenario", "run", dir.to_str().unwrap()]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("my-new-scenario"), "{out}");
    assert!(out.contains("1 passed, 0 failed"), "{out}");
}

#[test]
fn a_broken_scenario_file_is_reported_with_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let text_in = std::fs::read_to_string(catalogue("iscsi-detach-twice"))
        .unwrap()
        .replace(
            "action = \"map\"\nvolume = \"A\"",
            "action = \"map\"\nvolume = \"A\"\nhots = \"compute-1\"",
        );
    let file = tmp.path().join("typo.toml");
    std::fs::write(&file, text_in).unwrap();
    let o = brick_in(
        tmp.path(),
        &["scenario", "run", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = &summary["scenarios"][0];
    assert_eq!(row["verdict"], "error", "{summary}");
    let detail = row["detail"].as_str().unwrap();
    assert!(detail.contains("typo.toml:"), "{detail}");
    assert!(detail.contains("unknown field `hots`"), "{detail}");
}
