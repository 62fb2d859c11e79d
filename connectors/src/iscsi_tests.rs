//! Tests of the iSCSI connector and the SCSI/multipath helpers on real-kernel layouts.

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;

use crate::connector::{Connector, ConnectorConfig, DisconnectOptions, connector_for};
use crate::error::ConnectorError;
use crate::host::Host;
use crate::props::{ConnectionProperties, Protocol};
use crate::scsi::{Hctl, Scsi};
use crate::testhost::{FakeHost, materialize, out, rm};

use super::IscsiConnector;

const MANUAL_SCAN: &str = include_str!("../testdata/real-kernel/iscsi-manual-scan.walk");
const ONE_LUN: &str = include_str!("../testdata/real-kernel/iscsi-1lun.walk");
const TWO_LUNS: &str = include_str!("../testdata/real-kernel/iscsi-2luns.walk");
const MPATH: &str = include_str!("../testdata/real-kernel/multipath-2paths.walk");

const IQN1: &str = "iqn.2010-10.org.openstack:volume-one";
const IQN2: &str = "iqn.2010-10.org.openstack:volume-two";
const WWID_1_1: &str = "360000000000000000e00000000010001";

fn iscsi(data: serde_json::Value) -> ConnectionProperties {
    ConnectionProperties::from_json(
        &serde_json::json!({"driver_volume_type": "iscsi", "data": data}),
        None,
    )
    .unwrap()
}

fn single(iqn: &str, lun: u64) -> ConnectionProperties {
    iscsi(
        serde_json::json!({"target_portal": "10.0.2.2:3260", "target_iqn": iqn, "target_lun": lun}),
    )
}

fn two_portals() -> ConnectionProperties {
    iscsi(serde_json::json!({
        "target_portal": "10.0.2.2:3260", "target_iqn": IQN1, "target_lun": 1,
        "target_portals": ["10.0.2.2:3260", "10.0.2.2:3261"],
        "target_iqns": [IQN1, IQN1], "target_luns": [1, 1]
    }))
}

fn config(use_multipath: bool) -> ConnectorConfig {
    ConnectorConfig {
        use_multipath,
        ..ConnectorConfig::default()
    }
}

/// Answers the read-only listing commands from the sessions/nodes given; anything else
/// (including `multipathd show status`: not running) as `other` says.
fn listing(
    sessions: &'static str,
    nodes: &'static str,
    mut other: impl FnMut(&str, &Path) -> Option<crate::host::CmdOutput> + 'static,
) -> impl FnMut(&str, &Path) -> crate::host::CmdOutput {
    move |cmd, root| {
        if let Some(o) = other(cmd, root) {
            return o;
        }
        match cmd {
            "iscsiadm -m session" if sessions.is_empty() => {
                out(21, "", "iscsiadm: No active sessions.\n")
            }
            "iscsiadm -m session" => out(0, sessions, ""),
            "iscsiadm -m node" => out(0, nodes, ""),
            c if c.starts_with("iscsiadm -m discoverydb -o show") => out(0, "", ""),
            "multipathd show status" => out(1, "", "error receiving packet"),
            _ => out(0, "", ""),
        }
    }
}

/// The kernel's side of `echo 1 > /sys/block/<dev>/device/delete`: the LUN dir, the block
/// class entry and the node go; udev drops the by-path link (by-id `scsi-*` links are left
/// stale on purpose so the connector's cleanup is visible).
fn kernel_delete(root: &Path, path: &str, walk: &str) {
    let Some(dev) = path
        .strip_prefix("/sys/block/")
        .and_then(|r| r.strip_suffix("/device/delete"))
    else {
        return;
    };
    let sysfs_dev = walk
        .lines()
        .find_map(|l| {
            let mut c = l.split('\t');
            let p = c.next()?;
            (p == format!("/sys/block/{dev}")).then(|| c.nth(2).map(str::to_owned))?
        })
        .unwrap_or_default();
    // ../devices/platform/hostH/sessionS/targetH:0:0/H:0:0:L/block/sdX → the LUN dir.
    if let Some(lun_dir) = sysfs_dev
        .strip_prefix("../")
        .and_then(|r| r.rsplit_once("/block/").map(|(d, _)| d))
    {
        rm(root, &format!("/sys/{lun_dir}"));
    }
    rm(root, &format!("/sys/block/{dev}"));
    rm(root, &format!("/dev/{dev}"));
    for line in walk.lines() {
        if line.contains("/dev/disk/by-path/") && line.ends_with(&format!("../../{dev}")) {
            rm(root, line.split('\t').next().unwrap_or(""));
        }
    }
}

// ---------------------------------------------------------------------- sysfs lookups

#[test]
fn device_lookup_through_the_session_sysfs_tree() {
    let host = FakeHost::from_capture(MANUAL_SCAN);
    let scsi = Scsi::new(&host);
    let hctl = scsi.get_hctl(1, 2).unwrap().unwrap();
    assert_eq!(
        hctl,
        Hctl {
            host: 0,
            channel: Some(0),
            target: Some(0),
            lun: 2
        }
    );
    assert_eq!(
        scsi.device_by_hctl(1, &hctl).unwrap().as_deref(),
        Some("sda")
    );
    let other_lun = Hctl { lun: 1, ..hctl };
    assert_eq!(scsi.device_by_hctl(1, &other_lun).unwrap(), None);
    assert_eq!(scsi.get_hctl(2, 2).unwrap(), None);
    assert_eq!(
        scsi.session_devices(1).unwrap(),
        vec![(2, "sda".to_owned())]
    );
    assert_eq!(
        scsi.sysfs_wwn(&["sda".to_owned()], None).unwrap().as_str(),
        "360000000000000000e00000000020002"
    );
    assert_eq!(scsi.hctl_of_device("sda").as_deref(), Some("0:0:0:2"));
}

#[test]
fn session_devices_of_a_shared_target() {
    let host = FakeHost::from_capture(TWO_LUNS);
    let scsi = Scsi::new(&host);
    assert_eq!(
        scsi.session_devices(1).unwrap(),
        vec![(1, "sda".to_owned()), (2, "sdb".to_owned())]
    );
}

#[test]
fn multipath_holders_and_wwn_through_dm() {
    let host = FakeHost::from_capture(MPATH);
    let scsi = Scsi::new(&host);
    let devs = vec!["sda".to_owned(), "sdb".to_owned()];
    assert_eq!(scsi.find_multipath_dm(&devs).as_deref(), Some("dm-0"));
    assert_eq!(scsi.dm_name("dm-0").as_deref(), Some(WWID_1_1));
    assert_eq!(scsi.dm_slaves("dm-0"), vec!["sda", "sdb"]);
    assert_eq!(
        scsi.sysfs_wwn(&devs, Some("dm-0")).unwrap().as_str(),
        WWID_1_1
    );
    // scsi-<wwid> points at dm-0 here, and the link name is still found.
    assert_eq!(scsi.sysfs_wwn(&devs, None).unwrap().as_str(), WWID_1_1);
    assert_eq!(
        scsi.device_identity("dm-0").unwrap().unwrap().as_str(),
        WWID_1_1
    );
}

#[test]
fn garbage_wwid_is_an_error_not_a_panic() {
    let host = FakeHost::from_capture(MANUAL_SCAN);
    std::fs::write(
        host.path("/sys/devices/platform/host0/session1/target0:0:0/0:0:0:2/wwid"),
        [0xff, 0x00, 0xfe],
    )
    .unwrap();
    let scsi = Scsi::new(&host);
    assert!(scsi.sysfs_wwid_of("sda").is_err());
    assert_eq!(scsi.sysfs_wwid(&["sda".to_owned()]), None);
}

// ---------------------------------------------------------------------- connect

#[test]
fn single_path_connect_follows_os_brick_command_sequence() {
    let host = FakeHost::new();
    let is_lun = |l: &str| {
        l.contains("0:0:0:2")
            || l.contains("sda")
            || l.contains("/dev/disk/by-id/")
            || l.contains("by-path/ip-")
            || l.contains("by-diskseq/2")
    };
    let is_session = move |l: &str| {
        !is_lun(l) && (l.contains("host0") || l.contains("session1") || l.contains("connection1"))
    };
    materialize(host.root(), MANUAL_SCAN, move |l| {
        !is_lun(l) && !is_session(l)
    });
    let logged_in = Rc::new(Cell::new(false));
    let li = logged_in.clone();
    let prefix = format!("iscsiadm -m node -T {IQN2} -p 10.0.2.2:3260");
    let p2 = prefix.clone();
    host.on_cmd(move |cmd, root| {
        if cmd == p2 {
            return out(21, "", "iscsiadm: No records found\n");
        }
        if cmd == format!("{p2} --login") {
            materialize(root, MANUAL_SCAN, is_session);
            li.set(true);
            return out(0, "Login ... successful.\n", "");
        }
        if cmd == "iscsiadm -m session" {
            return if li.get() {
                out(
                    0,
                    &format!("tcp: [1] 10.0.2.2:3260,1 {IQN2} (non-flash)\n"),
                    "",
                )
            } else {
                out(21, "", "iscsiadm: No active sessions.\n")
            };
        }
        out(0, "", "")
    });
    host.on_write(move |path, content, root| {
        assert_eq!(
            (path, content),
            ("/sys/class/scsi_host/host0/scan", "0 0 2")
        );
        materialize(root, MANUAL_SCAN, is_lun);
        Ok(())
    });
    let conn = connector_for(Protocol::Iscsi, &host, config(false)).unwrap();
    let info = conn.connect_volume(&single(IQN2, 2)).unwrap();
    assert_eq!(info.path.as_str(), "/dev/sda");
    assert_eq!(info.kind, "block");
    assert_eq!(
        info.scsi_wwn.as_ref().map(|w| w.as_str()),
        Some("360000000000000000e00000000020002")
    );
    assert_eq!(info.multipath_id, None);
    assert!(logged_in.get());
    assert_eq!(
        host.commands(),
        vec![
            prefix.clone(),
            format!("{prefix} --interface default --op new"),
            format!("{prefix} --op update -n node.session.scan -v manual"),
            "iscsiadm -m session".to_owned(),
            format!("{prefix} --login"),
            format!("{prefix} --op update -n node.startup -v automatic"),
            "iscsiadm -m session".to_owned(),
        ]
    );
    assert_eq!(
        host.writes(),
        vec![(
            "/sys/class/scsi_host/host0/scan".to_owned(),
            "0 0 2".to_owned()
        )]
    );
}

#[test]
fn manual_scan_mode_is_set_even_when_the_node_exists() {
    let host = FakeHost::from_capture(TWO_LUNS);
    let session =
        Box::leak(format!("tcp: [1] 10.0.2.2:3260,1 {IQN2} (non-flash)\n").into_boxed_str());
    host.on_cmd(listing(session, "", |_, _| None));
    let conn = IscsiConnector::new(&host, config(false));
    let info = conn.connect_volume(&single(IQN2, 1)).unwrap();
    assert_eq!(info.path.as_str(), "/dev/sda");
    let cmds = host.commands();
    assert!(
        cmds.iter()
            .any(|c| c.ends_with("--op update -n node.session.scan -v manual")),
        "{cmds:?}"
    );
    assert!(!cmds.iter().any(|c| c.contains("--op new")), "{cmds:?}");
    assert!(!cmds.iter().any(|c| c.ends_with("--login")), "{cmds:?}");
    // The device already exists: one targeted scan, no wildcard.
    assert_eq!(
        host.writes(),
        vec![(
            "/sys/class/scsi_host/host0/scan".to_owned(),
            "0 0 1".to_owned()
        )]
    );
}

#[test]
fn failed_single_path_portal_is_cleaned_and_reported() {
    let host = FakeHost::new();
    host.on_cmd(move |cmd, _| {
        if cmd.ends_with("--login") {
            return out(
                8,
                "",
                "iscsiadm: connection login retries (reopen_max) 5 exceeded\n",
            );
        }
        if cmd == "iscsiadm -m session" {
            return out(21, "", "iscsiadm: No active sessions.\n");
        }
        if cmd == "iscsiadm -m node" {
            return out(0, &format!("10.0.2.2:3260,-1 {IQN1}\n"), "");
        }
        out(0, "", "")
    });
    let conn = IscsiConnector::new(&host, config(false));
    let err = conn.connect_volume(&single(IQN1, 1)).unwrap_err();
    assert!(
        matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
        "{err}"
    );
    let cmds = host.commands();
    // The node record left by the failed login is deleted (nothing else to remove).
    assert!(cmds.iter().any(|c| c.ends_with("--op delete")), "{cmds:?}");
    assert!(host.writes().is_empty());
    // Retries waited on the host clock, not in real time.
    assert!(host.now() > std::time::Duration::ZERO);
}

#[test]
fn multipath_connect_adds_wwid_and_paths_until_the_dm_appears() {
    // Logged in, both paths present, but multipathd has not built the map yet; udev's
    // scsi-<wwid> link still points at the first path.
    let has_dm = |l: &str| l.contains("dm-0") || l.contains("/dev/mapper");
    let host = FakeHost::new();
    materialize(host.root(), MPATH, move |l| !has_dm(l));
    std::os::unix::fs::symlink(
        "../../sda",
        host.path(&format!("/dev/disk/by-id/scsi-{WWID_1_1}")),
    )
    .unwrap();
    let sessions = Box::leak(
        format!(
            "tcp: [1] 10.0.2.2:3260,1 {IQN1} (non-flash)\ntcp: [2] 10.0.2.2:3261,1 {IQN1} (non-flash)\n"
        )
        .into_boxed_str(),
    );
    host.on_cmd(listing(sessions, "", move |cmd, root| match cmd {
        "multipathd show status" => Some(out(0, "path checker states:\n", "")),
        c if c == format!("multipath -a {WWID_1_1}") => {
            Some(out(0, &format!("wwid '{WWID_1_1}' added\n"), ""))
        }
        "multipathd add path /dev/sda" => {
            rm(root, &format!("/dev/disk/by-id/scsi-{WWID_1_1}"));
            materialize(root, MPATH, has_dm);
            Some(out(0, "ok\n", ""))
        }
        _ => None,
    }));
    let conn = IscsiConnector::new(&host, config(true));
    let info = conn.connect_volume(&two_portals()).unwrap();
    assert_eq!(info.path.as_str(), "/dev/dm-0");
    assert_eq!(
        info.multipath_id.as_ref().map(|w| w.as_str()),
        Some(WWID_1_1)
    );
    assert_eq!(info.scsi_wwn, info.multipath_id);
    let cmds = host.commands();
    let pos = |s: &str| cmds.iter().position(|c| c == s);
    let add_wwid = pos(&format!("multipath -a {WWID_1_1}")).expect("multipath -a");
    let add_path = pos("multipathd add path /dev/sda").expect("add path");
    let check = pos("multipath -C dm-0").expect("multipath -C");
    assert!(add_wwid < add_path && add_path < check, "{cmds:?}");
    assert_eq!(
        host.writes(),
        vec![
            (
                "/sys/class/scsi_host/host0/scan".to_owned(),
                "0 0 1".to_owned()
            ),
            (
                "/sys/class/scsi_host/host1/scan".to_owned(),
                "0 0 1".to_owned()
            ),
        ]
    );
}

#[test]
fn scanning_gives_up_when_the_session_never_shows_in_sysfs() {
    // iscsiadm lists a session but sysfs has none (the kernel tore it down): no HCTL.
    let host = FakeHost::new();
    let session =
        Box::leak(format!("tcp: [4] 10.0.2.2:3260,1 {IQN2} (non-flash)\n").into_boxed_str());
    host.on_cmd(listing(session, "", |_, _| None));
    let conn = IscsiConnector::new(&host, config(false));
    let err = conn.connect_volume(&single(IQN2, 1)).unwrap_err();
    assert!(
        matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
        "{err}"
    );
    assert!(host.writes().is_empty());
    // Three connect attempts, each bounded by the rescan schedule (a few minutes of host time).
    assert!(
        host.now() < std::time::Duration::from_secs(600),
        "{:?}",
        host.now()
    );
}

// ---------------------------------------------------------------------- disconnect

#[test]
fn disconnect_one_lun_keeps_the_session_of_the_other() {
    let host = FakeHost::from_capture(TWO_LUNS);
    let session =
        Box::leak(format!("tcp: [1] 10.0.2.2:3260,1 {IQN2} (non-flash)\n").into_boxed_str());
    let node = Box::leak(format!("10.0.2.2:3260,4294967295 {IQN2}\n").into_boxed_str());
    host.on_cmd(listing(session, node, |_, _| None));
    host.on_write(|path, _, root| {
        kernel_delete(root, path, TWO_LUNS);
        Ok(())
    });
    let conn = IscsiConnector::new(&host, config(false));
    conn.disconnect_volume(&single(IQN2, 2), None, DisconnectOptions::default())
        .unwrap();
    assert_eq!(
        host.writes(),
        vec![("/sys/block/sdb/device/delete".to_owned(), "1".to_owned())]
    );
    let mut removed = host.removes();
    removed.sort();
    assert_eq!(
        removed,
        vec![
            "/dev/disk/by-id/scsi-1IET_00020002",
            "/dev/disk/by-id/scsi-33000000200000002",
            "/dev/disk/by-id/scsi-360000000000000000e00000000020002",
            "/dev/disk/by-id/scsi-SIET_VIRTUAL-DISK_beaf22",
        ]
    );
    assert!(host.exists("/dev/disk/by-id/scsi-360000000000000000e00000000020001"));
    assert!(host.exists("/dev/sda"));
    let cmds = host.commands();
    assert!(!cmds.iter().any(|c| c.contains("--logout")), "{cmds:?}");
    assert!(!cmds.iter().any(|c| c.contains("blockdev")), "{cmds:?}");
}

#[test]
fn disconnect_of_the_last_lun_logs_out_and_deletes_the_node() {
    let host = FakeHost::from_capture(ONE_LUN);
    let session =
        Box::leak(format!("tcp: [1] 10.0.2.2:3260,1 {IQN1} (non-flash)\n").into_boxed_str());
    let node = Box::leak(format!("10.0.2.2:3260,4294967295 {IQN1}\n").into_boxed_str());
    host.on_cmd(listing(session, node, |_, _| None));
    host.on_write(|path, _, root| {
        kernel_delete(root, path, ONE_LUN);
        Ok(())
    });
    let conn = IscsiConnector::new(&host, config(false));
    let info = crate::connector::DeviceInfo::block(
        crate::host::HostPath::new("/dev/sda").unwrap(),
        None,
        None,
    );
    conn.disconnect_volume(&single(IQN1, 1), Some(&info), DisconnectOptions::default())
        .unwrap();
    let prefix = format!("iscsiadm -m node -T {IQN1} -p 10.0.2.2:3260");
    let cmds = host.commands();
    // The path used for I/O was this very device: it is flushed before deletion.
    assert!(
        cmds.contains(&"blockdev --flushbufs /dev/sda".to_owned()),
        "{cmds:?}"
    );
    let tail: Vec<&String> = cmds.iter().rev().take(3).rev().collect();
    assert_eq!(
        tail,
        vec![
            &format!("{prefix} --op update -n node.startup -v manual"),
            &format!("{prefix} --logout"),
            &format!("{prefix} --op delete"),
        ]
    );
    assert_eq!(
        host.writes(),
        vec![("/sys/block/sda/device/delete".to_owned(), "1".to_owned())]
    );
}

#[test]
fn disconnect_of_an_unknown_volume_touches_nothing() {
    let host = FakeHost::from_capture(ONE_LUN);
    let session =
        Box::leak(format!("tcp: [1] 10.0.2.2:3260,1 {IQN1} (non-flash)\n").into_boxed_str());
    let node = Box::leak(format!("10.0.2.2:3260,4294967295 {IQN1}\n").into_boxed_str());
    host.on_cmd(listing(session, node, |_, _| None));
    let conn = IscsiConnector::new(&host, config(false));
    // Same target, LUN that has no device; and a target without session or node.
    conn.disconnect_volume(&single(IQN1, 7), None, DisconnectOptions::default())
        .unwrap();
    conn.disconnect_volume(&single(IQN2, 1), None, DisconnectOptions::default())
        .unwrap();
    assert!(host.writes().is_empty());
    assert!(host.removes().is_empty());
    let cmds = host.commands();
    assert!(
        cmds.iter().all(|c| c.starts_with("iscsiadm -m session")
            || c.starts_with("iscsiadm -m node")
            || c.starts_with("iscsiadm -m discoverydb")),
        "{cmds:?}"
    );
    assert!(
        !cmds
            .iter()
            .any(|c| c.contains("--logout") || c.contains("--op")),
        "{cmds:?}"
    );
}

fn mpath_host(flush_ok: bool) -> FakeHost {
    let host = FakeHost::from_capture(MPATH);
    let sessions = Box::leak(
        format!(
            "tcp: [1] 10.0.2.2:3260,1 {IQN1} (non-flash)\ntcp: [2] 10.0.2.2:3261,1 {IQN1} (non-flash)\n"
        )
        .into_boxed_str(),
    );
    let nodes = Box::leak(
        format!("10.0.2.2:3260,4294967295 {IQN1}\n10.0.2.2:3261,4294967295 {IQN1}\n")
            .into_boxed_str(),
    );
    host.on_cmd(listing(sessions, nodes, move |cmd, root| match cmd {
        "multipathd show status" => Some(out(0, "path checker states:\n", "")),
        c if c.starts_with("multipath -f ") => Some(if flush_ok {
            rm(root, "/sys/block/dm-0");
            rm(root, "/dev/dm-0");
            out(0, "", "")
        } else {
            out(1, "", &format!("{WWID_1_1}: map in use\n"))
        }),
        c if c.starts_with("multipathd del map ") => {
            if c.ends_with(WWID_1_1) {
                rm(root, "/sys/block/dm-0");
                rm(root, "/dev/dm-0");
                Some(out(0, "ok\n", ""))
            } else {
                Some(out(1, "fail\n", ""))
            }
        }
        "multipathd show paths raw format %d" => {
            let listed: String = ["sda", "sdb"]
                .iter()
                .filter(|d| root.join("dev").join(d).exists())
                .map(|d| format!("{d}\n"))
                .collect();
            Some(out(0, &listed, ""))
        }
        _ => None,
    }));
    host.on_write(|path, _, root| {
        kernel_delete(root, path, MPATH);
        Ok(())
    });
    host
}

#[test]
fn flush_failure_without_force_removes_nothing() {
    let host = mpath_host(false);
    let conn = IscsiConnector::new(&host, config(true));
    let err = conn
        .disconnect_volume(&two_portals(), None, DisconnectOptions::default())
        .unwrap_err();
    match &err {
        ConnectorError::FlushFailed { map, output } => {
            assert_eq!(map, WWID_1_1);
            assert!(output.contains("map in use"), "{output}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(host.writes().is_empty());
    assert!(host.removes().is_empty());
    let cmds = host.commands();
    assert_eq!(
        cmds.iter()
            .filter(|c| c.starts_with("multipath -f"))
            .count(),
        3,
        "{cmds:?}"
    );
    assert!(
        !cmds
            .iter()
            .any(|c| c.contains("--logout") || c.contains("del map"))
    );
    assert!(host.exists("/dev/sda") && host.exists("/dev/sdb") && host.exists("/dev/dm-0"));
    // Retries slept 10 s then 20 s on the host clock.
    assert_eq!(host.now(), std::time::Duration::from_secs(30));
}

#[test]
fn flush_failure_with_force_cleans_everything_and_reports() {
    let host = mpath_host(false);
    let conn = IscsiConnector::new(&host, config(true));
    let err = conn
        .disconnect_volume(
            &two_portals(),
            None,
            DisconnectOptions {
                force: true,
                ignore_errors: false,
            },
        )
        .unwrap_err();
    let ConnectorError::DisconnectErrors { errors } = &err else {
        panic!("unexpected {err}");
    };
    assert_eq!(errors.len(), 1, "{err}");
    assert!(matches!(&errors[0], ConnectorError::FlushFailed { map, .. } if map == WWID_1_1));
    assert_eq!(
        host.writes(),
        vec![
            ("/sys/block/sda/device/delete".to_owned(), "1".to_owned()),
            ("/sys/block/sdb/device/delete".to_owned(), "1".to_owned()),
        ]
    );
    let cmds = host.commands();
    assert_eq!(cmds.iter().filter(|c| c.ends_with("--logout")).count(), 2);
    // The map is deleted by its name, not by its dm device (os-brick §9.1).
    assert!(
        cmds.contains(&format!("multipathd del map {WWID_1_1}")),
        "{cmds:?}"
    );
    assert!(!host.exists("/sys/block/dm-0"));
    // Individual paths of a multipath are never flushed.
    assert!(!cmds.iter().any(|c| c.starts_with("blockdev")));
}

#[test]
fn flush_failure_with_force_and_ignore_errors_succeeds() {
    let host = mpath_host(false);
    let conn = IscsiConnector::new(&host, config(false));
    conn.disconnect_volume(
        &two_portals(),
        None,
        DisconnectOptions {
            force: true,
            ignore_errors: true,
        },
    )
    .unwrap();
    assert_eq!(host.writes().len(), 2);
}

#[test]
fn multipath_detach_is_multipath_aware_even_without_use_multipath() {
    let host = mpath_host(true);
    let conn = IscsiConnector::new(&host, config(false));
    conn.disconnect_volume(&two_portals(), None, DisconnectOptions::default())
        .unwrap();
    let cmds = host.commands();
    let flush = cmds
        .iter()
        .position(|c| c == &format!("multipath -f {WWID_1_1}"));
    let first_logout = cmds.iter().position(|c| c.ends_with("--logout"));
    assert!(
        flush.is_some() && first_logout.is_some() && flush < first_logout,
        "{cmds:?}"
    );
    assert!(!cmds.iter().any(|c| c.contains("del map")));
    assert_eq!(host.writes().len(), 2);
}

// ---------------------------------------------------------------------- paths

#[test]
fn volume_paths_report_device_and_wwid_and_skip_dangling_links() {
    let host = FakeHost::from_capture(MPATH);
    let conn = IscsiConnector::new(&host, config(true));
    let vp = conn.get_volume_paths(&two_portals()).unwrap();
    assert!(vp.diagnostics.is_empty(), "{:?}", vp.diagnostics);
    let got: Vec<(&str, &str, &str)> = vp
        .paths
        .iter()
        .map(|p| {
            (
                p.path.as_str(),
                p.device.as_ref().unwrap().as_str(),
                p.wwid.as_ref().unwrap().as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-iqn.2010-10.org.openstack:volume-one-lun-1",
                "/dev/sda",
                WWID_1_1
            ),
            (
                "/dev/disk/by-path/ip-10.0.2.2:3261-iscsi-iqn.2010-10.org.openstack:volume-one-lun-1",
                "/dev/sdb",
                WWID_1_1
            ),
        ]
    );
    // No process is spawned to list paths.
    assert!(host.commands().is_empty());

    rm(host.root(), "/dev/sdb");
    let vp = conn.get_volume_paths(&two_portals()).unwrap();
    assert_eq!(vp.paths.len(), 1);
    assert_eq!(vp.diagnostics.len(), 1);
    assert!(
        vp.diagnostics[0].message.contains("/dev/sdb"),
        "{:?}",
        vp.diagnostics
    );
}

#[test]
fn single_path_volume_paths_need_a_sysfs_session() {
    let host = FakeHost::from_capture(MPATH);
    let conn = IscsiConnector::new(&host, config(false));
    let vp = conn.get_volume_paths(&single(IQN1, 1)).unwrap();
    assert_eq!(vp.paths.len(), 1);
    assert!(vp.paths[0].path.as_str().contains(":3260-"));
    // No session to volume-two: no path, even if a stale link existed.
    std::os::unix::fs::symlink(
        "../../sda",
        host.path(
            "/dev/disk/by-path/ip-10.0.2.2:3260-iscsi-iqn.2010-10.org.openstack:volume-two-lun-1",
        ),
    )
    .unwrap();
    assert!(
        conn.get_volume_paths(&single(IQN2, 1))
            .unwrap()
            .paths
            .is_empty()
    );
    assert!(host.commands().is_empty());
}

#[test]
fn search_path_and_all_available_volumes() {
    let host = FakeHost::from_capture(MPATH);
    let conn = IscsiConnector::new(&host, config(false));
    assert_eq!(
        conn.get_search_path().unwrap().as_str(),
        "/dev/disk/by-path"
    );
    let all = conn.get_all_available_volumes(None).unwrap();
    assert_eq!(all.len(), 4);
    assert!(
        all.iter()
            .all(|p| p.as_str().starts_with("/dev/disk/by-path/"))
    );
    let empty = FakeHost::new();
    let conn = IscsiConnector::new(&empty, config(false));
    assert!(conn.get_all_available_volumes(None).unwrap().is_empty());
}

#[test]
fn extend_rescans_each_path_and_resizes_the_map() {
    let host = mpath_host(true);
    host.on_cmd(|cmd, _| match cmd {
        c if c.starts_with("blockdev --getsize64") => out(0, "67108864\n", ""),
        _ => out(0, "ok\n", ""),
    });
    let conn = IscsiConnector::new(&host, config(true));
    assert_eq!(conn.extend_volume(&two_portals()).unwrap(), 67_108_864);
    let writes = host.writes();
    assert_eq!(
        writes,
        vec![
            (
                "/sys/bus/scsi/drivers/sd/0:0:0:1/rescan".to_owned(),
                "1".to_owned()
            ),
            (
                "/sys/bus/scsi/drivers/sd/1:0:0:1/rescan".to_owned(),
                "1".to_owned()
            ),
        ]
    );
    assert!(
        host.commands()
            .contains(&"multipathd resize map /dev/dm-0".to_owned())
    );
}

// ---------------------------------------------------------------------- protocol

#[test]
fn other_protocols_are_typed_errors() {
    let host = FakeHost::new();
    let local = ConnectionProperties::from_json(
        &serde_json::json!({"driver_volume_type": "local", "data": {"device_path": "/dev/sdx"}}),
        None,
    )
    .unwrap();
    let conn = connector_for(Protocol::Iscsi, &host, config(false)).unwrap();
    assert_eq!(conn.protocol(), Protocol::Iscsi);
    assert!(matches!(
        conn.connect_volume(&local),
        Err(ConnectorError::WrongProtocol { .. })
    ));
    assert!(matches!(
        conn.disconnect_volume(&local, None, DisconnectOptions::default()),
        Err(ConnectorError::WrongProtocol { .. })
    ));
    assert_eq!(
        connector_for(Protocol::FibreChannel, &host, config(false))
            .unwrap()
            .protocol(),
        Protocol::FibreChannel
    );
    assert!(host.events().is_empty());
}

#[test]
fn enforced_multipath_fails_when_multipathd_is_down() {
    let host = FakeHost::new();
    host.on_cmd(|_, _| out(1, "error receiving packet", ""));
    let conn = IscsiConnector::new(
        &host,
        ConnectorConfig {
            use_multipath: true,
            enforce_multipath: true,
            ..ConnectorConfig::default()
        },
    );
    let err = conn.connect_volume(&two_portals()).unwrap_err();
    assert!(
        matches!(err, ConnectorError::MultipathRequired { .. }),
        "{err}"
    );
    assert_eq!(host.commands(), vec!["multipathd show status".to_owned()]);
}
