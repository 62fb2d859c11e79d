//! The `brick` binary, run as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn brick(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brick"))
        .args(args)
        .env("BRICK_LOG", "off")
        .output()
        .expect("the brick binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn materialize(name: &str, out: &Path) -> serde_json::Value {
    let o = brick(&["sim", "materialize", name, "--out", out.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "materialize {name} failed: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let volumes = std::fs::read_to_string(out.join("volumes.json")).unwrap();
    serde_json::from_str(&volumes).unwrap()
}

/// Writes the properties of `volume` for `host` from volumes.json to a file.
fn props_file(volumes: &serde_json::Value, volume: &str, host: &str, dir: &Path) -> String {
    let v = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == volume)
        .unwrap_or_else(|| panic!("no volume {volume} in {volumes}"));
    let props = &v["connection_properties"][host];
    assert!(
        props.is_object(),
        "no properties for {volume} on {host}: {v}"
    );
    let path = dir.join(format!("{volume}.json"));
    std::fs::write(&path, props.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn check_runs_every_builtin_scenario_and_passes() {
    let o = brick(&["check"]);
    let out = text(&o.stdout);
    assert!(
        o.status.success(),
        "brick check failed:\n{out}\n{}",
        text(&o.stderr)
    );
    assert!(out.contains("iscsi-leaked-detach"), "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn paths_on_a_materialized_leaked_detach_show_the_old_identity() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = materialize("iscsi-leaked-detach", dir.path());
    let root = dir.path().join("root");
    let props = props_file(&volumes, "B", "compute-1", dir.path());
    let o = brick(&[
        "paths",
        "--root",
        root.to_str().unwrap(),
        "--props",
        &props,
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let paths: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let paths = paths.as_array().unwrap();
    assert_eq!(paths.len(), 1, "{paths:?}");
    let path = paths[0]["path"].as_str().unwrap();
    assert!(
        path.starts_with("/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-"),
        "{path}"
    );
    assert!(
        !path.contains(root.to_str().unwrap()),
        "host paths are not prefixed by the root"
    );
    assert_eq!(volumes[0]["name"], "A");
    assert_eq!(volumes[0]["exists"], false, "A was deleted on the array");
    let a_wwid = volumes[0]["wwid"].as_str().unwrap();
    let b_wwid = volumes[1]["wwid"].as_str().unwrap();
    assert_ne!(a_wwid, b_wwid);
    // B's properties lead to a path whose device still carries A's identity: the leak is visible.
    assert_eq!(paths[0]["wwid"].as_str().unwrap(), a_wwid, "{paths:?}");
    assert_eq!(
        paths[0]["device"].as_str().unwrap(),
        "/dev/sda",
        "{paths:?}"
    );
}

#[test]
fn paths_plain_output_lists_host_paths_for_single_and_multipath() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = materialize("iscsi-shared-target", dir.path());
    let root = dir.path().join("root");
    // After the scenario both volumes are detached: no paths at all.
    let props = props_file(&volumes, "B", "compute-1", dir.path());
    let o = brick(&["paths", "--root", root.to_str().unwrap(), "--props", &props]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "", "a detached volume has no paths");
}

#[test]
fn volumes_and_search_path_report_the_by_path_directory() {
    let o = brick(&["search-path", "--protocol", "iscsi"]);
    assert!(o.status.success());
    assert_eq!(text(&o.stdout).trim(), "/dev/disk/by-path");
    let dir = tempfile::tempdir().unwrap();
    materialize("iscsi-leaked-detach", dir.path());
    let root = dir.path().join("root");
    let o = brick(&[
        "volumes",
        "--root",
        root.to_str().unwrap(),
        "--protocol",
        "iscsi",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let list: Vec<String> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert!(list[0].starts_with("/dev/disk/by-path/"), "{list:?}");
}

#[test]
fn bad_input_gets_a_clear_error_and_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let props = dir.path().join("p.json");
    std::fs::write(
        &props,
        r#"{"driver_volume_type":"iscsi","data":{"target_portal":"10.0.2.2:3260","target_iqn":"iqn.2010-10.org.openstack:../../etc","target_lun":1}}"#,
    )
    .unwrap();
    let o = brick(&[
        "paths",
        "--root",
        missing.to_str().unwrap(),
        "--props",
        props.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("cannot be read"),
        "{}",
        text(&o.stderr)
    );

    let o = brick(&[
        "paths",
        "--root",
        dir.path().to_str().unwrap(),
        "--props",
        props.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("target_iqn"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&props, "{not json").unwrap();
    let o = brick(&[
        "paths",
        "--root",
        dir.path().to_str().unwrap(),
        "--props",
        props.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("not valid JSON"),
        "{}",
        text(&o.stderr)
    );

    let o = brick(&[
        "sim",
        "materialize",
        "no-such-scenario",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o.stderr).contains("neither a scenario file"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn bench_prints_median_best_and_whole_run_figures() {
    // A tiny run: the figures themselves are for `brick bench` on a quiet machine, not for
    // assertions; the format is what scripts and the issue's notes read.
    let o = brick(&["bench", "--cycles", "10", "--cases", "2"]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", text(&o.stderr));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("single-path iSCSI attach+detach:"),
        "{out}"
    );
    assert!(
        lines[0].contains("cycles/s median of 5 batches (best "),
        "{out}"
    );
    assert!(
        lines[0].contains("whole run") && lines[0].contains(": 10 cycles in"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("multipath iSCSI attach+detach:"),
        "{out}"
    );
    assert!(
        lines[1].contains("median of 2 batches") && lines[1].contains(": 2 cycles in"),
        "{out}"
    );
    assert!(lines[2].contains("cases/s (2 cases in"), "{out}");
}

#[test]
fn a_closed_output_pipe_ends_the_listing_quietly() {
    // `brick sim list | head -1`: the reader has gone before brick writes.
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_brick"))
        .args(["sim", "list"])
        .env("BRICK_LOG", "off")
        .stdout(writer)
        .output()
        .expect("the brick binary runs");
    let err = text(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.is_empty(), "{err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}
