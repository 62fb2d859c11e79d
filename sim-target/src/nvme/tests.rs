//! NVMe-oF tests: the captured layout (`nvme-tcp-*.txt`, `nvme-after-delete*.txt`), numbering,
//! namespace reuse, multipath off, the `nvme` CLI and the faults.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::capture::{Capture, Content, Entry};
use crate::*;

const NQN: &str = "nqn.nvme-subsystem-1-4a1f6c2e-8d3b-4f7a-9c5e-2b6d8e0f1a3c";
const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:5b4e7a52-6f1c-4a1e-9d4b-1a2b3c4d5e6f";
const HOSTID: &str = "5b4e7a52-6f1c-4a1e-9d4b-1a2b3c4d5e6f";
const CAP_UUID: &str = "50d85148-5f1d-4d77-9584-21f54a7af531";
const CAP_SERIAL: &str = "4f3fdfdb7314e725fe24";

fn run(w: &mut World, h: HostId, args: &[&str]) -> ExecOutput {
    let argv: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    w.exec(h, &argv, None)
}

fn read(t: &Tree, path: &str) -> Option<String> {
    let real = t.resolve(path)?;
    t.read(&real)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn link(t: &Tree, path: &str) -> Option<String> {
    match t.get(path) {
        Some(Node::Link { target }) => Some(target.clone()),
        _ => None,
    }
}

fn load(name: &str) -> Capture {
    let dir = std::env::var_os("BRICK_REAL_KERNEL_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/real-kernel"),
        PathBuf::from,
    );
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    Capture::parse(&text).unwrap()
}

/// The capture's guest: host NQN/ID from `/etc/nvme`, source address 127.0.0.1, an nvmet
/// array with one subsystem on ports 4420 and 4421 and a 64 MiB namespace 1 (uuid only).
fn guest(multipath: bool) -> (World, HostId, ArrayId, VolumeId) {
    let mut w = World::new(11);
    let mut spec = HostSpec::new("simguest01").with_nvme();
    spec.ip = "127.0.0.1".to_owned();
    if let Some(n) = spec.nvme.as_mut() {
        n.hostnqn = HOSTNQN.to_owned();
        n.hostid = HOSTID.to_owned();
        n.native_multipath = multipath;
    }
    let h = w.add_host(spec);
    let mut a = ArraySpec::nvme(
        "nvmet",
        vec![
            NvmePort::tcp("127.0.0.1", 4420),
            NvmePort::tcp("127.0.0.1", 4421),
        ],
    );
    a.iqn_mode = IqnMode::Shared {
        iqn: NQN.to_owned(),
    };
    if let ArrayTransport::Nvme(n) = &mut a.transport {
        n.nguid = false;
    }
    let a = w.add_array(a);
    let v = w.create_volume(a, "ns1", 64 << 20).unwrap();
    assert_eq!(w.map_volume(v, h).unwrap().lun, 1);
    (w, h, a, v)
}

fn connect(w: &mut World, h: HostId, port: u16) -> ExecOutput {
    let p = port.to_string();
    let out = run(
        w,
        h,
        &[
            "nvme",
            "connect",
            "-t",
            "tcp",
            "-a",
            "127.0.0.1",
            "-s",
            &p,
            "-n",
            NQN,
        ],
    );
    w.settle();
    out
}

/// The sim's serial and uuid, to put in place of the capture's.
fn ids(w: &World, h: HostId, v: VolumeId) -> (String, String) {
    let uuid = w
        .volume_record(v)
        .unwrap()
        .wwid
        .trim_start_matches("uuid.")
        .to_owned();
    let t = w.tree(h);
    let serial = read(&t, "/sys/class/nvme-subsystem/nvme-subsys0/serial")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    (serial, uuid)
}

const SCOPE: &[&str] = &[
    "/sys/class/nvme/",
    "/sys/class/nvme-fabrics/",
    "/sys/class/nvme-subsystem/",
    "/sys/class/nvme-generic/",
    "/sys/class/block/nvme",
    "/sys/block/nvme",
    "/sys/devices/virtual/nvme-fabrics/",
    "/sys/devices/virtual/nvme-subsystem/",
    "/dev/nvme",
    "/dev/ng",
    "/dev/disk/by-id/nvme-",
];

/// Contents that depend on the boot (loop devices took diskseq 3..10; I/O counters).
fn volatile(path: &str) -> bool {
    ["/diskseq", "/uevent", "/stat", "/inflight", "temp1_input"]
        .iter()
        .any(|s| path.ends_with(s))
}

/// Compares the sim tree with the capture inside [`SCOPE`]: same paths, types, modes, link
/// targets and (non-volatile) contents, the capture's serial and uuid replaced by the sim's.
fn compare(w: &World, h: HostId, v: VolumeId, capture: &str) -> Vec<String> {
    let cap = load(capture);
    let (serial, uuid) = ids(w, h, v);
    let fix = |s: &str| s.replace(CAP_SERIAL, &serial).replace(CAP_UUID, &uuid);
    let t = w.tree(h);
    let in_scope = |p: &str| SCOPE.iter().any(|s| p.starts_with(s));
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, e) in cap.tree.iter() {
        let path = fix(path);
        if !in_scope(&path) {
            continue;
        }
        seen.insert(path.clone());
        let Some(n) = t.get(&path) else {
            problems.push(format!("missing {path}"));
            continue;
        };
        match (e, n) {
            (Entry::Dir { .. }, Node::Dir { .. }) => {}
            (Entry::Link { target }, Node::Link { target: s }) => {
                if fix(target) != *s {
                    problems.push(format!("{path}: link {s} (real {})", fix(target)));
                }
            }
            (
                Entry::File { mode, content },
                Node::File {
                    mode: m,
                    content: c,
                },
            ) => {
                if mode != m {
                    problems.push(format!("{path}: mode {m:o} (real {mode:o})"));
                }
                if let Content::Text(real) = content
                    && !volatile(&path)
                    && fix(&String::from_utf8_lossy(real)) != String::from_utf8_lossy(c)
                {
                    problems.push(format!(
                        "{path}: {:?} (real {:?})",
                        String::from_utf8_lossy(c),
                        fix(&String::from_utf8_lossy(real))
                    ));
                }
            }
            (
                Entry::Block { major, minor, mode },
                Node::Block {
                    major: a,
                    minor: b,
                    mode: m,
                },
            )
            | (
                Entry::Char { major, minor, mode },
                Node::Char {
                    major: a,
                    minor: b,
                    mode: m,
                },
            ) => {
                if (major, minor, mode) != (a, b, m) {
                    problems.push(format!(
                        "{path}: {a}:{b} {m:o} (real {major}:{minor} {mode:o})"
                    ));
                }
            }
            _ => problems.push(format!("{path}: type differs")),
        }
    }
    assert!(seen.len() >= 5, "{capture}: nothing compared");
    for (path, _) in t.iter() {
        if in_scope(&path) && !seen.contains(path.as_str()) {
            problems.push(format!("extra {path}"));
        }
    }
    problems
}

fn command(capture: &str, cmd: &str) -> (i32, String) {
    let cap = load(capture);
    let c = cap.command(cmd).unwrap();
    (c.status, c.output.clone())
}

fn check_commands(w: &mut World, h: HostId, v: VolumeId, capture: &str) {
    let (serial, uuid) = ids(w, h, v);
    for cmd in [
        "nvme list -o json",
        "nvme list-subsys -o json",
        "nvme list",
        "nvme list-subsys",
    ] {
        let (status, real) = command(capture, cmd);
        let real = real.replace(CAP_SERIAL, &serial).replace(CAP_UUID, &uuid);
        let args: Vec<&str> = cmd.split(' ').collect();
        let out = run(w, h, &args);
        assert_eq!(out.status, status, "{capture}: {cmd}");
        assert_eq!(out.stdout, real, "{capture}: {cmd}");
    }
}

#[test]
fn connect_delete_layout_matches_the_captures() {
    let (mut w, h, _, v) = guest(true);
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/module/nvme_core/parameters/multipath").as_deref(),
        Some("Y\n")
    );
    let out = connect(&mut w, h, 4420);
    assert_eq!((out.status, out.stdout.as_str()), (0, "device: nvme0\n"));
    assert_eq!(
        compare(&w, h, v, "nvme-tcp-1ctrl.txt"),
        Vec::<String>::new()
    );
    check_commands(&mut w, h, v, "nvme-tcp-1ctrl.txt");

    assert_eq!(connect(&mut w, h, 4421).stdout, "device: nvme1\n");
    assert_eq!(
        compare(&w, h, v, "nvme-tcp-2ctrl.txt"),
        Vec::<String>::new()
    );
    check_commands(&mut w, h, v, "nvme-tcp-2ctrl.txt");
    let d = w.host_devices(h);
    assert_eq!(d.len(), 1, "hidden path disks are not devices of their own");
    assert_eq!(d[0].name, "nvme0n1");
    assert_eq!(d[0].slaves, ["nvme0c0n1", "nvme0c1n1"]);
    assert_eq!(d[0].backing, Some(v));
    assert_eq!(d[0].reported_wwid, w.volume(v).unwrap().wwid);

    w.write_control(h, "/sys/class/nvme/nvme1/delete_controller", "1")
        .unwrap();
    w.settle();
    assert_eq!(
        compare(&w, h, v, "nvme-after-delete-1of2.txt"),
        Vec::<String>::new()
    );
    check_commands(&mut w, h, v, "nvme-after-delete-1of2.txt");

    w.write_control(h, "/sys/class/nvme/nvme0/delete_controller", "1")
        .unwrap();
    w.settle();
    assert_eq!(
        compare(&w, h, v, "nvme-after-delete.txt"),
        Vec::<String>::new()
    );
    check_commands(&mut w, h, v, "nvme-after-delete.txt");
    assert!(w.host_devices(h).is_empty());
    assert!(w.stale_links(h).is_empty());
    assert!(w.controllers(h).is_empty());
}

#[test]
fn already_connected_and_connect_failures() {
    let (mut w, h, _, _) = guest(true);
    assert_eq!(connect(&mut w, h, 4420).status, 0);
    let again = connect(&mut w, h, 4420);
    assert_eq!(again.status, 1);
    assert!(again.stderr.contains("already connected"), "{again:?}");
    // Nothing listens on 4430.
    let refused = connect(&mut w, h, 4430);
    assert_eq!(refused.status, 1);
    assert!(refused.stderr.contains("could not add new controller"));
    // Unknown subsystem, and a host NQN the array does not know.
    let bad = run(
        &mut w,
        h,
        &[
            "nvme",
            "connect",
            "-t",
            "tcp",
            "-a",
            "127.0.0.1",
            "-s",
            "4421",
            "-n",
            "nqn.x:none",
        ],
    );
    assert_eq!(bad.status, 1);
    let other = run(
        &mut w,
        h,
        &[
            "nvme",
            "connect",
            "-t",
            "tcp",
            "-a",
            "127.0.0.1",
            "-s",
            "4421",
            "-n",
            NQN,
            "-Q",
            "128",
            "-l",
            "-1",
            "-q",
            "nqn.2014-08.org.nvmexpress:uuid:other",
        ],
    );
    assert_eq!(other.status, 1, "{other:?}");
    assert_eq!(w.controllers(h).len(), 1);
    // os-brick's arguments: -Q 128 -l -1 -q <host nqn>: ctrl_loss_tmo off.
    let ok = run(
        &mut w,
        h,
        &[
            "nvme",
            "connect",
            "-a",
            "127.0.0.1",
            "-s",
            "4421",
            "-t",
            "tcp",
            "-n",
            NQN,
            "-Q",
            "128",
            "-l",
            "-1",
            "-q",
            HOSTNQN,
        ],
    );
    assert_eq!(ok.status, 0, "{ok:?}");
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/class/nvme-fabrics/ctl/nvme1/ctrl_loss_tmo").as_deref(),
        Some("off\n")
    );
    assert_eq!(run(&mut w, h, &["nvme", "bogus"]).status, 1);
    let disc = run(&mut w, h, &["nvme", "disconnect", "-d", "/dev/nvme7"]);
    assert_eq!(
        (disc.status, disc.stderr.as_str()),
        (1, "Did not find device nvme7\n")
    );
    let disc = run(&mut w, h, &["nvme", "disconnect", "-n", NQN]);
    assert_eq!(
        disc.stdout,
        format!("NQN:{NQN} disconnected 2 controller(s)\n")
    );
    w.settle();
    assert!(w.host_devices(h).is_empty());
}

#[test]
fn address_with_and_without_src_addr() {
    let (mut w, h, _, _) = guest(true);
    connect(&mut w, h, 4420);
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/class/nvme-fabrics/ctl/nvme0/address").as_deref(),
        Some("traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1\n")
    );
    let mut w2 = World::new(1);
    let mut spec = HostSpec::new("old").with_nvme();
    if let Some(n) = spec.nvme.as_mut() {
        n.src_addr = false;
    }
    let h2 = w2.add_host(spec);
    let a = w2.add_array(ArraySpec::nvme("a", vec![NvmePort::tcp("10.0.0.1", 4420)]));
    let v = w2.create_volume(a, "v", 1 << 30).unwrap();
    let m = w2.map_volume(v, h2).unwrap();
    assert_eq!(m.iqn, "nqn.nvme-subsystem-1-v");
    assert_eq!(m.portals, ["10.0.0.1:4420"]);
    let out = run(
        &mut w2,
        h2,
        &[
            "nvme", "connect", "-t", "tcp", "-a", "10.0.0.1", "-s", "4420", "-n", &m.iqn,
        ],
    );
    assert_eq!(out.status, 0, "{out:?}");
    let t = w2.tree(h2);
    assert_eq!(
        read(&t, "/sys/class/nvme-fabrics/ctl/nvme0/address").as_deref(),
        Some("traddr=10.0.0.1,trsvcid=4420\n")
    );
    assert_eq!(
        read(&t, "/sys/class/nvme-fabrics/ctl/nvme0/hostnqn").as_deref(),
        Some(
            format!(
                "{}\n",
                w2.host_spec(h2).unwrap().nvme.as_ref().unwrap().hostnqn
            )
            .as_str()
        )
    );
}

/// A shared subsystem with two volumes, for reuse and concurrency tests.
fn shared(aen: bool) -> (World, HostId, ArrayId) {
    let mut w = World::new(5);
    let h = w.add_host(HostSpec::new("h").with_nvme());
    let mut a = ArraySpec::nvme("a", vec![NvmePort::tcp("10.0.0.1", 4420)]);
    a.iqn_mode = IqnMode::Shared {
        iqn: "nqn.2010-10.org.openstack:shared".to_owned(),
    };
    if let ArrayTransport::Nvme(n) = &mut a.transport {
        n.aen = aen;
    }
    let a = w.add_array(a);
    (w, h, a)
}

fn connect_shared(w: &mut World, h: HostId) -> ExecOutput {
    let out = run(
        w,
        h,
        &[
            "nvme",
            "connect",
            "-t",
            "tcp",
            "-a",
            "10.0.0.1",
            "-s",
            "4420",
            "-n",
            "nqn.2010-10.org.openstack:shared",
        ],
    );
    w.settle();
    out
}

#[test]
fn namespace_reuse_gives_a_new_uuid_after_the_aen() {
    let (mut w, h, a) = shared(true);
    let v1 = w.create_volume(a, "v1", 1 << 30).unwrap();
    let v2 = w.create_volume(a, "v2", 2 << 30).unwrap();
    assert_eq!(w.map_volume(v1, h).unwrap().lun, 1);
    assert_eq!(w.map_volume(v2, h).unwrap().lun, 2);
    assert_eq!(connect_shared(&mut w, h).status, 0);
    let names: Vec<String> = w.host_devices(h).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["nvme0n1", "nvme0n2"]);
    // v1 goes; nsid 1 is free and handed to v3, which has its own uuid.
    w.unmap_volume(v1, h).unwrap();
    w.delete_volume(v1).unwrap();
    w.settle();
    let names: Vec<String> = w.host_devices(h).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["nvme0n2"]);
    let v3 = w.create_volume(a, "v3", 1 << 30).unwrap();
    assert_eq!(w.map_volume(v3, h).unwrap().lun, 1);
    w.settle();
    let d = w.host_devices(h);
    let n1 = d.iter().find(|d| d.backing == Some(v3)).unwrap();
    assert_eq!(n1.name, "nvme0n1", "head instance 1 is free again");
    assert_eq!(n1.reported_wwid, w.volume(v3).unwrap().wwid);
    assert_ne!(n1.reported_wwid, w.volume_record(v1).unwrap().wwid);
    let t = w.tree(h);
    assert_eq!(read(&t, "/sys/block/nvme0n1/nsid").as_deref(), Some("1\n"));
    assert_eq!(
        link(
            &t,
            &format!("/dev/disk/by-id/nvme-{}", w.volume(v3).unwrap().wwid)
        )
        .as_deref(),
        Some("../../nvme0n1")
    );
    // The nguid is shown too, and connection properties carry both ids.
    let nguid = read(&t, "/sys/block/nvme0n1/nguid").unwrap();
    let p = w.connection_properties(v3, h).unwrap();
    assert_eq!(p["driver_volume_type"], "nvmeof");
    assert_eq!(p["data"]["volume_nguid"], nguid.trim());
    assert_eq!(p["data"]["ns_id"], "1");
    assert_eq!(
        p["data"]["portals"],
        serde_json::json!([["10.0.0.1", "4420", "tcp"]])
    );
    assert_eq!(
        format!("uuid.{}", p["data"]["vol_uuid"].as_str().unwrap()),
        w.volume(v3).unwrap().wwid
    );
}

#[test]
fn without_aen_a_reused_nsid_keeps_the_old_identity_until_two_rescans() {
    let (mut w, h, a) = shared(false);
    let v1 = w.create_volume(a, "v1", 1 << 30).unwrap();
    w.map_volume(v1, h).unwrap();
    connect_shared(&mut w, h);
    w.unmap_volume(v1, h).unwrap();
    let v2 = w.create_volume(a, "v2", 1 << 30).unwrap();
    assert_eq!(w.map_volume(v2, h).unwrap().lun, 1);
    w.settle();
    let d = w.host_devices(h);
    assert_eq!(d.len(), 1);
    // Cross-talk: it says v1, it reaches v2.
    assert_eq!(d[0].reported_wwid, w.volume(v1).unwrap().wwid);
    assert_eq!(d[0].backing, Some(v2));
    assert_eq!(
        run(&mut w, h, &["nvme", "ns-rescan", "/dev/nvme0"]).status,
        0
    );
    w.settle();
    assert!(w.host_devices(h).is_empty(), "changed ids: removed first");
    assert_eq!(
        run(&mut w, h, &["nvme", "ns-rescan", "/dev/nvme0"]).status,
        0
    );
    w.settle();
    let d = w.host_devices(h);
    assert_eq!(d[0].reported_wwid, w.volume(v2).unwrap().wwid);
    assert_eq!(d[0].backing, Some(v2));
    assert_eq!(
        run(&mut w, h, &["nvme", "ns-rescan", "/dev/nvme5"]).status,
        1
    );
}

#[test]
fn head_instance_is_not_the_nsid() {
    let mut w = World::new(9);
    let h1 = w.add_host(HostSpec::new("h1").with_nvme());
    let h2 = w.add_host(HostSpec::new("h2").with_nvme());
    let mut a = ArraySpec::nvme("a", vec![NvmePort::tcp("10.0.0.1", 4420)]);
    a.iqn_mode = IqnMode::Shared {
        iqn: "nqn.x:s".to_owned(),
    };
    let a = w.add_array(a);
    let v1 = w.create_volume(a, "v1", 1 << 30).unwrap();
    let v2 = w.create_volume(a, "v2", 1 << 30).unwrap();
    assert_eq!(w.map_volume(v1, h1).unwrap().lun, 1);
    assert_eq!(w.map_volume(v2, h2).unwrap().lun, 2);
    let out = run(
        &mut w,
        h2,
        &[
            "nvme", "connect", "-t", "tcp", "-a", "10.0.0.1", "-s", "4420", "-n", "nqn.x:s",
        ],
    );
    assert_eq!(out.status, 0);
    w.settle();
    let t = w.tree(h2);
    assert_eq!(read(&t, "/sys/block/nvme0n1/nsid").as_deref(), Some("2\n"));
    let j = run(&mut w, h2, &["nvme", "id-ns", "-o", "json", "/dev/nvme0n1"]);
    assert!(j.stdout.contains("\"nsze\":2097152"), "{}", j.stdout);
    assert!(
        j.stdout
            .contains("\"lbafs\":[\n    {\n      \"ms\":0,\n      \"ds\":9"),
        "{}",
        j.stdout
    );
    assert_eq!(
        run(&mut w, h2, &["blockdev", "--getsize64", "/dev/nvme0n1"]).stdout,
        "1073741824\n"
    );
}

#[test]
fn multipath_off_gives_one_disk_per_controller() {
    let (mut w, h, _, v) = guest(false);
    connect(&mut w, h, 4420);
    connect(&mut w, h, 4421);
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/module/nvme_core/parameters/multipath").as_deref(),
        Some("N\n")
    );
    let names: Vec<String> = w.host_devices(h).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["nvme0n1", "nvme1n1"]);
    assert_eq!(
        link(&t, "/sys/block/nvme1n1").as_deref(),
        Some("../devices/virtual/nvme-fabrics/ctl/nvme1/nvme1n1")
    );
    assert_eq!(
        read(&t, "/sys/block/nvme1n1/dev").as_deref(),
        Some("259:1\n")
    );
    assert_eq!(
        read(&t, "/sys/block/nvme1n1/hidden").as_deref(),
        Some("0\n")
    );
    assert!(t.get("/sys/block/nvme1n1/ana_state").is_none());
    assert!(matches!(
        t.get("/dev/nvme1n1"),
        Some(Node::Block {
            major: 259,
            minor: 1,
            ..
        })
    ));
    assert!(matches!(
        t.get("/dev/ng1n1"),
        Some(Node::Char {
            major: 245,
            minor: 1,
            ..
        })
    ));
    assert_eq!(
        link(&t, "/sys/class/nvme-generic/ng1n1").as_deref(),
        Some("../../devices/virtual/nvme-fabrics/ctl/nvme1/ng1n1")
    );
    assert!(
        t.get("/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1")
            .is_none()
    );
    assert!(w.host_devices(h).iter().all(|d| d.backing == Some(v)));
    let list = run(&mut w, h, &["nvme", "list"]);
    assert!(
        list.stdout.contains("/dev/nvme1n1          /dev/ng1n1"),
        "{}",
        list.stdout
    );
}

#[test]
fn subsystem_keeps_its_instance_after_its_first_controller_goes() {
    let (mut w, h, a, _) = guest(true);
    connect(&mut w, h, 4420);
    connect(&mut w, h, 4421);
    w.write_control(h, "/sys/class/nvme/nvme0/delete_controller", "1")
        .unwrap();
    w.settle();
    // A second subsystem: instance 0 is still held by nvme-subsys0.
    let v = w.create_volume(a, "other", 1 << 30).unwrap();
    let mut spec = ArraySpec::nvme("b", vec![NvmePort::tcp("10.0.0.9", 4420)]);
    spec.iqn_mode = IqnMode::Shared {
        iqn: "nqn.x:b".to_owned(),
    };
    let b = w.add_array(spec);
    let vb = w.create_volume(b, "vb", 1 << 30).unwrap();
    w.map_volume(vb, h).unwrap();
    let _ = v;
    let out = run(
        &mut w,
        h,
        &[
            "nvme", "connect", "-t", "tcp", "-a", "10.0.0.9", "-s", "4420", "-n", "nqn.x:b",
        ],
    );
    assert_eq!(out.stdout, "device: nvme2\n");
    w.settle();
    let ctrls: Vec<(String, String)> = w
        .controllers(h)
        .into_iter()
        .map(|c| (c.name, c.subsystem))
        .collect();
    assert_eq!(
        ctrls,
        [
            ("nvme1".to_owned(), "nvme-subsys0".to_owned()),
            ("nvme2".to_owned(), "nvme-subsys2".to_owned())
        ]
    );
    let names: Vec<String> = w.host_devices(h).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["nvme0n1", "nvme2n1"]);
}

#[test]
fn controller_stuck_connecting_fails_io_and_new_connects() {
    let (mut w, h, _, _) = guest(true);
    connect(&mut w, h, 4420);
    let down = Fault::NvmePortDown {
        host: h,
        traddr: "127.0.0.1".to_owned(),
        trsvcid: 4420,
    };
    w.inject(down.clone());
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/class/nvme-fabrics/ctl/nvme0/state").as_deref(),
        Some("connecting\n")
    );
    assert_eq!(w.controllers(h)[0].state, CtrlState::Connecting);
    // The namespace stays (queued I/O), but reads fail.
    assert_eq!(w.host_devices(h).len(), 1);
    assert_ne!(
        run(
            &mut w,
            h,
            &["dd", "if=/dev/nvme0n1", "of=/dev/null", "count=1"]
        )
        .status,
        0
    );
    assert!(
        run(&mut w, h, &["nvme", "list-subsys"])
            .stdout
            .contains(" connecting ")
    );
    // The same portal again: already connected; nvme connect through another down port fails.
    assert_eq!(connect(&mut w, h, 4420).status, 1);
    w.clear_fault(&down);
    assert_eq!(w.controllers(h)[0].state, CtrlState::Live);
    assert_eq!(
        run(
            &mut w,
            h,
            &["dd", "if=/dev/nvme0n1", "of=/dev/null", "count=1"]
        )
        .status,
        0
    );
}

#[test]
fn a_reconnected_controller_rescans_what_changed_while_it_was_away() {
    let (mut w, h, a) = shared(true);
    let first = w.create_volume(a, "first", 1 << 30).unwrap();
    let gone = w.create_volume(a, "gone", 1 << 30).unwrap();
    w.map_volume(first, h).unwrap();
    w.map_volume(gone, h).unwrap();
    assert_eq!(connect_shared(&mut w, h).status, 0);
    assert_eq!(w.controllers(h)[0].nsids, [1, 2]);
    let down = Fault::NvmePortDown {
        host: h,
        traddr: "10.0.0.1".to_owned(),
        trsvcid: 4420,
    };
    w.inject(down.clone());
    // Meanwhile the array maps a new volume and unmaps one: the AENs find no live controller.
    let late = w.create_volume(a, "late", 1 << 30).unwrap();
    w.unmap_volume(gone, h).unwrap();
    w.map_volume(late, h).unwrap();
    w.advance(Duration::from_secs(1));
    w.settle();
    assert_eq!(w.controllers(h)[0].state, CtrlState::Connecting);
    assert_eq!(
        w.controllers(h)[0].nsids,
        [1, 2],
        "nothing scanned while away"
    );
    // The port answers again: live, and the reconnect scan (nvme_start_ctrl ->
    // nvme_queue_scan) drops the unmapped namespace and adds the new one (nsid 2 is
    // removed in this scan; the freed nsid went to `late`, which the next scan adds).
    w.clear_fault(&down);
    assert_eq!(w.controllers(h)[0].state, CtrlState::Live);
    assert_eq!(w.controllers(h)[0].nsids, [1]);
    w.settle();
    let t = w.tree(h);
    assert!(
        t.get("/dev/nvme0n2").is_none(),
        "the unmapped namespace's node went"
    );
    assert_eq!(
        run(&mut w, h, &["nvme", "ns-rescan", "/dev/nvme0"]).status,
        0
    );
    w.settle();
    let mut found: Vec<(String, Option<VolumeId>)> = w
        .host_devices(h)
        .into_iter()
        .map(|d| (d.name, d.backing))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("nvme0n1".to_owned(), Some(first)),
            ("nvme0n2".to_owned(), Some(late))
        ]
    );
}

#[test]
fn a_namespace_mapped_while_the_port_was_down_appears_when_it_returns() {
    let (mut w, h, a) = shared(true);
    let first = w.create_volume(a, "first", 1 << 30).unwrap();
    w.map_volume(first, h).unwrap();
    assert_eq!(connect_shared(&mut w, h).status, 0);
    w.inject(Fault::NvmePortDown {
        host: h,
        traddr: "10.0.0.1".to_owned(),
        trsvcid: 4420,
    });
    let late = w.create_volume(a, "late", 1 << 30).unwrap();
    w.map_volume(late, h).unwrap();
    w.settle();
    assert_eq!(
        w.host_devices(h).len(),
        1,
        "the AEN found no live controller"
    );
    w.clear_faults();
    w.settle();
    let t = w.tree(h);
    assert!(t.get("/dev/nvme0n2").is_some());
    let backing: Vec<Option<VolumeId>> = w.host_devices(h).into_iter().map(|d| d.backing).collect();
    assert_eq!(backing.len(), 2);
    assert!(backing.contains(&Some(late)));
}

#[test]
fn a_namespace_that_appears_during_attach_is_a_second_device() {
    let (mut w, h, a) = shared(true);
    let mine = w.create_volume(a, "mine", 1 << 30).unwrap();
    let other = w.create_volume(a, "other", 1 << 30).unwrap();
    w.map_volume(mine, h).unwrap();
    w.inject(Fault::NamespaceAppears {
        host: h,
        volume: other,
    });
    connect_shared(&mut w, h);
    assert!(w.faults().is_empty(), "fires once");
    let mut found: Vec<(String, Option<VolumeId>)> = w
        .host_devices(h)
        .into_iter()
        .map(|d| (d.name, d.backing))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("nvme0n1".to_owned(), Some(mine)),
            ("nvme0n2".to_owned(), Some(other))
        ]
    );
    // And a namespace mapped later shows up through the AEN on the live controller.
    let third = w.create_volume(a, "third", 1 << 30).unwrap();
    w.map_namespace_concurrently(third, h).unwrap();
    assert_eq!(w.host_devices(h).len(), 2, "not before the AEN arrives");
    w.advance(Duration::from_millis(100));
    w.settle();
    assert_eq!(w.host_devices(h).len(), 3);
}

#[test]
fn hostnqn_files_and_cli_basics() {
    let (mut w, h, _, _) = guest(true);
    let t = w.tree(h);
    assert_eq!(
        t.read("/etc/nvme/hostnqn"),
        Some(format!("{HOSTNQN}\n").as_bytes())
    );
    assert_eq!(
        t.read("/etc/nvme/hostid"),
        Some(format!("{HOSTID}\n").as_bytes())
    );
    let uuid = read(&t, "/sys/class/dmi/id/product_uuid").unwrap();
    assert_eq!(
        run(&mut w, h, &["nvme", "gen-hostnqn"]).stdout,
        format!("nqn.2014-08.org.nvmexpress:uuid:{uuid}")
    );
    assert_eq!(
        run(&mut w, h, &["nvme", "show-hostnqn"]).stdout,
        format!("{HOSTNQN}\n")
    );
    assert_eq!(run(&mut w, h, &["nvme", "version"]).status, 0);
    // A host without nvme-cli.
    let bare = w.add_host(HostSpec::new("bare"));
    assert_eq!(run(&mut w, bare, &["nvme", "version"]).status, 127);
    assert!(w.tree(bare).get("/sys/class/nvme").is_none());
}

#[test]
fn nvme_worlds_are_deterministic() {
    let build = || {
        let (mut w, h, _, _) = guest(true);
        connect(&mut w, h, 4420);
        connect(&mut w, h, 4421);
        (w.tree(h), w.host_devices(h), w.controllers(h))
    };
    assert_eq!(build(), build());
}
