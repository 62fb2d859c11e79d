//! NVMe in sysfs, `/dev`, udev and `/etc`, with the layout of the captures:
//!
//! ```text
//! /sys/devices/virtual/nvme-fabrics/ctl/nvmeC/{address,state,subsysnqn,...,delete_controller}
//!     nvmeScCnH/   hidden path disk (multipath on)   | nvmeCnH/ + ngCnH/ (multipath off)
//! /sys/devices/virtual/nvme-subsystem/nvme-subsysS/{subsysnqn,model,serial,iopolicy,...}
//!     nvmeC -> ../../nvme-fabrics/ctl/nvmeC
//!     nvmeSnH/ + ngSnH/   head disk and its generic char device (multipath on)
//! ```
//!
//! udev links of a visible NVMe disk (60-persistent-storage.rules): `by-id/nvme-<wwid>`,
//! `by-id/nvme-<model>_<serial>`, `by-id/nvme-<model>_<serial>_<nsid>`, `by-diskseq/N` and
//! `/dev/block/259:m`; never a by-path link for NVMe-oF. Hidden path disks get nothing.

use super::attrs::{NVME_CTRL, NVME_HEAD_NS, NVME_HWMON, NVME_NG, NVME_PATH_NS, NVME_SUBSYS};
use super::{BLKEXT_MAJOR, Ctrl, NG_MAJOR, NVME_CHAR_MAJOR, NsIds, NvmeBlock, PathNs};
use crate::ids::HostId;
use crate::kernel::attrs::Attr;
use crate::kernel::sysfs::{put_attrs, put_attrs_built};
use crate::naming::{pad, udev_clean};
use crate::tree::{Node, Tree, sysfs_link};
use crate::udev::Claim;
use crate::world::World;

const CTL: &str = "/sys/devices/virtual/nvme-fabrics/ctl";
const SUBSYS: &str = "/sys/devices/virtual/nvme-subsystem";

fn link(t: &mut Tree, dir: &str, name: &str, to: &str) {
    t.link(&format!("{dir}/{name}"), &sysfs_link(dir, to));
}

/// `address`: `traddr=..,trsvcid=..[,src_addr=..]` (`nvmf_get_address`).
pub(crate) fn address(c: &Ctrl) -> String {
    let mut a = format!("traddr={},trsvcid={}", c.port.traddr, c.port.trsvcid);
    if let Some(src) = &c.src_addr {
        a.push_str(&format!(",src_addr={src}"));
    }
    a
}

/// The namespace attributes shared by head and path disks, for one namespace.
fn ns_overrides(nsid: u32, ids: &NsIds, size: u64, diskseq: u64) -> Vec<(&'static str, String)> {
    vec![
        ("nsid", nsid.to_string()),
        ("size", (size / 512).to_string()),
        ("diskseq", diskseq.to_string()),
        ("uuid", ids.uuid.clone().unwrap_or_default()),
        ("wwid", ids.wwid()),
    ]
}

/// A table without the named attributes.
fn without(table: &[Attr], names: &[&str]) -> Vec<Attr> {
    table
        .iter()
        .filter(|a| !names.contains(&a.path))
        .copied()
        .collect()
}

/// A namespace table: `uuid` is only visible when the namespace has one (`nguid` is added
/// separately when present).
fn ns_table(table: &[Attr], ids: &NsIds, drop: &[&str]) -> Vec<Attr> {
    let mut names: Vec<&str> = drop.to_vec();
    if ids.uuid.is_none() {
        names.push("uuid");
    }
    without(table, &names)
}

impl World {
    pub(crate) fn render_nvme(&self, host: HostId, t: &mut Tree) {
        let h = self.host_ref(host);
        let Some(spec) = &h.spec.nvme else { return };
        let k = &h.kernel.nvme;
        t.attr(
            "/sys/module/nvme_core/parameters/multipath",
            0o444,
            if k.multipath { "Y" } else { "N" },
        );
        // DMI (os-brick reads product_uuid for the host NQN).
        let dmi = "/sys/devices/virtual/dmi/id";
        t.attr(&format!("{dmi}/product_uuid"), 0o400, &spec.product_uuid);
        link(t, "/sys/class/dmi", "id", dmi);
        for c in ["nvme", "nvme-fabrics", "nvme-subsystem", "nvme-generic"] {
            t.dir(&format!("/sys/class/{c}"));
        }
        t.dir(&format!("{CTL}/power"));
        link(t, CTL, "subsystem", "/sys/class/nvme-fabrics");
        t.file(&format!("{CTL}/uevent"), 0o644, Vec::new());
        link(t, "/sys/class/nvme-fabrics", "ctl", CTL);
        for c in k.ctrls.values() {
            self.render_ctrl(host, c, t);
        }
        for s in k.subsystems.values() {
            let sd = format!("{SUBSYS}/nvme-subsys{}", s.instance);
            put_attrs(
                t,
                &sd,
                NVME_SUBSYS,
                &[
                    ("model", pad(&s.model, 40)),
                    ("serial", pad(&s.serial, 20)),
                    (
                        "firmware_rev",
                        pad(&s.firmware_rev, 8).trim_end().to_owned(),
                    ),
                    ("subsysnqn", s.nqn.clone()),
                ],
            );
            link(t, &sd, "subsystem", "/sys/class/nvme-subsystem");
            link(
                t,
                "/sys/class/nvme-subsystem",
                &format!("nvme-subsys{}", s.instance),
                &sd,
            );
            for c in k.ctrls.values().filter(|c| c.subsys == s.instance) {
                link(
                    t,
                    &sd,
                    &format!("nvme{}", c.instance),
                    &format!("{CTL}/nvme{}", c.instance),
                );
            }
            for hd in s.heads.values() {
                let Some((minor, ng, diskseq)) = hd.disk else {
                    continue;
                };
                let name = format!("nvme{}n{}", s.instance, hd.instance);
                let dir = format!("{sd}/{name}");
                let mut over = ns_overrides(hd.nsid, &hd.ids, hd.size_bytes, diskseq);
                over.push(("dev", format!("{BLKEXT_MAJOR}:{minor}")));
                over.push((
                    "uevent",
                    format!(
                        "MAJOR={BLKEXT_MAJOR}\nMINOR={minor}\nDEVNAME={name}\nDEVTYPE=disk\nDISKSEQ={diskseq}"
                    ),
                ));
                put_attrs_built(t, &dir, &ns_table(NVME_HEAD_NS, &hd.ids, &[]), &over);
                // Reading it fails with EINVAL on a head (no wbt on a bio-based queue); the
                // file exists, empty here.
                t.file(&format!("{dir}/queue/wbt_lat_usec"), 0o644, Vec::new());
                if let Some(g) = &hd.ids.nguid {
                    t.attr(&format!("{dir}/nguid"), 0o444, g);
                }
                link(
                    t,
                    &dir,
                    "bdi",
                    &format!("/sys/devices/virtual/bdi/{BLKEXT_MAJOR}:{minor}"),
                );
                link(t, &dir, "device", &sd);
                link(t, &dir, "subsystem", "/sys/class/block");
                link(t, "/sys/class/block", &name, &dir);
                link(t, "/sys/block", &name, &dir);
                let ngname = format!("ng{}n{}", s.instance, hd.instance);
                let ngd = format!("{sd}/{ngname}");
                put_attrs(
                    t,
                    &ngd,
                    NVME_NG,
                    &[
                        ("dev", format!("{NG_MAJOR}:{ng}")),
                        (
                            "uevent",
                            format!("MAJOR={NG_MAJOR}\nMINOR={ng}\nDEVNAME={ngname}"),
                        ),
                    ],
                );
                link(t, &ngd, "device", &sd);
                link(t, &ngd, "subsystem", "/sys/class/nvme-generic");
                link(t, "/sys/class/nvme-generic", &ngname, &ngd);
            }
        }
    }

    fn render_ctrl(&self, host: HostId, c: &Ctrl, t: &mut Tree) {
        let k = &self.host_ref(host).kernel.nvme;
        let Some(s) = k.subsystems.get(&c.subsys) else {
            return;
        };
        let name = format!("nvme{}", c.instance);
        let cd = format!("{CTL}/{name}");
        let host_traddr = "none";
        put_attrs(
            t,
            &cd,
            NVME_CTRL,
            &[
                ("address", address(c)),
                ("cntlid", c.cntlid.to_string()),
                (
                    "ctrl_loss_tmo",
                    c.ctrl_loss_tmo
                        .map_or_else(|| "off".to_owned(), |v| v.to_string()),
                ),
                ("dev", format!("{NVME_CHAR_MAJOR}:{}", c.instance)),
                ("firmware_rev", s.firmware_rev.clone()),
                ("hostid", c.hostid.clone()),
                ("hostnqn", c.hostnqn.clone()),
                ("model", pad(&s.model, 40)),
                ("serial", pad(&s.serial, 20)),
                ("reconnect_delay", c.reconnect_delay.to_string()),
                ("state", self.ctrl_state(host, c).as_str().to_owned()),
                ("subsysnqn", c.nqn.clone()),
                ("transport", c.port.transport.as_str().to_owned()),
                (
                    "uevent",
                    format!(
                        "MAJOR={NVME_CHAR_MAJOR}\nMINOR={}\nDEVNAME={name}\nNVME_TRTYPE={}\nNVME_TRADDR={}\nNVME_TRSVCID={}\nNVME_HOST_TRADDR={host_traddr}\nNVME_HOST_IFACE=none",
                        c.instance,
                        c.port.transport.as_str(),
                        c.port.traddr,
                        c.port.trsvcid
                    ),
                ),
            ],
        );
        link(t, &cd, "device", CTL);
        link(t, &cd, "subsystem", "/sys/class/nvme");
        link(t, "/sys/class/nvme", &name, &cd);
        let hw = format!("{cd}/hwmon{}", c.hwmon);
        put_attrs(t, &hw, NVME_HWMON, &[]);
        link(t, &hw, "device", &cd);
        link(t, &hw, "subsystem", "/sys/class/hwmon");
        for ns in c.ns.values() {
            self.render_path_ns(host, c, ns, &cd, t);
        }
    }

    fn render_path_ns(&self, host: HostId, c: &Ctrl, ns: &PathNs, cd: &str, t: &mut Tree) {
        let k = &self.host_ref(host).kernel.nvme;
        let name = k.path_name(c, ns, k.multipath);
        let dir = format!("{cd}/{name}");
        let mut over = ns_overrides(ns.nsid, &ns.ids, ns.size_bytes, ns.diskseq);
        if k.multipath {
            over.push(("uevent", format!("DEVTYPE=disk\nDISKSEQ={}", ns.diskseq)));
            put_attrs_built(t, &dir, &ns_table(NVME_PATH_NS, &ns.ids, &[]), &over);
        } else {
            let m = ns.minor;
            over.push(("hidden", "0".to_owned()));
            over.push(("capability", "0".to_owned()));
            over.push(("dev", format!("{BLKEXT_MAJOR}:{m}")));
            over.push((
                "uevent",
                format!(
                    "MAJOR={BLKEXT_MAJOR}\nMINOR={m}\nDEVNAME={name}\nDEVTYPE=disk\nDISKSEQ={}",
                    ns.diskseq
                ),
            ));
            let mut table = ns_table(NVME_PATH_NS, &ns.ids, &["ana_grpid", "ana_state"]);
            table.push(Attr {
                path: "dev",
                kind: crate::kernel::attrs::AttrKind::Text,
                mode: 0o444,
                value: "",
            });
            put_attrs_built(t, &dir, &table, &over);
            link(
                t,
                &dir,
                "bdi",
                &format!("/sys/devices/virtual/bdi/{BLKEXT_MAJOR}:{m}"),
            );
            if let Some(ng) = ns.ng_minor {
                let ngname = format!("ng{}n{}", c.instance, ns.head);
                let ngd = format!("{cd}/{ngname}");
                put_attrs(
                    t,
                    &ngd,
                    NVME_NG,
                    &[
                        ("dev", format!("{NG_MAJOR}:{ng}")),
                        (
                            "uevent",
                            format!("MAJOR={NG_MAJOR}\nMINOR={ng}\nDEVNAME={ngname}"),
                        ),
                    ],
                );
                link(t, &ngd, "device", cd);
                link(t, &ngd, "subsystem", "/sys/class/nvme-generic");
                link(t, "/sys/class/nvme-generic", &ngname, &ngd);
            }
        }
        if let Some(g) = &ns.ids.nguid {
            t.attr(&format!("{dir}/nguid"), 0o444, g);
        }
        link(t, &dir, "device", cd);
        link(t, &dir, "subsystem", "/sys/class/block");
        link(t, "/sys/class/block", &name, &dir);
        link(t, "/sys/block", &name, &dir);
    }

    /// `/dev` nodes of the NVMe stack (devtmpfs) and `/etc/nvme`.
    pub(crate) fn render_nvme_dev(&self, host: HostId, t: &mut Tree) {
        let h = self.host_ref(host);
        let Some(spec) = &h.spec.nvme else { return };
        let k = &h.kernel.nvme;
        t.insert(
            "/dev/nvme-fabrics",
            Node::Char {
                major: 10,
                minor: 124,
                mode: 0o600,
            },
        );
        t.file(
            "/etc/nvme/hostnqn",
            0o644,
            format!("{}\n", spec.hostnqn).into_bytes(),
        );
        t.file(
            "/etc/nvme/hostid",
            0o644,
            format!("{}\n", spec.hostid).into_bytes(),
        );
        let processed = |name: &str| h.udev.devices.contains_key(name);
        for c in k.ctrls.values() {
            t.insert(
                &format!("/dev/nvme{}", c.instance),
                Node::Char {
                    major: NVME_CHAR_MAJOR,
                    minor: c.instance,
                    mode: 0o600,
                },
            );
        }
        for (name, b) in k.blocks(k.multipath) {
            let (minor, ng, ngname) = match b {
                NvmeBlock::Head { subsys, head } => {
                    let Some((m, g, _)) = k
                        .subsystems
                        .get(&subsys)
                        .and_then(|s| s.heads.get(&head))
                        .and_then(|h| h.disk)
                    else {
                        continue;
                    };
                    (m, Some(g), format!("ng{subsys}n{head}"))
                }
                NvmeBlock::Path { ctrl, nsid } => {
                    if k.multipath {
                        continue; // hidden: no node
                    }
                    let Some(ns) = k.ctrls.get(&ctrl).and_then(|c| c.ns.get(&nsid)) else {
                        continue;
                    };
                    (ns.minor, ns.ng_minor, format!("ng{ctrl}n{}", ns.head))
                }
            };
            let mode = if processed(&name) { 0o660 } else { 0o600 };
            t.insert(
                &format!("/dev/{name}"),
                Node::Block {
                    major: BLKEXT_MAJOR,
                    minor,
                    mode,
                },
            );
            if let Some(g) = ng {
                t.insert(
                    &format!("/dev/{ngname}"),
                    Node::Char {
                        major: NG_MAJOR,
                        minor: g,
                        mode: 0o600,
                    },
                );
            }
        }
    }

    /// The links a visible NVMe disk claims (`None` if it does not exist; none for a hidden
    /// path disk).
    pub(crate) fn nvme_claims(&self, host: HostId, dev: &str) -> Option<Vec<Claim>> {
        let k = &self.host_ref(host).kernel.nvme;
        let (sub, nsid, ids, minor, diskseq) = match k.find(dev)? {
            NvmeBlock::Head { subsys, head } => {
                let s = k.subsystems.get(&subsys)?;
                let h = s.heads.get(&head)?;
                let (m, _, seq) = h.disk?;
                (s, h.nsid, h.ids.clone(), m, seq)
            }
            NvmeBlock::Path { ctrl, nsid } => {
                if k.multipath {
                    return Some(Vec::new());
                }
                let c = k.ctrls.get(&ctrl)?;
                let ns = c.ns.get(&nsid)?;
                (
                    k.subsystems.get(&c.subsys)?,
                    nsid,
                    ns.ids.clone(),
                    ns.minor,
                    ns.diskseq,
                )
            }
        };
        let serial = format!("{}_{}", udev_clean(&sub.model), udev_clean(&sub.serial));
        let l = |p: String| Claim {
            path: p,
            target: format!("../../{dev}"),
            priority: 0,
        };
        Some(vec![
            l(format!("/dev/disk/by-id/nvme-{}", ids.wwid())),
            l(format!("/dev/disk/by-id/nvme-{serial}")),
            l(format!("/dev/disk/by-id/nvme-{serial}_{nsid}")),
            l(format!("/dev/disk/by-diskseq/{diskseq}")),
            Claim {
                path: format!("/dev/block/{BLKEXT_MAJOR}:{minor}"),
                target: format!("../{dev}"),
                priority: 0,
            },
        ])
    }
}
