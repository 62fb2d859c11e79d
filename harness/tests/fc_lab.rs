//! The Fibre Channel connector end to end on the simulator: fabrics, zoning, HBAs and scans,
//! attach and detach through the real connector, every correctness property checked against
//! the simulator's truth.

use std::time::Duration;

use brick_connectors::{
    ConnectionProperties, ConnectorError, DeviceInfo, DisconnectOptions, Protocol,
};
use brick_harness::simhost::lock;
use brick_harness::{Lab, LabHostSpec, PropertyKind, Violation};
use brick_sim_target::{ArraySpec, FcHbaSpec, FcPortState, FcTargetPort, VolumeId};
use serde_json::Value;

const HOST: &str = "compute-1";
/// HBA ports: fabric a at PCI 05:00.2 (host0), fabric b at 05:00.3 (host1).
const HBA1: u64 = 0x2100_0024_ff7c_0001;
const HBA2: u64 = 0x2100_0024_ff7c_0002;
/// Array A's target ports on fabrics a and b.
const A1: u64 = 0x5006_0160_9020_3181;
const A2: u64 = 0x5006_0161_9020_3181;
/// Array B's target port on fabric a.
const B1: u64 = 0x514f_0c50_023f_6c00;

fn hba1() -> FcHbaSpec {
    FcHbaSpec::new(HBA1, "a", "0000:05:00.2")
}

fn hba2() -> FcHbaSpec {
    FcHbaSpec::new(HBA2, "b", "0000:05:00.3")
}

/// A host with these HBAs, multipath or not.
fn host(multipath: bool, hbas: Vec<FcHbaSpec>) -> LabHostSpec {
    let mut spec = if multipath {
        LabHostSpec::multipath(HOST)
    } else {
        LabHostSpec::single(HOST)
    };
    for h in hbas {
        spec.sim = spec.sim.with_fc_hba(h);
    }
    spec
}

/// Array `A` with ports A1 (fabric a) and A2 (fabric b).
fn array_a() -> ArraySpec {
    ArraySpec::fc(
        "A",
        vec![FcTargetPort::new(A1, "a"), FcTargetPort::new(A2, "b")],
    )
}

/// Array `B` with port B1 on fabric a.
fn array_b() -> ArraySpec {
    ArraySpec::fc("B", vec![FcTargetPort::new(B1, "a")])
}

/// A lab with one host, the arrays, and the host zoned to the arrays named in `zoned`.
fn lab(host: LabHostSpec, arrays: Vec<ArraySpec>, zoned: &[&str]) -> Lab {
    let mut lab = Lab::new(11);
    lab.add_host(host).unwrap();
    for a in arrays {
        lab.add_array(a).unwrap();
    }
    for a in zoned {
        lab.zone(HOST, a).unwrap();
    }
    lab
}

fn create_and_map(lab: &mut Lab, volume: &str, array: &str) {
    lab.create_volume(volume, array, 1 << 30).unwrap();
    lab.map(volume, HOST).unwrap();
}

fn wwid(lab: &Lab, volume: &str) -> String {
    let id = lab.volume_id(volume).unwrap();
    lock(lab.world()).volume_record(id).unwrap().wwid.clone()
}

fn settled_check(lab: &mut Lab) -> Vec<Violation> {
    lab.settle().unwrap();
    lab.check()
}

/// The journal and tree of the host, for failure messages.
fn context(lab: &Lab) -> String {
    format!(
        "connector log:\n{}\n\ntree:\n{}",
        lab.journal(HOST).unwrap().join("\n"),
        lab.tree_listing(HOST).unwrap()
    )
}

fn assert_clean(lab: &mut Lab, when: &str) {
    let v = settled_check(lab);
    assert!(
        v.is_empty(),
        "{when}: properties broken:\n{}\n\n{}",
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        context(lab)
    );
}

/// No by-path link, SCSI disk or dm map is left on the host.
fn no_host_state_left(lab: &Lab) {
    let listing = lab.tree_listing(HOST).unwrap();
    for needle in ["/dev/disk/by-path/", "/dev/sd", "/dev/dm-", "/dev/mapper/3"] {
        assert!(
            !listing.lines().any(|l| l.starts_with(needle)),
            "{needle} left behind:\n{listing}"
        );
    }
    let hid = lab.host_id(HOST).unwrap();
    assert!(lock(lab.world()).host_devices(hid).is_empty());
}

/// Scan writes of the connector: `(scsi host file, content)`.
fn scans(lab: &Lab) -> Vec<(String, String)> {
    lab.journal(HOST)
        .unwrap()
        .iter()
        .filter_map(|l| {
            let rest = l.split_once("] write ")?.1;
            let (path, content) = rest.split_once(" <- ")?;
            path.ends_with("/scan")
                .then(|| (path.to_owned(), content.trim_matches('"').to_owned()))
        })
        .collect()
}

/// Which volumes each HBA (by WWPN) has a SCSI device for, per the simulator.
fn luns_behind(lab: &Lab, wwpn: u64) -> Vec<u64> {
    let hid = lab.host_id(HOST).unwrap();
    let hbas = lock(lab.world()).hbas(hid);
    hbas.iter()
        .filter(|h| h.wwpn == wwpn)
        .flat_map(|h| h.rports.iter().flat_map(|r| r.luns.clone()))
        .collect()
}

fn backing_volumes(lab: &Lab) -> Vec<Option<VolumeId>> {
    let hid = lab.host_id(HOST).unwrap();
    lock(lab.world())
        .host_devices(hid)
        .iter()
        .filter(|d| d.name.starts_with("sd"))
        .map(|d| d.backing)
        .collect()
}

/// Connects with edited properties, outside the lab's record (for the scan-rule tests).
fn connect_raw(lab: &Lab, props: &Value) -> Result<DeviceInfo, ConnectorError> {
    let props = ConnectionProperties::from_json(props, None).unwrap();
    lab.connector(HOST, Protocol::FibreChannel)
        .unwrap()
        .connect_volume(&props)
}

fn disconnect_raw(lab: &Lab, props: &Value) {
    let props = ConnectionProperties::from_json(props, None).unwrap();
    lab.connector(HOST, Protocol::FibreChannel)
        .unwrap()
        .disconnect_volume(&props, None, DisconnectOptions::default())
        .unwrap();
}

#[test]
fn single_path_attach_returns_the_volume_and_detach_leaves_nothing() {
    let mut lab = lab(host(false, vec![hba1()]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    let dev = lab.attach("v1", HOST).unwrap();
    assert_eq!(
        dev.path.as_str(),
        format!("/dev/disk/by-path/pci-0000:05:00.2-fc-0x{A1:x}-lun-1"),
        "os-brick returns the by-path link on a single path"
    );
    assert_eq!(dev.scsi_wwn.as_ref().unwrap().as_str(), wwid(&lab, "v1"));
    assert_clean(&mut lab, "after attach");
    let paths = lab.volume_paths("v1", HOST).unwrap();
    assert_eq!(paths.paths.len(), 1, "{paths:?}");
    assert_eq!(paths.paths[0].device.as_ref().unwrap().as_str(), "/dev/sda");
    assert_eq!(
        scans(&lab),
        [(
            "/sys/class/scsi_host/host0/scan".to_owned(),
            "0 0 1".to_owned()
        )],
        "one narrow scan"
    );
    lab.detach("v1", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
    assert!(lab.volume_paths("v1", HOST).unwrap().paths.is_empty());
}

#[test]
fn multipath_over_two_fabrics_builds_a_map_and_detach_removes_everything() {
    let mut lab = lab(host(true, vec![hba1(), hba2()]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    let dev = lab.attach("v1", HOST).unwrap();
    assert!(dev.path.as_str().starts_with("/dev/dm-"), "{dev:?}");
    assert_eq!(
        dev.multipath_id.as_ref().unwrap().as_str(),
        wwid(&lab, "v1")
    );
    assert_clean(&mut lab, "after attach");
    let paths = lab.volume_paths("v1", HOST).unwrap();
    let mut names: Vec<&str> = paths.paths.iter().map(|p| p.path.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            format!("/dev/disk/by-path/pci-0000:05:00.2-fc-0x{A1:x}-lun-1"),
            format!("/dev/disk/by-path/pci-0000:05:00.3-fc-0x{A2:x}-lun-1"),
        ]
    );
    assert_eq!(luns_behind(&lab, HBA1), [1]);
    assert_eq!(luns_behind(&lab, HBA2), [1]);
    lab.detach("v1", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
    let journal = lab.journal(HOST).unwrap().join("\n");
    assert!(
        journal.contains("run multipath -f "),
        "flushed by name:\n{journal}"
    );
    for dev in ["sda", "sdb"] {
        assert!(
            journal.contains(&format!("write /sys/block/{dev}/device/delete <- \"1\"")),
            "{dev} deleted:\n{journal}"
        );
    }
}

#[test]
fn lun_reuse_after_a_clean_detach_returns_the_new_volume() {
    let mut lab = lab(host(true, vec![hba1(), hba2()]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    let lun_a = lab.props_json("v1", HOST).unwrap()["data"]["target_lun"].clone();
    lab.attach("v1", HOST).unwrap();
    lab.detach("v1", HOST, DisconnectOptions::default(), true)
        .unwrap();
    lab.delete("v1").unwrap();
    create_and_map(&mut lab, "v2", "A");
    assert_eq!(
        lab.props_json("v2", HOST).unwrap()["data"]["target_lun"],
        lun_a,
        "v2 reuses v1's LUN"
    );
    let dev = lab.attach("v2", HOST).unwrap();
    let got = dev.multipath_id.unwrap();
    assert_eq!(got.as_str(), wwid(&lab, "v2"));
    assert_ne!(got.as_str(), wwid(&lab, "v1"), "never v1's identity");
    assert_eq!(dev.scsi_wwn.unwrap().as_str(), wwid(&lab, "v2"));
    assert_clean(&mut lab, "after attaching v2");
    lab.detach("v2", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detaching v2");
}

#[test]
fn leaked_detach_shows_the_old_identity_and_is_flagged() {
    let mut lab = lab(host(false, vec![hba1()]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    let a_lun = lab.props_json("v1", HOST).unwrap()["data"]["target_lun"].clone();
    lab.attach("v1", HOST).unwrap();
    // The array forgets v1 without a host detach and hands its LUN to v2.
    lab.delete("v1").unwrap();
    create_and_map(&mut lab, "v2", "A");
    let b_lun = lab.props_json("v2", HOST).unwrap()["data"]["target_lun"].clone();
    assert_eq!(a_lun, b_lun, "v2 landed on v1's LUN");

    let paths = lab.volume_paths("v2", HOST).unwrap();
    assert_eq!(paths.paths.len(), 1, "{paths:?}");
    let p = &paths.paths[0];
    assert_eq!(p.device.as_ref().unwrap().as_str(), "/dev/sda");
    assert_eq!(
        p.wwid.as_ref().unwrap().as_str(),
        wwid(&lab, "v1"),
        "sda still says v1"
    );
    assert_ne!(p.wwid.as_ref().unwrap().as_str(), wwid(&lab, "v2"));

    let v = settled_check(&mut lab);
    assert!(
        v.iter().any(|v| v.kind == PropertyKind::CrossTalk
            && v.volume.as_deref() == Some("v2")
            && v.detail.contains("/dev/sda")),
        "sda reaching v2 while claiming v1 is cross-talk: {v:#?}"
    );
}

#[test]
fn an_hba_outside_the_initiator_target_map_is_never_scanned() {
    // Both HBAs are zoned to the array and would see the LUN; the map allows only HBA1.
    let mut lab = lab(host(true, vec![hba1(), hba2()]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    let mut props = lab.props_json("v1", HOST).unwrap();
    let itmap = props["data"]["initiator_target_map"]
        .as_object_mut()
        .unwrap();
    assert!(itmap.remove(&format!("{HBA2:016x}")).is_some());
    connect_raw(&lab, &props).unwrap();
    lab.settle().unwrap();
    let written = scans(&lab);
    assert!(!written.is_empty());
    assert!(
        written.iter().all(|(path, _)| path.contains("/host0/")),
        "only host0 (HBA1) scanned: {written:?}\n{}",
        context(&lab)
    );
    assert_eq!(luns_behind(&lab, HBA1), [1]);
    assert!(luns_behind(&lab, HBA2).is_empty(), "no device under HBA2");
    // Detach with the same properties: nothing left.
    disconnect_raw(&lab, &props);
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);

    // An HBA in the map with no target port allowed (not zoned to it) is not scanned either.
    let mut props = lab.props_json("v1", HOST).unwrap();
    props["data"]["initiator_target_map"][format!("{HBA2:016x}")] = Value::Array(vec![]);
    connect_raw(&lab, &props).unwrap();
    lab.settle().unwrap();
    assert!(
        scans(&lab).iter().all(|(path, _)| path.contains("/host0/")),
        "{:?}",
        scans(&lab)
    );
    assert!(luns_behind(&lab, HBA2).is_empty());
    disconnect_raw(&lab, &props);
    assert_clean(&mut lab, "after the second detach");
}

/// Array A not zoned, array B zoned, both presenting LUN 1 to the host: the connector finds no
/// port of A anywhere.
fn unreachable_array_lab() -> (Lab, Value) {
    let mut lab = lab(
        host(false, vec![hba1(), hba2()]),
        vec![array_a(), array_b()],
        &["B"],
    );
    create_and_map(&mut lab, "va", "A");
    create_and_map(&mut lab, "vb", "B");
    let mut props = lab.props_json("va", HOST).unwrap();
    assert_eq!(props["data"]["target_lun"], 1);
    assert_eq!(lab.props_json("vb", HOST).unwrap()["data"]["target_lun"], 1);
    // The map names A's ports for HBA1 only (as Cinder does without a zone manager, from its
    // own configuration); HBA2 is not in it.
    props["data"]["initiator_target_map"] = serde_json::json!({
        format!("{HBA1:016x}"): [format!("{A1:016x}"), format!("{A2:016x}")],
    });
    (lab, props)
}

#[test]
fn wildcard_scans_only_when_no_port_is_found_and_they_are_enabled() {
    // Enabled (the default): `- - 1` on the allowed HBA only, which reaches array B's LUN 1.
    let (mut lab, mut props) = unreachable_array_lab();
    props["data"]["enable_wildcard_scan"] = Value::Bool(true);
    let err = connect_raw(&lab, &props).unwrap_err();
    assert!(
        matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
        "{err}"
    );
    lab.settle().unwrap();
    let written = scans(&lab);
    assert!(!written.is_empty(), "{}", context(&lab));
    assert!(
        written.iter().all(|s| *s
            == (
                "/sys/class/scsi_host/host0/scan".to_owned(),
                "- - 1".to_owned()
            )),
        "{written:?}"
    );
    // The collateral: array B's LUN 1 is now a disk on the host, and it is not A's volume.
    let vb = lab.volume_id("vb").unwrap();
    assert_eq!(backing_volumes(&lab), [Some(vb)]);
    let v = lab.check();
    assert!(
        v.iter()
            .any(|v| v.kind == PropertyKind::Leftover && v.volume.as_deref() == Some("vb")),
        "the stray disk of vb is flagged: {v:#?}"
    );

    // Disabled: no scan at all, nothing appears.
    let (mut lab, mut props) = unreachable_array_lab();
    props["data"]["enable_wildcard_scan"] = Value::Bool(false);
    let err = connect_raw(&lab, &props).unwrap_err();
    assert!(matches!(err, ConnectorError::VolumeDeviceNotFound { .. }));
    assert!(scans(&lab).is_empty(), "{:?}", scans(&lab));
    assert_clean(&mut lab, "after a refused wildcard scan");
    assert!(backing_volumes(&lab).is_empty());
}

#[test]
fn narrow_scans_do_not_reach_another_arrays_lun_of_the_same_number() {
    let mut lab = lab(
        host(false, vec![hba1()]),
        vec![array_a(), array_b()],
        &["A", "B"],
    );
    create_and_map(&mut lab, "va", "A");
    create_and_map(&mut lab, "vb", "B");
    assert_eq!(lab.props_json("vb", HOST).unwrap()["data"]["target_lun"], 1);
    let dev = lab.attach("va", HOST).unwrap();
    assert_eq!(dev.scsi_wwn.unwrap().as_str(), wwid(&lab, "va"));
    let written = scans(&lab);
    assert!(
        written.iter().all(|(_, c)| !c.starts_with('-')),
        "no wildcard: {written:?}"
    );
    let va = lab.volume_id("va").unwrap();
    assert_eq!(
        backing_volumes(&lab),
        [Some(va)],
        "array B's LUN 1 not scanned"
    );
    assert_clean(&mut lab, "after attaching va");
    lab.detach("va", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detaching va");

    // What a wildcard scan would have done on the same host: both arrays' LUN 1.
    let hid = lab.host_id(HOST).unwrap();
    lock(lab.world())
        .write_control(hid, "/sys/class/scsi_host/host0/scan", "- - 1")
        .unwrap();
    lab.settle().unwrap();
    let vb = lab.volume_id("vb").unwrap();
    let mut got = backing_volumes(&lab);
    got.sort();
    assert_eq!(got, [Some(va), Some(vb)]);
}

#[test]
fn lun_256_and_above_end_to_end() {
    for multipath in [false, true] {
        let hbas = if multipath {
            vec![hba1(), hba2()]
        } else {
            vec![hba1()]
        };
        let mut spec = array_a();
        spec.first_lun = 256;
        let mut lab = lab(host(multipath, hbas), vec![spec], &["A"]);
        create_and_map(&mut lab, "v256", "A");
        create_and_map(&mut lab, "v257", "A");
        assert_eq!(
            lab.props_json("v256", HOST).unwrap()["data"]["target_lun"],
            256
        );
        for v in ["v256", "v257"] {
            let dev = lab.attach(v, HOST).unwrap();
            let id = dev.multipath_id.or(dev.scsi_wwn).unwrap();
            assert_eq!(id.as_str(), wwid(&lab, v));
        }
        assert_clean(&mut lab, "after attaching LUNs 256 and 257");
        let paths = lab.volume_paths("v256", HOST).unwrap();
        assert_eq!(paths.paths.len(), if multipath { 2 } else { 1 });
        assert!(
            paths.paths[0]
                .path
                .as_str()
                .ends_with(&format!("-fc-0x{A1:x}-lun-0x0100000000000000")),
            "{paths:?}"
        );
        let v257 = lab.volume_paths("v257", HOST).unwrap();
        assert!(
            v257.paths[0]
                .path
                .as_str()
                .ends_with("-lun-0x0101000000000000")
        );
        for v in ["v256", "v257"] {
            lab.detach(v, HOST, DisconnectOptions::default(), true)
                .unwrap();
            assert_clean(&mut lab, &format!("after detaching {v}"));
        }
        no_host_state_left(&lab);
    }
}

#[test]
fn an_hba_behind_a_platform_bus_gets_the_platform_prefixed_path() {
    let hba = hba1().behind_platform("smb/smb:motherboard/80040000000.peu0-c0");
    let mut lab = lab(host(false, vec![hba]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    let dev = lab.attach("v1", HOST).unwrap();
    assert_eq!(
        dev.path.as_str(),
        format!(
            "/dev/disk/by-path/platform-80040000000.peu0-c0-pci-0000:05:00.2-fc-0x{A1:x}-lun-1"
        )
    );
    assert_clean(&mut lab, "after attach");
    lab.detach("v1", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
}

#[test]
fn hba_linkdown_at_attach_uses_the_online_hba_and_detach_stays_clean() {
    let mut lab = lab(host(true, vec![hba1(), hba2()]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    let hid = lab.host_id(HOST).unwrap();
    lock(lab.world())
        .set_hba_port_state(hid, HBA2, FcPortState::Linkdown)
        .unwrap();
    lab.settle().unwrap();
    let dev = lab.attach("v1", HOST).unwrap();
    assert_eq!(
        dev.multipath_id.or(dev.scsi_wwn).unwrap().as_str(),
        wwid(&lab, "v1")
    );
    assert!(
        scans(&lab).iter().all(|(p, _)| p.contains("/host0/")),
        "a Linkdown HBA is not scanned: {:?}",
        scans(&lab)
    );
    assert_eq!(luns_behind(&lab, HBA1), [1]);
    assert!(luns_behind(&lab, HBA2).is_empty());
    assert_clean(&mut lab, "after attach with HBA2 down");
    // The link comes back: no device appears by itself, the volume keeps its one path.
    lock(lab.world())
        .set_hba_port_state(hid, HBA2, FcPortState::Online)
        .unwrap();
    assert_clean(&mut lab, "after HBA2 came back");
    lab.detach("v1", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
}

#[test]
fn hba_linkdown_while_attached_then_detach_removes_every_path() {
    let mut lab = lab(host(true, vec![hba1(), hba2()]), vec![array_a()], &["A"]);
    create_and_map(&mut lab, "v1", "A");
    lab.attach("v1", HOST).unwrap();
    assert_eq!(luns_behind(&lab, HBA2), [1]);
    let hid = lab.host_id(HOST).unwrap();
    lock(lab.world())
        .set_hba_port_state(hid, HBA2, FcPortState::Linkdown)
        .unwrap();
    // Not settled: a settle would run past dev_loss_tmo.
    lock(lab.world()).advance(Duration::from_secs(1));
    lab.sim_host(HOST).unwrap().sync().unwrap();
    // Blocked rport: the device stays until dev_loss_tmo. Detach now must still remove it.
    assert_eq!(luns_behind(&lab, HBA2), [1], "blocked, not yet lost");
    lab.detach("v1", HOST, DisconnectOptions::default(), true)
        .unwrap();
    let journal = lab.journal(HOST).unwrap().join("\n");
    assert!(
        journal.contains("write /sys/block/sdb/device/delete <- \"1\""),
        "the connector removes the blocked path itself:\n{journal}"
    );
    lock(lab.world()).advance(Duration::from_secs(60));
    assert_clean(&mut lab, "after detach with HBA2 down");
    no_host_state_left(&lab);
}
