//! FC hosts in sysfs, as `scsi_transport_fc` lays them out (no real capture exists: attribute
//! names and formats come from the kernel sources):
//!
//! ```text
//! /sys/devices/<pci path>/hostH/
//!     fc_host/hostH/{port_name,node_name,port_id,port_state,port_type,speed,...}
//!     scsi_host/hostH/{scan,proc_name,...}
//!     rport-H:0-N/
//!         fc_remote_ports/rport-H:0-N/{port_name,node_name,port_id,roles,scsi_target_id,port_state,...}
//!         targetH:0:T/                      (only while it has LUN devices)
//!             fc_transport/targetH:0:T/{port_name,node_name,port_id}
//!             H:0:T:L/                      (the LUN, as for iSCSI)
//! ```
//!
//! WWNs print as `0x%llx`, port ids as `0x%06x`; class entries are relative links.

use super::{FcPortState, Hba, Rport};
use crate::ids::HostId;
use crate::kernel::attrs::{Attr, AttrKind, SCSI_HOST};
use crate::kernel::sysfs::put_attrs;
use crate::naming::Hctl;
use crate::tree::{Tree, sysfs_link};
use crate::world::World;

const fn text(path: &'static str, mode: u32, value: &'static str) -> Attr {
    Attr {
        path,
        kind: AttrKind::Text,
        mode,
        value,
    }
}

const fn write_only(path: &'static str) -> Attr {
    Attr {
        path,
        kind: AttrKind::WriteOnly,
        mode: 0o200,
        value: "",
    }
}

const fn dir(path: &'static str) -> Attr {
    Attr {
        path,
        kind: AttrKind::Dir,
        mode: 0o755,
        value: "",
    }
}

const fn empty(path: &'static str) -> Attr {
    Attr {
        path,
        kind: AttrKind::Empty,
        mode: 0o644,
        value: "",
    }
}

/// `fc_host` attributes (`fc_host_rd_attr` & co.); model-dependent values are overridden.
const FC_HOST: &[Attr] = &[
    text("dev_loss_tmo", 0o644, "30"),
    text("fabric_name", 0o444, "0x0"),
    write_only("issue_lip"),
    text("max_npiv_vports", 0o444, "254"),
    text("maxframe_size", 0o444, "2048 bytes"),
    text("node_name", 0o444, "0x0"),
    text("npiv_vports_inuse", 0o444, "0"),
    text("port_id", 0o444, "0x000000"),
    text("port_name", 0o444, "0x0"),
    text("port_state", 0o444, "Online"),
    text("port_type", 0o444, "NPort (fabric via point-to-point)"),
    dir("power"),
    text("speed", 0o444, "16 Gbit"),
    text("supported_classes", 0o444, "Class 3"),
    text("supported_speeds", 0o444, "4 Gbit, 8 Gbit, 16 Gbit"),
    text(
        "symbolic_name",
        0o444,
        "QLE2692 FW:v8.08.231 DVR:v10.02.07.900-k",
    ),
    text("system_hostname", 0o644, ""),
    text("tgtid_bind_type", 0o644, "wwpn (World Wide Port Name)"),
    empty("uevent"),
    write_only("vport_create"),
    write_only("vport_delete"),
];

/// `fc_remote_ports` attributes.
const FC_RPORT: &[Attr] = &[
    text("dev_loss_tmo", 0o644, "30"),
    text("fast_io_fail_tmo", 0o644, "5"),
    text("maxframe_size", 0o444, "2048 bytes"),
    text("node_name", 0o444, "0x0"),
    text("port_id", 0o444, "0x000000"),
    text("port_name", 0o444, "0x0"),
    text("port_state", 0o444, "Online"),
    dir("power"),
    text("roles", 0o444, "FCP Target"),
    text("scsi_target_id", 0o444, "-1"),
    text("supported_classes", 0o444, "Class 3"),
    empty("uevent"),
];

/// `fc_transport` (SCSI target) attributes.
const FC_TARGET_ATTRS: &[Attr] = &[
    text("node_name", 0o444, "0x0"),
    text("port_id", 0o444, "0x000000"),
    text("port_name", 0o444, "0x0"),
    dir("power"),
    empty("uevent"),
];

fn link(t: &mut Tree, dir: &str, name: &str, to: &str) {
    t.link(&format!("{dir}/{name}"), &sysfs_link(dir, to));
}

fn host_dir(hba: &Hba) -> String {
    format!("/sys/devices/{}/host{}", hba.spec.device_path, hba.host_no)
}

fn rport_dir(hba: &Hba, r: &Rport) -> String {
    format!("{}/rport-{}:0-{}", host_dir(hba), hba.host_no, r.number)
}

fn pci_vendor(driver: &str) -> &'static str {
    match driver {
        "lpfc" => "0x10df",
        _ => "0x1077",
    }
}

impl World {
    /// The LUN directory of an FC SCSI device.
    pub(crate) fn fc_lun_dir(&self, host: HostId, hctl: Hctl) -> Option<String> {
        let (hba, r) = self.fc_rport_of(host, hctl)?;
        Some(format!(
            "{}/target{}:0:{}/{hctl}",
            rport_dir(hba, r),
            hba.host_no,
            hctl.target
        ))
    }

    pub(crate) fn render_fc(&self, host: HostId, t: &mut Tree) {
        let k = &self.host_ref(host).kernel;
        if k.fc.hbas.is_empty() {
            return;
        }
        for c in ["fc_host", "fc_remote_ports", "fc_transport"] {
            t.dir(&format!("/sys/class/{c}"));
        }
        for hba in &k.fc.hbas {
            self.render_hba(host, hba, t);
        }
    }

    fn render_hba(&self, host: HostId, hba: &Hba, t: &mut Tree) {
        let k = &self.host_ref(host).kernel;
        let hn = hba.host_no;
        let up = hba.state == FcPortState::Online;
        let pci = format!("/sys/devices/{}", hba.spec.device_path);
        let slot = pci.rsplit('/').next().unwrap_or_default().to_owned();
        let driver = hba.spec.driver.as_str();
        t.attr(&format!("{pci}/vendor"), 0o444, pci_vendor(driver));
        t.attr(&format!("{pci}/class"), 0o444, "0x0c0400");
        t.attr(
            &format!("{pci}/uevent"),
            0o644,
            &format!("DRIVER={driver}\nPCI_CLASS=C0400\nPCI_SLOT_NAME={slot}"),
        );
        t.dir(&format!("{pci}/power"));
        link(t, &pci, "subsystem", "/sys/bus/pci");
        link(t, &pci, "driver", &format!("/sys/bus/pci/drivers/{driver}"));

        let hd = host_dir(hba);
        t.dir(&format!("{hd}/power"));
        link(t, &hd, "subsystem", "/sys/bus/scsi");
        t.attr(&format!("{hd}/uevent"), 0o644, "DEVTYPE=scsi_host");

        let fch = format!("{hd}/fc_host/host{hn}");
        put_attrs(
            t,
            &fch,
            FC_HOST,
            &[
                ("port_name", format!("{:#x}", hba.spec.wwpn)),
                ("node_name", format!("{:#x}", hba.spec.wwnn)),
                (
                    "port_id",
                    format!(
                        "{:#08x}",
                        if up {
                            self.fc.port_id(hba.spec.wwpn)
                        } else {
                            0
                        }
                    ),
                ),
                ("port_state", hba.state.as_str().to_owned()),
                (
                    "port_type",
                    if up {
                        "NPort (fabric via point-to-point)"
                    } else {
                        "Unknown"
                    }
                    .to_owned(),
                ),
                ("speed", if up { "16 Gbit" } else { "unknown" }.to_owned()),
                (
                    "fabric_name",
                    format!("{:#x}", fabric_wwn(&hba.spec.fabric, up)),
                ),
            ],
        );
        link(t, &fch, "device", &hd);
        link(t, &fch, "subsystem", "/sys/class/fc_host");
        link(t, "/sys/class/fc_host", &format!("host{hn}"), &fch);

        let sh = format!("{hd}/scsi_host/host{hn}");
        put_attrs(t, &sh, SCSI_HOST, &[("proc_name", driver.to_owned())]);
        link(t, &sh, "device", &hd);
        link(t, &sh, "subsystem", "/sys/class/scsi_host");
        link(t, "/sys/class/scsi_host", &format!("host{hn}"), &sh);
        link(t, "/sys/bus/scsi/devices", &format!("host{hn}"), &hd);

        for r in &hba.rports {
            let rd = rport_dir(hba, r);
            let name = format!("rport-{hn}:0-{}", r.number);
            t.dir(&format!("{rd}/power"));
            t.file(&format!("{rd}/uevent"), 0o644, Vec::new());
            let fr = format!("{rd}/fc_remote_ports/{name}");
            put_attrs(
                t,
                &fr,
                FC_RPORT,
                &[
                    ("port_name", format!("{:#x}", r.wwpn)),
                    ("node_name", format!("{:#x}", r.wwnn)),
                    ("port_id", format!("{:#08x}", self.fc.port_id(r.wwpn))),
                    ("port_state", r.state.as_str().to_owned()),
                    ("roles", r.role.as_str().to_owned()),
                    (
                        "scsi_target_id",
                        r.target_id
                            .map_or_else(|| "-1".to_owned(), |t| t.to_string()),
                    ),
                ],
            );
            link(t, &fr, "device", &rd);
            link(t, &fr, "subsystem", "/sys/class/fc_remote_ports");
            link(t, "/sys/class/fc_remote_ports", &name, &fr);

            let Some(tid) = r.target_id else { continue };
            let devices: Vec<_> = k
                .devices
                .values()
                .filter(|d| d.sid == 0 && d.hctl.host == hn && d.hctl.target == tid)
                .collect();
            if devices.is_empty() {
                continue;
            }
            let tname = format!("target{hn}:0:{tid}");
            let td = format!("{rd}/{tname}");
            t.dir(&format!("{td}/power"));
            link(t, &td, "subsystem", "/sys/bus/scsi");
            t.attr(&format!("{td}/uevent"), 0o644, "DEVTYPE=scsi_target");
            link(t, "/sys/bus/scsi/devices", &tname, &td);
            let ft = format!("{td}/fc_transport/{tname}");
            put_attrs(
                t,
                &ft,
                FC_TARGET_ATTRS,
                &[
                    ("port_name", format!("{:#x}", r.wwpn)),
                    ("node_name", format!("{:#x}", r.wwnn)),
                    ("port_id", format!("{:#08x}", self.fc.port_id(r.wwpn))),
                ],
            );
            link(t, &ft, "device", &td);
            link(t, &ft, "subsystem", "/sys/class/fc_transport");
            link(t, "/sys/class/fc_transport", &tname, &ft);
            let state = if up && r.state == FcPortState::Online {
                "running"
            } else {
                "blocked"
            };
            for d in devices {
                self.render_lun(host, &format!("{td}/{}", d.hctl), d, state, t);
            }
        }
    }
}

/// The switch's fabric name: a stable WWN per fabric (0 while the link is down).
fn fabric_wwn(fabric: &str, up: bool) -> u64 {
    if !up {
        return 0;
    }
    let h = fabric.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    0x1000_0000_0000_0000 | (h & 0x0000_ffff_ffff_ffff)
}
