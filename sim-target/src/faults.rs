//! Fault injection: values a test arms with [`crate::World::inject`] and removes with
//! [`crate::World::clear_faults`] (or [`crate::World::clear_fault`]).
//!
//! A counted fault fires `n` times and then disarms itself; [`Times::Always`] fires until
//! cleared. Faults are consulted at the point where the real failure would happen (the
//! command, the control write, the udev event delivery), so their effect is visible through
//! every view of the model.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::HostId;

/// How often a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Times {
    /// Until cleared.
    Always,
    /// This many times, then it disarms.
    Count(u32),
}

/// Which udev events a [`Fault::UdevLost`] drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UdevAction {
    /// `add` events (links never created).
    Add,
    /// `remove` events (links stay behind as stale links).
    Remove,
    /// `change` events.
    Change,
    /// Every event.
    Any,
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// `multipath -f` fails with "map in use" (exit 1); `multipathd del map` answers `fail`.
    MultipathFlushFails {
        /// Host.
        host: HostId,
        /// How often.
        times: Times,
    },
    /// A map is held open (by a VM, a mount...): flushing it fails until cleared.
    MapOpen {
        /// Host.
        host: HostId,
        /// Map name or WWID; `None` means every map.
        map: Option<String>,
    },
    /// Writing `1` to a SCSI device's `delete` fails with EBUSY.
    DeviceDeleteBusy {
        /// Host.
        host: HostId,
        /// `sdX` or `H:C:T:L`; `None` means every device.
        device: Option<String>,
        /// How often.
        times: Times,
    },
    /// `blockdev --flushbufs` fails (exit 1, I/O error).
    BlockdevFlushFails {
        /// Host.
        host: HostId,
        /// How often.
        times: Times,
    },
    /// Every udev event of the host is delivered this much later than its normal delay.
    UdevLate {
        /// Host.
        host: HostId,
        /// Extra delay.
        extra: Duration,
    },
    /// udev events are dropped: their links are never created or removed.
    UdevLost {
        /// Host.
        host: HostId,
        /// Which events.
        action: UdevAction,
        /// How often.
        times: Times,
    },
    /// The portal is unreachable from the host: sessions through it fail
    /// (`FAILED`, devices `transport-offline`, multipathd paths `failed`), logins time out.
    PortalDown {
        /// Host.
        host: HostId,
        /// Portal `ip:port`.
        portal: String,
    },
    /// multipathd takes this much longer to drop a removed path from its table and maps.
    MultipathdSlowRemove {
        /// Host.
        host: HostId,
        /// Extra delay.
        extra: Duration,
    },
    /// The process driving the host dies: after `after` more side effects (commands, control
    /// writes, link removals), every later one fails (commands exit 137, writes EIO) until
    /// cleared. Models a crash between two steps of a detach, followed by a retry.
    Crash {
        /// Host.
        host: HostId,
        /// Side effects that still succeed.
        after: u32,
    },
    /// An NVMe-oF port is unreachable from the host: its controllers lost their connection
    /// and stay `connecting` (I/O through them fails) until cleared; `nvme connect` through
    /// it times out. A controller lost for good is this fault never cleared.
    NvmePortDown {
        /// Host.
        host: HostId,
        /// Port address.
        traddr: String,
        /// Port service id.
        trsvcid: u16,
    },
    /// The next `nvme connect` of the host to the volume's subsystem finds the volume newly
    /// mapped to it, as if another attach raced with this one (its namespace appears during
    /// this attach). Fires once.
    NamespaceAppears {
        /// Host.
        host: HostId,
        /// The volume the array maps concurrently.
        volume: crate::ids::VolumeId,
    },
    /// The host's FC HBA port `wwpn` loses its link `after` this much virtual time from the
    /// moment the fault is armed, as if its cable were pulled partway through whatever runs
    /// then (an attach between its scan and its wait for the device, a detach...). From then
    /// on it is `Linkdown`, exactly as after [`crate::World::set_hba_port_state`]: its remote
    /// ports block and lose their devices after `dev_loss_tmo`. Clearing the fault brings the
    /// link back `Online` if it went down; cleared before, it never goes down.
    HbaLinkdownAfter {
        /// Host.
        host: HostId,
        /// The HBA port's WWPN.
        wwpn: u64,
        /// Virtual time from arming to link loss.
        after: Duration,
    },
}

impl Fault {
    /// The host the fault applies to.
    pub fn host(&self) -> HostId {
        match self {
            Fault::MultipathFlushFails { host, .. }
            | Fault::MapOpen { host, .. }
            | Fault::DeviceDeleteBusy { host, .. }
            | Fault::BlockdevFlushFails { host, .. }
            | Fault::UdevLate { host, .. }
            | Fault::UdevLost { host, .. }
            | Fault::PortalDown { host, .. }
            | Fault::MultipathdSlowRemove { host, .. }
            | Fault::Crash { host, .. }
            | Fault::NvmePortDown { host, .. }
            | Fault::NamespaceAppears { host, .. }
            | Fault::HbaLinkdownAfter { host, .. } => *host,
        }
    }

    fn times(&self) -> Times {
        match self {
            Fault::MultipathFlushFails { times, .. }
            | Fault::DeviceDeleteBusy { times, .. }
            | Fault::BlockdevFlushFails { times, .. }
            | Fault::UdevLost { times, .. } => *times,
            _ => Times::Always,
        }
    }
}

/// The armed faults, with the remaining count of counted ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct Faults {
    armed: Vec<(Fault, Option<u32>)>,
}

impl Faults {
    pub(crate) fn inject(&mut self, f: Fault) {
        let left = match (&f, f.times()) {
            // Remaining side effects + 1: 1 means "crashed", never disarms by itself.
            (Fault::Crash { after, .. }, _) => Some(after.saturating_add(1)),
            (_, Times::Always) => None,
            (_, Times::Count(n)) => Some(n),
        };
        if left != Some(0) {
            self.armed.push((f, left));
        }
    }

    /// Disarms every fault; returns them (each armed copy once).
    pub(crate) fn clear(&mut self) -> Vec<Fault> {
        self.armed.drain(..).map(|(f, _)| f).collect()
    }

    /// Disarms every armed copy of `f`; returns the copies removed.
    pub(crate) fn remove(&mut self, f: &Fault) -> Vec<Fault> {
        let (gone, kept) = std::mem::take(&mut self.armed)
            .into_iter()
            .partition(|(g, _)| g == f);
        self.armed = kept;
        gone.into_iter().map(|(g, _)| g).collect()
    }

    pub(crate) fn list(&self) -> Vec<Fault> {
        self.armed.iter().map(|(f, _)| f.clone()).collect()
    }

    /// Whether a fault matching `pred` is armed (does not consume it).
    pub(crate) fn any(&self, pred: impl Fn(&Fault) -> bool) -> bool {
        self.armed.iter().any(|(f, _)| pred(f))
    }

    /// Fires the first fault matching `pred`: consumes one count; true if one fired.
    pub(crate) fn fire(&mut self, pred: impl Fn(&Fault) -> bool) -> bool {
        let Some(pos) = self.armed.iter().position(|(f, _)| pred(f)) else {
            return false;
        };
        if let Some((_, Some(left))) = self.armed.get_mut(pos) {
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.armed.remove(pos);
            }
        }
        true
    }

    /// Whether a side effect on `host` is refused by a [`Fault::Crash`] (consumes one of the
    /// side effects it still allows).
    pub(crate) fn crashed(&mut self, host: HostId) -> bool {
        for (f, left) in &mut self.armed {
            if let (Fault::Crash { host: h, .. }, Some(n)) = (&*f, left.as_mut())
                && *h == host
            {
                if *n > 1 {
                    *n -= 1;
                    return false;
                }
                return true;
            }
        }
        false
    }

    /// Sum of the extra durations of matching faults.
    pub(crate) fn extra(&self, pick: impl Fn(&Fault) -> Option<Duration>) -> Duration {
        self.armed.iter().filter_map(|(f, _)| pick(f)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_disarm() {
        let mut f = Faults::default();
        let h = HostId(0);
        f.inject(Fault::BlockdevFlushFails {
            host: h,
            times: Times::Count(2),
        });
        let is = |x: &Fault| matches!(x, Fault::BlockdevFlushFails { .. });
        assert!(f.fire(is));
        assert!(f.fire(is));
        assert!(!f.fire(is));
        f.inject(Fault::BlockdevFlushFails {
            host: h,
            times: Times::Always,
        });
        for _ in 0..5 {
            assert!(f.fire(is));
        }
        assert_eq!(f.clear().len(), 1);
        assert!(!f.any(is));
    }

    #[test]
    fn remove_returns_only_the_equal_copies() {
        let mut f = Faults::default();
        let down = |traddr: &str| Fault::NvmePortDown {
            host: HostId(0),
            traddr: traddr.to_owned(),
            trsvcid: 4420,
        };
        f.inject(down("10.0.0.1"));
        f.inject(down("10.0.0.2"));
        f.inject(down("10.0.0.1"));
        assert_eq!(f.remove(&down("10.0.0.1")).len(), 2);
        assert_eq!(f.list(), vec![down("10.0.0.2")]);
        assert!(f.remove(&down("10.0.0.1")).is_empty());
    }

    #[test]
    fn crash_allows_a_budget_then_refuses_everything() {
        let mut f = Faults::default();
        let h = HostId(0);
        f.inject(Fault::Crash { host: h, after: 2 });
        assert!(!f.crashed(h));
        assert!(!f.crashed(h));
        assert!(f.crashed(h));
        assert!(f.crashed(h));
        assert!(!f.crashed(HostId(1)));
        f.clear();
        assert!(!f.crashed(h));
    }
}
