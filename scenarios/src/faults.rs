//! Fault names usable in scenario files, mapped onto the simulator's faults.

use brick_harness::Lab;

/// The fault names a scenario may use, with what each does.
pub const FAULTS: &[(&str, &str)] = &[
    (
        "flush-fails",
        "every `multipath -f` fails with \"map in use\" until cleared",
    ),
    (
        "delete-busy",
        "writes to /sys/block/sdX/device/delete fail with EBUSY until cleared",
    ),
    (
        "udev-lost",
        "udev drops its events: links are neither created nor removed",
    ),
    ("udev-late", "udev events take 30 s longer to be processed"),
    ("path-down", "the host's first portal becomes unreachable"),
];

/// Arms fault `name` on the lab (for the `host` of the step where it applies).
pub(crate) fn inject(lab: &mut Lab, name: &str, host: &str) -> Result<(), String> {
    let fault = crate::sim_fault(lab, name, host)?;
    lab.inject(fault).map_err(|e| e.to_string())
}
