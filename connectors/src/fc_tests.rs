//! Tests of the Fibre Channel connector on a fake FC host: sysfs shaped as the kernel's FC
//! transport class lays it out (os-brick fixture values, os-brick-facts §7.3), with a tiny
//! "kernel" that answers `scan` writes from a list of exported LUNs and `delete` writes by
//! removing the device, its sysfs entries and its udev links.

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde_json::json;

use crate::connector::{Connector, ConnectorConfig, DeviceInfo, DisconnectOptions};
use crate::error::ConnectorError;
use crate::host::{Host, HostPath};
use crate::props::{ConnectionProperties, Protocol};
use crate::testhost::{FakeHost, out, rm};

use super::{FcConnector, fc_hbas, pci_num};

const PCI6: &str = "/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.2";
const PCI7: &str = "/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.3";
const INIT6: &str = "50014380186af83c";
const INIT7: &str = "50014380186af83e";
const TGT_A: &str = "514f0c50023f6c00";
const TGT_B: &str = "514f0c50023f6c01";
const NAA_V: &str = "naa.60002ac00000000000000b860000741c";
const WWID_V: &str = "360002ac00000000000000b860000741c";
const NAA_W: &str = "naa.60002ac00000000000000b8600007999";

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

fn link(root: &Path, path: &str, target: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    let _ = fs::remove_file(&p);
    symlink(target, p).unwrap();
}

/// `/sys/devices/...` → the relative target of a link at depth `up` below `/sys`.
fn rel(up: usize, sys_path: &str) -> String {
    format!(
        "{}{}",
        "../".repeat(up),
        sys_path.trim_start_matches("/sys/")
    )
}

/// Formats a LUN as udev's path_id does (independent of `naming`).
fn udev_lun(lun: u64) -> String {
    if lun < 256 {
        lun.to_string()
    } else {
        format!("0x{:04x}{:04x}00000000", lun & 0xffff, (lun >> 16) & 0xffff)
    }
}

/// A LUN the array presents to one HBA through one target port.
#[derive(Debug, Clone)]
struct Export {
    host: u32,
    channel: u32,
    target: u32,
    /// The LUN as the kernel numbers it (after the addressing mode).
    lun: u64,
    naa: String,
    pci_dir: String,
    rport: String,
    wwpn: String,
}

impl Export {
    fn hctl(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.host, self.channel, self.target, self.lun
        )
    }
    fn lun_dir(&self) -> String {
        format!(
            "{}/host{}/{}/target{}:{}:{}/{}",
            self.pci_dir,
            self.host,
            self.rport,
            self.host,
            self.channel,
            self.target,
            self.hctl()
        )
    }
    fn by_path(&self) -> String {
        let pci = self.pci_dir.rsplit('/').next().unwrap();
        format!(
            "/dev/disk/by-path/pci-{pci}-fc-0x{}-lun-{}",
            self.wwpn,
            udev_lun(self.lun)
        )
    }
}

#[derive(Debug, Default)]
struct Kernel {
    root: PathBuf,
    exports: Vec<Export>,
    /// HCTL → device name of materialized LUNs.
    present: Vec<(String, String)>,
    next: u8,
}

impl Kernel {
    fn materialize(&mut self, e: &Export) -> String {
        let dev = format!("sd{}", char::from(b'b' + self.next));
        self.next += 1;
        let root = self.root.clone();
        let ld = e.lun_dir();
        write(&root, &format!("{ld}/wwid"), &format!("{}\n", e.naa));
        write(&root, &format!("{ld}/delete"), "");
        write(&root, &format!("{ld}/block/{dev}/size"), "65536\n");
        link(
            &root,
            &format!("{ld}/block/{dev}/device"),
            &format!("../../../{}", e.hctl()),
        );
        let dev_dir = format!("{ld}/block/{dev}");
        link(&root, &format!("/sys/block/{dev}"), &rel(1, &dev_dir));
        link(&root, &format!("/sys/class/block/{dev}"), &rel(2, &dev_dir));
        link(
            &root,
            &format!("/sys/bus/scsi/devices/{}", e.hctl()),
            &rel(3, &ld),
        );
        write(&root, &format!("/dev/{dev}"), "");
        link(&root, &e.by_path(), &format!("../../{dev}"));
        let udev = format!("3{}", e.naa.trim_start_matches("naa."));
        link(
            &root,
            &format!("/dev/disk/by-id/scsi-{udev}"),
            &format!("../../{dev}"),
        );
        self.present.push((e.hctl(), dev.clone()));
        dev
    }

    fn scan(&mut self, host: u32, text: &str) {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [c, t, l] = parts.as_slice() else { return };
        let want = |v: &str, x: u32| v == "-" || v.parse::<u32>().ok() == Some(x);
        let lun: Option<u64> = if *l == "-" { None } else { l.parse().ok() };
        let hits: Vec<Export> = self
            .exports
            .iter()
            .filter(|e| {
                e.host == host
                    && want(c, e.channel)
                    && want(t, e.target)
                    && lun.is_none_or(|x| x == e.lun)
                    && !self.present.iter().any(|(h, _)| *h == e.hctl())
            })
            .cloned()
            .collect();
        for e in hits {
            self.materialize(&e);
        }
    }

    fn delete(&mut self, dev: &str) {
        let Some(pos) = self.present.iter().position(|(_, d)| d == dev) else {
            return;
        };
        let (hctl, _) = self.present.remove(pos);
        let root = self.root.clone();
        if let Some(e) = self.exports.iter().find(|e| e.hctl() == hctl).cloned() {
            rm(&root, &e.lun_dir());
            rm(&root, &e.by_path());
            rm(&root, &format!("/sys/bus/scsi/devices/{hctl}"));
        }
        rm(&root, &format!("/sys/block/{dev}"));
        rm(&root, &format!("/sys/class/block/{dev}"));
        rm(&root, &format!("/dev/{dev}"));
    }
}

/// A fake FC host: HBAs, remote ports, exported LUNs and a kernel answering writes.
struct World {
    host: FakeHost,
    kernel: Rc<RefCell<Kernel>>,
}

impl World {
    fn new() -> Self {
        let host = FakeHost::new();
        let kernel = Rc::new(RefCell::new(Kernel {
            root: host.root().to_path_buf(),
            ..Kernel::default()
        }));
        let k = Rc::clone(&kernel);
        host.on_write(move |path, content, _root| {
            let mut k = k.borrow_mut();
            if let Some(h) = path
                .strip_prefix("/sys/class/scsi_host/host")
                .and_then(|r| r.strip_suffix("/scan"))
                .and_then(|h| h.parse::<u32>().ok())
            {
                k.scan(h, content);
            } else if let Some(dev) = path
                .strip_prefix("/sys/block/")
                .and_then(|r| r.strip_suffix("/device/delete"))
            {
                k.delete(dev);
            }
            Ok(())
        });
        host.on_cmd(|cmd, _| match cmd {
            "multipathd show status" => out(1, "", "error receiving packet"),
            _ => out(0, "", ""),
        });
        Self { host, kernel }
    }

    fn root(&self) -> PathBuf {
        self.host.root().to_path_buf()
    }

    fn hba(&self, pci_dir: &str, host: u32, wwpn: &str, state: &str) {
        let root = self.root();
        let dir = format!("{pci_dir}/host{host}");
        let fc = format!("{dir}/fc_host/host{host}");
        write(&root, &format!("{fc}/port_name"), &format!("0x{wwpn}\n"));
        write(&root, &format!("{fc}/node_name"), "0x200010604b019419\n");
        write(&root, &format!("{fc}/port_state"), &format!("{state}\n"));
        link(
            &root,
            &format!("/sys/class/fc_host/host{host}"),
            &rel(2, &fc),
        );
        let sh = format!("{dir}/scsi_host/host{host}");
        write(&root, &format!("{sh}/scan"), "");
        link(
            &root,
            &format!("/sys/class/scsi_host/host{host}"),
            &rel(2, &sh),
        );
    }

    /// A remote port `rport-H:C-N` with `scsi_target_id`; `in_transport` also lists the
    /// SCSI target in `fc_transport` (the kernel does so once the target has a LUN).
    #[allow(clippy::too_many_arguments)]
    fn rport(
        &self,
        pci_dir: &str,
        host: u32,
        c: u32,
        n: u32,
        wwpn: &str,
        tid: i64,
        in_transport: bool,
    ) {
        let root = self.root();
        let rname = format!("rport-{host}:{c}-{n}");
        let rdir = format!("{pci_dir}/host{host}/{rname}");
        let cls = format!("{rdir}/fc_remote_ports/{rname}");
        write(&root, &format!("{cls}/port_name"), &format!("0x{wwpn}\n"));
        write(&root, &format!("{cls}/scsi_target_id"), &format!("{tid}\n"));
        link(
            &root,
            &format!("/sys/class/fc_remote_ports/{rname}"),
            &rel(2, &cls),
        );
        if in_transport && tid >= 0 {
            let tname = format!("target{host}:{c}:{tid}");
            let tcls = format!("{rdir}/{tname}/fc_transport/{tname}");
            write(&root, &format!("{tcls}/port_name"), &format!("0x{wwpn}\n"));
            link(
                &root,
                &format!("/sys/class/fc_transport/{tname}"),
                &rel(2, &tcls),
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn export(
        &self,
        pci_dir: &str,
        host: u32,
        c: u32,
        t: u32,
        rport_n: u32,
        wwpn: &str,
        lun: u64,
        naa: &str,
    ) -> Export {
        let e = Export {
            host,
            channel: c,
            target: t,
            lun,
            naa: naa.to_owned(),
            pci_dir: pci_dir.to_owned(),
            rport: format!("rport-{host}:{c}-{rport_n}"),
            wwpn: wwpn.to_owned(),
        };
        self.kernel.borrow_mut().exports.push(e.clone());
        e
    }

    /// Exports and materializes at once (a LUN already attached).
    fn attached(&self, e: &Export) -> String {
        self.kernel.borrow_mut().materialize(e)
    }

    fn scans(&self) -> Vec<(String, String)> {
        self.host
            .writes()
            .into_iter()
            .filter(|(p, _)| p.ends_with("/scan"))
            .collect()
    }

    fn connector(&self, use_multipath: bool) -> FcConnector<'_> {
        FcConnector::new(
            &self.host,
            ConnectorConfig {
                use_multipath,
                ..ConnectorConfig::default()
            },
        )
    }
}

fn fc(data: serde_json::Value) -> ConnectionProperties {
    ConnectionProperties::from_json(
        &json!({"driver_volume_type": "fibre_channel", "data": data}),
        None,
    )
    .unwrap()
}

/// Two Online HBAs (host6, host7), each logged in to target port A (host6) / B (host7).
fn two_hba_world() -> World {
    let w = World::new();
    w.hba(PCI6, 6, INIT6, "Online");
    w.hba(PCI7, 7, INIT7, "Online");
    w
}

// ------------------------------------------------------------------------ discovery

#[test]
fn pci_num_follows_os_brick_rules() {
    let p = |s: &str| HostPath::new(s).unwrap();
    assert_eq!(
        pci_num(&p(
            "/sys/devices/pci0000:00/0000:00:03.0/0000:05:00.2/host1/fc_host/host1"
        )),
        (None, Some("0000:05:00.2".to_owned()))
    );
    assert_eq!(
        pci_num(&p(
            "/sys/devices/platform/smb/smb:motherboard/80040000000.peu0-c0/pci0000:00/0000:00:03.0/0000:05:00.3/host2/fc_host/host2"
        )),
        (
            Some("platform-80040000000.peu0-c0".to_owned()),
            Some("0000:05:00.3".to_owned())
        )
    );
    assert_eq!(
        pci_num(&p(
            "/sys/devices/pci0000:20/0000:20:03.0/0000:21:00.2/net/ens2f2/ctlr_2/host3/fc_host/host3"
        )),
        (None, Some("0000:21:00.2".to_owned()))
    );
    assert_eq!(
        pci_num(&p("/sys/devices/virtual/fc/fc_host/x")),
        (None, None)
    );
}

#[test]
fn hbas_are_read_from_sysfs_and_broken_ones_reported() {
    let w = two_hba_world();
    write(&w.root(), "/sys/class/fc_host/host9/port_name", "garbage\n");
    let (hbas, diags) = fc_hbas(&w.host);
    assert_eq!(hbas.len(), 2);
    assert_eq!(hbas[0].host_device(), "host6");
    assert_eq!(hbas[0].port_name.as_str(), INIT6);
    assert_eq!(hbas[0].pci.as_deref(), Some("0000:05:00.2"));
    assert_eq!(hbas[1].pci.as_deref(), Some("0000:05:00.3"));
    assert!(hbas[0].is_online());
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].message.contains("port_name"), "{diags:?}");
}

#[test]
fn target_found_in_fc_transport_then_in_remote_ports_skipping_minus_one() {
    let w = two_hba_world();
    // host6: port A only as an rport with a real target id (no LUN yet, so not in fc_transport).
    w.rport(PCI6, 6, 0, 4, TGT_A, 3, false);
    // host6: port B listed in fc_transport.
    w.rport(PCI6, 6, 0, 1, TGT_B, 1, true);
    // host7: port A is logged in but is not a SCSI target.
    w.rport(PCI7, 7, 0, 0, TGT_A, -1, false);
    let c = w.connector(false);
    let a = crate::ids::Wwpn::new(&TGT_A.to_uppercase()).unwrap();
    let b = crate::ids::Wwpn::new(TGT_B).unwrap();
    assert_eq!(c.find_target(6, &a), Some((0, 3)));
    assert_eq!(c.find_target(6, &b), Some((0, 1)));
    assert_eq!(c.find_target(7, &a), None);
    assert_eq!(c.find_target(7, &b), None);
}

// ------------------------------------------------------------------------ scanning rules

#[test]
fn hba_not_in_the_initiator_target_map_is_never_scanned() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    // host7 sees the same target port and even exports the same LUN number (another host group).
    w.rport(PCI7, 7, 0, 1, TGT_A, 1, true);
    let other = w.export(PCI7, 7, 0, 1, 1, TGT_A, 1, NAA_W);
    w.attached(&other);
    let props = fc(json!({"target_wwn": TGT_A.to_uppercase(), "target_lun": 1,
        "initiator_target_map": {INIT6.to_uppercase(): [TGT_A.to_uppercase()]}}));
    let err = w.connector(false).connect_volume(&props).unwrap_err();
    assert!(
        matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
        "{err}"
    );
    let scans = w.scans();
    assert_eq!(scans.len(), 3, "one narrow scan per attempt: {scans:?}");
    for (path, text) in &scans {
        assert_eq!(path, "/sys/class/scsi_host/host6/scan");
        assert_eq!(text, "0 1 1");
    }
    // host7's device at the same address is another volume: never returned.
    assert!(w.host.exists("/dev/sdb"));
}

#[test]
fn wildcard_scan_only_when_no_hba_found_a_target_port() {
    // Nobody found the port: wildcard on every allowed Online HBA.
    let w = two_hba_world();
    w.hba(
        PCI7.replace("00.3", "00.4").as_str(),
        8,
        "50014380186af840",
        "Linkdown",
    );
    let props = fc(json!({"target_wwns": [TGT_A, TGT_B], "target_lun": 2}));
    let _ = w.connector(false).connect_volume(&props).unwrap_err();
    let scans = w.scans();
    assert!(
        scans.contains(&("/sys/class/scsi_host/host6/scan".into(), "- - 2".into())),
        "{scans:?}"
    );
    assert!(
        scans.contains(&("/sys/class/scsi_host/host7/scan".into(), "- - 2".into())),
        "{scans:?}"
    );
    assert!(
        scans.iter().all(|(p, _)| !p.contains("host8")),
        "offline HBA scanned: {scans:?}"
    );

    // host6 found port A: narrow on host6 only, no wildcard on host7 (os-brick bug 4).
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    let _ = w.connector(false).connect_volume(&props).unwrap_err();
    let scans = w.scans();
    assert!(!scans.is_empty());
    assert!(
        scans
            .iter()
            .all(|(p, t)| p == "/sys/class/scsi_host/host6/scan" && t == "0 1 2"),
        "{scans:?}"
    );

    // Wildcards disabled: nothing found, nothing scanned.
    let w = two_hba_world();
    let props =
        fc(json!({"target_wwns": [TGT_A, TGT_B], "target_lun": 2, "enable_wildcard_scan": false}));
    let _ = w.connector(false).connect_volume(&props).unwrap_err();
    assert!(w.scans().is_empty(), "{:?}", w.scans());
}

#[test]
fn lun_256_and_sam2_addressing_in_scans_and_by_path_names() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    let e = w.export(PCI6, 6, 0, 1, 1, TGT_A, 16640, NAA_V);
    let props = fc(
        json!({"target_wwn": TGT_A, "target_lun": 256, "addressing_mode": "SAM2",
        "initiator_target_map": {INIT6: [TGT_A]}}),
    );
    let info = w.connector(false).connect_volume(&props).unwrap();
    assert_eq!(
        w.scans(),
        vec![(
            "/sys/class/scsi_host/host6/scan".to_owned(),
            "0 1 16640".to_owned()
        )]
    );
    assert_eq!(
        info.path.as_str(),
        "/dev/disk/by-path/pci-0000:05:00.2-fc-0x514f0c50023f6c00-lun-0x4100000000000000"
    );
    assert_eq!(info.path.as_str(), e.by_path());
    assert_eq!(info.scsi_wwn.as_ref().map(|w| w.as_str()), Some(WWID_V));
    assert_eq!(info.kind, "block");
    assert_eq!(info.multipath_id, None);

    // Transparent addressing, LUN 256.
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    w.export(PCI6, 6, 0, 1, 1, TGT_A, 256, NAA_V);
    let props = fc(json!({"target_wwn": TGT_A, "target_lun": 256}));
    let info = w.connector(false).connect_volume(&props).unwrap();
    assert!(
        info.path.as_str().ends_with("-lun-0x0100000000000000"),
        "{}",
        info.path
    );
    assert_eq!(w.scans()[0].1, "0 1 256");
}

#[test]
fn connect_waits_on_the_host_clock_between_scans() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    let props = fc(json!({"target_wwn": TGT_A, "target_lun": 1}));
    let err = w.connector(false).connect_volume(&props).unwrap_err();
    assert!(
        err.to_string().contains("0x514f0c50023f6c00 lun 1"),
        "{err}"
    );
    assert_eq!(w.host.now(), std::time::Duration::from_secs(6));
}

// ------------------------------------------------------------------------ paths

#[test]
fn get_volume_paths_accepts_raw_cinder_props_and_reports_device_and_wwid() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    w.rport(PCI7, 7, 0, 2, TGT_B, 2, true);
    let a = w.export(PCI6, 6, 0, 1, 1, TGT_A, 1, NAA_V);
    let b = w.export(PCI7, 7, 0, 2, 2, TGT_B, 1, NAA_V);
    let sda = w.attached(&a);
    let sdb = w.attached(&b);
    // Exactly what a Cinder driver emits (os-brick's own get_volume_paths raises KeyError).
    let raw = json!({"driver_volume_type": "fibre_channel", "data": {
        "target_discovered": false, "target_wwn": [TGT_A.to_uppercase(), TGT_B.to_uppercase()],
        "target_lun": 1, "volume_id": "b5e0e5b8-1c2a-4b0b-8d0e-5c0f3b1c2a4b",
        "initiator_target_map": {INIT6: [TGT_A.to_uppercase()], INIT7: [TGT_B.to_uppercase()]},
        "access_mode": "rw", "encrypted": false}});
    let props = ConnectionProperties::from_json(&raw, Some(Protocol::FibreChannel)).unwrap();
    let paths = w.connector(false).get_volume_paths(&props).unwrap();
    let names: Vec<&str> = paths.paths.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(names, vec![a.by_path().as_str(), b.by_path().as_str()]);
    assert_eq!(
        paths.paths[0].device.as_ref().unwrap().as_str(),
        format!("/dev/{sda}")
    );
    assert_eq!(
        paths.paths[1].device.as_ref().unwrap().as_str(),
        format!("/dev/{sdb}")
    );
    assert!(
        paths
            .paths
            .iter()
            .all(|p| p.wwid.as_ref().map(|w| w.as_str()) == Some(WWID_V))
    );
    assert!(paths.diagnostics.is_empty(), "{:?}", paths.diagnostics);
    assert_eq!(
        w.connector(false).get_search_path().unwrap().as_str(),
        "/dev/disk/by-path"
    );
    let all = w.connector(false).get_all_available_volumes(None).unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn stale_link_and_dangling_link_are_diagnosed() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    let a = w.export(PCI6, 6, 0, 1, 1, TGT_A, 2, NAA_W);
    let sdb = w.attached(&a);
    // A leftover link for LUN 1 pointing at the LUN 2 disk, and a dangling one for LUN 3.
    let root = w.root();
    let l1 = "/dev/disk/by-path/pci-0000:05:00.2-fc-0x514f0c50023f6c00-lun-1";
    link(&root, l1, &format!("../../{sdb}"));
    link(
        &root,
        "/dev/disk/by-path/pci-0000:05:00.2-fc-0x514f0c50023f6c00-lun-3",
        "../../sdz",
    );
    let props = fc(json!({"target_wwn": TGT_A, "target_luns": [1], "target_wwns": [TGT_A]}));
    let paths = w.connector(false).get_volume_paths(&props).unwrap();
    assert_eq!(paths.paths.len(), 1);
    assert_eq!(paths.paths[0].path.as_str(), l1);
    assert!(
        paths
            .diagnostics
            .iter()
            .any(|d| d.message.contains("stale link")),
        "{:?}",
        paths.diagnostics
    );
    // Disconnect must not remove the other LUN's disk the stale link leads to.
    w.connector(false)
        .disconnect_volume(&props, None, DisconnectOptions::default())
        .unwrap();
    assert!(w.host.exists(&format!("/dev/{sdb}")));
    assert!(w.host.writes().is_empty(), "{:?}", w.host.writes());
    let props3 = fc(json!({"target_wwn": TGT_A, "target_lun": 3}));
    let paths = w.connector(false).get_volume_paths(&props3).unwrap();
    assert!(paths.paths.is_empty());
    assert!(
        paths
            .diagnostics
            .iter()
            .any(|d| d.message.contains("dangling")),
        "{:?}",
        paths.diagnostics
    );
}

// ------------------------------------------------------------------------ disconnect

#[test]
fn disconnect_finds_devices_from_props_without_device_info_or_links() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    w.rport(PCI7, 7, 0, 1, TGT_B, 1, true);
    let a = w.export(PCI6, 6, 0, 1, 1, TGT_A, 1, NAA_V);
    let b = w.export(PCI7, 7, 0, 1, 1, TGT_B, 1, NAA_V);
    let sda = w.attached(&a);
    let sdb = w.attached(&b);
    // udev already dropped host7's by-path link (bug 12 / leftover-device class).
    rm(&w.root(), &b.by_path());
    let props = fc(json!({"target_wwns": [TGT_A, TGT_B], "target_lun": 1}));
    w.connector(false)
        .disconnect_volume(&props, None, DisconnectOptions::default())
        .unwrap();
    let deletes: Vec<String> = w.host.writes().into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        deletes,
        vec![
            format!("/sys/block/{sda}/device/delete"),
            format!("/sys/block/{sdb}/device/delete")
        ]
    );
    assert!(!w.host.exists(&format!("/dev/{sda}")) && !w.host.exists(&format!("/dev/{sdb}")));
    // The kernel in this fake leaves the scsi-* link stale: the connector removes it.
    assert!(!w.host.exists(&format!("/dev/disk/by-id/scsi-{WWID_V}")));
    // No flush: no path was in use (no device_info, no device_path).
    assert!(
        !w.host.commands().iter().any(|c| c.starts_with("blockdev")),
        "{:?}",
        w.host.commands()
    );
    // Detach twice: nothing to do, nothing touched.
    let before = w.host.events().len();
    w.connector(false)
        .disconnect_volume(&props, None, DisconnectOptions::default())
        .unwrap();
    assert_eq!(w.host.events().len(), before);
}

#[test]
fn disconnect_respects_the_initiator_target_map() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    w.rport(PCI7, 7, 0, 1, TGT_A, 1, true);
    let ours = w.export(PCI6, 6, 0, 1, 1, TGT_A, 1, NAA_V);
    let boot = w.export(PCI7, 7, 0, 1, 1, TGT_A, 1, NAA_W);
    let sda = w.attached(&ours);
    let sdb = w.attached(&boot);
    let props = fc(json!({"target_wwn": TGT_A, "target_lun": 1,
        "initiator_target_map": {INIT6: [TGT_A]}}));
    w.connector(false)
        .disconnect_volume(&props, None, DisconnectOptions::default())
        .unwrap();
    assert!(!w.host.exists(&format!("/dev/{sda}")));
    assert!(
        w.host.exists(&format!("/dev/{sdb}")),
        "a device of an HBA outside the map was removed"
    );
    // get_volume_paths still reports what os-brick would, with a diagnostic.
    let paths = w.connector(false).get_volume_paths(&props).unwrap();
    assert_eq!(paths.paths.len(), 1);
    assert!(
        paths
            .diagnostics
            .iter()
            .any(|d| d.message.contains("does not allow")),
        "{:?}",
        paths.diagnostics
    );
}

/// Two paths under multipath map dm-0 whose flush (and each path's flush) fail.
fn mpath_world(flush_ok: bool) -> (World, String, String) {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    w.rport(PCI7, 7, 0, 1, TGT_B, 1, true);
    let a = w.export(PCI6, 6, 0, 1, 1, TGT_A, 1, NAA_V);
    let b = w.export(PCI7, 7, 0, 1, 1, TGT_B, 1, NAA_V);
    let sda = w.attached(&a);
    let sdb = w.attached(&b);
    let root = w.root();
    let dm = "/sys/devices/virtual/block/dm-0";
    write(&root, &format!("{dm}/dm/name"), &format!("{WWID_V}\n"));
    write(
        &root,
        &format!("{dm}/dm/uuid"),
        &format!("mpath-{WWID_V}\n"),
    );
    link(&root, "/sys/block/dm-0", "../devices/virtual/block/dm-0");
    link(
        &root,
        "/sys/class/block/dm-0",
        "../../devices/virtual/block/dm-0",
    );
    for d in [&sda, &sdb] {
        link(
            &root,
            &format!("{dm}/slaves/{d}"),
            &format!("../../../../../sys/block/{d}"),
        );
        let ld = if *d == sda { a.lun_dir() } else { b.lun_dir() };
        link(
            &root,
            &format!("{ld}/block/{d}/holders/dm-0"),
            "../../../../../../../../virtual/block/dm-0",
        );
    }
    write(&root, "/dev/dm-0", "");
    link(
        &root,
        &format!("/dev/disk/by-id/dm-uuid-mpath-{WWID_V}"),
        "../../dm-0",
    );
    link(&root, &format!("/dev/mapper/{WWID_V}"), "../dm-0");
    let listed = Rc::new(RefCell::new(vec![sda.clone(), sdb.clone()]));
    let l = Rc::clone(&listed);
    let k = Rc::clone(&w.kernel);
    w.host.on_cmd(move |cmd, root| {
        let present: Vec<String> = k.borrow().present.iter().map(|(_, d)| d.clone()).collect();
        l.borrow_mut().retain(|d| present.contains(d));
        match cmd {
            "multipathd show status" => out(0, "path checker states:\n", ""),
            c if c.starts_with("multipath -f") && !flush_ok => out(1, "", "map in use"),
            c if c.starts_with("multipath -f") || c.starts_with("multipathd del map") => {
                rm(root, "/sys/devices/virtual/block/dm-0");
                rm(root, "/sys/block/dm-0");
                rm(root, "/dev/dm-0");
                out(0, "ok", "")
            }
            c if c.starts_with("blockdev --flushbufs") => out(1, "", "I/O error"),
            "multipathd show paths raw format %d" => out(0, &l.borrow().join("\n"), ""),
            _ => out(0, "", ""),
        }
    });
    (w, sda, sdb)
}

#[test]
fn force_removes_devices_even_when_the_flush_fails() {
    let props = fc(json!({"target_wwns": [TGT_A, TGT_B], "target_lun": 1}));
    let used = DeviceInfo::block(
        HostPath::new("/dev/dm-0").unwrap(),
        Some(crate::ids::Wwid::new(WWID_V).unwrap()),
        Some(crate::ids::Wwid::new(WWID_V).unwrap()),
    );

    // Without force: the failed map flush stops everything.
    let (w, sda, _) = mpath_world(false);
    let err = w
        .connector(true)
        .disconnect_volume(&props, Some(&used), DisconnectOptions::default())
        .unwrap_err();
    assert!(matches!(err, ConnectorError::FlushFailed { .. }), "{err}");
    assert!(w.host.writes().is_empty());
    assert!(w.host.exists(&format!("/dev/{sda}")) && w.host.exists("/dev/dm-0"));

    // With force: map removed from multipathd by name, both paths deleted, errors reported.
    let (w, sda, sdb) = mpath_world(false);
    let err = w
        .connector(true)
        .disconnect_volume(
            &props,
            Some(&used),
            DisconnectOptions {
                force: true,
                ignore_errors: false,
            },
        )
        .unwrap_err();
    let ConnectorError::DisconnectErrors { errors } = &err else {
        panic!("unexpected {err}")
    };
    assert!(
        matches!(errors[0], ConnectorError::FlushFailed { .. }),
        "{err}"
    );
    let cmds = w.host.commands();
    assert!(cmds.contains(&format!("multipath -f {WWID_V}")), "{cmds:?}");
    assert!(
        cmds.contains(&format!("multipathd del map {WWID_V}")),
        "{cmds:?}"
    );
    assert!(!w.host.exists("/dev/dm-0"));
    assert!(!w.host.exists(&format!("/dev/{sda}")) && !w.host.exists(&format!("/dev/{sdb}")));
    // Individual paths of a multipath are never flushed.
    assert!(!cmds.iter().any(|c| c.starts_with("blockdev")), "{cmds:?}");

    // With force and ignore_errors: same cleanup, no error.
    let (w, sda, _) = mpath_world(false);
    w.connector(true)
        .disconnect_volume(
            &props,
            Some(&used),
            DisconnectOptions {
                force: true,
                ignore_errors: true,
            },
        )
        .unwrap();
    assert!(!w.host.exists(&format!("/dev/{sda}")));
}

#[test]
fn force_deletes_a_single_path_device_whose_flush_fails() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    let a = w.export(PCI6, 6, 0, 1, 1, TGT_A, 1, NAA_V);
    let sdb = w.attached(&a);
    w.host.on_cmd(|cmd, _| match cmd {
        c if c.starts_with("blockdev --flushbufs") => out(1, "", "I/O error"),
        "multipathd show status" => out(1, "", ""),
        _ => out(0, "", ""),
    });
    let props = fc(json!({"target_wwn": TGT_A, "target_lun": 1}));
    let used = DeviceInfo::block(HostPath::new(a.by_path()).unwrap(), None, None);
    // No force: the flush failure keeps the device (data is not thrown away).
    let err = w
        .connector(false)
        .disconnect_volume(&props, Some(&used), DisconnectOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::DeviceFlushFailed { .. }),
        "{err}"
    );
    assert!(w.host.exists(&format!("/dev/{sdb}")));
    // Force: os-brick skips the delete here (§9.2); we delete.
    let err = w
        .connector(false)
        .disconnect_volume(
            &props,
            Some(&used),
            DisconnectOptions {
                force: true,
                ignore_errors: false,
            },
        )
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::DisconnectErrors { .. }),
        "{err}"
    );
    assert!(!w.host.exists(&format!("/dev/{sdb}")));
    assert!(
        w.host
            .writes()
            .iter()
            .any(|(p, c)| p == &format!("/sys/block/{sdb}/device/delete") && c == "1")
    );
}

// ------------------------------------------------------------------------ connect

#[test]
fn connect_single_path_returns_the_by_path_link_and_sysfs_wwn() {
    let w = two_hba_world();
    w.rport(PCI6, 6, 0, 1, TGT_A, 1, true);
    let a = w.export(PCI6, 6, 0, 1, 1, TGT_A, 1, NAA_V);
    let props = fc(json!({"target_wwn": TGT_A, "target_lun": 1}));
    let info = w.connector(false).connect_volume(&props).unwrap();
    assert_eq!(info.path.as_str(), a.by_path());
    assert_eq!(info.scsi_wwn.unwrap().as_str(), WWID_V);
    // The WWN came from sysfs: scsi_id never ran.
    assert!(
        !w.host.commands().iter().any(|c| c.contains("scsi_id")),
        "{:?}",
        w.host.commands()
    );
    // Attach twice: same result, no new scan.
    let n = w.scans().len();
    let again = w.connector(false).connect_volume(&props).unwrap();
    assert_eq!(again.path.as_str(), a.by_path());
    assert_eq!(w.scans().len(), n);
}

#[test]
fn connect_multipath_returns_the_dm_and_checks_it() {
    let (w, _, _) = mpath_world(true);
    let props = fc(json!({"target_wwns": [TGT_A, TGT_B], "target_lun": 1}));
    let info = w.connector(true).connect_volume(&props).unwrap();
    assert_eq!(info.path.as_str(), "/dev/dm-0");
    assert_eq!(info.multipath_id.unwrap().as_str(), WWID_V);
    assert!(
        w.host.commands().contains(&"multipath -C dm-0".to_owned()),
        "{:?}",
        w.host.commands()
    );
}

#[test]
fn no_hba_is_a_typed_error_and_wrong_protocol_is_refused() {
    let w = World::new();
    let props = fc(json!({"target_wwn": TGT_A, "target_lun": 1}));
    let err = w.connector(false).connect_volume(&props).unwrap_err();
    assert!(matches!(err, ConnectorError::NoFibreChannelHosts), "{err}");
    let local =
        ConnectionProperties::from_json(&json!({"device_path": "/dev/sda"}), Some(Protocol::Local))
            .unwrap();
    let err = w.connector(false).connect_volume(&local).unwrap_err();
    assert!(matches!(err, ConnectorError::WrongProtocol { .. }), "{err}");
}
