//! Renders a host's kernel state as sysfs, with the real 6.1 layout: relative class/bus
//! links, the same attribute names, modes and values (see `attrs`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::attrs::{self, Attr, AttrKind};
use super::{BSG_MAJOR, DM_MAJOR, DevKind, DmMap, SG_MAJOR, ScsiDev, Session};
use crate::ids::HostId;
use crate::naming::{pad, sd_devt};
use crate::tree::{DirMut, Node, SharedDir, Tree, sysfs_link};
use crate::world::World;

const CLASSES: &[&str] = &[
    "iscsi_host",
    "iscsi_session",
    "iscsi_connection",
    "iscsi_transport",
    "iscsi_endpoint",
    "iscsi_iface",
    "scsi_host",
    "scsi_device",
    "scsi_disk",
    "scsi_generic",
    "bsg",
    "block",
];

/// Writes a table of attributes under `base`, with `over` replacing values by name (the
/// first override of a name counts; names the table lacks, and attributes that are not
/// text, are left alone).
pub(crate) fn put_attrs(t: &mut Tree, base: &str, table: &'static [Attr], over: &[(&str, String)]) {
    put_attrs_in(&mut t.dir_mut(base), table, over);
}

/// [`put_attrs`] into a directory already at hand.
pub(crate) fn put_attrs_in(dir: &mut DirMut<'_>, table: &'static [Attr], over: &[(&str, String)]) {
    // The table as it stands without overrides is built once and shared: placing it
    // copies one vector of pointers, and its subdirectories (`queue/`) stay shared.
    dir.overlay(&table_dir(table));
    put_overrides(dir, table, over);
}

/// [`put_attrs`] of a table built at run time (not cached).
pub(crate) fn put_attrs_built(t: &mut Tree, base: &str, table: &[Attr], over: &[(&str, String)]) {
    let mut dir = t.dir_mut(base);
    for a in table {
        dir.insert_static(a.path, constant_node(a));
    }
    put_overrides(&mut dir, table, over);
}

/// The overrides of [`put_attrs`], over the table already in `dir`.
fn put_overrides(dir: &mut DirMut<'_>, table: &[Attr], over: &[(&str, String)]) {
    for (i, (name, value)) in over.iter().enumerate() {
        if over[..i].iter().any(|(n, _)| n == name) {
            continue;
        }
        // The last attribute of a name is the one inserting the table in order leaves.
        let Some(a) = table.iter().rev().find(|a| a.path == *name) else {
            continue;
        };
        if matches!(a.kind, AttrKind::Empty | AttrKind::Text) {
            let mut content = Vec::with_capacity(value.len() + 1);
            content.extend_from_slice(value.as_bytes());
            content.push(b'\n');
            let node = Node::File {
                mode: a.mode,
                content,
            };
            dir.insert_static(a.path, Arc::new(node));
        }
    }
}

/// `table` with no overrides, as a directory: built once per thread and table.
fn table_dir(table: &'static [Attr]) -> SharedDir {
    /// The table's address and length: tables are `'static`, so these name them.
    type Key = (usize, usize);
    thread_local! {
        static TABLES: RefCell<BTreeMap<Key, SharedDir>> = const { RefCell::new(BTreeMap::new()) };
    }
    let key = (table.as_ptr().addr(), table.len());
    TABLES.with_borrow_mut(|tables| {
        tables
            .entry(key)
            .or_insert_with(|| {
                SharedDir::build(|dir| {
                    for a in table {
                        dir.insert_static(a.path, constant_node(a));
                    }
                })
            })
            .clone()
    })
}

/// The node of a table attribute that no override replaces: the same for every tree, so
/// built once per thread and shared (a render allocates no content for it).
fn constant_node(a: &Attr) -> Arc<Node> {
    /// (kind, mode, address and length of the value): the value is `'static`, so its
    /// address names it (integers compare faster than hashing the text).
    type Key = (AttrKind, u32, usize, usize);
    thread_local! {
        static NODES: RefCell<BTreeMap<Key, Arc<Node>>> = const { RefCell::new(BTreeMap::new()) };
    }
    let key = (a.kind, a.mode, a.value.as_ptr().addr(), a.value.len());
    NODES.with_borrow_mut(|nodes| {
        Arc::clone(nodes.entry(key).or_insert_with(|| {
            Arc::new(match a.kind {
                AttrKind::Dir => Node::Dir { mode: a.mode },
                AttrKind::WriteOnly | AttrKind::Empty => Node::File {
                    mode: a.mode,
                    content: Vec::new(),
                },
                AttrKind::Text => {
                    let mut content = a.value.as_bytes().to_vec();
                    content.push(b'\n');
                    Node::File {
                        mode: a.mode,
                        content,
                    }
                }
            })
        }))
    })
}

/// Standard INQUIRY data as the captured target returns it: 66 bytes (additional length
/// 61), vendor/model/revision, and version descriptors (SAM-3, iSCSI, SPC-3, SBC-2 or SSC).
fn inquiry(dev: &ScsiDev) -> Vec<u8> {
    let mut b = vec![dev.scsi_type(), 0, 0x05, 0x12, 0x3d, 0, 0, 0x02];
    b.extend_from_slice(pad(&dev.vendor, 8).as_bytes());
    b.extend_from_slice(pad(&dev.model, 16).as_bytes());
    b.extend_from_slice(b"0001");
    b.resize(58, 0);
    let last = if dev.scsi_type() == 0 {
        [0x03, 0x00]
    } else {
        [0x01, 0xfb]
    };
    b.extend_from_slice(&[0x04, 0xc0, 0x09, 0x60, last[0], last[1], 0, 0]);
    b
}

/// VPD pages 0xb0 (block limits), 0xb1 (characteristics), 0xb2 (provisioning), zeroed as the
/// captured target reports them.
fn vpd_b(dev: &ScsiDev, page: u8) -> Vec<u8> {
    let (len, first) = match page {
        0xb0 => (0x3c, Some(0x80)),
        0xb1 => (0x40, None),
        _ => (0x04, None),
    };
    let mut b = vec![dev.scsi_type(), page, 0, len];
    b.resize(4 + usize::from(len), 0);
    if let (Some(v), Some(slot)) = (first, b.get_mut(5)) {
        *slot = v;
    }
    b
}

/// VPD page 0x83 as the array builds it: a T10 vendor-id designator (LIO: vendor padded to
/// 8, then `<model>:<serial>`), a NAA-3 (locally assigned) designator if the array has one,
/// and the NAA-6 designator, all associated with the logical unit. LIO also lists target-port
/// and target-device designators; udev makes no link from those, so they are left out.
pub(crate) fn vpd83(dev: &ScsiDev) -> Vec<u8> {
    fn designator(out: &mut Vec<u8>, code_set: u8, kind: u8, value: &[u8]) {
        out.extend_from_slice(&[
            code_set,
            kind,
            0,
            u8::try_from(value.len()).unwrap_or(u8::MAX),
        ]);
        out.extend_from_slice(value);
    }
    let id = &dev.identity;
    let mut desc = Vec::new();
    let t10 = id.t10.clone().unwrap_or_else(|| {
        format!("{}{}:{}", pad(&dev.vendor, 8), dev.model, id.serial).into_bytes()
    });
    designator(&mut desc, 0x02, 0x01, &t10);
    if let Some(local) = &id.naa_local {
        designator(&mut desc, 0x01, 0x03, &hex_bytes(local));
    }
    designator(&mut desc, 0x01, 0x03, &hex_bytes(&id.naa));
    let len = u16::try_from(desc.len()).unwrap_or(u16::MAX).to_be_bytes();
    let mut b = vec![dev.scsi_type(), 0x83, len[0], len[1]];
    b.extend_from_slice(&desc);
    b
}

/// Hex digits to bytes (pairs; a trailing odd digit or a non-hex pair is dropped).
fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| hex.get(2 * i..2 * i + 2))
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect()
}

/// VPD page 0x80: the unit serial number, right-justified in spaces if the array uses a
/// fixed-width field.
fn vpd80(dev: &ScsiDev) -> Vec<u8> {
    let s = dev.identity.serial.as_bytes();
    let width = dev.identity.serial_width.unwrap_or(0).max(s.len());
    let mut field = vec![b' '; width - s.len()];
    field.extend_from_slice(s);
    let mut b = vec![
        dev.scsi_type(),
        0x80,
        0,
        u8::try_from(field.len()).unwrap_or(u8::MAX),
    ];
    b.extend_from_slice(&field);
    b
}

/// The static part of sysfs: class and bus directories, the iSCSI TCP transport.
pub(crate) fn render_sysfs_base(t: &mut Tree) {
    for c in CLASSES {
        t.dir(&format!("/sys/class/{c}"));
    }
    t.dir("/sys/block");
    t.dir("/sys/bus/scsi/devices");
    t.dir("/sys/bus/scsi/drivers/sd");
    t.link(
        "/sys/class/iscsi_transport/tcp",
        "../../devices/virtual/iscsi_transport/tcp",
    );
    let tcp = "/sys/devices/virtual/iscsi_transport/tcp";
    t.attr(&format!("{tcp}/caps"), 0o444, "0x39");
    t.attr(&format!("{tcp}/handle"), 0o444, "18446744072639336544");
    t.dir(&format!("{tcp}/power"));
    t.link(
        &format!("{tcp}/subsystem"),
        "../../../../class/iscsi_transport",
    );
    t.file(&format!("{tcp}/uevent"), 0o644, Vec::new());
}

impl World {
    /// The whole of sysfs, in one tree.
    pub(crate) fn render_sysfs(&self, host: HostId, t: &mut Tree) {
        render_sysfs_base(t);
        for s in self.host_ref(host).kernel.sessions.values() {
            self.render_session(host, s, t);
        }
        self.render_sysfs_rest(host, t);
    }

    /// sysfs after the iSCSI sessions: FC, NVMe and the dm maps.
    pub(crate) fn render_sysfs_rest(&self, host: HostId, t: &mut Tree) {
        self.render_fc(host, t);
        self.render_nvme(host, t);
        for m in self.host_ref(host).kernel.dms.values() {
            self.render_dm(host, m, t);
        }
    }

    /// One dm map: its block device, slaves, class and block links. Reads exactly what
    /// [`crate::render_cache::DmKey`] holds: the map, and for each of its paths that exists,
    /// the SCSI LUN directory ([`World::dm_slave_dirs`]).
    pub(crate) fn render_dm(&self, host: HostId, m: &DmMap, t: &mut Tree) {
        let name = m.dev_name();
        let base = format!("/sys/devices/virtual/block/{name}");
        let sectors = (m.size_bytes / 512).to_string();
        put_attrs(
            t,
            &base,
            attrs::DM_BLOCK,
            &[
                ("dev", format!("{DM_MAJOR}:{}", m.minor)),
                ("size", sectors),
                ("diskseq", m.diskseq.to_string()),
                ("dm/name", m.name.clone()),
                ("dm/uuid", format!("mpath-{}", m.wwid)),
                (
                    "uevent",
                    format!(
                        "MAJOR={DM_MAJOR}\nMINOR={}\nDEVNAME={name}\nDEVTYPE=disk\nDISKSEQ={}",
                        m.minor, m.diskseq
                    ),
                ),
            ],
        );
        t.link(
            &format!("{base}/bdi"),
            &format!("../../bdi/{DM_MAJOR}:{}", m.minor),
        );
        t.link(&format!("{base}/subsystem"), "../../../../class/block");
        t.dir(&format!("{base}/holders"));
        t.dir(&format!("{base}/slaves"));
        for (p, dir) in self.dm_slave_dirs(host, m) {
            if let Some(dir) = dir {
                t.link(
                    &format!("{base}/slaves/{p}"),
                    &sysfs_link(&format!("{base}/slaves"), &format!("{dir}/block/{p}")),
                );
            }
        }
        t.link(
            &format!("/sys/class/block/{name}"),
            &format!("../../devices/virtual/block/{name}"),
        );
        t.link(
            &format!("/sys/block/{name}"),
            &format!("../devices/virtual/block/{name}"),
        );
    }

    /// Each path of a dm map with the LUN directory of its SCSI device, if it has one.
    pub(crate) fn dm_slave_dirs(&self, host: HostId, m: &DmMap) -> Vec<(String, Option<String>)> {
        let k = &self.host_ref(host).kernel;
        m.paths
            .iter()
            .map(|p| {
                let dir = k.disk_by_name(p).and_then(|d| self.scsi_lun_dir(host, d));
                (p.clone(), dir)
            })
            .collect()
    }

    /// One iSCSI session with its SCSI host, target and LUNs, and their class and bus links.
    fn render_session(&self, host: HostId, s: &Session, t: &mut Tree) {
        let devices: Vec<&ScsiDev> = self
            .host_ref(host)
            .kernel
            .devices
            .values()
            .filter(|d| d.sid == s.sid)
            .collect();
        self.render_session_shell(host, s, t);
        if !devices.is_empty() {
            render_session_target(s, t);
        }
        for d in devices {
            self.render_session_lun(host, s, d, t);
            self.render_session_lun_holders(host, s, d, t);
        }
    }

    /// One LUN of an iSCSI session, without its holders links. Reads exactly what
    /// [`crate::render_cache::LunKey`] holds.
    pub(crate) fn render_session_lun(&self, host: HostId, s: &Session, d: &ScsiDev, t: &mut Tree) {
        let state = if self.portal_down(host, &s.portal) {
            "transport-offline"
        } else {
            "running"
        };
        Self::render_lun_device(&session_lun_dir(s, d), d, state, t);
    }

    /// The holders links of one LUN of an iSCSI session.
    pub(crate) fn render_session_lun_holders(
        &self,
        host: HostId,
        s: &Session,
        d: &ScsiDev,
        t: &mut Tree,
    ) {
        self.render_lun_holders(host, &session_lun_dir(s, d), d, t);
    }

    /// An iSCSI session without its target and LUNs: SCSI host, session, connection, their
    /// class and bus links. Reads exactly what [`crate::render_cache::ShellKey`] holds.
    pub(crate) fn render_session_shell(&self, host: HostId, s: &Session, t: &mut Tree) {
        let hs = self.host_ref(host);
        let down = self.portal_down(host, &s.portal);
        let hn = s.host_no;
        let sid = s.sid;
        // The host's directory through a cursor ([`DirMut`]): one walk from the root.
        let mut base = t.dir_mut(&format!("/sys/devices/platform/host{hn}"));
        base.dir("power");
        base.link("subsystem", "../../../bus/scsi");
        base.attr("uevent", 0o644, "DEVTYPE=scsi_host");

        let mut ih = base.dir_mut(&format!("iscsi_host/host{hn}"));
        put_attrs_in(
            &mut ih,
            attrs::ISCSI_HOST,
            &[("ipaddress", hs.spec.ip.clone())],
        );
        ih.link("device", &format!("../../../host{hn}"));
        ih.link("subsystem", "../../../../../class/iscsi_host");

        let mut sh = base.dir_mut(&format!("scsi_host/host{hn}"));
        put_attrs_in(&mut sh, attrs::SCSI_HOST, &[]);
        sh.link("device", &format!("../../../host{hn}"));
        sh.link("subsystem", "../../../../../class/scsi_host");

        let mut sess = base.dir_mut(&format!("session{sid}"));
        sess.dir("power");
        sess.file("uevent", 0o644, Vec::new());
        let mut isess = sess.dir_mut(&format!("iscsi_session/session{sid}"));
        put_attrs_in(
            &mut isess,
            attrs::ISCSI_SESSION,
            &[
                ("initiatorname", hs.spec.initiator_iqn.clone()),
                ("targetname", s.iqn.clone()),
                ("recovery_tmo", s.recovery_tmo.to_string()),
                (
                    "state",
                    if down { "FAILED" } else { "LOGGED_IN" }.to_owned(),
                ),
            ],
        );
        isess.link("device", &format!("../../../session{sid}"));
        isess.link("subsystem", "../../../../../../class/iscsi_session");

        let mut conn = sess.dir_mut(&format!("connection{sid}:0"));
        conn.dir("power");
        conn.file("uevent", 0o644, Vec::new());
        let mut iconn = conn.dir_mut(&format!("iscsi_connection/connection{sid}:0"));
        let port = s.portal.port.to_string();
        put_attrs_in(
            &mut iconn,
            attrs::ISCSI_CONNECTION,
            &[
                ("address", s.portal.ip.clone()),
                ("persistent_address", s.portal.ip.clone()),
                ("port", port.clone()),
                ("persistent_port", port),
                ("state", if down { "failed" } else { "up" }.to_owned()),
            ],
        );
        iconn.link("device", &format!("../../../connection{sid}:0"));
        iconn.link("subsystem", "../../../../../../../class/iscsi_connection");

        t.link(
            &format!("/sys/class/iscsi_host/host{hn}"),
            &format!("../../devices/platform/host{hn}/iscsi_host/host{hn}"),
        );
        t.link(
            &format!("/sys/class/scsi_host/host{hn}"),
            &format!("../../devices/platform/host{hn}/scsi_host/host{hn}"),
        );
        t.link(
            &format!("/sys/class/iscsi_session/session{sid}"),
            &format!("../../devices/platform/host{hn}/session{sid}/iscsi_session/session{sid}"),
        );
        t.link(
            &format!("/sys/class/iscsi_connection/connection{sid}:0"),
            &format!("../../devices/platform/host{hn}/session{sid}/connection{sid}:0/iscsi_connection/connection{sid}:0"),
        );
        t.link(
            &format!("/sys/bus/scsi/devices/host{hn}"),
            &format!("../../../devices/platform/host{hn}"),
        );
    }

    /// Renders a SCSI LUN directory `lun` (absolute) with its class, bus and block entries.
    /// `state` is the `state` attribute (`running`, `transport-offline`, `blocked`).
    pub(crate) fn render_lun(
        &self,
        host: HostId,
        lun: &str,
        d: &ScsiDev,
        state: &str,
        t: &mut Tree,
    ) {
        Self::render_lun_device(lun, d, state, t);
        self.render_lun_holders(host, lun, d, t);
    }

    /// [`World::render_lun`] without the holders links: a function of the device alone.
    ///
    /// The LUN's own directories are filled through cursors ([`DirMut`]): one walk from
    /// the root each, not one per node.
    pub(crate) fn render_lun_device(lun: &str, d: &ScsiDev, state: &str, t: &mut Tree) {
        let hctl = d.hctl.to_string();
        let disk = matches!(d.kind, DevKind::Disk { .. });
        let table = if disk {
            attrs::SCSI_DISK_LUN
        } else {
            attrs::SCSI_CTRL_LUN
        };
        // A link in directory `dir` (at `dir_path`), computed as sysfs does.
        let link = |dir: &mut DirMut<'_>, dir_path: &str, name: &str, to: &str| {
            dir.link(name, &sysfs_link(dir_path, to));
        };
        let sdev = format!("{lun}/scsi_device/{hctl}");
        let sg = format!("{lun}/scsi_generic/sg{}", d.sg);
        let bsg = format!("{lun}/bsg/{hctl}");
        {
            let mut l = t.dir_mut(lun);
            put_attrs_in(
                &mut l,
                table,
                &[
                    ("vendor", pad(&d.vendor, 8)),
                    ("model", pad(&d.model, 16)),
                    ("state", state.to_owned()),
                    ("wwid", format!("naa.{}", d.identity.naa)),
                ],
            );
            // Without ALUA or a device handler attached the kernel has no access state to
            // show: both attributes exist and their read fails with EINVAL (`dh_state`
            // reads `detached`).
            for name in ["access_state", "preferred_path"] {
                l.insert(
                    name,
                    Node::Unreadable {
                        mode: 0o444,
                        errno: crate::ids::Errno::EINVAL,
                    },
                );
            }
            l.file("inquiry", 0o444, inquiry(d));
            l.file(
                "vpd_pg0",
                0o444,
                vec![d.scsi_type(), 0, 0, 6, 0, 0x80, 0x83, 0xb0, 0xb1, 0xb2],
            );
            for page in [0xb0u8, 0xb1, 0xb2] {
                l.file(&format!("vpd_pg{page:x}"), 0o444, vpd_b(d, page));
            }
            l.file("vpd_pg80", 0o444, vpd80(d));
            l.file("vpd_pg83", 0o444, vpd83(d));
            link(&mut l, lun, "subsystem", "/sys/bus/scsi");
            l.link("generic", &format!("scsi_generic/sg{}", d.sg));
            // scsi_device
            let mut dir = l.dir_mut(&format!("scsi_device/{hctl}"));
            link(&mut dir, &sdev, "device", lun);
            dir.dir("power");
            link(&mut dir, &sdev, "subsystem", "/sys/class/scsi_device");
            dir.file("uevent", 0o644, Vec::new());
            // scsi_generic
            let mut dir = l.dir_mut(&format!("scsi_generic/sg{}", d.sg));
            dir.attr("dev", 0o444, &format!("{SG_MAJOR}:{}", d.sg));
            link(&mut dir, &sg, "device", lun);
            dir.dir("power");
            link(&mut dir, &sg, "subsystem", "/sys/class/scsi_generic");
            dir.attr(
                "uevent",
                0o644,
                &format!("MAJOR={SG_MAJOR}\nMINOR={}\nDEVNAME=sg{}", d.sg, d.sg),
            );
            // bsg
            let mut dir = l.dir_mut(&format!("bsg/{hctl}"));
            dir.attr("dev", 0o444, &format!("{BSG_MAJOR}:{}", d.bsg));
            link(&mut dir, &bsg, "device", lun);
            dir.dir("power");
            link(&mut dir, &bsg, "subsystem", "/sys/class/bsg");
            dir.attr(
                "uevent",
                0o644,
                &format!("MAJOR={BSG_MAJOR}\nMINOR={}\nDEVNAME=bsg/{hctl}", d.bsg),
            );
        }
        // A link placed at the absolute `dir/name`.
        let link_at = |t: &mut Tree, dir: &str, name: &str, to: &str| {
            t.link(&format!("{dir}/{name}"), &sysfs_link(dir, to));
        };
        link_at(t, "/sys/class/scsi_device", &hctl, &sdev);
        link_at(t, "/sys/class/scsi_generic", &format!("sg{}", d.sg), &sg);
        link_at(t, "/sys/class/bsg", &hctl, &bsg);
        link_at(t, "/sys/bus/scsi/devices", &hctl, lun);

        let DevKind::Disk { sd } = d.kind else { return };
        let name = crate::naming::sd_name(sd);
        let (maj, min) = sd_devt(sd);
        let sdisk = format!("{lun}/scsi_disk/{hctl}");
        let blk = format!("{lun}/block/{name}");
        {
            let mut l = t.dir_mut(lun);
            link(&mut l, lun, "driver", "/sys/bus/scsi/drivers/sd");
            // scsi_disk
            let mut dir = l.dir_mut(&format!("scsi_disk/{hctl}"));
            put_attrs_in(&mut dir, attrs::SCSI_DISK, &[]);
            link(&mut dir, &sdisk, "device", lun);
            link(&mut dir, &sdisk, "subsystem", "/sys/class/scsi_disk");
            // block
            let mut dir = l.dir_mut(&format!("block/{name}"));
            put_attrs_in(
                &mut dir,
                attrs::SD_BLOCK,
                &[
                    ("dev", format!("{maj}:{min}")),
                    ("size", (d.size_bytes / 512).to_string()),
                    ("diskseq", d.diskseq.to_string()),
                    (
                        "uevent",
                        format!(
                            "MAJOR={maj}\nMINOR={min}\nDEVNAME={name}\nDEVTYPE=disk\nDISKSEQ={}",
                            d.diskseq
                        ),
                    ),
                ],
            );
            link(
                &mut dir,
                &blk,
                "bdi",
                &format!("/sys/devices/virtual/bdi/{maj}:{min}"),
            );
            link(&mut dir, &blk, "device", lun);
            link(&mut dir, &blk, "subsystem", "/sys/class/block");
        }
        link_at(t, "/sys/bus/scsi/drivers/sd", &hctl, lun);
        link_at(t, "/sys/class/scsi_disk", &hctl, &sdisk);
        link_at(t, "/sys/class/block", &name, &blk);
        link_at(t, "/sys/block", &name, &blk);
    }

    /// The `holders/dm-N` links of a SCSI disk in LUN directory `lun` (nothing for other
    /// LUNs): [`World::render_lun`]'s only reading of the host beyond the device.
    pub(crate) fn render_lun_holders(&self, host: HostId, lun: &str, d: &ScsiDev, t: &mut Tree) {
        let Some(name) = d.sd_name() else { return };
        let k = &self.host_ref(host).kernel;
        let holders = format!("{lun}/block/{name}/holders");
        for m in k.holders(&name) {
            let dm = m.dev_name();
            t.link(
                &format!("{holders}/{dm}"),
                &sysfs_link(&holders, &format!("/sys/devices/virtual/block/{dm}")),
            );
        }
    }

    /// The absolute LUN directory of a SCSI device (iSCSI session or FC rport).
    pub(crate) fn scsi_lun_dir(&self, host: HostId, d: &ScsiDev) -> Option<String> {
        let k = &self.host_ref(host).kernel;
        if let Some(s) = k.session_of(d) {
            return Some(format!("/sys/devices/platform/{}", lun_rel(s, d)));
        }
        self.fc_lun_dir(host, d.hctl)
    }
}

/// The SCSI target of a session that has devices: `targetH:0:0` and its bus link.
pub(crate) fn render_session_target(s: &Session, t: &mut Tree) {
    let (hn, sid) = (s.host_no, s.sid);
    let tgt_name = format!("target{hn}:0:0");
    let tgt = format!("/sys/devices/platform/host{hn}/session{sid}/{tgt_name}");
    t.dir(&format!("{tgt}/power"));
    t.link(&format!("{tgt}/subsystem"), "../../../../../bus/scsi");
    t.attr(&format!("{tgt}/uevent"), 0o644, "DEVTYPE=scsi_target");
    t.link(
        &format!("/sys/bus/scsi/devices/{tgt_name}"),
        &format!("../../../devices/platform/host{hn}/session{sid}/{tgt_name}"),
    );
}

/// The absolute LUN directory of a session's device.
fn session_lun_dir(s: &Session, d: &ScsiDev) -> String {
    format!("/sys/devices/platform/{}", lun_rel(s, d))
}

/// `hostH/sessionS/targetH:0:0/H:0:0:L`, relative to `/sys/devices/platform`.
fn lun_rel(s: &Session, d: &ScsiDev) -> String {
    format!(
        "host{}/session{}/target{}:0:0/{}",
        s.host_no, s.sid, s.host_no, d.hctl
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `put_attrs` as it was written first: every attribute of the table inserted in order,
    /// with the first override of its name.
    fn insert_each(t: &mut Tree, base: &str, table: &[Attr], over: &[(&str, String)]) {
        for a in table {
            let value = over.iter().find(|(n, _)| *n == a.path).map(|(_, v)| v);
            let node = match (a.kind, value) {
                (AttrKind::Empty | AttrKind::Text, Some(v)) => Node::File {
                    mode: a.mode,
                    content: format!("{v}\n").into_bytes(),
                },
                _ => (*constant_node(a)).clone(),
            };
            t.insert(&format!("{base}/{}", a.path), node);
        }
    }

    #[test]
    fn shared_tables_render_what_inserting_each_attribute_renders() {
        let tables: [&'static [Attr]; 9] = [
            attrs::SCSI_HOST,
            attrs::ISCSI_HOST,
            attrs::ISCSI_SESSION,
            attrs::ISCSI_CONNECTION,
            attrs::SCSI_DISK_LUN,
            attrs::SD_BLOCK,
            attrs::SCSI_DISK,
            attrs::SCSI_CTRL_LUN,
            attrs::DM_BLOCK,
        ];
        let base = "/sys/devices/x/block/sda";
        for table in tables {
            // Every name once, the first twice (the first override counts), the nested
            // ones too, and a name the table lacks.
            let mut over: Vec<(&str, String)> = table
                .iter()
                .enumerate()
                .map(|(i, a)| (a.path, format!("v{i}")))
                .collect();
            over.insert(1, (table[0].path, "second".to_owned()));
            over.push(("no-such-attribute", "x".to_owned()));
            for over in [&over[..], &[]] {
                // Into a missing directory, and into one that already holds entries.
                for before in [None, Some("uevent"), Some("queue/extra")] {
                    let mut want = Tree::new();
                    let mut got = Tree::new();
                    if let Some(name) = before {
                        want.attr(&format!("{base}/{name}"), 0o644, "old");
                        got.attr(&format!("{base}/{name}"), 0o644, "old");
                    }
                    insert_each(&mut want, base, table, over);
                    put_attrs(&mut got, base, table, over);
                    assert_eq!(got, want, "{} attributes, before {before:?}", table.len());
                    let mut built = Tree::new();
                    if let Some(name) = before {
                        built.attr(&format!("{base}/{name}"), 0o644, "old");
                    }
                    put_attrs_built(&mut built, base, table, over);
                    assert_eq!(built, want);
                }
            }
        }
    }
}
