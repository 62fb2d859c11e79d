//! Insta snapshots of a materialized FC host and a materialized NVMe-oF host, in the
//! real-kernel capture's `walk` line format (`PATH\tTYPE\tMODE\tDETAIL`, root shown as
//! `[ROOT]`). Device nodes are materialized as empty regular files; the listing shows them as
//! `b`/`c` with the `major:minor` the model gives them. `power`, `queue`, `integrity`, `mq` and
//! `trace` directories are listed but not descended into, as in the captures.

use std::path::Path;

use brick_sim_target::capture::Content;
use brick_sim_target::tree::{Node, Tree};
use brick_sim_target::{
    ArraySpec, ArrayTransport, FcHbaSpec, FcTargetPort, HostId, HostSpec, IqnMode, NvmePort, World,
};

const NOT_DESCENDED: &[&str] = &[
    "power",
    "queue",
    "integrity",
    "mq",
    "trace",
    "hwmon0",
    "hwmon1",
];

fn walk(root: &Path, rel: &str, tree: &Tree, out: &mut String) {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(rel.trim_start_matches('/'));
    let Ok(meta) = std::fs::symlink_metadata(&path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    let shown = format!("[ROOT]{rel}");
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = std::fs::read_link(&path).unwrap();
        out.push_str(&format!("{shown}\tl\t0777\t{}\n", target.display()));
    } else if ft.is_file() {
        match tree.get(rel) {
            Some(Node::Block { major, minor, mode }) => {
                out.push_str(&format!("{shown}\tb\t{mode:04o}\t{major}:{minor}\n"));
            }
            Some(Node::Char { major, minor, mode }) => {
                out.push_str(&format!("{shown}\tc\t{mode:04o}\t{major}:{minor}\n"));
            }
            _ => {
                let detail = if mode & 0o444 == 0 {
                    Content::WriteOnly.to_detail()
                } else {
                    Content::render(mode, &std::fs::read(&path).unwrap()).to_detail()
                };
                out.push_str(&format!("{shown}\tf\t{mode:04o}\t{detail}\n"));
            }
        }
    } else if ft.is_dir() {
        // Materialized directories carry at least 0700 so that the tree can be rewritten.
        let want = match tree.get(rel) {
            Some(Node::Dir { mode }) => *mode,
            _ => mode,
        };
        out.push_str(&format!("{shown}\td\t{want:04o}\t\n"));
        let name = rel.rsplit('/').next().unwrap_or_default();
        if NOT_DESCENDED.contains(&name) {
            return;
        }
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            walk(root, &format!("{rel}/{n}"), tree, out);
        }
    }
}

fn listing(w: &mut World, h: HostId, dirs: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    w.materialize(h, tmp.path()).unwrap();
    let tree = w.tree(h);
    let mut out = String::new();
    for d in dirs {
        walk(tmp.path(), d, &tree, &mut out);
    }
    // Every tree entry was written.
    for (p, _) in tree.iter() {
        assert!(
            std::fs::symlink_metadata(tmp.path().join(p.trim_start_matches('/'))).is_ok(),
            "{p} not materialized"
        );
    }
    out
}

/// Two HBAs on two fabrics, array A with a port on each (LUN 1 mapped, both HBAs scanned
/// narrowly, multipathd builds dm-0), array B zoned on fabric a without a LUN for this host
/// (rport, no fc_transport target), and another host's HBA zoned with the first HBA (a
/// non-target rport, `scsi_target_id` -1).
#[test]
fn materialized_fc_host() {
    let mut w = World::new(2024);
    let mut spec = HostSpec::new("compute1")
        .with_fc_hba(FcHbaSpec::new(0x5001_4380_186a_f83c, "a", "0000:05:00.2"))
        .with_fc_hba(FcHbaSpec::new(0x5001_4380_186a_f83e, "b", "0000:05:00.3"));
    spec.multipathd = true;
    let h = w.add_host(spec);
    let other = w.add_host(HostSpec::new("compute2").with_fc_hba(FcHbaSpec::new(
        0x1000_0090_fa00_0001,
        "a",
        "0000:05:00.2",
    )));
    let mut a = ArraySpec::fc(
        "flasharray",
        vec![
            FcTargetPort::new(0x524a_9370_0000_0001, "a"),
            FcTargetPort::new(0x524a_9370_0000_0011, "b"),
        ],
    );
    a.vendor = "PURE".to_owned();
    a.model = "FlashArray".to_owned();
    let a = w.add_array(a);
    let b = w.add_array(ArraySpec::fc(
        "other",
        vec![FcTargetPort::new(0x5006_0160_9020_3181, "a")],
    ));
    w.zone_host_to_array(h, a).unwrap();
    w.zone_host_to_array(h, b).unwrap();
    w.zone(0x5001_4380_186a_f83c, 0x1000_0090_fa00_0001)
        .unwrap();
    let v = w.create_volume(a, "volume-1", 1 << 30).unwrap();
    assert_eq!(w.map_volume(v, h).unwrap().lun, 1);
    w.write_control(h, "/sys/class/scsi_host/host0/scan", "0 0 1")
        .unwrap();
    w.write_control(h, "/sys/class/scsi_host/host1/scan", "0 0 1")
        .unwrap();
    w.settle();
    assert_eq!(w.hbas(other)[0].rports.len(), 1);
    let text = listing(
        &mut w,
        h,
        &[
            "/sys/class/fc_host",
            "/sys/class/fc_remote_ports",
            "/sys/class/fc_transport",
            "/sys/class/scsi_host",
            "/sys/class/block",
            "/sys/devices/pci0000:00",
            "/sys/devices/virtual/block",
            "/dev",
        ],
    );
    assert!(text.contains(
        "[ROOT]/dev/disk/by-path/pci-0000:05:00.3-fc-0x524a937000000011-lun-1\tl\t0777\t../../sdb"
    ));
    assert!(text.contains("rport-0:0-2/fc_remote_ports/rport-0:0-2/scsi_target_id\tf\t0444\t-1\n"));
    insta::assert_snapshot!("materialized_fc_host", text);
}

/// The capture's NVMe guest after the second `nvme connect` (two controllers, one head),
/// with a namespace that also reports an NGUID.
#[test]
fn materialized_nvme_host() {
    let mut w = World::new(2024);
    let mut spec = HostSpec::new("compute1").with_nvme();
    spec.ip = "10.0.2.15".to_owned();
    let h = w.add_host(spec);
    let mut a = ArraySpec::nvme(
        "nvmet",
        vec![
            NvmePort::tcp("10.0.2.2", 4420),
            NvmePort::tcp("10.0.2.2", 4421),
        ],
    );
    a.iqn_mode = IqnMode::Shared {
        iqn: "nqn.nvme-subsystem-1-4a1f6c2e-8d3b-4f7a-9c5e-2b6d8e0f1a3c".to_owned(),
    };
    assert!(matches!(a.transport, ArrayTransport::Nvme(_)));
    let a = w.add_array(a);
    let v = w.create_volume(a, "volume-1", 64 << 20).unwrap();
    let m = w.map_volume(v, h).unwrap();
    for port in ["4420", "4421"] {
        let argv: Vec<String> = [
            "nvme", "connect", "-a", "10.0.2.2", "-s", port, "-t", "tcp", "-n", &m.iqn, "-Q",
            "128", "-l", "-1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(w.exec(h, &argv, None).status, 0);
    }
    w.settle();
    let text = listing(
        &mut w,
        h,
        &[
            "/sys/class/nvme",
            "/sys/class/nvme-fabrics",
            "/sys/class/nvme-subsystem",
            "/sys/class/nvme-generic",
            "/sys/class/block",
            "/sys/block",
            "/sys/devices/virtual/nvme-fabrics",
            "/sys/devices/virtual/nvme-subsystem",
            "/sys/module",
            "/dev",
            "/etc/nvme",
        ],
    );
    assert!(text.contains("[ROOT]/dev/nvme0n1\tb\t0660\t259:1\n"));
    assert!(!text.contains("by-path"));
    insta::assert_snapshot!("materialized_nvme_host", text);
}
