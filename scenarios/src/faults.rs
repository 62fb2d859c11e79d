//! Fault names usable in scenario files, mapped onto the simulator's faults.

use std::time::Duration;

use brick_harness::Lab;
use brick_sim_target::{Fault, FcPortState, Times, UdevAction};

use crate::schema::{ProtocolName, Scenario, Step};

/// The fault names a scenario may use, with what each does. Every fault applies to the
/// step's host; `times = N` makes counted faults fire N times, `delay_ms` sets the delay of
/// the slow ones (default 30 s).
pub const FAULTS: &[(&str, &str)] = &[
    (
        "flush-fails",
        "every `multipath -f` fails with \"map in use\" (counted)",
    ),
    (
        "map-open",
        "every multipath map is held open (by a VM): flushing it fails until cleared",
    ),
    (
        "delete-busy",
        "writes to /sys/block/sdX/device/delete fail with EBUSY (counted)",
    ),
    (
        "blockdev-flush-fails",
        "`blockdev --flushbufs` fails with an I/O error (counted)",
    ),
    (
        "udev-lost",
        "udev drops its events: links are neither created nor removed (counted)",
    ),
    (
        "udev-lost-remove",
        "udev drops `remove` events: links of removed devices stay behind (counted)",
    ),
    ("udev-late", "udev events are delivered `delay_ms` later"),
    (
        "path-down",
        "`portal` (default: the array's first) becomes unreachable from the host",
    ),
    (
        "multipathd-slow",
        "multipathd drops removed paths `delay_ms` later",
    ),
    (
        "hba-linkdown",
        "FC: the HBA `wwpn` (default: the host's first) loses its link; its remote ports block \
         and, once settled past dev_loss_tmo (30 s), their devices go (until clear-faults)",
    ),
    (
        "hba-linkdown-later",
        "FC: the HBA `wwpn` (default: the host's first) loses its link `delay_ms` into the next \
         step (partway through an attach or detach); as `hba-linkdown` from then on",
    ),
    (
        "nvme-port-down",
        "NVMe-oF: the port `portal` (`traddr:trsvcid`, default: the array's first) becomes \
         unreachable: its controllers stay `connecting`, `nvme connect` through it times out",
    ),
    (
        "namespace-appears",
        "NVMe-oF: the next `nvme connect` of the host finds `volume` newly mapped to it, as if \
         another attach raced with this one (fires once)",
    ),
];

/// The protocol a fault belongs to, when it is not protocol-neutral.
pub(crate) fn fault_protocol(name: &str) -> Option<ProtocolName> {
    match name {
        "path-down" => Some(ProtocolName::Iscsi),
        "hba-linkdown" | "hba-linkdown-later" => Some(ProtocolName::Fc),
        "nvme-port-down" | "namespace-appears" => Some(ProtocolName::Nvmeof),
        _ => None,
    }
}

/// What an injected fault changed outside the simulator's fault list, to undo at
/// `clear-faults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undo {
    /// Nothing beyond the fault list.
    Nothing,
    /// An HBA went `Linkdown`: bring it back `Online`.
    HbaOnline {
        /// Host name.
        host: String,
        /// The HBA's WWPN.
        wwpn: u64,
    },
}

/// What [`inject`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Injected {
    /// Armed now; `clear-faults` must also undo this.
    Now(Undo),
    /// To arm when the next step starts, so that its timer runs during that step (the
    /// runner settles after every step, which would otherwise fire it at once).
    WithNextStep(Fault),
}

/// The host HBA a step's fault names: `wwpn`, else the host's first.
fn step_hba(scn: &Scenario, step: &Step, host: &str) -> Option<u64> {
    step.wwpn.map(|w| w.0).or_else(|| {
        scn.hosts
            .iter()
            .find(|h| h.name == host)
            .and_then(|h| h.hbas.first())
            .map(|h| h.wwpn.0)
    })
}

/// Arms the fault of `step` on `host` of the lab (or hands it back to arm with the next
/// step); returns what `clear-faults` must undo.
pub(crate) fn inject(
    lab: &mut Lab,
    scn: &Scenario,
    step: &Step,
    host: &str,
) -> Result<Injected, String> {
    let name = step.fault.as_deref().unwrap_or_default();
    let array = step
        .array
        .as_deref()
        .and_then(|a| scn.arrays.iter().find(|d| d.name == a))
        .or_else(|| scn.arrays.first());
    let host_id = lab.host_id(host).map_err(|e| e.to_string())?;
    let times = step.times.map_or(Times::Always, Times::Count);
    let delay = Duration::from_millis(step.delay_ms.unwrap_or(30_000));
    let fault = match name {
        "flush-fails" => Fault::MultipathFlushFails {
            host: host_id,
            times,
        },
        "map-open" => Fault::MapOpen {
            host: host_id,
            map: None,
        },
        "delete-busy" => Fault::DeviceDeleteBusy {
            host: host_id,
            device: None,
            times,
        },
        "blockdev-flush-fails" => Fault::BlockdevFlushFails {
            host: host_id,
            times,
        },
        "udev-lost" => Fault::UdevLost {
            host: host_id,
            action: UdevAction::Any,
            times,
        },
        "udev-lost-remove" => Fault::UdevLost {
            host: host_id,
            action: UdevAction::Remove,
            times,
        },
        "udev-late" => Fault::UdevLate {
            host: host_id,
            extra: delay,
        },
        "multipathd-slow" => Fault::MultipathdSlowRemove {
            host: host_id,
            extra: delay,
        },
        "path-down" => {
            let portal = step
                .portal
                .clone()
                .or_else(|| array.and_then(|a| a.portals.first().cloned()))
                .ok_or("`path-down` needs a portal")?;
            Fault::PortalDown {
                host: host_id,
                portal,
            }
        }
        "hba-linkdown" => {
            let wwpn = step_hba(scn, step, host).ok_or("`hba-linkdown` needs an HBA")?;
            lab.set_hba_port_state(host, wwpn, FcPortState::Linkdown)
                .map_err(|e| e.to_string())?;
            return Ok(Injected::Now(Undo::HbaOnline {
                host: host.to_owned(),
                wwpn,
            }));
        }
        "hba-linkdown-later" => {
            let wwpn = step_hba(scn, step, host).ok_or("`hba-linkdown-later` needs an HBA")?;
            // Clearing the simulator's fault brings the link back: nothing to undo here.
            return Ok(Injected::WithNextStep(Fault::HbaLinkdownAfter {
                host: host_id,
                wwpn,
                after: Duration::from_millis(step.delay_ms.unwrap_or_default()),
            }));
        }
        "nvme-port-down" => {
            let (traddr, trsvcid) = match &step.portal {
                Some(p) => split_port(p).ok_or_else(|| {
                    format!("`nvme-port-down`: portal {p:?} is not `traddr:trsvcid`")
                })?,
                None => array
                    .and_then(|a| a.nvme_ports.first())
                    .map(|p| (p.traddr.clone(), p.trsvcid))
                    .ok_or("`nvme-port-down` needs a port")?,
            };
            Fault::NvmePortDown {
                host: host_id,
                traddr,
                trsvcid,
            }
        }
        "namespace-appears" => {
            let vol = step
                .volume
                .as_deref()
                .ok_or("`namespace-appears` needs `volume`")?;
            Fault::NamespaceAppears {
                host: host_id,
                volume: lab.volume_id(vol).map_err(|e| e.to_string())?,
            }
        }
        other => return Err(format!("unknown fault `{other}`")),
    };
    lab.inject(fault).map_err(|e| e.to_string())?;
    Ok(Injected::Now(Undo::Nothing))
}

/// Splits `traddr:trsvcid` (`[v6]:port` allowed).
pub(crate) fn split_port(p: &str) -> Option<(String, u16)> {
    let (addr, port) = p.rsplit_once(':')?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    if addr.is_empty() {
        return None;
    }
    Some((addr.to_owned(), port.parse().ok()?))
}

/// Undoes what [`inject`] changed outside the fault list.
pub(crate) fn undo(lab: &mut Lab, undo: &Undo) -> Result<(), String> {
    match undo {
        Undo::Nothing => Ok(()),
        Undo::HbaOnline { host, wwpn } => lab
            .set_hba_port_state(host, *wwpn, FcPortState::Online)
            .map_err(|e| e.to_string()),
    }
}
