//! Fault names usable in scenario files, mapped onto the simulator's faults.

use std::time::Duration;

use brick_harness::Lab;
use brick_sim_target::{Fault, Times, UdevAction};

use crate::schema::{Scenario, Step};

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
];

/// Arms the fault of `step` on `host` of the lab.
pub(crate) fn inject(lab: &mut Lab, scn: &Scenario, step: &Step, host: &str) -> Result<(), String> {
    let name = step.fault.as_deref().unwrap_or_default();
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
            let array = step
                .array
                .as_deref()
                .and_then(|a| scn.arrays.iter().find(|d| d.name == a))
                .or_else(|| scn.arrays.first());
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
        other => return Err(format!("unknown fault `{other}`")),
    };
    lab.inject(fault).map_err(|e| e.to_string())
}
