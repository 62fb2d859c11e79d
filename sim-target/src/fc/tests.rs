//! FC fabric, rport, scan and naming tests.

use std::time::Duration;

use rstest::rstest;

use super::{fc_by_path_name, hba_path_id, valid_device_path};
use crate::*;

const HBA1: u64 = 0x5001_4380_186a_f83c;
const HBA2: u64 = 0x5001_4380_186a_f83e;
const OTHER_HOST_HBA: u64 = 0x1000_0090_fa00_0001;
const A1: u64 = 0x514f_0c50_023f_6c00;
const A2: u64 = 0x514f_0c50_023f_6c01;
const B1: u64 = 0x5006_0160_9020_3181;

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

fn children(t: &Tree, dir: &str) -> Vec<String> {
    t.children(dir).map(|(n, _)| n.to_owned()).collect()
}

/// One host with two HBAs (fabrics a and b); array A with a port on each fabric, array B with
/// one port on fabric a; everything zoned.
fn fabric(multipathd: bool) -> (World, HostId, ArrayId, ArrayId) {
    let mut w = World::new(7);
    let mut spec = HostSpec::new("fc1")
        .with_fc_hba(FcHbaSpec::new(HBA1, "a", "0000:05:00.2"))
        .with_fc_hba(FcHbaSpec::new(HBA2, "b", "0000:05:00.3"));
    spec.multipathd = multipathd;
    let h = w.add_host(spec);
    let a = w.add_array(ArraySpec::fc(
        "A",
        vec![FcTargetPort::new(A1, "a"), FcTargetPort::new(A2, "b")],
    ));
    let b = w.add_array(ArraySpec::fc("B", vec![FcTargetPort::new(B1, "a")]));
    w.zone_host_to_array(h, a).unwrap();
    w.zone_host_to_array(h, b).unwrap();
    (w, h, a, b)
}

fn scan(w: &mut World, host_no: u32, what: &str) {
    w.write_control(
        HostId(0),
        &format!("/sys/class/scsi_host/host{host_no}/scan"),
        what,
    )
    .unwrap();
    w.settle();
}

#[test]
fn hbas_are_scsi_hosts_with_fc_host_attributes() {
    let (w, h, _, _) = fabric(false);
    let t = w.tree(h);
    assert_eq!(
        link(&t, "/sys/class/fc_host/host0").as_deref(),
        Some("../../devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0/fc_host/host0")
    );
    assert_eq!(
        read(&t, "/sys/class/fc_host/host0/port_name").as_deref(),
        Some("0x50014380186af83c\n")
    );
    assert_eq!(
        read(&t, "/sys/class/fc_host/host1/node_name").as_deref(),
        Some("0x20014380186af83e\n")
    );
    assert_eq!(
        read(&t, "/sys/class/fc_host/host0/port_state").as_deref(),
        Some("Online\n")
    );
    assert_eq!(
        read(&t, "/sys/class/scsi_host/host0/proc_name").as_deref(),
        Some("qla2xxx\n")
    );
    assert_eq!(
        t.resolve("/sys/class/fc_host/host0/device").as_deref(),
        Some("/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0")
    );
    assert!(matches!(
        t.get("/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0/scsi_host/host0/scan"),
        Some(Node::File { mode: 0o200, .. })
    ));
    // port ids are 0x%06x, distinct.
    let id0 = read(&t, "/sys/class/fc_host/host0/port_id").unwrap();
    let id1 = read(&t, "/sys/class/fc_host/host1/port_id").unwrap();
    assert_eq!(id0.len(), "0x010100\n".len());
    assert_ne!(id0, id1);
}

#[test]
fn rports_for_targets_and_for_other_initiators() {
    let (mut w, h, _, _) = fabric(false);
    let h2 = w.add_host(HostSpec::new("fc2").with_fc_hba(FcHbaSpec::new(
        OTHER_HOST_HBA,
        "a",
        "0000:05:00.2",
    )));
    w.zone(HBA1, OTHER_HOST_HBA).unwrap();
    let hbas = w.hbas(h);
    let host0 = &hbas[0];
    let targets: Vec<(u64, i64, FcRole)> = host0
        .rports
        .iter()
        .map(|r| (r.wwpn, r.scsi_target_id, r.role))
        .collect();
    assert_eq!(
        targets,
        [
            (A1, 0, FcRole::Target),
            (B1, 1, FcRole::Target),
            (OTHER_HOST_HBA, -1, FcRole::Initiator)
        ]
    );
    // host1 (fabric b) sees only A2.
    assert_eq!(hbas[1].rports.len(), 1);
    assert_eq!(hbas[1].rports[0].wwpn, A2);
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/class/fc_remote_ports/rport-0:0-2/scsi_target_id").as_deref(),
        Some("-1\n")
    );
    assert_eq!(
        read(&t, "/sys/class/fc_remote_ports/rport-0:0-2/roles").as_deref(),
        Some("FCP Initiator\n")
    );
    assert_eq!(
        read(&t, "/sys/class/fc_remote_ports/rport-0:0-0/roles").as_deref(),
        Some("FCP Target\n")
    );
    assert_eq!(
        read(&t, "/sys/class/fc_remote_ports/rport-0:0-0/port_name").as_deref(),
        Some("0x514f0c50023f6c00\n")
    );
    assert_eq!(
        link(&t, "/sys/class/fc_remote_ports/rport-0:0-0").as_deref(),
        Some(
            "../../devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0/rport-0:0-0/fc_remote_ports/rport-0:0-0"
        )
    );
    // The other host sees host fc1's HBA as an initiator too.
    let other = w.hbas(h2);
    assert_eq!(other[0].rports.len(), 1);
    assert_eq!(other[0].rports[0].scsi_target_id, -1);
    // Ports on different fabrics cannot be zoned.
    assert_eq!(
        w.zone(HBA2, B1),
        Err(SimError::FabricMismatch { a: HBA2, b: B1 })
    );
    assert_eq!(w.zone(HBA1, 0xdead), Err(SimError::UnknownPort(0xdead)));
}

#[test]
fn fc_transport_lists_only_targets_with_luns() {
    let (mut w, h, a, _) = fabric(false);
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    assert_eq!(w.map_volume(v, h).unwrap().lun, 1);
    let t = w.tree(h);
    assert!(children(&t, "/sys/class/fc_transport").is_empty());
    // rport-0:0-0 (A1) has no target dir before a scan.
    assert!(
        t.get("/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0/rport-0:0-0/target0:0:0")
            .is_none()
    );
    scan(&mut w, 0, "0 0 1");
    let t = w.tree(h);
    assert_eq!(children(&t, "/sys/class/fc_transport"), ["target0:0:0"]);
    assert_eq!(
        read(&t, "/sys/class/fc_transport/target0:0:0/port_name").as_deref(),
        Some("0x514f0c50023f6c00\n")
    );
    assert_eq!(
        link(&t, "/sys/class/fc_transport/target0:0:0").as_deref(),
        Some(
            "../../devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0/rport-0:0-0/target0:0:0/fc_transport/target0:0:0"
        )
    );
    assert_eq!(
        link(&t, "/sys/block/sda").as_deref(),
        Some(
            "../devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0/rport-0:0-0/target0:0:0/0:0:0:1/block/sda"
        )
    );
    assert_eq!(
        link(
            &t,
            "/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.2/host0/rport-0:0-0/target0:0:0/0:0:0:1/subsystem"
        )
        .as_deref(),
        Some("../../../../../../../../bus/scsi")
    );
    let d = w.host_devices(h);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].hctl.as_deref(), Some("0:0:0:1"));
    assert_eq!(d[0].backing, Some(v));
    assert!(d[0].links.contains(&format!(
        "/dev/disk/by-id/scsi-{}",
        w.volume(v).unwrap().wwid
    )));
    assert!(
        d[0].links
            .contains(&"/dev/disk/by-path/pci-0000:05:00.2-fc-0x514f0c50023f6c00-lun-1".to_owned())
    );
}

#[test]
fn narrow_scan_reaches_only_its_target_and_wildcard_reaches_other_arrays() {
    let (mut w, h, a, b) = fabric(false);
    let va = w.create_volume(a, "va", 1 << 30).unwrap();
    let vb = w.create_volume(b, "vb", 1 << 30).unwrap();
    // Both arrays present their volume to this host as LUN 1.
    assert_eq!(w.map_volume(va, h).unwrap().lun, 1);
    assert_eq!(w.map_volume(vb, h).unwrap().lun, 1);
    // os-brick's narrow scan: channel 0, target id of A1's rport, LUN 1.
    scan(&mut w, 0, "0 0 1");
    let backing: Vec<Option<VolumeId>> = w.host_devices(h).iter().map(|d| d.backing).collect();
    assert_eq!(backing, [Some(va)]);
    // A wildcard scan for LUN 1 reaches array B's LUN 1 too.
    scan(&mut w, 0, "- - 1");
    let mut found: Vec<(String, Option<VolumeId>)> = w
        .host_devices(h)
        .into_iter()
        .map(|d| (d.hctl.unwrap_or_default(), d.backing))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("0:0:0:1".to_owned(), Some(va)),
            ("0:0:1:1".to_owned(), Some(vb))
        ]
    );
    let t = w.tree(h);
    assert_eq!(
        children(&t, "/sys/class/fc_transport"),
        ["target0:0:0", "target0:0:1"]
    );
    assert!(
        t.get("/dev/disk/by-path/pci-0000:05:00.2-fc-0x500601609020318-lun-1")
            .is_none()
    );
    assert_eq!(
        link(
            &t,
            "/dev/disk/by-path/pci-0000:05:00.2-fc-0x5006016090203181-lun-1"
        )
        .as_deref(),
        Some("../../sdb")
    );
    // A scan for a target id nobody has, or channel 1, does nothing.
    let before = w.host_devices(h).len();
    scan(&mut w, 0, "0 7 1");
    scan(&mut w, 0, "1 - -");
    assert_eq!(w.host_devices(h).len(), before);
    // The fabric-b HBA only sees array A's second port.
    scan(&mut w, 1, "- - -");
    let on_host1: Vec<Option<VolumeId>> = w
        .host_devices(h)
        .into_iter()
        .filter(|d| d.hctl.as_deref().is_some_and(|c| c.starts_with("1:")))
        .map(|d| d.backing)
        .collect();
    assert_eq!(on_host1, [Some(va)]);
    // Writing to a host that does not exist fails.
    assert_eq!(
        w.write_control(h, "/sys/class/scsi_host/host9/scan", "- - -")
            .unwrap_err()
            .kind,
        Errno::ENOENT
    );
    assert_eq!(
        w.write_control(h, "/sys/class/scsi_host/host0/scan", "x y z")
            .unwrap_err()
            .kind,
        Errno::EINVAL
    );
}

#[rstest]
#[case("pci0000:00/0000:00:03.0/0000:05:00.2", "pci-0000:05:00.2")]
#[case(
    "platform/smb/smb:motherboard/80040000000.peu0-c0/pci0000:00/0000:00:03.0/0000:05:00.2",
    "platform-80040000000.peu0-c0-pci-0000:05:00.2"
)]
fn hba_path_ids(#[case] path: &str, #[case] id: &str) {
    assert!(valid_device_path(path));
    assert_eq!(hba_path_id(path), id);
}

#[rstest]
#[case(0, "lun-0")]
#[case(255, "lun-255")]
#[case(256, "lun-0x0100000000000000")]
#[case(16385, "lun-0x4001000000000000")]
fn fc_by_path_lun_formats(#[case] lun: u64, #[case] suffix: &str) {
    assert_eq!(
        fc_by_path_name(
            "pci0000:00/0000:00:03.0/0000:05:00.2",
            0x1234_5678_9012_3456,
            lun
        ),
        format!("pci-0000:05:00.2-fc-0x1234567890123456-{suffix}")
    );
    // port_name is printed 0x%llx: no zero padding.
    assert!(
        fc_by_path_name("pci0000:00/0000:00:03.0/0000:05:00.2", 0x0123, lun).contains("-fc-0x123-")
    );
}

#[test]
fn invalid_device_paths_are_refused() {
    for p in [
        "",
        "pci0000:00/../0000:05:00.2",
        "pci0000:00//0000:05:00.2",
        "pci0000:00/host0",
    ] {
        assert!(!valid_device_path(p), "{p}");
    }
    let mut w = World::new(1);
    let mut bad = FcHbaSpec::new(HBA1, "a", "0000:05:00.2");
    bad.device_path = "../../etc".to_owned();
    let h = w.add_host(HostSpec::new("x").with_fc_hba(bad));
    assert!(w.hbas(h).is_empty());
}

#[test]
fn by_path_links_for_lun_0_255_256_flat_and_platform() {
    let mut w = World::new(3);
    let h = w.add_host(
        HostSpec::new("p").with_fc_hba(
            FcHbaSpec::new(HBA1, "a", "0000:05:00.2")
                .behind_platform("smb/smb:motherboard/80040000000.peu0-c0"),
        ),
    );
    let mut spec = ArraySpec::fc("A", vec![FcTargetPort::new(A1, "a")]);
    spec.first_lun = 0;
    let a = w.add_array(spec);
    let mut flat = ArraySpec::fc("F", vec![FcTargetPort::new(B1, "a")]);
    flat.flat_addressing = true;
    let f = w.add_array(flat);
    w.zone_host_to_array(h, a).unwrap();
    w.zone_host_to_array(h, f).unwrap();
    let mut luns = Vec::new();
    for i in 0..258 {
        let v = w.create_volume(a, &format!("v{i}"), 1 << 20).unwrap();
        luns.push(w.map_volume(v, h).unwrap().lun);
    }
    assert_eq!(luns[0], 0);
    assert_eq!(luns[257], 257);
    let vf = w.create_volume(f, "flat", 1 << 20).unwrap();
    assert_eq!(w.map_volume(vf, h).unwrap().lun, 1);
    for l in ["0", "255", "256"] {
        scan(&mut w, 0, &format!("0 0 {l}"));
    }
    scan(&mut w, 0, "0 1 16385");
    let t = w.tree(h);
    let base = "/dev/disk/by-path/platform-80040000000.peu0-c0-pci-0000:05:00.2";
    for (name, dev) in [
        (format!("{base}-fc-0x514f0c50023f6c00-lun-0"), "sda"),
        (format!("{base}-fc-0x514f0c50023f6c00-lun-255"), "sdb"),
        (
            format!("{base}-fc-0x514f0c50023f6c00-lun-0x0100000000000000"),
            "sdc",
        ),
        (
            format!("{base}-fc-0x5006016090203181-lun-0x4001000000000000"),
            "sdd",
        ),
    ] {
        assert_eq!(
            link(&t, &name).as_deref(),
            Some(format!("../../{dev}").as_str()),
            "{name}"
        );
    }
    assert_eq!(
        link(&t, "/sys/class/fc_host/host0").as_deref(),
        Some(
            "../../devices/platform/smb/smb:motherboard/80040000000.peu0-c0/pci0000:00/0000:00:03.0/0000:05:00.2/host0/fc_host/host0"
        )
    );
}

#[test]
fn hba_linkdown_blocks_then_loses_devices_and_comes_back() {
    let (mut w, h, a, _) = fabric(false);
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    scan(&mut w, 0, "0 0 1");
    let bypath = "/dev/disk/by-path/pci-0000:05:00.2-fc-0x514f0c50023f6c00-lun-1";
    assert_eq!(
        run(
            &mut w,
            h,
            &["dd", &format!("if={bypath}"), "of=/dev/null", "count=1"]
        )
        .status,
        0
    );
    w.set_hba_port_state(h, HBA1, FcPortState::Linkdown)
        .unwrap();
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/class/fc_host/host0/port_state").as_deref(),
        Some("Linkdown\n")
    );
    assert_eq!(
        read(&t, "/sys/class/fc_remote_ports/rport-0:0-0/port_state").as_deref(),
        Some("Blocked\n")
    );
    assert_eq!(
        read(&t, "/sys/class/scsi_device/0:0:0:1/device/state").as_deref(),
        Some("blocked\n")
    );
    assert_ne!(
        run(
            &mut w,
            h,
            &["dd", &format!("if={bypath}"), "of=/dev/null", "count=1"]
        )
        .status,
        0
    );
    // Scans do nothing while the link is down (no settle: that would run dev_loss_tmo out).
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "- - -")
        .unwrap();
    assert_eq!(w.host_devices(h).len(), 1);
    // Back within dev_loss_tmo: same rport, same device.
    w.advance(Duration::from_secs(10));
    w.set_hba_port_state(h, HBA1, FcPortState::Online).unwrap();
    w.advance(Duration::from_secs(60));
    assert_eq!(w.host_devices(h).len(), 1);
    assert_eq!(w.hbas(h)[0].rports[0].state, FcPortState::Online);
    // Down for longer than dev_loss_tmo: the device goes, the rport stays Not Present.
    w.set_hba_port_state(h, HBA1, FcPortState::Linkdown)
        .unwrap();
    w.advance(Duration::from_secs(31));
    w.settle();
    assert!(w.host_devices(h).is_empty());
    assert!(w.stale_links(h).is_empty());
    let t = w.tree(h);
    assert_eq!(
        read(&t, "/sys/class/fc_remote_ports/rport-0:0-0/port_state").as_deref(),
        Some("Not Present\n")
    );
    assert!(children(&t, "/sys/class/fc_transport").is_empty());
    assert!(t.get(bypath).is_none());
    // Link back: the binding keeps target id 0 and the rport number.
    w.set_hba_port_state(h, HBA1, FcPortState::Online).unwrap();
    let r = &w.hbas(h)[0].rports[0];
    assert_eq!(
        (r.name.as_str(), r.scsi_target_id, r.state),
        ("rport-0:0-0", 0, FcPortState::Online)
    );
    assert!(w.set_hba_port_state(h, 0x42, FcPortState::Online).is_err());
}

#[test]
fn unzoning_removes_the_target_after_dev_loss() {
    let (mut w, h, a, _) = fabric(false);
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    scan(&mut w, 0, "- - -");
    assert_eq!(w.host_devices(h).len(), 1);
    w.unzone(HBA1, A1).unwrap();
    assert_eq!(w.hbas(h)[0].rports[0].state, FcPortState::Blocked);
    w.advance(Duration::from_secs(30));
    w.settle();
    assert!(w.host_devices(h).is_empty());
    assert_eq!(
        w.unzone(HBA1, A1),
        Err(SimError::NotZoned { a: HBA1, b: A1 })
    );
}

#[test]
fn multipath_over_two_hbas_and_scsi_id() {
    let (mut w, h, a, _) = fabric(true);
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    scan(&mut w, 0, "0 0 1");
    scan(&mut w, 1, "0 0 1");
    let wwid = w.volume(v).unwrap().wwid.clone();
    let devs = w.host_devices(h);
    let dm = devs.iter().find(|d| d.name == "dm-0").unwrap();
    assert_eq!(dm.slaves, ["sda", "sdb"]);
    assert_eq!(dm.backing, Some(v));
    let t = w.tree(h);
    assert_eq!(
        link(&t, "/sys/devices/virtual/block/dm-0/slaves/sdb").as_deref(),
        Some(
            "../../../../pci0000:00/0000:00:03.0/0000:05:00.3/host1/rport-1:0-0/target1:0:0/1:0:0:1/block/sdb"
        )
    );
    assert!(
        t.resolve("/sys/devices/virtual/block/dm-0/slaves/sdb/dev")
            .is_some()
    );
    let out = run(
        &mut w,
        h,
        &[
            "/lib/udev/scsi_id",
            "--page",
            "0x83",
            "--whitelisted",
            "/dev/disk/by-path/pci-0000:05:00.3-fc-0x514f0c50023f6c01-lun-1",
        ],
    );
    assert_eq!(out.stdout, format!("{wwid}\n"));
    assert_eq!(
        link(&t, &format!("/dev/disk/by-id/dm-uuid-mpath-{wwid}")).as_deref(),
        Some("../../dm-0")
    );
}

#[test]
fn connection_properties_in_cinder_form() {
    let (mut w, h, a, _) = fabric(false);
    let v = w.create_volume(a, "volume-1", 1 << 30).unwrap();
    let m = w.map_volume(v, h).unwrap();
    assert_eq!(m.iqn, "");
    assert_eq!(m.portals, ["514f0c50023f6c00", "514f0c50023f6c01"]);
    let p = w.connection_properties(v, h).unwrap();
    assert_eq!(p["driver_volume_type"], "fibre_channel");
    let d = &p["data"];
    assert_eq!(d["target_lun"], 1);
    assert_eq!(d["target_discovered"], false);
    assert_eq!(d["volume_id"], "volume-1");
    assert_eq!(
        d["target_wwn"],
        serde_json::json!(["514f0c50023f6c00", "514f0c50023f6c01"])
    );
    assert_eq!(
        d["initiator_target_map"],
        serde_json::json!({
            "50014380186af83c": ["514f0c50023f6c00"],
            "50014380186af83e": ["514f0c50023f6c01"],
        })
    );
}

#[test]
fn fc_worlds_are_deterministic() {
    let build = || {
        let (mut w, h, a, b) = fabric(true);
        for (arr, n) in [(a, "x"), (b, "y"), (a, "z")] {
            let v = w.create_volume(arr, n, 1 << 30).unwrap();
            w.map_volume(v, h).unwrap();
        }
        scan(&mut w, 0, "- - -");
        scan(&mut w, 1, "- - -");
        (w.tree(h), w.host_devices(h))
    };
    assert_eq!(build(), build());
}

#[test]
fn hba_linkdown_after_takes_the_link_down_at_its_virtual_time() {
    let (mut w, h, a, _) = fabric(true);
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    let fault = Fault::HbaLinkdownAfter {
        host: h,
        wwpn: HBA2,
        after: Duration::from_secs(1),
    };
    w.inject(fault.clone());
    // An attach's scans run before the link goes.
    for host_no in [0, 1] {
        w.write_control(
            h,
            &format!("/sys/class/scsi_host/host{host_no}/scan"),
            "0 0 1",
        )
        .unwrap();
    }
    w.advance(Duration::from_millis(500));
    assert_eq!(w.hbas(h)[1].state, FcPortState::Online);
    assert_eq!(w.host_devices(h).len(), 3, "sda, sdb and dm-0");
    w.advance(Duration::from_millis(600));
    assert_eq!(w.hbas(h)[1].state, FcPortState::Linkdown);
    assert_eq!(w.hbas(h)[1].rports[0].state, FcPortState::Blocked);
    assert_eq!(w.hbas(h)[0].state, FcPortState::Online);
    // The dev_loss_tmo timer does not hold back udev events queued after it: a LUN scanned
    // on the remaining HBA gets its link after the normal udev delay.
    let v2 = w.create_volume(a, "v2", 1 << 30).unwrap();
    w.map_volume(v2, h).unwrap();
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 2")
        .unwrap();
    w.advance(Duration::from_millis(100));
    assert!(
        w.tree(h)
            .get("/dev/disk/by-path/pci-0000:05:00.2-fc-0x514f0c50023f6c00-lun-2")
            .is_some()
    );
    // Past dev_loss_tmo the device behind the downed HBA goes; the map keeps one path.
    w.settle();
    let devs = w.host_devices(h);
    assert!(devs.iter().all(|d| d.name != "sdb"), "{devs:?}");
    let dm = devs
        .iter()
        .find(|d| d.backing == Some(v) && d.name.starts_with("dm-"));
    assert_eq!(dm.map(|d| d.slaves.clone()), Some(vec!["sda".to_owned()]));
    // Clearing the fault brings the link back, and the kernel scans the returning target
    // for every LUN presented to the host (`fc_scsi_scan_rport`): both LUNs come back
    // behind HBA 2 (host1), and the map gets its second path again.
    w.clear_faults();
    assert_eq!(w.hbas(h)[1].state, FcPortState::Online);
    assert_eq!(w.hbas(h)[1].rports[0].state, FcPortState::Online);
    w.settle();
    let devs = w.host_devices(h);
    let back: Vec<&str> = devs
        .iter()
        .filter_map(|d| d.hctl.as_deref())
        .filter(|hctl| hctl.starts_with("1:"))
        .collect();
    assert_eq!(back, vec!["1:0:0:1", "1:0:0:2"], "{devs:?}");
    let dm = devs
        .iter()
        .find(|d| d.backing == Some(v) && d.name.starts_with("dm-"));
    assert_eq!(dm.map(|d| d.slaves.len()), Some(2), "{devs:?}");
}

/// With `scsi_mod.scan=manual` a returning remote port is not scanned: what went with
/// `dev_loss_tmo` stays gone until someone scans.
#[test]
fn a_returning_rport_is_not_scanned_with_manual_scan() {
    let mut w = World::new(7);
    let mut spec = HostSpec::new("fc1").with_fc_hba(FcHbaSpec::new(HBA1, "a", "0000:05:00.2"));
    spec.scsi_scan_manual = true;
    let h = w.add_host(spec);
    let a = w.add_array(ArraySpec::fc("A", vec![FcTargetPort::new(A1, "a")]));
    w.zone_host_to_array(h, a).unwrap();
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    scan(&mut w, 0, "0 0 1");
    assert_eq!(w.host_devices(h).len(), 1);
    w.set_hba_port_state(h, HBA1, FcPortState::Linkdown)
        .unwrap();
    w.settle();
    assert!(w.host_devices(h).is_empty(), "gone past dev_loss_tmo");
    w.set_hba_port_state(h, HBA1, FcPortState::Online).unwrap();
    w.settle();
    assert!(
        w.host_devices(h).is_empty(),
        "manual scan: nothing comes back"
    );
    // The default (`scan=sync`) scans it: the same history brings the LUN back.
    let mut w = World::new(7);
    let h = w.add_host(HostSpec::new("fc1").with_fc_hba(FcHbaSpec::new(HBA1, "a", "0000:05:00.2")));
    let a = w.add_array(ArraySpec::fc("A", vec![FcTargetPort::new(A1, "a")]));
    w.zone_host_to_array(h, a).unwrap();
    let v = w.create_volume(a, "v", 1 << 30).unwrap();
    w.map_volume(v, h).unwrap();
    w.set_hba_port_state(h, HBA1, FcPortState::Linkdown)
        .unwrap();
    w.settle();
    w.set_hba_port_state(h, HBA1, FcPortState::Online).unwrap();
    w.settle();
    let devs = w.host_devices(h);
    assert_eq!(devs.len(), 1, "{devs:?}");
    assert_eq!(devs[0].backing, Some(v));
}

#[test]
fn hba_linkdown_after_cleared_in_time_never_fires() {
    let (mut w, h, _, _) = fabric(false);
    let fault = Fault::HbaLinkdownAfter {
        host: h,
        wwpn: HBA1,
        after: Duration::from_secs(5),
    };
    w.inject(fault.clone());
    assert_eq!(w.pending_events(), 1);
    w.advance(Duration::from_secs(1));
    w.clear_fault(&fault);
    assert_eq!(w.pending_events(), 0, "its timer is gone");
    w.advance(Duration::from_secs(10));
    assert_eq!(w.hbas(h)[0].state, FcPortState::Online);
    // An HBA the host does not have: the fault fires and changes nothing.
    w.inject(Fault::HbaLinkdownAfter {
        host: h,
        wwpn: 0x42,
        after: Duration::ZERO,
    });
    w.settle();
    assert!(w.hbas(h).iter().all(|b| b.state == FcPortState::Online));
}

/// Found by the property machine: deleting one FC volume removed the array's only FC target,
/// unmapping every other volume of the array.
#[test]
fn deleting_one_fc_volume_keeps_the_others_mapped() {
    let (mut w, h, a, _) = fabric(false);
    let v1 = w.create_volume(a, "v1", 1 << 30).unwrap();
    let v2 = w.create_volume(a, "v2", 1 << 30).unwrap();
    assert_eq!(w.map_volume(v1, h).unwrap().lun, 1);
    w.delete_volume(v2).unwrap();
    scan(&mut w, 0, "0 0 1");
    let backing: Vec<Option<VolumeId>> = w.host_devices(h).iter().map(|d| d.backing).collect();
    assert_eq!(backing, [Some(v1)], "v1 is still mapped at LUN 1");
}
