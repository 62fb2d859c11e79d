//! Tests of the NVMe-oF connector: on the real 6.1 captures (`testdata/real-kernel/nvme-*.walk`)
//! and on a small fake kernel that builds the same layout (controllers under
//! `/sys/devices/virtual/nvme-fabrics/ctl`, heads under `nvme-subsystem`, hidden
//! `nvmeScNnM` path nodes) in answer to `nvme connect` / `nvme disconnect`.

use std::cell::RefCell;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use crate::connector::{Connector, ConnectorConfig, DeviceInfo, DisconnectOptions};
use crate::error::ConnectorError;
use crate::host::{Cmd, CmdOutput, Host, HostError, HostPath};
use crate::props::{ConnectionProperties, Protocol};
use crate::testhost::{FakeHost, materialize, out, rm};

use super::{
    ConnectOutcome, NvmeofConnector, classify_connect, nvme_head_name, parse_address, parse_ns_name,
};

const ONE_CTRL: &str = include_str!("../testdata/real-kernel/nvme-tcp-1ctrl.walk");
const TWO_CTRL: &str = include_str!("../testdata/real-kernel/nvme-tcp-2ctrl.walk");
const AFTER_1OF2: &str = include_str!("../testdata/real-kernel/nvme-after-delete-1of2.walk");
const AFTER_ALL: &str = include_str!("../testdata/real-kernel/nvme-after-delete.walk");

const NQN: &str = "nqn.nvme-subsystem-1-4a1f6c2e-8d3b-4f7a-9c5e-2b6d8e0f1a3c";
const UUID: &str = "50d85148-5f1d-4d77-9584-21f54a7af531";
const HOSTNQN: &str = "nqn.2014-08.org.nvmexpress:uuid:5b4e7a52-6f1c-4a1e-9d4b-1a2b3c4d5e6f";
const U1: &str = "c20aba21-6ef6-446b-b374-45733b4883ba";
const U2: &str = "9b30ec12-75b9-4a53-be32-111111111111";
const U3: &str = "9b30ec12-75b9-4a53-be32-333333333333";

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

/// A host from a real capture, with what the walk lines cannot carry: the char and block
/// nodes listed by `ls -l` (no node for hidden path devices), the multipath parameter and
/// `/etc/nvme/hostnqn`.
fn capture_host(walk: &str, ctrls: &[u32]) -> FakeHost {
    let host = FakeHost::new();
    let root = host.root().to_path_buf();
    materialize(&root, walk, |_| true);
    for entry in fs::read_dir(root.join("dev")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if parse_ns_name(&name).is_some_and(|(_, c, _)| c.is_some()) {
            rm(&root, &format!("/dev/{name}"));
        }
    }
    for n in ctrls {
        write(&root, &format!("/dev/nvme{n}"), "");
    }
    write(&root, "/dev/nvme-fabrics", "");
    write(&root, "/dev/ng0n1", "");
    write(&root, "/sys/module/nvme_core/parameters/multipath", "Y\n");
    write(&root, "/etc/nvme/hostnqn", &format!("{HOSTNQN}\n"));
    host
}

fn nvme(data: serde_json::Value) -> ConnectionProperties {
    ConnectionProperties::from_json(&json!({"driver_volume_type": "nvmeof", "data": data}), None)
        .unwrap()
}

fn real_props(uuid: Option<&str>) -> ConnectionProperties {
    let mut d = json!({"target_nqn": NQN,
        "portals": [["127.0.0.1", 4420, "tcp"], ["127.0.0.1", "4421", "tcp"]]});
    if let Some(u) = uuid {
        d["vol_uuid"] = json!(u.to_uppercase().replace('-', ""));
    }
    nvme(d)
}

fn cfg(use_multipath: bool) -> ConnectorConfig {
    ConnectorConfig {
        use_multipath,
        ..ConnectorConfig::default()
    }
}

// ------------------------------------------------------------------------ parsing

#[test]
fn address_with_and_without_src_addr() {
    let a = parse_address("traddr=127.0.0.1,trsvcid=4420,src_addr=127.0.0.1\n");
    assert_eq!(a["traddr"], "127.0.0.1");
    assert_eq!(a["trsvcid"], "4420");
    assert_eq!(a["src_addr"], "127.0.0.1");
    let b = parse_address("traddr=portal2,trsvcid=port2");
    assert_eq!(b.len(), 2);
    assert!(parse_address("garbage,,=x").is_empty());
}

#[test]
fn namespace_names_and_heads() {
    assert_eq!(parse_ns_name("nvme0c1n10"), Some((0, Some(1), 10)));
    assert_eq!(parse_ns_name("nvme0n10"), Some((0, None, 10)));
    for bad in [
        "nvme0",
        "ng0n1",
        "nvme0n1p1",
        "nvme-fabrics",
        "nvmeXn1",
        "nvme0cn1",
        "nvme0n",
    ] {
        assert_eq!(parse_ns_name(bad), None, "{bad}");
    }
    assert_eq!(nvme_head_name("nvme0c1n10").as_deref(), Some("nvme0n10"));
    assert_eq!(nvme_head_name("nvme1n2").as_deref(), Some("nvme1n2"));
}

#[test]
fn already_connected_exit_codes() {
    let o = |s: i32, so: &str, se: &str| out(s, so, se);
    assert_eq!(classify_connect(&o(0, "", "")), ConnectOutcome::Connected);
    assert_eq!(
        classify_connect(&o(70, "", "")),
        ConnectOutcome::AlreadyConnected
    );
    assert_eq!(
        classify_connect(&o(114, "", "")),
        ConnectOutcome::AlreadyConnected
    );
    assert_eq!(
        classify_connect(&o(
            1,
            "",
            "Failed to write to /dev/nvme-fabrics: Operation already in progress\nalready connected\n"
        )),
        ConnectOutcome::AlreadyConnected
    );
    assert_eq!(
        classify_connect(&o(1, "already connected", "")),
        ConnectOutcome::AlreadyConnected
    );
    assert_eq!(
        classify_connect(&o(1, "", "could not connect")),
        ConnectOutcome::Failed
    );
    assert_eq!(
        classify_connect(&o(2, "already connected", "")),
        ConnectOutcome::Failed
    );
}

// ------------------------------------------------------------------------ real captures

#[test]
fn real_two_controllers_one_head_and_hidden_nodes_never_reported() {
    let host = capture_host(TWO_CTRL, &[0, 1]);
    let c = NvmeofConnector::new(&host, cfg(true));
    let ctrls = c.controllers();
    assert_eq!(ctrls.len(), 2);
    assert_eq!(ctrls[1].address["trsvcid"], "4421");
    assert_eq!(ctrls[1].address["src_addr"], "127.0.0.1");
    assert!(c.native_multipath());
    let nss = c.namespaces("nvme1");
    assert_eq!(nss.len(), 1);
    assert_eq!(nss[0].node, "nvme0c1n1");
    assert_eq!(nss[0].head, "nvme0n1");
    assert_eq!(nss[0].uuid.as_ref().unwrap().as_str(), UUID);

    let paths = c.get_volume_paths(&real_props(Some(UUID))).unwrap();
    assert_eq!(
        paths
            .path_names()
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["/dev/nvme0n1"]
    );
    assert_eq!(
        paths.paths[0].device.as_ref().unwrap().as_str(),
        "/dev/nvme0n1"
    );
    assert_eq!(
        paths.paths[0].wwid.as_ref().unwrap().as_str(),
        format!("uuid.{UUID}")
    );
    assert!(paths.diagnostics.is_empty(), "{:?}", paths.diagnostics);

    let all = c.get_all_available_volumes(None).unwrap();
    assert_eq!(
        all.iter().map(HostPath::as_str).collect::<Vec<_>>(),
        ["/dev/nvme0n1"]
    );
    assert_eq!(c.get_search_path().unwrap().as_str(), "/dev");

    // Another volume's uuid on the same subsystem: nothing.
    let other = c.get_volume_paths(&real_props(Some(U1))).unwrap();
    assert!(other.paths.is_empty());
}

#[test]
fn real_one_controller_is_matched_through_src_addr_and_hostnqn() {
    let host = capture_host(ONE_CTRL, &[0]);
    let c = NvmeofConnector::new(&host, cfg(false));
    let props = nvme(
        json!({"target_nqn": NQN, "vol_uuid": UUID, "host_nqn": HOSTNQN,
        "portals": [["127.0.0.1", 4420, "tcp"]]}),
    );
    let paths = c.get_volume_paths(&props).unwrap();
    assert_eq!(paths.paths.len(), 1);
    // Another host NQN, another port or another transport do not match this controller.
    for bad in [
        json!({"target_nqn": NQN, "vol_uuid": UUID, "portals": [["127.0.0.1", 4420, "tcp"]],
               "host_nqn": "nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-000000000000"}),
        json!({"target_nqn": NQN, "vol_uuid": UUID, "portals": [["127.0.0.1", 4421, "tcp"]]}),
        json!({"target_nqn": NQN, "vol_uuid": UUID, "portals": [["127.0.0.1", 4420, "rdma"]]}),
    ] {
        assert!(
            c.get_volume_paths(&nvme(bad.clone()))
                .unwrap()
                .paths
                .is_empty(),
            "{bad}"
        );
    }
    // connect on a live controller: ns-rescan, no nvme connect, the head is returned.
    let info = c.connect_volume(&props).unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n1");
    assert_eq!(
        serde_json::to_value(&info).unwrap(),
        json!({"type": "block", "path": "/dev/nvme0n1"})
    );
    assert_eq!(
        host.commands(),
        vec!["nvme ns-rescan /dev/nvme0".to_owned()]
    );
}

#[test]
fn real_disconnect_without_identity_uses_the_device_info_link() {
    let host = capture_host(ONE_CTRL, &[0]);
    let c = NvmeofConnector::new(&host, cfg(false));
    let props = nvme(
        json!({"nqn": NQN, "transport_type": "tcp", "target_portal": "127.0.0.1",
        "target_port": 4420}),
    );
    // Without device_info nothing says which namespace is ours: the controller stays.
    c.disconnect_volume(&props, None, DisconnectOptions::default())
        .unwrap();
    assert!(host.commands().is_empty(), "{:?}", host.commands());
    let link = format!("/dev/disk/by-id/nvme-uuid.{UUID}");
    let info = DeviceInfo::block(HostPath::new(link).unwrap(), None, None);
    c.disconnect_volume(&props, Some(&info), DisconnectOptions::default())
        .unwrap();
    assert_eq!(
        host.commands(),
        vec![
            "blockdev --flushbufs /dev/nvme0n1".to_owned(),
            "nvme disconnect -d /dev/nvme0".to_owned(),
        ]
    );
}

#[test]
fn real_disconnect_without_device_info_still_disconnects_the_controllers() {
    let host = capture_host(TWO_CTRL, &[0, 1]);
    let c = NvmeofConnector::new(&host, cfg(true));
    c.disconnect_volume(&real_props(Some(UUID)), None, DisconnectOptions::default())
        .unwrap();
    assert_eq!(
        host.commands(),
        vec![
            "blockdev --flushbufs /dev/nvme0n1".to_owned(),
            "nvme disconnect -d /dev/nvme0".to_owned(),
            "nvme disconnect -d /dev/nvme1".to_owned(),
        ]
    );
}

#[test]
fn real_after_delete_captures_report_what_is_left() {
    let host = capture_host(AFTER_1OF2, &[0]);
    let c = NvmeofConnector::new(&host, cfg(true));
    let paths = c.get_volume_paths(&real_props(Some(UUID))).unwrap();
    assert_eq!(
        paths.paths.len(),
        1,
        "the head stays while one path is left"
    );
    let host = capture_host(AFTER_ALL, &[]);
    let c = NvmeofConnector::new(&host, cfg(true));
    assert!(
        c.get_volume_paths(&real_props(Some(UUID)))
            .unwrap()
            .paths
            .is_empty()
    );
    assert!(c.get_all_available_volumes(None).unwrap().is_empty());
    // Detach of a volume that is not there touches nothing.
    c.disconnect_volume(&real_props(Some(UUID)), None, DisconnectOptions::default())
        .unwrap();
    assert!(host.events().is_empty(), "{:?}", host.events());
}

// ------------------------------------------------------------------------ fake kernel

/// One namespace the array exports in the subsystem.
#[derive(Debug, Clone)]
struct ArrayNs {
    nsid: u32,
    uuid: String,
}

/// The array (one subsystem, portals 127.0.0.1:4420/4421) and the host kernel's NVMe side.
#[derive(Debug)]
struct Kernel {
    native_mp: bool,
    namespaces: Vec<ArrayNs>,
    /// Controllers: (number, port, state).
    ctrls: Vec<(u32, u16, String)>,
    /// Namespaces that appear only at the next `ns-rescan`.
    on_rescan: Vec<ArrayNs>,
    /// Exit status and stderr `nvme connect` answers with (the controller appears anyway
    /// when the status means "already connected").
    connect_answer: (i32, String),
    /// Portal ports refusing connections.
    refuse: Vec<u16>,
}

impl Kernel {
    fn new(native_mp: bool) -> Self {
        Self {
            native_mp,
            namespaces: Vec::new(),
            ctrls: Vec::new(),
            on_rescan: Vec::new(),
            connect_answer: (0, String::new()),
            refuse: Vec::new(),
        }
    }

    fn ctl_dir(n: u32) -> String {
        format!("/sys/devices/virtual/nvme-fabrics/ctl/nvme{n}")
    }

    fn add_ctrl(&mut self, root: &Path, port: u16, state: &str) -> u32 {
        let n = (0..)
            .find(|n| !self.ctrls.iter().any(|c| c.0 == *n))
            .unwrap();
        let d = Self::ctl_dir(n);
        write(
            root,
            &format!("{d}/address"),
            &format!("traddr=127.0.0.1,trsvcid={port},src_addr=127.0.0.1\n"),
        );
        write(root, &format!("{d}/state"), &format!("{state}\n"));
        write(root, &format!("{d}/subsysnqn"), &format!("{NQN}\n"));
        write(root, &format!("{d}/transport"), "tcp\n");
        write(root, &format!("{d}/hostnqn"), &format!("{HOSTNQN}\n"));
        write(root, &format!("{d}/reconnect_delay"), "10\n");
        write(root, &format!("{d}/delete_controller"), "");
        link(
            root,
            "/sys/class/nvme-fabrics/ctl",
            "../../devices/virtual/nvme-fabrics/ctl",
        );
        link(
            root,
            &format!("/sys/class/nvme/nvme{n}"),
            &format!("../../devices/virtual/nvme-fabrics/ctl/nvme{n}"),
        );
        write(root, &format!("/dev/nvme{n}"), "");
        self.ctrls.push((n, port, state.to_owned()));
        let nss = self.namespaces.clone();
        for ns in &nss {
            self.add_ns_on(root, n, ns);
        }
        n
    }

    fn ns_attrs(root: &Path, dir: &str, ns: &ArrayNs, hidden: bool) {
        write(root, &format!("{dir}/uuid"), &format!("{}\n", ns.uuid));
        write(root, &format!("{dir}/wwid"), &format!("uuid.{}\n", ns.uuid));
        write(root, &format!("{dir}/nsid"), &format!("{}\n", ns.nsid));
        write(
            root,
            &format!("{dir}/hidden"),
            if hidden { "1\n" } else { "0\n" },
        );
    }

    fn add_ns_on(&self, root: &Path, n: u32, ns: &ArrayNs) {
        let z = ns.nsid;
        if self.native_mp {
            let node = format!("nvme0c{n}n{z}");
            let d = format!("{}/{node}", Self::ctl_dir(n));
            Self::ns_attrs(root, &d, ns, true);
            link(
                root,
                &format!("/sys/class/block/{node}"),
                &format!("../../devices/virtual/nvme-fabrics/ctl/nvme{n}/{node}"),
            );
            let head = format!("nvme0n{z}");
            let hd = format!("/sys/devices/virtual/nvme-subsystem/nvme-subsys0/{head}");
            Self::ns_attrs(root, &hd, ns, false);
            link(
                root,
                &format!("/sys/class/block/{head}"),
                &format!("../../devices/virtual/nvme-subsystem/nvme-subsys0/{head}"),
            );
            write(root, &format!("/dev/{head}"), "");
        } else {
            let node = format!("nvme{n}n{z}");
            let d = format!("{}/{node}", Self::ctl_dir(n));
            Self::ns_attrs(root, &d, ns, false);
            link(
                root,
                &format!("/sys/class/block/{node}"),
                &format!("../../devices/virtual/nvme-fabrics/ctl/nvme{n}/{node}"),
            );
            write(root, &format!("/dev/{node}"), "");
        }
    }

    /// The array exports a new namespace: it shows on every controller.
    fn export(&mut self, root: &Path, nsid: u32, uuid: &str) {
        let ns = ArrayNs {
            nsid,
            uuid: uuid.to_owned(),
        };
        self.namespaces.push(ns.clone());
        for (n, _, _) in self.ctrls.clone() {
            self.add_ns_on(root, n, &ns);
        }
    }

    /// The array unmaps a namespace.
    fn unexport(&mut self, root: &Path, nsid: u32) {
        self.namespaces.retain(|n| n.nsid != nsid);
        for (n, _, _) in &self.ctrls {
            for node in [format!("nvme0c{n}n{nsid}"), format!("nvme{n}n{nsid}")] {
                rm(root, &format!("{}/{node}", Self::ctl_dir(*n)));
                rm(root, &format!("/sys/class/block/{node}"));
                rm(root, &format!("/dev/{node}"));
            }
        }
        rm(
            root,
            &format!("/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n{nsid}"),
        );
        rm(root, &format!("/sys/class/block/nvme0n{nsid}"));
        rm(root, &format!("/dev/nvme0n{nsid}"));
    }

    fn delete_ctrl(&mut self, root: &Path, n: u32) {
        self.ctrls.retain(|c| c.0 != n);
        for ns in &self.namespaces {
            rm(root, &format!("/sys/class/block/nvme0c{n}n{}", ns.nsid));
            rm(root, &format!("/sys/class/block/nvme{n}n{}", ns.nsid));
            rm(root, &format!("/dev/nvme{n}n{}", ns.nsid));
        }
        rm(root, &Self::ctl_dir(n));
        rm(root, &format!("/sys/class/nvme/nvme{n}"));
        rm(root, &format!("/dev/nvme{n}"));
        if self.native_mp && self.ctrls.is_empty() {
            for ns in &self.namespaces {
                rm(
                    root,
                    &format!(
                        "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n{}",
                        ns.nsid
                    ),
                );
                rm(root, &format!("/sys/class/block/nvme0n{}", ns.nsid));
                rm(root, &format!("/dev/nvme0n{}", ns.nsid));
            }
        }
    }

    fn set_state(&mut self, root: &Path, n: u32, state: &str) {
        write(
            root,
            &format!("{}/state", Self::ctl_dir(n)),
            &format!("{state}\n"),
        );
        for c in &mut self.ctrls {
            if c.0 == n {
                c.2 = state.to_owned();
            }
        }
    }

    fn run(&mut self, cmd: &str, root: &Path) -> CmdOutput {
        let argv: Vec<&str> = cmd.split_whitespace().collect();
        match argv.as_slice() {
            ["nvme", "connect", "-a", _, "-s", port, ..] => {
                let port: u16 = port.parse().unwrap();
                if self.refuse.contains(&port) {
                    return out(
                        1,
                        "",
                        "could not add new controller: failed to write to nvme-fabrics device",
                    );
                }
                let (status, msg) = self.connect_answer.clone();
                let made = matches!(status, 0 | 70 | 114) || msg.contains("already connected");
                if made && !self.ctrls.iter().any(|c| c.1 == port) {
                    self.add_ctrl(root, port, "live");
                }
                out(status, "", &msg)
            }
            ["nvme", "disconnect", "-d", dev] => {
                let n: u32 = dev.trim_start_matches("/dev/nvme").parse().unwrap();
                self.delete_ctrl(root, n);
                out(0, &format!("NQN:{NQN} disconnected 1 controller(s)"), "")
            }
            ["nvme", "ns-rescan", _] => {
                for ns in std::mem::take(&mut self.on_rescan) {
                    self.export(root, ns.nsid, &ns.uuid);
                }
                out(0, "", "")
            }
            _ => out(0, "", ""),
        }
    }
}

struct World {
    host: FakeHost,
    kernel: Rc<RefCell<Kernel>>,
}

impl World {
    fn new(native_mp: bool) -> Self {
        let host = FakeHost::new();
        let root = host.root().to_path_buf();
        write(
            &root,
            "/sys/module/nvme_core/parameters/multipath",
            if native_mp { "Y\n" } else { "N\n" },
        );
        write(&root, "/etc/nvme/hostnqn", &format!("{HOSTNQN}\n"));
        fs::create_dir_all(root.join("sys/devices/virtual/nvme-fabrics/ctl")).unwrap();
        link(
            &root,
            "/sys/class/nvme-fabrics/ctl",
            "../../devices/virtual/nvme-fabrics/ctl",
        );
        write(&root, "/dev/nvme-fabrics", "");
        let kernel = Rc::new(RefCell::new(Kernel::new(native_mp)));
        let k = Rc::clone(&kernel);
        host.on_cmd(move |cmd, root| k.borrow_mut().run(cmd, root));
        Self { host, kernel }
    }

    fn root(&self) -> std::path::PathBuf {
        self.host.root().to_path_buf()
    }

    fn export(&self, nsid: u32, uuid: &str) {
        let root = self.root();
        self.kernel.borrow_mut().export(&root, nsid, uuid);
    }

    fn unexport(&self, nsid: u32) {
        let root = self.root();
        self.kernel.borrow_mut().unexport(&root, nsid);
    }

    fn ctrl(&self, port: u16, state: &str) -> u32 {
        let root = self.root();
        self.kernel.borrow_mut().add_ctrl(&root, port, state)
    }

    fn cmds(&self, prefix: &str) -> Vec<String> {
        self.host
            .commands()
            .into_iter()
            .filter(|c| c.starts_with(prefix))
            .collect()
    }
}

fn props_for(uuid: Option<&str>, ports: &[u16]) -> ConnectionProperties {
    let portals: Vec<serde_json::Value> = ports
        .iter()
        .map(|p| json!(["127.0.0.1", p, "tcp"]))
        .collect();
    let mut d = json!({"target_nqn": NQN, "portals": portals, "host_nqn": HOSTNQN});
    if let Some(u) = uuid {
        d["vol_uuid"] = json!(u);
    }
    nvme(d)
}

#[test]
fn connect_runs_nvme_connect_with_the_expected_arguments() {
    let w = World::new(false);
    w.export(1, U1);
    let c = NvmeofConnector::new(&w.host, cfg(false));
    let info = c
        .connect_volume(&props_for(Some(U1), &[4420, 4421]))
        .unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n1");
    assert_eq!(
        w.cmds("nvme connect"),
        vec![format!(
            "nvme connect -a 127.0.0.1 -s 4420 -t tcp -n {NQN} -Q 128 -l -1 -q {HOSTNQN}"
        )],
        "without multipath only the first portal is connected"
    );
    // With native multipath both portals are connected and the one head is returned.
    let w = World::new(true);
    w.export(1, U1);
    let c = NvmeofConnector::new(&w.host, cfg(true));
    let info = c
        .connect_volume(&props_for(Some(U1), &[4420, 4421]))
        .unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n1");
    assert_eq!(w.cmds("nvme connect").len(), 2);
    let paths = c
        .get_volume_paths(&props_for(Some(U1), &[4420, 4421]))
        .unwrap();
    assert_eq!(
        paths.path_names().len(),
        1,
        "one head for two controllers: {paths:?}"
    );
    assert!(!w.host.exists("/dev/nvme0c0n1") && !w.host.exists("/dev/nvme0c1n1"));
}

#[test]
fn a_failing_portal_is_skipped_for_the_next_one() {
    let w = World::new(false);
    w.export(1, U1);
    w.kernel.borrow_mut().refuse.push(4420);
    let c = NvmeofConnector::new(&w.host, cfg(false));
    let info = c
        .connect_volume(&props_for(Some(U1), &[4420, 4421]))
        .unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n1");
    assert_eq!(w.cmds("nvme connect").len(), 2);
}

#[test]
fn already_connected_races_are_accepted() {
    for (status, msg) in [
        (70, ""),
        (114, ""),
        (1, "Failed to write to /dev/nvme-fabrics: already connected"),
    ] {
        let w = World::new(false);
        w.export(1, U1);
        w.kernel.borrow_mut().connect_answer = (status, msg.to_owned());
        let c = NvmeofConnector::new(&w.host, cfg(false));
        let info = c.connect_volume(&props_for(Some(U1), &[4420])).unwrap();
        assert_eq!(info.path.as_str(), "/dev/nvme0n1", "status {status}");
    }
    // Exit 1 without the message is a failure: nothing connected, controllers cleaned up.
    let w = World::new(false);
    w.export(1, U1);
    w.kernel.borrow_mut().connect_answer = (1, "some other error".to_owned());
    let c = NvmeofConnector::new(&w.host, cfg(false));
    let err = c.connect_volume(&props_for(Some(U1), &[4420])).unwrap_err();
    assert!(
        matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
        "{err}"
    );
}

#[test]
fn two_volumes_on_one_subsystem_detaching_one_keeps_the_controller() {
    for native in [false, true] {
        let w = World::new(native);
        w.export(1, U1);
        w.export(2, U2);
        let c = NvmeofConnector::new(&w.host, cfg(native));
        let p1 = props_for(Some(U1), &[4420]);
        let p2 = props_for(Some(U2), &[4420]);
        let d1 = c.connect_volume(&p1).unwrap();
        let d2 = c.connect_volume(&p2).unwrap();
        assert_ne!(d1.path, d2.path);
        assert_eq!(
            w.cmds("nvme connect").len(),
            1,
            "the second volume reuses the controller"
        );
        c.disconnect_volume(&p1, Some(&d1), DisconnectOptions::default())
            .unwrap();
        assert!(w.cmds("nvme disconnect").is_empty(), "native={native}");
        assert_eq!(
            w.cmds("blockdev --flushbufs"),
            vec![format!("blockdev --flushbufs {}", d1.path)]
        );
        // Cinder unmaps volume 1 on the array; volume 2 is still reachable and reported.
        w.unexport(1);
        let paths = c.get_volume_paths(&p2).unwrap();
        assert_eq!(paths.path_names(), vec![&d2.path]);
        // Detaching the last volume disconnects the controller.
        c.disconnect_volume(&p2, None, DisconnectOptions::default())
            .unwrap();
        assert_eq!(
            w.cmds("nvme disconnect"),
            vec!["nvme disconnect -d /dev/nvme0".to_owned()]
        );
        assert!(!w.host.exists("/dev/nvme0"));
    }
}

#[test]
fn a_namespace_appearing_concurrently_is_not_returned() {
    let w = World::new(true);
    // Another volume's namespace is mapped while we attach; ours shows only after a rescan.
    w.export(1, U3);
    w.kernel.borrow_mut().on_rescan.push(ArrayNs {
        nsid: 2,
        uuid: U1.to_owned(),
    });
    let c = NvmeofConnector::new(&w.host, cfg(false));
    let info = c.connect_volume(&props_for(Some(U1), &[4420])).unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n2");
    assert!(w.cmds("nvme ns-rescan").len() == 1);

    // Same with nsid or nguid-less old-format properties: only the matching nsid.
    let w = World::new(false);
    w.export(1, U3);
    w.kernel.borrow_mut().on_rescan.push(ArrayNs {
        nsid: 2,
        uuid: U1.to_owned(),
    });
    let old = nvme(
        json!({"nqn": NQN, "transport_type": "tcp", "target_portal": "127.0.0.1",
        "target_port": 4420, "ns_id": "2"}),
    );
    let info = c_for(&w).connect_volume(&old).unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n2");
}

fn c_for(w: &World) -> NvmeofConnector<'_> {
    NvmeofConnector::new(&w.host, cfg(false))
}

#[test]
fn without_identity_only_a_single_new_namespace_is_accepted() {
    // One new namespace: accepted (os-brick's devices_on_start).
    let w = World::new(false);
    w.export(1, U1);
    let info = c_for(&w).connect_volume(&props_for(None, &[4420])).unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n1");

    // Two new namespaces at once: ambiguous, refused, controller cleaned up.
    let w = World::new(false);
    w.export(1, U1);
    w.export(2, U3);
    let err = c_for(&w)
        .connect_volume(&props_for(None, &[4420]))
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::VolumeDeviceNotFound { .. }),
        "{err}"
    );
    assert!(
        w.cmds("nvme disconnect").is_empty(),
        "a controller with other namespaces stays"
    );
}

/// What a [`Timed`] host does once its clock passes the mark.
type ClockAction<'a> = RefCell<Option<Box<dyn FnOnce(&Path) + 'a>>>;

/// A host whose clock triggers an action once it passes `at` (a controller that reconnects).
struct Timed<'a> {
    inner: &'a FakeHost,
    at: Duration,
    action: ClockAction<'a>,
}

impl Host for Timed<'_> {
    fn root(&self) -> &Path {
        self.inner.root()
    }
    fn write_control(&self, path: &HostPath, content: &str) -> Result<(), HostError> {
        self.inner.write_control(path, content)
    }
    fn remove(&self, path: &HostPath) -> Result<(), HostError> {
        self.inner.remove(path)
    }
    fn run(&self, cmd: &Cmd) -> Result<CmdOutput, HostError> {
        self.inner.run(cmd)
    }
    fn sleep(&self, duration: Duration) {
        self.inner.sleep(duration);
        if self.inner.now() >= self.at
            && let Some(f) = self.action.borrow_mut().take()
        {
            f(self.inner.root());
        }
    }
    fn now(&self) -> Duration {
        self.inner.now()
    }
}

#[test]
fn a_controller_stuck_connecting_is_waited_for_then_a_typed_error() {
    let w = World::new(true);
    w.export(1, U1);
    w.ctrl(4420, "connecting");
    let c = c_for(&w);
    let err = c.connect_volume(&props_for(Some(U1), &[4420])).unwrap_err();
    let ConnectorError::NvmeControllerNotLive { waited, states, .. } = &err else {
        panic!("unexpected {err}")
    };
    assert_eq!(*waited, Duration::from_secs(20));
    assert!(states.contains("nvme0=connecting"), "{states}");
    assert!(
        w.cmds("nvme connect").is_empty(),
        "a reconnecting portal is not connected again"
    );
    // Three attempts of 20 s, 2 s and 4 s apart.
    assert_eq!(w.host.now(), Duration::from_secs(66));
    // After the failed attach, a controller whose only namespace is ours is disconnected
    // (os-brick's `_try_disconnect_all`).
    assert_eq!(
        w.cmds("nvme disconnect"),
        vec!["nvme disconnect -d /dev/nvme0".to_owned()]
    );
}

#[test]
fn a_controller_that_reconnects_during_the_wait_is_used() {
    let w = World::new(true);
    w.export(1, U1);
    let n = w.ctrl(4420, "connecting");
    let k = Rc::clone(&w.kernel);
    let timed = Timed {
        inner: &w.host,
        at: Duration::from_secs(7),
        action: RefCell::new(Some(Box::new(move |root: &Path| {
            k.borrow_mut().set_state(root, n, "live");
        }))),
    };
    let c = NvmeofConnector::new(&timed, cfg(false));
    let info = c.connect_volume(&props_for(Some(U1), &[4420])).unwrap();
    assert_eq!(info.path.as_str(), "/dev/nvme0n1");
    assert_eq!(w.host.now(), Duration::from_secs(7));
}

#[test]
fn disconnect_flush_failure_without_force_keeps_the_controller() {
    let w = World::new(false);
    w.export(1, U1);
    let c = c_for(&w);
    let p = props_for(Some(U1), &[4420]);
    let d = c.connect_volume(&p).unwrap();
    let k = Rc::clone(&w.kernel);
    w.host.on_cmd(move |cmd, root| {
        if cmd.starts_with("blockdev --flushbufs") {
            return out(1, "", "I/O error");
        }
        k.borrow_mut().run(cmd, root)
    });
    let err = c
        .disconnect_volume(&p, Some(&d), DisconnectOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, ConnectorError::DeviceFlushFailed { .. }),
        "{err}"
    );
    assert!(w.cmds("nvme disconnect").is_empty());
    let err = c
        .disconnect_volume(
            &p,
            Some(&d),
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
    assert_eq!(w.cmds("nvme disconnect").len(), 1);
}

#[test]
fn device_path_is_not_trusted_over_the_identity() {
    let w = World::new(false);
    w.export(1, U1);
    w.export(2, U2);
    let c = c_for(&w);
    c.connect_volume(&props_for(Some(U1), &[4420])).unwrap();
    // Nova's device_path names another volume's namespace.
    let mut p = props_for(Some(U1), &[4420]);
    if let ConnectionProperties::Nvmeof(n) = &mut p {
        n.device_path = Some(HostPath::new("/dev/nvme0n2").unwrap());
    }
    let paths = c.get_volume_paths(&p).unwrap();
    assert_eq!(
        paths
            .path_names()
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["/dev/nvme0n1"]
    );
    assert!(
        paths
            .diagnostics
            .iter()
            .any(|d| d.message.contains("not the namespace found"))
    );
}

#[test]
fn replicated_volumes_are_a_typed_unsupported_error() {
    let w = World::new(false);
    let rep = |i: u32| {
        json!({"target_nqn": format!("nqn.2016-06.io.spdk:r{i}"),
        "vol_uuid": U1, "portals": [["10.0.0.1", 4420, "tcp"]]})
    };
    let p = nvme(
        json!({"vol_uuid": U1, "alias": "fakealias", "replica_count": 2,
        "volume_replicas": [rep(1), rep(2)]}),
    );
    let c = c_for(&w);
    for err in [
        c.connect_volume(&p).unwrap_err(),
        c.get_volume_paths(&p).unwrap_err(),
        c.disconnect_volume(&p, None, DisconnectOptions::default())
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, ConnectorError::UnsupportedFeature { .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("replicated NVMe-oF volumes (md RAID) are not supported yet")
        );
    }
    assert!(w.host.events().is_empty());
    let local =
        ConnectionProperties::from_json(&json!({"device_path": "/dev/sda"}), Some(Protocol::Local))
            .unwrap();
    assert!(matches!(
        c.connect_volume(&local).unwrap_err(),
        ConnectorError::WrongProtocol { .. }
    ));
    let _ = DeviceInfo::block(HostPath::new("/dev/nvme0n1").unwrap(), None, None);
}
