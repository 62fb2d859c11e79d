//! Planted bugs ("mutants") for the harness to prove itself on: each is a real bug mechanism
//! from os-brick's history (`../shared/reference/os-brick-facts.md` §6 and §9), switched on at
//! run time. This module and every hook exist only with the cargo feature `mutants`; default
//! builds contain neither.
//!
//! The switch is per thread ([`set`]), so tests running in parallel do not see each other's
//! mutant; a thread that never called [`set`] follows the `BRICK_MUTANT` environment variable
//! (a mutant name, see [`Mutant::name`]).

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

macro_rules! mutants {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// A planted bug. Its doc names the real bug it re-creates.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Mutant {
            $( $(#[$doc])* $variant, )*
        }

        impl Mutant {
            /// Every mutant, in catalogue order.
            pub const ALL: &'static [Mutant] = &[ $( Mutant::$variant, )* ];

            /// The kebab-case name (`BRICK_MUTANT=<name>`, `brick explore --mutant <name>`).
            pub fn name(self) -> &'static str {
                match self { $( Mutant::$variant => $name, )* }
            }
        }
    };
}

mutants! {
    /// Scans `- - -` (every LUN of the session) instead of `C T L`: the orphans of os-brick
    /// a6e789f / 28a4d55 (wildcard scans create devices for LUNs nobody attached).
    WildcardScan = "wildcard-scan",
    /// Never sets `node.session.scan=manual`, so a login scans every LUN (f67d46c, d310e06).
    NoManualScan = "no-manual-scan",
    /// Logs out even when the session still carries other LUNs (5313985, bug 1382440).
    LogoutWithOthers = "logout-with-others",
    /// Finds the devices to remove, and decides the logout, from by-path links instead of the
    /// session's sysfs tree (pre-400ca5d detach, f4ecdf0, bug 1437441).
    DevicesFromByPath = "devices-from-by-path",
    /// Removes only the device named in `device_info` (981b84c, bug 1406161).
    OnlyDeviceInfoDevices = "only-device-info-devices",
    /// One `multipath -f` attempt instead of three (32c837d, bug 1663936).
    SingleFlushAttempt = "single-flush-attempt",
    /// Goes on removing paths after a failed map flush without force (400ca5d, bug 1502534).
    ContinueAfterFlushFailure = "continue-after-flush-failure",
    /// Deletes the paths before flushing the map (53173f7, bug 1502999).
    DeletePathsBeforeMapFlush = "delete-paths-before-map-flush",
    /// Flushes every path after the map (d866ee7, bug 1785669).
    FlushEveryPath = "flush-every-path",
    /// Trusts the connector's `use_multipath` at detach instead of the host's holders
    /// (d4205bd, bug 1921381).
    BranchOnUseMultipath = "branch-on-use-multipath",
    /// Flushes the map a second time outside the force context after a failed flush
    /// (931a95f, bug 2012251).
    ReflushOutsideForce = "reflush-outside-force",
    /// Returns without waiting for multipathd to drop the removed paths (d3f4f3b, bug 2136842).
    NoWaitMultipathd = "no-wait-multipathd",
    /// Accepts only `scsi-*` links that resolve directly to an sd device (7fb37c2, bug 1881608).
    DirectScsiLinksOnly = "direct-scsi-links-only",
    /// Never logs out nor deletes the node (the pre-05a4c05 NVMe shape, on iSCSI).
    NoLogout = "no-logout",
    /// Compares the array's LUN with the kernel's at detach, ignoring the addressing mode
    /// (os-brick §9.5: the LUN as given never matches the sysfs LUN).
    DetachIgnoresAddressing = "detach-ignores-addressing",
    /// Scans the array's LUN number, ignoring the addressing mode (SAM3-flat / SAM2).
    ScanIgnoresAddressing = "scan-ignores-addressing",
    /// Picks the first block device under the session whatever its LUN.
    FirstDeviceOfSession = "first-device-of-session",
    /// Removes every device of the session, not only those of the volume's LUN
    /// (os-brick issue "disconnecting iscsi volume can break other volumes connections").
    RemoveAllSessionDevices = "remove-all-session-devices",
    /// Ignores `force` (the FC connector before 570df49, CVE-2023-2088).
    ForceIgnored = "force-ignored",
    /// With `force`, swallows the errors even without `ignore_errors`.
    ForceSwallowsErrors = "force-swallows-errors",
    /// Rescans the session (`- - -`) during disconnect (c0839fa, bug 1483326).
    RescanOnDetach = "rescan-on-detach",
    /// Logs in to every target discovery lists, not only the volume's (5313985, a8386d5).
    ConnectAllDiscovered = "connect-all-discovered",
    /// Returns the first path without giving the dm time to appear (1432c36 shape).
    NoMultipathGrace = "no-multipath-grace",
    /// Removes a device whose buffer flush failed, without force (400ca5d, single path).
    IgnoreDeviceFlushFailure = "ignore-device-flush-failure",
    /// `get_volume_paths` only looks at the first target of a multipath volume.
    PathsFirstTargetOnly = "paths-first-target-only",
    /// FC: scans `C T -` (every LUN behind the target port) instead of `C T L`: devices for
    /// LUNs nobody attached (os-brick's FC wildcard-LUN scans, bugs 1849504 / 2016029 shape).
    FcScanEveryLun = "fc-scan-every-lun",
    /// FC: the disconnect removes only the device named in `device_info` (os-brick FC
    /// disconnect's reliance on `device_info`, os-brick-facts §9 bug 12): other paths stay.
    FcDevicesFromDeviceInfo = "fc-devices-from-device-info",
    /// NVMe-oF: never disconnects a controller: `/dev/nvmeN` and its namespaces stay forever
    /// (os-brick before 05a4c05, bug 1961102).
    NvmeNeverDisconnect = "nvme-never-disconnect",
    /// NVMe-oF: disconnects the controller even when other namespaces remain under it, taking
    /// the other volumes of the subsystem away (the other half of 05a4c05's mutant).
    NvmeDisconnectWithOthers = "nvme-disconnect-with-others",
    /// NVMe-oF: a detach without `device_info` (and without `device_path`) returns early and
    /// leaves the controllers connected (os-brick-facts §9 item 4).
    NvmeDetachNeedsDeviceInfo = "nvme-detach-needs-device-info",
    /// NVMe-oF: no `blockdev --flushbufs` before the disconnect (os-brick before 85dbd0f, bug
    /// 1903032): a failing flush goes unnoticed and buffered writes are lost.
    NvmeNoFlush = "nvme-no-flush",
    /// NVMe-oF: finds the namespace by nsid even when the properties carry its uuid: after
    /// nsid reuse the path of another volume is reported (os-brick's nsid fallback taken first).
    NvmeIdentityByNsid = "nvme-identity-by-nsid",
    /// NVMe-oF: takes the device from any controller of the portals, not only live ones
    /// (os-brick's `find_device` reads live portals only): with native multipath off the disk
    /// of a controller that is reconnecting is returned, and its I/O hangs.
    NvmeDeviceFromAnyController = "nvme-device-from-any-controller",
    /// NVMe-oF: the attach does not `nvme ns-rescan` the live controllers, trusting the
    /// array's namespace-change AENs (os-brick before the rescan of live portals in
    /// `_connect_target`, "backend may lack AER"): on an array without AEN support a volume
    /// mapped after its subsystem's controller connected is never found.
    NvmeNoRescanOnAttach = "nvme-no-rescan-on-attach",
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Mutant {
    /// The mutant called `name`.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Self::ALL.iter().copied().find(|m| m.name() == name)
    }
}

thread_local! {
    /// `None`: not set on this thread (follow `BRICK_MUTANT`).
    static CURRENT: Cell<Option<Option<Mutant>>> = const { Cell::new(None) };
}

fn from_env() -> Option<Mutant> {
    static ENV: OnceLock<Option<Mutant>> = OnceLock::new();
    *ENV.get_or_init(|| {
        let name = std::env::var("BRICK_MUTANT").ok()?;
        let m = Mutant::from_name(name.trim());
        if m.is_none() {
            tracing::warn!(name, "BRICK_MUTANT names no mutant; running unmutated");
        }
        m
    })
}

/// Switches the mutant of the current thread (`None`: the unmutated connectors).
pub fn set(mutant: Option<Mutant>) {
    CURRENT.with(|c| c.set(Some(mutant)));
}

/// The mutant in effect on the current thread.
pub fn current() -> Option<Mutant> {
    CURRENT.with(Cell::get).unwrap_or_else(from_env)
}

/// Whether `mutant` is the one in effect on the current thread.
pub fn active(mutant: Mutant) -> bool {
    current() == Some(mutant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_the_switch_is_per_thread() {
        assert!(Mutant::ALL.len() >= 20);
        assert!(Mutant::ALL.iter().any(|m| m.name().starts_with("fc-")));
        assert!(
            Mutant::ALL
                .iter()
                .filter(|m| m.name().starts_with("nvme-"))
                .count()
                >= 3
        );
        for m in Mutant::ALL {
            assert_eq!(Mutant::from_name(m.name()), Some(*m));
        }
        set(Some(Mutant::NoLogout));
        assert!(active(Mutant::NoLogout));
        let other = std::thread::spawn(|| {
            set(None);
            active(Mutant::NoLogout)
        })
        .join()
        .unwrap();
        assert!(!other);
        set(None);
        assert!(!active(Mutant::NoLogout));
    }
}
