//! The NVMe-oF connector end to end on the simulator: subsystems, ports, controllers and
//! namespaces, attach and detach through the real connector, every correctness property
//! checked against the simulator's truth.

use brick_connectors::{ConnectionProperties, ConnectorError, DisconnectOptions, Protocol};
use brick_harness::simhost::lock;
use brick_harness::{Lab, LabHostSpec, PropertyKind, Violation};
use brick_sim_target::{
    ArraySpec, ArrayTransport, ControllerTruth, CtrlState, Fault, IqnMode, NvmePort,
};
use serde_json::Value;

const HOST: &str = "compute-1";
const SHARED_NQN: &str = "nqn.2010-10.org.openstack:shared";
const PORT1: (&str, u16) = ("10.0.0.1", 4420);
const PORT2: (&str, u16) = ("10.0.1.1", 4420);

/// An NVMe host: native multipath on or off, the connector's `use_multipath` as `multipath`.
fn host(multipath: bool, native: bool) -> LabHostSpec {
    let mut spec = if multipath {
        LabHostSpec::multipath(HOST)
    } else {
        LabHostSpec::single(HOST)
    };
    spec.sim = spec.sim.with_nvme();
    spec.sim.nvme.as_mut().unwrap().native_multipath = native;
    spec
}

/// An nvmet-like array on these ports; one subsystem for every volume if `shared`.
fn array(ports: &[(&str, u16)], shared: bool, aen: bool) -> ArraySpec {
    let mut spec = ArraySpec::nvme(
        "array-1",
        ports.iter().map(|(a, p)| NvmePort::tcp(*a, *p)).collect(),
    );
    if shared {
        spec.iqn_mode = IqnMode::Shared {
            iqn: SHARED_NQN.to_owned(),
        };
    }
    if let ArrayTransport::Nvme(n) = &mut spec.transport {
        n.aen = aen;
    }
    spec
}

fn lab(host: LabHostSpec, array: ArraySpec) -> Lab {
    let mut lab = Lab::new(13);
    lab.add_host(host).unwrap();
    lab.add_array(array).unwrap();
    lab
}

fn create_and_map(lab: &mut Lab, volume: &str) {
    lab.create_volume(volume, "array-1", 1 << 30).unwrap();
    lab.map(volume, HOST).unwrap();
}

fn wwid(lab: &Lab, volume: &str) -> String {
    let id = lab.volume_id(volume).unwrap();
    lock(lab.world()).volume_record(id).unwrap().wwid.clone()
}

fn controllers(lab: &Lab) -> Vec<ControllerTruth> {
    let hid = lab.host_id(HOST).unwrap();
    lock(lab.world()).controllers(hid)
}

/// The connector's journal and the host's `/dev` and controllers, for failure messages.
fn context(lab: &Lab) -> String {
    let listing = lab.tree_listing(HOST).unwrap();
    let relevant: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("/dev/") || l.starts_with("/sys/class/nvme-fabrics/"))
        .collect();
    format!(
        "connector log:\n{}\n\ntree (/dev, controllers):\n{}",
        lab.journal(HOST).unwrap().join("\n"),
        relevant.join("\n")
    )
}

fn settled_check(lab: &mut Lab) -> Vec<Violation> {
    lab.settle().unwrap();
    lab.check()
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

/// No controller, namespace node or by-id link is left on the host.
fn no_host_state_left(lab: &Lab) {
    assert!(controllers(lab).is_empty(), "{:?}", controllers(lab));
    let listing = lab.tree_listing(HOST).unwrap();
    for needle in [
        "/dev/nvme0",
        "/dev/nvme1",
        "/dev/disk/by-id/nvme-",
        "/sys/class/nvme-fabrics/ctl/nvme",
    ] {
        assert!(
            !listing.lines().any(|l| l.starts_with(needle)),
            "{needle} left behind:\n{listing}"
        );
    }
}

/// The reported paths of `volume` as `(path, wwid)`.
fn paths(lab: &Lab, volume: &str) -> Vec<(String, String)> {
    lab.volume_paths(volume, HOST)
        .unwrap()
        .paths
        .iter()
        .map(|p| {
            (
                p.path.as_str().to_owned(),
                p.wwid
                    .as_ref()
                    .map(|w| w.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect()
}

fn connector_props(json: &Value) -> ConnectionProperties {
    ConnectionProperties::from_json(json, None).unwrap()
}

/// Properties without any namespace identity (no uuid, nguid or nsid): os-brick's
/// "devices_on_start" fallback.
fn without_identity(mut props: Value) -> Value {
    let data = props["data"].as_object_mut().unwrap();
    for k in ["vol_uuid", "volume_nguid", "ns_id"] {
        data.remove(k);
    }
    props
}

fn read_root(lab: &Lab, path: &str) -> String {
    let root = lab.root(HOST).unwrap();
    std::fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap()
}

#[test]
fn single_path_attach_returns_the_namespace_and_detach_disconnects() {
    let mut lab = lab(host(false, true), array(&[PORT1], false, true));
    create_and_map(&mut lab, "A");
    let dev = lab.attach("A", HOST).unwrap();
    assert_eq!(dev.path.as_str(), "/dev/nvme0n1");
    assert_clean(&mut lab, "after attach");
    assert_eq!(
        paths(&lab, "A"),
        [("/dev/nvme0n1".to_owned(), wwid(&lab, "A"))]
    );
    assert_eq!(controllers(&lab).len(), 1);
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
    assert!(paths(&lab, "A").is_empty());
    let journal = lab.journal(HOST).unwrap().join("\n");
    assert!(
        journal.contains("run nvme disconnect -d /dev/nvme0"),
        "{journal}"
    );
}

#[test]
fn native_multipath_gives_one_head_and_never_reports_the_hidden_path_nodes() {
    let mut lab = lab(host(true, true), array(&[PORT1, PORT2], false, true));
    create_and_map(&mut lab, "A");
    let dev = lab.attach("A", HOST).unwrap();
    assert_eq!(dev.path.as_str(), "/dev/nvme0n1");
    let ctrls = controllers(&lab);
    assert_eq!(ctrls.len(), 2, "one controller per port: {ctrls:?}");
    assert!(ctrls.iter().all(|c| c.state == CtrlState::Live));
    assert_clean(&mut lab, "after attach");
    // The per-path nodes exist in sysfs, never as volumes.
    let listing = lab.tree_listing(HOST).unwrap();
    assert!(listing.contains("/sys/block/nvme0c0n1"), "{listing}");
    assert!(listing.contains("/sys/block/nvme0c1n1"), "{listing}");
    assert_eq!(
        paths(&lab, "A"),
        [("/dev/nvme0n1".to_owned(), wwid(&lab, "A"))]
    );
    let all = lab
        .connector(HOST, Protocol::Nvmeof)
        .unwrap()
        .get_all_available_volumes(None)
        .unwrap();
    let all: Vec<&str> = all.iter().map(|p| p.as_str()).collect();
    assert_eq!(all, ["/dev/nvme0n1"]);
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
    let journal = lab.journal(HOST).unwrap().join("\n");
    assert_eq!(
        journal.matches("run nvme disconnect -d ").count(),
        2,
        "{journal}"
    );
}

#[test]
fn without_native_multipath_each_controller_has_its_own_disk() {
    let mut lab = lab(host(true, false), array(&[PORT1, PORT2], false, true));
    create_and_map(&mut lab, "A");
    let dev = lab.attach("A", HOST).unwrap();
    assert_eq!(dev.path.as_str(), "/dev/nvme0n1");
    assert_eq!(
        controllers(&lab).len(),
        1,
        "multipath off: one portal is enough"
    );
    assert_clean(&mut lab, "after attach");
    // Another process connects the second port: a second controller with its own disk.
    let hid = lab.host_id(HOST).unwrap();
    let nqn = lab.props_json("A", HOST).unwrap()["data"]["target_nqn"]
        .as_str()
        .unwrap()
        .to_owned();
    let argv: Vec<String> = [
        "nvme", "connect", "-t", "tcp", "-a", PORT2.0, "-s", "4420", "-n", &nqn,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    assert_eq!(lock(lab.world()).exec(hid, &argv, None).status, 0);
    lab.settle().unwrap();
    assert_eq!(controllers(&lab).len(), 2);
    let mut got = paths(&lab, "A");
    got.sort();
    let w = wwid(&lab, "A");
    assert_eq!(
        got,
        [
            ("/dev/nvme0n1".to_owned(), w.clone()),
            ("/dev/nvme1n1".to_owned(), w)
        ]
    );
    assert_clean(&mut lab, "with two controllers");
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detach");
    no_host_state_left(&lab);
}

#[test]
fn two_volumes_on_one_subsystem_share_the_controller_until_the_last_detach() {
    let mut lab = lab(host(false, true), array(&[PORT1], true, true));
    create_and_map(&mut lab, "A");
    create_and_map(&mut lab, "B");
    assert_eq!(lab.attach("A", HOST).unwrap().path.as_str(), "/dev/nvme0n1");
    assert_eq!(lab.attach("B", HOST).unwrap().path.as_str(), "/dev/nvme0n2");
    assert_eq!(controllers(&lab).len(), 1);
    assert_clean(&mut lab, "after attaching both");
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    // The array still maps A: the namespace stays visible, but A is not attached here.
    lab.unmap("A", HOST).unwrap();
    assert_clean(&mut lab, "after detaching A");
    let ctrls = controllers(&lab);
    assert_eq!(ctrls.len(), 1, "B still needs the controller: {ctrls:?}");
    assert_eq!(ctrls[0].state, CtrlState::Live);
    assert_eq!(
        paths(&lab, "B"),
        [("/dev/nvme0n2".to_owned(), wwid(&lab, "B"))]
    );
    assert!(
        !lab.journal(HOST)
            .unwrap()
            .join("\n")
            .contains("nvme disconnect"),
        "no disconnect while B is attached"
    );
    lab.detach("B", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detaching B");
    no_host_state_left(&lab);
}

#[test]
fn detaching_one_of_two_still_mapped_namespaces_keeps_the_controller() {
    // Without unmapping: both namespaces stay under the controller after A's detach.
    let mut lab = lab(host(false, true), array(&[PORT1], true, true));
    create_and_map(&mut lab, "A");
    create_and_map(&mut lab, "B");
    lab.attach("A", HOST).unwrap();
    lab.attach("B", HOST).unwrap();
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    lab.settle().unwrap();
    assert_eq!(controllers(&lab).len(), 1);
    assert_eq!(controllers(&lab)[0].nsids, [1, 2]);
    // A's namespace is still exported to this host: the checks see it as a leftover.
    let v = lab.check();
    assert!(
        v.iter()
            .all(|v| v.kind == PropertyKind::Leftover && v.volume.as_deref() == Some("A")),
        "{v:#?}"
    );
    assert!(!v.is_empty());
}

#[test]
fn namespace_reuse_returns_the_new_volumes_identity() {
    let mut lab = lab(host(false, true), array(&[PORT1], true, true));
    create_and_map(&mut lab, "A");
    let nsid_a = lab.props_json("A", HOST).unwrap()["data"]["ns_id"].clone();
    lab.attach("A", HOST).unwrap();
    lab.detach("A", HOST, DisconnectOptions::default(), true)
        .unwrap();
    lab.delete("A").unwrap();
    create_and_map(&mut lab, "B");
    assert_eq!(
        lab.props_json("B", HOST).unwrap()["data"]["ns_id"],
        nsid_a,
        "B gets A's namespace id"
    );
    let dev = lab.attach("B", HOST).unwrap();
    let got = paths(&lab, "B");
    assert_eq!(got, [(dev.path.as_str().to_owned(), wwid(&lab, "B"))]);
    assert_ne!(got[0].1, wwid(&lab, "A"));
    assert_clean(&mut lab, "after attaching B");
    lab.detach("B", HOST, DisconnectOptions::default(), true)
        .unwrap();
    assert_clean(&mut lab, "after detaching B");
    no_host_state_left(&lab);
}

#[test]
fn leaked_detach_is_visible_with_the_old_identity() {
    // An array that sends no namespace-change AEN: the host keeps A's namespace as it read it.
    let mut lab = lab(host(false, true), array(&[PORT1], true, false));
    create_and_map(&mut lab, "A");
    lab.attach("A", HOST).unwrap();
    lab.delete("A").unwrap();
    create_and_map(&mut lab, "B");
    let b_props = lab.props_json("B", HOST).unwrap();
    assert_eq!(b_props["data"]["ns_id"], "1", "B reuses A's nsid");
    lab.settle().unwrap();

    // The simulator's truth: nvme0n1 says A, reaches B. The checks flag it.
    let v = lab.check();
    assert!(
        v.iter().any(|v| v.kind == PropertyKind::CrossTalk
            && v.volume.as_deref() == Some("B")
            && v.detail.contains("/dev/nvme0n1")),
        "{v:#?}"
    );
    // By uuid, B has no path yet (the namespace still carries A's uuid) ...
    assert!(paths(&lab, "B").is_empty(), "{:?}", paths(&lab, "B"));
    // ... by nsid alone, B's path is the leftover, with A's identity for everyone to see.
    let mut nsid_only = b_props.clone();
    for k in ["vol_uuid", "volume_nguid"] {
        nsid_only["data"].as_object_mut().unwrap().remove(k);
    }
    let found = lab
        .connector(HOST, Protocol::Nvmeof)
        .unwrap()
        .get_volume_paths(&connector_props(&nsid_only))
        .unwrap();
    assert_eq!(found.paths.len(), 1, "{found:?}");
    assert_eq!(found.paths[0].path.as_str(), "/dev/nvme0n1");
    assert_eq!(
        found.paths[0].wwid.as_ref().unwrap().as_str(),
        wwid(&lab, "A")
    );

    // Attaching B by uuid rescans until the kernel drops the stale namespace and finds B.
    let dev = lab.attach("B", HOST).unwrap();
    assert_eq!(
        paths(&lab, "B"),
        [(dev.path.as_str().to_owned(), wwid(&lab, "B"))]
    );
    let journal = lab.journal(HOST).unwrap().join("\n");
    assert_eq!(
        journal.matches("run nvme ns-rescan /dev/nvme0").count(),
        2,
        "{journal}"
    );
    assert_clean(&mut lab, "after attaching B");
}

#[test]
fn a_namespace_that_appears_during_attach_is_not_returned() {
    let mut lab = lab(host(false, true), array(&[PORT1], true, true));
    create_and_map(&mut lab, "mine");
    lab.create_volume("other", "array-1", 1 << 30).unwrap();
    let hid = lab.host_id(HOST).unwrap();
    let other = lab.volume_id("other").unwrap();
    lab.inject(Fault::NamespaceAppears {
        host: hid,
        volume: other,
    })
    .unwrap();
    let dev = lab.attach("mine", HOST).unwrap();
    lab.settle().unwrap();
    assert_eq!(
        controllers(&lab)[0].nsids.len(),
        2,
        "other appeared meanwhile"
    );
    assert_eq!(
        paths(&lab, "mine"),
        [(dev.path.as_str().to_owned(), wwid(&lab, "mine"))]
    );
    // The other attach completes: both are clean.
    lab.attach("other", HOST).unwrap();
    assert_clean(&mut lab, "after both attaches");
    // Each detach is followed by the array's unmap (Cinder's terminate_connection).
    for v in ["mine", "other"] {
        lab.detach(v, HOST, DisconnectOptions::default(), true)
            .unwrap();
        lab.unmap(v, HOST).unwrap();
        // The namespace-change AEN reaches the host before the next detach.
        lab.settle().unwrap();
    }
    assert_clean(&mut lab, "after both detaches");
    no_host_state_left(&lab);
}

#[test]
fn without_any_identity_a_concurrent_namespace_makes_the_attach_refuse_to_guess() {
    let mut lab = lab(host(false, true), array(&[PORT1], true, true));
    create_and_map(&mut lab, "mine");
    lab.create_volume("other", "array-1", 1 << 30).unwrap();
    let props = without_identity(lab.props_json("mine", HOST).unwrap());
    let hid = lab.host_id(HOST).unwrap();
    let other = lab.volume_id("other").unwrap();
    lab.inject(Fault::NamespaceAppears {
        host: hid,
        volume: other,
    })
    .unwrap();
    let err = lab
        .connector(HOST, Protocol::Nvmeof)
        .unwrap()
        .connect_volume(&connector_props(&props))
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
        "{err}"
    );
    // And without the race, the one new namespace is found.
    let mut lab2 = lab_single_identityless();
    let props = without_identity(lab2.props_json("mine", HOST).unwrap());
    let dev = lab2
        .connector(HOST, Protocol::Nvmeof)
        .unwrap()
        .connect_volume(&connector_props(&props))
        .unwrap();
    assert_eq!(dev.path.as_str(), "/dev/nvme0n1");
    lab2.settle().unwrap();
}

fn lab_single_identityless() -> Lab {
    let mut lab = lab(host(false, true), array(&[PORT1], true, true));
    create_and_map(&mut lab, "mine");
    lab
}

#[test]
fn controller_address_with_and_without_src_addr() {
    for src_addr in [true, false] {
        let mut spec = host(false, true);
        spec.sim.nvme.as_mut().unwrap().src_addr = src_addr;
        let mut lab = lab(spec, array(&[PORT1], false, true));
        create_and_map(&mut lab, "A");
        lab.attach("A", HOST).unwrap();
        let address = read_root(&lab, "/sys/class/nvme-fabrics/ctl/nvme0/address");
        assert!(
            address.starts_with("traddr=10.0.0.1,trsvcid=4420"),
            "{address}"
        );
        assert_eq!(address.contains(",src_addr="), src_addr, "{address}");
        assert_clean(&mut lab, "after attach");
        // A second attach finds the existing controller through the same address parsing.
        lab.attach("A", HOST).unwrap();
        assert_eq!(controllers(&lab).len(), 1);
        lab.detach("A", HOST, DisconnectOptions::default(), true)
            .unwrap();
        assert_clean(&mut lab, "after detach");
        no_host_state_left(&lab);
    }
}

#[test]
fn a_controller_stuck_connecting_gives_a_typed_error_after_a_bounded_wait() {
    let mut lab = lab(host(false, true), array(&[PORT1], true, true));
    create_and_map(&mut lab, "A");
    create_and_map(&mut lab, "B");
    lab.attach("A", HOST).unwrap();
    let hid = lab.host_id(HOST).unwrap();
    lab.inject(Fault::NvmePortDown {
        host: hid,
        traddr: PORT1.0.to_owned(),
        trsvcid: PORT1.1,
    })
    .unwrap();
    assert_eq!(controllers(&lab)[0].state, CtrlState::Connecting);
    let before = lock(lab.world()).now();
    let err = lab.attach("B", HOST).unwrap_err();
    let waited = lock(lab.world()).now() - before;
    assert!(
        matches!(
            err.as_connector(),
            Some(ConnectorError::NvmeControllerNotLive { .. })
        ),
        "{err}\n{}",
        context(&lab)
    );
    // Three attempts of reconnect_delay (10 s) + 10 s each, 2 s and 4 s apart.
    assert!(
        (60..=90).contains(&waited.as_secs()),
        "bounded virtual wait, got {waited:?}"
    );
    // The controller carries A: it is not disconnected by B's failed attach.
    assert_eq!(controllers(&lab).len(), 1);
    assert!(
        !lab.journal(HOST)
            .unwrap()
            .join("\n")
            .contains("nvme disconnect")
    );
    // The port comes back: B attaches, everything is clean.
    lab.clear_faults();
    lab.settle().unwrap();
    lab.attach("B", HOST).unwrap();
    assert_clean(&mut lab, "after the port came back");
}

#[test]
fn connect_through_a_down_port_fails_and_leaves_no_controller() {
    let mut lab = lab(host(false, true), array(&[PORT1], false, true));
    create_and_map(&mut lab, "A");
    let hid = lab.host_id(HOST).unwrap();
    lab.inject(Fault::NvmePortDown {
        host: hid,
        traddr: PORT1.0.to_owned(),
        trsvcid: PORT1.1,
    })
    .unwrap();
    let err = lab.attach("A", HOST).unwrap_err();
    assert!(
        matches!(
            err.as_connector(),
            Some(ConnectorError::VolumeDeviceNotFound { .. })
        ),
        "{err}"
    );
    let journal = lab.journal(HOST).unwrap().join("\n");
    assert_eq!(
        journal.matches("run nvme connect ").count(),
        3,
        "one connect per attempt:\n{journal}"
    );
    assert_clean(&mut lab, "after the failed attach");
    no_host_state_left(&lab);
}
