//! The exec tier's host-view checks (what a real host can show, without simulator truth),
//! held against hosts built by the simulator, where the truth is known.

use std::collections::BTreeSet;

use brick_harness::checks::{HostViewVolume, check_host_view};
use brick_harness::{Lab, LabHostSpec, PropertyKind};
use brick_sim_target::{ArraySpec, NvmePort};

const HOST: &str = "compute-1";

fn nvme_lab(multipath: bool) -> Lab {
    let mut lab = Lab::new(3);
    let mut spec = if multipath {
        LabHostSpec::multipath(HOST)
    } else {
        LabHostSpec::single(HOST)
    };
    spec.sim = spec.sim.with_nvme();
    lab.add_host(spec).unwrap();
    let ports = if multipath {
        vec![
            NvmePort::tcp("10.0.0.1", 4420),
            NvmePort::tcp("10.0.0.2", 4420),
        ]
    } else {
        vec![NvmePort::tcp("10.0.0.1", 4420)]
    };
    lab.add_array(ArraySpec::nvme("array-1", ports)).unwrap();
    lab
}

fn view(lab: &Lab, attached: &[&str], known: &[&str]) -> Vec<brick_harness::Violation> {
    let world = brick_harness::simhost::lock(lab.world());
    let volumes: Vec<HostViewVolume> = known
        .iter()
        .map(|name| HostViewVolume {
            name: (*name).to_owned(),
            wwid: world
                .volume_record(lab.volume_id(name).unwrap())
                .map(|v| v.wwid.clone()),
            paths: None,
        })
        .collect();
    drop(world);
    let volumes: Vec<HostViewVolume> = volumes
        .into_iter()
        .map(|mut v| {
            if attached.contains(&v.name.as_str()) {
                v.paths = Some(lab.volume_paths(&v.name, HOST).map_err(|e| e.to_string()));
            }
            v
        })
        .collect();
    check_host_view(
        lab.sim_host(HOST).unwrap(),
        HOST,
        &volumes,
        &BTreeSet::new(),
    )
}

#[test]
fn nvme_attach_is_clean_in_the_host_view_with_and_without_native_multipath() {
    for multipath in [false, true] {
        let mut lab = nvme_lab(multipath);
        lab.create_volume("A", "array-1", 1 << 30).unwrap();
        lab.map("A", HOST).unwrap();
        lab.attach("A", HOST).unwrap();
        lab.settle().unwrap();
        assert!(lab.check().is_empty(), "simulator truth: {:?}", lab.check());
        let v = view(&lab, &["A"], &["A"]);
        assert!(
            v.is_empty(),
            "multipath={multipath}: {v:#?}\n{}",
            lab.tree_listing(HOST).unwrap()
        );
    }
}

#[test]
fn nvme_leaked_detach_is_cross_talk_in_the_host_view() {
    let mut lab = nvme_lab(false);
    lab.create_volume("A", "array-1", 1 << 30).unwrap();
    lab.map("A", HOST).unwrap();
    lab.attach("A", HOST).unwrap();
    lab.settle().unwrap();
    // A namespace node that carries another identity than the one the array reports for the
    // volume is cross-talk: here, check A's paths against B's identity.
    let world = brick_harness::simhost::lock(lab.world());
    let a = world
        .volume_record(lab.volume_id("A").unwrap())
        .unwrap()
        .wwid
        .clone();
    drop(world);
    let wrong = HostViewVolume {
        name: "B".into(),
        wwid: Some(format!("{}0", &a[..a.len() - 1])),
        paths: Some(lab.volume_paths("A", HOST).map_err(|e| e.to_string())),
    };
    let v = check_host_view(
        lab.sim_host(HOST).unwrap(),
        HOST,
        &[wrong],
        &BTreeSet::new(),
    );
    let kinds: BTreeSet<PropertyKind> = v.iter().map(|v| v.kind).collect();
    assert!(kinds.contains(&PropertyKind::CrossTalk), "{v:#?}");
    assert!(kinds.contains(&PropertyKind::Truth), "{v:#?}");
}
