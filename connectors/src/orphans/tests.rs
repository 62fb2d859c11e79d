use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;
use crate::host::RealHost;

/// A host tree laid out as the real 6.1 kernel and udev lay it out
/// (`shared/reference/real-kernel/*.txt`), with relative links.
struct Fx {
    dir: tempfile::TempDir,
}

const IQN: &str = "iqn.2010-10.org.openstack:volume-one";
const WWID_A: &str = "360000000000000000e00000000010001";
const WWID_B: &str = "360000000000000000e00000000020002";

fn sysfs_wwid(udev: &str) -> String {
    format!("naa.{}", &udev[1..])
}

impl Fx {
    fn new() -> Self {
        let fx = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        fx.mkdir("/sys/block");
        fx.mkdir("/dev/disk/by-path");
        fx.mkdir("/dev/disk/by-id");
        fx
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn real(&self, p: &str) -> std::path::PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }
    fn mkdir(&self, p: &str) {
        std::fs::create_dir_all(self.real(p)).unwrap();
    }
    fn file(&self, p: &str, content: &[u8]) {
        let real = self.real(p);
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(real, content).unwrap();
    }
    /// A link at `p` to absolute host path `target`, written relative like the kernel's.
    fn link(&self, p: &str, target: &str) {
        let from: Vec<&str> = p.trim_start_matches('/').split('/').collect();
        let to: Vec<&str> = target.trim_start_matches('/').split('/').collect();
        let dir = &from[..from.len() - 1];
        let common = dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let mut rel: Vec<&str> = vec![".."; dir.len() - common];
        rel.extend(&to[common..]);
        self.raw_link(p, &rel.join("/"));
    }
    fn raw_link(&self, p: &str, raw: &str) {
        let real = self.real(p);
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        symlink(raw, real).unwrap();
    }
    fn session_dir(h: u32, s: u32) -> String {
        format!("/sys/devices/platform/host{h}/session{s}")
    }
    fn session(&self, h: u32, s: u32, iqn: &str, portal: (&str, u16)) {
        let d = Self::session_dir(h, s);
        let sd = format!("{d}/iscsi_session/session{s}");
        self.file(&format!("{sd}/targetname"), format!("{iqn}\n").as_bytes());
        self.file(&format!("{sd}/state"), b"LOGGED_IN\n");
        self.link(&format!("{sd}/device"), &d);
        self.link(&format!("/sys/class/iscsi_session/session{s}"), &sd);
        let cd = format!("{d}/connection{s}:0/iscsi_connection/connection{s}:0");
        self.file(
            &format!("{cd}/persistent_address"),
            format!("{}\n", portal.0).as_bytes(),
        );
        self.file(
            &format!("{cd}/persistent_port"),
            format!("{}\n", portal.1).as_bytes(),
        );
        self.link(&format!("/sys/class/iscsi_connection/connection{s}:0"), &cd);
        // tgt's LUN 0 controller: a SCSI device without a block device.
        self.file(&format!("{d}/target{h}:0:0/{h}:0:0:0/type"), b"12\n");
    }
    /// A disk `name` at LUN `lun` of session `s` on host `h`, with its udev links.
    #[allow(clippy::too_many_arguments)]
    fn disk(&self, h: u32, s: u32, lun: u32, name: &str, udev_wwid: &str, portal: &str, iqn: &str) {
        let sdev = format!("{}/target{h}:0:0/{h}:0:0:{lun}", Self::session_dir(h, s));
        self.file(
            &format!("{sdev}/wwid"),
            format!("{}\n", sysfs_wwid(udev_wwid)).as_bytes(),
        );
        let blk = format!("{sdev}/block/{name}");
        self.mkdir(&format!("{blk}/holders"));
        self.mkdir(&format!("{blk}/slaves"));
        self.link(&format!("{blk}/device"), &sdev);
        self.link(&format!("/sys/block/{name}"), &blk);
        self.file(&format!("/dev/{name}"), b"");
        self.link(
            &format!("/dev/disk/by-path/ip-{portal}-iscsi-{iqn}-lun-{lun}"),
            &format!("/dev/{name}"),
        );
        let by_id = format!("/dev/disk/by-id/scsi-{udev_wwid}");
        if self.real(&by_id).symlink_metadata().is_err() {
            self.link(&by_id, &format!("/dev/{name}"));
        }
    }
    fn map(&self, dm: &str, udev_wwid: &str, slaves: &[&str]) {
        let d = format!("/sys/devices/virtual/block/{dm}");
        self.file(
            &format!("{d}/dm/uuid"),
            format!("mpath-{udev_wwid}\n").as_bytes(),
        );
        self.file(&format!("{d}/dm/name"), format!("{udev_wwid}\n").as_bytes());
        self.mkdir(&format!("{d}/slaves"));
        self.mkdir(&format!("{d}/holders"));
        for s in slaves {
            let blk = std::fs::canonicalize(self.real(&format!("/sys/block/{s}"))).unwrap();
            let blk = format!(
                "/{}",
                blk.strip_prefix(std::fs::canonicalize(self.root()).unwrap())
                    .unwrap()
                    .display()
            );
            self.link(&format!("{d}/slaves/{s}"), &blk);
            self.link(&format!("{blk}/holders/{dm}"), &d);
        }
        self.link(&format!("/sys/block/{dm}"), &d);
        self.file(&format!("/dev/{dm}"), b"");
        self.link(&format!("/dev/mapper/{udev_wwid}"), &format!("/dev/{dm}"));
        self.link(
            &format!("/dev/disk/by-id/dm-uuid-mpath-{udev_wwid}"),
            &format!("/dev/{dm}"),
        );
    }
    fn rm(&self, p: &str) {
        let real = self.real(p);
        if real.is_dir() && !real.is_symlink() {
            std::fs::remove_dir_all(real).unwrap();
        } else {
            std::fs::remove_file(real).unwrap();
        }
    }
    fn report(&self) -> OrphanReport {
        find_orphans(&RealHost::new(self.root()))
    }
}

fn reasons(r: &OrphanReport) -> Vec<(OrphanReason, String)> {
    r.orphans
        .iter()
        .map(|o| (o.reason, o.path.to_string()))
        .collect()
}

/// Two hosts' worth of healthy state: a single-path disk and a two-path multipath map.
fn healthy() -> Fx {
    let fx = Fx::new();
    fx.session(0, 1, IQN, ("10.0.2.2", 3260));
    fx.disk(0, 1, 1, "sda", WWID_A, "10.0.2.2:3260", IQN);
    fx.session(1, 2, IQN, ("10.0.2.2", 3261));
    fx.disk(1, 2, 1, "sdb", WWID_A, "10.0.2.2:3261", IQN);
    fx.map("dm-0", WWID_A, &["sda", "sdb"]);
    // udev points the by-id scsi link of a multipathed volume at the map.
    fx.rm(&format!("/dev/disk/by-id/scsi-{WWID_A}"));
    fx.link(&format!("/dev/disk/by-id/scsi-{WWID_A}"), "/dev/dm-0");
    fx.link(
        "/dev/disk/by-id/wwn-0x60000000000000000e00000000010001",
        "/dev/dm-0",
    );
    fx
}

#[test]
fn healthy_multipath_host_is_clean() {
    let fx = healthy();
    let r = fx.report();
    assert!(r.is_clean(), "{:#?}", r.orphans);
    assert!(r.diagnostics.is_empty(), "{:#?}", r.diagnostics);
}

#[test]
fn empty_or_missing_root_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let r = find_orphans(&RealHost::new(dir.path()));
    assert_eq!(r, OrphanReport::default());
    let r = find_orphans(&RealHost::new(dir.path().join("nope")));
    assert!(r.is_clean());
}

#[test]
fn leftovers_of_a_half_done_detach_are_each_named() {
    let fx = healthy();
    // The paths were deleted, the map and its links stayed, the sessions stayed.
    for s in ["sda", "sdb"] {
        let blk = std::fs::read_link(fx.real(&format!("/sys/block/{s}"))).unwrap();
        let blk = fx.real("/sys").join(blk.strip_prefix("..").unwrap());
        std::fs::remove_dir_all(blk).unwrap();
        fx.rm(&format!("/sys/block/{s}"));
        fx.rm(&format!("/sys/devices/virtual/block/dm-0/slaves/{s}"));
        fx.rm(&format!("/dev/{s}"));
    }
    let r = fx.report();
    let got = reasons(&r);
    let by_path = format!("/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-{IQN}-lun-1");
    for want in [
        (OrphanReason::EmptyMap, "/dev/dm-0".to_owned()),
        (OrphanReason::StaleLink, by_path.clone()),
        (
            OrphanReason::StaleLink,
            format!("/dev/disk/by-path/ip-10.0.2.2:3261-iscsi-{IQN}-lun-1"),
        ),
        (
            OrphanReason::IdleSession,
            "/sys/class/iscsi_session/session1".to_owned(),
        ),
        (
            OrphanReason::IdleSession,
            "/sys/class/iscsi_session/session2".to_owned(),
        ),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {got:#?}");
    }
    let stale = r
        .orphans
        .iter()
        .find(|o| o.path.as_str() == by_path)
        .unwrap();
    assert_eq!(stale.kind, OrphanKind::Link);
    assert_eq!(stale.target.as_ref().unwrap().as_str(), "/dev/sda");
    let iscsi = stale.iscsi.as_ref().unwrap();
    assert_eq!(iscsi.iqn, IQN);
    assert_eq!(iscsi.portal.as_deref(), Some("10.0.2.2:3260"));
    assert_eq!(iscsi.lun.as_deref(), Some("1"));
    let map = r
        .orphans
        .iter()
        .find(|o| o.reason == OrphanReason::EmptyMap)
        .unwrap();
    assert_eq!(map.wwid.as_ref().unwrap().as_str(), WWID_A);
    let session = r
        .orphans
        .iter()
        .find(|o| o.path.as_str().ends_with("session2"))
        .unwrap();
    assert_eq!(
        session.iscsi.as_ref().unwrap().portal.as_deref(),
        Some("10.0.2.2:3261")
    );
    assert!(session.detail.contains("LOGGED_IN"), "{}", session.detail);
    // The JSON a client sees uses stable snake_case codes.
    let json = serde_json::to_value(&r).unwrap();
    assert!(
        json["orphans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["reason"] == "empty_map")
    );
}

#[test]
fn reused_lun_behind_an_old_by_id_link_is_an_identity_mismatch() {
    let fx = Fx::new();
    fx.session(0, 1, IQN, ("10.0.2.2", 3260));
    fx.disk(0, 1, 1, "sda", WWID_B, "10.0.2.2:3260", IQN);
    // The link of the previous volume on this LUN survived and now leads to sda.
    fx.link(&format!("/dev/disk/by-id/scsi-{WWID_A}"), "/dev/sda");
    fx.link(
        "/dev/disk/by-id/wwn-0x60000000000000000e00000000010001",
        "/dev/sda",
    );
    // Names that are not primary identities are never compared.
    fx.link("/dev/disk/by-id/scsi-1IET_00010001", "/dev/sda");
    fx.link("/dev/disk/by-id/scsi-SIET_VIRTUAL-DISK_beaf11", "/dev/sda");
    let r = fx.report();
    let mismatches: Vec<&Orphan> = r
        .orphans
        .iter()
        .filter(|o| o.reason == OrphanReason::IdentityMismatch)
        .collect();
    assert_eq!(mismatches.len(), 2, "{:#?}", r.orphans);
    let scsi = mismatches
        .iter()
        .find(|o| o.path.as_str().ends_with(WWID_A))
        .unwrap();
    assert_eq!(scsi.claimed_wwid.as_ref().unwrap().as_str(), WWID_A);
    assert_eq!(scsi.wwid.as_ref().unwrap().as_str(), WWID_B);
    assert_eq!(scsi.target.as_ref().unwrap().as_str(), "/dev/sda");
    let ids: Vec<&str> = scsi.identities().map(Wwid::as_str).collect();
    assert_eq!(ids, vec![WWID_B, WWID_A]);
    assert_eq!(r.orphans.len(), 2, "{:#?}", r.orphans);
}

#[test]
fn secondary_designators_from_vpd_page_83_are_accepted() {
    let fx = Fx::new();
    fx.session(0, 1, IQN, ("10.0.2.2", 3260));
    fx.disk(0, 1, 1, "sda", WWID_A, "10.0.2.2:3260", IQN);
    fx.link("/dev/disk/by-id/scsi-33000000100000001", "/dev/sda");
    let before = fx.report();
    assert_eq!(
        reasons(&before).len(),
        1,
        "without VPD the extra NAA is unexplained"
    );
    // The real kernel's page of 0:0:0:1 (T10 id, 8-byte NAA, 16-byte NAA).
    let mut page = vec![0x00, 0x83, 0x00, 0x48, 0x02, 0x01, 0x00, 0x24];
    page.extend(b"IET     00010001");
    page.extend([0u8; 20]);
    page.extend([0x01, 0x03, 0x00, 0x08, 0x30, 0, 0, 0x01, 0, 0, 0, 0x01]);
    page.extend([
        0x01, 0x03, 0x00, 0x10, 0x60, 0, 0, 0, 0, 0, 0, 0, 0x0e, 0, 0, 0, 0, 0x01, 0, 0x01,
    ]);
    fx.file(
        &format!("{}/target0:0:0/0:0:0:1/vpd_pg83", Fx::session_dir(0, 1)),
        &page,
    );
    let after = fx.report();
    assert!(after.is_clean(), "{:#?}", after.orphans);
}

#[test]
fn map_over_a_path_of_another_volume_is_a_mismatch() {
    let fx = Fx::new();
    fx.session(0, 1, IQN, ("10.0.2.2", 3260));
    fx.disk(0, 1, 1, "sda", WWID_A, "10.0.2.2:3260", IQN);
    fx.disk(0, 1, 2, "sdb", WWID_B, "10.0.2.2:3260", IQN);
    fx.map("dm-0", WWID_A, &["sda", "sdb"]);
    let r = fx.report();
    let m: Vec<&Orphan> = r
        .orphans
        .iter()
        .filter(|o| o.reason == OrphanReason::IdentityMismatch && o.kind == OrphanKind::Map)
        .collect();
    assert_eq!(m.len(), 1, "{:#?}", r.orphans);
    assert_eq!(m[0].path.as_str(), "/dev/dm-0");
    assert_eq!(m[0].target.as_ref().unwrap().as_str(), "/dev/sdb");
    assert_eq!(m[0].wwid.as_ref().unwrap().as_str(), WWID_B);
    assert_eq!(m[0].claimed_wwid.as_ref().unwrap().as_str(), WWID_A);
}

#[test]
fn dangling_holders_stale_nodes_and_unlinked_disks() {
    let fx = Fx::new();
    fx.session(0, 1, IQN, ("10.0.2.2", 3260));
    fx.disk(0, 1, 1, "sda", WWID_A, "10.0.2.2:3260", IQN);
    fx.disk(0, 1, 2, "sdb", WWID_B, "10.0.2.2:3260", IQN);
    // sda names a holder that is gone.
    let holders = format!(
        "{}/target0:0:0/0:0:0:1/block/sda/holders",
        Fx::session_dir(0, 1)
    );
    assert!(fx.real(&holders).is_dir());
    fx.link(
        &format!("{holders}/dm-7"),
        "/sys/devices/virtual/block/dm-7",
    );
    // A node whose kernel device is gone.
    fx.file("/dev/sdq", b"");
    fx.file("/dev/sdq1", b"");
    // sdb lost its by-path link (udev link removed, device kept).
    fx.rm(&format!(
        "/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-{IQN}-lun-2"
    ));
    let r = fx.report();
    let got = reasons(&r);
    let dangling = (
        OrphanReason::DanglingHolder,
        "/sys/block/sda/holders/dm-7".to_owned(),
    );
    assert!(got.contains(&dangling), "{got:#?}");
    assert!(
        got.contains(&(OrphanReason::StaleNode, "/dev/sdq".to_owned())),
        "{got:#?}"
    );
    assert!(
        got.contains(&(OrphanReason::UnlinkedDevice, "/dev/sdb".to_owned())),
        "{got:#?}"
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    let unlinked = r
        .orphans
        .iter()
        .find(|o| o.reason == OrphanReason::UnlinkedDevice)
        .unwrap();
    assert_eq!(unlinked.wwid.as_ref().unwrap().as_str(), WWID_B);
}

#[test]
fn garbage_and_hostile_trees_give_partial_results_not_panics() {
    let fx = Fx::new();
    fx.session(0, 1, IQN, ("10.0.2.2", 3260));
    fx.disk(0, 1, 1, "sda", WWID_A, "10.0.2.2:3260", IQN);
    // Non-UTF-8 wwid on another disk, a link loop, a link that tries to escape the root,
    // a session whose device link is missing, binary junk in vpd_pg83.
    fx.disk(0, 1, 2, "sdb", WWID_B, "10.0.2.2:3260", IQN);
    fx.file(
        &format!("{}/target0:0:0/0:0:0:2/wwid", Fx::session_dir(0, 1)),
        &[0xff, 0xfe, 0x00],
    );
    fx.file(
        &format!("{}/target0:0:0/0:0:0:2/vpd_pg83", Fx::session_dir(0, 1)),
        &[0x00, 0x83, 0xff, 0xff, 0x01, 0x03, 0x00, 0xff, 0x60],
    );
    fx.raw_link("/dev/disk/by-id/loop-a", "loop-b");
    fx.raw_link("/dev/disk/by-id/loop-b", "loop-a");
    fx.raw_link(
        "/dev/disk/by-path/escape",
        "../../../../../../../../etc/passwd",
    );
    fx.raw_link("/dev/disk/by-id/abs", "/etc/shadow");
    fx.mkdir("/sys/class/iscsi_session/session9");
    fx.file("/sys/block/garbage", b"x");
    let r = fx.report();
    let got = reasons(&r);
    assert!(got.contains(&(
        OrphanReason::StaleLink,
        "/dev/disk/by-path/escape".to_owned()
    )));
    let escape = r
        .orphans
        .iter()
        .find(|o| o.path.as_str().ends_with("escape"))
        .unwrap();
    assert_eq!(
        escape.target.as_ref().unwrap().as_str(),
        "/etc/passwd",
        "stays in the root"
    );
    let diag = format!("{:?}", r.diagnostics);
    assert!(
        diag.contains("0:0:0:2/wwid") || diag.contains("sdb/device/wwid"),
        "{diag}"
    );
    assert!(
        diag.contains("loop-a") || diag.contains("too many"),
        "{diag}"
    );
    assert!(diag.contains("session9"), "{diag}");
}

#[test]
fn vpd_parser_tolerates_any_bytes() {
    assert!(vpd83_designators(&[]).is_empty());
    assert!(vpd83_designators(&[0, 0x80, 0, 4, 1, 3, 0, 0]).is_empty());
    let page = [0, 0x83, 0, 12, 0x01, 0x02, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
    assert_eq!(
        vpd83_designators(&page),
        vec!["20102030405060708".to_owned()]
    );
    // Declared length beyond the page: what fits is parsed, the rest ignored.
    let short = [
        0, 0x83, 0, 40, 0x01, 0x03, 0, 2, 0xab, 0xcd, 0x01, 0x03, 0, 9, 1,
    ];
    assert_eq!(vpd83_designators(&short), vec!["3abcd".to_owned()]);
}

proptest::proptest! {
    #[test]
    fn vpd_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
        let mut page = bytes;
        if page.len() > 1 { page[1] = 0x83; }
        let _ = vpd83_designators(&page);
    }
}

#[test]
fn by_path_names_are_split_into_portal_iqn_and_lun() {
    let r = parse_iscsi_by_path(
        "ip-10.0.2.2:3260-iscsi-iqn.2010-10.org.openstack:vol-lun-1-lun-0x4001000000000000",
    )
    .unwrap();
    assert_eq!(r.portal.as_deref(), Some("10.0.2.2:3260"));
    assert_eq!(r.iqn, "iqn.2010-10.org.openstack:vol-lun-1");
    assert_eq!(r.lun.as_deref(), Some("0x4001000000000000"));
    assert!(parse_iscsi_by_path("pci-0000:00:04.0").is_none());
    assert_eq!(claimed_identity("scsi-3600AB").as_deref(), Some("3600ab"));
    assert_eq!(claimed_identity("scsi-1IET_00010001"), None);
    assert_eq!(
        claimed_identity("dm-uuid-mpath-3600ab").as_deref(),
        Some("3600ab")
    );
    assert_eq!(claimed_identity("dm-name-mpatha"), None);
}
