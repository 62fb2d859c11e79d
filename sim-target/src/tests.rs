//! Scenario tests of the whole model, driven through the public API.

use std::time::Duration;

use crate::*;

const P1: &str = "10.0.2.2:3260";
const P2: &str = "10.0.2.2:3261";
const SHARED: &str = "iqn.2010-10.org.openstack:shared";

fn run(w: &mut World, h: HostId, args: &[&str]) -> ExecOutput {
    let argv: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    w.exec(h, &argv, None)
}

fn shared_array(w: &mut World, portals: &[&str]) -> ArrayId {
    let mut spec = ArraySpec::new("a", portals.iter().map(|p| (*p).to_owned()).collect());
    spec.iqn_mode = IqnMode::Shared {
        iqn: SHARED.to_owned(),
    };
    w.add_array(spec)
}

/// os-brick's login sequence: new record, manual scan, login.
fn login(w: &mut World, h: HostId, iqn: &str, portal: &str, manual: bool) -> ExecOutput {
    let new = run(
        w,
        h,
        &[
            "iscsiadm",
            "-m",
            "node",
            "-T",
            iqn,
            "-p",
            portal,
            "--interface",
            "default",
            "--op",
            "new",
        ],
    );
    assert_eq!(new.status, 0, "{new:?}");
    if manual {
        let up = run(
            w,
            h,
            &[
                "iscsiadm",
                "-m",
                "node",
                "-T",
                iqn,
                "-p",
                portal,
                "--op",
                "update",
                "-n",
                "node.session.scan",
                "-v",
                "manual",
            ],
        );
        assert_eq!(up.status, 0, "{up:?}");
    }
    run(
        w,
        h,
        &["iscsiadm", "-m", "node", "-T", iqn, "-p", portal, "--login"],
    )
}

fn link(t: &Tree, path: &str) -> Option<String> {
    match t.get(path) {
        Some(Node::Link { target }) => Some(target.clone()),
        _ => None,
    }
}

fn read(t: &Tree, path: &str) -> Option<String> {
    let real = t.resolve(path)?;
    t.read(&real)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn basic() -> (World, HostId, ArrayId) {
    let mut w = World::new(42);
    let h = w.add_host(HostSpec::new("h1"));
    let a = shared_array(&mut w, &[P1]);
    (w, h, a)
}

#[test]
fn manual_scan_creates_exactly_the_scanned_lun() {
    let mut spec = ArraySpec::new("tgt", vec![P1.to_owned()]);
    spec.iqn_mode = IqnMode::Shared {
        iqn: SHARED.to_owned(),
    };
    spec.lun0_controller = true;
    let mut w2 = World::new(42);
    let h2 = w2.add_host(HostSpec::new("h1"));
    let a2 = w2.add_array(spec);
    let v1 = w2.create_volume(a2, "v1", 32 << 20).unwrap();
    let v2 = w2.create_volume(a2, "v2", 32 << 20).unwrap();
    assert_eq!(w2.map_volume(v1, h2).unwrap().lun, 1);
    assert_eq!(w2.map_volume(v2, h2).unwrap().lun, 2);
    let out = login(&mut w2, h2, SHARED, P1, true);
    assert_eq!(out.status, 0, "{out:?}");
    let t = w2.tree(h2);
    assert!(
        t.get("/sys/devices/platform/host0/session1/iscsi_session/session1")
            .is_some()
    );
    assert!(
        t.get("/sys/devices/platform/host0/session1/target0:0:0")
            .is_none(),
        "no target before a scan"
    );
    assert!(w2.host_devices(h2).is_empty());

    w2.write_control(h2, "/sys/class/scsi_host/host0/scan", "0 0 2")
        .unwrap();
    // An unmapped LUN creates nothing.
    w2.write_control(h2, "/sys/class/scsi_host/host0/scan", "0 0 7")
        .unwrap();
    w2.settle();
    let devs = w2.host_devices(h2);
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].name, "sda");
    assert_eq!(devs[0].hctl.as_deref(), Some("0:0:0:2"));
    assert_eq!(devs[0].backing, Some(v2));
    let t = w2.tree(h2);
    assert!(
        t.get("/sys/devices/platform/host0/session1/target0:0:0/0:0:0:0")
            .is_none()
    );
    assert_eq!(
        link(&t, "/sys/block/sda").as_deref(),
        Some("../devices/platform/host0/session1/target0:0:0/0:0:0:2/block/sda")
    );
    assert_eq!(read(&t, "/sys/block/sda/dev").as_deref(), Some("8:0\n"));
    assert_eq!(read(&t, "/sys/block/sda/size").as_deref(), Some("65536\n"));
    assert_eq!(
        link(
            &t,
            &format!("/dev/disk/by-path/ip-{P1}-iscsi-{SHARED}-lun-2")
        )
        .as_deref(),
        Some("../../sda")
    );
    assert!(matches!(
        t.get("/dev/sda"),
        Some(Node::Block {
            major: 8,
            minor: 0,
            mode: 0o660
        })
    ));
    assert!(matches!(
        t.get("/sys/devices/platform/host0/scsi_host/host0/scan"),
        Some(Node::File { mode: 0o200, .. })
    ));
    // The wildcard scan adds the controller LUN 0 (no sd) and LUN 1, in order.
    w2.write_control(h2, "/sys/class/scsi_host/host0/scan", "- - -")
        .unwrap();
    let t = w2.tree(h2);
    assert_eq!(
        read(&t, "/sys/bus/scsi/devices/0:0:0:0/type").as_deref(),
        Some("12\n")
    );
    assert!(
        t.get("/sys/devices/platform/host0/session1/target0:0:0/0:0:0:0/block")
            .is_none()
    );
    assert_eq!(
        link(&t, "/sys/block/sdb").as_deref(),
        Some("../devices/platform/host0/session1/target0:0:0/0:0:0:1/block/sdb")
    );
}

#[test]
fn sd_names_are_reused_lowest_free() {
    let (mut w, h, a) = basic();
    let vols: Vec<VolumeId> = (0..3)
        .map(|i| w.create_volume(a, &format!("v{i}"), 1 << 30).unwrap())
        .collect();
    for v in &vols[..2] {
        w.map_volume(*v, h).unwrap();
    }
    login(&mut w, h, SHARED, P1, false);
    let names: Vec<String> = w.host_devices(h).into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["sda", "sdb"]);
    w.write_control(h, "/sys/block/sda/device/delete", "1")
        .unwrap();
    w.map_volume(vols[2], h).unwrap();
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 3")
        .unwrap();
    let d = w.host_devices(h);
    let sda = d.iter().find(|d| d.name == "sda").unwrap();
    assert_eq!(sda.hctl.as_deref(), Some("0:0:0:3"));
    assert_eq!(sda.backing, Some(vols[2]));
    // diskseq keeps counting.
    assert_eq!(
        read(&w.tree(h), "/sys/block/sda/diskseq").as_deref(),
        Some("3\n")
    );
}

#[test]
fn luns_are_reused_lowest_free_and_first_lun_can_be_zero() {
    let (mut w, h, a) = basic();
    let v: Vec<VolumeId> = (0..4)
        .map(|i| w.create_volume(a, &format!("v{i}"), 1 << 20).unwrap())
        .collect();
    let luns: Vec<u64> = v[..3]
        .iter()
        .map(|x| w.map_volume(*x, h).unwrap().lun)
        .collect();
    assert_eq!(luns, [1, 2, 3]);
    assert_eq!(
        w.map_volume(v[0], h).unwrap().lun,
        1,
        "mapping twice is idempotent"
    );
    w.unmap_volume(v[1], h).unwrap();
    assert_eq!(w.map_volume(v[3], h).unwrap().lun, 2);
    assert!(matches!(
        w.unmap_volume(v[1], h),
        Err(SimError::NotMapped { .. })
    ));

    let mut spec = ArraySpec::new("z", vec![P2.to_owned()]);
    spec.first_lun = 0;
    let z = w.add_array(spec);
    let zv = w.create_volume(z, "zero", 1 << 20).unwrap();
    assert_eq!(w.map_volume(zv, h).unwrap().lun, 0);
}

#[test]
fn identity_policy_fresh_vs_reuse_on_lun() {
    for policy in [IdentityPolicy::Fresh, IdentityPolicy::ReuseOnLun] {
        let mut w = World::new(5);
        let h = w.add_host(HostSpec::new("h"));
        let mut spec = ArraySpec::new("a", vec![P1.to_owned()]);
        spec.identity = policy;
        let a = w.add_array(spec);
        let x = w.create_volume(a, "x", 1 << 20).unwrap();
        w.map_volume(x, h).unwrap();
        let old = w.volume(x).unwrap().wwid.clone();
        w.delete_volume(x).unwrap();
        assert!(w.volume(x).is_none());
        let y = w.create_volume(a, "x", 1 << 20).unwrap();
        w.map_volume(y, h).unwrap();
        let new = w.volume(y).unwrap().wwid.clone();
        assert_eq!(
            new == old,
            policy == IdentityPolicy::ReuseOnLun,
            "{policy:?}"
        );
        assert!(new.starts_with("36001405"), "{new}");
    }
}

#[test]
fn leaked_detach_keeps_the_old_identity_but_reaches_the_new_volume() {
    let (mut w, h, a) = basic();
    let va = w.create_volume(a, "A", 1 << 30).unwrap();
    w.map_volume(va, h).unwrap();
    login(&mut w, h, SHARED, P1, true);
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 1")
        .unwrap();
    w.settle();
    let wwid_a = w.volume(va).unwrap().wwid.clone();
    // The array deletes A while the host still has sda; B lands on the same LUN.
    w.delete_volume(va).unwrap();
    assert_eq!(w.host_devices(h)[0].backing, None);
    let vb = w.create_volume(a, "B", 2 << 30).unwrap();
    assert_eq!(w.map_volume(vb, h).unwrap().lun, 1);
    let d = &w.host_devices(h)[0];
    assert_eq!(d.reported_wwid, wwid_a);
    assert_eq!(d.backing, Some(vb));
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/block/sda/device/wwid"),
        Some(format!("naa.{}\n", &wwid_a[1..]))
    );
    assert_eq!(
        link(&t, &format!("/dev/disk/by-id/scsi-{wwid_a}")).as_deref(),
        Some("../../sda")
    );
    // A real INQUIRY (scsi_id) sees B.
    let id = run(
        &mut w,
        h,
        &[
            "/lib/udev/scsi_id",
            "--page",
            "0x83",
            "--whitelisted",
            "/dev/sda",
        ],
    );
    assert_eq!(id.stdout.trim(), w.volume(vb).unwrap().wwid);
    // A rescan re-reads identity and size.
    w.write_control(h, "/sys/bus/scsi/drivers/sd/0:0:0:1/rescan", "1")
        .unwrap();
    w.settle();
    let d = &w.host_devices(h)[0];
    assert_eq!(d.reported_wwid, w.volume(vb).unwrap().wwid);
    assert_eq!(
        read(&w.tree(h), "/sys/block/sda/size").as_deref(),
        Some("4194304\n")
    );
    assert!(w.stale_links(h).is_empty(), "{:?}", w.stale_links(h));
}

#[test]
fn delete_removes_the_device_now_and_its_links_after_the_udev_delay() {
    let (mut w, h, a) = basic();
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    login(&mut w, h, SHARED, P1, false);
    let by_path = format!("/dev/disk/by-path/ip-{P1}-iscsi-{SHARED}-lun-1");
    assert!(link(&w.tree(h), &by_path).is_none(), "udev has not run yet");
    w.advance(Duration::from_millis(50));
    assert!(link(&w.tree(h), &by_path).is_some());
    w.write_control(h, "/sys/class/scsi_device/0:0:0:1/device/delete", "1")
        .unwrap();
    let t = w.tree(h);
    assert!(
        t.get("/dev/sda").is_none(),
        "devtmpfs removes the node at once"
    );
    assert!(t.get("/sys/block/sda").is_none());
    assert!(
        t.get("/sys/devices/platform/host0/session1/target0:0:0")
            .is_none(),
        "target reaped"
    );
    // by-path, scsi-3, wwn, scsi-S, scsi-1 (sg3-utils, from the T10 designator), by-diskseq,
    // block/8:0.
    assert_eq!(
        w.stale_links(h).len(),
        7,
        "links wait for udev: {:?}",
        w.stale_links(h)
    );
    w.advance(Duration::from_millis(49));
    assert!(link(&w.tree(h), &by_path).is_some());
    w.advance(Duration::from_millis(1));
    assert!(link(&w.tree(h), &by_path).is_none());
    assert!(
        w.tree(h).get("/dev/disk").is_none(),
        "empty udev dirs vanish"
    );
    assert!(w.stale_links(h).is_empty());

    // A lost remove event leaves stale links behind for good.
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 1")
        .unwrap();
    w.settle();
    w.inject(Fault::UdevLost {
        host: h,
        action: UdevAction::Remove,
        times: Times::Count(1),
    });
    w.write_control(h, "/sys/block/sda/device/delete", "1")
        .unwrap();
    w.advance(Duration::from_secs(60));
    assert!(w.stale_links(h).contains(&by_path));
    assert!(w.faults().is_empty(), "counted fault disarmed");
    // os-brick removes stale by-id links itself.
    let stale_id = w
        .stale_links(h)
        .into_iter()
        .find(|l| l.contains("/by-id/scsi-3"))
        .unwrap();
    w.remove(h, &stale_id).unwrap();
    assert!(!w.stale_links(h).contains(&stale_id));
    assert_eq!(w.remove(h, &stale_id).unwrap_err().kind, Errno::ENOENT);
}

#[test]
fn logout_removes_the_whole_host_tree() {
    let (mut w, h, a) = basic();
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    login(&mut w, h, SHARED, P1, false);
    w.settle();
    let out = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--logout"],
    );
    assert_eq!(out.status, 0);
    assert_eq!(
        out.stdout,
        format!(
            "Logging out of session [sid: 1, target: {SHARED}, portal: 10.0.2.2,3260]\nLogout of [sid: 1, target: {SHARED}, portal: 10.0.2.2,3260] successful.\n"
        )
    );
    w.settle();
    let t = w.tree(h);
    assert!(
        t.iter()
            .all(|(p, _)| !p.starts_with("/sys/devices/platform/host0"))
    );
    assert!(t.children("/sys/class/iscsi_session").next().is_none());
    assert!(t.children("/sys/class/scsi_host").next().is_none());
    assert!(link(&t, "/sys/class/iscsi_transport/tcp").is_some());
    assert!(w.stale_links(h).is_empty());
    let s = run(&mut w, h, &["iscsiadm", "-m", "session"]);
    assert_eq!(
        (s.status, s.stderr.as_str()),
        (21, "iscsiadm: No active sessions.\n")
    );
    let n = run(&mut w, h, &["iscsiadm", "-m", "node"]);
    assert_eq!(n.stdout, format!("10.0.2.2:3260,4294967295 {SHARED}\n"));
    // Host numbers are reused lowest-free, session ids count up.
    login(&mut w, h, SHARED, P1, true);
    let s = w.sessions(h);
    assert_eq!((s[0].sid, s[0].host_no), (2, 0));
}

#[test]
fn iscsiadm_outputs_and_exit_codes() {
    let (mut w, h, a) = basic();
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    let probe = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1],
    );
    assert_eq!(
        (probe.status, probe.stderr.as_str()),
        (21, "iscsiadm: No records found\n")
    );
    // Not mapped yet: the target refuses the initiator.
    let out = login(&mut w, h, SHARED, P1, true);
    assert_eq!(out.status, 24, "{out:?}");
    assert!(
        out.stderr
            .contains("(24 - iSCSI login failed due to authorization failure)")
    );
    w.map_volume(v, h).unwrap();
    let out = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--login"],
    );
    assert_eq!(out.status, 0);
    assert_eq!(
        out.stdout,
        format!(
            "Logging in to [iface: default, target: {SHARED}, portal: 10.0.2.2,3260]\nLogin to [iface: default, target: {SHARED}, portal: 10.0.2.2,3260] successful.\n"
        )
    );
    let again = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--login"],
    );
    assert_eq!(again.status, 15);
    let s = run(&mut w, h, &["iscsiadm", "-m", "session"]);
    assert_eq!(
        s.stdout,
        format!("tcp: [1] 10.0.2.2:3260,1 {SHARED} (non-flash)\n")
    );
    let rec = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1],
    );
    let lines: Vec<&str> = rec.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"# BEGIN RECORD 2.1.8"));
    assert_eq!(
        lines.get(1).copied(),
        Some(format!("node.name = {SHARED}").as_str())
    );
    assert_eq!(lines.get(2), Some(&"node.tpgt = -1"));
    assert_eq!(lines.last(), Some(&"# END RECORD"));
    assert_eq!(lines.len(), 109);
    assert!(lines.contains(&"node.session.scan = manual"));
    assert!(lines.contains(&"node.conn[0].port = 3260"));
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 1")
        .unwrap();
    let p3 = run(&mut w, h, &["iscsiadm", "-m", "session", "-P", "3"]);
    assert!(
        p3.stdout.contains(
            "\t\tscsi0 Channel 00 Id 0 Lun: 1\n\t\t\tAttached scsi disk sda\t\tState: running\n"
        ),
        "{}",
        p3.stdout
    );
    let del = run(
        &mut w,
        h,
        &[
            "iscsiadm",
            "-m",
            "node",
            "-T",
            "iqn.nope:x",
            "-p",
            P1,
            "--op",
            "delete",
        ],
    );
    assert_eq!(del.status, 21);
    let lo = run(
        &mut w,
        h,
        &[
            "iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--op", "update", "-n", "bogus",
            "-v", "1",
        ],
    );
    assert_eq!(lo.status, 7);
    let disc = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "discovery", "-t", "sendtargets", "-p", P1],
    );
    assert_eq!(disc.stdout, format!("10.0.2.2:3260,1 {SHARED}\n"));
    let db = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "discoverydb", "-o", "show", "-P", "1"],
    );
    assert!(
        db.stdout
            .starts_with("SENDTARGETS:\nDiscoveryAddress: 10.0.2.2,3260\nTarget: "),
        "{}",
        db.stdout
    );
    let nope = run(&mut w, h, &["frobnicate", "-x"]);
    assert_eq!(
        (nope.status, nope.stderr.as_str()),
        (127, "frobnicate: command not found\n")
    );
    let cat = run(&mut w, h, &["cat", "/etc/iscsi/initiatorname.iscsi"]);
    assert!(
        cat.stdout
            .ends_with("InitiatorName=iqn.1993-08.org.debian:01:h1\n")
    );
    // Unknown target on a reachable portal, and an unreachable portal.
    let out = login(&mut w, h, "iqn.2010-10.org.openstack:none", P1, true);
    assert_eq!(out.status, 19);
    w.inject(Fault::PortalDown {
        host: h,
        portal: P1.to_owned(),
    });
    run(
        &mut w,
        h,
        &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--logout"],
    );
    let out = run(
        &mut w,
        h,
        &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--login"],
    );
    assert_eq!(out.status, 8);
}

fn mp_world(friendly: bool) -> (World, HostId, VolumeId) {
    let mut w = World::new(9);
    let mut hs = HostSpec::new("h1");
    hs.multipathd = true;
    hs.user_friendly_names = friendly;
    let h = w.add_host(hs);
    let mut spec = ArraySpec::new("tgt", vec![P1.to_owned(), P2.to_owned()]);
    spec.iqn_mode = IqnMode::Shared {
        iqn: SHARED.to_owned(),
    };
    spec.vendor = "IET".to_owned();
    spec.model = "VIRTUAL-DISK".to_owned();
    let a = w.add_array(spec);
    let v = w.create_volume(a, "v", 32 << 20).unwrap();
    w.map_volume(v, h).unwrap();
    assert_eq!(login(&mut w, h, SHARED, P1, false).status, 0);
    assert_eq!(login(&mut w, h, SHARED, P2, false).status, 0);
    w.settle();
    (w, h, v)
}

/// Two paths to one LUN claim the same `scsi-*` links with the same priority: the path udev
/// processed last owns them. Without multipathd that is the later path; with multipathd the
/// first path gets a `change` event when its map is created (its WWID was new and udev had not
/// marked it as a multipath path), which is processed after the second path's `add`, as in
/// the real multipath-2paths capture.
#[test]
fn equal_priority_links_go_to_the_device_udev_processed_last() {
    let tgt_world = |multipathd: bool| {
        let mut w = World::new(3);
        let mut hs = HostSpec::new("h1");
        hs.multipathd = multipathd;
        let h = w.add_host(hs);
        let mut spec = ArraySpec::tgt("tgt", vec![P1.to_owned(), P2.to_owned()]);
        spec.iqn_mode = IqnMode::Shared {
            iqn: SHARED.to_owned(),
        };
        let a = w.add_array(spec);
        let v = w.create_volume(a, "v", 32 << 20).unwrap();
        w.map_volume(v, h).unwrap();
        assert_eq!(login(&mut w, h, SHARED, P1, false).status, 0);
        assert_eq!(login(&mut w, h, SHARED, P2, false).status, 0);
        w.settle();
        (w, h)
    };
    let shared_links = [
        "/dev/disk/by-id/scsi-1IET_00010001",
        "/dev/disk/by-id/scsi-33000000100000001",
        "/dev/disk/by-id/scsi-SIET_VIRTUAL-DISK_beaf11",
    ];
    let (w, h) = tgt_world(false);
    let t = w.tree(h);
    for l in shared_links {
        assert_eq!(link(&t, l).as_deref(), Some("../../sdb"), "{l}");
    }
    let (mut w, h) = tgt_world(true);
    let t = w.tree(h);
    for l in shared_links {
        assert_eq!(link(&t, l).as_deref(), Some("../../sda"), "{l}");
    }
    assert_eq!(
        link(&t, "/dev/disk/by-id/scsi-360000000000000000e00000000010001").as_deref(),
        Some("../../dm-0"),
        "the map's higher priority wins"
    );
    // The owner goes: the remaining claimant takes the links over.
    w.write_control(h, "/sys/block/sda/device/delete", "1")
        .unwrap();
    w.settle();
    let t = w.tree(h);
    for l in shared_links {
        assert_eq!(link(&t, l).as_deref(), Some("../../sdb"), "{l}");
    }
}

#[test]
fn multipath_map_over_two_sessions_and_flush() {
    let (mut w, h, v) = mp_world(false);
    let wwid = w.volume(v).unwrap().wwid.clone();
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/block/dm-0/dm/name"),
        Some(format!("{wwid}\n"))
    );
    assert_eq!(
        read(&t, "/sys/block/dm-0/dm/uuid"),
        Some(format!("mpath-{wwid}\n"))
    );
    assert_eq!(
        link(&t, "/sys/devices/virtual/block/dm-0/slaves/sdb").as_deref(),
        Some("../../../../platform/host1/session2/target1:0:0/1:0:0:1/block/sdb")
    );
    assert!(
        link(&t, "/sys/block/sda/holders/dm-0").is_none(),
        "holders live in the real dir, /sys/block/sda is a link"
    );
    assert_eq!(
        t.resolve("/sys/block/sda/holders/dm-0").as_deref(),
        Some("/sys/devices/virtual/block/dm-0")
    );
    assert_eq!(
        link(&t, &format!("/dev/mapper/{wwid}")).as_deref(),
        Some("../dm-0")
    );
    assert_eq!(
        link(&t, &format!("/dev/disk/by-id/scsi-{wwid}")).as_deref(),
        Some("../../dm-0")
    );
    assert_eq!(
        link(&t, &format!("/dev/disk/by-id/dm-uuid-mpath-{wwid}")).as_deref(),
        Some("../../dm-0")
    );
    assert_eq!(
        read(&t, "/sys/class/iscsi_session/session1/recovery_tmo").as_deref(),
        Some("5\n")
    );
    let ll = run(&mut w, h, &["multipath", "-ll"]);
    let expected = format!(
        "{wwid} dm-0 IET,VIRTUAL-DISK\nsize=32M features='0' hwhandler='0' wp=rw\n|-+- policy='service-time 0' prio=1 status=active\n| `- 0:0:0:1 sda 8:0  active ready running\n`-+- policy='service-time 0' prio=1 status=enabled\n  `- 1:0:0:1 sdb 8:16 active ready running\n"
    );
    assert_eq!(ll.stdout, expected);
    let raw = run(
        &mut w,
        h,
        &["multipathd", "show", "paths", "raw", "format", "%d %w"],
    );
    assert_eq!(raw.stdout, format!("sda {wwid}\nsdb {wwid}\n"));
    let maps = run(
        &mut w,
        h,
        &["multipathd", "show", "maps", "raw", "format", "%n %w %d %N"],
    );
    assert_eq!(maps.stdout, format!("{wwid} {wwid} dm-0 2\n"));
    let table = run(&mut w, h, &["multipathd", "show", "maps"]);
    assert_eq!(
        table.stdout,
        format!(
            "name{pad} sysfs uuid{pad}\n{wwid} dm-0  {wwid}\n",
            pad = " ".repeat(wwid.len() - 4)
        )
    );
    assert_eq!(run(&mut w, h, &["multipath", "-C", "dm-0"]).status, 0);

    // Flush fails while the fault is armed, then succeeds.
    w.inject(Fault::MultipathFlushFails {
        host: h,
        times: Times::Count(1),
    });
    let f = run(&mut w, h, &["multipath", "-f", &wwid]);
    assert_eq!(
        (f.status, f.stderr.clone()),
        (1, format!("{wwid}: map in use\n"))
    );
    assert_eq!(run(&mut w, h, &["multipath", "-f", &wwid]).status, 0);
    assert!(w.tree(h).get("/sys/block/dm-0").is_none());
    // Until udev processes the dm removal the by-id link dangles.
    assert!(
        w.stale_links(h)
            .contains(&format!("/dev/disk/by-id/scsi-{wwid}"))
    );
    w.settle();
    let t = w.tree(h);
    assert_eq!(
        link(&t, &format!("/dev/disk/by-id/scsi-{wwid}")).as_deref(),
        Some("../../sda")
    );
    assert!(t.get(&format!("/dev/mapper/{wwid}")).is_none());
    assert!(t.get("/dev/mapper/control").is_some());
    let paths = run(&mut w, h, &["multipathd", "show", "paths"]);
    assert!(
        paths
            .stdout
            .contains("0:0:0:1 sda 8:0   1   undef undef  unknown orphan"),
        "{}",
        paths.stdout
    );
    assert_eq!(
        run(&mut w, h, &["multipathd", "show", "maps"]).stdout,
        "ok\n"
    );
    assert!(w.stale_links(h).is_empty());
}

#[test]
fn multipath_friendly_names_and_path_removal() {
    let (mut w, h, v) = mp_world(true);
    let wwid = w.volume(v).unwrap().wwid.clone();
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/block/dm-0/dm/name").as_deref(),
        Some("mpatha\n")
    );
    assert_eq!(link(&t, "/dev/mapper/mpatha").as_deref(), Some("../dm-0"));
    let l = run(&mut w, h, &["multipath", "-l", "/dev/sda"]);
    assert!(
        l.stdout
            .starts_with(&format!("mpatha ({wwid}) dm-0 IET,VIRTUAL-DISK\n")),
        "{}",
        l.stdout
    );
    assert!(l.stdout.contains("active undef running"));
    // Deleting a path: multipathd drops it when the udev event arrives (late with the fault).
    w.inject(Fault::MultipathdSlowRemove {
        host: h,
        extra: Duration::from_secs(10),
    });
    w.write_control(h, "/sys/block/sdb/device/delete", "1")
        .unwrap();
    w.advance(Duration::from_secs(1));
    let raw = run(
        &mut w,
        h,
        &["multipathd", "show", "paths", "raw", "format", "%d"],
    );
    assert_eq!(raw.stdout, "sda\nsdb\n");
    w.advance(Duration::from_secs(10));
    let raw = run(
        &mut w,
        h,
        &["multipathd", "show", "paths", "raw", "format", "%d"],
    );
    assert_eq!(raw.stdout, "sda\n");
    assert_eq!(
        run(
            &mut w,
            h,
            &["multipathd", "show", "maps", "raw", "format", "%N"]
        )
        .stdout,
        "1\n"
    );
    // The map stays open: del map fails, flush after clearing works.
    w.inject(Fault::MapOpen { host: h, map: None });
    assert_eq!(
        run(&mut w, h, &["multipathd", "del", "map", "mpatha"]).stdout,
        "fail\n"
    );
    w.clear_faults();
    assert_eq!(
        run(&mut w, h, &["multipathd", "del", "map", "mpatha"]).stdout,
        "ok\n"
    );
    let bindings = read(&w.tree(h), "/etc/multipath/bindings").unwrap();
    assert!(bindings.ends_with(&format!("mpatha {wwid}\n")));
}

#[test]
fn strict_find_multipaths_needs_the_wwid_file() {
    let mut w = World::new(3);
    let mut hs = HostSpec::new("h");
    hs.multipathd = true;
    hs.find_multipaths_strict = true;
    let h = w.add_host(hs);
    let a = shared_array(&mut w, &[P1]);
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    login(&mut w, h, SHARED, P1, false);
    w.settle();
    assert!(w.tree(h).get("/sys/block/dm-0").is_none());
    let wwid = w.volume(v).unwrap().wwid.clone();
    let add = run(&mut w, h, &["multipath", "-a", &wwid]);
    assert_eq!(add.stdout, format!("wwid '{wwid}' added\n"));
    assert_eq!(
        run(&mut w, h, &["multipathd", "add", "path", "/dev/sda"]).stdout,
        "ok\n"
    );
    w.settle();
    assert!(w.tree(h).get("/sys/block/dm-0").is_some());
    assert_eq!(
        run(&mut w, h, &["multipathd", "add", "path", "/dev/sdz"]).status,
        1
    );
    // Without multipath-tools, the commands do not exist.
    let (mut w2, h2, _) = basic();
    assert_eq!(
        run(&mut w2, h2, &["multipathd", "show", "status"]).status,
        127
    );
}

#[test]
fn by_path_names_for_flat_addressing_and_ipv6() {
    let mut w = World::new(1);
    let h = w.add_host(HostSpec::new("h"));
    let mut spec = ArraySpec::new("flat", vec!["[fd00::2]:3260".to_owned()]);
    spec.flat_addressing = true;
    let a = w.add_array(spec);
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    let m = w.map_volume(v, h).unwrap();
    let props = w.connection_properties(v, h).unwrap();
    assert_eq!(props["data"]["addressing_mode"], "SAM3-flat");
    assert_eq!(props["data"]["target_lun"], 1);
    assert_eq!(login(&mut w, h, &m.iqn, "[fd00::2]:3260", true).status, 0);
    // The kernel sees 16384 + 1: scanning LUN 1 finds nothing.
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 1")
        .unwrap();
    assert!(w.host_devices(h).is_empty());
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 16385")
        .unwrap();
    w.settle();
    let t = w.tree(h);
    let name = format!(
        "/dev/disk/by-path/ip-fd00::2:3260-iscsi-{}-lun-0x4001000000000000",
        m.iqn
    );
    assert_eq!(link(&t, &name).as_deref(), Some("../../sda"));
    assert_eq!(
        read(
            &t,
            "/sys/class/iscsi_connection/connection1:0/persistent_address"
        )
        .as_deref(),
        Some("fd00::2\n")
    );
    let s = run(&mut w, h, &["iscsiadm", "-m", "session"]);
    assert_eq!(
        s.stdout,
        format!("tcp: [1] [fd00::2]:3260,1 {} (non-flash)\n", m.iqn)
    );
}

#[test]
fn multi_portal_connection_properties() {
    let mut w = World::new(1);
    let h = w.add_host(HostSpec::new("h"));
    let a = w.add_array(ArraySpec::new("a", vec![P1.to_owned(), P2.to_owned()]));
    let v = w.create_volume(a, "volume-1", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    let p = w.connection_properties(v, h).unwrap();
    assert_eq!(p["driver_volume_type"], "iscsi");
    assert_eq!(
        p["data"]["target_iqn"],
        "iqn.2010-10.org.openstack:volume-1"
    );
    assert_eq!(p["data"]["target_portals"], serde_json::json!([P1, P2]));
    assert_eq!(p["data"]["target_luns"], serde_json::json!([1, 1]));
    assert_eq!(p["data"]["target_discovered"], false);
    assert!(w.connection_properties(v, HostId(7)).is_err());
}

#[test]
fn portal_down_fails_paths_and_io() {
    let (mut w, h, _) = mp_world(false);
    w.inject(Fault::PortalDown {
        host: h,
        portal: P2.to_owned(),
    });
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/block/sdb/device/state").as_deref(),
        Some("transport-offline\n")
    );
    assert_eq!(
        read(&t, "/sys/class/iscsi_session/session2/state").as_deref(),
        Some("FAILED\n")
    );
    assert_eq!(
        read(&t, "/sys/block/sda/device/state").as_deref(),
        Some("running\n")
    );
    let ll = run(&mut w, h, &["multipath", "-ll"]);
    assert!(
        ll.stdout.contains("sdb 8:16 failed faulty offline"),
        "{}",
        ll.stdout
    );
    let dd = run(&mut w, h, &["dd", "if=/dev/sdb", "of=/dev/null", "count=1"]);
    assert_eq!(dd.status, 1);
    assert_eq!(
        run(
            &mut w,
            h,
            &["dd", "if=/dev/dm-0", "of=/dev/null", "count=1"]
        )
        .status,
        0
    );
    w.clear_faults();
    assert_eq!(
        run(&mut w, h, &["dd", "if=/dev/sdb", "of=/dev/null", "count=1"]).status,
        0
    );
}

#[test]
fn blockdev_and_tee() {
    let (mut w, h, a) = basic();
    let v = w.create_volume(a, "v", 3 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    login(&mut w, h, SHARED, P1, false);
    w.settle();
    let by_path = format!("/dev/disk/by-path/ip-{P1}-iscsi-{SHARED}-lun-1");
    let size = run(&mut w, h, &["blockdev", "--getsize64", &by_path]);
    assert_eq!(size.stdout, format!("{}\n", 3u64 << 30));
    w.inject(Fault::BlockdevFlushFails {
        host: h,
        times: Times::Always,
    });
    assert_eq!(
        run(&mut w, h, &["blockdev", "--flushbufs", "/dev/sda"]).status,
        1
    );
    w.clear_faults();
    assert_eq!(
        run(&mut w, h, &["blockdev", "--flushbufs", "/dev/sda"]).status,
        0
    );
    assert_eq!(
        run(&mut w, h, &["blockdev", "--flushbufs", "/dev/sdq"]).status,
        1
    );
    let argv: Vec<String> = ["tee", "-a", "/sys/block/sda/device/delete"]
        .map(str::to_owned)
        .to_vec();
    w.inject(Fault::DeviceDeleteBusy {
        host: h,
        device: Some("sda".into()),
        times: Times::Count(1),
    });
    let busy = w.exec(h, &argv, Some("1"));
    assert_eq!(
        (busy.status, busy.stderr.as_str()),
        (
            1,
            "tee: /sys/block/sda/device/delete: Device or resource busy\n"
        )
    );
    let ok = w.exec(h, &argv, Some("1"));
    assert_eq!((ok.status, ok.stdout.as_str()), (0, "1"));
    assert!(w.host_devices(h).is_empty());
    let gone = w.exec(h, &argv, Some("1"));
    assert_eq!(
        gone.stderr,
        "tee: /sys/block/sda/device/delete: No such file or directory\n"
    );
}

#[test]
fn garbage_control_writes_give_errors_not_panics() {
    let (mut w, h, a) = basic();
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    login(&mut w, h, SHARED, P1, true);
    let scan = "/sys/class/scsi_host/host0/scan";
    for bad in [
        "0 0 x", "", "0 0", "1 2 3 4", "\0", "- - - -", "0 0 -1", "💥 0 1",
    ] {
        let e = w.write_control(h, scan, bad).unwrap_err();
        assert_eq!(e.kind, Errno::EINVAL, "{bad:?}");
    }
    let cases: &[(&str, Errno)] = &[
        ("/sys/class/scsi_host/host9/scan", Errno::ENOENT),
        ("/sys/block/sdz/device/delete", Errno::ENOENT),
        ("relative/path", Errno::ENOENT),
        ("/sys/class/scsi_host", Errno::EISDIR),
        ("/sys/class/scsi_host/host0/proc_name", Errno::EACCES),
        ("/sys/../../etc/passwd", Errno::ENOENT),
        (
            "/sys/class/iscsi_session/session1/recovery_tmo",
            Errno::EINVAL,
        ),
    ];
    for (p, kind) in cases {
        assert_eq!(
            w.write_control(h, p, "garbage").unwrap_err().kind,
            *kind,
            "{p}"
        );
    }
    // Channel/target that do not exist on an iSCSI host: accepted, nothing happens.
    w.write_control(h, scan, "1 0 1").unwrap();
    assert!(w.host_devices(h).is_empty());
    for p in [
        "/sys/block",
        "/etc/iscsi/initiatorname.iscsi",
        "/dev/../etc",
        "/dev/sda",
    ] {
        assert!(w.remove(h, p).is_err(), "{p}");
    }
    for argv in [
        vec![],
        vec!["iscsiadm".to_owned(), "-m".to_owned()],
        vec!["multipath".to_owned(), "-f".to_owned()],
    ] {
        let out = w.exec(h, &argv, None);
        assert_ne!(out.status, 0);
    }
}

#[test]
fn same_seed_same_world() {
    let build = |seed| {
        let (mut w, h, v) = {
            let mut w = World::new(seed);
            let h = w.add_host(HostSpec::new("h"));
            let a = shared_array(&mut w, &[P1]);
            let v = w.create_volume(a, "v", 1 << 30).unwrap();
            (w, h, v)
        };
        w.map_volume(v, h).unwrap();
        login(&mut w, h, SHARED, P1, false);
        w.settle();
        w.tree(h)
    };
    assert_eq!(build(11), build(11));
    assert_ne!(build(11), build(12));
}

mod materialize {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    fn walk(root: &Path) -> BTreeMap<String, String> {
        fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            for e in fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
                let m = fs::symlink_metadata(&p).unwrap();
                let mode = m.permissions().mode() & 0o7777;
                if m.file_type().is_symlink() {
                    out.insert(rel, format!("l {}", fs::read_link(&p).unwrap().display()));
                } else if m.is_dir() {
                    out.insert(rel, format!("d {mode:o}"));
                    go(root, &p, out);
                } else {
                    out.insert(rel, format!("f {mode:o} {}", m.len()));
                }
            }
        }
        let mut out = BTreeMap::new();
        go(root, root, &mut out);
        out
    }

    fn expected(t: &Tree) -> BTreeMap<String, String> {
        t.iter()
            .map(|(p, n)| {
                let v = match n {
                    Node::Dir { mode } => format!("d {:o}", mode | 0o700),
                    Node::File { mode, content } => format!("f {mode:o} {}", content.len()),
                    Node::Link { target } => format!("l {target}"),
                    Node::Block { mode, .. }
                    | Node::Char { mode, .. }
                    | Node::Unreadable { mode, .. } => format!("f {mode:o} 0"),
                };
                (p.to_owned(), v)
            })
            .collect()
    }

    #[test]
    fn writes_exactly_the_tree_and_applies_differences() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let (mut w, h, v) = mp_world(false);
        w.materialize(h, &root).unwrap();
        assert_eq!(walk(&root), expected(&w.tree(h)));
        assert_eq!(
            fs::read_to_string(root.join("sys/block/sda/dev")).unwrap(),
            "8:0\n"
        );
        assert!(fs::read_link(root.join("sys/class/scsi_host/host0")).is_ok());
        // Rescanning after a resize rewrites read-only files; deleting removes entries.
        w.write_control(h, "/sys/block/sdb/device/delete", "1")
            .unwrap();
        w.settle();
        w.materialize(h, &root).unwrap();
        assert_eq!(walk(&root), expected(&w.tree(h)));
        assert!(!root.join("sys/block/sdb").exists());
        assert!(
            fs::symlink_metadata(root.join("sys/devices/platform/host1/session2/target1:0:0"))
                .is_err()
        );
        let wwid = w.volume(v).unwrap().wwid.clone();
        run(&mut w, h, &["multipath", "-f", &wwid]);
        run(&mut w, h, &["iscsiadm", "-m", "node", "--logout"]);
        w.settle();
        w.materialize(h, &root).unwrap();
        assert_eq!(walk(&root), expected(&w.tree(h)));
        // Nothing was written next to the root.
        let siblings: Vec<_> = fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(siblings, ["root"]);
        // A fresh materializer over a dirty dir still converges.
        w.forget_materialized(h, &root);
        w.materialize(h, &root).unwrap();
        assert!(walk(&root).len() >= expected(&w.tree(h)).len());
    }

    #[test]
    fn never_writes_through_a_planted_symlink() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let victim = outer.path().join("victim");
        fs::create_dir_all(&victim).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("etc/iscsi")).unwrap();
        let (mut w, h, a) = basic();
        // First pass: the planted link is replaced by the real directory.
        w.materialize(h, &root).unwrap();
        assert!(
            fs::symlink_metadata(root.join("etc/iscsi"))
                .unwrap()
                .is_dir()
        );
        // Incremental pass: a link planted at an unchanged parent is refused.
        fs::remove_dir_all(root.join("sys/block")).unwrap();
        std::os::unix::fs::symlink(&victim, root.join("sys/block")).unwrap();
        let v = w.create_volume(a, "v", 1 << 30).unwrap();
        w.map_volume(v, h).unwrap();
        login(&mut w, h, SHARED, P1, false);
        assert!(w.materialize(h, &root).is_err());
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
    }
}

#[test]
fn many_attach_detach_cycles_leave_nothing_and_stay_fast() {
    // tmpfs when available: a journaling disk makes file creation the bottleneck.
    let outer = tempfile::Builder::new()
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let (mut w, h, v) = mp_world(false);
    let wwid = w.volume(v).unwrap().wwid.clone();
    let a = ArrayId(0);
    run(&mut w, h, &["multipath", "-f", &wwid]);
    run(&mut w, h, &["iscsiadm", "-m", "node", "--logout"]);
    w.settle();
    let start = std::time::Instant::now();
    let materialize = std::env::var_os("SIM_NO_MAT").is_none();
    for i in 0..60 {
        let v = w.create_volume(a, &format!("c{i}"), 1 << 30).unwrap();
        w.map_volume(v, h).unwrap();
        login(&mut w, h, SHARED, P1, true);
        w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 2")
            .unwrap();
        w.settle();
        if materialize {
            w.materialize(h, outer.path()).unwrap();
        }
        let name = w
            .host_devices(h)
            .into_iter()
            .find(|d| d.name.starts_with("dm-"))
            .unwrap()
            .name;
        assert_eq!(name, "dm-0");
        let map = w.volume(v).unwrap().wwid.clone();
        assert_eq!(run(&mut w, h, &["multipath", "-f", &map]).status, 0);
        w.write_control(h, "/sys/block/sda/device/delete", "1")
            .unwrap();
        run(
            &mut w,
            h,
            &["iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--logout"],
        );
        run(
            &mut w,
            h,
            &[
                "iscsiadm", "-m", "node", "-T", SHARED, "-p", P1, "--op", "delete",
            ],
        );
        w.delete_volume(v).unwrap();
        w.settle();
        if materialize {
            w.materialize(h, outer.path()).unwrap();
        }
        assert!(w.host_devices(h).is_empty());
        assert!(w.stale_links(h).is_empty());
        assert!(w.sessions(h).is_empty());
    }
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert!(!outer.path().join("sys/devices/platform/host0").exists());
}

/// multipathd's `adopt_paths`: a map created for a WWID takes every path of its table with
/// that WWID that no map holds, not only the path that triggered it. Leftover disks of an
/// earlier attach join a new map of their WWID this way (and carry its I/O).
#[test]
fn a_new_map_adopts_orphan_paths_of_its_wwid() {
    let (mut w, h, v) = mp_world(false);
    let wwid = w.volume(v).unwrap().wwid.clone();
    assert_eq!(run(&mut w, h, &["multipath", "-f", &wwid]).status, 0);
    w.settle();
    assert!(w.tree(h).get("/sys/block/dm-0").is_none());
    assert_eq!(
        run(
            &mut w,
            h,
            &["multipathd", "show", "paths", "raw", "format", "%d"]
        )
        .stdout,
        "sda\nsdb\n",
        "both paths stay in the table as orphans"
    );
    assert_eq!(
        run(&mut w, h, &["multipathd", "add", "path", "sdb"]).status,
        0
    );
    let maps = run(
        &mut w,
        h,
        &["multipathd", "show", "maps", "raw", "format", "%n %w %d %N"],
    );
    assert_eq!(maps.stdout, format!("{wwid} {wwid} dm-0 2\n"));
    let t = w.tree(h);
    assert!(link(&t, "/sys/devices/virtual/block/dm-0/slaves/sda").is_some());
    assert!(link(&t, "/sys/devices/virtual/block/dm-0/slaves/sdb").is_some());
}
