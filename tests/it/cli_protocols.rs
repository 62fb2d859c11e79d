//! `brick paths`, `brick volumes` and `brick search-path` for FC, NVMe-oF and local volumes,
//! on host trees built by a [`Lab`] under a known directory (or by hand for `local`).

use std::path::Path;
use std::process::{Command, Output};

use brick_connectors::DisconnectOptions;
use brick_harness::{Lab, LabHostSpec};
use brick_sim_target::{ArraySpec, FcHbaSpec, FcTargetPort, NvmePort};
use serde_json::{Value, json};

const HOST: &str = "compute-1";

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

/// `brick` with these arguments must succeed; its stdout as JSON.
fn brick_json(args: &[&str]) -> Value {
    let o = brick(args);
    assert!(
        o.status.success(),
        "brick {args:?} failed: {}",
        text(&o.stderr)
    );
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("brick {args:?}: not JSON ({e}): {}", text(&o.stdout)))
}

fn write_json(dir: &Path, name: &str, v: &Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, v.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `brick paths --json` as `(path, device, wwid)` triples.
fn brick_paths(root: &Path, props: &str, extra: &[&str]) -> Vec<(String, String, String)> {
    let mut args = vec![
        "paths",
        "--root",
        root.to_str().unwrap(),
        "--props",
        props,
        "--json",
    ];
    args.extend_from_slice(extra);
    brick_json(&args)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            (s("path"), s("device"), s("wwid"))
        })
        .collect()
}

/// What the lab's connector reports for `volume`, in the same form.
fn lab_paths(lab: &Lab, volume: &str) -> Vec<(String, String, String)> {
    lab.volume_paths(volume, HOST)
        .unwrap()
        .paths
        .iter()
        .map(|p| {
            (
                p.path.as_str().to_owned(),
                p.device
                    .as_ref()
                    .map(|d| d.as_str().to_owned())
                    .unwrap_or_default(),
                p.wwid
                    .as_ref()
                    .map(|w| w.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn wwid(lab: &Lab, volume: &str) -> String {
    let id = lab.volume_id(volume).unwrap();
    brick_harness::simhost::lock(lab.world())
        .volume_record(id)
        .unwrap()
        .wwid
        .clone()
}

fn volumes(root: &Path, protocol: &str) -> Vec<String> {
    serde_json::from_value(brick_json(&[
        "volumes",
        "--root",
        root.to_str().unwrap(),
        "--protocol",
        protocol,
        "--json",
    ]))
    .unwrap()
}

#[test]
fn fc_paths_and_volumes_on_a_lab_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut lab = Lab::new(3);
    let mut spec = LabHostSpec::multipath(HOST);
    spec.sim = spec
        .sim
        .with_fc_hba(FcHbaSpec::new(0x2100_0024_ff7c_0001, "a", "0000:05:00.2"))
        .with_fc_hba(FcHbaSpec::new(0x2100_0024_ff7c_0002, "b", "0000:05:00.3"));
    lab.add_host_at(spec, &root).unwrap();
    let ports = vec![
        FcTargetPort::new(0x5006_0160_9020_3181, "a"),
        FcTargetPort::new(0x5006_0161_9020_3181, "b"),
    ];
    lab.add_array(ArraySpec::fc("array-1", ports)).unwrap();
    lab.zone(HOST, "array-1").unwrap();
    lab.create_volume("A", "array-1", 1 << 30).unwrap();
    lab.map("A", HOST).unwrap();
    let props = lab.props_json("A", HOST).unwrap();
    let wrapped = write_json(dir.path(), "a.json", &props);
    let bare = write_json(dir.path(), "a-data.json", &props["data"]);

    assert!(
        brick_paths(&root, &wrapped, &[]).is_empty(),
        "not attached yet"
    );
    lab.attach("A", HOST).unwrap();
    lab.settle().unwrap();
    let expected = lab_paths(&lab, "A");
    assert_eq!(expected.len(), 2, "{expected:?}");
    assert!(
        expected
            .iter()
            .all(|(_, dev, w)| dev.starts_with("/dev/sd") && *w == wwid(&lab, "A"))
    );
    assert_eq!(brick_paths(&root, &wrapped, &["--multipath"]), expected);
    // Bare `data` needs --protocol fc.
    assert_eq!(brick_paths(&root, &bare, &["--protocol", "fc"]), expected);
    let o = brick(&["paths", "--root", root.to_str().unwrap(), "--props", &bare]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "no protocol, no wrapper: {}",
        text(&o.stderr)
    );

    let mut listed = volumes(&root, "fc");
    listed.sort();
    let mut want: Vec<String> = expected.iter().map(|(p, _, _)| p.clone()).collect();
    want.sort();
    assert_eq!(listed, want);
    let o = brick(&["search-path", "--protocol", "fc"]);
    assert_eq!(text(&o.stdout).trim(), "/dev/disk/by-path");

    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    lab.settle().unwrap();
    assert!(brick_paths(&root, &wrapped, &[]).is_empty());
    assert!(volumes(&root, "fc").is_empty());
}

#[test]
fn nvmeof_paths_and_volumes_on_a_lab_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut lab = Lab::new(3);
    let mut spec = LabHostSpec::multipath(HOST);
    spec.sim = spec.sim.with_nvme();
    lab.add_host_at(spec, &root).unwrap();
    let ports = vec![
        NvmePort::tcp("10.0.0.1", 4420),
        NvmePort::tcp("10.0.1.1", 4420),
    ];
    lab.add_array(ArraySpec::nvme("array-1", ports)).unwrap();
    lab.create_volume("A", "array-1", 1 << 30).unwrap();
    lab.map("A", HOST).unwrap();
    let props = lab.props_json("A", HOST).unwrap();
    let wrapped = write_json(dir.path(), "a.json", &props);
    let bare = write_json(dir.path(), "a-data.json", &props["data"]);

    assert!(brick_paths(&root, &wrapped, &[]).is_empty());
    lab.attach("A", HOST).unwrap();
    lab.settle().unwrap();
    let expected = vec![(
        "/dev/nvme0n1".to_owned(),
        "/dev/nvme0n1".to_owned(),
        wwid(&lab, "A"),
    )];
    assert_eq!(lab_paths(&lab, "A"), expected);
    assert_eq!(brick_paths(&root, &wrapped, &[]), expected);
    assert_eq!(
        brick_paths(&root, &bare, &["--protocol", "nvmeof"]),
        expected
    );
    // Only the head: the hidden per-controller nodes are not volumes.
    assert!(root.join("sys/block/nvme0c0n1").exists());
    assert_eq!(volumes(&root, "nvmeof"), ["/dev/nvme0n1"]);
    let o = brick(&["search-path", "--protocol", "nvmeof"]);
    assert_eq!(text(&o.stdout).trim(), "/dev");

    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    lab.settle().unwrap();
    assert!(brick_paths(&root, &wrapped, &[]).is_empty());
    assert!(volumes(&root, "nvmeof").is_empty());
}

/// A root with one attached loop device, as the kernel shows it.
fn loop_root(root: &Path) {
    let dev = root.join("sys/devices/virtual/block/loop0");
    std::fs::create_dir_all(dev.join("loop")).unwrap();
    std::fs::write(dev.join("loop/backing_file"), "/var/lib/brick/vol-a.img\n").unwrap();
    std::fs::write(dev.join("size"), "65536\n").unwrap();
    for (link, target) in [
        ("sys/class/block/loop0", "../../devices/virtual/block/loop0"),
        ("sys/block/loop0", "../devices/virtual/block/loop0"),
    ] {
        let l = root.join(link);
        std::fs::create_dir_all(l.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, l).unwrap();
    }
    std::fs::create_dir_all(root.join("dev")).unwrap();
    std::fs::write(root.join("dev/loop0"), "").unwrap();
}

#[test]
fn local_paths_on_a_handmade_loop_device_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    loop_root(&root);
    let bare = write_json(dir.path(), "p.json", &json!({"device_path": "/dev/loop0"}));
    let got = brick_paths(&root, &bare, &["--protocol", "local"]);
    assert_eq!(
        got,
        [(
            "/dev/loop0".to_owned(),
            "/dev/loop0".to_owned(),
            "loop:%2Fvar%2Flib%2Fbrick%2Fvol-a.img".to_owned()
        )]
    );
    let wrapped = write_json(
        dir.path(),
        "w.json",
        &json!({"driver_volume_type": "local", "data": {"device_path": "/dev/loop0"}}),
    );
    assert_eq!(brick_paths(&root, &wrapped, &[]), got);
    // A device that is not there has no path; one outside /dev is refused, never followed.
    let missing = write_json(dir.path(), "m.json", &json!({"device_path": "/dev/loop7"}));
    assert!(brick_paths(&root, &missing, &["--protocol", "local"]).is_empty());
    std::os::unix::fs::symlink("../sys/block/loop0/size", root.join("dev/evil")).unwrap();
    let evil = write_json(dir.path(), "e.json", &json!({"device_path": "/dev/evil"}));
    let o = brick(&[
        "paths",
        "--root",
        root.to_str().unwrap(),
        "--props",
        &evil,
        "--protocol",
        "local",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), "[]");
    assert!(text(&o.stderr).contains("/dev/evil"), "{}", text(&o.stderr));
    // The local connector has no search path and lists nothing.
    assert!(volumes(&root, "local").is_empty());
    let o = brick(&["search-path", "--protocol", "local"]);
    assert!(o.status.success());
    assert_eq!(text(&o.stdout).trim(), "");
}
