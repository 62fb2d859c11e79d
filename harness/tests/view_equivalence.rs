//! The in-memory read backend ([`SimHost`]'s `HostView`, [`TreeView`]) answers every
//! `HostFs` question exactly as the materialized directory does: the same resolutions, the
//! same contents, the same errors. Each case builds a tree, writes it to disk, and asks both
//! backends about every path in it plus paths below and beside them.
//!
//! The hand-built trees mirror the `HostFs` unit suite (`connectors/src/fs.rs`): class links,
//! hostile `../` and absolute links, loops, garbage and oversized content, dangling links,
//! `..` clamped at the root; the lab trees are real simulated hosts mid-history.

use std::path::Path;

use brick_connectors::{DisconnectOptions, Host, HostFs, HostPath};
use brick_harness::{Lab, LabHostSpec, SimHost, TreeView};
use brick_sim_target::{ArraySpec, HostSpec, Tree, World};

/// Every question `HostFs` answers, as text, for one path.
fn answers(fs: &HostFs<'_>, path: &HostPath) -> Vec<String> {
    vec![
        format!("realpath {:?}", fs.realpath(path)),
        format!("read_attr {:?}", fs.read_attr(path)),
        format!("read_dir {:?}", fs.read_dir(path)),
        format!("read_link {:?}", fs.read_link(path)),
        format!("read_raw {:?}", fs.read_raw(path, 64)),
        format!("kind {:?}", fs.kind(path)),
        format!("exists {}", fs.exists(path)),
        format!("is_dir {}", fs.is_dir(path)),
        format!("is_link {}", fs.is_link(path)),
        format!("prefix {:?}", fs.children_with_prefix(path, "s")),
    ]
}

/// The paths worth asking about in `tree`: every node, one missing child of each, the root,
/// and `extra`.
fn probe_paths(tree: &Tree, extra: &[&str]) -> Vec<HostPath> {
    let mut out = vec![HostPath::new("/").unwrap()];
    for (p, _) in tree.iter() {
        out.push(HostPath::new(p.as_str()).unwrap());
        out.push(HostPath::new(format!("{p}/missing")).unwrap());
    }
    out.extend(extra.iter().map(|p| HostPath::new(*p).unwrap()));
    out
}

/// Compares both backends on every probe path; returns how many paths were compared.
fn assert_same(disk: &HostFs<'_>, memory: &HostFs<'_>, paths: &[HostPath]) -> usize {
    for p in paths {
        assert_eq!(
            answers(disk, p),
            answers(memory, p),
            "backends differ at {p}"
        );
    }
    paths.len()
}

/// Writes `tree` to a fresh directory and compares the directory with the tree's view.
fn check_tree(tree: &Tree, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut world = World::new(1);
    let host = world.add_host(HostSpec::new("h"));
    world
        .materialize_tree(host, dir.path(), tree.clone())
        .unwrap();
    let view = TreeView::new(tree, dir.path());
    let disk = HostFs::new(dir.path());
    let memory = HostFs::with_view(dir.path(), &view);
    let n = assert_same(&disk, &memory, &probe_paths(tree, extra));
    assert!(n > tree.len(), "every node was probed");
}

#[test]
fn class_links_and_attributes() {
    let lun = "/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2";
    let mut t = Tree::new();
    t.attr(
        &format!("{lun}/wwid"),
        0o444,
        "naa.60000000000000000e00000000020002",
    );
    t.dir(&format!("{lun}/block/sda"));
    t.link(&format!("{lun}/block/sda/device"), "../../../0:0:0:2");
    t.link(
        "/sys/block/sda",
        "../devices/platform/host0/session1/target0:0:0/0:0:0:2/block/sda",
    );
    t.attr("/sys/block/sdb/size", 0o444, "1");
    t.link("/sys/class/block", "../block");
    t.attr("/sys/class/scsi_host/host0/scan", 0o200, "");
    check_tree(
        &t,
        &[
            "/sys/block/sda/device/wwid",
            "/sys/block/sdz/device/wwid",
            "/sys/class/block/sda/device",
            "/sys/nothing",
        ],
    );
}

#[test]
fn hostile_links_stay_inside_the_root() {
    let mut t = Tree::new();
    t.attr("/etc/passwd", 0o644, "inside-root");
    t.link(
        "/dev/disk/by-path/evil",
        "../../../../../../../../etc/passwd",
    );
    t.link("/dev/disk/by-id/abs", "/etc/hostname");
    t.link("/dev/disk/by-id/abs-ok", "/etc/passwd");
    t.attr("/x", 0o444, "top");
    t.link("/a/b/up", "../../../../x");
    t.link("/dev/disk/by-path/ip-x-lun-1", "../../sdc");
    check_tree(&t, &["/etc/hostname", "/a/b/up/z"]);
}

#[test]
fn loops_garbage_oversized_and_special_nodes() {
    let mut t = Tree::new();
    t.link("/a", "b");
    t.link("/b", "a");
    t.link("/self", "self");
    t.file(
        "/sys/block/sda/device/wwid",
        0o444,
        vec![0xff, 0xfe, b'n', 0x00, 0x80],
    );
    t.file("/big", 0o444, vec![b'a'; 70_000]);
    t.insert(
        "/dev/sda",
        brick_sim_target::Node::Block {
            major: 8,
            minor: 0,
            mode: 0o660,
        },
    );
    t.insert(
        "/sys/block/sda/device/access_state",
        brick_sim_target::Node::Unreadable {
            mode: 0o444,
            errno: brick_sim_target::Errno::EINVAL,
        },
    );
    t.link("/dev/disk/by-id/wwn-1", "../../sda");
    check_tree(&t, &["/self/x", "/a/x"]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_link_targets_resolve_alike(
        target in "[./a-z]{1,30}",
        second in "[./a-z]{1,12}",
    ) {
        let mut t = Tree::new();
        t.dir("/d/e");
        t.attr("/d/e/f", 0o444, "1");
        t.link("/d/l", &target);
        t.link("/d/e/m", &second);
        check_tree(&t, &["/d/l/f", "/d/l/e/f", "/d/e/m/f"]);
    }
}

/// Compares a live `SimHost` (its view) with its directory, brought up to date by asking
/// for the root.
fn check_port(port: &SimHost) -> usize {
    let root = port.root().to_path_buf();
    let tree = brick_harness::simhost::lock(port.world()).tree(port.host_id());
    let disk = HostFs::new(&root);
    let memory = HostFs::of(port);
    assert_eq!(memory.root(), Path::new(&root));
    assert_same(
        &disk,
        &memory,
        &probe_paths(&tree, &["/dev/disk/by-path", "/sys/class/scsi_host"]),
    )
}

fn lab(multipath: bool) -> Lab {
    let mut lab = Lab::new(3);
    lab.add_host(if multipath {
        LabHostSpec::multipath("h")
    } else {
        LabHostSpec::single("h")
    })
    .unwrap();
    let portals = if multipath {
        vec!["10.0.2.2:3260".to_owned(), "10.0.3.2:3260".to_owned()]
    } else {
        vec!["10.0.2.2:3260".to_owned()]
    };
    lab.add_array(ArraySpec::new("a", portals)).unwrap();
    for v in ["v1", "v2"] {
        lab.create_volume(v, "a", 1 << 30).unwrap();
        lab.map(v, "h").unwrap();
    }
    lab
}

#[test]
fn simulated_hosts_read_alike_through_a_history() {
    for multipath in [false, true] {
        let mut lab = lab(multipath);
        let mut probed = check_port(lab.sim_host("h").unwrap());
        lab.attach("v1", "h").unwrap();
        lab.attach("v2", "h").unwrap();
        probed += check_port(lab.sim_host("h").unwrap());
        // Leaked detach: the array forgets v2, the host keeps its devices.
        lab.unmap("v2", "h").unwrap();
        probed += check_port(lab.sim_host("h").unwrap());
        lab.detach("v1", "h", DisconnectOptions::default(), true)
            .unwrap();
        lab.settle().unwrap();
        probed += check_port(lab.sim_host("h").unwrap());
        assert!(probed > 400, "real trees were probed ({probed} paths)");
    }
}
