//! The iSCSI connector end to end on the simulator: attach and detach through the real
//! connector, with every correctness property checked against the simulator's truth.

use brick_connectors::DisconnectOptions;
use brick_harness::{Lab, LabHostSpec, PropertyKind, Violation};
use brick_sim_target::{ArraySpec, IqnMode};

const HOST: &str = "compute-1";

fn lab(host: LabHostSpec, portals: &[&str], shared_iqn: bool) -> Lab {
    let mut lab = Lab::new(7);
    lab.add_host(host).unwrap();
    let mut array = ArraySpec::new("array-1", portals.iter().map(|p| p.to_string()).collect());
    if shared_iqn {
        array.iqn_mode = IqnMode::Shared {
            iqn: "iqn.2010-10.org.openstack:shared".into(),
        };
    }
    lab.add_array(array).unwrap();
    lab
}

fn create_and_map(lab: &mut Lab, volume: &str) {
    lab.create_volume(volume, "array-1", 1 << 30).unwrap();
    lab.map(volume, HOST).unwrap();
}

fn wwid(lab: &Lab, volume: &str) -> String {
    let id = lab.volume_id(volume).unwrap();
    brick_harness::simhost::lock(lab.world())
        .volume_record(id)
        .unwrap()
        .wwid
        .clone()
}

/// Settles udev and checks every property; returns the violations.
fn settled_check(lab: &mut Lab) -> Vec<Violation> {
    lab.settle().unwrap();
    lab.check()
}

fn assert_clean(lab: &mut Lab, when: &str) {
    let v = settled_check(lab);
    assert!(
        v.is_empty(),
        "{when}: properties broken:\n{}\n\nconnector log:\n{}\n\ntree:\n{}",
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        lab.journal(HOST).unwrap().join("\n"),
        lab.tree_listing(HOST).unwrap()
    );
}

fn no_host_state_left(lab: &Lab) {
    let listing = lab.tree_listing(HOST).unwrap();
    for needle in [
        "/dev/disk/by-path/",
        "/dev/sd",
        "/dev/dm-",
        "/sys/class/iscsi_session/session",
    ] {
        assert!(
            !listing.lines().any(|l| l.starts_with(needle)),
            "{needle} left behind:\n{listing}"
        );
    }
}

#[test]
fn single_path_attach_returns_the_volume_and_detach_leaves_nothing() {
    let mut lab = lab(LabHostSpec::single(HOST), &["10.0.2.2:3260"], false);
    create_and_map(&mut lab, "A");
    let dev = lab.attach("A", HOST).unwrap();
    assert_eq!(dev.path.as_str(), "/dev/sda");
    assert_eq!(dev.scsi_wwn.as_ref().unwrap().as_str(), wwid(&lab, "A"));
    assert_clean(&mut lab, "after attach");
    let paths = lab.volume_paths("A", HOST).unwrap();
    assert_eq!(paths.paths.len(), 1);
    assert_eq!(paths.paths[0].device.as_ref().unwrap().as_str(), "/dev/sda");
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
    assert!(lab.volume_paths("A", HOST).unwrap().paths.is_empty());
}

#[test]
fn multipath_attach_builds_a_map_and_detach_removes_map_devices_and_sessions() {
    let mut lab = lab(
        LabHostSpec::multipath(HOST),
        &["10.0.2.2:3260", "10.0.2.3:3260"],
        true,
    );
    create_and_map(&mut lab, "A");
    let dev = lab.attach("A", HOST).unwrap();
    assert!(dev.path.as_str().starts_with("/dev/dm-"), "{dev:?}");
    assert_eq!(dev.multipath_id.as_ref().unwrap().as_str(), wwid(&lab, "A"));
    assert_clean(&mut lab, "after attach");
    assert_eq!(lab.volume_paths("A", HOST).unwrap().paths.len(), 2);
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
    let journal = lab.journal(HOST).unwrap().join("\n");
    assert!(
        journal.contains("run multipath -f "),
        "the map is flushed by name:\n{journal}"
    );
}

#[test]
fn shared_target_keeps_the_session_until_its_last_lun_is_detached() {
    let mut lab = lab(LabHostSpec::single(HOST), &["10.0.2.2:3260"], true);
    create_and_map(&mut lab, "A");
    create_and_map(&mut lab, "B");
    lab.attach("A", HOST).unwrap();
    lab.attach("B", HOST).unwrap();
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detaching A");
    let hid = lab.host_id(HOST).unwrap();
    let sessions = brick_harness::simhost::lock(lab.world()).sessions(hid);
    assert_eq!(sessions.len(), 1, "B still needs the session: {sessions:?}");
    let b = lab.volume_paths("B", HOST).unwrap();
    assert_eq!(b.paths.len(), 1);
    assert_eq!(b.paths[0].wwid.as_ref().unwrap().as_str(), wwid(&lab, "B"));
    lab.detach("B", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detaching B");
    assert!(
        brick_harness::simhost::lock(lab.world())
            .sessions(hid)
            .is_empty()
    );
    no_host_state_left(&lab);
}

#[test]
fn lun_reuse_after_a_clean_detach_returns_the_new_volume() {
    let mut lab = lab(LabHostSpec::single(HOST), &["10.0.2.2:3260"], true);
    create_and_map(&mut lab, "A");
    lab.attach("A", HOST).unwrap();
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    lab.delete("A").unwrap();
    create_and_map(&mut lab, "B");
    let a = lab.props("A", HOST).err();
    assert!(a.is_some(), "A is gone from the array");
    let dev = lab.attach("B", HOST).unwrap();
    let got = dev.scsi_wwn.unwrap();
    assert_eq!(got.as_str(), wwid(&lab, "B"));
    assert_ne!(got.as_str(), wwid(&lab, "A"), "never A's identity");
    assert_clean(&mut lab, "after attaching B");
}

#[test]
fn leaked_detach_shows_a_path_with_the_old_identity_and_is_flagged() {
    let mut lab = lab(LabHostSpec::single(HOST), &["10.0.2.2:3260"], true);
    create_and_map(&mut lab, "A");
    let a_dev = lab.attach("A", HOST).unwrap();
    // The array forgets A without a host detach, then hands A's LUN to B.
    lab.delete("A").unwrap();
    create_and_map(&mut lab, "B");
    let b_lun = lab.props_json("B", HOST).unwrap()["data"]["target_lun"].clone();
    let a_props = lab.attachments()[&(HOST.to_owned(), "A".to_owned())]
        .props
        .to_json();
    assert_eq!(a_props["data"]["target_lun"], b_lun, "B landed on A's LUN");

    let paths = lab.volume_paths("B", HOST).unwrap();
    assert_eq!(paths.paths.len(), 1, "{paths:?}");
    let p = &paths.paths[0];
    assert_eq!(p.device.as_ref(), Some(&a_dev.path));
    assert_eq!(
        p.wwid.as_ref().unwrap().as_str(),
        wwid(&lab, "A"),
        "the path still says A"
    );
    assert_ne!(p.wwid.as_ref().unwrap().as_str(), wwid(&lab, "B"));

    let v = settled_check(&mut lab);
    let cross: Vec<&Violation> = v
        .iter()
        .filter(|v| v.kind == PropertyKind::CrossTalk)
        .collect();
    assert!(
        cross
            .iter()
            .any(|v| v.detail.contains("/dev/sda") && v.volume.as_deref() == Some("B")),
        "the checks flag sda reaching B while claiming A: {v:#?}"
    );
}

#[test]
fn detach_of_an_unknown_volume_touches_nothing() {
    let mut lab = lab(LabHostSpec::single(HOST), &["10.0.2.2:3260"], false);
    create_and_map(&mut lab, "A");
    create_and_map(&mut lab, "B");
    lab.attach("A", HOST).unwrap();
    let before = lab.tree_listing(HOST).unwrap();
    lab.detach("B", HOST, DisconnectOptions::default(), false)
        .unwrap();
    lab.settle().unwrap();
    assert_eq!(
        lab.tree_listing(HOST).unwrap(),
        before,
        "B was never attached"
    );
    assert_clean(&mut lab, "after the no-op detach");
}

#[test]
fn detach_twice_is_a_no_op() {
    let mut lab = lab(LabHostSpec::single(HOST), &["10.0.2.2:3260"], false);
    create_and_map(&mut lab, "A");
    lab.attach("A", HOST).unwrap();
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    lab.settle().unwrap();
    let after_first = lab.tree_listing(HOST).unwrap();
    lab.detach("A", HOST, DisconnectOptions::default(), false)
        .unwrap();
    lab.settle().unwrap();
    assert_eq!(lab.tree_listing(HOST).unwrap(), after_first);
    assert_clean(&mut lab, "after the second detach");
}

#[test]
fn attach_twice_returns_the_same_device() {
    let mut lab = lab(LabHostSpec::single(HOST), &["10.0.2.2:3260"], false);
    create_and_map(&mut lab, "A");
    let first = lab.attach("A", HOST).unwrap();
    let second = lab.attach("A", HOST).unwrap();
    assert_eq!(first, second);
    assert_clean(&mut lab, "after attaching twice");
}
